/* acache: the operator command line for libaethercache.
 *
 * Prints the admin JSON bodies of the HTTP API. Options may come anywhere: one
 * getopt_long pass (GNU permutation) over the whole command line with a table made
 * of the global options plus the options of the command, which a pre-scan finds
 * first. The --help texts are the source of the man pages (help2man): --help and
 * --version print on stdout and exit 0. Exit codes are in the help text. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aether_cache/aether_cache.h>
#include <jansson.h>
#include <sodium.h>

#include "secret_file.h"
#include "store_env.h"

enum {
    EXIT_OKAY = 0,
    EXIT_NOTFOUND = 1,
    EXIT_USAGE = 2,
    EXIT_UNAVAILABLE = 3,
    EXIT_OTHER = 4
};

/* ------------------------------------------------------------------ options */

/* Command options: each command lists the ones it accepts (a bit mask). */
enum {
    O_KEYWORD = 1u << 0,
    O_LIMIT = 1u << 1,
    O_OFFSET = 1u << 2,
    O_HOURS = 1u << 3,
    O_USER = 1u << 4,
    O_API_KEY = 1u << 5,
    O_TTL = 1u << 6,
    O_PREFIX = 1u << 7,
    O_SUFFIX = 1u << 8,
    O_USER_INFO = 1u << 9,
    O_YES = 1u << 10,
    O_PROVIDER = 1u << 11,
};

typedef struct {
    struct option opt;
    unsigned bit; /* 0: global */
} optdef;

/* Same name, same has_arg everywhere: the pre-scan relies on it. */
static const optdef optdefs[] = {
    {{"store", required_argument, NULL, 'S'}, 0},
    {{"catalog", required_argument, NULL, 'C'}, 0},
    {{"encryption-key-file", required_argument, NULL, 'K'}, 0},
    {{"dev-encryption-key", no_argument, NULL, 'D'}, 0},
    {{"pretty", no_argument, NULL, 'P'}, 0},
    {{"now", required_argument, NULL, 'N'}, 0},
    {{"help", no_argument, NULL, 'h'}, 0},
    {{"version", no_argument, NULL, 'V'}, 0},
    {{"keyword", required_argument, NULL, 'k'}, O_KEYWORD},
    {{"limit", required_argument, NULL, 'l'}, O_LIMIT},
    {{"offset", required_argument, NULL, 'o'}, O_OFFSET},
    {{"hours", required_argument, NULL, 'H'}, O_HOURS},
    {{"user", required_argument, NULL, 'u'}, O_USER},
    {{"api-key", required_argument, NULL, 'a'}, O_API_KEY},
    {{"ttl", required_argument, NULL, 't'}, O_TTL},
    {{"prefix", required_argument, NULL, 'p'}, O_PREFIX},
    {{"suffix", required_argument, NULL, 's'}, O_SUFFIX},
    {{"include-user-info", no_argument, NULL, 'i'}, O_USER_INFO},
    {{"yes", no_argument, NULL, 'y'}, O_YES},
    {{"provider", no_argument, NULL, 'r'}, O_PROVIDER},
};
#define NOPTDEFS (sizeof optdefs / sizeof optdefs[0])

/* Parsed command line. Numbers stay text until the command checks its bounds. */
typedef struct {
    const char *keyword, *user, *api_key;
    const char *limit, *offset, *hours, *ttl, *prefix, *suffix;
    int include_user_info, yes, provider;
    const char **pos;
    int npos;
} cmd_opts;

static int pretty;

/* --now: a fixed clock for the handle (acache_options.clock). */
static double fixed_now;

static double fixed_clock(void *payload)
{
    (void)payload;
    return fixed_now;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
 * days_from_civil): no timegm, no TZ. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

/* --now value: seconds since the epoch ("1766577600", "1766577600.5") or ISO 8601
 * with a zone ("2025-12-24T12:00:00Z", "2025-12-24 20:00:00.5+08:00"). */
