"""A run's numbers, computed from what was recorded: probes, controller events, the migration.

Pure: no files, no clock. The runner reads probes.csv, controller_events.jsonl and the
migration result and passes them in; tests pass hand-made rows. Keeping this apart from the
runner means a metric can be recomputed from a stored run after its definition is fixed.

Definitions (times are wall-clock seconds, ``time.time()`` in every namespace: they share the
machine's clock, so probe, controller and migrator times compare directly):

* ``client_outage_ms``: the longest gap between consecutive probe replies (ordered by reply
  time) that ends after the migration started; if no reply came after the last gap, the gap runs
  to the last probe sent. Its floor is the probe interval (10 ms on a healthy path);
* ``probes_lost``: probes never answered (over the whole run; ``probes_lost_migration`` counts
  those sent from the migration start on);
* ``site_before`` / ``site_after``: the site that answered the last probe before the migration
  and the last probe of all; ``rtt_before_ms`` / ``rtt_after_ms``: median probe RTT before the
  migration and after it ended (the destination client sees the WAN, then the local path);
* ``flow_convergence_ms`` / ``dest_convergence_ms``: from the controller's first ``move`` record
  of the VM's MAC at or after the migration start (packet-in of the VM's announcement to the
  last barrier reply, and to the reply of the VM's new switch);
* ``links`` and ``link_*``: every WAN link as the preflight measured it, and the figures of the
  path the migration crosses (``link_path``): RTTs summed, the smallest rate and goodput;
* ``integrity_ok``: the destination's memory digest matched and every acknowledged client write
  was read back with its value (``kv_integrity_ok``; None when no key-value client ran).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.clients import KV_COLUMNS, PROBE_COLUMNS, READBACK_OP  # noqa: F401 (re-exported)
from migrator.core.model import ModelInputs, predict
from migrator.memory.pages import PAGE_SIZE
from migrator.memory.workload import MIB
from topologies.plan import wan_path

# The keys every metrics.json has (None where a figure could not be measured).
METRIC_KEYS = ("total_time_s", "downtime_ms", "client_outage_ms", "flow_convergence_ms",
               "bytes_on_wire", "vm_memory_bytes", "rounds", "compression_ratio",
               "mean_goodput_mbps", "link_rtt_ms_configured", "link_rtt_ms_measured",
               "link_bw_mbps", "link_backend", "integrity_ok", "outcome",
               "predicted_total_time_s", "predicted_downtime_ms")
# Per WAN link in metrics.json's ``links`` (from the preflight's LinkCheck).
LINK_KEYS = ("link", "src", "dst", "rtt_ms_configured", "rtt_ms_measured", "bw_mbps",
             "goodput_mbps", "loss_pct_configured", "loss_pct_measured", "backend", "datapath",
             "ok")
COLD_DOWNTIME_S = 1e9   # the model's downtime target for a cold migration: no limit
# TCP/IP payload per full Ethernet frame: what a shaped link carries of the migrator's bytes.
HEADER_BYTES = 52      # IPv4 20 + TCP 20 + timestamps 12
FRAME_EXTRA = 14       # Ethernet header (the link model shapes whole frames)


@dataclass(frozen=True)
class Probe:
    seq: int
    t_send: float
    t_reply: float | None     # None: lost
    site: str

    @property
    def rtt_ms(self) -> float | None:
        return None if self.t_reply is None else (self.t_reply - self.t_send) * 1e3


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    out = float(value)
    return None if math.isnan(out) else out


def parse_probes(rows: Iterable[Mapping[str, Any]]) -> list[Probe]:
    """Probe rows as read from probes.csv (strings) or built in memory, sorted by sequence."""
    out = []
    for row in rows:
        t_send = _float(row.get("t_send"))
        if t_send is None:
            raise ValueError(f"probe row without t_send: {dict(row)}")
        out.append(Probe(seq=int(row["seq"]), t_send=t_send, t_reply=_float(row.get("t_reply")),
                         site=str(row.get("site") or "")))
    return sorted(out, key=lambda p: p.seq)


def longest_gap(replies: Sequence[float], after: float,
                end: float | None = None) -> tuple[float, float] | None:
    """(length, end time) of the longest interval between consecutive reply times that ends
    after ``after``, in seconds; ``end`` (the last probe sent) closes an open gap after the last
    reply. None when there are no replies; (0, after) when no gap ends after ``after``."""
    times = sorted(replies)
    if not times:
        return None
    points = times + ([end] if end is not None and end > times[-1] else [])
    best = (0.0, after)
    for a, b in zip(points, points[1:], strict=False):
        if b > after and b - a > best[0]:
            best = (b - a, b)
    return best


def probe_metrics(probes: Sequence[Probe], migration_start_t: float,
                  migration_end_t: float | None = None) -> dict:
    """Client's view: outage, losses, which site answered, RTT before and after."""
    replies = [p for p in probes if p.t_reply is not None]
    reply_t = [p.t_reply for p in replies if p.t_reply is not None]
    before = [p for p in replies if p.t_reply is not None and p.t_reply < migration_start_t]
    after = [p for p in replies if migration_end_t is not None and p.t_send > migration_end_t]
    end = max((p.t_send for p in probes), default=None)
    gap = longest_gap(reply_t, migration_start_t, end)
    last_reply = max(replies, key=lambda p: p.t_reply or 0.0) if replies else None
    return {
        "client_outage_ms": None if gap is None else gap[0] * 1e3,
        "client_outage_end_t": None if gap is None else gap[1],
        "probes_sent": len(probes),
        "probes_lost": sum(1 for p in probes if p.t_reply is None),
        "probes_lost_migration": sum(1 for p in probes
                                     if p.t_reply is None and p.t_send >= migration_start_t),
        "site_before": before[-1].site if before else None,
        "site_after": last_reply.site if last_reply else None,
        "rtt_before_ms": _median([p.rtt_ms for p in before]),
        "rtt_after_ms": _median([p.rtt_ms for p in after]),
    }


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def move_event(events: Iterable[Mapping[str, Any]], mac: str,
               after_t: float) -> Mapping[str, Any] | None:
    """The controller's first finished move record of ``mac`` at or after ``after_t``."""
    moves = [e for e in events if e.get("event") == "move"
             and str(e.get("mac", "")).lower() == mac.lower()
             and e.get("flow_convergence_ms") is not None
             and float(e.get("t_packet_in", -math.inf)) >= after_t]
    return min(moves, key=lambda e: float(e["t_packet_in"])) if moves else None


