"""wanmig migrator: the pure core of a pre-copy live VM migrator.

Everything here is free of sockets, root and real time so that the migration *decisions* can be
unit-tested with fake clocks, fake VMs and fake links; the transport and the guest are plugged in
from outside.  The behaviour follows the real hypervisors: QEMU's pre-copy (iterative rounds over
a dirty bitmap, 300 ms downtime limit, auto-converge throttling, XBZRLE, multifd + zstd) and
VMware vMotion's stun-during-page-send.

Modules, one concept each:

* ``pages``      page size, synthetic guest memory contents and realistic page mutations
* ``workload``   dirty-rate presets and the pure planner of which pages a guest dirties
* ``codecs``     zero-page elision and chunk codecs (none, lz4, zstd-N, xbzrle)
* ``codec_bench`` measured codec speed and ratio on this CPU (also ``python -m``)
* ``adaptive``   per-round codec choice from measured link goodput and CPU speed
* ``wire``       framing, message layouts and the HMAC handshake of the migration stream
* ``model``      the analytic geometric pre-copy model (Clark'05, Akoush'10)
* ``policy``     the migration policy and its validation
* ``engine``     the pre-copy engine: rounds, stop decision, throttling, abort/force
"""
