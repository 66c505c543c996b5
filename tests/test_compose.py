"""docker-compose.yml read as Compose reads it, checked against the Dockerfile and .env.example:
the targets it builds exist, the ports it publishes are the ones the images expose and only on
127.0.0.1, every setting it reads is documented, the healthcheck is the image's, and the
worker waits for a healthy desktop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingSetting(Exception):
    pass


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and ${VAR:?error}, throughout a
    parsed file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.groups()
        given = env.get(name)
        if operator in (":-", ":?"):
            missing = not given
        else:
            missing = given is None
        if operator and operator.endswith("?") and missing:
            raise MissingSetting(f"{name}: {argument}")
        if operator and operator.endswith("-") and missing:
            return argument
        return given or ""

    return VARIABLE.sub(substitute, value)


def env_example() -> dict[str, str]:
    settings = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


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


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """The file as Compose sees it with .env.example's values and a token filled in."""
    return interpolate(raw, {**env_example(), "CUBICLE_TOKEN": "t0ken"})


def test_the_services_build_targets_of_the_dockerfile(compose):
    stages = dockerfile_stages()
    assert set(compose["services"]) == {"desktop", "agent"}
    for name, service in compose["services"].items():
        assert service["build"]["context"] == "."
        assert service["build"]["target"] == name and name in stages
        # Built here, never looked for in a registry.
        assert service["pull_policy"] == "build"
    assert instructions("", "ARG") == ["BASE_IMAGE=debian:bookworm-slim"]
    assert all(instruction[1].startswith("${BASE_IMAGE}") for stage in stages.values()
               for instruction in stage if instruction[0] == "FROM")


def test_ports_are_the_images_own_and_on_localhost_only(raw, compose):
    assert compose["services"]["desktop"]["ports"] == ["127.0.0.1:8000:8000"]
    assert compose["services"]["agent"]["ports"] == ["127.0.0.1:8001:8001"]
    # The defaults are the same when .env leaves the ports out.
    defaults = interpolate(raw, {"CUBICLE_TOKEN": "t0ken"})
    assert defaults["services"]["desktop"]["ports"] == ["127.0.0.1:8000:8000"]
    for name, service in raw["services"].items():
        (port,) = service["ports"]
        assert port.startswith("127.0.0.1:"), "a port published beyond localhost"
        assert instructions(name, "EXPOSE") == [port.rsplit(":", 1)[1]]


def test_every_setting_is_documented_in_env_example_and_used(raw):
    used = set(VARIABLE.findall(json.dumps(raw)))  # the values, not the comments
    used_names = {name for name, _, _ in used}
    documented = env_example()
    assert used_names - set(documented) == set(), "settings used but not in .env.example"
    assert set(documented) - used_names == set(), "settings in .env.example that compose ignores"
    # The documented values are the defaults compose falls back on.
    for name, operator, default in used:
        if operator.endswith("-"):
            assert documented[name] == default, name


def test_the_token_is_required_and_reaches_both_services(raw, compose):
    with pytest.raises(MissingSetting, match="CUBICLE_TOKEN"):
        interpolate(raw, env_example())  # .env.example leaves it empty
    desktop, agent = compose["services"]["desktop"], compose["services"]["agent"]
    assert desktop["environment"]["CUBICLE_TOKEN"] == agent["environment"]["CUBICLE_TOKEN"] == "t0ken"
    assert {"WIDTH", "HEIGHT"} <= set(desktop["environment"])
    assert {"ANTHROPIC_API_KEY", "CUBICLE_MODEL", "CUBICLE_WORKER_TOKEN"} <= set(agent["environment"])
    # The worker reaches the desktop by its service name, on the port its image exposes.
    assert agent["environment"]["CUBICLE_DESKTOP_URL"] == f"http://desktop:{instructions('desktop', 'EXPOSE')[0]}"
    assert "ANTHROPIC_API_KEY" not in desktop["environment"]


def test_the_healthcheck_is_the_images_and_the_worker_waits_for_it(compose):
    desktop = compose["services"]["desktop"]
    assert desktop["healthcheck"]["test"] == ["CMD", *healthcheck_command("desktop")]
    assert "/health" in " ".join(desktop["healthcheck"]["test"])
    assert compose["services"]["agent"]["depends_on"] == {"desktop": {"condition": "service_healthy"}}
    assert "/health" in " ".join(healthcheck_command("agent"))


def test_named_volumes_keep_the_home_and_the_runs(compose):
    desktop, agent = compose["services"]["desktop"], compose["services"]["agent"]
    (useradd,) = [line for line in instructions("desktop", "RUN") if "useradd" in line]
    home = re.search(r"useradd .*--home-dir (\S+)", useradd).group(1)
    assert desktop["volumes"] == [f"home:{home}"]
    (agent_env,) = [line for line in instructions("agent", "ENV") if "CUBICLE_RUNS_DIR" in line]
    runs = re.search(r"CUBICLE_RUNS_DIR=(\S+)", agent_env).group(1)
    assert agent["volumes"] == [f"runs:{runs}"]
    assert set(compose["volumes"]) == {"home", "runs"}


def test_the_desktop_gets_shared_memory_for_the_browser(compose):
    size = compose["services"]["desktop"]["shm_size"]
    assert re.fullmatch(r"\d+[gm]b?", str(size).lower()), size


def test_the_images_run_as_cubicle_and_leave_env_out_of_the_build():
    for stage in ("desktop", "agent"):
        assert instructions(stage, "USER") == ["cubicle"]
    assert "sudo" not in (ROOT / "desktop/packages.txt").read_text().split()
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*" and not any(line.startswith("!") and ".env" in line for line in ignored)
