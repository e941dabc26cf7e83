"""QEMU's ``query-migrate`` samples as the emulated migrator's rounds and result (pure).

A round is what QEMU did between two dirty-bitmap syncs: ``ram.dirty-sync-count`` n (1 at the
first pass, which sends every page) is round n - 1. The driver polls ``query-migrate`` every
~100 ms, so the counters at a round's boundary are those of the first sample that shows the new
sync count (as exact as the polling); the boundary's time is QEMU's own (the MIGRATION_PASS
event of that sync) when it is known. Several syncs between two samples (QEMU's last passes
are short) make one row: its ``round`` is the first of them, so the next row's number jumps.

After the last live row comes ``stop-copy``, from the source's STOP to the completion: QEMU
counts the bytes it sent while the guest was paused (``ram.downtime-bytes``), and the counters
between the last boundary and the end are shared between the last live row and ``stop-copy``
in that proportion (pages too: QEMU does not count pages per phase). The driver adds a
``verify`` row (its image check). Whatever the split, the rows' sums are QEMU's totals:
``pages`` = ``ram.normal``, ``zero_pages`` = ``ram.duplicate``, ``bytes_on_wire`` =
``ram.transferred``. Caveat of QEMU 7.2: with multifd compression (zstd), ``transferred`` and
``multifd-bytes`` count the pages before compression (``multifd_send_pages`` adds
pages x page size; measured here: zstd on a pattern that compresses tenfold reported
``multifd-bytes`` equal to ``normal-bytes``), so ``bytes_on_wire`` is then what QEMU handed
to zstd, not what the wire carried; ``UNCOMPRESSED_COUNT`` says so in result.json.

An aborted migration ends in an ``abort`` row (from the last boundary to the failure) with
what the last sample counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from migrator.core.records import MigrationResult, RoundRecord, totals

Sample = tuple[float, dict[str, Any]]       # (wall-clock time, query-migrate's answer)
UNCOMPRESSED_COUNT = ("QEMU 7.2 counts multifd-compressed pages before compression: "
                      "bytes_on_wire is the uncompressed size")
_COUNTERS = ("normal", "duplicate", "transferred")
# QEMU's own figures kept under their names in result.json's "qemu" (ram.* and top level)
RAM_FIGURES = ("transferred", "normal", "duplicate", "normal-bytes", "total", "remaining",
               "dirty-sync-count", "dirty-pages-rate", "mbps", "pages-per-second",
               "multifd-bytes", "precopy-bytes", "downtime-bytes", "postcopy-bytes",
               "page-size", "skipped")
TOP_FIGURES = ("status", "total-time", "downtime", "setup-time", "expected-downtime",
               "cpu-throttle-percentage", "xbzrle-cache", "compression", "error-desc")


def _ram(info: dict[str, Any]) -> dict[str, Any]:
    return info.get("ram") or {}


def _counters(info: dict[str, Any] | None) -> dict[str, int]:
    ram = _ram(info or {})
    return {k: int(ram.get(k, 0)) for k in _COUNTERS}


def _page_size(samples: Sequence[Sample], final: dict[str, Any] | None) -> int:
    for info in [final or {}, *(i for _, i in reversed(samples))]:
        if _ram(info).get("page-size"):
            return int(_ram(info)["page-size"])
    return 4096


def _segments(samples: Sequence[Sample], passes: dict[int, float], before: float | None
              ) -> list[tuple[int, float, int]]:
    """``(sync count, start time, index of its first sample)`` for each count seen in a sample
    taken before ``before`` (None: all)."""
    out: list[tuple[int, float, int]] = []
    for i, (t, info) in enumerate(samples):
        if before is not None and t >= before:
            break
        count = _ram(info).get("dirty-sync-count")
        if count is None or (out and count <= out[-1][0]):
            continue
        start = passes.get(int(count), t)
        if out:
            start = min(max(start, out[-1][1]), t)   # a pass time inside its sample interval
        out.append((int(count), start, i))
    return out


def _row(rnd: int, phase: str, start: float, end: float, delta: dict[str, int],
         page_size: int, codec: str, throttle_policy: str, throttle: float,
         after: dict[str, Any]) -> RoundRecord:
    """One row; ``after`` is query-migrate just after the round: QEMU's bandwidth and
    expected downtime computed at the sync that ended it, and ``remaining``, the bytes found
    dirty then (the dirty rate while QEMU runs; ``with_dirty_rates`` makes it exact after)."""
    duration = max(0.0, end - start)
    ram = _ram(after)
    return RoundRecord(
        round=rnd, phase=phase, pages=delta["normal"], zero_pages=delta["duplicate"],
        bytes_raw=delta["normal"] * page_size, bytes_on_wire=delta["transferred"],
        codec=codec, duration_s=duration,
        goodput_Bps=delta["transferred"] / duration if duration > 0 else 0.0,
        dirty_rate_Bps=float(ram.get("remaining", 0)) / duration if duration > 0 else 0.0,
        throttle=throttle, expected_downtime_s=float(after.get("expected-downtime", 0)) / 1e3,
        throttle_policy=throttle_policy, rate_Bps=float(ram.get("mbps", 0)) * 1e6 / 8)


def _throttle(samples: Sequence[Sample], lo: int, hi: int) -> float:
    """The largest vCPU throttle QEMU reported in samples ``lo`` to ``hi`` (inclusive)."""
    seen = [float(i.get("cpu-throttle-percentage", 0)) for _, i in samples[lo:hi + 1]]
    return max(seen, default=0.0) / 100.0


def _diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: max(0, a[k] - b[k]) for k in _COUNTERS}


def live_rows(samples: Sequence[Sample], *, codec: str, throttle_policy: str,
              passes: dict[int, float] | None = None, paused_t: float | None = None,
              cold: bool = False) -> list[RoundRecord]:
    """The rows of the rounds that have ended (a later sync was seen) before ``paused_t``:
    what the driver reports as PROGRESS while QEMU runs."""
    segs = _segments(samples, passes or {}, paused_t)
    size = _page_size(samples, None)
    rows = []
    for (count, start, i), (_, end, j) in zip(segs, segs[1:], strict=False):
        rows.append(_row(count - 1, "cold" if cold else "live", start, end,
                         _diff(_counters(samples[j][1]), _counters(samples[i][1]) if rows
                               else _counters(None)),
                         size, codec, throttle_policy, _throttle(samples, i, j),
                         samples[j][1]))
    return rows


def final_rows(samples: Sequence[Sample], final: dict[str, Any], *, codec: str,
               throttle_policy: str, end_t: float, passes: dict[int, float] | None = None,
               paused_t: float | None = None, completed: bool = True, cold: bool = False
               ) -> list[RoundRecord]:
    """Every row of a migration that has ended at ``end_t`` (completion or failure): the live
    rows, then ``stop-copy`` (completed) or ``abort`` (not); a cold migration (the guest
    paused before it began) is ``cold`` rows only. See the module docstring."""
    passes = passes or {}
    cut = paused_t if completed and not cold else None
    segs = _segments(samples, passes, cut)
    rows = live_rows(samples, codec=codec, throttle_policy=throttle_policy, passes=passes,
                     paused_t=cut, cold=cold)
    size = _page_size(samples, final)
    if not segs:                                 # nothing sampled after setup
        count, start, i = 1, passes.get(1, paused_t or end_t), len(samples) - 1
        base = _counters(None)
    else:
        count, start, i = segs[-1]
        base = _counters(samples[i][1]) if rows else _counters(None)
    last_info = next((info for _, info in reversed(samples) if _ram(info)), {})
    throttle = _throttle(samples, max(i, 0), len(samples) - 1)
    if not completed:
        rest = _diff(_counters(last_info), base)
        rows.append(_row(count - 1, "abort", start, end_t, rest, size, codec, throttle_policy,
                         throttle, {}))
        return rows
    rest = _diff(_counters(final), base)
    if cold:
        rows.append(_row(count - 1, "cold", start, end_t, rest, size, codec, throttle_policy,
                         throttle, final))
        return with_dirty_rates(rows, size)
    before_pause = next((info for t, info in reversed(samples) if _ram(info) and
                         (paused_t is None or t < paused_t)), last_info)
    wire_paused = int(_ram(final).get("downtime-bytes", 0))
    share = min(1.0, wire_paused / rest["transferred"]) if rest["transferred"] else 1.0
    stop = {k: round(v * share) for k, v in rest.items()}
    live = _diff(rest, stop)
    pause = end_t if paused_t is None else min(max(paused_t, start), end_t)
    rows.append(_row(count - 1, "live", start, pause, live, size, codec, throttle_policy,
                     throttle, before_pause))
    rows.append(_row(count, "stop-copy", pause, end_t, stop, size, codec, throttle_policy,
                     throttle, {"ram": {"mbps": _ram(final).get("mbps", 0)}}))
    return with_dirty_rates(rows, size)


def with_dirty_rates(rows: list[RoundRecord], page_size: int) -> list[RoundRecord]:
    """Each row's dirty rate from the next row: the pages a round finds dirty at its sync
    (sent in the next row, zero or not) were dirtied during the previous round. QEMU's own
    ``dirty-pages-rate`` is only updated over periods of at least a second (7.2), so it is 0
    for the short rounds of a converging migration; it stays in the ``qemu`` figures."""
    out = list(rows)
    for i, (row, nxt) in enumerate(zip(rows, rows[1:], strict=False)):
        if row.phase in ("live", "cold") and row.duration_s > 0:
            dirtied = (nxt.pages + nxt.zero_pages) * page_size
            out[i] = replace(row, dirty_rate_Bps=dirtied / row.duration_s)
    return out


def verify_row(after: RoundRecord, duration_s: float) -> RoundRecord:
    """The image check after ``after`` (the stop-copy row): no pages, the guest paused."""
    return RoundRecord(round=after.round, phase="verify", pages=0, zero_pages=0, bytes_raw=0,
                       bytes_on_wire=0, codec=after.codec, duration_s=max(0.0, duration_s),
                       goodput_Bps=0.0, dirty_rate_Bps=0.0, throttle=after.throttle,
                       expected_downtime_s=0.0, throttle_policy=after.throttle_policy)


def qemu_figures(samples: Sequence[Sample], final: dict[str, Any]) -> dict[str, Any]:
    """QEMU's own figures under QEMU's names: the final query-migrate's, the last
    ``expected-downtime`` seen while it ran and the largest ``cpu-throttle-percentage``."""
    out = {k: final[k] for k in TOP_FIGURES if k in final}
    out.update({k: _ram(final)[k] for k in RAM_FIGURES if k in _ram(final)})
    expected = [i["expected-downtime"] for _, i in samples if "expected-downtime" in i]
    if expected:
        out["expected-downtime"] = expected[-1]
    throttles = [i["cpu-throttle-percentage"] for _, i in samples
                 if "cpu-throttle-percentage" in i]
    out["cpu-throttle-percentage"] = max(throttles, default=0)
    return out


def result(rows: Sequence[RoundRecord], *, outcome: str, stop_reason: str,
           memory_bytes: int, downtime_target_s: float, setup_s: float = 0.0,
           final_copy_s: float = 0.0, verify_s: float = 0.0, resume_s: float = 0.0,
           integrity_ok: bool | None = None, error: str | None = None) -> MigrationResult:
    """The emulated migrator's result record for QEMU's migration (``downtime_s`` is the
    sum of its three parts when it completed, 0 otherwise, as the emulated migrator's)."""
    t = totals(rows)
    done = outcome == "completed"
    return MigrationResult(
        outcome=outcome, stop_reason=stop_reason, rounds=tuple(rows),
        total_time_s=sum(r.duration_s for r in rows),
        downtime_s=final_copy_s + verify_s + resume_s if done else 0.0,
        final_copy_s=final_copy_s, verify_s=verify_s, resume_s=resume_s,
        bytes_on_wire=t["bytes_on_wire"], bytes_raw=t["bytes_raw"], vm_memory_bytes=memory_bytes,
        compression_ratio=t["compression_ratio"], mean_goodput_Bps=t["mean_goodput_Bps"],
        integrity_ok=integrity_ok, throttle_max=max((r.throttle for r in rows), default=0.0),
        downtime_target_s=downtime_target_s, error=error, setup_s=setup_s,
        bytes_sent=t["bytes_on_wire"])
