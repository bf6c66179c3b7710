"""The node tells which DDS profile it runs on, and WARNs once when its messages do not fit the
shared-memory segment (the field defect: started without the launch file, a 4.9 MB cloud reached a
SensorData subscriber 1 time in 40 and nothing said why)."""

import time

import numpy as np

from csk_ros.tools.dds_profile import ENV_VARS, environment_for, shipped_profile
from harness.stream_client import Driver, scene, start_node, stop_node
from tests.support.node_harness import FAST


def run_node(bundle, env, frames=4):
    proc = start_node(bundle, env, FAST)
    driver = Driver()
    try:
        assert driver.wait_for_subscribers(40), stop_node(proc)
        for _ in range(frames):
            t = time.time()
            eo, ir = scene(480, 640, t)
            driver.pub_eo.publish(driver.image(eo, "rgb8", t, "eo"))
            driver.pub_ir.publish(driver.image(ir, "mono8", t, "ir"))
            time.sleep(0.1)
        assert driver.wait_for(lambda: len(driver.masks) >= 1, 15)
        assert driver.wait_for(lambda: "dds_over_segment" in (driver.latest_diagnostic() or {}), 5)
        time.sleep(0.5)
        diag = driver.latest_diagnostic()
    finally:
        driver.close()
        log = stop_node(proc)
    assert "Traceback" not in log, log
    return diag, log


def test_without_a_profile_the_node_warns_once_with_the_sizes_and_the_fix(tiny_bundle, ros_env):
    env = {k: v for k, v in ros_env.items() if k not in ENV_VARS}
    diag, log = run_node(tiny_bundle, env)
    warnings = [line for line in log.splitlines() if "exceed" in line]
    # once per message: the first mask's warning names what is over by then; a message first seen later
    # (EO arriving after IR) gets its own line, and nothing is named twice
    assert 1 <= len(warnings) <= 2, log
    for name in ("/eo/image 900 KB", "~/colored_mask 900 KB", "~/overlay 900 KB"):
        assert sum(name in line for line in warnings) == 1, (name, log)
    assert all("segment.launch.py" in line and "dds_env.sh" in line for line in warnings)
    assert diag["dds_profile"].startswith("none") and "/eo/image 921600" in diag["dds_over_segment"]
    assert "DDS none" in log  # the start-up line says which profile


def test_with_the_shipped_profile_nothing_to_warn(tiny_bundle, ros_env):
    env = {k: v for k, v in ros_env.items() if k not in ENV_VARS}
    env.update({k: v for k, v in environment_for(str(shipped_profile())).items() if v is not None})
    diag, log = run_node(tiny_bundle, env)
    assert "exceed" not in log, log
    assert diag["dds_profile"].startswith("shipped") and diag["dds_over_segment"] == "none"
    assert np.isfinite(float(diag["ir_rate_hz"]))
