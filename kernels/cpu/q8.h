/* The int8-activation path (accuracy="int8"): integer dot products, as llama.cpp's Q8 activations.
 *
 * Each x row is cut into blocks of 32 inputs; block b is quantized to int8 codes
 * xq = rint(x / d_b) with d_b = max|x in b| / 127. Then, per weight row and block,
 *
 *   int4     sum_k W x  ~=  sum_g s_g * (sum_{b in g} d_b * sum_k (c_k - 8) xq_k)
 *   int4 asym           =   sum_g s_g * (sum_{b in g} d_b * sum_k c_k xq_k) + min_g * sum_{k in g} x_k
 *   int8                =   s * sum_b d_b * sum_k q_k xq_k
 *
 * with the inner sums exact in int32 (maddubs/madd) and the rest in float32. The error
 * against the exact path is at most ||W_n|| * ||x - d*xq|| <= ||W_n|| * sqrt(sum_b 32 d_b^2) / 2.
 * An input tail shorter than a block (K % 32) is computed exactly. Up to Q8_MAX_M rows go one
 * weight row at a time (q8.c); more rows take the tiled kernel of q8_gemm.c, on AVX2 levels (the
 * portable level, and int8 weights without VNNI, take the exact tiled path there).
 */
#ifndef EDGEC_Q8_H
#define EDGEC_Q8_H

#include "weight.h"

#define Q8_BLOCK 32
#define Q8_MAX_M 4

/* Whether a weight can take the int8-activation path (dense int4, int4 asym or int8). */
int q8_supported(const Weight *w);

/* y = x @ W^T through int8 activations; same arguments as edgec_linear. Returns 0, or -1 if
 * scratch memory could not be allocated. */
int q8_linear(const Weight *w, const Level *lv, const float *x, int64_t ldx, int64_t m,
              float *y, int64_t ldy, int n_threads);

#endif
