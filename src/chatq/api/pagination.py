"""next_token: an opaque, URL-safe keyset cursor, bound to its owner and to the list filters
it was issued with by an HMAC."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

_TAG_BYTES = 12
_SCOPE_BYTES = 8
# Version 1: an unfiltered list's token (the layout every earlier release issued).
_UNFILTERED = struct.Struct(">BQ")  # version, seq of the last row of the previous page
# Version 2: a filtered list's, which also carries a digest of its filters, so that a token
# sent with other filters is told apart from a forged or foreign one.
_FILTERED = struct.Struct(f">BQ{_SCOPE_BYTES}s")  # version, seq, digest of the filters
_LAYOUTS = {1: _UNFILTERED, 2: _FILTERED}
_MAX_TOKEN_CHARS = 64


class InvalidToken(ValueError):
    """Malformed, forged, or not this owner's."""


class OtherFilters(InvalidToken):
    """A genuine token of this owner's, issued for a list with other filters."""


class TokenCodec:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def encode(self, owner: str, seq: int, scope: bytes = b"") -> str:
        """The token of the page after the row seq, for the filters whose canonical form is
        scope (ListFilter.scope; b"" for none)."""
        filtered = _FILTERED.pack(2, seq, self._digest(scope)) if scope else None
        payload = filtered or _UNFILTERED.pack(1, seq)
        raw = payload + self._tag(owner, payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, owner: str, token: str, scope: bytes = b"") -> int:
        """The seq a token points after; InvalidToken if malformed or not this owner's,
        OtherFilters if it was issued with filters other than scope's."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken(token)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken(token) from None
        layout = _LAYOUTS.get(raw[0]) if raw else None
        if layout is None or len(raw) != layout.size + _TAG_BYTES:
            raise InvalidToken(token)
        payload, tag = raw[: layout.size], raw[layout.size :]
        if not hmac.compare_digest(tag, self._tag(owner, payload)):
            raise InvalidToken(token)
        _version, seq, *digest = layout.unpack(payload)
        issued_for = digest[0] if digest else None
        expected = self._digest(scope) if scope else None
        if issued_for is None and expected is None:
            return int(seq)
        if issued_for is None or expected is None or not hmac.compare_digest(issued_for, expected):
            raise OtherFilters(token)
        return int(seq)

    def _digest(self, scope: bytes) -> bytes:
        return hmac.new(self._secret, b"scope\x00" + scope, hashlib.sha256).digest()[:_SCOPE_BYTES]

    def _tag(self, owner: str, payload: bytes) -> bytes:
        message = owner.encode() + b"\x00" + payload
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_TAG_BYTES]
