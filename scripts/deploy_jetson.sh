#!/usr/bin/env bash
# Deploy csk_ros on an NVIDIA Jetson: checks the platform, builds the TensorRT
# engines ON THE DEVICE, verifies them against ONNX Runtime, colcon-builds the
# package and (optionally) installs a systemd service.
#
#   scripts/deploy_jetson.sh [options] BUNDLE_DIR
#   scripts/deploy_jetson.sh --uninstall [--workspace DIR] [--venv DIR] [--dry-run]
#   scripts/deploy_jetson.sh --undo-net-buffers [--dry-run]
#
# Options:
#   --workspace DIR      colcon workspace (default ~/csk_ws)
#   --venv DIR           Python venv (default WORKSPACE/venv), created with
#                        --system-site-packages: JetPack's TensorRT, OpenCV and
#                        numpy stay visible and the system packages are never touched
#   --precision P        fp16 (default), fp32 or int8 (int8: the bundle's Q/DQ
#                        graphs, else --calib-images on TensorRT 10)
#   --calib-images DIR   real EO/IR images for calibrator INT8
#   --min-agreement F    engine vs ONNX Runtime CPU mask agreement (default 0.99)
#   --gpu-check          opt-in, the first deploy on a new device: before the
#                        deployed engines are built, python -m engines.gpu_check
#                        builds fp16 (and, with --precision int8, int8) engines,
#                        compares them with ONNX Runtime, times every backend and
#                        writes BUNDLE/gpu_check.json; a parity failure stops here
#   --max-clocks         opt-in: nvpmodel -m 0 (MAXN) and jetson_clocks before
#                        building (TensorRT's tactic timing depends on the clocks)
#   --service            install and start a systemd unit (restart on failure)
#   --eo-topic T, --ir-topic T   camera topics for the service
#   --net-buffers        opt-in: raise net.core.rmem_max / wmem_max to 4 MB
#                        (only for camera frames from ANOTHER host over UDP)
#   --undo-net-buffers   remove that sysctl file again
#   --uninstall          remove what this script installed (service, venv,
#                        workspace link and build of csk_ros, sysctl file);
#                        the bundle and its engines stay
#   --dry-run            print every command instead of running it (the
#                        read-only platform probes still run)
#
# Supported: JetPack 6.1 / 6.2 (L4T R36.4, CUDA 12.6, TensorRT 10.3, Python
# 3.10) and JetPack 7.2 (CUDA 13, TensorRT 10.16, Python 3.12), with a ROS 2
# Humble, Jazzy or Kilted environment sourced. Anything else is refused with
# the reason. Test hooks: CSK_NV_TEGRA_RELEASE (default /etc/nv_tegra_release),
# CSK_SYSTEMD_DIR (/etc/systemd/system), CSK_SYSCTL_DIR (/etc/sysctl.d).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nv_tegra_release=${CSK_NV_TEGRA_RELEASE:-/etc/nv_tegra_release}
unit_name=csk-ros-segment.service
unit_file=${CSK_SYSTEMD_DIR:-/etc/systemd/system}/$unit_name
sysctl_file=${CSK_SYSCTL_DIR:-/etc/sysctl.d}/60-csk-ros-dds.conf

# Python packages installed into the venv, per CUDA major version (cuda-python
# must match the driver's CUDA: 13.x needs driver >= 580 and has no cuda.cudart;
# same table as csk_ros.backends.trt_build.CUDA_PYTHON_PINS). The rest is common.
cuda_python_pin() {
    case "$1" in
        12) echo "cuda-python>=12.6,<13" ;;
        13) echo "cuda-python>=13,<14" ;;
        *) return 1 ;;
    esac
}
COMMON_PINS=("onnxruntime==1.20.1" "onnx==1.17.0" "numpy>=1.26,<2" "PyYAML>=6.0")

