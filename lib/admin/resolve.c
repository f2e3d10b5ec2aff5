/* Identifier resolution, one user's affinities and invalidation by identifier
 * (admin-api.md). Every look-up is one catalog call with one value; nothing
 * here is per record. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../core/core.h"
#include "../util/json.h"
#include "listing_priv.h"

#define ACCEPTED_KINDS "a user id, username, email or API key id"

static int is_space(unsigned char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

char *acache__trim_dup(const char *s)
{
    const char *end = s + strlen(s);
    while (s < end && is_space((unsigned char)*s))
        s++;
    while (end > s && is_space((unsigned char)end[-1]))
        end--;
    char *r = acache__strndup(s, (size_t)(end - s));
    if (!r)
        acache__oom();
    return r;
}

void acache__user_info_clear(acache__user_info *u)
{
    free(u->id);
    free(u->username);
    free(u->email);
    memset(u, 0, sizeof *u);
}

/* Ids are primary keys: the first row is the only one. */
static int first_user_cb(const acache_cat_user *row, void *payload)
{
    acache__user_info *u = payload;
    if (!row->id)
        return 0;
    u->id = acache__strdup(row->id);
    u->username = row->username ? acache__strdup(row->username) : NULL;
    u->email = row->email ? acache__strdup(row->email) : NULL;
    if (!u->id || (row->username && !u->username) || (row->email && !u->email)) {
        acache__user_info_clear(u);
        return acache__oom();
    }
    return 1;
}

static int user_by(acache__user_info *out, acache_catalog *cat, int by, const char *v)
{
    if (!cat->users)
        return ACACHE_ENOTFOUND;
    const char *vals[1] = {v};
    int rc = cat->users(cat, by, vals, 1, first_user_cb, out);
    if (rc < 0)
        return rc;
    return out->id ? ACACHE_OK : ACACHE_ENOTFOUND;
}

int acache__find_user(acache__user_info *out, acache *c, const char *ident)
{
    static const int order[] = {ACACHE_BY_ID, ACACHE_BY_USERNAME, ACACHE_BY_EMAIL};
    memset(out, 0, sizeof *out);
    if (!c->catalog || !*ident)
        return ACACHE_ENOTFOUND;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int rc = user_by(out, c->catalog, order[i], ident);
        if (rc != ACACHE_ENOTFOUND)
            return rc;
    }
    return ACACHE_ENOTFOUND;
}

/* One api_keys row, copied. */
typedef struct {
    char *id, *user_id, *name;
} key_info;

static void key_info_clear(key_info *k)
{
    free(k->id);
    free(k->user_id);
    free(k->name);
    memset(k, 0, sizeof *k);
}

static int first_key_cb(const acache_cat_api_key *row, void *payload)
{
    key_info *k = payload;
    if (!row->id)
        return 0;
    k->id = acache__strdup(row->id);
    k->user_id = row->user_id ? acache__strdup(row->user_id) : NULL;
    k->name = row->name ? acache__strdup(row->name) : NULL;
    if (!k->id || (row->user_id && !k->user_id) || (row->name && !k->name)) {
        key_info_clear(k);
        return acache__oom();
    }
    return 1;
}

/* api_keys.id == ident: OK, ENOTFOUND, or the catalog's error. */
static int find_key(key_info *out, acache *c, const char *ident)
{
    memset(out, 0, sizeof *out);
    acache_catalog *cat = c->catalog;
    if (!cat || !cat->api_keys || !*ident)
        return ACACHE_ENOTFOUND;
    const char *vals[1] = {ident};
    int rc = cat->api_keys(cat, ACACHE_BY_ID, vals, 1, first_key_cb, out);
    if (rc < 0)
        return rc;
    return out->id ? ACACHE_OK : ACACHE_ENOTFOUND;
}

