/* SPDX-License-Identifier: MIT */
/* Request handlers of agentbrokerd (see handlers.h and docs/protocol.md). Every decision
 * writes its audit record and journal entry before the reply leaves. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "broker/handlers_egress.h"
#include "broker/handlers_shared.h"
#include "common/encode.h"
#include "common/wire.h"

typedef int (*handler_fn)(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                          struct ab_reply_error *err, struct ab_reply_after *after);

/* Fill err and return -1, for use as `return fail(err, ...)`. */
int AB_PRINTF(4, 5)
        fail(struct ab_reply_error *err, const char *code, const char *reason, const char *fmt, ...)
{
        va_list ap;

        err->code = code;
        err->reason = reason;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -1;
}

int
bad_field(struct ab_reply_error *err, const char *field)
{
        return fail(err, AB_ERR_BAD_REQUEST, NULL, "missing or invalid field \"%s\"", field);
}

/* Whether the peer may make admin requests: root, the broker's uid, or the admin group. */
bool
peer_is_admin(const struct ab_state *st, const struct ab_peer *p)
{
        if (p->uid == 0 || p->uid == st->euid)
                return true;
        return st->policy->clients.has_admin_gid && ab_peer_in_group(p, st->policy->clients.admin_gid);
}

/* Whether the peer may connect at all (policy `clients`). */
static bool
peer_is_client(const struct ab_state *st, const struct ab_peer *p)
{
        const struct ab_policy *pol = st->policy;

        if (peer_is_admin(st, p))
                return true;
        for (size_t i = 0; i < pol->clients.n_uids; i++)
                if (pol->clients.uids[i] == p->uid)
                        return true;
        for (size_t i = 0; i < pol->clients.n_gids; i++)
                if (ab_peer_in_group(p, pol->clients.gids[i]))
                        return true;
        return false;
}

/* An event with the caller filled in and every optional number unset. */
struct ab_event
event_for(enum ab_event_type type, const struct ab_peer *p)
{
        return ab_event_init(type, p ? p->uid : 0, p ? p->pid : 0);
}

/* Emit ev; returns -1 with err filled when audit failed and policy says deny. */
int
emit_or_deny(struct ab_state *st, const struct ab_event *ev, struct ab_reply_error *err)
{
        int r = ab_audit_emit(st->audit, ev);

        if (r < 0 && st->policy->audit.failure_deny)
                return fail(err, AB_ERR_DENIED, "audit-failed",
                            "the audit record could not be written (%s) and audit.failure is deny",
                            strerror(-r));
        return 0;
}

/* Copy a peer identity, duplicating its pidfd. Returns 0 or -errno. */
int
peer_dup(const struct ab_peer *src, struct ab_peer *ret)
{
        struct ab_peer p = *src;

        if (src->pidfd >= 0) {
                p.pidfd = fcntl(src->pidfd, F_DUPFD_CLOEXEC, 3);
                if (p.pidfd < 0)
                        return -errno;
        }
        *ret = p;
        return 0;
}

void
random_hex(char *out, size_t nbytes)
{
        unsigned char raw[32];

        if (nbytes > sizeof(raw))
                nbytes = sizeof(raw);
        if (RAND_bytes(raw, (int)nbytes) != 1)
                memset(raw, 0, sizeof(raw)); /* callers only use it as a label, never as a secret */
        ab_hex_encode_buf(raw, nbytes, out);
}

/* ---- status ---- */

/* The connection counters of status (admin only), from the event loop: open, the limits,
 * and what was refused or closed and why. Returns 0 or -1 with err filled. */
