"""What the guest's disk thread does I/O on: a ``BlockDevice``.

* ``FileDevice``: the image file in this host's datastore (``os.pread``/``os.pwrite``; no
  fsync: the datastore's durability is not what is measured).  The remote disk of the
  ``shared`` policy is another BlockDevice (``migrator.disk.nbdclient``), ``where = 'remote'``.
* ``MirrorLink`` is not a device but the guest's side of write-blocking mirroring: after each
  local write the guest asks the source migrator, over a unix stream socket, to copy those
  sectors to the destination, and the write completes only when it answers.  Socket:
  ``mirror_socket_path(disk)``; request: ``MIRROR_REQUEST.pack(first_sector, nsectors)``;
  reply: ``MIRROR_ACK`` once the destination has the data (``MIRROR_FAILED`` when the copy
  failed; the server is ``migrator.guest.mirrorserve``).  Anything else, EOF, a socket error
  or no answer within ``MIRROR_TIMEOUT_S`` is ``MirrorGone``: the mirror is over (migration
  ended, failed or cancelled) and the local copy stays authoritative.
* ``MirrorSlot`` is how the disk thread holds it: it connects when the socket appears in the
  file system (looking at most every 5 ms, on every tick of the thread, writing or not), and
  drops the link when it goes.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MIRROR_REQUEST = struct.Struct("<QI")
MIRROR_ACK = b"\x01"
MIRROR_FAILED = b"\x00"
# A copy the server has not answered in this long is taken as a mirror gone: the guest's writes
# (and a pause waiting for them) must not hang on a stuck migrator.  Far above any honest copy
# of one block across a 150 ms WAN.
MIRROR_TIMEOUT_S = 10.0
MIRROR_POLL_S = 0.005           # how often the guest looks for the mirror's socket


def mirror_socket_path(disk: Path | str) -> Path:
    """Where the guest of disk image ``disk`` looks for the mirror (beside the image)."""
    return Path(f"{disk}.mirror")


class BlockDevice(Protocol):
    """Byte-addressed I/O on a disk image."""

    where: str                       # 'local' or 'remote': the iolog's path column

    def pread(self, offset: int, n: int) -> bytes: ...

    def pwrite(self, data: bytes, offset: int) -> None: ...

    def close(self) -> None: ...


class FileDevice:
    """A disk image file, opened read-write."""

    where = "local"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"device {self.path} is closed")
        return self._fd

    def pread(self, offset: int, n: int) -> bytes:
        data = os.pread(self._fileno(), n, offset)
        if len(data) != n:
            raise OSError(f"{self.path}: short read at {offset}: {len(data)} of {n} bytes")
        return data

    def pwrite(self, data: bytes, offset: int) -> None:
        written = os.pwrite(self._fileno(), data, offset)
        if written != len(data):
            raise OSError(f"{self.path}: short write at {offset}: {written} of {len(data)} "
                          "bytes")

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class MirrorGone(ConnectionError):  # noqa: N818 - the name the lead integrates against
    """The mirror's server is gone or answered wrongly: mirroring is over."""


class MirrorLink:
    """The guest's connection to the source migrator's mirror socket (one request at a time)."""

    def __init__(self, path: Path | str, timeout_s: float = MIRROR_TIMEOUT_S) -> None:
        self.path = Path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise MirrorGone(f"cannot connect to {self.path}: {exc}") from exc
        self._sock: socket.socket | None = sock

    def copy(self, first_sector: int, nsectors: int) -> None:
        """Returns once the server says the sectors are copied; MirrorGone otherwise."""
        if self._sock is None:
            raise MirrorGone(f"mirror link {self.path} is closed")
        try:
            self._sock.sendall(MIRROR_REQUEST.pack(first_sector, nsectors))
            reply = self._sock.recv(1)
        except OSError as exc:
            raise MirrorGone(f"mirror {self.path}: {exc}") from exc
        if reply != MIRROR_ACK:
            raise MirrorGone(f"mirror {self.path}: " + ("closed" if not reply
                                                         else f"answered {reply!r}"))

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class MirrorSlot:
    """The guest's mirror, if one is offered: connects when the socket appears (looking at most
    every ``MIRROR_POLL_S``), copies while it lasts, drops it when it goes.

    Used by the disk thread only.  A mirror that goes is logged once per link at warning level:
    the local copy is authoritative and the guest goes on.
    """

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._link: MirrorLink | None = None
        self._next_look = 0.0
        self.drops = 0

    @property
    def connected(self) -> bool:
        return self._link is not None

    def look(self) -> MirrorLink | None:
        """The link, connecting first if the socket has appeared (looking at most every
        ``MIRROR_POLL_S``); None while there is none."""
        if self._link is not None:
            return self._link
        now = self._clock()
        if now < self._next_look:
            return None
        self._next_look = now + MIRROR_POLL_S
        if not os.path.exists(self.path):
            return None
        try:
            self._link = MirrorLink(self.path)
        except MirrorGone as exc:         # there but not listening (yet, or any more)
            log.debug("mirror not available: %s", exc)
            return None
        log.info("disk writes mirrored through %s", self.path)
        return self._link

    def copy(self, first_sector: int, nsectors: int) -> bool:
        """True once the mirror has the sectors; False when there is no mirror (now)."""
        link = self.look()
        if link is None:
            return False
        try:
            link.copy(first_sector, nsectors)
        except MirrorGone as exc:
            self.drops += 1
            log.warning("disk mirror gone (%s); the guest's writes go on locally", exc)
            self.drop()
            return False
        return True

    def drop(self) -> None:
        """Close the link, if any (the next copy looks for the socket again)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()
        self._next_look = self._clock() + MIRROR_POLL_S
