"""The userspace delay line, for kernels without ``sch_netem``: how a run starts it.

The relay itself is compiled C (``topologies/relay/``, built by ``make setup``:
``topologies.delaybin``); its decisions are those of the reference model
``topologies/linkmodel.py``, tested against it frame for frame. It runs inside the WAN node's
namespace between two interfaces ``a`` and ``b`` (each a veth to a site's border switch):
every frame (IP, ARP, RARP alike) read on one side is sent out of the other when the model
says, after the bottleneck queue at the configured rate, then the delay (with jitter), never
before the frame ahead of it, unless it is lost or tail-dropped.

What it costs is per wake-up, not per frame: frames are read and sent in batches
(``recvmmsg``/``sendmmsg``) with the kernel's receive timestamps; GSO super-frames (up to
64 KiB, what a TSO-capable fabric hands over) are taken and sent whole with their virtio-net
headers, while the model loses, queues and serialises each wire frame of the link's MTU they
stand for (a super-frame one of whose wire frames is lost leaves as the runs of wire frames
around the gap, their headers rewritten). While busy the relay wakes once every ``burst_us``
(``shaping.relay_burst_us``): a frame leaves at most that long after the model's time, never
before; idle, a lone frame leaves on time.

Protocol with the parent (``ground.protocol``): READY with the parameters it runs with, once
its sockets are bound; its counters as JSON in ``--stats`` (rewritten every second and on
exit): per direction (``a_to_b``, ``b_to_a``) wire frames and bytes in and out, the sends and
super-frames, every drop by cause (``drop_loss``, ``drop_queue``, ``drop_ring``: the relay's own
bound, ``drop_oversize``, ``drop_tx``, ``drop_qdisc``, ``drop_fault``: while cut,
``drop_uncut``: survivors of a super-frame that could not be cut, ``drop_veth``: the output
veth's own drops) and the lateness against the model. SIGTERM or SIGINT end it. With
``--control PATH`` it takes runtime changes on a Unix datagram socket there
(``topologies.linkcontrol``).
"""

from __future__ import annotations

from pathlib import Path

from topologies.shaping import (
    Direction,
    relay_burst_us,
    relay_ring_frames,
    relay_sndbuf_bytes,
    relay_store_bytes,
)


def relay_argv(binary: Path, if_a: str, if_b: str, d: Direction, delay_ms: float, seed: int,
               stats: str, control: str) -> list[str]:
    """The command line of the delay line for direction parameters ``d`` (both directions
    are the same), its one-way delay ``delay_ms`` (the configured one less what the fabric
    adds)."""
    return [str(binary), "--if-a", if_a, "--if-b", if_b,
            "--delay-ms", repr(delay_ms), "--jitter-ms", repr(d.jitter_ms),
            "--loss-pct", repr(d.loss_pct), "--mtu", str(d.mtu),
            "--queue-pkts", str(d.queue_pkts),
            *(["--rate-mbps", repr(d.bw_mbps)] if d.bw_mbps is not None else []),
            "--ring-frames", str(relay_ring_frames(d)),
            "--store-bytes", str(relay_store_bytes(d)),
            "--sndbuf", str(relay_sndbuf_bytes(d)),
            "--burst-us", repr(relay_burst_us(delay_ms)),
            "--seed", str(seed), "--stats", stats, "--control", control]
