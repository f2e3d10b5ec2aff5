/* The model-mapping cache (model-mapping.md): stats over the `model:*` and
 * `global_model:*` keys Aether's gateway writes, and clearing them. The
 * library never fills this cache. Store access is through the raw slots;
 * catalog joins are three batched look-ups (global_models by id, models by
 * global_model_id, providers by id), never one per entry. */
#include <stdlib.h>
#include <string.h>

#include "../util/json.h"
#include "core.h"
#include "mapping_priv.h"

#define P_MODEL "model:"
#define P_MODEL_ID "model:id:"
#define P_PG "model:provider_global:"
#define P_PG_HITS "model:provider_global:hits:"
#define P_GM "global_model:"
#define P_GM_ID "global_model:id:"
#define P_GM_NAME "global_model:name:"
#define P_GM_RESOLVE "global_model:resolve:"

#define NOT_ENABLED "Redis not enabled"

typedef struct mm_mapping {
    char *name, *gm_id, *gm_name, *gm_display;
    char **providers;
    size_t nprov;
    int64_t ttl;
} mm_mapping;

typedef struct mm_unmapped {
    char *name;
    int status;
    int64_t ttl;
} mm_unmapped;

typedef struct mm_pm {
    char *provider_id, *provider_name, *gm_id, *gm_name, *gm_display, *pmn;
    char **aliases;
    size_t nal;
    int64_t ttl, hits;
} mm_pm;

struct acache_model_mapping_stats {
    int available;
    char *message;
    uint32_t ttl_s;
    uint64_t breakdown[5];
    mm_mapping *maps;
    size_t nmaps;
    mm_unmapped *unm;
    size_t nunm;
    mm_pm *pms;
    size_t npms;
};

/* ---- small helpers ---- */

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *s, const char *p, size_t len)
{
    if (acache__grow(&s->v, &s->cap, s->n, sizeof *s->v))
        return ACACHE_ENOMEM;
    char *d = acache__strndup(p, len);
    if (!d)
        return acache__oom();
    s->v[s->n++] = d;
    return ACACHE_OK;
}

static void sv_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sv_sort_unique(strvec *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof *s->v, str_cmp);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->v[i], s->v[w - 1]) == 0)
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

static int has_prefix(const char *s, size_t len, const char *p)
{
    size_t pl = strlen(p);
    return len >= pl && memcmp(s, p, pl) == 0;
}

static int is_redis(const acache *c)
{
    return c->store && c->store->scheme && strcmp(c->store->scheme, "redis") == 0;
}

static int check_slots(acache *c, const char *what)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "%s: handle is NULL", what);
    acache_store *s = c->store;
    if (!s || !s->get || !s->del || !s->scan || !s->ttl)
        return acache_error_set(ACACHE_EUNSUPPORTED,
                                "%s: the store has no raw key access", what);
    return ACACHE_OK;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = acache__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

/* Mapping names of a Model's provider_model_mappings (schema: entries that are
 * objects with a non-blank string `name`). */
static int mapping_names(json_t *arr, strvec *out)
{
    size_t i;
    json_t *e;
    if (!json_is_array(arr))
        return ACACHE_OK;
    json_array_foreach(arr, i, e)
    {
        const char *n = json_is_object(e) ? jstr(e, "name") : NULL;
        if (!n || strspn(n, " \t\r\n\f\v") == strlen(n))
            continue;
        int rc = sv_push(out, n, strlen(n));
        if (rc < 0)
            return rc;
    }
    return ACACHE_OK;
}

static int has_mapping_name(const char *mappings_json, const char *name)
{
    if (!mappings_json)
        return 0;
    json_t *arr = json_loads(mappings_json, JSON_DECODE_ANY, NULL);
    int found = 0;
    size_t i;
    json_t *e;
    if (json_is_array(arr))
        json_array_foreach(arr, i, e)
        {
            const char *n = json_is_object(e) ? jstr(e, "name") : NULL;
            if (n && strcmp(n, name) == 0) {
                found = 1;
                break;
            }
        }
    json_decref(arr);
    return found;
}

/* ---- stats: key census ---- */

typedef struct census {
    acache_model_mapping_stats *s;
    strvec resolve; /* names after global_model:resolve: */
    strvec pg;      /* full provider_global keys that split into p:g */
} census;

