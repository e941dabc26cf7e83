"""Mutual authentication of the two migration endpoints with HMAC-SHA256 and a shared key.

Why: a migration stream carries a whole guest's memory and then resumes it; accepting one from
an impostor (or sending one to an impostor) is fatal.  Both sides prove knowledge of the key
without sending it, over fresh nonces so recorded answers cannot be replayed:

0. source -> destination  HELLO      what the source asks for (JSON); ``h = SHA-256(HELLO)``
1. destination -> source  CHALLENGE  ``nonce_d`` (32 random bytes)
2. source -> destination  AUTH       ``HMAC(key, nonce_d || h || 'wanmig-source') || nonce_s``
3. destination -> source  AUTH_OK    ``HMAC(key, nonce_d || nonce_s || h || 'wanmig-dest')``

``h`` puts the HELLO under both MACs: a relay that changes it (the encryption asked for, the
session a data stream belongs to) is refused. After AUTH_OK both ends derive the connection's
keys from the same transcript (``migrator.wire.session``) and every frame carries a tag
(``migrator.wire.seal``).

The role labels stop a reflected answer from passing as the other side's.  Step 3 also covers
the source's own nonce ``nonce_s`` (an addition to the plain ``nonce_d || 'wanmig-dest'``): with
``nonce_d`` alone, a fake destination could replay an AUTH_OK it recorded, by re-sending that
session's ``nonce_d``.  Comparisons use ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 32
MAC_BYTES = 32
MIN_KEY_BYTES = 16
ROLES = {"source": b"wanmig-source", "dest": b"wanmig-dest"}


class AuthError(ValueError):
    """The peer did not prove knowledge of the shared key (or the exchange was malformed)."""


def make_challenge() -> bytes:
    """A fresh 32-byte nonce from the OS CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES)


def _check(key: bytes, nonce: bytes) -> None:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise AuthError(f"shared key must be at least {MIN_KEY_BYTES} bytes, got {size}")
    if len(nonce) < NONCE_BYTES:
        raise AuthError(f"nonce of {len(nonce)} bytes, expected at least {NONCE_BYTES}")


def answer(key: bytes, nonce: bytes, role: str = "source") -> bytes:
    """``HMAC-SHA256(key, nonce || label(role))``: the source passes nonce_d || h, the
    destination nonce_d || nonce_s || h."""
    _check(key, nonce)
    return hmac.new(key, bytes(nonce) + ROLES[role], hashlib.sha256).digest()


def verify(key: bytes, nonce: bytes, mac: bytes, role: str = "source") -> None:
    """Raise AuthError unless ``mac`` is ``answer(key, nonce, role)``."""
    if len(mac) != MAC_BYTES:
        raise AuthError(f"{role} authentication: MAC of {len(mac)} bytes, expected {MAC_BYTES}")
    if not hmac.compare_digest(answer(key, nonce, role), bytes(mac)):
        raise AuthError(f"{role} authentication failed: wrong shared key or tampered handshake")
