"""The node's registration verdict on real frames: how soon a misregistration WARNs, and whether registered
frames ever WARN (issue 18's targets), replayed without ROS.

.venv/bin/python benchmarks/registration_watch.py [--minutes 10] [--trials 100] [--out JSON]

The node checks the latest fused pair every `registration.check_period_s` (1 s by default; at 10 Hz every
10th frame) and WARNs when the median of the last 5 judged checks exceeds `registration.warn_px` (6 px)
(csk_ros/logic/registration_health.py). This replays exactly that: each real pair (MSRS samples, MFNet val
with its raw thermal and with the MSRS thermal of ir_msrs)
is checked once per misregistration with the node's check, then check sequences are drawn from them:
- false WARNs: --minutes of registered frames (one check a second, frames drawn at random with a fixed
  seed), counting the checks at which the verdict is "misregistered";
- detection: --trials runs of 5 registered checks then a shift of 8, 12 or 16 px (x or y, either sign),
  timing the seconds until the verdict says "misregistered" (target: within 10 s).
A pair whose own shipped registration measures beyond the limit (MSRS 00091D: 6.3 px), confirmed by a second
check at full resolution (off_as_shipped), may make a real WARN: those checks are counted apart
(`checks_in_warn_real_offset`), with the frames named.
The datasets are not continuous sequences: consecutive checks see different scenes, where a real stream
shows one scene for many seconds (that keeps a hard scene in the window longer; not modelled).
Nothing here is tuned: the window, the limit and the check are the node's defaults.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS, print_table, write_json  # noqa: E402
from benchmarks.registration import SHARED, mfnet_pairs, msrs_pairs, translation  # noqa: E402
from csk_ros.imaging.registration import check_registration, pixel_scale  # noqa: E402
from csk_ros.logic.registration_health import RegistrationHealth  # noqa: E402

SHIFTS = {f"{axis}{sign}{d}": (sign_v * d if axis == "x" else 0, sign_v * d if axis == "y" else 0)
          for d in (8, 12, 16) for axis in ("x", "y") for sign, sign_v in (("+", 1), ("-", -1))}
DETECTION_LIMIT_S = 10.0
CONFIRM_WORK_WIDTH = 640  # the node's check works at 320 px; the confirmation at full MFNet/MSRS width
CONFIRM_PX = 2.0


def checks_per_frame(pairs) -> tuple[list[dict], list[float]]:
    """For each pair: the node's check at the shipped registration and at each shift; and the CPU ms of the
    registered checks."""
    table, cpu_ms = [], []
    for name, eo, ir in pairs:
        h, w = ir.shape[:2]
        scale = pixel_scale(w / eo.shape[1], h / eo.shape[0])
        t0 = time.thread_time()
        row = {"frame": name, "registered": check_registration(eo, ir, None)}
        cpu_ms.append((time.thread_time() - t0) * 1e3)
        row["registered_full_res"] = check_registration(eo, ir, None, work_width=CONFIRM_WORK_WIDTH)
        for label, (dx, dy) in SHIFTS.items():
            row[label] = check_registration(eo, ir, translation(dx, dy) @ scale)
        table.append(row)
    return table, cpu_ms


def off_as_shipped(table: list[dict], warn_px: float) -> list[str]:
    """Frames whose own registration, as the dataset ships it, measures beyond `warn_px`, confirmed: a judged
    check, not at the search limit, and a second check at twice the resolution judged too and finding the
    same shift within CONFIRM_PX. A WARN built on them reports a real offset, and is counted apart; a weak
    night match that moves with the resolution is not confirmed and its WARNs stay false ones."""
    def confirmed(row) -> bool:
        first, second = row["registered"], row["registered_full_res"]
        return (first.valid and not first.at_limit and first.offset_px > warn_px and second.valid
                and not second.at_limit and math.dist(first.shift_px, second.shift_px) <= CONFIRM_PX)

    return [row["frame"] for row in table if confirmed(row)]


def false_warns(table: list[dict], checks: int, warn_px: float, rng, off_frames=(), health=RegistrationHealth) -> dict:
    """Checks in WARN over `checks` registered checks in random order; `real` counts those whose checks beyond
    the limit all come from `off_frames`."""
    verdict = health(warn_px)
    off_checks = {id(row["registered"]) for row in table if row["frame"] in set(off_frames)}
    warned = real = 0
    longest = run = 0
    for k in rng.integers(0, len(table), checks):
        verdict.record(table[k]["registered"], 0.0)
        misregistered = verdict.state() == "misregistered"
        if misregistered and all(id(c) in off_checks for c in verdict.judged() if c.offset_px > warn_px):
            real += 1
        else:
            warned += misregistered
        run = run + 1 if misregistered else 0
        longest = max(longest, run)
    return {"checks": checks, "checks_in_warn": warned, "checks_in_warn_real_offset": real, "longest_warn_s": longest}


def detection(table: list[dict], trials: int, warn_px: float, rng, shifts=SHIFTS, health=RegistrationHealth) -> dict:
    out = {}
    for label in shifts:
        seconds = []
        for _ in range(trials):
            verdict = health(warn_px)
            for k in rng.integers(0, len(table), 5):
                verdict.record(table[k]["registered"], 0.0)
            detected = None
            for step, k in enumerate(rng.integers(0, len(table), 60), start=1):
                verdict.record(table[k][label], 0.0)
                if verdict.state() == "misregistered":
                    detected = float(step)
                    break
            seconds.append(detected if detected is not None else math.inf)
        finite = [s for s in seconds if math.isfinite(s)]
        out[label] = {"median_s": float(np.median(seconds)), "max_s": max(seconds),
                      "within_limit": sum(s <= DETECTION_LIMIT_S for s in seconds), "trials": trials,
                      "never_detected": len(seconds) - len(finite)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--msrs", default=str(SHARED / "msrs_samples"))
    p.add_argument("--mfnet", default=str(SHARED / "mfnet_subset"))
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--warn-px", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "registration_watch.json"))
    args = p.parse_args(argv)
    results, rows = {}, []
    mfnet = Path(args.mfnet)
    datasets = (("msrs", msrs_pairs(Path(args.msrs))), ("mfnet_val", mfnet_pairs(mfnet)),
                ("mfnet_val_ir_msrs", mfnet_pairs(mfnet, mfnet / "ir_msrs")))
    for dataset, pairs in datasets:
        table, cpu_ms = checks_per_frame(pairs)
        rng = np.random.default_rng(args.seed)
        off = off_as_shipped(table, args.warn_px)
        false = false_warns(table, int(args.minutes * 60), args.warn_px, rng, off)
        found = detection(table, args.trials, args.warn_px, rng)
        cpu_median = float(np.median(cpu_ms))
        results[dataset] = {"frames": len(table), "false": false, "detection": found, "off_as_shipped":
                            {row["frame"]: row["registered"].offset_px for row in table if row["frame"] in off},
                            "check_cpu_ms_median": cpu_median, "core_percent_at_one_check_per_s": cpu_median / 10}
        for d in (8, 12, 16):
            labels = [k for k in SHIFTS if k[2:] == str(d)]
            within = sum(found[k]["within_limit"] for k in labels)
            total = sum(found[k]["trials"] for k in labels)
            rows.append([dataset, f"{d} px (x/y, +/-)", f"{within}/{total}",
                         f"{max(found[k]['median_s'] for k in labels):.0f}",
                         f"{max(found[k]['max_s'] for k in labels):.0f}"])
        rows.append([dataset, f"registered, {args.minutes:g} min", f"{false['checks_in_warn']} of {false['checks']} "
                     f"checks in WARN (+{false['checks_in_warn_real_offset']} on pairs off as shipped: "
                     f"{', '.join(off) or 'none'})", "", f"longest WARN {false['longest_warn_s']} s"])
    print("\nthe node's registration verdict replayed on real frames (1 check/s, median of 5, warn 6 px, at-limit "
          "and consensus rules):\n")
    print_table(["frames", "case", "WARN within 10 s", "median s (worst direction)", "max s"], rows)
    print_table(["frames", "check CPU ms (median)", "% of one core at 1 check/s"],
                [[k, f"{v['check_cpu_ms_median']:.1f}", f"{v['core_percent_at_one_check_per_s']:.2f}"]
                 for k, v in results.items()])
    print(f"\nwrote {write_json(Path(args.out), {'args': vars(args), 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
