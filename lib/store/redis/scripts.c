/* The Redis store's Lua scripts (scripts/ *.lua, embedded at build time by
 * scripts/embed.cmake) and the one way they are called. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "acache_redis_scripts.h"
#include "redis_priv.h"

const redis_script acache__redis_touch_script = {"touch", acache_lua_touch,
                                                 ACACHE_LUA_TOUCH_LEN};
const redis_script acache__redis_delete_script = {"delete_if", acache_lua_delete_if,
                                                  ACACHE_LUA_DELETE_IF_LEN};
const redis_script acache__redis_report_script = {"report", acache_lua_report,
                                                  ACACHE_LUA_REPORT_LEN};
const redis_script acache__redis_repair_script = {"repair", acache_lua_repair,
                                                  ACACHE_LUA_REPAIR_LEN};

/* The repair script's SHA1, computed here rather than kept per store: a
 * cluster's nodes copy the others' SHAs field by field, and this one needs
 * no server (a NOSCRIPT falls back to EVAL anyway). */
static char repair_sha[41];
static pthread_once_t repair_once = PTHREAD_ONCE_INIT;

static void repair_sha_init(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(acache_lua_repair, ACACHE_LUA_REPAIR_LEN, md, &n, EVP_sha1(), NULL) ||
        n != 20)
        return; /* "" : acache__redis_repair_sha answers NULL, EVAL is used */
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        repair_sha[2 * i] = hex[md[i] >> 4];
        repair_sha[2 * i + 1] = hex[md[i] & 15];
    }
    repair_sha[40] = '\0';
}

const char *acache__redis_repair_sha(void)
{
    pthread_once(&repair_once, repair_sha_init);
    return repair_sha[0] ? repair_sha : NULL;
}

static int load_one(redis_store *s, rconn *c, const redis_script *sc, char *sha,
                    int first)
{
    const char *argv[] = {"SCRIPT", "LOAD", sc->text};
    const size_t lens[] = {6, 4, sc->len};
    redisReply *r;
    if (acache__redis_command(c, 3, argv, lens, &r) != 0)
        return acache__redis_io_fail(s, c, "SCRIPT", "LOAD");
    int rc = ACACHE_OK;
    if (r->type != REDIS_REPLY_STRING || r->len != 40)
        rc = acache__redis_reply_fail(r, "SCRIPT", "LOAD");
    else if (first)
        memcpy(sha, r->str, 41);
    freeReplyObject(r);
    return rc;
}

int acache__redis_load_scripts(redis_store *s, rconn *c, int first)
{
    int rc = load_one(s, c, &acache__redis_touch_script, s->touch_sha, first);
    if (!rc)
        rc = load_one(s, c, &acache__redis_delete_script, s->delete_sha, first);
    if (!rc)
        rc = load_one(s, c, &acache__redis_report_script, s->report_sha, first);
    if (!rc) { /* its SHA is known already (acache__redis_repair_sha) */
        char unused[41];
        rc = load_one(s, c, &acache__redis_repair_script, unused, 0);
    }
    return rc;
}

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Append call i as EVALSHA (sha) or EVAL (sha NULL). */
static int append_call(rconn *c, const redis_script *sc, const char *sha, size_t i,
                       script_build_fn build, void *ctx)
{
    script_call call = {0, NULL, NULL};
    int rc = build(ctx, i, &call);
    if (rc)
        return rc;
    call.argv[0] = sha ? "EVALSHA" : "EVAL";
    call.lens[0] = sha ? 7 : 4;
    call.argv[1] = sha ? sha : sc->text;
    call.lens[1] = sha ? 40 : sc->len;
    if (rconn_append(c, call.argc, call.argv, call.lens) != 0)
        return acache__oom();
    return ACACHE_OK;
}

/* WAIT until `want` replicas hold the writes just made on `c`, at most the
 * command timeout. Fewer: the write is on the primary but might not survive
 * a failover, so it is an error (outcome unknown, as every failed write). */
static int wait_replicas(redis_store *s, rconn *c, const char *what, int want)
{
    char n[12], ms[12];
    snprintf(n, sizeof n, "%d", want);
    snprintf(ms, sizeof ms, "%u", s->command_ms ? s->command_ms : 1);
    const char *argv[] = {"WAIT", n, ms};
    redisReply *r = NULL;
    if (acache__redis_command(c, 3, argv, NULL, &r) != 0)
        return acache__redis_io_fail(s, c, "WAIT", what);
    int rc = ACACHE_OK;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = acache__redis_reply_fail(r, "WAIT", what);
    else if (r->integer < want)
        rc = acache_error_set(ACACHE_ESTORE,
                              "redis %s: %s reached %lld of %d replica(s) within %u ms "
                              "(the write may not survive a failover)",
                              s->where, what, (long long)r->integer, want, s->command_ms);
    freeReplyObject(r);
    return rc;
}

int acache__redis_eval(redis_store *s, rconn *c, const redis_script *sc, const char *sha,
                       size_t n, script_build_fn build, script_reply_fn take, void *ctx,
                       const char *what)
{
    int rc = ACACHE_OK;
    for (size_t done = 0; !rc && done < n;) {
        size_t group = n - done < PIPE_GROUP ? n - done : PIPE_GROUP;
        unsigned char noscript[PIPE_GROUP] = {0};
        size_t appended = 0;
        for (; appended < group; appended++)
            if ((rc = append_call(c, sc, sha, done + appended, build, ctx)))
                break;
        /* Read every reply appended, even after an error reply, so that the
         * connection stays in step (an I/O failure discards it instead). */
        for (size_t i = 0; i < appended; i++) {
            redisReply *r;
            if (rconn_read(c, &r) != 0) {
                rc = acache__redis_io_fail(s, c, "EVALSHA", what);
                break;
            }
            int trc = ACACHE_OK;
            if (is_noscript(r))
                noscript[i] = 1;
            else
                trc = take(ctx, done + i, r);
            if (!rc)
                rc = trc;
            freeReplyObject(r);
        }
        /* The script did not run for these calls: EVAL is safe (and caches
         * the script again for the next EVALSHA). */
        for (size_t i = 0; i < appended && !rc; i++) {
            if (!noscript[i])
                continue;
            redisReply *r;
            if ((rc = append_call(c, sc, NULL, done + i, build, ctx)))
                break;
            if (rconn_read(c, &r) != 0) {
                rc = acache__redis_io_fail(s, c, "EVAL", what);
                break;
            }
            rc = take(ctx, done + i, r);
            freeReplyObject(r);
        }
        done += group;
    }
    int want = s->wait_replicas < s->replicas ? s->wait_replicas : s->replicas;
    if (!rc && want > 0)
        rc = wait_replicas(s, c, what, want);
    return rc;
}
