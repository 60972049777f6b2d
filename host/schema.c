/* The JSON Schema subset of tools' input and output schemas (see schema.h and
 * docs/result-shaping.md), with 2020-12 semantics.
 *
 * Compilation turns the schema into a tree of nodes (patterns precompiled, enum and const
 * values in a canonical byte form) and refuses anything it cannot enforce: unknown
 * keywords, wrong keyword types, patterns common/regex.c refuses, nesting deeper than
 * HS_SCHEMA_MAX_DEPTH. Validation first checks the value's structure (nesting at most
 * HS_VALUE_MAX_DEPTH, well-formed UTF-8 in strings and names, no duplicate names, finite
 * numbers), then walks it against the tree, counting at most HS_MAX_ERRORS errors and
 * naming the first HS_ERRORS_SHOWN with their location ("arguments.items[2].name: ..."). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/macros.h"
#include "common/regex.h"
#include "common/utf8.h"
#include "host/schema.h"

#define HS_MAX_ERRORS 100          /* errors counted before validation stops */
#define HS_PATTERN_BUDGET_MS 500   /* CPU time of all pattern matching in one validation */
#define HS_ERRORS_SHOWN 3          /* errors quoted in the message */
#define JSON_MAX_DEPTH 1000        /* nesting of any JSON walked here (cJSON's parse limit) */
#define NAME_SHOWN 64              /* bytes of a property name shown in a message */
#define NAME_BUF (NAME_SHOWN * 4 + 24)
#define VALUE_SHOWN 200            /* bytes of an enum or const value shown in a message */
#define COUNT_MAX 9007199254740992.0    /* 2^53: larger counts are as good as unlimited */

enum {
        T_NULL = 1 << 0,
        T_BOOLEAN = 1 << 1,
        T_OBJECT = 1 << 2,
        T_ARRAY = 1 << 3,
        T_NUMBER = 1 << 4,
        T_STRING = 1 << 5,
        T_INTEGER = 1 << 6,
};

static const struct {
        const char *name;
        unsigned bit;
} type_names[] = {
        { "null", T_NULL },     { "boolean", T_BOOLEAN }, { "object", T_OBJECT },
        { "array", T_ARRAY },   { "number", T_NUMBER },   { "string", T_STRING },
        { "integer", T_INTEGER },
};

enum {
        HAS_MIN = 1 << 0,
        HAS_MAX = 1 << 1,
        HAS_XMIN = 1 << 2,
        HAS_XMAX = 1 << 3,
        HAS_MULT = 1 << 4,
};

/* A JSON value in canonical form: equal JSON values (numbers compared by value, object
 * members in any order) have equal bytes. */
struct canon {
        unsigned char *data;
        size_t len;
};

struct prop {
        char *name;
        struct node *schema;
};

struct node {
        bool always, never;             /* the boolean schemas true and false */
        unsigned types;                 /* T_* bits; 0: any type */
        char *types_text;               /* "string or null" */
        struct prop *props;             /* sorted by name */
        size_t n_props;
        char **required;
        size_t n_required;
        struct node *additional;        /* NULL: any additional property is fine */
        struct node *items;             /* NULL: any item is fine */
        struct canon *enums;
        size_t n_enums;
        char *enum_text;
        struct canon *constv;
        char *const_text;
        unsigned num;                   /* HAS_* bits */
        double minimum, maximum, xmin, xmax, multiple;
        size_t min_len, max_len, min_items, max_items, min_props, max_props;
        bool unique;
        struct ab_regex *re;
        char *pattern;
};

struct hs_schema {
        struct node *root;
};

/* ---- locations ("arguments.items[2].name") ---- */

/* A growable byte buffer, kept NUL-terminated (paths are strings; canonical forms
 * ignore the terminator). */
struct buf {
        unsigned char *p;
        size_t len, cap;
        bool oom;
};

