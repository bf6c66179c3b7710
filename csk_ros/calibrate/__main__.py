"""python -m csk_ros.calibrate {board,points,cameras,check}: see docs/registration.md.

Exit status: 0 done, 2 refused (the reason on one line, on stderr)."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np

from csk_ros.calibrate import board, cameras, check, output, points
from csk_ros.calibrate.detect import PATTERNS
from csk_ros.calibrate.fit import CalibrationRefused, fit_homography
from csk_ros.calibrate.images import read_eo, read_ir

REFUSED = 2


def grid_size(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS, e.g. 9x6, got {text!r}") from None
    if cols < 2 or rows < 2:
        raise argparse.ArgumentTypeError(f"the grid needs at least 2x2 points, got {text!r}")
    return cols, rows


def distance_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected distances in m separated by commas, got {text!r}") from None


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def print_matrix(homography: np.ndarray) -> None:
    print("eo_to_ir_homography:", json.dumps([float(f"{v:.9g}") for v in homography.ravel()]))


def picture_from(args) -> tuple[np.ndarray | None, np.ndarray | None]:
    if bool(args.eo_image) != bool(args.ir_image):
        raise CalibrationRefused("check.png needs both --eo-image and --ir-image")
    return (read_eo(args.eo_image), read_ir(args.ir_image)) if args.eo_image else (None, None)


def size_of(image: np.ndarray | None) -> tuple[int, int] | None:
    return None if image is None else (image.shape[1], image.shape[0])


def finish(args, homography, report, eo_size, ir_size, eo=None, ir=None) -> int:
    picture = output.check_image(eo, ir, homography) if eo is not None else None
    written = output.write_outputs(args.out, homography, report, args.command_line, eo_size, ir_size, picture)
    print_matrix(homography)
    print("wrote", ", ".join(str(p) for p in written))
    return 0


def run_board(args) -> int:
    result, images = board.calibrate_folders(args.eo_dir, args.ir_dir, args.pattern, args.size, args.max_rms,
                                             args.min_pairs)
    print_table(["pair", "points", "rms_px"], [[p.name, len(p.eo), p.rms_px] for p in result.pairs])
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    fit = result.fit
    print(f"overall RMS {fit.rms_px:.3f} px over {fit.points} points of {len(result.pairs)} pairs "
          f"({fit.inliers} RANSAC inliers, max {fit.max_error_px:.2f} px; --max-rms {args.max_rms:g})")
    report = {"method": "board", "pattern": args.pattern, "size": list(args.size), "rms_px": fit.rms_px,
              "inlier_rms_px": fit.inlier_rms_px, "max_error_px": fit.max_error_px, "points": fit.points,
              "inliers": fit.inliers, "skipped": result.skipped,
              "pairs": {p.name: {"points": len(p.eo), "rms_px": p.rms_px} for p in result.pairs}}
    used = {p.name for p in result.pairs}
    _, eo, ir = next(image for image in images if image[0] in used)
    return finish(args, fit.homography, report, size_of(eo), size_of(ir), eo, ir)


def run_points(args) -> int:
    eo_points, ir_points = points.read_points(args.file)
    fit = fit_homography(eo_points, ir_points, args.max_rms)
    print_table(["#", "eo_x", "eo_y", "ir_x", "ir_y", "error_px"],
                [[i, *map(float, e), *map(float, r), float(err)]
                 for i, (e, r, err) in enumerate(zip(eo_points, ir_points, fit.errors_px))])
    print(f"RMS {fit.rms_px:.3f} px over {fit.points} points ({fit.inliers} RANSAC inliers; --max-rms "
          f"{args.max_rms:g})")
    report = {"method": "points", "rms_px": fit.rms_px, "inlier_rms_px": fit.inlier_rms_px,
              "max_error_px": fit.max_error_px, "points": fit.points, "inliers": fit.inliers,
              "errors_px": fit.errors_px.tolist()}
    eo, ir = picture_from(args)
    return finish(args, fit.homography, report, size_of(eo), size_of(ir), eo, ir)


def run_cameras(args) -> int:
    eo_info, ir_info = cameras.read_camera_info(args.eo_info), cameras.read_camera_info(args.ir_info)
    rotation, translation = cameras.read_extrinsics(args.extrinsics)
    homography = cameras.plane_homography(eo_info, ir_info, rotation, translation, args.distance)
    table = cameras.parallax_table(eo_info, ir_info, rotation, translation, homography,
                                   sorted(set(args.distances) | {args.distance}))
    print(f"homography for the plane facing the EO camera at {args.distance:g} m: exact only at that distance; "
          "scenes nearer or farther are off by the parallax below (IR pixels, over a grid of the EO image)")
    print_table(["distance_m", "max_px", "median_px"], [[r["distance_m"], r["max_px"], r["median_px"]] for r in table])
    print("lens distortion is ignored (the node warps images as they arrive): the images must be rectified"
          + (" (these camera_info files have non-zero distortion)" if eo_info.distorted or ir_info.distorted else ""))
    report = {"method": "cameras", "distance_m": args.distance, "baseline_m": float(np.linalg.norm(translation)),
              "parallax": table, "distortion_ignored": True}
    eo, ir = picture_from(args)
    return finish(args, homography, report, eo_info.size, ir_info.size, eo, ir)


def run_check(args) -> int:
    homography = (check.homography_from_params(args.params) if args.params
                  else check.homography_from_values(args.homography))
    if args.bag:
        if args.eo_dir or args.ir_dir:
            raise CalibrationRefused("give either EO_DIR IR_DIR or --bag BAG, not both")
        rows = check.check_bag(args.bag, homography, args.every, args.search_px, args.eo_topic, args.ir_topic)
    elif args.eo_dir and args.ir_dir:
        rows = check.check_folders(args.eo_dir, args.ir_dir, homography, args.search_px)
    else:
        raise CalibrationRefused("check needs EO_DIR IR_DIR (image folders) or --bag BAG")
    print_table(["pair", "score", "best", "dx_px", "dy_px", "offset_px", "note"],
                [[r["pair"], r["score"], r["best_score"], r["dx_px"], r["dy_px"], r["offset_px"], r["note"]]
                 for r in rows])
    total = check.summary(rows)
    print(f"median offset {total['median_offset_px']:.2f} px (max {total['max_offset_px']:.2f}) over "
          f"{total['judged']} of {total['pairs']} pairs that could be judged")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        Path(args.json).write_text(json.dumps({"pairs": clean, "summary": total}, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m csk_ros.calibrate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def with_fit(cmd):
        cmd.add_argument("--max-rms", type=float, default=1.0, help="refuse a fit with a larger RMS (IR px)")

    def with_out(cmd, images: bool):
        cmd.add_argument("--out", default="calibration", help="output folder (eo_to_ir.yaml, report.json, check.png)")
        if images:
            cmd.add_argument("--eo-image", help="an EO image, for check.png (with --ir-image)")
            cmd.add_argument("--ir-image", help="the IR image of the same moment")

    b = sub.add_parser("board", help="fit from image pairs of a chessboard or circle grid")
    b.add_argument("eo_dir")
    b.add_argument("ir_dir")
    b.add_argument("--pattern", choices=PATTERNS, default="chessboard")
    b.add_argument("--size", type=grid_size, required=True,
                   help="COLSxROWS: inner corners of a chessboard, circles of a symmetric circle grid")
    b.add_argument("--min-pairs", type=int, default=3, help="refuse with fewer pairs showing the target in both")
    with_fit(b)
    with_out(b, images=False)
    b.set_defaults(run=run_board)

    pt = sub.add_parser("points", help="fit from hand-picked EO/IR point pairs (CSV or YAML)")
    pt.add_argument("file")
    with_fit(pt)
    with_out(pt, images=True)
    pt.set_defaults(run=run_points)

    c = sub.add_parser("cameras", help="the plane-induced homography from camera_info files and the EO->IR pose")
    c.add_argument("--eo-info", required=True, help="EO camera_info YAML (ROS camera_calibration format)")
    c.add_argument("--ir-info", required=True, help="IR camera_info YAML")
    c.add_argument("--extrinsics", required=True, help="YAML: R (3x3) or rpy (rad), t (m); x_ir = R x_eo + t")
    c.add_argument("--distance", type=float, required=True, help="distance (m) of the plane the homography is for")
    c.add_argument("--distances", type=distance_list, default=[1.0, 2.0, 5.0, 10.0, 20.0],
                   help="distances (m) of the parallax table, comma separated")
    with_out(c, images=True)
    c.set_defaults(run=run_cameras)

    k = sub.add_parser("check", help="score a homography on recorded pairs (the node's live check)")
    k.add_argument("eo_dir", nargs="?", help="EO images (with IR_DIR), or use --bag")
    k.add_argument("ir_dir", nargs="?")
    k.add_argument("--bag", help="a rosbag2 (sqlite3 or MCAP) with EO and IR image topics, paired by stamp")
    k.add_argument("--every", type=int, default=10, help="with --bag: every N-th pair (default 10)")
    k.add_argument("--eo-topic", help="with --bag: the EO topic (default: the one named like eo/rgb/color)")
    k.add_argument("--ir-topic", help="with --bag: the IR topic (default: the one named like ir/thermal)")
    source = k.add_mutually_exclusive_group(required=True)
    source.add_argument("--homography", type=float, nargs="+", help="9 numbers row-major, or 0 for none")
    source.add_argument("--params", help="a params YAML holding eo_to_ir_homography")
    k.add_argument("--search-px", type=int, default=24, help="largest shift searched (IR px)")
    k.add_argument("--json", help="also write the table and summary as JSON")
    k.set_defaults(run=run_check)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "csk_ros.calibrate", *argv])
    try:
        return args.run(args)
    except CalibrationRefused as refusal:
        print(f"refused: {refusal}", file=sys.stderr)
        return REFUSED


if __name__ == "__main__":
    sys.exit(main())