workspace="$HOME/csk_ws"
venv=""
precision=fp16
calib_images=""
min_agreement=0.99
max_clocks=0
gpu_check=0
service=0
net_buffers=0
undo_net_buffers=0
uninstall=0
dry_run=0
eo_topic=/camera/color/image_raw
ir_topic=/camera/thermal/image_raw
positional=()

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "error: $*" >&2; exit 2; }
say() { echo "== $*"; }
# Print a command (shell-quoted), then run it unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$dry_run" = 0 ]; then "$@"; fi
}
# Write a file (via sudo tee when it is not ours), printing its content.
write_file() {
    local path=$1 content=$2 sudo=${3:-}
    printf '+ %stee %q <<EOF\n%s\nEOF\n' "${sudo:+sudo }" "$path" "$content"
    if [ "$dry_run" = 0 ]; then
        if [ -n "$sudo" ]; then printf '%s\n' "$content" | sudo tee "$path" >/dev/null
        else printf '%s\n' "$content" >"$path"; fi
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --workspace) workspace=${2:?--workspace needs a directory}; shift 2 ;;
        --venv) venv=${2:?--venv needs a directory}; shift 2 ;;
        --precision) precision=${2:?--precision needs fp32, fp16 or int8}; shift 2 ;;
        --calib-images) calib_images=${2:?--calib-images needs a directory}; shift 2 ;;
        --min-agreement) min_agreement=${2:?--min-agreement needs a fraction}; shift 2 ;;
        --eo-topic) eo_topic=${2:?--eo-topic needs a topic}; shift 2 ;;
        --ir-topic) ir_topic=${2:?--ir-topic needs a topic}; shift 2 ;;
        --max-clocks) max_clocks=1; shift ;;
        --gpu-check) gpu_check=1; shift ;;
        --service) service=1; shift ;;
        --net-buffers) net_buffers=1; shift ;;
        --undo-net-buffers) undo_net_buffers=1; shift ;;
        --uninstall) uninstall=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
# Older form: BUNDLE_DIR [WORKSPACE] [PRECISION]
[ "${#positional[@]}" -ge 2 ] && workspace=${positional[1]}
[ "${#positional[@]}" -ge 3 ] && precision=${positional[2]}
venv=${venv:-$workspace/venv}
case "$precision" in fp32|fp16|int8) ;; *) die "--precision must be fp32, fp16 or int8, got '$precision'" ;; esac
[ "$dry_run" = 1 ] && say "dry run: commands are printed, not run"

undo_sysctl() {
    if [ -f "$sysctl_file" ] || [ "$dry_run" = 1 ]; then
        say "removing $sysctl_file and reloading the other sysctl settings"
        run sudo rm -f "$sysctl_file"
        run sudo sysctl --system
    else
        echo "nothing to undo: $sysctl_file does not exist"
    fi
}

if [ "$undo_net_buffers" = 1 ]; then undo_sysctl; exit 0; fi

if [ "$uninstall" = 1 ]; then
    say "uninstalling csk_ros (workspace $workspace, venv $venv)"
    if [ -f "$unit_file" ] || [ "$dry_run" = 1 ]; then
        run sudo systemctl disable --now "$unit_name"
        run sudo rm -f "$unit_file"
        run sudo systemctl daemon-reload
    fi
    if [ -f "$sysctl_file" ]; then undo_sysctl; fi
    run rm -rf "$venv"
    if [ -L "$workspace/src/csk_ros" ] || [ "$dry_run" = 1 ]; then
        run rm -f "$workspace/src/csk_ros"
    elif [ -e "$workspace/src/csk_ros" ]; then
        say "left $workspace/src/csk_ros: not the link this script made (a checkout of yours?)"
    fi
    run rm -rf "$workspace/build/csk_ros" "$workspace/install/csk_ros"
    say "done; engines stay in their bundle (rm BUNDLE/*.engine to remove them)"
    exit 0
fi

[ "${#positional[@]}" -ge 1 ] || { usage >&2; die "BUNDLE_DIR missing"; }
[ -d "${positional[0]}" ] || die "bundle directory ${positional[0]} not found"
bundle=$(cd "${positional[0]}" && pwd)
[ -f "$bundle/manifest.json" ] || die "$bundle has no manifest.json (export it with python3 -m engines.export)"
if [ -n "$calib_images" ]; then
    [ -d "$calib_images" ] || die "calibration image folder $calib_images not found"
    calib_images=$(cd "$calib_images" && pwd)
fi

# ------------------------------------------------------------------ platform
[ -r "$nv_tegra_release" ] || die "$nv_tegra_release not found: this is not an NVIDIA Jetson (L4T). On an x86 GPU" \
    "machine install TensorRT and cuda-python with pip (docs/jetson.md) and run python -m engines.build"
l4t_line=$(head -n 1 "$nv_tegra_release")
l4t_major=$(sed -n 's/^# R\([0-9][0-9]*\) .*/\1/p' <<<"$l4t_line")
l4t_revision=$(sed -n 's/.*REVISION: \([0-9][0-9.]*\).*/\1/p' <<<"$l4t_line")
if [ -z "$l4t_major" ] || [ -z "$l4t_revision" ]; then
    die "cannot read the L4T release from $nv_tegra_release: '$l4t_line'"
fi
l4t="$l4t_major.$l4t_revision"
jetpack=$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null | sed -n 's/^\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' || true)
if [ -z "$jetpack" ]; then  # no nvidia-jetpack meta package (minimal flash): derive it from L4T
    case "$l4t" in
        36.4.[3-9]*) jetpack=6.2 ;;
        36.4*) jetpack=6.1 ;;
        36.*) jetpack=6.0 ;;
        35.*) jetpack=5.1 ;;
        38.*|39.*) jetpack=7 ;;  # JetPack 7.x: R38 (Thor), 7.2 (Orin + Thor) reported as R38.4+ or R39
        *) jetpack=unknown ;;
    esac
