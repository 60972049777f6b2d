/* Request handlers of agentbrokerd (see handlers.h and docs/protocol.md). Every decision
 * writes its audit record and journal entry before the reply leaves. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/handlers.h"
#include "broker/teardown.h"
#include "broker/handlers_egress.h"
#include "common/encode.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/wire.h"

#define AB_SIGN_DATA_MAX (16 * 1024)
#define AB_AUDIENCE_MAX 512
#define AB_SCOPE_MAX 1024
#define AB_REDACTED_MAX 64           /* secret names in one call-end (the host's redactor holds 64) */

typedef int (*handler_fn)(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
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
static bool
peer_is_admin(const struct ab_broker *b, const struct ab_peer *p)
{
        if (p->uid == 0 || p->uid == b->euid)
                return true;
        return b->policy->clients.has_admin_gid && ab_peer_in_group(p, b->policy->clients.admin_gid);
}

/* Whether the peer may connect at all (policy `clients`). */
static bool
peer_is_client(const struct ab_broker *b, const struct ab_peer *p)
{
        const struct ab_policy *pol = b->policy;

        if (peer_is_admin(b, p))
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
        return (struct ab_event) {
                .type = type,
                .success = true,
                .peer_uid = p ? p->uid : 0,
                .peer_pid = p ? p->pid : 0,
                .call = -1, .args_len = -1, .result_bytes = -1, .duration_ms = -1,
                .calls = -1, .denied = -1, .rejected = -1, .redactions = -1, .login_uid = -1, .login_ses = -1,
        };
}

/* Emit ev; returns -1 with err filled when audit failed and policy says deny. */
int
emit_or_deny(struct ab_broker *b, const struct ab_event *ev, struct ab_reply_error *err)
{
        int r = ab_audit_emit(b->audit, ev);

        if (r < 0 && b->policy->audit.failure_deny)
                return fail(err, AB_ERR_DENIED, "audit-failed",
                            "the audit record could not be written (%s) and audit.failure is deny",
                            strerror(-r));
        return 0;
}

/* Copy a peer identity, duplicating its pidfd. Returns 0 or -errno. */
static int
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

static void
random_hex(char *out, size_t nbytes)
{
        static const char hexd[] = "0123456789abcdef";
        unsigned char raw[32];

        if (nbytes > sizeof(raw))
                nbytes = sizeof(raw);
        if (RAND_bytes(raw, (int)nbytes) != 1)
                memset(raw, 0, sizeof(raw));    /* callers only use it as a label, never as a secret */
        for (size_t i = 0; i < nbytes; i++) {
                out[2 * i] = hexd[raw[i] >> 4];
                out[2 * i + 1] = hexd[raw[i] & 15];
        }
        out[2 * nbytes] = '\0';
}

/* ---- status ---- */

/* The connection counters of status (admin only): open, the limits, and what was refused
 * or closed and why. Returns 0 or -1 with err filled. */
static int
add_conn_stats(struct ab_broker *b, cJSON *reply, struct ab_reply_error *err)
{
        cJSON *o = cJSON_AddObjectToObject(reply, "connections");

        if (!o || !cJSON_AddNumberToObject(o, "open", (double)b->n_conns) ||
            !cJSON_AddNumberToObject(o, "max", (double)b->conns_max) ||
            !cJSON_AddNumberToObject(o, "max_per_uid", (double)b->policy->broker.max_conns_per_uid) ||
            !cJSON_AddNumberToObject(o, "refused_full", (double)b->conn_stats.refused_full) ||
            !cJSON_AddNumberToObject(o, "refused_per_uid", (double)b->conn_stats.refused_uid) ||
            !cJSON_AddNumberToObject(o, "accept_errors", (double)b->conn_stats.accept_errors) ||
            !cJSON_AddNumberToObject(o, "peer_errors", (double)b->conn_stats.peer_errors) ||
            !cJSON_AddNumberToObject(o, "worker_exits", (double)b->conn_stats.worker_exits) ||
            !cJSON_AddNumberToObject(o, "pidfd_errors", (double)b->conn_stats.pidfd_errors))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        return 0;
}

/* status: version and uptime for every client; the policy files, secret names, counters and
 * connection statistics only for admins (a plain client, e.g. a host, needs none of them). */
/* Add the audit trail's state to a status reply: "audit" is enabled, not-configured
 * (journal only) or failing; when failing, "audit_error" says why and what it means for
 * the operations. Returns 0 or -ENOMEM. */
static int
status_add_audit(struct ab_broker *b, cJSON *reply)
{
        int err = ab_audit_last_error(b->audit);
        char why[256];

        if (!ab_audit_configured(b->audit))
                return cJSON_AddStringToObject(reply, "audit", "not-configured") ? 0 : -ENOMEM;
        if (!err)
                return cJSON_AddStringToObject(reply, "audit", "enabled") ? 0 : -ENOMEM;
        snprintf(why, sizeof why, "audit records cannot be written: %s%s; %s", strerror(err),
                 err == EPERM ? " (the broker needs CAP_AUDIT_WRITE)" : "",
                 ab_audit_failure_deny(b->audit) ? "audit.failure is deny: every audited operation is denied"
                                                 : "audit.failure is ignore: operations go on without audit records");
        if (!cJSON_AddStringToObject(reply, "audit", "failing") ||
            !cJSON_AddStringToObject(reply, "audit_error", why))
                return -ENOMEM;
        return 0;
}

static int
h_status(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
         struct ab_reply_error *err, struct ab_reply_after *after)
{
        cJSON *files, *secrets;

        if (!cJSON_AddStringToObject(reply, "version", PACKAGE_VERSION) ||
            !cJSON_AddNumberToObject(reply, "uptime_s", (double)((ab_now_ms() - b->started_ms) / 1000)) ||
            !cJSON_AddBoolToObject(reply, "admin", peer_is_admin(b, &c->peer)))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        if (!peer_is_admin(b, &c->peer))
                return 0;
        if (!cJSON_AddNumberToObject(reply, "pid", getpid()) ||
            !cJSON_AddNumberToObject(reply, "policy_loaded_at", (double)b->policy_loaded_at) ||
            !cJSON_AddNumberToObject(reply, "runs_open", (double)ab_runs_open_count(b->runs)) ||
            !cJSON_AddNumberToObject(reply, "tokens_active", (double)ab_tokens_count(b->tokens)) ||
            status_add_audit(b, reply) < 0 ||
            !(files = cJSON_AddArrayToObject(reply, "policy_files")) ||
            ab_module_reports_to_json(b->module_reports, cJSON_AddArrayToObject(reply, "modules")) < 0 ||
            !(secrets = cJSON_AddArrayToObject(reply, "secrets")))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (size_t i = 0; i < b->policy->n_files; i++)
                cJSON_AddItemToArray(files, cJSON_CreateString(b->policy->files[i]));
        for (size_t i = 0; i < ab_secrets_count(b->secrets); i++) {
                const struct ab_secret *s = ab_secrets_at(b->secrets, i);
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
        return add_conn_stats(b, reply, err);
}

/* ---- runs ---- */

static int
h_run_open(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *label = NULL, *profile_name = NULL;
        const struct ab_policy_profile *profile = NULL;
        const cJSON *bind;
        char detail[2 * AB_NAME_MAX + 16];
        cJSON *pj = NULL;
        struct ab_run *run;
        struct ab_event ev;
        int r;

        r = ab_wire_get_string(req, "label", AB_NAME_MAX, &label);
        if (r == -EINVAL)
                return bad_field(err, "label");
        r = ab_wire_get_string(req, "profile", AB_NAME_MAX, &profile_name);
        if (r == -EINVAL)
                return bad_field(err, "profile");
        if (profile_name) {
                profile = ab_policy_find_profile(b->policy, profile_name);
                if (!profile)
                        return fail(err, AB_ERR_DENIED, "unknown-profile", "the policy has no profile '%s'",
                                    profile_name);
                pj = ab_policy_profile_to_json(profile);
                snprintf(detail, sizeof(detail), "%s%sprofile=%s", label ? label : "", label ? "," : "", profile_name);
                if (!pj)
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        r = ab_runs_open(b->runs, c->peer.uid, label, b->policy->runs.max_open, &run);
        if (r == -EUSERS)
                return fail(err, AB_ERR_DENIED, "too-many-runs", "%u runs are open already (runs.max_open)",
                            b->policy->runs.max_open);
        if (r < 0) {
                cJSON_Delete(pj);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot open a run: %s", strerror(-r));
        }
        if (profile_name && ab_run_set_profile(run, profile_name) < 0) {
                cJSON_Delete(pj);
                ab_runs_close(b->runs, run, ab_now_ms());
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        /* A host's own run ends with the host (broker/teardown.h). */
        bind = cJSON_GetObjectItemCaseSensitive(req, "bind_process");
        if (bind && !cJSON_IsBool(bind)) {
                cJSON_Delete(pj);
                ab_runs_close(b->runs, run, ab_now_ms());
                return bad_field(err, "bind_process");
        }
        if (cJSON_IsTrue(bind) && (r = ab_teardown_watch(b, run, &c->peer)) < 0)
                log_warning("run %s: cannot watch process %d for its end: %s", run->id, (int)c->peer.pid,
                            strerror(-r));
        ev = event_for(AB_EV_RUN_OPEN, &c->peer);
        ev.run = run->id;
        ev.detail = profile_name ? detail : label;
        (void)ab_peer_login(&c->peer, &ev.login_uid, &ev.login_ses);   /* left out when unreadable */
        if (emit_or_deny(b, &ev, err) < 0) {
                cJSON_Delete(pj);
                ab_runs_close(b->runs, run, ab_now_ms());
                return -1;
        }
        if (!cJSON_AddStringToObject(reply, "run", run->id) || (pj && !cJSON_AddItemToObject(reply, "profile", pj))) {
                cJSON_Delete(pj);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        snprintf(c->own_run, sizeof(c->own_run), "%s", run->id);
        return 0;
}

/* Close run and write its summary record. */
void
ab_handle_close_run(struct ab_broker *b, struct ab_run *run, const struct ab_peer *by, const char *why)
{
        uint64_t now = ab_now_ms();
        struct ab_event ev = event_for(AB_EV_RUN_CLOSE, by);
        char id[sizeof(run->id)];

        ab_tokens_revoke_run(b->tokens, run->id);
        /* Everything the record needs is copied first: closing may free run (only the
         * newest AB_RUNS_CLOSED_KEPT closed runs are kept, and run may be older). */
        memcpy(id, run->id, sizeof(id));
        ev.run = id;
        ev.calls = (int64_t)run->calls;
        ev.denied = (int64_t)run->denied;
        ev.rejected = (int64_t)run->rejected;
        ev.result_bytes = (int64_t)run->result_bytes;
        ev.duration_ms = (int64_t)(now - run->opened_ms);
        ev.reason = why;
        ab_runs_close(b->runs, run, now);
        (void)ab_audit_emit(b->audit, &ev);
}

static int
h_run_close(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
            struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *id;
        const cJSON *report;
        struct ab_run *run;
        size_t revoked;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &id) < 0)
                return bad_field(err, "run");
        run = ab_runs_find(b->runs, id);
        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        if (run->owner != c->peer.uid && !peer_is_admin(b, &c->peer))
                return fail(err, AB_ERR_NOT_PERMITTED, "wrong-run-owner",
                            "run %s belongs to uid %u", id, (unsigned)run->owner);
        report = cJSON_GetObjectItemCaseSensitive(req, "teardown");
        if (report && !cJSON_IsObject(report))
                return bad_field(err, "teardown");
        /* The host's report after someone else closed its run (broker/teardown.h). */
        if (!run->open && report && run->host_pidfd >= 0 && run->owner == c->peer.uid) {
                ab_teardown_record(b, run, &c->peer, run->teardown_reason ? run->teardown_reason : "run-close",
                                   run->teardown_revoked, report);
                close(run->host_pidfd);
                run->host_pidfd = -1;
                return 0;
        }
        if (!run->open)
                return fail(err, AB_ERR_DENIED, "run-closed", "run %s is already closed", id);
        revoked = ab_tokens_revoke_run(b->tokens, run->id);
        if (report)
                ab_teardown_record(b, run, &c->peer, "host-exit", revoked, report);
        else
                ab_teardown_ask_host(b, run, &c->peer, "run-close", revoked);
        /* The reply before the close: closing may free run (see ab_handle_close_run). */
        if (!cJSON_AddNumberToObject(reply, "calls", (double)run->calls) ||
            !cJSON_AddNumberToObject(reply, "denied", (double)run->denied) ||
            !cJSON_AddNumberToObject(reply, "rejected", (double)run->rejected) ||
            !cJSON_AddNumberToObject(reply, "result_bytes", (double)run->result_bytes) ||
            !cJSON_AddNumberToObject(reply, "duration_ms", (double)(ab_now_ms() - run->opened_ms))) {
                ab_handle_close_run(b, run, &c->peer, NULL);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        ab_handle_close_run(b, run, &c->peer, NULL);
        return 0;
}

static int
h_run_list(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        bool admin = peer_is_admin(b, &c->peer);
        cJSON *arr = cJSON_AddArrayToObject(reply, "runs");

        if (!arr)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (struct ab_run *run = ab_runs_first(b->runs); run; run = run->next) {
                cJSON *o;
                if (!admin && run->owner != c->peer.uid)
                        continue;
                o = cJSON_CreateObject();
                if (!o)
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                cJSON_AddItemToArray(arr, o);
                cJSON_AddStringToObject(o, "run", run->id);
                if (run->label)
                        cJSON_AddStringToObject(o, "label", run->label);
                cJSON_AddNumberToObject(o, "owner_uid", run->owner);
                cJSON_AddNumberToObject(o, "opened_at", (double)run->opened_at);
                cJSON_AddNumberToObject(o, "calls", (double)run->calls);
                cJSON_AddNumberToObject(o, "rejected", (double)run->rejected);
                cJSON_AddNumberToObject(o, "denied", (double)run->denied);
                cJSON_AddNumberToObject(o, "result_bytes", (double)run->result_bytes);
                cJSON_AddBoolToObject(o, "open", run->open);
        }
        return 0;
}

/* ---- calls ---- */

struct begin_args {
        const char *run, *tool, *args_sha256, *args;
        uint64_t args_len, worker_pid, ttl_s;
        bool has_worker, has_ttl;
};

static bool
is_hex64(const char *s)
{
        if (strlen(s) != 64)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/* Parse call-begin's fields. Returns 0 or -1 with err filled. */
static int
parse_begin(const cJSON *req, struct begin_args *a, struct ab_reply_error *err)
{
        int r;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &a->run) < 0)
                return bad_field(err, "run");
        if (ab_wire_get_string(req, "tool", AB_NAME_MAX, &a->tool) < 0 || !a->tool[0])
                return bad_field(err, "tool");
        if (ab_wire_get_string(req, "args_sha256", 64, &a->args_sha256) < 0 || !is_hex64(a->args_sha256))
                return bad_field(err, "args_sha256");
        if (ab_wire_get_u64(req, "args_len", (uint64_t)1 << 32, &a->args_len) < 0)
                return bad_field(err, "args_len");
        r = ab_wire_get_string(req, "args", AB_MSG_MAX, &a->args);
        if (r == -EINVAL)
                return bad_field(err, "args");
        if (r == -ENOENT)
                a->args = NULL;
        r = ab_wire_get_u64(req, "worker_pid", INT32_MAX, &a->worker_pid);
        if (r == -EINVAL || (r == 0 && a->worker_pid == 0))
                return bad_field(err, "worker_pid");
        a->has_worker = r == 0;
        r = ab_wire_get_u64(req, "ttl_s", UINT32_MAX, &a->ttl_s);
        if (r == -EINVAL || (r == 0 && a->ttl_s == 0))
                return bad_field(err, "ttl_s");
        a->has_ttl = r == 0;
        return 0;
}

/* Verify the arguments text against its digest and the rule's constraints.
 * Returns 0 or -1 with err filled. */
static int
check_call_args(const struct ab_policy_tool *rule, const struct begin_args *a, struct ab_reply_error *err)
{
        unsigned char md[32];
        char hex[65];
        cJSON *parsed = NULL;
        char *reason = NULL;
        int r;

        if (a->args_len > rule->max_args_bytes)
                return fail(err, AB_ERR_DENIED, "args-too-large",
                            "arguments are %llu bytes; the limit for this tool is %zu",
                            (unsigned long long)a->args_len, rule->max_args_bytes);
        if (!a->args) {
                if (rule->n_args > 0)
                        return fail(err, AB_ERR_DENIED, "args-constraint",
                                    "this tool's rule constrains its arguments: call-begin must carry \"args\"");
                return 0;
        }
        if (strlen(a->args) != a->args_len ||
            EVP_Digest(a->args, a->args_len, md, NULL, EVP_sha256(), NULL) != 1)
                return fail(err, AB_ERR_DENIED, "args-mismatch", "\"args\" does not match \"args_len\"");
        for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (strcmp(hex, a->args_sha256) != 0)
                return fail(err, AB_ERR_DENIED, "args-mismatch", "\"args\" does not hash to \"args_sha256\"");
        if (rule->n_args == 0)
                return 0;
        /* cJSON ends strings at an escaped NUL: the constraints would see a shorter value
         * than the tool. Such arguments are refused (conservatively, even "\\u0000"). */
        if (strstr(a->args, "\\u0000"))
                return fail(err, AB_ERR_DENIED, "args-constraint", "the arguments contain an escaped NUL character");
        parsed = cJSON_ParseWithLength(a->args, a->args_len);
        if (!parsed || !cJSON_IsObject(parsed)) {
                cJSON_Delete(parsed);
                return fail(err, AB_ERR_DENIED, "args-constraint", "the arguments are not a JSON object");
        }
        r = ab_policy_check_args(rule, parsed, &reason);
        cJSON_Delete(parsed);
        if (r == -EPERM) {
                fail(err, AB_ERR_DENIED, "args-constraint", "%s", reason ? reason : "argument constraint failed");
                free(reason);
                return -1;
        }
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot check arguments: %s", strerror(-r));
        return 0;
}

/* The policy decision for call-begin, in the documented order. Returns 0 (allowed, with
 * *ret_rule) or -1 with err filled. */
#define AB_RATE_KEY_MAX (AB_NAME_MAX + 8)

/* The run's rate bucket a call of tool under rule takes from: the tool's own, or with
 * rate_scope: rule the rule's ("rule " + its match: a space is in no tool name). */
static const char *
rate_key(const struct ab_policy_tool *rule, const char *tool, char *buf, size_t size)
{
        if (!rule->rate_per_rule)
                return tool;
        snprintf(buf, size, "rule %s", rule->match);
        return buf;
}

static int
decide_begin(struct ab_broker *b, struct ab_conn *c, const struct begin_args *a, struct ab_run *run,
             const struct ab_policy_tool **ret_rule, struct ab_reply_error *err)
{
        const struct ab_policy *pol = b->policy;
        const struct ab_policy_tool *rule;
        uint64_t now = ab_now_ms();
        int r;

        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", a->run);
        if (!run->open)
                return fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", a->run);
        if (run->owner != c->peer.uid)
                return fail(err, AB_ERR_DENIED, "wrong-run-owner", "run %s belongs to uid %u",
                            a->run, (unsigned)run->owner);
        if (ab_run_expired(pol, run, now))
                return fail(err, AB_ERR_DENIED, "run-expired", "run %s is older than its max_duration_s (%u s)",
                            a->run, ab_run_max_duration_s(pol, run));
        rule = ab_policy_find_tool(pol, a->tool);
        if (!rule || !rule->allow)
                return fail(err, AB_ERR_DENIED, "tool-not-allowed", "policy does not allow tool %s", a->tool);
        if (run->profile) {
                const struct ab_policy_profile *pr = ab_policy_find_profile(pol, run->profile);

                if (!pr)
                        return fail(err, AB_ERR_DENIED, "profile-unknown",
                                    "run %s was opened with profile '%s', which the policy no longer has", a->run,
                                    run->profile);
                if (!ab_policy_profile_allows_tool(pr, a->tool))
                        return fail(err, AB_ERR_DENIED, "tool-not-in-profile", "profile '%s' does not list tool %s",
                                    run->profile, a->tool);
        }
        if (pol->runs.max_calls && run->calls >= pol->runs.max_calls)
                return fail(err, AB_ERR_DENIED, "budget-exhausted", "run %s has used its %u calls (runs.max_calls)",
                            a->run, pol->runs.max_calls);
        if (rule->rate > 0) {
                char key[AB_RATE_KEY_MAX];

                r = ab_run_rate_take(run, rate_key(rule, a->tool, key, sizeof(key)), rule->rate, rule->burst, now);
                if (r == -EAGAIN && rule->rate_per_rule)
                        return fail(err, AB_ERR_DENIED, "rate-limited",
                                    "the tools of rule %s share %g calls/s in a run", rule->match, rule->rate);
                if (r == -EAGAIN)
                        return fail(err, AB_ERR_DENIED, "rate-limited",
                                    "tool %s is limited to %g calls/s in a run", a->tool, rule->rate);
                if (r < 0)
                        return fail(err, AB_ERR_DENIED, "rate-limited", "too many rate-limited tools in run %s", a->run);
        }
        if (check_call_args(rule, a, err) < 0)
                return -1;
        *ret_rule = rule;
        return 0;
}

/* Bind the token's presenter: the named worker (a child of the caller, same uid) or the
 * caller itself. Returns 0 or -1 with err filled. */
static int
bind_presenter(struct ab_conn *c, const struct begin_args *a, struct ab_token *tok, struct ab_reply_error *err)
{
        pid_t ppid = 0;
        int r;

        if (!a->has_worker) {
                r = peer_dup(&c->peer, &tok->presenter);
                return r < 0 ? fail(err, AB_ERR_INTERNAL, NULL, "cannot bind token: %s", strerror(-r)) : 0;
        }
        r = ab_peer_from_pid((pid_t)a->worker_pid, &tok->presenter, &ppid);
        if (r < 0)
                return fail(err, AB_ERR_DENIED, "worker-invalid", "worker process %llu: %s",
                            (unsigned long long)a->worker_pid, strerror(-r));
        if (ppid != c->peer.pid || tok->presenter.uid != c->peer.uid) {
                ab_peer_clear(&tok->presenter);
                return fail(err, AB_ERR_DENIED, "worker-invalid",
                            "worker process %llu is not a child of the caller with the caller's uid",
                            (unsigned long long)a->worker_pid);
        }
        return 0;
}

/* The digest by which the host checks a value a worker says it read (docs/protocol.md,
 * call-begin): SHA-256 of nonce (32 bytes, fresh per call) then the secret's bytes, as 64 hex
 * characters in *ret. Returns 0, -ENOENT (s is not a readable secret) or -ENOMEM. */
static int
read_digest(const struct ab_secret *s, const unsigned char nonce[32], char **ret)
{
        unsigned char md[32];
        EVP_MD_CTX *ctx;
        int ok;

        if (!s || !s->available || s->type != AB_SECRET_BYTES || !s->value)
                return -ENOENT;
        ctx = EVP_MD_CTX_new();
        ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, nonce, 32) == 1 &&
             EVP_DigestUpdate(ctx, s->value->data, s->value->len) == 1 && EVP_DigestFinal_ex(ctx, md, NULL) == 1;
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return -ENOMEM;
        return ab_hex_encode(md, sizeof(md), ret);
}

static int
h_call_begin(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = b->policy;
        const struct ab_policy_tool *rule = NULL;
        struct begin_args a = { 0 };
        struct ab_token *tok = NULL;
        char token[AB_TOKEN_LEN + 1];
        struct ab_event ev;
        struct ab_run *run;
        uint64_t ttl_s, now;
        unsigned char nonce[32];
        char *hex = NULL;
        cJSON *secrets;
        int r;

        if (parse_begin(req, &a, err) < 0)
                return -1;
        run = ab_runs_find(b->runs, a.run);
        ev = event_for(AB_EV_CALL_DENY, &c->peer);
        ev.run = a.run;
        ev.tool = a.tool;
        ev.args_sha256 = a.args_sha256;
        ev.args_len = (int64_t)a.args_len;

        if (decide_begin(b, c, &a, run, &rule, err) < 0)
                goto deny;
        if (ab_tokens_count(b->tokens) >= AB_TOKENS_MAX_DEFAULT) {
                fail(err, AB_ERR_DENIED, "too-many-tokens", "%d tokens are live already", AB_TOKENS_MAX_DEFAULT);
                goto deny;
        }
        tok = ab_token_alloc();
        if (!tok)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        if (bind_presenter(c, &a, tok, err) < 0)
                goto deny;
        r = peer_dup(&c->peer, &tok->issuer);
        if (r < 0) {
                ab_token_free(tok);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot bind token: %s", strerror(-r));
        }
        for (size_t i = 0; i < rule->n_grants; i++)
                /* A run's profile narrows the secrets its tokens may use. */
                if (ab_policy_profile_allows_secret(run && run->profile ? ab_policy_find_profile(pol, run->profile)
                                                                        : NULL,
                                                    rule->grants[i].secret) &&
                    ab_token_add_grant(tok, rule->grants[i].secret, rule->grants[i].ops) < 0) {
                        ab_token_free(tok);
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                }
        ttl_s = a.has_ttl ? a.ttl_s : pol->tokens.ttl_s;
        if (ttl_s > pol->tokens.max_ttl_s)
                ttl_s = pol->tokens.max_ttl_s;
        now = ab_now_ms();
        memcpy(tok->run, run->id, sizeof(tok->run));
        tok->tool = strdup(a.tool);
        tok->call = ++b->next_call_id;
        tok->issued_ms = now;
        tok->expires_ms = now + ttl_s * 1000;
        tok->max_uses = pol->tokens.max_uses;
        memcpy(tok->args_sha256, a.args_sha256, 65);
        if (!tok->tool) {
                ab_token_free(tok);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }

        /* The begin record is written before the token exists anywhere. */
        ev.type = AB_EV_CALL_BEGIN;
        ev.call = (int64_t)tok->call;
        if (emit_or_deny(b, &ev, err) < 0) {
                ab_token_free(tok);
                tok = NULL;
                ev.type = AB_EV_CALL_DENY;
                goto deny;
        }
        r = ab_tokens_issue(b->tokens, tok, token);
        if (r < 0) {
                /* The begin record is out: close the pair. */
                struct ab_event end = ev;
                end.type = AB_EV_CALL_END;
                end.success = false;
                end.status = "error";
                (void)ab_audit_emit(b->audit, &end);
                ab_token_free(tok);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot issue a token: %s", strerror(-r));
        }
        run->calls++;
        run->active++;
        if (!cJSON_AddStringToObject(reply, "token", token) ||
            !cJSON_AddStringToObject(reply, "token_id", tok->id) ||
            !cJSON_AddNumberToObject(reply, "call", (double)tok->call) ||
            !cJSON_AddNumberToObject(reply, "expires_in_ms", (double)(ttl_s * 1000)) ||
            !(secrets = cJSON_AddArrayToObject(reply, "secrets"))) {
                OPENSSL_cleanse(token, sizeof(token));
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        after->wipe = cJSON_GetObjectItemCaseSensitive(reply, "token");
        OPENSSL_cleanse(token, sizeof(token));
        if (RAND_bytes(nonce, sizeof(nonce)) != 1 || ab_hex_encode(nonce, sizeof(nonce), &hex) < 0 ||
            !cJSON_AddStringToObject(reply, "redact_nonce", hex)) {
                free(hex);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot make the redaction nonce");
        }
        free(hex);
        for (size_t i = 0; i < tok->n_grants; i++) {
                cJSON *o = cJSON_CreateObject(), *ops = o ? cJSON_AddArrayToObject(o, "ops") : NULL;
                if (!ops) {
                        cJSON_Delete(o);
                        break;
                }
                cJSON_AddStringToObject(o, "name", tok->grants[i].secret);
                for (unsigned bit = 1; bit <= AB_OP_MINT_JWT; bit <<= 1)
                        if (tok->grants[i].ops & bit)
                                cJSON_AddItemToArray(ops, cJSON_CreateString(ab_policy_op_to_string(bit)));
                if ((tok->grants[i].ops & AB_OP_READ) &&
                    read_digest(ab_secrets_find(b->secrets, tok->grants[i].secret), nonce, &hex) == 0) {
                        cJSON_AddStringToObject(o, "sha256", hex);
                        free(hex);
                }
                cJSON_AddItemToArray(secrets, o);
        }
        return 0;

deny:
        if (run)
                run->denied++;
        ev.reason = err->reason;
        ev.success = false;
        (void)ab_audit_emit(b->audit, &ev);
        return -1;
}

/* Map a token lookup error to its denial reason. */
const char *
token_reason(int r)
{
        switch (r) {
        case -EBADMSG: return "token-malformed";
        case -ENOENT: return "token-unknown";
        case -ESTALE: return "token-revoked";
        case -EPIPE: return "token-revoked";   /* its run was closed (run-close, expiry, host death) */
        case -ETIME: return "token-expired";
        default: return "token-invalid";
        }
}

/* Write a token-deny record and fill err. Always returns -1. */
int
deny_token(struct ab_broker *b, struct ab_conn *c, const struct ab_token *tok, const char *reason,
           const char *secret, const char *operation, const char *tool, struct ab_reply_error *err,
           const char *fmt, ...)
{
        struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);
        va_list ap;

        ev.success = false;
        ev.reason = reason;
        ev.secret = secret;
        ev.operation = operation;
        ev.tool = tok ? tok->tool : tool;
        if (tok) {
                ev.run = tok->run;
                ev.call = (int64_t)tok->call;
                ev.token_id = tok->id;
        }
        (void)ab_audit_emit(b->audit, &ev);
        err->code = AB_ERR_DENIED;
        err->reason = reason;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return -1;
}

/* call-end's "redacted": an array of at most AB_REDACTED_MAX secret names, joined with ','
 * into buf (size bytes; "" when absent). Returns 0 or -EINVAL. */
static int
end_redacted_names(const cJSON *req, char *buf, size_t size)
{
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "redacted"), *n;
        size_t len = 0, count = 0;

        buf[0] = '\0';
        if (!names)
                return 0;
        if (!cJSON_IsArray(names))
                return -EINVAL;
        cJSON_ArrayForEach(n, names) {
                size_t l = cJSON_IsString(n) ? strlen(n->valuestring) : 0;
                if (!cJSON_IsString(n) || l == 0 || l > AB_NAME_MAX || strchr(n->valuestring, ',') ||
                    ++count > AB_REDACTED_MAX || len + l + 2 > size)
                        return -EINVAL;
                if (len)
                        buf[len++] = ',';
                memcpy(buf + len, n->valuestring, l + 1);
                len += l;
        }
        return 0;
}

/* The run named by req's "run", open and owned by the caller. Returns it, or NULL with err
 * filled. */
static struct ab_run *
own_open_run(struct ab_broker *b, struct ab_conn *c, const cJSON *req, struct ab_reply_error *err)
{
        const char *id;
        struct ab_run *run;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &id) < 0) {
                bad_field(err, "run");
                return NULL;
        }
        run = ab_runs_find(b->runs, id);
        if (!run)
                fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        else if (!run->open)
                fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", id);
        else if (run->owner != c->peer.uid)
                fail(err, AB_ERR_DENIED, "wrong-run-owner", "run %s belongs to uid %u", id, (unsigned)run->owner);
        else
                return run;
        return NULL;
}

