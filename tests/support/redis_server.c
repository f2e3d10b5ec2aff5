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
int test_free_port(void)
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
        "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout ca.key -out ca.crt "
        "-days 2 -subj /CN=acache-test-ca",
        "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout other-ca.key "
        "-out other-ca.crt -days 2 -subj /CN=acache-other-ca",
        "cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout server.key -out "
        "server.csr "
        "-subj /CN=localhost",
        NULL, /* server certificate: below (validity) */
        "cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout client.key -out "
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
        else if (r->cluster)
            execl(TEST_REDIS_SERVER_BIN, "redis-server", "--port", port, "--bind",
                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r->dir,
                  "--logfile", log, "--daemonize", "no", "--unixsocket", r->sock,
                  "--unixsocketperm", "700", "--cluster-enabled", "yes",
                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
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
        r->port = test_free_port();
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

int test_redis_kill(test_redis *r)
{
    if (r->pid <= 0 || kill(r->pid, SIGKILL) != 0)
        return -1;
    int st;
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->pid = 0;
    return 0;
}

/* ---- Sentinel set-up ---- */

/* One command over TCP to 127.0.0.1:port (sentinels have no unix socket). */
static redisReply *tcp_command(int port, const char *fmt, const char *arg)
{
    struct timeval tv = {0, 500000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *r = NULL;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
    }
    if (c)
        redisFree(c);
    return r;
}

/* Fork + exec `argv` (a redis-server) for `r`, waiting until it answers PING
 * on TCP. 0, 1 when it exited early (port taken), -1. */
static int spawn_argv(test_redis *r, char *const argv[])
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execv(TEST_REDIS_SERVER_BIN, argv);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            return 1;
        }
        redisReply *rep = tcp_command(r->port, "PING", NULL);
        int ok = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
        if (rep)
            freeReplyObject(rep);
        if (ok)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

static int start_replica(test_redis *r, int primary_port)
{
    memset(r, 0, sizeof *r);
    for (int attempt = 0; attempt < 5; attempt++) {
        snprintf(r->dir, sizeof r->dir, "/tmp/acache-replica-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
        r->port = test_free_port();
        char port[16], pport[16], log[300];
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(pport, sizeof pport, "%d", primary_port);
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
        char *argv[] = {"redis-server",
                        "--port",
                        port,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        r->dir,
                        "--logfile",
                        log,
                        "--daemonize",
                        "no",
                        "--unixsocket",
                        r->sock,
                        "--unixsocketperm",
                        "700",
                        "--replicaof",
                        "127.0.0.1",
                        pport,
                        NULL};
        int rc = spawn_argv(r, argv);
        if (rc == 0) {
            snprintf(r->uri, sizeof r->uri, "redis://127.0.0.1:%d/0", r->port);
            return 0;
        }
        test_redis_stop(r);
        if (rc < 0)
            return -1;
    }
    return -1;
}

static int start_sentinel(test_redis *r, int primary_port)
{
    memset(r, 0, sizeof *r);
    for (int attempt = 0; attempt < 5; attempt++) {
        snprintf(r->dir, sizeof r->dir, "/tmp/acache-sentinel-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
        r->port = test_free_port();
        char conf[300];
        snprintf(conf, sizeof conf, "%s/sentinel.conf", r->dir);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile %s/sentinel.log\n"
                "sentinel monitor acache 127.0.0.1 %d 2\n"
                "sentinel down-after-milliseconds acache 500\n"
                "sentinel failover-timeout acache 1000\n"
                "sentinel parallel-syncs acache 1\n",
                r->port, r->dir, r->dir, primary_port);
        fclose(f);
        char *argv[] = {"redis-server", conf, "--sentinel", NULL};
        int rc = spawn_argv(r, argv);
        if (rc == 0)
            return 0;
        test_redis_stop(r);
        if (rc < 0)
            return -1;
    }
    return -1;
}

/* Count of entries in an array reply to `cmd` on a sentinel, or -1. */
static long sentinel_count(int port, const char *cmd)
{
    redisReply *r = tcp_command(port, cmd, NULL);
    long n = r && r->type == REDIS_REPLY_ARRAY ? (long)r->elements : -1;
    if (r)
        freeReplyObject(r);
    return n;
}

int test_sentinel_start(test_sentinel_set *set)
{
    memset(set, 0, sizeof *set);
    if (test_redis_start(&set->primary) != 0 ||
        start_replica(&set->replica, set->primary.port) != 0)
        goto fail;
    for (int i = 0; i < TEST_SENTINELS; i++)
        if (start_sentinel(&set->sentinel[i], set->primary.port) != 0)
            goto fail;
    /* In sync, and every sentinel sees the replica and its two peers (hello
     * messages every 2 s): a failover can then reach quorum. */
    int ready = 0;
    for (int i = 0; i < 300 && !ready; i++) { /* up to ~30 s */
        redisReply *r = tcp_command(set->replica.port, "INFO replication", NULL);
        ready = r && r->type == REDIS_REPLY_STRING &&
                strstr(r->str, "master_link_status:up") != NULL;
        if (r)
            freeReplyObject(r);
        for (int k = 0; k < TEST_SENTINELS && ready; k++)
            ready =
                sentinel_count(set->sentinel[k].port, "SENTINEL replicas acache") == 1 &&
                sentinel_count(set->sentinel[k].port, "SENTINEL sentinels acache") ==
                    TEST_SENTINELS - 1;
        if (!ready)
            sleep_ms(100);
    }
    if (!ready) {
        fprintf(stderr, "test_sentinel: the set did not come up (see %s)\n",
                set->sentinel[0].dir);
        goto fail;
    }
    int n = snprintf(set->uri, sizeof set->uri, "redis-sentinel://");
    for (int i = 0; i < TEST_SENTINELS; i++)
        n += snprintf(set->uri + n, sizeof set->uri - (size_t)n, "%s127.0.0.1:%d",
                      i ? "," : "", set->sentinel[i].port);
    snprintf(set->uri + n, sizeof set->uri - (size_t)n, "/0?service=acache");
    return 0;
fail:
    test_sentinel_stop(set);
    return -1;
}

void test_sentinel_stop(test_sentinel_set *set)
{
    for (int i = 0; i < TEST_SENTINELS; i++)
        test_redis_stop(&set->sentinel[i]);
    test_redis_stop(&set->replica);
    test_redis_stop(&set->primary);
}

int test_sentinel_primary_port(const test_sentinel_set *set)
{
    for (int i = 0; i < TEST_SENTINELS; i++) {
        if (set->sentinel[i].pid <= 0)
            continue;
        redisReply *r = tcp_command(set->sentinel[i].port,
                                    "SENTINEL get-master-addr-by-name %s", "acache");
        int port = -1;
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_STRING)
            port = atoi(r->element[1]->str);
        if (r)
            freeReplyObject(r);
        if (port > 0)
            return port;
    }
    return -1;
}

