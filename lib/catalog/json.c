/* JSON file catalog: the embedded stand-in for an Aether database.
 *
 * The file is parsed once with jansson into an immutable index (row arrays
 * plus jansson objects used as hash maps from a column value to row numbers).
 * Look-ups take a reference on the current index, so callbacks run without
 * any lock held and may call other slots. A changed file (inode, size or
 * mtime, checked with one stat at most once a second) is loaded into a new
 * index that replaces the old one; an invalid new file is reported once and
 * the old index keeps serving.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../core/core.h"
#include "../util/json.h"
#include "internal.h"

typedef struct jc_usage {
    const char *id, *user_id, *api_key_id, *model, *status;
    int64_t created_us;
    int64_t input_tokens, cache_read_input_tokens, cache_creation_input_tokens;
    double cache_read_cost_usd, cache_creation_cost_usd;
} jc_usage;

enum {
    H_USER_ID,
    H_USER_NAME,
    H_USER_EMAIL,
    H_KEY_ID,
    H_KEY_USER,
    H_PROVIDER_ID,
    H_ENDPOINT_ID,
    H_PKEY_ID,
    H_GM_ID,
    H_GM_NAME,
    H_MODEL_ID,
    H_MODEL_GM,
    H_COUNT
};

typedef struct jc_index {
    atomic_int refs;
    json_t *root; /* owns every string the rows point at */
    acache_cat_user *users;
    acache_cat_api_key *keys;
    acache_cat_provider *providers;
    acache_cat_endpoint *endpoints;
    acache_cat_provider_key *pkeys;
    acache_cat_global_model *gms;
    acache_cat_model *models; /* provider_model_mappings text is owned here */
    jc_usage *usage;          /* sorted by (created_us, id) */
    size_t n_users, n_keys, n_providers, n_endpoints, n_pkeys, n_gms, n_models, n_usage;
    json_t *maps[H_COUNT]; /* value -> [row, ...] */
} jc_index;

typedef struct file_sig {
    int ok; /* stat succeeded */
    int err;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_sig;

typedef struct json_catalog {
    acache_catalog parent;
    char *path;
    pthread_rwlock_t lock; /* guards ix (the pointer swap only) */
    jc_index *ix;
    pthread_mutex_t reload_lock;
    file_sig sig; /* of the file last tried, valid or not */
    _Atomic int_least64_t next_check_ms;
} json_catalog;

static void json_free(acache_catalog *self);

/* ---- loading ---- */

typedef struct loader {
    const char *path;
    char err[512];
    int failed;
} loader;

static int fail(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader *L, const char *fmt, ...)
{
    if (!L->failed) {
        int off = snprintf(L->err, sizeof L->err, "json catalog %s: ", L->path);
        if (off < 0 || (size_t)off >= sizeof L->err)
            off = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + off, sizeof L->err - (size_t)off, fmt, ap);
        va_end(ap);
        L->failed = 1;
    }
    return -1;
}

typedef struct rowctx {
    loader *L;
    const char *table;
    size_t i;
    json_t *o;
} rowctx;

/* NOT NULL without a default: must be a string. Nullable: missing/null -> NULL. */
static int f_str(rowctx *c, const char *field, int nullable, const char **out)
{
    json_t *v = json_object_get(c->o, field);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (nullable)
            return 0;
        return fail(c->L, "%s[%zu].%s: required string is missing", c->table, c->i,
                    field);
    }
    if (!json_is_string(v))
        return fail(c->L, "%s[%zu].%s: must be a string", c->table, c->i, field);
    *out = json_string_value(v);
    return 0;
}

static int f_bool(rowctx *c, const char *field, int def, int *out)
{
    json_t *v = json_object_get(c->o, field);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(c->L, "%s[%zu].%s: must be true or false", c->table, c->i, field);
    *out = json_is_true(v);
    return 0;
}

/* Missing -> the column default; null -> NAN when nullable (SQL semantics:
 * a default applies only when the column is omitted). */
static int f_num(rowctx *c, const char *field, double def, int nullable, double *out)
{
    json_t *v = json_object_get(c->o, field);
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_null(v) && nullable) {
        *out = NAN;
        return 0;
    }
    if (!json_is_number(v))
        return fail(c->L, "%s[%zu].%s: must be a number", c->table, c->i, field);
    *out = json_number_value(v);
    return 0;
}