static int census_cb(const acache_entry *e, size_t n, void *payload)
{
    census *cs = payload;
    uint64_t *b = cs->s->breakdown;
    for (size_t i = 0; i < n; i++) {
        const char *k = e[i].key;
        size_t len = e[i].key_len;
        int rc = ACACHE_OK;
        if (has_prefix(k, len, P_MODEL_ID)) {
            b[ACACHE_MM_MODEL_BY_ID]++;
        } else if (has_prefix(k, len, P_PG_HITS)) {
            /* hit counters are not counted */
        } else if (has_prefix(k, len, P_PG)) {
            b[ACACHE_MM_MODEL_BY_PROVIDER_GLOBAL]++;
            const char *rest = k + strlen(P_PG);
            size_t rlen = len - strlen(P_PG);
            const char *colon = memchr(rest, ':', rlen);
            /* Exactly provider_id:global_model_id (Python split(":") == 2 parts). */
            if (colon && !memchr(colon + 1, ':', rlen - (size_t)(colon + 1 - rest)))
                rc = sv_push(&cs->pg, k, len);
        } else if (has_prefix(k, len, P_GM_ID)) {
            b[ACACHE_MM_GLOBAL_MODEL_BY_ID]++;
        } else if (has_prefix(k, len, P_GM_NAME)) {
            b[ACACHE_MM_GLOBAL_MODEL_BY_NAME]++;
        } else if (has_prefix(k, len, P_GM_RESOLVE)) {
            b[ACACHE_MM_GLOBAL_MODEL_RESOLVE]++;
            rc = sv_push(&cs->resolve, k + strlen(P_GM_RESOLVE),
                         len - strlen(P_GM_RESOLVE));
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Keep the first `cap` in key order: Aether takes the first 100 SCAN returns,
 * an arbitrary order; sorting first makes the choice deterministic. */
static void cap_list(strvec *v, size_t cap)
{
    sv_sort_unique(v);
    while (v->n > cap)
        free(v->v[--v->n]);
}

static int64_t ttl_or_null(int64_t t)
{
    return t > 0 ? t : -1;
}

/* ---- catalog joins ---- */

typedef struct cat_model {
    char *provider_id, *gm_id, *pmn, *mappings;
} cat_model;

typedef struct join {
    /* models by global_model_id (active only) */
    cat_model *models;
    size_t nmodels, capm;
    /* providers by id */
    acache_cat_provider *provs; /* strings owned */
    size_t nprovs, capp;
    /* global models by id */
    acache_cat_global_model *gms; /* strings owned */
    size_t ngms, capg;
} join;

static int model_cb(const acache_cat_model *row, void *payload)
{
    join *j = payload;
    if (!row->is_active)
        return 0;
    if (acache__grow(&j->models, &j->capm, j->nmodels, sizeof *j->models))
        return ACACHE_ENOMEM;
    int oom = 0;
    cat_model *m = &j->models[j->nmodels++];
    m->provider_id = dup_or_null(row->provider_id, &oom);
    m->gm_id = dup_or_null(row->global_model_id, &oom);
    m->pmn = dup_or_null(row->provider_model_name, &oom);
    m->mappings = dup_or_null(row->provider_model_mappings, &oom);
    return oom ? acache__oom() : 0;
}

static int provider_cb(const acache_cat_provider *row, void *payload)
{
    join *j = payload;
    if (acache__grow(&j->provs, &j->capp, j->nprovs, sizeof *j->provs))
        return ACACHE_ENOMEM;
    int oom = 0;
    acache_cat_provider *p = &j->provs[j->nprovs++];
    p->id = dup_or_null(row->id, &oom);
    p->name = dup_or_null(row->name, &oom);
    p->display_name = dup_or_null(row->display_name, &oom);
    p->is_active = row->is_active;
    return oom ? acache__oom() : 0;
}

static int gm_cb(const acache_cat_global_model *row, void *payload)
{
    join *j = payload;
    if (acache__grow(&j->gms, &j->capg, j->ngms, sizeof *j->gms))
        return ACACHE_ENOMEM;
    int oom = 0;
    acache_cat_global_model *g = &j->gms[j->ngms++];
    g->id = dup_or_null(row->id, &oom);
    g->name = dup_or_null(row->name, &oom);
    g->display_name = dup_or_null(row->display_name, &oom);
    g->is_active = row->is_active;
    return oom ? acache__oom() : 0;
}

static void join_free(join *j)
{
    for (size_t i = 0; i < j->nmodels; i++) {
        free(j->models[i].provider_id);
        free(j->models[i].gm_id);
        free(j->models[i].pmn);
        free(j->models[i].mappings);
    }
    free(j->models);
    for (size_t i = 0; i < j->nprovs; i++) {
        free((char *)j->provs[i].id);
        free((char *)j->provs[i].name);
        free((char *)j->provs[i].display_name);
    }
    free(j->provs);
    for (size_t i = 0; i < j->ngms; i++) {
        free((char *)j->gms[i].id);
        free((char *)j->gms[i].name);
        free((char *)j->gms[i].display_name);
    }
    free(j->gms);
}

static const acache_cat_provider *find_provider(const join *j, const char *id)
{
    for (size_t i = 0; id && i < j->nprovs; i++)
        if (j->provs[i].id && strcmp(j->provs[i].id, id) == 0)
            return &j->provs[i];
    return NULL;
}

static const acache_cat_global_model *find_gm(const join *j, const char *id)
{
    for (size_t i = 0; id && i < j->ngms; i++)
        if (j->gms[i].id && strcmp(j->gms[i].id, id) == 0)
            return &j->gms[i];
    return NULL;
}

static const char *provider_label(const acache_cat_provider *p)
{
    return p->display_name && *p->display_name ? p->display_name : p->name;
}

/* ---- stats ---- */

void acache_model_mapping_stats_free(acache_model_mapping_stats *s)
{
    if (!s)
        return;
    free(s->message);
    for (size_t i = 0; i < s->nmaps; i++) {
        mm_mapping *m = &s->maps[i];
        free(m->name);
        free(m->gm_id);
        free(m->gm_name);
        free(m->gm_display);
        for (size_t k = 0; k < m->nprov; k++)
            free(m->providers[k]);
        free(m->providers);
    }
    free(s->maps);
    for (size_t i = 0; i < s->nunm; i++)
        free(s->unm[i].name);
    free(s->unm);
    for (size_t i = 0; i < s->npms; i++) {
        mm_pm *p = &s->pms[i];
        free(p->provider_id);
        free(p->provider_name);
        free(p->gm_id);
        free(p->gm_name);
        free(p->gm_display);
        free(p->pmn);
        for (size_t k = 0; k < p->nal; k++)
            free(p->aliases[k]);
        free(p->aliases);
    }
    free(s->pms);
    free(s);
}

/* Read the resolve entries: mappings (direct matches skipped) and unmapped. */
static int read_resolve(acache_model_mapping_stats *s, acache *c, const strvec *names)
{
    size_t n = names->n;
    if (n == 0)
        return ACACHE_OK;
    char **keys = acache__calloc(n, sizeof *keys);
    int64_t *ttls = acache__calloc(n, sizeof *ttls);
    s->maps = acache__calloc(n, sizeof *s->maps);
    s->unm = acache__calloc(n, sizeof *s->unm);
    int rc = ACACHE_OK;
    if (!keys || !ttls || !s->maps || !s->unm) {
        rc = acache__oom();
        goto out;
    }
    for (size_t i = 0; i < n && rc == ACACHE_OK; i++)
        if (!(keys[i] = acache__sprintf("%s%s", P_GM_RESOLVE, names->v[i])))
            rc = ACACHE_ENOMEM;
    if (rc < 0)
        goto out;
    rc = c->store->ttl(c->store, (const char *const *)keys, n, ttls);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        acache_buf v = ACACHE_BUF_INIT;
        int grc = c->store->get(c->store, keys[i], &v);
        int status = 0;
        json_t *gm = NULL;
        if (grc == ACACHE_ENOMEM) {
            rc = grc;
            goto out;
        } else if (grc < 0) {
            status = ACACHE_MM_ERROR; /* vanished or unreadable */
        } else if (v.size == 9 && memcmp(v.ptr, "NOT_FOUND", 9) == 0) {
            status = ACACHE_MM_NOT_FOUND;
        } else {
            gm = json_loadb(v.ptr ? v.ptr : "", v.size, JSON_DECODE_ANY, NULL);
            if (!json_is_object(gm))
                status = ACACHE_MM_INVALID;
        }
        acache_buf_dispose(&v);
        if (status) {
            json_decref(gm);
            mm_unmapped *u = &s->unm[s->nunm];
            if (!(u->name = acache__strdup(names->v[i]))) {
                rc = acache__oom();
                goto out;
            }
            u->status = status;
            u->ttl = status == ACACHE_MM_ERROR ? -1 : ttl_or_null(ttls[i]);
            s->nunm++;
            continue;
        }
        const char *gname = jstr(gm, "name");
        if (gname && strcmp(gname, names->v[i]) == 0) {
            json_decref(gm); /* a direct match, not a mapping */
            continue;
        }
        int oom = 0;
        mm_mapping *m = &s->maps[s->nmaps++];
        m->name = dup_or_null(names->v[i], &oom);
        m->gm_id = dup_or_null(jstr(gm, "id"), &oom);
        m->gm_name = dup_or_null(gname, &oom);
        m->gm_display = dup_or_null(jstr(gm, "display_name"), &oom);
        m->ttl = ttl_or_null(ttls[i]);
        json_decref(gm);
        if (oom) {
            rc = acache__oom();
            goto out;
        }
    }
out:
    if (keys)
        for (size_t i = 0; i < n; i++)
            free(keys[i]);
    free(keys);
    free(ttls);
    return rc;
}

/* Read the provider_global entries (catalog filtering happens later). */
static int read_pg(acache_model_mapping_stats *s, acache *c, const strvec *pg)
{
    size_t n = pg->n;
    if (n == 0)
        return ACACHE_OK;
    int64_t *ttls = acache__calloc(n, sizeof *ttls);
    s->pms = acache__calloc(n, sizeof *s->pms);
    int rc = ACACHE_OK;
    if (!ttls || !s->pms) {
        free(ttls);
        return acache__oom();
    }
    rc = c->store->ttl(c->store, (const char *const *)pg->v, n, ttls);
    for (size_t i = 0; i < n && rc == ACACHE_OK; i++) {
        acache_buf v = ACACHE_BUF_INIT;
        int grc = c->store->get(c->store, pg->v[i], &v);
        if (grc == ACACHE_ENOMEM) {
            rc = grc;
            break;
        }
        json_t *m =
            grc == ACACHE_OK ? json_loadb(v.ptr ? v.ptr : "", v.size, 0, NULL) : NULL;
        acache_buf_dispose(&v);
        const char *pmn = json_is_object(m) ? jstr(m, "provider_model_name") : NULL;
        if (!pmn || !*pmn) {
            json_decref(m);
            continue;
        }
        const char *rest = pg->v[i] + strlen(P_PG);
        const char *colon = strchr(rest, ':');
        mm_pm *p = &s->pms[s->npms++];
        int oom = 0;
        p->provider_id = acache__strndup(rest, (size_t)(colon - rest));
        p->gm_id = acache__strdup(colon + 1);
        p->pmn = dup_or_null(pmn, &oom);
        if (!p->provider_id || !p->gm_id)
            oom = 1;
        p->ttl = ttl_or_null(ttls[i]);
        strvec al = {0};
        if (!oom && mapping_names(json_object_get(m, "provider_model_mappings"), &al) < 0)
            oom = 1;
        p->aliases = al.v;
        p->nal = al.n;
        json_decref(m);
        if (oom) {
            rc = acache__oom();
            break;
        }
        /* Hit counter: integer text, 0 when absent or not a number. */
        char *hk = acache__sprintf("%s%s", P_PG_HITS, rest);
        if (!hk) {
            rc = ACACHE_ENOMEM;
            break;
        }
        grc = c->store->get(c->store, hk, &v);
        free(hk);
        if (grc == ACACHE_OK && v.ptr) {
            char *end;
            long long h = strtoll(v.ptr, &end, 10);
            p->hits = (end != v.ptr && *end == '\0') ? h : 0;
        }
        acache_buf_dispose(&v);
        if (grc == ACACHE_ENOMEM)
            rc = grc;
    }
    free(ttls);
    return rc;
}

static void pm_dispose(mm_pm *p)
{
    free(p->provider_id);
    free(p->provider_name);
    free(p->gm_id);
    free(p->gm_name);
    free(p->gm_display);
    free(p->pmn);
    for (size_t k = 0; k < p->nal; k++)
        free(p->aliases[k]);
    free(p->aliases);
    memset(p, 0, sizeof *p);
}

static int str_or_empty_cmp(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int pm_cmp(const void *a, const void *b)
{
    const mm_pm *x = a, *y = b;
    int r = str_or_empty_cmp(x->provider_name, y->provider_name);
    return r ? r : str_or_empty_cmp(x->gm_name, y->gm_name);
}

static int map_cmp(const void *a, const void *b)
{
    return strcmp(((const mm_mapping *)a)->name, ((const mm_mapping *)b)->name);
}

static int unm_cmp(const void *a, const void *b)
{
    return strcmp(((const mm_unmapped *)a)->name, ((const mm_unmapped *)b)->name);
}

/* The three batched catalog look-ups, then providers per mapping and the
 * provider_global filter. */
static int enrich(acache_model_mapping_stats *s, acache *c)
{
    acache_catalog *cat = c->catalog;
    join j = {0};
    strvec gm_ids = {0}, prov_ids = {0}, pm_gm_ids = {0};
    int rc = ACACHE_OK;
    if (cat) {
        for (size_t i = 0; i < s->nmaps && rc == ACACHE_OK; i++)
            if (s->maps[i].gm_id)
                rc = sv_push(&gm_ids, s->maps[i].gm_id, strlen(s->maps[i].gm_id));
        sv_sort_unique(&gm_ids);
        if (rc == ACACHE_OK && gm_ids.n && cat->models)
            rc = cat->models(cat, ACACHE_BY_GLOBAL_MODEL_ID,
                             (const char *const *)gm_ids.v, gm_ids.n, model_cb, &j);
        for (size_t i = 0; i < j.nmodels && rc == ACACHE_OK; i++)
            if (j.models[i].provider_id)
                rc = sv_push(&prov_ids, j.models[i].provider_id,
                             strlen(j.models[i].provider_id));
        for (size_t i = 0; i < s->npms && rc == ACACHE_OK; i++) {
            rc = sv_push(&prov_ids, s->pms[i].provider_id, strlen(s->pms[i].provider_id));
            if (rc == ACACHE_OK)
                rc = sv_push(&pm_gm_ids, s->pms[i].gm_id, strlen(s->pms[i].gm_id));
        }
        sv_sort_unique(&prov_ids);
        sv_sort_unique(&pm_gm_ids);
        if (rc == ACACHE_OK && prov_ids.n && cat->providers)
            rc = cat->providers(cat, ACACHE_BY_ID, (const char *const *)prov_ids.v,
                                prov_ids.n, provider_cb, &j);
        if (rc == ACACHE_OK && pm_gm_ids.n && cat->global_models)
            rc = cat->global_models(cat, ACACHE_BY_ID, (const char *const *)pm_gm_ids.v,
                                    pm_gm_ids.n, gm_cb, &j);
        if (rc < 0)
            goto out;
    }

    /* mappings: providers with an active Model for that GlobalModel whose
     * provider_model_name or mapping names include the mapping name. */
    for (size_t i = 0; i < s->nmaps && rc == ACACHE_OK; i++) {
        mm_mapping *m = &s->maps[i];
        strvec names = {0};
        for (size_t k = 0; k < j.nmodels && rc == ACACHE_OK && m->gm_id; k++) {
            cat_model *cm = &j.models[k];
            if (!cm->gm_id || strcmp(cm->gm_id, m->gm_id) != 0)
                continue;
            if (!((cm->pmn && strcmp(cm->pmn, m->name) == 0) ||
                  has_mapping_name(cm->mappings, m->name)))
                continue;
            const acache_cat_provider *p = find_provider(&j, cm->provider_id);
            if (!p || !p->is_active || !provider_label(p))
                continue;
            rc = sv_push(&names, provider_label(p), strlen(provider_label(p)));
        }
        sv_sort_unique(&names);
        m->providers = names.v;
        m->nprov = names.n;
    }
    if (rc < 0)
        goto out;

    /* provider_model_mappings: shown only when provider and GlobalModel exist
     * and are active and the Model really maps something. Without a catalog
     * nothing can be checked: entries are listed with catalog fields NULL. */
    size_t w = 0;
    for (size_t i = 0; i < s->npms; i++) {
        mm_pm *p = &s->pms[i];
        int keep = 1, oom = 0;
        if (cat) {
            const acache_cat_provider *pv = find_provider(&j, p->provider_id);
            const acache_cat_global_model *g = find_gm(&j, p->gm_id);
            keep = pv && pv->is_active && g && g->is_active &&
                   (p->nal > 0 || !g->name || strcmp(p->pmn, g->name) != 0);
            if (keep) {
                p->provider_name = dup_or_null(provider_label(pv), &oom);
                p->gm_name = dup_or_null(g->name, &oom);
                p->gm_display = dup_or_null(g->display_name, &oom);
                if (!oom && p->nal == 0 && g->name) {
                    p->aliases = acache__malloc(sizeof *p->aliases);
                    if (p->aliases && (p->aliases[0] = acache__strdup(g->name)))
                        p->nal = 1;
                    else
                        oom = 1;
                }
            }
        }
        if (oom) {
            rc = acache__oom();
            /* keep the entry so it is freed with the snapshot */
            s->pms[w++] = *p;
            for (size_t k = i + 1; k < s->npms; k++)
                s->pms[w++] = s->pms[k];
            s->npms = w;
            goto out;
        }
        if (keep)
            s->pms[w++] = *p;
        else
            pm_dispose(p);
    }
    s->npms = w;
    if (s->npms > 1)
        qsort(s->pms, s->npms, sizeof *s->pms, pm_cmp);
out:
    join_free(&j);
    sv_free(&gm_ids);
    sv_free(&prov_ids);
    sv_free(&pm_gm_ids);
    return rc;
}

static int stats_impl(acache_model_mapping_stats **out, acache *c, int any_store)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: out is NULL");
    *out = NULL;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: handle is NULL");
    acache_model_mapping_stats *s = acache__calloc(1, sizeof *s);
    if (!s)
        return acache__oom();
    s->ttl_s = c->mapping_ttl_s;
    if (!any_store && !is_redis(c)) {
        if (!(s->message = acache__strdup(NOT_ENABLED))) {
            free(s);
            return acache__oom();
        }
        *out = s;
        return ACACHE_OK;
    }
    int rc = check_slots(c, "model mapping stats");
    if (rc < 0) {
        acache_model_mapping_stats_free(s);
        return rc;
    }
    s->available = 1;
    census cs = {s, {0}, {0}};
    rc = c->store->scan(c->store, P_MODEL, 0, census_cb, &cs);
    if (rc == ACACHE_OK)
        rc = c->store->scan(c->store, P_GM, 0, census_cb, &cs);
    if (rc == ACACHE_OK) {
        size_t cap = c->mapping_list_cap ? c->mapping_list_cap : 100;
        cap_list(&cs.resolve, cap);
        cap_list(&cs.pg, cap);
        rc = read_resolve(s, c, &cs.resolve);
    }
    if (rc == ACACHE_OK)
        rc = read_pg(s, c, &cs.pg);
    if (rc == ACACHE_OK)
        rc = enrich(s, c);
    sv_free(&cs.resolve);
    sv_free(&cs.pg);
    if (rc < 0) {
        acache_model_mapping_stats_free(s);
        return rc;
    }
    if (s->nmaps > 1)
        qsort(s->maps, s->nmaps, sizeof *s->maps, map_cmp);
    if (s->nunm > 1)
        qsort(s->unm, s->nunm, sizeof *s->unm, unm_cmp);
    *out = s;
    return ACACHE_OK;
}

int acache_model_mapping_stats_get(acache_model_mapping_stats **out, acache *c)
{
    return stats_impl(out, c, 0);
}

int acache__model_mapping_stats_any_store(acache_model_mapping_stats **out, acache *c)
{
    return stats_impl(out, c, 1);
}

/* ---- stats JSON ---- */

static json_t *ttl_json(int64_t t)
{
    return t > 0 ? json_integer(t) : json_null();
}

static json_t *str_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, acache__json_str(v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static const char *unmapped_status_text(int st)
{
    switch (st) {
    case ACACHE_MM_NOT_FOUND:
        return "not_found";
    case ACACHE_MM_INVALID:
        return "invalid";
    default:
        return "error";
    }
}

static json_t *stats_data(const acache_model_mapping_stats *s)
{
    json_t *d = json_object();
    if (!d)
        return NULL;
    int bad = 0;
    bad |= acache__json_set(d, "available", json_boolean(s->available));
    if (!s->available) {
        bad |= acache__json_set(d, "message", acache__json_str(s->message));
        if (bad) {
            json_decref(d);
            return NULL;
        }
        return d;
    }
    uint64_t total = 0;
    for (int i = 0; i < 5; i++)
        total += s->breakdown[i];
    json_t *b = json_object();
    static const char *const bk[5] = {"model_by_id", "model_by_provider_global",
                                      "global_model_by_id", "global_model_by_name",
                                      "global_model_resolve"};
    for (int i = 0; b && i < 5; i++)
        bad |= acache__json_set(b, bk[i], json_integer((json_int_t)s->breakdown[i]));
    bad |= acache__json_set(d, "ttl_seconds", json_integer(s->ttl_s));
    bad |= acache__json_set(d, "total_keys", json_integer((json_int_t)total));
    bad |= acache__json_set(d, "breakdown", b);

    json_t *maps = json_array();
    for (size_t i = 0; maps && i < s->nmaps && !bad; i++) {
        const mm_mapping *m = &s->maps[i];
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "mapping_name", acache__json_str(m->name));
        bad |= acache__json_set(o, "global_model_name", acache__json_str(m->gm_name));
        bad |= acache__json_set(o, "global_model_display_name",
                                acache__json_str(m->gm_display));
        bad |= acache__json_set(o, "providers", str_array(m->providers, m->nprov));
        bad |= acache__json_set(o, "ttl", ttl_json(m->ttl));
        bad |= json_array_append_new(maps, o);
    }
    bad |= acache__json_set(d, "mappings", maps);

    json_t *unm = s->nunm ? json_array() : json_null();
    for (size_t i = 0; unm && i < s->nunm && !bad; i++) {
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "mapping_name", acache__json_str(s->unm[i].name));
        bad |= acache__json_set(o, "status",
                                json_string(unmapped_status_text(s->unm[i].status)));
        bad |= acache__json_set(o, "ttl", ttl_json(s->unm[i].ttl));
        bad |= json_array_append_new(unm, o);
    }
    bad |= acache__json_set(d, "unmapped", unm);

    json_t *pms = s->npms ? json_array() : json_null();
    for (size_t i = 0; pms && i < s->npms && !bad; i++) {
        const mm_pm *p = &s->pms[i];
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "provider_id", acache__json_str(p->provider_id));
        bad |= acache__json_set(o, "provider_name", acache__json_str(p->provider_name));
        bad |= acache__json_set(o, "global_model_id", acache__json_str(p->gm_id));
        bad |= acache__json_set(o, "global_model_name", acache__json_str(p->gm_name));
        bad |= acache__json_set(o, "global_model_display_name",
                                acache__json_str(p->gm_display));
        bad |= acache__json_set(o, "provider_model_name", acache__json_str(p->pmn));
        bad |= acache__json_set(o, "aliases", str_array(p->aliases, p->nal));
        bad |= acache__json_set(o, "ttl", ttl_json(p->ttl));
        bad |= acache__json_set(o, "hit_count", json_integer(p->hits));
        bad |= json_array_append_new(pms, o);
    }
    bad |= acache__json_set(d, "provider_model_mappings", pms);
    if (bad) {
        json_decref(d);
        return NULL;
    }
    return d;
}

