"""ground.units: sizes from YAML, and the errors that name the key."""

from __future__ import annotations

import pytest

from ground.config import ConfigError
from ground.units import parse_size


@pytest.mark.parametrize(("value", "expected"), [
    (4096, 4096), ("4096B", 4096), ("64KiB", 65536), ("1.5MiB", 1572864), ("2 GiB", 2 << 30),
    (0, 0),
])
def test_sizes_parse(value, expected):
    assert parse_size(value, "vm.disk.size", "a size") == expected


@pytest.mark.parametrize("value", [True, 1.5, "1.5B", "12", "1TiB", "MiB", None, [1]])
def test_bad_sizes_name_the_key_and_the_value(value):
    with pytest.raises(ConfigError) as err:
        parse_size(value, "vm.disk.size", "a size like 1GiB")
    assert err.value.path == "vm.disk.size"
    assert err.value.value == value
    assert "a size like 1GiB" in str(err.value)
