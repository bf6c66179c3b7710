"""The synthetic RGB-T stand-in: deterministic, complete, and built so that fusion matters."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from training.data import build_dataset, synthetic
from training.data.classes import MFNET_CLASSES, MFNET_PALETTE
from training.data.synthetic import generate_sample

CAR, PERSON, BIKE, CURVE, CAR_STOP, GUARDRAIL, COLOR_CONE, BUMP = range(1, 9)
PAINTED = (CURVE, CAR_STOP, BUMP, COLOR_CONE)


@pytest.fixture(scope="module")
def samples():
    """64 train scenes at the default size, generated once for the statistical tests."""
    return [generate_sample(i, "train", seed=0) for i in range(64)]


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in ("eo", "ir", "label")) and a["name"] == b["name"]


def test_same_index_gives_identical_sample():
    assert _same(generate_sample(5, "train", seed=3), generate_sample(5, "train", seed=3))


def test_seeds_splits_and_indices_give_different_scenes():
    base = generate_sample(5, "train", seed=3)
    assert not np.array_equal(base["eo"], generate_sample(5, "train", seed=4)["eo"])
    assert not np.array_equal(base["eo"], generate_sample(5, "val", seed=3)["eo"])
    assert not np.array_equal(base["eo"], generate_sample(5, "test", seed=3)["eo"])
    assert not np.array_equal(base["eo"], generate_sample(6, "train", seed=3)["eo"])


def test_shapes_dtypes_and_names():
    s = generate_sample(0, "train", size=(80, 112))
    assert s["eo"].shape == (80, 112, 3) and s["eo"].dtype == np.uint8
    assert s["ir"].shape == (80, 112) and s["ir"].dtype == np.uint8
    assert s["label"].shape == (80, 112) and s["label"].dtype == np.int64
    assert isinstance(s["is_night"], bool)
    assert s["name"].endswith("N" if s["is_night"] else "D")
    assert s["label"].min() >= 0 and s["label"].max() < len(MFNET_CLASSES)


def test_every_class_appears_across_the_set(samples):
    present = set()
    for s in samples:
        present |= set(np.unique(s["label"]).tolist())
    assert present == set(range(9)), f"missing classes: {sorted(set(range(9)) - present)}"


def test_every_object_class_appears_in_several_scenes(samples):
    counts = np.zeros(9, int)
    for s in samples:
        counts[np.unique(s["label"])] += 1
    assert counts[1:].min() >= 10, dict(zip(MFNET_CLASSES, counts.tolist()))


def test_day_and_night_both_occur(samples):
    nights = sum(s["is_night"] for s in samples)
    assert 10 <= nights <= 54


def test_night_eo_is_much_darker_while_ir_is_unchanged(samples):
    day = [s for s in samples if not s["is_night"]]
    night = [s for s in samples if s["is_night"]]
    eo_day = np.mean([s["eo"].mean() for s in day])
    eo_night = np.mean([s["eo"].mean() for s in night])
    assert eo_night < 0.4 * eo_day, (eo_day, eo_night)
    ir_day = np.mean([s["ir"].mean() for s in day]), np.mean([s["ir"].std() for s in day])
    ir_night = np.mean([s["ir"].mean() for s in night]), np.mean([s["ir"].std() for s in night])
    assert abs(ir_day[0] - ir_night[0]) < 6.0, (ir_day, ir_night)
    assert abs(ir_day[1] - ir_night[1]) < 5.0, (ir_day, ir_night)


def _ir_contrast(samples, cls: int) -> list[float]:
    """Mean IR inside each instance region of `cls` minus mean IR of a background ring around it."""
    kernel = np.ones((3, 3), np.uint8)
    diffs = []
    for s in samples:
        mask = (s["label"] == cls).astype(np.uint8)
        if mask.sum() < 4:
            continue
        ring = (cv2.dilate(mask, kernel, iterations=4) > 0) & ~(cv2.dilate(mask, kernel, iterations=1) > 0)
        ring &= s["label"] == 0
        if ring.sum() < 4:
            continue
        ir = s["ir"].astype(np.float64)
        diffs.append(ir[mask > 0].mean() - ir[ring].mean())
    return diffs


@pytest.fixture(scope="module")
def day_samples():
    return [generate_sample(i, "train", seed=1, night_fraction=0.0) for i in range(64)]


@pytest.fixture(scope="module")
def night_samples():
    return [generate_sample(i, "train", seed=1, night_fraction=1.0) for i in range(64)]


@pytest.mark.parametrize("cls", (CURVE, CAR_STOP, COLOR_CONE))
def test_paint_concrete_and_cones_are_cooler_than_sunlit_asphalt(day_samples, cls):
    diffs = _ir_contrast(day_samples, cls)
    assert len(diffs) >= 10
    # faint but consistent: a few counts below the road in (nearly) every scene
    assert -12.0 < np.mean(diffs) < -2.5, (MFNET_CLASSES[cls], np.round(diffs, 1))
    assert np.mean(np.asarray(diffs) < 0) >= 0.85, (MFNET_CLASSES[cls], np.round(diffs, 1))


def test_day_paint_contrast_has_the_documented_magnitude(day_samples):
    """Curves: 60% white, 40% yellow paint, scaled by the scene's sun factor (module docstring)."""
    def mean(r):
        return sum(r) / 2

    sun = mean(synthetic.SUN_RANGE)
    table = synthetic.PASSIVE_CONTRAST_K
    expected = synthetic.COUNTS_PER_KELVIN * sun * (
        0.6 * mean(table["white_paint"][0]) + 0.4 * mean(table["yellow_paint"][0]))
    measured = np.mean(_ir_contrast(day_samples, CURVE))
    # blur and noise pull thin lines a little towards the road, never past it
    assert expected < 0  # cooler than sunlit asphalt
    assert 1.25 * expected < measured < 0.6 * expected, (expected, measured)


