"""Faults injected into a run and what must still hold afterwards: the schedule in the spec
(``spec``), when each fires (``trigger``, pure), the actions on the network, the migrators and
the controller (``actions``, thin adapters), the injector that ties them to a run
(``injector``) and the invariants checked at its end (``invariants``)."""
