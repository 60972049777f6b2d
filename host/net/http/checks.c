/* SPDX-License-Identifier: MIT */
/* Checks of an HTTP request before it reaches a session: Host and Origin (DNS rebinding),
 * the bearer token (with a small cache), Accept, header sizes, the protocol version headers. */
#include "config.h"

#include "host/net/http/internal.h"

/* ---- checks ------------------------------------------------------------------------------ */

const char *
mcp_http_header(struct MHD_Connection *conn, const char *name)
{
        return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* A header value without the spaces and tabs around it (RFC 9110 OWS), in buf. */
const char *
mcp_http_trimmed(const char *v, char *buf, size_t size)
{
        size_t n;

        if (!v)
                return NULL;
        while (*v == ' ' || *v == '\t')
                v++;
        n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
        if (n >= size)
                return NULL;
        memcpy(buf, v, n);
        buf[n] = '\0';
        return buf;
}

/* Whether host (a Host header value or the authority of an Origin) names this loopback
 * listener: localhost, 127.0.0.1 or [::1], with our port if it has one. */
static bool
host_ok(const struct http *h, const char *host, size_t len)
{
        static const char *const names[] = { "localhost", "127.0.0.1", "[::1]" };

        for (size_t i = 0; i < AB_ELEMENTSOF(names); i++) {
                size_t nl = strlen(names[i]);
                char port[16];

                if (len < nl || strncasecmp(host, names[i], nl) != 0)
                        continue;
                if (len == nl)
                        return true;
                if (host[nl] != ':' || len - nl - 1 == 0 || len - nl - 1 >= sizeof port)
                        continue;
                memcpy(port, host + nl + 1, len - nl - 1);
                port[len - nl - 1] = '\0';
                if (port[strspn(port, "0123456789")] != '\0')
                        continue;
                if (h->port == 0 || strtoul(port, NULL, 10) == h->port)
                        return true;
        }
        return false;
}

/* DNS-rebinding protection: Host must name us; Origin, when sent, too. */
bool
mcp_http_origin_ok(const struct http *h, struct MHD_Connection *conn)
{
        const char *host = mcp_http_header(conn, MHD_HTTP_HEADER_HOST);
        const char *origin = mcp_http_header(conn, "Origin");

        if (!host || !host_ok(h, host, strlen(host)))
                return false;
        if (origin) {
                const char *a;
                size_t n;

                if (strncasecmp(origin, "http://", 7) == 0)
                        a = origin + 7;
                else if (strncasecmp(origin, "https://", 8) == 0)
                        a = origin + 8;
                else
                        return false;
                n = strcspn(a, "/");
                if (a[n] && strcmp(a + n, "/") != 0)
                        return false;
                if (!host_ok(h, a, n))
                        return false;
        }
        return true;
}

/* Whether tok has the shape of the broker's HTTP tokens: "abh_" and 43 base64url characters
 * (docs/http.md). */
static bool
token_shape_ok(const char *tok)
{
        size_t n = strlen(tok);

        if (n != strlen(HTTP_TOKEN_PREFIX) + HTTP_TOKEN_CHARS || strncmp(tok, HTTP_TOKEN_PREFIX, 4) != 0)
                return false;
        return strspn(tok + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
               HTTP_TOKEN_CHARS;
}

/* The bearer token check, with a cache of tokens the broker accepted (SHA-256 of the token,
 * for at most MCP_HTTP_TOKEN_CACHE_S seconds). Returns 0, -EPERM (reason set) or -errno. */
int
mcp_http_token_ok(struct http *h, struct MHD_Connection *conn, const char **ret_reason)
{
        const char *auth = mcp_http_header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
        unsigned char hash[32];
        unsigned ttl = 0, hl = 0;
        uint64_t now = ab_now_us();
        const char *tok, *reason = NULL;
        int r;

        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
                *ret_reason = "no-token";
                return -EPERM;
        }
        tok = auth + 7;
        while (*tok == ' ')
                tok++;
        if (!token_shape_ok(tok)) {
                /* Refused here: no broker round trip for what cannot be a token. */
                *ret_reason = "token-malformed";
                return -EPERM;
        }
        if (!EVP_Digest(tok, strlen(tok), hash, &hl, EVP_sha256(), NULL) || hl != sizeof hash)
                return -EIO;
        for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++)
                if (h->tokens[i].expires_usec > now &&
                    CRYPTO_memcmp(h->tokens[i].hash, hash, sizeof hash) == 0)
                        return 0;
        if (!h->check_token) {
                *ret_reason = "no token checker";
                return -EPERM;
        }
        r = h->check_token(h->check_userdata, tok, &ttl, &reason);
        if (r == -EPERM) {
                *ret_reason = reason ? reason : "refused";
                return r;
        }
        if (r < 0)
                return r;
        if (ttl > MCP_HTTP_TOKEN_CACHE_S)
                ttl = MCP_HTTP_TOKEN_CACHE_S;
        if (ttl > 0) {
                struct token_slot *t = &h->tokens[h->token_next++ % TOKEN_CACHE_SLOTS];
                memcpy(t->hash, hash, sizeof hash);
                t->expires_usec = now + (uint64_t)ttl * 1000000u;
        }
        return 0;
}

