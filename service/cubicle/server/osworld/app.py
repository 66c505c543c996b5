"""The routes of OSWorld's in-desktop server, with its paths, methods, body kinds and answers
(what desktop-env 1.0.2's PythonController and SetupController send and read), and `serve`.

Bodies are read by hand rather than by models: OSWorld's answers to bad input are its own
shapes ({"error": ...}, {"status": "error", "message": ...} or plain text), and its client reads
nothing else. Where this server answers differently from OSWorld's, on purpose:

- a window that activate_window, close_window or window_size cannot find is a 404 with a
  message (OSWorld: 200 whatever wmctrl did, and a 500 from window_size);
- open_file waits OPEN_TIMEOUT_S for its window, not half an hour;
- /wallpaper and /setup/change_wallpaper answer 404 and 501: the desktop's background is a
  plain colour, and there is no GNOME settings daemon to change it;
- /setup/download_file is 501: the client downloads files itself and uploads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from cubicle import __version__, x11
from cubicle import accessibility as a11y
from cubicle.x11.apps import Launcher

from ..desktop_user import app_log_path
from . import commands, terminal
from .accessibility_xml import to_osworld_xml
from .commands import BadCommand, CommandTimedOut
from .recording import RecordingError, ScreenRecorder
from .windows import Screen

log = logging.getLogger("cubicle.osworld")

DEFAULT_PORT = 5000  # OSWorld's (Flask's default)
OPEN_TIMEOUT_S = 300.0
MAX_TREE_DEPTH = 50  # OSWorld's
TREE_TIMEOUT_MS = 10_000  # its client waits for /accessibility without a timeout: answer by then
VERIFY_COMMAND_TIMEOUT_S = 5.0


class BadRequest(Exception):
    def __init__(self, answer: Response):
        self.answer = answer


def _error(status: int, message: str, key: str = "error") -> JSONResponse:
    return JSONResponse({key: message} if key == "error" else {"status": "error", "message": message}, status)


async def _json(request: Request, answer_key: str = "error") -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError as error:
        raise BadRequest(_error(400, f"The body is not JSON: {error}.", answer_key)) from None
    if not isinstance(body, dict):
        raise BadRequest(_error(400, "The body must be a JSON object.", answer_key))
    return body


async def _form(request: Request) -> Any:
    try:
        return await request.form(max_part_size=16 * 1024 * 1024)
    except Exception as error:  # noqa: BLE001 - any unparsable form is the caller's
        raise BadRequest(_error(400, f"The body is not a form ({type(error).__name__}: {error}).")) from None


def _path(text: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(text)))


def create_osworld_app(display: str) -> FastAPI:
    screen = Screen(display)
    recorder = ScreenRecorder(display)
    launcher = Launcher(display, app_log_path())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await recorder.close()
        screen.close()

    app = FastAPI(title="cubicle osworld", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, error: BadRequest) -> Response:
        return error.answer

    @app.exception_handler(x11.X11Error)
    async def x_failed(_: Request, error: x11.X11Error) -> Response:
        return _error(503, str(error))

    # -- running things ---------------------------------------------------------------------

    async def execute(request: Request) -> Response:
        body = await _json(request, "message")
        try:
            argv = commands.parse_command(body)
            finished = await commands.run(argv, commands.EXECUTE_TIMEOUT_S)
        except (BadCommand, CommandTimedOut, OSError) as error:
            return _error(400 if isinstance(error, BadCommand) else 500, str(error), "message")
        return JSONResponse({"status": "success", "output": finished.stdout, "error": finished.stderr,
                             "returncode": finished.returncode})

    app.add_api_route("/execute", execute, methods=["POST"])
    app.add_api_route("/setup/execute", execute, methods=["POST"])

    async def execute_with_verification(request: Request) -> Response:
        body = await _json(request, "message")
        verification = body.get("verification") or {}
        try:
            argv = commands.parse_command(body)
            max_wait = commands.parse_timeout(body.get("max_wait_time"), 10.0)
            interval = commands.parse_timeout(body.get("check_interval"), 1.0)
            if not isinstance(verification, dict):
                raise BadCommand("verification must be an object: {\"window_exists\": ..., \"command_success\": ...}.")
            finished = await commands.run(argv, commands.EXECUTE_TIMEOUT_S)
        except (BadCommand, CommandTimedOut, OSError) as error:
            return _error(400 if isinstance(error, BadCommand) else 500, str(error), "message")
        answer = {"status": "success", "output": finished.stdout, "error": finished.stderr,
                  "returncode": finished.returncode}
        if not verification:
            return JSONResponse(answer)
        started = time.monotonic()
        while True:
            if await _verified(verification):
                return JSONResponse({**answer, "verification": "passed", "wait_time": time.monotonic() - started})
            if time.monotonic() - started >= max_wait:
                return JSONResponse({**answer, "status": "verification_failed", "verification": "failed",
                                     "wait_time": max_wait}, 500)
            await asyncio.sleep(interval)

    async def _verified(verification: dict[str, Any]) -> bool:
        window = verification.get("window_exists")
        if window is not None and not (isinstance(window, str) and await screen.find(window)):
            return False
        check = verification.get("command_success")
        if check is not None:
            try:
                finished = await commands.run(["/bin/sh", "-c", str(check)], VERIFY_COMMAND_TIMEOUT_S)
            except (CommandTimedOut, OSError):
                return False
            return finished.returncode == 0
        return True

    app.add_api_route("/execute_with_verification", execute_with_verification, methods=["POST"])
    app.add_api_route("/setup/execute_with_verification", execute_with_verification, methods=["POST"])

    @app.post("/setup/launch")
    async def launch(request: Request) -> Response:
        body = await _json(request, "message")
        try:
            argv = commands.parse_command(body)
            await asyncio.to_thread(launcher.launch, argv)
        except (BadCommand, x11.LaunchFailed) as error:
            return _error(400 if isinstance(error, BadCommand) else 500, str(error), "message")
        shown = body["command"] if body.get("shell") else " ".join(argv)
        return PlainTextResponse(f"{shown} launched successfully")

    @app.post("/run_python")
    async def run_python(request: Request) -> Response:
        body = await _json(request, "message")
        code = body.get("code")
        if not isinstance(code, str) or not code:
            return _error(400, "Code not supplied!", "message")
        with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="osworld-", delete=False) as script:
            script.write(code)
        try:
            finished = await commands.run([sys.executable, script.name], commands.PYTHON_TIMEOUT_S)
        except CommandTimedOut:
            return JSONResponse({"status": "error", "message": "Execution timeout: Code took too long to execute",
                                 "error": "TimeoutExpired", "need_more": False, "output": None}, 500)
        finally:
            os.unlink(script.name)
        error = finished.stderr or (f"Process exited with code {finished.returncode}" if finished.returncode else "")
        message = "\n".join(part for part in (finished.stdout, error) if part)
        return JSONResponse({"status": "success" if finished.returncode == 0 else "error", "message": message,
                             "need_more": False, "output": finished.stdout, "error": error,
                             "return_code": finished.returncode})

    @app.post("/run_bash_script")
    async def run_bash_script(request: Request) -> Response:
        body = await _json(request, "output")
        script, working_dir = body.get("script"), body.get("working_dir")

        def refused(message: str) -> JSONResponse:
            return JSONResponse({"status": "error", "output": message, "error": "", "returncode": -1}, 400)

        if not isinstance(script, str) or not script:
            return refused("Script not supplied!")
        try:
            timeout = commands.parse_timeout(body.get("timeout"), commands.BASH_TIMEOUT_S)
        except BadCommand as error:
            return refused(str(error))
        if working_dir is not None:
            if not isinstance(working_dir, str) or not os.path.isdir(os.path.expanduser(working_dir)):
                return refused(f"Working directory does not exist: {working_dir}")
            working_dir = os.path.expanduser(working_dir)
        with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="osworld-", delete=False) as file:
            file.write(script)
        try:
            finished = await commands.run(["/bin/bash", file.name], timeout, cwd=working_dir, merge_stderr=True)
        except CommandTimedOut:
            return JSONResponse({"status": "error", "output": f"Script execution timed out after {timeout:g} seconds",
                                 "error": "", "returncode": -1}, 500)
        finally:
            os.unlink(file.name)
        return JSONResponse({"status": "success" if finished.returncode == 0 else "error", "output": finished.stdout,
                             "error": "", "returncode": finished.returncode})

    # -- what is on the screen --------------------------------------------------------------

    @app.get("/screenshot")
    async def screenshot() -> Response:
        return Response(await screen.screenshot_png(), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/screen_size")
    async def screen_size() -> Response:
        width, height = await screen.size()
        return JSONResponse({"width": width, "height": height})

    @app.post("/window_size")
    async def window_size(request: Request) -> Response:
        form = await _form(request)
        name = form.get("app_class_name")
        if not isinstance(name, str) or not name:
            return _error(400, "app_class_name is required")
        wanted = name.lower()
        for window in await screen.windows():
            if wanted in (window.wm_class.lower(), window.wm_instance.lower()):
                return JSONResponse({"width": window.width, "height": window.height})
        return _error(404, f"No window of class {name!r} is open.")

    @app.get("/cursor_position")
    async def cursor_position() -> Response:
        return JSONResponse(list(await screen.cursor()))

    @app.get("/platform")
    async def get_platform() -> Response:
        return PlainTextResponse(platform.system())

    @app.get("/accessibility")
    async def accessibility() -> Response:
        from .. import atspi  # D-Bus only when asked: the rest of the server works without a bus

        request = a11y.TreeRequest(max_depth=MAX_TREE_DEPTH, max_nodes=a11y.MAX_NODES, timeout_ms=TREE_TIMEOUT_MS,
                                   details=True)
        try:
            tree = await atspi.read_tree(request)
        except atspi.AccessibilityUnavailable as error:
            return JSONResponse({"AT": to_osworld_xml(None, note=str(error))})
        return JSONResponse({"AT": to_osworld_xml(tree)})

    @app.get("/terminal")
    async def get_terminal() -> Response:
        focused = next((w for w in await screen.windows() if w.focused), None)
        output = await terminal.focused_terminal_text(focused.pid if focused else None)
        return JSONResponse({"output": output, "status": "success"})

    # -- windows ----------------------------------------------------------------------------

    async def _named_window(request: Request) -> int:
        """The id of the window the body's window_name (strict, by_class) names; a bad body is
        a 400 and no such window a 404, raised as BadRequest."""
        body = await _json(request)
        name, strict, by_class = body.get("window_name"), body.get("strict", False), body.get("by_class", False)
        if not isinstance(name, str) or not name:
            raise BadRequest(PlainTextResponse("window_name required", 400))
        if not isinstance(strict, bool) or not isinstance(by_class, bool):
            raise BadRequest(PlainTextResponse("strict and by_class must be true or false", 400))
        window = await screen.find(name, strict, by_class)
        if window is None:
            raise BadRequest(PlainTextResponse(f"Window {name} not found.", 404))
        return window.id

    @app.post("/setup/activate_window")
    async def activate_window(request: Request) -> Response:
        await screen.activate(await _named_window(request))
        return PlainTextResponse("Window activated successfully")

    @app.post("/setup/close_window")
    async def close_window(request: Request) -> Response:
        await screen.close_window(await _named_window(request))
        return PlainTextResponse("Window closed successfully.")

    @app.post("/setup/open_file")
    async def open_file(request: Request) -> Response:
        body = await _json(request)
        given = body.get("path")
        if not isinstance(given, str) or not given:
            return PlainTextResponse("Path not supplied!", 400)
        path = _path(given)
        try:
            if path.exists():
                await asyncio.to_thread(launcher.launch, ["xdg-open", str(path)])
                names: tuple[str, ...] = (path.name, path.stem)
            elif shutil.which(given):
                await asyncio.to_thread(launcher.launch, [given])
                names = (given,)
            else:
                return PlainTextResponse(f"Application/file not found: {given}", 404)
        except x11.LaunchFailed as error:
            return PlainTextResponse(f"Failed to open {given}. Error: {error}", 500)
        if await screen.wait_for_title(names, OPEN_TIMEOUT_S) is None:
            return PlainTextResponse(f"Failed to find window for {names[0]} within {OPEN_TIMEOUT_S:g} seconds.", 500)
        return PlainTextResponse("File opened and window activated successfully")

    # -- files ------------------------------------------------------------------------------

    @app.post("/file")
    async def get_file(request: Request) -> Response:
        form = await _form(request)
        given = form.get("file_path")
        if not isinstance(given, str) or not given:
            return _error(400, "file_path is required")
        path = _path(given)
        if not path.exists():
            return _error(404, "File not found")
        if not path.is_file():
            return _error(400, f"{given} is a directory, not a file")
        return FileResponse(path, filename=path.name, content_disposition_type="attachment")

    @app.post("/setup/upload")
    async def upload(request: Request) -> Response:
        form = await _form(request)
        given, data = form.get("file_path"), form.get("file_data")
        if not isinstance(given, str) or not given or not isinstance(data, UploadFile):
            return _error(400, "file_path and file_data are required")
        path = _path(given)
        try:
            size = await asyncio.to_thread(_save, data, path)
        except OSError as error:
            return _error(500, f"Failed to upload file: {error.strerror or error}")
        return PlainTextResponse(f"File Uploaded: {size} bytes")

    @app.post("/list_directory")
    async def list_directory(request: Request) -> Response:
        body = await _json(request)
        given = body.get("path")
        if not isinstance(given, str) or not given:
            return _error(400, "Missing 'path' parameter")
        path = _path(given)
        if not path.is_dir():
            return _error(400, "The provided path is not a directory")
        return JSONResponse({"directory_tree": await asyncio.to_thread(_tree, path, set())})

    @app.post("/desktop_path")
    async def desktop_path() -> Response:
        path = Path.home() / "Desktop"
        if not path.is_dir():
            return _error(404, f"The desktop user has no Desktop folder ({path}).")
        return JSONResponse({"desktop_path": str(path)})

    @app.post("/wallpaper")
    async def wallpaper() -> Response:
        return _error(404, "Wallpaper file not found: the desktop's background is a plain colour.")

    @app.post("/setup/change_wallpaper")
    async def change_wallpaper() -> Response:
        return PlainTextResponse("Changing the wallpaper is not supported here: the desktop has no GNOME settings.", 501)

    @app.post("/setup/download_file")
    async def download_file() -> Response:
        return PlainTextResponse("Downloads by the desktop are not supported: download on the host and use "
                                 "/setup/upload (as OSWorld's SetupController does).", 501)

    # -- recordings -------------------------------------------------------------------------

    @app.post("/start_recording")
    async def start_recording() -> Response:
        try:
            await recorder.start(await screen.size())
        except RecordingError as error:
            return JSONResponse({"status": "error", "message": str(error)}, error.status)
        return JSONResponse({"status": "success", "message": "Started recording successfully."})

    @app.post("/end_recording")
    async def end_recording() -> Response:
        try:
            path = await recorder.stop()
        except RecordingError as error:
            return JSONResponse({"status": "error", "message": str(error)}, error.status)
        return FileResponse(path, media_type="video/mp4", filename="recording.mp4", content_disposition_type="attachment")

    return app


def _save(data: UploadFile, path: Path) -> int:
    """Written whole or not at all: into a temporary file beside the target, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            data.file.seek(0)
            shutil.copyfileobj(data.file, out, 1024 * 1024)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path.stat().st_size


