/* SPDX-License-Identifier: MIT */
/*
 * fs.read_json {path, select: [...]}: only the selected values of a JSON file, as compact
 * JSON text. A selector is either
 *   - a JSON Pointer (RFC 6901), starting with "/" (or "" for the whole document):
 *     "/items/0/title", "/a~1b" (the member "a/b");
 *   - or a projection: steps joined by ".", each a member name ([A-Za-z0-9_$-]+) optionally
 *     followed by brackets, or brackets alone: [N] an element (negative: from the end),
 *     [*] every element, [M:N] elements M to N-1; the last step may be {a,b,c}, which keeps
 *     those members of an object (members it lacks are left out). After [*] or a slice the
 *     rest of the selector applies to each element, giving an array:
 *     "[*].{number,title,state}", "items[0:10].title", "meta.count".
 * A member or element that is not there selects null in a projection; a JSON Pointer that
 * does not resolve is an error. One selector gives its value; several give an object with
 * one member per selector.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/macros.h"
#include "fs-internal.h"

#define FS_JSON_FILE_MAX (16 * 1024 * 1024) /* bytes of a file fs.read_json parses */
#define FS_JSON_SELECT_MAX 32               /* selectors per call */
#define FS_JSON_NAME_MAX 256                /* bytes of a member name in a projection */

/* Where a selector failed to parse. */
struct sel_error {
        const char *why;
        size_t at;
};

static bool
sel_name_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '$' || c == '-';
}

/* Parse an integer at *p (optionally negative). Returns false when there is none. */
static bool
sel_int(const char **p, long *ret)
{
        char *end;
        errno = 0;
        long v = strtol(*p, &end, 10);

        if (end == *p || errno || (**p != '-' && (**p < '0' || **p > '9')))
                return false;
        *p = end;
        *ret = v;
        return true;
}

static cJSON *sel_eval(const cJSON *node, const char *sel, const char *start, struct sel_error *e);

/* Apply the rest of the selector (rest) to elements [from, to) of array node, giving an
 * array. Returns it or NULL (e set, or out of memory with e->why NULL). */
static cJSON *
sel_map(const cJSON *node, long from, long to, const char *rest, const char *start, struct sel_error *e)
{
        cJSON *out = sel_eval(NULL, rest, start, e); /* the rest's syntax, whatever node holds */

        if (!out)
                return NULL;
        cJSON_Delete(out);
        if (!cJSON_IsArray(node))
                return cJSON_CreateNull();
        out = cJSON_CreateArray();
        if (!out)
                return NULL;
        for (long i = from; i < to; i++) {
                cJSON *v = sel_eval(cJSON_GetArrayItem(node, (int)i), rest, start, e);
                if (!v) {
                        cJSON_Delete(out);
                        return NULL;
                }
                cJSON_AddItemToArray(out, v);
        }
        return out;
}

/* {a,b,c} at sel (just past the '{'): the members of object node it names. */
static cJSON *
sel_pick(const cJSON *node, const char *sel, const char *start, struct sel_error *e)
{
        cJSON *out = cJSON_IsObject(node) ? cJSON_CreateObject() : cJSON_CreateNull();
        const char *p = sel;

        if (!out)
                return NULL;
        for (;;) {
                const char *n = p;
                while (sel_name_char(*p))
                        p++;
                if (p == n || (size_t)(p - n) > FS_JSON_NAME_MAX) {
                        e->why = p == n ? "expected a member name" : "member name too long";
                        e->at = (size_t)(n - start);
                        cJSON_Delete(out);
                        return NULL;
                }
                if (cJSON_IsObject(node)) {
                        char name[FS_JSON_NAME_MAX + 1];
                        memcpy(name, n, (size_t)(p - n));
                        name[p - n] = '\0';
                        const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, name);
                        if (v && !cJSON_GetObjectItemCaseSensitive(out, name)) {
                                cJSON *copy = cJSON_Duplicate(v, true);
                                if (!copy || !cJSON_AddItemToObject(out, name, copy)) {
                                        cJSON_Delete(copy);
                                        cJSON_Delete(out);
                                        return NULL;
                                }
                        }
                }
                if (*p == ',') {
                        p++;
                        continue;
                }
                if (*p == '}' && p[1] == '\0')
                        return out;
                e->why = *p == '}' ? "{...} must be the last step" : "expected ',' or '}'";
                e->at = (size_t)(p - start);
                cJSON_Delete(out);
                return NULL;
        }
}

