"""Synthetic EO/IR rigs with a known registration: random shapes seen by a colour camera and, through a
homography, by a blurred, noisy thermal camera with its own contrast (registration tests, unit and ROS)."""

from __future__ import annotations

import cv2
import numpy as np

EO_SIZE, IR_SIZE = (640, 480), (640, 512)  # (width, height)


def scene(seed: int, size=EO_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """EO (RGB uint8) of random shapes and lines over smooth gradients, each colour channel with its own
    brightness per shape (so edges differ in polarity between channels), and the thermal radiance of the
    same scene as float: inverted, contrast-reduced luminance with a gradient of its own."""
    rng = np.random.default_rng(seed)
    w, h = size
    labels = np.zeros((h, w), np.int32)
    shapes = 60
    for k in range(1, shapes):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        kind = k % 3
        if kind == 0:
            cv2.circle(labels, centre, int(rng.integers(5, 60)), k, -1)
        elif kind == 1:
            corners = (np.array(centre) + rng.normal(0, 50, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(labels, [corners], k)
        else:
            cv2.line(labels, centre, (int(rng.integers(0, w)), int(rng.integers(0, h))), k, int(rng.integers(2, 10)))
    ys, xs = np.mgrid[0:h, 0:w] / max(w, h)
    colours = rng.uniform(0, 255, (shapes, 3))
    gradient = 60 * (xs * rng.uniform(-1, 1) + ys * rng.uniform(-1, 1))
    eo = colours[labels] + gradient[..., None] + rng.normal(0, 3, (h, w, 3))
    luminance = colours[labels] @ np.array([0.299, 0.587, 0.114])
    radiance = 60 + 0.4 * (255 - luminance) + 40 * (xs * rng.uniform(-1, 1) + ys * rng.uniform(-1, 1))
    return np.clip(eo, 0, 255).astype(np.uint8), radiance.astype(np.float32)


def ir_view(radiance: np.ndarray, homography: np.ndarray, seed: int, size=IR_SIZE) -> np.ndarray:
    """What the IR camera sees: the scene through the true homography, blurred (thermal optics), noisy."""
    rng = np.random.default_rng(seed + 1000)
    ir = cv2.warpPerspective(radiance, homography, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ir = cv2.GaussianBlur(ir, (0, 0), 1.5) + rng.normal(0, 2, (size[1], size[0]))
    return np.clip(ir, 0, 255).astype(np.uint8)
