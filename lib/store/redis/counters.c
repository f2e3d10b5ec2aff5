/* Fleet counters of the Redis store (docs/fleet.md), outside cache_affinity:*
 * so listing, clear-all and Aether never see them:
 *
 *   acache:stats            hash: fleet totals, HINCRBY by each flush (no TTL)
 *   acache:instance:<id>    hash: instance_id, version, started_at, last_flush
 *                           and c:<name> = that instance's own totals; PEXPIRE
 *                           a few flush intervals, so a dead one ages out
 *   acache:instances        set of ids; members whose record expired are
 *                           removed by the next read
 *
 * A flush is one pipeline on one pooled connection (no MULTI: each command is
 * idempotent except HINCRBY, and the core never replays a flush that may
 * have reached the server). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

#define STATS_KEY "acache:stats"
#define INSTANCES_KEY "acache:instances"
#define INSTANCE_PREFIX "acache:instance:"
#define META_FIELDS 4 /* instance_id, version, started_at, last_flush */

/* Integer or decimal text of a reply, by length (never strlen on data). */
static int reply_text(const redisReply *r, char *buf, size_t cap)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= cap)
        return 0;
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    return 1;
}

static uint64_t reply_u64(const redisReply *r)
{
    char b[32], *end;
    if (r && r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (!reply_text(r, b, sizeof b) || b[0] == '-')
        return 0;
    unsigned long long v = strtoull(b, &end, 10);
    return *end ? 0 : (uint64_t)v;
}

static double reply_double(const redisReply *r)
{
    char b[64], *end;
    if (!reply_text(r, b, sizeof b))
        return 0.0;
    double v = strtod(b, &end);
    return *end ? 0.0 : v;
}

/* Read `n` replies; the first error is kept. A broken read marks the
 * connection failed (it is discarded by the caller). */
static int read_replies(redis_store *s, rconn *c, size_t n, const char *what)
{
    int rc = ACACHE_OK;
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (rconn_read(c, &r) != 0)
            return acache__redis_io_fail(s, c, "flush", what);
        if (r->type == REDIS_REPLY_ERROR && !rc)
            rc = acache__redis_reply_fail(r, "flush", what);
        freeReplyObject(r);
    }
    return rc;
}

typedef struct {
    const char **argv;
    size_t *lens;
    char (*num)[32];
    int argc;
} argbuf;

static void arg(argbuf *a, const char *p, size_t n)
{
    a->argv[a->argc] = p;
    a->lens[a->argc] = n;
    a->argc++;
}

static void arg_str(argbuf *a, const char *p)
{
    arg(a, p, strlen(p));
}

static void arg_num(argbuf *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void arg_num(argbuf *a, const char *fmt, ...)
{
    char *b = a->num[a->argc];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b, 32, fmt, ap);
    va_end(ap);
    arg(a, b, k < 0 ? 0 : (size_t)(k < 32 ? k : 31));
}

/* Field names "c:<name>" of the instance hash, in one allocation. */
static char *field_names(const char *const *names, size_t n, char ***out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(names[i]) + 3;
    char *buf = acache__malloc(total ? total : 1);
    char **v = acache__malloc((n ? n : 1) * sizeof *v);
    if (!buf || !v) {
        free(buf);
        free(v);
        return NULL;
    }
    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        v[i] = p;
        p += sprintf(p, "c:%s", names[i]) + 1;
    }
    *out = v;
    return buf;
}

