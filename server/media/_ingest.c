/*
 * The direct ingest's steady state in C: one call per datagram from a
 * publisher (see docs/forwarding.md, *Ingest*, and DirectIngest in
 * server/media/aiortc_internals.py).
 *
 * Why C: receiving one 640x480 VP8 publisher (~250 packets/s) cost ~150 us of
 * CPU per packet in the Python direct ingest on this machine -- unprotect,
 * parse, REMB estimator, statistics, NACK generator, payload check, each a few
 * us when hot but ~3x that at 250 wake-ups a second, when every packet finds
 * the interpreter's caches cold. A C SFU pays a few us for the same steps.
 *
 * Path.receive(data, component) is installed as the aioice connection's
 * data_received. It repeats, on the same objects, what DirectIngest does in
 * Python -- which stays the reference -- for the common case only:
 *
 *   - RTP on component 1 of a connected DTLS transport with nothing queued in
 *     aioice, from the SRTP session the path was given: unprotect (libsrtp's
 *     srtp_unprotect through pylibsrtp's cffi module, as _fanout.c protects),
 *     parse the RTP header and one-byte header extensions (RtpPacket.parse
 *     and HeaderExtensionsMap.get), route by SSRC (RtpRouter.route_rtp's
 *     known-SSRC case), then RTCRtpReceiver._handle_rtp_packet on the
 *     receiver's own attributes: the REMB estimator (the C Estimator of
 *     _ingest_estimator.h, which the receiver holds in aiortc's place), the
 *     active sources, StreamStatistics.add, the NACK generator when nothing
 *     is missing, the VP8 payload-descriptor check, and the jitter buffer's
 *     add (our PacketTap, which forwards) with an RtpPacket built here.
 *
 * Everything else is handed to DirectIngest's Python methods, before this has
 * changed anything they would change again: aiortc's queue (DTLS, anything
 * while the queue is not empty or before the transport is connected), RTCP,
 * a new SRTP session, a packet with CSRCs, padding, two-byte or malformed
 * header extensions (_handle_decrypted, after unprotect), an SSRC not routed
 * yet, a receiver not told about, an RTX or H.264 packet, a new stream, a
 * packet after a gap or while packets are missing (_handle_packet).
 * The REMB, NACK and PLI that are due are sent by Python (_send_remb,
 * _after_jitter). Nothing raised reaches aioice: a failure is handed to
 * _report_failure and the packet dropped.
 *
 * Reader is the socket's reader callback (in place of asyncio's _read_ready),
 * and wait() the event loop's epoll wait that runs Readers in place
 * (server/media/event_loop.py), so that a publisher's datagrams need no turn
 * of the loop's Python.
 *
 * Single-threaded: called with the GIL held, from the event loop (wait()
 * releases it while it waits).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "_forward_delay.h"
#include "_socket_address.h"
#include "_ingest_estimator.h"
#include "_ingest_tally.h"

/* pylibsrtp's session buffer is 1500 bytes; DirectIngest drops longer SRTP. */
#define SRTP_MAX_PACKET 1500
#define RTP_HEADER_LENGTH 12
/* Milliseconds from the NTP epoch (1900) to the Unix epoch: aiortc's clock counts from 1900. */
#define NTP_UNIX_OFFSET_MS 2208988800000LL
/* How stale the "last packet from this source" time may be (as DirectIngest). */
#define SOURCE_TIME_RESOLUTION_MS 10
/* Codecs whose kind a path remembers: a publisher's audio, video and their RTX; a
 * load-test subscriber's connection has two media codecs and an RTX per publisher
 * it receives, each its own object (a smaller cache missed on every packet there). */
#define CODEC_CACHE 96
/* SSRCs a Path counts into load-test tallies, at most (more go the usual way) */
#define TALLY_TABLE 128

typedef int (*srtp_unprotect_fn)(void *ctx, void *srtp_hdr, int *len_ptr);

enum { KIND_UNKNOWN = 0, KIND_PLAIN, KIND_VP8, KIND_H264, KIND_RTX };

/* What the one-byte header extensions carried (HeaderExtensionsMap.get). */
typedef struct {
    /* the string values, checked but decoded only when an RtpPacket is built */
    const unsigned char *mid, *repaired_rtp_stream_id, *rtp_stream_id; /* NULL: absent */
    Py_ssize_t mid_len, repaired_rtp_stream_id_len, rtp_stream_id_len;
    int has_abs_send_time, has_transmission_offset, has_audio_level, has_transport_sequence_number;
    long abs_send_time, transmission_offset, transport_sequence_number;
    int audio_level_voice, audio_level;
} Extensions;

typedef struct {
    PyObject_HEAD
    PyObject *ingest;       /* the DirectIngest (its fallbacks) */
    PyObject *dtls_vars;    /* vars(RTCDtlsTransport) */
    PyObject *queue_items;  /* aioice's asyncio.Queue's deque */
    PyObject *receivers;    /* DirectIngest._receivers: receiver -> vars(receiver) */
    PyObject *connected;    /* DtlsState.CONNECTED */
    PyObject *queued;       /* aiortc's path: the connection's own data_received */
    /* SRTP */
    PyObject *session; /* the pylibsrtp Session (keeps `srtp` alive), or NULL */
    srtp_unprotect_fn unprotect;
    void *srtp;
    unsigned char buffer[SRTP_MAX_PACKET];
    /* the last source time (a datetime; see DirectIngest._source_time) */
    PyObject *source_time;
    long long source_time_ms;
    /* the codecs seen last and their kinds: one transport carries audio and video
     * (and their receivers' codec objects), so one entry would flip per packet */
    PyObject *codecs[CODEC_CACHE];
    int codec_kinds[CODEC_CACHE];
    int codec_next; /* the entry replaced next */
    /* counters */
    unsigned long long packets;   /* RTP packets handled to the end here */
    unsigned long long fallbacks; /* RTP packets handed to Python */
    unsigned long long forwarded; /* packets whose forwarding (on_packet's steady state) ran here */
    unsigned long long dropped;   /* empty or too-long datagrams */
    /* SSRCs whose packets are counted straight into a load-test receiver's Tally
     * (registered by counter_take; see handle_rtp) */
    struct {
        unsigned int ssrc;
        int payload_type;
        Tally *tally;
    } tallies[TALLY_TABLE];
    int n_tallies;
} Path;

static PyTypeObject EstimatorType;
static PyTypeObject PathType;

/* RtpPacket and HeaderExtensions (set by configure()) */
static PyObject *rtp_packet_type, *header_extensions_type;
/* PacketTap, TrackForwarder.on_packet, fanout.forward and AudioLevelMeter (set by
 * configure_forwarding()) */
static PyObject *packet_tap_type, *forwarder_on_packet, *fanout_forward, *audio_level_meter_type;
static PyObject *empty_tuple;
/* The load tool's TrackCounter and time.monotonic (set by configure_counting()) */
static PyObject *track_counter_type, *monotonic_function, *tallied_statistics_type;

/* _fanout.c's count of datagrams sent (set by configure_forwarding(); NULL: not timed) */
static unsigned long long *fanout_datagrams_sent;
static PyObject *fanout_datagrams_sent_capsule;

/*
 * The forward delay: from the kernel's receipt of a publisher's RTP packet (its
 * SO_TIMESTAMPNS time) to the end of its handling here, for each packet of which the
 * compiled fan-out sent a copy -- so the time it waited in the socket while this
 * process was busy, plus the time to send its last copy. Read by forward_delays().
 * The fan-out times each copy in the same way (copy_delays() there), told the
 * arrival through fanout_batch while the packet is handled.
 */
static DelayHistogram forward_delay;
/* _fanout.c's FanoutBatch (set by configure_forwarding(); NULL: copies are neither
 * timed nor batched) */
static FanoutBatch *fanout_batch;
static PyObject *fanout_batch_capsule;

static PyObject *s_rx_bytes, *s_rx_packets, *s_state, *s_rx_srtp, *s_ext_map, *s_ext_ids, *s_router,
    *s_ssrc_table, *s_pt_table;
static PyObject *s_enabled, *s_estimator, *s_rtcp_ssrc, *s_active_ssrc, *s_codecs, *s_streams, *s_nack,
    *s_jitter, *s_decoder_error;
static PyObject *s_mid, *s_repaired_rid, *s_rid, *s_abs_send_time, *s_toffset, *s_audio_level, *s_twcc;
static PyObject *s_base_seq, *s_max_seq, *s_cycles, *s_packets_received, *s_clockrate, *s_jitter_q4,
    *s_last_arrival, *s_last_timestamp, *s_missing, *s_flag, *s_name;
static PyObject *s_version, *s_marker, *s_payload_type, *s_sequence_number, *s_timestamp, *s_ssrc, *s_csrc,
    *s_extensions, *s_payload, *s_padding_size, *s_add;
static PyObject *s_handler, *s_packets, *s_f_ended, *s_f_pli_pending, *s_f_other_sinks, *s_f_is_video,
    *s_f_is_vp8, *s_f_packets_received, *s_f_source_ssrc, *s_f_highest_seq, *s_f_packets_expected,
    *s_f_arrival_time, *s_f_arrival_ntp, *s_f_extension_value, *s_f_frames_received, *s_f_audio_level,
    *s_m_smoothed, *s_m_last_update, *s_m_smoothing, *s_m_observe, *s_c_clock, *s_c_tally,
    *s_f_fast_streams, *s_f_fast_sinks,
    *s_f_audio_failed, *s_f_fanout_failed, *s_f_feed_pending;
static PyObject *s_handle_rtcp, *s_handle_decrypted, *s_handle_packet, *s_send_remb, *s_after_jitter,
    *s_report_failure, *s_handle_rtp;

/* ================================================================ Estimator */

static PyObject *
Estimator_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Estimator", kwlist))
        return NULL;
    Estimator *e = (Estimator *)type->tp_alloc(type, 0);
    if (e == NULL)
        return NULL;
    estimator_init_state(e);
    return (PyObject *)e;
}

static PyObject *
remb_result(Estimator *e, long long bitrate)
{
    PyObject *ssrcs = PyList_New(e->n_ssrcs);
    if (ssrcs == NULL)
        return NULL;
    for (int i = 0; i < e->n_ssrcs; i++) {
        PyObject *v = PyLong_FromUnsignedLong(e->ssrcs[i]);
        if (v == NULL) {
            Py_DECREF(ssrcs);
            return NULL;
        }
        PyList_SET_ITEM(ssrcs, i, v);
    }
    return Py_BuildValue("(LN)", bitrate, ssrcs);
}

static PyObject *
Estimator_add(Estimator *e, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"arrival_time_ms", "abs_send_time", "payload_size", "ssrc", NULL};
    long long arrival_time_ms, abs_send_time, payload_size;
    unsigned long long ssrc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LLLK:add", kwlist, &arrival_time_ms, &abs_send_time,
                                     &payload_size, &ssrc))
        return NULL;
    if (abs_send_time < 0 || abs_send_time > 0xFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "abs_send_time is 24 bits");
        return NULL;
    }
    if (ssrc > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "ssrc is 32 bits");
        return NULL;
    }
    long long bitrate;
    int status = estimator_add(e, arrival_time_ms, abs_send_time, payload_size, (unsigned int)ssrc, &bitrate);
    if (status < 0)
        return NULL;
    if (status == 0)
        Py_RETURN_NONE;
    return remb_result(e, bitrate);
}

static PyObject *
Estimator_snapshot(Estimator *e, PyObject *unused)
{
    /* What tests compare with aiortc's estimator after each packet. */
    return Py_BuildValue("{s:i,s:d,s:d,s:d,s:d,s:d,s:L,s:L,s:i,s:d,s:d}", "hypothesis", e->hypothesis, "offset",
                         e->offset, "slope", e->slope, "var_noise", e->var_noise, "avg_noise", e->avg_noise,
                         "threshold", e->threshold, "current_bitrate", e->current_bitrate, "num_of_deltas",
                         e->num_of_deltas, "rate_control_state", e->rc_state, "var_max_bitrate_kbps",
                         e->var_max_bitrate_kbps, "avg_max_bitrate_kbps",
                         e->has_avg_max ? e->avg_max_bitrate_kbps : -1.0);
}

