"""Where each host is: learnt from frames on edge ports only, moved when it shows up elsewhere.

The flapping guard: a MAC that moves again within ``hold_s`` of its last applied move is not
moved at once; its newest location is kept as pending and applied when the hold expires (the
latest sighting wins). A migration moves a VM once, so it is applied immediately; a MAC bouncing
between two ports costs at most one move per ``hold_s``, not a flow-mod storm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Location = tuple[int, int]      # (dpid, port)


@dataclass
class HostEntry:
    mac: str
    location: Location
    learned_at: float
    last_seen: float
    moved_at: float = float("-inf")
    moves: int = 0
    pending: Location | None = None     # held back by the flapping guard


@dataclass(frozen=True)
class Sighting:
    """What a frame from ``mac`` at ``location`` means for the host table."""

    kind: str                  # 'new', 'same', 'move', 'held'
    mac: str
    location: Location
    previous: Location | None = None


@dataclass
class HostTable:
    hold_s: float = 1.0
    hosts: dict[str, HostEntry] = field(default_factory=dict)   # mac => entry

    def get(self, mac: str) -> HostEntry | None:
        return self.hosts.get(mac)

    def see(self, now: float, mac: str, location: Location) -> Sighting:
        """Record that ``mac`` sent a frame into edge port ``location`` at ``now``."""
        entry = self.hosts.get(mac)
        if entry is None:
            self.hosts[mac] = HostEntry(mac, location, now, now)
            return Sighting("new", mac, location)
        entry.last_seen = now
        if entry.location == location:
            entry.pending = None
            return Sighting("same", mac, location)
        if now - entry.moved_at < self.hold_s:
            entry.pending = location
            return Sighting("held", mac, location, entry.location)
        return self._move(entry, now, location)

    def _move(self, entry: HostEntry, now: float, location: Location) -> Sighting:
        previous = entry.location
        entry.location = location
        entry.moved_at = now
        entry.moves += 1
        entry.pending = None
        return Sighting("move", entry.mac, location, previous)

    def due_pending(self, now: float) -> list[Sighting]:
        """Moves held by the guard whose hold has expired: apply them now."""
        out = []
        for entry in self.hosts.values():
            if entry.pending is not None and now - entry.moved_at >= self.hold_s:
                out.append(self._move(entry, now, entry.pending))
        return out

    def next_pending_at(self) -> float | None:
        times = [e.moved_at + self.hold_s for e in self.hosts.values() if e.pending is not None]
        return min(times) if times else None

    def forget_port(self, location: Location) -> list[str]:
        """Hosts learnt on a port that turned out to join two switches: forget them."""
        gone = [m for m, e in self.hosts.items() if e.location == location]
        for mac in gone:
            del self.hosts[mac]
        return gone

    def forget_switch(self, dpid: int) -> list[str]:
        gone = [m for m, e in self.hosts.items() if e.location[0] == dpid]
        for mac in gone:
            del self.hosts[mac]
        return gone
