/* SPDX-License-Identifier: MIT */
/* Host configuration operations of agentbrokerd (docs/protocol.md): host-config (the
 * servers and modules a host may serve) and server-env (the environment of a server it
 * starts). */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "broker/handlers_shared.h"
#include "common/encode.h"
#include "common/secmem.h"
#include "common/wire.h"

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
                    !(args = cJSON_AddArrayToObject(o, "args")) ||
                    !(env = cJSON_AddObjectToObject(o, "env")) ||
                    !(tools = cJSON_AddArrayToObject(o, "tools")) ||
                    !(vars = cJSON_AddArrayToObject(o, "secrets")) ||
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
int
h_host_config(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
              struct ab_reply_error *err, struct ab_reply_after *after)
{
        const struct ab_policy *pol = st->policy;
        const cJSON *names = cJSON_GetObjectItemCaseSensitive(req, "tools"), *n;
        cJSON *tools, *modules;

        if (!cJSON_IsArray(names))
                return bad_field(err, "tools");
        if (!(tools = cJSON_AddObjectToObject(reply, "tools")) ||
            !(modules = cJSON_AddObjectToObject(reply, "modules")))
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        cJSON_ArrayForEach(n, names)
        {
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

                if (!peer_is_admin(st, &c->peer) && !module_has_allowed_tool(pol, pol->modules[i].name))
                        continue;
                cfg = pol->modules[i].config ? cJSON_Duplicate(pol->modules[i].config, true)
                                             : cJSON_CreateObject();
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
deny_env(struct ab_state *st, struct ab_conn *c, const char *run, const char *server, const char *secret,
         const char *reason, struct ab_reply_error *err, const char *message)
{
        struct ab_event ev = event_for(AB_EV_TOKEN_DENY, &c->peer);

        ev.success = false;
        ev.reason = reason;
        ev.secret = secret;
        ev.operation = "env";
        ev.tool = server;
        ev.run = run;
        (void)ab_audit_emit(st->audit, &ev);
        return fail(err, AB_ERR_DENIED, reason, "env: %s", message);
}

/* server-env: the value of one secret policy passes to an MCP server (servers.NAME.secrets) as
 * the environment variable var, for the host that starts it. Audited as secret-use with
 * operation "env" (tool: the server's name) before the value leaves. Refused on a worker's
 * pinned connection (flag in the table). */
int
h_server_env(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
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
        run = ab_runs_find(st->runs, id);
        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        if (run->owner != c->peer.uid)
                return fail(err, AB_ERR_NOT_PERMITTED, "wrong-run-owner", "run %s belongs to uid %u", id,
                            (unsigned)run->owner);
        if (!run->open)
                return fail(err, AB_ERR_DENIED, "run-closed", "run %s is closed", id);
        sv = ab_policy_find_server(st->policy, name);
        for (size_t i = 0; sv && i < sv->n_secrets; i++)
                if (strcmp(sv->secrets[i].var, var) == 0)
                        secret = sv->secrets[i].secret;
        if (!secret)
                return deny_env(st, c, run->id, name, NULL, "secret-not-scoped", err,
                                "policy passes no secret in this variable to this server");
        s = ab_secrets_find(st->secrets, secret);
        if (!s || !s->available || s->type != AB_SECRET_BYTES)
                return deny_env(st, c, run->id, name, secret, "secret-unavailable", err,
                                "the secret is not available (see the broker's log)");
        /* Logged before the client receives any secret material. */
        ev = event_for(AB_EV_SECRET_USE, &c->peer);
        ev.run = run->id;
        ev.tool = name;
        ev.secret = secret;
        ev.operation = "env";
        if (emit_or_deny(st, &ev, err) < 0)
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
