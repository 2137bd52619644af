/* The int8-activation path (see q8.h): quantize x once per call, then per weight row
 *
 *   for each scale group g:
 *       for each full block b of 32 inputs in g:
 *           isum  = sum_k code_k * xq_k                      int32, exact
 *           acc  += float(isum) * (d_b * s_g)
 *       corr += s_g * gsum[g]  (int4: gsum = sum_b d_b * sum xq; asym: min_g * sum x)
 *   y = acc - 8 corr  (int4) | acc + corr (asym) | s * acc (int8);  + exact tail
 *
 * AVX2 inner step, 32 int4 codes (16 bytes, low nibble = even input):
 *   v = [q & 15 | q >> 4 & 15]          the block's xq is stored evens first, then odds, to match
 *   p = madd(maddubs(v, xq), 1)         eight int32 partial sums
 * int8 weights use maddubs(|w|, sign(xq, w)), since maddubs multiplies unsigned by signed.
 */
#include <math.h>
#include <stdlib.h>

#include "linear.h"
#include "pool.h"
#include "q8.h"
#include "q8_acts.h"

#if defined(__unix__) || defined(__APPLE__)
#include <stdatomic.h>
#define HAVE_ATOMICS 1
#endif

/* Quantize row `row` of the activations; isum[b] receives the sum of block b's codes. */
typedef void (*QuantizeFn)(const Weight *w, const float *x, Acts *a, int64_t row, int32_t *isum);
typedef float (*Q8DotFn)(const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x);

int q8_supported(const Weight *w)
{
    if (w->meta)
        return 0;
    return w->kind == KIND_INT8 || ((w->kind == KIND_INT4 || w->kind == KIND_INT4_ASYM) && block_shift(w->group) >= 0);
}

/* ---- shared pieces ---------------------------------------------------------------- */

/* Position of input i (< 32) inside its stored block. */
static inline int stored_pos(int kind, int i)
{
    return kind == KIND_INT8 ? i : (i & 1) * 16 + (i >> 1);
}

/* Per-group sums from the block data already in a (xq, d) and x. */
static void group_sums(const Weight *w, const float *x, Acts *a, int64_t row, const int32_t *block_isum)
{
    float *gsum = a->gsum + row * a->ng;
    const int64_t k32 = a->nb * Q8_BLOCK;
    for (int64_t g = 0; g < a->ng; g++) {
        const int64_t kb = g * w->group, ke = (g + 1) * w->group < k32 ? (g + 1) * w->group : k32;
        float s = 0.0f;
        if (w->kind == KIND_INT4_ASYM) {
            for (int64_t k = kb; k < ke; k++)
                s += x[k];
        } else {  /* int4: the -8 offset's correction; int8: the many-row kernel's +128 offset */
            for (int64_t b = kb / Q8_BLOCK; b < ke / Q8_BLOCK; b++)
                s += a->d[row * a->nb + b] * (float)block_isum[b];
        }
        gsum[g] = s;
    }
}

/* ---- portable versions ------------------------------------------------------------- */

static void quantize_scalar(const Weight *w, const float *x, Acts *a, int64_t row, int32_t *isum)
{
    for (int64_t b = 0; b < a->nb; b++) {
        const float *xb = x + b * Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < Q8_BLOCK; i++)
            amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int8_t *dst = a->xq + (row * a->nb + b) * Q8_BLOCK;
        int32_t sum = 0;
        for (int i = 0; i < Q8_BLOCK; i++) {
            const int v = (int)nearbyintf(xb[i] * inv);
            dst[stored_pos(w->kind, i)] = (int8_t)v;
            sum += v;
        }
        a->d[row * a->nb + b] = amax / 127.0f;
        isum[b] = sum;
    }
}

static float dot_scalar(const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x)
{
    const uint8_t *qrow = w->q + n * w->q_stride;
    const int8_t *xq = a->xq + row * a->nb * Q8_BLOCK;
    const float *d = a->d + row * a->nb, *gsum = a->gsum + row * a->ng;
    float acc = 0.0f, corr = 0.0f;
    for (int64_t g = 0; g < a->ng; g++) {
        const float s = w->scale[n * w->ng + g];
        const int64_t b0 = g * w->group / Q8_BLOCK, b1e = (g + 1) * w->group / Q8_BLOCK;
        const int64_t b1 = b1e < a->nb ? b1e : a->nb;
        if (w->kind == KIND_INT4)
            corr += s * gsum[g];
        else if (w->kind == KIND_INT4_ASYM)
            corr += w->minv[n * w->ng + g] * gsum[g];
        for (int64_t b = b0; b < b1; b++) {
            int32_t isum = 0;
            for (int i = 0; i < Q8_BLOCK; i++) {
                const int64_t k = b * Q8_BLOCK + i;
                const int code = w->kind == KIND_INT8 ? (int)(int8_t)qrow[k] : (int)((qrow[k >> 1] >> ((k & 1) * 4)) & 15);
                isum += code * xq[b * Q8_BLOCK + stored_pos(w->kind, i)];
            }
            acc += (float)isum * (w->kind == KIND_INT8 ? d[b] : d[b] * s);
        }
    }
    const float tail = exact_tail(w, n, a->nb * Q8_BLOCK, x);
    if (w->kind == KIND_INT8)
        return w->scale[n] * acc + tail;
    return (w->kind == KIND_INT4 ? acc - 8.0f * corr : acc + corr) + tail;
}

