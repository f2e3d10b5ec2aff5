/* rediss://: one OpenSSL context per store, shared by its connections
 * (SSL_new from several threads on one SSL_CTX is safe in OpenSSL >= 1.1). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "redis_priv.h"

static int tls_fail(redis_store *s, const char *what, const char *path)
{
    char why[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, why, sizeof why);
    ERR_clear_error();
    return acache_error_set(ACACHE_EINVALID, "redis TLS %s: %s%s%s%s", s->where, what,
                            path ? path : "", why[0] ? ": " : "", why);
}

int acache__redis_tls_init(redis_store *s)
{
    if (!s->tls)
        return ACACHE_OK;
    if ((s->cert != NULL) != (s->key != NULL))
        return acache_error_set(ACACHE_EINVALID,
                                "invalid store URI: cert= and key= go together");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return tls_fail(s, "cannot create a context", NULL);
    s->tls_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Partial writes keep the out-buffer logic simple; a moving buffer is
     * fine because a retried write always passes the unwritten rest. */
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (s->cacert ? SSL_CTX_load_verify_locations(ctx, s->cacert, NULL) != 1
                  : SSL_CTX_set_default_verify_paths(ctx) != 1)
        return tls_fail(s, "cannot load CA certificates ",
                        s->cacert ? s->cacert : "(system)");
    if (!s->cert)
        SSL_CTX_set_client_cert_cb(ctx, acache__redis_client_cert_cb);
    if (s->cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1)
            return tls_fail(s, "cannot load the client certificate ", s->cert);
        if (SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1)
            return tls_fail(s, "cannot load the client key ", s->key);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return tls_fail(s, "client key does not match the certificate ", s->cert);
    }
    if (s->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        static atomic_int warned;
        if (!atomic_exchange(&warned, 1))
            fprintf(
                stderr,
                "libaethercache: warning: rediss:// with verify=no (%s): the server's "
                "certificate is not checked, the connection can be intercepted\n",
                s->where);
    }
    return ACACHE_OK;
}

void acache__redis_tls_free(redis_store *s)
{
    SSL_CTX_free(s->tls_ctx);
    s->tls_ctx = NULL;
}
