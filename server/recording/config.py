"""Recording configuration: where the archive lives, how long it is kept, how files are written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RecordingConfig:
    """Settings of the recording service (build it from the server's Settings)."""

    #: The archive: one folder per recording (shared storage if several nodes record).
    recordings_dir: Path
    #: Recordings that started more than this many days ago are deleted by the sweep (None: never).
    retention_days: float | None = None
    #: Seconds between two writer passes (buffered packets are muxed in batches).
    flush_interval: float = 0.25
    #: The writer node renews its lease this often; others take over after ``lease_ttl``.
    lease_seconds: float = 2.0
    lease_ttl: float = 10.0
    #: Seconds between maintenance runs (recovery of dead writers' files, retention sweep).
    maintenance_interval: float = 60.0
    #: A recording left without a writer that its room's owner is expected to resume is
    #: finalized anyway after this many seconds (nobody came back; see ``recover``).
    resume_grace: float = 120.0
    #: Enqueue the combined video when a recording stops or is recovered.
    auto_render: bool = True
    #: Threads doing the live file I/O (writer passes) of all recordings of this process.
    writer_threads: int = 2
    #: Threads for archive work (deletes, manifest reads for downloads, recovery remuxes,
    #: retention, checksums of stopped recordings), so it never delays a writer pass.
    archive_threads: int = 2
    #: Closing the files on stop may take this long before the recording is declared failed.
    stop_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.writer_threads < 1 or self.archive_threads < 1:
            raise ValueError("writer_threads and archive_threads must be at least 1")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be positive")
        if self.lease_ttl <= self.lease_seconds:
            raise ValueError("lease_ttl must be longer than lease_seconds")
        if self.resume_grace < 0:
            raise ValueError("resume_grace must not be negative")
        if self.retention_days is not None and self.retention_days <= 0:
            raise ValueError("retention_days must be positive (or None to keep everything)")
