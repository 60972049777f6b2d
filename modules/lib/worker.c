/* SPDX-License-Identifier: MIT */
/* The worker process: loads one module and runs its tool calls, one at a time, for
 * agentbroker-mcp. Started as
 *
 *     agentbroker-worker --module-fd 3 --control-fd 4 [--egress-fd 5] --name <module>
 *
 * fd 3 is the module file, opened and checked by the host (O_NOFOLLOW, owner, mode); fd 4 is
 * the host's end of a SOCK_STREAM socketpair carrying frames (common/frame.h); fd 5, when given,
 * the channel to this worker's agentbroker-egress (the module's only network, egress.c). The worker
 *   1. dies with its parent (PR_SET_PDEATHSIG), closes every other inherited descriptor, makes
 *      itself non-dumpable, points stdout at stderr (a module's printf must never reach the
 *      host's MCP stream); SIGPIPE keeps its default: the sockets are written with
 *      MSG_NOSIGNAL, and a module's own children inherit nothing unusual;
 *   2. waits for {"t":"init"} (the broker socket, the module's configuration), confines itself
 *      (confine.c: its broker connection pinned with worker-hello, no capabilities,
 *      no_new_privs, a seccomp filter), then loads the module from /proc/self/fd/3
 *      (RTLD_NOW|RTLD_LOCAL) and checks its descriptor;
 *   3. calls the module's init with the configuration and answers {"t":"hello"} with the
 *      tools as MCP Tool objects, or {"t":"fail"} and exits 1;
 *   4. runs each {"t":"call"} and answers one {"t":"result"} (with "us": how long the tool's
 *      call hook ran), wiping the call's state;
 *   5. on EOF calls fini and exits 0.
 *
 * ABI versions: a module whose major differs from ABM_ABI_MAJOR is refused. A module built
 * against a newer minor is loaded: members are only ever appended, and this worker reads
 * only the members of the minor it was built with (a notice goes to stderr). An older minor
 * is loaded too; members added after it are then not read.
 *
 * Start-up is kept cheap (spawn to first result is part of the host's cold start): one broker
 * round trip (worker-hello) and the filter, no work beyond loading and checking the module.
 * The broker connection is made before the module loads because the filter then forbids new
 * AF_UNIX sockets: a worker that loses it answers its call and exits (broker_lost).
 * Errors go to stderr, which the host captures; never a secret, a token or an argument. */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "common/client.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/name.h"
#include "common/secmem.h"
#include "common/wire.h"
#include "modules/lib/confine.h"
#include "modules/lib/internal.h"

#define WORKER_TEXT_MAX ABM_SCHEMA_MAX /* longest tool title or description */
#define WORKER_VERSION_MAX 128         /* longest module version string */
#define WORKER_PATH_MAX 108            /* sun_path */

/* ---- cJSON allocations wiped on free ---- */

/* Frames and broker replies carry tokens and secret values through cJSON's buffers (also the
 * ones it grows and drops while printing): in a worker every cJSON allocation is wiped when
 * it is freed. */
static void *
wiping_malloc(size_t n)
{
        return malloc(n);
}

static void
wiping_free(void *p)
{
        if (p) {
                ab_freezero(p, malloc_usable_size(p));
        }
}

/* ---- the module descriptor ---- */

_Static_assert(ABM_NAME_MAX == AB_MODULE_NAME_MAX,
               "module names: one limit in the ABI and in common/name.h");

/* Module and tool names: [A-Za-z0-9_-]{1,ABM_NAME_MAX}. */
static bool
name_ok(const char *s)
{
        return ab_name_valid(s, ABM_NAME_MAX, 0);
}

/* A UTF-8 string of at most max bytes (NULL is fine when optional). */
static bool
text_ok(const char *s, size_t max, bool optional)
{
        size_t n;

        if (!s)
                return optional;
        n = strnlen(s, max + 1);
        return n <= max && abmi_utf8_check(s, n, NULL);
}

/* Parse a tool's schema: JSON text of at most ABM_SCHEMA_MAX bytes holding an object with
 * "type": "object" (MCP requires it of both input and output schemas). Returns the object
 * or NULL with *ret_why set. */
