/* SPDX-License-Identifier: MIT */
/* Modules: the file checks (owner, mode, sealed copy), the worker's hello and the tool
 * table built from it (names, descriptors, compiled schemas), a module directory's load. */
#include "config.h"

#include "host/workers/internal.h"

/* ---------- module load: hello and tools ---------- */

void
hw_tool_entry_free(struct tool_entry *t)
{
        if (!t)
                return;
        free(t->pub.name);
        free(t->pub.module);
        free(t->bare);
        cJSON_Delete(t->pub.descriptor);
        hs_schema_free(t->pub.input);
        hs_schema_free(t->pub.output);
        free(t);
}

int
hw_tool_cmp(const void *a, const void *b)
{
        const struct tool_entry *const *x = a, *const *y = b;

        return strcmp((*x)->pub.name, (*y)->pub.name);
}

static bool
registry_has_tool(const struct hw_registry *reg, const char *name)
{
        return hw_tool_find(reg, name) != NULL;
}

/* Compile schema member key of the worker's tool description, which must be an object schema
 * of type "object". Returns 0 (*ret NULL when absent and optional), -EINVAL with the reason
 * in *ret_err (a new string), or -ENOMEM. */
static int
compile_tool_schema(const cJSON *desc, const char *key, bool required, cJSON **ret_copy,
                    struct hs_schema **ret, char **ret_err)
{
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(desc, key);
        const cJSON *type;
        struct hs_schema *compiled = NULL;
        char *err = NULL;
        cJSON *copy;
        int r;

