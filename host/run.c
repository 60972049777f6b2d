/* SPDX-License-Identifier: MIT */
/* The MCP tool host's run (host/run.h): connect to the broker and open the run, start the
 * module registry (with the run's sandbox and network), the gateway, the transport and the
 * MCP server, run the event loop, and tear down in order. docs/mcp.md. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/connect_hint.h"
#include "common/log.h"
#include "common/macros.h"
#include "host/brokerc/brokerc.h"
#include "host/gateway/gateway.h"
#include "host/mcp/failmode.h"
#include "host/mcp/server.h"
#include "host/mcp/stdio.h"
#include "host/net/transports.h"
#include "host/run.h"
#include "host/sandbox/sandbox.h"
#include "host/workers/workers.h"

#define FLUSH_AT_EXIT_MS 2000

struct host {
        const struct host_options *o;
        struct mcp_server *server; /* NULL until created */
        cJSON *boot_config;        /* host-config reply before the server exists */
        cJSON *refused;            /* {module: reason} refused at start, for module-report */
        sd_event *event;
        struct hb_broker *broker;
        char *run;
        bool opened_run;     /* the host opened the run (no --run): it closes it */
        cJSON *profile_json; /* the run's profile (--profile), or NULL */
        struct hs_sandbox *sandbox;
        struct hw_registry *registry;
        struct gateway *gateway;
        struct mcp_stdio *io; /* the stdio transport, or NULL */
        struct host_net *net; /* the network transport, or NULL */
        char cause[512];      /* why the broker or the run cannot be had: told to the client */
};

/* The registry's configuration callback: the module's configuration from policy. */
static const cJSON *
module_config(void *userdata, const char *module)
{
        struct host *h = userdata;
        const cJSON *c;

        if (h->server)
                return mcp_server_module_config(h->server, module);
        c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h->boot_config, "modules"),
                                             module);
        return cJSON_IsObject(c) ? c : NULL;
}

/* The registry's refusal callback: remember why (the first reason per module). */
static void
module_refused(void *userdata, const char *module, const char *reason)
{
        struct host *h = userdata;

        if (!h->refused)
                h->refused = cJSON_CreateObject();
        if (h->refused && !cJSON_GetObjectItemCaseSensitive(h->refused, module))
                cJSON_AddStringToObject(h->refused, module, reason);
}

/* Tell the broker which modules this host serves and which it refused at start, and why,
 * so that `agentbrokerctl status` shows a module whose init failed. Failures are logged. */
static void
report_modules(const struct host *h)
{
        const char *last = NULL;
        const cJSON *e;
        int r = 0;

        /* The tools are sorted by "module.tool": a module's tools are next to each other. */
        for (size_t i = 0; i < hw_tools_count(h->registry) && r >= 0; i++) {
                const char *m = hw_tool_at(h->registry, i)->module;

                if (!last || strcmp(last, m) != 0)
                        r = hb_module_report(h->broker, m, true, NULL);
                last = m;
        }
        cJSON_ArrayForEach(e, h->refused) if (r >= 0) r =
                hb_module_report(h->broker, e->string, false, e->valuestring);
        if (r < 0)
                log_warning("module-report at the broker failed: %s", strerror(-r));
}

