/*
 * The forwarding fan-out in C: one call per received packet sends it to every
 * subscriber of the track (see docs/forwarding.md and server/media/fanout.py).
 *
 * Why C: after the Python rewrite, what was left per packet per subscriber was
 * ~20 us of interpreter work around two system-level operations (libsrtp's
 * srtp_protect, ~4 us, and the kernel's sendto, ~9 us). Python cannot call
 * those with less overhead; a C loop can, which is what a C SFU pays.
 *
 * A Stream is one subscriber's outgoing RTP stream. It is at once:
 *   - the sequence/timestamp rewriter, a line-by-line port of
 *     server/media/rtp_rewriter.py's RtpRewriter (same methods, same state), so
 *     that the Python path (ForwardingSender.on_packet) and this one share it;
 *   - the prebuilt header (server/media/rtp_header.py's OutgoingHeader layout);
 *   - the sender-report counters and the NACK history (a SentHistory, defined
 *     here: each copy's header is copied into a slot in C, its payload referenced;
 *     server/media/sent_history.py is the reference and says why);
 *   - once connected, the SRTP session (libsrtp's srtp_protect, reached
 *     through pylibsrtp's cffi module as a function pointer) and the socket.
 *
 * forward() handles the common case only: an enabled, connected stream and the
 * newest (or a late-but-in-window) packet of the current source. Anything else
 * (gating, resync, renumbering, a full socket buffer, a closed transport, an
 * oversized packet) is returned to Python, which runs the reference path for
 * that subscriber with the same state. So every rule lives in Python once; C
 * repeats only the arithmetic of the steady state.
 *
 * Single-threaded: called with the GIL held, from the event loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "_forward_delay.h"
#include "_socket_address.h"

#define SEQ_HALF 32768
/* pylibsrtp's session buffer is 1500 bytes; the same bound applies here. */
#define BUFFER_SIZE 1500
#define HEADER_MAX 256
/* libsrtp's SRTP_MAX_TRAILER_LEN (authentication tag + MKI): what protect may append. */
#define SRTP_MAX_TRAILER_LEN 144

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

/* Datagrams forward() has sent in this process. _ingest.c reads it through the
 * capsule `datagrams_sent` to tell whether a publisher's packet was forwarded, and
 * so to time it from its arrival to its last copy sent (the forward delay). */
static unsigned long long datagrams_sent;

/* The copy delay: from the kernel's receipt of the packet being forwarded to each copy
 * sent, for packets the compiled ingest read with that time and tells of through
 * `batch` (the capsule `batch`) while it handles them. Read by copy_delays(). */
static DelayHistogram copy_delay;
static void batch_flush(void);
static FanoutBatch batch = {.flush = batch_flush};

/* ------------------------------------------------------------- the NACK history */

/* A header up to this long is kept in its slot; a longer one (never one this fan-out
 * builds: 12 bytes and an extension block of a few words) as a bytes object. */
#define HISTORY_HEADER_INLINE 48

typedef struct {
    PyObject *payload;     /* NULL: an empty slot (nothing sent there yet) */
    PyObject *long_header; /* a header longer than HISTORY_HEADER_INLINE, else NULL */
    unsigned char header_len;
    unsigned char header[HISTORY_HEADER_INLINE];
} HistorySlot;

/* server/media/sent_history.py's SentHistory, with the slots in C. It holds bytes
 * objects only (which can be in no reference cycle): not tracked by the collector. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t size;
    /* Each slot's sequence number + 1 (0: nothing sent there yet): all that
     * sent_among reads. 4 bytes a slot, apart from the packets, so that a stream's
     * marks stay in cache where its 72-byte slots (36 kB a stream) do not. */
    uint32_t *marks;
    /* The packets themselves; NULL for a stream whose receiver cannot NACK (no
     * negotiated `nack`: Opus), which keeps the numbers only. */
    HistorySlot *slots;
} SentHistory;

static PyTypeObject SentHistoryType;

static void
history_slot_clear(HistorySlot *slot)
{
    Py_CLEAR(slot->payload);
    Py_CLEAR(slot->long_header);
}

/* Keep a packet just sent in its sequence number's slot. `payload` is a bytes object
 * (referenced); `header` (at least 4 bytes) is copied. 0, or -1 with an exception. */
static int
history_put(SentHistory *h, const unsigned char *header, Py_ssize_t header_len, PyObject *payload)
{
    unsigned int seq = ((unsigned int)header[2] << 8) | header[3];
    unsigned int index = seq % (unsigned int)h->size;
    if (h->slots == NULL) {
        h->marks[index] = seq + 1;
        return 0;
    }
    HistorySlot *slot = &h->slots[index];
    PyObject *long_header = NULL;
    if (header_len > HISTORY_HEADER_INLINE) {
        long_header = PyBytes_FromStringAndSize((const char *)header, header_len);
        if (long_header == NULL)
            return -1;
    }
    else {
        memcpy(slot->header, header, (size_t)header_len);
    }
    Py_INCREF(payload);
    /* The old references last: releasing them runs no code that could reach this slot
     * (bytes objects), but keep the slot whole before any release all the same. */
    PyObject *old_payload = slot->payload, *old_header = slot->long_header;
    slot->payload = payload;
    slot->long_header = long_header;
    slot->header_len = (unsigned char)(long_header ? 0 : header_len);
    h->marks[index] = seq + 1; /* the slot is whole: it may be read as this number's */
    Py_XDECREF(old_payload);
    Py_XDECREF(old_header);
    return 0;
}

static PyObject *
SentHistory_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", "packets", NULL};
    Py_ssize_t size;
    int packets = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|p", kwlist, &size, &packets))
        return NULL;
    if (size <= 0 || size > 65536 || 65536 % size != 0) {
        PyErr_SetString(PyExc_ValueError, "the size must be a power of two dividing 65536");
        return NULL;
    }
    SentHistory *h = (SentHistory *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    h->marks = PyMem_Calloc((size_t)size, sizeof(uint32_t));
    if (h->marks == NULL) {
        Py_DECREF(h);
        return PyErr_NoMemory();
    }
    if (packets) {
        h->slots = PyMem_Calloc((size_t)size, sizeof(HistorySlot));
        if (h->slots == NULL) {
            Py_DECREF(h);
            return PyErr_NoMemory();
        }
    }
    h->size = size;
    return (PyObject *)h;
}

