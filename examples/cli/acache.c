/* acache: the operator command line for libaethercache.
 *
 * Prints the admin JSON bodies of admin-api.md. Exit codes: 0 ok, 1 not found,
 * 2 usage or invalid argument, 3 store or catalog unavailable, 4 other error. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aether_cache/aether_cache.h>

enum { EXIT_OKAY = 0, EXIT_NOTFOUND = 1, EXIT_USAGE = 2, EXIT_UNAVAILABLE = 3, EXIT_OTHER = 4 };

static int pretty;

static void usage(FILE *f)
{
    fputs("usage: acache [--store URI] [--catalog URI] [--encryption-key-file PATH]\n"
          "              [--dev-encryption-key] [--pretty] COMMAND [ARGS]\n"
          "\n"
          "store:   memory:// (default, or $ACACHE_STORE), redis://[:pw@]host[:port][/db],\n"
          "         unix:///path/redis.sock\n"
          "catalog: json:///path/catalog.json, a path, or postgresql://... ($ACACHE_CATALOG)\n"
          "key:     --encryption-key-file PATH or $ACACHE_ENCRYPTION_KEY (Aether ENCRYPTION_KEY)\n"
          "\n"
          "commands:\n"
          "  stats | config | metrics\n"
          "  get AK FMT MODEL\n"
          "  touch AK FMT MODEL PROVIDER ENDPOINT KEY [--ttl S]\n"
          "  list [--keyword K] [--limit N] [--offset M]\n"
          "  user IDENTIFIER                 one user's affinities\n"
          "  clear-user IDENTIFIER           by API key id or user\n"
          "  clear-single AK ENDPOINT MODEL FMT\n"
          "  clear-provider PID\n"
          "  clear-all\n"
          "  mask KEY [--prefix N] [--suffix N]\n"
          "  mapping-stats\n"
          "  mapping-clear [NAME] | mapping-clear --provider PID GMID   (no NAME: all, --yes)\n"
          "  ttl-analysis [--user ID] [--api-key ID] [--hours H]\n"
          "  hit-analysis [--user ID] [--api-key ID] [--hours H]\n"
          "  timeline [--hours H] [--limit N] [--user ID] [--include-user-info]\n",
          f);
}

static int exit_code(int rc)
{
    switch (rc) {
    case ACACHE_OK: return EXIT_OKAY;
    case ACACHE_ENOTFOUND: return EXIT_NOTFOUND;
    case ACACHE_EINVALID: return EXIT_USAGE;
    case ACACHE_ESTORE:
    case ACACHE_ECATALOG:
    case ACACHE_EUNSUPPORTED: return EXIT_UNAVAILABLE;
    default: return EXIT_OTHER;
    }
}

static int fail(int rc, const char *what)
{
    fprintf(stderr, "acache: %s: %s: %s\n", what, acache_strerror(rc), acache_last_error());
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

static int parse_long(const char *s, long lo, long hi, long *out, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "acache: %s must be an integer in %ld..%ld, got \"%s\"\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Read the whole key file, trimming one trailing newline. */
static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "acache: cannot open encryption key file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *k = strdup(buf);
    memset(buf, 0, sizeof buf);
    return k;
}

typedef struct {
    int argc;
    char **argv;
} args;

/* Sub-command option parsing: positional args collected, known options set. */
typedef struct {
    const char *keyword, *user, *api_key, *provider_gm[2];
    long limit, offset, hours, ttl, prefix, suffix;
    int include_user_info, yes, provider;
    const char *pos[8];
    int npos;
} cmd_opts;

