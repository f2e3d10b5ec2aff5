/* Redis store, private: the pieces of lib/store/redis/ and how they meet.
 *
 *   store.c      vtable glue and lifetime (acache__store_redis_new)
 *   raw.c        raw key slots: get, set, del (UNLINK), ttl
 *   affinity.c   affinity slots: get, touch (swap or script), delete_if (script)
 *   hint.c       the touch swap path's hint table (docs/affinity.md)
 *   report.c     affinity_fail (script): the pin lifecycle's failure step
 *   scan.c       the SCAN + MGET pipeline behind both scans
 *   scripts.c    the Lua scripts (scripts/ *.lua, embedded at build time),
 *                SCRIPT LOAD, and EVALSHA with the NOSCRIPT fallback
 *   pool.c       connection pool, dialling (AUTH, SELECT, scripts), one-shot
 *                commands with the retry policy, the SIGPIPE guard, errors
 *   transport.c  one connection: TCP, unix socket or TLS bytes under
 *                hiredis's RESP codec
 *   tls.c        the OpenSSL context of rediss:// (trust, client certificate)
 *   uri.c        redis://, rediss:// and unix:// URIs
 *   sentinel.c   redis-sentinel://: primary resolution, ROLE check, re-resolve
 *   breaker.c    circuit breaker and the retry-once-on-failover guard around
 *                every vtable slot (docs/redis.md)
 *   counters.c   fleet counters (acache:stats, acache:instance:<id>)
 *   cluster.c    redis-cluster://: slot map, a pool per node, MOVED/ASK/
 *                TRYAGAIN/CLUSTERDOWN, multi-key commands split by slot,
 *                enumeration on every primary (docs/redis.md "Cluster")
 *   slots.c      CRC16 key slots with hash tags
 *   tracking.c   L1 invalidations: a subscriber connection with CLIENT
 *                TRACKING (BCAST) and its reader thread (docs/redis.md); on a
 *                cluster one per primary and a manager following the map
 *
 * Retries: a pooled connection whose server went away (restart) is detected
 * before use by a zero-timeout poll() (an idle RESP connection never has
 * bytes to read, so readability means EOF or garbage), so no command is ever
 * sent on a known-dead socket. If a connection still breaks mid-command,
 * reads (GET, MGET, SCAN, TTL) and SET (same bytes again) are retried once on
 * a fresh connection; touch, delete_if and UNLINK are not, since the server
 * may have run them before the connection broke and a replay would count a
 * request twice or misreport the deleted count. Timeouts are never retried
 * (the caller already waited command_timeout_ms).
 */
#ifndef ACACHE_STORE_REDIS_PRIV_H
#define ACACHE_STORE_REDIS_PRIV_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "../../core/core.h"

#define POOL_MAX 16
#define DEL_BATCH 500    /* keys per UNLINK / delete_if script call */
#define PIPE_GROUP 16    /* batches appended before reading replies */
#define TTL_BATCH 1000   /* TTL commands appended before reading replies */
#define SCAN_COUNT "500" /* keeps each SCAN/MGET well under 10 ms at 1M keys */

/* ---- transport.c: one connection ---- */

typedef struct rconn rconn;

/* Why the last I/O failed (rconn_err). */
enum { RIO_OK = 0, RIO_TIMEOUT, RIO_BROKEN, RIO_OTHER };

typedef struct rconn_target {
    const char *host; /* TCP, or NULL for a unix socket */
    int port;
    const char *path; /* unix socket */
    uint32_t connect_ms, command_ms;
    SSL_CTX *tls;    /* NULL: plain */
    const char *sni; /* name sent and verified; NULL: host */
    int verify;      /* check the certificate's name (the chain: SSL_CTX) */
} rconn_target;

/* Connect. On failure returns NULL with a message in errbuf (OOM: empty). */
rconn *rconn_open(const rconn_target *t, char *errbuf, size_t errlen);
void rconn_close(rconn *c);
/* Queue one command (hiredis formats it). 0, or -1 (out of memory). */
int rconn_append(rconn *c, int argc, const char **argv, const size_t *lens);
/* Write everything queued. 0, or -1 with rconn_err set. */
int rconn_flush(rconn *c);
/* Flush, then read one reply. 0 with *out set, or -1 with rconn_err set. */
int rconn_read(rconn *c, redisReply **out);
/* A subscriber's next reply, which comes unasked: flush what is queued, then
 * wait at most `wait_ms` (or until `wake_fd`, -1 = none, is readable). 1 with
 * *out set, 0 nothing yet (the connection stays usable: no timeout error),
 * -1 failed (rconn_err set). */
