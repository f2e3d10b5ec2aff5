/* acache-bench: libaethercache against raw hiredis floors measured in the
 * same run, on a private redis-server. See bench/README.md. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/store.h"
#include "bench.h"
#include "core/core.h"              /* raw typed list and fill: private since 0.2 */
#include "redis_server.h"           /* tests/support: private servers per topology */
#include "store/redis/redis_priv.h" /* rconn: the floors use the library's transport */

typedef struct bench_opts {
    size_t n;
    const char *redis_uri; /* NULL: start our own */
    int runs;              /* runs per figure (median) */
    long rt_iters;         /* iterations of round-trip ops */
    long local_iters;      /* iterations of in-process ops */
    int pg, mapping;
    const char *only;     /* NULL: every figure */
    size_t pg_pages;      /* 0: all */
    const char *topology; /* --topology: single,tls,cluster (issue 10) */
} bench_opts;

static const char *g_uri; /* the Redis under test */

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench: %s: %s: %s\n", what, acache_strerror(rc),
            acache_last_error());
    exit(1);
}

static acache *open_handle(const char *uri, int l1)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.command_timeout_ms = 600000; /* a 1M-pin delete script may run long */
    if (!l1)
        o.l1_ttl_ms = -1;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    if (rc)
        die("acache_open", rc);
    return c;
}

static redisReply *cmd(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(r, fmt, ap);
    va_end(ap);
    if (!rep) {
        fprintf(stderr, "bench: redis: %s\n", r->errstr);
        exit(1);
    }
    return rep;
}

/* ---- list all ---- */

/* The floor: what any listing must at least do. SCAN pages, each followed by
 * an MGET of its keys, the MGET of page k pipelined with the SCAN of page
 * k+1 (one round trip per page), no parsing. Returns values seen. */
long raw_scan_mget(redisContext *r, const char *pattern, uint64_t *bytes)
{
    static const char **argv_mget;
    static size_t *lens_mget, cap;
    const char *scan_argv[] = {"SCAN", "0", "MATCH", pattern, "COUNT", "1000"};
    long n = 0;
    *bytes = 0;
    redisReply *page = NULL, *next = NULL, *vals = NULL;
    redisAppendCommandArgv(r, 6, scan_argv, NULL);
    if (redisGetReply(r, (void **)&page) != REDIS_OK)
        return -1;
    for (;;) {
        const char *cursor = page->element[0]->str;
        int done = strcmp(cursor, "0") == 0;
        redisReply *ks = page->element[1];
        if (ks->elements + 1 > cap) {
            /* COUNT is a hint: a page may hold more keys. */
            cap = 2 * (ks->elements + 1);
            argv_mget = realloc(argv_mget, cap * sizeof *argv_mget);
            lens_mget = realloc(lens_mget, cap * sizeof *lens_mget);
            if (!argv_mget || !lens_mget)
                return -1;
        }
        if (ks->elements) {
            argv_mget[0] = "MGET";
            lens_mget[0] = 4;
            for (size_t i = 0; i < ks->elements; i++) {
                argv_mget[i + 1] = ks->element[i]->str;
                lens_mget[i + 1] = ks->element[i]->len;
            }
            redisAppendCommandArgv(r, (int)ks->elements + 1, argv_mget, lens_mget);
        }
        if (!done) {
            scan_argv[1] = cursor;
            redisAppendCommandArgv(r, 6, scan_argv, NULL);
        }
        if (ks->elements && redisGetReply(r, (void **)&vals) != REDIS_OK)
            return -1;
        if (!done && redisGetReply(r, (void **)&next) != REDIS_OK)
            return -1;
        if (vals) {
            for (size_t i = 0; i < vals->elements; i++)
                if (vals->element[i]->type == REDIS_REPLY_STRING) {
                    n++;
                    *bytes += vals->element[i]->len;
                }
            freeReplyObject(vals);
            vals = NULL;
        }
        freeReplyObject(page);
        page = next;
        next = NULL;
        if (done)
            break;
    }
    return n;
}

/* Prototype of a listing that overlaps the client's parsing with the
 * server's work (a proposal for lib/store/redis.c, not a floor): the MGET of
 * page k+1 and the SCAN for page k+2 are flushed before page k's values are
 * parsed with acache_record_parse, so redis-server and this process work at
 * the same time. Returns values parsed, or -1. */
typedef struct {
    const char **argv;
    size_t *lens, cap;
} argv_buf;

static int append_mget(redisContext *r, argv_buf *a, const redisReply *ks)
{
    if (ks->elements + 1 > a->cap) {
        a->cap = 2 * (ks->elements + 1);
        a->argv = realloc(a->argv, a->cap * sizeof *a->argv);
        a->lens = realloc(a->lens, a->cap * sizeof *a->lens);
        if (!a->argv || !a->lens)
            return -1;
    }
    a->argv[0] = "MGET";
    a->lens[0] = 4;
    for (size_t i = 0; i < ks->elements; i++) {
        a->argv[i + 1] = ks->element[i]->str;
        a->lens[i + 1] = ks->element[i]->len;
    }
    return redisAppendCommandArgv(r, (int)ks->elements + 1, a->argv, a->lens) == REDIS_OK
               ? 0
               : -1;
}

static void count_rec(const acache_record *rec, void *payload)
{
    (void)rec;
    ++*(long *)payload;
}

static long overlap_list(redisContext *r)
{
    const char *scan_argv[] = {"SCAN", "0", "MATCH", "cache_affinity:*", "COUNT", "1000"};
    argv_buf a = {0};
    long parsed = 0;
    redisReply *page = NULL, *vals = NULL, *next = NULL, *pending_vals = NULL;
    redisAppendCommandArgv(r, 6, scan_argv, NULL);
    if (redisGetReply(r, (void **)&page) != REDIS_OK)
        return -1;
    for (;;) {
        int done = strcmp(page->element[0]->str, "0") == 0;
        redisReply *ks = page->element[1];
        int sent_mget = 0, sent_scan = 0;
        if (ks->elements) {
            if (append_mget(r, &a, ks))
                return -1;
            sent_mget = 1;
        }
        if (!done) {
            scan_argv[1] = page->element[0]->str;
            redisAppendCommandArgv(r, 6, scan_argv, NULL);
            sent_scan = 1;
        }
        int wdone = 0;
        while (!wdone)
            if (redisBufferWrite(r, &wdone) != REDIS_OK)
                return -1;
        /* The server works on page k+1 while we parse page k. */
        if (pending_vals) {
            for (size_t i = 0; i < pending_vals->elements; i++) {
                redisReply *v = pending_vals->element[i];
                if (v->type == REDIS_REPLY_STRING)
                    acache_record_parse(v->str, v->len, count_rec, &parsed);
            }
            freeReplyObject(pending_vals);
            pending_vals = NULL;
        }
        if (sent_mget && redisGetReply(r, (void **)&vals) != REDIS_OK)
            return -1;
        if (sent_scan && redisGetReply(r, (void **)&next) != REDIS_OK)
            return -1;
        pending_vals = vals;
        vals = NULL;
        freeReplyObject(page);
        page = next;
        next = NULL;
        if (!sent_scan)
            break;
    }
    if (pending_vals) {
        for (size_t i = 0; i < pending_vals->elements; i++) {
            redisReply *v = pending_vals->element[i];
            if (v->type == REDIS_REPLY_STRING)
                acache_record_parse(v->str, v->len, count_rec, &parsed);
        }
        freeReplyObject(pending_vals);
    }
    free(a.argv);
    free(a.lens);
    return parsed;
}

static int count_cb(const acache_affinity *a, void *payload)
{
    (void)a;
    ++*(size_t *)payload;
    return 0;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void parse_sink(const acache_record *rec, void *payload)
{
    (void)rec;
    (void)payload;
}

static void fig_list(acache *c, redisContext *r, const bench_data *d, int runs)
{
    double t_lib[16], t_each[16], t_floor[16], c_lib[16], c_floor[16];
    size_t got = 0, each = 0;
    long raw = 0;
    for (int k = 0; k < runs; k++) {
        uint64_t bytes;
        double c0 = cpu_now();
        double t0 = bench_now();
        raw = raw_scan_mget(r, "cache_affinity:*", &bytes);
        t_floor[k] = bench_now() - t0;
        c_floor[k] = cpu_now() - c0;

        acache__affinity_list *l = NULL;
        c0 = cpu_now();
        t0 = bench_now();
        int rc = acache__affinity_list_fetch(&l, c, NULL);
        if (rc)
            die("acache__affinity_list_fetch", rc);
        got = acache__affinity_list_count(l);
        acache__affinity_list_free(l);
        t_lib[k] = bench_now() - t0;
        c_lib[k] = cpu_now() - c0;

        each = 0;
        t0 = bench_now();
        if ((rc = acache_affinity_foreach(c, NULL, count_cb, &each)))
            die("acache_affinity_foreach", rc);
        t_each[k] = bench_now() - t0;
    }
    if (got != d->n || each != d->n || raw != (long)d->n)
        fprintf(stderr, "bench: WARNING: listed %zu / %zu / raw %ld of %zu pins\n", got,
                each, raw, d->n);
    double lib = bench_median(t_lib, runs), fl = bench_median(t_floor, runs);
    double ea = bench_median(t_each, runs);
    report_line("list_all (list_fetch)", lib, "s", fl, 1.5, NULL);
    report_line("list_all (foreach)", ea, "s", fl, 1.5, NULL);
    double cl = bench_median(c_lib, runs), cf = bench_median(c_floor, runs);
    printf(
        "%-22s %12.3f s   floor %.3f s  (CPU time of this process only; the rest of the "
        "wall time is redis-server and the network)\n",
        "  client CPU", cl, cf);
    result_num("list_client_cpu_s", cl);
    result_num("list_floor_client_cpu_s", cf);
    result_num("list_all_s", lib);
    result_num("list_floor_s", fl);
    result_num("list_ratio", lib / fl);
    result_num("list_foreach_s", ea);
    result_num("list_foreach_ratio", ea / fl);
    result_int("list_count", (long long)got);

    /* Where a listing's client time goes: parsing one value (jansson) and
     * building one record object, per pin. */
    char key[160], val[512];
    size_t kl, vl = bench_pin(d, 1, key, sizeof key, &kl, val, sizeof val);
    long iters = 100000;
    double t0 = bench_now();
    for (long i = 0; i < iters; i++)
        if (acache_record_parse(val, vl, parse_sink, NULL))
            die("acache_record_parse", ACACHE_ERROR);
    double parse_ns = (bench_now() - t0) / (double)iters * 1e9;
    printf(
        "%-22s %11.1f ns   per value (acache_record_parse: strict fast path); x %zu pins "
        "= %.3f s\n",
        "  parse one value", parse_ns, d->n, parse_ns * (double)d->n * 1e-9);
    result_num("parse_value_ns", parse_ns);
    t0 = bench_now();
    for (long i = 0; i < iters; i++)
        if (acache__record_parse_jansson(val, vl, parse_sink, NULL))
            die("acache__record_parse_jansson", ACACHE_ERROR);
    double jansson_ns = (bench_now() - t0) / (double)iters * 1e9;
    printf("%-22s %11.1f ns   per value (jansson alone, the fallback)  fast path %.1fx "
           "faster\n",
           "  parse (jansson)", jansson_ns, jansson_ns / parse_ns);
    result_num("parse_value_jansson_ns", jansson_ns);

    double t_ov[16];
    long ov = 0;
    for (int k = 0; k < runs; k++) {
        t0 = bench_now();
        ov = overlap_list(r);
        t_ov[k] = bench_now() - t0;
    }
    if (ov != (long)d->n)
        fprintf(stderr, "bench: WARNING: overlap prototype parsed %ld of %zu\n", ov,
                d->n);
    double ovs = bench_median(t_ov, runs);
    report_line("  overlap prototype", ovs, "s", fl, -1,
                "(info: raw SCAN+MGET, next page in flight while this one is parsed)");
    result_num("list_overlap_prototype_s", ovs);
}

/* ---- memory while listing ---- */

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = atol(line + fl + 1);
            break;
        }
    fclose(f);
    return v;
}

