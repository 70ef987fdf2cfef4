/* The VSE++ hinge terms of a square similarity matrix and their gradient, as fused
 * loops (float32, CPU, one thread). The Python side (vse_native.py) builds this file
 * into a cached shared library and calls it through ctypes; hinge.py / hinge_small.py
 * hold the formula and the eager (torch) version, which this must equal.
 *
 * Built WITHOUT -fassociative-math (vse_native.EXACT_FLAGS): the costs are computed
 * in the formula's float order, h = (margin + S_ij) - S_qq, and must stay bit for bit
 * those of torch and vsepp (a reassociating compiler would hoist margin - S_qq).
 *
 * S = img txt^T [n, n] row-major, pair (q, q) matched. A negative of image query i
 * is a column j with ids[j] != ids[i] (ids NULL: j != i), of caption query j a row
 * i with ids[i] != ids[j].
 *
 * vse_hardest (MH): in one pass over S, per query k of [S; S^T] (k < n: image k,
 * row k; k = n + j: caption j, column j): the largest similarity to a negative
 * (value, its first index) and the largest of the others (second; equal to value
 * when the maximum occurs twice), both the float's lowest value when the query has
 * no negative. Then
 *   top = (margin + value) - S_qq,   cost = [top]_+,   other = (margin + second) - S_qq
 * and the query's gradient weight: 1 when top > 0 and other != top (a single
 * maximum), 0 else; tied[k] = 1 when top > 0 and other == top (the maximum's cost is
 * attained twice: the caller resolves the row exactly). Returns the number of tied
 * queries (-1: no memory for its 5 n int32). The costs are vsepp's bit for bit (max
 * commutes with the monotone (margin + x) - d).
 *
 * vse_hardest_products (MH backward): G = dL/dS with +w_r[q] at (q, r[q]), -w_r[q]
 * at (q, q), +w_c[j] at (c[j], j), -w_c[j] at (j, j), times scale; writes
 *   d_img = G txt,   d_txt = G^T img   ([n, d] each, overwritten)
 * row by row: a gather with the diagonal term, then the scatter of the other
 * direction. Every row is computed whatever its weight (no data-dependent skip).
 *
 * vse_sum_hinges (SH): writes vsepp's two cost matrices, cost_rows[i][j] =
 * [(margin + S_ij) - S_ii]_+ (image i against caption j) and cost_cols[i][j] =
 * [(margin + S_ij) - S_jj]_+ (caption j against image i), 0 at non-negatives, and
 * G = dL/dS: [cost_rows > 0] + [cost_cols > 0], the diagonal minus each query's
 * two counts (it is a non-negative: 0 before). grad may be sim itself (written over
 * it: S_qq is copied first). Returns -1 when it cannot allocate its 2 n floats. The caller sums the cost matrices
 * (torch's sums, as vsepp's).
 *
 * NaN: a NaN anywhere in S makes every MH cost and weight NaN, and SH's first cost and
 * all of G NaN, so the loss and the gradient are NaN as torch's are (a comparison
 * with NaN is false and a NaN's key is ranked: without this a NaN would be a cost of
 * 0, hidden from the trainer's non-finite guard).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Floats as int32 keys in the same order (negative floats: all bits but the sign
 * flipped; the map is its own inverse): integer max/min reductions vectorize without
 * reassociating float arithmetic. -0.0 sorts just below +0.0 (both give the same
 * cost). */
static inline int32_t key_of(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits ^ ((bits >> 31) & 0x7fffffff);
}

