/* acache-bench helpers: timing, result table, private redis-server, data set. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "redis_server.h" /* test_free_port */

/* ---- timing ---- */

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ---- results ---- */

static json_t *results;

static json_t *res(void)
{
    if (!results)
        results = json_object();
    return results;
}

void result_num(const char *name, double v)
{
    json_object_set_new(res(), name, json_real(v));
}

void result_int(const char *name, long long v)
{
    json_object_set_new(res(), name, json_integer(v));
}

void result_str(const char *name, const char *v)
{
    json_object_set_new(res(), name, v ? json_string(v) : json_null());
}

void report_line(const char *name, double v, const char *unit, double floor_v,
                 double target, const char *note)
{
    char val[48], fl[48] = "", ratio[96] = "";
    snprintf(val, sizeof val, strcmp(unit, "s") == 0 ? "%.3f %s" : "%.1f %s", v, unit);
    if (floor_v > 0) {
        snprintf(fl, sizeof fl,
                 strcmp(unit, "s") == 0 ? "floor %.3f %s" : "floor %.1f %s", floor_v,
                 unit);
        double r = v / floor_v;
        if (target > 0)
            snprintf(ratio, sizeof ratio, "ratio %.2f  (target <= %g)  %s", r, target,
                     r <= target ? "OK" : "MISS");
        else
            snprintf(ratio, sizeof ratio, "ratio %.2f", r);
    } else if (target > 0) {
        snprintf(ratio, sizeof ratio, "(target <= %g %s)  %s", target, unit,
                 v <= target ? "OK" : "MISS");
    }
    printf("%-22s %14s   %-20s %s%s%s\n", name, val, fl, ratio, note ? "  " : "",
           note ? note : "");
    fflush(stdout);
}

void results_print_json(void)
{
    char *s =
        json_dumps(res(), JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (s) {
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
}

void results_free(void)
{
    json_decref(results);
    results = NULL;
}

/* ---- private redis-server ----
 * Killed by PID: at exit (atexit), on SIGINT/SIGTERM (handler), and if this
 * process dies any other way (PR_SET_PDEATHSIG in the child). */

static volatile pid_t server_pid;
static char server_dir[256], server_log[300];

static void cleanup_files(void)
{
    if (server_log[0])
        unlink(server_log);
    if (server_dir[0])
        rmdir(server_dir);
}

static void on_signal(int sig)
{
    /* Only async-signal-safe calls here. */
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    cleanup_files();
    _exit(128 + sig);
}

static bench_redis *atexit_target;

static void on_exit_stop(void)
{
    if (atexit_target)
        bench_redis_stop(atexit_target);
}

redisContext *bench_redis_connect(const bench_redis *r)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    struct timeval cmd = {600, 0}; /* long: SCAN/UNLINK loads of 1M keys */
    redisSetTimeout(c, cmd);
    return c;
}

static int wait_ping(bench_redis *r)
{
    for (int i = 0; i < 500; i++) {
        redisContext *c = bench_redis_connect(r);
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            r->pid = 0;
            server_pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return -1;
}

int bench_redis_start(bench_redis *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->host, sizeof r->host, "127.0.0.1");
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/acache-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r->dir)) {
        fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(server_dir, sizeof server_dir, "%s", r->dir);
    snprintf(server_log, sizeof server_log, "%s/redis.log", r->dir);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    atexit_target = r;
    static int registered;
    if (!registered++)
        atexit(on_exit_stop);

    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = test_free_port();
        if (r->port <= 0)
            continue;
        char port[16];
        snprintf(port, sizeof port, "%d", r->port);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "bench: fork: %s\n", strerror(errno));
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
            }
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", server_dir, "--logfile",
                   server_log, "--daemonize", "no", "--protected-mode", "yes",
                   (char *)NULL);
            _exit(127);
        }
        r->pid = pid;
        server_pid = pid;
        if (wait_ping(r) == 0) {
            snprintf(r->uri, sizeof r->uri, "redis://127.0.0.1:%d/0", r->port);
            return 0;
        }
        bench_redis_stop(r);
        snprintf(r->dir, sizeof r->dir, "%s", server_dir);
    }
    fprintf(stderr, "bench: redis-server did not start (is it on PATH?)\n");
    return -1;
}

void bench_redis_stop(bench_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
                r->pid = 0;
                break;
            }
            usleep(10000);
        }
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
        }
        r->pid = 0;
        server_pid = 0;
        cleanup_files();
    }
}

int bench_redis_use(bench_redis *r, const char *uri)
{
    memset(r, 0, sizeof *r);
    const char *p = strncmp(uri, "redis://", 8) == 0 ? uri + 8 : NULL;
    if (!p || strchr(p, '@')) {
        fprintf(stderr, "bench: --redis takes redis://host:port[/db] (no password)\n");
        return -1;
    }
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    size_t hl = colon ? (size_t)(colon - p) : slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof r->host)
        return -1;
    memcpy(r->host, p, hl);
    r->host[hl] = '\0';
    r->port = colon ? atoi(colon + 1) : 6379;
    if (slash && atoi(slash + 1) != 0) {
        fprintf(stderr, "bench: --redis: only database 0 is supported\n");
        return -1;
    }
    snprintf(r->uri, sizeof r->uri, "redis://%s:%d/0", r->host, r->port);
    return 0;
}

/* ---- data set ----
 * Pin i is combination i of (affinity key, api format, model): 30k keys x 4
 * formats x n_models models, so every storage key is distinct. Provider: every
 * 10th pin is on provider 0 (the invalidation target), the rest spread over
 * providers 1..49; each provider has 4 keys (200 keys) and one endpoint per
 * api format. */

