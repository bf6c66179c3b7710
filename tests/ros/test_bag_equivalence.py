"""The live node and `python -m csk_ros.bag segment` are one pipeline: the same frames give the same masks,
confidences and ~/mode sequence.

The live side runs on sim time: the driver publishes /clock = t, then the EO and IR frames stamped t, and
records the same messages into a bag with log time t. So the node's clock at each arrival is the bag's
log time, and both shells see the same times (on wall-clock time they would differ by the transport's
jitter, and a frame on a timeout's boundary could fall either way). Reliable QoS and 10 Hz pacing: the
node drops nothing (checked)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import yaml

from csk_ros.bag.__main__ import main as bag_main
from csk_ros.bag.bagio import IMAGE, MessageFactory, Topics, atomic_writer
from harness.stream_client import Driver, scene, start_node, stop_node
from tests.support.bags import read_bag
from tests.support.node_harness import FAST, H, W

pytestmark = pytest.mark.slow

PERIOD_S = 0.1
# healthy, EO outage (IR only), recovery, dark EO, healthy again
SCRIPT = [("healthy", 25), ("eo_off", 15), ("healthy", 25), ("dark", 12), ("healthy", 20)]
PARAMS = dict(FAST, use_sim_time=True)


def stamp_ns(t: float) -> int:
    return int(round(t * 1e9))


def test_live_node_and_bag_segment_agree_frame_for_frame(tiny_bundle, ros_env, tmp_path):
    factory = MessageFactory()
    proc = start_node(tiny_bundle, ros_env, PARAMS)
    driver = Driver()
    recorded = []  # (topic, message, log time ns)
    try:
        assert driver.wait_for_subscribers(40), stop_node(proc)
        t = 2000.0
        for phase, frames in SCRIPT:
            for _ in range(frames):
                t = round(t + PERIOD_S, 6)
                eo, ir = scene(H, W, t, dark=0.03 if phase == "dark" else 1.0)
                driver.publish_clock(t)
                time.sleep(0.01)  # the node's clock has moved to t before the frames arrive
                if phase != "eo_off":
                    driver.pub_eo.publish(driver.image(eo, "rgb8", t, "eo_optical"))
                    recorded.append(("/eo/image", factory.image(eo, "rgb8", factory.header(stamp_ns(t), "eo_optical")),
                                     stamp_ns(t)))
                driver.pub_ir.publish(driver.image(ir, "mono8", t, "ir_optical"))
                recorded.append(("/ir/image", factory.image(ir, "mono8", factory.header(stamp_ns(t), "ir_optical")),
                                 stamp_ns(t)))
                time.sleep(PERIOD_S - 0.01)
        n_ir = sum(frames for _, frames in SCRIPT)
        assert driver.wait_for(lambda: len(driver.masks) >= n_ir and len(driver.confidences) >= n_ir, 20), \
            f"{len(driver.masks)} of {n_ir} masks"
        time.sleep(0.5)
        with driver.lock:
            live_masks = {stamp_ns(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9): m for _, m in driver.masks}
            live_conf = {stamp_ns(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9): m
                         for _, m in driver.confidences}
        live_modes = [(p["mode"], p["reason"]) for p in driver.mode_payloads()]
        diag = driver.latest_diagnostic()
    finally:
        driver.close()
        log = stop_node(proc)
    assert "Traceback" not in log, log
    assert diag.get("ir_dropped", "0") == "0", "the live node dropped frames: the comparison needs all of them"

    bag, out = tmp_path / "recording", tmp_path / "segmented"
    with atomic_writer(bag) as writer:
        topics = Topics(writer, factory)
        for topic, msg, log_time in recorded:
            topics.write(topic, IMAGE, msg, log_time)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {k: v for k, v in PARAMS.items()
                                                                 if k not in ("use_sim_time",)}}}))
    assert bag_main(["segment", str(bag), str(out), "--bundle", str(tiny_bundle), "--params", str(params),
                     "--quiet"]) == 0
    offline = read_bag(out)
    off_masks = {stamp_ns(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9): m
                 for _, m in offline["/segment_node/mask"]}
    off_conf = {stamp_ns(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9): m
                for _, m in offline["/segment_node/confidence"]}
    off_modes = [(p["mode"], p["reason"]) for p in (json.loads(m.data) for _, m in offline["/segment_node/mode"])]

    assert sorted(off_masks) == sorted(live_masks) and len(off_masks) == n_ir
    for stamp in live_masks:
        assert np.array_equal(np.asarray(off_masks[stamp].data), np.frombuffer(bytes(live_masks[stamp].data),
                                                                                np.uint8)), stamp
        assert np.array_equal(np.asarray(off_conf[stamp].data), np.frombuffer(bytes(live_conf[stamp].data),
                                                                               np.uint8)), stamp

    # Before its first frame the live node may announce no_input more than once (how long it waited for
    # a stream is not in the recording); from the first frame on the sequences are the same.
    def from_first_frame(modes):
        return modes[next(i for i, (mode, _) in enumerate(modes) if mode != "no_input"):]

    assert from_first_frame(off_modes) == from_first_frame(live_modes), (off_modes, live_modes)
    reasons = {reason for _, reason in off_modes}
    assert {"eo_healthy", "eo_dark"} <= reasons and "eo_stale" in reasons, off_modes
