"""Training data: the synthetic stand-in, the real RGB-T benchmarks, paired augmentation.

`build_dataset(data_cfg, split, train)` is the single entry point the training
and evaluation code uses. It validates the config strictly (a typo in a key
would otherwise silently fall back to a default) and returns a map-style torch
Dataset whose items are tensors ready for `default_collate`:

    {"eo": uint8 3xHxW (RGB), "ir": uint8 1xHxW, "label": int64 HxW (255 = ignore),
     "name": str, "is_night": bool, "eo_dropped": bool (the augmentation blacked EO out)}

Real datasets take `only: day | night` (default all): the frames whose names
end in D or N (MFNet, MSRS), e.g. a day-only EO teacher from the real root;
and `ir_dir`: a folder of another camera's thermal images for the same frames
(`<name>.png`, pixel-aligned); only the frames with one are used.
Training items are augmented (scale/crop/flip/jitter/EO dropout) and all have
the crop size; evaluation items are only resized to `eval_size` when given.
Call `dataset.set_epoch(epoch)` at the start of every epoch: augmentation is
seeded by (seed, index, epoch), so without it every epoch repeats the same
crops (reproducible across DataLoader workers either way).

torch is imported only if installed, so the numpy parts (the synthetic
generator, the loaders) also work on a runtime machine without torch.
"""

from __future__ import annotations

import numpy as np

from csk_ros.imaging.thermal import ThermalScaling

from .augment import PairedAugment, _size_pair, parse_augment_config, resize_sample
from .classes import (
    IGNORE_INDEX,
    MFNET_CLASSES,
    MFNET_PALETTE,
    MSRS_CLASSES,
    MSRS_PALETTE,
    PST900_CLASSES,
    PST900_PALETTE,
)
from .real import (
    DAY_NIGHT,
    MFNET_SPLITS,
    MSRS_SPLITS,
    PST900_SPLITS,
    MFNetSource,
    MSRSSource,
    PST900Source,
    ThermalOverride,
    restrict_day_night,
)
from .synthetic import SPLITS as SYNTHETIC_SPLITS
from .synthetic import SyntheticScenes, generate_sample

try:  # the torch Dataset base is optional so that the numpy parts import without torch
    import torch
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # pragma: no cover - exercised only on torch-free machines
    torch = None
    _DatasetBase = object

__all__ = [
    "IGNORE_INDEX",
    "MFNET_CLASSES",
    "MFNET_PALETTE",
    "MSRS_CLASSES",
    "MSRS_PALETTE",
    "PST900_CLASSES",
    "PST900_PALETTE",
    "DATASET_NAMES",
    "DAY_NIGHT",
    "PairedAugment",
    "SegmentationDataset",
    "build_dataset",
    "dataset_classes",
    "dataset_splits",
    "generate_sample",
]

DATASET_NAMES = ("synthetic", "mfnet", "pst900", "msrs")

_COMMON_KEYS = {"name", "thermal", "eval_size", "augment", "cache"}
_REAL_KEYS = {"root", "only", "ir_dir"}  # only: all | day | night (names ending in D / N); ir_dir: ThermalOverride
_SYNTHETIC_KEYS = {"size", "num_train", "num_val", "num_test", "seed", "night_fraction"}

_CLASSES = {
    "synthetic": (MFNET_CLASSES, MFNET_PALETTE),
    "mfnet": (MFNET_CLASSES, MFNET_PALETTE),
    "pst900": (PST900_CLASSES, PST900_PALETTE),
    "msrs": (MSRS_CLASSES, MSRS_PALETTE),
}
_SPLITS = {"synthetic": SYNTHETIC_SPLITS, "mfnet": MFNET_SPLITS, "pst900": PST900_SPLITS, "msrs": MSRS_SPLITS}
_REAL_SOURCES = {"mfnet": MFNetSource, "pst900": PST900Source, "msrs": MSRSSource}


