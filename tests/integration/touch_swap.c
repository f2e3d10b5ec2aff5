/* The touch swap path (lib/store/redis/affinity.c, hint.c, scripts/
 * repair.lua; issue 12 item 1) on a private Redis: a refresh of a known pin
 * is one native SET ... GET; exact counts with 2 processes x 8 threads
 * racing swaps, repairs and scripts; switches interleaved with refreshes;
 * deletes racing swaps; created_at byte-exact; an Aether value swapped; a
 * missing, expired or foreign old value repaired; touch=script; a repair
 * that fails (denied, or Redis killed) is an error and nothing worse. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/store.h"
#include "core/core.h"
#include "redis_server.h"

TEST_REDIS_SUITE(touch_swap, 120);

#define KEY "cache_affinity:ak:claude:m"
#define HEAD_P                                                                           \
    "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "               \
    "\"api_format\": \"claude\", \"model_name\": \"m\", "
#define NOW 1800000000.5

static acache_store *store_q(const char *query)
{
    char uri[1400];
    snprintf(uri, sizeof uri, "%s%s", srv.uri, query ? query : "");
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    return s;
}

static redisContext *raw(void)
{
    redisContext *r = redisConnect("127.0.0.1", srv.port);
    cr_assert(r && !r->err);
    return r;
}

static void raw_cmd(const char *fmt, const char *a, const char *b)
{
    redisContext *r = raw();
    freeReplyObject(redisCommand(r, fmt, a, b));
    redisFree(r);
}

/* The value at `key` (NUL-terminated copy), "" when absent. */
static void value_of(const char *key, char *out, size_t cap)
{
    redisContext *r = raw();
    redisReply *rep = redisCommand(r, "GET %s", key);
    snprintf(out, cap, "%.*s", rep && rep->type == REDIS_REPLY_STRING ? (int)rep->len : 0,
             rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
    freeReplyObject(rep);
    redisFree(r);
}

static long long cmd_calls(const char *cmd)
{
    redisContext *r = raw();
    redisReply *rep = redisCommand(r, "INFO commandstats");
    char pat[64];
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
    const char *p = strstr(rep->str, pat);
    long long n = p ? atoll(p + strlen(pat)) : 0;
    freeReplyObject(rep);
    redisFree(r);
    return n;
}

static void reset_stats(void)
{
    redisContext *r = raw();
    freeReplyObject(redisCommand(r, "CONFIG RESETSTAT"));
    redisFree(r);
}

typedef struct got {
    int64_t count;
    double created_at;
} got;

static void got_cb(const acache_record *r, void *payload)
{
    got *g = payload;
    g->count = r->request_count;
    g->created_at = r->created_at;
}

static int touch_at(acache_store *s, const char *key, const char *prov, double now,
                    got *g, int *result)
{
    acache_touch_req req = {.key = key,
                            .provider_id = prov,
                            .endpoint_id = "e",
                            .key_id = "k",
                            .api_format = "claude",
                            .model_name = "m",
                            .now = now,
                            .ttl_s = 300};
    got dummy;
    return s->affinity_touch(s, &req, result, got_cb, g ? g : &dummy);
}

static void noop_cb(const acache_record *r, void *payload)
{
    (void)r;
    (void)payload;
}

/* request_count / provider of a value, -1 / "" when unreadable */
static long long count_of(const char *v, char *prov, size_t cap)
{
    json_error_t e;
    json_t *o = json_loads(v, 0, &e);
    long long n = -1;
    if (o && json_is_integer(json_object_get(o, "request_count")))
        n = json_integer_value(json_object_get(o, "request_count"));
    if (prov)
        snprintf(prov, cap, "%s",
                 o && json_is_string(json_object_get(o, "provider_id"))
                     ? json_string_value(json_object_get(o, "provider_id"))
                     : "");
    json_decref(o);
    return n;
}

Test(touch_swap, refresh_of_a_known_pin_is_one_set_get)
{
    acache_store *s = store_q(NULL);
    reset_stats();
    int res = 0;
    got g;
    cr_assert_eq(touch_at(s, KEY, "p", NOW, &g, &res), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(res, ACACHE_TOUCH_CREATED);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(touch_at(s, KEY, "p", NOW + 1 + i, &g, &res), ACACHE_OK, "%s",
                     acache_last_error());
        cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
        cr_expect_eq(g.count, i + 2);
        cr_expect_eq(g.created_at, NOW);
    }
    cr_expect_eq(cmd_calls("evalsha"), 1, "only the creation ran the script");
    /* commandstats counts a script's own redis.call('SET') too */
    cr_expect_eq(cmd_calls("set"), 1 + 10, "each refresh one SET ... GET");
    char v[512];
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v,
                     HEAD_P "\"created_at\": 1800000000.5, \"expire_at\": 1800000310.5, "
                            "\"request_count\": 11}");
    s->free(s);
}

