"""A resumed VM announces itself as hypervisors do: a burst of RARP frames from its MAC.

QEMU's announce_self defaults: 5 rounds, the first 50 ms after resume, each gap 100 ms longer
than the last (50, 150, 250, 350 ms). The frame is a RARP request (ethertype 0x8035, opcode 3)
with source and target hardware address the VM's MAC and zero protocol addresses, to broadcast.
``python -m migrator.guest.announce --iface vm-eth0 --mac 02:00:...`` says RARP with the
wall-clock time of each frame sent; with ``--iface -`` it loads scapy, says READY and waits for
GO with the interface's name (``ground.protocol``).
"""

from __future__ import annotations

import argparse
import sys
import time

from ground.protocol import Kind, expect, say

RARP_TYPE = 0x8035
RARP_REQUEST = 3


def rarp_frame(mac: str) -> bytes:
    from scapy.layers.l2 import ARP, Ether

    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff", type=RARP_TYPE) / ARP(
        op=RARP_REQUEST, hwsrc=mac, hwdst=mac, psrc="0.0.0.0", pdst="0.0.0.0")
    return bytes(frame)


def gaps_ms(rounds: int = 5, initial_ms: float = 50, step_ms: float = 100) -> list[float]:
    """Time before each frame: the first ``initial_ms`` after resume, then growing by ``step``."""
    return [initial_ms + step_ms * i for i in range(rounds)]


def announce(iface: str, mac: str, rounds: int = 5, initial_ms: float = 50,
             step_ms: float = 100, first_now: bool = False) -> list[float]:
    """Send the burst; returns the wall-clock time of every frame."""
    from scapy.config import conf

    frame = rarp_frame(mac)
    times = []
    # One socket for the burst: sendp() opens one per call, ~0.1 s here, which would stretch
    # QEMU's spacing.
    sock = conf.L2socket(iface=iface)
    try:
        gaps = gaps_ms(rounds, initial_ms, step_ms)
        if first_now:             # QEMU sends the first round at resume, then 50, 150, ... ms
            gaps = [0.0, *gaps[:-1]]
        for gap in gaps:
            if gap:
                time.sleep(gap / 1e3)
            sock.send(frame)
            times.append(time.time())
            say(Kind.RARP, t=times[-1], mac=mac, iface=iface)
    finally:
        sock.close()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migrator.guest.announce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iface", required=True,
                   help="interface, or - to read it from GO on stdin when it is time (the VM "
                        "resumed): scapy is loaded beforehand, so the burst starts at once")
    p.add_argument("--mac", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--first-now", action="store_true", help="send the first frame at once")
    args = p.parse_args(argv)
    iface = args.iface
    if iface == "-":
        import scapy.config  # noqa: F401 - seconds to import: not while the VM waits
        import scapy.layers.l2  # noqa: F401

        say(Kind.READY)
        line = sys.stdin.readline()
        go = expect(line, Kind.GO)
        iface = str(go.fields.get("iface", "")) if go is not None else ""
        if not iface:
            print(f"announce: no GO with an interface on stdin (got {line!r}): nothing sent",
                  file=sys.stderr)
            return 1
        from scapy.config import conf

        conf.ifaces.reload()     # the interface was made after scapy listed them
    announce(iface, args.mac, args.rounds, first_now=args.first_now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
