"""The pre-copy engine: iterative rounds over the dirty log, then a short stop-and-copy.

Why this shape (QEMU migration/ram.c + migration.c, vMotion): copying memory while the guest
runs keeps it available; each round re-sends only what the guest wrote during the previous one,
so with a dirty rate below the link rate the remainder shrinks geometrically until it fits the
downtime target, and only then is the guest paused ("stunned") for the last copy.

Decisions, exactly:

* round 0: start dirty tracking (``read_and_clear_dirty``, result discarded), snapshot the
  non-zero pages, send them; every other page goes as a bare zero-page index;
* after every live round, read and clear the dirty log: these pages (unique) are the next
  round's set, so no page is sent twice within a round;
* expected downtime = dirty_bytes / (ratio * goodput) + rtt, where ``ratio`` is an EWMA of
  raw/wire bytes actually sent (dirty pages are conservatively assumed non-zero), ``goodput``
  the sender's measurement (else the last round's, else ``initial_goodput_Bps``), capped by
  ``policy.max_bandwidth_mbps``.  At or below the target: stop-and-copy;
* no progress = dirty bytes not below 95 % of the previous round's.  After two consecutive
  no-progress rounds, with ``auto_converge``, the throttle goes to ``throttle_initial``, then up
  by ``throttle_step`` each time, capped at ``throttle_max`` (QEMU's auto-converge);
* after ``max_rounds`` live rounds, or once ``time_budget_s`` has elapsed (checked between
  rounds), ``on_budget='force'`` stops and copies anyway (downtime over target, recorded) and
  ``'abort'`` gives up with outcome ``'aborted: budget'``, the guest still running at the source;
* a live round shorter than one RTT whose estimate misses the target is *settled*: the
  sender drains its window, the pages dirtied meanwhile join the set, and the estimate is made
  again with an empty pipe (``_settle``);
* before pausing, a sender that has ``drain`` waits for its data in flight to be acknowledged
  (the guest still runs); the expected downtime counts the pages dirtied meanwhile, estimated
  from the live round whose length is closest above the drain time (``_dirtied_within``);
* stop-and-copy: pause, merge the pages dirtied since the last read, send them, then
  ``sender.finish(state)``.  Only an ACK with ``ok`` and ``digest_ok`` completes the migration
  (the caller then resumes the guest at the destination and may fill ``resume_s``).  Any error
  or a refused ACK before that resumes the guest at the source: outcome ``'aborted'``, nothing
  lost.  The throttle is lifted whenever the guest stays at the source;
* cold mode: pause first, send everything once, finish.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from itertools import zip_longest

import numpy as np

from migrator.codecs.chunk import split_zero
from migrator.core.adaptive import CodecChooser
from migrator.core.interfaces import VM, Clock, Sender
from migrator.core.policy import MigrationPolicy
from migrator.core.records import MigrationResult, RoundRecord
from migrator.memory.pages import PAGE_SIZE

log = logging.getLogger(__name__)

ProgressHook = Callable[[RoundRecord, "float | None"], None]
NO_PROGRESS = 0.95          # dirty bytes must fall below 95 % of the previous round's
NO_PROGRESS_ROUNDS = 2      # consecutive rounds without progress before throttling
_EMPTY = np.empty(0, dtype=np.int64)


class PreCopyEngine:
    """Runs one migration; see the module docstring for every decision it takes."""

    def __init__(self, clock: Clock, vm: VM, sender: Sender, policy: MigrationPolicy, *,
                 chooser: CodecChooser | None = None, progress: ProgressHook | None = None,
                 chunk_pages: int = 1024, zero_batch: int = 256 * 1024,
                 initial_goodput_Bps: float = 250e6 / 8, ratio_alpha: float = 0.3  # noqa: N803
                 ) -> None:
        if policy.codec == "adaptive" and chooser is None:
            raise ValueError("policy.codec is 'adaptive': pass a CodecChooser built from "
                             "codecs.speed.measure_codec_speeds")
        if chunk_pages < 1 or zero_batch < 1:
            raise ValueError("chunk_pages and zero_batch must be >= 1")
        self.clock, self.vm, self.sender, self.policy = clock, vm, sender, policy
        self.chooser = chooser
        self.progress = progress
        self.chunk_pages = chunk_pages
        self.zero_batch = zero_batch
        self.initial_goodput = initial_goodput_Bps
        self.ratio_alpha = ratio_alpha
        self._ratio: float | None = None
        self._last_goodput: float | None = None
        self._records: list[RoundRecord] = []
        self._throttle = 0.0
        self._throttle_max = 0.0
        self._paused = False
        self._settled_expected = float("inf")
        self._pause_at = 0.0
        self._start = 0.0

    # --- public --------------------------------------------------------------------------------

    def run(self) -> MigrationResult:
        self._start = self.clock.now()
        try:
            if self.policy.mode == "cold":
                return self._cold()
            return self._live()
        except Exception as exc:  # anything before the ACK aborts safely
            log.warning("migration aborted: %s", exc)
            return self._abort("aborted", str(exc) or type(exc).__name__)

    # --- phases --------------------------------------------------------------------------------

    def _live(self) -> MigrationResult:
        p = self.policy
        self.vm.read_and_clear_dirty()
        to_send, to_zero = self._round0_sets()
        prev_dirty: int | None = None
        stalled = 0
        rnd = 0
        while True:
            dirty = self._send_round(rnd, to_send, to_zero, "live")
            rnd += 1
            if self._records[-1].expected_downtime_s > p.downtime_target_s:
                dirty = self._settle(dirty)
            dirty_bytes = len(dirty) * PAGE_SIZE
            if self._records[-1].expected_downtime_s <= p.downtime_target_s or \
                    self._settled_expected <= p.downtime_target_s:
                reason = "converged"
                break
            if prev_dirty is not None and dirty_bytes > NO_PROGRESS * prev_dirty:
                stalled += 1
            else:
                stalled = 0
            prev_dirty = dirty_bytes
            if stalled >= NO_PROGRESS_ROUNDS and p.auto_converge:
                self._raise_throttle()
                stalled = 0
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
        return self._stop_and_copy(rnd, dirty, reason)

    def _cold(self) -> MigrationResult:
        pause_at = self.clock.now()
        self._pause()
        self.vm.read_and_clear_dirty()
        to_send, to_zero = self._round0_sets()
        self._send_round(0, to_send, to_zero, "cold")
        return self._finish(pause_at, self.clock.now(), "cold")

    def _settle(self, dirty: np.ndarray) -> np.ndarray:
        """A round shorter than one RTT sent little, and its estimate is dominated by the window
        still in flight: let that drain (the guest runs on), take what it dirtied meanwhile,
        and estimate again with an empty pipe. Without this the engine spins through
        near-empty rounds whose estimate never falls below the target."""
        self._settled_expected = float("inf")
        drain = getattr(self.sender, "drain", None)
        rec = self._records[-1]
        if not callable(drain) or rec.duration_s >= self.sender.rtt_s():
            return dirty
        t0 = self.clock.now()
        drain(timeout_s=max(1.0, 4 * self.sender.rtt_s()))
        more = np.asarray(self.vm.read_and_clear_dirty(), dtype=np.int64)
        dirty = np.union1d(dirty, more)
        waited = self.clock.now() - t0
        self._settled_expected = self._expected_downtime(
            len(dirty) * PAGE_SIZE, (rec.duration_s + waited, len(dirty) * PAGE_SIZE))
        log.info("round %d settled: drained for %.3f s, %d pages dirty, expected downtime "
                 "%.3f s", rec.round, waited, len(dirty), self._settled_expected)
        return dirty

    def _stop_and_copy(self, rnd: int, dirty: np.ndarray, reason: str) -> MigrationResult:
        drain = getattr(self.sender, "drain", None)
        if callable(drain):       # the window in flight arrives while the guest still runs
            backlog = getattr(self.sender, "backlog_bytes", lambda: -1)
            before = backlog()
            waited = drain(timeout_s=max(1.0, 4 * self.sender.rtt_s()))
            log.info("drained %d B in flight in %.3f s before the pause (%d B left)", before,
                     waited, backlog())
        pause_at = self.clock.now()
        self._pause()
        final = np.union1d(dirty, np.asarray(self.vm.read_and_clear_dirty(), dtype=np.int64))
        self._send_round(rnd, final, _EMPTY, "stop-copy")
        return self._finish(pause_at, self.clock.now(), reason)

    def _finish(self, pause_at: float, copied_at: float, reason: str) -> MigrationResult:
        state_fn = getattr(self.vm, "save_state", None)
        state = state_fn() if callable(state_fn) else b""
        fin = self.sender.finish(state)
        done = self.clock.now()
        if not (fin.ok and fin.digest_ok):
            why = fin.error or ("memory digest mismatch at the destination" if not fin.digest_ok
                                else "destination refused the migration")
            return self._abort("aborted", why, integrity=fin.digest_ok, copied_at=copied_at,
                               finished_at=done)
        return self._result("completed", reason, final_copy_s=copied_at - pause_at,
                            verify_s=done - copied_at, integrity=True)

    # --- rounds --------------------------------------------------------------------------------

    def _round0_sets(self) -> tuple[np.ndarray, np.ndarray]:
        nonzero = np.unique(np.asarray(self.vm.nonzero_pages(), dtype=np.int64))
        zero = np.setdiff1d(np.arange(self.vm.npages, dtype=np.int64), nonzero,
                            assume_unique=True)
        return nonzero, zero

    def _send_round(self, rnd: int, indices: np.ndarray, zero_known: np.ndarray,
                    phase: str) -> np.ndarray:
        """Send one round; append its record; return the (unique) pages dirtied meanwhile."""
        t0 = self.clock.now()
        codec = self._codec()
        pages = zeros = raw = wire = 0
        chunks = [indices[i:i + self.chunk_pages] for i in range(0, len(indices),
                                                                  self.chunk_pages)]
        zero_lists = [zero_known[i:i + self.zero_batch] for i in range(0, len(zero_known),
                                                                       self.zero_batch)]
        for chunk, zero_list in zip_longest(chunks, zero_lists, fillvalue=_EMPTY):
            zero_idx, idx, data = split_zero(chunk, self.vm.page_bytes(chunk)) if len(chunk) \
                else (_EMPTY, _EMPTY, b"")
            if len(zero_list):
                zero_idx = np.concatenate([zero_idx, zero_list])
            report = self.sender.send_pages(rnd, idx, data, codec, zero_indices=zero_idx)
            pages += len(idx)
            zeros += len(zero_idx)
            raw += report.bytes_raw
            wire += report.bytes_on_wire
        duration = self.clock.now() - t0
        if raw > 0 and wire > 0:
            sample = raw / wire
            self._ratio = sample if self._ratio is None else \
                (1 - self.ratio_alpha) * self._ratio + self.ratio_alpha * sample
            if self.chooser is not None:
                self.chooser.observe(codec, raw, wire)
        if duration > 0 and wire > 0:
            self._last_goodput = wire / duration
        dirty = _EMPTY if phase != "live" else \
            np.unique(np.asarray(self.vm.read_and_clear_dirty(), dtype=np.int64))
        dirty_rate = len(dirty) * PAGE_SIZE / duration if duration > 0 else 0.0
        expected = self._expected_downtime(len(dirty) * PAGE_SIZE,
                                           (duration, len(dirty) * PAGE_SIZE)) \
            if phase == "live" else 0.0
        record = RoundRecord(round=rnd, phase=phase, pages=pages, zero_pages=zeros,
                             bytes_raw=raw, bytes_on_wire=wire, codec=codec,
                             duration_s=duration,
                             goodput_Bps=wire / duration if duration > 0 else 0.0,
                             dirty_rate_Bps=dirty_rate, throttle=self._throttle,
                             expected_downtime_s=expected)
        self._records.append(record)
        log.info("round %d %s: %d pages (+%d zero) %s, %.0f B on wire in %.3f s, dirty %.0f B/s,"
                 " throttle %.2f, expected downtime %.3f s", rnd, phase, pages, zeros, codec,
                 wire, duration, dirty_rate, self._throttle, expected)
        if self.progress is not None:
            self.progress(record, self._eta(record, len(dirty) * PAGE_SIZE))
        return dirty

    # --- estimates -----------------------------------------------------------------------------

    def _goodput(self) -> float:
        measured = self.sender.measured_goodput_Bps()
        goodput = measured if measured > 0 else (self._last_goodput or self.initial_goodput)
        if self.policy.max_bandwidth_mbps is not None:
            goodput = min(goodput, self.policy.max_bandwidth_mbps * 1e6 / 8)
        return goodput

    def _expected_downtime(self, dirty_bytes: int, window: tuple[float, int] | None = None
                           ) -> float:
        """Stop-and-copy time if the guest were paused after draining what is in flight:
        the dirty pages, plus those the guest dirties while the backlog drains, then one RTT.
        ``window``: this round's (duration, dirty bytes), added to what earlier rounds saw."""
        ratio = self._ratio or 1.0
        backlog = getattr(self.sender, "backlog_bytes", None)
        drain_s = backlog() / self._goodput() if callable(backlog) else 0.0
        more = self._dirtied_within(drain_s, window) if drain_s > 0 else 0.0
        return (dirty_bytes + more) / (ratio * self._goodput()) + self.sender.rtt_s()

    def _dirtied_within(self, seconds: float, window: tuple[float, int] | None) -> float:
        """Distinct bytes the guest dirties in ``seconds``, from the live round whose length is
        the closest at or above it (scaled down linearly: distinct pages grow at most linearly
        with time). A round much shorter than ``seconds`` would extrapolate a burst of first
        writes to hot pages into an absurd rate, so the longest round is used instead."""
        seen = [(r.duration_s, r.dirty_rate_Bps * r.duration_s) for r in self._records
                if r.phase == "live" and r.duration_s > 0]
        if window is not None and window[0] > 0:
            seen.append(window)
        if not seen:
            return 0.0
        longer = [w for w in seen if w[0] >= seconds]
        dur, dirty = min(longer) if longer else max(seen)
        return dirty / dur * seconds

    def _eta(self, record: RoundRecord, dirty_bytes: int) -> float | None:
        """Seconds to completion if the dirty set keeps shrinking geometrically, else None."""
        if record.phase != "live":
            return None
        if record.expected_downtime_s <= self.policy.downtime_target_s:
            return record.expected_downtime_s
        raw_rate = (self._ratio or 1.0) * self._goodput()
        q = record.dirty_rate_Bps / raw_rate
        if q >= 1.0:
            return None
        return dirty_bytes / (1.0 - q) / raw_rate + self.sender.rtt_s()

    def _codec(self) -> str:
        if self.policy.codec != "adaptive":
            return self.policy.codec
        assert self.chooser is not None
        return self.chooser.choose(self._goodput())

    # --- guest control -------------------------------------------------------------------------

    def _raise_throttle(self) -> None:
        p = self.policy
        new = p.throttle_initial if self._throttle == 0.0 else self._throttle + p.throttle_step
        new = min(round(new, 6), p.throttle_max)
        if new != self._throttle:
            log.info("auto-converge: throttle %.2f -> %.2f", self._throttle, new)
            self._throttle = new
            self._throttle_max = max(self._throttle_max, new)
            self.vm.set_throttle(new)

    def _pause(self) -> None:
        self._pause_at = self.clock.now()
        self.vm.pause()
        self._paused = True

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
            if self._throttle > 0:
                self.vm.set_throttle(0.0)
                self._throttle = 0.0
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
        recs = tuple(self._records)
        raw = sum(r.bytes_raw for r in recs)
        wire = sum(r.bytes_on_wire for r in recs)
        busy = sum(r.duration_s for r in recs)
        return MigrationResult(
            outcome=outcome, stop_reason=stop_reason, rounds=recs,
            total_time_s=self.clock.now() - self._start,
            downtime_s=final_copy_s + verify_s + resume_s, final_copy_s=final_copy_s,
            verify_s=verify_s, resume_s=resume_s, bytes_on_wire=wire, bytes_raw=raw,
            vm_memory_bytes=self.vm.npages * PAGE_SIZE,
            compression_ratio=raw / wire if wire else 1.0,
            mean_goodput_Bps=wire / busy if busy > 0 else 0.0,
            integrity_ok=integrity, throttle_max=self._throttle_max,
            downtime_target_s=self.policy.downtime_target_s, error=error)


def with_resume(result: MigrationResult, resume_s: float) -> MigrationResult:
    """The result with the destination's resume time added to the downtime."""
    return dataclasses.replace(result, resume_s=resume_s,
                               downtime_s=result.final_copy_s + result.verify_s + resume_s)
