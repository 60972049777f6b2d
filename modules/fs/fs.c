/* SPDX-License-Identifier: MIT */
/*
 * fs: read-only file tools confined to the roots the policy configures.
 *
 *   fs.read_file {path, offset?, length?}   a page of a text file
 *                {path, start_line?, max_lines?} or {path, tail_lines}: whole lines (lines.c)
 *   fs.list_dir  {path, cursor?, limit?}     a page of a directory, sorted by name
 *   fs.stat      {path}                      type, size, mode, owner, mtime
 *   fs.search    {path, pattern, cursor?}    file names matching a POSIX ERE, recursively
 *   fs.grep      {path, pattern, ...}        matching lines of files (grep.c)
 *   fs.tree      {path, depth?, cursor?}     an indented overview with sizes (tree.c)
 *   fs.read_json {path, select}              selected values of a JSON file (json_select.c)
 *   fs.summarize_log {path, ...}             levels, time span, message templates (logsum.c)
 *
 * Configuration (policy `modules: fs:`):
 *   roots: [/srv/data, ...]     required: absolute directories, opened once at init
 *   follow_symlinks: true       default true: symlinks that stay inside their root are
 *                               followed; false refuses every symlink in a path
 *   structured_output: false    default false: fs.list_dir, fs.stat and fs.search declare
 *                               no outputSchema and answer with their text block alone, which
 *                               holds every fact (and the cursor): a result pays once; true
 *                               declares their output schemas and adds structuredContent
 *   structured_text: compact    default compact: the text block of those tools is a compact
 *                               rendering of the result (text.c); json sends the serialized
 *                               JSON instead (for clients that parse it; with
 *                               structured_output: true the host adds it)
 *
 * A path argument is either absolute, under one of the roots (the longest root that is a
 * prefix at a component boundary is the one used), or relative, taken from the first root.
 * It is resolved with openat2(root_fd, rest, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS [|
 * RESOLVE_NO_SYMLINKS]): `..` that leaves the root, absolute symlinks, symlinks that lead
 * out of the root and /proc magic links are refused by the kernel. docs/module-guide.md
 * and the tools' descriptions say the same for their users.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>

#include <cjson/cJSON.h>

#include <agentbroker/module.h>

#include "common/macros.h"
#include "common/regex.h"
#include "fs-internal.h"

#define FS_ROOTS_MAX 64
#define FS_LIST_DEFAULT 100
#define FS_LIST_MAX 1000
#define FS_DIR_SCAN_MAX 1000000   /* entries fs.list_dir reads from one directory */
#define FS_SEARCH_SCAN_MAX 10000  /* entries fs.search examines per call */
#define FS_SEARCH_READ_MAX 200000 /* directory entries fs.search reads per call */
#define FS_SEARCH_DIR_MAX 100000  /* a directory with more entries is not searched */
#define FS_SEARCH_PAGE 100        /* matches per fs.search page */
#define FS_PATTERN_MAX 256

struct fs_root {
        char *path;       /* normalized: absolute, no trailing '/', no "//" */
        size_t match_len; /* bytes that must prefix a path ("/" counts 0) */
        int fd;           /* O_PATH|O_DIRECTORY */
};

static struct fs_root fs_roots[FS_ROOTS_MAX];
static size_t fs_n_roots;
static uint64_t fs_resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
static bool fs_json_text;  /* structured_text: json (the text block is the JSON) */
static bool fs_structured; /* structured_output: true (outputSchema, structuredContent) */

/* ---- small helpers ---- */

/* Copy arg into buf (size bytes) for quoting in a message: cut at a UTF-8 boundary after
 * FS_QUOTE_MAX bytes, with "..." appended when cut. Returns buf. */
const char *
fs_quote(const char *arg, char *buf, size_t size)
{
        size_t len = strlen(arg), n = ab_utf8_floor(arg, len, FS_QUOTE_MAX);

        snprintf(buf, size, "%.*s%s", (int)n, arg, n < len ? "..." : "");
        return buf;
}

/* The configured roots as "a, b, c" for messages (cut to fit). Returns buf. */
static const char *
fs_roots_text(char *buf, size_t size)
{
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < fs_n_roots && off < size; i++) {
                int n = snprintf(buf + off, size - off, "%s%s", i ? ", " : "", fs_roots[i].path);
                if (n < 0 || (size_t)n >= size - off) {
                        /* cut at a UTF-8 boundary and mark it */
                        size_t keep = ab_utf8_floor(buf, strlen(buf), size > 4 ? size - 4 : 0);
                        snprintf(buf + keep, size - keep, "...");
                        break;
                }
                off += (size_t)n;
        }
        return buf;
}

/* Bytes a serialized JSON string of s[0..n) takes beyond n itself (escapes, as cJSON
 * writes them). */
size_t
json_escape_extra(const char *s, size_t n)
{
        size_t extra = 0;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
                        extra += 1;
                else if (c < 0x20)
                        extra += 5;
        }
        return extra;
}

/* How many result bytes a page may use: the policy's max_result_bytes less room for the
 * envelope and the note. */
size_t
fs_budget(const struct abm_call *call)
{
        size_t max = abm_call_max_result_bytes(call);

        return max > 2 * FS_SLACK ? max - FS_SLACK : max / 2;
}

/* What one element of a result's array costs in the result, at most: its text row (never
 * longer than its JSON, or the JSON itself with `structured_text: json`) with its escapes,
 * plus its serialized form in structuredContent with `structured_output: true`, and a
 * separator each. Returns 0 when it cannot be printed. */
static size_t
fs_item_cost(const cJSON *item)
{
        _cleanup_free_ char *text = cJSON_PrintUnformatted(item);

        if (!text)
                return 0;
        size_t n = strlen(text);
        return (fs_structured ? 2 * n : n) + json_escape_extra(text, n) + 2;
}

/* A name as a JSON-safe string: itself when it is UTF-8, else with every byte of an invalid
 * sequence written as \xNN (*ret_escaped true). Returns a new string or NULL. */
char *
fs_name_display(const char *name, bool *ret_escaped)
{
        size_t n = strlen(name), bad;

        *ret_escaped = false;
        if (ab_utf8_scan(name, n, false) == n)
                return strdup(name);
        char *out = malloc(4 * n + 1);
        if (!out)
                return NULL;
        size_t o = 0, i = 0;
        while (i < n) {
                bad = ab_utf8_scan(name + i, n - i, false);
                memcpy(out + o, name + i, bad);
                o += bad, i += bad;
                if (i < n) {
                        o += (size_t)sprintf(out + o, "\\x%02X", (unsigned char)name[i]);
                        i++;
                }
        }
        out[o] = '\0';
        *ret_escaped = true;
        return out;
}

const char *
fs_type_name(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG: return "file";
        case S_IFDIR: return "directory";
        case S_IFLNK: return "symlink";
        case S_IFIFO: return "fifo";
        case S_IFSOCK: return "socket";
        case S_IFCHR: return "char-device";
        case S_IFBLK: return "block-device";
        default: return "unknown";
        }
}

#define FS_TYPE_ENUM \
        "[\"file\",\"directory\",\"symlink\",\"fifo\",\"socket\",\"char-device\",\"block-device\",\"unknown\"]"

/* ---- resolving paths beneath the roots ---- */

