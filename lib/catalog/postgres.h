/* Private to lib/: the PostgreSQL catalog, plus raw access for lib/analysis. */
#ifndef ACACHE_CATALOG_POSTGRES_H
#define ACACHE_CATALOG_POSTGRES_H

#include "aether_cache/sys/catalog.h"

/* acache__usage_min_us() and acache__utf8_valid() live there. */
#include "internal.h"

/* Connect to `uri` (postgresql://... or postgres://...) now.
 * ACACHE_OK, ACACHE_ECATALOG (cannot connect) or ACACHE_ENOMEM. */
int acache__catalog_pg_new(acache_catalog **out, const char *uri);

/* Nonzero when `cat` was made by acache__catalog_pg_new. */
int acache__catalog_is_postgres(const acache_catalog *cat);

/* Run one parameterised statement (text parameters, text results) on one of
 * the catalog's connections, with the same pooling and reconnect rules as the
 * slots: a lost connection gives ACACHE_ECATALOG now and is re-established on
 * the next call. On ACACHE_OK *pgresult_out is a PGresult* (TUPLES_OK or
 * COMMAND_OK) the caller PQclear()s. ACACHE_EINVALID if `self` is not a
 * PostgreSQL catalog. Thread-safe. */
int acache__pg_query(acache_catalog *self, const char *sql, int nparams,
                     const char *const *params, void **pgresult_out);

/* Test hook: statements sent to the server by this catalog so far. */
unsigned long acache__pg_statement_count(acache_catalog *self);

#endif
