/* redis-cluster:// (docs/redis.md "Cluster"): the slot map, one pool per
 * node, redirections, and the vtable slots of a cluster store.
 *
 * Each node is a complete single-node redis_store (its own pool, dial, AUTH,
 * SCRIPT LOAD, retry policy), so every single-key slot is the single-node
 * function run on the node that owns the key's slot, inside acache__redis_for_key(),
 * which handles what a cluster answers instead of running a command:
 *
 *   -MOVED slot addr   the slot lives elsewhere now: update that slot, mark
 *                      the map for a full refresh, run again on addr;
 *   -ASK slot addr     the slot is being migrated and this key already went:
 *                      run again once on addr, after ASKING on the same
 *                      connection (acache__redis_cluster_asking, called by
 *                      acache__redis_conn_get);
 *   -TRYAGAIN, -CLUSTERDOWN   run again after a back-off (1, 2, 4 ... 64 ms)
 *                      as long as the command timeout allows.
 *
 * None of these ran the command, so a touch or an UNLINK is safe to send
 * again. A connection failure is not retried (redis_priv.h), but it marks
 * the map for a refresh, so that after a failover the next call goes to the
 * promoted replica. The error replies are noticed through
 * acache__redis_cluster_note(), called by acache__redis_reply_fail() (every
 * slot turns an unexpected reply into an error through it).
 *
 * Multi-key slots (UNLINK, the compare-and-delete script, TTL) group their
 * keys by node and slot, one command per slot group and node, pipelined per
 * node; a group answered with a redirection is run again key by key through
 * acache__redis_for_key() (single-key commands never get TRYAGAIN for partial slots).
 *
 * Enumeration refreshes the map, takes a snapshot of it, and SCANs every
 * primary of the snapshot, keeping only keys whose slot the snapshot gives
 * to the node scanned: a key that moves during the enumeration is delivered
 * at most once (by the node that owned its slot at the start), or not at
 * all if it left that node before the node's SCAN reached it. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "redis_priv.h"

#define CL_SLOTS 16384
#define CL_NO_NODE 0xFFFFu
#define CL_MAX_NODES 256
#define CL_MAX_SEEDS 32
#define CL_ATTEMPTS 16        /* redirections followed per command */
#define CL_REFRESH_GAP_MS 100 /* at most one map refresh per gap when marked */
#define CL_PIPE 128           /* multi-key commands appended before reading */

struct redis_cluster {
    pthread_rwlock_t map_lock;
    uint16_t slot[CL_SLOTS]; /* node index, CL_NO_NODE: not served */
    pthread_mutex_t nodes_lock;
    redis_store *nodes[CL_MAX_NODES]; /* never removed until the store goes */
    int n_nodes;
    int n_seeds; /* the URI's seed nodes, nodes[0 .. n_seeds) once started */
    char *seed_host[CL_MAX_SEEDS];
    int seed_port[CL_MAX_SEEDS];
    pthread_mutex_t refresh_lock;
    atomic_int dirty;
    atomic_llong last_refresh_ms;
    atomic_ullong redirects; /* MOVED + ASK followed (tests, bench) */
};

/* ---- time ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- what the last error reply on this thread said ---- */

enum { NOTE_NONE = 0, NOTE_MOVED, NOTE_ASK, NOTE_TRYAGAIN, NOTE_DOWN };

typedef struct cl_note {
    int kind;
    unsigned slot;
    char host[256];
    int port;
} cl_note;

static _Thread_local cl_note note;
static _Thread_local redis_store *asking_node;

static int starts(const char *p, size_t n, const char *word)
{
    size_t l = strlen(word);
    return n >= l && memcmp(p, word, l) == 0;
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ..." (host may be empty: the node that
 * answered; an IPv6 host has colons, the port follows the last one). */
static int parse_redirect(const char *p, size_t n, cl_note *out)
{
    char buf[320];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp)
        return -1;
    char *end;
    unsigned long slot = strtoul(sp + 1, &end, 10);
    if (*end != ' ' || slot >= CL_SLOTS)
        return -1;
    char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535 || (size_t)(colon - addr) >= sizeof out->host)
        return -1;
    memcpy(out->host, addr, (size_t)(colon - addr));
    out->host[colon - addr] = '\0';
    out->slot = (unsigned)slot;
    out->port = (int)port;
    return 0;
}

static int classify(const redisReply *r, cl_note *out)
{
    if (!r || r->type != REDIS_REPLY_ERROR)
        return NOTE_NONE;
    const char *p = r->str;
    size_t n = r->len;
    int kind = NOTE_NONE;
    if (starts(p, n, "MOVED "))
        kind = NOTE_MOVED;
    else if (starts(p, n, "ASK "))
        kind = NOTE_ASK;
    else if (starts(p, n, "TRYAGAIN"))
        return NOTE_TRYAGAIN;
    else if (starts(p, n, "CLUSTERDOWN"))
        return NOTE_DOWN;
    else
        return NOTE_NONE;
    if (out && parse_redirect(p, n, out) != 0)
        return NOTE_NONE;
    return kind;
}

void acache__redis_cluster_note(const redisReply *r)
{
    cl_note n;
    int kind = classify(r, &n);
    if (kind == NOTE_NONE)
        return;
    note = n;
    note.kind = kind;
}

int acache__redis_cluster_asking(redis_store *s, rconn *c)
{
    if (asking_node != s)
        return ACACHE_OK;
    asking_node = NULL;
    const char *argv[] = {"ASKING"};
    redisReply *r;
    if (acache__redis_command(c, 1, argv, NULL, &r) != 0)
        return acache__redis_io_fail(s, c, "ASKING", "");
    int rc = r->type == REDIS_REPLY_STATUS ? ACACHE_OK
                                           : acache__redis_reply_fail(r, "ASKING", "");
    freeReplyObject(r);
    return rc;
}

/* ---- nodes ---- */

static char *dup_or_null(const char *p, int *bad)
{
    if (!p)
        return NULL;
    char *d = acache__strndup(p, strlen(p));
    if (!d)
        *bad = 1;
    return d;
}