/* openat2(dirfd, rel, flags) with the module's resolve flags (plus extra), retried on the
 * EAGAIN the kernel returns when a concurrent rename raced a ".." lookup. Returns the fd
 * or -errno. */
int
fs_openat2(int dirfd, const char *rel, uint64_t flags, uint64_t extra_resolve)
{
        struct open_how how = {
                .flags = flags | O_CLOEXEC,
                .resolve = fs_resolve | extra_resolve,
        };

        for (int i = 0; i < 16; i++) {
                long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
                if (fd >= 0)
                        return (int)fd;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        return -EAGAIN;
}

/* Split a path argument into its root and the part to resolve beneath it (see the top of
 * the file). Returns 0, or a negative errno with err filled. */
static int
fs_split(const char *arg, const struct fs_root **ret_root, const char **ret_rel, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8], roots[256];
        size_t len = strlen(arg);
        const struct fs_root *best = NULL;

        if (len == 0)
                return abm_error_set(err, -EINVAL, "path is empty: give a path under %s",
                                     fs_roots_text(roots, sizeof(roots)));
        if (len >= PATH_MAX)
                return abm_error_set(err, -ENAMETOOLONG, "path is too long (%zu bytes; at most %d)", len,
                                     PATH_MAX - 1);
        if (arg[0] != '/') {
                *ret_root = &fs_roots[0];
                *ret_rel = arg;
                return 0;
        }
        for (size_t i = 0; i < fs_n_roots; i++) {
                const struct fs_root *root = &fs_roots[i];
                if (strncmp(arg, root->path, root->match_len) != 0)
                        continue;
                if (arg[root->match_len] != '/' && arg[root->match_len] != '\0')
                        continue;
                if (!best || root->match_len > best->match_len)
                        best = root;
        }
        if (!best)
                return abm_error_set(err, -EXDEV, "'%s' is outside the allowed roots (%s)",
                                     fs_quote(arg, q, sizeof(q)), fs_roots_text(roots, sizeof(roots)));
        const char *rel = arg + best->match_len;
        while (*rel == '/')
                rel++;
        *ret_root = best;
        *ret_rel = *rel ? rel : ".";
        return 0;
}

/* Fill err for a failed open of arg (rc a negative errno) and return rc. */
static int
fs_open_error(struct abm_error *err, int rc, const char *arg)
{
        char q[FS_QUOTE_MAX + 8], roots[256];

        fs_quote(arg, q, sizeof(q));
        switch (rc) {
        case -EXDEV:
                return abm_error_set(
                        err, rc,
                        "'%s' is outside the allowed roots (%s): '..' or a symlink leads out of "
                        "its root, or a symlink is absolute",
                        q, fs_roots_text(roots, sizeof(roots)));
        case -ELOOP:
                if (fs_resolve & RESOLVE_NO_SYMLINKS)
                        return abm_error_set(
                                err, rc,
                                "'%s' goes through a symlink, and this host does not follow symlinks", q);
                return abm_error_set(
                        err, rc, "'%s' goes through a /proc magic link or a symlink loop, which is refused",
                        q);
        case -ENOENT: return abm_error_set(err, rc, "no such file or directory: '%s'", q);
        case -ENOTDIR: return abm_error_set(err, rc, "'%s': a component of the path is not a directory", q);
        case -EACCES:
        case -EPERM: return abm_error_set(err, rc, "permission denied: '%s'", q);
        case -ENAMETOOLONG: return abm_error_set(err, rc, "'%s': a name in the path is too long", q);
        default: return abm_error_set(err, rc, "cannot open '%s': %s", q, strerror(-rc));
        }
}

/* Open path argument arg beneath its root with open flags. Returns the fd, or a negative
 * errno with err filled. */
int
fs_open(const char *arg, uint64_t flags, struct abm_error *err)
{
        const struct fs_root *root;
        const char *rel;
        int r = fs_split(arg, &root, &rel, err);

        if (r < 0)
                return r;
        int fd = fs_openat2(root->fd, rel, flags, 0);
        if (fd < 0)
                return fs_open_error(err, fd, arg);
        return fd;
}

/* The path argument of a call (a string: the host validated the arguments against the
 * schema, and refuses strings with an escaped NUL, which a C string would cut short).
 * Returns 0 or a negative errno with err filled. */
int
fs_arg_path(struct abm_call *call, const char *key, const char **ret, struct abm_error *err)
{
        const char *path = NULL;
        int r = abm_json_get_string(abm_call_args(call), key, &path);

        if (r < 0)
                return abm_error_set(err, -EINVAL, "'%s' is required and must be a string", key);
        *ret = path;
        return 0;
}

/* An optional integer argument within [min, max] (def when absent). Returns 0 or a
 * negative errno with err filled. */
int
fs_arg_int(struct abm_call *call, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret,
           struct abm_error *err)
{
        int64_t v;
        int r = abm_json_get_int(abm_call_args(call), key, &v);

        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0 || v < min || v > max)
                return abm_error_set(err, -EINVAL, "'%s' must be an integer from %" PRId64 " to %" PRId64,
                                     key, min, max);
        *ret = v;
        return 0;
}

/* An optional opaque cursor argument, decoded (*ret NULL when absent). Returns 0 or a
 * negative errno with err filled. */
int
fs_arg_cursor(struct abm_call *call, const char *tool, unsigned char **ret, size_t *ret_len,
              struct abm_error *err)
{
        const char *s;
        unsigned char *buf = NULL;
        size_t len = 0;
        int r = abm_json_get_string(abm_call_args(call), "cursor", &s);

        if (r == -ENOENT) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        if (r == 0)
                r = strlen(s) > FS_CURSOR_TEXT_MAX ? -EINVAL : ab_base64url_decode(s, &buf, &len);
        if (r == -ENOMEM)
                return abm_error_set(err, r, "out of memory");
        if (r < 0 || len == 0 || memchr(buf, '\0', len)) {
                free(buf);
                return abm_error_set(
                        err, -EINVAL,
                        "invalid cursor: pass the next_cursor of the previous %s result unchanged", tool);
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* ---- fs.read_file ---- */

static const struct {
        size_t off;
        const char *magic;
        size_t len;
        const char *type;
} fs_magics[] = {
        { 0,
          "\x7f"
          "ELF",
          4, "ELF executable or library" },
        { 0, "\x89PNG\r\n\x1a\n", 8, "PNG image" },
        { 0, "\xff\xd8\xff", 3, "JPEG image" },
        { 0, "GIF87a", 6, "GIF image" },
        { 0, "GIF89a", 6, "GIF image" },
        { 0, "%PDF-", 5, "PDF document" },
        { 0, "\x1f\x8b", 2, "gzip compressed data" },
        { 0, "PK\x03\x04", 4, "Zip archive (or jar, docx, xlsx, odt)" },
        { 0, "BZh", 3, "bzip2 compressed data" },
        { 0,
          "\xfd"
          "7zXZ",
          6, "xz compressed data" },
        { 0, "\x28\xb5\x2f\xfd", 4, "Zstandard compressed data" },
        { 0, "7z\xbc\xaf\x27\x1c", 6, "7-Zip archive" },
        { 0, "SQLite format 3", 16, "SQLite 3 database" },
        { 0, "\0asm", 4, "WebAssembly binary" },
        { 0, "\xca\xfe\xba\xbe", 4, "Java class file or Mach-O universal binary" },
        { 0, "MZ", 2, "DOS/Windows executable" },
        { 0, "RIFF", 4, "RIFF data (WAV, AVI or WebP)" },
        { 0, "OggS", 4, "Ogg media" },
        { 0, "ID3", 3, "MP3 audio" },
        { 0, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, "OLE2 compound document (legacy Microsoft Office)" },
        { 4, "ftyp", 4, "ISO media (MP4, MOV or HEIF)" },
        { 257, "ustar", 5, "tar archive" },
};

/* A short description of binary content from its first bytes. */
const char *
fs_binary_type(const unsigned char *buf, size_t n)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(fs_magics); i++)
                if (fs_magics[i].off + fs_magics[i].len <= n &&
                    memcmp(buf + fs_magics[i].off, fs_magics[i].magic, fs_magics[i].len) == 0)
                        return fs_magics[i].type;
        if (memchr(buf, '\0', n))
                return "data";
        return "text in an encoding other than UTF-8";
}

