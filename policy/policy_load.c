/* SPDX-License-Identifier: MIT */
/* The policy loader: YAML (libyaml event API) → struct ab_policy.
 *
 * Each file is first turned into a small tree of nodes with their line:column marks, with
 * the structural limits enforced while it is built (file size, nesting depth, items per
 * list or mapping, one document, no aliases, no duplicate keys). The tree is then walked
 * section by section into the policy, collecting every error as "file:line:column:
 * message". Checks that need all files (secrets referenced by tools, operations allowed
 * for a secret's type, tokens.ttl_s <= tokens.max_ttl_s) run after the last file.
 *
 * Merge rules for <dir>/policy.d/ *.yaml drop-ins (read after the main file, in strcmp
 * order of their names): `secrets` and `modules` are mappings keyed by name and a name may
 * be defined only once across all files; `tools` lists are appended in file order;
 * in `runs`, `tokens`, `jwt`, `clients`, `audit` and `broker` every key set by a later file
 * replaces the value set by an earlier one (a list such as clients.uids is replaced whole).
 * docs/policy.md documents the format. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "common/macros.h"
#include "common/limits.h"
#include "common/name.h"
#include "common/regex.h"
#include "common/utf8.h"
#include "policy/policy.h"

#define MAX_ERRORS 1000              /* error lines collected before the rest are dropped */
#define MAX_ERROR_LINE 400           /* longest single error message (bytes) */
#define MAX_STRING 4096              /* other strings */
#define MAX_PATTERN AB_REGEX_MAX_LEN /* longest argument regex (1024) */
#define MAX_RATE 1000000.0           /* calls per second */
#define MAX_BURST 1000000
#define MIN_RESULT_BYTES 256
#define MAX_RESULT_BYTES (16 * 1024 * 1024)
#define MAX_ARGS_BYTES (16 * 1024 * 1024)
#define MAX_TIMEOUT_MS 3600000 /* one hour */
#define MAX_TTL_S 86400
#define MAX_DURATION_S 31536000 /* one year */
#define MAX_OPEN_RUNS 65536
#define MAX_USES 1000000
#define MAX_CALLS 1000000000
#define MAX_SERVER_ARGS 256  /* a server's command-line arguments */
#define MAX_SERVER_ENV 256   /* a server's environment variables (plain and secret) */
#define MAX_SERVER_TOOLS 128 /* a server's exposed tools */
#define MAX_START_TIMEOUT_MS 300000
#define DEFAULT_START_TIMEOUT_MS 10000

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* ---- the YAML tree ---- */

enum ykind {
        Y_BAD, /* an alias or a refused node, already reported */
        Y_SCALAR,
        Y_SEQ,
        Y_MAP,
};

struct ynode {
        enum ykind kind;
        unsigned line, col; /* 1-based */
        char *str;          /* scalar text (no embedded NUL) */
        size_t len;
        bool plain;           /* plain and untagged: subject to type resolution */
        struct ynode **items; /* sequence: items; mapping: key, value, key, value, ... */
        size_t n, cap;
};

/* A grant seen in a tool rule, checked once every file is loaded. op == 0: the secret
 * name (must exist); else one operation (must suit the secret's type). */
struct grant_ref {
        size_t tool, grant;
        unsigned op;
        struct ab_policy_where where;
};

struct loader {
        struct ab_policy *p;
        const char *file; /* current file, points into p->files */
        FILE *errf;       /* collected error lines */
        char *errbuf;
        size_t errlen;
        unsigned n_errors;
        bool oom;
        int io_error; /* first -errno from reading a file */
        struct grant_ref *refs;
        size_t n_refs, cap_refs;
        struct ab_policy_where w_ttl, w_max_ttl; /* where tokens.ttl_s/max_ttl_s were set */
};

static void
ynode_free(struct ynode *n)
{
        if (!n)
                return;
        for (size_t i = 0; i < n->n; i++)
                ynode_free(n->items[i]);
        free(n->items);
        free(n->str);
        free(n);
}

/* Grow *arr (of *cap elements of size el) so that it holds at least need elements.
 * Returns 0 or -ENOMEM. */
static int
grow(void *arr, size_t *cap, size_t need, size_t el)
{
        void **a = arr;
        size_t c;
        void *q;

        if (need <= *cap)
                return 0;
        c = *cap ? *cap * 2 : 8;
        if (c < need)
                c = need;
        q = reallocarray(*a, c, el);
        if (!q)
                return -ENOMEM;
        *a = q;
        *cap = c;
        return 0;
}

/* Make room for element n of an array that only keeps its count n: its capacity is 0
 * when empty, else the smallest power of two >= max(n, 8). Returns 0 or -ENOMEM. */
static int
append_slot(void *arr, size_t n, size_t el)
{
        size_t cap = n;

        if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
                return 0;
        return grow(arr, &cap, n == 0 ? 8 : n * 2, el);
}

/* ---- errors ---- */

/* Append one error line at file:line:column (line 0: no position). Control characters in
 * the message are replaced and long messages cut, so every error stays one line. */
