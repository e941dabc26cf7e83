"""The pre-copy engine: iterative rounds over the dirty log, then a short stop-and-copy.

Why this shape (QEMU migration/ram.c + migration.c, vMotion): copying memory while the guest
runs keeps it available; each round re-sends only what the guest wrote during the previous one,
so with a dirty rate below the link rate the remainder shrinks geometrically until it fits the
downtime target, and only then is the guest paused ("stunned") for the last copy.

Why pipelined, and what the pipe changes: over a long fat pipe a round's pages are still in
flight when they have all been handed to the transport, and a round shorter than one RTT never
fills the pipe. So rounds follow each other without waiting for the window to drain, the
transfer rate is the transport's continuous estimate over the stream (never one round's bytes
over its duration), and the stop rule counts the bytes still in flight.

Decisions, exactly:

* round 0: start dirty tracking (``read_and_clear_dirty``, result discarded), snapshot the
  non-zero pages, send them; every other page goes as a bare zero-page index;
* a round begins at a dirty sync and ends at the next one, which comes once its pages are all
  handed to the transport, at least one RTT (``MIN_ROUND_S`` at least) after it began, and once
  at most one bandwidth-delay product is unacknowledged (``wait_backlog``): the pipe stays full
  while the next round is read, and a round is long enough to measure. The pages of a sync
  (unique) are the next round's set, so no page is sent twice within a round;
* transfer rate ``r``: the sender's estimate (``measured_goodput_Bps``, wire bytes/s), else
  ``initial_goodput_Bps``, capped by ``policy.max_bandwidth_mbps``; ``ratio``: raw/wire of
  the last round sent, the working set, not round 0's whole memory (an EWMA carrying round 0's
  2.4x into random pages at 1.0x under-estimated the downtime by 40 %). Dirty pages are
  assumed non-zero;
* expected downtime after a sync, if the guest were paused once the bytes in flight
  (``backlog_bytes``) have drained while it runs: ``(dirty + d * backlog / r) / (ratio * r) +
  rtt``, ``d`` the distinct dirty rate of the round just ended. At or below the target:
  drain, unless one more round would at least halve the final copy (``estimate.halves``);
* drain: the bytes in flight arrive while the guest runs (a ``drain`` row), then a sync and
  the estimate again, with an empty pipe: at or below the target, stop-and-copy; above it (the
  drain took longer than estimated), pre-copy goes on;
* throttling (``migrator.core.throttle``): after every sync, the round's dirty rate against the
  raw transfer rate ``ratio * r``; ``auto-converge`` or ``dirty-limit`` as the policy says;
* after ``max_rounds`` live rounds, or once ``time_budget_s`` has elapsed (checked between
  rounds), ``on_budget='force'`` stops and copies anyway (downtime over target, recorded) and
  ``'abort'`` gives up with outcome ``'aborted: budget'``, the guest still running at the source;
* stop-and-copy (after a drain, when forced too): pause, merge the pages dirtied since the
  last sync, hand them over (``stop-copy`` row), then ``sender.finish(state)`` (``verify``
  row: STATE and DIGEST behind the pages in flight, the check, the ACK). Only an ACK with
  ``ok`` and ``digest_ok`` completes the migration (the caller then resumes the guest at the
  destination and may fill ``resume_s``). Any error or a refused ACK before that resumes the
  guest at the source: outcome ``'aborted'``, nothing lost. Throttle and write cap are lifted
  at the end, whatever it was;
* a VM with a disk migrates it in the same rounds, its sectors first in each; a mirrored disk
  in round 0 only (``migrator.core.disk``);
* cold mode: pause first, send everything once, finish;
* the rows cover the migration without gaps: their durations sum to ``total_time_s``; an
  ``abort`` row, in the round it ends, carries what that round had handed over, a send that
  failed part-way included (``PartialSendError``), and the result what the sockets took and the
  destination acknowledged (``bytes_sent``, ``bytes_acked``): how far it went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from migrator.codecs.chunk import batches, split_zero
from migrator.core import estimate
from migrator.core.adaptive import CodecChooser
from migrator.core.disk import DiskLayout
from migrator.core.interfaces import VM, Clock, PartialSendError, Sender, wire_fields
from migrator.core.policy import MigrationPolicy
from migrator.core.records import MigrationResult, RoundRecord, Tally, totals
from migrator.core.throttle import ThrottleController
from migrator.memory.pages import PAGE_SIZE

log = logging.getLogger(__name__)

ProgressHook = Callable[[RoundRecord, "float | None"], None]
MIN_ROUND_S = 0.02          # the shortest round, whatever the RTT: long enough to measure
MIN_BACKLOG = 256 * 1024    # a round may end with this much unacknowledged at any RTT
_EMPTY = np.empty(0, dtype=np.int64)


class PreCopyEngine:
    """Runs one migration; see the module docstring for every decision it takes."""

    def __init__(self, clock: Clock, vm: VM, sender: Sender, policy: MigrationPolicy, *,
                 chooser: CodecChooser | None = None, progress: ProgressHook | None = None,
                 chunk_pages: int = 1024, zero_batch: int = 256 * 1024,
                 initial_goodput_Bps: float = 250e6 / 8) -> None:  # noqa: N803
        if policy.codec == "adaptive" and chooser is None:
            raise ValueError("policy.codec is 'adaptive': pass a CodecChooser built from "
                             "codecs.speed.measure_codec_speeds")
        if chunk_pages < 1 or zero_batch < 1:
            raise ValueError("chunk_pages and zero_batch must be >= 1")
        self.clock, self.vm, self.sender, self.policy = clock, vm, sender, policy
        self.chooser, self.progress, self.initial_goodput = chooser, progress, initial_goodput_Bps
        self.chunk_pages, self.zero_batch = chunk_pages, zero_batch
        self.throttler = ThrottleController(policy)
        self._ratio: float | None = None
        self._records: list[RoundRecord] = []
        self._throttle_max = 0.0            # the highest throttle applied
        self._paused, self._pause_at, self._start = False, 0.0, 0.0
        self._t = 0.0               # where the current row began
        self._sending: Tally | None = None      # a round's counts until its row is written
        self.disk = DiskLayout.of(vm)
        self._disk_bulk_s: float | None = None  # round 0's disk sectors all handed over

    # --- public --------------------------------------------------------------------------------

    def run(self) -> MigrationResult:
        self._start = self._t = self.clock.now()
        try:
            if self.policy.mode == "cold":
                return self._cold()
            return self._live()
        except Exception as exc:  # anything before the ACK aborts safely
            log.warning("migration aborted: %s", exc)
            if isinstance(exc, PartialSendError) and self._sending is not None:
                self._sending.add_handed(exc.handed)    # what the failed send got out
            return self._abort("aborted", str(exc) or type(exc).__name__)

    # --- phases --------------------------------------------------------------------------------

    def _live(self) -> MigrationResult:
        p = self.policy
        if self.disk.mirrored:
            self.vm.start_mirror()      # type: ignore[attr-defined] - DiskLayout checked it
        self.vm.read_and_clear_dirty()
        to_send, to_zero = self._round0_sets()
        rnd = 0
        while True:
            sent = self._send(rnd, to_send, to_zero)
            self._round_wait()
            dirty = self._sync()
            expected = self._close_live(rnd, sent, dirty)
            live = self._records[-1]
            rnd += 1
            if expected <= p.downtime_target_s and not self._halves(live):
                dirty, expected = self._drain(rnd, dirty)
                if expected <= p.downtime_target_s:
                    reason = "converged"
                    break
                log.info("after the drain the expected downtime is %.3f s: pre-copy goes on",
                         expected)
            self._throttle(live)
            if rnd >= p.max_rounds:
                reason = "max_rounds"
                break
            if self.clock.now() - self._start >= p.time_budget_s:
                reason = "time_budget"
                break
            to_send, to_zero = dirty, _EMPTY
        if reason != "converged":
            log.warning("no convergence after %d rounds (%s): %s", rnd, reason, p.on_budget)
            if p.on_budget == "abort":
                return self._abort("aborted: budget", reason, stop_reason=reason)
            dirty, _ = self._drain(rnd, dirty)
        return self._stop_and_copy(rnd, dirty, reason)

    def _cold(self) -> MigrationResult:
        pause_at = self.clock.now()
        self._pause()
        self.vm.read_and_clear_dirty()
        to_send, to_zero = self._round0_sets()
        self._row(0, "cold", self._send(0, to_send, to_zero))
        return self._finish(pause_at, self.clock.now(), "cold")

    def _drain(self, rnd: int, dirty: np.ndarray) -> tuple[np.ndarray, float]:
        """Let the bytes in flight arrive while the guest still runs (a ``drain`` row), then
        sync: the dirty set and the expected downtime measured with an empty pipe. A drain that
        took longer than estimated (a loss recovered at the tail) shows here, before the pause,
        and pre-copy goes on instead."""
        drain = getattr(self.sender, "drain", None)
        if callable(drain):
            drain(timeout_s=max(1.0, 4 * self.sender.rtt_s()))
        more = self._sync()
        dirty = np.union1d(dirty, more)
        expected = estimate.expected_downtime(len(dirty) * PAGE_SIZE, 0.0, self._backlog(),
                                              self._rate(), self._raw_rate(),
                                              self.sender.rtt_s())
        self._row(rnd, "drain", Tally(""), dirty=more,
                  expected_s=expected)
        return dirty, expected

    def _stop_and_copy(self, rnd: int, dirty: np.ndarray, reason: str) -> MigrationResult:
        pause_at = self.clock.now()
        self._pause()
        final = np.union1d(dirty, self._sync())
        self._row(rnd, "stop-copy", self._send(rnd, final, _EMPTY))
        return self._finish(pause_at, self.clock.now(), reason)

    def _finish(self, pause_at: float, copied_at: float, reason: str) -> MigrationResult:
        state_fn = getattr(self.vm, "save_state", None)
        state = state_fn() if callable(state_fn) else b""
        fin = self.sender.finish(state)
        done = self.clock.now()
        self._row(self._records[-1].round, "verify", Tally(""))
        if not (fin.ok and fin.digest_ok):
            why = fin.error or ("memory digest mismatch at the destination" if not fin.digest_ok
                                else "destination refused the migration")
            return self._abort("aborted", why, integrity=fin.digest_ok, copied_at=copied_at,
                               finished_at=done)
        self._lift_throttle()       # as QEMU at completion: the guest goes on at full speed
        return self._result("completed", reason, final_copy_s=copied_at - pause_at,
                            verify_s=done - copied_at, integrity=True)

    # --- rounds --------------------------------------------------------------------------------

    def _round0_sets(self) -> tuple[np.ndarray, np.ndarray]:
        nonzero = np.unique(np.asarray(self.vm.nonzero_pages(), dtype=np.int64))
        zero = np.setdiff1d(np.arange(self.vm.npages, dtype=np.int64), nonzero,
                            assume_unique=True)
        return nonzero, zero

    def _send(self, rnd: int, indices: np.ndarray, zero_known: np.ndarray) -> Tally:
        """Hand one round's pages to the transport (non-zero with their data, zero as bare
        indices), chunk by chunk, the disk's sectors first; returns the counts."""
        sent = self._sending = Tally(self._codec(), rnd)
        for part, zeros, disk in self.disk.parts(indices, zero_known):
            self._send_part(sent, rnd, part, zeros, disk)
            if disk and rnd == 0 and self._disk_bulk_s is None:
                self._disk_bulk_s = self.clock.now() - self._start
        if sent.raw > 0 and sent.wire > 0:
            self._ratio = sent.raw / sent.wire
            if self.chooser is not None:
                self.chooser.observe(sent.codec, sent.raw, sent.wire)
        return sent

    def _send_part(self, sent: Tally, rnd: int, indices: np.ndarray, zero_known: np.ndarray,
                   disk: bool) -> None:
        for chunk, zero_list in batches(indices, zero_known, self.chunk_pages, self.zero_batch):
            zero_idx, idx, data = split_zero(chunk, self.vm.page_bytes(chunk)) if len(chunk) \
                else (_EMPTY, _EMPTY, b"")
            if len(zero_list):
                zero_idx = np.concatenate([zero_idx, zero_list])
            report = self.sender.send_pages(rnd, idx, data, sent.codec, zero_indices=zero_idx)
            sent.add(len(idx), len(zero_idx), report.bytes_raw, report.bytes_on_wire, disk=disk)

    def _round_wait(self) -> None:
        """Let the round last one RTT and the unacknowledged bytes fall to one bandwidth-delay
        product (module docstring): the pipe stays full, and the guest runs on."""
        rtt = self.sender.rtt_s()
        wait_backlog = getattr(self.sender, "wait_backlog", None)
        if callable(wait_backlog):
            wait_backlog(max(MIN_BACKLOG, int(self._rate() * rtt)),
                         timeout_s=max(1.0, 4 * rtt))
        left = self._t + max(rtt, MIN_ROUND_S) - self.clock.now()
        if left > 0:
            self.clock.sleep(left)

    def _sync(self) -> np.ndarray:
        """Read and clear the dirty log: the unique pages written since the previous sync (a
        mirrored disk's sectors dropped: the destination has them already)."""
        return self.disk.to_resend(np.unique(np.asarray(self.vm.read_and_clear_dirty(),
                                                         dtype=np.int64)))

    def _row(self, rnd: int, phase: str, sent: Tally, *, dirty: np.ndarray = _EMPTY,
             expected_s: float = 0.0) -> RoundRecord:
        """Close the current row at now: it began where the previous one ended."""
        now = self.clock.now()
        duration, self._t, self._sending = now - self._t, now, None
        record = RoundRecord(
            round=rnd, phase=phase, pages=sent.pages, zero_pages=sent.zeros,
            bytes_raw=sent.raw, bytes_on_wire=sent.wire, codec=sent.codec,
            duration_s=duration, goodput_Bps=sent.wire / duration if duration > 0 else 0.0,
            dirty_rate_Bps=len(dirty) * PAGE_SIZE / duration if duration > 0 else 0.0,
            disk_dirty_rate_Bps=self.disk.on_disk(dirty) * PAGE_SIZE / duration
            if duration > 0 else 0.0,
            throttle=self.throttler.throttle, expected_downtime_s=expected_s,
            dirty_limit_Bps=self.throttler.dirty_limit_Bps,
            throttle_policy=self.policy.throttle, rate_Bps=self._rate(),
            disk_pages=sent.disk_pages, disk_bytes_raw=sent.disk_raw,
            disk_bytes_on_wire=sent.disk_wire)
        self._records.append(record)
        log.info("%s %d: %d pages (+%d zero) %s, %.0f B on wire in %.3f s, dirty %.0f B/s, "
                 "rate %.0f B/s, throttle %.2f, expected downtime %.3f s", phase, rnd,
                 sent.pages, sent.zeros, sent.codec, sent.wire, duration,
                 record.dirty_rate_Bps, record.rate_Bps, record.throttle, expected_s)
        if self.progress is not None and phase != "live":   # a live row: see _close_live
            self.progress(record, None)
        return record

    def _close_live(self, rnd: int, sent: Tally, dirty: np.ndarray) -> float:
        """The live row of round ``rnd``, the sync that ended it having found ``dirty``;
        returns the expected downtime."""
        dirty_bytes = len(dirty) * PAGE_SIZE
        duration = self.clock.now() - self._t
        dirty_Bps = dirty_bytes / duration if duration > 0 else 0.0  # noqa: N806
        expected = estimate.expected_downtime(dirty_bytes, dirty_Bps, self._backlog(),
                                              self._rate(), self._raw_rate(),
                                              self.sender.rtt_s())
        record = self._row(rnd, "live", sent, dirty=dirty, expected_s=expected)
        if self.progress is not None:
            self.progress(record, self._eta(record, dirty_bytes))
        return expected

    def _halves(self, record: RoundRecord) -> bool:
        return estimate.halves(record.dirty_rate_Bps * record.duration_s,
                               record.dirty_rate_Bps, self._raw_rate(),
                               max(self.sender.rtt_s(), MIN_ROUND_S))

    def _throttle(self, record: RoundRecord) -> None:
        change = self.throttler.observe(record.dirty_rate_Bps, self._raw_rate())
        if change is None:
            return
        if change.dirty_limit_Bps is not None:
            log.info("dirty-limit: guest writes capped at %.0f B/s (dirty/transfer %.2f)",
                     change.dirty_limit_Bps, change.ratio)
            self.vm.set_dirty_limit(change.dirty_limit_Bps)
        else:
            log.info("auto-converge: throttle %.2f (dirty/transfer %.2f)", change.throttle,
                     change.ratio)
            self.vm.set_throttle(change.throttle)
        self._throttle_max = max(self._throttle_max, change.throttle)

    # --- estimates -----------------------------------------------------------------------------

    def _rate(self) -> float:
        """The transfer rate, wire bytes/s (module docstring)."""
        measured = self.sender.measured_goodput_Bps()
        rate = measured if measured > 0 else self.initial_goodput
        if self.policy.max_bandwidth_mbps is not None:
            rate = min(rate, self.policy.max_bandwidth_mbps * 1e6 / 8)
        return rate

    def _raw_rate(self) -> float:
        return (self._ratio or 1.0) * self._rate()

    def _backlog(self) -> int:
        backlog = getattr(self.sender, "backlog_bytes", None)
        return int(backlog()) if callable(backlog) else 0

    def _eta(self, record: RoundRecord, dirty_bytes: int) -> float | None:
        if record.expected_downtime_s <= self.policy.downtime_target_s:
            return record.expected_downtime_s
        return estimate.eta(dirty_bytes, record.dirty_rate_Bps, self._raw_rate(),
                            self.sender.rtt_s())

    def _codec(self) -> str:
        if self.policy.codec != "adaptive":
            return self.policy.codec
        assert self.chooser is not None
        return self.chooser.choose(self._rate())

    # --- guest control -------------------------------------------------------------------------

    def _pause(self) -> None:
        self._pause_at = self.clock.now()
        self.vm.pause()
        self._paused = True

    def _lift_throttle(self) -> None:
        self.throttler.lift(self.vm)

    def _abort(self, outcome: str, error: str, *, stop_reason: str | None = None,
               integrity: bool | None = None, copied_at: float | None = None,
               finished_at: float | None = None) -> MigrationResult:
        """Leave the guest running at the source, unthrottled; report why.

        If the guest had been paused, the downtime it suffered is reported too: the final copy
        (or the time until the failure), the finish attempt, and the resume at the source.
        """
        was_paused = self._paused
        resume_start = self.clock.now()
        try:
            self._lift_throttle()
            if self._paused:
                self.vm.resume()
                self._paused = False
        except Exception as exc:  # report both failures, never hide the first
            log.error("could not resume the guest at the source: %s", exc)
            error = f"{error}; resume at source failed: {exc}"
        resumed = self.clock.now()
        copy_s = verify_s = resume_s = 0.0
        if was_paused:
            resume_s = resumed - resume_start
            if copied_at is not None and finished_at is not None:
                copy_s, verify_s = copied_at - self._pause_at, finished_at - copied_at
            else:
                copy_s = resume_start - self._pause_at
        return self._result(outcome, stop_reason or "error", final_copy_s=copy_s,
                            verify_s=verify_s, resume_s=resume_s, integrity=integrity,
                            error=error)

    def _result(self, outcome: str, stop_reason: str, *, final_copy_s: float, verify_s: float,
                resume_s: float = 0.0, integrity: bool | None,
                error: str | None = None) -> MigrationResult:
        if outcome != "completed":      # from the last row to the end: the abort's own row,
            last = self._records[-1].round if self._records else 0    # in the round it ends,
            self._row(self._sending.round if self._sending else last, "abort",
                      self._sending or Tally(""))   # with what an interrupted round had sent
        return MigrationResult(
            outcome=outcome, stop_reason=stop_reason, rounds=tuple(self._records),
            total_time_s=self._t - self._start,
            downtime_s=final_copy_s + verify_s + resume_s, final_copy_s=final_copy_s,
            verify_s=verify_s, resume_s=resume_s,
            vm_memory_bytes=self.disk.mem_pages * PAGE_SIZE, disk_bulk_s=self._disk_bulk_s,
            **totals(self._records), **wire_fields(self.sender), integrity_ok=integrity,
            throttle_max=self._throttle_max,
            downtime_target_s=self.policy.downtime_target_s, error=error)

