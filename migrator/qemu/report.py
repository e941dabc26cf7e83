"""A driven QEMU migration as the emulated migrator's files: ``result.json`` (its
``MigrationResult`` plus ``qemu``: what QEMU itself reported), ``rounds.csv`` and
``summary.json`` (``migrator.core.report``, the one writer of those shapes).

Times: ``setup_s`` is QEMU's ``setup-time``; the rows run from QEMU's first pass (its
MIGRATION_PASS 1 event) to the end of the image check, so ``total_time_s`` is their sum;
``final_copy_s`` runs from the source's STOP to QEMU's completion at the source, ``verify_s``
from there to VERIFIED (the destination finishing its load, then the image check),
``resume_s`` from VERIFIED to the destination's RESUME (the runner's GO, ``cont``); the
downtime is their sum, STOP to RESUME, both stamped by QEMU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.core.records import MigrationResult
from migrator.qemu import progress
from migrator.qemu.params import QemuSettings
from migrator.qemu.qmp import Event


@dataclass
class Run:
    """What one migration recorded: the driver's state, which ``build`` turns into records."""

    samples: list[progress.Sample] = field(default_factory=list)
    events: list[tuple[str, Event]] = field(default_factory=list)    # (side, event)
    passes: dict[int, float] = field(default_factory=dict)
    started_t: float = 0.0
    paused_t: float | None = None
    ended_t: float | None = None
    verified_t: float | None = None
    resumed_t: float | None = None
    status: str = "none"                                              # the source's
    dst_status: str | None = None          # the destination's, from its MIGRATION event
    dst_ended_t: float | None = None
    final: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = "converged"
    outcome: str = "completed"
    error: str | None = None
    integrity_ok: bool | None = None
    differing: dict[str, Any] | None = None        # RAM pages that differ (driver, step 4)
    reported: dict[str, Any] = field(default_factory=dict)
    announce: dict[str, Any] = field(default_factory=dict)
    emitted: int = 0                                                  # progress rows said


def build(r: Run, s: QemuSettings, memory: int) -> tuple[MigrationResult, dict[str, Any]]:
    """The result record and the ``qemu`` record of a migration that has ended (``memory``:
    the size of the guest's RAM file)."""
    final = r.final or (r.samples[-1][1] if r.samples else {})
    completed = final.get("status") == "completed"
    end = r.ended_t or (r.samples[-1][0] if r.samples else r.started_t)
    rows = progress.final_rows(r.samples, final, codec=s.codec,
                               throttle_policy=s.throttle_policy, end_t=end, passes=r.passes,
                               paused_t=r.paused_t, completed=completed, cold=s.stop_first)
    if completed and r.verified_t is not None and rows:
        rows.append(progress.verify_row(rows[-1], r.verified_t - end))
    ok = r.outcome == "completed"
    final_copy = max(0.0, end - r.paused_t) if completed and r.paused_t else 0.0
    verify = max(0.0, r.verified_t - end) if completed and r.verified_t else 0.0
    resume = max(0.0, r.resumed_t - r.verified_t) if ok and r.resumed_t and r.verified_t \
        else 0.0
    result = progress.result(
        rows, outcome=r.outcome, stop_reason="cold" if ok and s.stop_first else r.stop_reason,
        memory_bytes=memory, downtime_target_s=s.parameters["downtime-limit"] / 1e3,
        setup_s=float(final.get("setup-time", 0)) / 1e3, final_copy_s=final_copy,
        verify_s=verify, resume_s=resume, integrity_ok=r.integrity_ok, error=r.error)
    qemu = {
        "query-migrate": final,
        "figures": progress.qemu_figures(r.samples, final),
        "asked": {"capabilities": s.capabilities, "parameters": s.parameters},
        "reported": r.reported,
        "not_applied": s.not_applied,
        "counting": progress.UNCOMPRESSED_COUNT
        if s.parameters.get("multifd-compression", "none") != "none" else None,
        "tls": s.tls, "tls_priority": s.tls_priority,
        "announce_after_cont": r.announce,
        "ram_differing": r.differing,
        "times": {"started_t": r.started_t, "paused_t": r.paused_t, "ended_t": r.ended_t,
                  "dst_ended_t": r.dst_ended_t,
                  "verified_t": r.verified_t, "resumed_t": r.resumed_t},
        "downtime_stop_to_resume_s": (r.resumed_t - r.paused_t)
        if ok and r.resumed_t and r.paused_t else None,
        "events": [{"side": side, "event": e.name, "t": e.t, "data": e.data}
                   for side, e in r.events],
        "samples": len(r.samples),
    }
    return result, qemu


def result_record(result: MigrationResult, qemu: dict[str, Any]) -> dict[str, Any]:
    """``result.json``: the emulated migrator's record, then ``qemu``."""
    return {**dataclasses.asdict(result), "qemu": qemu}


def write(out: Path, result: MigrationResult, qemu: dict[str, Any], *, rtt_s: float = 0.0,
          max_rounds: int = 30, extra: dict | None = None, meta: dict | None = None) -> dict:
    """Write ``result.json``, ``rounds.csv``, ``summary.json`` (and ``meta.json`` when given)
    into ``out``; returns the summary."""
    from migrator.core.report import rounds_csv, summary

    s = summary(result, rtt_s=rtt_s, max_rounds=max_rounds,
                extra={"role": "source", "vm_kind": "qemu", "encryption": qemu.get("tls")
                       or "none", "qemu_total_time_ms": qemu["figures"].get("total-time"),
                       "qemu_downtime_ms": qemu["figures"].get("downtime"),
                       "qemu_setup_time_ms": qemu["figures"].get("setup-time"),
                       "t_start_wall": qemu["times"]["started_t"], **(extra or {})})
    if meta is not None:
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
    (out / "rounds.csv").write_text(rounds_csv(result.rounds))
    (out / "result.json").write_text(json.dumps(result_record(result, qemu), indent=1) + "\n")
    return s