static PyMethodDef Estimator_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Estimator_add, METH_VARARGS | METH_KEYWORDS,
     "add(arrival_time_ms, abs_send_time, payload_size, ssrc) -> (bitrate, [ssrc, ...]) or None:\n"
     "aiortc's RemoteBitrateEstimator.add."},
    {"snapshot", (PyCFunction)Estimator_snapshot, METH_NOARGS, "The estimator's state, for tests."},
    {NULL}};

static PyTypeObject EstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._ingest.Estimator",
    .tp_doc = PyDoc_STR("aiortc's RemoteBitrateEstimator (REMB), ported to C."),
    .tp_basicsize = sizeof(Estimator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Estimator_new,
    .tp_methods = Estimator_methods,
};

/* ================================================================ helpers */

static int
uint16_gt(long a, long b)
{
    const long half = 0x8000;
    return (a < b && b - a > half) || (a > b && a - b < half);
}

/* A fallback's or a callback's exception: to DirectIngest._report_failure, never further. */
static void
report_failure(Path *p)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL)
        PyException_SetTraceback(value, tb);
    PyObject *r = PyObject_CallMethodOneArg(p->ingest, s_report_failure, value ? value : Py_None);
    if (r == NULL)
        PyErr_WriteUnraisable(p->ingest);
    Py_XDECREF(r);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Call a fallback; its result is not needed. */
