"""The lease: a guest held by a migrator that disappears takes itself back.

Why: a real hypervisor's migration thread and its vCPUs live in one process, so a source
migrator that dies takes the paused VM down with it and the management layer restarts it; here
the migrator and the guest are separate processes, and a migrator killed while the guest is
paused (stop-and-copy, cold mode) or slowed (auto-converge, dirty-limit) would leave it so for
ever.  So whatever a migrator imposes on the guest is *leased*: the control block holds a
deadline (``lease_deadline``, the machine's monotonic clock), which the migrator keeps in the
future (``renew``, every fraction of ``LEASE_S``) while it works.  Once the deadline has passed,
the guest (``expire``, checked on its heartbeat):

* paused, ``handed_over`` not set: resumes at the source, throttle and write cap lifted;
* paused, ``handed_over`` set: stays paused; the destination was acknowledged as the owner
  (the source migrator sets the mark once the ACK is in, before it stops renewing) and only
  its switch command resumes the guest, so the VM never runs at two sites;
* running: lifts throttle and write cap (the migration that set them is over);

and records it: ``lease_expiries`` in the block, the log, and ``lease_expiries`` in its state.
The decision is ``decide``, pure.  A migrator that comes back after its lease ran out finds it
gone (``renew`` refuses, ``held`` is False): it must abort, the guest runs at the source.
"""

from __future__ import annotations

import time

from migrator.guest.control import PAUSED, RUNNING, ControlBlock, ControlState, check_lease

KEEP = "keep"              # nothing to do: no lease, or not run out yet
WAIT_OWNER = "wait-owner"  # run out, but the destination owns the guest: stay paused
RESUME = "resume"          # run out while paused: resume at the source, unthrottled
RELEASE = "release"        # run out while running: lift throttle and write cap


def decide(now: float, *, paused: bool, deadline: float, handed_over: bool) -> str:
    """What the guest does about its lease at monotonic time ``now``."""
    if deadline <= 0 or now < deadline:
        return KEEP
    if paused:
        return WAIT_OWNER if handed_over else RESUME
    return RELEASE


def _slowed(state: ControlState) -> bool:
    return state.throttle > 0 or state.dirty_limit > 0


# --- the guest's side ----------------------------------------------------------------------------

def expire(ctl: ControlBlock, applied_seq: int,
           now: float | None = None) -> tuple[str, ControlState]:
    """Apply ``decide`` to the block, atomically: on RESUME or RELEASE the block says running,
    unthrottled, no lease (one more expiry if anything was held).  Nothing is done while a
    command is waiting (``cmd_seq`` ahead of ``applied_seq``): the guest applies it first.
    Returns the decision and the state it was taken on."""
    when = time.monotonic() if now is None else now
    verdict: list[str] = [KEEP]

    def change(state: ControlState) -> dict | None:
        if state.cmd_seq != applied_seq:
            return None
        action = decide(when, paused=state.state == PAUSED, deadline=state.lease_deadline,
                        handed_over=bool(state.handed_over))
        verdict[0] = action
        if action not in (RESUME, RELEASE):
            return None
        held = action == RESUME or _slowed(state)
        fields: dict = {"throttle": 0.0, "dirty_limit": 0.0, "lease_deadline": 0.0,
                        "lease_expiries": state.lease_expiries + held}
        if action == RESUME:
            fields.update(state=RUNNING, handed_over=0)
        return fields

    state = ctl.transact(change)
    return verdict[0], state


def clear_at_switch() -> dict:
    """The block's fields a switched guest writes: the migration is over at the destination
    (QEMU lifts the throttle at completion), nothing is leased any more."""
    return {"throttle": 0.0, "dirty_limit": 0.0, "lease_deadline": 0.0, "handed_over": 0}


# --- the migrator's side -------------------------------------------------------------------------

def renew(ctl: ControlBlock, lease_s: float, now: float | None = None) -> bool:
    """Push the deadline ``lease_s`` ahead (granting a lease if there is none, or only a stale
    deadline over a guest running free); False, and nothing written, if a lease holding the
    guest already ran out (the guest takes itself back: never revived)."""
    check_lease(lease_s)
    when = time.monotonic() if now is None else now
    ok = [True]

    def change(state: ControlState) -> dict | None:
        if 0 < state.lease_deadline <= when and (state.state == PAUSED or _slowed(state)):
            ok[0] = False             # it held something: the guest is taking it back
            return None
        return {"lease_deadline": when + lease_s}     # else a stale deadline is no lease

    ctl.transact(change)
    return ok[0]


def held(state: ControlState, expiries: int, now: float | None = None) -> bool:
    """Whether a pause granted when the guest had ``expiries`` lease expiries is still ours."""
    when = time.monotonic() if now is None else now
    return state.state == PAUSED and state.lease_deadline > when \
        and state.lease_expiries == expiries


def hand_over(ctl: ControlBlock, source_tag: str, expiries: int,
              now: float | None = None) -> bool:
    """Mark the destination as the owner (the ACK is in); True if it is: the guest, paused under
    our lease, will wait for the destination's switch (or was already switched away from
    ``source_tag``).  False: the lease ran out first and the guest runs at the source."""
    when = time.monotonic() if now is None else now
    ok = [False]

    def change(state: ControlState) -> dict | None:
        if state.tag and state.tag != source_tag:
            ok[0] = True                  # the destination switched it already
            return None
        if held(state, expiries, when):
            ok[0] = True
            return {"handed_over": 1}
        return None

    ctl.transact(change)
    return ok[0]


def release(ctl: ControlBlock) -> None:
    """The migrator holds nothing any more (guest running, unthrottled): no lease."""
    ctl.transact(lambda s: {"lease_deadline": 0.0}
                 if s.state != PAUSED and not _slowed(s) else None)
