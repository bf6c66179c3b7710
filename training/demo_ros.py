"""The ROS 2 half of `make demo`: serve the freshly exported bundle with the
real segment node and stream synthetic test scenes to it over loopback, with
the colour camera failing half-way. Reports the node's mode timeline and the
mIoU of the masks it published, per phase (EO alive / EO dead)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from csk_ros.imaging.frames import resize_nearest
from csk_ros.logic.pairing import stamp_seconds
from harness.stream_client import Driver, loopback_ros_env, start_node, stop_node

from .data import generate_sample
from .metrics import confusion_matrix, summarize


def stream_and_score(bundle: Path, data_cfg: dict, class_names, seconds_per_phase: float = 4.0,
                     rate_hz: float = 10.0, upscale: int = 2) -> dict:
    env = loopback_ros_env()
    size = tuple(data_cfg.get("size", (96, 128)))
    proc = start_node(bundle, env, {"qos": "reliable", "health.recover_frames": 5, "diagnostics_period_s": 0.5})
    driver = None
    sent = {}  # stamp -> (label, phase)
    try:
        driver = Driver()
        if not driver.wait_for_subscribers(60):
            raise RuntimeError(f"segment node did not come up:\n{stop_node(proc)[-3000:]}")
        frames = int(seconds_per_phase * rate_hz)
        for k in range(2 * frames):
            phase = "eo_alive" if k < frames else "eo_dead"
            s = generate_sample(k % 64, "test", int(data_cfg.get("seed", 0)), size)
            big = (size[1] * upscale, size[0] * upscale)
            t = time.time()
            if phase == "eo_alive":
                driver.pub_eo.publish(driver.image(cv2.resize(s["eo"], big), "rgb8", t, "eo_optical"))
            driver.pub_ir.publish(driver.image(cv2.resize(s["ir"], big), "mono8", t, "ir_optical"))
            sent[round(t, 6)] = (s["label"], phase)
            time.sleep(1.0 / rate_hz)
        driver.wait_for(lambda: len(driver.masks) >= len(sent), 5)
        with driver.lock:
            masks = list(driver.masks)
        modes = driver.mode_payloads()
        diag = driver.latest_diagnostic() or {}
    finally:
        if driver is not None:
            driver.close()
        stop_node(proc)
    n = len(class_names)
    confusion = {"eo_alive": np.zeros((n, n), np.int64), "eo_dead": np.zeros((n, n), np.int64)}
    for _, msg in masks:
        stamp = round(stamp_seconds(msg.header.stamp), 6)
        if stamp not in sent:
            continue
        label, phase = sent[stamp]
        mask = resize_nearest(np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width), label.shape)
        confusion[phase] += confusion_matrix(torch.from_numpy(mask), torch.from_numpy(label), n).numpy()
    t0 = min(sent)
    return {
        "frames_sent": len(sent), "masks_received": len(masks),
        "timeline": [(round(m["since"] - t0, 2), m["mode"], m["reason"]) for m in modes if m["since"] >= t0 - 5],
        "miou": {phase: summarize(cm, class_names)["miou"] for phase, cm in confusion.items()},
        "backend": diag.get("backend"), "overhead_ms_p50": diag.get("overhead_ms_p50"),
        "inference_ms_p50": diag.get("inference_ms_p50"),
    }
