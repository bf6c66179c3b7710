"""Which Fast DDS profile a process loaded, its shared-memory segment, and what does not fit."""

from csk_ros.logic.transport import DEFAULT_SHM_SEGMENT, TransportCheck, active_profile, over_segment
from csk_ros.tools.dds_profile import shipped_profile

VGA_BGR = 640 * 480 * 3


def test_no_profile_is_fast_dds_defaults_and_a_vga_frame_does_not_fit():
    profile = active_profile({})
    assert (profile.kind, profile.shm_segment_bytes) == ("none", DEFAULT_SHM_SEGMENT)
    assert over_segment({"eo": VGA_BGR, "~/mask": 640 * 480}, profile) == {"eo": VGA_BGR}


def test_the_shipped_profile_is_recognised_and_its_segment_read():
    profile = active_profile({"FASTDDS_DEFAULT_PROFILES_FILE": str(shipped_profile())})
    assert profile.kind == "shipped" and profile.shm_segment_bytes == 32 * 2**20
    assert over_segment({"~/points": 16 * 640 * 480}, profile) == {}
    humble = active_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": str(shipped_profile())})
    assert humble.kind == "shipped"


def test_a_users_profile_with_and_without_shared_memory(tmp_path):
    small = tmp_path / "small.xml"
    small.write_text('<dds xmlns="http://www.eprosima.com"><profiles><transport_descriptors><transport_descriptor>'
                     '<transport_id>s</transport_id><type>SHM</type><segment_size>1048576</segment_size>'
                     '</transport_descriptor></transport_descriptors></profiles></dds>')
    profile = active_profile({"FASTDDS_DEFAULT_PROFILES_FILE": str(small)})
    assert (profile.kind, profile.shm_segment_bytes) == ("user", 2**20)
    assert over_segment({"eo": VGA_BGR, "big": 2 * 2**20}, profile) == {"big": 2 * 2**20}
    udp_only = tmp_path / "udp.xml"
    udp_only.write_text('<dds><profiles><participant profile_name="p" is_default_profile="true"><rtps>'
                        '<useBuiltinTransports>false</useBuiltinTransports></rtps></participant></profiles></dds>')
    assert active_profile({"FASTDDS_DEFAULT_PROFILES_FILE": str(udp_only)}).shm_segment_bytes is None


def test_another_rmw_is_not_checked():
    profile = active_profile({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert profile.kind == "not_fast_dds" and over_segment({"eo": 10**9}, profile) == {}


def test_the_check_warns_once_per_message_with_sizes_and_the_fix():
    check = TransportCheck(active_profile({}))
    assert check.observe({"/eo/image": VGA_BGR}) is None  # inputs first: the warning waits for the outputs
    warning = check.observe({"~/mask": 640 * 480, "~/points": 16 * 640 * 480}, ready=True)  # 300 KB fits
    assert "/eo/image 900 KB" in warning and "~/points 4800 KB" in warning and "~/mask" not in warning
    assert "segment.launch.py" in warning and "dds_env.sh" in warning and "output_size: model" in warning
    assert check.observe({"/eo/image": VGA_BGR}) is None  # once
    assert "/ir/image 1200 KB" in check.observe({"/ir/image": 1200 * 1024})  # newly over: its own line
    assert check.diagnostics() == {"dds_profile": "none (SHM segment 0.5 MiB)", "dds_over_segment":
                                   f"/eo/image {VGA_BGR}, /ir/image {1200 * 1024}, ~/points {16 * 640 * 480}"}
