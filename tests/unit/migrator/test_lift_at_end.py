"""Issue 14, fault 6: throttle and write cap are lifted at the end of every migration, whatever
its outcome (completed, refused, digest mismatch, link down in a round or before the ACK,
budget), with either throttling policy; and by the source's interrupt path.  (Cold mode never
throttles.)  At the guest itself: a switched guest and one whose lease ran out lift them too
(tests/processes/migrator/test_lease.py).

The guest is the engine tests' fake (writes per its DirtyPlan as the fake clock advances); a
hard guest (40 MiB/s over 80 % of memory on a 4 MiB/s link) makes the policy act before the
end, so every case checks a throttle or cap that was really set.
"""

from __future__ import annotations

import pytest

from migrator.core.interfaces import FinishReport
from migrator.endpoints import _resume_at_source
from tests.unit.migrator.test_engine import FakeSender, engine, setup


class FailingSender(FakeSender):
    """Fails the way ``how`` says: ``send@N`` (the Nth send raises), ``refuse`` (the
    destination refuses the ACK with matching digests)."""

    def __init__(self, *args, how: str, **kw) -> None:
        super().__init__(*args, **kw)
        self.how, self.sends = how, 0

    def send_pages(self, *args, **kw):
        self.sends += 1
        if self.how.startswith("send@") and self.sends == int(self.how[5:]):
            raise ConnectionError("link down in a round")
        return super().send_pages(*args, **kw)

    def finish(self, state: bytes) -> FinishReport:
        report = super().finish(state)
        if self.how == "refuse":
            return FinishReport(ok=False, digest_ok=True, verify_s=0.0, error="refused")
        return report


CASES = {                     # name: (FakeSender fail, FailingSender how, policy, outcome)
    "completed": (None, "", {}, "completed"),
    "refused": (None, "refuse", {}, "aborted"),
    "digest-mismatch": ("corrupt", "", {}, "aborted"),
    "link-down-before-ack": ("finish", "", {}, "aborted"),
    "link-down-in-a-round": (None, "send@4", {}, "aborted"),
    "budget": (None, "", {"max_rounds": 5, "on_budget": "abort"}, "aborted: budget"),
}


@pytest.mark.parametrize("policy", ["auto-converge", "dirty-limit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_throttle_and_cap_lifted_at_the_end(case, policy):
    fail, how, extra, outcome = CASES[case]
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, fail=fail, throttle=policy,
                                   **extra)
    if how:
        sender = FailingSender(clock, vm, sender.bw, sender.rtt, how=how)
    res = engine(clock, vm, sender, pol).run()
    assert vm.throttles[:-1] or vm.limits[:-1], f"{case}: the policy never acted"
    assert res.outcome == outcome, (case, res.outcome, res.error)
    context = (case, policy, res.outcome, vm.throttles, vm.limits)
    if vm.throttles:
        assert vm.throttles[-1] == 0.0 and vm.plan.throttle == 0.0, context
    if vm.limits:
        assert vm.limits[-1] is None and vm.plan.dirty_limit_Bps is None, context
    assert not vm.paused or outcome == "completed", context   # resumed at the source


def test_interrupted_source_resumes_unthrottled():
    clock, vm, _sender, _pol = setup()
    vm.pause()
    vm.set_throttle(0.9)
    vm.set_dirty_limit(2e6)
    _resume_at_source(vm)
    assert not vm.paused and vm.plan.throttle == 0.0 and vm.plan.dirty_limit_Bps is None