int rconn_wait_reply(rconn *c, redisReply **out, int wait_ms, int wake_fd);
/* An idle connection with bytes to read (EOF, garbage) or a past error. */
int rconn_stale(rconn *c);
int rconn_err(const rconn *c);
/* SSL_CTX client-certificate callback: notes that the server asked for one. */
int acache__redis_client_cert_cb(SSL *ssl, X509 **x509,
                                 EVP_PKEY **pkey); /* RIO_*; RIO_OK while healthy */
const char *rconn_errstr(const rconn *c);

/* ---- pool.c ---- */

typedef struct redis_store {
    acache_store parent;
    char *host; /* TCP, or NULL for a unix socket */
    int port;
    char *path; /* unix socket */
    char *user, *password;
    int db;
    char where[300]; /* host:port or path, for messages (no secrets) */
    /* rediss:// */
    int tls;
    char *cacert, *cert, *key, *sni; /* NULL: system trust store, no client cert */
    int verify;                      /* 1 unless verify=no */
    SSL_CTX *tls_ctx;
    uint32_t connect_ms, command_ms;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    rconn *idle[POOL_MAX];
    int n_idle, n_total;

    /* Set by the first dial in acache__store_redis_new (before any sharing),
     * read-only afterwards: the SHA1 of a script is the same on every server. */
    char touch_sha[41], delete_sha[41], report_sha[41];

    struct redis_sentinel *sentinel; /* redis-sentinel://; NULL otherwise */
    /* Sentinel ?wait_replicas=N: script writes are acknowledged once
     * min(N, replicas) replicas hold them (WAIT), `replicas` being how many
     * the primary listed in ROLE at the last dial (0 after a failover left
     * it alone: nothing to wait for, and nothing a failover could lose). */
    int wait_replicas;
    _Atomic int replicas;
    struct redis_guard *guard;     /* breaker.c; NULL until installed */
    struct redis_cluster *cluster; /* redis-cluster:// (cluster.c); NULL otherwise */
    int cluster_node; /* a node of a cluster store: scan.c GETs instead of MGET */
    struct redis_tracking *tracking; /* tracking.c: L1 invalidations; NULL when off */
    /* tracking.c on a cluster: `tracked` (a node) its subscriber is subscribed;
     * `tracking_on` (the cluster store) cluster.c calls the tracking hooks,
     * `tracking_users` of them are running. */
    _Atomic int tracked, tracking_on, tracking_users;
    /* Touch swap path (hint.c, affinity.c): URI touch=script turns it off,
     * touch_contended_ms is how long a key that needed a repair uses the
     * script (default 1000). A cluster's nodes borrow the cluster store's
     * table and settings; NULL: no swap (touch=script). */
    int touch_script;
    uint32_t touch_contended_ms;
    struct redis_hints *hints;
} redis_store;

/* hiredis writes with write(2), so a peer that vanished raises SIGPIPE and
 * would kill the host process: blocked on this thread around an operation. */
typedef struct sigpipe_guard {
    int active; /* 0: SIGPIPE was ignored already, nothing to undo */
    sigset_t old;
    int was_pending;
} sigpipe_guard;

/* Plain connections write with MSG_NOSIGNAL, so only TLS needs the guard. */
void acache__redis_sigpipe_block(const redis_store *s, sigpipe_guard *g);
void acache__redis_sigpipe_restore(sigpipe_guard *g);

/* Message for an I/O failure on `c` (timeout or broken), returns ESTORE. */
int acache__redis_io_fail(redis_store *s, const rconn *c, const char *cmd,
                          const char *what);
/* Message for an error reply or an unexpected reply type, returns ESTORE. */
int acache__redis_reply_fail(const redisReply *r, const char *cmd, const char *what);
#ifdef __clang_analyzer__ /* pool.c is out of its sight: both return ESTORE */
#define acache__redis_io_fail(...)                                                       \
    ((void)acache__redis_io_fail(__VA_ARGS__), ACACHE_ESTORE)
#define acache__redis_reply_fail(...)                                                    \
    ((void)acache__redis_reply_fail(__VA_ARGS__), ACACHE_ESTORE)
#endif