/* pread up to n bytes at off, until EOF. Returns the number read or -errno. */
ssize_t
fs_pread_all(int fd, void *buf, size_t n, off_t off)
{
        size_t got = 0;

        while (got < n) {
                ssize_t k = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                got += (size_t)k;
        }
        return (ssize_t)got;
}

bool
fs_is_binary(const unsigned char *buf, size_t n, bool more_follows)
{
        return memchr(buf, '\0', n) || ab_utf8_scan((const char *)buf, n, more_follows) != n;
}

int
fs_text_or_describe(struct abm_call *call, int fd, const char *q, uint64_t size, struct abm_error *err)
{
        unsigned char sniff[FS_SNIFF_BYTES];
        ssize_t ns = fs_pread_all(fd, sniff, sizeof(sniff), 0);
        int r;

        if (ns < 0)
                return abm_error_set(err, (int)ns, "cannot read '%s': %s", q, strerror((int)-ns));
        if (!fs_is_binary(sniff, (size_t)ns, (size_t)ns == sizeof(sniff)))
                return 1;
        r = abm_call_textf(call,
                           "'%s' is a binary file, %" PRIu64 " bytes, type: %s. Its content is not shown.",
                           q, size, fs_binary_type(sniff, (size_t)ns));
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
        return 0;
}

int
fs_open_text(struct abm_call *call, const char *path, char *q, size_t qsize, struct stat *ret_st,
             int *ret_fd, struct abm_error *err)
{
        struct stat st;
        _cleanup_close_ int fd = fs_open_regular(path, &st, err);

        if (fd < 0)
                return fd;
        fs_quote(path, q, qsize);
        int r = fs_text_or_describe(call, fd, q, (uint64_t)st.st_size, err);
        if (r <= 0)
                return r;
        *ret_st = st;
        *ret_fd = AB_TAKE_FD(fd);
        return 1;
}

/* Open path argument arg for reading: it must be a regular file (checked on an O_PATH
 * descriptor first, so that no device or fifo is ever opened for reading). Returns the fd
 * with *ret_st filled, or a negative errno with err filled. */
int
fs_open_regular(const char *arg, struct stat *ret_st, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        struct stat st, st2;
        _cleanup_close_ int pfd = fs_open(arg, O_PATH, err);

        if (pfd < 0)
                return pfd;
        if (fstat(pfd, &st) < 0)
                return abm_error_set(err, -errno, "cannot stat '%s': %m", fs_quote(arg, q, sizeof(q)));
        if (S_ISDIR(st.st_mode))
                return abm_error_set(err, -EISDIR, "'%s' is a directory: use fs.list_dir or fs.search",
                                     fs_quote(arg, q, sizeof(q)));
        if (!S_ISREG(st.st_mode))
                return abm_error_set(err, -EINVAL, "'%s' is not a regular file (it is a %s)",
                                     fs_quote(arg, q, sizeof(q)), fs_type_name(st.st_mode));
        _cleanup_close_ int fd = fs_open(arg, O_RDONLY | O_NOCTTY | O_NONBLOCK, err);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st2) < 0)
                return abm_error_set(err, -errno, "cannot stat '%s': %m", fs_quote(arg, q, sizeof(q)));
        if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
                return abm_error_set(err, -EAGAIN, "'%s' was replaced while it was being opened: try again",
                                     fs_quote(arg, q, sizeof(q)));
        *ret_st = st2;
        return AB_TAKE_FD(fd);
}

/* fs.read_file: at most min(length, page budget) bytes of a UTF-8 text file from offset,
 * cut at a character boundary, with a note naming the offset of the rest. Binary files
 * are described, not shown. */
static int
fs_read_file(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        const char *path = NULL;
        int64_t offset = 0, length = 0;
        struct stat st = { 0 };
        _cleanup_free_ char *buf = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0)
                return r;
        const struct abm_json *args = abm_call_args(call);
        int64_t unused;
        if (abm_json_get_int(args, "start_line", &unused) != -ENOENT ||
            abm_json_get_int(args, "max_lines", &unused) != -ENOENT ||
            abm_json_get_int(args, "tail_lines", &unused) != -ENOENT)
                return fs_read_lines(call, path, err);
        if ((r = fs_arg_int(call, "offset", 0, INT64_MAX, 0, &offset, err)) < 0 ||
            (r = fs_arg_int(call, "length", 1, 16 * 1024 * 1024, 16 * 1024 * 1024, &length, err)) < 0)
                return r;
        fd = fs_open_regular(path, &st, err);
        if (fd < 0)
                return fd;
        fs_quote(path, q, sizeof(q));
        uint64_t size = (uint64_t)st.st_size;
        if ((uint64_t)offset > size)
                return abm_error_set(err, -EINVAL,
                                     "offset %" PRId64 " is past the end of '%s' (%" PRIu64 " bytes)",
                                     offset, q, size);

        r = fs_text_or_describe(call, fd, q, size, err);
        if (r <= 0)
                return r;

        /* Read up to 4 bytes past the page, so that a character cut by the page's end is seen
         * whole and left for the next page. */
        uint64_t remaining = size - (uint64_t)offset;
        size_t budget = fs_budget(call);
        size_t want = (size_t)length < budget ? (size_t)length : budget;
        if (want > remaining)
                want = (size_t)remaining;
        size_t readn = remaining - want >= 4 ? want + 4 : (size_t)remaining;
        buf = malloc(readn + 1);
        if (!buf)
                return abm_error_set(err, -ENOMEM, "out of memory");
        ssize_t got = fs_pread_all(fd, buf, readn, (off_t)offset);
        if (got < 0)
                return abm_error_set(err, (int)got, "cannot read '%s': %s", q, strerror((int)-got));

        /* Keep what fits once escaped for JSON, then back up to a character boundary. */
        size_t limit = want < (size_t)got ? want : (size_t)got, cut = 0, cost = 0;
        while (cut < limit) {
                size_t c = 1 + json_escape_extra(buf + cut, 1);
                if (cost + c > budget)
                        break;
                cost += c;
                cut++;
        }
        if (cut < (size_t)got)
                cut = ab_utf8_floor(buf, (size_t)got, cut);

        size_t lead = 0;
        while (lead < cut && lead < 4 && ((unsigned char)buf[lead] & 0xc0) == 0x80)
                lead++;
        if (lead > 0)
                return abm_error_set(err, -EINVAL,
                                     "offset %" PRId64
                                     " is inside a multi-byte UTF-8 character of '%s': use offset=%" PRId64,
                                     offset, q, offset + (int64_t)lead);
        if (cut == 0 && got > 0)
                return abm_error_set(err, -EINVAL,
                                     "length %" PRId64 " is too small for the character at offset %" PRId64
                                     " of '%s': ask for at least 4 bytes",
                                     length, offset, q);
        /* Binary content past the first 8 KiB: show the text before it, and say so. */
        const char *nul = memchr(buf, '\0', cut);
        size_t bad = nul ? (size_t)(nul - buf) : cut;
        bad = ab_utf8_scan(buf, bad, false);
        bool binary = bad < cut;
        if (binary && bad == 0)
                return abm_call_textf(call,
                                      "'%s' holds binary content at offset %" PRId64
                                      " (not UTF-8 text; the file "
                                      "has %" PRIu64 " bytes): it is not shown.",
                                      q, offset, size);
        cut = bad;

        uint64_t end = (uint64_t)offset + cut;
        if (cut == 0)
                return abm_call_textf(call, "[end of file: '%s' has %" PRIu64 " bytes]", q, size);
        r = abm_call_text(call, buf, cut);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the text of '%s': %s", q, strerror(-r));
        if (binary)
                r = abm_call_textf(call,
                                   "[binary content at offset %" PRIu64
                                   " is not shown; the file has %" PRIu64 " bytes]",
                                   end, size);
        else if (end < size)
                r = abm_call_textf(call,
                                   "[%" PRIu64 " more bytes: call fs.read_file with offset=%" PRIu64 "]",
                                   size - end, end);
        if (r < 0)
                return abm_error_set(err, r, "cannot add the note: %s", strerror(-r));
        return 0;
}

