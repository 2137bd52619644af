/* AVX2 + FMA (+ F16C) kernels, compiled for any x86-64 and chosen at run time.
 *
 * Row kernel (as rows_scalar.c, eight values per step):
 *
 *   for each scale group g:  S = broadcast(scale[n][g]), M = broadcast(min[n][g])
 *       for j in the group, step 32:       # four independent accumulators
 *           W_t = dec8(q[n], j + 8t)       # 8 exact float32 weights, t < 4
 *           acc_t += W_t * x[j + 8t : +8]  (or store W_t)
 *       tail of the group (last group, K % 8): scalar value_at()
 *
 * dec8 per kind (8 codes of a b-bit stream occupy b whole bytes):
 *   INTb   u = b bytes; c = (broadcast(u) >> [0, b, .., 7b]) & (2^b - 1)
 *          W = fma(float(c), S, -2^(b-1) S)     (c S is exact, so this rounds once, as numpy's (c - 2^(b-1)) * S)
 *   ASYM   W = fma(float(c), S, M)              (c S exact: same as numpy's c * S + M)
 *   NF4    L = NF4[0..15] * S per group (two registers);  W = select(c & 8, perm(L_hi, c), perm(L_lo, c))
 *   INT8   W = float(sign-extend(q)) * S
 *   FP8    h = (q & 0x7f) << 7 | (q & 0x80) << 8  is the same number as a float16 / 2^8
 *          (e4m3 subnormals land on float16 subnormals, which F16C converts exactly); W = f32(h) * (2^8 S)
 *   F16    W = cvtph(q);   BF16  W = q << 16
 */
#include "weight.h"

#ifdef EDGEC_HAVE_AVX2
#include <immintrin.h>
#include <math.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

int edgec_avx2_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

int edgec_avx_vnni_supported(void)
{
    __builtin_cpu_init();
    return edgec_avx2_supported() && __builtin_cpu_supports("avxvnni");
}

typedef struct {
    __m256 s;               /* broadcast scale (FP8: scale * 2^8) */
    __m256 m;               /* INTb: -2^(b-1) * scale; ASYM: the group minimum */
    __m256 lut_lo, lut_hi;  /* NF4: the group's 16 dequantized values */
} GroupParams;

INLINE GroupParams group_params(int kind, const Weight *w, int64_t n, int64_t g)
{
    GroupParams p;
    p.s = _mm256_set1_ps(kind == KIND_F16 || kind == KIND_BF16 ? 0.0f : w->scale[n * w->ng + g]);
    p.m = p.lut_lo = p.lut_hi = _mm256_setzero_ps();
    if (kind_is_asym(kind))
        p.m = _mm256_set1_ps(w->minv[n * w->ng + g]);
    else if (kind >= KIND_INT2 && kind <= KIND_INT4)
        p.m = _mm256_mul_ps(p.s, _mm256_set1_ps(-(float)(1 << (kind_bits(kind) - 1))));
    if (kind == KIND_FP8)
        p.s = _mm256_mul_ps(p.s, _mm256_set1_ps(256.0f));
    if (kind == KIND_NF4) {
        p.lut_lo = _mm256_mul_ps(_mm256_loadu_ps(EDGEC_NF4), p.s);
        p.lut_hi = _mm256_mul_ps(_mm256_loadu_ps(EDGEC_NF4 + 8), p.s);
    }
    return p;
}

/* The `bits` bytes holding codes j .. j+7 (j a multiple of 8) of a b-bit stream. */
INLINE uint32_t stream_bytes(const uint8_t *row, int64_t j, int bits)
{
    const uint8_t *p = row + (j >> 3) * bits;
    uint32_t u4;
    uint16_t u2;
    if (bits == 4) {
        memcpy(&u4, p, 4);
        return u4;
    }
    memcpy(&u2, p, 2);
    return bits == 2 ? u2 : (uint32_t)u2 | (uint32_t)p[2] << 16;
}

