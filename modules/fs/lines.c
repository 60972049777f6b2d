/* SPDX-License-Identifier: MIT */
/*
 * fs.read_file by lines: {path, start_line?, max_lines?} gives whole lines from start_line
 * (1-based), as many as max_lines and the result size allow; {path, tail_lines} gives the
 * last lines of the file. The text is the lines themselves; a note after it names the lines
 * shown and the line to continue from. Bytes that are not UTF-8 are shown as \xNN. A line
 * longer than the whole result is shown cut, with the byte offset of its rest.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/macros.h"
#include "fs-internal.h"

#define FS_LINES_MAX 1000000                     /* max_lines */
#define FS_TAIL_MAX 100000                       /* tail_lines */
#define FS_LINES_SCAN_MAX (256ULL * 1024 * 1024) /* bytes read to find a line or count lines */
#define FS_LINES_CHUNK (256 * 1024)

struct lines_out {
        struct ab_buf text;
        size_t cost;  /* of text in a JSON string */
        bool escaped; /* some bytes were shown as \xNN */
};

/* The bytes of text a call may hold: the page budget, less room for the note. */
static size_t
lines_budget(const struct abm_call *call)
{
        size_t b = fs_budget(call);

        return b > FS_SLACK ? b - FS_SLACK / 2 : b / 2;
}

/* Append s[0..n) when its cost still fits budget. Returns true when it was added. */
static bool
lines_add(struct lines_out *o, const char *s, size_t n, size_t budget)
{
        size_t before = o->text.len;
        bool esc = fs_buf_put_escaped(&o->text, s, n);
        size_t c = o->text.err ? 0 : fs_text_cost(o->text.p + before, o->text.len - before);

        if (o->text.err || o->cost + c > budget) {
                o->text.len = before;
                if (o->text.p)
                        o->text.p[before] = '\0';
                return false;
        }
        o->cost += c;
        o->escaped |= esc;
        return true;
}

/* Find the byte offset where line `line` (1-based) starts, reading from the start of fd.
 * Returns 0 with *ret_off set, -ENXIO when the file has fewer lines (*ret_off = the number
 * of lines), -EFBIG past FS_LINES_SCAN_MAX, -ECANCELED or -errno. */
static int
lines_seek(struct abm_call *call, int fd, uint64_t line, uint64_t *ret_off, char *buf)
{
        uint64_t at = 1, off = 0;
        bool last_nl = true;

        while (at < line) {
                if (off >= FS_LINES_SCAN_MAX)
                        return -EFBIG;
                ssize_t got = fs_pread_all(fd, buf, FS_LINES_CHUNK, (off_t)off);
                if (got < 0)
                        return (int)got;
                if (got == 0) {
                        *ret_off = at - (last_nl ? 1 : 0);
                        return -ENXIO;
                }
                const char *p = buf, *end = buf + got;
                while (at < line && p < end) {
                        const char *nl = memchr(p, '\n', (size_t)(end - p));
                        if (!nl) {
                                p = end;
                                break;
                        }
                        at++;
                        p = nl + 1;
                }
                last_nl = buf[(p - buf) - 1] == '\n';
                off += (uint64_t)(p - buf);
                if (abm_call_cancelled(call))
                        return -ECANCELED;
        }
        *ret_off = off;
        return 0;
}

/* Count the newlines in fd's bytes [0, end). Returns the count or -errno. */
static int64_t
lines_count(int fd, uint64_t end, char *buf)
{
        int64_t n = 0;

        for (uint64_t off = 0; off < end;) {
                size_t want = end - off < FS_LINES_CHUNK ? (size_t)(end - off) : FS_LINES_CHUNK;
                ssize_t got = fs_pread_all(fd, buf, want, (off_t)off);
                if (got <= 0)
                        return got < 0 ? got : n;
                for (const char *p = buf; (p = memchr(p, '\n', (size_t)(buf + got - p))); p++)
                        n++;
                off += (uint64_t)got;
        }
        return n;
}

