/* Many rows (prefill) with int8 activations: eight weight rows against every x row.
 *
 * The per-row path (q8.c) spends its time unpacking a weight row for each x row and
 * summing eight lanes into one output. Here u8 x s8 dot products (AVX-VNNI's vpdpbusd,
 * or maddubs + madd on plain AVX2) take four inputs per 32-bit lane, and eight weight rows
 * are interleaved into a tile once per call, lane r holding row r:
 *
 *   tile[b][q] = for r < 8: the four stored codes 4q .. 4q+3 of block b of row n0 + r
 *   iacc       = sum over q of dpbusd(tile[b][q], broadcast(xq[i][b][4q .. 4q+3]))   eight rows' block sums
 *   facc[i]   += float(iacc) * s[rows, g(b)] * d[i][b]
 *
 * so the eight lanes are the eight outputs, with no horizontal sums. The weight operand must
 * be unsigned: int4 codes c are 0..15 as stored (value c - 8), int8 values q are stored
 * as q + 128; the offsets come back through the activations' block sums (Acts.gsum):
 *
 *   int4       y = facc - 8 * sum_g s_g * gsum_g          gsum_g = sum_{b in g} d_b * sum(xq in b)
 *   int4 asym  y = facc + sum_g min_g * gsum_g            gsum_g = sum(x in g); the codes are c
 *   int8       y = facc - 128 * s * gsum_0                one scale per row
 *
 * and the inputs past the last full block are added exactly, as in the per-row path. The
 * result equals the per-row path's up to float summation order.
 */
#include "q8_acts.h"

#ifdef EDGEC_HAVE_AVX2
#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "linear.h"
#include "pool.h"

#define GEMM_ROWS 8   /* weight rows per tile: the eight lanes; two tiles meet each activation quad */
#define GEMM_MR 4     /* x rows per pass over a tile */

typedef struct {
    const Weight *w;
    const Acts *a;
    const float *x;         /* (m, K), rows ldx floats apart: for the exact tail */
    int64_t ldx, m;
    float *y;               /* (m, N), rows ldy floats apart */
    int64_t ldy;
    int64_t rows_per_chunk; /* a multiple of GEMM_ROWS, or N */
    atomic_int failed;      /* a tile could not be allocated */
} GemmJob;

typedef struct {
    int rows;        /* filled rows, 1 .. 8 */
    uint8_t *codes;  /* (nb, 8 quads, 8 rows, 4 codes), 32-byte aligned */
    float *scale;    /* (ng, 8): the rows' scales, 0 past the last row */
    float *minv;     /* (ng, 8), int4 asym only */
    void *mem;
} RowTile;

static int row_tile_alloc(const GemmJob *job, RowTile *t)
{
    const size_t codes = (size_t)job->a->nb * GEMM_ROWS * Q8_BLOCK, floats = (size_t)job->a->ng * GEMM_ROWS;
    t->mem = aligned_alloc(32, (codes + 2 * floats * sizeof(float) + 31) & ~(size_t)31);
    t->rows = 0;
    if (!t->mem)
        return -1;
    t->codes = (uint8_t *)t->mem;
    t->scale = (float *)(t->codes + codes);
    t->minv = t->scale + floats;
    return 0;
}

static void row_tile_release(RowTile *t)  /* also on a tile whose allocation failed (mem NULL) */
{
    free(t->mem);
}

/* Block b of row n as 32 unsigned codes in the activations' stored order. */
__attribute__((target("avx2,fma"))) static inline __m256i stored_codes(const Weight *w, int64_t n, int64_t b)
{
    const uint8_t *row = w->q + n * w->q_stride;
    if (w->kind == KIND_INT8)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + b * Q8_BLOCK)), _mm256_set1_epi8((char)0x80));
    const __m128i q = _mm_loadu_si128((const __m128i *)(row + b * 16));  /* low nibbles: evens; high: odds */
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
}

