"""The server-sent events reader: the spec's framing, whatever the chunks the network makes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatq.backends.sse import MAX_EVENT_BYTES, MalformedStream, ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def data(*chunks: bytes) -> list[str]:
    return [event.data for event in decode(*chunks)]


def test_openai_style_chunks() -> None:
    assert data(b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n') == [
        '{"a":1}',
        '{"b":2}',
        "[DONE]",
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending(eol: bytes) -> None:
    stream = b"data: one" + eol + eol + b"data: two" + eol + eol
    assert data(stream) == ["one", "two"]


def test_multi_line_data_is_joined_with_lf() -> None:
    assert data(b"data: first\ndata: second\ndata\ndata:third\n\n") == ["first\nsecond\n\nthird"]


def test_comments_and_unknown_fields_are_skipped() -> None:
    stream = b": keep-alive\n\n:\ndata: x\n: in between\nretry: 10\nfoo: bar\n\n"
    assert data(stream) == ["x"]


def test_only_one_space_after_the_colon_is_dropped() -> None:
    assert data(b"data:  two spaces\n\ndata:none\n\n") == [" two spaces", "none"]


def test_event_and_id_fields() -> None:
    events = decode(b"event: delta\nid: 7\ndata: x\n\ndata: y\n\nid: bad\0id\ndata: z\n\n")
    assert events == [
        ServerSentEvent("x", "delta", "7"),
        ServerSentEvent("y", "message", "7"),  # the last event id persists, the type does not
        ServerSentEvent("z", "message", "7"),  # an id with NUL is ignored
    ]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decode(b"event: ping\n\nid: 3\n\n\n\n") == []


def test_a_leading_byte_order_mark_is_dropped() -> None:
    assert data(b"\xef\xbb\xbfdata: x\n\n") == ["x"]
    assert data(b"data: \xef\xbb\xbfx\n\n") == ["\ufeffx"], "only at the start of the stream"


def test_utf8_split_across_chunks_and_invalid_bytes_replaced() -> None:
    snowman = "data: ☃\n\n".encode()
    assert data(snowman[:7], snowman[7:]) == ["☃"]
    assert data(b"data: \xff\n\n") == ["\ufffd"]


def test_other_unicode_line_breaks_are_data() -> None:
    assert data("data: a\u2028b\x85c\x0bd\n\n".encode()) == ["a\u2028b\x85c\x0bd"]


def test_crlf_split_between_two_chunks_is_one_line_end() -> None:
    assert data(b"data: x\r", b"\n", b"\r", b"\ndata: y\r\n\r\n") == ["x", "y"]
    # ...and a CR that ends a chunk with no LF after it still ends the line.
    assert data(b"data: x\r", b"\r") == ["x"]


def test_an_unfinished_event_is_pending_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: whole\n\ndata: cut") == [ServerSentEvent("whole")]
    assert decoder.pending
    decoder = SSEDecoder()
    assert decoder.feed(b"data: no blank line yet\n") == []
    assert decoder.pending
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n: only a comment\n")
    assert not decoder.pending


def feed_until_refused(decoder: SSEDecoder, chunk: bytes) -> None:
    for _ in range(MAX_EVENT_BYTES // len(chunk) + 2):
        decoder.feed(chunk)


def test_an_endless_line_is_refused() -> None:
    with pytest.raises(MalformedStream, match="longer than"):
        feed_until_refused(SSEDecoder(), b"x" * 65536)


def test_an_endless_event_is_refused() -> None:
    with pytest.raises(MalformedStream, match="larger than"):
        feed_until_refused(SSEDecoder(), b"data: " + b"x" * 65536 + b"\n")


STREAM = (
    "\ufeff: hello\r\n"
    'data: {"choices": [{"delta": {"content": "héllo ☃"}}]}\r\n\r\n'
    "event: x\ndata: a\rdata: b\r\n\n"
    "id: 1\r: c\r\rdata\n\n"
    "data: [DONE]\n\n"
).encode()


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_into_chunks_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*chunks) == decode(STREAM)
    assert [e.data for e in decode(STREAM)] == [
        '{"choices": [{"delta": {"content": "héllo ☃"}}]}',
        "a\nb",
        "",
        "[DONE]",
    ]