fi
case "$jetpack" in
    6.1|6.2) jetpack_major=6; expected_python=3.10 ;;
    7|7.*) jetpack_major=7; expected_python=3.12 ;;
    6.0) die "JetPack 6.0 (L4T R$l4t) ships TensorRT 8.6: csk_ros needs TensorRT >= 10, i.e. JetPack 6.1/6.2" \
             "(L4T R36.4) or 7.2; upgrade with apt (nvidia-jetpack) or re-flash" ;;
    *) die "JetPack $jetpack (L4T R$l4t) is not supported: csk_ros needs JetPack 6.1/6.2 (TensorRT 10.3) or 7.2" \
           "(TensorRT 10.16)" ;;
esac

cuda_pkg=$(dpkg-query -W -f='${Package}\n' 'cuda-cudart-[0-9]*' 2>/dev/null | sed -n 's/^cuda-cudart-\([0-9][0-9]*\)-\([0-9][0-9]*\)$/\1.\2/p' \
    | sort -V | tail -n 1 || true)
[ -n "$cuda_pkg" ] || die "no CUDA runtime installed (no cuda-cudart-* package): sudo apt install nvidia-jetpack"
cuda=$cuda_pkg
cuda_major=${cuda%%.*}
cuda_python=$(cuda_python_pin "$cuda_major") || die "CUDA $cuda is not supported (CUDA 12 or 13)"

python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "python3 not found"
[ "$python_version" = "$expected_python" ] || die "python3 is $python_version; JetPack $jetpack's TensorRT" \
    "bindings are built for Python $expected_python: run this script with that python3 first on PATH"

python3 -c 'import ensurepip' 2>/dev/null || die "python3 $python_version cannot create a venv (no ensurepip):" \
    "sudo apt install python3-venv"
trt_version=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null) || die "TensorRT's Python" \
    "bindings are not importable by python3 $python_version: sudo apt install python3-libnvinfer (part of" \
    "nvidia-jetpack)"
[ "${trt_version%%.*}" -ge 10 ] 2>/dev/null || die "TensorRT $trt_version found: csk_ros needs TensorRT >= 10" \
    "(JetPack 6.1/6.2 or 7.2; its builder and runtime use the TensorRT 10 API)"

if [ -z "${ROS_DISTRO:-}" ] || ! command -v ros2 >/dev/null; then
    native=jazzy
    if [ "$jetpack_major" = 6 ]; then native=humble; fi
    die "no ROS 2 environment sourced (ROS_DISTRO unset or ros2 not on PATH): source /opt/ros/$native/setup.bash first"
fi
case "$ROS_DISTRO" in
    humble|jazzy|kilted) ;;
    *) die "ROS 2 '$ROS_DISTRO' is not supported: Humble, Jazzy or Kilted" ;;
esac
ros_setup=${CSK_ROS_SETUP:-/opt/ros/$ROS_DISTRO/setup.bash}
command -v colcon >/dev/null || die "colcon not found: sudo apt install python3-colcon-common-extensions"
have_cv2=1
python3 -c 'import cv2' 2>/dev/null || have_cv2=0

say "Jetson: L4T R$l4t, JetPack $jetpack, CUDA $cuda, TensorRT $trt_version, Python $python_version," \
    "ROS 2 $ROS_DISTRO"

# ------------------------------------------------------------------ clocks
if [ "$max_clocks" = 1 ]; then
    say "power mode before: $(nvpmodel -q 2>/dev/null | tr '\n' ' ' || echo unknown)"
    # MAXN's id differs per module (0 on AGX Orin; Orin Nano/NX on JetPack 6.2 call it MAXN_SUPER):
    # read it from the module's nvpmodel.conf, 0 when it names none.
    nvpmodel_conf=${CSK_NVPMODEL_CONF:-/etc/nvpmodel.conf}
    maxn_id=$(sed -n 's/.*POWER_MODEL ID=\([0-9][0-9]*\) NAME=MAXN[A-Z_]*.*/\1/p' "$nvpmodel_conf" 2>/dev/null \
        | head -n 1 || true)
    say "MAXN is power mode ${maxn_id:-0} ($nvpmodel_conf); nvpmodel may ask to reboot for it to take effect"
    run sudo nvpmodel -m "${maxn_id:-0}"
    run sudo jetson_clocks
else
    say "clocks left as they are (TensorRT's tactic timing depends on them: --max-clocks sets MAXN + jetson_clocks)"
