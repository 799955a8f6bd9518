"""RoomWriter: writes one owned room's state behind to Redis, fenced by its lease.

The owner's actor changes the state in memory and tells the writer; the writer
writes the newest snapshot and every new timeline entry, in order, in one
script that first checks this node still holds the room's lease (a node that
lost the room can never overwrite its successor's state).

Acks wait for the write (group commit): `settled()` gives the actor a future
that is done once everything changed so far is in Redis, so what a client was
told happened survives even a `kill -9` of the owner right after. Changes made
while a write is in flight go into the next one. While Redis is unreachable
the writer keeps everything and retries with backoff, and `settled()` futures
complete at once: the session goes on in memory, and what was acknowledged
meanwhile is written when Redis is back (lost only if the owner also dies
before then).

A command of the room's actor may change the state, await (the SFU, a
broadcast), then append to the timeline; the actor marks each command as a
`batch`, and a write that would start inside one waits for its end (bounded),
so one command costs one round trip to Redis, not one per change.

Serializing a big room's snapshot is not free, so the writer paces itself to
spend at most about a tenth of its time serializing: small rooms are written
at once, a room of hundreds waits a few milliseconds between writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis.asyncio as aioredis

from server.rooms.models import PersistedRoom, TimelineEntry
from server.state import keys

logger = logging.getLogger(__name__)

# KEYS: lease, snapshot, timeline. ARGV: node, lease TTL (ms), snapshot JSON ("" =
# unchanged), maxlen, then (id, type, data) per entry. Returns 0 if another node holds
# the lease. A lease that expired while Redis was away (restarted) is taken again, as
# the heartbeat's renewal would: nobody else took the room meanwhile.
_WRITE = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif holder ~= ARGV[1] then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3])
end
for i = 5, #ARGV, 3 do
  local ok = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], ARGV[i],
                         'type', ARGV[i + 1], 'data', ARGV[i + 2])
  if type(ok) == 'table' and ok.err then
    -- Written already (a retry after a reply timed out): nothing to do. Otherwise an
    -- id not above the stream's last (clocks of two owners disagreed): keep the entry
    -- under a fresh id rather than lose it.
    if #redis.call('XRANGE', KEYS[3], ARGV[i], ARGV[i]) == 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
                 'type', ARGV[i + 1], 'data', ARGV[i + 2])
    end
  end
end
return 1
"""

#: Entries per script call (a long backlog after an outage goes in several calls).
MAX_ENTRIES_PER_WRITE = 500
#: Share of the writer's time it may spend serializing snapshots (the rest it waits).
SERIALIZING_SHARE = 0.1
#: Longest a write waits for the end of the batch (actor command) it would start in. Far
#: above what a command takes: it only keeps a command that awaits something stuck (or,
#: by mistake, the writer itself) from holding back what it changed before.
MAX_BATCH_WAIT = 2.0


class LeaseLost(Exception):
    """The room's lease is held by another node: this node must stop owning the room."""


