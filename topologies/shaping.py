"""How a WAN link's round-trip figures become per-direction parameters and tc commands.

Splitting (the same in both directions, so the link is symmetric):
- delay: ``rtt_ms / 2`` each way;
- jitter: ``jitter_ms`` is the standard deviation of the RTT; each direction gets an independent
  normal jitter of ``jitter_ms / sqrt(2)``, so the RTT's standard deviation is ``jitter_ms``;
- loss: ``loss_pct`` is the round-trip loss a ping sees; each direction drops independently with
  ``p1 = 1 - sqrt(1 - p)``, so that ``1 - (1 - p1)^2 = p``.

Where the qdiscs sit: on the egress interfaces of the WAN link's own node (``wl<k>``), never on
an Open vSwitch port. With OVS's userspace datapath every frame queued in a port's qdisc is still
charged to the one AF_PACKET socket ovs-vswitchd sends with (212 KB by default): a netem delay or
an HTB queue there overflows it and OVS drops frames silently, before the configured queue is
full (measured: 4 % of a 100 Mbit/s TCP flow lost inside OVS, none in the qdisc). Frames that
cross a veth into the WAN node belong to no socket, so its qdiscs behave as a router's would.

Commands are built as argv lists here and run elsewhere (as Mininet's ``bwCmds``/``delayCmds``
do), so they are unit-tested without a kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from topologies.spec import WanLinkSpec

ETH_HEADER = 14
# Unshaped netem still needs room for every frame in flight; sized for 10 Gbit/s.
UNSHAPED_RATE_MBPS = 10_000.0


@dataclass(frozen=True)
class Direction:
    """What one direction of a WAN link does to every frame."""

    delay_ms: float
    jitter_ms: float     # standard deviation of a normal distribution
    loss_pct: float
    bw_mbps: float | None
    queue_pkts: int
    mtu: int

    @property
    def frame_bytes(self) -> int:
        return self.mtu + ETH_HEADER

    def in_flight_pkts(self) -> int:
        """Full-size frames inside the delay at the line rate."""
        rate = self.bw_mbps if self.bw_mbps is not None else UNSHAPED_RATE_MBPS
        delay_s = (self.delay_ms + 3 * self.jitter_ms) / 1e3
        return math.ceil(rate * 1e6 / 8 * delay_s / self.frame_bytes)


def split_link(link: WanLinkSpec) -> Direction:
    """One direction of ``link`` (both directions are the same)."""
    p = link.loss_pct / 100.0
    one_way_loss = (1.0 - math.sqrt(1.0 - p)) * 100.0
    return Direction(delay_ms=link.rtt_ms / 2.0, jitter_ms=link.jitter_ms / math.sqrt(2.0),
                     loss_pct=one_way_loss, bw_mbps=link.bw_mbps,
                     queue_pkts=link.queue_pkts, mtu=link.mtu)


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def htb_burst_bytes(bw_mbps: float, mtu: int) -> int:
    """Bucket of one millisecond at the rate, never below ten full frames."""
    return max(10 * (mtu + ETH_HEADER), math.ceil(bw_mbps * 1e6 / 8 * 1e-3))


def netem_args(d: Direction) -> list[str]:
    """The netem options for one direction; its limit covers the queue and the frames in flight."""
    args = ["netem", "limit", str(d.queue_pkts + d.in_flight_pkts())]
    if d.delay_ms > 0 or d.jitter_ms > 0:
        args += ["delay", f"{_fmt(d.delay_ms * 1000)}us"]
        if d.jitter_ms > 0:
            args += [f"{_fmt(d.jitter_ms * 1000)}us", "distribution", "normal"]
    if d.loss_pct > 0:
        args += ["loss", "random", f"{_fmt(d.loss_pct)}%"]
    return args


def shaping_cmds(dev: str, d: Direction, leaf: list[str]) -> list[list[str]]:
    """Commands that give ``dev`` an HTB root at ``d.bw_mbps`` with ``leaf`` as its queue.

    Without a rate, ``leaf`` becomes the root qdisc itself.
    """
    if d.bw_mbps is None:
        return [["tc", "qdisc", "replace", "dev", dev, "root", "handle", "10:", *leaf]]
    kbit = max(1, round(d.bw_mbps * 1000))
    burst = htb_burst_bytes(d.bw_mbps, d.mtu)
    return [
        ["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
        ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
         "rate", f"{kbit}kbit", "ceil", f"{kbit}kbit", "burst", str(burst), "cburst", str(burst),
         "quantum", str(10 * d.frame_bytes)],
        ["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *leaf],
    ]


def netem_cmds(dev: str, d: Direction) -> list[list[str]]:
    """Kernel backend: rate by HTB, then delay, jitter and loss by netem, on one egress."""
    return shaping_cmds(dev, d, netem_args(d))


def delayline_shaping_cmds(dev: str, d: Direction) -> list[list[str]]:
    """Delay-line backend on a link with nothing to delay (no RTT, loss or jitter): the kernel
    forwards and shapes (HTB + a FIFO of ``queue_pkts`` full frames, counted in bytes: a GSO
    super-frame is one packet to a qdisc but many wire frames); without a rate nothing is
    needed. Where there is a delay, the relay does the rate itself (topologies/linkmodel.py
    says why)."""
    if d.bw_mbps is None:
        return []
    return shaping_cmds(dev, d, ["bfifo", "limit", str(d.queue_pkts * d.frame_bytes)])


def redirect_cmds(dev_in: str, dev_out: str) -> list[list[str]]:
    """Kernel forwarding through the WAN node: every frame arriving on ``dev_in`` leaves by
    ``dev_out``'s egress (and its qdiscs); used where no userspace relay is needed."""
    return [["tc", "qdisc", "add", "dev", dev_in, "handle", "ffff:", "ingress"],
            ["tc", "filter", "add", "dev", dev_in, "parent", "ffff:", "protocol", "all", "u32",
             "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", dev_out]]


