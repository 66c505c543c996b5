"""OSWorld's DesktopEnv, unchanged, on cubicle desktops (cubicle.osworld.provider with desktops
on this host): our own tasks in OSWorld's task format (tests/osworld_tasks/, local files only),
scored by desktop-env's own getters and metrics. Each scores 1 after its oracle action script,
sent through DesktopEnv.step as an agent would send it, and 0 after no action (the infeasible
task by OSWorld's rule: 1 only when the agent's last action was FAIL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from osworld_support import contained, desktop_env, load_task, oracle, seed_cache, task_names

pytestmark = pytest.mark.desktop

SIZE = (1280, 800)
PAUSE_S = 2.0  # DesktopEnv.step's own default: the screenshot after an action is taken then


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from cubicle.osworld.provider import install
    from cubicle.osworld.sources import LocalDesktops

    osworld = desktop_env()
    source = LocalDesktops()  # its state in a short temporary folder: sockets live there
    cache = tmp_path_factory.mktemp("osworld-cache")
    with install(source):
        env = osworld.DesktopEnv(provider_name="docker", action_space="pyautogui", screen_size=SIZE,
                                 cache_dir=str(cache))
        try:
            yield env, cache, source
        finally:
            env.close()
            source.close()


@pytest.mark.parametrize("name", task_names())
def test_the_oracle_scores_1_and_no_action_scores_0(environment, name):
    env, cache, _ = environment
    task = load_task(name)
    seed_cache(cache, task)
    observation = contained(env.reset, task_config=task)
    assert observation["screenshot"][:8] == b"\x89PNG\r\n\x1a\n"
    assert observation["accessibility_tree"].startswith("<desktop-frame")
    assert observation["instruction"] == task["instruction"]
    for action in oracle(name):
        env.step(action, pause=PAUSE_S)
    assert contained(env.evaluate) == 1
    contained(env.reset, task_config=task)  # a fresh desktop (the last one was used), set up again
    assert contained(env.evaluate) == 0


def test_a_reset_gives_a_fresh_desktop(environment):
    env, cache, _source = environment
    task = load_task("files-renamed")
    seed_cache(cache, task)
    contained(env.reset, task_config=task)
    before = env.provider.desktop
    env.step("pyautogui.typewrite('touch ~/reports/left-behind\\n')", pause=1.0)
    contained(env.reset, task_config=task)
    assert env.provider.desktop.token != before.token  # another desktop (its display number may be reused)
    assert env.controller.execute_python_command("import os; print(sorted(os.listdir(os.path.expanduser('~/reports'))))")[
        "output"].strip() == "['q1.txt', 'q2.txt']"


def test_many_desktop_envs_run_at_once(tmp_path):
    from cubicle.osworld.provider import install
    from cubicle.osworld.sources import LocalDesktops

    osworld = desktop_env()
    source = LocalDesktops()
    task = load_task("terminal-output")

    def run(index: int) -> tuple[str, float]:
        env = osworld.DesktopEnv(provider_name="docker", action_space="pyautogui", screen_size=SIZE,
                                 cache_dir=str(tmp_path / f"cache-{index}"), require_a11y_tree=False)
        try:
            # Not `contained`: warnings' filters are one per process, not per thread. This task
            # uploads no file and reads none, so desktop-env warns of nothing here.
            env.reset(task_config=task)
            for action in oracle("terminal-output"):
                env.step(action, pause=PAUSE_S)
            return env.provider.desktop.osworld, env.evaluate()
        finally:
            env.close()

    with install(source):
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(run, range(3)))
    source.close()
    assert [score for _, score in results] == [1, 1, 1]
    assert len({address for address, _ in results}) == 3  # three desktops, not one shared
