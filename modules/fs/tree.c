/* SPDX-License-Identifier: MIT */
/*
 * fs.tree {path, depth?, max_files?, cursor?}: a compact indented overview of a directory.
 * Entries down to `depth` levels are shown in name order, two spaces of indentation per
 * level; each directory shown carries the counts of everything below it (directories,
 * files, other entries, bytes of its files), so that the folders at the cut still say what
 * they hold. At most `max_files` file names are shown per directory, the rest summed up in
 * one line. The text stays within the result size; when it does not fit, the last line is
 * a cursor to continue with. Symlinks are shown (name@), never followed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macros.h"
#include "fs-internal.h"

#define FS_TREE_DEPTH_MAX 8
#define FS_TREE_DEPTH_DEFAULT 2
#define FS_TREE_FILES_DEFAULT 10
#define FS_TREE_FILES_MAX 1000
#define FS_TREE_SCAN_MAX 500000 /* entries counted per call, for all the sums */
#define FS_TREE_RESERVE 256     /* result bytes kept for the summary lines and the note */

struct tree_counts {
        uint64_t dirs, files, other, bytes;
        bool partial; /* not everything below was counted */
};

struct tree {
        struct fs_walk w;
        struct ab_buf out;
        size_t cost, budget;
        unsigned depth;
        uint64_t max_files;
        uint64_t counted; /* entries counted so far (FS_TREE_SCAN_MAX) */
        bool scan_cut;    /* FS_TREE_SCAN_MAX was reached */
        size_t shown;     /* entry lines in this call's text */
        uint64_t shown_files[FS_TREE_DEPTH_MAX + 1];
        uint64_t more_files[FS_TREE_DEPTH_MAX + 1], more_bytes[FS_TREE_DEPTH_MAX + 1];
};

/* Add what lies below the directory dfd (closed here) to c, down to FS_WALK_DEPTH_MAX
 * levels and within the call's count budget. Returns 0 or -ENOMEM/-ECANCELED. */
static int
tree_count(struct tree *t, int dfd, unsigned level, struct tree_counts *c)
{
        DIR *d = fdopendir(dfd);
        int r = 0;

        if (!d) {
                close(dfd);
                c->partial = true;
                return 0;
        }
        for (;;) {
                struct dirent *de = readdir(d);
                struct stat st;
                if (!de)
                        break;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++t->counted > FS_TREE_SCAN_MAX) {
                        t->scan_cut = true;
                        c->partial = true;
                        break;
                }
                if (t->counted % FS_CANCEL_EVERY == 0 && abm_call_cancelled(t->w.call)) {
                        r = -ECANCELED;
                        break;
                }
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISREG(st.st_mode)) {
                        c->files++;
                        c->bytes += (uint64_t)st.st_size;
                } else if (S_ISDIR(st.st_mode)) {
                        c->dirs++;
                        if (level + 1 >= FS_WALK_DEPTH_MAX) {
                                c->partial = true;
                                continue;
                        }
                        int sub = fs_openat2(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                             RESOLVE_NO_SYMLINKS);
                        if (sub < 0) {
                                c->partial = true;
                                continue;
                        }
                        r = tree_count(t, sub, level + 1, c);
                        if (r < 0)
                                break;
                } else {
                        c->other++;
                }
        }
        closedir(d);
        return r;
}

/* The counts as text: "2 dirs, 310 files, 1.2 MiB" ("at least" when partial). */
static void
tree_put_counts(struct ab_buf *b, const struct tree_counts *c)
{
        char h[32];

        if (c->partial)
                ab_buf_put(b, "at least ", 9);
        if (c->dirs)
                ab_buf_printf(b, "%" PRIu64 " dir%s, ", c->dirs, c->dirs == 1 ? "" : "s");
        ab_buf_printf(b, "%" PRIu64 " file%s", c->files, c->files == 1 ? "" : "s");
        if (c->other)
                ab_buf_printf(b, ", %" PRIu64 " other", c->other);
        ab_buf_printf(b, ", %s", fs_human_bytes(c->bytes, h, sizeof(h)));
}

/* Append one line (indent levels, then what fmt gives): false when it would not fit the
 * budget less reserve (nothing is added then). */
