"""The network under its controller: the composition every run, benchmark and integration test
that needs the SDN controller starts from. The network is handed its control plane (as Mininet
is handed its controller); neither part knows the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.plane import ControlPlane
from topologies.network import WanNetwork
from topologies.plan import control_rtts
from topologies.spec import TopologySpec


def control_plane(spec: TopologySpec, workdir: str | Path, hold_s: float = 1.0) -> ControlPlane:
    """The controller placed as the topology says, with the control-channel RTT of each site."""
    return ControlPlane(Path(workdir), control_rtts(spec), spec.controller.site, hold_s=hold_s)


def controlled_network(spec: TopologySpec, choice: Any, workdir: str | Path, *, seed: int = 1,
                       hold_s: float = 1.0) -> WanNetwork:
    """``with controlled_network(...) as net:``: the network, its switches under the controller
    (``net.control``), both torn down together."""
    return WanNetwork(spec, choice, workdir, seed=seed,
                      controller=control_plane(spec, workdir, hold_s))
