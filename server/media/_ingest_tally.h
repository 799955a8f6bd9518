/*
 * A load-test receiver's tally: what one received track delivered, in C.
 *
 * The load tool's subscribers count what the server sends them and never decode
 * (server/loadtest/receiver_stats.py). Counted on Python objects, each packet cost a
 * client some thirty dictionary reads and writes (the counter's, aiortc's receiver
 * statistics', the router's), and the clients, not the server, set the largest
 * session the load test could show. A Tally keeps both in one struct:
 *
 *   - the counting of `TrackCounter` (packets, bytes, the extended highest sequence
 *     number, frames, freezes): `tally_count`, a port of the Python reference
 *     `Tally.count` in receiver_stats.py;
 *   - aiortc's `StreamStatistics.add` (the receiver-report figures: base and highest
 *     sequence number, cycles, packets received, jitter): `tally_add_statistics`,
 *     whose Python view `TalliedStatistics` stands in the receiver's statistics, so
 *     that aiortc's receiver reports read them.
 *
 * A direct ingest's Path counts a registered SSRC's packets straight into its Tally
 * (see Path's tally table in _ingest.c). Included by _ingest.c only.
 */

typedef struct {
    PyObject_HEAD
    char is_video, is_audio;
    /* TrackCounter */
    long long packets, bytes, frames, freezes, first_seq, highest;
    double frozen_seconds, interval_sum, first_frame_at, last_frame_at;
    char has_first_seq, has_first_frame, has_last_frame;
    /* packets counted by a Path's tally table (no Python object touched) */
    long long tallied;
    /* StreamStatistics (aiortc/rtcrtpreceiver.py) */
    long long clockrate, base_seq, max_seq, cycles, packets_received, jitter_q4, last_arrival,
        last_timestamp;
    char has_base_seq, has_max_seq, has_last;
} Tally;

static PyTypeObject TallyType;

/* Tally.count (TrackCounter's count_rtp, _count_sequence and _frame): one packet whose
 * frame, if it ends one (a marker; every audio packet), came at `now` (monotonic). */
static void
tally_count(Tally *t, long seq, int marker, Py_ssize_t payload_size, double now)
{
    t->packets += 1;
    t->bytes += payload_size + 12;
    if (!t->has_first_seq) {
        t->first_seq = t->highest = seq;
        t->has_first_seq = 1;
    }
    else {
        /* Python's % is never negative: (seq - highest + 0x8000) % 0x10000 */
        long long delta = ((long long)seq - t->highest + 0x8000) % 0x10000;
        if (delta < 0)
            delta += 0x10000;
        long long extended = t->highest + delta - 0x8000;
        if (extended > t->highest)
            t->highest = extended;
    }
    if (!(marker || t->is_audio))
        return;
    t->frames += 1;
    if (!t->has_first_frame) {
        t->first_frame_at = now;
        t->has_first_frame = 1;
    }
    if (t->has_last_frame && t->is_video) {
        double gap = now - t->last_frame_at;
        if (t->frames > 2) {
            double average = t->interval_sum / (double)(t->frames - 2);
            double limit = 3 * average > average + 0.150 ? 3 * average : average + 0.150;
            if (gap > limit) {
                t->freezes += 1;
                t->frozen_seconds += gap;
            }
        }
        t->interval_sum += gap;
    }
    t->last_frame_at = now;
    t->has_last_frame = 1;
}

/* StreamStatistics.add for a packet that arrived at `now` (time.time()). */
static void
tally_add_statistics(Tally *t, long seq, unsigned long timestamp, double now)
{
    int in_order = !t->has_max_seq || ((seq > t->max_seq && seq - t->max_seq < 0x8000) ||
                                       (seq < t->max_seq && t->max_seq - seq > 0x8000));
    t->packets_received += 1;
    if (!t->has_base_seq) {
        t->base_seq = seq;
        t->has_base_seq = 1;
    }
    if (!in_order)
        return;
    long long arrival = (long long)(now * (double)t->clockrate);
    if (t->has_max_seq && seq < t->max_seq)
        t->cycles += 1 << 16;
    t->max_seq = seq;
    t->has_max_seq = 1;
    if ((!t->has_last || (long long)timestamp != t->last_timestamp) && t->packets_received > 1) {
        long long diff = (arrival - t->last_arrival) - ((long long)timestamp - t->last_timestamp);
        if (diff < 0)
            diff = -diff;
        t->jitter_q4 += diff - ((t->jitter_q4 + 8) >> 4);
    }
    t->last_arrival = arrival;
    t->last_timestamp = (long long)timestamp;
    t->has_last = 1;
}

