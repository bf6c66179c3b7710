"""Loaders for the real RGB-thermal benchmarks: MFNet, PST900 and MSRS.

Each source maps an index to a numpy sample dict (eo RGB uint8, ir uint8,
label int64, name, is_night). They check at construction that every listed
file exists, so a broken download fails before the first epoch, not hours
into it, and every error names the path and the layout that was expected.

Thermal images of any depth go through csk_ros.imaging.thermal.scale_thermal_to_uint8
with the configured rule: the node scales live IR the same way, so training
and deployment see the same 8-bit IR.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8

from .classes import IGNORE_INDEX, MFNET_CLASSES, MFNET_PALETTE, PST900_CLASSES, PST900_PALETTE

MFNET_LAYOUT = ("RTFNet layout: images/<name>.png (4-channel RGB+thermal), labels/<name>.png and one <split>.txt "
                "per split used (train.txt, val.txt; test.txt, test_day.txt, test_night.txt only where the test "
                "frames are: a root without them trains and validates)")
PST900_LAYOUT = ("PST900 layout: <split>/rgb/<name>.png, <split>/thermal/<name>.png, <split>/labels/<name>.png "
                 "for split in train, test")
MSRS_LAYOUT = (
    "MSRS layout: vi/, ir/, Segmentation_labels/ with <split>.txt in the root, "
    "or <split>/vi/, <split>/ir/, <split>/Segmentation_labels/"
)

MFNET_SPLITS = ("train", "val", "test", "test_day", "test_night")
PST900_SPLITS = ("train", "test")
MSRS_SPLITS = ("train", "val", "test")

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# --------------------------------------------------------------------------- file helpers


def _require_dir(path: str, dataset: str, what: str, layout: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{dataset} {what} not found: {path} (expected {layout})")


def _read_split_file(path: str, dataset: str, layout: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset} split file not found: {path} (expected {layout})")
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            stem, ext = os.path.splitext(name)
            if ext.lower() in _IMAGE_EXTS:
                name = stem
            if "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(
                    f"{dataset} split file {path} lists {name!r}: expected a bare file name without folders"
                )
            names.append(name)
    if not names:
        raise ValueError(f"{dataset} split file {path} lists no images")
    return names


def _list_stems(folder: str, dataset: str) -> list[str]:
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.lower().endswith(".png"))
    if not stems:
        raise ValueError(f"{dataset} folder {folder} contains no .png images")
    return stems


def _check_files(paths: list[str], dataset: str, what: str, source: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f"; {len(missing)} missing in total" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{dataset} {what} file not found: {missing[0]} (listed by {source}{more})")


def _imread(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        kind = "missing" if not os.path.exists(path) else "corrupt or not an image"
        raise ValueError(f"could not read image {path} ({kind})")
    return img


def _read_eo(path: str) -> np.ndarray:
    """EO as RGB uint8 (OpenCV reads B, G, R)."""
    img = _imread(path)
    if img.dtype != np.uint8:
        raise ValueError(f"EO image {path} is {img.dtype}; expected 8-bit colour")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ValueError(f"EO image {path} has {img.shape[2]} channels; expected 3")


def _to_single_channel(ir: np.ndarray, path: str) -> np.ndarray:
    if ir.ndim == 2:
        return ir
    if ir.ndim == 3 and ir.shape[2] == 1:
        return ir[..., 0]
    if ir.ndim == 3 and ir.shape[2] in (3, 4):
        # thermal saved as 3-channel grey: the channels are equal, take one.
        return ir[..., 0] if np.array_equal(ir[..., 0], ir[..., 1]) else cv2.cvtColor(ir[..., :3], cv2.COLOR_BGR2GRAY)
    raise ValueError(f"thermal image {path} has shape {ir.shape}; expected a single channel")


def _read_ir(path: str, rule: ThermalScaling) -> np.ndarray:
    ir = _to_single_channel(_imread(path), path)
    if ir.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        raise ValueError(f"thermal image {path} is {ir.dtype}; expected 8/16-bit or float")
    return scale_thermal_to_uint8(ir, rule)


def _read_label(path: str, num_classes: int) -> np.ndarray:
    lab = _imread(path)
    if lab.ndim == 3:
        if lab.shape[2] >= 3 and not (
            np.array_equal(lab[..., 0], lab[..., 1]) and np.array_equal(lab[..., 0], lab[..., 2])
        ):
            raise ValueError(f"label file {path} is a colour image; expected single-channel class ids")
        lab = lab[..., 0]
    if lab.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"label file {path} is {lab.dtype}; expected 8-bit class ids")
    bad = np.unique(lab[(lab >= num_classes) & (lab != IGNORE_INDEX)])
    if bad.size:
        raise ValueError(
            f"label file {path} has value(s) {bad[:10].tolist()} outside the class ids 0..{num_classes - 1} "
            "(255 = ignore)"
        )
    return lab.astype(np.int64)


def _check_sizes(name: str, eo: np.ndarray, ir: np.ndarray, label: np.ndarray, where: str) -> None:
    if not eo.shape[:2] == ir.shape[:2] == label.shape[:2]:
        raise ValueError(
            f"sample {name!r} in {where}: EO {eo.shape[:2]}, IR {ir.shape[:2]} and label {label.shape[:2]} sizes differ"
        )


def is_night_name(name: str) -> bool:
    """MFNet/MSRS names end in D (day) or N (night); anything else counts as day."""
    return name[-1:] in ("N", "n")


DAY_NIGHT = ("all", "day", "night")


def restrict_day_night(source, only: str, dataset: str):
    """Keep the frames of `source` whose names say day (D) or night (N).

    Why: the EO teacher must train and be selected where EO carries
    information (real day frames), and studies report day and night apart,
    without hand-made copies of a dataset root. "all" keeps everything.
    """
    if only not in DAY_NIGHT:
        raise ValueError(f"data.only must be one of {list(DAY_NIGHT)}, got {only!r}")
    if only == "all":
        return source
    if not getattr(source, "has_day_night", True):
        raise ValueError(f"data.only={only!r}: {dataset} frame names carry no day/night mark (D/N); "
                         "use data.only=all")
    marks = [name[-1:] in ("D", "d", "N", "n") for name in source.names]
    if not all(marks):
        bad = source.names[marks.index(False)]
        raise ValueError(f"data.only={only!r}: {dataset} frame {bad!r} in {source.root} does not end in D (day) "
                         "or N (night); use data.only=all")
    kept = [n for n in source.names if is_night_name(n) == (only == "night")]
    if not kept:
        raise ValueError(f"data.only={only!r}: the {dataset} {source.split} split in {source.root} has no {only} "
                         f"frames (names ending in {'N' if only == 'night' else 'D'})")
    source.names = kept
    return source


def _check_split(split: str, dataset: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"unknown {dataset} split {split!r}; expected one of {list(splits)}")


# --------------------------------------------------------------------------- sources


class MFNetSource:
    """MFNet in the RTFNet layout: 4-channel PNGs (RGB + thermal), split files."""

    class_names = MFNET_CLASSES
    palette = [list(c) for c in MFNET_PALETTE]

    def __init__(self, root: str, split: str, thermal: ThermalScaling | None = None) -> None:
        _check_split(split, "MFNet", MFNET_SPLITS)
        self.root, self.split, self.rule = root, split, thermal or ThermalScaling()
        _require_dir(root, "MFNet", "root", MFNET_LAYOUT)
        for sub in ("images", "labels"):
            _require_dir(os.path.join(root, sub), "MFNet", "folder", MFNET_LAYOUT)
        split_file = os.path.join(root, f"{split}.txt")
        self.names = _read_split_file(split_file, "MFNet", MFNET_LAYOUT)
        _check_files([self._image(n) for n in self.names], "MFNet", "image", split_file)
        _check_files([self._label(n) for n in self.names], "MFNet", "label", split_file)

    def _image(self, name: str) -> str:
        return os.path.join(self.root, "images", name + ".png")

    def _label(self, name: str) -> str:
        return os.path.join(self.root, "labels", name + ".png")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> dict:
        name = self.names[i]
        path = self._image(name)
        img = _imread(path)
        if img.ndim != 3 or img.shape[2] != 4:
            raise ValueError(f"MFNet image {path} has shape {img.shape}; expected 4 channels (RGB + thermal)")
        if img.dtype != np.uint8:
            raise ValueError(f"MFNet image {path} is {img.dtype}; expected 8-bit")
        eo = np.ascontiguousarray(img[..., 2::-1])  # OpenCV order is B, G, R, thermal
        ir = scale_thermal_to_uint8(np.ascontiguousarray(img[..., 3]), self.rule)
        label = _read_label(self._label(name), len(self.class_names))
        _check_sizes(name, eo, ir, label, self.root)
        return {"eo": eo, "ir": ir, "label": label, "name": name, "is_night": is_night_name(name)}


class PST900Source:
    """PST900: <split>/{rgb,thermal,labels}/<name>.png; no day/night information."""

    class_names = PST900_CLASSES
    palette = [list(c) for c in PST900_PALETTE]
    has_day_night = False

    def __init__(self, root: str, split: str, thermal: ThermalScaling | None = None) -> None:
        _check_split(split, "PST900", PST900_SPLITS)
        self.root, self.split, self.rule = root, split, thermal or ThermalScaling()
        _require_dir(root, "PST900", "root", PST900_LAYOUT)
        self.base = os.path.join(root, split)
        _require_dir(self.base, "PST900", "split folder", PST900_LAYOUT)
        for sub in ("rgb", "thermal", "labels"):
            _require_dir(os.path.join(self.base, sub), "PST900", "folder", PST900_LAYOUT)
        rgb_dir = os.path.join(self.base, "rgb")
        self.files = {}
        for f in sorted(os.listdir(rgb_dir)):
            stem, ext = os.path.splitext(f)
            if ext.lower() in _IMAGE_EXTS:
                self.files[stem] = f
        if not self.files:
            raise ValueError(f"PST900 folder {rgb_dir} contains no images")
        self.names = list(self.files)
        _check_files([self._path("thermal", n) for n in self.names], "PST900", "thermal", rgb_dir)
        _check_files([self._path("labels", n) for n in self.names], "PST900", "label", rgb_dir)

    def _path(self, sub: str, name: str) -> str:
        if sub == "rgb":
            return os.path.join(self.base, "rgb", self.files[name])
        return os.path.join(self.base, sub, name + ".png")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> dict:
        name = self.names[i]
        eo = _read_eo(self._path("rgb", name))
        ir = _read_ir(self._path("thermal", name), self.rule)
        label = _read_label(self._path("labels", name), len(self.class_names))
        _check_sizes(name, eo, ir, label, self.base)
        return {"eo": eo, "ir": ir, "label": label, "name": name, "is_night": False}


class MSRSSource:
    """MSRS: vi/ (RGB), ir/ (8-bit thermal), Segmentation_labels/ (MFNet ids).

    Two layouts: the distributed one, root/<split>/{vi,ir,Segmentation_labels}
    (every image of the folder), and a flat one, root/{vi,ir,Segmentation_labels}
    with root/<split>.txt. The per-split folder wins when both exist.
    """

    class_names = MFNET_CLASSES
    palette = [list(c) for c in MFNET_PALETTE]
    SUBDIRS = ("vi", "ir", "Segmentation_labels")

    def __init__(self, root: str, split: str, thermal: ThermalScaling | None = None) -> None:
        _check_split(split, "MSRS", MSRS_SPLITS)
        self.root, self.split, self.rule = root, split, thermal or ThermalScaling()
        _require_dir(root, "MSRS", "root", MSRS_LAYOUT)
        split_dir = os.path.join(root, split)
        if (os.path.isdir(os.path.join(split_dir, "vi"))
                or not os.path.isdir(os.path.join(root, "vi")) and os.path.isdir(split_dir)):
            self.base = split_dir
            for sub in self.SUBDIRS:
                _require_dir(os.path.join(self.base, sub), "MSRS", "folder", MSRS_LAYOUT)
            self.names = _list_stems(os.path.join(self.base, "vi"), "MSRS")
            source = os.path.join(self.base, "vi")
        else:
            self.base = root
            for sub in self.SUBDIRS:
                _require_dir(os.path.join(self.base, sub), "MSRS", "folder", MSRS_LAYOUT)
            source = os.path.join(root, f"{split}.txt")
            self.names = _read_split_file(source, "MSRS", MSRS_LAYOUT)
        for sub, what in zip(self.SUBDIRS, ("visible image", "thermal", "label")):
            _check_files([self._path(sub, n) for n in self.names], "MSRS", what, source)

    def _path(self, sub: str, name: str) -> str:
        return os.path.join(self.base, sub, name + ".png")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> dict:
        name = self.names[i]
        eo = _read_eo(self._path("vi", name))
        ir = _read_ir(self._path("ir", name), self.rule)
        label = _read_label(self._path("Segmentation_labels", name), len(self.class_names))
        _check_sizes(name, eo, ir, label, self.base)
        return {"eo": eo, "ir": ir, "label": label, "name": name, "is_night": is_night_name(name)}


class ThermalOverride:
    """A source whose frames take their thermal image from `ir_dir` (`<name>.png`), restricted to the frames
    that have one (`data.ir_dir`).

    Why: a second thermal camera or pipeline over the same labelled frames (`mfnet_subset/ir_msrs`) is a
    labelled set of that camera without a copy of the dataset: the oracle of the adaptation study trains
    on it, `training.adapt --val-ir-dir` scores on it.
    """

    def __init__(self, source, ir_dir: str, rule: ThermalScaling):
        if not os.path.isdir(ir_dir):
            raise FileNotFoundError(f"data.ir_dir {ir_dir}: no such folder")
        self.inner, self.ir_dir, self.rule = source, str(ir_dir), rule
        self.class_names, self.palette = source.class_names, source.palette
        self.index = [i for i, n in enumerate(source.names) if os.path.isfile(self._ir(n))]
        self.names = [source.names[i] for i in self.index]
        self.root, self.split = getattr(source, "root", ""), getattr(source, "split", "")
        if not self.names:
            raise ValueError(f"data.ir_dir {ir_dir} holds none of the {len(source.names)} frames of split "
                             f"{self.split} in {self.root} (expected <name>.png)")

    def _ir(self, name: str) -> str:
        return os.path.join(self.ir_dir, name + ".png")

    def __len__(self) -> int:
        return len(self.index)

    def load(self, i: int) -> dict:
        sample = dict(self.inner.load(self.index[i]))
        ir = _read_ir(self._ir(self.names[i]), self.rule)
        if ir.shape != sample["ir"].shape:
            raise ValueError(f"{self._ir(self.names[i])} is {ir.shape[1]}x{ir.shape[0]}, the labelled frame "
                             f"{sample['ir'].shape[1]}x{sample['ir'].shape[0]}: data.ir_dir needs pixel-aligned "
                             "frames")
        sample["ir"] = ir
        return sample
