"""The combined-video job on RQ (Redis Queue): enqueue, run, report progress, survive crashes.

Why RQ: the render is CPU-bound, synchronous PyAV/numpy work. RQ runs each
job in a forked work-horse process (a crash or a leak in the job cannot take
the worker down, the job timeout kills it), supports retries, and accepts the
project's redis-py 8 (arq pins redis < 6, saq's Redis extra pins < 8).
Enqueuing is a blocking Redis call, so the async side runs it in a thread.

Crash semantics:

* the work-horse dies (killed, out of memory): the worker sees it and RQ
  retries the job (``Retry(max=RETRIES)``), from the start (a render is
  deterministic and writes through ``combined.mp4.part``);
* the whole worker dies: the next worker's startup sweep
  (:func:`requeue_abandoned`) finds started jobs whose worker is gone and hands
  them to RQ's own abandoned-job handling (retry, or fail when no retries are
  left); RQ's periodic registry cleanup does the same after the heartbeat TTL.

Progress (0-100) and state live in the recording's render hash
(``keys.recording_render``), written by the job every half second and
heartbeated every two seconds, so the API, the archive page and the CLI read
one small hash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Retry, Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from server.state import keys

from .archive_index import render_fields, render_from_hash
from .compositor import RenderOptions, render_recording
from .models import RecordingSummary, RenderStatus

logger = logging.getLogger(__name__)

QUEUE_NAME = "yitang-render"
#: A render taking longer than this is killed (and retried).
JOB_TIMEOUT = 6 * 3600
RETRIES = 2
#: How often a running job says it is alive, and after how long a silent one counts as dead.
HEARTBEAT_SECONDS = 2.0
STALLED_AFTER = 60.0
_PENDING = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def render_job_id(recording_id: str) -> str:
    """The RQ job id of a recording's render (one job per recording)."""
    return f"render-{recording_id}"


class RenderQueue:
    """Enqueues combined-video jobs (one per recording) on the RQ queue."""

    def __init__(
        self,
        redis_url: str,
        *,
        queue_name: str = QUEUE_NAME,
        job_timeout: int = JOB_TIMEOUT,
        retries: int = RETRIES,
        options: RenderOptions | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.job_timeout = job_timeout
        self.retries = retries
        self.options = options or RenderOptions()
        self._connection: redis.Redis | None = None
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._connection is None:
                self._connection = redis.Redis.from_url(self.redis_url)
            return self._connection

    def close(self) -> None:
        """Close the Redis connection (idempotent)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def enqueue(self, recording_id: str, directory: Path) -> RenderStatus:
        """Queue the render of a recording folder, unless it is already queued or running."""
        return await asyncio.to_thread(self.enqueue_sync, recording_id, directory)

    def enqueue_sync(self, recording_id: str, directory: Path) -> RenderStatus:
        """Blocking form of :meth:`enqueue`."""
        connection: Any = self._redis()
        job_id = render_job_id(recording_id)
        try:
            existing = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        except NoSuchJobError:
            existing = None
        if existing is not None:
            if existing.get_status() in _PENDING:
                return render_from_hash(connection.hgetall(keys.recording_render(recording_id)))
            existing.delete()
        status = RenderStatus(state="queued", job_id=job_id, updated=time.time())
        connection.hset(keys.recording_render(recording_id), mapping=render_fields(status))
        queue = Queue(self.queue_name, connection=connection, serializer=JSONSerializer)
        queue.enqueue(
            render_job,
            recording_id,
            str(directory),
            asdict(self.options),
            job_id=job_id,
            job_timeout=self.job_timeout,
            retry=Retry(max=self.retries) if self.retries > 0 else None,
            result_ttl=7 * 86400,
            failure_ttl=30 * 86400,
            description=f"combined video of {recording_id}",
        )
        logger.info("render of %s queued as %s", recording_id, job_id)
        return status

    def status_sync(self, recording_id: str) -> RenderStatus:
        """The render status (blocking)."""
        connection: Any = self._redis()
        return render_from_hash(connection.hgetall(keys.recording_render(recording_id)))


class _Reporter:
    """Writes the job's state and progress to the render hash; heartbeats from a thread."""

    def __init__(self, connection: Any, recording_id: str, job_id: str, attempt: int) -> None:
        self._redis = connection
        self._key = keys.recording_render(recording_id)
        self._status = RenderStatus(state="running", job_id=job_id, attempt=attempt)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="render-heartbeat", daemon=True)

    def start(self) -> None:
        self.set(state="running", progress=0.0, message="")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def set(self, **changes: Any) -> None:
        with self._lock:
            self._status = self._status.model_copy(update={**changes, "updated": time.time()})
            fields = render_fields(self._status)
            fields["pid"] = str(os.getpid())
            self._redis.hset(self._key, mapping=fields)

    def progress(self, percent: float) -> None:
        self.set(progress=round(min(max(percent, 0.0), 100.0), 2))

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._lock:
                    self._redis.hset(self._key, "updated", f"{time.time():.3f}")
            except redis.RedisError as exc:
                logger.warning("render heartbeat failed: %s", exc)


