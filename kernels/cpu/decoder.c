/* decoder_forward: the LLaMA-family decoder pass of runtime_py/executors/llama.py, in C.
 *
 * Per block, for the t new tokens (rows of x):
 *   h = rmsnorm(x) * attn_norm
 *   q = h Wq^T (+b);  k, v = h Wk^T, h Wv^T (+b), written into the cache at their positions
 *   (q, k = per-head rmsnorm (Qwen3));  q, k = rope(q, k)
 *   a = softmax(q k^T / sqrt(hd), causal [, window]) v     per head, grouped-query
 *   x += a Wo^T (+b)
 *   h = rmsnorm(x) * mlp_norm;  x += (silu(h Wg^T) * h Wu^T) Wd^T
 * then logits = (rmsnorm(x) * final_norm) Whead^T for the last row (or every row).
 */
#include "decoder.h"

#include <math.h>

#include "linear.h"
#include "pool.h"
#include "q8.h"

/* Attention weights below exp(-60) of the largest are 0: their products with the values
 * would be subnormal floats, which cost the CPU up to 100x as much per operation, for a
 * contribution below 1e-26 of the output. Such keys are skipped. */
#define PROB_FLUSH (-60.0f)
#define MIN_THREADED_ATTENTION 32768  /* multiply-adds below which attention stays on one thread */
#define MIN_THREADED_SILU 16384       /* values below which SwiGLU stays on one thread */

typedef struct {
    const Level *lv;
    int mode, n_threads;
} Run;

/* Scratch, in floats, carved in this order. */
typedef struct {
    float *h, *q, *att, *gate, *up, *scores;
} Scratch;

static Scratch carve(const Decoder *d, float *base, int64_t t)
{
    Scratch s;
    s.h = base;
    s.q = s.h + t * d->dim;
    s.att = s.q + t * d->heads * d->head_dim;
    s.gate = s.att + t * d->heads * d->head_dim;
    s.up = s.gate + t * d->ffn;
    s.scores = s.up + t * d->ffn;  /* heads x (start + t) */
    return s;
}

int64_t decoder_scratch_floats(const Decoder *d, int64_t t, int64_t start)
{
    return t * (d->dim + 2 * d->heads * d->head_dim + 2 * d->ffn) + d->heads * (start + t);
}

/* y = x W^T (+ bias) for m rows. */
static int project(const Run *r, const Proj *p, const float *x, int64_t ldx, int64_t m, float *y, int64_t ldy)
{
    if (r->mode == 1 && q8_supported(p->w)) {
        if (q8_linear(p->w, r->lv, x, ldx, m, y, ldy, r->n_threads) != 0)
            return -1;
    } else {
        edgec_linear(p->w, r->lv, x, ldx, m, y, ldy, r->n_threads);
    }
    if (p->bias)
        for (int64_t i = 0; i < m; i++)
            for (int64_t n = 0; n < p->w->n; n++)
                y[i * ldy + n] += p->bias[n];
    return 0;
}

/* dst = src / sqrt(mean(src^2) + eps) * weight over n values, for `rows` rows `ld` floats apart. */
static void rms_norm(const float *src, float *dst, int64_t rows, int64_t ld, int64_t n, const float *weight, float eps)
{
    for (int64_t i = 0; i < rows; i++) {
        const float *a = src + i * ld;
        float *b = dst + i * ld;
        double ss = 0.0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)a[j] * a[j];
        const float denom = sqrtf((float)(ss / (double)n) + eps);
        for (int64_t j = 0; j < n; j++)
            b[j] = a[j] / denom * weight[j];
    }
}

/* Rotate the two halves of each of `heads` heads of one token (the HF rotate_half convention). */
static void rope(float *v, int64_t heads, int64_t hd, const float *cos, const float *sin)
{
    const int64_t half = hd / 2;
    for (int64_t h = 0; h < heads; h++) {
        float *a = v + h * hd, *b = a + half;
        for (int64_t j = 0; j < half; j++) {
            const float x0 = a[j], x1 = b[j];
            a[j] = x0 * cos[j] - x1 * sin[j];
            b[j] = x1 * cos[j] + x0 * sin[j];
        }
    }
}

typedef struct {
    const Decoder *d;
    const Level *lv;
    const float *q;             /* (t, heads, hd) */
    const float *keys, *values; /* this layer's (context, kv_heads, hd) */
    float *out;                 /* (t, heads, hd) */
    float *scores;              /* heads x (start + t) */
    int64_t t, start;
} AttentionJob;

