/* A whole LLaMA-family decoder pass in C: the cpu backend's fused path.
 *
 * The Python executor does, per block and token batch, RMSNorm, the q/k/v projections,
 * rotary positions, attention over the KV cache, the o projection, RMSNorm, SwiGLU and
 * the down projection; each is a call that costs microseconds of interpreter time, which
 * at one token per pass is most of a small model's decode step. decoder_forward runs the
 * same computation, in the same order and with the same kernels for the projections, with
 * no interpreter in between; only the summation order of norms and attention differs.
 *
 * Keys and values are written straight into the cache, which is one array per kind
 * (layers, context, kv_heads, head_dim) float32.
 */
#ifndef EDGEC_DECODER_H
#define EDGEC_DECODER_H

#include "weight.h"

typedef struct {
    const Weight *w;
    const float *bias;      /* (N,) or NULL */
} Proj;

typedef struct {
    const float *attn_norm, *mlp_norm;   /* (dim,) */
    const float *q_norm, *k_norm;        /* (head_dim,) per-head norms (Qwen3), or NULL */
    Proj q, k, v, o, gate, up, down;
} DecoderBlock;

typedef struct {
    int64_t layers, dim, heads, kv_heads, head_dim, ffn, vocab;
    int64_t window;         /* sliding-window length, 0 for none */
    int64_t positions;      /* rows of the rotary tables */
    float eps;
    const DecoderBlock *blocks;
    const float *final_norm;
    Proj head;
    const float *cos, *sin; /* (positions, head_dim / 2) */
} Decoder;

/* Floats of scratch decoder_forward needs for t new tokens after `start` cached ones. */
int64_t decoder_scratch_floats(const Decoder *d, int64_t t, int64_t start);

/* Run t tokens at positions start .. start+t-1.
 *   x:      (t, dim) their embeddings; overwritten (the residual stream)
 *   keys, values: (layers, context, kv_heads, head_dim); positions start .. start+t-1 are written
 *   logits: (t, vocab) if all_logits, else (1, vocab) for the last token
 *   mode:   0 exact projections, 1 int8 activations where the weight supports them
 *   scratch: decoder_scratch_floats(d, t, start) floats
 * The caller checks every size. Returns 0, or -1 if int8-activation scratch could not be allocated. */
int decoder_forward(const Decoder *d, const Level *lv, int mode, int n_threads, float *x, int64_t t,
                    int64_t start, float *keys, float *values, int64_t context, float *logits,
                    int all_logits, float *scratch);

#endif
