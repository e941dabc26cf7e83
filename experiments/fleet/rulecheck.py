"""The placement rules checked: are they well formed (known VMs and hosts), and which of them a
VM would break on a host, each said in a sentence a decision record can carry.

anti-affinity: no two of its VMs on one host. affinity: all its VMs on one host; a member moved
alone breaks it unless every other member already runs on the destination, so affinity groups
move only toward their partners. vm-host: its VMs only on ``rule.hosts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from experiments.fleet.types import RULE_KINDS, HostInfo, Rule, VmInfo
from ground.config import ConfigError


def label(rule: Rule, index: int) -> str:
    """How a sentence names the rule: its name quoted, else its index (``#2``)."""
    return f"'{rule.name}'" if rule.name else f"#{index}"


def validate_rules(rules: Sequence[Rule], vms: Mapping[str, VmInfo],
                   hosts: Mapping[str, HostInfo]) -> None:
    """Raise ConfigError (path ``drs.rules[i].kind|vms|hosts``) for a rule of an unknown kind,
    naming no or unknown VMs, or (vm-host) no or unknown hosts; hosts on another kind too."""
    for i, rule in enumerate(rules):
        path = f"drs.rules[{i}]"
        if rule.kind not in RULE_KINDS:
            raise ConfigError(f"{path}.kind", rule.kind, f"one of {', '.join(RULE_KINDS)}")
        unknown = [name for name in rule.vms if name not in vms]
        if not rule.vms or unknown:
            raise ConfigError(f"{path}.vms", list(rule.vms),
                              "a non-empty list of known VMs"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        if rule.kind != "vm-host":
            if rule.hosts:
                raise ConfigError(f"{path}.hosts", list(rule.hosts),
                                  f"no hosts on a {rule.kind} rule (only vm-host names hosts)")
            continue
        unknown = [name for name in rule.hosts if name not in hosts]
        if not rule.hosts or unknown:
            raise ConfigError(f"{path}.hosts", list(rule.hosts),
                              "a non-empty list of known hosts"
                              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))


def rules_of(rules: Sequence[Rule]) -> dict[str, list[int]]:
    """Each VM's rules, by index."""
    out: dict[str, list[int]] = {}
    for i, rule in enumerate(rules):
        for name in dict.fromkeys(rule.vms):
            out.setdefault(name, []).append(i)
    return out


def broken(rules: Sequence[Rule], indices: Sequence[int], vm: str, host: str,
           where: Mapping[str, str]) -> list[str]:
    """The sentences of the rules (``indices`` into ``rules``) that ``vm`` on ``host`` would
    break, the other VMs staying where ``where`` says; empty when it breaks none."""
    out: list[str] = []
    for i in indices:
        rule = rules[i]
        others = [name for name in dict.fromkeys(rule.vms) if name != vm]
        if rule.kind == "anti-affinity":
            near = [name for name in others if where[name] == host]
            if near:
                out.append(f"anti-affinity rule {label(rule, i)} with {', '.join(near)} on it")
        elif rule.kind == "affinity":
            away = [name for name in others if where[name] != host]
            if away:
                out.append(f"affinity rule {label(rule, i)}: {away[0]} runs on {where[away[0]]}")
        elif host not in rule.hosts:
            out.append(f"vm-host rule {label(rule, i)} allows only {', '.join(rule.hosts)}")
    return out
