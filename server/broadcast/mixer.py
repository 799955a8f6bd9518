"""Mixes the publishers' decoded audio into the broadcast's one stereo track.

Each track's samples go into its own short buffer as they are decoded; the
worker takes one tick's worth from every buffer and sums them. A buffer that
runs dry contributes silence (and waits for a little audio before it plays
again, so a jittery track does not crackle); one that runs ahead is trimmed,
so a burst after a stall never adds lasting delay.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RATE = 48000
#: A track plays again after an underrun once this much audio waits (seconds).
PRIME = 0.06
#: More than this waiting (seconds) is trimmed to PRIME: the broadcast stays near real time.
MAX_BACKLOG = 0.4

Samples = npt.NDArray[np.float32]


class TrackBuffer:
    """One track's decoded audio, stereo float32 at 48 kHz."""

    def __init__(self) -> None:
        self._chunks: list[Samples] = []
        self._size = 0
        self._playing = False

    @property
    def size(self) -> int:
        """Samples waiting."""
        return self._size

    def push(self, samples: Samples) -> None:
        """Append decoded samples (shape (2, n))."""
        self._chunks.append(samples)
        self._size += samples.shape[1]
        if self._size > MAX_BACKLOG * RATE:
            self._drop(self._size - int(PRIME * RATE))

    def take(self, count: int) -> Samples | None:
        """`count` samples, or None while the track is silent or priming."""
        if not self._playing:
            if self._size < PRIME * RATE:
                return None
            self._playing = True
        if self._size < count:
            self._playing = False
            return None
        joined = np.concatenate(self._chunks, axis=1) if len(self._chunks) > 1 else self._chunks[0]
        taken, rest = joined[:, :count], joined[:, count:]
        self._chunks = [rest] if rest.shape[1] else []
        self._size = rest.shape[1]
        return taken

    def _drop(self, count: int) -> None:
        joined = np.concatenate(self._chunks, axis=1)[:, count:]
        self._chunks = [joined]
        self._size = joined.shape[1]


class AudioMixer:
    """Sums the tracks' buffers, one tick at a time."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackBuffer] = {}

    def push(self, slot: int, samples: Samples) -> None:
        """Decoded samples of the track in `slot`."""
        self.tracks.setdefault(slot, TrackBuffer()).push(samples)

    def keep(self, slots: set[int]) -> None:
        """Forget tracks no longer in the programme."""
        for slot in list(self.tracks):
            if slot not in slots:
                del self.tracks[slot]

    def mix(self, count: int, *, silent: bool = False) -> Samples:
        """The next `count` samples of the mix (silence while `silent`, the buffers drained)."""
        out = np.zeros((2, count), dtype=np.float32)
        for buffer in self.tracks.values():
            taken = buffer.take(count)
            if taken is not None and not silent:
                out += taken
        np.clip(out, -1.0, 1.0, out=out)
        return out