/* Codes j .. j+7 of a b-bit stream, as eight int32. */
INLINE __m256i stream8(const uint8_t *row, int64_t j, int bits)
{
    const __m256i shifts = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(bits));
    const __m256i u = _mm256_set1_epi32((int)stream_bytes(row, j, bits));
    return _mm256_and_si256(_mm256_srlv_epi32(u, shifts), _mm256_set1_epi32((1 << bits) - 1));
}

/* Values j .. j+7 of a row, exactly as value_at() gives them. The products c * s below
 * are exact in float32 (c has at most 8 bits, s comes from a float16), so one fused
 * multiply-add rounds the same as numpy's multiply-then-add. */
INLINE __m256 dec8(int kind, const uint8_t *row, int64_t j, const GroupParams *p)
{
    switch ((enum Kind)kind) {
    case KIND_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * j)));
    case KIND_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * j))), 16));
    case KIND_FP8: {
        /* code c in the high byte of a 16-bit lane, shifted right arithmetically by one:
         * sign at bit 15, magnitude bits at 13..7 once bit 14 (a sign copy) is cleared */
        const __m128i c = _mm_unpacklo_epi8(_mm_setzero_si128(), _mm_loadl_epi64((const __m128i *)(row + j)));
        const __m128i h = _mm_and_si128(_mm_srai_epi16(c, 1), _mm_set1_epi16((short)0xBF80));
        return _mm256_mul_ps(_mm256_cvtph_ps(h), p->s);
    }
    case KIND_INT8:
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + j)))), p->s);
    case KIND_NF4: {
        const __m256i c = stream8(row, j, 4);
        const __m256 lo = _mm256_permutevar8x32_ps(p->lut_lo, c), hi = _mm256_permutevar8x32_ps(p->lut_hi, c);
        return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
    }
    case KIND_INT2: case KIND_INT3: case KIND_INT4:  /* c * s - 2^(b-1) * s */
    case KIND_INT2_ASYM: case KIND_INT3_ASYM: case KIND_INT4_ASYM:  /* c * s + min */
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(stream8(row, j, kind_bits(kind))), p->s, p->m);
    case KIND_COUNT: break;
    }
    return _mm256_setzero_ps();
}

INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The row kernel: decode [j0, j1) into dst when dst != NULL, else return the dot product with x. */
INLINE float row_avx2(const Weight *w, int kind, int64_t n, int64_t j0, int64_t j1, float *dst, const float *x)
{
    const uint8_t *row = w->q + n * w->q_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float tail = 0.0f;
    for (int64_t g = j0 / w->group, gb = j0; gb < j1; g++) {
        const int64_t ge = (g + 1) * w->group < j1 ? (g + 1) * w->group : j1;
        const GroupParams p = group_params(kind, w, n, g);
        int64_t j = gb;
        for (; j + 32 <= ge; j += 32) {
            const __m256 v0 = dec8(kind, row, j, &p), v1 = dec8(kind, row, j + 8, &p);
            const __m256 v2 = dec8(kind, row, j + 16, &p), v3 = dec8(kind, row, j + 24, &p);
            if (dst) {
                _mm256_storeu_ps(dst + (j - j0), v0);
                _mm256_storeu_ps(dst + (j - j0) + 8, v1);
                _mm256_storeu_ps(dst + (j - j0) + 16, v2);
                _mm256_storeu_ps(dst + (j - j0) + 24, v3);
            } else {
                a0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + j), a0);
                a1 = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + j + 8), a1);
                a2 = _mm256_fmadd_ps(v2, _mm256_loadu_ps(x + j + 16), a2);
                a3 = _mm256_fmadd_ps(v3, _mm256_loadu_ps(x + j + 24), a3);
            }
        }
        for (; j + 8 <= ge; j += 8) {
            const __m256 v = dec8(kind, row, j, &p);
            if (dst)
                _mm256_storeu_ps(dst + (j - j0), v);
            else
                a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + j), a0);
        }
        if (j < ge) {
            const float s = w->scale ? w->scale[n * w->ng + g] : 0.0f, m = w->minv ? w->minv[n * w->ng + g] : 0.0f;
            for (; j < ge; j++) {
                const float v = value_at(kind, row, j, s, m);
                if (dst)
                    dst[j - j0] = v;
                else
                    tail += v * x[j];
            }
        }
        gb = ge;
    }
    if (dst)
        return 0.0f;
    return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;
}