/* call-reject: the host refused a tools/call itself (docs/protocol.md); audited and counted. */
static int
h_call_reject(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = { "unknown-tool", "invalid-params", "invalid-args", "args-nul",
                                               "duplicate-id", "too-many-calls", "queue-full", "no-worker",
                                               "missing-capability" };
        const char *tool, *reason, *sha = NULL;
        uint64_t len = 0;
        bool known = false;
        struct ab_event ev;
        struct ab_run *run;
        int r;

        if (ab_wire_get_string(req, "tool", AB_NAME_MAX, &tool) < 0)
                return bad_field(err, "tool");
        if (ab_wire_get_string(req, "reason", 32, &reason) < 0)
                return bad_field(err, "reason");
        for (size_t i = 0; i < AB_ELEMENTSOF(reasons); i++)
                known = known || strcmp(reason, reasons[i]) == 0;
        if (!known)
                return bad_field(err, "reason");
        r = ab_wire_get_string(req, "args_sha256", 64, &sha);
        if (r == -EINVAL || (r == 0 && !is_hex64(sha)))
                return bad_field(err, "args_sha256");
        r = ab_wire_get_u64(req, "args_len", (uint64_t)1 << 52, &len);
        if (r == -EINVAL)
                return bad_field(err, "args_len");
        run = own_open_run(b, c, req, err);
        if (!run)
                return -1;
        ev = event_for(AB_EV_CALL_REJECT, &c->peer);
        ev.success = false;
        ev.run = run->id;
        ev.tool = tool;
        ev.reason = reason;
        ev.args_sha256 = sha;
        ev.args_len = sha ? (int64_t)len : -1;
        run->rejected++;
        return emit_or_deny(b, &ev, err);
}

