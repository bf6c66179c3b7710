#!/usr/bin/env python3
"""The live registration check (csk_ros.imaging.registration) on real registered EO/IR frames.

Every pair is registered (the datasets ship them aligned), so the true homography is None (EO resized to IR)
and any other one is a known misregistration: EO shifted by 4 / 8 / 12 / 16 px (along x, along y) and turned
by 2 degrees about the image centre. Per frame: whether the check could judge it (`valid`), whether the true
registration scores above each misregistration (ranking), the error of the measured shift against the applied
one, and whether the offset passes the warn threshold. On the true registration a warning is a false alarm.

The warn threshold (--warn-px, default 6 px) is the default issue 18 set for the node's registration.warn_px
before any of these frames were looked at; neither it nor the check's constants were chosen on them.

Cost: the median time of one check_registration call at the frame size on ONE core (cv2.setNumThreads(1)), and
the share of a core it takes at one check per second.

Usage:
  .venv/bin/python benchmarks/registration.py [--msrs DIR] [--mfnet DIR] [--warn-px 6] [--out JSON]
Data: ../shared/data/msrs_samples (eo/, ir/) and ../shared/data/mfnet_subset (images/*.png RGB+thermal,
val.txt). They are a development aid, not part of the project: absent data -> message, exit 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS, git_commit, print_table, summarize_ms, write_json  # noqa: E402
from csk_ros.imaging.registration import check_registration, pixel_scale  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SHIFTS_PX = (4, 8, 12, 16)
ROTATION_DEG = 2.0
TIMED_CALLS = 5  # per frame, after one warm-up call


def msrs_pairs(root: Path):
    """(name, EO RGB, IR) of the MSRS sample pairs: eo/NAME.png, ir/NAME.png."""
    for eo_path in sorted((root / "eo").glob("*.png")):
        eo = cv2.cvtColor(cv2.imread(str(eo_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        yield eo_path.stem, eo, cv2.imread(str(root / "ir" / eo_path.name), cv2.IMREAD_UNCHANGED)


def mfnet_pairs(root: Path, ir_dir: Path | None = None):
    """(name, EO RGB, IR) of the MFNet val frames: images/NAME.png holds B, G, R, thermal. With `ir_dir`
    (mfnet_subset/ir_msrs: the same frames through another thermal pipeline, pixel-aligned), the thermal
    comes from there and only the frames it holds are given."""
    for name in (root / "val.txt").read_text().split():
        if ir_dir is not None and not (ir_dir / f"{name}.png").is_file():
            continue
        image = cv2.imread(str(root / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        ir = (np.ascontiguousarray(image[:, :, 3]) if ir_dir is None
              else cv2.imread(str(ir_dir / f"{name}.png"), cv2.IMREAD_UNCHANGED))
        yield name, cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB), ir


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def rotation_about_centre(degrees: float, width: int, height: int) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])


def misregistrations(width: int, height: int) -> dict[str, tuple[np.ndarray, tuple[float, float] | None]]:
    """label -> (EO->IR homography, the correcting shift the check should find, None for the rotation)."""
    cases = {}
    for d in SHIFTS_PX:
        for sign, mark in ((1, "+"), (-1, "-")):
            cases[f"x{mark}{d}"] = (translation(sign * d, 0), (-sign * d, 0.0))
            cases[f"y{mark}{d}"] = (translation(0, sign * d), (0.0, -sign * d))
    cases[f"rot{ROTATION_DEG:g}"] = (rotation_about_centre(ROTATION_DEG, width, height), None)
    return cases


def frame_record(name: str, eo: np.ndarray, ir: np.ndarray, warn_px: float) -> dict:
    h, w = ir.shape[:2]
    scale = pixel_scale(w / eo.shape[1], h / eo.shape[0])  # what None means: EO resized to the IR size
    true = check_registration(eo, ir, None)
    record = {"frame": name, "night": name.endswith("N"), "valid": true.valid, "note": true.note,
              "score": true.score, "best_score": true.best_score, "offset_px": true.offset_px,
              "false_alarm": bool(true.valid and true.offset_px > warn_px), "cases": {}}
    for label, (homography, expected) in misregistrations(w, h).items():
        wrong = check_registration(eo, ir, homography @ scale)
        case = {"valid": wrong.valid, "score": wrong.score, "offset_px": wrong.offset_px,
                "ranked_below_true": bool(true.valid and wrong.score < true.score),
                "warned": bool(wrong.valid and wrong.offset_px > warn_px)}
        if expected is not None:
            dx, dy = wrong.shift_px[0] - expected[0], wrong.shift_px[1] - expected[1]
            case["shift_error_px"] = float(math.hypot(dx, dy))
            # The pairs are not perfectly registered: against the shift the check finds on the pair as shipped.
            case["change_error_px"] = float(math.hypot(dx - true.shift_px[0], dy - true.shift_px[1]))
        record["cases"][label] = case
    return record


def time_frame(eo: np.ndarray, ir: np.ndarray, size: tuple[int, int] | None = None) -> list[float]:
    """ms per call at the frame's size, or with both images resized to `size` (width, height)."""
    if size is not None:
        eo, ir = cv2.resize(eo, size), cv2.resize(ir, size)
    check_registration(eo, ir, None)
    samples = []
    for _ in range(TIMED_CALLS):
        t0 = time.perf_counter()
        check_registration(eo, ir, None)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def share(values) -> str:
    values = list(values)
    return f"{sum(values)}/{len(values)}" if values else "-"


