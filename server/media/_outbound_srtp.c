/* Outbound SRTP with AEAD AES-GCM (RFC 7714): what a subscribe transport's RTP is
 * protected with, in place of libsrtp.
 *
 * Why: every forwarded copy is protected once, and libsrtp costs ~1.7-2.5 µs per copy
 * above the AES-GCM itself (docs/forwarding.md): a third of it is the walk of its
 * linked list of streams to find the packet's SSRC (~28 streams per subscriber
 * connection), the rest its generic layers. Here the stream is found in one compact
 * array of SSRCs, and a packet costs one OpenSSL AES-GCM pass.
 *
 * What it must be: byte for byte what libsrtp 2.7 (pylibsrtp's) produces for the same
 * master key, with the same packet index (ROC) estimate, the same replay window for
 * the sender (1024, allow_repeat_tx, as aiortc's policy) and the same refusals.
 * tests/media/test_outbound_srtp.py compares the two packet by packet, across
 * sequence number wraps, with late, repeated and too old packets. RTCP stays with libsrtp: its index
 * is its own, so nothing here touches it.
 *
 * One session per DTLS transport, all of whose RTP it must protect: two protectors of
 * one key would each count an SSRC's packets from zero, and a GCM nonce used twice for
 * different packets gives the key stream away. server/media/outbound_srtp.py installs
 * it as the transport's `_tx_srtp` when DTLS sets the keys up, before any RTP is sent.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* pylibsrtp's session buffer is 1500 bytes and its protect refuses a packet that might
 * not fit with libsrtp's largest trailer: the same bound, so the two refuse alike. */
#define BUFFER_SIZE 1500
#define SRTP_MAX_TRAILER_LEN 144
#define TAG_LEN 16
#define SALT_LEN 12
/* aiortc's outbound policy: window_size 1024. */
#define WINDOW 1024
/* An SSRC table bound: a subscribe transport sends a few dozen SSRCs (media and RTX). */
#define MAX_STREAMS 4096

#define SEQ_MEDIAN 32768
#define SEQ_MAX 65536

/* libsrtp's status codes, as pylibsrtp reports them. */
#define STATUS_OK 0
#define STATUS_FAIL 1
#define STATUS_BAD_PARAM 2
#define STATUS_CIPHER_FAIL 8
#define STATUS_REPLAY_OLD 10

typedef struct {
    uint64_t index; /* ROC << 16 | SEQ: the highest index protected */
    uint64_t seen[WINDOW / 64]; /* bit (i % WINDOW): index i within the window protected */
} StreamState;

typedef struct {
    EVP_CIPHER_CTX *cipher; /* AES-GCM with the session key */
    unsigned char salt[SALT_LEN];
    /* The SSRCs side by side, for the scan: libsrtp's walk of a linked list of large
     * stream structs cost a cache miss per hop; this is a line or two for all of them. */
    uint32_t *ssrcs;
    StreamState **streams;
    Py_ssize_t stream_count;
    Py_ssize_t stream_capacity;
} Context;

typedef struct {
    PyObject_HEAD
    Context ctx;
    unsigned char buffer[BUFFER_SIZE];
} OutboundSrtp;

/* ------------------------------------------------------------ key derivation */

/* RFC 3711 §4.3.1 with the AES-CM PRF, as libsrtp does it for GCM (RFC 7714 §11): the
 * 96-bit master salt is padded with two zero bytes to the 112 bits of the AES-CM
 * KDF; the key derivation rate is 0. Key stream block j: AES(k_master, x || j) with
 * x = (label at byte 7) XOR (salt || 0 0). */