static void
call_fallback(Path *p, PyObject *callable_name, PyObject *const *args, size_t nargs)
{
    PyObject *stack[6];
    stack[0] = p->ingest;
    for (size_t i = 0; i < nargs; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_VectorcallMethod(callable_name, stack, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    if (r == NULL)
        report_failure(p);
    Py_XDECREF(r);
}

/* dict[key] += delta for a Python int (the DTLS transport's receive counters). */
static int
dict_add(PyObject *dict, PyObject *key, long long delta)
{
    PyObject *old = PyDict_GetItemWithError(dict, key);
    if (old == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *d = PyLong_FromLongLong(delta);
    if (d == NULL)
        return -1;
    PyObject *sum = PyNumber_Add(old, d);
    Py_DECREF(d);
    if (sum == NULL)
        return -1;
    int r = PyDict_SetItem(dict, key, sum);
    Py_DECREF(sum);
    return r;
}

/* An attribute as a C long: 1 if an int, 0 if None or absent, -1 on error. */
static int
get_long_attr(PyObject *obj, PyObject *name, long long *value)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    if (v == Py_None) {
        Py_DECREF(v);
        return 0;
    }
    *value = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (*value == -1 && PyErr_Occurred())
        return -1;
    return 1;
}

static int
set_long_attr(PyObject *obj, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

/* An extension id from the instance dict of HeaderExtensionsMap's ids (-1: None). */
static int
ext_id(PyObject *ids_dict, PyObject *name, long *id)
{
    PyObject *v = PyDict_GetItemWithError(ids_dict, name);
    *id = -1;
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (PyLong_Check(v))
        *id = PyLong_AsLong(v);
    return (*id == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* Would Python's decode (UTF-8, or ASCII) of these bytes succeed? */
static int
decodes(const unsigned char *v, Py_ssize_t len, int ascii)
{
    for (Py_ssize_t i = 0; i < len; i++) {
        if (v[i] & 0x80) {
            if (ascii)
                return 0;
            PyObject *s = PyUnicode_DecodeUTF8((const char *)v, len, NULL);
            if (s == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_ValueError))
                    return -1;
                PyErr_Clear();
                return 0;
            }
            Py_DECREF(s);
            return 1;
        }
    }
    return 1;
}

enum { PARSE_OK = 0, PARSE_DROP = 1, PARSE_PYTHON = 2, PARSE_ERROR = -1 };

/* HeaderExtensionsMap.get for a one-byte (0xBEDE) block. PARSE_DROP where aiortc
 * raises ValueError, PARSE_PYTHON where it would raise something else (a value of
 * the wrong length for its struct format): Python repeats that exactly. */
static int
parse_extensions(PyObject *ids, const unsigned char *v, Py_ssize_t len, Extensions *x)
{
    long id_mid, id_rrid, id_rid, id_ast, id_toff, id_level, id_twcc;
    /* The ids are set on the instance by configure(); unset ones are the class's None. */
    PyObject *ids_dict = PyObject_GenericGetDict(ids, NULL);
    if (ids_dict == NULL)
        return PARSE_ERROR;
    int ok = ext_id(ids_dict, s_mid, &id_mid) == 0 && ext_id(ids_dict, s_repaired_rid, &id_rrid) == 0 &&
             ext_id(ids_dict, s_rid, &id_rid) == 0 && ext_id(ids_dict, s_abs_send_time, &id_ast) == 0 &&
             ext_id(ids_dict, s_toffset, &id_toff) == 0 && ext_id(ids_dict, s_audio_level, &id_level) == 0 &&
             ext_id(ids_dict, s_twcc, &id_twcc) == 0;
    Py_DECREF(ids_dict);
    if (!ok)
        return PARSE_ERROR;
    Py_ssize_t pos = 0;
    while (pos < len) {
        if (v[pos] == 0) {
            pos += 1;
            continue;
        }
        long x_id = (v[pos] & 0xF0) >> 4;
        Py_ssize_t x_length = (v[pos] & 0x0F) + 1;
        pos += 1;
        if (len < pos + x_length)
            return PARSE_DROP; /* "RTP one-byte header extension value is truncated" */
        const unsigned char *value = v + pos;
        pos += x_length;
        if (x_id == id_mid || x_id == id_rrid || x_id == id_rid) {
            int valid = decodes(value, x_length, x_id != id_mid);
            if (valid < 0)
                return PARSE_ERROR;
            if (!valid)
                return PARSE_DROP; /* UnicodeDecodeError is a ValueError */
            if (x_id == id_mid) {
                x->mid = value;
                x->mid_len = x_length;
            }
            else if (x_id == id_rrid) {
                x->repaired_rtp_stream_id = value;
                x->repaired_rtp_stream_id_len = x_length;
            }
            else {
                x->rtp_stream_id = value;
                x->rtp_stream_id_len = x_length;
            }
        }
        else if (x_id == id_ast) {
            if (x_length != 3)
                return PARSE_PYTHON;
            x->has_abs_send_time = 1;
            x->abs_send_time = ((long)value[0] << 16) | ((long)value[1] << 8) | value[2];
        }
        else if (x_id == id_toff) {
            if (x_length != 3)
                return PARSE_PYTHON;
            x->has_transmission_offset = 1;
            int32_t raw = (int32_t)(((uint32_t)value[0] << 24) | ((uint32_t)value[1] << 16) |
                                    ((uint32_t)value[2] << 8));
            x->transmission_offset = raw >> 8;
        }
        else if (x_id == id_level) {
            if (x_length != 1)
                return PARSE_PYTHON;
            x->has_audio_level = 1;
            /* aiortc: `vad_level & 0x80 == 0x80`, which Python reads as
             * `vad_level & (0x80 == 0x80)`, i.e. the low bit, an int */
            x->audio_level_voice = value[0] & 1;
            x->audio_level = value[0] & 0x7F;
        }
        else if (x_id == id_twcc) {
            if (x_length != 2)
                return PARSE_PYTHON;
            x->has_transport_sequence_number = 1;
            x->transport_sequence_number = ((long)value[0] << 8) | value[1];
        }
    }
    return PARSE_OK;
}

/* Set name to a new int (steals nothing). */
static int
set_attr_long(PyObject *obj, PyObject *name, long value)
{
    PyObject *v = PyLong_FromLong(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

/* A new object of a plain Python class, without running its __init__. */
static PyObject *
bare_instance(PyObject *type)
{
    PyTypeObject *tp = (PyTypeObject *)type;
    return tp->tp_new(tp, empty_tuple, NULL);
}

/* HeaderExtensions with every field set, as the dataclass's __init__ does. */
static PyObject *
build_extensions(Extensions *x)
{
    PyObject *ext = bare_instance(header_extensions_type);
    if (ext == NULL)
        return NULL;
    PyObject *v;
#define SET_STR(name, value, len, decode)                                       \
    if ((value) == NULL) {                                                       \
        if (PyObject_SetAttr(ext, name, Py_None) < 0)                            \
            goto fail;                                                           \
    }                                                                            \
    else {                                                                       \
        v = decode((const char *)(value), (len), NULL);                          \
        if (v == NULL || PyObject_SetAttr(ext, name, v) < 0) {                   \
            Py_XDECREF(v);                                                       \
            goto fail;                                                           \
        }                                                                        \
        Py_DECREF(v);                                                            \
    }
#define SET_OPT_LONG(name, has, value)                   \
    if (has) {                                           \
        if (set_attr_long(ext, name, value) < 0)         \
            goto fail;                                   \
    }                                                    \
    else if (PyObject_SetAttr(ext, name, Py_None) < 0) { \
        goto fail;                                       \
    }
    SET_OPT_LONG(s_abs_send_time, x->has_abs_send_time, x->abs_send_time);
    if (x->has_audio_level) {
        v = Py_BuildValue("(ii)", x->audio_level_voice, x->audio_level);
        if (v == NULL)
            goto fail;
        int r = PyObject_SetAttr(ext, s_audio_level, v);
        Py_DECREF(v);
        if (r < 0)
            goto fail;
    }
    else if (PyObject_SetAttr(ext, s_audio_level, Py_None) < 0) {
        goto fail;
    }
    SET_STR(s_mid, x->mid, x->mid_len, PyUnicode_DecodeUTF8);
    SET_STR(s_repaired_rid, x->repaired_rtp_stream_id, x->repaired_rtp_stream_id_len, PyUnicode_DecodeASCII);
    SET_STR(s_rid, x->rtp_stream_id, x->rtp_stream_id_len, PyUnicode_DecodeASCII);
    SET_OPT_LONG(s_toffset, x->has_transmission_offset, x->transmission_offset);
    SET_OPT_LONG(s_twcc, x->has_transport_sequence_number, x->transport_sequence_number);
#undef SET_STR
#undef SET_OPT_LONG
    return ext;
fail:
    Py_DECREF(ext);
    return NULL;
}

/* An RtpPacket as RtpPacket.parse makes it (no CSRC, no padding here). */
static PyObject *
build_packet(int marker, int payload_type, long seq, unsigned long timestamp, unsigned long ssrc,
             PyObject *payload, Extensions *x)
{
    PyObject *packet = bare_instance(rtp_packet_type);
    if (packet == NULL)
        return NULL;
    PyObject *csrc = NULL, *ext = NULL, *v;
    /* In __init__'s order, so that instances share one key layout. */
    if (set_attr_long(packet, s_version, 2) < 0 || set_attr_long(packet, s_marker, marker) < 0 ||
        set_attr_long(packet, s_payload_type, payload_type) < 0 ||
        set_attr_long(packet, s_sequence_number, seq) < 0)
        goto fail;
    v = PyLong_FromUnsignedLong(timestamp);
    if (v == NULL || PyObject_SetAttr(packet, s_timestamp, v) < 0) {
        Py_XDECREF(v);
        goto fail;
    }
    Py_DECREF(v);
    v = PyLong_FromUnsignedLong(ssrc);
    if (v == NULL || PyObject_SetAttr(packet, s_ssrc, v) < 0) {
        Py_XDECREF(v);
        goto fail;
    }
    Py_DECREF(v);
    csrc = PyList_New(0);
    if (csrc == NULL || PyObject_SetAttr(packet, s_csrc, csrc) < 0)
        goto fail;
    ext = build_extensions(x);
    if (ext == NULL || PyObject_SetAttr(packet, s_extensions, ext) < 0)
        goto fail;
    if (PyObject_SetAttr(packet, s_payload, payload) < 0 || set_attr_long(packet, s_padding_size, 0) < 0)
        goto fail;
    Py_DECREF(csrc);
    Py_DECREF(ext);
    return packet;
fail:
    Py_XDECREF(csrc);
    Py_XDECREF(ext);
    Py_DECREF(packet);
    return NULL;
}

/* aiortc's VpxPayloadDescriptor.parse: 1 if it would parse, 0 if it raises ValueError. */
static int
vp8_descriptor_valid(const unsigned char *data, Py_ssize_t len)
{
    if (len < 1)
        return 0;
    Py_ssize_t pos = 1;
    if (data[0] >> 7) {
        if (len < pos + 1)
            return 0;
        unsigned char octet = data[pos];
        int ext_I = (octet >> 7) & 1, ext_L = (octet >> 6) & 1, ext_T = (octet >> 5) & 1,
            ext_K = (octet >> 4) & 1;
        pos += 1;
        if (ext_I) {
            if (len < pos + 1)
                return 0;
            if (data[pos] & 0x80) {
                if (len < pos + 2)
                    return 0;
                pos += 2;
            }
            else {
                pos += 1;
            }
        }
        if (ext_L) {
            if (len < pos + 1)
                return 0;
            pos += 1;
        }
        if (ext_T || ext_K) {
            if (len < pos + 1)
                return 0;
            pos += 1;
        }
    }
    return 1;
}

/* The codec's kind, as depayload() and is_rtx() tell it by name. */
static int
codec_kind(Path *p, PyObject *codec)
{
    for (int i = 0; i < CODEC_CACHE; i++)
        if (codec == p->codecs[i])
            return p->codec_kinds[i];
    PyObject *name = PyObject_GetAttr(codec, s_name);
    if (name == NULL)
        return -1;
    int kind = KIND_PLAIN;
    if (PyUnicode_Check(name)) {
        if (PyUnicode_CompareWithASCIIString(name, "VP8") == 0)
            kind = KIND_VP8;
        else if (PyUnicode_CompareWithASCIIString(name, "H264") == 0)
            kind = KIND_H264;
        else {
            PyObject *lower = PyObject_CallMethod(name, "lower", NULL);
            if (lower == NULL) {
                Py_DECREF(name);
                return -1;
            }
            if (PyUnicode_CompareWithASCIIString(lower, "rtx") == 0)
                kind = KIND_RTX;
            Py_DECREF(lower);
        }
    }
    else {
        kind = KIND_UNKNOWN;
    }
    Py_DECREF(name);
    int slot = p->codec_next;
    p->codec_next = (slot + 1) % CODEC_CACHE;
    Py_INCREF(codec);
    Py_XSETREF(p->codecs[slot], codec);
    p->codec_kinds[slot] = kind;
    return kind;
}


/* keyframes.vp8_is_keyframe_start */
static int
vp8_is_keyframe_start(const unsigned char *payload, Py_ssize_t len)
{
    if (len < 1)
        return 0;
    unsigned char first = payload[0];
    if (!(first & 0x10) || (first & 0x07))
        return 0;
    Py_ssize_t offset = 1;
    if (first & 0x80) {
        if (len < 2)
            return 0;
        unsigned char ext = payload[1];
        offset = 2;
        if (ext & 0x80) {
            if (len <= offset)
                return 0;
            offset += (payload[offset] & 0x80) ? 2 : 1;
        }
        if (ext & 0x40)
            offset += 1;
        if (ext & 0x30)
            offset += 1;
    }
    if (len <= offset)
        return 0;
    return !(payload[offset] & 0x01);
}

static int
dict_set_long(PyObject *dict, PyObject *key, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(dict, key, v);
    Py_DECREF(v);
    return r;
}

/* dict[key] as a C long long: 1 if an int, 0 if None or absent, -1 on error. */
static int
dict_get_long(PyObject *dict, PyObject *key, long long *value)
{
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (v == Py_None)
        return 0;
    *value = PyLong_AsLongLong(v);
    return (*value == -1 && PyErr_Occurred()) ? -1 : 1;
}

/* time.monotonic() */
static double
monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * aiortc.clock.current_datetime(): datetime.datetime.now(datetime.timezone.utc), as
 * datetime.now reads it (the system clock, microseconds rounded down), without a
 * call into Python.
 */
static PyObject *
utc_now(void)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t seconds = ts.tv_sec;
    if (gmtime_r(&seconds, &tm) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyDateTimeAPI->DateTime_FromDateAndTime(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                                   tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000),
                                                   PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

static int
get_double_attr(PyObject *o, PyObject *name, double *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int
set_double_attr(PyObject *o, PyObject *name, double value)
{
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/*
 * AudioLevelMeter.observe(level, now) (server/media/active_speaker.py), on the
 * meter's attributes, for an AudioLevelMeter itself; anything else (a subclass)
 * has its own observe called. 0, or -1 with an exception set.
 */
static int
meter_observe(PyObject *meter, long level, double now)
{
    if (audio_level_meter_type == NULL || !Py_IS_TYPE(meter, (PyTypeObject *)audio_level_meter_type)) {
        PyObject *args[3] = {meter, PyLong_FromLong(level), PyFloat_FromDouble(now)};
        PyObject *r = args[1] && args[2] ? PyObject_VectorcallMethod(s_m_observe, args, 3, NULL) : NULL;
        int status = r == NULL ? -1 : 0;
        Py_XDECREF(args[1]);
        Py_XDECREF(args[2]);
        Py_XDECREF(r);
        return status;
    }
    double last_update, smoothed, smoothing;
    if (get_double_attr(meter, s_m_last_update, &last_update) < 0 ||
        get_double_attr(meter, s_m_smoothed, &smoothed) < 0 || get_double_attr(meter, s_m_smoothing, &smoothing) < 0)
        return -1;
    double dbov = -(double)(level < 0 ? 0 : level > 127 ? 127 : level);
    double dt = now - last_update > 0.0 ? now - last_update : 0.0;
    double alpha;
    if (dt > 0) {
        if (smoothing == 0.0) {
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            return -1;
        }
        alpha = 1.0 - exp(-dt / smoothing);
    }
    else
        alpha = 0.05;
    smoothed += (dbov - smoothed) * alpha;
    if (set_double_attr(meter, s_m_smoothed, smoothed) < 0 || set_double_attr(meter, s_m_last_update, now) < 0)
        return -1;
    return 0;
}

/* dict[key] as a C double (an int or a float): 1, 0 if None or absent, -1 on error. */
static int
dict_get_double(PyObject *dict, PyObject *key, double *value)
{
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (v == Py_None)
        return 0;
    *value = PyFloat_AsDouble(v);
    return (*value == -1.0 && PyErr_Occurred()) ? -1 : 1;
}

static int
dict_set_double(PyObject *dict, PyObject *key, double value)
{
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(dict, key, v);
    Py_DECREF(v);
    return r;
}

/* The Tally a Path counts `ssrc`'s packets into, or NULL (not registered, or another
 * payload type: the usual path, as the router would see it). */
static Tally *
path_tally(Path *p, unsigned long ssrc, int payload_type)
{
    for (int i = 0; i < p->n_tallies; i++) {
        if (p->tallies[i].ssrc == (unsigned int)ssrc)
            return p->tallies[i].payload_type == payload_type ? p->tallies[i].tally : NULL;
    }
    return NULL;
}

/* Whether the receiver's jitter buffer is a load-test TrackCounter, which only counts:
 * an H.264 packet then needs nothing of aiortc's depacketizer either (-1: failure). */
static int
counts_only(PyObject *state)
{
    PyObject *jitter = PyDict_GetItemWithError(state, s_jitter);
    if (jitter == NULL)
        return PyErr_Occurred() ? -1 : 0;
    return track_counter_type != NULL && Py_IS_TYPE(jitter, (PyTypeObject *)track_counter_type);
}

/*
 * A packet of the steady state for a jitter buffer that may be a load-test counter
 * (server/loadtest/receiver_stats.py): if `counter` is a TrackCounter whose clock is
 * time.monotonic, count the packet in its Tally (its `tally`) and return 1; from the
 * next packet on, the Path counts this SSRC straight into the Tally. For that the
 * receiver's statistics of the SSRC (which this packet has already been added to)
 * become a TalliedStatistics: aiortc's StreamStatistics whose fields are the Tally's,
 * so that the receiver reports aiortc sends read what the Tally counts. Returns 0 if
 * not a counter (the caller hands the packet to its add), -1 on a failure.
 */
static int
counter_take(Path *p, PyObject *state, PyObject *counter, PyObject *ssrc_key, unsigned long ssrc,
             int payload_type, long seq, int marker, Py_ssize_t payload_size)
{
    if (track_counter_type == NULL || !Py_IS_TYPE(counter, (PyTypeObject *)track_counter_type))
        return 0;
    PyObject *d = PyObject_GenericGetDict(counter, NULL);
    if (d == NULL)
        return -1;
    PyObject *clock = PyDict_GetItemWithError(d, s_c_clock);
    PyObject *tally = clock == monotonic_function ? PyDict_GetItemWithError(d, s_c_tally) : NULL;
    Py_XINCREF(tally);
    Py_DECREF(d);
    if (tally == NULL || !Py_IS_TYPE(tally, &TallyType)) {
        Py_XDECREF(tally);
        return PyErr_Occurred() ? -1 : 0;
    }
    Tally *t = (Tally *)tally;
    tally_count(t, seq, marker, payload_size, (marker || t->is_audio) ? monotonic_seconds() : 0.0);
    int status = 1;
    if (tallied_statistics_type != NULL && p->n_tallies < TALLY_TABLE && path_tally(p, ssrc, payload_type) == NULL) {
        PyObject *streams = PyDict_GetItemWithError(state, s_streams);
        PyObject *stats = streams != NULL && PyDict_Check(streams) ? PyDict_GetItemWithError(streams, ssrc_key) : NULL;
        if (stats == NULL) {
            status = PyErr_Occurred() ? -1 : 1;
            goto done;
        }
        /* borrowed from dicts that the Python call could change: held across it */
        Py_INCREF(streams);
        Py_INCREF(stats);
        PyObject *args[2] = {stats, tally};
        PyObject *view = PyObject_Vectorcall(tallied_statistics_type, args, 2, NULL);
        int failed = view == NULL || PyDict_SetItem(streams, ssrc_key, view) < 0;
        Py_XDECREF(view);
        Py_DECREF(stats);
        Py_DECREF(streams);
        if (failed) {
            status = -1;
            goto done;
        }
        p->tallies[p->n_tallies].ssrc = (unsigned int)ssrc;
        p->tallies[p->n_tallies].payload_type = payload_type;
        Py_INCREF(tally);
        p->tallies[p->n_tallies].tally = t;
        p->n_tallies += 1;
    }
done:
    Py_DECREF(tally);
    return status;
}

/* The exception being raised, normalised, with its traceback (a new reference). */
static PyObject *
fetch_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/*
 * TrackForwarder.on_packet's steady state, on the forwarder's attributes (its
 * instance dict), for a packet the packet tap would hand it: not ended, no
 * keyframe request waiting, no sink without a compiled stream, not a keyframe,
 * VP8 or audio. The counters, the one clock read (the ingest's), the outgoing
 * extension value, the audio level to the speaker detector, then fanout.forward
 * for every subscriber; an RtpPacket is built only for the subscribers the
 * fan-out hands back. Returns 1 if done, 0 if the tap must take the packet
 * (nothing changed), -1 on a failure (exception set).
 */
static int
forward_steady(PyObject *tap, int marker, int payload_type, long seq, unsigned long timestamp,
               unsigned long ssrc, PyObject *payload, Extensions *x, double now)
{
    if (packet_tap_type == NULL || !Py_IS_TYPE(tap, (PyTypeObject *)packet_tap_type))
        return 0;
    PyObject *tap_dict = PyObject_GenericGetDict(tap, NULL);
    if (tap_dict == NULL)
        return -1;
    PyObject *handler = PyDict_GetItemWithError(tap_dict, s_handler);
    if (handler == NULL || !PyMethod_Check(handler) || PyMethod_GET_FUNCTION(handler) != forwarder_on_packet) {
        Py_DECREF(tap_dict);
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *forwarder = PyMethod_GET_SELF(handler);
    Py_INCREF(forwarder);
    PyObject *fd = PyObject_GenericGetDict(forwarder, NULL);
    PyObject *packet = NULL, *fast_sinks = NULL, *pending = NULL;
    int status = -1;
    if (fd == NULL)
        goto done;
    PyObject *ended = PyDict_GetItemWithError(fd, s_f_ended);
    PyObject *pli_pending = ended ? PyDict_GetItemWithError(fd, s_f_pli_pending) : NULL;
    PyObject *others = pli_pending ? PyDict_GetItemWithError(fd, s_f_other_sinks) : NULL;
    PyObject *is_video = others ? PyDict_GetItemWithError(fd, s_f_is_video) : NULL;
    PyObject *is_vp8 = is_video ? PyDict_GetItemWithError(fd, s_f_is_vp8) : NULL;
    if (is_vp8 == NULL) {
        status = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    if (ended != Py_False || pli_pending != Py_False || !PyTuple_Check(others) || PyTuple_GET_SIZE(others) != 0) {
        status = 0;
        goto done;
    }
    int video = is_video == Py_True;
    if (video && (is_vp8 != Py_True || vp8_is_keyframe_start((const unsigned char *)PyBytes_AS_STRING(payload),
                                                             PyBytes_GET_SIZE(payload)))) {
        status = 0; /* a keyframe (or not VP8): the forwarder's own on_packet */
        goto done;
    }

    /* --- the steady state: from here on, as on_packet --- */
    if (dict_add(tap_dict, s_packets, 1) < 0 || dict_add(fd, s_f_packets_received, 1) < 0)
        goto done;
    long long source = 0, highest = 0;
    int has_source = dict_get_long(fd, s_f_source_ssrc, &source);
    if (has_source < 0)
        goto done;
    if (!has_source || source != (long long)ssrc) {
        if (dict_set_long(fd, s_f_source_ssrc, (long long)ssrc) < 0 || dict_set_long(fd, s_f_highest_seq, seq) < 0 ||
            dict_add(fd, s_f_packets_expected, 1) < 0)
            goto done;
    }
    else {
        if (dict_get_long(fd, s_f_highest_seq, &highest) < 0)
            goto done;
        long ahead = (seq - (long)highest) & 0xFFFF;
        if (ahead < 0x8000) {
            if (dict_set_long(fd, s_f_highest_seq, seq) < 0 || dict_add(fd, s_f_packets_expected, ahead) < 0)
                goto done;
        }
    }
    /* the one clock read per packet: the ingest's (time.time()) */
    unsigned long long ntp = (unsigned long long)((now + 2208988800.0) * 4294967296.0);
    PyObject *v = PyFloat_FromDouble(now);
    if (v == NULL || PyDict_SetItem(fd, s_f_arrival_time, v) < 0) {
        Py_XDECREF(v);
        goto done;
    }
    Py_DECREF(v);
    PyObject *ntp_obj = PyLong_FromUnsignedLongLong(ntp);
    if (ntp_obj == NULL)
        goto done;
    if (PyDict_SetItem(fd, s_f_arrival_ntp, ntp_obj) < 0) {
        Py_DECREF(ntp_obj);
        goto done;
    }
    long extension_value;
    if (video) {
        extension_value = (long)((ntp >> 14) & 0xFFFFFF); /* abs-send-time, 6.18 fixed point */
        if (marker && dict_add(fd, s_f_frames_received, 1) < 0) {
            Py_DECREF(ntp_obj);
            goto done;
        }
    }
    else {
        /* rtp_header.audio_level_byte(packet.extensions.audio_level) */
        extension_value = x->has_audio_level ? ((x->audio_level_voice ? 0x80 : 0) | (x->audio_level & 0x7F)) : 127;
    }
    if (dict_set_long(fd, s_f_extension_value, extension_value) < 0) {
        Py_DECREF(ntp_obj);
        goto done;
    }
    if (x->has_audio_level) {
        PyObject *meter = PyDict_GetItemWithError(fd, s_f_audio_level);
        if (meter == NULL && PyErr_Occurred()) {
            Py_DECREF(ntp_obj);
            goto done;
        }
        if (meter != NULL && meter != Py_None) {
            Py_INCREF(meter);
            int r = meter_observe(meter, x->audio_level, monotonic_seconds());
            Py_DECREF(meter);
            if (r < 0) {
                PyObject *exc = fetch_exception();
                PyObject *r2 = PyObject_CallMethodOneArg(forwarder, s_f_audio_failed, exc ? exc : Py_None);
                Py_XDECREF(exc);
                if (r2 == NULL) {
                    Py_DECREF(ntp_obj);
                    goto done;
                }
                Py_DECREF(r2);
            }
        }
    }
    PyObject *streams = PyDict_GetItemWithError(fd, s_f_fast_streams);
    if (streams == NULL && PyErr_Occurred()) {
        Py_DECREF(ntp_obj);
        goto done;
    }
    if (streams != NULL && PyTuple_Check(streams) && PyTuple_GET_SIZE(streams) > 0 && fanout_forward != NULL) {
        fast_sinks = PyDict_GetItemWithError(fd, s_f_fast_sinks);
        Py_XINCREF(fast_sinks);
        PyObject *args[9];
        args[0] = streams;
        args[1] = PyLong_FromLong(marker);
        args[2] = PyLong_FromLong(seq);
        args[3] = PyLong_FromUnsignedLong(timestamp);
        args[4] = PyLong_FromUnsignedLong(ssrc);
        args[5] = payload;
        args[6] = PyLong_FromLong(extension_value);
        args[7] = ntp_obj;
        args[8] = PyFloat_FromDouble(now);
        int ok = fast_sinks && args[1] && args[2] && args[3] && args[4] && args[6] && args[8];
        Py_INCREF(streams);
        if (ok)
            pending = PyObject_Vectorcall(fanout_forward, args, 9, NULL);
        Py_DECREF(streams);
        for (int i = 1; i < 9; i++) {
            if (i != 5 && i != 7)
                Py_XDECREF(args[i]);
        }
        if (!ok) {
            Py_DECREF(ntp_obj);
            goto done;
        }
        if (pending == NULL) {
            PyObject *exc = fetch_exception();
            packet = build_packet(marker, payload_type, seq, timestamp, ssrc, payload, x);
            PyObject *r = packet ? PyObject_CallMethodObjArgs(forwarder, s_f_fanout_failed, exc ? exc : Py_None,
                                                              packet, NULL)
                                 : NULL;
            Py_XDECREF(exc);
            Py_XDECREF(r);
            if (r == NULL) {
                Py_DECREF(ntp_obj);
                goto done;
            }
        }
        else if (pending != Py_None) {
            packet = build_packet(marker, payload_type, seq, timestamp, ssrc, payload, x);
            PyObject *r = packet ? PyObject_CallMethodObjArgs(forwarder, s_f_feed_pending, fast_sinks, pending,
                                                              packet, NULL)
                                 : NULL;
            Py_XDECREF(r);
            if (r == NULL) {
                Py_DECREF(ntp_obj);
                goto done;
            }
        }
    }
    Py_DECREF(ntp_obj);
    status = 1;
done:
    Py_DECREF(tap_dict);
    Py_XDECREF(fd);
    Py_DECREF(forwarder);
    Py_XDECREF(packet);
    Py_XDECREF(fast_sinks);
    Py_XDECREF(pending);
    return status;
}

/* ================================================================ Path */

static PyObject *
Path_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ingest", "dtls_vars", "queue_items", "receivers", "connected", "queued", NULL};
    PyObject *ingest, *dtls_vars, *queue_items, *receivers, *connected, *queued;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!OO!OO:Path", kwlist, &ingest, &PyDict_Type, &dtls_vars,
                                     &queue_items, &PyDict_Type, &receivers, &connected, &queued))
        return NULL;
    Path *p = (Path *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    Py_INCREF(ingest);
    p->ingest = ingest;
    Py_INCREF(dtls_vars);
    p->dtls_vars = dtls_vars;
    Py_INCREF(queue_items);
    p->queue_items = queue_items;
    Py_INCREF(receivers);
    p->receivers = receivers;
    Py_INCREF(connected);
    p->connected = connected;
    Py_INCREF(queued);
    p->queued = queued;
    p->source_time_ms = 0;
    return (PyObject *)p;
}

static int
Path_traverse(Path *p, visitproc visit, void *arg)
{
    Py_VISIT(p->ingest);
    Py_VISIT(p->dtls_vars);
    Py_VISIT(p->queue_items);
    Py_VISIT(p->receivers);
    Py_VISIT(p->connected);
    Py_VISIT(p->queued);
    Py_VISIT(p->session);
    Py_VISIT(p->source_time);
    for (int i = 0; i < CODEC_CACHE; i++)
        Py_VISIT(p->codecs[i]);
    for (int i = 0; i < p->n_tallies; i++)
        Py_VISIT(p->tallies[i].tally);
    return 0;
}

static int
Path_clear(Path *p)
{
    Py_CLEAR(p->ingest);
    Py_CLEAR(p->dtls_vars);
    Py_CLEAR(p->queue_items);
    Py_CLEAR(p->receivers);
    Py_CLEAR(p->connected);
    Py_CLEAR(p->queued);
    Py_CLEAR(p->session);
    p->srtp = NULL;
    p->unprotect = NULL;
    Py_CLEAR(p->source_time);
    for (int i = 0; i < CODEC_CACHE; i++)
        Py_CLEAR(p->codecs[i]);
    int n_tallies = p->n_tallies;
    p->n_tallies = 0;
    for (int i = 0; i < n_tallies; i++)
        Py_CLEAR(p->tallies[i].tally);
    return 0;
}

static void
Path_dealloc(Path *p)
{
    PyObject_GC_UnTrack(p);
    Path_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *
Path_set_srtp(Path *p, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"session", "unprotect", "srtp", NULL};
    PyObject *session;
    unsigned long long unprotect, srtp;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OKK:set_srtp", kwlist, &session, &unprotect, &srtp))
        return NULL;
    if (unprotect == 0 || srtp == 0) {
        PyErr_SetString(PyExc_ValueError, "null address");
        return NULL;
    }
    Py_INCREF(session);
    Py_XSETREF(p->session, session);
    p->unprotect = (srtp_unprotect_fn)(uintptr_t)unprotect;
    p->srtp = (void *)(uintptr_t)srtp;
    Py_RETURN_NONE;
}

/* The RTP steady state after unprotect. Returns 0 when done (handled, dropped or
 * handed to a fallback), -1 on a failure (exception set). */
static int
handle_rtp(Path *p, const unsigned char *data, Py_ssize_t len, long long arrival_time_ms, double now)
{
    PyObject *dtls = p->dtls_vars;
    PyObject *payload = NULL, *packet = NULL, *state_ssrc = NULL;
    /* the receiver's objects used below, held: a Python call in between may replace them */
    PyObject *estimator = NULL, *codec = NULL, *stream = NULL, *nack = NULL;
    Extensions x;
    memset(&x, 0, sizeof(x));
    int status = -1;

    /* --- RtpPacket.parse --- */
    if (len < RTP_HEADER_LENGTH)
        return 0; /* ValueError: dropped */
    int v_p_x_cc = data[0];
    if ((v_p_x_cc >> 6) != 2)
        return 0;
    int padding = (v_p_x_cc >> 5) & 1, extension = (v_p_x_cc >> 4) & 1, cc = v_p_x_cc & 0x0F;
    int marker = data[1] >> 7, payload_type = data[1] & 0x7F;
    long seq = ((long)data[2] << 8) | data[3];
    unsigned long timestamp = ((unsigned long)data[4] << 24) | ((unsigned long)data[5] << 16) |
                              ((unsigned long)data[6] << 8) | data[7];
    unsigned long ssrc = ((unsigned long)data[8] << 24) | ((unsigned long)data[9] << 16) |
                         ((unsigned long)data[10] << 8) | data[11];
    Py_ssize_t pos = RTP_HEADER_LENGTH;
    if (p->n_tallies > 0 && !cc && !padding) {
        Tally *tally = path_tally(p, ssrc, payload_type);
        if (tally != NULL) {
            /* A load-test receiver's track: counted, and its receiver statistics kept,
             * in its Tally; no Python object is touched (see counter_take). */
            if (extension) {
                if (len < pos + 4)
                    return 0;
                pos += 4 + (((Py_ssize_t)data[pos + 2] << 8) | data[pos + 3]) * 4;
                if (len < pos)
                    return 0;
            }
            p->packets += 1;
            tally->tallied += 1;
            tally_add_statistics(tally, seq, timestamp, now);
            tally_count(tally, seq, marker, len - pos, (marker || tally->is_audio) ? monotonic_seconds() : 0.0);
            return 0;
        }
    }
    if (cc || padding)
        goto python_parse;
    if (extension) {
        if (len < pos + 4)
            return 0;
        int profile = (data[pos] << 8) | data[pos + 1];
        Py_ssize_t ext_len = (((Py_ssize_t)data[pos + 2] << 8) | data[pos + 3]) * 4;
        pos += 4;
        if (len < pos + ext_len)
            return 0;
        if (profile != 0xBEDE)
            goto python_parse;
        PyObject *map = PyDict_GetItemWithError(dtls, s_ext_map);
        if (map == NULL)
            goto python_parse_or_error;
        PyObject *ids = PyObject_GetAttr(map, s_ext_ids);
        if (ids == NULL)
            goto done;
        int r = parse_extensions(ids, data + pos, ext_len, &x);
        Py_DECREF(ids);
        if (r == PARSE_ERROR)
            goto done;
        if (r == PARSE_DROP) {
            status = 0;
            goto done;
        }
        if (r == PARSE_PYTHON)
            goto python_parse;
        pos += ext_len;
    }

    /* --- RtpRouter.route_rtp: the SSRC and payload type known and matching --- */
    PyObject *router = PyDict_GetItemWithError(dtls, s_router);
    if (router == NULL)
        goto python_parse_or_error;
    PyObject *ssrc_table = PyObject_GetAttr(router, s_ssrc_table);
    if (ssrc_table == NULL)
        goto done;
    PyObject *pt_table = PyObject_GetAttr(router, s_pt_table);
    if (pt_table == NULL) {
        Py_DECREF(ssrc_table);
        goto done;
    }
    PyObject *key = PyLong_FromUnsignedLong(ssrc);
    PyObject *receiver = key ? PyObject_GetItem(ssrc_table, key) : NULL;
    Py_DECREF(ssrc_table);
    if (receiver == NULL) {
        Py_DECREF(pt_table);
        Py_XDECREF(key);
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            goto done;
        PyErr_Clear();
        goto python_parse;
    }
    Py_DECREF(receiver); /* the table holds it */
    state_ssrc = key;
    PyObject *pt_key = PyLong_FromLong(payload_type);
    PyObject *pt_receivers = pt_key ? PyObject_GetItem(pt_table, pt_key) : NULL;
    Py_XDECREF(pt_key);
    Py_DECREF(pt_table);
    if (pt_receivers == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            goto done;
        PyErr_Clear();
        goto python_parse;
    }
    int contains = PySet_Check(pt_receivers) ? PySet_Contains(pt_receivers, receiver) : 0;
    Py_DECREF(pt_receivers);
    if (contains < 0)
        goto done;
    if (!contains)
        goto python_parse;
    PyObject *state = PyDict_GetItemWithError(p->receivers, receiver);
    if (state == NULL)
        goto python_parse_or_error; /* a receiver we were not told about: its own handler */
    Py_INCREF(receiver);
    Py_INCREF(state);

    /* From here on, the packet is counted as DirectIngest counts it. */
    p->packets += 1;
    payload = PyBytes_FromStringAndSize((const char *)data + pos, len - pos);
    if (payload == NULL)
        goto done_receiver;

    /* --- RTCRtpReceiver._handle_rtp_packet: what must hold first --- */
    PyObject *enabled = PyDict_GetItemWithError(state, s_enabled);
    if (enabled == NULL)
        goto packet_python_or_error;
    int is_enabled = PyObject_IsTrue(enabled);
    if (is_enabled < 0)
        goto done_receiver;
    if (!is_enabled) {
        status = 0;
        goto done_receiver;
    }
    estimator = PyDict_GetItemWithError(state, s_estimator);
    if (estimator == NULL)
        goto packet_python_or_error;
    Py_INCREF(estimator);
    if (estimator != Py_None && x.has_abs_send_time && !PyObject_TypeCheck(estimator, &EstimatorType))
        goto packet_python;
    PyObject *codecs = PyDict_GetItemWithError(state, s_codecs);
    if (codecs == NULL || !PyDict_Check(codecs))
        goto packet_python_or_error;
    PyObject *pt_obj = PyLong_FromLong(payload_type);
    if (pt_obj == NULL)
        goto done_receiver;
    codec = PyDict_GetItemWithError(codecs, pt_obj);
    Py_DECREF(pt_obj);
    if (codec == NULL && PyErr_Occurred())
        goto done_receiver;
    Py_XINCREF(codec);
    int kind = KIND_UNKNOWN;
    long long nack_max = 0;
    int nack_has_max = 0;
    if (codec != NULL) {
        kind = codec_kind(p, codec);
        if (kind < 0)
            goto done_receiver;
        if (kind == KIND_RTX || kind == KIND_UNKNOWN)
            goto packet_python;
        if (kind == KIND_H264) {
            int only = counts_only(state);
            if (only < 0)
                goto done_receiver;
            if (!only)
                goto packet_python;
        }
        PyObject *streams = PyDict_GetItemWithError(state, s_streams);
        if (streams == NULL || !PyDict_Check(streams))
            goto packet_python_or_error;
        stream = PyDict_GetItemWithError(streams, state_ssrc);
        if (stream == NULL)
            goto packet_python_or_error; /* a new stream: Python makes its statistics */
        Py_INCREF(stream);
        /* A tally's view: its fields are properties, not the instance dict's (below). */
        if ((PyObject *)Py_TYPE(stream) == tallied_statistics_type)
            goto packet_python;
        nack = PyDict_GetItemWithError(state, s_nack);
        if (nack == NULL)
            goto packet_python_or_error;
        Py_INCREF(nack);
        if (nack != Py_None) {
            PyObject *missing = PyObject_GetAttr(nack, s_missing);
            if (missing == NULL)
                goto done_receiver;
            Py_ssize_t n_missing = PySet_Check(missing) ? PySet_GET_SIZE(missing) : -1;
            Py_DECREF(missing);
            if (n_missing != 0)
                goto packet_python;
            int r = get_long_attr(nack, s_max_seq, &nack_max);
            if (r < 0)
                goto done_receiver;
            nack_has_max = r;
            /* A gap marks packets missing (and may send a NACK): Python does that. */
            if (nack_has_max && uint16_gt(seq, (long)nack_max) && seq != ((nack_max + 1) & 0xFFFF))
                goto packet_python;
        }
    }

    /* --- the steady state --- */
    if (estimator != Py_None && x.has_abs_send_time) {
        long long bitrate;
        int r = estimator_add((Estimator *)estimator, arrival_time_ms, x.abs_send_time, len - pos,
                              (unsigned int)ssrc, &bitrate);
        if (r < 0)
            goto done_receiver;
        if (r > 0) {
            PyObject *rtcp_ssrc = PyDict_GetItemWithError(state, s_rtcp_ssrc);
            if (rtcp_ssrc == NULL && PyErr_Occurred())
                goto done_receiver;
            if (rtcp_ssrc != NULL && rtcp_ssrc != Py_None) {
                PyObject *remb = remb_result((Estimator *)estimator, bitrate);
                if (remb == NULL)
                    goto done_receiver;
                PyObject *args[2] = {receiver, remb};
                call_fallback(p, s_send_remb, args, 2);
                Py_DECREF(remb);
            }
        }
    }
    if (arrival_time_ms - p->source_time_ms >= SOURCE_TIME_RESOLUTION_MS || p->source_time == NULL) {
        PyObject *t = utc_now();
        if (t == NULL)
            goto done_receiver;
        Py_XSETREF(p->source_time, t);
        p->source_time_ms = arrival_time_ms;
    }
    PyObject *active = PyDict_GetItemWithError(state, s_active_ssrc);
    if (active == NULL)
        goto packet_python_or_error_late;
    if (PyObject_SetItem(active, state_ssrc, p->source_time) < 0)
        goto done_receiver;
    if (codec == NULL) {
        status = 0; /* an unknown payload type: aiortc stops here */
        goto done_receiver;
    }

    /* StreamStatistics.add, on its instance dict (every attribute is set in __init__) */
    {
        PyObject *sd = PyObject_GenericGetDict(stream, NULL);
        if (sd == NULL)
            goto done_receiver;
        int failed = 1;
        long long max_seq = 0, received = 0, cycles = 0;
        int has_max = dict_get_long(sd, s_max_seq, &max_seq);
        if (has_max < 0)
            goto stats_done;
        int in_order = !has_max || uint16_gt(seq, (long)max_seq);
        if (dict_get_long(sd, s_packets_received, &received) < 0 ||
            dict_set_long(sd, s_packets_received, received + 1) < 0)
            goto stats_done;
        received += 1;
        long long base = 0;
        int has_base = dict_get_long(sd, s_base_seq, &base);
        if (has_base < 0)
            goto stats_done;
        if (!has_base && dict_set_long(sd, s_base_seq, seq) < 0)
            goto stats_done;
        if (in_order) {
            long long clockrate = 0;
            if (dict_get_long(sd, s_clockrate, &clockrate) < 0)
                goto stats_done;
            long long arrival = (long long)(now * (double)clockrate);
            if (has_max && seq < max_seq) {
                if (dict_get_long(sd, s_cycles, &cycles) < 0 ||
                    dict_set_long(sd, s_cycles, cycles + (1 << 16)) < 0)
                    goto stats_done;
            }
            if (dict_set_long(sd, s_max_seq, seq) < 0)
                goto stats_done;
            long long last_ts = 0, last_arrival = 0, jitter_q4 = 0;
            int has_last_ts = dict_get_long(sd, s_last_timestamp, &last_ts);
            if (has_last_ts < 0)
                goto stats_done;
            if ((!has_last_ts || (long long)timestamp != last_ts) && received > 1) {
                if (dict_get_long(sd, s_last_arrival, &last_arrival) < 0 ||
                    dict_get_long(sd, s_jitter_q4, &jitter_q4) < 0)
                    goto stats_done;
                long long diff = (arrival - last_arrival) - ((long long)timestamp - last_ts);
                if (diff < 0)
                    diff = -diff;
                jitter_q4 += diff - ((jitter_q4 + 8) >> 4);
                if (dict_set_long(sd, s_jitter_q4, jitter_q4) < 0)
                    goto stats_done;
            }
            if (dict_set_long(sd, s_last_arrival, arrival) < 0 ||
                dict_set_long(sd, s_last_timestamp, (long long)timestamp) < 0)
                goto stats_done;
        }
        failed = 0;
    stats_done:
        Py_DECREF(sd);
        if (failed)
            goto done_receiver;
    }

    /* NackGenerator.add, when nothing is missing and nothing goes missing */
    if (nack != NULL && nack != Py_None) {
        if (!nack_has_max || uint16_gt(seq, (long)nack_max)) {
            if (set_long_attr(nack, s_max_seq, seq) < 0)
                goto done_receiver;
        }
    }

    /* depayload(): aiortc drops what its VP8 descriptor parser refuses */
    if (kind == KIND_VP8 && PyBytes_GET_SIZE(payload) > 0 &&
        !vp8_descriptor_valid((const unsigned char *)PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))) {
        status = 0;
        goto done_receiver;
    }

    /* the jitter buffer: our packet tap (its forwarder's steady state here) */
    {
        PyObject *jitter = PyDict_GetItemWithError(state, s_jitter);
        if (jitter == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "jitter buffer");
            goto done_receiver;
        }
        int pli_flag = 0;
        int forwarded = forward_steady(jitter, marker, payload_type, seq, timestamp, ssrc, payload, &x, now);
        if (forwarded < 0)
            goto done_receiver;
        p->forwarded += forwarded;
        int counted = 0;
        if (!forwarded) {
            counted = counter_take(p, state, jitter, state_ssrc, ssrc, payload_type, seq, marker,
                                   PyBytes_GET_SIZE(payload));
            if (counted < 0)
                goto done_receiver;
        }
        if (!forwarded && !counted) {
            packet = build_packet(marker, payload_type, seq, timestamp, ssrc, payload, &x);
            if (packet == NULL)
                goto done_receiver;
            PyObject *result = PyObject_CallMethodOneArg(jitter, s_add, packet);
            if (result == NULL)
                goto done_receiver;
            if (PyTuple_Check(result) && PyTuple_GET_SIZE(result) >= 1)
                pli_flag = PyObject_IsTrue(PyTuple_GET_ITEM(result, 0));
            Py_DECREF(result);
            if (pli_flag < 0)
                goto done_receiver;
        }
        PyObject *decoder_error = PyDict_GetItemWithError(state, s_decoder_error);
        int error_set = 0;
        if (decoder_error != NULL) {
            PyObject *flag = PyObject_GetAttr(decoder_error, s_flag);
            if (flag == NULL)
                goto done_receiver;
            error_set = PyObject_IsTrue(flag);
            Py_DECREF(flag);
            if (error_set < 0)
                goto done_receiver;
        }
        else if (PyErr_Occurred()) {
            goto done_receiver;
        }
        if (pli_flag || error_set) {
            if (packet == NULL && (packet = build_packet(marker, payload_type, seq, timestamp, ssrc, payload, &x)) == NULL)
                goto done_receiver;
            PyObject *flag = PyBool_FromLong(pli_flag);
            PyObject *args[4] = {receiver, state, packet, flag};
            call_fallback(p, s_after_jitter, args, 4);
            Py_DECREF(flag);
        }
    }
    status = 0;
    goto done_receiver;

packet_python_or_error_late:
    /* Not reached in practice (aiortc sets every attribute in __init__); state has
     * changed, so this is a failure rather than a fallback. */
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_KeyError, "receiver attribute");
    goto done_receiver;
packet_python_or_error:
    if (PyErr_Occurred())
        goto done_receiver;
packet_python:
    /* DirectIngest._handle_packet on an RtpPacket: nothing changed yet */
    p->fallbacks += 1;
    packet = build_packet(marker, payload_type, seq, timestamp, ssrc, payload, &x);
    if (packet == NULL)
        goto done_receiver;
    {
        PyObject *when = PyLong_FromLongLong(arrival_time_ms);
        if (when == NULL)
            goto done_receiver;
        PyObject *args[4] = {receiver, state, packet, when};
        call_fallback(p, s_handle_packet, args, 4);
        Py_DECREF(when);
    }
    status = 0;
done_receiver:
    Py_XDECREF(estimator);
    Py_XDECREF(codec);
    Py_XDECREF(stream);
    Py_XDECREF(nack);
    Py_DECREF(receiver);
    Py_DECREF(state);
    goto done;

python_parse_or_error:
    if (PyErr_Occurred())
        goto done;
python_parse:
    /* DirectIngest._handle_decrypted: parse, route and the rest, in Python */
    p->fallbacks += 1;
    {
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, len);
        PyObject *when = PyLong_FromLongLong(arrival_time_ms);
        if (bytes != NULL && when != NULL) {
            PyObject *args[2] = {bytes, when};
            call_fallback(p, s_handle_decrypted, args, 2);
            status = 0;
        }
        Py_XDECREF(bytes);
        Py_XDECREF(when);
    }
done:
    Py_XDECREF(payload);
    Py_XDECREF(packet);
    Py_XDECREF(state_ssrc);
    return status;
}

static int
is_rtp(const unsigned char *d, Py_ssize_t n)
{
    return n >= 12 && d[0] > 127 && d[0] < 192 && !(d[1] >= 192 && d[1] <= 208);
}

static int
is_rtcp(const unsigned char *d, Py_ssize_t n)
{
    return n >= 8 && d[0] > 127 && d[0] < 192 && d[1] >= 192 && d[1] <= 208;
}

static PyObject *
Path_receive(Path *p, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "receive(data: bytes, component: int)");
        return NULL;
    }
    PyObject *datagram = args[0];
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(datagram);
    Py_ssize_t len = PyBytes_GET_SIZE(datagram);
    if (p->ingest == NULL)
        Py_RETURN_NONE; /* closed */
    if (len == 0 || (data[0] > 127 && data[0] < 192 && len > SRTP_MAX_PACKET)) {
        /* aiortc's receive task fails on these and closes the connection (see DirectIngest) */
        p->dropped += 1;
        Py_RETURN_NONE;
    }
    long component = PyLong_AsLong(args[1]);
    if (component == -1 && PyErr_Occurred())
        return NULL;
    PyObject *dtls = p->dtls_vars;
    Py_ssize_t queued = PyObject_Length(p->queue_items);
    if (queued < 0)
        goto failed;
    PyObject *dtls_state = PyDict_GetItemWithError(dtls, s_state);
    PyObject *rx_srtp = dtls_state ? PyDict_GetItemWithError(dtls, s_rx_srtp) : NULL;
    if (PyErr_Occurred())
        goto failed;
    if (component != 1 || queued != 0 || dtls_state != p->connected || rx_srtp == NULL || rx_srtp == Py_None) {
        PyObject *r = PyObject_Vectorcall(p->queued, args, 2, NULL);
        if (r == NULL)
            goto failed;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (is_rtcp(data, len)) {
        call_fallback(p, s_handle_rtcp, args, 1);
        Py_RETURN_NONE;
    }
    if (!is_rtp(data, len)) {
        PyObject *r = PyObject_Vectorcall(p->queued, args, 2, NULL);
        if (r == NULL)
            goto failed;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    if (rx_srtp != p->session || p->unprotect == NULL) {
        /* A session this path was not given: Python's path (which gives it). */
        p->fallbacks += 1;
        call_fallback(p, s_handle_rtp, args, 1);
        Py_RETURN_NONE;
    }
    /* RTCDtlsTransport._recv_next's counters, then unprotect */
    if (dict_add(dtls, s_rx_bytes, len) < 0 || dict_add(dtls, s_rx_packets, 1) < 0)
        goto failed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    long long arrival_time_ms = now_ns / 1000000 + NTP_UNIX_OFFSET_MS;
    double now = (double)now_ns / 1e9; /* time.time() */
    memcpy(p->buffer, data, (size_t)len);
    int length = (int)len;
    if (p->unprotect(p->srtp, p->buffer, &length) != 0)
        Py_RETURN_NONE; /* not authentic or replayed: as aiortc, dropped */
    if (handle_rtp(p, p->buffer, length, arrival_time_ms, now) < 0)
        goto failed;
    Py_RETURN_NONE;
failed:
    report_failure(p);
    Py_RETURN_NONE;
}

static PyObject *
Path_close(Path *p, PyObject *unused)
{
    Path_clear(p);
    Py_RETURN_NONE;
}

static PyMethodDef Path_methods[] = {
    {"receive", (PyCFunction)(void (*)(void))Path_receive, METH_FASTCALL,
     "receive(data, component): aioice's data_received for this connection."},
    {"set_srtp", (PyCFunction)(void (*)(void))Path_set_srtp, METH_VARARGS | METH_KEYWORDS,
     "set_srtp(session, unprotect, srtp): the receive session (srtp_unprotect's and the\n"
     "context's addresses; `session` keeps the context alive)."},
    {"close", (PyCFunction)Path_close, METH_NOARGS, "Drop every reference; receive() does nothing after."},
    {NULL}};

static PyMemberDef Path_members[] = {
    {"ingest", T_OBJECT, offsetof(Path, ingest), READONLY, "The DirectIngest (None once closed)."},
    {"packets", T_ULONGLONG, offsetof(Path, packets), READONLY, "RTP packets handled here to the end."},
    {"fallbacks", T_ULONGLONG, offsetof(Path, fallbacks), READONLY, "RTP packets handed to Python."},
    {"forwarded", T_ULONGLONG, offsetof(Path, forwarded), READONLY,
     "Packets whose TrackForwarder.on_packet steady state ran here."},
    {"dropped", T_ULONGLONG, offsetof(Path, dropped), READONLY, "Empty or too-long datagrams dropped."},
    {NULL}};

static PyTypeObject PathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._ingest.Path",
    .tp_doc = PyDoc_STR("The direct ingest's steady state for one DTLS transport."),
    .tp_basicsize = sizeof(Path),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Path_new,
    .tp_dealloc = (destructor)Path_dealloc,
    .tp_traverse = (traverseproc)Path_traverse,
    .tp_clear = (inquiry)Path_clear,
    .tp_methods = Path_methods,
    .tp_members = Path_members,
};

/* ================================================================ Entry */

/*
 * A StunProtocol's datagram_received, for one protocol (local candidate) of the
 * connection: RFC 7983 demultiplexing by the first byte, which aioice does not
 * do -- it tries every datagram as STUN first, and an RTP packet fails that
 * parse with an exception, ~10 us per packet. A datagram whose first byte is
 * 128-191 (RTP/RTCP) goes straight to Path.receive with the protocol's
 * component, as aioice would hand it to the connection after the failed parse;
 * anything else (STUN 0-3, DTLS 20-63, ...) to aioice's own method.
 */
typedef struct {
    PyObject_HEAD
    Path *path;
    PyObject *fallback; /* the protocol's own datagram_received */
    PyObject *component;
    vectorcallfunc vectorcall;
} Entry;

static PyObject *Path_receive(Path *p, PyObject *const *args, Py_ssize_t nargs);

static PyObject *
Entry_vectorcall(Entry *e, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 2 && kwnames == NULL && PyBytes_Check(args[0]) && e->path->ingest != NULL) {
        Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
        if (len > 0 && d[0] > 127 && d[0] < 192) {
            PyObject *receive_args[2] = {args[0], e->component};
            return Path_receive(e->path, receive_args, 2);
        }
    }
    return PyObject_Vectorcall(e->fallback, args, nargsf, kwnames);
}

static PyObject *
Entry_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "fallback", "component", NULL};
    PyObject *path, *fallback, *component;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!:Entry", kwlist, &PathType, &path, &fallback,
                                     &PyLong_Type, &component))
        return NULL;
    Entry *e = (Entry *)type->tp_alloc(type, 0);
    if (e == NULL)
        return NULL;
    Py_INCREF(path);
    e->path = (Path *)path;
    Py_INCREF(fallback);
    e->fallback = fallback;
    Py_INCREF(component);
    e->component = component;
    e->vectorcall = (vectorcallfunc)Entry_vectorcall;
    return (PyObject *)e;
}

