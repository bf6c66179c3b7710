"""Between image folders and bags: `from-images` (MSRS/MFNet-style folders -> a bag) and `to-images`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from csk_ros.bag.bagio import (
    COMPRESSED,
    IMAGE,
    BagError,
    MessageFactory,
    Topics,
    atomic_writer,
    find_topic,
    open_reader,
)
from csk_ros.imaging.compressed import payload_kind
from csk_ros.imaging.ros_image import ImageDecodeError, image_to_array
from csk_ros.logic.pairing import EoBuffer, stamp_seconds

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
START_NS = 1_700_000_000 * 1_000_000_000  # a fixed first stamp: the same folders give the same bag
EO_TOPIC, IR_TOPIC = "/eo/image", "/ir/image"


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise BagError(f"{folder}: not a folder of images")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def paired_files(eo_dir: Path, ir_dir: Path) -> list[tuple[str, Path, Path]]:
    """(name, EO file, IR file) for every name in both folders, sorted by name. One folder given twice:
    4-channel RGB+thermal images (MFNet as RTFNet ships it), EO and IR from the same file."""
    eo, ir = _images(eo_dir), _images(ir_dir)
    names = sorted(set(eo) & set(ir))
    if not names:
        raise BagError(f"no image names common to {eo_dir} and {ir_dir} (pairs are matched by file name)")
    return [(n, eo[n], ir[n]) for n in names]


def read_pair(eo_path: Path, ir_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rgb8 HxWx3, thermal HxW uint8 or uint16) as stored: 16-bit thermal stays 16-bit."""
    if eo_path == ir_path:
        both = cv2.imread(str(eo_path), cv2.IMREAD_UNCHANGED)
        if both is None or both.ndim != 3 or both.shape[2] != 4:
            raise BagError(f"{eo_path}: EO and IR from one file need a 4-channel (BGR + thermal) image")
        return np.ascontiguousarray(both[:, :, 2::-1]), np.ascontiguousarray(both[:, :, 3])
    bgr = cv2.imread(str(eo_path), cv2.IMREAD_COLOR)
    ir = cv2.imread(str(ir_path), cv2.IMREAD_UNCHANGED)
    if bgr is None or ir is None:
        raise BagError(f"cannot read {eo_path if bgr is None else ir_path} as an image")
    if ir.ndim == 3:  # thermal saved as 3 equal channels (MSRS)
        ir = ir[:, :, 0]
    if ir.dtype not in (np.uint8, np.uint16):
        raise BagError(f"{ir_path}: thermal must be 8- or 16-bit, got {ir.dtype}")
    return np.ascontiguousarray(bgr[:, :, ::-1]), ir


def from_images(eo_dir: Path, ir_dir: Path, out: Path, rate_hz: float = 10.0, compressed: bool = False,
                storage: str = "mcap", limit: int | None = None, progress=None) -> int:
    """Write EO/IR pairs as a stream at `rate_hz` (both stamped alike, EO first): topics /eo/image and
    /ir/image (+ /compressed: EO JPEG 95, IR PNG). Returns the number of pairs."""
    if not rate_hz > 0:
        raise BagError(f"--rate must be > 0, got {rate_hz}")
    pairs = paired_files(Path(eo_dir), Path(ir_dir))[:limit]
    factory = MessageFactory()
    with atomic_writer(Path(out), storage) as writer:
        topics = Topics(writer, factory)
        for i, (_name, eo_path, ir_path) in enumerate(progress(pairs) if progress else pairs):
            rgb, ir = read_pair(eo_path, ir_path)
            stamp = START_NS + int(round(i * 1e9 / rate_hz))
            eo_header, ir_header = factory.header(stamp, "eo_camera"), factory.header(stamp, "ir_camera")
            if compressed:
                ok_eo, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                ok_ir, png = cv2.imencode(".png", ir)
                if not (ok_eo and ok_ir):
                    raise BagError(f"cannot encode {eo_path.name}")
                eo_msg = factory.compressed(jpg.tobytes(), "rgb8; jpeg compressed bgr8", eo_header)
                ir_format = ("mono16" if ir.dtype == np.uint16 else "mono8") + "; png compressed"
                topics.write(EO_TOPIC + "/compressed", COMPRESSED, eo_msg, stamp)
                topics.write(IR_TOPIC + "/compressed", COMPRESSED, factory.compressed(png.tobytes(), ir_format,
                                                                                     ir_header), stamp + 1)
            else:
                topics.write(EO_TOPIC, IMAGE, factory.image(rgb, "rgb8", eo_header), stamp)
                topics.write(IR_TOPIC, IMAGE, factory.image(ir, "mono16" if ir.dtype == np.uint16 else "mono8",
                                                            ir_header), stamp + 1)
    return len(pairs)


