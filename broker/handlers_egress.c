/* SPDX-License-Identifier: MIT */
/* egress-check and egress-done (docs/protocol.md; design in docs/architecture.md, "Egress").
 *
 * agentbroker-egress, a process the host starts next to each module worker (never loading
 * module code, outside any sandbox of the worker), receives the module's request with the
 * call's token, resolves the host name itself and asks here. The broker checks the token
 * (known, live, for that tool), that the presenter may act for the token's worker (a child
 * of the process that began the call, with its uid, on a connection that is not a worker's),
 * that the bound worker still runs, then the tool rule's egress entries and every resolved
 * address. It answers with the one address to connect to (no second resolution: DNS
 * rebinding cannot move the connection) and, for an entry that injects a secret, the header
 * or query value holding it (secret-use sop=inject). Every decision is an egress-connect
 * record; egress-done writes egress-close (bytes of a TCP connection) or egress-http. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/rand.h>

#include "broker/handlers_egress.h"
#include "broker/secrets.h"
#include "common/encode.h"
#include "common/secmem.h"
#include "common/wire.h"
#include "policy/policy.h"

#define EGRESS_ADDRS_MAX 16                          /* resolved addresses sent with one egress-check */
#define EGRESS_GRANTS_MAX 1024                       /* grants awaiting egress-done */
#define EGRESS_GRANT_MAX_AGE_MS (6ull * 3600 * 1000) /* a grant never closed is dropped after this */
#define EGRESS_HOST_MAX 253
#define EGRESS_PATH_MAX 2048
#define EGRESS_VALUE_MAX (64 * 1024 + 256) /* an injected value: the secret (64 KiB) and its format */

struct grant {
        bool used;
        char id[33];
        uint64_t created_ms;
        pid_t pid; /* the agentbroker-egress process that got it */
        uint64_t starttime;
        char run[33];
        uint64_t call;
        char *tool, *host, *path, *secret;
        enum ab_egress_scheme scheme;
        unsigned port;
        char address[INET6_ADDRSTRLEN];
        char method[16];
};

/* The broker is single-threaded: one table for the process. */
static struct grant grants[EGRESS_GRANTS_MAX];

static void
grant_clear(struct grant *g)
{
        free(g->tool);
        free(g->host);
        free(g->path);
        free(g->secret);
        *g = (struct grant){ 0 };
}

/* A free slot (dropping grants older than EGRESS_GRANT_MAX_AGE_MS), or NULL when all are taken. */
static struct grant *
grant_slot(uint64_t now)
{
        struct grant *free_slot = NULL;

        for (size_t i = 0; i < EGRESS_GRANTS_MAX; i++) {
                if (grants[i].used && now - grants[i].created_ms > EGRESS_GRANT_MAX_AGE_MS)
                        grant_clear(&grants[i]);
                if (!grants[i].used && !free_slot)
                        free_slot = &grants[i];
        }
        return free_slot;
}

struct egress_req {
        const char *token, *tool, *host, *method, *path;
        enum ab_egress_scheme scheme;
        unsigned port;
        const cJSON *addrs;
};

static int
parse_check(const cJSON *req, struct egress_req *a, struct ab_reply_error *err)
{
        const char *scheme;
        uint64_t port;
        int n;

        if (ab_wire_get_string(req, "token", AB_TOKEN_LEN + 1, &a->token) < 0)
                return bad_field(err, "token");
        if (ab_wire_get_string(req, "tool", AB_NAME_MAX, &a->tool) < 0)
                return bad_field(err, "tool");
        if (ab_wire_get_string(req, "scheme", 8, &scheme) < 0 ||
            ab_egress_scheme_from_string(scheme, &a->scheme) < 0)
                return bad_field(err, "scheme");
        if (ab_wire_get_string(req, "host", EGRESS_HOST_MAX, &a->host) < 0)
                return bad_field(err, "host");
        if (ab_wire_get_u64(req, "port", 65535, &port) < 0 || port == 0)
                return bad_field(err, "port");
        a->port = (unsigned)port;
        a->addrs = cJSON_GetObjectItemCaseSensitive(req, "addresses");
        n = cJSON_GetArraySize(a->addrs);
        if (!cJSON_IsArray(a->addrs) || n < 1 || n > EGRESS_ADDRS_MAX)
                return bad_field(err, "addresses");
        if (a->scheme != AB_EGRESS_TCP) {
                if (ab_wire_get_string(req, "method", 15, &a->method) < 0)
                        return bad_field(err, "method");
                if (ab_wire_get_string(req, "path", EGRESS_PATH_MAX, &a->path) < 0)
                        return bad_field(err, "path");
        }
        return 0;
}

