"""Class names and colour palettes of the supported benchmarks.

Kept in one place because the names and palette travel with the model: the
checkpoint, the exported bundle's manifest and the node's coloured overlay all
take them from here, so a mask id means the same thing everywhere.
"""

from __future__ import annotations

IGNORE_INDEX = 255
"""Label value excluded from the loss and the metrics (padding, unknown)."""

# MFNet (Ha et al., IROS 2017); MSRS reuses these 9 classes and ids.
MFNET_CLASSES: tuple[str, ...] = (
    "unlabeled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)

# The RGB palette of RTFNet's / MFNet's public visualisation code, so our
# overlays look like the figures in the literature.
MFNET_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 192),
    (128, 128, 0),
    (64, 64, 128),
    (192, 128, 128),
    (192, 64, 0),
)

# PST900 (Shivakumar et al., ICRA 2020). "survivor" is the rescue mannequin
# ("rescue randy" in some code bases).
PST900_CLASSES: tuple[str, ...] = (
    "background",
    "fire_extinguisher",
    "backpack",
    "hand_drill",
    "survivor",
)

# The RGB palette used by public PST900 evaluation code.
PST900_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (0, 0, 255),
    (0, 255, 0),
    (255, 0, 0),
    (255, 255, 255),
)

MSRS_CLASSES = MFNET_CLASSES
MSRS_PALETTE = MFNET_PALETTE

assert len(MFNET_CLASSES) == len(MFNET_PALETTE) == 9
assert len(PST900_CLASSES) == len(PST900_PALETTE) == 5
