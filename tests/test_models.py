"""Model ids -> tool version, image limits and prices."""

import math

import pytest

from cubicle.agent.models import UnknownModel, profile_for


@pytest.mark.parametrize("model,version", [
    ("claude-sonnet-4-5", "computer_20250124"), ("claude-sonnet-4-5-20250929", "computer_20250124"),
    ("claude-opus-4-1", "computer_20250124"), ("claude-haiku-4-5-20251001", "computer_20250124"),
    ("claude-opus-4-5", "computer_20251124"), ("claude-opus-4-6", "computer_20251124"),
    ("claude-sonnet-4-6", "computer_20251124"), ("claude-opus-4-7", "computer_20251124"),
    ("claude-opus-4-8", "computer_toolset_20260801"), ("claude-opus-5", "computer_toolset_20260801"),
    ("claude-sonnet-5", "computer_toolset_20260801"), ("claude-mythos-preview", "computer_toolset_20260801"),
])
def test_tool_version_follows_the_model(model, version):
    assert profile_for(model).tool_version == version


def test_tool_version_can_be_overridden():
    assert profile_for("claude-opus-5", "computer_20251124").tool_version == "computer_20251124"
    with pytest.raises(ValueError):
        profile_for("claude-opus-5", "computer_1999")


def test_unknown_models_are_refused_clearly():
    with pytest.raises(UnknownModel, match="claude-sonnet-4-5"):
        profile_for("gpt-4o")


@pytest.mark.parametrize("screen", [(1280, 800), (1024, 768), (1920, 1080), (2560, 1600), (3840, 2160), (800, 600)])
def test_image_sizes_fit_the_limits_the_api_would_otherwise_enforce(screen):
    old = profile_for("claude-sonnet-4-5").image_size(*screen)
    assert max(old) <= 1568 and old[0] * old[1] <= 1_150_000
    new = profile_for("claude-opus-5").image_size(*screen)
    assert max(new) <= 2576 and math.ceil(new[0] / 28) * math.ceil(new[1] / 28) <= 4784
    for size in (old, new):  # aspect kept, never enlarged
        assert size[0] <= screen[0] and abs(size[0] / size[1] - screen[0] / screen[1]) < 0.01


def test_small_screens_are_sent_as_they_are():
    assert profile_for("claude-sonnet-4-5").image_size(1280, 800) == (1280, 800)
    assert profile_for("claude-opus-5").image_size(1920, 1080) == (1920, 1080)


def test_cost_counts_cache_reads_and_writes():
    profile = profile_for("claude-sonnet-4-5")  # $3 in, $15 out per million
    assert profile.cost(1_000_000, 0) == pytest.approx(3.0)
    assert profile.cost(0, 1_000_000) == pytest.approx(15.0)
    assert profile.cost(0, 0, cache_read=1_000_000) == pytest.approx(0.3)
    assert profile.cost(0, 0, cache_write=1_000_000) == pytest.approx(3.75)