/* Whether c's peer may present tok for egress: the process that began the call, or a child
 * of it with its uid (the host starts agentbroker-egress), still the same process. */
static bool
presenter_may_delegate(const struct ab_conn *c, const struct ab_token *tok)
{
        struct ab_peer self = { .pidfd = -1 };
        pid_t ppid = 0;
        bool ok;

        if (c->peer.uid != tok->issuer.uid)
                return false;
        if (ab_peer_same_process(&c->peer, &tok->issuer))
                return true;
        if (ab_peer_from_pid(c->peer.pid, &self, &ppid) < 0)
                return false;
        ok = ppid == tok->issuer.pid && ab_peer_same_process(&self, &c->peer) &&
             ab_peer_check_alive(&tok->issuer) == 0;
        ab_peer_clear(&self);
        return ok;
}

/* The egress-connect record of a decision. */
static int
emit_decision(struct ab_state *st, struct ab_conn *c, const struct ab_token *tok, const struct egress_req *a,
              const char *address, const char *reason, struct ab_reply_error *err)
{
        struct ab_event ev = event_for(AB_EV_EGRESS_CONNECT, &c->peer);

        ev.success = reason == NULL;
        ev.reason = reason;
        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.token_id = tok->id;
        ev.scheme = ab_egress_scheme_to_string(a->scheme);
        ev.host = a->host;
        ev.port = a->port;
        ev.address = address;
        ev.method = a->method;
        ev.path = a->path;
        ev.http_status = ev.bytes_sent = ev.bytes_received = -1;
        return emit_or_deny(st, &ev, err);
}

/* Check the secret an entry injects and write its secret-use record. Returns 0 or -1. */
static int
inject_prologue(struct ab_state *st, struct ab_conn *c, struct ab_token *tok, const char *name,
                const struct ab_secret **ret, struct ab_reply_error *err)
{
        const struct ab_secret *s;
        struct ab_event ev;

        if (!(ab_token_grant_ops(tok, name) & AB_OP_INJECT))
                return deny_token(st, c, tok, "op-not-allowed", name, "inject", NULL, err,
                                  "inject: tool %s may not inject secret %s", tok->tool, name);
        if (tok->max_uses && tok->uses >= tok->max_uses)
                return deny_token(st, c, tok, "token-exhausted", name, "inject", NULL, err,
                                  "inject: the token's %u uses are spent", tok->max_uses);
        s = ab_secrets_find(st->secrets, name);
        if (!s || !s->available || s->type != AB_SECRET_BYTES)
                return deny_token(st, c, tok, "secret-unavailable", name, "inject", NULL, err,
                                  "inject: secret %s is not available (see the broker's log)", name);
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = tok->run;
        ev.call = (int64_t)tok->call;
        ev.tool = tok->tool;
        ev.secret = name;
        ev.operation = "inject";
        ev.token_id = tok->id;
        if (emit_or_deny(st, &ev, err) < 0)
                return -1;
        tok->uses++;
        *ret = s;
        return 0;
}

/* Put the injected value (the entry's format with the secret in place of "{secret}", in
 * base64) into reply, marked for wiping. Returns 0 or -1. */
