"""A circuit breaker: stop calling a service that keeps failing, and probe it now and then.

closed ──(failure_threshold consecutive failures)──▶ open ──(recovery_timeout)──▶ half-open
half-open ──(the one probe succeeds)──▶ closed;  half-open ──(the probe fails)──▶ open again

Only failures that say the service is unwell count (5xx, timeouts, connection errors); any other
answer, a 404 included, proves it is up and resets the count. The clock is injected so tests do not
sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

from harness.connector.errors import CircuitOpen


class CircuitState(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        recovery_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout_s = recovery_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.recovery_timeout_s:
            self._set(CircuitState.HALF_OPEN)
        return self._state

    @property
    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 unless open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.recovery_timeout_s - (self._clock() - self._opened_at))

    def before_call(self) -> None:
        """Let a call through, or raise CircuitOpen. In half-open, only one probe at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        raise CircuitOpen(self.name, self.retry_in_s)

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._state is CircuitState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._set(CircuitState.OPEN)

    def release_probe(self) -> None:
        """The probe ended without telling anything about the service (e.g. it was cancelled)."""
        self._probe_in_flight = False

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