static int stats_json_impl(acache_buf *out, acache *c, int any_store)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: out is NULL");
    acache_model_mapping_stats *s = NULL;
    int rc = stats_impl(&s, c, any_store);
    if (rc < 0)
        return rc;
    json_t *root = json_object(), *d = stats_data(s);
    acache_model_mapping_stats_free(s);
    if (!root || !d || acache__json_set(root, "status", json_string("ok")) < 0) {
        json_decref(root);
        json_decref(d);
        return acache__oom();
    }
    if (acache__json_set(root, "data", d) < 0) {
        json_decref(root);
        return acache__oom();
    }
    rc = acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}

int acache_model_mapping_stats_json(acache_buf *out, acache *c)
{
    return stats_json_impl(out, c, 0);
}

int acache__model_mapping_stats_json_any_store(acache_buf *out, acache *c)
{
    return stats_json_impl(out, c, 1);
}

/* ---- getters ---- */

#define S_OK(s) ((s) != NULL)

int acache_model_mapping_stats_available(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->available : 0;
}

const char *acache_model_mapping_stats_message(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->message : NULL;
}

uint32_t acache_model_mapping_stats_ttl_seconds(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->ttl_s : 0;
}

uint64_t acache_model_mapping_stats_total_keys(const acache_model_mapping_stats *s)
{
    uint64_t t = 0;
    for (int i = 0; S_OK(s) && i < 5; i++)
        t += s->breakdown[i];
    return t;
}