static void node_free(redis_store *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n_idle; i++)
        rconn_close(n->idle[i]);
    pthread_mutex_destroy(&n->lock);
    pthread_cond_destroy(&n->cond);
    free(n->host);
    free(n->user);
    free(n->sni);
    if (n->password) {
        sodium_memzero(n->password, strlen(n->password));
        free(n->password);
    }
    free(n);
}

/* A node store for host:port with the cluster store's credentials, TLS
 * context (borrowed) and script SHAs. */
static redis_store *node_new(const redis_store *s, const char *host, size_t hlen,
                             int port)
{
    redis_store *n = acache__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    if (pthread_mutex_init(&n->lock, NULL) != 0) {
        free(n);
        return NULL;
    }
    if (pthread_cond_init(&n->cond, NULL) != 0) {
        pthread_mutex_destroy(&n->lock);
        free(n);
        return NULL;
    }
    int bad = 0;
    n->parent = s->parent;
    n->host = acache__strndup(host, hlen);
    bad |= !n->host;
    n->port = port;
    n->user = dup_or_null(s->user, &bad);
    n->password = dup_or_null(s->password, &bad);
    n->sni = dup_or_null(s->sni, &bad);
    n->cluster_node = 1;
    n->tls = s->tls;
    n->verify = s->verify;
    n->tls_ctx = s->tls_ctx;
    n->connect_ms = s->connect_ms;
    n->command_ms = s->command_ms;
    memcpy(n->touch_sha, s->touch_sha, sizeof n->touch_sha);
    memcpy(n->delete_sha, s->delete_sha, sizeof n->delete_sha);
    memcpy(n->report_sha, s->report_sha, sizeof n->report_sha);
    n->touch_script = s->touch_script; /* the swap path: the cluster's table */
    n->touch_contended_ms = s->touch_contended_ms;
    n->hints = s->hints;
    if (bad) {
        node_free(n);
        return NULL;
    }
    int v6 = memchr(host, ':', hlen) != NULL;
    snprintf(n->where, sizeof n->where, "%s%s%s:%d", v6 ? "[" : "", n->host,
             v6 ? "]" : "", port);
    return n;
}

/* Index of host:port, added when new; -1 when full or out of memory. */
static int node_index(redis_store *s, const char *host, size_t hlen, int port)
{
    redis_cluster *cl = s->cluster;
    pthread_mutex_lock(&cl->nodes_lock);
    int idx = -1;
    for (int i = 0; i < cl->n_nodes && idx < 0; i++) {
        const redis_store *n = cl->nodes[i];
        if (n->port == port && strlen(n->host) == hlen &&
            memcmp(n->host, host, hlen) == 0)
            idx = i;
    }
    if (idx < 0 && cl->n_nodes < CL_MAX_NODES) {
        redis_store *n = node_new(s, host, hlen, port);
        if (n) {
            idx = cl->n_nodes;
            cl->nodes[idx] = n;
            cl->n_nodes++;
        }
    }
    pthread_mutex_unlock(&cl->nodes_lock);
    if (idx < 0)
        acache_error_set(ACACHE_ESTORE, "redis cluster: cannot add node %.*s:%d",
                         (int)hlen, host, port);
    return idx;
}

static redis_store *node_at(redis_cluster *cl, int idx)
{
    pthread_mutex_lock(&cl->nodes_lock);
    redis_store *n = idx >= 0 && idx < cl->n_nodes ? cl->nodes[idx] : NULL;
    pthread_mutex_unlock(&cl->nodes_lock);
    return n;
}

/* ---- the slot map ---- */

/* CLUSTER SLOTS on `from`, applied as the whole map. */
static int refresh_from(redis_store *s, redis_store *from)
{
    redis_cluster *cl = s->cluster;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r;
    int rc = acache__redis_run(from, 1, "CLUSTER", "SLOTS", 2, argv, NULL, &r);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = r->type == REDIS_REPLY_ERROR
                 ? acache_error_set(ACACHE_ESTORE,
                                    "redis cluster %s: CLUSTER SLOTS failed: %s (is "
                                    "cluster-enabled on?)",
                                    from->where, r->str)
                 : acache__redis_reply_fail(r, "CLUSTER", "SLOTS");
        freeReplyObject(r);
        return rc;
    }
    uint16_t *map = acache__malloc(sizeof cl->slot);
    if (!map) {
        freeReplyObject(r);
        return acache__oom();
    }
    for (size_t i = 0; i < CL_SLOTS; i++)
        map[i] = CL_NO_NODE;
    for (size_t i = 0; !rc && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            rc = acache__redis_reply_fail(e, "CLUSTER", "SLOTS");
            break;
        }
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *h = e->element[2]->element[0];
        long long port = e->element[2]->element[1]->integer;
        if (lo < 0 || hi >= CL_SLOTS || lo > hi || port <= 0 || port > 65535) {
            rc = acache_error_set(
                ACACHE_ESTORE, "redis cluster %s: bad CLUSTER SLOTS entry", from->where);
            break;
        }
        /* An empty or "?" host: the node we asked (its announced address is
         * unknown to itself). */
        const char *host = h->str;
        size_t hlen = h->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
            host = from->host;
            hlen = strlen(from->host);
        }
        int idx = node_index(s, host, hlen, (int)port);
        if (idx < 0) {
            rc = ACACHE_ESTORE;
            break;
        }
        for (long long k = lo; k <= hi; k++)
            map[k] = (uint16_t)idx;
    }
    freeReplyObject(r);
    int owners_changed = 0;
    if (!rc) {
        unsigned char before[CL_MAX_NODES] = {0}, after[CL_MAX_NODES] = {0};
        pthread_rwlock_wrlock(&cl->map_lock);
        for (size_t i = 0; i < CL_SLOTS; i++) {
            if (cl->slot[i] != CL_NO_NODE)
                before[cl->slot[i]] = 1;
            if (map[i] != CL_NO_NODE)
                after[map[i]] = 1;
        }
        memcpy(cl->slot, map, sizeof cl->slot);
        pthread_rwlock_unlock(&cl->map_lock);
        atomic_store(&cl->dirty, 0);
        owners_changed = memcmp(before, after, sizeof before) != 0;
    }
    free(map);
    /* A failover or a node added / removed: the L1 is bypassed until the
     * subscribers match the new primaries (tracking.c). */
    if (owners_changed)
        acache__redis_tracking_topology(s);
    return rc;
}

