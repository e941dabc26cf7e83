"""Sizes as people write them in YAML: ``4096``, ``"256MiB"``, ``"1.5GiB"``.

Only the parsing lives here; what a size must be (a whole number of pages, within a range) is
the caller's to check, with the caller's key path and expectation in the error.
"""

from __future__ import annotations

import re
from typing import Any

from ground.config import ConfigError

UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB)\s*")


def parse_size(value: Any, path: str, expected: str) -> int:
    """Bytes from an int or a ``"<n>B|KiB|MiB|GiB"`` string (``n`` may have a fraction if the
    product is whole); anything else is a ConfigError(path, value, expected)."""
    if isinstance(value, bool):
        raise ConfigError(path, value, expected)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := SIZE_RE.fullmatch(value)):
        exact = float(m.group(1)) * UNITS[m.group(2)]
        if exact.is_integer():
            return int(exact)
    raise ConfigError(path, value, expected)
