"""Throttling of failed admin-key attempts, per client address.

An address that sends `limit` wrong keys within `window` seconds is locked out
of every admin call for `window` seconds, even with the right key, so the key
cannot be guessed at network speed; other addresses are unaffected. The
address is the peer of the TCP connection: X-Forwarded-For is not trusted
(anyone can send it).

Memory is bounded: at most `max_addresses` addresses are remembered, the least
recently seen forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from server.rooms.errors import RoomError

DEFAULT_MAX_ADDRESSES = 10_000


class TooManyAttempts(RoomError):
    """Too many failed attempts from this address; `retry_after` seconds until it may try again."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too_many_attempts",
            f"too many failed attempts from this address; try again in {retry_after} s",
        )
        self.retry_after = retry_after


@dataclass
class _Address:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class FailedAttempts:
    """Failed credential attempts per address, and the lock-outs they caused."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0 or max_addresses < 1:
            raise ValueError("limit, window and max_addresses must be positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    def __len__(self) -> int:
        return len(self._addresses)

    def check(self, address: str) -> None:
        """Raise TooManyAttempts while `address` is locked out."""
        entry = self._addresses.get(address)
        if entry is None:
            return
        remaining = entry.locked_until - self._clock()
        if remaining > 0:
            raise TooManyAttempts(math.ceil(remaining))

    def failed(self, address: str) -> None:
        """Count a failed attempt; the `limit`-th within the window locks the address out."""
        now = self._clock()
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = _Address()
            while len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
        while entry.failures and entry.failures[0] <= now - self.window_seconds:
            entry.failures.popleft()
        entry.failures.append(now)
        if len(entry.failures) >= self.limit:
            entry.locked_until = now + self.window_seconds
            entry.failures.clear()

    def succeeded(self, address: str) -> None:
        """Forget the address's failures (the right key was given while not locked out)."""
        self._addresses.pop(address, None)