/* VmHWM reset to the current RSS (Linux >= 4.0); 0 on success. */
static int reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

typedef struct {
    long baseline_kb, peak_kb;
    const char *method;
} rss_probe;

static void rss_begin(rss_probe *p)
{
    malloc_trim(
        0); /* hand back what earlier figures freed, so it is not reused silently */
    p->baseline_kb = status_kb("VmRSS");
    if (reset_hwm() == 0) {
        p->method = "VmHWM after reset via /proc/self/clear_refs";
    } else {
        p->method = "ru_maxrss (lifetime peak: growth only if above earlier peaks)";
    }
}

static void rss_end(rss_probe *p)
{
    long hwm = status_kb("VmHWM");
    if (strncmp(p->method, "VmHWM", 5) == 0 && hwm > 0) {
        p->peak_kb = hwm;
    } else {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        p->peak_kb = ru.ru_maxrss;
    }
}

static void fig_memory(acache *c, const bench_data *d)
{
    rss_probe p;
    rss_begin(&p);
    acache__affinity_list *l = NULL;
    int rc = acache__affinity_list_fetch(&l, c, NULL);
    if (rc)
        die("acache__affinity_list_fetch", rc);
    rss_end(&p);
    acache__affinity_list_free(l);
    double growth = (double)(p.peak_kb - p.baseline_kb) * 1024.0;
    double ratio = growth / (double)d->value_bytes;

    rss_probe q;
    rss_begin(&q);
    size_t each = 0;
    if ((rc = acache_affinity_foreach(c, NULL, count_cb, &each)))
        die("acache_affinity_foreach", rc);
    rss_end(&q);
    double growth_each = (double)(q.peak_kb - q.baseline_kb) * 1024.0;

    printf("memory: RSS growth while listing = peak VmHWM during the call minus VmRSS "
           "just before it\n        (malloc_trim first; HWM reset with "
           "/proc/self/clear_refs "
           "\"5\"; method: %s)\n",
           p.method);
    printf("memory: values %.1f MB (sum of %zu value lengths); baseline RSS %.1f MB\n",
           (double)d->value_bytes / 1e6, d->n, (double)p.baseline_kb / 1024.0);
    char note[96];
    snprintf(note, sizeof note, "vs raw values %.1f MB", (double)d->value_bytes / 1e6);
    printf("%-22s %11.1f MB   %-20s ratio %.2f  (target <= 2)  %s  %s\n",
           "rss_growth list_fetch", growth / 1e6, "", ratio, ratio <= 2.0 ? "OK" : "MISS",
           note);
    printf("%-22s %11.1f MB   %-20s ratio %.2f  (streaming, info)\n",
           "rss_growth foreach", growth_each / 1e6, "",
           growth_each / (double)d->value_bytes);
    result_str("rss_method", p.method);
    result_int("value_bytes", (long long)d->value_bytes);
    result_int("rss_baseline_bytes", (long long)p.baseline_kb * 1024);
    result_int("rss_peak_bytes", (long long)p.peak_kb * 1024);
    result_int("rss_growth_bytes", (long long)growth);
    result_num("rss_ratio", ratio);
    result_int("rss_growth_foreach_bytes", (long long)growth_each);
}

/* ---- SLOWLOG around a destructive figure ---- */

typedef struct {
    char slower_than[32], max_len[32];
    long long max_us;
    char max_cmd[64];
    long long entries;
} slowlog_probe;

static void config_get(redisContext *r, const char *name, char *out, size_t cap)
{
    redisReply *rep = cmd(r, "CONFIG GET %s", name);
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
        snprintf(out, cap, "%s", rep->element[1]->str);
    freeReplyObject(rep);
}

static void slowlog_begin(redisContext *r, slowlog_probe *s)
{
    memset(s, 0, sizeof *s);
    config_get(r, "slowlog-log-slower-than", s->slower_than, sizeof s->slower_than);
    config_get(r, "slowlog-max-len", s->max_len, sizeof s->max_len);
    freeReplyObject(cmd(r, "CONFIG SET slowlog-log-slower-than 0"));
    freeReplyObject(cmd(r, "CONFIG SET slowlog-max-len 1000000"));
    freeReplyObject(cmd(r, "SLOWLOG RESET"));
}

static void slowlog_end(redisContext *r, slowlog_probe *s)
{
    redisReply *rep = cmd(r, "SLOWLOG GET -1");
    if (rep->type == REDIS_REPLY_ARRAY) {
        s->entries = (long long)rep->elements;
        for (size_t i = 0; i < rep->elements; i++) {
            redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
                continue;
            long long us = e->element[2]->integer;
            redisReply *args = e->element[3];
            const char *name = args->elements ? args->element[0]->str : "?";
            if (strcmp(name, "SLOWLOG") == 0 || strcmp(name, "CONFIG") == 0)
                continue;
            if (us > s->max_us) {
                s->max_us = us;
                snprintf(s->max_cmd, sizeof s->max_cmd, "%s%s%s", name,
                         args->elements > 1 ? " " : "",
                         args->elements > 1 && args->element[1]->len < 40
                             ? args->element[1]->str
                             : "");
                if (strcmp(name, "EVALSHA") == 0 || strcmp(name, "UNLINK") == 0 ||
                    strcmp(name, "MGET") == 0)
                    snprintf(s->max_cmd, sizeof s->max_cmd, "%s (%zu args)", name,
                             args->elements);
            }
        }
    }
    freeReplyObject(rep);
    freeReplyObject(cmd(r, "SLOWLOG RESET"));
    if (s->slower_than[0])
        freeReplyObject(cmd(r, "CONFIG SET slowlog-log-slower-than %s", s->slower_than));
    if (s->max_len[0])
        freeReplyObject(cmd(r, "CONFIG SET slowlog-max-len %s", s->max_len));
}

/* ---- invalidate by provider, clear all ---- */

static void reload(redisContext *r, const bench_data *d, size_t every)
{
    if (bench_load(r, d, every) < 0) {
        fprintf(stderr, "bench: reload failed\n");
        exit(1);
    }
}

/* Info floors for the destructive figures: the least any client can do.
 * want_vals: SCAN + MGET + substring filter on provider_id + UNLINK matches;
 * else SCAN + UNLINK of every key. Returns keys removed. */
static long raw_delete(redisContext *r, const char *provider_id)
{
    char needle[128];
    size_t nl = 0;
    if (provider_id)
        nl = (size_t)snprintf(needle, sizeof needle, "\"provider_id\": \"%s\"",
                              provider_id);
    const char **argv = NULL;
    size_t *lens = NULL, cap = 0;
    long removed = 0;
    char cursor[32] = "0";
    do {
        redisReply *pg = cmd(r, "SCAN %s MATCH cache_affinity:* COUNT 1000", cursor);
        snprintf(cursor, sizeof cursor, "%s", pg->element[0]->str);
        redisReply *ks = pg->element[1];
        if (ks->elements + 1 > cap) {
            cap = 2 * (ks->elements + 1);
            argv = realloc(argv, cap * sizeof *argv);
            lens = realloc(lens, cap * sizeof *lens);
        }
        redisReply *vals = NULL;
        if (provider_id && ks->elements) {
            argv[0] = "MGET";
            lens[0] = 4;
            for (size_t i = 0; i < ks->elements; i++) {
                argv[i + 1] = ks->element[i]->str;
                lens[i + 1] = ks->element[i]->len;
            }
            vals = redisCommandArgv(r, (int)ks->elements + 1, argv, lens);
        }
        size_t m = 0;
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < ks->elements; i++) {
            if (vals) {
                redisReply *v = vals->element[i];
                if (v->type != REDIS_REPLY_STRING || !memmem(v->str, v->len, needle, nl))
                    continue;
            }
            argv[m + 1] = ks->element[i]->str;
            lens[m + 1] = ks->element[i]->len;
            m++;
        }
        if (m) {
            redisReply *u = redisCommandArgv(r, (int)m + 1, argv, lens);
            if (u && u->type == REDIS_REPLY_INTEGER)
                removed += u->integer;
            if (u)
                freeReplyObject(u);
        }
        if (vals)
            freeReplyObject(vals);
        freeReplyObject(pg);
    } while (strcmp(cursor, "0") != 0);
    free(argv);
    free(lens);
    return removed;
}

/* The invalidate-by-provider floor, as smart as the library: SCAN pipelined
 * one page ahead with the MGET of the page it named, the substring filter on
 * the raw bytes, and each page's UNLINK riding in the next flush (its reply
 * read with the next page's). Not atomic per pin. Returns keys removed. */
