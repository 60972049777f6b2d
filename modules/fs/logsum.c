/* SPDX-License-Identifier: MIT */
/*
 * fs.summarize_log {path, max_templates?}: what a log file holds, in at most 4 KiB whatever
 * its size: its lines per level, its first and last timestamps, and its most frequent
 * message templates (the line after its timestamp, with numbers masked as <n> and hex ids
 * as <id>), each with its count, its level and one example line. The most frequent template
 * of every level present comes first (most severe level first), then the most frequent
 * others. The scan is bounded in bytes and time; the summary says what was not scanned.
 *
 * A level is an upper-case word among TRACE DEBUG INFO NOTICE WARN WARNING ERROR ERR CRIT
 * CRITICAL FATAL ALERT EMERG PANIC in the first 160 bytes of a line, or the value of
 * level=, "level":" or severity= in any case. A timestamp is an ISO 8601 date and time
 * (2026-03-01T12:00:00.123Z, 2026-03-01 12:00:00,5 +02:00) or a syslog one (Mar  1
 * 12:00:00) at the start of a line, possibly after '['.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/hash.h"
#include "common/macros.h"
#include "fs-internal.h"

#define FS_LOG_OUT_MAX 4096                     /* bytes of the summary */
#define FS_LOG_SCAN_MAX (1024ULL * 1024 * 1024) /* bytes scanned per call */
#define FS_LOG_TIME_MAX_MS 10000                /* time spent scanning per call */
#define FS_LOG_CHUNK (1024 * 1024)
#define FS_LOG_LINE_LOOK 4096     /* bytes of a line looked at */
#define FS_LOG_TEMPLATE_MAX 160   /* bytes of a template */
#define FS_LOG_EXAMPLE_MAX 160    /* bytes of an example shown */
#define FS_LOG_TEMPLATES_MAX 4096 /* distinct templates kept */
#define FS_LOG_TEMPLATES_DEFAULT 12
#define FS_LOG_TEMPLATES_SHOWN_MAX 30
#define FS_LOG_LEVEL_LOOK 160 /* bytes of a line searched for a level */
#define FS_LOG_TS_MAX 40

/* Levels, most severe first; the last is "no level". */
static const char *const log_levels[] = {
        "EMERG", "ALERT",  "PANIC", "FATAL", "CRIT",  "ERROR",
        "WARN",  "NOTICE", "INFO",  "DEBUG", "TRACE", "(none)",
};
#define LOG_NONE (AB_ELEMENTSOF(log_levels) - 1)

static const struct {
        const char *word;
        unsigned level;
} log_words[] = {
        { "EMERG", 0 },   { "EMERGENCY", 0 }, { "ALERT", 1 }, { "PANIC", 2 }, { "FATAL", 3 },
        { "CRIT", 4 },    { "CRITICAL", 4 },  { "ERROR", 5 }, { "ERR", 5 },   { "WARN", 6 },
        { "WARNING", 6 }, { "NOTICE", 7 },    { "INFO", 8 },  { "DEBUG", 9 }, { "TRACE", 10 },
};

struct log_tpl {
        char *key; /* NULL: a free slot */
        char *example;
        size_t example_len;
        uint64_t count;
        unsigned level;
        bool shown;
};

struct logsum {
        struct log_tpl *slots; /* FS_LOG_TEMPLATES_MAX * 2, open addressing */
        size_t n_tpl;
        uint64_t lines, untemplated, long_lines;
        uint64_t per_level[AB_ELEMENTSOF(log_levels)];
        char first_ts[FS_LOG_TS_MAX + 1], last_ts[FS_LOG_TS_MAX + 1];
};

#define LOG_SLOTS (2 * FS_LOG_TEMPLATES_MAX)

