/* The many-row int8-activation kernel, instantiated by q8_gemm.c once per instruction set:
 *   Q8G_NAME    name of the row-block function
 *   Q8G_TARGET  its target attribute
 *   Q8G_ROWS    name of its inner function
 *   Q8G_DPBUSD(acc, u8, s8)  acc + four-way u8 x s8 products per 32-bit lane
 * Included only from q8_gemm.c.
 */

/* Output rows n0 .. n0 + 8 * tiles (the tiles' own nr rows) for x rows i0 .. i0+mr.
 * tiles (1 or 2) and mr (<= GEMM_MR) are constants after inlining: each broadcast activation
 * quad meets both tiles, and every accumulator stays in a register. */
static inline __attribute__((always_inline)) Q8G_TARGET
void Q8G_ROWS(const GemmJob *job, const RowTile *t, int64_t n0, int64_t i0, const int mr, const int tiles)
{
    const Weight *w = job->w;
    const Acts *a = job->a;
    const int kind = w->kind, shift = kind == KIND_INT8 ? 0 : block_shift(w->group);  /* block b is in group b >> shift */
    const __m256i ones16 = _mm256_set1_epi16(1);
    (void)ones16;
    __m256 facc[2][GEMM_MR];
#pragma GCC unroll 2
    for (int j = 0; j < tiles; j++)
#pragma GCC unroll 4
        for (int i = 0; i < mr; i++)
            facc[j][i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++) {
        __m256i iacc[2][GEMM_MR];
#pragma GCC unroll 2
        for (int j = 0; j < tiles; j++)
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++)
                iacc[j][i] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int q = 0; q < Q8_BLOCK / 4; q++) {
            __m256i wv[2];
#pragma GCC unroll 2
            for (int j = 0; j < tiles; j++)
                wv[j] = _mm256_load_si256((const __m256i *)(t[j].codes + b * GEMM_ROWS * Q8_BLOCK + q * 32));
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++) {
                int32_t quad;
                memcpy(&quad, a->xq + ((i0 + i) * a->nb + b) * Q8_BLOCK + 4 * q, 4);
                const __m256i xv = _mm256_set1_epi32(quad);
#pragma GCC unroll 2
                for (int j = 0; j < tiles; j++)
                    iacc[j][i] = Q8G_DPBUSD(iacc[j][i], wv[j], xv);
            }
        }
        const int64_t g = kind == KIND_INT8 ? 0 : b >> shift;
#pragma GCC unroll 2
        for (int j = 0; j < tiles; j++) {
            const __m256 s = _mm256_load_ps(t[j].scale + g * GEMM_ROWS);
#pragma GCC unroll 4
            for (int i = 0; i < mr; i++)
                facc[j][i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[j][i]),
                                             _mm256_mul_ps(s, _mm256_broadcast_ss(a->d + (i0 + i) * a->nb + b)), facc[j][i]);
        }
    }
    for (int j = 0; j < tiles; j++)
        for (int i = 0; i < mr; i++) {
            const float *gsum = a->gsum + (i0 + i) * a->ng;
            __m256 corr = _mm256_setzero_ps();
            for (int64_t g = 0; g < a->ng; g++)
                corr = _mm256_fmadd_ps(_mm256_load_ps((kind == KIND_INT4_ASYM ? t[j].minv : t[j].scale) + g * GEMM_ROWS),
                                       _mm256_broadcast_ss(gsum + g), corr);
            /* stored codes are c (int4: value c - 8) or q + 128 (int8: value q) */
            const __m256 out = kind == KIND_INT4_ASYM ? _mm256_add_ps(facc[j][i], corr)
                               : _mm256_fnmadd_ps(_mm256_set1_ps(kind == KIND_INT8 ? 128.0f : 8.0f), corr, facc[j][i]);
            float lanes[GEMM_ROWS];
            _mm256_storeu_ps(lanes, out);
            const int64_t first = n0 + j * GEMM_ROWS;
            float *y = job->y + (i0 + i) * job->ldy + first;
            for (int r = 0; r < t[j].rows; r++)
                y[r] = lanes[r] + exact_tail(w, first + r, a->nb * Q8_BLOCK, job->x + (i0 + i) * job->ldx);
        }
}

/* All x rows against the filled tiles (1 or 2) of rows n0 ... */
static inline __attribute__((always_inline)) Q8G_TARGET
void Q8G_XCAT(Q8G_NAME, _all)(const GemmJob *job, const RowTile *t, int64_t n0, const int tiles)
{
    int64_t i = 0;
    for (; i + GEMM_MR <= job->m; i += GEMM_MR)
        Q8G_ROWS(job, t, n0, i, GEMM_MR, tiles);
    switch (job->m - i) {
    case 3: Q8G_ROWS(job, t, n0, i, 3, tiles); break;
    case 2: Q8G_ROWS(job, t, n0, i, 2, tiles); break;
    case 1: Q8G_ROWS(job, t, n0, i, 1, tiles); break;
    default: break;
    }
}

/* One chunk of rows, sixteen at a time: interleave them into two tiles, then run every x row. */
Q8G_TARGET static void Q8G_NAME(void *ctx, int c, int n_chunks)
{
    const GemmJob *job = (const GemmJob *)ctx;
    (void)n_chunks;
    RowTile t[2];
    if (row_tile_alloc(job, &t[0]) != 0 || row_tile_alloc(job, &t[1]) != 0) {
        row_tile_release(&t[0]);  /* free(NULL) is a no-op */
        atomic_store(&((GemmJob *)job)->failed, 1);
        return;
    }
    const int64_t n_end = job->w->n, chunk_end = (c + 1) * job->rows_per_chunk < n_end ? (c + 1) * job->rows_per_chunk : n_end;
    for (int64_t n0 = c * job->rows_per_chunk; n0 < chunk_end; n0 += 2 * GEMM_ROWS) {
        const int64_t left = chunk_end - n0;
        row_tile_fill(job, n0, left < GEMM_ROWS ? (int)left : GEMM_ROWS, &t[0]);
        if (left > GEMM_ROWS) {
            row_tile_fill(job, n0 + GEMM_ROWS, left < 2 * GEMM_ROWS ? (int)(left - GEMM_ROWS) : GEMM_ROWS, &t[1]);
            Q8G_XCAT(Q8G_NAME, _all)(job, t, n0, 2);
        } else {
            Q8G_XCAT(Q8G_NAME, _all)(job, t, n0, 1);
        }
    }
    row_tile_release(&t[0]);
    row_tile_release(&t[1]);
}