static long raw_invalidate_pipelined(redisContext *r, const char *provider_id)
{
    char needle[128];
    size_t nl =
        (size_t)snprintf(needle, sizeof needle, "\"provider_id\": \"%s\"", provider_id);
    const char *scan_argv[] = {"SCAN", "0", "MATCH", "cache_affinity:*", "COUNT", "1000"};
    const char **argv = NULL;
    size_t *lens = NULL, cap = 0;
    long removed = 0;
    int unlink_owed = 0, have_scan = 1;
    redisAppendCommandArgv(r, 6, scan_argv, NULL);
    redisReply *pg = NULL;
    if (redisGetReply(r, (void **)&pg) != REDIS_OK || pg->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "bench: raw SCAN failed\n");
        exit(1);
    }
    while (pg) {
        redisReply *ks = pg->element[1];
        if (ks->elements + 1 > cap) {
            cap = 2 * (ks->elements + 1);
            argv = realloc(argv, cap * sizeof *argv);
            lens = realloc(lens, cap * sizeof *lens);
        }
        int mget = ks->elements > 0;
        if (mget) {
            argv[0] = "MGET";
            lens[0] = 4;
            for (size_t i = 0; i < ks->elements; i++) {
                argv[i + 1] = ks->element[i]->str;
                lens[i + 1] = ks->element[i]->len;
            }
            redisAppendCommandArgv(r, (int)ks->elements + 1, argv, lens);
        }
        have_scan = strcmp(pg->element[0]->str, "0") != 0;
        if (have_scan) {
            scan_argv[1] = pg->element[0]->str;
            redisAppendCommandArgv(r, 6, scan_argv, NULL);
        }
        /* the previous page's UNLINK reply comes first */
        redisReply *u = NULL, *vals = NULL, *next = NULL;
        if (unlink_owed) {
            if (redisGetReply(r, (void **)&u) != REDIS_OK) {
                fprintf(stderr, "bench: raw UNLINK failed\n");
                exit(1);
            }
            if (u->type == REDIS_REPLY_INTEGER)
                removed += u->integer;
            freeReplyObject(u);
            unlink_owed = 0;
        }
        if ((mget && redisGetReply(r, (void **)&vals) != REDIS_OK) ||
            (have_scan && redisGetReply(r, (void **)&next) != REDIS_OK)) {
            fprintf(stderr, "bench: raw MGET/SCAN failed\n");
            exit(1);
        }
        size_t m = 0;
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; vals && i < ks->elements; i++) {
            redisReply *v = vals->element[i];
            if (v->type != REDIS_REPLY_STRING || !memmem(v->str, v->len, needle, nl))
                continue;
            argv[m + 1] = ks->element[i]->str;
            lens[m + 1] = ks->element[i]->len;
            m++;
        }
        if (m) {
            redisAppendCommandArgv(r, (int)m + 1, argv, lens);
            unlink_owed = 1;
        }
        if (vals)
            freeReplyObject(vals);
        freeReplyObject(pg);
        pg = next;
        if (!pg && unlink_owed) {
            redisReply *last = NULL;
            if (redisGetReply(r, (void **)&last) != REDIS_OK) {
                fprintf(stderr, "bench: raw UNLINK failed\n");
                exit(1);
            }
            if (last->type == REDIS_REPLY_INTEGER)
                removed += last->integer;
            freeReplyObject(last);
        }
    }
    free(argv);
    free(lens);
    return removed;
}

static double redis_cpu_s(redisContext *r);

/* CPU seconds (user + sys) of this process: on a shared machine the wall
 * times move with the load, the CPU spent much less. */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fig_invalidate(acache *c, redisContext *r, const bench_data *d, int runs)
{
    double t[16], cl[16], sv[16];
    size_t removed = 0;
    slowlog_probe sl;
    long long max_us = 0;
    char max_cmd[64] = "";
    for (int k = 0; k < runs; k++) {
        slowlog_begin(r, &sl);
        double s0 = redis_cpu_s(r), c0 = self_cpu_s();
        double t0 = bench_now();
        int rc = acache__affinity_invalidate_provider(&removed, c, d->target_provider);
        t[k] = bench_now() - t0;
        cl[k] = self_cpu_s() - c0;
        sv[k] = redis_cpu_s(r) - s0;
        slowlog_end(r, &sl);
        if (rc)
            die("acache__affinity_invalidate_provider", rc);
        if (sl.max_us > max_us) {
            max_us = sl.max_us;
            snprintf(max_cmd, sizeof max_cmd, "%s", sl.max_cmd);
        }
        if (removed != d->target_pins)
            fprintf(stderr, "bench: WARNING: invalidate removed %zu, expected %zu\n",
                    removed, d->target_pins);
        reload(r, d, 10); /* the target provider's pins are exactly i % 10 == 0 */
    }
    double v = bench_median(t, runs), vc = bench_median(cl, runs),
           vs = bench_median(sv, runs);
    for (int k = 0; k < runs; k++) {
        double s0 = redis_cpu_s(r), c0 = self_cpu_s();
        double t0 = bench_now();
        long got = raw_invalidate_pipelined(r, d->target_provider);
        t[k] = bench_now() - t0;
        cl[k] = self_cpu_s() - c0;
        sv[k] = redis_cpu_s(r) - s0;
        if (got != (long)d->target_pins)
            fprintf(stderr, "bench: WARNING: raw floor removed %ld, expected %zu\n", got,
                    d->target_pins);
        reload(r, d, 10);
    }
    double fl = bench_median(t, runs), flc = bench_median(cl, runs),
           fls = bench_median(sv, runs);
    /* Aether: 19.4 s at 100k (KEYS + GET/DEL per key: linear in N); issue 12
     * measured 31.5 s and asks for <= 0.32 s at 100k (scaled linearly here)
     * while staying <= 1.1x the pipelined raw floor of the same run. */
    double aether = 19.4 * (double)d->n / 100000.0;
    double target = 0.32 * (double)d->n / 100000.0;
    char note[160];
    snprintf(note, sizeof note, "removed %zu; Aether ~%.1f s -> %.0fx faster", removed,
             aether, aether / v);
    report_line("invalidate_provider", v, "s", -1, target, note);
    report_line("  raw floor", fl, "s", -1, -1,
                "pipelined SCAN+MGET+substring filter+UNLINK, not atomic per pin");
    printf("%-22s %14.2f  (target <= 1.1)  %s\n", "  ratio to raw", v / fl,
           v / fl <= 1.1 ? "OK" : "MISS");
    printf("%-22s %10.3f s   floor %.3f s  (CPU, user+sys: this process / redis-server "
           "%.3f / %.3f s, floor %.3f / %.3f s)\n",
           "  cpu client+server", vc + vs, flc + fls, vc, vs, flc, fls);
    printf("%-22s %11lld us   %s  (%s)\n", "  slowlog max", max_us,
           max_us < 10000 ? "OK (< 10 ms)" : "MISS (>= 10 ms)", max_cmd);
    result_num("invalidate_provider_s", v);
    result_num("invalidate_raw_floor_s", fl);
    result_num("invalidate_raw_ratio", v / fl);
    result_num("invalidate_cpu_client_s", vc);
    result_num("invalidate_cpu_server_s", vs);
    result_num("invalidate_floor_cpu_client_s", flc);
    result_num("invalidate_floor_cpu_server_s", fls);
    result_int("invalidate_provider_removed", (long long)removed);
    result_num("invalidate_aether_s", aether);
    result_num("invalidate_speedup", aether / v);
    result_int("invalidate_slowlog_max_us", max_us);
}

static void fig_clear(acache *c, redisContext *r, const bench_data *d, int runs)
{
    double t[16];
    size_t removed = 0;
    long long max_us = 0, entries = 0;
    char max_cmd[64] = "";
    for (int k = 0; k < runs; k++) {
        slowlog_probe sl;
        slowlog_begin(r, &sl);
        double t0 = bench_now();
        int rc = acache__affinity_clear_all(&removed, c);
        t[k] = bench_now() - t0;
        slowlog_end(r, &sl);
        if (rc)
            die("acache__affinity_clear_all", rc);
        if (sl.max_us > max_us) {
            max_us = sl.max_us;
            snprintf(max_cmd, sizeof max_cmd, "%s", sl.max_cmd);
        }
        entries = sl.entries;
        if (removed != d->n)
            fprintf(stderr, "bench: WARNING: clear_all removed %zu of %zu\n", removed,
                    d->n);
        reload(r, d, 1);
    }
    double v = bench_median(t, runs);
    for (int k = 0; k < runs; k++) {
        double t0 = bench_now();
        raw_delete(r, NULL);
        t[k] = bench_now() - t0;
        reload(r, d, 1);
    }
    double fl = bench_median(t, runs);
    double aether = 0.57 * (double)d->n / 100000.0;
    char note[128];
    snprintf(note, sizeof note, "removed %zu; Aether %.2f s%s", removed, aether,
             d->n != 100000 ? " (0.57 s at 100k, scaled)" : "");
    report_line("clear_all", v, "s", -1, -1, note);
    report_line("  raw floor (info)", fl, "s", -1, -1, "SCAN+UNLINK");
    printf("%-22s %14.2f\n", "  ratio to raw (info)", v / fl);
    printf("%-22s %11lld us   %s  (%s; %lld commands logged)\n", "  slowlog max", max_us,
           max_us < 10000 ? "OK (target < 10 ms)" : "MISS (target < 10 ms)", max_cmd,
           entries);
    result_num("clear_all_s", v);
    result_num("clear_raw_floor_s", fl);
    result_int("clear_all_removed", (long long)removed);
    result_num("clear_aether_s", aether);
    result_int("clear_slowlog_max_us", max_us);
    result_str("clear_slowlog_max_cmd", max_cmd);
}

/* ---- point operations ---- */

typedef struct {
    char ak[160], fmt[160], model[160], prov[160], ep[160], key[160];
    char storage_key[200];
} pin_ref;

static void pin_of(acache *c, const bench_data *d, size_t i, pin_ref *p)
{
    char key[160], val[512];
    size_t kl;
    bench_pin(d, i, key, sizeof key, &kl, val, sizeof val);
    snprintf(p->storage_key, sizeof p->storage_key, "%s", key);
    /* cache_affinity:{ak}:{fmt}:{model} */
    char *s = key + strlen("cache_affinity:");
    char *c1 = strchr(s, ':'), *c2 = strchr(c1 + 1, ':');
    *c1 = *c2 = '\0';
    snprintf(p->ak, sizeof p->ak, "%s", s);
    snprintf(p->fmt, sizeof p->fmt, "%s", c1 + 1);
    snprintf(p->model, sizeof p->model, "%s", c2 + 1);
    acache_affinity *a = NULL;
    int rc = acache_affinity_get(&a, c, p->ak, p->fmt, p->model);
    if (rc)
        die("acache_affinity_get (setup)", rc);
    snprintf(p->prov, sizeof p->prov, "%s", acache_affinity_provider_id(a));
    snprintf(p->ep, sizeof p->ep, "%s", acache_affinity_endpoint_id(a));
    snprintf(p->key, sizeof p->key, "%s", acache_affinity_key_id(a));
    acache_affinity_free(a);
}

