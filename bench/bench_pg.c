/* acache-bench optional sections on a private PostgreSQL (run the bench under
 * tests/support/with-postgres.sh, which exports ACACHE_TEST_PG_URI):
 *   --pg       enriched listing vs unenriched listing (issue 3)
 *   --mapping  model-mapping stats vs raw SCAN+MGET, TTL analysis (issue 4)
 * Each makes a database of its own on that server and drops it afterwards. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "admin/listing_priv.h"
#include "aether_cache/aether_cache.h"
#include "analysis/results.h"
#include "bench.h"
#include "catalog/postgres.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "mapping/mapping_priv.h"

#define N_USERS 10000
#define N_API_KEYS 30000
#define N_PROVIDERS 50
#define N_PROVIDER_KEYS 200
#define N_FORMATS 4

static const char *formats[N_FORMATS] = {"claude", "openai", "gemini", "claude_cli"};

/* ---- a growable text buffer for COPY ---- */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n >= 0 && b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1 << 20;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        b->cap = cap;
    }
}

/* ---- the database ---- */

typedef struct {
    char base[512], uri[512], name[64];
    PGconn *conn;
    int ready;
} bench_db;

static bench_db db;

static void pg_ok(PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN) {
        fprintf(stderr, "bench: postgres %s: %s\n", what, PQresultErrorMessage(r));
        exit(1);
    }
}

static void pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    pg_ok(r, sql);
    PQclear(r);
}

static void pg_copy(PGconn *c, const char *copy_sql, const sbuf *rows)
{
    PGresult *r = PQexec(c, copy_sql);
    pg_ok(r, copy_sql);
    PQclear(r);
    if (PQputCopyData(c, rows->p, (int)rows->len) != 1 || PQputCopyEnd(c, NULL) != 1) {
        fprintf(stderr, "bench: COPY: %s\n", PQerrorMessage(c));
        exit(1);
    }
    while ((r = PQgetResult(c))) {
        pg_ok(r, copy_sql);
        PQclear(r);
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

/* tests/support/aether_fixture.sql, found from this file's own path (CMake
 * compiles with absolute paths) or $ACACHE_FIXTURE_SQL. */
static char *fixture_sql(void)
{
    const char *env = getenv("ACACHE_FIXTURE_SQL");
    if (env)
        return read_file(env);
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    slash = strrchr(path, '/');
    if (!slash)
        return NULL;
    snprintf(slash, sizeof path - (size_t)(slash - path),
             "/tests/support/aether_fixture.sql");
    return read_file(path);
}

static void drop_db(void)
{
    if (!db.ready)
        return;
    if (db.conn)
        PQfinish(db.conn);
    db.conn = NULL;
    PGconn *b = PQconnectdb(db.base);
    if (PQstatus(b) == CONNECTION_OK) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db.name);
        PQclear(PQexec(b, sql));
    }
    PQfinish(b);
    db.ready = 0;
}

/* Catalog rows matching the pins bench_pin writes: 10k users, 30k API keys
 * (ids = the pins' affinity keys), 50 providers, 200 endpoints, 200 provider
 * keys, the models; every key stored Fernet-encrypted under Aether's
 * development passphrase. Returns 0, or -1 when no server is configured. */