/* ---- AVX2 versions ----------------------------------------------------------------- */

#ifdef EDGEC_HAVE_AVX2
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

TARGET static void quantize_avx2(const Weight *w, const float *x, Acts *a, int64_t row, int32_t *isum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  /* undo packs' lane interleave */
    const __m256i evens_odds = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                                0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int64_t b = 0; b < a->nb; b++) {
        const float *xb = x + b * Q8_BLOCK;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inv)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inv));
        const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inv)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inv));
        __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        packed = _mm256_permutevar8x32_epi32(packed, order);
        if (w->kind != KIND_INT8)
            packed = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(packed, evens_odds), 0xD8);
        _mm256_storeu_si256((__m256i *)(a->xq + (row * a->nb + b) * Q8_BLOCK), packed);
        a->d[row * a->nb + b] = amax / 127.0f;
        const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        isum[b] = _mm_cvtsi128_si32(s4);
    }
}

static inline __attribute__((always_inline, target("avx2,fma"))) float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline, target("avx2,fma"))) float dotf(const float *a, const float *b, int64_t n)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float tail = 0.0f;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return hsum8(acc) + tail;
}

/* Eight int32 partial sums of one block: codes of row `qrow` block b times xq. */
static inline __attribute__((always_inline, target("avx2,fma")))
__m256 block_dot(int kind, const uint8_t *qrow, int64_t b, const int8_t *xq)
{
    const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
    __m256i p;
    if (kind == KIND_INT8) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(qrow + b * Q8_BLOCK));
        p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(x, wv));
    } else {
        const __m128i q = _mm_loadu_si128((const __m128i *)(qrow + b * 16));
        const __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
        p = _mm256_maddubs_epi16(v, x);
    }
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static inline __attribute__((always_inline, target("avx2,fma")))
float dot_avx2(int kind, const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x)
{
    const uint8_t *qrow = w->q + n * w->q_stride;
    const int8_t *xq = a->xq + row * a->nb * Q8_BLOCK;
    const float *d = a->d + row * a->nb, *gsum = a->gsum + row * a->ng, *scale = w->scale + n * w->ng;
    const int shift = kind == KIND_INT8 ? 0 : block_shift(w->group);  /* block b is in group b >> shift */
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
    if (kind == KIND_INT8) {
        for (; b + 2 <= a->nb; b += 2) {
            acc0 = _mm256_fmadd_ps(block_dot(kind, qrow, b, xq), _mm256_broadcast_ss(d + b), acc0);
            acc1 = _mm256_fmadd_ps(block_dot(kind, qrow, b + 1, xq), _mm256_broadcast_ss(d + b + 1), acc1);
        }
        if (b < a->nb)
            acc0 = _mm256_fmadd_ps(block_dot(kind, qrow, b, xq), _mm256_broadcast_ss(d + b), acc0);
    } else {
        for (; b + 2 <= a->nb; b += 2) {
            const __m256 s0 = _mm256_broadcast_ss(scale + (b >> shift)), s1 = _mm256_broadcast_ss(scale + ((b + 1) >> shift));
            acc0 = _mm256_fmadd_ps(block_dot(kind, qrow, b, xq), _mm256_mul_ps(_mm256_broadcast_ss(d + b), s0), acc0);
            acc1 = _mm256_fmadd_ps(block_dot(kind, qrow, b + 1, xq), _mm256_mul_ps(_mm256_broadcast_ss(d + b + 1), s1), acc1);
        }
        if (b < a->nb)
            acc0 = _mm256_fmadd_ps(block_dot(kind, qrow, b, xq),
                                   _mm256_mul_ps(_mm256_broadcast_ss(d + b), _mm256_broadcast_ss(scale + (b >> shift))), acc0);
    }
    const float acc = hsum8(_mm256_add_ps(acc0, acc1)), tail = exact_tail(w, n, a->nb * Q8_BLOCK, x);
    if (kind == KIND_INT8)
        return scale[0] * acc + tail;
    /* the per-group corrections, as one dot product over the groups */
    const float corr = dotf(kind == KIND_INT4 ? scale : w->minv + n * w->ng, gsum, a->ng);
    return (kind == KIND_INT4 ? acc - 8.0f * corr : acc + corr) + tail;
}