static int counters_flush(acache_store *self, const acache_counter_flush *f, int *sent)
{
    redis_store *s = (redis_store *)self;
    *sent = 0;
    size_t n = f->n;
    /* Largest command: HSET key + 4 meta pairs + n pairs. */
    size_t cap = 2 + 2 * META_FIELDS + 2 * n + 4;
    argbuf a = {acache__malloc(cap * sizeof *a.argv),
                acache__malloc(cap * sizeof *a.lens), acache__malloc(cap * sizeof *a.num),
                0};
    char **fields = NULL;
    char *fbuf = field_names(f->names, n, &fields);
    char *ikey = acache__sprintf(INSTANCE_PREFIX "%s", f->instance_id);
    if (!a.argv || !a.lens || !a.num || !fbuf || !ikey) {
        free(a.argv);
        free(a.lens);
        free(a.num);
        free(fbuf);
        free(fields);
        free(ikey);
        return acache__oom();
    }
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c = NULL;
    int rc = acache__redis_conn_get(s, &c);
    size_t queued = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!f->deltas[i])
            continue;
        a.argc = 0;
        arg_str(&a, "HINCRBY");
        arg_str(&a, STATS_KEY);
        arg_str(&a, f->names[i]);
        arg_num(&a, "%llu", (unsigned long long)f->deltas[i]);
        if (rconn_append(c, a.argc, a.argv, a.lens) != 0)
            rc = acache__oom();
        else
            queued++;
    }
    if (!rc) {
        a.argc = 0;
        if (f->final) {
            const char *del[] = {"DEL", ikey};
            const char *srem[] = {"SREM", INSTANCES_KEY, f->instance_id};
            rc = rconn_append(c, 2, del, NULL) || rconn_append(c, 3, srem, NULL)
                     ? acache__oom()
                     : ACACHE_OK;
            queued += 2;
        } else {
            arg_str(&a, "HSET");
            arg_str(&a, ikey);
            arg_str(&a, "instance_id");
            arg_str(&a, f->instance_id);
            arg_str(&a, "version");
            arg_str(&a, f->version);
            arg_str(&a, "started_at");
            arg_num(&a, "%.6f", f->started_at);
            arg_str(&a, "last_flush");
            arg_num(&a, "%.6f", f->now);
            for (size_t i = 0; i < n; i++) {
                arg_str(&a, fields[i]);
                arg_num(&a, "%llu", (unsigned long long)f->totals[i]);
            }
            char ttl[16];
            snprintf(ttl, sizeof ttl, "%u", (unsigned)f->ttl_ms);
            const char *pexp[] = {"PEXPIRE", ikey, ttl};
            const char *sadd[] = {"SADD", INSTANCES_KEY, f->instance_id};
            rc = rconn_append(c, a.argc, a.argv, a.lens) ||
                         rconn_append(c, 3, pexp, NULL) || rconn_append(c, 3, sadd, NULL)
                     ? acache__oom()
                     : ACACHE_OK;
            queued += 3;
        }
    }
    if (!rc) {
        /* From here bytes may reach the server: never replay. */
        *sent = 1;
        rc = read_replies(s, c, queued, f->instance_id);
    }
    if (c)
        acache__redis_conn_put(s, c, rc != 0);
    acache__redis_sigpipe_restore(&g);
    free(a.argv);
    free(a.lens);
    free(a.num);
    free(fbuf);
    free(fields);
    free(ikey);
    return rc;
}

/* HMGET key f1..fn on `c`; the reply is the caller's. */
static int hmget(rconn *c, const char *key, const char *const *fields, size_t n)
{
    const char **argv = acache__malloc((n + 2) * sizeof *argv);
    if (!argv)
        return -1;
    argv[0] = "HMGET";
    argv[1] = key;
    for (size_t i = 0; i < n; i++)
        argv[i + 2] = fields[i];
    int r = rconn_append(c, (int)(n + 2), argv, NULL);
    free(argv);
    return r;
}

