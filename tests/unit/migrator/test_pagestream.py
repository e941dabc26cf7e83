"""migrator.wire.pagestream: engine -> frames -> FrameReader -> destination memory, no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.core.engine import PreCopyEngine
from migrator.core.interfaces import FinishReport, SendReport
from migrator.core.policy import MigrationPolicy
from migrator.memory.pages import PAGE_SIZE, PageMix, fill_pages
from migrator.memory.workload import WorkloadParams
from migrator.wire.frames import FrameError, FrameReader
from migrator.wire.messages import Digest, Pages, from_frame, to_frame
from migrator.wire.pagestream import PageStreamDecoder, PageStreamEncoder
from tests.unit.migrator.test_engine import FakeClock, FakeVM


class WireSender:
    """Frames every send, feeds the bytes through a FrameReader into a PageStreamDecoder."""

    def __init__(self, clock, vm, bw=4 * 1024 * 1024, rtt=0.05, max_frame=8 * 1024 * 1024):
        self.clock, self.vm, self.bw, self.rtt = clock, vm, bw, rtt
        self.enc = PageStreamEncoder(max_frame=max_frame)
        self.reader = FrameReader(max_frame=max_frame)
        self.dest = np.zeros_like(vm.memory)
        self.dec = PageStreamDecoder(self.dest)
        self.wire = 0
        self.time = 0.0
        self.frames = 0

    def send_pages(self, round_no, indices, data, codec_name, zero_indices=None):
        stream = b"".join(self.enc.frames(round_no, indices, data, codec_name, zero_indices))
        for i in range(0, len(stream), 65536):                  # arrives in TCP-sized pieces
            for frame in self.reader.feed(stream[i:i + 65536]):
                self.dec.apply(from_frame(frame))
                self.frames += 1
        seconds = len(stream) / self.bw + self.rtt
        self.wire += len(stream)
        self.time += seconds
        self.clock.advance(seconds)
        return SendReport(len(data), len(stream), seconds)

    def measured_goodput_Bps(self):  # noqa: N802
        return self.wire / self.time if self.time else 0.0

    def rtt_s(self):
        return self.rtt

    def finish(self, state):
        src, dst = Digest.of(b"k" * 32, self.vm.memory), Digest.of(b"k" * 32, self.dest)
        frame = to_frame(src)
        got = from_frame(FrameReader().feed(frame)[0])
        self.clock.advance(self.rtt)
        ok = got == dst
        return FinishReport(ok, ok, 0.0, None if ok else "digest mismatch")


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd-3", "xbzrle"])
def test_engine_over_framed_stream(codec):
    clock = FakeClock()
    vm = FakeVM(clock, WorkloadParams(dirty_rate_mibps=2.0, working_set_frac=0.5))
    sender = WireSender(clock, vm)
    res = PreCopyEngine(clock, vm, sender, MigrationPolicy(codec=codec),
                        chunk_pages=256).run()
    assert res.outcome == "completed" and res.integrity_ok
    assert np.array_equal(sender.dest, vm.memory)
    assert sender.reader.pending == 0 and sender.frames >= 8      # 2048 pages / 256 per chunk


def test_oversized_send_split_into_frames():
    pages = np.empty((64, PAGE_SIZE), np.uint8)
    fill_pages(pages, PageMix(0, 0, 1), seed=1)                   # incompressible: 256 KiB
    enc = PageStreamEncoder(max_frame=64 * 1024)
    frames = enc.frames(0, np.arange(64), pages.tobytes(), "zstd-1",
                        zero_indices=np.arange(100, 140))
    assert len(frames) >= 4 and all(len(f) <= 64 * 1024 + 16 for f in frames)
    dest = np.zeros((200, PAGE_SIZE), np.uint8)
    dest[100:140] = 9
    dec = PageStreamDecoder(dest)
    reader = FrameReader(max_frame=64 * 1024)
    for f in frames:
        for frame in reader.feed(f):
            dec.apply(from_frame(frame))
    assert np.array_equal(dest[:64], pages) and not dest[100:140].any()
    assert dec.pages_applied == 104


def test_out_of_range_index_rejected():
    dec = PageStreamDecoder(np.zeros((10, PAGE_SIZE), np.uint8))
    with pytest.raises(FrameError, match="zero index 10 outside the guest's 10 pages"):
        dec.apply(Pages(0, 0, np.array([10]), np.array([], np.int64), b""))
    with pytest.raises(FrameError, match="unknown codec id 99"):
        dec.apply(Pages(0, 99, np.array([], np.int64), np.array([1]), b"x"))
