/* Module workers, seen from the host (agentbroker-mcp). The host never loads module code:
 * each module file is opened O_NOFOLLOW, checked with fstat (regular file, owned by root or
 * the host's uid, not group/other-writable) and its descriptor handed to agentbroker-worker
 * processes, which dlopen it from /proc/self/fd/N. A module has a pool of workers, one call
 * at a time each; the pool grows while calls overlap, up to HW_POOL_MAX, then calls queue.
 * A worker that crashes, outlives its call's timeout or writes garbage is killed; its call
 * ends with a failure and the next call gets a fresh worker. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "host/schema.h"

#define HW_POOL_MAX 8                  /* workers per module */
#define HW_QUEUE_MAX 1024              /* calls waiting for a worker, per module */
#define HW_MODULES_MAX 64
#define HW_HELLO_TIMEOUT_MS 5000       /* a new worker must answer init within this */

struct hw_registry;
struct hw_call;

/* One tool as the host serves it. */
struct hw_tool {
        char *name;                    /* "<module>.<tool>" */
        char *module;
        cJSON *descriptor;             /* the MCP Tool object: name, title?, description, inputSchema,
                                        * outputSchema?, annotations? */
        struct hs_schema *input;       /* compiled inputSchema */
        struct hs_schema *output;      /* compiled outputSchema, or NULL */
};

/* Configuration callback: the module's configuration object (from policy), or NULL for {}. */
typedef const cJSON *(*hw_config_fn)(void *userdata, const char *module);

/* Create the registry. worker_path: the agentbroker-worker executable; broker_path: the
 * broker socket the workers use for secret operations. Returns 0 or -errno. */
int hw_registry_new(sd_event *event, const char *worker_path, const char *broker_path,
                    hw_config_fn config, void *config_userdata, struct hw_registry **ret);
/* Start agentbroker-egress (egress_path; NULL: none) next to every worker started from now on
 * and hand the worker its channel as fd 5 (--egress-fd 5; host/egress.h). Returns 0 or -ENOMEM. */
int hw_registry_set_egress(struct hw_registry *r, const char *egress_path);
/* Kill every worker and free. Calls still running end with failure "stopped". Accepts NULL. */
void hw_registry_free(struct hw_registry *r);

/* Load every "*.so" in dir (sorted): check it, start its first worker, wait for its hello,
 * compile its tools' schemas. A module that fails any check is refused with a log line
 * naming the file and the reason, and the others still load. A module name seen already (from
 * an earlier directory) is skipped with a log line. Returns the number of modules loaded,
 * or -errno when dir cannot be read (-ENOENT is not an error: returns 0). */
int hw_registry_load_dir(struct hw_registry *r, const char *dir);

/* Served tools in deterministic order (sorted by name). */
size_t hw_tools_count(const struct hw_registry *r);
const struct hw_tool *hw_tool_at(const struct hw_registry *r, size_t i);
const struct hw_tool *hw_tool_find(const struct hw_registry *r, const char *name);

/* What a call reports back. All callbacks run on the event loop; done is called exactly once
 * (also after hw_call_cancel), after which the hw_call is freed by the registry. */
struct hw_call_ops {
        /* A worker was assigned (pid of the process that will present the call's token).
         * The owner must now call hw_call_send() or hw_call_abort(). */
        void (*ready)(void *userdata, pid_t worker_pid);
        void (*progress)(void *userdata, double progress, double total, const char *message);
        void (*log)(void *userdata, int level, const char *message);
        /* A secret the call redeemed (read): remember it for redaction. value is wiped after. */
        void (*redact)(void *userdata, const char *secret, const unsigned char *value, size_t len);
        /* The call finished. result: the worker's result message fields as a CallToolResult
         * object ({content, structuredContent?, isError?}; ownership passes to the callee),
         * or NULL when it failed; failure: NULL, or "crashed", "timeout", "garbage",
         * "cancelled", "aborted", "stopped", "unavailable"; message: human-readable detail. */
        void (*done)(void *userdata, cJSON *result, const char *failure, const char *message);
};

/* Start a call of tool: reserve a worker (or queue). ops->ready fires when one is assigned
 * (possibly before this returns). Returns 0, -ENOENT (no such tool), -EAGAIN (queue full). */
int hw_call_start(struct hw_registry *r, const char *tool, const struct hw_call_ops *ops, void *userdata,
                  struct hw_call **ret);
/* Send the call to its worker. timeout_ms: the worker is killed when the call runs longer.
 * Returns 0 or -errno (then done follows with failure "crashed"). */
int hw_call_send(struct hw_call *c, const cJSON *args, const char *token, const char *run, size_t max_bytes,
                 unsigned timeout_ms);
/* Give the reserved worker back without sending (the broker denied the call). done follows
 * with failure "aborted". */
void hw_call_abort(struct hw_call *c);
/* Ask the worker to stop the call; a worker that has not answered 2 s later is killed. done
 * follows with failure "cancelled" (the result, if any, is discarded). */
void hw_call_cancel(struct hw_call *c);

/* Pids and RSS (KiB) of every live worker, for benchmarks and status. Returns the count. */
size_t hw_registry_workers(const struct hw_registry *r, pid_t *pids, size_t max);
