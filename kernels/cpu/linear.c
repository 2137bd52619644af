/* Drivers of the exact path: split output rows across threads, then per thread
 *
 *   M == 1 (decode, GEMV), per weight row n:
 *       dense:  y[n] = dot(n, x)                                   fused decode + FMA
 *       2:4:    for each K-chunk of TILE_K inputs:
 *                   kept = decode(n, chunk / 2)                    into L1
 *                   y[n] += sparse_dot(kept, meta[n], x, chunk)
 *
 *   2 <= M <= MR_FUSED (a few tokens): as M == 1, each decoded weight meeting every x row
 *
 *   M > MR_FUSED (prefill, tiled GEMM), per block of NR weight rows, per K-chunk of TILE_K:
 *       tile[r] = decode(n0 + r, chunk)        (2:4: decode kept values, then expand with meta)
 *       for x-rows i, step MR: y[i:i+MR, n0:n0+NR] (+)= x[i:i+MR, chunk] @ tile^T    register tile
 *
 * Each decoded tile (NR x TILE_K floats = 8 KiB) stays in L1 while every x row passes over it.
 */
#include "linear.h"
#include "pool.h"

#define ROW_ALIGN 8         /* chunks of output rows start at multiples of this */
#define CHUNKS_PER_THREAD 4  /* more chunks than threads: a busy core delays less */
#define MIN_THREADED_WORK 65536  /* multiply-adds below which one thread is faster */

typedef struct {
    const Weight *w;
    const Level *lv;
    const float *x;    /* (m, K), rows ldx floats apart */
    int64_t ldx, m;
    float *y;          /* (m, N), rows ldy floats apart */
    int64_t ldy;
    int64_t rows;      /* output rows per chunk */
} Job;

/* Dense inputs [k0, k1) of row n of a weight into dst (2:4 rows are expanded with zeros). */
static void decode_dense(const Job *job, int64_t n, int64_t k0, int64_t k1, float *dst, float *kept)
{
    const Weight *w = job->w;
    DecodeFn decode = job->lv->kinds[w->kind].decode;
    if (!w->meta) {
        decode(w, n, k0, k1, dst);
        return;
    }
    decode(w, n, k0 / 2, k1 / 2, kept);
    const uint8_t *meta = w->meta + n * w->meta_stride;
    for (int64_t k = k0; k < k1; k += 4) {
        const int64_t q = k >> 2;
        const unsigned nib = (meta[q >> 1] >> ((q & 1) * 4)) & 15u;
        float *d = dst + (k - k0);
        d[0] = d[1] = d[2] = d[3] = 0.0f;
        d[nib & 3u] = kept[(k - k0) >> 1];
        d[nib >> 2] = kept[((k - k0) >> 1) + 1];
    }
}

static void gemv_rows(const Job *job, int64_t n0, int64_t n1)
{
    const Weight *w = job->w;
    if (!w->meta) {
        DotFn dot = job->lv->kinds[w->kind].dot;
        for (int64_t n = n0; n < n1; n++)
            job->y[n] = dot(w, n, job->x);
        return;
    }
    float kept[TILE_K / 2];
    DecodeFn decode = job->lv->kinds[w->kind].decode;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *meta = w->meta + n * w->meta_stride;
        float acc = 0.0f;
        for (int64_t k0 = 0; k0 < w->k; k0 += TILE_K) {
            const int64_t k1 = k0 + TILE_K < w->k ? k0 + TILE_K : w->k;
            decode(w, n, k0 / 2, k1 / 2, kept);
            acc += job->lv->sparse_dot(kept, meta, job->x, k0, k1);
        }
        job->y[n] = acc;
    }
}

/* 2 <= m <= MR_FUSED: each weight row decoded once for all x rows. */
static void few_rows(const Job *job, int64_t n0, int64_t n1)
{
    const Weight *w = job->w;
    const int mr = (int)job->m;
    float out[MR_FUSED];
    if (!w->meta) {
        DotRowsFn dot = job->lv->kinds[w->kind].dot_rows[mr - 2];
        for (int64_t n = n0; n < n1; n++) {
            dot(w, n, job->x, job->ldx, out);
            for (int i = 0; i < mr; i++)
                job->y[i * job->ldy + n] = out[i];
        }
        return;
    }
    float kept[TILE_K / 2];
    DecodeFn decode = job->lv->kinds[w->kind].decode;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *meta = w->meta + n * w->meta_stride;
        for (int i = 0; i < mr; i++)
            out[i] = 0.0f;
        for (int64_t k0 = 0; k0 < w->k; k0 += TILE_K) {
            const int64_t k1 = k0 + TILE_K < w->k ? k0 + TILE_K : w->k;
            decode(w, n, k0 / 2, k1 / 2, kept);
            for (int i = 0; i < mr; i++)
                out[i] += job->lv->sparse_dot(kept, meta, job->x + i * job->ldx, k0, k1);
        }
        for (int i = 0; i < mr; i++)
            job->y[i * job->ldy + n] = out[i];
    }
}

static void gemm_rows(const Job *job, int64_t n0, int64_t n1)
{
    const Weight *w = job->w;
    float tile[NR * TILE_K];
    float kept[TILE_K / 2];
    for (int64_t nb = n0; nb < n1; nb += NR) {
        const int nr = n1 - nb < NR ? (int)(n1 - nb) : NR;
        for (int64_t k0 = 0; k0 < w->k; k0 += TILE_K) {
            const int64_t kc = w->k - k0 < TILE_K ? w->k - k0 : TILE_K;
            const int64_t kc8 = (kc + 7) & ~(int64_t)7;
            for (int r = 0; r < NR; r++) {
                float *dst = tile + (int64_t)r * TILE_K;
                if (r < nr)
                    decode_dense(job, nb + r, k0, k0 + kc, dst, kept);
                else
                    memset(dst, 0, (size_t)kc * sizeof(float));
                memset(dst + kc, 0, (size_t)(kc8 - kc) * sizeof(float));
            }
            for (int64_t i = 0; i < job->m; i += MR) {
                const int mr = job->m - i < MR ? (int)(job->m - i) : MR;
                job->lv->micro(job->x + i * job->ldx + k0, job->ldx, mr, tile, kc,
                               job->y + i * job->ldy + nb, job->ldy, nr, k0 > 0);
            }
        }
    }
}

static void job_task(void *ctx, int c, int n_chunks)
{
    const Job *job = (const Job *)ctx;
    (void)n_chunks;
    const int64_t n0 = c * job->rows, n1 = n0 + job->rows < job->w->n ? n0 + job->rows : job->w->n;
    if (job->m == 1)
        gemv_rows(job, n0, n1);
    else if (job->m <= MR_FUSED)
        few_rows(job, n0, n1);
    else
        gemm_rows(job, n0, n1);
}

int64_t edgec_chunk_rows(int64_t n, int64_t work, int n_threads)
{
    if (n_threads <= 1 || work < MIN_THREADED_WORK)
        return n;
    const int64_t chunks = (int64_t)n_threads * CHUNKS_PER_THREAD;
    const int64_t rows = ((n + chunks - 1) / chunks + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    return rows < n ? rows : n;
}

void edgec_linear(const Weight *w, const Level *lv, const float *x, int64_t ldx, int64_t m,
                  float *y, int64_t ldy, int n_threads)
{
    const int64_t rows = edgec_chunk_rows(w->n, w->n * w->k * m, n_threads);
    Job job = {w, lv, x, ldx, m, y, ldy, rows};
    pool_run(n_threads, (int)((w->n + rows - 1) / rows), job_task, &job);
}
