"""From a topology spec to a plan: every node and link with its name, address and role.

Pure data, no Mininet: the Mininet adapter (topologies/network.py) only turns this into objects.

Naming: hosts as in the spec (``dc1h1`` hypervisors, ``dc1c1`` clients by default), switches
and WAN relay nodes as ``topologies.names`` says.

Addresses: one L2 segment, ``10.0.0.0/8``, stretched across sites (a migrated VM keeps its IP, as
with vMotion); host ``n`` of role ``r`` at site ``s`` is ``10.s.r.n``, MAC ``02:00:0a:ss:rr:nn``.
Roles: 1 hypervisor, 2 client (3 is kept for VMs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topologies.names import relay_name, switch_name
from topologies.spec import SiteSpec, TopologySpec

ROLE_HYPERVISOR, ROLE_CLIENT, ROLE_VM = 1, 2, 3
PREFIX_LEN = 8


@dataclass(frozen=True)
class HostPlan:
    name: str
    site: str
    role: str        # 'hypervisor' or 'client'
    ip: str          # without prefix length
    mac: str
    switch: str      # the edge or leaf switch it is plugged into


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    site: str
    dpid: str        # 16 hex digits
    tier: str        # 'edge', 'leaf' or 'spine'


@dataclass(frozen=True)
class WanPlan:
    index: int       # 1-based, as in the relay's name
    a_site: str
    b_site: str
    a_switch: str    # the border switch at each end
    b_switch: str
    relay: str       # relay node name, used by the delay-line backend


@dataclass(frozen=True)
class NetworkPlan:
    hosts: tuple[HostPlan, ...]
    switches: tuple[SwitchPlan, ...]
    fabric_links: tuple[tuple[str, str], ...]   # (switch, switch) inside a site
    wan: tuple[WanPlan, ...]
    site_index: dict[str, int] = field(default_factory=dict)

    def host(self, name: str) -> HostPlan:
        return next(h for h in self.hosts if h.name == name)

    def hosts_at(self, site: str, role: str | None = None) -> list[HostPlan]:
        return [h for h in self.hosts if h.site == site and (role is None or h.role == role)]

    def switch_graph_has_cycle(self) -> bool:
        """True when the switches form a loop (leaf-spine with 2+ spines, or a ring of sites)."""
        edges = list(self.fabric_links) + [(w.a_switch, w.b_switch) for w in self.wan]
        parent = {s.name: s.name for s in self.switches}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for u, v in edges:
            ru, rv = find(u), find(v)
            if ru == rv:
                return True
            parent[ru] = rv
        return False


def address(site_index: int, role: int, n: int) -> tuple[str, str]:
    """IP and MAC of host ``n`` (1-based) of ``role`` at the site with 1-based ``site_index``."""
    return (f"10.{site_index}.{role}.{n}",
            f"02:00:0a:{site_index:02x}:{role:02x}:{n:02x}")


def _site_switches(site: SiteSpec, index: int) -> list[SwitchPlan]:
    base = index * 256
    if site.fabric.kind == "edge":
        return [SwitchPlan(switch_name(site.name, "edge", 1), site.name, f"{base + 1:016x}",
                           "edge")]
    leaves = [SwitchPlan(switch_name(site.name, "leaf", i), site.name, f"{base + i:016x}", "leaf")
              for i in range(1, site.fabric.leaves + 1)]
    spines = [SwitchPlan(switch_name(site.name, "spine", i), site.name, f"{base + 128 + i:016x}",
                         "spine") for i in range(1, site.fabric.spines + 1)]
    return leaves + spines


def border_switch(switches: list[SwitchPlan]) -> str:
    """Where a site's WAN links attach: its edge switch, or its first spine."""
    for tier in ("edge", "spine"):
        for sw in switches:
            if sw.tier == tier:
                return sw.name
    raise ValueError("a site without switches")


def plan_network(spec: TopologySpec) -> NetworkPlan:
    hosts: list[HostPlan] = []
    switches: list[SwitchPlan] = []
    fabric: list[tuple[str, str]] = []
    borders: dict[str, str] = {}
    site_index: dict[str, int] = {}
    for i, site in enumerate(spec.sites, start=1):
        site_index[site.name] = i
        sws = _site_switches(site, i)
        switches += sws
        borders[site.name] = border_switch(sws)
        access = [s.name for s in sws if s.tier in ("edge", "leaf")]
        fabric += [(leaf.name, spine.name) for leaf in sws if leaf.tier == "leaf"
                   for spine in sws if spine.tier == "spine"]
        placed = 0
        for role, code, names in (("hypervisor", ROLE_HYPERVISOR, site.hypervisors),
                                  ("client", ROLE_CLIENT, site.clients)):
            for n, name in enumerate(names, start=1):
                ip, mac = address(i, code, n)
                hosts.append(HostPlan(name, site.name, role, ip, mac,
                                      access[placed % len(access)]))
                placed += 1
    wan = tuple(WanPlan(k, w.a, w.b, borders[w.a], borders[w.b], relay_name(k))
                for k, w in enumerate(spec.wan, start=1))
    return NetworkPlan(tuple(hosts), tuple(switches), tuple(fabric), wan, site_index)


def wan_path(spec: TopologySpec, a: str, b: str) -> list[int]:
    """The WAN links (1-based indices, in order from ``a``) of the path from site ``a`` to
    site ``b`` with the smallest sum of RTTs; empty when ``a`` is ``b``."""
    best: dict[str, float] = {a: 0.0}
    via: dict[str, tuple[str, int]] = {}
    frontier = [a]
    while frontier:
        site = min(frontier, key=best.__getitem__)
        frontier.remove(site)
        for k, w in enumerate(spec.wan, start=1):
            if site in (w.a, w.b):
                other = w.b if site == w.a else w.a
                cost = best[site] + w.rtt_ms
                if cost < best.get(other, float("inf")):
                    best[other] = cost
                    via[other] = (site, k)
                    frontier.append(other)
    if b not in best:
        raise ValueError(f"no WAN path from {a} to {b}")
    path: list[int] = []
    site = b
    while site != a:
        site, k = via[site]
        path.append(k)
    return path[::-1]


def wan_rtt_between(spec: TopologySpec, a: str, b: str) -> float:
    """The smallest sum of WAN RTTs on a path of WAN links from site ``a`` to site ``b``."""
    return sum(spec.wan[k - 1].rtt_ms for k in wan_path(spec, a, b))


def control_rtts(spec: TopologySpec) -> dict[str, float]:
    """Control-channel RTT of each site's switches: none at the controller's own site (or with
    the controller 'local'), else ``control_rtt_ms`` or the WAN RTT to the controller's site."""
    ctl = spec.controller
    out = {}
    for site in spec.sites:
        if ctl.site in ("local", site.name):
            out[site.name] = 0.0
        elif ctl.control_rtt_ms is not None:
            out[site.name] = ctl.control_rtt_ms
        else:
            out[site.name] = wan_rtt_between(spec, site.name, ctl.site)
    return out
