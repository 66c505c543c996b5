"""A local stand-in for the Anthropic Messages API that replays scripted turns.

The real `anthropic` SDK talks to it through `base_url` (or ANTHROPIC_BASE_URL), so the
worker's requests go through the SDK's real serialisation, headers and retries. Each turn is a
function of the request body (it may look at the screenshots it was sent) returning a
response, or an `Error(status)` to answer with that HTTP error. The tests and `cubicle bench
--agent` use it; it also lets anyone try the worker without an API key.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

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


def tool_use(name: str, tool_input: dict[str, Any], toolset: bool = False) -> dict[str, Any]:
    block = {"type": "tool_use", "id": f"toolu_{next(_ids):06d}", "name": name, "input": tool_input}
    if toolset:
        block["toolset_name"] = "computer"
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


class ScriptedAPI:
    def __init__(self, turns: list[Turn]):
        self.turns = list(turns)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with api._lock:
                    api.requests.append(body)
                    api.headers.append(dict(self.headers))
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
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.failure: Exception | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
