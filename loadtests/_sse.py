"""Reading a streamed inference: server-sent events, fed as they arrive, and what the stream said.

The contract: one `token` event per generated token, then one `done` event whose data carries the usage
and timings; a failure after the stream started is an `error` event (a problem document) that ends it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: str


class SseParser:
    """The event-stream format (HTML spec §9.2): fields per line, events ended by a blank line. Text may
    arrive in any pieces; an event not ended by a blank line when the stream ends is dropped."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []

    def feed(self, text: str) -> list[Event]:
        self._buffer += text
        events: list[Event] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return events
            line, self._buffer = self._buffer[: cut[0]], self._buffer[cut[1] :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> Event | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = Event(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def _line_end(text: str) -> tuple[int, int] | None:
    """Where the first line ends and the next begins (CRLF, LF or CR); None while a CR may be half of a
    CRLF still in flight."""
    lf, cr = text.find("\n"), text.find("\r")
    if cr == -1 or -1 < lf < cr:
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(text):
        return None
    return cr, cr + (2 if text[cr + 1] == "\n" else 1)


@dataclass(slots=True)
class StreamOutcome:
    tokens: int = 0
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    malformed: str | None = None

    def add(self, events: list[Event]) -> None:
        for event in events:
            if self.done is not None or self.error is not None:
                self.malformed = self.malformed or f"`{event.event}` event after the stream ended"
            elif event.event == "token":
                self.tokens += 1
            elif event.event in ("done", "error"):
                try:
                    data = json.loads(event.data)
                except ValueError:
                    self.malformed = f"`{event.event}` event data is not JSON: {event.data[:200]!r}"
                    continue
                if event.event == "done":
                    self.done = data
                else:
                    self.error = data

    def problem(self) -> str | None:
        """Why this stream is a failure, or None when it is a complete, consistent answer."""
        if self.malformed:
            return self.malformed
        if self.error is not None:
            return f"error event: {self.error.get('code')}: {self.error.get('detail')}"
        if self.done is None:
            return f"stream ended after {self.tokens} tokens without a `done` event"
        try:
            completion = int(self.done["usage"]["completion_tokens"])
            float(self.done["timings"]["ttft_ms"])
            float(self.done["timings"]["queue_ms"])
        except (KeyError, TypeError, ValueError):
            return f"`done` event without usage and timings: {json.dumps(self.done)[:200]}"
        if completion != self.tokens:
            return f"{self.tokens} token events but usage.completion_tokens = {completion}"
        return None
