/* L1 invalidations from Redis (docs/redis.md "L1 invalidation"): Redis's
 * server-assisted client-side caching, over RESP2.
 *
 * One subscriber connection per store runs
 *     CLIENT ID                                           -> its own id
 *     CLIENT TRACKING on REDIRECT <id> BCAST PREFIX cache_affinity:
 *     SUBSCRIBE __redis__:invalidate
 * so the server publishes the name of every key under cache_affinity:
 * written by anyone (any process, script, expiry, eviction) to that same
 * connection, and a null on FLUSHDB / FLUSHALL. In BCAST mode what is
 * tracked does not depend on what a connection read, so tracking on the
 * pooled command connections would only make the server send every message
 * once per connection: the subscriber tracks for itself (a redirect to its
 * own id), and the pool is left alone. NOLOOP would only skip writes made by
 * the tracking connection, which writes nothing; the handle's own writes
 * come back too and drop an L1 entry the core already dropped.
 *
 * If the subscriber connection is lost, messages are lost with it (and the
 * server forgets the tracking), so the sink is told "not live" (the core
 * flushes and bypasses its L1), and the thread reconnects with back-off;
 * once SUBSCRIBE is confirmed again it says "live" (the core flushes once
 * more, for the writes it missed). A dead peer that sends no FIN (network
 * partition) is found by a PING after HEARTBEAT_MS of silence, answered
 * within the command timeout or the connection counts as lost. With
 * Sentinel, a new primary found by the pool also re-subscribes (the old
 * primary's connection may stay open while the writes go elsewhere).
 *
 * Redis Cluster: a node announces only its own writes, so there is one such
 * subscriber (connection and thread) per primary, and a manager thread that
 * follows the slot map (reconcile). The sink hears "live" only while all of
 * them are subscribed and match the map; cluster.c calls two hooks: before a
 * command runs on a node without a live subscriber (or on an -ASK target),
 * and when a map refresh changed the set of primaries. Both bypass the L1
 * at once; the manager then opens / closes subscribers. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redis_priv.h"

#define HEARTBEAT_MS 1000 /* silence before a PING */
#define BACKOFF_MIN_MS 20 /* first reconnect delay, doubled up to ... */
#define BACKOFF_MAX_MS 1000
#define CHANNEL "__redis__:invalidate"
/* Cluster: */
#define MAX_SUBS 256         /* one per node (cluster.c's CL_MAX_NODES) */
#define MANAGER_TICK_MS 100  /* the manager looks at the slot map this often */
#define ASKED_KEEP_MS 10000  /* an -ASK target outside the map stays tracked */
#define DOWN_REFRESH_MS 1000 /* a subscriber down this long: re-read the map */

typedef struct redis_tracking redis_tracking;

/* One subscriber connection and its reader thread, on one node (the store
 * itself on a single node / Sentinel, a node store on a cluster). */
typedef struct tsub {
    redis_tracking *t;
    redis_store *node;
    pthread_t thread;
    int running;
    int wake[2]; /* a byte written by stop wakes the thread */
    atomic_int stop;
    rconn *conn;              /* the thread's once it runs */
    uint64_t primary_changes; /* Sentinel: acache__redis_sentinel_changes at connect */
    /* under t->lock: */
    int live;            /* subscribed */
    int gone;            /* taken out of t->subs: node->tracked is not its own */
    int64_t down_since;  /* mono ms, while not live */
    int64_t asked_until; /* cluster: kept until then even when no slot owner */
} tsub;

/* The sink hears "live" only when every subscriber is subscribed and (on a
 * cluster) the set of subscribers matches the last slot map looked at:
 * one "not live" anywhere flushes and bypasses the whole L1, because any pin
 * in it may live on that node. */
