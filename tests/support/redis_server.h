/* A private redis-server per test: temp dir, free loopback port, no
 * persistence, killed with the test process even if it crashes. */
#ifndef ACACHE_TEST_REDIS_SERVER_H
#define ACACHE_TEST_REDIS_SERVER_H

#include <sys/types.h>

typedef struct test_redis {
    int port;
    pid_t pid;     /* 0 when not running */
    char dir[256]; /* working dir (log), removed by stop */
    char uri[128]; /* redis://127.0.0.1:<port>/0 */
} test_redis;

/* Start a server and wait until it answers PING. Returns 0, or -1 with a
 * message on stderr. */
int test_redis_start(test_redis *r);
/* SIGTERM (then SIGKILL) the server we started, reap it, remove its dir.
 * Idempotent; safe on a zeroed struct. */
void test_redis_stop(test_redis *r);
/* Stop and start again on the same port (data is lost). 0 or -1. */
int test_redis_restart(test_redis *r);
/* SIGSTOP / SIGCONT the server, to exercise command timeouts. 0 or -1. */
int test_redis_pause(test_redis *r);
int test_redis_resume(test_redis *r);

#endif
