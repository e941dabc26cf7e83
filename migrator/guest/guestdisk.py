"""The guest process's disk: its I/O thread, the device it reads and writes, and its report.

The disk is described to the guest by one JSON mapping (``--disk``, ``disk_arg``): the disk's
parameters (``vm.disk``, ``migrator.disk.params``), ``path``, the image in its hypervisor's
datastore (a local disk: dirty sectors marked in ``<path>.dirty`` for the source migrator;
``mirror``: write-blocking, each write copied through ``<path>.mirror`` once the migrator opens
it), and for shared storage ``uri``, the image's NBD export, which the guest then uses for
every I/O (across the network, and after the move across the WAN; the final check of every
block reads the image itself, not at one round trip a block); ``log`` (the I/O log, CSV) and
``report`` (JSON written when the guest stops: counts, the final check of every block ever
written, and ``wall_minus_monotonic`` to put the log's monotonic times on the runner's clock).

The guest holds the thread while it is paused (no I/O in flight then: the stop-and-copy's
last dirty read is complete) and, at switchover, moves it onto the destination's copy of the
disk, found by its tag in the datastore (``wanmig-<vm>-<tag>.disk`` under one host's folder).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground.config import ConfigError, Section
from migrator.disk.datastore import datastore_root, dirty_log_path
from migrator.disk.device import BlockDevice, FileDevice, mirror_socket_path
from migrator.disk.iolog import IoLog
from migrator.disk.params import DiskParams, parse_disk
from migrator.disk.worker import DiskWorker
from migrator.guest.dirtylog import DirtyLog
from migrator.guest.image import image_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskConfig:
    params: DiskParams
    path: str                   # the image in the datastore
    uri: str | None             # shared storage: its NBD export, which the guest uses
    mirror: bool
    log: str
    report: str

    def to_json(self) -> str:
        return json.dumps({"params": self.params.to_dict(), "path": self.path, "uri": self.uri,
                           "mirror": self.mirror, "log": self.log, "report": self.report})


def parse_disk_arg(raw: str, where: str = "--disk") -> DiskConfig:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(where, raw, f"a JSON mapping ({exc})") from exc
    s = Section(data, where, ("params", "path", "uri", "mirror", "log", "report"))
    params = parse_disk(s.raw("params", None), f"{where}.params")
    if params is None:
        raise ConfigError(f"{where}.params", None, "the disk's parameters (vm.disk)")
    path, uri = s.raw("path", None), s.raw("uri", None)
    if not isinstance(path, str) or not (uri is None or isinstance(uri, str)):
        raise ConfigError(where, raw, "path (the datastore image) and, for shared storage, "
                                      "uri (its NBD export)")
    mirror = s.raw("mirror", False)
    if not isinstance(mirror, bool) or (mirror and uri is not None):
        raise ConfigError(f"{where}.mirror", mirror, "true or false; false for shared storage")
    out = {k: s.raw(k, None) for k in ("log", "report")}
    for key, value in out.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}", value, "a file path")
    return DiskConfig(params, path, uri, mirror, out["log"], out["report"])


def find_disk(vm: str, tag: str) -> Path:
    """The image ``wanmig-<vm>-<tag>.disk`` in the datastore (one host's folder holds it)."""
    name = f"{image_name(vm, tag)}.disk"
    found = sorted(datastore_root().glob(f"*/{name}"))
    if len(found) != 1:
        raise FileNotFoundError(f"{len(found)} images {name} under {datastore_root()}, "
                                "expected exactly one")
    return found[0]


class GuestDisk:
    def __init__(self, cfg: DiskConfig, seed: int) -> None:
        self.cfg = cfg
        self.dirty: DirtyLog | None = None
        self.iolog = IoLog(cfg.log)
        device: BlockDevice
        if cfg.uri is not None:
            from migrator.disk.nbdclient import NbdDevice

            device = NbdDevice(cfg.uri)
        else:
            device = FileDevice(cfg.path)
            self.dirty = DirtyLog(dirty_log_path(Path(cfg.path)))
        mirror = mirror_socket_path(Path(cfg.path)) if cfg.mirror else None
        self.worker = DiskWorker(cfg.params, device, self._mark, self.iolog, seed,
                                 mirror_path=mirror)
        self.worker.start()
        self.path = cfg.path

    def _mark(self, sectors: Any) -> None:
        if self.dirty is not None:
            self.dirty.mark(sectors)

    def hold(self, held: bool) -> None:
        """Held while the guest is paused: no I/O in flight, none starts."""
        if held and not self.worker.held:
            self.worker.hold()
        elif not held and self.worker.held:
            self.worker.release()

    def set_throttle(self, frac: float) -> None:
        self.worker.set_throttle(frac)

    def switch(self, vm: str, tag: str) -> str:
        """Onto the destination's copy ``tag`` (the guest is paused, the worker held); '' or
        why not. Shared storage does not move: the same export, reached from the new site."""
        if self.cfg.uri is not None:
            return ""
        try:
            path = find_disk(vm, tag)
            dirty = DirtyLog(dirty_log_path(path))
        except (OSError, ValueError) as exc:
            return f"disk: {exc}"
        old = self.dirty
        self.dirty = dirty
        self.worker.switch_device(FileDevice(path), mirror_path=None)
        if old is not None:
            old.close()
        self.path = str(path)
        log.info("disk switched to %s", path)
        return ""

    def close(self) -> None:
        """Stop the thread, check every block ever written, write the report."""
        self.worker.stop()
        try:
            if self.cfg.uri is not None:      # read the image itself, not a block per RTT
                self.worker.hold()
                self.worker.switch_device(FileDevice(self.cfg.path))
            checked, lost = self.worker.verify_all()
        except Exception as exc:  # noqa: BLE001 - reported, never hides the rest
            log.error("disk: final check failed: %s", exc)
            checked, lost = 0, None
        report = {**self.worker.stats(), "verified_blocks": checked, "verify_lost": lost,
                  "path": self.path, "uri": self.cfg.uri,
                  "wall_minus_monotonic": time.time() - time.monotonic()}
        self.worker.close()
        self.iolog.close()
        if self.dirty is not None:
            self.dirty.close()
        Path(self.cfg.report).write_text(json.dumps(report, indent=1) + "\n")
        log.info("disk: %s", report)
