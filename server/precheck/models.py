"""What a probe measured, as stored and shown: one record per identity and leg."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Leg = Literal["direct", "relay"]
Verdict = Literal["good", "usable", "poor"]

#: Why a verdict is not "good" (each has zh and en text in static/js/i18n.js, `precheck.reason_*`).
Reason = Literal[
    "no_connection",  # the leg never connected within the connect timeout
    "high_loss",  # more than 5% of pings unanswered
    "some_loss",  # more than 1%
    "high_rtt",  # round trip (95th percentile) above 400 ms
    "raised_rtt",  # above 200 ms
    "slow_uplink",  # under half the target uplink bitrate arrived
    "limited_uplink",  # under 80% of it
    "udp_blocked",  # direct UDP failed, the TURN relay works: the session will use TURN
    "udp_blocked_no_turn",  # direct UDP failed and the server has no TURN relay
    "relay_failed",  # the TURN relay leg failed (direct works: shown, not fatal)
    "unreachable",  # neither leg connected
]


class LegResult(BaseModel):
    """One leg of a check, measured by the server (nothing here comes from the browser)."""

    model_config = ConfigDict(extra="forbid")

    leg: Leg
    connected: bool
    #: The browser's candidate type as the server's ICE saw it (host, srflx, prflx, relay).
    candidate: str | None = None
    pings_sent: int = Field(default=0, ge=0)
    pings_answered: int = Field(default=0, ge=0)
    #: Share of the server's pings whose echo never came back (both directions).
    loss: float | None = None
    rtt_ms_median: float | None = None
    rtt_ms_p95: float | None = None
    #: What the server received of the browser's uplink probe, and its target.
    uplink_kbps: float | None = None
    uplink_target_kbps: int
    verdict: Verdict
    reasons: list[Reason] = Field(default_factory=list)
    #: When the leg ended (seconds since the epoch).
    at: float


class PrecheckRecord(BaseModel):
    """A leg's result with who ran it (from the signed token, never from the request)."""

    model_config = ConfigDict(extra="forbid")

    room: str
    identity: str
    name: str
    role: str
    venue: str
    result: LegResult


class Overall(BaseModel):
    """The plain verdict of a venue's check from its latest legs."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    reasons: list[Reason] = Field(default_factory=list)
