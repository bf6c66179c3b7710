"""sensor_msgs/Image <-> numpy, zero-copy where possible. No ROS import at module level.

Why our own: cv_bridge needs a compiled Boost module that pip installs lack, and
the PyPI ``cv-bridge`` is a broken ROS 1 shim (see DESIGN.md, Conventions).

Messages are duck-typed: anything with ``height``, ``width``, ``encoding``,
``is_bigendian``, ``step`` and ``data`` works. In rclpy (kilted wheels)
``msg.data`` of a received or constructed ``sensor_msgs/Image`` is an
``array.array('B')``; ``bytes``, ``bytearray``, ``memoryview``, numpy arrays
and (slowly, with a copy) lists of ints are accepted too.

Zero-copy rules
  * ``image_to_array`` returns a *read-only view* of ``msg.data`` whenever the
    data is already in host byte order: row padding (``step`` larger than a
    row) is expressed as a row stride, never copied away. The view holds a
    buffer export on the message's ``array.array``, so the message buffer
    cannot be resized (and freed) under it. The view is read-only so that
    nobody edits a message in place by accident; copy it if you must write.
  * 16/32-bit data whose ``is_bigendian`` differs from the host is byte-swapped
    (one copy, unavoidable); 8-bit data ignores the flag.
  * ``to_rgb8`` of rgb8 and ``to_ir8`` of mono8/8UC1 are views too; every other
    conversion allocates exactly one output array (OpenCV).

EO policy (``to_rgb8``): rgb8 as is; bgr8 / 8UC3 (treated as bgr8, as cv_bridge
does) / rgba8 / bgra8 converted; mono8 / 8UC1 -> grey RGB. 16-bit and float
encodings (mono16, 16UC1, 32FC1) are REJECTED with reason
``unsupported_for_eo``: there is no defined range for them (a 12-bit camera in
mono16 shifted down to 8 bits would look almost black and silently trip the
dark detector); an explicit error shows up in diagnostics instead.

IR policy (``to_ir8``): mono8 / 8UC1 as is; mono16 / 16UC1 / 32FC1 through
``scale_thermal_to_uint8`` with the configured rule (the same rule as
training); colour encodings (a thermal camera publishing a false-colour
palette) are converted to grey with OpenCV -- this is only an approximation of
the raw thermal value.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8

__all__ = [
    "DECODE_REASONS",
    "DEFAULT_SIZE_GUARD",
    "ENCODINGS",
    "EncodingInfo",
    "ImageDecodeError",
    "MaxSizeGuard",
    "array_to_image",
    "image_to_array",
    "to_ir8",
    "to_rgb8",
]


class EncodingInfo(NamedTuple):
    dtype: str  # numpy base type, byte order applied separately
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return np.dtype(self.dtype).itemsize * self.channels


#: The supported encodings (REP-118 / sensor_msgs/image_encodings names).
ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo("u1", 3),
    "bgr8": EncodingInfo("u1", 3),
    "rgba8": EncodingInfo("u1", 4),
    "bgra8": EncodingInfo("u1", 4),
    "mono8": EncodingInfo("u1", 1),
    "mono16": EncodingInfo("u2", 1),
    "8UC1": EncodingInfo("u1", 1),
    "8UC3": EncodingInfo("u1", 3),
    "16UC1": EncodingInfo("u2", 1),
    "32FC1": EncodingInfo("f4", 1),
}

#: Stable reason codes carried by ImageDecodeError (diagnostics counter keys).
DECODE_REASONS = (
    "unknown_encoding",  # encoding not in ENCODINGS
    "zero_size",  # width or height is 0
    "too_large",  # beyond MaxSizeGuard
    "bad_step",  # step < width * bytes_per_pixel
    "truncated",  # len(data) < step * height
    "bad_endianness",  # is_bigendian is neither 0 nor 1
    "bad_data",  # data is not a byte buffer / sequence of bytes
    "unsupported_for_eo",  # a valid encoding the EO path does not accept
    "bad_array",  # array_to_image: array shape/dtype does not fit the encoding
)

_HOST_BIG_ENDIAN = sys.byteorder == "big"


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image.

    ``reason`` is a short stable code from DECODE_REASONS (use it as a
    diagnostics counter key); ``str(err)`` says what was received and what was
    expected.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class MaxSizeGuard:
    """Rejects absurd image sizes before any buffer arithmetic (reason ``too_large``).

    A corrupt or hostile header (width=4e9) must not make us allocate or index
    gigabytes. Defaults: at most 16384 pixels per side and 16384*16384 pixels.
    """

    max_side: int = 16384
    max_pixels: int = 16384 * 16384

    def check(self, width: int, height: int, encoding: str = "") -> None:
        if width > self.max_side or height > self.max_side or width * height > self.max_pixels:
            raise ImageDecodeError(
                "too_large",
                f"image {width}x{height} {encoding} is too large: at most {self.max_side} pixels per side "
                f"and {self.max_pixels} pixels in all",
            )


DEFAULT_SIZE_GUARD = MaxSizeGuard()


def _as_byte_array(data: Any) -> np.ndarray:
    """1-D uint8 array over ``data``; a view for anything exposing the buffer protocol."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8 and data.ndim == 1:
            return data
        if data.flags.c_contiguous:
            return data.reshape(-1).view(np.uint8)
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        # np.frombuffer keeps a memoryview (buffer export) as the base: the
        # array.array cannot be resized under the view. (np.ndarray(buffer=
        # array.array) does NOT hold the export, so always go through this.)
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    if isinstance(data, str):
        raise ImageDecodeError("bad_data", "image data must be bytes, got a str")
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)  # list of ints: copies
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImageDecodeError(
            "bad_data", f"image data must be a byte buffer or a sequence of 0..255, got {type(data).__name__}"
        ) from exc