@pytest.mark.parametrize("cls", (CURVE, CAR_STOP))
def test_paint_and_concrete_contrast_is_smaller_at_night(day_samples, night_samples, cls):
    day, night = np.mean(_ir_contrast(day_samples, cls)), np.mean(_ir_contrast(night_samples, cls))
    assert abs(night) < 0.5 * abs(day), (MFNET_CLASSES[cls], day, night)


def test_rubber_bumps_are_warm_by_day_and_invert_at_night(day_samples, night_samples):
    day, night = _ir_contrast(day_samples, BUMP), _ir_contrast(night_samples, BUMP)
    assert len(day) >= 10 and len(night) >= 10
    assert np.mean(day) > 0.3 and np.mean(night) < -0.3, (np.mean(day), np.mean(night))


@pytest.mark.parametrize("cls", PAINTED)
def test_passive_contrast_is_faint_next_to_warm_objects(samples, cls):
    diffs = _ir_contrast(samples, cls)
    assert len(diffs) >= 5
    assert np.mean(np.abs(diffs)) < 12.0, (MFNET_CLASSES[cls], np.round(diffs, 1))
    assert np.mean(np.abs(diffs)) < 0.1 * np.mean(_ir_contrast(samples, PERSON))


def test_painted_classes_are_visible_in_day_eo(samples):
    kernel = np.ones((3, 3), np.uint8)
    for cls in PAINTED:
        contrasts = []
        for s in samples:
            mask = (s["label"] == cls).astype(np.uint8)
            if s["is_night"] or mask.sum() < 4:
                continue
            ring = (cv2.dilate(mask, kernel, iterations=3) > 0) & (mask == 0) & (s["label"] == 0)
            if ring.sum() >= 4:
                eo = s["eo"].astype(np.float64)
                contrasts.append(np.linalg.norm(eo[mask > 0].mean(0) - eo[ring].mean(0)))
        assert contrasts and np.mean(contrasts) > 30.0, (MFNET_CLASSES[cls], contrasts)


@pytest.mark.parametrize("cls,min_diff", [(PERSON, 60.0), (CAR, 15.0), (BIKE, 5.0)])
def test_persons_cars_and_bikes_are_warmer_than_their_surroundings(samples, cls, min_diff):
    diffs = _ir_contrast(samples, cls)
    assert len(diffs) >= 5
    assert np.mean(diffs) > min_diff and np.min(diffs) > 0, (MFNET_CLASSES[cls], np.round(diffs, 1))


def test_persons_are_warmer_than_painted_things(samples):
    assert np.mean(_ir_contrast(samples, PERSON)) > 10 * np.mean(np.abs(_ir_contrast(samples, CURVE)))


