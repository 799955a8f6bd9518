"""Garbage collection on a node: fewer and shorter stops of the event loop.

CPython's cyclic collector stops the process while it walks the objects of the
generations it collects; a full collection walks every tracked object. While it
runs no packet is forwarded, so every subscriber's video stalls at once. On the
load test's machine (README, *Pauses of the garbage collector*), a node
forwarding a 36-participant session held ~475 000 tracked objects, and the full
collections that the joins' growth set off took 110–220 ms each, six of them in
five seconds.

Two measures, both CPython's own knobs, taken by :func:`settle_after_startup`:

* what exists once the node has started (modules, classes, the application:
  ~110 000 objects) is frozen (``gc.freeze``). It lives as long as the process;
  no collection walks it again. Nothing is lost: a frozen object freed by its
  reference count is freed as before, and nothing made later is frozen (what a
  session makes and leaves as garbage is collected);
* a full collection waits for :data:`FULL_AFTER` collections of the middle
  generation instead of CPython's 10 (it still waits, too, until a quarter more
  objects have survived into the oldest generation since the last one). A burst
  of joins, which grows the heap fast, then sets off none or one instead of one
  every half second. Young garbage is collected as before; a cycle that became
  garbage after it grew old waits longer.

What a closed session leaves is collected by the media node once its last room
has closed (server/media/node.py). The pauses are exported as
``yitang_gc_pause_seconds`` (server/metrics/gc_pauses.py).
"""

from __future__ import annotations

import gc

#: Collections of the middle generation before a full one may run (CPython: 10).
FULL_AFTER = 100


def settle_after_startup() -> None:
    """Freeze what the node made while starting, and make full collections rarer (see the
    module). Call once in a node process, when it is ready to serve."""
    gc.collect()  # what startup left as garbage is not frozen with the rest
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER)
