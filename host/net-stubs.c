/* The Streamable HTTP and tunnel transports as agentbroker-mcp (stdio) sees them: not built
 * in. libmicrohttpd and libwebsockets (with GnuTLS, p11-kit, libssl and the rest they load)
 * cost the host about 4.5 MiB of RSS that the stdio transport never uses, so
 * agentbroker-mcp is built without them and hands --http and --tunnel command lines to
 * agentbroker-mcp-net (the same program with both transports) before it touches any of
 * these; host/agentbroker-mcp.c. Every function here fails or does nothing. */
#include "config.h"

#include <errno.h>

#include "common/macros.h"
#include "host/http.h"
#include "host/tunnel.h"

const struct mcp_transport_ops mcp_tunnel_ops;

int
mcp_http_address_ok(const char *addr AB_UNUSED)
{
        return -EOPNOTSUPP;
}

int
mcp_http_new(sd_event *event AB_UNUSED, const struct mcp_http_config *cfg AB_UNUSED, struct mcp_http **ret AB_UNUSED)
{
        return -EOPNOTSUPP;
}

struct mcp_server *
mcp_http_server(struct mcp_http *h AB_UNUSED)
{
        return NULL;
}

const char *
mcp_http_bound(const struct mcp_http *h AB_UNUSED)
{
        return NULL;
}

void
mcp_http_free(struct mcp_http *h AB_UNUSED)
{
}

int
mcp_tunnel_new(sd_event *event AB_UNUSED, const struct mcp_tunnel_config *cfg AB_UNUSED,
               struct mcp_tunnel **ret AB_UNUSED)
{
        return -EOPNOTSUPP;
}

int
mcp_tunnel_start(struct mcp_tunnel *t AB_UNUSED, struct mcp_server *server AB_UNUSED)
{
        return -EOPNOTSUPP;
}

const char *
mcp_tunnel_session(const struct mcp_tunnel *t AB_UNUSED)
{
        return NULL;
}

void
mcp_tunnel_detach(struct mcp_tunnel *t AB_UNUSED)
{
}

void
mcp_tunnel_free(struct mcp_tunnel *t AB_UNUSED)
{
}
