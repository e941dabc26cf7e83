"""The emulated VM: memory images, dirty log, control block, KV store, service, process, launcher.

May import: ground, migrator.memory, migrator.wire.
"""
