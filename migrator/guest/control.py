"""The control block: how a hypervisor-side process steers the guest process, and sees it alive.

A real hypervisor stops vCPUs itself; here the guest is another process, so "paused" must mean
*acknowledged*: ``pause()`` returns only once the guest has finished its current batch of writes
and promised to make no more, which is what makes the stop-and-copy's final dirty read complete.
Commands are sequence-numbered: the controller writes a command and bumps ``cmd_seq``; the guest
polls ``cmd_seq`` (one unlocked 8-byte read per loop turn), applies the command between batches
and writes ``ack_seq`` with its new state.  Multi-field updates hold an ``flock`` on the file so
nobody reads a half-written command.

A caller waiting for an acknowledgement is never left hanging on a dead guest: the guest writes
its pid and a heartbeat (monotonic clock, shared by all processes of the machine), and the wait
fails with ``GuestDiedError`` when the process is gone (or a zombie), said it exited, or has
not beaten for ``stale_s``, and with ``GuestTimeoutError`` when the deadline passes.

Commands: RUN (resume), PAUSE, SWITCH (attach the memory image ``tag``, take ``location``,
resume; only from PAUSED; the guest lifts throttle and write cap, the migration being over, as
QEMU does at completion).  The throttle (0..0.99, the fraction of write speed removed) and the
dirty-rate limit (bytes/s of page writes, 0 = none; QEMU's dirty-limit) are fields of their own,
applied by the guest on every command turn; setting either bumps ``cmd_seq`` without awaiting an
acknowledgement.  While paused the guest publishes a small state blob (JSON) that the source
migrator sends as the VM's device state.

The lease (``migrator.guest.lease``): a pause, a throttle or a write cap is held by a migrator
that keeps ``lease_deadline`` in the future; when it stops renewing (killed, hung) the guest
resumes at the source and lifts throttle and cap by itself, unless ``handed_over`` says the
destination has been acknowledged as the owner.

Layout (little-endian, offsets in bytes; ``MAGIC`` names the version, bumped on any change):

| offset | field | type | written by |
|---|---|---|---|
| 0 | magic ``WMCTL003`` | 8 bytes | initialise |
| 8 | cmd_seq | uint64 | controller (last: publishes the command) |
| 16 | cmd | uint32 (+4 pad) | controller |
| 24 | throttle | double | controller |
| 32 | want_location | 16 bytes | controller |
| 48 | want_tag | 16 bytes | controller |
| 64 | ack_seq | uint64 | guest |
| 72 | state | uint32 (+4 pad) | guest |
| 80 | pid | int64 | guest |
| 88 | heartbeat | double (monotonic s) | guest, unlocked |
| 96 | location | 16 bytes | guest |
| 112 | tag | 16 bytes | guest |
| 128 | error | 128 bytes | guest |
| 256 | blob_len | uint32 (+4 pad) | guest |
| 264 | dirty_limit | double (bytes/s, 0 = none) | controller |
| 272 | lease_deadline | double (monotonic s, 0 = no lease) | controller; guest on expiry |
| 280 | handed_over | uint32 (1: the destination owns the guest) | controller |
| 284 | lease_expiries | uint32 | guest |
| 1024 | blob | up to 2048 bytes | guest |
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ground.config import ConfigError, check_name

CONTROL_SIZE = 4096
MAGIC = b"WMCTL003"

CMD_RUN, CMD_PAUSE, CMD_SWITCH = 0, 1, 2
COMMAND_NAMES = {CMD_RUN: "run", CMD_PAUSE: "pause", CMD_SWITCH: "switch"}
STARTING, RUNNING, PAUSED, EXITED = 0, 1, 2, 3
STATE_NAMES = {STARTING: "starting", RUNNING: "running", PAUSED: "paused", EXITED: "exited"}
MAX_THROTTLE = 0.99
LOCATION_RE = re.compile(r"[A-Za-z0-9_.-]{1,16}")
BLOB_MAX = 2048
LEASE_S = 3.0                 # how long a pause (or throttle) outlives its migrator's last renewal
MIN_LEASE_S, MAX_LEASE_S = 0.2, 600.0

# magic, cmd_seq, cmd, throttle, want_location, want_tag,
# ack_seq, state, pid, heartbeat, location, tag, error, blob_len, dirty_limit,
# lease_deadline, handed_over, lease_expiries (module docstring)
_LAYOUT = struct.Struct("<8sQIxxxxd16s16sQIxxxxqd16s16s128sIxxxxddII")
_CMD_SEQ_OFF = 8
_HEARTBEAT_OFF = struct.calcsize("<8sQIxxxxd16s16sQIxxxxq")
_BLOB_OFF = 1024
assert _HEARTBEAT_OFF == 88 and _LAYOUT.size == 288, "the layout table in the docstring"
assert _LAYOUT.size <= _BLOB_OFF and _BLOB_OFF + BLOB_MAX <= CONTROL_SIZE


class GuestError(RuntimeError):
    """The guest refused or failed a command (its message says why)."""


class GuestDiedError(GuestError):
    """The guest process is gone or not responding."""


class GuestTimeoutError(GuestError):
    """The guest did not acknowledge in time."""


@dataclass(frozen=True)
class Command:
    seq: int
    kind: int
    throttle: float
    location: str
    tag: str
    dirty_limit: float = 0.0       # bytes/s, 0 = no limit


@dataclass(frozen=True)
class ControlState:
    cmd_seq: int
    cmd: int
    throttle: float
    want_location: str
    want_tag: str
    ack_seq: int
    state: int
    pid: int
    heartbeat: float
    location: str
    tag: str
    error: str
    blob: bytes
    dirty_limit: float = 0.0
    lease_deadline: float = 0.0     # monotonic s; 0: nobody holds the guest
    handed_over: int = 0            # 1: the destination was acknowledged as the owner
    lease_expiries: int = 0         # times the guest took itself back on an expired lease


def check_location(value: object) -> str:
    if not isinstance(value, str) or not LOCATION_RE.fullmatch(value):
        raise ConfigError("location", value, "1 to 16 characters of A-Z a-z 0-9 _ . -")
    return value


def check_throttle(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= value <= MAX_THROTTLE:
        raise ConfigError("throttle", value, f"a fraction from 0 to {MAX_THROTTLE}")
    return float(value)


def check_lease(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not MIN_LEASE_S <= value <= MAX_LEASE_S:
        raise ConfigError("lease_s", value, f"seconds from {MIN_LEASE_S:g} to {MAX_LEASE_S:g}")
    return float(value)


def check_dirty_limit(value: object) -> float:
    """Bytes/s as stored in the block: None or 0 is 0.0 (no limit)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError("dirty_limit", value,
                          "bytes per second, a finite number of at least 0 (None or 0: no limit)")
    return float(value)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii", errors="replace")


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as dead); same pid namespace assumed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field after the parenthesised command name
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


