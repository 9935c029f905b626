"""batch run's input and output files, on real files: what a re-run skips, and its keys."""

from __future__ import annotations

import json
from pathlib import Path

from chatq.client.batch import BadLine, Item, parse_line, written


def request(content: str) -> dict[str, object]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}]}


def test_a_line_cut_short_by_a_kill_is_dropped_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    whole = [
        {"id": "1", "custom_id": "a", "response": {"status_code": 200}, "error": None},
        {"id": None, "custom_id": "b", "response": None, "error": {"code": "invalid_line"}},
    ]
    text = "".join(json.dumps(line) + "\n" for line in whole)
    out.write_text(text + '{"id": "3", "custom_id": "c", "resp')
    assert written(out) == {"a": False, "b": True}
    assert out.read_text() == text, "the partial line is gone, so appending starts clean"
    assert written(tmp_path / "not-there.jsonl") == {}


def test_keys_follow_the_custom_id_and_the_request() -> None:
    def key(custom_id: str, content: str, shape: str = "request") -> str:
        line = {"custom_id": custom_id, shape: request(content)}
        item = parse_line(1, json.dumps(line))
        assert isinstance(item, Item)
        return str(item.body["idempotency_key"])

    assert key("a", "hi") == key("a", "hi") == key("a", "hi", "body"), "the same in any run"
    assert key("a", "hi") != key("b", "hi"), "each custom_id its own request"
    assert key("a", "hi") != key("a", "another"), "a reused custom_id is another request"


def test_bad_lines_say_why() -> None:
    cases = {
        "[1, 2]": "not a JSON object",
        '{"custom_id": 5, "body": {}}': "no custom_id",
        '{"custom_id": "x"}': 'neither "body" nor "request"',
        '{"custom_id": "x", "method": "GET", "body": {}}': "only POST",
        '{"custom_id": "x", "request": "hi"}': "not a JSON object",
    }
    for text, reason in cases.items():
        bad = parse_line(7, text)
        assert isinstance(bad, BadLine) and bad.line == 7 and reason in bad.reason, (text, bad)
