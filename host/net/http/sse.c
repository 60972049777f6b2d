/* SPDX-License-Identifier: MIT */
/* HTTP responses: JSON replies and errors, and SSE streams fed from a request's queue. */
#include "config.h"

#include "host/net/http/internal.h"

/* ---- HTTP responses --------------------------------------------------------------------- */

void
mcp_http_add_common_headers(struct MHD_Response *resp)
{
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

/* Queue a response with a body (copied). Returns MHD_YES/MHD_NO. */
enum MHD_Result
mcp_http_reply(struct MHD_Connection *conn, unsigned status, const char *ctype, const char *body, size_t len,
               const char *session_id, const char *extra_name, const char *extra_value)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        mcp_http_add_common_headers(resp);
        if (ctype)
                MHD_add_response_header(resp, "Content-Type", ctype);
        if (session_id)
                MHD_add_response_header(resp, "Mcp-Session-Id", session_id);
        if (extra_name)
                MHD_add_response_header(resp, extra_name, extra_value);
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* An HTTP error with a JSON-RPC error body (id: the request's, or null). */
enum MHD_Result
mcp_http_reply_error(struct MHD_Connection *conn, unsigned status, const char *id_text, int code,
                     const char *message, const char *data_json)
{
        cJSON *msg = cJSON_CreateString(message);
        _cleanup_free_ char *m = cJSON_PrintUnformatted(msg), *body = NULL;
        int n;

        cJSON_Delete(msg);
        if (!m)
                return MHD_NO;
        n = asprintf(&body, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":%d,\"message\":%s%s%s}}",
                     id_text ? id_text : "null", code, m, data_json ? ",\"data\":" : "",
                     data_json ? data_json : "");
        if (n < 0) {
                body = NULL;
                return MHD_NO;
        }
        return mcp_http_reply(conn, status, "application/json", body, (size_t)n, NULL, NULL, NULL);
}

enum MHD_Result
mcp_http_reply_plain(struct MHD_Connection *conn, unsigned status, const char *text, const char *hname,
                     const char *hvalue)
{
        return mcp_http_reply(conn, status, "text/plain; charset=utf-8", text, strlen(text), NULL, hname,
                              hvalue);
}

/* The SSE content callback: write what is queued; suspend while nothing is. */
static ssize_t
sse_reader(void *cls, uint64_t pos AB_UNUSED, char *buf, size_t max)
{
        struct req *q = cls;
        size_t n;

        if (q->broken)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        n = q->out_len - q->out_off;
        if (n > 0) {
                if (n > max)
                        n = max;
                memcpy(buf, q->out + q->out_off, n);
                q->out_off += n;
                if (q->out_off == q->out_len) {
                        free(q->out);
                        q->out = NULL;
                        q->out_len = q->out_off = 0;
                }
                return (ssize_t)n;
        }
        if (q->complete)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (q->conn && !q->suspended) {
                q->suspended = true;
                MHD_suspend_connection(q->conn);
        }
        return 0;
}

/* The SSE stream of q, once its first event is there (or it waited SSE_HEADERS_DEFER_S): when
 * the whole answer is already in (the common case of a quick call), one buffer with a length,
 * sent with the headers in one write; otherwise a stream fed by sse_reader. */
enum MHD_Result
mcp_http_queue_sse(struct req *q)
{
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (q->complete && !q->broken)
                resp = MHD_create_response_from_buffer(q->out_len - q->out_off,
                                                       q->out ? q->out + q->out_off : (char *)"",
                                                       MHD_RESPMEM_MUST_COPY);
        else
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_reader, q, NULL);
        if (!resp)
                return MHD_NO;
        mcp_http_add_common_headers(resp);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        if (q->sess && q->new_session)
                MHD_add_response_header(resp, "Mcp-Session-Id", q->sess->id);
        q->queued = true;
        ret = MHD_queue_response(q->conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* The final JSON answer of q, now that it is there. */
enum MHD_Result
mcp_http_queue_json(struct req *q)
{
        enum MHD_Result ret;

        q->queued = true;
        if (q->broken && !q->out)
                return mcp_http_reply_plain(q->conn, 404, "the session ended\n", NULL, NULL);
        ret = mcp_http_reply(q->conn, q->http_status ? q->http_status : 200, "application/json",
                             q->out ? q->out : "", q->out_len,
                             q->sess && q->new_session && q->error_code == 0 ? q->sess->id : NULL, NULL,
                             NULL);
        return ret;
}
