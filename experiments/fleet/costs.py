"""What one move of a fleet's VM costs, from the single-migration model on the links as the
preflight measured them: the placement's cost function and the fleet model's ``time_at``.

A move between two sites crosses the WAN path between them (its RTTs summed, its smallest
measured goodput); a move inside a site crosses no WAN link and is priced at
``LOCAL_GOODPUT_MBPS`` with no RTT, an assumption the decisions record says is not measured.
Before a move ran, its data is unknown: the model takes every page as non-zero and
incompressible (an upper bound; the same for every candidate, so the ranking is fair); after
it ran, ``measured`` feeds it the move's own compression ratio, non-zero share and distinct
dirty rate, as the other benchmarks do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.fleet.spec import FleetSpec
from experiments.fleet.types import MoveCost, VmInfo
from experiments.metrics import link_metrics, model_inputs
from experiments.spec import PlacementSpec
from migrator.core.model import ModelInputs, predict
from topologies.plan import wan_path

LOCAL_GOODPUT_MBPS = 1000.0     # a move inside a site: not measured, assumed


class MoveModel:
    """The model of one move between two hypervisors, for an experiment with a fleet."""

    def __init__(self, spec: Any, links: Sequence[Mapping[str, Any]]) -> None:
        assert spec.fleet is not None
        self.spec = spec
        self.fleet: FleetSpec = spec.fleet
        self.links = list(links)
        self.site_of = {h.name: h.site for h in self.fleet.hosts.values()}

    def path(self, source: str, destination: str) -> tuple[int, ...]:
        """The WAN links (1-based) a move between the two hosts crosses."""
        return tuple(wan_path(self.spec.topology, self.site_of[source],
                              self.site_of[destination]))

    def goodput_mbps(self, path: Sequence[int]) -> float | None:
        if not path:
            return LOCAL_GOODPUT_MBPS
        return link_metrics(self.links, list(path))["link_goodput_mbps"]

    def link_bandwidth_Bps(self) -> dict[int, float]:  # noqa: N802 - unit suffix
        """Each WAN link's measured goodput (bytes/s), what the fleet model shares out."""
        out = {}
        for i in range(1, len(self.spec.topology.wan) + 1):
            g = link_metrics(self.links, [i])["link_goodput_mbps"]
            if g:
                out[i] = g * 1e6 / 8
        return out

    def inputs(self, vm: str, source: str, destination: str, *,
               compression_ratio: float = 1.0, nonzero_frac: float = 1.0,
               dirty_rate_mibps: float | None = None) -> ModelInputs | None:
        path = self.path(source, destination)
        fv = self.fleet.vm(vm)
        one = dataclasses.replace(
            self.spec, vm=fv.vm, policy=fv.policy,
            placement=PlacementSpec(source=source, destination=destination,
                                    source_site=self.site_of[source],
                                    destination_site=self.site_of[destination]))
        return model_inputs(one, compression_ratio, nonzero_frac, self.goodput_mbps(path),
                            dirty_rate_mibps)

    def cost(self, vm: VmInfo, source: str, destination: str) -> MoveCost:
        """The placement's cost function (``experiments.fleet.types.CostFn``)."""
        inputs = self.inputs(vm.name, source, destination)
        if inputs is None:     # no goodput measured on the path: priced as unreachable
            return MoveCost(time_s=float("inf"), downtime_s=float("inf"),
                            bytes_on_wire=float("inf"))
        res = predict(inputs)
        return MoveCost(time_s=res.total_time_s, downtime_s=res.downtime_s,
                        bytes_on_wire=res.bytes_on_wire)

    def measured(self, vm: str, source: str, destination: str, result: Mapping[str, Any]
                 ) -> ModelInputs | None:
        """The move's inputs with what its migration measured (``experiments.runner``'s)."""
        from experiments.metrics import nonzero_fraction, round0_dirty_mibps

        mem = self.fleet.vm(vm).vm.memory_bytes
        return self.inputs(vm, source, destination,
                           compression_ratio=result.get("compression_ratio") or 1.0,
                           nonzero_frac=nonzero_fraction(dict(result), mem),
                           dirty_rate_mibps=round0_dirty_mibps(dict(result)))

