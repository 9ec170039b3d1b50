"""The attributes of synthetic persons and sequences, drawn from the KBH table's vocabulary (kbh.synth)."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------------------------
# Attributes (values are strings, as the workspace stores them)

SKIN_TONES = ("light", "medium", "dark")
DESKS = ("light_wood", "dark_wood", "white", "grey", "black")
DESK_POSITIONS = ("center", "left", "right")
KEYBOARDS = ("dark", "light")
LIGHTINGS = ("bright", "dim", "warm", "cool")

# Skin colour anchors (RGB) along a light -> dark line; each bucket covers one third of it.
_SKIN_ANCHORS = np.array([
    [240, 205, 185], [222, 178, 150], [198, 146, 112], [160, 110, 78], [118, 78, 54], [82, 54, 38],
], np.float32)

_LIGHTING = {  # brightness, colour cast (R, G, B)
    "bright": (1.08, (1.00, 1.00, 1.00)),
    "dim": (0.62, (1.04, 1.00, 0.92)),
    "warm": (0.95, (1.07, 0.99, 0.86)),  # mild: cameras white-balance most of a cast away
    "cool": (1.00, (0.94, 0.99, 1.06)),
}


def person_attributes(rng: np.random.Generator) -> dict:
    """A person's attributes (kbh.workspace.PERSON_ATTRIBUTES), values as strings."""
    yes = lambda p: "yes" if rng.random() < p else "no"  # noqa: E731
    return {
        "skin_tone": str(rng.choice(SKIN_TONES, p=[0.4, 0.35, 0.25])),
        "watch": yes(0.3),
        "bracelet": yes(0.2),
        "tattoo": yes(0.1),
        "nail_polish": yes(0.15),
        "rings": yes(0.2),
    }


def sequence_attributes(rng: np.random.Generator) -> dict:
    """A sequence's attributes (kbh.workspace.SEQUENCE_ATTRIBUTES), values as strings."""
    return {
        "desk": str(rng.choice(DESKS)),
        "desk_position": str(rng.choice(DESK_POSITIONS, p=[0.5, 0.25, 0.25])),
        "keyboard": str(rng.choice(KEYBOARDS, p=[0.6, 0.4])),
        "lighting": str(rng.choice(LIGHTINGS)),
        "objects_on_desk": "yes" if rng.random() < 0.5 else "no",
    }