def kv_integrity(rows: Iterable[Mapping[str, Any]]) -> dict:
    """Did every acknowledged write come back? From kv.csv's READBACK rows."""
    readback = [r for r in rows if r.get("op") == READBACK_OP]
    bad = [r for r in readback if r.get("result") != "ok"]
    return {"kv_readback": len(readback), "kv_readback_failures": len(bad),
            "kv_integrity_ok": not bad}


def link_between(topology: Any, a: str, b: str) -> tuple[float, float | None]:
    """(RTT ms, bottleneck bw Mbit/s or None when unshaped) between sites ``a`` and ``b``: the
    summed RTT of the WAN links on the path with the smallest RTT and the smallest rate on it."""
    path = [topology.wan[k - 1] for k in wan_path(topology, a, b)]
    shaped = [w.bw_mbps for w in path if w.bw_mbps is not None]
    return sum(w.rtt_ms for w in path), (min(shaped) if shaped else None)


def model_inputs(spec: Any, compression_ratio: float = 1.0, nonzero_frac: float = 1.0,
                 goodput_mbps: float | None = None, dirty_rate_mibps: float | None = None,
                 disk_dirty_rate_mibps: float | None = None) -> ModelInputs | None:
    """The analytic model's inputs for an experiment spec's migration (``prediction``); None
    when the path is unshaped and no goodput was measured."""
    rtt_ms, bw = link_between(spec.topology, spec.placement.source_site,
                              spec.placement.destination_site)
    mtu = spec.topology.mtu
    if goodput_mbps is None and bw is not None:
        goodput_mbps = bw * (mtu - HEADER_BYTES) / (mtu + FRAME_EXTRA)
    if spec.policy.max_bandwidth_mbps is not None:
        goodput_mbps = min(goodput_mbps or math.inf, spec.policy.max_bandwidth_mbps)
    if goodput_mbps is None or not goodput_mbps > 0 or not compression_ratio > 0:
        return None
    wl = spec.vm.workload
    live = spec.policy.mode == "live"
    return ModelInputs(
        **disk_inputs(spec, live, disk_dirty_rate_mibps),
        memory_bytes=float(spec.vm.memory_bytes), bandwidth_Bps=goodput_mbps * 1e6 / 8,
        nonzero_frac=nonzero_frac,
        dirty_rate_Bps=(wl.dirty_rate_mibps if dirty_rate_mibps is None else dirty_rate_mibps)
        * MIB if live else 0.0,
        working_set_bytes=max(PAGE_SIZE, wl.working_set_frac * spec.vm.memory_bytes),
        rtt_s=rtt_ms / 1e3, compression_ratio=compression_ratio,
        # cold: any downtime is accepted (a finite stand-in: the model refuses infinities)
        downtime_target_s=spec.policy.downtime_target_s if live else COLD_DOWNTIME_S,
        max_rounds=spec.policy.max_rounds)


