/* A prepared weight as the kernels see it, and the per-kind kernel table.
 *
 * A weight W (N, K) is a "values matrix" (N, KV) in one storage kind, plus, for
 * 2:4 sparsity, a metadata matrix saying where each kept value sits:
 *
 *   dense:  KV = K,   W[n][k] = value(n, k)
 *   2:4:    KV = K/2, W[n][4q + i_t] = value(n, 2q + t), t in {0, 1}, other entries 0,
 *           with i_0 | i_1 << 2 the q-th nibble of row n of `meta` (low nibble first).
 *
 * Storage kinds mirror edgec.core.formats, whose docstrings define the bits:
 *
 *   F16   q: float16 (N, KV)                                      w = q
 *   BF16  q: bfloat16 bits (N, KV)                                w = q << 16
 *   FP8   q: e4m3fn bits (N, KV), scale (N, 1)                    w = e4m3(q) * s
 *   INT8  q: int8 (N, KV), scale (N, 1)                           w = q * s
 *   INTb  q: b-bit codes, little-endian bit stream per row,       w = (c - 2^(b-1)) * s
 *         scale (N, ceil(KV/G))
 *   INTb_ASYM  as INTb, plus min (N, ceil(KV/G))                  w = c * s + min
 *   NF4   q: 4-bit indices, scale (N, ceil(KV/G))                 w = NF4[c] * s
 *
 * Scales and minima are float32 here (the host widens float16 ones at prepare time);
 * each product and sum above is rounded to float32 once, in that order, as numpy does.
 */
#ifndef EDGEC_WEIGHT_H
#define EDGEC_WEIGHT_H

#include <stdint.h>
#include <string.h>

#include "storage_kinds.h"  /* enum Kind, generated from edgec.core.storage_kinds */

typedef struct Weight {
    /* sizes */
    int kind;               /* enum Kind of the values matrix */
    int64_t n, k;           /* logical weight shape (N, K) */
    int64_t kv;             /* columns of the values matrix: K, or K/2 for 2:4 */
    int64_t group;          /* values per scale group along a row; kv when one per row */
    int64_t ng;             /* groups per row: row stride of scale and minv, in floats */
    /* values matrix */
    const uint8_t *q;       /* codes or 16-bit values, row-major */
    int64_t q_stride;       /* bytes between rows of q */
    const float *scale;     /* (N, ng) scales, NULL for F16/BF16 */
    const float *minv;      /* (N, ng) group minima, *_ASYM only */
    /* 2:4 sparsity (meta == NULL when dense) */
    const uint8_t *meta;    /* (N, ceil(K/8)) kept-position nibbles */
    int64_t meta_stride;    /* bytes between rows of meta */
} Weight;

/* Bits per stored value of each kind. */
/* Switches over enum Kind list every kind and have no default: -Werror=switch (setup.py) makes a
 * kind added to the table but not to a switch a build error, never a silent wrong decode. A kind
 * outside the enum cannot reach them: the extension checks it when a Weight is made. */
static inline int kind_bits(int kind)
{
    switch ((enum Kind)kind) {
    case KIND_F16: case KIND_BF16: return 16;
    case KIND_FP8: case KIND_INT8: return 8;
    case KIND_INT2: case KIND_INT2_ASYM: return 2;
    case KIND_INT3: case KIND_INT3_ASYM: return 3;
    case KIND_INT4: case KIND_INT4_ASYM: case KIND_NF4: return 4;
    case KIND_COUNT: break;
    }
    return 0;
}

static inline int kind_is_asym(int kind)
{
    return kind == KIND_INT2_ASYM || kind == KIND_INT3_ASYM || kind == KIND_INT4_ASYM;
}

/* Whether the kind has one scale per group of `group` values (else one per row, or none). */
static inline int kind_is_grouped(int kind)
{
    return kind >= KIND_INT2 && kind <= KIND_NF4;
}

/* ---- exact scalar decoding, shared by every SIMD level (tails) ---------------------- */

extern const float EDGEC_NF4[16];
extern float EDGEC_E4M3[256];   /* filled by edgec_tables_init() */
void edgec_tables_init(void);

/* IEEE half -> float, exactly (subnormals, infinities and NaN included). */
static inline float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Code j of a row's little-endian bit stream of `bits`-bit codes (bits <= 8). */
static inline unsigned stream_code(const uint8_t *row, int64_t j, int bits)
{
    int64_t pos = j * bits;
    unsigned lo = row[pos >> 3] >> (pos & 7);
    if ((pos & 7) + bits > 8)
        lo |= (unsigned)row[(pos >> 3) + 1] << (8 - (pos & 7));
    return lo & ((1u << bits) - 1u);
}

