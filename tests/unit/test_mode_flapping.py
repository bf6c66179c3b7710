"""~/mode on lossy-but-alive EO streams: the node's pure pieces (health monitor,
stream loss estimator, pairing, mode announcer) driven together on synthetic
stamp sequences, as the node drives them (csk_ros/node/)."""

import numpy as np
import pytest

from csk_ros.logic.health import EoHealthMonitor, HealthParams
from csk_ros.logic.mode_report import ModeAnnouncer
from csk_ros.logic.pairing import EoBuffer, PairStatus, decide_pairing
from csk_ros.logic.stream_loss import StreamLossEstimator

T0 = 1_700_000_000.0
SLOP = 0.05  # the node's default sync_slop_s


def simulate(eo_keep, rate=30.0, params=None, eo_clock_offset_s=0.0):
    """IR every frame, EO where eo_keep; arrival = stamp (+ the EO camera's clock offset for EO stamps).
    Returns the ~/mode announcements (mode, reason, since)."""
    params = params or HealthParams()
    health, announcer = EoHealthMonitor(params), ModeAnnouncer(params.stale_periods)
    eo_loss, ir_loss = StreamLossEstimator(max_gap_s=params.eo_timeout_s), StreamLossEstimator()
    buffer = EoBuffer(max_len=30)
    rng = np.random.default_rng(0)
    period = 1.0 / rate
    eo_times = [T0 + k * period for k in range(len(eo_keep)) if eo_keep[k]]
    next_eo = 0
    out = []
    for k in range(len(eo_keep)):
        t = T0 + k * period
        ir_loss.observe(t)
        health.observe_ir(t)
        now = t + SLOP  # the worker's decision after the longest wait for a late EO partner
        while next_eo < len(eo_times) and eo_times[next_eo] <= now:
            te = eo_times[next_eo]
            eo_loss.observe(te)
            health.set_periods(eo_loss.period(), ir_loss.period())
            health.observe_eo(te, rng.integers(40, 220, (16, 16, 3), dtype=np.uint8))  # a live, noisy picture
            buffer.add(te + eo_clock_offset_s, k)
            next_eo += 1
        health.set_periods(eo_loss.period(), ir_loss.period())
        decision = health.decide(now)
        ran = (decision.mode, decision.reason)
        if decision.mode == "fused":
            pairing = decide_pairing(t, t, now, buffer, SLOP)
            if pairing.status is not PairStatus.MATCHED:
                ran = ("ir_only", "eo_unpaired")
        elif decision.mode == "no_input":
            ran = ("ir_only", "ir_catching_up")
        a = announcer.frame(ran, (decision.mode, decision.reason), decision.since_s, t, health.stale_limit("eo"))
        if a is not None:
            out.append((a.mode, a.reason, a.since))
    return out


def switches_after_first_fused(announcements):
    first = next(i for i, a in enumerate(announcements) if a[0] == "fused")
    return announcements[first + 1:]


def random_keep(n, p, seed=0):
    keep = np.random.default_rng(seed).random(n) >= p
    keep[:30] = True  # the stream starts clean (the first fused is the reference)
    return keep


@pytest.mark.parametrize("seed", range(3))
def test_thirty_percent_random_loss_at_30hz_never_flaps(seed):
    assert switches_after_first_fused(simulate(random_keep(1800, 0.3, seed))) == []  # 60 s


@pytest.mark.parametrize("seed", range(3))
def test_thirty_percent_random_loss_at_10hz_never_flaps(seed):
    assert switches_after_first_fused(simulate(random_keep(600, 0.3, seed), rate=10.0)) == []  # 60 s


def test_without_the_period_rule_10hz_loss_flaps():
    """The stale rule counts: with the absolute timeout alone (stale_periods=1), the same stream flaps."""
    params = HealthParams(stale_periods=1)
    flaps = sum(len(switches_after_first_fused(simulate(random_keep(600, 0.3, s), rate=10.0, params=params)))
                for s in range(3))
    assert flaps > 0


def test_bursts_shorter_than_the_stale_limit_never_flap():
    keep = np.ones(1800, bool)
    for start in range(45, 1800, 30):
        keep[start:start + 8] = False  # 267 ms lost every second
    assert switches_after_first_fused(simulate(keep)) == []


def test_periodic_loss_never_flaps():
    keep = np.arange(1800) % 3 != 2
    keep[:30] = True
    assert switches_after_first_fused(simulate(keep)) == []


def test_a_real_stop_switches_once_within_the_stale_limit():
    keep = np.ones(900, bool)
    keep[600:] = False  # EO dies after 20 s
    after = switches_after_first_fused(simulate(keep))
    assert [(m, r) for m, r, _ in after] == [("ir_only", "eo_stale")]
    last_eo = T0 + 599 / 30
    assert 0.5 - 1e-6 <= after[0][2] - last_eo <= 0.5 + 1 / 30 + SLOP


def test_a_persistent_pairing_failure_is_announced_as_fast_as_a_stop():
    """EO alive and healthy but its camera's clock is 5 s off: no pair within the slop, every mask is IR-only,
    and ~/mode says so."""
    out = simulate(np.ones(300, bool), eo_clock_offset_s=5.0)
    assert ("ir_only", "eo_unpaired") in [(m, r) for m, r, _ in out]
    assert [a[0] for a in out] == ["ir_only", "ir_only"]  # startup, then unpaired: never a fused mask
    first_ir = T0
    unpaired = next(a for a in out if a[1] == "eo_unpaired")
    assert unpaired[2] - first_ir <= 0.5 + 2 / 30


def test_sparse_eo_does_not_toggle_stale_and_recovering():
    keep = np.zeros(900, bool)
    keep[:60] = True
    keep[60::20] = True  # then one EO frame every 667 ms: always stale, each frame starts a recovery
    out = simulate(keep)
    after = switches_after_first_fused(out)
    assert [(m, r) for m, r, _ in after] == [("ir_only", "eo_stale")]
