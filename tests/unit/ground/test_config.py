"""ground.config: the Section schema helper, check_name and key paths."""

from __future__ import annotations

import math

import pytest

from ground.config import ConfigError, Section, check_name, join


def sec(**data) -> Section:
    return Section(data, "wan[0]", ("rtt_ms", "bw_mbps", "mtu", "kind", "flag", "items",
                                    "name"))


# --- Section construction -----------------------------------------------------------------------

@pytest.mark.parametrize("data", [[1, 2], "rtt_ms: 5", 5, ("a", "b")])
def test_section_rejects_non_mapping(data):
    with pytest.raises(ConfigError) as info:
        Section(data, "wan[0]", ("rtt_ms",))
    assert info.value.path == "wan[0]"
    assert "mapping" in info.value.expected


def test_section_top_level_non_mapping_named():
    with pytest.raises(ConfigError) as info:
        Section([1], "", ("name",))
    assert info.value.path == "<top level>"


def test_section_none_is_empty():
    s = Section(None, "controller", ("site",))
    assert s.data == {}
    assert not s.has("site")


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        Section({"dealy": 5}, "wan[0]", ("rtt_ms", "delay", "bw_mbps"))
    err = info.value
    assert err.path == "wan[0].dealy"
    assert err.value == 5
    assert "did you mean 'delay'?" in str(err)


def test_unknown_key_without_close_match_lists_allowed():
    with pytest.raises(ConfigError) as info:
        Section({"zzzzzz": 1}, "", ("name", "sites"))
    assert info.value.path == "zzzzzz"
    assert "did you mean" not in str(info.value)
    assert "name, sites" in str(info.value)


def test_non_string_key_is_rejected():
    with pytest.raises(ConfigError) as info:
        Section({1: "x"}, "wan[0]", ("rtt_ms",))
    assert info.value.path == "wan[0].1"


def test_error_message_names_path_value_and_expectation():
    err = ConfigError("wan[0].rtt_ms", -3.0, "a number of at least 0")
    assert str(err) == "wan[0].rtt_ms: got -3.0, expected a number of at least 0"
    assert isinstance(err, ValueError)


# --- number() -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False])
def test_number_rejects_bool(value):
    with pytest.raises(ConfigError) as info:
        sec(rtt_ms=value).number("rtt_ms")
    assert info.value.path == "wan[0].rtt_ms"


@pytest.mark.parametrize("value", ["5", "five", [5], {"a": 1}])
def test_number_rejects_non_numbers(value):
    with pytest.raises(ConfigError, match="expected a number"):
        sec(rtt_ms=value).number("rtt_ms")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("integer", [False, True])
def test_number_rejects_nan_and_inf(value, integer):
    with pytest.raises(ConfigError) as info:
        sec(rtt_ms=value).number("rtt_ms", integer=integer)
    assert info.value.path == "wan[0].rtt_ms"


def test_number_nan_message_says_finite():
    with pytest.raises(ConfigError, match="finite"):
        sec(rtt_ms=math.nan).number("rtt_ms", minimum=0)


def test_number_integer_rejects_fraction_accepts_whole_float():
    with pytest.raises(ConfigError, match="an integer"):
        sec(mtu=1.5).number("mtu", integer=True)
    got = sec(mtu=2.0).number("mtu", integer=True)
    assert got == 2 and type(got) is int


def test_number_returns_float_when_not_integer():
    got = sec(rtt_ms=5).number("rtt_ms")
    assert got == 5.0 and type(got) is float


def test_number_minimum_maximum_above():
    assert sec(rtt_ms=0).number("rtt_ms", minimum=0, maximum=10) == 0.0
    assert sec(rtt_ms=10).number("rtt_ms", minimum=0, maximum=10) == 10.0
    with pytest.raises(ConfigError, match="at least 0"):
        sec(rtt_ms=-0.5).number("rtt_ms", minimum=0)
    with pytest.raises(ConfigError, match="at most 2000"):
        sec(rtt_ms=2000.5).number("rtt_ms", maximum=2000)
    with pytest.raises(ConfigError, match="greater than 0"):
        sec(bw_mbps=0).number("bw_mbps", above=0)
    assert sec(bw_mbps=0.001).number("bw_mbps", above=0) == 0.001


def test_number_missing_default_optional_required():
    assert sec().number("rtt_ms", 150.0) == 150.0
    assert sec(rtt_ms=None).number("rtt_ms", 150.0) == 150.0
    assert sec().number("rtt_ms", optional=True) is None
    with pytest.raises(ConfigError, match="required"):
        sec().number("rtt_ms")


# --- string(), boolean(), sequence() ------------------------------------------------------------

