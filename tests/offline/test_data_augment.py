"""Paired augmentation: EO, IR and label move together; photometry touches EO only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.data.augment import PairedAugment, resize_sample

IDS = np.arange(9)
# A distinct EO colour and IR level per class id, so every pixel says which id it came from.
COLORS = np.array(
    [(20, 30, 40), (200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200), (40, 200, 200),
     (120, 120, 120), (240, 160, 60)],
    np.uint8,
)
LEVELS = (IDS * 25 + 20).astype(np.uint8)


def pattern_sample(height=60, width=84, block=10) -> dict:
    """Blocks of class ids; EO and IR are pure functions of the id at each pixel."""
    yy, xx = np.mgrid[0:height, 0:width]
    label = ((yy // block) * 5 + (xx // block) * 2 + (yy // (3 * block))) % 9
    # a left/right asymmetric marker so that a flip of one array alone cannot go unnoticed
    label[: 2 * block, : 3 * block] = 8
    return {"eo": COLORS[label], "ir": LEVELS[label], "label": label.astype(np.int64), "name": "pattern",
            "is_night": False}


def stripe_sample(height=60, width=84, axis=1) -> dict:
    """Stripes of ids 2-5 px wide along `axis`, in an asymmetric order (a flip changes it)."""
    widths = np.array([2, 3, 5, 2, 4, 3, 2, 5, 3, 4, 2, 2, 3, 5])
    ids = np.repeat(np.arange(len(widths)) * 4 % 9, widths)
    n = width if axis == 1 else height
    line = np.resize(ids, n)
    label = np.broadcast_to(line[None, :] if axis == 1 else line[:, None], (height, width)).astype(np.int64)
    return {"eo": COLORS[label], "ir": LEVELS[label], "label": label.copy(), "name": "stripes", "is_night": False}


def _interior(label: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood has one label, away from the frame.

    Bilinear resampling at scale s mixes source pixels up to s output pixels
    away, so only such pixels must show their class's exact colour.
    """
    lab = label.astype(np.uint8)
    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    inside = (cv2.erode(lab, k) == cv2.dilate(lab, k)) & (label != 255)
    inside[:radius, :] = inside[-radius:, :] = False
    inside[:, :radius] = inside[:, -radius:] = False
    return inside


def _subpixel_misaligned(values: np.ndarray, label: np.ndarray, table: np.ndarray, tol: float = 3.0) -> int:
    """Count pixels whose value is nearer another neighbouring class's value than their own class's.

    On a stripe pattern a resampled pixel is a blend of two neighbouring
    stripes, and an aligned nearest-neighbour label picks the stripe with the
    larger weight, i.e. the nearer value. A label grid shifted by a fraction
    of a pixel (plain INTER_NEAREST) breaks this at stripe edges.
    """
    vals = values.reshape(*label.shape, -1).astype(np.float64)
    ref = table.reshape(len(table), -1).astype(np.float64)
    dist = np.linalg.norm(vals[:, :, None, :] - ref[None, None], axis=-1)  # H x W x classes
    k = np.ones((3, 3), np.uint8)
    near = np.stack([cv2.dilate((label == c).astype(np.uint8), k) > 0 for c in range(len(table))], -1)
    best = np.where(near, dist, np.inf).min(-1)
    valid = label != 255
    valid[[0, -1], :] = False
    valid[:, [0, -1]] = False
    own = np.take_along_axis(dist, np.minimum(label, len(table) - 1)[..., None], -1)[..., 0]
    return int(((own > best + tol) & valid).sum())


GEOMETRY_ONLY = {"scale": [0.5, 2.0], "crop": [48, 64], "hflip": 0.5, "jitter": None, "eo_dropout": 0.0}


@pytest.mark.parametrize("index", range(24))
def test_eo_ir_label_stay_aligned_under_scale_crop_flip(index):
    sample = pattern_sample()
    out = PairedAugment(GEOMETRY_ONLY, seed=7)(sample, index=index)
    assert out["eo"].shape == (48, 64, 3) and out["ir"].shape == (48, 64) and out["label"].shape == (48, 64)
    assert out["label"].dtype == np.int64 and out["eo"].dtype == np.uint8 and out["ir"].dtype == np.uint8
    label = out["label"]
    assert set(np.unique(label).tolist()) <= set(IDS.tolist()) | {255}
    inside = _interior(label)
    assert inside.sum() > 30
    eo_err = np.abs(out["eo"][inside].astype(int) - COLORS[label[inside]].astype(int)).max()
    ir_err = np.abs(out["ir"][inside].astype(int) - LEVELS[label[inside]].astype(int)).max()
    assert eo_err <= 2 and ir_err <= 2, (eo_err, ir_err)


@pytest.mark.parametrize("axis", [0, 1])
def test_labels_are_aligned_to_subpixel_accuracy(axis):
    sample = stripe_sample(axis=axis)
    aug = PairedAugment(GEOMETRY_ONLY, seed=5)
    for index in range(16):
        out = aug(sample, index=index)
        assert _subpixel_misaligned(out["eo"], out["label"], COLORS) == 0, index
        assert _subpixel_misaligned(out["ir"], out["label"], LEVELS) == 0, index