static int f_int(rowctx *c, const char *field, int64_t def, int64_t *out)
{
    json_t *v = json_object_get(c->o, field);
    if (!v) {
        *out = def;
        return 0;
    }
    if (json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9.0e15) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return fail(c->L, "%s[%zu].%s: must be an integer", c->table, c->i, field);
}

/* ---- timestamps ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no time-zone state is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* 1 when s begins with `layout`: 'd' is an ASCII digit, anything else
 * itself. s is NUL-terminated and the layout holds no NUL, so a match never
 * reads past the end of s. */
static int shaped(const char *s, const char *layout)
{
    for (; *layout; s++, layout++)
        if (*layout == 'd' ? *s < '0' || *s > '9' : *s != *layout)
            return 0;
    return 1;
}

/* YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|+HH:MM|+HHMM|+HH]; no offset = UTC.
 * More than six fraction digits round to the microsecond, as PostgreSQL does.
 * Reads s[0..len) only: the text is copied, NUL-terminated, into a bounded
 * buffer first (longer than any sane timestamp = not a timestamp), each part's
 * layout is checked, then sscanf reads the digits the layout guarantees. */
int acache__iso8601_parse(const char *s, size_t len, int64_t *out_us)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char b[64];
    if (len >= sizeof b || memchr(s, '\0', len))
        return -1;
    memcpy(b, s, len);
    b[len] = '\0';
    int y, mo, d, h, mi, sec = 0;
    if (!shaped(b, "dddd-dd-dd") || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') ||
        !shaped(b + 11, "dd:dd") ||
        sscanf(b, "%4d-%2d-%2d%*c%2d:%2d", &y, &mo, &d, &h, &mi) != 5)
        return -1;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    const char *p = b + 16;
    int64_t frac_us = 0;
    if (*p == ':') {
        if (!shaped(p, ":dd") || sscanf(p + 1, "%2d", &sec) != 1 || sec > 59)
            return -1;
        p += 3;
        if (*p == '.' || *p == ',') {
            size_t nd = strspn(++p, "0123456789");
            if (nd == 0)
                return -1;
            for (size_t i = 0; i < 6; i++)
                frac_us = frac_us * 10 + (i < nd ? p[i] - '0' : 0);
            frac_us += nd > 6 && p[6] >= '5';
            p += nd;
        }
    }
    int oh = 0, om = 0, sign = 1;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        if (shaped(p + 1, "dd:dd") && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2)
            p += 6;
        else if (shaped(p + 1, "dddd") && sscanf(p + 1, "%2d%2d", &oh, &om) == 2)
            p += 5;
        else if (shaped(p + 1, "dd") && sscanf(p + 1, "%2d", &oh) == 1)
            p += 3;
        else
            return -1;
        if (oh > 23 || om > 59)
            return -1;
    }
    if (p != b + len)
        return -1;
    int64_t off_s = sign * (oh * 3600 + om * 60);
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    *out_us = secs * 1000000 + frac_us;
    return 0;
}

static int f_time(rowctx *c, const char *field, int64_t *out)
{
    json_t *v = json_object_get(c->o, field);
    if (v && json_is_string(v)) {
        if (acache__iso8601_parse(json_string_value(v), json_string_length(v), out) == 0)
            return 0;
        return fail(c->L, "%s[%zu].%s: not an ISO 8601 timestamp", c->table, c->i, field);
    }
    if (v && json_is_number(v)) {
        double us = json_number_value(v) * 1e6;
        if (isfinite(us) && fabs(us) < 9.0e18) {
            *out = (int64_t)llround(us);
            return 0;
        }
    }
    return fail(c->L, "%s[%zu].%s: required timestamp (ISO 8601 string or epoch seconds)",
                c->table, c->i, field);
}

/* ---- index building ---- */

/* Append row i under key; `unique` rejects a second row with the same key. */
static int map_add(loader *L, json_t *map, const char *key, size_t i, int unique,
                   const char *table, const char *field)
{
    if (!key)
        return 0;
    json_t *rows = json_object_get(map, key);
    if (rows && unique)
        return fail(L, "%s[%zu].%s: duplicate value (must be unique)", table, i, field);
    if (!rows) {
        rows = json_array();
        if (!rows || json_object_set_new(map, key, rows) < 0)
            return fail(L, "out of memory");
    }
    if (json_array_append_new(rows, json_integer((json_int_t)i)) < 0)
        return fail(L, "out of memory");
    return 0;
}

