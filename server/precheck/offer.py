"""Checking a probe's offer before aiortc sees it: data channels only, small, well formed."""

from __future__ import annotations

import re

from aiortc import sdp as aiortc_sdp

from server.media.errors import MediaError

#: A data-channel offer with its candidates is a few kilobytes at most.
MAX_OFFER_BYTES = 16 * 1024
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_probe_offer(text: str) -> str:
    """The offer's text if it has exactly one data-channel section; MediaError("bad_sdp")."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_OFFER_BYTES:
        raise MediaError("bad_sdp", f"the offer is {size} bytes, the limit is {MAX_OFFER_BYTES}")
    if not text.startswith("v=0") or _CONTROL_RE.search(text):
        raise MediaError("bad_sdp", "the offer is not an SDP description")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception:  # aiortc's parser raises assorted errors (and asserts)
        raise MediaError("bad_sdp", "the offer could not be parsed") from None
    media = description.media
    if len(media) != 1 or media[0].kind != "application" or media[0].sctp_port is None:
        raise MediaError("bad_sdp", "a probe offers one data-channel section and nothing else")
    section = media[0]
    if section.ice is None or not section.ice.usernameFragment or not section.ice.password:
        raise MediaError("bad_sdp", "the offer has no ICE credentials")
    if section.dtls is None or not section.dtls.fingerprints:
        raise MediaError("bad_sdp", "the offer has no DTLS fingerprint")
    return text
