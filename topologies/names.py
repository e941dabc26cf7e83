"""The names the plan gives switches and WAN relay nodes (hosts are named in the spec), here so
that the spec can check, before anything is planned, that no two nodes will share a name.

All names fit Linux's 15-character interface names once suffixed with ``-ethN``:
- switches: ``<site>s1`` for an edge fabric; ``<site>l<i>`` leaves and ``<site>p<i>`` spines;
- WAN relay node of the k-th WAN link: ``wl<k>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TIER_LETTER = {"edge": "s", "leaf": "l", "spine": "p"}


def switch_name(site: str, tier: str, i: int) -> str:
    return f"{site}{TIER_LETTER[tier]}{i}"


def relay_name(k: int) -> str:
    """The node of the k-th (1-based) WAN link."""
    return f"wl{k}"


def switch_names(site: Any) -> list[str]:
    """Every switch of a site (a ``SiteSpec``: its name and its fabric's kind, leaves, spines)."""
    if site.fabric.kind == "edge":
        return [switch_name(site.name, "edge", 1)]
    return ([switch_name(site.name, "leaf", i) for i in range(1, site.fabric.leaves + 1)]
            + [switch_name(site.name, "spine", i) for i in range(1, site.fabric.spines + 1)])


def node_names(sites: Iterable[Any], wan_links: int) -> list[str]:
    """Every node name a network of these sites and WAN links has, duplicates included."""
    out: list[str] = []
    for site in sites:
        out += [*site.hypervisors, *site.clients, *switch_names(site)]
    return out + [relay_name(k) for k in range(1, wan_links + 1)]
