"""Real-benchmark loaders on tiny fixture folders written in each dataset's real layout."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8
from training.data import build_dataset
from training.data.classes import MFNET_CLASSES, PST900_CLASSES, PST900_PALETTE

H, W = 24, 32


def _rgb(seed: int) -> np.ndarray:
    """An RGB image whose channels differ everywhere, so a channel swap is visible."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack(
        [(200 + seed + 0 * xx) % 256, (20 + 3 * xx + seed) % 256, (90 + 2 * yy + seed) % 256], -1
    ).astype(np.uint8)


def _thermal8(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx * 5 + yy * 2 + seed * 7) % 251).astype(np.uint8)


def _label(num_classes: int, seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    lab = ((xx // 4 + yy // 6 + seed) % num_classes).astype(np.uint8)
    lab[0, 0] = 255  # ignore pixels must survive loading
    return lab


def _write(path: str, img: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img), path


# --------------------------------------------------------------------------- MFNet

MFNET_NAMES = {"train": ["00001D", "00002N", "00003D"], "val": ["00004N"], "test": ["00005D", "00006N"]}


@pytest.fixture
def mfnet_root(tmp_path):
    """RTFNet layout: images/*.png 4-channel, labels/*.png, split files."""
    root = tmp_path / "MFNet"
    for split, names in MFNET_NAMES.items():
        for k, name in enumerate(names):
            seed = int(name[:5])
            rgb, thermal = _rgb(seed), _thermal8(seed)
            bgra = np.dstack([rgb[..., ::-1], thermal])  # OpenCV writes B, G, R, A
            _write(str(root / "images" / f"{name}.png"), bgra)
            _write(str(root / "labels" / f"{name}.png"), _label(9, seed))
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
    test = MFNET_NAMES["test"]
    (root / "test_day.txt").write_text("\n".join(n for n in test if n.endswith("D")) + "\n")
    (root / "test_night.txt").write_text("\n".join(n for n in test if n.endswith("N")) + "\n")
    return root


def test_mfnet_round_trip(mfnet_root):
    ds = build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)
    assert len(ds) == 3 and ds.class_names == MFNET_CLASSES and ds.num_classes == 9
    for i, name in enumerate(MFNET_NAMES["train"]):
        item = ds[i]
        seed = int(name[:5])
        assert item["name"] == name
        assert item["is_night"] == name.endswith("N")
        assert item["eo"].dtype == torch.uint8 and item["eo"].shape == (3, H, W)
        assert np.array_equal(item["eo"].permute(1, 2, 0).numpy(), _rgb(seed))  # RGB order, not BGR
        assert item["ir"].shape == (1, H, W) and np.array_equal(item["ir"][0].numpy(), _thermal8(seed))
        assert item["label"].dtype == torch.int64 and np.array_equal(item["label"].numpy(), _label(9, seed))


def test_mfnet_day_night_splits(mfnet_root):
    cfg = {"name": "mfnet", "root": str(mfnet_root)}
    night = build_dataset(cfg, "test_night", train=False)
    day = build_dataset(cfg, "test_day", train=False)
    assert [night[i]["name"] for i in range(len(night))] == ["00006N"] and night[0]["is_night"]
    assert [day[i]["name"] for i in range(len(day))] == ["00005D"] and not day[0]["is_night"]
    assert len(build_dataset(cfg, "val", train=False)) == 1


def test_mfnet_training_batches_have_the_crop_size(mfnet_root):
    cfg = {"name": "mfnet", "root": str(mfnet_root), "augment": {"crop": [16, 20], "eo_dropout": 0.5}}
    ds = build_dataset(cfg, "train", train=True)
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert (batch["eo"].shape == (3, 3, 16, 20) and batch["ir"].shape == (3, 1, 16, 20)
            and batch["label"].shape == (3, 16, 20))
    assert set(np.unique(batch["label"].numpy()).tolist()) <= set(range(9)) | {255}


def test_mfnet_eval_size(mfnet_root):
    ds = build_dataset({"name": "mfnet", "root": str(mfnet_root), "eval_size": [12, 16]}, "test", train=False)
    assert ds[0]["eo"].shape == (3, 12, 16) and ds[0]["label"].shape == (12, 16)


def test_mfnet_ir_dir_swaps_the_thermal_of_the_frames_it_holds(mfnet_root, tmp_path):
    """data.ir_dir: another camera's thermal for the same labelled frames (the study's oracle trains on it)."""
    other = tmp_path / "ir_other"
    _write(str(other / "00001D.png"), 255 - _thermal8(1))
    _write(str(other / "00003D.png"), 255 - _thermal8(3))
    cfg = {"name": "mfnet", "root": str(mfnet_root), "ir_dir": str(other), "augment": {"crop": [16, 20]}}
    ds = build_dataset(cfg, "train", train=False)
    assert [ds[i]["name"] for i in range(len(ds))] == ["00001D", "00003D"]  # 00002N has no file: left out
    assert np.array_equal(ds[1]["ir"][0].numpy(), 255 - _thermal8(3))
    assert np.array_equal(ds[1]["eo"].permute(1, 2, 0).numpy(), _rgb(3)) and ds[1]["label"].shape == (H, W)
    assert len(build_dataset(cfg, "train", train=True)) == 2
    day = build_dataset(dict(cfg, only="day"), "train", train=False)  # day/night restriction first, then the swap
    assert [day[i]["name"] for i in range(len(day))] == ["00001D", "00003D"]
    with pytest.raises(ValueError, match="holds none of the 1 frames of split val"):
        build_dataset(cfg, "val", train=False)
    with pytest.raises(FileNotFoundError, match="data.ir_dir .*no such folder"):
        build_dataset(dict(cfg, ir_dir=str(tmp_path / "missing")), "train", train=False)
    _write(str(other / "00001D.png"), np.zeros((H // 2, W), np.uint8))
    with pytest.raises(ValueError, match="pixel-aligned"):
        build_dataset(cfg, "train", train=False)[0]


def test_real_training_without_crop_or_eval_size_is_rejected(mfnet_root):
    with pytest.raises(ValueError, match="augment.crop"):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=True)


def test_mfnet_missing_split_file(mfnet_root):
    os.remove(mfnet_root / "test.txt")
    with pytest.raises(FileNotFoundError, match="split file.*" + str(mfnet_root / "test.txt")):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "test", train=False)


def test_mfnet_missing_label_file_fails_at_construction(mfnet_root):
    missing = mfnet_root / "labels" / "00002N.png"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)


def test_mfnet_missing_image_file(mfnet_root):
    missing = mfnet_root / "images" / "00005D.png"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "test", train=False)


def test_mfnet_missing_folder(mfnet_root):
    for f in (mfnet_root / "labels").iterdir():
        f.unlink()
    (mfnet_root / "labels").rmdir()
    with pytest.raises(FileNotFoundError, match=str(mfnet_root / "labels")):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)