def test_build_dataset_returns_collatable_tensors():
    cfg = {"name": "synthetic", "num_train": 6, "size": [64, 80], "augment": {"crop": [48, 64]}}
    ds = build_dataset(cfg, "train", train=True)
    assert len(ds) == 6 and ds.num_classes == 9
    assert ds.class_names == MFNET_CLASSES and ds.palette == [list(c) for c in MFNET_PALETTE]
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["eo"].shape == (4, 3, 48, 64) and batch["eo"].dtype == torch.uint8
    assert batch["ir"].shape == (4, 1, 48, 64) and batch["ir"].dtype == torch.uint8
    assert batch["label"].shape == (4, 48, 64) and batch["label"].dtype == torch.int64
    assert batch["is_night"].dtype == torch.bool and len(batch["name"]) == 4


def test_eval_dataset_is_unaugmented_and_matches_the_generator():
    cfg = {"name": "synthetic", "num_test": 5, "seed": 2}
    ds = build_dataset(cfg, "test", train=False)
    item = ds[3]
    ref = generate_sample(3, "test", seed=2)
    assert np.array_equal(item["eo"].permute(1, 2, 0).numpy(), ref["eo"])
    assert np.array_equal(item["ir"][0].numpy(), ref["ir"])
    assert np.array_equal(item["label"].numpy(), ref["label"])


def test_eval_size_resizes_eval_items():
    ds = build_dataset({"name": "synthetic", "num_val": 2, "eval_size": [48, 64]}, "val", train=False)
    item = ds[0]
    assert item["eo"].shape == (3, 48, 64) and item["ir"].shape == (1, 48, 64) and item["label"].shape == (48, 64)
    assert set(np.unique(item["label"].numpy())) <= set(range(9))


def test_test_day_and_test_night_partition_test():
    cfg = {"name": "synthetic", "num_test": 20}
    test = build_dataset(cfg, "test", train=False)
    day = build_dataset(cfg, "test_day", train=False)
    night = build_dataset(cfg, "test_night", train=False)
    assert len(day) + len(night) == len(test) == 20 and len(day) > 0 and len(night) > 0
    assert all(not day[i]["is_night"] for i in range(len(day)))
    assert all(night[i]["is_night"] for i in range(len(night)))
    names = {test[i]["name"] for i in range(len(test))}
    assert {day[i]["name"] for i in range(len(day))} | {night[i]["name"] for i in range(len(night))} == names


def test_night_fraction_extremes():
    all_night = build_dataset({"name": "synthetic", "num_val": 8, "night_fraction": 1.0}, "val", train=False)
    assert all(all_night[i]["is_night"] for i in range(8))
    all_day = build_dataset({"name": "synthetic", "num_val": 8, "night_fraction": 0.0}, "val", train=False)
    assert not any(all_day[i]["is_night"] for i in range(8))


def test_training_epochs_differ_but_are_reproducible():
    cfg = {"name": "synthetic", "num_train": 4}
    a, b = build_dataset(cfg, "train", True), build_dataset(cfg, "train", True)
    assert torch.equal(a[1]["eo"], b[1]["eo"]) and torch.equal(a[1]["label"], b[1]["label"])
    first = a[1]["eo"].clone()
    a.set_epoch(1)
    assert not torch.equal(first, a[1]["eo"])


@pytest.mark.parametrize(
    "cfg,split,needle",
    [
        ({"name": "synthetc"}, "train", "synthetc"),
        ({}, "train", "name"),
        ({"name": "synthetic", "num_trian": 5}, "train", "num_trian"),
        ({"name": "synthetic"}, "validation", "validation"),
        ({"name": "synthetic", "size": [96]}, "train", "data.size"),
        ({"name": "synthetic", "night_fraction": 2}, "train", "night_fraction"),
        ({"name": "synthetic", "augment": {"scal": [1, 2]}}, "train", "scal"),
        ({"name": "synthetic", "augment": {"hflip": 1.5}}, "train", "hflip"),
        ({"name": "synthetic", "thermal": {"mode": "auto"}}, "train", "mode"),
        ({"name": "synthetic", "root": "/data"}, "train", "root"),
    ],
)
def test_bad_config_raises_naming_the_problem(cfg, split, needle):
    with pytest.raises(ValueError, match=needle):
        build_dataset(cfg, split, train=True)
