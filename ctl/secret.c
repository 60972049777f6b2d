/* SPDX-License-Identifier: MIT */
/* agentbrokerctl secret install NAME FILE: put a module's secret where the packaged unit's
 * credentials come from. The file goes to the credential store under the name the policy,
 * the unit and `agentbrokerd --credentials-dir` all use (agentbroker.NAME), and a drop-in
 * for agentbroker.service loads it (LoadCredential=). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macros.h"
#include "common/name.h"
#include "ctl/secret.h"
#include "common/secmem.h"

/* Format a message into err and return e (a negative errno). */
static int AB_PRINTF(4, 5) fail(char *err, size_t size, int e, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
        return e;
}

/* Read fd to its end into buf (at most max bytes). Returns the length, -EFBIG when there
 * is more, or -errno. */
static ssize_t
read_all(int fd, unsigned char *buf, size_t max)
{
        size_t got = 0;

        for (;;) {
                ssize_t k = read(fd, buf + got, max + 1 - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return (ssize_t)got;
                got += (size_t)k;
                if (got > max)
                        return -EFBIG;
        }
}

/* Write len bytes to path through a temporary file in the same directory (mode mode,
 * fsync'ed, renamed; with exclusive, an existing path is not replaced: -EEXIST). Returns 0
 * or -errno. */
static int
write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, bool exclusive)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        size_t done = 0;
        int r;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0)
                goto fail;
        while (done < len) {
                ssize_t k = write(fd, (const char *)data + done, len - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        goto fail;
                done += (size_t)k;
        }
        if (fsync(fd) < 0)
                goto fail;
        if (exclusive) {
                /* link() fails when path exists: never replace a key by accident. */
                if (link(tmp, path) < 0)
                        goto fail;
                (void)unlink(tmp);
        } else if (rename(tmp, path) < 0)
                goto fail;
        return 0;
fail:
        r = -errno;
        (void)unlink(tmp);
        return r;
}

int
ab_secret_install(const struct ab_secret_install *s, FILE *out, char *err, size_t size)
{
        _cleanup_free_ char *path = NULL, *dropin = NULL, *conf = NULL;
        _cleanup_close_ int fd = -1;
        unsigned char *buf;
        ssize_t len;
        int r;

        if (!ab_name_valid(s->name, AB_SECRET_NAME_MAX, 0))
                return fail(err, size, -EINVAL, "invalid secret name '%s': 1 to %d of A-Z a-z 0-9 _ -",
                            s->name, AB_SECRET_NAME_MAX);
        if (asprintf(&path, "%s/agentbroker.%s", s->credstore, s->name) < 0)
                return -ENOMEM;
        if (access(path, F_OK) == 0)
                return fail(err, size, -EEXIST, "%s exists already: remove it first to replace the secret",
                            path);

        fd = strcmp(s->file, "-") == 0 ? dup(STDIN_FILENO) : open(s->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return fail(err, size, -errno, "cannot open %s: %s", s->file, strerror(errno));
        buf = malloc(AB_SECRET_INSTALL_MAX + 1);
        if (!buf)
                return -ENOMEM;
        len = read_all(fd, buf, AB_SECRET_INSTALL_MAX);
        if (len == -EFBIG)
                r = fail(err, size, -EFBIG, "%s is larger than %d bytes (the broker's limit)", s->file,
                         AB_SECRET_INSTALL_MAX);
        else if (len < 0)
                r = fail(err, size, (int)len, "cannot read %s: %s", s->file, strerror((int)-len));
        else if (len == 0)
                r = fail(err, size, -EINVAL, "%s is empty", s->file);
        else if (mkdir(s->credstore, 0700) < 0 && errno != EEXIST)
                r = fail(err, size, -errno, "cannot create %s: %s", s->credstore, strerror(errno));
        else {
                r = write_file_atomic(path, buf, (size_t)len, 0600, true);
                if (r < 0)
                        r = fail(err, size, r, "cannot write %s: %s", path, strerror(-r));
        }
        ab_freezero(buf, AB_SECRET_INSTALL_MAX + 1);
        if (r < 0)
                return r;
        fprintf(out, "installed %s (mode 0600)\n", path);

        if (s->dropin_dir) {
                if (asprintf(&dropin, "%s/agentbroker-secret-%s.conf", s->dropin_dir, s->name) < 0 ||
                    asprintf(&conf,
                             "# Written by agentbrokerctl secret install %s: passes the credential store's\n"
                             "# agentbroker.%s to the broker as the credential agentbroker.%s.\n"
                             "[Service]\nLoadCredential=agentbroker.%s:agentbroker.%s\n",
                             s->name, s->name, s->name, s->name, s->name) < 0)
                        return -ENOMEM;
                if (mkdir(s->dropin_dir, 0755) < 0 && errno != EEXIST)
                        return fail(err, size, -errno, "cannot create %s: %s", s->dropin_dir,
                                    strerror(errno));
                r = write_file_atomic(dropin, conf, strlen(conf), 0644, false);
                if (r < 0)
                        return fail(err, size, r, "cannot write %s: %s", dropin, strerror(-r));
                fprintf(out, "wrote %s\n", dropin);
        }
        fprintf(out,
                "Name it in the policy (e.g. a drop-in in /etc/agentbroker/policy.d/), with its type and\n"
                "the tools that may use it:\n"
                "  secrets:\n"
                "    %s: { credential: agentbroker.%s, type: bytes }\n"
                "then %s\n",
                s->name, s->name,
                s->dropin_dir ? "systemctl daemon-reload && systemctl restart agentbroker (credentials are\n"
                                "passed when the service starts)"
                              : "restart agentbrokerd (agentbrokerd --credentials-dir with this store).");
        return 0;
}
