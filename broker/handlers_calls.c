/* SPDX-License-Identifier: MIT */
/* Call operations of agentbrokerd (docs/protocol.md): call-begin (the decision and
 * the call token), call-end, call-reject, run-client, and the record of a token reaped
 * before its call ended. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker/handlers_shared.h"
#include "broker/teardown.h"
#include "common/encode.h"
#include "common/wire.h"
#include "common/secmem.h"

#define AB_REDACTED_MAX 64 /* secret names in one call-end (the host's redactor holds 64) */

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
                        return fail(
                                err, AB_ERR_DENIED, "args-constraint",
                                "this tool's rule constrains its arguments: call-begin must carry \"args\"");
                return 0;
        }
        if (strlen(a->args) != a->args_len ||
            EVP_Digest(a->args, a->args_len, md, NULL, EVP_sha256(), NULL) != 1)
                return fail(err, AB_ERR_DENIED, "args-mismatch", "\"args\" does not match \"args_len\"");
        ab_hex_encode_buf(md, 32, hex);
        if (strcmp(hex, a->args_sha256) != 0)
                return fail(err, AB_ERR_DENIED, "args-mismatch",
                            "\"args\" does not hash to \"args_sha256\"");
        if (rule->n_args == 0)
                return 0;
        /* cJSON ends strings at an escaped NUL: the constraints would see a shorter value
         * than the tool. Such arguments are refused (conservatively, even "\\u0000"). */
        if (strstr(a->args, "\\u0000"))
                return fail(err, AB_ERR_DENIED, "args-constraint",
                            "the arguments contain an escaped NUL character");
        parsed = cJSON_ParseWithLength(a->args, a->args_len);
        if (!parsed || !cJSON_IsObject(parsed)) {
                cJSON_Delete(parsed);
                return fail(err, AB_ERR_DENIED, "args-constraint", "the arguments are not a JSON object");
        }
        r = ab_policy_check_args(rule, parsed, &reason);
        cJSON_Delete(parsed);
        if (r == -EPERM) {
                fail(err, AB_ERR_DENIED, "args-constraint", "%s",
                     reason ? reason : "argument constraint failed");
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
decide_begin(struct ab_state *st, struct ab_conn *c, const struct begin_args *a, struct ab_run *run,
             const struct ab_policy_tool **ret_rule, struct ab_reply_error *err)
{
        const struct ab_policy *pol = st->policy;
        const struct ab_policy_tool *rule;
        uint64_t now = ab_now_ms();
        int r;

        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", a->run);
        if (!run->open)
                return run->expired ? fail(err, AB_ERR_DENIED, "run-expired", "run %s expired and is closed",
                                           a->run)
                                    : fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", a->run);
        if (run->owner != c->peer.uid)
                return fail(err, AB_ERR_DENIED, "wrong-run-owner", "run %s belongs to uid %u", a->run,
                            (unsigned)run->owner);
        if (ab_run_expired(run, ab_run_max_duration_s(pol, run), now))
                return fail(err, AB_ERR_DENIED, "run-expired",
                            "run %s is older than its max_duration_s (%u s)", a->run,
                            ab_run_max_duration_s(pol, run));
        rule = ab_policy_find_tool(pol, a->tool);
        if (!rule || !rule->allow)
                return fail(err, AB_ERR_DENIED, "tool-not-allowed", "policy does not allow tool %s",
                            a->tool);
        if (run->profile) {
                const struct ab_policy_profile *pr = ab_policy_find_profile(pol, run->profile);

                if (!pr)
                        return fail(err, AB_ERR_DENIED, "profile-unknown",
                                    "run %s was opened with profile '%s', which the policy no longer has",
                                    a->run, run->profile);
                if (!ab_policy_profile_allows_tool(pr, a->tool))
                        return fail(err, AB_ERR_DENIED, "tool-not-in-profile",
                                    "profile '%s' does not list tool %s", run->profile, a->tool);
        }
        if (ab_run_calls_exhausted(run, pol->runs.max_calls))
                return fail(err, AB_ERR_DENIED, "budget-exhausted",
                            "run %s has used its %u calls (runs.max_calls)", a->run, pol->runs.max_calls);
        if (rule->rate > 0) {
                char key[AB_RATE_KEY_MAX];

                r = ab_run_rate_take(run, rate_key(rule, a->tool, key, sizeof(key)), rule->rate, rule->burst,
                                     now);
                if (r == -EAGAIN && rule->rate_per_rule)
                        return fail(err, AB_ERR_DENIED, "rate-limited",
                                    "the tools of rule %s share %g calls/s in a run", rule->match,
                                    rule->rate);
                if (r == -EAGAIN)
                        return fail(err, AB_ERR_DENIED, "rate-limited",
                                    "tool %s is limited to %g calls/s in a run", a->tool, rule->rate);
                if (r < 0)
                        return fail(err, AB_ERR_DENIED, "rate-limited",
                                    "too many rate-limited tools in run %s", a->run);
        }
        if (check_call_args(rule, a, err) < 0)
                return -1;
        *ret_rule = rule;
        return 0;
}

/* Bind the token's presenter: the named worker (a child of the caller, same uid) or the
 * caller itself. Returns 0 or -1 with err filled. */
static int
bind_presenter(struct ab_conn *c, const struct begin_args *a, struct ab_token *tok,
               struct ab_reply_error *err)
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
        ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, nonce, 32) == 1 &&
             EVP_DigestUpdate(ctx, s->value->data, s->value->len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, NULL) == 1;
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return -ENOMEM;
        return ab_hex_encode(md, sizeof(md), ret);
}

