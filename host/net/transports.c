/* SPDX-License-Identifier: MIT */
/* host/net/transports.h for agentbroker-mcp-net: the Streamable HTTP listener (host/net/http/)
 * and the tunnel (host/net/tunnel/), started for --http or --tunnel. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/name.h"
#include "host/net/ckpt_keeper.h"
#include "host/net/http/http.h"
#include "host/net/transports.h"
#include "host/net/tunnel/tunnel.h"

#define SESSION_IDLE_MAX_S 86400

struct host_net {
        struct mcp_http *http;  /* --http: the listener, which owns the shared server */
        struct mcp_tunnel *tun; /* --tunnel */
        char *ckpt_default;     /* the tunnel's default checkpoint path, or NULL */
        char *ckpt;             /* the tunnel's checkpoint path (copy), or NULL */
        int keeper_fd;          /* the checkpoint keeper's pipe (host's own run), or -1 */
};

/* agentbroker-mcp-net serves the network options itself. */
int
host_net_redirect(const struct host_options *o AB_UNUSED, char **argv AB_UNUSED)
{
        return 0;
}

/* The checks of --http and --insecure-no-auth; see host/net/transports.h. */
int
host_net_check(struct host_options *o)
{
        unsigned long idle = o->session_idle;

        if (o->http_addr && mcp_http_address_ok(o->http_addr) < 0) {
                fprintf(stderr,
                        "agentbroker-mcp: --http takes a loopback address (127.0.0.1:PORT, [::1]:PORT, "
                        "localhost:PORT) or unix:/PATH, not '%s'\n",
                        o->http_addr);
                return -EINVAL;
        }
        if (o->insecure_no_auth && (!o->http_addr || strncmp(o->http_addr, "unix:", 5) == 0)) {
                fprintf(stderr,
                        "agentbroker-mcp: --insecure-no-auth is only for --http on a loopback TCP address\n");
                return -EINVAL;
        }
        /* For tests of session expiry: a shorter idle time. */
        if (host_env_number("AGENTBROKER_MCP_HTTP_SESSION_IDLE", SESSION_IDLE_MAX_S, &idle) < 0)
                return -EINVAL;
        o->session_idle = (unsigned)idle;
        return 0;
}

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

/* Start the Streamable HTTP listener; its shared server becomes *ret_server. Returns 0 or
 * -errno (logged). */
static int
serve_http(sd_event *event, struct hb_broker *broker, const struct mcp_config *mcfg,
           const struct host_options *o, struct mcp_server **ret_server, struct mcp_http **ret)
{
        struct mcp_http *http = NULL;
        int r;

        r = mcp_http_new(event,
                         &(struct mcp_http_config){
                                 .address = o->http_addr,
                                 .insecure_no_auth = o->insecure_no_auth,
                                 .check_token = check_token,
                                 .check_userdata = broker,
                                 .report_denials = report_denials,
                                 .session_idle_s = o->session_idle,
                                 .mcp = *mcfg,
                         },
                         &http);
        if (r < 0) {
                log_error("cannot listen on %s: %s", o->http_addr, strerror(-r));
                return r;
        }
        if (o->insecure_no_auth) {
                fprintf(stderr,
                        "agentbroker-mcp: WARNING: --insecure-no-auth: any local process can call tools "
                        "through http://%s/mcp without a token\n",
                        mcp_http_bound(http));
                r = hb_http_listener(broker, mcp_http_bound(http), "insecure-no-auth", mcfg->run);
        } else
                r = hb_http_listener(broker, mcp_http_bound(http), "bearer", mcfg->run);
        if (r < 0) {
                log_error("the broker did not record the listener: %s", strerror(-r));
                mcp_http_free(http);
                return r;
        }
        log_notice("serving MCP over Streamable HTTP at http://%s/mcp%s", mcp_http_bound(http),
                   o->insecure_no_auth ? " WITHOUT AUTHENTICATION" : "");
        *ret_server = mcp_http_server(http);
        *ret = http;
        return 0;
}

/* Start the tunnel with its MCP server (*ret_server); the checkpoint defaults to
 * $STATE_DIRECTORY/tunnel-<run>.json. Returns 0 or -errno (logged). */
