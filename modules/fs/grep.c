/* SPDX-License-Identifier: MIT */
/*
 * fs.grep {path, pattern, fixed?, ignore_case?, before?, after?, max_matches?, count_only?,
 * cursor?}: the lines of a file, or of the files below a directory, that match a regular
 * expression (common/regex.h: PCRE2, bounded) or a fixed string. The answer holds only
 * matched lines (and the context lines asked for), each with its line number, grouped by
 * file under a header with the file's match count:
 *
 *     logs/app.log (2 matches)
 *     1041:2026-03-01T10:00:00Z ERROR payment failed
 *     1042-  at charge()                       (a context line: '-' after the number)
 *     --                                       (between groups that are not adjacent)
 *     2210:2026-03-01T11:00:00Z ERROR payment failed
 *     [2 matches in 1 of 1 files; 5.0 MiB searched]
 *
 * A call is bounded: at most max_matches matches, FS_GREP_SCAN_MAX bytes read, FS_GREP_FILES_MAX
 * files opened and FS_GREP_TIME_MS of time, and the text stays within the result size. When
 * a bound stops it, the last line gives a cursor that resumes at the exact line. Binary files
 * (a NUL or invalid UTF-8 in their first 8 KiB) are skipped and counted; bytes that are not
 * UTF-8 in a text file are shown as \xNN. A line longer than FS_GREP_LINE_MAX is searched in
 * its first FS_GREP_LINE_MAX bytes; a shown line is cut to a window of FS_GREP_SHOW_MAX bytes
 * around the match. Below a directory the walk is fs.search's: name order, depth first, at
 * most 16 levels, symlinks never followed (a symlink given as the path is, inside its root).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/macros.h"
#include "common/regex.h"
#include "fs-internal.h"

#define FS_GREP_PATTERN_MAX 1024
#define FS_GREP_MATCHES_DEFAULT 100
#define FS_GREP_MATCHES_MAX 10000
#define FS_GREP_CONTEXT_MAX 20
#define FS_GREP_SCAN_MAX (256ULL * 1024 * 1024) /* bytes read per call */
#define FS_GREP_FILES_MAX 10000                 /* files opened per call */
#define FS_GREP_TIME_MS 5000                    /* time per call */
#define FS_GREP_CHUNK (1024 * 1024)
#define FS_GREP_LINE_MAX (64 * 1024) /* bytes of a line searched */
#define FS_GREP_SHOW_MAX 400         /* bytes of a line shown */
#define FS_GREP_RESERVE 400          /* result bytes kept for the footer */

struct grep_ctx_line {
        uint64_t no;
        char *text; /* as shown (escaped, cut), NUL-terminated */
};

struct grep {
        struct fs_walk w;
        struct abm_call *call;
        struct ab_regex *re;
        bool count_only;
        unsigned before, after;
        uint64_t max_matches, matches;
        uint64_t files, files_matched, binary, unreadable, long_lines, regex_failed;
        uint64_t scanned, t0;
        struct ab_buf out;  /* the whole answer so far */
        struct ab_buf file; /* the lines of the file being searched */
        size_t budget, cost;
        /* where to resume (from the cursor) */
        const char *resume_rel;
        uint64_t resume_line;
        /* where this call stopped */
        bool stopped;
        const char *stop_why;
        char *stop_rel;
        uint64_t stop_line;
        const char *base;           /* the path argument */
        bool single;                /* the path is a file */
        char *buf;                  /* FS_GREP_CHUNK bytes */
        struct grep_ctx_line *ring; /* `before` lines */
};

/* Append line `no` (s[0..n), mark ':' for a match at [ms, me), '-' for context) to the
 * file's lines, cut to a window around the match. */
static void
grep_put_line(struct ab_buf *b, uint64_t no, char mark, const char *s, size_t n, size_t ms)
{
        size_t from = 0, len = n;

        if (n > FS_GREP_SHOW_MAX) {
                from = ms > FS_GREP_SHOW_MAX / 4 ? ms - FS_GREP_SHOW_MAX / 4 : 0;
                from = ab_utf8_floor(s, n, from);
                len = ab_utf8_floor(s + from, n - from, FS_GREP_SHOW_MAX);
        }
        ab_buf_printf(b, "%" PRIu64 "%c%s", no, mark, from > 0 ? "..." : "");
        fs_buf_put_escaped(b, s + from, len);
        ab_buf_put(b, from + len < n ? "...\n" : "\n", from + len < n ? 4 : 1);
}