/* Evaluate the projection sel (the part of the selector starting at start that is left)
 * on node (NULL: not there). Returns a new value, or NULL with e->why set (a syntax error)
 * or not (out of memory). */
static cJSON *
sel_eval(const cJSON *node, const char *sel, const char *start, struct sel_error *e)
{
        const char *p = sel;

        if (*p == '\0')
                return node ? cJSON_Duplicate(node, true) : cJSON_CreateNull();
        if (*p == '.' && p != start)
                p++;
        if (*p == '{')
                return sel_pick(node, p + 1, start, e);
        if (sel_name_char(*p)) {
                const char *n = p;
                while (sel_name_char(*p))
                        p++;
                if ((size_t)(p - n) > FS_JSON_NAME_MAX) {
                        e->why = "member name too long";
                        e->at = (size_t)(n - start);
                        return NULL;
                }
                char name[FS_JSON_NAME_MAX + 1];
                memcpy(name, n, (size_t)(p - n));
                name[p - n] = '\0';
                node = cJSON_IsObject(node) ? cJSON_GetObjectItemCaseSensitive(node, name) : NULL;
                if (*p != '\0' && *p != '.' && *p != '[') {
                        e->why = "expected '.', '[' or the end";
                        e->at = (size_t)(p - start);
                        return NULL;
                }
                return sel_eval(node, p, start, e);
        }
        if (*p != '[') {
                e->why = "expected a member name, '[' or '{'";
                e->at = (size_t)(p - start);
                return NULL;
        }
        p++;
        long size = cJSON_IsArray(node) ? cJSON_GetArraySize(node) : 0, a, b;
        if (*p == '*' && p[1] == ']')
                return sel_map(node, 0, size, p + 2, start, e);
        bool has_a = sel_int(&p, &a);
        if (*p == ':') {
                p++;
                bool has_b = sel_int(&p, &b);
                if (*p != ']') {
                        e->why = "expected ']' after a slice [M:N]";
                        e->at = (size_t)(p - start);
                        return NULL;
                }
                a = has_a ? (a < 0 ? size + a : a) : 0;
                b = has_b ? (b < 0 ? size + b : b) : size;
                a = a < 0 ? 0 : a > size ? size : a;
                b = b < a ? a : b > size ? size : b;
                return sel_map(node, a, b, p + 1, start, e);
        }
        if (!has_a || *p != ']') {
                e->why = "expected [N], [*] or [M:N]";
                e->at = (size_t)(p - start);
                return NULL;
        }
        if (a < 0)
                a += size;
        return sel_eval(a >= 0 && a < size ? cJSON_GetArrayItem(node, (int)a) : NULL, p + 1, start, e);
}

