/* Fleet counters on a real redis-server (docs/fleet.md, issue 11 item 1):
 * processes made with fork() record known traffic into one Redis, and a
 * third handle's stats and /metrics text show the exact sums; SIGKILL loses
 * at most the last interval and the instance ages out; Redis down or paused
 * never slows the hot path and the deltas arrive when it is back. Each test
 * starts its own server, so the fleet keys start empty. */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"
#include "redis_server.h"

#define FLUSH_MS 100
#define THREADS 4
#define PINS 50
#define MISSES 20

static test_redis srv;

static void setup(void)
{
    cr_assert_eq(test_redis_start(&srv), 0);
}

static void teardown(void)
{
    test_redis_stop(&srv);
}

TestSuite(fleet_redis, .init = setup, .fini = teardown, .timeout = 120);

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static acache *open_fleet(const char *id, uint32_t flush_ms, uint32_t cmd_ms)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = srv.uri;
    o.stats_flush_ms = flush_ms;
    o.instance_id = id;
    o.command_timeout_ms = cmd_ms;
    o.connect_timeout_ms = cmd_ms;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    if (rc != ACACHE_OK)
        fprintf(stderr, "acache_open: %s\n", acache_last_error());
    return c;
}

/* ---- known traffic ---- */

typedef struct {
    acache *c;
    int proc, thread;
    int errors;
} worker;

/* Per thread: PINS created, PINS refreshed, PINS key switches, PINS hits,
 * MISSES misses, 3 scheduler batches. */
static void *traffic(void *p)
{
    worker *w = p;
    char ak[64];
    for (int i = 0; i < PINS; i++) {
        snprintf(ak, sizeof ak, "p%d-t%d-%d", w->proc, w->thread, i);
        acache_touch_result r;
        if (acache__affinity_set(&r, w->c, ak, "claude", "m", "prov", "ep", "k1", 1, 0) ||
            r != ACACHE_TOUCH_CREATED)
            w->errors++;
        if (acache__affinity_set(&r, w->c, ak, "claude", "m", "prov", "ep", "k1", 1, 0) ||
            r != ACACHE_TOUCH_REFRESHED)
            w->errors++;
        if (acache__affinity_set(&r, w->c, ak, "claude", "m", "prov", "ep", "k2", 1, 0) ||
            r != ACACHE_TOUCH_SWITCHED)
            w->errors++;
        acache_affinity *a = NULL;
        if (acache_affinity_get(&a, w->c, ak, "claude", "m") != ACACHE_OK)
            w->errors++;
        acache_affinity_free(a);
    }
    for (int i = 0; i < MISSES; i++) {
        snprintf(ak, sizeof ak, "none-p%d-t%d-%d", w->proc, w->thread, i);
        acache_affinity *a = NULL;
        if (acache_affinity_get(&a, w->c, ak, "claude", "m") != ACACHE_ENOTFOUND)
            w->errors++;
    }
    for (int i = 0; i < 3; i++)
        acache_scheduler_record_batch(w->c, 5);
    return NULL;
}

static int run_traffic(acache *c, int proc)
{
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){c, proc, i, 0};
        pthread_create(&t[i], NULL, traffic, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        errors += w[i].errors;
    }
    return errors;
}

/* A child that records the traffic, reports on `done`, then waits for a byte
 * on `go` before closing (or is killed). */
static pid_t spawn(int proc, int done_fd, int go_fd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char id[32];
    snprintf(id, sizeof id, "proc-%d", proc);
    acache *c = open_fleet(id, FLUSH_MS, 2000);
    char status = c && run_traffic(c, proc) == 0 ? 'k' : 'e';
    if (write(done_fd, &status, 1) != 1)
        _exit(3);
    char b;
    if (read(go_fd, &b, 1) != 1)
        _exit(4);
    acache_close(c);
    _exit(status == 'k' ? 0 : 2);
}

static json_t *stats_json(acache *c)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_error_t e;
    json_t *o = json_loadb(b.ptr, b.size, 0, &e);
    acache_buf_dispose(&b);
    cr_assert_not_null(o, "stats JSON: %s", e.text);
    return o;
}