/* The value the store knew was replaced behind its back: the swap repairs. */
Test(touch_swap, foreign_nil_and_expired_old_values_are_repaired)
{
    acache_store *s = store_q("?touch_contended_ms=0");
    int res = 0;
    got g;
    char v[512];
    cr_assert_eq(touch_at(s, KEY, "p", NOW, &g, &res), ACACHE_OK);
    /* another writer refreshed it meanwhile (count 7, created text kept) */
    raw_cmd("SET %s %s", KEY,
            HEAD_P "\"created_at\": 1700000000, \"expire_at\": 1800000900.0, "
                   "\"request_count\": 7}");
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 1, &g, &res), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, 8);
    cr_expect_eq(g.created_at, 1700000000.0);
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, HEAD_P "\"created_at\": 1700000000, \"expire_at\": 1800000301.5, "
                               "\"request_count\": 8}");
    /* nil: deleted behind the store's back; the next touch swaps then repairs */
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 2, &g, &res), ACACHE_OK);
    raw_cmd("DEL %s%s", KEY, "");
    reset_stats();
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 3, &g, &res), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(res, ACACHE_TOUCH_CREATED);
    cr_expect_eq(g.count, 1);
    cr_expect_eq(cmd_calls("evalsha"), 1, "the repair");
    cr_expect_eq(cmd_calls("set"), 2, "the swap's SET ... GET, the repair's SET");
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v,
                     HEAD_P "\"created_at\": 1800000003.5, \"expire_at\": 1800000303.5, "
                            "\"request_count\": 1}");
    /* expired old value (another writer's, past its expire_at) */
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 4, &g, &res), ACACHE_OK);
    raw_cmd("SET %s %s", KEY,
            HEAD_P "\"created_at\": 1.0, \"expire_at\": 2.0, \"request_count\": 40}");
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 5, &g, &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_CREATED);
    cr_expect_eq(g.count, 1);
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v,
                     HEAD_P "\"created_at\": 1800000005.5, \"expire_at\": 1800000305.5, "
                            "\"request_count\": 1}");
    /* switched by another writer: our touch switches it back */
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 6, &g, &res), ACACHE_OK);
    raw_cmd("SET %s %s", KEY,
            "{\"provider_id\": \"q\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
            "\"api_format\": \"claude\", \"model_name\": \"m\", \"created_at\": 1.0, "
            "\"expire_at\": 1800000900.0, \"request_count\": 10}");
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 7, &g, &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_SWITCHED_PROVIDER);
    cr_expect_eq(g.count, 1);
    /* another layout (the slow path of the repair): count and created kept */
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 8, &g, &res), ACACHE_OK);
    raw_cmd("SET %s %s", KEY,
            "{\"endpoint_id\": \"e\", \"provider_id\": \"p\", \"key_id\": \"k\", "
            "\"created_at\": 1.8e9, \"expire_at\": 1800000900.0, \"request_count\": 2}");
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 9, &g, &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, 3);
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, HEAD_P "\"created_at\": 1.8e9, \"expire_at\": 1800000309.5, "
                               "\"request_count\": 3}");
    s->free(s);
}

/* created_at's text is kept byte for byte across swaps; a value Aether's
 * json.dumps wrote (testdata) is known from a get and then swapped. */