static int parse_now(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s && !*end && !errno && v >= 0 && v < 253402300800.0 /* year 10000 */) {
        *out = v;
        return 0;
    }
    int y, mo, d, h, mi, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        sscanf(s + 11, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5)
        return -1;
    const char *p = s + 16;
    if (*p == ':') {
        if (sscanf(p + 1, "%2d%n", &sec, &n) != 1 || n != 2)
            return -1;
        p += 3;
    }
    double frac = 0;
    if (*p == '.' || *p == ',') {
        const char *q = p + 1;
        double scale = 0.1;
        while (*q >= '0' && *q <= '9') {
            frac += (*q++ - '0') * scale;
            scale /= 10;
        }
        if (q == p + 1)
            return -1;
        p = q;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5)
            off = oh * 3600L + om * 60L, n += 1;
        else if (sscanf(p + 1, "%2d%2d%n", &oh, &om, &n) == 2 && n == 4)
            off = oh * 3600L + om * 60L, n += 1;
        else
            return -1;
        if (oh > 23 || om > 59)
            return -1;
        if (*p == '-')
            off = -off;
        p += n;
    } else {
        return -1; /* no zone: refuse rather than guess local time or UTC */
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || sec > 60 ||
        (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
        return -1;
    double t = (double)days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400.0 +
               h * 3600.0 + mi * 60.0 + sec + frac - (double)off;
    if (t < 0)
        return -1;
    *out = t;
    return 0;
}

/* ----------------------------------------------------------------- commands */

typedef struct command command;
struct command {
    const char *name;
    const char *args;    /* synopsis after the name */
    const char *summary; /* one line for the command list */
    const char *help;    /* the command's --help body */
    unsigned opts;
    int (*run)(acache *c, const command *cmd, cmd_opts *o);
};

static const command *find_command(const char *name);

static int exit_code(int rc)
{
    switch (rc) {
    case ACACHE_OK:
        return EXIT_OKAY;
    case ACACHE_ENOTFOUND:
        return EXIT_NOTFOUND;
    case ACACHE_EINVALID:
        return EXIT_USAGE;
    case ACACHE_ESTORE:
    case ACACHE_ECATALOG:
    case ACACHE_EUNSUPPORTED:
        return EXIT_UNAVAILABLE;
    default:
        return EXIT_OTHER;
    }
}

static int fail(int rc, const char *what)
{
    fprintf(stderr, "acache: %s: %s: %s\n", what, acache_strerror(rc),
            acache_last_error());
    return exit_code(rc);
}

/* Print a JSON body (re-indented with --pretty) and map the status. */
static int emit(int rc, acache_buf *b, const char *what)
{
    if (rc != ACACHE_OK) {
        acache_buf_dispose(b);
        return fail(rc, what);
    }
    if (pretty) {
        acache_buf p = ACACHE_BUF_INIT;
        if (acache_json_reformat(&p, b->ptr, b->size, 2) == ACACHE_OK) {
            acache_buf_dispose(b);
            *b = p;
        }
    }
    fwrite(b->ptr, 1, b->size, stdout);
    if (b->size && b->ptr[b->size - 1] != '\n')
        fputc('\n', stdout);
    acache_buf_dispose(b);
    return EXIT_OKAY;
}

/* Parse an optional integer option within the HTTP API's bounds; absent: `def`. */
static int number(const char *s, const char *name, long lo, long hi, long def, long *out)
{
    if (!s) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "acache: --%s must be an integer in %ld..%ld, got \"%s\"\n", name,
                lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int need(const cmd_opts *o, int n, const command *cmd)
{
    if (o->npos != n) {
        fprintf(stderr, "acache: %s takes %d argument%s, got %d (see acache %s --help)\n",
                cmd->name, n, n == 1 ? "" : "s", o->npos, cmd->name);
        return -1;
    }
    return 0;
}

static int cmd_stats(acache *c, const command *cmd, cmd_opts *o)
{
    acache_buf b = ACACHE_BUF_INIT;
    return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_stats_json(&b, c), &b, cmd->name);
}

static int cmd_config(acache *c, const command *cmd, cmd_opts *o)
{
    acache_buf b = ACACHE_BUF_INIT;
    return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_config_json(&b, c), &b, cmd->name);
}

static int cmd_metrics(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 0, cmd))
        return EXIT_USAGE;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_metrics_text(&b, c);
    if (rc)
        return fail(rc, cmd->name);
    fwrite(b.ptr, 1, b.size, stdout);
    acache_buf_dispose(&b);
    return EXIT_OKAY;
}

static int cmd_get(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 3, cmd))
        return EXIT_USAGE;
    acache_affinity *a = NULL;
    int rc = acache_affinity_get(&a, c, o->pos[0], o->pos[1], o->pos[2]);
    if (rc)
        return fail(rc, cmd->name);
    acache_buf b = ACACHE_BUF_INIT;
    rc = acache_affinity_to_json(&b, a);
    acache_affinity_free(a);
    return emit(rc, &b, cmd->name);
}

/* {"status": "ok", "result": ..., "affinity": {...}}, built with jansson and then
 * re-rendered by the library so numbers read as in every other body. */
