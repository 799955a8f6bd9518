/*
 * The receive-side bandwidth estimator in C: a line-by-line port of aiortc's
 * RemoteBitrateEstimator (aiortc/rate.py: RateCounter, InterArrival,
 * OveruseEstimator, OveruseDetector, AimdRateControl), which the REMB sent to
 * a publisher comes from. Same state, same arithmetic in the same order, with
 * Python's float (C double) and Python's round() (nearbyint: half to even), so
 * that it gives the same answers packet for packet
 * (tests/media/test_compiled_ingest.py compares the two on traces).
 * aiortc's sources it follows are pinned in aiortc_internals
 * (ESTIMATOR_PORTED_SOURCES).
 *
 * Included by _ingest.c only.
 */
#include <math.h>

/* Python's `x ** 2` calls libm's pow(x, 2.0), which is not always x * x to the last
 * bit; a compiler turns pow(x, 2.0) into x * x, so squares go through this pointer. */
static double (*volatile python_pow)(double, double) = pow;

#define BURST_DELTA_THRESHOLD_MS 5
#define MAX_ADAPT_OFFSET_MS 15
#define MIN_NUM_DELTAS 60
#define DELTA_COUNTER_MAX 1000
#define MIN_FRAME_PERIOD_HISTORY_LENGTH 60
#define INTER_ARRIVAL_SHIFT 26
#define TIMESTAMP_GROUP_LENGTH_MS 5
#define TIMESTAMP_TO_MS (1000.0 / (double)(1LL << INTER_ARRIVAL_SHIFT))
#define RATE_WINDOW_MS 1000
#define RATE_SCALE 8000
#define MAX_SSRCS 64

enum { USAGE_NORMAL = 0, USAGE_UNDERUSING = 1, USAGE_OVERUSING = 2 };
enum { RC_HOLD = 0, RC_INCREASE = 1, RC_DECREASE = 2 };

typedef struct {
    long long count;
    long long value;
} RateBucket;

typedef struct {
    int has_arrival_time;
    long long arrival_time;
    long long first_timestamp;
    long long last_timestamp;
    long long size;
} TimestampGroup;

typedef struct {
    PyObject_HEAD
    /* RateCounter(1000, 8000) */
    RateBucket buckets[RATE_WINDOW_MS];
    long long origin_index;
    int has_origin;
    long long origin_ms;
    RateBucket total;
    int incoming_bitrate_initialized;
    /* InterArrival */
    long long group_length;
    int has_current, has_previous;
    TimestampGroup current, previous;
    /* OveruseEstimator */
    double E[2][2];
    long long num_of_deltas;
    double offset;
    double est_previous_offset;
    double slope;
    double ts_delta_hist[MIN_FRAME_PERIOD_HISTORY_LENGTH];
    int hist_len;
    double avg_noise;
    double var_noise;
    double process_noise[2];
    /* OveruseDetector */
    int hypothesis;
    int det_has_last_update;
    long long det_last_update_ms;
    double k_up, k_down;
    long long overuse_counter;
    int has_overuse_time;
    double overuse_time;
    double overuse_time_threshold;
    double det_previous_offset;
    double threshold;
    /* AimdRateControl */
    int has_avg_max;
    double avg_max_bitrate_kbps;
    double var_max_bitrate_kbps;
    long long current_bitrate;
    int current_bitrate_initialized;
    int has_first_throughput_time;
    long long first_estimated_throughput_time;
    int has_last_change;
    long long last_change_ms;
    int near_max;
    long long latest_estimated_throughput;
    long long rtt;
    int rc_state;
    /* RemoteBitrateEstimator */
    int has_last_update;
    long long last_update_ms;
    unsigned int ssrcs[MAX_SSRCS]; /* insertion order, as the dict's keys */
    int n_ssrcs;
    int ssrcs_overflow; /* more SSRCs than MAX_SSRCS: not expected (one stream + RTX) */
    int failed;         /* where Python would have raised (see rc_near_max_rate_increase) */
} Estimator;

