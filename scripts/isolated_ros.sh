#!/bin/sh
# Run a command with ROS 2 confined to this machine: loopback-only discovery,
# a per-run domain id and log dir and, where the kernel allows it, a private
# network namespace with only `lo` up, so no DDS traffic can leave loopback.
set -eu
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/csk_ros_run.XXXXXX")
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
# Domain ids 1..101 are safe for FastDDS port ranges; pick one per run.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}"
export ROS_LOG_DIR="$run_dir/ros_log"
export CSK_ROS_RUN_DIR="$run_dir"
if unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "isolated_ros: no network namespace available; relying on LOCALHOST discovery only" >&2
exec "$@"
