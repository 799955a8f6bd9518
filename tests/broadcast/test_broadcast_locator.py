"""Which published broadcast directories a node reads itself (else it relays to the owner)."""

from __future__ import annotations

from pathlib import Path

from server.broadcast.locator import BroadcastLocation, new_origin, write_origin


def _location(directory: Path, origin: str) -> BroadcastLocation:
    return BroadcastLocation(
        node="node-a", url="http://127.0.0.1:1", directory=str(directory), origin=origin
    )


def test_a_node_reads_only_tagged_directories_under_its_own_data_directory(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "data" / "broadcast"
    origin = new_origin()
    directory = shared / "node-a" / "room-1"
    write_origin(directory, origin)
    assert _location(directory, origin).local_directory("room-1", shared) == directory
    # Another broadcast (a restarted worker, a record of another box): relayed instead.
    assert _location(directory, new_origin()).local_directory("room-1", shared) is None
    # A record naming another room's directory, or a path outside the data directory.
    assert _location(directory, origin).local_directory("room-2", shared) is None
    elsewhere = tmp_path / "other" / "node-a" / "room-1"
    write_origin(elsewhere, origin)
    assert _location(elsewhere, origin).local_directory("room-1", shared) is None
    sneaky = shared / ".." / "room-1"
    write_origin(sneaky, origin)
    assert _location(sneaky, origin).local_directory("room-1", shared) is None
    # Not written yet (the worker is starting): relayed, and the owner says not_live.
    assert _location(shared / "node-b" / "room-1", origin).local_directory("room-1", shared) is None
