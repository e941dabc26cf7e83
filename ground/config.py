"""One schema helper and one error type for every YAML file wanmig reads.

A misspelt key, a wrong type or an impossible value is reported before anything starts, with the
key path (``wan[0].rtt_ms``), the value that was given and what was expected. The message is one
line and shows a short excerpt of the value (``excerpt``), never a whole file or a huge value.
Files are read by ``ground.yamlfile``.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = object()

# Names end up in interface names, OVS bridge names and shell command lines.
NAME_RE = re.compile(r"[a-z][a-z0-9]*")   # used with fullmatch: no trailing newline


EXCERPT_CHARS = 80          # of a value's repr in a message
PATH_CHARS = 200            # of a key path (a key is input too)
_BOUNDED = reprlib.Repr()   # a repr whose cost is bounded whatever the value's size or depth
_BOUNDED.maxlevel, _BOUNDED.maxstring, _BOUNDED.maxother = 3, EXCERPT_CHARS, EXCERPT_CHARS
_BOUNDED.maxlist = _BOUNDED.maxtuple = _BOUNDED.maxdict = _BOUNDED.maxset = 10
_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t"}


def excerpt(value: Any) -> str:
    """``repr(value)`` cut to about ``EXCERPT_CHARS``, saying how long the whole was:
    ``'aaaa...' ... (5000 chars)``; computed in bounded time for any value."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:EXCERPT_CHARS])
        if len(value) <= EXCERPT_CHARS and len(text) <= EXCERPT_CHARS + 3:
            return text
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{text[:EXCERPT_CHARS]}... ({len(value)} {unit})"
    try:
        text = _BOUNDED.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails (an int too long to print) says its type
        text = f"<{type(value).__name__}>"
    sized = isinstance(value, (list, tuple, dict, set, frozenset))
    if len(text) <= EXCERPT_CHARS and not (sized and len(value) > _BOUNDED.maxlist):
        return text
    cut = f"{text[:EXCERPT_CHARS]}..." if len(text) > EXCERPT_CHARS else text
    return f"{cut} ({len(value)} items)" if sized else cut


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with control characters escaped (a message stays on one line), cut to
    ``limit`` characters with the whole length said."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} chars)"
    return text.translate(_CONTROL)


class ConfigError(ValueError):
    """A configuration value that cannot be used; names the key path, the value, the expectation.

    ``value`` keeps the whole value; the message shows an excerpt of it and of the path
    (``excerpt``, ``one_line``), so a huge or hostile value cannot flood a terminal or a log.
    """

    def __init__(self, path: str, value: Any, expected: str) -> None:
        self.path = path
        self.value = value
        self.expected = expected
        super().__init__(f"{one_line(path, PATH_CHARS)}: got {excerpt(value)}, "
                         f"expected {one_line(expected)}")


def join(path: str, key: str | int) -> str:
    """Key path of ``key`` inside ``path``: ``join('wan[0]', 'rtt_ms') == 'wan[0].rtt_ms'``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Section:
    """A mapping read from YAML, checked key by key.

    Every key must be in ``allowed``: unknown keys are errors (with a close match suggested), never
    silently ignored.
    """

    def __init__(self, data: Any, path: str, allowed: Iterable[str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path or "<top level>", data, "a mapping of keys to values")
        self.data = data
        self.path = path
        allowed = tuple(allowed)
        for key in data:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(join(path, str(key)), data[key],
                                  f"one of the keys {', '.join(allowed)}{hint}")

    def where(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key, default)
        return default if value is None else value

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None, above: float | None = None,
               integer: bool = False, optional: bool = False) -> Any:
        """A number in ``[minimum, maximum]`` (``above`` is an exclusive lower bound)."""
        value = self.data.get(key)
        if value is None:
            if optional and default is _MISSING:
                return None
            if default is _MISSING:
                raise ConfigError(self.where(key), value, "a number (this key is required)")
            return default
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.where(key), value, kind)
        if integer and not float(value).is_integer():
            raise ConfigError(self.where(key), value, kind)
        if not math.isfinite(value):
            raise ConfigError(self.where(key), value, f"{kind} that is finite")
        if above is not None and not value > above:
            raise ConfigError(self.where(key), value, f"{kind} greater than {above:g}")
        if minimum is not None and value < minimum:
            raise ConfigError(self.where(key), value, f"{kind} of at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.where(key), value, f"{kind} of at most {maximum:g}")
        return int(value) if integer else float(value)

    def string(self, key: str, default: Any = _MISSING,
               choices: Iterable[str] | None = None) -> Any:
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ConfigError(self.where(key), value, "a string (this key is required)")
            return default
        if not isinstance(value, str):
            raise ConfigError(self.where(key), value, "a string")
        if choices is not None:
            choices = tuple(choices)
            if value not in choices:
                raise ConfigError(self.where(key), value, f"one of {', '.join(choices)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.where(key), value, "true or false")
        return value

    def sequence(self, key: str, default: Any = _MISSING) -> Any:
        value = self.data.get(key)
        if value is None:
            if default is _MISSING:
                raise ConfigError(self.where(key), value, "a list (this key is required)")
            return default
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(self.where(key), value, "a list")
        return list(value)


def check_name(path: str, value: Any, max_len: int) -> str:
    """A name that is safe in a shell and fits in a Linux interface name once suffixed."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or len(value) > max_len:
        raise ConfigError(path, value, f"a name of 1 to {max_len} characters: a lowercase letter, "
                                       "then lowercase letters or digits")
    return value

