"""The echo backend streams its answer word by word, and answers the same either way."""

from __future__ import annotations

import asyncio

import pytest

from chatq.backends.echo import EchoBackend, word_pieces
from chatq.domain import JSON


def asking(content: str) -> JSON:
    return {"model": "echo", "messages": [{"role": "user", "content": content}], "stream": True}


@pytest.mark.parametrize("text", ["", "one", "two  words\n", "  leading and trailing  ", "\t"])
def test_word_pieces_concatenate_to_the_text(text: str) -> None:
    assert "".join(word_pieces(text)) == text
    assert all(word_pieces(text))


async def test_streams_word_by_word_and_returns_the_same_response() -> None:
    echo = EchoBackend()
    pieces: list[str] = []
    streamed = await echo.run("r1", asking("hello  streaming world"), pieces.append)
    plain = await echo.run("r1", asking("hello  streaming world"))
    assert pieces == ["hello  ", "streaming ", "world"]
    assert streamed["choices"][0]["message"]["content"] == "".join(pieces)
    streamed["created"] = plain["created"]
    assert streamed == plain


async def test_a_cancelled_stream_stops() -> None:
    pieces: list[str] = []
    call = asyncio.create_task(EchoBackend().run("r1", asking("a b c d e f"), pieces.append))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert 0 < len(pieces) < 6
