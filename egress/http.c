/* SPDX-License-Identifier: MIT */
/* agentbroker-egress: HTTP requests for a module, with a secret injected (libcurl).
 *
 * {"t":"http","token","tool","method","url","headers":[{"name","value"}...],"body"?} →
 * {"ok":true,"status","content_type","bytes","received","truncated","redactions"} with the
 * body in a sealed memfd (SCM_RIGHTS), or an error. Each hop is decided by the broker
 * (egress-check: scheme, host, port, method, path without the query, every resolved address)
 * and libcurl connects only to the address the broker picked (CURLOPT_RESOLVE), so a name
 * that resolves elsewhere a second time (DNS rebinding) changes nothing. Redirects are never
 * followed by libcurl: a GET or HEAD follows at most EG_REDIRECTS_MAX of them here, each one
 * checked like the first (a redirect to a destination outside the rules is answered as the
 * 3xx it is). The secret is inserted as the policy says (header or query parameter), wiped
 * from our buffers after the request, and replaced with "[redacted]" wherever it appears in
 * the response body, Content-Type or Location. The body is cut at the entry's
 * max_response_bytes (the transfer is stopped), the request at its timeout_ms. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>

#include <curl/curl.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/encode.h"
#include "common/fdpass.h"
#include "common/wire.h"
#include "egress/egress.h"
#include "common/secmem.h"

#define EG_URL_MAX 8192
#define EG_HEADERS_MAX 32
#define EG_HEADER_VALUE_MAX 4096
#define EG_BODY_MAX (96 * 1024) /* a request body (the channel's message limit) */
#define EG_REDIRECTS_MAX 3
#define EG_META_MAX 1024 /* Content-Type and Location kept from the response */
#define EG_REDACTED "[redacted]"

struct response {
        struct ab_buf body; /* bounded by the grant's max_response_bytes; wiped */
        uint64_t received;  /* body bytes that arrived, kept or not */
        bool truncated;
        char content_type[EG_META_MAX];
        char location[EG_META_MAX];
};

static size_t
on_body(char *data, size_t size, size_t n, void *userdata)
{
        struct response *rsp = userdata;
        size_t len = size * n;

        rsp->received += len;
        ab_buf_put(&rsp->body, data, len);
        if (rsp->body.err == -E2BIG) {
                rsp->truncated = true;
                return 0; /* stop the transfer: the rest would be dropped anyway */
        }
        return rsp->body.err ? 0 : len;
}

/* Copy the value of header "name: value" (CRLF stripped) into out when line is that header. */
static void
take_header(const char *line, size_t len, const char *name, char out[EG_META_MAX])
{
        size_t nl = strlen(name);

        if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
                return;
        line += nl + 1;
        len -= nl + 1;
        while (len && (*line == ' ' || *line == '\t'))
                line++, len--;
        while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
                len--;
        if (len >= EG_META_MAX)
                len = EG_META_MAX - 1;
        memcpy(out, line, len);
        out[len] = 0;
}

static size_t
on_header(char *data, size_t size, size_t n, void *userdata)
{
        struct response *rsp = userdata;
        size_t len = size * n;

        take_header(data, len, "content-type", rsp->content_type);
        take_header(data, len, "location", rsp->location);
        return len;
}

/* Replace every occurrence of secret (slen bytes) in *buf (*len bytes, *cap allocated) with
 * EG_REDACTED. Returns the number of replacements, or -ENOMEM. */
static int
redact(char **buf, size_t *len, size_t *cap, const char *secret, size_t slen)
{
        size_t rl = strlen(EG_REDACTED), count = 0, o = 0;
        char *out;

        if (!slen || !*buf)
                return 0;
        for (char *p = *buf; (p = memmem(p, *len - (size_t)(p - *buf), secret, slen)); p += slen)
                count++;
        if (!count)
                return 0;
        out = malloc(*len - count * slen + count * rl + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < *len;) {
                if (*len - i >= slen && memcmp(*buf + i, secret, slen) == 0) {
                        memcpy(out + o, EG_REDACTED, rl);
                        o += rl;
                        i += slen;
                } else
                        out[o++] = (*buf)[i++];
        }
        ab_freezero(*buf, *cap);
        *buf = out;
        *len = o;
        *cap = o + 1;
        return (int)count;
}