static double time_get(acache *c, const pin_ref *p, long iters)
{
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, p->ak, p->fmt, p->model);
        if (rc)
            die("acache_affinity_get", rc);
        acache_affinity_free(a);
    }
    return (bench_now() - t0) / (double)iters * 1e9;
}

static double time_touch(acache *c, const pin_ref *p, long iters)
{
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = p->ak;
    t.api_format = p->fmt;
    t.model_name = p->model;
    t.provider_id = p->prov;
    t.endpoint_id = p->ep;
    t.key_id = p->key;
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        int rc = acache_affinity_touch(NULL, c, &t);
        if (rc)
            die("acache_affinity_touch", rc);
    }
    return (bench_now() - t0) / (double)iters * 1e9;
}

static double time_raw_get(redisContext *r, const char *key, long iters)
{
    const char *argv[] = {"GET", key};
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        redisReply *rep = redisCommandArgv(r, 2, argv, NULL);
        if (!rep || rep->type != REDIS_REPLY_STRING) {
            fprintf(stderr, "bench: raw GET failed\n");
            exit(1);
        }
        freeReplyObject(rep);
    }
    return (bench_now() - t0) / (double)iters * 1e9;
}

static double time_raw_evalsha(redisContext *r, const char *sha, long iters)
{
    const char *argv[] = {"EVALSHA", sha, "0"};
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        redisReply *rep = redisCommandArgv(r, 3, argv, NULL);
        if (!rep || rep->type != REDIS_REPLY_INTEGER) {
            fprintf(stderr, "bench: raw EVALSHA failed\n");
            exit(1);
        }
        freeReplyObject(rep);
    }
    return (bench_now() - t0) / (double)iters * 1e9;
}

/* Server-side cost of one command, from INFO commandstats (reset first):
 * usec_per_call of `name` ("get", "evalsha"), or -1. */
static double server_usec_per_call(redisContext *r, const char *name)
{
    redisReply *rep = cmd(r, "INFO commandstats");
    double v = -1;
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:", name);
    const char *p = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, needle) : NULL;
    if (p && (p = strstr(p, "usec_per_call=")))
        v = atof(p + strlen("usec_per_call="));
    freeReplyObject(rep);
    return v;
}

/* Redis server time per touch over `n` touches (INFO commandstats, reset
 * first): EVALSHA time plus the SETs sent outside a script (the swap path's
 * SET ... GET); a script's own SET is already inside its EVALSHA time. *evals
 * receives the EVALSHA calls (the swap path's repairs). */
static double server_touch_usec(redisContext *r, long n, long *evals)
{
    redisReply *rep = cmd(r, "INFO commandstats");
    double usec[2] = {0, 0};
    long calls[2] = {0, 0};
    const char *names[2] = {"cmdstat_evalsha:", "cmdstat_set:"};
    for (int i = 0; i < 2; i++) {
        const char *q =
            rep->type == REDIS_REPLY_STRING ? strstr(rep->str, names[i]) : NULL;
        if (q &&
            sscanf(q + strlen(names[i]), "calls=%ld,usec=%lf", &calls[i], &usec[i]) != 2)
            calls[i] = 0, usec[i] = 0;
    }
    freeReplyObject(rep);
    double outside = calls[1] > calls[0] && calls[1] > 0
                         ? (double)(calls[1] - calls[0]) * usec[1] / (double)calls[1]
                         : 0;
    *evals = calls[0];
    return (usec[0] + outside) / (double)n;
}

static void fig_point_redis(acache *c_l1, acache *c_nol1, redisContext *r,
                            const bench_data *d, const bench_opts *o)
{
    pin_ref p;
    pin_of(c_nol1, d, 1, &p);
    double a[16], b[16];

    /* get, L1 hit */
    pin_of(c_l1, d, 1, &p);                  /* fills the L1 */
    time_get(c_l1, &p, o->local_iters / 10); /* warm-up */
    for (int k = 0; k < o->runs; k++)
        a[k] = time_get(c_l1, &p, o->local_iters);
    double l1 = bench_median(a, o->runs);
    report_line("get (redis, L1 hit)", l1, "ns", -1, 200, NULL);
    result_num("get_l1_ns", l1);

    /* get, L1 off vs one raw GET round trip */
    time_get(c_nol1, &p, o->rt_iters / 10);
    time_raw_get(r, p.storage_key, o->rt_iters / 10);
    double srv_lib = 0, srv_raw = 0;
    for (int k = 0; k < o->runs; k++) {
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        a[k] = time_get(c_nol1, &p, o->rt_iters);
        srv_lib = server_usec_per_call(r, "get");
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        b[k] = time_raw_get(r, p.storage_key, o->rt_iters);
        srv_raw = server_usec_per_call(r, "get");
    }
    double g = bench_median(a, o->runs), gf = bench_median(b, o->runs);
    report_line("get (redis, L1 off)", g, "ns", gf, 1.2, NULL);
    printf("%-22s %11.2f us   floor %.2f us  (server time per GET, INFO commandstats)\n",
           "  server side", srv_lib, srv_raw);
    result_num("get_server_us", srv_lib);
    result_num("get_redis_ns", g);
    result_num("get_redis_floor_ns", gf);
    result_num("get_redis_ratio", g / gf);

    /* touch vs one raw EVALSHA round trip of a trivial script */
    redisReply *rep = cmd(r, "SCRIPT LOAD %s", "return 1");
    char sha[64];
    snprintf(sha, sizeof sha, "%s", rep->str ? rep->str : "");
    freeReplyObject(rep);
    /* before/after in the same run: touch=script (the touch script every
     * time) on another pin, so that the two handles never race on one */
    char su[1400];
    snprintf(su, sizeof su, "%s%stouch=script", g_uri, strchr(g_uri, '?') ? "&" : "?");
    acache *c_script = open_handle(su, 0);
    pin_ref ps;
    pin_of(c_script, d, 2, &ps);
    double sc[16], srv_script = 0;
    long evals = 0, evals_script = 0;
    time_touch(c_nol1, &p, o->rt_iters / 10);
    time_touch(c_script, &ps, o->rt_iters / 10);
    time_raw_evalsha(r, sha, o->rt_iters / 10);
    for (int k = 0; k < o->runs; k++) {
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        a[k] = time_touch(c_nol1, &p, o->rt_iters);
        srv_lib = server_touch_usec(r, o->rt_iters, &evals);
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        sc[k] = time_touch(c_script, &ps, o->rt_iters);
        srv_script = server_touch_usec(r, o->rt_iters, &evals_script);
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        b[k] = time_raw_evalsha(r, sha, o->rt_iters);
        srv_raw = server_usec_per_call(r, "evalsha");
    }
    acache_close(c_script);
    double t = bench_median(a, o->runs), tf = bench_median(b, o->runs);
    double ts = bench_median(sc, o->runs);
    report_line("touch (redis)", t, "ns", tf, 1.3, NULL);
    printf("%-22s %11.2f us   floor %.2f us  (server time per touch, swap path: SET ... "
           "GET, %ld repair(s); vs EVALSHA return 1)\n",
           "  server side", srv_lib, srv_raw, evals);
    report_line("touch (redis, script)", ts, "ns", tf, -1, "(touch=script, before)");
    printf("%-22s %11.2f us   (server time per touch, the touch script)\n",
           "  server side", srv_script);
    result_num("touch_script_redis_ns", ts);
    result_num("touch_script_server_us", srv_script);
    result_num("touch_server_us", srv_lib);
    result_num("touch_floor_server_us", srv_raw);
    result_num("touch_redis_ns", t);
    result_num("touch_redis_floor_ns", tf);
    result_num("touch_redis_ratio", t / tf);

    /* Redis server time per refresh vs a native SET ... EX of the same value
     * (the touch's own write, without the atomic read-modify-write) */
    redisReply *val = cmd(r, "GET %s", p.storage_key);
    char *value = val->type == REDIS_REPLY_STRING ? strdup(val->str) : NULL;
    freeReplyObject(val);
    double srv_set = -1;
    if (value) {
        for (int k = 0; k < o->runs; k++) {
            freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
            for (long i = 0; i < o->rt_iters; i++)
                freeReplyObject(cmd(r, "SET %s %s EX 300", p.storage_key, value));
            b[k] = server_usec_per_call(r, "set");
        }
        srv_set = bench_median(b, o->runs);
        free(value);
    }
    printf("%-22s %11.2f us   floor %.2f us  (server time per refresh vs native SET EX "
           "of the "
           "same value; target <= 2x)  %.2fx\n",
           "  server vs SET EX", srv_lib, srv_set, srv_set > 0 ? srv_lib / srv_set : -1);
    printf("%-22s %11.2f us   floor %.2f us  (touch=script vs native SET EX)  %.2fx\n",
           "  script vs SET EX", srv_script, srv_set,
           srv_set > 0 ? srv_script / srv_set : -1);
    result_num("touch_script_vs_set_ex_ratio", srv_set > 0 ? srv_script / srv_set : -1);
    result_num("touch_set_ex_floor_server_us", srv_set);
    result_num("touch_server_vs_set_ex_ratio", srv_set > 0 ? srv_lib / srv_set : -1);

    /* deferred touch (options.touch_flush_ms = 100): the caller's cost of a
     * refresh of a known pin, and the Redis calls it costs */
    {
        acache_options dopt = ACACHE_OPTIONS_INIT;
        dopt.store_uri = g_uri;
        dopt.l1_ttl_ms = ACACHE_L1_OFF;
        dopt.touch_flush_ms = 100;
        acache *cd = NULL;
        int rc = acache_open(&cd, &dopt);
        if (rc)
            die("acache_open (deferred)", rc);
        time_touch(cd, &p, 10); /* the first touch is synchronous: the pin is known */
        time_touch(cd, &p, o->local_iters / 10);
        freeReplyObject(cmd(r, "CONFIG RESETSTAT"));
        long total = 0;
        for (int k = 0; k < o->runs; k++) {
            a[k] = time_touch(cd, &p, o->local_iters);
            total += o->local_iters;
        }
        acache_close(cd); /* flushes */
        double td = bench_median(a, o->runs);
        redisReply *cs = cmd(r, "INFO commandstats");
        const char *q = cs->type == REDIS_REPLY_STRING
                            ? strstr(cs->str, "cmdstat_evalsha:calls=")
                            : NULL;
        long calls = q ? atol(q + strlen("cmdstat_evalsha:calls=")) : 0;
        freeReplyObject(cs);
        report_line("touch (redis, deferred)", td, "ns", -1, 1000, NULL);
        printf("%-22s %11.4f      (script calls per touch; sync = 1)\n", "  redis calls",
               (double)calls / (double)total);
        result_num("touch_deferred_ns", td);
        result_num("touch_deferred_calls_per_touch", (double)calls / (double)total);
    }

    /* touch with L1 on (refreshes the L1 copy too): information */
    for (int k = 0; k < o->runs; k++)
        a[k] = time_touch(c_l1, &p, o->rt_iters);
    double tl1 = bench_median(a, o->runs);
    report_line("touch (redis, L1 on)", tl1, "ns", tf, -1, "(info)");
    result_num("touch_redis_l1_ns", tl1);
}

