"""bench/latency.py at a tiny size: it must keep working (it measures nothing here).

The benchmark (README, docs/forwarding.md) times packets through a real
`yitang serve` against a direct connection, and subscribers joining over
Socket.IO. This runs it with one subscriber for a second and two joins, without
Janus (which needs a system package), and checks that it produced the figures.
"""

from __future__ import annotations

import math

import pytest

from tests.processes import run_bench_json


@pytest.mark.timeout(300)
async def test_latency_bench_produces_its_figures() -> None:
    report = await run_bench_json(
        "latency.py", "--modes", "direct,yitang", "--subscribers", "1", "--seconds", "1",
        "--joins", "2", timeout=280,
    )  # fmt: skip

    for mode in ("direct", "yitang"):
        packets = report["packets"][mode]["1"]
        assert packets["packets"] > 0, f"{mode}: packets were matched send to arrival"
        assert all(math.isfinite(packets[q]) for q in ("p50", "p99", "max"))
    assert set(report["added"]["yitang"]["1"]) == {"p50", "p99", "max"}

    joins = report["joins"]["yitang"]
    assert joins["joins"] == 2
    assert math.isfinite(joins["median"])
    # Every phase of a join was seen, in the order a join goes through them.
    at = joins["at"]
    assert {"socket", "joined", "offer", "answer_acked", "dtls", "keyframe"} <= set(at)
    assert at["socket"] <= at["joined"] <= at["dtls"] <= at["keyframe"]
