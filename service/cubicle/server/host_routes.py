"""Routes for the desktop's shell and files (what a model's bash and text-editor tools use).
Thin, like routes.py: check, hand to ShellSession or FileAccess, shape the answer."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request

from cubicle import actions as a

from .errors import ApiError
from .files import FileAccess, FileContent
from .openapi import error_responses
from .routes import exact_json_types, only_known_query
from .shell import ShellSession

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])


def get_shell(request: Request) -> ShellSession:
    return request.app.state.shell


def get_files(request: Request) -> FileAccess:
    return request.app.state.files


@router.post(
    "/shell/run", response_model=a.ShellResult, tags=["shell"],
    summary="Run bash commands in the desktop's persistent shell (as the desktop user, with its DISPLAY)",
)
async def shell_run(body: a.ShellCommand, shell: ShellSession = Depends(get_shell)) -> a.ShellResult:
    if not body.command.strip():
        raise ApiError(
            422, "empty_command",
            "The command is empty. Send the bash commands to run, e.g. 'ls -la'; to get a fresh shell, use the restart.",
        )
    if "\0" in body.command:
        raise ApiError(422, "invalid_command", "The command contains a NUL character, which bash cannot run; remove it.")
    result = await shell.run(body.command, body.timeout)
    return a.ShellResult(**vars(result))


@router.post(
    "/shell/restart", response_model=a.ShellRestarted, tags=["shell"],
    summary="Kill the shell (and whatever runs in it) and start a fresh one",
)
async def shell_restart(shell: ShellSession = Depends(get_shell)) -> a.ShellRestarted:
    await shell.restart()
    return a.ShellRestarted()


@router.get(
    "/files", response_model=a.FileInfo, response_model_exclude_unset=True, tags=["files"], responses=error_responses(403, 404, 422),
    summary="A text file's content, or a directory's entries",
)
async def read_file(
    path: str = Query(description="absolute path of a file or directory", max_length=4096),
    files: FileAccess = Depends(get_files),
) -> a.FileInfo:
    found = await asyncio.to_thread(files.read, path)
    if isinstance(found, FileContent):
        return a.FileInfo(path=found.path, type="file", size=found.size, content=found.content)
    return a.FileInfo(
        path=found.path, type="directory", entries=[a.DirectoryEntry(**vars(entry)) for entry in found.entries],
        total=found.total, truncated=found.truncated,
    )


@router.put(
    "/files", response_model=a.FileWritten, tags=["files"], responses=error_responses(403, 404, 422, 507),
    summary="Create or replace a text file (atomically; an existing file keeps its permissions)",
)
async def write_file(body: a.WriteFile, files: FileAccess = Depends(get_files)) -> a.FileWritten:
    path, size = await asyncio.to_thread(files.write, body.path, body.content, body.create_dirs)
    return a.FileWritten(path=path, size=size)