AB_PRINTF(5, 0)
static void
verr_at(struct loader *l, const char *file, unsigned line, unsigned col, const char *fmt, va_list ap)
{
        char msg[MAX_ERROR_LINE + 4];
        int n;

        l->n_errors++;
        if (l->n_errors > MAX_ERRORS) {
                if (l->n_errors == MAX_ERRORS + 1)
                        fprintf(l->errf, "%s: too many errors, the rest are not shown\n", file);
                return;
        }
        /* The 3 bytes past MAX_ERROR_LINE show whether a UTF-8 sequence straddles the cut. */
        n = vsnprintf(msg, sizeof(msg), fmt, ap);
        if (n > MAX_ERROR_LINE) {
                size_t end = ab_utf8_floor(msg, strlen(msg), MAX_ERROR_LINE);
                strcpy(msg + end, "...");
        }
        for (char *c = msg; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        *c = '?';
        if (line > 0)
                fprintf(l->errf, "%s:%u:%u: %s\n", file, line, col, msg);
        else
                fprintf(l->errf, "%s: %s\n", file, msg);
}

AB_PRINTF(5, 6)
static void
err_at(struct loader *l, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        verr_at(l, file, line, col, fmt, ap);
        va_end(ap);
}

/* An error at a node of the current file. */
AB_PRINTF(3, 4)
static void
err(struct loader *l, const struct ynode *n, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        verr_at(l, l->file, n->line, n->col, fmt, ap);
        va_end(ap);
}

static struct ab_policy_where
where_of(const struct loader *l, const struct ynode *n)
{
        return (struct ab_policy_where){ .file = l->file, .line = n->line, .column = n->col };
}

/* ---- YAML text → tree ---- */

/* Report a libyaml error with the position of the problem. Reader errors (bad encoding,
 * control characters) only carry a byte offset: count lines up to it. */
static void
report_yaml_error(struct loader *l, const yaml_parser_t *parser, const char *text, size_t len)
{
        unsigned line, col;
        const char *problem = parser->problem ? parser->problem : "unknown error";

        if (parser->error == YAML_READER_ERROR) {
                size_t off = parser->problem_offset < len ? parser->problem_offset : len;
                line = 1;
                col = 1;
                for (size_t i = 0; i < off; i++) {
                        if (text[i] == '\n') {
                                line++;
                                col = 1;
                        } else if (((unsigned char)text[i] & 0xc0) != 0x80)
                                col++;
                }
                err_at(l, l->file, line, col, "YAML error: %s", problem);
                return;
        }
        line = (unsigned)parser->problem_mark.line + 1;
        col = (unsigned)parser->problem_mark.column + 1;
        if (parser->context)
                err_at(l, l->file, line, col, "YAML syntax error: %s (%s at line %u column %u)", problem,
                       parser->context, (unsigned)parser->context_mark.line + 1,
                       (unsigned)parser->context_mark.column + 1);
        else
                err_at(l, l->file, line, col, "YAML syntax error: %s", problem);
}

struct keyref {
        const struct ynode *key;
        size_t pos;
};

static int
keyref_cmp(const void *a, const void *b)
{
        const struct keyref *x = a, *y = b;
        int c = strcmp(x->key->str, y->key->str);
        if (c != 0)
                return c;
        return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Report every key that occurs more than once in mapping m (sorting keeps this
 * O(n log n) for the largest mappings). Returns 0 or -ENOMEM. */
static int
check_duplicate_keys(struct loader *l, const struct ynode *m)
{
        _cleanup_free_ struct keyref *keys = NULL;
        size_t n = 0;

        if (m->n < 4)
                return 0;
        keys = calloc(m->n / 2, sizeof(*keys));
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i + 1 < m->n; i += 2)
                if (m->items[i]->kind == Y_SCALAR)
                        keys[n++] = (struct keyref){ m->items[i], i };
        qsort(keys, n, sizeof(*keys), keyref_cmp);
        for (size_t i = 1, first = 0; i < n; i++) {
                if (strcmp(keys[i].key->str, keys[first].key->str) != 0) {
                        first = i;
                        continue;
                }
                err(l, keys[i].key, "duplicate key '%s' (first at line %u column %u)", keys[i].key->str,
                    keys[first].key->line, keys[first].key->col);
        }
        return 0;
}

/* Whether an explicit tag is one we accept, and what it means for a scalar: plain
 * (resolve the type from the text) or string. Returns false for unsupported tags. */
static bool
tag_ok(const char *tag, bool collection, bool *ret_plain)
{
        static const char *const typed[] = { "int", "float", "bool", "null" };

        if (!tag)
                return true;
        if (strcmp(tag, "!") == 0) {
                *ret_plain = false;
                return true;
        }
        if (strncmp(tag, YAML_TAG_PREFIX, strlen(YAML_TAG_PREFIX)) != 0)
                return false;
        tag += strlen(YAML_TAG_PREFIX);
        if (collection)
                return strcmp(tag, "map") == 0 || strcmp(tag, "seq") == 0;
        if (strcmp(tag, "str") == 0) {
                *ret_plain = false;
                return true;
        }
        for (size_t i = 0; i < AB_ELEMENTSOF(typed); i++)
                if (strcmp(tag, typed[i]) == 0) {
                        *ret_plain = true;
                        return true;
                }
        return false;
}

/* Attach node to the innermost open collection, or make it the root. Returns 0, -EINVAL
 * (too many items, reported) or -ENOMEM. On failure node is freed. */
static int
attach(struct loader *l, struct ynode **stack, size_t depth, struct ynode **root, struct ynode *node)
{
        struct ynode *parent;

        if (depth == 0) {
                *root = node;
                return 0;
        }
        parent = stack[depth - 1];
        if ((parent->kind == Y_MAP ? parent->n / 2 : parent->n) >= AB_POLICY_MAX_ITEMS) {
                err(l, node, "more than %d entries in one %s", AB_POLICY_MAX_ITEMS,
                    parent->kind == Y_MAP ? "mapping" : "list");
                ynode_free(node);
                return -EINVAL;
        }
        if (grow(&parent->items, &parent->cap, parent->n + 1, sizeof(*parent->items)) < 0) {
                ynode_free(node);
                return -ENOMEM;
        }
        parent->items[parent->n++] = node;
        return 0;
}

/* Build the node for one scalar event. Returns the node or NULL (out of memory). */
static struct ynode *
scalar_node(struct loader *l, const yaml_event_t *ev, struct ynode *n)
{
        const char *value = (const char *)ev->data.scalar.value;
        size_t len = ev->data.scalar.length;
        bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;

        if (!tag_ok((const char *)ev->data.scalar.tag, false, &plain)) {
                err(l, n, "unsupported YAML tag '%s'", (const char *)ev->data.scalar.tag);
                return n; /* stays Y_BAD */
        }
        if (memchr(value, 0, len)) {
                err(l, n, "NUL character in a string");
                return n;
        }
        n->str = strndup(value, len);
        if (!n->str) {
                free(n);
                return NULL;
        }
        n->kind = Y_SCALAR;
        n->len = len;
        n->plain = plain;
        return n;
}

/* Parse text into a tree. *ret is NULL for an empty document. Returns 0, -EINVAL (a
 * reported YAML error or limit) or -ENOMEM. Non-fatal problems (aliases, tags, duplicate
 * keys) are reported and parsing goes on, so that later errors are found too. */
static int
yaml_to_tree(struct loader *l, const char *text, size_t len, struct ynode **ret)
{
        yaml_parser_t parser;
        struct ynode *stack[AB_POLICY_MAX_DEPTH];
        struct ynode *root = NULL;
        size_t depth = 0;
        unsigned docs = 0;
        bool done = false;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

        while (!done && r == 0) {
                yaml_event_t ev;
                struct ynode *n;

                if (!yaml_parser_parse(&parser, &ev)) {
                        if (parser.error == YAML_MEMORY_ERROR)
                                r = -ENOMEM;
                        else {
                                report_yaml_error(l, &parser, text, len);
                                r = -EINVAL;
                        }
                        break;
                }

                switch (ev.type) {
                case YAML_STREAM_END_EVENT: done = true; break;
                case YAML_DOCUMENT_START_EVENT:
                        if (docs > 0) {
                                err_at(l, l->file, (unsigned)ev.start_mark.line + 1,
                                       (unsigned)ev.start_mark.column + 1,
                                       "more than one YAML document in a policy file");
                                r = -EINVAL;
                        }
                        break;
                case YAML_DOCUMENT_END_EVENT: docs++; break;
                case YAML_ALIAS_EVENT:
                case YAML_SCALAR_EVENT:
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT:
                        n = calloc(1, sizeof(*n));
                        if (!n) {
                                r = -ENOMEM;
                                break;
                        }
                        n->kind = Y_BAD;
                        n->line = (unsigned)ev.start_mark.line + 1;
                        n->col = (unsigned)ev.start_mark.column + 1;
                        if (ev.type == YAML_ALIAS_EVENT)
                                err(l, n, "YAML aliases are not allowed");
                        else if (ev.type == YAML_SCALAR_EVENT) {
                                n = scalar_node(l, &ev, n);
                                if (!n) {
                                        r = -ENOMEM;
                                        break;
                                }
                        } else {
                                bool is_map = ev.type == YAML_MAPPING_START_EVENT;
                                const char *tag = (const char *)(is_map ? ev.data.mapping_start.tag
                                                                        : ev.data.sequence_start.tag);
                                bool ignored;
                                if (depth >= AB_POLICY_MAX_DEPTH) {
                                        err(l, n, "nesting deeper than %d levels", AB_POLICY_MAX_DEPTH);
                                        free(n);
                                        r = -EINVAL;
                                        break;
                                }
                                if (!tag_ok(tag, true, &ignored))
                                        err(l, n, "unsupported YAML tag '%s'", tag);
                                n->kind = is_map ? Y_MAP : Y_SEQ;
                        }
                        r = attach(l, stack, depth, &root, n);
                        if (r == 0 &&
                            (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT))
                                stack[depth++] = n;
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        if (depth > 0) {
                                depth--;
                                if (stack[depth]->kind == Y_MAP)
                                        r = check_duplicate_keys(l, stack[depth]);
                        }
                        break;
                default: break;
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&parser);
        if (r < 0) {
                ynode_free(root);
                return r;
        }
        *ret = root;
        return 0;
}

/* ---- scalar types ---- */

static bool
is_null(const struct ynode *n)
{
        return n->kind == Y_SCALAR && n->plain &&
               (n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
                strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0);
}

/* 1 for true, 0 for false, -1 for anything else (YAML 1.2 core schema spellings). */
static int
scalar_bool(const struct ynode *n)
{
        static const char *const t[] = { "true", "True", "TRUE" }, *const f[] = { "false", "False",
                                                                                  "FALSE" };

        if (n->kind != Y_SCALAR || !n->plain)
                return -1;
        for (size_t i = 0; i < AB_ELEMENTSOF(t); i++) {
                if (strcmp(n->str, t[i]) == 0)
                        return 1;
                if (strcmp(n->str, f[i]) == 0)
                        return 0;
        }
        return -1;
}

static bool
is_decimal(const char *s)
{
        if (*s == '-' || *s == '+')
                s++;
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isdigit((unsigned char)*s))
                        return false;
        return true;
}

/* A YAML 1.2 core float (or int) in decimal notation: [-+]?(.d+|d+(.d*)?)([eE][-+]?d+)? */
static bool
is_float_syntax(const char *s)
{
        bool digits = false;

        if (*s == '-' || *s == '+')
                s++;
        for (; isdigit((unsigned char)*s); s++)
                digits = true;
        if (*s == '.')
                for (s++; isdigit((unsigned char)*s); s++)
                        digits = true;
        if (!digits)
                return false;
        if (*s == 'e' || *s == 'E') {
                s++;
                if (*s == '-' || *s == '+')
                        s++;
                if (!isdigit((unsigned char)*s))
                        return false;
                while (isdigit((unsigned char)*s))
                        s++;
        }
        return *s == '\0';
}

/* Parse a plain decimal number into *ret (finite). Returns false if n is not one. */
static bool
scalar_double(const struct ynode *n, double *ret)
{
        double v;

        if (n->kind != Y_SCALAR || !n->plain || !is_float_syntax(n->str))
                return false;
        errno = 0;
        v = strtod(n->str, NULL);
        if (errno == ERANGE || !isfinite(v))
                return false;
        *ret = v;
        return true;
}

static const char *
describe(const struct ynode *n)
{
        switch (n->kind) {
        case Y_SEQ: return "a list";
        case Y_MAP: return "a mapping";
        default: return is_null(n) ? "empty" : "a string";
        }
}

/* Read an integer in [min, max] from n into *ret. Reports and returns false otherwise. */
static bool
get_int(struct loader *l, const struct ynode *n, const char *what, long long min, long long max,
        long long *ret)
{
        long long v;

        if (n->kind == Y_BAD)
                return false;
        if (n->kind != Y_SCALAR || !n->plain || !is_decimal(n->str)) {
                err(l, n, "%s must be an integer, not %s", what,
                    n->kind != Y_SCALAR || is_null(n)     ? describe(n)
                    : n->plain && is_float_syntax(n->str) ? "a decimal number"
                                                          : "a string");
                return false;
        }
        errno = 0;
        v = strtoll(n->str, NULL, 10);
        if (errno == ERANGE || v < min || v > max) {
                err(l, n, "%s must be between %lld and %lld", what, min, max);
                return false;
        }
        *ret = v;
        return true;
}

static bool
get_uint(struct loader *l, const struct ynode *n, const char *what, long long min, long long max,
         unsigned *ret)
{
        long long v;
        if (!get_int(l, n, what, min, max, &v))
                return false;
        *ret = (unsigned)v;
        return true;
}

static bool
get_size(struct loader *l, const struct ynode *n, const char *what, long long min, long long max,
         size_t *ret)
{
        long long v;
        if (!get_int(l, n, what, min, max, &v))
                return false;
        *ret = (size_t)v;
        return true;
}

static bool
get_bool(struct loader *l, const struct ynode *n, const char *what, bool *ret)
{
        int b;

        if (n->kind == Y_BAD)
                return false;
        b = scalar_bool(n);
        if (b < 0) {
                err(l, n, "%s must be true or false", what);
                return false;
        }
        *ret = b;
        return true;
}

/* The text of a non-empty scalar of at most max bytes, or NULL (reported). */
static const char *
get_text(struct loader *l, const struct ynode *n, const char *what, size_t max)
{
        if (n->kind == Y_BAD)
                return NULL;
        if (n->kind != Y_SCALAR || is_null(n)) {
                err(l, n, "%s must be a string, not %s", what, describe(n));
                return NULL;
        }
        if (n->len == 0) {
                err(l, n, "%s must not be empty", what);
                return NULL;
        }
        if (n->len > max) {
                err(l, n, "%s is longer than %zu bytes", what, max);
                return NULL;
        }
        return n->str;
}

/* Replace *ret with a copy of the string in n. Returns false on a reported error. */
static bool
get_str(struct loader *l, const struct ynode *n, const char *what, size_t max, char **ret)
{
        const char *s = get_text(l, n, what, max);
        char *c;

        if (!s)
                return false;
        c = strdup(s);
        if (!c) {
                l->oom = true;
                return false;
        }
        free(*ret);
        *ret = c;
        return true;
}

/* Names of secrets, modules and arguments: letters, digits, '_', '-' (and '.' if dot),
 * not starting with '-' or '.', at most AB_NAME_MAX bytes. */
static bool
valid_name(const char *s, bool dot)
{
        return ab_name_valid(s, AB_NAME_MAX, AB_NAME_NO_LEADING_PUNCT | (dot ? AB_NAME_DOT : 0));
}

/* Check a tool name or fnmatch(3) glob: name characters plus '*', '?' and bracket
 * expressions. Sets *ret_glob. Returns NULL if valid, else why not. */
static const char *
check_match(const char *s, bool *ret_glob)
{
        bool glob = false;

        if (!*s)
                return "is empty";
        if (strlen(s) > AB_NAME_MAX)
                return "is too long";
        for (; *s; s++) {
                if (*s == '*' || *s == '?') {
                        glob = true;
                        continue;
                }
                if (*s == '[') {
                        glob = true;
                        s++;
                        if (*s == '!' || *s == '^')
                                s++;
                        if (*s == ']')
                                s++;
                        for (; *s && *s != ']'; s++)
                                if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
                                        return "has a character not allowed in a bracket expression";
                        if (!*s)
                                return "has an unterminated '['";
                        continue;
                }
                if (*s == ']')
                        return "has ']' without '['";
                if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
                        return "has a character not allowed in a tool name";
        }
        *ret_glob = glob;
        return NULL;
}

/* ---- walking mappings ---- */

typedef void (*key_fn)(struct loader *l, const struct ynode *key, const struct ynode *val, void *ctx);

struct keydef {
        const char *name;
        key_fn fn;
};

/* Check that n is a mapping (an empty value counts as an empty mapping). Reports and
 * returns false otherwise. */
static bool
want_map(struct loader *l, const struct ynode *n, const char *what)
{
        if (n->kind == Y_MAP || is_null(n))
                return true;
        if (n->kind != Y_BAD)
                err(l, n, "%s must be a mapping, not %s", what, describe(n));
        return false;
}

/* Call fn for every key: value pair of mapping m, with a string key. */
static void
for_pairs(struct loader *l, const struct ynode *m,
          void (*fn)(struct loader *, const struct ynode *, const struct ynode *, void *), void *ctx)
{
        if (m->kind != Y_MAP)
                return;
        for (size_t i = 0; i + 1 < m->n; i += 2) {
                const struct ynode *k = m->items[i], *v = m->items[i + 1];
                if (k->kind == Y_BAD)
                        continue;
                if (k->kind != Y_SCALAR) {
                        err(l, k, "mapping keys must be strings, not %s", describe(k));
                        continue;
                }
                fn(l, k, v, ctx);
        }
}

struct keywalk {
        const char *what;
        const struct keydef *keys;
        size_t n_keys;
        void *ctx;
};

static void
keywalk_pair(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        const struct keywalk *w = ctx;
        char expected[256];
        size_t off = 0;

        for (size_t j = 0; j < w->n_keys; j++)
                if (strcmp(k->str, w->keys[j].name) == 0) {
                        w->keys[j].fn(l, k, v, w->ctx);
                        return;
                }
        expected[0] = '\0';
        for (size_t j = 0; j < w->n_keys && off < sizeof(expected); j++)
                off += (size_t)snprintf(expected + off, sizeof(expected) - off, "%s%s", j ? ", " : "",
                                        w->keys[j].name);
        err(l, k, "unknown key '%s' in %s (expected %s)", k->str, w->what, expected);
}

/* Walk mapping m: each key must be one of keys; unknown keys are reported. */
static void
walk_keys(struct loader *l, const struct ynode *m, const char *what, const struct keydef *keys,
          size_t n_keys, void *ctx)
{
        struct keywalk w = { what, keys, n_keys, ctx };

        if (!want_map(l, m, what))
                return;
        for_pairs(l, m, keywalk_pair, &w);
}

#define WALK(l, m, what, keys, ctx) walk_keys(l, m, what, keys, AB_ELEMENTSOF(keys), ctx)

/* ---- user and group names ---- */

/* Resolve a user (want_group false) or group name, or a numeric id, into *ret.
 * Reports and returns false if unknown. */
static bool
resolve_id(struct loader *l, const struct ynode *n, const char *what, bool want_group, unsigned *ret)
{
        const char *s = get_text(l, n, what, 256);
        _cleanup_free_ char *buf = NULL;
        size_t size = 1024;
        int r;

        if (!s)
                return false;
        if (is_decimal(s) && isdigit((unsigned char)s[0])) {
                unsigned long long v;
                errno = 0;
                v = strtoull(s, NULL, 10);
                if (errno == ERANGE || v >= (unsigned)-1) {
                        err(l, n, "%s: id %s is out of range", what, s);
                        return false;
                }
                *ret = (unsigned)v;
                return true;
        }
        for (;;) {
                char *nb = realloc(buf, size);
                if (!nb) {
                        l->oom = true;
                        return false;
                }
                buf = nb;
                if (want_group) {
                        struct group gr, *res = NULL;
                        r = getgrnam_r(s, &gr, buf, size, &res);
                        if (r == 0 && res)
                                *ret = (unsigned)res->gr_gid;
                        else if (r == 0)
                                r = -1;
                } else {
                        struct passwd pw, *res = NULL;
                        r = getpwnam_r(s, &pw, buf, size, &res);
                        if (r == 0 && res)
                                *ret = (unsigned)res->pw_uid;
                        else if (r == 0)
                                r = -1;
                }
                if (r == ERANGE && size < 1024 * 1024) {
                        size *= 4;
                        continue;
                }
                break;
        }
        if (r == 0)
                return true;
        if (r == -1 || r == ENOENT || r == ESRCH)
                err(l, n, "%s: unknown %s '%s'", what, want_group ? "group" : "user", s);
        else
                err(l, n, "%s: cannot look up %s '%s': %s", what, want_group ? "group" : "user", s,
                    strerror(r));
        return false;
}

/* Resolve a list of user or group names into a new array. Returns false on errors
 * (all items are still checked and reported). */
static bool
resolve_id_list(struct loader *l, const struct ynode *n, const char *what, bool want_group, unsigned **ret,
                size_t *ret_n)
{
        _cleanup_free_ unsigned *ids = NULL;
        bool ok = true;

        if (n->kind == Y_BAD)
                return false;
        if (is_null(n)) {
                free(*ret);
                *ret = NULL;
                *ret_n = 0;
                return true;
        }
        if (n->kind != Y_SEQ) {
                err(l, n, "%s must be a list, not %s", what, describe(n));
                return false;
        }
        ids = calloc(n->n ? n->n : 1, sizeof(*ids));
        if (!ids) {
                l->oom = true;
                return false;
        }
        for (size_t i = 0; i < n->n; i++)
                if (!resolve_id(l, n->items[i], what, want_group, &ids[i]))
                        ok = false;
        if (!ok)
                return false;
        free(*ret);
        *ret = AB_TAKE_PTR(ids);
        *ret_n = n->n;
        return true;
}

/* ---- secrets ---- */

struct secret_ctx {
        struct ab_policy_secret *s;
        const struct ynode *source_key; /* first source key seen */
};

static void
secret_source(struct loader *l, const struct ynode *k, const struct ynode *v, struct secret_ctx *c,
              enum ab_secret_source src)
{
        const char *s;

        if (c->source_key) {
                err(l, k, "secret '%s' has more than one source (%s and %s)", c->s->name, c->source_key->str,
                    k->str);
                return;
        }
        c->source_key = k;
        c->s->source = src;
        s = get_text(l, v, k->str, src == AB_SRC_FILE ? PATH_MAX - 1 : NAME_MAX);
        if (!s)
                return;
        switch (src) {
        case AB_SRC_CREDENTIAL:
                if (strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
                        err(l, v, "credential must be a file name without '/'");
                        return;
                }
                break;
        case AB_SRC_FILE:
                if (s[0] != '/') {
                        err(l, v, "file must be an absolute path");
                        return;
                }
                break;
        case AB_SRC_ENV:
                for (const char *q = s; *q; q++)
                        if (!(isalpha((unsigned char)*q) || *q == '_' ||
                              (q > s && isdigit((unsigned char)*q)))) {
                                err(l, v, "env must be a variable name ([A-Za-z_][A-Za-z0-9_]*)");
                                return;
                        }
                break;
        }
        get_str(l, v, k->str, MAX_STRING, &c->s->ref);
}

static void
secret_credential(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        secret_source(l, k, v, ctx, AB_SRC_CREDENTIAL);
}
static void
secret_file(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        secret_source(l, k, v, ctx, AB_SRC_FILE);
}
static void
secret_env(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        secret_source(l, k, v, ctx, AB_SRC_ENV);
}
static void
secret_type(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct secret_ctx *c = ctx;
        const char *s = get_text(l, v, "type", 64);

        if (!s)
                return;
        if (strcmp(s, "bytes") == 0)
                c->s->type = AB_SECRET_BYTES;
        else if (strcmp(s, "ed25519") == 0)
                c->s->type = AB_SECRET_ED25519;
        else
                err(l, v, "type must be bytes or ed25519, not '%s'", s);
}

static const struct keydef secret_keys[] = {
        { "credential", secret_credential },
        { "file", secret_file },
        { "env", secret_env },
        { "type", secret_type },
};

/* Where an earlier file defined the entry called name, if it did. The current file's
 * own duplicates are already reported as duplicate keys. */
static const struct ab_policy_where *
defined_before(struct loader *l, const struct ab_policy_where *w)
{
        return w->file != l->file ? w : NULL;
}

/* One `secrets:` entry: name → { credential|file|env: ..., type: ... }. */
static void
secret_entry(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy *p = l->p;
        struct ab_policy_secret *s;
        struct secret_ctx c = { 0 };

        if (!valid_name(k->str, true)) {
                err(l, k, "bad secret name '%s' (letters, digits, '_', '-', '.'; at most %d bytes)", k->str,
                    AB_NAME_MAX);
                return;
        }
        s = (struct ab_policy_secret *)ab_policy_find_secret(p, k->str);
        if (s) {
                const struct ab_policy_where *w = defined_before(l, &s->where);
                if (w)
                        err(l, k, "secret '%s' is already defined at %s:%u:%u", k->str, w->file, w->line,
                            w->column);
                return;
        }
        if (append_slot(&p->secrets, p->n_secrets, sizeof(*p->secrets)) < 0) {
                l->oom = true;
                return;
        }
        s = &p->secrets[p->n_secrets];
        *s = (struct ab_policy_secret){ .type = AB_SECRET_BYTES, .where = where_of(l, k) };
        s->name = strdup(k->str);
        if (!s->name) {
                l->oom = true;
                return;
        }
        p->n_secrets++;
        c.s = s;
        if (!want_map(l, v, "a secret"))
                return;
        WALK(l, v, "a secret", secret_keys, &c);
        if (!c.source_key)
                err(l, k, "secret '%s' needs a source: credential, file or env", k->str);
}

/* `secrets:` — a mapping of name → definition. */
static void
section_secrets(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "secrets"))
                for_pairs(l, v, secret_entry, NULL);
}

