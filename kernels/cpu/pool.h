/* A tiny persistent thread pool: run the chunks of one task on the caller and the workers.
 *
 * Chunks are claimed one at a time from a shared counter, so a worker that the OS has
 * not scheduled (a busy machine) simply claims nothing and the caller does its share:
 * a call never waits for a thread that has not started working on it. Workers spin
 * briefly after each task (back-to-back layer calls pay no futex wake-up), then sleep.
 * A process forked from one that used the pool starts with no workers and creates them
 * again on first use. Without POSIX threads every task runs on the caller alone.
 */
#ifndef EDGEC_POOL_H
#define EDGEC_POOL_H

/* fn(ctx, c, n_chunks) is called exactly once for each chunk c in [0, n_chunks);
 * it must not touch Python objects. */
typedef void (*PoolTask)(void *ctx, int c, int n_chunks);

/* Run all chunks using up to n_threads threads (the caller included); returns when all are done.
 * If another thread is already running a task, this one runs on the caller alone. */
void pool_run(int n_threads, int n_chunks, PoolTask fn, void *ctx);

/* Whether threads can be started at all (0 on builds without POSIX threads). */
int pool_threads_supported(void);

#endif
