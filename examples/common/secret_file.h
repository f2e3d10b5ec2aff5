/* Reading secret files (admin tokens, Fernet keys) for the example programs.
 *
 * Policy, shared by acache and acache-admin:
 * - the file is read with open/read straight into a sodium_malloc'd buffer (no
 *   stdio buffer keeps a copy) and every copy is wiped;
 * - trailing CR, LF, spaces and tabs are stripped (neither a bearer token nor a
 *   Fernet key can end in whitespace); an empty file, a file over the size limit,
 *   or a NUL, CR or LF inside the secret is refused;
 * - a regular file that group or other can read gets a warning on stderr (the docs
 *   ask for mode 0600); one that group or other can WRITE is refused, since another
 *   user could have replaced the secret: fix it with `chmod go-w` (no override).
 *   Pipes and other non-regular files (`--token-file <(...)`, /dev/stdin) are not
 *   checked: their mode says nothing about who can read the bytes. */
#ifndef ACACHE_EXAMPLES_SECRET_FILE_H
#define ACACHE_EXAMPLES_SECRET_FILE_H

#include <stddef.h>

#define SECRET_FILE_MAX 4096

/* Read the secret in `path`. `prog` prefixes the messages, `what` names the secret
 * in them ("admin token file"). Needs sodium_init() first. On success returns a
 * NUL-terminated buffer to release with secret_free() and stores its length in
 * *len (if not NULL); on failure prints why on stderr and returns NULL. */
char *secret_file_read(const char *prog, const char *what, const char *path, size_t max,
                       size_t *len);

/* Copy a secret from memory (an environment variable) into a wiped-on-free buffer. */
char *secret_dup(const char *s);

/* Wipe and free a buffer from secret_file_read() or secret_dup(); NULL is a no-op. */
void secret_free(char *s);

#endif