Test(touch_swap, aether_value_known_from_get_is_swapped_byte_exact)
{
    FILE *f = fopen(ACACHE_SHARED_DIR "/testdata/aether-redis/affinities.jsonl", "r");
    cr_assert(f);
    char line[4096];
    cr_assert(fgets(line, sizeof line, f));
    fclose(f);
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    cr_assert(o);
    const char *key = json_string_value(json_object_get(o, "key"));
    const char *val = json_string_value(json_object_get(o, "value"));
    json_t *pin = json_loads(val, 0, &e);
    double created = json_real_value(json_object_get(pin, "created_at"));
    const char *prov = json_string_value(json_object_get(pin, "provider_id"));
    const char *ep = json_string_value(json_object_get(pin, "endpoint_id"));
    const char *kid = json_string_value(json_object_get(pin, "key_id"));
    const char *model = json_string_value(json_object_get(pin, "model_name"));
    long long n0 = json_integer_value(json_object_get(pin, "request_count"));
    const char *ct = strstr(val, "\"created_at\": ");
    cr_assert(ct);
    char created_text[64];
    snprintf(created_text, sizeof created_text, "%.*s", (int)strcspn(ct + 14, ","),
             ct + 14);

    acache_store *s = store_q(NULL);
    raw_cmd("SET %s %s", key, val);
    cr_assert_eq(s->affinity_get(s, key, noop_cb, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    reset_stats();
    double now = created + 10; /* the file's pins are live at this clock */
    for (int i = 0; i < 3; i++) {
        acache_touch_req req = {.key = key,
                                .provider_id = prov,
                                .endpoint_id = ep,
                                .key_id = kid,
                                .api_format = "claude",
                                .model_name = model,
                                .now = now + i,
                                .ttl_s = 3600};
        int res = 0;
        got g;
        cr_assert_eq(s->affinity_touch(s, &req, &res, got_cb, &g), ACACHE_OK, "%s",
                     acache_last_error());
        cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
        cr_expect_eq(g.count, n0 + 1 + i);
        cr_expect_eq(g.created_at, created);
    }
    cr_expect_eq(cmd_calls("evalsha"), 0, "known from the get: no script at all");
    cr_expect_eq(cmd_calls("set"), 3);
    char v[1024], want[1024], exp[40];
    value_of(key, v, sizeof v);
    acache__fmt_double(exp, sizeof exp, now + 2 + 3600);
    /* Aether's bytes up to created_at's text, byte for byte */
    size_t pre = (size_t)(ct - val) + 14 + strlen(created_text);
    snprintf(want, sizeof want, "%.*s, \"expire_at\": %s, \"request_count\": %lld}",
             (int)pre, val, exp, n0 + 3);
    cr_expect_str_eq(v, want);
    json_decref(pin);
    json_decref(o);
    s->free(s);
}

Test(touch_swap, touch_script_option_never_swaps)
{
    acache_store *s = store_q("?touch=script");
    reset_stats();
    for (int i = 0; i < 5; i++)
        cr_assert_eq(touch_at(s, KEY, "p", NOW + i, NULL, NULL), ACACHE_OK);
    cr_expect_eq(cmd_calls("evalsha"), 5);
    cr_expect_eq(cmd_calls("set"), 5, "the scripts' own SETs only");
    char v[512];
    value_of(KEY, v, sizeof v);
    cr_expect_eq(count_of(v, NULL, 0), 5);
    s->free(s);
    acache_store *bad = NULL;
    char uri[1400];
    snprintf(uri, sizeof uri, "%s?touch=fast", srv.uri);
    cr_expect_eq(acache__store_redis_new(&bad, uri, 1000, 1000), ACACHE_EINVALID);
}

/* Switches between two stores in a known serial order: the last writer's
 * target wins and each lineage counts from 1. */
Test(touch_swap, switches_interleaved_with_refreshes_in_serial_order)
{
    acache_store *a = store_q("?touch_contended_ms=0"),
                 *b = store_q("?touch_contended_ms=0");
    int res = 0;
    got g;
    double t = NOW;
    for (int round = 0; round < 4; round++) {
        cr_assert_eq(touch_at(a, KEY, "p", t++, &g, &res), ACACHE_OK);
        cr_expect_eq(res,
                     round == 0 ? ACACHE_TOUCH_CREATED : ACACHE_TOUCH_SWITCHED_PROVIDER);
        cr_expect_eq(g.count, 1);
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(touch_at(a, KEY, "p", t++, &g, &res), ACACHE_OK);
            cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
            cr_expect_eq(g.count, 2 + i);
        }
        cr_assert_eq(touch_at(b, KEY, "q", t++, &g, &res), ACACHE_OK);
        cr_expect_eq(res, ACACHE_TOUCH_SWITCHED_PROVIDER);
        cr_expect_eq(g.count, 1);
        cr_assert_eq(touch_at(b, KEY, "q", t++, &g, &res), ACACHE_OK);
        cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
        cr_expect_eq(g.count, 2);
    }
    char v[512], prov[16];
    value_of(KEY, v, sizeof v);
    cr_expect_eq(count_of(v, prov, sizeof prov), 2);
    cr_expect_str_eq(prov, "q");
    a->free(a);
    b->free(b);
}

/* ---- 2 processes x 8 threads ---- */

#define PROCS 2
#define THREADS 8
#define PINS 3
#define ROUNDS 300

typedef struct worker {
    acache_store *s;
    int id;
    int mode;   /* 0: refresh only; 1: alternate targets p / q by thread */
    int rounds; /* 0: ROUNDS */
    int errors;
} worker;

static void *hammer(void *p)
{
    worker *w = p;
    char key[64];
    int rounds = w->rounds ? w->rounds : ROUNDS;
    for (int i = 0; i < rounds && !(w->rounds && w->errors); i++) {
        snprintf(key, sizeof key, "cache_affinity:race%d:claude:m", i % PINS);
        const char *prov = w->mode == 1 && (w->id & 1) ? "q" : "p";
        int res = 0;
        if (touch_at(w->s, key, prov, acache__wallclock(), NULL, &res) != ACACHE_OK)
            w->errors++;
    }
    return NULL;
}

static int run_proc(int id, int mode)
{
    acache_store *s = NULL;
    char uri[1400];
    snprintf(uri, sizeof uri, "%s?touch_contended_ms=0", srv.uri);
    if (acache__store_redis_new(&s, uri, 5000, 5000) != ACACHE_OK)
        return 1;
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.s = s, .id = id * THREADS + i, .mode = mode};
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    s->free(s);
    return errors != 0;
}