static void
SentHistory_dealloc(SentHistory *h)
{
    if (h->slots != NULL) {
        for (Py_ssize_t i = 0; i < h->size; i++)
            history_slot_clear(&h->slots[i]);
        PyMem_Free(h->slots);
    }
    PyMem_Free(h->marks);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static Py_ssize_t
SentHistory_len(SentHistory *h)
{
    return h->size;
}

static PyObject *
SentHistory_put(SentHistory *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "put(header: bytes, payload: bytes)");
        return NULL;
    }
    Py_ssize_t header_len = PyBytes_GET_SIZE(args[0]);
    if (header_len < 4) {
        PyErr_SetString(PyExc_ValueError, "an RTP header has at least 4 bytes");
        return NULL;
    }
    if (history_put(h, (const unsigned char *)PyBytes_AS_STRING(args[0]), header_len, args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
history_slot_entry(const HistorySlot *slot)
{
    PyObject *header = slot->long_header;
    if (header != NULL)
        Py_INCREF(header);
    else if (!(header = PyBytes_FromStringAndSize((const char *)slot->header, slot->header_len)))
        return NULL;
    PyObject *entry = PyTuple_Pack(2, header, slot->payload);
    Py_DECREF(header);
    return entry;
}

static PyObject *
SentHistory_get(SentHistory *h, PyObject *arg)
{
    long long number = PyLong_AsLongLong(arg);
    if (number == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t index = (Py_ssize_t)(((number % h->size) + h->size) % h->size);
    if (h->slots == NULL || h->marks[index] != (uint32_t)(number & 0xFFFF) + 1)
        Py_RETURN_NONE;
    return history_slot_entry(&h->slots[index]);
}

static PyObject *
SentHistory_clear_slots(SentHistory *h, PyObject *Py_UNUSED(ignored))
{
    memset(h->marks, 0, (size_t)h->size * sizeof(uint32_t));
    if (h->slots != NULL) {
        for (Py_ssize_t i = 0; i < h->size; i++)
            history_slot_clear(&h->slots[i]);
    }
    Py_RETURN_NONE;
}

static PyObject *
SentHistory_keeps_packets(SentHistory *h, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(h->slots != NULL);
}

static PyObject *
SentHistory_sequence_numbers(SentHistory *h, PyObject *Py_UNUSED(ignored))
{
    PyObject *numbers = PyList_New(0);
    if (numbers == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < h->size; i++) {
        if (h->marks[i] == 0)
            continue;
        PyObject *n = PyLong_FromLong((long)h->marks[i] - 1);
        if (n == NULL || PyList_Append(numbers, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(numbers);
            return NULL;
        }
        Py_DECREF(n);
    }
    if (PyList_Sort(numbers) < 0) {
        Py_DECREF(numbers);
        return NULL;
    }
    return numbers;
}

/* sent_among(first, last) -> (sent, known): see the reference. Run for each receiver
 * report of each subscriber's track (~75 numbers each for a video). */
static PyObject *
SentHistory_sent_among(SentHistory *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sent_among(first: int, last: int)");
        return NULL;
    }
    long long first = PyLong_AsLongLong(args[0]);
    long long last = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    long long size = (long long)h->size;
    long long sent = 0, known = 0;
    long long start = last - size + 1 > first ? last - size + 1 : first;
    for (long long number = start; number <= last; number++) {
        uint32_t mark = h->marks[((number % size) + size) % size];
        if (mark == 0) {
            known++; /* nothing was ever sent in this slot */
            continue;
        }
        long long ahead = ((long long)mark - 1 - number) & 0xFFFF;
        if (ahead == 0) {
            sent++;
            known++;
        }
        else if (ahead >= 0x8000) {
            known++; /* an older packet holds the slot: this number was never sent */
        }
    }
    return Py_BuildValue("(LL)", sent, known);
}

static PyMethodDef SentHistory_methods[] = {
    {"put", (PyCFunction)(void (*)(void))SentHistory_put, METH_FASTCALL,
     "put(header, payload): keep a packet just sent (header: as sent, before encryption, at\n"
     "least 4 bytes), in its sequence number's slot."},
    {"get", (PyCFunction)SentHistory_get, METH_O,
     "get(sequence_number) -> (header, payload) or None: the packet sent with this number, if\n"
     "its slot still holds it."},
    {"clear", (PyCFunction)SentHistory_clear_slots, METH_NOARGS, "clear(): forget every packet."},
    {"sequence_numbers", (PyCFunction)SentHistory_sequence_numbers, METH_NOARGS,
     "sequence_numbers() -> the sequence numbers held, ascending."},
    {"sent_among", (PyCFunction)(void (*)(void))SentHistory_sent_among, METH_FASTCALL,
     "sent_among(first, last) -> (sent, known): of the extended sequence numbers first..last,\n"
     "how many were sent, and how many the history can tell."},
    {NULL}};

static PyGetSetDef SentHistory_getset[] = {
    {"keeps_packets", (getter)SentHistory_keeps_packets, NULL,
     "Whether the packets are kept (for NACKs), not only their sequence numbers.", NULL},
    {NULL}};

static PySequenceMethods SentHistory_as_sequence = {
    .sq_length = (lenfunc)SentHistory_len,
};

static PyTypeObject SentHistoryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._fanout.SentHistory",
    .tp_doc = PyDoc_STR("SentHistory(size, packets=True): an outgoing stream's NACK history, "
                        "in C (see server/media/sent_history.py)."),
    .tp_basicsize = sizeof(SentHistory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = SentHistory_new,
    .tp_dealloc = (destructor)SentHistory_dealloc,
    .tp_as_sequence = &SentHistory_as_sequence,
    .tp_methods = SentHistory_methods,
    .tp_getset = SentHistory_getset,
};

typedef struct {
    PyObject_HEAD
    /* --- rewriter (RtpRewriter's fields) --- */
    unsigned int ssrc;
    int payload_type;
    int clock_rate;
    int late_window;
    int next_seq;
    int seq_offset;
    unsigned int ts_offset;
    unsigned int last_out_ts;
    double last_out_time;
    int has_last_out_time;
    long long source_ssrc; /* -1: none */
    long long highest;
    int has_highest;
    long long resync_point;
    int bad_seq; /* -1: none */
    unsigned long long late_dropped;
    /* --- header template --- */
    unsigned char header[HEADER_MAX];
    Py_ssize_t header_len;
    int has_extension;
    Py_ssize_t word_offset;
    unsigned int word_prefix;
    unsigned int value_mask;
    /* --- counters (sender reports) --- */
    unsigned long long packets_sent;
    unsigned long long octets_sent;
    unsigned long long last_ntp_time;
    unsigned long long last_rtp_timestamp;
    /* --- NACK history (shared with the Python channel) --- */
    SentHistory *history;
    /* --- gating (set by the Python sender) and output --- */
    int enabled;
    int connected;
    srtp_protect_fn protect;
    void *srtp;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    Py_ssize_t max_length;
    PyObject *keepalive;       /* the pylibsrtp Session: keeps `srtp` alive */
    PyObject *transport;       /* asyncio datagram transport (is_closing()) */
    int closing_attribute;     /* its is_closing() is asyncio's `return self._closing` */
    PyObject *dtls;            /* optional: object whose _state must be dtls_connected */
    PyObject *dtls_connected;
    PyObject *nominated;       /* optional: dict whose [1] must be `pair` */
    PyObject *pair;
    /* --- copies queued in the batch: 1-based indexes of its first and last entry --- */
    int batch_head;
    int batch_tail;
    int gso_refused; /* the kernel refused this destination a GSO send: one at a time */
    /* --- fast-path statistics --- */
    unsigned long long fast_sent;
    /* The sender is paused (last-N) or not running: its packets are dropped here,
     * as ForwardingSender._forward drops them first thing, not handed back. */
    char silent;
} Stream;

static PyObject *str_state, *str_is_closing, *str_closing, *str_sequence_number, *str_timestamp, *str_ssrc;
/* asyncio's _SelectorTransport.is_closing (looked up once), which returns self._closing */
static PyObject *selector_is_closing;
static PyObject *int_one;

/* ---------------------------------------------------------------- rewriter */

static void
rw_resync(Stream *s, int seq, unsigned int ssrc, unsigned int timestamp, double now)
{
    s->seq_offset = ((s->next_seq - seq) % 65536 + 65536) % 65536;
    if (s->source_ssrc != (long long)ssrc) {
        double elapsed = 0.0;
        if (s->has_last_out_time) {
            elapsed = now - s->last_out_time;
            if (elapsed < 0.0)
                elapsed = 0.0;
        }
        long long step = (long long)(elapsed * s->clock_rate);
        if (step < 1)
            step = 1;
        unsigned int target = (unsigned int)((s->last_out_ts + (unsigned long long)step) & 0xFFFFFFFFULL);
        s->ts_offset = target - timestamp; /* mod 2**32 */
        s->source_ssrc = ssrc;
    }
    s->resync_point = seq;
    s->highest = (long long)seq - 1;
    s->has_highest = 1;
    s->bad_seq = -1;
}

/* RtpRewriter.map_sequence: the outgoing sequence number, or -1 (drop). */
static int
rw_map(Stream *s, int seq, unsigned int ssrc, unsigned int timestamp, double now)
{
    if (!s->has_highest || s->source_ssrc != (long long)ssrc)
        rw_resync(s, seq, ssrc, timestamp, now);
    long long highest = s->highest;
    long long ext = highest + ((seq - highest + SEQ_HALF) & 0xFFFF) - SEQ_HALF;
    int newest;
    if (ext > highest) {
        s->highest = ext;
        s->bad_seq = -1;
        newest = 1;
    }
    else if (ext < highest - s->late_window) {
        if (seq != s->bad_seq) {
            s->bad_seq = (seq + 1) & 0xFFFF;
            s->late_dropped++;
            return -1;
        }
        rw_resync(s, seq, ssrc, timestamp, now);
        s->highest = seq;
        newest = 1;
    }
    else if (ext < s->resync_point) {
        s->late_dropped++;
        return -1;
    }
    else {
        newest = 0;
    }
    int out_seq = (seq + s->seq_offset) & 0xFFFF;
    if (newest) {
        s->next_seq = (out_seq + 1) & 0xFFFF;
        s->last_out_ts = timestamp + s->ts_offset;
        s->last_out_time = now;
        s->has_last_out_time = 1;
    }
    return out_seq;
}

static int
packet_fields(PyObject *packet, int *seq, unsigned int *ssrc, unsigned int *timestamp)
{
    PyObject *v;
    unsigned long x;
    if (!(v = PyObject_GetAttr(packet, str_sequence_number)))
        return -1;
    x = PyLong_AsUnsignedLong(v);
    Py_DECREF(v);
    if (x == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *seq = (int)(x & 0xFFFF);
    if (!(v = PyObject_GetAttr(packet, str_ssrc)))
        return -1;
    x = PyLong_AsUnsignedLong(v);
    Py_DECREF(v);
    if (x == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *ssrc = (unsigned int)x;
    if (!(v = PyObject_GetAttr(packet, str_timestamp)))
        return -1;
    x = PyLong_AsUnsignedLong(v);
    Py_DECREF(v);
    if (x == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *timestamp = (unsigned int)x;
    return 0;
}

static PyObject *monotonic; /* time.monotonic, RtpRewriter.resync's default clock */

static PyObject *
Stream_resync(Stream *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"packet", "now", NULL};
    PyObject *packet, *now_obj = Py_None;
    int seq;
    unsigned int ssrc, ts;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", kwlist, &packet, &now_obj))
        return NULL;
    if (packet_fields(packet, &seq, &ssrc, &ts) < 0)
        return NULL;
    double now;
    if (now_obj == Py_None) {
        PyObject *t = PyObject_CallNoArgs(monotonic);
        if (t == NULL)
            return NULL;
        now = PyFloat_AsDouble(t);
        Py_DECREF(t);
    }
    else {
        now = PyFloat_AsDouble(now_obj);
    }
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    rw_resync(s, seq, ssrc, ts, now);
    Py_RETURN_NONE;
}

static PyObject *
Stream_map_sequence(Stream *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"packet", "now", NULL};
    PyObject *packet;
    double now;
    int seq;
    unsigned int ssrc, ts;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Od", kwlist, &packet, &now))
        return NULL;
    if (packet_fields(packet, &seq, &ssrc, &ts) < 0)
        return NULL;
    return PyLong_FromLong(rw_map(s, seq, ssrc, ts, now));
}

/* ------------------------------------------------------------------ output */

static void
stream_disconnect(Stream *s)
{
    s->connected = 0;
    s->protect = NULL;
    s->srtp = NULL;
    s->fd = -1;
    Py_CLEAR(s->keepalive);
    Py_CLEAR(s->transport);
    Py_CLEAR(s->dtls);
    Py_CLEAR(s->dtls_connected);
    Py_CLEAR(s->nominated);
    Py_CLEAR(s->pair);
}

static PyObject *
Stream_connect(Stream *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"protect", "srtp", "session", "transport", "fd", "host", "port",
                             "max_length", "dtls", "dtls_connected", "nominated", "pair", NULL};
    unsigned long long protect_addr, srtp_addr;
    PyObject *session, *transport, *dtls = Py_None, *dtls_connected = Py_None;
    PyObject *nominated = Py_None, *pair = Py_None;
    int fd, port;
    const char *host;
    Py_ssize_t max_length;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KKOOisin|OOOO", kwlist, &protect_addr,
                                     &srtp_addr, &session, &transport, &fd, &host, &port,
                                     &max_length, &dtls, &dtls_connected, &nominated, &pair))
        return NULL;
    if (!protect_addr || !srtp_addr || fd < 0 || port <= 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "invalid SRTP session, socket or port");
        return NULL;
    }
    if (max_length <= 0 || max_length > BUFFER_SIZE - SRTP_MAX_TRAILER_LEN) {
        PyErr_SetString(PyExc_ValueError, "max_length out of range");
        return NULL;
    }
    if (nominated != Py_None && !PyDict_Check(nominated)) {
        PyErr_SetString(PyExc_TypeError, "nominated must be a dict");
        return NULL;
    }
    struct sockaddr_storage addr;
    socklen_t addrlen;
    memset(&addr, 0, sizeof(addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        addrlen = sizeof(*a4);
    }
    else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        addrlen = sizeof(*a6);
    }
    else {
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
        return NULL;
    }
    stream_disconnect(s);
    s->protect = (srtp_protect_fn)(uintptr_t)protect_addr;
    s->srtp = (void *)(uintptr_t)srtp_addr;
    s->fd = fd;
    s->addr = addr;
    s->addrlen = addrlen;
    s->max_length = max_length;
    Py_INCREF(session);
    s->keepalive = session;
    Py_INCREF(transport);
    s->transport = transport;
    /* asyncio's transports answer is_closing() from an attribute: read it, and save a
     * Python call per packet per subscriber (any other transport's method is called). */
    if (selector_is_closing == NULL) {
        PyObject *module = PyImport_ImportModule("asyncio.selector_events");
        PyObject *cls = module ? PyObject_GetAttrString(module, "_SelectorTransport") : NULL;
        selector_is_closing = cls ? PyObject_GetAttr(cls, str_is_closing) : NULL;
        Py_XDECREF(cls);
        Py_XDECREF(module);
        PyErr_Clear();
    }
    PyObject *method = PyObject_GetAttr((PyObject *)Py_TYPE(transport), str_is_closing);
    s->closing_attribute = method != NULL && method == selector_is_closing;
    Py_XDECREF(method);
    PyErr_Clear();
    if (dtls != Py_None) {
        Py_INCREF(dtls);
        s->dtls = dtls;
        Py_INCREF(dtls_connected);
        s->dtls_connected = dtls_connected;
    }
    if (nominated != Py_None) {
        Py_INCREF(nominated);
        s->nominated = nominated;
        Py_INCREF(pair);
        s->pair = pair;
    }
    s->connected = 1;
    Py_RETURN_NONE;
}