static bool
is_digit(char c)
{
        return c >= '0' && c <= '9';
}
static bool
is_alpha(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static bool
is_hex(char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Whether s[0..n) matches the digit pattern pat ('9' a digit, other bytes themselves). */
static bool
log_shape(const char *s, size_t n, const char *pat)
{
        size_t k = strlen(pat);

        if (n < k)
                return false;
        for (size_t i = 0; i < k; i++)
                if (pat[i] == '9' ? !is_digit(s[i]) : s[i] != pat[i])
                        return false;
        return true;
}

/* The length of a timestamp at s[0..n), or 0. */
static size_t
log_timestamp(const char *s, size_t n)
{
        static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        size_t i;

        if (log_shape(s, n, "9999-99-99") && n >= 19 && (s[10] == 'T' || s[10] == ' ') &&
            log_shape(s + 11, n - 11, "99:99:99")) {
                i = 19;
                if (i < n && (s[i] == '.' || s[i] == ',') && i + 1 < n && is_digit(s[i + 1]))
                        for (i++; i < n && is_digit(s[i]); i++)
                                ;
                if (i < n && s[i] == 'Z') {
                        i++;
                } else if (i < n && (s[i] == '+' || s[i] == '-') && log_shape(s + i + 1, n - i - 1, "99")) {
                        i += 3;
                        if (i < n && s[i] == ':')
                                i++;
                        if (log_shape(s + i, n - i, "99"))
                                i += 2;
                } else if (i + 1 < n && s[i] == ' ' && (s[i + 1] == '+' || s[i + 1] == '-') &&
                           log_shape(s + i + 2, n - i - 2, "99:99")) {
                        i += 7;
                }
                return i;
        }
        if (n >= 15 && s[3] == ' ' && (s[4] == ' ' || is_digit(s[4])) && is_digit(s[5]) && s[6] == ' ' &&
            log_shape(s + 7, n - 7, "99:99:99"))
                for (size_t m = 0; m < 36; m += 3)
                        if (memcmp(s, months + m, 3) == 0)
                                return 15;
        return 0;
}

/* The level of line s[0..n) (an index into log_levels). */
static unsigned
log_level(const char *s, size_t n)
{
        size_t look = n < FS_LOG_LEVEL_LOOK ? n : FS_LOG_LEVEL_LOOK;
        static const char *const keys[] = { "level=", "\"level\":\"", "severity=", "\"severity\":\"",
                                            "lvl=" };

        for (size_t k = 0; k < AB_ELEMENTSOF(keys); k++) {
                size_t kl = strlen(keys[k]);
                for (size_t i = 0; i + kl < look; i++) {
                        if (strncasecmp(s + i, keys[k], kl) != 0)
                                continue;
                        size_t j = i + kl, w = j;
                        while (w < n && is_alpha(s[w]))
                                w++;
                        for (size_t m = 0; m < AB_ELEMENTSOF(log_words); m++)
                                if (w - j == strlen(log_words[m].word) &&
                                    strncasecmp(s + j, log_words[m].word, w - j) == 0)
                                        return log_words[m].level;
                }
        }
        for (size_t i = 0; i < look;) {
                if (!(s[i] >= 'A' && s[i] <= 'Z')) {
                        i++;
                        continue;
                }
                size_t j = i;
                while (j < n && s[j] >= 'A' && s[j] <= 'Z')
                        j++;
                bool word = (i == 0 || !is_alpha(s[i - 1])) && (j == n || !is_alpha(s[j]));
                if (word)
                        for (size_t m = 0; m < AB_ELEMENTSOF(log_words); m++)
                                if (j - i == strlen(log_words[m].word) &&
                                    memcmp(s + i, log_words[m].word, j - i) == 0)
                                        return log_words[m].level;
                i = j;
        }
        return LOG_NONE;
}

/* The template of line s[0..n) into out (FS_LOG_TEMPLATE_MAX + 8 bytes): numbers as <n>,
 * hex ids (8 or more hex digits and dashes, with a digit) as <id>. Returns its length. */
static size_t
log_template(const char *s, size_t n, char *out)
{
        size_t o = 0;

        for (size_t i = 0; i < n && o < FS_LOG_TEMPLATE_MAX;) {
                char c = s[i];
                if (!(is_alpha(c) || is_digit(c))) {
                        out[o++] = (c == '\t' || c == '\r') ? ' ' : c;
                        i++;
                        continue;
                }
                size_t j = i;
                bool digit = false, hexish = true;
                while (j < n && (is_alpha(s[j]) || is_digit(s[j]) || s[j] == '-' || s[j] == '_')) {
                        digit |= is_digit(s[j]);
                        hexish &= is_hex(s[j]) || s[j] == '-';
                        j++;
                }
                if (digit && hexish && j - i >= 8) {
                        memcpy(out + o, "<id>", 4);
                        o += 4;
                } else {
                        for (size_t k = i; k < j && o < FS_LOG_TEMPLATE_MAX;) {
                                if (is_digit(s[k])) {
                                        while (k < j && is_digit(s[k]))
                                                k++;
                                        memcpy(out + o, "<n>", 3);
                                        o += 3;
                                } else {
                                        out[o++] = s[k++];
                                }
                        }
                }
                i = j;
        }
        while (o > 0 && out[o - 1] == ' ')
                o--;
        return o;
}

/* Count one line. Returns 0 or -ENOMEM. */
static int
log_line(struct logsum *L, const char *s, size_t n)
{
        char tpl[FS_LOG_TEMPLATE_MAX + 8];

        L->lines++;
        if (n > FS_LOG_LINE_LOOK) {
                L->long_lines++;
                n = FS_LOG_LINE_LOOK;
        }
        while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n'))
                n--;
        size_t skip = n > 0 && s[0] == '[' ? 1 : 0, ts = log_timestamp(s + skip, n - skip);
        if (ts > 0) {
                size_t keep = ts < FS_LOG_TS_MAX ? ts : FS_LOG_TS_MAX;
                if (!L->first_ts[0]) {
                        memcpy(L->first_ts, s + skip, keep);
                        L->first_ts[keep] = '\0';
                }
                memcpy(L->last_ts, s + skip, keep);
                L->last_ts[keep] = '\0';
        }
        unsigned level = log_level(s, n);
        L->per_level[level]++;
        size_t rest = skip + ts;
        if (skip && rest < n && ts && s[rest] == ']')
                rest++;
        while (rest < n && s[rest] == ' ')
                rest++;
        size_t tl = log_template(s + rest, n - rest, tpl);
        uint64_t h = ab_hash_bytes(tpl, tl) ^ level;
        for (size_t i = 0; i < LOG_SLOTS; i++) {
                struct log_tpl *t = &L->slots[(h + i) % LOG_SLOTS];
                if (t->key) {
                        if (t->level == level && strlen(t->key) == tl && memcmp(t->key, tpl, tl) == 0) {
                                t->count++;
                                return 0;
                        }
                        continue;
                }
                if (L->n_tpl == FS_LOG_TEMPLATES_MAX) {
                        L->untemplated++;
                        return 0;
                }
                t->key = strndup(tpl, tl);
                t->example_len = n < FS_LOG_EXAMPLE_MAX ? n : ab_utf8_floor(s, n, FS_LOG_EXAMPLE_MAX);
                t->example = t->key ? strndup(s, t->example_len) : NULL;
                if (!t->key || !t->example) {
                        free(t->key);
                        t->key = NULL;
                        return -ENOMEM;
                }
                t->example_len = strlen(t->example); /* a NUL in the line ends it */
                t->count = 1;
                t->level = level;
                L->n_tpl++;
                return 0;
        }
        L->untemplated++;
        return 0;
}

static int
tpl_cmp(const void *a, const void *b)
{
        const struct log_tpl *x = *(struct log_tpl *const *)a, *y = *(struct log_tpl *const *)b;

        if (x->count != y->count)
                return x->count > y->count ? -1 : 1;
        if (x->level != y->level)
                return x->level < y->level ? -1 : 1;
        return strcmp(x->key, y->key);
}

/* Scan the file fd (size bytes) into L. *ret_scanned: the bytes scanned; *ret_why: why the
 * scan stopped early, or NULL. Returns 0 or a negative errno. */
static int
log_scan(struct abm_call *call, int fd, uint64_t size, struct logsum *L, uint64_t *ret_scanned,
         const char **ret_why)
{
        _cleanup_free_ char *buf = malloc(FS_LOG_CHUNK);
        uint64_t off = 0, start = ab_now_ms();
        size_t have = 0;
        bool in_long = false; /* the line in progress was longer than the buffer: its head was counted */

        *ret_why = NULL;
        if (!buf)
                return -ENOMEM;
        while (off < size) {
                if (off >= FS_LOG_SCAN_MAX) {
                        *ret_why = "the scan stops after 1 GiB";
                        break;
                }
                if (ab_now_ms() - start > FS_LOG_TIME_MAX_MS) {
                        *ret_why = "the scan stops after 10 seconds";
                        break;
                }
                if (abm_call_cancelled(call))
                        return -ECANCELED;
                ssize_t got = fs_pread_all(fd, buf + have, FS_LOG_CHUNK - have, (off_t)(off + have));
                if (got < 0)
                        return (int)got;
                bool eof = got == 0 || off + have + (uint64_t)got >= size;
                size_t len = have + (size_t)got, p = 0;
                while (p < len) {
                        const char *nl = memchr(buf + p, '\n', len - p);
                        if (!nl && !eof)
                                break;
                        size_t n = nl ? (size_t)(nl - (buf + p)) : len - p;
                        if (!in_long) {
                                int r = log_line(L, buf + p, n);
                                if (r < 0)
                                        return r;
                        }
                        in_long = false;
                        p += n + (nl ? 1 : 0);
                }
                if (p == 0 && len == FS_LOG_CHUNK) {
                        /* a line longer than the buffer: count its head, skip to its end */
                        if (!in_long) {
                                int r = log_line(L, buf, FS_LOG_LINE_LOOK + 1);
                                if (r < 0)
                                        return r;
                        }
                        in_long = true;
                        p = len;
                }
                off += p;
                memmove(buf, buf + p, len - p);
                have = len - p;
                if (eof) {
                        off += have;
                        break;
                }
        }
        *ret_scanned = off < size ? off : size;
        return 0;
}

/* Append one template (count, level, template, example) to b if it fits limit. */
static bool
log_put_tpl(struct ab_buf *b, const struct log_tpl *t, size_t limit)
{
        size_t before = b->len;

        ab_buf_printf(b, "%" PRIu64 " ", t->count);
        fs_buf_put_escaped(b, t->key, strlen(t->key));
        ab_buf_put(b, "\n  e.g. ", 8);
        fs_buf_put_escaped(b, t->example, t->example_len);
        ab_buf_put(b, "\n", 1);
        if (b->err || fs_text_cost(b->p, b->len) > limit) {
                b->len = before;
                if (b->p)
                        b->p[before] = '\0';
                return false;
        }
        return true;
}

const char fs_summarize_log_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,\"description\":"
        "\"A log file under the allowed roots.\"},"
        "\"max_templates\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":30,"
        "\"description\":\"Message templates shown (default 12), within 4 KiB.\"}},"
        "\"required\":[\"path\"],\"additionalProperties\":false}";

int
fs_summarize_log(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8], h[32];
        const char *path = NULL, *why = NULL;
        int64_t max_tpl;
        struct stat st;
        struct logsum L = { 0 };
        struct log_tpl **sorted = NULL;
        struct ab_buf b = { 0 };
        uint64_t scanned = 0;
        int r;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0 ||
            (r = fs_arg_int(call, "max_templates", 1, FS_LOG_TEMPLATES_SHOWN_MAX, FS_LOG_TEMPLATES_DEFAULT,
                            &max_tpl, err)) < 0)
                return r;
        _cleanup_close_ int fd = -1;
        r = fs_open_text(call, path, q, sizeof(q), &st, &fd, err);
        if (r <= 0)
                return r;
        L.slots = calloc(LOG_SLOTS, sizeof(*L.slots));
        if (!L.slots)
                return abm_error_set(err, -ENOMEM, "out of memory");
        r = log_scan(call, fd, (uint64_t)st.st_size, &L, &scanned, &why);
        if (r < 0) {
                r = r == -ECANCELED ? abm_error_set(err, r, "cancelled")
                                    : abm_error_set(err, r, "cannot read '%s': %s", q, strerror(-r));
                goto out;
        }

        size_t limit = fs_budget(call) < FS_LOG_OUT_MAX ? fs_budget(call) : FS_LOG_OUT_MAX;
        ab_buf_printf(&b, "%s: %s, %" PRIu64 " lines", q, fs_human_bytes((uint64_t)st.st_size, h, sizeof(h)),
                      L.lines);
        if (why)
                ab_buf_printf(&b, " in the first %" PRIu64 " bytes (%s)", scanned, why);
        ab_buf_put(&b, "\nlevels:", 8);
        for (size_t i = 0; i < AB_ELEMENTSOF(log_levels); i++)
                if (L.per_level[i])
                        ab_buf_printf(&b, " %s %" PRIu64 ",", log_levels[i], L.per_level[i]);
        if (b.p && b.p[b.len - 1] == ',')
                b.len--;
        ab_buf_put(&b, "\n", 1);
        if (L.first_ts[0]) {
                ab_buf_put(&b, "time: ", 6);
                fs_buf_put_escaped(&b, L.first_ts, strlen(L.first_ts));
                ab_buf_put(&b, " .. ", 4);
                fs_buf_put_escaped(&b, L.last_ts, strlen(L.last_ts));
                ab_buf_put(&b, "\n", 1);
        } else {
                ab_buf_put(&b, "time: no timestamps found\n", 26);
        }

        /* the templates: by count; the top one of each level first */
        sorted = calloc(L.n_tpl ? L.n_tpl : 1, sizeof(*sorted));
        if (!sorted) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        size_t n = 0, shown = 0;
        for (size_t i = 0; i < LOG_SLOTS; i++)
                if (L.slots[i].key)
                        sorted[n++] = &L.slots[i];
        qsort(sorted, n, sizeof(*sorted), tpl_cmp);
        ab_buf_printf(&b, "templates: %zu distinct%s (numbers as <n>, ids as <id>), by count:\n", n,
                      L.untemplated ? ", more not kept" : "");
        size_t footer = limit > 512 ? 192 : limit / 4;
        bool level_done[AB_ELEMENTSOF(log_levels)] = { false };
        for (size_t lv = 0; lv < AB_ELEMENTSOF(log_levels) && shown < (size_t)max_tpl; lv++)
                for (size_t i = 0; i < n; i++)
                        if (sorted[i]->level == lv && !level_done[lv]) {
                                level_done[lv] = true;
                                if (log_put_tpl(&b, sorted[i], limit - footer)) {
                                        shown++;
                                        sorted[i]->shown = true;
                                }
                                break;
                        }
        for (size_t i = 0; i < n && shown < (size_t)max_tpl; i++) {
                if (sorted[i]->shown)
                        continue;
                if (!log_put_tpl(&b, sorted[i], limit - footer))
                        break;
                shown++;
        }
        if (shown < n)
                ab_buf_printf(
                        &b,
                        "[%zu more templates not shown: raise max_templates, or fs.grep for a pattern]\n",
                        n - shown);
        if (L.long_lines)
                ab_buf_printf(&b,
                              "[%" PRIu64 " lines longer than %d bytes: only their start was looked at]\n",
                              L.long_lines, FS_LOG_LINE_LOOK);
        if (b.err) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        r = abm_call_text(call, b.p, b.len);
        if (r < 0)
                r = abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
out:
        for (size_t i = 0; L.slots && i < LOG_SLOTS; i++) {
                free(L.slots[i].key);
                free(L.slots[i].example);
        }
        free(L.slots);
        free(sorted);
        ab_buf_free(&b);
        return r;
}
