"""Token-bucket rate limits for client events, per connection."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` events per second on average, with bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = time.monotonic()

    def allow(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if available; False means the event must be refused."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class ConnectionLimits:
    """The buckets of one connection: all events, and chat on its own tighter budget."""

    def __init__(self, rate: float = 20.0, burst: float = 40.0) -> None:
        self.events = TokenBucket(rate=rate, burst=burst)
        self.chat = TokenBucket(rate=1.0, burst=5.0)

    def allow(self, event: str) -> bool:
        """Whether this connection may send `event` now."""
        if not self.events.allow():
            return False
        return event != "chat" or self.chat.allow()