TARGET static float dot_avx2_int4(const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x)
{
    return dot_avx2(KIND_INT4, w, n, a, row, x);
}

TARGET static float dot_avx2_int4_asym(const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x)
{
    return dot_avx2(KIND_INT4_ASYM, w, n, a, row, x);
}

TARGET static float dot_avx2_int8(const Weight *w, int64_t n, const Acts *a, int64_t row, const float *x)
{
    return dot_avx2(KIND_INT8, w, n, a, row, x);
}
#endif

/* ---- driver ---------------------------------------------------------------------- */

typedef struct {
    const Weight *w;
    const Acts *a;
    Q8DotFn dot;
    const float *x;     /* (m, K), rows ldx floats apart */
    int64_t ldx, m;
    float *y;           /* (m, N), rows ldy floats apart */
    int64_t ldy;
    int64_t rows;       /* output rows per chunk */
} Q8Job;

static void q8_task(void *ctx, int c, int n_chunks)
{
    const Q8Job *job = (const Q8Job *)ctx;
    (void)n_chunks;
    const int64_t n0 = c * job->rows, n1 = n0 + job->rows < job->w->n ? n0 + job->rows : job->w->n;
    for (int64_t r = n0; r < n1; r++)
        for (int64_t i = 0; i < job->m; i++)
            job->y[i * job->ldy + r] = job->dot(job->w, r, job->a, i, job->x + i * job->ldx);
}

/* One scratch area reused across calls; a concurrent call allocates its own. */
static void *g_scratch;
static size_t g_scratch_size;
#ifdef HAVE_ATOMICS
static atomic_int g_scratch_busy;
#else
static int g_scratch_busy;
#endif

static void *scratch_take(size_t size, int *owned)
{
#ifdef HAVE_ATOMICS
    int expected = 0;
    const int got = atomic_compare_exchange_strong(&g_scratch_busy, &expected, 1);
#else
    const int got = 0;  /* without atomics, never share */
#endif
    if (!got) {
        *owned = 1;
        return malloc(size);
    }
    *owned = 0;
    if (g_scratch_size < size) {
        void *p = realloc(g_scratch, size);
        if (!p) {
            g_scratch_busy = 0;
            return NULL;
        }
        g_scratch = p;
        g_scratch_size = size;
    }
    return g_scratch;
}

static void scratch_give(void *p, int owned)
{
    if (owned)
        free(p);
    else
        g_scratch_busy = 0;
}

int q8_linear(const Weight *w, const Level *lv, const float *x, int64_t ldx, int64_t m,
              float *y, int64_t ldy, int n_threads)
{
    /* many rows: the tiled kernel, except int8 weights without VNNI, whose offset codes
     * (q + 128, up to 255) would saturate maddubs' 16-bit pair sums */
    const int many = m > Q8_MAX_M;
    if (many && (lv->isa < ISA_AVX2 || (w->kind == KIND_INT8 && lv->isa != ISA_AVX2_VNNI))) {
        edgec_linear(w, lv, x, ldx, m, y, ldy, n_threads);
        return 0;
    }
    Acts a;
    a.nb = w->kv / Q8_BLOCK;
    a.ng = w->ng;
    const size_t xq_bytes = (size_t)(m * a.nb * Q8_BLOCK), floats = (size_t)(m * a.nb + m * a.ng + a.nb);
    int owned;
    char *mem = scratch_take(xq_bytes + floats * sizeof(float) + 64, &owned);
    if (!mem)
        return -1;
    a.xq = (int8_t *)mem;
    a.d = (float *)(mem + ((xq_bytes + 63) & ~(size_t)63));
    a.gsum = a.d + m * a.nb;
    int32_t *isum = (int32_t *)(a.gsum + m * a.ng);

    QuantizeFn quantize = quantize_scalar;
    Q8DotFn dot = dot_scalar;
#ifdef EDGEC_HAVE_AVX2
    if (lv->isa >= ISA_AVX2) {
        quantize = quantize_avx2;
        dot = w->kind == KIND_INT8 ? dot_avx2_int8 : w->kind == KIND_INT4 ? dot_avx2_int4 : dot_avx2_int4_asym;
    }
#endif
    for (int64_t i = 0; i < m; i++) {
        quantize(w, x + i * ldx, &a, i, isum);
        group_sums(w, x + i * ldx, &a, i, isum);
    }
    int rc = 0;
    if (many) {
        rc = q8_gemm(w, lv, &a, x, ldx, m, y, ldy, n_threads);
    } else {
        /* integer dot products do about a quarter of the float path's work per weight */
        const int64_t rows = edgec_chunk_rows(w->n, w->n * w->k * m / 4, n_threads);
        Q8Job job = {w, &a, dot, x, ldx, m, y, ldy, rows};
        pool_run(n_threads, (int)((w->n + rows - 1) / rows), q8_task, &job);
    }
    scratch_give(mem, owned);
    return rc;
}
