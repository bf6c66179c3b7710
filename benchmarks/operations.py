"""Operations targets of the segment node on real ROS 2 (issue 19): lifecycle timings and the model hot swap.

python benchmarks/operations.py [--bundle DIR] [--swaps 20] [--cycles 5] [--rate 30] [--out JSON]
(under scripts/isolated_ros.sh; it forces loopback-only discovery itself either way)

A camera streams EO+IR at --rate the whole time; the node runs with `lifecycle: true` on reliable input QoS,
and both processes load the shipped Fast DDS profile (config/fastdds_large_frames.xml).
- lifecycle, --cycles times: configure + activate -> first mask (target <= 2 s); deactivate -> the last mask
  (target: within one frame period of the deactivate answer); then cleanup.
- hot swap: --swaps calls of ~/reload_model alternating between two copies of the bundle, one with renamed
  classes, every 0.5 s; every IR frame sent must get its mask (target: none missing).
Without --bundle: the synthetic demo architecture with random weights (the cost of `make demo`'s bundle).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, print_table, summarize_ms, write_json  # noqa: E402
from benchmarks.node_latency import default_bundle  # noqa: E402
from csk_ros.logic.pairing import stamp_seconds  # noqa: E402
from csk_ros.tools.dds_profile import choose_profile, environment_for  # noqa: E402
from harness.stream_client import Driver, PairStream, loopback_ros_env, scene, start_node, stop_node  # noqa: E402


def masks_since(driver: Driver, t_wall: float) -> list[tuple[float, float]]:
    """(receipt wall time, stamp) of the masks received after t_wall."""
    with driver.lock:
        return [(rx, stamp_seconds(m.header.stamp)) for rx, m in driver.masks if rx > t_wall]


def lifecycle_cycles(driver: Driver, cycles: int, period: float) -> list[dict]:
    from lifecycle_msgs.msg import Transition as T

    rows = []
    for _ in range(cycles):
        t0 = time.time()
        assert driver.transition(T.TRANSITION_CONFIGURE), "configure failed"
        t_conf = time.time()
        assert driver.transition(T.TRANSITION_ACTIVATE), "activate failed"
        if not driver.wait_for(lambda: masks_since(driver, t0), 10):
            raise SystemExit("no mask within 10 s of activate")
        first = masks_since(driver, t0)[0][0]
        time.sleep(1.0)
        t_deact = time.time()
        assert driver.transition(T.TRANSITION_DEACTIVATE), "deactivate failed"
        t_answer = time.time()
        time.sleep(5 * period)
        after = masks_since(driver, t_answer)
        last_rx = max((rx for rx, _ in masks_since(driver, t_deact)), default=t_deact)
        assert driver.transition(T.TRANSITION_CLEANUP), "cleanup failed"
        rows.append({"configure_s": t_conf - t0, "configure_activate_to_first_mask_s": first - t0,
                     "masks_after_deactivate_answer": len(after),
                     "last_mask_after_deactivate_request_s": max(0.0, last_rx - t_deact),
                     "deactivate_answer_s": t_answer - t_deact})
    return rows


def hot_swaps(driver: Driver, camera: PairStream, bundles: list[Path], swaps: int) -> dict:
    t_start = time.time()
    time.sleep(1.0)
    answers = []
    for k in range(swaps):
        assert all(r.successful for r in driver.set_parameters({"model_dir": str(bundles[k % 2])}))
        t0 = time.monotonic()
        answer = driver.reload_model()
        answers.append({"success": answer.success, "message": answer.message, "call_s": time.monotonic() - t0})
        time.sleep(0.5)
    t_end = time.time()
    time.sleep(1.0)
    sent = [t for t in camera.sent if t_start + 0.5 < t < t_end]
    got = sorted(st for _, st in masks_since(driver, t_start))
    stamps = {round(s, 6) for s in got}
    missing = [t for t in sent if round(t, 6) not in stamps]
    window = [s for s in got if t_start + 0.5 < s < t_end]
    gaps = [b - a for a, b in zip(window, window[1:])]
    return {"swaps": swaps, "succeeded": sum(a["success"] for a in answers), "ir_frames_sent": len(sent),
            "ir_frames_without_mask": len(missing), "max_mask_stamp_gap_s": max(gaps, default=None),
            "reload_call": summarize_ms([a["call_s"] * 1e3 for a in answers]), "answers": answers[:4]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--swaps", type=int, default=20)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--out", default=str(RESULTS / "operations.json"))
    args = p.parse_args(argv)
    profile, why = choose_profile("auto")
    for name, value in environment_for(profile).items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    env = loopback_ros_env()
    period = 1.0 / args.rate
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else default_bundle(Path(tmp))
        a = Path(shutil.copytree(bundle, Path(tmp) / "a"))
        b = Path(shutil.copytree(bundle, Path(tmp) / "b"))
        manifest = json.loads((b / "manifest.json").read_text())
        manifest["class_names"] = [f"{n}_v2" for n in manifest["class_names"]]
        (b / "manifest.json").write_text(json.dumps(manifest))
        proc = start_node(a, env, {"lifecycle": True, "qos": "reliable", "diagnostics_period_s": 0.5})
        driver = camera = None
        try:
            driver = Driver()
            # pre-rendered, so that the publisher is not what gets measured
            frames = [scene(args.height, args.width, k * 0.1) for k in range(8)]
            camera = PairStream(driver, itertools.cycle(frames), args.rate)
            camera.start()
            cycles = lifecycle_cycles(driver, args.cycles, period)
            from lifecycle_msgs.msg import Transition as T

            assert driver.transition(T.TRANSITION_CONFIGURE) and driver.transition(T.TRANSITION_ACTIVATE)
            swap = hot_swaps(driver, camera, [b, a], args.swaps)
            diag = driver.latest_diagnostic() or {}
        finally:
            if camera is not None:
                camera.close()
            if driver is not None:
                driver.close()
            log = stop_node(proc)
    first = [c["configure_activate_to_first_mask_s"] for c in cycles]
    last = [c["last_mask_after_deactivate_request_s"] for c in cycles]
    result = {
        "bundle": str(bundle), "frame_size": [args.height, args.width], "rate_hz": args.rate,
        "qos": "reliable", "dds_profile": f"{profile or 'Fast DDS defaults'} ({why}), both processes",
        "lifecycle": {"cycles": cycles, "first_mask_median_s": statistics.median(first), "first_mask_max_s": max(first),
                      "last_mask_after_deactivate_max_s": max(last), "frame_period_s": period,
                      "masks_after_deactivate_answer_total": sum(c["masks_after_deactivate_answer"] for c in cycles),
                      "targets": {"first_mask_s": 2.0, "stop_within_s": period}},
        "hot_swap": swap, "node_ir_dropped": diag.get("ir_dropped", "0"), "model_swaps": diag.get("model_swaps"),
        "backend": diag.get("backend"), "node_log_tail": log[-1500:],
    }
    print(f"\nsegment_node operations at {args.width}x{args.height}, {args.rate:g} Hz, reliable QoS, "
          f"{result['dds_profile']}, bundle {bundle} ({result['backend']}):\n")
    print_table(["measure", "value", "target"], [
        ["configure+activate -> first mask, median / max (s)",
         f"{result['lifecycle']['first_mask_median_s']:.2f} / {max(first):.2f}", "<= 2.0"],
        ["deactivate request -> last mask, max (s)", f"{max(last):.3f}", f"<= {period:.3f} (one period)"],
        ["masks after the deactivate answer (all cycles)",
         str(result["lifecycle"]["masks_after_deactivate_answer_total"]), "0"],
        [f"hot swaps succeeded (of {swap['swaps']})", str(swap["succeeded"]), str(swap["swaps"])],
        ["IR frames without a mask during the swaps", f"{swap['ir_frames_without_mask']} of {swap['ir_frames_sent']}",
         "0"],
        ["max gap between mask stamps (s)", f"{swap['max_mask_stamp_gap_s']:.3f}", f"~{period:.3f}"],
        ["~/reload_model call, median / p95 (ms)",
         f"{swap['reload_call']['median_ms']:.0f} / {swap['reload_call']['p95_ms']:.0f}", ""],
    ])
    print(f"\nwrote {write_json(Path(args.out), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
