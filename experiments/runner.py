"""``wanmig run``: one experiment end to end, in the order of ARCHITECTURE.md's data flow.

1. config.yaml (resolved) and meta.json (commit, versions, kernel, link backend, datapath)
   are written before anything starts;
2. the network comes up under the controller; the link preflight (ping + iperf3 between the
   two sites' hypervisors) refuses to go on when the WAN is not what was asked;
3. the VM: a Mininet host with its own MAC and IP plugged in next to the source hypervisor,
   the guest process in its namespace, its memory in /dev/shm; a RARP announcer waits in the
   same namespace with scapy loaded;
4. the clients (UDP probes, key-value writes) at the client host; the warm-up;
5. the migration: ``migrate-dest --gate`` in the destination hypervisor, ``migrate-source`` in
   the source hypervisor, the migration traffic crossing the WAN. When the destination has
   verified the image (VERIFIED), the runner re-plugs the VM's cable at the destination switch,
   says GO; the guest resumes there (RESUMED) and the announcer sends its burst;
6. the cool-down, then the clients stop and read back every key they wrote; everything is
   torn down (always, Ctrl-C included) and metrics.json, the plots and report.md
   are written from the stored files.

Downtime: the source's pause-to-ACK (final copy + verify) plus the switchover the runner
measures (VERIFIED to RESUMED: re-plugging the VM's network and resuming the guest).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.faults.actions import FaultError
from experiments.load.bound import judge, migration_window
from experiments.load.sampler import LoadSampler, read_samples
from experiments.metrics import nonzero_fraction, path_figures, round0_dirty_mibps
from experiments.procs import ProcError
from experiments.qemurun import QemuRun
from experiments.spec import ExperimentSpec, resolved_dict
from experiments.testbed import controlled_network
from experiments.vmrun import VM_NAME, Run, RunError
from ground.config import ConfigError
from ground.jsonfile import read_json
from topologies.plan import wan_path

__all__ = ["VM_NAME", "RunError", "check_runnable", "run_experiment"]

log = logging.getLogger("wanmig.run")


def check_runnable(spec: ExperimentSpec) -> None:
    """What the runner cannot do yet, or this machine cannot hold, refused before anything
    starts."""
    from experiments.capacity import check_capacity, check_datastore

    if spec.schedule.migrate_back:
        raise ConfigError("schedule.migrate_back", True,
                          "false: a VM that moves more than once is a fleet experiment (vms: "
                          "with one VM, and events: migrate it there, then back; "
                          "experiments/fleet/spec.py)")
    if spec.fleet is not None:
        from experiments.capacity import check_fleet_capacity

        check_fleet_capacity(spec)
        return
    if spec.vm.kind == "qemu":
        check_qemu_runnable(spec)
    if spec.placement.source_site == spec.placement.destination_site:
        raise ConfigError("placement.destination", spec.placement.destination,
                          "a hypervisor at another site than the source")
    check_capacity(spec)
    check_datastore(spec)


def check_qemu_runnable(spec: ExperimentSpec) -> None:
    """A QEMU guest's spec: its policy has QEMU equivalents, its memory boots, no faults yet."""
    from migrator.qemu.launch import check_guest_memory
    from migrator.qemu.params import qemu_settings

    if spec.faults:
        raise ConfigError("faults", len(spec.faults), "none for vm.kind qemu (faults are "
                                                     "injected around the emulated migrator)")
    if spec.vm.memory_bytes % (1 << 20):
        raise ConfigError("vm.memory", spec.vm.memory_bytes, "a whole number of MiB for "
                                                             "vm.kind qemu")
    check_guest_memory(spec.vm.memory_bytes >> 20, "vm.memory")
    if spec.vm.disk is not None:
        raise ConfigError("vm.disk", spec.vm.disk.size_bytes,
                          "no disk for vm.kind qemu yet (QEMU's block mirror over NBD is not "
                          "wired in; the emulated VM migrates disks)")
    qemu_settings(spec.policy, link_mbps=None)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def preflight(net: Any, spec: ExperimentSpec, out: Path) -> list[dict]:
    """Every WAN link measured (``linkcheck.json``: one record per link, in link order); a link
    off by more than its tolerance stops the run."""
    from topologies.linkcheck import run_linkcheck

    checks = []
    for i, w in enumerate(spec.topology.wan, start=1):
        omit = max(2.0, 20 * w.rtt_ms / 1e3)
        # One stream, as `wanmig linkcheck`: two BBR streams into a queue of about a
        # bandwidth-delay product overrun it together (with the fabric's offloads on, measured:
        # 537-2245 retransmits and 14-17 Mbit/s on a 20 Mbit/s, 50 ms link; one stream 0 and
        # 18.5), a measure of BBR's flows against each other, not of the link.
        c = run_linkcheck(net, link_index=i, pings=20, iperf_s=4.0, omit_s=omit, streams=1,
                          min_goodput_frac=0.8)
        checks.append(c.to_json())
        log.info("link %d: RTT %.2f ms (asked %.0f), goodput %s Mbit/s (asked %s): %s", i,
                 c.rtt_ms_measured, w.rtt_ms, f"{c.goodput_mbps:.1f}" if c.goodput_mbps
                 else "-", w.bw_mbps, "ok" if c.ok else "OFF")
    _write_json(out / "linkcheck.json", checks)
    bad = [c for c in checks if not c["ok"]]
    if bad:
        raise RunError(f"link preflight failed, the WAN is not what was asked: {bad}")
    return checks


