"""The `cubicle` command: one sub-command per job, each delegating to its module."""

from __future__ import annotations

import argparse
import os
import sys

HALVES = ("session", "server")  # what `cubicle desktop --only` may run (see cubicle.session)
DEFAULT_CDP_PORT = 9222


def _default_cdp_port() -> int:
    """$CDP_PORT when set (the desktop image and the tests set it), else Chromium's usual 9222."""
    try:
        return int(os.environ.get("CDP_PORT") or DEFAULT_CDP_PORT)
    except ValueError:
        return DEFAULT_CDP_PORT


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        return default


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x800, not {text!r}") from None
    if not (200 <= width <= 7680 and 200 <= height <= 4320):
        raise argparse.ArgumentTypeError(f"size {width}x{height} is outside 200x200 .. 7680x4320")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cubicle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    desktop = commands.add_parser(
        "desktop",
        help="run the whole desktop (Xvfb, openbox, tint2, x11vnc, server) under supervisord, in the foreground",
    )
    desktop.add_argument("--display", type=int, default=1, help="X display number (default 1)")
    desktop.add_argument("--port", type=int, default=8000, help="HTTP port of the cubicle server (default 8000)")
    desktop.add_argument("--host", default="127.0.0.1", help="address the server listens on (default 127.0.0.1)")
    desktop.add_argument("--size", type=_size, default=None, help="screen size WxH (default $WIDTH x $HEIGHT or 1280x800)")
    desktop.add_argument("--vnc-port", type=int, default=5900, help="x11vnc port on localhost (default 5900)")
    desktop.add_argument("--cdp-port", type=int, default=_default_cdp_port(),
                         help="Chromium's DevTools port on localhost, for the browser toolset (default $CDP_PORT or 9222)")
    desktop.add_argument("--state-dir", default=None, help="where logs and the supervisord socket go (default: a temporary folder)")
    desktop.add_argument("--only", choices=HALVES, default=None,
                         help="run one half: the session (X, apps, VNC, the runner) or the API server; the image "
                         "runs each in a container of its own, as a user of its own (default: both)")
    desktop.add_argument("--osworld", action="store_true", default=_env_flag("CUBICLE_OSWORLD"),
                         help="also serve OSWorld's in-desktop protocol (`cubicle osworld`; default $CUBICLE_OSWORLD): "
                         "it takes no credentials and runs any code it is sent as the desktop user")
    desktop.add_argument("--osworld-host", default=os.environ.get("CUBICLE_OSWORLD_HOST") or "127.0.0.1",
                         help="with --osworld: the address it listens on (default $CUBICLE_OSWORLD_HOST or 127.0.0.1; "
                         "never one that others can reach)")
    desktop.add_argument("--osworld-port", type=int, default=_env_int("CUBICLE_OSWORLD_PORT", 5000),
                         help="with --osworld: its port (default $CUBICLE_OSWORLD_PORT or OSWorld's 5000)")

    serve = commands.add_parser("serve", help="run only the HTTP server against an existing X display")
    serve.add_argument("--display", default=None, help="X display, e.g. :1 (default $DISPLAY)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--vnc-port", type=int, default=5900, help="x11vnc port probed by /health")
    serve.add_argument("--cdp-port", type=int, default=_default_cdp_port(), help="Chromium's DevTools port that WS /cdp relays to")

    runner = commands.add_parser("runner", help="(part of the desktop) run shell commands, files and programs as the desktop user for the server")
    runner.add_argument("--display", default=None, help="X display, e.g. :1 (default $DISPLAY)")
    runner.add_argument("--socket", required=True, help="unix socket to answer on: a path, or @name in the abstract namespace")
    runner.add_argument("--cdp-port", type=int, default=_default_cdp_port(), help="the DevTools port Chromium is started with")

    osworld = commands.add_parser("osworld", help="(part of the desktop, with --osworld) OSWorld's in-desktop protocol "
                                  "for its DesktopEnv, as the desktop user: no credentials, runs any code it is sent")
    osworld.add_argument("--display", default=None, help="X display, e.g. :1 (default $DISPLAY)")
    osworld.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    osworld.add_argument("--port", type=int, default=5000, help="port (default OSWorld's 5000)")
    commands.add_parser("osworld-terminal", help="open the terminal whose text OSWorld's GET /terminal reads "
                        "(xterm titled Terminal, on tmux)")

    agent = commands.add_parser("agent", help="the agent worker: Claude operates a desktop")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    from cubicle.agent.cli import add_arguments, add_resume_arguments

    add_arguments(agent_commands.add_parser("run", help="give the agent one task and watch it work"))
    add_resume_arguments(agent_commands.add_parser(
        "resume", help="carry on a run whose worker died, from its last completed step"))
    worker = agent_commands.add_parser("serve", help="the worker service: start, watch and steer runs over HTTP")
    worker.add_argument("--host", default="127.0.0.1", help="address the worker listens on (default 127.0.0.1)")
    worker.add_argument("--port", type=int, default=8001, help="HTTP port (default 8001)")
    worker.add_argument("--runs-dir", default=None, help="where runs are saved (default $CUBICLE_RUNS_DIR or ./runs)")
    worker.add_argument("--policy", default=None, metavar="FILE", help="a policy file (TOML): actions it holds wait for approval")

    fleet = commands.add_parser("fleet", help="desktops on demand, on the Docker engine or Kubernetes")
    fleet_commands = fleet.add_subparsers(dest="fleet_command", required=True)
    from cubicle.fleet.cli import add_arguments as add_fleet_arguments

    add_fleet_arguments(fleet_commands.add_parser("serve", help="the fleet service: create, proxy and reap desktops over HTTP"))

    mcp = commands.add_parser("mcp", help="an MCP server over stdio, for clients that launch a command (Claude Desktop): "
                              "its tools operate the desktop at --desktop")
    mcp.add_argument("--desktop", default="http://127.0.0.1:8000", metavar="URL",
                     help="the desktop's URL, or the fleet's .../desktops/ID (default http://127.0.0.1:8000)")
    mcp.add_argument("--token-file", default=None, metavar="FILE",
                     help="a file holding the desktop's token (default: $CUBICLE_TOKEN)")

    runs = commands.add_parser("runs", help="saved agent runs")
    runs.add_argument("--runs-dir", default=None, help="where runs are saved (default $CUBICLE_RUNS_DIR or ./runs)")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    runs_commands.add_parser("list", help="list runs, newest first")
    show = runs_commands.add_parser("show", help="one run's steps")
    show.add_argument("run_id")
    show.add_argument("--replay", action="store_true", help="write replay.html (screenshots with each action drawn)")

    bench = commands.add_parser("bench", help="measure cubicle against the reference demo's way on a real desktop")
    bench.add_argument("--url", default=None, help="a running desktop's URL (default: start one)")
    bench.add_argument("--rounds", type=int, default=30, help="repetitions per figure")
    bench.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    bench.add_argument("--agent", action="store_true", help="measure the agent worker instead: its overhead per step over a 100-step scripted run")
    bench.add_argument("--load", action="store_true", help="load instead: concurrent clients mixing screenshots and actions, beside one client")
    bench.add_argument("--faults", action="store_true", help="with the load, kill Xvfb, openbox and x11vnc in turn and time the recovery (implies --load)")
    bench.add_argument("--clients", type=int, default=16, help="concurrent clients of the load (default 16)")
    bench.add_argument("--seconds", type=float, default=60.0, help="duration of the load (default 60)")
    bench.add_argument("--fleet", action="store_true", help="the fleet instead: cold and warm starts, idle memory, "
                       "many desktops driven at once (starts its own `cubicle fleet serve`)")
    bench.add_argument("--backend", choices=("docker", "kubernetes"), default="docker", help="with --fleet")
    bench.add_argument("--toolsets", action="store_true", help="Claude's toolsets instead: CubicleComputer's cost per "
                       "member beside the raw /actions path, and the browser's read_page on 1,000 elements")
    bench.add_argument("--observe", action="store_true", help="what observes the desktop instead: GET /accessibility "
                       "with the usual apps open, and a screen recording's CPU cost beside no recording")
    bench.add_argument("--idle", type=int, default=20, help="with --fleet: idle desktops whose memory is measured")
    bench.add_argument("--drive", type=int, default=10, help="with --fleet: desktops driven at once")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "desktop":
        from cubicle.session import run_desktop

        sys.exit(run_desktop(args))
    if args.command == "serve":
        from cubicle.server.main import serve

        serve(display=args.display, host=args.host, port=args.port, vnc_port=args.vnc_port, cdp_port=args.cdp_port)
    elif args.command == "runner":
        from cubicle.server.runner import serve_runner

        serve_runner(args.display, args.socket, args.cdp_port)
    elif args.command == "osworld":
        from cubicle.server.osworld.app import serve as serve_osworld

        serve_osworld(args.display, args.host, args.port)
    elif args.command == "osworld-terminal":
        from cubicle.server.osworld.terminal import open_terminal

        open_terminal()
    elif args.command == "agent" and args.agent_command == "serve":
        from cubicle.agent.service import serve as serve_worker

        sys.exit(serve_worker(args.host, args.port, args.runs_dir, args.policy))
    elif args.command == "agent" and args.agent_command == "resume":
        from cubicle.agent.cli import resume_run

        sys.exit(resume_run(args))
    elif args.command == "agent":
        from cubicle.agent.cli import run_task

        sys.exit(run_task(args))
    elif args.command == "fleet":
        from cubicle.fleet.service import serve as serve_fleet

        sys.exit(serve_fleet(args))
    elif args.command == "mcp":
        from cubicle.mcp.stdio import run as run_mcp

        sys.exit(run_mcp(args.desktop, args.token_file))
    elif args.command == "runs":
        from cubicle.agent import runs_cli

        sys.exit(runs_cli.list_runs(args) if args.runs_command == "list" else runs_cli.show_run(args))
    elif args.command == "bench" and args.toolsets:
        from cubicle.bench.toolsets import run_toolsets_bench

        sys.exit(run_toolsets_bench(args))
    elif args.command == "bench" and args.observe:
        from cubicle.bench.observe import main as run_observe_bench

        sys.exit(run_observe_bench([*(["--url", args.url] if args.url else []), "--rounds", str(min(args.rounds, 10)),
                                    "--seconds", "20", "--json", "bench/results/observe.json"]))
    elif args.command == "bench" and args.fleet:
        from cubicle.bench.fleet import run_fleet_bench

        sys.exit(run_fleet_bench(args))
    elif args.command == "bench" and (args.load or args.faults):
        from cubicle.bench.load import run_load_bench

        sys.exit(run_load_bench(args))
    elif args.command == "bench" and args.agent:
        from cubicle.bench.agent import run_agent_bench

        sys.exit(run_agent_bench(args))
    elif args.command == "bench":
        from cubicle.bench.latency import run_latency_bench

        sys.exit(run_latency_bench(args))