def _describe(msg: Any) -> tuple[int, int, str]:
    try:
        return int(msg.width), int(msg.height), str(msg.encoding)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageDecodeError("bad_data", f"not an image message: {exc}") from exc


def image_to_array(msg: Any, guard: MaxSizeGuard = DEFAULT_SIZE_GUARD) -> np.ndarray:
    """Decode a sensor_msgs/Image into an HxW (one channel) or HxWxC array.

    dtype per encoding: uint8, uint16 (mono16/16UC1) or float32 (32FC1), in host
    byte order. A read-only view of ``msg.data`` unless a byte swap was needed.
    Raises ImageDecodeError with a stable ``reason``.
    """
    width, height, encoding = _describe(msg)
    info = ENCODINGS.get(encoding)
    if info is None:
        raise ImageDecodeError(
            "unknown_encoding",
            f"image encoding {encoding!r} is not supported; expected one of {', '.join(ENCODINGS)}",
        )
    if width <= 0 or height <= 0:
        raise ImageDecodeError("zero_size", f"image {width}x{height} {encoding} has no pixels")
    guard.check(width, height, encoding)
    try:
        big = int(msg.is_bigendian)
    except (AttributeError, TypeError, ValueError):
        big = -1
    if big not in (0, 1):
        raise ImageDecodeError(
            "bad_endianness",
            f"image {width}x{height} {encoding}: is_bigendian must be 0 or 1, got {msg.is_bigendian!r}",
        )
    step = int(msg.step)
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step",
            f"image {width}x{height} {encoding} needs step >= {row_bytes} ({width} px * {info.bytes_per_pixel} B), "
            f"got {step}",
        )
    flat = _as_byte_array(msg.data)
    needed = step * height
    if flat.size < needed:
        raise ImageDecodeError(
            "truncated",
            f"image {width}x{height} {encoding} with step {step} needs {needed} bytes of data, got {flat.size}",
        )
    # Trailing bytes beyond step*height are ignored (never read).
    itemsize = np.dtype(info.dtype).itemsize
    swap = itemsize > 1 and bool(big) != _HOST_BIG_ENDIAN
    dtype = np.dtype(info.dtype).newbyteorder(">" if big else "<") if itemsize > 1 else np.dtype(info.dtype)
    if info.channels == 1:
        shape: tuple[int, ...] = (height, width)
        strides: tuple[int, ...] = (step, itemsize)
    else:
        shape = (height, width, info.channels)
        strides = (step, itemsize * info.channels, itemsize)
    view = np.ndarray(shape, dtype=dtype, buffer=flat, offset=0, strides=strides)
    if swap:
        return view.astype(dtype.newbyteorder("="))  # byte swap: one copy, host order
    view.flags.writeable = False
    return view


