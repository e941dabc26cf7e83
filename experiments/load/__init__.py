"""The testbed's own load: what each part of the testbed (switch, delay lines, controller,
migrators or QEMUs, guests, clients) and the whole machine used, sampled once a second during
a run (``sampler``: ``testbed_cpu.csv``), which part a process is (``parts``, pure), and
whether the machine was near its limit while the VM migrated (``bound``, pure): a result
obtained on a saturated machine measures the testbed, and says so.

May import ground only.
"""
