"""The robot's unlabelled EO/IR pairs, read once into memory at the model's input size.

Three sources, one result (`TargetPairs`):
- a folder as `python -m csk_ros.bag to-images` writes it (`vi/`, `ir/`), or MSRS-style with `eo/`
  instead of `vi/`; pairs are matched by file name (csk_ros.bag.images.paired_files);
- a rosbag2 recording (folder, .mcap or .db3), paired by stamp exactly as `to-images` pairs it
  (csk_ros.bag.images.bag_pairs), so the frames are the same whichever way the user goes.

Thermal goes through the checkpoint's `data.thermal` rule (the rule the exported bundle records and
the node applies), EO and IR through the node's own preparation (csk_ros.imaging.frames.
InputPreparer: bilinear resize, EO warped onto IR with the node's `eo_to_ir_homography` where one is
given): the model adapts to frames prepared as it will meet them, and a rig the node accepts is
accepted here. A frame is a night frame when its name ends in N (MFNet/MSRS) or, for names
without the mark (bags name frames by stamp), when its EO mean luma is below `night_luma`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csk_ros.bag.bagio import BagError, image_topics, open_reader
from csk_ros.bag.images import bag_pairs, paired_files, read_pair
from csk_ros.bag.params import read_params_file
from csk_ros.imaging.frames import InputPreparer
from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8
from csk_ros.logic.config import parse_homography

EO_DIRS = ("vi", "eo")  # to-images writes vi/, MSRS-style sets ship eo/ (or vi/)
BAG_FILES = (".mcap", ".db3")


class TargetError(ValueError):
    """Target pairs that cannot be used: the message says what to fix, in one line."""


@dataclass
class TargetPairs:
    """N pairs at the model's size: eo N x H x W x 3 RGB uint8, ir N x H x W uint8, one night flag each."""

    eo: np.ndarray
    ir: np.ndarray
    names: list[str]
    night: np.ndarray
    origin: str  # where they came from, for the record

    def __len__(self) -> int:
        return len(self.names)

    def record(self) -> dict:
        return {"origin": self.origin, "pairs": len(self), "night": int(self.night.sum()),
                "height": int(self.eo.shape[1]), "width": int(self.eo.shape[2])}


def is_bag(path: Path) -> bool:
    return path.is_file() and path.suffix in BAG_FILES or (path / "metadata.yaml").is_file()


def folder_dirs(root: Path) -> tuple[Path, Path]:
    """(EO folder, IR folder) of a pairs folder, or a one-line refusal naming the layout."""
    if not root.is_dir():
        raise TargetError(f"{root}: no such folder or bag (give a folder with vi/ (or eo/) and ir/, or a rosbag2 "
                          "recording)")
    eo_dir = next((root / d for d in EO_DIRS if (root / d).is_dir()), None)
    if eo_dir is None or not (root / "ir").is_dir():
        raise TargetError(f"{root}: no EO/IR pairs here: expected vi/ (or eo/) and ir/ subfolders, as "
                          "`python -m csk_ros.bag to-images` writes them")
    return eo_dir, root / "ir"


def evenly(n: int, keep: int) -> list[int]:
    """`keep` indices spread evenly over range(n) (all of them when n <= keep)."""
    if n <= keep:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, keep)})


def night_of(name: str, eo: np.ndarray, night_luma: float) -> bool:
    """Night by name mark (D/N) where there is one, else by the EO frame's mean luma."""
    if name[-1:] in ("N", "n"):
        return True
    if name[-1:] in ("D", "d"):
        return False
    luma = 0.299 * eo[..., 0].mean() + 0.587 * eo[..., 1].mean() + 0.114 * eo[..., 2].mean()
    return bool(luma < night_luma)


def node_homography(params_file) -> np.ndarray | None:
    """The EO -> IR homography of the node's parameters file (`eo_to_ir_homography`), None without one."""
    if params_file is None:
        return None
    try:
        return parse_homography(read_params_file(Path(params_file)).get("eo_to_ir_homography", [0.0]))
    except ValueError as exc:
        raise TargetError(str(exc)) from None