/* Dial: connect, AUTH, SELECT, load the scripts (`first`: record their SHAs). */
int acache__redis_dial(redis_store *s, rconn **out, int first);
int acache__redis_conn_get(redis_store *s, rconn **out);
/* Return a connection; one that failed (or still owes replies) is closed. */
void acache__redis_conn_put(redis_store *s, rconn *c, int discard);
/* One command on a pooled connection; `retry` replays it once on a fresh
 * connection when the old one broke. Error replies are returned as replies
 * (the caller decides); I/O failures set the message and return ESTORE. */
int acache__redis_run(redis_store *s, int retry, const char *cmd, const char *what,
                      int argc, const char **argv, const size_t *lens, redisReply **out);
/* Send one command on `c` and read its reply: 0, or -1 (rconn_err set; OOM
 * is reported as RIO_OTHER). */
int acache__redis_command(rconn *c, int argc, const char **argv, const size_t *lens,
                          redisReply **out);

/* ---- scripts.c ---- */

typedef struct redis_script {
    const char *name; /* "touch", for messages */
    const char *text;
    size_t len;
} redis_script;

extern const redis_script acache__redis_touch_script, acache__redis_delete_script;
extern const redis_script acache__redis_report_script;

/* SCRIPT LOAD the scripts on `c`; `first`: record their SHAs in `s`. */
int acache__redis_load_scripts(redis_store *s, rconn *c, int first);

/* Builds the arguments of call `i` from argv[3] on (the helper fills argv[0]
 * "EVALSHA"/"EVAL", argv[1] the SHA or text and argv[2] the key count) and
 * returns the total argc. */
typedef struct script_call {
    int argc;
    const char **argv; /* at least argc entries, argv[0..1] set by the helper */
    size_t *lens;
} script_call;
typedef int (*script_build_fn)(void *ctx, size_t i, script_call *call);
/* Receives call i's reply (borrowed); return ACACHE_OK or an error code. */
typedef int (*script_reply_fn)(void *ctx, size_t i, const redisReply *r);

/* Run `n` calls of `sc` pipelined on `c` with EVALSHA; a call answered
 * NOSCRIPT (the script cache was flushed under us, so it did not run) is
 * re-sent with EVAL, which also caches the script again. Error replies other
 * than NOSCRIPT go to `take` like any reply. */
int acache__redis_eval(redis_store *s, rconn *c, const redis_script *sc, const char *sha,
                       size_t n, script_build_fn build, script_reply_fn take, void *ctx,
                       const char *what);

extern const redis_script acache__redis_repair_script;
/* The repair script's SHA1 (hex), or NULL when it could not be computed. */
const char *acache__redis_repair_sha(void);

/* ---- hint.c: what this store last knew to be in Redis for a pin ----
 *
 * A fixed table (HINT_SLOTS, direct-mapped by a hash of the storage key,
 * a mutex per slot; at most HINT_MAX bytes per entry) of the exact value
 * bytes this store wrote or read for a key, so that a touch can write its
 * result blindly with SET ... GET and check the old value it gets back
 * (affinity.c). A hint is only ever a guess: every use is checked by Redis. */
#define HINT_SLOTS 4096
#define HINT_MAX 1024 /* key + value + target strings of one entry */

typedef struct redis_hints redis_hints;

/* A copy of one hint, taken under its slot's lock. The value's head (up to
 * and including `"created_at": `) is val[0, created_off), its created_at
 * text val[created_off, created_off + created_len). */
typedef struct hint_view {
    char val[HINT_MAX];
    size_t val_len, created_off, created_len;
    double created_at, expire_at;
    int64_t count;
} hint_view;

/* What a hint is filled with: the value bytes and their fields; strs are
 * provider_id, endpoint_id, key_id, api_format, model_name. */
typedef struct hint_fill {
    const char *val;
    size_t val_len, created_off, created_len;
    double created_at, expire_at;
    int64_t count;
    const char *strs[5];
} hint_fill;

int acache__redis_hints_new(redis_hints **out);
void acache__redis_hints_free(redis_hints *h);
/* 1 and *out filled when the key has a hint with req's target, api_format
 * and model, live at req->now, and is not marked contended. */
int acache__redis_hint_find(redis_hints *h, const acache_touch_req *req, hint_view *out);
void acache__redis_hint_put(redis_hints *h, const char *key, size_t key_len,
                            const hint_fill *f);
