"""OSWorld's in-desktop protocol on a real desktop (`cubicle desktop --osworld`), route by route,
with OSWorld's paths, methods, body kinds and answers, each effect checked on the desktop itself:
the file really is there, the window really is focused, the pointer really moved."""

from __future__ import annotations

import json
import os
import subprocess
import time
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from PIL import Image

from osworld_support import desktop_env, osworld_desktop
from support import wait_until

pytestmark = pytest.mark.desktop


@pytest.fixture(scope="module")
def osworld(tmp_path_factory):
    with osworld_desktop(tmp_path_factory.mktemp("osworld-desktop")) as (desktop, address):
        with httpx.Client(base_url=f"http://{address}", timeout=60) as http:
            yield desktop, http


@pytest.fixture(scope="module")
def home(osworld) -> Path:
    desktop, _ = osworld
    return desktop.state_dir / "home"


def execute(http, command, shell=False) -> dict:
    response = http.post("/execute", json={"command": command, "shell": shell})
    assert response.status_code == 200, response.text
    return response.json()


def pyautogui(http, code: str) -> dict:
    return execute(http, ["python", "-c", "import pyautogui; import time; pyautogui.FAILSAFE = False; " + code])


def windows(desktop) -> list[dict]:
    answer = httpx.get(desktop.url + "/windows", headers={"Authorization": f"Bearer {desktop.token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_it_listens_on_localhost_only(osworld):
    _, http = osworld
    port = int(str(http.base_url).rsplit(":", 1)[1].rstrip("/"))
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    assert listening.split()[3] == f"127.0.0.1:{port}", listening


def test_screenshot_is_a_png_of_the_screen_with_the_pointer(osworld):
    _, http = osworld
    pyautogui(http, "pyautogui.moveTo(600, 400)")
    response = http.get("/screenshot")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(BytesIO(response.content)).convert("RGB")
    assert image.size == (1280, 800)
    # The plain background is one colour; the arrow pointer drawn at (600, 400) is not.
    background = image.getpixel((700, 300))
    pointer = {image.getpixel((600 + dx, 400 + dy)) for dx in range(0, 6) for dy in range(0, 12)}
    assert pointer - {background}


def test_execute_runs_pyautogui_as_the_desktop_user_and_moves_the_pointer(osworld):
    desktop, http = osworld
    result = pyautogui(http, "pyautogui.moveTo(321, 123); print(pyautogui.position())")
    assert result["status"] == "success" and result["returncode"] == 0, result
    assert result["output"].strip() == "Point(x=321, y=123)"
    assert http.get("/cursor_position").json() == [321, 123]
    # the same, seen through cubicle's own API
    cursor = httpx.get(desktop.url + "/cursor", headers={"Authorization": f"Bearer {desktop.token}"}).json()
    assert (cursor["x"], cursor["y"]) == (321, 123)


def test_execute_forms_string_shell_and_home_expansion(osworld, home):
    _, http = osworld
    assert execute(http, "echo 'two words' three")["output"] == "two words three\n"
    assert execute(http, "echo $((6*7)) >&2; exit 3", shell=True) | {"status": "success"} == {
        "status": "success", "output": "", "error": "42\n", "returncode": 3}
    assert execute(http, ["ls", "-d", "~/"])["output"].strip() == str(home) + "/"
    assert http.post("/setup/execute", json={"command": ["true"]}).json()["returncode"] == 0


def test_execute_refuses_bad_input_with_a_message(osworld):
    _, http = osworld
    for body in ({}, {"command": []}, {"command": 5}, {"command": "ls", "shell": "yes"}):
        response = http.post("/execute", json=body)
        assert response.status_code == 400 and response.json()["status"] == "error", body
        assert response.json()["message"]
    response = http.post("/execute", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "not JSON" in response.json()["message"]
    missing = http.post("/execute", json={"command": ["no-such-program-here"]})
    assert missing.status_code == 500 and "no-such-program-here" in missing.json()["message"]


def test_run_python_and_run_bash_script(osworld, home):
    _, http = osworld
    answer = http.post("/run_python", json={"code": "import sys; print('out'); print('err', file=sys.stderr)"}).json()
    assert (answer["status"], answer["output"], answer["error"], answer["return_code"]) == ("success", "out\n", "err\n", 0)
    failed = http.post("/run_python", json={"code": "raise SystemExit(4)"}).json()
    assert failed["status"] == "error" and failed["return_code"] == 4
    assert http.post("/run_python", json={}).status_code == 400
    bash = http.post("/run_bash_script", json={"script": "pwd; echo oops >&2; exit 1", "working_dir": "~"}).json()
    assert bash == {"status": "error", "output": f"{home}\noops\n", "error": "", "returncode": 1}
    slow = http.post("/run_bash_script", json={"script": "sleep 5", "timeout": 0.5})
    assert slow.status_code == 500 and "timed out after 0.5 seconds" in slow.json()["output"]
    assert http.post("/run_bash_script", json={"script": "true", "working_dir": "/no/such"}).status_code == 400


def test_upload_then_file_then_list_directory(osworld, home, tmp_path):
    _, http = osworld
    payload = os.urandom(300_000)
    response = http.post("/setup/upload", data={"file_path": "~/osworld/in/deep/blob.bin"},
                         files={"file_data": ("blob.bin", payload)})
    assert response.status_code == 200 and response.text == f"File Uploaded: {len(payload)} bytes"
    assert (home / "osworld/in/deep/blob.bin").read_bytes() == payload  # on the desktop itself
    fetched = http.post("/file", data={"file_path": "$HOME/osworld/in/deep/blob.bin"})
    assert fetched.status_code == 200 and fetched.content == payload
    assert "attachment" in fetched.headers["content-disposition"]
    (home / "osworld/in/note.txt").write_text("n")
    tree = http.post("/list_directory", json={"path": str(home / "osworld")}).json()["directory_tree"]
    assert tree == {"type": "directory", "name": "osworld", "children": [
        {"type": "directory", "name": "in", "children": [
            {"type": "directory", "name": "deep", "children": [{"type": "file", "name": "blob.bin"}]},
            {"type": "file", "name": "note.txt"}]}]}


def test_file_routes_refuse_bad_input_and_change_nothing(osworld, home):
    _, http = osworld
    assert http.post("/file", data={"file_path": "~/no-such-file"}).json() == {"error": "File not found"}
    assert http.post("/file", data={"file_path": "~/no-such-file"}).status_code == 404
    assert http.post("/file", data={}).status_code == 400
    refused = http.post("/setup/upload", data={"file_path": "~/never/made.txt"})
    assert refused.status_code == 400 and refused.json() == {"error": "file_path and file_data are required"}
    assert not (home / "never").exists()
    assert http.post("/list_directory", json={"path": "~/no-such-dir"}).status_code == 400
    assert http.post("/list_directory", json={}).json() == {"error": "Missing 'path' parameter"}


def test_platform_and_screen_size(osworld):
    _, http = osworld
    assert http.get("/platform").text == "Linux"
    assert http.post("/screen_size").json() == {"width": 1280, "height": 800}


def test_open_file_waits_for_its_window_then_windows_are_found_activated_and_closed(osworld, home):
    desktop, http = osworld
    (home / "letter.txt").write_text("Dear OSWorld,\n")
    started = time.monotonic()
    response = http.post("/setup/open_file", json={"path": "~/letter.txt"}, timeout=120)
    assert response.status_code == 200, response.text
    # Blocking: the window is there, with the file's name, and focused, when it answers.
    window = next(w for w in windows(desktop) if "letter.txt" in w["title"])
    assert window["focused"] and window["wm_class"] == "Mousepad", window
    assert time.monotonic() - started < 60
    size = http.post("/window_size", data={"app_class_name": "mousepad"}).json()
    assert size == {"width": window["width"], "height": window["height"]}
    assert http.post("/window_size", data={"app_class_name": "no-such-app"}).status_code == 404
    # Another window on top, then activation by class (wmctrl -x) brings Mousepad back.
    http.post("/setup/launch", json={"command": ["xterm", "-T", "other-window"]})
    wait_until(lambda: any(w["title"] == "other-window" and w["focused"] for w in windows(desktop)), 20, "xterm focused")
    activated = http.post("/setup/activate_window", json={"window_name": "mousepad.Mousepad", "by_class": True})
    assert activated.status_code == 200, activated.text
    wait_until(lambda: next(w for w in windows(desktop) if "letter.txt" in w["title"])["focused"], 10, "mousepad focused")
    strict = http.post("/setup/activate_window", json={"window_name": "other-WINDOW", "strict": True})
    assert strict.status_code == 404
    closed = http.post("/setup/close_window", json={"window_name": "OTHER-window"})  # substring, any case
    assert closed.status_code == 200
    wait_until(lambda: not any(w["title"] == "other-window" for w in windows(desktop)), 10, "xterm closed")
    assert http.post("/setup/activate_window", json={}).status_code == 400
    assert http.post("/setup/open_file", json={"path": "~/not-there.txt"}).status_code == 404


def test_accessibility_is_osworlds_xml_that_its_own_metric_reads(osworld, home):
    _, http = osworld
    (home / "a11y.txt").write_text("accessible words here\n")
    assert http.post("/setup/open_file", json={"path": "~/a11y.txt"}, timeout=120).status_code == 200
    metrics = desktop_env().metrics

    def tree() -> str:
        response = http.get("/accessibility")
        assert response.status_code == 200
        return response.json()["AT"]

    rules = [{"selectors": ['application[name="mousepad"] text[st|editable="true"]'], "text": "accessible words here\n",
              "exact": True}]
    wait_until(lambda: metrics.check_accessibility_tree(tree(), rules) == 1.0, 30, "the editor's text in the tree")
    xml = tree()
    assert xml.startswith("<desktop-frame") and 'xmlns:st="https://accessibility.ubuntu.example.org/ns/state"' in xml
    from lxml import etree

    root = etree.fromstring(xml)
    frame = root.find(".//frame")
    assert frame is not None and "a11y.txt" in frame.get("name")
    component = "{https://accessibility.ubuntu.example.org/ns/component}"
    assert frame.get(component + "screencoord").startswith("(") and frame.get(component + "size").startswith("(")
    # and what OSWorld's agents keep of it for the model: visible, enabled nodes with a box
    import xml.etree.ElementTree as ET

    from mm_agents.accessibility_tree_wrap.heuristic_retrieve import filter_nodes

    kept = filter_nodes(ET.fromstring(xml))
    assert any(node.tag == "text" and node.text == "accessible words here\n" for node in kept)
    assert metrics.check_accessibility_tree(xml, [{"selectors": ['text[name="nothing like it"]']}]) == 0.0


def test_terminal_answers_the_focused_terminals_text(osworld):
    desktop, http = osworld
    assert http.get("/terminal").json() == {"output": None, "status": "success"}  # the focused window is no terminal
    assert http.post("/setup/launch", json={"command": "python -m cubicle osworld-terminal", "shell": True}).status_code == 200
    wait_until(lambda: any(w["title"] == "Terminal" and w["focused"] for w in windows(desktop)), 20, "the terminal")
    time.sleep(0.5)  # the shell's prompt
    pyautogui(http, "pyautogui.typewrite('echo answer-$((40+2))\\n')")
    wait_until(lambda: "answer-42" in (http.get("/terminal").json()["output"] or ""), 10, "the echo in the terminal")
    output = http.get("/terminal").json()["output"]
    assert "echo answer-$((40+2))" in output and output.splitlines()[-2] == "answer-42" and output == output.rstrip()
    http.post("/setup/close_window", json={"window_name": "Terminal", "strict": True})


def test_recording_is_an_mp4_of_the_screen(osworld, tmp_path):
    _, http = osworld
    assert http.post("/end_recording").status_code == 400
    started = http.post("/start_recording")
    assert started.status_code == 200 and started.json()["status"] == "success"
    assert http.post("/start_recording").status_code == 400  # one at a time
    pyautogui(http, "pyautogui.moveTo(100, 100, duration=0.5)")
    time.sleep(1)
    ended = http.post("/end_recording")
    assert ended.status_code == 200 and ended.headers["content-type"] == "video/mp4"
    video = tmp_path / "recording.mp4"
    video.write_bytes(ended.content)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
                                       "-show_format", str(video)], capture_output=True, text=True, check=True).stdout)
    assert probe["streams"][0]["codec_name"] == "h264"
    assert (probe["streams"][0]["width"], probe["streams"][0]["height"]) == (1280, 800)
    assert float(probe["format"]["duration"]) >= 1.0
    assert http.post("/end_recording").status_code == 400


def test_execute_with_verification(osworld, home):
    _, http = osworld
    passed = http.post("/setup/execute_with_verification", json={
        "command": f"sleep 0.3; touch {home}/verified", "shell": True,
        "verification": {"command_success": f"test -f {home}/verified"}, "max_wait_time": 5, "check_interval": 0.2})
    assert passed.status_code == 200 and passed.json()["verification"] == "passed"
    failed = http.post("/execute_with_verification", json={
        "command": ["true"], "verification": {"window_exists": "no window is called this"},
        "max_wait_time": 0.5, "check_interval": 0.1})
    assert failed.status_code == 500 and failed.json()["verification"] == "failed"