/* Fork before this process starts any thread of its own: a child forked
 * while another thread holds the (ASan) allocator's lock deadlocks. */
static void race_start(int mode, pid_t *pid)
{
    for (int p = 0; p < PROCS; p++) {
        pid[p] = fork();
        cr_assert(pid[p] >= 0);
        if (pid[p] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* a timed-out test takes it along */
            _exit(run_proc(p, mode));
        }
    }
}

static void race_wait(const pid_t *pid)
{
    for (int p = 0; p < PROCS; p++) {
        int st = 0;
        cr_assert_eq(waitpid(pid[p], &st, 0), pid[p]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d: errors", p);
    }
}

static void race(int mode)
{
    pid_t pid[PROCS];
    race_start(mode, pid);
    race_wait(pid);
}

Test(touch_swap, two_processes_eight_threads_lose_no_count)
{
    reset_stats();
    race(0);
    long long total = 0;
    for (int i = 0; i < PINS; i++) {
        char key[64], v[512];
        snprintf(key, sizeof key, "cache_affinity:race%d:claude:m", i);
        value_of(key, v, sizeof v);
        long long n = count_of(v, NULL, 0);
        cr_expect_eq(n, (long long)PROCS * THREADS * ROUNDS / PINS, "pin %d: %s", i, v);
        total += n;
    }
    cr_expect_eq(total, (long long)PROCS * THREADS * ROUNDS, "no lost or double count");
    /* the race was real: swaps ran, and some of them needed a repair */
    long long sets = cmd_calls("set"), evals = cmd_calls("evalsha");
    cr_log_info("%lld SETs (swaps + the scripts' own), %lld EVALSHA (scripts, repairs)",
                sets, evals);
    cr_expect_gt(sets, 100, "swaps: %lld", sets);
    cr_expect_gt(evals, PINS * PROCS, "repairs and scripts: %lld", evals);
}

/* Threads of two processes switch the same pins between p and q while
 * refreshing: every value stays readable with a target someone touched,
 * and a final serial touch refreshes it exactly. */
Test(touch_swap, switches_racing_swaps_keep_a_touched_target)
{
    race(1);
    acache_store *s = store_q(NULL);
    for (int i = 0; i < PINS; i++) {
        char key[64], v[512], prov[16];
        snprintf(key, sizeof key, "cache_affinity:race%d:claude:m", i);
        value_of(key, v, sizeof v);
        long long n = count_of(v, prov, sizeof prov);
        cr_expect(n >= 1 && n <= (long long)PROCS * THREADS * ROUNDS, "%s", v);
        cr_expect(!strcmp(prov, "p") || !strcmp(prov, "q"), "%s", v);
        int res = 0;
        got g;
        cr_assert_eq(touch_at(s, key, prov, acache__wallclock(), &g, &res), ACACHE_OK);
        cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
        cr_expect_eq(g.count, n + 1);
    }
    s->free(s);
}

typedef struct deleter {
    int stop;
    int deletes;
} deleter;

static void *delete_loop(void *p)
{
    deleter *d = p;
    redisContext *r = raw();
    while (!__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < PINS; i++) {
            redisReply *rep = redisCommand(r, "DEL cache_affinity:race%d:claude:m", i);
            freeReplyObject(rep);
            d->deletes++;
        }
        usleep(200);
    }
    redisFree(r);
    return NULL;
}

