"""A remote description's candidates, put where aiortc reads them for a BUNDLE group.

A browser's offer (bundle policy "balanced", Chromium's default) gathers one
transport per m-line and lists each m-line's own candidates; once BUNDLE is
agreed, only the transport of the group's first ("tagged") m-line is used
(RFC 8843). aiortc 1.16 gives the shared transport the candidates of the *last*
m-line of the group instead (`iceCandidates[iceTransport] = media` in
`setRemoteDescription`). So the server knew none of the addresses the browser
sends from: every check it answered taught it a peer-reflexive (`prflx`)
candidate, and the control room could not tell a venue's direct path from one
through a TURN relay. An answer that lists candidates on its first m-line only
(bundle-only sections) gave the server no candidates at all.

:func:`bundle_remote_candidates` rewrites the SDP text before aiortc sees it:
every m-line of the group carries the tagged m-line's candidates (and its
end-of-candidates), which is what a max-bundle peer would have sent. Nothing
changes for a description without a BUNDLE group, or whose tagged m-line lists
no candidates (they come by trickle then, addressed to the first transceiver).
"""

from __future__ import annotations

_CANDIDATE = "a=candidate:"
_END = "a=end-of-candidates"


def bundle_remote_candidates(text: str) -> str:
    """`text` with the BUNDLE-tagged m-line's candidates on every m-line of its group."""
    lines = text.splitlines()
    group: list[str] = []
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    for line in lines[: starts[0] if starts else len(lines)]:
        if line.startswith("a=group:BUNDLE"):
            group = line.split()[1:]
            break
    if not group or not starts:
        return text
    sections = [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]
    mids = [_mid(section) for section in sections]
    tagged = next((sections[mids.index(m)] for m in group if m in mids), None)
    if tagged is None:
        return text
    shared = [line for line in tagged if line.startswith((_CANDIDATE, _END))]
    if not any(line.startswith(_CANDIDATE) for line in shared):
        return text
    out = lines[: starts[0]]
    for section, mid in zip(sections, mids, strict=True):
        if mid in group and section is not tagged:
            kept = [line for line in section if not line.startswith((_CANDIDATE, _END))]
            section = [*kept, *shared]
        out.extend(section)
    return "\r\n".join(out) + "\r\n"


def _mid(section: list[str]) -> str | None:
    for line in section:
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None