static cJSON *
parse_schema(const char *text, const char **ret_why)
{
        const cJSON *type;
        size_t n = strnlen(text, ABM_SCHEMA_MAX + 1);
        cJSON *v;

        if (n > ABM_SCHEMA_MAX) {
                *ret_why = "is larger than 64 KiB";
                return NULL;
        }
        if (!abmi_utf8_check(text, n, NULL)) {
                *ret_why = "is not UTF-8";
                return NULL;
        }
        v = ab_json_parse_exact(text, n);
        if (!v) {
                *ret_why = "is not valid JSON";
                return NULL;
        }
        type = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsObject(v) || !cJSON_IsString(type) || strcmp(type->valuestring, "object") != 0) {
                cJSON_Delete(v);
                *ret_why = "is not an object schema (\"type\": \"object\")";
                return NULL;
        }
        return v;
}

/* Add the annotations of a tool that are set; nothing when none is. Returns 0 or -ENOMEM. */
static int
add_annotations(cJSON *tool, const struct abm_annotations *a)
{
        static const char *const keys[] = { "readOnlyHint", "destructiveHint", "idempotentHint",
                                            "openWorldHint" };
        const uint8_t hints[] = { a->read_only, a->destructive, a->idempotent, a->open_world };
        cJSON *obj = NULL;

        for (size_t i = 0; i < AB_ELEMENTSOF(keys); i++) {
                if (hints[i] == ABM_HINT_DEFAULT)
                        continue;
                if (!obj && !(obj = cJSON_AddObjectToObject(tool, "annotations")))
                        return -ENOMEM;
                if (!cJSON_AddBoolToObject(obj, keys[i], hints[i] == ABM_HINT_TRUE))
                        return -ENOMEM;
        }
        return 0;
}

/* Check one tool and describe it as an MCP Tool object. Returns the object, or NULL with a
 * reason in why. */
static cJSON *
describe_tool(const char *module, const struct abm_tool *t, size_t i, char *why, size_t why_len)
{
        char full[2 * ABM_NAME_MAX + 2];
        const char *bad = NULL;
        cJSON *obj = NULL, *schema;
        const uint8_t hints[] = { t->annotations.read_only, t->annotations.destructive,
                                  t->annotations.idempotent, t->annotations.open_world };

        if (!name_ok(t->name)) {
                snprintf(why, why_len, "tool %zu has an invalid name (want [A-Za-z0-9_-]{1,%d})", i,
                         ABM_NAME_MAX);
                return NULL;
        }
        if (!t->call) {
                snprintf(why, why_len, "tool %s has no call hook", t->name);
                return NULL;
        }
        if (!text_ok(t->title, WORKER_TEXT_MAX, true) || !text_ok(t->description, WORKER_TEXT_MAX, true)) {
                snprintf(why, why_len,
                         "tool %s: title or description is not UTF-8 or is longer than %d bytes", t->name,
                         WORKER_TEXT_MAX);
                return NULL;
        }
        for (size_t h = 0; h < AB_ELEMENTSOF(hints); h++)
                if (hints[h] > ABM_HINT_FALSE) {
                        snprintf(why, why_len, "tool %s has an annotation that is not an enum abm_hint",
                                 t->name);
                        return NULL;
                }
        if (!t->input_schema) {
                snprintf(why, why_len, "tool %s has no input schema", t->name);
                return NULL;
        }

        snprintf(full, sizeof(full), "%s.%s", module, t->name);
        obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddStringToObject(obj, "name", full) ||
            (t->title && !cJSON_AddStringToObject(obj, "title", t->title)) ||
            (t->description && !cJSON_AddStringToObject(obj, "description", t->description)))
                goto oom;
        schema = parse_schema(t->input_schema, &bad);
        if (!schema) {
                snprintf(why, why_len, "tool %s: the input schema %s", t->name, bad);
                goto fail;
        }
        cJSON_AddItemToObject(obj, "inputSchema", schema);
        if (t->output_schema) {
                schema = parse_schema(t->output_schema, &bad);
                if (!schema) {
                        snprintf(why, why_len, "tool %s: the output schema %s", t->name, bad);
                        goto fail;
                }
                cJSON_AddItemToObject(obj, "outputSchema", schema);
        }
        if (add_annotations(obj, &t->annotations) < 0)
                goto oom;
        return obj;