static int
Entry_traverse(Entry *e, visitproc visit, void *arg)
{
    Py_VISIT(e->path);
    Py_VISIT(e->fallback);
    Py_VISIT(e->component);
    return 0;
}

static int
Entry_clear(Entry *e)
{
    Py_CLEAR(e->path);
    Py_CLEAR(e->fallback);
    Py_CLEAR(e->component);
    return 0;
}

static void
Entry_dealloc(Entry *e)
{
    PyObject_GC_UnTrack(e);
    Entry_clear(e);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static PyMemberDef Entry_members[] = {
    {"path", T_OBJECT, offsetof(Entry, path), READONLY, "The Path RTP and RTCP go to."},
    {"fallback", T_OBJECT, offsetof(Entry, fallback), READONLY, "aioice's datagram_received."},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Entry, vectorcall), READONLY, NULL},
    {NULL}};

static PyTypeObject EntryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._ingest.Entry",
    .tp_doc = PyDoc_STR("A StunProtocol's datagram_received that sends RTP and RTCP to a Path."),
    .tp_basicsize = sizeof(Entry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Entry_new,
    .tp_dealloc = (destructor)Entry_dealloc,
    .tp_traverse = (traverseproc)Entry_traverse,
    .tp_clear = (inquiry)Entry_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Entry, vectorcall),
    .tp_members = Entry_members,
};

