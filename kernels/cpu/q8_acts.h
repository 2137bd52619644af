/* What the int8-activation kernels share: quantized activations and the pieces around them (internal). */
#ifndef EDGEC_Q8_ACTS_H
#define EDGEC_Q8_ACTS_H

#include "q8.h"

/* Quantized activations of m rows.
 * gsum, per row and scale group: int4 and int8 sum_b d_b * sum(xq in block b); int4 asym sum(x). */
typedef struct {
    int8_t *xq;       /* (m, nb * 32) codes; for int4 kinds each block is stored evens first, then odds */
    float *d;         /* (m, nb) block scales */
    float *gsum;      /* (m, ng) per-group sums (see above) */
    int64_t nb, ng;   /* full blocks, scale groups per row */
} Acts;

/* log2 of the blocks per scale group, or -1 if that is not a power of two. */
static inline int block_shift(int64_t group)
{
    for (int s = 0; s < 16; s++)
        if ((int64_t)Q8_BLOCK << s == group)
            return s;
    return -1;
}

/* The exact contribution of the inputs past the last full block. */
static inline float exact_tail(const Weight *w, int64_t n, int64_t k32, const float *x)
{
    const uint8_t *qrow = w->q + n * w->q_stride;
    float acc = 0.0f;
    for (int64_t k = k32; k < w->kv; k++) {
        const int64_t g = k / w->group;
        const float s = w->scale[n * w->ng + g], m = w->minv ? w->minv[n * w->ng + g] : 0.0f;
        acc += value_at(w->kind, qrow, k, s, m) * x[k];
    }
    return acc;
}

/* y = x W^T for many rows from quantized activations `a` (see q8_gemm.c); only for lv->isa >= ISA_AVX2.
 * Returns 0, or -1 if a tile could not be allocated. */
int q8_gemm(const Weight *w, const Level *lv, const Acts *a, const float *x, int64_t ldx, int64_t m,
             float *y, int64_t ldy, int n_threads);

#endif
