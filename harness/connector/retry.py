"""When to try again, and how long to wait first.

Exponential backoff 100 → 200 → 400 → 800 ms (capped), each multiplied by a jitter factor, at most
`max_retries` retries; a server's `Retry-After` replaces the backoff, up to a cap. Which errors are
retryable is a property of the error (`errors.py`): connection errors, timeouts, 5xx except 501, 429.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.connector.config import HostedAiConfig
from harness.connector.errors import ApiError, HostedAiError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 0.8
    jitter: float = 0.2
    retry_after_cap_s: float = 30.0

    @classmethod
    def from_config(cls, config: HostedAiConfig) -> RetryPolicy:
        r = config.retry
        return cls(
            max_retries=config.max_retries,
            base_delay_s=r.base_delay_ms / 1000,
            max_delay_s=r.max_delay_ms / 1000,
            jitter=r.jitter,
            retry_after_cap_s=r.retry_after_cap_secs,
        )

    def should_retry(self, error: HostedAiError, retries_done: int) -> bool:
        return error.retryable and retries_done < self.max_retries

    def delay_s(self, error: HostedAiError, retries_done: int, rng: random.Random) -> float:
        """The wait before retry number `retries_done + 1`."""
        if isinstance(error, ApiError) and error.retry_after is not None:
            return min(max(0.0, float(error.retry_after)), self.retry_after_cap_s)
        backoff = min(self.base_delay_s * 2**retries_done, self.max_delay_s)
        return float(backoff * rng.uniform(1 - self.jitter, 1 + self.jitter))
