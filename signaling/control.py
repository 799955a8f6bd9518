"""The control room's Socket.IO namespace `/control`: live media of every session.

An operator connects with the admin API key (`auth={"key": "..."}`), and sees
every session; wrong keys count towards the same lock-out as the admin REST
API. Or with an operator token of one session (`auth={"token": "..."}`, role
`operator` from the tokens endpoint: the provincial committee's technical staff
of that session), and sees and acts on that session only, without the nodes'
load (the deployment is the admin's). While at least one operator is connected,
the node builds a snapshot every `interval` seconds and pushes it to them as
`control_snapshot`:

* every session with a room owner (a live one), its venues, and per
  participant what the owner measured (`media_stats` admin request over the
  bus, answered by `server/cluster/media_stats.py`): connection states, ICE
  candidate type, bitrates, loss, round trip, resolution and frame rate,
  audio level, videos paused by last-N;
* each owner's room count and this node's connections against its cap;
* alerts: loss above `loss_alert`, the floor holder silent, a node near its cap,
  a venue whose latest pre-session check is poor (with its reasons).

Actions are events with acks: `reconnect_participant` {room, identity} asks that
participant's client to rebuild its peer connections (`reconnect_media`);
`pin` {room, identity|null} moves everyone's spotlight as a host's `pin` does;
`venue_quality` {room, venue, receive, send_max_bitrate} lowers a venue's quality
(a county venue on a thin link): its participants receive at most `receive`
("reduced": the spotlight in low quality, "audio_only": no video; their links'
own adaptation can only go lower) and their cameras send at most
`send_max_bitrate` bit/s; `receive: "full"` with no bitrate lifts it. The caps
last until lifted or the session's media ends on its owner (a new owner after
a hand-over starts without them); each snapshot shows them (`venue_quality`).
An owner that does not answer in time leaves its rooms out of that snapshot
(marked `unavailable`); Redis away: the snapshot is skipped and retried.

Pre-session connection checks (server/precheck) are in every snapshot
(`prechecks`: per checked session, each identity's latest legs and verdict),
live or not yet started; a check that ends on this node is pushed at once
(`precheck_result`), other nodes' operators see it in their next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import socketio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.catalog import RoomCatalog
from server.cluster.router import RoomRouter
from server.rooms import acks
from server.rooms.errors import RoomError
from server.rooms.models import Role
from server.rooms.payloads import MAX_SEND_CAP, MIN_SEND_CAP, VenueQuality

logger = logging.getLogger(__name__)

CONTROL_NAMESPACE = "/control"
#: Operators' sockets with the admin key join this Socket.IO room; snapshots go to it.
OPERATORS = "operators"
#: An operator token's sockets join "operators:<room id>": that session's snapshots.
SESSION_OPERATORS = "operators:"
#: An owner's answer to a `media_stats` request must come within this long.
OWNER_BUDGET = 1.5
#: At most this many live sessions are shown (the oldest beyond are left out).
MAX_ROOMS = 200
#: Decibels (dBov) under which a floor holder counts as silent.
SILENCE_DBOV = -55.0
#: Share of a cap above which a node is "near its cap".
NEAR_CAP = 0.9
MAX_KEY_BYTES = 256
MAX_TOKEN_BYTES = 4096


class ReconnectAction(BaseModel):
    """`reconnect_participant`: which participant of which session."""

    model_config = ConfigDict(extra="forbid")
    room: str = Field(min_length=1, max_length=128)
    identity: str = Field(min_length=1, max_length=64)


class PinAction(BaseModel):
    """`pin`: whose venue goes in everyone's spotlight (null: give the stage back)."""

    model_config = ConfigDict(extra="forbid")
    room: str = Field(min_length=1, max_length=128)
    identity: str | None = Field(default=None, min_length=1, max_length=64)


class VenueQualityAction(BaseModel):
    """`venue_quality`: cap (or lift the caps on) one venue's quality."""

    model_config = ConfigDict(extra="forbid", strict=True)
    room: str = Field(min_length=1, max_length=128)
    venue: str = Field(min_length=1, max_length=64)
    receive: Literal["full", "reduced", "audio_only"] = "full"
    send_max_bitrate: int | None = Field(default=None, ge=MIN_SEND_CAP, le=MAX_SEND_CAP)

    @property
    def identity(self) -> str:
        """What the action is about, for the log and the owner's `target`: the venue."""
        return self.venue

    @property
    def quality(self) -> VenueQuality:
        """The caps, as the owner applies them."""
        return VenueQuality(receive=self.receive, send_max_bitrate=self.send_max_bitrate)