int
h_call_begin(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = st->policy;
        const struct ab_policy_tool *rule = NULL;
        struct begin_args a = { 0 };
        struct ab_token *tok = NULL;
        char token[AB_TOKEN_LEN + 1];
        AB_WIPE_ON_EXIT(token);
        struct ab_event ev;
        struct ab_run *run;
        uint64_t ttl_s, now;
        unsigned char nonce[32];
        char *hex = NULL;
        cJSON *secrets;
        int r;

        if (parse_begin(req, &a, err) < 0)
                return -1;
        run = ab_runs_find(st->runs, a.run);
        ev = event_for(AB_EV_CALL_DENY, &c->peer);
        ev.run = a.run;
        ev.tool = a.tool;
        ev.args_sha256 = a.args_sha256;
        ev.args_len = (int64_t)a.args_len;

        if (decide_begin(st, c, &a, run, &rule, err) < 0)
                goto deny;
        if (ab_tokens_count(st->tokens) >= AB_TOKENS_MAX_DEFAULT) {
                fail(err, AB_ERR_DENIED, "too-many-tokens", "%d tokens are live already",
                     AB_TOKENS_MAX_DEFAULT);
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
                if (ab_policy_profile_allows_secret(
                            run && run->profile ? ab_policy_find_profile(pol, run->profile) : NULL,
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
        tok->call = ++st->next_call_id;
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
        if (emit_or_deny(st, &ev, err) < 0) {
                ab_token_free(tok);
                tok = NULL;
                ev.type = AB_EV_CALL_DENY;
                goto deny;
        }
        r = ab_tokens_issue(st->tokens, tok, token);
        if (r < 0) {
                /* The begin record is out: close the pair. */
                struct ab_event end = ev;
                end.type = AB_EV_CALL_END;
                end.success = false;
                end.status = "error";
                (void)ab_audit_emit(st->audit, &end);
                ab_token_free(tok);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot issue a token: %s", strerror(-r));
        }
        run->calls++;
        run->active++;
        if (!cJSON_AddStringToObject(reply, "token", token) ||
            !cJSON_AddStringToObject(reply, "token_id", tok->id) ||
            !cJSON_AddNumberToObject(reply, "call", (double)tok->call) ||
            !cJSON_AddNumberToObject(reply, "expires_in_ms", (double)(ttl_s * 1000)) ||
            !(secrets = cJSON_AddArrayToObject(reply, "secrets")))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = cJSON_GetObjectItemCaseSensitive(reply, "token");
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
                    read_digest(ab_secrets_find(st->secrets, tok->grants[i].secret), nonce, &hex) == 0) {
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
        (void)ab_audit_emit(st->audit, &ev);
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
        case -EPIPE: return "token-revoked"; /* its run was closed (run-close, expiry, host death) */
        case -ETIME: return "token-expired";
        default: return "token-invalid";
        }
}

/* Write a token-deny record and fill err. Always returns -1. */
int
deny_token(struct ab_state *st, struct ab_conn *c, const struct ab_token *tok, const char *reason,
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
        (void)ab_audit_emit(st->audit, &ev);
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
        cJSON_ArrayForEach(n, names)
        {
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
own_open_run(struct ab_state *st, struct ab_conn *c, const cJSON *req, struct ab_reply_error *err)
{
        const char *id;
        struct ab_run *run;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &id) < 0) {
                bad_field(err, "run");
                return NULL;
        }
        run = ab_runs_find(st->runs, id);
        if (!run)
                fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        else if (!run->open)
                fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", id);
        else if (run->owner != c->peer.uid)
                fail(err, AB_ERR_DENIED, "wrong-run-owner", "run %s belongs to uid %u", id,
                     (unsigned)run->owner);
        else
                return run;
        return NULL;
}

/* call-reject: the host refused a tools/call itself (docs/protocol.md); audited and counted. */
int
h_call_reject(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        static const char *const reasons[] = { "unknown-tool", "invalid-params", "invalid-args",
                                               "args-nul",     "duplicate-id",   "too-many-calls",
                                               "queue-full",   "no-worker",      "missing-capability" };
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
        run = own_open_run(st, c, req, err);
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
        return emit_or_deny(st, &ev, err);
}

/* run-client: the MCP client that initialized a session of the run (clientInfo), with the
 * caller's login uid and session read from /proc. */
int
h_run_client(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
             struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *name = NULL, *version = NULL;
        struct ab_event ev;
        struct ab_run *run;

        if (ab_wire_get_string(req, "client", AB_NAME_MAX, &name) == -EINVAL)
                return bad_field(err, "client");
        if (ab_wire_get_string(req, "client_version", 64, &version) == -EINVAL)
                return bad_field(err, "client_version");
        run = own_open_run(st, c, req, err);
        if (!run)
                return -1;
        ev = event_for(AB_EV_RUN_CLIENT, &c->peer);
        ev.run = run->id;
        ev.client = name;
        ev.client_version = version;
        (void)ab_peer_login(&c->peer, &ev.login_uid, &ev.login_ses);
        return emit_or_deny(st, &ev, err);
}

int
h_call_end(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
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

        r = ab_tokens_lookup(st->tokens, token, ab_now_ms(), &tok);
        /* An expired token still in the table may end its call. */
        if (r < 0 && !(r == -ETIME && tok))
                return deny_token(st, c, NULL, token_reason(r), NULL, NULL, NULL, err, "call-end: %s",
                                  token_reason(r));
        if (tok->issuer.uid != c->peer.uid)
                return deny_token(st, c, tok, "wrong-peer", NULL, NULL, NULL, err,
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
        (void)ab_audit_emit(st->audit, &ev);
        run = ab_runs_find(st->runs, tok->run);
        if (run) {
                run->result_bytes += bytes;
                if (run->active)
                        run->active--;
        }
        ab_tokens_revoke(st->tokens, tok, AB_TOKEN_ENDED);
        return 0;
}

void
ab_handle_token_reaped(const struct ab_token *tok, void *userdata)
{
        struct ab_state *st = userdata;
        struct ab_event ev = event_for(AB_EV_CALL_END, &tok->issuer);
        struct ab_run *run = ab_runs_find(st->runs, tok->run);

        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.args_sha256 = tok->args_sha256;
        ev.status = "abandoned";
        ev.success = false;
        (void)ab_audit_emit(st->audit, &ev);
        if (run && run->active)
                run->active--;
}
