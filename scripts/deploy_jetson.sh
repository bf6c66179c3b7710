#!/usr/bin/env bash
# Deploy csk_ros on a Jetson (JetPack 6 with TensorRT 10, ROS 2 from apt, sourced).
#
#   scripts/deploy_jetson.sh [--net-buffers] BUNDLE_DIR [WORKSPACE=~/csk_ws] [PRECISION=fp16]
#   scripts/deploy_jetson.sh --undo-net-buffers
#
# 1. checks that TensorRT's Python bindings and cuda-python are importable,
# 2. builds the bundle's TensorRT engines ON THIS DEVICE (engines are tied to
#    the TensorRT version and GPU; the manifest records both),
# 3. builds the csk_ros package into WORKSPACE with colcon (this installs the
#    Fast DDS large-frame profile, share/csk_ros/config/fastdds_large_frames.xml,
#    and share/csk_ros/scripts/dds_env.sh),
# 4. prints the launch command and the line that gives the camera driver the
#    same DDS profile (frames over 512 KB need it in the SENDING process).
# --net-buffers (opt-in) also raises the kernel's socket buffer caps
# (net.core.rmem_max / wmem_max -> 4 MB, the profile's UDP buffers) in
# /etc/sysctl.d/60-csk-ros-dds.conf: only needed when camera frames come from
# ANOTHER host over UDP; same-host frames use shared memory. It prints what it
# writes; --undo-net-buffers removes the file and restores the boot-time values.
# Without --net-buffers it changes nothing outside WORKSPACE and the bundle directory.
set -euo pipefail

SYSCTL_FILE=/etc/sysctl.d/60-csk-ros-dds.conf
net_buffers=0
case "${1:-}" in
    --net-buffers) net_buffers=1; shift ;;
    --undo-net-buffers)
        if [ -f "$SYSCTL_FILE" ]; then
            echo "== removing $SYSCTL_FILE and reloading the other sysctl settings"
            sudo rm -f "$SYSCTL_FILE"
            sudo sysctl --system >/dev/null
            echo "net.core.rmem_max=$(sysctl -n net.core.rmem_max) net.core.wmem_max=$(sysctl -n net.core.wmem_max)" \
                "(values not set by any file keep their current value until reboot)"
        else
            echo "nothing to undo: $SYSCTL_FILE does not exist"
        fi
        exit 0 ;;
esac

bundle=${1:?usage: $0 [--net-buffers] BUNDLE_DIR [WORKSPACE] [PRECISION] | $0 --undo-net-buffers}
workspace=${2:-$HOME/csk_ws}
precision=${3:-fp16}
repo=$(cd "$(dirname "$0")/.." && pwd)
bundle=$(cd "$bundle" && pwd)

[ -f "$bundle/manifest.json" ] || { echo "error: $bundle has no manifest.json (export it with python3 -m engines.export)" >&2; exit 2; }
command -v ros2 >/dev/null || { echo "error: ros2 not found: source /opt/ros/<distro>/setup.bash first" >&2; exit 2; }
python3 -c "import tensorrt" 2>/dev/null || {
    echo "error: TensorRT Python bindings missing: sudo apt install python3-libnvinfer (JetPack)" >&2; exit 2; }
python3 -c "import cuda.bindings.runtime" 2>/dev/null || python3 -c "from cuda import cudart" 2>/dev/null || {
    echo "error: cuda-python missing: pip3 install cuda-python matching JetPack's CUDA" >&2; exit 2; }
python3 -c "import onnxruntime, cv2, numpy, yaml" 2>/dev/null || {
    echo "error: runtime Python packages missing: pip3 install onnxruntime opencv-python-headless numpy pyyaml" >&2; exit 2; }

echo "== building $precision TensorRT engines for $bundle on $(python3 -c 'import tensorrt; print(tensorrt.__version__)')"
(cd "$repo" && python3 -m engines.build --bundle "$bundle" --precision "$precision")

echo "== colcon build into $workspace"
mkdir -p "$workspace/src"
ln -sfn "$repo" "$workspace/src/csk_ros"
(cd "$workspace" && colcon build --packages-select csk_ros --symlink-install)

if [ "$net_buffers" = 1 ]; then
    echo "== writing $SYSCTL_FILE (undo: $0 --undo-net-buffers):"
    printf 'net.core.rmem_max=4194304\nnet.core.wmem_max=4194304\n' | sudo tee "$SYSCTL_FILE"
    sudo sysctl -p "$SYSCTL_FILE"
fi

profile="$workspace/install/csk_ros/share/csk_ros/config/fastdds_large_frames.xml"
cat <<MSG
== done. Run:
  source $workspace/install/setup.bash
  ros2 launch csk_ros segment.launch.py model_dir:=$bundle eo_topic:=<your EO topic> ir_topic:=<your IR topic>
== and give the camera driver's process the same DDS profile (segment.launch.py sets it for what it starts):
  . $workspace/install/csk_ros/share/csk_ros/scripts/dds_env.sh   # in the driver's shell or service, or:
  export FASTDDS_DEFAULT_PROFILES_FILE=$profile FASTRTPS_DEFAULT_PROFILES_FILE=$profile
MSG
