/* Private redis-server for tests (see redis_server.h). */
#define _GNU_SOURCE /* memmem */
#include "redis_server.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#ifndef TEST_REDIS_SERVER_BIN
#define TEST_REDIS_SERVER_BIN "/usr/bin/redis-server"
#endif

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Ask the kernel for a free loopback port (released again at once: the
 * server binds it a moment later; start() retries if someone was faster). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Over the unix socket, which TLS servers have too. */
static int ping(const char *sock)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    int ok = 0;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* Run a shell command quietly (openssl). 0 on success. */
static int run_quiet(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof full, "{ %s; } >/dev/null 2>&1", cmd);
    int st = system(full);
    return st == 0 ? 0 : -1;
}

/* CA, server (127.0.0.1 / localhost), client, and an unrelated second CA. */
static int make_certs(test_redis *r)
{
    const char *d = r->dir;
    snprintf(r->ca, sizeof r->ca, "%s/ca.crt", d);
    snprintf(r->other_ca, sizeof r->other_ca, "%s/other-ca.crt", d);
    snprintf(r->client_cert, sizeof r->client_cert, "%s/client.crt", d);
    snprintf(r->client_key, sizeof r->client_key, "%s/client.key", d);
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "%s/server.ext", d);
    FILE *ext = fopen(cmd, "w");
    if (!ext || fputs("subjectAltName=IP:127.0.0.1,DNS:localhost\n", ext) < 0 ||
        fclose(ext)) {
        fprintf(stderr, "test_redis: cannot write %s\n", cmd);
        return -1;
    }
    const char *steps[] = {
        "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt "
        "-days 2 -subj /CN=acache-test-ca",
        "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key "
        "-out other-ca.crt -days 2 -subj /CN=acache-other-ca",
        "cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out "
        "server.csr "
        "-subj /CN=localhost",
        NULL, /* server certificate: below (validity) */
        "cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out "
        "client.csr "
        "-subj /CN=acache-test-client",
        "cd '%s' && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial -out client.crt -days 2",
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i])
            snprintf(cmd, sizeof cmd, steps[i], d);
        else
            /* -days -1: valid from now, expired since yesterday. */
            snprintf(
                cmd, sizeof cmd,
                "cd '%s' && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
                "-CAcreateserial -out server.crt -days %s -extfile server.ext",
                d, r->tls_opts.expired_cert ? "-1" : "2");
        if (run_quiet(cmd) != 0) {
            fprintf(stderr, "test_redis: certificate step failed: %s\n", cmd);
            return -1;
        }
    }
    return 0;
}

/* Fork + exec the server on r->port in a fresh dir; wait for PING.
 * Returns 0, 1 if the server exited early (port taken?), -1 on failure. */