struct redis_tracking {
    redis_store *s;
    acache_invalidation_sink sink;
    pthread_mutex_t lock;
    tsub *subs[MAX_SUBS];
    int n;
    int reported;          /* the last state told to the sink; -1: none yet */
    uint64_t gen, settled; /* cluster: topology changes seen / reconciled */
    /* cluster: the manager thread (subscribers follow the slot map) */
    pthread_t manager;
    int manager_running;
    int wake[2];
    atomic_int stop;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Error replies mean the server cannot track (unknown command before 6.0, a
 * renamed CLIENT, an ACL without +client): EUNSUPPORTED with its text. */
static int refused(const redisReply *r, const char *cmd, const redis_store *s)
{
    if (r->type == REDIS_REPLY_ERROR)
        return acache_error_set(ACACHE_EUNSUPPORTED, "redis %s: %s refused: %.*s",
                                s->where, cmd, (int)(r->len < 200 ? r->len : 200),
                                r->str);
    return acache_error_set(ACACHE_EUNSUPPORTED, "redis %s: %s: unexpected reply type %d",
                            s->where, cmd, r->type);
}

/* Dial (AUTH, SELECT, Sentinel's ROLE check: the pool's own dial), then the
 * three commands. OK, ESTORE (I/O: try again later), EUNSUPPORTED. */
static int subscribe_conn(redis_store *s, rconn **out, uint64_t *changes)
{
    *out = NULL;
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    *changes = acache__redis_sentinel_changes(s);
    rconn *c;
    int rc = acache__redis_dial(s, &c, 0);
    if (rc) {
        acache__redis_sigpipe_restore(&g);
        return rc == ACACHE_ENOMEM ? rc : ACACHE_ESTORE;
    }
    redisReply *r = NULL;
    const char *id_argv[] = {"CLIENT", "ID"};
    if (acache__redis_command(c, 2, id_argv, NULL, &r) != 0) {
        rc = acache__redis_io_fail(s, c, "CLIENT", "ID");
        goto done;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        rc = refused(r, "CLIENT ID", s);
        goto done;
    }
    char id[32];
    snprintf(id, sizeof id, "%lld", r->integer);
    freeReplyObject(r);
    r = NULL;
    const char *tr_argv[] = {"CLIENT", "TRACKING", "on",     "REDIRECT",
                             id,       "BCAST",    "PREFIX", ACACHE_AFFINITY_PREFIX};
    const char *sub_argv[] = {"SUBSCRIBE", CHANNEL};
    if (rconn_append(c, 8, tr_argv, NULL) != 0 ||
        rconn_append(c, 2, sub_argv, NULL) != 0 || rconn_read(c, &r) != 0) {
        rc = acache__redis_io_fail(s, c, "CLIENT", "TRACKING");
        goto done;
    }
    if (r->type != REDIS_REPLY_STATUS) {
        rc = refused(r, "CLIENT TRACKING", s);
        goto done;
    }
    freeReplyObject(r);
    r = NULL;
    if (rconn_read(c, &r) != 0) {
        rc = acache__redis_io_fail(s, c, "SUBSCRIBE", CHANNEL);
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len != 9 ||
        memcmp(r->element[0]->str, "subscribe", 9) != 0) {
        rc = refused(r, "SUBSCRIBE", s);
        goto done;
    }
done:
    if (r)
        freeReplyObject(r);
    acache__redis_sigpipe_restore(&g);
    if (rc) {
        rconn_close(c);
        return rc;
    }
    *out = c;
    return ACACHE_OK;
}

static int is_word(const redisReply *r, const char *w, size_t n)
{
    return r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, w, n) == 0;
}

/* One reply on the subscriber: a message or the answer to our PING. */
static void deliver(redis_tracking *t, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !is_word(r->element[0], "message", 7))
        return; /* ["pong", ""], a late subscribe confirmation */
    const redisReply *p = r->element[2];
    void *pl = t->sink.payload;
    if (p->type == REDIS_REPLY_NIL) {
        t->sink.all(pl);
    } else if (p->type == REDIS_REPLY_STRING) {
        t->sink.key(p->str, p->len, pl);
    } else if (p->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < p->elements; i++) {
            const redisReply *k = p->element[i];
            if (k->type == REDIS_REPLY_STRING)
                t->sink.key(k->str, k->len, pl);
            else
                t->sink.all(pl); /* unknown shape: be safe */
        }
    }
}

/* Sleep `ms` unless stopped; 1 when stopping. */
static int nap(int fd, atomic_int *stop, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (!atomic_load(stop) && poll(&p, 1, ms) > 0 && (p.revents & POLLIN)) {
        char b[16]; /* drain wake-ups (the manager's pipe is written by many) */
        while (read(fd, b, sizeof b) == (ssize_t)sizeof b)
            ;
    }
    return atomic_load(stop);
}