/* The row kernel over MRC x rows (a constant, 2 .. 4): one decode, MRC FMAs per eight values.
 * Accumulators are named, not an array, so that they stay in registers. */
#define FMA_ROWS(V, OFF, A0, A1, A2, A3)                                                    \
    do {                                                                                    \
        A0 = _mm256_fmadd_ps(V, _mm256_loadu_ps(x0 + (OFF)), A0);                           \
        A1 = _mm256_fmadd_ps(V, _mm256_loadu_ps(x1 + (OFF)), A1);                           \
        if (MRC > 2) A2 = _mm256_fmadd_ps(V, _mm256_loadu_ps(x2 + (OFF)), A2);              \
        if (MRC > 3) A3 = _mm256_fmadd_ps(V, _mm256_loadu_ps(x3 + (OFF)), A3);              \
    } while (0)

INLINE void rows_avx2(const Weight *w, int kind, int64_t n, const float *x, int64_t ldx, float *out, const int MRC)
{
    const uint8_t *row = w->q + n * w->q_stride;
    const float *x0 = x, *x1 = x + ldx, *x2 = MRC > 2 ? x + 2 * ldx : x, *x3 = MRC > 3 ? x + 3 * ldx : x;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;  /* even eight-value steps */
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                   /* odd ones */
    float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
    for (int64_t g = 0, gb = 0; gb < w->kv; g++) {
        const int64_t ge = (g + 1) * w->group < w->kv ? (g + 1) * w->group : w->kv;
        const GroupParams p = group_params(kind, w, n, g);
        int64_t j = gb;
        for (; j + 16 <= ge; j += 16) {
            const __m256 v = dec8(kind, row, j, &p), u = dec8(kind, row, j + 8, &p);
            FMA_ROWS(v, j, a0, a1, a2, a3);
            FMA_ROWS(u, j + 8, b0, b1, b2, b3);
        }
        for (; j + 8 <= ge; j += 8) {
            const __m256 v = dec8(kind, row, j, &p);
            FMA_ROWS(v, j, a0, a1, a2, a3);
        }
        if (j < ge) {
            const float s = w->scale ? w->scale[n * w->ng + g] : 0.0f, m = w->minv ? w->minv[n * w->ng + g] : 0.0f;
            for (; j < ge; j++) {
                const float v = value_at(kind, row, j, s, m);
                t0 += v * x0[j];
                t1 += v * x1[j];
                t2 += v * x2[j];
                t3 += v * x3[j];
            }
        }
        gb = ge;
    }
    out[0] = hsum(_mm256_add_ps(a0, b0)) + t0;
    out[1] = hsum(_mm256_add_ps(a1, b1)) + t1;
    if (MRC > 2)
        out[2] = hsum(_mm256_add_ps(a2, b2)) + t2;
    if (MRC > 3)
        out[3] = hsum(_mm256_add_ps(a3, b3)) + t3;
}
#undef FMA_ROWS