/* Ask the nodes that serve slots first, then every other known node (the
 * seeds among them), until one answers. */
static int refresh_map(redis_store *s)
{
    redis_cluster *cl = s->cluster;
    atomic_store(&cl->last_refresh_ms, mono_ms());
    unsigned char serving[CL_MAX_NODES] = {0};
    pthread_rwlock_rdlock(&cl->map_lock);
    for (size_t i = 0; i < CL_SLOTS; i++)
        if (cl->slot[i] != CL_NO_NODE)
            serving[cl->slot[i]] = 1;
    pthread_rwlock_unlock(&cl->map_lock);
    int rc = ACACHE_ESTORE;
    for (int pass = 0; pass < 2 && rc; pass++) {
        pthread_mutex_lock(&cl->nodes_lock);
        int n = cl->n_nodes;
        pthread_mutex_unlock(&cl->nodes_lock);
        for (int i = 0; i < n && rc; i++) {
            if (serving[i] != (pass == 0))
                continue;
            redis_store *node = node_at(cl, i);
            if (node)
                rc = refresh_from(s, node);
        }
    }
    return rc;
}

/* A marked map is refreshed by one caller at a time, at most once per gap;
 * the others go on with the map they have. */
static void maybe_refresh(redis_store *s)
{
    redis_cluster *cl = s->cluster;
    if (!atomic_load_explicit(&cl->dirty, memory_order_relaxed))
        return;
    if (mono_ms() - atomic_load(&cl->last_refresh_ms) < CL_REFRESH_GAP_MS)
        return;
    if (pthread_mutex_trylock(&cl->refresh_lock) != 0)
        return;
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", acache_last_error());
    if (refresh_map(s) != ACACHE_OK)
        acache_error_set(ACACHE_ESTORE, "%s", saved); /* keep the caller's message */
    pthread_mutex_unlock(&cl->refresh_lock);
}

static void mark_dirty(redis_cluster *cl)
{
    atomic_store(&cl->dirty, 1);
}

static int slot_owner(redis_cluster *cl, unsigned slot)
{
    pthread_rwlock_rdlock(&cl->map_lock);
    unsigned idx = cl->slot[slot];
    pthread_rwlock_unlock(&cl->map_lock);
    return idx == CL_NO_NODE ? -1 : (int)idx;
}

static void set_slot(redis_cluster *cl, unsigned slot, int idx)
{
    pthread_rwlock_wrlock(&cl->map_lock);
    cl->slot[slot] = (uint16_t)idx;
    pthread_rwlock_unlock(&cl->map_lock);
}

/* The node of a redirection: an empty host is the node that answered. */
static int note_node(redis_store *s, const redis_store *from)
{
    const char *host = note.host[0] ? note.host : from->host;
    return node_index(s, host, strlen(host), note.port);
}

/* ---- one key ---- */

int acache__redis_for_key(redis_store *s, const char *key, size_t len,
                          acache_redis_key_fn fn, void *ctx)
{
    redis_cluster *cl = s->cluster;
    if (!cl)
        return fn(s, ctx);
    unsigned slot = acache__redis_key_slot(key, len);
    int64_t deadline = mono_ms() + s->command_ms;
    int backoff = 1;
    redis_store *ask = NULL;
    for (int attempt = 0;; attempt++) {
        maybe_refresh(s);
        redis_store *node = ask;
        if (!node) {
            int idx = slot_owner(cl, slot);
            if (idx < 0) {
                /* No owner known: refresh now (once), else the cluster is
                 * down for this slot. */
                if (attempt == 0 && pthread_mutex_lock(&cl->refresh_lock) == 0) {
                    refresh_map(s);
                    pthread_mutex_unlock(&cl->refresh_lock);
                    idx = slot_owner(cl, slot);
                }
                if (idx < 0) {
                    mark_dirty(cl);
                    return acache_error_set(ACACHE_ESTORE,
                                            "redis cluster: slot %u is not served by any "
                                            "node (cluster down?)",
                                            slot);
                }
            }
            node = node_at(cl, idx);
        }
        /* L1 tracking (tracking.c): a node without a live subscriber of
         * ours (new owner, -ASK target) gets one, and the L1 is bypassed
         * until it is subscribed, so this read fills nothing stale. */
        if (atomic_load_explicit(&s->tracking_on, memory_order_acquire) &&
            (ask || !atomic_load_explicit(&node->tracked, memory_order_acquire)))
            acache__redis_tracking_unwatched(s, node, ask != NULL);
        asking_node = ask;
        ask = NULL;
        note.kind = NOTE_NONE;
        int rc = fn(node, ctx);
        asking_node = NULL;
        if (!rc)
            return rc;
        int kind = note.kind;
        note.kind = NOTE_NONE;
        if (kind == NOTE_NONE) {
            if (rc == ACACHE_ESTORE)
                mark_dirty(cl); /* a node failed: a failover may follow */
            return rc;
        }
        if (attempt + 1 >= CL_ATTEMPTS)
            return rc;
        if (kind == NOTE_MOVED || kind == NOTE_ASK) {
            int idx = note_node(s, node);
            if (idx < 0)
                return rc;
            atomic_fetch_add(&cl->redirects, 1);
            if (kind == NOTE_MOVED) {
                set_slot(cl, note.slot, idx);
                mark_dirty(cl); /* a reshard moves more than one slot */
            } else {
                ask = node_at(cl, idx);
            }
            continue;
        }
        /* TRYAGAIN (a multi-key command during a migration) or CLUSTERDOWN
         * (a failover in progress): wait, within the command timeout. */
        if (kind == NOTE_DOWN)
            mark_dirty(cl);
        if (mono_ms() + backoff > deadline)
            return rc;
        sleep_ms(backoff);
        if (backoff < 64)
            backoff *= 2;
    }
}

