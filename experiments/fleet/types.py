"""The fleet's pure data: hypervisors with a capacity, VMs with a demand, rules, the predicted
cost of one move and a move itself. Nothing here does I/O; placement, scheduling and the fleet
model all speak these types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HOST_STATES = ("normal", "maintenance", "degraded")
RULE_KINDS = ("affinity", "anti-affinity", "vm-host")
REASONS = ("scheduled", "evacuate", "rebalance", "degraded")


@dataclass(frozen=True)
class HostInfo:
    """A hypervisor: where it is and what it can hold."""

    name: str
    site: str
    memory_bytes: int             # capacity for the VMs' memory
    cpu: float                    # capacity in CPU shares (1.0 = one core's worth)
    state: str = "normal"         # normal | maintenance (must empty) | degraded (should empty)


@dataclass(frozen=True)
class VmInfo:
    """A VM as placement sees it: its size, its demand and how fast it dirties memory."""

    name: str
    host: str                     # where it runs now
    memory_bytes: int
    cpu: float                    # CPU shares it demands
    dirty_rate_Bps: float = 0.0   # noqa: N815 - unit suffix; the workload's page-write rate


@dataclass(frozen=True)
class Rule:
    """affinity: the VMs on one host; anti-affinity: on pairwise different hosts; vm-host: the
    VMs only on ``hosts``. A placement never breaks a rule; a rule no host can satisfy makes
    that VM stay (and the decision says so)."""

    kind: str
    vms: tuple[str, ...]
    hosts: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class MoveCost:
    """The single-migration model's prediction for one VM from one host to another."""

    time_s: float
    downtime_s: float
    bytes_on_wire: float


# (vm, from host, to host) -> predicted cost; supplied by the caller (the model on measured links)
CostFn = Callable[[VmInfo, str, str], MoveCost]


@dataclass(frozen=True)
class Move:
    """A migration decided on: which VM, from where, to where, why, at what predicted cost."""

    vm: str
    source: str
    destination: str
    reason: str                   # one of REASONS
    cost: MoveCost
    memory_bytes: int = 0         # the VM's, for ordering policies
    dirty_rate_Bps: float = 0.0   # noqa: N815
    seq: int = 0                  # the order it was queued in (as scheduled)
