"""The node's per-frame core without ROS: frames in with their stamps and times, decisions and images out."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from csk_ros.imaging.ros_image import ImageDecodeError
from csk_ros.logic.mode_report import Announcement
from csk_ros.logic.modes import Mode, Reason
from csk_ros.logic.pairing import PairStatus
from csk_ros.pipeline import IrJob
from harness.stream_client import scene

H, W = 60, 80
PERIOD = 0.1


def header(t: float):
    return SimpleNamespace(stamp=SimpleNamespace(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)) % 10**9),
                           frame_id="ir")


def step(core, t: float, eo=True, dark=1.0):
    """One camera period: EO (optional) then IR at time t, settled at once; returns the frame result and
    the announcements it caused."""
    eo_img, ir_img = scene(H, W, t, dark)
    announcements = [core.startup_announcement(t)] if core.announcer.state is None else []
    if eo:
        core.arrived("eo", t)
        core.eo_frame(header(t), eo_img, t, 0.1)
    core.arrived("ir", t)
    job = IrJob(header(t), ir_img, t, t, t, 0.1)
    core.ir_frame(job, 0.1)
    mode = core.decide(t).mode
    pairing = core.pairing(job, t, mode)
    result = core.infer(job, pairing, core.decide(t))
    announcements.append(core.record(result, t, 0.0))
    return result, [a for a in announcements if a is not None]


def run_frames(core, frames: int, t: float = 100.0):
    """`frames` healthy camera periods from t; (the last period's time, its frame result)."""
    result = None
    for _ in range(frames):
        t += PERIOD
        result, _ = step(core, t)
    return t, result


def test_fused_while_eo_is_healthy_ir_only_when_it_stops_and_back(core):
    t, timeline = 100.0, []
    for k in range(60):
        t += PERIOD
        result, announced = step(core, t, eo=not 20 <= k < 35)
        timeline += [(a.mode, a.reason) for a in announced]
        assert result.mask.shape == (H, W) and result.confidence.dtype == np.uint8  # output_size: ir
    assert timeline[0] == ("no_input", "startup")
    assert ("fused", "eo_healthy") in timeline
    stale = timeline.index(("ir_only", "eo_stale"))
    assert timeline[stale + 1:] == [("fused", "eo_healthy")]  # recovered, once, no flapping
    assert core.counts["masks_fused"] + core.counts["masks_ir_only"] == 60


def test_a_dark_eo_stream_falls_back_with_its_reason(core):
    t = 100.0
    reasons = []
    for k in range(40):
        t += PERIOD
        _, announced = step(core, t, dark=0.02 if k >= 20 else 1.0)
        reasons += [a.reason for a in announced]
    assert reasons[-1] == "eo_dark"


def test_an_undecodable_message_is_counted_by_stream_and_reason(core):
    bad = SimpleNamespace(header=header(1.0), encoding="rgb8", height=4, width=4, step=12, is_bigendian=0,
                          data=b"\x00" * 5)
    with pytest.raises(ImageDecodeError) as err:
        core.decode("eo", bad)
    core.eo_rejected(bad.header, 1.0, err.value)
    level, _, values, _ = core.diagnostics(1.0, 1.0, {})
    assert values["rejected_total"] == "1" and values[f"rejected_eo_{err.value.reason}"] == "1"


def test_an_ir_frame_waits_for_a_late_eo_partner_within_the_slop(core):
    t, _ = run_frames(core, 15)  # EO proves itself first
    t += PERIOD
    _, ir_img = scene(H, W, t)
    job = IrJob(header(t), ir_img, t, t, t, 0.1)
    core.ir_frame(job, 0.1)
    assert core.pairing(job, t, Mode.FUSED).status is PairStatus.WAIT  # the EO of this stamp may still come
    core.eo_frame(header(t), scene(H, W, t)[0], t + 0.01, 0.1)
    assert core.pairing(job, t + 0.01, Mode.FUSED).status is PairStatus.MATCHED


def test_a_backwards_clock_jump_resets_the_time_keyed_state(core):
    t, _ = run_frames(core, 5)
    assert core.check_clock_jump(t - 10.0)
    assert core.counts["clock_resets"] == 1 and len(core.eo_buffer) == 0


def test_nothing_outside_the_enums_is_published(core):
    payload = json.loads(core.mode_json(Announcement(Mode.IR_ONLY, Reason.EO_UNPAIRED, 1.5)))
    assert payload == {"mode": "ir_only", "reason": "eo_unpaired", "since": 1.5, "backend": "onnxruntime"}
    with pytest.raises(ValueError):
        core.mode_json(Announcement("ir_only", "eo_sleepy", 1.5))
    with pytest.raises(ValueError):
        core.mode_json(Announcement("half_fused", "eo_healthy", 1.5))


def test_an_eo_frame_that_cannot_be_registered_falls_back_and_is_counted_once(core):
    t, _ = run_frames(core, 15)  # EO proves itself first
    t += PERIOD
    wide_eo = np.zeros((60, 160, 3), np.uint8)  # 8:3 against IR's 4:3, no eo_to_ir_homography
    _, ir_img = scene(H, W, t)
    core.eo_frame(header(t), wide_eo, t, 0.1)
    job = IrJob(header(t), ir_img, t, t, t, 0.1)
    core.ir_frame(job, 0.1)
    result = core.infer(job, core.pairing(job, t, Mode.FUSED), core.decide(t))
    assert (result.mode, result.reason) == ("ir_only", "eo_size_mismatch")
    assert core.rejected["eo_size_mismatch"] == 0  # infer() runs outside the caller's lock: it counts nothing
    core.record(result, t, 0.0)
    assert core.rejected["eo_size_mismatch"] == 1 and core.counts["frames_eo_size_mismatch"] == 1