int acache__redis_conn_for_key(redis_store *s, const char *key, size_t len,
                               redis_store **node, rconn **out)
{
    redis_cluster *cl = s->cluster;
    *node = s;
    if (cl) {
        maybe_refresh(s);
        int idx = slot_owner(cl, acache__redis_key_slot(key, len));
        if (idx < 0) {
            mark_dirty(cl);
            return acache_error_set(ACACHE_ESTORE,
                                    "redis cluster: slot %u is not served by any node",
                                    acache__redis_key_slot(key, len));
        }
        *node = node_at(cl, idx);
        if (atomic_load_explicit(&s->tracking_on, memory_order_acquire) &&
            !atomic_load_explicit(&(*node)->tracked, memory_order_acquire))
            acache__redis_tracking_unwatched(s, *node, 0);
    }
    return acache__redis_conn_get(*node, out);
}

int acache__redis_cluster_redirected(redis_store *s, const redisReply *r)
{
    redis_cluster *cl = s->cluster;
    cl_note n;
    int kind = classify(r, &n);
    if (!cl || kind == NOTE_NONE)
        return 0;
    if (kind == NOTE_MOVED && n.host[0]) {
        int idx = node_index(s, n.host, strlen(n.host), n.port);
        if (idx >= 0)
            set_slot(cl, n.slot, idx);
    }
    mark_dirty(cl);
    return 1;
}

/* The single-key slots, each the node's own function. */

typedef struct k_get {
    const char *key;
    acache_buf *out;
    acache_record_cb cb;
    void *payload;
} k_get;

static int do_get(redis_store *n, void *p)
{
    k_get *k = p;
    return acache__redis_get(&n->parent, k->key, k->out);
}

static int cl_get(acache_store *self, const char *key, acache_buf *out)
{
    k_get k = {key, out, NULL, NULL};
    return acache__redis_for_key((redis_store *)self, key, strlen(key), do_get, &k);
}

static int do_affinity_get(redis_store *n, void *p)
{
    k_get *k = p;
    return acache__redis_affinity_get(&n->parent, k->key, k->cb, k->payload);
}

static int cl_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                           void *payload)
{
    k_get k = {key, NULL, cb, payload};
    return acache__redis_for_key((redis_store *)self, key, strlen(key), do_affinity_get,
                                 &k);
}

typedef struct k_set {
    const char *key, *value;
    size_t len;
    uint32_t ttl_s;
} k_set;

static int do_set(redis_store *n, void *p)
{
    k_set *k = p;
    return acache__redis_set(&n->parent, k->key, k->value, k->len, k->ttl_s);
}

static int cl_set(acache_store *self, const char *key, const char *value, size_t len,
                  uint32_t ttl_s)
{
    k_set k = {key, value, len, ttl_s};
    return acache__redis_for_key((redis_store *)self, key, strlen(key), do_set, &k);
}

typedef struct k_touch {
    const acache_touch_req *req;
    int *result;
    acache_record_cb cb;
    void *payload;
} k_touch;

static int do_touch(redis_store *n, void *p)
{
    k_touch *k = p;
    return acache__redis_affinity_touch(&n->parent, k->req, k->result, k->cb, k->payload);
}

static int cl_touch(acache_store *self, const acache_touch_req *req, int *result,
                    acache_record_cb cb, void *payload)
{
    k_touch k = {req, result, cb, payload};
    return acache__redis_for_key((redis_store *)self, req->key, strlen(req->key),
                                 do_touch, &k);
}

typedef struct k_fail {
    const acache_fail_req *req;
    int *result;
    uint32_t *failures;
} k_fail;

static int do_fail(redis_store *n, void *p)
{
    k_fail *k = p;
    return acache__redis_affinity_fail(&n->parent, k->req, k->result, k->failures);
}

static int cl_fail(acache_store *self, const acache_fail_req *req, int *result,
                   uint32_t *failures)
{
    k_fail k = {req, result, failures};
    return acache__redis_for_key((redis_store *)self, req->key, strlen(req->key), do_fail,
                                 &k);
}

/* ---- many keys: grouped by node and slot ---- */

typedef struct cl_item {
    uint32_t node; /* CL_NO_NODE: unknown */
    uint32_t slot;
    size_t idx; /* into the caller's keys */
} cl_item;

static int item_cmp(const void *a, const void *b)
{
    const cl_item *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Items sorted by (node, slot) from one look at the map. */
static cl_item *group_keys(redis_store *s, const acache_key *keys,
                           const char *const *ckeys, size_t n)
{
    redis_cluster *cl = s->cluster;
    maybe_refresh(s);
    cl_item *it = acache__malloc((n ? n : 1) * sizeof *it);
    if (!it)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        it[i].slot = keys ? acache__redis_key_slot(keys[i].ptr, keys[i].len)
                          : acache__redis_key_slot(ckeys[i], strlen(ckeys[i]));
        it[i].idx = i;
    }
    pthread_rwlock_rdlock(&cl->map_lock);
    for (size_t i = 0; i < n; i++)
        it[i].node = cl->slot[it[i].slot];
    pthread_rwlock_unlock(&cl->map_lock);
    qsort(it, n, sizeof *it, item_cmp);
    return it;
}

/* A command of at most `max` keys: the keys of one slot from it[*pos]. */
static size_t next_group(const cl_item *it, size_t n, size_t pos, size_t max)
{
    size_t k = 1;
    while (pos + k < n && k < max && it[pos + k].node == it[pos].node &&
           it[pos + k].slot == it[pos].slot)
        k++;
    return k;
}

static size_t node_run(const cl_item *it, size_t n, size_t pos)
{
    size_t k = 1;
    while (pos + k < n && it[pos + k].node == it[pos].node)
        k++;
    return k;
}

