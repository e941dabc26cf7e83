"""migrator.guest.lease: the decision (pure) and its effect on a control block (a file, no
guest process: the guest's and the migrator's steps are called by hand, with the clock given);
migrator.guest.owner: the owner watch with a fake process table."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from migrator.guest import lease
from migrator.guest.control import (
    CONTROL_SIZE,
    PAUSED,
    RUNNING,
    ControlBlock,
    check_lease,
)
from migrator.guest.owner import CHECK_S, OwnerWatch


@pytest.mark.parametrize(("now", "paused", "deadline", "handed_over", "want"), [
    (5.0, True, 0.0, False, lease.KEEP),          # no lease: nothing to decide
    (5.0, True, 6.0, False, lease.KEEP),          # not run out yet
    (6.0, True, 6.0, False, lease.RESUME),        # run out exactly at the deadline
    (9.0, True, 6.0, False, lease.RESUME),
    (9.0, True, 6.0, True, lease.WAIT_OWNER),     # the destination owns it: never resumed here
    (9.0, False, 6.0, False, lease.RELEASE),      # running (throttled): lift
    (9.0, False, 6.0, True, lease.RELEASE),
    (5.0, False, 6.0, False, lease.KEEP),
])
def test_decide(now, paused, deadline, handed_over, want):
    assert lease.decide(now, paused=paused, deadline=deadline, handed_over=handed_over) == want


@pytest.fixture
def ctl(tmp_path):
    path = tmp_path / "block.ctl"
    path.write_bytes(b"\0" * CONTROL_SIZE)
    ControlBlock.initialise(path)
    block = ControlBlock(path)
    block.guest_start(pid=12345, location="dc1", tag="src")
    yield block
    block.close()


def paused_by_migrator(ctl: ControlBlock, deadline: float, throttle: float = 0.0,
                       dirty_limit: float = 0.0) -> None:
    """What a pause command leaves in the block once the guest acknowledged it."""
    ctl.transact(lambda s: {"state": PAUSED, "lease_deadline": deadline, "throttle": throttle,
                            "dirty_limit": dirty_limit})


def applied(ctl: ControlBlock) -> int:
    return ctl.snapshot().cmd_seq


def test_paused_guest_resumes_unthrottled_once_the_lease_ran_out(ctl):
    paused_by_migrator(ctl, deadline=100.0, throttle=0.8, dirty_limit=1e6)
    action, _ = lease.expire(ctl, applied(ctl), now=99.9)
    assert action == lease.KEEP and ctl.snapshot().state == PAUSED
    action, before = lease.expire(ctl, applied(ctl), now=100.5)
    after = ctl.snapshot()
    assert action == lease.RESUME and before.state == PAUSED and before.throttle == 0.8
    assert (after.state, after.throttle, after.dirty_limit, after.lease_deadline,
            after.lease_expiries) == (RUNNING, 0.0, 0.0, 0.0, 1), after


def test_handed_over_guest_stays_paused_for_its_destination(ctl):
    paused_by_migrator(ctl, deadline=100.0)
    assert lease.hand_over(ctl, "src", expiries=0, now=99.0)
    action, _ = lease.expire(ctl, applied(ctl), now=500.0)
    snap = ctl.snapshot()
    assert action == lease.WAIT_OWNER and snap.state == PAUSED and snap.lease_expiries == 0


def test_a_waiting_command_is_applied_before_the_lease_is_looked_at(ctl):
    paused_by_migrator(ctl, deadline=100.0)
    seq = applied(ctl)
    ctl.set_throttle(0.5)                       # bumps cmd_seq: the guest has not seen it yet
    action, _ = lease.expire(ctl, seq, now=200.0)
    assert action == lease.KEEP and ctl.snapshot().state == PAUSED


def test_running_guest_only_lifts_throttle_and_cap(ctl):
    ctl.transact(lambda s: {"lease_deadline": 100.0, "throttle": 0.99})
    action, _ = lease.expire(ctl, applied(ctl), now=101.0)
    snap = ctl.snapshot()
    assert action == lease.RELEASE and snap.state == RUNNING and snap.throttle == 0.0
    assert snap.lease_expiries == 1
    ctl.transact(lambda s: {"lease_deadline": 200.0})        # nothing held: not counted
    lease.expire(ctl, applied(ctl), now=201.0)
    assert ctl.snapshot().lease_expiries == 1 and ctl.snapshot().lease_deadline == 0.0


def test_renew_pushes_the_deadline_and_never_revives_a_lease_run_out(ctl):
    assert lease.renew(ctl, 2.0, now=10.0)                   # none yet: granted
    assert ctl.snapshot().lease_deadline == 12.0
    paused_by_migrator(ctl, deadline=12.0)
    assert lease.renew(ctl, 2.0, now=11.5)
    assert ctl.snapshot().lease_deadline == 13.5
    assert not lease.renew(ctl, 2.0, now=13.5)               # run out: the guest takes it
    assert ctl.snapshot().lease_deadline == 13.5


def test_a_stale_deadline_over_a_free_guest_is_no_lease(ctl):
    ctl.transact(lambda s: {"lease_deadline": 5.0})          # a holder killed before it held
    assert lease.renew(ctl, 2.0, now=10.0)
    assert ctl.snapshot().lease_deadline == 12.0
    ctl.transact(lambda s: {"lease_deadline": 5.0, "dirty_limit": 1e6})   # but a capped one
    assert not lease.renew(ctl, 2.0, now=10.0)


def test_hand_over_fails_once_the_guest_took_itself_back(ctl):
    paused_by_migrator(ctl, deadline=100.0)
    lease.expire(ctl, applied(ctl), now=101.0)               # resumed at the source
    assert not lease.hand_over(ctl, "src", expiries=0, now=101.0)
    paused_by_migrator(ctl, deadline=200.0)                  # paused again by someone else
    assert not lease.held(ctl.snapshot(), expiries=0, now=150.0)   # not our pause any more
    assert not lease.hand_over(ctl, "src", expiries=0, now=150.0)
    assert lease.hand_over(ctl, "src", expiries=1, now=150.0)


def test_hand_over_of_a_guest_already_switched_is_a_success(ctl):
    ctl.transact(lambda s: {"state": RUNNING, "tag": "dst", "location": "dc2"})
    assert lease.hand_over(ctl, "src", expiries=0, now=0.0)
    assert ctl.snapshot().handed_over == 0


def test_release_only_when_nothing_is_held(ctl):
    ctl.transact(lambda s: {"lease_deadline": 50.0, "throttle": 0.3})
    lease.release(ctl)
    assert ctl.snapshot().lease_deadline == 50.0
    ctl.transact(lambda s: {"throttle": 0.0})
    lease.release(ctl)
    assert ctl.snapshot().lease_deadline == 0.0


def test_switch_clears_throttle_cap_and_lease():
    assert lease.clear_at_switch() == {"throttle": 0.0, "dirty_limit": 0.0,
                                       "lease_deadline": 0.0, "handed_over": 0}


@pytest.mark.parametrize("bad", [0, 0.1, -1, 601, True, "3", float("nan")])
def test_lease_length_is_checked(bad):
    with pytest.raises(ConfigError, match="lease_s"):
        check_lease(bad)


def test_owner_watch_looks_every_check_period_and_by_start_time():
    table = {7: 1000}                                         # pid -> start time
    looks: list[float] = []

    def alive(pid, start):
        looks.append(pid)
        return table.get(pid) == start

    watch = OwnerWatch(7, alive=alive, started=table.get)
    assert not watch.gone(0.0) and not watch.gone(CHECK_S / 2) and len(looks) == 1
    table[7] = 2000                                          # pid reused by another process
    assert watch.gone(CHECK_S) and watch.gone(CHECK_S * 1.5)
    assert OwnerWatch(8, alive=alive, started=table.get).gone(0.0)   # dead before we looked
    assert not OwnerWatch(0, alive=alive, started=table.get).gone(0.0)  # no owner to watch
