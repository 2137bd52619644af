/* y = x @ W^T for a prepared weight: the host-facing entry points of the kernels. */
#ifndef EDGEC_LINEAR_H
#define EDGEC_LINEAR_H

#include "weight.h"

/* Exact path: W dequantized as the reference does, float32 accumulation.
 *   x: (m, w->k) float32, rows ldx floats apart;  y: (m, w->n) float32, rows ldy floats apart.
 * Output rows are split across n_threads threads. Never fails. */
void edgec_linear(const Weight *w, const Level *lv, const float *x, int64_t ldx, int64_t m,
                  float *y, int64_t ldy, int n_threads);

/* Output rows per chunk of work for n rows and `work` multiply-adds on n_threads threads
 * (all n when one thread is faster). */
int64_t edgec_chunk_rows(int64_t n, int64_t work, int n_threads);

#endif
