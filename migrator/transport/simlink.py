"""A TCP relay on this machine that gives loopback migrations an RTT and a bottleneck rate.

Why: ``wanmig migrate --loopback --rtt-sim MS --bw-sim MBPS`` lets the transport be tried with a
long fat pipe without Mininet or root.  Every byte read at ``t`` is written at
``departure + rtt/2`` where ``departure`` serialises the bytes of ALL connections in that
direction at the rate (one shared bottleneck, FIFO, like a WAN link), so parallel streams share
the rate instead of each getting it.  The relay stops reading a direction while more than
``queue_bytes`` are held in it, which pushes back on the sender's TCP as a full router queue
would (without drops: this is not a loss model; the Mininet WAN link is).  Same design as
``controller.ctlproxy`` (asyncio, event-loop timers, about a millisecond of accuracy).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from ground.delayq import deliver_due

log = logging.getLogger(__name__)
CHUNK = 65536


@dataclass
class _Direction:
    rate_Bps: float | None       # noqa: N815
    limit: int
    next_free: float = 0.0
    held: int = 0
    relayed: int = 0


class SimLink:
    """``start()`` returns the address to connect to instead of ``upstream``; ``stop()``."""

    def __init__(self, upstream: tuple[str, int], rtt_s: float, rate_Bps: float | None = None,  # noqa: N803
                 queue_bytes: int | None = None, host: str = "127.0.0.1") -> None:
        if rtt_s < 0:
            raise ValueError(f"rtt_s must be >= 0, got {rtt_s}")
        if rate_Bps is not None and not rate_Bps > 0:
            raise ValueError(f"rate must be > 0 bytes/s, got {rate_Bps}")
        self.upstream, self.delay, self.host = upstream, rtt_s / 2, host
        if queue_bytes is None:
            bdp = (rate_Bps or 1.25e9) * rtt_s
            queue_bytes = int(max(256 * 1024, bdp))   # a router queue of one BDP
        self.fwd = _Direction(rate_Bps, queue_bytes)
        self.rev = _Direction(rate_Bps, queue_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._addr: tuple[str, int] | None = None
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 5.0) -> tuple[str, int]:
        self._thread = threading.Thread(target=self._main, name="wanmig-simlink", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._addr is None:
            self.stop()
            raise RuntimeError(f"simulated link did not start: {self._error}")
        return self._addr

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> SimLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- event loop ------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task] = set()

        async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                u_reader, u_writer = await asyncio.open_connection(*self.upstream)
            except OSError as exc:
                log.warning("simlink: upstream %s:%d: %s", *self.upstream, exc)
                c_writer.close()
                return
            try:
                await asyncio.gather(self._pump(c_reader, u_writer, self.fwd),
                                     self._pump(u_reader, c_writer, self.rev),
                                     return_exceptions=True)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(handle, self.host, 0)
        self._addr = server.sockets[0].getsockname()[:2]
        self._ready.set()
        async with server:
            await self._stop.wait()
            for task in list(tasks):
                task.cancel()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    d: _Direction) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        def written(n: int) -> None:
            d.held -= n
            d.relayed += n

        task = asyncio.create_task(deliver_due(queue, writer, written))
        try:
            while data := await reader.read(CHUNK):
                while d.held > d.limit:
                    await asyncio.sleep(0.001)
                now = loop.time()
                if d.rate_Bps is not None:
                    d.next_free = max(now, d.next_free) + len(data) / d.rate_Bps
                    due = d.next_free + self.delay
                else:
                    due = now + self.delay
                d.held += len(data)
                queue.put_nowait((due, data))
        except ConnectionError:
            pass
        queue.put_nowait((loop.time() + self.delay, b""))
        try:
            await task
        except ConnectionError:
            pass
