"""Typed HTTP client of the desktop API, sync (`DesktopClient`) and async (`AsyncDesktopClient`).

Both share one description of every call (`_Call`) and one way of reading answers, so they
cannot drift apart. Errors come back as `CubicleError` with the server's code and message.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx
from pydantic import TypeAdapter

from . import accessibility as t
from . import actions as a
from . import recording as rec

ActionLike = a.Click | a.MouseMove | a.Drag | a.MouseButton | a.Scroll | a.Key | a.HoldKey | a.Type | a.Wait | a.CursorPosition | a.Screenshot | a.Zoom | Mapping[str, Any]
_windows = TypeAdapter(list[a.Window])


class CubicleError(Exception):
    """The server refused or failed a request."""

    def __init__(self, status: int, code: str, message: str, response: a.ActionResponse | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.response = response  # for /actions: the per-action results


@dataclass(frozen=True)
class Screenshot:
    data: bytes
    media_type: str
    width: int
    height: int
    screen_width: int
    screen_height: int
    scale_x: float
    scale_y: float
    region: tuple[int, int, int, int] | None = None
    settle_ms: float | None = None

    @classmethod
    def from_image_data(cls, image: a.ImageData) -> Screenshot:
        return cls(
            data=base64.b64decode(image.data), media_type=image.media_type, width=image.width,
            height=image.height, screen_width=image.screen_width, screen_height=image.screen_height,
            scale_x=image.scale_x, scale_y=image.scale_y, region=image.region, settle_ms=image.settle_ms,
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> Screenshot:
        h = response.headers
        region = (cast(tuple[int, int, int, int], tuple(int(v) for v in h["x-region"].split(",")))  # x, y, width, height
                  if "x-region" in h else None)
        return cls(
            data=response.content, media_type=h["content-type"], width=int(h["x-image-width"]),
            height=int(h["x-image-height"]), screen_width=int(h["x-screen-width"]),
            screen_height=int(h["x-screen-height"]), scale_x=float(h["x-scale-x"]),
            scale_y=float(h["x-scale-y"]), region=region,
            settle_ms=float(h["x-settle-ms"]) if "x-settle-ms" in h else None,
        )


@dataclass
class _Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None


def _action_dict(action: ActionLike) -> dict[str, Any]:
    if isinstance(action, Mapping):
        return dict(action)
    return action.model_dump(exclude_none=True)


def _batch_call(
    actions: Iterable[ActionLike],
    coordinate_space: tuple[int, int] | None,
    screenshot: bool | a.ImageOptions | Mapping[str, Any],
    settle: a.SettleOptions | Mapping[str, Any] | None,
) -> _Call:
    body: dict[str, Any] = {"actions": [_action_dict(action) for action in actions]}
    if coordinate_space is not None:
        body["coordinate_space"] = {"width": coordinate_space[0], "height": coordinate_space[1]}
    if screenshot is not False:
        body["screenshot"] = screenshot.model_dump(exclude_none=True) if isinstance(screenshot, a.ImageOptions) else screenshot
    if settle is not None:
        body["settle"] = settle.model_dump() if isinstance(settle, a.SettleOptions) else dict(settle)
    # Long waits and holds are legal (up to 300 s): give the request time to finish.
    waited = sum(float(action.get("duration", 0) or 0) for action in body["actions"])
    return _Call("POST", "/actions", json=body, timeout=60.0 + waited)


def _screenshot_call(**options: Any) -> _Call:
    region = options.pop("region", None)
    params = {key: value for key, value in options.items() if value is not None and value is not False}
    params = {key: ("true" if value is True else value) for key, value in params.items()}
    if region is not None:
        params["region"] = ",".join(str(int(v)) for v in region)
    return _Call("GET", "/screenshot", params=params)


def _accessibility_call(window: int | None, focused: bool, coordinate_space: tuple[int, int] | None,
                        **limits: Any) -> _Call:
    params = {key: ("true" if value is True else value) for key, value in limits.items()
              if value is not None and value is not False}
    if window is not None:
        params["window"] = window
    if focused:
        params["focused"] = "true"
    if coordinate_space is not None:
        params["coordinate_space"] = f"{coordinate_space[0]}x{coordinate_space[1]}"
    # The server answers by timeout_ms (default 5 s) with what it read by then.
    return _Call("GET", "/accessibility", params=params, timeout=(limits.get("timeout_ms") or 5000) / 1000 + 30.0)


def _recording_start_call(format: str, frame_rate: int | None, max_seconds: int | None,
                          max_megabytes: int | None) -> _Call:
    body = {"format": format, "frame_rate": frame_rate, "max_seconds": max_seconds, "max_megabytes": max_megabytes}
    return _Call("POST", "/recording/start", json={key: value for key, value in body.items() if value is not None})


def _shell_call(command: str, timeout: float) -> _Call:
    # The server answers once the command ends or its timeout kills it (plus up to ~2 s to
    # collect the last output): the request must outlast that.
    return _Call("POST", "/shell/run", json={"command": command, "timeout": timeout}, timeout=timeout + 30.0)


def _raise_for_error(response: httpx.Response, batch: bool = False) -> None:
    if response.status_code < 400:
        return
    try:
        payload = response.json()
        error = payload.get("error", {})
        code, message = error.get("code", "http_error"), error.get("message", response.text)
    except ValueError:
        payload, code, message = None, "http_error", response.text
    parsed = a.ActionResponse.model_validate(payload) if batch and payload and "results" in payload else None
    raise CubicleError(response.status_code, code, message, parsed)


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("CUBICLE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


_HTTP = TypeVar("_HTTP", httpx.Client, httpx.AsyncClient)


class _Addressed(Generic[_HTTP]):
    """What both clients say of where they send requests, read from their httpx client."""

    _http: _HTTP

    @property
    def base_url(self) -> str:
        """The desktop's address, as given (for the fleet: .../desktops/{id})."""
        return str(self._http.base_url).rstrip("/")

    @property
    def token(self) -> str | None:
        """The token this client sends (for a driver that opens another connection to the
        same desktop, such as the browser's CDP)."""
        authorization = self._http.headers.get("authorization", "")
        return authorization[7:] if authorization.startswith("Bearer ") else None