static void
estimator_init_state(Estimator *e)
{
    memset(e->buckets, 0, sizeof(e->buckets));
    e->origin_index = 0;
    e->has_origin = 0;
    e->origin_ms = 0;
    e->total.count = e->total.value = 0;
    e->incoming_bitrate_initialized = 1;
    e->group_length = ((long long)TIMESTAMP_GROUP_LENGTH_MS << INTER_ARRIVAL_SHIFT) / 1000;
    e->has_current = e->has_previous = 0;
    e->E[0][0] = 100.0;
    e->E[0][1] = 0.0;
    e->E[1][0] = 0.0;
    e->E[1][1] = 0.1;
    e->num_of_deltas = 0;
    e->offset = 0.0;
    e->est_previous_offset = 0.0;
    e->slope = 1.0 / 64;
    e->hist_len = 0;
    e->avg_noise = 0.0;
    e->var_noise = 50.0;
    e->process_noise[0] = 1e-13;
    e->process_noise[1] = 1e-3;
    e->hypothesis = USAGE_NORMAL;
    e->det_has_last_update = 0;
    e->det_last_update_ms = 0;
    e->k_up = 0.0087;
    e->k_down = 0.039;
    e->overuse_counter = 0;
    e->has_overuse_time = 0;
    e->overuse_time = 0.0;
    e->overuse_time_threshold = 10;
    e->det_previous_offset = 0.0;
    e->threshold = 12.5;
    e->has_avg_max = 0;
    e->avg_max_bitrate_kbps = 0.0;
    e->var_max_bitrate_kbps = 0.4;
    e->current_bitrate = 30000000;
    e->current_bitrate_initialized = 0;
    e->has_first_throughput_time = 0;
    e->first_estimated_throughput_time = 0;
    e->has_last_change = 0;
    e->last_change_ms = 0;
    e->near_max = 0;
    e->latest_estimated_throughput = 30000000;
    e->rtt = 200;
    e->rc_state = RC_HOLD;
    e->has_last_update = 0;
    e->last_update_ms = 0;
    e->n_ssrcs = 0;
    e->ssrcs_overflow = 0;
    e->failed = 0;
}

static long long
mod_ll(long long a, long long m)
{
    long long r = a % m;
    return r < 0 ? r + m : r;
}

static long long
uint32_add(long long a, long long b)
{
    return mod_ll(a + b, 1LL << 32);
}

static int
uint32_gt(long long a, long long b)
{
    const long long half = 0x80000000LL;
    return (a < b && b - a > half) || (a > b && a - b < half);
}

/* --- RateCounter --- */

static void
rate_reset(Estimator *e)
{
    memset(e->buckets, 0, sizeof(e->buckets));
    e->origin_index = 0;
    e->has_origin = 0;
    e->origin_ms = 0;
    e->total.count = e->total.value = 0;
}

static void
rate_erase_old(Estimator *e, long long now_ms)
{
    long long new_origin_ms = now_ms - RATE_WINDOW_MS + 1;
    if (new_origin_ms - e->origin_ms >= RATE_WINDOW_MS) {
        /* Every bucket is erased: the same end state as the loop below, at once. */
        long long steps = new_origin_ms - e->origin_ms;
        memset(e->buckets, 0, sizeof(e->buckets));
        e->total.count = e->total.value = 0;
        e->origin_index = mod_ll(e->origin_index + steps, RATE_WINDOW_MS);
        e->origin_ms = new_origin_ms;
        return;
    }
    while (e->origin_ms < new_origin_ms) {
        RateBucket *bucket = &e->buckets[e->origin_index];
        e->total.count -= bucket->count;
        e->total.value -= bucket->value;
        bucket->count = 0;
        bucket->value = 0;
        e->origin_index = (e->origin_index + 1) % RATE_WINDOW_MS;
        e->origin_ms += 1;
    }
}

static void
rate_add(Estimator *e, long long value, long long now_ms)
{
    if (!e->has_origin) {
        e->has_origin = 1;
        e->origin_ms = now_ms;
    }
    else {
        rate_erase_old(e, now_ms);
    }
    long long index = mod_ll(e->origin_index + now_ms - e->origin_ms, RATE_WINDOW_MS);
    e->buckets[index].count += 1;
    e->buckets[index].value += value;
    e->total.count += 1;
    e->total.value += value;
}

