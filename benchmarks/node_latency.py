"""The segment node on real ROS 2 at 640x480 / 30 Hz: end-to-end latency,
the node's own overhead, drops, CPU time, and the switch latency when EO dies.

python benchmarks/node_latency.py [--bundle DIR] [--seconds 20] [--rate 30] [--out JSON]
(run it under scripts/isolated_ros.sh to keep DDS in a private network namespace;
it forces loopback-only discovery itself either way)

Without --bundle it uses runs/demo/bundle (written by `make demo`) or, if
absent, exports the synthetic demo architecture with random weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, print_table, summarize_ms, write_json  # noqa: E402
from csk_ros.logic.pairing import stamp_seconds  # noqa: E402
from harness.stream_client import Driver, loopback_ros_env, scene, start_node, stop_node  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def default_bundle(work: Path) -> Path:
    demo = ROOT / "runs" / "demo" / "bundle"
    if (demo / "manifest.json").is_file():
        return demo
    from benchmarks.backends import random_checkpoint
    from engines.export import export_bundle

    return export_bundle(random_checkpoint(work / "random.pt"), work / "bundle", log=lambda *_: None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--qos", default="reliable", choices=("reliable", "sensor_data"),
                   help="node input QoS (sensor_data = best effort: large frames may be lost in DDS)")
    p.add_argument("--sync-slop", type=float, help="override the node's sync_slop_s (default: config/segment.yaml)")
    p.add_argument("--out", default=str(RESULTS / "node_latency.json"))
    args = p.parse_args(argv)
    env = loopback_ros_env()
    period = 1.0 / args.rate
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(args.bundle) if args.bundle else default_bundle(Path(tmp))
        params = {"health.eo_timeout_s": 0.5, "diagnostics_period_s": 0.5, "qos": args.qos}
        if args.sync_slop is not None:
            params["sync_slop_s"] = args.sync_slop
        proc = start_node(bundle, env, params)
        driver = None
        try:
            driver = Driver()
            if not driver.wait_for_subscribers(60):
                print(stop_node(proc), file=sys.stderr)
                raise SystemExit("the node did not come up")
            # Pre-render a few frames: the publisher must not be the bottleneck being measured.
            frames = [scene(args.height, args.width, k * 0.1) for k in range(8)]
            sent, cpu0, wall0 = [], cpu_seconds(proc.pid), time.monotonic()
            n = int(args.seconds * args.rate)
            next_t = time.monotonic()
            for k in range(n):
                eo, ir = frames[k % len(frames)]
                t = time.time()
                driver.pub_eo.publish(driver.image(eo, "rgb8", t, "eo_optical"))
                driver.pub_ir.publish(driver.image(ir, "mono8", t, "ir_optical"))
                sent.append(t)
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            # EO dies; IR goes on for 2 s.
            last_eo = sent[-1]
            for k in range(int(2 * args.rate)):
                _, ir = frames[k % len(frames)]
                t = time.time()
                driver.pub_ir.publish(driver.image(ir, "mono8", t, "ir_optical"))
                sent.append(t)
                next_t += period
                time.sleep(max(0.0, next_t - time.monotonic()))
            last_ir = sent[-1]
            time.sleep(1.5)  # IR stops too: the IR-stale ERROR must reach /diagnostics within ir_timeout_s + 0.2 s
            cpu_used, wall_used = cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
            diag = driver.latest_diagnostic() or {}
            with driver.lock:
                received = [(t_rx, stamp_seconds(m.header.stamp)) for t_rx, m in driver.masks]
            modes = driver.mode_payloads()
            with driver.lock:
                error_at = next((t for t, d in driver.diagnostics if t > last_ir and d.status[0].level == b"\x02"),
                                None)
        finally:
            if driver is not None:
                driver.close()
            log = stop_node(proc)
    steady = [(rx - st) * 1e3 for rx, st in received if st <= last_eo]
    switch = next((m for m in modes if m["mode"] == "ir_only" and m["since"] > last_eo), None)
    # IR-only masks once the node has declared EO stale (they must not wait for an EO partner)
    stale_since = next((m["since"] for m in modes if m["reason"] == "eo_stale" and m["since"] > last_eo), None)
    ir_only = [(rx - st) * 1e3 for rx, st in received if stale_since is not None and st > stale_since + 0.1]
    first_mask_rx = next((rx for rx, st in received if st > last_eo), None)  # receipt time, wall clock
    stamps = {round(st, 6) for _, st in received}
    lost = sum(1 for t in sent if round(t, 6) not in stamps)
    result = {
        "bundle": str(bundle), "frame_size": [args.height, args.width], "rate_hz": args.rate,
        "seconds": args.seconds, "ir_frames_sent": len(sent), "masks_received": len(received),
        "masks_missing": lost, "node_dropped_ir": int(diag.get("ir_dropped", 0)),
        "end_to_end_ms": summarize_ms(steady),
        "end_to_end_ir_only_ms": summarize_ms(ir_only),
        "inference_by_mode_ms": {mode: {"median_ms": float(diag.get(f"inference_{mode}_ms_p50", "nan")),
                                        "p95_ms": float(diag.get(f"inference_{mode}_ms_p95", "nan"))}
                                 for mode in ("fused", "ir_only")},
        "node_overhead_ms": {"median_ms": float(diag.get("overhead_ms_p50", "nan")),
                             "p95_ms": float(diag.get("overhead_ms_p95", "nan")), "window": "last 300 frames"},
        "inference_ms": {"median_ms": float(diag.get("inference_ms_p50", "nan")),
                         "p95_ms": float(diag.get("inference_ms_p95", "nan"))},
        "node_cpu_seconds": cpu_used, "node_cpu_fraction_of_one_core": cpu_used / wall_used,
        "eo_timeout_s": params["health.eo_timeout_s"],
        "ir_stale_error_after_last_ir_s": (error_at - last_ir) if error_at else None,
        "switch": {"mode": switch, "switch_after_last_eo_s": (switch["since"] - last_eo) if switch else None,
                   "first_mask_after_eo_loss_s": (first_mask_rx - last_eo) if first_mask_rx else None,
                   "goal_s": params["health.eo_timeout_s"] + period},
        "eo_frames_sent": len(sent) - int(2 * args.rate), "eo_received_by_node": int(diag.get("eo_received", 0)),
        "ir_received_by_node": int(diag.get("ir_received", 0)),
        "mode_messages": modes, "backend": diag.get("backend"), "node_log_tail": log[-1500:],
    }
    print(f"\nsegment_node at {args.width}x{args.height}, {args.rate:g} Hz, {args.seconds:g} s, bundle {bundle}"
          f" ({result['backend']}):\n")
    e2e, ovh, inf = result["end_to_end_ms"], result["node_overhead_ms"], result["inference_ms"]
    print_table(["metric", "median", "p95", "goal"], [
        ["end-to-end latency (IR stamp -> mask received), ms", f"{e2e['median_ms']:.2f}", f"{e2e['p95_ms']:.2f}", "-"],
        ["node overhead outside inference, ms", f"{ovh['median_ms']:.3f}", f"{ovh['p95_ms']:.3f}", "median <= 3"],
        ["inference, ms", f"{inf['median_ms']:.2f}", f"{inf['p95_ms']:.2f}", "-"],
    ])
    e2e_ir, inf_mode = result["end_to_end_ir_only_ms"], result["inference_by_mode_ms"]
    inference_gap = inf_mode["fused"]["median_ms"] - inf_mode["ir_only"]["median_ms"]
    ir_goal = e2e["median_ms"] - inference_gap + 5.0
    result["ir_only_latency_goal_ms"] = ir_goal
    print(f"\nIR-only end-to-end after eo_stale: median {e2e_ir['median_ms']:.2f} ms (p95 {e2e_ir['p95_ms']:.2f}, "
          f"n {e2e_ir['n']}); fused {e2e['median_ms']:.2f} ms; inference fused {inf_mode['fused']['median_ms']:.2f} / "
          f"IR-only {inf_mode['ir_only']['median_ms']:.2f} ms; goal: IR-only <= fused - inference gap + 5 = "
          f"{ir_goal:.2f} ms")
    sw = result["switch"]
    print(f"\nIR frames sent {len(sent)}, masks received {len(received)}, missing {lost}, "
          f"dropped by the node (freshest-frame policy) {result['node_dropped_ir']}")
    print(f"EO frames received by the node {result['eo_received_by_node']} of {result['eo_frames_sent']} sent; "
          f"IR {result['ir_received_by_node']} of {len(sent)}; mode changes {len(modes)}")
    print(f"node CPU: {cpu_used:.1f} s over {wall_used:.1f} s ({100 * result['node_cpu_fraction_of_one_core']:.0f}% of "
          "one core)")
    if sw["first_mask_after_eo_loss_s"] is not None:
        print(f"EO died: masks kept coming; the mask of the next IR frame arrived "
              f"{1e3 * sw['first_mask_after_eo_loss_s']:.0f} ms after the last EO frame was sent")
    if sw["switch_after_last_eo_s"] is not None:
        print(f"EO died: mode -> ir_only ({switch['reason']}) {1e3 * sw['switch_after_last_eo_s']:.0f} ms after the "
              f"last EO frame sent; goal <= eo_timeout_s + one frame = {1e3 * sw['goal_s']:.0f} ms")
    stale = next((m for m in modes if m["reason"] == "eo_stale" and m["since"] > last_eo), None)
    result["switch"]["eo_stale_after_last_eo_s"] = (stale["since"] - last_eo) if stale else None
    if stale:
        print(f"health monitor declared eo_stale {1e3 * (stale['since'] - last_eo):.0f} ms after the last EO "
              "frame sent")
    if error_at:
        print(f"IR died: diagnostics ERROR {1e3 * (error_at - last_ir):.0f} ms after the last IR frame sent; goal <= "
              "ir_timeout_s (0.5 s at 30 Hz) + 200 ms")
    out = write_json(Path(args.out), result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