static PyObject *
Stream_disconnect(Stream *s, PyObject *Py_UNUSED(ignored))
{
    stream_disconnect(s);
    Py_RETURN_NONE;
}

/* Is what we connected to still there? Mirrors DtlsRtpOutput.send's checks; on
 * False, the caller hands the packet to Python, which raises ConnectionError. */
static int
still_connected(Stream *s)
{
    if (s->dtls != NULL) {
        PyObject *state = PyObject_GetAttr(s->dtls, str_state);
        if (state == NULL) {
            PyErr_Clear();
            return 0;
        }
        Py_DECREF(state);
        if (state != s->dtls_connected)
            return 0;
    }
    if (s->nominated != NULL) {
        PyObject *pair = PyDict_GetItemWithError(s->nominated, int_one); /* borrowed */
        if (pair != s->pair) {
            PyErr_Clear();
            return 0;
        }
    }
    /* A closing asyncio transport closes its socket soon; the fd could then be reused. */
    PyObject *closing = s->closing_attribute ? PyObject_GetAttr(s->transport, str_closing)
                                             : PyObject_CallMethodNoArgs(s->transport, str_is_closing);
    if (closing == NULL) {
        PyErr_Clear();
        return 0;
    }
    int open = closing == Py_False;
    Py_DECREF(closing);
    return open;
}

