/* redis-cluster:// on a real 3-primary cluster (ctest "integration-cluster":
 * one cluster per run, tests/support/harness.c). Skipped elsewhere. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "redis_server.h"

/* lib/store/redis/ internals (redis_priv.h pulls in OpenSSL and hiredis). */
uint16_t acache__redis_crc16(const char *p, size_t n);
unsigned acache__redis_key_slot(const char *key, size_t len);
uint64_t acache__redis_cluster_redirects(const acache_store *st);

static int ports[TEST_CLUSTER_MAX], nports;

static void need_cluster(void)
{
    nports = th_cluster_ports(ports, TEST_CLUSTER_MAX);
    if (nports == 0)
        cr_skip_test("not on a cluster (ctest integration-cluster)");
    th_set_time(1800000000.0);
    (void)th_store_uri(); /* empties the cluster */
}

TestSuite(cluster, .timeout = 240);

static redisContext *node(int port)
{
    redisContext *r = redisConnect("127.0.0.1", port);
    cr_assert(r && !r->err, "connect %d", port);
    return r;
}

/* Port owning each slot, from CLUSTER SLOTS. */
static void slot_map(int any_port, int *owner)
{
    redisContext *r = node(any_port);
    redisReply *rep = redisCommand(r, "CLUSTER SLOTS");
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            owner[s] = (int)e->element[2]->element[1]->integer;
    }
    freeReplyObject(rep);
    redisFree(r);
}

Test(cluster, key_slots_match_the_server)
{
    need_cluster();
    /* The CRC16/XMODEM check value, and the spec's examples. */
    cr_assert_eq(acache__redis_crc16("123456789", 9), 0x31C3);
    static const char *const keys[] = {
        "123456789",
        "foo",
        "{user1000}.following",
        "{user1000}.followers",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{}",
        "}{",
        "cache_affinity:3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f:claude:m",
        "model:provider_global:p:g",
        "global_model:resolve:gpt-4o",
        "a{b",
        "",
    };
    redisContext *r = node(ports[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        redisReply *rep = redisCommand(r, "CLUSTER KEYSLOT %b", keys[i], strlen(keys[i]));
        cr_assert(rep && rep->type == REDIS_REPLY_INTEGER);
        cr_assert_eq(acache__redis_key_slot(keys[i], strlen(keys[i])),
                     (unsigned)rep->integer, "%s", keys[i]);
        freeReplyObject(rep);
    }
    static const char nul[] = "cache_affinity:a\0b:claude:{m\0}";
    redisReply *rep = redisCommand(r, "CLUSTER KEYSLOT %b", nul, sizeof nul - 1);
    cr_assert_eq(acache__redis_key_slot(nul, sizeof nul - 1), (unsigned)rep->integer);
    freeReplyObject(rep);
    redisFree(r);
}

/* ---- the same data on a single node and on the cluster ---- */

#define NPINS 100000

static void pin_kv(int i, char *key, size_t kcap, char *val, size_t vcap, int *vlen)
{
    snprintf(key, kcap, "cache_affinity:ak%d:%s:m%d", i / 3, i % 2 ? "claude" : "openai",
             i % 3);
    *vlen = snprintf(val, vcap,
                     "{\"provider_id\": \"p%d\", \"endpoint_id\": \"e%d\", \"key_id\": "
                     "\"k%d\", \"api_format\": \"%s\", \"model_name\": \"m%d\", "
                     "\"created_at\": 1800000000.0, \"expire_at\": %d.5, "
                     "\"request_count\": %d}",
                     i % 7, i % 11, i % 13, i % 2 ? "claude" : "openai", i % 3,
                     1800000100 + i % 500, i % 40 + 1);
}

/* Pipelined SETs: to `single` (port) and to the cluster's owners. */
static void load(int single, int *owner)
{
    redisContext *one = node(single);
    redisContext *per[TEST_CLUSTER_MAX];
    size_t owed[TEST_CLUSTER_MAX] = {0};
    for (int n = 0; n < nports; n++)
        per[n] = node(ports[n]);
    char key[128], val[512];
    int vlen;
    for (int i = 0; i < NPINS + 200; i++) {
        if (i < NPINS) {
            pin_kv(i, key, sizeof key, val, sizeof val, &vlen);
        } else { /* model-mapping keys */
            snprintf(key, sizeof key,
                     i % 2 ? "model:provider_global:p%d:g%d"
                           : "global_model:resolve:g%d-%d",
                     i % 5, i);
            vlen = snprintf(val, sizeof val, "{\"provider_model_name\": \"x%d\"}", i);
        }
        /* Mapping keys without expiry: their TTLs are in the stats. */
        const char *fmt = i < NPINS ? "SET %s %b EX 3000" : "SET %s %b";
        redisAppendCommand(one, fmt, key, val, (size_t)vlen);
        int port = owner[acache__redis_key_slot(key, strlen(key))], n = 0;
        while (ports[n] != port)
            n++;
        redisAppendCommand(per[n], fmt, key, val, (size_t)vlen);
        owed[n]++;
    }
    void *rep;
    for (int i = 0; i < NPINS + 200; i++) {
        cr_assert_eq(redisGetReply(one, &rep), REDIS_OK);
        freeReplyObject(rep);
    }
    for (int n = 0; n < nports; n++) {
        for (size_t i = 0; i < owed[n]; i++) {
            cr_assert_eq(redisGetReply(per[n], &rep), REDIS_OK);
            cr_assert_neq(((redisReply *)rep)->type, REDIS_REPLY_ERROR);
            freeReplyObject(rep);
        }
        redisFree(per[n]);
    }
    redisFree(one);
}

static double test_clock(void *p)
{
    (void)p;
    return th_time();
}

static acache *open_uri(const char *uri)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.clock = test_clock;
    o.command_timeout_ms = 10000;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK, "%s: %s", uri, acache_last_error());
    return c;
}

