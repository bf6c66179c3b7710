"""csk_ros.logic.pairing: EO buffer and the IR-driven MATCHED / WAIT / NO_PARTNER decision."""

from __future__ import annotations

import math

import pytest

from csk_ros.logic.pairing import EoBuffer, PairStatus, decide_pairing

SLOP = 0.05


def buf_with(*stamps: float, **kw) -> EoBuffer:
    b = EoBuffer(**kw)
    for s in stamps:
        b.add(s, f"eo@{s}")
    return b


# ------------------------------------------------------------------ EoBuffer


def test_nearest_exact_choice():
    b = buf_with(1.00, 1.03, 1.07, 1.10)
    assert b.nearest(1.04, SLOP) == (1.03, "eo@1.03")
    assert b.nearest(1.06, SLOP) == (1.07, "eo@1.07")
    assert b.nearest(1.10, SLOP) == (1.10, "eo@1.1")
    assert b.nearest(0.99, SLOP) == (1.00, "eo@1.0")
    assert b.nearest(5.0, SLOP) is None
    assert EoBuffer().nearest(1.0, SLOP) is None


def test_nearest_tie_goes_to_earlier():
    b = buf_with(1.0, 2.0)
    assert b.nearest(1.5, 1.0) == (1.0, "eo@1.0")
    b = buf_with(0.25, 0.75)  # exactly representable: a true tie
    assert b.nearest(0.5, 1.0)[0] == 0.25


def test_nearest_slop_boundary_inclusive():
    b = buf_with(1.0)
    assert b.nearest(1.5, 0.5) == (1.0, "eo@1.0")  # |dt| == slop: accepted
    assert b.nearest(1.5, 0.4999) is None
    assert b.nearest(0.5, 0.5) == (1.0, "eo@1.0")  # EO after IR, on the boundary


def test_out_of_order_add_is_sorted():
    b = buf_with(1.0, 1.2, 1.1, 0.9)
    assert [s for s, _ in b.items()] == [0.9, 1.0, 1.1, 1.2]
    assert b.newest_stamp == 1.2 and b.oldest_stamp == 0.9
    assert b.nearest(1.11, SLOP)[0] == 1.1


def test_same_stamp_replaces():
    b = EoBuffer()
    b.add(1.0, "a")
    b.add(1.0, "b")
    assert len(b) == 1 and b.nearest(1.0, 0.0) == (1.0, "b")


def test_max_len_drops_oldest_and_late_frames():
    b = buf_with(*[i * 0.1 for i in range(10)], max_len=3)
    assert len(b) == 3
    assert [round(s, 1) for s, _ in b.items()] == [0.7, 0.8, 0.9]
    assert b.add(0.65, "late") is False  # older than everything in a full buffer
    assert b.dropped_late == 1 and len(b) == 3
    assert b.add(0.75, "mid") is True  # fits in: the oldest goes
    assert [round(s, 2) for s, _ in b.items()] == [0.75, 0.8, 0.9]


def test_clear_and_jump_back():
    b = buf_with(100.0, 100.1, 100.2)
    b.clear()
    assert len(b) == 0 and b.newest_stamp is None
    b = buf_with(100.0, 100.1, 100.2)
    b.add(100.15 - 0.5, "slightly late")  # within jump_back_s: just an out-of-order frame
    assert len(b) == 4 and b.jumps_back == 0
    b.add(3.0, "after the bag loop")  # 97 s back: a clock jump -> buffer cleared first
    assert b.jumps_back == 1
    assert b.items() == [(3.0, "after the bag loop")]
    assert b.nearest(3.01, SLOP) == (3.0, "after the bag loop")


def test_jump_back_detection_can_be_disabled():
    b = buf_with(100.0, jump_back_s=None)
    b.add(3.0, "x")
    assert len(b) == 2 and b.jumps_back == 0


def test_median_interval():
    assert EoBuffer().median_interval() is None
    assert buf_with(0.0, 0.1, 0.2, 0.5).median_interval() == pytest.approx(0.1)