/* ---- Redis Cluster ---- */

void test_redis_cluster_stop(test_redis_cluster *c)
{
    for (int i = 0; i < c->n; i++)
        test_redis_stop(&c->node[i]);
}

static int cluster_ok(const char *sock)
{
    struct timeval tv = {1, 0};
    redisContext *rc = redisConnectUnixWithTimeout(sock, tv);
    int ok = 0;
    if (rc && !rc->err) {
        redisSetTimeout(rc, tv);
        redisReply *r = redisCommand(rc, "CLUSTER INFO");
        ok = r && r->type == REDIS_REPLY_STRING &&
             memmem(r->str, r->len, "cluster_state:ok", 16) != NULL;
        if (r)
            freeReplyObject(r);
    }
    if (rc)
        redisFree(rc);
    return ok;
}

int test_redis_cluster_wait_ok(test_redis_cluster *c)
{
    for (int t = 0; t < 500; t++) {
        int all = 1;
        for (int i = 0; i < c->n && all; i++)
            if (c->node[i].pid > 0 && !cluster_ok(c->node[i].sock))
                all = 0;
        if (all)
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "test_redis: cluster did not reach cluster_state:ok\n");
    return -1;
}

int test_redis_cluster_start(test_redis_cluster *c, int n)
{
    memset(c, 0, sizeof *c);
    if (n < 3 || n > TEST_CLUSTER_MAX)
        return -1;
    char cmd[1024] = "redis-cli --cluster create";
    int off = snprintf(c->uri, sizeof c->uri, "redis-cluster://");
    for (int i = 0; i < n; i++) {
        c->node[i].cluster = 1;
        int ok = -1;
        for (int attempt = 0; attempt < 5 && ok != 0; attempt++) {
            c->node[i].port = test_free_port();
            ok = spawn(&c->node[i]);
            if (ok < 0)
                break;
        }
        c->n = i + 1;
        if (ok != 0) {
            test_redis_cluster_stop(c);
            return -1;
        }
        size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, " 127.0.0.1:%d", c->node[i].port);
        off += snprintf(c->uri + off, sizeof c->uri - (size_t)off, "%s127.0.0.1:%d",
                        i ? "," : "", c->node[i].port);
        snprintf(c->node[i].uri, sizeof c->node[i].uri, "redis://127.0.0.1:%d/0",
                 c->node[i].port);
    }
    size_t l = strlen(cmd);
    snprintf(cmd + l, sizeof cmd - l, " --cluster-replicas 0 --cluster-yes");
    if (run_quiet(cmd) != 0) {
        fprintf(stderr, "test_redis: %s failed\n", cmd);
        test_redis_cluster_stop(c);
        return -1;
    }
    if (test_redis_cluster_wait_ok(c) != 0) {
        test_redis_cluster_stop(c);
        return -1;
    }
    return 0;
}
