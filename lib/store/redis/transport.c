/* One Redis connection: hiredis's blocking redisContext. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "redis_priv.h"

struct rconn {
    redisContext *ctx;
    int err;
    char errstr[160];
};

static struct timeval ms_tv(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

rconn *rconn_open(const rconn_target *t, char *errbuf, size_t errlen)
{
    errbuf[0] = '\0';
    rconn *c = acache__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    struct timeval ctv = ms_tv(t->connect_ms);
    c->ctx = t->path ? redisConnectUnixWithTimeout(t->path, ctv)
                     : redisConnectWithTimeout(t->host, t->port, ctv);
    if (!c->ctx) {
        free(c);
        return NULL;
    }
    if (c->ctx->err) {
        snprintf(errbuf, errlen, "%s", c->ctx->errstr);
    } else if (redisSetTimeout(c->ctx, ms_tv(t->command_ms)) != REDIS_OK) {
        snprintf(errbuf, errlen, "cannot set timeout: %s", c->ctx->errstr);
    } else {
        if (!t->path)
            redisEnableKeepAlive(c->ctx);
        return c;
    }
    rconn_close(c);
    return NULL;
}

void rconn_close(rconn *c)
{
    if (!c)
        return;
    redisFree(c->ctx);
    free(c);
}

static int fail(rconn *c, int err)
{
    const redisContext *x = c->ctx;
    if (x->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK))
        c->err = RIO_TIMEOUT;
    else if (x->err == REDIS_ERR_EOF ||
             (x->err == REDIS_ERR_IO && (err == ECONNRESET || err == EPIPE)))
        c->err = RIO_BROKEN;
    else
        c->err = RIO_OTHER;
    snprintf(c->errstr, sizeof c->errstr, "%s",
             x->errstr[0] ? x->errstr : "connection failed");
    return -1;
}

int rconn_append(rconn *c, int argc, const char **argv, const size_t *lens)
{
    return redisAppendCommandArgv(c->ctx, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

int rconn_flush(rconn *c)
{
    for (int done = 0; !done;) {
        errno = 0;
        if (redisBufferWrite(c->ctx, &done) != REDIS_OK)
            return fail(c, errno);
    }
    return 0;
}

int rconn_read(rconn *c, redisReply **out)
{
    errno = 0;
    void *r = NULL;
    if (redisGetReply(c->ctx, &r) != REDIS_OK)
        return fail(c, errno);
    *out = r;
    return 0;
}

int rconn_stale(rconn *c)
{
    struct pollfd p = {.fd = c->ctx->fd, .events = POLLIN};
    return c->err != 0 || c->ctx->err != 0 || poll(&p, 1, 0) != 0;
}

int rconn_err(const rconn *c)
{
    return c->err ? c->err : (c->ctx->err ? RIO_OTHER : RIO_OK);
}

const char *rconn_errstr(const rconn *c)
{
    return c->errstr[0] ? c->errstr : c->ctx->errstr;
}