#define N_AFFINITY_KEYS 30000
#define N_FORMATS 4
#define N_PROVIDERS 50
#define KEYS_PER_PROVIDER 4

static const char *formats[N_FORMATS] = {"claude", "openai", "gemini", "claude_cli"};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A UUID-shaped id, distinct per (tag, idx). */
void bench_uuid(char *buf, unsigned tag, uint64_t idx)
{
    snprintf(buf, 37, "%08x-%04x-4%03x-8%03x-%012llx",
             (unsigned)(mix(idx * 131 + tag) & 0xffffffffu), tag & 0xffff,
             (unsigned)(idx >> 48) & 0xfff, (unsigned)(mix(idx) & 0xfff),
             (unsigned long long)(idx & 0xffffffffffffULL));
}

void bench_data_init(bench_data *d, size_t n)
{
    memset(d, 0, sizeof d[0]);
    d->n = n;
    size_t per_model = (size_t)N_AFFINITY_KEYS * N_FORMATS;
    d->n_models = (n + per_model - 1) / per_model;
    if (d->n_models < 8)
        d->n_models = 8;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    d->now = (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
    bench_uuid(d->target_provider, 0x0b, 0);
    for (size_t i = 0; i < n; i++) {
        char key[160], val[512];
        size_t kl;
        d->value_bytes += bench_pin(d, i, key, sizeof key, &kl, val, sizeof val);
    }
    d->target_pins = (n + 9) / 10;
}

size_t bench_pin(const bench_data *d, size_t i, char *key, size_t keycap, size_t *keylen,
                 char *val, size_t valcap)
{
    size_t ak_i = i % N_AFFINITY_KEYS;
    size_t fmt_i = (i / N_AFFINITY_KEYS) % N_FORMATS;
    size_t model_i = i / ((size_t)N_AFFINITY_KEYS * N_FORMATS);
    uint64_t h = mix(i + 0x9e3779b97f4a7c15ULL);
    size_t prov_i = i % 10 == 0 ? 0 : 1 + (size_t)(h % (N_PROVIDERS - 1));
    size_t key_i = prov_i + N_PROVIDERS * (size_t)((h >> 20) % KEYS_PER_PROVIDER);
    size_t ep_i = prov_i * N_FORMATS + fmt_i;
    char ak[40], model[40], prov[40], ep[40], pk[40];
    bench_uuid(ak, 0x0a, ak_i);
    bench_uuid(model, 0x0d, model_i);
    bench_uuid(prov, 0x0b, prov_i);
    bench_uuid(ep, 0x0e, ep_i);
    bench_uuid(pk, 0x0c, key_i);
    int kl = snprintf(key, keycap, "cache_affinity:%s:%s:%s", ak, formats[fmt_i], model);
    *keylen = (size_t)kl;
    /* Python json.dumps layout, as Aether writes it. Pins live an hour so that
     * none expires during a long (1M) run. */
    double created = d->now - (double)((h >> 8) % 250000) / 1000.0;
    double expire = d->now + 3600.0 + (double)((h >> 28) % 1000) / 1000.0;
    int vl =
        snprintf(val, valcap,
                 "{\"provider_id\": \"%s\", \"endpoint_id\": \"%s\", \"key_id\": \"%s\", "
                 "\"api_format\": \"%s\", \"model_name\": \"%s\", \"created_at\": %.6f, "
                 "\"expire_at\": %.6f, \"request_count\": %u}",
                 prov, ep, pk, formats[fmt_i], model, created, expire,
                 (unsigned)(1 + (h >> 40) % 50));
    return (size_t)vl;
}

#define LOAD_PIPE 1000

long bench_load(redisContext *c, const bench_data *d, size_t every)
{
    static char keys[LOAD_PIPE][160], vals[LOAD_PIPE][512];
    long written = 0;
    size_t pending = 0;
    for (size_t i = 0; i <= d->n; i++) {
        if (i < d->n && i % every == 0) {
            size_t kl, vl = bench_pin(d, i, keys[pending], sizeof keys[0], &kl,
                                      vals[pending], sizeof vals[0]);
            const char *argv[] = {"SET", keys[pending], vals[pending], "EX", "7200"};
            size_t lens[] = {3, kl, vl, 2, 4};
            redisAppendCommandArgv(c, 5, argv, lens);
            pending++;
        }
        if (pending == LOAD_PIPE || (i == d->n && pending)) {
            for (size_t k = 0; k < pending; k++) {
                redisReply *r;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                    fprintf(stderr, "bench: load: %s\n", c->errstr);
                    return -1;
                }
                int ok = r->type == REDIS_REPLY_STATUS;
                freeReplyObject(r);
                if (!ok)
                    return -1;
                written++;
            }
            pending = 0;
        }
    }
    return written;
}

long bench_raw_clear(redisContext *c)
{
    long removed = 0;
    char cursor[32] = "0";
    do {
        redisReply *r =
            redisCommand(c, "SCAN %s MATCH cache_affinity:* COUNT 1000", cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *ks = r->element[1];
        if (ks->elements) {
            const char **argv = malloc((ks->elements + 1) * sizeof *argv);
            size_t *lens = malloc((ks->elements + 1) * sizeof *lens);
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < ks->elements; i++) {
                argv[i + 1] = ks->element[i]->str;
                lens[i + 1] = ks->element[i]->len;
            }
            redisReply *u = redisCommandArgv(c, (int)ks->elements + 1, argv, lens);
            if (u && u->type == REDIS_REPLY_INTEGER)
                removed += u->integer;
            if (u)
                freeReplyObject(u);
            free(argv);
            free(lens);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return removed;
}