def run_experiment(spec: ExperimentSpec, out: Path) -> dict:
    """Runs ``spec`` into ``out``; returns metrics (also written, whatever happened)."""
    from ground.meta import run_metadata
    from topologies.detect import as_record, detect
    from topologies.fabricdrops import switch_drops

    check_runnable(spec)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved_dict(spec), sort_keys=False))
    facts, choice = detect()
    meta = {**run_metadata(), **as_record(facts, choice), "start_t": time.time()}
    _write_json(out / "meta.json", meta)
    if not choice.ok:
        raise RunError("this machine cannot run the testbed: " + "; ".join(choice.problems))
    run: Any = None
    error: str | None = None
    # The userspace switch's own drops (topologies.fabricdrops), read at three moments.
    drops = switch_drops if choice.ovs_datapath == "user" else (lambda: None)
    fabric: dict[str, int | None] = {}
    try:
        with LoadSampler(out / "testbed_cpu.csv"), \
                controlled_network(spec.topology, choice, out / "net", seed=spec.seed) as net:
            fabric["up"] = drops()
            meta["network"] = net.record()
            _write_json(out / "meta.json", meta)
            checks = preflight(net, spec, out)
            fabric["preflight"] = drops()
            run = _run_class(spec)(spec, out, net)
            run.path = path_figures(checks, migration_path(spec))
            run.links = checks
            try:
                run.execute()
            finally:
                run.stop()
                fabric["end"] = drops()
    except KeyboardInterrupt:
        error = "interrupted"
        raise
    except (RunError, ProcError, FaultError) as exc:
        error = str(exc)
        raise
    finally:
        metrics = collect(spec, out, run, error, fabric)
    return metrics


def _run_class(spec: ExperimentSpec) -> Any:
    if spec.fleet is not None:
        from experiments.fleet.run import FleetRun

        return FleetRun
    return QemuRun if spec.vm.kind == "qemu" else Run


def fabric_metrics(fabric: dict[str, int | None]) -> dict[str, int | None]:
    """Frames the userspace switch dropped during the preflight and during the run proper
    (None where it could not be read, or on the kernel datapath)."""
    def delta(a: str, b: str) -> int | None:
        x, y = fabric.get(a), fabric.get(b)
        return None if x is None or y is None else y - x
    return {"fabric_drops_preflight": delta("up", "preflight"),
            "fabric_drops": delta("preflight", "end")}


def load_metrics(out: Path, times: dict) -> dict:
    """The testbed's own load during the migration (``experiments.load``), from
    ``testbed_cpu.csv``."""
    samples = read_samples(out / "testbed_cpu.csv")
    window = migration_window(times, samples[-1].t1 if samples else None)
    figures = judge(samples, *window, os.cpu_count() or 1) if window else \
        judge([], 0.0, 0.0, os.cpu_count() or 1)
    if figures["testbed_bound"]:
        log.warning("testbed-bound: less than 10 %% of the cores idle during %.0f %% of the "
                    "migration (%s)", 100 * figures["testbed_bound_share"],
                    figures["testbed_cpu"])
    return figures


def migration_path(spec: ExperimentSpec) -> list[int]:
    """The WAN links (1-based) the migration crosses, from the source's site on."""
    return wan_path(spec.topology, spec.placement.source_site, spec.placement.destination_site)