def _as_stored(msg) -> np.ndarray:
    """The pixels as recorded: rgb8/bgr8 -> RGB, mono8/mono16 as they are (PNG payloads bit-exact)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        if payload_kind(msg) not in ("png", "jpeg"):
            raise ImageDecodeError("unknown_format", f"unsupported compressed format {msg.format!r}")
        image = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ImageDecodeError("corrupt", "undecodable compressed payload")
        stored_rgb = "compressed rgb" in str(msg.format).lower()
        return image[:, :, 2::-1] if image.ndim == 3 and not stored_rgb else image  # OpenCV decodes to BGR
    array = np.asarray(image_to_array(msg))
    if msg.encoding in ("bgr8", "bgra8"):
        return array[:, :, 2::-1]
    if msg.encoding == "rgba8":
        return array[:, :, :3]
    return array


def bag_pairs(bag: Path, eo_topic: str | None = None, ir_topic: str | None = None, every: int = 1,
              slop_s: float = 0.05, progress=None, counts: dict | None = None):
    """(IR stamp, EO as stored, IR as stored) of the EO/IR pairs of a bag by stamp (nearest EO within slop_s
    of each IR frame), every N-th pair; `counts` (pairs, unpaired_ir, undecodable) is kept up to date."""
    if every < 1:
        raise BagError(f"--every must be >= 1, got {every}")
    counts = {} if counts is None else counts
    for key in ("pairs", "unpaired_ir", "undecodable"):
        counts.setdefault(key, 0)
    with open_reader(Path(bag)) as reader:
        eo_name, _ = find_topic(reader, "eo", eo_topic)
        ir_name, _ = find_topic(reader, "ir", ir_topic)
        eo_buffer: EoBuffer = EoBuffer(max_len=60, jump_back_s=None)
        pending = []  # IR frames whose EO partner may still follow in the bag
        connections = [c for c in reader.connections if c.topic in (eo_name, ir_name)]

        def ready(upto: float | None):
            while pending and (upto is None or pending[0][0] + slop_s < upto):
                stamp, ir = pending.pop(0)
                found = eo_buffer.nearest(stamp, slop_s)
                if found is None:
                    counts["unpaired_ir"] += 1
                    continue
                counts["pairs"] += 1
                if not (counts["pairs"] - 1) % every:
                    yield stamp, found[1], ir

        messages = reader.messages(connections=connections)
        for connection, _t, raw in (progress(messages) if progress else messages):
            try:
                msg = reader.deserialize(raw, connection.msgtype)
                image = _as_stored(msg)
            except (ImageDecodeError, ValueError, KeyError, IndexError, AssertionError):
                counts["undecodable"] += 1
                continue
            stamp = stamp_seconds(msg.header.stamp)
            if connection.topic == eo_name:
                eo_buffer.add(stamp, image)
                yield from ready(stamp)
            else:
                pending.append((stamp, image))
        yield from ready(None)


def to_images(bag: Path, out_dir: Path, eo_topic: str | None = None, ir_topic: str | None = None,
              every: int = 1, slop_s: float = 0.05, progress=None) -> dict:
    """EO/IR pairs by stamp (nearest EO within slop_s of each IR frame) into out_dir/vi and out_dir/ir,
    PNG named by the IR stamp in ns; every N-th pair. Returns counts."""
    if every < 1:
        raise BagError(f"--every must be >= 1, got {every}")
    out_dir = Path(out_dir)
    counts = {"pairs": 0, "written": 0, "unpaired_ir": 0, "undecodable": 0}
    (out_dir / "vi").mkdir(parents=True, exist_ok=True)
    (out_dir / "ir").mkdir(parents=True, exist_ok=True)
    for stamp, rgb, ir in bag_pairs(bag, eo_topic, ir_topic, every, slop_s, progress, counts):
        name = f"{int(round(stamp * 1e9))}.png"
        cv2.imwrite(str(out_dir / "vi" / name), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
        cv2.imwrite(str(out_dir / "ir" / name), ir)
        counts["written"] += 1
    return counts
