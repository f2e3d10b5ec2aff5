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
 * primary's connection may stay open while the writes go elsewhere). */
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

typedef struct redis_tracking redis_tracking;

struct redis_tracking {
    redis_store *s;
    acache_invalidation_sink sink;
    pthread_t thread;
    int running;
    int wake[2]; /* a byte written by stop wakes the thread */
    atomic_int stop;
    rconn *conn;              /* the thread's once it runs */
    uint64_t primary_changes; /* Sentinel: acache__redis_sentinel_changes at connect */
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
static int nap(redis_tracking *t, int ms)
{
    struct pollfd p = {.fd = t->wake[0], .events = POLLIN};
    if (!atomic_load(&t->stop))
        poll(&p, 1, ms);
    return atomic_load(&t->stop);
}

static void lost(redis_tracking *t)
{
    rconn_close(t->conn);
    t->conn = NULL;
    t->sink.state(0, t->sink.payload);
}

static void *reader(void *arg)
{
    redis_tracking *t = arg;
    redis_store *s = t->s;
    int backoff = BACKOFF_MIN_MS, ping_out = 0, warned = 0;
    int64_t last_rx = mono_ms(), ping_at = 0;
    int64_t answer_ms = s->command_ms > HEARTBEAT_MS ? s->command_ms : HEARTBEAT_MS;
    while (!atomic_load(&t->stop)) {
        if (!t->conn) {
            int rc = subscribe_conn(s, &t->conn, &t->primary_changes);
            if (rc) {
                if (rc == ACACHE_EUNSUPPORTED && !warned) {
                    warned = 1; /* e.g. a failover to an older server: stay bypassed */
                    fprintf(stderr,
                            "libaethercache: warning: %s; the L1 stays bypassed\n",
                            acache_last_error());
                }
                if (nap(t, backoff))
                    break;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = BACKOFF_MIN_MS;
            ping_out = 0;
            last_rx = mono_ms();
            t->sink.state(1, t->sink.payload);
        }
        redisReply *r;
        int k = rconn_wait_reply(t->conn, &r, HEARTBEAT_MS / 4, t->wake[0]);
        if (atomic_load(&t->stop)) {
            if (r)
                freeReplyObject(r);
            break;
        }
        if (k < 0) {
            lost(t);
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
        if (s->sentinel && acache__redis_sentinel_changes(s) != t->primary_changes) {
            lost(t);
            continue;
        }
        if (ping_out && now - ping_at >= answer_ms) {
            lost(t); /* silent peer */
            continue;
        }
        if (!ping_out && now - last_rx >= HEARTBEAT_MS) {
            const char *argv[] = {"PING"};
            if (rconn_append(t->conn, 1, argv, NULL) != 0) {
                lost(t);
                continue;
            }
            ping_out = 1;
            ping_at = now;
        }
    }
    return NULL;
}

static void tracking_stop(acache_store *self)
{
    acache__redis_tracking_free((redis_store *)self);
}

void acache__redis_tracking_free(redis_store *s)
{
    redis_tracking *t = s->tracking;
    if (!t)
        return;
    if (t->running) {
        atomic_store(&t->stop, 1);
        char b = 1;
        while (write(t->wake[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(t->thread, NULL);
    }
    rconn_close(t->conn);
    close(t->wake[0]);
    close(t->wake[1]);
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
    if (pipe(t->wake) != 0) {
        free(t);
        return acache_error_set(ACACHE_ERROR, "redis tracking: pipe: %s",
                                strerror(errno));
    }
    fcntl(t->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(t->wake[1], F_SETFD, FD_CLOEXEC);
    t->s = s;
    t->sink = *sink;
    atomic_init(&t->stop, 0);
    s->tracking = t;
    int rc = subscribe_conn(s, &t->conn, &t->primary_changes);
    if (rc == ACACHE_EUNSUPPORTED || rc == ACACHE_ENOMEM) {
        acache__redis_tracking_free(s);
        return rc;
    }
    /* Down now (ESTORE): bypass until the thread gets through. */
    sink->state(t->conn != NULL, sink->payload);
    /* The thread takes no signal of the host's (SIGPIPE included: TLS
     * writes with write(2)). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&t->thread, NULL, reader, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        acache__redis_tracking_free(s);
        return acache_error_set(ACACHE_ERROR, "redis tracking: cannot start its thread");
    }
    t->running = 1;
    acache_clear_error();
    return ACACHE_OK;
}

void acache__redis_tracking_register(acache_store *st)
{
    st->invalidations_subscribe = tracking_subscribe;
    st->invalidations_stop = tracking_stop;
}