def test_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    for name in ("mfnet", "pst900", "msrs"):
        with pytest.raises(FileNotFoundError, match=str(missing)):
            build_dataset({"name": name, "root": str(missing)}, "train", train=False)


def test_real_dataset_without_root_is_rejected():
    with pytest.raises(ValueError, match="root"):
        build_dataset({"name": "mfnet"}, "train", train=False)


def test_mfnet_bad_label_value_names_the_file(mfnet_root):
    bad = _label(9, 1)
    bad[5, 5] = 9
    path = mfnet_root / "labels" / "00001D.png"
    _write(str(path), bad)
    ds = build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)
    with pytest.raises(ValueError, match=str(path) + r".*\[9\]"):
        ds[0]


def test_mfnet_three_channel_image_is_rejected(mfnet_root):
    path = mfnet_root / "images" / "00001D.png"
    _write(str(path), _rgb(1))
    ds = build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)
    with pytest.raises(ValueError, match=str(path) + ".*4 channels"):
        ds[0]


def test_corrupt_image_names_the_file(mfnet_root):
    path = mfnet_root / "images" / "00003D.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    ds = build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "train", train=False)
    with pytest.raises(ValueError, match=str(path)):
        ds[2]


def test_unknown_split_is_rejected(mfnet_root):
    with pytest.raises(ValueError, match="validation"):
        build_dataset({"name": "mfnet", "root": str(mfnet_root)}, "validation", train=False)