fi

# ------------------------------------------------------------------ venv
pins=("$cuda_python" "${COMMON_PINS[@]}")
[ "$have_cv2" = 1 ] || pins+=("opencv-python-headless>=4.9,<5")  # JetPack normally ships OpenCV's bindings
say "Python venv $venv (--system-site-packages: JetPack's TensorRT and OpenCV stay visible; numpy is pinned in it)"
run python3 -m venv --system-site-packages "$venv"
requirements=$(printf '%s\n' "# scripts/deploy_jetson.sh: JetPack $jetpack (CUDA $cuda, TensorRT $trt_version," \
    "# Python $python_version); numpy stays on 1.x (JetPack's bindings are built against it)" "${pins[@]}")
if [ "$dry_run" = 0 ]; then mkdir -p "$venv"; fi
write_file "$venv/csk-requirements.txt" "$requirements"
run "$venv/bin/python" -m pip install -r "$venv/csk-requirements.txt"

# ------------------------------------------------------------------ engines
if [ "$gpu_check" = 1 ]; then
    # before the deployed build: gpu_check builds its own engines into the bundle, the deploy's build replaces them
    check_precisions=fp16
    [ "$precision" = int8 ] && check_precisions=fp16,int8
    say "checking this device first: $check_precisions engines against ONNX Runtime, timed ($bundle/gpu_check.json)"
    run env PYTHONPATH="$repo" "$venv/bin/python" -m engines.gpu_check --bundle "$bundle" \
        --precisions "$check_precisions" --json "$bundle/gpu_check.json" \
        || die "engines.gpu_check failed on this device (table above): not deploying. docs/jetson.md says what it checks"
fi
say "building $precision TensorRT engines for $bundle on this device"
build=(env PYTHONPATH="$repo" "$venv/bin/python" -m engines.build --bundle "$bundle" --precision "$precision")
[ -n "$calib_images" ] && build+=(--calib-images "$calib_images")
run "${build[@]}" || die "building the engines failed (the messages above say why)"
say "verifying every engine against ONNX Runtime on the CPU (mask agreement >= $min_agreement)"
if ! run env PYTHONPATH="$repo" "$venv/bin/python" -m engines.verify --bundle "$bundle" --backend tensorrt \
        --min-agreement "$min_agreement"; then
    die "the engines disagree with ONNX Runtime (report above): not deploying them. Try --precision fp32 to tell" \
        "a precision loss from a broken build"
fi

# ------------------------------------------------------------------ package
say "colcon build into $workspace (installs the Fast DDS large-frame profile and dds_env.sh with the package)"
run mkdir -p "$workspace/src"
run ln -sfn "$repo" "$workspace/src/csk_ros"
run env -C "$workspace" "$venv/bin/python" -m colcon build --packages-select csk_ros --symlink-install
share="$workspace/install/csk_ros/share/csk_ros"
profile="$share/config/fastdds_large_frames.xml"
if [ -f "$repo/config/fastdds_large_frames.xml" ] && [ "$dry_run" = 0 ] && [ ! -f "$profile" ]; then
    die "colcon did not install $profile"
fi

if [ "$net_buffers" = 1 ]; then
    say "raising the socket buffer caps (undo: $0 --undo-net-buffers)"
    write_file "$sysctl_file" "$(printf 'net.core.rmem_max=4194304\nnet.core.wmem_max=4194304')" sudo
    run sudo sysctl -p "$sysctl_file"
fi

launch="ros2 launch csk_ros segment.launch.py model_dir:=$bundle eo_topic:=$eo_topic ir_topic:=$ir_topic"
if [ "$service" = 1 ]; then
    say "systemd unit $unit_file"
    unit=$(cat <<UNIT
[Unit]
Description=csk_ros RGB-thermal segmentation (ROS 2 $ROS_DISTRO)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${SUDO_USER:-${USER:-$(id -un)}}
# ROS_DOMAIN_ID, RMW_IMPLEMENTATION, ... go into this optional file
EnvironmentFile=-/etc/default/csk-ros-segment
ExecStart=/bin/bash -c 'source $ros_setup && source $workspace/install/setup.bash && source $venv/bin/activate && exec $launch'
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
)
    write_file "$unit_file" "$unit" sudo
    run sudo systemctl daemon-reload
    run sudo systemctl enable --now "$unit_name"
fi

cat <<MSG
== done. Run:
  source $workspace/install/setup.bash && source $venv/bin/activate
  $launch
== the launch file applies the DDS profile to the node; give the camera driver's process the same one:
  . $share/scripts/dds_env.sh   # in the driver's shell or service
MSG
if [ "$service" = 1 ]; then echo "== service: systemctl status $unit_name; journalctl -u $unit_name -f"; fi