/* Show a line longer than the result: its first bytes that fit, and where the rest is. */
static int
lines_huge(struct abm_call *call, struct lines_out *o, const char *buf, size_t got, uint64_t line,
           uint64_t off, size_t budget, const char *q, struct abm_error *err)
{
        size_t k = got < budget ? got : budget;

        for (;;) {
                k = ab_utf8_floor(buf, got, k);
                if (k == 0 || lines_add(o, buf, k, budget))
                        break;
                k = k * 3 / 4;
        }
        int r = abm_call_text(call, o->text.p ? o->text.p : "", o->text.len);
        if (r >= 0)
                r = abm_call_textf(
                        call,
                        "\n[line %" PRIu64 " of '%s' is longer than this result allows: its first %zu "
                        "bytes are shown. The rest: fs.read_file offset=%" PRIu64 "; the next line: "
                        "start_line=%" PRIu64 "]",
                        line, q, k, off + k, line + 1);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
        return 0;
}

/* start_line/max_lines: whole lines from start_line. */
static int
lines_head(struct abm_call *call, int fd, const char *q, uint64_t size, uint64_t start, uint64_t max,
           struct abm_error *err)
{
        size_t budget = lines_budget(call), cap = budget + 8;
        _cleanup_free_ char *buf = malloc(cap > FS_LINES_CHUNK ? cap : FS_LINES_CHUNK);
        struct lines_out o = { 0 };
        uint64_t off = 0, line = start, n = 0;
        bool eof = false, full = false;
        int r;

        if (!buf)
                return abm_error_set(err, -ENOMEM, "out of memory");
        r = lines_seek(call, fd, start, &off, buf);
        if (r == -ENXIO)
                return abm_error_set(err, -EINVAL,
                                     "start_line %" PRIu64 " is past the end of '%s' (it has %" PRIu64
                                     " lines)",
                                     start, q, off);
        if (r == -EFBIG)
                return abm_error_set(err, -EFBIG,
                                     "line %" PRIu64 " is more than %llu MiB into '%s': find it with "
                                     "fs.grep, or read from a byte offset",
                                     start, FS_LINES_SCAN_MAX >> 20, q);
        if (r == -ECANCELED)
                return abm_error_set(err, r, "cancelled");
        if (r < 0)
                return abm_error_set(err, r, "cannot read '%s': %s", q, strerror(-r));

        uint64_t first_off = off;
        while (n < max && !eof && !full) {
                ssize_t got = fs_pread_all(fd, buf, cap, (off_t)off);
                if (got < 0) {
                        r = abm_error_set(err, (int)got, "cannot read '%s': %s", q, strerror((int)-got));
                        goto out;
                }
                if (got == 0)
                        break;
                size_t p = 0;
                while (n < max && p < (size_t)got) {
                        const char *nl = memchr(buf + p, '\n', (size_t)got - p);
                        if (!nl && (size_t)got == cap)
                                break; /* the line goes on past the buffer */
                        size_t len = nl ? (size_t)(nl - (buf + p)) + 1 : (size_t)got - p;
                        if (!lines_add(&o, buf + p, len, budget)) {
                                full = true;
                                break;
                        }
                        n++, line++, p += len, off += len;
                        if (!nl)
                                eof = true;
                }
                if (p == 0 && n == 0 && !eof) {
                        r = lines_huge(call, &o, buf, (size_t)got, line, off, budget, q, err);
                        goto out;
                }
                if (p == 0)
                        break;
                if (abm_call_cancelled(call)) {
                        r = abm_error_set(err, -ECANCELED, "cancelled");
                        goto out;
                }
        }
        if (n == 0) {
                r = abm_call_textf(call, "[end of file: '%s' has %" PRIu64 " lines]", q, start - 1);
                goto note_error;
        }
        if (o.text.err) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        r = abm_call_text(call, o.text.p, o.text.len);
        if (r < 0)
                goto note_error;
        if (off < size)
                r = abm_call_textf(call,
                                   "[lines %" PRIu64 "-%" PRIu64 " of '%s' (bytes %" PRIu64 "-%" PRIu64
                                   " of %" PRIu64 ")%s; more follow: start_line=%" PRIu64 "]",
                                   start, line - 1, q, first_off, off, size,
                                   o.escaped ? "; bytes that are not UTF-8 are shown as \\xNN" : "", line);
        else
                r = abm_call_textf(call, "[lines %" PRIu64 "-%" PRIu64 " of '%s'%s: end of file]", start,
                                   line - 1, q,
                                   o.escaped ? "; bytes that are not UTF-8 are shown as \\xNN" : "");
note_error:
        if (r < 0)
                r = abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
out:
        ab_buf_free(&o.text);
        return r;
}

