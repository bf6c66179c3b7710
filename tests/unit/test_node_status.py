"""The node's /diagnostics verdict (csk_ros/logic/status.py)."""

from csk_ros.logic.status import ERROR, OK, WARN, StatusInputs, assess

HEALTHY = dict(ir_dead=False, ir_dead_reason="", ir_rejected_reasons="", eo_loss=0.0, ir_loss=0.0, eo_lost=0, ir_lost=0,
               loss_warn_fraction=0.03, qos="sensor_data", unpaired_fraction=0.0, unpaired_warn_fraction=0.2,
               mode="fused", reason="eo_healthy")


def verdict(**changes):
    return assess(StatusInputs(**dict(HEALTHY, **changes)))


def test_healthy_is_ok():
    assert verdict() == (OK, "fused EO+IR segmentation")


def test_eo_transport_loss_warns_with_the_cause_and_the_fix():
    level, message = verdict(eo_loss=0.2, eo_lost=30)
    assert level == WARN
    assert "EO loses 20%" in message and "512 KB" in message
    assert "fastdds_large_frames.xml" in message and "camera driver" in message and "reliable" in message


def test_loss_at_or_below_the_limit_is_ok():
    assert verdict(eo_loss=0.03, ir_loss=0.01, eo_lost=10, ir_lost=3)[0] == OK


def test_one_or_two_gaps_right_after_start_are_not_a_loss_warning():
    assert verdict(eo_loss=0.1, eo_lost=1)[0] == OK  # 1 of 10 frames
    assert verdict(eo_loss=0.1, eo_lost=3)[0] == WARN


def test_loss_on_a_reliable_subscription_blames_the_sender():
    level, message = verdict(qos="reliable", ir_loss=0.1, ir_lost=15)
    assert level == WARN and "sender skips frames" in message and "fastdds" not in message


def test_loss_is_listed_before_its_consequences():
    level, message = verdict(eo_loss=0.4, eo_lost=60, unpaired_fraction=0.5, mode="ir_only", reason="eo_stale")
    assert level == WARN
    assert message.index("EO loses") < message.index("no EO partner") < message.index("IR-only fallback")


def test_dead_ir_is_an_error_whatever_else():
    assert verdict(ir_dead=True, ir_dead_reason="ir_stale", eo_loss=0.5, eo_lost=50)[0] == ERROR
    level, message = verdict(ir_dead=True, ir_rejected_reasons="truncated")
    assert level == ERROR and "rejected (truncated)" in message
