/* SPDX-License-Identifier: MIT */
/* Run operations of agentbrokerd (docs/protocol.md): run-open, run-close, run-list.
 * Every decision writes its audit record before the reply leaves. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/handlers_shared.h"
#include "broker/teardown.h"
#include "common/log.h"
#include "common/wire.h"

int
h_run_open(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
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
                profile = ab_policy_find_profile(st->policy, profile_name);
                if (!profile)
                        return fail(err, AB_ERR_DENIED, "unknown-profile", "the policy has no profile '%s'",
                                    profile_name);
                pj = ab_policy_profile_to_json(profile);
                snprintf(detail, sizeof(detail), "%s%sprofile=%s", label ? label : "", label ? "," : "",
                         profile_name);
                if (!pj)
                        return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        r = ab_runs_open(st->runs, c->peer.uid, label, st->policy->runs.max_open, &run);
        if (r == -EUSERS)
                return fail(err, AB_ERR_DENIED, "too-many-runs", "%u runs are open already (runs.max_open)",
                            st->policy->runs.max_open);
        if (r < 0) {
                cJSON_Delete(pj);
                return fail(err, AB_ERR_INTERNAL, NULL, "cannot open a run: %s", strerror(-r));
        }
        if (profile_name && ab_run_set_profile(run, profile_name) < 0) {
                cJSON_Delete(pj);
                ab_runs_close(st->runs, run, ab_now_ms());
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        /* A host's own run ends with the host (broker/teardown.h). */
        bind = cJSON_GetObjectItemCaseSensitive(req, "bind_process");
        if (bind && !cJSON_IsBool(bind)) {
                cJSON_Delete(pj);
                ab_runs_close(st->runs, run, ab_now_ms());
                return bad_field(err, "bind_process");
        }
        if (cJSON_IsTrue(bind) && (r = ab_teardown_watch(st, run, &c->peer)) < 0)
                log_warning("run %s: cannot watch process %d for its end: %s", run->id, (int)c->peer.pid,
                            strerror(-r));
        ev = event_for(AB_EV_RUN_OPEN, &c->peer);
        ev.run = run->id;
        ev.detail = profile_name ? detail : label;
        (void)ab_peer_login(&c->peer, &ev.login_uid, &ev.login_ses); /* left out when unreadable */
        if (emit_or_deny(st, &ev, err) < 0) {
                cJSON_Delete(pj);
                ab_teardown_unwatch(st, run);
                ab_runs_close(st->runs, run, ab_now_ms());
                return -1;
        }
        if (!cJSON_AddStringToObject(reply, "run", run->id) ||
            (pj && !cJSON_AddItemToObject(reply, "profile", pj))) {
                cJSON_Delete(pj);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        snprintf(c->own_run, sizeof(c->own_run), "%s", run->id);
        return 0;
}

/* Close run and write its summary record. */
void
ab_handle_close_run(struct ab_state *st, struct ab_run *run, const struct ab_peer *by, const char *why)
{
        uint64_t now = ab_now_ms();
        struct ab_event ev = event_for(AB_EV_RUN_CLOSE, by);
        char id[sizeof(run->id)];

        ab_tokens_revoke_run(st->tokens, run->id);
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
        ab_teardown_unwatch(st, run);
        ab_runs_close(st->runs, run, now);
        (void)ab_audit_emit(st->audit, &ev);
}

int
h_run_close(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
            struct ab_reply_error *err, struct ab_reply_after *after)
{
        const char *id;
        const cJSON *report;
        struct ab_run *run;
        size_t revoked;

        if (ab_wire_get_string(req, "run", AB_RUN_ID_LEN, &id) < 0)
                return bad_field(err, "run");
        run = ab_runs_find(st->runs, id);
        if (!run)
                return fail(err, AB_ERR_DENIED, "run-unknown", "no run %s", id);
        if (run->owner != c->peer.uid && !peer_is_admin(st, &c->peer))
                return fail(err, AB_ERR_NOT_PERMITTED, "wrong-run-owner", "run %s belongs to uid %u", id,
                            (unsigned)run->owner);
        report = cJSON_GetObjectItemCaseSensitive(req, "teardown");
        if (report && !cJSON_IsObject(report))
                return bad_field(err, "teardown");
        /* The host's report after someone else closed its run (broker/teardown.h). */
        if (!run->open && report && run->host_pidfd >= 0 && run->owner == c->peer.uid) {
                ab_teardown_record(st, run, &c->peer,
                                   run->teardown_reason ? run->teardown_reason : "run-close",
                                   run->teardown_revoked, report);
                close(run->host_pidfd);
                run->host_pidfd = -1;
                return 0;
        }
        if (!run->open)
                return fail(err, AB_ERR_DENIED, "run-closed", "run %s is already closed", id);
        revoked = ab_tokens_revoke_run(st->tokens, run->id);
        if (report)
                ab_teardown_record(st, run, &c->peer, "host-exit", revoked, report);
        else
                ab_teardown_ask_host(st, run, &c->peer, "run-close", revoked);
        /* The reply before the close: closing may free run (see ab_handle_close_run). */
        if (!cJSON_AddNumberToObject(reply, "calls", (double)run->calls) ||
            !cJSON_AddNumberToObject(reply, "denied", (double)run->denied) ||
            !cJSON_AddNumberToObject(reply, "rejected", (double)run->rejected) ||
            !cJSON_AddNumberToObject(reply, "result_bytes", (double)run->result_bytes) ||
            !cJSON_AddNumberToObject(reply, "duration_ms", (double)(ab_now_ms() - run->opened_ms))) {
                ab_handle_close_run(st, run, &c->peer, NULL);
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        }
        ab_handle_close_run(st, run, &c->peer, NULL);
        return 0;
}

int
h_run_list(struct ab_state *st, struct ab_conn *c, const cJSON *req, cJSON *reply,
           struct ab_reply_error *err, struct ab_reply_after *after)
{
        bool admin = peer_is_admin(st, &c->peer);
        cJSON *arr = cJSON_AddArrayToObject(reply, "runs");

        if (!arr)
                return fail(err, AB_ERR_INTERNAL, NULL, "out of memory");
        for (struct ab_run *run = ab_runs_first(st->runs); run; run = run->next) {
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
