/* Private to lib/catalog (and its tests): the PostgreSQL catalog. */
#ifndef ACACHE_CATALOG_POSTGRES_H
#define ACACHE_CATALOG_POSTGRES_H

#include "aether_cache/sys/catalog.h"

/* acache__usage_min_us() and acache__utf8_valid() live there. */
#include "internal.h"

/* Connect to `uri` (postgresql://... or postgres://...) now.
 * ACACHE_OK, ACACHE_ECATALOG (cannot connect) or ACACHE_ENOMEM.
 *
 * Timeouts (0 = 2000 ms; acache_open passes the handle's connect and command
 * timeouts): making a connection takes at most connect_timeout_ms (our own
 * deadline around PQconnectPoll). Every statement then has command_timeout_ms:
 * as the session's statement_timeout on the server and as a client deadline
 * (poll on the socket) covering the send and the results; waiting for a free
 * pooled connection is bounded by command_timeout_ms too. On expiry the
 * statement is cancelled (PQcancel, from a detached thread, because it blocks
 * on a paused server), the connection is dropped and re-made by the next
 * call, and the call returns ACACHE_ECATALOG "... catalog query timed out
 * after N ms ...". usage_scan, which streams rows to a callback for as long as
 * the window is large, runs without statement_timeout and applies the client
 * deadline to each wait for rows instead of to the whole scan. TCP keepalives
 * (idle ~command timeout, 3 probes) and tcp_user_timeout = command timeout
 * find a vanished server on idle connections; the URI's own parameters
 * override these defaults, except the connect deadline. */
int acache__catalog_pg_new(acache_catalog **out, const char *uri,
                           uint32_t connect_timeout_ms, uint32_t command_timeout_ms);

/* Nonzero when `cat` was made by acache__catalog_pg_new. */
int acache__catalog_is_postgres(const acache_catalog *cat);

/* Run one parameterised statement (text parameters, text results) on one of
 * the catalog's connections, with the same pooling, timeout and reconnect
 * rules as the slots (this is the one path every catalog statement takes,
 * the analysis slot's SQL included): a lost connection gives ACACHE_ECATALOG now and is
 * re-established on the next call. On ACACHE_OK *pgresult_out is a PGresult* (TUPLES_OK
 * or COMMAND_OK) the caller PQclear()s. ACACHE_EINVALID if `self` is not a PostgreSQL
 * catalog. Thread-safe. */
int acache__pg_query(acache_catalog *self, const char *sql, int nparams,
                     const char *const *params, void **pgresult_out);

/* The catalog's `analysis` slot (postgres_analysis.c): each analysis as one
 * statement through acache__pg_query. */
int acache__pg_analysis(acache_catalog *self, const acache_analysis_query *q,
                        acache_analysis_cb cb, void *payload);

/* Test hook: statements sent to the server by this catalog so far. */
unsigned long acache__pg_statement_count(acache_catalog *self);

#endif