        if (!s || (!required && cJSON_IsNull(s))) {
                if (required) {
                        *ret_err = hw_strdup_printf("%s is missing", key);
                        return *ret_err ? -EINVAL : -ENOMEM;
                }
                *ret_copy = NULL;
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsObject(s)) {
                *ret_err = hw_strdup_printf("%s is not an object", key);
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        type = cJSON_GetObjectItemCaseSensitive(s, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "object") != 0) {
                *ret_err = hw_strdup_printf("%s must have \"type\": \"object\"", key);
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        r = hs_schema_compile(s, &compiled, &err);
        if (r < 0) {
                if (r == -EINVAL) {
                        *ret_err = hw_strdup_printf("%s: %s", key, err ? err : "invalid schema");
                        free(err);
                        return *ret_err ? -EINVAL : -ENOMEM;
                }
                free(err);
                return r;
        }
        copy = cJSON_Duplicate(s, true);
        if (!copy) {
                hs_schema_free(compiled);
                return -ENOMEM;
        }
        *ret_copy = copy;
        *ret = compiled;
        return 0;
}

/* Build the served tool from one entry of a hello's "tools" array. Returns 0 with *ret set,
 * -EINVAL with *ret_err (a new string) when the tool is refused, or -ENOMEM. */
int
hw_tool_from_hello(struct hw_module *m, const cJSON *desc, struct tool_entry **ret, char **ret_err)
{
        static const char *const hints[] = { "readOnlyHint", "destructiveHint", "idempotentHint",
                                             "openWorldHint" };
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(desc, "name");
        const cJSON *title = cJSON_GetObjectItemCaseSensitive(desc, "title");
        const cJSON *description = cJSON_GetObjectItemCaseSensitive(desc, "description");
        const cJSON *annotations = cJSON_GetObjectItemCaseSensitive(desc, "annotations");
        struct tool_entry *t = NULL;
        cJSON *in_copy = NULL, *out_copy = NULL, *d = NULL;
        const char *bare;
        size_t mlen = strlen(m->name);
        int r;

        if (!cJSON_IsObject(desc) || !cJSON_IsString(name)) {
                *ret_err = strdup("the tool has no name");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        bare = name->valuestring;
        /* Accept "tool" and "<module>.tool". */
        if (strncmp(bare, m->name, mlen) == 0 && bare[mlen] == '.')
                bare += mlen + 1;
        if (!ab_name_valid(bare, AB_MODULE_NAME_MAX, 0)) {
                *ret_err = strdup("the tool name must match [A-Za-z0-9_-]{1,48}");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        if ((title && !cJSON_IsNull(title) && !cJSON_IsString(title)) ||
            (description && !cJSON_IsNull(description) && !cJSON_IsString(description))) {
                *ret_err = strdup("title and description must be strings");
                return *ret_err ? -EINVAL : -ENOMEM;
        }
        if (annotations && !cJSON_IsNull(annotations) && !cJSON_IsObject(annotations)) {
                *ret_err = strdup("annotations must be an object");
                return *ret_err ? -EINVAL : -ENOMEM;
        }

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->m = m;
        t->bare = strdup(bare);
        t->pub.module = strdup(m->name);
        t->pub.name = hw_strdup_printf("%s.%s", m->name, bare);
        if (!t->bare || !t->pub.module || !t->pub.name) {
                r = -ENOMEM;
                goto fail;
        }
        r = compile_tool_schema(desc, "inputSchema", true, &in_copy, &t->pub.input, ret_err);
        if (r < 0)
                goto fail;
        r = compile_tool_schema(desc, "outputSchema", false, &out_copy, &t->pub.output, ret_err);
        if (r < 0)
                goto fail;

        r = -ENOMEM;
        d = cJSON_CreateObject();
        if (!d || !cJSON_AddStringToObject(d, "name", t->pub.name))
                goto fail;
        if (cJSON_IsString(title) && !cJSON_AddStringToObject(d, "title", title->valuestring))
                goto fail;
        if (cJSON_IsString(description) &&
            !cJSON_AddStringToObject(d, "description", description->valuestring))
                goto fail;
        if (!cJSON_AddItemToObject(d, "inputSchema", in_copy))
                goto fail;
        in_copy = NULL;
        if (out_copy) {
                if (!cJSON_AddItemToObject(d, "outputSchema", out_copy))
                        goto fail;
                out_copy = NULL;
        }
        if (cJSON_IsObject(annotations)) {
                cJSON *a = cJSON_CreateObject();

                if (!a || !cJSON_AddItemToObject(d, "annotations", a)) {
                        cJSON_Delete(a);
                        goto fail;
                }
                for (size_t i = 0; i < AB_ELEMENTSOF(hints); i++) {
                        const cJSON *h = cJSON_GetObjectItemCaseSensitive(annotations, hints[i]);

                        if (cJSON_IsBool(h) && !cJSON_AddBoolToObject(a, hints[i], cJSON_IsTrue(h)))
                                goto fail;
                }
                if (cJSON_GetArraySize(a) == 0)
                        cJSON_DeleteItemFromObjectCaseSensitive(d, "annotations");
        }
        t->pub.descriptor = d;
        *ret = t;
        return 0;
fail:
        cJSON_Delete(in_copy);
        cJSON_Delete(out_copy);
        cJSON_Delete(d);
        hw_tool_entry_free(t);
        return r;
}

/* Check a hello from a worker of m. With tools non-NULL (the first worker), build the
 * module's tools into *tools / *n_tools, refusing (with a log line) each tool that does not
 * compile or repeats a name. Returns 0, -EBADMSG (not a usable hello: *ret_why says why,
 * static) or -ENOMEM. */
int
hw_check_hello(struct hw_module *m, const cJSON *msg, struct tool_entry ***tools, size_t *n_tools,
               const char **ret_why)
{
        const cJSON *module = cJSON_GetObjectItemCaseSensitive(msg, "module");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(msg, "tools");
        const cJSON *item;
        struct tool_entry **v = NULL;
        size_t n = 0;
        int r;

        if (!cJSON_IsString(module) || strcmp(module->valuestring, m->name) != 0) {
                *ret_why = "the module's descriptor names another module than its file name";
                return -EBADMSG;
        }
        if (!cJSON_IsArray(list)) {
                *ret_why = "the hello has no tool list";
                return -EBADMSG;
        }
        if (!tools)
                return 0;
        if (cJSON_GetArraySize(list) > 128) {
                *ret_why = "the module declares more than 128 tools";
                return -EBADMSG;
        }
        cJSON_ArrayForEach(item, list)
        {
                struct tool_entry *t = NULL;
                char *err = NULL;
                bool dup = false;

                r = hw_tool_from_hello(m, item, &t, &err);
                if (r == -EINVAL) {
                        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(item, "name");

                        log_warning("module %s: refusing tool %.*s: %s", m->path,
                                    AB_UTF8_CUT(cJSON_IsString(nm) ? nm->valuestring : "(unnamed)", 64),
                                    err ? err : "invalid");
                        free(err);
                        continue;
                }
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < n; i++)
                        if (strcmp(v[i]->pub.name, t->pub.name) == 0)
                                dup = true;
                if (dup || registry_has_tool(m->reg, t->pub.name)) {
                        log_warning("module %s: refusing tool %s: a tool of that name is served already",
                                    m->path, t->pub.name);
                        hw_tool_entry_free(t);
                        continue;
                }
                struct tool_entry **nv = realloc(v, (n + 1) * sizeof(*v));
                if (!nv) {
                        hw_tool_entry_free(t);
                        r = -ENOMEM;
                        goto fail;
                }
                v = nv;
                v[n++] = t;
        }
        if (n == 0) {
                free(v);
                *ret_why = "the module has no tool that can be served";
                return -EBADMSG;
        }
        *tools = v;
        *n_tools = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                hw_tool_entry_free(v[i]);
        free(v);
        return r;
}

/* See workers.h: check_hello and result_from_frame on one frame, for the fuzz target. */
int
hw_check_worker_frame(const cJSON *msg)
{
        struct hw_module m = { .name = (char *)"fuzz", .path = (char *)"fuzz.so", .fd = -1 };
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "t");
        struct tool_entry **tools = NULL;
        size_t n = 0;
        const char *why = NULL;
        cJSON *copy, *res = NULL;
        int r;

        if (!cJSON_IsString(t))
                return -EBADMSG;
        if (strcmp(t->valuestring, "hello") == 0) {
                r = hw_check_hello(&m, msg, &tools, &n, &why);
                for (size_t i = 0; i < n; i++)
                        hw_tool_entry_free(tools[i]);
                free(tools);
                return r;
        }
        if (strcmp(t->valuestring, "result") != 0)
                return 0;
        copy = cJSON_Duplicate(msg, true);
        if (!copy)
                return -ENOMEM;
        r = hw_result_from_frame(copy, &res);
        cJSON_Delete(res);
        cJSON_Delete(copy);
        return r;
}

/* Wait (blocking, bounded by HW_HELLO_TIMEOUT_MS) for w's init frame to be written and its
 * hello to arrive; log frames before it go to the host log. Returns 0 with *ret the hello,
 * or -errno with *ret_why (static) set. */
static int
worker_wait_hello(struct hw_worker *w, cJSON **ret, const char **ret_why)
{
        int64_t deadline = (int64_t)ab_now_ms() + HW_HELLO_TIMEOUT_MS;

        for (;;) {
                struct pollfd pfd = { .fd = w->fd, .events = POLLIN | (w->out ? POLLOUT : 0) };
                int64_t left = deadline - (int64_t)ab_now_ms();
                cJSON *msg = NULL;
                const char *t;
                int r;

                if (left <= 0) {
                        *ret_why = "its worker did not answer in time";
                        return -ETIMEDOUT;
                }
                r = poll(&pfd, 1, (int)left);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        *ret_why = "poll failed";
                        return -errno;
                }
                if (r == 0)
                        continue;
                if (pfd.revents & POLLOUT) {
                        r = hw_worker_flush(w);
                        if (r < 0 && !(pfd.revents & POLLIN)) {
                                *ret_why = "its worker closed its control channel";
                                return -EPIPE;
                        }
                }
                if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                for (;;) {
                        r = ab_frame_read(w->fd, &w->reader, &msg);
                        if (r == 0)
                                break;
                        if (r == -EPIPE || r == -ECONNRESET) {
                                *ret_why = "its worker exited before answering";
                                return -EPIPE;
                        }
                        if (r < 0) {
                                *ret_why = "its worker sent an invalid message";
                                return r == -ENOMEM ? r : -EBADMSG;
                        }
                        t = cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
                        if (strcmp(t, "hello") == 0 || strcmp(t, "fail") == 0) {
                                *ret = msg;
                                return 0;
                        }
                        if (strcmp(t, "log") == 0) {
                                const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "message");

                                if (cJSON_IsString(text))
                                        log_info("module %s: %.*s", w->m->name, HW_LOG_MESSAGE_MAX,
                                                 text->valuestring);
                                cJSON_Delete(msg);
                                continue;
                        }
                        cJSON_Delete(msg);
                        *ret_why = "its worker sent an unexpected message before its hello";
                        return -EBADMSG;
                }
        }
}

