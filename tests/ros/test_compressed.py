"""sensor_msgs/CompressedImage decoding for the EO and IR paths (csk_ros/imaging/compressed.py)."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from csk_ros.imaging.compressed import compressed_to_ir8, compressed_to_rgb8
from csk_ros.imaging.ros_image import ImageDecodeError
from csk_ros.imaging.thermal import ThermalScaling

FIXED = ThermalScaling.from_dict({"mode": "fixed", "low": 20000.0, "high": 30200.0})


def msg(data: bytes, fmt: str = ""):
    return SimpleNamespace(format=fmt, data=data)


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def red_bgr():
    image = np.zeros((24, 32, 3), np.uint8)
    image[..., 2] = 200  # red in OpenCV's bgr order
    return image


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_eo_colour_payload_comes_back_as_rgb(ext):
    rgb = compressed_to_rgb8(msg(encode(ext, red_bgr()), f"bgr8; {ext[1:]} compressed bgr8"))
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].mean() > 180 and rgb[..., 2].mean() < 20


def test_eo_payload_stored_in_rgb_order_is_not_swapped():
    stored_rgb = red_bgr()[..., ::-1].copy()  # the bytes hold r, g, b
    rgb = compressed_to_rgb8(msg(encode(".png", stored_rgb), "rgb8; png compressed rgb8"))
    assert rgb[..., 0].mean() > 180


def test_eo_grey_jpeg_becomes_grey_rgb():
    rgb = compressed_to_rgb8(msg(encode(".jpg", np.full((8, 8), 90, np.uint8)), "mono8; jpeg compressed mono8"))
    assert rgb.shape == (8, 8, 3) and abs(int(rgb[4, 4, 0]) - 90) <= 2


def test_ir_png8_passes_through_and_png16_uses_the_thermal_rule():
    ir8 = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    assert np.array_equal(compressed_to_ir8(msg(encode(".png", ir8), "mono8; png compressed"), FIXED), ir8)
    raw = (20000 + 40 * ir8.astype(np.uint16)).astype(np.uint16)
    out = compressed_to_ir8(msg(encode(".png", raw), "mono16; png compressed"), FIXED)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert np.abs(out.astype(int) - ir8.astype(int)).max() <= 1  # 40 counts per level over 20000..30200


def test_a_missing_format_string_does_not_matter():
    assert compressed_to_rgb8(msg(encode(".jpg", red_bgr()), "")).shape == (24, 32, 3)


@pytest.mark.parametrize("make, reason", [
    (lambda: b"", "empty"),
    (lambda: encode(".png", red_bgr())[:40], "corrupt"),  # truncated
    (lambda: b"\xff\xd8\xff" + bytes(200), "corrupt"),  # a JPEG header and garbage
    (lambda: encode(".bmp", red_bgr()), "unknown_format"),  # a format image_transport does not write
    (lambda: b"hello world, not an image", "unknown_format"),
])
def test_bad_payloads_raise_with_a_reason(make, reason):
    for decode in (compressed_to_rgb8, lambda m: compressed_to_ir8(m, FIXED)):
        with pytest.raises(ImageDecodeError) as err:
            decode(msg(make(), "bgr8; jpeg compressed bgr8"))
        assert err.value.reason == reason


def test_compressed_depth_is_rejected_by_name():
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_ir8(msg(bytes(12) + encode(".png", np.zeros((4, 4), np.uint16)), "16UC1; compressedDepth png"),
                          FIXED)
    assert err.value.reason == "compressed_depth"


def test_sixteen_bit_png_is_not_an_eo_image():
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_rgb8(msg(encode(".png", np.zeros((4, 4), np.uint16)), "mono16; png compressed"))
    assert err.value.reason == "unsupported_for_eo"


def test_absurd_png_dimensions_are_refused_before_decoding():
    data = bytearray(encode(".png", np.zeros((4, 4), np.uint8)))
    data[16:24] = (100000).to_bytes(4, "big") + (100000).to_bytes(4, "big")  # IHDR width/height
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_ir8(msg(bytes(data)), FIXED)
    assert err.value.reason == "too_large"


def test_array_data_as_rclpy_gives_it():
    import array

    data = array.array("B", encode(".jpg", red_bgr()))
    assert compressed_to_rgb8(msg(data)).shape == (24, 32, 3)