def test_geometry_covers_flips_and_both_scale_directions():
    """The alignment test above only means something if flips and up/down scaling happen."""
    aug = PairedAugment(dict(GEOMETRY_ONLY, crop=None), seed=7)
    sample = pattern_sample()
    shapes, flipped = set(), 0
    for index in range(24):
        out = aug(sample, index=index)
        shapes.add(out["label"].shape[0] > sample["label"].shape[0])
        # the marker (id 8 block at the top-left) ends up on the right after a flip
        top = out["label"][: out["label"].shape[0] // 5]
        flipped += (top[:, -3:] == 8).mean() > (top[:, :3] == 8).mean()
    assert shapes == {True, False} and 3 <= flipped <= 21


def test_padding_uses_black_images_and_ignore_label():
    sample = pattern_sample(60, 84)
    cfg = {"scale": [0.5, 0.5], "crop": [60, 84], "hflip": 0.0, "jitter": None}
    out = PairedAugment(cfg, seed=0)(sample, index=0)
    assert out["label"].shape == (60, 84)
    pad = out["label"] == 255
    assert pad.sum() == 60 * 84 - 30 * 42
    assert (out["eo"][pad] == 0).all() and (out["ir"][pad] == 0).all()
    assert not pad[:30, :42].any()


def test_jitter_changes_eo_only():
    sample = pattern_sample(48, 64)
    cfg = {"scale": [1.0, 1.0], "crop": [48, 64], "hflip": 0.0,
           "jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}}
    aug = PairedAugment(cfg, seed=1)
    changed = 0
    for index in range(5):
        out = aug(sample, index=index)
        assert np.array_equal(out["ir"], sample["ir"])
        assert np.array_equal(out["label"], sample["label"])
        changed += not np.array_equal(out["eo"], sample["eo"])
    assert changed == 5


def test_eo_dropout_blanks_or_darkens_eo_only():
    sample = pattern_sample(48, 64)
    cfg = {"scale": [1.0, 1.0], "crop": [48, 64], "hflip": 0.0, "jitter": None, "eo_dropout": 1.0}
    aug = PairedAugment(cfg, seed=3)
    means = []
    for index in range(8):
        out = aug(sample, index=index)
        assert np.array_equal(out["ir"], sample["ir"]) and np.array_equal(out["label"], sample["label"])
        means.append(out["eo"].mean())
    assert max(means) < 0.25 * sample["eo"].mean()
    assert min(means) == 0.0 and max(means) > 0.0  # both variants occur


def test_no_eo_dropout_by_default():
    sample = pattern_sample(48, 64)
    aug = PairedAugment({"scale": [1, 1], "crop": [48, 64], "jitter": None}, seed=0)
    assert all(aug(sample, index=i)["eo"].mean() > 0.5 * sample["eo"].mean() for i in range(20))


def test_deterministic_for_a_fixed_seed_index_and_epoch():
    sample = pattern_sample()
    cfg = dict(GEOMETRY_ONLY, jitter={"brightness": 0.3, "hue": 0.05}, eo_dropout=0.3)
    a, b = PairedAugment(cfg, seed=11), PairedAugment(cfg, seed=11)
    for index in range(6):
        x, y = a(sample, index=index, epoch=2), b(sample, index=index, epoch=2)
        assert all(np.array_equal(x[k], y[k]) for k in ("eo", "ir", "label"))
    differs = lambda o1, o2: not np.array_equal(o1["eo"], o2["eo"])  # noqa: E731
    assert any(differs(a(sample, index=i), PairedAugment(cfg, seed=12)(sample, index=i)) for i in range(6))
    assert any(differs(a(sample, index=i, epoch=0), a(sample, index=i, epoch=1)) for i in range(6))
    assert any(differs(a(sample, index=0), a(sample, index=i)) for i in range(1, 6))


def test_input_sample_is_not_modified():
    sample = pattern_sample()
    copy = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in sample.items()}
    PairedAugment(dict(GEOMETRY_ONLY, jitter={"brightness": 0.5}, eo_dropout=0.5), seed=0)(sample, index=1)
    assert all(np.array_equal(copy[k], sample[k]) for k in ("eo", "ir", "label"))


def test_scale_is_relative_to_base_size():
    sample = pattern_sample(60, 84)
    aug = PairedAugment({"scale": [1, 1], "crop": None, "hflip": 0.0, "jitter": None}, base_size=(30, 42))
    assert aug(sample, index=0)["label"].shape == (30, 42)


@pytest.mark.parametrize("size", [(45, 63), (83, 97), (150, 210)])
def test_resize_sample_keeps_labels_valid_and_aligned(size):
    sample = pattern_sample(60, 84)
    out = resize_sample(sample, size)
    assert out["eo"].shape == (*size, 3) and out["ir"].shape == size and out["label"].dtype == np.int64
    assert set(np.unique(out["label"]).tolist()) <= set(IDS.tolist())
    inside = _interior(out["label"], radius=3)
    assert np.abs(out["eo"][inside].astype(int) - COLORS[out["label"][inside]].astype(int)).max() <= 2
    assert np.abs(out["ir"][inside].astype(int) - LEVELS[out["label"][inside]].astype(int)).max() <= 2
    for axis in (0, 1):
        stripes = resize_sample(stripe_sample(axis=axis), size)
        assert _subpixel_misaligned(stripes["eo"], stripes["label"], COLORS) == 0
    assert resize_sample(sample, None) is sample


@pytest.mark.parametrize(
    "cfg,needle",
    [
        ({"scael": [1, 2]}, "scael"),
        ({"scale": [2, 1]}, "scale"),
        ({"crop": [0, 10]}, "crop"),
        ({"hflip": -0.1}, "hflip"),
        ({"eo_dropout": 2}, "eo_dropout"),
        ({"jitter": {"gamma": 0.1}}, "gamma"),
        ({"jitter": {"hue": 0.9}}, "hue"),
    ],
)
def test_bad_augment_config_raises(cfg, needle):
    with pytest.raises(ValueError, match=needle):
        PairedAugment(cfg, seed=0)
