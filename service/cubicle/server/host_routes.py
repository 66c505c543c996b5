"""Routes for what acts as the desktop user: the shell and the files (what a model's bash and
text-editor tools use). Thin: check, hand to the DesktopUser, shape the answer. The same
router serves the API and `cubicle runner`, which carries them out as the desktop user."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from cubicle import actions as a
from cubicle.web import ApiError, error_responses, exact_json_types, only_known_query

from .desktop_user import DesktopUser

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])


def get_user(request: Request) -> DesktopUser:
    return request.app.state.user


@router.post(
    "/shell/run", response_model=a.ShellResult, tags=["shell"],
    summary="Run bash commands in the desktop's persistent shell (as the desktop user, with its DISPLAY)",
)
async def shell_run(body: a.ShellCommand, user: DesktopUser = Depends(get_user)) -> a.ShellResult:
    if not body.command.strip():
        raise ApiError(
            422, "empty_command",
            "The command is empty. Send the bash commands to run, e.g. 'ls -la'; to get a fresh shell, use the restart.",
        )
    if "\0" in body.command:
        raise ApiError(422, "invalid_command", "The command contains a NUL character, which bash cannot run; remove it.")
    return await user.run_shell(body.command, body.timeout)


@router.post(
    "/shell/restart", response_model=a.ShellRestarted, tags=["shell"],
    summary="Kill the shell (and whatever runs in it) and start a fresh one",
)
async def shell_restart(user: DesktopUser = Depends(get_user)) -> a.ShellRestarted:
    await user.restart_shell()
    return a.ShellRestarted()


@router.get(
    "/files", response_model=a.FileInfo, response_model_exclude_unset=True, tags=["files"], responses=error_responses(403, 404, 422),
    summary="A text file's content, or a directory's entries",
)
async def read_file(
    path: str = Query(description="absolute path of a file or directory (starting with '/', without NUL characters)",
                      max_length=4096, json_schema_extra={"pattern": a.ABSOLUTE_PATH, "minLength": 1}),
    user: DesktopUser = Depends(get_user),
) -> a.FileInfo:
    return await user.read_file(path)


@router.put(
    "/files", response_model=a.FileWritten, tags=["files"], responses=error_responses(403, 404, 422, 507),
    summary="Create or replace a text file (atomically; an existing file keeps its permissions)",
)
async def write_file(body: a.WriteFile, user: DesktopUser = Depends(get_user)) -> a.FileWritten:
    return await user.write_file(body)