static int redact_meta(char meta[EG_META_MAX], const char *secret, size_t slen);

/* Redact secret (slen bytes) from rsp's body and metadata. Returns the number of spans
 * replaced or -ENOMEM. */
static int
redact_one(struct response *rsp, const char *secret, size_t slen)
{
        int a = redact(&rsp->body.p, &rsp->body.len, &rsp->body.cap, secret, slen);
        int b = a < 0 ? 0 : redact_meta(rsp->content_type, secret, slen);
        int d = a < 0 || b < 0 ? 0 : redact_meta(rsp->location, secret, slen);

        return a < 0 || b < 0 || d < 0 ? -ENOMEM : a + b + d;
}

/* Redact secret and its encodings (base64 without padding, base64url, hex in both cases)
 * from rsp; the encoded forms are wiped after use. Returns the number of spans replaced or
 * -ENOMEM. */
static int
redact_all_forms(struct response *rsp, const char *secret, size_t slen)
{
        char *forms[3] = { NULL, NULL, NULL };
        int total, n, r = 0;

        total = redact_one(rsp, secret, slen);
        if (total < 0)
                return total;
        if (ab_base64_encode(secret, slen, &forms[0]) < 0 ||
            ab_base64url_encode(secret, slen, &forms[1]) < 0 || ab_hex_encode(secret, slen, &forms[2]) < 0) {
                r = -ENOMEM;
                goto out;
        }
        for (char *e = forms[0] + strlen(forms[0]); e > forms[0] && e[-1] == '='; e--)
                e[-1] = '\0'; /* unpadded: found inside a longer base64 text too */
        for (int i = 0; i < 3; i++) {
                size_t fl = strlen(forms[i]);

                if (fl == 0 || (i == 1 && strcmp(forms[1], forms[0]) == 0))
                        continue;
                n = redact_one(rsp, forms[i], fl);
                if (n < 0) {
                        r = n;
                        goto out;
                }
                total += n;
                if (i == 2) { /* and the upper-case hex */
                        for (char *c = forms[2]; *c; c++)
                                *c = (char)toupper((unsigned char)*c);
                        n = redact_one(rsp, forms[2], fl);
                        if (n < 0) {
                                r = n;
                                goto out;
                        }
                        total += n;
                }
        }
        r = total;
out:
        for (int i = 0; i < 3; i++)
                if (forms[i]) {
                        ab_strfreezero(forms[i]);
                }
        return r;
}

/* Redact a NUL-terminated metadata string in place (it keeps its size: EG_META_MAX). */
static int
redact_meta(char meta[EG_META_MAX], const char *secret, size_t slen)
{
        size_t len = strlen(meta), cap = len + 1;
        char *copy = strdup(meta);
        int n;

        if (!copy)
                return -ENOMEM;
        n = redact(&copy, &len, &cap, secret, slen);
        if (n > 0) {
                if (len >= EG_META_MAX)
                        len = EG_META_MAX - 1;
                memcpy(meta, copy, len);
                meta[len] = 0;
        }
        ab_freezero(copy, cap);
        return n;
}

/* Whether a request header given by the module is acceptable: a token name that is not one
 * libcurl or the policy sets, a value without CR, LF or NUL. */
static bool
header_ok(const char *name, const char *value, const char *inject_header)
{
        static const char *const reserved[] = {
                "host", "content-length", "transfer-encoding",  "connection", "upgrade",
                "te",   "trailer",        "proxy-authorization"
        };

        if (!*name || strlen(name) > 64 || strlen(value) > EG_HEADER_VALUE_MAX)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_'))
                        return false;
        for (const char *p = value; *p; p++)
                if (*p == '\r' || *p == '\n')
                        return false;
        for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
                if (strcasecmp(name, reserved[i]) == 0)
                        return false;
        return !inject_header || strcasecmp(name, inject_header) != 0;
}

