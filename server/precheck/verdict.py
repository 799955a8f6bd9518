"""Plain verdicts from measurements: pure functions, one threshold table."""

from __future__ import annotations

from collections.abc import Sequence

from .models import LegResult, Overall, Reason, Verdict

#: (limit, verdict, reason): above the limit, the leg is at most that verdict.
LOSS_LIMITS = ((0.05, "poor", "high_loss"), (0.01, "usable", "some_loss"))
RTT_P95_LIMITS_MS = ((400.0, "poor", "high_rtt"), (200.0, "usable", "raised_rtt"))
#: Shares of the target uplink: below them, the leg is at most that verdict.
UPLINK_SHARES = ((0.5, "poor", "slow_uplink"), (0.8, "usable", "limited_uplink"))

_RANK: dict[Verdict, int] = {"good": 0, "usable": 1, "poor": 2}


def worst(*verdicts: Verdict) -> Verdict:
    """The worst of several verdicts ("good" for none)."""
    return max(verdicts, key=_RANK.__getitem__, default="good")


def leg_verdict(
    *,
    connected: bool,
    loss: float | None,
    rtt_ms_p95: float | None,
    uplink_kbps: float | None,
    uplink_target_kbps: int,
) -> tuple[Verdict, list[Reason]]:
    """A leg's verdict and the reasons it is not good."""
    if not connected:
        return "poor", ["no_connection"]
    found: list[tuple[Verdict, Reason]] = []
    for value, limits in ((loss, LOSS_LIMITS), (rtt_ms_p95, RTT_P95_LIMITS_MS)):
        for limit, verdict, reason in limits:
            if value is not None and value > limit:
                found.append((verdict, reason))  # type: ignore[arg-type]
                break
    share = (uplink_kbps or 0.0) / uplink_target_kbps
    for limit, verdict, reason in UPLINK_SHARES:
        if share < limit:
            found.append((verdict, reason))  # type: ignore[arg-type]
            break
    return worst(*(v for v, _ in found)), [r for _, r in found]


def overall(direct: LegResult | None, relay: LegResult | None, *, turn_configured: bool) -> Overall:
    """One venue's verdict from its direct and relay legs.

    Direct UDP is what the session prefers; the relay is its fallback. Direct
    failing with the relay working is usable ("UDP blocked: will use TURN").
    """
    if direct is None and relay is None:
        return Overall(verdict="poor", reasons=["unreachable"])
    if direct is not None and direct.connected:
        reasons: list[Reason] = list(direct.reasons)
        if turn_configured and relay is not None and not relay.connected:
            reasons.append("relay_failed")
        return Overall(verdict=direct.verdict, reasons=reasons)
    if relay is not None and relay.connected:
        return Overall(
            verdict=worst("usable", relay.verdict), reasons=["udp_blocked", *relay.reasons]
        )
    if not turn_configured:
        return Overall(verdict="poor", reasons=["udp_blocked_no_turn"])
    return Overall(verdict="poor", reasons=["unreachable"])


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` percentile of `values` (nearest rank; values must not be empty)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]