static int counters_read(acache_store *self, const char *const *names, size_t n,
                         uint64_t *totals, acache_instance_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    memset(totals, 0, n * sizeof *totals);
    char **fields = NULL;
    char *fbuf = field_names(names, n, &fields);
    const char **ifields = acache__malloc((n + META_FIELDS) * sizeof *ifields);
    uint64_t *vals = acache__malloc((n ? n : 1) * sizeof *vals);
    if (!fbuf || !ifields || !vals) {
        free(fbuf);
        free(fields);
        free(ifields);
        free(vals);
        return acache__oom();
    }
    ifields[0] = "instance_id";
    ifields[1] = "version";
    ifields[2] = "started_at";
    ifields[3] = "last_flush";
    for (size_t i = 0; i < n; i++)
        ifields[META_FIELDS + i] = fields[i];

    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c = NULL;
    redisReply *tot = NULL, *mem = NULL, **inst = NULL;
    size_t ninst = 0, nread = 0;
    int rc = acache__redis_conn_get(s, &c);
    const char *smembers[] = {"SMEMBERS", INSTANCES_KEY};
    if (!rc && (hmget(c, STATS_KEY, names, n) || rconn_append(c, 2, smembers, NULL)))
        rc = acache__oom();
    if (!rc && (rconn_read(c, &tot) || rconn_read(c, &mem)))
        rc = acache__redis_io_fail(s, c, "HMGET", STATS_KEY);
    if (!rc && (tot->type != REDIS_REPLY_ARRAY || tot->elements != n))
        rc = acache__redis_reply_fail(tot, "HMGET", STATS_KEY);
    if (!rc && mem->type != REDIS_REPLY_ARRAY)
        rc = acache__redis_reply_fail(mem, "SMEMBERS", INSTANCES_KEY);
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            totals[i] = reply_u64(tot->element[i]);
        ninst = mem->elements;
        inst = acache__calloc(ninst ? ninst : 1, sizeof *inst);
        if (!inst)
            rc = acache__oom();
    }
    for (size_t i = 0; !rc && i < ninst; i++) {
        const redisReply *m = mem->element[i];
        if (m->type != REDIS_REPLY_STRING) {
            rc = acache__redis_reply_fail(m, "SMEMBERS", INSTANCES_KEY);
            break;
        }
        /* The id is bytes: key = prefix + id, built with lengths. */
        size_t plen = sizeof INSTANCE_PREFIX - 1;
        char *key = acache__malloc(plen + m->len + 1);
        if (!key) {
            rc = acache__oom();
            break;
        }
        memcpy(key, INSTANCE_PREFIX, plen);
        memcpy(key + plen, m->str, m->len);
        const char **argv = acache__malloc((n + META_FIELDS + 2) * sizeof *argv);
        size_t *lens = acache__malloc((n + META_FIELDS + 2) * sizeof *lens);
        if (argv && lens) {
            argv[0] = "HMGET";
            lens[0] = 5;
            argv[1] = key;
            lens[1] = plen + m->len;
            for (size_t j = 0; j < n + META_FIELDS; j++) {
                argv[j + 2] = ifields[j];
                lens[j + 2] = strlen(ifields[j]);
            }
            if (rconn_append(c, (int)(n + META_FIELDS + 2), argv, lens) != 0)
                rc = acache__oom();
        } else {
            rc = acache__oom();
        }
        free(argv);
        free(lens);
        free(key);
    }
    for (size_t i = 0; !rc && i < ninst; i++, nread++)
        if (rconn_read(c, &inst[i]) != 0)
            rc = acache__redis_io_fail(s, c, "HMGET", INSTANCE_PREFIX "*");
    /* Deliver the live ones; forget the members whose record expired. */
    size_t dead = 0;
    for (size_t i = 0; !rc && i < ninst; i++) {
        const redisReply *r = inst[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements != n + META_FIELDS) {
            rc = acache__redis_reply_fail(r, "HMGET", INSTANCE_PREFIX "*");
            break;
        }
        if (r->element[0]->type != REDIS_REPLY_STRING) {
            const redisReply *m = mem->element[i];
            const char *argv[] = {"SREM", INSTANCES_KEY, m->str};
            size_t lens[] = {4, sizeof INSTANCES_KEY - 1, m->len};
            if (rconn_append(c, 3, argv, lens) != 0)
                rc = acache__oom();
            else
                dead++;
            continue;
        }
        char id[256], ver[64];
        if (!reply_text(r->element[0], id, sizeof id))
            continue; /* not an id we write */
        if (!reply_text(r->element[1], ver, sizeof ver))
            ver[0] = '\0';
        for (size_t j = 0; j < n; j++)
            vals[j] = reply_u64(r->element[META_FIELDS + j]);
        acache_instance_info info = {id, ver, reply_double(r->element[2]),
                                     reply_double(r->element[3]), vals};
        if (cb && cb(&info, payload))
            cb = NULL; /* stop delivering, still read the replies */
    }
    if (!rc && dead)
        rc = read_replies(s, c, dead, "SREM " INSTANCES_KEY);
    if (c)
        acache__redis_conn_put(s, c, rc != 0);
    acache__redis_sigpipe_restore(&g);
    for (size_t i = 0; i < nread; i++)
        freeReplyObject(inst[i]);
    free(inst);
    if (tot)
        freeReplyObject(tot);
    if (mem)
        freeReplyObject(mem);
    free(fbuf);
    free(fields);
    free(ifields);
    free(vals);
    return rc;
}

void acache__redis_counters_register(acache_store *st)
{
    st->counters_flush = counters_flush;
    st->counters_read = counters_read;
}
