/* Test support: databases on the private PostgreSQL (see pg_server.h). */
#include "pg_server.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *acache_test_pg_base_uri(void)
{
    const char *uri = getenv("ACACHE_TEST_PG_URI");
    if (!uri || !*uri)
        cr_assert_fail("ACACHE_TEST_PG_URI is not set: run the integration tests through "
                       "tests/support/with-postgres.sh (ctest -L integration does)");
    return uri;
}

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *connect_or_fail(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    PQsetNoticeProcessor(c, quiet, NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        PQfinish(c);
        cr_assert_fail("connect %s: %s", uri, msg);
    }
    return c;
}

static void exec_on(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r =
        n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        cr_assert_fail("SQL failed: %s\n-- %.300s", msg, sql);
    }
    PQclear(r);
}

void acache_test_pg_exec(const char *uri, const char *sql)
{
    PGconn *c = connect_or_fail(uri);
    exec_on(c, sql, 0, NULL);
    PQfinish(c);
}

void acache_test_pg_execp(const char *uri, const char *sql, int nparams,
                          const char *const *params)
{
    PGconn *c = connect_or_fail(uri);
    exec_on(c, sql, nparams, params);
    PQfinish(c);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Each test gets a schema of its own, named in the URI's search_path: the
 * same isolation as a database for unqualified SQL, but CREATE DATABASE costs
 * about a second per test here and a schema about a millisecond. */
#define SP_MARK "options=-csearch_path%3D"

char *acache_test_pg_new_db(const char *base_uri)
{
    if (!base_uri)
        base_uri = acache_test_pg_base_uri();
    unsigned char rnd[8];
    int fd = open("/dev/urandom", O_RDONLY);
    cr_assert(fd >= 0 && read(fd, rnd, sizeof rnd) == (ssize_t)sizeof rnd);
    close(fd);
    char name[32] = "t_";
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(name + 2 + 2 * i, 3, "%02x", rnd[i]);

    char sql[64];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", name);
    acache_test_pg_exec(base_uri, sql);

    size_t len = strlen(base_uri) + sizeof SP_MARK + strlen(name) + 2;
    char *uri = malloc(len);
    cr_assert(uri);
    snprintf(uri, len, "%s%c%s%s", base_uri, strchr(base_uri, '?') ? '&' : '?', SP_MARK,
             name);
    char *fixture = read_file(ACACHE_SOURCE_DIR "/tests/support/aether_fixture.sql");
    acache_test_pg_exec(uri, fixture);
    free(fixture);
    return uri;
}

void acache_test_pg_drop_db(char *uri)
{
    if (!uri)
        return;
    char *mark = strstr(uri, SP_MARK);
    cr_assert(mark, "not made by acache_test_pg_new_db: %s", uri);
    char sql[96];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", mark + strlen(SP_MARK));
    mark[-1] = '\0'; /* back to the base URI */
    acache_test_pg_exec(uri, sql);
    free(uri);
}

/* ---- seeding from a catalog JSON file ---- */

typedef struct seed_table {
    const char *name;
    const char *const *cols;
} seed_table;

static const char *const users_cols[] = {"id",        "username",   "email",
                                         "is_active", "is_deleted", NULL};
static const char *const keys_cols[] = {
    "id", "user_id", "name", "key_encrypted", "is_standalone", "is_active", NULL};
static const char *const prov_cols[] = {"id", "name", "display_name", "is_active", NULL};
static const char *const ep_cols[] = {"id",       "provider_id", "api_format",
                                      "base_url", "is_active",   NULL};
static const char *const pk_cols[] = {
    "id",        "endpoint_id", "name", "api_key", "rate_multiplier", "cache_ttl_minutes",
    "is_active", NULL};
static const char *const gm_cols[] = {"id", "name", "display_name", "is_active", NULL};
static const char *const model_cols[] = {"id",
                                         "provider_id",
                                         "global_model_id",
                                         "provider_model_name",
                                         "provider_model_mappings",
                                         "is_active",
                                         NULL};
static const char *const usage_cols[] = {"id",
                                         "user_id",
                                         "api_key_id",
                                         "model",
                                         "status",
                                         "input_tokens",
                                         "cache_creation_input_tokens",
                                         "cache_read_input_tokens",
                                         "cache_creation_cost_usd",
                                         "cache_read_cost_usd",
                                         "created_at",
                                         NULL};

static const seed_table seed_tables[] = {
    {"users", users_cols},          {"api_keys", keys_cols},
    {"providers", prov_cols},       {"provider_endpoints", ep_cols},
    {"provider_api_keys", pk_cols}, {"global_models", gm_cols},
    {"models", model_cols},         {"usage", usage_cols},
};

static void format_ts_us(char *buf, size_t size, long long us)
{
    long long secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* Text form of a JSON value for a parameter; NULL for JSON null. Returns a
 * malloc'd string (or NULL). */
static char *param_text(const char *col, json_t *v)
{
    char buf[64];
    if (json_is_null(v))
        return NULL;
    if (strcmp(col, "provider_model_mappings") == 0)
        return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (strcmp(col, "created_at") == 0 && json_is_number(v)) {
        format_ts_us(buf, sizeof buf, llround(json_number_value(v) * 1e6));
        return strdup(buf);
    }
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_boolean(v))
        return strdup(json_is_true(v) ? "true" : "false");
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        return strdup(buf);
    }
    cr_assert_fail("seed: column %s has an unsupported JSON type", col);
    return NULL;
}