/* Returns 1 and sets *rate, or 0 for None. */
static int
rate_rate(Estimator *e, long long now_ms, long long *rate)
{
    if (e->has_origin) {
        rate_erase_old(e, now_ms);
        long long active_window_size = now_ms - e->origin_ms + 1;
        if (e->total.count > 0 && active_window_size > 1) {
            /* Python: round(8000 * value / active) -- an exact int product, a
             * correctly rounded true division, round half to even. */
            *rate = (long long)nearbyint((double)(RATE_SCALE * e->total.value) / (double)active_window_size);
            return 1;
        }
    }
    return 0;
}

/* --- InterArrival --- */

static int
ia_belongs_to_burst(Estimator *e, long long timestamp, long long arrival_time)
{
    long long timestamp_delta = uint32_add(timestamp, -e->current.last_timestamp);
    long long timestamp_delta_ms = (long long)nearbyint(TIMESTAMP_TO_MS * (double)timestamp_delta);
    long long arrival_time_delta = arrival_time - e->current.arrival_time;
    return timestamp_delta_ms == 0 ||
           ((arrival_time_delta - timestamp_delta_ms) < 0 && arrival_time_delta <= BURST_DELTA_THRESHOLD_MS);
}

static int
ia_new_timestamp_group(Estimator *e, long long timestamp, long long arrival_time)
{
    if (ia_belongs_to_burst(e, timestamp, arrival_time))
        return 0;
    long long timestamp_delta = uint32_add(timestamp, -e->current.first_timestamp);
    return timestamp_delta > e->group_length;
}

static int
ia_packet_out_of_order(Estimator *e, long long timestamp)
{
    long long timestamp_delta = uint32_add(timestamp, -e->current.first_timestamp);
    return timestamp_delta >= 0x80000000LL;
}

static void
group_init(TimestampGroup *g, long long timestamp)
{
    g->has_arrival_time = 0;
    g->arrival_time = 0;
    g->first_timestamp = timestamp;
    g->last_timestamp = timestamp;
    g->size = 0;
}

/* Returns 1 with the deltas set, or 0 for None. */
static int
ia_compute_deltas(Estimator *e, long long timestamp, long long arrival_time, long long packet_size,
                  long long *d_timestamp, long long *d_arrival, long long *d_size)
{
    int has_deltas = 0;
    if (!e->has_current) {
        group_init(&e->current, timestamp);
        e->has_current = 1;
    }
    else if (ia_packet_out_of_order(e, timestamp)) {
        return 0;
    }
    else if (ia_new_timestamp_group(e, timestamp, arrival_time)) {
        if (e->has_previous) {
            *d_timestamp = uint32_add(e->current.last_timestamp, -e->previous.last_timestamp);
            *d_arrival = e->current.arrival_time - e->previous.arrival_time;
            *d_size = e->current.size - e->previous.size;
            has_deltas = 1;
        }
        e->previous = e->current;
        e->has_previous = 1;
        group_init(&e->current, timestamp);
    }
    else if (uint32_gt(timestamp, e->current.last_timestamp)) {
        e->current.last_timestamp = timestamp;
    }
    e->current.size += packet_size;
    e->current.arrival_time = arrival_time;
    e->current.has_arrival_time = 1;
    return has_deltas;
}

/* --- OveruseEstimator --- */

static double
oe_update_min_frame_period(Estimator *e, double ts_delta)
{
    double min_frame_period = ts_delta;
    if (e->hist_len >= MIN_FRAME_PERIOD_HISTORY_LENGTH) {
        memmove(e->ts_delta_hist, e->ts_delta_hist + 1, sizeof(double) * (e->hist_len - 1));
        e->hist_len -= 1;
    }
    for (int i = 0; i < e->hist_len; i++) {
        /* Python's min(old, current): old unless current is smaller */
        if (!(min_frame_period < e->ts_delta_hist[i]))
            min_frame_period = e->ts_delta_hist[i];
    }
    e->ts_delta_hist[e->hist_len++] = ts_delta;
    return min_frame_period;
}

static void
oe_update_noise_estimate(Estimator *e, double residual, double ts_delta)
{
    double alpha = 0.01;
    if (e->num_of_deltas > 10 * 30)
        alpha = 0.002;
    double beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0);
    e->avg_noise = beta * e->avg_noise + (1 - beta) * residual;
    e->var_noise = beta * e->var_noise + (1 - beta) * python_pow(e->avg_noise - residual, 2.0);
    if (e->var_noise < 1)
        e->var_noise = 1;
}