/* The file's header and lines into the answer, if they fit (with reserve left). */
static bool
grep_flush_file(struct grep *g, const char *shown, uint64_t count, bool partial)
{
        size_t before = g->out.len;

        fs_buf_put_escaped(&g->out, shown, strlen(shown));
        ab_buf_printf(&g->out, g->count_only ? ": %" PRIu64 "%s\n" : " (%" PRIu64 " match%s%s)\n", count,
                      g->count_only ? (partial ? " so far" : "")
                      : count == 1  ? ""
                                    : "es",
                      g->count_only ? ""
                      : partial     ? " so far"
                                    : "");
        if (g->file.len)
                ab_buf_put(&g->out, g->file.p, g->file.len);
        g->file.len = 0;
        if (g->out.err)
                return false;
        size_t c = fs_text_cost(g->out.p + before, g->out.len - before);
        if (g->cost + c + FS_GREP_RESERVE > g->budget) {
                g->out.len = before;
                g->out.p[before] = '\0';
                return false;
        }
        g->cost += c;
        return true;
}

/* Whether the answer has room for the file's lines so far plus its header. */
static bool
grep_fits(struct grep *g, const char *shown)
{
        size_t c = g->file.len ? fs_text_cost(g->file.p, g->file.len) : 0;

        return g->cost + c + strlen(shown) + 32 + FS_GREP_RESERVE <= g->budget;
}

/* Stop the call at line `line` of the file rel (the cursor resumes there). */
static int
grep_stop(struct grep *g, const char *rel, uint64_t line, const char *why)
{
        g->stopped = true;
        g->stop_why = why;
        g->stop_line = line;
        free(g->stop_rel);
        g->stop_rel = strdup(rel);
        return g->stop_rel ? 0 : -ENOMEM;
}

static void
grep_ring_clear(struct grep *g)
{
        for (unsigned i = 0; i < g->before; i++) {
                free(g->ring[i].text);
                g->ring[i] = (struct grep_ctx_line){ 0 };
        }
}

/* Search the open text file fd from line `from` (1-based); shown is its path as shown, rel
 * its path relative to the base ("" for a single file). Returns 0 (g->stopped when a bound
 * stopped the call inside it) or a negative errno. */