/* ---- fs.list_dir ---- */

/* A max-heap of names (the largest on top), keeping the smallest `cap` names seen. */
struct name_heap {
        char **v;
        size_t n, cap;
};

static void
heap_swap(char **a, char **b)
{
        char *t = *a;
        *a = *b;
        *b = t;
}

/* Offer name (ownership passes): keep it when fewer than cap names are held or it is
 * smaller than the largest. Returns 0 or -ENOMEM. */
static int
heap_offer(struct name_heap *h, const char *name)
{
        size_t i;

        if (h->n == h->cap) {
                if (strcmp(name, h->v[0]) >= 0)
                        return 0;
                char *copy = strdup(name);
                if (!copy)
                        return -ENOMEM;
                free(h->v[0]);
                h->v[0] = copy;
                for (i = 0;;) { /* sift down */
                        size_t l = 2 * i + 1, r = l + 1, m = i;
                        if (l < h->n && strcmp(h->v[l], h->v[m]) > 0)
                                m = l;
                        if (r < h->n && strcmp(h->v[r], h->v[m]) > 0)
                                m = r;
                        if (m == i)
                                break;
                        heap_swap(&h->v[i], &h->v[m]);
                        i = m;
                }
                return 0;
        }
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        h->v[h->n] = copy;
        for (i = h->n++; i > 0 && strcmp(h->v[(i - 1) / 2], h->v[i]) < 0; i = (i - 1) / 2) /* sift up */
                heap_swap(&h->v[i], &h->v[(i - 1) / 2]);
        return 0;
}

static void
heap_clear(struct name_heap *h)
{
        for (size_t i = 0; i < h->n; i++)
                free(h->v[i]);
        free(h->v);
        h->v = NULL;
        h->n = 0;
}

static int
cmp_strp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

/* One directory entry as a JSON object {name, type, size?, escaped?} (name_key names the
 * name member; display overrides the shown name). lstat-style: a symlink is a symlink.
 * Returns the object or NULL (out of memory). */
static cJSON *
fs_entry_json(int dirfd, const char *name, const char *name_key, const char *display)
{
        struct stat st;
        bool escaped;
        _cleanup_free_ char *shown = fs_name_display(display ? display : name, &escaped);
        cJSON *o = cJSON_CreateObject();

        if (!shown || !o)
                goto fail;
        if (!cJSON_AddStringToObject(o, name_key, shown))
                goto fail;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (!cJSON_AddStringToObject(o, "type", "unknown"))
                        goto fail;
        } else {
                if (!cJSON_AddStringToObject(o, "type", fs_type_name(st.st_mode)))
                        goto fail;
                if (S_ISREG(st.st_mode) && !cJSON_AddNumberToObject(o, "size", (double)st.st_size))
                        goto fail;
        }
        if (escaped && !cJSON_AddTrueToObject(o, "escaped"))
                goto fail;
        return o;
fail:
        cJSON_Delete(o);
        return NULL;
}

/* Hand a result object to the host. With `structured_output: true`, as structuredContent
 * with its compact rendering as the text block (unless `structured_text: json`: then the
 * host adds the JSON itself as text); with false (the default), as the text block alone:
 * the compact rendering, or the JSON with `structured_text: json`. Returns 0 or a negative
 * errno with err filled. */
static int
fs_send_structured(struct abm_call *call, const cJSON *o, struct abm_error *err)
{
        _cleanup_free_ char *text = cJSON_PrintUnformatted(o);
        int r;

        if (!text)
                return abm_error_set(err, -ENOMEM, "out of memory");
        if (!fs_structured && fs_json_text) {
                r = abm_call_text(call, text, (size_t)-1);
                return r < 0 ? abm_error_set(err, r, "cannot add the text: %s", strerror(-r)) : 0;
        }
        if (!fs_json_text) {
                _cleanup_free_ char *compact = fs_render_compact(o);
                if (!compact)
                        return abm_error_set(err, -ENOMEM, "out of memory");
                r = abm_call_text(call, compact, (size_t)-1);
                if (r < 0)
                        return abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
                if (!fs_structured)
                        return 0;
        }
        r = abm_call_structured(call, text);
        if (r < 0)
                return abm_error_set(err, r, "cannot set the result: %s", strerror(-r));
        return 0;
}

/* fs.list_dir: the entries of a directory sorted by name (bytewise), `limit` at a time and
 * no more than the page budget, after the name the cursor holds. Memory stays O(limit)
 * however large the directory: a bounded heap keeps the smallest names past the cursor. */
