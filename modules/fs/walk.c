/* SPDX-License-Identifier: MIT */
/*
 * fs module: a depth-first walk below a directory, entries in name order (bytewise), that a
 * cursor resumes. Directories are entered with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
 * relative to their parent, so a walk never follows a symlink and never leaves the directory
 * it started from (which fs_open() resolved beneath its root). fs.grep, fs.tree and fs.search
 * use it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macros.h"
#include "fs-internal.h"

void
fs_names_free(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* Walk the directory dfd (closed here) at depth, whose path relative to the base is
 * w->rel[0..rel_len). cursor (n_cursor components) names the entry to resume at: entries
 * before it are skipped, directories on its path are entered without being visited again.
 * Returns 0 or a negative errno. */
static int
walk_dir(struct fs_walk *w, int dfd, unsigned depth, size_t rel_len, char **cursor, size_t n_cursor)
{
        _cleanup_close_ int fd = dfd;
        char **names = NULL;
        size_t n = 0;
        int r = fs_read_names(fd, &names, &n, &w->read);

        if (r < 0) {
                if (r == -ENOMEM)
                        return r;
                w->not_searched++; /* unreadable, or too many entries */
                return 0;
        }
        for (size_t i = 0; i < n && !w->stop; i++) {
                const char *name = names[i];
                int c = n_cursor ? strcmp(name, cursor[0]) : 1;
                size_t nl = strlen(name), l = rel_len;
                char **sub_cursor = NULL;
                size_t n_sub = 0;
                struct stat st;
                bool descend = true;

                if (c < 0)
                        continue;
                if (l + 1 + nl >= sizeof(w->rel)) {
                        w->not_searched++;
                        continue;
                }
                if (l)
                        w->rel[l++] = '/';
                memcpy(w->rel + l, name, nl + 1);
                if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone since the directory was read */

                if (c == 0 && (n_cursor > 1 || w->resume_after)) {
                        /* a directory on the cursor's path, or the cursor's entry with
                         * resume_after: visited by an earlier page */
                        if (n_cursor > 1)
                                sub_cursor = cursor + 1, n_sub = n_cursor - 1;
                } else {
                        w->depth = depth;
                        r = w->visit(w, fd, name, &st);
                        if (r < 0)
                                break;
                        if (r == 0) {
                                w->stop = true;
                                break;
                        }
                        descend = r == 1;
                        if (++w->visited % FS_CANCEL_EVERY == 0 && abm_call_cancelled(w->call)) {
                                r = -ECANCELED;
                                break;
                        }
                }
                r = 0;
                if (!descend || !S_ISDIR(st.st_mode))
                        continue;
                if (depth + 1 >= w->max_depth) {
                        w->not_searched++;
                        continue;
                }
                int sub = fs_openat2(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, RESOLVE_NO_SYMLINKS);
                if (sub < 0) {
                        w->not_searched++;
                        continue;
                }
                r = walk_dir(w, sub, depth + 1, l + nl, sub_cursor, n_sub);
                if (r < 0)
                        break;
        }
        fs_names_free(names, n);
        if (r < 0) {
                w->stop = true;
                return r;
        }
        if (!w->stop && w->leave) {
                w->rel[rel_len] = '\0';
                return w->leave(w, depth);
        }
        return 0;
}

int
fs_walk(struct fs_walk *w, int dfd, char **cursor, size_t n_cursor)
{
        w->rel[0] = '\0';
        if (w->max_depth == 0 || w->max_depth > FS_WALK_DEPTH_MAX)
                w->max_depth = FS_WALK_DEPTH_MAX;
        return walk_dir(w, dfd, 0, 0, cursor, n_cursor);
}