/* The ids of every API key of `user_id`. */
typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void strvec_clear(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int key_id_cb(const acache_cat_api_key *row, void *payload)
{
    strvec *s = payload;
    if (!row->id)
        return 0;
    if (acache__grow(&s->v, &s->cap, s->n, sizeof *s->v))
        return ACACHE_ENOMEM;
    if (!(s->v[s->n] = acache__strdup(row->id)))
        return acache__oom();
    s->n++;
    return 0;
}

static int user_key_ids(strvec *out, acache *c, const char *user_id)
{
    memset(out, 0, sizeof *out);
    acache_catalog *cat = c->catalog;
    if (!cat || !cat->api_keys)
        return ACACHE_OK;
    const char *vals[1] = {user_id};
    int rc = cat->api_keys(cat, ACACHE_BY_USER_ID, vals, 1, key_id_cb, out);
    if (rc < 0) {
        strvec_clear(out);
        return rc;
    }
    return ACACHE_OK;
}

static int not_found(const char *ident)
{
    return acache_error_set(ACACHE_ENOTFOUND,
                            "unknown user identifier '%s': expected " ACCEPTED_KINDS,
                            ident);
}

static int no_catalog_check(acache *c, const char *ident)
{
    if (!c->catalog)
        return acache_error_set(ACACHE_ENOTFOUND,
                                "unknown user identifier '%s': no catalog is configured "
                                "to resolve " ACCEPTED_KINDS,
                                ident);
    return ACACHE_OK;
}

/* Resolution including step 4; `info` receives the user's row when known
 * (a key whose user row is gone still resolves, with NULL name/email). */
static int resolve(acache__user_info *info, acache *c, const char *ident, int want_info)
{
    int rc = acache__find_user(info, c, ident);
    if (rc != ACACHE_ENOTFOUND)
        return rc;
    key_info k;
    rc = find_key(&k, c, ident);
    if (rc < 0)
        return rc;
    if (!k.user_id) {
        key_info_clear(&k);
        return ACACHE_ENOTFOUND;
    }
    if (want_info) {
        rc = user_by(info, c->catalog, ACACHE_BY_ID, k.user_id);
        if (rc == ACACHE_ENOTFOUND)
            rc = ACACHE_OK;
        if (rc < 0) {
            key_info_clear(&k);
            return rc;
        }
    }
    if (!info->id) {
        info->id = k.user_id;
        k.user_id = NULL;
    }
    key_info_clear(&k);
    return ACACHE_OK;
}

int acache__resolve_ident(acache__user_info *out, acache *c, const char *ident,
                          int key_step)
{
    return key_step ? resolve(out, c, ident, 1) : acache__find_user(out, c, ident);
}

int acache_resolve_user(acache_buf *user_id_out, acache *c, const char *identifier)
{
    if (!user_id_out || !c || !identifier)
        return acache_error_set(ACACHE_EINVALID, "resolve_user: NULL argument");
    char *ident = acache__trim_dup(identifier);
    if (!ident)
        return ACACHE_ENOMEM;
    acache__user_info u;
    memset(&u, 0, sizeof u);
    int rc = no_catalog_check(c, ident);
    if (rc == ACACHE_OK) {
        rc = resolve(&u, c, ident, 0);
        if (rc == ACACHE_ENOTFOUND)
            not_found(ident);
    }
    if (rc == ACACHE_OK)
        rc = acache__buf_set(user_id_out, u.id, strlen(u.id));
    acache__user_info_clear(&u);
    free(ident);
    return rc;
}

/* ---- invalidation by identifier ---- */

typedef struct {
    acache__user_info user;
    key_info key; /* set when the identifier was an API key id */
    size_t removed;
} cleared;

static void cleared_clear(cleared *r)
{
    acache__user_info_clear(&r->user);
    key_info_clear(&r->key);
}

/* The API key id is tried first: an identifier that is both a key id and a
 * username clears only that key, as Aether does. */
static int clear_user(cleared *r, acache *c, const char *ident, int want_info)
{
    memset(r, 0, sizeof *r);
    int rc = no_catalog_check(c, ident);
    if (rc < 0)
        return rc;
    rc = find_key(&r->key, c, ident);
    if (rc == ACACHE_OK) {
        if (want_info && r->key.user_id) {
            rc = user_by(&r->user, c->catalog, ACACHE_BY_ID, r->key.user_id);
            if (rc < 0 && rc != ACACHE_ENOTFOUND)
                return rc;
        }
        const char *keys[1] = {r->key.id};
        return acache__invalidate_api_keys(c, keys, 1, &r->removed);
    }
    if (rc != ACACHE_ENOTFOUND)
        return rc;
    rc = acache__find_user(&r->user, c, ident);
    if (rc == ACACHE_ENOTFOUND)
        return not_found(ident);
    if (rc < 0)
        return rc;
    strvec ids;
    if ((rc = user_key_ids(&ids, c, r->user.id)) < 0)
        return rc;
    if (ids.n)
        rc = acache__invalidate_api_keys(c, (const char *const *)ids.v, ids.n,
                                         &r->removed);
    strvec_clear(&ids);
    return rc;
}

int acache__invalidate_user(size_t *removed, acache *c, const char *identifier)
{
    if (removed)
        *removed = 0;
    if (!c || !identifier)
        return acache_error_set(ACACHE_EINVALID, "invalidate user: NULL identifier");
    char *ident = acache__trim_dup(identifier);
    if (!ident)
        return ACACHE_ENOMEM;
    cleared r;
    int rc = clear_user(&r, c, ident, 0);
    if (rc == ACACHE_OK && removed)
        *removed = r.removed;
    cleared_clear(&r);
    free(ident);
    return rc;
}

static int dump_or_oom(acache_buf *out, json_t *root)
{
    if (!root)
        return acache__oom();
    int rc = acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}

/* acache__json_set takes the reference even when it fails, so containers are
 * attached first and filled after. */
static json_t *clear_body(const cleared *r)
{
    json_t *body = json_object();
    if (!body)
        return NULL;
    json_t *ui = json_object();
    char *msg =
        r->key.id
            ? acache__sprintf("cleared the cache affinities of API key %s", r->key.id)
            : acache__sprintf("cleared every cache affinity of user %s",
                              r->user.username ? r->user.username : r->user.id);
    const char *uid = r->key.id ? r->key.user_id : r->user.id;
    int bad = !msg || acache__json_set(body, "status", json_string("ok")) < 0 ||
              acache__json_set(body, "message", acache__json_str(msg)) < 0;
    if (bad)
        json_decref(ui);
    else
        bad = acache__json_set(body, "user_info", ui) < 0 ||
              acache__json_set(ui, "user_id", acache__json_str(uid)) < 0 ||
              acache__json_set(ui, "username", acache__json_str(r->user.username)) < 0 ||
              acache__json_set(ui, "email", acache__json_str(r->user.email)) < 0;
    if (!bad && r->key.id)
        bad = acache__json_set(ui, "api_key_id", acache__json_str(r->key.id)) < 0 ||
              acache__json_set(ui, "api_key_name", acache__json_str(r->key.name)) < 0;
    if (!bad)
        bad = acache__json_set(body, "count", json_integer((json_int_t)r->removed)) < 0;
    free(msg);
    if (bad) {
        json_decref(body);
        return NULL;
    }
    return body;
}

int acache__clear_user_json(acache_buf *out, acache *c, const char *identifier)
{
    if (!out || !c || !identifier)
        return acache_error_set(ACACHE_EINVALID, "clear_user: NULL argument");
    char *ident = acache__trim_dup(identifier);
    if (!ident)
        return ACACHE_ENOMEM;
    cleared r;
    int rc = clear_user(&r, c, ident, 1);
    if (rc == ACACHE_OK)
        rc = dump_or_oom(out, clear_body(&r));
    cleared_clear(&r);
    free(ident);
    return rc;
}

/* ---- one user's affinities ---- */

static json_t *affinity_json(const acache__listing_item *it)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (acache__json_set(o, "provider_id",
                         acache__json_str(acache__listing_item_provider_id(it))) < 0 ||
        acache__json_set(o, "endpoint_id",
                         acache__json_str(acache__listing_item_endpoint_id(it))) < 0 ||
        acache__json_set(o, "key_id", acache__json_str(acache__listing_item_key_id(it))) <
            0 ||
        acache__json_set(o, "api_format",
                         acache__json_str(acache__listing_item_api_format(it))) < 0 ||
        acache__json_set(o, "model_name",
                         acache__json_str(acache__listing_item_global_model_id(it))) <
            0 ||
        acache__json_set(o, "created_at",
                         json_real(acache__listing_item_created_at(it))) < 0 ||
        acache__json_set(o, "expire_at", json_real(acache__listing_item_expire_at(it))) <
            0 ||
        acache__json_set(o, "request_count",
                         json_integer(acache__listing_item_request_count(it))) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *user_affinity_body(const acache__user_info *u, const acache__listing *l)
{
    json_t *body = json_object();
    if (!body)
        return NULL;
    size_t n = acache__listing_count(l);
    json_t *info = json_object(), *arr = json_array();
    if (acache__json_set(body, "status", json_string(n ? "ok" : "not_found")) < 0)
        goto fail_both;
    if (!n) {
        char *msg = acache__sprintf("user %s (%s) has no cache affinities",
                                    u->username ? u->username : u->id,
                                    u->email ? u->email : "no email");
        int bad = !msg || acache__json_set(body, "message", acache__json_str(msg)) < 0;
        free(msg);
        if (bad)
            goto fail_both;
    }
    if (acache__json_set(body, "user_info", info) < 0) {
        json_decref(arr);
        goto fail;
    }
    if (acache__json_set(body, "affinities", arr) < 0)
        goto fail;
    if (acache__json_set(info, "user_id", acache__json_str(u->id)) < 0 ||
        acache__json_set(info, "username", acache__json_str(u->username)) < 0 ||
        acache__json_set(info, "email", acache__json_str(u->email)) < 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, affinity_json(acache__listing_at(l, i))) < 0)
            goto fail;
    if (acache__json_set(body, "total_endpoints", json_integer((json_int_t)n)) < 0)
        goto fail;
    return body;
fail_both:
    json_decref(info);
    json_decref(arr);
fail:
    json_decref(body);
    return NULL;
}

int acache_user_affinities(acache_buf *out, acache *c, const char *identifier)
{
    if (!out || !c || !identifier)
        return acache_error_set(ACACHE_EINVALID, "user_affinity: NULL argument");
    char *ident = acache__trim_dup(identifier);
    if (!ident)
        return ACACHE_ENOMEM;
    acache__user_info u;
    memset(&u, 0, sizeof u);
    acache__listing *l = NULL;
    strvec ids = {0};
    int rc = no_catalog_check(c, ident);
    if (rc == ACACHE_OK) {
        rc = resolve(&u, c, ident, 1);
        if (rc == ACACHE_ENOTFOUND)
            not_found(ident);
    }
    if (rc == ACACHE_OK)
        rc = user_key_ids(&ids, c, u.id);
    /* Aether compares a user_id field its records never carry; the user's pins
     * are those of the user's API keys (none when the user has no keys: the
     * key list is a filter even when empty). */
    if (rc == ACACHE_OK)
        rc = acache__listing_for_keys(&l, c, (const char *const *)ids.v, ids.n);
    if (rc == ACACHE_OK)
        rc = dump_or_oom(out, user_affinity_body(&u, l));
    acache__listing_free(l);
    strvec_clear(&ids);
    acache__user_info_clear(&u);
    free(ident);
    return rc;
}
