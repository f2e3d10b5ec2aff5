/* acache-replay: record gateway traffic into a store, as a gateway would.
 *
 * Reads JSON lines {"affinity_key", "api_format", "model", "provider_id",
 * "endpoint_id", "key_id", "ttl"?, "supports_caching"?} from stdin or a file
 * and touches each through the library from N threads sharing one handle.
 * Prints one summary line: records, errors, seconds, ops/s. */
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
    size_t n, next;
    pthread_mutex_t lock;
    unsigned long ok, errors, created, refreshed, switched;
} work;

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
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t start = w->next, end = start + 256 < w->n ? start + 256 : w->n;
        w->next = end;
        pthread_mutex_unlock(&w->lock);
        if (start >= end)
            break;
        for (size_t i = start; i < end; i++) {
            rec *r = &w->recs[i];
            acache_touch_result res;
            int rc = acache_affinity_set(&res, w->c, r->ak, r->fmt, r->model, r->prov, r->ep,
                                         r->key, r->caching, r->ttl);
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

static void usage(FILE *f)
{
    fputs("usage: acache-replay [--store URI] [--threads N] [FILE]\n"
          "  reads JSON lines {\"affinity_key\",\"api_format\",\"model\",\"provider_id\",\n"
          "  \"endpoint_id\",\"key_id\",\"ttl\"?} from FILE or stdin and touches each pin\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"store", required_argument, 0, 's'},
                                             {"threads", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = getenv("ACACHE_STORE");
    int threads = 4, ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': opts.store_uri = optarg; break;
        case 't':
            threads = atoi(optarg);
            if (threads < 1 || threads > 256) {
                fprintf(stderr, "acache-replay: --threads must be 1..256\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
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
    while (getline(&line, &linecap, in) > 0) {
        lineno++;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o)) {
            if (bad++ < 5)
                fprintf(stderr, "acache-replay: line %zu: not a JSON object: %s\n", lineno,
                        o ? "wrong type" : err.text);
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
        fprintf(stderr, "acache-replay: open: %s: %s\n", acache_strerror(rc), acache_last_error());
        return 3;
    }
    pthread_mutex_init(&w.lock, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, worker, &w);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("replayed %zu records (%lu ok, %lu errors, %lu unreadable lines) in %.3f s: "
           "%.0f ops/s, %d threads; %lu created, %lu refreshed, %lu switched\n",
           w.n, w.ok, w.errors, bad, secs, secs > 0 ? (double)w.ok / secs : 0.0, threads,
           w.created, w.refreshed, w.switched);
    acache_close(w.c);
    for (size_t i = 0; i < w.n; i++) {
        rec *r = &w.recs[i];
        free(r->ak), free(r->fmt), free(r->model), free(r->prov), free(r->ep), free(r->key);
    }
    free(w.recs);
    free(tids);
    pthread_mutex_destroy(&w.lock);
    return w.errors || bad ? 4 : 0;
}