/* Where the last `want` lines of fd start, looking back at most limit bytes: 0 with
 * *ret_start set (and *ret_all false when fewer lines than wanted start within the limit),
 * or -errno. */
static int
lines_tail_start(int fd, uint64_t size, uint64_t want, uint64_t limit, char *buf, uint64_t *ret_start,
                 bool *ret_all)
{
        uint64_t pos = size, found = 0, best = size;

        while (pos > 0 && size - pos < limit) {
                size_t n = pos < FS_LINES_CHUNK ? (size_t)pos : FS_LINES_CHUNK;
                ssize_t got = fs_pread_all(fd, buf, n, (off_t)(pos - n));
                if (got != (ssize_t)n)
                        return got < 0 ? (int)got : -EIO;
                for (size_t i = n; i > 0; i--) {
                        uint64_t at = pos - n + i - 1;
                        /* the file's last newline ends the last line: it starts none */
                        if (buf[i - 1] != '\n' || at == size - 1)
                                continue;
                        if (size - (at + 1) > limit)
                                goto cut;
                        best = at + 1;
                        if (++found == want) {
                                *ret_start = best;
                                *ret_all = true;
                                return 0;
                        }
                }
                pos -= n;
        }
        if (pos == 0 && size <= limit) {
                *ret_start = 0; /* the whole file: fewer lines than wanted */
                *ret_all = true;
                return 0;
        }
cut:
        *ret_start = best; /* size when not even the last line fits */
        *ret_all = false;
        return 0;
}