uint64_t acache_model_mapping_stats_breakdown(const acache_model_mapping_stats *s,
                                              int family)
{
    return S_OK(s) && family >= 0 && family < 5 ? s->breakdown[family] : 0;
}

size_t acache_model_mapping_stats_mapping_count(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->nmaps : 0;
}

#define MAP(s, i) (S_OK(s) && (i) < (s)->nmaps ? &(s)->maps[i] : NULL)

const char *acache_model_mapping_stats_mapping_name(const acache_model_mapping_stats *s,
                                                    size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->name : NULL;
}

const char *
acache_model_mapping_stats_mapping_global_model_name(const acache_model_mapping_stats *s,
                                                     size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->gm_name : NULL;
}

const char *acache_model_mapping_stats_mapping_global_model_display_name(
    const acache_model_mapping_stats *s, size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->gm_display : NULL;
}

size_t
acache_model_mapping_stats_mapping_provider_count(const acache_model_mapping_stats *s,
                                                  size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->nprov : 0;
}

const char *
acache_model_mapping_stats_mapping_provider(const acache_model_mapping_stats *s, size_t i,
                                            size_t j)
{
    const mm_mapping *m = MAP(s, i);
    return m && j < m->nprov ? m->providers[j] : NULL;
}

int64_t acache_model_mapping_stats_mapping_ttl(const acache_model_mapping_stats *s,
                                               size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->ttl : -1;
}

