"""What the forwarding logic asks the switches to do, as plain data (no os-ken import).

The os-ken adapter (controller/app.py) turns these into OpenFlow 1.3 messages; unit tests read
them directly. Matches are tuples of (field, value) pairs with OpenFlow 1.3 OXM field names.
"""

from __future__ import annotations

from dataclasses import dataclass

# The pipeline (Faucet-like): table 0 admits frames whose source is known at that port (or that
# come from another switch), table 1 forwards to known destinations, table 2 floods on the tree.
T_SRC, T_DST, T_FLOOD = 0, 1, 2
P_PROBE, P_LINK, P_HOST, P_MISS = 300, 200, 100, 0

Match = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class FlowMod:
    dpid: int
    table: int
    priority: int
    match: Match
    command: str = "add"                  # 'add' (replaces an identical match) or 'delete'
    output: tuple[int, ...] = ()          # ports to output to, in order
    goto: int | None = None               # next table
    to_controller: bool = False

    def matches(self, **fields: object) -> bool:
        d = dict(self.match)
        return all(d.get(k) == v for k, v in fields.items())


@dataclass(frozen=True)
class PacketOut:
    dpid: int
    in_port: int | None                   # None: sent by the controller itself (a probe)
    output: tuple[int, ...]
    data: bytes


@dataclass(frozen=True)
class Barrier:
    dpid: int
    tag: int                              # the decision it confirms (see Fabric.barrier_reply)


Message = FlowMod | PacketOut | Barrier