/* run-client: the MCP client that initialized a session of the run (clientInfo), with the
 * caller's login uid and session read from /proc. */
static int
h_run_client(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *name = NULL, *version = NULL;
        struct ab_event ev;
        struct ab_run *run;

        if (ab_wire_get_string(req, "client", AB_NAME_MAX, &name) == -EINVAL)
                return bad_field(err, "client");
        if (ab_wire_get_string(req, "client_version", 64, &version) == -EINVAL)
                return bad_field(err, "client_version");
        run = own_open_run(b, c, req, err);
        if (!run)
                return -1;
        ev = event_for(AB_EV_RUN_CLIENT, &c->peer);
        ev.run = run->id;
        ev.client = name;
        ev.client_version = version;
        (void)ab_peer_login(&c->peer, &ev.login_uid, &ev.login_ses);
        return emit_or_deny(b, &ev, err);
}

static int
h_call_end(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const statuses[] = { "ok", "error", "timeout", "cancelled", "crashed" };
        const char *token, *status;
        uint64_t bytes, dur, redactions = 0;
        char redacted[AB_REDACTED_MAX * (AB_NAME_MAX + 1) + 1];
        bool has_redactions;
        struct ab_token *tok = NULL;
        struct ab_event ev;
        struct ab_run *run;
        bool known = false;
        int r;

        if (ab_wire_get_string(req, "token", AB_TOKEN_LEN + 1, &token) < 0)
                return bad_field(err, "token");
        if (ab_wire_get_string(req, "status", 16, &status) < 0)
                return bad_field(err, "status");
        for (size_t i = 0; i < AB_ELEMENTSOF(statuses); i++)
                known = known || strcmp(status, statuses[i]) == 0;
        if (!known)
                return bad_field(err, "status");
        if (ab_wire_get_u64(req, "result_bytes", (uint64_t)1 << 52, &bytes) < 0)
                return bad_field(err, "result_bytes");
        if (ab_wire_get_u64(req, "duration_ms", (uint64_t)1 << 52, &dur) < 0)
                return bad_field(err, "duration_ms");
        r = ab_wire_get_u64(req, "redactions", (uint64_t)1 << 52, &redactions);
        if (r == -EINVAL)
                return bad_field(err, "redactions");
        has_redactions = r == 0;
        if (has_redactions && end_redacted_names(req, redacted, sizeof(redacted)) < 0)
                return bad_field(err, "redacted");

        r = ab_tokens_lookup(b->tokens, token, ab_now_ms(), &tok);
        /* An expired token still in the table may end its call. */
        if (r < 0 && !(r == -ETIME && tok))
                return deny_token(b, c, NULL, token_reason(r), NULL, NULL, NULL, err,
                                  "call-end: %s", token_reason(r));
        if (tok->issuer.uid != c->peer.uid)
                return deny_token(b, c, tok, "wrong-peer", NULL, NULL, NULL, err,
                                  "call-end: the call was begun by another uid");
        ev = event_for(AB_EV_CALL_END, &c->peer);
        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.args_sha256 = tok->args_sha256;
        ev.status = status;
        ev.success = strcmp(status, "ok") == 0;
        ev.result_bytes = (int64_t)bytes;
        ev.duration_ms = (int64_t)dur;
        if (has_redactions) {
                ev.redactions = (int64_t)redactions;
                ev.redacted = redacted;
        }
        (void)ab_audit_emit(b->audit, &ev);
        run = ab_runs_find(b->runs, tok->run);
        if (run) {
                run->result_bytes += bytes;
                if (run->active)
                        run->active--;
        }
        ab_tokens_revoke(b->tokens, tok, AB_TOKEN_ENDED);
        return 0;
}