static void
oe_update(Estimator *e, long long time_delta_ms, double timestamp_delta_ms, long long size_delta,
          int current_hypothesis)
{
    double min_frame_period = oe_update_min_frame_period(e, timestamp_delta_ms);
    double t_ts_delta = (double)time_delta_ms - timestamp_delta_ms;
    double fs_delta = (double)size_delta;

    e->num_of_deltas = e->num_of_deltas + 1 < DELTA_COUNTER_MAX ? e->num_of_deltas + 1 : DELTA_COUNTER_MAX;

    e->E[0][0] += e->process_noise[0];
    e->E[1][1] += e->process_noise[1];
    if ((current_hypothesis == USAGE_OVERUSING && e->offset < e->est_previous_offset) ||
        (current_hypothesis == USAGE_UNDERUSING && e->offset > e->est_previous_offset)) {
        e->E[1][1] += 10 * e->process_noise[1];
    }

    double h0 = fs_delta, h1 = 1.0;
    double Eh0 = e->E[0][0] * h0 + e->E[0][1] * h1;
    double Eh1 = e->E[1][0] * h0 + e->E[1][1] * h1;

    double residual = t_ts_delta - e->slope * h0 - e->offset;
    if (current_hypothesis == USAGE_NORMAL) {
        double max_residual = 3.0 * sqrt(e->var_noise);
        if (fabs(residual) < max_residual)
            oe_update_noise_estimate(e, residual, min_frame_period);
        else
            oe_update_noise_estimate(e, residual < 0 ? -max_residual : max_residual, min_frame_period);
    }

    double denom = e->var_noise + h0 * Eh0 + h1 * Eh1;
    double K0 = Eh0 / denom, K1 = Eh1 / denom;

    double IKh00 = 1.0 - K0 * h0, IKh01 = -K0 * h1;
    double IKh10 = -K1 * h0, IKh11 = 1.0 - K1 * h1;
    double e00 = e->E[0][0];
    double e01 = e->E[0][1];

    e->E[0][0] = e00 * IKh00 + e->E[1][0] * IKh01;
    e->E[0][1] = e01 * IKh00 + e->E[1][1] * IKh01;
    e->E[1][0] = e00 * IKh10 + e->E[1][0] * IKh11;
    e->E[1][1] = e01 * IKh10 + e->E[1][1] * IKh11;

    e->est_previous_offset = e->offset;
    e->slope += K0 * residual;
    e->offset += K1 * residual;
}

/* --- OveruseDetector --- */

static void
od_update_threshold(Estimator *e, double modified_offset, long long now_ms)
{
    if (!e->det_has_last_update) {
        e->det_has_last_update = 1;
        e->det_last_update_ms = now_ms;
    }
    if (fabs(modified_offset) > e->threshold + MAX_ADAPT_OFFSET_MS) {
        e->det_last_update_ms = now_ms;
        return;
    }
    double k = fabs(modified_offset) < e->threshold ? e->k_down : e->k_up;
    long long time_delta_ms = now_ms - e->det_last_update_ms;
    if (time_delta_ms > 100)
        time_delta_ms = 100;
    e->threshold += k * (fabs(modified_offset) - e->threshold) * (double)time_delta_ms;
    /* max(6, min(threshold, 600)) */
    double t = e->threshold;
    if (600 < t)
        t = 600;
    if (t < 6)
        t = 6;
    e->threshold = t;
    e->det_last_update_ms = now_ms;
}

static void
od_detect(Estimator *e, double offset, double timestamp_delta_ms, long long num_of_deltas, long long now_ms)
{
    if (num_of_deltas < 2)
        return; /* Python returns NORMAL without changing the hypothesis */
    double T = (double)(num_of_deltas < MIN_NUM_DELTAS ? num_of_deltas : MIN_NUM_DELTAS) * offset;
    if (T > e->threshold) {
        if (!e->has_overuse_time) {
            e->has_overuse_time = 1;
            e->overuse_time = timestamp_delta_ms / 2;
        }
        else {
            e->overuse_time += timestamp_delta_ms;
        }
        e->overuse_counter += 1;
        if (e->overuse_time > e->overuse_time_threshold && e->overuse_counter > 1 &&
            offset >= e->det_previous_offset) {
            e->overuse_counter = 0;
            e->overuse_time = 0;
            e->hypothesis = USAGE_OVERUSING;
        }
    }
    else if (T < -e->threshold) {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = USAGE_UNDERUSING;
    }
    else {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = USAGE_NORMAL;
    }
    e->det_previous_offset = offset;
    od_update_threshold(e, T, now_ms);
}

