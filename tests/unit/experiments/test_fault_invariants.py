"""experiments.faults.invariants: one site, lost writes, reachable, judged from evidence."""

from __future__ import annotations

import pytest

from experiments.faults.invariants import (
    judge,
    lost_writes,
    one_site,
    reachable,
    settle_time,
)
from experiments.metrics import Probe

AT_DST = {"guest": {"state": "running", "location": "dc2", "tag": "dst"},
          "cables": [{"intf": "vm1-eth1", "switch": "dc2s1", "site": "dc2", "up": True}],
          "controller_site": "dc2", "source_outcome": "completed", "dest_tag": "dst"}
AT_SRC = {"guest": {"state": "running", "location": "dc1", "tag": "src"},
          "cables": [{"intf": "vm1-eth0", "switch": "dc1s1", "site": "dc1", "up": True},
                     {"intf": "vm1-eth1", "switch": "dc2s1", "site": "dc2", "up": False}],
          "controller_site": "dc1", "source_outcome": "aborted", "dest_tag": "dst"}


def with_guest(evidence, **guest):
    return {**evidence, "guest": {**evidence["guest"], **guest}}


def test_a_completed_migration_runs_at_the_destination_only():
    got = one_site(AT_DST, "dc2")
    assert got == {"one_site": True, "vm_site": "dc2", "split_brain": False, "one_site_why": []}


def test_an_aborted_migration_runs_at_the_source_its_spare_cable_down():
    assert one_site(AT_SRC, "dc1")["vm_site"] == "dc1"


def test_a_witness_that_saw_nothing_does_not_count():
    assert one_site({**AT_SRC, "controller_site": None}, None)["one_site"] is True


@pytest.mark.parametrize("evidence, reply_site, why", [
    (with_guest(AT_SRC, state="paused"), "dc1", "the guest is paused"),
    (with_guest(AT_SRC, state="exited"), "dc1", "the guest is exited"),
    ({**AT_SRC, "cables": [{**c, "up": True} for c in AT_SRC["cables"]]}, "dc1",
     "2 of the VM's cables are up"),
    ({**AT_SRC, "cables": []}, None, "0 of the VM's cables are up"),
    ({**AT_SRC, "controller_site": "dc2"}, "dc1", "the controller saw dc2"),
    (AT_SRC, "dc2", "the clients' last reply came from dc2"),
    (with_guest(AT_SRC, location="dc2"), "dc1", "the guest says dc2"),
])
def test_anything_but_one_running_vm_at_one_site_fails_and_says_why(evidence, reply_site,
                                                                     why):
    got = one_site(evidence, reply_site)
    assert got["one_site"] is False and got["vm_site"] is None, got
    assert any(why in w for w in got["one_site_why"]), got


def test_the_guest_on_the_destination_copy_without_the_ack_is_a_split_brain():
    evidence = {**AT_DST, "source_outcome": "aborted"}
    got = one_site(evidence, "dc2")
    assert got["split_brain"] is True and got["one_site"] is False, got
    assert one_site({**AT_DST, "source_outcome": None}, "dc2")["split_brain"] is True


def kv(*rows):
    return [dict(zip(("op", "key", "value", "t", "result"), r, strict=True)) for r in rows]


def test_every_acknowledged_write_read_back_is_no_loss():
    rows = kv(("PUT", "k1", "a", "1", "ok"), ("PUT", "k2", "b", "2", "failed"),
              ("GET", "k1", "a", "3", "ok"), ("READBACK", "k1", "a", "4", "ok"))
    assert lost_writes(rows) == {"acked_writes": 1, "lost_writes": 0, "lost_by_result": {}}


def test_writes_not_read_back_equal_are_lost_by_what_was_found():
    rows = kv(*[("PUT", f"k{i}", "v", "1", "ok") for i in range(5)],
              ("READBACK", "k0", "v", "2", "ok"), ("READBACK", "k1", "w", "2", "mismatch"),
              ("READBACK", "k2", "", "2", "missing"), ("READBACK", "k3", "", "2", "failed"))
    assert lost_writes(rows) == {"acked_writes": 5, "lost_writes": 4, "lost_by_result": {
        "failed": 1, "mismatch": 1, "missing": 1, "not read": 1}}


def test_no_client_record_vouches_for_nothing():
    assert lost_writes(None)["lost_writes"] is None
    assert judge(AT_DST, probes(0, 3, 0.01), None, None, [])["held"] is False


def probes(t0, t1, every, answered=lambda t: True, site="dc2"):
    out, t, seq = [], t0, 0
    while t < t1:
        out.append(Probe(seq, t, t + 0.001 if answered(t) else None, site))
        t, seq = t + every, seq + 1
    return out


def test_reachable_when_answered_after_the_faults_and_at_the_end():
    ps = probes(0.0, 10.0, 0.01, answered=lambda t: not 3 <= t < 5)
    got = reachable(ps, settle_t=5.0)
    assert got["reachable"] is True and got["final_reply_frac"] == 1.0
    assert 5.0 <= got["first_reply_after_settle_t"] < 5.02


def test_unreachable_when_silent_after_the_faults_or_at_the_end():
    assert reachable(probes(0.0, 10.0, 0.01, answered=lambda t: t < 5), 5.0)["reachable"] \
        is False
    late = reachable(probes(0.0, 10.0, 0.01, answered=lambda t: t < 8.5), 2.0)
    assert late["reachable"] is False and late["final_reply_frac"] < 0.5, late
    assert reachable([], None)["reachable"] is False


def test_judge_holds_only_when_all_four_hold():
    ps = probes(0.0, 5.0, 0.01)
    rows = kv(("PUT", "k", "v", "1", "ok"), ("READBACK", "k", "v", "2", "ok"))
    assert judge(AT_DST, ps, rows, 1.0, [])["held"] is True
    assert judge(AT_DST, ps, rows, 1.0, ["bridge dc1s1"])["held"] is False
    assert judge(with_guest(AT_DST, state="paused"), ps, rows, 1.0, [])["held"] is False
    lost = kv(("PUT", "k", "v", "1", "ok"), ("READBACK", "k", "", "2", "missing"))
    assert judge(AT_DST, ps, lost, 1.0, [])["held"] is False


def test_settle_time_is_the_last_end_or_the_firing_of_a_fault_left_to_the_end():
    assert settle_time([]) is None
    recs = [{"fired_t": 10.0, "ended_t": 12.0, "ended_by": "duration"},
            {"fired_t": 11.0, "ended_t": 30.0, "ended_by": "end of run"},
            {"fired_t": None, "ended_t": None, "ended_by": None}]
    assert settle_time(recs) == 12.0
    assert settle_time(recs[1:]) == 11.0