oom:
        snprintf(why, why_len, "out of memory");
fail:
        cJSON_Delete(obj);
        return NULL;
}

/* Check the descriptor's header: type, ABI, name, version, tool count. Returns 0, or
 * -EINVAL with a reason in why. */
static int
check_module(const struct abm_module *m, const char *name, char *why, size_t why_len)
{
        uint32_t major = ABM_GET_MAJOR(m->abi_version), minor = ABM_GET_MINOR(m->abi_version);

        if (m->type != ABM_MODULE_TYPE) {
                snprintf(why, why_len, "the descriptor's type is 0x%08x, not ABM_MODULE_TYPE", m->type);
                return -EINVAL;
        }
        if (major != ABM_ABI_MAJOR) {
                snprintf(why, why_len,
                         "the module is built for ABI %u.%u; this worker has ABI %d.%d (major differs)",
                         major, minor, ABM_ABI_MAJOR, ABM_ABI_MINOR);
                return -EINVAL;
        }
        if (minor > ABM_ABI_MINOR)
                ab_log(LOG_NOTICE,
                       "%s: built for ABI %u.%u, this worker has %d.%d: members added after %d.%d are ignored",
                       name, major, minor, ABM_ABI_MAJOR, ABM_ABI_MINOR, ABM_ABI_MAJOR, ABM_ABI_MINOR);
        if (!name_ok(m->name) || strcmp(m->name, name) != 0) {
                snprintf(why, why_len, "the descriptor's name is not \"%s\"", name);
                return -EINVAL;
        }
        if (!text_ok(m->version, WORKER_VERSION_MAX, true)) {
                snprintf(why, why_len, "the version is not UTF-8 or longer than %d bytes",
                         WORKER_VERSION_MAX);
                return -EINVAL;
        }
        if (!m->tools || m->n_tools == 0 || m->n_tools > ABM_TOOLS_MAX) {
                snprintf(why, why_len, "the module declares %zu tools (1 to %d allowed)",
                         m->tools ? m->n_tools : 0, ABM_TOOLS_MAX);
                return -EINVAL;
        }

        return 0;
}

/* Check the tools and build the hello frame (module m, header checked). Returns the frame,
 * or NULL with a reason in why. */
static cJSON *
describe_module(const struct abm_module *m, char *why, size_t why_len)
{
        cJSON *hello = NULL, *tools;

        hello = cJSON_CreateObject();
        if (!hello || !cJSON_AddStringToObject(hello, "t", "hello") ||
            !cJSON_AddNumberToObject(hello, "abi", m->abi_version) ||
            !cJSON_AddStringToObject(hello, "module", m->name) ||
            !cJSON_AddStringToObject(hello, "version", m->version ? m->version : "") ||
            !(tools = cJSON_AddArrayToObject(hello, "tools"))) {
                snprintf(why, why_len, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < m->n_tools; i++) {
                cJSON *t;

                for (size_t j = 0; j < i; j++)
                        if (m->tools[i].name && strcmp(m->tools[i].name, m->tools[j].name) == 0) {
                                snprintf(why, why_len, "two tools are named %s", m->tools[i].name);
                                goto fail;
                        }
                t = describe_tool(m->name, &m->tools[i], i, why, why_len);
                if (!t)
                        goto fail;
                cJSON_AddItemToArray(tools, t);
        }
        return hello;
fail:
        cJSON_Delete(hello);
        return NULL;
}

/* Load the module from fd and find its descriptor. Returns it, or NULL with a reason. */
static const struct abm_module *
load_module(int fd, char *why, size_t why_len)
{
        char path[64];
        const struct abm_module *m;
        const char *e;
        void *h;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                e = dlerror();
                snprintf(why, why_len, "cannot load the module: %s", e ? e : "dlopen failed");
                return NULL;
        }
        (void)dlerror();
        m = dlsym(h, ABM_MODULE_SYMBOL);
        if (!m) {
                snprintf(why, why_len, "the module exports no %s descriptor", ABM_MODULE_SYMBOL);
                return NULL;
        }
        return m;
}

