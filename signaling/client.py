"""RoomClient: a Python client of the `/room` protocol (tests, the load tool and media use it).

It connects with a join token, joins, and keeps a local model of the session
(participants, live state, timeline) up to date from the server's events.
Events that arrive before the join ack are replayed on top of the snapshot, so
the model never misses a change that raced the join; a `resync` replaces the
model with the snapshot it carries.

With `reconnect=True` it behaves like the browser client: when the connection
drops (its node died, or drained and said `reconnect`) it connects again —
to the same node or to another one the server listed — and joins again, until
the session ends for it (`removed`, `replaced`, `session_ended`) or `close()`.
Listeners of `rejoined` and `media_moved` then rebuild their media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import socketio

from server.rooms.models import (
    CallIn,
    GalleryItem,
    LiveState,
    NodeRef,
    Participant,
    PublicGalleryItem,
    Snapshot,
    TimelineEntry,
)
from signaling.events import NAMESPACE

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
#: Refusals that are worth trying again later (the server is busy or changing owners).
RETRYABLE = frozenset({"unavailable", "server_full", "rate_limited", "connect_failed", "timeout"})
#: Server events after which this participant is out of the session for good.
ENDING_EVENTS = frozenset({"removed", "replaced", "session_ended"})


def _entry_order(entry_id: str) -> tuple[int, int]:
    """Timeline ids are `<ms>-<n>`: their order is numeric, not alphabetical."""
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


class SignalingError(Exception):
    """The server refused a connection or an event; `code` is from docs/protocol.md."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RoomClient:
    """One participant's signaling connection and its view of the session."""

    def __init__(self, base_url: str, token: str, *, reconnect: bool = False) -> None:
        self.base_url = base_url
        self.token = token
        self.reconnect = reconnect
        self.snapshot: Snapshot | None = None
        self.participants: dict[str, Participant] = {}
        self.live = LiveState()
        self.timeline: list[TimelineEntry] = []
        #: The gallery's approved items by id, and the one on screen (as everyone sees them).
        self.gallery: dict[str, PublicGalleryItem] = {}
        self.gallery_on_screen: PublicGalleryItem | None = None
        #: The gallery's moderation queue by id (only for hosts, co-hosts and moderators).
        self.gallery_queue: dict[str, GalleryItem] = {}
        #: Broadcast viewers' requests to speak by id (only for those who run the queues).
        self.call_ins: dict[str, CallIn] = {}
        #: Every server event in arrival order, as (name, payload).
        self.received: list[tuple[str, Any]] = []
        #: Why the server ended this participation (`removed`, `replaced`, `session_ended`).
        self.ended: tuple[str, Any] | None = None
        #: Set while no connection is up (and for good once ended or closed).
        self.disconnected = asyncio.Event()
        #: Successful joins so far (a reconnect makes it 2, 3, ...).
        self.joins = 0
        #: The ICE servers (TURN credentials) the last join handed out (RTCIceServer shape).
        self.ice_servers: list[dict[str, Any]] = []
        #: When (time.monotonic) the last Socket.IO connection was up, before its join.
        self.socket_connected_at: float | None = None
        self._changed = asyncio.Condition()
        self._handlers: dict[str, list[Callable[[Any], Any]]] = {}
        #: The newest handler task; each waits for the one before, so handlers run in order.
        self._last_handler: asyncio.Task[Any] | None = None
        self._pending: list[tuple[str, Any]] | None = None
        self._connect_error: Any = None
        self._closing = False
        self._alternatives: list[str] = []
        self._reconnect_task: asyncio.Task[None] | None = None
        #: The join was answered `in_lobby`: the connection waits for `admitted`.
        self.waiting = False
        self._sio = self._new_socket()

    def _new_socket(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("*", self._on_event, namespace=NAMESPACE)
        sio.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        return sio

    @property
    def you(self) -> Participant:
        """This participant's record, from the snapshot."""
        if self.snapshot is None:
            raise RuntimeError("not joined")
        return self.snapshot.you

    @property
    def owner(self) -> NodeRef | None:
        """The node that owns the room (serves its media), as last heard."""
        return self.snapshot.owner if self.snapshot else None

    async def connect(self, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
        """Connect, join and return the snapshot; SignalingError if refused."""
        return await self._connect_to(self.base_url, timeout)

    async def _connect_to(self, url: str, timeout: float) -> Snapshot:
        self._pending = []
        self._connect_error = None
        try:
            await self._sio.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": self.token},
                transports=["websocket"],
                wait_timeout=timeout,
            )
            self.socket_connected_at = time.monotonic()
        except socketio.exceptions.ConnectionError as exc:
            # A failed handshake leaves the transport's HTTP session open: close it.
            with contextlib.suppress(Exception):
                await self._sio.eio.disconnect(abort=True)
            error = self._connect_error
            if isinstance(error, dict) and isinstance(error.get("data"), dict):
                code = str(error["data"].get("code", "connect_refused"))
                raise SignalingError(code, str(error.get("message", ""))) from exc
            raise SignalingError("connect_failed", str(exc)) from exc
        try:
            ack = await self.call("join", timeout=timeout)
        except SignalingError as exc:
            if exc.code == "in_lobby":
                # Waiting in the lobby: the connection stays open (see `enter_when_admitted`).
                self.waiting = True
                raise
            self._pending = None
            await self._sio.disconnect()
            raise
        except BaseException:
            self._pending = None
            await self._sio.disconnect()
            raise
        return await self._joined(ack)

    async def enter_when_admitted(self, timeout: float = DEFAULT_TIMEOUT) -> Snapshot:
        """After `connect` raised `in_lobby`: wait for `admitted`, then join (SignalingError
        with the reason when the lobby closes instead: `denied`, `timeout`...)."""
        start = len(self.received)

        def decided() -> bool:
            return any(e in ("admitted", "lobby_closed") for e, _ in self.received[start:])

        if not any(e in ("admitted", "lobby_closed") for e, _ in self.received):
            await self.wait_for(decided, timeout)
        event, payload = next(
            (e, p) for e, p in reversed(self.received) if e in ("admitted", "lobby_closed")
        )
        if event == "lobby_closed":
            self.waiting = False
            raise SignalingError(str(payload.get("reason", "lobby_closed")), "")
        self._pending = []
        ack = await self.call("join", timeout=timeout)
        self.waiting = False
        return await self._joined(ack)

    async def _joined(self, ack: dict[str, Any]) -> Snapshot:
        self.disconnected.clear()
        self._apply_snapshot(Snapshot.model_validate(ack["snapshot"]))
        self.ice_servers = list(ack.get("ice_servers") or [])
        self.joins += 1
        if self.joins > 1:
            # Before the events that raced the join: they apply on top of the new session.
            self._dispatch_handlers("rejoined", self.snapshot)
        pending, self._pending = self._pending or [], None
        for event, payload in pending:
            self._apply(event, payload)
        await self.notify()
        return self.snapshot  # type: ignore[return-value]

    def _apply_snapshot(self, snapshot: Snapshot, keep_history: bool = False) -> None:
        self.snapshot = snapshot
        self.participants = {p.identity: p for p in snapshot.participants}
        self.live = snapshot.live
        if keep_history:
            # A snapshot carries the last 200 entries; those seen before it stay.
            known = {e.id for e in self.timeline}
            self.timeline += [e for e in snapshot.timeline if e.id not in known]
            self.timeline.sort(key=lambda e: _entry_order(e.id))
        else:
            self.timeline = list(snapshot.timeline)
        self._alternatives = [n.url for n in snapshot.nodes]
        self.gallery = {i.id: i for i in snapshot.gallery}
        self.gallery_on_screen = self.gallery.get(snapshot.gallery_on_screen or "")
        self.gallery_queue = {i.id: i for i in snapshot.gallery_queue}
        self.call_ins = {c.id: c for c in snapshot.call_ins}

    async def close(self) -> None:
        """Leave the session on purpose, then disconnect (idempotent)."""
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnect_task
        if self._last_handler is not None:
            self._last_handler.cancel()
            with contextlib.suppress(BaseException):
                await self._last_handler
        if self._sio.connected and self.snapshot is not None and self.ended is None:
            with contextlib.suppress(Exception):
                await self.call("leave", timeout=2.0)
        with contextlib.suppress(Exception):
            await self._sio.disconnect()
        self.disconnected.set()

    async def drop(self) -> None:
        """Close the connection without leaving, as a network failure would."""
        with contextlib.suppress(Exception):
            await self._sio.eio.disconnect(abort=True)

    async def call(
        self, event: str, payload: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Any:
        """Send an event and return its ack; SignalingError when the server refuses it."""
        try:
            ack = await self._sio.call(event, payload or {}, namespace=NAMESPACE, timeout=timeout)
        except socketio.exceptions.TimeoutError as exc:
            raise SignalingError("timeout", f"no answer to {event}") from exc
        except socketio.exceptions.BadNamespaceError as exc:
            raise SignalingError("offline", "not connected") from exc
        if isinstance(ack, dict) and ack.get("ok") is False:
            error = ack.get("error", {})
            raise SignalingError(error.get("code", "error"), error.get("message", ""))
        return ack

    async def emit_raw(self, event: str, payload: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send anything (for tests of bad input); returns the raw ack."""
        return await self._sio.call(event, payload, namespace=NAMESPACE, timeout=timeout)

    # --- typed actions ---------------------------------------------------------------

    async def raise_hand(self) -> LiveState:
        """Ask for the floor."""
        return LiveState.model_validate((await self.call("raise_hand"))["live"])

    async def lower_hand(self, identity: str | None = None) -> LiveState:
        """Withdraw one's own hand, or (host) someone else's."""
        payload = {"identity": identity} if identity else {}
        return LiveState.model_validate((await self.call("lower_hand", payload))["live"])

    async def grant_floor(self, identity: str, time_limit_seconds: int | None = None) -> LiveState:
        """Host: give the floor."""
        payload: dict[str, Any] = {"identity": identity}
        if time_limit_seconds is not None:
            payload["time_limit_seconds"] = time_limit_seconds
        return LiveState.model_validate((await self.call("grant_floor", payload))["live"])

    async def revoke_floor(self) -> LiveState:
        """Host: take the floor back (or, as the speaker, yield it)."""
        return LiveState.model_validate((await self.call("revoke_floor"))["live"])

    async def next_speaker(self, time_limit_seconds: int | None = None) -> LiveState:
        """Host: give the floor to the first in the queue."""
        payload = {} if time_limit_seconds is None else {"time_limit_seconds": time_limit_seconds}
        return LiveState.model_validate((await self.call("next_speaker", payload))["live"])

    async def advance_agenda(self, index: int | None = None) -> LiveState:
        """Host: next agenda item, or a given one."""
        payload = {} if index is None else {"index": index}
        return LiveState.model_validate((await self.call("advance_agenda", payload))["live"])

    async def set_lock(self, locked: bool) -> LiveState:
        """Host: lock or unlock the session."""
        return LiveState.model_validate((await self.call("set_lock", {"locked": locked}))["live"])

    async def request_mute(self, identity: str, kind: str = "audio") -> None:
        """Host: ask someone to mute."""
        await self.call("request_mute", {"identity": identity, "kind": kind})

    async def remove(self, identity: str, reason: str = "") -> None:
        """Host: remove someone for the rest of the session."""
        await self.call("remove_participant", {"identity": identity, "reason": reason})

    async def end_session(self) -> None:
        """Host: end the session for everyone."""
        await self.call("end_session")

    async def admit(self, *identities: str) -> list[str]:
        """Host or co-host: let these people in from the lobby."""
        return list((await self.call("admit", {"identities": list(identities)}))["admitted"])

    async def deny(self, *identities: str) -> list[str]:
        """Host or co-host: turn these people away from the lobby."""
        return list((await self.call("deny", {"identities": list(identities)}))["denied"])

    async def mute_all(self) -> list[str]:
        """Host or co-host: ask everyone but the floor holder to mute; who was asked."""
        return list((await self.call("mute_all"))["muted"])

    async def pin(self, identity: str | None) -> LiveState:
        """Host or co-host: put someone in everyone's spotlight (None: unpin)."""
        return LiveState.model_validate((await self.call("pin", {"identity": identity}))["live"])

    async def move_in_queue(self, identity: str, position: int) -> LiveState:
        """Host or co-host: move a raised hand to `position` (0 is next)."""
        payload = {"identity": identity, "position": position}
        return LiveState.model_validate((await self.call("move_in_queue", payload))["live"])

    async def extend_floor(self, seconds: int) -> LiveState:
        """Host or co-host: give the speaker more time."""
        ack = await self.call("extend_floor", {"seconds": seconds})
        return LiveState.model_validate(ack["live"])

    async def rename(self, identity: str, name: str) -> Participant:
        """Host or co-host: change how someone's name is shown."""
        ack = await self.call("rename_participant", {"identity": identity, "name": name})
        return Participant.model_validate(ack["participant"])

    async def chat(self, text: str) -> TimelineEntry:
        """Post a chat message."""
        return TimelineEntry.model_validate((await self.call("chat", {"text": text}))["entry"])

    async def set_media_state(self, audio_muted: bool, video_muted: bool) -> Participant:
        """Tell the room about one's mute state."""
        ack = await self.call(
            "media_state", {"audio_muted": audio_muted, "video_muted": video_muted}
        )
        return Participant.model_validate(ack["participant"])

    async def gallery_post(
        self,
        text: str,
        *,
        kind: str = "question",
        name: str | None = None,
        district: str | None = None,
    ) -> str:
        """Post a question or opinion to the gallery's moderation queue; its id."""
        payload: dict[str, Any] = {"kind": kind, "text": text}
        if name is not None:
            payload["name"] = name
        if district is not None:
            payload["district"] = district
        return str((await self.call("gallery_post", payload))["id"])

    async def gallery_approve(self, item_id: str) -> GalleryItem:
        """Host, co-host or moderator: show a gallery item to everyone."""
        ack = await self.call("gallery_approve", {"id": item_id})
        return GalleryItem.model_validate(ack["item"])

    async def gallery_reject(self, item_id: str) -> GalleryItem:
        """Host, co-host or moderator: turn a gallery item down."""
        ack = await self.call("gallery_reject", {"id": item_id})
        return GalleryItem.model_validate(ack["item"])

    async def gallery_answer(self, item_id: str, text: str) -> GalleryItem:
        """Host, co-host or moderator: answer a gallery item (approving it)."""
        ack = await self.call("gallery_answer", {"id": item_id, "text": text})
        return GalleryItem.model_validate(ack["item"])

    async def gallery_show(self, item_id: str | None) -> str | None:
        """Host, co-host or moderator: put an item on everyone's screen (None: take it off)."""
        ack = await self.call("gallery_show", {"id": item_id})
        return ack["on_screen"]  # type: ignore[no-any-return]

    def on(self, event: str, handler: Callable[[Any], Any]) -> None:
        """Call `handler(payload)` for each `event` (after the join snapshot; may be async).

        Async handlers run as tasks, one event at a time per client, in arrival order.
        Besides server events: `rejoined` (payload: the new Snapshot) after a reconnect.
        """
        self._handlers.setdefault(event, []).append(handler)

    # --- waiting ---------------------------------------------------------------------

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until `condition()` holds over the client's model (checked after each event)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def wait_for_event(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Wait for (or find among those received) the first event `name`; returns its payload."""
        await self.wait_for(lambda: any(event == name for event, _ in self.received), timeout)
        return next(payload for event, payload in self.received if event == name)

    # --- incoming --------------------------------------------------------------------

    async def _on_event(self, event: str, payload: Any = None) -> None:
        self.received.append((event, payload))
        if self._pending is not None:
            self._pending.append((event, payload))
        else:
            self._apply(event, payload)
        await self.notify()

    def _apply(self, event: str, payload: Any) -> None:
        if event in (
            "participant_joined",
            "participant_updated",
            "participant_reconnecting",
            "participant_reconnected",
        ):
            participant = Participant.model_validate(payload)
            self.participants[participant.identity] = participant
        elif event == "participant_left":
            self.participants.pop(payload["identity"], None)
        elif event == "live_state":
            live = LiveState.model_validate(payload)
            if live.version > self.live.version:
                self.live = live
        elif event == "timeline":
            entry = TimelineEntry.model_validate(payload)
            if all(existing.id != entry.id for existing in self.timeline):
                self.timeline.append(entry)
        elif event == "gallery_item":
            item = PublicGalleryItem.model_validate(payload["item"])
            self.gallery[item.id] = item
        elif event == "gallery_on_screen":
            shown = payload["item"]
            self.gallery_on_screen = PublicGalleryItem.model_validate(shown) if shown else None
        elif event == "gallery_queue":
            queued = GalleryItem.model_validate(payload["item"])
            self.gallery_queue[queued.id] = queued
        elif event == "call_in_queue":
            call_in = CallIn.model_validate(payload["item"])
            self.call_ins[call_in.id] = call_in
        elif event == "resync":
            self._apply_snapshot(Snapshot.model_validate(payload["snapshot"]), keep_history=True)
        elif event == "media_moved" and self.snapshot is not None:
            owner = NodeRef.model_validate(payload["owner"])
            self.snapshot = self.snapshot.model_copy(update={"owner": owner})
        elif event == "reconnect":
            # This node is draining: the next connection goes to one of the others.
            self._alternatives = [n["url"] for n in payload.get("nodes", [])]
            if self._alternatives:
                self.base_url = self._alternatives[0]
        elif event in ENDING_EVENTS:
            self.ended = (event, payload)
        self._dispatch_handlers(event, payload)

    def _dispatch_handlers(self, event: str, payload: Any) -> None:
        for handler in self._handlers.get(event, []):
            result = handler(payload)
            if asyncio.iscoroutine(result):
                self._run_in_order(result)

    def _run_in_order(self, coroutine: Any) -> None:
        previous = self._last_handler

        async def after_previous() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            try:
                await coroutine
            except Exception:
                logger.exception("event handler failed")

        self._last_handler = asyncio.create_task(after_previous())
        # A handler task cancelled (by close) before it reached the handler: the handler's
        # coroutine was never started; close it so it is not reported as never awaited.
        self._last_handler.add_done_callback(lambda _: coroutine.close())

    async def _on_connect_error(self, data: Any = None) -> None:
        self._connect_error = data

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnected.set()
        await self.notify()
        if self.reconnect and self._should_reconnect():
            self._reconnect_task = asyncio.create_task(self._reconnect())

    def _should_reconnect(self) -> bool:
        joined = self.snapshot is not None
        busy = self._reconnect_task is not None and not self._reconnect_task.done()
        return joined and not self._closing and self.ended is None and not busy

    async def _reconnect(self, attempts: int = 60) -> None:
        """Connect again (this node, then the others listed) and rejoin; bounded."""
        delay = 0.2
        for attempt in range(attempts):
            urls = [self.base_url, *[u for u in self._alternatives if u != self.base_url]]
            url = urls[attempt % len(urls)]
            self._sio = self._new_socket()
            try:
                await self._connect_to(url, timeout=DEFAULT_TIMEOUT)
            except SignalingError as exc:
                with contextlib.suppress(Exception):
                    await self._sio.disconnect()
                if exc.code not in RETRYABLE:
                    logger.warning("reconnect refused for good: %s", exc)
                    self.ended = (exc.code, {"reason": exc.message})
                    await self.notify()
                    return
                logger.info("reconnect to %s failed (%s); trying again", url, exc.code)
            except Exception as exc:  # a transport error of this attempt
                with contextlib.suppress(Exception):
                    await self._sio.disconnect()
                logger.info("reconnect to %s failed (%s); trying again", url, exc)
            else:
                self.base_url = url
                logger.info("reconnected to %s", url)
                return
            if self._closing:
                return
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, 2.0)

    async def notify(self) -> None:
        """Wake everyone waiting in wait_for (extensions that keep more state call it too)."""
        async with self._changed:
            self._changed.notify_all()