/* All tokens of head c. */
static void attention_head(void *ctx, int c, int n_chunks)
{
    const AttentionJob *job = (const AttentionJob *)ctx;
    const Decoder *d = job->d;
    (void)n_chunks;
    const int64_t hd = d->head_dim, kv_row = d->kv_heads * hd, g = c / (d->heads / d->kv_heads);
    const float scale = (float)(1.0 / sqrt((double)hd));
    float *scores = job->scores + c * (job->start + job->t);
    for (int64_t i = 0; i < job->t; i++) {
        const int64_t p = job->start + i;
        const int64_t lo = d->window > 0 && p - d->window + 1 > 0 ? p - d->window + 1 : 0;
        const float *q = job->q + (i * d->heads + c) * hd;
        float top = -INFINITY;
        for (int64_t s = lo; s <= p; s++) {
            scores[s] = job->lv->vdot(q, job->keys + s * kv_row + g * hd, hd) * scale;
            top = scores[s] > top ? scores[s] : top;
        }
        float sum = 0.0f;
        for (int64_t s = lo; s <= p; s++) {
            const float e = scores[s] - top;
            scores[s] = e < PROB_FLUSH ? 0.0f : expf(e);
            sum += scores[s];
        }
        float *out = job->out + (i * d->heads + c) * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int64_t s = lo; s <= p; s++)
            if (scores[s] != 0.0f)
                job->lv->vaxpy(out, scores[s] / sum, job->values + s * kv_row + g * hd, hd);
    }
}

typedef struct {
    const Level *lv;
    float *gate;
    const float *up;
    int64_t n, per_chunk;
} SiluJob;

static void silu_chunk(void *ctx, int c, int n_chunks)
{
    const SiluJob *job = (const SiluJob *)ctx;
    (void)n_chunks;
    const int64_t i0 = c * job->per_chunk, i1 = i0 + job->per_chunk < job->n ? i0 + job->per_chunk : job->n;
    job->lv->vsilu_mul(job->gate + i0, job->up + i0, i1 - i0);
}

/* gate = silu(gate) * up over n values, split across threads when there are many. */
static void silu_mul(const Run *r, float *gate, const float *up, int64_t n)
{
    const int chunks = n >= MIN_THREADED_SILU ? 2 * r->n_threads : 1;
    const int64_t per_chunk = ((n + chunks - 1) / chunks + 7) / 8 * 8;
    SiluJob job = {r->lv, gate, up, n, per_chunk};
    pool_run(chunks > 1 ? r->n_threads : 1, (int)((n + per_chunk - 1) / per_chunk), silu_chunk, &job);
}

static void add(float *x, const float *y, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        x[j] += y[j];
}

int decoder_forward(const Decoder *d, const Level *lv, int mode, int n_threads, float *x, int64_t t,
                    int64_t start, float *keys, float *values, int64_t context, float *logits,
                    int all_logits, float *scratch)
{
    const Run run = {lv, mode, n_threads};
    const Scratch s = carve(d, scratch, t);
    const int64_t dim = d->dim, hd = d->head_dim, qw = d->heads * hd, kvw = d->kv_heads * hd;
    const int64_t layer_floats = context * kvw;
    const int64_t attention_work = t * (start + t) * qw * 2;
    for (int64_t l = 0; l < d->layers; l++) {
        const DecoderBlock *b = &d->blocks[l];
        float *lk = keys + l * layer_floats + start * kvw, *lvv = values + l * layer_floats + start * kvw;
        rms_norm(x, s.h, t, dim, dim, b->attn_norm, d->eps);
        if (project(&run, &b->q, s.h, dim, t, s.q, qw) || project(&run, &b->k, s.h, dim, t, lk, kvw)
            || project(&run, &b->v, s.h, dim, t, lvv, kvw))
            return -1;
        for (int64_t i = 0; i < t; i++) {
            float *qi = s.q + i * qw, *ki = lk + i * kvw;
            if (b->q_norm) {
                rms_norm(qi, qi, d->heads, hd, hd, b->q_norm, d->eps);
                rms_norm(ki, ki, d->kv_heads, hd, hd, b->k_norm, d->eps);
            }
            const float *cos = d->cos + (start + i) * (hd / 2), *sin = d->sin + (start + i) * (hd / 2);
            rope(qi, d->heads, hd, cos, sin);
            rope(ki, d->kv_heads, hd, cos, sin);
        }
        AttentionJob job = {d, lv, s.q, keys + l * layer_floats, values + l * layer_floats, s.att, s.scores, t, start};
        pool_run(attention_work < MIN_THREADED_ATTENTION ? 1 : n_threads, (int)d->heads, attention_head, &job);
        if (project(&run, &b->o, s.att, qw, t, s.h, dim))
            return -1;
        add(x, s.h, t * dim);
        rms_norm(x, s.h, t, dim, dim, b->mlp_norm, d->eps);
        if (project(&run, &b->gate, s.h, dim, t, s.gate, d->ffn) || project(&run, &b->up, s.h, dim, t, s.up, d->ffn))
            return -1;
        silu_mul(&run, s.gate, s.up, t * d->ffn);
        if (project(&run, &b->down, s.gate, d->ffn, t, s.h, dim))
            return -1;
        add(x, s.h, t * dim);
    }
    const int64_t rows = all_logits ? t : 1;
    const float *last = x + (t - rows) * dim;
    rms_norm(last, s.h, rows, dim, dim, d->final_norm, d->eps);
    return project(&run, &d->head, s.h, dim, rows, logits, d->vocab);
}
