"""Yitang's recording layer: per-track passthrough files, the archive, the combined video.

Entry points (everything else in this package is internal)::

    config = RecordingConfig(recordings_dir=data_dir / "recordings", retention_days=365)
    queue = RenderQueue(redis_url)                       # RQ queue "yitang-render"
    service = RecordingService(store, config, node_id=node.id, render_queue=queue,
                               on_change=cb, on_error=cb,   # cb(RecordingInfo), may be async
                               resume_expected=will_resume)  # async (room_id, recording_id) -> bool
    await service.recover()            # startup: close recordings nobody resumes (disk scan)
    service.start_background()         # lease keeper + maintenance (recovery, retention)

    context = RecordingContext(floor, agenda_index, participants)   # server.rooms.ports
    info = await service.start(room_id, media_room, room, started_by, context)  # -> RecordingInfo
    info = await service.resume(recording_id, media_room, room, context,        # a new part, after
                                dead_writer=old_node)                           # failover / drain
    await service.suspend(room_id)     # drain: end this part; the next owner resumes it
    service.tracks_changed(room_id)    # optional: on TracksChanged (else picked up in <0.25 s)
    service.is_recording(room_id); service.current(room_id)
    info = await service.stop(room_id)                                          # -> RecordingInfo
    await service.render(recording_id)          # (re)queue the combined video -> RenderStatus
    await service.search(query=, since=, until=, venue=, speaker=, limit=)
    await service.detail(recording_id)
    await service.delete(recording_id, by="api", operator=name, address=ip)  # audited first
    await service.export(recording_id)          # open ZIP (files, minutes, CSV, SHA256SUMS)
    await service.moments.search(q, recording_id=None, limit=50)   # search inside sessions
    await service.audit.entries(limit, recording_id)

    # The session record, pure functions of a SessionSource (session_source.py):
    record = session_record(from_manifest(manifest))   # or from_live_room(room, roster, ...)
    attendance(source); speaking_record(source)        # attendance.py, speaking.py
    minutes_docx(record); minutes_markdown(record)     # minutes.py (imports python-docx)
    await service.sweep_retention()             # also run by the maintenance loop
    await service.close()                       # stops recordings cleanly, joins threads

    python -m server.recording.worker [--redis-url URL | --data-dir DIR] [--burst]
    await cli_progress.render_and_watch(server_url, api_key, recording_id)   # CLI bar

HTTP: ``server.http.recordings`` (``add_routes(app)``, ``ENDPOINTS``,
``recordings_ctx``, ``RECORDING_SERVICE``/``RECORDING_CONFIG`` app keys) and
``server.http.session_records`` (attendance, speaking record, minutes, moments,
export, audit).

How a recording works:

* ``start`` creates ``<recordings_dir>/<recording id>/`` with a first
  ``manifest.json`` (state ``recording``), claims the room in Redis and holds a
  lease (renewed every ``lease_seconds``). A :class:`TrackRecorder` is attached
  as a ``PacketSink`` to every track's forwarder, now and as tracks appear, and
  a keyframe is requested for video.
* Each track becomes one file, the received packets unchanged: VP8 and Opus
  in WebM, H.264 in Matroska. Frames are rebuilt from RTP (gaps: drop until the
  next keyframe, and ask for one), timestamps follow the RTP clock, and the
  file's start offset is measured from arrival times. A participant who leaves
  and rejoins gets new files. Files are written as ``*.part`` (clusters closed
  every second, flushed at once) and renamed on close.
* ``stop`` closes the files, computes sha256s, and writes the manifest: room
  and agenda, participants with venue and level, files with offsets and
  durations, the timeline between start and stop, chapters (agenda items and
  turns at the floor) and speaker segments; the summary is indexed in Redis
  (by date, venue, speaker, title terms), its moments (speeches, agenda items,
  chat) are indexed for search inside sessions (``moment_index``), and the
  combined video is queued. The manifest also keeps the roster and who was
  present at the start, so attendance and the speaking record can be derived
  from it alone.
* A disk error fails the recording (state ``failed``, ``on_error``); the
  session's forwarding never waits on the recorder, and a recorder never raises
  into it (a failure to take a packet fails the recording the same way).
* Writer passes have their own threads (``writer_threads``); deletes, manifest
  reads for downloads, recovery remuxes, retention and checksums run on the
  archive threads (``archive_threads``), so they never delay a live recording.
* The room's owner passes what the manifest needs of the live session (floor,
  agenda item, who is present) as a ``RecordingContext`` (``server.rooms.ports``);
  this package never reads the live room state. The owner reaches the service
  through ``room_recorder.RoomRecorder`` (the domain's ``Recorder`` port).
* A recording survives its node. Each recording has a writer lease in Redis
  (compare-and-set: only the holder writes the manifest; a node that finds its
  lease taken stops writing). When the room's owner dies (kill -9) or drains,
  the room's next owner calls ``resume``: the recording continues in a new
  *part*, writing new files (``<track>.p<part>.<ext>``) into the same folder
  on the recording's clock. The manifest lists the parts (node, start, end,
  why it ended: ``handover``, ``writer_lost``, ``stopped``...) and the gaps
  between them (seconds from the start; from where the previous part's media
  ends to where the next part starts); every file says its part. A dead
  writer's ``*.part`` files are remuxed in the background while the new part
  already records. On drain the owner calls ``suspend`` first: the part's
  files are closed cleanly, the lease released, the room's claim kept.
  ``resume`` refuses ``recording_elsewhere`` while another node's lease is
  held (retry after ``lease_ttl``, or name the node known dead with
  ``dead_writer`` to take its lease over at once; ``RoomRecorder`` does so by
  itself when the holder's node heartbeat has expired) and ``not_resumable``
  once the recording has ended (start a new one).
* The recovery rule: a recording in progress whose writer lease has expired
  is finalized (its ``*.part`` files remuxed, state ``interrupted``,
  ``complete: false``) only when nobody is going to resume it: when the room
  no longer claims it, when no ``resume_expected`` predicate is configured,
  when the predicate says no, or, whatever it says, ``resume_grace`` seconds
  (default 120) after it was first found without a writer. Until then the
  maintenance loop and the startup disk scan leave it alone. Finalizing takes
  the writer lease first, so it never races a resume.
* The combined MP4 (speaker view following the floor, captions with name,
  venue and level, all audio mixed, MP4 chapters) is made by the RQ worker,
  never in the media process; progress is in Redis (``keys.recording_render``).
"""

from .archive_index import ArchiveIndex
from .cli_progress import RenderFailed, render_and_watch
from .config import RecordingConfig
from .errors import ArchiveUnavailable, RecordingConflict, RecordingNotFound
from .jobs import QUEUE_NAME, RenderQueue, render_job, requeue_abandoned, run_worker
from .models import (
    Manifest,
    RecordingDetail,
    RecordingInfo,
    RecordingList,
    RecordingSummary,
    RenderStatus,
)
from .service import RecordingService
from .track_recorder import TrackRecorder

__all__ = [
    "QUEUE_NAME",
    "ArchiveIndex",
    "ArchiveUnavailable",
    "Manifest",
    "RecordingConfig",
    "RecordingConflict",
    "RecordingDetail",
    "RecordingInfo",
    "RecordingList",
    "RecordingNotFound",
    "RecordingService",
    "RecordingSummary",
    "RenderFailed",
    "RenderQueue",
    "RenderStatus",
    "TrackRecorder",
    "render_and_watch",
    "render_job",
    "requeue_abandoned",
    "run_worker",
]