@pytest.mark.parametrize("kw", [{"max_len": 0}, {"max_len": 2.5}, {"jump_back_s": -1.0}, {"jump_back_s": math.nan}])
def test_buffer_rejects_bad_args(kw):
    with pytest.raises(ValueError):
        EoBuffer(**kw)


def test_add_rejects_non_finite():
    with pytest.raises(ValueError):
        EoBuffer().add(math.nan, "x")


# -------------------------------------------------------------- decide_pairing


def test_exact_stamp_matches_immediately():
    b = buf_with(1.0)
    d = decide_pairing(1.0, ir_arrival_s=10.0, now_s=10.0, buffer=b, slop_s=SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_item == "eo@1.0" and d.offset_s == 0.0


def test_eo_after_ir_matches_immediately():
    b = buf_with(0.98, 1.02)
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 0.98  # tie -> earlier
    b = buf_with(0.9, 1.02)
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 1.02 and d.offset_s == pytest.approx(0.02)


def test_waits_for_a_possibly_nearer_late_partner():
    b = buf_with(0.97)  # candidate 30 ms early; an EO in (1.0-0.03, 1.0+0.03) could still come
    d = decide_pairing(1.0, ir_arrival_s=10.0, now_s=10.0, buffer=b, slop_s=SLOP)
    assert d.status is PairStatus.WAIT and d.wait_until_s == pytest.approx(10.05)
    b.add(1.01, "late partner")  # arrives 20 ms later: nearer
    d = decide_pairing(1.0, 10.0, 10.02, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_item == "late partner"


def test_stops_waiting_when_next_eo_is_further():
    b = buf_with(0.97)
    b.add(1.04, "next")  # the next EO is further than the candidate: no nearer one can come
    d = decide_pairing(1.0, 10.0, 10.01, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 0.97


def test_equal_distance_late_partner_is_not_waited_for_and_earlier_wins():
    b = buf_with(0.25)
    b.add(0.75, "later")
    d = decide_pairing(0.5, 10.0, 10.0, b, slop_s=0.5)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 0.25


def test_wait_timeout_takes_the_candidate():
    b = buf_with(0.97)
    assert decide_pairing(1.0, 10.0, 10.0499, b, SLOP).status is PairStatus.WAIT
    d = decide_pairing(1.0, 10.0, 10.05, b, SLOP)  # waited exactly slop
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 0.97


def test_min_eo_interval_avoids_needless_wait():
    b = buf_with(0.99)  # 10 ms early; EO at 30 Hz: the next one is >= 0.99 + 0.026
    assert decide_pairing(1.0, 10.0, 10.0, b, SLOP).status is PairStatus.WAIT
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP, min_eo_interval_s=0.026)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == 0.99
    # but with a spacing that still allows a nearer frame, it waits
    assert decide_pairing(1.0, 10.0, 10.0, b, SLOP, min_eo_interval_s=0.015).status is PairStatus.WAIT


def test_no_candidate_wait_then_late_partner():
    b = buf_with(0.90)  # 100 ms early: outside slop
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.WAIT
    b.add(1.05, "late, on the boundary")
    d = decide_pairing(1.0, 10.0, 10.03, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_item == "late, on the boundary"


def test_no_candidate_empty_buffer_waits_then_gives_up():
    b = EoBuffer()
    assert decide_pairing(1.0, 10.0, 10.0, b, SLOP).status is PairStatus.WAIT
    assert decide_pairing(1.0, 10.0, 10.049, b, SLOP).status is PairStatus.WAIT
    d = decide_pairing(1.0, 10.0, 10.05, b, SLOP)
    assert d.status is PairStatus.NO_PARTNER and d.eo_item is None


def test_no_partner_when_newest_eo_is_past_the_window():
    b = buf_with(0.90, 1.06)  # both outside +-50 ms; EO already beyond ir + slop
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.NO_PARTNER
    # newest exactly at ir + slop is a match (inclusive), not "past the window"
    assert decide_pairing(1.0, 10.0, 10.0, buf_with(0.9, 1.05), SLOP).status is PairStatus.MATCHED


def test_no_partner_with_min_interval():
    b = buf_with(0.90)
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP, min_eo_interval_s=0.2)  # next EO >= 1.10
    assert d.status is PairStatus.NO_PARTNER
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP, min_eo_interval_s=0.15)  # next EO >= 1.05: could match
    assert d.status is PairStatus.WAIT


def test_zero_slop_only_exact():
    b = buf_with(1.0, 1.1)
    assert decide_pairing(1.0, 5.0, 5.0, b, 0.0).status is PairStatus.MATCHED
    assert decide_pairing(1.05, 5.0, 5.0, b, 0.0).status is PairStatus.NO_PARTNER


def test_after_backwards_clock_jump():
    b = buf_with(100.0, 100.033, 100.066)
    # IR jumped back (bag loop) before any new EO: old EO is "in the future" -> no partner, no wait
    assert decide_pairing(1.0, 50.0, 50.0, b, SLOP).status is PairStatus.NO_PARTNER
    b.add(1.01, "new loop")  # first EO after the loop clears the stale stamps
    assert len(b) == 1
    d = decide_pairing(1.0, 50.0, 50.0, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_item == "new loop"


def test_out_of_order_eo_still_matched():
    b = buf_with(1.06, 1.10)
    b.add(1.001, "delayed")
    d = decide_pairing(1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_item == "delayed"


def test_bad_args():
    with pytest.raises(ValueError):
        decide_pairing(1.0, 0.0, 0.0, EoBuffer(), -0.1)
    with pytest.raises(ValueError):
        decide_pairing(1.0, 0.0, 0.0, EoBuffer(), 0.1, min_eo_interval_s=-1.0)


def test_simulated_streams_pair_every_ir_frame_with_nearest():
    """IR 30 Hz, EO 30 Hz offset 12 ms and delivered 20 ms late: every IR gets its nearest EO."""
    eo_stamps = [0.012 + i / 30 for i in range(60)]
    ir_stamps = [i / 30 for i in range(1, 58)]
    events = sorted([(s + 0.020, "eo", s) for s in eo_stamps] + [(s + 0.002, "ir", s) for s in ir_stamps])
    b = EoBuffer()
    pending: list[tuple[float, float]] = []
    results = {}
    for t, kind, stamp in events:
        if kind == "eo":
            b.add(stamp, stamp)
        else:
            pending.append((stamp, t))
        still = []
        for ir, arrival in pending:
            d = decide_pairing(ir, arrival, t, b, SLOP)
            if d.status is PairStatus.WAIT:
                still.append((ir, arrival))
            else:
                results[ir] = d
        pending = still
    assert set(results) == set(ir_stamps)
    for ir, d in results.items():
        expected = min(eo_stamps, key=lambda e: (abs(e - ir), e))
        assert d.status is PairStatus.MATCHED and d.eo_stamp == expected, ir


def test_boundaries_hold_at_epoch_scale_stamps():
    t0 = 1_700_000_000.0
    b = buf_with(t0 + 0.95)
    b.add(t0 + 1.05, "boundary")  # exactly +slop, as float seconds of an epoch time
    d = decide_pairing(t0 + 1.0, 10.0, 10.0, b, SLOP)
    assert d.status is PairStatus.MATCHED and d.eo_stamp == t0 + 0.95  # tie at +-slop -> earlier
    b = buf_with(t0 + 1.05)
    assert decide_pairing(t0 + 1.0, 10.0, 10.0, b, SLOP).eo_item == "eo@1700000001.05"
    b = buf_with(t0 + 1.0501)
    assert decide_pairing(t0 + 1.0, 10.0, 10.0, b, SLOP).status is PairStatus.NO_PARTNER