static int
add_conn_stats(struct ab_state *st, cJSON *reply, struct ab_reply_error *err)
{
        cJSON *o = cJSON_AddObjectToObject(reply, "connections");

        if (!o || st->loop_ops->conn_stats(st->loop, o) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        return 0;
}

/* status: version and uptime for every client; the policy files, secret names, counters and
 * connection statistics only for admins (a plain client, e.g. a host, needs none of them). */
/* Add the audit trail's state to a status reply: "audit" is enabled, not-configured
 * (journal only) or failing; when failing, "audit_error" says why and what it means for
 * the operations. Returns 0 or -ENOMEM. */
static int
status_add_audit(struct ab_state *st, cJSON *reply)
{
        int err = ab_audit_last_error(st->audit);
        char why[256];

        if (!ab_audit_configured(st->audit))
                return cJSON_AddStringToObject(reply, "audit", "not-configured") ? 0 : -ENOMEM;
        if (!err)
                return cJSON_AddStringToObject(reply, "audit", "enabled") ? 0 : -ENOMEM;
        snprintf(why, sizeof why, "audit records cannot be written: %s%s; %s", strerror(err),
                 err == EPERM ? " (the broker needs CAP_AUDIT_WRITE)" : "",
                 ab_audit_failure_deny(st->audit)
                         ? "audit.failure is deny: every audited operation is denied"
                         : "audit.failure is ignore: operations go on without audit records");
        if (!cJSON_AddStringToObject(reply, "audit", "failing") ||
            !cJSON_AddStringToObject(reply, "audit_error", why))
                return -ENOMEM;
        return 0;
}

int
h_status(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply, struct ab_reply_error *err,
         struct ab_reply_after *after)
{
        cJSON *files, *secrets;

        if (!cJSON_AddStringToObject(reply, "version", PACKAGE_VERSION) ||
            !cJSON_AddNumberToObject(reply, "uptime_s", (double)((ab_now_ms() - st->started_ms) / 1000)) ||
            !cJSON_AddBoolToObject(reply, "admin", peer_is_admin(st, &c->peer)))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        if (!peer_is_admin(st, &c->peer))
                return 0;
        if (!cJSON_AddNumberToObject(reply, "pid", getpid()) ||
            !cJSON_AddNumberToObject(reply, "policy_loaded_at", (double)st->policy_loaded_at) ||
            !cJSON_AddNumberToObject(reply, "runs_open", (double)ab_runs_open_count(st->runs)) ||
            !cJSON_AddNumberToObject(reply, "tokens_active", (double)ab_tokens_count(st->tokens)) ||
            status_add_audit(st, reply) < 0 || !(files = cJSON_AddArrayToObject(reply, "policy_files")) ||
            ab_module_reports_to_json(st->module_reports, cJSON_AddArrayToObject(reply, "modules")) < 0 ||
            !(secrets = cJSON_AddArrayToObject(reply, "secrets")))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (size_t i = 0; i < st->policy->n_files; i++)
                cJSON_AddItemToArray(files, cJSON_CreateString(st->policy->files[i]));
        for (size_t i = 0; i < ab_secrets_count(st->secrets); i++) {
                const struct ab_secret *s = ab_secrets_at(st->secrets, i);
                cJSON *o = cJSON_CreateObject();
                if (!o)
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                cJSON_AddStringToObject(o, "name", s->name);
                cJSON_AddStringToObject(o, "type", s->type == AB_SECRET_ED25519 ? "ed25519" : "bytes");
                cJSON_AddBoolToObject(o, "available", s->available);
                if (!s->available && s->unavailable_reason)
                        cJSON_AddStringToObject(o, "reason", s->unavailable_reason);
                cJSON_AddItemToArray(secrets, o);
        }
        return add_conn_stats(st, reply, err);
}

/* ---- admin ---- */

struct token_list_ctx {
        cJSON *arr;
        uint64_t now;
};

static int
add_token_row(const struct ab_token *tok, void *userdata)
{
        struct token_list_ctx *ctx = userdata;
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return 1;
        cJSON_AddStringToObject(o, "token_id", tok->id);
        cJSON_AddStringToObject(o, "run", tok->run);
        cJSON_AddStringToObject(o, "tool", tok->tool);
        cJSON_AddNumberToObject(o, "call", (double)tok->call);
        cJSON_AddNumberToObject(o, "expires_in_ms",
                                tok->expires_ms > ctx->now ? (double)(tok->expires_ms - ctx->now) : 0);
        cJSON_AddNumberToObject(o, "uses", tok->uses);
        cJSON_AddItemToArray(ctx->arr, o);
        /* Bounded by the message size: stop well before it. */
        return cJSON_GetArraySize(ctx->arr) >= 200;
}

int
h_token_list(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct token_list_ctx ctx = { .arr = cJSON_AddArrayToObject(reply, "tokens"), .now = ab_now_ms() };

        if (!ctx.arr || !cJSON_AddNumberToObject(reply, "total", (double)ab_tokens_count(st->tokens)))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        ab_tokens_foreach(st->tokens, add_token_row, &ctx);
        return 0;
}

int
h_policy_reload(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                struct ab_reply_error *err, struct ab_reply_after *after)
{
        char *errors = NULL;
        cJSON *files;

        if (ab_state_load_policy(st, &errors) < 0) {
                fail(err, AB_ERR_BAD_REQUEST, "policy-invalid", "%s",
                     errors ? errors : "policy load failed");
                free(errors);
                return -1;
        }
        files = cJSON_AddArrayToObject(reply, "files");
        if (!files)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (size_t i = 0; i < st->policy->n_files; i++)
                cJSON_AddItemToArray(files, cJSON_CreateString(st->policy->files[i]));
        return 0;
}

/* worker-hello: pin this connection, for good, to the operations a module worker makes
 * (the flag `worker` in the table below). Any client may make its own connection narrower. */
static int
h_worker_hello(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        if (!c->worker) {
                c->worker = true;
                /* Closed when the worker exits: a process it leaves behind must not keep it. */
                (void)st->loop_ops->watch_worker(st->loop, c);
        }
        return 0;
}

/* module-report {module, served, reason?}: an MCP host says whether it serves a module or
 * refused it and why (its init failed ...); status shows the latest report per module. */
static int
h_module_report(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *module = NULL, *reason = NULL;
        bool served = false;
        int r;

        if (ab_wire_get_string(req, "module", AB_MODULE_NAME_MAX, &module) < 0)
                return bad_field(err, "module");
        if (ab_wire_get_bool(req, "served", &served) < 0)
                return bad_field(err, "served");
        r = ab_wire_get_string(req, "reason", AB_MODULE_REASON_MAX, &reason);
        if (r == -EINVAL)
                return bad_field(err, "reason");
        r = ab_module_reports_set(st->module_reports, module, served, reason, c->peer.uid, c->peer.pid,
                                  time(NULL));
        if (r == -EINVAL)
                return bad_field(err, "module");
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        return 0;
}

static const struct {
        const char *op;
        handler_fn fn;
        bool admin;  /* root, the broker's uid or clients.admin_group */
        bool worker; /* allowed on a connection pinned by worker-hello */
} handlers[] = {
        { "status", h_status, false, false },
        { "run-open", h_run_open, false, false },
        { "run-close", h_run_close, false, false },
        { "run-list", h_run_list, false, false },
        { "call-begin", h_call_begin, false, false },
        { "call-end", h_call_end, false, false },
        { "call-reject", h_call_reject, false, false },
        { "run-client", h_run_client, false, false },
        { "secret-read", h_secret_read, false, true },
        { "secret-sign", h_secret_sign, false, true },
        { "mint-jwt", h_mint_jwt, false, true },
        { "host-config", h_host_config, false, false },
        { "server-env", h_server_env, false, false },
        { "token-list", h_token_list, true, false },
        { "policy-reload", h_policy_reload, true, false },
        { "http-token-issue", h_http_token_issue, true, false },
        { "http-token-check", h_http_token_check, false, false },
        { "http-listener", h_http_listener, false, false },
        { "http-auth-deny", h_http_auth_deny, false, false },
        { "identity", h_identity, false, false },
        { "identity-jwt", h_identity_jwt, true, false },
        { "tunnel-event", h_tunnel_event, true, false },
        { "worker-hello", h_worker_hello, false, true },
        { "module-report", h_module_report, false, false },
        /* Never on a worker's connection: agentbroker-egress presents the module's token. */
        { "egress-check", ab_h_egress_check, false, false },
        { "egress-done", ab_h_egress_done, false, false },
};

int
ab_handle_request(struct ab_state *st, struct ab_conn *c, const char *op, const cJSON *req, cJSON *reply,
                  struct ab_reply_error *err, struct ab_reply_after *after)
{
        if (!peer_is_client(st, &c->peer)) {
                struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);
                ev.success = false;
                ev.reason = "client-not-allowed";
                ev.detail = op;
                (void)ab_audit_emit(st->audit, &ev);
                after->close_conn = true;
                return fail(err, AB_ERR_NOT_PERMITTED, "client-not-allowed",
                            "uid %u is not among the policy's clients", (unsigned)c->peer.uid);
        }
        for (size_t i = 0; i < AB_ELEMENTSOF(handlers); i++) {
                if (strcmp(handlers[i].op, op) != 0)
                        continue;
                if (c->worker && !handlers[i].worker) {
                        /* Module code reached for the worker's connection: refuse and record. */
                        struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);
                        ev.success = false;
                        ev.reason = "worker-confined";
                        ev.detail = op;
                        (void)ab_audit_emit(st->audit, &ev);
                        return fail(err, AB_ERR_NOT_PERMITTED, "worker-confined",
                                    "%s is not permitted on a module worker's connection", op);
                }
                if (handlers[i].admin && !peer_is_admin(st, &c->peer))
                        return fail(err, AB_ERR_NOT_PERMITTED, "not-admin",
                                    "%s needs root, the broker's uid or the admin group", op);
                return handlers[i].fn(st, c, req, reply, err, after);
        }
        return fail(err, AB_ERR_UNKNOWN_OP, NULL, "unknown operation");
}
