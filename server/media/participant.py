"""One participant's media: its publish and subscribe connections and its role."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from .errors import MediaError
from .publish_connection import PublishConnection
from .subscribe_connection import SubscribeConnection

logger = logging.getLogger(__name__)

# Participant ids appear as the msid stream id in SDP, so they must be SDP tokens.
_PARTICIPANT_ID_RE = re.compile(r"^[A-Za-z0-9_.\-~]{1,64}$")


def check_participant_id(participant_id: object) -> str:
    """Return ``participant_id`` if usable, else raise MediaError("bad_participant_id")."""
    if not isinstance(participant_id, str) or not _PARTICIPANT_ID_RE.match(participant_id):
        raise MediaError(
            "bad_participant_id",
            "participant ids are 1-64 characters among letters, digits and _ . - ~",
        )
    return participant_id


@dataclass
class Participant:
    """A member of a media room. Observers (``can_publish=False``) only subscribe."""

    participant_id: str
    can_publish: bool
    publish: PublishConnection
    subscribe: SubscribeConnection
    join_order: int

    async def close(self) -> None:
        """Close both connections; publish first so others stop receiving at once."""
        await self.publish.close()
        await self.subscribe.close()
        logger.debug("participant %s closed", self.participant_id)

    async def close_quietly(self) -> None:
        """Like :meth:`close`, but logs instead of raising (used on room shutdown)."""
        try:
            await self.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("closing participant %s failed", self.participant_id)