class ControlBlock:
    """One process's handle on the control file; both the guest and the controller use it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._threads = threading.RLock()
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            if os.fstat(self._fd).st_size != CONTROL_SIZE:
                raise ValueError(f"{self.path}: not a control block ({CONTROL_SIZE} bytes)")
            self._mm: mmap.mmap | None = mmap.mmap(self._fd, CONTROL_SIZE, mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            raise
        if self._mm[:8] not in (MAGIC, b"\0" * 8):
            self.close()
            raise ValueError(f"{self.path}: bad magic, not a wanmig control block")

    @staticmethod
    def initialise(path: Path | str) -> None:
        """Write a fresh block (STARTING, no command) into a zeroed file."""
        block = ControlBlock(path)
        try:
            with block._locked():
                block._write(cmd_seq=0, cmd=CMD_RUN, throttle=0.0, want_location="",
                             want_tag="", ack_seq=0, state=STARTING, pid=0, heartbeat=0.0,
                             location="", tag="", error="", dirty_limit=0.0,
                             lease_deadline=0.0, handed_over=0, lease_expiries=0)
        finally:
            block.close()

    # --- low level -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self):
        if self._mm is None:
            raise ValueError(f"control block {self.path} is closed")
        with self._threads:        # flock excludes other processes, not this one's threads
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read(self) -> ControlState:
        assert self._mm is not None
        (magic, cmd_seq, cmd, throttle, want_loc, want_tag, ack_seq, state, pid, heartbeat,
         loc, tag, error, blob_len, dirty_limit, lease_deadline, handed_over,
         lease_expiries) = _LAYOUT.unpack_from(self._mm, 0)
        blob = bytes(self._mm[_BLOB_OFF:_BLOB_OFF + min(blob_len, BLOB_MAX)])
        return ControlState(cmd_seq, cmd, throttle, _text(want_loc), _text(want_tag), ack_seq,
                            state, pid, heartbeat, _text(loc), _text(tag), _text(error), blob,
                            dirty_limit, lease_deadline, handed_over, lease_expiries)

    def _write(self, **fields: object) -> None:
        assert self._mm is not None
        cur = self._read()
        values = {**cur.__dict__, **fields}
        _LAYOUT.pack_into(
            self._mm, 0, MAGIC, values["cmd_seq"], values["cmd"], values["throttle"],
            str(values["want_location"]).encode(), str(values["want_tag"]).encode(),
            values["ack_seq"], values["state"], values["pid"], values["heartbeat"],
            str(values["location"]).encode(), str(values["tag"]).encode(),
            str(values["error"]).encode("ascii", "replace")[:127], len(values["blob"]),
            values["dirty_limit"], values["lease_deadline"], values["handed_over"],
            values["lease_expiries"])
        blob = bytes(values["blob"])  # type: ignore[arg-type]
        self._mm[_BLOB_OFF:_BLOB_OFF + len(blob)] = blob

    def snapshot(self) -> ControlState:
        with self._locked():
            return self._read()

    def close(self) -> None:
        if self._mm is None:
            return
        mm, self._mm = self._mm, None
        mm.close()
        os.close(self._fd)

    # --- controller side -------------------------------------------------------------------------

    def _request(self, kind: int, **fields: object) -> int:
        with self._locked():
            seq = self._read().cmd_seq + 1
            self._write(cmd=kind, **fields)
            struct.pack_into("<Q", self._mm, _CMD_SEQ_OFF, seq)   # last: publishes the command
        return seq

    def pause(self, timeout: float = 5.0, lease_s: float = LEASE_S) -> None:
        """Return once the guest acknowledged PAUSE: it makes no more writes.  The pause is
        leased for ``lease_s``: renew it (``migrator.guest.lease.renew``) or the guest resumes
        by itself once it runs out."""
        seq = self._request(CMD_PAUSE, lease_deadline=time.monotonic() + check_lease(lease_s),
                            handed_over=0)
        self.wait_ack(seq, PAUSED, timeout, "pause")

    def resume(self, timeout: float = 5.0) -> None:
        seq = self._request(CMD_RUN, handed_over=0)
        self.wait_ack(seq, RUNNING, timeout, "resume")

    def transact(self, change: Callable[[ControlState], dict | None]) -> ControlState:
        """Read the block and write ``change(state)``'s fields (None: nothing) under the lock,
        in one step; returns the state read."""
        with self._locked():
            cur = self._read()
            fields = change(cur)
            if fields:
                self._write(**fields)
            return cur

    def set_throttle(self, frac: float) -> None:
        """Takes effect at the guest's next batch (no acknowledgement awaited)."""
        self._set(throttle=check_throttle(frac))

    def set_dirty_limit(self, bytes_per_s: float | None) -> None:
        """Cap the guest's page-write rate at ``bytes_per_s`` (None or 0 lifts the cap); takes
        effect at the guest's next batch, no acknowledgement awaited, like the throttle."""
        self._set(dirty_limit=check_dirty_limit(bytes_per_s))

    def _set(self, **fields: object) -> None:
        """A field the guest reads on every command turn: written, then ``cmd_seq`` bumped."""
        with self._locked():
            cur = self._read()
            self._write(**fields)
            struct.pack_into("<Q", self._mm, _CMD_SEQ_OFF, cur.cmd_seq + 1)

    def switch(self, tag: str, location: str, timeout: float = 10.0) -> None:
        """Paused guest: attach memory ``tag``, take ``location``, resume (acknowledged)."""
        check_name("tag", tag, 16)
        check_location(location)
        seq = self._request(CMD_SWITCH, want_tag=tag, want_location=location)
        self.wait_ack(seq, RUNNING, timeout, f"switch to {tag}")

    def wait_ready(self, timeout: float = 10.0, stale_s: float = 3.0) -> ControlState:
        """Wait until a guest has started on this block (state running or paused)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if snap.state in (RUNNING, PAUSED) and snap.pid > 0:
                return snap
            self._check_alive(snap, "start", stale_s)
            if time.monotonic() >= deadline:
                state = STATE_NAMES.get(snap.state, snap.state)
                raise GuestTimeoutError(f"guest on {self.path.name} not ready after "
                                        f"{timeout:g} s (state {state})")
            time.sleep(0.005)

    def wait_ack(self, seq: int, want: int, timeout: float, what: str,
                 stale_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if snap.state == EXITED:
                self._check_alive(snap, what, stale_s)
            if snap.ack_seq >= seq:
                if snap.ack_seq == seq and snap.error:
                    raise GuestError(f"guest refused {what}: {snap.error}")
                if snap.ack_seq == seq and snap.state != want:
                    raise GuestError(f"guest acknowledged {what} in state "
                                     f"{STATE_NAMES.get(snap.state, snap.state)}")
                return
            self._check_alive(snap, what, stale_s)
            if time.monotonic() >= deadline:
                raise GuestTimeoutError(f"guest pid {snap.pid} did not acknowledge {what} "
                                        f"within {timeout:g} s")
            time.sleep(0.0002)

    def _check_alive(self, snap: ControlState, what: str, stale_s: float) -> None:
        if snap.state == EXITED:
            raise GuestDiedError(f"guest pid {snap.pid} exited before acknowledging {what}"
                            + (f": {snap.error}" if snap.error else ""))
        if snap.pid > 0 and not process_alive(snap.pid):
            raise GuestDiedError(f"guest pid {snap.pid} is dead (waiting for {what})")
        if snap.pid > 0 and snap.heartbeat > 0:
            age = time.monotonic() - snap.heartbeat
            if age > stale_s:
                raise GuestDiedError(f"guest pid {snap.pid} has not beaten for {age:.1f} s "
                                f"(waiting for {what})")

    # --- guest side ------------------------------------------------------------------------------

    def guest_start(self, pid: int, location: str, tag: str, state: int = RUNNING) -> int:
        """Announce the guest; returns the command sequence it starts from (already applied)."""
        with self._locked():
            cur = self._read()
            self._write(pid=pid, location=location, tag=tag, state=state,
                        heartbeat=time.monotonic(), ack_seq=cur.cmd_seq, error="")
            return cur.cmd_seq

    def poll(self, applied_seq: int) -> Command | None:
        """The newest command if there is one after ``applied_seq`` (cheap when there is not)."""
        assert self._mm is not None
        (seq,) = struct.unpack_from("<Q", self._mm, _CMD_SEQ_OFF)
        if seq == applied_seq:
            return None
        snap = self.snapshot()
        return Command(snap.cmd_seq, snap.cmd, snap.throttle, snap.want_location, snap.want_tag,
                       snap.dirty_limit)

    def ack(self, seq: int, state: int, *, location: str, tag: str, error: str = "",
            blob: bytes = b"", also: dict | None = None) -> None:
        """The command's outcome, in one write with ``also`` (a switch's cleared lease: a
        reader never sees the lease gone while the guest still names the source memory)."""
        if len(blob) > BLOB_MAX:
            raise ValueError(f"state blob of {len(blob)} bytes, at most {BLOB_MAX}")
        with self._locked():
            self._write(ack_seq=seq, state=state, location=location, tag=tag, error=error,
                        blob=blob, heartbeat=time.monotonic(), **(also or {}))

    def beat(self) -> None:
        """Heartbeat: one aligned 8-byte store, no lock (readers tolerate any recent value)."""
        assert self._mm is not None
        struct.pack_into("<d", self._mm, _HEARTBEAT_OFF, time.monotonic())

    def guest_exit(self, error: str = "") -> None:
        with self._locked():
            self._write(state=EXITED, error=error)