void acache_test_pg_seed_json(const char *uri, const char *json_path)
{
    json_error_t err;
    json_t *root = json_load_file(json_path, 0, &err);
    cr_assert(root, "seed %s: line %d: %s", json_path, err.line, err.text);
    PGconn *c = connect_or_fail(uri);
    exec_on(c, "BEGIN", 0, NULL);
    for (size_t t = 0; t < sizeof seed_tables / sizeof seed_tables[0]; t++) {
        json_t *rows = json_object_get(root, seed_tables[t].name), *row;
        size_t i;
        json_array_foreach(rows, i, row)
        {
            char cols[1024] = "", vals[512] = "";
            char *params[16] = {0};
            int n = 0;
            for (const char *const *col = seed_tables[t].cols; *col; col++) {
                json_t *v = json_object_get(row, *col);
                if (!v)
                    continue; /* omitted: the column default applies */
                params[n] = param_text(*col, v);
                n++;
                size_t cl = strlen(cols), vl = strlen(vals);
                snprintf(cols + cl, sizeof cols - cl, "%s%s", n > 1 ? ", " : "", *col);
                snprintf(vals + vl, sizeof vals - vl, "%s$%d", n > 1 ? ", " : "", n);
            }
            char sql[2048];
            snprintf(sql, sizeof sql, "INSERT INTO %s (%s) VALUES (%s)",
                     seed_tables[t].name, cols, vals);
            exec_on(c, sql, n, (const char *const *)params);
            for (int k = 0; k < n; k++)
                free(params[k]);
        }
    }
    exec_on(c, "COMMIT", 0, NULL);
    PQfinish(c);
    json_decref(root);
}

/* ---- private instances ---- */

static const char *instance_script(void)
{
    const char *s = getenv("ACACHE_TEST_PG_INSTANCE");
    return s && *s ? s : ACACHE_SOURCE_DIR "/tests/support/pg-instance.sh";
}

static void run_script(const char *verb, const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s'", instance_script(), verb, dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "%s failed (%d)", cmd, rc);
}

void acache_test_pg_instance_create(acache_test_pg_instance *inst)
{
    memset(inst, 0, sizeof *inst);
    /* Nest it in the shared server's directory when there is one, so
     * with-postgres.sh's cleanup also stops it if this test crashes. */
    const char *parent = getenv("ACACHE_TEST_PG_DIR");
    char cmd[1200];
    if (parent && *parent)
        snprintf(cmd, sizeof cmd, "TMPDIR='%s' '%s' create", parent, instance_script());
    else
        snprintf(cmd, sizeof cmd, "'%s' create", instance_script());
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    int got = fscanf(p, "%511s %d", inst->dir, &inst->port);
    int rc = pclose(p);
    cr_assert(got == 2 && rc == 0, "%s failed (rc %d)", cmd, rc);
    snprintf(inst->uri, sizeof inst->uri, "postgresql://postgres@127.0.0.1:%d/postgres",
             inst->port);
}

