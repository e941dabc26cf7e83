"""What a finished migration is reported as: the JSON summary and ``rounds.csv`` (its only
writer).

Pure functions of the engine's ``MigrationResult``: the same record gives the same summary
whether it came from a loopback run, a two-site experiment or a unit test, and the prediction
beside it comes from ``migrator.core.model`` fed with what this very run measured (dirty rate,
goodput, compression ratio, RTT, the fixed verify cost), so the two can be compared directly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ground.config import ConfigError
from migrator.core.model import ModelInputs, ModelResult, predict
from migrator.core.records import MigrationResult, RoundRecord
from migrator.memory.pages import PAGE_SIZE

MIB = 1024 * 1024
# rounds.csv, one row per round and phase (README, "Results"): pages = non-zero pages sent with
# their data, zero_pages = pages sent as a bare index; bytes_raw = guest bytes of those non-zero
# pages; rate_mbps = the stream's estimated transfer rate the engine decided with; the rows
# follow each other without gaps (phases live, drain, stop-copy, verify; cold; abort);
# disk_* = of pages, bytes_raw and bytes_on_wire, the disk's sectors (0 without a disk).
ROUND_COLUMNS = ("round", "phase", "t_start_s", "duration_s", "pages", "zero_pages", "bytes_raw",
                 "bytes_on_wire", "codec", "goodput_mbps", "rate_mbps", "dirty_rate_mibps",
                 "throttle_policy", "throttle", "dirty_limit_mibps", "expected_downtime_ms",
                 "disk_pages", "disk_bytes_raw", "disk_bytes_on_wire")


def model_inputs(result: MigrationResult, *, rtt_s: float, max_rounds: int
                 ) -> ModelInputs | None:
    """The model fed with this run's measurements; None when nothing was measured.

    * bandwidth: the run's mean wire goodput;  ratio: its raw/wire;
    * non-zero fraction: from round 0 (non-zero pages over all pages it covered);
    * dirty rate: distinct dirty bytes per second over the live rounds, duration-weighted;
    * verify_s: the measured finish time (STATE to ACK), a fixed cost the model does not derive.
    """
    first = result.rounds[0] if result.rounds else None
    if first is None or result.mean_goodput_Bps <= 0 or result.vm_memory_bytes <= 0:
        return None
    covered = first.pages + first.zero_pages
    nonzero = first.pages / covered if covered else 1.0
    dirty = live_dirty_Bps(result.rounds)
    try:
        return ModelInputs(memory_bytes=result.vm_memory_bytes,
                           bandwidth_Bps=result.mean_goodput_Bps, nonzero_frac=nonzero,
                           dirty_rate_Bps=dirty, rtt_s=rtt_s,
                           compression_ratio=result.compression_ratio,
                           downtime_target_s=result.downtime_target_s, max_rounds=max_rounds,
                           verify_s=result.verify_s)
    except ConfigError:
        return None


def live_dirty_Bps(rounds: Iterable[RoundRecord]) -> float:  # noqa: N802 - unit suffix
    """Distinct dirty bytes per second over the live rounds, duration-weighted (0 if none)."""
    live = [r for r in rounds if r.phase == "live"]
    busy = sum(r.duration_s for r in live)
    return sum(r.dirty_rate_Bps * r.duration_s for r in live) / busy if busy > 0 else 0.0


def summary(result: MigrationResult, *, rtt_s: float, max_rounds: int,
            extra: dict | None = None) -> dict:
    """The run's summary (JSON-ready); ``predicted_*`` are None when no model input exists."""
    inputs = model_inputs(result, rtt_s=rtt_s, max_rounds=max_rounds)
    pred: ModelResult | None = predict(inputs) if inputs is not None else None
    out = {
        "outcome": result.outcome,
        "stop_reason": result.stop_reason,
        "error": result.error,
        "total_time_s": result.total_time_s,
        "setup_s": result.setup_s,
        "downtime_ms": result.downtime_s * 1e3,
        "final_copy_ms": result.final_copy_s * 1e3,
        "verify_ms": result.verify_s * 1e3,
        "resume_ms": result.resume_s * 1e3,
        "downtime_target_ms": result.downtime_target_s * 1e3,
        "bytes_on_wire": result.bytes_on_wire,
        "bytes_sent": result.bytes_sent,
        "bytes_acked": result.bytes_acked,
        "bytes_raw": result.bytes_raw,
        "vm_memory_bytes": result.vm_memory_bytes,
        "rounds": len({r.round for r in result.rounds}),
        "live_rounds": result.live_rounds,
        "compression_ratio": result.compression_ratio,
        "mean_goodput_mbps": result.mean_goodput_Bps * 8 / 1e6,
        "throttle_max": result.throttle_max,
        "integrity_ok": result.integrity_ok,
        "rtt_ms": rtt_s * 1e3,
        "predicted_total_time_s": pred.total_time_s if pred else None,
        "predicted_downtime_ms": pred.downtime_s * 1e3 if pred else None,
        "predicted_rounds": pred.rounds if pred else None,
    }
    out.update(extra or {})
    return out


