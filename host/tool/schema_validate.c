/* SPDX-License-Identifier: MIT */
/* The JSON Schema subset: validation of a value against a compiled schema, with a CPU
 * budget for patterns and the first errors named with their location. */
#include "config.h"

#include "host/tool/schema_internal.h"

/* ---- validation ---- */

struct vctx {
        struct ab_buf path;
        char *msgs[HS_ERRORS_SHOWN];
        unsigned n_errors;
        bool oom;
        int64_t pattern_ns; /* CPU time spent matching patterns so far */
};

/* CPU time of this thread in nanoseconds. */
static int64_t
thread_cpu_ns(void)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Count an error at the current path; keep its message if it is among the first shown. */
AB_PRINTF(2, 3)
static void
verr(struct vctx *v, const char *fmt, ...)
{
        unsigned i = v->n_errors++;
        va_list ap;
        char *msg = NULL;

        if (i >= HS_ERRORS_SHOWN || v->oom)
                return;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg || asprintf(&v->msgs[i], "%s: %s", hs_schema_path_str(&v->path, "value"), msg) < 0) {
                v->msgs[i] = NULL;
                v->oom = true;
        }
        free(msg);
}

static bool
vdone(const struct vctx *v)
{
        return v->n_errors >= HS_MAX_ERRORS || v->oom || v->path.err;
}

/* Check the structure of a value before validating it against a schema: containers
 * nested at most HS_VALUE_MAX_DEPTH deep (depth counts j), strings and names well-formed
 * UTF-8, no name twice in an object, numbers finite. */
static void
check_value(struct vctx *v, const cJSON *j, unsigned depth)
{
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
                if (hs_schema_find_duplicate_name(j, &dup) < 0) {
                        v->oom = true;
                        return;
                }
                if (dup) {
                        char disp[NAME_BUF];
                        hs_schema_format_name(dup, disp);
                        verr(v, "property '%s' given twice", disp);
                        return;
                }
        }
        cJSON_ArrayForEach(e, j)
        {
                size_t mark;
                if (cJSON_IsObject(j)) {
                        if (!ab_utf8_valid(e->string, strlen(e->string), NULL)) {
                                char disp[NAME_BUF];
                                hs_schema_format_name(e->string, disp);
                                verr(v, "property name '%s' is not valid UTF-8", disp);
                                continue;
                        }
                        mark = hs_schema_path_push_key(&v->path, e->string);
                } else
                        mark = hs_schema_path_push_index(&v->path, i++);
                check_value(v, e, depth + 1);
                hs_schema_path_pop(&v->path, mark);
                if (vdone(v))
                        return;
        }
}

static unsigned
value_type(const cJSON *j)
{
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
                return T_NUMBER | (hs_schema_is_integral(j->valuedouble) ? T_INTEGER : 0);
        return 0;
}

static const char *
value_type_name(unsigned t)
{
        if (t & T_INTEGER)
                return "integer";
        for (size_t i = 0; i < AB_ELEMENTSOF(type_names); i++)
                if (t == type_names[i].bit)
                        return type_names[i].name;
        return "an unknown type";
}

static void validate(struct vctx *v, const struct node *n, const cJSON *j);

static void
validate_number(struct vctx *v, const struct node *n, double d)
{
        char b[40];

        if (n->num & HAS_MIN && !(d >= n->minimum)) {
                hs_schema_format_number(n->minimum, b);
                verr(v, "must be >= %s", b);
        }
        if (n->num & HAS_MAX && !(d <= n->maximum)) {
                hs_schema_format_number(n->maximum, b);
                verr(v, "must be <= %s", b);
        }
        if (n->num & HAS_XMIN && !(d > n->xmin)) {
                hs_schema_format_number(n->xmin, b);
                verr(v, "must be > %s", b);
        }
        if (n->num & HAS_XMAX && !(d < n->xmax)) {
                hs_schema_format_number(n->xmax, b);
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
                        hs_schema_format_number(n->multiple, b);
                        verr(v, "must be a multiple of %s", b);
                }
        }
}