/* Keys to run again one by one (redirected, or no node known). */
typedef struct retry_list {
    size_t *idx;
    size_t n;
} retry_list;

static void retry_add(retry_list *r, const cl_item *it, size_t k)
{
    for (size_t i = 0; i < k; i++)
        r->idx[r->n++] = it[i].idx;
}

static int redirect_reply(const redisReply *r)
{
    cl_note n;
    return classify(r, &n) != NOTE_NONE;
}

/* UNLINK */

typedef struct k_del {
    const acache_key *key;
    const acache_match *m;
    size_t deleted;
} k_del;

static int do_del(redis_store *n, void *p)
{
    k_del *k = p;
    size_t d = 0;
    int rc = k->m ? acache__redis_affinity_delete_if(&n->parent, k->key, 1, k->m, &d)
                  : acache__redis_del(&n->parent, k->key, 1, &d);
    k->deleted += d;
    return rc;
}

/* The retried keys, one acache__redis_for_key each. */
static int run_retries(redis_store *s, const acache_key *keys, const retry_list *r,
                       const acache_match *m, size_t *deleted)
{
    for (size_t i = 0; i < r->n; i++) {
        k_del k = {&keys[r->idx[i]], m, 0};
        int rc = acache__redis_for_key(s, k.key->ptr, k.key->len, do_del, &k);
        *deleted += k.deleted;
        if (rc)
            return rc;
    }
    return ACACHE_OK;
}

/* One node's run of UNLINKs (one per slot group), CL_PIPE in flight. */
static int unlink_node(redis_store *node, const acache_key *keys, const cl_item *it,
                       size_t n, const char **argv, size_t *lens, retry_list *retry,
                       size_t *deleted)
{
    rconn *c;
    int rc = acache__redis_conn_get(node, &c);
    if (rc)
        return rc;
    key_label lb;
    for (size_t pos = 0; !rc && pos < n;) {
        size_t starts_[CL_PIPE], sizes[CL_PIPE];
        int appended = 0;
        for (; appended < CL_PIPE && pos < n; appended++) {
            size_t k = next_group(it, n, pos, DEL_BATCH);
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < k; i++) {
                argv[i + 1] = keys[it[pos + i].idx].ptr;
                lens[i + 1] = keys[it[pos + i].idx].len;
            }
            if (rconn_append(c, (int)(k + 1), argv, lens) != 0) {
                rc = acache__oom();
                break;
            }
            starts_[appended] = pos;
            sizes[appended] = k;
            pos += k;
        }
        for (int i = 0; i < appended; i++) {
            redisReply *r;
            const acache_key *first = &keys[it[starts_[i]].idx];
            if (rconn_read(c, &r) != 0) {
                rc = acache__redis_io_fail(node, c, "UNLINK",
                                           acache__redis_key_label(&lb, first));
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                *deleted += (size_t)r->integer;
            else if (redirect_reply(r))
                retry_add(retry, &it[starts_[i]], sizes[i]);
            else if (!rc)
                rc = acache__redis_reply_fail(r, "UNLINK",
                                              acache__redis_key_label(&lb, first));
            freeReplyObject(r);
        }
    }
    acache__redis_conn_put(node, c, rc != 0);
    return rc;
}

static int cl_del_any(acache_store *self, const acache_key *keys, size_t n,
                      const acache_match *m, size_t *deleted);

static int cl_del(acache_store *self, const acache_key *keys, size_t n, size_t *deleted)
{
    return cl_del_any(self, keys, n, NULL, deleted);
}

/* compare-and-delete: one script call per slot group */

typedef struct del_ctx {
    const acache_key *keys;
    const cl_item *it; /* this node's run */
    size_t *gstart, *gsize;
    char *filt[3];
    const char **argv;
    size_t *lens;
    char nkeys[24];
    size_t deleted;
    retry_list *retry;
    key_label lb;
} del_ctx;

static int delif_build(void *p, size_t i, script_call *call)
{
    del_ctx *d = p;
    size_t start = d->gstart[i], k = d->gsize[i];
    snprintf(d->nkeys, sizeof d->nkeys, "%zu", k);
    d->argv[2] = d->nkeys;
    d->lens[2] = strlen(d->nkeys);
    for (size_t j = 0; j < k; j++) {
        const acache_key *key = &d->keys[d->it[start + j].idx];
        d->argv[3 + j] = key->ptr;
        d->lens[3 + j] = key->len;
    }
    for (size_t j = 0; j < 3; j++) {
        d->argv[3 + k + j] = d->filt[j];
        d->lens[3 + k + j] = strlen(d->filt[j]);
    }
    call->argc = (int)(k + 6);
    call->argv = d->argv;
    call->lens = d->lens;
    return ACACHE_OK;
}

static int delif_take(void *p, size_t i, const redisReply *r)
{
    del_ctx *d = p;
    if (r->type == REDIS_REPLY_INTEGER) {
        d->deleted += (size_t)r->integer;
        return ACACHE_OK;
    }
    if (redirect_reply(r)) {
        retry_add(d->retry, &d->it[d->gstart[i]], d->gsize[i]);
        return ACACHE_OK;
    }
    return acache__redis_reply_fail(
        r, "EVALSHA", acache__redis_key_label(&d->lb, &d->keys[d->it[d->gstart[i]].idx]));
}