static json_int_t jint(json_t *o, const char *path)
{
    /* "a.b.c" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = json_object_get(cur, tok);
    cr_assert(json_is_integer(cur), "%s is not an integer", path);
    return json_integer_value(cur);
}

/* The value of one sample line `name` in the Prometheus text, or -1. */
static double metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = nl ? nl + 1 : NULL;
    }
    return -1;
}

#define TOTAL(x) (2 * THREADS * (x))

Test(fleet_redis, two_processes_times_four_threads_sum_exactly_in_a_third)
{
    int done[2], go[2];
    cr_assert_eq(pipe(done), 0);
    cr_assert_eq(pipe(go), 0);
    pid_t kids[2];
    for (int p = 0; p < 2; p++)
        kids[p] = spawn(p, done[1], go[0]);
    for (int p = 0; p < 2; p++) {
        char s;
        cr_assert_eq(read(done[0], &s, 1), 1);
        cr_assert_eq(s, 'k', "a child's traffic went wrong");
    }
    sleep_ms(3 * FLUSH_MS); /* the flush interval, with margin */

    acache *third = open_fleet("reader", FLUSH_MS, 2000);
    cr_assert_not_null(third);
    json_t *o = stats_json(third);
    json_t *as = json_object_get(json_object_get(o, "data"), "affinity_stats");
    cr_expect_eq(jint(as, "cache_hits"), TOTAL(PINS));
    cr_expect_eq(jint(as, "cache_misses"), TOTAL(MISSES));
    cr_expect_eq(jint(as, "total_affinities"), TOTAL(PINS));
    cr_expect_eq(jint(as, "key_switches"), TOTAL(PINS));
    cr_expect_eq(jint(as, "provider_switches"), 0);
    cr_expect_eq(jint(as, "fleet.refreshed"), TOTAL(PINS));
    cr_expect_eq(jint(as, "active_affinities"), TOTAL(PINS));
    cr_expect_str_eq(
        json_string_value(json_object_get(json_object_get(as, "fleet"), "scope")),
        "fleet");
    json_t *sm = json_object_get(json_object_get(o, "data"), "scheduler_metrics");
    cr_expect_eq(jint(sm, "total_batches"), TOTAL(3));
    cr_expect_eq(jint(sm, "total_candidates"), 0);
    /* Both children are live instances; the reader has not flushed yet. */
    json_t *per = json_object_get(json_object_get(as, "fleet"), "per_instance");
    size_t kids_seen = 0;
    for (size_t i = 0; i < json_array_size(per); i++) {
        json_t *in = json_array_get(per, i);
        const char *id = json_string_value(json_object_get(in, "instance_id"));
        if (strncmp(id, "proc-", 5) == 0) {
            kids_seen++;
            cr_expect_eq(jint(in, "cache_hits"), THREADS * PINS, "%s", id);
            cr_expect_eq(jint(in, "cache_misses"), THREADS * MISSES, "%s", id);
            cr_expect_str_eq(json_string_value(json_object_get(in, "version")),
                             acache_version());
        }
    }
    cr_expect_eq(kids_seen, 2);
    json_decref(o);

    /* /metrics: Aether's names and the new counters, same sums. */
    acache_buf m = ACACHE_BUF_INIT;
    cr_assert_eq(acache_metrics_text(&m, third), ACACHE_OK);
    cr_expect_eq(metric(m.ptr, "cache_affinity_hits"), TOTAL(PINS));
    cr_expect_eq(metric(m.ptr, "acache_affinity_hits_total"), TOTAL(PINS));
    cr_expect_eq(metric(m.ptr, "acache_affinity_misses_total"), TOTAL(MISSES));
    cr_expect_eq(metric(m.ptr, "acache_affinity_switches_total{kind=\"key\"}"),
                 TOTAL(PINS));
    cr_expect_eq(metric(m.ptr, "acache_affinity_switches_total{kind=\"provider\"}"), 0);
    cr_expect_geq(metric(m.ptr, "acache_instances"), 2);
    acache_buf_dispose(&m);

    /* The children close (final flush, records dropped): totals stay. */
    cr_assert_eq(write(go[1], "gg", 2), 2);
    for (int p = 0; p < 2; p++) {
        int st;
        cr_assert_eq(waitpid(kids[p], &st, 0), kids[p]);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    acache_stats st = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&st, third), ACACHE_OK);
    cr_expect_eq(st.fleet, 1);
    cr_expect_eq(st.cache_hits, TOTAL(PINS));
    cr_expect_eq(st.refreshed, TOTAL(PINS));
    cr_expect_leq(st.instances, 1, "closed instances are no longer live");
    acache_close(third);
}