/* ================================================================ Reader */

/*
 * The reader callback of a StunProtocol's socket, in place of asyncio's
 * _SelectorDatagramTransport._read_ready (which the event loop calls when the
 * socket is readable): recvmsg in C, RTP and RTCP straight to Path.receive
 * (as the Entry does), anything else to aioice's datagram_received with the
 * sender's (host, port). asyncio reads one datagram per wake-up and formats
 * every sender's address as a string; this reads what is waiting, up to
 * READ_BATCH, and formats an address only for what aioice gets. Errors as
 * _read_ready: EAGAIN ends the batch, another OSError goes to the protocol's
 * error_received, nothing is read once the transport has lost its connection.
 * Each datagram is read with the kernel's time of receipt (SO_TIMESTAMPNS), from
 * which an RTP packet that the fan-out forwards is timed (the forward delay).
 */
#define READ_BATCH 16
#define READ_BUFFER 65536

typedef struct {
    PyObject_HEAD
    Entry *entry;
    PyObject *transport; /* the asyncio datagram transport (_conn_lost, _protocol) */
    int fd;
    unsigned long long batches, datagrams;
    vectorcallfunc vectorcall;
} Reader;

static unsigned char read_buffer[READ_BUFFER];
static PyObject *s_conn_lost, *s_protocol, *s_error_received;

