"""A session's whole record as one ZIP file, with a checksum list.

The archive holds, under a folder named after the recording: the manifest,
every per-track file and the combined video (stored as they are: they are
compressed already), the minutes draft (DOCX and Markdown), the attendance as
CSV, the whole record as JSON, and ``SHA256SUMS`` listing every other member
in ``sha256sum -c`` format. Checksums are computed while the files are copied,
so they describe exactly what is in the archive.

The ZIP is written to an anonymous temporary file in the recordings folder
(no second copy is ever visible there, and it vanishes when closed, even if
the process dies) and streamed from it.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from pathlib import Path
from typing import IO

from server.rooms.models import Suggestion

from .attendance import attendance_csv
from .models import MANIFEST_NAME, Manifest
from .session_record import session_record
from .session_source import from_manifest

SUMS_NAME = "SHA256SUMS"
_CHUNK = 1 << 20


def export_members(manifest: Manifest) -> list[str]:
    """The recording's own files that go into the export (those that exist without error)."""
    names = [f.name for f in manifest.files if f.error is None]
    if manifest.combined is not None:
        names.append(manifest.combined.name)
    return names


def write_export(
    manifest: Manifest,
    directory: Path,
    scratch: Path,
    suggestions: list[Suggestion] | None = None,
) -> IO[bytes]:
    """Write the export ZIP of a stopped recording; returns it open, positioned at 0.

    ``scratch`` is where the anonymous temporary file lives (the recordings folder,
    so a large export uses the archive's disk, not /tmp). ``suggestions``: those the
    room keeps, with their handling (see ``session_record.room_suggestions``).
    """
    from .minutes import minutes_docx, minutes_markdown  # python-docx takes ~1 s to import

    record = session_record(from_manifest(manifest), suggestions)
    generated = {
        "minutes.docx": minutes_docx(record),
        "minutes.md": minutes_markdown(record).encode("utf-8"),
        "attendance.csv": attendance_csv(record.attendance).encode("utf-8"),
        "record.json": record.model_dump_json(indent=2).encode("utf-8"),
    }
    root = manifest.id
    sums: list[str] = []
    # Returned open to the caller, who closes it (it is anonymous: nothing to clean up).
    out = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115
    try:
        with zipfile.ZipFile(out, "w", allowZip64=True) as archive:
            for name in [MANIFEST_NAME, *export_members(manifest)]:
                path = directory / name
                if not path.is_file():
                    continue
                digest = hashlib.sha256()
                info = zipfile.ZipInfo.from_file(path, f"{root}/{name}")
                info.compress_type = (
                    zipfile.ZIP_DEFLATED if name == MANIFEST_NAME else zipfile.ZIP_STORED
                )
                with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as sink:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
                sums.append(f"{digest.hexdigest()}  {name}")
            for name, content in generated.items():
                archive.writestr(f"{root}/{name}", content, compress_type=zipfile.ZIP_DEFLATED)
                sums.append(f"{hashlib.sha256(content).hexdigest()}  {name}")
            archive.writestr(f"{root}/{SUMS_NAME}", "\n".join(sums) + "\n")
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise
