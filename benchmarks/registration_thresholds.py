"""Choose the registration verdict's rules and the check's dark-EO match floor on frames no other benchmark
reports on (issue 27).

.venv/bin/python benchmarks/registration_thresholds.py [--pairs ../shared/data/msrs_unlabelled] [--minutes 60]

Every registered pair of `--pairs` (311 MSRS pairs from MFNet's test sequences, no labels) is checked once at
its own registration and once per 8 px shift (x and y, either sign) with the node's check. The check's
validity is a function of its best match and the EO's brightness, so each candidate floor (a frame whose EO
mean grey is below `dark luma` needs a best NCC of at least `floor`) is applied to those checks afterwards,
and the node's verdict (registration_health.py, warn 6 px) is replayed as benchmarks/registration_watch.py
does: `--minutes` of registered checks in random order per seed, and 8 px detection trials. Rows: the
verdict as it was (at-limit matches counted, median alone), with the at-limit rule, with the consensus rule
at each share of warn_px (registration_health.CONSENSUS; rule: the lowest share with 0 checks in WARN),
then the floors under the shipped rules. The floor's rule, fixed before the grid ran: the lowest floor (then
the lowest luma) that gives 0 checks in WARN over the registered minutes of every seed and detects 8 px
within 10 s in >= 99 % of trials. The shipped constants (csk_ros/imaging/registration.py) are what this chose.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS, print_table, write_json  # noqa: E402
from benchmarks.registration import SHARED, translation  # noqa: E402
from benchmarks.registration_watch import DETECTION_LIMIT_S, detection, false_warns  # noqa: E402
from csk_ros.imaging import registration  # noqa: E402
from csk_ros.logic.registration_health import CONSENSUS, RegistrationHealth  # noqa: E402

SHIFTS_8 = {"x+8": (8, 0), "x-8": (-8, 0), "y+8": (0, 8), "y-8": (0, -8)}
LUMAS = (30.0, 40.0, 50.0, 60.0)
CONSENSUS_SHARES = (1.0, 0.75, 0.5)  # rule: the lowest with 0 checks in WARN (the most 8 px detections)
FLOORS = (registration.MIN_MATCH_NCC, 0.20, 0.25, 0.30, 0.35, 0.40)


def unlabelled_pairs(root: Path):
    for name in (root / "list.txt").read_text().split():
        eo = cv2.cvtColor(cv2.imread(str(root / "eo" / f"{name}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        yield name, eo, cv2.imread(str(root / "ir" / f"{name}.png"), cv2.IMREAD_UNCHANGED)


def raw_checks(pairs) -> list[dict]:
    """Each pair's checks with no dark floor (every match above MIN_MATCH_NCC valid)."""
    saved = registration.DARK_MIN_MATCH_NCC
    registration.DARK_MIN_MATCH_NCC = registration.MIN_MATCH_NCC
    try:
        table = []
        for name, eo, ir in pairs:
            h, w = ir.shape[:2]
            scale = registration.pixel_scale(w / eo.shape[1], h / eo.shape[0])
            row = {"frame": name, "registered": registration.check_registration(eo, ir, None)}
            for label, (dx, dy) in SHIFTS_8.items():
                row[label] = registration.check_registration(eo, ir, translation(dx, dy) @ scale)
            table.append(row)
        return table
    finally:
        registration.DARK_MIN_MATCH_NCC = saved


def with_rule(table: list[dict], luma: float, floor: float, at_limit_rule: bool = True) -> list[dict]:
    def apply(check):
        if check.valid and check.eo_luma < luma and check.best_score < floor:
            return dataclasses.replace(check, valid=False)
        return check if at_limit_rule else dataclasses.replace(check, at_limit=False)

    return [{k: (v if k == "frame" else apply(v)) for k, v in row.items()} for row in table]


