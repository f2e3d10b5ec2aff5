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
 * On a Redis Cluster the same keys carry the hash tag {fleet}
 * (acache:{fleet}:stats, acache:{fleet}:instance:<id>, acache:{fleet}:instances)
 * so that they share one slot: a flush stays one pipeline to one node. The
 * single-node names are left as they were (a deployment's existing totals
 * keep counting); a cluster never had fleet keys before, so nothing is lost.
 *
 * A flush is one pipeline on one pooled connection (no MULTI: each command is
 * idempotent except HINCRBY, and the core never replays a flush that may
 * have reached the server). On a cluster, a command of the pipeline answered
 * with a redirection (the fleet slot is being migrated or has moved: the
 * command did not run) is sent again alone through acache__redis_for_key,
 * which follows -ASK / -MOVED; the others ran once. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

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

typedef struct fleet_keys {
    const char *stats, *instances, *prefix;
} fleet_keys;

static const fleet_keys plain_keys = {"acache:stats", "acache:instances",
                                      "acache:instance:"};
static const fleet_keys cluster_keys = {
    "acache:{fleet}:stats", "acache:{fleet}:instances", "acache:{fleet}:instance:"};

static const fleet_keys *keys_of(const redis_store *s)
{
    return s->cluster ? &cluster_keys : &plain_keys;
}

/* One command of a pipeline (its arguments live in the caller's argbuf). */
typedef struct rcmd {
    int argc;
    const char **argv;
    const size_t *lens;
} rcmd;

typedef struct one_ctx {
    const rcmd *cmd;
    redisReply **out;
    const char *what;
} one_ctx;

/* acache__redis_for_key's fn: the command alone on `node`. An error reply is
 * reported through acache__redis_reply_fail, which is how a redirection is
 * noticed (and followed). */
static int run_one(redis_store *node, void *p)
{
    one_ctx *k = p;
    rconn *c;
    int rc = acache__redis_conn_get(node, &c);
    if (rc)
        return rc;
    redisReply *r;
    if (acache__redis_command(c, k->cmd->argc, k->cmd->argv, k->cmd->lens, &r) != 0) {
        rc = acache__redis_io_fail(node, c, k->cmd->argv[0], k->what);
        acache__redis_conn_put(node, c, 1);
        return rc;
    }
    acache__redis_conn_put(node, c, 0);
    if (r->type == REDIS_REPLY_ERROR) {
        rc = acache__redis_reply_fail(r, k->cmd->argv[0], k->what);
        freeReplyObject(r);
        return rc;
    }
    *k->out = r;
    return ACACHE_OK;
}

/* Run `n` commands on keys of the fleet slot, pipelined on the node that owns
 * it; replies[i] (NULL-initialised by the caller, freed by it) gets each
 * reply. A redirected command is sent again alone (see the top). *sent: bytes
 * may have reached a server (never replay a flush then). */
static int run_pipe(redis_store *s, const rcmd *cmds, size_t n, redisReply **replies,
                    int *sent, const char *what)
{
    const char *route = keys_of(s)->stats;
    redis_store *node;
    rconn *c;
    int rc = acache__redis_conn_for_key(s, route, strlen(route), &node, &c);
    if (rc)
        return rc;
    for (size_t i = 0; !rc && i < n; i++)
        if (rconn_append(c, cmds[i].argc, cmds[i].argv, cmds[i].lens) != 0)
            rc = acache__oom();
    if (rc) { /* nothing was written: the queued bytes go with the connection */
        acache__redis_conn_put(node, c, 1);
        return rc;
    }
    if (sent)
        *sent = 1;
    for (size_t i = 0; i < n; i++)
        if (rconn_read(c, &replies[i]) != 0) {
            rc = acache__redis_io_fail(node, c, cmds[i].argv[0], what);
            break;
        }
    acache__redis_conn_put(node, c, rc != 0);
    for (size_t i = 0; !rc && i < n; i++) {
        if (!acache__redis_cluster_redirected(s, replies[i]))
            continue;
        freeReplyObject(replies[i]);
        replies[i] = NULL;
        one_ctx k = {&cmds[i], &replies[i], what};
        rc = acache__redis_for_key(s, route, strlen(route), run_one, &k);
    }
    return rc;
}

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
}

