"""The join's path: the round trips to Redis a connect and join wait for.

On a busy machine every round trip (client to server, server to Redis) costs a
scheduling delay (bench/latency.py measures a join against Janus's). This pins
how many a join makes, against a real server and Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from server import appkeys
from signaling.client import RoomClient
from tests.helpers import ServerHandle

#: Keys whose reads and writes make a join (a room's lease is renewed on a timer: left out).
JOIN_KEYS = (":definition", ":roster", ":snapshot", ":timeline")


@contextmanager
def redis_round_trips(server: ServerHandle, room_id: str) -> Iterator[list[list[str]]]:
    """Record each round trip the server makes to Redis that touches the room's keys in
    `JOIN_KEYS`: a command, a script call or a whole pipeline (as its commands' names)."""
    client: Any = server.app[appkeys.STORE].client
    execute_command, make_pipeline = client.execute_command, client.pipeline
    trips: list[list[str]] = []

    def touches(args: tuple[Any, ...]) -> bool:
        text = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in args)
        return room_id in text and any(key in text for key in JOIN_KEYS)

    async def counted_command(*args: Any, **options: Any) -> Any:
        if touches(args):
            trips.append([str(args[0])])
        return await execute_command(*args, **options)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted_execute(*exec_args: Any, **exec_kwargs: Any) -> Any:
            commands = [args for args, _ in pipe.command_stack]
            if any(touches(args) for args in commands):
                trips.append([str(args[0]) for args in commands])
            return await execute(*exec_args, **exec_kwargs)

        pipe.execute = counted_execute
        return pipe

    client.execute_command, client.pipeline = counted_command, counted_pipeline
    try:
        yield trips
    finally:
        client.execute_command, client.pipeline = execute_command, make_pipeline


async def test_a_join_waits_for_three_round_trips_to_redis(server: ServerHandle) -> None:
    room = await server.create_room()
    host = await server.client(room["id"], "host", "host", "hunan")
    member = RoomClient(server.base_url, await server.token(room["id"], "m1", "member", "zhuzhou"))
    with redis_round_trips(server, room["id"]) as trips:
        snapshot = await member.connect()
        during_join = list(trips)
    assert snapshot.you.identity == "m1"
    # The token check reads the room, the invitee and the live state in one pipeline; the
    # owner reads the roster while it admits; what the join changed (snapshot and
    # timeline entry) is written once, and the ack waits for that write.
    assert sorted(during_join) == sorted([["GET", "HGET", "GET"], ["HGETALL"], ["EVALSHA"]]), (
        during_join
    )
    # The roster read meanwhile is in the ack's snapshot.
    assert {"host", "m1"} <= {invitee.identity for invitee in snapshot.roster}
    await member.close()
    await host.close()