static void
validate_string(struct vctx *v, const struct node *n, const char *s)
{
        if (n->min_len > 0 || n->max_len != SIZE_MAX) {
                size_t chars = 0;
                (void)ab_utf8_valid(s, strlen(s), &chars); /* checked by check_value */
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
                else if (r < 0) /* fail closed: the value is not accepted */
                        verr(v, "could not be matched against the pattern '%s': %s", n->pattern,
                             ab_regex_strerror(r));
        }
}

struct item_canon {
        struct canon c;
        size_t index;
};

static int
cmp_item_canon(const void *a, const void *b)
{
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
static void
check_unique(struct vctx *v, const cJSON *j, size_t count)
{
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
        cJSON_ArrayForEach(e, j)
        {
                if (hs_schema_canon_of(e, &ic[i].c) < 0) {
                        v->oom = true;
                        goto out;
                }
                ic[i].index = i;
                i++;
        }
        qsort(ic, count, sizeof(*ic), cmp_item_canon);
        for (i = 1; i < count; i++)
                if (hs_schema_canon_eq(&ic[i - 1].c, &ic[i].c) && ic[i].index < second) {
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

static void
validate_array(struct vctx *v, const struct node *n, const cJSON *j)
{
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
        cJSON_ArrayForEach(e, j)
        {
                size_t mark = hs_schema_path_push_index(&v->path, i++);
                validate(v, n->items, e);
                hs_schema_path_pop(&v->path, mark);
                if (vdone(v))
                        return;
        }
}

static int
cmp_key_prop(const void *key, const void *p)
{
        return strcmp(key, ((const struct prop *)p)->name);
}

static void
validate_object(struct vctx *v, const struct node *n, const cJSON *j)
{
        const cJSON *e;
        size_t count = 0;

        cJSON_ArrayForEach(e, j) count++;
        if (count < n->min_props)
                verr(v, "must have at least %zu properties (it has %zu)", n->min_props, count);
        if (count > n->max_props)
                verr(v, "must have at most %zu properties (it has %zu)", n->max_props, count);
        for (size_t i = 0; i < n->n_required && !vdone(v); i++)
                if (!cJSON_GetObjectItemCaseSensitive(j, n->required[i])) {
                        size_t mark = hs_schema_path_push_key(&v->path, n->required[i]);
                        verr(v, "required");
                        hs_schema_path_pop(&v->path, mark);
                }
        cJSON_ArrayForEach(e, j)
        {
                const struct prop *p = n->n_props ? bsearch(e->string, n->props, n->n_props,
                                                            sizeof(*n->props), cmp_key_prop)
                                                  : NULL;
                const struct node *sub = p ? p->schema : n->additional;
                size_t mark;

                if (vdone(v))
                        return;
                if (!sub)
                        continue;
                if (!p && sub->never) {
                        char disp[NAME_BUF];
                        hs_schema_format_name(e->string, disp);
                        verr(v, "unexpected property '%s' (additionalProperties is false)", disp);
                        continue;
                }
                mark = hs_schema_path_push_key(&v->path, e->string);
                validate(v, sub, e);
                hs_schema_path_pop(&v->path, mark);
        }
}

/* Validate j against node n, recording errors at the current path. */
static void
validate(struct vctx *v, const struct node *n, const cJSON *j)
{
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
                if (hs_schema_canon_of(j, &cv) < 0) {
                        v->oom = true;
                        return;
                }
                for (size_t i = 0; i < n->n_enums && !found; i++)
                        found = hs_schema_canon_eq(&cv, &n->enums[i]);
                if (n->n_enums && !found)
                        verr(v, "must be one of %s", n->enum_text);
                if (n->constv && !hs_schema_canon_eq(&cv, n->constv))
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

int
hs_schema_validate(const struct hs_schema *s, const cJSON *value, const char *root_name, char **ret_err)
{
        struct vctx v = { 0 };
        char *msg = NULL;
        size_t len = 0;
        int r;

        ab_buf_put(&v.path, root_name ? root_name : "value", strlen(root_name ? root_name : "value"));
        if (!value)
                verr(&v, "missing");
        else {
                check_value(&v, value, 1);
                if (v.n_errors == 0)
                        validate(&v, s->root, value);
        }
        if (v.oom || v.path.err) {
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
        ab_buf_free(&v.path);
        return r;
}