/* --- AimdRateControl --- */

static long long
rc_clamp_bitrate(Estimator *e, long long new_bitrate, long long estimated_throughput)
{
    long long max_bitrate = (long long)(1.5 * (double)estimated_throughput) + 10000;
    if (max_bitrate < e->current_bitrate)
        max_bitrate = e->current_bitrate;
    return new_bitrate < max_bitrate ? new_bitrate : max_bitrate;
}

static long long
rc_near_max_rate_increase(Estimator *e)
{
    double bits_per_frame = (double)e->current_bitrate / 30;
    double packets_per_frame = ceil(bits_per_frame / (8 * 1200));
    if (packets_per_frame == 0) {
        e->failed = 1; /* Python: ZeroDivisionError (a current bitrate of 0) */
        return 4000;
    }
    double avg_packet_size_bits = bits_per_frame / packets_per_frame;
    long long response_time = e->rtt + 100;
    long long increase = (long long)((avg_packet_size_bits * 1000) / (double)response_time);
    return increase > 4000 ? increase : 4000;
}

static long long
rc_additive_rate_increase(Estimator *e, long long last_ms, long long now_ms)
{
    /* Python: an exact int product, then a true division */
    return (long long)((double)((now_ms - last_ms) * rc_near_max_rate_increase(e)) / 1000);
}

static long long
rc_multiplicative_rate_increase(Estimator *e, long long new_bitrate, int has_last, long long last_ms,
                                long long now_ms)
{
    double alpha = 1.08;
    if (has_last) {
        long long elapsed_ms = now_ms - last_ms;
        if (elapsed_ms > 1000)
            elapsed_ms = 1000;
        alpha = pow(alpha, (double)elapsed_ms / 1000);
    }
    double increase = (alpha - 1) * (double)new_bitrate;
    return (long long)(increase > 1000 ? increase : 1000);
}

static void
rc_update_max_throughput_estimate(Estimator *e, double estimated_throughput_kbps)
{
    double alpha = 0.05;
    if (!e->has_avg_max) {
        e->has_avg_max = 1;
        e->avg_max_bitrate_kbps = estimated_throughput_kbps;
    }
    else {
        e->avg_max_bitrate_kbps = (1 - alpha) * e->avg_max_bitrate_kbps + alpha * estimated_throughput_kbps;
    }
    double norm = e->avg_max_bitrate_kbps > 1 ? e->avg_max_bitrate_kbps : 1;
    e->var_max_bitrate_kbps = (1 - alpha) * e->var_max_bitrate_kbps +
                              alpha * python_pow(e->avg_max_bitrate_kbps - estimated_throughput_kbps, 2.0) / norm;
    double v = e->var_max_bitrate_kbps;
    if (2.5 < v)
        v = 2.5;
    if (v < 0.4)
        v = 0.4;
    e->var_max_bitrate_kbps = v;
}

