"""QEMU guests beside the emulated VM: a real hypervisor migrated by its own live migration.

The guest image (a Debian kernel, busybox and the project's small guest agent, built by
``make setup`` into a cache outside the repository), QEMU's command line, its accelerator as
probed, the policy mapped to QEMU's migration parameters, and a driver that runs QEMU's
migration over QMP and reports it in the emulated migrator's terms (``ground.protocol`` lines,
``result.json``, ``rounds.csv``).

May import: ground, migrator.memory, migrator.codecs, migrator.core.
"""
