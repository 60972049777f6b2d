/* agentbroker-mcp: the MCP tool host. Serves the tools of the module workers on stdio, with
 * every call begun and ended at agentbrokerd (policy, tokens, audit). docs/mcp.md. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/client.h"
#include "common/connect_hint.h"
#include "common/log.h"
#include "common/secmem.h"
#include "common/macros.h"
#include "host/brokerc.h"
#include "host/failmode.h"
#include "host/http.h"
#include "host/mcp.h"
#include "host/sandbox.h"
#include "host/stdio.h"
#include "host/tunnel.h"
#include "host/gateway.h"
#include "host/workers.h"

#define MODULES_MAX_DIRS 32
#define BARE_MAX 8
#define FLUSH_AT_EXIT_MS 2000

static const char *const default_module_dirs[] = {
        PKGLIBDIR "/modules",
        "/usr/local/lib/agentbroker/modules",
};

struct host {
        struct mcp_server *server;     /* NULL until created */
        cJSON *boot_config;            /* host-config reply before the server exists */
        cJSON *refused;                /* {module: reason} refused at start, for module-report */
};

enum {
        OPT_TUNNEL_PING = 0x100,
        OPT_TUNNEL_BACKOFF,
        OPT_TUNNEL_HEALTHY,
        OPT_TUNNEL_CONNECT_TIMEOUT,
        OPT_TUNNEL_TLS_TIMEOUT,
        OPT_TUNNEL_UPGRADE_TIMEOUT,
        OPT_TUNNEL_FIRST_MESSAGE_TIMEOUT,
        OPT_PROFILE,
};

/* Parse a duration option of 100..3600000 ms into *ret_ms. Returns 0, or -EINVAL (said on stderr). */
static int
parse_ms(const char *arg, const char *option, unsigned *ret_ms)
{
        char *end;
        unsigned long v = strtoul(arg, &end, 10);

        if (!*arg || *end || v < 100 || v > 3600000) {
                fprintf(stderr, "agentbroker-mcp: %s must be 100..3600000\n", option);
                return -EINVAL;
        }
        *ret_ms = (unsigned)v;
        return 0;
}

