"""The one way wanmig reads a YAML file: bounded in size, time and memory, strict UTF-8.

Why: every file wanmig reads (experiments, sweeps, topologies, a migrator's policy file, a run's
config.yaml) is input that must not hurt. Left to ``yaml.safe_load``, a 1 KB "billion laughs"
(anchors and aliases nested ten deep) expands to gigabytes when its value is copied or printed,
a file of invalid UTF-8 ends in a traceback, and a file of any size is read whole. Here:

* at most ``MAX_BYTES`` are read (a regular file only: a FIFO would block, a device never
  ends); a bigger file is a ConfigError naming it;
* the bytes are decoded as UTF-8, strictly: a bad byte is a ConfigError naming the file and
  the byte's offset;
* aliases are refused outright ("YAML aliases are not supported"; no shipped file uses one;
  anchors alone are harmless and allowed), and a document is composed of at most ``MAX_NODES``
  nodes nested at most ``MAX_DEPTH`` deep, so composing stops early on anything larger (the
  C parser cannot be stopped this way and crashes on deep nesting, so the pure-Python loader
  is used: measured here, 256 KiB of the worst YAML takes it under half a second);
* a value the constructor cannot build (an integer of 5000 digits, a timestamp like
  2026-13-45) and every YAML error are ConfigErrors on one line, without the file's content;
* the top level must be a mapping (or empty): every file wanmig reads is one, and a file that
  is not (``/etc/passwd`` is one long YAML string) is refused without echoing it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from ground.config import ConfigError

MAX_BYTES = 256 * 1024      # the biggest shipped file is under 2 KB, a resolved sweep under 8 KB
MAX_NODES = 10_000          # scalars, lists and mappings; a sweep of 1000 runs needs far fewer
MAX_DEPTH = 32              # the deepest key path of a spec is 5 (topology.wan[0].rtt_ms ...)
ALIASES_REFUSED = "YAML aliases are not supported"


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases and stops composing beyond ``MAX_NODES`` nodes
    or ``MAX_DEPTH`` levels (module docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, ALIASES_REFUSED, mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} YAML nodes", mark)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, with its position but without the file's text."""
    if isinstance(exc, yaml.reader.ReaderError):    # the character as its code point (an int)
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        return f"unacceptable character #x{code:04x} at character {exc.position}"
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{'; '.join(parts) or 'invalid YAML'}{where}"
    return type(exc).__name__


def describe(data: Any) -> str:
    """What a YAML document holds, said without repeating it."""
    if isinstance(data, str):
        return f"a YAML string of {len(data)} characters"
    if isinstance(data, list):
        return f"a YAML list of {len(data)} items"
    return f"a YAML {type(data).__name__}"


def parse_yaml(data: bytes, name: str) -> dict:
    """The mapping in ``data`` (the bytes of the file ``name``), ``{}`` when empty; everything
    else a ConfigError naming ``name`` (module docstring)."""
    if len(data) > MAX_BYTES:
        raise ConfigError(name, f"more than {MAX_BYTES} bytes",
                          f"a YAML file of at most {MAX_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
                          "UTF-8 text") from None
    try:
        doc = yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader, bounded
    except yaml.YAMLError as exc:
        raise ConfigError(name, name, f"valid YAML ({_yaml_problem(exc)})") from None
    except (ValueError, OverflowError) as exc:     # what the constructor could not build
        raise ConfigError(name, name, f"valid YAML values ({exc})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"<top level> (in {name})", describe(doc),
                          "a mapping of keys to values")
    return doc


def read_yaml(source: str | Path) -> dict:
    """The mapping in a YAML file (``{}`` when empty): at most ``MAX_BYTES`` of a regular
    file, strict UTF-8, no aliases, bounded composing; anything else a ConfigError."""
    path = Path(source)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(str(path), str(source),
                          f"a readable YAML file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(str(path), str(source), "a regular file of YAML")
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), str(source),
                          f"a readable YAML file ({exc.strerror})") from None
    return parse_yaml(data, str(path))