static json_t *table(loader *L, json_t *root, const char *name, size_t *n)
{
    json_t *t = json_object_get(root, name);
    *n = 0;
    if (!t || json_is_null(t))
        return NULL;
    if (!json_is_array(t)) {
        fail(L, "\"%s\" must be an array", name);
        return NULL;
    }
    *n = json_array_size(t);
    return t;
}

/* Calls each row's object through `c`; a non-object row is an error. */
#define FOREACH_ROW(L, arr, n, tname, c)                                                 \
    for (rowctx c = {L, tname, 0, NULL}; c.i < (n); c.i++)                               \
        if (!json_is_object(c.o = json_array_get(arr, c.i))) {                           \
            fail(L, "%s[%zu]: must be an object", tname, c.i);                           \
            break;                                                                       \
        } else

static void index_free(jc_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; ix->models && i < ix->n_models; i++)
        free((char *)ix->models[i].provider_model_mappings);
    free(ix->users);
    free(ix->keys);
    free(ix->providers);
    free(ix->endpoints);
    free(ix->pkeys);
    free(ix->gms);
    free(ix->models);
    free(ix->usage);
    for (int h = 0; h < H_COUNT; h++)
        json_decref(ix->maps[h]);
    json_decref(ix->root);
    free(ix);
}

static int usage_cmp(const void *a, const void *b)
{
    const jc_usage *x = a, *y = b;
    if (x->created_us != y->created_us)
        return x->created_us < y->created_us ? -1 : 1;
    return strcmp(x->id, y->id);
}

static void *rows_alloc(loader *L, size_t n, size_t size)
{
    void *p = acache__calloc(n ? n : 1, size);
    if (!p)
        fail(L, "out of memory");
    return p;
}

