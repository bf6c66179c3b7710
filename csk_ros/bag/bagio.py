"""Opening, finding topics in, and atomically writing rosbag2 bags (rosbags; no ROS install)."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = {IMAGE: "raw", COMPRESSED: "compressed"}
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# Words in a topic name that say which camera it is (checked on the name's parts).
MODALITY_WORDS = {"eo": ("eo", "rgb", "color", "colour", "visible", "vi", "vis"),
                  "ir": ("ir", "thermal", "lwir", "infrared", "flir", "boson")}


class BagError(ValueError):
    """A bag that cannot be used as asked: the message says what to fix, in one line."""


def typestore():
    """Message definitions for the bags we write (Humble's sensor_msgs/std_msgs are the same since)."""
    return get_typestore(Stores.ROS2_HUMBLE)


@contextmanager
def open_reader(path: Path):
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (a rosbag2 folder with metadata.yaml, or a .mcap / .db3 file)")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as exc:
        raise BagError(f"{path}: cannot read this bag ({exc}); is it a complete rosbag2 recording?") from None
    try:
        yield reader
    finally:
        reader.close()


def image_topics(reader) -> dict[str, str]:
    """topic -> 'raw' | 'compressed' for every image topic in the bag."""
    return {c.topic: IMAGE_TYPES[c.msgtype] for c in reader.connections if c.msgtype in IMAGE_TYPES}


def _modality(topic: str) -> str | None:
    parts = {p for p in topic.lower().replace("-", "_").replace("/", "_").split("_") if p}
    hits = [m for m, words in MODALITY_WORDS.items() if parts & set(words)]
    return hits[0] if len(hits) == 1 else None


def find_topic(reader, stream: str, given: str | None) -> tuple[str, str]:
    """(topic, transport) of `stream` ('eo' or 'ir'): the one given, or the only image topic named like it."""
    topics = image_topics(reader)
    if given is not None:
        if given not in topics:
            other = {c.topic: c.msgtype for c in reader.connections}
            what = f"has type {other[given]}, not an image" if given in other else "is not in the bag"
            raise BagError(f"--{stream}-topic {given} {what}; image topics: {', '.join(sorted(topics)) or 'none'}")
        return given, topics[given]
    candidates = sorted(t for t in topics if _modality(t) == stream)
    if len(candidates) != 1:
        found = "none" if not candidates else ", ".join(candidates)
        raise BagError(f"cannot tell which topic is {stream.upper()} (candidates: {found}; image topics: "
                       f"{', '.join(sorted(topics)) or 'none'}): pass --{stream}-topic")
    return candidates[0], topics[candidates[0]]


@contextmanager
def atomic_writer(out: Path, storage: str = "mcap"):
    """A rosbags Writer on a temporary folder beside OUT, renamed to OUT only when the block succeeds:
    a failed or interrupted run leaves no half bag."""
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} exists already: choose a new output path (bags are never overwritten)")
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The bag is built under its final name inside a private folder beside OUT (rosbag2 records the
    # storage file's name in the bag, so the name must not change), then moved into place.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    writer = Writer(staging / out.name, version=8, storage_plugin=STORAGES[storage])
    try:
        writer.open()
        yield writer
        writer.close()
        (staging / out.name).rename(out)
    except BaseException:
        try:
            writer.close()
        except Exception:  # the writer may be half open; the folder goes either way
            pass
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class MessageFactory:
    """Builds and serialises the std/sensor/diagnostic messages we write, with rosbags' classes."""

    def __init__(self):
        self.store = typestore()
        t = self.store.types
        self.Header, self.Time = t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"]
        self.Image, self.Compressed = t[IMAGE], t[COMPRESSED]
        self.String = t["std_msgs/msg/String"]
        self.DiagArray = t["diagnostic_msgs/msg/DiagnosticArray"]
        self.DiagStatus = t["diagnostic_msgs/msg/DiagnosticStatus"]
        self.KeyValue = t["diagnostic_msgs/msg/KeyValue"]

    def header(self, stamp_ns: int, frame_id: str):
        return self.Header(stamp=self.Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                           frame_id=frame_id)

    def image(self, array: np.ndarray, encoding: str, header):
        """sensor_msgs/Image of a uint8/uint16 array, host byte order (as array_to_image publishes it)."""
        arr = np.ascontiguousarray(array)
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        return self.Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                          is_bigendian=int(not np.little_endian),
                          step=arr.shape[1] * channels * arr.itemsize, data=arr.view(np.uint8).reshape(-1))

    def compressed(self, payload: bytes, fmt: str, header):
        return self.Compressed(header=header, format=fmt, data=np.frombuffer(payload, np.uint8))

    def string(self, text: str):
        return self.String(data=text)

    def diagnostics(self, stamp_ns: int, level: int, name: str, message: str, hardware_id: str, values: dict):
        status = self.DiagStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                                 values=[self.KeyValue(key=k, value=v) for k, v in values.items()])
        return self.DiagArray(header=self.header(stamp_ns, ""), status=[status])

    def serialize(self, msg, msgtype: str) -> bytes:
        return self.store.serialize_cdr(msg, msgtype)


class Topics:
    """Output connections of one writer, added on first use."""

    def __init__(self, writer, factory: MessageFactory):
        self.writer, self.factory, self.connections = writer, factory, {}

    def write(self, topic: str, msgtype: str, msg, time_ns: int) -> None:
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.factory.store)
        self.writer.write(conn, time_ns, self.factory.serialize(msg, msgtype))

    def write_raw(self, topic: str, connection, raw: bytes, time_ns: int) -> None:
        """Copy an input message as it was recorded (--copy-inputs)."""
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.connections[topic] = self.writer.add_connection(topic, connection.msgtype,
                                                                        typestore=self.factory.store)
        self.writer.write(conn, time_ns, raw)
