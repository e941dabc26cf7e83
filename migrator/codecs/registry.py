"""The codec registry: a fresh codec by name, for every codec the testbed has (one table).

Stateless chunk codecs come from ``migrator.codecs.chunk``; XBZRLE from ``migrator.codecs.xbzrle``
(its encoder and decoder keep mirrored caches, hence the ``role``). Names and wire ids are in
``migrator.codecs.names``.
"""

from __future__ import annotations

from collections.abc import Callable

from migrator.codecs.chunk import STATELESS, Codec
from migrator.codecs.names import check_codec_name
from migrator.codecs.xbzrle import XbzrleDecoder, XbzrleEncoder

_XBZRLE = {"encode": XbzrleEncoder, "decode": XbzrleDecoder}
# name => maker(role, xbzrle_cache_mib)
_MAKERS: dict[str, Callable[[str, int], Codec]] = {
    **{name: (lambda _role, _mib, make=make: make()) for name, make in STATELESS.items()},
    "xbzrle": lambda role, mib: _XBZRLE[role](mib),
}


def get_codec(name: str, *, role: str = "encode", xbzrle_cache_mib: int = 64,
              path: str = "policy.codec") -> Codec:
    """A fresh codec instance; ConfigError (``path``) for an unknown name.

    ``role`` matters only for XBZRLE, whose encoder and decoder keep mirrored caches: the source
    asks for ``role='encode'``, the destination for ``role='decode'``, with the same cache size.
    """
    check_codec_name(name, path)
    if role not in _XBZRLE:
        raise ValueError(f"role: got {role!r}, expected encode or decode")
    return _MAKERS[name](role, xbzrle_cache_mib)
