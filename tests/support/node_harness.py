"""What the real-ROS node tests share: fast health parameters, a camera that remembers what it sent,
and readers of what the node published."""

import time

from csk_ros.logic.pairing import stamp_seconds
from harness.stream_client import scene

H, W = 60, 80  # camera size; the bundle is 48x64, so every frame is resized
PERIOD = 0.05  # 20 Hz
FAST = {"sync_slop_s": 0.02, "health.eo_timeout_s": 0.3, "health.recover_frames": 5, "health.dark_frames": 2,
        "health.frozen_frames": 3, "qos": "reliable", "qos_depth": 20, "diagnostics_period_s": 0.2}


class Camera:
    """Publishes EO/IR pairs with wall-clock stamps and remembers what it sent."""

    def __init__(self, driver, period: float = PERIOD):
        self.d = driver
        self.period = period
        self.ir_stamps, self.eo_times = [], []

    def step(self, eo=True, ir=True, eo_image=None, dark=1.0):
        t = time.time()
        eo_img, ir_img = scene(H, W, t, dark)
        if eo:
            self.d.pub_eo.publish(self.d.image(eo_image if eo_image is not None else eo_img, "rgb8", t, "eo_optical"))
            self.eo_times.append(t)
        if ir:
            self.d.pub_ir.publish(self.d.image(ir_img, "mono8", t, "ir_optical"))
            self.ir_stamps.append(t)
        time.sleep(self.period)
        return t

    def run(self, n, **kw):
        return [self.step(**kw) for _ in range(n)]


def mask_stamps(driver):
    with driver.lock:
        return [stamp_seconds(m.header.stamp) for _, m in driver.masks]


def first_mode(driver, mode, after=0.0, reason=None):
    for p in driver.mode_payloads():
        if p["mode"] == mode and p["since"] >= after and (reason is None or p["reason"] == reason):
            return p
    return None
