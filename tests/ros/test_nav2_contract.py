"""The contract Nav2's semantic segmentation layer (ros-navigation/semantic_segmentation_layer,
Humble and Jazzy) relies on, checked over real ROS 2 with a subscriber configured like it:
SensorData QoS for mask, confidence and cloud; reliable + transient-local (depth 5) for labels,
subscribed late. For every IR frame: a mono8 mask (step = width), a mono8 confidence and an organized
cloud of the same size, all with the IR frame's exact stamp and frame_id."""

import json
import threading
import time

import numpy as np

from csk_ros.logic.labels import confidence_cutoff
from harness.stream_client import Driver, scene, start_node, stop_node
from tests.support.node_harness import FAST, PERIOD, H, W

CAMERA_K = [70.0, 0.0, (W - 1) / 2, 0.0, 70.0, (H - 1) / 2, 0.0, 0.0, 1.0]


def stamp_key(header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


class Nav2LikeSubscriber:
    """What the layer subscribes to, with its QoS, keyed by stamp like its exact-time synchroniser."""

    def __init__(self, driver: Driver, prefix: str = "/segment_node"):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2

        self.node, self.prefix, self.lock = driver.node, prefix, threading.Lock()
        self.by_topic = {"mask": {}, "confidence": {}, "points": {}}
        for name, msg_type in (("mask", Image), ("confidence", Image), ("points", PointCloud2)):
            self.node.create_subscription(msg_type, f"{prefix}/{name}", self._keep(name), qos_profile_sensor_data)
        self.labels = []

    def _keep(self, name):
        def callback(msg):
            with self.lock:
                self.by_topic[name][stamp_key(msg.header)] = msg
        return callback

    def subscribe_labels_late(self, msg_type, topic):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

        def callback(msg):
            with self.lock:
                self.labels.append(msg)
        return self.node.create_subscription(msg_type, f"{self.prefix}/{topic}", callback, qos)

    def complete(self, keys) -> bool:
        with self.lock:
            return all(k in self.by_topic[name] for k in keys for name in self.by_topic)


def publish_frame(d: Driver, pubs, t: float, depth: np.ndarray | None, camera_info) -> tuple[int, int]:
    eo, ir = scene(H, W, t)
    ir_msg = d.image(ir, "mono8", t, "ir_optical")
    if depth is not None:
        pubs["depth"].publish(d.image(depth, "16UC1", t, "ir_optical"))
    camera_info.header = ir_msg.header
    pubs["info"].publish(camera_info)
    d.pub_eo.publish(d.image(eo, "rgb8", t, "eo_optical"))
    d.pub_ir.publish(ir_msg)
    return stamp_key(ir_msg.header)


def test_a_nav2_like_subscriber_gets_mask_confidence_cloud_and_late_labels(tiny_bundle, ros_env):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    threshold = 0.6
    params = dict(FAST, publish_points=True, confidence_threshold=threshold, low_confidence_policy="unlabeled")
    proc = start_node(tiny_bundle, ros_env, params)
    d = Driver()
    try:
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {"depth": d.node.create_publisher(Image, "depth/image", qos),
                "info": d.node.create_publisher(CameraInfo, "ir/camera_info", qos)}
        nav2 = Nav2LikeSubscriber(d)
        assert d.wait_for_subscribers(40), stop_node(proc)
        assert d.wait_for(lambda: pubs["depth"].get_subscription_count() and pubs["info"].get_subscription_count()
                          and d.node.count_publishers("/segment_node/points"), 10)
        time.sleep(0.5)
        info = CameraInfo(width=W, height=H, k=CAMERA_K)
        depth_mm = np.full((H, W), 2500, np.uint16)
        depth_mm[:, :5] = 0  # no return: NaN points
        keys = []
        for i in range(30):
            keys.append(publish_frame(d, pubs, time.time(), depth_mm, info))
            time.sleep(PERIOD)
        assert d.wait_for(lambda: nav2.complete(keys), 10), {k: len(v) for k, v in nav2.by_topic.items()}

        for key in keys:
            mask, conf, cloud = (nav2.by_topic[n][key] for n in ("mask", "confidence", "points"))
            assert mask.header.frame_id == conf.header.frame_id == cloud.header.frame_id == "ir_optical"
            assert mask.encoding == conf.encoding == "mono8" and mask.step == mask.width  # one byte per pixel
            assert (mask.width, mask.height) == (conf.width, conf.height) == (cloud.width, cloud.height) == (W, H)
            m = np.frombuffer(bytes(mask.data), np.uint8).reshape(H, W)
            c = np.frombuffer(bytes(conf.data), np.uint8).reshape(H, W)
            low = c < confidence_cutoff(threshold)
            assert low.any() and np.all(m[low] == 255)  # low confidence -> no class
            assert np.all(m[~low] < 9)  # the rest keeps its class
            fields = {f.name: f.offset for f in cloud.fields}
            points = np.frombuffer(bytes(cloud.data), np.uint8).reshape(H, W, cloud.point_step)
            z = points[:, :, fields["z"]:fields["z"] + 4].copy().view(np.float32)[:, :, 0]
            x = points[:, :, fields["x"]:fields["x"] + 4].copy().view(np.float32)[:, :, 0]
            assert np.all(np.isnan(z[:, :5])) and np.allclose(z[:, 5:], 2.5)
            u = np.arange(W, dtype=np.float64)[None, 5:]
            assert np.allclose(x[:, 5:], (u - CAMERA_K[2]) / CAMERA_K[0] * 2.5, atol=1e-5)  # on each pixel's ray
            assert np.array_equal(points[:, :, fields["class"]], m)  # the cloud carries the published mask
            assert np.array_equal(points[:, :, fields["confidence"]], c)

        # Late subscribers still get the class list (and LabelInfo where vision_msgs exists).
        nav2.subscribe_labels_late(String, "classes")
        assert d.wait_for(lambda: nav2.labels, 5)
        classes = json.loads(nav2.labels[0].data)
        assert [c["id"] for c in classes["classes"]] == list(range(len(classes["classes"])))
        assert classes["confidence_threshold"] == threshold and classes["low_confidence_id"] == 255

        # A depth frame of the wrong size is rejected and counted; an IR frame without depth gets no cloud.
        pubs["depth"].publish(d.image(np.zeros((H // 2, W // 2), np.uint16), "16UC1", time.time(), "ir_optical"))
        publish_frame(d, pubs, time.time() + 5.0, None, info)
        assert d.wait_for(lambda: int((d.latest_diagnostic() or {}).get("rejected_depth_size_mismatch", 0)) == 1
                          and int(d.latest_diagnostic().get("points_skipped_no_depth", 0)) >= 1, 5), \
            d.latest_diagnostic()
        diag = d.latest_diagnostic()
        assert int(diag["points_published"]) == len(keys) and diag["publish_points"] == "true"
    finally:
        d.close()
        log = stop_node(proc)
    assert "Traceback" not in log, log


def test_without_publish_points_the_node_neither_subscribes_to_depth_nor_publishes_points(tiny_bundle, ros_env):
    proc = start_node(tiny_bundle, ros_env, FAST)
    d = Driver()
    try:
        assert d.wait_for_subscribers(40), stop_node(proc)
        assert d.node.count_subscribers("depth/image") == 0 and d.node.count_subscribers("ir/camera_info") == 0
        assert d.node.count_publishers("/segment_node/points") == 0
        assert d.node.count_publishers("/segment_node/classes") == 1
        assert d.wait_for(lambda: d.latest_diagnostic(), 5)
        assert d.latest_diagnostic()["label_info"].startswith("unavailable: vision_msgs is not importable")
    finally:
        d.close()
        log = stop_node(proc)
    assert "Traceback" not in log, log
    assert log.count("~/label_info not published") == 1, log  # said once, clearly, where vision_msgs is missing


def test_the_node_latches_label_info_for_a_late_subscriber(tiny_bundle, ros_env):
    """With vision_msgs importable (generated here from the rosidl wheels: tests/support), the node publishes
    LabelInfo once at start-up; a subscriber configured like the Nav2 layer, joining later, receives it."""
    import os
    import sys

    import pytest

    from csk_ros.bundle import load_manifest
    from tests.support.build_vision_msgs import ensure_vision_msgs, missing_toolchain

    vision_msgs_dir = ensure_vision_msgs()
    if vision_msgs_dir is None:
        pytest.skip(missing_toolchain())
    if str(vision_msgs_dir) not in sys.path:
        sys.path.insert(0, str(vision_msgs_dir))
    from vision_msgs.msg import LabelInfo

    env = dict(ros_env, PYTHONPATH=os.pathsep.join(p for p in (str(vision_msgs_dir), ros_env.get("PYTHONPATH"))
                                                   if p))
    proc = start_node(tiny_bundle, env, dict(FAST, confidence_threshold=0.25))
    d = Driver()
    try:
        assert d.wait_for_subscribers(40), stop_node(proc)
        time.sleep(1.0)  # the node published LabelInfo long before this subscriber exists
        nav2 = Nav2LikeSubscriber(d)
        nav2.subscribe_labels_late(LabelInfo, "label_info")
        assert d.wait_for(lambda: nav2.labels, 5), "no latched LabelInfo"
        time.sleep(0.3)
        assert len(nav2.labels) == 1  # published once, not per frame
        msg = nav2.labels[0]
        names = load_manifest(tiny_bundle).class_names
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(names))
        assert abs(msg.threshold - 0.25) < 1e-6
        assert (d.latest_diagnostic() or {}).get("label_info", "published") == "published"
    finally:
        d.close()
        log = stop_node(proc)
    assert "Traceback" not in log and "label_info not published" not in log, log
