"""The render worker process: ``python -m server.recording.worker`` (or ``yitang worker``).

    python -m server.recording.worker [--redis-url URL | --data-dir DIR] [--burst] [--queue NAME]

It runs RQ jobs that make combined videos; it never touches live media. Run
one or more per machine that can read the recordings folder (the job carries
the folder's path). Without ``--redis-url`` (or ``REDIS_URL``) it uses the
embedded Valkey of ``--data-dir`` (``YITANG_DATA_DIR``, default ``data``), like
``yitang serve``. At start it hands jobs abandoned by dead workers back to RQ.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from server.logging_setup import LOG_FORMATS, configure_logging
from server.state.embedded import die_with_parent, embedded_redis_url

from .jobs import QUEUE_NAME, run_worker


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The worker's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m server.recording.worker", description="Render combined recording videos."
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--data-dir", default=os.environ.get("YITANG_DATA_DIR", "data"))
    parser.add_argument("--queue", default=QUEUE_NAME)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    # The server's format, which `yitang serve` passes to the workers it starts.
    log_format = os.environ.get("YITANG_LOG_FORMAT", "text")
    configure_logging(log_format if log_format in LOG_FORMATS else "text")
    redis_url = args.redis_url or embedded_redis_url(Path(args.data_dir))
    run_worker(redis_url, queue_name=args.queue, burst=args.burst, name=args.name)
    return 0


@contextlib.asynccontextmanager
async def worker_processes(count: int, redis_url: str) -> AsyncIterator[list[int]]:
    """Run `count` worker processes beside a server; yields their pids, stops them on exit.

    They are separate processes (renders never run where media is forwarded) and
    die with the server (PR_SET_PDEATHSIG), so a killed server leaves none behind.
    """
    command = (sys.executable, "-m", "server.recording.worker", "--redis-url", redis_url)
    processes: list[asyncio.subprocess.Process] = []
    try:
        # Spawned inside the try: if a later one fails to start, the earlier ones are stopped.
        for _ in range(count):
            processes.append(
                await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent
                )
            )
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


if __name__ == "__main__":
    sys.exit(main())
