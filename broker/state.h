/* SPDX-License-Identifier: MIT */
/* agentbrokerd's state, apart from the event loop that serves it: the policy (swapped whole on
 * reload) with its secrets, the audit emitter, call tokens, runs, module reports and the HTTP
 * bearer tokens. The handlers (broker/handlers.c) take the state; the loop (broker/server.c)
 * owns the sockets and reaches the few things it provides through ab_loop_ops. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "audit/audit_log.h"
#include "broker/conn.h"
#include "broker/httptokens.h"
#include "broker/modreports.h"
#include "broker/pidwatch.h"
#include "broker/runs.h"
#include "broker/secrets.h"
#include "broker/tokens.h"
#include "policy/policy.h"

/* What the handlers ask of the event loop serving them. */
struct ab_loop_ops {
        /* Close connection c when the process that opened it exits (worker-hello). Returns 0
         * or -errno. */
        int (*watch_worker)(void *loop, struct ab_conn *c);
        /* Add the loop's connection counters to status's object o. Returns 0 or -ENOMEM. */
        int (*conn_stats)(void *loop, cJSON *o);
};

struct ab_state {
        char *policy_path;
        struct ab_policy *policy;
        struct ab_secret_store *secrets;
        struct ab_audit *audit;
        struct ab_token_table *tokens;
        struct ab_runs *runs;
        struct ab_module_reports *module_reports; /* what the MCP hosts say of their modules */
        struct ab_http_tokens *http_tokens;       /* agentbroker-mcp --http bearer tokens */
        uid_t euid;
        uint64_t started_ms;
        int64_t policy_loaded_at;
        uint64_t next_call_id;

        /* from the event loop */
        struct ab_pidwatches *watches; /* process-exit watches (run teardown) */
        const struct ab_loop_ops *loop_ops;
        void *loop;
};

/* Set up s for the policy at policy_path: token table, runs, module reports, HTTP tokens
 * (the policy is loaded by ab_state_load_policy, audit opened by the caller). Returns 0 or
 * -errno. */
int ab_state_init(struct ab_state *s, const char *policy_path);
/* Free everything s holds. Accepts a state that was never (or partly) set up. */
void ab_state_done(struct ab_state *s);

/* Load (or reload) the policy at s->policy_path, its secrets and JWKS, and swap them in
 * atomically. On failure the old policy stays and *ret_err (if non-NULL) gets the errors.
 * Writes a policy-load record either way. Returns 0 or -errno. */
int ab_state_load_policy(struct ab_state *s, char **ret_err);
