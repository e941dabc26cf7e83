"""What a migration reports: one record per round and one result per migration."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from migrator.core.interfaces import Handed


@dataclass(frozen=True)
class RoundRecord:
    round: int
    phase: str                  # 'live', 'drain', 'stop-copy', 'verify' (guest paused) or 'cold'
    pages: int                  # non-zero pages sent (with data)
    zero_pages: int             # pages sent as a bare zero-page index
    bytes_raw: int
    bytes_on_wire: int
    codec: str
    duration_s: float
    goodput_Bps: float          # noqa: N815 - bytes_on_wire / duration_s
    dirty_rate_Bps: float       # noqa: N815 - distinct pages dirtied during the round, bytes/s
    throttle: float             # throttle in force during the round
    expected_downtime_s: float  # stop-and-copy estimate made after the round
    dirty_limit_Bps: float | None = None  # noqa: N815 - write-rate cap in force, None = none
    throttle_policy: str = "none"           # policy.throttle of the migration
    rate_Bps: float = 0.0       # noqa: N815 - the stream's estimated transfer rate (wire B/s)
    # Of pages and bytes above, the disk's sectors (a VM with a disk, ``migrator.core.disk``)
    disk_pages: int = 0
    disk_bytes_raw: int = 0
    disk_bytes_on_wire: int = 0
    disk_dirty_rate_Bps: float = 0.0  # noqa: N815 - of dirty_rate_Bps, the disk's sectors


@dataclass(frozen=True)
class MigrationResult:
    outcome: str                # 'completed', 'aborted' or 'aborted: budget'
    stop_reason: str            # 'converged', 'max_rounds', 'time_budget', 'cold', or the error
    rounds: tuple[RoundRecord, ...]
    total_time_s: float
    downtime_s: float           # final_copy_s + verify_s + resume_s (0 when aborted)
    final_copy_s: float
    verify_s: float
    resume_s: float             # filled in by the caller, who resumes at the destination
    bytes_on_wire: int
    bytes_raw: int
    vm_memory_bytes: int
    compression_ratio: float
    mean_goodput_Bps: float     # noqa: N815
    integrity_ok: bool | None   # None when the migration never got to the digest check
    throttle_max: float
    downtime_target_s: float
    error: str | None = None
    setup_s: float = 0.0        # before the first page: connecting (and measuring the codecs)
    # What the transport's sockets took (frames and end markers, no handshake), and of that
    # what the destination's TCP acknowledged, when the transport can tell (None otherwise).
    # bytes_on_wire is what was handed to the transport; an aborted migration may have left
    # some of it unsent.
    bytes_sent: int | None = None
    bytes_acked: int | None = None
    # A VM with a disk (``migrator.core.disk``): of the bytes above, the disk's; the non-zero
    # sectors sent in all rounds and in rounds after the first (re-sent: written meanwhile);
    # from the start until the first round's disk sectors were all handed over
    disk_bytes_raw: int = 0
    disk_bytes_on_wire: int = 0
    disk_sectors_sent: int = 0
    disk_sectors_resent: int = 0
    disk_bulk_s: float | None = None

    @property
    def live_rounds(self) -> int:
        return sum(1 for r in self.rounds if r.phase == "live")

    @property
    def downtime_exceeded(self) -> bool:
        return self.outcome == "completed" and self.downtime_s > self.downtime_target_s


@dataclass
class Tally:
    """What one round has handed to the transport so far (its row is written from it)."""

    codec: str
    round: int = 0
    pages: int = 0
    zeros: int = 0
    raw: int = 0
    wire: int = 0
    disk_pages: int = 0
    disk_raw: int = 0
    disk_wire: int = 0

    def add(self, pages: int, zeros: int, raw: int, wire: int, *, disk: bool = False) -> None:
        self.pages += pages
        self.zeros += zeros
        self.raw += raw
        self.wire += wire
        if disk:
            self.disk_pages += pages
            self.disk_raw += raw
            self.disk_wire += wire

    def add_handed(self, handed: Handed) -> None:
        """The part a failed ``send_pages`` had handed over (``interfaces.PartialSendError``)."""
        self.add(handed.pages, handed.zero_pages, handed.bytes_raw, handed.bytes_on_wire)


def totals(rows: Sequence[RoundRecord]) -> dict:
    """Bytes over all rows, their ratio, and the mean goodput of the rows that copied while
    the guest ran or was cold-copied (``live``, ``cold``): wire bytes over their time."""
    raw = sum(r.bytes_raw for r in rows)
    wire = sum(r.bytes_on_wire for r in rows)
    live = [r for r in rows if r.phase in ("live", "cold")]
    busy = sum(r.duration_s for r in live)
    return {"bytes_raw": raw, "bytes_on_wire": wire,
            "compression_ratio": raw / wire if wire else 1.0,
            "mean_goodput_Bps": sum(r.bytes_on_wire for r in live) / busy if busy else 0.0,
            "disk_bytes_raw": sum(r.disk_bytes_raw for r in rows),
            "disk_bytes_on_wire": sum(r.disk_bytes_on_wire for r in rows),
            "disk_sectors_sent": sum(r.disk_pages for r in rows),
            "disk_sectors_resent": sum(r.disk_pages for r in rows if r.round > 0)}


def with_resume(result: MigrationResult, resume_s: float) -> MigrationResult:
    """The result with the destination's resume time added to the downtime."""
    return dataclasses.replace(result, resume_s=resume_s,
                               downtime_s=result.final_copy_s + result.verify_s + resume_s)
