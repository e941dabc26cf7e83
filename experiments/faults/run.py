"""A run's faults from beginning to end, for the runner: the checks before the migration, the
injector during it, the evidence before teardown, the invariants after it.

The runner calls, in order: ``check()`` once the network is up (a fault the network cannot
take stops the run before the VM starts), ``start()`` before the migration, ``on_message`` for
every migrator message, ``finish()`` after the clients stopped and before anything is torn down,
and ``results(...)`` after teardown, whose keys go into metrics.json: ``faults`` (one record per
fault, ``injector``), ``invariants`` (``invariants.judge``) and, flat for summaries,
``invariants_held``, ``one_site``, ``split_brain``, ``lost_writes``, ``reachable`` and
``leftovers`` (a count).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from experiments.faults.actions import RunActions
from experiments.faults.evidence import left_behind, network_record, where_is_vm
from experiments.faults.injector import FaultInjector
from experiments.faults.invariants import judge, settle_time
from experiments.metrics import parse_probes
from ground.jsonfile import read_json
from ground.protocol import Message

log = logging.getLogger("wanmig.faults")

DEST_TAG = "dst"       # the image the runner's destination migrator receives into


class FaultRun:
    """``run``: the runner's ``Run`` (spec, net, procs, guest, image, out, vm_mac);
    ``vm_name``: the VM's Mininet host."""

    def __init__(self, run: Any, vm_name: str) -> None:
        self.run, self.vm_name = run, vm_name
        self.actions = RunActions(run.net, run.procs.get, run.spec.placement.destination)
        self.injector = FaultInjector(run.spec.faults, self.actions)
        self.evidence: dict = {}
        self.record: dict = {}
        self.pids: list[int] = []
        self.files: list[str] = []

    def check(self) -> None:
        self.actions.check(list(self.run.spec.faults))

    def start(self) -> None:
        self.injector.start()

    def on_message(self, msg: Message) -> None:
        self.injector.on_message(msg)

    def finish(self) -> None:
        """Evidence of where the VM is, then every fault undone; what teardown must remove."""
        run = self.run
        result = read_json(run.out / "migration" / "result.json") or {}
        try:
            self.evidence = where_is_vm(run.net, self.vm_name, run.vm_mac, run.guest,
                                        result.get("outcome"), DEST_TAG)
        finally:
            self.injector.finish()
        self.record = network_record(run.net)
        self.pids = [p.proc.pid for p in run.procs.values()] + self.actions.new_pids
        if run.guest is not None:
            self.pids.append(run.guest.pid)
        self.files = [lk.relay_control_path for lk in getattr(run.net, "links", [])
                      if getattr(lk, "relay_control_path", None)]
        log.info("where the VM is: %s", self.evidence)

    def results(self, probe_rows: Iterable[Mapping[str, Any]],
                kv_rows: Iterable[Mapping[str, Any]] | None) -> dict:
        records = self.injector.records()
        leftovers = left_behind(self.record, self.pids, self.run.image, self.files)
        inv = judge(self.evidence, parse_probes(probe_rows), kv_rows, settle_time(records),
                    leftovers)
        inv["evidence"] = self.evidence
        for r in records:
            if r["fired_at"] is None:
                log.warning("fault %d (%s at %s) never fired", r["index"], r["kind"], r["at"])
        if not inv["held"]:
            log.warning("invariants broken: one site %s%s, split brain %s, lost writes %d, "
                        "reachable %s, leftovers %s", inv["one_site"],
                        f" ({'; '.join(inv['one_site_why'])})" if inv["one_site_why"] else "",
                        inv["split_brain"], inv["lost_writes"], inv["reachable"],
                        inv["leftovers"])
        return {"faults": records, "invariants": inv, "invariants_held": inv["held"],
                "one_site": inv["one_site"], "split_brain": inv["split_brain"],
                "lost_writes": inv["lost_writes"], "reachable": inv["reachable"],
                "leftovers": len(inv["leftovers"])}
