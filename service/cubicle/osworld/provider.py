"""The provider through which OSWorld's DesktopEnv (desktop-env 1.0.2) gets cubicle desktops.

    from desktop_env.desktop_env import DesktopEnv
    from cubicle.osworld.provider import install
    from cubicle.osworld.sources import FleetDesktops

    with install(FleetDesktops("http://127.0.0.1:8002", fleet_token)):
        env = DesktopEnv(provider_name="docker", action_space="pyautogui", screen_size=(1920, 1080))
        obs = env.reset(task_config=task)      # a fresh desktop, then the task's set-up
        obs, reward, done, info = env.step("pyautogui.click(960, 540)")
        score = env.evaluate()
        env.close()                             # the desktop is deleted

desktop-env chooses its provider by name from a fixed list; `install` takes the name "docker"
for cubicle while it is in force, because a cubicle desktop is what the docker provider's
machine is to DesktopEnv: a container that starts clean. DesktopEnv is otherwise untouched:
its controllers, set-up, getters and metrics run as they do on OSWorld's own machines. Each
DesktopEnv gets a provider and a desktop of its own, so many run at once (threads or processes,
each process with its own `install`).

What the provider's calls do here: start_emulator makes a desktop the size DesktopEnv was given
(or the one in path_to_vm, "cubicle:WxH"), revert_to_snapshot puts a fresh one in its place
(the fleet's reset), stop_emulator deletes it, get_ip_address says where its OSWorld server is,
and save_state is refused: a desktop has no snapshots, a fresh one is the snapshot.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from desktop_env.providers.base import Provider, VMManager

from .sources import Desktop, DesktopSource

PROVIDER_NAME = "docker"
DEFAULT_SIZE = (1920, 1080)  # OSWorld's
# Other ports DesktopEnv reads from the address: Chromium's DevTools, VNC and VLC's HTTP
# interface. A cubicle desktop serves none of them to the outside (Chromium's DevTools are on
# the desktop's localhost), so tasks that need CDP or VLC do not run here.
CHROMIUM_PORT, VNC_PORT, VLC_PORT = 9222, 8006, 8080
_PATH = re.compile(r"^cubicle:(?P<width>\d{3,5})x(?P<height>\d{3,5})$")


def vm_path(width: int, height: int) -> str:
    return f"cubicle:{width}x{height}"


def size_of(path_to_vm: str | None) -> tuple[int, int]:
    match = _PATH.match(path_to_vm or "")
    return (int(match["width"]), int(match["height"])) if match else DEFAULT_SIZE


class CubicleVMManager(VMManager):
    """desktop-env's registry of machines: nothing to register, every DesktopEnv makes its own."""

    def initialize_registry(self, **kwargs: Any) -> None:
        pass

    def add_vm(self, vm_path: str, **kwargs: Any) -> None:
        pass

    def delete_vm(self, vm_path: str, **kwargs: Any) -> None:
        pass

    def occupy_vm(self, vm_path: str, pid: int, **kwargs: Any) -> None:
        pass

    def list_free_vms(self, **kwargs: Any) -> list[str]:
        return []

    def check_and_clean(self, **kwargs: Any) -> None:
        pass

    def get_vm_path(self, os_type: str = "Ubuntu", region: str | None = None,
                    screen_size: tuple[int, int] = DEFAULT_SIZE, **kwargs: Any) -> str:
        if os_type != "Ubuntu":
            raise ValueError(f"cubicle desktops are Linux (OSWorld's os_type 'Ubuntu'), not {os_type!r}")
        return vm_path(*screen_size)


class CubicleProvider(Provider):
    def __init__(self, source: DesktopSource):
        super().__init__(region=None)
        self.source = source
        self.desktop: Desktop | None = None

    def start_emulator(self, path_to_vm: str, headless: bool = True, os_type: str = "Ubuntu") -> None:
        if self.desktop is None:  # after a revert the fresh desktop is already there
            self.desktop = self.source.start(*size_of(path_to_vm))

    def get_ip_address(self, path_to_vm: str) -> str:
        if self.desktop is None:
            raise RuntimeError("no desktop: start_emulator has not run (or stop_emulator has)")
        host, port = self.desktop.osworld.rsplit(":", 1)
        return f"{host}:{port}:{CHROMIUM_PORT}:{VNC_PORT}:{VLC_PORT}"

    def save_state(self, path_to_vm: str, snapshot_name: str) -> None:
        raise NotImplementedError("cubicle desktops keep no snapshots: revert_to_snapshot gives a fresh desktop from "
                                  "the image, which is the only snapshot there is")

    def revert_to_snapshot(self, path_to_vm: str, snapshot_name: str) -> str:
        if self.desktop is None:
            self.desktop = self.source.start(*size_of(path_to_vm))
        else:
            self.desktop = self.source.reset(self.desktop)
        return path_to_vm  # the same name: DesktopEnv keeps its registry as it is

    def stop_emulator(self, path_to_vm: str, *args: Any, **kwargs: Any) -> None:
        desktop, self.desktop = self.desktop, None
        if desktop is not None:
            self.source.stop(desktop)


class Installed:
    """cubicle as desktop-env's "docker" provider, until uninstall() (or the end of a `with`)."""

    _lock = threading.Lock()

    def __init__(self, source: DesktopSource):
        import desktop_env.desktop_env as module

        self.source = source
        self._module = module
        with self._lock:
            self._original = module.create_vm_manager_and_provider

            def create_vm_manager_and_provider(provider_name: str, region: str | None, use_proxy: bool = False):
                if provider_name.lower().strip() == PROVIDER_NAME:
                    return CubicleVMManager(), CubicleProvider(source)
                return self._original(provider_name, region, use_proxy=use_proxy)

            module.create_vm_manager_and_provider = create_vm_manager_and_provider

    def uninstall(self) -> None:
        with self._lock:
            self._module.create_vm_manager_and_provider = self._original

    def __enter__(self) -> Installed:
        return self

    def __exit__(self, *_: Any) -> None:
        self.uninstall()


def install(source: DesktopSource) -> Installed:
    return Installed(source)
