"""The segment node's inputs: its subscriptions, and what the executor thread does with each message.

A mixin of SegmentNode (csk_ros/node/segment_node.py), kept apart because it is the executor thread's side
of the node: it only decodes messages (raw or compressed), feeds the per-frame core (EO health, the loss
estimators, the EO buffer) and hands the freshest IR frame to the worker (csk_ros/node/worker.py) through
`self.pending`. A newer IR frame replaces a pending one and the drop is counted, never queued. Everything it
shares with the worker goes through `self.lock`. It uses the node's `core`, `config`, `points`, `transport`
and `pending`, and sets `input_topics` (the resolved names, for the start-up line).
"""

from __future__ import annotations

import time

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from csk_ros.imaging.ros_image import ImageDecodeError
from csk_ros.logic.pairing import stamp_seconds
from csk_ros.pipeline import IrJob


class FrameInputs:
    """Subscriptions (created by SegmentNode.on_activate) and their callbacks."""

    def _create_subscriptions(self) -> None:
        cfg = self.config
        # sensor_data = REP-2003 sensor subscription: best effort, keep last `qos_depth`.
        input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                               reliability=ReliabilityPolicy.BEST_EFFORT if cfg.qos == "sensor_data"
                               else ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.input_topics = {}
        streams = (("eo", cfg.eo_transport, self._on_eo), ("ir", cfg.ir_transport, self._on_ir))
        for stream, transport, callback in streams:
            # image_transport's convention: the compressed stream of base topic T is T/compressed,
            # with T resolved (remapped) first, so remapping eo/image moves both.
            topic = self.resolve_topic_name(f"{stream}/image")
            msg_type = Image if transport == "raw" else CompressedImage
            if transport == "compressed":
                topic += "/compressed"
            self.input_topics[stream] = topic
            self.inputs.append(self.create_subscription(msg_type, topic, callback, input_qos))
        if self.points is not None:
            self.input_topics["depth"] = self.resolve_topic_name("depth/image")
            self.input_topics["camera_info"] = self.resolve_topic_name("ir/camera_info")
            self.inputs.append(self.create_subscription(Image, self.input_topics["depth"], self.points.on_depth,
                                                        input_qos))
            self.inputs.append(self.create_subscription(CameraInfo, self.input_topics["camera_info"],
                                                        self.points.on_camera_info, input_qos))

    def _on_eo(self, msg) -> None:
        now, wall = self._ros_now(), time.monotonic()
        self.core.arrived("eo", wall)
        self._check_size(self.input_topics["eo"], len(msg.data))
        try:
            rgb, decode_ms = self.core.decode("eo", msg)
        except ImageDecodeError as exc:
            with self.lock:
                self.core.eo_rejected(msg.header, now, exc)
            self._log_rejection("EO", exc)
            return
        with self.lock:
            if self.core.eo_frame(msg.header, rgb, now, decode_ms):
                self._clock_reset()
            self.lock.notify_all()

    def _on_ir(self, msg) -> None:
        now, wall = self._ros_now(), time.monotonic()
        self.core.arrived("ir", wall)
        self._check_size(self.input_topics["ir"], len(msg.data))
        try:
            ir, decode_ms = self.core.decode("ir", msg)
        except ImageDecodeError as exc:
            with self.lock:
                self.core.ir_rejected(msg.header, wall, exc)
            self._log_rejection("IR", exc)
            return
        job = IrJob(msg.header, ir, stamp_seconds(msg.header.stamp), now, wall, (time.monotonic() - wall) * 1e3)
        with self.lock:
            if self.core.ir_frame(job, decode_ms):
                self._clock_reset()
            if self.pending is not None:
                self.core.counts["ir_dropped"] += 1  # backend slower than the camera: keep only the freshest
            self.pending = job
            self.lock.notify_all()

    def _check_size(self, name: str, size: int) -> None:
        """WARN once when a message of this size does not fit the DDS shared-memory segment."""
        if self.transport.sizes.get(name) == size:
            return
        with self.lock:
            warning = self.transport.observe({name: size})
        if warning:
            self.get_logger().warning(warning)

    def _log_rejection(self, stream: str, exc: ImageDecodeError) -> None:
        self.get_logger().warning(f"dropped {stream} message ({exc.reason}): {exc}", throttle_duration_sec=5.0)

    def _clock_reset(self) -> None:
        """The core reset its time-keyed buffers (clock jumped back): drop what the node holds too."""
        if self.points is not None:
            self.points.reset()
        self.pending = None
