"""csk_ros.imaging.ros_image with real sensor_msgs/Image messages (no node, no DDS)."""

from __future__ import annotations

import array
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sensor_msgs = pytest.importorskip("sensor_msgs.msg")
Image = sensor_msgs.Image

from csk_ros.imaging.ros_image import (  # noqa: E402
    ENCODINGS,
    ImageDecodeError,
    MaxSizeGuard,
    array_to_image,
    image_to_array,
    to_ir8,
    to_rgb8,
)
from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(1234)
H, W = 6, 7  # odd width: no accidental alignment


def sample_array(encoding: str, h: int = H, w: int = W) -> np.ndarray:
    info = ENCODINGS[encoding]
    shape = (h, w) if info.channels == 1 else (h, w, info.channels)
    if info.dtype == "u1":
        return RNG.integers(0, 256, shape, dtype=np.uint8)
    if info.dtype == "u2":
        return RNG.integers(0, 65536, shape, dtype=np.uint16)
    return RNG.normal(300.0, 50.0, shape).astype(np.float32)


def make_msg(arr: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """Hand-build a message (independently of array_to_image), optionally with row padding."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">" if big_endian else "<"))
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).view(np.uint8)
    padded = np.full((h, row.shape[1] + pad), 0xAB, np.uint8)
    padded[:, : row.shape[1]] = row
    msg = Image()
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = int(big_endian)
    msg.step = row.shape[1] + pad
    msg.data = array.array("B", padded.tobytes())
    return msg


def test_msg_data_is_array_array():
    # Documents what rclpy gives us; the zero-copy design relies on a buffer type.
    assert isinstance(Image().data, array.array)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    arr = sample_array(encoding)
    msg = array_to_image(arr, encoding)
    assert isinstance(msg, Image)
    assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
    assert msg.step == W * ENCODINGS[encoding].bytes_per_pixel
    assert len(msg.data) == msg.step * H
    back = image_to_array(msg)
    assert back.dtype == arr.dtype.newbyteorder("=")
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_decode_hand_built_message(encoding):
    arr = sample_array(encoding)
    np.testing.assert_array_equal(image_to_array(make_msg(arr, encoding)), arr)


def test_round_trip_survives_serialization():
    from rclpy.serialization import deserialize_message, serialize_message

    arr = sample_array("mono16")
    msg = deserialize_message(serialize_message(array_to_image(arr, "mono16")), Image)
    assert isinstance(msg.data, array.array)
    np.testing.assert_array_equal(image_to_array(msg), arr)


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "mono16", "32FC1", "bgra8"])
def test_padded_step_is_a_view_not_a_copy(encoding):
    arr = sample_array(encoding)
    msg = make_msg(arr, encoding, pad=5)
    out = image_to_array(msg)
    np.testing.assert_array_equal(out, arr)
    assert out.strides[0] == msg.step
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert not out.flags.writeable  # views never let anyone edit the message
    # the view pins the message buffer: it cannot be resized (and freed) under us
    with pytest.raises(BufferError):
        msg.data.append(0)


def test_unpadded_rgb8_to_rgb8_is_zero_copy():
    arr = sample_array("rgb8")
    msg = array_to_image(arr, "rgb8")
    out = to_rgb8(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(out, arr)


def test_big_endian_mono16_values():
    values = np.array([[0x0102, 0xFF00, 1], [256, 65535, 0x1234]], np.uint16)
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = 2, 3, "mono16", 1, 6
    msg.data = array.array("B", [0x01, 0x02, 0xFF, 0x00, 0x00, 0x01, 0x01, 0x00, 0xFF, 0xFF, 0x12, 0x34])
    out = image_to_array(msg)
    np.testing.assert_array_equal(out, values)
    assert out.dtype == np.dtype("=u2")
    # the same bytes read as little endian are different values: the flag matters
    msg.is_bigendian = 0
    assert image_to_array(msg)[0, 0] == 0x0201


def test_big_endian_float_and_padding():
    arr = sample_array("32FC1")
    out = image_to_array(make_msg(arr, "32FC1", pad=3, big_endian=True))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_bgr8_and_rgb8_give_same_rgb():
    rgb = sample_array("rgb8")
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    np.testing.assert_array_equal(to_rgb8(make_msg(bgr, "bgr8")), rgb)
    np.testing.assert_array_equal(to_rgb8(make_msg(bgr, "8UC3")), rgb)  # 8UC3 is bgr8, as cv_bridge
    np.testing.assert_array_equal(to_rgb8(make_msg(rgb, "rgb8")), rgb)
    alpha = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(make_msg(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    np.testing.assert_array_equal(to_rgb8(make_msg(np.concatenate([bgr, alpha], 2), "bgra8", pad=2)), rgb)


def test_mono_eo_becomes_grey_rgb():
    grey = sample_array("mono8")
    out = to_rgb8(make_msg(grey, "mono8", pad=1))
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_wide_eo_rejected(encoding):
    with pytest.raises(ImageDecodeError) as err:
        to_rgb8(make_msg(sample_array(encoding), encoding))
    assert err.value.reason == "unsupported_for_eo"
    assert encoding in str(err.value)


@pytest.mark.parametrize("mode", ["percentile", "fixed"])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_to_ir8_wide_equals_thermal_scaling(encoding, mode):
    arr = sample_array(encoding, 40, 50)
    rule = ThermalScaling(mode=mode, low=float(arr.min()) + 10, high=float(arr.max()) - 10)
    out = to_ir8(make_msg(arr, encoding, pad=4, big_endian=True), rule)
    assert out.dtype == np.uint8 and out.shape == (40, 50)
    expected = scale_thermal_to_uint8(arr, rule)
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out)) > 10  # a real scaling, not a constant


def test_to_ir8_8bit_and_colour():
    rule = ThermalScaling()
    grey = sample_array("mono8")
    for enc in ("mono8", "8UC1"):
        msg = make_msg(grey, enc)
        out = to_ir8(msg, rule)
        np.testing.assert_array_equal(out, grey)
        assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_ir8(make_msg(rgb, "rgb8"), rule), grey)
    np.testing.assert_array_equal(to_ir8(make_msg(rgb, "bgr8"), rule), grey)
    colour = sample_array("bgr8")
    import cv2

    np.testing.assert_array_equal(to_ir8(make_msg(colour, "bgr8"), rule), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))


# ---------------------------------------------------------------- malformed


def _good(encoding: str = "rgb8") -> Image:
    return make_msg(sample_array(encoding, 480, 640), encoding)


def test_bad_step():
    msg = _good("rgb8")
    msg.step = 1000
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "bad_step"
    assert "640x480 rgb8 needs step >= 1920" in str(err.value) and "got 1000" in str(err.value)


def test_bad_step_for_16bit():
    msg = make_msg(sample_array("mono16"), "mono16")
    msg.step = W  # bytes, not pixels: a classic mistake
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "bad_step"
    assert f"step >= {2 * W}" in str(err.value)


def test_truncated():
    msg = _good("mono8")
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "truncated"
    assert f"needs {640 * 480} bytes" in str(err.value) and f"got {640 * 480 - 1}" in str(err.value)


def test_trailing_bytes_are_ignored():
    arr = sample_array("mono8")
    msg = make_msg(arr, "mono8")
    msg.data.extend(b"\x00" * 3)
    np.testing.assert_array_equal(image_to_array(msg), arr)


@pytest.mark.parametrize("h,w", [(0, 640), (480, 0), (0, 0)])
def test_zero_size(h, w):
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = h, w, "mono8", w
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "zero_size"
    assert f"{w}x{h}" in str(err.value)


@pytest.mark.parametrize("encoding", ["", "yuv422", "RGB8", "bayer_rggb8", "16SC1"])
def test_unknown_encoding(encoding):
    msg = _good("mono8")
    msg.encoding = encoding
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "unknown_encoding"
    assert repr(encoding) in str(err.value) and "rgb8" in str(err.value)
    with pytest.raises(ImageDecodeError) as err:
        to_rgb8(msg)
    assert err.value.reason == "unknown_encoding"


def test_bad_endianness_flag():
    msg = _good("mono8")
    msg.is_bigendian = 7
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "bad_endianness"


def test_too_large_is_rejected_before_touching_data():
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = 100_000, 100_000, "mono8", 100_000
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(msg)
    assert err.value.reason == "too_large"
    small = MaxSizeGuard(max_side=100, max_pixels=100 * 100)
    with pytest.raises(ImageDecodeError) as err:
        image_to_array(_good("mono8"), guard=small)
    assert err.value.reason == "too_large"
    assert image_to_array(make_msg(sample_array("mono8"), "mono8"), guard=small).shape == (H, W)


def test_decode_error_is_a_value_error():
    assert issubclass(ImageDecodeError, ValueError)


def test_duck_typed_message_with_bytes():
    class Msg:
        height, width, encoding, is_bigendian, step = 2, 2, "mono8", 0, 2
        data = bytes([1, 2, 3, 4])

    out = image_to_array(Msg())
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


# ------------------------------------------------------------ array_to_image


def test_array_to_image_header_and_fields():
    from std_msgs.msg import Header

    header = Header(frame_id="ir_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    mask = sample_array("mono8")
    msg = array_to_image(mask, "mono8", header=header)
    assert msg.header.frame_id == "ir_optical" and msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345
    assert msg.is_bigendian == 0 and msg.step == W
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"


def test_array_to_image_non_contiguous_input():
    arr = sample_array("bgr8", 10, 20)[:, ::2]
    np.testing.assert_array_equal(image_to_array(array_to_image(arr, "bgr8")), arr)


@pytest.mark.parametrize(
    "arr,encoding",
    [
        (np.zeros((4, 4), np.uint8), "bgr8"),
        (np.zeros((4, 4, 3), np.uint8), "mono8"),
        (np.zeros((4, 4), np.uint16), "mono8"),
        (np.zeros((4, 4), np.int16), "16UC1"),
        (np.zeros((4, 4), np.float64), "32FC1"),
    ],
)
def test_array_to_image_rejects_mismatch(arr, encoding):
    with pytest.raises(ImageDecodeError) as err:
        array_to_image(arr, encoding)
    assert err.value.reason == "bad_array"


def test_array_to_image_is_fast():
    mask = RNG.integers(0, 9, (480, 640), dtype=np.uint8)
    array_to_image(mask, "mono8")  # warm the lazy import
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        array_to_image(mask, "mono8")
        times.append(time.perf_counter() - t0)
    assert sorted(times)[len(times) // 2] < 1e-3  # median well under 1 ms in practice (~0.1 ms)


def test_module_imports_without_ros():
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'torch'):\n"
        "        raise ImportError('blocked ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import csk_ros.imaging.ros_image, csk_ros.logic.health, csk_ros.logic.pairing\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
