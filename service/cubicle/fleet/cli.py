"""The options of `cubicle fleet serve` (kept apart from the service, so that building the
command line loads no web framework)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8002, help="HTTP port (default 8002)")
    parser.add_argument("--backend", choices=("docker", "kubernetes"), default="docker")
    parser.add_argument("--image", default="cubicle-desktop", help="the desktop image (default cubicle-desktop)")
    parser.add_argument("--image-without-office", default=None, help="an image built with WITH_OFFICE=0, for office: false")
    parser.add_argument("--warm", type=int, default=0, help="desktops kept started and healthy ahead of demand")
    parser.add_argument("--max-desktops", type=int, default=20, help="at most this many at once, the pool included")
    parser.add_argument("--max-ttl", type=int, default=86_400, help="the longest ttl_s a desktop may ask for (s)")
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs per desktop")
    parser.add_argument("--memory", type=int, default=2048, help="memory per desktop, MiB")
    parser.add_argument("--pids", type=int, default=1024, help="processes per desktop (Docker; on Kubernetes the kubelet's)")
    parser.add_argument("--name", default="cubicle", help="this fleet's name: it owns the desktops labelled with it")
    parser.add_argument("--namespace", default=None, help="Kubernetes namespace (default: the fleet's own, or 'default')")
    parser.add_argument("--image-pull-policy", default="IfNotPresent", choices=("Always", "IfNotPresent", "Never"))
    parser.add_argument("--state-dir", default=None, help="where the Docker backend keeps desktop records "
                        "(default $CUBICLE_FLEET_STATE_DIR or ~/.local/state/cubicle-fleet)")