Test(touch_swap, deletes_racing_swaps_never_leave_an_untouched_target)
{
    deleter d = {0, 0};
    pid_t pid[PROCS];
    race_start(1, pid);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, delete_loop, &d), 0);
    race_wait(pid);
    __atomic_store_n(&d.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    cr_expect_gt(d.deletes, 10);
    for (int i = 0; i < PINS; i++) {
        char key[64], v[512], prov[16];
        snprintf(key, sizeof key, "cache_affinity:race%d:claude:m", i);
        value_of(key, v, sizeof v);
        if (!v[0])
            continue; /* a delete came last */
        long long n = count_of(v, prov, sizeof prov);
        cr_expect(n >= 1, "%s", v);
        cr_expect(!strcmp(prov, "p") || !strcmp(prov, "q"), "%s", v);
    }
}

/* The repair fails (the server refuses the script: an ACL without EVALSHA /
 * EVAL): the touch is an error with an unknown outcome, the value left has
 * the caller's target, and the store goes on. */
Test(touch_swap, failed_repair_is_an_error_and_leaves_the_callers_target)
{
    raw_cmd("ACL SETUSER swp on >pw ~* &* +@all -evalsha -eval%s%s", "", "");
    char uri[1400];
    snprintf(uri, sizeof uri, "redis://swp:pw@127.0.0.1:%d/0", srv.port);
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    const char *v0 = HEAD_P "\"created_at\": 1.5, \"expire_at\": 1800000900.0, "
                            "\"request_count\": 3}";
    raw_cmd("SET %s %s", KEY, v0);
    cr_assert_eq(s->affinity_get(s, KEY, noop_cb, NULL), ACACHE_OK); /* known */
    int res = 0;
    got g;
    cr_assert_eq(touch_at(s, KEY, "p", NOW, &g, &res), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(g.count, 4, "a swap needs no script");
    raw_cmd("SET %s %s", KEY, v0); /* someone else's write: a repair is due */
    cr_expect_eq(touch_at(s, KEY, "p", NOW + 1, &g, &res), ACACHE_ESTORE);
    cr_expect(strstr(acache_last_error(), "outcome is unknown"), "%s",
              acache_last_error());
    char v[512], prov[16];
    value_of(KEY, v, sizeof v);
    cr_expect_gt(count_of(v, prov, sizeof prov), 0, "%s", v);
    cr_expect_str_eq(prov, "p");
    s->free(s);
}

static void *kill_later(void *p)
{
    (void)p;
    usleep(30 * 1000);
    test_redis_kill(&srv);
    return NULL;
}

/* Redis killed while threads swap and repair: errors, no crash, no hang. */
Test(touch_swap, redis_killed_mid_swaps_is_an_error_not_a_crash)
{
    acache_store *s = store_q("?touch_contended_ms=0");
    pthread_t k;
    cr_assert_eq(pthread_create(&k, NULL, kill_later, NULL), 0);
    worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.s = s, .id = i, .mode = 0, .rounds = 1000000};
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        errors += w[i].errors;
    }
    pthread_join(k, NULL);
    cr_expect_gt(errors, 0, "the server went away mid-run");
    s->free(s);
}

/* redis-cluster://: the nodes share the cluster store's hints, so a refresh
 * is one SET ... GET on the key's node. */
static long long node_calls(test_redis_cluster *cl, const char *cmd)
{
    long long n = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
    for (int i = 0; i < cl->n; i++) {
        redisContext *r = redisConnect("127.0.0.1", cl->node[i].port);
        cr_assert(r && !r->err);
        redisReply *rep = redisCommand(r, "INFO commandstats");
        const char *p = strstr(rep->str, pat);
        n += p ? atoll(p + strlen(pat)) : 0;
        freeReplyObject(rep);
        redisFree(r);
    }
    return n;
}