/* Forget the value (the contention mark stays). */
void acache__redis_hint_drop(redis_hints *h, const char *key, size_t key_len);
/* Drop the value and make find() refuse the key for `ms` milliseconds. */
void acache__redis_hint_contend(redis_hints *h, const char *key, size_t key_len,
                                uint32_t ms);
/* The server refused SET ... GET (Redis < 6.2): script touches from now on. */
void acache__redis_hints_script_only(redis_hints *h);
/* Fill from a value read with GET when it is in the exact layout a touch
 * writes (head of plain strings in Python's json.dumps order, then
 * created_at, expire_at, request_count); anything else is not kept. */
void acache__redis_hint_from_value(redis_hints *h, const char *key, const char *val,
                                   size_t len);

/* ---- scan.c ---- */

/* Keys starting with the literal `prefix`, with values when `with_values`,
 * parsed as affinity records when `parse`. */
int acache__redis_scan(redis_store *s, const char *prefix, int with_values, int parse,
                       acache_entry_batch_cb cb, void *payload);

/* ---- raw.c, affinity.c: the slots ---- */

int acache__redis_get(acache_store *self, const char *key, acache_buf *out);
int acache__redis_set(acache_store *self, const char *key, const char *value, size_t len,
                      uint32_t ttl_s);
int acache__redis_del(acache_store *self, const acache_key *keys, size_t n,
                      size_t *deleted);
int acache__redis_ttl(acache_store *self, const char *const *keys, size_t n,
                      int64_t *out);
int acache__redis_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                               void *payload);
int acache__redis_affinity_touch(acache_store *self, const acache_touch_req *req,
                                 int *result, acache_record_cb cb, void *payload);
int acache__redis_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                     const acache_match *m, size_t *deleted);
/* Tests only: called by the optimistic delete between its read and its
 * MULTI/EXEC (affinity.c), so a test can write a watched key there. */
extern void (*acache__redis_delete_hook)(void);
/* report.c: the pin-lifecycle script behind affinity_fail. */
int acache__redis_affinity_fail(acache_store *self, const acache_fail_req *req,
                                int *result, uint32_t *failures);

/* A key for an error message: its bytes up to the first NUL, at most 200. */
typedef struct key_label {
    char text[208];
} key_label;
const char *acache__redis_key_label(key_label *l, const acache_key *k);

/* ---- counters.c: the fleet counter slots (docs/fleet.md) ---- */

void acache__redis_counters_register(acache_store *st);

/* ---- uri.c ---- */

/* Fill host/port/path/user/password/db/where and the TLS options of `s`
 * from `uri`. */
int acache__redis_parse_uri(redis_store *s, const char *uri);

/* ---- sentinel.c, breaker.c ---- */

/* What the failing call on this thread ran into, for the guard (breaker.c):
 * set where the failure is seen, cleared by the guard before each call. */
extern _Thread_local unsigned acache__redis_notes;
#define RNOTE_CONN 0x1u /* connect failed, or a command timed out / broke */
#define RNOTE_NOT_RUN                                                                    \
    0x2u                    /* nothing was sent or the server refused to run it:         \
                               dial failed, -READONLY, -LOADING */
#define RNOTE_READONLY 0x4u /* -READONLY / -LOADING: not (or no longer) the primary */

/* A connection could not be made or broke: note it, and in Sentinel mode
 * forget the primary so that the next dial asks the sentinels again. */
void acache__redis_conn_failed(redis_store *s);
/* An error reply: notes -READONLY / -LOADING. */
void acache__redis_note_reply(const redisReply *r);

/* redis-sentinel:// URI into s (and s->sentinel). */
int acache__redis_sentinel_parse(redis_store *s, const char *uri);
/* Dial hook: point `t` at the current primary (resolving it through the
 * sentinels when unknown or stale); `host` receives its name. The connect
 * budget left after the resolution is put in t->connect_ms. */
int acache__redis_sentinel_target(redis_store *s, rconn_target *t, char *host,
                                  size_t hostlen);
/* After AUTH: ROLE must say master. */
int acache__redis_sentinel_check_role(redis_store *s, rconn *c, const rconn_target *t);
/* Ask the sentinels again now; 1 when the primary changed (the pool is
 * drained then), so a call that did not run may be retried once. */
int acache__redis_sentinel_recheck(redis_store *s);
uint64_t acache__redis_sentinel_changes(const redis_store *s);
void acache__redis_sentinel_free(redis_store *s);