static void fig_point_memory(const bench_data *d, const bench_opts *o)
{
    acache *m = open_handle("memory://", 1);
    /* A populated store, so lookups hash into a realistic table. */
    size_t fill = d->n < 100000 ? d->n : 100000;
    double t0 = bench_now();
    for (size_t i = 0; i < fill; i++) {
        char key[160], val[512];
        size_t kl;
        bench_pin(d, i, key, sizeof key, &kl, val, sizeof val);
        char *s = key + strlen("cache_affinity:");
        char *c1 = strchr(s, ':'), *c2 = strchr(c1 + 1, ':');
        *c1 = *c2 = '\0';
        int rc = acache__affinity_set(NULL, m, s, c1 + 1, c2 + 1, d->target_provider,
                                      "endpoint-0", "key-0", 1, 3600);
        if (rc)
            die("acache__affinity_set (memory fill)", rc);
    }
    double fill_s = bench_now() - t0;
    pin_ref p;
    pin_of(m, d, 1, &p);
    double a[16];
    time_get(m, &p, o->local_iters / 10);
    for (int k = 0; k < o->runs; k++)
        a[k] = time_get(m, &p, o->local_iters);
    double g = bench_median(a, o->runs);
    for (int k = 0; k < o->runs; k++)
        a[k] = time_touch(m, &p, o->local_iters);
    double t = bench_median(a, o->runs);
    char note[64];
    snprintf(note, sizeof note, "(store holds %zu pins)", fill);
    report_line("get (memory)", g, "ns", -1, 300, note);
    report_line("touch (memory)", t, "ns", -1, 300, note);
    result_num("mem_get_ns", g);
    result_num("mem_touch_ns", t);
    result_num("mem_fill_touch_ns", fill_s / (double)fill * 1e9);
    acache_close(m);
}

/* ---- main ---- */

/* Other load on the machine skews every figure: say how busy it was. */
static void print_loadavg(const char *when)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l1 = -1;
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1)
            l1 = -1;
        fclose(f);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("machine: %ld CPUs, load average (1 min) at %s: %.2f\n", cpus, when, l1);
    char name[32];
    snprintf(name, sizeof name, "loadavg_%s", when);
    result_num(name, l1);
}

/* Issue 11: fleet counters on vs off on the hot path (interleaved runs), and
 * the admin calls at N pins: /stats (cached count) against today's count per
 * call, /affinities next page (snapshot) against a rebuild per page. */
static acache *open_fleet_handle(const char *uri, int l1, uint32_t flush_ms)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.command_timeout_ms = 600000;
    o.stats_flush_ms = flush_ms;
    if (!l1)
        o.l1_ttl_ms = -1;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    if (rc)
        die("acache_open", rc);
    return c;
}

static double time_stats_json(acache *c, int iters)
{
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        acache_buf b = ACACHE_BUF_INIT;
        int rc = acache_stats_json(&b, c);
        if (rc)
            die("acache_stats_json", rc);
        acache_buf_dispose(&b);
    }
    return (bench_now() - t0) / iters * 1e3;
}

static double time_stats_count(acache *c, int iters)
{
    double t0 = bench_now();
    for (int i = 0; i < iters; i++) {
        acache_stats st = {.version = ACACHE_STATS_VERSION};
        int rc = acache_stats_get(&st, c); /* counts every call, as /stats did */
        if (rc)
            die("acache_stats_get", rc);
    }
    return (bench_now() - t0) / iters * 1e3;
}

static double time_page(acache *c, int64_t offset, int rebuild)
{
    if (rebuild) /* what every page cost before: drop the snapshot first */
        atomic_fetch_add(&c->admin_gen, 1);
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.limit = 100;
    q.offset = offset;
    acache_buf b = ACACHE_BUF_INIT;
    double t0 = bench_now();
    int rc = acache_list_affinities(&b, c, &q);
    double ms = (bench_now() - t0) * 1e3;
    if (rc)
        die("acache_list_affinities", rc);
    acache_buf_dispose(&b);
    return ms;
}

static void fig_fleet(const char *uri, const bench_data *d, const bench_opts *o)
{
    acache *on = open_fleet_handle(uri, 1, 0),
           *off = open_fleet_handle(uri, 1, ACACHE_FLEET_OFF);
    acache *on_nol1 = open_fleet_handle(uri, 0, 0);
    acache *off_nol1 = open_fleet_handle(uri, 0, ACACHE_FLEET_OFF);
    pin_ref p;
    pin_of(on_nol1, d, 1, &p);
    pin_of(on, d, 1, &p); /* fills the L1s */
    pin_of(off, d, 1, &p);
    double a[16], b[16];
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_get(on, &p, o->local_iters);
        b[k] = time_get(off, &p, o->local_iters);
    }
    double gon = bench_median(a, o->runs), goff = bench_median(b, o->runs);
    printf("%-22s %11.1f ns   fleet off %.1f ns  (%+.1f %%)\n", "get L1, fleet on", gon,
           goff, (gon / goff - 1) * 100);
    result_num("fleet_get_l1_on_ns", gon);
    result_num("fleet_get_l1_off_ns", goff);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_get(on_nol1, &p, o->rt_iters);
        b[k] = time_get(off_nol1, &p, o->rt_iters);
    }
    gon = bench_median(a, o->runs);
    goff = bench_median(b, o->runs);
    printf("%-22s %11.1f ns   fleet off %.1f ns  (%+.1f %%)\n", "get redis, fleet on",
           gon, goff, (gon / goff - 1) * 100);
    result_num("fleet_get_redis_on_ns", gon);
    result_num("fleet_get_redis_off_ns", goff);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_touch(on_nol1, &p, o->rt_iters);
        b[k] = time_touch(off_nol1, &p, o->rt_iters);
    }
    gon = bench_median(a, o->runs);
    goff = bench_median(b, o->runs);
    printf("%-22s %11.1f ns   fleet off %.1f ns  (%+.1f %%)\n", "touch, fleet on", gon,
           goff, (gon / goff - 1) * 100);
    result_num("fleet_touch_on_ns", gon);
    result_num("fleet_touch_off_ns", goff);

    /* /affinities first (before /stats starts the background recount, which
     * would compete): the first page builds the snapshot, next pages cut it. */
    double first = time_page(on_nol1, 0, 1);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_page(on_nol1, 100 * (k + 1), 0);
        b[k] = time_page(on_nol1, 100 * (k + 1), 1);
        time_page(on_nol1, 0, 0); /* snapshot back for the next run */
    }
    double np = bench_median(a, o->runs), nb = bench_median(b, o->runs);
    /* `first` is the handle's first listing (cold heap and connections): the
     * first page against one listing without snapshots is `--only page`. */
    printf("%-22s %11.3f ms   rebuilt per page (before) %.1f ms; first call, cold %.1f "
           "ms\n",
           "/affinities next page", np, nb, first);
    result_num("fleet_next_page_ms", np);
    result_num("fleet_next_page_before_ms", nb);
    result_num("fleet_first_page_ms", first);
    /* /stats: the first call counts, the next ones are served from the cache. */
    time_stats_json(on_nol1, 1);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_stats_json(on_nol1, 20);
        b[k] = time_stats_count(on_nol1, 1);
    }
    double sj = bench_median(a, o->runs), sc = bench_median(b, o->runs);
    printf("%-22s %11.3f ms   counting per call (before) %.1f ms  (%zu pins)\n",
           "/stats (cached count)", sj, sc, d->n);
    result_num("fleet_stats_ms", sj);
    result_num("fleet_stats_before_ms", sc);

    acache_close(on);
    acache_close(off);
    acache_close(on_nol1);
    acache_close(off_nol1);
}

/* Issue 11 item 2: L1 invalidation by Redis CLIENT TRACKING. Get served by
 * the L1 with tracking on vs TTL only (interleaved runs), and the staleness:
 * another handle (own connections) switches the pin, this one polls get
 * until it shows the new target; time from the switch returning. */
static acache *open_l1_mode(const char *uri, int mode)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.l1_invalidation = mode;
    o.l1_ttl_ms = mode == ACACHE_L1_OFF ? ACACHE_L1_OFF : 0;
    if (mode == ACACHE_L1_OFF)
        o.l1_invalidation = ACACHE_L1_TTL_ONLY;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    if (rc)
        die("acache_open", rc);
    return c;
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void fig_tracking(const char *uri, const bench_data *d, const bench_opts *o)
{
    acache *on = open_l1_mode(uri, ACACHE_L1_TRACKING);
    acache *off = open_l1_mode(uri, ACACHE_L1_TTL_ONLY);
    acache *w = open_l1_mode(uri, ACACHE_L1_OFF);
    pin_ref p;
    pin_of(on, d, 2, &p);
    pin_of(off, d, 2, &p);
    double a[16], b[16];
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_get(on, &p, o->local_iters);
        b[k] = time_get(off, &p, o->local_iters);
    }
    double gon = bench_median(a, o->runs), goff = bench_median(b, o->runs);
    printf("%-22s %11.1f ns   TTL only %.1f ns  (%+.1f %%)\n", "get L1, tracking on", gon,
           goff, (gon / goff - 1) * 100);
    result_num("tracking_get_l1_on_ns", gon);
    result_num("tracking_get_l1_off_ns", goff);

    enum { ROUNDS = 500 };
    static double st[ROUNDS];
    int stale = 0;
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = p.ak;
    t.api_format = p.fmt;
    t.model_name = p.model;
    t.provider_id = p.prov;
    t.endpoint_id = p.ep;
    for (int i = 0; i < ROUNDS; i++) {
        char want[32];
        snprintf(want, sizeof want, "bench-k%d", i);
        t.key_id = want;
        acache_affinity *x = NULL;
        if (acache_affinity_get(&x, on, p.ak, p.fmt, p.model) ==
            ACACHE_OK) /* in the L1 */
            acache_affinity_free(x);
        int rc = acache_affinity_touch(NULL, w, &t);
        if (rc)
            die("acache_affinity_touch", rc);
        double t0 = bench_now(), dt;
        for (;;) {
            x = NULL;
            rc = acache_affinity_get(&x, on, p.ak, p.fmt, p.model);
            int same = rc == ACACHE_OK && strcmp(acache_affinity_key_id(x), want) == 0;
            acache_affinity_free(x);
            dt = (bench_now() - t0) * 1e3;
            if (same || dt > 3500)
                break;
            sched_yield();
        }
        stale += dt > 3500;
        st[i] = dt;
        /* let the echo of this switch arrive before the next fill */
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    qsort(st, ROUNDS, sizeof st[0], cmp_dbl);
    double p50 = st[ROUNDS / 2], p99 = st[(ROUNDS * 99) / 100];
    printf("%-22s %11.3f ms   p99 %.3f ms, max %.3f ms over %d switches by another "
           "handle%s (TTL only: up to the L1 TTL, 3000 ms)\n",
           "staleness p50", p50, p99, st[ROUNDS - 1], ROUNDS, stale ? " SOME STALE" : "");
    result_num("tracking_staleness_p50_ms", p50);
    result_num("tracking_staleness_p99_ms", p99);
    result_num("tracking_staleness_max_ms", st[ROUNDS - 1]);
    acache_close(on);
    acache_close(off);
    acache_close(w);
}

