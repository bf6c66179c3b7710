"""Paired EO/IR/label augmentation on numpy sample dicts.

Geometry (scale, crop, flip) is applied identically to EO, IR and label, since
a pixel's class must stay on the pixel it describes in both modalities.
Photometry (colour jitter, EO dropout) touches EO by default: IR is a
temperature measurement, and the runtime scales it by a fixed rule. The
optional `ir_jitter` (gain and offset, off by default) is for small real
sets, where a whole dataset comes from one camera and one season: it widens
what the model has seen of scene temperature and camera gain.

Resizes use OpenCV: bilinear for images, INTER_NEAREST_EXACT for labels.
Plain INTER_NEAREST samples at the pixel corner rather than the centre, so its
output is shifted by up to half a source pixel against bilinear; the exact
variant keeps labels on the image content.

Randomness comes from a numpy Generator seeded from (seed, index, epoch), so a
sample's augmentation does not depend on which DataLoader worker draws it.
"""

from __future__ import annotations

import cv2
import numpy as np

from csk_ros.imaging.frames import resize_linear

from .classes import IGNORE_INDEX

DEFAULT_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}
AUGMENT_KEYS = ("scale", "crop", "hflip", "jitter", "eo_dropout", "ir_jitter", "seed")
IR_JITTER_KEYS = ("gain", "offset")
JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def _size_pair(value, what: str) -> tuple[int, int]:
    """Validate an [H, W] pair of positive ints."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{what} must be a pair [H, W], got {value!r}")
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of integers [H, W], got {value!r}") from None
    if any(float(v) != p for v, p in zip(value, pair)) or min(pair) < 1:
        raise ValueError(f"{what} must be two positive integers [H, W], got {value!r}")
    return pair  # type: ignore[return-value]


def _prob(value, what: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}")
    return p


def parse_augment_config(cfg: dict | None, default_scale=(0.5, 2.0), default_crop=None) -> dict:
    """Validate an `augment` mapping and fill the defaults; unknown keys are an error."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown augment key(s) {unknown}; expected some of {list(AUGMENT_KEYS)}")
    scale = cfg.get("scale", default_scale)
    if not isinstance(scale, (list, tuple)) or len(scale) != 2:
        raise ValueError(f"augment.scale must be [min, max], got {scale!r}")
    scale = (float(scale[0]), float(scale[1]))
    if not 0.0 < scale[0] <= scale[1]:
        raise ValueError(f"augment.scale must satisfy 0 < min <= max, got {list(scale)}")
    crop = cfg.get("crop", default_crop)
    crop = None if crop is None else _size_pair(crop, "augment.crop")
    jitter = cfg.get("jitter", DEFAULT_JITTER)
    if jitter is None:
        jitter = {}
    if not isinstance(jitter, dict):
        raise ValueError(f"augment.jitter must be a mapping of {list(JITTER_KEYS)}, got {jitter!r}")
    unknown = sorted(set(jitter) - set(JITTER_KEYS))
    if unknown:
        raise ValueError(f"unknown augment.jitter key(s) {unknown}; expected some of {list(JITTER_KEYS)}")
    jitter = {k: float(jitter.get(k, 0.0)) for k in JITTER_KEYS}
    for k, v in jitter.items():
        if v < 0 or (k != "brightness" and k != "hue" and v > 1.0) or (k == "hue" and v > 0.5):
            raise ValueError(
                f"augment.jitter.{k} out of range: {v} (>= 0; <= 1 for contrast/saturation; <= 0.5 for hue)"
            )
    ir_jitter = cfg.get("ir_jitter") or {}
    if not isinstance(ir_jitter, dict) or set(ir_jitter) - set(IR_JITTER_KEYS):
        raise ValueError(f"augment.ir_jitter must be a mapping of {list(IR_JITTER_KEYS)} "
                         f"(gain: fraction, offset: grey levels), got {ir_jitter!r}")
    ir_jitter = {k: float(ir_jitter.get(k, 0.0)) for k in IR_JITTER_KEYS}
    if not 0.0 <= ir_jitter["gain"] < 1.0 or not 0.0 <= ir_jitter["offset"] <= 128.0:
        raise ValueError(f"augment.ir_jitter out of range: {ir_jitter} (gain in [0, 1), offset in [0, 128])")
    seed = int(cfg.get("seed", 0))
    if seed < 0:
        raise ValueError(f"augment.seed must be >= 0, got {seed}")
    return {
        "scale": scale,
        "crop": crop,
        "hflip": _prob(cfg.get("hflip", 0.5), "augment.hflip"),
        "jitter": jitter,
        "eo_dropout": _prob(cfg.get("eo_dropout", 0.0), "augment.eo_dropout"),
        "ir_jitter": ir_jitter,
        "seed": seed,
    }


def resize_sample(sample: dict, size: tuple[int, int] | None) -> dict:
    """Deterministic resize of a numpy sample to (H, W); the eval-time transform."""
    if size is None:
        return sample
    height, width = size
    if sample["eo"].shape[:2] == (height, width):
        return sample
    out = dict(sample)
    # The node resizes camera frames with the same function (csk_ros.imaging.frames).
    out["eo"] = resize_linear(sample["eo"], (height, width))
    out["ir"] = resize_linear(sample["ir"], (height, width))
    out["label"] = _resize_label(sample["label"], height, width)
    return out


def _resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    # cv2.resize has no int64: ids (incl. 255 = ignore) fit in uint8.
    small = label.astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST_EXACT).astype(np.int64)