static inline float float_of(int32_t key) {
    int32_t bits = key ^ ((key >> 31) & 0x7fffffff);
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* Row i's keys (non-negatives at the lowest) and their maximum, and the columns'
 * running largest (col_value), second (col_second) and first row (col_index). */
#define HARDEST_ROW(NEGATIVE)                                                             \
    for (int64_t j = 0; j < n; ++j) {                                                   \
        nans += row[j] != row[j];                                                       \
        int32_t key = (NEGATIVE) ? key_of(row[j]) : lowest;                             \
        keys[j] = key;                                                                  \
        best = key > best ? key : best;                                                 \
        int32_t value = col_value[j], second = col_second[j];                           \
        int32_t smaller = key < value ? key : value;                                    \
        col_second[j] = smaller > second ? smaller : second;                            \
        col_index[j] = key > value ? (int32_t)i : col_index[j];                         \
        col_value[j] = key > value ? key : value;                                       \
    }

int vse_hardest(const float *restrict sim, int64_t n, const int64_t *restrict ids,
                float margin, float *restrict costs, float *restrict weight,
                int64_t *restrict index, uint8_t *restrict tied) {
    int32_t *scratch = malloc(5 * (size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!scratch) return -1;
    int32_t *restrict keys = scratch, *restrict col_value = scratch + n;
    int32_t *restrict col_second = scratch + 2 * n, *restrict col_index = scratch + 3 * n;
    int32_t *restrict row_second = scratch + 4 * n;
    const int32_t lowest = key_of(-FLT_MAX);
    int64_t nans = 0; /* NaN similarities (their keys would be ranked, not propagated) */
    for (int64_t j = 0; j < n; ++j) {
        col_value[j] = lowest;
        col_second[j] = lowest;
        col_index[j] = 0;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float *restrict row = sim + i * n;
        int32_t best = lowest;
        if (ids) {
            const int64_t own_id = ids[i];
            HARDEST_ROW(ids[j] != own_id)
        } else {
            HARDEST_ROW(j != i)
        }
        int64_t first = n; /* the first column attaining the maximum */
        for (int64_t j = 0; j < n; ++j) {
            int64_t at = keys[j] == best ? j : n;
            first = at < first ? at : first;
        }
        int32_t second = lowest; /* the largest of the others */
        for (int64_t j = 0; j < n; ++j) {
            int32_t key = j == first ? lowest : keys[j];
            second = key > second ? key : second;
        }
        index[i] = first < n ? first : 0;
        costs[i] = float_of(best); /* the row's value and second for now, */
        row_second[i] = second;    /* turned into its cost and weight below */
    }
    int64_t num_tied = 0;
    for (int64_t k = 0; k < 2 * n; ++k) {
        int64_t q = k < n ? k : k - n;
        float value = k < n ? costs[k] : float_of(col_value[q]);
        float second = float_of(k < n ? row_second[q] : col_second[q]);
        float diag = sim[q * n + q];
        float top = (margin + value) - diag;
        float other = (margin + second) - diag;
        int active = top > 0.0f;
        int tie = active && other == top;
        costs[k] = active ? top : 0.0f;
        weight[k] = active && !tie ? 1.0f : 0.0f;
        tied[k] = (uint8_t)tie;
        num_tied += tie;
        if (k >= n) index[k] = col_index[q];
    }
    free(scratch);
    if (nans) { /* as torch's max: a NaN cost, and a NaN gradient weight */
        for (int64_t k = 0; k < 2 * n; ++k) {
            costs[k] = NAN;
            weight[k] = NAN;
            tied[k] = 0;
        }
        return 0;
    }
    return (int)num_tied;
}

void vse_hardest_products(const float *img, const float *txt, int64_t n, int64_t d,
                          const int64_t *row_index, const float *row_weight,
                          const int64_t *col_index, const float *col_weight, float scale,
                          float *d_img, float *d_txt) {
    for (int64_t q = 0; q < n; ++q) {
        float w_row = row_weight[q] * scale, w_col = col_weight[q] * scale;
        float w_diag = w_row + w_col;
        const float *hard_txt = txt + row_index[q] * d, *own_txt = txt + q * d;
        const float *hard_img = img + col_index[q] * d, *own_img = img + q * d;
        float *out_img = d_img + q * d, *out_txt = d_txt + q * d;
        for (int64_t e = 0; e < d; ++e) {
            out_img[e] = w_row * hard_txt[e] - w_diag * own_txt[e];
            out_txt[e] = w_col * hard_img[e] - w_diag * own_img[e];
        }
    }
    for (int64_t q = 0; q < n; ++q) {
        float w_row = row_weight[q] * scale, w_col = col_weight[q] * scale;
        float *to_img = d_img + col_index[q] * d, *to_txt = d_txt + row_index[q] * d;
        const float *own_txt = txt + q * d, *own_img = img + q * d;
        for (int64_t e = 0; e < d; ++e) {
            to_img[e] += w_col * own_txt[e];
            to_txt[e] += w_row * own_img[e];
        }
    }
}

/* One row i of vse_sum_hinges, branch-free so that the compiler vectorizes it (an
 * integer count: no float reduction to reorder; ivdep: grad_out[j] may be row[j],
 * read before it is written, no other overlap); NEGATIVE(j) is an expression. */
#define SUM_HINGES_ROW(NEGATIVE)                                                          \
    _Pragma("GCC ivdep") for (int64_t j = 0; j < n; ++j) {                                                   \
        int negative = (NEGATIVE);                                                      \
        const float value = row[j]; /* read before grad_out[j] is written */            \
        nans += value != value;                                                         \
        float shifted = margin + value;                                                 \
        float h_row = shifted - own, h_col = shifted - diag[j];                         \
        int active_row = negative & (h_row > 0.0f), active_col = negative & (h_col > 0.0f); \
        rows_out[j] = active_row ? h_row : 0.0f;                                        \
        cols_out[j] = active_col ? h_col : 0.0f;                                        \
        grad_out[j] = (float)(active_row + active_col); /* may be row[j] itself */      \
        count += active_row;                                                            \
        col_count[j] += (float)active_col;                                              \
    }

int vse_sum_hinges(const float *sim, int64_t n, const int64_t *restrict ids, float margin,
                   float *restrict cost_rows, float *restrict cost_cols, float *grad) {
    float *scratch = malloc(2 * (size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!scratch) return -1;
    float *restrict diag = scratch, *restrict col_count = scratch + n;
    int64_t nans = 0; /* NaN similarities (a comparison with NaN is false: a cost of 0) */
    for (int64_t q = 0; q < n; ++q) {
        diag[q] = sim[q * n + q];
        col_count[q] = 0.0f;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float *row = sim + i * n;
        float *restrict rows_out = cost_rows + i * n, *restrict cols_out = cost_cols + i * n;
        float *grad_out = grad + i * n; /* grad may be sim: each entry is read, then written */
        const float own = diag[i];
        int count = 0;
        if (ids) {
            const int64_t own_id = ids[i];
            SUM_HINGES_ROW(ids[j] != own_id)
        } else {
            SUM_HINGES_ROW(j != i)
        }
        grad_out[i] = -(float)count; /* a non-negative: 0 before */
    }
    for (int64_t q = 0; q < n; ++q) grad[q * n + q] -= col_count[q];
    free(scratch);
    if (nans) { /* as torch's clamp: a NaN cost (so a NaN loss) and a NaN gradient */
        cost_rows[0] = NAN;
        for (int64_t k = 0; k < n * n; ++k) grad[k] = NAN;
    }
    return 0;
}