Test(fleet_redis, sigkill_loses_at_most_the_last_interval_and_the_instance_ages_out)
{
    /* Phase A is flushed (the child waits 4 intervals), phase B is cut by
     * SIGKILL right after it: fleet hits must be in [A, A + B]. */
    enum { A = 300, B = 200 };
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    acache *seed = open_fleet("seed", ACACHE_FLEET_OFF, 2000);
    cr_assert_not_null(seed);
    cr_assert_eq(
        acache__affinity_set(NULL, seed, "ak", "claude", "m", "p", "e", "k", 1, 0),
        ACACHE_OK);
    acache_close(seed);
    pid_t pid = fork();
    if (pid == 0) {
        acache_options o = ACACHE_OPTIONS_INIT;
        o.store_uri = srv.uri;
        o.stats_flush_ms = FLUSH_MS;
        o.instance_id = "doomed";
        o.l1_ttl_ms = ACACHE_L1_OFF;
        acache *c = NULL;
        if (acache_open(&c, &o))
            _exit(2);
        for (int i = 0; i < A; i++) {
            acache_affinity *a = NULL;
            acache_affinity_get(&a, c, "ak", "claude", "m");
            acache_affinity_free(a);
        }
        sleep_ms(4 * FLUSH_MS);
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        for (int i = 0; i < B; i++) {
            acache_affinity *a = NULL;
            acache_affinity_get(&a, c, "ak", "claude", "m");
            acache_affinity_free(a);
        }
        raise(SIGKILL);
        _exit(4);
    }
    char b;
    cr_assert_eq(read(ready[0], &b, 1), 1);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    acache *r = open_fleet("observer", ACACHE_FLEET_OFF, 2000);
    cr_assert_not_null(r);
    /* A fleet-off handle has no fleet view: read with a flushing one. */
    acache_close(r);
    r = open_fleet("observer", FLUSH_MS, 2000);
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&s, r), ACACHE_OK);
    cr_expect_geq(s.cache_hits, A, "phase A was flushed: %" PRIu64, s.cache_hits);
    cr_expect_leq(s.cache_hits, A + B, "%" PRIu64, s.cache_hits);
    fprintf(stderr,
            "fleet_redis: SIGKILL kept %" PRIu64 " of %d hits (lost %" PRIu64 ")\n",
            s.cache_hits, A + B, (uint64_t)(A + B) - s.cache_hits);

    /* The record's TTL is 3 intervals + 1 s: gone within 2 s. */
    double deadline = mono_s() + 5.0, gone_after = -1, t0 = mono_s();
    while (mono_s() < deadline) {
        json_t *o = stats_json(r);
        json_t *per = json_object_get(
            json_object_get(json_object_get(json_object_get(o, "data"), "affinity_stats"),
                            "fleet"),
            "per_instance");
        int found = 0;
        for (size_t i = 0; i < json_array_size(per); i++)
            found |= strcmp(json_string_value(
                                json_object_get(json_array_get(per, i), "instance_id")),
                            "doomed") == 0;
        json_decref(o);
        if (!found) {
            gone_after = mono_s() - t0;
            break;
        }
        sleep_ms(100);
    }
    cr_expect_geq(gone_after, 0, "the killed instance never aged out");
    cr_expect_leq(gone_after, 3 * FLUSH_MS / 1000.0 + 1.5);
    /* Its counts stay in the totals after it aged out. */
    acache_stats s2 = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&s2, r), ACACHE_OK);
    cr_expect_eq(s2.cache_hits, s.cache_hits);
    acache_close(r);
}

