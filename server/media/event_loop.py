"""The node's event loop: asyncio's selector loop, whose wait reads publishers' sockets.

A publisher's datagrams arrive ~100 wake-ups a second, each of one to three
packets. The compiled ingest handles a packet in C (``_ingest.Reader``), but
every wake-up still went through the loop's Python: ``_run_once``, the
selector's ``select`` and its mapping of events to keys, the ``Handle`` around
the reader. On the benchmark machine that was about half of what receiving a
publisher cost (docs/forwarding.md, *Ingest*).

:class:`MediaSelector` waits in C (``_ingest.wait``): a socket whose reader is
a compiled ``Reader`` and that is only readable is read right there, in the
reader's context, and the wait goes on. Everything else is returned as
``EpollSelector.select`` returns it, and the wait also returns whenever what
ran inline gave the loop work (a callback ready, a timer added, a signal), so
the loop's order and timers are kept. Readers that are not compiled (Python
ingest, aiortc's, anything else on the loop) run as usual.

Between two waits the loop runs its callbacks, and datagrams wait meanwhile:
each such stretch is timed (server/media/loop_busy.py,
``yitang_event_loop_busy_seconds``).

``new_event_loop()`` is what the server's processes run; where the compiled
ingest is not built it is asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import select
import selectors
import time
from collections.abc import Callable
from typing import Any, Final

from server.media import ingest, loop_busy

try:
    from server.media import _ingest as compiled_ingest
except ImportError:  # not built: asyncio's loop (see new_event_loop)
    compiled_ingest = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: The loop attributes the wait reads to know whether the loop has work: the deque of
#: ready callbacks and the heap of timers (read afresh per wait: _run_once may replace it).
LOOP_READY: Final = "_ready"
LOOP_SCHEDULED: Final = "_scheduled"


class MediaSelector(selectors.EpollSelector):
    """An epoll selector that runs compiled socket readers inside its wait."""

    def __init__(self) -> None:
        super().__init__()
        self._loop: asyncio.AbstractEventLoop | None = None
        # fd => (reader, the context its handle runs in)
        self._inline: dict[int, tuple[Any, contextvars.Context]] = {}
        #: Times :meth:`select` returned to the loop (tests, diagnostics).
        self.selects = 0
        # When the last wait returned (perf_counter; 0.0: none yet): the loop has run
        # its callbacks since, and the next wait times that (loop_busy).
        self._returned_at = 0.0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose ready callbacks and timers end a wait (it owns this selector)."""
        self._loop = loop

    @property
    def inline_fds(self) -> frozenset[int]:
        """The sockets read inside the wait."""
        return frozenset(self._inline)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self._note(key)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().modify(fileobj, events, data)
        self._note(key)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self._inline.pop(key.fd, None)
        return key

    def _note(self, key: selectors.SelectorKey) -> None:
        # asyncio's data is (reader handle, writer handle); a compiled Reader with no
        # arguments is read inline (with a writer too: only a readable-only event is).
        handle = key.data[0] if isinstance(key.data, tuple) and key.data else None
        callback = getattr(handle, "_callback", None)
        if (
            compiled_ingest is not None
            and isinstance(callback, compiled_ingest.Reader)
            and not getattr(handle, "_args", ())
        ):
            self.read_inline(key.fd, callback, getattr(handle, "_context", None))
        else:
            self._inline.pop(key.fd, None)

    def read_inline(
        self, fd: int, reader: Callable[[], object], context: contextvars.Context | None = None
    ) -> None:
        """Run `reader()` (in `context`) inside the wait whenever `fd`, a registered
        reader's socket, is only readable; until it is unregistered or its reader
        changes. Compiled socket readers are taken on their own (see the module)."""
        self._inline[fd] = (reader, context if context is not None else contextvars.Context())

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if loop is None or compiled_ingest is None:
            return super().select(timeout)
        if self._returned_at:
            loop_busy.observe(time.perf_counter() - self._returned_at)
        fd_event_list = compiled_ingest.wait(
            epoll_fd=self._selector.fileno(),  # type: ignore[attr-defined]
            timeout=timeout,
            inline=self._inline,
            ready=getattr(loop, LOOP_READY),
            scheduled=getattr(loop, LOOP_SCHEDULED),
            max_events=max(len(self._fd_to_key), 1),  # type: ignore[attr-defined]
            on_error=self._inline_failed,
        )
        self._returned_at = time.perf_counter()
        self.selects += 1
        # EpollSelector.select's mapping (pinned in COMPILED_INGEST_PORTED_SOURCES).
        ready = []
        for fd, event in fd_event_list:
            events = 0
            if event & ~select.EPOLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~select.EPOLLOUT:
                events |= selectors.EVENT_READ
            key = self._fd_to_key.get(fd)  # type: ignore[attr-defined]
            if key:
                ready.append((key, events & key.events))
        return ready

    def _inline_failed(self, reader: Any, exc: BaseException | None) -> None:
        # As Handle._run does for a callback that raised.
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise exc
        context = {"message": f"Exception in inline reader {reader!r}", "exception": exc}
        if self._loop is not None:
            self._loop.call_exception_handler(context)
        else:
            logger.error("inline reader failed", exc_info=exc)


class MediaEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector event loop on a :class:`MediaSelector`."""

    def __init__(self) -> None:
        selector = MediaSelector()
        super().__init__(selector)
        selector.attach(self)

    @property
    def media_selector(self) -> MediaSelector:
        """Its selector (counters for tests)."""
        return self._selector  # type: ignore[attr-defined,no-any-return]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop a server process runs: :class:`MediaEventLoop` where the compiled
    ingest is built and enabled, else asyncio's own."""
    if compiled_ingest is None or not ingest.compiled_available():
        return asyncio.new_event_loop()
    return MediaEventLoop()
