"""bench/batched_sends.py at a tiny size: it must keep working (it measures nothing here).

The benchmark (docs/forwarding.md, *Batched sends*) times the compiled fan-out's
batched sends against one ``sendto`` a copy, in one process, and prints the ratio.
That batched copies arrive whole and in order is tested in
tests/media/test_rtp_units.py and tests/media/test_ingest.py.
"""

from __future__ import annotations

import pytest

from tests.processes import run_bench_json


@pytest.mark.timeout(120)
async def test_batched_sends_bench_produces_its_figures() -> None:
    result = await run_bench_json(
        "batched_sends.py", "--subscribers", "3", "--burst", "4", "--bursts", "2", timeout=100
    )
    assert (result["subscribers"], result["burst"]) == (3, 4)
    # Every copy reached its receiver; the batched rounds went out in GSO sends (each
    # subscriber's four copies in one), refused by nothing on loopback.
    assert result["received"] == result["sent"] > 0
    assert result["gso_sends"] > 0 and result["gso_refused"] == 0
    assert result["batched_us_per_copy"] > 0 and result["each_us_per_copy"] > 0
    assert result["ratio"] == pytest.approx(
        result["batched_us_per_copy"] / result["each_us_per_copy"], rel=0.01
    )