Test(touch_swap, cluster_refresh_is_one_set_get_on_the_node)
{
    test_redis_cluster cl;
    memset(&cl, 0, sizeof cl);
    cr_assert_eq(test_redis_cluster_start(&cl, 3), 0, "cluster did not start");
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, cl.uri, 2000, 2000), ACACHE_OK, "%s",
                 acache_last_error());
    int res = 0;
    got g;
    const char *keys[3] = {"cache_affinity:a1:claude:m", "cache_affinity:b2:claude:m",
                           "cache_affinity:c3:claude:m"};
    long long set0 = node_calls(&cl, "set"), ev0 = node_calls(&cl, "evalsha");
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 5; i++) {
            cr_assert_eq(touch_at(s, keys[k], "p", NOW + i, &g, &res), ACACHE_OK, "%s",
                         acache_last_error());
            cr_expect_eq(g.count, i + 1);
        }
    cr_expect_eq(node_calls(&cl, "evalsha") - ev0, 3, "one script per pin: the creation");
    cr_expect_eq(node_calls(&cl, "set") - set0, 3 + 3 * 4,
                 "the refreshes are SET ... GET");
    s->free(s);
    test_redis_cluster_stop(&cl);
}

/* A MONITOR client sees the swap's SET ... GET and stops the server at once:
 * the SET ran, but its reply or the repair's is not read within the command
 * timeout (which one depends on when the stop lands). The touch is an
 * error (outcome unknown), nothing crashes or hangs; once resumed, the value
 * has the caller's target (W, or R if the repair was sent); then the server
 * is killed and touches fail cleanly. */
static void *stop_on_swap(void *p)
{
    int *saw = p;
    redisContext *r = raw();
    redisReply *rep = redisCommand(r, "MONITOR");
    freeReplyObject(rep);
    for (;;) {
        if (redisGetReply(r, (void **)&rep) != REDIS_OK)
            break;
        int hit = rep->type == REDIS_REPLY_STATUS && strstr(rep->str, "\"SET\"") &&
                  strstr(rep->str, "\"GET\"");
        freeReplyObject(rep);
        if (hit) {
            test_redis_pause(&srv);
            *saw = 1;
            break;
        }
    }
    redisFree(r);
    return NULL;
}

Test(touch_swap, redis_stopped_then_killed_between_set_and_repair)
{
    acache_store *s = NULL;
    char uri[1400];
    snprintf(uri, sizeof uri, "%s?touch_contended_ms=0", srv.uri);
    cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 300), ACACHE_OK);
    int res = 0, rc = ACACHE_OK;
    got g;
    /* A stop that lands after the repair too (a slow monitor thread on a
     * loaded machine) leaves nothing to see: resume and try again. */
    for (int attempt = 0; attempt < 10 && rc != ACACHE_ESTORE; attempt++) {
        cr_assert_eq(touch_at(s, KEY, "p", NOW + attempt, &g, &res), ACACHE_OK, "%s",
                     acache_last_error()); /* known: a hint */
        raw_cmd("SET %s %s", KEY,
                HEAD_P "\"created_at\": 1.5, \"expire_at\": 1800000900.0, "
                       "\"request_count\": 9}");
        int saw = 0;
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, stop_on_swap, &saw), 0);
        usleep(100 * 1000); /* MONITOR is on */
        rc = touch_at(s, KEY, "p", NOW + attempt + 0.5, &g, &res);
        pthread_join(th, NULL);
        cr_assert(saw, "the monitor saw the swap");
        if (rc != ACACHE_ESTORE)
            cr_assert_eq(test_redis_resume(&srv), 0);
    }
    cr_assert_eq(rc, ACACHE_ESTORE);
    cr_expect(strstr(acache_last_error(), "timed out"), "%s", acache_last_error());
    cr_assert_eq(test_redis_resume(&srv), 0);
    char v[512], prov[16];
    value_of(KEY, v, sizeof v);
    cr_expect_gt(count_of(v, prov, sizeof prov), 0, "%s", v);
    cr_expect_str_eq(prov, "p");
    cr_assert_eq(test_redis_kill(&srv), 0);
    /* the next touch fails cleanly too */
    cr_expect_eq(touch_at(s, KEY, "p", NOW + 20, &g, &res), ACACHE_ESTORE);
    s->free(s);
}

/* A key of another type: SET ... GET refuses (WRONGTYPE, nothing written)
 * and the touch takes the script, which replaces it, as without the swap. */
