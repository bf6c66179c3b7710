"""Real data as a first-class setting: a root without test files, the day/night
filter, the stride hold-out, IR gain/offset jitter, the sample cache, and the
real-data study preset (benchmarks/quality.py --dataset mfnet) on a generated
RTFNet-layout tree (never ../shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.data import build_dataset
from training.data.augment import PairedAugment, parse_augment_config
from training.train import holdout_split

REPO = Path(__file__).resolve().parents[2]
H, W = 48, 64
TRAIN = [f"{i:05d}{'D' if i % 2 else 'N'}" for i in range(1, 13)]  # 6 day, 6 night
VAL = ["00013D", "00014N", "00015D", "00016N"]


def _frame(seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    label = np.zeros((H, W), np.uint8)
    label[H // 3:, : W // 2] = 1 + seed % 3  # a "car / person / bike" block the IR also shows
    label[: H // 4, W // 2:] = 4
    thermal = (60 + 120 * (label > 0) + rng.integers(0, 20, (H, W))).astype(np.uint8)
    bgr = np.dstack([(xx * 3 + seed) % 256, (yy * 4) % 256, 40 * label]).astype(np.uint8)
    return np.dstack([bgr, thermal]), label


@pytest.fixture
def rtfnet_root(tmp_path):
    """An MFNet root as ../shared/data/mfnet_subset is: train.txt and val.txt, no test files."""
    root = tmp_path / "mfnet_subset"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k, name in enumerate(TRAIN + VAL):
        image, label = _frame(k)
        assert cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        assert cv2.imwrite(str(root / "labels" / f"{name}.png"), label)
    (root / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (root / "val.txt").write_text("\n".join(VAL) + "\n")
    return root


def _cfg(root, **extra):
    return {"name": "mfnet", "root": str(root), **extra}


def test_a_root_without_test_files_trains_and_validates(rtfnet_root):
    assert len(build_dataset(_cfg(rtfnet_root, augment={"crop": [32, 32]}), "train", train=True)) == 12
    assert len(build_dataset(_cfg(rtfnet_root), "val", train=False)) == 4


@pytest.mark.parametrize("split", ["test", "test_day", "test_night"])
def test_asking_for_a_missing_split_fails_with_one_line_naming_the_file_and_layout(rtfnet_root, split):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(_cfg(rtfnet_root), split, train=False)
    message = str(err.value)
    assert "\n" not in message
    assert str(rtfnet_root / f"{split}.txt") in message and "RTFNet layout" in message
    assert "a root without them trains and validates" in message


@pytest.mark.parametrize("only, expected", [("day", [n for n in TRAIN if n.endswith("D")]),
                                            ("night", [n for n in TRAIN if n.endswith("N")]),
                                            ("all", TRAIN)])
def test_day_night_filter_keeps_the_frames_its_names_say(rtfnet_root, only, expected):
    ds = build_dataset(_cfg(rtfnet_root, only=only), "train", train=False)
    names = [ds[i]["name"] for i in range(len(ds))]
    assert names == expected
    assert all(ds[i]["is_night"] == (only == "night") for i in range(len(ds))) or only == "all"


def test_day_night_filter_rejects_bad_values_and_unmarked_names(rtfnet_root):
    with pytest.raises(ValueError, match="data.only must be one of"):
        build_dataset(_cfg(rtfnet_root, only="dusk"), "train", train=False)
    (rtfnet_root / "images" / "frame_x.png").write_bytes((rtfnet_root / "images" / "00001D.png").read_bytes())
    (rtfnet_root / "labels" / "frame_x.png").write_bytes((rtfnet_root / "labels" / "00001D.png").read_bytes())
    (rtfnet_root / "val.txt").write_text("frame_x\n")
    with pytest.raises(ValueError, match="'frame_x'.*does not end in D"):
        build_dataset(_cfg(rtfnet_root, only="day"), "val", train=False)
    assert len(build_dataset(_cfg(rtfnet_root), "val", train=False)) == 1  # "all" needs no marks


def test_day_night_filter_with_no_matching_frame_says_so(rtfnet_root):
    (rtfnet_root / "val.txt").write_text("00013D\n00015D\n")
    with pytest.raises(ValueError, match="has no night frames"):
        build_dataset(_cfg(rtfnet_root, only="night"), "val", train=False)


def test_teacher_stage_trains_and_selects_on_day_frames_of_the_real_root(rtfnet_root, tmp_path):
    """teacher.data {only: day}: no hand-made day-only copy of the root."""
    from training.config import load_config
    from training.train import train

    cfg = load_config(REPO / "training" / "configs" / "mfnet_cpu.yaml", [
        f"data.root={rtfnet_root}", "data.eval_size=[48,64]", "data.augment.crop=[32,48]", "model.width=8",
        "model.aspp_channels=16", "train.batch_size=2", "train.max_steps=2", "train.eval_every=2"])
    assert cfg["teacher"]["data"] == {"only": "day"}
    train(cfg, tmp_path / "teacher", "teacher")
    written = json.loads((tmp_path / "teacher" / "config.json").read_text())
    assert written["data"]["only"] == "day"
    metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert metrics["best"]["miou_by_mode"].keys() == {"eo_only"}


def test_stride_holdout_holds_out_every_kth_image():
    keep, held = holdout_split(12, 0.1, stride=5)
    assert held == [4, 9] and keep == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    assert holdout_split(12, 0.5, stride=5) == (keep, held)  # the fraction does not apply
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="holdout_stride"):
            holdout_split(12, 0.1, stride=bad)
    with pytest.raises(ValueError, match="too few"):
        holdout_split(3, 0.1, stride=5)


def test_ir_jitter_changes_gain_and_offset_only_when_on():
    sample = {"eo": np.full((H, W, 3), 100, np.uint8), "label": np.zeros((H, W), np.int64), "name": "x",
              "ir": np.tile(np.arange(W, dtype=np.uint8) * 2 + 40, (H, 1))}
    base = {"crop": [H, W], "scale": [1.0, 1.0], "hflip": 0.0, "jitter": None}
    off = PairedAugment(base)(sample, index=0)
    assert np.array_equal(off["ir"], sample["ir"])  # IR untouched by default
    on = PairedAugment(dict(base, ir_jitter={"gain": 0.3, "offset": 20}))
    outs = [on(sample, index=i)["ir"].astype(float) for i in range(8)]
    assert any(not np.array_equal(o, sample["ir"]) for o in outs)
    for out in outs:  # a linear map of the input, as a gain and offset are
        slope, intercept = np.polyfit(sample["ir"][0].astype(float), out[0], 1)
        assert 0.69 <= slope <= 1.31
    with pytest.raises(ValueError, match="ir_jitter"):
        parse_augment_config({"ir_jitter": {"gain": 1.5}})
    with pytest.raises(ValueError, match="ir_jitter"):
        parse_augment_config({"ir_jitter": {"bias": 3}})


def test_cache_returns_the_same_samples_and_reads_each_file_once(rtfnet_root):
    plain = build_dataset(_cfg(rtfnet_root), "val", train=False)
    cached = build_dataset(_cfg(rtfnet_root, cache=True), "val", train=False)
    calls = []
    load = cached.source.load
    cached.source.load = lambda i: calls.append(i) or load(i)
    for _ in range(2):
        for i in range(len(cached)):
            a, b = plain.numpy_sample(i), cached.numpy_sample(i)
            assert all(np.array_equal(a[k], b[k]) for k in ("eo", "ir", "label"))
    assert sorted(calls) == list(range(len(cached)))
    with pytest.raises(ValueError, match="data.cache"):
        build_dataset(_cfg(rtfnet_root, cache="yes"), "val", train=False)


def test_mfnet_study_preset_smoke_run_scores_val_day_and_night(rtfnet_root, tmp_path):
    """The real-data preset end to end in seconds: teacher on day frames, students
    scored on val split by day/night, the tune setting on the train hold-out."""
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--dataset", "mfnet", "--quick", "--seeds", "1",
           "--variants", "ir_baseline,csk_full", "--settings", "full,tune", "--out", str(out),
           f"data.root={rtfnet_root}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "quality.json").read_text())
    records = {r["key"]: r for r in data["runs"]}
    assert set(records) == {
        f"{s}/{v}/seed0" for s in ("full", "tune") for v in ("eo_teacher", "ir_baseline", "csk_full")
    }
    full = records["full/csk_full/seed0"]["metrics"]["ir_only"]
    assert (full["val_day"]["num_images"], full["val_night"]["num_images"], full["val"]["num_images"]) == (2, 2, 4)
    tune = records["tune/csk_full/seed0"]["metrics"]["fused"]  # every 5th of 12 train frames: 00005D, 00010N
    assert (tune["val_day"]["num_images"], tune["val_night"]["num_images"]) == (1, 1)
    teacher_cfg = json.loads((out / "runs" / "full" / "eo_teacher" / "seed0" / "config.json").read_text())
    assert teacher_cfg["data"]["only"] == "day"
    assert (out / "runs" / "full" / "csk_full" / "seed0" / "best.pt").is_file()
    md = (out / "quality.md").read_text()
    assert "| model | mode | mIoU val | mIoU day | mIoU night | seeds |" in md
    assert "CSK-Net fused at night >= EO teacher at night + 5" in md
    assert data["meta"]["num_train"] == {"full": 12, "tune": 10}
