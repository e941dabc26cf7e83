"""migrator.endpoints: once the ACK is in the guest is handed over; a guest whose lease ran out
first (it runs at the source again) turns a completed migration into an aborted one."""

from __future__ import annotations

import dataclasses

from migrator.core.records import MigrationResult
from migrator.endpoints import _hand_over, not_started


class VM:
    npages = 16

    def __init__(self, owns: bool) -> None:
        self.owns, self.asked = owns, 0

    def hand_over(self) -> bool:
        self.asked += 1
        return self.owns


def result(outcome: str, vm: VM) -> MigrationResult:
    from migrator.core.policy import MigrationPolicy

    return dataclasses.replace(not_started(vm, MigrationPolicy(), "x", 1.0), outcome=outcome,
                               error=None)


def test_completed_migration_hands_the_guest_over():
    vm = VM(owns=True)
    done = result("completed", vm)
    assert _hand_over(vm, done) is done and vm.asked == 1


def test_lease_run_out_before_the_hand_over_is_an_abort():
    vm = VM(owns=False)
    got = _hand_over(vm, result("completed", vm))
    assert got.outcome == "aborted" and "resumed at the source" in got.error and vm.asked == 1


def test_aborted_migration_or_a_guest_without_a_lease_is_not_handed_over():
    vm = VM(owns=False)
    aborted = result("aborted", vm)
    assert _hand_over(vm, aborted) is aborted and vm.asked == 0
    plain = type("Plain", (), {"npages": 16})()
    done = result("completed", vm)
    assert _hand_over(plain, done) is done