/* Latency of one hot-path call, in ms. */
typedef struct {
    double max_ms;
    long n;
} lat;

static void l1_gets(acache *c, double seconds, lat *out)
{
    double end = mono_s() + seconds;
    while (mono_s() < end) {
        double t = mono_s();
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, "ak", "claude", "m");
        acache_scheduler_record_batch(c, 1);
        double ms = (mono_s() - t) * 1e3;
        cr_assert_eq(rc, ACACHE_OK, "the L1 must serve the pin");
        acache_affinity_free(a);
        if (ms > out->max_ms)
            out->max_ms = ms;
        out->n++;
    }
}

Test(fleet_redis, redis_paused_or_down_never_slows_the_hot_path_and_deltas_arrive_later)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = srv.uri;
    o.stats_flush_ms = FLUSH_MS;
    o.instance_id = "gw";
    o.command_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    o.l1_ttl_ms = 600000; /* the hot path is served by the L1 throughout */
    /* Time-based: with tracking, Redis paused or down means the subscription
     * is lost and the L1 bypassed (docs/redis.md "L1 invalidation"). */
    o.l1_invalidation = ACACHE_L1_TTL_ONLY;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK);
    cr_assert_eq(acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_OK);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, "ak", "claude", "m"), ACACHE_OK);
    acache_affinity_free(a);

    lat up = {0}, paused = {0}, down = {0};
    l1_gets(c, 0.5, &up);
    /* Paused: every flush waits its 300 ms timeout in the background. */
    cr_assert_eq(test_redis_pause(&srv), 0);
    l1_gets(c, 1.5, &paused);
    cr_assert_eq(test_redis_resume(&srv), 0);
    sleep_ms(4 * FLUSH_MS);
    /* Down: the flusher's dials are refused; the deltas wait. */
    cr_assert_eq(kill(srv.pid, SIGKILL), 0);
    int wst;
    waitpid(srv.pid, &wst, 0);
    srv.pid = 0;
    l1_gets(c, 1.0, &down);
    fprintf(stderr,
            "fleet_redis: hot path max latency: up %.3f ms (%ld calls), paused %.3f ms "
            "(%ld), down %.3f ms (%ld)\n",
            up.max_ms, up.n, paused.max_ms, paused.n, down.max_ms, down.n);
    /* Far below the 300 ms command timeout the flusher waits on: the flusher
     * never holds anything the hot path needs. (Generous for 2 shared CPUs
     * under sanitizers.) */
    cr_expect_lt(paused.max_ms, 100.0);
    cr_expect_lt(down.max_ms, 100.0);

    /* Back on the same port, empty (no persistence): exactly the deltas
     * counted while it was down arrive (earlier ones went to the old one). */
    cr_assert_eq(test_redis_restart(&srv), 0);
    acache *r = open_fleet("reader", FLUSH_MS, 2000);
    cr_assert_not_null(r);
    double deadline = mono_s() + 10.0;
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    do {
        sleep_ms(FLUSH_MS);
        cr_assert_eq(acache_stats_get(&s, r), ACACHE_OK);
    } while (s.cache_hits < (uint64_t)down.n && mono_s() < deadline);
    sleep_ms(3 * FLUSH_MS);
    cr_assert_eq(acache_stats_get(&s, r), ACACHE_OK);
    cr_expect_eq(s.cache_hits, (uint64_t)down.n, "%" PRIu64 " vs %ld", s.cache_hits,
                 down.n);
    json_t *js = stats_json(r);
    cr_expect_eq(jint(json_object_get(js, "data"), "scheduler_metrics.total_batches"),
                 down.n);
    json_decref(js);
    acache_close(r);
    acache_close(c);
}

/* ---- promtool ---- */

