"""Whether the load test's own clients kept up: their CPU and their event loop's lag.

A load test measures the server only while its client processes have time to
spare. When a client process uses (nearly) a whole core, or its event loop runs
late, packets wait in that process's socket and frames look late or lost:
the figure then measures the clients, not the server. Each worker process runs
a :class:`ClientLoadProbe` over the measurement window; the runner judges the
processes together (:func:`judge`) and says so in the report.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from typing import Any

#: How often the probe wakes to see how late its wake-up is.
TICK_SECONDS = 0.05
#: A client process at or above this share of a core has no time to spare.
CPU_LIMIT_PERCENT = 85.0
#: An event loop late by this much at the 95th percentile delays what it receives.
LAG_LIMIT_MS = 50.0


class ClientLoadProbe:
    """Measures this process's CPU and its event loop's lag from :meth:`start` on."""

    def __init__(self) -> None:
        self._cpu_at: float | None = None
        self._wall_at = 0.0
        self._lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0
        self._gc_pauses: list[float] = []

    def start(self) -> None:
        """Begin the window (restarts it if called again)."""
        self.stop()
        self._lags = []
        self._gc_pauses = []
        self._cpu_at = time.process_time()
        self._wall_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._tick())
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        """Stop ticking (what was measured stays readable)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # A collection stops the process: a long one delays every packet it would read.
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_pauses.append(time.perf_counter() - self._gc_started)

    def result(self) -> dict[str, Any]:
        """CPU in % of a core and loop lag (ms) over the window so far."""
        if self._cpu_at is None:
            return {
                "cpu_percent": None,
                "loop_lag_p95_ms": None,
                "loop_lag_max_ms": None,
                "gc_pause_max_ms": None,
            }
        elapsed = max(time.monotonic() - self._wall_at, 1e-6)
        cpu = (time.process_time() - self._cpu_at) / elapsed * 100
        lags = sorted(self._lags)
        p95 = lags[min(len(lags) - 1, round(0.95 * (len(lags) - 1)))] if lags else None
        return {
            "cpu_percent": round(cpu, 1),
            "loop_lag_p95_ms": None if p95 is None else round(p95 * 1000, 1),
            "loop_lag_max_ms": round(lags[-1] * 1000, 1) if lags else None,
            "gc_pause_max_ms": round(max(self._gc_pauses, default=0.0) * 1000, 1),
        }

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            self._lags.append(max(0.0, loop.time() - due))


@dataclass(frozen=True)
class ClientVerdict:
    """What the client processes' load says about the figures."""

    processes: int
    cores: int
    cpu_percent_total: float
    cpu_percent_max: float | None
    loop_lag_p95_ms_max: float | None
    limited: bool
    why: str

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {
            "processes": self.processes,
            "cores": self.cores,
            "cpu_percent_total": self.cpu_percent_total,
            "cpu_percent_max": self.cpu_percent_max,
            "loop_lag_p95_ms_max": self.loop_lag_p95_ms_max,
            "limited": self.limited,
            "why": self.why,
        }


def judge(
    loads: list[dict[str, Any]], cores: int, runner_cpu_percent: float = 0.0
) -> ClientVerdict:
    """Whether the clients were the limit: a process's CPU, all of them together on the
    ``cores`` they may run on (with the runner's own, ``runner_cpu_percent``: its host
    receives too), or an event loop running late."""
    cpus = [load["cpu_percent"] for load in loads if load.get("cpu_percent") is not None]
    lags = [load["loop_lag_p95_ms"] for load in loads if load.get("loop_lag_p95_ms") is not None]
    cpu_max = max(cpus, default=None)
    lag_max = max(lags, default=None)
    total = sum(cpus) + runner_cpu_percent
    reasons = []
    if cpu_max is not None and cpu_max >= CPU_LIMIT_PERCENT:
        reasons.append(f"a client process used {cpu_max:.0f} % of a core")
    elif total >= CPU_LIMIT_PERCENT * max(1, cores):
        reasons.append(f"the clients used {total:.0f} % of the {cores} core(s) they run on")
    if lag_max is not None and lag_max >= LAG_LIMIT_MS:
        reasons.append(f"a client event loop ran {lag_max:.0f} ms late (p95)")
    if not loads:
        reasons.append("no client process reported its load")
    return ClientVerdict(
        processes=len(loads),
        cores=cores,
        cpu_percent_total=round(total, 1),
        cpu_percent_max=cpu_max,
        loop_lag_p95_ms_max=lag_max,
        limited=bool(reasons),
        why="; ".join(reasons),
    )