void acache_test_pg_instance_stop(const acache_test_pg_instance *inst)
{
    run_script("stop", inst->dir);
}

void acache_test_pg_instance_start(const acache_test_pg_instance *inst)
{
    run_script("start", inst->dir);
}

void acache_test_pg_instance_destroy(acache_test_pg_instance *inst)
{
    acache_test_pg_instance_resume(inst);
    if (!inst->dir[0])
        return;
    run_script("destroy", inst->dir);
    inst->dir[0] = '\0';
}

/* ---- pause / resume ---- */

/* The postmaster PID of `inst`, checked against /proc: it must be a postgres
 * running on this instance's data directory. -1 when it cannot be proven. */
static int instance_postmaster(const acache_test_pg_instance *inst)
{
    char path[600], line[64];
    snprintf(path, sizeof path, "%s/data/postmaster.pid", inst->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int pid = -1;
    if (fgets(line, sizeof line, f))
        pid = atoi(line);
    fclose(f);
    if (pid <= 1)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    char cmd[4096];
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    char want[600];
    snprintf(want, sizeof want, "%s/data", inst->dir);
    return strstr(cmd, "postgres") && strstr(cmd, want) ? pid : -1;
}

/* PIDs whose parent is `ppid` (from /proc/N/stat), up to max. */
static int children_of(int ppid, int *out, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces, so after the last ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        int parent;
        if (rp && sscanf(rp + 1, " %c %d", &state, &parent) == 2 && parent == ppid)
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

void acache_test_pg_instance_pause(acache_test_pg_instance *inst, unsigned max_ms)
{
    cr_assert_eq(inst->n_paused, 0, "instance already paused");
    int pm = instance_postmaster(inst);
    cr_assert(pm > 0, "no postmaster of our own in %s", inst->dir);
    const int max = (int)(sizeof inst->paused / sizeof inst->paused[0]);
    /* The postmaster first, so it forks nothing new meanwhile. */
    cr_assert_eq(kill(pm, SIGSTOP), 0, "SIGSTOP %d: %s", pm, strerror(errno));
    inst->paused[0] = pm;
    inst->n_paused = 1 + children_of(pm, inst->paused + 1, max - 1);

    int fds[2];
    if (pipe(fds) != 0 || fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
        for (int i = 0; i < inst->n_paused; i++)
            kill(inst->paused[i], SIGCONT);
        inst->n_paused = 0;
        cr_assert_fail("pipe: %s", strerror(errno));
    }
    /* The watchdog uses only poll/kill/_exit (we may have threads). It is
     * woken by EOF on the pipe: our write end closes on resume or when this
     * process dies, however it dies. */
    pid_t w = fork();
    if (w == 0) {
        close(fds[1]);
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        while (poll(&p, 1, (int)max_ms) < 0 && errno == EINTR)
            ;
        for (int i = 0; i < inst->n_paused; i++)
            kill(inst->paused[i], SIGCONT);
        _exit(0);
    }
    close(fds[0]);
    if (w < 0) {
        close(fds[1]);
        for (int i = 0; i < inst->n_paused; i++)
            kill(inst->paused[i], SIGCONT);
        inst->n_paused = 0;
        cr_assert_fail("fork: %s", strerror(errno));
    }
    inst->watchdog_pid = (int)w;
    inst->watchdog_fd = fds[1];
    for (int i = 1; i < inst->n_paused; i++)
        kill(inst->paused[i], SIGSTOP);
}

void acache_test_pg_instance_resume(acache_test_pg_instance *inst)
{
    if (!inst->n_paused)
        return;
    for (int i = 0; i < inst->n_paused; i++)
        kill(inst->paused[i], SIGCONT);
    inst->n_paused = 0;
    if (inst->watchdog_pid > 0) {
        close(inst->watchdog_fd);
        waitpid(inst->watchdog_pid, NULL, 0);
    }
    inst->watchdog_pid = 0;
    inst->watchdog_fd = -1;
}
