"""The compiled REMB estimator (server/media/_ingest_estimator.h) against aiortc's.

The direct ingest's compiled path gives each video receiver a C port of aiortc's
``RemoteBitrateEstimator``; the REMB a publisher is sent comes from it. Both are
fed the same packet traces — steady video, congestion building up and draining,
a sender that suddenly sends faster, reordering, silence, the 24-bit abs-send-time
clock wrapping, several SSRCs — and must agree after every packet: the same REMB
(or none) and the same internal state (the Kalman filter's offset and slope, the
noise estimate, the detector's threshold and hypothesis, the rate controller's
bitrate), to the last bit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from aiortc.rate import RemoteBitrateEstimator
from media_testkit import require_compiled

from server.media import ingest
from server.media.aiortc_internals import COMPILED_INGEST_ERROR

Packet = tuple[int, int, int, int]  # arrival_time_ms, abs_send_time, payload_size, ssrc

#: abs-send-time is 6.18 fixed-point seconds in 24 bits (wraps every 64 s).
_AST_PER_MS = (1 << 18) / 1000


if ingest.compiled_available():
    from server.media import _ingest as compiled_ingest


@pytest.fixture(autouse=True)
def _built() -> None:
    require_compiled("the compiled ingest", COMPILED_INGEST_ERROR)


def _trace(seed: int, seconds: int, *, start_ast_ms: float = 0.0) -> Iterator[Packet]:
    """A 30 fps video sender whose path changes every few seconds."""
    rng = random.Random(seed)
    arrival = 3_900_000_000_000 + rng.randrange(1000)  # NTP-epoch ms, as aiortc's clock
    send_ms = start_ast_ms
    queue_ms = 0.0  # the path's queueing delay
    ssrcs = [rng.randrange(1 << 32) for _ in range(3)]
    phase = "steady"
    for frame in range(seconds * 30):
        if frame % 90 == 0:  # a new phase every 3 s
            phase = rng.choice(["steady", "congested", "draining", "burst", "silence", "reorder"])
        if phase == "silence" and rng.random() < 0.3:
            arrival += rng.choice([50, 400, 1500, 4000])  # gaps, some past the rate window
            send_ms += rng.choice([50, 400, 1500, 4000])
        send_ms += 1000 / 30
        packets = rng.randint(1, 6) if rng.random() < 0.9 else rng.randint(10, 25)  # keyframes
        ssrc = ssrcs[0] if rng.random() < 0.95 else rng.choice(ssrcs)
        for i in range(packets):
            if phase == "congested":
                queue_ms += rng.uniform(0.0, 1.5)
            elif phase == "draining":
                queue_ms = max(0.0, queue_ms - rng.uniform(0.0, 2.0))
            jitter = rng.uniform(-2.0, 2.0) if phase != "burst" else rng.uniform(-8.0, 0.0)
            packet_send = send_ms + i * 0.2
            delay = queue_ms + max(jitter, -queue_ms)
            at = int(packet_send + delay) + (arrival - 3_900_000_000_000)
            ast = int(packet_send * _AST_PER_MS) & 0xFFFFFF
            if phase == "reorder" and rng.random() < 0.1:
                ast = (ast - rng.randint(1, 20000)) & 0xFFFFFF
            yield (3_900_000_000_000 + at, ast, rng.randint(50, 1200), ssrc)


def _python_state(estimator: RemoteBitrateEstimator) -> dict[str, float | int]:
    rate_control = estimator.rate_control
    avg_max = rate_control.avg_max_bitrate_kbps
    return {
        "hypothesis": estimator.detector.hypothesis.value,
        "offset": float(estimator.estimator._offset),
        "slope": float(estimator.estimator.slope),
        "var_noise": float(estimator.estimator.var_noise),
        "avg_noise": float(estimator.estimator.avg_noise),
        "threshold": float(estimator.detector.threshold),
        "current_bitrate": rate_control.current_bitrate,
        "num_of_deltas": estimator.estimator._num_of_deltas,
        "rate_control_state": rate_control.state.value,
        "var_max_bitrate_kbps": float(rate_control.var_max_bitrate_kbps),
        "avg_max_bitrate_kbps": -1.0 if avg_max is None else float(avg_max),
    }


def _compare(trace: Iterator[Packet]) -> tuple[int, set[int]]:
    reference = RemoteBitrateEstimator()
    compiled = compiled_ingest.Estimator()
    rembs = 0
    hypotheses: set[int] = set()
    for n, (arrival, ast, size, ssrc) in enumerate(trace):
        expected = reference.add(
            arrival_time_ms=arrival, abs_send_time=ast, payload_size=size, ssrc=ssrc
        )
        got = compiled.add(arrival_time_ms=arrival, abs_send_time=ast, payload_size=size, ssrc=ssrc)
        assert got == expected, f"packet {n}: REMB {got} != aiortc's {expected}"
        assert compiled.snapshot() == _python_state(reference), f"packet {n}: state differs"
        rembs += expected is not None
        hypotheses.add(reference.detector.hypothesis.value)
    return rembs, hypotheses


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_estimator_agrees_with_aiortcs_packet_for_packet(seed: int) -> None:
    rembs, hypotheses = _compare(_trace(seed, 60))
    assert rembs > 50  # REMBs were compared, not just Nones
    # The traces reach the detector's three states (over all seeds, each does most).
    assert len(hypotheses) >= 2


def test_the_traces_reach_overuse_and_underuse() -> None:
    """A check of the test itself: the traces drive the estimator through every state."""
    seen: set[int] = set()
    for seed in range(6):
        seen |= _compare(_trace(seed, 30))[1]
    assert seen == {0, 1, 2}


def test_the_abs_send_time_clock_wrapping_is_the_same() -> None:
    """abs-send-time wraps every 64 s; start just before the wrap."""
    _compare(_trace(7, 20, start_ast_ms=64_000 - 3_000))


def test_arguments_are_checked() -> None:
    estimator = compiled_ingest.Estimator()
    with pytest.raises(ValueError, match="abs_send_time is 24 bits"):
        estimator.add(arrival_time_ms=1, abs_send_time=1 << 24, payload_size=1, ssrc=1)
    with pytest.raises(ValueError, match="ssrc is 32 bits"):
        estimator.add(arrival_time_ms=1, abs_send_time=1, payload_size=1, ssrc=1 << 32)
    with pytest.raises(TypeError):
        estimator.add(arrival_time_ms="1", abs_send_time=1, payload_size=1, ssrc=1)