static void wake_up(int fd)
{
    char b = 1;
    while (write(fd, &b, 1) < 0 && errno == EINTR)
        ;
}

/* Under t->lock: tell the sink when the combined state changed. */
static void report(redis_tracking *t)
{
    int live = t->n > 0 && t->gen == t->settled;
    for (int i = 0; live && i < t->n; i++)
        live = t->subs[i]->live;
    if (live != t->reported) {
        t->reported = live;
        t->sink.state(live, t->sink.payload);
    }
}

static void sub_state(tsub *u, int live)
{
    redis_tracking *t = u->t;
    pthread_mutex_lock(&t->lock);
    u->live = live;
    if (!live)
        u->down_since = mono_ms();
    if (!u->gone) /* a dropped one's late "live" must not mark its node */
        atomic_store(&u->node->tracked, live);
    report(t);
    pthread_mutex_unlock(&t->lock);
}

static void lost(tsub *u)
{
    rconn_close(u->conn);
    u->conn = NULL;
    sub_state(u, 0);
}

static void *reader(void *arg)
{
    tsub *u = arg;
    redis_tracking *t = u->t;
    redis_store *s = u->node;
    int backoff = BACKOFF_MIN_MS, ping_out = 0, warned = 0;
    int64_t last_rx = mono_ms(), ping_at = 0;
    int64_t answer_ms = s->command_ms > HEARTBEAT_MS ? s->command_ms : HEARTBEAT_MS;
    while (!atomic_load(&u->stop)) {
        if (!u->conn) {
            int rc = subscribe_conn(s, &u->conn, &u->primary_changes);
            if (rc) {
                if (rc == ACACHE_EUNSUPPORTED && !warned) {
                    warned = 1; /* e.g. a failover to an older server: stay bypassed */
                    fprintf(stderr,
                            "libaethercache: warning: %s; the L1 stays bypassed\n",
                            acache_last_error());
                }
                if (nap(u->wake[0], &u->stop, backoff))
                    break;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
            ping_out = 0;
            last_rx = mono_ms();
            sub_state(u, 1);
        }
        redisReply *r;
        int k = rconn_wait_reply(u->conn, &r, HEARTBEAT_MS / 4, u->wake[0]);
        if (atomic_load(&u->stop)) {
            if (r)
                freeReplyObject(r);
            break;
        }
        if (k < 0) {
            lost(u);
            continue;
        }
        int64_t now = mono_ms();
        if (k == 1) {
            last_rx = now;
            ping_out = 0;
            deliver(t, r);
            freeReplyObject(r);
            continue;
        }
        if (s->sentinel && acache__redis_sentinel_changes(s) != u->primary_changes) {
            lost(u);
            continue;
        }
        if (ping_out && now - ping_at >= answer_ms) {
            lost(u); /* silent peer */
            continue;
        }
        if (!ping_out && now - last_rx >= HEARTBEAT_MS) {
            const char *argv[] = {"PING"};
            if (rconn_append(u->conn, 1, argv, NULL) != 0) {
                lost(u);
                continue;
            }
            ping_out = 1;
            ping_at = now;
        }
    }
    return NULL;
}

/* Threads started here take no signal of the host's (SIGPIPE included: TLS
 * writes with write(2)). */
static int start_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(th, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}

static int open_pipe(int fd[2])
{
    if (pipe(fd) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fd[i], F_SETFD, FD_CLOEXEC);
        fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK);
    }
    return 0;
}

static tsub *sub_new(redis_tracking *t, redis_store *node)
{
    tsub *u = acache__calloc(1, sizeof *u);
    if (!u)
        return NULL;
    if (open_pipe(u->wake) != 0) {
        free(u);
        return NULL;
    }
    u->t = t;
    u->node = node;
    atomic_init(&u->stop, 0);
    u->down_since = mono_ms();
    return u;
}

/* Stop and free a subscriber that is no longer in t->subs (or never ran). */
static void sub_free(tsub *u)
{
    if (!u)
        return;
    if (u->running) {
        atomic_store(&u->stop, 1);
        wake_up(u->wake[1]);
        pthread_join(u->thread, NULL);
    }
    rconn_close(u->conn);
    close(u->wake[0]);
    close(u->wake[1]);
    free(u);
}

static tsub *find_sub(redis_tracking *t, const redis_store *node)
{
    for (int i = 0; i < t->n; i++)
        if (t->subs[i]->node == node)
            return t->subs[i];
    return NULL;
}