static int cmd_touch(acache *c, const command *cmd, cmd_opts *o)
{
    long ttl;
    if (need(o, 6, cmd) || number(o->ttl, "ttl", 1, UINT32_MAX, 0, &ttl))
        return EXIT_USAGE;
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = o->pos[0];
    t.api_format = o->pos[1];
    t.model_name = o->pos[2];
    t.provider_id = o->pos[3];
    t.endpoint_id = o->pos[4];
    t.key_id = o->pos[5];
    t.ttl_s = (uint32_t)ttl;
    acache_touch_result r;
    int rc = acache_affinity_touch(&r, c, &t);
    if (rc)
        return fail(rc, cmd->name);
    static const char *const names[] = {"skipped", "created", "refreshed", "switched"};
    acache_affinity *a = NULL;
    rc = acache_affinity_get(&a, c, o->pos[0], o->pos[1], o->pos[2]);
    if (rc)
        return fail(rc, cmd->name);
    acache_buf b = ACACHE_BUF_INIT;
    rc = acache_affinity_to_json(&b, a);
    acache_affinity_free(a);
    if (rc)
        return fail(rc, cmd->name);
    json_error_t jerr;
    json_t *aff = json_loadb(b.ptr, b.size, 0, &jerr);
    acache_buf_dispose(&b);
    json_t *body = json_object();
    char *text = NULL;
    if (aff && body && (unsigned)r < sizeof names / sizeof names[0] &&
        json_object_set_new(body, "status", json_string("ok")) == 0 &&
        json_object_set_new(body, "result", json_string(names[r])) == 0 &&
        json_object_set(body, "affinity", aff) == 0)
        text = json_dumps(body, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(aff);
    json_decref(body);
    if (!text) {
        fprintf(stderr, "acache: touch: cannot build the JSON answer\n");
        return EXIT_OTHER;
    }
    rc = acache_json_reformat(&b, text, strlen(text), 0);
    free(text);
    return emit(rc, &b, cmd->name);
}

static int cmd_list(acache *c, const command *cmd, cmd_opts *o)
{
    long limit, offset;
    if (need(o, 0, cmd) || number(o->limit, "limit", 1, 1000, 100, &limit) ||
        number(o->offset, "offset", 0, LONG_MAX, 0, &offset))
        return EXIT_USAGE;
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = o->keyword;
    q.limit = limit;
    q.offset = offset;
    acache_buf b = ACACHE_BUF_INIT;
    return emit(acache_list_affinities(&b, c, &q), &b, cmd->name);
}

/* A user who exists but has no pins answers {"status": "not_found"}: exit 1. */
static int cmd_user(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 1, cmd))
        return EXIT_USAGE;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_user_affinities(&b, c, o->pos[0]);
    int found = 1;
    if (rc == ACACHE_OK) {
        json_t *root = json_loadb(b.ptr, b.size, 0, NULL);
        const char *st = json_string_value(json_object_get(root, "status"));
        found = !st || strcmp(st, "not_found") != 0;
        json_decref(root);
    }
    int code = emit(rc, &b, cmd->name);
    return code == EXIT_OKAY && !found ? EXIT_NOTFOUND : code;
}

/* The clear-* commands: acache_invalidate_json() answers the admin body. */
static int invalidate(acache *c, const command *cmd, const acache_target *t)
{
    acache_buf b = ACACHE_BUF_INIT;
    return emit(acache_invalidate_json(&b, c, t), &b, cmd->name);
}

static int cmd_clear_user(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 1, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_USER;
    t.identifier = o->pos[0];
    return invalidate(c, cmd, &t);
}

/* AFFINITY_KEY ENDPOINT_ID MODEL API_FORMAT, the admin route's order. */
static int cmd_clear_single(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 4, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_SINGLE;
    t.affinity_key = o->pos[0];
    t.endpoint_id = o->pos[1];
    t.model_name = o->pos[2];
    t.api_format = o->pos[3];
    return invalidate(c, cmd, &t);
}

static int cmd_clear_provider(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 1, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_PROVIDER;
    t.provider_id = o->pos[0];
    return invalidate(c, cmd, &t);
}

static int cmd_clear_key(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 1, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_KEY;
    t.key_id = o->pos[0];
    return invalidate(c, cmd, &t);
}

static int cmd_clear_endpoint(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 1, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ENDPOINT;
    t.endpoint_id = o->pos[0];
    return invalidate(c, cmd, &t);
}

static int cmd_clear_all(acache *c, const command *cmd, cmd_opts *o)
{
    if (need(o, 0, cmd))
        return EXIT_USAGE;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ALL;
    return invalidate(c, cmd, &t);
}

static int cmd_mapping_stats(acache *c, const command *cmd, cmd_opts *o)
{
    acache_buf b = ACACHE_BUF_INIT;
    return need(o, 0, cmd) ? EXIT_USAGE
                           : emit(acache_model_mapping_stats(&b, c), &b, cmd->name);
}