static int db_setup(size_t n_models)
{
    if (db.ready)
        return 0;
    const char *base = getenv("ACACHE_TEST_PG_URI");
    if (!base) {
        printf("postgres: ACACHE_TEST_PG_URI not set: run the bench under "
               "tests/support/with-postgres.sh to get these figures\n");
        return -1;
    }
    double t0 = bench_now();
    snprintf(db.base, sizeof db.base, "%s", base);
    snprintf(db.name, sizeof db.name, "acache_bench_%d", (int)getpid());
    PGconn *b = PQconnectdb(base);
    if (PQstatus(b) != CONNECTION_OK) {
        fprintf(stderr, "bench: postgres %s: %s\n", base, PQerrorMessage(b));
        exit(1);
    }
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db.name);
    pg_exec(b, sql);
    PQfinish(b);
    db.ready = 1;
    atexit(drop_db);
    /* Same server, our database: replace the path of the base URI. */
    snprintf(db.uri, sizeof db.uri, "%s", base);
    char *path = strstr(db.uri, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    if (path)
        *path = '\0';
    size_t l = strlen(db.uri);
    snprintf(db.uri + l, sizeof db.uri - l, "/%s", db.name);
    db.conn = PQconnectdb(db.uri);
    if (PQstatus(db.conn) != CONNECTION_OK) {
        fprintf(stderr, "bench: postgres %s: %s\n", db.uri, PQerrorMessage(db.conn));
        exit(1);
    }
    char *fx = fixture_sql();
    if (!fx) {
        fprintf(stderr, "bench: cannot read tests/support/aether_fixture.sql "
                        "(set ACACHE_FIXTURE_SQL)\n");
        exit(1);
    }
    pg_exec(db.conn, "SET client_min_messages = warning");
    pg_exec(db.conn, fx);
    free(fx);

    acache__crypto *k = NULL;
    const char *pass = acache__dev_encryption_key();
    if (acache__crypto_new(&k, pass, strlen(pass))) {
        fprintf(stderr, "bench: crypto: %s\n", acache_last_error());
        exit(1);
    }
    sbuf sb = {0};
    char id[40], id2[40], plain[80];
    unsigned char iv[16];
    for (unsigned u = 0; u < N_USERS; u++) {
        bench_uuid(id, 0x10, u);
        sb_printf(&sb, "%s\tuser%05u\tuser%05u@example.com\n", id, u, u);
    }
    pg_copy(db.conn, "COPY users (id, username, email) FROM STDIN", &sb);
    sb.len = 0;
    for (unsigned i = 0; i < N_API_KEYS; i++) {
        bench_uuid(id, 0x0a, i);
        bench_uuid(id2, 0x10, i % N_USERS);
        int pl = snprintf(plain, sizeof plain, "sk-user-%032u", i);
        for (int j = 0; j < 16; j++)
            iv[j] = (unsigned char)(i * 31 + (unsigned)j);
        char *stored = NULL;
        if (acache__crypto_encrypt(k, plain, (size_t)pl, 1732262400, iv, &stored)) {
            fprintf(stderr, "bench: encrypt: %s\n", acache_last_error());
            exit(1);
        }
        sb_printf(&sb, "%s\t%s\tkey-%05u\t%s\t%s\n", id, id2, i, stored,
                  i % 50 == 0 ? "t" : "f");
        free(stored);
    }
    pg_copy(db.conn,
            "COPY api_keys (id, user_id, name, key_encrypted, is_standalone) FROM STDIN",
            &sb);
    sb.len = 0;
    for (unsigned p = 0; p < N_PROVIDERS; p++) {
        bench_uuid(id, 0x0b, p);
        sb_printf(&sb, "%s\tprovider-%02u\tProvider %02u\n", id, p, p);
    }
    pg_copy(db.conn, "COPY providers (id, name, display_name) FROM STDIN", &sb);
    sb.len = 0;
    for (unsigned p = 0; p < N_PROVIDERS; p++)
        for (unsigned f = 0; f < N_FORMATS; f++) {
            bench_uuid(id, 0x0e, p * N_FORMATS + f);
            bench_uuid(id2, 0x0b, p);
            sb_printf(&sb, "%s\t%s\t%s\thttps://api.provider%02u.example/v1\n", id, id2,
                      formats[f], p);
        }
    pg_copy(db.conn,
            "COPY provider_endpoints (id, provider_id, api_format, base_url) FROM STDIN",
            &sb);
    sb.len = 0;
    for (unsigned i = 0; i < N_PROVIDER_KEYS; i++) {
        bench_uuid(id, 0x0c, i);
        bench_uuid(id2, 0x0e, (i % N_PROVIDERS) * N_FORMATS);
        int pl = snprintf(plain, sizeof plain, "sk-prov-%040u", i);
        for (int j = 0; j < 16; j++)
            iv[j] = (unsigned char)(i * 17 + (unsigned)j + 1);
        char *stored = NULL;
        if (acache__crypto_encrypt(k, plain, (size_t)pl, 1732262400, iv, &stored)) {
            fprintf(stderr, "bench: encrypt: %s\n", acache_last_error());
            exit(1);
        }
        sb_printf(&sb, "%s\t%s\tpkey-%03u\t%s\t%.1f\n", id, id2, i, stored,
                  1.0 + (i % 3) * 0.5);
        free(stored);
    }
    pg_copy(db.conn,
            "COPY provider_api_keys (id, endpoint_id, name, api_key, rate_multiplier) "
            "FROM STDIN",
            &sb);
    sb.len = 0;
    for (unsigned m = 0; m < n_models; m++) {
        bench_uuid(id, 0x0d, m);
        sb_printf(&sb, "%s\tmodel-%u\tModel %u\n", id, m, m);
    }
    pg_copy(db.conn, "COPY global_models (id, name, display_name) FROM STDIN", &sb);
    free(sb.p);
    acache__crypto_free(k);
    pg_exec(db.conn, "ANALYZE");
    printf("postgres: catalog loaded (%d users, %d API keys, %d providers, %d provider "
           "keys, "
           "%zu models; keys Fernet-encrypted) in %.2f s\n",
           N_USERS, N_API_KEYS, N_PROVIDERS, N_PROVIDER_KEYS, n_models, bench_now() - t0);
    return 0;
}