def _tree(path: Path, seen: set[tuple[int, int]]) -> dict[str, Any]:
    """OSWorld's directory tree. A folder reached twice (through a symbolic link) is listed
    without its contents the second time, so that a loop ends."""
    try:
        status = path.stat()
        key = (status.st_dev, status.st_ino)
        if key in seen:
            return {"type": "directory", "name": path.name, "children": []}
        seen.add(key)
        children = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_dir():
                children.append(_tree(Path(entry.path), seen))
            else:
                children.append({"type": "file", "name": entry.name})
    except OSError as error:
        return {"error": str(error)}
    return {"type": "directory", "name": path.name, "children": children}


def serve(display: str | None, host: str, port: int) -> None:
    """`cubicle osworld`: the server in the foreground (supervisord's program osworld)."""
    import uvicorn

    display = display or os.environ.get("DISPLAY") or ":0"
    os.environ["DISPLAY"] = display
    # What /execute runs is `python -c "import pyautogui ..."`: `python` must be this
    # interpreter, whose environment has pyautogui, whatever PATH the desktop started with.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.chdir(os.path.expanduser("~"))
    print(f"cubicle osworld: display {display}, http://{host}:{port} (OSWorld's protocol: no credentials, runs any "
          "code it is sent as this user)", file=sys.stderr, flush=True)
    uvicorn.run(create_osworld_app(display), host=host, port=port, log_level="warning", access_log=False)