def render_job(recording_id: str, directory: str, options: dict[str, Any]) -> dict[str, Any]:
    """The RQ job: render one recording folder's combined.mp4, reporting progress."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("render_job runs inside an RQ worker")
    connection: Any = job.connection
    attempt = int(job.meta.get("attempt", 0)) + 1
    job.meta["attempt"] = attempt
    job.save_meta()  # type: ignore[no-untyped-call]
    reporter = _Reporter(connection, recording_id, job.id, attempt)
    reporter.start()
    try:
        manifest = render_recording(Path(directory), RenderOptions(**options), reporter.progress)
    except Exception as exc:
        retrying = (job.retries_left or 0) > 0
        reporter.set(
            state="queued" if retrying else "failed",
            message=f"attempt {attempt} failed: {exc}" + ("; retrying" if retrying else ""),
        )
        raise
    finally:
        reporter.stop()
    reporter.set(state="done", progress=100.0, message="")
    raw = connection.get(keys.recording(recording_id))
    if raw:
        summary = RecordingSummary.model_validate_json(raw)
        connection.set(
            keys.recording(recording_id),
            summary.model_copy(update={"has_combined": True}).model_dump_json(),
        )
    combined = manifest.combined
    return {"recording": recording_id, "size": combined.size if combined else 0}


def _worker_is_dead(connection: Any, worker_name: str) -> bool:
    if not worker_name:
        return True
    worker = Worker.find_by_key(
        Worker.redis_worker_namespace_prefix + worker_name, connection=connection
    )
    if worker is None:
        return True
    if worker.hostname == socket.gethostname() and worker.pid:
        try:
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def requeue_abandoned(connection: Any, queue_name: str = QUEUE_NAME) -> list[str]:
    """Hand started jobs whose worker died to RQ's abandoned-job handling (retry or fail).

    A worker is dead if its registration expired, or if it ran on this host and its
    process is gone, or if its job stopped heartbeating ``STALLED_AFTER`` seconds ago.
    Returns the ids of the jobs handed over.
    """
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    registry = StartedJobRegistry(queue=queue)
    abandoned = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            execution = Execution.fetch(execution_id, job_id, connection)
            worker_name = execution.worker_name
        except ValueError:
            worker_name = ""
        dead = _worker_is_dead(connection, worker_name)
        if not dead and job_id.startswith("render-"):
            raw = connection.hget(keys.recording_render(job_id[len("render-") :]), "updated")
            dead = raw is not None and time.time() - float(raw) > STALLED_AFTER
        if dead:
            # Mark the entry expired; RQ's cleanup then retries or fails it by its own rules.
            connection.zadd(registry.key, {f"{job_id}:{execution_id}": 1}, xx=True)
            abandoned.append(job_id)
    if abandoned:
        registry.cleanup()
        logger.warning("requeued abandoned render jobs: %s", ", ".join(abandoned))
    return abandoned


#: How long the worker's command thread waits for a message before it looks again at
#: whether it is to stop (rq's own: 60 s).
COMMAND_POLL_SECONDS = 1.0


class RenderWorker(Worker):
    """rq's worker, whose command thread stops within a second.

    rq listens for commands (stop a job, shut down) on a pub/sub thread that waits
    60 s per message. Since redis-py 8.2, stopping that thread waits for it; and
    when the thread has already seen the worker's unsubscribe, it waits those
    60 s for a subscription that will not come. So a worker leaving (``--burst``
    with an empty queue, or SIGTERM) hung for up to a minute, depending on which
    thread came first. Here the thread looks every second: the same subscription,
    the same handlers."""

    def subscribe(self) -> None:
        """Subscribe to this worker's command channel (as rq does, polling each second)."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # rq declares the attribute as None only; it assigns the thread just so.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=COMMAND_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


def run_worker(
    redis_url: str, *, queue_name: str = QUEUE_NAME, burst: bool = False, name: str | None = None
) -> bool:
    """Run an RQ worker for render jobs until stopped (``burst``: until the queue is empty)."""
    connection = redis.Redis.from_url(redis_url)
    requeue_abandoned(connection, queue_name)
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    worker = RenderWorker(
        [queue],
        connection=connection,
        name=name,
        serializer=JSONSerializer,
        job_monitoring_interval=5,
    )
    return bool(worker.work(burst=burst, with_scheduler=False, logging_level="INFO"))
