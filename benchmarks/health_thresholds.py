#!/usr/bin/env python3
"""Check the EO health thresholds (dark / saturated) on real frames.

Runs the luminance statistics of ``csk_ros.logic.health`` and the full
``EoHealthMonitor`` over the MSRS sample EO frames (``NNNNN[D|N].png``, D = day,
N = night), prints a table and writes JSON. Also fades a frame to black
(x0.5, x0.25, ... 0) and to white (x2, x4, ...) and reports the factor at which
the detector trips. This is the evidence behind the defaults in
``csk_ros.logic.health.HealthParams``.

Pass criteria (exit status 1 when violated): no day frame is dark or saturated,
no night frame is dark (every MSRS night frame carries information: street
lights, lit windows, headlights), and fading a day frame to black trips dark
before black.

Usage:
  python benchmarks/health_thresholds.py [DATA] [--out JSON]
DATA: the msrs_samples folder (with eo/) or an eo/ folder; default
/work/shared/data/msrs_samples, else ../shared/data/msrs_samples from the repo root.
The data are a development aid, not part of the project: absent data -> message, exit 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from csk_ros.logic.health import EoHealthMonitor, HealthParams, luma_histogram_stats, luma_sample  # noqa: E402

DEFAULT_DATA = [Path("/work/shared/data/msrs_samples"), REPO.parent / "shared" / "data" / "msrs_samples"]
FADE_DOWN = [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0]
FADE_UP = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
SEQ_FRAMES = 15  # frames fed to the monitor per still image (> dark_frames, > recover_frames)


def find_eo_dir(arg: str | None) -> Path | None:
    candidates = [Path(arg)] if arg else DEFAULT_DATA
    for c in candidates:
        for d in (c / "eo", c):
            if d.is_dir() and any(d.glob("*.png")):
                return d
    return None


def frame_stats(rgb: np.ndarray, p: HealthParams) -> dict:
    sample = luma_sample(rgb, p.stride)
    mean, p99, bright, sat = luma_histogram_stats(sample, p.dark_bright_level, p.saturated_level)
    dark = mean < p.dark_luma_mean and bright < p.dark_bright_fraction
    saturated = sat > p.saturated_fraction
    return {
        "mean_luma": round(mean, 2),
        "p99_luma": p99,
        "bright_fraction": round(bright, 5),
        "saturated_fraction": round(sat, 5),
        "dark": bool(dark),
        "saturated": bool(saturated),
    }


def monitor_verdict(rgb: np.ndarray, p: HealthParams) -> str:
    """Mode after feeding the still image SEQ_FRAMES times at 30 Hz (with IR).

    The frozen check is disabled here because a still image repeated IS a
    frozen camera; this run isolates the luminance checks.
    """
    mon = EoHealthMonitor(HealthParams(**{**asdict(p), "frozen_frames": 0}))
    d = None
    for i in range(SEQ_FRAMES):
        t = i / 30
        mon.observe_eo(t, rgb)
        mon.observe_ir(t)
        d = mon.decide(t)
    return d.mode if d.mode == "fused" else f"{d.mode}:{d.reason}"


def scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)


def fade(rgb: np.ndarray, factors: list[float], p: HealthParams, key: str) -> tuple[list[dict], float | None]:
    rows, trip = [], None
    for f in factors:
        s = frame_stats(scaled(rgb, f), p)
        verdict = monitor_verdict(scaled(rgb, f), p)
        rows.append({"factor": f, **s, "verdict": verdict})
        if trip is None and s[key]:
            trip = f
    return rows, trip


def time_observe(rgb: np.ndarray, p: HealthParams, n: int = 200) -> float:
    mon = EoHealthMonitor(p)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        mon.observe_eo(i / 30, rgb)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=None, help="msrs_samples folder or its eo/ folder")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "health_thresholds.json"))
    args = ap.parse_args(argv)

    import cv2

    eo_dir = find_eo_dir(args.data)
    if eo_dir is None:
        where = args.data or " or ".join(str(d) for d in DEFAULT_DATA)
        print(f"health_thresholds: no EO sample frames found at {where}; skipping")
        return 0

    p = HealthParams().validate()
    print(f"EO frames: {eo_dir}")
    print(
        f"thresholds: dark = mean < {p.dark_luma_mean} AND fraction(luma >= {p.dark_bright_level}) < "
        f"{p.dark_bright_fraction}; saturated = fraction(luma >= {p.saturated_level}) > {p.saturated_fraction}; "
        f"stride {p.stride}"
    )
    rows = []
    frames: dict[str, np.ndarray] = {}
    for path in sorted(eo_dir.glob("*.png")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"  cannot read {path.name}; skipped")
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        stem = path.stem
        kind = {"D": "day", "N": "night"}.get(stem[-1:].upper(), "unknown")
        frames[stem] = rgb
        rows.append({"name": path.name, "kind": kind, **frame_stats(rgb, p), "verdict": monitor_verdict(rgb, p)})

    hdr = f"{'name':<12} {'kind':<6} {'mean':>6} {'p99':>4} {'bright%':>8} {'sat%':>6}  frame     monitor"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        flag = "dark" if r["dark"] else ("saturated" if r["saturated"] else "ok")
        print(
            f"{r['name']:<12} {r['kind']:<6} {r['mean_luma']:>6.1f} {r['p99_luma']:>4d} "
            f"{100 * r['bright_fraction']:>8.2f} {100 * r['saturated_fraction']:>6.2f}  {flag:<9} {r['verdict']}"
        )

    summary: dict = {}
    for kind in ("day", "night"):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            summary[kind] = {
                "count": len(sel),
                "mean_luma_min": min(r["mean_luma"] for r in sel),
                "mean_luma_max": max(r["mean_luma"] for r in sel),
                "bright_fraction_min": min(r["bright_fraction"] for r in sel),
                "saturated_fraction_max": max(r["saturated_fraction"] for r in sel),
                "dark": [r["name"] for r in sel if r["dark"]],
                "saturated": [r["name"] for r in sel if r["saturated"]],
                "not_fused": [r["name"] for r in sel if r["verdict"] != "fused"],
            }
    print()
    for kind, s in summary.items():
        print(
            f"{kind:<5}: {s['count']} frames, mean luma {s['mean_luma_min']:.1f}..{s['mean_luma_max']:.1f}, "
            f"min bright fraction {100 * s['bright_fraction_min']:.2f} %, max saturated fraction "
            f"{100 * s['saturated_fraction_max']:.2f} %, dark: {s['dark'] or 'none'}, "
            f"saturated: {s['saturated'] or 'none'}, not fused: {s['not_fused'] or 'none'}"
        )

    # Fades: every day frame to black and to white; every night frame to black (margin).
    fades = {}
    print("\nfade to black (factor at which the frame first counts as dark):")
    for stem, rgb in frames.items():
        down, trip_dark = fade(rgb, FADE_DOWN, p, "dark")
        entry = {"to_black": down, "dark_at": trip_dark}
        if stem.endswith("D"):
            up, trip_sat = fade(rgb, FADE_UP, p, "saturated")
            entry.update({"to_white": up, "saturated_at": trip_sat})
        fades[stem] = entry
        means = " ".join(f"{r['mean_luma']:.1f}" for r in down)
        print(f"  {stem}: dark at x{trip_dark}   (means along x{FADE_DOWN[0]}..x{FADE_DOWN[-1]}: {means})")
    print("fade to white (factor at which a day frame first counts as saturated):")
    for stem, e in fades.items():
        if "saturated_at" in e:
            sats = " ".join(f"{100 * r['saturated_fraction']:.0f}%" for r in e["to_white"])
            print(f"  {stem}: saturated at x{e['saturated_at']}   (saturated fraction along x1..x32: {sats})")

    first = next(iter(frames.values()))
    cost_ms = time_observe(first, p)
    print(f"\nEoHealthMonitor.observe_eo at {first.shape[1]}x{first.shape[0]}: median {cost_ms:.3f} ms / frame")

    problems = []
    day = summary.get("day", {})
    night = summary.get("night", {})
    if day.get("dark") or day.get("saturated") or day.get("not_fused"):
        problems.append(f"day frames trip: dark {day.get('dark')}, saturated {day.get('saturated')}")
    if night.get("dark") or night.get("not_fused"):
        problems.append(f"night frames with information trip dark: {night.get('dark')} / {night.get('not_fused')}")
    day_trips = [e["dark_at"] for s, e in fades.items() if s.endswith("D")]
    if any(t is None or t == 0.0 for t in day_trips):
        problems.append("a day frame faded towards black only trips at black (or never): dark threshold too low")
    print("\nPASS" if not problems else "\nFAIL:\n  " + "\n  ".join(problems))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "data": str(eo_dir),
                "params": p.to_dict(),
                "frames": rows,
                "summary": summary,
                "fades": fades,
                "observe_eo_ms_median": round(cost_ms, 4),
                "problems": problems,
                "pass": not problems,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
