"""The desktop's processes as /proc shows them: which they are, their memory and CPU time.

Read from /proc rather than asked of supervisord, so that a desktop the bench did not start
(`--url`) can be measured too, as long as it runs on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

DESKTOP_PROGRAMS = ("Xvfb", "openbox", "tint2", "x11vnc")
SERVER_ROLE = "cubicle server"


def read_kib(path: str, label: str) -> int | None:
    """The KiB figure on the line of a /proc file that starts with `label` ("VmRSS:", "Pss:")."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(label):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def desktop_processes(display: str) -> list[tuple[int, str]]:
    """(pid, role) of the desktop's parts on this display: by the display in their command
    line (Xvfb, x11vnc, the server) or in their environment (openbox, tint2)."""
    found = []
    for entry in sorted(os.listdir("/proc"), key=lambda name: (len(name), name)):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm in DESKTOP_PROGRAMS:
            role = comm
        elif "serve" in argv and any(Path(arg).name == "cubicle" for arg in argv[:3]):
            role = SERVER_ROLE
        else:
            continue
        try:
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            environment = []
        if display in argv or f"DISPLAY={display}".encode() in environment:
            found.append((int(entry), role))
    return found


def rss_mb(pid: int | None) -> float | None:
    kib = read_kib(f"/proc/{pid}/status", "VmRSS:") if pid else None
    return kib * 1024 / 1e6 if kib is not None else None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
