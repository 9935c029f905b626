"""A deterministic backend that answers with the last user message: for demos and tests."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from chatq.backends.base import TextSink
from chatq.backends.normalize import completion_response
from chatq.domain import JSON


class EchoBackend:
    def __init__(self, name: str = "echo") -> None:
        self.name = name

    async def run(self, request_id: str, request: JSON, on_text: TextSink | None = None) -> JSON:
        messages = request["messages"]
        user_turns = [m for m in messages if m.get("role") == "user"]
        answer = message_text(user_turns[-1]) if user_turns else ""
        if on_text is not None:
            for piece in word_pieces(answer):
                on_text(piece)
                await asyncio.sleep(0)  # as a real stream would: other tasks run, cancel lands
        prompt_tokens = sum(len(message_text(m).split()) for m in messages)
        return completion_response(
            request_id, request["model"], answer, prompt_tokens, len(answer.split())
        )

    async def aclose(self) -> None:
        return None


def word_pieces(text: str) -> list[str]:
    """text word by word, each word with the whitespace after it: they concatenate to text."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def message_text(message: JSON) -> str:
    """The text of a message whose content is a string or a list of content chunks."""
    content: Any = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(c.get("text", ""))
            for c in content
            if isinstance(c, dict) and c.get("type") == "text"
        )
    return ""
