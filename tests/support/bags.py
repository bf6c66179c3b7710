"""Reading bags back in tests (rosbags)."""

from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(log time ns, message)] with rosbags."""
    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def pixels(msg) -> np.ndarray:
    dtype = np.uint16 if msg.encoding.endswith("16") else np.uint8
    array = np.asarray(msg.data).view(dtype).reshape(msg.height, msg.width, -1)
    return array[:, :, 0] if array.shape[2] == 1 else array
