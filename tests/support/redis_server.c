/* Private redis-server for tests (see redis_server.h). */
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

static int ping(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
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
    char port[16], log[300], sock[300];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    snprintf(sock, sizeof sock, "%s/redis.sock", r->dir);
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
        execl(TEST_REDIS_SERVER_BIN, "redis-server", "--port", port, "--bind",
              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r->dir,
              "--logfile", log, "--daemonize", "no", "--unixsocket", sock,
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
        if (ping(r->port))
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "test_redis: server on port %d did not answer PING\n", r->port);
    test_redis_stop(r);
    return -1;
}

int test_redis_start(test_redis *r)
{
    memset(r, 0, sizeof *r);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (r->port <= 0) {
            fprintf(stderr, "test_redis: no free port: %s\n", strerror(errno));
            return -1;
        }
        int rc = spawn(r);
        if (rc == 0) {
            snprintf(r->uri, sizeof r->uri, "redis://127.0.0.1:%d/0", r->port);
            return 0;
        }
        if (rc < 0)
            return -1;
    }
    fprintf(stderr, "test_redis: redis-server kept exiting at start (see its log)\n");
    return -1;
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