/* ---- the same catalog as a JSON file (no server needed) ---- */

static json_t *jrow(json_t *arr, json_t *row)
{
    if (!row || json_array_append_new(arr, row)) {
        fprintf(stderr, "bench: json catalog: out of memory\n");
        exit(1);
    }
    return row;
}

static char *encrypt_or_die(acache__crypto *k, const char *plain, int len,
                            const unsigned char iv[16])
{
    char *stored = NULL;
    if (acache__crypto_encrypt(k, plain, (size_t)len, 1732262400, iv, &stored)) {
        fprintf(stderr, "bench: encrypt: %s\n", acache_last_error());
        exit(1);
    }
    return stored;
}

/* The rows db_setup COPYs, written with jansson to a temporary file; returns
 * its path (malloc'd; the caller unlinks it). */
static char *json_catalog_file(size_t n_models)
{
    double t0 = bench_now();
    acache__crypto *k = NULL;
    const char *pass = acache__dev_encryption_key();
    if (acache__crypto_new(&k, pass, strlen(pass))) {
        fprintf(stderr, "bench: crypto: %s\n", acache_last_error());
        exit(1);
    }
    static const char *upper[N_FORMATS] = {"CLAUDE", "OPENAI", "GEMINI", "CLAUDE_CLI"};
    json_t *root = json_object(), *users = json_array(), *keys = json_array(),
           *provs = json_array(), *eps = json_array(), *pkeys = json_array(),
           *gms = json_array();
    json_object_set_new(root, "users", users);
    json_object_set_new(root, "api_keys", keys);
    json_object_set_new(root, "providers", provs);
    json_object_set_new(root, "provider_endpoints", eps);
    json_object_set_new(root, "provider_api_keys", pkeys);
    json_object_set_new(root, "global_models", gms);
    char id[40], id2[40], a[80], b[80];
    unsigned char iv[16];
    for (unsigned u = 0; u < N_USERS; u++) {
        bench_uuid(id, 0x10, u);
        snprintf(a, sizeof a, "user%05u", u);
        snprintf(b, sizeof b, "user%05u@example.com", u);
        jrow(users, json_pack("{ssssss}", "id", id, "username", a, "email", b));
    }
    for (unsigned i = 0; i < N_API_KEYS; i++) {
        bench_uuid(id, 0x0a, i);
        bench_uuid(id2, 0x10, i % N_USERS);
        int pl = snprintf(a, sizeof a, "sk-user-%032u", i);
        for (int j = 0; j < 16; j++)
            iv[j] = (unsigned char)(i * 31 + (unsigned)j);
        char *stored = encrypt_or_die(k, a, pl, iv);
        snprintf(b, sizeof b, "key-%05u", i);
        jrow(keys, json_pack("{sssssssssb}", "id", id, "user_id", id2, "name", b,
                             "key_encrypted", stored, "is_standalone", i % 50 == 0));
        free(stored);
    }
    for (unsigned p = 0; p < N_PROVIDERS; p++) {
        bench_uuid(id, 0x0b, p);
        snprintf(a, sizeof a, "provider-%02u", p);
        snprintf(b, sizeof b, "Provider %02u", p);
        jrow(provs, json_pack("{ssssss}", "id", id, "name", a, "display_name", b));
        for (unsigned f = 0; f < N_FORMATS; f++) {
            bench_uuid(id2, 0x0e, p * N_FORMATS + f);
            snprintf(a, sizeof a, "https://api.provider%02u.example/v1", p);
            jrow(eps, json_pack("{ssssssss}", "id", id2, "provider_id", id, "api_format",
                                upper[f], "base_url", a));
        }
    }
    for (unsigned i = 0; i < N_PROVIDER_KEYS; i++) {
        bench_uuid(id, 0x0c, i);
        bench_uuid(id2, 0x0e, (i % N_PROVIDERS) * N_FORMATS);
        int pl = snprintf(a, sizeof a, "sk-prov-%040u", i);
        for (int j = 0; j < 16; j++)
            iv[j] = (unsigned char)(i * 17 + (unsigned)j + 1);
        char *stored = encrypt_or_die(k, a, pl, iv);
        snprintf(b, sizeof b, "pkey-%03u", i);
        jrow(pkeys, json_pack("{sssssssssf}", "id", id, "endpoint_id", id2, "name", b,
                              "api_key", stored, "rate_multiplier", 1.0 + (i % 3) * 0.5));
        free(stored);
    }
    for (unsigned m = 0; m < n_models; m++) {
        bench_uuid(id, 0x0d, m);
        snprintf(a, sizeof a, "model-%u", m);
        snprintf(b, sizeof b, "Model %u", m);
        jrow(gms, json_pack("{ssssss}", "id", id, "name", a, "display_name", b));
    }
    acache__crypto_free(k);
    char *path = strdup("/tmp/acache-bench-catalog-XXXXXX");
    int fd = path ? mkstemp(path) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || json_dumpf(root, f, JSON_COMPACT) || fclose(f)) {
        fprintf(stderr, "bench: cannot write the JSON catalog\n");
        exit(1);
    }
    json_decref(root);
    printf("json catalog: %s written in %.2f s\n", path, bench_now() - t0);
    return path;
}

