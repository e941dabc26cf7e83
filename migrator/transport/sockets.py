"""What the data streams' sockets are given and what the kernel granted: send buffers, the
congestion control in use (recorded: machines differ), the Linux option numbers Python lacks.

Socket buffers when the link is not known (no RTT hint): ``flowctl.buffer_plan``, left to the
kernel's autotuning when ``net.ipv4.tcp_wmem[2]`` suffices, else set with SO_SNDBUF, which the
kernel caps by ``net.core.wmem_max`` (and doubles); what was granted is read back and recorded.
"""

from __future__ import annotations

import logging
import socket

from migrator.transport.flowctl import buffer_plan

log = logging.getLogger(__name__)

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)       # Linux's number
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)     # Linux's number


def _read_sysctl(path: str, index: int = 0) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[index])
    except (OSError, ValueError, IndexError):
        return None


def bound_send_buffer(sock: socket.socket, nbytes: int) -> dict:
    """SO_SNDBUF set to ``nbytes`` (the kernel doubles it for its bookkeeping; about that
    much payload fits). As root SO_SNDBUFFORCE passes net.core.wmem_max, which would otherwise
    cap it at a default 208 KiB."""
    force = getattr(socket, "SO_SNDBUFFORCE", 32)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, nbytes)
        how = "forced"
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        how = "capped by net.core.wmem_max"
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    return {"asked": nbytes, "granted": granted,
            "plan": f"bounded to the stream's share of one BDP ({how})"}


def fixed_buffer(sock: socket.socket, option: int, nbytes: int) -> dict:
    """A buffer of ``nbytes`` whatever the plan: where the path has no bandwidth-delay product
    to cover (both ends on this machine), a receive buffer the autotuner grows to megabytes
    only holds data the destination has not applied yet, which the pause then waits for."""
    sock.setsockopt(socket.SOL_SOCKET, option, nbytes)
    return {"asked": nbytes, "granted": sock.getsockopt(socket.SOL_SOCKET, option),
            "plan": "fixed: no bandwidth-delay product to cover"}


def size_buffer(sock: socket.socket, option: int, bdp_bytes: float, streams: int) -> dict:
    """Apply ``flowctl.buffer_plan`` to one socket; returns what was asked and granted."""
    send = option == socket.SO_SNDBUF
    kind = "wmem" if send else "rmem"
    plan = buffer_plan(bdp_bytes, streams,
                       _read_sysctl(f"/proc/sys/net/ipv4/tcp_{kind}", 2),
                       _read_sysctl(f"/proc/sys/net/core/{kind}_max"))
    if plan.setsockopt_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, option, plan.setsockopt_bytes)
    granted = sock.getsockopt(socket.SOL_SOCKET, option)
    if plan.setsockopt_bytes is not None and granted < plan.setsockopt_bytes:
        log.warning("%s: asked %d B, kernel granted %d B (raise net.core.%s_max)",
                    "SO_SNDBUF" if send else "SO_RCVBUF", plan.setsockopt_bytes, granted, kind)
    return {"asked": plan.setsockopt_bytes, "granted": granted, "plan": plan.reason}


def congestion_control(sock: socket.socket) -> str:
    """The socket's TCP congestion control (the namespace's default unless set): recorded,
    because machines differ (this one defaults to bbr, where Linux's own default is cubic)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    except (OSError, AttributeError):
        return ""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def listen(addr: tuple[str, int], bdp_hint_bytes: float = 0.0, streams: int = 4,
           rcvbuf_bytes: int | None = None) -> tuple[socket.socket, dict]:
    """A listening socket with SO_RCVBUF sized before listen (the window scale is fixed at the
    SYN, so it must be set here); returns it and what the kernel granted. ``rcvbuf_bytes``:
    this size instead of the plan for ``bdp_hint_bytes`` (``sockets.fixed_buffer``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        granted = size_buffer(sock, socket.SO_RCVBUF, bdp_hint_bytes, streams) \
            if rcvbuf_bytes is None else fixed_buffer(sock, socket.SO_RCVBUF, rcvbuf_bytes)
        sock.bind(addr)
        sock.listen(32)
    except BaseException:
        sock.close()
        raise
    return sock, granted
