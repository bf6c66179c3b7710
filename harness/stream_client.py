"""Drive a segment_node process over real ROS 2: start it, publish EO/IR
streams (and /clock), record masks, modes and diagnostics.

Used by the integration tests, the latency benchmark and `make demo`. The
caller provides the ROS environment (loopback-only discovery, domain id, log
dir: see scripts/isolated_ros.sh); nothing here widens it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def loopback_ros_env() -> dict:
    """Force loopback-only DDS discovery for this process and its children and
    give the run its own domain id and log dir unless the caller chose them.
    Call before rclpy.init. Returns the environment to pass to subprocesses."""
    import random
    import tempfile

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="csk_ros_log_"))
    return dict(os.environ)


def start_node(bundle: Path, env: dict, params: dict | None = None, name_args: tuple = ()) -> subprocess.Popen:
    """The node as `python -m csk_ros.segment_node` with the shipped params file plus overrides."""
    cmd = [sys.executable, "-m", "csk_ros.segment_node", "--ros-args", "--params-file",
           str(ROOT / "config" / "segment.yaml"), "-p", f"model_dir:={bundle}"]
    for key, value in (params or {}).items():
        cmd += ["-p", f"{key}:={json.dumps(value)}"]  # JSON is valid YAML for every value type
    cmd += list(name_args)
    # Output goes to a file, not a pipe: a pipe nobody drains fills up and
    # blocks the node's logging (and with it its executor) on long runs.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.log_file = log
    return proc


def node_output(proc: subprocess.Popen) -> str:
    """Everything the node printed so far."""
    proc.log_file.flush()
    proc.log_file.seek(0)
    return proc.log_file.read()


def stop_node(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGINT the node's process group (SIGKILL after `timeout`); return its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return node_output(proc)


class Driver:
    """Client node: publishes EO/IR (and /clock), records masks, modes, diagnostics."""

    def __init__(self, node_name: str = "segment_node", sim_time: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.rclpy = rclpy
        self.node_name = node_name
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("csk_test_driver", context=self.context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_eo = self.node.create_publisher(Image, "eo/image", qos)
        self.pub_ir = self.node.create_publisher(Image, "ir/image", qos)
        self.pub_clock = self.node.create_publisher(Clock, "/clock", 10)
        self.masks, self.confidences, self.modes, self.diagnostics = [], [], [], []
        self.lock = threading.RLock()  # predicates passed to wait_for re-enter it

        def keep(store):
            def callback(msg):
                with self.lock:
                    store.append((time.time(), msg))  # wall clock, comparable to the stamps we send
            return callback

        self.node.create_subscription(Image, f"/{node_name}/mask", keep(self.masks), qos)
        self.node.create_subscription(Image, f"/{node_name}/confidence", keep(self.confidences), qos)
        self.node.create_subscription(String, f"/{node_name}/mode", keep(self.modes), QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", keep(self.diagnostics), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self.context.ok():
                    raise
                return

    def close(self):
        self.rclpy.shutdown(context=self.context)  # ends the spin thread's loop first
        self.thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()

    # ------------------------------------------------------------ publishing
    @staticmethod
    def image(array: np.ndarray, encoding: str, stamp: float, frame_id: str):
        from std_msgs.msg import Header

        from csk_ros.imaging.ros_image import array_to_image

        header = Header(frame_id=frame_id)
        header.stamp.sec = int(stamp)
        header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9)) % 1_000_000_000
        return array_to_image(array, encoding, header)

    def publish_clock(self, t: float):
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = int(t), int(round((t - int(t)) * 1e9)) % 1_000_000_000
        self.pub_clock.publish(msg)

    def wait_for(self, predicate, timeout: float, poll: float = 0.02) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate():
                    return True
            time.sleep(poll)
        with self.lock:
            return predicate()

    def wait_for_subscribers(self, timeout: float = 20.0) -> bool:
        """Until the node subscribes to our inputs and we see its outputs (both directions matched)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (self.pub_ir.get_subscription_count() and self.pub_eo.get_subscription_count()
                    and self.node.count_publishers(f"/{self.node_name}/mask")
                    and self.node.count_publishers(f"/{self.node_name}/mode")):
                time.sleep(0.3)  # let the reliable readers finish matching
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------ services
    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """One service call (lifecycle, parameters, ~/reload_model); the spin thread completes the future."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"no service {name}")
            future = client.call_async(request)
            if not self.wait_for(future.done, timeout):
                raise TimeoutError(f"{name} did not answer within {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def transition(self, transition_id: int) -> bool:
        """ChangeState on the node (lifecycle_msgs.msg.Transition ids); True on success."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, f"/{self.node_name}/change_state", request).success

    def lifecycle_state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"/{self.node_name}/get_state", GetState.Request()).current_state.label

    def set_parameters(self, values: dict) -> list:
        """SetParameters results (successful, reason), one per name."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return self.call(SetParameters, f"/{self.node_name}/set_parameters", request).results

    def reload_model(self):
        from std_srvs.srv import Trigger

        return self.call(Trigger, f"/{self.node_name}/reload_model", Trigger.Request(), timeout=60.0)

    def mode_payloads(self) -> list[dict]:
        with self.lock:
            return [json.loads(m.data) for _, m in self.modes]

    def latest_diagnostic(self) -> dict | None:
        with self.lock:
            if not self.diagnostics:
                return None
            status = self.diagnostics[-1][1].status[0]
        return {"level": (int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                          else int(status.level)),
                "message": status.message, **{kv.key: kv.value for kv in status.values}}


class PairStream(threading.Thread):
    """Publishes the (EO rgb8, IR mono8) pairs of `frames` (any iterator) at `rate_hz` on a thread, one wall-clock
    stamp per pair, and keeps every stamp it sent. Ends when `frames` does or at close()."""

    def __init__(self, driver: Driver, frames, rate_hz: float):
        super().__init__(daemon=True)
        self.driver, self.frames, self.period = driver, frames, 1.0 / rate_hz
        self.sent: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        next_t = time.monotonic()
        for eo, ir in self.frames:
            if self.stopping.is_set():
                return
            t = time.time()
            self.driver.pub_eo.publish(self.driver.image(eo, "rgb8", t, "eo_optical"))
            self.driver.pub_ir.publish(self.driver.image(ir, "mono8", t, "ir_optical"))
            self.sent.append(t)
            next_t += self.period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self.stopping.set()
        self.join()


def scene(height: int, width: int, t: float, dark: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A moving, noisy day scene (never frozen, never dark unless `dark` < 1)."""
    rng = np.random.default_rng(int(t * 1000) % (2 ** 31))
    yy, xx = np.mgrid[0:height, 0:width]
    base = (128 + 60 * np.sin(xx / 7.0 + t * 3) * np.cos(yy / 9.0)).astype(np.float32)
    eo = np.stack([base, base * 0.8 + 30, 255 - base], axis=-1) + rng.normal(0, 4, (height, width, 3))
    eo = np.clip(eo * dark, 0, 255).astype(np.uint8)
    ir = np.clip(base * 0.7 + 40 + rng.normal(0, 3, (height, width)), 0, 255).astype(np.uint8)
    return eo, ir
