"""QEMU's own live migration, driven over QMP and reported in the emulated migrator's terms.

``QemuMigration(src, dst, settings, uri, ...).run()``, with the destination QEMU started by the
caller with ``-incoming defer -S`` and both QEMUs' RAM in ``memory-backend-file,share=on``
files the caller names:

1. both QEMUs get the same capabilities and parameters (``params.QemuSettings``; TLS-PSK
   credentials first when asked) and report them back; a difference is a failure before
   anything moves;
2. ``migrate-incoming`` on the destination, ``stop`` on the source for a cold migration, then
   ``migrate``; ``query-migrate`` every ``poll_s`` (the samples ``progress`` turns into rows)
   and the events of both QEMUs (source STOP: the guest paused; MIGRATION_PASS: a dirty sync;
   MIGRATION: completed, failed, cancelled), with QEMU's own timestamps;
3. the time budget: ``force`` raises ``downtime-limit`` to QEMU's maximum so that the next
   iteration completes, ``abort`` cancels (``migrate_cancel``);
4. on completion, once the destination too says completed (it may still be reading what the
   source has sent), the two RAM files are compared (xxh3-128 of each, read in two threads; the
   source is stopped in ``postmigrate``, the destination paused by ``-S``, so they should be
   equal; this is part of the downtime); a difference refuses the switchover (``aborted``,
   the guest resumed at the source) and is recorded page by page (``ram_differing``). Seen
   with Debian 12's QEMU 7.2 under TCG (KVM does not boot on the project's machine): every live
   pre-copy of more than one pass lost 36 to 140 pages of 32768, on the testbed's network and
   on loopback alike, with a file or memfd backend, one or many TCG threads, with or without
   auto-converge, network traffic or TLS; the same pages every time (kernel timer and per-CPU
   data, receive buffers), and a destination let run died in the kernel's hrtimer code
   (general protection fault) a few seconds later. Cold migrations were exact, and so are live
   ones with QEMU 10.0 (bookworm-backports, which ``make setup`` installs);
   VERIFIED; ``go()`` (the runner moves the network);
   ``cont`` on the destination, whose RESUME event closes the downtime;
5. ``announce-self`` with QEMU's default announce parameters right after ``cont``: QEMU 7.2
   announces (5 RARPs, 50 ms after the incoming migration completes, then 100 ms apart) in
   ``process_incoming_migration_bh``, before and whatever its autostart check (``-S``): seen
   here, with ``cont`` 1.7 s later all five had left while the guest was paused (a capture
   stamped them with the stopped virtual clock), so they race the runner's move of the
   network at VERIFIED. The announce after ``cont`` is the one that follows the guest's
   resumption (the process test counts 5 + 5 frames);
6. anything else (QEMU failed or cancelled, an image that differs, a QMP error): ``aborted``
   with QEMU's error, the source ``cont``inued if it is not running (the guest keeps running
   there; 7.2 restarts it itself after a failure, a cold or refused one needs ``cont``), the
   destination told to ``quit``.
"""

from __future__ import annotations

import logging
import mmap
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from migrator.core.records import MigrationResult, RoundRecord
from migrator.memory.pages import PAGE_SIZE
from migrator.qemu import progress
from migrator.qemu.params import (
    MAX_DOWNTIME_LIMIT_MS,
    TLS_ID,
    QemuSettings,
    capability_list,
    differences,
    reported_capabilities,
)
from migrator.qemu.qmp import Event, Monitor, QmpError
from migrator.qemu.report import Run, build

log = logging.getLogger(__name__)

POLL_S = 0.1                # query-migrate period
FINAL_FIGURES_S = 2.0       # QEMU fills total-time/downtime just after it says "completed"
RESUME_WAIT_S = 10.0        # for the destination's RESUME event after cont
DESTINATION_WAIT_S = 30.0   # for the destination to load what the source has sent
BUDGET_GRACE_S = 60.0       # after force/cancel, before giving up on QEMU
ENDED = ("completed", "failed", "cancelled")
CHUNK = 8 << 20
PSK_IDENTITY = "wanmig"


class Hooks:
    """What the driver says as it goes (the CLI prints ``ground.protocol`` lines); no-ops."""

    def started(self, t: float) -> None: ...
    def progress(self, row: RoundRecord, eta_s: float | None, t: float) -> None: ...
    def paused(self, t: float) -> None: ...
    def verified(self, t: float) -> None: ...
    def resumed(self, t: float) -> None: ...


