"""One migration of a fleet in flight: its destination migrator, its source migrator and the
VM's announcer, driven by what they say, side by side with the fleet's other migrations.

As in the one-VM run (``experiments.vmrun``): the VM's NIC is prepared (down) at the
destination's switch before anything starts; the destination and the source migrators start
together (their start-ups overlap: the source tries again until the destination listens,
``--connect-wait-s``); when the destination has verified the image (VERIFIED) the cable moves and
GO resumes the guest there (RESUMED), the announcer sends its RARP burst and the old cable
goes. A move inside one switch moves no cable. Every step's time is kept (``times``), and the
source's result lands in ``vms/<vm>/move-<k>/migration/``. A migration that fails leaves the
VM where it was: its prepared cable is removed, and the guest (if paused) resumes at the
source when the source migrator's lease lapses.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import yaml

from experiments.fleet.member import FleetMember
from experiments.fleet.types import Move
from ground.jsonfile import read_json
from ground.protocol import Kind, Message, format_line, parse_line

log = logging.getLogger("wanmig.fleet")

MIGRATION_PORT_BASE = 7700       # one port per migration of the run, so none is reused
DEST_GRACE_S = 15.0
CONNECT_WAIT_S = 60.0        # the source waits this long for its destination to listen


class FleetMigration:
    """``start`` launches it; ``on_line`` takes its processes' lines; ``done`` once all ended."""

    def __init__(self, member: FleetMember, move: Move, number: int, port: int, out: Path,
                 spec: Any, path_figures: dict) -> None:
        self.member, self.move, self.number, self.port = member, move, number, port
        self.spec, self.path = spec, path_figures
        self.tag = f"m{number}"             # the image it arrives in: one per migration
        self.dir = member.dir / f"move-{number}"
        self.procs: dict[str, Any] = {}
        self.times: dict[str, float] = {}
        self.prepared: Any = None
        self.iface = ""
        self.ended: dict[str, float] = {}
        self.error: str | None = None
        self.resumed = False

    def proc_name(self, role: str) -> str:
        return f"{self.member.name}-{self.number}-{role}"

    # -- start ----------------------------------------------------------------------------------
    def start(self, start_proc: Any) -> None:
        """The announcer, the prepared cable, the destination and source migrators."""
        from topologies.mobility import prepare_move

        self.times["start_t"] = time.time()
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        m, net = self.member, self.member.net
        key = self.dir / "logs" / "migration.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        self.key = key
        policy = self.dir / "logs" / "policy.yaml"
        policy.write_text(yaml.safe_dump(dataclasses.asdict(m.fv.policy)))
        self.policy_file = policy
        self.budget_s = m.fv.policy.time_budget_s + 120
        self.start_proc = start_proc
        self.procs["ann"] = start_proc(self.proc_name("ann"), m.node, [
            "-m", "migrator.guest.announce", "--iface", "-", "--mac", m.mac, "--first-now"],
            None, self.dir / "logs", stdin=True)
        if m.switch_of(self.move.destination) != m.switch_of(m.host):
            self.prepared = prepare_move(net, m.name, m.switch_of(self.move.destination))
        dst = self._hypervisor(self.move.destination)
        self.dst_ip = dst.ip
        self.procs["dst"] = start_proc(self.proc_name("dst"), net.host(dst.name), [
            "-m", "wanmig.cli", "migrate-dest", "--listen", f"{dst.ip}:{self.port}",
            "--vm", m.image, "--tag", self.tag, "--source-tag", m.tag, "--control-tag", "src",
            "--location", self._site(self.move.destination), "--key-file", str(key),
            "--timeout-s", str(self.budget_s), "--gate", "--json"], None, self.dir / "logs",
            stdin=True)
        self._start_source()

    def _hypervisor(self, name: str) -> Any:
        return next(h for h in self.member.net.plan.hosts if h.name == name)

    def _site(self, host: str) -> str:
        return self._hypervisor(host).site

    def _start_source(self) -> None:
        m = self.member
        rtt = self.path.get("rtt_ms_measured") or self.path.get("rtt_ms_configured") or 0.0
        goodput = self.path.get("goodput_mbps")
        self.procs["src"] = self.start_proc(self.proc_name("src"), m.net.host(m.host), [
            "-m", "wanmig.cli", "migrate-source", "--connect", f"{self.dst_ip}:{self.port}",
            "--vm", m.image, "--tag", m.tag, "--control-tag", "src", "--key-file",
            str(self.key), "--rtt-hint-ms", str(rtt), "--connect-wait-s", str(CONNECT_WAIT_S),
            *(["--bw-hint-mbps", str(goodput)] if goodput else []),
            "--policy-file", str(self.policy_file), "--timeout-s", "60", "--progress",
            "--out", str(self.dir / "migration")], None, self.dir / "logs")

    # -- what its processes say -----------------------------------------------------------------
    def on_line(self, role: str, line: str | None) -> None:
        if line is None:
            self.ended[role] = time.monotonic()
            return
        msg = parse_line(line)
        if msg is None:
            return
        handler = {(Kind.STARTED, "src"): self._on_started,
                   (Kind.PROGRESS, "src"): self._on_progress,
                   (Kind.PAUSED, "src"): self._on_paused,
                   (Kind.VERIFIED, "dst"): self._on_verified,
                   (Kind.RESUMED, "dst"): self._on_resumed}.get((msg.kind, role))
        if handler is not None:
            handler(msg)

    def _on_started(self, msg: Message) -> None:
        self.times["migration_start_t"] = msg.t

    def _on_progress(self, msg: Message) -> None:
        self.times.setdefault("rounds_start_t", msg.t - msg.fields["duration_s"])

    def _on_paused(self, msg: Message) -> None:
        self.times["paused_t"] = msg.t

    def _on_verified(self, msg: Message) -> None:
        from topologies.mobility import complete_move

        self.times["verified_t"] = msg.t
        t0 = time.time()
        if self.prepared is not None:
            self.iface = complete_move(self.member.net, self.prepared)
        else:
            self.iface = self.member.node.defaultIntf().name
        self.times["network_move_ms"] = (time.time() - t0) * 1e3
        try:
            self.procs["dst"].send(format_line(Kind.GO))
        except OSError as exc:
            log.error("%s: could not say GO to the destination migrator: %s", self.member.name,
                      exc)

    def _on_resumed(self, msg: Message) -> None:
        from topologies.mobility import unplug_old

        self.times["resumed_t"] = msg.t
        self.resumed = True
        try:
            self.procs["ann"].send(format_line(Kind.GO, iface=self.iface))
        except OSError as exc:
            log.warning("%s: the announcer is gone: %s", self.member.name, exc)
        if self.prepared is not None:
            unplug_old(self.member.net, self.prepared)

    # -- its end --------------------------------------------------------------------------------
    def tick(self) -> None:
        """Stop a destination still running long after the source ended, and anything past
        the migration's budget."""
        now = time.monotonic()
        if "src" in self.ended and "dst" not in self.ended and "dst" in self.procs \
                and now - self.ended["src"] > DEST_GRACE_S:
            log.warning("%s: the destination migrator still runs %.0f s after the source: "
                        "stopping it", self.member.name, DEST_GRACE_S)
            self.procs["dst"].stop()
        if time.time() - self.times["start_t"] > self.budget_s and not self.done:
            self.error = f"still running after {self.budget_s:.0f} s"
            for role in ("src", "dst"):
                if role in self.procs:
                    self.procs[role].stop()

    @property
    def done(self) -> bool:
        roles = {"dst", "src"} if "src" in self.procs else {"dst"}
        return roles <= self.ended.keys()

    def finish(self) -> dict:
        """After ``done``: the processes reaped, the cable undone if the move failed, the
        member moved if it completed; returns the source's result (or what is known)."""
        from topologies.mobility import cancel_move

        self.times["end_t"] = time.time()
        for role in ("src", "dst"):
            if role in self.procs:
                self.procs[role].stop(timeout_s=10)
        result = read_json(self.dir / "migration" / "result.json") or {}
        completed = result.get("outcome") == "completed" and self.resumed
        if completed:
            self.member.moved(self.move.destination, self._site(self.move.destination),
                              self.tag)
        else:
            if self.prepared is not None and "verified_t" not in self.times:
                cancel_move(self.member.net, self.prepared)
            self.procs["ann"].stop(timeout_s=2)
            why = self.error or result.get("error") or result.get("outcome") \
                or "the source migrator wrote no result"
            self.error = f"failed: {why}"
        self.result = result
        self.completed = completed
        return result
