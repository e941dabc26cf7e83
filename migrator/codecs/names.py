"""Codec names and their one-byte wire ids (the PAGES message carries the id).

One table; ``codec_id`` and ``codec_name`` read it both ways. Names are checked wherever a
policy or a command line names a codec, before anything starts.
"""

from __future__ import annotations

from ground.config import ConfigError

ZSTD_LEVELS = range(1, 20)
_ZSTD_ID_BASE = 0x10
# name => wire id; an id, once given, never changes meaning (old captures stay readable)
IDS: dict[str, int] = {"none": 0, "lz4": 1, "xbzrle": 2,
                       **{f"zstd-{n}": _ZSTD_ID_BASE + n for n in ZSTD_LEVELS}}
CODECS: tuple[str, ...] = ("none", "lz4", *(f"zstd-{n}" for n in ZSTD_LEVELS), "xbzrle")
_NAMES = {ident: name for name, ident in IDS.items()}


def check_codec_name(name: object, path: str = "policy.codec") -> str:
    """``name`` if it is a codec name, else ConfigError naming ``path``."""
    if not isinstance(name, str) or name not in IDS:
        raise ConfigError(path, name, "a codec: none, lz4, zstd-1 .. zstd-19 or xbzrle")
    return name


def codec_id(name: str) -> int:
    """The one-byte wire id of a codec name."""
    return IDS[check_codec_name(name)]


def codec_name(ident: int) -> str:
    """Inverse of ``codec_id``; ValueError for an id no codec has."""
    try:
        return _NAMES[ident]
    except KeyError:
        raise ValueError(f"unknown codec id {ident}") from None