void
ab_handle_token_reaped(const struct ab_token *tok, void *userdata)
{
        struct ab_broker *b = userdata;
        struct ab_event ev = event_for(AB_EV_CALL_END, &tok->issuer);
        struct ab_run *run = ab_runs_find(b->runs, tok->run);

        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.args_sha256 = tok->args_sha256;
        ev.status = "abandoned";
        ev.success = false;
        (void)ab_audit_emit(b->audit, &ev);
        if (run && run->active)
                run->active--;
}

/* ---- secret operations ---- */

struct secret_req {
        const char *token, *tool, *secret;
        struct ab_token *tok;
        const struct ab_secret *s;
};

/* The checks every secret operation shares, in order: token, presenter, tool, scope,
 * operation, uses, availability, the secret's type (want_type, or -1 for any that fits op);
 * then the secret-use record. Returns 0 or -1. */
static int
secret_prologue(struct ab_broker *b, struct ab_conn *c, const cJSON *req, unsigned op, int want_type,
                struct secret_req *sr, struct ab_reply_error *err)
{
        const char *opname = ab_policy_op_to_string(op);
        struct ab_token *tok = NULL;
        struct ab_event ev;
        unsigned ops;
        int r;

        if (ab_wire_get_string(req, "token", AB_TOKEN_LEN + 1, &sr->token) < 0)
                return bad_field(err, "token");
        if (ab_wire_get_string(req, "tool", AB_NAME_MAX, &sr->tool) < 0)
                return bad_field(err, "tool");
        if (ab_wire_get_string(req, "secret", AB_NAME_MAX, &sr->secret) < 0)
                return bad_field(err, "secret");