static int
on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata AB_UNUSED)
{
        log_info("%s: stopping", strsignal((int)si->ssi_signo));
        sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

/* Tear the run's sandbox down before the workers are reaped: kill what is left in its cgroup,
 * and report what was done for the broker's run-teardown record (docs/audit.md). Returns
 * the report, or NULL on out of memory. */
static cJSON *
teardown_report(struct hs_sandbox *sandbox, struct hw_registry *registry)
{
        struct hs_teardown td = {};
        cJSON *o = cJSON_CreateObject();
        const char *cg = "none";

        hs_sandbox_stats(sandbox, &td);
        if (hs_sandbox_cgroup(sandbox)) {
                hs_sandbox_kill_all(sandbox, &td);
                cg = td.cgroup_removed ? "removed" : "kept";
        } else
                td.processes_killed = (unsigned)hw_registry_workers(registry, NULL, 0);
        if (!o || !cJSON_AddNumberToObject(o, "processes_killed", td.processes_killed) ||
            !cJSON_AddNumberToObject(o, "processes_left", td.processes_left) ||
            !cJSON_AddNumberToObject(o, "workspace_bytes", (double)td.workspace_bytes) ||
            !cJSON_AddStringToObject(o, "cgroup", cg) ||
            !cJSON_AddNumberToObject(o, "pids_max_hits", (double)td.pids_max_hits) ||
            !cJSON_AddNumberToObject(o, "oom_kills", (double)td.memory_oom_events)) {
                cJSON_Delete(o);
                return NULL;
        }
        log_info("run teardown: %u processes killed, %u left, %llu bytes of workspace, cgroup %s",
                 td.processes_killed, td.processes_left, (unsigned long long)td.workspace_bytes, cg);
        return o;
}

/* Connect to the broker and have the run: --run's, or a new one (with --profile's profile).
 * Returns 0, or -errno: with h->cause set when the client is to be told why (failmode),
 * logged otherwise. */
static int
open_run(struct host *h)
{
        const struct host_options *o = h->o;
        int r;

        r = hb_connect(o->broker_path, &h->broker);
        if (r < 0) {
                ab_describe_connect_error(o->broker_path, r, h->cause, sizeof h->cause);
                return r;
        }
        if (o->run_arg) {
                h->run = strdup(o->run_arg);
                if (!h->run) {
                        log_error("out of memory");
                        return -ENOMEM;
                }
        } else {
                char label[64];
                const char *reason = NULL;

                snprintf(label, sizeof label, "agentbroker-mcp[%d]", (int)getpid());
                r = hb_run_open_profile(h->broker, label, o->profile_arg, &h->run, &h->profile_json,
                                        &reason);
                if (r == -EPERM) {
                        mcp_fail_describe_run_open(reason, h->cause, sizeof h->cause);
                        return r;
                }
                if (r < 0) {
                        snprintf(h->cause, sizeof h->cause, "run-open at the broker at %s failed: %s",
                                 o->broker_path, strerror(-r));
                        return r;
                }
                h->opened_run = true;
        }
        log_info("run %s", h->run);
        /* For tests/bench/run-bench-sandbox.sh: provision is timed from here. */
        log_debug("run %s ready at %" PRIu64 " us (CLOCK_MONOTONIC)", h->run, ab_now_us());
        return 0;
}

/* The event loop, with the broker client attached and SIGTERM and SIGINT stopping it.
 * Returns 0 or -errno (logged). */
static int
start_loop(struct host *h)
{
        int r;

        r = sd_event_default(&h->event);
        if (r < 0) {
                log_error("sd_event_default: %s", strerror(-r));
                return r;
        }
        /* call-begin and call-end go out without blocking the loop. */
        r = hb_attach_event(h->broker, h->event);
        if (r < 0) {
                log_error("cannot attach the broker client to the event loop: %s", strerror(-r));
                return r;
        }
        if ((r = sd_event_add_signal(h->event, NULL, SIGTERM, on_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(h->event, NULL, SIGINT, on_signal, NULL)) < 0) {
                log_error("sd_event_add_signal: %s", strerror(-r));
                return r;
        }
        return 0;
}

/* The module registry with the run's sandbox (--profile) and the workers' network, the
 * modules of every directory loaded and reported to the broker. Returns 0 or -errno (logged). */
static int
start_registry(struct host *h)
{
        const struct host_options *o = h->o;
        const char *egress;
        size_t loaded = 0;
        int r;

        r = hw_registry_new(h->event, o->worker, o->broker_path, module_config, h, &h->registry);
        if (r < 0) {
                log_error("cannot set up the module registry (worker %s): %s", o->worker, strerror(-r));
                return r;
        }
        hw_registry_on_refusal(h->registry, module_refused, h);
        if (h->profile_json) {
                char why[512];

                r = hs_sandbox_new_json(h->profile_json, h->run, o->worker, o->broker_path, why, sizeof(why),
                                        &h->sandbox);
                if (r < 0) {
                        log_error("profile %s: %s", o->profile_arg, why);
                        return r;
                }
                hw_registry_set_sandbox(h->registry, h->sandbox);
                log_info("run %s: sandbox of profile %s%s%s", h->run, o->profile_arg,
                         hs_sandbox_cgroup(h->sandbox) ? ", cgroup " : "",
                         hs_sandbox_cgroup(h->sandbox) ? hs_sandbox_cgroup(h->sandbox) : "");
        }
        /* Each worker's network (docs/architecture.md, "Egress"); without the program,
         * modules have none (abm_call_connect/abm_call_http answer -ENOSYS). */
        egress = getenv("AGENTBROKER_EGRESS");
        if (!egress || !*egress)
                egress = PKGLIBEXECDIR "/agentbroker-egress";
        if (access(egress, X_OK) < 0)
                log_notice("no %s: modules get no network", egress);
        else if (hw_registry_set_egress(h->registry, egress) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_dirs; i++) {
                r = hw_registry_load_dir(h->registry, o->dirs[i]);
                if (r < 0)
                        log_error("cannot read the module directory %s: %s", o->dirs[i], strerror(-r));
                else
                        loaded += (size_t)r;
        }
        log_info("%zu modules loaded, %zu tools", loaded, hw_tools_count(h->registry));
        report_modules(h);
        return 0;
}

/* Serve MCP on the transport the options name (stdio unless --http or --tunnel) until the
 * event loop ends. Returns the exit status. */
static int
serve(struct host *h, const struct mcp_config *mcfg)
{
        int r;

        if (h->o->http_addr || h->o->tcfg.url) {
                r = host_net_start(h->event, h->broker, mcfg, h->o, &h->server, &h->net);
                if (r < 0)
                        return EXIT_FAILURE;
        } else {
                r = mcp_stdio_new(h->event, STDIN_FILENO, STDOUT_FILENO, &h->io);
                if (r < 0) {
                        log_error("cannot set up stdio: %s", strerror(-r));
                        return EXIT_FAILURE;
                }
                r = mcp_server_new(h->event, mcfg, &mcp_stdio_ops, h->io, &h->server);
                if (r < 0) {
                        log_error("cannot start the MCP server: %s", strerror(-r));
                        return EXIT_FAILURE;
                }
                r = mcp_stdio_start(h->io, h->server);
                if (r < 0) {
                        log_error("cannot start the %s transport: %s", "stdio", strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        r = sd_event_loop(h->event);
        if (r < 0)
                log_error("event loop: %s", strerror(-r));
        if (h->io)
                (void)mcp_stdio_flush(h->io, FLUSH_AT_EXIT_MS);
        return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Tear down in order: the server's calls end through the registry, which ends them at the
 * broker, which goes last; the run the host opened is closed with the sandbox's teardown. */
static void
teardown(struct host *h)
{
        cJSON *report = NULL;
        int r;

        mcp_stdio_detach(h->io);
        host_net_detach(h->net, &h->server);
        mcp_server_free(h->server);
        h->server = NULL;
        gw_free(h->gateway);
        if (h->opened_run)
                report = teardown_report(h->sandbox, h->registry);
        hw_registry_free(h->registry);
        hs_sandbox_free(h->sandbox);
        cJSON_Delete(h->profile_json);
        mcp_stdio_free(h->io);
        host_net_free(h->net, h->opened_run ? report : NULL);
        if (h->opened_run) {
                r = hb_run_close_report(h->broker, h->run, AB_TAKE_PTR(report));
                if (r < 0)
                        log_warning("run-close of %s failed: %s", h->run, strerror(-r));
        }
        hb_free(h->broker);
        cJSON_Delete(h->boot_config);
        cJSON_Delete(h->refused);
        free(h->run);
        sd_event_unref(h->event);
}

/* Run the host with o; see host/run.h. */
int
host_run(const struct host_options *o)
{
        struct host h = { .o = o };
        struct mcp_config mcfg;
        int r, status = EXIT_FAILURE;
        sigset_t mask;

        /* A client that goes away must not kill us mid-write: EPIPE is handled. */
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error("sigprocmask: %s", strerror(errno));
                return EXIT_FAILURE;
        }
        r = open_run(&h);
        if (r < 0 && h.cause[0]) {
                /* On stdio, the client is told why (every request gets the error) instead of
                 * seeing a disconnect before initialize; --http and --tunnel exit with the
                 * error logged. */
                if (o->http_addr || o->tcfg.url)
                        log_error("%s", h.cause);
                else
                        (void)mcp_fail_serve(STDIN_FILENO, STDOUT_FILENO, h.cause);
        }
        if (r < 0)
                goto out;

        /* The modules' configuration before any worker starts. */
        r = hb_host_config(h.broker, NULL, 0, &h.boot_config);
        if (r < 0)
                log_warning(
                        "host-config at the broker failed: %s; modules start with an empty configuration "
                        "and no MCP server of policy is served",
                        strerror(-r));
        if (start_loop(&h) < 0 || start_registry(&h) < 0)
                goto out;
        /* The MCP servers policy names (host/gateway/gateway.c), beside the modules. */
        r = gw_new(h.event, h.registry, h.broker, h.run, o->worker,
                   cJSON_GetObjectItemCaseSensitive(h.boot_config, "servers"), &h.gateway);
        if (r < 0)
                log_error("cannot set up the MCP servers of policy: %s", strerror(-r));

        mcfg = (struct mcp_config){
                .registry = h.registry,
                .broker = h.broker,
                .run = h.run,
                .server_name = "agentbroker-mcp",
                .page_size = o->page_size,
                .bare_modules = o->n_bare ? o->bare : NULL,
        };
        status = serve(&h, &mcfg);
out:
        teardown(&h);
        return status;
}