static int parse_cmd(int argc, char **argv, cmd_opts *o)
{
    static const struct option longopts[] = {
        {"keyword", required_argument, 0, 'k'}, {"limit", required_argument, 0, 'l'},
        {"offset", required_argument, 0, 'o'},  {"hours", required_argument, 0, 'H'},
        {"user", required_argument, 0, 'u'},    {"api-key", required_argument, 0, 'a'},
        {"ttl", required_argument, 0, 't'},     {"prefix", required_argument, 0, 'p'},
        {"suffix", required_argument, 0, 's'},  {"include-user-info", no_argument, 0, 'i'},
        {"yes", no_argument, 0, 'y'},           {"provider", no_argument, 0, 'P'},
        {0, 0, 0, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'k': o->keyword = optarg; break;
        case 'l': if (parse_long(optarg, LONG_MIN, LONG_MAX, &o->limit, "--limit")) return -1; break;
        case 'o': if (parse_long(optarg, LONG_MIN, LONG_MAX, &o->offset, "--offset")) return -1; break;
        case 'H': if (parse_long(optarg, INT_MIN, INT_MAX, &o->hours, "--hours")) return -1; break;
        case 'u': o->user = optarg; break;
        case 'a': o->api_key = optarg; break;
        case 't': if (parse_long(optarg, 0, UINT32_MAX, &o->ttl, "--ttl")) return -1; break;
        case 'p': if (parse_long(optarg, 0, 1 << 20, &o->prefix, "--prefix")) return -1; break;
        case 's': if (parse_long(optarg, 0, 1 << 20, &o->suffix, "--suffix")) return -1; break;
        case 'i': o->include_user_info = 1; break;
        case 'y': o->yes = 1; break;
        case 'P': o->provider = 1; break;
        default: return -1;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (o->npos == 8)
            return -1;
        o->pos[o->npos++] = argv[i];
    }
    return 0;
}

static int need(const cmd_opts *o, int n, const char *cmd)
{
    if (o->npos != n) {
        fprintf(stderr, "acache: %s takes %d argument%s (see acache --help)\n", cmd, n,
                n == 1 ? "" : "s");
        return -1;
    }
    return 0;
}

static int run(acache *c, const char *cmd, cmd_opts *o)
{
    acache_buf b = ACACHE_BUF_INIT;
    if (!strcmp(cmd, "stats"))
        return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_stats_json(&b, c), &b, cmd);
    if (!strcmp(cmd, "config"))
        return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_config_json(&b, c), &b, cmd);
    if (!strcmp(cmd, "metrics")) {
        if (need(o, 0, cmd))
            return EXIT_USAGE;
        int rc = acache_metrics_text(&b, c);
        if (rc)
            return fail(rc, cmd);
        fwrite(b.ptr, 1, b.size, stdout);
        acache_buf_dispose(&b);
        return EXIT_OKAY;
    }
    if (!strcmp(cmd, "get")) {
        if (need(o, 3, cmd))
            return EXIT_USAGE;
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, o->pos[0], o->pos[1], o->pos[2]);
        if (rc)
            return fail(rc, cmd);
        rc = acache_affinity_to_json(&b, a);
        acache_affinity_free(a);
        return emit(rc, &b, cmd);
    }
    if (!strcmp(cmd, "touch")) {
        if (need(o, 6, cmd))
            return EXIT_USAGE;
        acache_touch_result r;
        int rc = acache_affinity_set(&r, c, o->pos[0], o->pos[1], o->pos[2], o->pos[3],
                                     o->pos[4], o->pos[5], 1, (uint32_t)o->ttl);
        if (rc)
            return fail(rc, cmd);
        static const char *names[] = {"skipped", "created", "refreshed", "switched"};
        acache_affinity *a = NULL;
        rc = acache_affinity_get(&a, c, o->pos[0], o->pos[1], o->pos[2]);
        if (rc)
            return fail(rc, cmd);
        rc = acache_affinity_to_json(&b, a);
        acache_affinity_free(a);
        if (rc)
            return fail(rc, cmd);
        printf("{\"status\": \"ok\", \"result\": \"%s\", \"affinity\": %s}\n", names[r], b.ptr);
        acache_buf_dispose(&b);
        return EXIT_OKAY;
    }
    if (!strcmp(cmd, "list"))
        return need(o, 0, cmd) ? EXIT_USAGE
                               : emit(acache_list_affinities_json(&b, c, o->keyword,
                                                                  o->limit == LONG_MIN ? 100 : o->limit,
                                                                  o->offset),
                                      &b, cmd);
    if (!strcmp(cmd, "user"))
        return need(o, 1, cmd) ? EXIT_USAGE
                               : emit(acache_user_affinity_json(&b, c, o->pos[0]), &b, cmd);
    if (!strcmp(cmd, "clear-user"))
        return need(o, 1, cmd) ? EXIT_USAGE
                               : emit(acache_clear_user_json(&b, c, o->pos[0]), &b, cmd);
    if (!strcmp(cmd, "clear-single"))
        return need(o, 4, cmd) ? EXIT_USAGE
                               : emit(acache_clear_single_json(&b, c, o->pos[0], o->pos[1],
                                                               o->pos[2], o->pos[3]),
                                      &b, cmd);
    if (!strcmp(cmd, "clear-provider"))
        return need(o, 1, cmd) ? EXIT_USAGE
                               : emit(acache_clear_provider_json(&b, c, o->pos[0]), &b, cmd);
    if (!strcmp(cmd, "clear-all"))
        return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_clear_all_json(&b, c), &b, cmd);
    if (!strcmp(cmd, "mapping-stats"))
        return need(o, 0, cmd) ? EXIT_USAGE : emit(acache_model_mapping_stats_json(&b, c), &b, cmd);
    if (!strcmp(cmd, "mapping-clear")) {
        if (o->provider)
            return need(o, 2, cmd) ? EXIT_USAGE
                                   : emit(acache_model_mapping_clear_provider_json(
                                              &b, c, o->pos[0], o->pos[1]),
                                          &b, cmd);
        if (o->npos == 1)
            return emit(acache_model_mapping_clear_model_json(&b, c, o->pos[0]), &b, cmd);
        if (need(o, 0, cmd))
            return EXIT_USAGE;
        if (!o->yes && isatty(STDIN_FILENO)) {
            fputs("acache: mapping-clear without a name deletes the whole model-mapping "
                  "cache; add --yes to confirm\n",
                  stderr);
            return EXIT_USAGE;
        }
        return emit(acache_model_mapping_clear_all_json(&b, c), &b, cmd);
    }
    if (!strcmp(cmd, "ttl-analysis") || !strcmp(cmd, "hit-analysis")) {
        if (need(o, 0, cmd))
            return EXIT_USAGE;
        int hours = o->hours ? (int)o->hours : 168;
        int rc = cmd[0] == 't' ? acache_ttl_analysis_json(&b, c, hours, o->user, o->api_key)
                               : acache_hit_analysis_json(&b, c, hours, o->user, o->api_key);
        return emit(rc, &b, cmd);
    }
    if (!strcmp(cmd, "timeline")) {
        if (need(o, 0, cmd))
            return EXIT_USAGE;
        return emit(acache_interval_timeline_json(&b, c, o->hours ? (int)o->hours : 24,
                                                  o->limit == LONG_MIN ? 10000 : o->limit > INT_MAX ? INT_MAX : o->limit < INT_MIN ? INT_MIN : (int)o->limit, o->user,
                                                  o->include_user_info),
                    &b, cmd);
    }
    fprintf(stderr, "acache: unknown command \"%s\" (see acache --help)\n", cmd);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, 0, 's'},
        {"catalog", required_argument, 0, 'c'},
        {"encryption-key-file", required_argument, 0, 'k'},
        {"dev-encryption-key", no_argument, 0, 'd'},
        {"pretty", no_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = getenv("ACACHE_STORE");
    opts.catalog_uri = getenv("ACACHE_CATALOG");
    const char *key_file = NULL;
    int ch;
    /* '+': stop at the command so its own options are parsed separately. */
    while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': opts.store_uri = optarg; break;
        case 'c': opts.catalog_uri = optarg; break;
        case 'k': key_file = optarg; break;
        case 'd': opts.use_dev_encryption_key = 1; break;
        case 'p': pretty = 1; break;
        case 'h': usage(stdout); return EXIT_OKAY;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    cmd_opts co = {.limit = LONG_MIN, .prefix = -1, .suffix = -1};
    if (parse_cmd(argc - optind, argv + optind, &co)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    /* mask needs no handle (and no key): answer it without connecting. */
    if (!strcmp(cmd, "mask")) {
        if (need(&co, 1, cmd))
            return EXIT_USAGE;
        acache_buf b = ACACHE_BUF_INIT;
        int rc = acache_mask_key(&b, co.pos[0], strlen(co.pos[0]),
                                 co.prefix < 0 ? 8 : (unsigned)co.prefix,
                                 co.suffix < 0 ? 4 : (unsigned)co.suffix);
        if (rc == ACACHE_ENOTFOUND) {
            puts("null");
            return EXIT_OKAY;
        }
        if (rc)
            return fail(rc, cmd);
        printf("%s\n", b.ptr);
        acache_buf_dispose(&b);
        return EXIT_OKAY;
    }
    char *key = NULL;
    if (key_file) {
        if (!(key = read_key_file(key_file)))
            return EXIT_USAGE;
        opts.encryption_key = key;
    } else if (getenv("ACACHE_ENCRYPTION_KEY") && *getenv("ACACHE_ENCRYPTION_KEY")) {
        opts.encryption_key = getenv("ACACHE_ENCRYPTION_KEY");
    }
    acache *c = NULL;
    int rc = acache_open(&c, &opts);
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
    if (rc)
        return fail(rc, "open");
    int code = run(c, cmd, &co);
    acache_close(c);
    return code;
}
