"""next_token: an opaque, URL-safe keyset cursor, bound to its owner by an HMAC."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

_VERSION = 1
_TAG_BYTES = 12
_LAYOUT = struct.Struct(">BQ")  # version, seq of the last row of the previous page
_MAX_TOKEN_CHARS = 64


class InvalidToken(ValueError):
    pass


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, owner: str, seq: int) -> str:
        payload = _LAYOUT.pack(_VERSION, seq)
        raw = payload + self._tag(owner, payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, owner: str, token: str) -> int:
        """The seq a token points after; InvalidToken if malformed or not this owner's."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken(token)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken(token) from None
        if len(raw) != _LAYOUT.size + _TAG_BYTES:
            raise InvalidToken(token)
        payload, tag = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if not hmac.compare_digest(tag, self._tag(owner, payload)):
            raise InvalidToken(token)
        version, seq = _LAYOUT.unpack(payload)
        if version != _VERSION:
            raise InvalidToken(token)
        return int(seq)

    def _tag(self, owner: str, payload: bytes) -> bytes:
        message = owner.encode() + b"\x00" + payload
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_TAG_BYTES]
