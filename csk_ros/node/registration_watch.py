"""The node's background registration check: every `registration.check_period_s` it scores the current
homography on the latest fused frame pair, on its own thread, never on the inference path.

The worker only hands over references to the pair it just used (`offer`); the check runs at a low rate on
the newest one and keeps its verdict in a RegistrationHealth. ROS-free, so it is unit-tested without a node.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from csk_ros.imaging.registration import check_registration
from csk_ros.logic.registration_health import RegistrationHealth


class RegistrationWatch:
    def __init__(self, period_s: float, warn_px: float, homography: np.ndarray | None, log=None):
        self.period_s, self.homography = period_s, homography
        self.health = RegistrationHealth(warn_px)
        self.log = log or (lambda message: None)
        self.lock = threading.Lock()
        self.latest: tuple[np.ndarray, np.ndarray] | None = None
        self.stopping = threading.Event()
        self.cpu_s = 0.0
        self.started_wall = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="csk_registration", daemon=True)
        if period_s > 0:
            self.thread.start()

    def offer(self, eo: np.ndarray, ir: np.ndarray) -> None:
        """The worker's last fused pair (EO as decoded, IR at its size): a reference, no copy."""
        self.latest = (eo, ir)

    def configure(self, period_s: float, warn_px: float, homography: np.ndarray | None) -> None:
        """Live parameters; a new homography restarts the verdict."""
        with self.lock:
            changed = not _same(homography, self.homography)
            self.period_s, self.health.warn_px, self.homography = period_s, warn_px, homography
            if changed:
                self.health.reset()
        if period_s > 0 and not self.thread.is_alive() and not self.stopping.is_set():
            self.thread = threading.Thread(target=self._run, name="csk_registration", daemon=True)
            self.thread.start()

    def check_once(self) -> bool:
        """Score the newest pair, if one arrived since the last check; True when it ran."""
        pair, self.latest = self.latest, None
        if pair is None:
            return False
        with self.lock:
            homography = self.homography
        t0 = time.thread_time()
        check = check_registration(pair[0], pair[1], homography)
        cpu_s = time.thread_time() - t0
        with self.lock:
            if _same(homography, self.homography):  # not a result for a homography replaced meanwhile
                self.health.record(check, cpu_s * 1e3)
            self.cpu_s += cpu_s
        return True

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                period = self.period_s
            if period <= 0:
                return
            if self.stopping.wait(period):
                return
            try:
                self.check_once()
            except Exception as exc:  # a check must never take the node down
                self.log(f"registration check failed: {exc}")

    def diagnostics(self, wall: float) -> tuple[dict[str, str], str]:
        """(/diagnostics keys, the WARN line or "")."""
        with self.lock:
            if self.period_s <= 0:
                return {"registration_state": "off"}, ""
            values = self.health.diagnostics()
            elapsed = max(1e-9, wall - self.started_wall)
            values["registration_cpu_percent"] = f"{100 * self.cpu_s / elapsed:.3f}"
            return values, self.health.warning()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
