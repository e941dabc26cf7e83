"""The guest process of the emulated VM: it dirties memory and serves clients from that memory.

## The emulated VM (README section)

A VM is a Mininet host (its own network namespace, MAC and IP) running one guest process, ``python
-m migrator.guest.process``.  Its RAM is a file in /dev/shm (``wanmig-<vm>-<tag>.ram``) mapped by
the guest and by the source migrator, with a dirty log and a control block beside it
(``migrator.guest.image``).  The guest writes pages at the workload's rate and marks them dirty; it
obeys pause, resume, throttle, dirty-rate limit and "switch to memory <tag>" from the control block
(the write rate is ``min(rate * (1 - throttle), limit)``, ``DirtyPlan``); at switchover it
maps the destination's copy, rebuilds its service state *from that memory* and resumes with its
sockets intact.  A transfer error therefore shows up as data a client cannot read back.

Workload presets (``--workload NAME``; rates are page writes, 4 KiB each; a write changes
``write_bytes`` of the page, 64-512 when unset, with ``content`` text or random,
``migrator.memory.writes``):

| preset | write rate | working set | skew | one write | note |
|---|---|---|---|---|---|
| idle | 0.1 MiB/s | 5 % | uniform | 64-512 B text | fixed costs of a migration |
| web | 20 MiB/s | 25 % | Zipf s=1 | 64-512 B text | converges over 250 Mbit/s in a few rounds |
| database | 60 MiB/s mean | 10 % | Zipf s=1.2 | 64-512 B text | bursts: 10 s period, 50 % duty |
| memory-intensive | 300 MiB/s | 80 % | uniform | 64-512 B text | needs auto-converge on a WAN |
| crypto | 40 MiB/s | 50 % | uniform | 4096 B random | no codec helps; needs throttle or limit |

``--workload`` also takes a JSON mapping (``{"preset": "web", "dirty_rate_mibps": 5}``,
``{"preset": "web", "write_bytes": 4096, "content": "random"}``), and
``--dirty-rate MIBPS`` is a uniform workload over all of memory.  The first ``--kv-pages`` pages
(default 64, 256 KiB) hold the key-value log and are never written by the workload.

Service (``migrator.guest.service``), answered only while the VM runs:

* UDP echo, port 7007 (``--udp-port``): request ``struct.pack(">Qd", seq, t_send)``, 16 bytes;
  reply ``struct.pack(">Qd16s", seq, t_send, location)``, the site label NUL-padded.  Other
  datagrams are ignored (counted).
* TCP key-value, port 7070 (``--tcp-port``), lines: ``PUT <key> <value>`` -> ``OK``,
  ``GET <key>`` -> ``VAL <value>`` | ``NONE``, bad input -> ``ERR <reason>``; keys
  ``[A-Za-z0-9_.-]{1,64}``, values 1-1024 printable ASCII without spaces; a line over 2048 bytes
  closes the connection; a full store answers ``ERR store full ...``.

A VM with a disk (``--disk``, ``migrator.guest.guestdisk``) also reads and writes it from a thread
of its own; that thread is held while the guest is paused, slowed by its throttle, and moved
onto the destination's image at switchover.

The guest says ``READY {"pid": ...}`` (``ground.protocol``) once it serves, logs to stderr, and
exits 0 on SIGTERM/SIGINT (it never unlinks memory: the launcher owns it).  Measured on this machine
(2 cores, 256 MiB guest, 3 s, no clients): web 20.0 MiB/s at 11 % of a core, memory-intensive 299.8
MiB/s at 23 %, idle 5 % (the 1 ms tick); the ceiling is about 2.5 GiB/s of page writes on one core.
Whole pages of random bytes cost more (4 KiB generated and copied per write): crypto 40.0 MiB/s at
16 %, 300 MiB/s at 34 %, and about 1 GiB/s of page writes per core-second at the ceiling (977 MiB/s
at 91 % of a core, the other core busy); a dirty-rate limit is met exactly (crypto capped at 10
MiB/s: 10.0).  Past the ceiling the guest writes what it can and counts the rest in ``lagged_s``.

## Why the loop looks like this

One thread, a 1 ms tick: each turn beats the heartbeat, applies any control command, writes the
pages the ``DirtyPlan`` asks for since the last turn (contents first, then the dirty marks), and
serves the sockets for up to the rest of the tick.  Commands are therefore applied between
batches, so an acknowledged pause really means no write is in flight.  A turn late by more than
``MAX_DT`` drops the excess writes rather than bursting (the rate achieved is reported in the
state blob).  The heartbeat also checks the owner (gone: the guest stops, ``migrator.guest.owner``)
and the lease of a pause or throttle (run out: taken back, ``migrator.guest.lease``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

import numpy as np

from ground.config import ConfigError
from ground.protocol import Kind, say
from migrator.guest import lease
from migrator.guest.control import (
    CMD_PAUSE,
    CMD_RUN,
    CMD_SWITCH,
    COMMAND_NAMES,
    PAUSED,
    RUNNING,
    Command,
    ControlBlock,
    check_location,
)
from migrator.guest.guestargs import GuestConfig, parse_args
from migrator.guest.guestdisk import GuestDisk
from migrator.guest.image import GuestMemory
from migrator.guest.kvstore import KVStore
from migrator.guest.owner import OwnerWatch
from migrator.guest.service import GuestService
from migrator.memory.pages import text_pool
from migrator.memory.workload import DirtyPlan
from migrator.memory.writes import write_pages

log = logging.getLogger("migrator.guest.process")

TICK_S = 0.001
MAX_DT = 0.05
BEAT_S = 0.05


class Guest:
    """The guest's state and loop; ``run()`` returns the exit status."""

    def __init__(self, cfg: GuestConfig) -> None:
        self.cfg = cfg
        self.stop_requested = False
        self.state = RUNNING
        self.location = cfg.location
        self.writes = 0
        self.lagged_s = 0.0
        self.lease_expiries = 0
        self.stop_reason = ""
        self.owner = OwnerWatch(cfg.owner_pid)
        self.mem: GuestMemory | None = None
        self.ctl: ControlBlock | None = None
        self.store: KVStore | None = None
        self.service: GuestService | None = None
        self.plan: DirtyPlan | None = None
        self.disk: GuestDisk | None = None
        self.rng = np.random.default_rng(cfg.seed + 1)

    # --- set-up ----------------------------------------------------------------------------------

    def _open(self) -> None:
        cfg = self.cfg
        self.mem = GuestMemory.attach(cfg.vm, cfg.tag)
        if self.mem.control is None:
            raise ValueError(f"{self.mem.name} has no control block: start the guest on a "
                             "tracked image (create(..., tracking=True))")
        self.ctl, self.mem.control = self.mem.control, None    # ours for the guest's life
        if self.mem.npages <= cfg.kv_pages:
            raise ConfigError("kv_pages", cfg.kv_pages,
                              f"fewer pages than the memory ({self.mem.npages})")
        if cfg.workload.content == "text":
            text_pool()              # built once (~0.4 s) before the first write, not during
        self.store = self._load_store(self.mem)
        self.plan = DirtyPlan(cfg.workload, self.mem.npages - cfg.kv_pages, seed=cfg.seed)
        if cfg.service:
            self.service = GuestService(self.store, self.location, cfg.service_host,
                                        cfg.udp_port, cfg.tcp_port)
        if cfg.disk is not None:
            self.disk = GuestDisk(cfg.disk, cfg.seed + 2)

    def _load_store(self, mem: GuestMemory) -> KVStore:
        dirty = mem.dirty
        store = KVStore.load(mem.pages[:self.cfg.kv_pages],
                             on_write=dirty.mark if dirty is not None else None)
        if store.corruption:
            log.error("%s: key-value log %s; %d keys kept", mem.name, store.corruption,
                      len(store))
        else:
            log.info("%s: key-value store loaded, %d keys", mem.name, len(store))
        return store

    # --- loop ------------------------------------------------------------------------------------

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        error = ""
        try:
            self._open()
            assert self.ctl is not None and self.mem is not None
            applied = self.ctl.guest_start(os.getpid(), self.location, self.mem.tag)
            say(Kind.READY, pid=os.getpid())
            self._loop(applied)
            error = self.stop_reason
            return 0
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("guest failed: %s", error)
            return 1
        finally:
            self._close(error)

    def _loop(self, applied: int) -> None:
        assert self.ctl is not None and self.plan is not None
        last = last_beat = time.monotonic()
        while not self.stop_requested:
            now = time.monotonic()
            if now - last_beat >= BEAT_S:
                self.ctl.beat()
                if self._watch(now, applied):
                    last = now                     # resumed: time spent paused writes nothing
                last_beat = now
            cmd = self.ctl.poll(applied)
            if cmd is not None:
                self._apply(cmd)
                applied = cmd.seq
                now = last = time.monotonic()      # time spent paused writes nothing
            if self.state == PAUSED:
                time.sleep(TICK_S)
                continue
            dt = now - last
            if dt > MAX_DT:
                self.lagged_s += dt - MAX_DT
                dt = MAX_DT
            last = now
            self._write(self.plan.pages_for(dt))
            if self.service is not None:
                self.service.poll(max(0.0, TICK_S - (time.monotonic() - now)))
            else:
                time.sleep(TICK_S)

    def _watch(self, now: float, applied: int) -> bool:
        """On the heartbeat: the owner (``migrator.guest.owner``) and the lease
        (``migrator.guest.lease``) of whatever a migrator imposed; True if the lease ran out."""
        assert self.ctl is not None and self.mem is not None and self.plan is not None
        if self.owner.gone(now):
            log.warning("owner pid %d is gone: the guest stops (nobody would stop it, nor remove "
                        "its memory)", self.owner.pid)
            self.stop_requested = True
            self.stop_reason = f"owner pid {self.owner.pid} gone"
            return False
        if self.state != PAUSED and not self.plan.throttle and not self.plan.dirty_limit_Bps:
            return False
        action, held = lease.expire(self.ctl, applied, now)
        if action in (lease.RESUME, lease.RELEASE):
            self.lease_expiries = self.ctl.snapshot().lease_expiries
            self.state = RUNNING
            self.plan.throttle, self.plan.dirty_limit_Bps = 0.0, None
            self._disk_follows()
            log.warning("lease expired (%s): %s at %s, throttle %.2f and write cap %s lifted",
                        "paused" if action == lease.RESUME else "running",
                        "resumed" if action == lease.RESUME else "running on", self.location,
                        held.throttle, held.dirty_limit or "none")
            self.ctl.ack(applied, RUNNING, location=self.location, tag=self.mem.tag,
                         blob=self.state_blob())
            return True
        return False

    def _write(self, rel: np.ndarray) -> None:
        if len(rel) == 0:
            return
        assert self.mem is not None
        idx = rel + self.cfg.kv_pages
        wl = self.cfg.workload
        write_pages(self.mem.pages, idx, self.rng, wl.write_bytes, wl.content)
        if self.mem.dirty is not None:
            self.mem.dirty.mark(idx)
        self.writes += len(idx)

    # --- commands --------------------------------------------------------------------------------

    def _apply(self, cmd: Command) -> None:
        assert self.ctl is not None and self.mem is not None and self.plan is not None
        self.plan.throttle = cmd.throttle
        self.plan.dirty_limit_Bps = cmd.dirty_limit or None
        error = ""
        also = None
        if cmd.kind == CMD_PAUSE:
            self.state = PAUSED
        elif cmd.kind == CMD_RUN:
            self.state = RUNNING
        elif cmd.kind == CMD_SWITCH:
            error = self._switch(cmd.tag, cmd.location)
            if not error:                # the migration is over: nothing slows the guest now
                also = lease.clear_at_switch()     # written with the new tag, at once
                self.plan.throttle, self.plan.dirty_limit_Bps = 0.0, None
        else:
            error = f"unknown command {cmd.kind}"
        self._disk_follows()
        log.info("command %d (%s) applied: %s%s", cmd.seq, COMMAND_NAMES.get(cmd.kind, cmd.kind),
                 "paused" if self.state == PAUSED else "running",
                 f", error {error}" if error else "")
        self.ctl.ack(cmd.seq, self.state, location=self.location, tag=self.mem.tag, error=error,
                     blob=self.state_blob(), also=also)

    def _disk_follows(self) -> None:
        """The disk's I/O stops while the guest is paused (none in flight once the pause is
        acknowledged) and goes at the guest's throttled speed."""
        if self.disk is not None and self.plan is not None:
            self.disk.set_throttle(self.plan.throttle)
            self.disk.hold(self.state == PAUSED)

    def _switch(self, tag: str, location: str) -> str:
        """Map memory ``tag``, rebuild the store from it, resume; '' or why not."""
        assert self.mem is not None
        if self.state != PAUSED:
            return "switch needs a paused guest"
        try:
            check_location(location)
            new = GuestMemory.attach(self.cfg.vm, tag)
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            return str(exc)
        if new.npages != self.mem.npages:
            new.close()
            return f"memory {tag} has {new.npages} pages, the guest {self.mem.npages}"
        if new.control is not None:       # the guest keeps obeying the block it started on
            new.control.close()
            new.control = None
        error = self.disk.switch(self.cfg.vm, tag) if self.disk is not None else ""
        if error:
            new.close()
            return error
        store = self._load_store(new)
        old, self.mem, self.store = self.mem, new, store
        if self.service is not None:
            self.service.store = store
            self.service.location = location
        self.location = location
        old.close()
        self.state = RUNNING
        log.info("switched to %s at %s", new.name, location)
        return ""

    def state_blob(self) -> bytes:
        """What the migrator sends as device state: small, JSON."""
        assert self.mem is not None and self.plan is not None
        return json.dumps({
            "vm": self.cfg.vm, "tag": self.mem.tag, "location": self.location,
            "plan_t": round(self.plan.t, 6), "writes": self.writes,
            "throttle": self.plan.throttle, "dirty_limit_Bps": self.plan.dirty_limit_Bps,
            "lagged_s": round(self.lagged_s, 6), "lease_expiries": self.lease_expiries,
            "kv_keys": len(self.store) if self.store is not None else 0,
            "service": dict(self.service.stats) if self.service is not None else {},
        }, sort_keys=True).encode()

    # --- tear-down -------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        self.stop_requested = True

    def _close(self, error: str) -> None:
        if self.service is not None:
            self.service.close()
        if self.disk is not None:
            self.disk.close()
        if self.ctl is not None:
            try:
                self.ctl.guest_exit(error)
            finally:
                self.ctl.close()
        self.store = None
        if self.mem is not None:
            self.mem.close()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return Guest(cfg).run()


if __name__ == "__main__":
    sys.exit(main())
