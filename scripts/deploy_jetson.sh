#!/usr/bin/env bash
# Deploy csk_ros on a Jetson (JetPack 6 with TensorRT 10, ROS 2 from apt, sourced).
#
#   scripts/deploy_jetson.sh BUNDLE_DIR [WORKSPACE=~/csk_ws] [PRECISION=fp16]
#
# 1. checks that TensorRT's Python bindings and cuda-python are importable,
# 2. builds the bundle's TensorRT engines ON THIS DEVICE (engines are tied to
#    the TensorRT version and GPU; the manifest records both),
# 3. builds the csk_ros package into WORKSPACE with colcon,
# 4. prints the launch command.
# It changes nothing outside WORKSPACE and the bundle directory.
set -euo pipefail

bundle=${1:?usage: $0 BUNDLE_DIR [WORKSPACE] [PRECISION]}
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

cat <<MSG
== done. Run:
  source $workspace/install/setup.bash
  ros2 launch csk_ros segment.launch.py model_dir:=$bundle eo_topic:=<your EO topic> ir_topic:=<your IR topic>
MSG
