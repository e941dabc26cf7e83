"""wanmig migrator: the pure core of a pre-copy live VM migrator.

Everything here is free of sockets, root and real time so that the migration *decisions* can be
unit-tested with fake clocks, fake VMs and fake links; the transport and the guest are plugged in
from outside.  The behaviour follows the real hypervisors: QEMU's pre-copy (iterative rounds over
a dirty bitmap, 300 ms downtime limit, auto-converge throttling, XBZRLE, multifd + zstd) and
VMware vMotion's stun-during-page-send.

Modules, one concept each:

* ``pages``       page size, synthetic guest memory contents and realistic page mutations
* ``workload``    dirty-rate presets and the pure planner of which pages a guest writes
* ``codecs``      zero-page elision, chunk codecs (none, lz4, zstd-N) and the registry
* ``xbzrle``      delta encoding against the previously sent page, mirrored LRU caches
* ``codec_bench`` measured codec speed and ratio on this CPU (also ``python -m``)
* ``adaptive``    per-round codec choice from measured link goodput and CPU speed
* ``wire``        frame header, CRC, incremental reader (``auth`` holds the HMAC handshake)
* ``messages``    payload layouts of HELLO .. ABORT, PAGES included
* ``pagestream``  engine sends -> PAGES frames -> destination memory
* ``model``       the analytic geometric pre-copy model (Clark'05, Akoush'10)
* ``policy``      the migration policy and its validation
* ``interfaces``  what the engine expects of the clock, the guest and the transport
* ``records``     per-round records and the migration result
* ``engine``      the pre-copy engine: rounds, stop decision, throttling, abort/force

The real guest and the transport (I/O adapters around the core):

* ``guestmem``    VM memory images as files in /dev/shm (RAM, dirty log, control block)
* ``dirtylog``    the dirty log the guest marks and the migrator reads and clears under flock
* ``control``     pause / resume / throttle / switch-memory handshake with the guest process
* ``kvstore``     the guest service's key-value state, kept in guest pages
* ``service``     the guest's UDP echo and TCP key-value service
* ``guest``       the guest process (``python -m migrator.guest.process``)
* ``vm``          ``SharedVM`` (the engine's VM over the above) and the guest launcher
* ``flowctl``     rate cap, goodput meter, stream-count adaptation, socket buffer plan (pure)
* ``channel``     framed, authenticated TCP channels
* ``transport``   ``TcpSender``: the engine's Sender over a control stream and N data streams
* ``receiver``    the destination: streams -> memory, digest check, ACK, switchover
* ``endpoints``   ``run_source``, ``run_dest``, ``migrate_loopback``
* ``digest``      the memory image digest (parallel SHA-256 tree) both ends compare
* ``destdigest``  the destination's digest, kept current chunk by chunk as pages arrive
* ``wan_bench``   the migration across the emulated WAN against its targets (``python -m``)
* ``summary``     summary JSON and per-round CSV of a migration
* ``simlink``     the in-process delayed, rate-limited relay behind ``--rtt-sim``
* ``localvm``     an in-process guest (tests, ``--in-process``)
* ``cli``         ``wanmig migrate``, ``migrate-source``, ``migrate-dest``
* ``announce``    the RARP burst a resumed VM sends (QEMU's announce_self spacing)
"""