/* ---- frames ---- */

/* Wait for the next frame from the host. Returns 1 with *ret, 0 on EOF or reset, or -errno (a
 * bad frame). Between frames it polls before it reads: the host sends a call only after the answer to the
 * one before, so a read first would nearly always find nothing (a wasted system call a call). */
static int
next_frame(struct abmi_worker *w, cJSON **ret)
{
        if (w->reader.hdr_got == 0) {
                struct pollfd pfd = { .fd = w->host_fd, .events = POLLIN };

                while (poll(&pfd, 1, -1) < 0)
                        if (errno != EINTR)
                                return -errno;
        }
        for (;;) {
                struct pollfd pfd = { .fd = w->host_fd, .events = POLLIN };
                int r = ab_frame_read(w->host_fd, &w->reader, ret);

                if (r == 1)
                        return 1;
                /* The end of the channel, or a reset: the host closed its end with frames of
                 * ours unread (it stopped reading, e.g. right after a result). Either way it is
                 * gone, which is not a bad frame. */
                if (r == -EPIPE || r == -ECONNRESET) {
                        w->host_gone = true;
                        return 0;
                }
                if (r < 0)
                        return r;
                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                        return -errno;
        }
}

static const char *
frame_type(const cJSON *msg)
{
        return cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring;
}

/* Tell the host that the module is not served, and why. */
static void
send_fail(struct abmi_worker *w, const char *why)
{
        cJSON *msg = cJSON_CreateObject();
        char text[2 * ABM_ERROR_MAX];

        abmi_utf8_sanitize(text, sizeof(text), why);
        if (!msg || !cJSON_AddStringToObject(msg, "t", "fail") ||
            !cJSON_AddStringToObject(msg, "error", text) || abmi_send(w, msg) < 0)
                ab_log(LOG_ERR, "%s: %s", w->name, text);
        cJSON_Delete(msg);
}

/* Take the init frame: the broker socket path and the module's configuration (an object;
 * {} when absent). Returns 0 with *ret_config, or -EINVAL. */
static int
take_init(struct abmi_worker *w, cJSON *init, cJSON **ret_config)
{
        const char *broker;
        cJSON *config;
        int r;

        r = ab_wire_get_string(init, "broker", WORKER_PATH_MAX - 1, &broker);
        if (r == -EINVAL)
                return r;
        if (r == 0 && !(w->broker_path = strdup(broker)))
                return -ENOMEM;
        config = cJSON_DetachItemFromObjectCaseSensitive(init, "config");
        if (config && cJSON_IsNull(config)) {
                cJSON_Delete(config);
                config = NULL;
        }
        if (config && !cJSON_IsObject(config)) {
                cJSON_Delete(config);
                return -EINVAL;
        }
        if (!config && !(config = cJSON_CreateObject()))
                return -ENOMEM;
        *ret_config = config;
        return 0;
}

/* Run one call frame and answer it. */
static void
run_call(struct abmi_worker *w, const cJSON *frame)
{
        struct abm_error err = { { 0 } };
        struct abm_call *call = NULL;
        cJSON *result;
        int rc;

        rc = abmi_call_new(w, frame, &call, &err);
        if (rc < 0) {
                uint64_t id;

                if (ab_wire_get_u64(frame, "id", AB_JSON_INT_MAX, &id) < 0) {
                        ab_log(LOG_ERR, "%s: %s", w->name, err.message);
                        w->broken = true;
                        return;
                }
                /* A call frame the worker cannot run: answer it as failed. */
                struct abm_call failed = { .id = id };
                result = abmi_call_result(&failed, rc, &err);
        } else {
                uint64_t t0 = ab_now_us(), t1;

                rc = call->tool->call(call, &err);
                t1 = ab_now_us();
                result = abmi_call_result(call, rc > 0 ? 0 : rc, &err);
                /* How long the tool's call hook ran: the host binds calls to busy workers only
                 * for modules whose calls are fast (host/workers/). Optional: without memory
                 * for it the result goes out without. */
                if (result)
                        (void)cJSON_AddNumberToObject(result, "us", (double)(t1 - t0));
        }
        if (!result)
                w->broken = true; /* out of memory: the host sees the worker exit */
        else if (abmi_send(w, result) < 0 && !w->host_gone) {
                ab_log(LOG_ERR, "%s: cannot send the result of a call", w->name);
                w->broken = true;
        }
        abmi_json_wipe_delete(result);
        abmi_call_free(call);
        ab_wipe(&err, sizeof(err));
}