def round_rows(rounds: Iterable[RoundRecord]) -> list[dict]:
    """The rows of ``rounds.csv`` (columns ``ROUND_COLUMNS``); ``t_start_s`` is from the start
    of round 0 (rows run back to back); ``dirty_limit_mibps`` is empty when no cap was set."""
    out = []
    t = 0.0
    for r in rounds:
        out.append({"round": r.round, "phase": r.phase, "t_start_s": round(t, 6),
                    "duration_s": round(r.duration_s, 6), "pages": r.pages,
                    "zero_pages": r.zero_pages, "bytes_raw": r.bytes_raw,
                    "bytes_on_wire": r.bytes_on_wire, "codec": r.codec,
                    "goodput_mbps": round(r.goodput_Bps * 8 / 1e6, 3),
                    "rate_mbps": round(r.rate_Bps * 8 / 1e6, 3),
                    "dirty_rate_mibps": round(r.dirty_rate_Bps / MIB, 3),
                    "throttle_policy": r.throttle_policy, "throttle": r.throttle,
                    "dirty_limit_mibps": "" if r.dirty_limit_Bps is None
                    else round(r.dirty_limit_Bps / MIB, 3),
                    "expected_downtime_ms": round(r.expected_downtime_s * 1e3, 3),
                    "disk_pages": r.disk_pages, "disk_bytes_raw": r.disk_bytes_raw,
                    "disk_bytes_on_wire": r.disk_bytes_on_wire})
        t += r.duration_s
    return out


def rounds_csv(rounds: Iterable[RoundRecord]) -> str:
    """The text of ``rounds.csv``, header first: the one writer of that file."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROUND_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(round_rows(rounds))
    return buf.getvalue()


def _how_far(s: dict) -> str:
    """For a migration that did not complete: what the sockets took and the destination
    acknowledged of the bytes handed over."""
    if s.get("outcome") == "completed" or s.get("bytes_sent") is None:
        return ""
    acked = s.get("bytes_acked")
    return (f"; {s['bytes_sent'] / MIB:.1f} MiB sent" +
            (f", {acked / MIB:.1f} MiB acknowledged" if acked is not None else ""))


def table_rows(s: dict) -> list[tuple[str, str]]:
    """Two-column rows for a terminal table of a summary."""
    def f(key: str, fmt: str) -> str:
        v = s.get(key)
        return "-" if v is None else format(v, fmt)
    return [("outcome", f"{s['outcome']} ({s['stop_reason']})"
             + (f": {s['error']}" if s.get("error") else "")),
            ("total time", f"{f('total_time_s', '.3f')} s (model "
                           f"{f('predicted_total_time_s', '.3f')} s), after "
                           f"{f('setup_s', '.3f')} s of setup"),
            ("downtime", f"{f('downtime_ms', '.1f')} ms = copy {f('final_copy_ms', '.1f')} + "
                         f"verify {f('verify_ms', '.1f')} + resume {f('resume_ms', '.1f')} "
                         f"(target {f('downtime_target_ms', '.0f')}, model "
                         f"{f('predicted_downtime_ms', '.1f')})"),
            ("rounds", f"{s['rounds']} ({s['live_rounds']} live)"),
            ("memory", f"{s['vm_memory_bytes'] / MIB:.0f} MiB ({s['vm_memory_bytes'] // PAGE_SIZE}"
                       " pages)"),
            ("bytes on wire", f"{s['bytes_on_wire'] / MIB:.1f} MiB, ratio "
                              f"{f('compression_ratio', '.2f')}" + _how_far(s)),
            ("mean goodput", f"{f('mean_goodput_mbps', '.1f')} Mbit/s"),
            ("integrity", str(s["integrity_ok"]))]
