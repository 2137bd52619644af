/* Persistent worker threads for pool_run (see pool.h).
 *
 * One 64-bit word, `claim`, holds (generation << 32 | next chunk). The caller of task g:
 *
 *   claim = (g, CLOSED);  write fn, ctx, n_chunks;  done = 0;  claim = (g, 0);  wake sleepers
 *   while a chunk c can be claimed: run it, done += 1
 *   wait until done == n_chunks          (only chunks some thread is running remain)
 *
 * A worker that sees generation g claims chunks by compare-and-swap on `claim`, so a CAS
 * that succeeds proves the task is still current (its fn and ctx still valid): the caller
 * cannot finish g while a claimed chunk is not done. A worker that arrives late fails its
 * CAS (the generation moved on, or the chunks ran out) and touches nothing.
 */
#include "pool.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 255
#define SPIN_NS 200000L        /* how long an idle worker polls before sleeping */
#define CLOSED 0xFFFFFFFFu     /* chunk field while a task is being published */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int n_workers;              /* started workers */
    uint32_t generation;        /* of the last task published (caller side) */
    _Atomic uint64_t claim;     /* generation << 32 | next chunk */
    atomic_int done;            /* chunks of the current task finished */
    atomic_int sleepers;        /* workers blocked on `wake` */
    atomic_int busy;            /* a caller is inside pool_run */
    PoolTask fn;
    void *ctx;
    atomic_int n_chunks;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Claim the next chunk of generation g, or -1 if g is over or has no chunk left. */
static int claim_chunk(uint32_t g)
{
    uint64_t v = atomic_load(&pool.claim);
    for (;;) {
        const uint32_t c = (uint32_t)v;
        if ((uint32_t)(v >> 32) != g || c == CLOSED || c >= (uint32_t)atomic_load(&pool.n_chunks))
            return -1;
        if (atomic_compare_exchange_weak(&pool.claim, &v, v + 1))
            return (int)c;
    }
}

/* Run chunks of generation g until none is left. */
static void work_on(uint32_t g)
{
    int c;
    while ((c = claim_chunk(g)) >= 0) {
        pool.fn(pool.ctx, c, atomic_load(&pool.n_chunks));
        atomic_fetch_add(&pool.done, 1);
    }
}

/* A task is open: its generation differs from `seen` and it is not being published. */
static int task_open(uint32_t seen, uint32_t *g)
{
    const uint64_t v = atomic_load(&pool.claim);
    *g = (uint32_t)(v >> 32);
    return *g != seen && (uint32_t)v != CLOSED;
}

static void *worker_main(void *arg)
{
    uint32_t seen = (uint32_t)(uintptr_t)arg, g;
    for (;;) {
        const long start = now_ns();
        unsigned spins = 0;
        while (!task_open(seen, &g)) {
            CPU_RELAX();
            if ((++spins & 255u) == 0 && now_ns() - start > SPIN_NS) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while (!task_open(seen, &g))
                    pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        work_on(g);
        seen = g;
    }
    return NULL;
}

/* In a forked child the workers do not exist: forget them and start afresh. */
static void after_fork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.n_workers = 0;
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.busy, 0);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* Start workers up to `wanted` (fewer if the OS refuses). */
static void ensure_workers(int wanted)
{
    if (wanted > MAX_WORKERS)
        wanted = MAX_WORKERS;
    while (pool.n_workers < wanted) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* a new worker must not take the task published before it started as new */
        const int rc = pthread_create(&tid, &attr, worker_main, (void *)(uintptr_t)pool.generation);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        pool.n_workers++;
    }
}

void pool_run(int n_threads, int n_chunks, PoolTask fn, void *ctx)
{
    int expected = 0;
    if (n_threads <= 1 || n_chunks <= 1 || !atomic_compare_exchange_strong(&pool.busy, &expected, 1)) {
        for (int c = 0; c < n_chunks; c++)
            fn(ctx, c, n_chunks);
        return;
    }
    pthread_once(&atfork_once, register_atfork);
    ensure_workers(n_threads - 1);

    const uint32_t g = ++pool.generation;
    atomic_store(&pool.claim, ((uint64_t)g << 32) | CLOSED);
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store(&pool.n_chunks, n_chunks);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.claim, (uint64_t)g << 32);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }

    work_on(g);
    while (atomic_load(&pool.done) < n_chunks)
        CPU_RELAX();
    atomic_store(&pool.busy, 0);
}

int pool_threads_supported(void)
{
    return 1;
}

#else /* no POSIX threads */

void pool_run(int n_threads, int n_chunks, PoolTask fn, void *ctx)
{
    (void)n_threads;
    for (int c = 0; c < n_chunks; c++)
        fn(ctx, c, n_chunks);
}

int pool_threads_supported(void)
{
    return 0;
}

#endif
