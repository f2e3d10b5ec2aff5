/* A private redis-server per test: temp dir, free loopback port, no
 * persistence, killed with the test process even if it crashes. */
#ifndef ACACHE_TEST_REDIS_SERVER_H
#define ACACHE_TEST_REDIS_SERVER_H

#include <sys/types.h>

/* TLS server options (test_redis_start_tls). Certificates are made with the
 * `openssl` command in the server's dir: a CA, a server certificate for
 * IP:127.0.0.1 and DNS:localhost, a client certificate, and a second CA
 * that signed nothing (for "wrong CA" tests). */
typedef struct test_redis_tls {
    int require_client_cert; /* --tls-auth-clients yes (mTLS) */
    int expired_cert;        /* the server's certificate expired yesterday */
} test_redis_tls;

typedef struct test_redis {
    int port;
    pid_t pid;      /* 0 when not running */
    char dir[256];  /* working dir (log, certificates), removed by stop */
    char uri[1200]; /* redis://127.0.0.1:<port>/0, or rediss://...?cacert=... */
    char sock[300]; /* plain unix socket (also on TLS servers), for side access */
    int tls;
    int cluster; /* --cluster-enabled yes (test_redis_cluster_start) */
    test_redis_tls tls_opts;
    /* TLS only: files in dir */
    char ca[300], other_ca[300], client_cert[300], client_key[300];
} test_redis;

/* A free loopback port (asked of the kernel and released at once: a server
 * binds it a moment later; the starters retry if someone was faster), or -1. */
int test_free_port(void);

/* Start a server and wait until it answers PING. Returns 0, or -1 with a
 * message on stderr. */
int test_redis_start(test_redis *r);
/* A TLS-only server (--port 0 --tls-port P) with fresh certificates; r->uri
 * is rediss://127.0.0.1:P/0?cacert=<ca> (plus cert/key when the server
 * requires client certificates). 0, or -1 with a message on stderr. */
int test_redis_start_tls(test_redis *r, const test_redis_tls *opts);
/* 1 when redis-server was built with TLS (Debian's is). */
int test_redis_has_tls(void);
/* SIGTERM (then SIGKILL) the server we started, reap it, remove its dir.
 * Idempotent; safe on a zeroed struct. */
void test_redis_stop(test_redis *r);
/* Stop and start again on the same port (data is lost). 0 or -1. */
int test_redis_restart(test_redis *r);
/* SIGSTOP / SIGCONT the server, to exercise command timeouts. 0 or -1. */
int test_redis_pause(test_redis *r);
int test_redis_resume(test_redis *r);

/* A Criterion suite whose every test gets its own private server `srv`
 * (started before the test, stopped after it, also when it fails). Use in a
 * test file that includes criterion. */
#define TEST_REDIS_SUITE(name, timeout_s)                                                \
    static test_redis srv;                                                               \
    static void name##_srv_start(void)                                                   \
    {                                                                                    \
        cr_assert_eq(test_redis_start(&srv), 0, "redis-server did not start");           \
    }                                                                                    \
    static void name##_srv_stop(void)                                                    \
    {                                                                                    \
        test_redis_stop(&srv);                                                           \
    }                                                                                    \
    TestSuite(name, .init = name##_srv_start, .fini = name##_srv_stop,                   \
              .timeout = timeout_s)

/* SIGKILL the server we started (no shutdown, as a crash) and reap it; its
 * dir is kept until test_redis_stop. 0 or -1. */
int test_redis_kill(test_redis *r);

/* Sentinel set-up: one primary, one replica and three `redis-server
 * --sentinel` processes on free loopback ports, monitoring service
 * "acache" with quorum 2, down-after-milliseconds 500 and failover-timeout
 * 1000. test_sentinel_start returns once the replica is in sync and every
 * sentinel knows the replica and the other two sentinels. */
#define TEST_SENTINELS 3
typedef struct test_sentinel_set {
    test_redis primary, replica;
    test_redis sentinel[TEST_SENTINELS]; /* port, pid, dir (sentinel.conf) */
    char uri[600]; /* redis-sentinel://127.0.0.1:P1,...:P3/0?service=acache */
} test_sentinel_set;
int test_sentinel_start(test_sentinel_set *set);
/* Stops every process of the set that is still running (PIDs we started
 * only) and removes their dirs. Idempotent. */
void test_sentinel_stop(test_sentinel_set *set);
/* The port of the primary the sentinels name now (asks each in turn), or -1. */
int test_sentinel_primary_port(const test_sentinel_set *set);

/* A Redis Cluster of `n` primaries (no replicas) on free loopback ports,
 * made with `redis-cli --cluster create ... --cluster-yes`; returns once
 * every node reports cluster_state:ok. uri is redis-cluster://<all nodes>. */
#define TEST_CLUSTER_MAX 6
typedef struct test_redis_cluster {
    int n;
    test_redis node[TEST_CLUSTER_MAX];
    char uri[512];
} test_redis_cluster;
int test_redis_cluster_start(test_redis_cluster *c, int n);
/* Stop every node we started (idempotent). */
void test_redis_cluster_stop(test_redis_cluster *c);
/* Wait until every running node reports cluster_state:ok (up to ~10 s). */
int test_redis_cluster_wait_ok(test_redis_cluster *c);

#endif
