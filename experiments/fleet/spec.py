"""A fleet experiment's keys: many VMs, the hypervisors' capacities, DRS, execution and events.

An experiment with ``vms:`` is a fleet experiment; ``vm:`` then gives every VM's defaults::

    vm: {memory: 256MiB, workload: web}       # the defaults of every entry of vms
    vms:                                      # each: name, host, cpu, and any vm key
      - {name: web1, host: dc1h1}
      - {name: db1, host: dc1h2, memory: 512MiB, workload: database, cpu: 2,
         policy: {downtime_target_ms: 500}}    # over the experiment's policy, for this VM
    hosts:                                    # capacities; default: 4 GiB and 4 CPU shares
      default: {memory: 4GiB, cpu: 4}
      dc1h1: {memory: 1GiB}
    drs:
      threshold: 3             # 1 (mandatory moves only) to 5 (aggressive), as DRS's slider
      cost_weight: 0.01        # imbalance units one predicted second of migration costs
      rules:                   # never broken by a placement
        - {kind: anti-affinity, vms: [web1, web2], name: spread-web}
        - {kind: affinity, vms: [app1, db1]}
        - {kind: vm-host, vms: [db1], hosts: [dc1h2, dc2h2]}
    execution:
      max_concurrent: null     # migrations at once, overall (default: no overall limit)
      per_host: null           # involving one host (default: the vCenter anchors, 4 per host
      per_link: null           # below 10 Gbit/s, 8 from 10 Gbit/s, by the WAN's rate)
      order: scheduled         # scheduled | smallest-memory | lowest-dirty-rate | largest-cost
      duration_s: null         # how long events may fire (required with an every: event)
    events:                    # seconds after the warm-up
      - {at: 0, action: migrate, vm: web1, to: dc2h1}   # to: a hypervisor or auto
      - {at: 0, action: evacuate, host: dc1h1}           # maintenance mode: every VM leaves
      - {at: 30, action: degrade, host: dc1h2}           # preventive evacuation
      - {every: 60, action: rebalance}                   # when imbalance exceeds the target

``placement:`` and ``faults:`` belong to the one-VM experiment and are refused here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from experiments.fleet.scheduler import ORDERS
from experiments.fleet.types import RULE_KINDS, HostInfo, Rule
from ground.config import ConfigError, Section, join
from ground.units import parse_size
from migrator.core.policy import MigrationPolicy, parse_policy

FLEET_KEYS = ("vms", "hosts", "drs", "execution", "events")
VM_KEYS = ("kind", "vcpus", "memory", "workload", "seed", "disk")
ACTIONS = ("migrate", "evacuate", "degrade", "rebalance")
VM_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,7}")     # a Mininet host and an image name
MAX_VMS = 16
DEFAULT_HOST_MEMORY = 4 * 1024 ** 3
DEFAULT_HOST_CPU = 4.0
MAX_DURATION_S = 24 * 3600.0


@dataclass(frozen=True)
class FleetVm:
    name: str
    host: str                    # where it starts
    site: str
    cpu: float                   # CPU shares it demands (placement's load)
    vm: Any                      # experiments.spec.VmSpec
    policy: MigrationPolicy      # the experiment's, with this VM's own keys over it


@dataclass(frozen=True)
class Event:
    action: str                  # one of ACTIONS
    at_s: float | None = None    # once, this long after the warm-up
    every_s: float | None = None  # or periodically, from every_s on
    vm: str | None = None        # migrate
    to: str | None = None        # migrate: a hypervisor, or "auto"
    host: str | None = None      # evacuate, degrade


@dataclass(frozen=True)
class DrsSpec:
    threshold: int = 3
    cost_weight: float = 0.01
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class ExecutionSpec:
    max_concurrent: int | None = None
    per_host: int | None = None
    per_link: int | None = None
    order: str = "scheduled"
    duration_s: float | None = None


@dataclass(frozen=True)
class FleetSpec:
    vms: tuple[FleetVm, ...]
    hosts: dict[str, HostInfo]
    drs: DrsSpec
    execution: ExecutionSpec
    events: tuple[Event, ...]

    def vm(self, name: str) -> FleetVm:
        return next(v for v in self.vms if v.name == name)


def _hosts(data: Any, site_of: dict[str, str]) -> dict[str, HostInfo]:
    sec = Section(data, "hosts", ("default", *site_of))

    def capacity(raw: Any, path: str, default: tuple[int, float]) -> tuple[int, float]:
        s = Section(raw, path, ("memory", "cpu"))
        mem = default[0]
        if s.has("memory"):
            mem = parse_size(s.raw("memory"), s.where("memory"), "a size such as '4GiB'")
            if mem < 1024 ** 2:
                raise ConfigError(s.where("memory"), s.raw("memory"), "a size of at least 1MiB")
        return mem, s.number("cpu", default[1], above=0.0, maximum=1024.0)

    default = capacity(sec.raw("default"), "hosts.default",
                       (DEFAULT_HOST_MEMORY, DEFAULT_HOST_CPU))
    out = {}
    for host, site in site_of.items():
        mem, cpu = capacity(sec.raw(host), sec.where(host), default)
        out[host] = HostInfo(name=host, site=site, memory_bytes=mem, cpu=cpu)
    return out


def _vms(data: Any, defaults: Any, site_of: dict[str, str], taken: set[str], seed: int,
         parse_vm: Callable[[Any, str, int], Any], policy: Any) -> tuple[FleetVm, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError("vms", data, f"a list of 1 to {MAX_VMS} VMs (name, host, ...)")
    if len(data) > MAX_VMS:
        raise ConfigError("vms", len(data), f"at most {MAX_VMS} VMs")
    base = Section(defaults, "vm", VM_KEYS).data
    out: list[FleetVm] = []
    for i, raw in enumerate(data):
        path = join("vms", i)
        sec = Section(raw, path, ("name", "host", "cpu", "policy", *VM_KEYS))
        name = sec.string("name")
        if not VM_NAME_RE.fullmatch(name) or name in taken:
            raise ConfigError(sec.where("name"), name,
                              "a name of 1 to 8 characters (a lowercase letter, then lowercase "
                              "letters or digits) that no other VM or host of the topology has")
        taken.add(name)
        host = sec.string("host")
        if host not in site_of:
            raise ConfigError(sec.where("host"), host,
                              f"a hypervisor of the topology: {', '.join(site_of)}")
        merged = {**base, **{k: v for k, v in sec.data.items() if k in VM_KEYS}}
        merged.setdefault("seed", seed + i)
        vm = parse_vm(merged, path, seed + i)
        if vm.kind != "emulated":
            raise ConfigError(join(path, "kind"), vm.kind, "emulated (a fleet runs emulated VMs)")
        if vm.disk is not None:
            raise ConfigError(join(path, "disk"), "a disk", "no disk for a fleet's VMs yet (the "
                              "one-VM experiment migrates disks)")
        own = sec.raw("policy", {})
        if not isinstance(own, dict):
            raise ConfigError(sec.where("policy"), own, "a mapping of policy keys")
        base_policy = policy if isinstance(policy, dict) else {}
        out.append(FleetVm(name=name, host=host, site=site_of[host],
                           cpu=sec.number("cpu", 1.0, above=0.0, maximum=1024.0), vm=vm,
                           policy=parse_policy({**base_policy, **own}, sec.where("policy"))))
    return tuple(out)


def _rules(data: Any, vms: set[str], hosts: set[str]) -> tuple[Rule, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError("drs.rules", data, "a list of rules")
    out = []
    for i, raw in enumerate(data):
        sec = Section(raw, join("drs.rules", i), ("kind", "vms", "hosts", "name"))
        kind = sec.string("kind", choices=RULE_KINDS)
        members = sec.sequence("vms")
        if len(members) < (1 if kind == "vm-host" else 2) or any(v not in vms for v in members):
            raise ConfigError(sec.where("vms"), members,
                              f"{'one or more' if kind == 'vm-host' else 'two or more'} VMs of "
                              f"vms: {', '.join(sorted(vms))}")
        on = sec.sequence("hosts", [])
        if (kind == "vm-host") != bool(on) or any(h not in hosts for h in on):
            raise ConfigError(sec.where("hosts"), on or None,
                              "hypervisors of the topology for a vm-host rule (and only for one)")
        out.append(Rule(kind=kind, vms=tuple(members), hosts=tuple(on),
                        name=sec.string("name", f"rule{i + 1}")))
    return tuple(out)


def _execution(data: Any) -> ExecutionSpec:
    sec = Section(data, "execution", ("max_concurrent", "per_host", "per_link", "order",
                                      "duration_s"))

    def limit(key: str) -> int | None:
        return sec.number(key, minimum=1, maximum=64, integer=True, optional=True)

    return ExecutionSpec(max_concurrent=limit("max_concurrent"), per_host=limit("per_host"),
                         per_link=limit("per_link"), order=sec.string("order", "scheduled",
                                                                      ORDERS),
                         duration_s=sec.number("duration_s", above=0.0,
                                               maximum=MAX_DURATION_S, optional=True))


def _events(data: Any, fleet_vms: set[str], hosts: set[str],
            duration_s: float | None) -> tuple[Event, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError("events", data, "a list of events")
    out = []
    for i, raw in enumerate(data):
        sec = Section(raw, join("events", i), ("at", "every", "action", "vm", "to", "host"))
        action = sec.string("action", choices=ACTIONS)
        if sec.has("at") == sec.has("every"):
            raise ConfigError(join("events", i), raw, "one of at: (seconds after the warm-up) "
                                                      "or every: (a period in seconds)")
        at = sec.number("at", minimum=0.0, maximum=MAX_DURATION_S, optional=True)
        every = sec.number("every", minimum=1.0, maximum=MAX_DURATION_S, optional=True)
        if every is not None and duration_s is None:
            raise ConfigError("execution.duration_s", None, "seconds (an every: event needs "
                                                           "the fleet's duration)")
        wanted = {"migrate": ("vm", "to"), "evacuate": ("host",), "degrade": ("host",),
                  "rebalance": ()}[action]
        for key in ("vm", "to", "host"):
            if sec.has(key) != (key in wanted):
                raise ConfigError(sec.where(key), sec.raw(key),
                                  f"{'a value' if key in wanted else 'nothing'} for action "
                                  f"{action} (it takes {', '.join(wanted) or 'no target'})")
        vm, to, host = sec.raw("vm"), sec.raw("to"), sec.raw("host")
        if vm is not None and vm not in fleet_vms:
            raise ConfigError(sec.where("vm"), vm, f"a VM of vms: {', '.join(sorted(fleet_vms))}")
        if to is not None and to != "auto" and to not in hosts:
            raise ConfigError(sec.where("to"), to, f"auto or a hypervisor: {', '.join(hosts)}")
        if host is not None and host not in hosts:
            raise ConfigError(sec.where("host"), host, f"a hypervisor: {', '.join(hosts)}")
        out.append(Event(action=action, at_s=at, every_s=every, vm=vm, to=to, host=host))
    return tuple(out)


def parse_fleet(data: dict, topo: Any, seed: int,
                parse_vm: Callable[[Any, str, int], Any]) -> FleetSpec | None:
    """The fleet of an experiment mapping (None without ``vms:``); ``parse_vm`` parses one VM's
    ``vm`` keys (``experiments.spec``), so a fleet VM takes every key a one-VM run does."""
    if data.get("vms") is None:
        for key in ("hosts", "drs", "execution", "events"):
            if data.get(key) is not None:
                raise ConfigError(key, data[key], "nothing without vms: (a fleet's key)")
        return None
    for key in ("placement", "faults"):
        if data.get(key):
            raise ConfigError(key, data[key], "nothing in a fleet experiment (vms: name each "
                              "VM's host, events: where they go; faults need one VM)")
    site_of = {h: s.name for s in topo.sites for h in s.hypervisors}
    taken = {h for s in topo.sites for h in (*s.hypervisors, *s.clients)}
    vms = _vms(data["vms"], data.get("vm"), site_of, taken, seed, parse_vm, data.get("policy"))
    hosts = _hosts(data.get("hosts"), site_of)
    dsec = Section(data.get("drs"), "drs", ("threshold", "cost_weight", "rules"))
    names = {v.name for v in vms}
    drs = DrsSpec(threshold=dsec.number("threshold", 3, minimum=1, maximum=5, integer=True),
                  cost_weight=dsec.number("cost_weight", 0.01, minimum=0.0, maximum=100.0),
                  rules=_rules(dsec.raw("rules"), names, set(site_of)))
    execution = _execution(data.get("execution"))
    events = _events(data.get("events"), names, set(site_of), execution.duration_s)
    return FleetSpec(vms=vms, hosts=hosts, drs=drs, execution=execution, events=events)


def fleet_dict(fleet: FleetSpec, vm_dict: Callable[[Any], dict]) -> dict:
    """The fleet's keys, every default explicit (``parse_fleet`` of it gives ``fleet`` back);
    ``vm_dict`` writes one VM's keys (``experiments.spec``)."""
    def event(e: Event) -> dict:
        timing = {"at": e.at_s} if e.at_s is not None else {"every": e.every_s}
        target = {k: getattr(e, k) for k in ("vm", "to", "host") if getattr(e, k) is not None}
        return {**timing, "action": e.action, **target}

    return {
        "vms": [{"name": v.name, "host": v.host, "cpu": v.cpu, **vm_dict(v.vm),
                 "policy": dataclasses.asdict(v.policy)} for v in fleet.vms],
        "hosts": {h.name: {"memory": h.memory_bytes, "cpu": h.cpu}
                  for h in fleet.hosts.values()},
        "drs": {"threshold": fleet.drs.threshold, "cost_weight": fleet.drs.cost_weight,
                "rules": [{"kind": r.kind, "vms": list(r.vms), "name": r.name,
                           **({"hosts": list(r.hosts)} if r.hosts else {})}
                          for r in fleet.drs.rules]},
        "execution": {"max_concurrent": fleet.execution.max_concurrent,
                      "per_host": fleet.execution.per_host,
                      "per_link": fleet.execution.per_link, "order": fleet.execution.order,
                      "duration_s": fleet.execution.duration_s},
        "events": [event(e) for e in fleet.events],
    }