Test(touch_swap, key_of_another_type_takes_the_script)
{
    acache_store *s = store_q(NULL);
    int res = 0;
    got g;
    cr_assert_eq(touch_at(s, KEY, "p", NOW, &g, &res), ACACHE_OK);
    raw_cmd("DEL %s%s", KEY, "");
    raw_cmd("RPUSH %s x%s", KEY, "");
    cr_assert_eq(touch_at(s, KEY, "p", NOW + 1, &g, &res), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(res, ACACHE_TOUCH_CREATED);
    char v[512];
    value_of(KEY, v, sizeof v);
    cr_expect_eq(count_of(v, NULL, 0), 1, "%s", v);
    s->free(s);
}

/* ---- a server without SET ... GET (Redis < 6.2) ----
 * None is at hand, so a proxy in front of the real one answers SET ... GET
 * as Redis 6.0 does (-ERR syntax error) and relays everything else; requests
 * and replies are framed with hiredis's reader. */
typedef struct old_proxy {
    int lfd, port;
    int refused; /* SET ... GET answered with the 6.0 error */
} old_proxy;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Relay one reply of the backend: the bytes until hiredis has one reply. */
static int relay_reply(int bfd, int cfd)
{
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;
    char buf[16384];
    int rc = -1;
    while (!rep) {
        ssize_t n = read(bfd, buf, sizeof buf);
        if (n <= 0 || write_all(cfd, buf, (size_t)n) != 0 ||
            redisReaderFeed(rd, buf, (size_t)n) != REDIS_OK ||
            redisReaderGetReply(rd, &rep) != REDIS_OK)
            break;
    }
    if (rep) {
        freeReplyObject(rep);
        rc = 0;
    }
    redisReaderFree(rd);
    return rc;
}

typedef struct proxy_conn {
    old_proxy *px;
    int cfd;
} proxy_conn;

static void *proxy_conn_run(void *p)
{
    proxy_conn *pc = p;
    int bfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(bfd, (struct sockaddr *)&a, sizeof a) != 0)
        goto out;
    redisReader *rd = redisReaderCreate();
    char buf[16384];
    for (;;) {
        ssize_t n = read(pc->cfd, buf, sizeof buf);
        if (n <= 0 || redisReaderFeed(rd, buf, (size_t)n) != REDIS_OK)
            break;
        redisReply *cmd;
        int bad = 0;
        while (!bad && redisReaderGetReply(rd, (void **)&cmd) == REDIS_OK && cmd) {
            size_t k = cmd->elements;
            if (cmd->type == REDIS_REPLY_ARRAY && k >= 4 &&
                !strcasecmp(cmd->element[0]->str, "SET") &&
                !strcasecmp(cmd->element[k - 1]->str, "GET")) {
                __atomic_add_fetch(&pc->px->refused, 1, __ATOMIC_SEQ_CST);
                static const char e[] = "-ERR syntax error\r\n";
                bad = write_all(pc->cfd, e, sizeof e - 1);
            } else if (cmd->type == REDIS_REPLY_ARRAY) {
                const char *argv[64];
                size_t lens[64];
                for (size_t i = 0; i < k && i < 64; i++) {
                    argv[i] = cmd->element[i]->str;
                    lens[i] = cmd->element[i]->len;
                }
                char *out = NULL;
                long long len = redisFormatCommandArgv(&out, (int)k, argv, lens);
                bad = len < 0 || write_all(bfd, out, (size_t)len) != 0 ||
                      relay_reply(bfd, pc->cfd) != 0;
                free(out);
            }
            freeReplyObject(cmd);
        }
        if (bad)
            break;
    }
    redisReaderFree(rd);
out:
    close(bfd);
    close(pc->cfd);
    free(pc);
    return NULL;
}

static void *proxy_accept(void *p)
{
    old_proxy *px = p;
    for (;;) {
        int cfd = accept(px->lfd, NULL, NULL);
        if (cfd < 0)
            return NULL;
        proxy_conn *pc = malloc(sizeof *pc);
        pc->px = px;
        pc->cfd = cfd;
        pthread_t th;
        pthread_create(&th, NULL, proxy_conn_run, pc);
        pthread_detach(th);
    }
}