/* ---- tools ---- */

struct tool_ctx {
        struct ab_policy_tool *t;
        size_t index; /* index the tool will have in p->tools */
        const struct ynode *match, *burst, *rate_scope;
        bool has_rate;
};

static void
tool_match(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        const char *s = get_text(l, v, "match", MAX_STRING), *why;
        bool glob = false;

        c->match = k;
        if (!s)
                return;
        why = check_match(s, &glob);
        if (why) {
                err(l, v, "bad tool name or glob '%s': %s", s, why);
                return;
        }
        if (get_str(l, v, "match", AB_NAME_MAX, &c->t->match))
                c->t->is_glob = glob;
}

static void
tool_allow(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        get_bool(l, v, "allow", &c->t->allow);
}

/* rate: "N/s", "N/min", "N/h" (N > 0, may have a fraction) or a plain number per second. */
static void
tool_rate(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        static const struct {
                const char *unit;
                double seconds;
        } units[] = {
                { "s", 1 },       { "sec", 1 },  { "second", 1 },  { "min", 60 },
                { "minute", 60 }, { "h", 3600 }, { "hour", 3600 },
        };
        struct tool_ctx *c = ctx;
        double rate = 0, count;
        bool parsed = false;
        const char *slash;

        if (v->kind == Y_BAD)
                return;
        c->has_rate = true;
        if (scalar_double(v, &count)) {
                rate = count;
                parsed = true;
        } else if (v->kind == Y_SCALAR && (slash = strchr(v->str, '/'))) {
                _cleanup_free_ char *num = strndup(v->str, (size_t)(slash - v->str));
                struct ynode tmp = { .kind = Y_SCALAR, .plain = true };
                if (!num) {
                        l->oom = true;
                        return;
                }
                tmp.str = num;
                tmp.len = strlen(num);
                for (size_t i = 0; i < AB_ELEMENTSOF(units); i++)
                        if (strcmp(slash + 1, units[i].unit) == 0 && scalar_double(&tmp, &count)) {
                                rate = count / units[i].seconds;
                                parsed = true;
                                break;
                        }
        }
        if (!parsed) {
                err(l, v, "rate must look like 10/s, 600/min or 1/h");
                return;
        }
        if (!(rate > 0) || rate > MAX_RATE) {
                err(l, v, "rate must be more than 0 and at most %.0f/s", MAX_RATE);
                return;
        }
        c->t->rate = rate;
}

static void
tool_burst(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        c->burst = k;
        get_uint(l, v, "burst", 1, MAX_BURST, &c->t->burst);
}

static void
tool_max_result(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        get_size(l, v, "max_result_bytes", MIN_RESULT_BYTES, MAX_RESULT_BYTES, &c->t->max_result_bytes);
}

static void
tool_max_args(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        get_size(l, v, "max_args_bytes", 2, MAX_ARGS_BYTES, &c->t->max_args_bytes);
}

static void
tool_timeout(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        get_uint(l, v, "timeout_ms", 1, MAX_TIMEOUT_MS, &c->t->timeout_ms);
}

/* Remember a grant (op 0) or one of its operations for the checks after the last file. */
static void
add_ref(struct loader *l, size_t tool, size_t grant, unsigned op, const struct ynode *n)
{
        if (grow(&l->refs, &l->cap_refs, l->n_refs + 1, sizeof(*l->refs)) < 0) {
                l->oom = true;
                return;
        }
        l->refs[l->n_refs++] = (struct grant_ref){ tool, grant, op, where_of(l, n) };
}

/* One entry of a tool's `secrets:` — secret name → list of operations. */
static void
tool_grant(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        struct ab_policy_tool *t = c->t;
        size_t gi = t->n_grants;
        struct ab_policy_grant *g;

        if (!valid_name(k->str, true)) {
                err(l, k, "bad secret name '%s'", k->str);
                return;
        }
        if (append_slot(&t->grants, gi, sizeof(*t->grants)) < 0) {
                l->oom = true;
                return;
        }
        g = &t->grants[gi];
        *g = (struct ab_policy_grant){ .secret = strdup(k->str) };
        if (!g->secret) {
                l->oom = true;
                return;
        }
        t->n_grants++;
        add_ref(l, c->index, gi, 0, k);
        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ) {
                err(l, v, "operations for secret '%s' must be a list such as [read], not %s", k->str,
                    describe(v));
                return;
        }
        if (v->n == 0) {
                err(l, v, "no operations granted on secret '%s'", k->str);
                return;
        }
        for (size_t i = 0; i < v->n; i++) {
                const struct ynode *o = v->items[i];
                const char *s = get_text(l, o, "an operation", 64);
                unsigned op;
                if (!s)
                        continue;
                op = ab_policy_op_from_string(s);
                if (!op) {
                        err(l, o, "unknown operation '%s' (expected read, sign, mint-jwt or inject)", s);
                        continue;
                }
                g->ops |= op;
                add_ref(l, c->index, gi, op, o);
        }
}

static void
tool_secrets(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "a tool's secrets"))
                for_pairs(l, v, tool_grant, ctx);
}

struct argc_ctx {
        struct ab_policy_argc *a;
        const struct ynode *min, *max;
};

static void
argc_pattern(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        const char *s = get_text(l, v, "pattern", MAX_PATTERN);
        char why[256];
        int r;

        if (!s)
                return;
        if (c->a->pattern) { /* cannot happen (duplicate keys), but never leak a regex */
                ab_regex_free(AB_TAKE_PTR(c->a->re));
                free(AB_TAKE_PTR(c->a->pattern));
        }
        r = ab_regex_compile(s, strlen(s), 0, &c->a->re, why, sizeof(why));
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                err(l, v, "bad pattern: %s", why);
                return;
        }
        c->a->pattern = strdup(s);
        if (!c->a->pattern) {
                ab_regex_free(AB_TAKE_PTR(c->a->re));
                l->oom = true;
        }
}