/* Value j of row `row` (pointer to its q bytes), group parameters s and m already loaded. */
static inline float value_at(int kind, const uint8_t *row, int64_t j, float s, float m)
{
    uint16_t h;
    switch ((enum Kind)kind) {
    case KIND_F16: memcpy(&h, row + 2 * j, 2); return half_to_float(h);
    case KIND_BF16: memcpy(&h, row + 2 * j, 2); return bf16_to_float(h);
    case KIND_FP8: return EDGEC_E4M3[row[j]] * s;
    case KIND_INT8: return (float)(int8_t)row[j] * s;
    case KIND_INT2: return (float)((int)stream_code(row, j, 2) - 2) * s;
    case KIND_INT3: return (float)((int)stream_code(row, j, 3) - 4) * s;
    case KIND_INT4: return (float)((int)stream_code(row, j, 4) - 8) * s;
    case KIND_INT2_ASYM: return (float)stream_code(row, j, 2) * s + m;
    case KIND_INT3_ASYM: return (float)stream_code(row, j, 3) * s + m;
    case KIND_INT4_ASYM: return (float)stream_code(row, j, 4) * s + m;
    case KIND_NF4: return EDGEC_NF4[stream_code(row, j, 4)] * s;
    case KIND_COUNT: break;
    }
    return 0.0f;
}

/* ---- kernel tables ------------------------------------------------------------------ */

/* Values [j0, j1) of row n, decoded to float32 into dst[0 .. j1-j0); j0 a multiple of 8. */
typedef void (*DecodeFn)(const Weight *w, int64_t n, int64_t j0, int64_t j1, float *dst);
/* sum_j value(n, j) * x[j] over the whole values row, accumulated in float32. */
typedef float (*DotFn)(const Weight *w, int64_t n, const float *x);

/* out[i] = sum_j value(n, j) * x[i * ldx + j] for i < mr, mr in 2 .. MR_FUSED: one decode, mr rows. */
typedef void (*DotRowsFn)(const Weight *w, int64_t n, const float *x, int64_t ldx, float *out);
#define MR_FUSED 4

typedef struct {
    DecodeFn decode;
    DotFn dot;
    DotRowsFn dot_rows[MR_FUSED - 1];  /* [mr - 2] */
} KindKernels;

/* sum over k in [k0, k1) of W[n][k] * x[k] for a 2:4 row, given its kept values
 * kept[0 .. (k1-k0)/2) and its meta row; k0 a multiple of 16. */
typedef float (*SparseDotFn)(const float *kept, const uint8_t *meta, const float *x, int64_t k0, int64_t k1);

/* Register tile of the tiled GEMM:
 *   y[i][r] (+)= sum_{k < kc} x[i][k] * tile[r][k]   for i < mr (1 .. MR), r < NR
 * x rows ldx floats apart; tile rows TILE_K floats apart, zero past kc up to a multiple of 8;
 * y rows ldy floats apart, only r < nr written; accumulate != 0 adds to y. */
#define NR 4
#define MR 3
#define TILE_K 512
typedef void (*MicroFn)(const float *x, int64_t ldx, int mr, const float *tile, int64_t kc,
                        float *y, int64_t ldy, int nr, int accumulate);

/* Plain float vectors (attention): sum a[i] * b[i], and y[i] += alpha * x[i], for i < n. */
typedef float (*VecDotFn)(const float *a, const float *b, int64_t n);
typedef void (*VecAxpyFn)(float *y, float alpha, const float *x, int64_t n);
/* SwiGLU's product: gate[i] = silu(gate[i]) * up[i], with silu(g) = g / (1 + exp(-g)) and 0 below
 * SILU_FLUSH (as runtime_py/executors/common.py: |silu| < 6e-25 there, and its subnormal products
 * with the next weights would be slow). */
#define SILU_FLUSH (-60.0f)
typedef void (*VecSiluMulFn)(float *gate, const float *up, int64_t n);

/* Instruction sets a level may use beyond its row kernels (the int8-activation paths look at it). */
enum Isa { ISA_GENERIC, ISA_AVX2, ISA_AVX2_VNNI };

typedef struct {
    const char *name;
    KindKernels kinds[KIND_COUNT];
    SparseDotFn sparse_dot;
    MicroFn micro;
    VecDotFn vdot;
    VecAxpyFn vaxpy;
    VecSiluMulFn vsilu_mul;
    int isa;            /* enum Isa */
} Level;

/* Every kind, and the kernel table of one level for its `kinds` field: each level's source file
 * instantiates its row kernels with EDGEC_FOR_EACH_KIND, naming them alike, so both lists live here. */
#define EDGEC_FOR_EACH_KIND(X)                                                            \
    X(KIND_F16, f16) X(KIND_BF16, bf16) X(KIND_FP8, fp8) X(KIND_INT8, int8) X(KIND_INT2, int2) \
    X(KIND_INT3, int3) X(KIND_INT4, int4) X(KIND_INT2_ASYM, int2_asym)                        \
    X(KIND_INT3_ASYM, int3_asym) X(KIND_INT4_ASYM, int4_asym) X(KIND_NF4, nf4)
#define EDGEC_KIND_KERNELS(KIND, k) [KIND] = {decode_##k, dot_##k, {dot2_##k, dot3_##k, dot4_##k}},
#define EDGEC_ALL_KIND_KERNELS {EDGEC_FOR_EACH_KIND(EDGEC_KIND_KERNELS)}

extern const Level EDGEC_LEVEL_SCALAR;

/* The AVX2 kernels need GCC/Clang's target attributes and run-time CPU checks. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define EDGEC_HAVE_AVX2 1
extern const Level EDGEC_LEVEL_AVX2;
extern const Level EDGEC_LEVEL_AVX2_VNNI;  /* the AVX2 kernels, with AVX-VNNI dot products for int8 activations */
int edgec_avx2_supported(void);
int edgec_avx_vnni_supported(void);
#endif

#endif