static bool
tree_line(struct tree *t, size_t reserve, unsigned indent, const char *name, const char *mark,
          const struct tree_counts *c, const char *tail)
{
        size_t before = t->out.len;

        for (unsigned i = 0; i < indent; i++)
                ab_buf_put(&t->out, "  ", 2);
        if (name) {
                bool ignored = fs_buf_put_escaped(&t->out, name, strlen(name));
                (void)ignored;
        }
        ab_buf_put(&t->out, mark, strlen(mark));
        if (c) {
                ab_buf_put(&t->out, "  ", 2);
                tree_put_counts(&t->out, c);
        }
        if (tail)
                ab_buf_put(&t->out, tail, strlen(tail));
        ab_buf_put(&t->out, "\n", 1);
        if (t->out.err)
                return false;
        size_t cost = fs_text_cost(t->out.p + before, t->out.len - before);
        if (t->cost + cost + reserve > t->budget) {
                t->out.len = before;
                t->out.p[before] = '\0';
                return false;
        }
        t->cost += cost;
        return true;
}

/* Walk visitor: show one entry (see the top of the file). */
static int
tree_visit(struct fs_walk *w, int dirfd, const char *name, const struct stat *st)
{
        struct tree *t = w->userdata;
        unsigned d = w->depth;
        char h[48];

        if (S_ISDIR(st->st_mode)) {
                struct tree_counts c = { 0 };
                int sub = fs_openat2(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, RESOLVE_NO_SYMLINKS);
                if (sub < 0)
                        c.partial = true;
                else if (tree_count(t, sub, d + 1, &c) < 0)
                        return -ECANCELED;
                if (!tree_line(t, FS_TREE_RESERVE, d, name, "/", &c, NULL))
                        return t->shown ? 0 : -ENOSPC; /* not even one line: no progress */
                t->shown++;
                if (d + 1 < FS_TREE_DEPTH_MAX + 1) {
                        t->shown_files[d + 1] = t->more_files[d + 1] = t->more_bytes[d + 1] = 0;
                }
                return d + 1 < t->depth ? 1 : 2;
        }
        if (S_ISREG(st->st_mode) && t->shown_files[d] >= t->max_files) {
                t->more_files[d]++;
                t->more_bytes[d] += (uint64_t)st->st_size;
                return 2;
        }
        const char *mark = S_ISLNK(st->st_mode) ? "@" : S_ISREG(st->st_mode) ? "" : " [other]";
        char tail[64] = "";
        if (S_ISREG(st->st_mode))
                snprintf(tail, sizeof(tail), "  %s", fs_human_bytes((uint64_t)st->st_size, h, sizeof(h)));
        if (!tree_line(t, FS_TREE_RESERVE, d, name, mark, NULL, tail))
                return t->shown ? 0 : -ENOSPC;
        t->shown++;
        if (S_ISREG(st->st_mode))
                t->shown_files[d]++;
        return 2;
}

/* Walk leaver: the summary of the files of a directory that were not named. */
static int
tree_leave(struct fs_walk *w, unsigned depth)
{
        struct tree *t = w->userdata;
        char line[96], h[32];

        if (depth <= FS_TREE_DEPTH_MAX && t->more_files[depth] > 0) {
                snprintf(line, sizeof(line), "... %" PRIu64 " more file%s, %s", t->more_files[depth],
                         t->more_files[depth] == 1 ? "" : "s",
                         fs_human_bytes(t->more_bytes[depth], h, sizeof(h)));
                if (!tree_line(t, 0, depth, NULL, "", NULL, line))
                        return -E2BIG;
                t->more_files[depth] = t->more_bytes[depth] = 0;
        }
        return 0;
}

const char fs_tree_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,\"description\":"
        "\"A directory under the allowed roots (\\\".\\\" is the first root).\"},"
        "\"depth\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":8,"
        "\"description\":\"Levels shown (default 2); folders at the cut show the counts below them.\"},"
        "\"max_files\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":1000,"
        "\"description\":\"File names shown per folder (default 10); the others are summed up in one line.\"},"
        "\"cursor\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8192,\"description\":"
        "\"The cursor the previous fs.tree result ended with, to continue.\"}},"
        "\"required\":[\"path\"],\"additionalProperties\":false}";