static void
argc_max_length(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        long long len;
        if (get_int(l, v, "max_length", 0, MAX_ARGS_BYTES, &len))
                c->a->max_length = (long)len;
}

static void
argc_required(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        get_bool(l, v, "required", &c->a->required);
}

static void
argc_bound(struct loader *l, const struct ynode *v, const char *what, double *ret, bool *has)
{
        if (v->kind == Y_BAD)
                return;
        if (!scalar_double(v, ret)) {
                err(l, v, "%s must be a number", what);
                return;
        }
        *has = true;
}

static void
argc_min(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        c->min = v;
        argc_bound(l, v, "min", &c->a->min, &c->a->has_min);
}

static void
argc_max(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        c->max = v;
        argc_bound(l, v, "max", &c->a->max, &c->a->has_max);
}

static void
argc_enum(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        char **vals;

        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ || v->n == 0) {
                err(l, v, "enum must be a non-empty list of strings");
                return;
        }
        vals = calloc(v->n, sizeof(*vals));
        if (!vals) {
                l->oom = true;
                return;
        }
        for (size_t i = 0; i < c->a->n_enum; i++) /* a duplicate key: already reported */
                free(c->a->enum_values[i]);
        free(c->a->enum_values);
        c->a->n_enum = 0;
        c->a->enum_values = vals;
        for (size_t i = 0; i < v->n; i++) {
                if (!get_str(l, v->items[i], "an enum value", MAX_STRING, &vals[c->a->n_enum]))
                        continue;
                c->a->n_enum++;
        }
}

/* Add one `beneath:` directory (normalised) to the constraint. Reports a bad one. */
static void
argc_beneath_dir(struct loader *l, const struct ynode *n, struct ab_policy_argc *a)
{
        const char *s = get_text(l, n, "a beneath directory", AB_POLICY_PATH_MAX);
        char *norm = NULL;
        int r;

        if (!s)
                return;
        r = ab_policy_path_normalize(s, &norm);
        if (r == -ENOMEM) {
                l->oom = true;
                return;
        }
        if (r < 0) {
                err(l, n, "beneath: '%s' must be an absolute directory without '..'", s);
                return;
        }
        a->beneath[a->n_beneath++] = norm;
}

/* `beneath: DIR` or `beneath: [DIR, ...]`: the string value, normalised, must be inside one. */
static void
argc_beneath(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct argc_ctx *c = ctx;
        size_t n = v->kind == Y_SEQ ? v->n : 1;

        if (v->kind == Y_BAD)
                return;
        if (v->kind == Y_MAP || n == 0 || n > AB_POLICY_BENEATH_MAX) {
                err(l, v, "beneath must be a directory or a list of 1 to %d directories",
                    AB_POLICY_BENEATH_MAX);
                return;
        }
        for (size_t i = 0; i < c->a->n_beneath; i++) /* a duplicate key: already reported */
                free(c->a->beneath[i]);
        free(c->a->beneath);
        c->a->n_beneath = 0;
        c->a->beneath = calloc(n, sizeof(*c->a->beneath));
        if (!c->a->beneath) {
                l->oom = true;
                return;
        }
        if (v->kind == Y_SEQ)
                for (size_t i = 0; i < v->n; i++)
                        argc_beneath_dir(l, v->items[i], c->a);
        else
                argc_beneath_dir(l, v, c->a);
}

static const struct keydef argc_keys[] = {
        { "pattern", argc_pattern },   { "max_length", argc_max_length },
        { "required", argc_required }, { "min", argc_min },
        { "max", argc_max },           { "enum", argc_enum },
        { "beneath", argc_beneath },
};

/* One entry of a tool's `args:` — argument name → constraints. */
static void
tool_arg(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        struct ab_policy_tool *t = c->t;
        struct argc_ctx ac = { 0 };

        if (k->len == 0 || k->len > AB_NAME_MAX) {
                err(l, k, "argument names must have 1 to %d bytes", AB_NAME_MAX);
                return;
        }
        if (append_slot(&t->args, t->n_args, sizeof(*t->args)) < 0) {
                l->oom = true;
                return;
        }
        ac.a = &t->args[t->n_args];
        *ac.a = (struct ab_policy_argc){ .name = strdup(k->str), .max_length = -1 };
        if (!ac.a->name) {
                l->oom = true;
                return;
        }
        t->n_args++;
        WALK(l, v, "an argument constraint", argc_keys, &ac);
        if (ac.a->has_min && ac.a->has_max && ac.a->min > ac.a->max)
                err(l, ac.max, "max (%g) is below min (%g) for argument '%s'", ac.a->max, ac.a->min, k->str);
}

static void
tool_args(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "args"))
                for_pairs(l, v, tool_arg, ctx);
}

/* `rate_scope: tool` (the default: each tool a glob matches has its own bucket) or `rule`
 * (one bucket shared by every tool the rule matches). */
static void
tool_rate_scope(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct tool_ctx *c = ctx;
        const char *s = get_text(l, v, "rate_scope", 16);

        c->rate_scope = v;
        if (!s)
                return;
        if (strcmp(s, "tool") == 0)
                c->t->rate_per_rule = false;
        else if (strcmp(s, "rule") == 0)
                c->t->rate_per_rule = true;
        else
                err(l, v, "rate_scope must be tool or rule, not '%s'", s);
}

/* ---- egress (a tool rule's `egress:` list) ---- */

#define MAX_EGRESS 64 /* entries in one rule's egress list */
#define MAX_HOST 253  /* a DNS name */
#define MAX_RESPONSE_BYTES (64 * 1024 * 1024)
#define MAX_EGRESS_TIMEOUT_MS 300000

struct egress_ctx {
        struct ab_policy_egress *e;
        const struct ynode *scheme, *port, *methods, *paths, *inject, *limits;
        struct tool_ctx *tc;
};

static void
egress_scheme(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "scheme", 16);

        c->scheme = v;
        if (s && ab_egress_scheme_from_string(s, &c->e->scheme) < 0)
                err(l, v, "unknown scheme '%s' (expected tcp, http or https)", s);
}

/* host: a DNS name (letters, digits, '-', '.'; stored lower-case) or an IP literal. */
static void
egress_host(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "host", MAX_HOST);

        if (!s)
                return;
        if (ab_policy_cidr_parse(s, &c->e->host_ip) == 0 && !strchr(s, '/')) {
                c->e->host_is_ip = true;
        } else {
                for (const char *p = s; *p; p++)
                        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.') {
                                err(l, v,
                                    "bad host '%s': a DNS name or an IP address (no port, no wildcard)", s);
                                return;
                        }
                if (s[0] == '.' || s[0] == '-' || strstr(s, "..")) {
                        err(l, v, "bad host '%s'", s);
                        return;
                }
        }
        if (!get_str(l, v, "host", MAX_HOST, &c->e->host))
                return;
        for (char *p = c->e->host; *p; p++)
                *p = (char)tolower((unsigned char)*p);
}

static void
egress_port(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        c->port = v;
        get_uint(l, v, "port", 1, 65535, &c->e->port);
}

static void
egress_methods(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };
        struct egress_ctx *c = ctx;

        c->methods = v;
        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ || v->n == 0 || v->n > AB_EGRESS_METHODS_MAX) {
                err(l, v, "methods must be a list of 1 to %d HTTP methods", AB_EGRESS_METHODS_MAX);
                return;
        }
        for (size_t i = 0; i < v->n; i++) {
                const char *m = get_text(l, v->items[i], "a method", 16);
                bool ok = false;
                if (!m)
                        continue;
                for (size_t j = 0; j < AB_ELEMENTSOF(known); j++)
                        ok = ok || strcmp(m, known[j]) == 0;
                if (!ok) {
                        err(l, v->items[i],
                            "unknown method '%s' (expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS)",
                            m);
                        continue;
                }
                if (get_str(l, v->items[i], "a method", 16, &c->e->methods[c->e->n_methods]))
                        c->e->n_methods++;
        }
}

/* A list of strings into a new NULL-terminated array *ret / *ret_n, replacing the list of an
 * earlier duplicate key (already reported): min_n to max_n entries (with min_n > 0 the error
 * says "a list of min_n to max_n strings"), each non-empty, at most max bytes and, with check,
 * one check finds no fault in (it returns why not, or NULL). Reports and returns false,
 * leaving *ret as it was, otherwise. */
static bool
get_str_list(struct loader *l, const struct ynode *n, const char *what, size_t max, size_t min_n,
             size_t max_n, const char *(*check)(const char *), char ***ret, size_t *ret_n)
{
        char **v;
        size_t k = 0;

        if (n->kind == Y_BAD)
                return false;
        if (min_n > 0 && (n->kind != Y_SEQ || n->n < min_n || n->n > max_n)) {
                err(l, n, "%s must be a list of %zu to %zu strings", what, min_n, max_n);
                return false;
        }
        if (n->kind != Y_SEQ) {
                err(l, n, "%s must be a list, not %s", what, describe(n));
                return false;
        }
        if (n->n > max_n) {
                err(l, n, "%s has more than %zu entries", what, max_n);
                return false;
        }
        v = calloc(n->n + 1, sizeof(*v));
        if (!v) {
                l->oom = true;
                return false;
        }
        for (size_t i = 0; i < n->n; i++) {
                const char *s, *why;

                if (check && (s = get_text(l, n->items[i], what, max))) {
                        why = check(s);
                        if (why) {
                                err(l, n->items[i], "bad %s '%s': %s", what, s, why);
                                continue;
                        }
                }
                if (get_str(l, n->items[i], what, max, &v[k]))
                        k++;
        }
        if (k != n->n) {
                for (size_t i = 0; i < k; i++)
                        free(v[i]);
                free(v);
                return false;
        }
        for (size_t i = 0; *ret && i < *ret_n; i++)
                free((*ret)[i]);
        free(*ret);
        *ret = v;
        *ret_n = k;
        return true;
}

static const char *
check_path_prefix(const char *s)
{
        if (s[0] != '/')
                return "a path prefix starts with '/'";
        if (strchr(s, '?') || strchr(s, '#') || strchr(s, '%') || strchr(s, '\\') || strstr(s, "/.."))
                return "no query, fragment, percent-encoding, backslash or dot segment";
        return NULL;
}

static void
egress_paths(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        c->paths = v;
        get_str_list(l, v, "path prefix", MAX_STRING, 1, AB_EGRESS_LIST_MAX, check_path_prefix, &c->e->paths,
                     &c->e->n_paths);
}

static void
egress_addresses(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        struct ab_policy_cidr *arr;

        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ || v->n == 0 || v->n > AB_EGRESS_LIST_MAX) {
                err(l, v, "addresses must be a list of 1 to %d address ranges", AB_EGRESS_LIST_MAX);
                return;
        }
        arr = calloc(v->n, sizeof(*arr));
        if (!arr) {
                l->oom = true;
                return;
        }
        free(c->e->addresses);
        c->e->addresses = arr;
        c->e->n_addresses = 0;
        for (size_t i = 0; i < v->n; i++) {
                const char *s = get_text(l, v->items[i], "an address range", 64);
                if (!s)
                        continue;
                if (ab_policy_cidr_parse(s, &arr[c->e->n_addresses]) < 0) {
                        err(l, v->items[i],
                            "bad address range '%s' (expected 10.0.0.0/8, 127.0.0.1 or fd00::/8)", s);
                        continue;
                }
                c->e->n_addresses++;
        }
}

static void
inject_secret(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "inject.secret", AB_NAME_MAX);

        if (s && !valid_name(s, true)) {
                err(l, v, "bad secret name '%s'", s);
                return;
        }
        if (s)
                get_str(l, v, "inject.secret", AB_NAME_MAX, &c->e->inject_secret);
}

static void
inject_header(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "inject.header", 64);

        if (!s)
                return;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
                        err(l, v, "bad header name '%s'", s);
                        return;
                }
        get_str(l, v, "inject.header", 64, &c->e->inject_header);
}

static void
inject_query(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "inject.query", 64);

        if (!s)
                return;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
                        err(l, v, "bad query parameter name '%s'", s);
                        return;
                }
        get_str(l, v, "inject.query", 64, &c->e->inject_query);
}