size_t acache_model_mapping_stats_unmapped_count(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->nunm : 0;
}

const char *acache_model_mapping_stats_unmapped_name(const acache_model_mapping_stats *s,
                                                     size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].name : NULL;
}

int acache_model_mapping_stats_unmapped_status(const acache_model_mapping_stats *s,
                                               size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].status : 0;
}

int64_t acache_model_mapping_stats_unmapped_ttl(const acache_model_mapping_stats *s,
                                                size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].ttl : -1;
}

size_t acache_model_mapping_stats_pm_count(const acache_model_mapping_stats *s)
{
    return S_OK(s) ? s->npms : 0;
}

#define PM(s, i) (S_OK(s) && (i) < (s)->npms ? &(s)->pms[i] : NULL)

const char *acache_model_mapping_stats_pm_provider_id(const acache_model_mapping_stats *s,
                                                      size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->provider_id : NULL;
}

const char *
acache_model_mapping_stats_pm_provider_name(const acache_model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->provider_name : NULL;
}

const char *
acache_model_mapping_stats_pm_global_model_id(const acache_model_mapping_stats *s,
                                              size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_id : NULL;
}

const char *
acache_model_mapping_stats_pm_global_model_name(const acache_model_mapping_stats *s,
                                                size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_name : NULL;
}