static void
usage(FILE *f)
{
        fprintf(f,
                "Usage: agentbroker-mcp [OPTIONS]\n"
                "Serve the tools of agentbroker modules over MCP on stdin/stdout; every call is\n"
                "checked, tokened and audited by agentbrokerd.\n"
                "\n"
                "  --broker PATH     the broker's socket (default " AB_DEFAULT_SOCKET ")\n"
                "  --modules DIR     load the modules (*.so) in DIR; repeatable (default\n"
                "                    " PKGLIBDIR "/modules and /usr/local/lib/agentbroker/modules)\n"
                "  --run ID          make every call part of run ID (default: open a run at start,\n"
                "                    labelled agentbroker-mcp[PID], and close it at exit)\n"
                "  --profile NAME    open the run with the policy's profile NAME: every worker runs\n"
                "                    in its sandbox (mounts, workspace, limits, no network;\n"
                "                    docs/policy.md \"profiles\", docs/architecture.md)\n"
                "  --worker PATH     the worker program (default $AGENTBROKER_WORKER, else\n"
                "                    " PKGLIBEXECDIR "/agentbroker-worker)\n"
                "  --http ADDR       serve MCP over Streamable HTTP instead of stdio, on ADDR:\n"
                "                    127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/PATH;\n"
                "                    every request needs a bearer token from\n"
                "                    `agentbrokerctl http-token` (docs/http.md)\n"
                "  --insecure-no-auth  with --http on a loopback address: no token (for the\n"
                "                    conformance suite; warned about and audited)\n"
                "  --bare-names MODULE  list and call MODULE's tools without the \"MODULE.\"\n"
                "                    prefix (for test fixtures called by fixed names)\n"
                "  --tunnel URL      serve MCP on an outbound WebSocket+TLS connection to a control\n"
                "                    plane (wss://HOST[:PORT]/PATH) instead of stdio; docs/tunnel.md\n"
                "  --tunnel-ca FILE  CA certificates (PEM) the control plane must chain to\n"
                "  --tunnel-pin HEX  also require this SHA-256 of its certificate (DER)\n"
                "  --tunnel-session ID   the session id (default: from the checkpoint, else new)\n"
                "  --tunnel-checkpoint FILE  results of this run's calls, for re-sent calls after a\n"
                "                    restart (default $STATE_DIRECTORY/tunnel-<run>.json when set)\n"
                "  --tunnel-ping-ms N    WebSocket ping interval (default 15000)\n"
                "  --tunnel-backoff-ms MIN,MAX  reconnect backoff (default 1000,30000)\n"
                "  --tunnel-healthy-ms N  the backoff starts over after a connection was up this\n"
                "                    long (default 30000)\n"
                "  --tunnel-connect-timeout-ms N  deadline of a dial's TCP connect (default 10000)\n"
                "  --tunnel-tls-timeout-ms N      ... of its TLS handshake (default 10000)\n"
                "  --tunnel-upgrade-timeout-ms N  ... of the answer to its upgrade request (default 10000)\n"
                "  --tunnel-first-message-timeout-ms N  ... of the control plane's first MCP message\n"
                "                    after the upgrade (default 10000)\n"
                "  --tunnel-insecure-loopback   allow ws:// (no TLS) to a loopback address\n"
                "  --debug           log debug messages (to stderr)\n"
                "  --help            show this help\n"
                "  --version         show the version\n"
                "\n"
                "stdout carries only MCP messages; logs go to stderr. The host exits at the end of\n"
                "its input, once the calls in flight have finished.\n");
}

/* The registry's configuration callback: the module's configuration from policy. */
static const cJSON *
module_config(void *userdata, const char *module)
{
        struct host *h = userdata;
        const cJSON *c;

        if (h->server)
                return mcp_server_module_config(h->server, module);
        c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h->boot_config, "modules"), module);
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
report_modules(struct hb_broker *broker, const struct hw_registry *registry, const struct host *h)
{
        const char *last = NULL;
        const cJSON *e;
        int r = 0;

        /* The tools are sorted by "module.tool": a module's tools are next to each other. */
        for (size_t i = 0; i < hw_tools_count(registry) && r >= 0; i++) {
                const char *m = hw_tool_at(registry, i)->module;

                if (!last || strcmp(last, m) != 0)
                        r = hb_module_report(broker, m, true, NULL);
                last = m;
        }
        cJSON_ArrayForEach(e, h->refused)
                if (r >= 0)
                        r = hb_module_report(broker, e->string, false, e->valuestring);
        if (r < 0)
                log_warning("module-report at the broker failed: %s", strerror(-r));
}

#ifdef AB_MCP_STDIO_ONLY
/* agentbroker-mcp is built with AB_MCP_STDIO_ONLY: it serves stdio and links neither
 * libmicrohttpd nor libwebsockets (with GnuTLS, p11-kit, libssl and what else they load, about
 * 4.5 MiB of RSS that the stdio transport never uses). The parts under #ifndef AB_MCP_STDIO_ONLY
 * are agentbroker-mcp-net's alone.
 *
 * Run agentbroker-mcp-net, the same program with the Streamable HTTP and tunnel transports,
 * with our command line: the one named by
 * $AGENTBROKER_MCP_NET, else the one beside this program (a build tree), else the installed
 * one. Returns only on failure (EXIT_FAILURE, logged). */