/* The kernel's receipt time of a datagram read with recvmsg (SO_TIMESTAMPNS), or NULL. */
static const struct timespec *
arrival_time(struct msghdr *msg)
{
    if (msg->msg_flags & MSG_CTRUNC)
        return NULL;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec)))
            return (const struct timespec *)CMSG_DATA(c);
    }
    return NULL;
}

/* Read and handle up to READ_BATCH datagrams. The arrivals of forwarded packets whose
 * copies wait in the fan-out's batch are added to `queued` (*n_queued of them), to be
 * timed once the batch is sent; the others are timed here. */
static PyObject *
reader_read(Reader *r, struct timespec *queued, int *n_queued)
{
    for (int i = 0; i < READ_BATCH; i++) {
        struct sockaddr_storage ss;
        struct iovec iov = {.iov_base = read_buffer, .iov_len = READ_BUFFER};
        union {
            char buffer[CMSG_SPACE(sizeof(struct timespec))];
            struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_name = &ss,
                             .msg_namelen = sizeof(ss),
                             .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
        ssize_t n = recvmsg(r->fd, &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            /* _read_ready: self._protocol.error_received(exc) */
            PyErr_SetFromErrno(PyExc_OSError);
            PyObject *exc = fetch_exception();
            PyObject *protocol = PyObject_GetAttr(r->transport, s_protocol);
            PyObject *res = protocol ? PyObject_CallMethodOneArg(protocol, s_error_received, exc) : NULL;
            Py_XDECREF(protocol);
            Py_XDECREF(exc);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
            break;
        }
        r->datagrams += 1;
        PyObject *data = PyBytes_FromStringAndSize((const char *)read_buffer, n);
        if (data == NULL)
            return NULL;
        PyObject *res;
        if (n > 0 && read_buffer[0] > 127 && read_buffer[0] < 192 && r->entry->path->ingest != NULL) {
            /* RTP (not RTCP) that arrived with the kernel's time: timed if the fan-out
             * sends a copy of it. */
            const struct timespec *arrival = NULL;
            if (fanout_datagrams_sent != NULL && is_rtp(read_buffer, n))
                arrival = arrival_time(&msg);
            unsigned long long sent_before = arrival ? *fanout_datagrams_sent : 0;
            unsigned long long queued_before = fanout_batch ? fanout_batch->queued : 0;
            if (fanout_batch != NULL)
                fanout_batch->arrival = arrival;
            PyObject *receive_args[2] = {data, r->entry->component};
            res = Path_receive(r->entry->path, receive_args, 2);
            if (fanout_batch != NULL)
                fanout_batch->arrival = NULL;
            if (arrival != NULL && *fanout_datagrams_sent != sent_before) {
                if (fanout_batch != NULL && fanout_batch->queued != queued_before)
                    queued[(*n_queued)++] = *arrival; /* its last copy goes out with the batch */
                else
                    delay_histogram_record(&forward_delay, arrival);
            }
        }
        else {
            PyObject *addr = address_tuple(&ss);
            if (addr == NULL) {
                Py_DECREF(data);
                return NULL;
            }
            PyObject *fallback_args[2] = {data, addr};
            res = PyObject_Vectorcall(r->entry->fallback, fallback_args, 2, NULL);
            Py_DECREF(addr);
        }
        Py_DECREF(data);
        if (res == NULL)
            return NULL; /* as from _read_ready: the event loop logs it */
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}

static PyObject *
Reader_vectorcall(Reader *r, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *lost = PyObject_GetAttr(r->transport, s_conn_lost);
    if (lost == NULL)
        return NULL;
    int is_lost = PyObject_IsTrue(lost);
    Py_DECREF(lost);
    if (is_lost)
        return is_lost < 0 ? NULL : Py_NewRef(Py_None);
    r->batches += 1;
    /* The fan-out queues the copies of what is read here and sends them at the end, a
     * subscriber's copies of a burst in one GSO send (see batch_flush in _fanout.c). */
    struct timespec queued[READ_BATCH];
    int n_queued = 0;
    int batching = fanout_batch != NULL && !fanout_batch->open;
    if (batching)
        fanout_batch->open = 1;
    PyObject *result = reader_read(r, queued, &n_queued);
    if (batching) {
        fanout_batch->open = 0;
        fanout_batch->flush(); /* raises nothing; keeps an exception of reader_read's */
    }
    for (int i = 0; i < n_queued; i++)
        delay_histogram_record(&forward_delay, &queued[i]);
    return result;
}

static PyObject *
Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"entry", "transport", "fd", NULL};
    PyObject *entry, *transport;
    int fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!Oi:Reader", kwlist, &EntryType, &entry, &transport, &fd))
        return NULL;
    Reader *r = (Reader *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    Py_INCREF(entry);
    r->entry = (Entry *)entry;
    Py_INCREF(transport);
    r->transport = transport;
    r->fd = fd;
    r->vectorcall = (vectorcallfunc)Reader_vectorcall;
    /* The kernel notes each datagram's arrival (the forward delay's start); where it
     * cannot, no datagram carries a time and nothing is timed. */
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
    return (PyObject *)r;
}

static int
Reader_traverse(Reader *r, visitproc visit, void *arg)
{
    Py_VISIT(r->entry);
    Py_VISIT(r->transport);
    return 0;
}

static int
Reader_clear(Reader *r)
{
    Py_CLEAR(r->entry);
    Py_CLEAR(r->transport);
    return 0;
}

static void
Reader_dealloc(Reader *r)
{
    PyObject_GC_UnTrack(r);
    Reader_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMemberDef Reader_members[] = {
    {"batches", T_ULONGLONG, offsetof(Reader, batches), READONLY, "Times the event loop called it."},
    {"datagrams", T_ULONGLONG, offsetof(Reader, datagrams), READONLY, "Datagrams read."},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Reader, vectorcall), READONLY, NULL},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._ingest.Reader",
    .tp_doc = PyDoc_STR("A datagram socket's reader callback: RTP/RTCP to a Path, the rest to aioice."),
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Reader_new,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Reader, vectorcall),
    .tp_members = Reader_members,
};

