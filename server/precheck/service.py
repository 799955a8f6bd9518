"""PrecheckService: starts probes within the node's bounds, stores and announces results."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server.media.ice_policy import IcePolicy
from server.ratelimit import BucketMap
from server.rooms.errors import Conflict, RateLimited, RoomError
from server.rooms.models import Invitee

from .config import PrecheckSettings
from .models import Leg, PrecheckRecord
from .probe import ProbePeer
from .results import PrecheckResults
from .verdict import overall

logger = logging.getLogger(__name__)

#: Told of every stored check: (room id, the identity's entry as the control room shows it).
ResultListener = Callable[[str, dict[str, Any]], Awaitable[None]]


class PrecheckBusy(RoomError):
    """This node runs as many probes as it may; try again in a few seconds."""

    status = 503


class PrecheckService:
    """The probes of one node: at most `settings.concurrency` at once, each closed in time."""

    def __init__(
        self,
        settings: PrecheckSettings,
        policy: IcePolicy,
        results: PrecheckResults,
        on_result: ResultListener | None = None,
    ) -> None:
        self.settings = settings
        self.results = results
        self.on_result = on_result
        self._policy = policy
        self._identities: BucketMap[tuple[str, str]] = BucketMap(
            settings.identity_rate, settings.identity_burst
        )
        self._probes: set[ProbePeer] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> int:
        """Probes open on this node now."""
        return len(self._probes)

    @property
    def turn_configured(self) -> bool:
        """Whether the relay leg can run (the server hands out TURN credentials)."""
        return self.results.turn_configured

    async def start(self, room_id: str, who: Invitee, leg: Leg, offer: str) -> str:
        """Open a probe for `who`'s `leg` and return its answer; it measures in the background."""
        if self._closed:
            raise PrecheckBusy("precheck_busy", "this node is shutting down; try again")
        if leg == "relay" and not self.turn_configured:
            raise Conflict("precheck_no_turn", "this server has no TURN relay configured")
        if not self._identities.allow((room_id, who.identity)):
            raise RateLimited(
                "rate_limited", "too many connection checks from this link; wait a minute"
            )
        if len(self._probes) >= self.settings.concurrency:
            raise PrecheckBusy(
                "precheck_busy", "too many connection checks are running; try again shortly"
            )
        probe = ProbePeer(self.settings, self._policy, leg)
        self._probes.add(probe)
        try:
            answer = await probe.answer(offer)
        except BaseException:
            self._probes.discard(probe)
            await probe.close()
            raise
        task = asyncio.create_task(self._measure(probe, room_id, who), name="precheck-probe")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return answer

    async def _measure(self, probe: ProbePeer, room_id: str, who: Invitee) -> None:
        try:
            result = await probe.run()
            record = PrecheckRecord(
                room=room_id, identity=who.identity, name=who.name, role=who.role,
                venue=who.venue, result=result,
            )  # fmt: skip
            entry: dict[str, Any] | None = None
            try:
                await self.results.save(record)
                entry = await self.results.identity(room_id, who.identity)
            except Exception as exc:  # Redis away: the browser still gets its verdict
                logger.warning("a connection check could not be stored: %r", exc)
            if entry is None:
                legs = {result.leg: result}
                alone = overall(
                    legs.get("direct"), legs.get("relay"), turn_configured=self.turn_configured
                )
                entry = {"overall": alone.model_dump()}
            logger.info(
                "connection check %s of %s: %s %s",
                result.leg,
                who.identity,
                result.verdict,
                ",".join(result.reasons) or "-",
                extra={"event": "precheck", "room": room_id},
            )
            await probe.report(
                {"type": "result", "result": result.model_dump(), "overall": entry["overall"]}
            )
            if self.on_result is not None and "identity" in entry:
                await self.on_result(room_id, entry)
        except Exception:
            logger.exception("connection check failed")
        finally:
            await probe.close()
            self._probes.discard(probe)

    async def close(self) -> None:
        """Stop every probe (node shutdown)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for probe in list(self._probes):
            with contextlib.suppress(Exception):
                await probe.close()
        self._probes.clear()