static int cmd_mapping_clear(acache *c, const command *cmd, cmd_opts *o)
{
    acache_buf b = ACACHE_BUF_INIT;
    if (o->provider)
        return need(o, 2, cmd) ? EXIT_USAGE
                               : emit(acache_model_mapping_clear_provider(
                                          &b, c, o->pos[0], o->pos[1]),
                                      &b, cmd->name);
    if (o->npos == 1)
        return emit(acache_model_mapping_clear_model(&b, c, o->pos[0]), &b, cmd->name);
    if (o->npos != 0) {
        fprintf(stderr,
                "acache: mapping-clear takes NAME, --provider PID GMID or nothing "
                "(see acache mapping-clear --help)\n");
        return EXIT_USAGE;
    }
    return emit(acache_model_mapping_clear_all(&b, c), &b, cmd->name);
}

static int cmd_analysis(acache *c, const command *cmd, cmd_opts *o)
{
    long hours;
    if (need(o, 0, cmd) || number(o->hours, "hours", 1, 720, 168, &hours))
        return EXIT_USAGE;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = cmd->name[0] == 't'
                 ? acache_ttl_analysis(&b, c, (int)hours, o->user, o->api_key)
                 : acache_hit_analysis(&b, c, (int)hours, o->user, o->api_key);
    return emit(rc, &b, cmd->name);
}

static int cmd_timeline(acache *c, const command *cmd, cmd_opts *o)
{
    long hours, limit;
    if (need(o, 0, cmd) || number(o->hours, "hours", 1, 720, 24, &hours) ||
        number(o->limit, "limit", 100, 50000, 10000, &limit))
        return EXIT_USAGE;
    acache_buf b = ACACHE_BUF_INIT;
    return emit(acache_interval_timeline(&b, c, (int)hours, (int)limit, o->user,
                                         o->include_user_info),
                &b, cmd->name);
}

/* Needs no handle (and no key): answered without connecting. */
static int cmd_mask(acache *c, const command *cmd, cmd_opts *o)
{
    (void)c;
    long prefix, suffix;
    if (need(o, 1, cmd) || number(o->prefix, "prefix", 0, 1 << 20, 8, &prefix) ||
        number(o->suffix, "suffix", 0, 1 << 20, 4, &suffix))
        return EXIT_USAGE;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_mask_key(&b, o->pos[0], strlen(o->pos[0]), (unsigned)prefix,
                             (unsigned)suffix);
    if (rc == ACACHE_ENOTFOUND) {
        puts("null");
        return EXIT_OKAY;
    }
    if (rc)
        return fail(rc, cmd->name);
    fwrite(b.ptr, 1, b.size, stdout);
    fputc('\n', stdout);
    acache_buf_dispose(&b);
    return EXIT_OKAY;
}

static int cmd_help(acache *c, const command *cmd, cmd_opts *o);

#define ANALYSIS_OPTS(def)                                                               \
    "  --hours H          window of H hours up to now (or --now), 1..720\n"              \
    "                     (default " def ")\n"                                           \
    "  --user ID          only this user's requests (users.id)\n"
#define CONFIRM_TEXT                                                                     \
    "  --yes              do not ask for confirmation\n"                                 \
    "\n"                                                                                 \
    "Asks for confirmation when stdin is a terminal; refuses (exit 2) when it is not\n"  \
    "and --yes is not given.\n"