static int
derive(const unsigned char *master_key, int key_len, const unsigned char *master_salt,
       unsigned char label, unsigned char *out, int out_len)
{
    const EVP_CIPHER *ecb = key_len == 16 ? EVP_aes_128_ecb() : EVP_aes_256_ecb();
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return -1;
    int ok = EVP_EncryptInit_ex(c, ecb, NULL, master_key, NULL) == 1;
    EVP_CIPHER_CTX_set_padding(c, 0);
    for (int j = 0; ok && j * 16 < out_len; j++) {
        unsigned char block[16] = {0}, stream[16];
        memcpy(block, master_salt, SALT_LEN);
        block[7] ^= label;
        block[14] = (unsigned char)(j >> 8);
        block[15] = (unsigned char)j;
        int n = 0;
        ok = EVP_EncryptUpdate(c, stream, &n, block, 16) == 1 && n == 16;
        if (ok) {
            int take = out_len - j * 16 < 16 ? out_len - j * 16 : 16;
            memcpy(out + j * 16, stream, (size_t)take);
        }
    }
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ the index */

/* libsrtp's srtp_rdbx_estimate_index: the index a sequence number stands for, given
 * the highest so far, and the difference to it. While the highest is at most 2^15 the
 * ROC is taken as 0 (so that a stream starting high is not guessed into ROC -1). */
static int32_t
estimate_index(uint64_t local, uint16_t seq, uint64_t *guess)
{
    if (local <= SEQ_MEDIAN) {
        *guess = seq;
        return (int32_t)((int64_t)seq - (int64_t)local);
    }
    uint32_t local_roc = (uint32_t)(local >> 16);
    uint16_t local_seq = (uint16_t)local;
    uint32_t guess_roc;
    int32_t difference;
    if (local_seq < SEQ_MEDIAN) {
        if ((int32_t)seq - local_seq > SEQ_MEDIAN) {
            guess_roc = local_roc - 1;
            difference = (int32_t)seq - local_seq - SEQ_MAX;
        }
        else {
            guess_roc = local_roc;
            difference = (int32_t)seq - local_seq;
        }
    }
    else {
        if (local_seq - SEQ_MEDIAN > (int32_t)seq) {
            guess_roc = local_roc + 1;
            difference = (int32_t)seq - local_seq + SEQ_MAX;
        }
        else {
            guess_roc = local_roc;
            difference = (int32_t)seq - local_seq;
        }
    }
    *guess = ((uint64_t)guess_roc << 16) | seq;
    return difference;
}

static int
window_has(const StreamState *s, uint64_t index)
{
    unsigned int bit = (unsigned int)(index % WINDOW);
    return (int)((s->seen[bit / 64] >> (bit % 64)) & 1);
}

static void
window_set(StreamState *s, uint64_t index, int value)
{
    unsigned int bit = (unsigned int)(index % WINDOW);
    if (value)
        s->seen[bit / 64] |= (uint64_t)1 << (bit % 64);
    else
        s->seen[bit / 64] &= ~((uint64_t)1 << (bit % 64));
}

/* libsrtp's srtp_rdbx_check + srtp_rdbx_add_index for a sender that may repeat an
 * index (allow_repeat_tx): a new index moves the window on; a repeated one within the
 * window is allowed and changes nothing; one below the window is refused. */
static int
accept_index(StreamState *s, int32_t delta)
{
    if (delta > 0) {
        int64_t clear = delta < WINDOW ? delta : WINDOW;
        for (int64_t j = 1; j <= clear; j++)
            window_set(s, s->index + (uint64_t)j, 0);
        s->index += (uint64_t)delta;
        window_set(s, s->index, 1);
        return STATUS_OK;
    }
    if (WINDOW - 1 + delta < 0)
        return STATUS_REPLAY_OLD;
    window_set(s, s->index - (uint64_t)(-(int64_t)delta), 1);
    return STATUS_OK;
}

/* ------------------------------------------------------------ streams */

static StreamState *
find_stream(Context *c, uint32_t ssrc)
{
    for (Py_ssize_t i = 0; i < c->stream_count; i++)
        if (c->ssrcs[i] == ssrc)
            return c->streams[i];
    if (c->stream_count >= MAX_STREAMS)
        return NULL;
    if (c->stream_count == c->stream_capacity) {
        Py_ssize_t capacity = c->stream_capacity ? c->stream_capacity * 2 : 32;
        StreamState **streams = PyMem_RawRealloc(c->streams, (size_t)capacity * sizeof(*streams));
        if (streams == NULL)
            return NULL;
        c->streams = streams;
        uint32_t *ssrcs = PyMem_RawRealloc(c->ssrcs, (size_t)capacity * sizeof(*ssrcs));
        if (ssrcs == NULL)
            return NULL; /* the larger streams array is kept; capacity stays as it was */
        c->ssrcs = ssrcs;
        c->stream_capacity = capacity;
    }
    StreamState *s = PyMem_RawCalloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    c->ssrcs[c->stream_count] = ssrc;
    c->streams[c->stream_count++] = s;
    return s;
}

/* ------------------------------------------------------------ protect */

/* srtp_protect's contract: `packet` holds *length bytes of RTP, with room for the
 * tag after it; on success *length grows by the tag. Returns a libsrtp status. The
 * compiled fan-out calls it through the address fast_path() gives. */
static int
outbound_protect(void *context, void *packet, int *length)
{
    Context *c = context;
    unsigned char *p = packet;
    int len = *length;
    /* srtp_validate_rtp_header */
    if (len < 12)
        return STATUS_BAD_PARAM;
    int header_len = 12 + 4 * (p[0] & 0x0F);
    if (p[0] & 0x10) {
        if (len < header_len + 4)
            return STATUS_BAD_PARAM;
        header_len += 4 + 4 * ((p[header_len + 2] << 8) | p[header_len + 3]);
    }
    if (len < header_len)
        return STATUS_BAD_PARAM; /* an empty payload is protected: the tag alone */
    uint32_t ssrc;
    memcpy(&ssrc, p + 8, 4);
    StreamState *s = find_stream(c, ssrc);
    if (s == NULL)
        return STATUS_FAIL;
    uint16_t seq = (uint16_t)((p[2] << 8) | p[3]);
    uint64_t index;
    int32_t delta = estimate_index(s->index, seq, &index);
    int status = accept_index(s, delta);
    if (status != STATUS_OK)
        return status;
    /* RFC 7714 §8.1: IV = (0 0 || SSRC || ROC || SEQ) XOR salt */
    unsigned char iv[SALT_LEN] = {0};
    uint32_t roc = (uint32_t)(index >> 16);
    memcpy(iv + 2, p + 8, 4);
    iv[6] = (unsigned char)(roc >> 24);
    iv[7] = (unsigned char)(roc >> 16);
    iv[8] = (unsigned char)(roc >> 8);
    iv[9] = (unsigned char)roc;
    iv[10] = p[2];
    iv[11] = p[3];
    for (int i = 0; i < SALT_LEN; i++)
        iv[i] ^= c->salt[i];
    int n = 0;
    unsigned char *payload = p + header_len;
    int payload_len = len - header_len;
    if (EVP_EncryptInit_ex(c->cipher, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(c->cipher, NULL, &n, p, header_len) != 1 ||
        EVP_EncryptUpdate(c->cipher, payload, &n, payload, payload_len) != 1 ||
        n != payload_len || EVP_EncryptFinal_ex(c->cipher, payload + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c->cipher, EVP_CTRL_GCM_GET_TAG, TAG_LEN, p + len) != 1)
        return STATUS_CIPHER_FAIL;
    *length = len + TAG_LEN;
    return STATUS_OK;
}

/* ------------------------------------------------------------ the type */

/* pylibsrtp.Error and its messages by status: the same exception as libsrtp's. */
static PyObject *ProtectError, *ErrorMessages;

static PyObject *
raise_status(int status)
{
    PyObject *message = PyList_Check(ErrorMessages) && status < PyList_GET_SIZE(ErrorMessages)
                            ? PyList_GET_ITEM(ErrorMessages, status)
                            : NULL;
    if (message != NULL)
        PyErr_SetObject(ProtectError, message);
    else
        PyErr_Format(ProtectError, "srtp_protect failed: %d", status);
    return NULL;
}

static int
OutboundSrtp_init(OutboundSrtp *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"master_key", "master_salt", NULL};
    Py_buffer key, salt;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*", kwlist, &key, &salt))
        return -1;
    int ok = 0;
    unsigned char session_key[32];
    if ((key.len != 16 && key.len != 32) || salt.len != SALT_LEN) {
        PyErr_SetString(PyExc_ValueError,
                        "AEAD AES-GCM needs a 16- or 32-byte master key and a 12-byte salt");
        goto done;
    }
    if (self->ctx.cipher != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        goto done;
    }
    int key_len = (int)key.len;
    if (derive(key.buf, key_len, salt.buf, 0x00, session_key, key_len) < 0 ||
        derive(key.buf, key_len, salt.buf, 0x02, self->ctx.salt, SALT_LEN) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "SRTP key derivation failed");
        goto done;
    }
    self->ctx.cipher = EVP_CIPHER_CTX_new();
    if (self->ctx.cipher == NULL ||
        EVP_EncryptInit_ex(self->ctx.cipher, key_len == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(),
                           NULL, session_key, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "AES-GCM set-up failed");
        EVP_CIPHER_CTX_free(self->ctx.cipher); /* NULL again: the object stays unusable */
        self->ctx.cipher = NULL;
        goto done;
    }
    ok = 1;
done:
    OPENSSL_cleanse(session_key, sizeof(session_key)); /* the cipher keeps its own schedule */
    PyBuffer_Release(&key);
    PyBuffer_Release(&salt);
    return ok ? 0 : -1;
}