/* ---- throughput under load (issue 12 item 5) ----
 * LOAD_PROCS processes x LOAD_THREADS threads, each replaying a mix for
 * LOAD_SECONDS: 90 % refreshes of hot pins, 5 % new pins, 5 % switches
 * (a hot pin moved to another provider). Reported: touches/s, caller
 * latency p50/p99, and the Redis CPU (INFO cpu, user+sys) per 1000 touches
 * against 1000 native SET ... EX of a value of the same size, measured in
 * the same run. Sync and deferred (touch_flush_ms = 100). */
enum { LOAD_PROCS = 2, LOAD_THREADS = 4, LOAD_HOT = 1000, LOAD_MAX = 400000 };
#define LOAD_SECONDS 3.0

typedef struct load_thread {
    acache *c;
    int proc, id;
    uint32_t *lat_ns; /* shared mapping slice */
    long n;
    int failed;
} load_thread;

static void *load_main(void *arg)
{
    load_thread *t = arg;
    uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)(t->proc * 64 + t->id + 1);
    char ak[64], prov[32];
    double end = bench_now() + LOAD_SECONDS;
    long i = 0;
    for (; i < LOAD_MAX / (LOAD_PROCS * LOAD_THREADS) && bench_now() < end; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned kind = (unsigned)(x % 100), hot = (unsigned)((x >> 8) % LOAD_HOT);
        if (kind < 5)
            snprintf(ak, sizeof ak, "load-new-%d-%d-%ld", t->proc, t->id, i);
        else
            snprintf(ak, sizeof ak, "load-hot-%u", hot);
        /* a switch moves the pin; its later refreshes follow the new target */
        snprintf(prov, sizeof prov, "prov-%u", kind >= 95 ? (unsigned)(x >> 20) % 7 : 0);
        double t0 = bench_now();
        int rc = acache__affinity_set(NULL, t->c, ak, "claude", "model-load", prov, "ep",
                                      "key", 1, 300);
        double us = (bench_now() - t0) * 1e9;
        t->lat_ns[i] = us > 4e9 ? 4000000000u : (uint32_t)us;
        if (rc)
            t->failed++;
    }
    t->n = i;
    return NULL;
}

