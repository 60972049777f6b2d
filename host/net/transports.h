/* SPDX-License-Identifier: MIT */
/* The network transports of agentbroker-mcp-net (Streamable HTTP, the tunnel), seen from
 * host/run.c. Two implementations with this one interface, chosen by what a program links:
 * host/net/transports.c (agentbroker-mcp-net, with libmicrohttpd and libwebsockets) and
 * host/net/none.c (agentbroker-mcp, which serves stdio and hands a command line that asks for
 * a network transport to agentbroker-mcp-net). */
#ifndef AB_HOST_NET_TRANSPORTS_H
#define AB_HOST_NET_TRANSPORTS_H

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "host/brokerc/brokerc.h"
#include "host/mcp/server.h"
#include "host/options.h"

struct host_net;

/* Called first with the parsed command line: agentbroker-mcp runs agentbroker-mcp-net with
 * argv when the options ask for a network transport (host_options_want_net) and returns only
 * on failure; agentbroker-mcp-net goes on. Returns 0 to go on, or -errno (said on stderr). */
int host_net_redirect(const struct host_options *o, char **argv);

/* The network options' own checks (the address of --http, --insecure-no-auth) and
 * $AGENTBROKER_MCP_HTTP_SESSION_IDLE into o->session_idle. Returns 0, or -EINVAL (said on
 * stderr). */
int host_net_check(struct host_options *o);

/* Start the transport o names (--http or --tunnel) with the MCP server it serves: *ret_server
 * is that server (HTTP: the server sessions share). Returns 0 or -errno (logged). */
int host_net_start(sd_event *event, struct hb_broker *broker, const struct mcp_config *mcfg,
                   const struct host_options *o, struct mcp_server **ret_server, struct host_net **ret);

/* Stop the transport before the server is freed; *server is set to NULL when the transport
 * owned it. Accepts NULL. */
void host_net_detach(struct host_net *n, struct mcp_server **server);

/* Free the transport (after the registry). With run_report (the host's own run ends), the
 * tunnel's checkpoint of that run is deleted after the tunnel's last write, with its temporary
 * file, and the report says so ("checkpoint": "deleted" or "failed"; nothing without a
 * checkpoint). Accepts NULL. */
void host_net_free(struct host_net *n, cJSON *run_report);

#endif /* AB_HOST_NET_TRANSPORTS_H */
