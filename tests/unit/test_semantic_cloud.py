"""The semantic point cloud: geometry against a known plane, invalid depth,
sizes, intrinsics scaling and the PointCloud2 layout Nav2's layer reads."""

import types

import numpy as np
import pytest

from csk_ros.imaging.semantic_cloud import (
    POINT_DTYPE,
    CloudMessage,
    DepthError,
    Intrinsics,
    SemanticCloudBuilder,
    depth_in_metres,
)

CAM = Intrinsics(fx=500.0, fy=480.0, cx=319.5, cy=239.5, width=640, height=480)


def tilted_plane(cam: Intrinsics) -> np.ndarray:
    """Depth (m) of the plane z = 2 + 0.5 x / ... seen by `cam`: z = d / (1 - a * ray_x - b * ray_y)."""
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    ray_x, ray_y = (u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy
    return 2.0 / (1.0 - 0.3 * ray_x - 0.2 * ray_y)  # points satisfy z = 2 + 0.3 x + 0.2 y


def labels(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 9, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


def test_points_of_a_known_plane_are_within_a_millimetre():
    depth = tilted_plane(CAM)
    mask, conf = labels(depth.shape)
    points = SemanticCloudBuilder().build(depth.astype(np.float32), CAM, mask, conf)
    assert points.shape == (480, 640) and points.dtype == POINT_DTYPE
    x, y, z = (points[k].astype(np.float64) for k in ("x", "y", "z"))
    assert np.max(np.abs(z - (2.0 + 0.3 * x + 0.2 * y))) < 1e-3  # on the plane
    u, v = np.meshgrid(np.arange(640), np.arange(480))
    assert np.max(np.abs(CAM.fx * x / z + CAM.cx - u)) < 1e-2  # and on each pixel's ray
    assert np.max(np.abs(CAM.fy * y / z + CAM.cy - v)) < 1e-2
    assert np.array_equal(points["class"], mask) and np.array_equal(points["confidence"], conf)


def test_millimetre_depth_gives_the_same_points_as_metres():
    depth_m = tilted_plane(CAM)
    depth_mm = np.round(depth_m * 1000).astype(np.uint16)
    mask, conf = labels(depth_m.shape)
    builder = SemanticCloudBuilder()
    a = builder.build(depth_in_metres(depth_mm, "16UC1"), CAM, mask, conf)
    b = builder.build(depth_in_metres(depth_mm.astype(np.float32) / 1000, "32FC1"), CAM, mask, conf)
    for k in "xyz":
        assert np.max(np.abs(a[k] - b[k])) < 1e-5
    assert abs(float(a["z"][240, 320]) - depth_m[240, 320]) <= 0.0005 + 1e-6  # 1 mm quantisation


def test_invalid_depth_gives_nan_points_and_keeps_the_index():
    depth = np.full((4, 5), 2.0, np.float32)
    depth[0, 0], depth[0, 1], depth[1, 2], depth[2, 3], depth[3, 4] = 0.0, np.nan, np.inf, 40.0, 0.01
    cam = Intrinsics(4.0, 4.0, 2.0, 1.5, 5, 4)
    mask, conf = labels(depth.shape)
    points = SemanticCloudBuilder(min_m=0.05, max_m=30.0).build(depth, cam, mask, conf)
    invalid = np.zeros((4, 5), bool)
    invalid[0, 0] = invalid[0, 1] = invalid[1, 2] = invalid[2, 3] = invalid[3, 4] = True
    for k in "xyz":
        assert np.array_equal(np.isnan(points[k]), invalid), k
    assert np.array_equal(points["class"], mask)  # classes stay at their pixel even where depth is invalid
    assert depth[0, 0] == 0.0 and np.isnan(depth[0, 1]) and depth[2, 3] == 40.0  # the caller's depth is untouched


def test_uint16_zero_means_no_depth():
    points = SemanticCloudBuilder().build(depth_in_metres(np.array([[0, 1500]], np.uint16), "16UC1"),
                                          Intrinsics(1, 1, 0, 0, 2, 1), *labels((1, 2)))
    assert np.isnan(points["z"][0, 0]) and points["z"][0, 1] == pytest.approx(1.5)


def test_depth_of_another_size_than_the_camera_is_rejected_with_a_reason():
    with pytest.raises(DepthError) as err:
        SemanticCloudBuilder().build(np.ones((240, 320), np.float32), CAM, *labels((480, 640)))
    assert err.value.reason == "depth_size_mismatch" and "register" in str(err.value)


def test_a_mask_smaller_than_the_camera_gets_scaled_intrinsics():
    """output_size: model -- the cloud is at mask size, its rays from the scaled camera."""
    depth = tilted_plane(CAM).astype(np.float32)
    mask, conf = labels((120, 160))
    points = SemanticCloudBuilder().build(depth, CAM, mask, conf)
    assert points.shape == (120, 160)
    x, y, z = (points[k].astype(np.float64) for k in ("x", "y", "z"))
    small = CAM.scaled(160, 120)
    assert small.fx == pytest.approx(125.0) and small.cx == pytest.approx(79.5)  # centre stays the centre
    # mask pixel (u, v) covers camera pixels 4u..4u+3: its depth is the one under its centre (4u+2 of the
    # nearest pixels), its point lies on its own ray of the scaled camera
    assert np.array_equal(z, depth[2::4, 2::4])
    u, v = np.meshgrid(np.arange(160), np.arange(120))
    assert np.max(np.abs(small.fx * x / z + small.cx - u)) < 1e-3
    assert np.max(np.abs(small.fy * y / z + small.cy - v)) < 1e-3
    # half a camera pixel from the exact centre: still on the plane within 5 mm at this steep tilt
    assert np.max(np.abs(z - (2.0 + 0.3 * x + 0.2 * y))) < 5e-3


def test_encodings_other_than_16uc1_and_32fc1_are_refused():
    with pytest.raises(DepthError) as err:
        depth_in_metres(np.zeros((2, 2), np.uint8), "mono8")
    assert err.value.reason == "depth_encoding"


def test_camera_info_without_focal_length_is_refused():
    msg = types.SimpleNamespace(k=[0.0] * 9, p=[0.0] * 12, width=640, height=480)
    with pytest.raises(DepthError) as err:
        Intrinsics.from_camera_info(msg)
    assert err.value.reason == "bad_camera_info"
    msg.k = [500.0, 0, 320, 0, 480.0, 240, 0, 0, 1]
    assert Intrinsics.from_camera_info(msg) == Intrinsics(500.0, 480.0, 320.0, 240.0, 640, 480)  # P unset: K


def test_camera_info_p_wins_over_k():
    """depth_image_proc registers depth with P (the rectified camera); K is the raw, distorted one."""
    msg = types.SimpleNamespace(k=[500.0, 0, 320, 0, 480.0, 240, 0, 0, 1],
                                p=[450.0, 0, 310, 0, 0, 440.0, 235, 0, 0, 0, 1, 0], width=640, height=480)
    assert Intrinsics.from_camera_info(msg) == Intrinsics(450.0, 440.0, 310.0, 235.0, 640, 480)


def test_zero_depth_is_invalid_even_with_no_minimum():
    depth = np.array([[0.0, -1.0, 1.0]], np.float32)
    points = SemanticCloudBuilder(min_m=0.0, max_m=10.0).build(depth, Intrinsics(1, 1, 1, 0, 3, 1), *labels((1, 3)))
    assert np.isnan(points["z"][0, 0]) and np.isnan(points["z"][0, 1]) and points["z"][0, 2] == 1.0


def test_cloud_message_layout_matches_the_points():
    from sensor_msgs.msg import PointField
    from std_msgs.msg import Header

    writer = CloudMessage()
    points = SemanticCloudBuilder().build(tilted_plane(CAM).astype(np.float32), CAM, *labels((480, 640)),
                                          out=writer.points_buffer(480, 640))
    header = Header(frame_id="ir_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = writer.message(header)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (480, 640, 16, 16 * 640)
    assert msg.header.frame_id == "ir_optical" and msg.header.stamp.nanosec == 345
    assert not msg.is_dense and not msg.is_bigendian
    fields = {f.name: (f.offset, f.datatype, f.count) for f in msg.fields}
    assert fields == {"x": (0, PointField.FLOAT32, 1), "y": (4, PointField.FLOAT32, 1),
                      "z": (8, PointField.FLOAT32, 1), "class": (12, PointField.UINT8, 1),
                      "confidence": (13, PointField.UINT8, 1)}
    decoded = np.frombuffer(bytes(msg.data), POINT_DTYPE).reshape(480, 640)
    assert bytes(decoded.view(np.uint8)[0, 14:16]) == b"\x00\x00"  # padding is zero
    assert np.array_equal(decoded.view(np.uint8), points.view(np.uint8))


def test_the_reused_message_holds_the_latest_cloud_and_follows_size_changes():
    writer, builder = CloudMessage(), SemanticCloudBuilder()
    cam = Intrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    for depth_value in (1.0, 3.0):
        mask, conf = labels((24, 32), seed=int(depth_value))
        builder.build(np.full((24, 32), depth_value, np.float32), cam, mask, conf, out=writer.points_buffer(24, 32))
        decoded = np.frombuffer(bytes(writer.message(None).data), POINT_DTYPE).reshape(24, 32)
        assert np.all(decoded["z"] == depth_value) and np.array_equal(decoded["class"], mask)
    first = writer.msg
    writer.points_buffer(12, 16)
    assert writer.msg is not first and (writer.msg.height, writer.msg.width, len(writer.msg.data)) == (12, 16, 3072)
