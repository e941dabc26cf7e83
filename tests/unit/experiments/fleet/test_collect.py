"""Pieces of a fleet run's figures: a move's client outage from its VM's probes, and the WAN
sampler's reading of a namespace's byte counters."""

from __future__ import annotations

import os

from experiments.fleet.collect import outage_ms
from experiments.fleet.wansample import tx_bytes
from experiments.metrics import Probe


def probes(replies_at: list[float], lost_at: list[float]) -> list[Probe]:
    rows = [(t, t + 0.01) for t in replies_at] + [(t, None) for t in lost_at]
    return [Probe(seq=i, t_send=s, t_reply=r, site="dc1") for i, (s, r) in
            enumerate(sorted(rows))]


def test_a_moves_outage_is_its_longest_reply_gap_within_the_move():
    # replies every 10 ms from 0 to 10 s, except 4.00-4.50 (a 0.5 s pause) and 20.0-22.0
    # (another VM's move, later: outside this move's window)
    every = [i / 100 for i in range(0, 2500)]
    gone = [t for t in every if 4.0 <= t < 4.5 or 20.0 <= t < 22.0]
    p = probes([t for t in every if t not in gone], gone)
    got = outage_ms(p, start_t=3.0, end_t=6.0)
    assert got is not None and abs(got - 510.0) < 1.0, got
    assert abs(outage_ms(p, start_t=19.0, end_t=21.0) - 2010.0) < 1.0
    assert outage_ms(probes([], [1.0, 2.0]), 0.5, 2.5) is None     # no reply at all


def test_the_sampler_reads_this_namespaces_loopback_counter():
    got = tx_bytes(os.getpid(), ["lo", "no-such-dev"])
    assert set(got) == {"lo"} and got["lo"] >= 0, got
