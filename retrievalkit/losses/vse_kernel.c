/* The VSE++ MH (max of hinges) terms of a square similarity matrix and their
 * gradient products, as two fused loops (float32, CPU, one thread). The Python side
 * (vse_native.py) builds this file into a cached shared library and calls it through
 * ctypes; hinge.py / hinge_small.py hold the formula and the eager (torch) version,
 * which this must equal.
 *
 * vse_hardest: S = img txt^T [n, n] row-major, pair (q, q) matched; a negative of
 * image query q is a column j with ids[j] != ids[q] (ids NULL: j != q), of caption
 * query j a row i with ids[i] != ids[j]. In one pass over S, per query k of [S; S^T]
 * (k < n: image k, row k; k = n + j: caption j, column j): the largest similarity to
 * a negative (value, its first index) and the largest of the others (second; equal
 * to value when the maximum occurs twice), both the float's lowest value when the
 * query has no negative. Then, in the formula's float order,
 *   top = (margin + value) - S_qq,   cost = [top]_+,   other = (margin + second) - S_qq
 * (each sum stored in a volatile, so the build's -fassociative-math cannot regroup
 * it), and the query's gradient weight: 1 when top > 0 and other != top (a single
 * maximum), 0 else; tied[k] = 1 when top > 0 and other == top (the maximum's cost is
 * attained twice: the caller resolves the row exactly). Returns the number of tied
 * queries. Only comparisons and these two subtractions: the costs are vsepp's bit
 * for bit (max commutes with the monotone (margin + x) - d).
 *
 * vse_hardest_products: G = dL/dS with +w_r[q] at (q, r[q]), -w_r[q] at (q, q),
 * +w_c[j] at (c[j], j), -w_c[j] at (j, j), times scale; writes
 *   d_img = G txt,   d_txt = G^T img   ([n, d] each, overwritten)
 * row by row: a gather with the diagonal term, then the scatter of the other
 * direction. Every row is computed whatever its weight (no data-dependent skip).
 */
#include <float.h>
#include <stdint.h>

int vse_hardest(const float *sim, int64_t n, const int64_t *ids, float margin, float *costs,
                float *weight, int64_t *index, uint8_t *tied, float *col_value,
                float *col_second) {
    const float lowest = -FLT_MAX;
    for (int64_t j = 0; j < n; ++j) {
        col_value[j] = lowest;
        col_second[j] = lowest;
        index[n + j] = 0;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float *row = sim + i * n;
        float value = lowest, second = lowest;
        int64_t best = 0;
        for (int64_t j = 0; j < n; ++j) {
            int negative = ids ? ids[j] != ids[i] : j != i;
            if (!negative) continue;
            float x = row[j];
            if (x > value) {
                second = value;
                value = x;
                best = j;
            } else if (x > second) {
                second = x;
            }
            if (x > col_value[j]) {
                col_second[j] = col_value[j];
                col_value[j] = x;
                index[n + j] = i;
            } else if (x > col_second[j]) {
                col_second[j] = x;
            }
        }
        index[i] = best;
        costs[i] = value;   /* the row's value and second for now, */
        weight[i] = second; /* turned into its cost and weight below */
    }
    int64_t num_tied = 0;
    for (int64_t k = 0; k < 2 * n; ++k) {
        int64_t q = k < n ? k : k - n;
        float value = k < n ? costs[k] : col_value[q];
        float second = k < n ? weight[k] : col_second[q];
        float diag = sim[q * n + q];
        volatile float shifted = margin + value;
        float top = shifted - diag;
        volatile float shifted_second = margin + second;
        float other = shifted_second - diag;
        int active = top > 0.0f;
        int tie = active && other == top;
        costs[k] = active ? top : 0.0f;
        weight[k] = active && !tie ? 1.0f : 0.0f;
        tied[k] = (uint8_t)tie;
        num_tied += tie;
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
