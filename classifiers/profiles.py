"""The shipped signal models, by profile: one directory each, laid out alike.

- `accurate`: the fused teacher (`classifiers/models/`: 6 encoder layers);
- `fast`: its distilled student (`classifiers/models/fast/`: fewer layers, the same heads, inputs
  and outputs), about half the cost of a forward pass.

The model card (`classifiers/models/MODEL_CARD.md`, "Profiles") compares them on every dev metric.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
PROFILES: dict[str, Path] = {"accurate": MODELS_DIR, "fast": MODELS_DIR / "fast"}
DEFAULT_PROFILE = "accurate"


def profile_dir(profile: str) -> Path:
    """The model directory of `profile`; a ValueError naming the choices for any other name."""
    try:
        return PROFILES[profile]
    except KeyError:
        choices = ", ".join(PROFILES)
        raise ValueError(
            f"no classifier profile {profile!r}: use one of {choices}, or --model-dir"
        ) from None
