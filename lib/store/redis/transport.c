/* One Redis connection: a byte stream (TCP, unix socket, or TLS over TCP
 * with OpenSSL) under hiredis's RESP codec. hiredis formats every command
 * (redisFormatCommandArgv) and parses every reply (redisReader); this file
 * only moves bytes, so plain and TLS connections share one code path for
 * pipelining, timeouts and reconnects. hiredis 0.14 has no TLS of its own.
 *
 * Sockets are non-blocking; every wait is a poll() bounded by a deadline:
 * connect_ms for connect + TLS handshake, command_ms for each reply (and for
 * writing the queued commands), as hiredis's socket timeouts were. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "redis_priv.h"

#define READ_CHUNK 16384

struct rconn {
    int fd;
    SSL *ssl;
    redisReader *reader;
    char *out; /* formatted commands not written yet: out[opos, olen) */
    size_t olen, opos, ocap;
    uint32_t command_ms;
    int cert_requested; /* the server asked for a client certificate we lack */
    int err;
    char errstr[300];
};

int acache__redis_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void)x509;
    (void)pkey;
    rconn *c = SSL_get_app_data(ssl);
    if (c)
        c->cert_requested = 1;
    return 0; /* no certificate: let the server decide */
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(rconn *c, int kind, const char *fmt, const char *detail)
{
    c->err = kind;
    int n = snprintf(c->errstr, sizeof c->errstr, fmt, detail);
    /* TLS 1.3 servers refuse a missing client certificate only after the
     * handshake: say so instead of a bare "connection reset". */
    if (c->cert_requested && kind != RIO_TIMEOUT && n > 0 && (size_t)n < sizeof c->errstr)
        snprintf(
            c->errstr + n, sizeof c->errstr - (size_t)n,
            " (TLS: the server asked for a client certificate; give cert= and key=)");
    return -1;
}

static int fail_errno(rconn *c, int e)
{
    int kind = (e == ECONNRESET || e == EPIPE || e == ENOTCONN) ? RIO_BROKEN : RIO_OTHER;
    return fail(c, kind, "%s", strerror(e));
}

/* Wait until `fd` is ready for `events` or the deadline passes. 1 ready,
 * 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* OpenSSL's reason for the last failure, or `fallback`. */
static const char *ssl_reason(rconn *c, char *buf, size_t n, const char *fallback)
{
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK)
        snprintf(buf, n, "certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "%s", fallback);
    ERR_clear_error();
    return buf;
}

