"""ROS 2 node: EO+IR segmentation with IR-only fallback (DESIGN contracts 4, 5).

The per-frame rules (decoding, EO health, pairing, loss, inference with
fallback, ~/mode, /diagnostics values) live in the ROS-free
`csk_ros.pipeline.SegmentationPipeline`, which `python -m csk_ros.bag` drives
too; this module is the wiring around it.

Run: `ros2 launch csk_ros segment.launch.py` or, without `launch`,
`python -m csk_ros.segment_node --ros-args --params-file config/segment.yaml`.

Threads: the executor thread only decodes messages (raw or compressed),
feeds the health monitor, the loss estimators and the EO buffer, and publishes
diagnostics. Inference runs on one worker thread that always takes the
freshest IR frame (older pending frames are dropped and counted, never
queued), pairs it with the EO frame nearest in stamp (waiting at most
`sync_slop_s` for a late one, and not at all while the health monitor has
given EO up or a newer IR frame is pending), and publishes the mask with the
IR frame's header (csk_ros/node_worker.py). Two more threads: ~/reload_model's
(csk_ros/service_host.py) and the registration check's (csk_ros/registration_watch.py).
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from csk_ros.backends import load_configured
from csk_ros.backends.replacement import describe_change, load_checked
from csk_ros.bundle import BundleError
from csk_ros.imaging.ros_image import ImageDecodeError
from csk_ros.logic.config import build_config
from csk_ros.logic.labels import class_list_json, label_info_message, load_label_info_types
from csk_ros.logic.pairing import stamp_seconds
from csk_ros.logic.transport import TransportCheck, active_profile
from csk_ros.node_parameters import config_after, current_values, declare_all
from csk_ros.node_worker import FrameWorker
from csk_ros.pipeline import IrJob, SegmentationPipeline
from csk_ros.points_output import PointsOutput
from csk_ros.registration_watch import RegistrationWatch
from csk_ros.service_host import ServiceHost

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
STARTUP_ERRORS = (ValueError, BundleError, OSError, RuntimeError)  # a bad config or bundle: one line, not a trace
HEALTH_WATCH_PERIOD_S = 0.05  # how often the alarms are checked, so an error is published at once
ALARM_REPUBLISH_S = 0.2  # the fastest an alarm change re-publishes /diagnostics


class StartupError(RuntimeError):
    """configure failed while the node starts itself (lifecycle: false): main() prints it and exits 2."""


class SegmentNode(FrameWorker, LifecycleNode):
    """The wiring around `SegmentationPipeline`: parameters, lifecycle, subscriptions, publishers, timers, the
    worker and the model swap."""

    def __init__(self, **node_kwargs):
        super().__init__("segment_node", **node_kwargs)
        declare_all(self)
        self.lock = threading.Condition()
        self.frame_lock = threading.Lock()  # held by the worker for one frame: a model swap waits for it
        self.reload_lock = threading.Lock()  # one ~/reload_model at a time
        self.core: SegmentationPipeline | None = None
        self.config = None
        self.points: PointsOutput | None = None
        self.registration: RegistrationWatch | None = None
        self.worker: threading.Thread | None = None
        self.pending: IrJob | None = None
        self.running = False
        self.active = False
        self.inputs, self.outputs, self.active_timers = [], [], []
        self.configure_error = ""
        self.last_diag_wall = 0.0
        self.label_info_status = "not published"
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # reports every state
        self.diag_timer = self.create_timer(float(self.get_parameter("diagnostics_period_s").value),
                                            self._on_diagnostics)
        self.service_host = ServiceHost(self.context, self.resolve_service_name("~/reload_model"),
                                        self._on_reload_model)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if not self.get_parameter("lifecycle").value:
            if self.trigger_configure() != SUCCESS or self.trigger_activate() != SUCCESS:
                self.service_host.close()
                raise StartupError(self.configure_error or "activate failed")

    # ------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters and load the bundle; on failure stay unconfigured and say why."""
        try:
            config = build_config(current_values(self))
            segmenter = load_configured(config, log=self.get_logger().warning)
        except STARTUP_ERRORS as exc:
            self.configure_error = str(exc)
            if self.get_parameter("lifecycle").value:  # else main() prints it: one line, then exit 2
                self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.config, self.configure_error = config, ""
        self.core = SegmentationPipeline(config, segmenter,
                                         log=lambda m: self.get_logger().warning(m, throttle_duration_sec=5.0))
        self.transport = TransportCheck(active_profile())
        self._create_publishers()
        if config.publish_points:  # without it: no depth subscription, no per-frame cost
            self.points = PointsOutput(config.depth_min_m, config.depth_max_m, config.sync_slop_s,
                                       self.core.clock_jump_s, self.lock, self.get_logger())
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._create_subscriptions()
        period = self.config.diagnostics_period_s
        self.active_timers = [self.create_timer(min(HEALTH_WATCH_PERIOD_S, period), self._watch_errors)]
        self.running = self.active = True
        self.registration = RegistrationWatch(self.config.registration_period_s, self.config.registration_warn_px,
                                              self.config.homography,
                                              log=lambda m: self.get_logger().warning(m, throttle_duration_sec=30.0))
        self.worker = threading.Thread(target=self._work, name="csk_inference", daemon=True)
        self.worker.start()
        with self.lock:
            self._publish_mode(self.core.startup_announcement(self._ros_now()))
        cfg, segmenter = self.config, self.core.segmenter
        bundle, info = segmenter.bundle, segmenter.info
        self.get_logger().info(
            f"loaded bundle {bundle.root} ({bundle.height}x{bundle.width}, graphs {sorted(bundle.graphs)}) on "
            f"{segmenter.backend_name} {info.get('providers', '')}; subscribed to "
            f"{self.input_topics['eo']} ({cfg.eo_transport}) and {self.input_topics['ir']} ({cfg.ir_transport}), "
            f"qos {cfg.qos}" + (f"; ~/points from {self.input_topics['depth']} and {self.input_topics['camera_info']}"
                                if self.points is not None else "") + f"; DDS {self.transport.profile.describe()}")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("deactivated: no masks until activate (the bundle stays loaded)")
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()  # back to unconfigured with nothing held
        return SUCCESS

    def lifecycle_state(self) -> str:
        return "active" if self.active else "inactive" if self.core is not None else "unconfigured"

    def _stop_processing(self) -> None:
        """Subscriptions, timers and the worker go; the model and the publishers stay."""
        self.active = False
        for sub in self.inputs:
            self.destroy_subscription(sub)
        for timer in self.active_timers:
            self.destroy_timer(timer)
        self.inputs, self.active_timers = [], []
        if self.registration is not None:
            self.registration.stop()
            self.registration = None
        with self.lock:
            self.running = False
            self.pending = None
            self.lock.notify_all()
        if self.worker is not None:
            self.worker.join(timeout=10.0)
            if self.worker.is_alive():  # an inference still running: let process exit reclaim the backend
                self.get_logger().warning("inference worker did not stop within 10 s")
                return
            self.worker = None

    def _release_model(self) -> None:
        for pub in self.outputs:
            self.destroy_publisher(pub)
        self.outputs = []
        if self.core is not None and self.worker is None:
            self.core.segmenter.close()
        self.core, self.points = None, None

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

    # ------------------------------------------------------------ live parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        """`ros2 param set` on a live parameter: validated by the start-up rules, then applied to the next frame.
        (rclpy refuses the read-only ones itself, before this runs.)"""
        changes = {p.name: p.value for p in params}
        try:
            config = config_after(self, changes, configured=self.core is not None)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if config is not None:
            self._apply_live(config, changes)
        elif "diagnostics_period_s" in changes:
            self._restart_diagnostics_timer(float(changes["diagnostics_period_s"]))
        return SetParametersResult(successful=True)

    def _apply_live(self, config, changes: dict) -> None:
        old = self.config
        with self.lock:
            self.config = config
            self.core.apply_config(config)
        if self.registration is not None:
            self.registration.configure(config.registration_period_s, config.registration_warn_px, config.homography)
        if config.diagnostics_period_s != old.diagnostics_period_s:
            self._restart_diagnostics_timer(config.diagnostics_period_s)
        if (config.confidence_threshold, config.low_confidence_policy) != (old.confidence_threshold,
                                                                           old.low_confidence_policy):
            self._publish_labels()  # the threshold and policy are part of ~/classes and ~/label_info
        applied = ", ".join(f"{name}={value!r}" for name, value in sorted(changes.items()))
        self.get_logger().info(f"parameters set: {applied}" + (
            " (model_dir is loaded by ~/reload_model)" if "model_dir" in changes else ""))

    def _restart_diagnostics_timer(self, period: float) -> None:
        self.destroy_timer(self.diag_timer)
        self.diag_timer = self.create_timer(period, self._on_diagnostics)

    # ------------------------------------------------------------ model swap
    def _on_reload_model(self, request, response):
        """Load the bundle at model_dir beside the running one, prove it, swap it in between two frames.
        A bad bundle leaves the old model serving and the answer says why."""
        if self.core is None:
            response.success, response.message = False, "not configured: nothing to reload (configure first)"
            return response
        if not self.reload_lock.acquire(blocking=False):
            response.success, response.message = False, "a reload is already in progress"
            return response
        try:
            t0 = time.monotonic()
            old_root = self.core.segmenter.bundle.root
            try:
                config = build_config(current_values(self))
                segmenter = load_checked(config, log=self.get_logger().warning)
            except STARTUP_ERRORS as exc:
                self.get_logger().error(f"~/reload_model refused, still serving {old_root}: {exc}")
                response.success, response.message = False, f"kept {old_root}: {exc}"
                return response
            with self.frame_lock, self.lock:  # between two frames
                old = self.core.swap_segmenter(segmenter)
                self.config = config
                self.transport.sizes.pop("~/mask", None)  # output sizes are re-checked on the next mask
            change = describe_change(old, segmenter)
            old.close()
            if change.classes_changed:
                self._publish_labels()
            bundle = segmenter.bundle
            response.success = True
            response.message = (f"serving {bundle.root} ({bundle.height}x{bundle.width}, {len(bundle.class_names)} "
                                f"classes{', classes changed' if change.classes_changed else ''}) on "
                                f"{segmenter.backend_name}, loaded in {time.monotonic() - t0:.2f} s")
            self.get_logger().info(f"~/reload_model: {response.message}")
            return response
        finally:
            self.reload_lock.release()

    # ---------------------------------------------------------------- clocks
    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _clock_reset(self) -> None:
        """The core reset its time-keyed buffers (clock jumped back): drop what the node holds too."""
        if self.points is not None:
            self.points.reset()
        self.pending = None

    # ------------------------------------------------------------- callbacks
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

    # ------------------------------------------------------------ mode/diag
    def _publish_mode(self, announcement) -> None:
        if announcement is None:
            return
        self.pub_mode.publish(String(data=self.core.mode_json(announcement)))
        self.get_logger().info(f"mode -> {announcement.mode} ({announcement.reason})")

    def _watch_errors(self) -> None:
        """Publish /diagnostics at once when an alarm (IR stale, transport loss) starts or ends, not at the next
        tick; at most every ALARM_REPUBLISH_S so a loss fraction hovering at the limit cannot flood the topic."""
        with self.lock:
            alarms = self.core.alarms(self._ros_now())
        if alarms != self.core.alarms_published and time.monotonic() - self.last_diag_wall >= ALARM_REPUBLISH_S:
            self._on_diagnostics()

    def _on_diagnostics(self) -> None:
        now_ros, wall = self._ros_now(), time.monotonic()
        state = self.lifecycle_state()
        if state != "active":
            level, message, values = self._idle_diagnostics(state)
        else:
            cfg = self.config
            context = {"label_info": self.label_info_status, "publish_points": str(cfg.publish_points).lower(),
                       "lifecycle_state": state, **self.transport.diagnostics()}
            registration, warning = self.registration.diagnostics(wall)
            with self.lock:
                points = self.points
                extra = {**(points.diagnostics() if points is not None else {}), **registration}
                level, message, values, announcement = self.core.diagnostics(
                    now_ros, wall, context, extra, (warning,), points.rejected if points is not None else None)
                self._publish_mode(announcement)
                self.last_diag_wall = wall
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=str(self.get_parameter("hardware_id").value),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    def _idle_diagnostics(self, state: str) -> tuple[int, str, dict[str, str]]:
        """A lifecycle node that is not active publishes no masks on purpose: OK, unless configure failed."""
        values = {"lifecycle_state": state, "mode": "inactive"}
        if self.core is not None:
            values["bundle"] = str(self.core.segmenter.bundle.root)
        if self.configure_error:
            values["configure_error"] = self.configure_error
            return DiagnosticStatus.ERROR[0], f"configure failed: {self.configure_error}", values
        return DiagnosticStatus.OK[0], f"{state} (lifecycle): no masks until activated", values

    def shutdown(self) -> None:
        """Clean from every state: stop the worker, free the model."""
        self._stop_processing()
        self._release_model()


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        node = SegmentNode()
    except STARTUP_ERRORS as exc:
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
    except Exception:
        # SIGTERM / SIGINT shut the context down between the executor's check and its next wait: rclpy then
        # raises RCLError ("context is not valid") instead of ExternalShutdownException. A stop, not a crash.
        if node.context.ok():
            raise
    finally:
        # `ros2 launch` forwards a second SIGINT after the terminal's: it must
        # not interrupt the cleanup and turn a clean stop into a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node.shutdown()
        node.service_host.close()
        # The executor's SIGINT guard must go while the context is alive: left to the garbage collector
        # after try_shutdown, rclpy 7.1 (Jazzy) prints "Exception ignored in Executor.__del__" on exit.
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
