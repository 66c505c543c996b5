"""The MCP face through the fleet: /desktops/{id}/mcp is proxied like any route of the desktop,
its streamed answers (server-sent events) included, with that desktop's token; and
`cubicle mcp --desktop <fleet>/desktops/{id}` over stdio. A desktop in a container of the
image built from this checkout, on the Docker engine."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from cubicle.fleet.backends.docker import OWNER_LABEL
from cubicle.fleet.client import FleetClient
from engines import desktop_image, docker_client, new_fleet
from mcp_clients import image_of, ok, over_http, over_stdio, text_of, token_file

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

HOME = "/var/lib/cubicle/home"  # the desktop user's, in the image
TYPED = "Grüße — ✓ 日本語 😀\n"


@pytest.fixture
def fleet(tmp_path):
    fleet = new_fleet("docker", tmp_path, "--image", desktop_image(), "--max-desktops", "2").start()
    try:
        yield fleet
    finally:
        fleet.stop()
        engine = docker_client()
        label = {"label": f"{OWNER_LABEL}={fleet.name}"}
        for container in engine.containers.list(all=True, filters=label):
            container.remove(force=True)
        for network in engine.networks.list(filters=label):
            network.remove()


def test_mcp_through_the_fleet_over_both_transports(fleet, tmp_path):
    with FleetClient(fleet.url, fleet.token) as api:
        desktop = api.create()
        url = desktop.urls.api
        target = f"{HOME}/typed.txt"

        # The handshake's answer comes as server-sent events, and they pass the proxy as they are.
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {desktop.token}"}
        opened = httpx.post(url + "/mcp", json=initialize, headers=headers, timeout=60)
        assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/event-stream")
        event = next(line for line in opened.text.splitlines() if line.startswith("data:"))
        assert json.loads(event[5:])["result"]["serverInfo"]["name"] == "cubicle"
        session = opened.headers["mcp-session-id"]
        assert httpx.delete(url + "/mcp", headers={**headers, "mcp-session-id": session}, timeout=60).status_code == 200
        for wrong in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxxxxxxxxxx"}):
            refused = httpx.post(url + "/mcp", json=initialize, headers={"Accept": headers["Accept"], **wrong}, timeout=60)
            assert refused.status_code == 401 and "mcp-session-id" not in refused.headers

        async def over_http_session():
            async with over_http(url, desktop.token) as mcp:
                assert len((await mcp.list_tools()).tools) == 27
                assert image_of(ok(await mcp.call_tool("screenshot", {"max_width": 640}))).size == (640, 400)
                launched = ok(await mcp.call_tool("launch", {"command": ["xterm", "-e", "sh", "-c", f"cat > {target}"],
                                                             "timeout": 60}))
                window = launched.structured_content["window"]
                assert window is not None, text_of(launched)
                ok(await mcp.call_tool("activate_window", {"window_id": window["id"]}))
                ok(await mcp.call_tool("type", {"text": TYPED}))
                ok(await mcp.call_tool("key", {"text": "ctrl+d"}))
                outside = await mcp.call_tool("left_click", {"coordinate": [640, 0]})
                assert outside.is_error and text_of(outside) == "Coordinates (640, 0) are outside display bounds (640x400)."

        asyncio.run(over_http_session())
        with FleetClient.desktop(desktop) as direct:  # the desktop's own API says what the app saved
            deadline = time.monotonic() + 30
            while direct.shell(f"cat {target} 2>/dev/null").output != TYPED and time.monotonic() < deadline:
                time.sleep(0.5)
            assert direct.read_file(target).content == TYPED

        async def over_stdio_session():
            async with over_stdio(url, token_file(tmp_path, desktop.token)) as mcp:
                answer = ok(await mcp.call_tool("read_file", {"path": target}))
                assert answer.structured_content["content"] == TYPED
                assert ok(await mcp.call_tool("shell", {"command": "id -un"})).structured_content["output"] == "cubicle\n"

        asyncio.run(over_stdio_session())
        api.delete(desktop.id)
