"""Token buckets: the one rate-limiting primitive (per connection, per identity, per room)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")


class TokenBucket:
    """Allows `rate` events per second on average, with bursts of up to `burst`."""

    __slots__ = ("_clock", "_tokens", "_updated", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def allow(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if available; False means the event must be refused."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens will be available (0 if they are now)."""
        missing = cost - self._tokens
        return max(0.0, missing / self.rate)


class BucketMap(Generic[K]):
    """One bucket per key, for at most `capacity` keys (the least recently used go first).

    A forgotten key starts again with a full bucket, so the capacity must exceed
    the number of keys active within one refill period.
    """

    def __init__(self, rate: float, burst: float, capacity: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def bucket(self, key: K) -> TokenBucket:
        """The bucket of `key` (created full on first use)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            if len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def allow(self, key: K, cost: float = 1.0) -> bool:
        """Whether `key` may spend `cost` now."""
        return self.bucket(key).allow(cost)