void
hw_module_free(struct hw_module *m)
{
        if (!m)
                return;
        sd_event_source_disable_unref(m->grow_timer);
        sd_event_source_disable_unref(m->idle_timer);
        if (m->fd >= 0)
                close(m->fd);
        free(m->name);
        free(m->path);
        free(m);
}

/* Pin a module's code at load: copy the checked file into a memfd sealed against any change
 * (F_SEAL_WRITE, SHRINK, GROW, SEAL). Every worker of the module, also those started later,
 * loads this copy: whoever can write the file afterwards (the host's uid, which a module runs
 * as) cannot change the code another module's worker runs. *fdp is replaced by the memfd
 * (the file's descriptor is closed). Returns 0 or -errno. */
static int
module_pin(int file_fd, const char *name, int *fdp)
{
        _cleanup_close_ int mfd = -1;
        char buf[65536];
        off_t off = 0;
        ssize_t n;

        mfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0)
                return -errno;
        for (;;) {
                n = pread(file_fd, buf, sizeof(buf), off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                off += n;
                if (off > HW_MODULE_BYTES_MAX)
                        return -EFBIG;
                for (ssize_t done = 0; done < n;) {
                        ssize_t w = write(mfd, buf + done, (size_t)(n - done));

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return -errno;
                        done += w;
                }
        }
        if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;
        close(*fdp);
        *fdp = AB_TAKE_FD(mfd);
        return 0;
}

