/* Private to lib/analysis: helpers shared by the three usage analyses. */
#ifndef ACACHE_ANALYSIS_PRIV_H
#define ACACHE_ANALYSIS_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "../catalog/internal.h"
#include "../core/core.h"

/* "%.1f"-style text of x with '.' as the decimal point whatever the locale. */
void acache__fmt_fixed(char *buf, size_t size, int digits, double x);

/* PostgreSQL percentile_cont over n >= 1 values sorted ascending. */
double acache__percentile_cont(const double *sorted, size_t n, double p);

/* ISO 8601 UTC text of an instant in microseconds since the epoch:
 * YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00 (fraction only when non-zero), as
 * Python's datetime.isoformat(). buf >= 40 bytes. */
void acache__fmt_iso_utc(char *buf, size_t size, int64_t us);

/* Microseconds since the epoch of a created_at in seconds. */
int64_t acache__seconds_to_us(double s);

/* NULL for NULL or "" (Aether tests these parameters for truthiness). */
const char *acache__opt_str(const char *s);

/* Check hours (1..720) and that a catalog exists; sets *since to the window
 * start (now - hours) in microseconds. */
int acache__analysis_begin(acache *c, const char *what, int hours, int64_t *since_us);

/* Set f->since so the catalog's window (acache__usage_min_us) starts exactly at
 * since_us (inclusive) or just after it (strict), whatever the double rounding. */
void acache__filter_window(acache_usage_filter *f, int64_t since_us, int inclusive);

/* Run `q` through the catalog's analysis slot (catalog version 2).
 * ACACHE_EUNSUPPORTED (no message) when the catalog has no slot or does not
 * implement q->kind: the caller then runs the generic C path over usage_scan. */
int acache__analysis_query(acache *c, const acache_analysis_query *q,
                           acache_analysis_cb cb, void *payload);

/* The catalog window's first microsecond for a window starting at since_us,
 * inclusive or strict (acache__filter_window + acache__usage_min_us). */
int64_t acache__window_min_us(int64_t since_us, int inclusive);

/* One usage row kept by a scan, with the fields the analyses need. */
typedef struct acache__urow {
    char *group; /* grouping key (user_id or api_key_id) */
    char *id;
    char *model; /* NULL unless asked for */
    int64_t us;  /* created_at, microseconds */
} acache__urow;

typedef struct acache__urows {
    acache__urow *v;
    size_t n, cap;
} acache__urows;

/* Run the catalog's usage_scan with `f` and keep each row's group key
 * (api_key_id when group_by_key, else user_id; rows whose key is NULL are
 * skipped), id, created_at and, when want_model, model. Rows come back
 * sorted by (group, created_at, id). */
int acache__usage_collect(acache *c, const acache_usage_filter *f, int group_by_key,
                          int want_model, acache__urows *out);
void acache__urows_free(acache__urows *rows);

/* Gap between two created_at values in minutes (microseconds / 6e7). */
double acache__gap_minutes(int64_t earlier_us, int64_t later_us);

/* Batched users look-up by id. names[i]/emails[i] receive copies (NULL when
 * the column is NULL); found[i] is set to 1 when a row exists for ids[i].
 * Duplicates in ids are allowed. */
int acache__users_lookup(acache *c, const char *const *ids, size_t n, char **names,
                         char **emails, unsigned char *found);

#endif
