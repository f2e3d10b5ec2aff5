/* acache-bench: shared helpers between the bench's source files. */
#ifndef ACACHE_BENCH_H
#define ACACHE_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* ---- timing ---- */
double bench_now(void); /* CLOCK_MONOTONIC seconds */
double bench_median(double *v, int n);

/* ---- results: one human line each, all gathered into the final JSON line ---- */
void result_num(const char *name, double v);
void result_int(const char *name, long long v);
void result_str(const char *name, const char *v);
/* Human line: name, value+unit, optional floor (<0: none), ratio target (<0: none). */
void report_line(const char *name, double v, const char *unit, double floor_v,
                 double target, const char *note);
void results_print_json(void);
void results_free(void);

/* ---- a private redis-server ---- */
typedef struct bench_redis {
    int port;
    int pid; /* 0: not ours */
    char host[64];
    char dir[256];
    char uri[160];
} bench_redis;

int bench_redis_start(bench_redis *r);
void bench_redis_stop(bench_redis *r);
/* Parse redis://host:port[/db] given with --redis into r (pid 0). */
int bench_redis_use(bench_redis *r, const char *uri);
redisContext *bench_redis_connect(const bench_redis *r);

/* ---- data set ---- */
typedef struct bench_data {
    size_t n;
    size_t n_models;
    double now; /* wall clock at generation */
    char target_provider[40];
    uint64_t value_bytes; /* sum of value lengths of all N pins */
    size_t target_pins;   /* pins on target_provider */
} bench_data;

/* The id the data set uses for (tag, idx): tags 0x0a affinity (API) keys,
 * 0x0b providers, 0x0c provider keys, 0x0d models, 0x0e endpoints; buf >= 37. */
void bench_uuid(char *buf, unsigned tag, uint64_t idx);
void bench_data_init(bench_data *d, size_t n);
/* Pin i's storage key and Aether JSON value into the buffers; returns the value length.
 */
size_t bench_pin(const bench_data *d, size_t i, char *key, size_t keycap, size_t *keylen,
                 char *val, size_t valcap);
/* Pipelined SET EX of the pins i (0 <= i < n) with i % every == 0 (every 1 = all).
 * Returns the number written, or -1. */
long bench_load(redisContext *c, const bench_data *d, size_t every);
/* Pipelined SCAN + UNLINK of cache_affinity:* (setup only). Returns count or -1. */
long bench_raw_clear(redisContext *c);

/* Pipelined SCAN MATCH pattern COUNT 1000 + MGET per page, no parsing (the
 * floor of any listing). Returns values seen, their bytes in *bytes; -1 on error. */
long raw_scan_mget(redisContext *r, const char *pattern, uint64_t *bytes);

/* ---- optional PostgreSQL sections (bench_pg.c) ---- */
struct acache;
/* Enriched listing vs unenriched (issue 3). `redis_uri` holds the N pins;
 * max_pages 0 = every page of 1000. */
void bench_pg_listing(const char *redis_uri, const bench_data *d, int runs,
                      size_t max_pages);
/* /affinities first page, full listing without snapshots, next page (issue 11
 * item 4): JSON catalog, and PostgreSQL too when with_pg. */
void bench_page_listing(const char *redis_uri, const bench_data *d, int runs,
                        int with_pg);
/* Model-mapping stats and TTL analysis (issue 4). */
void bench_mapping(const char *redis_uri, redisContext *r, int runs);

#endif