/* ------------------------------------------------------------- the batch */

/*
 * While the ingest's reader handles one socket's datagrams (batch.open), the copies
 * are protected as usual but queued, not sent; at the reader's end batch_flush() sends
 * each subscriber's queued copies in order, and runs of equal-sized ones (a video
 * frame's packets: packetizers cut a frame into equal parts, the last one shorter)
 * in one sendmsg with UDP_SEGMENT (UDP GSO): the kernel's work per datagram, most of
 * a copy's cost, is then paid once per run. A keyframe of 9 packets forwarded to 47
 * receivers took 423 sends, now 47 (or 94, where the sizes differ by a byte).
 * Everything else stays as it was: the rewriter, the counters and the NACK history
 * move on when the copy is queued; a copy the kernel does not take goes to asyncio's
 * transport (which buffers it), as a refused sendto does.
 */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
/* Queued bytes and copies before a flush is forced (a burst larger than this is sent
 * in several flushes). */
#define BATCH_BYTES (256 * 1024)
#define BATCH_ENTRIES 1024
/* Linux's limits for one GSO send (UDP_MAX_SEGMENTS; an IP datagram's payload). */
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65000

typedef struct {
    unsigned int offset; /* into batch_buffer */
    unsigned int length;
    int next;            /* 1-based index of the stream's next entry; 0: the last */
    int timed;
    struct timespec arrival;
} BatchEntry;

static unsigned char batch_buffer[BATCH_BYTES];
static size_t batch_used;
static BatchEntry batch_entries[BATCH_ENTRIES];
static int batch_count;
/* The streams with queued copies, in the order of their first (a reference each). */
static Stream *batch_streams[BATCH_ENTRIES];
static int batch_stream_count;
/* Whether copies are queued for GSO (set_gso(); off for good once the kernel says it
 * has no UDP GSO: then each copy is sent as it is made, as before). */
static int gso_enabled = 1;
static unsigned long long gso_sends, gso_segments, gso_refusals, batch_handed_back;

