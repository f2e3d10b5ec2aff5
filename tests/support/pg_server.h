/* Test support: the private PostgreSQL started by tests/support/with-postgres.sh.
 *
 * Integration tests run under with-postgres.sh, which exports
 * ACACHE_TEST_PG_URI. Each test gets a schema of its own (t_<random>, put in
 * the URI's search_path, so unqualified SQL sees only it) and tests running in
 * parallel never see each other's rows. Every helper
 * aborts the current Criterion test on failure.
 */
#ifndef ACACHE_TEST_PG_SERVER_H
#define ACACHE_TEST_PG_SERVER_H

#include <stddef.h>

/* URI of the shared server's maintenance database (fails the test when the
 * binary was not started through with-postgres.sh). */
const char *acache_test_pg_base_uri(void);

/* Create a fresh, empty namespace on `base_uri` (NULL = the shared server),
 * load tests/support/aether_fixture.sql into it, and return a URI that
 * connects to it (free with acache_test_pg_drop_db). It is a schema rather
 * than a database because CREATE DATABASE takes about a second. */
char *acache_test_pg_new_db(const char *base_uri);
/* Drop what acache_test_pg_new_db made, and free `uri`. */
void acache_test_pg_drop_db(char *uri);

/* Run SQL text (several statements allowed, no parameters). */
void acache_test_pg_exec(const char *uri, const char *sql);
/* Run one parameterised statement (text parameters, NULL = SQL NULL). */
void acache_test_pg_execp(const char *uri, const char *sql, int nparams,
                          const char *const *params);
/* Insert every row of a catalog JSON file (docs/catalog-format.md) into the
 * fixture tables, so the JSON and PostgreSQL catalogs hold the same data. */
void acache_test_pg_seed_json(const char *uri, const char *json_path);

/* A server of the test's own (for stop/start tests), made by
 * tests/support/pg-instance.sh; never the shared one. */
typedef struct acache_test_pg_instance {
    char dir[512];
    int port;
    char uri[256]; /* postgresql://postgres@127.0.0.1:PORT/postgres */
    /* While paused: the stopped processes and the watchdog (see _pause). */
    int paused[64];
    int n_paused;
    int watchdog_pid, watchdog_fd;
} acache_test_pg_instance;

void acache_test_pg_instance_create(acache_test_pg_instance *inst);
void acache_test_pg_instance_stop(const acache_test_pg_instance *inst);
void acache_test_pg_instance_start(const acache_test_pg_instance *inst);
/* Stop and remove it (resuming it first if paused); safe to call twice. */
void acache_test_pg_instance_destroy(acache_test_pg_instance *inst);

/* Freeze the instance (SIGSTOP to its postmaster, checked to be this
 * instance's, and to the postmaster's children, i.e. every backend): TCP
 * connects still complete in the kernel but nothing answers, like a stalled
 * host. A watchdog process sends SIGCONT when _resume is called, when the test
 * process dies (crash, Criterion timeout), or after max_ms, whichever comes
 * first, so a failing test never leaves a frozen server behind. */
void acache_test_pg_instance_pause(acache_test_pg_instance *inst, unsigned max_ms);
/* SIGCONT everything _pause stopped; a no-op when not paused. */
void acache_test_pg_instance_resume(acache_test_pg_instance *inst);

#endif
