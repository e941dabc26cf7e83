"""linkcheck: the tolerance rule and judge(), on hand-built measurements."""

from __future__ import annotations

import math

import pytest

from topologies.linkcheck import (
    DEFAULT_MIN_GOODPUT_FRAC,
    GOODPUT_CEIL_FRAC,
    LinkCheck,
    judge,
    rtt_tolerance_ms,
)
from topologies.spec import parse_topology


def wan(**keys):
    return parse_topology({"wan": [keys]}).wan[0]


def check_for(spec, **measured) -> LinkCheck:
    """A measurement that matches ``spec`` exactly; override one figure at a time."""
    samples = measured.pop("ping_samples", 20)
    fields = dict(
        link=1, src="dc1h1", dst="dc2h1",
        rtt_ms_configured=spec.rtt_ms, rtt_ms_measured=spec.rtt_ms,
        rtt_min_ms=spec.rtt_ms, rtt_max_ms=spec.rtt_ms, rtt_mdev_ms=0.1,
        rtt_tolerance_ms=rtt_tolerance_ms(spec.rtt_ms, spec.jitter_ms, samples),
        ping_samples=samples,
        loss_pct_configured=spec.loss_pct, loss_pct_measured=spec.loss_pct,
        bw_mbps=spec.bw_mbps,
        goodput_mbps=0.95 * spec.bw_mbps if spec.bw_mbps is not None else 900.0,
        retransmits=0, backend="netem", datapath="kernel")
    fields.update(measured)
    return LinkCheck(**fields)


# --- rtt_tolerance_ms ---------------------------------------------------------------------------

@pytest.mark.parametrize(("rtt", "tol"), [(0, 1.0), (10, 1.0), (50, 1.0), (100, 2.0),
                                          (150, 3.0), (1000, 20.0)])
def test_rtt_tolerance_is_max_of_1ms_and_2_percent(rtt, tol):
    assert rtt_tolerance_ms(rtt) == pytest.approx(tol)


def test_rtt_tolerance_adds_three_standard_errors_of_jitter():
    assert rtt_tolerance_ms(150, 10, 100) == pytest.approx(3.0 + 3 * 10 / math.sqrt(100))
    assert rtt_tolerance_ms(20, 4, 16) == pytest.approx(1.0 + 3.0)
    # more samples, tighter tolerance; no jitter, samples do not matter
    assert rtt_tolerance_ms(150, 10, 400) < rtt_tolerance_ms(150, 10, 100)
    assert rtt_tolerance_ms(150, 0, 1) == rtt_tolerance_ms(150, 0, 10_000) == 3.0


# --- judge --------------------------------------------------------------------------------------

def test_judge_ok_when_everything_matches():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec), spec, DEFAULT_MIN_GOODPUT_FRAC)
    assert c.problems == []
    assert c.ok is True


def test_judge_returns_the_same_object_and_resets_problems():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = check_for(spec)
    c.problems = ["stale"]
    c.ok = False
    assert judge(c, spec, DEFAULT_MIN_GOODPUT_FRAC) is c
    assert c.ok and c.problems == []


def test_judge_rtt_within_tolerance_is_ok():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, rtt_ms_measured=101.9), spec, DEFAULT_MIN_GOODPUT_FRAC)
    assert c.ok, c.problems


@pytest.mark.parametrize("measured", [102.5, 97.5, 150.0])
def test_judge_rtt_off_by_more_than_tolerance(measured):
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, rtt_ms_measured=measured), spec, DEFAULT_MIN_GOODPUT_FRAC)
    assert not c.ok
    assert len(c.problems) == 1
    assert "RTT" in c.problems[0]


def test_judge_no_ping_came_back():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, rtt_ms_measured=math.nan, loss_pct_measured=100.0), spec,
              DEFAULT_MIN_GOODPUT_FRAC)
    assert not c.ok
    assert "no ping came back" in c.problems
    assert not any(p.startswith("RTT") for p in c.problems)


def test_judge_loss_on_a_loss_free_link_is_a_problem():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, loss_pct_measured=5.0), spec, DEFAULT_MIN_GOODPUT_FRAC)
    assert not c.ok
    assert any("lost" in p for p in c.problems)


def test_judge_loss_within_binomial_tolerance_is_ok():
    spec = wan(rtt_ms=100, bw_mbps=100, loss_pct=5)
    c = judge(check_for(spec, ping_samples=1000, loss_pct_measured=5.5, goodput_mbps=10.0),
              spec, DEFAULT_MIN_GOODPUT_FRAC)
    assert c.ok, c.problems


@pytest.mark.parametrize("measured", [12.0, 0.0])
def test_judge_loss_far_from_configured_is_a_problem(measured):
    spec = wan(rtt_ms=100, bw_mbps=100, loss_pct=5)
    c = judge(check_for(spec, ping_samples=1000, loss_pct_measured=measured), spec,
              DEFAULT_MIN_GOODPUT_FRAC)
    assert not c.ok
    assert len(c.problems) == 1
    assert "loss" in c.problems[0]


def test_judge_goodput_below_min_fraction_is_a_problem():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, goodput_mbps=79.0), spec, 0.8)
    assert not c.ok
    assert len(c.problems) == 1 and "goodput" in c.problems[0]
    # the same figure passes with a looser floor
    assert judge(check_for(spec, goodput_mbps=79.0), spec, 0.7).ok


def test_judge_goodput_above_the_rate_is_not_shaped():
    spec = wan(rtt_ms=100, bw_mbps=100)
    edge = judge(check_for(spec, goodput_mbps=100 * GOODPUT_CEIL_FRAC), spec, 0.8)
    assert edge.ok, edge.problems
    c = judge(check_for(spec, goodput_mbps=103.0), spec, 0.8)
    assert not c.ok
    assert len(c.problems) == 1 and "goodput" in c.problems[0]


def test_judge_unshaped_link_goodput_not_judged():
    spec = wan(rtt_ms=100, bw_mbps=None)
    assert spec.bw_mbps is None
    for goodput in (0.5, 50_000.0):
        c = judge(check_for(spec, goodput_mbps=goodput), spec, 0.8)
        assert c.ok, c.problems


def test_judge_goodput_not_judged_on_a_lossy_link():
    spec = wan(rtt_ms=100, bw_mbps=100, loss_pct=1)
    c = judge(check_for(spec, ping_samples=1000, goodput_mbps=3.0), spec, 0.8)
    assert c.ok, c.problems


def test_judge_missing_goodput_not_judged():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, goodput_mbps=None, retransmits=None), spec, 0.8)
    assert c.ok, c.problems


def test_judge_collects_every_problem():
    spec = wan(rtt_ms=100, bw_mbps=100)
    c = judge(check_for(spec, rtt_ms_measured=120.0, loss_pct_measured=2.0, goodput_mbps=10.0),
              spec, 0.8)
    assert not c.ok
    assert len(c.problems) == 3


def test_to_json_round_trips_fields():
    spec = wan(rtt_ms=100, bw_mbps=100)
    record = judge(check_for(spec), spec, 0.8).to_json()
    assert record["ok"] is True
    assert record["rtt_ms_configured"] == 100.0
    assert record["problems"] == []
