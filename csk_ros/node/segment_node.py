"""The segment node (DESIGN contracts 4, 5): EO+IR segmentation with IR-only fallback, as a ROS 2 lifecycle node.

The per-frame rules (decoding, EO health, pairing, loss, inference with fallback, ~/mode, /diagnostics
values) live in the ROS-free `csk_ros.pipeline.SegmentationPipeline`, which `python -m csk_ros.bag` drives
too. `SegmentNode` is the wiring around it: parameters, the lifecycle, the threads and the live changes; each
of its other parts is a module of csk_ros/node/ with one job (see csk_ros/node/__init__.py).

Run: `ros2 launch csk_ros segment.launch.py`, `ros2 run csk_ros segment_node` or, without `launch`,
`python -m csk_ros.segment_node --ros-args --params-file config/segment.yaml`.

Threads: the executor thread only decodes messages, feeds the core and publishes diagnostics
(csk_ros/node/inputs.py, diagnostics.py). Inference runs on one worker thread that always takes the freshest
IR frame (older pending frames are dropped and counted, never queued), pairs it with the EO frame nearest in
stamp (waiting at most `sync_slop_s` for a late one, and not at all while the health monitor has given EO up
or a newer IR frame is pending), and publishes the mask with the IR frame's header (csk_ros/node/worker.py).
Two more threads: ~/reload_model's (service_host.py, model_swap.py) and the registration check's
(registration_watch.py).
"""

from __future__ import annotations

import signal
import sys
import threading

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from csk_ros.backends import load_configured
from csk_ros.logic.config import build_config
from csk_ros.logic.transport import TransportCheck, active_profile
from csk_ros.node.diagnostics import NodeDiagnostics
from csk_ros.node.inputs import FrameInputs
from csk_ros.node.model_swap import STARTUP_ERRORS, ModelSwap
from csk_ros.node.outputs import NodeOutputs
from csk_ros.node.parameters import config_after, current_values, declare_all
from csk_ros.node.points_output import PointsOutput
from csk_ros.node.registration_watch import RegistrationWatch
from csk_ros.node.service_host import ServiceHost
from csk_ros.node.worker import FrameWorker
from csk_ros.pipeline import IrJob, SegmentationPipeline

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class StartupError(RuntimeError):
    """configure failed while the node starts itself (lifecycle: false): main() prints it and exits 2."""


class SegmentNode(FrameInputs, FrameWorker, NodeOutputs, NodeDiagnostics, ModelSwap, LifecycleNode):
    """The wiring around `SegmentationPipeline`: parameters, lifecycle, threads, live changes. The mixins
    bring the subscriptions and their callbacks (FrameInputs), the inference thread (FrameWorker), the
    publishers (NodeOutputs), /diagnostics (NodeDiagnostics) and ~/reload_model (ModelSwap); they share the
    state set up here, under `lock`."""

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
        self.label_info_status = "not published"
        self._start_diagnostics()
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
        self.active_timers = [self._create_alarm_watch()]
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
        self._destroy_publishers()
        if self.core is not None and self.worker is None:
            self.core.segmenter.close()
        self.core, self.points = None, None

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

    # ------------------------------------------------------------ clock, stop
    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

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
