"""Logs without secrets, written off the event loop: how both servers log (`hostedai-mock`,
`harpoon-service`).

- `configure_logging`: records go to stderr in batches written by a thread, so the event loop only
  appends each one to a buffer; if stderr does not keep up, at most `LOG_QUEUE_SIZE` wait and the rest
  are dropped and counted, so memory stays bounded and the loop never blocks on a write. The thread
  wakes every `FLUSH_INTERVAL_S`, not once per record: a wake-up per record made the two threads trade
  the GIL on every request (a third of the mock's throughput with the access log on, measured).
- `RedactSecrets`: every line written, at any level, is scrubbed of the configured secrets (API keys,
  the admin token) and of whatever follows `Authorization`, `X-Admin-Token` or `Bearer`.
- `AccessLog`: one short access-log line per request, cheaper to build than aiohttp's configurable one.

TWIN FILE: `mock_server/logs.py` and `harness/service/logs.py` are the same file byte for byte
(`tests/server/test_serving.py` pins it): the two packages may not import each other.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

log = logging.getLogger(__name__)

# Log records waiting for the writing thread, at most (beyond, they are dropped and counted).
LOG_QUEUE_SIZE = 10_000
# Every line: `2026-11-30 23:48:37,871 INFO aiohttp.access: 127.0.0.1 "POST /v1/inference HTTP/1.1" 200 …`.
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # logging.Formatter's default, which `_BatchWriter._line` matches
# How often the writing thread writes what was logged since (a line reaches stderr this late at most).
FLUSH_INTERVAL_S = 0.02

# A header that carries a credential, and what follows it on the line (the whole value, any scheme).
_CREDENTIAL_HEADER = re.compile(r"(?i)\b(authorization|x-admin-token|x-api-key)\b(['\"]?\s*[:=,]\s*['\"]?)[^'\"\r\n]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s'\",;]+")
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Scrubs credentials from every record a handler writes: known secrets (API keys, the admin token)
    wherever they appear, and whatever follows an `Authorization`, `X-Admin-Token` or `Bearer`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _CREDENTIAL_HEADER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        return _BEARER.sub("Bearer " + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        record.msg, record.args = self.scrub(message), None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


class AccessLog(AbstractAccessLogger):
    """One line per answered request, `remote "METHOD /path HTTP/1.1" status bytes ms`: cheaper to build
    than aiohttp's configurable format, which the hot path of a load test pays on every request. Under
    `configure_logging` the line skips the logging machinery (a LogRecord, handlers, filters: most of a
    line's cost) and goes straight to the writing thread's buffer, which scrubs and stamps it like any
    other record; otherwise it is an INFO record of its logger."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        # aiohttp counts the bytes of a body sent with its headers in one write as 0 (`body_length`):
        # a whole response says its length in Content-Length.
        size = response.body_length or response.content_length or 0
        line = (
            f'{request.remote} "{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}" '
            f"{response.status} {size} {time * 1000:.1f}ms"
        )
        buffer = _buffer
        if buffer is not None:
            buffer.add_line(self.logger.name, line)
        else:
            self.logger.info("%s", line)


def configure_logging(level: str, secrets: Iterable[str]) -> Callable[[], None]:
    """Log to stderr at `level`, scrubbed of `secrets`, with the writing done on a thread: the event loop
    only buffers each record. Returns the function that flushes, stops the thread and puts the root
    logger back as it was."""
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter(LINE_FORMAT))
    stream.addFilter(RedactSecrets(secrets))
    global _buffer
    buffered = _buffer = _BufferHandler()
    writer = _BatchWriter(buffered, stream)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for handler in before[0]:
        root.removeHandler(handler)
    root.addHandler(buffered)
    root.setLevel(level)
    writer.start()

    def stop() -> None:
        global _buffer
        _buffer = None
        writer.stop()
        root.removeHandler(buffered)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])

    return stop


class _BufferHandler(logging.Handler):
    """Buffers records for the writing thread (a deque: appending is atomic, no lock, no wake-up); when
    stderr does not keep up and `LOG_QUEUE_SIZE` records wait, drops them and says how many once there
    is room, so memory stays bounded and the loop never blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.records: deque[logging.LogRecord | _Line] = deque()
        self.dropped = 0

    def add_line(self, logger: str, message: str) -> None:
        """An INFO line of `logger`, built by the caller (the access log), without a LogRecord."""
        if self._full():
            return
        self.records.append((time.time(), logger, message))

    def emit(self, record: logging.LogRecord) -> None:
        if self._full():
            return
        self.records.append(_prepared(record))

    def _full(self) -> bool:
        """Whether the buffer is full (the caller's line is dropped and counted); when there is room
        again after drops, the count is buffered first, as a warning."""
        if len(self.records) >= LOG_QUEUE_SIZE:
            self.dropped += 1
            return True
        if self.dropped:
            note = logging.LogRecord(
                log.name,
                logging.WARNING,
                __file__,
                0,
                "dropped %d log records: stderr did not keep up",
                (self.dropped,),
                None,
            )
            self.records.append(_prepared(note))
            self.dropped = 0
        return False


def _prepared(record: logging.LogRecord) -> logging.LogRecord:
    # Only what cannot wait is done on the caller's thread: the message merged while its arguments are
    # as they were, the traceback rendered while it exists. Formatting (timestamp and all) and scrubbing
    # happen on the writing thread.
    record.msg, record.args = record.getMessage(), None
    if record.exc_info:
        record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
        record.exc_info = None
    return record


class _BatchWriter(threading.Thread):
    """Every `FLUSH_INTERVAL_S`, formats what was buffered and writes it to stderr in one write."""

    def __init__(self, source: _BufferHandler, sink: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        super().__init__(name="log-writer", daemon=True)
        self._source, self._sink = source, sink
        self._stopping = threading.Event()
        self._second, self._stamp = -1, ""
        scrubbers = [f for f in sink.filters if isinstance(f, RedactSecrets)]
        self._scrub: Callable[[str], str] = scrubbers[0].scrub if scrubbers else str

    def run(self) -> None:
        while not self._stopping.wait(FLUSH_INTERVAL_S):
            self._write_batch()
        self._write_batch()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def _line(self, created: float, logger: str, message: str) -> str:
        """What `LINE_FORMAT` makes of an INFO record of `logger` saying `message`, scrubbed."""
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(TIME_FORMAT, time.localtime(second))
        millis = int((created - second) * 1000)
        return f"{self._stamp},{millis:03d} INFO {logger}: {self._scrub(message)}"

    def _write_batch(self) -> None:
        records, sink = self._source.records, self._sink
        lines = []
        while records:
            record = records.popleft()
            if isinstance(record, tuple):
                lines.append(self._line(*record) + sink.terminator)
            elif sink.filter(record):
                lines.append(sink.format(record) + sink.terminator)
        if lines:
            try:
                sink.stream.write("".join(lines))
                sink.stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or gone: nothing else could report it


# (time, logger, message): a line built by its caller (`AccessLog`), stamped and scrubbed when written.
_Line = tuple[float, str, str]
# The buffer `configure_logging` set up, while it is in place (the access log writes to it directly).
_buffer: _BufferHandler | None = None

_TRACEBACKS = logging.Formatter()