/* Room for one more copy in the batch (flushing it first if there is none). */
static unsigned char *
batch_slot(void)
{
    if (batch_count >= BATCH_ENTRIES || batch_used + BUFFER_SIZE + SRTP_MAX_TRAILER_LEN > BATCH_BYTES)
        batch_flush();
    return batch_buffer + batch_used;
}

/* Queue the protected copy written at `copy` (what batch_slot() gave). Its place is
 * taken from the pointer: were the batch flushed meanwhile (a collection running a
 * finalizer that forwards), the copy is still there and the next slot after it. */
static void
batch_add(Stream *s, const unsigned char *copy, unsigned int length)
{
    if (batch_count >= BATCH_ENTRIES)
        batch_flush();
    BatchEntry *e = &batch_entries[batch_count];
    e->offset = (unsigned int)(copy - batch_buffer);
    e->length = length;
    e->next = 0;
    e->timed = batch.arrival != NULL;
    if (e->timed)
        e->arrival = *batch.arrival;
    batch_count++;
    batch_used = e->offset + length;
    batch.queued++;
    if (s->batch_head == 0) {
        Py_INCREF(s);
        batch_streams[batch_stream_count++] = s;
        s->batch_head = batch_count;
    }
    else {
        batch_entries[s->batch_tail - 1].next = batch_count;
    }
    s->batch_tail = batch_count;
}

/* A copy the kernel did not take: to asyncio's transport, which sends or buffers it
 * (the Python path's way); the stream stays on the Python path until that drained. */
static void
hand_back(Stream *s, const struct iovec *copy)
{
    s->enabled = 0;
    batch_handed_back++;
    if (s->transport == NULL)
        return;
    PyObject *data = PyBytes_FromStringAndSize(copy->iov_base, (Py_ssize_t)copy->iov_len);
    PyObject *addr = data ? address_tuple(&s->addr) : NULL;
    PyObject *r = addr ? PyObject_CallMethod(s->transport, "sendto", "OO", data, addr) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(addr);
    Py_XDECREF(data);
    if (r == NULL)
        PyErr_Clear(); /* lost, as on the network: the receiver's NACK can recover it */
}

/* Send one run of a stream's queued copies: equal lengths, the last one possibly shorter. */
static void
send_run(Stream *s, struct iovec *iov, const int *entries, int n, unsigned int segment)
{
    int done = 0, failed = 0;
    if (n > 1 && gso_enabled && !s->gso_refused) {
        union {
            char buffer[CMSG_SPACE(sizeof(uint16_t))];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof(control));
        struct msghdr msg = {.msg_name = &s->addr,
                             .msg_namelen = s->addrlen,
                             .msg_iov = iov,
                             .msg_iovlen = (size_t)n,
                             .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)segment;
        memcpy(CMSG_DATA(c), &size, sizeof(size));
        ssize_t sent;
        do {
            sent = sendmsg(s->fd, &msg, 0);
        } while (sent < 0 && errno == EINTR);
        if (sent >= 0) {
            done = n;
            gso_sends++;
            gso_segments += (unsigned long long)n;
        }
        else if (errno == ENOPROTOOPT || errno == EOPNOTSUPP) {
            gso_refusals++;
            gso_enabled = 0; /* no UDP GSO in this kernel: each copy at once from now on */
        }
        else if (errno == EINVAL || errno == EIO) {
            /* This destination cannot take it (a segment over its route's MTU, a device
             * without checksum offload, a socket without UDP checksums, a kernel before
             * 4.18): its copies go one at a time, now and from now on. */
            gso_refusals++;
            s->gso_refused = 1;
        }
        else {
            failed = 1; /* EAGAIN (a full socket buffer) and errors: as a refused sendto */
        }
    }
    while (!failed && done < n) {
        ssize_t sent;
        do {
            sent = sendto(s->fd, iov[done].iov_base, iov[done].iov_len, 0, (struct sockaddr *)&s->addr,
                          s->addrlen);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0)
            failed = 1;
        else
            done++;
    }
    for (int i = 0; i < done; i++) {
        const BatchEntry *e = &batch_entries[entries[i] - 1];
        if (e->timed)
            delay_histogram_record(&copy_delay, &e->arrival);
    }
    for (int i = done; i < n; i++)
        hand_back(s, &iov[i]);
}

/* Send a stream's queued copies, from its entry `index` (1-based) on, in order. */
static void
send_queued(Stream *s, int index)
{
    struct iovec iov[GSO_MAX_SEGMENTS];
    int entries[GSO_MAX_SEGMENTS];
    while (index != 0) {
        unsigned int segment = batch_entries[index - 1].length;
        int n = 0;
        size_t bytes = 0;
        while (index != 0 && n < GSO_MAX_SEGMENTS) {
            const BatchEntry *e = &batch_entries[index - 1];
            if (e->length > segment || bytes + e->length > GSO_MAX_BYTES)
                break;
            iov[n].iov_base = batch_buffer + e->offset;
            iov[n].iov_len = e->length;
            entries[n++] = index;
            bytes += e->length;
            index = e->next;
            if (e->length < segment)
                break; /* only the last segment of a GSO send may be shorter */
        }
        send_run(s, iov, entries, n, segment);
    }
}

/* Send everything queued (batch.flush). Called with the GIL held; raises nothing. */
static void
batch_flush(void)
{
    if (batch_stream_count == 0)
        return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    for (int i = 0; i < batch_stream_count; i++) {
        Stream *s = batch_streams[i];
        int head = s->batch_head;
        s->batch_head = s->batch_tail = 0;
        /* Checked when queued (still_connected). Python may have run since (another
         * datagram's slow path), and closed the transport: asyncio closes its socket in
         * a later turn of the loop, so the descriptor is still this socket's here, and
         * what goes out meanwhile is what a closing connection loses anyway. A stream
         * Python disconnected has let go of it: its queue is dropped. */
        if (s->connected && s->fd >= 0)
            send_queued(s, head);
    }
    /* The references last: a stream freed here runs no code of this batch. */
    Stream *streams[BATCH_ENTRIES];
    int count = batch_stream_count;
    memcpy(streams, batch_streams, sizeof(Stream *) * (size_t)count);
    batch_stream_count = 0;
    batch_count = 0;
    batch_used = 0;
    for (int i = 0; i < count; i++)
        Py_DECREF(streams[i]);
    PyErr_Restore(type, value, traceback);
}

