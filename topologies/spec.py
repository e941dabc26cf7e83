"""The topology spec: sites, WAN links and the controller's place, read from YAML and frozen.

Example (every key shown has its default; an empty file gives exactly this network)::

    name: two-sites
    sites:
      - name: dc1
        hypervisors: 1        # a count (names dc1h1, dc1h2, ...) or a list of names
        clients: 1            # likewise: dc1c1, ...
        fabric: {kind: edge}  # or {kind: leaf-spine, leaves: 2, spines: 2}
      - name: dc2
    wan:
      - between: [dc1, dc2]
        rtt_ms: 150           # round trip between the sites, split into two one-way delays
        bw_mbps: 250          # per direction; null: unshaped (whatever the emulator carries)
        loss_pct: 0           # round-trip loss, as ping sees it
        jitter_ms: 0          # standard deviation of the RTT
        queue_pkts: null      # bottleneck queue; default: one bandwidth-delay product
        mtu: 1500             # every interface of the network gets this MTU
    controller:
      site: dc1               # a site name, or local
      control_rtt_ms: null    # control channel RTT of remote switches; default: the WAN RTT
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground.config import ConfigError, Section, check_name, join
from ground.yamlfile import read_yaml
from topologies.names import node_names

SITE_NAME_MAX = 6   # leaves room for generated node names such as dc1h12
NODE_NAME_MAX = 9   # 'name-eth12' must fit in 15 characters (IFNAMSIZ - 1)
MAX_RTT_MS = 2000.0
MAX_BW_MBPS = 100_000.0
MAX_LOSS_PCT = 50.0
MIN_MTU, MAX_MTU = 576, 9000
MAX_HOSTS_PER_SITE = 20
MAX_SITES = 16         # the site index is one octet of host addresses; 16 is plenty
MAX_FABRIC_SWITCHES = 8
MIN_QUEUE_PKTS = 100   # never starve a low-BDP link of buffering


@dataclass(frozen=True)
class FabricSpec:
    kind: str            # 'edge' (one switch) or 'leaf-spine'
    leaves: int = 1
    spines: int = 0


@dataclass(frozen=True)
class SiteSpec:
    name: str
    hypervisors: tuple[str, ...]
    clients: tuple[str, ...]
    fabric: FabricSpec


@dataclass(frozen=True)
class WanLinkSpec:
    a: str
    b: str
    rtt_ms: float
    bw_mbps: float | None
    loss_pct: float
    jitter_ms: float
    queue_pkts: int
    mtu: int

    @property
    def bdp_bytes(self) -> float:
        """Bandwidth-delay product of the link (0 when it is unshaped)."""
        if self.bw_mbps is None:
            return 0.0
        return self.bw_mbps * 1e6 / 8 * self.rtt_ms / 1e3


@dataclass(frozen=True)
class ControllerSpec:
    site: str                     # a site name, or 'local'
    control_rtt_ms: float | None  # None: the WAN RTT between the controller and the switch


@dataclass(frozen=True)
class TopologySpec:
    name: str
    sites: tuple[SiteSpec, ...]
    wan: tuple[WanLinkSpec, ...]
    controller: ControllerSpec

    @property
    def mtu(self) -> int:
        return self.wan[0].mtu if self.wan else 1500

    def site(self, name: str) -> SiteSpec:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


def default_queue_pkts(rtt_ms: float, bw_mbps: float | None, mtu: int) -> int:
    """One bandwidth-delay product of full-size frames, at least MIN_QUEUE_PKTS."""
    if bw_mbps is None:
        return 1000
    bdp = bw_mbps * 1e6 / 8 * rtt_ms / 1e3
    return max(MIN_QUEUE_PKTS, math.ceil(bdp / (mtu + 14)))


def _host_names(sec: Section, key: str, site: str, letter: str) -> tuple[str, ...]:
    value = sec.raw(key, 1)
    path = sec.where(key)
    if isinstance(value, bool):
        raise ConfigError(path, value, "a count (integer) or a list of host names")
    if isinstance(value, int):
        limit = 0 if key == "clients" else 1
        if not limit <= value <= MAX_HOSTS_PER_SITE:
            raise ConfigError(path, value, f"a count from {limit} to {MAX_HOSTS_PER_SITE}")
        return tuple(f"{site}{letter}{i}" for i in range(1, value + 1))
    if isinstance(value, list):
        if key == "hypervisors" and not value:
            raise ConfigError(path, value, "at least one hypervisor")
        if len(value) > MAX_HOSTS_PER_SITE:
            raise ConfigError(path, value, f"at most {MAX_HOSTS_PER_SITE} names")
        return tuple(check_name(join(path, i), v, NODE_NAME_MAX) for i, v in enumerate(value))
    raise ConfigError(path, value, "a count (integer) or a list of host names")


def _fabric(data: Any, path: str) -> FabricSpec:
    sec = Section(data, path, ("kind", "leaves", "spines"))
    kind = sec.string("kind", "edge", choices=("edge", "leaf-spine"))
    if kind == "edge":
        if sec.has("leaves") or sec.has("spines"):
            key = "leaves" if sec.has("leaves") else "spines"
            raise ConfigError(sec.where(key), sec.data[key],
                              "no leaves or spines with kind edge (use kind: leaf-spine)")
        return FabricSpec("edge", 1, 0)
    leaves = sec.number("leaves", 2, minimum=1, maximum=MAX_FABRIC_SWITCHES, integer=True)
    spines = sec.number("spines", 2, minimum=1, maximum=MAX_FABRIC_SWITCHES, integer=True)
    return FabricSpec("leaf-spine", leaves, spines)


def _site(data: Any, path: str, index: int) -> SiteSpec:
    sec = Section(data, path, ("name", "hypervisors", "clients", "fabric"))
    name = check_name(sec.where("name"), sec.raw("name", f"dc{index + 1}"), SITE_NAME_MAX)
    return SiteSpec(name=name,
                    hypervisors=_host_names(sec, "hypervisors", name, "h"),
                    clients=_host_names(sec, "clients", name, "c"),
                    fabric=_fabric(sec.data.get("fabric"), sec.where("fabric")))


def _wan_link(data: Any, path: str, site_names: list[str]) -> WanLinkSpec:
    sec = Section(data, path, ("between", "rtt_ms", "bw_mbps", "loss_pct", "jitter_ms",
                               "queue_pkts", "mtu"))
    default_between = site_names[:2] if len(site_names) == 2 else None
    between = sec.data.get("between", default_between)
    bpath = sec.where("between")
    if (not isinstance(between, list) or len(between) != 2
            or not all(isinstance(s, str) for s in between)):
        raise ConfigError(bpath, between, "a list of two site names")
    for i, site in enumerate(between):
        if site not in site_names:
            raise ConfigError(join(bpath, i), site, f"a site defined under sites: "
                                                    f"{', '.join(site_names)}")
    if between[0] == between[1]:
        raise ConfigError(bpath, between, "two different sites")
    rtt = sec.number("rtt_ms", 150.0, minimum=0, maximum=MAX_RTT_MS)
    bw = sec.number("bw_mbps", 250.0, above=0, maximum=MAX_BW_MBPS) \
        if "bw_mbps" not in sec.data or sec.data["bw_mbps"] is not None else None
    if bw is not None and bw < 0.1:
        raise ConfigError(sec.where("bw_mbps"), bw, "at least 0.1 Mbit/s (tc htb's granularity)")
    loss = sec.number("loss_pct", 0.0, minimum=0, maximum=MAX_LOSS_PCT)
    jitter = sec.number("jitter_ms", 0.0, minimum=0)
    if jitter > rtt / 2:
        raise ConfigError(sec.where("jitter_ms"), jitter,
                          f"at most half of rtt_ms ({rtt / 2:g}); delays cannot go below zero")
    mtu = sec.number("mtu", 1500, minimum=MIN_MTU, maximum=MAX_MTU, integer=True)
    queue = sec.number("queue_pkts", default_queue_pkts(rtt, bw, mtu), minimum=1,
                       maximum=1_000_000, integer=True)
    return WanLinkSpec(a=between[0], b=between[1], rtt_ms=rtt, bw_mbps=bw, loss_pct=loss,
                       jitter_ms=jitter, queue_pkts=queue, mtu=mtu)


def _controller(data: Any, path: str, site_names: list[str]) -> ControllerSpec:
    sec = Section(data, path, ("site", "control_rtt_ms"))
    site = sec.string("site", site_names[0])
    if site != "local" and site not in site_names:
        raise ConfigError(sec.where("site"), site,
                          f"'local' or a site name: {', '.join(site_names)}")
    rtt = sec.number("control_rtt_ms", optional=True, minimum=0, maximum=MAX_RTT_MS)
    return ControllerSpec(site=site, control_rtt_ms=rtt)


def parse_topology(data: Any, path: str = "") -> TopologySpec:
    """Validate a topology mapping (as loaded from YAML) and freeze it."""
    top = Section(data, path, ("name", "sites", "wan", "controller"))
    name = top.string("name", "two-sites")
    if not name or any(c in name for c in "/\0\n"):
        raise ConfigError(top.where("name"), name, "a non-empty name without '/' or newlines")
    raw_sites = top.sequence("sites", [{"name": "dc1"}, {"name": "dc2"}])
    if not 2 <= len(raw_sites) <= MAX_SITES:
        raise ConfigError(top.where("sites"), raw_sites, f"from 2 to {MAX_SITES} sites")
    sites = tuple(_site(s, join(top.where("sites"), i), i) for i, s in enumerate(raw_sites))
    site_names = [s.name for s in sites]
    _check_unique(top.where("sites"), site_names, "site names")

    raw_wan = top.sequence("wan", [{}] if len(sites) == 2 else None)
    if not raw_wan:
        raise ConfigError(top.where("wan"), raw_wan, "at least one WAN link between sites")
    wan = tuple(_wan_link(w, join(top.where("wan"), i), site_names) for i, w in enumerate(raw_wan))
    pairs = [frozenset((w.a, w.b)) for w in wan]
    _check_unique(top.where("wan"), ["-".join(sorted(p)) for p in pairs], "site pairs")
    if len({w.mtu for w in wan}) > 1:
        raise ConfigError(top.where("wan"), [w.mtu for w in wan],
                          "the same mtu on every WAN link (one MTU for the whole network)")
    _check_connected(top.where("wan"), site_names, pairs)

    spec = TopologySpec(name=name, sites=sites, wan=wan,
                        controller=_controller(top.data.get("controller"),
                                               top.where("controller"), site_names))
    # The names the plan will generate must not collide either.
    _check_unique(top.where("sites"), node_names(sites, len(wan)),
                  "node names (hosts, switches, relays)")
    return spec


def _check_unique(path: str, names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(path, name, f"unique {what}; {name!r} appears twice")
        seen.add(name)


def _check_connected(path: str, sites: list[str], pairs: list[frozenset[str]]) -> None:
    reached = {sites[0]}
    changed = True
    while changed:
        changed = False
        for pair in pairs:
            if pair & reached and not pair <= reached:
                reached |= pair
                changed = True
    missing = [s for s in sites if s not in reached]
    if missing:
        raise ConfigError(path, sorted(map(sorted, pairs)),
                          f"WAN links that connect every site; unreachable: {', '.join(missing)}")


def load_topology(source: str | Path | None = None) -> TopologySpec:
    """Read and validate a topology file; None gives the built-in default (two sites)."""
    return parse_topology({} if source is None else read_yaml(source))