static void buf_add(struct buf *b, const void *s, size_t n) {
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 64;
                unsigned char *q;
                while (cap < b->len + n + 1) {
                        if (cap > SIZE_MAX / 2) {
                                b->oom = true;
                                return;
                        }
                        cap *= 2;
                }
                q = realloc(b->p, cap);
                if (!q) {
                        b->oom = true;
                        return;
                }
                b->p = q;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

/* The path so far, or dflt while it is empty. */
static const char *path_str(const struct buf *p, const char *dflt) {
        return p->len > 0 && !p->oom ? (const char *) p->p : dflt;
}

static void path_pop(struct buf *p, size_t mark) {
        if (!p->oom && mark <= p->len) {
                p->len = mark;
                if (p->p)
                        p->p[mark] = '\0';
        }
}

static bool is_plain(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '$';
}

/* Write name into out as it is shown in messages: at most NAME_SHOWN bytes of it (then
 * "..."), '"' and '\' escaped with a backslash, control characters and bytes outside
 * well-formed UTF-8 as \xNN. Returns whether the name is plain ([A-Za-z0-9_$-]+, shown
 * whole), i.e. can follow a '.' in a path. */
static bool format_name(const char *name, char out[NAME_BUF]) {
        size_t len = strlen(name), i = 0, o = 0;
        bool plain = len > 0;

        while (i < len && i < NAME_SHOWN) {
                unsigned char ch = (unsigned char) name[i];
                size_t n = ab_utf8_seq_len(name + i, len - i);

                if (!is_plain(ch))
                        plain = false;
                if (n > 1) {
                        memcpy(out + o, name + i, n);
                        o += n;
                        i += n;
                        continue;
                }
                if (n == 1 && ch >= 0x20 && ch < 0x7f) {
                        if (ch == '"' || ch == '\\')
                                out[o++] = '\\';
                        out[o++] = (char) ch;
                } else
                        o += (size_t) snprintf(out + o, NAME_BUF - o, "\\x%02x", ch);
                i++;
        }
        if (i < len) {
                memcpy(out + o, "...", 3);
                o += 3;
                plain = false;
        }
        out[o] = '\0';
        return plain;
}

/* Append a property name to the path: ".name", or "name" at the start, or ["name"] when
 * it is not plain. Returns the mark to pop back to. */
static size_t path_push_key(struct buf *p, const char *key) {
        char disp[NAME_BUF];
        size_t mark = p->len;

        if (format_name(key, disp)) {
                if (p->len > 0)
                        buf_add(p, ".", 1);
                buf_add(p, disp, strlen(disp));
        } else {
                buf_add(p, "[\"", 2);
                buf_add(p, disp, strlen(disp));
                buf_add(p, "\"]", 2);
        }
        return mark;
}

static size_t path_push_index(struct buf *p, size_t i) {
        char b[32];
        size_t mark = p->len;
        int n = snprintf(b, sizeof(b), "[%zu]", i);
        buf_add(p, b, (size_t) n);
        return mark;
}

/* ---- small helpers ---- */

/* Shortest of %.15g and %.17g that reads back as d. */
static void format_number(double d, char buf[40]) {
        snprintf(buf, 40, "%.15g", d);
        if (strtod(buf, NULL) != d)
                snprintf(buf, 40, "%.17g", d);
}

static bool is_integral(double d) {
        return isfinite(d) && floor(d) == d;
}

static int cmp_names(const void *a, const void *b) {
        const cJSON *const *x = a, *const *y = b;
        return strcmp((*x)->string, (*y)->string);
}

/* Find a name that occurs twice among the members of object j. Returns 0 with *ret_dup
 * the name (or NULL if there is none), or -ENOMEM. */
static int find_duplicate_name(const cJSON *j, const char **ret_dup) {
        const cJSON **v;
        const cJSON *m;
        size_t n = 0, i = 0;

        *ret_dup = NULL;
        cJSON_ArrayForEach(m, j) n++;
        if (n < 2)
                return 0;
        if (n <= 8) {   /* small objects: compare pairs */
                for (const cJSON *a = j->child; a; a = a->next)
                        for (const cJSON *b = a->next; b; b = b->next)
                                if (strcmp(a->string, b->string) == 0) {
                                        *ret_dup = a->string;
                                        return 0;
                                }
                return 0;
        }
        v = malloc(n * sizeof(*v));
        if (!v)
                return -ENOMEM;
        cJSON_ArrayForEach(m, j) v[i++] = m;
        qsort(v, n, sizeof(*v), cmp_names);
        for (i = 1; i < n; i++)
                if (strcmp(v[i - 1]->string, v[i]->string) == 0) {
                        *ret_dup = v[i]->string;
                        break;
                }
        free(v);
        return 0;
}

/* ---- canonical form of JSON values (for enum, const and uniqueItems) ---- */

/* Append the canonical form of j: a type letter, then numbers as %.17g (-0 as 0), strings
 * and names length-prefixed, arrays in order, object members sorted by name. The caller
 * has bounded the nesting of j. */
static void canon_add(struct buf *b, const cJSON *j) {
        char tmp[48];
        int n;

        if (cJSON_IsNull(j))
                buf_add(b, "z", 1);
        else if (cJSON_IsTrue(j))
                buf_add(b, "t", 1);
        else if (cJSON_IsFalse(j))
                buf_add(b, "f", 1);
        else if (cJSON_IsNumber(j)) {
                double d = j->valuedouble == 0 ? 0 : j->valuedouble;
                n = snprintf(tmp, sizeof(tmp), "n%.17g;", d);
                buf_add(b, tmp, (size_t) n);
        } else if (cJSON_IsString(j)) {
                size_t len = strlen(j->valuestring);
                n = snprintf(tmp, sizeof(tmp), "s%zu:", len);
                buf_add(b, tmp, (size_t) n);
                buf_add(b, j->valuestring, len);
        } else if (cJSON_IsArray(j)) {
                const cJSON *e;
                buf_add(b, "[", 1);
                cJSON_ArrayForEach(e, j) canon_add(b, e);
                buf_add(b, "]", 1);
        } else if (cJSON_IsObject(j)) {
                const cJSON *e, **v;
                size_t cnt = 0, i = 0;
                cJSON_ArrayForEach(e, j) cnt++;
                v = malloc((cnt ? cnt : 1) * sizeof(*v));
                if (!v) {
                        b->oom = true;
                        return;
                }
                cJSON_ArrayForEach(e, j) v[i++] = e;
                qsort(v, cnt, sizeof(*v), cmp_names);
                buf_add(b, "{", 1);
                for (i = 0; i < cnt; i++) {
                        size_t len = strlen(v[i]->string);
                        n = snprintf(tmp, sizeof(tmp), "k%zu:", len);
                        buf_add(b, tmp, (size_t) n);
                        buf_add(b, v[i]->string, len);
                        canon_add(b, v[i]);
                }
                buf_add(b, "}", 1);
                free(v);
        } else
                buf_add(b, "?", 1);
}

/* Canonical form of j into *ret. Returns 0 or -ENOMEM. */
static int canon_of(const cJSON *j, struct canon *ret) {
        struct buf b = { 0 };

        canon_add(&b, j);
        if (b.oom) {
                free(b.p);
                return -ENOMEM;
        }
        ret->data = b.p;
        ret->len = b.len;
        return 0;
}

static bool canon_eq(const struct canon *a, const struct canon *b) {
        return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* JSON text of j for a message: cut at a UTF-8 boundary after VALUE_SHOWN bytes with
 * "...". Returns NULL on allocation failure. */
static char *show_json(const cJSON *j) {
        _cleanup_free_ char *s = cJSON_PrintUnformatted(j);
        char *shown;
        int cut;

        if (!s)
                return NULL;
        cut = ab_utf8_cut(s, VALUE_SHOWN);
        if (s[cut] == '\0')
                return AB_TAKE_PTR(s);
        /* a new string: cJSON's buffer is exactly the text's size, "..." may not fit in it */
        if (asprintf(&shown, "%.*s...", cut, s) < 0)
                return NULL;
        return shown;
}

/* Nesting of arrays and objects in j, counting j itself, or limit + 1 if deeper than limit. */
static unsigned json_depth(const cJSON *j, unsigned limit) {
        unsigned best = 0;
        const cJSON *e;

        if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
                return 0;
        if (limit == 0)
                return 1;
        cJSON_ArrayForEach(e, j) {
                unsigned d = json_depth(e, limit - 1);
                if (d > best)
                        best = d;
                if (best >= limit)
                        break;
        }
        return best + 1;
}

/* ---- compilation ---- */

struct cctx {
        struct buf path;
        char *err;
        bool oom;
};

/* Record the first compile error, at the current path ("schema" at the top). */
AB_PRINTF(2, 3)
static int cerr(struct cctx *c, const char *fmt, ...) {
        va_list ap;
        char *msg = NULL;

        if (c->err || c->oom)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg || asprintf(&c->err, "%s: %s", path_str(&c->path, "schema"), msg) < 0) {
                c->err = NULL;
                c->oom = true;
        }
        free(msg);
        return -EINVAL;
}

static int coom(struct cctx *c) {
        c->oom = true;
        return -ENOMEM;
}

static void node_free(struct node *n) {
        if (!n)
                return;
        free(n->types_text);
        for (size_t i = 0; i < n->n_props; i++) {
                free(n->props[i].name);
                node_free(n->props[i].schema);
        }
        free(n->props);
        for (size_t i = 0; i < n->n_required; i++)
                free(n->required[i]);
        free(n->required);
        node_free(n->additional);
        node_free(n->items);
        for (size_t i = 0; i < n->n_enums; i++)
                free(n->enums[i].data);
        free(n->enums);
        free(n->enum_text);
        if (n->constv)
                free(n->constv->data);
        free(n->constv);
        free(n->const_text);
        ab_regex_free(n->re);
        free(n->pattern);
        free(n);
}

/* Check the schema's JSON before compiling it: strings and names well-formed UTF-8, no
 * duplicate names, numbers finite, nesting bounded. Returns 0 or -EINVAL/-ENOMEM. */
static int check_schema_json(struct cctx *c, const cJSON *j, unsigned depth) {
        const cJSON *e;
        const char *dup;
        size_t i = 0;

        if (depth > JSON_MAX_DEPTH)
                return cerr(c, "nested deeper than %d levels", JSON_MAX_DEPTH);
        if (cJSON_IsString(j)) {
                if (!ab_utf8_valid(j->valuestring, strlen(j->valuestring), NULL))
                        return cerr(c, "not valid UTF-8");
        } else if (cJSON_IsNumber(j)) {
                if (!isfinite(j->valuedouble))
                        return cerr(c, "number out of range");
        } else if (cJSON_IsArray(j)) {
                cJSON_ArrayForEach(e, j) {
                        size_t mark = path_push_index(&c->path, i++);
                        int r = check_schema_json(c, e, depth + 1);
                        path_pop(&c->path, mark);
                        if (r < 0)
                                return r;
                }
        } else if (cJSON_IsObject(j)) {
                if (find_duplicate_name(j, &dup) < 0)
                        return coom(c);
                if (dup) {
                        char disp[NAME_BUF];
                        format_name(dup, disp);
                        return cerr(c, "duplicate name '%s'", disp);
                }
                cJSON_ArrayForEach(e, j) {
                        size_t mark;
                        int r;
                        if (!ab_utf8_valid(e->string, strlen(e->string), NULL))
                                return cerr(c, "a name is not valid UTF-8");
                        mark = path_push_key(&c->path, e->string);
                        r = check_schema_json(c, e, depth + 1);
                        path_pop(&c->path, mark);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

struct keyword;
typedef int (*kw_fn)(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
                     const struct keyword *kw);
struct keyword {
        const char *name;
        kw_fn fn;
        size_t off;             /* field of struct node (numbers and counts) */
        unsigned flag;          /* HAS_* bit (numbers) */
};

static struct node *compile_node(struct cctx *c, const cJSON *j, unsigned depth);

static int kw_type(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                   const struct keyword *kw AB_UNUSED) {
        const cJSON *e;
        size_t count = 0, i = 0, len = 0;
        const char *names[AB_ELEMENTSOF(type_names)];

        if (cJSON_IsString(v))
                count = 1;
        else if (cJSON_IsArray(v)) {
                cJSON_ArrayForEach(e, v) count++;
                if (count == 0)
                        return cerr(c, "must not be an empty array");
        } else
                return cerr(c, "must be a type name or an array of type names");
        if (count > AB_ELEMENTSOF(type_names))
                return cerr(c, "names a type twice");
        for (e = cJSON_IsString(v) ? v : v->child; e && i < count; e = e->next, i++) {
                unsigned bit = 0;
                if (!cJSON_IsString(e))
                        return cerr(c, "must be a type name or an array of type names");
                for (size_t t = 0; t < AB_ELEMENTSOF(type_names); t++)
                        if (strcmp(e->valuestring, type_names[t].name) == 0) {
                                bit = type_names[t].bit;
                                names[i] = type_names[t].name;
                        }
                if (!bit) {
                        char disp[NAME_BUF];
                        format_name(e->valuestring, disp);
                        return cerr(c, "unknown type '%s' (expected null, boolean, object, array, "
                                       "number, string or integer)", disp);
                }
                if (n->types & bit)
                        return cerr(c, "names type '%s' twice", names[i]);
                n->types |= bit;
                len += strlen(names[i]) + 2;
        }
        /* "integer", "string or null", "string, number or null" */
        n->types_text = malloc(len + 4);
        if (!n->types_text)
                return coom(c);
        n->types_text[0] = '\0';
        for (i = 0; i < count; i++) {
                if (i > 0)
                        strcat(n->types_text, i + 1 == count ? " or " : ", ");
                strcat(n->types_text, names[i]);
        }
        return 0;
}

static int cmp_props(const void *a, const void *b) {
        const struct prop *x = a, *y = b;
        return strcmp(x->name, y->name);
}

static int kw_properties(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
                         const struct keyword *kw AB_UNUSED) {
        const cJSON *e;
        size_t count = 0;

        if (!cJSON_IsObject(v))
                return cerr(c, "must be an object mapping property names to schemas");
        cJSON_ArrayForEach(e, v) count++;
        n->props = calloc(count ? count : 1, sizeof(*n->props));
        if (!n->props)
                return coom(c);
        cJSON_ArrayForEach(e, v) {
                struct prop *p = &n->props[n->n_props];
                size_t mark = path_push_key(&c->path, e->string);
                p->schema = compile_node(c, e, depth + 1);
                path_pop(&c->path, mark);
                if (!p->schema)
                        return -EINVAL;
                n->n_props++;
                p->name = strdup(e->string);
                if (!p->name)
                        return coom(c);
        }
        qsort(n->props, n->n_props, sizeof(*n->props), cmp_props);
        return 0;
}

static int kw_required(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                       const struct keyword *kw AB_UNUSED) {
        const cJSON *e;
        size_t count = 0;

        if (!cJSON_IsArray(v))
                return cerr(c, "must be an array of property names");
        cJSON_ArrayForEach(e, v) {
                if (!cJSON_IsString(e))
                        return cerr(c, "must be an array of property names");
                for (const cJSON *f = v->child; f != e; f = f->next)
                        if (strcmp(f->valuestring, e->valuestring) == 0) {
                                char disp[NAME_BUF];
                                format_name(e->valuestring, disp);
                                return cerr(c, "names '%s' twice", disp);
                        }
                count++;
        }
        n->required = calloc(count ? count : 1, sizeof(*n->required));
        if (!n->required)
                return coom(c);
        cJSON_ArrayForEach(e, v) {
                n->required[n->n_required] = strdup(e->valuestring);
                if (!n->required[n->n_required])
                        return coom(c);
                n->n_required++;
        }
        return 0;
}

static int kw_additional(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
                         const struct keyword *kw AB_UNUSED) {
        n->additional = compile_node(c, v, depth + 1);
        return n->additional ? 0 : -EINVAL;
}

static int kw_items(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
                    const struct keyword *kw AB_UNUSED) {
        if (cJSON_IsArray(v))
                return cerr(c, "must be a schema; the array form (before 2020-12) is not supported");
        n->items = compile_node(c, v, depth + 1);
        return n->items ? 0 : -EINVAL;
}

/* Check that a value held by enum or const is not nested too deeply to compare. */
static int check_value_depth(struct cctx *c, const cJSON *v) {
        if (json_depth(v, HS_VALUE_MAX_DEPTH) > HS_VALUE_MAX_DEPTH)
                return cerr(c, "nested deeper than %d levels", HS_VALUE_MAX_DEPTH);
        return 0;
}

static int kw_enum(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                   const struct keyword *kw AB_UNUSED) {
        const cJSON *e;
        size_t count = 0;
        int r;

        if (!cJSON_IsArray(v) || !v->child)
                return cerr(c, "must be a non-empty array of values");
        r = check_value_depth(c, v);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(e, v) count++;
        n->enums = calloc(count, sizeof(*n->enums));
        if (!n->enums)
                return coom(c);
        cJSON_ArrayForEach(e, v) {
                if (canon_of(e, &n->enums[n->n_enums]) < 0)
                        return coom(c);
                n->n_enums++;
        }
        n->enum_text = show_json(v);
        return n->enum_text ? 0 : coom(c);
}

static int kw_const(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                    const struct keyword *kw AB_UNUSED) {
        int r = check_value_depth(c, v);

        if (r < 0)
                return r;
        n->constv = calloc(1, sizeof(*n->constv));
        if (!n->constv || canon_of(v, n->constv) < 0)
                return coom(c);
        n->const_text = show_json(v);
        return n->const_text ? 0 : coom(c);
}

static int kw_number(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                     const struct keyword *kw) {
        if (!cJSON_IsNumber(v)) {
                if (cJSON_IsBool(v) && kw->flag & (HAS_XMIN | HAS_XMAX))
                        return cerr(c, "must be a number (the boolean form of draft 4 is not supported)");
                return cerr(c, "must be a number");
        }
        if (kw->flag == HAS_MULT && !(v->valuedouble > 0))
                return cerr(c, "must be a number greater than 0");
        *(double *) ((char *) n + kw->off) = v->valuedouble;
        n->num |= kw->flag;
        return 0;
}

static int kw_count(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                    const struct keyword *kw) {
        double d;

        if (!cJSON_IsNumber(v) || !is_integral(v->valuedouble) || v->valuedouble < 0)
                return cerr(c, "must be a non-negative integer");
        d = v->valuedouble > COUNT_MAX ? COUNT_MAX : v->valuedouble;
        *(size_t *) ((char *) n + kw->off) = (size_t) d;
        return 0;
}

static int kw_unique(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                     const struct keyword *kw AB_UNUSED) {
        if (!cJSON_IsBool(v))
                return cerr(c, "must be a boolean");
        n->unique = cJSON_IsTrue(v);
        return 0;
}

static int kw_pattern(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
                      const struct keyword *kw AB_UNUSED) {
        char why[128];
        int r;

        if (!cJSON_IsString(v))
                return cerr(c, "must be a string (a regular expression)");
        if (n->re)      /* cannot happen (one keyword each), but never leak a regex */
                ab_regex_free(AB_TAKE_PTR(n->re));
        free(AB_TAKE_PTR(n->pattern));
        r = ab_regex_compile(v->valuestring, strlen(v->valuestring), 0, &n->re, why, sizeof(why));
        if (r == -ENOMEM)
                return coom(c);
        if (r < 0)
                return cerr(c, "invalid regular expression (%s)", why);
        n->pattern = strdup(v->valuestring);
        return n->pattern ? 0 : coom(c);
}

static int kw_string_annotation(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v,
                                unsigned depth AB_UNUSED, const struct keyword *kw AB_UNUSED) {
        return cJSON_IsString(v) ? 0 : cerr(c, "must be a string");
}

static int kw_bool_annotation(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v,
                              unsigned depth AB_UNUSED, const struct keyword *kw AB_UNUSED) {
        return cJSON_IsBool(v) ? 0 : cerr(c, "must be a boolean");
}

static int kw_examples(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v,
                       unsigned depth AB_UNUSED, const struct keyword *kw AB_UNUSED) {
        return cJSON_IsArray(v) ? 0 : cerr(c, "must be an array");
}

static int kw_any(struct cctx *c AB_UNUSED, struct node *n AB_UNUSED, const cJSON *v AB_UNUSED,
                  unsigned depth AB_UNUSED, const struct keyword *kw AB_UNUSED) {
        return 0;
}

#define NUM(name, field, flag) { name, kw_number, offsetof(struct node, field), flag }
#define COUNT(name, field) { name, kw_count, offsetof(struct node, field), 0 }
static const struct keyword keywords[] = {
        { "type", kw_type, 0, 0 },
        { "properties", kw_properties, 0, 0 },
        { "required", kw_required, 0, 0 },
        { "additionalProperties", kw_additional, 0, 0 },
        { "items", kw_items, 0, 0 },
        { "enum", kw_enum, 0, 0 },
        { "const", kw_const, 0, 0 },
        NUM("minimum", minimum, HAS_MIN),
        NUM("maximum", maximum, HAS_MAX),
        NUM("exclusiveMinimum", xmin, HAS_XMIN),
        NUM("exclusiveMaximum", xmax, HAS_XMAX),
        NUM("multipleOf", multiple, HAS_MULT),
        COUNT("minLength", min_len),
        COUNT("maxLength", max_len),
        COUNT("minItems", min_items),
        COUNT("maxItems", max_items),
        COUNT("minProperties", min_props),
        COUNT("maxProperties", max_props),
        { "uniqueItems", kw_unique, 0, 0 },
        { "pattern", kw_pattern, 0, 0 },
        /* annotations: accepted, checked for type, not enforced ("format" included) */
        { "title", kw_string_annotation, 0, 0 },
        { "description", kw_string_annotation, 0, 0 },
        { "$comment", kw_string_annotation, 0, 0 },
        { "$schema", kw_string_annotation, 0, 0 },
        { "format", kw_string_annotation, 0, 0 },
        { "deprecated", kw_bool_annotation, 0, 0 },
        { "readOnly", kw_bool_annotation, 0, 0 },
        { "writeOnly", kw_bool_annotation, 0, 0 },
        { "examples", kw_examples, 0, 0 },
        { "default", kw_any, 0, 0 },
};
#undef NUM
#undef COUNT

/* Compile one schema (object or boolean) at nesting level depth (the root is 1).
 * Returns the node, or NULL with the error recorded in c. */
static struct node *compile_node(struct cctx *c, const cJSON *j, unsigned depth) {
        struct node *n;
        const cJSON *m;

        if (depth > HS_SCHEMA_MAX_DEPTH) {
                cerr(c, "schema nested deeper than %d levels", HS_SCHEMA_MAX_DEPTH);
                return NULL;
        }
        if (!cJSON_IsBool(j) && !cJSON_IsObject(j)) {
                cerr(c, "must be a schema (an object or a boolean)");
                return NULL;
        }
        n = calloc(1, sizeof(*n));
        if (!n) {
                coom(c);
                return NULL;
        }
        n->max_len = n->max_items = n->max_props = SIZE_MAX;
        if (cJSON_IsBool(j)) {
                n->always = cJSON_IsTrue(j);
                n->never = !n->always;
                return n;
        }
        cJSON_ArrayForEach(m, j) {
                const struct keyword *kw = NULL;
                size_t mark;
                int r;

                for (size_t i = 0; i < AB_ELEMENTSOF(keywords); i++)
                        if (strcmp(m->string, keywords[i].name) == 0)
                                kw = &keywords[i];
                if (!kw) {
                        char disp[NAME_BUF];
                        if (strncmp(m->string, "x-", 2) == 0)
                                continue;       /* vendor extension: ignored */
                        format_name(m->string, disp);
                        cerr(c, "unknown keyword '%s' (not in the supported subset of JSON "
                                "Schema, see docs/result-shaping.md)", disp);
                        goto fail;
                }
                mark = path_push_key(&c->path, m->string);
                r = kw->fn(c, n, m, depth, kw);
                path_pop(&c->path, mark);
                if (r < 0)
                        goto fail;
        }
        return n;
fail:
        node_free(n);
        return NULL;
}

int hs_schema_compile(const cJSON *schema, struct hs_schema **ret, char **ret_err) {
        struct cctx c = { 0 };
        struct hs_schema *s = NULL;
        struct node *root = NULL;
        int r;

        if (!schema)
                cerr(&c, "missing");
        else if (check_schema_json(&c, schema, 1) == 0)
                root = compile_node(&c, schema, 1);
        if (c.path.oom)
                c.oom = true;
        if (root && !c.oom) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        c.oom = true;
        }
        if (c.oom) {
                r = -ENOMEM;
                goto out;
        }
        if (!root) {
                r = -EINVAL;
                if (ret_err)
                        *ret_err = AB_TAKE_PTR(c.err);
                goto out;
        }
        s->root = AB_TAKE_PTR(root);
        *ret = AB_TAKE_PTR(s);
        r = 0;
out:
        node_free(root);
        free(s);
        free(c.err);
        free(c.path.p);
        return r;
}

void hs_schema_free(struct hs_schema *s) {
        if (!s)
                return;
        node_free(s->root);
        free(s);
}

/* ---- validation ---- */

struct vctx {
        struct buf path;
        char *msgs[HS_ERRORS_SHOWN];
        unsigned n_errors;
        bool oom;
        int64_t pattern_ns;     /* CPU time spent matching patterns so far */
};

/* CPU time of this thread in nanoseconds. */
static int64_t thread_cpu_ns(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Count an error at the current path; keep its message if it is among the first shown. */
AB_PRINTF(2, 3)
static void verr(struct vctx *v, const char *fmt, ...) {
        unsigned i = v->n_errors++;
        va_list ap;
        char *msg = NULL;

        if (i >= HS_ERRORS_SHOWN || v->oom)
                return;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg || asprintf(&v->msgs[i], "%s: %s", path_str(&v->path, "value"), msg) < 0) {
                v->msgs[i] = NULL;
                v->oom = true;
        }
        free(msg);
}

static bool vdone(const struct vctx *v) {
        return v->n_errors >= HS_MAX_ERRORS || v->oom || v->path.oom;
}

/* Check the structure of a value before validating it against a schema: containers
 * nested at most HS_VALUE_MAX_DEPTH deep (depth counts j), strings and names well-formed
 * UTF-8, no name twice in an object, numbers finite. */
static void check_value(struct vctx *v, const cJSON *j, unsigned depth) {
        const cJSON *e;
        const char *dup;
        size_t i = 0;

        if (vdone(v))
                return;
        if (cJSON_IsString(j)) {
                if (!ab_utf8_valid(j->valuestring, strlen(j->valuestring), NULL))
                        verr(v, "not valid UTF-8");
                return;
        }
        if (cJSON_IsNumber(j)) {
                if (!isfinite(j->valuedouble))
                        verr(v, "number out of range");
                return;
        }
        if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
                return;
        if (depth > HS_VALUE_MAX_DEPTH) {
                verr(v, "nested deeper than %d levels", HS_VALUE_MAX_DEPTH);
                return;
        }
        if (cJSON_IsObject(j)) {
                if (find_duplicate_name(j, &dup) < 0) {
                        v->oom = true;
                        return;
                }
                if (dup) {
                        char disp[NAME_BUF];
                        format_name(dup, disp);
                        verr(v, "property '%s' given twice", disp);
                        return;
                }
        }
        cJSON_ArrayForEach(e, j) {
                size_t mark;
                if (cJSON_IsObject(j)) {
                        if (!ab_utf8_valid(e->string, strlen(e->string), NULL)) {
                                char disp[NAME_BUF];
                                format_name(e->string, disp);
                                verr(v, "property name '%s' is not valid UTF-8", disp);
                                continue;
                        }
                        mark = path_push_key(&v->path, e->string);
                } else
                        mark = path_push_index(&v->path, i++);
                check_value(v, e, depth + 1);
                path_pop(&v->path, mark);
                if (vdone(v))
                        return;
        }
}

static unsigned value_type(const cJSON *j) {
        if (cJSON_IsNull(j))
                return T_NULL;
        if (cJSON_IsBool(j))
                return T_BOOLEAN;
        if (cJSON_IsObject(j))
                return T_OBJECT;
        if (cJSON_IsArray(j))
                return T_ARRAY;
        if (cJSON_IsString(j))
                return T_STRING;
        if (cJSON_IsNumber(j))
                return T_NUMBER | (is_integral(j->valuedouble) ? T_INTEGER : 0);
        return 0;
}

static const char *value_type_name(unsigned t) {
        if (t & T_INTEGER)
                return "integer";
        for (size_t i = 0; i < AB_ELEMENTSOF(type_names); i++)
                if (t == type_names[i].bit)
                        return type_names[i].name;
        return "an unknown type";
}

static void validate(struct vctx *v, const struct node *n, const cJSON *j);

static void validate_number(struct vctx *v, const struct node *n, double d) {
        char b[40];

        if (n->num & HAS_MIN && !(d >= n->minimum)) {
                format_number(n->minimum, b);
                verr(v, "must be >= %s", b);
        }
        if (n->num & HAS_MAX && !(d <= n->maximum)) {
                format_number(n->maximum, b);
                verr(v, "must be <= %s", b);
        }
        if (n->num & HAS_XMIN && !(d > n->xmin)) {
                format_number(n->xmin, b);
                verr(v, "must be > %s", b);
        }
        if (n->num & HAS_XMAX && !(d < n->xmax)) {
                format_number(n->xmax, b);
                verr(v, "must be < %s", b);
        }
        if (n->num & HAS_MULT) {
                /* Exact for integers (fmod is exact); for fractions such as 0.1, which
                 * binary floating point cannot hold, the quotient is allowed a relative
                 * error of 1e-9 from an integer. */
                bool ok = fmod(d, n->multiple) == 0;
                if (!ok) {
                        double q = d / n->multiple;
                        ok = isfinite(q) && fabs(q - nearbyint(q)) <= 1e-9 * fmax(1.0, fabs(q));
                }
                if (!ok) {
                        format_number(n->multiple, b);
                        verr(v, "must be a multiple of %s", b);
                }
        }
}

static void validate_string(struct vctx *v, const struct node *n, const char *s) {
        if (n->min_len > 0 || n->max_len != SIZE_MAX) {
                size_t chars = 0;
                (void) ab_utf8_valid(s, strlen(s), &chars);     /* checked by check_value */
                if (chars < n->min_len)
                        verr(v, "must be at least %zu characters long (it has %zu)", n->min_len, chars);
                if (chars > n->max_len)
                        verr(v, "must be at most %zu characters long (it has %zu)", n->max_len, chars);
        }
        if (n->re) {
                /* each search is bounded (common/regex.h); so are all of one value's together,
                 * or an array of many strings could hold the host's one thread for minutes */
                int64_t t0 = thread_cpu_ns();
                int r = v->pattern_ns >= HS_PATTERN_BUDGET_MS * INT64_C(1000000)
                                ? -ETIME
                                : ab_regex_search(n->re, s, strlen(s), NULL, NULL);
                v->pattern_ns += thread_cpu_ns() - t0;
                if (r == 0)
                        verr(v, "must match the pattern '%s'", n->pattern);
                else if (r < 0)         /* fail closed: the value is not accepted */
                        verr(v, "could not be matched against the pattern '%s': %s", n->pattern,
                             ab_regex_strerror(r));
        }
}

struct item_canon {
        struct canon c;
        size_t index;
};

static int cmp_item_canon(const void *a, const void *b) {
        const struct item_canon *x = a, *y = b;
        size_t n = x->c.len < y->c.len ? x->c.len : y->c.len;
        int r = n ? memcmp(x->c.data, y->c.data, n) : 0;

        if (r != 0)
                return r;
        if (x->c.len != y->c.len)
                return x->c.len < y->c.len ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* uniqueItems: sort the items' canonical forms, so equal items end up next to each other;
 * report the equal pair whose later item comes first. */
static void check_unique(struct vctx *v, const cJSON *j, size_t count) {
        struct item_canon *ic;
        const cJSON *e;
        size_t i = 0, first = SIZE_MAX, second = SIZE_MAX;

        if (count < 2)
                return;
        ic = calloc(count, sizeof(*ic));
        if (!ic) {
                v->oom = true;
                return;
        }
        cJSON_ArrayForEach(e, j) {
                if (canon_of(e, &ic[i].c) < 0) {
                        v->oom = true;
                        goto out;
                }
                ic[i].index = i;
                i++;
        }
        qsort(ic, count, sizeof(*ic), cmp_item_canon);
        for (i = 1; i < count; i++)
                if (canon_eq(&ic[i - 1].c, &ic[i].c) && ic[i].index < second) {
                        first = ic[i - 1].index;
                        second = ic[i].index;
                }
        if (second != SIZE_MAX)
                verr(v, "items must be unique ([%zu] and [%zu] are equal)", first, second);
out:
        for (i = 0; i < count; i++)
                free(ic[i].c.data);
        free(ic);
}

static void validate_array(struct vctx *v, const struct node *n, const cJSON *j) {
        const cJSON *e;
        size_t count = 0, i = 0;

        cJSON_ArrayForEach(e, j) count++;
        if (count < n->min_items)
                verr(v, "must have at least %zu items (it has %zu)", n->min_items, count);
        if (count > n->max_items)
                verr(v, "must have at most %zu items (it has %zu)", n->max_items, count);
        if (n->unique)
                check_unique(v, j, count);
        if (!n->items)
                return;
        cJSON_ArrayForEach(e, j) {
                size_t mark = path_push_index(&v->path, i++);
                validate(v, n->items, e);
                path_pop(&v->path, mark);
                if (vdone(v))
                        return;
        }
}

static int cmp_key_prop(const void *key, const void *p) {
        return strcmp(key, ((const struct prop *) p)->name);
}

static void validate_object(struct vctx *v, const struct node *n, const cJSON *j) {
        const cJSON *e;
        size_t count = 0;

        cJSON_ArrayForEach(e, j) count++;
        if (count < n->min_props)
                verr(v, "must have at least %zu properties (it has %zu)", n->min_props, count);
        if (count > n->max_props)
                verr(v, "must have at most %zu properties (it has %zu)", n->max_props, count);
        for (size_t i = 0; i < n->n_required && !vdone(v); i++)
                if (!cJSON_GetObjectItemCaseSensitive(j, n->required[i])) {
                        size_t mark = path_push_key(&v->path, n->required[i]);
                        verr(v, "required");
                        path_pop(&v->path, mark);
                }
        cJSON_ArrayForEach(e, j) {
                const struct prop *p = n->n_props ? bsearch(e->string, n->props, n->n_props,
                                                            sizeof(*n->props), cmp_key_prop) : NULL;
                const struct node *sub = p ? p->schema : n->additional;
                size_t mark;

                if (vdone(v))
                        return;
                if (!sub)
                        continue;
                if (!p && sub->never) {
                        char disp[NAME_BUF];
                        format_name(e->string, disp);
                        verr(v, "unexpected property '%s' (additionalProperties is false)", disp);
                        continue;
                }
                mark = path_push_key(&v->path, e->string);
                validate(v, sub, e);
                path_pop(&v->path, mark);
        }
}

/* Validate j against node n, recording errors at the current path. */
static void validate(struct vctx *v, const struct node *n, const cJSON *j) {
        unsigned t;

        if (vdone(v) || n->always)
                return;
        if (n->never) {
                verr(v, "not allowed here (the schema is false)");
                return;
        }
        t = value_type(j);
        if (n->types && !(n->types & t)) {
                verr(v, "must be %s, not %s", n->types_text, value_type_name(t));
                return;
        }
        if (n->n_enums || n->constv) {
                struct canon cv;
                bool found = false;
                if (canon_of(j, &cv) < 0) {
                        v->oom = true;
                        return;
                }
                for (size_t i = 0; i < n->n_enums && !found; i++)
                        found = canon_eq(&cv, &n->enums[i]);
                if (n->n_enums && !found)
                        verr(v, "must be one of %s", n->enum_text);
                if (n->constv && !canon_eq(&cv, n->constv))
                        verr(v, "must be %s (const)", n->const_text);
                free(cv.data);
        }
        if (t & T_NUMBER)
                validate_number(v, n, j->valuedouble);
        else if (t == T_STRING)
                validate_string(v, n, j->valuestring);
        else if (t == T_ARRAY)
                validate_array(v, n, j);
        else if (t == T_OBJECT)
                validate_object(v, n, j);
}

int hs_schema_validate(const struct hs_schema *s, const cJSON *value, const char *root_name,
                       char **ret_err) {
        struct vctx v = { 0 };
        char *msg = NULL;
        size_t len = 0;
        int r;

        buf_add(&v.path, root_name ? root_name : "value", strlen(root_name ? root_name : "value"));
        if (!value)
                verr(&v, "missing");
        else {
                check_value(&v, value, 1);
                if (v.n_errors == 0)
                        validate(&v, s->root, value);
        }
        if (v.oom || v.path.oom) {
                r = -ENOMEM;
                goto out;
        }
        if (v.n_errors == 0) {
                r = 0;
                goto out;
        }
        /* "first; second; third (and N more errors)" */
        for (unsigned i = 0; i < v.n_errors && i < HS_ERRORS_SHOWN; i++)
                len += strlen(v.msgs[i]) + 2;
        msg = malloc(len + 64);
        if (!msg) {
                r = -ENOMEM;
                goto out;
        }
        msg[0] = '\0';
        for (unsigned i = 0; i < v.n_errors && i < HS_ERRORS_SHOWN; i++) {
                if (i > 0)
                        strcat(msg, "; ");
                strcat(msg, v.msgs[i]);
        }
        if (v.n_errors >= HS_MAX_ERRORS)
                sprintf(msg + strlen(msg), " (and more errors)");
        else if (v.n_errors > HS_ERRORS_SHOWN)
                sprintf(msg + strlen(msg), " (and %u more error%s)", v.n_errors - HS_ERRORS_SHOWN,
                        v.n_errors - HS_ERRORS_SHOWN == 1 ? "" : "s");
        if (ret_err)
                *ret_err = AB_TAKE_PTR(msg);
        r = -EINVAL;
out:
        free(msg);
        for (unsigned i = 0; i < HS_ERRORS_SHOWN; i++)
                free(v.msgs[i]);
        free(v.path.p);
        return r;
}