/* Wrap the vtable slots of s (after they are all set) with the breaker. */
int acache__redis_guard_install(redis_store *s, uint32_t threshold, uint32_t cooldown_ms);
void acache__redis_guard_free(redis_store *s);

/* ---- cluster.c, slots.c: redis-cluster:// ----
 *
 * A cluster store's own pool is unused: each node is a redis_store of its
 * own (pool, dial, scripts), and every slot routes by key. Code that sends
 * commands itself (counters.c, report.c...) must route each key too, or a
 * cluster answers -MOVED / -CROSSSLOT. Two ways, both also correct on a
 * single node (there they use `s` itself):
 *
 *   acache__redis_for_key(s, key, len, fn, ctx) runs fn(node, ctx) on the
 *     node that owns the key's slot and follows -MOVED / -ASK (with ASKING)
 *     and -TRYAGAIN / -CLUSTERDOWN (back-off within command_ms) by running
 *     fn again; fn must use only that key (or keys of the same slot, e.g.
 *     with one {hash tag}), take a connection with acache__redis_conn_get(
 *     node, ...) and report error replies through acache__redis_reply_fail
 *     (which is how a redirection is noticed). A redirected command did not
 *     run, so fn may be a non-idempotent write.
 *   acache__redis_conn_for_key(s, key, len, &node, &c) only picks the node
 *     and a connection (return it with acache__redis_conn_put(node, ...));
 *     for pipelines of one slot. acache__redis_cluster_redirected(s, reply)
 *     says whether an error reply was a redirection (and updates the map):
 *     the caller may then run again through acache__redis_for_key.
 */
typedef struct redis_cluster redis_cluster;
typedef int (*acache_redis_key_fn)(redis_store *node, void *ctx);
int acache__redis_for_key(redis_store *s, const char *key, size_t len,
                          acache_redis_key_fn fn, void *ctx);
int acache__redis_conn_for_key(redis_store *s, const char *key, size_t len,
                               redis_store **node, rconn **out);
int acache__redis_cluster_redirected(redis_store *s, const redisReply *r);
/* CRC16-CCITT (XMODEM) and the slot of a key (hash tags honoured). */
uint16_t acache__redis_crc16(const char *p, size_t n);
unsigned acache__redis_key_slot(const char *key, size_t len);
/* uri.c: "redis-cluster://" + rest (seeds, then the first seed's options). */
int acache__redis_cluster_parse_uri(redis_store *s, const char *rest);
/* store.c, instead of the first dial: map from the seeds, cluster slots. */
int acache__redis_cluster_start(redis_store *s);
void acache__redis_cluster_free(redis_store *s);
/* pool.c hooks: note a -MOVED/-ASK/-TRYAGAIN/-CLUSTERDOWN reply (thread
 * local); send ASKING on `c` when this thread's next command on `s` follows
 * an -ASK. */
void acache__redis_cluster_note(const redisReply *r);
int acache__redis_cluster_asking(redis_store *s, rconn *c);
/* MOVED + ASK redirections followed since open (0: not a cluster). */
uint64_t acache__redis_cluster_redirects(const acache_store *st);
/* tracking.c: the nodes that serve a slot in the map now (at most max). */
int acache__redis_cluster_owners(redis_store *s, redis_store **out, int max);
/* tracking.c: mark the map for a refresh and refresh it if allowed now. */
void acache__redis_cluster_poke(redis_store *s);

/* ---- tracking.c: the invalidations_* slots (docs/redis.md "L1 invalidation") ---- */

/* Set the slots (single node, Sentinel: one subscriber; cluster: one per
 * primary, following the slot map); stop the threads (r_free; idempotent). */
void acache__redis_tracking_register(acache_store *st);
void acache__redis_tracking_free(redis_store *s);
/* cluster.c hooks, on the cluster store: a command is about to run on `node`,
 * which has no live subscriber of ours or is an -ASK target (`asked`); the
 * set of slot owners changed with a map refresh. */
void acache__redis_tracking_unwatched(redis_store *s, redis_store *node, int asked);
void acache__redis_tracking_topology(redis_store *s);

/* ---- tls.c ---- */

/* The shared SSL_CTX of a rediss:// store (trust store, client cert). */
int acache__redis_tls_init(redis_store *s);
void acache__redis_tls_free(redis_store *s);

#endif