/* Send one packet of the steady state; 1 if sent, 0 if Python must handle it. */
static int
forward_one(Stream *s, int marker, int seq, unsigned int ssrc, unsigned int timestamp,
            const char *payload, Py_ssize_t payload_len, PyObject *payload_obj,
            unsigned int ext_value, unsigned long long ntp, double now)
{
    if (!s->enabled || !s->connected || !s->has_highest || s->source_ssrc != (long long)ssrc ||
        s->header_len < 12)
        return 0;
    long long highest = s->highest;
    long long ext = highest + ((seq - highest + SEQ_HALF) & 0xFFFF) - SEQ_HALF;
    int newest = ext > highest;
    if (!newest && (ext < highest - s->late_window || ext < s->resync_point))
        return 0; /* dropped or renumbered: the Python rewriter decides and counts */
    Py_ssize_t hlen = s->header_len;
    Py_ssize_t total = hlen + payload_len;
    if (total > s->max_length)
        return 0; /* Python drops it (ValueError) */
    if (!still_connected(s)) {
        stream_disconnect(s);
        return 0;
    }
    int out_seq = (seq + s->seq_offset) & 0xFFFF;
    unsigned int out_ts = timestamp + s->ts_offset;

    /* Queued while the reader's batch is open (see batch_flush), else sent from here. */
    int queue = batch.open && gso_enabled;
    unsigned char local[BUFFER_SIZE + SRTP_MAX_TRAILER_LEN];
    unsigned char *buffer = queue ? batch_slot() : local;
    memcpy(buffer, s->header, (size_t)hlen);
    buffer[1] = (unsigned char)(((marker & 1) << 7) | (s->payload_type & 0x7F));
    buffer[2] = (unsigned char)(out_seq >> 8);
    buffer[3] = (unsigned char)out_seq;
    buffer[4] = (unsigned char)(out_ts >> 24);
    buffer[5] = (unsigned char)(out_ts >> 16);
    buffer[6] = (unsigned char)(out_ts >> 8);
    buffer[7] = (unsigned char)out_ts;
    if (s->has_extension) {
        unsigned int word = s->word_prefix | (ext_value & s->value_mask);
        unsigned char *w = buffer + s->word_offset;
        w[0] = (unsigned char)(word >> 24);
        w[1] = (unsigned char)(word >> 16);
        w[2] = (unsigned char)(word >> 8);
        w[3] = (unsigned char)word;
    }
    /* The header as sent (before encryption), for the NACK history once sent. */
    unsigned char sent_header[HEADER_MAX];
    memcpy(sent_header, buffer, (size_t)hlen);
    memcpy(buffer + hlen, payload, (size_t)payload_len);
    int length = (int)total;
    if (s->protect(s->srtp, buffer, &length) != 0)
        return 0; /* Python's protect raises the same error */
    ssize_t sent = length;
    if (!queue) {
        do {
            sent = sendto(s->fd, buffer, (size_t)length, 0, (struct sockaddr *)&s->addr, s->addrlen);
        } while (sent < 0 && errno == EINTR);
    }
    if (sent < 0) {
        /* EAGAIN (full socket buffer) and errors: Python sends it through asyncio,
         * which buffers or reports as it always does; the sender then stays on the
         * Python path until the buffer has drained. */
        s->enabled = 0;
        return 0;
    }
    /* Sent: now the rewriter's state moves on (as map_sequence would have). */
    if (newest) {
        s->highest = ext;
        s->bad_seq = -1;
        s->next_seq = (out_seq + 1) & 0xFFFF;
        s->last_out_ts = out_ts;
        s->last_out_time = now;
        s->has_last_out_time = 1;
    }
    /* No object is made per copy: the header is copied into the slot, the payload (one
     * object for all of a packet's copies) referenced. (When the history was a list of
     * tuples, each copy's tuple also had to be kept out of the collector's sight: the
     * young generation then held ~240 000 of them, and each collection stopped the loop
     * for 60-140 ms; see server/gc_policy.py.) Only a header longer than the slot's room,
     * which this fan-out does not build, needs memory; without it the slot keeps what it
     * held, as a packet the history never saw. */
    if (s->history != NULL && history_put(s->history, sent_header, hlen, payload_obj) < 0)
        PyErr_Clear();
    s->packets_sent++;
    s->octets_sent += (unsigned long long)payload_len;
    s->last_ntp_time = ntp;
    s->last_rtp_timestamp = out_ts;
    s->fast_sent++;
    datagrams_sent++;
    if (queue)
        batch_add(s, buffer, (unsigned int)length);
    else if (batch.arrival != NULL)
        delay_histogram_record(&copy_delay, batch.arrival);
    return 1;
}

static PyTypeObject StreamType;

/* forward(streams, marker, seq, timestamp, ssrc, payload, ext_value, ntp, now)
 * -> None, or the list of indexes (into streams) Python must handle itself. */
static PyObject *
fanout_forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "forward() takes 9 arguments");
        return NULL;
    }
    PyObject *streams = args[0];
    if (!PyTuple_Check(streams)) {
        PyErr_SetString(PyExc_TypeError, "streams must be a tuple");
        return NULL;
    }
    long marker = PyLong_AsLong(args[1]);
    long seq = PyLong_AsLong(args[2]);
    unsigned long timestamp = PyLong_AsUnsignedLong(args[3]);
    unsigned long ssrc = PyLong_AsUnsignedLong(args[4]);
    unsigned long ext_value = PyLong_AsUnsignedLong(args[6]);
    unsigned long long ntp = PyLong_AsUnsignedLongLong(args[7]);
    double now = PyFloat_AsDouble(args[8]);
    if (PyErr_Occurred())
        return NULL;
    char *payload;
    Py_ssize_t payload_len;
    if (!PyBytes_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes");
        return NULL;
    }
    payload = PyBytes_AS_STRING(args[5]);
    payload_len = PyBytes_GET_SIZE(args[5]);
    PyObject *slow = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(streams);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(streams, i);
        if (!PyObject_TypeCheck(item, &StreamType)) {
            Py_XDECREF(slow);
            PyErr_SetString(PyExc_TypeError, "streams must hold Stream objects");
            return NULL;
        }
        if (((Stream *)item)->silent)
            continue;
        if (forward_one((Stream *)item, (int)marker, (int)(seq & 0xFFFF), (unsigned int)ssrc,
                        (unsigned int)timestamp, payload, payload_len, args[5],
                        (unsigned int)ext_value, ntp, now))
            continue;
        if (slow == NULL && (slow = PyList_New(0)) == NULL)
            return NULL;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(slow, index) < 0) {
            Py_XDECREF(index);
            Py_DECREF(slow);
            return NULL;
        }
        Py_DECREF(index);
    }
    if (slow == NULL)
        Py_RETURN_NONE;
    /* Python sends these subscribers' copies itself, at once: what is queued goes first. */
    batch_flush();
    return slow;
}