static int run_promtool(const char *text, size_t len, char *out, size_t cap)
{
    char path[] = "/tmp/acache-metrics-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(fleet_redis, promtool_reports_nothing_on_the_new_counters)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        cr_skip_test("promtool not installed (Debian package prometheus)");
    acache *c = open_fleet("prom", FLUSH_MS, 2000);
    cr_assert_not_null(c);
    cr_assert_eq(acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_OK);
    size_t n;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_PROVIDER;
    t.provider_id = "p";
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    acache_buf m = ACACHE_BUF_INIT;
    cr_assert_eq(acache_metrics_text(&m, c), ACACHE_OK);
    cr_expect_eq(metric(m.ptr, "acache_affinity_invalidations_total{cause=\"provider\"}"),
                 1);
    cr_expect_eq(metric(m.ptr, "acache_affinity_invalidations_total{cause=\"single\"}"),
                 0);
    cr_expect_eq(metric(m.ptr, "acache_affinity_created_total"), 1);

    /* The whole text: no remark names one of the new families. */
    char out[8192];
    run_promtool(m.ptr, m.size, out, sizeof out);
    cr_expect_null(strstr(out, "acache_"), "promtool on the new names: %s", out);

    /* The new families alone: exit status 0, nothing said. */
    char *mine = calloc(1, m.size + 1);
    size_t k = 0;
    for (const char *p = m.ptr; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
        if (strstr(p, "acache_") && strstr(p, "acache_") < p + len) {
            memcpy(mine + k, p, len);
            k += len;
        }
        p += len;
    }
    cr_assert_gt(k, 0);
    int st = run_promtool(mine, k, out, sizeof out);
    cr_expect_eq(st, 0, "promtool exit %d: %s", st, out);
    cr_expect_str_empty(out, "%s", out);
    free(mine);
    acache_buf_dispose(&m);
    acache_close(c);
}

/* ---- admin at scale (item 4) ---- */

static void raw_pin(acache *c, const char *ak)
{
    char key[128];
    snprintf(key, sizeof key, "cache_affinity:%s:claude:m", ak);
    double now = th_time();
    acache_record rec = {"p", "e", "k", "claude", "m", now, now + 300, 1};
    acache_buf v = ACACHE_BUF_INIT;
    cr_assert_eq(acache_record_render(&v, &rec), ACACHE_OK);
    acache_store *s = acache_handle_store(c);
    cr_assert_eq(s->set(s, key, v.ptr, v.size, 300), ACACHE_OK);
    acache_buf_dispose(&v);
}

static json_t *list(acache *c, int64_t limit, int64_t offset, json_int_t *total)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&b, c, NULL, limit, offset), ACACHE_OK);
    json_t *o = json_loadb(b.ptr, b.size, 0, NULL);
    acache_buf_dispose(&b);
    cr_assert_not_null(o);
    json_t *data = json_object_get(o, "data");
    *total = json_integer_value(json_object_get(json_object_get(data, "meta"), "total"));
    return o;
}

static int listed(json_t *o, const char *ak)
{
    json_t *items = json_object_get(json_object_get(o, "data"), "items");
    for (size_t i = 0; i < json_array_size(items); i++)
        if (strcmp(json_string_value(
                       json_object_get(json_array_get(items, i), "affinity_key")),
                   ak) == 0)
            return 1;
    return 0;
}

static acache *open_clocked(const char *id)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.stats_flush_ms = FLUSH_MS;
    o.instance_id = id;
    acache *c = th_open(&o); /* the harness's clock */
    /* th_open uses the harness's server: reopen on ours with the same clock. */
    acache_options o2 = c->opts;
    acache_close(c);
    o2.store_uri = srv.uri;
    o2.instance_id = id;
    c = NULL;
    cr_assert_eq(acache_open(&c, &o2), ACACHE_OK);
    return c;
}

