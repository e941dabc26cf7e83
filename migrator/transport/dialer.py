"""Opening the source's connections to the destination: the control stream and the data streams,
each authenticated with the shared key and then protected with the policy's encryption
(``channel.client_handshake``), their sockets given what the flight window asks (``sockets``),
what was granted recorded in ``SenderStats``."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from migrator.memory.pages import PAGE_SIZE
from migrator.transport.channel import Channel, PeerAbortError, TransportError, client_handshake
from migrator.transport.datastream import DataStream
from migrator.transport.options import SenderStats, TransportOptions
from migrator.transport.sockets import (
    SO_MAX_PACING_RATE,
    TCP_NOTSENT_LOWAT,
    bound_send_buffer,
    congestion_control,
    size_buffer,
)
from migrator.transport.window import FlightWindow
from migrator.wire.auth import AuthError
from migrator.wire.frames import WIRE_VERSION
from migrator.wire.pagestream import PageStreamEncoder

Pace = Callable[[int], None]
Room = Callable[[DataStream, int], None]
CONNECT_RETRY_S = 0.1


class Dialer:
    def __init__(self, dest: tuple[str, int], key: bytes, options: TransportOptions,
                 window: FlightWindow, stats: SenderStats, npages: int) -> None:
        self.dest, self.key, self.opt, self.window, self.stats = dest, key, options, window, stats
        self.npages = npages
        self.session = secrets.token_hex(16)
        self.image_key: bytes | None = None      # the control stream's (``session.image_tag``)

    def _dial(self, name: str, nodelay: bool, retry: bool = False) -> Channel:
        """A connected, configured stream; with ``retry`` (the control and data streams, which
        are opened together), a refused connection (the destination not listening yet:
        started at the same time) is tried again, on a new socket, every ``CONNECT_RETRY_S``
        for ``connect_wait_s``."""
        deadline = time.monotonic() + (self.opt.connect_wait_s if retry else 0.0)
        while True:
            try:
                return self._dial_once(name, nodelay)
            except TransportError as exc:
                if not isinstance(exc.__cause__, ConnectionRefusedError) or \
                        time.monotonic() + CONNECT_RETRY_S > deadline:
                    raise
            time.sleep(CONNECT_RETRY_S)

    def _dial_once(self, name: str, nodelay: bool) -> Channel:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, self.opt.notsent_lowat)
                bound = self.window.send_buffer_bytes()
                self.stats.buffers.append({"stream": name, **(
                    bound_send_buffer(sock, bound) if bound else
                    size_buffer(sock, socket.SO_SNDBUF, self.window.bdp, self.opt.streams))})
                pace = self.window.stream_pacing_Bps()
                if pace:
                    sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, pace)
                self.stats.congestion_control = congestion_control(sock)
            sock.settimeout(self.opt.timeout_s)
            sock.connect(self.dest)
            if sock.getsockname() == sock.getpeername():    # TCP's simultaneous open with
                raise ConnectionRefusedError("connected to itself")   # itself: none listens
        except OSError as exc:
            sock.close()
            raise TransportError(f"{name}: cannot connect to {self.dest[0]}:{self.dest[1]}: "
                                 f"{exc}") from exc
        return Channel(sock, name, timeout_s=self.opt.timeout_s, max_frame=self.opt.max_frame)

    def _hello(self, role: str, index: int | None = None) -> dict:
        info = {"role": role, "session": self.session, "wire_version": WIRE_VERSION,
                "encryption": self.opt.encryption}
        if role == "control":
            info.update(npages=int(self.npages), page_size=PAGE_SIZE,
                        streams=self.opt.streams, max_streams=self.opt.max_streams,
                        xbzrle_cache_mib=self.opt.xbzrle_cache_mib)
        else:
            info["stream"] = index
        return info

    def control(self) -> Channel:
        """The control stream (TCP_NODELAY), authenticated; the handshake's RTT recorded."""
        ch = self._dial("control stream", nodelay=True, retry=True)
        try:
            hs = client_handshake(ch, self.key, self._hello("control"))
        except BaseException:
            ch.close()
            raise
        self.stats.handshake_rtt_s = hs.rtt_s
        self.stats.encryption = hs.encryption
        self.image_key = hs.keys.image
        return ch

    def mirror(self) -> Channel:
        """The disk mirror stream (TCP_NODELAY: one write at a time), authenticated, of this
        session (``migrator.transport.mirror``)."""
        ch = self._dial("mirror stream", nodelay=True)
        try:
            client_handshake(ch, self.key, self._hello("mirror"))
        except BaseException:
            ch.close()
            raise
        return ch

    def data(self, index: int, pace: Pace | None, room: Room | None) -> DataStream:
        """Data stream ``index``, authenticated, its writer started."""
        ch = self._dial(f"data stream {index}", nodelay=False, retry=True)
        try:
            client_handshake(ch, self.key, self._hello("data", index))
        except BaseException:
            ch.close()
            raise
        enc = PageStreamEncoder(self.opt.xbzrle_cache_mib, self.opt.max_frame)
        return DataStream(index, ch, enc, self.opt.queue_bytes, pace, room)

    def together(self, streams: int, pace: Pace | None, room: Room | None
                 ) -> tuple[Channel | None, list[DataStream], list[Exception]]:
        """The control stream and data streams 0 .. ``streams``-1 at once: each costs three
        round trips (SYN, HELLO/CHALLENGE, AUTH/AUTH_OK), and the destination holds a data
        stream until the control stream's session is set up. Returns what opened (for the
        caller to close) and what failed."""
        errors: list[Exception] = []
        control: Channel | None = None
        opened: list[DataStream] = []
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="wanmig-open") as pool:
            futures = [pool.submit(self.data, i, pace, room) for i in range(streams)]
            try:
                control = self.control()
            except Exception as exc:  # noqa: BLE001 - reported with the streams'
                errors.append(exc)
            for fut in futures:
                try:
                    opened.append(fut.result())
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
        return control, sorted(opened, key=lambda s: s.index), errors


def most_telling(errors: list[Exception]) -> Exception:
    """Of the failures of connections opened together, the one that says why: a refused key
    or the peer's own reason before a connection merely closed (the destination closes every
    connection of a session when one fails)."""
    for kind in (AuthError, PeerAbortError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]
