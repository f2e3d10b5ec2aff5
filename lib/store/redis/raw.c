/* Raw key slots of the Redis store: GET, SET, UNLINK, TTL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

const char *acache__redis_key_label(key_label *l, const acache_key *k)
{
    size_t n = k->len < 200 ? k->len : 200;
    const char *nul = memchr(k->ptr, '\0', n);
    if (nul)
        n = (size_t)(nul - k->ptr);
    memcpy(l->text, k->ptr, n);
    l->text[n] = '\0';
    return l->text;
}

int acache__redis_get(acache_store *self, const char *key, acache_buf *out)
{
    redis_store *s = (redis_store *)self;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = acache__redis_run(s, 1, "GET", key, 2, argv, NULL, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = acache_error_set(ACACHE_ENOTFOUND, "no such key: %s", key);
    else if (r->type == REDIS_REPLY_STRING)
        rc = acache__buf_set(out, r->str, r->len);
    else
        rc = acache__redis_reply_fail(r, "GET", key);
    freeReplyObject(r);
    return rc;
}

int acache__redis_set(acache_store *self, const char *key, const char *value, size_t len,
                      uint32_t ttl_s)
{
    redis_store *s = (redis_store *)self;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", (unsigned)ttl_s);
    const char *argv[] = {"SET", key, value, "EX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    redisReply *r;
    int rc = acache__redis_run(s, 1, "SET", key, ttl_s ? 5 : 3, argv, lens, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = acache__redis_reply_fail(r, "SET", key);
    freeReplyObject(r);
    return rc;
}

/* Everything appended on `c` must be read before it can be reused; on an
 * early exit the connection is discarded instead. */
int acache__redis_del(acache_store *self, const acache_key *keys, size_t n,
                      size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    *deleted = 0;
    if (n == 0)
        return ACACHE_OK;
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 1;
    const char **argv = acache__malloc(cap * sizeof *argv);
    size_t *lens = acache__malloc(cap * sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return acache__oom();
    }
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    rconn *c = NULL;
    int rc = acache__redis_conn_get(s, &c);
    size_t done = 0;
    key_label lb;
    while (!rc && done < n) {
        size_t group_start = done;
        int appended = 0;
        for (; appended < PIPE_GROUP && done < n; appended++) {
            size_t m = n - done < DEL_BATCH ? n - done : DEL_BATCH;
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < m; i++) {
                argv[i + 1] = keys[done + i].ptr;
                lens[i + 1] = keys[done + i].len;
            }
            if (rconn_append(c, (int)(m + 1), argv, lens) != 0) {
                rc = acache__oom();
                break;
            }
            done += m;
        }
        for (int i = 0; i < appended; i++) {
            redisReply *r;
            if (rconn_read(c, &r) != 0) {
                rc = acache__redis_io_fail(
                    s, c, "UNLINK", acache__redis_key_label(&lb, &keys[group_start]));
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                *deleted += (size_t)r->integer;
            else if (!rc)
                rc = acache__redis_reply_fail(
                    r, "UNLINK", acache__redis_key_label(&lb, &keys[group_start]));
            freeReplyObject(r);
        }
    }
    if (c)
        acache__redis_conn_put(s, c, rc != 0);
    acache__redis_sigpipe_restore(&g);
    free(argv);
    free(lens);
    return rc;
}

int acache__redis_ttl(acache_store *self, const char *const *keys, size_t n, int64_t *out)
{
    redis_store *s = (redis_store *)self;
    int rc = ACACHE_OK;
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    for (int attempt = 0; attempt < 2; attempt++) {
        rconn *c;
        if ((rc = acache__redis_conn_get(s, &c)))
            break;
        int again = 0;
        for (size_t done = 0; !rc && done < n;) {
            size_t m = n - done < TTL_BATCH ? n - done : TTL_BATCH;
            size_t appended = 0;
            for (; appended < m; appended++) {
                const char *argv[] = {"TTL", keys[done + appended]};
                if (rconn_append(c, 2, argv, NULL) != 0) {
                    rc = acache__oom();
                    break;
                }
            }
            for (size_t i = 0; i < appended; i++) {
                redisReply *r;
                if (rconn_read(c, &r) != 0) {
                    again = attempt == 0 && rconn_err(c) == RIO_BROKEN;
                    rc = acache__redis_io_fail(s, c, "TTL", keys[done + i]);
                    break;
                }
                if (r->type == REDIS_REPLY_INTEGER)
                    out[done + i] = r->integer;
                else if (!rc)
                    rc = acache__redis_reply_fail(r, "TTL", keys[done + i]);
                freeReplyObject(r);
            }
            done += m;
        }
        acache__redis_conn_put(s, c, rc != 0);
        if (!again)
            break;
        rc = ACACHE_OK;
    }
    acache__redis_sigpipe_restore(&g);
    return rc;
}