static const command commands[] = {
    {"stats", "", "cache statistics and scheduler counters (/stats)",
     "Print the cache statistics body of GET /api/admin/monitoring/cache/stats.\n", 0,
     cmd_stats},
    {"config", "", "cache configuration (/config)",
     "Print the configuration body of GET /api/admin/monitoring/cache/config.\n", 0,
     cmd_config},
    {"metrics", "", "Prometheus text metrics",
     "Print the Prometheus text of GET /api/admin/monitoring/cache/metrics.\n", 0,
     cmd_metrics},
    {"get", "AK FMT MODEL", "one pin, by affinity key, API format and model",
     "Print the pin of affinity key AK for API format FMT and model MODEL.\n"
     "Exit 1 when there is no live pin.\n",
     0, cmd_get},
    {"touch", "AK FMT MODEL PROVIDER ENDPOINT KEY",
     "create or refresh a pin, as a gateway",
     "Create or refresh the pin (AK, FMT, MODEL) -> (PROVIDER, ENDPOINT, KEY), as a\n"
     "gateway does after a request; print {status, result, affinity}, where result\n"
     "is created, refreshed, switched or skipped.\n"
     "\n"
     "  --ttl S            pin lifetime in seconds, 1..4294967295\n"
     "                     (default: the store's default TTL, 300)\n",
     O_TTL, cmd_touch},
    {"list", "", "enriched listing of the pins (/affinities)",
     "Print the enriched listing of GET /api/admin/monitoring/cache/affinities.\n"
     "\n"
     "  --keyword K        filter: affinity key, API key id or name, user, provider,\n"
     "                     endpoint, model (as Aether matches them)\n"
     "  --limit N          page size, 1..1000 (default 100)\n"
     "  --offset M         items to skip, 0 or more (default 0)\n",
     O_KEYWORD | O_LIMIT | O_OFFSET, cmd_list},
    {"user", "IDENTIFIER", "one user's pins (by user id, name, email or API key id)",
     "Print the pins of one user, found by user id, username, email or API key id.\n"
     "Exit 1 when the user is unknown or has no pins (status \"not_found\").\n",
     0, cmd_user},
    {"clear-user", "IDENTIFIER", "delete one user's pins (or one API key's)",
     "Delete every pin of a user (user id, username or email) or of one API key id.\n"
     "\n" CONFIRM_TEXT,
     O_YES, cmd_clear_user},
    {"clear-single", "AK ENDPOINT MODEL FMT", "delete one pin",
     "Delete the one pin of affinity key AK on ENDPOINT for MODEL and API format FMT.\n"
     "It names a single pin, so it does not ask for confirmation. Exit 1 when there is\n"
     "no such live pin.\n",
     0, cmd_clear_single},
    {"clear-provider", "PID", "delete every pin on one provider",
     "Delete every pin that points at provider PID.\n"
     "\n" CONFIRM_TEXT,
     O_YES, cmd_clear_provider},
    {"clear-key", "KID", "delete every pin to one provider API key",
     "Delete every pin that points at provider API key KID (e.g. the key was\n"
     "disabled).\n"
     "\n" CONFIRM_TEXT,
     O_YES, cmd_clear_key},
    {"clear-endpoint", "EID", "delete every pin to one provider endpoint",
     "Delete every pin that points at provider endpoint EID (e.g. the endpoint was\n"
     "removed).\n"
     "\n" CONFIRM_TEXT,
     O_YES, cmd_clear_endpoint},
    {"clear-all", "", "delete every pin in the store",
     "Delete every cache affinity in the store.\n"
     "\n" CONFIRM_TEXT,
     O_YES, cmd_clear_all},
    {"mask", "KEY", "mask an API key as the admin UI shows it (no store needed)",
     "Print KEY masked as the admin API shows keys (null when it is too short).\n"
     "\n"
     "  --prefix N         characters kept at the start, 0..1048576 (default 8)\n"
     "  --suffix N         characters kept at the end, 0..1048576 (default 4)\n",
     O_PREFIX | O_SUFFIX, cmd_mask},
    {"mapping-stats", "", "model-mapping cache statistics",
     "Print the model-mapping cache statistics body (/model-mapping/stats).\n", 0,
     cmd_mapping_stats},
    {"mapping-clear", "[NAME | --provider PID GMID]",
     "delete model-mapping cache entries",
     "mapping-clear NAME                  delete the entries of global model NAME\n"
     "mapping-clear --provider PID GMID   delete provider PID's entry for global model "
     "GMID\n"
     "mapping-clear                       delete the whole model-mapping cache\n"
     "\n"
     "  --provider         clear one provider's mapping (two arguments: PID GMID)\n"
     "  --yes              do not ask for confirmation (whole cache only)\n"
     "\n"
     "Clearing the whole cache asks for confirmation when stdin is a terminal and\n"
     "refuses (exit 2) when it is not and --yes is not given; the forms that name an\n"
     "entry do not ask.\n",
     O_PROVIDER | O_YES, cmd_mapping_clear},
    {"ttl-analysis", "", "per-user request intervals and recommended TTLs",
     "Print the TTL analysis of GET /api/admin/usage/cache-affinity/ttl-analysis:\n"
     "request intervals per user (or per API key) and a recommended pin TTL.\n"
     "Needs a catalog with usage rows. recommendation_reason is Aether's Chinese text,\n"
     "kept for compatibility; recommended_ttl_minutes (5, 15, 30 or 60) and the\n"
     "percentiles carry the same facts: 5 when 90% of intervals are within 5 minutes,\n"
     "else 15, 30 or 60 by the 75th percentile (docs/analysis.md).\n"
     "\n" ANALYSIS_OPTS(
         "168") "  --api-key ID       only this API key, and group by API key\n",
     O_HOURS | O_USER | O_API_KEY, cmd_analysis},
    {"hit-analysis", "", "prompt-cache hit rates and savings",
     "Print the cache-hit analysis of GET /api/admin/usage/cache-affinity/hit-analysis.\n"
     "Needs a catalog with usage rows.\n"
     "\n" ANALYSIS_OPTS("168") "  --api-key ID       only this API key\n",
     O_HOURS | O_USER | O_API_KEY, cmd_analysis},
    {"timeline", "", "request interval timeline (chart points)",
     "Print the interval timeline of GET\n"
     "/api/admin/usage/cache-affinity/interval-timeline. Needs a catalog.\n"
     "\n" ANALYSIS_OPTS(
         "24") "  --limit N          points, 100..50000 (default 10000)\n"
               "  --include-user-info  sample per user and add the users map\n",
     O_HOURS | O_LIMIT | O_USER | O_USER_INFO, cmd_timeline},
    {"help", "[COMMAND]", "this text, or a command's (same as COMMAND --help)",
     "Print the general help, or COMMAND's help.\n", 0, cmd_help},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

static const char global_options_text[] =
    "Global options (before or after the command):\n"
    "  --store URI        memory:// (the default, or $ACACHE_STORE),\n"
    "                     redis://[[user]:password@]host[:port][/db][?db=N],\n"
    "                     unix://[[user]:password@]/path/redis.sock[?db=N];\n"
    "                     a password on the command line is visible to other local\n"
    "                     users (ps): prefer $ACACHE_STORE for it;\n"
    "                     redis-sentinel://host[:port],...?service=NAME also works.\n"
    "                     Without --store: $ACACHE_STORE, else Aether's\n"
    "                     $REDIS_SENTINEL_HOSTS (+ $REDIS_SENTINEL_SERVICE_NAME,\n"
    "                     $REDIS_PASSWORD), else $REDIS_URL (+ $REDIS_PASSWORD),\n"
    "                     else memory://\n"
    "  --catalog URI      json:///path/catalog.json, a path, or postgresql://...\n"
    "                     (or $ACACHE_CATALOG); needed for users and analyses\n"
    "  --encryption-key-file PATH\n"
    "                     Aether's ENCRYPTION_KEY, to show masked API keys (or\n"
    "                     $ACACHE_ENCRYPTION_KEY); the file should be mode 0600: a\n"
    "                     warning when group or other can read it, a refusal when\n"
    "                     they can write it\n"
    "  --dev-encryption-key  with no key, use Aether's development default key\n"
    "  --pretty           indent the JSON output\n"
    "  --now TIME         take TIME as the current time (ISO 8601 with a zone, e.g.\n"
    "                     2025-12-24T12:00:00Z, or seconds since the epoch): the\n"
    "                     analyses' windows end there and pins expire against it;\n"
    "                     for looking at recorded data such as examples/catalog.json\n"
    "  -h, --help         print help (with COMMAND: that command's) and exit\n"
    "  -V, --version      print the version and exit\n";

static void print_version(void)
{
    /* "PROGRAM VERSION" first, as help2man expects (and as acache-admin prints). */
    printf("acache %s (libaethercache %s)\n", ACACHE_VERSION_STRING, acache_version());
}

static void usage(FILE *f)
{
    fputs(
        "Usage: acache [OPTION]... COMMAND [ARGUMENT]... [OPTION]...\n"
        "Inspect and clear the cache affinities and model-mapping caches of Aether\n"
        "gateways, and run the usage analyses; prints the JSON bodies of the admin HTTP\n"
        "API. Options may come anywhere on the line; \"--\" ends them.\n"
        "\n",
        f);
    fputs(global_options_text, f);
    fputs("\nCommands:\n", f);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
        if (strlen(head) > 20)
            fprintf(f, "  %s\n  %-20s %s\n", head, "", commands[i].summary);
        else
            fprintf(f, "  %-20s %s\n", head, commands[i].summary);
    }
    fputs("\n"
          "Run \"acache COMMAND --help\" for a command's arguments and options.\n"
          "\n"
          "Confirmation:\n"
          "  clear-all, clear-user, clear-provider, clear-key, clear-endpoint and\n"
          "  mapping-clear without a name delete by a broad selector: they ask for\n"
          "  confirmation when stdin is a terminal, refuse with exit status 2 when it\n"
          "  is not, and --yes skips the question. clear-single and mapping-clear NAME\n"
          "  name one entry and do not ask.\n"
          "\n"
          "Exit status:\n"
          "  0  success\n"
          "  1  not found (no such pin, user, key; a user with no pins)\n"
          "  2  usage error, invalid argument or value, confirmation not given\n"
          "  3  store or catalog unavailable (or the operation needs one)\n"
          "  4  other error\n",
          f);
}

