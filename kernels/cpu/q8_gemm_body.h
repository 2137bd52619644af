/* The many-row int8-activation kernel, instantiated by q8_gemm.c once per instruction set:
 *   Q8G_NAME    name of the row-block function
 *   Q8G_TARGET  its target attribute
 *   Q8G_ROWS    name of its inner function
 *   Q8G_DPBUSD(acc, u8, s8)  acc + four-way u8 x s8 products per 32-bit lane
 * Included only from q8_gemm.c.
 */

/* Output rows n0 .. n0+nr (nr <= 8) for x rows i0 .. i0+mr (mr <= GEMM_MR, a constant after inlining). */
static inline __attribute__((always_inline)) Q8G_TARGET
void Q8G_ROWS(const GemmJob *job, const RowTile *t, int64_t n0, int nr, int64_t i0, const int mr)
{
    const Weight *w = job->w;
    const Acts *a = job->a;
    const int kind = w->kind, shift = kind == KIND_INT8 ? 0 : block_shift(w->group);  /* block b is in group b >> shift */
    const __m256i ones16 = _mm256_set1_epi16(1);
    (void)ones16;
    __m256 facc[GEMM_MR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
        facc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++) {
        /* two accumulators per x row (even and odd quads): twice the independent chains
         * for the dot products' latency */
        __m256i iacc[2 * GEMM_MR];
#pragma GCC unroll 8
        for (int i = 0; i < 2 * mr; i++)
            iacc[i] = _mm256_setzero_si256();
        const uint8_t *tb = t->codes + b * GEMM_ROWS * Q8_BLOCK;
#pragma GCC unroll 8
        for (int q = 0; q < Q8_BLOCK / 4; q++) {
            const __m256i wv = _mm256_load_si256((const __m256i *)(tb + q * 32));
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++) {
                int32_t quad;
                memcpy(&quad, a->xq + ((i0 + i) * a->nb + b) * Q8_BLOCK + 4 * q, 4);
                iacc[2 * i + (q & 1)] = Q8G_DPBUSD(iacc[2 * i + (q & 1)], wv, _mm256_set1_epi32(quad));
            }
        }
        const __m256 s = _mm256_load_ps(t->scale + (kind == KIND_INT8 ? 0 : b >> shift) * GEMM_ROWS);
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++)
            facc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(iacc[2 * i], iacc[2 * i + 1])),
                                      _mm256_mul_ps(s, _mm256_broadcast_ss(a->d + (i0 + i) * a->nb + b)), facc[i]);
    }
    for (int i = 0; i < mr; i++) {
        const float *gsum = a->gsum + (i0 + i) * a->ng;
        __m256 corr = _mm256_setzero_ps();
        for (int64_t g = 0; g < a->ng; g++)
            corr = _mm256_fmadd_ps(_mm256_load_ps((kind == KIND_INT4_ASYM ? t->minv : t->scale) + g * GEMM_ROWS),
                                   _mm256_broadcast_ss(gsum + g), corr);
        /* stored codes are c (int4: value c - 8) or q + 128 (int8: value q) */
        const __m256 out = kind == KIND_INT4_ASYM ? _mm256_add_ps(facc[i], corr)
                           : _mm256_fnmadd_ps(_mm256_set1_ps(kind == KIND_INT8 ? 128.0f : 8.0f), corr, facc[i]);
        float lanes[GEMM_ROWS];
        _mm256_storeu_ps(lanes, out);
        float *y = job->y + (i0 + i) * job->ldy + n0;
        for (int r = 0; r < nr; r++)
            y[r] = lanes[r] + exact_tail(w, n0 + r, a->nb * Q8_BLOCK, job->x + (i0 + i) * job->ldx);
    }
}

/* One chunk of 8-row blocks: interleave each block's rows, then run every x row against it. */
Q8G_TARGET static void Q8G_NAME(void *ctx, int c, int n_chunks)
{
    const GemmJob *job = (const GemmJob *)ctx;
    (void)n_chunks;
    RowTile t;
    if (row_tile_alloc(job, &t) != 0) {
        atomic_store(&((GemmJob *)job)->failed, 1);
        return;
    }
    const int64_t n_end = job->w->n, chunk_end = (c + 1) * job->rows_per_chunk;
    for (int64_t n0 = c * job->rows_per_chunk; n0 < chunk_end && n0 < n_end; n0 += GEMM_ROWS) {
        const int nr = n_end - n0 < GEMM_ROWS ? (int)(n_end - n0) : GEMM_ROWS;
        row_tile_fill(job, n0, nr, &t);
        int64_t i = 0;
        for (; i + GEMM_MR <= job->m; i += GEMM_MR)
            Q8G_ROWS(job, &t, n0, nr, i, GEMM_MR);
        switch (job->m - i) {
        case 3: Q8G_ROWS(job, &t, n0, nr, i, 3); break;
        case 2: Q8G_ROWS(job, &t, n0, nr, i, 2); break;
        case 1: Q8G_ROWS(job, &t, n0, nr, i, 1); break;
        default: break;
        }
    }
    row_tile_release(&t);
}