#define ROW_KERNELS(KIND, name)                                                                       \
    TARGET static void decode_##name(const Weight *w, int64_t n, int64_t j0, int64_t j1, float *dst)  \
    {                                                                                                 \
        row_avx2(w, KIND, n, j0, j1, dst, NULL);                                                      \
    }                                                                                                 \
    TARGET static float dot_##name(const Weight *w, int64_t n, const float *x)                        \
    {                                                                                                 \
        return row_avx2(w, KIND, n, 0, w->kv, NULL, x);                                               \
    }                                                                                                 \
    TARGET static void dot2_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                                 \
        rows_avx2(w, KIND, n, x, ldx, out, 2);                                                        \
    }                                                                                                 \
    TARGET static void dot3_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                                 \
        rows_avx2(w, KIND, n, x, ldx, out, 3);                                                        \
    }                                                                                                 \
    TARGET static void dot4_##name(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out) \
    {                                                                                                 \
        rows_avx2(w, KIND, n, x, ldx, out, 4);                                                        \
    }

EDGEC_FOR_EACH_KIND(ROW_KERNELS)

/* 2:4 dot product, sixteen inputs (four groups, eight kept values) per step:
 *   idx = (broadcast(meta16) >> [0, 2, .., 14]) & 3  +  [0, 0, 4, 4, 0, 0, 4, 4]
 *   X   = lanes 0-3 from perm(x[k : k+8], idx), lanes 4-7 from perm(x[k+8 : k+16], idx)
 *   acc += kept[8 values] * X
 */
TARGET static float sparse_dot_avx2(const float *kept, const uint8_t *meta, const float *x, int64_t k0, int64_t k1)
{
    const __m256i shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i offsets = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
    const __m256i three = _mm256_set1_epi32(3);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t k = k0;
    for (; k + 32 <= k1; k += 32) {
        uint32_t m32;
        memcpy(&m32, meta + (k >> 3), 4);
        const __m256i i0 = _mm256_add_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(m32 & 0xFFFF)), shifts), three), offsets);
        const __m256i i1 = _mm256_add_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(m32 >> 16)), shifts), three), offsets);
        const __m256 x0 = _mm256_blend_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k), i0),
                                          _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k + 8), i0), 0xF0);
        const __m256 x1 = _mm256_blend_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k + 16), i1),
                                          _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k + 24), i1), 0xF0);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(kept + ((k - k0) >> 1)), x0, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(kept + ((k - k0) >> 1) + 8), x1, a1);
    }
    for (; k + 16 <= k1; k += 16) {
        uint16_t m16;
        memcpy(&m16, meta + (k >> 3), 2);
        const __m256i idx = _mm256_add_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(m16), shifts), three), offsets);
        const __m256 xs = _mm256_blend_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k), idx),
                                          _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + k + 8), idx), 0xF0);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(kept + ((k - k0) >> 1)), xs, a0);
    }
    float tail = 0.0f;
    for (; k < k1; k += 4) {
        const int64_t q = k >> 2;
        const unsigned nib = (meta[q >> 1] >> ((q & 1) * 4)) & 15u;
        const float *v = kept + ((k - k0) >> 1);
        tail += v[0] * x[k + (nib & 3u)] + v[1] * x[k + (nib >> 2)];
    }
    return hsum(_mm256_add_ps(a0, a1)) + tail;
}

