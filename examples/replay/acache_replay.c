/* acache-replay: record gateway traffic into a store, as a gateway would.
 *
 * Reads JSON lines {"affinity_key", "api_format", "model", "provider_id",
 * "endpoint_id", "key_id", "ttl"?, "supports_caching"?} from stdin or a file
 * and touches each through the library from N threads sharing one handle.
 * Progress goes to stderr once a second (--quiet silences it); one summary line
 * goes to stdout: records, errors, seconds, ops/s. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <aether_cache/aether_cache.h>
#include <jansson.h>

typedef struct {
    char *ak, *fmt, *model, *prov, *ep, *key;
    uint32_t ttl;
    int caching;
} rec;

typedef struct {
    acache *c;
    rec *recs;
    size_t n, next, done; /* done: records finished, for the progress lines */
    int finished;         /* all workers returned */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned long ok, errors, created, refreshed, switched;
} work;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *dup_field(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* Threads take records in chunks so the counter lock stays cold. */
static void *worker(void *arg)
{
    work *w = arg;
    unsigned long ok = 0, err = 0, by[4] = {0};
    size_t finished = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        w->done += finished;
        size_t start = w->next, end = start + 256 < w->n ? start + 256 : w->n;
        finished = end - start;
        w->next = end;
        pthread_mutex_unlock(&w->lock);
        if (start >= end)
            break;
        for (size_t i = start; i < end; i++) {
            rec *r = &w->recs[i];
            acache_touch t = ACACHE_TOUCH_INIT;
            t.affinity_key = r->ak;
            t.api_format = r->fmt;
            t.model_name = r->model;
            t.provider_id = r->prov;
            t.endpoint_id = r->ep;
            t.key_id = r->key;
            t.supports_caching = r->caching;
            t.ttl_s = r->ttl;
            acache_touch_result res;
            int rc = acache_affinity_touch(&res, w->c, &t);
            if (rc == ACACHE_OK) {
                ok++;
                by[res]++;
            } else {
                if (err++ < 5)
                    fprintf(stderr, "acache-replay: record %zu: %s: %s\n", i + 1,
                            acache_strerror(rc), acache_last_error());
            }
        }
    }
    pthread_mutex_lock(&w->lock);
    w->ok += ok;
    w->errors += err;
    w->created += by[ACACHE_TOUCH_CREATED];
    w->refreshed += by[ACACHE_TOUCH_REFRESHED];
    w->switched += by[ACACHE_TOUCH_SWITCHED];
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Once a second: records touched so far, percentage and the rate since start. */
static void *report(void *arg)
{
    work *w = arg;
    double t0 = now_s();
    pthread_mutex_lock(&w->lock);
    while (!w->finished) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0 || w->finished)
            continue;
        size_t done = w->done, n = w->n;
        pthread_mutex_unlock(&w->lock);
        double t = now_s() - t0;
        fprintf(stderr, "acache-replay: %zu/%zu records (%.1f%%), %.0f ops/s\n", done, n,
                n ? 100.0 * (double)done / (double)n : 100.0,
                t > 0 ? (double)done / t : 0.0);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void usage(FILE *f)
{
    fputs(
        "Usage: acache-replay [OPTION]... [FILE]\n"
        "Record gateway traffic into a cache store, as Aether gateways do: read JSON\n"
        "lines {\"affinity_key\", \"api_format\", \"model\", \"provider_id\",\n"
        "\"endpoint_id\", \"key_id\", \"ttl\"?, \"supports_caching\"?} from FILE (or "
        "stdin)\n"
        "and touch each pin from N threads sharing one handle. Options may come before\n"
        "or after FILE.\n"
        "\n"
        "Options:\n"
        "  --store URI        memory:// (the default, or $ACACHE_STORE),\n"
        "                     redis://[[user]:password@]host[:port][/db][?db=N],\n"
        "                     unix://[[user]:password@]/path/redis.sock[?db=N]\n"
        "  --threads N        worker threads, 1..256 (default 4)\n"
        "  -q, --quiet        no progress lines on stderr\n"
        "  -h, --help         print this help and exit\n"
        "  -V, --version      print the version and exit\n"
        "\n"
        "Once a second, a progress line goes to stderr (lines read, then records\n"
        "touched, with the rate); at the end one summary line goes to stdout.\n"
        "\n"
        "Exit status:\n"
        "  0  every line read and touched\n"
        "  2  usage error, unreadable FILE\n"
        "  3  store unavailable\n"
        "  4  some lines were not JSON objects or some touches failed\n",
        f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, 0, 's'}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},     {0, 0, 0, 0}};
    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = getenv("ACACHE_STORE");
    int threads = 4, quiet = 0, ch;
    char *end;
    long tl;
    while ((ch = getopt_long(argc, argv, "hqV", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            opts.store_uri = optarg;
            break;
        case 't':
            errno = 0;
            tl = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || tl < 1 || tl > 256) {
                fprintf(stderr,
                        "acache-replay: --threads must be an integer in 1..256, "
                        "got \"%s\"\n",
                        optarg);
                return 2;
            }
            threads = (int)tl;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("acache-replay %s (libaethercache %s)\n", ACACHE_VERSION_STRING,
                   acache_version());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "acache-replay: one FILE at most (see acache-replay --help)\n");
        return 2;
    }
    FILE *in = stdin;
    if (optind < argc && !(in = fopen(argv[optind], "r"))) {
        fprintf(stderr, "acache-replay: %s: %s\n", argv[optind], strerror(errno));
        return 2;
    }
    work w = {0};
    size_t cap = 0, lineno = 0;
    char *line = NULL;
    size_t linecap = 0;
    unsigned long bad = 0;
    double t_read = now_s(), next_report = t_read + 1.0;
    while (getline(&line, &linecap, in) > 0) {
        lineno++;
        /* The clock costs far less than parsing the line: read it every time, so
         * a slow feed (a live log) reports too. */
        if (!quiet) {
            double t = now_s();
            if (t >= next_report) {
                fprintf(stderr, "acache-replay: read %zu lines (%.0f lines/s)\n", lineno,
                        (double)lineno / (t - t_read));
                next_report = t + 1.0;
            }
        }
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o)) {
            if (bad++ < 5)
                fprintf(stderr, "acache-replay: line %zu: not a JSON object: %s\n",
                        lineno, o ? "wrong type" : err.text);
            json_decref(o);
            continue;
        }
        if (w.n == cap) {
            cap = cap ? cap * 2 : 1024;
            rec *nr = realloc(w.recs, cap * sizeof *nr);
            if (!nr) {
                fprintf(stderr, "acache-replay: out of memory\n");
                return 4;
            }
            w.recs = nr;
        }
        rec *r = &w.recs[w.n++];
        r->ak = dup_field(o, "affinity_key");
        r->fmt = dup_field(o, "api_format");
        r->model = dup_field(o, "model");
        r->prov = dup_field(o, "provider_id");
        r->ep = dup_field(o, "endpoint_id");
        r->key = dup_field(o, "key_id");
        json_t *ttl = json_object_get(o, "ttl");
        r->ttl = json_is_integer(ttl) && json_integer_value(ttl) > 0
                     ? (uint32_t)json_integer_value(ttl)
                     : 0;
        json_t *sc = json_object_get(o, "supports_caching");
        r->caching = sc ? json_is_true(sc) : 1;
        json_decref(o);
    }
    free(line);
    if (in != stdin)
        fclose(in);

    int rc = acache_open(&w.c, &opts);
    if (rc) {
        fprintf(stderr, "acache-replay: open: %s: %s\n", acache_strerror(rc),
                acache_last_error());
        return 3;
    }
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    double t0 = now_s();
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!tids) {
        fprintf(stderr, "acache-replay: out of memory\n");
        return 4;
    }
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, worker, &w);
    /* A reporter thread sleeps on the condition variable between progress lines
     * and is woken as soon as the workers are done. */
    pthread_t reporter;
    int have_reporter = !quiet && pthread_create(&reporter, NULL, report, &w) == 0;
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    pthread_mutex_lock(&w.lock);
    w.finished = 1;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    if (have_reporter)
        pthread_join(reporter, NULL);
    double secs = now_s() - t0;
    printf("replayed %zu records (%lu ok, %lu errors, %lu unreadable lines) in %.3f s: "
           "%.0f ops/s, %d threads; %lu created, %lu refreshed, %lu switched\n",
           w.n, w.ok, w.errors, bad, secs, secs > 0 ? (double)w.ok / secs : 0.0, threads,
           w.created, w.refreshed, w.switched);
    acache_close(w.c);
    for (size_t i = 0; i < w.n; i++) {
        rec *r = &w.recs[i];
        free(r->ak), free(r->fmt), free(r->model), free(r->prov), free(r->ep),
            free(r->key);
    }
    free(w.recs);
    free(tids);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.errors || bad ? 4 : 0;
}