static int
serve_tunnel(sd_event *event, struct hb_broker *broker, const struct mcp_config *mcfg,
             const struct host_options *o, struct host_net *n, struct mcp_server **ret_server)
{
        struct mcp_tunnel_config tcfg = o->tcfg;
        struct mcp_server *server = NULL;
        const char *e = getenv("STATE_DIRECTORY");
        int r;

        tcfg.broker = broker;
        tcfg.run = mcfg->run;
        if (!tcfg.checkpoint && e && *e && !strchr(e, ':') && strlen(mcfg->run) <= AB_NAME_MAX &&
            !strchr(mcfg->run, '/')) {
                if (asprintf(&n->ckpt_default, "%s/tunnel-%s.json", e, mcfg->run) < 0)
                        n->ckpt_default = NULL;
                tcfg.checkpoint = n->ckpt_default;
        }
        if (tcfg.checkpoint && !(n->ckpt = strdup(tcfg.checkpoint))) {
                log_error("out of memory");
                return -ENOMEM;
        }
        /* A host's own run ends with the host: if it is killed before it can delete the run's
         * checkpoint, the keeper does (before the tunnel's thread exists: it forks). */
        if (n->ckpt && !o->run_arg) {
                r = ckpt_keeper_start(n->ckpt, &n->keeper_fd);
                if (r < 0) {
                        log_error("cannot start the checkpoint keeper: %s", strerror(-r));
                        return r;
                }
        }
        r = mcp_tunnel_new(event, &tcfg, &n->tun);
        if (r < 0) {
                log_error("cannot set up the tunnel: %s", strerror(-r));
                return r;
        }
        r = mcp_server_new(event, mcfg, &mcp_tunnel_ops, n->tun, &server);
        if (r < 0) {
                log_error("cannot start the MCP server: %s", strerror(-r));
                return r;
        }
        r = mcp_tunnel_start(n->tun, server);
        if (r < 0) {
                log_error("cannot start the %s transport: %s", "tunnel", strerror(-r));
                mcp_tunnel_detach(n->tun);
                mcp_server_free(server);
                return r;
        }
        *ret_server = server;
        return 0;
}

/* Start --http or --tunnel; see host/net/transports.h. */
int
host_net_start(sd_event *event, struct hb_broker *broker, const struct mcp_config *mcfg,
               const struct host_options *o, struct mcp_server **ret_server, struct host_net **ret)
{
        struct host_net *n = calloc(1, sizeof *n);
        struct mcp_server *server = NULL;
        int r;

        if (!n) {
                log_error("out of memory");
                return -ENOMEM;
        }
        n->keeper_fd = -1;
        if (o->http_addr)
                r = serve_http(event, broker, mcfg, o, &server, &n->http);
        else
                r = serve_tunnel(event, broker, mcfg, o, n, &server);
        if (r < 0) {
                host_net_free(n, NULL);
                return r;
        }
        *ret_server = server;
        *ret = n;
        return 0;
}

/* Stop the transport before the server is freed (HTTP: free the listener with its server). */
void
host_net_detach(struct host_net *n, struct mcp_server **server)
{
        if (!n)
                return;
        if (n->http) {
                mcp_http_free(n->http); /* frees the shared server *server points at */
                n->http = NULL;
                *server = NULL;
        }
        mcp_tunnel_detach(n->tun);
}

/* Free the transport, after the registry. */
void
host_net_free(struct host_net *n, cJSON *run_report)
{
        int r;

        if (!n)
                return;
        mcp_tunnel_free(n->tun);
        if (run_report && n->ckpt) {
                /* The run is closed: nothing can resume it, so its call store goes. */
                r = mcp_tunnel_checkpoint_delete(n->ckpt);
                if (r < 0)
                        log_error("run teardown: cannot delete the tunnel checkpoint %s: %s", n->ckpt,
                                  strerror(-r));
                else
                        log_info("run teardown: tunnel checkpoint %s deleted", n->ckpt);
                (void)cJSON_AddStringToObject(run_report, "checkpoint", r < 0 ? "failed" : "deleted");
        }
        /* The keeper finds the pipe's end and deletes what is left (nothing, after the above). */
        if (n->keeper_fd >= 0)
                close(n->keeper_fd);
        free(n->ckpt);
        free(n->ckpt_default);
        free(n);
}
