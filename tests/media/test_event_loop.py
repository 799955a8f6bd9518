"""The node's event loop (server/media/event_loop.py): publishers' sockets are read
inside the wait, and the loop's own order and timers are kept."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from media_testkit import RoomHarness

from server.media import _ingest, ingest, loop_busy
from server.media.aiortc_internals import ICE_CONNECTION_ATTRIBUTE
from server.media.event_loop import MediaEventLoop, MediaSelector
from server.metrics.server_metrics import ServerMetrics


def _selector() -> MediaSelector:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, MediaEventLoop), "tests/media run on the server's loop"
    return loop.media_selector


@pytest.fixture
def datagrams() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of UDP sockets on 127.0.0.1: (sender, receiver)."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


@contextlib.contextmanager
def _reading_inline(sock: socket.socket, reader: Callable[[], object]) -> Iterator[None]:
    """``reader`` reads ``sock`` inside the wait while the block runs (registered with the
    loop first, as a transport's socket is; the selector then reads it inline)."""
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), lambda: None)
    _selector().read_inline(sock.fileno(), reader)
    try:
        yield
    finally:
        loop.remove_reader(sock.fileno())


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_publishers_socket_is_read_inside_the_wait(harness: RoomHarness) -> None:
    # A real publisher through the compiled ingest: its datagrams come one to three a
    # wake-up; read inside the wait, most never return to the loop's Python.
    if not ingest.compiled_available():
        pytest.fail("the compiled ingest is not built (scripts/bootstrap builds it)")
    alice = harness.client("alice")
    bob = harness.client("bob", video=True, audio=True)
    await alice.join()
    await bob.join(publish=False)
    await harness.wait_until(lambda: bob.frames_from("alice", "video") >= 10, "bob sees alice")
    connection = harness.room._participants["alice"].publish
    (inbound, *_) = connection._inbound.values()
    ice = getattr(inbound.transceiver.receiver.transport.transport, ICE_CONNECTION_ATTRIBUTE)
    fd = ice._nominated[1].protocol.transport._sock_fd
    selector = _selector()
    assert fd in selector.inline_fds
    handle, _ = selector.get_key(fd).data
    reader = handle._callback
    assert isinstance(reader, _ingest.Reader)
    batches, inline_runs = reader.batches, _ingest.inline_runs()
    frames = bob.frames_from("alice", "video")
    await harness.wait_until(lambda: reader.batches >= batches + 300, "300 reads of alice")
    # On asyncio's own wait each read is a return to the loop's Python (a Handle);
    # here they run inside the wait, but for a socket that was writable too at the time.
    assert _ingest.inline_runs() - inline_runs >= (reader.batches - batches) * 0.9
    await harness.wait_until(
        lambda: bob.frames_from("alice", "video") >= frames + 20, "bob keeps seeing alice"
    )


async def test_a_callback_an_inline_reader_schedules_runs_at_once(
    datagrams: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = datagrams
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    with _reading_inline(receiver, lambda: _drain(receiver) and loop.call_soon(woken.set)):
        started = time.monotonic()
        sender.send(b"x")
        # Nothing else is due for 30 s: the wait must end for the callback it made ready.
        await asyncio.wait_for(woken.wait(), 30)
        assert time.monotonic() - started < 5
    assert receiver.fileno() not in _selector().inline_fds


async def test_a_timer_an_inline_reader_adds_fires_on_time(
    datagrams: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = datagrams
    loop = asyncio.get_running_loop()
    fired = asyncio.Event()

    def read() -> None:
        if _drain(receiver):
            loop.call_later(0.05, fired.set)

    with _reading_inline(receiver, read):
        started = time.monotonic()
        sender.send(b"x")
        await asyncio.wait_for(fired.wait(), 30)
        assert time.monotonic() - started < 5


async def test_a_failing_inline_reader_is_reported_and_the_loop_goes_on(
    datagrams: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = datagrams
    loop = asyncio.get_running_loop()
    reported: list[BaseException | None] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context.get("exception")))
    read = 0

    def fail() -> None:
        nonlocal read
        read += _drain(receiver)
        raise ValueError("a bad datagram")

    try:
        with _reading_inline(receiver, fail):
            for i in range(3):
                sender.send(b"x")
                await _until(lambda i=i: read >= i + 1, f"datagram {i + 1} read")
            assert read == 3
            assert len(reported) >= 3 and all(isinstance(e, ValueError) for e in reported)
    finally:
        loop.set_exception_handler(None)


async def test_timers_keep_their_time_while_datagrams_keep_coming(
    datagrams: tuple[socket.socket, socket.socket],
) -> None:
    # A socket that is never quiet (a datagram every millisecond, from a thread) must
    # not keep the wait from returning for a timer.
    sender, receiver = datagrams
    received = 0

    def read() -> None:
        nonlocal received
        received += _drain(receiver)

    stop = threading.Event()

    def flood() -> None:
        for _ in range(20_000):  # bounded: 20 s at most
            if stop.is_set():
                return
            sender.send(b"x" * 100)
            time.sleep(0.001)

    thread = threading.Thread(target=flood, daemon=True)
    with _reading_inline(receiver, read):
        thread.start()
        try:
            await _until(lambda: received >= 50, "50 datagrams read")
            started = time.monotonic()
            await asyncio.sleep(0.2)
            # Late only by what the machine adds, not by the flood: the wait ends at the
            # timer's deadline whatever it reads meanwhile.
            assert time.monotonic() - started < 2.0
            assert received >= 50
        finally:
            stop.set()
            thread.join()


async def test_a_callback_that_holds_the_loop_is_timed_as_a_busy_stretch() -> None:
    """``yitang_event_loop_busy_seconds``: what the loop runs between two waits is timed
    as one stretch (datagrams arriving meanwhile wait for it), and /metrics exports it."""
    loop = asyncio.get_running_loop()
    selector = _selector()
    before = loop_busy.busy_times()
    selects = selector.selects
    done = asyncio.Event()

    def hold() -> None:
        time.sleep(0.03)  # a callback that holds the loop 30 ms (a slow handler)
        done.set()

    loop.call_soon(hold)
    await done.wait()
    await _until(lambda: selector.selects >= selects + 2, "the wait after the hold")
    after = loop_busy.busy_times()
    new = [a - b for a, b in zip(after.counts, before.counts, strict=True)]
    over_25ms = after.bounds.index(0.025) + 1  # the buckets past 25 ms (+Inf included)
    assert sum(new[over_25ms:]) >= 1, new
    assert after.sum - before.sum >= 0.03
    assert sum(new) >= 2  # the stretches before and after it were timed too
    metrics = ServerMetrics("node-test")
    exported = metrics.registry.get_sample_value("yitang_event_loop_busy_seconds_count")
    assert exported == sum(loop_busy.busy_times().counts)
    over = metrics.registry.get_sample_value(
        "yitang_event_loop_busy_seconds_bucket", {"le": "0.025"}
    )
    assert over is not None and exported - over >= 1