def evaluate(table: list[dict], minutes: float, trials: int, seeds, warn_px: float,
             health=RegistrationHealth) -> dict:
    """The replay of registration_watch.py with the verdict `health` (a RegistrationHealth factory)."""
    checks = int(minutes * 60)
    warned, longest, within, total = 0, 0, 0, 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        false = false_warns(table, checks, warn_px, rng, health=health)
        warned += false["checks_in_warn"]
        longest = max(longest, false["longest_warn_s"])
        found = detection(table, trials, warn_px, rng, shifts=SHIFTS_8, health=health)
        within += sum(f["within_limit"] for f in found.values())
        total += sum(f["trials"] for f in found.values())
    judged = sum(row["registered"].valid for row in table)
    return {"checks": checks * len(seeds), "checks_in_warn": warned, "longest_warn_s": longest,
            "detected_8px": within, "trials_8px": total, "judged_frames": judged, "frames": len(table)}


class MedianOnly(RegistrationHealth):
    """The verdict before issue 27: the median alone decides (no consensus of single checks)."""

    def _off(self, shift) -> bool:
        return math.hypot(*shift) > self.warn_px


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", default=str(SHARED / "msrs_unlabelled"))
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--warn-px", type=float, default=6.0)
    p.add_argument("--out", default=str(RESULTS / "registration_thresholds.json"))
    args = p.parse_args(argv)
    table = raw_checks(unlabelled_pairs(Path(args.pairs)))
    grid, rows = [], []
    stages = {}
    verdicts = [("as before: at-limit counted, median alone", False, MedianOnly), ("at-limit rule", True, MedianOnly)]
    verdicts += [(f"at-limit + consensus {f:g}", True, partial(RegistrationHealth, consensus=f))
                 for f in CONSENSUS_SHARES]
    verdicts += [(f"as shipped (consensus {CONSENSUS:g})", True, RegistrationHealth)]
    for label, rule, health in verdicts:
        r = evaluate(with_rule(table, 0.0, 0.0, at_limit_rule=rule), args.minutes, args.trials, range(args.seeds),
                     args.warn_px, health)
        stages[label] = r
        rows.append([label, "-", f"{r['judged_frames']}/{r['frames']}", f"{r['checks_in_warn']} of {r['checks']}",
                     r["longest_warn_s"], f"{r['detected_8px']}/{r['trials_8px']}", "-"])
    for floor in FLOORS:
        for luma in LUMAS if floor > registration.MIN_MATCH_NCC else LUMAS[:1]:
            r = evaluate(with_rule(table, luma, floor), args.minutes, args.trials, range(args.seeds), args.warn_px)
            r.update(luma=luma, floor=floor)
            r["meets"] = r["checks_in_warn"] == 0 and r["detected_8px"] >= 0.99 * r["trials_8px"]
            grid.append(r)
            rows.append([f"{floor:.2f}", f"{luma:g}" if floor > registration.MIN_MATCH_NCC else "-",
                         f"{r['judged_frames']}/{r['frames']}", f"{r['checks_in_warn']} of {r['checks']}",
                         r["longest_warn_s"], f"{r['detected_8px']}/{r['trials_8px']}", "yes" if r["meets"] else "no"])
    meeting = [g for g in grid if g["meets"]]
    chosen = min(meeting, key=lambda g: (g["floor"], g["luma"])) if meeting else None
    print(f"\nregistration verdict on {args.pairs} (1 check/s, median of 5, warn {args.warn_px:g} px; floors "
          "under the at-limit and consensus rules;"
          f" {args.seeds} seeds x {args.minutes:g} min; 8 px detection within {DETECTION_LIMIT_S:g} s):\n")
    print_table(["dark floor NCC", "dark luma <", "judged frames", "checks in WARN", "longest WARN s",
                 "8 px within 10 s", "meets"], rows)
    if chosen is None:
        print("chosen: none meets the rule")
    elif chosen["floor"] <= registration.MIN_MATCH_NCC:
        print(f"chosen: no dark floor (every frame at MIN_MATCH_NCC {registration.MIN_MATCH_NCC})")
    else:
        print(f"chosen: floor {chosen['floor']:.2f} below luma {chosen['luma']:g}")
    print(f"shipped: DARK_MIN_MATCH_NCC {registration.DARK_MIN_MATCH_NCC} below luma {registration.DARK_EO_LUMA:g}")
    print(f"wrote {write_json(Path(args.out), {'args': vars(args), 'stages': stages, 'grid': grid, 'chosen': chosen})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
