"""bench/tiers.py at a tiny size: it must keep working (it measures nothing here).

The benchmark (README, Performance) runs a 12-venue session with quality tiers and
without, and prints the bytes the server sent, its CPU and their ratios. This runs
it with three venues in one client process for a second per mode and checks that
both runs produced their figures. (Who gets which encoding is tested with real
peers in tests/media/test_quality_per_receiver.py and test_quality_tiers_session.py.)
"""

from __future__ import annotations

import math

import pytest

from tests.processes import run_bench_json


@pytest.mark.timeout(400)
async def test_tiers_bench_produces_its_figures() -> None:
    report = await run_bench_json(
        "tiers.py", "--venues", "3", "--processes", "1", "--seconds", "1", timeout=380
    )

    runs = {run["mode"]: run for run in report["runs"]}
    assert set(runs) == {"tiers", "no-tiers"}
    for run in runs.values():
        assert run["venues"] == 3
        assert run["server_bytes_per_second"] > 0 and run["server_packets_per_second"] > 0
        assert run["delivered_bytes_per_second"] > 0
        assert math.isfinite(run["cpu_percent"]) and run["cpu_percent"] > 0
        assert run["levels_not_full"] == {}  # adaptation is off in the benchmark
        # Receivers count in the datagram callback (server/loadtest/cheap_receive.py),
        # not through aiortc's receive path, which starved the clients at 12 venues.
        assert run["hooked_share"] > 0.9
        assert run["clients_cpu_percent"] > 0
    if report["valid_pairs"]:
        assert set(report["ratios"]) == {"bytes", "packets", "cpu", "cpu_per_packet"}