        r = ab_tokens_lookup(b->tokens, sr->token, ab_now_ms(), &tok);
        if (r < 0)
                return deny_token(b, c, r == -ETIME ? tok : NULL, token_reason(r), sr->secret, opname, sr->tool,
                                  err, "%s: %s", opname, token_reason(r));
        /* The presenter must be the bound process, still alive (not exited, pid not reused). */
        if (c->peer.uid != tok->presenter.uid || !ab_peer_same_process(&c->peer, &tok->presenter))
                return deny_token(b, c, tok, "wrong-peer", sr->secret, opname, NULL, err,
                                  "%s: the token is bound to another process", opname);
        if (ab_peer_check_alive(&tok->presenter) < 0 || ab_peer_check_alive(&c->peer) < 0)
                return deny_token(b, c, tok, "wrong-peer", sr->secret, opname, NULL, err,
                                  "%s: the process the token is bound to has exited", opname);
        if (strcmp(sr->tool, tok->tool) != 0)
                return deny_token(b, c, tok, "wrong-tool", sr->secret, opname, NULL, err,
                                  "%s: the token was issued for another tool", opname);
        ops = ab_token_grant_ops(tok, sr->secret);
        if (!ops)
                return deny_token(b, c, tok, "secret-not-scoped", sr->secret, opname, NULL, err,
                                  "%s: secret %s is not scoped to tool %s", opname, sr->secret, tok->tool);
        if (!(ops & op))
                return deny_token(b, c, tok, "op-not-allowed", sr->secret, opname, NULL, err,
                                  "%s: tool %s may not %s secret %s", opname, tok->tool, opname, sr->secret);
        if (tok->max_uses && tok->uses >= tok->max_uses)
                return deny_token(b, c, tok, "token-exhausted", sr->secret, opname, NULL, err,
                                  "%s: the token's %u uses are spent", opname, tok->max_uses);
        sr->s = ab_secrets_find(b->secrets, sr->secret);
        if (!sr->s || !sr->s->available)
                return deny_token(b, c, tok, "secret-unavailable", sr->secret, opname, NULL, err,
                                  "%s: secret %s is not available (see the broker's log)", opname, sr->secret);
        if ((op == AB_OP_MINT_JWT && sr->s->type != AB_SECRET_ED25519) ||
            (op == AB_OP_READ && sr->s->type != AB_SECRET_BYTES) ||
            (want_type >= 0 && sr->s->type != (enum ab_secret_type)want_type))
                return deny_token(b, c, tok, "op-not-allowed", sr->secret, opname, NULL, err,
                                  "%s: secret %s is of the wrong type for this operation", opname, sr->secret);

        /* Logged before the client receives any secret material. */
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.secret = sr->secret;
        ev.operation = opname;
        ev.token_id = tok->id;
        if (emit_or_deny(b, &ev, err) < 0)
                return -1;
        tok->uses++;
        sr->tok = tok;
        return 0;
}