/* ================================================================ module */

static PyObject *
module_configure(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rtp_packet", "header_extensions", NULL};
    PyObject *rtp, *ext;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!:configure", kwlist, &PyType_Type, &rtp, &PyType_Type, &ext))
        return NULL;
    Py_INCREF(rtp);
    Py_XSETREF(rtp_packet_type, rtp);
    Py_INCREF(ext);
    Py_XSETREF(header_extensions_type, ext);
    Py_RETURN_NONE;
}

static PyObject *
module_configure_forwarding(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"packet_tap", "on_packet", "forward", "audio_level_meter", "datagrams_sent", "batch",
                             NULL};
    PyObject *tap, *on_packet, *forward, *meter_type, *sent = Py_None, *shared = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOO!|OO:configure_forwarding", kwlist, &PyType_Type, &tap,
                                     &on_packet, &forward, &PyType_Type, &meter_type, &sent, &shared))
        return NULL;
    unsigned long long *counter = NULL;
    if (sent != Py_None) {
        counter = PyCapsule_GetPointer(sent, "server.media._fanout.datagrams_sent");
        if (counter == NULL)
            return NULL;
    }
    FanoutBatch *batch = NULL;
    if (shared != Py_None) {
        batch = PyCapsule_GetPointer(shared, FANOUT_BATCH_CAPSULE);
        if (batch == NULL)
            return NULL;
    }
    fanout_datagrams_sent = counter;
    Py_INCREF(sent);
    Py_XSETREF(fanout_datagrams_sent_capsule, sent);
    fanout_batch = batch;
    Py_INCREF(shared);
    Py_XSETREF(fanout_batch_capsule, shared);
    Py_INCREF(meter_type);
    Py_XSETREF(audio_level_meter_type, meter_type);
    Py_INCREF(tap);
    Py_XSETREF(packet_tap_type, tap);
    Py_INCREF(on_packet);
    Py_XSETREF(forwarder_on_packet, on_packet);
    if (forward == Py_None) {
        Py_CLEAR(fanout_forward);
    }
    else {
        Py_INCREF(forward);
        Py_XSETREF(fanout_forward, forward);
    }
    Py_RETURN_NONE;
}

static PyObject *
module_configure_counting(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"track_counter", "monotonic", "tallied_statistics", NULL};
    PyObject *counter_type, *monotonic, *statistics_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!:configure_counting", kwlist, &PyType_Type, &counter_type,
                                     &monotonic, &PyType_Type, &statistics_type))
        return NULL;
    Py_INCREF(counter_type);
    Py_XSETREF(track_counter_type, counter_type);
    Py_INCREF(monotonic);
    Py_XSETREF(monotonic_function, monotonic);
    Py_INCREF(statistics_type);
    Py_XSETREF(tallied_statistics_type, statistics_type);
    Py_RETURN_NONE;
}

