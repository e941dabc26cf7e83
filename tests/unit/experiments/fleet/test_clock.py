from experiments.fleet.clock import EventClock
from experiments.fleet.spec import Event


def test_at_events_fire_once_and_every_events_each_period_up_to_the_duration():
    ev = [Event("rebalance", every_s=30.0), Event("evacuate", at_s=0.0, host="h1"),
          Event("migrate", at_s=45.0, vm="a", to="auto")]
    clock = EventClock(ev, duration_s=90.0)
    assert [(t, e.action) for t, e in clock.due(0.0)] == [(0.0, "evacuate")]
    assert clock.due(29.9) == []
    assert [(t, e.action) for t, e in clock.due(60.0)] == \
        [(30.0, "rebalance"), (45.0, "migrate"), (60.0, "rebalance")]
    assert clock.next_s == 90.0 and not clock.done
    assert [t for t, _ in clock.due(1e9)] == [90.0]
    assert clock.done and clock.next_s is None and clock.due(1e9) == []
