/* The SCAN + MGET pipeline behind both scans of the Redis store. */
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

/* SCAN's MATCH is a glob: escape so that the prefix is matched literally. */
static char *match_pattern(const char *prefix)
{
    size_t n = strlen(prefix);
    char *p = acache__malloc(2 * n + 2), *o = p;
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", prefix[i]))
            *o++ = '\\';
        *o++ = prefix[i];
    }
    *o++ = '*';
    *o = '\0';
    return p;
}

/* Buffers reused across pages so the listing does no per-key allocation
 * beyond what hiredis and the JSON parser do. */
typedef struct scan_bufs {
    const char **argv;
    size_t *lens;
    acache_entry *entries;
    acache_record *recs;
    size_t cap;
    /* record strings copied out of the parser (offsets into arena, fixed up
     * into pointers once the page is parsed: the arena may move while growing) */
    size_t (*offs)[5];
    char *arena;
    size_t arena_len, arena_cap;
    /* A cluster node (cluster.c): MGET would be -CROSSSLOT across slots, so
     * each page's values are pipelined GETs, `gets` of them owed. */
    int per_key;
    size_t gets;
} scan_bufs;

static int bufs_reserve(scan_bufs *b, size_t n)
{
    if (n <= b->cap)
        return ACACHE_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap *= 2;
    void *p;
    if (!(p = acache__realloc(b->argv, (cap + 1) * sizeof *b->argv)))
        return acache__oom();
    b->argv = p;
    if (!(p = acache__realloc(b->lens, (cap + 1) * sizeof *b->lens)))
        return acache__oom();
    b->lens = p;
    if (!(p = acache__realloc(b->entries, cap * sizeof *b->entries)))
        return acache__oom();
    b->entries = p;
    if (!(p = acache__realloc(b->recs, cap * sizeof *b->recs)))
        return acache__oom();
    b->recs = p;
    if (!(p = acache__realloc(b->offs, cap * sizeof *b->offs)))
        return acache__oom();
    b->offs = p;
    b->cap = cap;
    return ACACHE_OK;
}

static void bufs_free(scan_bufs *b)
{
    free(b->argv);
    free(b->lens);
    free(b->entries);
    free(b->recs);
    free(b->offs);
    free(b->arena);
}

#define NO_STR ((size_t)-1)

typedef struct parse_ctx {
    scan_bufs *b;
    size_t i;
    int oom;
} parse_ctx;

static size_t arena_put(parse_ctx *p, const char *str)
{
    if (!str)
        return NO_STR;
    scan_bufs *b = p->b;
    size_t n = strlen(str) + 1;
    if (b->arena_len + n > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : 64 * 1024;
        while (cap < b->arena_len + n)
            cap *= 2;
        char *a = acache__realloc(b->arena, cap);
        if (!a) {
            p->oom = 1;
            return NO_STR;
        }
        b->arena = a;
        b->arena_cap = cap;
    }
    size_t off = b->arena_len;
    memcpy(b->arena + off, str, n);
    b->arena_len += n;
    return off;
}

static void parse_cb(const acache_record *rec, void *payload)
{
    parse_ctx *p = payload;
    size_t *o = p->b->offs[p->i];
    p->b->recs[p->i] = *rec;
    o[0] = arena_put(p, rec->provider_id);
    o[1] = arena_put(p, rec->endpoint_id);
    o[2] = arena_put(p, rec->key_id);
    o[3] = arena_put(p, rec->api_format);
    o[4] = arena_put(p, rec->model_name);
}

static const char *arena_ptr(const scan_bufs *b, size_t off)
{
    return off == NO_STR ? NULL : b->arena + off;
}

