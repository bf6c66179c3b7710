# shellcheck shell=bash
# Source me in the shell (or service) that starts your camera driver, and in
# the node's if you start it without segment.launch.py:
#     . /path/to/csk_ros/scripts/dds_env.sh        (source checkout)
#     . $(ros2 pkg prefix csk_ros)/share/csk_ros/scripts/dds_env.sh   (colcon install)
# It points Fast DDS at csk_ros' large-frame profile (config/fastdds_large_frames.xml)
# unless a profile is already set: yours wins. It sets only the variable the
# sourced distribution's Fast DDS reads and unsets the other: FASTDDS_DEFAULT_PROFILES_FILE
# for Fast DDS 3 (Kilted and later, whose rmw warns that the old name is deprecated),
# FASTRTPS_DEFAULT_PROFILES_FILE for Fast DDS 2.x (Humble, Jazzy); both where
# ROS_DISTRO names neither (same rule as csk_ros/tools/dds_profile.py, which also
# recognises the PyPI wheels).
_csk_dir=$(cd "$(dirname "${BASH_SOURCE:-$0}")/.." 2>/dev/null && pwd)
_csk_profile="${FASTDDS_DEFAULT_PROFILES_FILE:-${FASTRTPS_DEFAULT_PROFILES_FILE:-$_csk_dir/config/fastdds_large_frames.xml}}"
if [ -f "$_csk_profile" ]; then
    case "${ROS_DISTRO:-}" in
        kilted|lyrical|rolling)
            export FASTDDS_DEFAULT_PROFILES_FILE="$_csk_profile"
            unset FASTRTPS_DEFAULT_PROFILES_FILE ;;
        foxy|galactic|humble|iron|jazzy)
            export FASTRTPS_DEFAULT_PROFILES_FILE="$_csk_profile"
            unset FASTDDS_DEFAULT_PROFILES_FILE ;;
        *)
            export FASTDDS_DEFAULT_PROFILES_FILE="$_csk_profile"
            export FASTRTPS_DEFAULT_PROFILES_FILE="$_csk_profile" ;;
    esac
    echo "csk_ros: Fast DDS profile $_csk_profile" >&2
else
    echo "csk_ros: Fast DDS profile $_csk_profile not found; nothing set" >&2
fi
unset _csk_dir _csk_profile
