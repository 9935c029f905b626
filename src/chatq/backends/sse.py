"""Reading a server-sent event stream (the WHATWG HTML spec's "event stream interpretation").

The maintained SSE clients do not fit the openai backend: httpx-sse reads httpx responses
only, and the aiohttp clients (aiohttp-sse-client, -client2) are EventSource objects that
make their own GET requests and reconnect by themselves, where the backend must POST once,
map every failure itself and never retry on its own. So this is the small part we need: bytes
in, events out, fed with whatever chunks the connection delivers.
"""

from __future__ import annotations

from dataclasses import dataclass

# A line or an event's data larger than this is not an answer's chunk: give up rather than
# buffer without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024

_BOM = "\ufeff"


class MalformedStream(ValueError):
    """The stream cannot be read as server-sent events."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str = ""


class SSEDecoder:
    """Feed it the stream's bytes in chunks of any size; it returns the events they complete.

    Lines end with CRLF, LF or CR (only those: not the other Unicode line breaks), and a CRLF
    may be split across two chunks. Comments (lines starting with ':') are skipped; `data`
    lines accumulate, joined by LF; an empty line dispatches the event (none when it has no
    data); `event` and `id` are kept, `retry` is ignored (we never reconnect). A field
    without a colon has an empty value; one space after the colon is dropped. Bytes are
    UTF-8, invalid sequences replaced. An event not ended by an empty line when the stream
    ends is discarded, as the spec says: `pending` tells whether there was one.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False  # the last chunk ended with CR: a LF first in the next is its pair
        self._first_line = True
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._last_id = ""
        self._seen_field = False

    @property
    def pending(self) -> bool:
        """Something was received that no dispatched event has covered yet."""
        return bool(self._buffer) or self._seen_field

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[ServerSentEvent] = []
        start, size = 0, len(buffer)
        # Where the next CR and LF are, found once each (-1: none left): no rescans.
        cr, lf = buffer.find(b"\r"), buffer.find(b"\n")
        while cr >= 0 or lf >= 0:
            if cr < 0 or 0 <= lf < cr:
                end, start_next = lf, lf + 1
            elif cr + 1 < size:
                end, start_next = cr, cr + 2 if lf == cr + 1 else cr + 1
            else:  # CR last in the chunk: the line ends here, a LF may open the next chunk
                end, start_next = cr, cr + 1
                self._skip_lf = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = start_next
            if 0 <= cr < start:
                cr = buffer.find(b"\r", start)
            if 0 <= lf < start:
                lf = buffer.find(b"\n", start)
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise MalformedStream(f"a line longer than {MAX_EVENT_BYTES} bytes")
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._seen_field = True
        if field == "data":
            self._data.append(value)
            self._data_bytes += len(value)
            if self._data_bytes > MAX_EVENT_BYTES:
                raise MalformedStream(f"an event larger than {MAX_EVENT_BYTES} bytes")
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._data_bytes, self._event, self._seen_field = [], 0, "", False
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message", id=self._last_id)