static int
exec_net(char **argv)
{
        static const char name[] = "agentbroker-mcp-net";
        const char *env = getenv("AGENTBROKER_MCP_NET");
        char self[4096], beside[4096 + sizeof(name)];
        const char *path = PKGLIBEXECDIR "/agentbroker-mcp-net";
        ssize_t n;

        if (env && *env)
                path = env;
        else if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
                char *slash;

                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        slash[1] = '\0';
                        snprintf(beside, sizeof(beside), "%s%s", self, name);
                        if (access(beside, X_OK) == 0)
                                path = beside;
                }
        }
        execv(path, argv);
        fprintf(stderr, "agentbroker-mcp: --http and --tunnel are served by %s, which cannot be run: %s\n", path,
                strerror(errno));
        return EXIT_FAILURE;
}
#endif

static int
on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata AB_UNUSED)
{
        log_info("%s: stopping", strsignal((int)si->ssi_signo));
        sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

#ifndef AB_MCP_STDIO_ONLY
/* The HTTP listener's token check: ask the broker. */
static int
check_token(void *userdata, const char *token, unsigned *ret_ttl_s, const char **ret_reason)
{
        return hb_http_token_check(userdata, token, ret_ttl_s, ret_reason);
}

/* The HTTP listener's aggregated 401s: one http-token-deny record per source, reason and
 * interval. */
static void
report_denials(void *userdata, const char *source, const char *reason, unsigned count, unsigned seconds)
{
        int r = hb_http_auth_deny(userdata, source, reason, count, seconds);

        if (r < 0)
                log_warning("the broker did not record %u refused HTTP requests from %s: %s", count, source,
                            strerror(-r));
}

/* Start the Streamable HTTP listener; the shared server becomes h->server. Returns 0 or -errno. */
static int
serve_http(sd_event *event, struct hb_broker *broker, const struct mcp_config *mcfg, const char *addr,
           bool insecure_no_auth, unsigned session_idle, struct host *h, struct mcp_http **ret)
{
        struct mcp_http *http = NULL;
        int r;

        r = mcp_http_new(event,
                         &(struct mcp_http_config){
                                 .address = addr,
                                 .insecure_no_auth = insecure_no_auth,
                                 .check_token = check_token,
                                 .check_userdata = broker,
                                 .report_denials = report_denials,
                                 .session_idle_s = session_idle,
                                 .mcp = *mcfg,
                         },
                         &http);
        if (r < 0) {
                log_error("cannot listen on %s: %s", addr, strerror(-r));
                return r;
        }
        h->server = mcp_http_server(http);
        if (insecure_no_auth) {
                fprintf(stderr, "agentbroker-mcp: WARNING: --insecure-no-auth: any local process can call tools "
                                "through http://%s/mcp without a token\n", mcp_http_bound(http));
                r = hb_http_listener(broker, mcp_http_bound(http), "insecure-no-auth", mcfg->run);
        } else
                r = hb_http_listener(broker, mcp_http_bound(http), "bearer", mcfg->run);
        if (r < 0) {
                log_error("the broker did not record the listener: %s", strerror(-r));
                mcp_http_free(http);
                h->server = NULL;
                return r;
        }
        log_notice("serving MCP over Streamable HTTP at http://%s/mcp%s", mcp_http_bound(http),
                   insecure_no_auth ? " WITHOUT AUTHENTICATION" : "");
        *ret = http;
        return 0;
}

/* Teardown of a run the host opened for itself: delete the tunnel's checkpoint of that run (its
 * call store and session: the run is closed, nothing can resume it) and its temporary file,
 * and say so in the teardown report ("checkpoint": "deleted" or "failed"). */
static void
checkpoint_delete(const char *path, cJSON *report)
{
        _cleanup_free_ char *tmp = NULL;
        int r = 0;

        if (unlink(path) < 0 && errno != ENOENT)
                r = -errno;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                tmp = NULL;
        else if (unlink(tmp) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        if (r < 0)
                log_error("run teardown: cannot delete the tunnel checkpoint %s: %s", path, strerror(-r));
        else
                log_info("run teardown: tunnel checkpoint %s deleted", path);
        if (report)
                (void)cJSON_AddStringToObject(report, "checkpoint", r < 0 ? "failed" : "deleted");
}
#endif

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
        log_info("run teardown: %u processes killed, %u left, %llu bytes of workspace, cgroup %s", td.processes_killed,
                 td.processes_left, (unsigned long long)td.workspace_bytes, cg);
        return o;
}

int
main(int argc, char **argv)
{
        static const struct option options[] = {
                { "broker", required_argument, NULL, 'b' },
                { "modules", required_argument, NULL, 'm' },
                { "run", required_argument, NULL, 'r' },
                { "profile", required_argument, NULL, OPT_PROFILE },
                { "worker", required_argument, NULL, 'w' },
                { "debug", no_argument, NULL, 'd' },
                { "http", required_argument, NULL, 'H' },
                { "insecure-no-auth", no_argument, NULL, 'I' },
                { "bare-names", required_argument, NULL, 'B' },
                { "tunnel", required_argument, NULL, 'T' },
                { "tunnel-ca", required_argument, NULL, 'C' },
                { "tunnel-pin", required_argument, NULL, 'P' },
                { "tunnel-session", required_argument, NULL, 'S' },
                { "tunnel-checkpoint", required_argument, NULL, 'K' },
                { "tunnel-ping-ms", required_argument, NULL, OPT_TUNNEL_PING },
                { "tunnel-backoff-ms", required_argument, NULL, OPT_TUNNEL_BACKOFF },
                { "tunnel-healthy-ms", required_argument, NULL, OPT_TUNNEL_HEALTHY },
                { "tunnel-connect-timeout-ms", required_argument, NULL, OPT_TUNNEL_CONNECT_TIMEOUT },
                { "tunnel-tls-timeout-ms", required_argument, NULL, OPT_TUNNEL_TLS_TIMEOUT },
                { "tunnel-upgrade-timeout-ms", required_argument, NULL, OPT_TUNNEL_UPGRADE_TIMEOUT },
                { "tunnel-first-message-timeout-ms", required_argument, NULL, OPT_TUNNEL_FIRST_MESSAGE_TIMEOUT },
                { "tunnel-insecure-loopback", no_argument, NULL, 'L' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        const char *broker_path = AB_DEFAULT_SOCKET, *run_arg = NULL, *worker = NULL, *profile_arg = NULL;
        cJSON *profile_json = NULL, *teardown = NULL;
        struct hs_sandbox *sandbox = NULL;
        const char *dirs[MODULES_MAX_DIRS];
        size_t n_dirs = 0, loaded = 0;
        struct host h = {};
        struct hb_broker *broker = NULL;
        struct hw_registry *registry = NULL;
        struct gateway *gateway = NULL;
        struct mcp_stdio *io = NULL;
        struct mcp_config mcfg;
        const struct mcp_transport_ops *transport = NULL;
        void *transport_ctx = NULL;
#ifndef AB_MCP_STDIO_ONLY
        struct mcp_http *http = NULL;
        unsigned session_idle = 0;
        struct mcp_tunnel *tun = NULL;
        _cleanup_free_ char *ckpt_default = NULL;
#endif
        const char *http_addr = NULL;
        bool insecure_no_auth = false;
        const char *bare[BARE_MAX + 1] = {};
        size_t n_bare = 0;
        struct mcp_tunnel_config tcfg = {};
        sd_event *event = NULL;
        char *run = NULL;
        bool opened_run = false;
        sigset_t mask;
        size_t page_size = 0;
        const char *e;
        char cause[512];
        int c, r, status = EXIT_FAILURE, longindex = 0;

        ab_log_use_journal();   /* (for a to_journal init; the host logs to stderr) */
        ab_log_init("agentbroker-mcp", false);
        /* Non-dumpable before anything is read (docs/architecture.md): no process of the same
         * uid (a module worker among them) may ptrace the host or open its /proc/<pid>/mem, and
         * it leaves no core with redeemed secrets or tokens. Workers re-set it after exec. */
        r = ab_process_harden();
        if (r < 0)
                log_warning("cannot make the host non-dumpable: %s", strerror(-r));
        while ((c = getopt_long(argc, argv, "", options, &longindex)) >= 0) {
                switch (c) {
                case 'b':
                        broker_path = optarg;
                        break;
                case 'm':
                        if (n_dirs == MODULES_MAX_DIRS) {
                                fprintf(stderr, "agentbroker-mcp: at most %d --modules directories\n",
                                        MODULES_MAX_DIRS);
                                return EXIT_FAILURE;
                        }
                        dirs[n_dirs++] = optarg;
                        break;
                case 'r':
                        run_arg = optarg;
                        break;
                case OPT_PROFILE:
                        profile_arg = optarg;
                        break;
                case 'w':
                        worker = optarg;
                        break;
                case 'd':
                        ab_log_set_max_level(LOG_DEBUG);
                        break;
                case 'H':
                        http_addr = optarg;
                        break;
                case 'I':
                        insecure_no_auth = true;
                        break;
                case 'B':
                        if (n_bare == BARE_MAX) {
                                fprintf(stderr, "agentbroker-mcp: at most %d --bare-names\n", BARE_MAX);
                                return EXIT_FAILURE;
                        }
                        bare[n_bare++] = optarg;
                        break;
                case 'T':
                        tcfg.url = optarg;
                        break;
                case 'C':
                        tcfg.ca_file = optarg;
                        break;
                case 'P':
                        tcfg.pin_sha256 = optarg;
                        break;
                case 'S':
                        tcfg.session = optarg;
                        break;
                case 'K':
                        tcfg.checkpoint = optarg;
                        break;
                case 'L':
                        tcfg.allow_plain = true;
                        break;
                case OPT_TUNNEL_PING:
                        if (parse_ms(optarg, "--tunnel-ping-ms", &tcfg.ping_ms) < 0)
                                return EXIT_FAILURE;
                        break;
                case OPT_TUNNEL_HEALTHY:
                        if (parse_ms(optarg, "--tunnel-healthy-ms", &tcfg.healthy_ms) < 0)
                                return EXIT_FAILURE;
                        break;
                case OPT_TUNNEL_CONNECT_TIMEOUT:
                case OPT_TUNNEL_TLS_TIMEOUT:
                case OPT_TUNNEL_UPGRADE_TIMEOUT:
                case OPT_TUNNEL_FIRST_MESSAGE_TIMEOUT: {
                        /* The deadlines of a dial's stages, in the order of the enum. */
                        unsigned *const slot[] = { &tcfg.connect_timeout_ms, &tcfg.tls_timeout_ms,
                                                   &tcfg.upgrade_timeout_ms, &tcfg.first_message_timeout_ms };
                        char name[64];

                        snprintf(name, sizeof name, "--%s", options[longindex].name);
                        if (parse_ms(optarg, name, slot[c - OPT_TUNNEL_CONNECT_TIMEOUT]) < 0)
                                return EXIT_FAILURE;
                        break;
                }
                case OPT_TUNNEL_BACKOFF: {
                        unsigned long lo, hi;
                        char *end;
                        lo = strtoul(optarg, &end, 10);
                        hi = *end == ',' ? strtoul(end + 1, &end, 10) : 0;
                        if (*end || lo < 1 || hi < lo || hi > 3600000) {
                                fprintf(stderr, "agentbroker-mcp: --tunnel-backoff-ms takes MIN,MAX (1 <= MIN <= MAX)\n");
                                return EXIT_FAILURE;
                        }
                        tcfg.backoff_min_ms = (unsigned)lo;
                        tcfg.backoff_max_ms = (unsigned)hi;
                        break;
                }
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                case 'V':
                        printf("agentbroker-mcp %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return EXIT_FAILURE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "agentbroker-mcp: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return EXIT_FAILURE;
        }
#ifdef AB_MCP_STDIO_ONLY
        if (http_addr || insecure_no_auth || tcfg.url || tcfg.ca_file || tcfg.pin_sha256 || tcfg.session ||
            tcfg.checkpoint || tcfg.allow_plain || tcfg.ping_ms || tcfg.backoff_min_ms)
                return exec_net(argv);
#endif
        if (run_arg && profile_arg) {
                fprintf(stderr, "agentbroker-mcp: --profile opens the host's own run: it does not go with --run\n");
                return EXIT_FAILURE;
        }
        if (run_arg && (!*run_arg || strlen(run_arg) > 128)) {
                fprintf(stderr, "agentbroker-mcp: --run needs a run id\n");
                return EXIT_FAILURE;
        }
        if (http_addr && tcfg.url) {
                fprintf(stderr, "agentbroker-mcp: --http and --tunnel are two transports: give one\n");
                return EXIT_FAILURE;
        }
#ifndef AB_MCP_STDIO_ONLY
        if (http_addr && mcp_http_address_ok(http_addr) < 0) {
                fprintf(stderr, "agentbroker-mcp: --http takes a loopback address (127.0.0.1:PORT, [::1]:PORT, "
                                "localhost:PORT) or unix:/PATH, not '%s'\n", http_addr);
                return EXIT_FAILURE;
        }
        if (insecure_no_auth && (!http_addr || strncmp(http_addr, "unix:", 5) == 0)) {
                fprintf(stderr, "agentbroker-mcp: --insecure-no-auth is only for --http on a loopback TCP address\n");
                return EXIT_FAILURE;
        }
        /* For tests of session expiry: a shorter idle time. */
        e = getenv("AGENTBROKER_MCP_HTTP_SESSION_IDLE");
        if (e && *e) {
                char *end;
                unsigned long v = strtoul(e, &end, 10);
                if (*end || v < 1 || v > 86400) {
                        fprintf(stderr, "agentbroker-mcp: AGENTBROKER_MCP_HTTP_SESSION_IDLE must be 1..86400\n");
                        return EXIT_FAILURE;
                }
                session_idle = (unsigned)v;
        }
#endif
        if (!worker)
                worker = getenv("AGENTBROKER_WORKER");
        if (!worker || !*worker)
                worker = PKGLIBEXECDIR "/agentbroker-worker";
        /* For tests of pagination with few tools: a smaller tools/list page. */
        e = getenv("AGENTBROKER_MCP_PAGE_SIZE");
        if (e && *e) {
                char *end;
                unsigned long v = strtoul(e, &end, 10);
                if (*end || v < 1 || v > MCP_PAGE_SIZE) {
                        fprintf(stderr, "agentbroker-mcp: AGENTBROKER_MCP_PAGE_SIZE must be 1..%d\n", MCP_PAGE_SIZE);
                        return EXIT_FAILURE;
                }
                page_size = v;
        }
        if (n_dirs == 0)
                for (size_t i = 0; i < AB_ELEMENTSOF(default_module_dirs); i++)
                        dirs[n_dirs++] = default_module_dirs[i];

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

        r = hb_connect(broker_path, &broker);
        if (r < 0) {
                ab_describe_connect_error(broker_path, r, cause, sizeof cause);
                goto fail_mode;
        }
        if (run_arg) {
                run = strdup(run_arg);
                if (!run) {
                        log_error("out of memory");
                        goto out;
                }
        } else {
                char label[64];
                const char *reason = NULL;

                snprintf(label, sizeof label, "agentbroker-mcp[%d]", (int)getpid());
                r = hb_run_open_profile(broker, label, profile_arg, &run, &profile_json, &reason);
                if (r == -EPERM) {
                        mcp_fail_describe_run_open(reason, cause, sizeof cause);
                        goto fail_mode;
                }
                if (r < 0) {
                        snprintf(cause, sizeof cause, "run-open at the broker at %s failed: %s", broker_path,
                                 strerror(-r));
                        goto fail_mode;
                }
                opened_run = true;
        }
        log_info("run %s", run);
        {
                struct timespec ts;

                /* For tests/bench/run-bench-sandbox.sh: provision is timed from here. */
                clock_gettime(CLOCK_MONOTONIC, &ts);
                log_debug("run %s ready at %lld us (CLOCK_MONOTONIC)", run,
                          (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
        }

        /* The modules' configuration before any worker starts. */
        r = hb_host_config(broker, NULL, 0, &h.boot_config);
        if (r < 0)
                log_warning("host-config at the broker failed: %s; modules start with an empty configuration "
                            "and no MCP server of policy is served", strerror(-r));

        r = sd_event_default(&event);
        if (r < 0) {
                log_error("sd_event_default: %s", strerror(-r));
                goto out;
        }
        /* call-begin and call-end go out without blocking the loop. */
        r = hb_attach_event(broker, event);
        if (r < 0) {
                log_error("cannot attach the broker client to the event loop: %s", strerror(-r));
                goto out;
        }
        if ((r = sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL)) < 0) {
                log_error("sd_event_add_signal: %s", strerror(-r));
                goto out;
        }

        r = hw_registry_new(event, worker, broker_path, module_config, &h, &registry);
        if (r < 0) {
                log_error("cannot set up the module registry (worker %s): %s", worker, strerror(-r));
                goto out;
        }
        hw_registry_on_refusal(registry, module_refused, &h);
        if (profile_json) {
                char why[512];

                r = hs_sandbox_new_json(profile_json, run, worker, broker_path, why, sizeof(why), &sandbox);
                if (r < 0) {
                        log_error("profile %s: %s", profile_arg, why);
                        goto out;
                }
                hw_registry_set_sandbox(registry, sandbox);
                log_info("run %s: sandbox of profile %s%s%s", run, profile_arg,
                         hs_sandbox_cgroup(sandbox) ? ", cgroup " : "",
                         hs_sandbox_cgroup(sandbox) ? hs_sandbox_cgroup(sandbox) : "");
        }
        {
                /* Each worker's network (docs/architecture.md, "Egress"); without the program,
                 * modules have none (abm_call_connect/abm_call_http answer -ENOSYS). */
                const char *egress = getenv("AGENTBROKER_EGRESS");

                if (!egress || !*egress)
                        egress = PKGLIBEXECDIR "/agentbroker-egress";
                if (access(egress, X_OK) < 0)
                        log_notice("no %s: modules get no network", egress);
                else if (hw_registry_set_egress(registry, egress) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < n_dirs; i++) {
                r = hw_registry_load_dir(registry, dirs[i]);
                if (r < 0)
                        log_error("cannot read the module directory %s: %s", dirs[i], strerror(-r));
                else
                        loaded += (size_t)r;
        }
        log_info("%zu modules loaded, %zu tools", loaded, hw_tools_count(registry));
        report_modules(broker, registry, &h);
        /* The MCP servers policy names (host/gateway.c), beside the modules. */
        r = gw_new(event, registry, broker, run, worker,
                   cJSON_GetObjectItemCaseSensitive(h.boot_config, "servers"), &gateway);
        if (r < 0)
                log_error("cannot set up the MCP servers of policy: %s", strerror(-r));

        mcfg = (struct mcp_config){
                .registry = registry,
                .broker = broker,
                .run = run,
                .server_name = "agentbroker-mcp",
                .page_size = page_size,
                .bare_modules = n_bare ? bare : NULL,
        };
        /* The transport: agentbroker-mcp-net serves --http or --tunnel (agentbroker-mcp handed
         * those command lines to it above); both serve stdio otherwise. */
#ifndef AB_MCP_STDIO_ONLY
        if (http_addr) {
                r = serve_http(event, broker, &mcfg, http_addr, insecure_no_auth, session_idle, &h, &http);
                if (r < 0)
                        goto out;
                r = sd_event_loop(event);
                if (r < 0)
                        log_error("event loop: %s", strerror(-r));
                status = r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
                goto out;
        }
        if (tcfg.url) {
                tcfg.broker = broker;
                tcfg.run = run;
                e = getenv("STATE_DIRECTORY");
                if (!tcfg.checkpoint && e && *e && !strchr(e, ':') && strlen(run) <= 128 && !strchr(run, '/')) {
                        if (asprintf(&ckpt_default, "%s/tunnel-%s.json", e, run) < 0)
                                ckpt_default = NULL;
                        tcfg.checkpoint = ckpt_default;
                }
                r = mcp_tunnel_new(event, &tcfg, &tun);
                if (r < 0) {
                        log_error("cannot set up the tunnel: %s", strerror(-r));
                        goto out;
                }
                transport = &mcp_tunnel_ops;
                transport_ctx = tun;
        }
#endif
        if (!transport) {
                r = mcp_stdio_new(event, STDIN_FILENO, STDOUT_FILENO, &io);
                if (r < 0) {
                        log_error("cannot set up stdio: %s", strerror(-r));
                        goto out;
                }
                transport = &mcp_stdio_ops;
                transport_ctx = io;
        }
        r = mcp_server_new(event, &mcfg, transport, transport_ctx, &h.server);
        if (r < 0) {
                log_error("cannot start the MCP server: %s", strerror(-r));
                goto out;
        }
#ifndef AB_MCP_STDIO_ONLY
        if (tun)
                r = mcp_tunnel_start(tun, h.server);
        else
#endif
                r = mcp_stdio_start(io, h.server);
        if (r < 0) {
                log_error("cannot start the %s transport: %s", io ? "stdio" : "tunnel", strerror(-r));
                goto out;
        }

        r = sd_event_loop(event);
        if (r < 0)
                log_error("event loop: %s", strerror(-r));
        status = r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        if (io)
                (void)mcp_stdio_flush(io, FLUSH_AT_EXIT_MS);
        goto out;

fail_mode:
        /* On stdio, the client is told why (every request gets the error) instead of seeing
         * a disconnect before initialize; --http and --tunnel exit with the error logged. */
        if (http_addr || tcfg.url)
                log_error("%s", cause);
        else
                (void)mcp_fail_serve(STDIN_FILENO, STDOUT_FILENO, cause);
out:
        /* Order matters: the server's calls end through the registry, which ends them at the
         * broker, which goes last. */
        mcp_stdio_detach(io);
#ifndef AB_MCP_STDIO_ONLY
        if (http) {
                mcp_http_free(http);   /* frees the shared server h.server points at */
                h.server = NULL;
        }
        mcp_tunnel_detach(tun);
#endif
        mcp_server_free(h.server);
        h.server = NULL;
        gw_free(gateway);
        if (opened_run)
                teardown = teardown_report(sandbox, registry);
        hw_registry_free(registry);
        hs_sandbox_free(sandbox);
        cJSON_Delete(profile_json);
        mcp_stdio_free(io);
#ifndef AB_MCP_STDIO_ONLY
        mcp_tunnel_free(tun);
        if (opened_run && tcfg.checkpoint)
                checkpoint_delete(tcfg.checkpoint, teardown);
#endif
        if (opened_run) {
                r = hb_run_close_report(broker, run, AB_TAKE_PTR(teardown));
                if (r < 0)
                        log_warning("run-close of %s failed: %s", run, strerror(-r));
        }
        hb_free(broker);
        cJSON_Delete(h.boot_config);
        cJSON_Delete(h.refused);
        free(run);
        sd_event_unref(event);
        return status;
}
