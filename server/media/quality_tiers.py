"""Per-receiver video quality: how much video one subscriber's link can take.

Each publisher may send its camera twice (two tracks: a high and a low
encoding; aiortc cannot receive simulcast). Each subscriber has one video
"slot" per publisher, fed from the high encoding, the low one, or nothing:

* the spotlight (the floor holder or whom the receiver pinned) gets the high
  encoding, every other tile the low one, and a receiver whose tile area is
  hidden gets no tile video at all (:func:`slot_encoding`);
* a :class:`ReceiverQuality` per subscriber lowers that by one *level* at a
  time when its link is weak — ``FULL`` (spotlight high) → ``REDUCED``
  (spotlight low) → ``AUDIO_ONLY`` (no video) — and raises it again when the
  link has been clean for a while, with hysteresis.

The inputs are what the receiver tells us about its link: RTCP receiver
reports (fraction lost, interarrival jitter) of every stream we send it, and
its REMB estimate. A decision only ever changes what *this* receiver gets.

This module is pure: it reads no clock and does no I/O (times are passed in),
so its behaviour is unit-tested without a network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

#: What a slot forwards.
Encoding = Literal["high", "low", "off"]

#: Levels of a receiver's link, best first.
FULL = 0
REDUCED = 1
AUDIO_ONLY = 2
LEVEL_NAMES = ("full", "reduced", "audio_only")


@dataclass(frozen=True)
class TierThresholds:
    """When a receiver steps down and up (see :class:`ReceiverQuality`)."""

    #: Reports older than this many seconds no longer count.
    window: float = 2.0
    #: Mean fraction lost over the window at or above which the link is weak.
    down_loss: float = 0.08
    #: Mean fraction lost over the window at or below which the link is clean.
    up_loss: float = 0.02
    #: Interarrival jitter (seconds) at or above which the link is weak (with loss above
    #: ``up_loss``; alone it only holds the level). Below half of it, the link is clean.
    down_jitter: float = 0.12
    #: At least this many seconds between a level change reaching the receiver and the
    #: next change (a step must show its effect). A step that waits for a keyframe of the
    #: encoding it switches to reaches the receiver with that keyframe, or is taken to
    #: have reached it after one ``hold`` of waiting.
    hold: float = 2.0
    #: Seconds of clean reports before stepping up one level.
    up_after: float = 6.0
    #: A step up that fails (a step down within ``up_after``) doubles the wait, up to this.
    max_up_after: float = 60.0
    #: The receiver's REMB estimate below this share of what we send it, for
    #: ``remb_hold`` seconds on end, with loss above ``up_loss``, means its link cannot
    #: take what it gets; short of it alone, it only holds the level. REMB alone says
    #: little: a receiver estimates near what it receives (a quiet picture gives a low
    #: estimate) and an estimate starts low and ramps up.
    remb_share: float = 0.3
    remb_hold: float = 6.0

    def __post_init__(self) -> None:
        if not (0 <= self.up_loss < self.down_loss <= 1):
            raise ValueError("need 0 <= up_loss < down_loss <= 1")
        if self.window <= 0 or self.hold < 0 or self.up_after <= 0 or self.down_jitter <= 0:
            raise ValueError("tier windows and thresholds must be positive")
        if self.max_up_after < self.up_after:
            raise ValueError("max_up_after must be >= up_after")
        if not 0 < self.remb_share <= 1 or self.remb_hold < 0:
            raise ValueError("remb_share must be in (0, 1], remb_hold >= 0")


#: Reports a receiver's window keeps at most (a receiver flooding reports judges itself
#: on its latest ones).
MAX_SAMPLES = 256


class ReceiverQuality:
    """The level of one receiver's link, from its reports over time.

    Feed it :meth:`observe_report` (per RTCP report block) and
    :meth:`observe_remb`; each returns the new level when it changed, else None.
    """

    def __init__(self, thresholds: TierThresholds, now: float) -> None:
        self._t = thresholds
        self.level = FULL
        # The reports in the window, oldest first (at most MAX_SAMPLES): their times and
        # fractions lost, and the losses' sum; and, for the largest jitter, the reports
        # whose jitter no later one reaches: their numbers and jitters. Each report is
        # judged in constant time: a receiver sends one per stream it gets, ~20 a second.
        # Parallel deques of numbers, not of tuples: a node keeps thousands of reports
        # in its windows, and tuples living that long are what the cyclic collector's
        # young collections walk (milliseconds of stopped event loop; gc_policy.py).
        self._sample_times: deque[float] = deque()
        self._sample_losses: deque[float] = deque()
        self._loss_sum = 0.0
        self._peak_reports: deque[int] = deque()
        self._peak_jitters: deque[float] = deque()
        self._reports = 0
        #: When the last report was judged (None: none yet).
        self._last_report_at: float | None = None
        #: Since when the receiver's REMB says it gets more than its link carries.
        self._remb_short_since: float | None = None
        #: Why the last step down happened (for logs): "loss", "jitter" or "remb".
        self.reason = ""
        self._last_change = now
        #: When the last change reached the receiver (None: it waits for a keyframe).
        self._effective_at: float | None = now
        self._clean_since: float | None = now
        self._last_up: float | None = None
        self._up_after = thresholds.up_after
        #: Level changes so far (down, up), for stats.
        self.steps_down = 0
        self.steps_up = 0

    @property
    def up_after(self) -> float:
        """The current clean time needed to step up (grows after failed steps up)."""
        return self._up_after

    def step_pending(self) -> None:
        """The change just made reaches the receiver only at a keyframe of the encoding it
        switches to (the publisher's answer to a keyframe request): until
        :meth:`step_took_effect`, the receiver still gets what it had, and the hold
        before the next change has not started (it starts after one ``hold`` of waiting
        at the latest)."""
        self._effective_at = None

    def step_took_effect(self, now: float) -> None:
        """The pending change reached the receiver now: the hold before the next change,
        and the reports that judge it, start here."""
        if self._effective_at is None:
            self._effective_at = now
            self._forget_samples()
            self._remb_short_since = None

    def observe_report(self, now: float, fraction_lost: float, jitter: float) -> int | None:
        """One report block: fraction lost (0..1) and jitter (seconds) since the last one."""
        loss, jitter = min(max(fraction_lost, 0.0), 1.0), max(jitter, 0.0)
        times, losses = self._sample_times, self._sample_losses
        times.append(now)
        losses.append(loss)
        self._loss_sum += loss
        if len(times) > MAX_SAMPLES:
            times.popleft()
            self._loss_sum -= losses.popleft()
        peak_reports, peak_jitters = self._peak_reports, self._peak_jitters
        while peak_jitters and peak_jitters[-1] <= jitter:
            peak_reports.pop()
            peak_jitters.pop()
        peak_reports.append(self._reports)
        peak_jitters.append(jitter)
        self._reports += 1
        self._last_report_at = now
        return self._evaluate(now)

    def observe_quiet(self, now: float) -> int | None:
        """Called now and then (the room's tick): a level below full with no report to
        judge for ``up_after`` seconds steps up one level, as a probe. Nothing flows to
        such a receiver (audio only in a room where no microphone sends, every video
        paused), so nothing would ever say its link is clean; and nothing says it is
        weak. A probe that fails steps down again and doubles the wait, as any step up."""
        if self.level == FULL:
            return None
        quiet_since = max(self._last_change, self._last_report_at or self._last_change)
        if now - quiet_since < self._up_after or not self._held(now):
            return None
        return self._step_up(now)

    def observe_remb(self, now: float, bitrate: int, sending: int) -> int | None:
        """The receiver's estimate of what its link carries (bit/s), against what we
        send it now (bit/s, measured by the caller)."""
        if sending > 0 and bitrate < self._t.remb_share * sending:
            if self._remb_short_since is None:
                self._remb_short_since = now
        else:
            self._remb_short_since = None
        return self._evaluate(now)

    def _evaluate(self, now: float) -> int | None:
        t = self._t
        times, losses = self._sample_times, self._sample_losses
        peak_reports, peak_jitters = self._peak_reports, self._peak_jitters
        oldest = now - t.window
        while times and times[0] < oldest:
            times.popleft()
            self._loss_sum -= losses.popleft()
        first_kept = self._reports - len(times)
        while peak_reports and peak_reports[0] < first_kept:
            peak_reports.popleft()
            peak_jitters.popleft()
        # Without recent reports only REMB can tell (and nothing says the link is clean).
        samples = bool(times)
        if samples:
            loss = max(self._loss_sum, 0.0) / len(times)
            jitter = peak_jitters[0]
        else:
            self._loss_sum = 0.0  # no rounding left over from the reports gone
            loss = jitter = 0.0
        remb_short = (
            self._remb_short_since is not None and now - self._remb_short_since >= t.remb_hold
        )
        level = self.level
        # A step is judged from when it reached the receiver: a receiver whose switch to
        # the low encoding still waits for its keyframe must not be stepped down again
        # before it has had the low encoding for a while.
        held = self._held(now)
        # High jitter or a short REMB alone is no verdict. Jitter includes the publisher's
        # own irregular timing (a busy encoder), and after a step up a receiver's estimate
        # lags what it now gets (it grows ~8 %/s). With some loss besides, the link is full.
        some_loss = loss > t.up_loss
        weak = loss >= t.down_loss or ((jitter >= t.down_jitter or remb_short) and some_loss)
        clean = samples and loss <= t.up_loss and jitter < t.down_jitter / 2 and not remb_short
        if weak:
            self.reason = (
                f"loss {loss:.0%}"
                if loss >= t.down_loss
                else f"jitter {jitter * 1000:.0f} ms"
                if jitter >= t.down_jitter
                else "remb"
            )
        if weak:
            self._clean_since = None
            if level < AUDIO_ONLY and held:
                if self._last_up is not None and now - self._last_up < self._up_after:
                    # The link could not take the level we just went back to: wait longer.
                    self._up_after = min(self._up_after * 2, t.max_up_after)
                self._set(level + 1, now)
                self.steps_down += 1
                return self.level
            return None
        if not clean:
            self._clean_since = None
            return None
        if self._clean_since is None:
            self._clean_since = now
        if level > FULL and now - self._clean_since >= self._up_after and held:
            return self._step_up(now)
        if self._last_up is not None and now - self._last_up >= self._up_after:
            self._up_after = t.up_after  # the step up held: back to the quick wait
            self._last_up = None
        return None

    def _held(self, now: float) -> bool:
        """The last change has been in effect for a ``hold`` (one that waits for its
        keyframe counts from one ``hold`` after it was made, at the latest)."""
        effective = self._effective_at
        if effective is None:
            effective = self._last_change + self._t.hold
        return now - effective >= self._t.hold

    def _step_up(self, now: float) -> int:
        self._set(self.level - 1, now)
        self._last_up = now
        self._clean_since = now  # the next step up needs its own clean time
        self.steps_up += 1
        return self.level

    def _set(self, level: int, now: float) -> None:
        self.level = level
        self._last_change = now
        self._effective_at = now  # unless the caller says it waits (step_pending)
        # Reports describing the old level do not judge the new one.
        self._forget_samples()
        self._remb_short_since = None

    def _forget_samples(self) -> None:
        self._sample_times.clear()
        self._sample_losses.clear()
        self._peak_reports.clear()
        self._peak_jitters.clear()
        self._loss_sum = 0.0


def slot_encoding(*, level: int, spotlight: bool, tiles_visible: bool, has_low: bool) -> Encoding:
    """What one receiver's slot for one publisher forwards.

    A publisher that sends a single encoding (an older client, a test peer)
    is sent in it wherever the low one would go: everyone gets that one.
    """
    if level >= AUDIO_ONLY:
        return "off"
    if spotlight:
        wanted: Encoding = "high" if level == FULL else "low"
    elif not tiles_visible:
        return "off"
    else:
        wanted = "low"
    if wanted == "low" and not has_low:
        return "high"
    return wanted


#: Caps (bit/s) a lossy publisher's high encoding steps through; None: no cap.
UPLINK_CAPS: tuple[int | None, ...] = (None, 1_000_000, 600_000, 350_000, 200_000)


class PublisherUplink:
    """The cap on one publisher's high encoding, from the loss of its uplink.

    Fed the publisher's packets expected and received (RTP sequence numbers, as
    the server's receiver counts them) at intervals; a lossy interval lowers the
    cap one step, ``clean_after`` seconds without loss raise it one step.
    """

    def __init__(
        self, *, down_loss: float = 0.05, up_loss: float = 0.01, clean_after: float = 10.0
    ) -> None:
        self._down_loss = down_loss
        self._up_loss = up_loss
        self._clean_after = clean_after
        self._step = 0
        self._last: tuple[int, int] | None = None
        self._clean_since: float | None = None

    @property
    def cap(self) -> int | None:
        """The bitrate cap the publisher should apply (None: none)."""
        return UPLINK_CAPS[self._step]

    def observe(self, now: float, expected: int, received: int) -> bool:
        """Counts since the start; True if :attr:`cap` changed."""
        last, self._last = self._last, (expected, received)
        if last is None:
            self._clean_since = now
            return False
        d_expected = expected - last[0]
        if d_expected < 20:
            return False  # too few packets to judge (or a restarted stream)
        loss = max(0.0, 1.0 - (received - last[1]) / d_expected)
        if loss >= self._down_loss:
            self._clean_since = None
            if self._step < len(UPLINK_CAPS) - 1:
                self._step += 1
                return True
            return False
        if loss > self._up_loss:
            self._clean_since = None
            return False
        if self._clean_since is None:
            self._clean_since = now
        if self._step > 0 and now - self._clean_since >= self._clean_after:
            self._step -= 1
            self._clean_since = now
            return True
        return False