static void
inject_value(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        const char *s = get_text(l, v, "inject.value", 256), *at;

        if (!s)
                return;
        at = strstr(s, "{secret}");
        if (!at || strstr(at + 1, "{secret}")) {
                err(l, v, "inject.value must hold {secret} exactly once");
                return;
        }
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                        err(l, v, "inject.value must not hold control characters");
                        return;
                }
        get_str(l, v, "inject.value", 256, &c->e->inject_value);
}

static const struct keydef inject_keys[] = {
        { "secret", inject_secret },
        { "header", inject_header },
        { "query", inject_query },
        { "value", inject_value },
};

static void
egress_inject(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;

        c->inject = v;
        WALK(l, v, "inject", inject_keys, c);
        if (v->kind != Y_MAP)
                return;
        if (!c->e->inject_secret)
                err(l, v, "inject needs secret");
        if (!!c->e->inject_header == !!c->e->inject_query)
                err(l, v, "inject needs exactly one of header or query");
}

static void
egress_max_response(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        c->limits = v;
        get_size(l, v, "max_response_bytes", 1, MAX_RESPONSE_BYTES, &c->e->max_response_bytes);
}

static void
egress_timeout(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct egress_ctx *c = ctx;
        c->limits = v;
        get_uint(l, v, "timeout_ms", 1, MAX_EGRESS_TIMEOUT_MS, &c->e->timeout_ms);
}

static const struct keydef egress_keys[] = {
        { "scheme", egress_scheme },      { "host", egress_host },
        { "port", egress_port },          { "methods", egress_methods },
        { "paths", egress_paths },        { "addresses", egress_addresses },
        { "inject", egress_inject },      { "max_response_bytes", egress_max_response },
        { "timeout_ms", egress_timeout },
};

static void
egress_free_contents(struct ab_policy_egress *e)
{
        free(e->host);
        for (size_t i = 0; i < e->n_methods; i++)
                free(e->methods[i]);
        for (size_t i = 0; i < e->n_paths; i++)
                free(e->paths[i]);
        free(e->paths);
        free(e->addresses);
        free(e->inject_secret);
        free(e->inject_header);
        free(e->inject_query);
        free(e->inject_value);
}

/* One entry of a rule's egress list. */
static void
egress_entry(struct loader *l, struct tool_ctx *tc, const struct ynode *n)
{
        struct ab_policy_tool *t = tc->t;
        struct egress_ctx c = { .tc = tc };
        struct ab_policy_egress *e;

        if (n->kind == Y_BAD)
                return;
        if (append_slot(&t->egress, t->n_egress, sizeof(*t->egress)) < 0) {
                l->oom = true;
                return;
        }
        e = &t->egress[t->n_egress++];
        *e = (struct ab_policy_egress){
                .scheme = AB_EGRESS_HTTPS,
                .max_response_bytes = 1024 * 1024,
                .timeout_ms = 10000,
                .where = where_of(l, n),
        };
        c.e = e;
        WALK(l, n, "an egress entry", egress_keys, &c);
        if (n->kind != Y_MAP)
                return;
        if (!e->host)
                err(l, n, "egress entry without host");
        if (!c.port) {
                if (e->scheme == AB_EGRESS_TCP)
                        err(l, n, "a tcp egress entry needs port");
                else
                        e->port = e->scheme == AB_EGRESS_HTTP ? 80 : 443;
        }
        if (e->scheme == AB_EGRESS_TCP) {
                const struct ynode *bad = c.methods  ? c.methods
                                          : c.paths  ? c.paths
                                          : c.inject ? c.inject
                                                     : c.limits;
                if (bad)
                        err(l, bad,
                            "methods, paths, inject, max_response_bytes and timeout_ms are for http and https entries");
        }
        if (e->inject_secret) {
                e->where = where_of(l, c.inject);
                if (!e->inject_value) {
                        e->inject_value = strdup("{secret}");
                        if (!e->inject_value)
                                l->oom = true;
                }
        }
}

static void
tool_egress(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ || v->n > MAX_EGRESS) {
                err(l, v, "egress must be a list of at most %d destinations", MAX_EGRESS);
                return;
        }
        for (size_t i = 0; i < v->n; i++)
                egress_entry(l, ctx, v->items[i]);
}

static const struct keydef tool_keys[] = {
        { "match", tool_match },
        { "allow", tool_allow },
        { "rate", tool_rate },
        { "burst", tool_burst },
        { "max_result_bytes", tool_max_result },
        { "max_args_bytes", tool_max_args },
        { "timeout_ms", tool_timeout },
        { "secrets", tool_secrets },
        { "args", tool_args },
        { "egress", tool_egress },
        { "rate_scope", tool_rate_scope },
};

static void
tool_free_contents(struct ab_policy_tool *t)
{
        free(t->match);
        for (size_t i = 0; i < t->n_grants; i++)
                free(t->grants[i].secret);
        free(t->grants);
        for (size_t i = 0; i < t->n_args; i++) {
                struct ab_policy_argc *a = &t->args[i];
                free(a->name);
                ab_regex_free(a->re);
                free(a->pattern);
                for (size_t j = 0; j < a->n_enum; j++)
                        free(a->enum_values[j]);
                free(a->enum_values);
                for (size_t j = 0; j < a->n_beneath; j++)
                        free(a->beneath[j]);
                free(a->beneath);
        }
        free(t->args);
        for (size_t i = 0; i < t->n_egress; i++)
                egress_free_contents(&t->egress[i]);
        free(t->egress);
}

/* One `tools:` entry. The rule is appended even when it has errors (the load fails
 * anyway), so that later checks do not report follow-up errors. */
static void
tool_entry(struct loader *l, const struct ynode *n)
{
        struct ab_policy *p = l->p;
        struct ab_policy_tool t = {
                .allow = true,
                .max_result_bytes = AB_DEFAULT_MAX_RESULT_BYTES,
                .max_args_bytes = 65536,
                .timeout_ms = 30000,
                .where = where_of(l, n),
        };
        struct tool_ctx c = { .t = &t, .index = p->n_tools };

        if (n->kind == Y_BAD)
                return;
        if (n->kind != Y_MAP) {
                err(l, n, "each entry of tools must be a mapping, not %s", describe(n));
                return;
        }
        WALK(l, n, "a tool rule", tool_keys, &c);
        for (size_t i = 0; i < t.n_egress; i++) {
                const struct ab_policy_egress *e = &t.egress[i];
                if (e->inject_secret && !(ab_policy_grant_ops(&t, e->inject_secret) & AB_OP_INJECT))
                        err_at(l, e->where.file, e->where.line, e->where.column,
                               "inject: the rule must grant [inject] on secret '%s' (secrets: {%s: [inject]})",
                               e->inject_secret, e->inject_secret);
        }
        if (!c.match)
                err(l, n, "tool rule without match");
        if (c.burst && !c.has_rate)
                err(l, c.burst, "burst without rate");
        if (c.rate_scope && !c.has_rate)
                err(l, c.rate_scope, "rate_scope without rate");
        if (t.rate > 0 && t.burst == 0) { /* max(1, ceil(rate)) without libm */
                t.burst = (unsigned)t.rate;
                if (t.burst < t.rate || t.burst == 0)
                        t.burst++;
        }
        if (append_slot(&p->tools, p->n_tools, sizeof(*p->tools)) < 0) {
                tool_free_contents(&t);
                l->oom = true;
                return;
        }
        p->tools[p->n_tools++] = t;
}

static void
section_tools(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (v->kind == Y_BAD || is_null(v))
                return;
        if (v->kind != Y_SEQ) {
                err(l, v, "tools must be a list, not %s", describe(v));
                return;
        }
        for (size_t i = 0; i < v->n; i++)
                tool_entry(l, v->items[i]);
}

/* ---- modules ---- */

/* Convert a YAML node into JSON. Plain scalars resolve as in YAML 1.2's core schema
 * (null, true/false, integers incl. 0x/0o, floats); quoted scalars stay strings.
 * Returns NULL on out of memory. */
static cJSON *
node_to_json(struct loader *l, const struct ynode *n)
{
        cJSON *j;
        int b;

        switch (n->kind) {
        case Y_BAD: return cJSON_CreateNull();
        case Y_SCALAR:
                if (!n->plain)
                        return cJSON_CreateString(n->str);
                if (is_null(n))
                        return cJSON_CreateNull();
                b = scalar_bool(n);
                if (b >= 0)
                        return cJSON_CreateBool(b);
                if (is_decimal(n->str) || is_float_syntax(n->str)) {
                        double d = strtod(n->str, NULL);
                        if (isfinite(d))
                                return cJSON_CreateNumber(d);
                }
                if ((strncmp(n->str, "0x", 2) == 0 || strncmp(n->str, "0o", 2) == 0) && n->len > 2) {
                        char *end;
                        unsigned long long v;
                        errno = 0;
                        v = strtoull(n->str + 2, &end, n->str[1] == 'x' ? 16 : 8);
                        if (!*end && errno == 0 && isalnum((unsigned char)n->str[2]))
                                return cJSON_CreateNumber((double)v);
                }
                return cJSON_CreateString(n->str);
        case Y_SEQ:
                j = cJSON_CreateArray();
                if (!j)
                        return NULL;
                for (size_t i = 0; i < n->n; i++) {
                        cJSON *c = node_to_json(l, n->items[i]);
                        if (!c || !cJSON_AddItemToArray(j, c)) {
                                cJSON_Delete(c);
                                cJSON_Delete(j);
                                return NULL;
                        }
                }
                return j;
        case Y_MAP:
                j = cJSON_CreateObject();
                if (!j)
                        return NULL;
                for (size_t i = 0; i + 1 < n->n; i += 2) {
                        const struct ynode *k = n->items[i];
                        cJSON *c;
                        if (k->kind != Y_SCALAR) {
                                if (k->kind != Y_BAD)
                                        err(l, k, "mapping keys must be strings, not %s", describe(k));
                                continue;
                        }
                        c = node_to_json(l, n->items[i + 1]);
                        if (!c || !cJSON_AddItemToObject(j, k->str, c)) {
                                cJSON_Delete(c);
                                cJSON_Delete(j);
                                return NULL;
                        }
                }
                return j;
        }
        return NULL;
}

/* One `modules:` entry: name → configuration mapping. */
static void
module_entry(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy *p = l->p;
        struct ab_policy_module *m;

        if (!valid_name(k->str, false)) {
                err(l, k, "bad module name '%s' (letters, digits, '_', '-'; at most %d bytes)", k->str,
                    AB_NAME_MAX);
                return;
        }
        m = (struct ab_policy_module *)ab_policy_find_module(p, k->str);
        if (m) {
                const struct ab_policy_where *w = defined_before(l, &m->where);
                if (w)
                        err(l, k, "module '%s' is already configured at %s:%u:%u", k->str, w->file, w->line,
                            w->column);
                return;
        }
        if (!want_map(l, v, "a module's configuration"))
                return;
        if (append_slot(&p->modules, p->n_modules, sizeof(*p->modules)) < 0) {
                l->oom = true;
                return;
        }
        m = &p->modules[p->n_modules];
        *m = (struct ab_policy_module){ .where = where_of(l, k) };
        m->name = strdup(k->str);
        m->config = is_null(v) ? cJSON_CreateObject() : node_to_json(l, v);
        if (!m->name || !m->config) {
                free(m->name);
                cJSON_Delete(m->config);
                l->oom = true;
                return;
        }
        p->n_modules++;
}

static void
section_modules(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "modules"))
                for_pairs(l, v, module_entry, NULL);
}

/* ---- servers ---- */

/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most AB_NAME_MAX bytes. */
static bool
valid_env_name(const char *s)
{
        if (!*s || strlen(s) > AB_NAME_MAX || isdigit((unsigned char)*s))
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && *s != '_')
                        return false;
        return true;
}