static void command_usage(FILE *f, const command *cmd)
{
    fprintf(f, "Usage: acache [OPTION]... %s%s%s\n", cmd->name, cmd->args[0] ? " " : "",
            cmd->args);
    fprintf(f, "%s\n", cmd->summary);
    fputs("\n", f);
    fputs(cmd->help, f);
    fputs("\n", f);
    fputs(global_options_text, f);
    fputs("\nExit status: 0 ok, 1 not found, 2 usage, 3 store or catalog unavailable, "
          "4 other.\n",
          f);
}

static int cmd_help(acache *c, const command *cmd, cmd_opts *o)
{
    (void)c;
    (void)cmd;
    if (o->npos == 0) {
        usage(stdout);
        return EXIT_OKAY;
    }
    const command *t = o->npos == 1 ? find_command(o->pos[0]) : NULL;
    if (!t) {
        fprintf(stderr, "acache: help: unknown command \"%s\" (see acache --help)\n",
                o->pos[0]);
        return EXIT_USAGE;
    }
    command_usage(stdout, t);
    return EXIT_OKAY;
}

/* ---------------------------------------------------------- confirmation */

/* What a destructive command is about to delete, or NULL if it does not ask. */
static const char *destructive(const command *cmd, const cmd_opts *o)
{
    if (!strcmp(cmd->name, "clear-all"))
        return "delete every cache affinity in the store";
    if (!strcmp(cmd->name, "clear-user"))
        return "delete every cache affinity of this user or API key";
    if (!strcmp(cmd->name, "clear-provider"))
        return "delete every cache affinity on this provider";
    if (!strcmp(cmd->name, "clear-key"))
        return "delete every cache affinity on this provider API key";
    if (!strcmp(cmd->name, "clear-endpoint"))
        return "delete every cache affinity on this endpoint";
    if (!strcmp(cmd->name, "mapping-clear") && !o->provider && o->npos == 0)
        return "delete the whole model-mapping cache";
    return NULL;
}

