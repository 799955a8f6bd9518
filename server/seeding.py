"""Seed files: a room and its invitees in one JSON file (see seeds/)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from pydantic import Field, model_validator

from server.catalog import RoomCatalog, join_url
from server.rooms.errors import Conflict
from server.rooms.models import Invitee, RoomSpec, Slug, Strict


class SeedRoom(RoomSpec):
    """A seeded room always names its id, so seeding twice finds it again."""

    id: Slug


class SeedFile(Strict):
    """A room definition plus the participants to issue join links for."""

    room: SeedRoom
    participants: list[Invitee] = Field(max_length=500)

    @model_validator(mode="after")
    def _check_venues(self) -> SeedFile:
        venues = {venue.id for venue in self.room.venues}
        for invitee in self.participants:
            if invitee.venue not in venues:
                raise ValueError(f"{invitee.identity}: unknown venue {invitee.venue!r}")
        return self


def load_seed(path: Path) -> SeedFile:
    """Read and validate a seed file."""
    return SeedFile.model_validate(json.loads(path.read_text(encoding="utf-8")))


async def apply_seed(
    catalog: RoomCatalog, seed: SeedFile, base_url: str, ttl_seconds: int
) -> list[tuple[Invitee, str]]:
    """Create the seeded room unless it exists; return a fresh join link per participant."""
    with contextlib.suppress(Conflict):  # already seeded on an earlier start
        await catalog.create_room(seed.room)
    links = []
    for invitee in seed.participants:
        token, _ = await catalog.issue_token(
            seed.room.id, invitee, ttl_seconds, base_url=base_url, replace=True
        )
        links.append((invitee, join_url(base_url, token)))
    return links
