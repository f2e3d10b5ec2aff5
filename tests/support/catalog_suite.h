/* Test support: one set of behaviour checks run on every catalog backend.
 *
 * Each check takes a catalog holding exactly ACACHE_CATALOG_SEED (the JSON
 * catalog loads the file, the PostgreSQL tests insert it with
 * acache_test_pg_seed_json). A backend's test file instantiates every check:
 *     #define T(name) Test(catalog_x, name, .init = setup, .fini = teardown) \
 *         { acache_catsuite_##name(g_cat); }
 *     ACACHE_CATALOG_SUITE(T)
 */
#ifndef ACACHE_TEST_CATALOG_SUITE_H
#define ACACHE_TEST_CATALOG_SUITE_H

#include "aether_cache/sys/catalog.h"

#define ACACHE_CATALOG_SEED ACACHE_SOURCE_DIR "/tests/support/catalog_seed.json"

#define ACACHE_CATALOG_SUITE(X)                                                          \
    X(users_by_id)                                                                       \
    X(users_by_username)                                                                 \
    X(users_by_email)                                                                    \
    X(ids_are_case_sensitive_text)                                                       \
    X(duplicate_and_missing_values)                                                      \
    X(api_keys_by_id)                                                                    \
    X(api_keys_by_user_id)                                                               \
    X(providers_by_id)                                                                   \
    X(endpoints_by_id)                                                                   \
    X(provider_keys_by_id)                                                               \
    X(global_models_by_id)                                                               \
    X(global_models_by_name)                                                             \
    X(models_by_id)                                                                      \
    X(models_by_global_model_id)                                                         \
    X(injection_finds_only_itself)                                                       \
    X(hostile_values_match_literally)                                                    \
    X(invalid_utf8_and_long_values)                                                      \
    X(empty_and_null_inputs)                                                             \
    X(bad_arguments)                                                                     \
    X(callback_stops_lookup)                                                             \
    X(batch_of_1000)                                                                     \
    X(usage_order_and_columns)                                                           \
    X(usage_window_boundary)                                                             \
    X(usage_filters)                                                                     \
    X(usage_callback_stops)                                                              \
    X(nested_calls_from_callbacks)

#define ACACHE_CATSUITE_DECL(name) void acache_catsuite_##name(acache_catalog *cat);
ACACHE_CATALOG_SUITE(ACACHE_CATSUITE_DECL)
#undef ACACHE_CATSUITE_DECL

/* The 1000 values used by batch_of_1000 (6 of them are real user ids), so a
 * backend test can check how many statements the look-up took. */
void acache_catsuite_batch_values(const char **values, size_t n);

#endif
