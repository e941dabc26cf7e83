"""The network's switches under a controller: the OVS switch class that connects each switch to
the controller port its site was given, and what the network needs of the controller it is
handed (as Mininet's ``Mininet(controller=...)`` is): this package never starts one itself."""

from __future__ import annotations

from typing import Any, Protocol


class SwitchController(Protocol):
    """A controller (and whatever carries its control channel) handed to ``WanNetwork``: it is
    started before the switches exist and stopped after they are gone."""

    def start(self) -> None: ...

    def port_for(self, site: str) -> int:
        """The port on 127.0.0.1 the switches of ``site`` connect to."""
        ...

    def pids(self) -> list[int]:
        """Its processes, recorded so that teardown and ``wanmig clean`` stop them."""
        ...

    def wait_converged(self, switches: int, links: int, timeout_s: float = 60.0) -> dict:
        """Return once ``switches`` switches are connected and ``links`` links discovered."""
        ...

    def stop(self) -> None: ...

    def record(self) -> dict:
        """What a result records of it."""
        ...


class _Target:
    """What Mininet's OVSSwitch.start needs of a controller: a name, protocol, IP and port."""

    protocol = "tcp"

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port

    def IP(self) -> str:  # noqa: N802 - Mininet's spelling
        return "127.0.0.1"


def switch_class() -> type:
    from mininet.node import OVSSwitch

    class WanSwitch(OVSSwitch):
        """An OpenFlow 1.3 switch in secure mode (no controller: no forwarding, never a silent
        learning bridge) that connects to the target given to it, not to every controller."""

        def __init__(self, name: str, ctl_port: int = 0, **params: Any) -> None:
            params.setdefault("failMode", "secure")
            params.setdefault("protocols", "OpenFlow13")
            super().__init__(name, **params)
            self.ctl_port = ctl_port

        def start(self, controllers: list) -> None:
            super().start([_Target("c0", self.ctl_port)] if self.ctl_port else [])

    return WanSwitch