_EO_CONVERSIONS = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "8UC3": cv2.COLOR_BGR2RGB,  # cv_bridge treats 8UC3 as bgr8
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
}

_IR_CONVERSIONS = {
    "rgb8": cv2.COLOR_RGB2GRAY,
    "bgr8": cv2.COLOR_BGR2GRAY,
    "8UC3": cv2.COLOR_BGR2GRAY,
    "rgba8": cv2.COLOR_RGBA2GRAY,
    "bgra8": cv2.COLOR_BGRA2GRAY,
}


def to_rgb8(msg: Any, guard: MaxSizeGuard = DEFAULT_SIZE_GUARD) -> np.ndarray:
    """EO message -> HxWx3 uint8 RGB (a read-only view for rgb8, else a new array).

    16-bit / float encodings are rejected with reason ``unsupported_for_eo``
    (see the module docstring).
    """
    encoding = str(getattr(msg, "encoding", ""))
    if encoding in ENCODINGS and ENCODINGS[encoding].dtype != "u1":
        raise ImageDecodeError(
            "unsupported_for_eo",
            f"EO image encoding {encoding!r} is not supported for the colour stream; "
            "expected an 8-bit encoding (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3)",
        )
    arr = image_to_array(msg, guard)
    if encoding == "rgb8":
        return arr
    return cv2.cvtColor(arr, _EO_CONVERSIONS[encoding])


def to_ir8(msg: Any, rule: ThermalScaling, guard: MaxSizeGuard = DEFAULT_SIZE_GUARD) -> np.ndarray:
    """IR message -> HxW uint8 (a read-only view for mono8/8UC1, else a new array)."""
    arr = image_to_array(msg, guard)
    encoding = str(msg.encoding)
    if arr.ndim == 2:
        return scale_thermal_to_uint8(arr, rule)  # uint8 passes through unchanged
    return cv2.cvtColor(arr, _IR_CONVERSIONS[encoding])


def array_to_image(array_: np.ndarray, encoding: str, header: Any = None) -> Any:
    """numpy array -> sensor_msgs.msg.Image (imports sensor_msgs lazily).

    Any encoding of ENCODINGS; the array's dtype and channel count must match it
    (HxW for one channel, HxWxC otherwise). Data is copied once into an
    ``array.array('B')`` (the type rclpy stores; no per-byte Python loop), in
    host byte order with ``is_bigendian`` set accordingly, ``step`` = width *
    bytes per pixel (no padding). ``header`` (std_msgs/Header) is assigned as is.
    """
    from sensor_msgs.msg import Image  # lazy: this module must import without ROS

    info = ENCODINGS.get(encoding)
    if info is None:
        raise ImageDecodeError(
            "unknown_encoding", f"cannot publish encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}"
        )
    arr = np.asarray(array_)
    expected_ndim = 2 if info.channels == 1 else 3
    shape_ok = arr.ndim == expected_ndim and (info.channels == 1 or arr.shape[2] == info.channels)
    if arr.ndim == 3 and info.channels == 1 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
        shape_ok = True
    if not shape_ok:
        want = "HxW" if info.channels == 1 else f"HxWx{info.channels}"
        raise ImageDecodeError("bad_array", f"encoding {encoding} needs a {want} array, got shape {arr.shape}")
    if arr.dtype.kind != np.dtype(info.dtype).kind or arr.dtype.itemsize != np.dtype(info.dtype).itemsize:
        raise ImageDecodeError(
            "bad_array", f"encoding {encoding} needs dtype {np.dtype(info.dtype).name}, got {arr.dtype.name}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageDecodeError("zero_size", f"cannot publish an empty {arr.shape[1]}x{arr.shape[0]} image")
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_BIG_ENDIAN and arr.dtype.itemsize > 1)
    msg.step = int(arr.shape[1] * info.bytes_per_pixel)
    data = array.array("B")
    data.frombytes(memoryview(arr).cast("B"))  # one memcpy
    msg.data = data  # array.array('B') takes rclpy's fast path even with field checks on
    return msg