/* The first error reply of `n`, as an error code (ACACHE_OK: none). */
static int first_error(redisReply **r, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (r[i] && r[i]->type == REDIS_REPLY_ERROR)
            return acache__redis_reply_fail(r[i], "flush", what);
    return ACACHE_OK;
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

/* Start a command at the argbuf's end; close it with cmd_end. */
static rcmd *cmd_begin(rcmd *cmds, size_t *ncmd, const argbuf *a)
{
    rcmd *c = &cmds[(*ncmd)++];
    c->argc = a->argc; /* start, until cmd_end */
    return c;
}

static void cmd_end(rcmd *c, const argbuf *a)
{
    int start = c->argc;
    c->argv = a->argv + start;
    c->lens = a->lens + start;
    c->argc = a->argc - start;
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
    const fleet_keys *fk = keys_of(s);
    *sent = 0;
    size_t n = f->n;
    /* n HINCRBY of 4 arguments, then HSET key + 4 meta pairs + n pairs, PEXPIRE
     * and SADD (or DEL and SREM). */
    size_t cap = 4 * n + 2 + 2 * META_FIELDS + 2 * n + 6 + 4;
    argbuf a = {acache__malloc(cap * sizeof *a.argv),
                acache__malloc(cap * sizeof *a.lens), acache__malloc(cap * sizeof *a.num),
                0};
    rcmd *cmds = acache__malloc((n + 3) * sizeof *cmds);
    redisReply **rep = acache__calloc(n + 3, sizeof *rep);
    char **fields = NULL;
    char *fbuf = field_names(f->names, n, &fields);
    char *ikey = acache__sprintf("%s%s", fk->prefix, f->instance_id);
    int rc = ACACHE_OK;
    size_t ncmd = 0;
    if (!a.argv || !a.lens || !a.num || !cmds || !rep || !fbuf || !ikey)
        rc = acache__oom();
    for (size_t i = 0; !rc && i < n; i++) {
        if (!f->deltas[i])
            continue;
        rcmd *c = cmd_begin(cmds, &ncmd, &a);
        arg_str(&a, "HINCRBY");
        arg_str(&a, fk->stats);
        arg_str(&a, f->names[i]);
        arg_num(&a, "%llu", (unsigned long long)f->deltas[i]);
        cmd_end(c, &a);
    }
    if (!rc && f->final) {
        rcmd *c = cmd_begin(cmds, &ncmd, &a);
        arg_str(&a, "DEL");
        arg_str(&a, ikey);
        cmd_end(c, &a);
        c = cmd_begin(cmds, &ncmd, &a);
        arg_str(&a, "SREM");
        arg_str(&a, fk->instances);
        arg_str(&a, f->instance_id);
        cmd_end(c, &a);
    } else if (!rc) {
        rcmd *c = cmd_begin(cmds, &ncmd, &a);
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
        cmd_end(c, &a);
        c = cmd_begin(cmds, &ncmd, &a);
        arg_str(&a, "PEXPIRE");
        arg_str(&a, ikey);
        arg_num(&a, "%u", (unsigned)f->ttl_ms);
        cmd_end(c, &a);
        c = cmd_begin(cmds, &ncmd, &a);
        arg_str(&a, "SADD");
        arg_str(&a, fk->instances);
        arg_str(&a, f->instance_id);
        cmd_end(c, &a);
    }
    if (!rc) {
        sigpipe_guard g;
        acache__redis_sigpipe_block(s, &g);
        rc = run_pipe(s, cmds, ncmd, rep, sent, f->instance_id);
        acache__redis_sigpipe_restore(&g);
    }
    if (!rc)
        rc = first_error(rep, ncmd, f->instance_id);
    free_replies(rep, ncmd);
    free(rep);
    free(cmds);
    free(a.argv);
    free(a.lens);
    free(a.num);
    free(fbuf);
    free(fields);
    free(ikey);
    return rc;
}

/* HMGET key f1..fn as a command built in `a`. */
static void hmget(argbuf *a, rcmd *c, const char *key, size_t klen,
                  const char *const *fields, size_t n)
{
    c->argc = a->argc;
    arg_str(a, "HMGET");
    arg(a, key, klen);
    for (size_t i = 0; i < n; i++)
        arg_str(a, fields[i]);
    cmd_end(c, a);
}

static argbuf argbuf_new(size_t cap)
{
    argbuf a = {acache__malloc((cap ? cap : 1) * sizeof *a.argv),
                acache__malloc((cap ? cap : 1) * sizeof *a.lens), NULL, 0};
    return a;
}

static void argbuf_free(argbuf *a)
{
    free(a->argv);
    free(a->lens);
}

static int counters_read(acache_store *self, const char *const *names, size_t n,
                         uint64_t *totals, acache_instance_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    const fleet_keys *fk = keys_of(s);
    memset(totals, 0, n * sizeof *totals);
    char **fields = NULL;
    char *fbuf = field_names(names, n, &fields);
    const char **ifields = acache__malloc((n + META_FIELDS) * sizeof *ifields);
    uint64_t *vals = acache__malloc((n ? n : 1) * sizeof *vals);
    argbuf a1 = argbuf_new(n + 4), a2 = {0}, a3 = {0};
    rcmd c1[2];
    redisReply *r1[2] = {NULL, NULL}, **inst = NULL, **srem = NULL;
    rcmd *c2 = NULL, *c3 = NULL;
    char **ikeys = NULL;
    size_t ninst = 0, dead = 0;
    int rc = fbuf && ifields && vals && a1.argv && a1.lens ? ACACHE_OK : acache__oom();
    if (!rc) {
        ifields[0] = "instance_id";
        ifields[1] = "version";
        ifields[2] = "started_at";
        ifields[3] = "last_flush";
        for (size_t i = 0; i < n; i++)
            ifields[META_FIELDS + i] = fields[i];
    }
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    if (!rc) {
        hmget(&a1, &c1[0], fk->stats, strlen(fk->stats), names, n);
        c1[1].argc = a1.argc;
        arg_str(&a1, "SMEMBERS");
        arg_str(&a1, fk->instances);
        cmd_end(&c1[1], &a1);
        rc = run_pipe(s, c1, 2, r1, NULL, fk->stats);
    }
    const redisReply *tot = r1[0], *mem = r1[1];
    if (!rc && (tot->type != REDIS_REPLY_ARRAY || tot->elements != n))
        rc = acache__redis_reply_fail(tot, "HMGET", fk->stats);
    if (!rc && mem->type != REDIS_REPLY_ARRAY)
        rc = acache__redis_reply_fail(mem, "SMEMBERS", fk->instances);
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            totals[i] = reply_u64(tot->element[i]);
        ninst = mem->elements;
        size_t k = ninst ? ninst : 1;
        inst = acache__calloc(k, sizeof *inst);
        srem = acache__calloc(k, sizeof *srem);
        c2 = acache__malloc(k * sizeof *c2);
        c3 = acache__malloc(k * sizeof *c3);
        ikeys = acache__calloc(k, sizeof *ikeys);
        a2 = argbuf_new(ninst * (n + META_FIELDS + 2));
        a3 = argbuf_new(ninst * 3);
        if (!inst || !srem || !c2 || !c3 || !ikeys || !a2.argv || !a2.lens || !a3.argv ||
            !a3.lens)
            rc = acache__oom();
    }
    size_t plen = strlen(fk->prefix);
    for (size_t i = 0; !rc && i < ninst; i++) {
        const redisReply *m = mem->element[i];
        if (m->type != REDIS_REPLY_STRING) {
            rc = acache__redis_reply_fail(m, "SMEMBERS", fk->instances);
            break;
        }
        /* The id is bytes: key = prefix + id, built with lengths. */
        if (!(ikeys[i] = acache__malloc(plen + m->len + 1))) {
            rc = acache__oom();
            break;
        }
        memcpy(ikeys[i], fk->prefix, plen);
        memcpy(ikeys[i] + plen, m->str, m->len);
        hmget(&a2, &c2[i], ikeys[i], plen + m->len, ifields, n + META_FIELDS);
    }
    if (!rc && ninst)
        rc = run_pipe(s, c2, ninst, inst, NULL, "instance records");
    /* Deliver the live ones; forget the members whose record expired. */
    for (size_t i = 0; !rc && i < ninst; i++) {
        const redisReply *r = inst[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements != n + META_FIELDS) {
            rc = acache__redis_reply_fail(r, "HMGET", "instance record");
            break;
        }
        if (r->element[0]->type != REDIS_REPLY_STRING) {
            const redisReply *m = mem->element[i];
            c3[dead].argc = a3.argc;
            arg_str(&a3, "SREM");
            arg_str(&a3, fk->instances);
            arg(&a3, m->str, m->len);
            cmd_end(&c3[dead], &a3);
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
            cb = NULL; /* stop delivering, still forget the dead ones */
    }
    if (!rc && dead) {
        rc = run_pipe(s, c3, dead, srem, NULL, "SREM instances");
        if (!rc)
            rc = first_error(srem, dead, "SREM instances");
    }
    acache__redis_sigpipe_restore(&g);
    free_replies(r1, 2);
    free_replies(inst, ninst);
    free_replies(srem, dead);
    for (size_t i = 0; ikeys && i < ninst; i++)
        free(ikeys[i]);
    free(ikeys);
    free(inst);
    free(srem);
    free(c2);
    free(c3);
    argbuf_free(&a1);
    argbuf_free(&a2);
    argbuf_free(&a3);
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
