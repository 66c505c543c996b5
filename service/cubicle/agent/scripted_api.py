"""A local stand-in for the Anthropic Messages API that replays scripted turns.

The real `anthropic` SDK talks to it through `base_url` (or ANTHROPIC_BASE_URL), so the
worker's requests go through the SDK's real serialisation, headers and retries. Each turn is a
function of the request body (it may look at the screenshots it was sent) returning a
response, or an `Error(status)` to answer with that HTTP error. The tests and `cubicle bench
--agent` use it; it also lets anyone try the worker without an API key.

It keeps message threads as the API does (the SDK's tool runner uses them by default): a
request with `thread: {"type": "create"}` starts one, and `{"type": "continue",
"previous_message_id": ...}` sends only the new messages, the system prompt and tools staying
with the thread. Turns always see the whole conversation, as one unthreaded request would
carry it; `wire` keeps the bodies as they arrived.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

Turn = Callable[[dict[str, Any]], "dict[str, Any] | Error"]
_ids = itertools.count(1)


@dataclass
class Error:
    status: int
    kind: str = "overloaded_error"
    message: str = "Overloaded"


def message(*content: dict[str, Any], stop_reason: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    has_tools = any(block["type"] == "tool_use" for block in content)
    return {
        "id": f"msg_{next(_ids):06d}", "type": "message", "role": "assistant", "model": "scripted",
        "content": list(content), "stop_reason": stop_reason or ("tool_use" if has_tools else "end_turn"),
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 1000, "output_tokens": 50, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: dict[str, Any], toolset: bool | str = False) -> dict[str, Any]:
    """A tool call; `toolset` makes it a member call of that toolset (True: "computer")."""
    block = {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": tool_input}
    if toolset:
        block["toolset_name"] = "computer" if toolset is True else toolset
    return block


def last_image(request: dict[str, Any]) -> Image.Image:
    """The newest image in the request (what the model would be looking at)."""
    for msg in reversed(request["messages"]):
        if msg["role"] != "user" or not isinstance(msg["content"], list):
            continue
        for block in reversed(msg["content"]):
            candidates = block.get("content", []) if block.get("type") == "tool_result" else [block]
            for inner in reversed(candidates if isinstance(candidates, list) else []):
                if inner.get("type") == "image":
                    return Image.open(io.BytesIO(base64.b64decode(inner["source"]["data"]))).convert("RGB")
    raise AssertionError("the request carries no image")


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the newest user message."""
    content = request["messages"][-1]["content"]
    return [block for block in content if isinstance(block, dict) and block.get("type") == "tool_result"]


class _ThreadRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class ScriptedAPI:
    def __init__(self, turns: list[Turn], host: str = "127.0.0.1"):
        """Listens on `host` (a port of its own): 127.0.0.1, or an address containers reach."""
        self.turns = list(turns)
        self.requests: list[dict[str, Any]] = []  # whole conversations, threads resolved
        self.wire: list[dict[str, Any]] = []  # the bodies as sent
        self.headers: list[dict[str, str]] = []
        self._threads: dict[str, dict[str, Any]] = {}  # reply id -> the request it answered, and the reply
        self._continued: set[str] = set()
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                wire = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with api._lock:
                    api.wire.append(wire)
                    api.headers.append(dict(self.headers))
                    try:
                        body = api._whole_request(wire)
                    except _ThreadRefused as refused:
                        self._answer(refused.status, {"type": "error", "error": {
                            "type": "not_found_error" if refused.status == 404 else "invalid_request_error",
                            "message": refused.message, "details": {"error_code": refused.code}}})
                        return
                    api.requests.append(body)
                    turn = api.turns.pop(0) if api.turns else (lambda _: message(text("(script exhausted)")))
                try:
                    answer = turn(body)
                except Exception as error:  # a failed check in a turn: make it visible
                    answer = Error(500, "api_error", f"scripted turn raised {error!r}")
                    api.failure = error
                if isinstance(answer, Error):
                    payload = {"type": "error", "error": {"type": answer.kind, "message": answer.message}}
                    status = answer.status
                else:
                    payload, status = answer, 200
                    if "thread" in wire:
                        with api._lock:
                            api._threads[answer["id"]] = {"request": body, "reply": answer}
                self._answer(status, payload)

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.failure: Exception | None = None
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _whole_request(self, wire: dict[str, Any]) -> dict[str, Any]:
        """The request as one unthreaded body: a continued thread's earlier messages, system
        prompt and tools put back in front of what was sent."""
        thread = wire.get("thread")
        if not thread or thread.get("type") == "create":
            return {key: value for key, value in wire.items() if key != "thread"}
        previous = thread.get("previous_message_id")
        if previous not in self._threads:
            raise _ThreadRefused(404, "thread_not_found", f"No thread ends with message {previous!r}.")
        if previous in self._continued:
            raise _ThreadRefused(409, "thread_already_continued", f"Message {previous!r} was continued already.")
        self._continued.add(previous)
        earlier = self._threads[previous]
        reply = {"role": "assistant", "content": earlier["reply"]["content"]}
        whole = {**earlier["request"], **{key: value for key, value in wire.items() if key != "thread"}}
        whole["messages"] = earlier["request"]["messages"] + [reply] + list(wire.get("messages") or [])
        return whole

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