/* Whether a comma-separated Accept value lists type (or a wildcard). */
bool
mcp_http_accepts(const char *accept, const char *type)
{
        if (!accept)
                return true; /* no Accept: anything */
        return strstr(accept, type) || strstr(accept, "*/*");
}

/* MHD_get_connection_values callback: add one header's size (name, ": ", value, CRLF). */
static enum MHD_Result
add_header_size(void *cls, enum MHD_ValueKind kind AB_UNUSED, const char *key, const char *value)
{
        size_t *total = cls;

        *total += strlen(key) + 4 + (value ? strlen(value) : 0);
        return MHD_YES;
}

/* Whether the request line and headers fit MCP_HTTP_HEADERS_MAX. (MHD's connection memory,
 * twice that, closes the connection of a request whose headers do not even fit there.) */
bool
mcp_http_headers_fit(struct MHD_Connection *conn, const char *url, const char *method)
{
        size_t total = strlen(method) + 1 + strlen(url) + 11;

        MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &total);
        return total <= MCP_HTTP_HEADERS_MAX;
}

/* ---- POST -------------------------------------------------------------------------------- */

bool
mcp_http_known_legacy_version(const char *v)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(legacy_versions); i++)
                if (strcmp(v, legacy_versions[i]) == 0)
                        return true;
        return false;
}

/* The 2026-07-28 header checks (SEP-2243): Mcp-Method and Mcp-Name against the body, the
 * version header against _meta. Returns MHD_YES with *ret_done set when it answered. */
enum MHD_Result
mcp_http_check_modern_headers(struct req *q, const cJSON *m, const char *version, bool *ret_done)
{
        struct MHD_Connection *conn = q->conn;
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(m, "method");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(m, "params");
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(meta, "io.modelcontextprotocol/protocolVersion");
        const cJSON *name = NULL;
        char b1[512], b2[512];
        const char *hm = mcp_http_trimmed(mcp_http_header(conn, "Mcp-Method"), b1, sizeof b1);
        const char *hn = mcp_http_trimmed(mcp_http_header(conn, "Mcp-Name"), b2, sizeof b2);

        *ret_done = true;
        if (!cJSON_IsString(method)) {
                *ret_done = false; /* not a request: the core says what is wrong */
                return MHD_YES;
        }
        if (!hm || strcmp(hm, method->valuestring) != 0)
                return mcp_http_reply_error(
                        conn, 400, q->id_text, RPC_HEADER_MISMATCH,
                        hm ? "Header mismatch: Mcp-Method does not match the body's method"
                           : "Header mismatch: the Mcp-Method header is required",
                        NULL);
        if (strcmp(method->valuestring, "tools/call") == 0 ||
            strcmp(method->valuestring, "prompts/get") == 0)
                name = cJSON_GetObjectItemCaseSensitive(params, "name");
        else if (strcmp(method->valuestring, "resources/read") == 0)
                name = cJSON_GetObjectItemCaseSensitive(params, "uri");
        if (cJSON_IsString(name) && (!hn || strcmp(hn, name->valuestring) != 0))
                return mcp_http_reply_error(conn, 400, q->id_text, RPC_HEADER_MISMATCH,
                                            hn ? "Header mismatch: Mcp-Name does not match the body's params"
                                               : "Header mismatch: the Mcp-Name header is required",
                                            NULL);
        if (cJSON_IsString(pv) && strcmp(pv->valuestring, version) != 0)
                return mcp_http_reply_error(conn, 400, q->id_text, RPC_HEADER_MISMATCH,
                                            "Header mismatch: MCP-Protocol-Version does not match "
                                            "_meta[\"io.modelcontextprotocol/protocolVersion\"]",
                                            NULL);
        if (!cJSON_IsString(pv))
                return mcp_http_reply_error(
                        conn, 400, q->id_text, RPC_INVALID_PARAMS,
                        "Invalid params: params._meta[\"io.modelcontextprotocol/protocolVersion\"] is "
                        "required on every " MODERN_VERSION " request",
                        NULL);
        *ret_done = false;
        return MHD_YES;
}