Test(touch_swap, server_without_set_get_falls_back_to_the_script)
{
    static old_proxy px;
    px.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    cr_assert_eq(bind(px.lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(px.lfd, 16), 0);
    cr_assert_eq(getsockname(px.lfd, (struct sockaddr *)&a, &al), 0);
    px.port = ntohs(a.sin_port);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, proxy_accept, &px), 0);
    pthread_detach(th);
    char uri[128];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/0", px.port);
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    int res = 0;
    got g;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(touch_at(s, KEY, "p", NOW + i, &g, &res), ACACHE_OK, "%s",
                     acache_last_error());
        cr_expect_eq(res, i ? ACACHE_TOUCH_REFRESHED : ACACHE_TOUCH_CREATED);
        cr_expect_eq(g.count, i + 1);
    }
    cr_expect_eq(__atomic_load_n(&px.refused, __ATOMIC_SEQ_CST), 1,
                 "one refused SET ... GET, then the script for the store's lifetime");
    s->free(s);
    char v[512];
    value_of(KEY, v, sizeof v);
    cr_expect_eq(count_of(v, NULL, 0), 4, "%s", v);
}

/* ---- repair.lua by hand: three writers whose corrections' partial sum
 * goes below zero ----
 * From count 100 (V0): P2's stale swap writes 11 (correction +90), P1's
 * swap writes 101 over it (-89), P3's stale swap writes 11 over that (+91):
 * 103 touches in all. P1's repair comes first: 11 - 89 would be negative.
 * Clamping it at 0 (the first version) ended at 181; the repair must wait
 * ("WAIT", nothing written) until the positive corrections landed. */
static char *read_source(const char *rel, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", ACACHE_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65536, f);
    fclose(f);
    return buf;
}

#define MID(e) ", \"expire_at\": " e ", \"request_count\": "
#define PIN(e, n) HEAD_P "\"created_at\": 1.5" MID(e) n "}"

/* EVAL repair.lua for a swap that wrote W = PIN(w_exp, w_count) over `old`. */
static redisReply *repair(const char *script, size_t slen, const char *old,
                          const char *w_mid, const char *w_count, const char *force)
{
    redisContext *r = raw();
    const char *argv[16] = {"EVAL",   script, "1",   KEY,     HEAD_P "\"created_at\": ",
                            "1000.0", w_mid,  "300", "p",     "e",
                            "k",      "1",    "1.5", w_count, force,
                            old};
    size_t lens[16];
    for (int i = 0; i < 16; i++)
        lens[i] = i == 1 ? slen : strlen(argv[i]);
    redisReply *rep = redisCommandArgv(r, old ? 16 : 15, argv, lens);
    redisFree(r);
    cr_assert(rep);
    return rep;
}

Test(touch_swap, repair_waits_rather_than_go_below_zero)
{
    size_t slen;
    char *script = read_source("lib/store/redis/scripts/repair.lua", &slen);
    const char *v0 = PIN("1000.5", "100"), *w1 = PIN("1300.1", "101");
    const char *w3 = PIN("1300.3", "11"), *w2 = PIN("1300.2", "11");
    raw_cmd("SET %s %s", KEY, w3); /* after the three SETs */
    char v[512];
    /* P1 first: its -89 would go below 0 */
    redisReply *rep = repair(script, slen, w2, MID("1300.1"), "101", "0");
    cr_expect(rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, "WAIT"), "%s",
              rep->type == REDIS_REPLY_STRING ? rep->str : "?");
    freeReplyObject(rep);
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, w3, "nothing written");
    /* P3: nobody wrote after it, so its true effect replaces W3 */
    freeReplyObject(repair(script, slen, w1, MID("1300.3"), "11", "0"));
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, PIN("1300.3", "102"));
    /* P1 again: now it applies */
    rep = repair(script, slen, w2, MID("1300.1"), "101", "0");
    cr_expect(rep->type == REDIS_REPLY_STRING && !strcmp(rep->str, "13 1.5"), "%s",
              rep->type == REDIS_REPLY_STRING ? rep->str : "?");
    freeReplyObject(rep);
    /* P2 */
    freeReplyObject(repair(script, slen, v0, MID("1300.2"), "11", "0"));
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, PIN("1300.3", "103"), "every touch counted once");
    /* after the caller's deadline, force: clamped at 0 */
    raw_cmd("SET %s %s", KEY, w3);
    freeReplyObject(repair(script, slen, w2, MID("1300.1"), "101", "1"));
    value_of(KEY, v, sizeof v);
    cr_expect_str_eq(v, PIN("1300.3", "0"));
    free(script);
}
