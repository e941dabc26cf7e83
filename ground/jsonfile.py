"""Reading back what a run wrote as JSON: the value, or None when the file is missing or not
(yet) whole JSON (a process killed mid-write, a run that never got that far)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
