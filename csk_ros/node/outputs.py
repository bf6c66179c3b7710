"""The segment node's publishers: masks, confidence, renderings, ~/mode, the class list and ~/points.

A mixin of SegmentNode (csk_ros/node/segment_node.py). The publishers are created at configure and live
until cleanup (a deactivated node keeps them, so subscribers stay matched); the worker
(csk_ros/node/worker.py) publishes on them per frame. The latched ones (~/mode, ~/classes, ~/label_info)
are published here: the class list again after a model swap that changes the classes or a live change of
the confidence threshold or policy. /diagnostics has its own module (csk_ros/node/diagnostics.py).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String

from csk_ros.logic.labels import class_list_json, label_info_message, load_label_info_types


class NodeOutputs:
    """Publishers (`pub_*`, all listed in `outputs` so that cleanup destroys them) and the latched messages."""

    def _create_publishers(self) -> None:
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_mask = self.create_publisher(Image, "~/mask", out_qos)
        self.pub_conf = self.create_publisher(Image, "~/confidence", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_colored = self.create_publisher(Image, "~/colored_mask", out_qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_mode = self.create_publisher(String, "~/mode", latched)
        self.outputs = [self.pub_mask, self.pub_conf, self.pub_overlay, self.pub_colored, self.pub_mode]
        self._create_label_publishers(latched)
        self._publish_labels()
        if self.config.publish_points:
            self.pub_points = self.create_publisher(PointCloud2, "~/points", out_qos)
            self.outputs.append(self.pub_points)

    def _destroy_publishers(self) -> None:
        for pub in self.outputs:
            self.destroy_publisher(pub)
        self.outputs = []

    def _create_label_publishers(self, latched: QoSProfile) -> None:
        self.pub_classes = self.create_publisher(String, "~/classes", latched)
        self.outputs.append(self.pub_classes)
        self.label_info_types = None
        try:
            self.label_info_types = load_label_info_types()
            self.pub_label_info = self.create_publisher(self.label_info_types[0], "~/label_info", latched)
            self.outputs.append(self.pub_label_info)
        except Exception as exc:  # ImportError, or rclpy's NoTypeSupportImportedException: never fatal
            self.label_info_status = f"unavailable: {exc}"
            self.get_logger().warning(f"~/label_info not published: {exc}")

    def _publish_labels(self) -> None:
        """Latched class list: JSON on ~/classes everywhere, vision_msgs/LabelInfo on ~/label_info where the
        package exists (Nav2's semantic layer uses no mask before a LabelInfo). Again after a swap that changes
        the classes, or a live change of the confidence threshold or policy."""
        bundle, cfg = self.core.segmenter.bundle, self.config
        self.pub_classes.publish(String(data=class_list_json(bundle.class_names, cfg.confidence_threshold,
                                                             cfg.low_confidence_policy, bundle.palette)))
        if self.label_info_types is None:
            return
        msg = label_info_message(self.label_info_types, bundle.class_names, cfg.confidence_threshold)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_label_info.publish(msg)
        self.label_info_status = "published"

    def _publish_mode(self, announcement) -> None:
        if announcement is None:
            return
        self.pub_mode.publish(String(data=self.core.mode_json(announcement)))
        self.get_logger().info(f"mode -> {announcement.mode} ({announcement.reason})")