/* ---- main ---- */

static int
parse_fd(const char *s, int *ret)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 3 || v > INT_MAX)
                return -EINVAL;
        *ret = (int)v;
        return 0;
}

/* Close every descriptor above stderr but the module's, the host socket and the egress
 * channel (c, -1 when none), so that a module never inherits what the host's process happened
 * to have open. */
static void
close_others(int a, int b, int c)
{
        int keep[3] = { a, b, c }, next = 3;

        for (int i = 0; i < 3; i++) /* sort the three */
                for (int j = i + 1; j < 3; j++)
                        if (keep[j] < keep[i]) {
                                int t = keep[i];
                                keep[i] = keep[j];
                                keep[j] = t;
                        }
        for (int i = 0; i < 3; i++) {
                if (keep[i] < 3)
                        continue;
                if (keep[i] > next)
                        (void)close_range((unsigned)next, (unsigned)keep[i] - 1, 0);
                next = keep[i] + 1;
        }
        (void)close_range((unsigned)next, ~0u, 0);
}

static int
usage(void)
{
        fprintf(stderr,
                "usage: agentbroker-worker --module-fd N --control-fd N [--egress-fd N] --name MODULE\n"
                "Runs one agentbroker module for agentbroker-mcp; not meant to be started by hand.\n");
        return 2;
}

/* Run the calls the host sends until it closes the channel, a frame is bad, or the host or
 * the broker is gone (w->broken says which ended it badly). */
static void
serve(struct abmi_worker *w)
{
        for (;;) {
                cJSON *msg = NULL;
                const char *t;
                int r = next_frame(w, &msg);

                if (r == 0)
                        break;
                if (r < 0) {
                        ab_log(LOG_ERR, "%s: bad frame from the host: %s", w->name, strerror(-r));
                        w->broken = true;
                        break;
                }
                t = frame_type(msg);
                if (strcmp(t, "call") == 0)
                        run_call(w, msg);
                else if (strcmp(t, "cancel") != 0) {
                        /* A cancel between calls is for a call already answered. */
                        ab_log(LOG_ERR, "%s: unexpected \"%.16s\" frame from the host", w->name, t);
                        w->broken = true;
                }
                abmi_json_wipe_delete(msg);
                if (w->broken || w->host_gone || w->broker_lost)
                        break;
        }
}

