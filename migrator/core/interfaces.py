"""What the engine expects from the clock, the guest and the transport (structural types).

Why protocols: the engine only *decides*; everything with side effects is injected, so unit
tests drive it with a fake clock, a numpy "guest" and a fake link, and the real transport and
guest agent implement exactly these methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (time.monotonic for real runs)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (time.sleep for real runs)."""
        ...


class VM(Protocol):
    """The source guest.

    Optional extra methods, used when present: ``save_state() -> bytes``, the paused guest's
    CPU/device state sent in STATE (b"" when absent); ``set_dirty_limit`` (below).
    """

    npages: int

    def read_and_clear_dirty(self) -> np.ndarray:
        """Indices (int) of pages written since the previous call; the log is then empty.
        The first call starts tracking (its result is discarded by the engine)."""
        ...

    def nonzero_pages(self) -> np.ndarray:
        """Indices of pages that are not all zero right now (round 0 sends only these)."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_throttle(self, frac: float) -> None:
        """Slow the vCPUs to ``1 - frac`` of their speed (0 = unthrottled)."""
        ...

    def set_dirty_limit(self, bytes_per_s: float | None) -> None:
        """Optional, used when present: cap the guest's page-write rate at ``bytes_per_s``
        (None or 0 lifts the cap), like QEMU's dirty-limit.  It caps the instantaneous rate
        and applies on top of the throttle: the guest writes ``min(rate * (1 - throttle),
        cap)``.  Lift it wherever the throttle is lifted."""
        ...

    def page_bytes(self, indices: np.ndarray) -> bytes:
        """Current contents of the pages, concatenated in the order given."""
        ...


@dataclass(frozen=True)
class SendReport:
    bytes_raw: int          # guest bytes of the non-zero pages passed in ``data``
    bytes_on_wire: int      # everything the send put on the wire: headers, zero lists, blobs
    seconds: float          # wall time of the send


@dataclass(frozen=True)
class Handed:
    """What a ``send_pages`` call had handed to the transport when it failed part-way."""

    pages: int = 0          # non-zero pages whose every frame was handed over
    zero_pages: int = 0
    bytes_raw: int = 0      # guest bytes of those pages
    bytes_on_wire: int = 0  # every frame handed over, the last page's partial ones included


class PartialSendError(Exception):
    """``send_pages`` failed after handing some of its pages over: ``handed`` says how much,
    so that an aborted migration reports what it sent; the message is the cause's."""

    def __init__(self, cause: BaseException, handed: Handed) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause, self.handed = cause, handed


@dataclass(frozen=True)
class WireCounts:
    """What the sockets of the data streams took, migration frames only (no handshake)."""

    written: int            # wire bytes written into the sockets
    acked: int | None       # of those, acknowledged by the destination's TCP (None: unknown)


def wire_fields(sender: object) -> dict:
    """``bytes_sent``/``bytes_acked`` of a result from the sender's optional
    ``wire_counts()``; nothing when it has none."""
    counts = getattr(sender, "wire_counts", None)
    c = counts() if callable(counts) else None
    return {} if c is None else {"bytes_sent": c.written, "bytes_acked": c.acked}


@dataclass(frozen=True)
class FinishReport:
    ok: bool                # the destination ACKed and will run the guest
    digest_ok: bool         # the destination's memory digest matched ours
    verify_s: float         # time the destination spent verifying (informational)
    error: str | None = None


class Sender(Protocol):
    """The source side of the transport.

    Optional, used when present (a pipelined transport has them): ``backlog_bytes() -> int``,
    the bytes handed over and not yet acknowledged; ``wait_backlog(max_bytes, timeout_s)``,
    wait until at most that many are; ``drain(timeout_s)``, the same down to nothing before
    the guest is paused (pacing the streams for what follows); ``wire_counts() ->
    WireCounts``, what its sockets took and the destination acknowledged so far (reported in
    the result: an aborted migration says how far it went).

    A ``send_pages`` that fails after handing over part of its pages raises ``PartialSendError``
    with the part (any other exception means nothing of that call was handed over).
    """

    def send_pages(self, round_no: int, indices: np.ndarray, data: bytes, codec_name: str,
                   zero_indices: np.ndarray | None = None) -> SendReport:
        """Encode ``data`` (the non-zero pages ``indices``, concatenated) with the codec and send
        it, plus the all-zero pages ``zero_indices`` as a bare list.  Blocks until the data is
        handed to the kernel (pipelined: no per-call round trip).  Enforces any bandwidth cap."""
        ...

    def measured_goodput_Bps(self) -> float:  # noqa: N802
        """The transfer rate, wire bytes/s, estimated over the continuous stream (intervals
        in which the sender had nothing to send do not lower it); 0 if nothing measured yet."""
        ...

    def rtt_s(self) -> float: ...

    def finish(self, state: bytes) -> FinishReport:
        """Send STATE and DIGEST, wait for the destination's ACK.  May raise on a broken link."""
        ...