/* Free a header list, wiping every line first (one of them may hold the secret). */
static void
slist_wipe_free(struct curl_slist *l)
{
        for (struct curl_slist *i = l; i; i = i->next)
                ab_wipe(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

struct hop {
        char scheme[8], *host, *path, *query;
        unsigned port;
};

static void
hop_clear(struct hop *h)
{
        curl_free(h->host);
        curl_free(h->path);
        curl_free(h->query);
        *h = (struct hop){ 0 };
}

/* Take scheme, host, port, path and query from u. Returns 0 or -EINVAL with why. */
static int
hop_parse(CURLU *u, struct hop *h, const char **why)
{
        char *scheme = NULL, *port = NULL, *user = NULL;
        int r = -EINVAL;

        *h = (struct hop){ 0 };
        if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
                curl_free(user);
                *why = "credentials in the URL are not allowed";
                return -EINVAL;
        }
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
                *why = "only http and https URLs";
                goto out;
        }
        snprintf(h->scheme, sizeof(h->scheme), "%s", scheme);
        if (curl_url_get(u, CURLUPART_HOST, &h->host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PATH, &h->path, 0) != CURLUE_OK) {
                *why = "the URL lacks a host";
                goto out;
        }
        if (curl_url_get(u, CURLUPART_QUERY, &h->query, 0) != CURLUE_OK)
                h->query = NULL;
        h->port = (unsigned)strtoul(port, NULL, 10);
        /* An IPv6 literal comes back in brackets. */
        if (h->host[0] == '[') {
                size_t n = strlen(h->host);
                memmove(h->host, h->host + 1, n - 1);
                h->host[n - 2] = 0;
        }
        r = 0;
out:
        curl_free(scheme);
        curl_free(port);
        if (r < 0)
                hop_clear(h);
        return r;
}

struct http_req {
        const char *token, *tool, *method, *url, *body;
        const cJSON *headers;
};

/* Send the body in a sealed memfd with the reply. */
static int
send_response(int fd, struct response *rsp, long status, int redactions)
{
        cJSON *m = cJSON_CreateObject();
        int mfd = -1, r;

        if (!m || !cJSON_AddTrueToObject(m, "ok") || !cJSON_AddNumberToObject(m, "status", (double)status) ||
            !cJSON_AddStringToObject(m, "content_type", rsp->content_type) ||
            !cJSON_AddNumberToObject(m, "bytes", (double)rsp->body.len) ||
            !cJSON_AddNumberToObject(m, "received", (double)rsp->received) ||
            !cJSON_AddBoolToObject(m, "truncated", rsp->truncated) ||
            !cJSON_AddNumberToObject(m, "redactions", redactions) ||
            (rsp->location[0] && !cJSON_AddStringToObject(m, "location", rsp->location))) {
                r = -ENOMEM;
                goto out;
        }
        mfd = memfd_create("agentbroker-egress-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0) {
                r = -errno;
                goto out;
        }
        for (size_t o = 0; o < rsp->body.len;) {
                ssize_t n = write(mfd, rsp->body.p + o, rsp->body.len - o);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                o += (size_t)n;
        }
        (void)fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        r = eg_send(fd, m, mfd);
out:
        if (mfd >= 0)
                close(mfd);
        cJSON_Delete(m);
        return r;
}

/* Set up the transfer c of one hop: the URL, the pinned address (resolve), the headers, no
 * redirects, proxy or decoding by libcurl, the grant's timeout, the method and body of q; the
 * answer goes to rsp, libcurl's error text to errbuf (CURL_ERROR_SIZE bytes). */
static void
hop_setopt(CURL *c, const struct http_req *q, const struct eg_grant *g, const char *url,
           struct curl_slist *resolve, struct curl_slist *hdrs, struct response *rsp, char *errbuf)
{
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(g->timeout_ms ? g->timeout_ms : 10000));
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, rsp);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, rsp);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL);
        if (getenv("SSL_CERT_FILE"))
                curl_easy_setopt(c, CURLOPT_CAINFO, getenv("SSL_CERT_FILE"));
        if (strcmp(q->method, "HEAD") == 0)
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (strcmp(q->method, "GET") != 0)
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
        if (q->body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(q->body));
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        }
}

