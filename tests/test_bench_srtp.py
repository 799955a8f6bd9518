"""bench/srtp_protect.py at a tiny size: it must keep working (it measures nothing here).

The benchmark (docs/forwarding.md, *Outbound SRTP*) times the server's own outbound
SRTP against libsrtp on the same packets and prints their ratio per case. That the two
produce the same bytes is tested in tests/media/test_outbound_srtp.py.
"""

from __future__ import annotations

import pytest

from tests.processes import run_bench_json


@pytest.mark.timeout(120)
async def test_srtp_bench_produces_its_figures() -> None:
    cases = await run_bench_json("srtp_protect.py", "--packets", "1000", timeout=100)
    assert {(c["profile"], c["streams"]) for c in cases} == {
        (profile, streams) for profile in ("AES-128-GCM", "AES-256-GCM") for streams in (1, 28)
    }
    for case in cases:
        assert case["libsrtp_us"] > 0 and case["own_us"] > 0
        assert case["ratio"] == pytest.approx(case["own_us"] / case["libsrtp_us"], rel=0.01)
