"""A client of a request's event stream, as a program would write one: the SSE framing,
reconnecting with Last-Event-ID, and the text it assembles (the deltas of the current run,
dropping an earlier run's text when a status event says the text restarted)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.acceptance.conftest import PATH, chat
from tests.harness import ChatqServer

# A question whose answer ("upstream: " and the question) is long enough to come in many pieces.
QUESTION = "tell me everything " + " ".join(f"fact-{i}" for i in range(40))


@dataclass(frozen=True)
class Event:
    kind: str  # the SSE event field: status, delta, done
    id: str
    data: dict[str, Any]


def read_events(response: httpx.Response) -> Iterator[Event]:
    """The events of an open text/event-stream response, each once its blank line has come
    (an event cut short by a dropped connection is never yielded)."""
    kind, event_id, data = "message", "", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield Event(kind, event_id, json.loads("\n".join(data)))
            kind, data = "message", []
        elif not line.startswith(":"):  # a comment (sse-starlette's pings) is skipped
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


def submit_streamed(client: httpx.Client, content: str) -> str:
    """A stream: true request for fake-model: its id."""
    response = client.post(PATH, json=chat(content, "fake-model", stream=True))
    assert response.status_code == 200, response.text
    request_id: str = response.json()["id"]
    return request_id


def answer(response_object: dict[str, Any]) -> str:
    """The text of a finished request's answer (a done event's data, or a GET's body)."""
    content: str = response_object["response"]["choices"][0]["message"]["content"]
    return content


@dataclass
class Transcript:
    """Everything one client has received of one request's events, over its connections."""

    events: list[Event] = field(default_factory=list)
    run: int = 0  # the run the text being assembled belongs to
    texts: dict[int, str] = field(default_factory=dict)  # the text assembled, by run

    @property
    def last_id(self) -> str | None:
        return self.events[-1].id if self.events else None

    @property
    def done(self) -> dict[str, Any] | None:
        return self.events[-1].data if self.events and self.events[-1].kind == "done" else None

    @property
    def text(self) -> str:
        """What the client shows: the current run's text (earlier runs' text dropped)."""
        return self.texts.get(self.run, "")

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    def add(self, event: Event) -> None:
        self.events.append(event)
        if event.kind == "status" and event.data["run"] != self.run:
            self.run = event.data["run"]  # the text (re)starts: what came before is dropped
        elif event.kind == "delta":
            self.texts[self.run] = self.texts.get(self.run, "") + event.data["content"]

    def follow(
        self,
        server: ChatqServer,
        key: str,
        request_id: str,
        on_event: Callable[[Transcript], object] = lambda _: None,
        until: Callable[[Transcript], bool] = lambda t: t.done is not None,
    ) -> httpx.TransportError | None:
        """Read the request's events from server, resuming after the last event received,
        until until(self) (by default: until the done event), then hang up: None; or until
        the connection breaks: the error. on_event runs after each event is added."""
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        try:
            with (
                httpx.Client(
                    base_url=server.base_url,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=httpx.Timeout(30, read=20),
                ) as client,
                client.stream("GET", f"{PATH}/{request_id}/events", headers=headers) as response,
            ):
                assert response.status_code == 200, response.read()
                for event in read_events(response):
                    self.add(event)
                    on_event(self)
                    if until(self):
                        return None
        except httpx.TransportError as broken:
            return broken
        raise AssertionError(f"the stream ended before it should have; got {self.events}")
