"""ROS 2 node: EO+IR segmentation with IR-only fallback (DESIGN contracts 4, 5).

Run: `ros2 launch csk_ros segment.launch.py` or, without `launch`,
`python -m csk_ros.segment_node --ros-args --params-file config/segment.yaml`.

Threads: the executor thread only decodes messages (raw or compressed),
feeds the health monitor, the loss estimators and the EO buffer, and publishes
diagnostics. Inference runs on one worker thread that always takes the
freshest IR frame (older pending frames are dropped and counted, never
queued), pairs it with the EO frame nearest in stamp (waiting at most
`sync_slop_s` for a late one, and not at all while the health monitor has
given EO up or a newer IR frame is pending), and publishes the mask with the
IR frame's header.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from .backends import load_bundle
from .bundle import BundleError
from .compressed import compressed_to_ir8, compressed_to_rgb8
from .frames import InputPreparer, colorize, overlay, palette_lut, resize_nearest
from .health import EoHealthMonitor
from .image_conversion import ImageDecodeError, array_to_image, to_ir8, to_rgb8
from .labels import apply_confidence_policy, class_list_json, label_info_message, load_label_info_types
from .meters import RateMeter, percentiles
from .mode_report import ModeAnnouncer
from .node_config import PARAMS, NodeConfig, build_config
from .node_status import StatusInputs, assess, lossy
from .pairing import EoBuffer, PairDecision, PairStatus, decide_pairing, stamp_seconds
from .points_output import PointsOutput
from .stream_loss import StreamLossEstimator

ROS_OWN_PARAMS = {"use_sim_time", "start_type_description_service"}
UNPAIRED_WARN_FRACTION = 0.2  # diagnostics WARN when this share of recent masks lacked an EO partner
HEALTH_WATCH_PERIOD_S = 0.05  # how often the alarms are checked, so an error is published at once
ALARM_REPUBLISH_S = 0.2  # the fastest an alarm change re-publishes /diagnostics


@dataclass
class IrJob:
    header: object
    ir: np.ndarray
    stamp: float
    arrival_ros: float
    arrival_wall: float
    decode_ms: float


class SegmentNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("segment_node", **node_kwargs)
        self.config = self._load_config()
        cfg = self.config
        self.segmenter = load_bundle(cfg.model_dir, backend=cfg.backend, rebuild=cfg.rebuild_engines,
                                     intra_op_threads=cfg.ort_threads, log=self.get_logger().warning,
                                     ort_spinning=cfg.ort_spinning, precision=cfg.precision)
        bundle = self.segmenter.bundle
        self.thermal_rule = cfg.thermal_rule(bundle.thermal_scaling)
        self.preparer = InputPreparer(bundle.height, bundle.width, cfg.homography)
        self.lut = palette_lut(bundle.palette)
        self.health = EoHealthMonitor(cfg.health)
        # One tolerance for "the clock jumped back" everywhere (node, monitor, buffer).
        self.clock_jump_s = cfg.health.clock_jump_tolerance_s
        self.eo_buffer: EoBuffer = EoBuffer(max_len=30, jump_back_s=self.clock_jump_s)
        self.recent_unpaired: deque[bool] = deque(maxlen=100)
        self.eo_loss = StreamLossEstimator(max_gap_s=cfg.health.eo_timeout_s)
        self.ir_loss = StreamLossEstimator(max_gap_s=cfg.health.ir_timeout_s)
        self.announcer = ModeAnnouncer(cfg.health.stale_periods)

        self.lock = threading.Condition()
        self.pending: IrJob | None = None
        self.running = True
        self.rejected: Counter = Counter()
        self.counts: Counter = Counter()
        self.eo_rate, self.ir_rate, self.mask_rate = RateMeter(), RateMeter(), RateMeter()
        self.latency_ms: deque[float] = deque(maxlen=300)
        self.latency_ms_by_mode = {"fused": deque(maxlen=300), "ir_only": deque(maxlen=300)}
        self.overhead_ms: deque[float] = deque(maxlen=300)
        self.decode_ms = {"eo": deque(maxlen=300), "ir": deque(maxlen=300)}
        self.last_ros_now: float | None = None
        self.last_ir_rejection_wall = -1e9
        self.alarms_published: tuple | None = None  # _alarms() of the last /diagnostics
        self.last_diag_wall = 0.0

        # sensor_data = REP-2003 sensor subscription: best effort, keep last `qos_depth`.
        input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                               reliability=ReliabilityPolicy.BEST_EFFORT if cfg.qos == "sensor_data"
                               else ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        out_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_mask = self.create_publisher(Image, "~/mask", out_qos)
        self.pub_conf = self.create_publisher(Image, "~/confidence", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_colored = self.create_publisher(Image, "~/colored_mask", out_qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_mode = self.create_publisher(String, "~/mode", latched)
        self._publish_labels(latched)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
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
            self.create_subscription(msg_type, topic, callback, input_qos)
        self.points: PointsOutput | None = None
        if cfg.publish_points:  # without it: no depth subscription, no per-frame cost
            self.points = PointsOutput(cfg.depth_min_m, cfg.depth_max_m, cfg.sync_slop_s, self.clock_jump_s,
                                       self.lock, self.rejected, self.counts, self.get_logger())
            self.pub_points = self.create_publisher(PointCloud2, "~/points", out_qos)
            self.input_topics["depth"] = self.resolve_topic_name("depth/image")
            self.input_topics["camera_info"] = self.resolve_topic_name("ir/camera_info")
            self.create_subscription(Image, self.input_topics["depth"], self.points.on_depth, input_qos)
            self.create_subscription(CameraInfo, self.input_topics["camera_info"], self.points.on_camera_info,
                                     input_qos)
        self.create_timer(cfg.diagnostics_period_s, self._on_diagnostics)
        self.create_timer(min(HEALTH_WATCH_PERIOD_S, cfg.diagnostics_period_s), self._watch_errors)
        self.worker = threading.Thread(target=self._work, name="csk_inference", daemon=True)
        self.worker.start()
        self._publish_mode(self.announcer.decision("no_input", "startup", self._ros_now()))
        info = self.segmenter.info
        self.get_logger().info(
            f"loaded bundle {bundle.root} ({bundle.height}x{bundle.width}, graphs {sorted(bundle.graphs)}) on "
            f"{self.segmenter.backend_name} {info.get('providers', '')}; subscribed to "
            f"{self.input_topics['eo']} ({cfg.eo_transport}) and {self.input_topics['ir']} ({cfg.ir_transport}), "
            f"qos {cfg.qos}" + (f"; ~/points from {self.input_topics['depth']} and {self.input_topics['camera_info']}"
                                if self.points is not None else ""))

    # ------------------------------------------------------------ parameters
    def _load_config(self) -> NodeConfig:
        values = {}
        for spec in PARAMS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=True)
            if spec.choices:
                descriptor.additional_constraints = f"one of {list(spec.choices)}"
            if spec.min_value is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value),
                                                         step=1)]
            elif spec.min_value is not None and isinstance(spec.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                                      to_value=float(spec.max_value), step=0.0)]
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
            except Exception as exc:  # rclpy raises several types for a bad YAML value
                raise ValueError(f"parameter '{spec.name}': {exc} ({spec.description})") from exc
        # rclpy silently drops overrides nobody declares, so a typo in a params
        # file would go unnoticed; its override table is the only place to see them.
        given = set(getattr(self, "_parameter_overrides", {}) or {})
        if any(name.startswith("qos_overrides.") for name in given):
            self.get_logger().warning("qos_overrides.* are not supported by this node; use its 'qos' and "
                                      "'qos_depth' parameters")
        unknown = sorted(n for n in given - {spec.name for spec in PARAMS} - ROS_OWN_PARAMS
                         if not n.startswith("qos_overrides."))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}: check the spelling in the params file / command line "
                             "(known: see config/segment.yaml)")
        return build_config(values)

    # ---------------------------------------------------------------- clocks
    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _check_clock_jump(self, now: float) -> None:
        """Bag loop / sim reset: drop every time-keyed buffer instead of wedging on old stamps."""
        if self.last_ros_now is not None and now < self.last_ros_now - self.clock_jump_s:
            self.get_logger().warning(f"clock jumped back {self.last_ros_now - now:.2f} s: resetting buffers")
            self.health.reset()
            self.eo_buffer.clear()
            if self.points is not None:
                self.points.reset()
            self.pending = None
            self.announcer.restart_timeline()
            self.counts["clock_resets"] += 1
        self.last_ros_now = now

    # ------------------------------------------------------------- callbacks
    def _decode(self, stream: str, msg):
        """Decode one message of `stream`; the time it took is recorded per stream."""
        t0 = time.monotonic()
        compressed = isinstance(msg, CompressedImage)
        if stream == "eo":
            image = compressed_to_rgb8(msg) if compressed else to_rgb8(msg)
        else:
            image = compressed_to_ir8(msg, self.thermal_rule) if compressed else to_ir8(msg, self.thermal_rule)
        elapsed_ms = (time.monotonic() - t0) * 1e3
        return image, elapsed_ms

    def _observe_stamp(self, estimator: StreamLossEstimator, msg) -> None:
        """Every message that arrived counts for transport loss, decodable or not. Call with the lock held."""
        estimator.observe(stamp_seconds(msg.header.stamp))
        self.health.set_periods(self.eo_loss.period(), self.ir_loss.period())

    def _on_eo(self, msg) -> None:
        now, wall = self._ros_now(), time.monotonic()
        self.eo_rate.tick(wall)
        try:
            rgb, decode_ms = self._decode("eo", msg)
        except ImageDecodeError as exc:
            with self.lock:
                self._observe_stamp(self.eo_loss, msg)
                self.rejected[f"eo_{exc.reason}"] += 1
                self.health.observe_eo_invalid(now, exc.reason)
            self._log_rejection("EO", exc)
            return
        with self.lock:
            self._check_clock_jump(now)
            self._observe_stamp(self.eo_loss, msg)
            self.decode_ms["eo"].append(decode_ms)
            self.health.observe_eo(now, rgb)
            self.eo_buffer.add(stamp_seconds(msg.header.stamp), rgb)
            self.lock.notify_all()

    def _on_ir(self, msg) -> None:
        now, wall = self._ros_now(), time.monotonic()
        self.ir_rate.tick(wall)
        try:
            ir, decode_ms = self._decode("ir", msg)
        except ImageDecodeError as exc:
            with self.lock:
                self._observe_stamp(self.ir_loss, msg)
                self.rejected[f"ir_{exc.reason}"] += 1
                self.last_ir_rejection_wall = wall
            self._log_rejection("IR", exc)
            return
        job = IrJob(msg.header, ir, stamp_seconds(msg.header.stamp), now, wall, (time.monotonic() - wall) * 1e3)
        with self.lock:
            self._check_clock_jump(now)
            self._observe_stamp(self.ir_loss, msg)
            self.decode_ms["ir"].append(decode_ms)
            self.health.observe_ir(now)
            if self.pending is not None:
                self.counts["ir_dropped"] += 1  # backend slower than the camera: keep only the freshest
            self.pending = job
            self.lock.notify_all()

    def _log_rejection(self, stream: str, exc: ImageDecodeError) -> None:
        self.get_logger().warning(f"dropped {stream} message ({exc.reason}): {exc}", throttle_duration_sec=5.0)

    def _publish_labels(self, latched: QoSProfile) -> None:
        """Latched class list: JSON on ~/classes everywhere, vision_msgs/LabelInfo on ~/label_info where the
        package exists (Nav2's semantic layer uses no mask before a LabelInfo)."""
        bundle, cfg = self.segmenter.bundle, self.config
        self.pub_classes = self.create_publisher(String, "~/classes", latched)
        self.pub_classes.publish(String(data=class_list_json(bundle.class_names, cfg.confidence_threshold,
                                                             cfg.low_confidence_policy, bundle.palette)))
        try:
            types = load_label_info_types()
            self.pub_label_info = self.create_publisher(types[0], "~/label_info", latched)
        except Exception as exc:  # ImportError, or rclpy's NoTypeSupportImportedException: never fatal
            self.label_info_status = f"unavailable: {exc}"
            self.get_logger().warning(f"~/label_info not published: {exc}")
            return
        msg = label_info_message(types, bundle.class_names, cfg.confidence_threshold)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_label_info.publish(msg)
        self.label_info_status = "published"

    # ---------------------------------------------------------------- worker
    def _next_pair(self):
        """Block until an IR job is pending; return it with its EO partner (or None) and the mode."""
        with self.lock:
            while self.running and self.pending is None:
                self.lock.wait(0.1)
            if not self.running:
                return None
            job, self.pending = self.pending, None
            slop = self.config.sync_slop_s
            if self.health.decide(self._ros_now()).mode != "fused":
                # EO is given up (stale, dark, ...): waiting for a partner would only delay the IR-only mask.
                pairing = PairDecision(PairStatus.NO_PARTNER)
            else:
                while True:
                    wall = time.monotonic()
                    if self.pending is not None:  # a newer IR frame waits: settle for the best partner now
                        wall = max(wall, job.arrival_wall + slop)
                    pairing = decide_pairing(job.stamp, job.arrival_wall, wall, self.eo_buffer, slop)
                    if pairing.status is not PairStatus.WAIT or not self.running:
                        break
                    self.lock.wait(max(0.0, pairing.wait_until_s - wall))
            decision = self.health.decide(self._ros_now())
        return job, pairing, decision

    def _work(self) -> None:
        while self.running:
            item = self._next_pair()
            if item is None:
                return
            try:
                self._process(*item)
            except Exception as exc:  # never let one bad frame kill the worker
                if not self.running or not self.context.ok():
                    return  # shutting down: the context went away under a publish; not an inference error
                with self.lock:
                    self.counts["inference_errors"] += 1
                self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)

    def _process(self, job: IrJob, pairing, decision) -> None:
        t0 = time.monotonic()
        mode, reason = decision.mode, decision.reason
        eo = None
        if mode == "fused":
            if pairing.status is PairStatus.MATCHED and self.segmenter.has_fused:
                try:
                    eo = self.preparer.eo(pairing.eo_item, job.ir.shape[:2])
                except ValueError as exc:
                    with self.lock:
                        self.rejected["eo_size_mismatch"] += 1
                    self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
                    mode, reason = "ir_only", "eo_size_mismatch"
            else:
                mode, reason = "ir_only", ("eo_unpaired" if self.segmenter.has_fused else "no_fused_graph")
        elif mode == "no_input":  # IR just arrived, so the monitor is only catching up
            mode, reason = "ir_only", "ir_catching_up"
        ir = self.preparer.ir(job.ir)
        t1 = time.monotonic()
        mask, conf = self.segmenter.fused(eo, ir) if mode == "fused" else self.segmenter.ir_only(ir)
        t2 = time.monotonic()
        if self.config.output_size == "ir":
            mask, conf = resize_nearest(mask, job.ir.shape[:2]), resize_nearest(conf, job.ir.shape[:2])
        mask = apply_confidence_policy(mask, conf, self.config.confidence_threshold,
                                       self.config.low_confidence_policy)
        self.pub_mask.publish(array_to_image(mask, "mono8", job.header))
        self.pub_conf.publish(array_to_image(conf, "mono8", job.header))
        want_colored = self.pub_colored.get_subscription_count() > 0
        want_overlay = self.pub_overlay.get_subscription_count() > 0
        if want_colored or want_overlay:
            colored = colorize(mask, self.lut)
            if want_colored:
                self.pub_colored.publish(array_to_image(colored, "bgr8", job.header))
            if want_overlay:
                base = resize_nearest(job.ir, mask.shape[:2])
                self.pub_overlay.publish(array_to_image(overlay(base, colored, self.config.overlay_alpha), "bgr8",
                                                        job.header))
        depth_wait_s = 0.0
        if self.points is not None:
            cloud, depth_wait_s = self.points.cloud_for(job.stamp, job.arrival_wall, mask, conf, job.header,
                                                        lambda: self.running and self.pending is None)
            if cloud is not None:
                self.pub_points.publish(cloud)
        t3 = time.monotonic() - depth_wait_s
        with self.lock:
            self.counts[f"masks_{mode}"] += 1
            self.latency_ms.append((t2 - t1) * 1e3)
            self.latency_ms_by_mode[mode].append((t2 - t1) * 1e3)
            self.overhead_ms.append(job.decode_ms + (t1 - t0 + t3 - t2) * 1e3)
            self.mask_rate.tick(t3)
            if decision.mode == "fused":
                self.recent_unpaired.append(mode != "fused")
            if (mode, reason) != (decision.mode, decision.reason):
                self.counts[f"frames_{reason}"] += 1  # a per-frame fallback (see csk_ros/mode_report.py)
            self._publish_mode(self.announcer.frame((mode, reason), (decision.mode, decision.reason),
                                                    decision.since_s, job.arrival_ros,
                                                    self.health.stale_limit("eo")))

    # ------------------------------------------------------------ mode/diag
    def _publish_mode(self, announcement) -> None:
        if announcement is None:
            return
        self.counts[f"switches_to_{announcement.mode}"] += 1
        payload = {"mode": announcement.mode, "reason": announcement.reason, "since": round(announcement.since, 6),
                   "backend": self.segmenter.backend_name}
        self.pub_mode.publish(String(data=json.dumps(payload)))
        self.get_logger().info(f"mode -> {announcement.mode} ({announcement.reason})")

    def _running_precision(self) -> str:
        """What the backend runs (TensorRT: per graph, e.g. an fp16 engine for a graph without int8), not
        what was asked for."""
        running = self.segmenter.info.get("precision", self.config.precision)
        return running if isinstance(running, str) else json.dumps(running, sort_keys=True)

    def _alarms(self, health_mode: str, eo, ir) -> tuple[bool, bool, bool]:
        """(IR stale, EO loss above the WARN level, IR loss above it) from a decision and two LossReports."""
        limit = self.config.loss_warn_fraction
        return (health_mode == "no_input", lossy(eo.loss_fraction, eo.lost, limit),
                lossy(ir.loss_fraction, ir.lost, limit))

    def _watch_errors(self) -> None:
        """Publish /diagnostics at once when an alarm (IR stale, transport loss) starts or ends, not at the next
        tick; at most every ALARM_REPUBLISH_S so a loss fraction hovering at the limit cannot flood the topic."""
        with self.lock:
            alarms = self._alarms(self.health.decide(self._ros_now()).mode, self.eo_loss.report(),
                                  self.ir_loss.report())
        if alarms != self.alarms_published and time.monotonic() - self.last_diag_wall >= ALARM_REPUBLISH_S:
            self._on_diagnostics()

    def _on_diagnostics(self) -> None:
        now_ros, wall = self._ros_now(), time.monotonic()
        cfg = self.config
        with self.lock:
            decision = self.health.decide(now_ros)
            if decision.mode == "no_input":
                self._publish_mode(self.announcer.decision("no_input", decision.reason, decision.since_s))
            ir_age = self.ir_rate.age(wall)
            ir_limit = self.health.stale_limit("ir")
            ir_rejected = ", ".join(k[3:] for k in sorted(self.rejected) if k.startswith("ir_") and
                                    self.last_ir_rejection_wall > wall - ir_limit)
            unpaired = (sum(self.recent_unpaired) / len(self.recent_unpaired)) if self.recent_unpaired else 0.0
            ir_dead = decision.mode == "no_input" or ir_age is None or ir_age > ir_limit
            mode, reason = self.announcer.state
            loss = {"eo": self.eo_loss.report(), "ir": self.ir_loss.report()}
            lat50, lat95 = percentiles(self.latency_ms)
            ovh50, ovh95 = percentiles(self.overhead_ms)
            values = {
                "mode": mode, "reason": reason, "health_mode": decision.mode, "health_reason": decision.reason,
                "mode_since": f"{self.announcer.since:.3f}",
                "eo_rate_hz": f"{self.eo_rate.rate(wall):.2f}", "ir_rate_hz": f"{self.ir_rate.rate(wall):.2f}",
                "mask_rate_hz": f"{self.mask_rate.rate(wall):.2f}",
                "eo_age_s": "never" if self.eo_rate.age(wall) is None else f"{self.eo_rate.age(wall):.3f}",
                "ir_age_s": "never" if ir_age is None else f"{ir_age:.3f}",
                "inference_ms_p50": f"{lat50:.2f}", "inference_ms_p95": f"{lat95:.2f}",
                "overhead_ms_p50": f"{ovh50:.3f}", "overhead_ms_p95": f"{ovh95:.3f}",
                "backend": self.segmenter.backend_name, "precision": self._running_precision(),
                "bundle": str(self.segmenter.bundle.root),
                "backend_info": json.dumps(self.segmenter.info, default=str),
                "eo_received": str(self.eo_rate.count), "ir_received": str(self.ir_rate.count),
                "eo_transport": cfg.eo_transport, "ir_transport": cfg.ir_transport,
                "rejected_total": str(sum(self.rejected.values())),
                "unpaired_fraction_recent": f"{unpaired:.3f}",
                "label_info": self.label_info_status, "publish_points": str(cfg.publish_points).lower(),
            }
            for which, samples in self.latency_ms_by_mode.items():
                m50, m95 = percentiles(samples)
                values.update({f"inference_{which}_ms_p50": f"{m50:.2f}", f"inference_{which}_ms_p95": f"{m95:.2f}"})
            for stream, report in loss.items():
                d50, d95 = percentiles(self.decode_ms[stream])
                values.update({
                    f"{stream}_loss_fraction": f"{report.loss_fraction:.4f}",
                    f"{stream}_lost_total": str(report.total_lost),
                    f"{stream}_period_ms": "unknown" if report.period_s is None else f"{1e3 * report.period_s:.2f}",
                    f"{stream}_stale_limit_s": f"{self.health.stale_limit(stream):.3f}",
                    f"{stream}_decode_ms_p50": f"{d50:.3f}", f"{stream}_decode_ms_p95": f"{d95:.3f}",
                })
            if self.points is not None:
                values.update(self.points.diagnostics())
            values.update({f"rejected_{k}": str(v) for k, v in sorted(self.rejected.items())})
            values.update({k: str(v) for k, v in sorted(self.counts.items())})
            self.alarms_published = self._alarms(decision.mode, loss["eo"], loss["ir"])
            self.last_diag_wall = wall
        level, message = assess(StatusInputs(
            ir_dead=ir_dead, ir_dead_reason=decision.reason, ir_rejected_reasons=ir_rejected,
            eo_loss=loss["eo"].loss_fraction, ir_loss=loss["ir"].loss_fraction,
            eo_lost=loss["eo"].lost, ir_lost=loss["ir"].lost,
            loss_warn_fraction=cfg.loss_warn_fraction, qos=cfg.qos, unpaired_fraction=unpaired,
            unpaired_warn_fraction=UNPAIRED_WARN_FRACTION, mode=mode, reason=reason))
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=cfg.hardware_id,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    def shutdown(self) -> None:
        with self.lock:
            self.running = False
            self.lock.notify_all()
        self.worker.join(timeout=10.0)
        if self.worker.is_alive():  # an inference still running: let process exit reclaim the backend
            self.get_logger().warning("inference worker did not stop within 10 s")
        else:
            self.segmenter.close()


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = SegmentNode()
    except (ValueError, BundleError, OSError, RuntimeError) as exc:
        print(f"[segment_node] start-up failed: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while the bundle was loading
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # `ros2 launch` forwards a second SIGINT after the terminal's: it must
        # not interrupt the cleanup and turn a clean stop into a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
