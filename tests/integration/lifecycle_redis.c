/* Pin lifecycle between processes on a real Redis: a drop is a
 * compare-and-delete on the target that failed, so a pin another process
 * (a real fork, its own handle and connections) switched elsewhere in the
 * meantime always survives. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"

#define ROUNDS 400

static acache *open_no_l1(void)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.l1_ttl_ms = ACACHE_L1_OFF; /* every get reads Redis */
    return th_open(&o);
}

static int report(acache *h, int outcome, const char *key)
{
    acache_report r = ACACHE_REPORT_INIT;
    r.affinity_key = "ak";
    r.api_format = "claude";
    r.model_name = "m";
    r.provider_id = "p";
    r.endpoint_id = "e";
    r.key_id = key;
    r.outcome = outcome;
    acache_report_result res = ACACHE_REPORT_RESULT_INIT;
    int rc = acache_affinity_report(&res, h, &r);
    return rc ? -1 : res.action;
}

/* Child: for each byte read, switch the pin to k-new and acknowledge. */
static void switcher(int in, int out)
{
    acache *h = open_no_l1();
    char b;
    while (read(in, &b, 1) == 1) {
        char ok = report(h, ACACHE_OUTCOME_SUCCESS, "k-new") >= 0 ? 'y' : 'n';
        if (write(out, &ok, 1) != 1)
            break;
    }
    acache_close(h);
    _exit(0);
}

static void race(int outcome)
{
    th_store_uri(); /* start the server before forking */
    int to_child[2], from_child[2];
    cr_assert_eq(pipe(to_child), 0);
    cr_assert_eq(pipe(from_child), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        switcher(to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    acache *h = open_no_l1();
    size_t n;
    acache__affinity_clear_all(&n, h);
    int dropped = 0, not_pinned = 0, lost = 0, kept = 0;
    for (int i = 0; i < ROUNDS; i++) {
        /* The pin points at the failing key, with failures one short of a
         * drop for the transient case (max 3). */
        cr_assert_geq(report(h, ACACHE_OUTCOME_SUCCESS, "k-old"), 0);
        if (outcome == ACACHE_OUTCOME_TRANSIENT) {
            cr_assert_eq(report(h, outcome, "k-old"), ACACHE_REPORT_KEPT);
            cr_assert_eq(report(h, outcome, "k-old"), ACACHE_REPORT_KEPT);
        }
        char go = 'g', ack = 0;
        cr_assert_eq(write(to_child[1], &go, 1), 1);
        /* Races the child's switch: before it, the old pin goes and the
         * switch creates the new one; after it, the new pin is not ours. */
        if (i % 3)
            usleep((useconds_t)(i % 7) * 20);
        int a = report(h, outcome, "k-old");
        cr_assert(a == ACACHE_REPORT_DROPPED || a == ACACHE_REPORT_NOT_PINNED,
                  "action %d", a);
        dropped += a == ACACHE_REPORT_DROPPED;
        not_pinned += a == ACACHE_REPORT_NOT_PINNED;
        cr_assert_eq(read(from_child[0], &ack, 1), 1);
        cr_assert_eq(ack, 'y');
        acache_affinity *p = NULL;
        int rc = acache_affinity_get(&p, h, "ak", "claude", "m");
        if (rc != ACACHE_OK || strcmp(acache_affinity_key_id(p), "k-new") != 0)
            lost++;
        else
            kept++;
        acache_affinity_free(p);
    }
    close(to_child[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_log_info("%s race: %d drops before the switch, %d after (not pinned), %d new pins "
                "kept, %d lost",
                outcome == ACACHE_OUTCOME_TERMINAL ? "terminal" : "transient", dropped,
                not_pinned, kept, lost);
    cr_assert_eq(lost, 0, "a drop deleted the pin another process had just written");
    acache_close(h);
}

TestSuite(lifecycle_redis, .timeout = 120);

Test(lifecycle_redis, a_terminal_drop_racing_a_switch_never_deletes_the_new_pin)
{
    race(ACACHE_OUTCOME_TERMINAL);
}

Test(lifecycle_redis, a_transient_drop_racing_a_switch_never_deletes_the_new_pin)
{
    race(ACACHE_OUTCOME_TRANSIENT);
}

/* The script answers a pin written by another writer with other separators
 * and a foreign failure_count: the count is rewritten in place. */
Test(lifecycle_redis, foreign_layouts_are_counted_in_place)
{
    th_set_time(1800000000.0);
    acache *h = open_no_l1();
    acache_store *s = acache_handle_store(h);
    const char *v = "{\"provider_id\":\"p\",\"endpoint_id\":\"e\",\"key_id\":\"k\","
                    "\"failure_count\":1,\"created_at\":1800000000.5,"
                    "\"expire_at\":1800000300.25,\"request_count\":4}";
    cr_assert_eq(s->set(s, "cache_affinity:ak:claude:m", v, strlen(v), 300), ACACHE_OK);
    cr_assert_eq(report(h, ACACHE_OUTCOME_TRANSIENT, "k"), ACACHE_REPORT_KEPT);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, "cache_affinity:ak:claude:m", &b), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"provider_id\":\"p\",\"endpoint_id\":\"e\",\"key_id\":\"k\","
                     "\"failure_count\": 2,\"created_at\":1800000000.5,"
                     "\"expire_at\":1800000300.25,\"request_count\":4}");
    acache_buf_dispose(&b);
    cr_assert_eq(report(h, ACACHE_OUTCOME_TRANSIENT, "k"), ACACHE_REPORT_DROPPED);
    /* unreadable values are never counted nor dropped */
    cr_assert_eq(s->set(s, "cache_affinity:ak:claude:m", "{not json", 9, 300), ACACHE_OK);
    cr_assert_eq(report(h, ACACHE_OUTCOME_TERMINAL, "k"), ACACHE_REPORT_NOT_PINNED);
    cr_assert_eq(s->get(s, "cache_affinity:ak:claude:m", &b), ACACHE_OK);
    acache_buf_dispose(&b);
    acache_close(h);
}

/* SCRIPT FLUSH under a live handle: the NOSCRIPT fallback runs the script. */
Test(lifecycle_redis, survives_a_script_flush)
{
    th_set_time(1800000000.0);
    acache *h = open_no_l1();
    cr_assert_geq(report(h, ACACHE_OUTCOME_SUCCESS, "k"), 0);
    redisContext *rc = NULL;
    const char *uri = th_store_uri();
    int port = atoi(strrchr(uri, ':') + 1);
    rc = redisConnect("127.0.0.1", port);
    cr_assert(rc && !rc->err);
    redisReply *r = redisCommand(rc, "SCRIPT FLUSH");
    cr_assert_not_null(r);
    freeReplyObject(r);
    redisFree(rc);
    cr_assert_eq(report(h, ACACHE_OUTCOME_TRANSIENT, "k"), ACACHE_REPORT_KEPT);
    cr_assert_eq(report(h, ACACHE_OUTCOME_TERMINAL, "k"), ACACHE_REPORT_DROPPED);
    acache_close(h);
}