/* tail_lines: the last lines, as many as fit. */
static int
lines_tail(struct abm_call *call, int fd, const char *q, uint64_t size, uint64_t want, struct abm_error *err)
{
        size_t budget = lines_budget(call);
        _cleanup_free_ char *buf = malloc(FS_LINES_CHUNK);
        _cleanup_free_ char *region = NULL;
        struct lines_out o = { 0 };
        uint64_t start = 0;
        bool all = false;
        int r;

        if (!buf)
                return abm_error_set(err, -ENOMEM, "out of memory");
        r = lines_tail_start(fd, size, want, budget, buf, &start, &all);
        if (r < 0)
                return abm_error_set(err, r, "cannot read '%s': %s", q, strerror(-r));
        if (!all && start == size) {
                /* a line longer than the budget ends the file */
                size_t n = budget;
                region = malloc(n);
                if (!region)
                        return abm_error_set(err, -ENOMEM, "out of memory");
                ssize_t got = fs_pread_all(fd, region, n, (off_t)(size - n));
                if (got != (ssize_t)n)
                        return abm_error_set(err, got < 0 ? (int)got : -EIO, "cannot read '%s'", q);
                size_t lead = 0;
                while (lead < n && lead < 4 && ((unsigned char)region[lead] & 0xc0) == 0x80)
                        lead++;
                r = abm_call_textf(call,
                                   "[the last line of '%s' is longer than this result allows: its last %zu "
                                   "bytes follow, from offset %" PRIu64 "]\n",
                                   q, n - lead, size - n + lead);
                if (r >= 0 && lines_add(&o, region + lead, n - lead, budget - 128))
                        r = abm_call_text(call, o.text.p, o.text.len);
                ab_buf_free(&o.text);
                if (r < 0)
                        return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
                return 0;
        }
        size_t n = (size_t)(size - start), skip = 0;
        region = malloc(n + 1);
        if (!region)
                return abm_error_set(err, -ENOMEM, "out of memory");
        ssize_t got = fs_pread_all(fd, region, n, (off_t)start);
        if (got != (ssize_t)n)
                return abm_error_set(err, got < 0 ? (int)got : -EIO, "cannot read '%s'", q);
        /* drop leading lines until the escaped text fits */
        while (!lines_add(&o, region + skip, n - skip, budget)) {
                const char *nl = memchr(region + skip, '\n', n - skip);
                if (o.text.err) {
                        ab_buf_free(&o.text);
                        return abm_error_set(err, -ENOMEM, "out of memory");
                }
                if (!nl || (size_t)(nl - region) + 1 >= n) {
                        ab_buf_free(&o.text);
                        return abm_error_set(err, -E2BIG,
                                             "the last line of '%s' does not fit in this result once "
                                             "escaped: read it with fs.read_file offset=%" PRIu64,
                                             q, start + skip);
                }
                skip = (size_t)(nl - region) + 1;
                all = false;
        }
        start += skip;
        uint64_t shown = 0;
        for (size_t i = skip; i < n; i++)
                shown += region[i] == '\n';
        if (n > skip && region[n - 1] != '\n')
                shown++;
        r = o.text.len ? abm_call_text(call, o.text.p, o.text.len) : 0;
        if (r >= 0) {
                char nums[96] = "";
                if (size <= FS_LINES_SCAN_MAX) {
                        int64_t before = lines_count(fd, start, buf);
                        if (before >= 0)
                                snprintf(nums, sizeof(nums), " (lines %" PRId64 "-%" PRId64 ")", before + 1,
                                         before + (int64_t)shown);
                }
                r = abm_call_textf(
                        call, "[the last %" PRIu64 " lines of '%s'%s, from byte %" PRIu64 " to the end%s%s]",
                        shown, q, nums, start, !all && shown < want ? "; no more fit in this result" : "",
                        o.escaped ? "; bytes that are not UTF-8 are shown as \\xNN" : "");
        }
        ab_buf_free(&o.text);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
        return 0;
}

int
fs_read_lines(struct abm_call *call, const char *path, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        const struct abm_json *args = abm_call_args(call);
        int64_t start, max, tail, v;
        struct stat st;
        int r;

        if (abm_json_get_int(args, "offset", &v) != -ENOENT ||
            abm_json_get_int(args, "length", &v) != -ENOENT)
                return abm_error_set(err, -EINVAL,
                                     "offset and length read bytes; start_line, max_lines and tail_lines "
                                     "read lines: give one kind, not both");
        if ((r = fs_arg_int(call, "start_line", 1, INT64_MAX, 0, &start, err)) < 0 ||
            (r = fs_arg_int(call, "max_lines", 1, FS_LINES_MAX, FS_LINES_MAX, &max, err)) < 0 ||
            (r = fs_arg_int(call, "tail_lines", 1, FS_TAIL_MAX, 0, &tail, err)) < 0)
                return r;
        if (tail > 0 && (start > 0 || abm_json_get_int(args, "max_lines", &v) != -ENOENT))
                return abm_error_set(err, -EINVAL,
                                     "tail_lines reads the end of the file: it does not go with "
                                     "start_line or max_lines");
        _cleanup_close_ int fd = -1;
        r = fs_open_text(call, path, q, sizeof(q), &st, &fd, err);
        if (r <= 0)
                return r;
        if (tail > 0 && st.st_size == 0)
                return abm_call_textf(call, "[end of file: '%s' is empty]", q) < 0
                               ? abm_error_set(err, -ENOMEM, "out of memory")
                               : 0;
        if (tail > 0)
                return lines_tail(call, fd, q, (uint64_t)st.st_size, (uint64_t)tail, err);
        return lines_head(call, fd, q, (uint64_t)st.st_size, start > 0 ? (uint64_t)start : 1, (uint64_t)max,
                          err);
}
