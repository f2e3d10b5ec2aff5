/* See secret_file.h for the policy. */
#include "secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static int is_space(char ch)
{
    return ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t';
}

char *secret_file_read(const char *prog, const char *what, const char *path, size_t max,
                       size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open %s %s: %s\n", prog, what, path, strerror(errno));
        return NULL;
    }
    /* fstat the open descriptor: the mode checked is that of the bytes read. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "%s: %s %s: %s\n", prog, what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        unsigned mode = (unsigned)st.st_mode & 07777;
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
            fprintf(stderr,
                    "%s: refusing %s %s: group or other can write it (mode %04o); "
                    "run chmod 600 %s\n",
                    prog, what, path, mode, path);
            close(fd);
            return NULL;
        }
        if (st.st_mode & (S_IRGRP | S_IROTH))
            fprintf(stderr,
                    "%s: warning: %s %s is readable by group or other (mode %04o); "
                    "run chmod 600 %s\n",
                    prog, what, path, mode, path);
    }
    /* One spare byte tells "exactly max" from "too long", one more for the NUL. */
    char *buf = sodium_malloc(max + 2);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", prog);
        close(fd);
        return NULL;
    }
    size_t n = 0;
    while (n < max + 1) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "%s: reading %s %s: %s\n", prog, what, path, strerror(errno));
            close(fd);
            sodium_free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max) {
        fprintf(stderr, "%s: %s %s is larger than %zu bytes\n", prog, what, path, max);
        sodium_free(buf);
        return NULL;
    }
    const char *why = NULL;
    while (n && is_space(buf[n - 1]))
        n--;
    if (n == 0)
        why = "is empty";
    if (!why && (memchr(buf, '\0', n) || memchr(buf, '\n', n) || memchr(buf, '\r', n)))
        why = "must hold one line without NUL bytes";
    if (why) {
        fprintf(stderr, "%s: %s %s %s\n", prog, what, path, why);
        sodium_free(buf); /* sodium_free wipes the whole allocation */
        return NULL;
    }
    sodium_memzero(buf + n, max + 2 - n); /* the stripped tail, and the NUL */
    if (len)
        *len = n;
    return buf;
}

char *secret_dup(const char *s)
{
    size_t n = strlen(s);
    char *buf = sodium_malloc(n + 1);
    if (buf)
        memcpy(buf, s, n + 1);
    return buf;
}

void secret_free(char *s)
{
    if (s)
        sodium_free(s); /* wipes before freeing */
}
