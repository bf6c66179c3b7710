"""What every fitting command leaves behind in --out: the params fragment the node loads, the figures
behind it (report.json), and a picture to judge it by eye (check.png)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from csk_ros.imaging.registration import eo_grey, ir_to_uint8

PARAMS_FILE, REPORT_FILE, CHECK_FILE = "eo_to_ir.yaml", "report.json", "check.png"
EDGE_COLOUR = (0, 255, 0)  # BGR: green EO edges over the grey IR


def params_fragment(homography: np.ndarray, eo_size: tuple[int, int] | None, ir_size: tuple[int, int] | None,
                    command: str) -> str:
    """ROS 2 params YAML for segment_node. The image sizes are comments: the node has no such parameters,
    but the matrix is only right for EO images of that size."""
    values = ", ".join(repr(float(v)) for v in np.asarray(homography, np.float64).ravel())
    lines = [f"# EO->IR homography from `{command}` ({time.strftime('%Y-%m-%d %H:%M')})",
             "# Pass this file with --params-file (or merge the line into your params_file): see docs/registration.md"]
    if eo_size:
        lines.append(f"# expected_eo_size: [{eo_size[0]}, {eo_size[1]}]  (EO width, height this matrix is for)")
    if ir_size:
        lines.append(f"# ir_size: [{ir_size[0]}, {ir_size[1]}]")
    lines += ["segment_node:", "  ros__parameters:", f"    eo_to_ir_homography: [{values}]", ""]
    return "\n".join(lines)


def check_image(eo: np.ndarray, ir: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """The IR image in grey with the edges of the EO warped into it drawn on top: on a good calibration they
    lie on the thermal outlines everywhere, near and far."""
    ir8 = ir_to_uint8(ir)
    size = (ir8.shape[1], ir8.shape[0])
    warped = cv2.warpPerspective(eo_grey(eo), homography, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    covered = cv2.warpPerspective(np.full(eo.shape[:2], 255, np.uint8), homography, size, flags=cv2.INTER_NEAREST)
    edges = cv2.Canny(cv2.GaussianBlur(warped, (0, 0), 1.0), 50, 150) > 0
    edges &= cv2.erode(covered, np.ones((5, 5), np.uint8)) > 0
    picture = cv2.cvtColor(ir8, cv2.COLOR_GRAY2BGR)
    picture[edges] = EDGE_COLOUR
    return picture


def write_outputs(out_dir: str | Path, homography: np.ndarray, report: dict, command: str,
                  eo_size: tuple[int, int] | None = None, ir_size: tuple[int, int] | None = None,
                  picture: np.ndarray | None = None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / PARAMS_FILE, out / REPORT_FILE]
    written[0].write_text(params_fragment(homography, eo_size, ir_size, command))
    payload = dict(report, homography=np.asarray(homography).tolist(), expected_eo_size=eo_size, ir_size=ir_size,
                   command=command, written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    written[1].write_text(json.dumps(payload, indent=2, default=float))
    if picture is not None:
        written.append(out / CHECK_FILE)
        cv2.imwrite(str(written[-1]), picture)
    return written
