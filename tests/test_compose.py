"""docker-compose.yml read by Compose itself (`docker compose config`, the real parser), and
checked against the Dockerfile and .env.example: the targets it builds exist, ports are
published on 127.0.0.1 only, every setting it reads is documented, the desktop is two
unprivileged containers of which only the server holds the token, the three tokens are
required and distinct (scripts/make-env), the healthcheck is the image's, the worker waits for
a healthy desktop, and the fleet comes with its profile."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from engines import compose_environment
from support import ROOT

pytestmark = pytest.mark.docker
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    settings = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def config(env_file, *profiles: str) -> subprocess.CompletedProcess:
    command = ["docker", "compose", "--project-directory", str(ROOT), "--env-file", str(env_file)]
    command += [part for profile in profiles for part in ("--profile", profile)]
    environment = {k: v for k, v in compose_environment().items() if not k.startswith("CUBICLE_") or k == "CUBICLE_PIP_CERT"}
    return subprocess.run(command + ["config", "--format", "json"], capture_output=True, text=True, timeout=60,
                          env=environment, cwd=ROOT)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory):
    made = tmp_path_factory.mktemp("compose") / "made.env"
    subprocess.run([str(ROOT / "scripts/make-env"), str(made)], check=True, capture_output=True, timeout=30)
    return made


@pytest.fixture(scope="module")
def compose(env_file) -> dict:
    done = config(env_file, "fleet")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions as (INSTRUCTION, arguments), continuation lines joined; those
    before the first FROM under ""."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if raw.endswith("\\"):
            current += raw[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    stages: dict[str, list[tuple[str, str]]] = {"": []}
    stage = ""
    for line in lines:
        instruction, _, arguments = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            stage = words[2] if len(words) == 3 and words[1].lower() == "as" else f"#{len(stages)}"
            stages[stage] = []
        stages[stage].append((instruction, arguments.strip()))
    return stages


def instructions(stage: str, name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile_stages()[stage] if instruction == name]


def healthcheck_command(stage: str) -> list[str]:
    (check,) = instructions(stage, "HEALTHCHECK")
    return json.loads(check[check.index("CMD ") + 4:])


def test_make_env_fills_three_distinct_tokens_readable_by_its_user_only(env_file):
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    tokens = [settings[name] for name in ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "CUBICLE_FLEET_TOKEN")]
    assert all(len(token) >= 32 for token in tokens) and len(set(tokens)) == 3
    assert env_file.stat().st_mode & 0o077 == 0
    assert set(settings) == set(env_example())


def test_every_token_is_required(tmp_path):
    for missing in ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "CUBICLE_FLEET_TOKEN"):
        settings = {**env_example(), "CUBICLE_TOKEN": "a" * 32, "CUBICLE_WORKER_TOKEN": "b" * 32, "CUBICLE_FLEET_TOKEN": "c" * 32}
        settings[missing] = ""
        env = tmp_path / f"without-{missing}.env"
        env.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        done = config(env, "fleet")
        assert done.returncode != 0 and missing in done.stderr, (missing, done.stderr)


def test_the_services_build_targets_of_the_dockerfile(compose):
    stages = dockerfile_stages()
    services = compose["services"]
    assert set(services) == {"desktop", "desktop-server", "agent", "fleet"}
    for name in ("desktop", "agent"):
        assert services[name]["build"]["target"] == name and name in stages
        assert services[name]["pull_policy"] == "build"  # built here, never looked for in a registry
    assert services["desktop-server"]["image"] == services["desktop"]["image"]
    assert services["fleet"]["image"] == services["agent"]["image"]
    assert {services[n]["pull_policy"] for n in ("desktop-server", "fleet")} == {"never"}
    assert instructions("", "ARG") == ["BASE_IMAGE=debian:bookworm-slim"]
    assert all(instruction[1].startswith("${BASE_IMAGE}") for stage in stages.values()
               for instruction in stage if instruction[0] == "FROM")


def test_ports_are_the_images_own_and_on_localhost_only(compose):
    published = {name: [(p["host_ip"], p["published"], p["target"]) for p in service.get("ports", [])]
                 for name, service in compose["services"].items()}
    assert published == {"desktop": [("127.0.0.1", "8000", 8000)], "desktop-server": [],
                          "agent": [("127.0.0.1", "8001", 8001)], "fleet": [("127.0.0.1", "8002", 8002)]}
    assert instructions("desktop", "EXPOSE") == ["8000"] and instructions("agent", "EXPOSE") == ["8001"]


def test_every_setting_is_documented_in_env_example_and_used():
    raw = (ROOT / "docker-compose.yml").read_text()
    used = {match for line in raw.splitlines() if not line.lstrip().startswith("#") for match in VARIABLE.findall(line)}
    used_names = {name for name, _, _ in used}
    documented = env_example()
    assert used_names - set(documented) == set(), "settings used but not in .env.example"
    assert set(documented) - used_names == set(), "settings in .env.example that compose ignores"
    for name, operator, default in used:
        if operator.endswith("-"):
            assert documented[name] == default, name  # the documented values are compose's defaults


def test_the_desktop_is_two_unprivileged_containers_and_only_the_server_holds_the_token(compose, env_file):
    services = compose["services"]
    session, server, agent = services["desktop"], services["desktop-server"], services["agent"]
    settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert session["command"] == ["session"] and server["command"] == ["server"]
    assert server["user"] == "cubicle-server" and "user" not in session  # the image's own: cubicle
    assert server["network_mode"] == "service:desktop" and server["ipc"] == "service:desktop"
    assert session["ipc"] == "shareable"
    for service in (session, server, agent, services["fleet"]):
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert "CUBICLE_TOKEN" not in (session.get("environment") or {})
    assert server["environment"]["CUBICLE_TOKEN"] == settings["CUBICLE_TOKEN"]
    assert agent["environment"]["CUBICLE_TOKEN"] == settings["CUBICLE_TOKEN"]  # it drives that desktop
    assert agent["environment"]["CUBICLE_WORKER_TOKEN"] == settings["CUBICLE_WORKER_TOKEN"] != settings["CUBICLE_TOKEN"]
    assert agent["environment"]["CUBICLE_DESKTOP_URL"] == f"http://desktop:{instructions('desktop', 'EXPOSE')[0]}"
    assert "ANTHROPIC_API_KEY" not in (session.get("environment") or {}) and "ANTHROPIC_API_KEY" not in server["environment"]
    assert services["fleet"]["environment"]["CUBICLE_FLEET_TOKEN"] == settings["CUBICLE_FLEET_TOKEN"]
    assert agent["environment"]["CUBICLE_FLEET_TOKEN"] == settings["CUBICLE_FLEET_TOKEN"]


def test_the_fleet_comes_only_with_its_profile(env_file):
    done = config(env_file)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["services"]) == {"desktop", "desktop-server", "agent"}


def test_the_healthcheck_is_the_images_and_the_worker_waits_for_it(compose):
    desktop = compose["services"]["desktop"]
    assert desktop["healthcheck"]["test"] == ["CMD", *healthcheck_command("desktop")]
    assert "/health" in " ".join(desktop["healthcheck"]["test"])
    assert compose["services"]["agent"]["depends_on"]["desktop"]["condition"] == "service_healthy"
    assert "/health" in " ".join(healthcheck_command("agent"))


def test_named_volumes_keep_the_home_and_the_runs(compose):
    desktop, agent = compose["services"]["desktop"], compose["services"]["agent"]
    (useradd,) = [line for line in instructions("desktop", "RUN") if "useradd --uid 1000" in line or "useradd" in line][:1]
    home = re.search(r"useradd --uid 1000 .*?--home-dir (\S+)", useradd).group(1)
    assert [(v["source"], v["target"]) for v in desktop["volumes"]] == [("home", home)]
    (agent_env,) = [line for line in instructions("agent", "ENV") if "CUBICLE_RUNS_DIR" in line]
    runs = re.search(r"CUBICLE_RUNS_DIR=(\S+)", agent_env).group(1)
    assert [(v["source"], v["target"]) for v in agent["volumes"]] == [("runs", runs)]
    assert set(compose["volumes"]) == {"home", "runs", "fleet"}


def test_the_desktop_gets_shared_memory_for_the_browser(compose):
    assert int(compose["services"]["desktop"]["shm_size"]) >= 512 * 1024 * 1024


def test_the_images_run_as_non_root_and_leave_env_out_of_the_build():
    for stage in ("desktop", "agent"):
        assert instructions(stage, "USER") == ["cubicle"]
    assert "sudo" not in (ROOT / "desktop/packages.txt").read_text().split()
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*" and not any(line.startswith("!") and ".env" in line for line in ignored)