static int
add_inject(const struct ab_policy_egress *e, const struct ab_secret *s, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *at = strstr(e->inject_value, "{secret}");
        size_t pre = (size_t)(at - e->inject_value), post = strlen(at + 8), len = pre + s->value->len + post;
        char *b64 = NULL;
        unsigned char *v;
        cJSON *inj, *item;

        for (size_t i = 0; i < s->value->len; i++)
                if (s->value->data[i] < 0x20 || s->value->data[i] == 0x7f)
                        return fail(
                                err, AB_ERR_DENIED, "secret-unsuitable",
                                "secret %s holds control characters: it cannot go into a header or query",
                                s->name);
        if (len > EGRESS_VALUE_MAX)
                return fail(err, AB_ERR_DENIED, "secret-unsuitable", "secret %s is too long to inject",
                            s->name);
        v = malloc(len);
        if (!v)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        memcpy(v, e->inject_value, pre);
        memcpy(v + pre, s->value->data, s->value->len);
        memcpy(v + pre + s->value->len, at + 8, post);
        if (ab_base64_encode(v, len, &b64) < 0)
                b64 = NULL;
        ab_freezero(v, len);
        if (!b64)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        inj = cJSON_AddObjectToObject(reply, "inject");
        item = inj ? cJSON_AddStringToObject(inj, "value", b64) : NULL;
        ab_strfreezero(b64);
        if (!item || !cJSON_AddStringToObject(inj, "secret", s->name) ||
            !cJSON_AddNumberToObject(inj, "secret_offset", (double)pre) ||
            !cJSON_AddNumberToObject(inj, "secret_len", (double)s->value->len) ||
            !cJSON_AddStringToObject(inj, e->inject_header ? "header" : "query",
                                     e->inject_header ? e->inject_header : e->inject_query))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        after->wipe = item;
        return 0;
}

