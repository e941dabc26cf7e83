"""Which queued migration starts when: concurrency limits and an ordering policy, nothing else.

Why a pure class: the testbed run and the fleet model (``fleetmodel``) both ask it, so the
predicted makespan and the measured one come from the same decisions.

Limits (``Limits``), as vCenter counts them: a running move counts against its source host and
its destination host alike (``per_host``), against every WAN link it crosses (``per_link``) and
against the whole fleet (``overall``). One VM moves once at a time, and the moves of one VM
start in their ``seq`` order whatever the policy says.

Ordering (``ORDERS``): the policy sorts the queue, and ``startable`` walks it taking every move
that fits. There is no head-of-line blocking: a move that cannot start now (its host or link is
full, its VM is busy) does not stop a later move that can; it stays queued and is looked at
again, first in its place, at the next call.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from experiments.fleet.types import Move
from ground.config import ConfigError

log = logging.getLogger(__name__)

ORDERS = ("scheduled", "smallest-memory", "lowest-dirty-rate", "largest-cost")

# vCenter's default limits on concurrent vMotions per host: 4 on a 1 GbE vMotion network,
# 8 on 10 GbE or faster ("Limits on Simultaneous Migrations", vSphere documentation).
ANCHOR_1GBE = 4
ANCHOR_10GBE = 8
TEN_GBE_MBPS = 10_000.0

LinksOf = Callable[[str, str], tuple[int, ...]]


@dataclass(frozen=True)
class Limits:
    """Concurrency limits; ``None`` = unlimited, otherwise at least 1."""

    overall: int | None = None
    per_host: int | None = None
    per_link: int | None = None

    def __post_init__(self) -> None:
        for key in ("overall", "per_host", "per_link"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"execution.limits.{key}", value,
                                  "an integer >= 1, or None for unlimited")


def default_limits(nic_mbps: float | None) -> Limits:
    """vCenter's anchors: 4 concurrent moves per host below 10 GbE, 8 at 10 GbE and faster;
    the same number per link; no overall limit. ``None`` (the NIC's speed unknown) takes the
    1 GbE anchor, the cautious one."""
    n = ANCHOR_10GBE if nic_mbps is not None and nic_mbps >= TEN_GBE_MBPS else ANCHOR_1GBE
    return Limits(overall=None, per_host=n, per_link=n)


def order_key(order: str) -> Callable[[Move], tuple]:
    """The sort key of an ordering policy; ``seq`` breaks every tie."""
    if order == "scheduled":
        return lambda m: (m.seq,)
    if order == "smallest-memory":
        return lambda m: (m.memory_bytes, m.seq)
    if order == "lowest-dirty-rate":
        return lambda m: (m.dirty_rate_Bps, m.seq)
    if order == "largest-cost":
        return lambda m: (-m.cost.time_s, m.seq)
    raise ConfigError("execution.order", order, f"one of {', '.join(ORDERS)}")


class Scheduler:
    """Queued and running moves under ``limits``; ``links_of(source, destination)`` gives the
    WAN links (1-based) a move crosses, empty inside a site. Moves are told apart by ``seq``."""

    def __init__(self, limits: Limits, order: str, links_of: LinksOf) -> None:
        self._key = order_key(order)
        self._limits = limits
        self._order = order
        self._links_of = links_of
        self._queued: dict[int, Move] = {}
        self._running: dict[int, Move] = {}
        self._links: dict[int, tuple[int, ...]] = {}

    def links(self, move: Move) -> tuple[int, ...]:
        """The links a submitted move crosses (asked of ``links_of`` once, at submission)."""
        return self._links[move.seq]

    def submit(self, move: Move) -> None:
        """Queue ``move``; a move to its own host, or a ``seq`` already known, is refused."""
        if move.source == move.destination:
            raise ValueError(f"move {move.seq} of {move.vm}: source and destination are both "
                             f"{move.source!r}")
        if move.seq in self._queued or move.seq in self._running:
            raise ValueError(f"move {move.seq} of {move.vm}: seq already queued or running")
        self._links[move.seq] = tuple(self._links_of(move.source, move.destination))
        self._queued[move.seq] = move
        log.debug("queued move %d: %s %s -> %s", move.seq, move.vm, move.source,
                  move.destination)

    def startable(self) -> list[Move]:
        """The queued moves that can start now, in the policy's order; they are marked running.

        Each is taken if, counting the running ones and those taken before it in this call,
        the overall, per-host (both ends) and per-link limits still hold and its VM is neither
        moving nor has an earlier (lower ``seq``) move still queued."""
        lim = self._limits
        hosts: Counter[str] = Counter()
        links: Counter[int] = Counter()
        for m in self._running.values():
            hosts.update((m.source, m.destination))
            links.update(self._links[m.seq])
        busy = {m.vm for m in self._running.values()}
        first_of: dict[str, int] = {}
        for m in self._queued.values():
            first_of[m.vm] = min(m.seq, first_of.get(m.vm, m.seq))
        count = len(self._running)
        taken: list[Move] = []
        for m in sorted(self._queued.values(), key=self._key):
            if lim.overall is not None and count + 1 > lim.overall:
                break                       # nothing else can start either
            if m.vm in busy or first_of[m.vm] != m.seq:
                continue
            if lim.per_host is not None and any(hosts[h] + 1 > lim.per_host
                                                for h in (m.source, m.destination)):
                continue
            crossed = self._links[m.seq]
            if lim.per_link is not None and any(links[k] + 1 > lim.per_link for k in crossed):
                continue
            taken.append(m)
            count += 1
            busy.add(m.vm)
            hosts.update((m.source, m.destination))
            links.update(crossed)
        for m in taken:
            del self._queued[m.seq]
            self._running[m.seq] = m
            log.debug("start move %d: %s %s -> %s", m.seq, m.vm, m.source, m.destination)
        return taken

    def finished(self, move: Move) -> None:
        """``move`` ended (done or failed): its slots are free."""
        if self._running.pop(move.seq, None) is None:
            raise ValueError(f"move {move.seq} of {move.vm} is not running")
        del self._links[move.seq]
        log.debug("finished move %d: %s", move.seq, move.vm)

    def cancel(self, vm: str) -> list[Move]:
        """Remove ``vm``'s queued moves (not a running one) and return them in ``seq`` order."""
        gone = sorted((m for m in self._queued.values() if m.vm == vm), key=lambda m: m.seq)
        for m in gone:
            del self._queued[m.seq]
            del self._links[m.seq]
        return gone

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def order(self) -> str:
        return self._order

    @property
    def pending(self) -> tuple[Move, ...]:
        """The queued moves, in the policy's order."""
        return tuple(sorted(self._queued.values(), key=self._key))

    @property
    def running(self) -> tuple[Move, ...]:
        """The running moves, in ``seq`` order."""
        return _by_seq(self._running.values())

    @property
    def idle(self) -> bool:
        return not self._queued and not self._running


def _by_seq(moves: Iterable[Move]) -> tuple[Move, ...]:
    return tuple(sorted(moves, key=lambda m: m.seq))
