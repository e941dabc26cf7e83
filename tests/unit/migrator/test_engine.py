"""migrator.core.engine: the pre-copy engine driven by a fake clock, a numpy guest and a fake link.

The fake link really encodes and decodes every chunk into a destination memory image, so
"completed" is checked against the bytes, not just the engine's bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest

from migrator.core.adaptive import CodecChooser
from migrator.core.engine import PreCopyEngine
from migrator.core.interfaces import FinishReport, SendReport
from migrator.core.policy import MigrationPolicy
from migrator.core.records import with_resume
from migrator.memory.pages import PAGE_SIZE, PageMix, fill_pages
from migrator.memory.workload import MIB, DirtyPlan, WorkloadParams
from tests.unit.migrator.pipe import Destination

NPAGES = 2048                     # 8 MiB guest
MIX = PageMix(zero=0.3, text=0.5, random=0.2)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.listeners: list = []

    def now(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
        for listener in self.listeners:
            listener(dt)

    sleep = advance


class FakeVM:
    """Guest memory in numpy; writes pages per its DirtyPlan whenever the clock advances."""

    def __init__(self, clock: FakeClock, params: WorkloadParams, seed: int = 1) -> None:
        self.npages = NPAGES
        self.memory = np.empty((NPAGES, PAGE_SIZE), np.uint8)
        fill_pages(self.memory, MIX, seed)
        self.plan = DirtyPlan(params, NPAGES, seed=seed)
        self.dirty = np.zeros(NPAGES, bool)
        self.paused = False
        self.events: list[str] = []
        self.throttles: list[float] = []
        self.limits: list[float | None] = []
        self.rng = np.random.default_rng(seed)
        clock.listeners.append(self.tick)

    def tick(self, dt: float) -> None:
        if self.paused:
            return
        idx = self.plan.pages_for(dt)
        if len(idx):
            off = int(self.rng.integers(0, PAGE_SIZE - 8))
            self.memory[idx, off:off + 8] = self.rng.integers(1, 256, size=(len(idx), 8),
                                                              dtype=np.uint8)
            self.dirty[idx] = True

    def read_and_clear_dirty(self) -> np.ndarray:
        out = np.flatnonzero(self.dirty)
        self.dirty[:] = False
        return out

    def nonzero_pages(self) -> np.ndarray:
        return np.flatnonzero(self.memory.any(axis=1))

    def pause(self) -> None:
        self.paused = True
        self.events.append("pause")

    def resume(self) -> None:
        self.paused = False
        self.events.append("resume")

    def set_throttle(self, frac: float) -> None:
        self.plan.throttle = frac
        self.throttles.append(frac)

    def set_dirty_limit(self, bytes_per_s: float | None) -> None:
        self.plan.dirty_limit_Bps = bytes_per_s
        self.limits.append(bytes_per_s)

    def page_bytes(self, indices: np.ndarray) -> bytes:
        return self.memory[indices].tobytes()

    def save_state(self) -> bytes:
        return b"cpu-state"


class FakeSender:
    """Encodes, 'transmits' (advancing the clock by wire/bandwidth + rtt) and decodes."""

    def __init__(self, clock: FakeClock, vm: FakeVM, bw_Bps: float, rtt: float,  # noqa: N803
                 overhead: int = 0, fail: str | None = None) -> None:
        self.clock, self.vm, self.bw, self.rtt = clock, vm, bw_Bps, rtt
        self.overhead = overhead
        self.fail = fail
        self.to = Destination(vm.memory)
        self.dest = self.to.image
        self.wire_total = 0
        self.send_time = 0.0
        self.sent_by_round: dict[int, list[np.ndarray]] = {}
        self.paused_at_send: list[bool] = []
        self.codecs: list[str] = []

    def send_pages(self, round_no, indices, data, codec_name, zero_indices=None):
        if self.fail == "send":
            raise ConnectionError("link down during send")
        zero = np.asarray(zero_indices if zero_indices is not None else [], np.int64)
        blob_bytes = self.to.carry(codec_name, indices, data, zero)
        self.sent_by_round.setdefault(round_no, []).append(np.concatenate([indices, zero]))
        self.paused_at_send.append(self.vm.paused)
        self.codecs.append(codec_name)
        wire = blob_bytes + self.overhead * (len(indices) + len(zero))
        seconds = wire / self.bw + self.rtt
        self.wire_total += wire
        self.send_time += seconds
        self.clock.advance(seconds)
        return SendReport(bytes_raw=len(data), bytes_on_wire=wire, seconds=seconds)

    def measured_goodput_Bps(self) -> float:  # noqa: N802
        return self.wire_total / self.send_time if self.send_time else 0.0

    def rtt_s(self) -> float:
        return self.rtt

    def finish(self, state: bytes) -> FinishReport:
        assert state == b"cpu-state"
        self.clock.advance(self.rtt)
        if self.fail == "finish":
            raise ConnectionError("link down before ACK")
        if self.fail == "corrupt":
            self.dest[5, 5] ^= 0xFF
        same = bool(np.array_equal(self.dest, self.vm.memory))
        return FinishReport(ok=same, digest_ok=same, verify_s=0.0,
                            error=None if same else "memory digest mismatch")

    def assert_no_page_twice_per_round(self) -> None:
        for rnd, parts in self.sent_by_round.items():
            allp = np.concatenate(parts)
            assert len(np.unique(allp)) == len(allp), f"round {rnd} sent a page twice"


def setup(rate_mibps=0.5, ws=0.25, bw=4 * MIB, rtt=0.05, fail=None, overhead=0, **policy):
    clock = FakeClock()
    vm = FakeVM(clock, WorkloadParams(dirty_rate_mibps=rate_mibps, working_set_frac=ws))
    sender = FakeSender(clock, vm, bw, rtt, overhead=overhead, fail=fail)
    pol = MigrationPolicy(**{"codec": "none", **policy})
    return clock, vm, sender, pol


def engine(clock, vm, sender, pol, **kw):
    return PreCopyEngine(clock, vm, sender, pol, chunk_pages=NPAGES, **kw)


def test_low_dirty_rate_converges():
    clock, vm, sender, pol = setup(rate_mibps=0.5)
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and res.stop_reason == "converged"
    assert res.integrity_ok is True and np.array_equal(sender.dest, vm.memory)
    assert 1 <= res.live_rounds <= 3
    # Downtime: estimate <= target, plus the ACK round trip of finish.
    assert res.downtime_s <= pol.downtime_target_s + 0.05 + 1e-9
    assert res.downtime_s == pytest.approx(res.final_copy_s + res.verify_s)
    assert res.rounds[0].zero_pages > 0.2 * NPAGES           # 30 % zero pages, sd ~1 %
    assert vm.events == ["pause"] and not vm.throttles
    assert res.vm_memory_bytes == NPAGES * PAGE_SIZE
    sender.assert_no_page_twice_per_round()


def test_stop_decision_formula():
    """expected = dirty_bytes / (ratio * rate) + rtt, with ratio exactly 1 for 'none' and
    nothing in flight."""
    clock, vm, sender, pol = setup(rate_mibps=2.0, ws=0.5, bw=4 * MIB)
    seen = []
    res = engine(clock, vm, sender, pol,
                 progress=lambda rec, eta: seen.append((rec, sender.measured_goodput_Bps(),
                                                        eta))).run()
    assert res.outcome == "completed" and res.live_rounds >= 2
    live = [r for r in res.rounds if r.phase == "live"]
    checked = 0
    sent = [r for r in res.rounds if r.phase != "drain"]    # the drain sends nothing
    seen = [x for x in seen if x[0].phase != "drain"]
    for (rec, goodput, _), nxt in zip(seen, sent[1:], strict=False):
        if rec.phase != "live":
            continue
        checked += 1
        dirty_bytes = (nxt.pages + nxt.zero_pages) * PAGE_SIZE
        assert rec.expected_downtime_s == pytest.approx(dirty_bytes / goodput + 0.05)
        assert rec.rate_Bps == pytest.approx(goodput)
    assert checked == len(live) >= 2
    for (rec, rate, _) in seen:        # under the target, a round goes on only if it halves
        if rec.phase == "live" and rec is not live[-1] and \
                rec.expected_downtime_s <= pol.downtime_target_s:
            dirty = rec.dirty_rate_Bps * rec.duration_s
            assert rec.dirty_rate_Bps * max(dirty / rate, 0.05) < 0.5 * dirty, rec
    assert live[-1].expected_downtime_s <= pol.downtime_target_s
    assert [r.phase for r, _, _ in seen[-2:]] == ["stop-copy", "verify"]
    assert seen[-1][2] is None
    assert seen[0][2] is not None and seen[0][2] > 0


def test_stop_decision_uses_the_last_rounds_compression_not_round_0s():
    """Round 0 sends the whole (compressible) memory, later rounds the working set: the
    estimate divides by the ratio of the round just sent."""
    clock, vm, sender, pol = setup(rate_mibps=6.0, ws=0.5, bw=2 * MIB, codec="zstd-1")
    seen = []
    res = engine(clock, vm, sender, pol,
                 progress=lambda rec, eta: seen.append((rec, sender.measured_goodput_Bps()))
                 ).run()
    assert res.outcome == "completed" and res.live_rounds >= 2
    checked = 0
    sent = [r for r in res.rounds if r.phase != "drain"]    # the drain sends nothing
    seen = [x for x in seen if x[0].phase != "drain"]
    for (rec, rate), nxt in zip(seen, sent[1:], strict=False):
        if rec.phase != "live" or not rec.bytes_on_wire:
            continue
        checked += 1
        ratio = rec.bytes_raw / rec.bytes_on_wire
        dirty_bytes = (nxt.pages + nxt.zero_pages) * PAGE_SIZE
        assert rec.expected_downtime_s == pytest.approx(dirty_bytes / (ratio * rate) + 0.05)
    assert checked >= 2
    ratios = [r.bytes_raw / r.bytes_on_wire for r in res.rounds if r.bytes_on_wire]
    assert len(set(round(x, 3) for x in ratios)) > 1, ratios      # they do differ


def test_non_convergence_throttles_in_steps_sized_from_the_ratio():
    # 40 MiB/s uniform on 80 % of memory against a 4 MiB/s link: every round re-dirties the
    # whole working set until the throttle brings the rate down.
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, bw=4 * MIB, max_rounds=30)
    res = engine(clock, vm, sender, pol).run()
    assert vm.throttles[-1] == 0.0                             # lifted once completed
    raised = vm.throttles[:-1]
    assert raised and raised[0] >= pol.throttle_initial
    assert all(step >= pol.throttle_step - 1e-9 for step in np.diff(raised))
    # The first step goes where the dirty rate would meet the trigger, not 0.2 at a time:
    assert raised[0] > 0.5, vm.throttles
    assert res.throttle_max == pytest.approx(max(raised))
    throttles = [r.throttle for r in res.rounds]
    assert throttles == sorted(throttles)                       # never lowered mid-migration
    assert {r.throttle_policy for r in res.rounds} == {"auto-converge"}
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    sender.assert_no_page_twice_per_round()


def test_dirty_limit_caps_the_writes_instead():
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, bw=4 * MIB, max_rounds=30,
                                   throttle="dirty-limit")
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    assert not vm.throttles and vm.limits, vm.limits
    assert vm.limits[0] == pytest.approx(0.5 * 4 * MIB, rel=0.05)   # trigger x transfer rate
    assert vm.limits[-1] is None and vm.plan.dirty_limit_Bps is None    # lifted at the end
    assert all(b < a for a, b in zip(vm.limits, vm.limits[1:-1], strict=False))   # lowered
    capped = [r for r in res.rounds if r.dirty_limit_Bps is not None]
    assert capped and {r.throttle_policy for r in res.rounds} == {"dirty-limit"}


def test_forced_stop_after_max_rounds():
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, throttle="none", max_rounds=4)
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and res.stop_reason == "max_rounds"
    assert res.live_rounds == 4 and not vm.throttles
    assert res.downtime_s > pol.downtime_target_s and res.downtime_exceeded
    assert np.array_equal(sender.dest, vm.memory)


def test_time_budget_forces_stop():
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, throttle="none",
                                   time_budget_s=3.0)
    res = engine(clock, vm, sender, pol).run()
    assert res.stop_reason == "time_budget" and res.outcome == "completed"
    # Checked between rounds: one round of ~1.6 MiB dirty at 4 MiB/s overshoots by < 1 s.
    live_end = sum(r.duration_s for r in res.rounds if r.phase == "live")
    assert 3.0 <= live_end < 4.5


def test_abort_policy_leaves_guest_at_source_unthrottled():
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, max_rounds=5, on_budget="abort")
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "aborted: budget" and res.stop_reason == "max_rounds"
    assert "pause" not in vm.events and not vm.paused
    assert vm.throttles and vm.throttles[-1] == 0.0 and vm.plan.throttle == 0.0
    assert res.downtime_s == 0.0 and res.integrity_ok is None


def test_cold_mode_one_round_guest_paused_throughout():
    clock, vm, sender, pol = setup(rate_mibps=40.0, ws=0.8, mode="cold")
    before = vm.memory.copy()
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and res.stop_reason == "cold"
    assert [r.phase for r in res.rounds] == ["cold", "verify"]
    assert all(sender.paused_at_send) and vm.events == ["pause"]
    assert np.array_equal(vm.memory, before)                    # no writes after the pause
    assert np.array_equal(sender.dest, vm.memory)
    assert res.downtime_s == pytest.approx(res.total_time_s)


@pytest.mark.parametrize(("fail", "message"), [("corrupt", "digest mismatch"),
                                                ("finish", "link down before ACK")])
def test_finish_failure_resumes_at_source(fail, message):
    clock, vm, sender, pol = setup(rate_mibps=0.5, fail=fail)
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "aborted" and message in res.error
    assert vm.events == ["pause", "resume"] and not vm.paused
    assert res.integrity_ok is (False if fail == "corrupt" else None)
    assert res.downtime_s > 0                                   # the guest was stunned


def test_send_failure_in_live_round_aborts_without_pause():
    clock, vm, sender, pol = setup(fail="send")
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "aborted" and "link down during send" in res.error
    assert vm.events == [] and [r.phase for r in res.rounds] == ["abort"]


def test_xbzrle_end_to_end():
    clock, vm, sender, pol = setup(rate_mibps=2.0, ws=0.5, codec="xbzrle")
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    later = [r for r in res.rounds[1:] if r.pages]
    # Re-sent pages differ in 8 bytes: the deltas are tiny compared with the pages.
    assert later and all(r.bytes_on_wire < 0.1 * r.bytes_raw for r in later)


def test_adaptive_codec_per_round():
    table = {"none": (1e10, 1.0), "lz4": (8e8, 2.0), "zstd-3": (1.5e8, 3.2)}
    clock, vm, sender, pol = setup(rate_mibps=0.5, codec="adaptive", bw=1 * MIB)
    chooser = CodecChooser(table, cores=2)
    res = engine(clock, vm, sender, pol, chooser=chooser).run()
    assert res.outcome == "completed"
    assert res.rounds[0].codec == "zstd-3"                      # slow link: compress hard
    assert res.compression_ratio > 1.3                          # text + random pages
    assert chooser.estimates["zstd-3"].ratio != 3.2             # updated from what was sent


def test_adaptive_without_chooser_rejected():
    clock, vm, sender, pol = setup(codec="adaptive")
    with pytest.raises(ValueError, match="CodecChooser"):
        PreCopyEngine(clock, vm, sender, pol)


def test_with_resume_adds_to_downtime():
    clock, vm, sender, pol = setup(rate_mibps=0.5)
    res = engine(clock, vm, sender, pol).run()
    later = with_resume(res, 0.02)
    assert later.downtime_s == pytest.approx(res.downtime_s + 0.02) and later.resume_s == 0.02


def test_idle_guest_one_round_and_empty_stop_copy():
    clock, vm, sender, pol = setup(rate_mibps=0.0)
    res = engine(clock, vm, sender, pol).run()
    assert res.outcome == "completed" and res.live_rounds == 1
    assert res.rounds[0].expected_downtime_s == pytest.approx(0.05)   # nothing dirty: rtt
    assert res.rounds[-2].phase == "stop-copy" and res.rounds[-2].pages == 0
    assert res.downtime_s == pytest.approx(0.05)                      # only the ACK's rtt
    assert len(sender.sent_by_round) == 1                             # no empty sends


class DrainingSender(FakeSender):
    """A sender with a window in flight: ``backlog`` bytes unacknowledged after every send,
    acknowledged by ``drain`` (which takes backlog / bandwidth of guest time)."""

    def __init__(self, *args, backlog: int, **kw) -> None:
        super().__init__(*args, **kw)
        self.backlog = backlog
        self.in_flight = 0
        self.drained_while_paused: list[bool] = []

    def send_pages(self, *args, **kw):
        report = super().send_pages(*args, **kw)
        self.in_flight = self.backlog
        return report

    def backlog_bytes(self) -> int:
        return self.in_flight

    def drain(self, timeout_s: float) -> float:
        dt = self.in_flight / self.bw
        self.drained_while_paused.append(self.vm.paused)
        self.clock.advance(dt)
        self.in_flight = 0
        return dt


def test_window_in_flight_drains_before_the_pause_and_counts_in_the_estimate():
    clock, vm, _, pol = setup(rate_mibps=1.0, ws=0.5, bw=4 * MIB)
    sender = DrainingSender(clock, vm, 4 * MIB, 0.05, backlog=MIB)
    seen = []
    res = engine(clock, vm, sender, pol, progress=lambda rec, eta: seen.append(
        (rec, sender.measured_goodput_Bps()))).run()
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    assert sender.drained_while_paused == [False], sender.drained_while_paused
    checked = 0
    for (rec, rate), nxt in zip(seen, res.rounds[1:], strict=False):
        if nxt.phase != "live":        # the final copy also has what was dirtied in the drain
            continue
        checked += 1
        dirty_bytes = (nxt.pages + nxt.zero_pages) * PAGE_SIZE
        more = rec.dirty_rate_Bps * MIB / rate           # dirtied while a MiB in flight drains
        assert rec.expected_downtime_s == pytest.approx((dirty_bytes + more) / rate + 0.05)
    assert checked >= 1, [r.phase for r in res.rounds]
    assert [r.phase for r in res.rounds][-3:] == ["drain", "stop-copy", "verify"]


class SlowDrainSender(DrainingSender):
    """The first drain takes ``stall_s`` (a loss recovered at the tail), not backlog / rate."""

    def __init__(self, *args, stall_s: float, **kw) -> None:
        super().__init__(*args, **kw)
        self.stall_s = stall_s

    def drain(self, timeout_s: float) -> float:
        dt = super().drain(timeout_s)
        if self.stall_s:
            self.clock.advance(self.stall_s)
            dt, self.stall_s = dt + self.stall_s, 0.0
        return dt


def test_a_drain_slower_than_estimated_sends_pre_copy_on_instead_of_pausing():
    clock, vm, _, pol = setup(rate_mibps=1.0, ws=0.5, bw=4 * MIB)
    sender = SlowDrainSender(clock, vm, 4 * MIB, 0.05, backlog=MIB, stall_s=2.0)
    res = engine(clock, vm, sender, pol).run()
    phases = [r.phase for r in res.rounds]
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory)
    first = phases.index("drain")
    assert res.rounds[first].expected_downtime_s > pol.downtime_target_s, res.rounds[first]
    assert phases[first + 1] == "live", phases                # not a pause
    assert phases[-3:] == ["drain", "stop-copy", "verify"]
    assert res.rounds[-3].expected_downtime_s <= pol.downtime_target_s
    assert sender.drained_while_paused and not any(sender.drained_while_paused)
