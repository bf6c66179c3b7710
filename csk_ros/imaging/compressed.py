"""sensor_msgs/CompressedImage -> numpy for the EO and IR paths (OpenCV decodes).

Bags are usually recorded through image_transport's ``compressed`` plugin, so
this is how users replay them. The payload is what that plugin writes: JPEG or
PNG bytes, and a ``format`` string such as ``"bgr8; jpeg compressed bgr8"``,
``"mono16; png compressed"`` or just ``"jpeg"`` (older drivers). The container
is recognised from the bytes themselves (their magic number), so a missing or
wrong ``format`` cannot make us misread a payload; the format string is only
used for what the bytes cannot say: whether a 3-channel picture is stored in
rgb order (``... compressed rgb8``; OpenCV otherwise returns bgr).

Rules
  * EO: JPEG or PNG, 8-bit, grey or colour (alpha dropped) -> HxWx3 RGB uint8.
    16-bit PNG is rejected (``unsupported_for_eo``: no defined range, as for raw
    mono16 EO).
  * IR: PNG 8 or 16 bit, or JPEG, single channel (a colour payload is converted
    to grey, an approximation of the raw value, as for raw colour IR) -> uint8
    through the same thermal rule as raw mono16.
  * ``compressedDepth`` payloads (image_transport's depth plugin: a 12-byte
    header before the PNG) are rejected with reason ``compressed_depth``.
  * Empty, truncated, corrupt or unknown payloads raise ImageDecodeError with a
    stable reason (``empty``, ``unknown_format``, ``corrupt``) before or instead
    of any decode; nothing here can take the node down.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from csk_ros.imaging.ros_image import DEFAULT_SIZE_GUARD, ImageDecodeError, MaxSizeGuard
from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8

__all__ = ["COMPRESSED_REASONS", "compressed_to_ir8", "compressed_to_rgb8", "payload_kind"]

#: Stable reason codes of compressed-payload errors (diagnostics counter keys).
COMPRESSED_REASONS = ("empty", "unknown_format", "corrupt", "compressed_depth", "unsupported_for_eo", "too_large")

_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


def _payload(msg: Any) -> np.ndarray:
    data = getattr(msg, "data", None)
    if data is None:
        raise ImageDecodeError("empty", "compressed image has no data")
    try:
        buf = np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except TypeError:
        try:
            buf = np.asarray(bytearray(data), np.uint8)  # e.g. a list of ints
        except (TypeError, ValueError) as exc:
            raise ImageDecodeError("corrupt", f"compressed image data is not bytes: {exc}") from exc
    if buf.size == 0:
        raise ImageDecodeError("empty", "compressed image has an empty payload")
    return buf


def payload_kind(msg: Any) -> str:
    """'jpeg' or 'png' from the payload's magic number; ImageDecodeError otherwise."""
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageDecodeError("compressed_depth", f"format {fmt!r} is image_transport's compressedDepth: not an image "
                                                   "stream for this node (use the 'compressed' transport)")
    head = bytes(_payload(msg)[:8])
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    raise ImageDecodeError("unknown_format", f"compressed payload (format {fmt!r}) is neither JPEG nor PNG "
                                             f"(first bytes {head[:4].hex()})")


def _decode(msg: Any, guard: MaxSizeGuard) -> tuple[np.ndarray, str]:
    kind = payload_kind(msg)
    buf = _payload(msg)
    if kind == "png" and buf.size >= 24:  # IHDR width/height sit at bytes 16..24: check before allocating
        width, height = int.from_bytes(bytes(buf[16:20]), "big"), int.from_bytes(bytes(buf[20:24]), "big")
        if width and height:
            guard.check(width, height, "png")
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageDecodeError("corrupt", f"{kind} payload could not be decoded: {exc}") from exc
    if image is None or image.size == 0:
        raise ImageDecodeError("corrupt", f"{kind} payload of {buf.size} bytes is truncated or corrupt")
    guard.check(image.shape[1], image.shape[0], kind)
    return image, kind


def _stored_rgb(msg: Any) -> bool:
    """True when the format says the 3-channel payload holds rgb order (image_transport: '... compressed rgb8')."""
    fmt = str(getattr(msg, "format", "")).lower()
    return "compressed rgb" in fmt


def compressed_to_rgb8(msg: Any, guard: MaxSizeGuard = DEFAULT_SIZE_GUARD) -> np.ndarray:
    """EO CompressedImage -> HxWx3 uint8 RGB."""
    image, kind = _decode(msg, guard)
    if image.dtype != np.uint8:
        raise ImageDecodeError("unsupported_for_eo", f"EO {kind} payload is {image.dtype} ({image.dtype.itemsize * 8}"
                                                     "-bit): the colour stream needs 8-bit images")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB if _stored_rgb(msg) else cv2.COLOR_BGRA2RGB)
    return image if _stored_rgb(msg) else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def compressed_to_ir8(msg: Any, rule: ThermalScaling, guard: MaxSizeGuard = DEFAULT_SIZE_GUARD) -> np.ndarray:
    """IR CompressedImage -> HxW uint8 (16-bit payloads through the thermal rule)."""
    image, _ = _decode(msg, guard)
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}[image.shape[2]]
        image = cv2.cvtColor(image, code)
    return scale_thermal_to_uint8(image, rule)
