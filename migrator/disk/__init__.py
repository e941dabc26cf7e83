"""The emulated VM's disk: its parameters, the self-checking block format, the planner of which
blocks the guest reads and writes, the datastore (a directory of sparse raw images per
hypervisor host), the block devices the guest does I/O on (a local file; an NBD export of
shared storage, served by qemu-nbd; a unix-socket link to the source migrator for
write-blocking mirroring), the guest's I/O record and the disk thread that runs it all beside
the guest's service loop.

May import: ground, migrator.memory.
"""
