/* Smooth-AP of a group of queries with k positives each, in two passes over each
 * query's row (float32, CPU). The Python side (smooth_ap_native.py) builds this file
 * into a cached shared library and calls it through ctypes; smooth_ap.py holds the
 * formula and the eager (torch) version of the same passes, which this must equal.
 *
 * For query q (row q of logits L = S / tau, [B, R] row-major) with positive columns
 * p_0..p_{k-1} and anchors a_i = L[q, p_i]:
 *   s_ij     = sigmoid(L[q, j] - a_i)                      (all j in 0..R-1)
 *   denom_i  = 0.5 + sum_j s_ij                            (j = p_i adds G(0) = 0.5)
 *   numer_i  = 0.5 + sum_l sigmoid(a_l - a_i)
 *   AP_q     = mean_i numer_i / denom_i
 * With a weight w_q, also the gradient of w_q AP_q with respect to S (L = S / tau),
 * written over row q of L (the row is read into the scratch first):
 *   gn_i = w_q / (k tau denom_i),  gd_i = -gn_i numer_i / denom_i
 *   dS[q, j]   = sum_i gd_i s_ij (1 - s_ij)
 *   dS[q, p_l] += sum_i gn_i t_il - gn_l sum_m t_lm - gd_l sum_j s_lj (1 - s_lj),
 *   t_il = sigmoid(a_l - a_i) (1 - sigmoid(a_l - a_i)).
 * A column at -inf (the query's own, excluded) gives s = 0 and a gradient of 0.
 * Work: 2 k R sigmoid terms per query, one exp each; memory: k R floats of scratch
 * per thread. Queries of one call write disjoint rows, so threads need no locks.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define RK_HAS_MXCSR 1
#endif

/* exp(x) for x <= 0 (the callers pass -|x|): Cephes' expf polynomial after the range
 * reduction x = n ln2 + r, |r| <= ln2 / 2 (about 1 ulp); exactly 0 below -87.3, where
 * exp(x) is under the smallest normal float (so no subnormal is ever formed). Written
 * without branches or library calls so that the compiler vectorizes the loops. */
static inline float exp_nonpositive(float x) {
    const float underflow = -87.3f;
    float xc = x < underflow ? underflow : x;
    float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < underflow ? 0.0f : p * scale;
}

/* sigmoid(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, e = exp(-|x|):
 * accurate in relative terms on both sides; sigmoid(-inf) = 0, sigmoid(inf) = 1. */
static inline float sigmoid(float x) {
    float e = exp_nonpositive(-fabsf(x));
    float inv = 1.0f / (1.0f + e);
    return x >= 0.0f ? inv : e * inv;
}

typedef struct {
    const float *logits; /* [B, R], may alias grad */
    float *grad;         /* [B, R] or NULL */
    int64_t num_refs;    /* R */
    const int64_t *rows; /* [Q] */
    const int64_t *pos;  /* [Q, k] */
    int64_t k;
    const float *weight; /* [Q] or NULL (no gradient) */
    float inv_tau;
    float *ap;           /* [Q] */
    int64_t first, last; /* the queries [first, last) of this worker */
    int status;          /* 0 ok, 1 out of memory */
} Job;