ABM_API int
abm__worker_main(int argc, char **argv)
{
        static const struct option options[] = {
                { "module-fd", required_argument, NULL, 'm' },
                { "control-fd", required_argument, NULL, 'c' },
                { "name", required_argument, NULL, 'n' },
                { "egress-fd", required_argument, NULL, 'e' },
                { NULL, 0, NULL, 0 },
        };
        cJSON_Hooks hooks = { .malloc_fn = wiping_malloc, .free_fn = wiping_free };
        struct abmi_worker w = { .host_fd = -1, .egress_fd = -1 };
        const struct abm_module *m = NULL;
        cJSON *hello = NULL, *config = NULL, *msg = NULL;
        int module_fd = -1, opt, r, ret = 1;
        char why[ABM_ERROR_MAX] = "";

        if (argc > 1 && strcmp(argv[1], "--exec") == 0)
                return abmi_exec_main(argc, argv);

        while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
                switch (opt) {
                case 'm':
                        if (parse_fd(optarg, &module_fd) < 0)
                                return usage();
                        break;
                case 'c':
                        if (parse_fd(optarg, &w.host_fd) < 0)
                                return usage();
                        break;
                case 'n': w.name = optarg; break;
                case 'e':
                        if (parse_fd(optarg, &w.egress_fd) < 0)
                                return usage();
                        break;
                default: return usage();
                }
        }
        if (optind != argc || module_fd < 0 || w.host_fd < 0 || module_fd == w.host_fd || !name_ok(w.name) ||
            (w.egress_fd >= 0 && (w.egress_fd == module_fd || w.egress_fd == w.host_fd)))
                return usage();

        ab_log_init("agentbroker-worker", false);
        /* Die with the host; it may have died before the line above took effect. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1) {
                ab_log(LOG_ERR, "%s: the host is gone", w.name);
                return 1;
        }
        close_others(module_fd, w.host_fd, w.egress_fd);
        if (w.egress_fd >= 0)
                (void)fcntl(w.egress_fd, F_SETFD, FD_CLOEXEC);
        (void)dup2(STDERR_FILENO, STDOUT_FILENO);
        (void)ab_process_harden();
        cJSON_InitHooks(&hooks);
        if (fcntl(w.host_fd, F_SETFL, fcntl(w.host_fd, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(w.host_fd, F_SETFD, FD_CLOEXEC) < 0) {
                ab_log(LOG_ERR, "%s: bad control fd %d: %m", w.name, w.host_fd);
                return 1;
        }
        abmi_current = &w;

        r = next_frame(&w, &msg);
        if (r <= 0 || strcmp(frame_type(msg), "init") != 0) {
                ab_log(LOG_ERR, "%s: expected an init frame from the host (%s)", w.name,
                       r < 0    ? strerror(-r)
                       : r == 0 ? "end of file"
                                : "another frame came");
                goto out;
        }
        r = take_init(&w, msg, &config);
        if (r < 0) {
                send_fail(&w,
                          r == -ENOMEM ? "out of memory" : "the init frame's config or broker is invalid");
                goto out;
        }
        abmi_json_wipe_delete(msg);
        msg = NULL;

        /* Confine (confine.c), then load and check the module; a failure is told to the host
         * in answer to init. */
        if (abmi_confine(&w, why, sizeof(why)) == 0) {
                m = load_module(module_fd, why, sizeof(why));
                if (m) {
                        w.module = m;
                        if (check_module(m, w.name, why, sizeof(why)) == 0)
                                hello = describe_module(m, why, sizeof(why));
                }
        }
        (void)close(module_fd);
        if (!hello) {
                send_fail(&w, why);
                goto out;
        }
        if (m->init) {
                struct abm_error err = { { 0 } };

                /* The configuration stays valid for the life of the worker. */
                r = m->init((const struct abm_json *)config, &err);
                if (r < 0) {
                        char message[ABM_ERROR_MAX + 16];

                        err.message[sizeof(err.message) - 1] = '\0';
                        snprintf(message, sizeof(message), "init failed: %s",
                                 err.message[0] ? err.message : strerror(-r));
                        send_fail(&w, message);
                        goto out; /* fini is not called after a failed init */
                }
                /* init may have adapted its tools to the configuration (e.g. left out an
                 * output schema, or set the tools from it: modules/http): describe them as
                 * they are now, the count checked again. */
                cJSON_Delete(hello);
                if (!m->tools || m->n_tools == 0 || m->n_tools > ABM_TOOLS_MAX) {
                        snprintf(why, sizeof(why),
                                 "after init the module declares %zu tools (1 to %d allowed)",
                                 m->tools ? m->n_tools : 0, ABM_TOOLS_MAX);
                        hello = NULL;
                } else
                        hello = describe_module(m, why, sizeof(why));
                if (!hello) {
                        send_fail(&w, why);
                        if (m->fini)
                                m->fini();
                        goto out;
                }
        }
        if (abmi_send(&w, hello) < 0)
                goto out;
        cJSON_Delete(hello);
        hello = NULL;

        serve(&w);
        if (m->fini)
                m->fini();
        ret = w.broken ? 1 : 0;
out:
        abmi_current = NULL;
        abmi_json_wipe_delete(msg);
        cJSON_Delete(hello);
        cJSON_Delete(config);
        abmi_broker_close(&w);
        ab_frame_reader_clear(&w.reader);
        free(w.broker_path);
        return ret;
}