static int
grep_fd(struct grep *g, int fd, const char *shown, const char *rel, uint64_t from)
{
        uint64_t off = 0, line = 1, count = 0, last_shown = 0, after_left = 0, resume = 0;
        size_t have = 0;
        bool in_long = false;
        const char *why = NULL;

        g->file.len = 0;
        grep_ring_clear(g);
        for (;;) {
                if (g->scanned >= FS_GREP_SCAN_MAX || ab_now_ms() - g->t0 > FS_GREP_TIME_MS) {
                        why = g->scanned >= FS_GREP_SCAN_MAX ? "the bytes one call reads"
                                                             : "the time one call takes";
                        resume = line > from ? line : from;
                        goto stop;
                }
                if (abm_call_cancelled(g->call))
                        return -ECANCELED;
                ssize_t got = fs_pread_all(fd, g->buf + have, FS_GREP_CHUNK - have, (off_t)(off + have));
                if (got < 0)
                        return (int)got;
                g->scanned += (uint64_t)got;
                bool eof = got == 0;
                size_t len = have + (size_t)got, p = 0;
                while (p < len) {
                        const char *nl = memchr(g->buf + p, '\n', len - p);
                        if (!nl && !eof && !(p == 0 && len == FS_GREP_CHUNK))
                                break;
                        size_t n = nl ? (size_t)(nl - (g->buf + p)) : len - p;
                        const char *s = g->buf + p;
                        p += n + (nl ? 1 : 0);
                        if (in_long) { /* the rest of a line longer than the buffer */
                                in_long = !nl;
                                continue;
                        }
                        if (!nl && !eof)
                                in_long = true;
                        uint64_t no = line++;
                        if (n > FS_GREP_LINE_MAX) {
                                n = FS_GREP_LINE_MAX;
                                g->long_lines++;
                        }
                        size_t sn = n > 0 && s[n - 1] == '\r' ? n - 1 : n;
                        if (no < from)
                                continue;
                        size_t ms = 0, me = 0;
                        int m = ab_regex_search(g->re, s, sn, &ms, &me);
                        if (m < 0) {
                                if (m == -ENOMEM)
                                        return m;
                                g->regex_failed++;
                                m = 0;
                        }
                        if (m == 0) {
                                if (g->count_only)
                                        continue;
                                if (after_left > 0) {
                                        size_t mark = g->file.len;
                                        after_left--;
                                        grep_put_line(&g->file, no, '-', s, sn, 0);
                                        if (!g->file.err && !grep_fits(g, shown)) {
                                                g->file.len = mark; /* no room for more context */
                                                after_left = 0;
                                        } else {
                                                last_shown = no;
                                        }
                                } else if (g->before) {
                                        /* keep it as a possible before-context line */
                                        struct grep_ctx_line *c = &g->ring[no % g->before];
                                        struct ab_buf t = { 0 };
                                        free(c->text);
                                        grep_put_line(&t, no, '-', s, sn, 0);
                                        c->no = no;
                                        c->text = t.p;
                                        if (t.err)
                                                return -ENOMEM;
                                }
                                continue;
                        }
                        if (g->matches == g->max_matches) {
                                why = "max_matches";
                                resume = no;
                                goto stop;
                        }
                        if (!g->count_only) {
                                size_t mark = g->file.len;
                                uint64_t first = no > g->before ? no - g->before : 1;
                                if ((g->before || g->after) && last_shown && first > last_shown + 1)
                                        ab_buf_put(&g->file, "--\n", 3);
                                for (uint64_t k = first > last_shown + 1 ? first : last_shown + 1; k < no;
                                     k++) {
                                        struct grep_ctx_line *c = &g->ring[k % g->before];
                                        if (c->no == k && c->text)
                                                ab_buf_put(&g->file, c->text, strlen(c->text));
                                }
                                grep_put_line(&g->file, no, ':', s, sn, ms);
                                if (g->file.err)
                                        return -ENOMEM;
                                if (!grep_fits(g, shown)) {
                                        g->file.len = mark;
                                        if (g->matches == 0)
                                                return -E2BIG; /* not even one line: no progress */
                                        why = "the result size";
                                        resume = no;
                                        goto stop;
                                }
                                last_shown = no;
                                after_left = g->after;
                        }
                        g->matches++;
                        count++;
                }
                off += p;
                memmove(g->buf, g->buf + p, len - p);
                have = len - p;
                if (eof)
                        break;
        }
        if (count == 0)
                return 0;
        if (grep_flush_file(g, shown, count, false)) {
                g->files_matched++;
                return 0;
        }
        g->matches -= count; /* no room for this file: the next call searches it again */
        if (g->matches == 0)
                return -E2BIG;
        return grep_stop(g, rel, from, "the result size");
stop:
        /* a bound stopped the call: show this file's matches so far, resume at line `resume` */
        if (count > 0) {
                if (grep_flush_file(g, shown, count, true)) {
                        g->files_matched++;
                } else {
                        g->matches -= count;
                        if (g->matches == 0)
                                return -E2BIG;
                        resume = from;
                        why = "the result size";
                }
        }
        return grep_stop(g, rel, resume, why);
}

/* Search the open regular file fd (binary files are skipped and counted), counting it
 * against FS_GREP_FILES_MAX. Returns 0 or a negative errno. */
static int
grep_file(struct grep *g, int fd, const char *shown, const char *rel, uint64_t from)
{
        unsigned char sniff[FS_SNIFF_BYTES];

        if (g->files >= FS_GREP_FILES_MAX)
                return grep_stop(g, rel, from, "the files one call opens");
        g->files++;
        ssize_t ns = fs_pread_all(fd, sniff, sizeof(sniff), 0);
        if (ns < 0) {
                g->unreadable++;
                return 0;
        }
        if (fs_is_binary(sniff, (size_t)ns, (size_t)ns == sizeof(sniff))) {
                g->binary++;
                return 0;
        }
        return grep_fd(g, fd, shown, rel, from);
}