const char *acache_model_mapping_stats_pm_global_model_display_name(
    const acache_model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_display : NULL;
}

const char *
acache_model_mapping_stats_pm_provider_model_name(const acache_model_mapping_stats *s,
                                                  size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->pmn : NULL;
}

size_t acache_model_mapping_stats_pm_alias_count(const acache_model_mapping_stats *s,
                                                 size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->nal : 0;
}

const char *acache_model_mapping_stats_pm_alias(const acache_model_mapping_stats *s,
                                                size_t i, size_t j)
{
    const mm_pm *p = PM(s, i);
    return p && j < p->nal ? p->aliases[j] : NULL;
}

int64_t acache_model_mapping_stats_pm_ttl(const acache_model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->ttl : -1;
}

int64_t acache_model_mapping_stats_pm_hit_count(const acache_model_mapping_stats *s,
                                                size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->hits : 0;
}

/* ---- clearing ---- */

static int gate(acache *c, int any_store, const char *what)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "%s: handle is NULL", what);
    if (!any_store && !is_redis(c))
        return acache_error_set(ACACHE_EUNSUPPORTED, "%s: " NOT_ENABLED, what);
    return check_slots(c, what);
}

static int collect_keys_cb(const acache_entry *e, size_t n, void *payload)
{
    strvec *v = payload;
    for (size_t i = 0; i < n; i++) {
        int rc = sv_push(v, e[i].key, e[i].key_len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int clear_all_impl(size_t *deleted, acache *c, int any_store)
{
    if (deleted)
        *deleted = 0;
    int rc = gate(c, any_store, "model mapping clear");
    if (rc < 0)
        return rc;
    /* Collect first, then delete: deleting while a SCAN is open is allowed
     * on Redis but would make the memory store's snapshot semantics matter. */
    strvec keys = {0};
    rc = c->store->scan(c->store, P_MODEL, 0, collect_keys_cb, &keys);
    if (rc == ACACHE_OK)
        rc = c->store->scan(c->store, P_GM, 0, collect_keys_cb, &keys);
    size_t total = 0;
    for (size_t i = 0; i < keys.n && rc == ACACHE_OK; i += 500) {
        size_t n = keys.n - i < 500 ? keys.n - i : 500, d = 0;
        acache_key batch[500];
        for (size_t j = 0; j < n; j++)
            batch[j] = (acache_key){keys.v[i + j], strlen(keys.v[i + j])};
        rc = c->store->del(c->store, batch, n, &d);
        total += d;
    }
    sv_free(&keys);
    if (deleted)
        *deleted = total;
    return rc;
}

/* Delete each key on its own so the caller learns which ones existed. */
static int del_each(acache *c, const char *const *keys, size_t n, unsigned int *bits)
{
    *bits = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = 0;
        acache_key k = {keys[i], strlen(keys[i])};
        int rc = c->store->del(c->store, &k, 1, &d);
        if (rc < 0)
            return rc;
        if (d)
            *bits |= 1u << i;
    }
    return ACACHE_OK;
}

static int clear_model_impl(unsigned int *cleared, acache *c, const char *name,
                            int any_store)
{
    if (cleared)
        *cleared = 0;
    int rc = gate(c, any_store, "model mapping clear");
    if (rc < 0)
        return rc;
    if (!name || !*name)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: empty model name");
    char *k0 = acache__sprintf("%s%s", P_GM_RESOLVE, name);
    char *k1 = acache__sprintf("%s%s", P_GM_NAME, name);
    unsigned int bits = 0;
    if (!k0 || !k1)
        rc = ACACHE_ENOMEM;
    else
        rc = del_each(c, (const char *const[]){k0, k1}, 2, &bits);
    free(k0);
    free(k1);
    if (cleared)
        *cleared = bits;
    return rc;
}

static int clear_provider_impl(unsigned int *cleared, acache *c, const char *provider_id,
                               const char *global_model_id, int any_store)
{
    if (cleared)
        *cleared = 0;
    int rc = gate(c, any_store, "model mapping clear");
    if (rc < 0)
        return rc;
    if (!provider_id || !*provider_id || !global_model_id || !*global_model_id)
        return acache_error_set(
            ACACHE_EINVALID, "model mapping clear: empty provider_id or global_model_id");
    char *k0 = acache__sprintf("%s%s:%s", P_PG, provider_id, global_model_id);
    char *k1 = acache__sprintf("%s%s:%s", P_PG_HITS, provider_id, global_model_id);
    unsigned int bits = 0;
    if (!k0 || !k1)
        rc = ACACHE_ENOMEM;
    else
        rc = del_each(c, (const char *const[]){k0, k1}, 2, &bits);
    free(k0);
    free(k1);
    if (cleared)
        *cleared = bits;
    return rc;
}

int acache_model_mapping_clear_all(size_t *deleted, acache *c)
{
    return clear_all_impl(deleted, c, 0);
}

int acache__model_mapping_clear_all_any_store(size_t *deleted, acache *c)
{
    return clear_all_impl(deleted, c, 1);
}

int acache_model_mapping_clear_model(unsigned int *cleared, acache *c,
                                     const char *model_name)
{
    return clear_model_impl(cleared, c, model_name, 0);
}

int acache__model_mapping_clear_model_any_store(unsigned int *cleared, acache *c,
                                                const char *model_name)
{
    return clear_model_impl(cleared, c, model_name, 1);
}

int acache_model_mapping_clear_provider(unsigned int *cleared, acache *c,
                                        const char *provider_id,
                                        const char *global_model_id)
{
    return clear_provider_impl(cleared, c, provider_id, global_model_id, 0);
}

int acache__model_mapping_clear_provider_any_store(unsigned int *cleared, acache *c,
                                                   const char *provider_id,
                                                   const char *global_model_id)
{
    return clear_provider_impl(cleared, c, provider_id, global_model_id, 1);
}

/* ---- clearing JSON ---- */

static int dump_owned(acache_buf *out, json_t *o, int bad)
{
    int rc = (bad || !o) ? acache__oom() : acache__json_dump(out, o, 0);
    json_decref(o);
    return rc;
}

static int clear_all_json_impl(acache_buf *out, acache *c, int any_store)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    size_t n = 0;
    int rc = clear_all_impl(&n, c, any_store);
    if (rc < 0)
        return rc;
    char *msg = acache__sprintf("Cleared %zu model mapping cache keys", n);
    json_t *o = json_object();
    int bad = !msg || !o;
    if (o) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "deleted_count", json_integer((json_int_t)n));
    }
    free(msg);
    return dump_owned(out, o, bad);
}