def test_string_with_choices():
    assert sec(kind="edge").string("kind", choices=("edge", "leaf-spine")) == "edge"
    with pytest.raises(ConfigError) as info:
        sec(kind="ring").string("kind", choices=("edge", "leaf-spine"))
    assert info.value.path == "wan[0].kind"
    assert "one of edge, leaf-spine" in str(info.value)
    assert sec().string("kind", "edge", choices=("edge",)) == "edge"


def test_string_rejects_non_strings_and_required():
    with pytest.raises(ConfigError, match="a string"):
        sec(kind=5).string("kind")
    with pytest.raises(ConfigError, match="required"):
        sec().string("kind")


def test_boolean():
    assert sec(flag=True).boolean("flag", False) is True
    assert sec(flag=False).boolean("flag", True) is False
    assert sec().boolean("flag", True) is True
    for value in ("yes", 1, 0, "true"):
        with pytest.raises(ConfigError, match="true or false"):
            sec(flag=value).boolean("flag", False)


def test_sequence():
    assert sec(items=[1, 2]).sequence("items") == [1, 2]
    assert sec(items=(1, 2)).sequence("items") == [1, 2]
    assert sec().sequence("items", []) == []
    for value in ("ab", b"ab", {"a": 1}, 3):
        with pytest.raises(ConfigError, match="a list"):
            sec(items=value).sequence("items")
    with pytest.raises(ConfigError, match="required"):
        sec().sequence("items")


# --- check_name ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dc1", "a", "site12", "abcdef"])
def test_check_name_accepts(name):
    assert check_name("sites[0].name", name, 6) == name


@pytest.mark.parametrize("name", ["DC1", "Dc1", "1dc", "9", "abcdefg", "", "dc-1", "dc_1",
                                  "dc 1", "dc1;rm", "dc$1", "dc`x`", "dc|x", "dc&", "dc>x",
                                  "dc'1", "dc/1", 5, None, ["dc1"]])
def test_check_name_rejects(name):
    with pytest.raises(ConfigError) as info:
        check_name("sites[0].name", name, 6)
    assert info.value.path == "sites[0].name"
    assert "1 to 6 characters" in str(info.value)


def test_check_name_rejects_trailing_newline():
    with pytest.raises(ConfigError):
        check_name("sites[0].name", "dc1\n", 6)


# --- join ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "key", "out"), [
    ("", "a", "a"),
    ("wan", 0, "wan[0]"),
    ("wan[0]", "rtt_ms", "wan[0].rtt_ms"),
    ("sites[1].hypervisors", 3, "sites[1].hypervisors[3]"),
    ("", 0, "[0]"),
])
def test_join(path, key, out):
    assert join(path, key) == out


def test_topology_rejects_site_name_with_trailing_newline():
    from topologies.spec import parse_topology

    with pytest.raises(ConfigError) as info:
        parse_topology({"sites": [{"name": "dc1\n"}, {"name": "dc2"}]})
    assert info.value.path == "sites[0].name"


# --- messages: an excerpt of the value, one line ------------------------------------------------

def test_long_string_value_is_cut_in_the_message():
    value = "x" * 5000
    err = ConfigError("description", value, "a short text")
    message = str(err)
    assert err.value == value                                   # the whole value is kept
    assert "... (5000 chars)" in message and len(message) < 200, message
    assert message.startswith("description: got 'xxxx")


def test_short_value_is_shown_whole():
    assert str(ConfigError("wan[0].rtt_ms", -3.0, "at least 0")) == \
        "wan[0].rtt_ms: got -3.0, expected at least 0"


def test_long_list_value_is_cut_and_counted():
    message = str(ConfigError("grid.x", list(range(100_000)), "fewer values"))
    assert "(100000 items)" in message and len(message) < 200, message


def test_deeply_shared_value_is_cut_in_bounded_time():
    # What an alias bomb would have built: 9 ** 9 leaves through shared lists.
    value: list = ["lol"] * 9
    for _ in range(8):
        value = [value] * 9
    message = str(ConfigError("description", value, "a string"))
    assert len(message) < 200, message


def test_newlines_in_path_value_and_expectation_stay_on_one_line():
    message = str(ConfigError("a\nb", "c\nd", "e\nf"))
    assert "\n" not in message, message
    assert "a\\nb" in message and "e\\nf" in message, message


def test_a_huge_key_is_cut_in_the_path():
    with pytest.raises(ConfigError) as info:
        Section({"k" * 10_000: 1}, "", ("name",))
    assert len(str(info.value)) < 400, str(info.value)[:400]
    assert "(10000 chars)" in str(info.value)


def test_an_int_too_long_to_print_is_named_by_its_type():
    message = str(ConfigError("seed", 10 ** 5000, "an integer"))
    assert "got <int>" in message and len(message) < 100, message