class PairedAugment:
    """Random scale, crop and flip shared by EO/IR/label; jitter and dropout on EO.

    `base_size` (H, W): the size the scale factor is relative to (the eval size,
    so training and evaluation see objects at the same scale); None = the
    sample's own size. Call with `index` and `epoch` (or an explicit `rng`).
    """

    def __init__(self, cfg: dict | None = None, seed: int | None = None, base_size=None, default_scale=(0.5, 2.0)):
        self.cfg = parse_augment_config(cfg, default_scale=default_scale)
        self.seed = self.cfg["seed"] if seed is None else int(seed)
        if self.seed < 0:
            raise ValueError(f"augmentation seed must be >= 0, got {self.seed}")
        self.base_size = None if base_size is None else _size_pair(base_size, "base_size")

    def rng(self, index: int, epoch: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), int(epoch)])

    def __call__(self, sample: dict, index: int = 0, epoch: int = 0, rng: np.random.Generator | None = None) -> dict:
        if rng is None:
            rng = self.rng(index, epoch)
        out = self.geometric(sample, rng)
        out["eo"], out["eo_dropped"] = self.photometric(out["eo"], rng)
        if any(self.cfg["ir_jitter"].values()):  # draws only when on: other configs keep their crops
            out["ir"] = ir_gain_offset(out["ir"], self.cfg["ir_jitter"], rng)
        return out

    # -- geometry: identical for the three arrays
    def geometric(self, sample: dict, rng: np.random.Generator) -> dict:
        eo, ir, label = sample["eo"], sample["ir"], sample["label"]
        if eo.shape[:2] != ir.shape[:2] or eo.shape[:2] != label.shape[:2]:
            raise ValueError(
                f"sample {sample.get('name', '?')!r}: EO {eo.shape[:2]}, IR {ir.shape[:2]} and label "
                f"{label.shape[:2]} sizes differ"
            )
        base_h, base_w = self.base_size or eo.shape[:2]
        lo, hi = self.cfg["scale"]
        s = float(rng.uniform(lo, hi))
        height, width = max(1, int(round(base_h * s))), max(1, int(round(base_w * s)))
        if (height, width) != eo.shape[:2]:
            eo = cv2.resize(eo, (width, height), interpolation=cv2.INTER_LINEAR)
            ir = cv2.resize(ir, (width, height), interpolation=cv2.INTER_LINEAR)
            label = _resize_label(label, height, width)
        crop = self.cfg["crop"]
        if crop is not None:
            ch, cw = crop
            pad_h, pad_w = max(0, ch - height), max(0, cw - width)
            if pad_h or pad_w:  # images pad with black, labels with ignore
                eo = cv2.copyMakeBorder(eo, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
                ir = cv2.copyMakeBorder(ir, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
                label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
            y0 = int(rng.integers(0, eo.shape[0] - ch + 1))
            x0 = int(rng.integers(0, eo.shape[1] - cw + 1))
            eo, ir, label = (
                eo[y0 : y0 + ch, x0 : x0 + cw], ir[y0 : y0 + ch, x0 : x0 + cw], label[y0 : y0 + ch, x0 : x0 + cw]
            )
        if rng.random() < self.cfg["hflip"]:
            eo, ir, label = eo[:, ::-1], ir[:, ::-1], label[:, ::-1]
        out = dict(sample)
        out["eo"] = np.ascontiguousarray(eo)
        out["ir"] = np.ascontiguousarray(ir)
        out["label"] = np.ascontiguousarray(label, dtype=np.int64)
        return out

    # -- photometry: EO only
    def photometric(self, eo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """(EO after jitter and maybe dropout, whether it was dropped): the training
        objective masks the EO teacher's distillation on dropped frames."""
        eo = color_jitter(eo, self.cfg["jitter"], rng)
        if rng.random() < self.cfg["eo_dropout"]:
            return eo_dropout(eo, rng), True
        return eo, False


def color_jitter(eo: np.ndarray, amounts: dict, rng: np.random.Generator) -> np.ndarray:
    """torchvision-style ColorJitter on an RGB uint8 image, in a random order."""
    ops = [k for k in JITTER_KEYS if amounts.get(k, 0.0) > 0]
    if not ops:
        return eo
    img = eo.astype(np.float32)
    for i in rng.permutation(len(ops)):
        op, amount = ops[i], amounts[ops[i]]
        if op == "hue":
            shift = rng.uniform(-amount, amount)
            hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 256))) % 256
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
            continue
        factor = rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount)
        if op == "brightness":
            img = img * factor
        elif op == "contrast":
            mean = float(cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).mean())
            img = (img - mean) * factor + mean
        else:  # saturation
            grey = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
            img = (img - grey) * factor + grey
    return np.clip(img, 0, 255).astype(np.uint8)


def ir_gain_offset(ir: np.ndarray, amounts: dict, rng: np.random.Generator) -> np.ndarray:
    """IR * U(1 - gain, 1 + gain) + U(-offset, offset), about the frame's mean
    (so a gain change does not also shift the scene's temperature), clipped to 8 bits."""
    gain = rng.uniform(1.0 - amounts["gain"], 1.0 + amounts["gain"])
    offset = rng.uniform(-amounts["offset"], amounts["offset"])
    img = ir.astype(np.float32)
    mean = float(img.mean())
    return np.clip((img - mean) * gain + mean + offset, 0, 255).astype(np.uint8)


def eo_dropout(eo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Simulate EO loss: black frame, or a strongly darkened and noisy copy.

    Trains the fused model not to trust EO blindly: the node switches to the
    IR-only model on a dead camera, but the frames just before the switch (dusk,
    a covered lens) still reach the fused model.
    """
    if rng.random() < 0.5:
        return np.zeros_like(eo)
    dark = eo.astype(np.float32) * rng.uniform(0.02, 0.15)
    dark += rng.standard_normal(eo.shape, dtype=np.float32) * rng.uniform(2.0, 6.0)
    return np.clip(dark, 0, 255).astype(np.uint8)