static void
server_command(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;
        const char *t = get_text(l, v, "command", PATH_MAX - 1);

        if (t && t[0] != '/')
                err(l, v, "command must be an absolute path");
        else if (t)
                get_str(l, v, "command", PATH_MAX - 1, &s->command);
}
static void
server_cwd(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;
        const char *t = get_text(l, v, "cwd", PATH_MAX - 1);

        if (t && t[0] != '/')
                err(l, v, "cwd must be an absolute path");
        else if (t)
                get_str(l, v, "cwd", PATH_MAX - 1, &s->cwd);
}
static void
server_args(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;

        get_str_list(l, v, "args", MAX_STRING, 0, MAX_SERVER_ARGS, NULL, &s->args, &s->n_args);
}
static void
server_tools(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;

        if (!get_str_list(l, v, "tools", AB_NAME_MAX, 0, MAX_SERVER_TOOLS, NULL, &s->tools, &s->n_tools))
                return;
        for (size_t i = 0; i < s->n_tools; i++)
                if (!valid_name(s->tools[i], false))
                        err(l, v->items[i], "bad tool name '%s' (letters, digits, '_', '-')", s->tools[i]);
}
/* Whether server s sets variable name already (plain env or a secret). */
static bool
server_has_var(const struct ab_policy_server *s, const char *name)
{
        for (size_t i = 0; i < s->n_env; i++)
                if (strcmp(s->env[i].name, name) == 0)
                        return true;
        for (size_t i = 0; i < s->n_secrets; i++)
                if (strcmp(s->secrets[i].var, name) == 0)
                        return true;
        return false;
}
/* Whether k may name one more variable of s (a valid name, not set yet, within the limit).
 * Reports and returns false otherwise. */
static bool
server_var_ok(struct loader *l, const struct ab_policy_server *s, const struct ynode *k)
{
        if (!valid_env_name(k->str)) {
                err(l, k, "bad environment variable name '%s' ([A-Za-z_][A-Za-z0-9_]*)", k->str);
                return false;
        }
        if (server_has_var(s, k->str)) {
                err(l, k, "variable '%s' is set twice (env and secrets)", k->str);
                return false;
        }
        if (s->n_env + s->n_secrets >= MAX_SERVER_ENV) {
                err(l, k, "more than %d environment variables", MAX_SERVER_ENV);
                return false;
        }
        return true;
}
static void
server_env_pair(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;
        struct ab_policy_env *e;

        if (!server_var_ok(l, s, k))
                return;
        if (v->kind != Y_SCALAR || (v->plain && is_null(v))) {
                err(l, v, "env values must be strings, not %s", describe(v));
                return;
        }
        if (append_slot(&s->env, s->n_env, sizeof(*s->env)) < 0) {
                l->oom = true;
                return;
        }
        e = &s->env[s->n_env];
        e->name = strdup(k->str);
        e->value = strdup(v->str);
        if (!e->name || !e->value) {
                free(e->name);
                free(e->value);
                l->oom = true;
                return;
        }
        s->n_env++;
}
static void
server_env(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "env"))
                for_pairs(l, v, server_env_pair, ctx);
}
static void
server_secret_pair(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;
        struct ab_policy_server_secret *g;
        const char *name;

        if (!server_var_ok(l, s, k))
                return;
        name = get_text(l, v, "a secret name", AB_NAME_MAX);
        if (!name)
                return;
        if (append_slot(&s->secrets, s->n_secrets, sizeof(*s->secrets)) < 0) {
                l->oom = true;
                return;
        }
        g = &s->secrets[s->n_secrets];
        *g = (struct ab_policy_server_secret){ .where = where_of(l, v) };
        g->var = strdup(k->str);
        g->secret = strdup(name);
        if (!g->var || !g->secret) {
                free(g->var);
                free(g->secret);
                l->oom = true;
                return;
        }
        s->n_secrets++;
}
static void
server_secrets(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "secrets"))
                for_pairs(l, v, server_secret_pair, ctx);
}
static void
server_start(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;
        const char *t = get_text(l, v, "start", 16);

        if (!t)
                return;
        if (strcmp(t, "lazy") == 0)
                s->lazy = true;
        else if (strcmp(t, "host") == 0)
                s->lazy = false;
        else
                err(l, v, "start must be host or lazy, not '%s'", t);
}
static void
server_start_timeout(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_server *s = ctx;

        get_uint(l, v, "start_timeout_ms", 1, MAX_START_TIMEOUT_MS, &s->start_timeout_ms);
}

static const struct keydef server_keys[] = {
        { "command", server_command }, { "args", server_args },
        { "env", server_env },         { "cwd", server_cwd },
        { "tools", server_tools },     { "secrets", server_secrets },
        { "start", server_start },     { "start_timeout_ms", server_start_timeout },
};

static void
server_free_contents(struct ab_policy_server *s)
{
        free(s->name);
        free(s->command);
        free(s->cwd);
        for (size_t i = 0; i < s->n_args; i++)
                free(s->args[i]);
        free(s->args);
        for (size_t i = 0; i < s->n_tools; i++)
                free(s->tools[i]);
        free(s->tools);
        for (size_t i = 0; i < s->n_env; i++) {
                free(s->env[i].name);
                free(s->env[i].value);
        }
        free(s->env);
        for (size_t i = 0; i < s->n_secrets; i++) {
                free(s->secrets[i].var);
                free(s->secrets[i].secret);
        }
        free(s->secrets);
}

/* One `servers:` entry: name → { command, args, env, cwd, tools, secrets, start, start_timeout_ms }. */
static void
server_entry(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy *p = l->p;
        struct ab_policy_server s = { .start_timeout_ms = DEFAULT_START_TIMEOUT_MS,
                                      .where = where_of(l, k) };
        const struct ab_policy_server *old;

        if (!ab_name_valid(k->str, AB_MODULE_NAME_MAX, AB_NAME_NO_LEADING_PUNCT)) {
                err(l, k, "bad server name '%s' (letters, digits, '_', '-'; at most 48 bytes)", k->str);
                return;
        }
        old = ab_policy_find_server(p, k->str);
        if (old) {
                const struct ab_policy_where *w = defined_before(l, &old->where);
                if (w)
                        err(l, k, "server '%s' is already defined at %s:%u:%u", k->str, w->file, w->line,
                            w->column);
                return;
        }
        if (v->kind != Y_MAP) {
                if (v->kind != Y_BAD)
                        err(l, v, "a server must be a mapping, not %s", describe(v));
                return;
        }
        WALK(l, v, "a server", server_keys, &s);
        if (!s.command)
                err(l, k, "server '%s' needs a command", k->str);
        s.name = strdup(k->str);
        if (!s.name || append_slot(&p->servers, p->n_servers, sizeof(*p->servers)) < 0) {
                server_free_contents(&s);
                l->oom = true;
                return;
        }
        p->servers[p->n_servers++] = s;
}

static void
section_servers(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "servers"))
                for_pairs(l, v, server_entry, NULL);
}

/* ---- profiles ---- */

#define MAX_PROFILE_BYTES (1ULL << 40) /* 1 TiB: the largest workspace or memory limit */
#define MAX_PROFILE_CPUS 1024.0

/* A byte size: an integer, or one with a K, M, G or T suffix (powers of 1024). */
static bool
get_bytes(struct loader *l, const struct ynode *n, const char *what, uint64_t *ret)
{
        const char *s = get_text(l, n, what, 32);
        unsigned long long v, mul = 1;
        char *end;

        if (!s)
                return false;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (end != s && *end && !end[1])
                switch (*end) {
                case 'K':
                        mul = 1ULL << 10;
                        end++;
                        break;
                case 'M':
                        mul = 1ULL << 20;
                        end++;
                        break;
                case 'G':
                        mul = 1ULL << 30;
                        end++;
                        break;
                case 'T':
                        mul = 1ULL << 40;
                        end++;
                        break;
                }
        if (end == s || *end || errno == ERANGE || !isdigit((unsigned char)s[0]) ||
            v > MAX_PROFILE_BYTES / mul) {
                err(l, n, "%s must be a size in bytes (an integer, or with K, M, G or T), at most 1T", what);
                return false;
        }
        *ret = v * mul;
        return true;
}

/* An absolute path without "." or ".." components, "//" or a trailing '/'. */
static bool
clean_path(const char *s)
{
        if (s[0] != '/' || strstr(s, "//") || (s[1] && s[strlen(s) - 1] == '/'))
                return false;
        for (const char *c = s; (c = strchr(c, '/')); c++)
                if ((c[1] == '.' && (c[2] == '/' || !c[2])) ||
                    (c[1] == '.' && c[2] == '.' && (c[3] == '/' || !c[3])))
                        return false;
        return true;
}

/* Targets the sandbox's root provides itself (host/sandbox/sandbox.c): a mount may not cover them. */
static bool
reserved_target(const char *t)
{
        static const char *const reserved[] = { "/",          "/usr", "/lib", "/lib64", "/lib32",
                                                "/libx32",    "/etc", "/dev", "/proc",  "/tmp",
                                                "/workspace", "/sys", "/run" };

        for (size_t i = 0; i < AB_ELEMENTSOF(reserved); i++) {
                size_t n = strlen(reserved[i]);

                if (strcmp(t, reserved[i]) == 0 || (n > 1 && strncmp(t, reserved[i], n) == 0 && t[n] == '/'))
                        return true;
        }
        return false;
}

static void
mount_source(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_mount *m = ctx;

        if (get_str(l, v, "a mount's source", MAX_STRING, &m->source) && !clean_path(m->source))
                err(l, v, "a mount's source must be an absolute path without '.', '..' or '//' components");
}
static void
mount_target(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_mount *m = ctx;

        if (!get_str(l, v, "a mount's target", MAX_STRING, &m->target))
                return;
        if (!clean_path(m->target))
                err(l, v, "a mount's target must be an absolute path without '.', '..' or '//' components");
        else if (reserved_target(m->target))
                err(l, v,
                    "a mount's target may not be /, /usr, /lib*, /etc, /dev, /proc, /sys, /run, /tmp or "
                    "/workspace, nor below them (the sandbox provides those)");
}
static void
mount_read_only(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_bool(l, v, "read_only", &((struct ab_policy_mount *)ctx)->read_only);
}
static const struct keydef mount_keys[] = {
        { "source", mount_source },
        { "target", mount_target },
        { "read_only", mount_read_only },
};

static void
profile_mounts(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_profile *pr = ctx;

        if (v->kind == Y_BAD || is_null(v))
                return;
        if (v->kind != Y_SEQ) {
                err(l, v, "mounts must be a list, not %s", describe(v));
                return;
        }
        if (v->n > AB_PROFILE_MOUNTS_MAX) {
                err(l, v, "a profile has at most %d mounts", AB_PROFILE_MOUNTS_MAX);
                return;
        }
        pr->mounts = calloc(v->n ? v->n : 1, sizeof(*pr->mounts));
        if (!pr->mounts) {
                l->oom = true;
                return;
        }
        for (size_t i = 0; i < v->n; i++) {
                struct ab_policy_mount *m = &pr->mounts[pr->n_mounts++];

                m->read_only = true;
                if (v->items[i]->kind != Y_MAP) {
                        err(l, v->items[i], "each mount must be a mapping, not %s", describe(v->items[i]));
                        continue;
                }
                WALK(l, v->items[i], "a mount", mount_keys, m);
                if (!m->source || !m->target)
                        err(l, v->items[i], "a mount needs source and target");
                for (size_t j = 0; m->target && j + 1 < pr->n_mounts; j++)
                        if (pr->mounts[j].target && strcmp(pr->mounts[j].target, m->target) == 0)
                                err(l, v->items[i], "two mounts on %s", m->target);
        }
}
static void
profile_workspace(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_bytes(l, v, "workspace", &((struct ab_policy_profile *)ctx)->workspace_bytes);
}
static void
profile_memory(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_profile *pr = ctx;

        if (get_bytes(l, v, "memory", &pr->memory_bytes) && pr->memory_bytes &&
            pr->memory_bytes < (4u << 20))
                err(l, v, "memory must be 0 (no limit) or at least 4M");
}
static void
profile_pids(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        long long n;

        if (get_int(l, v, "pids", 0, AB_PID_MAX_LIMIT, &n))
                ((struct ab_policy_profile *)ctx)->pids = (uint64_t)n;
}
static void
profile_cpu(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        double d;

        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SCALAR || !v->plain || !scalar_double(v, &d) || d < 0 || d > MAX_PROFILE_CPUS ||
            (d > 0 && d < 0.01)) {
                err(l, v, "cpu must be a number of CPUs: 0 (no limit), or 0.01 to %g", MAX_PROFILE_CPUS);
                return;
        }
        ((struct ab_policy_profile *)ctx)->cpu_millis = (unsigned)(d * 1000.0 + 0.5);
}
static void
profile_network(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        const char *s = get_text(l, v, "network", 32);

        if (!s)
                return;
        if (strcmp(s, "none") != 0) {
                err(l, v,
                    "network must be none (a network namespace with nothing in it; egress is not "
                    "available yet)");
                return;
        }
        ((struct ab_policy_profile *)ctx)->network_none = true;
}
static void
profile_max_duration(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "max_duration_s", 0, MAX_DURATION_S,
                 &((struct ab_policy_profile *)ctx)->max_duration_s);
}
/* A list of names (tools: globs; secrets: secret names, checked once every file is read). */
static void
name_list(struct loader *l, const struct ynode *v, const char *what, bool globs, char ***ret, size_t *ret_n)
{
        if (v->kind == Y_BAD)
                return;
        if (v->kind != Y_SEQ && !is_null(v)) {
                err(l, v, "%s must be a list, not %s", what, describe(v));
                return;
        }
        *ret = calloc(v->n ? v->n : 1, sizeof(**ret));
        if (!*ret) {
                l->oom = true;
                return;
        }
        for (size_t i = 0; i < v->n; i++) {
                const char *s = get_text(l, v->items[i], what, AB_NAME_MAX), *why;
                bool glob;

                if (!s)
                        continue;
                why = globs ? check_match(s, &glob) : valid_name(s, false) ? NULL : "is not a valid name";
                if (why) {
                        err(l, v->items[i], "%s: '%s' %s", what, s, why);
                        continue;
                }
                (*ret)[*ret_n] = strdup(s);
                if (!(*ret)[*ret_n]) {
                        l->oom = true;
                        return;
                }
                (*ret_n)++;
        }
}
static void
profile_tools(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_profile *pr = ctx;

        name_list(l, v, "a profile's tools", true, &pr->tools, &pr->n_tools);
}
static void
profile_secrets(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy_profile *pr = ctx;

        name_list(l, v, "a profile's secrets", false, &pr->secrets, &pr->n_secrets);
}
static const struct keydef profile_keys[] = {
        { "mounts", profile_mounts },
        { "workspace", profile_workspace },
        { "memory", profile_memory },
        { "pids", profile_pids },
        { "cpu", profile_cpu },
        { "network", profile_network },
        { "max_duration_s", profile_max_duration },
        { "tools", profile_tools },
        { "secrets", profile_secrets },
};