Test(fleet_redis, listing_snapshot_serves_next_pages_and_is_dropped_by_an_invalidation)
{
    acache *c = open_clocked("lister");
    char ak[16];
    for (int i = 0; i < 5; i++) {
        snprintf(ak, sizeof ak, "ak%d", i);
        cr_assert_eq(
            acache__affinity_set(NULL, c, ak, "claude", "m", "p", "e", "k", 1, 0),
            ACACHE_OK);
    }
    json_int_t total;
    json_decref(list(c, 2, 0, &total));
    cr_assert_eq(total, 5);
    /* Another writer adds a pin: the next page and a page-size change are cut
     * from the snapshot (no rescan), so it is not there yet. */
    raw_pin(c, "other");
    json_t *o = list(c, 2, 2, &total);
    cr_expect_eq(total, 5, "the next page must come from the snapshot");
    json_decref(o);
    o = list(c, 10, 0, &total);
    cr_expect_eq(total, 5);
    cr_expect(!listed(o, "other"));
    json_decref(o);
    /* An invalidation through this handle drops it. */
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_API_KEY;
    t.affinity_key = "ak0";
    size_t n;
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    o = list(c, 10, 0, &total);
    cr_expect_eq(total, 5, "5 - ak0 + other");
    cr_expect(listed(o, "other"));
    cr_expect(!listed(o, "ak0"));
    json_decref(o);
    /* And it ages: a raw write shows after the snapshot's 5 s. */
    raw_pin(c, "later");
    json_decref(list(c, 10, 0, &total));
    cr_expect_eq(total, 5);
    th_advance(5.5);
    sleep_ms(10);
    /* The handle clock moved; pins live 300 s, so all are still there. */
    json_decref(list(c, 10, 0, &total));
    cr_expect_eq(total, 6, "the snapshot must not outlive 5 s of the handle's clock");
    acache_close(c);
}

Test(fleet_redis, stats_active_count_is_cached_with_a_bounded_age)
{
    acache *c = open_fleet("counter", FLUSH_MS, 2000);
    cr_assert_not_null(c);
    for (int i = 0; i < 3; i++) {
        char ak[16];
        snprintf(ak, sizeof ak, "ak%d", i);
        cr_assert_eq(
            acache__affinity_set(NULL, c, ak, "claude", "m", "p", "e", "k", 1, 0),
            ACACHE_OK);
    }
    json_t *o = stats_json(c);
    json_t *as = json_object_get(json_object_get(o, "data"), "affinity_stats");
    cr_expect_eq(jint(as, "active_affinities"), 3, "a write through the handle recounts");
    json_decref(o);
    raw_pin(c, "x1");
    raw_pin(c, "x2");
    acache_stats st = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&st, c), ACACHE_OK);
    cr_expect_eq(st.active_affinities, 5, "acache_stats_get counts now");
    /* The JSON serves the cached count until it is ACACHE__ACTIVE_MAX_AGE_S
     * old; the new pins show within that age. */
    double t0 = mono_s(), seen5 = -1, max_age = 0, max_ms = 0;
    while (mono_s() - t0 < ACACHE__ACTIVE_MAX_AGE_S + 1.0) {
        double t = mono_s();
        o = stats_json(c);
        double ms = (mono_s() - t) * 1e3;
        if (ms > max_ms)
            max_ms = ms;
        as = json_object_get(json_object_get(o, "data"), "affinity_stats");
        double age = json_number_value(
            json_object_get(json_object_get(as, "fleet"), "active_affinities_age_s"));
        if (age > max_age)
            max_age = age;
        if (jint(as, "active_affinities") == 5 && seen5 < 0)
            seen5 = mono_s() - t0;
        json_decref(o);
        sleep_ms(100);
    }
    fprintf(stderr,
            "fleet_redis: cached count: new pins seen after %.2f s, max age %.2f s, "
            "slowest /stats %.2f ms\n",
            seen5, max_age, max_ms);
    cr_expect_geq(seen5, 0, "the count never caught up");
    cr_expect_leq(seen5, ACACHE__ACTIVE_MAX_AGE_S + 0.3);
    cr_expect_leq(max_age, ACACHE__ACTIVE_MAX_AGE_S + 0.01);
    acache_close(c);
}
