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

import dataclasses
import json
import logging
import os
import queue
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.faults.actions import FaultError
from experiments.faults.run import FaultRun
from experiments.procs import Proc, ProcError, wait_for
from experiments.progress import Progress
from experiments.spec import ExperimentSpec, resolved_dict
from experiments.testbed import controlled_network
from ground.config import ConfigError
from ground.errors import NotAsAskedError
from ground.protocol import Kind, Message, format_line, parse_line
from topologies.plan import wan_path

log = logging.getLogger("wanmig.run")

VM_NAME = "vm1"           # the Mininet host
VM_ROLE = 9               # address plan role of VMs: 10.<site>.9.<n>
MIGRATION_PORT = 7700
DEST_GRACE_S = 15.0       # a destination running this long after the source ended is stopped
PY = sys.executable


class RunError(NotAsAskedError):
    """The run could not go on (preflight failed, a step timed out); the message says which."""


def check_runnable(spec: ExperimentSpec) -> None:
    """What the runner cannot do yet, or this machine cannot hold, refused before anything
    starts."""
    from experiments.capacity import check_capacity

    if spec.schedule.migrate_back:
        raise ConfigError("schedule.migrate_back", True,
                          "false: migrating back is not supported yet (the destination image "
                          "has no dirty log)")
    if spec.placement.source_site == spec.placement.destination_site:
        raise ConfigError("placement.destination", spec.placement.destination,
                          "a hypervisor at another site than the source")
    check_capacity(spec)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def preflight(net: Any, spec: ExperimentSpec, out: Path) -> list[dict]:
    """Every WAN link measured (``linkcheck.json``: one record per link, in link order); a link
    off by more than its tolerance stops the run."""
    from topologies.linkcheck import run_linkcheck

    checks = []
    for i, w in enumerate(spec.topology.wan, start=1):
        omit = max(2.0, 20 * w.rtt_ms / 1e3)
        c = run_linkcheck(net, link_index=i, pings=20, iperf_s=4.0, omit_s=omit, streams=2,
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


class Run:
    """One run's moving parts; ``execute`` does steps 3-6 on a started network."""

    def __init__(self, spec: ExperimentSpec, out: Path, net: Any) -> None:
        self.spec, self.out, self.net = spec, out, net
        self.lines: queue.Queue = queue.Queue()
        self.procs: dict[str, Proc] = {}
        self.guest: Any = None
        self.image = f"r{os.getpid() % 100000}"
        self.times: dict[str, float] = {}
        self.vm_mac = ""
        self.path: dict = {}                  # the migration's path as the preflight measured it
        self.prepared: Any = None             # the VM's cable at the destination, not yet up
        self.iface = ""                       # the VM's interface once moved
        self.bar: Progress | None = None
        self.faults = FaultRun(self, VM_NAME) if spec.faults else None   # experiments/faults

    # -- pieces ---------------------------------------------------------------------------------
    def _start(self, name: str, node: Any, argv: list[str], stdin: bool = False) -> Proc:
        self.procs[name] = Proc(name, node, argv, self.out / "logs", self.lines, stdin=stdin)
        return self.procs[name]

    def _add_vm(self) -> Any:
        from topologies.plan import address

        p = self.spec.placement
        plan = self.net.plan
        src = next(h for h in plan.hosts if h.name == p.source)
        ip, mac = address(plan.site_index[p.source_site], VM_ROLE, 1)
        self.vm_mac, self.vm_ip = mac, ip
        return self.net.add_host(VM_NAME, ip, mac, src.switch)

    def _start_guest(self, vm_host: Any) -> None:
        from migrator.guest.vm import start_guest

        vm = self.spec.vm
        err = open(self.out / "logs" / "guest.log", "w")  # noqa: SIM115 - the guest keeps it
        try:
            self.guest = start_guest(self.image, vm.memory_bytes // 4096, vm.workload, vm.seed,
                                     self.spec.placement.source_site, popen=vm_host.popen,
                                     stderr=err)
        finally:
            err.close()

    def _start_clients(self) -> None:
        c = self.spec.clients
        argv = [PY, "-m", "experiments.clients", "--target", self.vm_ip, "--duration", "86400",
                "--probe-ms", str(c.probe_ms), "--kv-ops", str(c.kv_ops), "--kv-rate",
                str(c.kv_rate_hz), "--value-bytes", str(c.kv_value_bytes), "--seed",
                str(self.spec.seed), "--out", str(self.out)]
        self._start("clients", self.net.host(c.host), argv)
        wait_for(self.lines, self.procs, "clients", Kind.READY, 30)

    def _migrate(self) -> None:
        from topologies.mobility import prepare_move

        p, plan = self.spec.placement, self.net.plan
        dst = next(h for h in plan.hosts if h.name == p.destination)
        key = self.out / "logs" / "migration.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        policy = self.out / "logs" / "policy.yaml"
        policy.write_text(yaml.safe_dump(dataclasses.asdict(self.spec.policy)))
        rtt = self.path.get("rtt_ms_measured") or self.path.get("rtt_ms_configured") or 0.0
        goodput = self.path.get("goodput_mbps")
        budget = self.spec.policy.time_budget_s + 120
        # The VM's NIC at the destination is plugged in (down) before the migration starts, as
        # a destination hypervisor's vSwitch port would be; switchover only brings it up.
        self.prepared = prepare_move(self.net, VM_NAME, dst.switch)
        self._start("dest", self.net.host(p.destination), [
            PY, "-m", "wanmig.cli", "migrate-dest", "--listen", f"{dst.ip}:{MIGRATION_PORT}",
            "--vm", self.image, "--tag", "dst", "--source-tag", "src", "--location",
            p.destination_site, "--key-file", str(key), "--timeout-s", str(budget), "--gate",
            "--json"], stdin=True)
        wait_for(self.lines, self.procs, "dest", Kind.LISTENING, 60)
        self._start("source", self.net.host(p.source), [
            PY, "-m", "wanmig.cli", "migrate-source", "--connect", f"{dst.ip}:{MIGRATION_PORT}",
            "--vm", self.image, "--tag", "src", "--key-file", str(key), "--rtt-hint-ms",
            str(rtt), *(["--bw-hint-mbps", str(goodput)] if goodput else []),
            "--policy-file", str(policy), "--timeout-s", "60", "--progress", "--out",
            str(self.out / "migration")])
        handlers = {Kind.STARTED: self._on_started, Kind.PAUSED: self._on_paused,
                    Kind.PROGRESS: self._on_progress, Kind.VERIFIED: self._on_verified,
                    Kind.RESUMED: self._on_resumed}
        ended: dict[str, float] = {}
        deadline = time.monotonic() + budget
        with Progress(total_bytes=self.spec.vm.memory_bytes) as self.bar:
            while ended.keys() != {"source", "dest"}:
                if time.monotonic() > deadline:
                    raise RunError(f"migration still running after {budget:.0f} s")
                if "dest" not in ended and time.monotonic() - ended.get("source", 1e300) \
                        > DEST_GRACE_S:     # nothing will come: do not wait for its timeout
                    log.warning("the destination migrator still runs %.0f s after the source "
                                "ended: stopping it", DEST_GRACE_S)
                    self.procs["dest"].stop()
                try:
                    who, line = self.lines.get(timeout=1.0)
                except queue.Empty:
                    continue
                if line is None:
                    ended[who] = time.monotonic()
                    continue
                msg = parse_line(line)          # None: a log line or the result record
                if msg is not None and self.faults is not None:
                    self.faults.on_message(msg)
                if msg is not None and msg.kind in handlers:
                    handlers[msg.kind](msg)
        for name in ("source", "dest"):
            rc = self.procs[name].wait(30)
            log.info("%s exited %d", name, rc)

    # -- what the migrator says (ground.protocol), one handler per kind -------------------------
    def _on_started(self, msg: Message) -> None:
        self.times["migration_start_t"] = msg.t

    def _on_paused(self, msg: Message) -> None:
        self.times["paused_t"] = msg.t

    def _on_progress(self, msg: Message) -> None:
        r = msg.fields
        # The engine's clock starts with round 0 (after connecting and, for the adaptive
        # policy, measuring the codecs): rounds.csv is relative to that.
        self.times.setdefault("rounds_start_t", msg.t - r["duration_s"])
        left = r["dirty_rate_Bps"] * r["duration_s"]          # the next round's pages
        assert self.bar is not None
        self.bar.update(r["phase"], r["round"], left, r["goodput_Bps"], r["eta_s"],
                        r["expected_downtime_s"] * 1e3)

    def _on_verified(self, msg: Message) -> None:
        """The image is verified at the destination: the VM's cable goes to the destination
        switch, then GO resumes the guest there."""
        from topologies.mobility import complete_move

        self.times["verified_t"] = msg.t
        t0 = time.time()
        self.iface = complete_move(self.net, self.prepared)
        self.times["network_move_ms"] = (time.time() - t0) * 1e3
        try:
            self.procs["dest"].send(format_line(Kind.GO))
        except OSError as exc:          # it died after VERIFIED (a fault, a crash)
            log.error("could not say GO to the destination migrator: %s", exc)

    def _on_resumed(self, msg: Message) -> None:
        """The guest runs at the destination: it announces itself; the old cable goes."""
        from topologies.mobility import unplug_old

        self.times["resumed_t"] = msg.t
        self.procs["announce"].send(format_line(Kind.GO, iface=self.iface))
        unplug_old(self.net, self.prepared)

    # -- the run --------------------------------------------------------------------------------
    def execute(self) -> None:
        (self.out / "logs").mkdir(exist_ok=True)
        if self.faults is not None:
            self.faults.check()
        vm_host = self._add_vm()
        self._start_guest(vm_host)
        self._start("announce", vm_host, [PY, "-m", "migrator.guest.announce", "--iface", "-",
                                          "--mac", self.vm_mac, "--first-now"], stdin=True)
        wait_for(self.lines, self.procs, "announce", Kind.READY, 60)
        self._start_clients()
        log.info("warm-up %.0f s: VM %s (%s) at %s, clients at %s", self.spec.schedule.warmup_s,
                 VM_NAME, self.vm_ip, self.spec.placement.source, self.spec.clients.host)
        time.sleep(self.spec.schedule.warmup_s)      # the experiment's warm-up, as asked
        log.info("migrating %s -> %s", self.spec.placement.source,
                 self.spec.placement.destination)
        if self.faults is not None:
            self.faults.start()
        self._migrate()
        log.info("cool-down %.0f s", self.spec.schedule.cooldown_s)
        time.sleep(self.spec.schedule.cooldown_s)    # the experiment's cool-down, as asked
        # The clients stop probing on SIGTERM, then read back every key they wrote (a paused
        # VM makes every request wait for its retry budget, hence the longer wait with faults).
        self.procs["clients"].stop(timeout_s=150 if self.faults is not None else 90)

    def stop(self) -> None:
        if self.faults is not None:      # where the VM is, before anything goes; faults undone
            self.faults.finish()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout_s=5)
        if self.guest is not None:
            self.guest.stop()
            self.guest = None
        # A destination that died mid-migration leaves the image it was receiving into.
        from migrator.guest.image import leftover_segments, remove_segments

        remove_segments([n for n in leftover_segments() if n.startswith(f"wanmig-{self.image}-")])
        ctl = getattr(self.net, "control", None)
        if ctl is not None and ctl.events.exists():
            shutil.copy(ctl.events, self.out / "controller_events.jsonl")


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
    run: Run | None = None
    error: str | None = None
    # The userspace switch's own drops (topologies.fabricdrops), read at three moments.
    drops = switch_drops if choice.ovs_datapath == "user" else (lambda: None)
    fabric: dict[str, int | None] = {}
    try:
        with controlled_network(spec.topology, choice, out / "net", seed=spec.seed) as net:
            fabric["up"] = drops()
            meta["network"] = net.record()
            _write_json(out / "meta.json", meta)
            checks = preflight(net, spec, out)
            fabric["preflight"] = drops()
            run = Run(spec, out, net)
            run.path = path_figures(checks, migration_path(spec))
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


