/* SPDX-License-Identifier: MIT */
/* Module workers, seen from the host (agentbroker-mcp). The host never loads module code:
 * each module file is opened O_NOFOLLOW, checked with fstat (regular file, owned by root or
 * the host's uid, not group/other-writable), copied into a sealed memfd (its code is pinned
 * at load) and that descriptor handed to agentbroker-worker processes, which dlopen it from
 * /proc/self/fd/N. Workers start in the run's sandbox (host/sandbox/sandbox.h). A module has a pool of workers, one call
 * at a time each; the pool grows while calls overlap, up to HW_POOL_MAX, then calls queue.
 * A worker that crashes, outlives its call's timeout or writes garbage is killed; its call
 * ends with a failure and the next call gets a fresh worker. Each worker has its own redactor
 * (host/tool/redact.h) of the secrets its calls read: its log lines, progress messages and results
 * are redacted with it before they are logged or handed on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "host/tool/schema.h"

#define HW_POOL_MAX 8     /* workers per module */
#define HW_QUEUE_MAX 1024 /* calls waiting for a worker, per module */
#define HW_MODULES_MAX 64
#define HW_HELLO_TIMEOUT_MS 5000 /* a new worker must answer init within this */

struct hw_registry;
struct hw_call;

/* One tool as the host serves it. */
struct hw_tool {
        char *name; /* "<module>.<tool>" */
        char *module;
        cJSON *descriptor;        /* the MCP Tool object: name, title?, description, inputSchema,
                                        * outputSchema?, annotations? */
        struct hs_schema *input;  /* compiled inputSchema */
        struct hs_schema *output; /* compiled outputSchema, or NULL */
};

/* Configuration callback: the module's configuration object (from policy), or NULL for {}. */
typedef const cJSON *(*hw_config_fn)(void *userdata, const char *module);

/* Check one frame as the host checks a worker's: a hello (its tools and their schemas
 * compiled, then freed) or a result (made into a CallToolResult, then freed), for a module
 * named "fuzz" (tests/fuzz/fuzz_frames.c). Returns 0, -EBADMSG or -ENOMEM. */
int hw_check_worker_frame(const cJSON *msg);

/* Create the registry. worker_path: the agentbroker-worker executable; broker_path: the
 * broker socket the workers use for secret operations. Returns 0 or -errno. */
int hw_registry_new(sd_event *event, const char *worker_path, const char *broker_path, hw_config_fn config,
                    void *config_userdata, struct hw_registry **ret);
/* Start agentbroker-egress (egress_path; NULL: none) next to every worker started from now on
 * and hand the worker its channel as fd 5 (--egress-fd 5; host/sandbox/egress.h). Returns 0 or -ENOMEM. */
int hw_registry_set_egress(struct hw_registry *reg, const char *egress_path);
/* Kill every worker and free. Calls still running end with failure "stopped". Accepts NULL. */
void hw_registry_free(struct hw_registry *reg);

struct hs_sandbox;
/* The run's sandbox every worker is started in (borrowed: it must outlive r). Without one,
 * the first worker's start creates a sandbox with namespaces only (host/sandbox/sandbox.h). */
void hw_registry_set_sandbox(struct hw_registry *reg, struct hs_sandbox *sb);

/* Load every "*.so" in dir (sorted): check it, start its first worker, wait for its hello,
 * compile its tools' schemas. A module that fails any check is refused with a log line
 * naming the file and the reason, and the others still load. A module name seen already (from
 * an earlier directory) is skipped with a log line. Returns the number of modules loaded,
 * or -errno when dir cannot be read (-ENOENT is not an error: returns 0). */
int hw_registry_load_dir(struct hw_registry *reg, const char *dir);

/* Refusal callback: module name (from its file name) was refused while its first worker
 * started: its init failed, its worker died before its hello, or the hello was unusable;
 * reason says why (also logged). */
typedef void (*hw_refusal_fn)(void *userdata, const char *module, const char *reason);
/* Call fn for each such refusal from now on (NULL: none). */
void hw_registry_on_refusal(struct hw_registry *reg, hw_refusal_fn fn, void *userdata);

/* Served tools in deterministic order (sorted by name). */
size_t hw_tools_count(const struct hw_registry *reg);
const struct hw_tool *hw_tool_at(const struct hw_registry *reg, size_t i);
const struct hw_tool *hw_tool_find(const struct hw_registry *reg, const char *name);

/* What a call reports back. All callbacks run on the event loop; done is called exactly once
 * (also after hw_call_cancel), after which the hw_call is freed by the registry. */
