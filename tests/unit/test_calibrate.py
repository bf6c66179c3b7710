"""The EO->IR calibration tool (csk_ros.calibrate) on synthetic rigs with a known homography: boards rendered
into an EO view and seen by a simulated thermal camera (warped, blurred, inverted, low contrast, noisy), hand
points, and camera models. The fit must recover the true matrix, and refuse what cannot give one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from csk_ros.calibrate import board, cameras, output, points
from csk_ros.calibrate.fit import CalibrationRefused, fit_homography, transfer
from csk_ros.logic.config import parse_homography

ROOT = Path(__file__).resolve().parents[2]
EO_SIZE, IR_SIZE = (640, 480), (640, 512)
H_TRUE = np.array([[0.92, 0.03, 35.0], [-0.02, 0.95, 40.0], [2e-5, -1e-5, 1.0]])
SQUARE = 48  # board pixels per square (the board is rendered large, then warped down)
# Where the boards sit (fractions of the EO frame): corners and centre, as docs/registration.md asks for.
SPOTS = [(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73), (0.5, 0.5), (0.5, 0.3)]


def eo_grid() -> np.ndarray:
    ys, xs = np.mgrid[0:EO_SIZE[1]:16, 0:EO_SIZE[0]:16]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


def grid_error(homography: np.ndarray) -> np.ndarray:
    """|H(p) - H_true(p)| in IR pixels over a grid of the whole EO image."""
    return np.linalg.norm(transfer(homography, eo_grid()) - transfer(H_TRUE, eo_grid()), axis=1)


def board_image(pattern: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The printed target (white margin of one square) and its ideal points in board pixels (pixel centres
    at integers: a square edge at k * SQUARE lies at k * SQUARE - 0.5)."""
    cols, rows = size
    image = np.full(((rows + 3) * SQUARE, (cols + 3) * SQUARE), 255, np.uint8)
    if pattern == "chessboard":
        for j in range(rows + 1):
            for i in range(cols + 1):
                if (i + j) % 2 == 0:
                    image[(j + 1) * SQUARE:(j + 2) * SQUARE, (i + 1) * SQUARE:(i + 2) * SQUARE] = 0
        ideal = [((i + 2) * SQUARE - 0.5, (j + 2) * SQUARE - 0.5) for j in range(rows) for i in range(cols)]
    else:
        ideal = [((i + 1.5) * SQUARE, (j + 1.5) * SQUARE) for j in range(rows) for i in range(cols)]
        for x, y in ideal:  # 4 fractional bits: centres at exactly (x, y)
            cv2.circle(image, (round(x * 16), round(y * 16)), round(0.3 * SQUARE * 16), 0, -1, cv2.LINE_AA, 4)
    return image, np.array(ideal)


def board_pose(k: int, board_shape: tuple[int, int]) -> np.ndarray:
    """Board pixels -> EO pixels: a tilted, turned quad around SPOTS[k] (perspective from jittered corners)."""
    rng = np.random.default_rng(100 + k)
    bh, bw = board_shape
    corners = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]], np.float64) - 0.5
    a = np.radians(rng.uniform(-15, 15))
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    placed = ((corners - corners.mean(0)) * 0.45 * EO_SIZE[0] / bw) @ turn.T
    placed *= 1 + rng.uniform(-0.1, 0.1, (4, 1))
    placed += [SPOTS[k][0] * EO_SIZE[0], SPOTS[k][1] * EO_SIZE[1]]
    return cv2.getPerspectiveTransform(np.float32(corners), np.float32(placed))


def textured_background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((EO_SIZE[1], EO_SIZE[0]), 128, np.float32)
    for _ in range(40):
        cv2.circle(image, (int(rng.integers(0, EO_SIZE[0])), int(rng.integers(0, EO_SIZE[1]))),
                   int(rng.integers(5, 50)), float(rng.uniform(60, 200)), -1)
    return cv2.GaussianBlur(image, (0, 0), 2)