static int
h_secret_read(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct secret_req sr = { 0 };
        char *b64 = NULL;
        cJSON *item;

        if (secret_prologue(b, c, req, AB_OP_READ, -1, &sr, err) < 0)
                return -1;
        if (ab_base64_encode(sr.s->value->data, sr.s->value->len, &b64) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        item = cJSON_AddStringToObject(reply, "value", b64);
        ab_strfreezero(b64);
        if (!item)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = item;
        return 0;
}

static int
h_secret_sign(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct secret_req sr = { 0 };
        const char *alg, *data64;
        unsigned char *data = NULL, sig[64];
        size_t data_len = 0, sig_len;
        char *sig64 = NULL;
        bool hmac;
        int r;

        if (ab_wire_get_string(req, "alg", 32, &alg) < 0 ||
            (strcmp(alg, "hmac-sha256") != 0 && strcmp(alg, "ed25519") != 0))
                return bad_field(err, "alg");
        if (ab_wire_get_string(req, "data", (AB_SIGN_DATA_MAX / 3 + 1) * 4, &data64) < 0 ||
            ab_base64_decode(data64, &data, &data_len) < 0 || data_len > AB_SIGN_DATA_MAX) {
                free(data);
                return bad_field(err, "data");
        }
        hmac = strcmp(alg, "hmac-sha256") == 0;
        if (secret_prologue(b, c, req, AB_OP_SIGN, hmac ? AB_SECRET_BYTES : AB_SECRET_ED25519, &sr, err) < 0) {
                free(data);
                return -1;
        }
        if (hmac) {
                r = ab_secret_hmac_sha256(sr.s, data, data_len, sig);
                sig_len = 32;
        } else {
                r = ab_secret_ed25519_sign(sr.s, data, data_len, sig);
                sig_len = 64;
        }
        free(data);
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "signing failed: %s", strerror(-r));
        if (ab_base64_encode(sig, sig_len, &sig64) < 0 || !cJSON_AddStringToObject(reply, "signature", sig64)) {
                free(sig64);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        free(sig64);
        return 0;
}

/* Mint the JWT of claims cl with key s into reply ("jwt", "exp"); the jwt member is wiped
 * after sending. Shared by mint-jwt and identity-jwt. Returns 0 or -1 with err filled. */
static int
mint_reply(const struct ab_secret *s, const struct ab_jwt_claims *cl, cJSON *reply, struct ab_reply_error *err,
           struct ab_reply_after *after)
{
        char *jwt = NULL;
        int r;

        r = ab_jwt_mint(s, cl, &jwt);
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot mint the JWT: %s", strerror(-r));
        if (!cJSON_AddStringToObject(reply, "jwt", jwt) || !cJSON_AddNumberToObject(reply, "exp", (double)cl->exp)) {
                ab_strfreezero(jwt);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        after->wipe = cJSON_GetObjectItemCaseSensitive(reply, "jwt");
        ab_strfreezero(jwt);
        return 0;
}

static int
h_mint_jwt(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = b->policy;
        struct secret_req sr = { 0 };
        const char *aud, *scope = NULL;
        uint64_t ttl = 60;
        char jti[33], sub[AB_RUN_ID_LEN + AB_NAME_MAX + 16];
        int r;

        if (ab_wire_get_string(req, "audience", AB_AUDIENCE_MAX, &aud) < 0 || !aud[0])
                return bad_field(err, "audience");
        r = ab_wire_get_string(req, "scope", AB_SCOPE_MAX, &scope);
        if (r == -EINVAL)
                return bad_field(err, "scope");
        r = ab_wire_get_u64(req, "ttl_s", UINT32_MAX, &ttl);
        if (r == -EINVAL || ttl == 0)
                return bad_field(err, "ttl_s");
        if (ttl > pol->jwt.max_ttl_s)
                return fail(err, AB_ERR_BAD_REQUEST, "ttl-too-long",
                            "ttl_s %llu exceeds the policy's jwt.max_ttl_s (%u)", (unsigned long long)ttl,
                            pol->jwt.max_ttl_s);
        if (secret_prologue(b, c, req, AB_OP_MINT_JWT, -1, &sr, err) < 0)
                return -1;
        random_hex(jti, 16);
        snprintf(sub, sizeof(sub), "run/%s/tool/%s", sr.tok->run, sr.tok->tool);
        struct ab_jwt_claims cl = {
                .issuer = pol->jwt.issuer ? pol->jwt.issuer : "agentbroker",
                .subject = sub, .audience = aud, .scope = scope,
                .run = sr.tok->run, .tool = sr.tok->tool,
                .iat = (uint64_t)time(NULL), .jti = jti,
        };
        cl.exp = cl.iat + ttl;
        return mint_reply(sr.s, &cl, reply, err, after);
}

/* ---- host-config ---- */

/* Whether policy allows some tool of module: an allowing rule whose match, up to its first
 * '.', matches the module name (exactly, or as a glob: "fs.*", "*.read" and "*" all may
 * allow a tool of fs). */
static bool
module_has_allowed_tool(const struct ab_policy *pol, const char *module)
{
        for (size_t i = 0; i < pol->n_tools; i++) {
                const struct ab_policy_tool *t = &pol->tools[i];
                const char *dot = strchr(t->match, '.');
                size_t hl = dot ? (size_t)(dot - t->match) : strlen(t->match);
                char head[AB_NAME_MAX + 1];

                if (!t->allow || hl > AB_NAME_MAX)
                        continue;
                memcpy(head, t->match, hl);
                head[hl] = '\0';
                if (t->is_glob ? fnmatch(head, module, 0) == 0 : strcmp(head, module) == 0)
                        return true;
        }
        return false;
}

/* Add "servers": {name: {command, args, env, cwd?, tools, secrets (variable names only),
 * start, start_timeout_ms}} to reply. Returns 0 or -ENOMEM. */
static int
host_config_servers(const struct ab_policy *pol, cJSON *reply)
{
        cJSON *all = cJSON_AddObjectToObject(reply, "servers");

        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < pol->n_servers; i++) {
                const struct ab_policy_server *sv = &pol->servers[i];
                cJSON *o = cJSON_AddObjectToObject(all, sv->name), *args, *env, *tools, *vars;

                if (!o || !cJSON_AddStringToObject(o, "command", sv->command) ||
                    !(args = cJSON_AddArrayToObject(o, "args")) || !(env = cJSON_AddObjectToObject(o, "env")) ||
                    !(tools = cJSON_AddArrayToObject(o, "tools")) || !(vars = cJSON_AddArrayToObject(o, "secrets")) ||
                    (sv->cwd && !cJSON_AddStringToObject(o, "cwd", sv->cwd)) ||
                    !cJSON_AddStringToObject(o, "start", sv->lazy ? "lazy" : "host") ||
                    !cJSON_AddNumberToObject(o, "start_timeout_ms", sv->start_timeout_ms))
                        return -ENOMEM;
                for (size_t j = 0; j < sv->n_args; j++)
                        if (!cJSON_AddItemToArray(args, cJSON_CreateString(sv->args[j])))
                                return -ENOMEM;
                for (size_t j = 0; j < sv->n_tools; j++)
                        if (!cJSON_AddItemToArray(tools, cJSON_CreateString(sv->tools[j])))
                                return -ENOMEM;
                for (size_t j = 0; j < sv->n_env; j++)
                        if (!cJSON_AddStringToObject(env, sv->env[j].name, sv->env[j].value))
                                return -ENOMEM;
                for (size_t j = 0; j < sv->n_secrets; j++)
                        if (!cJSON_AddItemToArray(vars, cJSON_CreateString(sv->secrets[j].var)))
                                return -ENOMEM;
        }
        return 0;
}

/* Which of the named tools policy allows, with the settings the host enforces (result cap,
 * timeout), and the modules' configuration: every module's for an admin, for other clients
 * only that of modules policy allows a tool of (what a host can use). Reveals no secret:
 * grants are not listed. */
static int
h_host_config(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = b->policy;
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "tools"), *n;
        cJSON *tools, *modules;

        if (!cJSON_IsArray(names))
                return bad_field(err, "tools");
        if (!(tools = cJSON_AddObjectToObject(reply, "tools")) || !(modules = cJSON_AddObjectToObject(reply, "modules")))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        cJSON_ArrayForEach(n, names) {
                const struct ab_policy_tool *rule;
                cJSON *o;

                if (!cJSON_IsString(n) || !n->valuestring[0] || strlen(n->valuestring) > AB_NAME_MAX)
                        return bad_field(err, "tools");
                rule = ab_policy_find_tool(pol, n->valuestring);
                if (!rule || !rule->allow || cJSON_GetObjectItemCaseSensitive(tools, n->valuestring))
                        continue;
                if (!(o = cJSON_AddObjectToObject(tools, n->valuestring)) ||
                    !cJSON_AddNumberToObject(o, "max_result_bytes", (double)rule->max_result_bytes) ||
                    !cJSON_AddNumberToObject(o, "timeout_ms", rule->timeout_ms))
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        if (host_config_servers(pol, reply) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (size_t i = 0; i < pol->n_modules; i++) {
                cJSON *cfg;

                if (!peer_is_admin(b, &c->peer) && !module_has_allowed_tool(pol, pol->modules[i].name))
                        continue;
                cfg = pol->modules[i].config ? cJSON_Duplicate(pol->modules[i].config, true) : cJSON_CreateObject();
                if (!cfg || !cJSON_AddItemToObject(modules, pol->modules[i].name, cfg)) {
                        cJSON_Delete(cfg);
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                }
        }
        return 0;
}

/* Refuse a server-env request: a token-deny record (operation "env", the server as tool, the
 * run) and err. Always returns -1. */
static int
deny_env(struct ab_broker *b, struct ab_conn *c, const char *run, const char *server, const char *secret,
         const char *reason, struct ab_reply_error *err, const char *message)
{
        struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);

        ev.success = false;
        ev.reason = reason;
        ev.secret = secret;
        ev.operation = "env";
        ev.tool = server;
        ev.run = run;
        (void)ab_audit_emit(b->audit, &ev);
        return fail(err, AB_ERR_DENIED, reason, "env: %s", message);
}

/* server-env: the value of one secret policy passes to an MCP server (servers.NAME.secrets) as
 * the environment variable var, for the host that starts it. Audited as secret-use with
 * operation "env" (tool: the server's name) before the value leaves. Refused on a worker's
 * pinned connection (flag in the table). */
static int
h_server_env(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy_server *sv;
        const struct ab_secret *s = NULL;
        const char *id, *name, *var, *secret = NULL;
        struct ab_event ev;
        struct ab_run *run;
        char *b64 = NULL;
        cJSON *item;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &id) < 0)
                return bad_field(err, "run");
        if (ab_wire_get_string(req, "server", AB_NAME_MAX, &name) < 0)
                return bad_field(err, "server");
        if (ab_wire_get_string(req, "var", AB_NAME_MAX, &var) < 0)
                return bad_field(err, "var");
        run = ab_runs_find(b->runs, id);
        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        if (run->owner != c->peer.uid)
                return fail(err, AB_ERR_NOT_PERMITTED, "wrong-run-owner", "run %s belongs to uid %u", id,
                            (unsigned)run->owner);
        if (!run->open)
                return fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", id);
        sv = ab_policy_find_server(b->policy, name);
        for (size_t i = 0; sv && i < sv->n_secrets; i++)
                if (strcmp(sv->secrets[i].var, var) == 0)
                        secret = sv->secrets[i].secret;
        if (!secret)
                return deny_env(b, c, run->id, name, NULL, "secret-not-scoped", err,
                                "policy passes no secret in this variable to this server");
        s = ab_secrets_find(b->secrets, secret);
        if (!s || !s->available || s->type != AB_SECRET_BYTES)
                return deny_env(b, c, run->id, name, secret, "secret-unavailable", err,
                                "the secret is not available (see the broker's log)");
        /* Logged before the client receives any secret material. */
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = run->id;
        ev.tool = name;
        ev.secret = secret;
        ev.operation = "env";
        if (emit_or_deny(b, &ev, err) < 0)
                return -1;
        if (ab_base64_encode(s->value->data, s->value->len, &b64) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        item = cJSON_AddStringToObject(reply, "value", b64);
        ab_strfreezero(b64);
        if (!item || !cJSON_AddStringToObject(reply, "secret", secret))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = item;
        return 0;
}

/* ---- tunnel identity (docs/tunnel.md) ---- */

#define AB_SANDBOX_ID_MAX 256
#define AB_SESSION_MAX 128
#define AB_IDENTITY_JWT_TTL_S 60

/* The sandbox id: policy tunnel.sandbox_id, else the host name. */
static const char *
sandbox_id(const struct ab_policy *pol, char *buf, size_t size)
{
        if (pol->tunnel.sandbox_id)
                return pol->tunnel.sandbox_id;
        if (gethostname(buf, size) < 0 || !buf[0])
                snprintf(buf, size, "agentbroker");
        buf[size - 1] = '\0';
        return buf;
}

/* The policy's tunnel identity key, or NULL with err filled. */
static const struct ab_secret *
identity_secret(struct ab_broker *b, struct ab_reply_error *err)
{
        const struct ab_secret *s;

        if (!b->policy->tunnel.identity) {
                fail(err, AB_ERR_DENIED, "no-identity",
                     "the policy names no tunnel.identity key: add `tunnel: { identity: NAME }` naming an "
                     "ed25519 secret of its own (e.g. `NAME: { credential: agentbroker.NAME, type: ed25519 }`, "
                     "generated with agentbrokerctl secret install), then agentbrokerctl policy reload "
                     "(agentbroker-policy(5), tunnel)");
                return NULL;
        }
        s = ab_secrets_find(b->secrets, b->policy->tunnel.identity);
        if (!s || !s->available || s->type != AB_SECRET_ED25519) {
                fail(err, AB_ERR_DENIED, "secret-unavailable",
                     "the tunnel identity key %s is not available (see the broker's log)", b->policy->tunnel.identity);
                return NULL;
        }
        return s;
}

/* identity: the public half of the tunnel identity key, for registration with a control
 * plane. Any client may ask: nothing in it is secret. */