static int delif_node(redis_store *node, const acache_key *keys, const cl_item *it,
                      size_t n, const acache_match *m, const char **argv, size_t *lens,
                      retry_list *retry, size_t *deleted)
{
    del_ctx d = {.keys = keys, .it = it, .argv = argv, .lens = lens, .retry = retry};
    const char *fv[3] = {m->provider_id, m->endpoint_id, m->key_id};
    d.gstart = acache__malloc(n * sizeof *d.gstart);
    d.gsize = acache__malloc(n * sizeof *d.gsize);
    int rc = d.gstart && d.gsize ? ACACHE_OK : acache__oom();
    for (int i = 0; i < 3 && !rc; i++)
        if (!(d.filt[i] = acache__sprintf("%s%s", fv[i] ? "=" : "", fv[i] ? fv[i] : "")))
            rc = ACACHE_ENOMEM;
    size_t ng = 0;
    for (size_t pos = 0; !rc && pos < n; ng++) {
        d.gstart[ng] = pos;
        d.gsize[ng] = next_group(it, n, pos, DEL_BATCH);
        pos += d.gsize[ng];
    }
    rconn *c = NULL;
    if (!rc && !(rc = acache__redis_conn_get(node, &c))) {
        key_label lb;
        rc = acache__redis_eval(node, c, &acache__redis_delete_script, node->delete_sha,
                                ng, delif_build, delif_take, &d,
                                acache__redis_key_label(&lb, &keys[it[0].idx]));
        acache__redis_conn_put(node, c, rconn_err(c) != RIO_OK);
    }
    *deleted += d.deleted;
    for (int i = 0; i < 3; i++)
        free(d.filt[i]);
    free(d.gstart);
    free(d.gsize);
    return rc;
}

static int cl_del_any(acache_store *self, const acache_key *keys, size_t n,
                      const acache_match *m, size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    redis_cluster *cl = s->cluster;
    *deleted = 0;
    if (n == 0)
        return ACACHE_OK;
    if (m && !m->provider_id && !m->endpoint_id && !m->key_id)
        m = NULL;
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 6;
    cl_item *it = group_keys(s, keys, NULL, n);
    const char **argv = acache__malloc(cap * sizeof *argv);
    size_t *lens = acache__malloc(cap * sizeof *lens);
    retry_list retry = {acache__malloc(n * sizeof *retry.idx), 0};
    int rc = it && argv && lens && retry.idx ? ACACHE_OK : acache__oom();
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    for (size_t pos = 0; !rc && pos < n;) {
        size_t k = node_run(it, n, pos);
        redis_store *node =
            it[pos].node == CL_NO_NODE ? NULL : node_at(cl, (int)it[pos].node);
        if (!node)
            retry_add(&retry, &it[pos], k);
        else if (m)
            rc = delif_node(node, keys, &it[pos], k, m, argv, lens, &retry, deleted);
        else
            rc = unlink_node(node, keys, &it[pos], k, argv, lens, &retry, deleted);
        if (rc == ACACHE_ESTORE)
            mark_dirty(cl);
        pos += k;
    }
    acache__redis_sigpipe_restore(&g);
    if (!rc && retry.n) {
        mark_dirty(cl);
        rc = run_retries(s, keys, &retry, m, deleted);
    }
    free(it);
    free(argv);
    free(lens);
    free(retry.idx);
    return rc;
}

static int cl_delete_if(acache_store *self, const acache_key *keys, size_t n,
                        const acache_match *m, size_t *deleted)
{
    return cl_del_any(self, keys, n, m, deleted);
}

/* TTL: one command per key, pipelined per node. */

typedef struct k_ttl {
    const char *key;
    int64_t *out;
} k_ttl;

static int do_ttl(redis_store *n, void *p)
{
    k_ttl *k = p;
    return acache__redis_ttl(&n->parent, &k->key, 1, k->out);
}

