/*
 * The forward delay's histogram, and what the reader and the fan-out share while a
 * socket's datagrams are handled: used by the compiled ingest (server/media/_ingest.c)
 * and the compiled fan-out (server/media/_fanout.c).
 *
 * Both time a publisher's packet from the kernel's receipt (its socket's
 * SO_TIMESTAMPNS time, CLOCK_REALTIME) to a send: the ingest to the packet's last
 * copy (yitang_forward_delay_seconds), the fan-out to each copy
 * (yitang_forward_copy_delay_seconds: what each receiver's packet waited, the
 * definition bench/latency.py's "added" per received packet has). Same buckets, so
 * that the two read side by side.
 */
#ifndef YITANG_FORWARD_DELAY_H
#define YITANG_FORWARD_DELAY_H

#include <Python.h>
#include <time.h>

/* Upper bounds in seconds; 5 ms (the latency target) and 100 ms (a stall) are bounds. */
static const double forward_delay_bounds[] = {0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015,
                                              0.002,  0.003,   0.004,  0.005,   0.0075, 0.01,
                                              0.025,  0.05,    0.1,    0.25,    0.5,    1.0};
#define FORWARD_DELAY_BUCKETS (sizeof(forward_delay_bounds) / sizeof(forward_delay_bounds[0]))

/* Counts per bucket (not cumulative; the last is +Inf) and the sum of the delays. */
typedef struct {
    unsigned long long counts[FORWARD_DELAY_BUCKETS + 1];
    double sum;
} DelayHistogram;

/* Time from the kernel's receipt of a datagram (``arrival``) to now, into ``h``. */
static inline void
delay_histogram_record(DelayHistogram *h, const struct timespec *arrival)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double delay = (double)(now.tv_sec - arrival->tv_sec) + (double)(now.tv_nsec - arrival->tv_nsec) * 1e-9;
    if (delay < 0)
        return; /* the system clock was set back meanwhile: no measurement */
    size_t i = 0;
    while (i < FORWARD_DELAY_BUCKETS && delay > forward_delay_bounds[i])
        i++;
    h->counts[i]++;
    h->sum += delay;
}

/* (bounds, counts, sum): the histogram as Python reads it (server/media/ingest.py). */
static inline PyObject *
delay_histogram_read(const DelayHistogram *h)
{
    PyObject *bounds = PyTuple_New(FORWARD_DELAY_BUCKETS);
    PyObject *counts = PyTuple_New(FORWARD_DELAY_BUCKETS + 1);
    if (bounds == NULL || counts == NULL) {
        Py_XDECREF(bounds);
        Py_XDECREF(counts);
        return NULL;
    }
    for (size_t i = 0; i <= FORWARD_DELAY_BUCKETS; i++) {
        if (i < FORWARD_DELAY_BUCKETS) {
            PyObject *bound = PyFloat_FromDouble(forward_delay_bounds[i]);
            if (bound == NULL)
                goto fail;
            PyTuple_SET_ITEM(bounds, (Py_ssize_t)i, bound);
        }
        PyObject *count = PyLong_FromUnsignedLongLong(h->counts[i]);
        if (count == NULL)
            goto fail;
        PyTuple_SET_ITEM(counts, (Py_ssize_t)i, count);
    }
    return Py_BuildValue("(NNd)", bounds, counts, h->sum);
fail:
    Py_DECREF(bounds);
    Py_DECREF(counts);
    return NULL;
}

/*
 * What the ingest's reader and the fan-out share while the reader handles the
 * datagrams of one socket (owned by _fanout.c, reached by _ingest.c through the
 * capsule `batch`):
 *   - arrival: the kernel's time of receipt of the datagram being handled, or NULL
 *     (not timed: no time, not RTP, or not handled by the reader);
 *   - open: while set, the fan-out queues its copies instead of sending each, so that
 *     a subscriber's copies of a burst (a video frame's packets, read together) go to
 *     the kernel in one UDP GSO send; flush() sends what is queued (the reader calls
 *     it before it returns, and so before anything else runs);
 *   - queued: copies queued so far (the reader tells by it whether a datagram's copies
 *     were sent at once or wait for the flush, and times the packet accordingly).
 */
typedef struct {
    const struct timespec *arrival;
    int open;
    unsigned long long queued;
    void (*flush)(void);
} FanoutBatch;

#define FANOUT_BATCH_CAPSULE "server.media._fanout.batch"

#endif