static acache *open_catalog_handle(const char *redis_uri, const char *catalog_uri)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = redis_uri;
    o.catalog_uri = catalog_uri;
    o.use_dev_encryption_key = 1;
    o.command_timeout_ms = 600000;
    o.l1_ttl_ms = -1;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    if (rc) {
        fprintf(stderr, "bench: acache_open (catalog %s): %s: %s\n", catalog_uri,
                acache_strerror(rc), acache_last_error());
        exit(1);
    }
    return c;
}

static acache *open_pg_handle(const char *redis_uri)
{
    return open_catalog_handle(redis_uri, db.uri);
}

/* ---- issue 11 item 4: /affinities first page vs one listing before snapshots ---- */

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One listing call as /affinities makes it (listing, JSON body, free). fresh:
 * the path without snapshots; drop: every snapshot dropped first (the first
 * page, which builds one). Wall milliseconds; *cpu_ms: this thread's CPU
 * (the listing's client work, which the load of a shared machine moves less). */
static double time_listing(acache *c, const char *kw, int64_t offset, int fresh, int drop,
                           double *cpu_ms)
{
    if (drop)
        atomic_fetch_add(&c->admin_gen, 1);
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = kw;
    q.limit = 100;
    q.offset = offset;
    acache__listing *l = NULL;
    acache_buf b = ACACHE_BUF_INIT;
    double t0 = bench_now(), u0 = thread_cpu_s();
    int rc = fresh ? acache__list_affinities_fresh(&l, c, &q)
                   : acache__list_affinities(&l, c, &q);
    if (rc == ACACHE_OK)
        rc = acache__listing_to_json(&b, l);
    acache__listing_free(l);
    acache_buf_dispose(&b);
    double ms = (bench_now() - t0) * 1e3;
    if (cpu_ms)
        *cpu_ms = (thread_cpu_s() - u0) * 1e3;
    if (rc) {
        fprintf(stderr, "bench: listing: %s: %s\n", acache_strerror(rc),
                acache_last_error());
        exit(1);
    }
    return ms;
}

static void page_figure(acache *c, const char *cat, const char *kw, const char *kwname,
                        int runs)
{
    double a[16], b[16], n[16], ac[16], bc[16];
    if (runs > 16)
        runs = 16;
    time_listing(c, kw, 0, 1, 0, NULL); /* warm: connections, catalog, heap */
    for (int k = 0; k < runs; k++) {
        a[k] = time_listing(c, kw, 0, 1, 1, &ac[k]);
        b[k] = time_listing(c, kw, 0, 0, 1, &bc[k]);
        n[k] = time_listing(c, kw, 100 * (k + 1), 0, 0, NULL);
    }
    double am = bench_median(a, runs), bm = bench_median(b, runs),
           nm = bench_median(n, runs), acm = bench_median(ac, runs),
           bcm = bench_median(bc, runs);
    printf("%-8s %-7s (a) full listing %8.1f ms (cpu %7.1f)  (b) first page %8.1f ms "
           "(cpu %7.1f)  (b)/(a) %.2f %s (cpu %.2f)  (c) next page %6.2f ms %s\n",
           cat, kwname, am, acm, bm, bcm, bm / am, bm <= am ? "OK" : "MISS", bcm / acm,
           nm, nm <= 20.0 ? "OK" : "MISS");
    char name[96];
    snprintf(name, sizeof name, "page_%s_%s_full_ms", cat, kwname);
    result_num(name, am);
    snprintf(name, sizeof name, "page_%s_%s_first_ms", cat, kwname);
    result_num(name, bm);
    snprintf(name, sizeof name, "page_%s_%s_first_ratio", cat, kwname);
    result_num(name, bm / am);
    snprintf(name, sizeof name, "page_%s_%s_next_ms", cat, kwname);
    result_num(name, nm);
    snprintf(name, sizeof name, "page_%s_%s_full_cpu_ms", cat, kwname);
    result_num(name, acm);
    snprintf(name, sizeof name, "page_%s_%s_first_cpu_ms", cat, kwname);
    result_num(name, bcm);
}

void bench_page_listing(const char *redis_uri, const bench_data *d, int runs, int with_pg)
{
    printf("/affinities limit 100: (a) one listing without snapshots, (b) the first "
           "page (builds the snapshot), (c) the next page; median of %d, a and b "
           "alternated; cpu = this thread's\n",
           runs);
    char *path = json_catalog_file(d->n_models);
    acache *c = open_catalog_handle(redis_uri, path);
    page_figure(c, "json", NULL, "all", runs);
    page_figure(c, "json", "user0004", "keyword", runs);
    acache_close(c);
    unlink(path);
    free(path);
    if (with_pg && db_setup(d->n_models) == 0) {
        c = open_pg_handle(redis_uri);
        page_figure(c, "postgres", NULL, "all", runs);
        page_figure(c, "postgres", "user0004", "keyword", runs);
        acache_close(c);
    }
}

static unsigned long stmts(acache *c)
{
    return c->catalog && acache__catalog_is_postgres(c->catalog)
               ? acache__pg_statement_count(c->catalog)
               : 0;
}

/* ---- issue 3: enriched listing ---- */

void bench_pg_listing(const char *redis_uri, const bench_data *d, int runs,
                      size_t max_pages)
{
    if (db_setup(d->n_models))
        return;
    acache *c = open_pg_handle(redis_uri);
    double t[16];
    for (int k = 0; k < runs; k++) {
        acache__affinity_list *l = NULL;
        double t0 = bench_now();
        int rc = acache__affinity_list_fetch(&l, c, NULL);
        acache__affinity_list_free(l);
        t[k] = bench_now() - t0;
        if (rc) {
            fprintf(stderr, "bench: list_fetch: %s\n", acache_last_error());
            exit(1);
        }
    }
    double plain = bench_median(t, runs);

    /* Every page of limit 1000, each a full acache__list_affinities call. */
    size_t total = 0, pages = 0;
    if (max_pages == 0 || max_pages > 100000)
        max_pages = 100000;
    double *pt = malloc(max_pages * sizeof *pt);
    unsigned long st_max = 0, st_sum = 0;
    double all0 = bench_now();
    for (int64_t off = 0; pages < max_pages; off += 1000) {
        acache_list_query q = ACACHE_LIST_QUERY_INIT;
        q.limit = 1000;
        q.offset = off;
        acache__listing *l = NULL;
        unsigned long s0 = stmts(c);
        double t0 = bench_now();
        int rc = acache__list_affinities(&l, c, &q);
        double dt = bench_now() - t0;
        unsigned long ds = stmts(c) - s0;
        if (rc) {
            fprintf(stderr, "bench: acache__list_affinities: %s: %s\n",
                    acache_strerror(rc), acache_last_error());
            exit(1);
        }
        total = acache__listing_total(l);
        size_t count = acache__listing_count(l);
        acache__listing_free(l);
        pt[pages++] = dt;
        st_sum += ds;
        if (ds > st_max)
            st_max = ds;
        if (count == 0 || (size_t)off + 1000 >= total)
            break;
    }
    double all = bench_now() - all0;
    double page_med = bench_median(pt, (int)pages);

    /* One keyword search: a username (selects that user's keys' pins). */
    const char *kw = "user00042";
    for (int k = 0; k < runs; k++) {
        acache_list_query q = ACACHE_LIST_QUERY_INIT;
        q.keyword = kw;
        q.limit = 1000;
        acache__listing *l = NULL;
        double t0 = bench_now();
        int rc = acache__list_affinities(&l, c, &q);
        t[k] = bench_now() - t0;
        if (rc) {
            fprintf(stderr, "bench: keyword listing: %s\n", acache_last_error());
            exit(1);
        }
        if (k == 0)
            printf("postgres: keyword \"%s\" matched %zu pins\n", kw,
                   acache__listing_total(l));
        acache__listing_free(l);
    }
    double kw_s = bench_median(t, runs);

    report_line("list unenriched", plain, "s", -1, -1,
                "(acache__affinity_list_fetch, catalog handle)");
    char note[128];
    snprintf(note, sizeof note, "median of %zu pages of 1000 (total %zu pins)", pages,
             total);
    report_line("enriched page", page_med, "s", plain, 2.0, note);
    size_t all_pages = (total + 999) / 1000;
    snprintf(note, sizeof note, "%zu of %zu pages%s", pages, all_pages,
             pages < all_pages ? " (--pg-pages)" : "");
    report_line("enriched pages total", all, "s", -1, -1, note);
    report_line("enriched keyword", kw_s, "s", plain, 2.0, "keyword = a username");
    printf("%-22s %14.1f   (max %lu per call)\n", "  SQL stmts per call",
           pages ? (double)st_sum / (double)pages : 0.0, st_max);
    result_num("pg_list_plain_s", plain);
    result_num("pg_list_enriched_page_s", page_med);
    result_num("pg_list_enriched_ratio", page_med / plain);
    result_num("pg_list_enriched_pages_total_s", all);
    result_int("pg_list_pages_measured", (long long)pages);
    result_int("pg_list_pages_all", (long long)all_pages);
    result_num("pg_list_keyword_s", kw_s);
    result_num("pg_list_keyword_ratio", kw_s / plain);
    result_num("pg_sql_statements_per_call",
               pages ? (double)st_sum / (double)pages : 0.0);
    result_int("pg_sql_statements_max", (long long)st_max);
    free(pt);
    acache_close(c);
}

/* ---- issue 4: model-mapping stats, TTL analysis ---- */

#define MAP_KEYS 10000

static void load_mapping_keys(redisContext *r)
{
    char key[256], val[1024], gm[40], prov[40], mid[40];
    size_t pending = 0;
    for (unsigned i = 0; i < 2 * MAP_KEYS; i++) {
        int kl, vl;
        if (i < MAP_KEYS) {
            /* global_model:resolve:{alias} -> GlobalModel JSON */
            bench_uuid(gm, 0x0d, i % 8);
            kl = snprintf(key, sizeof key, "global_model:resolve:alias-%05u", i);
            vl = snprintf(
                val, sizeof val,
                "{\"id\": \"%s\", \"name\": \"model-%u\", \"display_name\": "
                "\"Model %u\", \"supported_capabilities\": null, \"config\": {}, "
                "\"is_active\": true}",
                gm, i % 8, i % 8);
        } else {
            /* model:provider_global:{provider}:{global model} -> Model JSON */
            unsigned j = i - MAP_KEYS;
            bench_uuid(prov, 0x0b, j % N_PROVIDERS);
            bench_uuid(gm, 0x0f, j / N_PROVIDERS);
            bench_uuid(mid, 0x11, j);
            kl = snprintf(key, sizeof key, "model:provider_global:%s:%s", prov, gm);
            vl =
                snprintf(val, sizeof val,
                         "{\"id\": \"%s\", \"provider_id\": \"%s\", \"global_model_id\": "
                         "\"%s\", \"provider_model_name\": \"upstream-%05u\", "
                         "\"provider_model_mappings\": [{\"name\": \"alias-%05u\"}], "
                         "\"is_active\": true}",
                         mid, prov, gm, j, j);
        }
        const char *argv[] = {"SET", key, val, "EX", "3600"};
        size_t lens[] = {3, (size_t)kl, (size_t)vl, 2, 4};
        redisAppendCommandArgv(r, 5, argv, lens);
        if (++pending == 1000 || i + 1 == 2 * MAP_KEYS) {
            for (size_t k = 0; k < pending; k++) {
                redisReply *rep;
                if (redisGetReply(r, (void **)&rep) != REDIS_OK)
                    exit(1);
                freeReplyObject(rep);
            }
            pending = 0;
        }
    }
}

void bench_mapping(const char *redis_uri, redisContext *r, int runs)
{
    int have_pg = db_setup(8) == 0;
    load_mapping_keys(r);
    acache *c;
    if (have_pg) {
        c = open_pg_handle(redis_uri);
    } else {
        acache_options o = ACACHE_OPTIONS_INIT;
        o.store_uri = redis_uri;
        o.command_timeout_ms = 600000;
        if (acache_open(&c, &o)) {
            fprintf(stderr, "bench: acache_open: %s\n", acache_last_error());
            exit(1);
        }
    }
    double a[16], b[16];
    uint64_t total_keys = 0;
    for (int k = 0; k < runs; k++) {
        uint64_t bytes = 0;
        double t0 = bench_now();
        /* One pass over both families (model:* and global_model:*). */
        long n1 = raw_scan_mget(r, "*model:*", &bytes), n2 = 0;
        b[k] = bench_now() - t0;
        acache__model_mapping_stats *s = NULL;
        t0 = bench_now();
        int rc = acache__model_mapping_stats_get(&s, c);
        a[k] = bench_now() - t0;
        if (rc) {
            fprintf(stderr, "bench: mapping stats: %s: %s\n", acache_strerror(rc),
                    acache_last_error());
            exit(1);
        }
        total_keys = acache__model_mapping_stats_total_keys(s);
        acache__model_mapping_stats_free(s);
        if (k == 0 && (uint64_t)(n1 + n2) != total_keys)
            fprintf(stderr, "bench: WARNING: mapping stats counted %llu keys, raw %ld\n",
                    (unsigned long long)total_keys, n1 + n2);
    }
    double m = bench_median(a, runs), mf = bench_median(b, runs);
    char note[96];
    snprintf(note, sizeof note, "%llu keys (10k resolve + 10k provider-level)%s",
             (unsigned long long)total_keys, have_pg ? "" : ", no catalog");
    report_line("mapping_stats", m, "s", mf, 2.0, note);
    result_num("mapping_stats_s", m);
    result_num("mapping_floor_s", mf);
    result_num("mapping_ratio", m / mf);
    acache__model_mapping_clear_all(NULL, c);

    if (have_pg) {
        /* 1M completed usage rows over the last 23 h, spread over the users
         * and their keys, made server-side. */
        double t0 = bench_now();
        /* Rows reference existing users/keys by construction, so the FK
         * triggers are skipped (session_replication_role) to load quickly. */
        pg_exec(
            db.conn,
            "CREATE TEMP TABLE ui AS SELECT (row_number() OVER (ORDER BY id) - 1)::int i,"
            " id FROM users;"
            "CREATE TEMP TABLE ki AS SELECT (row_number() OVER (ORDER BY id) - 1)::int i,"
            " id FROM api_keys;"
            "ANALYZE ui; ANALYZE ki;"
            "SET session_replication_role = replica;"
            "INSERT INTO usage (id, user_id, api_key_id, model, status, input_tokens,"
            "   cache_creation_input_tokens, cache_read_input_tokens, created_at)"
            " SELECT 'usage-' || g, ui.id, ki.id,"
            "   'model-' || (g % 8), 'completed', 1000, (g % 3) * 100, (g % 5) * 200,"
            "   now() - make_interval(secs => (g * 0.0827) % 82800)"
            " FROM generate_series(1, 1000000) g"
            " JOIN ui ON ui.i = g % 10000 JOIN ki ON ki.i = g % 30000;"
            "SET session_replication_role = DEFAULT;");
        pg_exec(db.conn, "ANALYZE usage");
        double load = bench_now() - t0;
        printf("postgres: 1000000 usage rows loaded in %.1f s\n", load);
        for (int k = 0; k < runs && k < 3; k++) {
            acache__ttl_analysis *ta = NULL;
            t0 = bench_now();
            int rc = acache__ttl_analysis_compute(&ta, c, 24, NULL, NULL);
            a[k] = bench_now() - t0;
            if (rc) {
                fprintf(stderr, "bench: ttl analysis: %s: %s\n", acache_strerror(rc),
                        acache_last_error());
                exit(1);
            }
            if (k == 0)
                printf("postgres: TTL analysis: %zu groups\n",
                       acache__ttl_analysis_group_count(ta));
            acache__ttl_analysis_free(ta);
        }
        int nr = runs < 3 ? runs : 3;
        double ttl = bench_median(a, nr);
        snprintf(note, sizeof note, "1M usage rows, %.0f rows/s", 1e6 / ttl);
        report_line("ttl_analysis", ttl, "s", -1, -1, note);
        result_num("ttl_analysis_s", ttl);
        result_num("ttl_analysis_rows_per_s", 1e6 / ttl);
    }
    acache_close(c);
}