class SegmentationDataset(_DatasetBase):
    """Map-style dataset over a numpy source, with the train or eval transform."""

    def __init__(self, source, augment: PairedAugment | None = None, eval_size=None, dataset_name: str = "",
                 cache: bool = False) -> None:
        self.source = source
        # cache: keep decoded samples in memory. A real 480x640 RGB-T frame costs
        # ~20 ms to decode, a third of a CPU-sized training step; small real sets
        # (MFNet subsets, ~1.5 GB per 400 frames) fit in memory. Per process:
        # DataLoader workers each fill their own copy.
        self._cache: dict[int, dict] | None = {} if cache else None
        self.augment = augment
        self.eval_size = None if eval_size is None else tuple(eval_size)
        self.dataset_name = dataset_name
        self.class_names = tuple(source.class_names)
        self.palette = [list(c) for c in source.palette]
        self.num_classes = len(self.class_names)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch (call before iterating a DataLoader)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def numpy_sample(self, index: int) -> dict:
        """The transformed sample as numpy arrays (eo HxWx3 RGB, ir HxW, label HxW)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        index = index % len(self)
        if self._cache is None:
            sample = self.source.load(index)
        else:  # a shallow copy: the transforms build new arrays, never write into these
            if index not in self._cache:
                self._cache[index] = self.source.load(index)
            sample = dict(self._cache[index])
        if self.augment is not None:
            return self.augment(sample, index=index, epoch=self.epoch)
        return resize_sample(sample, self.eval_size)

    def __getitem__(self, index: int) -> dict:
        if torch is None:
            raise RuntimeError("SegmentationDataset items are torch tensors: install torch, or use numpy_sample()")
        s = self.numpy_sample(index)
        return {
            "eo": torch.from_numpy(np.ascontiguousarray(s["eo"].transpose(2, 0, 1))),
            "ir": torch.from_numpy(np.ascontiguousarray(s["ir"])[None]),
            "label": torch.from_numpy(np.ascontiguousarray(s["label"], dtype=np.int64)),
            "name": s["name"],
            "is_night": bool(s["is_night"]),
            "eo_dropped": bool(s.get("eo_dropped", False)),
        }


def dataset_classes(data_cfg: dict) -> tuple[tuple[str, ...], list[list[int]]]:
    """(class names, palette) of the configured dataset, without touching any file."""
    name = _dataset_name(data_cfg)
    names, palette = _CLASSES[name]
    return tuple(names), [list(c) for c in palette]


def dataset_splits(name: str) -> tuple[str, ...]:
    """The split names a dataset knows (MSRS 'val' exists only where its data does)."""
    if name not in _SPLITS:
        raise ValueError(f"unknown dataset name {name!r}; expected one of {list(DATASET_NAMES)}")
    return _SPLITS[name]


def _dataset_name(data_cfg) -> str:
    if not isinstance(data_cfg, dict):
        raise ValueError(f"data config must be a mapping, got {type(data_cfg).__name__}")
    if "name" not in data_cfg:
        raise ValueError(f"data config is missing required key 'name' (one of {list(DATASET_NAMES)})")
    name = data_cfg["name"]
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset name {name!r} in data config; expected one of {list(DATASET_NAMES)}")
    return name


def _count(cfg: dict, key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"data.{key} must be a non-negative integer, got {value!r}")
    return int(value)


def build_dataset(data_cfg: dict, split: str, train: bool):
    """Build the dataset of `split` described by `data_cfg` (see the module docstring).

    Raises ValueError for an unknown name/split/key or a missing required key,
    FileNotFoundError for a missing root, folder, split file or image.
    """
    name = _dataset_name(data_cfg)
    synthetic = name == "synthetic"
    allowed = _COMMON_KEYS | (_SYNTHETIC_KEYS if synthetic else _REAL_KEYS)
    unknown = sorted(set(data_cfg) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in data config for {name!r}; expected some of {sorted(allowed)}")
    splits = _SPLITS[name]
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; expected one of {list(splits)}")

    thermal_cfg = data_cfg.get("thermal")
    if thermal_cfg is not None and not isinstance(thermal_cfg, dict):
        raise ValueError(f"data.thermal must be a mapping for ThermalScaling, got {thermal_cfg!r}")
    rule = ThermalScaling.from_dict(thermal_cfg)  # synthetic IR is already 8-bit: the rule passes it through
    eval_size = data_cfg.get("eval_size")
    eval_size = None if eval_size is None else _size_pair(eval_size, "data.eval_size")

    if synthetic:
        size = _size_pair(data_cfg.get("size", (96, 128)), "data.size")
        seed = _count(data_cfg, "seed", 0)
        try:
            night_fraction = float(data_cfg.get("night_fraction", 0.5))
        except (TypeError, ValueError):
            raise ValueError(
                f"data.night_fraction must be a number in [0, 1], got {data_cfg['night_fraction']!r}"
            ) from None
        if not 0.0 <= night_fraction <= 1.0:
            raise ValueError(f"data.night_fraction must be in [0, 1], got {night_fraction}")
        counts = {
            "train": _count(data_cfg, "num_train", 512),
            "val": _count(data_cfg, "num_val", 64),
            "test": _count(data_cfg, "num_test", 64),
        }
        num = counts["test" if split.startswith("test") else split]
        source = SyntheticScenes(split, num, seed=seed, size=size, night_fraction=night_fraction)
        default_scale, native = (0.75, 1.25), size
    else:
        if "root" not in data_cfg or data_cfg["root"] in (None, ""):
            raise ValueError(f"data config for {name!r} is missing required key 'root' (the dataset folder)")
        root = str(data_cfg["root"])
        source = restrict_day_night(_REAL_SOURCES[name](root, split, thermal=rule), data_cfg.get("only", "all"), name)
        if data_cfg.get("ir_dir"):
            source = ThermalOverride(source, str(data_cfg["ir_dir"]), rule)
        default_scale, native = (0.5, 2.0), None

    augment = None
    if train:
        aug_cfg = data_cfg.get("augment") or {}
        if not isinstance(aug_cfg, dict):
            raise ValueError(f"data.augment must be a mapping, got {aug_cfg!r}")
        default_crop = eval_size or native
        parsed = parse_augment_config(aug_cfg, default_scale=default_scale, default_crop=default_crop)
        if parsed["crop"] is None:
            raise ValueError(
                f"data config for {name!r} is missing required key 'augment.crop' [H, W] for training "
                "(or give 'eval_size'): training batches need one crop size"
            )
        aug_cfg = dict(aug_cfg, crop=list(parsed["crop"]))
        augment = PairedAugment(aug_cfg, base_size=eval_size, default_scale=default_scale)
    elif data_cfg.get("augment") is not None:
        parse_augment_config(data_cfg["augment"])  # still validate: a typo should fail in eval runs too
    cache = data_cfg.get("cache", False)
    if not isinstance(cache, bool):
        raise ValueError(f"data.cache must be true or false, got {cache!r}")
    return SegmentationDataset(source, augment=augment, eval_size=eval_size, dataset_name=name, cache=cache)
