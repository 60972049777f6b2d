/* SPDX-License-Identifier: MIT */
/* agentbroker-mcp's command line (host/options.h): the options into struct host_options, the
 * checks between them and the defaults from the environment. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/client.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/name.h"
#include "host/mcp/server.h"
#include "host/options.h"

static const char *const default_module_dirs[] = {
        PKGLIBDIR "/modules",
        "/usr/local/lib/agentbroker/modules",
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

/* The --help text. */
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

/* One of the --tunnel-* options (c, the option at options[longindex]) into *t. Returns 0, or
 * -EINVAL (said on stderr). */
static int
parse_tunnel_option(int c, int longindex, const char *arg, struct mcp_tunnel_config *t)
{
        switch (c) {
        case 'T': t->url = arg; return 0;
        case 'C': t->ca_file = arg; return 0;
        case 'P': t->pin_sha256 = arg; return 0;
        case 'S': t->session = arg; return 0;
        case 'K': t->checkpoint = arg; return 0;
        case 'L': t->allow_plain = true; return 0;
        case OPT_TUNNEL_PING: return parse_ms(arg, "--tunnel-ping-ms", &t->ping_ms);
        case OPT_TUNNEL_HEALTHY: return parse_ms(arg, "--tunnel-healthy-ms", &t->healthy_ms);
        case OPT_TUNNEL_CONNECT_TIMEOUT:
        case OPT_TUNNEL_TLS_TIMEOUT:
        case OPT_TUNNEL_UPGRADE_TIMEOUT:
        case OPT_TUNNEL_FIRST_MESSAGE_TIMEOUT: {
                /* The deadlines of a dial's stages, in the order of the enum. */
                unsigned *const slot[] = { &t->connect_timeout_ms, &t->tls_timeout_ms,
                                           &t->upgrade_timeout_ms, &t->first_message_timeout_ms };
                char name[64];

                snprintf(name, sizeof name, "--%s", options[longindex].name);
                return parse_ms(arg, name, slot[c - OPT_TUNNEL_CONNECT_TIMEOUT]);
        }
        case OPT_TUNNEL_BACKOFF: {
                unsigned long lo, hi;
                char *end;
                lo = strtoul(arg, &end, 10);
                hi = *end == ',' ? strtoul(end + 1, &end, 10) : 0;
                if (*end || lo < 1 || hi < lo || hi > 3600000) {
                        fprintf(stderr,
                                "agentbroker-mcp: --tunnel-backoff-ms takes MIN,MAX (1 <= MIN <= MAX)\n");
                        return -EINVAL;
                }
                t->backoff_min_ms = (unsigned)lo;
                t->backoff_max_ms = (unsigned)hi;
                return 0;
        }
        default: usage(stderr); return -EINVAL;
        }
}

/* The command line into *ret; see host/options.h. */
int
host_options_parse(int argc, char **argv, struct host_options *ret)
{
        struct host_options o = { .broker_path = AB_DEFAULT_SOCKET };
        int c, longindex = 0;

        while ((c = getopt_long(argc, argv, "", options, &longindex)) >= 0) {
                switch (c) {
                case 'b': o.broker_path = optarg; break;
                case 'm':
                        if (o.n_dirs == HOST_MODULES_MAX_DIRS) {
                                fprintf(stderr, "agentbroker-mcp: at most %d --modules directories\n",
                                        HOST_MODULES_MAX_DIRS);
                                return -EINVAL;
                        }
                        o.dirs[o.n_dirs++] = optarg;
                        break;
                case 'r': o.run_arg = optarg; break;
                case OPT_PROFILE: o.profile_arg = optarg; break;
                case 'w': o.worker = optarg; break;
                case 'd': ab_log_set_max_level(LOG_DEBUG); break;
                case 'H': o.http_addr = optarg; break;
                case 'I': o.insecure_no_auth = true; break;
                case 'B':
                        if (o.n_bare == HOST_BARE_MAX) {
                                fprintf(stderr, "agentbroker-mcp: at most %d --bare-names\n", HOST_BARE_MAX);
                                return -EINVAL;
                        }
                        o.bare[o.n_bare++] = optarg;
                        break;
                case 'h': usage(stdout); return 1;
                case 'V': printf("agentbroker-mcp %s\n", PACKAGE_VERSION); return 1;
                default:
                        if (parse_tunnel_option(c, longindex, optarg, &o.tcfg) < 0)
                                return -EINVAL;
                        break;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "agentbroker-mcp: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return -EINVAL;
        }
        *ret = o;
        return 0;
}

/* Whether o asks for a network transport: the options agentbroker-mcp hands to
 * agentbroker-mcp-net. */
bool
host_options_want_net(const struct host_options *o)
{
        const struct mcp_tunnel_config *t = &o->tcfg;

        return o->http_addr || o->insecure_no_auth || t->url || t->ca_file || t->pin_sha256 || t->session ||
               t->checkpoint || t->allow_plain || t->ping_ms || t->backoff_min_ms;
}

int
host_env_number(const char *name, unsigned long max, unsigned long *ret)
{
        const char *e = getenv(name);
        char *end;
        unsigned long v;

        if (!e || !*e)
                return 0;
        v = strtoul(e, &end, 10);
        if (*end || v < 1 || v > max) {
                fprintf(stderr, "agentbroker-mcp: %s must be 1..%lu\n", name, max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* The checks between options every build makes. Returns 0, or -EINVAL (said on stderr). */
int
host_options_check(struct host_options *o)
{
        if (o->run_arg && o->profile_arg) {
                fprintf(stderr,
                        "agentbroker-mcp: --profile opens the host's own run: it does not go with --run\n");
                return -EINVAL;
        }
        if (o->run_arg && (!*o->run_arg || strlen(o->run_arg) > AB_NAME_MAX)) {
                fprintf(stderr, "agentbroker-mcp: --run needs a run id\n");
                return -EINVAL;
        }
        if (o->http_addr && o->tcfg.url) {
                fprintf(stderr, "agentbroker-mcp: --http and --tunnel are two transports: give one\n");
                return -EINVAL;
        }
        return 0;
}

/* The defaults from the environment: the worker program, the page size, the module
 * directories. Returns 0, or -EINVAL (said on stderr). */
int
host_options_defaults(struct host_options *o)
{
        unsigned long page_size = o->page_size;

        if (!o->worker)
                o->worker = getenv("AGENTBROKER_WORKER");
        if (!o->worker || !*o->worker)
                o->worker = PKGLIBEXECDIR "/agentbroker-worker";
        /* For tests of pagination with few tools: a smaller tools/list page. */
        if (host_env_number("AGENTBROKER_MCP_PAGE_SIZE", MCP_PAGE_SIZE, &page_size) < 0)
                return -EINVAL;
        o->page_size = page_size;
        if (o->n_dirs == 0)
                for (size_t i = 0; i < AB_ELEMENTSOF(default_module_dirs); i++)
                        o->dirs[o->n_dirs++] = default_module_dirs[i];
        return 0;
}