static double redis_cpu_s(redisContext *r)
{
    redisReply *rep = cmd(r, "INFO cpu");
    double u = 0, s = 0;
    const char *p =
        rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "used_cpu_user:") : NULL;
    if (p)
        u = atof(p + strlen("used_cpu_user:"));
    p = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "used_cpu_sys:") : NULL;
    if (p)
        s = atof(p + strlen("used_cpu_sys:"));
    freeReplyObject(rep);
    return u + s;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void load_run(redisContext *r, uint32_t flush_ms, const char *tag)
{
    size_t slots = LOAD_MAX;
    uint32_t *lat = mmap(NULL, slots * sizeof *lat + 4096, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    long *counts = (long *)(lat + slots); /* per process: done, failed */
    if (lat == MAP_FAILED) {
        fprintf(stderr, "bench: mmap failed\n");
        exit(1);
    }
    double cpu0 = redis_cpu_s(r), t0 = bench_now();
    pid_t kids[LOAD_PROCS];
    for (int pnum = 0; pnum < LOAD_PROCS; pnum++) {
        fflush(NULL);
        kids[pnum] = fork();
        if (kids[pnum] == 0) {
            acache_options lo = ACACHE_OPTIONS_INIT;
            lo.store_uri = g_uri;
            lo.touch_flush_ms = flush_ms;
            acache *c = NULL;
            if (acache_open(&c, &lo) != ACACHE_OK)
                _exit(1);
            pthread_t th[LOAD_THREADS];
            load_thread w[LOAD_THREADS];
            size_t per = slots / (LOAD_PROCS * LOAD_THREADS);
            for (int t = 0; t < LOAD_THREADS; t++) {
                w[t] = (load_thread){.c = c,
                                     .proc = pnum,
                                     .id = t,
                                     .lat_ns =
                                         lat + (size_t)(pnum * LOAD_THREADS + t) * per};
                pthread_create(&th[t], NULL, load_main, &w[t]);
            }
            long done = 0, failed = 0;
            for (int t = 0; t < LOAD_THREADS; t++) {
                pthread_join(th[t], NULL);
                done += w[t].n;
                failed += w[t].failed;
                /* unused tail of the slice: max, sorted out of the median */
                for (size_t k = (size_t)w[t].n; k < per; k++)
                    w[t].lat_ns[k] = UINT32_MAX;
            }
            acache_close(c); /* the final flush is part of the work */
            counts[pnum * 2] = done;
            counts[pnum * 2 + 1] = failed;
            _exit(0);
        }
    }
    for (int pnum = 0; pnum < LOAD_PROCS; pnum++)
        waitpid(kids[pnum], NULL, 0);
    double wall = bench_now() - t0, cpu = redis_cpu_s(r) - cpu0;
    long done = 0, failed = 0;
    for (int pnum = 0; pnum < LOAD_PROCS; pnum++) {
        done += counts[pnum * 2];
        failed += counts[pnum * 2 + 1];
    }
    qsort(lat, slots, sizeof *lat, cmp_u32);
    double p50 = done ? lat[(size_t)done / 2] / 1000.0 : -1;
    double p99 = done ? lat[(size_t)((double)done * 0.99)] / 1000.0 : -1;
    char name[64];
    printf(
        "%-22s %11.0f /s   p50 %.1f us  p99 %.1f us  Redis CPU %.3f ms per 1000 touches"
        "%s\n",
        tag, (double)done / wall, p50, p99, cpu / (double)done * 1e6,
        failed ? "  (FAILURES)" : "");
    snprintf(name, sizeof name, "%s_touches_per_s", tag);
    result_num(name, (double)done / wall);
    snprintf(name, sizeof name, "%s_p50_us", tag);
    result_num(name, p50);
    snprintf(name, sizeof name, "%s_p99_us", tag);
    result_num(name, p99);
    snprintf(name, sizeof name, "%s_redis_cpu_ms_per_1000", tag);
    result_num(name, cpu / (double)done * 1e6);
    snprintf(name, sizeof name, "%s_failures", tag);
    result_int(name, failed);
    munmap(lat, slots * sizeof *lat + 4096);
}

static void fig_load(redisContext *r)
{
    /* floor: 1000 native SET ... EX of a touch-sized value, Redis CPU */
    char value[256];
    snprintf(
        value, sizeof value,
        "{\"provider_id\": \"prov-0\", \"endpoint_id\": \"ep\", \"key_id\": \"key\", "
        "\"api_format\": \"claude\", \"model_name\": \"model-load\", \"created_at\": "
        "1764625067.123456, \"expire_at\": 1764625367.123456, \"request_count\": 17}");
    long nset = 20000;
    double cpu0 = redis_cpu_s(r);
    /* one round trip each, as a gateway writing natively would */
    for (long i = 0; i < nset; i++)
        freeReplyObject(cmd(r, "SET load-floor-%ld %s EX 300", i % 1000, value));
    double floor_ms = (redis_cpu_s(r) - cpu0) / (double)nset * 1e6;
    printf("%-22s %11.3f ms Redis CPU per 1000 native SET EX (one round trip each)\n",
           "load floor", floor_ms);
    result_num("load_set_ex_redis_cpu_ms_per_1000", floor_ms);
    load_run(r, 0, "load_sync");
    load_run(r, 100, "load_deferred");
}

/* ---- --topology: single, tls, cluster (issue 10) ----
 *
 * Each topology gets its own private servers (tests/support/redis_server.c:
 * the same start-up as the tests), N pins, and figures against floors over
 * the same transport: the library's own connection layer (rconn: plain TCP
 * or OpenSSL, hiredis's RESP codec), so TLS costs appear in both. Cluster
 * floors go to the node owning the key; the listing floor is the sum over
 * primaries of a per-node SCAN pipeline (MGET on one node, one GET per key
 * on a cluster node, since a cross-slot MGET fails), nodes one after another. */

typedef struct topo {
    const char *name;
    test_redis single;
    test_redis_cluster cl;
    int is_cluster, n_nodes;
    const char *uri;
    redisContext *side[TEST_CLUSTER_MAX]; /* plain side access: load, clear */
    rconn *rc[TEST_CLUSTER_MAX];          /* floors: the library's transport */
    int port[TEST_CLUSTER_MAX];
    unsigned char owner[16384]; /* slot -> node index (cluster) */
    redis_store tls_store;      /* only its SSL_CTX (acache__redis_tls_init) */
} topo;

static redisReply *rc_cmd(rconn *c, int argc, const char **argv)
{
    redisReply *rep = NULL;
    if (acache__redis_command(c, argc, argv, NULL, &rep) != 0 || !rep) {
        fprintf(stderr, "bench: floor connection: %s\n", rconn_errstr(c));
        exit(1);
    }
    return rep;
}

static int topo_node_of(const topo *t, const char *key, size_t len)
{
    return t->is_cluster ? t->owner[acache__redis_key_slot(key, len)] : 0;
}

/* Pipelined SET EX of all pins, each to the node owning its slot. */
static long topo_load(topo *t, const bench_data *d)
{
    if (!t->is_cluster)
        return bench_load(t->side[0], d, 1);
    long done = 0;
    size_t pending[TEST_CLUSTER_MAX] = {0};
    for (size_t i = 0; i < d->n; i++) {
        char key[200], val[512];
        size_t kl;
        size_t vl = bench_pin(d, i, key, sizeof key, &kl, val, sizeof val);
        int nd = topo_node_of(t, key, kl);
        const char *argv[] = {"SET", key, val, "EX", "7200"};
        size_t lens[] = {3, kl, vl, 2, 4};
        redisAppendCommandArgv(t->side[nd], 5, argv, lens);
        if (++pending[nd] < 1000 && i + 1 < d->n)
            continue;
        for (int k = 0; k < t->n_nodes; k++)
            for (; pending[k]; pending[k]--) {
                redisReply *rep = NULL;
                if (redisGetReply(t->side[k], (void **)&rep) != REDIS_OK)
                    return -1;
                done += rep->type == REDIS_REPLY_STATUS;
                freeReplyObject(rep);
            }
    }
    return done;
}

/* Per-node floor: SCAN pages of cache_affinity:*, the values (MGET, or one
 * GET per key when per_key) or UNLINKs of page k pipelined with the SCAN of
 * page k+1. Returns keys handled. */
static long rc_scan(rconn *c, int per_key, int unlink_keys)
{
    const char *scan_argv[] = {"SCAN", "0", "MATCH", "cache_affinity:*", "COUNT", "1000"};
    argv_buf a = {0};
    long n = 0;
    redisReply *page = NULL;
    char cursor[32];
    if (rconn_append(c, 6, scan_argv, NULL) || rconn_read(c, &page))
        return -1;
    for (;;) {
        snprintf(cursor, sizeof cursor, "%s", page->element[0]->str);
        int done = strcmp(cursor, "0") == 0;
        redisReply *ks = page->element[1];
        size_t sent = 0;
        if (ks->elements + 1 > a.cap) {
            a.cap = 2 * (ks->elements + 1);
            a.argv = realloc(a.argv, a.cap * sizeof *a.argv);
            a.lens = realloc(a.lens, a.cap * sizeof *a.lens);
            if (!a.argv || !a.lens)
                return -1;
        }
        const char *verb = unlink_keys ? "UNLINK" : per_key ? "GET" : "MGET";
        if (per_key) {
            for (size_t i = 0; i < ks->elements; i++) {
                const char *argv[] = {verb, ks->element[i]->str};
                size_t lens[] = {strlen(verb), ks->element[i]->len};
                rconn_append(c, 2, argv, lens);
                sent++;
            }
        } else if (ks->elements) {
            a.argv[0] = verb;
            a.lens[0] = strlen(verb);
            for (size_t i = 0; i < ks->elements; i++) {
                a.argv[i + 1] = ks->element[i]->str;
                a.lens[i + 1] = ks->element[i]->len;
            }
            rconn_append(c, (int)ks->elements + 1, a.argv, a.lens);
            sent = 1;
        }
        if (!done) {
            scan_argv[1] = cursor;
            rconn_append(c, 6, scan_argv, NULL);
        }
        for (size_t i = 0; i < sent; i++) {
            redisReply *v = NULL;
            if (rconn_read(c, &v))
                return -1;
            if (v->type == REDIS_REPLY_ARRAY)
                for (size_t j = 0; j < v->elements; j++)
                    n += v->element[j]->type == REDIS_REPLY_STRING;
            else if (v->type == REDIS_REPLY_STRING)
                n++;
            else if (v->type == REDIS_REPLY_INTEGER)
                n += v->integer;
            freeReplyObject(v);
        }
        freeReplyObject(page);
        page = NULL;
        if (done)
            break;
        if (rconn_read(c, &page))
            return -1;
    }
    free(a.argv);
    free(a.lens);
    return n;
}

static long topo_scan_all(topo *t, int unlink_keys)
{
    long n = 0;
    for (int k = 0; k < t->n_nodes; k++) {
        long m = rc_scan(t->rc[k], t->is_cluster, unlink_keys);
        if (m < 0) {
            fprintf(stderr, "bench: floor scan failed on node %d\n", k);
            exit(1);
        }
        n += m;
    }
    return n;
}

static double rc_time(rconn *c, int argc, const char **argv, int want_type, long iters)
{
    double t0 = bench_now();
    for (long i = 0; i < iters; i++) {
        redisReply *rep = rc_cmd(c, argc, argv);
        if (rep->type != want_type) {
            fprintf(stderr, "bench: raw %s: unexpected reply (%s)\n", argv[0],
                    rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
            exit(1);
        }
        freeReplyObject(rep);
    }
    return (bench_now() - t0) / (double)iters * 1e9;
}

static int topo_start(topo *t, const char *name)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    if (strcmp(name, "cluster") == 0) {
        t->is_cluster = 1;
        if (test_redis_cluster_start(&t->cl, 3))
            return -1;
        t->n_nodes = t->cl.n;
        t->uri = t->cl.uri;
        for (int k = 0; k < t->n_nodes; k++)
            t->port[k] = t->cl.node[k].port;
    } else if (strcmp(name, "tls") == 0) {
        if (!test_redis_has_tls()) {
            fprintf(stderr, "bench: redis-server has no TLS\n");
            return -1;
        }
        test_redis_tls opts = {0};
        if (test_redis_start_tls(&t->single, &opts))
            return -1;
        t->n_nodes = 1;
        t->uri = t->single.uri;
        t->port[0] = t->single.port;
        redis_store *s = &t->tls_store;
        s->tls = 1;
        s->verify = 1;
        s->cacert = t->single.ca;
        snprintf(s->where, sizeof s->where, "127.0.0.1:%d", t->single.port);
        if (acache__redis_tls_init(s))
            die("tls init", ACACHE_EINVALID);
    } else if (strcmp(name, "single") == 0) {
        if (test_redis_start(&t->single))
            return -1;
        t->n_nodes = 1;
        t->uri = t->single.uri;
        t->port[0] = t->single.port;
    } else {
        fprintf(stderr, "bench: unknown topology %s\n", name);
        return -1;
    }
    for (int k = 0; k < t->n_nodes; k++) {
        t->side[k] = strcmp(name, "tls") == 0 ? redisConnectUnix(t->single.sock)
                                              : redisConnect("127.0.0.1", t->port[k]);
        if (!t->side[k] || t->side[k]->err)
            return -1;
        char err[256] = "";
        rconn_target tg = {.host = "127.0.0.1",
                           .port = t->port[k],
                           .connect_ms = 2000,
                           .command_ms = 600000,
                           .tls = t->tls_store.tls_ctx,
                           .verify = 1};
        t->rc[k] = rconn_open(&tg, err, sizeof err);
        if (!t->rc[k]) {
            fprintf(stderr, "bench: floor connection: %s\n", err);
            return -1;
        }
    }
    if (t->is_cluster) {
        redisReply *rep = redisCommand(t->side[0], "CLUSTER SLOTS");
        if (!rep || rep->type != REDIS_REPLY_ARRAY)
            return -1;
        for (size_t i = 0; i < rep->elements; i++) {
            redisReply *e = rep->element[i];
            long long lo = e->element[0]->integer, hi = e->element[1]->integer;
            int port = (int)e->element[2]->element[1]->integer, nd = 0;
            for (int k = 0; k < t->n_nodes; k++)
                if (t->port[k] == port)
                    nd = k;
            for (long long sl = lo; sl <= hi; sl++)
                t->owner[sl] = (unsigned char)nd;
        }
        freeReplyObject(rep);
    }
    return 0;
}

static void topo_stop(topo *t)
{
    for (int k = 0; k < t->n_nodes; k++) {
        if (t->rc[k])
            rconn_close(t->rc[k]);
        if (t->side[k])
            redisFree(t->side[k]);
    }
    acache__redis_tls_free(&t->tls_store);
    if (t->is_cluster)
        test_redis_cluster_stop(&t->cl);
    else
        test_redis_stop(&t->single);
}

static void topo_result(const char *topo_name, const char *fig, double v, double floor_v)
{
    char name[96];
    snprintf(name, sizeof name, "topo_%s_%s", topo_name, fig);
    result_num(name, v);
    snprintf(name, sizeof name, "topo_%s_%s_floor", topo_name, fig);
    result_num(name, floor_v);
    snprintf(name, sizeof name, "topo_%s_%s_ratio", topo_name, fig);
    result_num(name, v / floor_v);
}

/* get/touch in ns for the "tls vs single" ratios. */
typedef struct topo_point {
    double get, touch;
} topo_point;

static int fig_topology(const char *name, const bench_data *d, const bench_opts *o,
                        topo_point *out)
{
    topo t;
    if (topo_start(&t, name)) {
        fprintf(stderr, "bench: cannot start topology %s\n", name);
        topo_stop(&t);
        return -1;
    }
    double t0 = bench_now();
    long loaded = topo_load(&t, d);
    if (loaded != (long)d->n) {
        fprintf(stderr, "bench: %s: loaded %ld of %zu pins\n", name, loaded, d->n);
        topo_stop(&t);
        return -1;
    }
    printf("topology %s: %d node%s, %s; %zu pins loaded in %.2f s\n", name, t.n_nodes,
           t.n_nodes > 1 ? "s" : "", t.uri, d->n, bench_now() - t0);
    acache *c = open_handle(t.uri, 0);
    char label[64];
    double a[16], b[16];

    /* get: L1 off vs one raw GET to the owning node */
    pin_ref p;
    pin_of(c, d, 1, &p);
    size_t kl = strlen(p.storage_key);
    rconn *own = t.rc[topo_node_of(&t, p.storage_key, kl)];
    const char *get_argv[] = {"GET", p.storage_key};
    time_get(c, &p, o->rt_iters / 10);
    rc_time(own, 2, get_argv, REDIS_REPLY_STRING, o->rt_iters / 10);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_get(c, &p, o->rt_iters);
        b[k] = rc_time(own, 2, get_argv, REDIS_REPLY_STRING, o->rt_iters);
    }
    double g = bench_median(a, o->runs), gf = bench_median(b, o->runs);
    snprintf(label, sizeof label, "[%s] get (L1 off)", name);
    report_line(label, g, "ns", gf, t.is_cluster ? 1.2 : -1,
                "floor: raw GET, same transport");
    topo_result(name, "get_ns", g, gf);

    /* touch vs one EVALSHA of a trivial script on the owning node */
    const char *load_argv[] = {"SCRIPT", "LOAD", "return 1"};
    redisReply *sha = rc_cmd(own, 3, load_argv);
    char sha_s[64];
    snprintf(sha_s, sizeof sha_s, "%s", sha->type == REDIS_REPLY_STRING ? sha->str : "");
    freeReplyObject(sha);
    const char *ev_argv[] = {"EVALSHA", sha_s, "0"};
    time_touch(c, &p, o->rt_iters / 10);
    rc_time(own, 3, ev_argv, REDIS_REPLY_INTEGER, o->rt_iters / 10);
    for (int k = 0; k < o->runs; k++) {
        a[k] = time_touch(c, &p, o->rt_iters);
        b[k] = rc_time(own, 3, ev_argv, REDIS_REPLY_INTEGER, o->rt_iters);
    }
    double tc = bench_median(a, o->runs), tf = bench_median(b, o->runs);
    snprintf(label, sizeof label, "[%s] touch", name);
    report_line(label, tc, "ns", tf, t.is_cluster ? 1.2 : -1,
                "floor: EVALSHA 'return 1'");
    topo_result(name, "touch_ns", tc, tf);
    out->get = g;
    out->touch = tc;

    /* list-all vs per-node SCAN+MGET (cluster: GETs) */
    size_t got = 0;
    long raw = 0;
    for (int k = 0; k < o->runs; k++) {
        acache__affinity_list *l = NULL;
        double s0 = bench_now();
        int rc = acache__affinity_list_fetch(&l, c, NULL);
        if (rc)
            die("acache__affinity_list_fetch", rc);
        got = acache__affinity_list_count(l);
        acache__affinity_list_free(l);
        a[k] = bench_now() - s0;
        s0 = bench_now();
        raw = topo_scan_all(&t, 0);
        b[k] = bench_now() - s0;
    }
    double la = bench_median(a, o->runs), lf = bench_median(b, o->runs);
    snprintf(label, sizeof label, "[%s] list_all", name);
    char note[96];
    snprintf(note, sizeof note, "%zu listed, floor %ld values (%s per node)", got, raw,
             t.is_cluster ? "SCAN+GETs" : "SCAN+MGET");
    report_line(label, la, "s", lf, 1.5, note);
    topo_result(name, "list_all_s", la, lf);
    if (got != d->n || raw != (long)d->n)
        fprintf(stderr, "bench: WARNING: %s: listed %zu, floor %ld of %zu\n", name, got,
                raw, d->n);

    /* clear-all vs per-node SCAN+UNLINK (cluster: one UNLINK per key) */
    int cruns = o->n > 200000 ? 1 : 3;
    size_t removed = 0;
    for (int k = 0; k < cruns; k++) {
        double s0 = bench_now();
        int rc = acache__affinity_clear_all(&removed, c);
        a[k] = bench_now() - s0;
        if (rc)
            die("acache__affinity_clear_all", rc);
        if (topo_load(&t, d) != (long)d->n)
            die("reload", ACACHE_ESTORE);
        s0 = bench_now();
        raw = topo_scan_all(&t, 1);
        b[k] = bench_now() - s0;
        if (topo_load(&t, d) != (long)d->n)
            die("reload", ACACHE_ESTORE);
    }
    double ca = bench_median(a, cruns), cf = bench_median(b, cruns);
    snprintf(label, sizeof label, "[%s] clear_all", name);
    snprintf(note, sizeof note, "removed %zu, floor %ld (info)", removed, raw);
    report_line(label, ca, "s", cf, -1, note);
    topo_result(name, "clear_all_s", ca, cf);

    acache_close(c);
    topo_stop(&t);
    return 0;
}

