"""The node's registration verdict (csk_ros/logic/registration_health.py) and its background watch
(csk_ros/node/registration_watch.py) without ROS: a persistent misregistration WARNs with the fix, a single wild
check or an unjudged frame does not, and the watch scores the pairs it is offered off the caller's thread."""

from __future__ import annotations

import time

import numpy as np

from csk_ros.imaging.registration import RegistrationCheck
from csk_ros.logic.registration_health import MIN_VALID, WINDOW, RegistrationHealth
from csk_ros.node.registration_watch import RegistrationWatch
from tests.support.rig_scenes import ir_view, scene

NAN = float("nan")


def check(dx: float, dy: float = 0.0, valid: bool = True, at_limit: bool = False) -> RegistrationCheck:
    return RegistrationCheck(0.5, 0.6, (dx, dy), float(np.hypot(dx, dy)), valid, "" if valid else "flat", at_limit)


def test_a_persistent_offset_warns_and_names_the_fix():
    health = RegistrationHealth(warn_px=6.0)
    for _ in range(MIN_VALID - 1):
        health.record(check(12.0), 1.0)
    assert health.state() == "waiting" and health.warning() == ""
    health.record(check(12.0, 1.0), 1.0)
    assert health.state() == "misregistered"
    warning = health.warning()
    assert "off by 12.0 px" in warning and "python -m csk_ros.calibrate" in warning and "eo_to_ir_homography" in warning
    values = health.diagnostics()
    assert values["registration_state"] == "misregistered"
    assert values["registration_offset_px"] == "12.00"  # the median dy of (0, 0, 1) is 0


def test_one_wild_check_or_unjudged_frames_do_not_warn():
    health = RegistrationHealth(warn_px=6.0)
    for dx in (0.5, 20.0, -0.3, 0.8, 0.2):  # one wild estimate among good ones
        health.record(check(dx), 1.0)
    assert health.state() == "ok" and health.warning() == ""
    for _ in range(WINDOW):
        health.record(check(NAN, NAN, valid=False), 1.0)
    assert health.state() == "waiting" and health.warning() == ""
    assert health.diagnostics()["registration_note"] == "flat"


def test_matches_at_the_search_limit_count_only_where_other_checks_agree():
    """A dark frame's chance match in the corner of the window (-24, +24) is not a measured shift: with two of
    them among three registered checks the median would say 24 px; set aside, the verdict stays ok."""
    health = RegistrationHealth(warn_px=6.0)
    for c in (check(0.5), check(-24.0, 24.0, at_limit=True), check(-0.4, 0.3), check(-24.0, 23.5, at_limit=True),
              check(0.2, -0.2)):
        health.record(c, 1.0)
    assert health.state() == "ok" and health.warning() == ""
    assert health.diagnostics()["registration_set_aside"] == "2"
    # only at-limit checks, not agreeing: nothing to judge, no WARN
    health = RegistrationHealth(warn_px=6.0)
    for c in (check(-24.0, 24.0, at_limit=True), check(24.0, -5.0, at_limit=True), check(3.0, 24.0, at_limit=True)):
        health.record(c, 1.0)
    assert health.state() == "waiting"
    # a camera knocked beyond the window: every check on the same border, they agree, it WARNs
    health = RegistrationHealth(warn_px=6.0)
    for dy in (0.5, -1.0, 2.0):
        health.record(check(-24.0, dy, at_limit=True), 1.0)
    assert health.state() == "misregistered" and "off by 24.0 px" in health.warning()
    assert health.diagnostics()["registration_set_aside"] == "0"


def test_two_outliers_among_four_checks_do_not_warn_through_the_median():
    """Replayed on registered MSRS pairs: dx and dy take their medians apart and an even count averages the
    middle two, so two checks at -10 and -11 px in y among two good ones give a median 6.1 px off. A WARN
    needs MIN_VALID single checks beyond CONSENSUS x warn_px too; a moved camera moves every check."""
    health = RegistrationHealth(warn_px=6.0)
    for c in (check(2.0, -1.9), check(-2.4, 1.8), check(-1.8, -10.3), check(-0.5, -11.1)):
        health.record(c, 1.0)
    assert np.hypot(*health.shift_px()) > 6.0
    assert health.state() == "ok" and health.warning() == ""
    health.record(check(0.3, -8.0), 1.0)  # a third check beyond the limit: the consensus is there
    assert health.state() == "misregistered"


def test_one_view_held_still_is_one_piece_of_evidence():
    """A dark frame held for 3 s gives three checks at the same (wrong) place: they agree with each other by
    construction. Neither the at-limit rule nor the consensus may count them as agreement; two views may."""
    held = (10.0,) * 48
    other = (40.0,) * 48

    def seen(dx, dy, view, at_limit=False):
        return RegistrationCheck(0.3, 0.3, (dx, dy), float(np.hypot(dx, dy)), True, "", at_limit, 20.0, view)

    for at_limit, (dx, dy) in ((True, (-24.0, 24.0)), (False, (0.0, 13.0))):
        health = RegistrationHealth(warn_px=6.0)
        for c in (seen(0.5, 0.2, other), seen(-0.4, 0.1, other)) + tuple(seen(dx, dy, held, at_limit) for _ in "abc"):
            health.record(c, 1.0)
        assert health.state() in ("ok", "waiting") and health.warning() == "", (at_limit, health.shift_px())
        health.record(seen(dx, dy + 0.5, other, at_limit), 1.0)  # the same shift in another view: evidence
        assert health.state() == "misregistered", at_limit


def test_a_new_homography_restarts_the_verdict():
    watch = RegistrationWatch(0.0, 6.0, None)  # period 0: no thread, checks by hand
    for _ in range(WINDOW):
        watch.health.record(check(12.0), 1.0)
    assert watch.health.state() == "misregistered"
    watch.configure(0.0, 6.0, np.eye(3))
    assert watch.health.state() == "waiting"
    assert watch.diagnostics(time.monotonic()) == ({"registration_state": "off"}, "")


def test_the_watch_measures_an_eo_shift_on_offered_pairs():
    views = []
    for seed in (3, 5, 6):  # the robot drives: three views, the EO camera panned in each
        eo, radiance = scene(seed, size=(320, 256))
        views.append((np.roll(eo, 12, axis=1), ir_view(radiance, np.eye(3), seed, size=(320, 256))))
    watch = RegistrationWatch(0.05, 6.0, None)
    try:
        deadline = time.monotonic() + 10
        while watch.health.checks < WINDOW and time.monotonic() < deadline:
            watch.offer(*views[watch.health.checks % len(views)])
            time.sleep(0.06)
        values, warning = watch.diagnostics(time.monotonic())
    finally:
        watch.stop()
    assert values["registration_state"] == "misregistered", values
    dx, dy = (float(v) for v in values["registration_shift_px"].split(","))
    assert abs(dx + 12) <= 2 and abs(dy) <= 2, values  # the shift that re-aligns it: 12 px back
    assert "off by" in warning
    assert not watch.thread.is_alive()


def test_the_watch_is_quiet_on_a_registered_pair():
    eo, radiance = scene(4, size=(320, 256))
    ir = ir_view(radiance, np.eye(3), 4, size=(320, 256))
    watch = RegistrationWatch(0.0, 6.0, None)
    for _ in range(WINDOW):
        watch.offer(eo, ir)
        assert watch.check_once()
    assert not watch.check_once(), "checked without a new pair"
    assert watch.health.state() == "ok" and watch.health.warning() == ""