Action = ReconnectAction | PinAction | VenueQualityAction
ActionName = Literal["reconnect", "pin", "venue_quality"]
_LOG_EVENTS = {"reconnect": "reconnect_media", "pin": "pin", "venue_quality": "venue_quality"}


class ControlNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """`/control` of one node (attach the cluster parts with :meth:`attach` once they run)."""

    def __init__(
        self,
        *,
        node_id: str,
        connections: Callable[[], int],
        connection_limit: int,
        max_rooms: int | None,
        interval: float = 2.0,
        loss_alert: float = 0.05,
    ) -> None:
        super().__init__(CONTROL_NAMESPACE)
        self.node_id = node_id
        self._connections = connections
        self.connection_limit = connection_limit
        self.max_rooms = max_rooms
        self.interval = interval
        self.loss_alert = loss_alert
        self._api_key: str | None = None
        self._attempts: Any = None
        self._router: RoomRouter | None = None
        self._catalog: RoomCatalog | None = None
        #: Connected operators: socket id => the one session it may see (None: every one).
        self._operators: dict[str, str | None] = {}
        self._task: asyncio.Task[None] | None = None
        #: Stored pre-session checks, room id => entries (set by server/http/precheck.py).
        self.read_prechecks: Callable[[int], Awaitable[dict[str, list[dict[str, Any]]]]] | None = (
            None
        )

    def attach(
        self, *, api_key: str, attempts: Any, router: RoomRouter, catalog: RoomCatalog
    ) -> None:
        """Give the namespace what it needs once the node runs (key, lock-out, routing)."""
        self._api_key = api_key
        self._attempts = attempts
        self._router = router
        self._catalog = catalog

    def is_operator(self, sid: str) -> bool:
        """True for an authenticated operator's socket (kept open without joining a room)."""
        return sid in self._operators

    # --- connection -----------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        """Accept the admin key or a session's operator token; refuse anything else (wrong
        keys count towards the lock-out)."""
        if self._api_key is None:
            raise _refusal("starting", "the node is starting; try again shortly")
        address = _address(environ)
        try:
            self._attempts.check(address)
        except RoomError as exc:
            raise _refusal(exc.code, exc.message) from exc
        if isinstance(auth, dict) and "token" in auth and "key" not in auth:
            scope = await self._operator_session(auth["token"])
            self._operators[sid] = scope
            await self.enter_room(sid, SESSION_OPERATORS + scope)
            logger.info(
                "an operator of one session connected to the control room",
                extra={"event": "control", "room": scope},
            )
            self._start_pushing()
            return True
        key = auth.get("key") if isinstance(auth, dict) else None
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_BYTES:
            raise _refusal("api_key_missing", 'connect with auth={"key": "<admin API key>"}')
        if not hmac.compare_digest(key.strip().encode(), self._api_key.encode()):
            self._attempts.failed(address)
            raise _refusal("api_key_invalid", "the API key is not valid")
        self._attempts.succeeded(address)
        self._operators[sid] = None
        await self.enter_room(sid, OPERATORS)
        logger.info("an operator connected to the control room", extra={"event": "control"})
        self._start_pushing()
        return True

    async def _operator_session(self, token: Any) -> str:
        """The session an operator token is for (its signature, room and role checked)."""
        catalog = self._catalog
        assert catalog is not None
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise _refusal("token_invalid", "the operator link is not valid")
        try:
            claims = catalog.signer.verify(token)
            # Removed, ended, re-created sessions refuse it as they refuse a join link.
            room = await catalog.check_token(claims, for_session=False)
        except RoomError as exc:
            raise _refusal(exc.code, exc.message) from exc
        if claims.invitee.role is not Role.OPERATOR:
            raise _refusal("not_an_operator", "this link is not an operator's (role operator)")
        return room.id

    def _start_pushing(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._push(), name="control-room")

    async def on_disconnect(self, sid: str, *args: Any) -> None:
        """Forget the operator; the snapshots stop when the last one leaves."""
        self._operators.pop(sid, None)

    # --- actions --------------------------------------------------------------------

    async def on_reconnect_participant(self, sid: str, data: Any = None) -> acks.Ack:
        """Ask one participant's client to rebuild its peer connections."""
        return await self._owner_action(sid, data, ReconnectAction, "reconnect")

    async def on_pin(self, sid: str, data: Any = None) -> acks.Ack:
        """Move the spotlight to a participant's venue (as the host's `pin`), or unpin."""
        ack = await self._owner_action(sid, data, PinAction, "pin")
        return {"ok": True} if acks.is_ok(ack) else ack

    async def on_venue_quality(self, sid: str, data: Any = None) -> acks.Ack:
        """Lower a venue's quality (what it receives and/or sends), or lift it again."""
        return await self._owner_action(sid, data, VenueQualityAction, "venue_quality")

    async def _owner_action(
        self, sid: str, data: Any, schema: type[Action], action_name: ActionName
    ) -> acks.Ack:
        """An operator's action on a live session, validated, applied by the room's owner."""
        if sid not in self._operators or self._router is None:
            return acks.error("unauthorized", "not an operator")
        try:
            action = schema.model_validate(data)
        except ValidationError as exc:
            return acks.error("invalid_payload", str(exc.errors()[0]["msg"]))
        scope = self._operators.get(sid)
        if scope is not None and action.room != scope:
            return acks.error("not_your_session", "this operator link is for another session")
        catalog = self._catalog
        assert catalog is not None
        if await catalog.leases.holder(action.room) is None:
            return acks.error("room_not_live", f"session {action.room!r} is not running")
        ack = await self._router.admin(
            action.room,
            action_name,
            budget=OWNER_BUDGET,
            target=action.identity or "",
            venue_quality=action.quality if isinstance(action, VenueQualityAction) else None,
        )
        logger.info(
            "control room %s %s: %s",
            action_name,
            action.identity,
            "ok" if acks.is_ok(ack) else ack["error"]["code"],
            extra={"event": _LOG_EVENTS[action_name], "room": action.room},
        )
        return ack

    # --- snapshots ------------------------------------------------------------------

    async def _push(self) -> None:
        while self._operators:
            started = time.monotonic()
            # One snapshot for the admin key's operators, one per session with operators
            # of its own (built for that session only).
            for scope in set(self._operators.values()):
                try:
                    snapshot = await self.snapshot(only=scope)
                except Exception as exc:  # Redis away, a node shutting down: try next time
                    logger.warning("control room snapshot failed: %s", exc)
                    continue
                feed = OPERATORS if scope is None else SESSION_OPERATORS + scope
                await self.emit("control_snapshot", snapshot, room=feed)
            await asyncio.sleep(max(0.1, self.interval - (time.monotonic() - started)))

    async def snapshot(self, only: str | None = None) -> dict[str, Any]:
        """Every live session with its media, the nodes' load and the alerts; `only`:
        that session alone, without the nodes (what an operator token may see)."""
        catalog, router = self._catalog, self._router
        if catalog is None or router is None:
            return {"at": time.time(), "rooms": [], "nodes": [], "alerts": []}
        if only is None:
            rooms = await catalog.store.list_rooms(limit=MAX_ROOMS)
        else:
            room = await catalog.store.get_room(only)
            rooms = [room] if room is not None else []
        owners = await catalog.leases.holders([r.id for r in rooms])
        live = [r for r in rooms if owners.get(r.id)]
        answers = await asyncio.gather(
            *(router.admin(r.id, "media_stats", budget=OWNER_BUDGET) for r in live),
            return_exceptions=True,
        )
        shown: list[dict[str, Any]] = []
        nodes: dict[str, dict[str, Any]] = {
            self.node_id: {
                "id": self.node_id,
                "connections": self._connections(),
                "connection_limit": self.connection_limit,
                "max_rooms": self.max_rooms,
                "rooms": None,
            }
        }
        for room, ack in zip(live, answers, strict=True):
            entry: dict[str, Any] = {
                "id": room.id,
                "title": room.title,
                "owner": owners[room.id],
                "venues": [{"id": v.id, "name": v.name, "main": v.main} for v in room.venues],
            }
            if isinstance(ack, BaseException):
                logger.warning("media statistics of %s failed: %r", room.id, ack)
                entry["unavailable"] = "failed"
            elif acks.is_ok(ack):
                stats = ack["stats"]
                node = stats.pop("node")
                nodes.setdefault(node["id"], {"id": node["id"]})["rooms"] = node["rooms"]
                entry.update(stats)
            else:
                entry["unavailable"] = ack["error"]["code"]
            shown.append(entry)
        node_list = list(nodes.values()) if only is None else []
        prechecks = await self._prechecks(rooms)
        return {
            "at": time.time(),
            "node": self.node_id,
            "rooms": shown,
            "nodes": node_list,
            "alerts": self.alerts(shown, node_list, prechecks),
            "prechecks": prechecks,
        }

    async def _prechecks(self, rooms: list[Any]) -> list[dict[str, Any]]:
        """Sessions with stored connection checks (started or not), with their venues."""
        if self.read_prechecks is None:
            return []
        found = await self.read_prechecks(MAX_ROOMS)
        return [
            {
                "room": room.id,
                "title": room.title,
                "venues": [{"id": v.id, "name": v.name, "main": v.main} for v in room.venues],
                "checks": found[room.id],
            }
            for room in rooms
            if room.id in found
        ]

    async def push_precheck(self, room_id: str, entry: dict[str, Any]) -> None:
        """A check just ended on this node: show it to this node's operators at once."""
        scopes = set(self._operators.values())
        if None in scopes:
            await self.emit("precheck_result", {"room": room_id, "check": entry}, room=OPERATORS)
        if room_id in scopes:
            await self.emit(
                "precheck_result",
                {"room": room_id, "check": entry},
                room=SESSION_OPERATORS + room_id,
            )

    def alerts(
        self,
        rooms: list[dict[str, Any]],
        nodes: list[dict[str, Any]],
        prechecks: Sequence[dict[str, Any]] = (),
    ) -> list[dict[str, Any]]:
        """What an operator should act on now."""
        found: list[dict[str, Any]] = []
        for room in rooms:
            for p in room.get("participants", []):
                # `loss`: what the server misses of this venue's upload, its own link.
                # (`downstream_loss`, from its receiver reports, also counts what the
                # publishers' links lost on the way to the server: shown, not alerted.)
                loss = p.get("loss") or 0.0
                if loss > self.loss_alert:
                    found.append(
                        {"kind": "loss", "room": room["id"], "identity": p["identity"],
                         "venue": p["venue"], "value": round(loss, 4)}
                    )  # fmt: skip
                if p["identity"] == room.get("floor"):
                    level = p.get("audio_level")
                    if p.get("audio_muted") or level is None or level < SILENCE_DBOV:
                        found.append(
                            {"kind": "silent_floor", "room": room["id"],
                             "identity": p["identity"], "venue": p["venue"]}
                        )  # fmt: skip
        found.extend(precheck_alerts(prechecks))
        for node in nodes:
            limit = node.get("connection_limit")
            if limit and node.get("connections", 0) >= NEAR_CAP * limit:
                found.append({"kind": "node_cap", "node": node["id"], "what": "connections"})
            cap = node.get("max_rooms")
            if cap and (node.get("rooms") or 0) >= NEAR_CAP * cap:
                found.append({"kind": "node_cap", "node": node["id"], "what": "rooms"})
        return found

    async def close(self) -> None:
        """Stop pushing snapshots."""
        self._operators.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def precheck_alerts(prechecks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A `precheck` alert per venue whose latest pre-session check ended `poor`.

    Per venue, the latest check counts, whoever of its staff ran it: a later check
    that is not poor (good, or usable: "UDP blocked: will use TURN") clears the
    alert. The alert carries that check's reasons (`high_loss`, `udp_blocked_no_turn`…).
    """
    found: list[dict[str, Any]] = []
    for entry in prechecks:
        latest: dict[str, dict[str, Any]] = {}
        for check in entry.get("checks", []):
            venue = check["venue"]
            if venue not in latest or check["at"] > latest[venue]["at"]:
                latest[venue] = check
        for venue, check in sorted(latest.items()):
            verdict = check["overall"]
            if verdict["verdict"] == "poor":
                found.append(
                    {"kind": "precheck", "room": entry["room"], "venue": venue,
                     "identity": check["identity"], "reasons": list(verdict["reasons"]),
                     "at": check["at"]}
                )  # fmt: skip
    return found


def _refusal(code: str, message: str) -> Exception:
    refusal: Exception = socketio.exceptions.ConnectionRefusedError(message, {"code": code})
    return refusal


def _address(environ: dict[str, Any]) -> str:
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None)
    return remote if isinstance(remote, str) else "unknown"