/* Interleave rows n0 .. n0+nr into the tile: an 8 x 8 transpose of 32-bit quads per block. */
__attribute__((target("avx2,fma"))) static void row_tile_fill(const GemmJob *job, int64_t n0, int nr, RowTile *t)
{
    const Weight *w = job->w;
    const Acts *a = job->a;
    t->rows = nr;
    for (int64_t b = 0; b < a->nb; b++) {
        __m256i v[GEMM_ROWS];
        for (int r = 0; r < GEMM_ROWS; r++)
            v[r] = r < nr ? stored_codes(w, n0 + r, b) : _mm256_setzero_si256();
        __m256i s[GEMM_ROWS], u[GEMM_ROWS];
        for (int r = 0; r < GEMM_ROWS; r += 2) {
            s[r] = _mm256_unpacklo_epi32(v[r], v[r + 1]);
            s[r + 1] = _mm256_unpackhi_epi32(v[r], v[r + 1]);
        }
        for (int h = 0; h < 2; h++) {  /* rows 0-3, then 4-7 */
            __m256i *sh = s + 4 * h, *uh = u + 4 * h;
            uh[0] = _mm256_unpacklo_epi64(sh[0], sh[2]);  /* quads 0 | 4 */
            uh[1] = _mm256_unpackhi_epi64(sh[0], sh[2]);  /* quads 1 | 5 */
            uh[2] = _mm256_unpacklo_epi64(sh[1], sh[3]);  /* quads 2 | 6 */
            uh[3] = _mm256_unpackhi_epi64(sh[1], sh[3]);  /* quads 3 | 7 */
        }
        __m256i *dst = (__m256i *)(t->codes + b * GEMM_ROWS * Q8_BLOCK);
        for (int q = 0; q < 4; q++) {
            _mm256_store_si256(dst + q, _mm256_permute2x128_si256(u[q], u[4 + q], 0x20));
            _mm256_store_si256(dst + q + 4, _mm256_permute2x128_si256(u[q], u[4 + q], 0x31));
        }
    }
    for (int64_t g = 0; g < a->ng; g++)
        for (int r = 0; r < GEMM_ROWS; r++) {
            t->scale[g * GEMM_ROWS + r] = r < nr ? w->scale[(n0 + r) * w->ng + g] : 0.0f;
            t->minv[g * GEMM_ROWS + r] = r < nr && w->minv ? w->minv[(n0 + r) * w->ng + g] : 0.0f;
        }
}

#define Q8G_CAT(a, b) a##b
#define Q8G_XCAT(a, b) Q8G_CAT(a, b)
#define Q8G_ROWS Q8G_XCAT(Q8G_NAME, _rows)

#define Q8G_NAME gemm_chunk_avx2
#define Q8G_TARGET __attribute__((target("avx2,fma")))
#define Q8G_DPBUSD(acc, u8, s8) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), ones16))
#include "q8_gemm_body.h"
#undef Q8G_NAME
#undef Q8G_TARGET
#undef Q8G_DPBUSD

#define Q8G_NAME gemm_chunk_vnni
#define Q8G_TARGET __attribute__((target("avx2,fma,avxvnni")))
#define Q8G_DPBUSD(acc, u8, s8) _mm256_dpbusd_avx_epi32(acc, u8, s8)
#include "q8_gemm_body.h"

int q8_gemm(const Weight *w, const Level *lv, const Acts *a, const float *x, int64_t ldx, int64_t m,
            float *y, int64_t ldy, int n_threads)
{
    const int64_t rows = edgec_chunk_rows(w->n, w->n * w->k * m / 4, n_threads);
    GemmJob job = {w, a, x, ldx, m, y, ldy, rows, 0};
    pool_run(n_threads, (int)((w->n + rows - 1) / rows), lv->isa == ISA_AVX2_VNNI ? gemm_chunk_vnni : gemm_chunk_avx2, &job);
    return atomic_load(&job.failed) ? -1 : 0;
}

#else

int q8_gemm(const Weight *w, const Level *lv, const Acts *a, const float *x, int64_t ldx, int64_t m,
            float *y, int64_t ldy, int n_threads)
{
    (void)w, (void)lv, (void)a, (void)x, (void)ldx, (void)m, (void)y, (void)ldy, (void)n_threads;
    return -1;  /* never called: q8_linear uses it only on AVX2 levels */
}

#endif