static int confirm(const command *cmd, const cmd_opts *o)
{
    const char *what = destructive(cmd, o);
    if (!what || o->yes)
        return 0;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr,
                "acache: %s would %s; stdin is not a terminal, so add --yes to confirm\n",
                cmd->name, what);
        return -1;
    }
    fprintf(stderr, "acache: %s will %s%s%s. Continue? [y/N] ", cmd->name, what,
            o->npos ? ": " : "", o->npos ? o->pos[0] : "");
    fflush(stderr);
    char answer[16];
    if (!fgets(answer, sizeof answer, stdin) ||
        (strcmp(answer, "y\n") && strcmp(answer, "yes\n") && strcmp(answer, "Y\n") &&
         strcmp(answer, "YES\n") && strcmp(answer, "Yes\n"))) {
        fprintf(stderr, "acache: %s: not confirmed, nothing deleted\n", cmd->name);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- main */

/* The option named by argv element `arg` ("--name", "--name=value", or a unique
 * abbreviation, as getopt_long accepts), or NULL. */
static const optdef *lookup_long(const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    const optdef *hit = NULL;
    for (size_t i = 0; i < NOPTDEFS; i++) {
        const char *name = optdefs[i].opt.name;
        if (strncmp(name, arg, n))
            continue;
        if (strlen(name) == n)
            return &optdefs[i];
        if (hit && hit->opt.has_arg != optdefs[i].opt.has_arg)
            return NULL; /* ambiguous: getopt_long will say so */
        hit = &optdefs[i];
    }
    return hit;
}

/* Index of the command word: the first argument that is neither an option nor an
 * option's value. 0 if there is none. */
static int find_command_index(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--"))
            return i + 1 < argc ? i + 1 : 0;
        if (a[0] != '-' || !a[1])
            return i;
        if (a[1] == '-') {
            const optdef *d = lookup_long(a + 2);
            if (d && d->opt.has_arg == required_argument && !strchr(a, '='))
                i++;
        }
        /* Short options (-h, -V) take no value. */
    }
    return 0;
}

