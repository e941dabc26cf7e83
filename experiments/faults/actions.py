"""What each fault does to a running testbed, and how it is undone: thin adapters over the
network's delay lines (``topologies.linkcontrol``), its hosts' cables (``topologies.hostcut``),
the migrator processes and the controller process. Each ``apply``/``undo`` returns what it did
(recorded with the fault) and raises ``FaultError`` when it could not.

| kind | apply | undo |
|---|---|---|
| wan-outage | the link's delay line drops every frame | forwards again |
| loss-burst | its loss becomes ``loss_pct`` (round trip) | the configured loss |
| rtt-step | its delay gives ``rtt_ms`` | the configured delay |
| kill-source / kill-destination | SIGKILL of that migrator | (nothing) |
| cut-destination | the destination hypervisor's cable down | up again |
| restart-controller | SIGKILL of the controller | a fresh controller started |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from experiments.faults.spec import WAN_KINDS, FaultSpec
from ground.errors import NotAsAskedError

log = logging.getLogger("wanmig.faults")


class FaultError(NotAsAskedError):
    """A fault could not be injected or undone (the message says why)."""


class RunActions:
    """The actions on one run: ``net`` a started ``WanNetwork`` under its controller,
    ``procs(name)`` the runner's process of that name (``source``, ``dest``) or None,
    ``destination`` the destination hypervisor's host name."""

    def __init__(self, net: Any, procs: Callable[[str], Any], destination: str) -> None:
        self.net, self.procs, self.destination = net, procs, destination
        self.new_pids: list[int] = []       # processes the faults started (a new controller)

    def check(self, faults: list[FaultSpec]) -> None:
        """Refuse, before the run goes on, a fault this network cannot take."""
        for i, f in enumerate(faults):
            if f.kind in WAN_KINDS:
                self._relay(f, i)
            if f.kind == "restart-controller" and getattr(self.net, "control", None) is None:
                raise FaultError(f"faults[{i}]: restart-controller, but the network has no "
                                 "controller")

    def _relay(self, f: FaultSpec, i: int | None = None) -> Any:
        assert f.link is not None
        link = self.net.links[f.link - 1]
        if link.relay_proc is None or not link.relay_control_path:
            where = f"faults[{i}]: " if i is not None else ""
            raise FaultError(f"{where}{f.kind} on WAN link {f.link}, which is not a delay line "
                             f"(backend {link.backend}, forwarding {link.forwarding}): WAN faults "
                             "are injected by the delay line only (WANMIG_LINK_BACKEND="
                             "delayline forces it)")
        return link

    def _wan(self, f: FaultSpec, fields: dict) -> dict:
        from topologies.linkcontrol import ControlError, send_control

        link = self._relay(f)
        try:
            state = send_control(link.relay_control_path, fields)
        except (OSError, ControlError) as exc:
            raise FaultError(f"delay line of WAN link {f.link}: {exc}") from exc
        return {"link": f.link, "relay": state}

    def apply(self, f: FaultSpec) -> dict:
        from topologies.linkcontrol import wan_fault_fields

        if f.kind == "wan-outage":
            return self._wan(f, {"cut": True})
        if f.kind in ("loss-burst", "rtt-step"):
            link = self._relay(f)
            fields = wan_fault_fields(link.relay_delay_ms or 0.0, link.spec.rtt_ms,
                                      rtt_ms=f.rtt_ms, loss_pct=f.loss_pct)
            return self._wan(f, fields)
        if f.kind in ("kill-source", "kill-destination"):
            return self._kill("source" if f.kind == "kill-source" else "dest")
        if f.kind == "cut-destination":
            return self._cut(True)
        if f.kind == "restart-controller":
            ctl = self.net.control.controller
            pid = ctl.proc.pid if ctl.proc is not None else None
            ctl.kill()
            return {"killed_pid": pid}
        raise FaultError(f"no action for kind {f.kind!r}")

    def undo(self, f: FaultSpec) -> dict:
        if f.kind == "wan-outage":
            return self._wan(f, {"cut": False})
        if f.kind == "loss-burst":
            return self._wan(f, {"loss_pct": None})
        if f.kind == "rtt-step":
            return self._wan(f, {"delay_ms": None})
        if f.kind == "cut-destination":
            return self._cut(False)
        if f.kind == "restart-controller":
            ctl = self.net.control.controller
            ctl.start()
            self.new_pids.append(ctl.proc.pid)
            registry = getattr(self.net, "registry", None)
            if registry is not None:                   # teardown and `wanmig clean` stop it
                registry.add_processes([ctl.proc.pid])
            return {"started_pid": ctl.proc.pid}
        return {}

    def _kill(self, name: str) -> dict:
        proc = self.procs(name)
        if proc is None or proc.proc.poll() is not None:
            raise FaultError(f"the {name} migrator is not running "
                             f"({'never started' if proc is None else 'it has exited'})")
        proc.proc.kill()
        return {"killed_pid": proc.proc.pid}

    def _cut(self, cut: bool) -> dict:
        from topologies.hostcut import CutError, set_cut

        try:
            return {"host": self.destination, "ports": set_cut(self.net, self.destination, cut)}
        except CutError as exc:
            raise FaultError(str(exc)) from exc