static void
profile_free_contents(struct ab_policy_profile *pr)
{
        free(pr->name);
        for (size_t i = 0; i < pr->n_mounts; i++) {
                free(pr->mounts[i].source);
                free(pr->mounts[i].target);
        }
        free(pr->mounts);
        for (size_t i = 0; i < pr->n_tools; i++)
                free(pr->tools[i]);
        free(pr->tools);
        for (size_t i = 0; i < pr->n_secrets; i++)
                free(pr->secrets[i]);
        free(pr->secrets);
}

/* One `profiles:` entry: name → profile mapping. */
static void
profile_entry(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        struct ab_policy *p = l->p;
        const struct ab_policy_profile *old;
        struct ab_policy_profile pr = { .where = where_of(l, k) };

        if (!valid_name(k->str, false)) {
                err(l, k, "bad profile name '%s' (letters, digits, '_', '-'; at most %d bytes)", k->str,
                    AB_NAME_MAX);
                return;
        }
        old = ab_policy_find_profile(p, k->str);
        if (old) {
                const struct ab_policy_where *w = defined_before(l, &old->where);
                if (w)
                        err(l, k, "profile '%s' is already defined at %s:%u:%u", k->str, w->file, w->line,
                            w->column);
                return;
        }
        if (!want_map(l, v, "a profile"))
                return;
        WALK(l, v, "a profile", profile_keys, &pr);
        pr.name = strdup(k->str);
        if (!pr.name || append_slot(&p->profiles, p->n_profiles, sizeof(*p->profiles)) < 0) {
                profile_free_contents(&pr);
                l->oom = true;
                return;
        }
        p->profiles[p->n_profiles++] = pr;
}

static void
section_profiles(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (want_map(l, v, "profiles"))
                for_pairs(l, v, profile_entry, NULL);
}

/* ---- the scalar sections ---- */

static void
runs_max_calls(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "runs.max_calls", 0, MAX_CALLS, &l->p->runs.max_calls);
}
static void
runs_max_duration(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "runs.max_duration_s", 0, MAX_DURATION_S, &l->p->runs.max_duration_s);
}
static void
runs_max_open(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "runs.max_open", 1, MAX_OPEN_RUNS, &l->p->runs.max_open);
}
static const struct keydef runs_keys[] = {
        { "max_calls", runs_max_calls },
        { "max_duration_s", runs_max_duration },
        { "max_open", runs_max_open },
};

static void
tokens_ttl(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (get_uint(l, v, "tokens.ttl_s", 1, MAX_TTL_S, &l->p->tokens.ttl_s))
                l->w_ttl = where_of(l, v);
}
static void
tokens_max_ttl(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (get_uint(l, v, "tokens.max_ttl_s", 1, MAX_TTL_S, &l->p->tokens.max_ttl_s))
                l->w_max_ttl = where_of(l, v);
}
static void
tokens_max_uses(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "tokens.max_uses", 1, MAX_USES, &l->p->tokens.max_uses);
}
static const struct keydef tokens_keys[] = {
        { "ttl_s", tokens_ttl },
        { "max_ttl_s", tokens_max_ttl },
        { "max_uses", tokens_max_uses },
};

static void
jwt_issuer(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_str(l, v, "jwt.issuer", 256, &l->p->jwt.issuer);
}
static void
jwt_max_ttl(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "jwt.max_ttl_s", 1, MAX_TTL_S, &l->p->jwt.max_ttl_s);
}
static void
jwt_jwks_file(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (is_null(v)) {
                free(AB_TAKE_PTR(l->p->jwt.jwks_file));
                return;
        }
        if (v->kind == Y_SCALAR && v->str[0] != '/') {
                err(l, v, "jwt.jwks_file must be an absolute path");
                return;
        }
        get_str(l, v, "jwt.jwks_file", PATH_MAX - 1, &l->p->jwt.jwks_file);
}
static const struct keydef jwt_keys[] = {
        { "issuer", jwt_issuer },
        { "max_ttl_s", jwt_max_ttl },
        { "jwks_file", jwt_jwks_file },
};

static void
clients_uids(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        resolve_id_list(l, v, "clients.uids", false, (unsigned **)&l->p->clients.uids,
                        &l->p->clients.n_uids);
}
static void
clients_groups(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        resolve_id_list(l, v, "clients.groups", true, (unsigned **)&l->p->clients.gids,
                        &l->p->clients.n_gids);
}
static void
clients_admin(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        unsigned gid;

        if (is_null(v)) {
                l->p->clients.has_admin_gid = false;
                return;
        }
        if (resolve_id(l, v, "clients.admin_group", true, &gid)) {
                l->p->clients.admin_gid = (gid_t)gid;
                l->p->clients.has_admin_gid = true;
        }
}
static const struct keydef clients_keys[] = {
        { "uids", clients_uids },
        { "groups", clients_groups },
        { "admin_group", clients_admin },
};

static void
audit_failure(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        const char *s = get_text(l, v, "audit.failure", 64);

        if (!s)
                return;
        if (strcmp(s, "deny") == 0)
                l->p->audit.failure_deny = true;
        else if (strcmp(s, "ignore") == 0)
                l->p->audit.failure_deny = false;
        else
                err(l, v, "audit.failure must be deny or ignore, not '%s'", s);
}
static const struct keydef audit_keys[] = {
        { "failure", audit_failure },
};

static void
broker_socket_group(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        unsigned gid;

        if (is_null(v)) {
                free(AB_TAKE_PTR(l->p->broker.socket_group));
                return;
        }
        if (resolve_id(l, v, "broker.socket_group", true, &gid))
                get_str(l, v, "broker.socket_group", 256, &l->p->broker.socket_group);
}
static void
broker_max_conns(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        get_uint(l, v, "broker.max_connections_per_uid", 1, AB_POLICY_CONNS_PER_UID_MAX,
                 &l->p->broker.max_conns_per_uid);
}
static const struct keydef broker_keys[] = {
        { "socket_group", broker_socket_group },
        { "max_connections_per_uid", broker_max_conns },
};

static void
tunnel_identity(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (is_null(v)) {
                free(AB_TAKE_PTR(l->p->tunnel.identity));
                return;
        }
        if (get_str(l, v, "tunnel.identity", 256, &l->p->tunnel.identity))
                l->p->tunnel.where = where_of(l, v);
}
static void
tunnel_sandbox_id(struct loader *l, const struct ynode *k, const struct ynode *v, void *ctx)
{
        if (is_null(v)) {
                free(AB_TAKE_PTR(l->p->tunnel.sandbox_id));
                return;
        }
        get_str(l, v, "tunnel.sandbox_id", 256, &l->p->tunnel.sandbox_id);
}
static const struct keydef tunnel_keys[] = {
        { "identity", tunnel_identity },
        { "sandbox_id", tunnel_sandbox_id },
};

#define SECTION(name, keys)                                                                        \
        static void section_##name(struct loader *l, const struct ynode *k, const struct ynode *v, \
                                   void *ctx)                                                      \
        {                                                                                          \
                WALK(l, v, #name, keys, NULL);                                                     \
        }
SECTION(runs, runs_keys)
SECTION(tokens, tokens_keys)
SECTION(jwt, jwt_keys)
SECTION(clients, clients_keys)
SECTION(audit, audit_keys)
SECTION(broker, broker_keys)
SECTION(tunnel, tunnel_keys)

static const struct keydef top_keys[] = {
        { "secrets", section_secrets }, { "tools", section_tools },       { "modules", section_modules },
        { "servers", section_servers }, { "profiles", section_profiles }, { "runs", section_runs },
        { "tokens", section_tokens },   { "jwt", section_jwt },           { "clients", section_clients },
        { "audit", section_audit },     { "broker", section_broker },     { "tunnel", section_tunnel },
};

/* ---- files ---- */

/* Register file name in p->files and make it the current file. Returns 0 or -ENOMEM. */
static int
begin_file(struct loader *l, const char *name)
{
        struct ab_policy *p = l->p;
        char *c;

        if (append_slot(&p->files, p->n_files, sizeof(*p->files)) < 0)
                return -ENOMEM;
        c = strdup(name);
        if (!c)
                return -ENOMEM;
        p->files[p->n_files++] = c;
        l->file = c;
        return 0;
}

/* Parse one document and merge it into the policy. Returns 0 or -ENOMEM (policy errors
 * are collected, not returned). */
static int
apply_text(struct loader *l, const char *text, size_t len)
{
        struct ynode *root = NULL;
        int r;

        if (len > AB_POLICY_MAX_FILE) {
                err_at(l, l->file, 0, 0, "file is larger than %d bytes", AB_POLICY_MAX_FILE);
                return 0;
        }
        r = yaml_to_tree(l, text, len, &root);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !root)
                return 0;
        if (root->kind == Y_MAP)
                WALK(l, root, "the policy", top_keys, NULL);
        else if (!is_null(root) && root->kind != Y_BAD)
                err(l, root, "the policy must be a mapping, not %s", describe(root));
        ynode_free(root);
        return l->oom ? -ENOMEM : 0;
}

/* Read a regular file of at most AB_POLICY_MAX_FILE bytes from fd. Reports errors under
 * the current file's name. Returns 0, -EINVAL (reported) or -errno (reported). */