/* Resolve JSON Pointer ptr in root. Returns the value (borrowed), or NULL with *ret_why. */
static const cJSON *
sel_pointer(const cJSON *root, const char *ptr, const char **ret_why)
{
        const cJSON *node = root;
        const char *p = ptr;

        while (*p == '/') {
                char tok[FS_JSON_NAME_MAX + 1];
                size_t n = 0;
                p++;
                while (*p && *p != '/') {
                        char c = *p++;
                        if (c == '~') {
                                if (*p != '0' && *p != '1') {
                                        *ret_why = "'~' must be followed by 0 or 1 (RFC 6901)";
                                        return NULL;
                                }
                                c = *p++ == '0' ? '~' : '/';
                        }
                        if (n == FS_JSON_NAME_MAX) {
                                *ret_why = "a reference token is too long";
                                return NULL;
                        }
                        tok[n++] = c;
                }
                tok[n] = '\0';
                if (cJSON_IsObject(node)) {
                        node = cJSON_GetObjectItemCaseSensitive(node, tok);
                } else if (cJSON_IsArray(node)) {
                        char *end;
                        errno = 0;
                        unsigned long i = strtoul(tok, &end, 10);
                        if (n == 0 || *end || errno || (tok[0] == '0' && n > 1) || tok[0] == '-' ||
                            tok[0] == '+' || i >= (unsigned long)cJSON_GetArraySize(node)) {
                                *ret_why = "no such array element";
                                return NULL;
                        }
                        node = cJSON_GetArrayItem(node, (int)i);
                } else {
                        node = NULL;
                }
                if (!node) {
                        *ret_why = "no such member";
                        return NULL;
                }
        }
        return node;
}

/* Line and column (1-based) of byte offset off in buf. */
static void
sel_line_col(const char *buf, size_t off, size_t *ret_line, size_t *ret_col)
{
        size_t line = 1, col = 1;

        for (size_t i = 0; i < off; i++) {
                if (buf[i] == '\n')
                        line++, col = 1;
                else
                        col++;
        }
        *ret_line = line;
        *ret_col = col;
}

/* Select the value for selector sel (select[idx]) into *ret (a new value). Returns 0 or a
 * negative errno with err filled. */
static int
sel_one(const cJSON *root, const char *sel, size_t idx, cJSON **ret, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        cJSON *v;

        if (sel[0] == '/' || sel[0] == '\0') {
                const char *why = NULL;
                const cJSON *found = sel_pointer(root, sel, &why);
                if (!found)
                        return abm_error_set(err, -ENOENT, "select[%zu] '%s': %s", idx,
                                             fs_quote(sel, q, sizeof(q)), why);
                v = cJSON_Duplicate(found, true);
        } else {
                struct sel_error e = { 0 };
                v = sel_eval(root, sel, sel, &e);
                if (!v && e.why)
                        return abm_error_set(err, -EINVAL,
                                             "select[%zu] '%s': %s at character %zu (a selector is a "
                                             "JSON Pointer such as /items/0/title, or a projection such as "
                                             "items[*].{number,title})",
                                             idx, fs_quote(sel, q, sizeof(q)), e.why, e.at + 1);
        }
        if (!v)
                return abm_error_set(err, -ENOMEM, "out of memory");
        *ret = v;
        return 0;
}

const char fs_read_json_schema[] =
        "{\"type\":\"object\",\"properties\":{"
        "\"path\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,\"description\":"
        "\"A JSON file (at most 16 MiB) under the allowed roots.\"},"
        "\"select\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":32,\"items\":{\"type\":\"string\","
        "\"maxLength\":1024},\"description\":"
        "\"What to return: JSON Pointers (/items/0/title) or projections: member names joined by '.', "
        "[N], [*] (each element), [M:N] (a slice), and a final {a,b} keeping those members, e.g. "
        "[*].{number,title,state} or items[0:10].title.\"}},"
        "\"required\":[\"path\",\"select\"],\"additionalProperties\":false}";