static int spawn(test_redis *r)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/acache-redis-XXXXXX");
    if (!mkdtemp(r->dir)) {
        fprintf(stderr, "test_redis: mkdtemp: %s\n", strerror(errno));
        r->dir[0] = '\0';
        return -1;
    }
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    if (r->tls && make_certs(r) != 0) {
        remove_dir(r->dir);
        r->dir[0] = '\0';
        return -1;
    }
    char cert[300], key[300];
    snprintf(cert, sizeof cert, "%s/server.crt", r->dir);
    snprintf(key, sizeof key, "%s/server.key", r->dir);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "test_redis: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Die with the test process (and the thread that started us), even
         * when it crashes or is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (r->tls)
            execl(TEST_REDIS_SERVER_BIN, "redis-server", "--port", "0", "--tls-port",
                  port, "--tls-cert-file", cert, "--tls-key-file", key,
                  "--tls-ca-cert-file", r->ca, "--tls-auth-clients",
                  r->tls_opts.require_client_cert ? "yes" : "no", "--bind", "127.0.0.1",
                  "--save", "", "--appendonly", "no", "--dir", r->dir, "--logfile", log,
                  "--daemonize", "no", "--unixsocket", r->sock, "--unixsocketperm", "700",
                  (char *)NULL);
        else
            execl(TEST_REDIS_SERVER_BIN, "redis-server", "--port", port, "--bind",
                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r->dir,
                  "--logfile", log, "--daemonize", "no", "--unixsocket", r->sock,
                  "--unixsocketperm", "700", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 500; i++) { /* up to ~10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            remove_dir(r->dir);
            r->dir[0] = '\0';
            return 1;
        }
        if (ping(r->sock))
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "test_redis: server on port %d did not answer PING\n", r->port);
    test_redis_stop(r);
    return -1;
}

static void set_uri(test_redis *r)
{
    if (!r->tls)
        snprintf(r->uri, sizeof r->uri, "redis://127.0.0.1:%d/0", r->port);
    else if (r->tls_opts.require_client_cert)
        snprintf(r->uri, sizeof r->uri,
                 "rediss://127.0.0.1:%d/0?cacert=%s&cert=%s&key=%s", r->port, r->ca,
                 r->client_cert, r->client_key);
    else
        snprintf(r->uri, sizeof r->uri, "rediss://127.0.0.1:%d/0?cacert=%s", r->port,
                 r->ca);
}

static int start(test_redis *r)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (r->port <= 0) {
            fprintf(stderr, "test_redis: no free port: %s\n", strerror(errno));
            return -1;
        }
        int rc = spawn(r);
        if (rc == 0) {
            set_uri(r);
            return 0;
        }
        if (rc < 0)
            return -1;
    }
    fprintf(stderr, "test_redis: redis-server kept exiting at start (see its log)\n");
    return -1;
}

int test_redis_start(test_redis *r)
{
    memset(r, 0, sizeof *r);
    return start(r);
}

int test_redis_start_tls(test_redis *r, const test_redis_tls *opts)
{
    memset(r, 0, sizeof *r);
    r->tls = 1;
    if (opts)
        r->tls_opts = *opts;
    return start(r);
}

int test_redis_has_tls(void)
{
    /* A build without TLS lacks its configuration names. */
    FILE *f = fopen(TEST_REDIS_SERVER_BIN, "rb");
    if (!f)
        return 0;
    static const char needle[] = "tls-auth-clients";
    char buf[65536 + sizeof needle];
    size_t keep = 0, n;
    int found = 0;
    while (!found && (n = fread(buf + keep, 1, 65536, f)) > 0) {
        n += keep;
        found = memmem(buf, n, needle, sizeof needle - 1) != NULL;
        keep = n < sizeof needle ? n : sizeof needle - 1;
        memmove(buf, buf + n - keep, keep);
    }
    fclose(f);
    return found;
}

void test_redis_stop(test_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGCONT); /* a paused server cannot act on SIGTERM */
        kill(r->pid, SIGTERM);
        int st, gone = 0;
        for (int i = 0; i < 150 && !gone; i++) { /* up to ~3 s */
            pid_t w = waitpid(r->pid, &st, WNOHANG);
            if (w == r->pid || (w < 0 && errno == ECHILD))
                gone = 1;
            else
                sleep_ms(20);
        }
        if (!gone) {
            kill(r->pid, SIGKILL);
            while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
                ;
        }
        r->pid = 0;
    }
    if (r->dir[0]) {
        remove_dir(r->dir);
        r->dir[0] = '\0';
    }
}

int test_redis_restart(test_redis *r)
{
    test_redis_stop(r);
    /* Same port so that open handles reconnect to it; redis-server binds
     * with SO_REUSEADDR, so TIME_WAIT leftovers do not get in the way. */
    for (int attempt = 0; attempt < 50; attempt++) {
        int rc = spawn(r);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return -1;
        sleep_ms(100);
    }
    fprintf(stderr, "test_redis: cannot restart on port %d\n", r->port);
    return -1;
}

int test_redis_pause(test_redis *r)
{
    return r->pid > 0 && kill(r->pid, SIGSTOP) == 0 ? 0 : -1;
}

int test_redis_resume(test_redis *r)
{
    return r->pid > 0 && kill(r->pid, SIGCONT) == 0 ? 0 : -1;
}