static void
OutboundSrtp_dealloc(OutboundSrtp *self)
{
    if (self->ctx.cipher != NULL)
        EVP_CIPHER_CTX_free(self->ctx.cipher);
    for (Py_ssize_t i = 0; i < self->ctx.stream_count; i++)
        PyMem_RawFree(self->ctx.streams[i]);
    PyMem_RawFree(self->ctx.streams);
    PyMem_RawFree(self->ctx.ssrcs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(OutboundSrtp *self)
{
    if (self->ctx.cipher == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "OutboundSrtp is not initialised");
        return 0;
    }
    return 1;
}

/* Protect the `length` bytes in self->buffer and return them as bytes. */
static PyObject *
protect_buffer(OutboundSrtp *self, int length)
{
    int status = outbound_protect(&self->ctx, self->buffer, &length);
    if (status != STATUS_OK)
        return raise_status(status);
    return PyBytes_FromStringAndSize((const char *)self->buffer, length);
}

static PyObject *
OutboundSrtp_protect(OutboundSrtp *self, PyObject *packet)
{
    if (!ready(self))
        return NULL;
    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(packet);
    if (size > BUFFER_SIZE - SRTP_MAX_TRAILER_LEN) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    memcpy(self->buffer, PyBytes_AS_STRING(packet), (size_t)size);
    return protect_buffer(self, (int)size);
}

static PyObject *
OutboundSrtp_protect_parts(OutboundSrtp *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!ready(self))
        return NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "protect_parts() takes a header and a payload");
        return NULL;
    }
    Py_buffer header, payload;
    if (PyObject_GetBuffer(args[0], &header, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&header);
        return NULL;
    }
    PyObject *result = NULL;
    if (header.len + payload.len > BUFFER_SIZE - SRTP_MAX_TRAILER_LEN)
        PyErr_SetString(PyExc_ValueError, "packet is too long");
    else {
        memcpy(self->buffer, header.buf, (size_t)header.len);
        memcpy(self->buffer + header.len, payload.buf, (size_t)payload.len);
        result = protect_buffer(self, (int)(header.len + payload.len));
    }
    PyBuffer_Release(&header);
    PyBuffer_Release(&payload);
    return result;
}