int
fs_read_json(struct abm_call *call, struct abm_error *err)
{
        char q[FS_QUOTE_MAX + 8];
        const char *path = NULL;
        const struct abm_json *sels;
        struct stat st;
        _cleanup_free_ char *buf = NULL, *text = NULL;
        cJSON *root = NULL, *out = NULL;
        int r;

        if ((r = fs_arg_path(call, "path", &path, err)) < 0)
                return r;
        if (abm_json_get_array(abm_call_args(call), "select", &sels) < 0 || abm_json_array_size(sels) == 0 ||
            abm_json_array_size(sels) > FS_JSON_SELECT_MAX)
                return abm_error_set(err, -EINVAL, "'select' must be a list of 1 to %d selectors",
                                     FS_JSON_SELECT_MAX);
        size_t n_sel = abm_json_array_size(sels);
        for (size_t i = 0; i < n_sel; i++)
                if (!abm_json_string(abm_json_array_at(sels, i)))
                        return abm_error_set(err, -EINVAL, "select[%zu] must be a string", i);
        _cleanup_close_ int fd = fs_open_regular(path, &st, err);
        if (fd < 0)
                return fd;
        fs_quote(path, q, sizeof(q));
        if (st.st_size > FS_JSON_FILE_MAX)
                return abm_error_set(err, -EFBIG,
                                     "'%s' is %lld bytes: fs.read_json parses files of up to %d MiB "
                                     "(use fs.grep or fs.read_file with lines)",
                                     q, (long long)st.st_size, FS_JSON_FILE_MAX >> 20);
        size_t size = (size_t)st.st_size;
        buf = malloc(size + 1);
        if (!buf)
                return abm_error_set(err, -ENOMEM, "out of memory");
        ssize_t got = fs_pread_all(fd, buf, size, 0);
        if (got < 0)
                return abm_error_set(err, (int)got, "cannot read '%s': %s", q, strerror((int)-got));
        size = (size_t)got;
        buf[size] = '\0';
        size_t bad, line, col;
        if (memchr(buf, '\0', size) || (bad = ab_utf8_scan(buf, size, false)) != size) {
                const char *nul = memchr(buf, '\0', size);
                size_t at = nul ? (size_t)(nul - buf) : bad;
                sel_line_col(buf, at, &line, &col);
                return abm_error_set(err, -EINVAL,
                                     "'%s' is not JSON: byte %zu (line %zu, column %zu) is not UTF-8 "
                                     "text",
                                     q, at, line, col);
        }
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(buf, size, &end, false);
        if (!root) {
                const char *ep = cJSON_GetErrorPtr();
                size_t at = ep && ep >= buf && ep <= buf + size ? (size_t)(ep - buf) : 0;
                sel_line_col(buf, at, &line, &col);
                return abm_error_set(err, -EINVAL,
                                     "'%s' is not valid JSON: error near line %zu, column %zu "
                                     "(byte %zu), or nested too deeply",
                                     q, line, col, at);
        }
        for (; end && end < buf + size; end++)
                if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
                        sel_line_col(buf, (size_t)(end - buf), &line, &col);
                        r = abm_error_set(err, -EINVAL,
                                          "'%s' is not valid JSON: more text after the value, at "
                                          "line %zu, column %zu",
                                          q, line, col);
                        goto out;
                }

        if (n_sel == 1) {
                r = sel_one(root, abm_json_string(abm_json_array_at(sels, 0)), 0, &out, err);
                if (r < 0)
                        goto out;
        } else {
                out = cJSON_CreateObject();
                if (!out) {
                        r = abm_error_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
                for (size_t i = 0; i < n_sel; i++) {
                        const char *s = abm_json_string(abm_json_array_at(sels, i));
                        cJSON *v = NULL;
                        if ((r = sel_one(root, s, i, &v, err)) < 0)
                                goto out;
                        if (cJSON_GetObjectItemCaseSensitive(out, s) || !cJSON_AddItemToObject(out, s, v))
                                cJSON_Delete(v);
                }
        }
        text = cJSON_PrintUnformatted(out);
        if (!text) {
                r = abm_error_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        size_t cost = fs_text_cost(text, strlen(text)), budget = fs_budget(call);
        if (cost > budget) {
                r = abm_error_set(err, -E2BIG,
                                  "the selection is %zu bytes, more than this result allows (%zu): "
                                  "select fewer members, or a slice such as items[0:50]",
                                  cost, budget);
                goto out;
        }
        r = abm_call_text(call, text, (size_t)-1);
        if (r < 0)
                r = abm_error_set(err, r, "cannot add the text: %s", strerror(-r));
out:
        cJSON_Delete(root);
        cJSON_Delete(out);
        return r;
}