/* deleted_keys: the keys that existed, in the order they were named. */
static json_t *deleted_keys(unsigned int bits, const char *k0, const char *k1)
{
    json_t *a = json_array();
    if (a && (bits & 1u) && json_array_append_new(a, acache__json_str(k0)) < 0)
        goto fail;
    if (a && (bits & 2u) && json_array_append_new(a, acache__json_str(k1)) < 0)
        goto fail;
    return a;
fail:
    json_decref(a);
    return NULL;
}

static int clear_model_json_impl(acache_buf *out, acache *c, const char *name,
                                 int any_store)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    unsigned int bits = 0;
    int rc = clear_model_impl(&bits, c, name, any_store);
    if (rc < 0)
        return rc;
    char *k0 = acache__sprintf("%s%s", P_GM_RESOLVE, name);
    char *k1 = acache__sprintf("%s%s", P_GM_NAME, name);
    char *msg = acache__sprintf("Cleared model mapping cache for %s", name);
    json_t *o = json_object();
    int bad = !k0 || !k1 || !msg || !o;
    if (!bad) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "model_name", acache__json_str(name));
        bad |= acache__json_set(o, "deleted_keys", deleted_keys(bits, k0, k1));
    }
    free(k0);
    free(k1);
    free(msg);
    return dump_owned(out, o, bad);
}

