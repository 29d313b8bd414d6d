"""Logs without secrets, written off the event loop: how both servers log (`hostedai-mock`,
`harpoon-service`).

- `configure_logging`: records go to stderr through a queue and a thread, so the event loop only
  queues each one; if stderr does not keep up, at most `LOG_QUEUE_SIZE` wait and the rest are dropped
  and counted, so memory stays bounded and the loop never blocks on a write.
- `RedactSecrets`: every line written, at any level, is scrubbed of the configured secrets (API keys,
  the admin token) and of whatever follows `Authorization`, `X-Admin-Token` or `Bearer`.
- `AccessLog`: one short access-log line per request, cheaper to build than aiohttp's configurable one.

TWIN FILE: `mock_server/logs.py` and `harness/service/logs.py` are the same file byte for byte
(`tests/server/test_serving.py` pins it): the two packages may not import each other.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import re
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

log = logging.getLogger(__name__)

# Log records waiting for the writing thread, at most (beyond, they are dropped and counted).
LOG_QUEUE_SIZE = 10_000

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
    than aiohttp's configurable format, which the hot path of a load test pays on every request."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.1fms',
            request.remote,
            request.method,
            request.path_qs,
            version.major,
            version.minor,
            response.status,
            response.body_length,
            time * 1000,
        )


def configure_logging(level: str, secrets: Iterable[str]) -> Callable[[], None]:
    """Log to stderr at `level`, scrubbed of `secrets`, with the writing done on a thread: the event loop
    only queues each record. Returns the function that flushes, stops the thread and puts the root
    logger back as it was."""
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    stream.addFilter(RedactSecrets(secrets))
    records: queue.Queue[logging.LogRecord] = queue.Queue(LOG_QUEUE_SIZE)
    listener = logging.handlers.QueueListener(records, stream, respect_handler_level=True)
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for handler in before[0]:
        root.removeHandler(handler)
    queued = _QueueHandler(records)
    root.addHandler(queued)
    root.setLevel(level)
    listener.start()

    def stop() -> None:
        listener.stop()
        root.removeHandler(queued)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])

    return stop


class _QueueHandler(logging.handlers.QueueHandler):
    """Queues records for the writing thread; when stderr does not keep up and the queue is full,
    drops them (and says how many once there is room), so memory stays bounded and the loop never blocks."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stdlib's prepare runs the whole format (timestamp and all) on the caller's thread, and the
        # listener's handler formats the record again. Here only what cannot wait is done: the message
        # merged while its arguments are as they were, the traceback rendered while it exists.
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
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
                self.queue.put_nowait(self.prepare(note))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


_TRACEBACKS = logging.Formatter()