/* Turn one page (keys from SCAN, values from MGET or NULL) into entries. */
static int build_page(scan_bufs *b, const redisReply *keys, const redisReply *vals,
                      int parse, size_t *count)
{
    size_t n = keys->elements;
    if (vals && (vals->type != REDIS_REPLY_ARRAY || vals->elements != n))
        return acache_error_set(ACACHE_ESTORE, "redis MGET: unexpected reply");
    b->arena_len = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = keys->element[i];
        acache_entry *e = &b->entries[i];
        memset(e, 0, sizeof *e);
        e->key = k->str;
        e->key_len = k->len;
        const redisReply *v = vals ? vals->element[i] : NULL;
        if (!v || v->type != REDIS_REPLY_STRING)
            continue;
        if (!parse) {
            e->value = v->str;
            e->value_len = v->len;
            continue;
        }
        parse_ctx p = {b, i, 0};
        if (acache_record_parse(v->str, v->len, parse_cb, &p) == ACACHE_OK) {
            if (p.oom)
                return acache__oom();
            e->record = &b->recs[i]; /* strings fixed up below */
        }
    }
    if (parse) {
        for (size_t i = 0; i < n; i++) {
            if (!b->entries[i].record)
                continue;
            acache_record *r = &b->recs[i];
            r->provider_id = arena_ptr(b, b->offs[i][0]);
            r->endpoint_id = arena_ptr(b, b->offs[i][1]);
            r->key_id = arena_ptr(b, b->offs[i][2]);
            r->api_format = arena_ptr(b, b->offs[i][3]);
            r->model_name = arena_ptr(b, b->offs[i][4]);
        }
    }
    *count = n;
    return ACACHE_OK;
}

static int valid_scan_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[0]->type == REDIS_REPLY_STRING &&
           r->element[1]->type == REDIS_REPLY_ARRAY;
}

/* Queue the requests that follow a SCAN page: the MGET of its keys (when
 * values are wanted) and the SCAN of the next page (unless it was the last). */
static int queue_page(rconn *c, scan_bufs *b, const redisReply *page,
                      const char **scan_argv, int with_values, int *want_vals,
                      int *want_scan)
{
    const redisReply *keys = page->element[1];
    size_t n = keys->elements;
    int rc = bufs_reserve(b, n);
    if (rc)
        return rc;
    *want_vals = with_values && n > 0;
    if (*want_vals && b->per_key) {
        for (size_t i = 0; i < n; i++) {
            const char *argv[] = {"GET", keys->element[i]->str};
            size_t lens[] = {3, keys->element[i]->len};
            if (rconn_append(c, 2, argv, lens) != 0)
                return acache__oom();
        }
        b->gets = n;
    } else if (*want_vals) {
        b->argv[0] = "MGET";
        b->lens[0] = 4;
        for (size_t i = 0; i < n; i++) {
            b->argv[i + 1] = keys->element[i]->str;
            b->lens[i + 1] = keys->element[i]->len;
        }
        if (rconn_append(c, (int)(n + 1), b->argv, b->lens) != 0)
            return acache__oom();
    }
    *want_scan = strcmp(page->element[0]->str, "0") != 0;
    if (*want_scan) {
        scan_argv[1] = page->element[0]->str;
        if (rconn_append(c, 6, scan_argv, NULL) != 0)
            return acache__oom();
    }
    return ACACHE_OK;
}

/* The values of a page: the MGET reply, or the GETs as one array reply
 * (freed by freeReplyObject like any array; it skips NULL elements). A GET
 * answered -MOVED / -ASK (the key left this node after SCAN found it) is a
 * key without a value, like one that expired in between; any other error
 * reply is returned alone, as an MGET error would be. */
static int read_vals(rconn *c, scan_bufs *b, redisReply **out)
{
    *out = NULL;
    if (!b->per_key)
        return rconn_read(c, out);
    size_t n = b->gets;
    b->gets = 0;
    redisReply *arr = calloc(1, sizeof *arr);
    redisReply **el = calloc(n ? n : 1, sizeof *el);
    if (arr && el) {
        arr->type = REDIS_REPLY_ARRAY;
        arr->element = el;
        arr->elements = n;
    } else {
        free(arr);
        free(el);
        arr = NULL;
    }
    int rc = 0;
    redisReply *err = NULL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        redisReply *r;
        if ((rc = rconn_read(c, &r)) != 0)
            break;
        if (!arr) { /* out of memory: stay in step, then fail */
            freeReplyObject(r);
            continue;
        }
        el[i] = r;
        if (r->type == REDIS_REPLY_ERROR && !err &&
            !(r->len > 6 &&
              (memcmp(r->str, "MOVED ", 6) == 0 || memcmp(r->str, "ASK ", 4) == 0)))
            err = r;
    }
    if (rc != 0 || !arr) {
        freeReplyObject(arr);
        return -1;
    }
    if (err) {
        for (size_t i = 0; i < n; i++)
            if (el[i] == err)
                el[i] = NULL;
        freeReplyObject(arr);
        *out = err;
        return 0;
    }
    *out = arr;
    return 0;
}