int
ab_h_egress_check(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                  struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy_egress *e = NULL;
        const struct ab_policy_tool *rule;
        const struct ab_secret *s = NULL;
        struct egress_req a = { 0 };
        struct ab_token *tok = NULL;
        const char *reason = NULL, *chosen = NULL, *first = NULL;
        const cJSON *item;
        struct grant *g;
        uint64_t now = ab_now_ms();
        unsigned char rnd[16];
        int r;

        if (parse_check(req, &a, err) < 0)
                return -1;
        r = ab_tokens_lookup(st->tokens, a.token, now, &tok);
        if (r < 0)
                return deny_token(st, c, r == -ETIME ? tok : NULL, token_reason(r), NULL, "egress", a.tool,
                                  err, "egress-check: %s", token_reason(r));
        if (!presenter_may_delegate(c, tok))
                return deny_token(
                        st, c, tok, "wrong-peer", NULL, "egress", NULL, err,
                        "egress-check: only the process that began the call or its child may present the token");
        if (ab_peer_check_alive(&tok->presenter) < 0)
                return deny_token(st, c, tok, "wrong-peer", NULL, "egress", NULL, err,
                                  "egress-check: the worker the token is bound to has exited");
        if (strcmp(a.tool, tok->tool) != 0)
                return deny_token(st, c, tok, "wrong-tool", NULL, "egress", NULL, err,
                                  "egress-check: the token was issued for another tool");

        rule = ab_policy_find_tool(st->policy, tok->tool);
        if (!rule || !rule->allow)
                reason = "egress-not-allowed";
        else
                (void)ab_policy_egress_find(rule, a.scheme, a.host, a.port, a.method, a.path, &e, &reason);
        if (!reason) {
                reason = "address-invalid";
                cJSON_ArrayForEach(item, a.addrs)
                {
                        unsigned char addr[16];
                        const char *s_addr = cJSON_GetStringValue(item), *why = NULL;
                        int fam;

                        if (!s_addr || strlen(s_addr) >= INET6_ADDRSTRLEN)
                                return bad_field(err, "addresses");
                        fam = strchr(s_addr, ':') ? AF_INET6 : AF_INET;
                        if (inet_pton(fam, s_addr, addr) != 1)
                                return bad_field(err, "addresses");
                        if (!first)
                                first = s_addr;
                        if (ab_policy_egress_address_ok(e, fam, addr, &why) == 0) {
                                chosen = s_addr;
                                reason = NULL;
                                break;
                        }
                        if (strcmp(reason, "address-invalid") == 0 || strcmp(why, "address-private") == 0)
                                reason = why;
                }
        }
        if (reason) {
                if (emit_decision(st, c, tok, &a, first, reason, err) < 0)
                        return -1;
                return fail(err, AB_ERR_DENIED, reason, "%s://%s:%u is not allowed for tool %s: %s",
                            ab_egress_scheme_to_string(a.scheme), a.host, a.port, tok->tool, reason);
        }

        g = grant_slot(now);
        if (!g)
                return fail(err, AB_ERR_DENIED, "egress-busy", "%d egress grants are open",
                            EGRESS_GRANTS_MAX);
        if (e->inject_secret && inject_prologue(st, c, tok, e->inject_secret, &s, err) < 0)
                return -1;
        if (emit_decision(st, c, tok, &a, chosen, NULL, err) < 0)
                return -1;
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                return fail(err, AB_ERR_INTERNAL, NULL, "no randomness");
        *g = (struct grant){ .used = true,
                             .created_ms = now,
                             .pid = c->peer.pid,
                             .starttime = c->peer.starttime,
                             .call = tok->call,
                             .scheme = a.scheme,
                             .port = a.port };
        {
                char *hex = NULL;

                if (ab_hex_encode(rnd, sizeof(rnd), &hex) < 0) {
                        grant_clear(g);
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
                }
                snprintf(g->id, sizeof(g->id), "%s", hex);
                free(hex);
        }
        snprintf(g->run, sizeof(g->run), "%s", tok->run);
        snprintf(g->address, sizeof(g->address), "%s", chosen);
        snprintf(g->method, sizeof(g->method), "%s", a.method ? a.method : "");
        g->tool = strdup(tok->tool);
        g->host = strdup(a.host);
        g->path = a.path ? strdup(a.path) : NULL;
        g->secret = s ? strdup(s->name) : NULL;
        if (!g->tool || !g->host || (a.path && !g->path) || (s && !g->secret)) {
                grant_clear(g);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        if (!cJSON_AddStringToObject(reply, "grant", g->id) ||
            !cJSON_AddStringToObject(reply, "address", chosen) ||
            (a.scheme != AB_EGRESS_TCP &&
             (!cJSON_AddNumberToObject(reply, "max_response_bytes", (double)e->max_response_bytes) ||
              !cJSON_AddNumberToObject(reply, "timeout_ms", e->timeout_ms)))) {
                grant_clear(g);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        if (s && add_inject(e, s, reply, err, after) < 0) {
                grant_clear(g);
                return -1;
        }
        return 0;
}

int
ab_h_egress_done(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
                 struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *id, *reason = NULL;
        uint64_t sent = 0, received = 0, dur = 0, status = 0;
        struct grant *g = NULL;
        struct ab_event ev;

        if (ab_wire_get_string(req, "grant", 32, &id) < 0)
                return bad_field(err, "grant");
        if (ab_wire_get_u64(req, "sent", (uint64_t)1 << 52, &sent) < 0)
                return bad_field(err, "sent");
        if (ab_wire_get_u64(req, "received", (uint64_t)1 << 52, &received) < 0)
                return bad_field(err, "received");
        if (ab_wire_get_u64(req, "duration_ms", (uint64_t)1 << 52, &dur) < 0)
                return bad_field(err, "duration_ms");
        if (cJSON_GetObjectItemCaseSensitive(req, "http_status") &&
            ab_wire_get_u64(req, "http_status", 999, &status) < 0)
                return bad_field(err, "http_status");
        if (cJSON_GetObjectItemCaseSensitive(req, "reason") &&
            ab_wire_get_string(req, "reason", 64, &reason) < 0)
                return bad_field(err, "reason");
        for (size_t i = 0; i < EGRESS_GRANTS_MAX && !g; i++)
                if (grants[i].used && strcmp(grants[i].id, id) == 0)
                        g = &grants[i];
        if (!g || g->pid != c->peer.pid || g->starttime != c->peer.starttime)
                return fail(err, AB_ERR_DENIED, "grant-unknown", "no such egress grant of this process");

        ev = event_for(g->scheme == AB_EGRESS_TCP ? AB_EV_EGRESS_CLOSE : AB_EV_EGRESS_HTTP, &c->peer);
        ev.success = reason == NULL;
        ev.reason = reason;
        ev.run = g->run;
        ev.call = (int64_t)g->call;
        ev.tool = g->tool;
        ev.scheme = ab_egress_scheme_to_string(g->scheme);
        ev.host = g->host;
        ev.port = g->port;
        ev.address = g->address;
        ev.method = g->method[0] ? g->method : NULL;
        ev.path = g->path;
        ev.secret = g->secret;
        ev.operation = g->secret ? "inject" : NULL;
        ev.http_status = status ? (int64_t)status : -1;
        ev.bytes_sent = (int64_t)sent;
        ev.bytes_received = (int64_t)received;
        ev.duration_ms = (int64_t)dur;
        (void)ab_audit_emit(st->audit, &ev);
        grant_clear(g);
        return 0;
}