/* One hop: check, perform, answer a final response. *ret_next is set (and nothing answered)
 * when a redirect is to be followed. Returns 0, or -errno when the channel broke. */
static int
http_hop(struct eg_state *st, int fd, const struct http_req *q, CURLU *u, unsigned hop_no, bool *ret_next)
{
        char reason[64], message[256], errbuf[CURL_ERROR_SIZE] = "";
        struct response rsp = { .body = { .wipe = true } };
        struct eg_grant g = { 0 };
        struct hop h = { 0 };
        struct curl_slist *hdrs = NULL, *resolve = NULL;
        enum ab_egress_scheme scheme;
        char *url = NULL, *line = NULL;
        const char *why = NULL, *fail_reason = NULL;
        const cJSON *it;
        uint64_t t0 = ab_now_ms();
        long status = 0;
        CURLcode cc;
        CURL *c = NULL;
        int r, redactions = 0;

        *ret_next = false;
        if (hop_parse(u, &h, &why) < 0)
                return eg_reply_error(fd, "invalid", "url-invalid", "%s", why);
        (void)ab_egress_scheme_from_string(h.scheme, &scheme);
        r = eg_check(st, q->token, q->tool, scheme, h.host, h.port, q->method, h.path, &g, reason, message);
        if (r < 0) {
                r = eg_reply_error(fd, r == -EPERM ? "denied" : "io", reason, "%s%s",
                                   hop_no ? "redirect refused: " : "", message);
                goto out;
        }
        if (g.inject_query) {
                size_t n = strlen(g.inject_query) + 1 + g.inject_len + 1;
                line = malloc(n);
                if (!line) {
                        r = -ENOMEM;
                        goto out;
                }
                snprintf(line, n, "%s=%s", g.inject_query, g.inject_value);
                if (curl_url_set(u, CURLUPART_QUERY, line, CURLU_APPENDQUERY | CURLU_URLENCODE) !=
                    CURLUE_OK) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
                r = -ENOMEM;
                goto out;
        }
        {
                char pin[EG_HOST_MAX + 96];
                bool v6 = strchr(g.address, ':') != NULL;

                snprintf(pin, sizeof(pin), "%s:%u:%s%s%s", h.host, h.port, v6 ? "[" : "", g.address,
                         v6 ? "]" : "");
                resolve = curl_slist_append(NULL, pin);
        }
        cJSON_ArrayForEach(it, q->headers)
        {
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                const char *value = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "value"));
                char hl[64 + 2 + EG_HEADER_VALUE_MAX + 1];

                if (g.inject_header && strcasecmp(name, g.inject_header) == 0)
                        continue; /* the policy's header wins */
                snprintf(hl, sizeof(hl), "%s: %s", name, value);
                hdrs = curl_slist_append(hdrs, hl);
        }
        if (g.inject_header) {
                size_t n = strlen(g.inject_header) + 2 + g.inject_len + 1;
                char *hl = malloc(n);
                if (!hl) {
                        r = -ENOMEM;
                        goto out;
                }
                snprintf(hl, n, "%s: %s", g.inject_header, g.inject_value);
                hdrs = curl_slist_append(hdrs, hl);
                ab_freezero(hl, n);
        }
        c = curl_easy_init();
        if (!c || !resolve) {
                r = -ENOMEM;
                goto out;
        }
        rsp.body.max = g.max_response_bytes ? g.max_response_bytes : 1024 * 1024;
        hop_setopt(c, q, &g, url, resolve, hdrs, &rsp, errbuf);
        cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_WRITE_ERROR && rsp.truncated)
                cc = CURLE_OK;
        if (cc == CURLE_OPERATION_TIMEDOUT)
                fail_reason = "timeout";
        else if (cc != CURLE_OK)
                fail_reason = "transfer-failed";

        /* The secret out of everything the module will see: its bytes and their base64,
         * base64url and hex forms (a service that echoes a key encoded must not hand it to
         * the module either). */
        if (g.inject_value) {
                int n = redact_all_forms(&rsp, g.inject_value + g.secret_off, g.secret_len);

                if (n < 0) {
                        r = n;
                        goto out;
                }
                redactions = n;
        }
        eg_done(st, g.id, q->body ? strlen(q->body) : 0, rsp.received, ab_now_ms() - t0, (unsigned)status,
                fail_reason);

        if (fail_reason) {
                if (cc == CURLE_OPERATION_TIMEDOUT)
                        r = eg_reply_error(fd, "timeout", "timeout",
                                           "no complete answer from %s within %u ms", h.host, g.timeout_ms);
                else
                        /* libcurl's own message may quote the URL, whose query can hold an
                         * injected secret: with one, only the fixed text of the error code. */
                        r = eg_reply_error(fd, "transfer", "transfer-failed", "%s: %s", h.host,
                                           errbuf[0] && !g.inject_value ? errbuf : curl_easy_strerror(cc));
                goto out;
        }
        if (status >= 300 && status < 400 && rsp.location[0] && hop_no < EG_REDIRECTS_MAX &&
            (strcmp(q->method, "GET") == 0 || strcmp(q->method, "HEAD") == 0)) {
                /* Follow: the next hop is checked like the first. */
                if (curl_url_set(u, CURLUPART_URL, rsp.location, 0) == CURLUE_OK) {
                        *ret_next = true;
                        r = 0;
                        goto out;
                }
        }
        r = send_response(fd, &rsp, status, redactions);
