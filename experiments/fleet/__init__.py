"""Fleets: many VMs on hypervisors with a capacity, moved by schedules and a DRS-like placement.

``types`` holds the pure data every part shares; ``spec`` the experiment keys (``vms``,
``hosts``, ``drs``, ``execution``, ``events``); ``placement`` and ``drs`` choose destinations
and explain why (``decisions.jsonl``); ``scheduler`` decides which queued move starts when,
under the concurrency limits and the ordering policy; ``fleetmodel`` predicts a fleet's
makespan from the single-migration model; ``run`` executes it on the testbed; ``plots`` and
``report`` draw and write what it measured.
"""
