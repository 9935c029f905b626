from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatq.api.pagination import InvalidToken, TokenCodec

codec = TokenCodec(b"s" * 32)


@given(owner=st.text(min_size=1), seq=st.integers(0, 2**63 - 1))
def test_round_trip_and_url_safe(owner: str, seq: int) -> None:
    token = codec.encode(owner, seq)
    assert all(c.isalnum() or c in "-_" for c in token)
    assert codec.decode(owner, token) == seq


@given(seq=st.integers(0, 2**40))
def test_bound_to_owner_and_secret(seq: int) -> None:
    token = codec.encode("alice", seq)
    with pytest.raises(InvalidToken):
        codec.decode("bob", token)
    with pytest.raises(InvalidToken):
        TokenCodec(b"t" * 32).decode("alice", token)


@given(token=st.text(max_size=80))
def test_garbage_never_decodes_nor_crashes(token: str) -> None:
    with pytest.raises(InvalidToken):
        codec.decode("alice", token)


def test_every_single_character_change_is_refused() -> None:
    token = codec.encode("alice", 12345)
    for i in range(len(token)):
        for replacement in "AZaz09-_":
            if token[i] == replacement:
                continue
            changed = token[:i] + replacement + token[i + 1 :]
            try:
                decoded = codec.decode("alice", changed)
            except InvalidToken:
                continue
            # Base64's last character has spare bits: a change there may decode the same.
            assert decoded == 12345 and i == len(token) - 1
