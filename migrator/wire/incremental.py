"""An image digest kept current while pre-copy runs, at either end.

Why: hashing the whole image while the guest is paused makes the downtime grow with memory
size. Most of the image is final long before the pause, so each chunk (``digest.CHUNK_BYTES``)
is hashed once it has its final data, and at the pause only the chunks written since their
last hash are hashed again: the verify then costs what the last rounds wrote, not what the
guest owns.

Correctness rests on one rule: a chunk's generation is bumped *after* every change to it is
complete, so a hash that may have read a change in progress is always followed by a bump and
thrown away at ``finish``. A hash is stored with the generation read *before* it read the data
(reading it earlier is always safe: any later change bumps past it), and never over the hash
of a newer generation. The destination bumps after applying pages (under its memory's lock);
the source when its dirty log reports pages (the guest marks a page after writing it), and its
last report comes after the pause.

Who hashes what, and when (a matter of speed only, never of correctness):

* at the destination (``complete=False``), the thread that writes a chunk's last missing page
  hashes the chunk right after (``touched`` returns it, ``hash_chunks`` hashes it outside the
  lock). A background thread would lag behind: in a process whose transport threads keep the
  GIL busy it got a small share of it, and at 4 GiB the chunks of the last ~60 MB to arrive
  were still waiting at the pause. A chunk not yet complete holds zeros that are not the image:
  it is not hashed before (a page that never arrives leaves its chunk to ``finish``);
* a background thread, every ``interval_s`` (the first pass at once), hashes each complete
  chunk that changed since its last hash and is either never hashed (the source's whole image
  at the start: covered in one sweep) or unchanged since the previous pass (one still being
  written would be hashed for nothing): the source's chunks its dirty log reported, the
  destination's that later rounds rewrote;
* ``finish`` stops the background and hashes what is left: what was written in the last
  interval and the last round.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from migrator.memory.pages import PAGE_SIZE
from migrator.wire.digest import CHUNK_BYTES, DIGEST_BYTES, chunk_digest, chunk_digests, combine

log = logging.getLogger(__name__)

_NONE = np.empty(0, np.int64)
_BATCH = 256                 # chunks hashed between two looks at the stop flag


class IncrementalDigest:
    """Chunk digests of a ``(npages, PAGE_SIZE)`` uint8 image, kept current by ``touched``.

    ``lock``: the lock under which the caller writes the image and calls ``touched`` (the
    destination's memory lock); without one, ``touched`` takes a lock of its own.
    ``complete``: whether the image already holds every page (the source) or is filled page by
    page (the destination). ``maybe_data``: per page, False where the page is known to be zero
    (the destination's, kept by its writer): a chunk of such pages is not read, its digest is
    that of zeros (reading a page of a new shared-memory image allocates it).
    """

    def __init__(self, memory: np.ndarray,
                 lock: threading.Condition | threading.Lock | None = None, *,
                 complete: bool = True, maybe_data: np.ndarray | None = None) -> None:
        self.flat = memory.reshape(-1)
        self.chunk_pages = CHUNK_BYTES // PAGE_SIZE
        n = -(-len(memory) // self.chunk_pages)
        self.maybe_data = maybe_data
        self._npages = len(memory)
        self._last_chunk = n - 1
        last = (len(memory) - (n - 1) * self.chunk_pages) * PAGE_SIZE if n else 0
        self._zero = (chunk_digest(bytes(CHUNK_BYTES)), chunk_digest(bytes(last)))
        self._own_lock = lock is None
        self.lock = lock if lock is not None else threading.Lock()
        self.gen = np.zeros(n, np.int64)
        self.hashed_gen = np.full(n, -1, np.int64)
        self.digests = np.zeros((n, DIGEST_BYTES), np.uint8)
        self._seen = self.gen.copy()               # generations at the previous pass
        # Pages not yet written once, per chunk (the destination's image fills page by page).
        self._unwritten: np.ndarray | None = None
        self.missing = np.zeros(n, np.int64)
        if not complete and n:
            self._unwritten = np.ones(len(memory), bool)
            self.missing += self.chunk_pages
            self.missing[-1] = len(memory) - (n - 1) * self.chunk_pages
        self._store_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.background_chunks = 0                 # hashes done by the background
        self.passes = 0

    # --- writers ---------------------------------------------------------------------------

    def touched(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pages written (call after the write; with the caller's lock held if it gave one).

        Returns the chunks this write completed (their last missing page arrived) and their
        generations, for ``hash_chunks`` right away, outside the lock: a chunk is then hashed by
        the thread that wrote it, while its data is still in the cache, instead of waiting for
        the background, which lags behind pages arriving fast when the process is busy.
        """
        idx = np.asarray(indices, np.int64)
        if not len(idx):
            return _NONE, _NONE
        if self._own_lock:
            with self.lock:
                return self._bump(idx)
        return self._bump(idx)

    def _bump(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.gen[np.unique(indices // self.chunk_pages)] += 1
        if self._unwritten is None:
            return _NONE, _NONE
        first = np.unique(indices[self._unwritten[indices]])    # a page listed twice counts once
        if not len(first):
            return _NONE, _NONE
        self._unwritten[first] = False
        chunks, counts = np.unique(first // self.chunk_pages, return_counts=True)
        self.missing[chunks] -= counts
        done = chunks[self.missing[chunks] == 0]
        return done, self.gen[done]

    # --- hashing ---------------------------------------------------------------------------

    def stale(self) -> np.ndarray:
        """The chunks whose digest is not of their current generation."""
        with self.lock:
            return np.flatnonzero(self.gen != self.hashed_gen)

    def background_pass(self) -> int:
        """Hash the chunks that are complete, changed since they were last hashed, and either
        never hashed or not changed since the previous pass (still being written: left for
        later); returns how many."""
        with self.lock:
            gen = self.gen.copy()
            ready = np.flatnonzero((gen != self.hashed_gen) & (self.missing == 0)
                                   & ((gen == self._seen) | (self.hashed_gen < 0)))
        self._seen = gen
        done = 0
        for i in range(0, len(ready), _BATCH):
            if self._stop.is_set():
                break
            batch = ready[i:i + _BATCH]
            self._store(batch, self._hash(batch), gen[batch])
            done += len(batch)
        self.background_chunks += done
        self.passes += 1
        return done

    def start(self, interval_s: float = 0.05) -> None:
        """Hash in a background thread: a pass at once, then one every ``interval_s``."""
        def loop() -> None:
            while not self._stop.is_set():
                self.background_pass()
                if self._stop.wait(interval_s):
                    return
        self._thread = threading.Thread(target=loop, name="wanmig-digest-bg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the background (within one batch of hashes); what it hashed is kept. Were the
        thread ever to outlive the join and store a hash of older data after ``finish``, the
        digests would differ and the migration abort: the guest stays at the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def hash_chunks(self, chunks: np.ndarray, gens: np.ndarray) -> None:
        """Hash these chunks now, ``gens`` being their generations read before (``touched``)."""
        if len(chunks):
            self._store(chunks, self._hash(chunks), gens)

    def _hash(self, chunks: np.ndarray) -> list[bytes]:
        """The digests of these chunks now; those of known-zero pages only are not read."""
        if self.maybe_data is None or not len(chunks):
            return chunk_digests(self.flat, chunks.tolist())
        pages = np.minimum(chunks[:, None] * self.chunk_pages + np.arange(self.chunk_pages),
                           self._npages - 1)
        has = self.maybe_data[pages].any(axis=1)
        out = [self._zero[0]] * len(chunks)
        for i in np.flatnonzero(~has & (chunks == self._last_chunk)):
            out[i] = self._zero[1]
        read = np.flatnonzero(has)
        for i, d in zip(read.tolist(), chunk_digests(self.flat, chunks[read].tolist()),
                        strict=True):
            out[i] = d
        return out

    def _store(self, chunks: np.ndarray, digests: list[bytes], gens: np.ndarray) -> None:
        """The chunks' digests, of generations ``gens`` (read before the hashes: see the module
        docstring). Several threads may hash the same chunk; the newest generation wins, and a
        digest and its generation are written together: a digest of older data must never be
        labelled with a newer generation."""
        rows = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, DIGEST_BYTES)
        with self._store_lock:
            newer = gens > self.hashed_gen[chunks]
            self.digests[chunks[newer]] = rows[newer]
            self.hashed_gen[chunks[newer]] = gens[newer]

    def finish(self) -> tuple[bytes, int]:
        """Once nothing writes any more (every page arrived; the guest paused and its dirty log
        read): stop the background, hash the stale chunks, and return (the image digest, how
        many chunks had to be hashed now)."""
        self.stop()
        with self.lock:                           # these generations are final
            gen = self.gen.copy()
        stale = np.flatnonzero(gen != self.hashed_gen)
        self._store(stale, self._hash(stale), gen[stale])
        log.debug("image digest: %d of %d chunks hashed in the background (%d passes), %d at "
                  "the end", self.background_chunks, len(gen), self.passes, len(stale))
        return combine(memoryview(self.digests).cast("B")), len(stale)