static PyObject *
OutboundSrtp_fast_path(OutboundSrtp *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self))
        return NULL;
    return Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)outbound_protect,
                         (unsigned long long)(uintptr_t)&self->ctx);
}

static PyObject *
OutboundSrtp_get_streams(OutboundSrtp *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->ctx.stream_count);
}

static PyMethodDef OutboundSrtp_methods[] = {
    {"protect", (PyCFunction)OutboundSrtp_protect, METH_O,
     "protect(packet: bytes) -> bytes: the SRTP packet for one RTP packet (as "
     "pylibsrtp.Session.protect)."},
    {"protect_parts", (PyCFunction)(void (*)(void))OutboundSrtp_protect_parts, METH_FASTCALL,
     "protect_parts(header, payload) -> bytes: protect(header + payload) without joining them."},
    {"fast_path", (PyCFunction)OutboundSrtp_fast_path, METH_NOARGS,
     "fast_path() -> (protect, context): the addresses of a function with srtp_protect's "
     "signature and of its context, for the compiled fan-out. Valid while this object lives."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef OutboundSrtp_getset[] = {
    {"streams", (getter)OutboundSrtp_get_streams, NULL, "SSRCs protected so far.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject OutboundSrtpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "server.media._outbound_srtp.OutboundSrtp",
    .tp_doc = "OutboundSrtp(master_key, master_salt): the RTP half of an outbound SRTP session "
              "with AEAD AES-GCM (RFC 7714), byte for byte as libsrtp protects it.",
    .tp_basicsize = sizeof(OutboundSrtp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)OutboundSrtp_init,
    .tp_dealloc = (destructor)OutboundSrtp_dealloc,
    .tp_methods = OutboundSrtp_methods,
    .tp_getset = OutboundSrtp_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "server.media._outbound_srtp",
    .m_doc = "Outbound SRTP with AEAD AES-GCM, for the fan-out (see server/media/outbound_srtp.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__outbound_srtp(void)
{
    PyObject *pylibsrtp = PyImport_ImportModule("pylibsrtp");
    if (pylibsrtp == NULL)
        return NULL;
    ProtectError = PyObject_GetAttrString(pylibsrtp, "Error");
    ErrorMessages = PyObject_GetAttrString(pylibsrtp, "ERRORS");
    Py_DECREF(pylibsrtp);
    if (ProtectError == NULL || ErrorMessages == NULL)
        return NULL;
    if (PyType_Ready(&OutboundSrtpType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&OutboundSrtpType);
    if (PyModule_AddObject(module, "OutboundSrtp", (PyObject *)&OutboundSrtpType) < 0) {
        Py_DECREF(&OutboundSrtpType);
        Py_DECREF(module);
        return NULL;
    }
    PyModule_AddIntConstant(module, "MAX_STREAMS", MAX_STREAMS);
    PyModule_AddIntConstant(module, "MAX_PACKET", BUFFER_SIZE - SRTP_MAX_TRAILER_LEN);
    return module;
}