class DesktopClient(_Addressed[httpx.Client]):
    """Blocking client. `with DesktopClient(url, token) as desktop: desktop.click(10, 20)`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float | httpx.Timeout = 30.0, **httpx_options: Any):
        self._http = httpx.Client(base_url=base_url, headers=_headers(token), timeout=timeout, **httpx_options)

    def __enter__(self) -> DesktopClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call, batch: bool = False) -> httpx.Response:
        timeout = call.timeout if call.timeout else httpx.USE_CLIENT_DEFAULT
        response = self._http.request(call.method, call.path, params=call.params or None, json=call.json, timeout=timeout)
        _raise_for_error(response, batch)
        return response

    def health(self) -> a.Health:
        response = self._http.get("/health")  # 503 still carries the parts' states
        return a.Health.model_validate(response.json())

    def screen(self) -> a.ScreenInfo:
        return a.ScreenInfo.model_validate(self._send(_Call("GET", "/screen")).json())

    def screenshot(self, format: str = "png", quality: int | None = None, max_width: int | None = None,
                   max_height: int | None = None, scale: float | None = None,
                   region: tuple[int, int, int, int] | None = None, cursor: bool = False,
                   settle: bool = False) -> Screenshot:
        call = _screenshot_call(format=format, quality=quality, max_width=max_width, max_height=max_height,
                                scale=scale, region=region, cursor=cursor, settle=settle)
        return Screenshot.from_response(self._send(call))

    def act(self, *actions: ActionLike, coordinate_space: tuple[int, int] | None = None,
            screenshot: bool | a.ImageOptions | Mapping[str, Any] = False,
            settle: a.SettleOptions | Mapping[str, Any] | None = None) -> a.ActionResponse:
        """Run actions as one batch; raises CubicleError (with .response) if any fails."""
        call = _batch_call(actions, coordinate_space, screenshot, settle)
        return a.ActionResponse.model_validate(self._send(call, batch=True).json())

    def click(self, x: int, y: int, button: str = "left", modifiers: str | None = None) -> a.ActionResponse:
        return self.act({"action": f"{button}_click", "coordinate": [x, y], "text": modifiers})

    def type(self, text: str) -> a.ActionResponse:
        return self.act({"action": "type", "text": text})

    def key(self, combo: str, repeat: int = 1) -> a.ActionResponse:
        return self.act({"action": "key", "text": combo, "repeat": repeat})

    def cursor(self) -> a.Point:
        return a.Point.model_validate(self._send(_Call("GET", "/cursor")).json())

    def windows(self) -> list[a.Window]:
        return _windows.validate_python(self._send(_Call("GET", "/windows")).json())

    def activate(self, window_id: int) -> a.WindowActionResponse:
        return a.WindowActionResponse.model_validate(self._send(_Call("POST", f"/windows/{window_id}/activate")).json())

    def close_window(self, window_id: int) -> a.WindowActionResponse:
        return a.WindowActionResponse.model_validate(self._send(_Call("POST", f"/windows/{window_id}/close")).json())

    def launch(self, command: str | list[str], wait_for_window: bool = True, timeout: float = 20.0) -> a.LaunchResponse:
        body = {"command": command, "wait_for_window": wait_for_window, "timeout": timeout}
        return a.LaunchResponse.model_validate(self._send(_Call("POST", "/apps/launch", json=body, timeout=timeout + 10)).json())

    def get_clipboard(self) -> str:
        text: str = self._send(_Call("GET", "/clipboard")).json()["text"]
        return text

    def apps(self) -> list[dict[str, Any]]:
        """The desktop's programs: command, description, installed."""
        apps: list[dict[str, Any]] = self._send(_Call("GET", "/apps")).json()["apps"]
        return apps

    def set_clipboard(self, text: str) -> None:
        self._send(_Call("PUT", "/clipboard", json={"text": text}))

    # -- shell and files --

    def shell(self, command: str, timeout: float = 30.0) -> a.ShellResult:
        """Run bash commands in the desktop's persistent shell; a timeout is an answer (timed_out), not an error."""
        return a.ShellResult.model_validate(self._send(_shell_call(command, timeout)).json())

    def restart_shell(self) -> None:
        self._send(_Call("POST", "/shell/restart"))

    def read_file(self, path: str) -> a.FileInfo:
        return a.FileInfo.model_validate(self._send(_Call("GET", "/files", params={"path": path})).json())

    def write_file(self, path: str, content: str, create_dirs: bool = False) -> a.FileWritten:
        body = {"path": path, "content": content, "create_dirs": create_dirs}
        return a.FileWritten.model_validate(self._send(_Call("PUT", "/files", json=body)).json())

    def accessibility(self, window: int | None = None, focused: bool = False, max_depth: int | None = None,
                      max_nodes: int | None = None, timeout_ms: int | None = None, app_timeout_ms: int | None = None,
                      visible_only: bool = False, interactive_only: bool = False, details: bool = False,
                      coordinate_space: tuple[int, int] | None = None) -> t.AccessibilityTree:
        """The apps' accessibility tree (GET /accessibility): the whole desktop, one window, or the focused one."""
        call = _accessibility_call(window, focused, coordinate_space, max_depth=max_depth, max_nodes=max_nodes,
                                   timeout_ms=timeout_ms, app_timeout_ms=app_timeout_ms, visible_only=visible_only,
                                   interactive_only=interactive_only, details=details)
        return t.AccessibilityTree.model_validate(self._send(call).json())

    # -- screen recording --

    def start_recording(self, format: str = "mp4", frame_rate: int | None = None, max_seconds: int | None = None,
                        max_megabytes: int | None = None) -> rec.RecordingInfo:
        """Start recording the screen (409 recording_running if one is running already)."""
        call = _recording_start_call(format, frame_rate, max_seconds, max_megabytes)
        return rec.RecordingInfo.model_validate(self._send(call).json())

    def stop_recording(self) -> rec.RecordingInfo:
        """Stop the recording (ffmpeg finishes the file: up to some seconds) and say where its video is."""
        return rec.RecordingInfo.model_validate(self._send(_Call("POST", "/recording/stop", timeout=60.0)).json())

    def recordings(self) -> rec.RecordingStatus:
        return rec.RecordingStatus.model_validate(self._send(_Call("GET", "/recording")).json())

    def download_recording(self, recording_id: str, path: str | os.PathLike[str]) -> int:
        """Write a finished recording's video to `path`; returns its size in bytes."""
        with self._http.stream("GET", f"/recording/{recording_id}", timeout=300.0) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for_error(response)
            size = 0
            with open(path, "wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    size += len(chunk)
        return size

    def delete_recording(self, recording_id: str) -> None:
        self._send(_Call("DELETE", f"/recording/{recording_id}"))


class AsyncDesktopClient(_Addressed[httpx.AsyncClient]):
    """The same API for asyncio code: every method is a coroutine."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float | httpx.Timeout = 30.0, **httpx_options: Any):
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(token), timeout=timeout, **httpx_options)

    async def __aenter__(self) -> AsyncDesktopClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call, batch: bool = False) -> httpx.Response:
        timeout = call.timeout if call.timeout else httpx.USE_CLIENT_DEFAULT
        response = await self._http.request(call.method, call.path, params=call.params or None, json=call.json, timeout=timeout)
        _raise_for_error(response, batch)
        return response

    async def health(self) -> a.Health:
        response = await self._http.get("/health")
        return a.Health.model_validate(response.json())

    async def screen(self) -> a.ScreenInfo:
        return a.ScreenInfo.model_validate((await self._send(_Call("GET", "/screen"))).json())

    async def screenshot(self, format: str = "png", quality: int | None = None, max_width: int | None = None,
                         max_height: int | None = None, scale: float | None = None,
                         region: tuple[int, int, int, int] | None = None, cursor: bool = False,
                         settle: bool = False) -> Screenshot:
        call = _screenshot_call(format=format, quality=quality, max_width=max_width, max_height=max_height,
                                scale=scale, region=region, cursor=cursor, settle=settle)
        return Screenshot.from_response(await self._send(call))

    async def act(self, *actions: ActionLike, coordinate_space: tuple[int, int] | None = None,
                  screenshot: bool | a.ImageOptions | Mapping[str, Any] = False,
                  settle: a.SettleOptions | Mapping[str, Any] | None = None) -> a.ActionResponse:
        call = _batch_call(actions, coordinate_space, screenshot, settle)
        return a.ActionResponse.model_validate((await self._send(call, batch=True)).json())

    async def click(self, x: int, y: int, button: str = "left", modifiers: str | None = None) -> a.ActionResponse:
        return await self.act({"action": f"{button}_click", "coordinate": [x, y], "text": modifiers})

    async def type(self, text: str) -> a.ActionResponse:
        return await self.act({"action": "type", "text": text})

    async def key(self, combo: str, repeat: int = 1) -> a.ActionResponse:
        return await self.act({"action": "key", "text": combo, "repeat": repeat})

    async def cursor(self) -> a.Point:
        return a.Point.model_validate((await self._send(_Call("GET", "/cursor"))).json())

    async def windows(self) -> list[a.Window]:
        return _windows.validate_python((await self._send(_Call("GET", "/windows"))).json())

    async def activate(self, window_id: int) -> a.WindowActionResponse:
        return a.WindowActionResponse.model_validate((await self._send(_Call("POST", f"/windows/{window_id}/activate"))).json())

    async def close_window(self, window_id: int) -> a.WindowActionResponse:
        return a.WindowActionResponse.model_validate((await self._send(_Call("POST", f"/windows/{window_id}/close"))).json())

    async def launch(self, command: str | list[str], wait_for_window: bool = True, timeout: float = 20.0) -> a.LaunchResponse:
        body = {"command": command, "wait_for_window": wait_for_window, "timeout": timeout}
        return a.LaunchResponse.model_validate((await self._send(_Call("POST", "/apps/launch", json=body, timeout=timeout + 10))).json())

    async def get_clipboard(self) -> str:
        text: str = (await self._send(_Call("GET", "/clipboard"))).json()["text"]
        return text

    async def set_clipboard(self, text: str) -> None:
        await self._send(_Call("PUT", "/clipboard", json={"text": text}))

    # -- shell and files --

    async def shell(self, command: str, timeout: float = 30.0) -> a.ShellResult:
        return a.ShellResult.model_validate((await self._send(_shell_call(command, timeout))).json())

    async def restart_shell(self) -> None:
        await self._send(_Call("POST", "/shell/restart"))

    async def read_file(self, path: str) -> a.FileInfo:
        return a.FileInfo.model_validate((await self._send(_Call("GET", "/files", params={"path": path}))).json())

    async def write_file(self, path: str, content: str, create_dirs: bool = False) -> a.FileWritten:
        body = {"path": path, "content": content, "create_dirs": create_dirs}
        return a.FileWritten.model_validate((await self._send(_Call("PUT", "/files", json=body))).json())

    async def accessibility(self, window: int | None = None, focused: bool = False, max_depth: int | None = None,
                            max_nodes: int | None = None, timeout_ms: int | None = None,
                            app_timeout_ms: int | None = None, visible_only: bool = False,
                            interactive_only: bool = False, details: bool = False,
                            coordinate_space: tuple[int, int] | None = None) -> t.AccessibilityTree:
        call = _accessibility_call(window, focused, coordinate_space, max_depth=max_depth, max_nodes=max_nodes,
                                   timeout_ms=timeout_ms, app_timeout_ms=app_timeout_ms, visible_only=visible_only,
                                   interactive_only=interactive_only, details=details)
        return t.AccessibilityTree.model_validate((await self._send(call)).json())

    # -- screen recording --

    async def start_recording(self, format: str = "mp4", frame_rate: int | None = None, max_seconds: int | None = None,
                              max_megabytes: int | None = None) -> rec.RecordingInfo:
        call = _recording_start_call(format, frame_rate, max_seconds, max_megabytes)
        return rec.RecordingInfo.model_validate((await self._send(call)).json())

    async def stop_recording(self) -> rec.RecordingInfo:
        return rec.RecordingInfo.model_validate((await self._send(_Call("POST", "/recording/stop", timeout=60.0))).json())

    async def recordings(self) -> rec.RecordingStatus:
        return rec.RecordingStatus.model_validate((await self._send(_Call("GET", "/recording"))).json())

    async def download_recording(self, recording_id: str, path: str | os.PathLike[str]) -> int:
        async with self._http.stream("GET", f"/recording/{recording_id}", timeout=300.0) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for_error(response)
            size = 0
            with open(path, "wb") as file:
                async for chunk in response.aiter_bytes():
                    file.write(chunk)
                    size += len(chunk)
        return size

    async def delete_recording(self, recording_id: str) -> None:
        await self._send(_Call("DELETE", f"/recording/{recording_id}"))