int
fs_tree(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        const char *path = NULL;
        int64_t depth, max_files;
        _cleanup_free_ unsigned char *cursor = NULL;
        size_t cursor_len;
        char *comps[FS_WALK_DEPTH_MAX];
        int n_comps = 0, r;
        _cleanup_free_ struct tree *t = calloc(1, sizeof(*t));

        if (!t)
                return abm_error_set(err, -ENOMEM, "out of memory");
        if ((r = fs_arg_path(call, "path", &path, err)) < 0 ||
            (r = fs_arg_int(call, "depth", 1, FS_TREE_DEPTH_MAX, FS_TREE_DEPTH_DEFAULT, &depth, err)) < 0 ||
            (r = fs_arg_int(call, "max_files", 0, FS_TREE_FILES_MAX, FS_TREE_FILES_DEFAULT, &max_files,
                            err)) < 0 ||
            (r = fs_arg_cursor(call, "fs.tree", &cursor, &cursor_len, err)) < 0)
                return r;
        if (cursor && (n_comps = fs_cursor_split((char *)cursor, comps, (size_t)depth)) < 0)
                return abm_error_set(err, -EINVAL,
                                     "invalid cursor: pass the next_cursor of the previous fs.tree "
                                     "result unchanged");
        fs_quote(path, q, sizeof(q));
        int fd = fs_open(path, O_RDONLY | O_DIRECTORY, err);
        if (fd < 0)
                return fd == -ENOTDIR
                               ? abm_error_set(err, fd, "'%s' is not a directory: fs.tree shows a directory",
                                               q)
                               : fd;

        t->w = (struct fs_walk){ .visit = tree_visit,
                                 .leave = tree_leave,
                                 .userdata = t,
                                 .call = call,
                                 .max_depth = (unsigned)depth };
        t->budget = fs_budget(call);
        t->depth = (unsigned)depth;
        t->max_files = (uint64_t)max_files;

        /* the header: the whole directory's counts */
        struct tree_counts all = { 0 };
        int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) {
                r = -errno;
                close(fd);
                return abm_error_set(err, r, "cannot read '%s': %s", q, strerror(-r));
        }
        r = tree_count(t, dup, 0, &all);
        if (r >= 0 && lseek(fd, 0, SEEK_SET) < 0) /* the copy shares the directory's offset */
                r = -errno;
        if (r < 0) {
                close(fd);
                return r == -ECANCELED ? abm_error_set(err, r, "cancelled")
                                       : abm_error_set(err, r, "cannot read '%s': %s", q, strerror(-r));
        }
        char head[64] = "";
        if (cursor)
                snprintf(head, sizeof(head), " (continued)");
        size_t pl = strlen(path);
        while (pl > 1 && path[pl - 1] == '/')
                pl--;
        _cleanup_free_ char *shown = strndup(path, pl);
        if (!shown) {
                close(fd);
                return abm_error_set(err, -ENOMEM, "out of memory");
        }
        if (!tree_line(t, 0, 0, shown, strcmp(shown, "/") == 0 ? "" : "/", &all, head)) {
                close(fd);
                return abm_error_set(err, -E2BIG,
                                     "fs.tree's first line does not fit in this tool's result size "
                                     "(max_result_bytes %zu): raise it in the policy",
                                     abm_call_max_result_bytes(call));
        }
        r = fs_walk(&t->w, fd, cursor ? comps : NULL, (size_t)(n_comps > 0 ? n_comps : 0));
        if (r == -E2BIG) {
                r = 0; /* a summary line did not fit: the walk stopped there */
        } else if (r == -ENOSPC) {
                ab_buf_free(&t->out);
                return abm_error_set(err, -E2BIG,
                                     "an entry of '%s' does not fit in this tool's result size "
                                     "(max_result_bytes %zu): raise it in the policy",
                                     q, abm_call_max_result_bytes(call));
        } else if (r < 0) {
                ab_buf_free(&t->out);
                if (r == -ECANCELED)
                        return abm_error_set(err, r, "cancelled");
                return abm_error_set(err, r, "cannot walk '%s': %s", q, strerror(-r));
        }
        if (t->w.stop && t->w.rel[0]) {
                _cleanup_free_ char *next = NULL;
                if (ab_base64url_encode(t->w.rel, strlen(t->w.rel), &next) < 0) {
                        ab_buf_free(&t->out);
                        return abm_error_set(err, -ENOMEM, "out of memory");
                }
                ab_buf_printf(&t->out, "[more: call fs.tree again with cursor=%s]\n", next);
        }
        if (t->w.not_searched || t->scan_cut)
                ab_buf_printf(&t->out,
                              "[%zu directories not entered (unreadable, deeper than %d levels or too "
                              "large)%s]\n",
                              t->w.not_searched, FS_WALK_DEPTH_MAX,
                              t->scan_cut
                                      ? "; counting stopped after 500000 entries: counts marked \"at least\""
                                      : "");
        if (t->out.err) {
                ab_buf_free(&t->out);
                return abm_error_set(err, -ENOMEM, "out of memory");
        }
        r = abm_call_text(call, t->out.p, t->out.len);
        ab_buf_free(&t->out);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
        return 0;
}