def eo_view(pattern: str, size: tuple[int, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB EO image of the board in pose k over a textured background (rendered at 2x, area-averaged down),
    and the true target points in EO pixels."""
    target, ideal = board_image(pattern, size)
    pose = board_pose(k, target.shape)
    twice = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    big = (EO_SIZE[0] * 2, EO_SIZE[1] * 2)
    warped = cv2.warpPerspective(target.astype(np.float32), twice @ pose, big, flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(np.ones(target.shape, np.float32), twice @ pose, big, flags=cv2.INTER_LINEAR)
    grey = cover * warped + (1 - cover) * cv2.resize(textured_background(k), big)
    grey = cv2.resize(grey, EO_SIZE, interpolation=cv2.INTER_AREA)
    rgb = np.stack([grey * 0.9 + 10, grey, grey * 0.95], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8), transfer(pose, ideal)


def ir_view(eo: np.ndarray, seed: int, depth16: bool = False) -> np.ndarray:
    """The simulated thermal camera: the EO view through H_TRUE, blurred, inverted, at a quarter of the
    contrast, with noise; optionally as 16-bit counts."""
    rng = np.random.default_rng(seed)
    grey = cv2.cvtColor(eo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ir = cv2.warpPerspective(grey, H_TRUE, IR_SIZE, flags=cv2.INTER_LINEAR, borderValue=128)
    ir = 100 + 0.25 * (cv2.GaussianBlur(255 - ir, (0, 0), 1.5) - 128) + rng.normal(0, 2, ir.shape)
    ir = np.clip(ir, 0, 255)
    return (ir * 37 + 5000).astype(np.uint16) if depth16 else ir.astype(np.uint8)


def rig_images(pattern: str, size: tuple[int, int], pairs: int = 6) -> list[tuple[str, np.ndarray, np.ndarray]]:
    images = []
    for k in range(pairs):
        eo, _ = eo_view(pattern, size, k)
        images.append((f"{k:02d}", eo, ir_view(eo, k, depth16=k % 2 == 1)))
    return images


@pytest.fixture(scope="module")
def chessboard_rig():
    return rig_images("chessboard", (9, 6))


@pytest.mark.parametrize("pattern, size", [("chessboard", (9, 6)), ("circles", (7, 5))])
def test_the_board_fit_recovers_the_true_homography(pattern, size, chessboard_rig):
    images = chessboard_rig if pattern == "chessboard" else rig_images(pattern, size)
    result = board.calibrate_images(images, pattern, size, max_rms_px=1.0, min_pairs=3)
    assert len(result.pairs) == 6 and not result.skipped
    assert result.fit.rms_px < 0.5 and all(p.rms_px < 0.5 for p in result.pairs)
    assert grid_error(result.fit.homography).max() < 0.5


def ideal_corners(pairs: int) -> np.ndarray:
    target, ideal = board_image("chessboard", (9, 6))
    return np.concatenate([transfer(board_pose(k, target.shape), ideal) for k in range(pairs)])


def test_corner_noise_of_1_px_costs_at_most_0_3_px_with_six_boards():
    """sigma = 1 px per coordinate on BOTH cameras' corners (a poor detector), 6 boards of 9x6 corners
    spread over the view: the recovered matrix stays within 0.3 px RMS of the truth over the whole image."""
    eo = ideal_corners(6)
    ir = transfer(H_TRUE, eo)
    errors = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        fit = fit_homography(eo + rng.normal(0, 1, eo.shape), ir + rng.normal(0, 1, ir.shape), max_rms_px=3.0)
        errors.append(float(np.sqrt(np.mean(grid_error(fit.homography) ** 2))))
        assert 1.5 < fit.rms_px < 2.3  # residuals of two 1-px noises: sqrt(2 * 2) px minus the 8 fitted dof
    assert np.mean(errors) <= 0.3, errors


def test_grid_numbering_is_reconciled_across_pairs():
    """Renumber the IR corners of some pairs by grid symmetries (what a polarity flip or a board turned
    upside down does to the detector): the fit must still find the one true homography."""
    target, ideal = board_image("chessboard", (9, 6))
    moves = board.grid_symmetries((9, 6))
    pairs = []
    for k in range(4):
        eo = transfer(board_pose(k, target.shape), ideal)
        pairs.append(board.BoardPair(str(k), eo, transfer(H_TRUE, eo)[moves[k % len(moves)]]))
    fixed = board.reconcile_order(pairs, (9, 6))
    fit = fit_homography(np.concatenate([p.eo for p in fixed]), np.concatenate([p.ir for p in fixed]), 0.01)
    assert grid_error(fit.homography).max() < 1e-4
    for move in moves:  # one pair: every numbering fits some homography; the unturned, unmirrored one is kept
        eo = pairs[0].eo
        single = board.reconcile_order([board.BoardPair("one", eo, transfer(H_TRUE, eo)[move])], (9, 6))
        assert np.allclose(single[0].ir, transfer(H_TRUE, eo))


def test_too_few_usable_pairs_are_refused(chessboard_rig):
    blank = np.full((IR_SIZE[1], IR_SIZE[0]), 100, np.uint8)
    images = [chessboard_rig[0], ("no-ir", chessboard_rig[1][1], blank)]
    with pytest.raises(CalibrationRefused, match=r"too few usable pairs: 1 of 2 .*min-pairs is 3.*no-ir: .* in IR"):
        board.calibrate_images(images, "chessboard", (9, 6), max_rms_px=1.0, min_pairs=3)


def test_three_hand_points_are_refused(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("eo_x,eo_y,ir_x,ir_y\n10,10,20,20\n300,10,290,25\n10,300,22,280\n")
    with pytest.raises(CalibrationRefused, match="too few points: 3"):
        fit_homography(*points.read_points(path), max_rms_px=1.0)


def test_a_distortion_no_homography_explains_is_refused():
    """Strong barrel distortion of the IR side: no single homography fits, the RMS says so."""
    eo = ideal_corners(6)
    ir = transfer(H_TRUE, eo)
    centre = np.array([IR_SIZE[0] / 2, IR_SIZE[1] / 2])
    r2 = np.sum(((ir - centre) / IR_SIZE[0]) ** 2, axis=1, keepdims=True)
    with pytest.raises(CalibrationRefused, match=r"fit RMS .* > --max-rms 1 px"):
        fit_homography(eo, centre + (ir - centre) * (1 - 0.3 * r2), max_rms_px=1.0)


def test_a_pair_from_another_rig_is_refused_by_name(chessboard_rig):
    """One pair's IR through another homography (a camera knocked during the capture): named in the refusal."""
    name, eo, ir = chessboard_rig[5]
    knocked = cv2.warpPerspective(ir, np.array([[1.0, 0.0, 6.0], [0.0, 1.0, -4.0], [0.0, 0.0, 1.0]]), IR_SIZE,
                                  borderMode=cv2.BORDER_REPLICATE)
    with pytest.raises(CalibrationRefused, match=r"fit RMS .* worst point #\d+ \(pair 05\)"):
        board.calibrate_images([*chessboard_rig[:5], (name, eo, knocked)], "chessboard", (9, 6), 1.0, 3)


@pytest.mark.parametrize("suffix", [".csv", ".yaml"])
def test_hand_points_from_csv_or_yaml(tmp_path, suffix):
    rng = np.random.default_rng(1)
    eo = rng.uniform([0, 0], EO_SIZE, (12, 2))
    ir = transfer(H_TRUE, eo)
    path = tmp_path / f"points{suffix}"
    if suffix == ".csv":
        path.write_text("ir_x,ir_y,eo_x,eo_y,label\n" + "".join(f"{i[0]},{i[1]},{e[0]},{e[1]},p\n"
                                                                for e, i in zip(eo, ir)))
    else:
        path.write_text(yaml.safe_dump([{"eo": e.tolist(), "ir": i.tolist()} for e, i in zip(eo, ir)]))
    read_eo, read_ir = points.read_points(path)
    assert np.allclose(read_eo, eo) and np.allclose(read_ir, ir)
    assert grid_error(fit_homography(read_eo, read_ir, 1.0).homography).max() < 1e-4


def rig_cameras():
    eo = cameras.CameraInfo(np.array([[600.0, 0, 319.5], [0, 600.0, 239.5], [0, 0, 1]]), EO_SIZE, False)
    ir = cameras.CameraInfo(np.array([[520.0, 0, 322.0], [0, 515.0, 250.0], [0, 0, 1]]), IR_SIZE, False)
    rotation = cameras.rpy_matrix(0.01, -0.02, 0.015)
    return eo, ir, rotation, np.array([0.08, -0.01, 0.005])


def test_the_plane_homography_is_exact_at_its_distance_only():
    eo, ir, rotation, translation = rig_cameras()
    h = cameras.plane_homography(eo, ir, rotation, translation, 5.0)
    pixels = cameras.eo_grid(eo)
    exact = cameras.project_at_distance(eo, ir, rotation, translation, pixels, 5.0)
    assert np.abs(transfer(h, pixels) - exact).max() < 1e-6
    table = cameras.parallax_table(eo, ir, rotation, translation, h, [1.0, 2.0, 5.0, 10.0, 20.0])
    by_distance = {row["distance_m"]: row for row in table}
    assert by_distance[5.0]["max_px"] < 1e-6
    assert by_distance[1.0]["max_px"] > by_distance[2.0]["max_px"] > by_distance[5.0]["max_px"]
    assert by_distance[20.0]["max_px"] > by_distance[10.0]["max_px"] > by_distance[5.0]["max_px"]
    # The size of it: baseline 8 cm, f 520 px, 1 m vs 5 m: 520 * 0.08 * (1 - 1/5) = 33 px.
    assert by_distance[1.0]["median_px"] == pytest.approx(33.3, rel=0.1)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "csk_ros.calibrate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=path))


def write_rig(folder: Path, images) -> tuple[Path, Path]:
    eo_dir, ir_dir = folder / "eo", folder / "ir"
    eo_dir.mkdir(parents=True)
    ir_dir.mkdir()
    for name, eo, ir in images:
        cv2.imwrite(str(eo_dir / f"{name}.png"), cv2.cvtColor(eo, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(ir_dir / f"{name}.png"), ir)
    return eo_dir, ir_dir


def test_cli_board_writes_a_params_fragment_the_node_accepts(tmp_path, chessboard_rig):
    eo_dir, ir_dir = write_rig(tmp_path, chessboard_rig[:4])
    done = run_cli("board", str(eo_dir), str(ir_dir), "--pattern", "chessboard", "--size", "9x6", "--out", "calib",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fragment = (tmp_path / "calib" / output.PARAMS_FILE).read_text()
    values = yaml.safe_load(fragment)["segment_node"]["ros__parameters"]
    assert list(values) == ["eo_to_ir_homography"]  # the EO size is a comment, not a parameter
    assert "# expected_eo_size: [640, 480]" in fragment
    assert grid_error(parse_homography(values["eo_to_ir_homography"])).max() < 0.5
    report = json.loads((tmp_path / "calib" / output.REPORT_FILE).read_text())
    assert report["rms_px"] < 0.5 and len(report["pairs"]) == 4
    picture = cv2.imread(str(tmp_path / "calib" / output.CHECK_FILE))
    assert picture.shape == (IR_SIZE[1], IR_SIZE[0], 3) and (picture == output.EDGE_COLOUR).all(axis=2).any()
    checked = run_cli("check", str(eo_dir), str(ir_dir), "--params", "calib/eo_to_ir.yaml", "--json", "c.json",
                      cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "median offset" in checked.stdout
    assert json.loads((tmp_path / "c.json").read_text())["summary"]["pairs"] == 4


def test_cli_refusals_exit_2_with_one_line(tmp_path, chessboard_rig):
    eo_dir, ir_dir = write_rig(tmp_path, chessboard_rig[:1])
    done = run_cli("board", str(eo_dir), str(ir_dir), "--size", "9x6", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("refused: too few usable pairs")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "calibration").exists()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump([{"eo": [0, 0], "ir": [1, 1]}] * 3))
    done = run_cli("points", "p.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "too few points" in done.stderr


def test_cli_cameras_prints_the_parallax_table(tmp_path):
    eo, ir, rotation, translation = rig_cameras()
    for name, info in (("eo", eo), ("ir", ir)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
            "image_width": info.size[0], "image_height": info.size[1], "camera_name": name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": info.matrix.ravel().tolist()},
            "distortion_model": "plumb_bob", "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5}}))
    (tmp_path / "pose.yaml").write_text(yaml.safe_dump({"R": rotation.ravel().tolist(), "t": translation.tolist()}))
    done = run_cli("cameras", "--eo-info", "eo.yaml", "--ir-info", "ir.yaml", "--extrinsics", "pose.yaml",
                   "--distance", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exact only at that distance" in done.stdout
    written = parse_homography(yaml.safe_load((tmp_path / "calibration" / "eo_to_ir.yaml").read_text())
                               ["segment_node"]["ros__parameters"]["eo_to_ir_homography"])
    assert np.allclose(written, cameras.plane_homography(eo, ir, rotation, translation, 5.0), rtol=1e-9)
    report = json.loads((tmp_path / "calibration" / "report.json").read_text())
    assert [r["distance_m"] for r in report["parallax"]] == [1.0, 2.0, 5.0, 10.0, 20.0]
