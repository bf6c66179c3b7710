"""The node's depth pairing for ~/points (csk_ros/node/points_output.py), without ROS transport: a late depth frame
is waited for, a missing or silent depth stream or a newer pending IR frame never delays the mask, and the
reasons a mask gets no cloud are counted."""

import threading
import time
import types
from collections import Counter

import numpy as np

from csk_ros.node.points_output import DEPTH_QUIET_S, PointsOutput

H, W = 6, 8
SLOP = 0.2


class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, text, **_):
        self.lines.append(text)


def make_output():
    out = PointsOutput(0.05, 30.0, SLOP, 1.0, threading.Condition(), Logger())
    out.on_camera_info(types.SimpleNamespace(k=[10.0, 0, 3.5, 0, 10.0, 2.5, 0, 0, 1], p=[0.0] * 12, width=W,
                                             height=H))
    return out


def depth_msg(stamp: float, value_mm: int = 2000, size=(H, W), encoding="16UC1"):
    from std_msgs.msg import Header

    from csk_ros.imaging.ros_image import array_to_image

    header = Header(frame_id="ir_optical")
    header.stamp.sec, header.stamp.nanosec = int(stamp), int(round((stamp - int(stamp)) * 1e9))
    array_ = np.full(size, value_mm, np.uint16) if encoding == "16UC1" else np.full(size, 20, np.uint8)
    return array_to_image(array_, encoding if encoding == "16UC1" else "mono8", header)


def ask(out, stamp, may_wait=lambda: True):
    mask, conf = np.ones((H, W), np.uint8), np.full((H, W), 200, np.uint8)
    return out.cloud_for(stamp, time.monotonic(), mask, conf, None, may_wait)


def test_a_depth_frame_arriving_late_is_waited_for():
    out = make_output()
    out.on_depth(depth_msg(99.9))  # the stream is alive, its frame for t=100 is not there yet
    threading.Timer(0.05, lambda: out.on_depth(depth_msg(100.0, 3000))).start()
    cloud, waited = ask(out, 100.0)
    assert cloud is not None and 0.03 < waited < SLOP
    z = np.frombuffer(bytes(cloud.data), np.float32).reshape(H, W, 4)[:, :, 2]
    assert np.allclose(z, 3.0)  # the exact partner, not the neighbour that was already there
    assert out.counts["points_published"] == 1


def test_no_depth_stream_never_delays_a_mask():
    out = make_output()
    cloud, waited = ask(out, 100.0)
    assert cloud is None and waited < 0.02
    assert out.counts["points_skipped_no_depth"] == 1


def test_a_silent_depth_stream_never_delays_a_mask():
    out = make_output()
    out.on_depth(depth_msg(90.0))
    out.last_depth_wall -= DEPTH_QUIET_S + 0.1  # its last frame came long ago
    cloud, waited = ask(out, 100.0)
    assert cloud is None and waited < 0.02


def test_a_newer_pending_ir_frame_stops_the_wait_and_keeps_the_best_partner():
    out = make_output()
    out.on_depth(depth_msg(99.95, 1000))
    cloud, waited = ask(out, 100.0, may_wait=lambda: False)
    assert cloud is not None and waited < 0.02  # within the slop: taken at once instead of waiting for a nearer
    assert np.allclose(np.frombuffer(bytes(cloud.data), np.float32).reshape(H, W, 4)[:, :, 2], 1.0)


def test_bad_depth_is_rejected_by_reason_and_unused():
    out = make_output()
    out.on_depth(depth_msg(100.0, size=(H // 2, W // 2)))
    out.on_depth(depth_msg(100.0, encoding="mono8"))
    assert out.rejected == Counter({"depth_size_mismatch": 1, "depth_encoding": 1})
    assert len(out.buffer) == 0 and len(out.logger.lines) == 2


def test_depth_before_camera_info_is_kept_and_checked_when_used():
    out = PointsOutput(0.05, 30.0, SLOP, 1.0, threading.Condition(), Logger())
    out.on_depth(depth_msg(100.0, size=(H // 2, W // 2)))  # size unknown yet: buffered
    cloud, _ = ask(out, 100.0)
    assert cloud is None and out.counts["points_skipped_no_camera_info"] == 1
    out.on_camera_info(types.SimpleNamespace(k=[10.0, 0, 3.5, 0, 10.0, 2.5, 0, 0, 1], p=[], width=W, height=H))
    cloud, _ = ask(out, 100.0)
    assert cloud is None and out.counts["points_skipped_depth_size_mismatch"] == 1


def test_depth_rejections_count_in_the_nodes_rejected_total(core):
    """The cloud's counters are its own; /diagnostics adds its rejections to the core's."""
    out = PointsOutput(0.05, 30.0, SLOP, 1.0, threading.Condition(), Logger())
    out.rejected["depth_encoding"] += 2
    core.rejected["ir_truncated"] += 1
    _, _, values, _ = core.diagnostics(1.0, 1.0, {}, out.diagnostics(), (), out.rejected)
    assert values["rejected_total"] == "3" and values["rejected_depth_encoding"] == "2"
    assert core.rejected == Counter({"ir_truncated": 1}), "reporting must not fold the cloud's counts into the core's"
