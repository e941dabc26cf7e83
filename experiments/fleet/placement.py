"""Choosing where VMs go, DRS-like, and saying why: every decision is a plain record listing each
candidate host, whether the VM fits there, which rule forbids it, the fleet's imbalance if it
went there and the move's predicted cost, so ``decisions.jsonl`` explains every migration.

A destination is eligible when it is in state normal, the VM fits (memory and cpu within
capacity), it breaks no rule (see ``rulecheck``: affinity groups move only toward their
partners) and the caller did not exclude it. Among eligible hosts the lowest score wins:
``imbalance after + cost_weight * predicted migration time``, so a nearby host beats an equally
balanced remote one, and a much better balanced remote one wins when the weight is small.
``Placement`` keeps its own copy of where each VM runs and applies every move it decides, so a
sequence of decisions (an evacuation, a rebalance) sees the earlier ones.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from experiments.fleet import drs, rulecheck
from experiments.fleet.types import HOST_STATES, CostFn, HostInfo, MoveCost, Rule, VmInfo
from ground.config import ConfigError

log = logging.getLogger(__name__)

MIN_GAIN = 1e-6        # a rebalancing move must lower the imbalance by at least this much
TOLERANCE = 1e-12      # float slack when comparing an imbalance to its target, a use to capacity
DECIMALS = 6


def _sizes(*values: float) -> list[str]:
    """The values in one unit: GiB (one decimal) if any reaches 1 GiB, else MiB."""
    if max(abs(v) for v in values) >= 2 ** 30:
        return [f"{v / 2 ** 30:.1f} GiB" for v in values]
    return [f"{v / 2 ** 20:.0f} MiB" for v in values]


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


class Placement:
    """Destinations for VMs among ``hosts`` under ``rules``, weighed by ``cost`` (the predicted
    migration of a VM from one host to another) at ``cost_weight`` imbalance units per second."""

    def __init__(self, hosts: Mapping[str, HostInfo], vms: Mapping[str, VmInfo],
                 rules: Sequence[Rule], cost: CostFn, cost_weight: float = 0.01) -> None:
        for name, host in hosts.items():
            if not host.memory_bytes > 0 or not host.cpu > 0:
                raise ConfigError(f"hosts.{name}", host, "a positive memory and cpu capacity")
            if host.state not in HOST_STATES:
                raise ConfigError(f"hosts.{name}.state", host.state, f"one of {HOST_STATES}")
        for name, vm in vms.items():
            if vm.host not in hosts:
                raise ConfigError(f"vms.{name}.host", vm.host, "a known host")
        if isinstance(cost_weight, bool) or not cost_weight >= 0:
            raise ConfigError("drs.cost_weight", cost_weight, "a number >= 0")
        rulecheck.validate_rules(rules, vms, hosts)
        self._hosts = dict(hosts)
        self._vms = dict(vms)
        self._rules = tuple(rules)
        self._rules_of = rulecheck.rules_of(self._rules)
        self._cost = cost
        self.cost_weight = float(cost_weight)
        self._used = {name: [0.0, 0.0] for name in hosts}
        for vm in vms.values():
            self._used[vm.host][0] += vm.memory_bytes
            self._used[vm.host][1] += vm.cpu

    # --- state --------------------------------------------------------------------------

    def where(self) -> dict[str, str]:
        """Where every VM runs now (after the moves decided so far)."""
        return {name: vm.host for name, vm in self._vms.items()}

    def loads(self) -> dict[str, float]:
        """Every host's load now."""
        return {name: drs.load_of(host, *self._used[name]) for name, host in self._hosts.items()}

    def imbalance(self) -> float:
        """The fleet's imbalance now (standard deviation of the normal hosts' loads)."""
        return drs.spread(self._hosts, self.loads())

    def set_state(self, host_name: str, state: str) -> None:
        """Put a host in ``state`` (maintenance and degraded hosts are no destinations)."""
        host = self._host(host_name, "host")
        if state not in HOST_STATES:
            raise ConfigError(f"hosts.{host_name}.state", state, f"one of {HOST_STATES}")
        self._hosts[host_name] = replace(host, state=state)

    def _host(self, name: str, path: str) -> HostInfo:
        if name not in self._hosts:
            raise ConfigError(path, name, "a known host")
        return self._hosts[name]

    def _vm(self, name: str) -> VmInfo:
        if name not in self._vms:
            raise ConfigError("vm", name, "a known VM")
        return self._vms[name]

    def _apply(self, vm: VmInfo, destination: str) -> None:
        for host, sign in ((vm.host, -1), (destination, 1)):
            self._used[host][0] += sign * vm.memory_bytes
            self._used[host][1] += sign * vm.cpu
        self._vms[vm.name] = replace(vm, host=destination)
        log.debug("placement: %s %s -> %s", vm.name, vm.host, destination)

    # --- candidates ---------------------------------------------------------------------

    def _why_not(self, vm: VmInfo, host: HostInfo, exclude: Collection[str]) -> tuple[
            bool, bool, list[str]]:
        """(fits, rules_ok, reasons) of ``vm`` on ``host``."""
        reasons = {"maintenance": ["in maintenance"], "degraded": ["degraded"]}.get(host.state, [])
        if host.name in exclude:
            reasons.append("excluded")
        memory, cpu = self._used[host.name]
        fits = True
        if memory + vm.memory_bytes > host.memory_bytes:
            fits = False
            needed, free = _sizes(vm.memory_bytes, host.memory_bytes - memory)
            reasons.append(f"memory: {needed} needed, {free} free")
        if cpu + vm.cpu > host.cpu + TOLERANCE:
            fits = False
            reasons.append(f"cpu: {vm.cpu:.2f} needed, {host.cpu - cpu:.2f} free")
        broken = rulecheck.broken(self._rules, self._rules_of.get(vm.name, []), vm.name,
                                  host.name, self.where())
        return fits, not broken, reasons + broken

    def _row(self, vm: VmInfo, host: HostInfo, exclude: Collection[str],
             costs: dict[tuple[str, str, str], MoveCost] | None = None) -> dict[str, Any]:
        fits, rules_ok, reasons = self._why_not(vm, host, exclude)
        host_loads = self.loads()
        host_loads[vm.host] = drs.load_of(self._hosts[vm.host],
                                          self._used[vm.host][0] - vm.memory_bytes,
                                          self._used[vm.host][1] - vm.cpu)
        host_loads[host.name] = drs.load_of(host, self._used[host.name][0] + vm.memory_bytes,
                                            self._used[host.name][1] + vm.cpu)
        imbalance_after = drs.spread(self._hosts, host_loads)
        row: dict[str, Any] = {
            "host": host.name, "site": host.site, "state": host.state, "fits": fits,
            "rules_ok": rules_ok, "why_not": "; ".join(reasons),
            "load_after": host_loads[host.name], "imbalance_after": imbalance_after,
            "time_s": None, "downtime_s": None, "bytes": None, "score": None}
        if not reasons:
            key = (vm.name, vm.host, host.name)
            cost = costs.get(key) if costs is not None else None
            if cost is None:
                cost = self._cost(vm, vm.host, host.name)
                if costs is not None:
                    costs[key] = cost
            row.update(time_s=cost.time_s, downtime_s=cost.downtime_s,
                       bytes=cost.bytes_on_wire,
                       score=imbalance_after + self.cost_weight * cost.time_s)
        return row

    def _rows(self, vm: VmInfo, exclude: Collection[str],
              costs: dict[tuple[str, str, str], MoveCost] | None = None) -> list[dict[str, Any]]:
        return [self._row(vm, self._hosts[name], exclude, costs)
                for name in sorted(self._hosts) if name != vm.host]

    def candidates(self, vm_name: str, exclude: Collection[str] = ()) -> list[dict[str, Any]]:
        """One row per host other than the VM's own: host, site, state, fits, rules_ok,
        why_not, load_after, imbalance_after and, for eligible hosts only, time_s, downtime_s,
        bytes and score (None otherwise). Eligible: why_not is empty."""
        return _rounded(self._rows(self._vm(vm_name), exclude))

    # --- decisions ----------------------------------------------------------------------

    def _record(self, action: str, reason: str, vm: str | None, source: str | None,
                chosen: str | None, why: str, before: float, target: float | None,
                rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        record = {"action": action, "reason": reason, "vm": vm, "source": source,
                  "chosen": chosen, "why": why, "imbalance_before": before,
                  "imbalance_after": self.imbalance(), "target": target, **extra,
                  "candidates": rows}
        return _rounded(record)

    def _explain(self, row: dict[str, Any], eligible: int, total: int) -> str:
        return (f"{row['host']}: lowest score {row['score']:.4f} (imbalance after "
                f"{row['imbalance_after']:.4f} + {self.cost_weight:g} x {row['time_s']:.1f} s) "
                f"among {eligible} eligible of {total} hosts")

    def choose(self, vm_name: str, reason: str, exclude: Collection[str] = (),
               action: str = "choose") -> dict[str, Any]:
        """Move ``vm_name`` to its best eligible host (lowest score; ties: lower time, then
        name) and return the decision; ``chosen`` is None when no host is eligible."""
        vm = self._vm(vm_name)
        before = self.imbalance()
        rows = self._rows(vm, exclude)
        eligible = [row for row in rows if not row["why_not"]]
        if eligible:
            best = min(eligible, key=lambda r: (r["score"], r["time_s"], r["host"]))
            why = self._explain(best, len(eligible), len(rows))
            self._apply(vm, best["host"])
            return self._record(action, reason, vm_name, vm.host, best["host"], why, before,
                                None, rows)
        why = ("no eligible host: " + "; ".join(f"{r['host']} {r['why_not']}" for r in rows)
               if rows else "no eligible host: no other host")
        log.info("placement: %s stays on %s, %s", vm_name, vm.host, why)
        return self._record(action, reason, vm_name, vm.host, None, why, before, None, rows)

    def to_named(self, vm_name: str, host: str, reason: str) -> dict[str, Any]:
        """Move ``vm_name`` to the named ``host`` if it is eligible; a host that is not (down,
        too full, against a rule) is refused, not forced: ``chosen`` None and why_not."""
        vm = self._vm(vm_name)
        destination = self._host(host, "destination")
        before = self.imbalance()
        if host == vm.host:
            return self._record("named", reason, vm_name, vm.host, None,
                                f"already runs on {host}", before, None, [])
        row = self._row(vm, destination, ())
        if row["why_not"]:
            return self._record("named", reason, vm_name, vm.host, None,
                                f"named destination {host} refused: {row['why_not']}", before,
                                None, [row])
        self._apply(vm, host)
        return self._record("named", reason, vm_name, vm.host, host,
                            f"named destination {host} is eligible (imbalance after "
                            f"{row['imbalance_after']:.4f}, {row['time_s']:.1f} s)",
                            before, None, [row])

    def evacuate(self, host_name: str, reason: str = "evacuate") -> list[dict[str, Any]]:
        """Decisions for every VM on ``host_name`` (already set to maintenance or degraded),
        largest memory first, each to its best host other than the evacuated one."""
        host = self._host(host_name, "host")
        if host.state == drs.NORMAL:
            raise ConfigError(f"hosts.{host_name}.state", host.state,
                              "maintenance or degraded (set_state) before evacuating")
        on = sorted((vm for vm in self._vms.values() if vm.host == host_name),
                    key=lambda vm: (-vm.memory_bytes, vm.name))
        return [self.choose(vm.name, reason, exclude=(host_name,), action="evacuate")
                for vm in on]

    def rebalance(self, level: int, max_moves: int = 32) -> list[dict[str, Any]]:
        """DRS-like greedy balancing at threshold ``level``: while the imbalance exceeds the
        target, make the (vm, eligible host) move of lowest score that lowers the imbalance by
        at least MIN_GAIN. Returns one record per move, then a summary (``vm`` None, action
        ``rebalance-summary``) with the moves' count and whether the target was reached.
        Level 1 balances nothing: []."""
        n_normal = sum(1 for h in self._hosts.values() if h.state == drs.NORMAL)
        target = drs.target_imbalance(level, n_normal)
        if target is None:
            return []
        start = self.imbalance()
        costs: dict[tuple[str, str, str], MoveCost] = {}
        records: list[dict[str, Any]] = []
        stop = f"at max_moves ({max_moves})"
        while len(records) < max_moves:
            current = self.imbalance()
            if current <= target + TOLERANCE:
                stop = "target reached"
                break
            best: tuple[tuple[float, float, str, str], VmInfo, list[dict[str, Any]]] | None
            best = None
            for name in sorted(self._vms):
                vm = self._vms[name]
                rows = self._rows(vm, (), costs)
                for row in rows:
                    if row["why_not"] or current - row["imbalance_after"] < MIN_GAIN:
                        continue
                    key = (row["score"], row["time_s"], name, row["host"])
                    if best is None or key < best[0]:
                        best = (key, vm, rows)
            if best is None:
                stop = "no move lowers the imbalance"
                break
            (_, _, _, host), vm, rows = best
            row = next(r for r in rows if r["host"] == host)
            why = (f"imbalance {current:.4f} > target {target:.4f}: "
                   + self._explain(row, sum(1 for r in rows if not r["why_not"]), len(rows)))
            self._apply(vm, host)
            records.append(self._record("rebalance", "rebalance", vm.name, vm.host, host, why,
                                        current, target, rows))
        end = self.imbalance()
        reached = end <= target + TOLERANCE
        if reached:
            stop = "target reached"
        summary = (f"{len(records)} moves: imbalance {start:.4f} -> {end:.4f}, target "
                   f"{target:.4f} (level {level}, {n_normal} normal hosts); {stop}")
        log.info("placement: rebalance %s", summary)
        records.append(self._record("rebalance-summary", "rebalance", None, None, None, summary,
                                    start, target, [], moves=len(records), reached=reached))
        return records