def prediction(spec: Any, compression_ratio: float = 1.0, nonzero_frac: float = 1.0,
               goodput_mbps: float | None = None, dirty_rate_mibps: float | None = None,
               disk_dirty_rate_mibps: float | None = None) -> dict:
    """The analytic model's total time and downtime for an experiment spec.

    Bandwidth: ``goodput_mbps`` (a measured TCP goodput) if given, else the link's rate times
    the TCP/IP payload share of a full frame, capped by the policy's ``max_bandwidth_mbps``.
    The measured compression ratio may be passed in (the model cannot know the data), and the
    measured rate of *distinct* pages dirtied (``dirty_rate_mibps``; default the workload's
    write rate, which a skewed workload's distinct rate is far below; for a disk
    ``disk_dirty_rate_mibps``, default its write rate).
    None values when the path is unshaped and no goodput was measured.
    """
    inputs = model_inputs(spec, compression_ratio, nonzero_frac, goodput_mbps,
                          dirty_rate_mibps, disk_dirty_rate_mibps)
    if inputs is None:
        return {"predicted_total_time_s": None, "predicted_downtime_ms": None,
                "predicted_rounds": None, "predicted_converges": None,
                "predicted_lower_bound_s": None}
    res = predict(inputs)
    if spec.policy.mode != "live":    # cold: the guest is paused for the whole copy
        return {"predicted_total_time_s": res.total_time_s,
                "predicted_downtime_ms": res.total_time_s * 1e3,
                "predicted_rounds": 0, "predicted_converges": True,
                "predicted_lower_bound_s": res.lower_bound_time_s}
    return {"predicted_total_time_s": res.total_time_s,
            "predicted_downtime_ms": res.downtime_s * 1e3,
            "predicted_rounds": res.rounds, "predicted_converges": res.converges,
            "predicted_lower_bound_s": res.lower_bound_time_s}


def disk_inputs(spec: Any, live: bool, dirty_mibps: float | None = None) -> dict:
    """The model's disk terms for the spec's ``vm.disk`` under ``policy.storage``: nothing
    without a disk or with shared storage (the disk does not move); its allocated bytes, and
    its writes as dirty rate (or, mirrored, as bandwidth taken: one write in flight, so at
    most a block per round trip) otherwise."""
    disk = spec.vm.disk
    if disk is None or spec.policy.storage == "shared":
        return {}
    write_Bps = disk.write_rate_mibps * MIB if live else 0.0  # noqa: N806
    dirty_Bps = write_Bps if dirty_mibps is None or not live else dirty_mibps * MIB  # noqa: N806
    mirrored = spec.policy.storage == "write-blocking"
    rtt_ms, _ = link_between(spec.topology, spec.placement.source_site,
                             spec.placement.destination_site)
    if mirrored and rtt_ms > 0:     # one write in flight: a block per round trip at most
        write_Bps = min(write_Bps, disk.block_bytes / (rtt_ms / 1e3))  # noqa: N806
    return {"disk_bytes": float(disk.allocated_bytes), "disk_dirty_rate_Bps": dirty_Bps,
            "disk_working_set_bytes": disk.working_set_frac * disk.size_bytes,
            "disk_mirrored": mirrored, "disk_write_Bps": write_Bps if mirrored else 0.0}


