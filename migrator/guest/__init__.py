"""The emulated VM: memory images, dirty log, control block, KV store, service, process, launcher;
the lease on a paused or slowed guest, its owner, its record for ``wanmig clean``.

May import: ground, migrator.memory, migrator.wire, migrator.disk.
"""
