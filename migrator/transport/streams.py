"""The data streams of a migration: the set in use, one more opened in the background when the
stream adapter asks for it (``flowctl.StreamAdapter``, from the measured goodput), and the
stream a frame goes to."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from migrator.transport.channel import TransportError
from migrator.transport.datastream import DataStream
from migrator.transport.flowctl import GoodputMeter, StreamAdapter

log = logging.getLogger(__name__)


class StreamPool:
    def __init__(self, open_stream: Callable[[int], DataStream], adapter: StreamAdapter,
                 meter: GoodputMeter, adapt_interval_s: float,
                 on_change: Callable[[int], None]) -> None:
        """``open_stream(index)`` opens one more stream (in a thread of its own);
        ``on_change(n)`` is told the stream count after each change."""
        self._open_stream, self.adapter, self.meter = open_stream, adapter, meter
        self.adapt_interval_s = adapt_interval_s
        self._on_change = on_change
        self.streams: list[DataStream] = []
        self._next_index = 0
        self._opening: threading.Thread | None = None
        self._opened: list[DataStream] = []
        self._lock = threading.Lock()
        self._frozen = False

    def adopt(self, streams: list[DataStream]) -> None:
        """The streams opened at the start."""
        self.streams.extend(streams)
        self._next_index = max((s.index for s in self.streams), default=-1) + 1

    def freeze(self) -> None:
        """The streams in use are the last ones: none is opened or taken into use from now on
        (the end of pre-copy). A stream taken into use at the pause is in slow start, and the
        final copy sent on it waited for its window to grow, at 150 ms for several round trips
        of downtime (measured: 870 ms of verify against 235). One opened meanwhile and never
        used carries nothing; the destination does not wait for it, ``close`` closes it."""
        with self._lock:
            self._frozen = True
        self.adapter.frozen = True

    def adapt(self) -> None:
        """Use a stream opened meanwhile; or, every ``adapt_interval_s`` of busy time, ask the
        adapter and open one more in the background if it says so."""
        with self._lock:
            if self._frozen:
                return
            if self._opened:
                self.streams.extend(self._opened)
                self._opened.clear()
                self.meter.reset()
                self._on_change(len(self.streams))
                log.info("now %d data streams", len(self.streams))
                return
        if self._opening is not None and self._opening.is_alive():
            return
        if self.adapter.frozen or self.meter.busy_s() < self.adapt_interval_s:
            return
        target = self.adapter.observe(len(self.streams), self.meter.rate_Bps())
        if target > len(self.streams):
            index = self._next_index
            self._next_index += 1
            self._opening = threading.Thread(target=self._open_more, args=(index,),
                                             name=f"wanmig-open{index}", daemon=True)
            self._opening.start()

    def _open_more(self, index: int) -> None:
        try:
            stream = self._open_stream(index)
        except Exception as exc:  # noqa: BLE001 - growing is optional; keep what we have
            log.warning("could not add data stream %d: %s", index, exc)
            self.adapter.frozen = True
            return
        with self._lock:
            self._opened.append(stream)

    def with_room(self, deadline: float, failed: Callable[[], Exception | None]) -> DataStream:
        """The least-queued stream whose queue has room, waiting until one has. Never one
        stream in particular: a stream just added is in slow start, and waiting on its full
        queue starves the others (measured: 0.7 s with nothing in flight at 150 ms)."""
        while True:
            open_ = [t for t in self.streams if t.queued() < t.limit]
            if open_:
                return min(open_, key=lambda t: t.queued())
            err = failed()
            if err is not None:
                raise err
            if time.monotonic() > deadline:
                raise TransportError("data streams: every send queue full for too long (peer "
                                     "not reading)")
            time.sleep(0.002)

    def error(self) -> TransportError | None:
        """The first stream whose writer stopped, as a TransportError."""
        for s in self.streams:
            if s.error is not None:
                return TransportError(f"{s.ch.name}: {s.error}")
        return None

    def acked(self) -> int:
        return sum(s.acked() for s in list(self.streams))

    def handed(self) -> int:
        return sum(s.handed for s in list(self.streams))

    def unacked(self) -> int:
        return sum(s.unacked() for s in list(self.streams))

    def backlog_bytes(self) -> int:
        """Bytes sent but not yet acknowledged by the destination, over all data streams."""
        return sum(s.backlog() for s in self.streams)

    def close(self, timeout_s: float) -> None:
        """Every stream closed and its writer joined, one still opening included."""
        if self._opening is not None:
            self._opening.join(timeout_s)
        with self._lock:
            self.streams.extend(self._opened)
            self._opened.clear()
        for s in self.streams:
            s.ch.close()
            s.stop()
        for s in self.streams:
            s.thread.join(5.0)
