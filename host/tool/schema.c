/* SPDX-License-Identifier: MIT */
/* The JSON Schema subset (host/tool/schema.h, docs/result-shaping.md): locations, canonical
 * forms, and compilation of a schema into a tree of nodes. */
#include "config.h"

#include "host/tool/schema_internal.h"

/* The path so far, or dflt while it is empty. */
const char *
hs_schema_path_str(const struct ab_buf *p, const char *dflt)
{
        return p->len > 0 && !p->err ? p->p : dflt;
}

void
hs_schema_path_pop(struct ab_buf *p, size_t mark)
{
        if (!p->err && mark <= p->len) {
                p->len = mark;
                if (p->p)
                        p->p[mark] = '\0';
        }
}

static bool
is_plain(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-' || c == '$';
}

/* Write name into out as it is shown in messages: at most NAME_SHOWN bytes of it (then
 * "..."), '"' and '\' escaped with a backslash, control characters and bytes outside
 * well-formed UTF-8 as \xNN. Returns whether the name is plain ([A-Za-z0-9_$-]+, shown
 * whole), i.e. can follow a '.' in a path. */
bool
hs_schema_format_name(const char *name, char out[NAME_BUF])
{
        size_t len = strlen(name), i = 0, o = 0;
        bool plain = len > 0;

        while (i < len && i < NAME_SHOWN) {
                unsigned char ch = (unsigned char)name[i];
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
                        out[o++] = (char)ch;
                } else
                        o += (size_t)snprintf(out + o, NAME_BUF - o, "\\x%02x", ch);
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
size_t
hs_schema_path_push_key(struct ab_buf *p, const char *key)
{
        char disp[NAME_BUF];
        size_t mark = p->len;

        if (hs_schema_format_name(key, disp)) {
                if (p->len > 0)
                        ab_buf_put(p, ".", 1);
                ab_buf_put(p, disp, strlen(disp));
        } else {
                ab_buf_put(p, "[\"", 2);
                ab_buf_put(p, disp, strlen(disp));
                ab_buf_put(p, "\"]", 2);
        }
        return mark;
}

size_t
hs_schema_path_push_index(struct ab_buf *p, size_t i)
{
        char b[32];
        size_t mark = p->len;
        int n = snprintf(b, sizeof(b), "[%zu]", i);
        ab_buf_put(p, b, (size_t)n);
        return mark;
}

/* ---- small helpers ---- */

/* Shortest of %.15g and %.17g that reads back as d. */
void
hs_schema_format_number(double d, char buf[40])
{
        snprintf(buf, 40, "%.15g", d);
        if (strtod(buf, NULL) != d)
                snprintf(buf, 40, "%.17g", d);
}

bool
hs_schema_is_integral(double d)
{
        return isfinite(d) && floor(d) == d;
}

static int
cmp_names(const void *a, const void *b)
{
        const cJSON *const *x = a, *const *y = b;
        return strcmp((*x)->string, (*y)->string);
}

/* Find a name that occurs twice among the members of object j. Returns 0 with *ret_dup
 * the name (or NULL if there is none), or -ENOMEM. */
int
hs_schema_find_duplicate_name(const cJSON *j, const char **ret_dup)
{
        const cJSON **v;
        const cJSON *m;
        size_t n = 0, i = 0;

        *ret_dup = NULL;
        cJSON_ArrayForEach(m, j) n++;
        if (n < 2)
                return 0;
        if (n <= 8) { /* small objects: compare pairs */
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
static void
canon_add(struct ab_buf *b, const cJSON *j)
{
        char tmp[48];
        int n;

        if (cJSON_IsNull(j))
                ab_buf_put(b, "z", 1);
        else if (cJSON_IsTrue(j))
                ab_buf_put(b, "t", 1);
        else if (cJSON_IsFalse(j))
                ab_buf_put(b, "f", 1);
        else if (cJSON_IsNumber(j)) {
                double d = j->valuedouble == 0 ? 0 : j->valuedouble;
                n = snprintf(tmp, sizeof(tmp), "n%.17g;", d);
                ab_buf_put(b, tmp, (size_t)n);
        } else if (cJSON_IsString(j)) {
                size_t len = strlen(j->valuestring);
                n = snprintf(tmp, sizeof(tmp), "s%zu:", len);
                ab_buf_put(b, tmp, (size_t)n);
                ab_buf_put(b, j->valuestring, len);
        } else if (cJSON_IsArray(j)) {
                const cJSON *e;
                ab_buf_put(b, "[", 1);
                cJSON_ArrayForEach(e, j) canon_add(b, e);
                ab_buf_put(b, "]", 1);
        } else if (cJSON_IsObject(j)) {
                const cJSON *e, **v;
                size_t cnt = 0, i = 0;
                cJSON_ArrayForEach(e, j) cnt++;
                v = malloc((cnt ? cnt : 1) * sizeof(*v));
                if (!v) {
                        b->err = -ENOMEM;
                        return;
                }
                cJSON_ArrayForEach(e, j) v[i++] = e;
                qsort(v, cnt, sizeof(*v), cmp_names);
                ab_buf_put(b, "{", 1);
                for (i = 0; i < cnt; i++) {
                        size_t len = strlen(v[i]->string);
                        n = snprintf(tmp, sizeof(tmp), "k%zu:", len);
                        ab_buf_put(b, tmp, (size_t)n);
                        ab_buf_put(b, v[i]->string, len);
                        canon_add(b, v[i]);
                }
                ab_buf_put(b, "}", 1);
                free(v);
        } else
                ab_buf_put(b, "?", 1);
}

/* Canonical form of j into *ret. Returns 0 or -ENOMEM. */
int
hs_schema_canon_of(const cJSON *j, struct canon *ret)
{
        struct ab_buf b = { 0 };

        canon_add(&b, j);
        if (b.err) {
                ab_buf_free(&b);
                return -ENOMEM;
        }
        ret->data = (unsigned char *)b.p;
        ret->len = b.len;
        return 0;
}

bool
hs_schema_canon_eq(const struct canon *a, const struct canon *b)
{
        return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* JSON text of j for a message: cut at a UTF-8 boundary after VALUE_SHOWN bytes with
 * "...". Returns NULL on allocation failure. */
static char *
show_json(const cJSON *j)
{
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
static unsigned
json_depth(const cJSON *j, unsigned limit)
{
        unsigned best = 0;
        const cJSON *e;

        if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
                return 0;
        if (limit == 0)
                return 1;
        cJSON_ArrayForEach(e, j)
        {
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
        struct ab_buf path;
        char *err;
        bool oom;
};

/* Record the first compile error, at the current path ("schema" at the top). */
AB_PRINTF(2, 3)
static int
cerr(struct cctx *c, const char *fmt, ...)
{
        va_list ap;
        char *msg = NULL;

        if (c->err || c->oom)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg || asprintf(&c->err, "%s: %s", hs_schema_path_str(&c->path, "schema"), msg) < 0) {
                c->err = NULL;
                c->oom = true;
        }
        free(msg);
        return -EINVAL;
}

static int
coom(struct cctx *c)
{
        c->oom = true;
        return -ENOMEM;
}

static void
node_free(struct node *n)
{
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
static int
check_schema_json(struct cctx *c, const cJSON *j, unsigned depth)
{
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
                cJSON_ArrayForEach(e, j)
                {
                        size_t mark = hs_schema_path_push_index(&c->path, i++);
                        int r = check_schema_json(c, e, depth + 1);
                        hs_schema_path_pop(&c->path, mark);
                        if (r < 0)
                                return r;
                }
        } else if (cJSON_IsObject(j)) {
                if (hs_schema_find_duplicate_name(j, &dup) < 0)
                        return coom(c);
                if (dup) {
                        char disp[NAME_BUF];
                        hs_schema_format_name(dup, disp);
                        return cerr(c, "duplicate name '%s'", disp);
                }
                cJSON_ArrayForEach(e, j)
                {
                        size_t mark;
                        int r;
                        if (!ab_utf8_valid(e->string, strlen(e->string), NULL))
                                return cerr(c, "a name is not valid UTF-8");
                        mark = hs_schema_path_push_key(&c->path, e->string);
                        r = check_schema_json(c, e, depth + 1);
                        hs_schema_path_pop(&c->path, mark);
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
        size_t off;    /* field of struct node (numbers and counts) */
        unsigned flag; /* HAS_* bit (numbers) */
};

static struct node *compile_node(struct cctx *c, const cJSON *j, unsigned depth);

static int
kw_type(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
        const struct keyword *kw AB_UNUSED)
{
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
                        hs_schema_format_name(e->valuestring, disp);
                        return cerr(c,
                                    "unknown type '%s' (expected null, boolean, object, array, "
                                    "number, string or integer)",
                                    disp);
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

static int
cmp_props(const void *a, const void *b)
{
        const struct prop *x = a, *y = b;
        return strcmp(x->name, y->name);
}

static int
kw_properties(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
              const struct keyword *kw AB_UNUSED)
{
        const cJSON *e;
        size_t count = 0;

        if (!cJSON_IsObject(v))
                return cerr(c, "must be an object mapping property names to schemas");
        cJSON_ArrayForEach(e, v) count++;
        n->props = calloc(count ? count : 1, sizeof(*n->props));
        if (!n->props)
                return coom(c);
        cJSON_ArrayForEach(e, v)
        {
                struct prop *p = &n->props[n->n_props];
                size_t mark = hs_schema_path_push_key(&c->path, e->string);
                p->schema = compile_node(c, e, depth + 1);
                hs_schema_path_pop(&c->path, mark);
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

static int
kw_required(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
            const struct keyword *kw AB_UNUSED)
{
        const cJSON *e;
        size_t count = 0;

        if (!cJSON_IsArray(v))
                return cerr(c, "must be an array of property names");
        cJSON_ArrayForEach(e, v)
        {
                if (!cJSON_IsString(e))
                        return cerr(c, "must be an array of property names");
                for (const cJSON *f = v->child; f != e; f = f->next)
                        if (strcmp(f->valuestring, e->valuestring) == 0) {
                                char disp[NAME_BUF];
                                hs_schema_format_name(e->valuestring, disp);
                                return cerr(c, "names '%s' twice", disp);
                        }
                count++;
        }
        n->required = calloc(count ? count : 1, sizeof(*n->required));
        if (!n->required)
                return coom(c);
        cJSON_ArrayForEach(e, v)
        {
                n->required[n->n_required] = strdup(e->valuestring);
                if (!n->required[n->n_required])
                        return coom(c);
                n->n_required++;
        }
        return 0;
}

static int
kw_additional(struct cctx *c, struct node *n, const cJSON *v, unsigned depth,
              const struct keyword *kw AB_UNUSED)
{
        n->additional = compile_node(c, v, depth + 1);
        return n->additional ? 0 : -EINVAL;
}

static int
kw_items(struct cctx *c, struct node *n, const cJSON *v, unsigned depth, const struct keyword *kw AB_UNUSED)
{
        if (cJSON_IsArray(v))
                return cerr(c, "must be a schema; the array form (before 2020-12) is not supported");
        n->items = compile_node(c, v, depth + 1);
        return n->items ? 0 : -EINVAL;
}

/* Check that a value held by enum or const is not nested too deeply to compare. */
static int
check_value_depth(struct cctx *c, const cJSON *v)
{
        if (json_depth(v, HS_VALUE_MAX_DEPTH) > HS_VALUE_MAX_DEPTH)
                return cerr(c, "nested deeper than %d levels", HS_VALUE_MAX_DEPTH);
        return 0;
}

static int
kw_enum(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
        const struct keyword *kw AB_UNUSED)
{
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
        cJSON_ArrayForEach(e, v)
        {
                if (hs_schema_canon_of(e, &n->enums[n->n_enums]) < 0)
                        return coom(c);
                n->n_enums++;
        }
        n->enum_text = show_json(v);
        return n->enum_text ? 0 : coom(c);
}

static int
kw_const(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
         const struct keyword *kw AB_UNUSED)
{
        int r = check_value_depth(c, v);

        if (r < 0)
                return r;
        n->constv = calloc(1, sizeof(*n->constv));
        if (!n->constv || hs_schema_canon_of(v, n->constv) < 0)
                return coom(c);
        n->const_text = show_json(v);
        return n->const_text ? 0 : coom(c);
}

static int
kw_number(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED, const struct keyword *kw)
{
        if (!cJSON_IsNumber(v)) {
                if (cJSON_IsBool(v) && kw->flag & (HAS_XMIN | HAS_XMAX))
                        return cerr(c, "must be a number (the boolean form of draft 4 is not supported)");
                return cerr(c, "must be a number");
        }
        if (kw->flag == HAS_MULT && !(v->valuedouble > 0))
                return cerr(c, "must be a number greater than 0");
        *(double *)((char *)n + kw->off) = v->valuedouble;
        n->num |= kw->flag;
        return 0;
}

static int
kw_count(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED, const struct keyword *kw)
{
        double d;

        if (!cJSON_IsNumber(v) || !hs_schema_is_integral(v->valuedouble) || v->valuedouble < 0)
                return cerr(c, "must be a non-negative integer");
        d = v->valuedouble > COUNT_MAX ? COUNT_MAX : v->valuedouble;
        *(size_t *)((char *)n + kw->off) = (size_t)d;
        return 0;
}

static int
kw_unique(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
          const struct keyword *kw AB_UNUSED)
{
        if (!cJSON_IsBool(v))
                return cerr(c, "must be a boolean");
        n->unique = cJSON_IsTrue(v);
        return 0;
}

static int
kw_pattern(struct cctx *c, struct node *n, const cJSON *v, unsigned depth AB_UNUSED,
           const struct keyword *kw AB_UNUSED)
{
        char why[128];
        int r;

        if (!cJSON_IsString(v))
                return cerr(c, "must be a string (a regular expression)");
        if (n->re) /* cannot happen (one keyword each), but never leak a regex */
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

static int
kw_string_annotation(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v, unsigned depth AB_UNUSED,
                     const struct keyword *kw AB_UNUSED)
{
        return cJSON_IsString(v) ? 0 : cerr(c, "must be a string");
}

static int
kw_bool_annotation(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v, unsigned depth AB_UNUSED,
                   const struct keyword *kw AB_UNUSED)
{
        return cJSON_IsBool(v) ? 0 : cerr(c, "must be a boolean");
}

static int
kw_examples(struct cctx *c, struct node *n AB_UNUSED, const cJSON *v, unsigned depth AB_UNUSED,
            const struct keyword *kw AB_UNUSED)
{
        return cJSON_IsArray(v) ? 0 : cerr(c, "must be an array");
}

static int
kw_any(struct cctx *c AB_UNUSED, struct node *n AB_UNUSED, const cJSON *v AB_UNUSED,
       unsigned depth AB_UNUSED, const struct keyword *kw AB_UNUSED)
{
        return 0;
}

#define NUM(name, field, flag)                                      \
        {                                                           \
                name, kw_number, offsetof(struct node, field), flag \
        }
#define COUNT(name, field)                                      \
        {                                                       \
                name, kw_count, offsetof(struct node, field), 0 \
        }
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
static struct node *
compile_node(struct cctx *c, const cJSON *j, unsigned depth)
{
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
        cJSON_ArrayForEach(m, j)
        {
                const struct keyword *kw = NULL;
                size_t mark;
                int r;

                for (size_t i = 0; i < AB_ELEMENTSOF(keywords); i++)
                        if (strcmp(m->string, keywords[i].name) == 0)
                                kw = &keywords[i];
                if (!kw) {
                        char disp[NAME_BUF];
                        if (strncmp(m->string, "x-", 2) == 0)
                                continue; /* vendor extension: ignored */
                        hs_schema_format_name(m->string, disp);
                        cerr(c,
                             "unknown keyword '%s' (not in the supported subset of JSON "
                             "Schema, see docs/result-shaping.md)",
                             disp);
                        goto fail;
                }
                mark = hs_schema_path_push_key(&c->path, m->string);
                r = kw->fn(c, n, m, depth, kw);
                hs_schema_path_pop(&c->path, mark);
                if (r < 0)
                        goto fail;
        }
        return n;
fail:
        node_free(n);
        return NULL;
}

int
hs_schema_compile(const cJSON *schema, struct hs_schema **ret, char **ret_err)
{
        struct cctx c = { 0 };
        struct hs_schema *s = NULL;
        struct node *root = NULL;
        int r;

        if (!schema)
                cerr(&c, "missing");
        else if (check_schema_json(&c, schema, 1) == 0)
                root = compile_node(&c, schema, 1);
        if (c.path.err)
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
        ab_buf_free(&c.path);
        return r;
}

void
hs_schema_free(struct hs_schema *s)
{
        if (!s)
                return;
        node_free(s->root);
        free(s);
}