static int
h_identity(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_secret *s = identity_secret(b, err);
        char host[AB_SANDBOX_ID_MAX + 1];
        cJSON *jwk = NULL;
        char *pem = NULL;

        if (!s)
                return -1;
        if (ab_jwk_public(s, &jwk, &pem) < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot export the public key");
        if (!cJSON_AddItemToObject(reply, "jwk", jwk)) {
                cJSON_Delete(jwk);
                free(pem);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        if (!cJSON_AddStringToObject(reply, "pem", pem) ||
            !cJSON_AddStringToObject(reply, "sandbox_id", sandbox_id(b->policy, host, sizeof(host))) ||
            !cJSON_AddStringToObject(reply, "secret", b->policy->tunnel.identity)) {
                free(pem);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        free(pem);
        return 0;
}

/* identity-jwt {audience, session?, run?}: a dial credential for the tunnel, signed with the
 * tunnel identity key: header typ AB_JWT_TYP_DIAL (which no mint-jwt JWT has), iss = sub =
 * sandbox id, aud = audience (the control plane URL), exp = now + 60 s, a fresh jti, sid = session. Admin only (root, the broker's uid, the
 * admin group): the tunnel host runs as one of them. The secret-use record is written
 * before the JWT leaves. */
static int
h_identity_jwt(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_secret *s;
        const char *aud, *session = NULL, *run = NULL;
        char host[AB_SANDBOX_ID_MAX + 1], jti[33];
        struct ab_event ev;
        int r;

        if (ab_wire_get_string(req, "audience", AB_AUDIENCE_MAX, &aud) < 0 || !aud[0])
                return bad_field(err, "audience");
        r = ab_wire_get_string(req, "session", AB_SESSION_MAX, &session);
        if (r == -EINVAL)
                return bad_field(err, "session");
        r = ab_wire_get_string(req, "run", 128, &run);
        if (r == -EINVAL)
                return bad_field(err, "run");
        s = identity_secret(b, err);
        if (!s)
                return -1;
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = run;
        ev.secret = b->policy->tunnel.identity;
        ev.operation = "mint-jwt";
        ev.detail = "tunnel identity-jwt";
        if (emit_or_deny(b, &ev, err) < 0)
                return -1;
        random_hex(jti, 16);
        struct ab_jwt_claims cl = {
                .issuer = sandbox_id(b->policy, host, sizeof(host)),
                .audience = aud, .run = run, .sid = session,
                .iat = (uint64_t)time(NULL), .jti = jti, .tunnel_dial = true,
        };
        cl.subject = cl.issuer;
        cl.exp = cl.iat + AB_IDENTITY_JWT_TTL_S;
        return mint_reply(s, &cl, reply, err, after);
}

/* tunnel-event {event: connect|disconnect|auth-fail, url, session, reason?, run?}: the tunnel
 * host reports its connection's life; written as tunnel-connect, tunnel-disconnect or
 * tunnel-auth-fail. Admin only, like identity-jwt. */
static int
h_tunnel_event(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = { "closed", "dial-failed", "ping-timeout", "shutdown",
                                               "jwt-rejected", "tls-verify", "pin-mismatch", "identity-jwt" };
        static const char *const stages[] = { "tcp-connect", "tls-handshake", "upgrade-answer", "first-message" };
        const char *event, *url, *session, *reason = NULL, *run = NULL, *stage = NULL;
        char detail[AB_AUDIENCE_MAX + AB_SESSION_MAX + 64];
        struct ab_event ev;
        bool known = false;
        int r;

        if (ab_wire_get_string(req, "event", 32, &event) < 0)
                return bad_field(err, "event");
        if (ab_wire_get_string(req, "url", AB_AUDIENCE_MAX, &url) < 0)
                return bad_field(err, "url");
        if (ab_wire_get_string(req, "session", AB_SESSION_MAX, &session) < 0)
                return bad_field(err, "session");
        r = ab_wire_get_string(req, "reason", 64, &reason);
        if (r == -EINVAL)
                return bad_field(err, "reason");
        for (size_t i = 0; reason && i < AB_ELEMENTSOF(reasons); i++)
                known = known || strcmp(reason, reasons[i]) == 0;
        if (reason && !known)
                return bad_field(err, "reason");
        r = ab_wire_get_string(req, "run", 128, &run);
        if (r == -EINVAL)
                return bad_field(err, "run");
        r = ab_wire_get_string(req, "stage", 32, &stage);
        if (r == -EINVAL)
                return bad_field(err, "stage");
        known = false;
        for (size_t i = 0; stage && i < AB_ELEMENTSOF(stages); i++)
                known = known || strcmp(stage, stages[i]) == 0;
        if (stage && !known)
                return bad_field(err, "stage");
        if (strcmp(event, "connect") == 0)
                ev = event_for(AB_EV_TUNNEL_CONNECT, &c->peer);
        else if (strcmp(event, "disconnect") == 0 && reason)
                ev = event_for(AB_EV_TUNNEL_DISCONNECT, &c->peer);
        else if (strcmp(event, "auth-fail") == 0 && reason) {
                ev = event_for(AB_EV_TUNNEL_AUTH_FAIL, &c->peer);
                ev.success = false;
        } else
                return bad_field(err, "event");
        snprintf(detail, sizeof(detail), "url=%s session=%s%s%s", url, session, stage ? " stage=" : "",
                 stage ? stage : "");
        ev.run = run;
        ev.reason = reason;
        ev.detail = detail;
        return emit_or_deny(b, &ev, err);
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

static int
h_token_list(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        struct token_list_ctx ctx = { .arr = cJSON_AddArrayToObject(reply, "tokens"), .now = ab_now_ms() };

        if (!ctx.arr || !cJSON_AddNumberToObject(reply, "total", (double)ab_tokens_count(b->tokens)))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        ab_tokens_foreach(b->tokens, add_token_row, &ctx);
        return 0;
}

static int
h_policy_reload(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
                struct ab_reply_error *err, struct ab_reply_after *after)
{
        char *errors = NULL;
        cJSON *files;

        if (ab_broker_load_policy(b, &errors) < 0) {
                fail(err, AB_ERR_BAD_REQUEST, "policy-invalid", "%s", errors ? errors : "policy load failed");
                free(errors);
                return -1;
        }
        files = cJSON_AddArrayToObject(reply, "files");
        if (!files)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (size_t i = 0; i < b->policy->n_files; i++)
                cJSON_AddItemToArray(files, cJSON_CreateString(b->policy->files[i]));
        return 0;
}

/* ---- HTTP bearer tokens (agentbroker-mcp --http) ---- */

/* The connection's own run (opened on it, still open), or NULL. */
static const struct ab_run *
conn_own_run(struct ab_broker *b, const struct ab_conn *c)
{
        const struct ab_run *run = c->own_run[0] ? ab_runs_find(b->runs, c->own_run) : NULL;

        return run && run->open ? run : NULL;
}

/* Whether c may write the records of an HTTP listener: an admin, or a host on the connection
 * that opened its (still open) run. */
static bool
may_report_http(struct ab_broker *b, const struct ab_conn *c)
{
        return peer_is_admin(b, &c->peer) || conn_own_run(b, c);
}


#define HTTP_TOKENS_MAX 1024
#define HTTP_TOKEN_TTL_DEFAULT_S 900
#define HTTP_TOKEN_TTL_MAX_S (7 * 86400)
#define HTTP_TOKEN_PREFIX "abh_"
#define HTTP_TOKEN_RANDOM 32               /* bytes of randomness, base64url in the token */

/* Issued tokens: SHA-256 of the token text and expiry. The broker is single-threaded. */
static struct http_token {
        unsigned char hash[32];
        uint64_t expires_ms;
} http_tokens[HTTP_TOKENS_MAX];

static void
http_token_short_id(const unsigned char hash[32], char out[9])
{
        for (size_t i = 0; i < 4; i++)
                snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

static int
http_token_hash(const char *token, unsigned char hash[32])
{
        unsigned len = 0;
        return EVP_Digest(token, strlen(token), hash, &len, EVP_sha256(), NULL) && len == 32 ? 0 : -EIO;
}

static int
h_http_token_issue(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
                   struct ab_reply_error *err, struct ab_reply_after *after)
{
        const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(req, "ttl_s");
        unsigned char raw[HTTP_TOKEN_RANDOM], hash[32];
        char token[sizeof HTTP_TOKEN_PREFIX + HTTP_TOKEN_RANDOM * 2], id[9], detail[32];
        _cleanup_free_ char *enc = NULL;
        struct http_token *slot = NULL;
        uint64_t now = ab_now_ms(), ttl_s = HTTP_TOKEN_TTL_DEFAULT_S;
        struct ab_event ev;
        cJSON *item;

        if (ttl) {
                /* A number, or its decimal text. */
                double v = -1;
                char *end = NULL;

                if (cJSON_IsNumber(ttl))
                        v = ttl->valuedouble;
                else if (cJSON_IsString(ttl) && ttl->valuestring[0] >= '0' && ttl->valuestring[0] <= '9' &&
                         strlen(ttl->valuestring) <= 12) {
                        v = (double)strtoull(ttl->valuestring, &end, 10);
                        if (*end)
                                v = -1;
                }
                if (v < 1 || v > HTTP_TOKEN_TTL_MAX_S || v != (double)(uint64_t)v)
                        return fail(err, AB_ERR_BAD_REQUEST, NULL, "ttl_s must be a whole number of seconds, 1..%d",
                                    HTTP_TOKEN_TTL_MAX_S);
                ttl_s = (uint64_t)v;
        }
        for (size_t i = 0; i < HTTP_TOKENS_MAX; i++)
                if (http_tokens[i].expires_ms <= now) {
                        slot = &http_tokens[i];
                        break;
                }
        if (!slot)
                return fail(err, AB_ERR_DENIED, "too-many-tokens", "%d HTTP tokens are live already", HTTP_TOKENS_MAX);
        if (RAND_bytes(raw, sizeof raw) != 1)
                return fail(err, AB_ERR_INTERNAL, NULL, "no randomness");
        if (ab_base64url_encode(raw, sizeof raw, &enc) < 0) {
                OPENSSL_cleanse(raw, sizeof raw);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        OPENSSL_cleanse(raw, sizeof raw);
        snprintf(token, sizeof token, HTTP_TOKEN_PREFIX "%s", enc);
        OPENSSL_cleanse(enc, strlen(enc));
        if (http_token_hash(token, hash) < 0) {
                OPENSSL_cleanse(token, sizeof token);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot hash the token");
        }
        http_token_short_id(hash, id);
        snprintf(detail, sizeof detail, "ttl=%" PRIu64 "s", ttl_s);
        ev = event_for(AB_EV_HTTP_TOKEN_ISSUE, &c->peer);
        ev.token_id = id;
        ev.detail = detail;
        if (emit_or_deny(b, &ev, err) < 0) {
                OPENSSL_cleanse(token, sizeof token);
                return -1;
        }
        memcpy(slot->hash, hash, sizeof hash);
        slot->expires_ms = now + ttl_s * 1000u;
        item = cJSON_CreateString(token);
        OPENSSL_cleanse(token, sizeof token);
        if (!item || !cJSON_AddItemToObject(reply, "token", item) ||
            !cJSON_AddStringToObject(reply, "token_id", id) ||
            !cJSON_AddNumberToObject(reply, "expires_in_ms", (double)(ttl_s * 1000u))) {
                memset(slot, 0, sizeof *slot);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        after->wipe = item;
        return 0;
}

static int
h_http_token_check(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
                   struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *token = NULL, *reason;
        unsigned char hash[32];
        char id[9] = "?";
        uint64_t now = ab_now_ms();
        struct ab_event ev;
        int r;

        r = ab_wire_get_string(req, "token", 256, &token);
        if (r < 0 || !token)
                return bad_field(err, "token");
        reason = "token-malformed";
        if (strncmp(token, HTTP_TOKEN_PREFIX, strlen(HTTP_TOKEN_PREFIX)) == 0 &&
            strlen(token) == strlen(HTTP_TOKEN_PREFIX) + 43) {
                if (http_token_hash(token, hash) < 0)
                        return fail(err, AB_ERR_INTERNAL, NULL, "cannot hash the token");
                http_token_short_id(hash, id);
                reason = "token-unknown";
                for (size_t i = 0; i < HTTP_TOKENS_MAX; i++) {
                        if (CRYPTO_memcmp(http_tokens[i].hash, hash, sizeof hash) != 0)
                                continue;
                        if (http_tokens[i].expires_ms <= now) {
                                reason = "token-expired";
                                break;
                        }
                        if (!cJSON_AddNumberToObject(reply, "expires_in_ms",
                                                     (double)(http_tokens[i].expires_ms - now)))
                                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                        return 0;
                }
        }
        /* A host that aggregates its denials (aggregate: true) reports them with
         * http-auth-deny; anyone else's refusal is recorded here, one by one. */
        if (!(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "aggregate")) && may_report_http(b, c))) {
                ev = event_for(AB_EV_HTTP_TOKEN_DENY, &c->peer);
                ev.success = false;
                ev.reason = reason;
                ev.token_id = id;
                (void)ab_audit_emit(b->audit, &ev);
        }
        return fail(err, AB_ERR_DENIED, reason, "the HTTP bearer token is refused: %s", reason);
}

/* http-auth-deny {source, reason, count, seconds}: a host reports, aggregated, the requests it
 * refused for want of a valid token from one source over an interval (docs/http.md): one
 * http-token-deny record instead of one per request. Admins or a host with its own run. */
static int
h_http_auth_deny(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
                 struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = { "no-token", "token-malformed", "token-unknown", "token-expired",
                                               "denied" };
        const struct ab_run *run = conn_own_run(b, c);
        const char *source = NULL, *reason = NULL;
        uint64_t count = 0, seconds = 0;
        char detail[160];
        struct ab_event ev;
        bool known = false;

        if (!may_report_http(b, c))
                return fail(err, AB_ERR_NOT_PERMITTED, "no-own-run",
                            "http-auth-deny needs an open run opened on this connection, or an admin");
        if (ab_wire_get_string(req, "source", 64, &source) < 0 || !source || !source[0])
                return bad_field(err, "source");
        if (ab_wire_get_string(req, "reason", 32, &reason) < 0 || !reason)
                return bad_field(err, "reason");
        for (size_t i = 0; i < AB_ELEMENTSOF(reasons); i++)
                known = known || strcmp(reason, reasons[i]) == 0;
        if (!known)
                return bad_field(err, "reason");
        if (ab_wire_get_u64(req, "count", UINT32_MAX, &count) < 0 || count == 0)
                return bad_field(err, "count");
        if (ab_wire_get_u64(req, "seconds", 86400, &seconds) < 0)
                return bad_field(err, "seconds");
        snprintf(detail, sizeof(detail), "source=%s denied=%" PRIu64 " in %" PRIu64 "s", source, count, seconds);
        ev = event_for(AB_EV_HTTP_TOKEN_DENY, &c->peer);
        ev.success = false;
        ev.reason = reason;
        ev.run = run ? run->id : NULL;
        ev.detail = detail;
        return emit_or_deny(b, &ev, err);
}

/* http-listener {address, auth, run?}: a host records the Streamable HTTP listener it
 * started. Admins; a connection that opened a run that is still open (the host's own run); or
 * one that names an open run of its own uid (a host started with --run), which then becomes
 * the run this connection speaks for. A plain client cannot write listener records that point
 * at nobody. */
static int
h_http_listener(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
                struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *address = NULL, *auth = NULL, *named = NULL;
        const struct ab_run *run = conn_own_run(b, c);
        char detail[256];
        struct ab_event ev;
        int r;

        r = ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &named);
        if (r == -EINVAL)
                return bad_field(err, "run");
        if (!run && named) {
                const struct ab_run *n = ab_runs_find(b->runs, named);

                if (n && n->open && n->owner == c->peer.uid)
                        run = n;
        }
        if (!run && !peer_is_admin(b, &c->peer))
                return fail(err, AB_ERR_NOT_PERMITTED, "no-own-run",
                            "http-listener needs an open run of this connection or of its uid, or an admin");
        if (ab_wire_get_string(req, "address", 128, &address) < 0 || !address)
                return bad_field(err, "address");
        if (ab_wire_get_string(req, "auth", 32, &auth) < 0 || !auth ||
            (strcmp(auth, "bearer") != 0 && strcmp(auth, "insecure-no-auth") != 0))
                return bad_field(err, "auth");
        snprintf(detail, sizeof detail, "address=%s auth=%s", address, auth);
        ev = event_for(AB_EV_HTTP_LISTENER, &c->peer);
        ev.run = run ? run->id : NULL;
        ev.detail = detail;
        if (emit_or_deny(b, &ev, err) < 0)
                return -1;
        if (run)
                snprintf(c->own_run, sizeof(c->own_run), "%s", run->id);
        return 0;
}

/* worker-hello: pin this connection, for good, to the operations a module worker makes
 * (the flag `worker` in the table below). Any client may make its own connection narrower. */
static int
h_worker_hello(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
               struct ab_reply_error *err, struct ab_reply_after *after)
{
        if (!c->worker) {
                c->worker = true;
                /* Closed when the worker exits: a process it leaves behind must not keep it. */
                (void)ab_server_watch_worker(b, c);
        }
        return 0;
}

/* module-report {module, served, reason?}: an MCP host says whether it serves a module or
 * refused it and why (its init failed ...); status shows the latest report per module. */
static int
h_module_report(struct ab_broker *b, struct ab_conn *c, const cJSON *req, cJSON *reply,
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
        r = ab_module_reports_set(b->module_reports, module, served, reason, c->peer.uid, c->peer.pid, time(NULL));
        if (r == -EINVAL)
                return bad_field(err, "module");
        if (r < 0)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        return 0;
}

static const struct {
        const char *op;
        handler_fn fn;
        bool admin;                    /* root, the broker's uid or clients.admin_group */
        bool worker;                   /* allowed on a connection pinned by worker-hello */
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
ab_handle_request(struct ab_broker *b, struct ab_conn *c, const char *op, const cJSON *req,
                  cJSON *reply, struct ab_reply_error *err, struct ab_reply_after *after)
{
        if (!peer_is_client(b, &c->peer)) {
                struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);
                ev.success = false;
                ev.reason = "client-not-allowed";
                ev.detail = op;
                (void)ab_audit_emit(b->audit, &ev);
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
                        (void)ab_audit_emit(b->audit, &ev);
                        return fail(err, AB_ERR_NOT_PERMITTED, "worker-confined",
                                    "%s is not permitted on a module worker's connection", op);
                }
                if (handlers[i].admin && !peer_is_admin(b, &c->peer))
                        return fail(err, AB_ERR_NOT_PERMITTED, "not-admin",
                                    "%s needs root, the broker's uid or the admin group", op);
                return handlers[i].fn(b, c, req, reply, err, after);
        }
        return fail(err, AB_ERR_UNKNOWN_OP, NULL, "unknown operation");
}