/* -------------------------------------------------------------- the type */

static int
Stream_init(Stream *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"ssrc", "payload_type", "clock_rate", "next_seq", "last_out_ts",
                             "late_window", NULL};
    unsigned long ssrc, last_out_ts;
    int payload_type, clock_rate, next_seq, late_window;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$kiiiki", kwlist, &ssrc, &payload_type,
                                     &clock_rate, &next_seq, &last_out_ts, &late_window))
        return -1;
    if (clock_rate <= 0 || late_window <= 0 || late_window >= SEQ_HALF) {
        PyErr_SetString(PyExc_ValueError, "clock_rate and late_window out of range");
        return -1;
    }
    s->ssrc = (unsigned int)ssrc;
    s->payload_type = payload_type & 0x7F;
    s->clock_rate = clock_rate;
    s->late_window = late_window;
    s->next_seq = next_seq & 0xFFFF;
    s->seq_offset = 0;
    s->ts_offset = 0;
    s->last_out_ts = (unsigned int)last_out_ts;
    s->has_last_out_time = 0;
    s->source_ssrc = -1;
    s->has_highest = 0;
    s->resync_point = 0;
    s->bad_seq = -1;
    s->fd = -1;
    return 0;
}

static PyObject *
Stream_set_header(Stream *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"header", "word_offset", "word_prefix", "value_mask", NULL};
    Py_buffer header;
    Py_ssize_t word_offset;
    unsigned long word_prefix, value_mask;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*nkk", kwlist, &header, &word_offset,
                                     &word_prefix, &value_mask))
        return NULL;
    int has_extension = value_mask != 0;
    if (header.len < 12 || header.len > HEADER_MAX ||
        (has_extension && (word_offset < 12 || word_offset + 4 > header.len))) {
        PyBuffer_Release(&header);
        PyErr_SetString(PyExc_ValueError, "bad header layout");
        return NULL;
    }
    memcpy(s->header, header.buf, (size_t)header.len);
    s->header_len = header.len;
    PyBuffer_Release(&header);
    s->has_extension = has_extension;
    s->word_offset = word_offset;
    s->word_prefix = (unsigned int)word_prefix;
    s->value_mask = (unsigned int)value_mask;
    Py_RETURN_NONE;
}

static PyObject *
Stream_set_history(Stream *s, PyObject *history)
{
    if (!PyObject_TypeCheck(history, &SentHistoryType)) {
        PyErr_SetString(PyExc_TypeError, "history must be a SentHistory");
        return NULL;
    }
    Py_INCREF(history);
    Py_XSETREF(s->history, (SentHistory *)history);
    Py_RETURN_NONE;
}

static int
Stream_traverse(Stream *s, visitproc visit, void *arg)
{
    /* A static type does not visit its type; a Python subclass's traverse does. */
    Py_VISIT(s->history);
    Py_VISIT(s->keepalive);
    Py_VISIT(s->transport);
    Py_VISIT(s->dtls);
    Py_VISIT(s->dtls_connected);
    Py_VISIT(s->nominated);
    Py_VISIT(s->pair);
    return 0;
}

static int
Stream_clear(Stream *s)
{
    stream_disconnect(s);
    Py_CLEAR(s->history);
    return 0;
}

static void
Stream_dealloc(Stream *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    Stream_clear(s);
    tp->tp_free((PyObject *)s);
}

static PyObject *
Stream_get_source_ssrc(Stream *s, void *closure)
{
    if (s->source_ssrc < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(s->source_ssrc);
}

static PyObject *
Stream_get_ts_offset(Stream *s, void *closure)
{
    return PyLong_FromUnsignedLong(s->ts_offset);
}

static int
Stream_set_ts_offset(Stream *s, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete ts_offset");
        return -1;
    }
    PyObject *modulus = PyLong_FromUnsignedLongLong(4294967296ULL);
    if (modulus == NULL)
        return -1;
    PyObject *mod = PyNumber_Remainder(value, modulus);
    Py_DECREF(modulus);
    if (mod == NULL)
        return -1;
    unsigned long v = PyLong_AsUnsignedLong(mod);
    Py_DECREF(mod);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    s->ts_offset = (unsigned int)v;
    return 0;
}

static PyObject *
Stream_get_enabled(Stream *s, void *closure)
{
    return PyBool_FromLong(s->enabled);
}

static int
Stream_set_enabled(Stream *s, PyObject *value, void *closure)
{
    int v = value == NULL ? 0 : PyObject_IsTrue(value);
    if (v < 0)
        return -1;
    s->enabled = v;
    return 0;
}

static PyObject *
Stream_get_connected(Stream *s, void *closure)
{
    return PyBool_FromLong(s->connected);
}

static PyGetSetDef Stream_getset[] = {
    {"source_ssrc", (getter)Stream_get_source_ssrc, NULL, "SSRC of the source followed (None: none yet).", NULL},
    {"ts_offset", (getter)Stream_get_ts_offset, (setter)Stream_set_ts_offset,
     "Added to an incoming timestamp (mod 2**32) to give the outgoing one.", NULL},
    {"enabled", (getter)Stream_get_enabled, (setter)Stream_set_enabled,
     "Set by the Python sender: forward() may send for it (no gating pending).", NULL},
    {"connected", (getter)Stream_get_connected, NULL, "True once connect()ed to a socket and SRTP session.", NULL},
    {NULL}};

static PyMemberDef Stream_members[] = {
    {"ssrc", T_UINT, offsetof(Stream, ssrc), READONLY, "Outgoing SSRC."},
    {"payload_type", T_INT, offsetof(Stream, payload_type), READONLY, "Outgoing payload type."},
    {"clock_rate", T_INT, offsetof(Stream, clock_rate), READONLY, "RTP clock rate."},
    {"late_dropped", T_ULONGLONG, offsetof(Stream, late_dropped), 0,
     "Packets dropped as too late or from before the resync point."},
    {"packets_sent", T_ULONGLONG, offsetof(Stream, packets_sent), 0, "Packets sent (RTCP SR)."},
    {"octets_sent", T_ULONGLONG, offsetof(Stream, octets_sent), 0, "Payload octets sent (RTCP SR)."},
    {"last_ntp_time", T_ULONGLONG, offsetof(Stream, last_ntp_time), 0,
     "NTP time of the newest packet sent (RTCP SR)."},
    {"last_rtp_timestamp", T_ULONGLONG, offsetof(Stream, last_rtp_timestamp), 0,
     "RTP timestamp of the newest packet sent (RTCP SR)."},
    {"fast_sent", T_ULONGLONG, offsetof(Stream, fast_sent), READONLY,
     "Packets sent by forward() (the rest went through Python)."},
    {"silent", T_BOOL, offsetof(Stream, silent), 0,
     "Set by the Python sender while it is paused or not running: forward() drops its packets."},
    {NULL}};