/* Walk visitor: search each regular file (symlinks are not followed). */
static int
grep_visit(struct fs_walk *w, int dirfd, const char *name, const struct stat *st)
{
        struct grep *g = w->userdata;
        _cleanup_free_ char *shown = NULL;
        struct stat st2;
        uint64_t from = 1;

        if (S_ISDIR(st->st_mode))
                return 1;
        if (!S_ISREG(st->st_mode))
                return 2;
        if (g->resume_rel && strcmp(w->rel, g->resume_rel) == 0)
                from = g->resume_line;
        if (g->files >= FS_GREP_FILES_MAX || g->scanned >= FS_GREP_SCAN_MAX ||
            ab_now_ms() - g->t0 > FS_GREP_TIME_MS) {
                int r = grep_stop(g, w->rel, from,
                                  g->files >= FS_GREP_FILES_MAX    ? "the files one call opens"
                                  : g->scanned >= FS_GREP_SCAN_MAX ? "the bytes one call reads"
                                                                   : "the time one call takes");
                return r < 0 ? r : 0;
        }
        size_t bl = strlen(g->base);
        while (bl > 0 && g->base[bl - 1] == '/')
                bl--; /* "dir/" and "/" are shown as "dir/x" and "/x" */
        if (asprintf(&shown, "%.*s/%s", (int)bl, g->base, w->rel) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd =
                fs_openat2(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, RESOLVE_NO_SYMLINKS);
        if (fd < 0 || fstat(fd, &st2) < 0 || st2.st_dev != st->st_dev || st2.st_ino != st->st_ino) {
                g->unreadable++;
                return 2;
        }
        int r = grep_file(g, fd, shown, w->rel, from);
        if (r < 0)
                return r;
        return g->stopped ? 0 : 2;
}

const char fs_grep_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,\"description\":"
        "\"A file, or a directory whose files are searched (recursively), under the allowed roots.\"},"
        "\"pattern\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024,\"description\":"
        "\"A regular expression (ERE-like: . [] * + ? {m,n} | () ^ $, and \\\\d \\\\w \\\\s), unanchored, "
        "matched against each line; or a plain string with fixed: true.\"},"
        "\"fixed\":{\"type\":\"boolean\",\"description\":\"pattern is a plain string (default false).\"},"
        "\"ignore_case\":{\"type\":\"boolean\",\"description\":\"Match regardless of case (default false).\"},"
        "\"before\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":20,"
        "\"description\":\"Lines of context shown before each match (default 0).\"},"
        "\"after\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":20,"
        "\"description\":\"Lines of context shown after each match (default 0).\"},"
        "\"max_matches\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10000,"
        "\"description\":\"Stop after this many matching lines (default 100); the cursor continues.\"},"
        "\"count_only\":{\"type\":\"boolean\",\"description\":\"Only the number of matching lines per file.\"},"
        "\"cursor\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8192,\"description\":"
        "\"The cursor the previous fs.grep result ended with, to continue where it stopped.\"}},"
        "\"required\":[\"path\",\"pattern\"],\"additionalProperties\":false}";

/* Parse a cursor "<line> <relative path>" (the path empty for a single file). Returns 0 or
 * -EINVAL. */
static int
grep_cursor_parse(char *c, uint64_t *ret_line, char **ret_rel)
{
        char *end;

        if (c[0] < '1' || c[0] > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long line = strtoull(c, &end, 10);
        if (errno || *end != ' ')
                return -EINVAL;
        *ret_line = line;
        *ret_rel = end + 1;
        return 0;
}

/* Append fs.grep's footer to the answer: the counts, what was skipped and why, and the cursor
 * to go on with when the search stopped early. Returns 0 or -ENOMEM. */
static int
grep_footer(struct grep *g)
{
        char h[32];

        if (g->matches == 0 && !g->stopped)
                ab_buf_put(&g->out, "no match\n", 9);
        ab_buf_printf(&g->out, "[%" PRIu64 " match%s in %" PRIu64 " of %" PRIu64 " file%s; %s read",
                      g->matches, g->matches == 1 ? "" : "es", g->files_matched, g->files,
                      g->files == 1 ? "" : "s", fs_human_bytes(g->scanned, h, sizeof(h)));
        if (g->binary)
                ab_buf_printf(&g->out, "; %" PRIu64 " binary file%s skipped", g->binary,
                              g->binary == 1 ? "" : "s");
        if (g->unreadable)
                ab_buf_printf(&g->out, "; %" PRIu64 " unreadable", g->unreadable);
        if (g->w.not_searched)
                ab_buf_printf(&g->out, "; %zu director%s not searched (unreadable, too deep or too large)",
                              g->w.not_searched, g->w.not_searched == 1 ? "y" : "ies");
        if (g->long_lines)
                ab_buf_printf(&g->out,
                              "; %" PRIu64 " line%s longer than %d KiB: only %s first %d KiB searched",
                              g->long_lines, g->long_lines == 1 ? "" : "s", FS_GREP_LINE_MAX / 1024,
                              g->long_lines == 1 ? "its" : "their", FS_GREP_LINE_MAX / 1024);
        if (g->regex_failed)
                ab_buf_printf(&g->out,
                              "; %" PRIu64 " line%s not decided (the pattern costs too much on them: %s)",
                              g->regex_failed, g->regex_failed == 1 ? "" : "s", ab_regex_strerror(-ETIME));
        ab_buf_put(&g->out, "]\n", 2);
        if (g->stopped) {
                _cleanup_free_ char *raw = NULL, *next = NULL;
                if (asprintf(&raw, "%" PRIu64 " %s", g->stop_line, g->stop_rel) < 0 ||
                    ab_base64url_encode(raw, strlen(raw), &next) < 0) {
                        return -ENOMEM;
                }
                ab_buf_printf(&g->out, "[stopped by %s: call fs.grep again with cursor=%s]\n", g->stop_why,
                              next);
        }
        return 0;
}

/* After the search (r: its result): the error it ended with, or the footer and the text as
 * the call's result. Returns 0 or a negative errno with err set. */
static int
grep_finish(struct grep *g, int r, const char *q, struct abm_error *err)
{
        if (r == -ECANCELED)
                return abm_error_set(err, r, "cancelled");
        if (r == -E2BIG)
                return abm_error_set(err, r,
                                     "a matching line does not fit in this tool's result size "
                                     "(max_result_bytes %zu): raise it in the policy",
                                     abm_call_max_result_bytes(g->call));
        if (r < 0)
                return abm_error_set(err, r, "searching '%s' failed: %s", q, strerror(-r));
        if (grep_footer(g) < 0 || g->out.err)
                return abm_error_set(err, -ENOMEM, "out of memory");
        r = abm_call_text(g->call, g->out.p, g->out.len);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
        return 0;
}

int
fs_grep(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8], msg[256];
        const char *path = NULL, *pattern = NULL;
        bool fixed, icase;
        int64_t before, after, max_matches;
        _cleanup_free_ unsigned char *cursor = NULL;
        size_t cursor_len;
        char *comps[FS_WALK_DEPTH_MAX], *resume_rel = NULL;
        _cleanup_free_ char *resume_whole = NULL;
        int n_comps = 0, r;
        struct stat st;
        _cleanup_free_ struct grep *g = calloc(1, sizeof(*g));

        if (!g)
                return abm_error_set(err, -ENOMEM, "out of memory");
        if ((r = fs_arg_path(call, "path", &path, err)) < 0)
                return r;
        if (abm_json_get_string(abm_call_args(call), "pattern", &pattern) < 0 || !*pattern)
                return abm_error_set(err, -EINVAL,
                                     "'pattern' is required: a regular expression (or a fixed string "
                                     "with fixed: true) matched against each line");
        if ((r = fs_arg_bool(call, "fixed", false, &fixed, err)) < 0 ||
            (r = fs_arg_bool(call, "ignore_case", false, &icase, err)) < 0 ||
            (r = fs_arg_bool(call, "count_only", false, &g->count_only, err)) < 0 ||
            (r = fs_arg_int(call, "before", 0, FS_GREP_CONTEXT_MAX, 0, &before, err)) < 0 ||
            (r = fs_arg_int(call, "after", 0, FS_GREP_CONTEXT_MAX, 0, &after, err)) < 0 ||
            (r = fs_arg_int(call, "max_matches", 1, FS_GREP_MATCHES_MAX, FS_GREP_MATCHES_DEFAULT,
                            &max_matches, err)) < 0 ||
            (r = fs_arg_cursor(call, "fs.grep", &cursor, &cursor_len, err)) < 0)
                return r;
        if (cursor && grep_cursor_parse((char *)cursor, &g->resume_line, &resume_rel) < 0)
                return abm_error_set(err, -EINVAL,
                                     "invalid cursor: pass the next_cursor of the previous fs.grep "
                                     "result unchanged");
        size_t plen = strlen(pattern);
        if (plen > FS_GREP_PATTERN_MAX)
                return abm_error_set(err, -EINVAL, "pattern is too long (%zu bytes; at most %d)", plen,
                                     FS_GREP_PATTERN_MAX);
        r = ab_regex_compile(pattern, plen, (fixed ? AB_REGEX_LITERAL : 0) | (icase ? AB_REGEX_ICASE : 0),
                             &g->re, msg, sizeof(msg));
        if (r == -ENOMEM)
                return abm_error_set(err, r, "out of memory");
        if (r < 0)
                return abm_error_set(err, -EINVAL,
                                     "pattern is not a valid regular expression: %s (pass fixed: true "
                                     "to search for the string as it is)",
                                     msg);

        g->call = call;
        g->before = (unsigned)before;
        g->after = (unsigned)after;
        g->max_matches = (uint64_t)max_matches;
        g->budget = fs_budget(call);
        g->t0 = ab_now_ms();
        g->base = path;
        g->buf = malloc(FS_GREP_CHUNK);
        g->ring = before ? calloc((size_t)before, sizeof(*g->ring)) : NULL;
        if (!g->buf || (before && !g->ring)) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        fs_quote(path, q, sizeof(q));

        /* what the path is, from an O_PATH descriptor: a device is never opened */
        int pfd = fs_open(path, O_PATH, err);
        if (pfd < 0) {
                r = pfd;
                goto out;
        }
        r = fstat(pfd, &st) < 0 ? -errno : 0;
        close(pfd);
        if (r < 0) {
                r = abm_error_set(err, r, "cannot stat '%s': %s", q, strerror(-r));
                goto out;
        }
        if (S_ISREG(st.st_mode)) {
                if (cursor && *resume_rel) {
                        r = abm_error_set(err, -EINVAL,
                                          "invalid cursor: pass the next_cursor of the previous "
                                          "fs.grep result unchanged");
                        goto out;
                }
                int fd = fs_open_regular(path, &st, err);
                if (fd < 0) {
                        r = fd;
                        goto out;
                }
                r = grep_file(g, fd, path, "", cursor ? g->resume_line : 1);
                close(fd);
        } else if (S_ISDIR(st.st_mode)) {
                if (cursor) {
                        /* fs_cursor_split cuts resume_rel into components: keep it whole to compare */
                        if (*resume_rel && !(resume_whole = strdup(resume_rel))) {
                                r = abm_error_set(err, -ENOMEM, "out of memory");
                                goto out;
                        }
                        if (!*resume_rel ||
                            (n_comps = fs_cursor_split(resume_rel, comps, AB_ELEMENTSOF(comps))) < 0) {
                                r = abm_error_set(err, -EINVAL,
                                                  "invalid cursor: pass the next_cursor of the "
                                                  "previous fs.grep result unchanged");
                                goto out;
                        }
                        g->resume_rel = resume_whole;
                }
                int fd = fs_open(path, O_RDONLY | O_DIRECTORY, err);
                if (fd < 0) {
                        r = fd;
                        goto out;
                }
                g->w = (struct fs_walk){ .visit = grep_visit, .userdata = g, .call = call };
                r = fs_walk(&g->w, fd, cursor ? comps : NULL, (size_t)(n_comps > 0 ? n_comps : 0));
                g->resume_rel = NULL;
        } else {
                r = abm_error_set(err, -EINVAL, "'%s' is not a regular file or a directory (it is a %s)", q,
                                  fs_type_name(st.st_mode));
                goto out;
        }
        r = grep_finish(g, r, q, err);
out:
        grep_ring_clear(g);
        free(g->ring);
        free(g->buf);
        free(g->stop_rel);
        ab_buf_free(&g->out);
        ab_buf_free(&g->file);
        ab_regex_free(g->re);
        return r;
}
