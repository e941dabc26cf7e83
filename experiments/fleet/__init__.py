"""Fleets: many VMs on hypervisors with a capacity, moved by schedules and a DRS-like placement.

The pure parts: ``types`` (the data every part shares), ``spec`` (the experiment's ``vms``,
``hosts``, ``drs``, ``execution`` and ``events``), ``clock`` (when events fire), ``drs`` (host
load, imbalance, the threshold's target), ``placement`` and ``rulecheck`` (destinations chosen
and explained: ``decisions.jsonl``), ``scheduler`` (which queued move starts when, under the
concurrency limits and the ordering policy), ``costs`` (one move priced by the single-migration
model on the links as measured) and ``fleetmodel`` (a fleet's makespan under shared bandwidth).
On the testbed: ``member`` (one VM, its guest and clients), ``migration`` (one move's
processes), ``wansample`` (the WAN links' counters), ``run`` (the whole fleet), ``collect``
(its figures), ``plots`` and ``report`` (its figures drawn and written).
"""
