"""The figures a DRS-like placement balances: each host's load, the fleet's imbalance, and the
imbalance tolerated at a migration threshold level, after vSphere 5's DRS (VMware KB 1007485).

A host's load is its busier resource: max(memory used / capacity, cpu used / capacity). The
imbalance is the population standard deviation of the loads of the hosts in state "normal"; hosts
in maintenance or degraded are leaving the fleet, so they are neither counted nor destinations.

KB 1007485 gives a load-balancing recommendation the priority ``6 - ceil(I / 0.1 * sqrt(N))``
(I the imbalance, N the hosts) and applies it when that priority is at most the threshold level.
Solving for I: a recommendation is applied while ``I > (5 - level) * 0.1 / sqrt(N)``, the target
``target_imbalance`` returns. Level 1 applies only mandatory moves (maintenance, rules), so it
has no load-balancing target (None); level 5 tolerates no imbalance at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from experiments.fleet.types import HostInfo, VmInfo
from ground.config import ConfigError

LEVELS = (1, 2, 3, 4, 5)
NORMAL = "normal"


def load_of(host: HostInfo, memory_bytes: float, cpu: float) -> float:
    """The load of ``host`` holding ``memory_bytes`` and ``cpu`` shares: the busier resource's
    used fraction (a resource of zero capacity counts as full when anything uses it)."""
    return max(_fraction(memory_bytes, host.memory_bytes), _fraction(cpu, host.cpu))


def _fraction(used: float, capacity: float) -> float:
    if capacity > 0:
        return used / capacity
    return math.inf if used > 0 else 0.0


def host_load(host: HostInfo, vms: Iterable[VmInfo]) -> float:
    """The load of ``host`` holding ``vms`` (the VMs given, taken to be on the host)."""
    memory = 0
    cpu = 0.0
    for vm in vms:
        memory += vm.memory_bytes
        cpu += vm.cpu
    return load_of(host, memory, cpu)


def loads(hosts: Mapping[str, HostInfo], vms: Iterable[VmInfo]) -> dict[str, float]:
    """The load of every host (whatever its state), each from the VMs whose ``host`` it is."""
    on: dict[str, list[VmInfo]] = {name: [] for name in hosts}
    for vm in vms:
        if vm.host in on:
            on[vm.host].append(vm)
    return {name: host_load(host, on[name]) for name, host in hosts.items()}


def spread(hosts: Mapping[str, HostInfo], host_loads: Mapping[str, float]) -> float:
    """The population standard deviation of ``host_loads`` over the hosts in state normal;
    0.0 with fewer than two of them."""
    values = [host_loads[name] for name, host in hosts.items() if host.state == NORMAL]
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def imbalance(hosts: Mapping[str, HostInfo], vms: Iterable[VmInfo]) -> float:
    """The fleet's imbalance: the standard deviation of the normal hosts' loads."""
    return spread(hosts, loads(hosts, vms))


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
        raise ConfigError("drs.threshold", level, "an integer level 1..5")


def target_imbalance(level: int, n_hosts: int) -> float | None:
    """The imbalance tolerated at threshold ``level`` among ``n_hosts`` normal hosts:
    ``(5 - level) * 0.1 / sqrt(N)`` for levels 2..5 (level 5: 0, any improvement is made);
    None for level 1 (mandatory moves only, no load balancing)."""
    _check_level(level)
    if level == 1:
        return None
    return (5 - level) * 0.1 / math.sqrt(max(n_hosts, 1))


def priority(imbalance: float, n_hosts: int) -> int:
    """KB 1007485's priority of a load-balancing recommendation at imbalance I among N hosts:
    ``6 - ceil(I * 10 * sqrt(N))`` (that is ``6 - ceil(I / 0.1 * sqrt(N))``), clamped to 1..5;
    1 is the most urgent. It is applied when it is at most the threshold level."""
    # rounding first keeps I exactly on a boundary (0.05 * 10 * 2) from ceiling to the next one
    scaled = round(imbalance * 10 * math.sqrt(max(n_hosts, 1)), 9)
    return min(5, max(1, 6 - math.ceil(scaled)))
