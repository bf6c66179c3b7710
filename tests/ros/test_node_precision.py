"""The node's `precision: int8` over real ROS 2: the bundle's accuracy-gated INT8 Q/DQ graphs run on ONNX
Runtime and give a mask per IR frame; diagnostics say which precision and graph files serve."""

import json
import time

from csk_ros.bundle import load_manifest
from engines.quantize import quantize_bundle
from harness.stream_client import Driver, start_node, stop_node
from tests.support.node_harness import FAST, Camera


def test_int8_node_serves_the_quantised_graphs(bundle_copy, ros_env):
    quantize_bundle(bundle_copy, num_images=8, val_images=4, log=lambda *_: None)
    proc = start_node(bundle_copy, ros_env, dict(FAST, precision="int8"))
    d = Driver()
    try:
        assert d.wait_for_subscribers(40), stop_node(proc)
        cam = Camera(d)
        cam.run(20)
        assert d.wait_for(lambda: len(d.masks) >= 20, 10), len(d.masks)
        time.sleep(0.3)
        diag = d.latest_diagnostic()
        assert diag["precision"] == "int8"
        info = json.loads(diag["backend_info"])
        quantized = load_manifest(bundle_copy).quantized
        assert info["graph_files"] == {g: quantized[g].path.name for g in ("fused", "ir_only")}
        assert all(".int8." in name for name in info["graph_files"].values())
        assert int(diag["masks_fused"]) > 0 and int(diag.get("inference_errors", 0)) == 0
    finally:
        d.close()
        log = stop_node(proc)
    assert "Traceback" not in log, log