def migration_metrics(m: Mapping[str, Any], prefix: str = "") -> dict:
    """The migrator's own figures (``dataclasses.asdict`` of MigrationResult)."""
    rounds = m.get("rounds") or ()
    live = sum(1 for r in rounds if r.get("phase", "live") == "live")
    goodput = m.get("mean_goodput_Bps")
    return {f"{prefix}{k}": v for k, v in {
        "total_time_s": m.get("total_time_s"),
        "downtime_ms": None if m.get("downtime_s") is None else m["downtime_s"] * 1e3,
        "bytes_on_wire": m.get("bytes_on_wire"),
        "bytes_sent": m.get("bytes_sent"),          # what the sockets took (an abort: so far)
        "bytes_acked": m.get("bytes_acked"),        # of it, what the destination acknowledged
        "bytes_raw": m.get("bytes_raw"),
        "vm_memory_bytes": m.get("vm_memory_bytes"),
        "rounds": live,
        "compression_ratio": m.get("compression_ratio"),
        "mean_goodput_mbps": None if goodput is None else goodput * 8 / 1e6,
        "memory_integrity_ok": m.get("integrity_ok"),
        "outcome": m.get("outcome"),
        "stop_reason": m.get("stop_reason"),
        "throttle_max": m.get("throttle_max"),
        "downtime_target_ms": None if m.get("downtime_target_s") is None
        else m["downtime_target_s"] * 1e3,
        "error": m.get("error"),
        "disk_bytes_on_wire": m.get("disk_bytes_on_wire"),
        "disk_bytes_raw": m.get("disk_bytes_raw"),
        "disk_sectors_sent": m.get("disk_sectors_sent"),
        "disk_sectors_resent": m.get("disk_sectors_resent"),
        "disk_bulk_s": m.get("disk_bulk_s"),
    }.items()}


def link_metrics(links: Sequence[Mapping[str, Any]] | None,
                 path: Sequence[int] | None = None) -> dict:
    """From the preflight's LinkCheck of every WAN link (``to_json()``, in link order): each
    link's figures under ``links``, and the ``link_*`` figures of the migration's path (the
    links in ``path``, 1-based; all of them when not given): RTTs summed, the smallest rate and
    goodput, the backends used, every link ok."""
    links = list(links or [])
    on_path = [c for c in links if path is None or c.get("link") in set(path)]

    def total(key: str) -> float | None:
        values = [c.get(key) for c in on_path]
        return None if not values or None in values else sum(values)

    def least(key: str) -> float | None:
        values = [c.get(key) for c in on_path if c.get(key) is not None]
        return min(values) if values else None

    def joined(key: str) -> str | None:
        values = sorted({str(c.get(key)) for c in on_path if c.get(key) is not None})
        return "+".join(values) if values else None

    return {"links": [{k: c.get(k) for k in LINK_KEYS} for c in links],
            "link_path": list(path) if path is not None else [c.get("link") for c in links],
            "link_rtt_ms_configured": total("rtt_ms_configured"),
            "link_rtt_ms_measured": total("rtt_ms_measured"),
            "link_bw_mbps": least("bw_mbps"),
            "link_goodput_mbps": least("goodput_mbps"),
            "link_backend": joined("backend"),
            "link_datapath": joined("datapath"),
            "link_ok": all(c.get("ok") for c in on_path) if on_path else None}


