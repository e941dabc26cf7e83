"""A VM's disk in a run (``vm.disk``): the datastores, the source image, the NBD server of
shared storage, what the guest and the two migrators are told, and the disk's figures.

Datastores: one folder per hypervisor host under ``migrator.disk.datastore.datastore_root()``;
the VM's disk is created (filled up to ``vm.disk.allocated``) in the source host's before the
guest starts. ``policy.storage``:

* ``background`` / ``write-blocking``: the guest reads and writes the image in its host's
  datastore; the source migrator migrates it with the memory (``--disk``) into a new image in
  the destination host's datastore (``--disk``/``--disk-params``), which the guest uses after
  the switchover; write-blocking mirrors every write from the start.
* ``shared``: qemu-nbd on the source host exports the image (``NBD_PORT``); the guest is its
  client from wherever it runs, so after the move every I/O crosses the WAN.

Figures (``metrics``): the guest's report (counts, lost writes, the final check of every block
written) and its I/O log summarised per phase, on the runner's clock: ``before`` (until the
migration starts), ``during`` (until the guest is paused), ``after`` (from its resume). Every
image is removed at the end (``remove``), whatever happened.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from experiments.spec import ExperimentSpec

log = logging.getLogger("wanmig.run")

NBD_PORT = 10809           # IANA's NBD port, on the source hypervisor's address


class DiskRun:
    def __init__(self, spec: ExperimentSpec, out: Path, net: Any, image: str) -> None:
        from migrator.disk.datastore import disk_path

        assert spec.vm.disk is not None
        self.spec, self.out, self.net, self.image = spec, out, net, image
        self.params = spec.vm.disk
        self.storage = spec.policy.storage
        p = spec.placement
        self.src = disk_path(p.source, image, "src")
        self.dst = disk_path(p.destination, image, "dst")
        self.server: Any = None
        self.log_path = out / "disk_io.csv"
        self.report_path = out / "disk.json"

    @property
    def shared(self) -> bool:
        return self.storage == "shared"

    def prepare(self) -> Any:
        """The source image (and for shared storage its NBD server); the guest's DiskConfig."""
        from migrator.disk.datastore import create_disk
        from migrator.guest.guestdisk import DiskConfig

        create_disk(self.src, self.params, self.spec.vm.seed, fill=True,
                    tracking=not self.shared)
        uri = None
        if self.shared:
            from migrator.disk.nbdserver import NbdServer

            host = self.net.host(self.spec.placement.source)
            ip = next(h.ip for h in self.net.plan.hosts if h.name == self.spec.placement.source)
            self.server = NbdServer(self.src, ip, NBD_PORT, popen=host.popen).start()
            uri = self.server.uri
        return DiskConfig(self.params, str(self.src), uri,
                          self.storage == "write-blocking", str(self.log_path),
                          str(self.report_path))

    def source_args(self) -> list[str]:
        return [] if self.shared else ["--disk", str(self.src)]

    def dest_args(self) -> list[str]:
        if self.shared:
            return []
        return ["--disk", str(self.dst), "--disk-params", json.dumps(self.params.to_dict())]

    def remove(self) -> None:
        from migrator.disk.datastore import remove_disk

        if self.server is not None:
            self.server.stop()
            self.server = None
        for path in (self.src, self.dst):
            remove_disk(path)

    def metrics(self, times: dict[str, float]) -> dict:
        """The disk's figures of the run (None where the guest wrote no report)."""
        from migrator.disk.iolog import read_iolog, summarise

        out: dict[str, Any] = {"storage_policy": self.storage, **{
            f"disk_{k}": v for k, v in self.params.to_dict().items()}}
        try:
            report = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            report = {}
        for key in ("writes", "reads", "bytes_written", "bytes_read", "lost_writes",
                    "mirror_writes", "remote_reads", "write_errors", "read_errors",
                    "verified_blocks", "verify_lost", "write_mibps", "read_mibps", "lagged"):
            out[f"disk_{key}"] = report.get(key)
        lost = [report.get("lost_writes"), report.get("verify_lost")]
        out["disk_lost_writes_total"] = None if None in lost else sum(lost)
        offset = report.get("wall_minus_monotonic")
        # during: from the first round (after connecting and measuring the codecs; a
        # write-blocking mirror starts there), else from the migrator's start
        start = times.get("rounds_start_t") or times.get("migration_start_t")
        if offset is None or start is None or not self.log_path.exists():
            out["disk_latency"] = None
            return out
        paused, resumed = times.get("paused_t"), times.get("resumed_t")
        far = 1e18
        phases = [("before", 0.0, start - offset),
                  ("during", start - offset, (paused or far) - offset),
                  ("after", (resumed or far) - offset, far)]
        out["disk_latency"] = summarise(read_iolog(self.log_path), phases)
        return out
