"""Every benchmark, with one harness (``harness``): the WAN link (``link``), the controller
(``controller``, with ``packetin``), the codecs (``codecs``), a loopback migration
(``loopback``) and a migration across the emulated WAN (``wan``). ``make bench`` runs them all
(``python -m experiments.bench``); each also runs on its own (``python -m
experiments.bench.link --quick``)."""
