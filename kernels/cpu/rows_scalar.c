/* Portable kernels: every storage kind in plain C (any CPU), the reference for the SIMD ones.
 *
 * Row kernel, per values row n, for the range [j0, j1):
 *
 *   for each scale group g overlapping [j0, j1):
 *       s, m = scale[n][g], min[n][g]
 *       for j in the group:  w = value(kind, q[n], j, s, m)   # exact, as numpy
 *                            dst[j - j0] = w  or  acc += w * x[j]
 */
#include "weight.h"

const float EDGEC_NF4[16] = {  /* QLoRA's NormalFloat-4 values, as float32 bit-exactly */
    -0x1.0p+0f, -0x1.647362p-1f, -0x1.0cd66p-1f, -0x1.946540p-2f,
    -0x1.23449ap-2f, -0x1.7a6a7ep-3f, -0x1.74f0e2p-4f, 0.0f,
    0x1.45f5fep-4f, 0x1.4995c6p-3f, 0x1.f809bap-3f, 0x1.5a0674p-2f,
    0x1.c3497p-2f, 0x1.200f56p-1f, 0x1.722766p-1f, 0x1.0p+0f,
};

float EDGEC_E4M3[256];

void edgec_tables_init(void)
{
    for (int c = 0; c < 256; c++) {
        int exp = (c >> 3) & 15, man = c & 7;
        float mag;
        if (exp == 15 && man == 7) {
            uint32_t nan_bits = 0x7FC00000u;
            memcpy(&mag, &nan_bits, 4);
        } else if (exp == 0) {
            mag = (float)man / 512.0f;                            /* man * 2^-9 */
        } else {
            mag = (float)(8 + man) * (float)(1u << exp) / 1024.0f;  /* (1 + man/8) * 2^(exp-7) */
        }
        EDGEC_E4M3[c] = (c & 0x80) ? -mag : mag;
    }
}

/* Scale and minimum of group g of row n (0 where the kind has none). */
static inline void group_params(const Weight *w, int64_t n, int64_t g, float *s, float *m)
{
    *s = w->scale ? w->scale[n * w->ng + g] : 0.0f;
    *m = w->minv ? w->minv[n * w->ng + g] : 0.0f;
}

/* The row kernel: decode into dst when dst != NULL, else return the dot product with x. */
static inline float row_scalar(const Weight *w, int kind, int64_t n, int64_t j0, int64_t j1,
                               float *dst, const float *x)
{
    const uint8_t *row = w->q + n * w->q_stride;
    float acc = 0.0f;
    for (int64_t g = j0 / w->group, gb = j0; gb < j1; g++) {
        const int64_t ge = (g + 1) * w->group < j1 ? (g + 1) * w->group : j1;
        float s, m;
        group_params(w, n, g, &s, &m);
        for (int64_t j = gb; j < ge; j++) {
            const float v = value_at(kind, row, j, s, m);
            if (dst)
                dst[j - j0] = v;
            else
                acc += v * x[j];
        }
        gb = ge;
    }
    return acc;
}

/* The row kernel over mr x rows: one decode per value. */
static inline void rows_scalar(const Weight *w, int kind, int64_t n, const float *x, int64_t ldx, int mr, float *out)
{
    const uint8_t *row = w->q + n * w->q_stride;
    float acc[MR_FUSED] = {0.0f};
    for (int64_t g = 0, gb = 0; gb < w->kv; g++) {
        const int64_t ge = (g + 1) * w->group < w->kv ? (g + 1) * w->group : w->kv;
        float s, m;
        group_params(w, n, g, &s, &m);
        for (int64_t j = gb; j < ge; j++) {
            const float v = value_at(kind, row, j, s, m);
            for (int i = 0; i < mr; i++)
                acc[i] += v * x[i * ldx + j];
        }
        gb = ge;
    }
    for (int i = 0; i < mr; i++)
        out[i] = acc[i];
}

#define ROW_KERNELS(KIND, name)                                                                \
    static void decode_##name(const Weight *w, int64_t n, int64_t j0, int64_t j1, float *dst)  \
    {                                                                                          \
        row_scalar(w, KIND, n, j0, j1, dst, NULL);                                             \
    }                                                                                          \
    static float dot_##name(const Weight *w, int64_t n, const float *x)                        \
    {                                                                                          \
        return row_scalar(w, KIND, n, 0, w->kv, NULL, x);                                      \
    }                                                                                          \
    static void dot2_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                          \
        rows_scalar(w, KIND, n, x, ldx, 2, out);                                               \
    }                                                                                          \
    static void dot3_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                          \
        rows_scalar(w, KIND, n, x, ldx, 3, out);                                               \
    }                                                                                          \
    static void dot4_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                          \
        rows_scalar(w, KIND, n, x, ldx, 4, out);                                               \
    }

EDGEC_FOR_EACH_KIND(ROW_KERNELS)

static float sparse_dot_scalar(const float *kept, const uint8_t *meta, const float *x, int64_t k0, int64_t k1)
{
    float acc = 0.0f;
    for (int64_t k = k0; k < k1; k += 4) {
        const int64_t q = k >> 2;
        const unsigned nib = (meta[q >> 1] >> ((q & 1) * 4)) & 15u;
        const float *v = kept + ((k - k0) >> 1);
        acc += v[0] * x[k + (nib & 3u)];
        acc += v[1] * x[k + (nib >> 2)];
    }
    return acc;
}

static void micro_scalar(const float *x, int64_t ldx, int mr, const float *tile, int64_t kc,
                         float *y, int64_t ldy, int nr, int accumulate)
{
    for (int i = 0; i < mr; i++) {
        for (int r = 0; r < nr; r++) {
            const float *xi = x + i * ldx, *wr = tile + (int64_t)r * TILE_K;
            float acc = 0.0f;
            for (int64_t k = 0; k < kc; k++)
                acc += xi[k] * wr[k];
            y[i * ldy + r] = accumulate ? y[i * ldy + r] + acc : acc;
        }
    }
}

static float vdot_scalar(const float *a, const float *b, int64_t n)
{
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

static void vaxpy_scalar(float *y, float alpha, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

static void vsilu_mul_scalar(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g < SILU_FLUSH ? 0.0f : g / (1.0f + expf(-g)) * up[i];
    }
}

const Level EDGEC_LEVEL_SCALAR = {"generic", EDGEC_ALL_KIND_KERNELS, sparse_dot_scalar, micro_scalar,
                                  vdot_scalar, vaxpy_scalar, vsilu_mul_scalar, ISA_GENERIC};