def fabric_metrics(fabric: dict[str, int | None]) -> dict[str, int | None]:
    """Frames the userspace switch dropped during the preflight and during the run proper
    (None where it could not be read, or on the kernel datapath)."""
    def delta(a: str, b: str) -> int | None:
        x, y = fabric.get(a), fabric.get(b)
        return None if x is None or y is None else y - x
    return {"fabric_drops_preflight": delta("up", "preflight"),
            "fabric_drops": delta("preflight", "end")}


def migration_path(spec: ExperimentSpec) -> list[int]:
    """The WAN links (1-based) the migration crosses, from the source's site on."""
    return wan_path(spec.topology, spec.placement.source_site, spec.placement.destination_site)


def path_figures(checks: list[dict], path: list[int]) -> dict:
    """What the migrator is told of its path, as the preflight measured it (the path's figures
    of ``metrics.link_metrics``): RTTs summed, the smallest goodput of its links."""
    from experiments.metrics import link_metrics

    m = link_metrics(checks, path)
    return {"rtt_ms_configured": m["link_rtt_ms_configured"],
            "rtt_ms_measured": m["link_rtt_ms_measured"],
            "goodput_mbps": m["link_goodput_mbps"]}


def read_linkchecks(path: Path) -> list[dict]:
    """linkcheck.json: one record per WAN link (a run stored before every run wrote a list
    has one record, not in a list)."""
    data = _read_json(path)
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def collect(spec: ExperimentSpec, out: Path, run: Run | None, error: str | None,
            fabric: dict[str, int | None] | None = None) -> dict:
    """metrics.json from what the run stored (partial runs included)."""
    from experiments.metrics import compute_metrics, prediction
    from experiments.summary import read_csv

    mig_dir = out / "migration"
    result = _read_json(mig_dir / "result.json")
    src_summary = _read_json(mig_dir / "summary.json") or {}
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
                      dirty_rate_mibps=round0_dirty_mibps(result))
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
                   vm_site_expected=spec.placement.destination_site)
    metrics.update(fabric_metrics(fabric or {}))
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


def nonzero_fraction(result: dict | None, memory_bytes: int) -> float:
    """Share of the guest's pages that round 0 found non-zero (the model's input); 1 when the
    migration never got that far."""
    rounds = (result or {}).get("rounds") or []
    if not rounds or not memory_bytes:
        return 1.0
    return min(1.0, rounds[0]["pages"] * 4096 / memory_bytes)


def round0_dirty_mibps(result: dict | None) -> float | None:
    """The guest's rate of distinct dirty pages over round 0 (the longest window measured)."""
    rounds = (result or {}).get("rounds") or []
    return rounds[0]["dirty_rate_Bps"] / 2**20 if rounds else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict]:
    from controller.eventlog import read_events

    return read_events(path) if path.exists() else []