static void same_json(acache *a, acache *b, int64_t limit, int64_t offset)
{
    acache_buf x = ACACHE_BUF_INIT, y = ACACHE_BUF_INIT;
    cr_assert_eq(th_list_json(&x, a, NULL, limit, offset), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(th_list_json(&y, b, NULL, limit, offset), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(x.size, y.size, "listing at %lld differs in length", (long long)offset);
    cr_assert_eq(memcmp(x.ptr, y.ptr, x.size), 0, "listing at %lld differs",
                 (long long)offset);
    acache_buf_dispose(&x);
    acache_buf_dispose(&y);
}

static void same_stats(acache *a, acache *b)
{
    acache_buf x = ACACHE_BUF_INIT, y = ACACHE_BUF_INIT;
    cr_assert_eq(acache_model_mapping_stats(&x, a), ACACHE_OK, "%s", acache_last_error());
    cr_assert_eq(acache_model_mapping_stats(&y, b), ACACHE_OK, "%s", acache_last_error());
    cr_assert(x.size == y.size && memcmp(x.ptr, y.ptr, x.size) == 0,
              "model-mapping stats differ:\n%s\n%s", x.ptr, y.ptr);
    acache_buf_dispose(&x);
    acache_buf_dispose(&y);
}

static size_t invalidate(acache *c, int kind, const char *provider)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = kind;
    t.provider_id = provider;
    size_t removed = 0;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_OK, "%s",
                 acache_last_error());
    return removed;
}

