"""The line protocol between the testbed's processes: what a helper process says on stdout (and
the few answers it reads on stdin), declared once, parsed once.

A message is one line: its kind in capitals, then, where the kind has fields, one space and a
JSON object: ``PAUSED {"t": 1764612345.123456}``. Times are wall-clock seconds (``time.time()``):
every namespace of the testbed shares the machine's clock, so times from different processes
compare directly. A line that does not start with a known kind is not a message (a log line, a
result record) and parses to None; a line that starts with a known kind but whose fields are not
a JSON object is an error (``ProtocolError``), never a message read half right.

Who says what (S: on stdout to the parent; R: read on stdin from the parent):

=========  ===  =====================================  ======================================
kind       dir  said by                                fields
=========  ===  =====================================  ======================================
READY      S    a helper, once it serves: delay line,  what it serves with (``pid``, ``port``,
                control relay, guest, clients,          the parameters it was given)
                announcer
LISTENING  S    ``migrate-dest``, accepting             ``host``, ``port``
STARTED    S    ``migrate-source``, before connecting   ``t``
PROGRESS   S    ``migrate-source --progress``, a round  the round record, ``eta_s``, ``t``
                ended
PAUSED     S    ``migrate-source --progress``, the      ``t`` (just before the pause)
                guest paused at the source
VERIFIED   S    ``migrate-dest --gate``: the image is   ``t``
                verified, waiting for GO
GO         R    the runner to ``migrate-dest --gate``   none
                (switch over), to the announcer         ``iface`` (announce on it now)
RESUMED    S    ``migrate-dest --gate``: the guest      ``t``
                runs at the destination
RARP       S    the announcer, per frame sent           ``t``, ``mac``, ``iface``
=========  ===  =====================================  ======================================
"""

from __future__ import annotations

import enum
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO


class Kind(enum.Enum):
    READY = "READY"
    LISTENING = "LISTENING"
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    PAUSED = "PAUSED"
    VERIFIED = "VERIFIED"
    GO = "GO"
    RESUMED = "RESUMED"
    RARP = "RARP"


class ProtocolError(ValueError):
    """A line that starts with a kind of this protocol but is not a well-formed message."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def t(self) -> float:
        """The wall-clock time of an event message; ProtocolError when it has none."""
        value = self.fields.get("t")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{self.kind.value}: got t={value!r}, expected wall-clock "
                                "seconds")
        return float(value)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.fields[key]
        except KeyError:
            raise ProtocolError(f"{self.kind.value}: no field {key!r} in "
                                f"{self.fields}") from None


def format_line(kind: Kind, **fields: Any) -> str:
    """The line for a message (without its newline)."""
    return kind.value if not fields else f"{kind.value} {json.dumps(fields)}"


def parse_line(line: str) -> Message | None:
    """The message on ``line``; None when the line is not a message of this protocol."""
    text = line.rstrip("\r\n")
    word, _, rest = text.partition(" ")
    try:
        kind = Kind(word)
    except ValueError:
        return None
    if not rest.strip():
        return Message(kind)
    try:
        fields = json.loads(rest)
    except ValueError as exc:
        raise ProtocolError(f"{kind.value}: fields are not JSON ({exc}): {rest[:200]!r}") from None
    if not isinstance(fields, dict):
        raise ProtocolError(f"{kind.value}: got fields {rest[:200]!r}, expected a JSON object")
    return Message(kind, fields)


def expect(line: str, kind: Kind) -> Message | None:
    """The message on ``line`` if it is of ``kind``; None for anything else, a malformed message
    included (for a reader waiting on one answer, which says what it got when it is None)."""
    try:
        msg = parse_line(line)
    except ProtocolError:
        return None
    return msg if msg is not None and msg.kind is kind else None


def await_kind(kind: Kind, timeout_s: float, stream: TextIO | None = None
               ) -> tuple[bool, str | None]:
    """Wait up to ``timeout_s`` for one line on ``stream`` (stdin) and whether it is a message
    of ``kind``: (True, line) or (False, the line or None when none came). A reader thread, so
    the wait has a deadline even on a pipe."""
    got: list[str] = []
    source = stream or sys.stdin
    reader = threading.Thread(target=lambda: got.append(source.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    line = got[0] if got else None
    return (line is not None and expect(line, kind) is not None), line


def say(kind: Kind, out: TextIO | None = None, **fields: Any) -> None:
    """Write one message and flush: the reader acts on it at once."""
    stream = out or sys.stdout
    stream.write(format_line(kind, **fields) + "\n")
    stream.flush()
