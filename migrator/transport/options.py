"""What the sender is told (``TransportOptions``) and what it records (``SenderStats``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.wire.frames import MAX_FRAME
from migrator.wire.session import DEFAULT_ENCRYPTION, ENCRYPTIONS


@dataclass(frozen=True)
class TransportOptions:
    streams: int = 4                       # data streams at the start
    max_streams: int = 8                   # adaptation adds streams up to this
    max_bandwidth_mbps: float | None = None
    bw_hint_Bps: float = 250e6 / 8         # noqa: N815 - link rate guess for the BDP
    rtt_hint_s: float = 0.0
    timeout_s: float = 30.0                # longest wait for the peer on any stream
    max_frame: int = MAX_FRAME
    xbzrle_cache_mib: int = 64
    queue_bytes: int = 512 * 1024          # per data stream: frames waiting for the writer
    notsent_lowat: int = 128 * 1024        # TCP_NOTSENT_LOWAT: unsent bytes kept in the socket
    adapt_interval_s: float = 1.0          # busy seconds between stream-count decisions
    min_gain: float = 0.10
    sample_interval_s: float = 0.02
    goodput_window_s: float = 2.0
    bound_window: bool = True              # a flight window over all streams (window.FlightWindow)
    window_bdps: float = 1.5              # its size, in bandwidth-delay products
    pacing_headroom: float = 2.0          # each stream paced at this times its share of the link
    grow_window: bool = False             # bw_hint_Bps is a guess: grow the window (next_window)
    encryption: str = DEFAULT_ENCRYPTION  # every stream's frames (wire.seal); 'none': MAC only
    connect_wait_s: float = 0.0           # a refused first connection is tried again this long

    def __post_init__(self) -> None:
        if not 1 <= self.streams <= self.max_streams:
            raise ValueError(f"need 1 <= streams ({self.streams}) <= max_streams "
                             f"({self.max_streams})")
        if self.max_bandwidth_mbps is not None and not self.max_bandwidth_mbps > 0:
            raise ValueError(f"max_bandwidth_mbps must be > 0, got {self.max_bandwidth_mbps}")
        if self.encryption not in ENCRYPTIONS:
            raise ValueError(f"encryption {self.encryption!r}, expected one of "
                             f"{', '.join(ENCRYPTIONS)}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def link_Bps(self) -> float:  # noqa: N802
        """The link's rate as the sender was told it, a rate cap applied."""
        if self.max_bandwidth_mbps is None:
            return self.bw_hint_Bps
        return min(self.bw_hint_Bps, self.max_bandwidth_mbps * 1e6 / 8)


@dataclass
class SenderStats:
    streams_used: list[int] = field(default_factory=list)   # stream count after each change
    buffers: list[dict] = field(default_factory=list)       # per socket, what was granted
    handshake_rtt_s: float = 0.0
    encryption: str = ""                                    # as the handshake agreed it
    congestion_control: str = ""                            # of the data streams, as granted
    flight_window_bytes: int | None = None                  # window.FlightWindow, at the start
    flight_window_max_bytes: int | None = None              # largest, if it grew