Test(cluster, same_answers_as_a_single_node)
{
    need_cluster();
    test_redis single;
    cr_assert_eq(test_redis_start(&single), 0);
    /* Exact comparison: empty every primary again right before the load (an
     * earlier test's leftovers once showed up as an extra model key). */
    for (int n = 0; n < nports; n++) {
        redisContext *r = node(ports[n]);
        redisReply *rep = redisCommand(r, "FLUSHALL SYNC");
        cr_assert_not_null(rep, "FLUSHALL on %d", ports[n]);
        int replica = rep->type == REDIS_REPLY_ERROR; /* READONLY: not a primary */
        freeReplyObject(rep);
        if (replica) {
            redisFree(r);
            continue;
        }
        rep = redisCommand(r, "DBSIZE");
        cr_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0,
                  "node %d not empty after FLUSHALL", ports[n]);
        freeReplyObject(rep);
        redisFree(r);
    }
    static int owner[16384];
    slot_map(ports[0], owner);
    load(single.port, owner);
    acache *one = open_uri(single.uri), *cl = open_uri(th_store_uri());
    same_json(one, cl, 1000, 0);
    same_json(one, cl, 1000, NPINS / 2);
    same_json(one, cl, 1000, NPINS - 500);
    same_stats(one, cl);
    size_t a = invalidate(one, ACACHE_TARGET_PROVIDER, "p3");
    size_t b = invalidate(cl, ACACHE_TARGET_PROVIDER, "p3");
    cr_assert_eq(a, b);
    cr_assert_gt(a, NPINS / 8);
    same_json(one, cl, 1000, 0);
    a = invalidate(one, ACACHE_TARGET_ALL, NULL);
    b = invalidate(cl, ACACHE_TARGET_ALL, NULL);
    cr_assert_eq(a, b, "clear-all: %zu vs %zu", a, b);
    cr_assert_eq(a, NPINS - NPINS / 7 - (NPINS % 7 > 3));
    same_stats(one, cl);
    acache_close(one);
    acache_close(cl);
    test_redis_stop(&single);
}

/* ---- a slot migration under a touch loop ---- */

#define NMIG 24
#define NTHREADS 4

static char mig_keys[NMIG][64];
static atomic_int mig_ok[NMIG], mig_err, mig_stop;
static acache *mig_c;

static void *toucher(void *p)
{
    int t = (int)(intptr_t)p;
    for (int i = t; !atomic_load(&mig_stop); i++) {
        int k = i % NMIG;
        acache_touch req = ACACHE_TOUCH_INIT;
        req.affinity_key = mig_keys[k];
        req.api_format = "claude";
        req.model_name = "m";
        req.provider_id = "p";
        req.endpoint_id = "e";
        req.key_id = "k";
        if (acache_affinity_touch(NULL, mig_c, &req) == ACACHE_OK)
            atomic_fetch_add(&mig_ok[k], 1);
        else
            atomic_fetch_add(&mig_err, 1);
    }
    return NULL;
}

static void node_id(int port, char *id)
{
    redisContext *r = node(port);
    redisReply *rep = redisCommand(r, "CLUSTER MYID");
    cr_assert(rep && rep->type == REDIS_REPLY_STRING && rep->len < 64);
    memcpy(id, rep->str, rep->len + 1);
    freeReplyObject(rep);
    redisFree(r);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void ok_reply(redisReply *rep, const char *what)
{
    cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "%s: %s", what,
              rep ? rep->str : "no reply");
    freeReplyObject(rep);
}