out:
        if (line) {
                ab_strfreezero(line);
        }
        if (url) {
                ab_wipe(url, strlen(url));
                curl_free(url);
        }
        if (c)
                curl_easy_cleanup(c);
        slist_wipe_free(hdrs);
        curl_slist_free_all(resolve);
        ab_buf_free(&rsp.body);
        hop_clear(&h);
        eg_grant_clear(&g);
        return r;
}

int
eg_http(struct eg_state *st, int fd, const cJSON *req)
{
        struct http_req q = { 0 };
        const cJSON *it;
        CURLU *u = NULL;
        int r = 0, n = 0;
        bool next = true;

        if (ab_wire_get_string(req, "token", 64, &q.token) < 0 ||
            ab_wire_get_string(req, "tool", 128, &q.tool) < 0 ||
            ab_wire_get_string(req, "method", 15, &q.method) < 0 ||
            ab_wire_get_string(req, "url", EG_URL_MAX, &q.url) < 0)
                return eg_reply_error(fd, "invalid", "bad-request",
                                      "token, tool, method or url missing or invalid");
        if (cJSON_GetObjectItemCaseSensitive(req, "body") &&
            ab_wire_get_string(req, "body", EG_BODY_MAX, &q.body) < 0)
                return eg_reply_error(fd, "invalid", "bad-request",
                                      "body is not a string of at most %d bytes", EG_BODY_MAX);
        q.headers = cJSON_GetObjectItemCaseSensitive(req, "headers");
        if (q.headers && (!cJSON_IsArray(q.headers) || cJSON_GetArraySize(q.headers) > EG_HEADERS_MAX))
                return eg_reply_error(fd, "invalid", "bad-request", "headers must be a list of at most %d",
                                      EG_HEADERS_MAX);
        cJSON_ArrayForEach(it, q.headers)
        {
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                const char *value = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "value"));
                if (!name || !value || !header_ok(name, value, NULL))
                        return eg_reply_error(
                                fd, "invalid", "header-invalid",
                                "header %.64s is not allowed (a token name not set by agentbroker, "
                                "a value without CR or LF)",
                                name ? name : "?");
        }
        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, q.url, 0) != CURLUE_OK) {
                curl_url_cleanup(u);
                return eg_reply_error(fd, "invalid", "url-invalid", "not an absolute http or https URL");
        }
        (void)curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
        while (next && r >= 0) {
                r = http_hop(st, fd, &q, u, (unsigned)n++, &next);
        }
        curl_url_cleanup(u);
        return r;
}
