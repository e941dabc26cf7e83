"""An aborted migration's counters tell how far it went: the link of a fake long fat pipe
(``pipe.PipeSender``) dies part-way through a send, and the result's wire bytes, pages and
rounds are what that transport saw, the part of the failed send included."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.core.engine import PreCopyEngine
from migrator.core.interfaces import Handed, PartialSendError, SendReport, WireCounts
from migrator.core.policy import MigrationPolicy
from migrator.core.report import summary, table_rows
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB, WorkloadParams
from tests.unit.migrator.pipe import SLICE, PipeSender
from tests.unit.migrator.test_engine import FakeClock, FakeVM

RTT = 0.15
BW = 4 * MIB
FRAME_PAGES = 64                  # pages per frame the fake hands over
_EMPTY = np.empty(0, dtype=np.int64)


class DyingPipe(PipeSender):
    """``PipeSender`` handing frames of ``FRAME_PAGES`` pages over one by one, whose link dies
    when a frame would take it past ``fail_after`` wire bytes: the call raises
    ``PartialSendError`` with what it had handed over, as the TCP sender does."""

    def __init__(self, *args, fail_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail_after = fail_after
        self.handed = 0                  # wire bytes handed over
        self.pages_seen = 0              # non-zero pages handed over
        self.zeros_seen = 0
        self.rounds_seen: set[int] = set()

    def _hand(self, nbytes: int) -> None:
        if self.handed + nbytes > self.fail_after:
            raise ConnectionError("link down mid-send")
        for start in range(0, nbytes, SLICE):
            self._put(min(SLICE, nbytes - start))
        self.handed += nbytes

    def send_pages(self, round_no, indices, data, codec_name, zero_indices=None):
        t0 = self.clock.now()
        zero = np.asarray(zero_indices if zero_indices is not None else [], np.int64)
        pages = raw = wire = zeros = 0
        try:
            if len(zero):
                self._hand(8 * len(zero))
                self.dest[zero] = 0
                zeros, wire = len(zero), 8 * len(zero)
                self.zeros_seen += zeros
                self.rounds_seen.add(round_no)
            for start in range(0, len(indices), FRAME_PAGES):
                idx = indices[start:start + FRAME_PAGES]
                chunk = data[start * PAGE_SIZE:(start + len(idx)) * PAGE_SIZE]
                n = self.to.carry(codec_name, idx, chunk, _EMPTY)
                self._hand(n)
                pages, raw, wire = pages + len(idx), raw + len(chunk), wire + n
                self.pages_seen += len(idx)
                self.rounds_seen.add(round_no)
        except ConnectionError as exc:
            raise PartialSendError(exc, Handed(pages, zeros, raw, wire)) from exc
        return SendReport(bytes_raw=raw, bytes_on_wire=wire, seconds=self.clock.now() - t0)

    def wire_counts(self) -> WireCounts:
        return WireCounts(written=self.handed, acked=self.acked)


def migrate_until(fail_after: int, *, chunk_pages: int = 1024):
    clock = FakeClock()
    vm = FakeVM(clock, WorkloadParams(dirty_rate_mibps=0.5 * BW / MIB, working_set_frac=0.5,
                                      skew="uniform"))
    sender = DyingPipe(clock, vm, BW, RTT, window=1.5 * BW * RTT, fail_after=fail_after)
    pol = MigrationPolicy(codec="none", throttle="none")
    res = PreCopyEngine(clock, vm, sender, pol, chunk_pages=chunk_pages,
                        initial_goodput_Bps=BW).run()
    return res, vm, sender


def context(res, sender) -> str:
    rows = "\n".join(f"  {r.round:2d} {r.phase:9s} {r.pages:5d} pages +{r.zero_pages} zero "
                     f"{r.bytes_on_wire} B" for r in res.rounds)
    return (f"{res.outcome}: {res.error}; wire {res.bytes_on_wire} sent {res.bytes_sent} "
            f"acked {res.bytes_acked}; the fake saw {sender.handed} B, {sender.pages_seen} "
            f"pages, rounds {sorted(sender.rounds_seen)}, acked {sender.acked}\n{rows}")


def test_abort_inside_the_first_send_reports_what_it_handed_over():
    # One call carries the whole of round 0 (2048 pages, 8 MiB): the link dies 3 MiB into it,
    # two windows of 0.9 MiB after the first acknowledgments came back.
    res, vm, sender = migrate_until(3 * MIB, chunk_pages=4096)
    why = context(res, sender)
    assert res.outcome == "aborted" and "link down mid-send" in res.error, why
    assert [(r.round, r.phase) for r in res.rounds] == [(0, "abort")], why
    row = res.rounds[0]
    assert 2 * MIB < sender.handed <= 3 * MIB, why
    assert row.bytes_on_wire == res.bytes_on_wire == res.bytes_sent == sender.handed, why
    assert row.pages == sender.pages_seen > 0 and row.bytes_raw == row.pages * PAGE_SIZE, why
    assert row.zero_pages == sender.zeros_seen, why
    assert res.bytes_acked == sender.acked and 0 < res.bytes_acked <= res.bytes_sent, why
    assert not vm.paused and vm.events == [], why
    s = summary(res, rtt_s=RTT, max_rounds=30)
    assert s["rounds"] == 1 and s["bytes_on_wire"] == sender.handed, why
    shown = dict(table_rows(s))["bytes on wire"]
    assert "MiB sent" in shown and "acknowledged" in shown, shown


def test_abort_in_a_later_round_counts_every_round_as_far_as_it_went():
    first, _, _ = migrate_until(1 << 40)          # never dies: how big round 0 is
    round0 = first.rounds[0].bytes_on_wire
    res, _, sender = migrate_until(round0 + 3 * FRAME_PAGES * PAGE_SIZE // 2, chunk_pages=128)
    why = context(res, sender)
    assert res.outcome == "aborted", why
    assert res.rounds[-1].phase == "abort", why
    assert res.rounds[-1].round == max(sender.rounds_seen) >= 1, why
    assert res.rounds[-1].bytes_on_wire > 0, why
    assert res.bytes_on_wire == res.bytes_sent == sender.handed, why
    assert sum(r.pages for r in res.rounds) == sender.pages_seen, why
    assert sum(r.zero_pages for r in res.rounds) == sender.zeros_seen, why
    assert res.bytes_acked == sender.acked and 0 < res.bytes_acked <= res.bytes_sent, why
    s = summary(res, rtt_s=RTT, max_rounds=30)
    assert s["rounds"] == len(sender.rounds_seen), why


def test_a_completed_migration_sent_what_it_handed_over():
    res, vm, sender = migrate_until(1 << 40)
    why = context(res, sender)
    assert res.outcome == "completed" and np.array_equal(sender.dest, vm.memory), why
    assert res.bytes_on_wire == res.bytes_sent == res.bytes_acked == sender.handed, why


@pytest.mark.parametrize("stage", ["before", "after"])
def test_a_failure_that_is_no_partial_send_adds_nothing(stage):
    """Any other exception means nothing of that call went out (interfaces.Sender)."""
    clock = FakeClock()
    vm = FakeVM(clock, WorkloadParams(dirty_rate_mibps=0.0))
    pipe = DyingPipe(clock, vm, BW, RTT, window=1.5 * BW * RTT, fail_after=1 << 40)
    calls = []

    def send_pages(*args, **kwargs):
        calls.append(1)
        if stage == "before" or len(calls) > 1:
            raise ConnectionError("refused before anything was handed over")
        return DyingPipe.send_pages(pipe, *args, **kwargs)

    pipe.send_pages = send_pages
    out = PreCopyEngine(clock, vm, pipe, MigrationPolicy(codec="none"), chunk_pages=512,
                        initial_goodput_Bps=BW).run()
    why = context(out, pipe)
    assert out.outcome == "aborted", why
    assert out.bytes_on_wire == out.bytes_sent == pipe.handed, why
    assert (pipe.handed == 0) is (stage == "before"), why
