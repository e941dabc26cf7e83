"""The migrator: the emulated VM and a pre-copy live migrator across the WAN.

The behaviour follows the real hypervisors: QEMU's pre-copy (iterative rounds over a dirty
bitmap, 300 ms downtime limit, auto-converge throttling, XBZRLE, multifd + zstd) and VMware
vMotion's stun-during-page-send. The decisions are pure and unit-tested with fake clocks, VMs
and links; sockets, shared memory and processes sit in adapters around them.

Subpackages, from the bottom up; each may import only what its own docstring lists:

* ``memory``     page size, synthetic page contents, workloads (which pages a guest writes)
* ``codecs``     zero-page elision, none / lz4 / zstd-N, XBZRLE, the registry, speed on this CPU
* ``core``       policy, analytic model, records, the engine's interfaces, per-round codec
                 choice, the pre-copy engine, the report of a result (summary, rounds.csv)
* ``wire``       frames, messages, the HMAC handshake, PAGES encoding, the image digest
* ``transport``  framed TCP channels, flow-control laws, the flight window, data streams, the
                 sender (source), the receiver (destination), the simulated link
* ``guest``      the emulated VM: memory images in /dev/shm, dirty log, control block, KV
                 store, service, the guest process, its launcher, the RARP announcer
* ``disk``       the emulated VM's disk, guest side: parameters, self-checking blocks, the I/O
                 planner, the datastore of sparse images, devices, mirror link, I/O log, the
                 guest's disk thread

On top, composing them: ``endpoints`` (``run_source``, ``run_dest``), ``loopback`` (both ends
on this machine), ``args`` (command-line checks), ``memfit`` (whether a VM's memory, twice,
fits this machine) and ``cli`` (``wanmig migrate``, ``migrate-source``, ``migrate-dest``).

May import: ground.
"""