/* Returns 1 with *bitrate set, or 0 for None. */
static int
rc_update(Estimator *e, int bandwidth_usage, int has_throughput, long long estimated_throughput, long long now_ms,
          long long *bitrate)
{
    if (!e->current_bitrate_initialized && has_throughput) {
        if (!e->has_first_throughput_time) {
            e->has_first_throughput_time = 1;
            e->first_estimated_throughput_time = now_ms;
        }
        else if (now_ms - e->first_estimated_throughput_time > 3000) {
            e->current_bitrate = estimated_throughput;
            e->current_bitrate_initialized = 1;
        }
    }
    if (!e->current_bitrate_initialized && bandwidth_usage != USAGE_OVERUSING)
        return 0;

    if (bandwidth_usage == USAGE_NORMAL && e->rc_state == RC_HOLD) {
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
        e->rc_state = RC_INCREASE;
    }
    else if (bandwidth_usage == USAGE_OVERUSING) {
        e->rc_state = RC_DECREASE;
    }
    else if (bandwidth_usage == USAGE_UNDERUSING) {
        e->rc_state = RC_HOLD;
    }

    long long new_bitrate = e->current_bitrate;
    if (has_throughput)
        e->latest_estimated_throughput = estimated_throughput;
    else
        estimated_throughput = e->latest_estimated_throughput;
    double estimated_throughput_kbps = (double)estimated_throughput / 1000;

    if (e->rc_state == RC_INCREASE) {
        if (e->has_avg_max) {
            double sigma_kbps = sqrt(e->var_max_bitrate_kbps * e->avg_max_bitrate_kbps);
            if (estimated_throughput_kbps >= e->avg_max_bitrate_kbps + 3 * sigma_kbps) {
                e->near_max = 0;
                e->has_avg_max = 0;
            }
        }
        if (e->near_max)
            new_bitrate += rc_additive_rate_increase(e, e->last_change_ms, now_ms);
        else
            new_bitrate += rc_multiplicative_rate_increase(e, new_bitrate, e->has_last_change, e->last_change_ms,
                                                           now_ms);
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
    }
    else if (e->rc_state == RC_DECREASE) {
        if (e->has_avg_max) {
            double sigma_kbps = sqrt(e->var_max_bitrate_kbps * e->avg_max_bitrate_kbps);
            if (estimated_throughput_kbps < e->avg_max_bitrate_kbps - 3 * sigma_kbps)
                e->has_avg_max = 0;
        }
        rc_update_max_throughput_estimate(e, estimated_throughput_kbps);
        e->near_max = 1;
        new_bitrate = (long long)nearbyint(0.85 * (double)estimated_throughput);
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
        e->rc_state = RC_HOLD;
    }
    e->current_bitrate = rc_clamp_bitrate(e, new_bitrate, estimated_throughput);
    *bitrate = e->current_bitrate;
    return 1;
}

/* --- RemoteBitrateEstimator.add --- */

/* Returns 1 with *bitrate set (the REMB to send, for e->ssrcs), 0 for None, -1 with
 * ZeroDivisionError set where Python would have raised it. */
static int
estimator_add(Estimator *e, long long arrival_time_ms, long long abs_send_time, long long payload_size,
              unsigned int ssrc, long long *bitrate)
{
    long long timestamp = abs_send_time << 8;
    int update_estimate = 0;
    long long rate;

    int known = 0;
    for (int i = 0; i < e->n_ssrcs; i++) {
        if (e->ssrcs[i] == ssrc) {
            known = 1;
            break;
        }
    }
    if (!known) {
        if (e->n_ssrcs < MAX_SSRCS)
            e->ssrcs[e->n_ssrcs++] = ssrc;
        else
            e->ssrcs_overflow = 1;
    }

    if (rate_rate(e, arrival_time_ms, &rate)) {
        e->incoming_bitrate_initialized = 1;
    }
    else if (e->incoming_bitrate_initialized) {
        rate_reset(e);
        e->incoming_bitrate_initialized = 0;
    }
    rate_add(e, payload_size, arrival_time_ms);

    long long d_timestamp, d_arrival, d_size;
    if (ia_compute_deltas(e, timestamp, arrival_time_ms, payload_size, &d_timestamp, &d_arrival, &d_size)) {
        double timestamp_delta_ms = (double)d_timestamp * TIMESTAMP_TO_MS;
        oe_update(e, d_arrival, timestamp_delta_ms, d_size, e->hypothesis);
        od_detect(e, e->offset, timestamp_delta_ms, e->num_of_deltas, arrival_time_ms);
    }

    if (!update_estimate) {
        if (!e->has_last_update || (arrival_time_ms - e->last_update_ms) > 500 /* feedback_interval() */)
            update_estimate = 1;
        else if (e->hypothesis == USAGE_OVERUSING)
            update_estimate = 1;
    }
    if (update_estimate) {
        int has_rate = rate_rate(e, arrival_time_ms, &rate);
        long long target;
        if (rc_update(e, e->hypothesis, has_rate, has_rate ? rate : 0, arrival_time_ms, &target)) {
            if (e->failed) {
                e->failed = 0;
                PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
                return -1;
            }
            e->has_last_update = 1;
            e->last_update_ms = arrival_time_ms;
            *bitrate = target;
            return 1;
        }
    }
    return 0;
}