def read_linkchecks(path: Path) -> list[dict]:
    """linkcheck.json: one record per WAN link (a run stored before every run wrote a list
    has one record, not in a list)."""
    data = read_json(path)
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def collect(spec: ExperimentSpec, out: Path, run: Run | None, error: str | None,
            fabric: dict[str, int | None] | None = None) -> dict:
    """metrics.json from what the run stored (partial runs included)."""
    from experiments.metrics import compute_metrics, prediction
    from experiments.summary import read_csv

    if spec.fleet is not None:
        from experiments.fleet.collect import collect_fleet

        metrics = collect_fleet(spec, out, run, error, read_linkchecks(out / "linkcheck.json"))
        metrics.update(fabric_metrics(fabric or {}))
        metrics.update(load_metrics(out, run.times if run else {}))
        _write_json(out / "metrics.json", metrics)
        return metrics

    mig_dir = out / "migration"
    result = read_json(mig_dir / "result.json")
    src_summary = read_json(mig_dir / "summary.json") or {}
    times = run.times if run else {}
    if result is not None and {"resumed_t", "verified_t"} <= times.keys():
        # The guest is down from the source's pause to the destination's resume (one clock:
        # every namespace shares the machine's). The source's own figure stops at the ACK.
        result["resume_s"] = times["resumed_t"] - times["verified_t"]
        if "paused_t" in times:
            result["downtime_s"] = times["resumed_t"] - times["paused_t"]
    links = read_linkchecks(out / "linkcheck.json")
    path = migration_path(spec)
    probes = read_csv(out / "probes.csv") if (out / "probes.csv").exists() else []
    kv = read_csv(out / "kv.csv") if (out / "kv.csv").exists() else None
    events = _read_jsonl(out / "controller_events.jsonl")
    pred = prediction(spec, compression_ratio=(result or {}).get("compression_ratio") or 1.0,
                      nonzero_frac=nonzero_fraction(result, spec.vm.memory_bytes),
                      goodput_mbps=path_figures(links, path)["goodput_mbps"],
                      dirty_rate_mibps=round0_dirty_mibps(result),
                      disk_dirty_rate_mibps=round0_dirty_mibps(result, disk=True)
                      if spec.vm.disk is not None else None)
    metrics = compute_metrics(
        probes=probes, events=events, migration=result or {"outcome": "not started"},
        links=links, link_path=path, vm_mac=run.vm_mac if run else "",
        migration_start_t=times.get("rounds_start_t", times.get("migration_start_t",
                                                                  time.time())),
        kv_rows=kv, predicted=pred)
    if "migration_start_t" in times and "rounds_start_t" in times:
        metrics["migration_setup_s"] = times["rounds_start_t"] - times["migration_start_t"]
    metrics.update(network_move_ms=times.get("network_move_ms"),
                   switchover_ms=(result or {}).get("resume_s", 0.0) * 1e3 if result else None,
                   source_summary_downtime_ms=src_summary.get("downtime_ms"),
                   encryption=src_summary.get("encryption"),
                   vm_kind=spec.vm.kind, vm_site_expected=spec.placement.destination_site,
                   kv_reconnects=(read_json(out / "clients.json") or {}).get("kv_reconnects"))
    if run is not None and hasattr(run, "extra_metrics"):
        metrics.update(run.extra_metrics())
    if "storage_policy" in metrics and metrics.get("disk_lost_writes_total") != 0:
        metrics["integrity_ok"] = False     # a disk write lost, or none checked: not integrity
    metrics.update(fabric_metrics(fabric or {}))
    metrics.update(load_metrics(out, times))
    if run is not None and run.faults is not None:
        metrics.update(run.faults.results(probes, kv))
        if result is None and "migration_start_t" in times:
            metrics["outcome"] = "lost: the source migrator wrote no result"
    if metrics["fabric_drops"]:
        log.warning("the emulated fabric itself dropped %d frames in the userspace switch "
                    "during the run: the link was lossier than configured",
                    metrics["fabric_drops"])
    if error is not None:
        metrics["outcome"] = f"failed: {error}"
    elif metrics.get("outcome") == "completed" and \
            metrics.get("site_after") != spec.placement.destination_site:
        metrics["outcome"] = "completed, but the clients never saw the VM answer from " \
                             f"{spec.placement.destination_site}"
    _write_json(out / "metrics.json", metrics)
    return metrics




def _read_jsonl(path: Path) -> list[dict]:
    from controller.eventlog import read_events

    return read_events(path) if path.exists() else []
