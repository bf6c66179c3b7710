"""Real camera streams into the segment node: what reaches it, with and without
the shipped Fast DDS profile, per camera profile, transport and publisher QoS.

scripts/isolated_ros.sh .venv/bin/python benchmarks/camera_profiles.py [--seconds 20] [--rate 30]
    [--profiles vga,hd16,vga_jpeg,hd16_jpeg] [--qos sensor_data,reliable] [--dds shipped,none]

Each row: a fresh node with DEFAULT parameters (only the transports and, for
the HD rig, the EO->IR homography are set) and a separate publisher process
(benchmarks/camera_publisher.py) streaming real MSRS pairs at --rate with
identical stamps. DDS profile "shipped" = config/fastdds_large_frames.xml in
the publisher's AND the node's environment (FASTDDS_DEFAULT_PROFILES_FILE);
"node_only" = in the node's only; "large_data" = FASTDDS_BUILTIN_TRANSPORTS=
LARGE_DATA in both; "none" = Fast DDS defaults. The observer (this process,
masks / ~/mode / /diagnostics) always runs on defaults: masks are mono8 and fit
the default segment. Prints a table, writes JSON (benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.camera_publisher import eo_to_ir_homography  # noqa: E402
from benchmarks.common import RESULTS, print_table, write_json  # noqa: E402
from benchmarks.node_latency import cpu_seconds, default_bundle  # noqa: E402
from harness.stream_client import Driver, loopback_ros_env, start_node, stop_node  # noqa: E402

PROFILE_XML = ROOT / "config" / "fastdds_large_frames.xml"
PROFILES = {
    # name: (EO size, IR kind, transport)
    "vga": ("640x480", "mono8_640x480", "raw"),
    "hd16": ("1280x720", "mono16_640x512", "raw"),
    "vga_jpeg": ("640x480", "mono8_640x480", "compressed"),
    "hd16_jpeg": ("1280x720", "mono16_640x512", "compressed"),
}
DDS = ("shipped", "node_only", "large_data", "none")
DDS_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def dds_env(base: dict, dds: str, role: str) -> dict:
    env = {k: v for k, v in base.items() if k not in DDS_VARS}
    if dds == "shipped" or (dds == "node_only" and role == "node"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE_XML)
    elif dds == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    return env


def wait_node_ready(driver: Driver, timeout: float = 60.0) -> bool:
    return driver.wait_for(lambda: bool(driver.diagnostics) and driver.node.count_publishers(
        f"/{driver.node_name}/mask") > 0, timeout)


def run_row(bundle: Path, base_env: dict, profile: str, qos: str, dds: str, seconds: float, rate: float,
            work: Path, node_qos: str | None = None, node_params: dict | None = None, cloud: bool = False) -> dict:
    eo_size, ir_kind, transport = PROFILES[profile]
    params = {"eo_transport": transport, "ir_transport": transport}
    if cloud:
        params["publish_points"] = True
    if node_qos:
        params["qos"] = node_qos
    params.update(node_params or {})
    homography = eo_to_ir_homography(eo_size, ir_kind)
    if homography:
        params["eo_to_ir_homography"] = homography
    proc = start_node(bundle, dds_env(base_env, dds, "node"), params)
    driver = None
    sent_file = work / f"sent_{profile}_{qos}_{dds}_{cloud}.json"
    points_file = work / f"points_{profile}_{qos}_{dds}.json"
    listener = None
    try:
        driver = Driver()
        if not wait_node_ready(driver):
            raise RuntimeError(f"node did not come up:\n{stop_node(proc)[-2000:]}")
        if cloud:  # a Nav2-like consumer in its own process, on the publisher's DDS profile
            listener = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "points_listener.py"), "--seconds", str(seconds + 20),
                 "--out", str(points_file)], env=dds_env(base_env, dds, "publisher"))
            if not driver.wait_for(lambda: driver.node.count_subscribers("/segment_node/points") > 0, 30):
                raise RuntimeError("points listener did not subscribe")
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        publisher = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "camera_publisher.py"), "--eo", eo_size, "--ir", ir_kind,
             "--transport", transport, "--qos", qos, "--rate", str(rate), "--seconds", str(seconds),
             "--out", str(sent_file)] + (["--depth"] if cloud else []),
            env=dds_env(base_env, dds, "publisher"), capture_output=True, text=True, timeout=seconds + 120)
        if publisher.returncode != 0:
            raise RuntimeError(f"publisher failed:\n{publisher.stdout[-1500:]}\n{publisher.stderr[-1500:]}")
        time.sleep(2.5)  # last masks + one more diagnostics tick
        cpu_used, wall_used = cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
        sent = json.loads(sent_file.read_text())
        with driver.lock:
            diags = [(t, {kv.key: kv.value for kv in d.status[0].values}, d.status[0].message,
                      int.from_bytes(d.status[0].level, "little")) for t, d in driver.diagnostics]
        modes = driver.mode_payloads()
    finally:
        if listener is not None:
            listener.send_signal(2)
            listener.wait(30)
        if driver is not None:
            driver.close()
        log = stop_node(proc)
    points = json.loads(points_file.read_text()) if cloud and points_file.exists() else None
    last = diags[-1][1]
    first_stamp = sent["ir_stamps"][0]
    fused_at = next((m["since"] for m in modes if m["mode"] == "fused"), None)
    last_stamp = sent["ir_stamps"][-1]  # the stream's end (no_input after it) is not a spurious switch
    switches = [m for m in modes if fused_at is not None and fused_at < m["since"] <= last_stamp]
    loss_warn = next((t - first_stamp for t, _, msg, level in diags if level == 1 and "loses" in msg
                      and t > first_stamp), None)
    masks_fused, masks_ir = int(last.get("masks_fused", 0)), int(last.get("masks_ir_only", 0))
    eo_rx, ir_rx = int(last["eo_received"]), int(last["ir_received"])
    return {
        "profile": profile, "node_qos": node_qos or "sensor_data (default)", "node_params": node_params or {},
        "load_avg_1min": os.getloadavg()[0], "eo": eo_size, "ir": ir_kind, "transport": transport,
        "publisher_qos": qos, "dds": dds,
        "payload_bytes": sent["payload_bytes"], "publisher_late_ticks": sent["late_ticks"],
        "eo_sent": len(sent["eo_stamps"]), "ir_sent": len(sent["ir_stamps"]), "eo_received": eo_rx,
        "ir_received": ir_rx, "masks": masks_fused + masks_ir, "masks_fused": masks_fused,
        "masks_per_ir_received": (masks_fused + masks_ir) / ir_rx if ir_rx else 0.0,
        "ir_dropped_by_node": int(last.get("ir_dropped", 0)),
        "fused_fraction": masks_fused / max(1, masks_fused + masks_ir),
        "mode_switches_after_first_fused": len(switches), "mode_messages": modes,
        "eo_loss_fraction_node": float(last["eo_loss_fraction"]),
        "ir_loss_fraction_node": float(last["ir_loss_fraction"]),
        "loss_warn_after_s": loss_warn, "last_message": diags[-1][2],
        "overhead_ms_p50": float(last["overhead_ms_p50"]), "overhead_ms_p95": float(last["overhead_ms_p95"]),
        "eo_decode_ms_p50": float(last["eo_decode_ms_p50"]), "ir_decode_ms_p50": float(last["ir_decode_ms_p50"]),
        "inference_ms_p50": float(last["inference_ms_p50"]),
        "node_cpu_percent": 100 * cpu_used / wall_used, "rejected_total": int(last["rejected_total"]),
        "inference_errors": int(last.get("inference_errors", 0)), "node_log_tail": log[-800:],
        "cloud": cloud, "points_published": int(last.get("points_published", 0)),
        "points_skipped": {k: int(v) for k, v in last.items() if k.startswith("points_skipped_")},
        "points_received_by_listener": points["clouds"] if points else None,
        "points_sizes": points["sizes"] if points else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--profiles", default="vga,hd16,vga_jpeg,hd16_jpeg")
    p.add_argument("--qos", default="sensor_data,reliable")
    p.add_argument("--dds", default="shipped,none", help=f"comma list of {DDS}")
    p.add_argument("--node-qos", choices=("sensor_data", "reliable"),
                   help="override the node's qos parameter (default: the node's default, sensor_data)")
    p.add_argument("--node-param", action="append", default=[], metavar="NAME=JSON",
                   help="extra node parameter for every row, e.g. ort_spinning=true (repeatable)")
    p.add_argument("--cloud", default="off", help="comma list of off,on: on = publish_points with a depth stream "
                   "from the publisher and a separate ~/points subscriber process")
    p.add_argument("--out", default=str(RESULTS / "camera_profiles.json"))
    args = p.parse_args(argv)
    base_env = loopback_ros_env()
    for key in DDS_VARS:
        os.environ.pop(key, None)  # the observer stays on Fast DDS defaults
    base_env = {k: v for k, v in base_env.items()}
    node_params = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.node_param)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else default_bundle(work)
        combos = [(pr, q, d, c == "on") for d in args.dds.split(",") for pr in args.profiles.split(",")
                  for q in args.qos.split(",") for c in args.cloud.split(",")]
        for k, (profile, qos, dds, cloud) in enumerate(combos, 1):
            print(f"[{k}/{len(combos)}] {profile} publisher {qos} dds {dds} cloud {cloud} ...", flush=True)
            rows.append(run_row(bundle, base_env, profile, qos, dds, args.seconds, args.rate, work, args.node_qos,
                                node_params, cloud))
    headers = ["profile", "transport", "pub QoS", "node QoS", "DDS", "EO rx/sent", "IR rx/sent", "masks/IR rx",
               "fused %",
               "switches", "EO loss", "IR loss", "WARN s", "overhead p50/p95 ms", "EO dec p50", "IR dec p50",
               "node CPU %", "load", "cloud pub/rx"]
    table = []
    for r in rows:
        table.append([f"{r['eo']} + {r['ir']}", r["transport"], r["publisher_qos"], r["node_qos"].split()[0], r["dds"],
                      f"{r['eo_received']}/{r['eo_sent']}", f"{r['ir_received']}/{r['ir_sent']}",
                      f"{r['masks_per_ir_received']:.3f}", f"{100 * r['fused_fraction']:.1f}",
                      r["mode_switches_after_first_fused"], f"{100 * r['eo_loss_fraction_node']:.1f}%",
                      f"{100 * r['ir_loss_fraction_node']:.1f}%",
                      "-" if r["loss_warn_after_s"] is None else f"{r['loss_warn_after_s']:.1f}",
                      f"{r['overhead_ms_p50']:.2f}/{r['overhead_ms_p95']:.2f}", f"{r['eo_decode_ms_p50']:.2f}",
                      f"{r['ir_decode_ms_p50']:.2f}", f"{r['node_cpu_percent']:.0f}", f"{r['load_avg_1min']:.1f}",
                      f"{r['points_published']}/{r['points_received_by_listener']}" if r["cloud"] else "off"])
    print(f"\n{args.rate:g} Hz, {args.seconds:g} s per row, node on default parameters, bundle {bundle}\n")
    print_table(headers, table)
    out = write_json(Path(args.out), {"rate_hz": args.rate, "seconds": args.seconds, "bundle": str(bundle),
                                      "profile_xml": str(PROFILE_XML), "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