struct hw_call_ops {
        /* A worker was assigned (pid of the process that will present the call's token).
         * The owner must now call hw_call_send() or hw_call_abort(). */
        void (*ready)(void *userdata, pid_t worker_pid);
        void (*progress)(void *userdata, double progress, double total, const char *message);
        void (*log)(void *userdata, int level, const char *message);
        /* The worker says the call read secret with value (wiped after): return 0 if that is
         * true (the call may read secret and value is its value, as the broker vouched at
         * call-begin), else -EPERM. Only then is value remembered in the worker's redactor
         * (every later output of that worker is redacted with it); a refused or unrememberable
         * value kills the worker and ends the call ("garbage", "unredactable"). NULL: refused. */
        int (*redact)(void *userdata, const char *secret, const unsigned char *value, size_t len);
        /* Called once before done when the worker's output for this call was redacted:
         * count spans replaced, names[n] the secrets they were (progress, logs and result). */
        void (*redacted)(void *userdata, uint64_t count, const char *const *names, size_t n);
        /* The call finished. result: the worker's result message fields as a CallToolResult
         * object ({content, structuredContent?, isError?}; ownership passes to the callee),
         * or NULL when it failed; failure: NULL, or "crashed", "timeout", "garbage",
         * "cancelled", "aborted", "stopped", "unavailable", "unredactable" (a secret the call
         * read could not be remembered for redaction: its worker was killed); message:
         * human-readable detail. Every string the worker sent is redacted (host/tool/redact.h). */
        void (*done)(void *userdata, cJSON *result, const char *failure, const char *message);
};

/* Start a call of tool: reserve a worker (or queue). ops->ready fires when one is assigned
 * (possibly before this returns). Returns 0, -ENOENT (no such tool), -EAGAIN (queue full). */
int hw_call_start(struct hw_registry *reg, const char *tool, const struct hw_call_ops *ops, void *userdata,
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

/* ---------- external tools (host/gateway/gateway.c) ----------
 * Tools served by something other than a module worker: the MCP servers of host/gateway/gateway.c.
 * They live in the registry beside module tools ("<server>.<tool>"), go through the same
 * call pipeline (schema, broker, shaping) and are run by the provider. */
struct hw_external_ops {
        /* A call of module's tool (its bare name) starts: report hw_external_ready() when it
         * may be sent (possibly at once), and end it with hw_external_done(). Returns 0 or
         * -errno (-EAGAIN: too many calls; no callback follows). */
        int (*start)(void *userdata, struct hw_call *c, const char *module, const char *tool);
        /* Run the call (after ready). Returns 0 or -errno (done follows with "crashed"). */
        int (*send)(void *userdata, struct hw_call *c, const cJSON *args, size_t max_bytes,
                    unsigned timeout_ms);
        /* Stop the call: aborted (never sent) or cancelled. hw_external_done() must follow. */
        void (*stop)(void *userdata, struct hw_call *c, bool aborted);
        /* Tools are about to be listed or called: start what starts lazily. May be NULL. */
        void (*want)(void *userdata);
};
/* Set (or, with NULL, clear) the provider of external tools. Returns 0 or -errno. */
int hw_registry_set_external(struct hw_registry *reg, const struct hw_external_ops *ops, void *userdata);
/* Tools are about to be listed or called (tools/list, tools/call): see want. */
void hw_registry_want(struct hw_registry *reg);
/* A number that changes whenever the set of served tools changes. */
uint64_t hw_registry_generation(const struct hw_registry *reg);
/* Replace the external tools of module with tools (an array of MCP Tool objects, bare or
 * "<module>." names), each checked and compiled as a module's tools are (a tool that cannot
 * be served is refused with a log line). *ret_served (may be NULL): how many are served.
 * Calls in flight keep their old tool until they end. Returns 0 or -errno. */
int hw_external_set_tools(struct hw_registry *reg, const char *module, const cJSON *tools,
                          size_t *ret_served);
/* The provider's reports about an external call (see struct hw_call_ops). done takes result
 * and is delivered on the event loop (never inside the caller's call); failure as in done. */
void hw_external_ready(struct hw_call *c, pid_t pid);
void hw_external_progress(struct hw_call *c, double progress, double total, const char *message);
/* Redact everything c's provider hands over (result, progress and failure messages) with red
 * (the provider's secrets, e.g. an MCP server's environment), as a worker's output is with
 * its own redactor; what was redacted goes into c's call-end record. red must outlive c. */
/* Start the worker program (argv[0] is ignored: the registry's worker) in the run's sandbox,
 * as every worker is, with the descriptors of fds (host/sandbox/sandbox.h): for processes the owner
 * of external tools runs beside the workers (the gateway's MCP servers). Returns 0 with the
 * pid (a child of the caller) or -errno with a message in why. */
struct hs_spawn_fds;
int hw_registry_spawn(struct hw_registry *reg, char *const argv[], char *const envp[],
                      const struct hs_spawn_fds *fds, pid_t *ret_pid, char *why, size_t why_len);

struct hs_redactor;
void hw_external_set_redactor(struct hw_call *c, const struct hs_redactor *red);
void hw_external_done(struct hw_call *c, cJSON *result, const char *failure, const char *message);
/* The tool of an external call, by its name inside its module (server). */
const char *hw_external_tool(const struct hw_call *c);
/* Whether a module (or an external module) of that name is loaded. */
bool hw_registry_has_module(const struct hw_registry *reg, const char *name);
/* The provider's data of an external call. */
void *hw_external_data(const struct hw_call *c);
void hw_external_set_data(struct hw_call *c, void *data);

/* Pids and RSS (KiB) of every live worker, for benchmarks and status. Returns the count. */
size_t hw_registry_workers(const struct hw_registry *reg, pid_t *pids, size_t max);