/* ---- connect ---- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Non-blocking connect of `fd` to `sa`, waiting at most until `deadline`. */
static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    if (connect(fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR)
        return -1;
    int r = wait_fd(fd, POLLOUT, deadline);
    if (r == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    if (r < 0)
        return -1;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -1;
    if (soerr) {
        errno = soerr;
        return -1;
    }
    return 0;
}

static int open_unix(const char *path, int64_t deadline)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (set_nonblock(fd) < 0 ||
        connect_fd(fd, (struct sockaddr *)&a, sizeof a, deadline) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Each address of host:port in turn, until one connects. */
static int open_tcp(const char *host, int port, int64_t deadline, char *err,
                    size_t errlen)
{
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return -1;
    }
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (set_nonblock(fd) < 0 ||
            connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline) < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "%s",
                 e == ETIMEDOUT ? "connection timed out" : strerror(e));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* hiredis's redisEnableKeepAlive settings: a dead peer is noticed in
     * about 30 s even on an idle pooled connection. */
    int idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    return fd;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Drive a non-blocking SSL call (handshake, read, write) to completion or
 * the deadline: returns its result (> 0), or <= 0 with *ssl_err set. */
static int ssl_wait(rconn *c, int r, int64_t deadline, int *ssl_err)
{
    *ssl_err = SSL_get_error(c->ssl, r);
    if (*ssl_err != SSL_ERROR_WANT_READ && *ssl_err != SSL_ERROR_WANT_WRITE)
        return -1;
    int w = wait_fd(c->fd, *ssl_err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
    if (w == 0) {
        *ssl_err = -1; /* timed out */
        return 0;
    }
    return w < 0 ? -1 : 1;
}

static int tls_handshake(rconn *c, const rconn_target *t, int64_t deadline, char *err,
                         size_t errlen)
{
    if (!(c->ssl = SSL_new(t->tls))) {
        snprintf(err, errlen, "TLS: cannot create a session");
        return -1;
    }
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_app_data(c->ssl, c);
    const char *name = t->sni ? t->sni : t->host;
    /* SNI is for names; an IP literal is only checked against the
     * certificate's IP addresses. */
    if (!is_ip_literal(name))
        SSL_set_tlsext_host_name(c->ssl, name);
    if (t->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                                     : X509_VERIFY_PARAM_set1_host(vp, name, 0);
        if (!ok) {
            snprintf(err, errlen, "TLS: cannot set the name to verify");
            return -1;
        }
    }
    ERR_clear_error();
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int se;
        int w = ssl_wait(c, r, deadline, &se);
        if (w > 0)
            continue;
        char why[200];
        if (se == -1)
            snprintf(err, errlen,
                     "TLS handshake timed out (does the server speak TLS on "
                     "this port?)");
        else
            snprintf(err, errlen, "TLS handshake failed: %s",
                     ssl_reason(c, why, sizeof why, "connection closed by the server"));
        return -1;
    }
}

rconn *rconn_open(const rconn_target *t, char *errbuf, size_t errlen)
{
    errbuf[0] = '\0';
    rconn *c = acache__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = -1;
    c->command_ms = t->command_ms;
    if (!(c->reader = redisReaderCreate())) {
        free(c);
        return NULL;
    }
    int64_t deadline = now_ms() + t->connect_ms;
    if (t->path) {
        c->fd = open_unix(t->path, deadline);
        if (c->fd < 0)
            snprintf(errbuf, errlen, "%s",
                     errno == ETIMEDOUT ? "connection timed out" : strerror(errno));
    } else {
        c->fd = open_tcp(t->host, t->port, deadline, errbuf, errlen);
    }
    if (c->fd >= 0 && (!t->tls || tls_handshake(c, t, deadline, errbuf, errlen) == 0))
        return c;
    if (!errbuf[0])
        snprintf(errbuf, errlen, "connection failed");
    rconn_close(c);
    return NULL;
}

void rconn_close(rconn *c)
{
    if (!c)
        return;
    if (c->ssl) {
        /* No close_notify round trip: the socket may be dead; just free. */
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->reader)
        redisReaderFree(c->reader);
    free(c->out);
    free(c);
}

/* ---- commands ---- */

int rconn_append(rconn *c, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0 || !cmd)
        return fail(c, RIO_OTHER, "%s", "out of memory");
    if (c->opos == c->olen)
        c->opos = c->olen = 0;
    if (c->olen + (size_t)n > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + (size_t)n)
            cap *= 2;
        char *p = acache__realloc(c->out, cap);
        if (!p) {
            redisFreeCommand(cmd);
            return fail(c, RIO_OTHER, "%s", "out of memory");
        }
        c->out = p;
        c->ocap = cap;
    }
    memcpy(c->out + c->olen, cmd, (size_t)n);
    c->olen += (size_t)n;
    redisFreeCommand(cmd);
    return 0;
}

/* One write of at most `n` bytes: > 0 written, 0 would block, -1 failed. */
static ssize_t write_some(rconn *c, const char *p, size_t n, short *want)
{
    *want = POLLOUT;
    if (!c->ssl) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return fail_errno(c, errno);
    }
    ERR_clear_error();
    int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (w > 0)
        return w;
    int se = SSL_get_error(c->ssl, w);
    if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
        *want = se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    if (se == SSL_ERROR_SYSCALL && errno)
        return fail_errno(c, errno);
    char why[200];
    return fail(c, RIO_BROKEN, "TLS: %s",
                ssl_reason(c, why, sizeof why, "connection closed"));
}

int rconn_flush(rconn *c)
{
    if (c->err)
        return -1;
    int64_t deadline = 0;
    while (c->opos < c->olen) {
        short want;
        ssize_t w = write_some(c, c->out + c->opos, c->olen - c->opos, &want);
        if (w < 0)
            return -1;
        if (w > 0) {
            c->opos += (size_t)w;
            continue;
        }
        if (!deadline)
            deadline = now_ms() + c->command_ms;
        int r = wait_fd(c->fd, want, deadline);
        if (r == 0)
            return fail(c, RIO_TIMEOUT, "%s", "timed out");
        if (r < 0)
            return fail_errno(c, errno);
    }
    c->opos = c->olen = 0;
    return 0;
}