static int
fs_list_dir(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        const char *path = NULL;
        int64_t limit;
        _cleanup_free_ unsigned char *after = NULL;
        size_t after_len;
        struct name_heap heap = { 0 };
        _cleanup_(closedirp) DIR *d = NULL;
        cJSON *out = NULL, *entries;
        uint64_t total = 0, remaining = 0;
        int r;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0 ||
            (r = fs_arg_int(call, "limit", 1, FS_LIST_MAX, FS_LIST_DEFAULT, &limit, err)) < 0 ||
            (r = fs_arg_cursor(call, "fs.list_dir", &after, &after_len, err)) < 0)
                return r;
        if (after && (after_len > NAME_MAX || memchr(after, '/', after_len)))
                return abm_error_set(err, -EINVAL,
                                     "invalid cursor: pass the next_cursor of the previous "
                                     "fs.list_dir result unchanged");
        fs_quote(path, q, sizeof(q));
        int fd = fs_open(path, O_RDONLY | O_DIRECTORY, err);
        if (fd < 0)
                return fd == -ENOTDIR ? abm_error_set(err, fd,
                                                      "'%s' is not a directory (or a component of "
                                                      "it is not): use fs.stat or fs.read_file",
                                                      q)
                                      : fd;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return abm_error_set(err, r, "cannot read directory '%s': %s", q, strerror(-r));
        }
        heap.cap = (size_t)limit;
        heap.v = calloc(heap.cap, sizeof(char *));
        if (!heap.v)
                return abm_error_set(err, -ENOMEM, "out of memory");

        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno) {
                                r = abm_error_set(err, -errno, "cannot read directory '%s': %m", q);
                                goto out;
                        }
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++total > FS_DIR_SCAN_MAX) {
                        r = abm_error_set(err, -E2BIG,
                                          "'%s' has more than %d entries: use fs.search to find names in it",
                                          q, FS_DIR_SCAN_MAX);
                        goto out;
                }
                if (total % 4096 == 0 && abm_call_cancelled(call)) {
                        r = abm_error_set(err, -ECANCELED, "cancelled");
                        goto out;
                }
                if (after && strcmp(de->d_name, (const char *)after) <= 0)
                        continue;
                remaining++;
                if ((r = heap_offer(&heap, de->d_name)) < 0) {
                        r = abm_error_set(err, r, "out of memory");
                        goto out;
                }
        }
        if (heap.n > 1)
                qsort(heap.v, heap.n, sizeof(char *), cmp_strp);

        out = cJSON_CreateObject();
        if (!out || !cJSON_AddStringToObject(out, "path", path) ||
            !cJSON_AddNumberToObject(out, "total", (double)total) ||
            !(entries = cJSON_AddArrayToObject(out, "entries"))) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        size_t budget = fs_budget(call), used = fs_item_cost(out) + 128, shown = 0;
        for (size_t i = 0; i < heap.n; i++) {
                cJSON *e = fs_entry_json(dirfd(d), heap.v[i], "name", NULL);
                if (!e) {
                        r = abm_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
                size_t c = fs_item_cost(e);
                if (shown > 0 && used + c > budget) {
                        cJSON_Delete(e);
                        break;
                }
                cJSON_AddItemToArray(entries, e);
                used += c;
                shown++;
        }
        if (shown < remaining) {
                _cleanup_free_ char *cursor = NULL;
                if (ab_base64url_encode(heap.v[shown - 1], strlen(heap.v[shown - 1]), &cursor) < 0 ||
                    !cJSON_AddStringToObject(out, "next_cursor", cursor)) {
                        r = abm_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        r = fs_send_structured(call, out, err);
out:
        cJSON_Delete(out);
        heap_clear(&heap);
        return r;
}

/* ---- fs.stat ---- */

/* fs.stat: what the path is. A symlink (inside the root) is followed, and "symlink" says
 * that the path itself was one; with follow_symlinks: false the link itself is described. */
static int
fs_stat(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8], mode[8], mtime[32];
        const char *path = NULL;
        struct stat lst, st;
        struct tm tm;
        cJSON *out = NULL;
        int r;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0)
                return r;
        fs_quote(path, q, sizeof(q));
        _cleanup_close_ int lfd = fs_open(path, O_PATH | O_NOFOLLOW, err);
        if (lfd < 0)
                return lfd;
        if (fstat(lfd, &lst) < 0)
                return abm_error_set(err, -errno, "cannot stat '%s': %m", q);
        st = lst;
        /* follow a symlink, unless symlinks are off: then describe the link itself */
        if (S_ISLNK(lst.st_mode) && !(fs_resolve & RESOLVE_NO_SYMLINKS)) {
                _cleanup_close_ int fd = fs_open(path, O_PATH, err);
                if (fd < 0)
                        return fd;
                if (fstat(fd, &st) < 0)
                        return abm_error_set(err, -errno, "cannot stat '%s': %m", q);
        }
        snprintf(mode, sizeof(mode), "%04o", (unsigned)(st.st_mode & 07777));
        if (!gmtime_r(&st.st_mtim.tv_sec, &tm) ||
            strftime(mtime, sizeof(mtime), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(mtime, sizeof(mtime), "%lld", (long long)st.st_mtim.tv_sec);

        out = cJSON_CreateObject();
        if (!out || !cJSON_AddStringToObject(out, "path", path) ||
            !cJSON_AddStringToObject(out, "type", fs_type_name(st.st_mode)) ||
            !cJSON_AddNumberToObject(out, "size", (double)st.st_size) ||
            !cJSON_AddStringToObject(out, "mode", mode) ||
            !cJSON_AddNumberToObject(out, "uid", (double)st.st_uid) ||
            !cJSON_AddNumberToObject(out, "gid", (double)st.st_gid) ||
            !cJSON_AddNumberToObject(out, "nlink", (double)st.st_nlink) ||
            !cJSON_AddStringToObject(out, "mtime", mtime) ||
            !cJSON_AddBoolToObject(out, "symlink", S_ISLNK(lst.st_mode)))
                r = abm_error_set(err, -ENOMEM, "out of memory");
        else
                r = fs_send_structured(call, out, err);
        cJSON_Delete(out);
        return r;
}

/* ---- fs.search ---- */

struct fs_search {
        struct abm_call *call;
        struct ab_regex *re;
        cJSON *matches;
        const char *base; /* the path argument, for the shown paths */
        size_t base_len;  /* without trailing '/' (but "/" stays 0 + '/') */
        struct fs_walk w; /* w.rel: the entry being visited, relative to the base */
        char *last;       /* the last entry visited completely (new string) */
        size_t scanned, n_matches, budget, used;
        int error; /* a negative errno that ends the search */
};

/* Remember rel as the last entry visited. Returns 0 or -ENOMEM. */
static int
fs_search_mark(struct fs_search *s)
{
        char *copy = strdup(s->w.rel);

        if (!copy)
                return -ENOMEM;
        free(s->last);
        s->last = copy;
        return 0;
}

/* Read the names of the directory dfd (left open) into a sorted array (*ret, *ret_n),
 * counting them in *read_count. Returns 0, -E2BIG (more than FS_SEARCH_DIR_MAX entries)
 * or -errno. */
int
fs_read_names(int dfd, char ***ret, size_t *ret_n, size_t *read_count)
{
        int copy = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        DIR *d;
        char **v = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        if (copy < 0)
                return -errno;
        d = fdopendir(copy);
        if (!d) {
                r = -errno;
                close(copy);
                return r;
        }
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        r = -errno;
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                (*read_count)++;
                if (n == FS_SEARCH_DIR_MAX) {
                        r = -E2BIG;
                        break;
                }
                if (n == cap) {
                        size_t nc = cap ? 2 * cap : 64;
                        char **nv = realloc(v, nc * sizeof(char *));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        v = nv, cap = nc;
                }
                if (!(v[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        free(v[i]);
                free(v);
                return r;
        }
        if (n > 1)
                qsort(v, n, sizeof(char *), cmp_strp);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The fs_walk visitor of fs.search: add the entry (name in dirfd; w->rel holds its relative
 * path) to the matches when its name matches, unless the page is full (then stop before
 * it). Returns 1 when the walk may descend into it, 0 when it stops here, or -errno. */
static int
fs_search_visit(struct fs_walk *w, int dirfd, const char *name, const struct stat *st)
{
        struct fs_search *s = w->userdata;
        int m = ab_regex_search(s->re, name, strlen(name), NULL, NULL);

        (void)st;
        if (m < 0) /* a limit: the whole search fails, rather than skipping names */
                return m;
        if (m == 1) {
                _cleanup_free_ char *shown = NULL;
                if (asprintf(&shown, "%.*s/%s", (int)s->base_len, s->base, w->rel) < 0)
                        return -ENOMEM;
                cJSON *e = fs_entry_json(dirfd, name, "path", shown);
                if (!e)
                        return -ENOMEM;
                size_t c = fs_item_cost(e);
                if (s->n_matches > 0 && (s->used + c > s->budget || s->n_matches == FS_SEARCH_PAGE)) {
                        /* the page is full: this entry starts the next page */
                        cJSON_Delete(e);
                        return 0;
                }
                cJSON_AddItemToArray(s->matches, e);
                s->used += c;
                s->n_matches++;
        }
        s->scanned++;
        int r = fs_search_mark(s);
        if (r < 0)
                return r;
        if (s->scanned >= FS_SEARCH_SCAN_MAX || w->read >= FS_SEARCH_READ_MAX)
                return 0; /* resume descends into this entry */
        return 1;
}

/* Split a decoded search cursor (a relative path) into its components, in place. Returns
 * the number of components, or -EINVAL. */
int
fs_cursor_split(char *rel, char **comps, size_t max)
{
        size_t n = 0;
        char *p = rel;

        for (;;) {
                char *slash = strchr(p, '/');
                if (slash)
                        *slash = '\0';
                if (!*p || strcmp(p, ".") == 0 || strcmp(p, "..") == 0 || strlen(p) > NAME_MAX || n == max)
                        return -EINVAL;
                comps[n++] = p;
                if (!slash)
                        return (int)n;
                p = slash + 1;
        }
}

/* fs.search: entries below a directory whose names match a POSIX ERE, depth-first in name
 * order, at most FS_SEARCH_PAGE matches and FS_SEARCH_SCAN_MAX entries examined per call;
 * next_cursor continues where the page stopped. */
static int
fs_search(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8], msg[256];
        const char *path = NULL, *pattern = NULL;
        _cleanup_free_ unsigned char *cursor = NULL;
        size_t cursor_len;
        char *comps[FS_WALK_DEPTH_MAX];
        int n_comps = 0, r;
        struct fs_search s = { .call = call };
        cJSON *out = NULL;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0)
                return r;
        if (abm_json_get_string(abm_call_args(call), "pattern", &pattern) < 0 || !*pattern)
                return abm_error_set(err, -EINVAL,
                                     "'pattern' is required: a regular expression "
                                     "matched against each name");
        if (strlen(pattern) > 4 * FS_PATTERN_MAX)
                return abm_error_set(err, -EINVAL, "pattern is too long (at most %d characters)",
                                     FS_PATTERN_MAX);
        if ((r = fs_arg_cursor(call, "fs.search", &cursor, &cursor_len, err)) < 0)
                return r;
        if (cursor && (n_comps = fs_cursor_split((char *)cursor, comps, AB_ELEMENTSOF(comps))) < 0)
                return abm_error_set(err, -EINVAL,
                                     "invalid cursor: pass the next_cursor of the previous "
                                     "fs.search result unchanged");
        r = ab_regex_compile(pattern, strlen(pattern), 0, &s.re, msg, sizeof(msg));
        if (r == -ENOMEM)
                return abm_error_set(err, r, "out of memory");
        if (r < 0)
                return abm_error_set(err, -EINVAL, "pattern is not a valid regular expression: %s", msg);
        fs_quote(path, q, sizeof(q));
        int fd = fs_open(path, O_RDONLY | O_DIRECTORY, err);
        if (fd < 0) {
                r = fd == -ENOTDIR ? abm_error_set(err, fd,
                                                   "'%s' is not a directory: fs.search searches below a "
                                                   "directory",
                                                   q)
                                   : fd;
                goto out;
        }
        s.base = path;
        s.base_len = strlen(path);
        while (s.base_len > 0 && path[s.base_len - 1] == '/')
                s.base_len--;
        out = cJSON_CreateObject();
        if (!out || !cJSON_AddStringToObject(out, "path", path) ||
            !cJSON_AddStringToObject(out, "pattern", pattern) ||
            !(s.matches = cJSON_AddArrayToObject(out, "matches"))) {
                close(fd);
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        s.budget = fs_budget(call);
        s.used = fs_item_cost(out) + 256;
        /* the cursor names the last entry visited: the walk resumes after it */
        s.w = (struct fs_walk){
                .visit = fs_search_visit, .userdata = &s, .call = call, .resume_after = true
        };
        r = fs_walk(&s.w, fd, cursor ? comps : NULL, (size_t)(n_comps > 0 ? n_comps : 0));
        if (r == -ECANCELED) {
                r = abm_error_set(err, r, "cancelled");
                goto out;
        }
        if (r == -ETIME || r == -E2BIG) {
                r = abm_error_set(err, r, "searching '%s' stopped: %s", q, ab_regex_strerror(r));
                goto out;
        }
        if (r < 0) {
                r = abm_error_set(err, r, "searching '%s' failed: %s", q, strerror(-r));
                goto out;
        }
        if (!cJSON_AddNumberToObject(out, "scanned", (double)s.scanned) ||
            !cJSON_AddNumberToObject(out, "not_searched", (double)s.w.not_searched)) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        if (s.w.stop && s.last) {
                _cleanup_free_ char *next = NULL;
                if (ab_base64url_encode(s.last, strlen(s.last), &next) < 0 ||
                    !cJSON_AddStringToObject(out, "next_cursor", next)) {
                        r = abm_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        r = fs_send_structured(call, out, err);
out:
        cJSON_Delete(out);
        free(s.last);
        ab_regex_free(s.re);
        return r;
}

/* ---- the descriptor ---- */

#define PATH_PROP                                                                                  \
        "\"path\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,\"description\":"        \
        "\"An absolute path under one of the allowed roots, or a path relative to the first root " \
        "(\\\".\\\" is the first root itself).\"}"
#define CURSOR_PROP(tool)                                                                     \
        "\"cursor\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8192,\"description\":" \
        "\"The next_cursor of the previous " tool " result, to get the next page.\"}"

static const char read_file_schema[] =
        "{\"type\":\"object\",\"properties\":{" PATH_PROP ","
        "\"offset\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9007199254740991,"
        "\"description\":\"Byte offset to start at (default 0).\"},"
        "\"length\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":16777216,"
        "\"description\":\"At most this many bytes (default: as many as the result size allows).\"},"
        "\"start_line\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9007199254740991,"
        "\"description\":\"Read whole lines from this line (1 is the first); not with offset or length.\"},"
        "\"max_lines\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000,"
        "\"description\":\"At most this many whole lines (default: as many as the result size allows).\"},"
        "\"tail_lines\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100000,"
        "\"description\":\"Read the last this many lines; not with start_line or max_lines.\"}},"
        "\"required\":[\"path\"],\"additionalProperties\":false}";

static const char list_dir_schema[] =
        "{\"type\":\"object\",\"properties\":{" PATH_PROP
        "," CURSOR_PROP("fs.list_dir") ","
                                       "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000,"
                                       "\"description\":\"At most this many entries (default 100).\"}},"
                                       "\"required\":[\"path\"],\"additionalProperties\":false}";

static const char list_dir_output[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},"
        "\"total\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"Entries in the directory.\"},"
        "\"entries\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\"},\"type\":{\"type\":\"string\",\"enum\":" FS_TYPE_ENUM "},"
        "\"size\":{\"type\":\"integer\",\"minimum\":0},"
        "\"escaped\":{\"type\":\"boolean\",\"description\":\"The name is not UTF-8: bytes shown as \\\\xNN.\"}},"
        "\"required\":[\"name\",\"type\"],\"additionalProperties\":false}},"
        "\"next_cursor\":{\"type\":\"string\",\"description\":\"Present when more entries follow.\"}},"
        "\"required\":[\"path\",\"total\",\"entries\"],\"additionalProperties\":false}";

static const char stat_schema[] = "{\"type\":\"object\",\"properties\":{" PATH_PROP "},"
                                  "\"required\":[\"path\"],\"additionalProperties\":false}";

static const char stat_output[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},"
        "\"type\":{\"type\":\"string\",\"enum\":" FS_TYPE_ENUM "},"
        "\"size\":{\"type\":\"integer\",\"minimum\":0},"
        "\"mode\":{\"type\":\"string\",\"pattern\":\"^[0-7]{4}$\"},"
        "\"uid\":{\"type\":\"integer\",\"minimum\":0},"
        "\"gid\":{\"type\":\"integer\",\"minimum\":0},"
        "\"nlink\":{\"type\":\"integer\",\"minimum\":0},"
        "\"mtime\":{\"type\":\"string\",\"description\":\"Last modification, UTC (RFC 3339).\"},"
        "\"symlink\":{\"type\":\"boolean\",\"description\":\"The path itself is a symlink (followed).\"}},"
        "\"required\":[\"path\",\"type\",\"size\",\"mode\",\"uid\",\"gid\",\"nlink\",\"mtime\",\"symlink\"],"
        "\"additionalProperties\":false}";

static const char search_schema[] =
        "{\"type\":\"object\",\"properties\":{" PATH_PROP ","
        "\"pattern\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":256,\"description\":"
        "\"A regular expression (ECMA-262 syntax, PCRE2) matched against each entry's name (not its whole path), "
        "unanchored and case-sensitive: a plain word matches names containing it; ^ and $ anchor.\"}," CURSOR_PROP(
                "fs.search") "},"
                             "\"required\":[\"path\",\"pattern\"],\"additionalProperties\":false}";

static const char search_output[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},\"pattern\":{\"type\":\"string\"},"
        "\"matches\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\"},\"type\":{\"type\":\"string\",\"enum\":" FS_TYPE_ENUM "},"
        "\"size\":{\"type\":\"integer\",\"minimum\":0},"
        "\"escaped\":{\"type\":\"boolean\"}},"
        "\"required\":[\"path\",\"type\"],\"additionalProperties\":false}},"
        "\"scanned\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"Entries examined by this call.\"},"
        "\"not_searched\":{\"type\":\"integer\",\"minimum\":0,"
        "\"description\":\"Directories not entered: deeper than 16 levels, unreadable or too large.\"},"
        "\"next_cursor\":{\"type\":\"string\",\"description\":\"Present when the search has more to do.\"}},"
        "\"required\":[\"path\",\"pattern\",\"matches\",\"scanned\",\"not_searched\"],\"additionalProperties\":false}";

#define READ_ONLY                                                            \
        {                                                                    \
                ABM_HINT_TRUE, ABM_HINT_FALSE, ABM_HINT_TRUE, ABM_HINT_FALSE \
        }

/* The tools. The output schemas of list_dir, stat and search are set by fs_init from
 * fs_output_schemas, with `structured_output: true` only. */
static struct abm_tool fs_tools[] = {
        {
                .name = "read_file",
                .title = "Read a text file",
                .description = "Read a UTF-8 text file under the allowed roots, a page at a time: at most "
                               "`length` bytes from `offset`, cut to the result size limit at a character "
                               "boundary. When more follows, the result ends with a note giving the offset "
                               "to call again with. Or whole lines: `start_line` (1-based) and `max_lines`, "
                               "or the last `tail_lines`; the note names the next line. Binary files are "
                               "described (size, type), not shown.",
                .input_schema = read_file_schema,
                .annotations = READ_ONLY,
                .call = fs_read_file,
        },
        {
                .name = "list_dir",
                .title = "List a directory",
                .description =
                        "List the entries of a directory under the allowed roots, sorted by name. "
                        "The first line gives the path and the total number of entries; then one entry "
                        "per line: its name, followed by `/` for a directory, `@` a symlink, `|` a FIFO, "
                        "`=` a socket, or a tab and the size in bytes for a file. At most `limit` "
                        "entries (default 100) per call; when more follow, the last line gives the "
                        "cursor to pass as `cursor` for the next page.",
                .input_schema = list_dir_schema,
                .annotations = READ_ONLY,
                .call = fs_list_dir,
        },
        {
                .name = "stat",
                .title = "Describe a file",
                .description = "Type, size, permissions (octal mode), owner (uid, gid), link count and "
                               "modification time (UTC) of a path under the allowed roots, as `key: value` "
                               "pairs. A symlink that stays inside its root is followed (symlink: true).",
                .input_schema = stat_schema,
                .annotations = READ_ONLY,
                .call = fs_stat,
        },
        {
                .name = "search",
                .title = "Find files by name",
                .description =
                        "Find entries below a directory whose names match `pattern` (a POSIX "
                        "extended regular expression, unanchored: a plain word finds names "
                        "containing it). Walks depth-first in name order, up to 16 levels deep, "
                        "without following symlinks; examines at most 10,000 entries and returns "
                        "at most 100 matches per call. The first line counts the entries examined "
                        "(scanned) and the directories not entered (not_searched); then one match per "
                        "line: its path, followed by `/` for a directory, `@` a symlink, or a tab and "
                        "the size for a file. When the last line gives a cursor, call again with it "
                        "as `cursor` to continue.",
                .input_schema = search_schema,
                .annotations = READ_ONLY,
                .call = fs_search,
        },
        {
                .name = "grep",
                .title = "Search file contents",
                .description =
                        "Find the lines that match `pattern` (a regular expression, or a plain string "
                        "with fixed: true; ignore_case for any case) in a file or in the files below a "
                        "directory. Returns only the matching lines with their line numbers (and "
                        "`before`/`after` lines of context), grouped by file with each file's match "
                        "count; count_only gives the counts alone. Binary files are skipped and "
                        "counted. At most max_matches (default 100) lines, 256 MiB read and 5 s per "
                        "call: when it stops early, the result ends with a cursor to continue.",
                .input_schema = fs_grep_schema,
                .annotations = READ_ONLY,
                .call = fs_grep,
        },
        {
                .name = "tree",
                .title = "Overview of a directory tree",
                .description =
                        "An indented overview of a directory, `depth` levels deep (default 2): each "
                        "folder with the number of folders, files and bytes below it (also the folders "
                        "at the cut), file names with sizes (at most max_files per folder, the rest "
                        "summed up). One call shows the shape of a large tree; if it does not fit, the "
                        "result ends with a cursor to continue.",
                .input_schema = fs_tree_schema,
                .annotations = READ_ONLY,
                .call = fs_tree,
        },
        {
                .name = "read_json",
                .title = "Select values from a JSON file",
                .description =
                        "Return only selected values of a JSON file, as compact JSON: JSON Pointers "
                        "(/items/0/title) or projections such as [*].{number,title,state} (those three "
                        "members of every element) or items[0:10].title. One selector gives its value; "
                        "several give an object keyed by selector.",
                .input_schema = fs_read_json_schema,
                .annotations = READ_ONLY,
                .call = fs_read_json,
        },
        {
                .name = "summarize_log",
                .title = "Summarize a log file",
                .description =
                        "A summary of a log file in at most 4 KiB, whatever its size: lines per level "
                        "(ERROR, WARN, INFO, ...), first and last timestamp, and the most frequent "
                        "message templates (numbers masked as <n>, ids as <id>) with their counts and "
                        "one example each; the top template of every level is always shown.",
                .input_schema = fs_summarize_log_schema,
                .annotations = READ_ONLY,
                .call = fs_summarize_log,
        },
};

/* The output schema of each tool that can answer with structuredContent. */
static const struct {
        const char *tool, *schema;
} fs_output_schemas[] = {
        { "list_dir", list_dir_output },
        { "stat", stat_output },
        { "search", search_output },
};

/* Declare the output schemas (structured_output: true) or none (false). */
static void
fs_set_output_schemas(bool on)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(fs_tools); i++) {
                fs_tools[i].output_schema = NULL;
                for (size_t k = 0; on && k < AB_ELEMENTSOF(fs_output_schemas); k++)
                        if (strcmp(fs_tools[i].name, fs_output_schemas[k].tool) == 0)
                                fs_tools[i].output_schema = fs_output_schemas[k].schema;
        }
}

static void
fs_fini(void)
{
        for (size_t i = 0; i < fs_n_roots; i++) {
                if (fs_roots[i].fd >= 0)
                        close(fs_roots[i].fd);
                free(fs_roots[i].path);
        }
        fs_n_roots = 0;
}

/* Normalize a configured root: absolute, "//" collapsed, no trailing '/', no "." or ".."
 * component. Returns a new string, or NULL with *ret_why set. */
static char *
fs_root_normalize(const char *p, const char **ret_why)
{
        size_t len = strlen(p), o = 0;
        char *out;

        if (p[0] != '/') {
                *ret_why = "must be an absolute path";
                return NULL;
        }
        if (len >= PATH_MAX) {
                *ret_why = "is too long";
                return NULL;
        }
        out = malloc(len + 1);
        if (!out) {
                *ret_why = "out of memory";
                return NULL;
        }
        for (size_t i = 0; i < len;) {
                while (p[i] == '/')
                        i++;
                size_t j = i;
                while (j < len && p[j] != '/')
                        j++;
                if (j == i)
                        break;
                if ((j - i == 1 && p[i] == '.') || (j - i == 2 && p[i] == '.' && p[i + 1] == '.')) {
                        free(out);
                        *ret_why = "must not contain '.' or '..' components";
                        return NULL;
                }
                out[o++] = '/';
                memcpy(out + o, p + i, j - i);
                o += j - i;
                i = j;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        return out;
}

/* Read the configuration: open every root, choose the resolve flags, check that the kernel
 * has openat2. Returns 0 or a negative errno with err filled. */
static int
fs_init(const struct abm_json *config, struct abm_error *err)
{
        const struct abm_json *roots;
        bool follow = true;
        int r;

        fs_n_roots = 0;
        r = abm_json_get_array(config, "roots", &roots);
        if (r == -ENOENT || (r == 0 && abm_json_array_size(roots) == 0))
                return abm_error_set(err, -EINVAL,
                                     "no roots configured: set `modules: fs: roots: [/path, ...]` in "
                                     "the policy");
        if (r < 0)
                return abm_error_set(err, -EINVAL, "roots must be a list of absolute paths");
        size_t n = abm_json_array_size(roots);
        if (n > FS_ROOTS_MAX)
                return abm_error_set(err, -EINVAL, "too many roots (%zu; at most %d)", n, FS_ROOTS_MAX);
        r = abm_json_get_bool(config, "follow_symlinks", &follow);
        if (r == -EINVAL)
                return abm_error_set(err, r, "follow_symlinks must be true or false");
        fs_resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (follow ? 0 : RESOLVE_NO_SYMLINKS);
        const char *st = "compact";
        r = abm_json_get_string(config, "structured_text", &st);
        if (r == -EINVAL || (strcmp(st, "compact") != 0 && strcmp(st, "json") != 0))
                return abm_error_set(err, -EINVAL, "structured_text must be \"compact\" or \"json\"");
        fs_json_text = strcmp(st, "json") == 0;
        bool structured = false;
        r = abm_json_get_bool(config, "structured_output", &structured);
        if (r == -EINVAL)
                return abm_error_set(err, r,
                                     "structured_output must be true or false (default false: the "
                                     "tools answer with compact text only, without outputSchema and "
                                     "structuredContent)");
        fs_structured = structured;
        fs_set_output_schemas(structured);

        for (size_t i = 0; i < n; i++) {
                const char *p = abm_json_string(abm_json_array_at(roots, i)), *why = NULL;
                char q[FS_QUOTE_MAX + 8];
                if (!p) {
                        r = abm_error_set(err, -EINVAL, "roots[%zu] is not a string", i);
                        goto fail;
                }
                char *norm = fs_root_normalize(p, &why);
                if (!norm) {
                        r = abm_error_set(err, -EINVAL, "root '%s' %s", fs_quote(p, q, sizeof(q)), why);
                        goto fail;
                }
                int fd = open(norm, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        r = abm_error_set(err, -errno, "root '%s' cannot be opened as a directory: %m",
                                          fs_quote(norm, q, sizeof(q)));
                        free(norm);
                        goto fail;
                }
                fs_roots[fs_n_roots++] = (struct fs_root){
                        .path = norm,
                        .match_len = strcmp(norm, "/") == 0 ? 0 : strlen(norm),
                        .fd = fd,
                };
        }
        int probe = fs_openat2(fs_roots[0].fd, ".", O_PATH | O_DIRECTORY, 0);
        if (probe < 0) {
                if (probe == -ENOSYS)
                        r = abm_error_set(err, probe,
                                          "this kernel has no openat2 (Linux 5.6 or later is needed): "
                                          "refusing to serve files");
                else
                        r = abm_error_set(err, probe, "openat2 on the first root failed: %s",
                                          strerror(-probe));
                goto fail;
        }
        close(probe);
        return 0;
fail:
        fs_fini();
        return r;
}

AB_MODULE_EXPORT const struct abm_module agentbroker_module = {
        .type = ABM_MODULE_TYPE,
        .abi_version = ABM_ABI_VERSION,
        .name = "fs",
        .version = PACKAGE_VERSION,
        .tools = fs_tools,
        .n_tools = AB_ELEMENTSOF(fs_tools),
        .init = fs_init,
        .fini = fs_fini,
};