/* ---- cluster: subscribers follow the slot map ---- */

/* One look at the map: drop the subscribers of nodes that serve no slot (and
 * were not an -ASK target lately, or are down), add one for each new slot owner, start
 * the threads of those added (here or by acache__redis_tracking_unwatched),
 * and re-read the map when a subscriber has been down for a while (its node
 * may have failed over). A dropped subscriber's node may still have given
 * pins to the L1 that nobody announces any more: the L1 is flushed. */
static void reconcile(redis_tracking *t, int64_t *last_poke)
{
    redis_store *s = t->s;
    pthread_mutex_lock(&t->lock);
    uint64_t gen = t->gen;
    pthread_mutex_unlock(&t->lock);
    redis_store *own[MAX_SUBS];
    int no = acache__redis_cluster_owners(s, own, MAX_SUBS);
    tsub *gone[MAX_SUBS], *fresh[MAX_SUBS];
    int ngone = 0, nfresh = 0, poke = 0;
    int64_t now = mono_ms();
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->n; i++) {
        tsub *u = t->subs[i];
        /* An -ASK target that serves no slot: kept while asked lately,
         * unless it has been down for a while (it left: nobody can write
         * there, and its pins go with the flush below). */
        int wanted =
            u->asked_until > now && (u->live || now - u->down_since < DOWN_REFRESH_MS);
        for (int j = 0; j < no && !wanted; j++)
            wanted = own[j] == u->node;
        if (wanted)
            continue;
        gone[ngone++] = u;
        u->gone = 1;
        atomic_store(&u->node->tracked, 0);
        t->subs[i--] = t->subs[--t->n];
    }
    for (int j = 0; j < no; j++) {
        if (find_sub(t, own[j]) || t->n >= MAX_SUBS)
            continue;
        tsub *u = sub_new(t, own[j]);
        if (u)
            t->subs[t->n++] = u;
        else
            gen = t->gen - 1; /* out of memory: stay unsettled, try again */
    }
    for (int i = 0; i < t->n; i++) {
        tsub *u = t->subs[i];
        if (!u->running) {
            u->running = 1; /* claimed: started below, outside the lock */
            fresh[nfresh++] = u;
        }
        if (!u->live && now - u->down_since >= DOWN_REFRESH_MS)
            poke = 1;
    }
    t->settled = gen;
    report(t);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < nfresh; i++)
        if (start_thread(&fresh[i]->thread, reader, fresh[i]) != 0) {
            pthread_mutex_lock(&t->lock);
            fresh[i]->running = 0; /* the next look tries again */
            pthread_mutex_unlock(&t->lock);
        }
    for (int i = 0; i < ngone; i++)
        sub_free(gone[i]);
    if (ngone)
        t->sink.all(t->sink.payload);
    if (poke && now - *last_poke >= DOWN_REFRESH_MS) {
        *last_poke = now;
        acache__redis_cluster_poke(s);
    }
}

static void *manager(void *arg)
{
    redis_tracking *t = arg;
    int64_t last_poke = 0;
    while (!atomic_load(&t->stop)) {
        reconcile(t, &last_poke);
        if (nap(t->wake[0], &t->stop, MANAGER_TICK_MS))
            break;
    }
    return NULL;
}

/* The hooks below run on any thread of the cluster store (cluster.c calls
 * them); tracking_users keeps acache__redis_tracking_free from freeing the
 * tracking under them. */
static redis_tracking *hook_enter(redis_store *s)
{
    atomic_fetch_add(&s->tracking_users, 1);
    if (atomic_load(&s->tracking_on))
        return s->tracking;
    atomic_fetch_sub(&s->tracking_users, 1);
    return NULL;
}

static void hook_leave(redis_store *s)
{
    atomic_fetch_sub(&s->tracking_users, 1);
}

void acache__redis_tracking_unwatched(redis_store *s, redis_store *node, int asked)
{
    redis_tracking *t = hook_enter(s);
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    tsub *u = find_sub(t, node);
    if (!u && t->n < MAX_SUBS && (u = sub_new(t, node)))
        t->subs[t->n++] = u; /* not live: the L1 is bypassed from here */
    if (!u)
        t->gen++; /* cannot track it now: unsettled until the manager can */
    if (u && asked)
        u->asked_until = mono_ms() + ASKED_KEEP_MS;
    int changed = !u || !u->running;
    report(t);
    pthread_mutex_unlock(&t->lock);
    if (changed)
        wake_up(t->wake[1]);
    hook_leave(s);
}

