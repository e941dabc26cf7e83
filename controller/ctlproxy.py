"""A TCP relay that delays both directions: the control channel of switches at a remote site.

A real two-site deployment has its controller at one site; the other site's switches talk to it
across the WAN. The OpenFlow channel is loopback TCP here, so this relay puts the control RTT on
it: bytes read at t are written at t + delay (each direction ``rtt / 2``), in order.
``python -m controller.ctlproxy --listen 16653 --upstream 6653 --delay-ms 75``. Timers are the
event loop's, so each direction is exact to about a millisecond.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ground.delayq import deliver_due
from ground.protocol import Kind, say

log = logging.getLogger("wanmig.ctlproxy")
CHUNK = 65536


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    task = asyncio.create_task(deliver_due(queue, writer))
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay_s, data))
    except ConnectionError:
        pass
    queue.put_nowait((loop.time() + delay_s, b""))
    try:
        await task
    except ConnectionError:
        pass


async def serve(listen: int, upstream: int, delay_s: float, host: str) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection(host, upstream)
        except OSError as exc:
            log.warning("upstream %s:%d: %s", host, upstream, exc)
            c_writer.close()
            return
        await asyncio.gather(pump(c_reader, u_writer, delay_s),
                             pump(u_reader, c_writer, delay_s), return_exceptions=True)

    server = await asyncio.start_server(handle, host, listen)
    say(Kind.READY, port=listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controller.ctlproxy", description=__doc__)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    if not args.delay_ms >= 0:
        p.error(f"--delay-ms: got {args.delay_ms}, expected at least 0")
    logging.basicConfig(level=logging.INFO, format="ctlproxy: %(message)s")
    asyncio.run(serve(args.listen, args.upstream, args.delay_ms / 1e3, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
