"""The keys of one authenticated connection, derived from the shared key and the handshake.

Why per-connection keys: every connection (the control stream and each data stream) runs its
own handshake (``migrator.wire.auth``) with fresh nonces from both ends, so its keys are fresh
too, even when the same source migrates the same guest twice, and a frame recorded on one
connection means nothing on another. What the keys cover is the whole handshake transcript: the
HELLO's bytes are hashed into both MACs and into the key derivation, so a relay that rewrites the
HELLO (say, ``encryption: none``, or another session id to splice a data stream into another
migration) fails authentication instead of downgrading or hijacking the session.

Key schedule, HKDF-SHA256 (RFC 5869, from ``cryptography``)::

    hello_hash = SHA-256(HELLO payload)
    okm = HKDF(ikm = shared key, salt = nonce_d || nonce_s,
               info = 'wanmig-v3 keys' || hello_hash, length = 96)
    source->destination key = okm[0:32]; destination->source key = okm[32:64];
    image key = okm[64:96]

The image key makes the end-to-end image check keyed (``image_tag``): the DIGEST carries an
HMAC of the image digest, which nobody without the shared key can produce for an image they
changed. The encryption modes (``ENCRYPTIONS``) follow the anchors: QEMU's TLS migration and
VMware's encrypted vMotion (AES-GCM under a fresh 256-bit key per migration).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENCRYPTIONS = ("aes-256-gcm", "chacha20-poly1305", "none")
DEFAULT_ENCRYPTION = "aes-256-gcm"
KEY_BYTES = 32
IMAGE_TAG_BYTES = 32
_INFO = b"wanmig-v3 keys"


def hello_hash(hello_payload: bytes) -> bytes:
    """SHA-256 of the HELLO's payload bytes, as they went on the wire."""
    return hashlib.sha256(hello_payload).digest()


@dataclass(frozen=True, repr=False)
class SessionKeys:
    """The keys of one connection; ``repr`` shows none of them (they end up in logs)."""

    source_to_dest: bytes
    dest_to_source: bytes
    image: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"

    def sending(self, role: str) -> bytes:
        """The key ``role`` ('source' or 'dest') seals its frames with."""
        return self.source_to_dest if role == "source" else self.dest_to_source

    def receiving(self, role: str) -> bytes:
        return self.dest_to_source if role == "source" else self.source_to_dest


def derive(shared_key: bytes, nonce_d: bytes, nonce_s: bytes, hello: bytes) -> SessionKeys:
    """The connection's keys (module docstring); ``hello`` is the HELLO's hash."""
    okm = HKDF(algorithm=hashes.SHA256(), length=3 * KEY_BYTES, salt=bytes(nonce_d + nonce_s),
               info=_INFO + bytes(hello)).derive(bytes(shared_key))
    return SessionKeys(okm[:KEY_BYTES], okm[KEY_BYTES:2 * KEY_BYTES], okm[2 * KEY_BYTES:])


def image_tag(image_key: bytes, npages: int, digest: bytes) -> bytes:
    """The keyed image check: HMAC-SHA256 over the page count and the image digest."""
    return hmac.new(image_key, b"wanmig-image" + npages.to_bytes(8, "big") + digest,
                    hashlib.sha256).digest()