void acache__redis_tracking_topology(redis_store *s)
{
    redis_tracking *t = hook_enter(s);
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->gen++;
    report(t);
    pthread_mutex_unlock(&t->lock);
    wake_up(t->wake[1]);
    hook_leave(s);
}

/* ---- lifetime ---- */

static void tracking_stop(acache_store *self)
{
    acache__redis_tracking_free((redis_store *)self);
}

void acache__redis_tracking_free(redis_store *s)
{
    redis_tracking *t = s->tracking;
    if (!t)
        return;
    atomic_store(&s->tracking_on, 0);
    while (atomic_load(&s->tracking_users) > 0) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    if (t->manager_running) {
        atomic_store(&t->stop, 1);
        wake_up(t->wake[1]);
        pthread_join(t->manager, NULL);
    }
    for (int i = 0; i < t->n; i++) {
        atomic_store(&t->subs[i]->node->tracked, 0);
        sub_free(t->subs[i]);
    }
    close(t->wake[0]);
    close(t->wake[1]);
    pthread_mutex_destroy(&t->lock);
    free(t);
    s->tracking = NULL;
}

static int tracking_subscribe(acache_store *self, const acache_invalidation_sink *sink)
{
    redis_store *s = (redis_store *)self;
    if (s->tracking || !sink || !sink->key || !sink->all || !sink->state)
        return acache_error_set(ACACHE_EINVALID, "invalidations_subscribe: bad call");
    redis_tracking *t = acache__calloc(1, sizeof *t);
    if (!t)
        return acache__oom();
    if (open_pipe(t->wake) != 0) {
        free(t);
        return acache_error_set(ACACHE_ERROR, "redis tracking: pipe: %s",
                                strerror(errno));
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        close(t->wake[0]);
        close(t->wake[1]);
        free(t);
        return acache_error_set(ACACHE_ERROR, "redis tracking: cannot create a mutex");
    }
    t->s = s;
    t->sink = *sink;
    t->reported = -1;
    atomic_init(&t->stop, 0);
    s->tracking = t;
    /* A single node: the store itself. A cluster: every slot owner now (the
     * manager follows later changes). Each is subscribed here first, so that
     * a server that refuses CLIENT fails the call. */
    redis_store *nodes[MAX_SUBS];
    int nn = 1;
    nodes[0] = s;
    if (s->cluster)
        nn = acache__redis_cluster_owners(s, nodes, MAX_SUBS);
    int rc = ACACHE_OK;
    for (int i = 0; !rc && i < nn; i++) {
        tsub *u = sub_new(t, nodes[i]);
        if (!u) {
            rc = acache__oom();
            break;
        }
        t->subs[t->n++] = u;
        rc = subscribe_conn(nodes[i], &u->conn, &u->primary_changes);
        if (rc == ACACHE_ESTORE)
            rc = ACACHE_OK; /* down now: bypass until its thread gets through */
        u->live = u->conn != NULL;
        atomic_store(&nodes[i]->tracked, u->live);
    }
    if (rc) {
        acache__redis_tracking_free(s);
        return rc;
    }
    pthread_mutex_lock(&t->lock);
    report(t); /* the initial state */
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n; i++) {
        if (start_thread(&t->subs[i]->thread, reader, t->subs[i]) != 0) {
            acache__redis_tracking_free(s);
            return acache_error_set(ACACHE_ERROR,
                                    "redis tracking: cannot start its thread");
        }
        t->subs[i]->running = 1;
    }
    if (s->cluster) {
        if (start_thread(&t->manager, manager, t) != 0) {
            acache__redis_tracking_free(s);
            return acache_error_set(ACACHE_ERROR,
                                    "redis tracking: cannot start its thread");
        }
        t->manager_running = 1;
        atomic_store(&s->tracking_on, 1); /* cluster.c's hooks from here on */
    }
    acache_clear_error();
    return ACACHE_OK;
}

void acache__redis_tracking_register(acache_store *st)
{
    st->invalidations_subscribe = tracking_subscribe;
    st->invalidations_stop = tracking_stop;
}
