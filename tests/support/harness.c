#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"
#include "redis_server.h"

static double now_value = 1800000000.0;

void th_set_time(double t)
{
    now_value = t;
}

void th_advance(double seconds)
{
    now_value += seconds;
}

double th_time(void)
{
    return now_value;
}

static double clock_cb(void *payload)
{
    (void)payload;
    return now_value;
}

#ifdef ACACHE_TEST_BACKEND_REDIS
static test_redis server;
static int started;

static void stop_server(void)
{
    test_redis_stop(&server);
}

/* ACACHE_TEST_REDIS_CLUSTER=1 (ctest "integration-cluster", run with
 * --jobs 1): one 3-primary cluster per test binary, started by the runner
 * before any test and stopped after the last (PRE_ALL / POST_ALL hooks run
 * in the runner; the test processes find it in the environment). Each test
 * process empties it (FLUSHALL on every primary) when it first asks for the
 * URI, as a fresh private server would be. */
static test_redis_cluster cluster;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *on = getenv("ACACHE_TEST_REDIS_CLUSTER");
    if (!on || on[0] != '1' || getenv("ACACHE_TEST_CLUSTER_URI"))
        return;
    if (test_redis_cluster_start(&cluster, 3) != 0) {
        fprintf(stderr, "harness: could not start a Redis Cluster\n");
        exit(1);
    }
    char ports[128] = "";
    for (int i = 0; i < cluster.n; i++)
        snprintf(ports + strlen(ports), sizeof ports - strlen(ports), "%s%d",
                 i ? "," : "", cluster.node[i].port);
    setenv("ACACHE_TEST_CLUSTER_URI", cluster.uri, 1);
    setenv("ACACHE_TEST_CLUSTER_PORTS", ports, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    (void)stats;
    test_redis_cluster_stop(&cluster);
}

int th_cluster_ports(int *ports, int max)
{
    const char *p = getenv("ACACHE_TEST_CLUSTER_PORTS");
    int n = 0;
    while (p && *p && n < max) {
        ports[n++] = atoi(p);
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return n;
}

static void flush_cluster(void)
{
    int ports[TEST_CLUSTER_MAX];
    int n = th_cluster_ports(ports, TEST_CLUSTER_MAX);
    for (int i = 0; i < n; i++) {
        redisContext *rc = redisConnect("127.0.0.1", ports[i]);
        cr_assert(rc && !rc->err, "cluster node %d unreachable", ports[i]);
        redisReply *r = redisCommand(rc, "FLUSHALL");
        /* A replica (after a test's failover) refuses: fine. */
        if (r)
            freeReplyObject(r);
        redisFree(rc);
    }
}

/* ACACHE_TEST_REDIS_TLS=1 runs the same tests over rediss:// (a TLS-only
 * server with certificates made at start; ctest "integration-tls"). */
const char *th_store_uri(void)
{
    const char *cl = getenv("ACACHE_TEST_CLUSTER_URI");
    if (cl) {
        if (!started) {
            flush_cluster();
            started = 1;
        }
        return cl;
    }
    if (!started) {
        const char *tls = getenv("ACACHE_TEST_REDIS_TLS");
        int rc = tls && tls[0] == '1' ? test_redis_start_tls(&server, NULL)
                                      : test_redis_start(&server);
        cr_assert_eq(rc, 0, "could not start a private redis-server");
        atexit(stop_server);
        started = 1;
    }
    return server.uri;
}

int th_is_redis(void)
{
    return 1;
}
#else
const char *th_store_uri(void)
{
    return "memory://";
}

int th_is_redis(void)
{
    return 0;
}

int th_cluster_ports(int *ports, int max)
{
    (void)ports;
    (void)max;
    return 0;
}
#endif

acache *th_open(acache_options *opts)
{
    acache_options local = ACACHE_OPTIONS_INIT;
    if (!opts)
        opts = &local;
    opts->store_uri = th_store_uri();
    if (!opts->clock)
        opts->clock = clock_cb;
    acache *c = NULL;
    int rc = acache_open(&c, opts);
    cr_assert_eq(rc, ACACHE_OK, "acache_open(%s): %s", opts->store_uri,
                 acache_last_error());
    return c;
}

void th_load_jsonl(acache *c, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[65536];
    acache_store *s = acache_handle_store(c);
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        cr_assert_not_null(o, "%s: %s", path, err.text);
        const char *key = json_string_value(json_object_get(o, "key"));
        json_t *v = json_object_get(o, "value");
        json_int_t ttl = json_integer_value(json_object_get(o, "ttl"));
        cr_assert_eq(
            s->set(s, key, json_string_value(v), json_string_length(v), (uint32_t)ttl),
            ACACHE_OK, "set %s: %s", key, acache_last_error());
        json_decref(o);
    }
    fclose(f);
}

th_child th_spawn(void (*fn)(int in, int out))
{
    int a[2], b[2];
    cr_assert_eq(pipe(a), 0);
    cr_assert_eq(pipe(b), 0);
    th_child ch;
    ch.pid = fork();
    cr_assert(ch.pid >= 0);
    if (ch.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a timed-out test takes it along */
        close(a[1]);
        close(b[0]);
        fn(a[0], b[1]);
        _exit(0);
    }
    close(a[0]);
    close(b[1]);
    ch.to = a[1];
    ch.from = b[0];
    return ch;
}

void th_reap(th_child *ch)
{
    close(ch->to);
    close(ch->from);
    int st;
    waitpid(ch->pid, &st, 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

double th_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void th_nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

void th_sort_doubles(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
}

double th_pct(const double *v, int n, double p)
{
    return v[(int)(p * (n - 1) + 0.5)];
}