def image_digest(path: str | Path) -> bytes:
    """xxh3-128 of a RAM file, read through a read-only mapping in 8 MiB slices."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            for off in range(0, len(m), CHUNK):
                h.update(view[off:off + CHUNK])
        finally:
            view.release()
    return h.digest()


def images_equal(a: str | Path, b: str | Path) -> bool:
    """Whether two RAM files have the same digest (hashed in two threads: xxhash and the page
    reads release the GIL)."""
    out: dict[int, bytes] = {}

    def one(i: int, p: str | Path) -> None:
        out[i] = image_digest(p)

    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate((a, b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if len(out) != 2:
        raise OSError(f"could not read {a} and {b}")
    return out[0] == out[1]


def differing_pages(a: str | Path, b: str | Path, show: int = 8) -> dict[str, Any]:
    """Which 4 KiB pages of two RAM files differ: how many, of how many, the first few
    guest-physical addresses."""
    x = np.memmap(a, dtype=np.uint8, mode="r")
    y = np.memmap(b, dtype=np.uint8, mode="r")
    if x.size != y.size:
        return {"pages": None, "of": None, "first": [f"sizes {x.size} and {y.size}"]}
    pages = np.nonzero((x.reshape(-1, PAGE_SIZE) != y.reshape(-1, PAGE_SIZE)).any(axis=1))[0]
    return {"pages": int(len(pages)), "of": int(x.size // PAGE_SIZE),
            "first": [hex(int(p) * PAGE_SIZE) for p in pages[:show]]}


class QemuMigration:
    """One QEMU-to-QEMU migration; ``run()`` returns (``MigrationResult``, ``qemu`` record)."""

    def __init__(self, src: Monitor, dst: Monitor, settings: QemuSettings, uri: str, *,
                 listen_uri: str, src_ram: str | Path, dst_ram: str | Path,
                 go: Callable[[], None] | None = None, hooks: Hooks | None = None,
                 poll_s: float = POLL_S) -> None:
        self.src, self.dst, self.settings = src, dst, settings
        self.uri, self.listen_uri = uri, listen_uri
        self.src_ram, self.dst_ram = Path(src_ram), Path(dst_ram)
        self.go, self.hooks, self.poll_s = go, hooks or Hooks(), poll_s
        self.run_state = Run()
        self._switched = False          # the destination was told to run (cont)

    # -- set-up ---------------------------------------------------------------------------------
    def _configure(self, psk_dir: Path | None) -> None:
        s = self.settings
        for side, mon, endpoint in (("dst", self.dst, "server"), ("src", self.src, "client")):
            if s.tls:
                mon.cmd("object-add", **{"qom-type": "tls-creds-psk", "id": TLS_ID,
                                         "endpoint": endpoint, "dir": str(psk_dir),
                                         "priority": s.tls_priority,
                                         **({"username": PSK_IDENTITY}
                                            if endpoint == "client" else {})})
            mon.cmd("migrate-set-capabilities", capabilities=capability_list(s.capabilities))
            mon.cmd("migrate-set-parameters", **s.parameters)
            caps = reported_capabilities(mon.cmd("query-migrate-capabilities"))
            params = mon.cmd("query-migrate-parameters")
            self.run_state.reported[side] = {"capabilities": caps, "parameters": params}
            wrong = {**differences(s.capabilities, caps), **differences(s.parameters, params)}
            if wrong:
                raise QmpError("migrate-set-parameters",
                               f"{side} QEMU reports otherwise than asked: {wrong}")

    # -- the loop -------------------------------------------------------------------------------
    def _take_events(self) -> None:
        """Read both QEMUs' events; a destination gone shows as the source's failure."""
        self._handle("src", self.src.events())
        try:
            self._handle("dst", self.dst.events())
        except QmpError as exc:
            log.debug("destination's events: %s", exc)

    def _handle(self, side: str, got: list[Event]) -> None:
        r = self.run_state
        for ev in got:
            r.events.append((side, ev))
            if side == "src" and ev.name == "STOP" and r.paused_t is None:
                r.paused_t = ev.t
                self.hooks.paused(ev.t)
            elif side == "src" and ev.name == "MIGRATION_PASS":
                r.passes[int(ev.data.get("pass", 0))] = ev.t
            elif side == "src" and ev.name == "MIGRATION" and ev.data.get("status") in ENDED:
                r.ended_t = ev.t
            elif side == "dst" and ev.name == "MIGRATION" and ev.data.get("status") in ENDED:
                r.dst_status, r.dst_ended_t = str(ev.data["status"]), ev.t
            elif side == "dst" and ev.name == "RESUME":
                r.resumed_t = ev.t

    def _say_rows(self, info: dict[str, Any]) -> None:
        r, s = self.run_state, self.settings
        rows = progress.live_rows(r.samples, codec=s.codec, throttle_policy=s.throttle_policy,
                                  passes=r.passes, cold=s.stop_first,
                                  paused_t=None if s.stop_first else r.paused_t)
        self._say(rows, info)

    def _say(self, rows: list[RoundRecord], info: dict[str, Any]) -> None:
        """PROGRESS for the rows not said yet."""
        r = self.run_state
        ram = info.get("ram") or {}
        rate = float(ram.get("mbps", 0)) * 1e6 / 8
        eta = float(ram.get("remaining", 0)) / rate if rate > 0 else None
        # Each row's end on the wall clock: the rows run back to back from QEMU's first pass.
        end = r.passes.get(1, r.samples[0][0] if r.samples else r.started_t)
        for i, row in enumerate(rows):
            end += row.duration_s
            if i >= r.emitted:
                self.hooks.progress(row, eta, end)
        r.emitted = max(r.emitted, len(rows))

    def _budget(self, acted: bool) -> bool:
        r, s = self.run_state, self.settings
        if acted or time.time() - r.started_t < s.time_budget_s:
            return acted
        if s.on_budget == "abort":
            log.warning("time budget of %.1f s spent: cancelling", s.time_budget_s)
            self.src.cmd("migrate_cancel")
            r.outcome, r.stop_reason = "aborted: budget", "time_budget"
        else:
            log.warning("time budget of %.1f s spent: forcing the switchover", s.time_budget_s)
            self.src.cmd("migrate-set-parameters", **{"downtime-limit": MAX_DOWNTIME_LIMIT_MS})
            r.stop_reason = "time_budget"
        return True

    def _follow(self) -> None:
        r = self.run_state
        acted = False
        while True:
            info = self.src.cmd("query-migrate")
            r.samples.append((time.time(), info))
            self._take_events()
            r.status = str(info.get("status", "none"))
            if r.status in ENDED:
                return
            self._say_rows(info)
            acted = self._budget(acted)
            if acted and time.time() - r.started_t > self.settings.time_budget_s + \
                    BUDGET_GRACE_S:
                raise QmpError("query-migrate", f"still {r.status} {BUDGET_GRACE_S:g} s after "
                               "the time budget acted")
            # Wait on QEMU's events up to the next poll, never a bare sleep; a dirty sync
            # (MIGRATION_PASS) or the end is sampled at once, so that rows follow the syncs.
            deadline = time.monotonic() + self.poll_s
            while time.monotonic() < deadline and r.ended_t is None:
                got = self.src.events(wait=deadline - time.monotonic())
                self._handle("src", got)
                if any(e.name == "MIGRATION_PASS" for e in got):
                    break

    def _final_info(self) -> dict[str, Any]:
        """query-migrate once QEMU has filled in its final figures (total-time is set a
        moment after the status turns completed)."""
        deadline = time.monotonic() + FINAL_FIGURES_S
        info = self.run_state.samples[-1][1]
        while info.get("status") == "completed" and not info.get("total-time") and \
                time.monotonic() < deadline:
            self.src.events(wait=0.01)
            info = self.src.cmd("query-migrate")
        return info

    # -- the end --------------------------------------------------------------------------------
    def _switch_over(self) -> None:
        r = self.run_state
        if r.ended_t is None:
            r.ended_t = r.samples[-1][0]
        if r.paused_t is None:          # no STOP seen (cold: stopped before); QEMU's figures
            r.paused_t = r.ended_t - float(r.final.get("downtime", 0)) / 1e3
        s = self.settings
        rows = progress.final_rows(r.samples, r.final, codec=s.codec, end_t=r.ended_t,
                                   throttle_policy=s.throttle_policy, passes=r.passes,
                                   paused_t=r.paused_t, cold=s.stop_first)
        self._say(rows, r.final)
        self._wait_destination()
        r.integrity_ok = images_equal(self.src_ram, self.dst_ram)
        r.verified_t = time.time()
        if not r.integrity_ok:
            r.differing = differing_pages(self.src_ram, self.dst_ram)
            raise _RefusedError(f"the destination's RAM differs from the source's in "
                                f"{r.differing['pages']} of {r.differing['of']} pages (first "
                                f"at {', '.join(r.differing['first'])})")
        self.hooks.verified(r.verified_t)
        if self.go is not None:
            self.go()
        self.dst.cmd("cont")
        self._switched = True           # from here on the guest is the destination's
        params = self.dst.cmd("query-migrate-parameters")
        r.announce = {k: params[f"announce-{k}"] for k in ("initial", "max", "rounds", "step")}
        self.dst.cmd("announce-self", **r.announce)
        deadline = time.monotonic() + RESUME_WAIT_S
        while r.resumed_t is None and time.monotonic() < deadline:
            self._handle("dst", self.dst.events(wait=max(0.0, deadline - time.monotonic())))
        if r.resumed_t is None:
            raise QmpError("cont", f"no RESUME from the destination within {RESUME_WAIT_S:g} s")
        self.hooks.resumed(r.resumed_t)

    def _wait_destination(self) -> None:
        """Until the destination has loaded everything: the source says "completed" once it
        has sent the last byte (no return path), while the destination may still be reading
        its socket buffers (seen with TLS: its RAM compared a moment too early differed)."""
        r = self.run_state
        deadline = time.monotonic() + DESTINATION_WAIT_S
        while r.dst_status is None and time.monotonic() < deadline:
            self._handle("dst", self.dst.events(wait=max(0.0, deadline - time.monotonic())))
        if r.dst_status != "completed":
            status = self.dst.cmd("query-migrate").get("status")
            if status != "completed":
                raise QmpError("query-migrate", f"the destination's incoming migration is "
                               f"{r.dst_status or status} after {DESTINATION_WAIT_S:g} s")
            r.dst_status = status

    def _roll_back(self) -> None:
        """The guest keeps running at the source; the destination QEMU goes."""
        try:
            if not self.src.cmd("query-status").get("running"):
                self.src.cmd("cont")
        except QmpError as exc:
            log.error("could not resume the guest at the source: %s", exc)
        try:
            self.dst.cmd("quit")
        except QmpError as exc:
            log.debug("destination QEMU: %s", exc)

    def run(self) -> tuple[MigrationResult, dict[str, Any]]:
        """Migrate; returns the result record and the ``qemu`` record. Interrupted (Ctrl-C,
        SIGTERM) before the destination was told to run, the migration is cancelled and the
        guest left running at the source before the interrupt goes on."""
        r, s = self.run_state, self.settings
        with tempfile.TemporaryDirectory(prefix="wanmig-psk-") as tmp:
            psk_dir = Path(tmp) if s.tls else None
            if psk_dir is not None:
                key = psk_dir / "keys.psk"
                key.touch(mode=0o600)
                key.write_text(f"{PSK_IDENTITY}:{secrets.token_hex(32)}\n")
            try:
                self._migrate(psk_dir)
            except (QmpError, _RefusedError, OSError) as exc:
                if self._switched:      # the guest runs at the destination: never undone
                    log.error("after the switchover: %s", exc)
                    r.error = f"after the switchover: {exc}"
                    return self._report()
                r.outcome, r.error = "aborted", str(exc)
                r.stop_reason = "integrity" if isinstance(exc, _RefusedError) else str(exc)
                self._roll_back()
            except KeyboardInterrupt:
                if not self._switched:
                    self._cancel()
                raise
        return self._report()

    def _migrate(self, psk_dir: Path | None) -> None:
        r, s = self.run_state, self.settings
        self._configure(psk_dir)
        self.dst.cmd("migrate-incoming", uri=self.listen_uri)
        r.started_t = time.time()
        self.hooks.started(r.started_t)
        if s.stop_first:
            self.src.cmd("stop")
        self.src.cmd("migrate", uri=self.uri)
        self._follow()
        r.final = self._final_info()
        if r.status == "completed":
            self._switch_over()
            return
        if r.outcome == "completed":             # not already "aborted: budget"
            r.outcome = "aborted"
            r.error = r.final.get("error-desc") or f"QEMU's migration {r.status}"
            r.stop_reason = r.error
        else:
            r.error = r.final.get("error-desc") or f"QEMU's migration {r.status}"
        self._roll_back()

    def _cancel(self) -> None:
        try:
            self.src.cmd("migrate_cancel")
        except QmpError as exc:
            log.error("could not cancel the migration: %s", exc)
        self._roll_back()

    def _report(self) -> tuple[MigrationResult, dict[str, Any]]:
        size = self.src_ram.stat().st_size if self.src_ram.exists() else 0
        return build(self.run_state, self.settings, size)


class _RefusedError(RuntimeError):
    """The destination's image is not the source's: the switchover is refused."""