Test(cluster, slot_migration_loses_no_touch)
{
    need_cluster();
    /* NMIG client keys whose pins share one slot. */
    unsigned slot = 0;
    int found = 0;
    char key[96];
    for (int i = 0; found < NMIG; i++) {
        char ak[32];
        snprintf(ak, sizeof ak, "mig%d", i);
        snprintf(key, sizeof key, "cache_affinity:%s:claude:m", ak);
        unsigned s = acache__redis_key_slot(key, strlen(key));
        if (found == 0)
            slot = s;
        if (s == slot)
            memcpy(mig_keys[found++], ak, strlen(ak) + 1);
    }
    static int owner[16384];
    slot_map(ports[0], owner);
    int src = owner[slot], dst = src == ports[0] ? ports[1] : ports[0];
    char src_id[64], dst_id[64];
    node_id(src, src_id);
    node_id(dst, dst_id);

    mig_c = open_uri(th_store_uri());
    uint64_t redirects0 = acache__redis_cluster_redirects(acache_handle_store(mig_c));
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, toucher, (void *)(intptr_t)t);
    sleep_ms(150);
    redisContext *s = node(src), *d = node(dst);
    ok_reply(redisCommand(d, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id),
             "IMPORTING");
    ok_reply(redisCommand(s, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id),
             "MIGRATING");
    /* A few keys at a time, so that touches meet a half-moved slot (ASK). */
    for (;;) {
        redisReply *keys = redisCommand(s, "CLUSTER GETKEYSINSLOT %u 3", slot);
        cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
        if (keys->elements == 0) {
            freeReplyObject(keys);
            break;
        }
        const char *argv[16];
        size_t lens[16];
        char portbuf[16];
        snprintf(portbuf, sizeof portbuf, "%d", dst);
        const char *head[] = {"MIGRATE", "127.0.0.1", portbuf, "", "0", "5000", "KEYS"};
        int argc = 0;
        for (int i = 0; i < 7; i++, argc++) {
            argv[argc] = head[i];
            lens[argc] = strlen(head[i]);
        }
        for (size_t i = 0; i < keys->elements; i++, argc++) {
            argv[argc] = keys->element[i]->str;
            lens[argc] = keys->element[i]->len;
        }
        ok_reply(redisCommandArgv(s, argc, argv, lens), "MIGRATE");
        freeReplyObject(keys);
        sleep_ms(30);
    }
    sleep_ms(50);
    for (int i = 0; i < nports; i++) {
        redisContext *n = node(ports[i]);
        ok_reply(redisCommand(n, "CLUSTER SETSLOT %u NODE %s", slot, dst_id),
                 "SETSLOT NODE");
        redisFree(n);
    }
    sleep_ms(200); /* touches after the move: MOVED */
    atomic_store(&mig_stop, 1);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    redisFree(s);
    redisFree(d);

    cr_assert_eq(atomic_load(&mig_err), 0, "%d touches failed: %s", atomic_load(&mig_err),
                 acache_last_error());
    cr_assert_gt(acache__redis_cluster_redirects(acache_handle_store(mig_c)), redirects0,
                 "no MOVED/ASK was followed: the test moved nothing");
    long total = 0;
    for (int k = 0; k < NMIG; k++) {
        acache_affinity *a = NULL;
        cr_assert_eq(acache_affinity_get(&a, mig_c, mig_keys[k], "claude", "m"),
                     ACACHE_OK, "%s: %s", mig_keys[k], acache_last_error());
        cr_assert_eq(acache_affinity_request_count(a), atomic_load(&mig_ok[k]),
                     "%s: request_count %lld, acknowledged touches %d", mig_keys[k],
                     (long long)acache_affinity_request_count(a),
                     atomic_load(&mig_ok[k]));
        total += atomic_load(&mig_ok[k]);
        acache_affinity_free(a);
    }
    cr_assert_gt(total, NMIG);
    acache_close(mig_c);
}

/* ---- a node killed in the middle of a pipelined enumeration ---- */

static test_redis_cluster own;
static int killed;

static int kill_first(const acache_affinity *a, void *p)
{
    (void)a;
    (void)p;
    if (!killed) {
        kill(own.node[0].pid, SIGKILL);
        killed = 1;
    }
    return 0;
}

Test(cluster, node_death_mid_pipeline_fails_cleanly)
{
    need_cluster();
    /* Its own cluster: this one is broken on purpose. */
    cr_assert_eq(test_redis_cluster_start(&own, 3), 0);
    acache *c = open_uri(own.uri);
    acache_store *st = acache_handle_store(c);
    char key[96], val[512];
    int vlen;
    for (int i = 0; i < 6000; i++) {
        pin_kv(i, key, sizeof key, val, sizeof val, &vlen);
        cr_assert_eq(st->set(st, key, val, (size_t)vlen, 3000), ACACHE_OK, "%s",
                     acache_last_error());
    }
    int rc = acache_affinity_foreach(c, NULL, kill_first, NULL);
    cr_assert_eq(rc, ACACHE_ESTORE, "foreach with a dead node: %d", rc);
    cr_assert(killed);
    size_t removed = 0;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ALL;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_ESTORE);
    acache_close(c);
    test_redis_cluster_stop(&own);
}
