from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatq.api.pagination import InvalidToken, OtherFilters, TokenCodec
from chatq.domain import ListFilter, Status

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


FILTERED = ListFilter(statuses=frozenset({Status.FAILED}), metadata=(("team", "a"),)).scope()


@given(seq=st.integers(0, 2**63 - 1))
def test_a_filtered_token_round_trips_with_its_filters_only(seq: int) -> None:
    token = codec.encode("alice", seq, FILTERED)
    assert len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)
    assert codec.decode("alice", token, FILTERED) == seq
    other = ListFilter(statuses=frozenset({Status.COMPLETED}), metadata=(("team", "a"),))
    for scope in (b"", other.scope()):
        with pytest.raises(OtherFilters):
            codec.decode("alice", token, scope)
    with pytest.raises(OtherFilters):
        codec.decode("alice", codec.encode("alice", seq), FILTERED)


def test_a_filtered_token_of_another_owner_is_not_taken_for_other_filters() -> None:
    token = codec.encode("alice", 7, FILTERED)
    with pytest.raises(InvalidToken) as raised:
        codec.decode("bob", token, FILTERED)
    assert not isinstance(raised.value, OtherFilters)


def test_the_filters_scope_is_canonical() -> None:
    one = ListFilter(statuses=frozenset({Status.FAILED, Status.CREATED}), model="echo")
    same = ListFilter(statuses=frozenset({Status.CREATED, Status.FAILED}), model="echo")
    assert one.scope() == same.scope() != ListFilter(model="echo").scope()
    assert ListFilter().scope() == b""
    bounded = (ListFilter(created_after=5), ListFilter(created_before=5))
    assert bounded[0].scope() != bounded[1].scope()