class _Collector:
    """Checks and prepares each pair as it is read, into preallocated arrays."""

    def __init__(self, count: int, size: tuple[int, int], rule: ThermalScaling, night_luma: float,
                 homography: np.ndarray | None = None):
        self.size, self.rule, self.night_luma = size, rule, night_luma
        self.prepare = InputPreparer(size[0], size[1], homography)
        self.eo = np.empty((count, *size, 3), np.uint8)
        self.ir = np.empty((count, *size), np.uint8)
        self.names: list[str] = []
        self.night: list[bool] = []

    def add(self, name: str, eo: np.ndarray, ir: np.ndarray, where: str) -> None:
        if eo.ndim != 3 or eo.shape[2] != 3:
            raise TargetError(f"{where}: pair {name} EO has shape {eo.shape}, expected H x W x 3 colour")
        try:
            eo_prepared = self.prepare.eo(np.ascontiguousarray(eo), ir.shape[:2])
        except ValueError as exc:
            raise TargetError(f"{where}: pair {name}: {exc} (pass --params with the node's parameters file, "
                              "see docs/registration.md)") from None
        i = len(self.names)
        self.eo[i] = eo_prepared
        self.ir[i] = self.prepare.ir(scale_thermal_to_uint8(ir, self.rule))
        self.names.append(name)
        self.night.append(night_of(name, eo, self.night_luma))

    def result(self, origin: str) -> TargetPairs:
        n = len(self.names)
        return TargetPairs(self.eo[:n], self.ir[:n], self.names, np.array(self.night, bool), origin)


def read_folder(root: Path, size, rule, night_luma: float, max_pairs: int, progress=None,
                homography=None) -> TargetPairs:
    eo_dir, ir_dir = folder_dirs(root)
    try:
        pairs = paired_files(eo_dir, ir_dir)
    except BagError:
        raise TargetError(f"{root}: no EO/IR pairs: {eo_dir.name}/ and ir/ share no image file name "
                          "(pairs are matched by name)") from None
    pairs = [pairs[i] for i in evenly(len(pairs), max_pairs)]
    out = _Collector(len(pairs), size, rule, night_luma, homography)
    for name, eo_path, ir_path in progress(pairs) if progress else pairs:
        try:
            eo, ir = read_pair(eo_path, ir_path)
        except BagError as exc:
            raise TargetError(str(exc)) from None
        out.add(name, eo, ir, str(root))
    return out.result(str(root))


def read_bag(bag: Path, size, rule, night_luma: float, max_pairs: int, eo_topic=None, ir_topic=None,
             every: int = 1, slop_s: float = 0.05, progress=None, homography=None) -> TargetPairs:
    """Pairs of a recording, every N-th, then at most `max_pairs` of them evenly spaced (two passes over the
    stamps would cost a second read of the bag: frames are kept at model size, then thinned)."""
    with open_reader(bag) as reader:
        if not image_topics(reader):
            raise TargetError(f"{bag}: the recording has no image topics (sensor_msgs/Image or CompressedImage): "
                              "record the EO and IR cameras (ros2 bag record /eo/image /ir/image)")
    counts: dict = {}
    frames = []
    for stamp, eo, ir in bag_pairs(bag, eo_topic, ir_topic, every, slop_s, progress, counts):
        if eo.ndim == 2:  # a mono EO camera: grey as RGB
            eo = np.repeat(eo[..., None], 3, axis=2)
        one = _Collector(1, size, rule, night_luma, homography)
        one.add(f"{int(round(stamp * 1e9))}", eo, ir, str(bag))
        frames.append(one)
    if not frames:
        raise TargetError(f"{bag}: no EO/IR pairs within {slop_s} s of each other ({counts.get('unpaired_ir', 0)} IR "
                          f"frames without an EO partner, {counts.get('undecodable', 0)} undecodable): check the "
                          "topics (--eo-topic/--ir-topic) or widen --slop")
    frames = [frames[i] for i in evenly(len(frames), max_pairs)]
    return TargetPairs(np.concatenate([f.eo for f in frames]), np.concatenate([f.ir for f in frames]),
                       [f.names[0] for f in frames], np.array([f.night[0] for f in frames], bool), str(bag))


def load_target(path, size, rule: ThermalScaling, night_luma: float, max_pairs: int, eo_topic=None, ir_topic=None,
                every: int = 1, slop_s: float = 0.05, progress=None, params_file=None) -> TargetPairs:
    """The pairs of a folder or a bag (see the module docstring); refuses fewer than two. `params_file`: the
    node's parameters, for its `eo_to_ir_homography`."""
    path = Path(path)
    homography = node_homography(params_file)
    try:
        if is_bag(path):
            pairs = read_bag(path, size, rule, night_luma, max_pairs, eo_topic, ir_topic, every, slop_s, progress,
                             homography)
        else:
            pairs = read_folder(path, size, rule, night_luma, max_pairs, progress, homography)
    except BagError as exc:
        raise TargetError(str(exc)) from None
    if len(pairs) < 2:
        raise TargetError(f"{path}: {len(pairs)} EO/IR pair; adaptation needs at least 2")
    return pairs