static int build(loader *L, jc_index *ix)
{
    json_t *root = ix->root, *t;
    if (!json_is_object(root))
        return fail(L, "top level must be an object");
    for (int h = 0; h < H_COUNT; h++)
        if (!(ix->maps[h] = json_object()))
            return fail(L, "out of memory");

    t = table(L, root, "users", &ix->n_users);
    if (L->failed || !(ix->users = rows_alloc(L, ix->n_users, sizeof *ix->users)))
        return -1;
    FOREACH_ROW(L, t, ix->n_users, "users", c)
    {
        acache_cat_user *u = &ix->users[c.i];
        if (f_str(&c, "id", 0, &u->id) || f_str(&c, "username", 0, &u->username) ||
            f_str(&c, "email", 0, &u->email) ||
            map_add(L, ix->maps[H_USER_ID], u->id, c.i, 1, "users", "id") ||
            map_add(L, ix->maps[H_USER_NAME], u->username, c.i, 1, "users", "username") ||
            map_add(L, ix->maps[H_USER_EMAIL], u->email, c.i, 1, "users", "email"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "api_keys", &ix->n_keys);
    if (L->failed || !(ix->keys = rows_alloc(L, ix->n_keys, sizeof *ix->keys)))
        return -1;
    FOREACH_ROW(L, t, ix->n_keys, "api_keys", c)
    {
        acache_cat_api_key *k = &ix->keys[c.i];
        if (f_str(&c, "id", 0, &k->id) || f_str(&c, "user_id", 0, &k->user_id) ||
            f_str(&c, "name", 1, &k->name) ||
            f_str(&c, "key_encrypted", 1, &k->key_encrypted) ||
            f_bool(&c, "is_standalone", 0, &k->is_standalone) ||
            map_add(L, ix->maps[H_KEY_ID], k->id, c.i, 1, "api_keys", "id") ||
            map_add(L, ix->maps[H_KEY_USER], k->user_id, c.i, 0, "api_keys", "user_id"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "providers", &ix->n_providers);
    if (L->failed ||
        !(ix->providers = rows_alloc(L, ix->n_providers, sizeof *ix->providers)))
        return -1;
    FOREACH_ROW(L, t, ix->n_providers, "providers", c)
    {
        acache_cat_provider *p = &ix->providers[c.i];
        if (f_str(&c, "id", 0, &p->id) || f_str(&c, "name", 0, &p->name) ||
            f_str(&c, "display_name", 0, &p->display_name) ||
            f_bool(&c, "is_active", 1, &p->is_active) ||
            map_add(L, ix->maps[H_PROVIDER_ID], p->id, c.i, 1, "providers", "id"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "provider_endpoints", &ix->n_endpoints);
    if (L->failed ||
        !(ix->endpoints = rows_alloc(L, ix->n_endpoints, sizeof *ix->endpoints)))
        return -1;
    FOREACH_ROW(L, t, ix->n_endpoints, "provider_endpoints", c)
    {
        acache_cat_endpoint *e = &ix->endpoints[c.i];
        if (f_str(&c, "id", 0, &e->id) || f_str(&c, "provider_id", 0, &e->provider_id) ||
            f_str(&c, "api_format", 0, &e->api_format) ||
            f_str(&c, "base_url", 0, &e->base_url) ||
            map_add(L, ix->maps[H_ENDPOINT_ID], e->id, c.i, 1, "provider_endpoints",
                    "id"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "provider_api_keys", &ix->n_pkeys);
    if (L->failed || !(ix->pkeys = rows_alloc(L, ix->n_pkeys, sizeof *ix->pkeys)))
        return -1;
    FOREACH_ROW(L, t, ix->n_pkeys, "provider_api_keys", c)
    {
        acache_cat_provider_key *k = &ix->pkeys[c.i];
        int64_t ttl;
        if (f_str(&c, "id", 0, &k->id) || f_str(&c, "endpoint_id", 0, &k->endpoint_id) ||
            f_str(&c, "name", 0, &k->name) || f_str(&c, "api_key", 0, &k->api_key) ||
            f_num(&c, "rate_multiplier", 1.0, 0, &k->rate_multiplier) ||
            f_int(&c, "cache_ttl_minutes", 5, &ttl) ||
            map_add(L, ix->maps[H_PKEY_ID], k->id, c.i, 1, "provider_api_keys", "id"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "global_models", &ix->n_gms);
    if (L->failed || !(ix->gms = rows_alloc(L, ix->n_gms, sizeof *ix->gms)))
        return -1;
    FOREACH_ROW(L, t, ix->n_gms, "global_models", c)
    {
        acache_cat_global_model *g = &ix->gms[c.i];
        if (f_str(&c, "id", 0, &g->id) || f_str(&c, "name", 0, &g->name) ||
            f_str(&c, "display_name", 0, &g->display_name) ||
            f_bool(&c, "is_active", 1, &g->is_active) ||
            map_add(L, ix->maps[H_GM_ID], g->id, c.i, 1, "global_models", "id") ||
            map_add(L, ix->maps[H_GM_NAME], g->name, c.i, 1, "global_models", "name"))
            return -1;
    }
    if (L->failed)
        return -1;

    t = table(L, root, "models", &ix->n_models);
    if (L->failed || !(ix->models = rows_alloc(L, ix->n_models, sizeof *ix->models)))
        return -1;
    FOREACH_ROW(L, t, ix->n_models, "models", c)
    {
        acache_cat_model *m = &ix->models[c.i];
        if (f_str(&c, "id", 0, &m->id) || f_str(&c, "provider_id", 0, &m->provider_id) ||
            f_str(&c, "global_model_id", 0, &m->global_model_id) ||
            f_str(&c, "provider_model_name", 0, &m->provider_model_name) ||
            f_bool(&c, "is_active", 1, &m->is_active) ||
            map_add(L, ix->maps[H_MODEL_ID], m->id, c.i, 1, "models", "id") ||
            map_add(L, ix->maps[H_MODEL_GM], m->global_model_id, c.i, 0, "models",
                    "global_model_id"))
            return -1;
        /* jsonb column: any JSON value, handed out as JSON text. */
        json_t *v = json_object_get(c.o, "provider_model_mappings");
        if (v && !json_is_null(v)) {
            acache_buf b = ACACHE_BUF_INIT;
            if (acache__json_dump(&b, v, 0) < 0)
                return fail(L, "out of memory");
            m->provider_model_mappings = b.ptr;
        }
    }
    if (L->failed)
        return -1;

    t = table(L, root, "usage", &ix->n_usage);
    if (L->failed || !(ix->usage = rows_alloc(L, ix->n_usage, sizeof *ix->usage)))
        return -1;
    FOREACH_ROW(L, t, ix->n_usage, "usage", c)
    {
        jc_usage *u = &ix->usage[c.i];
        if (f_str(&c, "id", 0, &u->id) || f_str(&c, "user_id", 1, &u->user_id) ||
            f_str(&c, "api_key_id", 1, &u->api_key_id) ||
            f_str(&c, "model", 0, &u->model) || f_str(&c, "status", 1, &u->status) ||
            f_time(&c, "created_at", &u->created_us) ||
            f_int(&c, "input_tokens", 0, &u->input_tokens) ||
            f_int(&c, "cache_read_input_tokens", 0, &u->cache_read_input_tokens) ||
            f_int(&c, "cache_creation_input_tokens", 0,
                  &u->cache_creation_input_tokens) ||
            f_num(&c, "cache_read_cost_usd", 0.0, 1, &u->cache_read_cost_usd) ||
            f_num(&c, "cache_creation_cost_usd", 0.0, 1, &u->cache_creation_cost_usd))
            return -1;
        /* status is NOT NULL DEFAULT 'completed'. */
        json_t *st = json_object_get(c.o, "status");
        if (!st)
            u->status = "completed";
        else if (!u->status)
            return fail(L, "usage[%zu].status: must be a string", c.i);
    }
    if (L->failed)
        return -1;
    qsort(ix->usage, ix->n_usage, sizeof *ix->usage, usage_cmp);
    return 0;
}

/* Parse and index `path`. On failure L->err holds the message. */
static jc_index *load(loader *L)
{
    json_error_t jerr;
    jc_index *ix = acache__calloc(1, sizeof *ix);
    if (!ix) {
        fail(L, "out of memory");
        return NULL;
    }
    atomic_init(&ix->refs, 1);
    ix->root = json_load_file(L->path, JSON_REJECT_DUPLICATES, &jerr);
    if (!ix->root) {
        if (jerr.line > 0)
            fail(L, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        else
            fail(L, "%s", jerr.text);
        index_free(ix);
        return NULL;
    }
    if (build(L, ix) < 0) {
        index_free(ix);
        return NULL;
    }
    return ix;
}

/* ---- reload ---- */

static file_sig stat_sig(const char *path)
{
    file_sig s;
    struct stat st;
    memset(&s, 0, sizeof s);
    if (stat(path, &st) != 0) {
        s.err = errno;
        return s;
    }
    s.ok = 1;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
    return s;
}

static int sig_equal(const file_sig *a, const file_sig *b)
{
    if (a->ok != b->ok)
        return 0;
    if (!a->ok)
        return a->err == b->err;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void index_unref(jc_index *ix)
{
    if (ix && atomic_fetch_sub(&ix->refs, 1) == 1)
        index_free(ix);
}

static int check_reload(json_catalog *jc, int force)
{
    int64_t now = acache__monotonic_ms();
    int_least64_t next = atomic_load(&jc->next_check_ms);
    if (!force) {
        if (now < next ||
            !atomic_compare_exchange_strong(&jc->next_check_ms, &next, now + 1000))
            return ACACHE_OK;
    } else {
        atomic_store(&jc->next_check_ms, now + 1000);
    }

    int rc = ACACHE_OK;
    pthread_mutex_lock(&jc->reload_lock);
    file_sig s = stat_sig(jc->path);
    if (!sig_equal(&s, &jc->sig)) {
        /* Remember this version even if it is bad, so it is reported once. */
        jc->sig = s;
        if (!s.ok) {
            rc = acache_error_set(
                ACACHE_ECATALOG,
                "json catalog %s: %s; still serving the previous contents", jc->path,
                strerror(s.err));
        } else {
            loader L = {.path = jc->path};
            jc_index *nix = load(&L);
            if (!nix) {
                rc = acache_error_set(ACACHE_ECATALOG,
                                      "%s; still serving the previous contents", L.err);
            } else {
                pthread_rwlock_wrlock(&jc->lock);
                jc_index *old = jc->ix;
                jc->ix = nix;
                pthread_rwlock_unlock(&jc->lock);
                index_unref(old);
            }
        }
    }
    pthread_mutex_unlock(&jc->reload_lock);
    return rc;
}

int acache__json_catalog_recheck(acache_catalog *cat)
{
    if (!cat || cat->free != json_free)
        return acache_error_set(ACACHE_EINVALID, "json catalog: not a JSON catalog");
    return check_reload((json_catalog *)cat, 1);
}

/* The current index with a reference held (drop with index_unref), or NULL
 * with *rc set when the periodic check just found a bad file. */
static jc_index *grab(json_catalog *jc, int *rc)
{
    *rc = check_reload(jc, 0);
    if (*rc < 0)
        return NULL;
    pthread_rwlock_rdlock(&jc->lock);
    jc_index *ix = jc->ix;
    atomic_fetch_add(&ix->refs, 1);
    pthread_rwlock_unlock(&jc->lock);
    return ix;
}

/* ---- look-ups ---- */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Row numbers matching any of `values` in map h, each once (a value given
 * twice still yields its rows once, as `= ANY(...)` does). */
static int collect(jc_index *ix, int h, const char *const *values, size_t n, size_t **out,
                   size_t *count)
{
    size_t cap = 0, k = 0;
    size_t *rows = NULL;
    *out = NULL;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *hits = values[i] ? json_object_get(ix->maps[h], values[i]) : NULL;
        for (size_t j = 0; hits && j < json_array_size(hits); j++) {
            if (k == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                size_t *nrows = acache__realloc(rows, ncap * sizeof *nrows);
                if (!nrows) {
                    free(rows);
                    return acache__oom();
                }
                rows = nrows;
                cap = ncap;
            }
            rows[k++] = (size_t)json_integer_value(json_array_get(hits, j));
        }
    }
    if (k > 1) {
        qsort(rows, k, sizeof *rows, cmp_size);
        size_t w = 1;
        for (size_t r = 1; r < k; r++)
            if (rows[r] != rows[w - 1])
                rows[w++] = rows[r];
        k = w;
    }
    *out = rows;
    *count = k;
    return ACACHE_OK;
}

/* Shared body of every look-up slot: `map` picks the index for `by` (-1 when
 * the column is not supported), ROW(ix, i) is the row handed to cb. */
#define LOOKUP_BODY(what, map, rowexpr)                                                  \
    json_catalog *jc = (json_catalog *)self;                                             \
    if (!cb)                                                                             \
        return acache_error_set(ACACHE_EINVALID, "catalog %s: callback is NULL", what);  \
    if ((map) < 0)                                                                       \
        return acache_error_set(ACACHE_EINVALID,                                         \
                                "catalog %s: unsupported look-up column %d", what, by);  \
    if (n == 0)                                                                          \
        return ACACHE_OK;                                                                \
    if (!values)                                                                         \
        return acache_error_set(ACACHE_EINVALID, "catalog %s: values is NULL", what);    \
    int rc;                                                                              \
    jc_index *ix = grab(jc, &rc);                                                        \
    if (!ix)                                                                             \
        return rc;                                                                       \
    size_t *rows, nrows;                                                                 \
    rc = collect(ix, (map), values, n, &rows, &nrows);                                   \
    for (size_t r = 0; rc == 0 && r < nrows; r++)                                        \
        rc = cb(&(rowexpr)[rows[r]], payload);                                           \
    free(rows);                                                                          \
    index_unref(ix);                                                                     \
    return rc

static int js_users(acache_catalog *self, int by, const char *const *values, size_t n,
                    acache_cat_user_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID         ? H_USER_ID
              : by == ACACHE_BY_USERNAME ? H_USER_NAME
              : by == ACACHE_BY_EMAIL    ? H_USER_EMAIL
                                         : -1;
    LOOKUP_BODY("users", map, ix->users);
}

static int js_api_keys(acache_catalog *self, int by, const char *const *values, size_t n,
                       acache_cat_api_key_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID ? H_KEY_ID : by == ACACHE_BY_USER_ID ? H_KEY_USER : -1;
    LOOKUP_BODY("api_keys", map, ix->keys);
}

static int js_providers(acache_catalog *self, int by, const char *const *values, size_t n,
                        acache_cat_provider_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID ? H_PROVIDER_ID : -1;
    LOOKUP_BODY("providers", map, ix->providers);
}

static int js_endpoints(acache_catalog *self, int by, const char *const *values, size_t n,
                        acache_cat_endpoint_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID ? H_ENDPOINT_ID : -1;
    LOOKUP_BODY("endpoints", map, ix->endpoints);
}

static int js_provider_keys(acache_catalog *self, int by, const char *const *values,
                            size_t n, acache_cat_provider_key_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID ? H_PKEY_ID : -1;
    LOOKUP_BODY("provider_keys", map, ix->pkeys);
}

static int js_global_models(acache_catalog *self, int by, const char *const *values,
                            size_t n, acache_cat_global_model_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID ? H_GM_ID : by == ACACHE_BY_NAME ? H_GM_NAME : -1;
    LOOKUP_BODY("global_models", map, ix->gms);
}

static int js_models(acache_catalog *self, int by, const char *const *values, size_t n,
                     acache_cat_model_cb cb, void *payload)
{
    int map = by == ACACHE_BY_ID                ? H_MODEL_ID
              : by == ACACHE_BY_GLOBAL_MODEL_ID ? H_MODEL_GM
                                                : -1;
    LOOKUP_BODY("models", map, ix->models);
}

static int js_usage_scan(acache_catalog *self, const acache_usage_filter *f,
                         acache_cat_usage_cb cb, void *payload)
{
    json_catalog *jc = (json_catalog *)self;
    if (!cb)
        return acache_error_set(ACACHE_EINVALID, "catalog usage_scan: callback is NULL");
    if (!f)
        return acache_error_set(ACACHE_EINVALID, "catalog usage_scan: filter is NULL");
    int rc;
    jc_index *ix = grab(jc, &rc);
    if (!ix)
        return rc;
    int64_t min_us = acache__usage_min_us(f);
    size_t lo = 0, hi = ix->n_usage;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->usage[mid].created_us < min_us)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; rc == 0 && i < ix->n_usage; i++) {
        const jc_usage *u = &ix->usage[i];
        if (strcmp(u->status, "completed") != 0)
            continue;
        if (f->require_user_id && !u->user_id)
            continue;
        if (f->user_id && (!u->user_id || strcmp(u->user_id, f->user_id) != 0))
            continue;
        if (f->api_key_id &&
            (!u->api_key_id || strcmp(u->api_key_id, f->api_key_id) != 0))
            continue;
        acache_cat_usage row = {
            .id = u->id,
            .user_id = u->user_id,
            .api_key_id = u->api_key_id,
            .model = u->model,
            .status = u->status,
            .created_at = (double)u->created_us / 1e6,
            .input_tokens = u->input_tokens,
            .cache_read_input_tokens = u->cache_read_input_tokens,
            .cache_creation_input_tokens = u->cache_creation_input_tokens,
            .cache_read_cost_usd = u->cache_read_cost_usd,
            .cache_creation_cost_usd = u->cache_creation_cost_usd,
        };
        rc = cb(&row, payload);
    }
    index_unref(ix);
    return rc;
}

/* ---- lifetime ---- */

static void json_free(acache_catalog *self)
{
    json_catalog *jc = (json_catalog *)self;
    if (!jc)
        return;
    index_unref(jc->ix);
    pthread_rwlock_destroy(&jc->lock);
    pthread_mutex_destroy(&jc->reload_lock);
    free(jc->path);
    free(jc);
}

int acache__catalog_json_new(acache_catalog **out, const char *path)
{
    *out = NULL;
    json_catalog *jc = acache__calloc(1, sizeof *jc);
    if (!jc)
        return acache__oom();
    jc->path = acache__strdup(path);
    if (!jc->path) {
        free(jc);
        return acache__oom();
    }
    /* Signature before parsing: a write racing the load is seen as a change. */
    jc->sig = stat_sig(path);
    loader L = {.path = path};
    jc->ix = load(&L);
    if (!jc->ix) {
        free(jc->path);
        free(jc);
        if (strstr(L.err, "out of memory"))
            return acache__oom();
        return acache_error_set(ACACHE_ECATALOG, "%s", L.err);
    }
    pthread_rwlock_init(&jc->lock, NULL);
    pthread_mutex_init(&jc->reload_lock, NULL);
    atomic_init(&jc->next_check_ms, acache__monotonic_ms() + 1000);
    jc->parent.version = ACACHE_CATALOG_VERSION;
    jc->parent.scheme = "json";
    jc->parent.users = js_users;
    jc->parent.api_keys = js_api_keys;
    jc->parent.providers = js_providers;
    jc->parent.endpoints = js_endpoints;
    jc->parent.provider_keys = js_provider_keys;
    jc->parent.global_models = js_global_models;
    jc->parent.models = js_models;
    jc->parent.usage_scan = js_usage_scan;
    jc->parent.free = json_free;
    *out = &jc->parent;
    return ACACHE_OK;
}
