"""The control plane of a network: the controller process, one delayed relay per distinct
control RTT (switches at a remote site reach the controller across the WAN), and the OVS switch
class that connects each switch to its own target."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from controller.launch import ControllerProcess, ControlRelay
from topologies.plan import NetworkPlan, control_rtts
from topologies.spec import TopologySpec

log = logging.getLogger(__name__)


class _Target:
    """What Mininet's OVSSwitch.start needs of a controller: a name, protocol, IP and port."""

    protocol = "tcp"

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port

    def IP(self) -> str:  # noqa: N802 - Mininet's spelling
        return "127.0.0.1"


def switch_class() -> type:
    from mininet.node import OVSSwitch

    class WanSwitch(OVSSwitch):
        """An OpenFlow 1.3 switch in secure mode (no controller: no forwarding, never a silent
        learning bridge) that connects to the target given to it, not to every controller."""

        def __init__(self, name: str, ctl_port: int = 0, **params: Any) -> None:
            params.setdefault("failMode", "secure")
            params.setdefault("protocols", "OpenFlow13")
            super().__init__(name, **params)
            self.ctl_port = ctl_port

        def start(self, controllers: list) -> None:
            super().start([_Target("c0", self.ctl_port)] if self.ctl_port else [])

    return WanSwitch


class ControlPlane:
    def __init__(self, spec: TopologySpec, plan: NetworkPlan, workdir: Path,
                 hold_s: float = 1.0) -> None:
        self.spec = spec
        self.plan = plan
        self.controller = ControllerProcess(workdir, hold_s=hold_s)
        self.rtts = control_rtts(spec)
        self.relays: dict[float, ControlRelay] = {}
        self.workdir = workdir

    def start(self) -> None:
        self.controller.start()
        for rtt in sorted(set(self.rtts.values()) - {0.0}):
            relay = ControlRelay(self.controller.port, rtt, self.workdir)
            relay.start()
            self.relays[rtt] = relay

    def port_for(self, site: str) -> int:
        rtt = self.rtts[site]
        return self.relays[rtt].port if rtt else self.controller.port

    def pids(self) -> list[int]:
        procs = [self.controller.proc] + [r.proc for r in self.relays.values()]
        return [p.pid for p in procs if p is not None]

    def wait_converged(self, timeout_s: float = 60.0) -> dict:
        """Every switch connected and every inter-switch link discovered."""
        n_sw = len(self.plan.switches)
        n_links = len(self.plan.fabric_links) + len(self.plan.wan)
        return self.controller.wait_for(
            lambda s: len(s.get("switches", [])) == n_sw and s.get("links", 0) == n_links,
            f"{n_sw} switches and {n_links} links", timeout_s)

    def stop(self) -> None:
        for relay in self.relays.values():
            relay.stop()
        self.controller.stop()

    def record(self) -> dict:
        return {"controller_site": self.spec.controller.site, "port": self.controller.port,
                "control_rtt_ms": self.rtts, "events": str(self.controller.events)}
