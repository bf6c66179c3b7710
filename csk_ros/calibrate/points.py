"""`points`: hand-picked EO/IR correspondences from a file (CSV or YAML) -> Nx2 EO and IR arrays.

CSV: a header naming eo_x, eo_y, ir_x, ir_y (any order, other columns ignored), one point a row.
YAML: a list of {eo: [x, y], ir: [x, y]}. Pixel coordinates as cv2 uses them: pixel centres at integers.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from csk_ros.calibrate.fit import CalibrationRefused

CSV_COLUMNS = ("eo_x", "eo_y", "ir_x", "ir_y")


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise CalibrationRefused(f"no points file {path}")
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _yaml_rows(path)
    try:
        values = np.array(rows, np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as error:
        raise CalibrationRefused(f"{path}: points must be numbers ({error})") from None
    if not np.all(np.isfinite(values)):
        raise CalibrationRefused(f"{path}: a point is not finite")
    return values[:, :2], values[:, 2:]


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CalibrationRefused(f"{path}: CSV header lacks {missing} (needs {', '.join(CSV_COLUMNS)})")
        return [[row[c] for c in CSV_COLUMNS] for row in reader if any((row[c] or "").strip() for c in CSV_COLUMNS)]


def _yaml_rows(path: Path) -> list[list[float]]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, list) or not all(isinstance(p, dict) and "eo" in p and "ir" in p for p in data):
        raise CalibrationRefused(f"{path}: expected a YAML list of {{eo: [x, y], ir: [x, y]}}")
    try:
        return [[*map(float, p["eo"]), *map(float, p["ir"])] for p in data if len(p["eo"]) == len(p["ir"]) == 2]
    except (TypeError, ValueError) as error:
        raise CalibrationRefused(f"{path}: points must be [x, y] numbers ({error})") from None