/* One read into `buf`: > 0 bytes, 0 would block, -1 failed (EOF included). */
static ssize_t read_some(rconn *c, char *buf, size_t n, short *want)
{
    *want = POLLIN;
    if (!c->ssl) {
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r > 0)
            return r;
        if (r == 0)
            return fail(c, RIO_BROKEN, "%s", "server closed the connection");
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return fail_errno(c, errno);
    }
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, (int)n);
    if (r > 0)
        return r;
    int se = SSL_get_error(c->ssl, r);
    if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
        *want = se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 0;
    }
    if (se == SSL_ERROR_ZERO_RETURN || (se == SSL_ERROR_SYSCALL && !errno))
        return fail(c, RIO_BROKEN, "%s", "server closed the connection");
    if (se == SSL_ERROR_SYSCALL)
        return fail_errno(c, errno);
    char why[200];
    return fail(c, RIO_BROKEN, "TLS: %s", ssl_reason(c, why, sizeof why, "read failed"));
}

int rconn_read(rconn *c, redisReply **out)
{
    *out = NULL;
    /* Right after a write the answer cannot be there yet: wait before the
     * first read rather than spend a read on EAGAIN (hot path). */
    int wrote = c->opos < c->olen;
    if (rconn_flush(c) != 0)
        return -1;
    int64_t deadline = 0;
    char buf[READ_CHUNK];
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
            return fail(c, RIO_OTHER, "protocol error: %s", c->reader->errstr);
        if (r) {
            *out = r;
            return 0;
        }
        short want = POLLIN;
        ssize_t n = 0;
        if (!wrote || (c->ssl && SSL_pending(c->ssl) > 0))
            n = read_some(c, buf, sizeof buf, &want);
        wrote = 0;
        if (n < 0)
            return -1;
        if (n > 0) {
            if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
                return fail(c, RIO_OTHER, "protocol error: %s", c->reader->errstr);
            continue;
        }
        if (!deadline)
            deadline = now_ms() + c->command_ms;
        int w = wait_fd(c->fd, want, deadline);
        if (w == 0)
            return fail(c, RIO_TIMEOUT, "%s", "timed out");
        if (w < 0)
            return fail_errno(c, errno);
    }
}

int rconn_stale(rconn *c)
{
    if (c->err || c->opos < c->olen)
        return 1;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0)
        return 0;
    if (!c->ssl)
        return 1;
    /* Readable TLS may be only protocol records (TLS 1.3 session tickets),
     * which SSL_peek consumes: stale only if there is data, EOF or an error. */
    char b;
    ERR_clear_error();
    int r = SSL_peek(c->ssl, &b, 1);
    if (r > 0)
        return 1;
    int se = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return !(se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE);
}

int rconn_err(const rconn *c)
{
    return c->err;
}

const char *rconn_errstr(const rconn *c)
{
    return c->errstr;
}

int rconn_wait_reply(rconn *c, redisReply **out, int wait_ms, int wake_fd)
{
    *out = NULL;
    if (rconn_flush(c) != 0)
        return -1;
    int64_t deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    char buf[READ_CHUNK];
    short want = POLLIN;
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK)
            return fail(c, RIO_OTHER, "protocol error: %s", c->reader->errstr);
        if (r) {
            *out = r;
            return 1;
        }
        if (c->ssl && SSL_pending(c->ssl) > 0) {
            ssize_t n = read_some(c, buf, sizeof buf, &want);
            if (n < 0)
                return -1;
            if (n > 0 && redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
                return fail(c, RIO_OTHER, "protocol error: %s", c->reader->errstr);
            continue;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p[2] = {{.fd = c->fd, .events = want},
                              {.fd = wake_fd, .events = POLLIN}};
        int k = poll(p, wake_fd >= 0 ? 2 : 1, (int)left);
        if (k < 0 && errno != EINTR)
            return fail_errno(c, errno);
        if (k <= 0)
            continue;
        if (wake_fd >= 0 && p[1].revents)
            return 0;
        ssize_t n = read_some(c, buf, sizeof buf, &want);
        if (n < 0)
            return -1;
        if (n > 0 && redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
            return fail(c, RIO_OTHER, "protocol error: %s", c->reader->errstr);
    }
}