/* Open and check one module file, start its first worker, wait for its hello and add its
 * tools. Failures are logged and return a negative errno (the caller carries on). */
/* Refuse module m whose first worker started but will not serve: log why (at most 512
 * bytes of it) and tell the registry's refusal callback. */
static void
refuse_started(struct hw_module *m, const char *why)
{
        log_warning("refusing module %s: %.*s", m->path, AB_UTF8_CUT(why, 512));
        if (m->reg->on_refusal)
                m->reg->on_refusal(m->reg->refusal_userdata, m->name, why);
}

void
hw_registry_on_refusal(struct hw_registry *reg, hw_refusal_fn fn, void *userdata)
{
        if (!reg)
                return;
        reg->on_refusal = fn;
        reg->refusal_userdata = userdata;
}

/* The module file's checks (a regular file, not a link, owned by root or the host's uid, not
 * group- or world-writable, at most HW_MODULE_BYTES_MAX), then its copy pinned in sealed
 * memory as m->fd. Returns 0, or -errno (the refusal logged). */
static int
module_open_checked(struct hw_module *m, int dirfd, const char *file)
{
        struct stat st;
        int fd = -1, ret;

        fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                ret = -errno;
                if (ret == -ELOOP)
                        log_warning("refusing module %s: it is a symbolic link", m->path);
                else
                        log_warning("refusing module %s: cannot open it: %s", m->path, strerror(-ret));
                goto out;
        }
        if (fstat(fd, &st) < 0) {
                ret = -errno;
                log_warning("refusing module %s: cannot stat it: %s", m->path, strerror(-ret));
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                log_warning("refusing module %s: it is not a regular file", m->path);
                ret = -EPERM;
                goto out;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                log_warning("refusing module %s: it is owned by uid %u, not by root or the host's uid %u",
                            m->path, (unsigned)st.st_uid, (unsigned)geteuid());
                ret = -EPERM;
                goto out;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                log_warning("refusing module %s: it is %s-writable (mode %04o)", m->path,
                            (st.st_mode & S_IWOTH) ? "world" : "group", (unsigned)(st.st_mode & 07777));
                ret = -EPERM;
                goto out;
        }
        if (st.st_size > HW_MODULE_BYTES_MAX) {
                log_warning("refusing module %s: it is larger than %d MiB", m->path,
                            HW_MODULE_BYTES_MAX >> 20);
                ret = -EFBIG;
                goto out;
        }
        ret = module_pin(fd, m->name, &fd);
        if (ret < 0) {
                log_warning("refusing module %s: cannot copy it into sealed memory: %s", m->path,
                            strerror(-ret));
                goto out;
        }
        m->fd = ab_fd_move_high(AB_TAKE_FD(fd), HW_FD_MIN);
        if (m->fd < 0) {
                ret = m->fd;
                log_warning("refusing module %s: %s", m->path, strerror(-ret));
                goto out;
        }
        ret = 0;
out:
        if (fd >= 0)
                close(fd);
        return ret;
}