static int check_page(const redisReply *page, const char *pat)
{
    if (!valid_scan_reply(page))
        return acache__redis_reply_fail(page, "SCAN", pat);
    const redisReply *keys = page->element[1];
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return acache__redis_reply_fail(keys->element[i], "SCAN", pat);
    return ACACHE_OK;
}

/* SCAN pages with their values, pipelined one page ahead: the MGET of page
 * k+1 and the SCAN of page k+2 are on the wire while page k is parsed and
 * handed to the callback, so Redis and the JSON parser work at the same time
 * (parsing is most of a listing's cost). `*called` tells the caller whether
 * the callback ran (after which a retry would repeat entries). */
static int scan_once(redis_store *s, rconn *c, const char *pat, int with_values,
                     int parse, acache_entry_batch_cb cb, void *payload, scan_bufs *b,
                     int *called, int *broken)
{
    redisReply *page = NULL, *vals = NULL, *next = NULL;
    int rc, want_vals = 0, want_scan = 0;
    const char *scan_argv[] = {"SCAN", "0", "MATCH", pat, "COUNT", SCAN_COUNT};
    if (rconn_append(c, 6, scan_argv, NULL) != 0)
        return acache__oom();
    if (rconn_read(c, &page) != 0) {
        *broken = rconn_err(c) == RIO_BROKEN;
        return acache__redis_io_fail(s, c, "SCAN", pat);
    }
    if ((rc = check_page(page, pat)) ||
        (rc = queue_page(c, b, page, scan_argv, with_values, &want_vals, &want_scan)))
        goto out;
    while (page) {
        if (want_vals && read_vals(c, b, &vals) != 0) {
            rc = acache__redis_io_fail(s, c, "MGET", pat);
            goto out;
        }
        want_vals = 0;
        if (want_scan && rconn_read(c, &next) != 0) {
            rc = acache__redis_io_fail(s, c, "SCAN", pat);
            goto out;
        }
        want_scan = 0;
        if (vals && vals->type == REDIS_REPLY_ERROR) {
            rc = acache__redis_reply_fail(vals, "MGET", pat);
            goto out;
        }
        /* Put the following page's requests on the wire before parsing. */
        if (next) {
            if ((rc = check_page(next, pat)) ||
                (rc = queue_page(c, b, next, scan_argv, with_values, &want_vals,
                                 &want_scan)))
                goto out;
            if (rconn_flush(c) != 0) {
                rc = acache__redis_io_fail(s, c, "SCAN", pat);
                goto out;
            }
        }
        size_t count = 0;
        if ((rc = build_page(b, page->element[1], vals, parse, &count)))
            goto out;
        if (count > 0) {
            *called = 1;
            if ((rc = cb(b->entries, count, payload)))
                goto out;
        }
        freeReplyObject(page);
        page = next;
        next = NULL;
        if (vals)
            freeReplyObject(vals);
        vals = NULL;
    }
out:
    /* Stopped early with replies still owed: read them so the connection
     * goes back to the pool clean (an I/O error discards it instead). */
    while (rconn_err(c) == RIO_OK && (want_vals || want_scan)) {
        redisReply *junk = NULL;
        if ((want_vals ? read_vals(c, b, &junk) : rconn_read(c, &junk)) != 0)
            break;
        freeReplyObject(junk);
        if (want_vals)
            want_vals = 0;
        else
            want_scan = 0;
    }
    if (page)
        freeReplyObject(page);
    if (next)
        freeReplyObject(next);
    if (vals)
        freeReplyObject(vals);
    return rc;
}

int acache__redis_scan(redis_store *s, const char *prefix, int with_values, int parse,
                       acache_entry_batch_cb cb, void *payload)
{
    char *pat = match_pattern(prefix ? prefix : "");
    if (!pat)
        return acache__oom();
    scan_bufs b;
    memset(&b, 0, sizeof b);
    b.per_key = s->cluster_node;
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    int rc;
    for (int attempt = 0;; attempt++) {
        rconn *c;
        if ((rc = acache__redis_conn_get(s, &c)))
            break;
        int called = 0, broken = 0;
        rc = scan_once(s, c, pat, with_values, parse, cb, payload, &b, &called, &broken);
        /* Only an I/O failure leaves replies owed; keep the connection
         * otherwise (a callback's stop code or an error reply is fine). */
        acache__redis_conn_put(s, c, rconn_err(c) != RIO_OK);
        if (!(rc && broken && !called && attempt == 0))
            break;
    }
    acache__redis_sigpipe_restore(&g);
    bufs_free(&b);
    free(pat);
    return rc;
}