class RoomWriter:
    """The write-behind of one room (`server.rooms.ports.StateWriter`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        room_id: str,
        node_id: str,
        snapshot: Callable[[], PersistedRoom],
        on_lease_lost: Callable[[str], None],
        *,
        lease_ttl_ms: int,
        max_backoff: float = 2.0,
    ) -> None:
        self._redis: Any = client
        self._script = self._redis.register_script(_WRITE)
        self.room_id = room_id
        self.node_id = node_id
        self._snapshot = snapshot
        self._on_lease_lost = on_lease_lost
        self._max_backoff = max_backoff
        self._lease_ttl_ms = lease_ttl_ms
        self._entries: collections.deque[TimelineEntry] = collections.deque()
        #: Snapshot generations: bumped on each change; the last one written.
        self._generation = 0
        self._written = 0
        #: Timeline entries appended ever; written ever.
        self._appended = 0
        self._entries_written = 0
        #: Futures of `settled()`, with the (generation, appended) they wait for.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        #: Done when the batch in progress (if any) ends.
        self._batch: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Whether the last write attempt failed (Redis unreachable).
        self.failing = False

    def start(self) -> None:
        """Start writing in the background."""
        self._task = asyncio.create_task(self._run(), name=f"writer {self.room_id}")

    def changed(self) -> None:
        """The state changed: write a new snapshot soon."""
        self._generation += 1
        self._poke()

    def append(self, entry: TimelineEntry) -> None:
        """Add an entry to the timeline stream (in order, with its id)."""
        self._entries.append(entry)
        self._appended += 1
        self._poke()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Changes made inside (one actor command, across its awaits) go in one write.

        Not nested: the room's actor applies one command at a time.
        """
        batch: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch = batch
        try:
            yield
        finally:
            batch.set_result(None)
            if self._batch is batch:
                self._batch = None

    def _poke(self) -> None:
        if not self._closed:
            self._wakeup.set()

    def settled(self) -> asyncio.Future[None]:
        """Done once everything changed so far is written, or at once while Redis is away."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._pending or self.failing or self._closed:
            future.set_result(None)
        else:
            self._waiters.append((self._generation, self._appended, future))
        return future

    async def flush(self, timeout: float) -> bool:
        """Wait until everything so far is written; False if that did not happen in time."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._pending and not self._closed:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((self._generation, self._appended, waiter))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - asyncio.get_running_loop().time())):
                    await waiter
            if self.failing:
                return False
        return not self._pending

    async def close(self) -> None:
        """Stop writing (what is not written by now is dropped); idempotent."""
        self._closed = True
        self._release_waiters(everyone=True)
        if self._task is not None:
            self._wakeup.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def _pending(self) -> bool:
        return self._generation != self._written or bool(self._entries)

    async def _run(self) -> None:
        backoff = 0.05
        # `close()` cancels this task, but a cancellation that lands as a Redis reply comes
        # in is lost (Python 3.11's `asyncio.wait_for`, which redis-py uses, returns the
        # reply instead): the task then sees `_closed` and ends by itself.
        while not self._closed:
            await self._wakeup.wait()
            batch = self._batch
            if batch is not None and not batch.done():
                # Only the batch in progress now: the next one may start as soon as this
                # one ends, and waiting for it too could hold the write back for good.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(MAX_BATCH_WAIT):
                        await asyncio.shield(batch)
            self._wakeup.clear()
            try:
                serializing = await self._write_pending()
            except LeaseLost:
                logger.warning("room %s: lease lost; writes stop", self.room_id)
                self._closed = True
                self._release_waiters(everyone=True)
                self._on_lease_lost(self.room_id)
                return
            except Exception as exc:
                # Redis unreachable or timing out: keep everything and try again.
                if not self.failing:
                    logger.warning("room %s: state not written (%s); retrying", self.room_id, exc)
                self.failing = True
                self._release_waiters(everyone=True)
                self._wakeup.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self.failing:
                logger.info("room %s: state written again", self.room_id)
            self.failing = False
            backoff = 0.05
            # Pace: a snapshot that took S seconds to serialize is followed by 9 S of rest.
            pause = serializing * (1 - SERIALIZING_SHARE) / SERIALIZING_SHARE
            if pause > 0.001:
                await asyncio.sleep(pause)

    async def _write_pending(self) -> float:
        """Write until nothing is pending; returns the time spent serializing snapshots."""
        serializing = 0.0
        while self._pending and not self._closed:
            batch = list(itertools.islice(self._entries, MAX_ENTRIES_PER_WRITE))
            generation = self._generation
            snapshot = ""
            if generation != self._written:
                started = time.perf_counter()
                snapshot = self._snapshot().model_dump_json()
                serializing += time.perf_counter() - started
            args: list[str | int] = [
                self.node_id,
                self._lease_ttl_ms,
                snapshot,
                keys.TIMELINE_MAXLEN,
            ]
            for entry in batch:
                args += [entry.id, entry.type, json.dumps(entry.data, ensure_ascii=False)]
            written = await self._script(
                keys=[
                    keys.room_lease(self.room_id),
                    keys.room_snapshot(self.room_id),
                    keys.room_timeline(self.room_id),
                ],
                args=args,
            )
            if not written:
                raise LeaseLost(self.room_id)
            for _ in batch:
                self._entries.popleft()
            self._entries_written += len(batch)
            self._written = generation
            self._release_waiters()
        return serializing

    def _release_waiters(self, everyone: bool = False) -> None:
        still = []
        for generation, appended, future in self._waiters:
            done = everyone or (self._written >= generation and self._entries_written >= appended)
            if done:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((generation, appended, future))
        self._waiters = still