/* --topology LIST (comma separated; "all" = single,tls,cluster). */
static int run_topologies(const char *list, const bench_data *d, const bench_opts *o)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s",
             strcmp(list, "all") == 0 ? "single,tls,cluster" : list);
    topo_point single = {0}, tls = {0};
    int fails = 0;
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        topo_point pt = {0};
        if (fig_topology(name, d, o, &pt)) {
            fails++;
            continue;
        }
        if (strcmp(name, "single") == 0)
            single = pt;
        else if (strcmp(name, "tls") == 0)
            tls = pt;
    }
    if (single.get > 0 && tls.get > 0) {
        report_line("tls vs single: get", tls.get, "ns", single.get, 1.15, NULL);
        report_line("tls vs single: touch", tls.touch, "ns", single.touch, 1.15, NULL);
        result_num("topo_tls_vs_single_get_ratio", tls.get / single.get);
        result_num("topo_tls_vs_single_touch_ratio", tls.touch / single.touch);
    }
    return fails ? 1 : 0;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: acache-bench [--n N] [--redis redis://host:port] [--runs R]\n"
        "                    [--rt-iters N] [--local-iters N] [--pg] [--mapping]\n"
        "  --n N            pins to load (default 100000)\n"
        "  --redis URI      use this server (database 0; its cache_affinity:* keys are\n"
        "                   overwritten and deleted) instead of a private one\n"
        "  --runs R         runs per figure, median reported (default 5; 3 for N > "
        "200k)\n"
        "  --rt-iters N     iterations of round-trip ops (default 20000)\n"
        "  --local-iters N  iterations of in-process ops (default 200000)\n"
        "  --only FIG       one of list, memory, point, local, invalidate, clear, "
        "fleet,\n"
        "                   tracking (L1 invalidation: get on/off, staleness p50/p99),\n"
        "                   load (processes x threads replaying a touch mix), page\n"
        "                   (/affinities first page vs one listing; PostgreSQL too\n"
        "                   with --pg), none\n"
        "                   (for profiling with perf)\n"
        "  --pg             enriched listing figures (issue 3): PostgreSQL from\n"
        "                   $ACACHE_TEST_PG_URI (run under "
        "tests/support/with-postgres.sh)\n"
        "  --pg-pages K     measure only the first K pages of 1000 (default: all)\n"
        "  --mapping        model-mapping stats and TTL analysis figures (issue 4)\n"
        "  --topology LIST  single, tls, cluster (comma separated, or all): get, touch,\n"
        "                   list-all and clear-all per topology against raw floors over\n"
        "                   the same transport, on private servers (issue 10)\n");
}

int main(int argc, char **argv)
{
    bench_opts o = {.n = 100000, .runs = 0, .rt_iters = 20000, .local_iters = 200000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--n") == 0 && v) {
            o.n = (size_t)strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--redis") == 0 && v) {
            o.redis_uri = v;
            i++;
        } else if (strcmp(a, "--runs") == 0 && v) {
            o.runs = atoi(v);
            i++;
        } else if (strcmp(a, "--rt-iters") == 0 && v) {
            o.rt_iters = atol(v);
            i++;
        } else if (strcmp(a, "--local-iters") == 0 && v) {
            o.local_iters = atol(v);
            i++;
        } else if (strcmp(a, "--only") == 0 && v) {
            o.only = v;
            i++;
        } else if (strcmp(a, "--pg-pages") == 0 && v) {
            o.pg_pages = (size_t)strtoull(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--topology") == 0 && v) {
            o.topology = v;
            i++;
        } else if (strcmp(a, "--pg") == 0) {
            o.pg = 1;
        } else if (strcmp(a, "--mapping") == 0) {
            o.mapping = 1;
        } else {
            usage();
            return a && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) ? 0 : 2;
        }
    }
    if (o.n < 10 || o.rt_iters < 10 || o.local_iters < 10) {
        usage();
        return 2;
    }
    if (o.runs <= 0)
        o.runs = o.n > 200000 ? 3 : 5;
    if (o.runs > 15)
        o.runs = 15;

    if (o.topology) {
        /* Private servers per topology only: --redis and the other figures do not apply.
         */
        printf("acache-bench %s: n=%zu, topologies %s, runs=%d (median), %ld round-trip "
               "iterations\n",
               acache_version(), o.n, o.topology, o.runs, o.rt_iters);
        result_int("n", (long long)o.n);
        result_str("topology", o.topology);
        print_loadavg("start");
        bench_data d;
        bench_data_init(&d, o.n);
        int rc = run_topologies(o.topology, &d, &o);
        print_loadavg("end");
        results_print_json();
        results_free();
        return rc;
    }

    bench_redis srv;
    if (o.redis_uri ? bench_redis_use(&srv, o.redis_uri) : bench_redis_start(&srv))
        return 1;
    redisContext *r = bench_redis_connect(&srv);
    if (!r) {
        fprintf(stderr, "bench: cannot connect to %s\n", srv.uri);
        return 1;
    }
    printf(
        "acache-bench %s: n=%zu, redis %s (%s), runs=%d (median), %ld round-trip / %ld "
        "local iterations\n",
        acache_version(), o.n, srv.uri, srv.pid ? "private" : "given", o.runs, o.rt_iters,
        o.local_iters);

    result_int("n", (long long)o.n);
    print_loadavg("start");
    bench_data d;
    bench_data_init(&d, o.n);
    if (!srv.pid && bench_raw_clear(r) < 0)
        return 1;
    double t0 = bench_now();
    long loaded = bench_load(r, &d, 1);
    double load_s = bench_now() - t0;
    if (loaded != (long)o.n) {
        fprintf(stderr, "bench: loaded %ld of %zu pins\n", loaded, o.n);
        return 1;
    }
    printf(
        "loaded %zu pins (%zu affinity keys x 4 formats x %zu models, 50 providers, 200 "
        "keys; %zu on the target provider) in %.2f s; values %.1f MB\n",
        o.n, o.n < 30000 ? o.n : (size_t)30000, d.n_models, d.target_pins, load_s,
        (double)d.value_bytes / 1e6);
    result_num("load_s", load_s);

    g_uri = srv.uri;
    acache *c_l1 = open_handle(srv.uri, 1);
    acache *c_nol1 = open_handle(srv.uri, 0);

#define WANT(name) (!o.only || strcmp(o.only, name) == 0)
    if (WANT("list"))
        fig_list(c_nol1, r, &d, o.runs);
    if (WANT("memory"))
        fig_memory(c_nol1, &d);
    if (WANT("point"))
        fig_point_redis(c_l1, c_nol1, r, &d, &o);
    if (WANT("local"))
        fig_point_memory(&d, &o);
    if (WANT("invalidate"))
        fig_invalidate(c_nol1, r, &d, o.runs);
    if (WANT("fleet"))
        fig_fleet(srv.uri, &d, &o);
    if (WANT("tracking"))
        fig_tracking(srv.uri, &d, &o);
    if (WANT("page"))
        bench_page_listing(srv.uri, &d, o.runs, o.pg);
    if (WANT("clear"))
        fig_clear(c_nol1, r, &d, o.n > 200000 ? 1 : 3);
    if (WANT("load")) /* after clear: its new pins would be counted there */
        fig_load(r);

    if (o.pg)
        bench_pg_listing(srv.uri, &d, o.runs, o.pg_pages);
    if (o.mapping)
        bench_mapping(srv.uri, r, o.runs);

    acache_close(c_l1);
    acache_close(c_nol1);
    if (!srv.pid)
        bench_raw_clear(r);
    redisFree(r);
    print_loadavg("end");
    results_print_json();
    results_free();
    bench_redis_stop(&srv);
    return 0;
}