static PyMethodDef Stream_methods[] = {
    {"resync", (PyCFunction)(void (*)(void))Stream_resync, METH_VARARGS | METH_KEYWORDS,
     "resync(packet, now): make packet the next outgoing packet (RtpRewriter.resync)."},
    {"map_sequence", (PyCFunction)(void (*)(void))Stream_map_sequence, METH_VARARGS | METH_KEYWORDS,
     "map_sequence(packet, now) -> outgoing sequence number or -1 (RtpRewriter.map_sequence)."},
    {"set_header", (PyCFunction)(void (*)(void))Stream_set_header, METH_VARARGS | METH_KEYWORDS,
     "set_header(header, word_offset, word_prefix, value_mask): the OutgoingHeader layout."},
    {"set_history", (PyCFunction)Stream_set_history, METH_O,
     "set_history(SentHistory): where the packets sent go (the channel's NACK history)."},
    {"connect", (PyCFunction)(void (*)(void))Stream_connect, METH_VARARGS | METH_KEYWORDS,
     "connect(protect, srtp, session, transport, fd, host, port, max_length, "
     "dtls=None, dtls_connected=None, nominated=None, pair=None)."},
    {"disconnect", (PyCFunction)Stream_disconnect, METH_NOARGS, "Forget the socket and session."},
    {NULL}};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._fanout.Stream",
    .tp_doc = "One subscriber's outgoing RTP stream: rewriter state, header, counters, output.",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Stream_init,
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_traverse = (traverseproc)Stream_traverse,
    .tp_clear = (inquiry)Stream_clear,
    .tp_members = Stream_members,
    .tp_getset = Stream_getset,
    .tp_methods = Stream_methods,
};

static PyObject *
fanout_copy_delays(PyObject *module, PyObject *unused)
{
    return delay_histogram_read(&copy_delay);
}

static PyObject *
fanout_set_gso(PyObject *module, PyObject *enabled)
{
    int on = PyObject_IsTrue(enabled);
    if (on < 0)
        return NULL;
    batch_flush();
    gso_enabled = on;
    Py_RETURN_NONE;
}

static PyObject *
fanout_open_batch(PyObject *module, PyObject *unused)
{
    batch.open = 1;
    Py_RETURN_NONE;
}

static PyObject *
fanout_send_batch(PyObject *module, PyObject *unused)
{
    batch.open = 0;
    batch_flush();
    Py_RETURN_NONE;
}

static PyObject *
fanout_gso_stats(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{sOsKsKsKsK}", "enabled", gso_enabled ? Py_True : Py_False, "sends", gso_sends,
                         "segments", gso_segments, "refused", gso_refusals, "handed_back",
                         batch_handed_back);
}

static PyMethodDef module_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))fanout_forward, METH_FASTCALL,
     "forward(streams, marker, seq, timestamp, ssrc, payload, ext_value, ntp, now) -> "
     "None or the indexes of the streams Python must handle."},
    {"set_gso", (PyCFunction)fanout_set_gso, METH_O,
     "set_gso(enabled): whether copies made while the ingest's reader handles a socket are\n"
     "queued and sent in UDP GSO runs at its end (True, the default) or each at once."},
    {"open_batch", (PyCFunction)fanout_open_batch, METH_NOARGS,
     "open_batch(): queue the copies forward() makes until send_batch() (what the compiled\n"
     "ingest's reader does around a socket's datagrams, for a reader in Python)."},
    {"send_batch", (PyCFunction)fanout_send_batch, METH_NOARGS,
     "send_batch(): send what is queued, each subscriber's copies in order, runs of equal\n"
     "size in one UDP GSO send; copies are sent at once again."},
    {"gso_stats", (PyCFunction)fanout_gso_stats, METH_NOARGS,
     "gso_stats() -> {enabled, sends, segments, refused, handed_back}: GSO sends and the copies\n"
     "in them, GSO sends refused (then sent one at a time), and queued copies the kernel\n"
     "refused (sent through asyncio), in this process."},
    {"copy_delays", (PyCFunction)fanout_copy_delays, METH_NOARGS,
     "copy_delays() -> (bounds, counts, sum): the copy delay's histogram in this process, in\n"
     "seconds (from a packet's arrival to each copy sent): upper bounds, counts per bucket (not\n"
     "cumulative; the last is +Inf), their sum."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fanout",
    .m_doc = "The forwarding fan-out in C (see server/media/fanout.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    if (PyType_Ready(&StreamType) < 0 || PyType_Ready(&SentHistoryType) < 0)
        return NULL;
    str_state = PyUnicode_InternFromString("_state");
    str_is_closing = PyUnicode_InternFromString("is_closing");
    str_closing = PyUnicode_InternFromString("_closing");
    str_sequence_number = PyUnicode_InternFromString("sequence_number");
    str_timestamp = PyUnicode_InternFromString("timestamp");
    str_ssrc = PyUnicode_InternFromString("ssrc");
    int_one = PyLong_FromLong(1);
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL)
        return NULL;
    monotonic = PyObject_GetAttrString(time_module, "monotonic");
    Py_DECREF(time_module);
    if (monotonic == NULL)
        return NULL;
    if (!str_state || !str_is_closing || !str_closing || !str_sequence_number || !str_timestamp || !str_ssrc ||
        !int_one)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(m, "Stream", (PyObject *)&StreamType) < 0) {
        Py_DECREF(&StreamType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&SentHistoryType);
    if (PyModule_AddObject(m, "SentHistory", (PyObject *)&SentHistoryType) < 0) {
        Py_DECREF(&SentHistoryType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "BUFFER_SIZE", BUFFER_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *counter = PyCapsule_New(&datagrams_sent, "server.media._fanout.datagrams_sent", NULL);
    if (counter == NULL || PyModule_AddObject(m, "datagrams_sent", counter) < 0) {
        Py_XDECREF(counter);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *shared = PyCapsule_New(&batch, FANOUT_BATCH_CAPSULE, NULL);
    if (shared == NULL || PyModule_AddObject(m, "batch", shared) < 0) {
        Py_XDECREF(shared);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
