"""The control plane of a network: the controller process and one delayed relay per distinct
control RTT (switches at a remote site reach the controller across the WAN). The composer makes
it from the topology's control RTTs per site and hands it to the network, which starts it before
its switches and stops it after them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from controller.launch import ControllerProcess, ControlRelay

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, workdir: Path, control_rtts_ms: Mapping[str, float],
                 controller_site: str, hold_s: float = 1.0) -> None:
        """``control_rtts_ms``: site name => RTT of its switches' control channel (0 where the
        controller is, or for a local controller)."""
        self.controller = ControllerProcess(workdir, hold_s=hold_s)
        self.rtts = dict(control_rtts_ms)
        self.controller_site = controller_site
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

    def wait_converged(self, switches: int, links: int, timeout_s: float = 60.0) -> dict:
        """Every switch connected and every inter-switch link discovered."""
        return self.controller.wait_for(
            lambda s: len(s.get("switches", [])) == switches and s.get("links", 0) == links,
            f"{switches} switches and {links} links", timeout_s)

    @property
    def events(self) -> Path:
        """The controller's event log (``controller_events.jsonl``)."""
        return self.controller.events

    def stop(self) -> None:
        for relay in self.relays.values():
            relay.stop()
        self.controller.stop()

    def record(self) -> dict:
        return {"controller_site": self.controller_site, "port": self.controller.port,
                "control_rtt_ms": self.rtts, "events": str(self.controller.events)}