# --------------------------------------------------------------------------- PST900

PST_NAMES = {
    "train": ["32_bag_11_rect_rgb_frame0000000012", "42_bag_2_rect_rgb_frame0000000099"],
    "test": ["5_bag_1_rect_rgb_frame0000000001"],
}


def _thermal16(seed: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (20000 + 40 * xx + 30 * yy + seed).astype(np.uint16)


@pytest.fixture
def pst_root(tmp_path):
    """PST900 layout: <split>/{rgb,thermal,labels}/<name>.png, 16-bit thermal."""
    root = tmp_path / "PST900_RGBT_Dataset"
    for split, names in PST_NAMES.items():
        for k, name in enumerate(names):
            _write(str(root / split / "rgb" / f"{name}.png"), _rgb(k)[..., ::-1])
            _write(str(root / split / "thermal" / f"{name}.png"), _thermal16(k))
            _write(str(root / split / "labels" / f"{name}.png"), _label(5, k))
            _write(str(root / split / "depth" / f"{name}.png"), np.zeros((H, W), np.uint16))  # ignored
    return root


def test_pst900_round_trip_with_16bit_thermal_scaled_by_the_rule(pst_root):
    thermal = {"mode": "fixed", "low": 20000, "high": 22000}
    ds = build_dataset({"name": "pst900", "root": str(pst_root), "thermal": thermal}, "train", train=False)
    assert len(ds) == 2 and ds.class_names == PST900_CLASSES and ds.palette == [list(c) for c in PST900_PALETTE]
    names = sorted(PST_NAMES["train"])
    for i in range(2):
        item = ds[i]
        k = PST_NAMES["train"].index(item["name"])
        assert item["name"] == names[i] and item["is_night"] is False
        assert np.array_equal(item["eo"].permute(1, 2, 0).numpy(), _rgb(k))
        expected = scale_thermal_to_uint8(_thermal16(k), ThermalScaling.from_dict(thermal))
        got = item["ir"][0].numpy()
        assert np.array_equal(got, expected)
        raw = _thermal16(k).astype(float)
        assert np.abs(got.astype(float) - np.clip((raw - 20000) * 255 / 2000, 0, 255)).max() <= 1.0
        assert np.array_equal(item["label"].numpy(), _label(5, k))


def test_pst900_default_rule_is_percentile(pst_root):
    ds = build_dataset({"name": "pst900", "root": str(pst_root)}, "test", train=False)
    got = ds[0]["ir"][0].numpy()
    assert np.array_equal(got, scale_thermal_to_uint8(_thermal16(0), ThermalScaling(mode="percentile")))
    assert got.min() == 0 and got.max() == 255  # stretched, not the raw counts' top byte


def test_pst900_8bit_thermal_passes_through(pst_root):
    name = PST_NAMES["test"][0]
    _write(str(pst_root / "test" / "thermal" / f"{name}.png"), _thermal8(3))
    ds = build_dataset({"name": "pst900", "root": str(pst_root)}, "test", train=False)
    assert np.array_equal(ds[0]["ir"][0].numpy(), _thermal8(3))


def test_pst900_has_no_val_split(pst_root):
    with pytest.raises(ValueError, match="val"):
        build_dataset({"name": "pst900", "root": str(pst_root)}, "val", train=False)


def test_pst900_missing_thermal_file(pst_root):
    name = PST_NAMES["train"][1]
    missing = pst_root / "train" / "thermal" / f"{name}.png"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset({"name": "pst900", "root": str(pst_root)}, "train", train=False)


def test_pst900_missing_labels_folder(pst_root):
    folder = pst_root / "test" / "labels"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(FileNotFoundError, match=str(folder)):
        build_dataset({"name": "pst900", "root": str(pst_root)}, "test", train=False)


def test_pst900_bad_label_value(pst_root):
    name = PST_NAMES["test"][0]
    path = pst_root / "test" / "labels" / f"{name}.png"
    bad = _label(5, 0)
    bad[3, 3] = 7
    _write(str(path), bad)
    ds = build_dataset({"name": "pst900", "root": str(pst_root)}, "test", train=False)
    with pytest.raises(ValueError, match=str(path)):
        ds[0]


# --------------------------------------------------------------------------- MSRS

MSRS_NAMES = {"train": ["00001D", "00002N"], "test": ["00010N", "00011D", "00012D"]}


def _write_msrs(folder, names, grey3=True):
    for name in names:
        seed = int(name[:5])
        _write(str(folder / "vi" / f"{name}.png"), _rgb(seed)[..., ::-1])
        ir = _thermal8(seed)
        _write(str(folder / "ir" / f"{name}.png"), np.dstack([ir, ir, ir]) if grey3 else ir)
        _write(str(folder / "Segmentation_labels" / f"{name}.png"), _label(9, seed))


@pytest.fixture
def msrs_flat(tmp_path):
    """root/{vi,ir,Segmentation_labels} + root/<split>.txt."""
    root = tmp_path / "MSRS"
    for split, names in MSRS_NAMES.items():
        _write_msrs(root, names)
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture
def msrs_split_dirs(tmp_path):
    """The distributed layout: root/<split>/{vi,ir,Segmentation_labels}, no split files."""
    root = tmp_path / "MSRS-main"
    for split, names in MSRS_NAMES.items():
        _write_msrs(root / split, names, grey3=(split == "train"))
    return root


@pytest.mark.parametrize("layout", ["msrs_flat", "msrs_split_dirs"])
def test_msrs_round_trip_in_both_layouts(layout, request):
    root = request.getfixturevalue(layout)
    for split, names in MSRS_NAMES.items():
        ds = build_dataset({"name": "msrs", "root": str(root)}, split, train=False)
        assert sorted(ds[i]["name"] for i in range(len(ds))) == sorted(names)
        for i in range(len(ds)):
            item = ds[i]
            seed = int(item["name"][:5])
            assert item["is_night"] == item["name"].endswith("N")
            assert np.array_equal(item["eo"].permute(1, 2, 0).numpy(), _rgb(seed))
            assert item["ir"].shape == (1, H, W) and np.array_equal(item["ir"][0].numpy(), _thermal8(seed))
            assert np.array_equal(item["label"].numpy(), _label(9, seed))


def test_msrs_val_only_with_a_split_file(msrs_flat):
    with pytest.raises(FileNotFoundError, match=str(msrs_flat / "val.txt")):
        build_dataset({"name": "msrs", "root": str(msrs_flat)}, "val", train=False)
    (msrs_flat / "val.txt").write_text("00002N\n")
    ds = build_dataset({"name": "msrs", "root": str(msrs_flat)}, "val", train=False)
    assert len(ds) == 1 and ds[0]["is_night"]


def test_msrs_missing_ir_file_in_split_layout(msrs_split_dirs):
    missing = msrs_split_dirs / "test" / "ir" / "00011D.png"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset({"name": "msrs", "root": str(msrs_split_dirs)}, "test", train=False)


def test_msrs_split_file_listing_a_missing_image(msrs_flat):
    (msrs_flat / "test.txt").write_text("00010N\n00099N\n")
    with pytest.raises(FileNotFoundError, match=str(msrs_flat / "vi" / "00099N.png")):
        build_dataset({"name": "msrs", "root": str(msrs_flat)}, "test", train=False)


def test_msrs_missing_label_folder(msrs_split_dirs):
    folder = msrs_split_dirs / "train" / "Segmentation_labels"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(FileNotFoundError, match=str(folder)):
        build_dataset({"name": "msrs", "root": str(msrs_split_dirs)}, "train", train=False)


def test_msrs_bad_label_value(msrs_flat):
    path = msrs_flat / "Segmentation_labels" / "00001D.png"
    bad = _label(9, 1)
    bad[1, 1] = 12
    _write(str(path), bad)
    ds = build_dataset({"name": "msrs", "root": str(msrs_flat)}, "train", train=False)
    with pytest.raises(ValueError, match=str(path)):
        ds[0]


def test_split_file_with_folder_names_is_rejected(msrs_flat):
    (msrs_flat / "test.txt").write_text("../etc/passwd\n")
    with pytest.raises(ValueError, match="passwd"):
        build_dataset({"name": "msrs", "root": str(msrs_flat)}, "test", train=False)