static int ttl_node(redis_store *node, const char *const *keys, const cl_item *it,
                    size_t n, int64_t *out, retry_list *retry)
{
    rconn *c;
    int rc = acache__redis_conn_get(node, &c);
    if (rc)
        return rc;
    for (size_t done = 0; !rc && done < n;) {
        size_t m = n - done < TTL_BATCH ? n - done : TTL_BATCH, appended = 0;
        for (; appended < m; appended++) {
            const char *argv[] = {"TTL", keys[it[done + appended].idx]};
            if (rconn_append(c, 2, argv, NULL) != 0) {
                rc = acache__oom();
                break;
            }
        }
        for (size_t i = 0; i < appended; i++) {
            redisReply *r;
            const char *key = keys[it[done + i].idx];
            if (rconn_read(c, &r) != 0) {
                rc = acache__redis_io_fail(node, c, "TTL", key);
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                out[it[done + i].idx] = r->integer;
            else if (redirect_reply(r))
                retry_add(retry, &it[done + i], 1);
            else if (!rc)
                rc = acache__redis_reply_fail(r, "TTL", key);
            freeReplyObject(r);
        }
        done += m;
    }
    acache__redis_conn_put(node, c, rc != 0);
    return rc;
}

static int cl_ttl(acache_store *self, const char *const *keys, size_t n, int64_t *out)
{
    redis_store *s = (redis_store *)self;
    redis_cluster *cl = s->cluster;
    cl_item *it = group_keys(s, NULL, keys, n);
    retry_list retry = {acache__malloc((n ? n : 1) * sizeof *retry.idx), 0};
    int rc = it && retry.idx ? ACACHE_OK : acache__oom();
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    for (size_t pos = 0; !rc && pos < n;) {
        size_t k = node_run(it, n, pos);
        redis_store *node =
            it[pos].node == CL_NO_NODE ? NULL : node_at(cl, (int)it[pos].node);
        if (node)
            rc = ttl_node(node, keys, &it[pos], k, out, &retry);
        else
            retry_add(&retry, &it[pos], k);
        if (rc == ACACHE_ESTORE)
            mark_dirty(cl);
        pos += k;
    }
    acache__redis_sigpipe_restore(&g);
    for (size_t i = 0; !rc && i < retry.n; i++) {
        k_ttl k = {keys[retry.idx[i]], &out[retry.idx[i]]};
        rc = acache__redis_for_key(s, k.key, strlen(k.key), do_ttl, &k);
    }
    free(it);
    free(retry.idx);
    return rc;
}

/* ---- enumeration: SCAN on every primary ---- */

typedef struct scan_filter {
    const uint16_t *snap;
    uint16_t node;
    acache_entry_batch_cb cb;
    void *payload;
    acache_entry *buf;
    size_t cap;
    int stopped; /* the callback's own stop value came back */
} scan_filter;

/* Pass on the keys whose slot the snapshot gives to the node scanned (all of
 * them, except during a reshard). */
static int filter_cb(const acache_entry *e, size_t n, void *payload)
{
    scan_filter *f = payload;
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        keep += f->snap[acache__redis_key_slot(e[i].key, e[i].key_len)] == f->node;
    int rc;
    if (keep == n) {
        rc = f->cb(e, n, f->payload);
    } else {
        if (keep > f->cap) {
            acache_entry *b = acache__realloc(f->buf, keep * sizeof *b);
            if (!b)
                return acache__oom();
            f->buf = b;
            f->cap = keep;
        }
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
            if (f->snap[acache__redis_key_slot(e[i].key, e[i].key_len)] == f->node)
                f->buf[j++] = e[i];
        rc = keep ? f->cb(f->buf, keep, f->payload) : 0;
    }
    if (rc)
        f->stopped = 1;
    return rc;
}

static int cl_scan_any(redis_store *s, const char *prefix, int with_values, int parse,
                       acache_entry_batch_cb cb, void *payload)
{
    redis_cluster *cl = s->cluster;
    /* A fresh map for each enumeration (one CLUSTER SLOTS), so that a
     * finished reshard is seen; a failed refresh keeps the old map. */
    if (pthread_mutex_lock(&cl->refresh_lock) == 0) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", acache_last_error());
        if (refresh_map(s) != ACACHE_OK)
            acache_error_set(ACACHE_ESTORE, "%s", saved);
        pthread_mutex_unlock(&cl->refresh_lock);
    }
    uint16_t *snap = acache__malloc(sizeof cl->slot);
    if (!snap)
        return acache__oom();
    pthread_rwlock_rdlock(&cl->map_lock);
    memcpy(snap, cl->slot, sizeof cl->slot);
    pthread_rwlock_unlock(&cl->map_lock);
    unsigned char primary[CL_MAX_NODES] = {0};
    int uncovered = 0;
    for (size_t i = 0; i < CL_SLOTS; i++) {
        if (snap[i] == CL_NO_NODE)
            uncovered = 1;
        else
            primary[snap[i]] = 1;
    }
    int rc = ACACHE_OK;
    if (uncovered)
        rc = acache_error_set(ACACHE_ESTORE,
                              "redis cluster: some slots are not served by any node "
                              "(cluster down?): the enumeration would be incomplete");
    scan_filter f = {.snap = snap, .cb = cb, .payload = payload};
    for (int i = 0; !rc && i < CL_MAX_NODES; i++) {
        if (!primary[i])
            continue;
        redis_store *node = node_at(cl, i);
        f.node = (uint16_t)i;
        rc = acache__redis_scan(node, prefix, with_values, parse, filter_cb, &f);
        if (rc && !f.stopped && rc == ACACHE_ESTORE)
            mark_dirty(cl);
    }
    free(f.buf);
    free(snap);
    return rc;
}

static int cl_scan(acache_store *self, const char *prefix, int with_values,
                   acache_entry_batch_cb cb, void *payload)
{
    return cl_scan_any((redis_store *)self, prefix, with_values, 0, cb, payload);
}

static int cl_affinity_scan(acache_store *self, const char *prefix,
                            acache_entry_batch_cb cb, void *payload)
{
    return cl_scan_any((redis_store *)self, prefix, 1, 1, cb, payload);
}

/* ---- URI, start, free ---- */

static int bad_cluster_uri(const char *why)
{
    return acache_error_set(
        ACACHE_EINVALID,
        "invalid store URI: %s (expected redis-cluster://[user[:password]@]"
        "host1:port1[,host2:port2...][/0][?tls=yes&...])",
        why);
}

int acache__redis_cluster_parse_uri(redis_store *s, const char *rest)
{
    size_t alen = strcspn(rest, "/?#");
    const char *at = NULL;
    for (const char *p = rest; p < rest + alen; p++)
        if (*p == '@')
            at = p;
    const char *hosts = at ? at + 1 : rest, *tail = rest + alen;
    if (hosts == tail)
        return bad_cluster_uri("missing seed nodes");
    /* Query: tls=yes|no is ours, the rest goes to the template URI. */
    int tls = 0;
    char *query = acache__malloc(strlen(tail) + 2);
    if (!query)
        return acache__oom();
    query[0] = '\0';
    const char *path = tail, *q = strchr(tail, '?');
    size_t plen = q ? (size_t)(q - tail) : strlen(tail);
    for (const char *p = q ? q + 1 : ""; *p;) {
        size_t n = strcspn(p, "&");
        if (n == 7 && strncmp(p, "tls=yes", 7) == 0)
            tls = 1;
        else if (n == 6 && strncmp(p, "tls=no", 6) == 0)
            tls = 0;
        else if (n > 4 && strncmp(p, "tls=", 4) == 0) {
            free(query);
            return bad_cluster_uri("tls must be yes or no");
        } else {
            strcat(query, query[0] ? "&" : "?");
            strncat(query, p, n);
        }
        p += n;
        if (*p == '&')
            p++;
    }
    redis_cluster *cl = s->cluster = acache__calloc(1, sizeof *s->cluster);
    if (!cl) {
        free(query);
        return acache__oom();
    }
    pthread_rwlock_init(&cl->map_lock, NULL);
    pthread_mutex_init(&cl->nodes_lock, NULL);
    pthread_mutex_init(&cl->refresh_lock, NULL);
    for (size_t i = 0; i < CL_SLOTS; i++)
        cl->slot[i] = CL_NO_NODE;
    /* Each seed is checked by the single-node parser; the first one (with
     * the credentials, database and options) fills s. */
    int rc = ACACHE_OK;
    char *tmpl = NULL;
    const char *h = hosts;
    for (int first = 1; !rc && h <= tail; first = 0) {
        size_t n = strcspn(h, ",/?#");
        if (h + n > tail)
            n = (size_t)(tail - h);
        if (n == 0) {
            rc = bad_cluster_uri("empty seed node");
            break;
        }
        if (first)
            tmpl = acache__sprintf("%s%.*s%.*s%.*s%s", tls ? "rediss://" : "redis://",
                                   at ? (int)(at - rest + 1) : 0, rest, (int)n, h,
                                   (int)plen, path, query);
        else
            tmpl = acache__sprintf("redis://%.*s", (int)n, h);
        if (!tmpl) {
            rc = ACACHE_ENOMEM;
            break;
        }
        if (first) {
            rc = acache__redis_parse_uri(s, tmpl);
            if (!rc && s->db != 0)
                rc = bad_cluster_uri("a cluster has only database 0");
            if (!rc && !(cl->seed_host[0] = acache__strndup(s->host, strlen(s->host))))
                rc = ACACHE_ENOMEM;
            if (!rc)
                cl->seed_port[cl->n_seeds++] = s->port;
        } else if (cl->n_seeds >= CL_MAX_SEEDS) {
            rc = bad_cluster_uri("more than 32 seed nodes");
        } else {
            redis_store tmp;
            memset(&tmp, 0, sizeof tmp);
            rc = acache__redis_parse_uri(&tmp, tmpl);
            if (!rc) {
                cl->seed_host[cl->n_seeds] = tmp.host;
                cl->seed_port[cl->n_seeds++] = tmp.port;
            } else {
                free(tmp.host);
            }
        }
        if (tmpl)
            sodium_memzero(tmpl, strlen(tmpl)); /* may hold the password */
        free(tmpl);
        tmpl = NULL;
        h += n;
        if (h < tail && *h == ',')
            h++;
        else
            break;
    }
    free(query);
    return rc;
}