def median_of(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(values)) if values else float("nan")


def summarize(records: list[dict]) -> dict:
    """Over the frames the check judged on the true registration (the others say nothing either way)."""
    judged = [r for r in records if r["valid"]]
    out = {"frames": len(records), "judged": len(judged),
           "false_alarms": sum(r["false_alarm"] for r in judged),
           "median_true_offset_px": median_of(r["offset_px"] for r in judged),
           "max_true_offset_px": max((r["offset_px"] for r in judged), default=float("nan")),
           "median_true_score": median_of(r["score"] for r in judged), "cases": {}}
    for label in records[0]["cases"] if records else ():
        cases = [r["cases"][label] for r in judged]
        errors = [c["shift_error_px"] for c in cases if c["valid"] and "shift_error_px" in c]
        changes = [c["change_error_px"] for c in cases if c["valid"] and "change_error_px" in c]
        out["cases"][label] = {"ranked_below_true": sum(c["ranked_below_true"] for c in cases),
                               "judged": sum(c["valid"] for c in cases), "warned": sum(c["warned"] for c in cases),
                               "median_shift_error_px": median_of(errors),
                               "max_shift_error_px": max(errors, default=float("nan")),
                               "shift_error_under_2px": sum(e < 2.0 for e in errors),
                               "median_change_error_px": median_of(changes),
                               "change_error_under_2px": sum(e < 2.0 for e in changes)}
    return out


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def print_results(name: str, summary: dict) -> None:
    print(f"\n{name}: {summary['judged']}/{summary['frames']} frames judged on the true registration; "
          f"false alarms (offset > warn): {summary['false_alarms']}/{summary['judged']}; true offset median "
          f"{fmt(summary['median_true_offset_px'])} px, max {fmt(summary['max_true_offset_px'])} px; "
          f"true score median {fmt(summary['median_true_score'], 3)}")
    rows = []
    for label, c in summary["cases"].items():
        rows.append([label, f"{c['ranked_below_true']}/{summary['judged']}", f"{c['judged']}/{summary['judged']}",
                     fmt(c["median_shift_error_px"]), fmt(c["max_shift_error_px"]),
                     f"{c['shift_error_under_2px']}/{c['judged']}" if not label.startswith("rot") else "-",
                     fmt(c["median_change_error_px"]),
                     f"{c['change_error_under_2px']}/{c['judged']}" if not label.startswith("rot") else "-",
                     f"{c['warned']}/{summary['judged']}"])
    print_table(["misregistration", "true ranks higher", "judged", "shift err med px", "max px", "err < 2 px",
                 "change err med px", "< 2 px", "warned"], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--msrs", default=str(SHARED / "msrs_samples"))
    p.add_argument("--mfnet", default=str(SHARED / "mfnet_subset"))
    p.add_argument("--warn-px", type=float, default=6.0)
    p.add_argument("--out", default=str(RESULTS / "registration.json"))
    args = p.parse_args(argv)
    cv2.setNumThreads(1)  # the cost on one core, as the node's background thread would see it
    sources = {"msrs": (Path(args.msrs), msrs_pairs, (Path(args.msrs) / "eo").is_dir()),
               "mfnet_val": (Path(args.mfnet), mfnet_pairs, (Path(args.mfnet) / "val.txt").is_file())}
    if not any(present for _, _, present in sources.values()):
        print(f"no data at {args.msrs} or {args.mfnet}: nothing to measure")
        return 0
    datasets, timings, timings_512, sizes = {}, [], [], set()
    for name, (root, reader, present) in sources.items():
        if not present:
            print(f"{name}: no data at {root}, skipped")
            continue
        records = []
        for frame, eo, ir in reader(root):
            records.append(frame_record(frame, eo, ir, args.warn_px))
            timings += time_frame(eo, ir)
            timings_512 += time_frame(eo, ir, (640, 512))
            sizes.add(f"{ir.shape[1]}x{ir.shape[0]}")
        datasets[name] = {"summary": summarize(records),
                          "day": summarize([r for r in records if not r["night"]]),
                          "night": summarize([r for r in records if r["night"]]), "frames": records}
        for part in ("summary", "day", "night"):
            print_results(f"{name} ({'all' if part == 'summary' else part})", datasets[name][part])
    print()
    costs = {}
    for label, samples in ((", ".join(sorted(sizes)), timings), ("640x512 (frames resized)", timings_512)):
        cost = costs[label] = summarize_ms(samples)
        cost["core_percent_at_1hz"] = cost["median_ms"] / 1000.0 * 100.0
        print(f"cost at {label} (work_width 320, search 24 px), one core: median {cost['median_ms']:.1f} ms, "
              f"p95 {cost['p95_ms']:.1f} ms over {cost['n']} calls = {cost['core_percent_at_1hz']:.2f} % of a core "
              "at 1 check/s")
    out = write_json(Path(args.out), {
        "benchmark": "registration", "command": "python benchmarks/registration.py " + " ".join(argv or sys.argv[1:]),
        "commit": git_commit(), "date": time.strftime("%Y-%m-%d"), "warn_px": args.warn_px,
        "shifts_px": list(SHIFTS_PX), "rotation_deg": ROTATION_DEG, "frame_sizes": sorted(sizes),
        "cost_one_core": costs, "datasets": datasets})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