def compute_metrics(*, probes: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]],
                    migration: Mapping[str, Any], links: Sequence[Mapping[str, Any]] | None,
                    vm_mac: str,
                    migration_start_t: float, kv_rows: Iterable[Mapping[str, Any]] | None = None,
                    predicted: Mapping[str, Any] | None = None,
                    migration_back: Mapping[str, Any] | None = None,
                    migration_back_start_t: float | None = None,
                    link_path: Sequence[int] | None = None) -> dict:
    """metrics.json for one run: every key of METRIC_KEYS and the details documented above."""
    probe_list = parse_probes(probes)
    event_list = list(events)
    total = migration.get("total_time_s")
    end_t = migration_start_t + total if total is not None else None
    out: dict[str, Any] = {"migration_start_t": migration_start_t, "migration_end_t": end_t}
    out.update(migration_metrics(migration))
    out.update(probe_metrics(probe_list, migration_start_t, end_t))
    move = move_event(event_list, vm_mac, migration_start_t)
    out["flow_convergence_ms"] = None if move is None else move.get("flow_convergence_ms")
    out["dest_convergence_ms"] = None if move is None else move.get("dest_convergence_ms")
    out["move_t"] = None if move is None else move.get("t_packet_in")
    out.update(link_metrics(links, link_path))
    kv = kv_integrity(kv_rows) if kv_rows is not None else {
        "kv_readback": 0, "kv_readback_failures": 0, "kv_integrity_ok": None}
    out.update(kv)
    # Unknown memory integrity (the migration never got to the digest) is not integrity.
    out["integrity_ok"] = (out["memory_integrity_ok"] is True
                           and kv["kv_integrity_ok"] is not False)
    pred = dict(predicted or {})
    for key in ("predicted_total_time_s", "predicted_downtime_ms", "predicted_rounds",
                "predicted_converges", "predicted_lower_bound_s"):
        out[key] = pred.get(key)
    if migration_back is not None:
        out.update(migration_metrics(migration_back, prefix="back_"))
        if migration_back_start_t is not None:
            out["back_start_t"] = migration_back_start_t
            back = move_event(event_list, vm_mac, migration_back_start_t)
            out["back_flow_convergence_ms"] = None if back is None \
                else back.get("flow_convergence_ms")
        out["integrity_ok"] = out["integrity_ok"] and bool(out["back_memory_integrity_ok"])
    missing = [k for k in METRIC_KEYS if k not in out]
    if missing:   # a programming error, never bad input
        raise KeyError(f"metrics without {missing}")
    return out


def path_figures(checks: list[dict], path: list[int]) -> dict:
    """What the migrator is told of its path, as the preflight measured it (the path's figures
    of ``metrics.link_metrics``): RTTs summed, the smallest goodput of its links."""
    m = link_metrics(checks, path)
    return {"rtt_ms_configured": m["link_rtt_ms_configured"],
            "rtt_ms_measured": m["link_rtt_ms_measured"],
            "goodput_mbps": m["link_goodput_mbps"]}


def nonzero_fraction(result: dict | None, memory_bytes: int) -> float:
    """Share of the guest's pages that round 0 found non-zero (the model's input); 1 when the
    migration never got that far."""
    rounds = (result or {}).get("rounds") or []
    if not rounds or not memory_bytes:
        return 1.0
    pages = rounds[0]["pages"] - rounds[0].get("disk_pages", 0)     # a disk's are not memory
    return min(1.0, pages * 4096 / memory_bytes)


def round0_dirty_mibps(result: dict | None, *, disk: bool = False) -> float | None:
    """The guest's rate of distinct dirty pages over round 0 (the longest window measured);
    ``disk``: of its disk's sectors instead (a VM with a disk counts both in one rate)."""
    rounds = (result or {}).get("rounds") or []
    if not rounds:
        return None
    on_disk = rounds[0].get("disk_dirty_rate_Bps", 0.0)
    return (on_disk if disk else rounds[0]["dirty_rate_Bps"] - on_disk) / 2**20