static int clear_provider_json_impl(acache_buf *out, acache *c, const char *provider_id,
                                    const char *global_model_id, int any_store)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    unsigned int bits = 0;
    int rc = clear_provider_impl(&bits, c, provider_id, global_model_id, any_store);
    if (rc < 0)
        return rc;
    char *k0 = acache__sprintf("%s%s:%s", P_PG, provider_id, global_model_id);
    char *k1 = acache__sprintf("%s%s:%s", P_PG_HITS, provider_id, global_model_id);
    char *msg = acache__sprintf("Cleared provider model mapping cache for %s:%s",
                                provider_id, global_model_id);
    json_t *o = json_object();
    int bad = !k0 || !k1 || !msg || !o;
    if (!bad) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "provider_id", acache__json_str(provider_id));
        bad |= acache__json_set(o, "global_model_id", acache__json_str(global_model_id));
        bad |= acache__json_set(o, "deleted_keys", deleted_keys(bits, k0, k1));
    }
    free(k0);
    free(k1);
    free(msg);
    return dump_owned(out, o, bad);
}

int acache_model_mapping_clear_all_json(acache_buf *out, acache *c)
{
    return clear_all_json_impl(out, c, 0);
}

int acache__model_mapping_clear_all_json_any_store(acache_buf *out, acache *c)
{
    return clear_all_json_impl(out, c, 1);
}

int acache_model_mapping_clear_model_json(acache_buf *out, acache *c,
                                          const char *model_name)
{
    return clear_model_json_impl(out, c, model_name, 0);
}

int acache__model_mapping_clear_model_json_any_store(acache_buf *out, acache *c,
                                                     const char *model_name)
{
    return clear_model_json_impl(out, c, model_name, 1);
}

int acache_model_mapping_clear_provider_json(acache_buf *out, acache *c,
                                             const char *provider_id,
                                             const char *global_model_id)
{
    return clear_provider_json_impl(out, c, provider_id, global_model_id, 0);
}

int acache__model_mapping_clear_provider_json_any_store(acache_buf *out, acache *c,
                                                        const char *provider_id,
                                                        const char *global_model_id)
{
    return clear_provider_json_impl(out, c, provider_id, global_model_id, 1);
}
