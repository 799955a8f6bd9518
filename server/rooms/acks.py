"""Acks: the reply to every command, as the client receives it.

`{"ok": true, ...data}` or `{"ok": false, "error": {"code", "message"}}`. The
owner of a room produces them; they cross the bus as JSON unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from server.rooms.errors import RoomError

#: A JSON object (what an ack is on the wire).
Ack = dict[str, Any]


def ok(**data: Any) -> Ack:
    """The ack of an accepted command; models in `data` are dumped as JSON."""
    return {
        "ok": True,
        **{
            k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in data.items()
        },
    }


def error(code: str, message: str, status: int | None = None) -> Ack:
    """The ack of a refused command (it changed nothing); `status` is the HTTP-like class."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if status is not None:
        detail["status"] = status
    return {"ok": False, "error": detail}


def refusal(exc: RoomError) -> Ack:
    """The ack of a command the domain refused."""
    return error(exc.code, exc.message, exc.status)


def raise_for(ack: Ack) -> Ack:
    """The ack if it is ok; otherwise the refusal it carries, raised as a RoomError."""
    if is_ok(ack):
        return ack
    detail = ack.get("error") or {}
    exc = RoomError(str(detail.get("code", "error")), str(detail.get("message", "")))
    exc.status = int(detail.get("status", 503 if detail.get("code") == "unavailable" else 400))
    raise exc


def is_ok(ack: Ack) -> bool:
    """Whether the command was accepted."""
    return ack.get("ok") is True