/* Sums of four accumulators, one per lane. */
INLINE __m128 hsum4(__m256 c0, __m256 c1, __m256 c2, __m256 c3)
{
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(c0, c1), _mm256_hadd_ps(c2, c3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

INLINE void store_row(float *y, __m128 v, int nr, int accumulate)
{
    float tmp[4];
    _mm_storeu_ps(tmp, v);
    for (int r = 0; r < nr; r++)
        y[r] = accumulate ? y[r] + tmp[r] : tmp[r];
}

/* Register tile: MR = 3 x-rows by NR = 4 weight rows, eight inputs per step: twelve
 * accumulators, three x registers and one weight register (all sixteen ymm). */
#define STEP(XA, XB, XC, K)                                                                            \
    do {                                                                                               \
        __m256 wv = _mm256_loadu_ps(w0 + (K));                                                         \
        c00 = _mm256_fmadd_ps(XA, wv, c00); c10 = _mm256_fmadd_ps(XB, wv, c10); c20 = _mm256_fmadd_ps(XC, wv, c20); \
        wv = _mm256_loadu_ps(w1 + (K));                                                                \
        c01 = _mm256_fmadd_ps(XA, wv, c01); c11 = _mm256_fmadd_ps(XB, wv, c11); c21 = _mm256_fmadd_ps(XC, wv, c21); \
        wv = _mm256_loadu_ps(w2 + (K));                                                                \
        c02 = _mm256_fmadd_ps(XA, wv, c02); c12 = _mm256_fmadd_ps(XB, wv, c12); c22 = _mm256_fmadd_ps(XC, wv, c22); \
        wv = _mm256_loadu_ps(w3 + (K));                                                                \
        c03 = _mm256_fmadd_ps(XA, wv, c03); c13 = _mm256_fmadd_ps(XB, wv, c13); c23 = _mm256_fmadd_ps(XC, wv, c23); \
    } while (0)

TARGET static void micro_avx2(const float *x, int64_t ldx, int mr, const float *tile, int64_t kc,
                              float *y, int64_t ldy, int nr, int accumulate)
{
    /* rows past mr repeat the last one; their sums are not stored */
    const float *x0 = x, *x1 = mr > 1 ? x + ldx : x, *x2 = mr > 2 ? x + 2 * ldx : x1;
    const float *w0 = tile, *w1 = tile + TILE_K, *w2 = tile + 2 * TILE_K, *w3 = tile + 3 * TILE_K;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        const __m256 xa = _mm256_loadu_ps(x0 + k), xb = _mm256_loadu_ps(x1 + k), xc = _mm256_loadu_ps(x2 + k);
        STEP(xa, xb, xc, k);
    }
    if (k < kc) {  /* the tile is zero past kc; x must not be read there */
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(kc - k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 xa = _mm256_maskload_ps(x0 + k, mask), xb = _mm256_maskload_ps(x1 + k, mask);
        const __m256 xc = _mm256_maskload_ps(x2 + k, mask);
        STEP(xa, xb, xc, k);
    }
    store_row(y, hsum4(c00, c01, c02, c03), nr, accumulate);
    if (mr > 1)
        store_row(y + ldy, hsum4(c10, c11, c12, c13), nr, accumulate);
    if (mr > 2)
        store_row(y + 2 * ldy, hsum4(c20, c21, c22, c23), nr, accumulate);
}
#undef STEP

TARGET static float vdot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    float tail = 0.0f;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return hsum(_mm256_add_ps(a0, a1)) + tail;
}

TARGET static void vaxpy_avx2(float *y, float alpha, const float *x, int64_t n)
{
    const __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += alpha * x[i];
}

/* exp(x) to about 2 ulp (Cephes' expf): x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial
 * in r, then 2^n through the exponent bits; x clamped to [-87, 88] (normal results). */
INLINE __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

TARGET static void vsilu_mul_avx2(float *gate, const float *up, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), flush = _mm256_set1_ps(SILU_FLUSH), sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_xor_ps(g, sign))));
        const __m256 y = _mm256_mul_ps(s, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(gate + i, _mm256_andnot_ps(_mm256_cmp_ps(g, flush, _CMP_LT_OQ), y));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        gate[i] = g < SILU_FLUSH ? 0.0f : g / (1.0f + expf(-g)) * up[i];
    }
}

const Level EDGEC_LEVEL_AVX2 = {"avx2+fma", EDGEC_ALL_KIND_KERNELS, sparse_dot_avx2, micro_avx2,
                                vdot_avx2, vaxpy_avx2, vsilu_mul_avx2, ISA_AVX2};
const Level EDGEC_LEVEL_AVX2_VNNI = {"avx2+vnni", EDGEC_ALL_KIND_KERNELS, sparse_dot_avx2, micro_avx2,
                                     vdot_avx2, vaxpy_avx2, vsilu_mul_avx2, ISA_AVX2_VNNI};

#endif
