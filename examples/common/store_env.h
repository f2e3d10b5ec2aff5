/* The store URI from the environment, shared by acache and acache-admin, so
 * that an Aether deployment's environment works unchanged (docs/redis.md
 * "Environment variables"). Precedence, first set wins:
 *
 *   --store URI                         (the caller handles it)
 *   ACACHE_STORE                        a store URI as it is
 *   REDIS_SENTINEL_HOSTS                "host[:port],host[:port]..." (default port
 *     + REDIS_SENTINEL_SERVICE_NAME     26379; service default "mymaster")
 *     + REDIS_PASSWORD                  the primary's password
 *     + REDIS_SENTINEL_PASSWORD         the sentinels' password (none by default)
 *   REDIS_URL                           redis://, rediss://, unix:// ...
 *     + REDIS_PASSWORD                  used when the URL holds no password
 *   memory://
 *
 * Passwords are percent-encoded into the URI. Empty variables count as unset. */
#ifndef ACACHE_EXAMPLES_STORE_ENV_H
#define ACACHE_EXAMPLES_STORE_ENV_H

/* The URI for the environment `get` (getenv, or a test's lookup), in a
 * buffer to release with secret_free() (it may hold a password); NULL means
 * memory:// or, with *err set, a bad variable (message on stderr, `prog`
 * prefixed) or out of memory. `*source` names the variable used ("" for
 * memory://). */
char *store_uri_from_env(const char *prog, const char *(*get)(const char *name),
                         const char **source, int *err);

#endif