static int
read_policy_fd(struct loader *l, int fd, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;

        if (fstat(fd, &st) < 0) {
                int r = -errno;
                err_at(l, l->file, 0, 0, "cannot stat: %s", strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                err_at(l, l->file, 0, 0, "not a regular file");
                return -EINVAL;
        }
        if (st.st_size > AB_POLICY_MAX_FILE) {
                err_at(l, l->file, 0, 0, "file is larger than %d bytes", AB_POLICY_MAX_FILE);
                return -EINVAL;
        }
        for (;;) {
                ssize_t n;
                if (len == cap) {
                        if (cap > AB_POLICY_MAX_FILE) {
                                err_at(l, l->file, 0, 0, "file is larger than %d bytes", AB_POLICY_MAX_FILE);
                                return -EINVAL;
                        }
                        if (grow(&buf, &cap, cap ? cap * 2 : 4096, 1) < 0)
                                return -ENOMEM;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        err_at(l, l->file, 0, 0, "cannot read: %s", strerror(-r));
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > AB_POLICY_MAX_FILE) {
                err_at(l, l->file, 0, 0, "file is larger than %d bytes", AB_POLICY_MAX_FILE);
                return -EINVAL;
        }
        *ret = AB_TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

/* Open name (relative to dirfd, following symlinks), read and apply it as the next file.
 * I/O errors are reported and remembered in l->io_error. Returns 0 or -ENOMEM. */
static int
load_file(struct loader *l, int dirfd, const char *name, const char *display)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        r = begin_file(l, display);
        if (r < 0)
                return r;
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                err_at(l, l->file, 0, 0, "cannot open: %s", strerror(-r));
        } else
                r = read_policy_fd(l, fd, &text, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                if (r != -EINVAL && l->io_error == 0)
                        l->io_error = r;
                return 0;
        }
        return apply_text(l, text, len);
}

static int
strcmp_ptr(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load every regular *.yaml file of directory dir (if it exists) in strcmp order.
 * Names starting with '.' and entries that are not regular files (after following
 * symlinks, e.g. a link to /dev/null) are skipped. Returns 0 or -ENOMEM. */
static int
load_dropins(struct loader *l, const char *dir)
{
        DIR *d;
        char **names = NULL;
        size_t n = 0;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                r = -errno;
                err_at(l, dir, 0, 0, "cannot open drop-in directory: %s", strerror(-r));
                if (l->io_error == 0)
                        l->io_error = r;
                return 0;
        }
        for (;;) {
                struct dirent *de;
                struct stat st;
                size_t len;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0) {
                                r = -errno;
                                err_at(l, dir, 0, 0, "cannot read drop-in directory: %s", strerror(-r));
                                if (l->io_error == 0)
                                        l->io_error = r;
                                r = 0;
                        }
                        break;
                }
                len = strlen(de->d_name);
                if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".yaml") != 0)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && !S_ISREG(st.st_mode))
                        continue; /* stat failures are reported when opening */
                if (n == AB_POLICY_MAX_DROPINS) {
                        err_at(l, dir, 0, 0, "more than %d drop-in files", AB_POLICY_MAX_DROPINS);
                        goto out;
                }
                if (append_slot(&names, n, sizeof(*names)) < 0 || !(names[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (n > 0)
                qsort(names, n, sizeof(*names), strcmp_ptr);
        for (size_t i = 0; i < n && r == 0; i++) {
                _cleanup_free_ char *display = NULL;
                if (asprintf(&display, "%s/%s", dir, names[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = load_file(l, dirfd(d), names[i], display);
        }
out:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return r;
}

/* ---- checks over all files, setup and teardown ---- */

/* The tunnel identity key speaks for the whole sandbox (docs/tunnel.md): no tool may be
 * granted it, under its name or under another name for the same source. Reports each
 * offending grant or secret at its place. */
static void
check_identity_grants(struct loader *l)
{
        struct ab_policy *p = l->p;
        const struct ab_policy_secret *id =
                p->tunnel.identity ? ab_policy_find_secret(p, p->tunnel.identity) : NULL;

        if (!id)
                return;
        for (size_t i = 0; i < l->n_refs; i++) {
                const struct grant_ref *g = &l->refs[i];
                const char *name = p->tools[g->tool].grants[g->grant].secret;

                if (g->op == 0 && strcmp(name, id->name) == 0)
                        err_at(l, g->where.file, g->where.line, g->where.column,
                               "secret '%s' is the tunnel identity (tunnel.identity): it cannot be granted to "
                               "tools, which could mint the sandbox's dial credential; give tools a key of their own",
                               name);
        }
        for (size_t i = 0; i < p->n_secrets; i++) {
                const struct ab_policy_secret *s = &p->secrets[i];

                if (s != id && s->source == id->source && strcmp(s->ref, id->ref) == 0)
                        err_at(l, s->where.file, s->where.line, s->where.column,
                               "secret '%s' loads the same key as the tunnel identity '%s': use a separate key",
                               s->name, id->name);
        }
}

/* Checks that need every file: the secrets tools name exist and suit the operations
 * granted on them; tokens.ttl_s <= tokens.max_ttl_s. */
static void
check_merged(struct loader *l)
{
        struct ab_policy *p = l->p;

        for (size_t i = 0; i < l->n_refs; i++) {
                const struct grant_ref *g = &l->refs[i];
                const char *name = p->tools[g->tool].grants[g->grant].secret;
                const struct ab_policy_secret *s = ab_policy_find_secret(p, name);
                const struct ab_policy_where *w = &g->where;

                if (g->op == 0) {
                        if (!s)
                                err_at(l, w->file, w->line, w->column, "unknown secret '%s'", name);
                        continue;
                }
                if (!s)
                        continue;
                if (s->type == AB_SECRET_ED25519 && g->op == AB_OP_READ)
                        err_at(l, w->file, w->line, w->column,
                               "operation 'read' is not allowed on ed25519 key '%s' (only sign, mint-jwt)",
                               name);
                else if (s->type == AB_SECRET_ED25519 && g->op == AB_OP_INJECT)
                        err_at(l, w->file, w->line, w->column,
                               "operation 'inject' is not allowed on ed25519 key '%s' (only bytes are injected)",
                               name);
                else if (s->type == AB_SECRET_BYTES && g->op == AB_OP_MINT_JWT)
                        err_at(l, w->file, w->line, w->column,
                               "operation 'mint-jwt' needs an ed25519 key; secret '%s' is bytes", name);
        }

        for (size_t i = 0; i < p->n_servers; i++) {
                const struct ab_policy_server *sv = &p->servers[i];

                if (ab_policy_find_module(p, sv->name))
                        err_at(l, sv->where.file, sv->where.line, sv->where.column,
                               "server '%s' has the name of a module in modules", sv->name);
                for (size_t j = 0; j < sv->n_secrets; j++) {
                        const struct ab_policy_secret *s = ab_policy_find_secret(p, sv->secrets[j].secret);
                        const struct ab_policy_where *w = &sv->secrets[j].where;

                        if (!s)
                                err_at(l, w->file, w->line, w->column, "unknown secret '%s'",
                                       sv->secrets[j].secret);
                        else if (s->type != AB_SECRET_BYTES)
                                err_at(l, w->file, w->line, w->column,
                                       "secret '%s' is an ed25519 key: only bytes secrets can be passed to a server",
                                       sv->secrets[j].secret);
                }
        }

        for (size_t i = 0; i < p->n_profiles; i++)
                for (size_t j = 0; j < p->profiles[i].n_secrets; j++)
                        if (!ab_policy_find_secret(p, p->profiles[i].secrets[j])) {
                                const struct ab_policy_where *w = &p->profiles[i].where;

                                err_at(l, w->file, w->line, w->column, "profile '%s': unknown secret '%s'",
                                       p->profiles[i].name, p->profiles[i].secrets[j]);
                        }

        if (p->tunnel.identity) {
                const struct ab_policy_secret *s = ab_policy_find_secret(p, p->tunnel.identity);
                const struct ab_policy_where *w = &p->tunnel.where;

                if (!s)
                        err_at(l, w->file, w->line, w->column, "tunnel.identity: unknown secret '%s'",
                               p->tunnel.identity);
                else if (s->type != AB_SECRET_ED25519)
                        err_at(l, w->file, w->line, w->column,
                               "tunnel.identity needs an ed25519 key; secret '%s' is bytes",
                               p->tunnel.identity);
        }
        check_identity_grants(l);

        if (p->tokens.ttl_s > p->tokens.max_ttl_s) {
                if (l->w_ttl.file)
                        err_at(l, l->w_ttl.file, l->w_ttl.line, l->w_ttl.column,
                               "tokens.ttl_s (%u) is above tokens.max_ttl_s (%u)", p->tokens.ttl_s,
                               p->tokens.max_ttl_s);
                else
                        err_at(l, l->w_max_ttl.file, l->w_max_ttl.line, l->w_max_ttl.column,
                               "tokens.max_ttl_s (%u) is below the default tokens.ttl_s (%u)",
                               p->tokens.max_ttl_s, p->tokens.ttl_s);
        }
}

/* Set up a loader with a policy holding the defaults. Returns 0 or -ENOMEM. */
static int
loader_init(struct loader *l)
{
        struct ab_policy *p;

        *l = (struct loader){ 0 };
        l->errf = open_memstream(&l->errbuf, &l->errlen);
        if (!l->errf)
                return -ENOMEM;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        l->p = p;
        p->runs.max_open = 64;
        p->broker.max_conns_per_uid = AB_POLICY_CONNS_PER_UID_DEFAULT;
        p->tokens.ttl_s = 30;
        p->tokens.max_ttl_s = 300;
        p->tokens.max_uses = 16;
        p->jwt.issuer = strdup("agentbroker");
        p->jwt.max_ttl_s = 300;
        p->audit.failure_deny = true;
        return p->jwt.issuer ? 0 : -ENOMEM;
}

/* Finish a load: run the merged checks, then hand out the policy or the errors.
 * r is the result so far (0 or -errno). *ret_err is written only on failure: the error
 * lines, "out of memory", or NULL if even that could not be allocated. */
static int
loader_finish(struct loader *l, int r, struct ab_policy **ret, char **ret_err)
{
        if (r == 0 && l->oom)
                r = -ENOMEM;
        if (r == 0)
                check_merged(l);
        if (l->errf) {
                if (fclose(l->errf) != 0 && r == 0)
                        r = -ENOMEM;
                l->errf = NULL;
        }
        if (r == 0 && l->io_error)
                r = l->io_error;
        if (r == 0 && l->n_errors > 0)
                r = -EINVAL;
        free(l->refs);
        if (r == 0) {
                free(l->errbuf);
                *ret = l->p;
                return 0;
        }
        ab_policy_free(l->p);
        if (ret_err) {
                if (r == -ENOMEM) {
                        free(l->errbuf);
                        l->errbuf = strdup("out of memory\n");
                }
                *ret_err = l->errbuf;
        } else
                free(l->errbuf);
        return r;
}

int
ab_policy_load_string(const char *name, const char *text, size_t len, struct ab_policy **ret, char **ret_err)
{
        struct loader l;
        int r;

        r = loader_init(&l);
        if (r == 0)
                r = begin_file(&l, name);
        if (r == 0)
                r = apply_text(&l, text, len);
        return loader_finish(&l, r, ret, ret_err);
}

int
ab_policy_load(const char *path, struct ab_policy **ret, char **ret_err)
{
        _cleanup_free_ char *copy = NULL, *dropdir = NULL;
        struct loader l;
        int r;

        r = loader_init(&l);
        if (r == 0)
                r = load_file(&l, AT_FDCWD, path, path);
        if (r == 0 && l.io_error)
                r = l.io_error; /* no main file: stop here, with its error */
        if (r == 0) {
                copy = strdup(path);
                if (!copy || asprintf(&dropdir, "%s/policy.d", dirname(copy)) < 0)
                        r = -ENOMEM;
        }
        if (r == 0)
                r = load_dropins(&l, dropdir);
        return loader_finish(&l, r, ret, ret_err);
}

void
ab_policy_free(struct ab_policy *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n_files; i++)
                free(p->files[i]);
        free(p->files);
        for (size_t i = 0; i < p->n_secrets; i++) {
                free(p->secrets[i].name);
                free(p->secrets[i].ref);
        }
        free(p->secrets);
        for (size_t i = 0; i < p->n_tools; i++)
                tool_free_contents(&p->tools[i]);
        free(p->tools);
        for (size_t i = 0; i < p->n_modules; i++) {
                free(p->modules[i].name);
                cJSON_Delete(p->modules[i].config);
        }
        free(p->modules);
        for (size_t i = 0; i < p->n_profiles; i++)
                profile_free_contents(&p->profiles[i]);
        free(p->profiles);
        for (size_t i = 0; i < p->n_servers; i++)
                server_free_contents(&p->servers[i]);
        free(p->servers);
        free(p->jwt.issuer);
        free(p->jwt.jwks_file);
        free(p->clients.uids);
        free(p->clients.gids);
        free(p->broker.socket_group);
        free(p->tunnel.identity);
        free(p->tunnel.sandbox_id);
        free(p);
}