static PyObject *
module_observe_level(PyObject *module, PyObject *args)
{
    PyObject *meter;
    long level;
    double now;
    if (!PyArg_ParseTuple(args, "Old:observe_level", &meter, &level, &now))
        return NULL;
    if (meter_observe(meter, level, now) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ================================================================ wait */

/*
 * The wait of asyncio's selector event loop (EpollSelector.select's epoll_wait),
 * for server/media/event_loop.py's MediaSelector: a socket whose only ready event
 * is "readable" and whose reader is inline (a compiled Reader) is read right here,
 * and the wait goes on, without returning to the loop's Python (_run_once, the
 * selector's mapping, the Handle) for each datagram a publisher sends. It returns
 * as the selector would -- the other (fd, events) -- as soon as there are any,
 * when the timeout is up, or when what ran inline gave the loop work: a callback
 * ready (loop._ready), a timer added (loop._scheduled), or a signal to handle.
 */
#define WAIT_MAX_EVENTS 64

/* Readers run inside the wait, since the module was loaded (tests, diagnostics). */
static unsigned long long inline_runs;

/* Run one inline reader in its context; a failure goes to on_error(reader, exc). */
static int
run_inline(PyObject *entry, PyObject *on_error)
{
    PyObject *reader = PyTuple_GET_ITEM(entry, 0);
    PyObject *context = PyTuple_GET_ITEM(entry, 1);
    if (PyContext_Enter(context) < 0)
        return -1;
    PyObject *r = PyObject_CallNoArgs(reader);
    int exited = PyContext_Exit(context);
    if (r != NULL) {
        Py_DECREF(r);
        return exited;
    }
    PyObject *exc = fetch_exception();
    if (exited < 0) {
        Py_XDECREF(exc);
        return -1;
    }
    PyObject *res = PyObject_CallFunctionObjArgs(on_error, reader, exc ? exc : Py_None, NULL);
    Py_XDECREF(exc);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *
module_wait(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"epoll_fd", "timeout", "inline", "ready", "scheduled", "max_events", "on_error", NULL};
    int epfd, max_events;
    PyObject *timeout_obj, *inline_map, *ready, *scheduled, *on_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iOO!OO!iO:wait", kwlist, &epfd, &timeout_obj, &PyDict_Type,
                                     &inline_map, &ready, &PyList_Type, &scheduled, &max_events, &on_error))
        return NULL;
    double timeout = -1.0; /* None: wait until something happens */
    if (timeout_obj != Py_None) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0)
            timeout = 0;
    }
    if (max_events < 1)
        max_events = 1;
    if (max_events > WAIT_MAX_EVENTS)
        max_events = WAIT_MAX_EVENTS;
    double deadline = timeout < 0 ? 0 : monotonic_seconds() + timeout;
    Py_ssize_t scheduled_count = PyList_GET_SIZE(scheduled);
    PyObject *scheduled_first = scheduled_count > 0 ? Py_NewRef(PyList_GET_ITEM(scheduled, 0)) : NULL;
    struct epoll_event events[WAIT_MAX_EVENTS];
    PyObject *result = NULL;
    for (;;) {
        int ms = -1;
        if (timeout >= 0) {
            double left = deadline - monotonic_seconds();
            /* rounded up, as EpollSelector.select does: never wake before a timer is due */
            ms = left <= 0 ? 0 : (int)ceil(left * 1000.0);
        }
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, events, max_events, ms);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR) { /* as EpollSelector.select: an interrupted wait returns nothing */
                result = PyList_New(0);
                break;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        result = PyList_New(0);
        if (result == NULL)
            break;
        int failed = 0;
        for (int i = 0; i < n && !failed; i++) {
            int fd = events[i].data.fd;
            uint32_t ev = events[i].events;
            PyObject *entry = NULL;
            if (ev == EPOLLIN) {
                PyObject *key = PyLong_FromLong(fd);
                if (key == NULL) {
                    failed = 1;
                    break;
                }
                entry = PyDict_GetItemWithError(inline_map, key);
                Py_DECREF(key);
                if (entry == NULL && PyErr_Occurred()) {
                    failed = 1;
                    break;
                }
            }
            if (entry != NULL && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2) {
                inline_runs += 1;
                Py_INCREF(entry);
                failed = run_inline(entry, on_error) < 0;
                Py_DECREF(entry);
            }
            else {
                PyObject *item = Py_BuildValue("(iI)", fd, (unsigned int)ev);
                failed = item == NULL || PyList_Append(result, item) < 0;
                Py_XDECREF(item);
            }
        }
        if (failed) {
            Py_CLEAR(result);
            break;
        }
        if (PyList_GET_SIZE(result) > 0 || n == 0 || timeout == 0)
            break;
        /* Only inline reads: go on waiting, unless they gave the loop work. */
        if (PyErr_CheckSignals() < 0) {
            Py_CLEAR(result);
            break;
        }
        Py_ssize_t pending = PyObject_Length(ready);
        if (pending != 0) {
            if (pending < 0)
                Py_CLEAR(result);
            break;
        }
        Py_ssize_t count = PyList_GET_SIZE(scheduled);
        if (count != scheduled_count || (count > 0 && PyList_GET_ITEM(scheduled, 0) != scheduled_first))
            break;
        if (timeout > 0 && monotonic_seconds() >= deadline)
            break;
        Py_DECREF(result);
        result = NULL;
    }
    Py_XDECREF(scheduled_first);
    return result;
}

static PyObject *
module_forward_delays(PyObject *module, PyObject *unused)
{
    return delay_histogram_read(&forward_delay);
}

static PyObject *
module_inline_runs(PyObject *module, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(inline_runs);
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))module_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(rtp_packet, header_extensions): aiortc's classes."},
    {"configure_forwarding", (PyCFunction)(void (*)(void))module_configure_forwarding,
     METH_VARARGS | METH_KEYWORDS,
     "configure_forwarding(packet_tap, on_packet, forward, audio_level_meter, datagrams_sent=None,\n"
     "batch=None): PacketTap, the function TrackForwarder.on_packet (whose steady state runs\n"
     "here), fanout.forward (or None), AudioLevelMeter (whose observe runs here), the fan-out's\n"
     "capsule of datagrams sent (None: no forward delay is timed) and its capsule of the batch\n"
     "(None: copies are neither timed nor batched)."},
    {"configure_counting", (PyCFunction)(void (*)(void))module_configure_counting,
     METH_VARARGS | METH_KEYWORDS,
     "configure_counting(track_counter, monotonic, tallied_statistics): the load tool's TrackCounter\n"
     "(whose Tally counts a receiver's packets here when its clock is `monotonic`), time.monotonic,\n"
     "and TalliedStatistics (the receiver statistics that read a Tally)."},
    {"observe_level", (PyCFunction)(void (*)(void))module_observe_level, METH_VARARGS,
     "observe_level(meter, level, now): AudioLevelMeter.observe as the compiled forwarding runs it."},
    {"forward_delays", (PyCFunction)module_forward_delays, METH_NOARGS,
     "forward_delays() -> (bounds, counts, sum): the forward delay's histogram in this process, in\n"
     "seconds: upper bounds, counts per bucket (not cumulative; the last is +Inf), their sum."},
    {"inline_runs", (PyCFunction)module_inline_runs, METH_NOARGS,
     "inline_runs() -> readers run inside wait() so far, in this process."},
    {"wait", (PyCFunction)(void (*)(void))module_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(epoll_fd, timeout, inline, ready, scheduled, max_events, on_error) -> [(fd, events)]:\n"
     "EpollSelector.select's wait, reading the sockets of `inline` ({fd: (reader, context)}) in\n"
     "place until anything else is ready, the timeout is up, or the loop has work (see _ingest.c)."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "server.media._ingest",
    .m_doc = "The direct ingest's steady state and aiortc's REMB estimator, in C (see _ingest.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

#define INTERN(var, text)                               \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;

PyMODINIT_FUNC
PyInit__ingest(void)
{
    INTERN(s_rx_bytes, "_RTCDtlsTransport__rx_bytes");
    INTERN(s_rx_packets, "_RTCDtlsTransport__rx_packets");
    INTERN(s_state, "_state");
    INTERN(s_rx_srtp, "_rx_srtp");
    INTERN(s_ext_map, "_rtp_header_extensions_map");
    INTERN(s_ext_ids, "_HeaderExtensionsMap__ids");
    INTERN(s_router, "_rtp_router");
    INTERN(s_ssrc_table, "ssrc_table");
    INTERN(s_pt_table, "payload_type_table");
    INTERN(s_enabled, "_enabled");
    INTERN(s_estimator, "_RTCRtpReceiver__remote_bitrate_estimator");
    INTERN(s_rtcp_ssrc, "_RTCRtpReceiver__rtcp_ssrc");
    INTERN(s_active_ssrc, "_RTCRtpReceiver__active_ssrc");
    INTERN(s_codecs, "_RTCRtpReceiver__codecs");
    INTERN(s_streams, "_RTCRtpReceiver__remote_streams");
    INTERN(s_nack, "_RTCRtpReceiver__nack_generator");
    INTERN(s_jitter, "_RTCRtpReceiver__jitter_buffer");
    INTERN(s_decoder_error, "_RTCRtpReceiver__decoder_error");
    INTERN(s_mid, "mid");
    INTERN(s_repaired_rid, "repaired_rtp_stream_id");
    INTERN(s_rid, "rtp_stream_id");
    INTERN(s_abs_send_time, "abs_send_time");
    INTERN(s_toffset, "transmission_offset");
    INTERN(s_audio_level, "audio_level");
    INTERN(s_twcc, "transport_sequence_number");
    INTERN(s_base_seq, "base_seq");
    INTERN(s_max_seq, "max_seq");
    INTERN(s_cycles, "cycles");
    INTERN(s_packets_received, "packets_received");
    INTERN(s_clockrate, "_clockrate");
    INTERN(s_jitter_q4, "_jitter_q4");
    INTERN(s_last_arrival, "_last_arrival");
    INTERN(s_last_timestamp, "_last_timestamp");
    INTERN(s_missing, "missing");
    INTERN(s_flag, "_flag");
    INTERN(s_name, "name");
    INTERN(s_version, "version");
    INTERN(s_marker, "marker");
    INTERN(s_payload_type, "payload_type");
    INTERN(s_sequence_number, "sequence_number");
    INTERN(s_timestamp, "timestamp");
    INTERN(s_ssrc, "ssrc");
    INTERN(s_csrc, "csrc");
    INTERN(s_extensions, "extensions");
    INTERN(s_payload, "payload");
    INTERN(s_padding_size, "padding_size");
    INTERN(s_add, "add");
    INTERN(s_conn_lost, "_conn_lost");
    INTERN(s_protocol, "_protocol");
    INTERN(s_error_received, "error_received");
    INTERN(s_handler, "handler");
    INTERN(s_packets, "packets");
    INTERN(s_f_ended, "_ended");
    INTERN(s_f_pli_pending, "_pli_pending");
    INTERN(s_f_other_sinks, "_other_sinks");
    INTERN(s_f_is_video, "_is_video");
    INTERN(s_f_is_vp8, "_is_vp8");
    INTERN(s_f_packets_received, "packets_received");
    INTERN(s_f_source_ssrc, "_source_ssrc");
    INTERN(s_f_highest_seq, "_highest_seq");
    INTERN(s_f_packets_expected, "packets_expected");
    INTERN(s_f_arrival_time, "arrival_time");
    INTERN(s_f_arrival_ntp, "arrival_ntp");
    INTERN(s_f_extension_value, "extension_value");
    INTERN(s_f_frames_received, "frames_received");
    INTERN(s_f_audio_level, "_audio_level");
    INTERN(s_m_smoothed, "smoothed");
    INTERN(s_m_last_update, "last_update");
    INTERN(s_m_smoothing, "smoothing");
    INTERN(s_m_observe, "observe");
    INTERN(s_c_clock, "clock");
    INTERN(s_c_tally, "tally");
    INTERN(s_f_fast_streams, "_fast_streams");
    INTERN(s_f_fast_sinks, "_fast_sinks");
    INTERN(s_f_audio_failed, "_audio_level_failed");
    INTERN(s_f_fanout_failed, "_fanout_failed");
    INTERN(s_f_feed_pending, "_feed_pending");
    INTERN(s_handle_rtcp, "_handle_rtcp");
    INTERN(s_handle_decrypted, "_handle_decrypted");
    INTERN(s_handle_packet, "_handle_packet");
    INTERN(s_send_remb, "_send_remb");
    INTERN(s_after_jitter, "_after_jitter");
    INTERN(s_report_failure, "_report_failure");
    INTERN(s_handle_rtp, "_handle_rtp");
    if ((empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (PyType_Ready(&EstimatorType) < 0 || PyType_Ready(&PathType) < 0 || PyType_Ready(&EntryType) < 0 ||
        PyType_Ready(&ReaderType) < 0 || PyType_Ready(&TallyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EstimatorType);
    Py_INCREF(&PathType);
    Py_INCREF(&EntryType);
    Py_INCREF(&ReaderType);
    Py_INCREF(&TallyType);
    if (PyModule_AddObject(m, "Estimator", (PyObject *)&EstimatorType) < 0 ||
        PyModule_AddObject(m, "Path", (PyObject *)&PathType) < 0 ||
        PyModule_AddObject(m, "Entry", (PyObject *)&EntryType) < 0 ||
        PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddObject(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
