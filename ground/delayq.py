"""Bytes written out at their due time: the delivery half of the testbed's delayed TCP relays
(the controller's control channel, ``controller/ctlproxy.py``; the migrator's simulated link,
``migrator/transport/simlink.py``). An empty chunk ends the stream; the writer is closed in
every case."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def deliver_due(queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter,
                      on_written: Callable[[int], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            if on_written is not None:
                on_written(len(data))
    finally:
        writer.close()