/* Confirm if needed, read the key, open the handle, run the command, wipe. */
static int open_and_run(const command *cmd, cmd_opts *o, const char *store_uri,
                        const char *catalog_uri, const char *key_file, int dev_key,
                        int have_now)
{
    if (confirm(cmd, o))
        return EXIT_USAGE;
    acache_options opts = ACACHE_OPTIONS_INIT;
    if (have_now)
        opts.clock = fixed_clock;
    opts.use_dev_encryption_key = dev_key;
    opts.catalog_uri = catalog_uri;
    /* The URI may hold the Redis password: keep it in a buffer wiped on free. */
    char *uri = store_uri ? secret_dup(store_uri) : NULL;
    if (store_uri && !uri) {
        fputs("acache: out of memory\n", stderr);
        return EXIT_OTHER;
    }
    opts.store_uri = uri;
    char *key = NULL;
    if (key_file) {
        if (!(key = secret_file_read("acache", "encryption key file", key_file,
                                     SECRET_FILE_MAX, NULL))) {
            secret_free(uri);
            return EXIT_USAGE;
        }
        opts.encryption_key = key;
    } else {
        const char *env_key = getenv("ACACHE_ENCRYPTION_KEY"); /* read once */
        if (env_key && *env_key)
            opts.encryption_key = env_key;
    }
    acache *c = NULL;
    int rc = acache_open(&c, &opts);
    secret_free(key); /* acache_open keeps what it needs */
    int code = rc ? fail(rc, "open") : cmd->run(c, cmd, o);
    acache_close(c);
    secret_free(uri);
    return code;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fputs("acache: libsodium initialisation failed\n", stderr);
        return EXIT_OTHER;
    }
    int ci = find_command_index(argc, argv);
    const command *cmd = ci ? find_command(argv[ci]) : NULL;
    if (ci && !cmd) {
        fprintf(stderr, "acache: unknown command \"%s\" (see acache --help)\n", argv[ci]);
        return EXIT_USAGE;
    }

    /* The global options plus the command's own: anything else is refused. */
    struct option longopts[NOPTDEFS + 1];
    size_t n = 0;
    for (size_t i = 0; i < NOPTDEFS; i++)
        if (!optdefs[i].bit || (cmd && (cmd->opts & optdefs[i].bit)))
            longopts[n++] = optdefs[i].opt;
    memset(&longopts[n], 0, sizeof longopts[n]);

    const char *store_uri = NULL; /* --store, else the environment (store_env.h) */
    const char *catalog_uri = getenv("ACACHE_CATALOG");
    const char *key_file = NULL;
    int dev_key = 0, help = 0, version = 0, have_now = 0, ch;
    cmd_opts o = {0};
    /* No '+' and no POSIXLY_CORRECT: GNU getopt permutes, so options may follow
     * the command and its arguments. */
    while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'S':
            store_uri = optarg;
            break;
        case 'C':
            catalog_uri = optarg;
            break;
        case 'K':
            key_file = optarg;
            break;
        case 'D':
            dev_key = 1;
            break;
        case 'P':
            pretty = 1;
            break;
        case 'N':
            if (parse_now(optarg, &fixed_now)) {
                fprintf(stderr,
                        "acache: --now takes ISO 8601 with a zone "
                        "(2025-12-24T12:00:00Z) or epoch seconds, got \"%s\"\n",
                        optarg);
                return EXIT_USAGE;
            }
            have_now = 1;
            break;
        case 'h':
            help = 1;
            break;
        case 'V':
            version = 1;
            break;
        case 'k':
            o.keyword = optarg;
            break;
        case 'l':
            o.limit = optarg;
            break;
        case 'o':
            o.offset = optarg;
            break;
        case 'H':
            o.hours = optarg;
            break;
        case 'u':
            o.user = optarg;
            break;
        case 'a':
            o.api_key = optarg;
            break;
        case 't':
            o.ttl = optarg;
            break;
        case 'p':
            o.prefix = optarg;
            break;
        case 's':
            o.suffix = optarg;
            break;
        case 'i':
            o.include_user_info = 1;
            break;
        case 'y':
            o.yes = 1;
            break;
        case 'r':
            o.provider = 1;
            break;
        default:
            /* getopt_long printed what was wrong. */
            if (cmd)
                fprintf(stderr, "Try \"acache %s --help\".\n", cmd->name);
            else
                fputs("Try \"acache --help\".\n", stderr);
            return EXIT_USAGE;
        }
    }
    if (version) {
        print_version();
        return EXIT_OKAY;
    }
    if (help) {
        if (cmd)
            command_usage(stdout, cmd);
        else
            usage(stdout);
        return EXIT_OKAY;
    }
    if (optind >= argc || !cmd) {
        usage(stderr);
        return EXIT_USAGE;
    }
    /* After permutation argv[optind] is the command, the rest its arguments. */
    o.pos = (const char **)argv + optind + 1;
    o.npos = argc - optind - 1;

    /* mask and help are answered without opening the store (or reading a key). */
    int no_handle = cmd->run == cmd_mask || cmd->run == cmd_help;
    char *env_uri = NULL;
    if (!no_handle && !store_uri) {
        const char *source;
        int bad = 0;
        env_uri = store_uri_from_env("acache", env_get, &source, &bad);
        if (bad)
            return EXIT_USAGE;
        store_uri = env_uri;
    }
    int code = no_handle ? cmd->run(NULL, cmd, &o)
                         : open_and_run(cmd, &o, store_uri, catalog_uri, key_file,
                                        dev_key, have_now);
    secret_free(env_uri);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "acache: writing the output: %s\n", strerror(errno));
        if (code == EXIT_OKAY)
            code = EXIT_OTHER;
    }
    return code;
}
