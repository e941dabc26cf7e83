"""migrator.qemu.driver against two fake QEMUs (scripted QMP answers and events): the order
of the switchover, the time budget (force, abort), QEMU's failure, an image that differs
(refused, its pages named) and parameters QEMU did not take; in every way out the guest
runs at exactly one end."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from migrator.core.policy import MigrationPolicy
from migrator.qemu.driver import Hooks, QemuMigration
from migrator.qemu.params import MAX_DOWNTIME_LIMIT_MS, qemu_settings
from migrator.qemu.qmp import Event, QmpError

ANNOUNCE = {"announce-initial": 50, "announce-max": 550, "announce-rounds": 5,
            "announce-step": 100}


class FakeQemu:
    """A QEMU's QMP as the driver uses it; ``migrate_answers`` is what query-migrate says in
    turn (the last one repeats); ``log`` is every command with its arguments, shared by both
    fakes so their order can be checked."""

    def __init__(self, name: str, log: list, migrate_answers: list | None = None) -> None:
        self.name, self.log = name, log
        self.answers = list(migrate_answers or [{"status": "none"}])
        self.caps: dict = {}
        self.params: dict = dict(ANNOUNCE)
        self.pending: list[Event] = []
        self.running = name == "src"
        self.twist: dict = {}                   # parameters reported otherwise than set
        self.fail: dict[str, str] = {}          # command => QEMU's error message
        self.peer: FakeQemu = self
        self.incoming = "completed"             # what the destination's load ends in
        self.done = False

    def _event(self, name: str, **data) -> None:
        # QEMU stamps events with the host's wall clock, as the driver's own times are
        self.pending.append(Event(name, time.time(), data))

    def cmd(self, name: str, /, **args):
        self.log.append((self.name, name, args))
        if name in self.fail:
            raise QmpError(name, self.fail[name])
        if name == "stop":
            self.running = False
            self._event("STOP")
        if name == "migrate-set-capabilities":
            self.caps.update({c["capability"]: c["state"] for c in args["capabilities"]})
        elif name == "migrate-set-parameters":
            self.params.update(args)
        elif name == "query-migrate-capabilities":
            return [{"capability": k, "state": v} for k, v in self.caps.items()]
        elif name == "query-migrate-parameters":
            return {**self.params, **self.twist}
        elif name == "query-migrate":
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if answer.get("status") == "completed" and not self.done:
                self.done = True
                if self.running:
                    self.running = False
                    self._event("STOP")
                self._event("MIGRATION", status="completed")
                self.peer._event("MIGRATION", status=self.peer.incoming)
            elif answer.get("status") == "failed":
                self._event("MIGRATION", status="failed")
            return answer
        elif name == "migrate_cancel":
            self.answers = [{"status": "cancelled"}]
        elif name == "query-status":
            return {"running": self.running, "status": "running" if self.running else "paused"}
        elif name == "cont":
            self.running = True
            self._event("RESUME")
        return {}

    def events(self, wait: float = 0.0) -> list[Event]:
        got, self.pending = self.pending, []
        return got

    def called(self, name: str) -> list:
        return [a for who, n, a in self.log if who == self.name and n == name]


RAM = {"dirty-sync-count": 1, "normal": 10, "duplicate": 5, "transferred": 50_000,
       "page-size": 4096, "mbps": 100.0, "remaining": 0}
ACTIVE = {"status": "active", "expected-downtime": 300, "ram": RAM}
DONE = {"status": "completed", "total-time": 900, "downtime": 20, "setup-time": 3,
        "ram": {**RAM, "dirty-sync-count": 2, "downtime-bytes": 10_000}}


class Said(Hooks):
    def __init__(self) -> None:
        self.said: list[str] = []

    def started(self, t): self.said.append("STARTED")
    def paused(self, t): self.said.append("PAUSED")
    def verified(self, t): self.said.append("VERIFIED")
    def resumed(self, t): self.said.append("RESUMED")


def migration(tmp_path: Path, answers: list, *, differ: bool = False, go=None, **policy):
    log: list = []
    src, dst = FakeQemu("src", log, answers), FakeQemu("dst", log)
    src.peer = dst
    (tmp_path / "src").write_bytes(b"\x01" * 8192)
    (tmp_path / "dst").write_bytes(b"\x01" * 8191 + (b"\x02" if differ else b"\x01"))
    pol = dataclasses.replace(MigrationPolicy(codec="none", encryption="none"), **policy)
    hooks = Said()
    gone: list = []
    m = QemuMigration(src, dst, qemu_settings(pol), "tcp:127.0.0.1:1",  # type: ignore[arg-type]
                      listen_uri="tcp:0.0.0.0:1", src_ram=tmp_path / "src",
                      dst_ram=tmp_path / "dst", go=go or (lambda: gone.append(len(log))),
                      hooks=hooks, poll_s=0.001)
    return m, src, dst, hooks, gone, log


def test_completed_switchover_in_order(tmp_path):
    m, src, dst, hooks, gone, log = migration(tmp_path, [ACTIVE, ACTIVE, DONE])
    res, qemu = m.run()
    assert res.outcome == "completed" and res.integrity_ok is True, res.error
    assert hooks.said == ["STARTED", "PAUSED", "VERIFIED", "RESUMED"]
    steps = [(who, n) for who, n, _ in log if n in ("migrate-incoming", "migrate", "cont",
                                                     "announce-self")]
    assert steps == [("dst", "migrate-incoming"), ("src", "migrate"), ("dst", "cont"),
                     ("dst", "announce-self")]
    # go() ran when the log had exactly the commands before cont
    assert gone == [[i for i, e in enumerate(log) if e[1] == "cont"][0]]
    assert dst.called("announce-self") == [{"initial": 50, "max": 550, "rounds": 5,
                                            "step": 100}]
    assert dst.caps["events"] and src.caps == dst.caps
    assert not src.called("cont") and not dst.called("quit")
    assert res.downtime_s == pytest.approx(qemu["downtime_stop_to_resume_s"])
    assert [r.phase for r in res.rounds][-2:] == ["stop-copy", "verify"]


def test_budget_abort_cancels_and_the_guest_stays_at_the_source(tmp_path):
    m, src, dst, hooks, _, _ = migration(tmp_path, [ACTIVE], time_budget_s=0.01,
                                         on_budget="abort")
    res, _ = m.run()
    assert (res.outcome, res.stop_reason) == ("aborted: budget", "time_budget")
    assert src.called("migrate_cancel") and src.running and dst.called("quit")
    assert "VERIFIED" not in hooks.said and not dst.called("cont")


def test_budget_force_raises_the_downtime_limit(tmp_path):
    m, src, _, _, _, _ = migration(tmp_path, [ACTIVE] * 30 + [DONE], time_budget_s=0.01)
    res, _ = m.run()
    assert res.outcome == "completed" and res.stop_reason == "time_budget"
    assert {"downtime-limit": MAX_DOWNTIME_LIMIT_MS} in src.called("migrate-set-parameters")


def test_qemu_failure_aborts_with_its_error_and_resumes_the_source(tmp_path):
    failed = {"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}
    m, src, dst, hooks, _, _ = migration(tmp_path, [ACTIVE, failed])
    src.running = False                      # paused when it failed (stop-copy)
    res, _ = m.run()
    assert res.outcome == "aborted" and "Broken pipe" in res.error
    assert src.called("cont") and src.running and dst.called("quit")
    assert res.rounds[-1].phase == "abort" and "VERIFIED" not in hooks.said


def test_an_image_that_differs_is_refused_and_its_pages_named(tmp_path):
    m, src, dst, hooks, gone, _ = migration(tmp_path, [ACTIVE, DONE], differ=True)
    res, qemu = m.run()
    assert res.outcome == "aborted" and res.stop_reason == "integrity"
    assert res.integrity_ok is False and "differs" in res.error and "0x1000" in res.error
    assert qemu["ram_differing"] == {"pages": 1, "of": 2, "first": ["0x1000"]}, qemu
    assert not dst.called("cont") and dst.called("quit") and not gone
    assert src.called("cont") and src.running and "VERIFIED" not in hooks.said


def test_parameters_qemu_did_not_take_stop_everything_before_migrate(tmp_path):
    m, src, dst, _, _, _ = migration(tmp_path, [ACTIVE])
    dst.twist = {"downtime-limit": 200}
    res, _ = m.run()
    assert res.outcome == "aborted" and "downtime-limit" in res.error
    assert not src.called("migrate") and dst.called("quit") and src.running


def test_an_error_after_cont_never_takes_the_guest_back(tmp_path):
    m, src, dst, _, _, _ = migration(tmp_path, [ACTIVE, DONE])
    dst.fail["announce-self"] = "no NIC to announce"
    res, _ = m.run()
    assert res.outcome == "completed" and "no NIC to announce" in res.error
    assert dst.running and not dst.called("quit") and not src.called("cont")


def test_cold_stops_the_guest_before_migrate(tmp_path):
    m, src, _, hooks, _, log = migration(tmp_path, [ACTIVE, DONE], mode="cold")
    res, _ = m.run()
    names = [n for who, n, _ in log if who == "src"]
    assert names.index("stop") < names.index("migrate")
    assert res.outcome == "completed" and res.stop_reason == "cold"
    assert {r.phase for r in res.rounds} == {"cold", "verify"}, res.rounds
    assert hooks.said == ["STARTED", "PAUSED", "VERIFIED", "RESUMED"]


def test_interrupted_before_the_switchover_leaves_the_guest_at_the_source(tmp_path):
    def interrupt():
        raise KeyboardInterrupt
    m, src, dst, _, _, _ = migration(tmp_path, [ACTIVE, DONE], go=interrupt)
    with pytest.raises(KeyboardInterrupt):
        m.run()
    assert src.called("migrate_cancel") and src.running
    assert dst.called("quit") and not dst.called("cont")


def test_the_image_is_checked_only_once_the_destination_has_loaded_it(tmp_path):
    m, src, dst, hooks, _, _ = migration(tmp_path, [ACTIVE, DONE])
    dst.incoming = "failed"                 # the destination could not load the stream
    res, _ = m.run()
    assert res.outcome == "aborted" and "destination's incoming migration is failed" in \
        res.error
    assert res.integrity_ok is None and "VERIFIED" not in hooks.said
    assert src.called("cont") and src.running and dst.called("quit")
