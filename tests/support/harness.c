#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"
#include "redis_server.h"

static double now_value = 1800000000.0;

void th_set_time(double t)
{
    now_value = t;
}

void th_advance(double seconds)
{
    now_value += seconds;
}

double th_time(void)
{
    return now_value;
}

static double clock_cb(void *payload)
{
    (void)payload;
    return now_value;
}

#ifdef ACACHE_TEST_BACKEND_REDIS
static test_redis server;
static int started;

static void stop_server(void)
{
    test_redis_stop(&server);
}

/* ACACHE_TEST_REDIS_TLS=1 runs the same tests over rediss:// (a TLS-only
 * server with certificates made at start; ctest "integration-tls"). */
const char *th_store_uri(void)
{
    if (!started) {
        const char *tls = getenv("ACACHE_TEST_REDIS_TLS");
        int rc = tls && tls[0] == '1' ? test_redis_start_tls(&server, NULL)
                                      : test_redis_start(&server);
        cr_assert_eq(rc, 0, "could not start a private redis-server");
        atexit(stop_server);
        started = 1;
    }
    return server.uri;
}

int th_is_redis(void)
{
    return 1;
}
#else
const char *th_store_uri(void)
{
    return "memory://";
}

int th_is_redis(void)
{
    return 0;
}
#endif

acache *th_open(acache_options *opts)
{
    acache_options local = ACACHE_OPTIONS_INIT;
    if (!opts)
        opts = &local;
    opts->store_uri = th_store_uri();
    if (!opts->clock)
        opts->clock = clock_cb;
    acache *c = NULL;
    int rc = acache_open(&c, opts);
    cr_assert_eq(rc, ACACHE_OK, "acache_open(%s): %s", opts->store_uri, acache_last_error());
    return c;
}

void th_load_jsonl(acache *c, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[65536];
    acache_store *s = acache_handle_store(c);
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        cr_assert_not_null(o, "%s: %s", path, err.text);
        const char *key = json_string_value(json_object_get(o, "key"));
        json_t *v = json_object_get(o, "value");
        json_int_t ttl = json_integer_value(json_object_get(o, "ttl"));
        cr_assert_eq(s->set(s, key, json_string_value(v), json_string_length(v),
                            (uint32_t)ttl),
                     ACACHE_OK, "set %s: %s", key, acache_last_error());
        json_decref(o);
    }
    fclose(f);
}