int acache__redis_cluster_start(redis_store *s)
{
    redis_cluster *cl = s->cluster;
    int rc = ACACHE_OK;
    for (int i = 0; !rc && i < cl->n_seeds; i++)
        if (node_index(s, cl->seed_host[i], strlen(cl->seed_host[i]), cl->seed_port[i]) <
            0)
            rc = ACACHE_ESTORE;
    if (rc)
        return rc;
    /* The first seed that answers gives the map; its first dial records the
     * script SHAs (the same on every node). */
    char first_err[1024] = "";
    rc = ACACHE_ESTORE;
    for (int i = 0; rc && i < cl->n_seeds; i++) {
        redis_store *seed = node_at(cl, i);
        rconn *c = NULL;
        sigpipe_guard g;
        acache__redis_sigpipe_block(s, &g);
        rc = acache__redis_dial(seed, &c, 1);
        acache__redis_sigpipe_restore(&g);
        if (!rc) {
            seed->idle[seed->n_idle++] = c;
            seed->n_total = 1;
            memcpy(s->touch_sha, seed->touch_sha, sizeof s->touch_sha);
            memcpy(s->delete_sha, seed->delete_sha, sizeof s->delete_sha);
            memcpy(s->report_sha, seed->report_sha, sizeof s->report_sha);
            pthread_mutex_lock(&cl->nodes_lock);
            for (int k = 0; k < cl->n_nodes; k++) {
                memcpy(cl->nodes[k]->touch_sha, s->touch_sha, sizeof s->touch_sha);
                memcpy(cl->nodes[k]->delete_sha, s->delete_sha, sizeof s->delete_sha);
                memcpy(cl->nodes[k]->report_sha, s->report_sha, sizeof s->report_sha);
            }
            pthread_mutex_unlock(&cl->nodes_lock);
            rc = refresh_from(s, seed);
        }
        if (rc && !first_err[0])
            snprintf(first_err, sizeof first_err, "%s", acache_last_error());
    }
    if (rc)
        return acache_error_set(rc, "%s", first_err);
    s->parent.get = cl_get;
    s->parent.set = cl_set;
    s->parent.del = cl_del;
    s->parent.ttl = cl_ttl;
    s->parent.scan = cl_scan;
    s->parent.affinity_get = cl_affinity_get;
    s->parent.affinity_touch = cl_touch;
    s->parent.affinity_delete_if = cl_delete_if;
    s->parent.affinity_scan = cl_affinity_scan;
    s->parent.affinity_fail = cl_fail;
    /* counters_flush / counters_read (counters.c) stay: on a cluster their
     * keys share the {fleet} hash tag and are routed to its slot's owner. */
    return ACACHE_OK;
}

int acache__redis_cluster_owners(redis_store *s, redis_store **out, int max)
{
    redis_cluster *cl = s->cluster;
    unsigned char own[CL_MAX_NODES] = {0};
    pthread_rwlock_rdlock(&cl->map_lock);
    for (size_t i = 0; i < CL_SLOTS; i++)
        if (cl->slot[i] != CL_NO_NODE)
            own[cl->slot[i]] = 1;
    pthread_rwlock_unlock(&cl->map_lock);
    int n = 0;
    for (int i = 0; i < CL_MAX_NODES && n < max; i++)
        if (own[i])
            out[n++] = node_at(cl, i);
    return n;
}

void acache__redis_cluster_poke(redis_store *s)
{
    mark_dirty(s->cluster);
    maybe_refresh(s);
}

uint64_t acache__redis_cluster_redirects(const acache_store *st)
{
    const redis_store *s = (const redis_store *)st;
    return s->cluster ? atomic_load(&s->cluster->redirects) : 0;
}

void acache__redis_cluster_free(redis_store *s)
{
    redis_cluster *cl = s->cluster;
    if (!cl)
        return;
    for (int i = 0; i < cl->n_nodes; i++)
        node_free(cl->nodes[i]);
    for (int i = 0; i < cl->n_seeds; i++)
        free(cl->seed_host[i]);
    pthread_rwlock_destroy(&cl->map_lock);
    pthread_mutex_destroy(&cl->nodes_lock);
    pthread_mutex_destroy(&cl->refresh_lock);
    free(cl);
    s->cluster = NULL;
}