static int
module_load(struct hw_registry *reg, int dirfd, const char *dir, const char *file)
{
        size_t flen = strlen(file);
        struct hw_module *m = NULL;
        struct hw_worker *w = NULL;
        struct tool_entry **tools = NULL;
        size_t n_tools = 0;
        cJSON *hello = NULL;
        const char *why = NULL;
        char status[64];
        int ret;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->reg = reg;
        m->fd = -1;
        m->path = hw_strdup_printf("%s/%s", dir, file);
        m->name = strndup(file, flen - 3);
        if (!m->path || !m->name) {
                ret = -ENOMEM;
                goto out;
        }
        if (!ab_name_valid(m->name, AB_MODULE_NAME_MAX, 0)) {
                log_warning(
                        "refusing module %s: the file name must be <name>.so with a name of [A-Za-z0-9_-]{1,48}",
                        m->path);
                ret = -EINVAL;
                goto out;
        }
        for (size_t i = 0; i < reg->n_modules; i++)
                if (strcmp(reg->modules[i]->name, m->name) == 0) {
                        log_warning("skipping module %s: a module named %s was loaded already from %s",
                                    m->path, m->name, reg->modules[i]->path);
                        ret = -EEXIST;
                        goto out;
                }
        if (reg->n_modules >= HW_MODULES_MAX) {
                log_warning("refusing module %s: %d modules are loaded already", m->path, HW_MODULES_MAX);
                ret = -ENOSPC;
                goto out;
        }

        ret = module_open_checked(m, dirfd, file);
        if (ret < 0)
                goto out;

        ret = hw_worker_spawn(m, &w);
        if (ret < 0) {
                log_warning("refusing module %s: cannot start %s: %s", m->path, reg->worker_path,
                            strerror(-ret));
                goto out;
        }
        ret = worker_wait_hello(w, &hello, &why);
        if (ret < 0) {
                char what[128];

                hw_reap_describe(w->pid, true, status, sizeof(status));
                snprintf(what, sizeof what, "its worker exited before answering (%s)", status);
                refuse_started(m, ret == -EPIPE ? what : why);
                goto out;
        }
        if (strcmp(cJSON_GetObjectItemCaseSensitive(hello, "t")->valuestring, "fail") == 0) {
                const cJSON *err = cJSON_GetObjectItemCaseSensitive(hello, "error");

                hw_reap_describe(w->pid, true, status, sizeof(status));
                refuse_started(m, cJSON_IsString(err) ? err->valuestring : "its initialisation failed");
                ret = -EINVAL;
                goto out;
        }
        ret = hw_check_hello(m, hello, &tools, &n_tools, &why);
        if (ret < 0) {
                hw_reap_describe(w->pid, true, status, sizeof(status));
                if (ret == -EBADMSG)
                        refuse_started(m, why);
                goto out;
        }

        struct hw_module **nm = realloc(reg->modules, (reg->n_modules + 1) * sizeof(*nm));
        if (!nm) {
                ret = -ENOMEM;
                goto fail_worker;
        }
        reg->modules = nm;
        struct tool_entry **nt = realloc(reg->tools, (reg->n_tools + n_tools) * sizeof(*nt));
        if (!nt) {
                ret = -ENOMEM;
                goto fail_worker;
        }
        reg->tools = nt;
        w->state = W_IDLE;
        w->since_usec = ab_now_us();
        ret = hw_worker_attach(w);
        if (ret < 0)
                goto fail_worker;
        w = NULL;
        memcpy(reg->tools + reg->n_tools, tools, n_tools * sizeof(*tools));
        reg->n_tools += n_tools;
        qsort(reg->tools, reg->n_tools, sizeof(*reg->tools), hw_tool_cmp);
        free(tools);
        tools = NULL;
        n_tools = 0;
        reg->modules[reg->n_modules++] = AB_TAKE_PTR(m);
        ret = 0;
        goto out;

fail_worker:
        hw_reap_describe(w->pid, true, status, sizeof(status));
        log_warning("refusing module %s: %s", m->path, strerror(-ret));
out:
        cJSON_Delete(hello);
        for (size_t i = 0; i < n_tools; i++)
                hw_tool_entry_free(tools[i]);
        free(tools);
        hw_worker_free(w);
        hw_module_free(m);
        return ret;
}

static int
str_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int
hw_registry_load_dir(struct hw_registry *reg, const char *dir)
{
        char **names = NULL;
        size_t n = 0, loaded = 0;
        struct dirent *de;
        DIR *d;
        int ret = 0;

        if (!reg || !dir)
                return -EINVAL;
        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                ret = -errno;
                log_warning("cannot read module directory %s: %s", dir, strerror(-ret));
                return ret;
        }
        while ((errno = 0, de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char **nv;

                if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
                        continue;
                if (n >= 4096) {
                        log_warning("module directory %s: more than 4096 entries, the rest is ignored", dir);
                        break;
                }
                nv = realloc(names, (n + 1) * sizeof(*nv));
                if (!nv) {
                        ret = -ENOMEM;
                        goto out;
                }
                names = nv;
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        ret = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (errno != 0) {
                ret = -errno;
                log_warning("cannot read module directory %s: %s", dir, strerror(-ret));
                goto out;
        }
        if (n > 1)
                qsort(names, n, sizeof(*names), str_cmp); /* names is NULL when the directory is empty */
        for (size_t i = 0; i < n; i++) {
                int k = module_load(reg, dirfd(d), dir, names[i]);

                if (k == -ENOMEM) {
                        ret = k;
                        goto out;
                }
                if (k == 0)
                        loaded++;
        }
        ret = (int)loaded;
out:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        closedir(d);
        return ret;
}
