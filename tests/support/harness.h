/* Opens handles on the backend a test binary is built for: the unit binary
 * uses memory://, the integration binary a private redis-server started once
 * per test process (Criterion forks one process per test). */
#ifndef ACACHE_TEST_HARNESS_H
#define ACACHE_TEST_HARNESS_H

#include <sys/types.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

/* The typed internals behind the public JSON reports (private since 0.2):
 * the C tests assert on them directly. */
#include "admin/listing_priv.h"
#include "analysis/results.h"
#include "core/core.h"
#include "mapping/mapping_priv.h"

/* acache_list_affinities() with plain arguments (the 0.1 _json form's order). */
static inline int th_list_json(acache_buf *out, acache *c, const char *keyword,
                               int64_t limit, int64_t offset)
{
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = keyword;
    q.limit = limit;
    q.offset = offset;
    return acache_list_affinities(out, c, &q);
}

/* The store URI for this binary ("memory://" or the private Redis). */
const char *th_store_uri(void);
/* Redis Cluster mode (ACACHE_TEST_REDIS_CLUSTER=1): the primaries' ports
 * into ports[max]; returns how many (0: not on a cluster). */
int th_cluster_ports(int *ports, int max);
/* 1 when running on Redis. */
int th_is_redis(void);

/* A controllable clock: th_open() wires it into the options. */
void th_set_time(double t);
void th_advance(double seconds);
double th_time(void);

/* Open a handle on this binary's store with the test clock. `opts` may be
 * NULL; store_uri/clock are filled in. Asserts success. */
acache *th_open(acache_options *opts);

/* Load one line of ../shared/testdata/aether-redis jsonl-style data
 * ({"key","value","ttl"}) into the handle's store with a raw SET. */
void th_load_jsonl(acache *c, const char *path);

/* Monotonic milliseconds; a nap of `us` microseconds. */
double th_ms(void);
void th_nap_us(long us);
/* Sort `v` ascending; th_pct: the p-quantile (0..1) of a sorted `v`. */
void th_sort_doubles(double *v, int n);
double th_pct(const double *v, int n, double p);

/* A forked helper process talking to the test over two pipes: the test
 * writes requests to `to` and reads answers from `from`. */
typedef struct th_child {
    pid_t pid;
    int to, from;
} th_child;

/* Fork; the child runs fn(read end, write end) and must _exit. Asserts. */
th_child th_spawn(void (*fn)(int in, int out));
/* Close both pipes, reap the child and expect a clean exit 0. */
void th_reap(th_child *ch);

/* Shared test-data path (ACACHE_SHARED_DIR "/testdata/..."). */
#define TH_TESTDATA(rel) ACACHE_SHARED_DIR "/testdata/" rel

#endif