/* One query: its AP, and with a weight its gradient row. scratch: [k, R]. */
static float one_query(const Job *job, int64_t query, float *scratch) {
    const int64_t num_refs = job->num_refs, k = job->k;
    const int64_t row = job->rows[query];
    const int64_t *pos = job->pos + query * k;
    const float *logit_row = job->logits + row * num_refs;
    float anchors[k], denom[k], numer[k], pos_grad[k];
    for (int64_t i = 0; i < k; ++i) anchors[i] = logit_row[pos[i]];
    for (int64_t i = 0; i < k; ++i) {
        float *s = scratch + i * num_refs, sum = 0.0f;
        const float anchor = anchors[i];
        for (int64_t j = 0; j < num_refs; ++j) {
            s[j] = sigmoid(logit_row[j] - anchor);
            sum += s[j];
        }
        denom[i] = 0.5f + sum;
        float pos_sum = 0.0f;
        for (int64_t l = 0; l < k; ++l) pos_sum += sigmoid(anchors[l] - anchor);
        numer[i] = 0.5f + pos_sum;
    }
    float ap = 0.0f;
    for (int64_t i = 0; i < k; ++i) ap += numer[i] / denom[i];
    ap /= (float)k;
    if (job->weight == NULL || job->grad == NULL) return ap;

    float g_numer[k], g_denom[k];
    const float scale = job->weight[query] * job->inv_tau / (float)k;
    for (int64_t i = 0; i < k; ++i) {
        g_numer[i] = scale / denom[i];
        g_denom[i] = -g_numer[i] * (numer[i] / denom[i]);
        pos_grad[i] = 0.0f;
    }
    for (int64_t i = 0; i < k; ++i) { /* the positives' own block */
        for (int64_t l = 0; l < k; ++l) {
            float sig = sigmoid(anchors[l] - anchors[i]);
            float w = g_numer[i] * sig * (1.0f - sig);
            pos_grad[l] += w;
            pos_grad[i] -= w;
        }
    }
    float *grad_row = job->grad + row * num_refs; /* the row is in the scratch now */
    for (int64_t i = 0; i < k; ++i) {
        const float *s = scratch + i * num_refs;
        const float g = g_denom[i];
        float sum = 0.0f;
        if (i == 0) {
            for (int64_t j = 0; j < num_refs; ++j) {
                float w = g * s[j] * (1.0f - s[j]);
                grad_row[j] = w;
                sum += w;
            }
        } else {
            for (int64_t j = 0; j < num_refs; ++j) {
                float w = g * s[j] * (1.0f - s[j]);
                grad_row[j] += w;
                sum += w;
            }
        }
        pos_grad[i] -= sum;
    }
    for (int64_t i = 0; i < k; ++i) grad_row[pos[i]] += pos_grad[i];
    return ap;
}

static void *run_job(void *arg) {
    Job *job = (Job *)arg;
#ifdef RK_HAS_MXCSR
    /* flush subnormal products to zero (s (1 - s) g can fall below the smallest
     * normal float; subnormal arithmetic costs about 100 cycles on x86) */
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040);
#endif
    float *scratch = (float *)malloc(sizeof(float) * (size_t)(job->k * job->num_refs));
    if (scratch == NULL) {
        job->status = 1;
    } else {
        for (int64_t q = job->first; q < job->last; ++q) job->ap[q] = one_query(job, q, scratch);
        free(scratch);
    }
#ifdef RK_HAS_MXCSR
    _mm_setcsr(saved);
#endif
    return NULL;
}

/* The group's AP into ap [Q], and with weight != NULL its gradient rows over grad.
 * Splits the queries over num_threads threads (the calling thread is one of them).
 * Returns 0, or 1 when memory or a thread could not be had (nothing is then valid). */
int smooth_ap_group(const float *logits, float *grad, int64_t num_refs, const int64_t *rows,
                    const int64_t *pos, int64_t num_queries, int64_t k, const float *weight,
                    float inv_tau, float *ap, int num_threads) {
    if (num_queries <= 0) return 0;
    if (num_threads < 1) num_threads = 1;
    if (num_threads > num_queries) num_threads = (int)num_queries;
    Job *jobs = (Job *)calloc((size_t)num_threads, sizeof(Job));
    pthread_t *threads = (pthread_t *)calloc((size_t)num_threads, sizeof(pthread_t));
    int status = 0;
    if (jobs == NULL || threads == NULL) {
        free(jobs);
        free(threads);
        return 1;
    }
    int started[num_threads];
    for (int t = 0; t < num_threads; ++t) {
        Job job = {logits, grad, num_refs, rows, pos, k, weight, inv_tau, ap,
                   num_queries * t / num_threads, num_queries * (t + 1) / num_threads, 0};
        jobs[t] = job;
        started[t] = t > 0 && pthread_create(&threads[t], NULL, run_job, &jobs[t]) == 0;
    }
    run_job(&jobs[0]);
    for (int t = 1; t < num_threads; ++t) {
        if (started[t]) {
            pthread_join(threads[t], NULL);
        } else {
            run_job(&jobs[t]); /* no thread to be had: do its share here */
        }
    }
    for (int t = 0; t < num_threads; ++t) status |= jobs[t].status;
    free(jobs);
    free(threads);
    return status;
}
