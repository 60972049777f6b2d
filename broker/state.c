/* SPDX-License-Identifier: MIT */
/* agentbrokerd's state (see state.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker/state.h"
#include "common/log.h"

int
ab_state_init(struct ab_state *s, const char *policy_path)
{
        int r;

        s->euid = geteuid();
        s->started_ms = ab_now_ms();
        s->policy_path = strdup(policy_path);
        if (!s->policy_path)
                return -ENOMEM;
        if ((r = ab_tokens_new(AB_TOKENS_MAX_DEFAULT, &s->tokens)) < 0 || (r = ab_runs_new(&s->runs)) < 0 ||
            (r = ab_module_reports_new(&s->module_reports)) < 0 ||
            (r = ab_http_tokens_new(&s->http_tokens)) < 0)
                return r;
        return 0;
}

void
ab_state_done(struct ab_state *s)
{
        /* The exit watches of runs still open (the loop is gone). */
        for (struct ab_run *run = s->runs ? ab_runs_first(s->runs) : NULL; run; run = run->next) {
                if (s->watches)
                        ab_pidwatch_remove(s->watches, run->host_watch);
                run->host_watch = NULL;
        }
        if (s->watches)
                ab_pidwatch_reap(s->watches);
        ab_tokens_free(s->tokens);
        ab_runs_free(s->runs);
        ab_module_reports_free(s->module_reports);
        ab_http_tokens_free(s->http_tokens);
        ab_secrets_free(s->secrets);
        ab_policy_free(s->policy);
        ab_audit_free(s->audit);
        free(s->policy_path);
        *s = (struct ab_state){ 0 };
}

int
ab_state_load_policy(struct ab_state *s, char **ret_err)
{
        struct ab_policy *pol = NULL;
        struct ab_secret_store *store = NULL;
        struct ab_event ev = ab_event_init(AB_EV_POLICY_LOAD, getuid(), 0);
        char *errors = NULL;
        bool reload = s->policy != NULL;
        int r;

        ev.detail = s->policy_path;
        if (reload)
                sd_notifyf(false, "RELOADING=1\nSTATUS=Reloading policy\nMONOTONIC_USEC=%llu",
                           (unsigned long long)ab_now_ms() * 1000ULL);
        r = ab_policy_load(s->policy_path, &pol, &errors);
        if (r < 0) {
                log_error("policy %s not loaded%s:\n%s", s->policy_path,
                          reload ? " (keeping the old one)" : "", errors ? errors : strerror(-r));
                ev.success = false;
                ev.reason = r == -EINVAL ? "policy-invalid" : "policy-unreadable";
                if (s->audit)
                        (void)ab_audit_emit(s->audit, &ev);
                if (reload)
                        sd_notify(false, "READY=1\nSTATUS=Serving (policy reload failed, old policy kept)");
                if (ret_err)
                        *ret_err = errors ? errors : strdup(strerror(-r));
                else
                        free(errors);
                return r;
        }
        r = ab_secrets_reload(pol, geteuid(), s->secrets, &store);
        if (r < 0) {
                ab_policy_free(pol);
                if (ret_err)
                        *ret_err = strdup("cannot load secrets: out of memory");
                return r;
        }
        if (pol->jwt.jwks_file) {
                r = ab_jwks_write(store, pol->jwt.jwks_file);
                if (r < 0)
                        log_warning("cannot write the JWKS file %s: %s", pol->jwt.jwks_file, strerror(-r));
        }
        ab_secrets_free(s->secrets);
        ab_policy_free(s->policy);
        s->secrets = store;
        s->policy = pol;
        s->policy_loaded_at = (int64_t)time(NULL);
        if (s->audit)
                ab_audit_set_failure_deny(s->audit, pol->audit.failure_deny);
        ev.success = true;
        if (s->audit)
                (void)ab_audit_emit(s->audit, &ev);
        log_info("policy %s loaded (%zu files, %zu secrets, %zu tool rules)", s->policy_path, pol->n_files,
                 pol->n_secrets, pol->n_tools);
        if (reload)
                sd_notify(false, "READY=1\nSTATUS=Serving (policy reloaded)");
        return 0;
}