static int
Tally_init(Tally *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", NULL};
    const char *kind;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s:Tally", kwlist, &kind))
        return -1;
    t->is_audio = strcmp(kind, "audio") == 0;
    t->is_video = strcmp(kind, "video") == 0;
    return 0;
}

static PyObject *
Tally_count(Tally *t, PyObject *args)
{
    long seq;
    int marker;
    Py_ssize_t size;
    double now;
    if (!PyArg_ParseTuple(args, "lpnd:count", &seq, &marker, &size, &now))
        return NULL;
    tally_count(t, seq & 0xFFFF, marker, size, now);
    Py_RETURN_NONE;
}

static PyObject *
Tally_add_statistics(Tally *t, PyObject *args)
{
    long seq;
    unsigned long timestamp;
    double now;
    if (!PyArg_ParseTuple(args, "lkd:add_statistics", &seq, &timestamp, &now))
        return NULL;
    tally_add_statistics(t, seq & 0xFFFF, timestamp & 0xFFFFFFFFUL, now);
    Py_RETURN_NONE;
}

static PyMethodDef Tally_methods[] = {
    {"count", (PyCFunction)Tally_count, METH_VARARGS,
     "count(sequence_number, marker, payload_size, now): one packet (TrackCounter's counting)."},
    {"add_statistics", (PyCFunction)Tally_add_statistics, METH_VARARGS,
     "add_statistics(sequence_number, timestamp, now): StreamStatistics.add, `now` as time.time()."},
    {NULL}};

#define TALLY_MEMBER(name, type, doc) {#name, type, offsetof(Tally, name), 0, doc}
static PyMemberDef Tally_members[] = {
    TALLY_MEMBER(packets, T_LONGLONG, "Packets counted."),
    TALLY_MEMBER(bytes, T_LONGLONG, "Payload bytes counted, plus 12 per packet."),
    TALLY_MEMBER(frames, T_LONGLONG, "Frames (video: marker bits; audio: packets)."),
    TALLY_MEMBER(freezes, T_LONGLONG, "Gaps between frames WebRTC counts as freezes."),
    TALLY_MEMBER(frozen_seconds, T_DOUBLE, "Their total length."),
    TALLY_MEMBER(interval_sum, T_DOUBLE, "Sum of the gaps between frames."),
    TALLY_MEMBER(first_seq, T_LONGLONG, "The first sequence number (if has_first_seq)."),
    TALLY_MEMBER(highest, T_LONGLONG, "The extended highest sequence number (if has_first_seq)."),
    TALLY_MEMBER(has_first_seq, T_BOOL, "Whether a packet was counted."),
    TALLY_MEMBER(first_frame_at, T_DOUBLE, "When the first frame came (if has_first_frame)."),
    TALLY_MEMBER(has_first_frame, T_BOOL, "Whether a frame was counted."),
    TALLY_MEMBER(last_frame_at, T_DOUBLE, "When the last frame came (if has_last_frame)."),
    TALLY_MEMBER(has_last_frame, T_BOOL, "Whether a frame was counted."),
    TALLY_MEMBER(tallied, T_LONGLONG, "Packets a Path counted here from its tally table."),
    TALLY_MEMBER(clockrate, T_LONGLONG, "The codec's clock rate (statistics; set by the view)."),
    TALLY_MEMBER(base_seq, T_LONGLONG, "StreamStatistics.base_seq (if has_base_seq)."),
    TALLY_MEMBER(has_base_seq, T_BOOL, "Whether base_seq is set."),
    TALLY_MEMBER(max_seq, T_LONGLONG, "StreamStatistics.max_seq (if has_max_seq)."),
    TALLY_MEMBER(has_max_seq, T_BOOL, "Whether max_seq is set."),
    TALLY_MEMBER(cycles, T_LONGLONG, "StreamStatistics.cycles."),
    TALLY_MEMBER(packets_received, T_LONGLONG, "StreamStatistics.packets_received."),
    TALLY_MEMBER(jitter_q4, T_LONGLONG, "StreamStatistics._jitter_q4."),
    TALLY_MEMBER(last_arrival, T_LONGLONG, "StreamStatistics._last_arrival (if has_last)."),
    TALLY_MEMBER(last_timestamp, T_LONGLONG, "StreamStatistics._last_timestamp (if has_last)."),
    TALLY_MEMBER(has_last, T_BOOL, "Whether last_arrival and last_timestamp are set."),
    {NULL}};
#undef TALLY_MEMBER

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._ingest.Tally",
    .tp_doc = "Tally(kind): a load-test receiver's counting and receiver statistics "
              "for one track (server/media/_ingest_tally.h).",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tally_init,
    .tp_methods = Tally_methods,
    .tp_members = Tally_members,
};
