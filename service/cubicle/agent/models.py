"""What each Claude model needs: its computer-use tool version, the largest screenshot it
accepts without resizing it again, and its price (for cost estimates).

Model ids look like claude-sonnet-4-5, claude-opus-4-6-20260115 or claude-opus-5: the family
and version are read from the id, so date suffixes do not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cubicle.imaging import model_image_size

TOOL_VERSIONS = ("computer_20250124", "computer_20251124", "computer_toolset_20260801")
BETA_FLAGS = {
    "computer_20250124": "computer-use-2025-01-24",
    "computer_20251124": "computer-use-2025-11-24",
    "computer_toolset_20260801": None,  # generally available
}

# USD per million tokens (input, output). Cache writes cost 1.25x input, reads 0.1x.
# Estimates for reporting; the invoice is the truth.
PRICES = {
    ("opus", "old"): (15.0, 75.0),  # Opus 4 and 4.1
    ("opus", "new"): (5.0, 25.0),  # Opus 4.5 and later
    ("sonnet", None): (3.0, 15.0),
    ("haiku", None): (1.0, 5.0),
}

# ASCII digits only (\d would take other scripts' digits too), as the worker's schema says.
MODEL_ID = r"claude-(?P<family>[a-z]+)(?:-(?P<major>[0-9]+)(?:-(?P<minor>[0-9]{1,2}))?)?(?:-(?:[0-9]{8}|preview))?"
_MODEL_ID = re.compile(MODEL_ID)
# A family we have no price for is estimated at the most expensive current price.
_FALLBACK_PRICE = PRICES[("opus", "new")]


class UnknownModel(ValueError):
    pass


@dataclass(frozen=True)
class ModelProfile:
    model: str
    family: str
    version: tuple[int, int]
    tool_version: str
    large_images: bool  # long edge <= 2576 and <= 4784 visual tokens (else <= 1568 px and ~1.15 MP)
    price_in: float
    price_out: float

    @property
    def beta_flag(self) -> str | None:
        return BETA_FLAGS[self.tool_version]

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """The largest size with the screen's aspect that this model takes as it is."""
        return model_image_size(width, height, self.large_images)

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        return (
            input_tokens * self.price_in
            + cache_write * self.price_in * 1.25
            + cache_read * self.price_in * 0.1
            + output_tokens * self.price_out
        ) / 1_000_000


def profile_for(model: str, tool_version: str | None = None) -> ModelProfile:
    """The profile of a model id; `tool_version` overrides the computer tool's version."""
    match = _MODEL_ID.fullmatch(model.strip())
    if not match:
        raise UnknownModel(
            f"Cannot tell the family and version of model {model!r}; expected an id like "
            "claude-sonnet-4-5, claude-opus-4-6 or claude-opus-5."
        )
    family = match["family"]
    # No version (e.g. claude-mythos-preview): a model newer than the numbered ones.
    version = (int(match["major"]), int(match["minor"] or 0)) if match["major"] else (99, 0)
    if tool_version is None:
        if version >= (5, 0) or (family == "opus" and version >= (4, 8)):
            tool_version = "computer_toolset_20260801"
        elif (family == "opus" and version >= (4, 5)) or (family == "sonnet" and version >= (4, 6)):
            tool_version = "computer_20251124"
        else:
            tool_version = "computer_20250124"
    elif tool_version not in TOOL_VERSIONS:
        raise ValueError(f"Unknown tool version {tool_version!r}; choose one of {', '.join(TOOL_VERSIONS)}.")
    large_images = version >= (5, 0) or (family == "opus" and version >= (4, 7))
    era = "new" if version >= (4, 5) else "old"
    price_in, price_out = PRICES.get((family, era)) or PRICES.get((family, None)) or _FALLBACK_PRICE
    return ModelProfile(model, family, version, tool_version, large_images, price_in, price_out)