# What the relay is sized for on an unshaped link: about what it carries here with GSO.
RELAY_UNSHAPED_MBPS = 10_000.0
# While busy the relay wakes once every burst (topologies/delayline.py): at most 1 ms (Linux's
# TSO autosizing puts about 1 ms of a flow's data in one super-frame, so a unit is about one
# super-frame), at most half the one-way delay (no frame may be read after it is due), at
# least 50 us (a relay at no delay, for the rate alone).
RELAY_BURST_MAX_US = 1000.0
RELAY_BURST_MIN_US = 50.0


def _relay_in_flight_bytes(d: Direction) -> float:
    rate = d.bw_mbps if d.bw_mbps is not None else RELAY_UNSHAPED_MBPS
    return rate * 1e6 / 8 * (d.delay_ms + 4 * d.jitter_ms) / 1e3


def relay_ring_frames(d: Direction) -> int:
    """Wire frames the relay may hold per direction: twice the full-size frames of its queue
    and of those inside the delay, at least 4096. A small frame counts as one too, so a flood
    of tiny frames fills it sooner: those are counted drops (``drop_ring``)."""
    in_flight = math.ceil(_relay_in_flight_bytes(d) / d.frame_bytes)
    return max(4096, 2 * (d.queue_pkts + in_flight))


def relay_store_bytes(d: Direction) -> int:
    """Bytes the relay may hold per direction: twice its queue and what is inside the delay,
    and 8 MiB (reserved, not touched until frames fill it)."""
    return int(2 * (d.queue_pkts * d.frame_bytes + _relay_in_flight_bytes(d))) + (8 << 20)


def relay_sndbuf_bytes(d: Direction) -> int:
    """The relay's send buffer: room for a burst of released frames (4 KiB covers one frame's
    kernel footprint); its output has no qdisc, so frames do not wait there."""
    return max(16 << 20, 1024 * max(4096, 2 * d.frame_bytes))


def relay_burst_us(delay_ms: float) -> float:
    """The relay's wake-up period while busy, for a one-way delay of ``delay_ms``."""
    return min(RELAY_BURST_MAX_US, max(RELAY_BURST_MIN_US, delay_ms * 1000 / 2))


def clear_cmds(dev: str) -> list[list[str]]:
    return [["tc", "qdisc", "del", "dev", dev, "root"]]
