/* SPDX-License-Identifier: MIT */
/* The audit trail: every broker decision as one AUDIT_TRUSTED_APP record (through a single,
 * mutex-serialized libaudit socket) and as one journal entry with AGENTBROKER_* fields.
 * docs/audit.md describes the record grammar, the journal fields and the failure modes.
 *
 * Hot path: ~3 events per tool call at >10,000 calls/s. Records and journal entries are
 * built in fixed stack buffers; the only allocations are the ones audit_encode_nv_string()
 * makes for each free-form value (the project rule: every free-form value goes through it). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <libaudit.h>
#include <systemd/sd-journal.h>

#include "audit/audit_log.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/utf8.h"
#include "common/secmem.h"

/* ------------------------------------------------------------------------------------------ */
/* Event types                                                                                */

static const char *const event_ops[_AB_EV_MAX] = {
        [AB_EV_RUN_OPEN] = "run-open",
        [AB_EV_RUN_CLOSE] = "run-close",
        [AB_EV_CALL_BEGIN] = "tool-call-begin",
        [AB_EV_CALL_END] = "tool-call-end",
        [AB_EV_CALL_DENY] = "tool-call-deny",
        [AB_EV_SECRET_USE] = "secret-use",
        [AB_EV_TOKEN_DENY] = "token-deny",
        [AB_EV_POLICY_LOAD] = "policy-load",
        [AB_EV_HTTP_TOKEN_ISSUE] = "http-token-issue",
        [AB_EV_HTTP_TOKEN_DENY] = "http-token-deny",
        [AB_EV_HTTP_LISTENER] = "http-listener",
        [AB_EV_TUNNEL_CONNECT] = "tunnel-connect",
        [AB_EV_TUNNEL_DISCONNECT] = "tunnel-disconnect",
        [AB_EV_TUNNEL_AUTH_FAIL] = "tunnel-auth-fail",
        [AB_EV_CALL_REJECT] = "tool-call-reject",
        [AB_EV_RUN_CLIENT] = "run-client",
        [AB_EV_RUN_TEARDOWN] = "run-teardown",
        [AB_EV_EGRESS_CONNECT] = "egress-connect",
        [AB_EV_EGRESS_CLOSE] = "egress-close",
        [AB_EV_EGRESS_HTTP] = "egress-http",
};

/* Fixed journal MESSAGE_IDs (generated once with `systemd-id128 new`); the same ids head the
 * entries of systemd/agentbroker.catalog. Never change one: queries and catalogs use them. */
static const char *const event_message_ids[_AB_EV_MAX] = {
        [AB_EV_RUN_OPEN] = "e97ef9421cc242d3aeec9cbf5d882d60",
        [AB_EV_RUN_CLOSE] = "0b3d941ad4af4af6910b6c9a8d4e8756",
        [AB_EV_CALL_BEGIN] = "77f78ef24a9d42f48f0040762e1f9d49",
        [AB_EV_CALL_END] = "d0844c8694fc4cdca706085c82e27795",
        [AB_EV_CALL_DENY] = "7792349206f94c0ab848c417f21039a6",
        [AB_EV_SECRET_USE] = "ba95b96aef2449b19df7196bf4da12dc",
        [AB_EV_TOKEN_DENY] = "3a728e461a994843b1a2466525dec682",
        [AB_EV_POLICY_LOAD] = "c79bf4945e67421583bea66b34722ff7",
        [AB_EV_HTTP_TOKEN_ISSUE] = "4507b24587ab48198006479fb463d8a6",
        [AB_EV_HTTP_TOKEN_DENY] = "09575780e82d4288bbfd6c4f5fa07419",
        [AB_EV_HTTP_LISTENER] = "76376b9894fa4cedaee426cfe4f03220",
        [AB_EV_TUNNEL_CONNECT] = "bea6fa5d869a4e2594ea0f9751e775fe",
        [AB_EV_TUNNEL_DISCONNECT] = "1c1838b98cf24227936bbd95b5a1a8e1",
        [AB_EV_TUNNEL_AUTH_FAIL] = "139f1fcdef374cce8077a4411662a0bf",
        [AB_EV_CALL_REJECT] = "d65f2f771ad94558b429968243f48fa6",
        [AB_EV_RUN_CLIENT] = "490a2aee47ba489d84e7341d2bfc48c4",
        [AB_EV_RUN_TEARDOWN] = "57935e9a2f94401cbc7bd3cd6d0bdc15",
        [AB_EV_EGRESS_CONNECT] = "5c0f1e9a7d3b4c6e8a2f4b1d9e7c3a65",
        [AB_EV_EGRESS_CLOSE] = "a3d95e2c1b7f4e08b6c4d2a1f9e8b7c0",
        [AB_EV_EGRESS_HTTP] = "e1b7c4a9d2f34a6b8c0e5d7f9a1b3c24",
};

/* The journal MESSAGE line of each event type, for success and failure. {name} is replaced
 * by the (sanitized) event field with that audit name, "?" when the event lacks it. */
static const char *const event_messages[_AB_EV_MAX][2] = {
        [AB_EV_RUN_OPEN] = { "Run {run} could not be opened: {reason}", "Run {run} opened" },
        [AB_EV_RUN_CLOSE] = { "Run {run} closed with errors: {calls} calls, {denied} denied, "
                              "{bytes} bytes returned, {duration_ms} ms",
                              "Run {run} closed: {calls} calls, {denied} denied, "
                              "{bytes} bytes returned, {duration_ms} ms" },
        [AB_EV_CALL_BEGIN] = { "Call {call} of run {run} could not start: tool {tool} ({reason})",
                               "Call {call} of run {run} allowed: tool {tool}" },
        [AB_EV_CALL_END] = { "Call {call} of run {run} ended {status}: tool {tool}, "
                             "{bytes} bytes in {duration_ms} ms",
                             "Call {call} of run {run} ended {status}: tool {tool}, "
                             "{bytes} bytes in {duration_ms} ms" },
        [AB_EV_CALL_DENY] = { "Call of run {run} denied: tool {tool} ({reason})",
                              "Call of run {run} denied: tool {tool} ({reason})" },
        [AB_EV_SECRET_USE] = { "Call {call} of run {run} was refused secret {secret} ({sop}) "
                               "for tool {tool}: {reason}",
                               "Call {call} of run {run} used secret {secret} ({sop}) "
                               "for tool {tool}" },
        [AB_EV_TOKEN_DENY] = { "Call token {token} denied: {reason} (tool {tool}, secret {secret})",
                               "Call token {token} denied: {reason} (tool {tool}, secret {secret})" },
        [AB_EV_POLICY_LOAD] = { "Policy not loaded: {detail}", "Policy loaded from {detail}" },
        [AB_EV_HTTP_TOKEN_ISSUE] = { "HTTP token {token} not issued: {reason}",
                                     "HTTP token {token} issued to uid {suid}: {detail}" },
        [AB_EV_HTTP_TOKEN_DENY] = { "HTTP token {token} refused: {reason}",
                                    "HTTP token {token} refused: {reason}" },
        [AB_EV_HTTP_LISTENER] = { "HTTP listener refused: {detail}", "HTTP listener started: {detail}" },
        [AB_EV_TUNNEL_CONNECT] = { "Tunnel of run {run} could not connect: {detail}",
                                   "Tunnel of run {run} connected: {detail}" },
        [AB_EV_TUNNEL_DISCONNECT] = { "Tunnel of run {run} disconnected ({reason}): {detail}",
                                      "Tunnel of run {run} disconnected ({reason}): {detail}" },
        [AB_EV_EGRESS_CONNECT] = { "Egress of call {call} of run {run} denied: tool {tool} to {scheme}://{host}:{port} "
                                   "({address}): {reason}",
                                   "Egress of call {call} of run {run} allowed: tool {tool} to {scheme}://{host}:{port} "
                                   "({address})" },
        [AB_EV_EGRESS_CLOSE] = { "Connection of call {call} of run {run} to {host}:{port} ({address}) ended: "
                                 "{sent} bytes sent, {received} received, {duration_ms} ms",
                                 "Connection of call {call} of run {run} to {host}:{port} ({address}) ended: "
                                 "{sent} bytes sent, {received} received, {duration_ms} ms" },
        [AB_EV_EGRESS_HTTP] = { "HTTP {method} of call {call} of run {run} to {host}{path} failed: {reason} "
                                "({duration_ms} ms)",
                                "HTTP {method} of call {call} of run {run} to {host}{path}: {http_status}, "
                                "{received} bytes in {duration_ms} ms" },
        [AB_EV_TUNNEL_AUTH_FAIL] = { "Tunnel of run {run} refused ({reason}): {detail}",
                                     "Tunnel of run {run} refused ({reason}): {detail}" },
        [AB_EV_CALL_REJECT] = { "Call of run {run} refused by the host: tool {tool} ({reason})",
                                "Call of run {run} refused by the host: tool {tool} ({reason})" },
        [AB_EV_RUN_CLIENT] = { "Run {run}: MCP client {client} {client_ver} (login uid {login_uid}, session {login_ses})",
                               "Run {run}: MCP client {client} {client_ver} (login uid {login_uid}, session {login_ses})" },
        [AB_EV_RUN_TEARDOWN] = { "Run {run} NOT torn down completely ({reason}): {detail}",
                                 "Run {run} torn down ({reason}): {detail}" },
};

const char *
ab_event_op(enum ab_event_type t)
{
        if ((unsigned)t >= _AB_EV_MAX)
                return NULL;
        return event_ops[t];
}

const char *
ab_event_message_id(enum ab_event_type t)
{
        if ((unsigned)t >= _AB_EV_MAX)
                return NULL;
        return event_message_ids[t];
}

int
ab_event_from_op(const char *op, enum ab_event_type *ret)
{
        if (!op)
                return -EINVAL;
        for (size_t i = 0; i < _AB_EV_MAX; i++)
                if (strcmp(op, event_ops[i]) == 0) {
                        *ret = (enum ab_event_type)i;
                        return 0;
                }
        return -EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Fields                                                                                     */

enum field_kind {
        FIELD_STR,
        FIELD_NUM
};

/* The optional fields in record order: audit name, journal name, where it lives in struct
 * ab_event, and for strings the most bytes of the value that are kept (longer values are cut
 * at a UTF-8 character boundary and end with "..."). */
static const struct field {
        const char *name;
        const char *jname;
        enum field_kind kind;
        size_t off;
        size_t cap;
} fields[] = {
        { "run", "AGENTBROKER_RUN", FIELD_STR, offsetof(struct ab_event, run), 128 },
        { "call", "AGENTBROKER_CALL", FIELD_NUM, offsetof(struct ab_event, call), 0 },
        { "tool", "AGENTBROKER_TOOL", FIELD_STR, offsetof(struct ab_event, tool), 256 },
        { "secret", "AGENTBROKER_SECRET", FIELD_STR, offsetof(struct ab_event, secret), 128 },
        { "sop", "AGENTBROKER_OPERATION", FIELD_STR, offsetof(struct ab_event, operation), 32 },
        { "reason", "AGENTBROKER_REASON", FIELD_STR, offsetof(struct ab_event, reason), 64 },
        { "args_sha256", "AGENTBROKER_ARGS_SHA256", FIELD_STR, offsetof(struct ab_event, args_sha256), 128 },
        { "args_len", "AGENTBROKER_ARGS_LEN", FIELD_NUM, offsetof(struct ab_event, args_len), 0 },
        { "status", "AGENTBROKER_STATUS", FIELD_STR, offsetof(struct ab_event, status), 32 },
        { "bytes", "AGENTBROKER_RESULT_BYTES", FIELD_NUM, offsetof(struct ab_event, result_bytes), 0 },
        { "duration_ms", "AGENTBROKER_DURATION_MS", FIELD_NUM, offsetof(struct ab_event, duration_ms), 0 },
        { "calls", "AGENTBROKER_CALLS", FIELD_NUM, offsetof(struct ab_event, calls), 0 },
        { "denied", "AGENTBROKER_DENIED", FIELD_NUM, offsetof(struct ab_event, denied), 0 },
        { "rejected", "AGENTBROKER_REJECTED", FIELD_NUM, offsetof(struct ab_event, rejected), 0 },
        { "redactions", "AGENTBROKER_REDACTIONS", FIELD_NUM, offsetof(struct ab_event, redactions), 0 },
        { "redacted", "AGENTBROKER_REDACTED", FIELD_STR, offsetof(struct ab_event, redacted), 192 },
        { "client", "AGENTBROKER_CLIENT_NAME", FIELD_STR, offsetof(struct ab_event, client), 128 },
        { "client_ver", "AGENTBROKER_CLIENT_VERSION", FIELD_STR, offsetof(struct ab_event, client_version),
          64 },
        { "login_uid", "AGENTBROKER_LOGIN_UID", FIELD_NUM, offsetof(struct ab_event, login_uid), 0 },
        { "login_ses", "AGENTBROKER_LOGIN_SESSION", FIELD_NUM, offsetof(struct ab_event, login_ses), 0 },
        { "token", "AGENTBROKER_TOKEN_ID", FIELD_STR, offsetof(struct ab_event, token_id), 64 },
        { "detail", "AGENTBROKER_DETAIL", FIELD_STR, offsetof(struct ab_event, detail), 512 },
        { "scheme", "AGENTBROKER_SCHEME", FIELD_STR, offsetof(struct ab_event, scheme), 8 },
        { "host", "AGENTBROKER_HOST", FIELD_STR, offsetof(struct ab_event, host), 128 },
        { "port", "AGENTBROKER_PORT", FIELD_NUM, offsetof(struct ab_event, port), 0 },
        { "address", "AGENTBROKER_ADDRESS", FIELD_STR, offsetof(struct ab_event, address), 48 },
        { "method", "AGENTBROKER_METHOD", FIELD_STR, offsetof(struct ab_event, method), 16 },
        { "path", "AGENTBROKER_PATH", FIELD_STR, offsetof(struct ab_event, path), 128 },
        { "http_status", "AGENTBROKER_HTTP_STATUS", FIELD_NUM, offsetof(struct ab_event, http_status), 0 },
        { "sent", "AGENTBROKER_BYTES_SENT", FIELD_NUM, offsetof(struct ab_event, bytes_sent), 0 },
        { "received", "AGENTBROKER_BYTES_RECEIVED", FIELD_NUM, offsetof(struct ab_event, bytes_received),
          0 },
};

#define FIELD_CAP_MAX 512
/* Worst case of a record: "op=tool-call-begin ab_ver=1 suid=4294967295 spid=2147483647"
 * (< 80 bytes), every number 19 digits, every string hex-encoded (2 bytes per byte). */
#define NUM_FIELDS_MAX 14
#define STR_CAPS_SUM \
        (128 + 256 + 128 + 32 + 64 + 128 + 32 + 192 + 128 + 64 + 64 + 512 + 8 + 128 + 48 + 16 + 128)
_Static_assert(80 + NUM_FIELDS_MAX * (1 + 12 + 1 + 19) + 17 * (1 + 12 + 1) + 2 * STR_CAPS_SUM + 1 <=
                       AB_AUDIT_RECORD_MAX,
               "AB_AUDIT_RECORD_MAX is too small for the field limits");
/* The record plus what audit_log_user_message() appends (" exe=<path> hostname=? addr=?
 * terminal=? res=success") must stay below the kernel's limit for a user message text
 * (AUDIT_MESSAGE_TEXT_MAX, 8560) and libaudit's MAX_AUDIT_MESSAGE_LENGTH (8970): with a
 * 5 KiB record, executable paths of up to 1,600 bytes fit. */
_Static_assert(AB_AUDIT_RECORD_MAX + 2 * 1600 + 64 <= 8560, "records may exceed the kernel limit");

static const char *
field_str(const struct ab_event *ev, const struct field *f)
{
        return *(const char *const *)((const char *)ev + f->off);
}

/* A number, or -1 when unset. The egress numbers (offsets from port on) only count in
 * egress events: the other events' initializers leave them 0. */
static int64_t
field_num(const struct ab_event *ev, const struct field *f)
{
        if (f->off >= offsetof(struct ab_event, port) && ev->type != AB_EV_EGRESS_CONNECT &&
            ev->type != AB_EV_EGRESS_CLOSE && ev->type != AB_EV_EGRESS_HTTP)
                return -1;
        return *(const int64_t *)((const char *)ev + f->off);
}

static const struct field *
field_by_name(const char *name, size_t len)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(fields); i++)
                if (strlen(fields[i].name) == len && memcmp(fields[i].name, name, len) == 0)
                        return &fields[i];
        return NULL;
}

/* Copy value into out (cap + 1 bytes) cut to cap bytes: a longer value keeps its first
 * bytes up to a UTF-8 character boundary and ends with "...". Returns the length. */
static size_t
cut_value(const char *value, size_t cap, char *out)
{
        size_t len = strnlen(value, cap + 1);

        if (len <= cap) {
                memcpy(out, value, len);
                out[len] = 0;
                return len;
        }
        len = (size_t)ab_utf8_cut(value, cap - 3);
        memcpy(out, value, len);
        memcpy(out + len, "...", 4);
        return len + 3;
}

/* Sanitize s[0..len) into out, writing at most limit bytes (out may be NULL to count).
 * Returns the bytes written; *ret_done says whether all of s was consumed. */
static size_t
sanitize_into(const unsigned char *s, size_t len, char *out, size_t limit, bool *ret_done)
{
        size_t o = 0, i = 0;

        while (i < len) {
                char esc[5];
                const char *piece;
                size_t plen, used, u = ab_utf8_seq_len((const char *)s + i, len - i);

                if (u == 1 && s[i] >= 0x20 && s[i] != 0x7F) {
                        piece = (const char *)s + i;
                        plen = used = 1;
                } else if (u > 1) {
                        piece = (const char *)s + i;
                        plen = used = u;
                } else {
                        snprintf(esc, sizeof(esc), "\\x%02X", s[i]);
                        piece = esc;
                        plen = 4;
                        used = 1;
                }
                if (o + plen > limit)
                        break;
                if (out)
                        memcpy(out + o, piece, plen);
                o += plen;
                i += used;
        }
        *ret_done = i == len;
        return o;
}

size_t
ab_audit_sanitize(const char *s, size_t len, char *out, size_t size)
{
        bool done;
        size_t n;

        if (size == 0)
                return 0;
        if (!s)
                len = 0;
        n = sanitize_into((const unsigned char *)s, len, NULL, size - 1, &done);
        if (done)
                n = sanitize_into((const unsigned char *)s, len, out, size - 1, &done);
        else if (size > 4) {
                n = sanitize_into((const unsigned char *)s, len, out, size - 4, &done);
                memcpy(out + n, "...", 3);
                n += 3;
        } else
                n = 0;
        out[n] = 0;
        return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Record text                                                                                */

struct textbuf {
        char *buf;
        size_t size;
        size_t len;
        bool overflow;
};

static void AB_PRINTF(2, 3) tb_printf(struct textbuf *t, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (t->overflow)
                return;
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= t->size - t->len) {
                t->overflow = true;
                t->buf[t->len] = 0;
                return;
        }
        t->len += (size_t)n;
}

int
ab_audit_format(const struct ab_event *ev, char *buf, size_t size)
{
        struct textbuf t = { buf, size, 0, false };

        if (!ev || !buf || size == 0 || (unsigned)ev->type >= _AB_EV_MAX)
                return -EINVAL;

        tb_printf(&t, "op=%s ab_ver=%d", event_ops[ev->type], AB_AUDIT_VERSION);
        /* suid is a uid-typed field name for auparse; both are bare decimal numbers. */
        if (ev->peer_pid > 0)
                tb_printf(&t, " suid=%u spid=%d", (unsigned)ev->peer_uid, (int)ev->peer_pid);

        for (size_t i = 0; i < AB_ELEMENTSOF(fields); i++) {
                const struct field *f = &fields[i];

                if (f->kind == FIELD_NUM) {
                        int64_t v = field_num(ev, f);
                        if (v >= 0)
                                tb_printf(&t, " %s=%" PRId64, f->name, v);
                        continue;
                }

                const char *v = field_str(ev, f);
                char tmp[FIELD_CAP_MAX + 1];
                char *enc;

                if (!v)
                        continue;
                cut_value(v, f->cap, tmp);
                /* name="value" when the value is plain printable ASCII without '"', else
                 * name=HEX (upper-case hex of the bytes), which ausearch -i and the report
                 * decode back. */
                enc = audit_encode_nv_string(f->name, tmp, 0);
                if (!enc)
                        return -ENOMEM;
                tb_printf(&t, " %s", enc);
                free(enc);
        }
        if (t.overflow)
                return -ENOSPC;
        return (int)t.len;
}

/* ------------------------------------------------------------------------------------------ */
/* The audit state                                                                            */

struct ab_audit {
        pthread_mutex_t lock;   /* serializes the libaudit socket and the fields below */
        int fd;                 /* audit netlink socket, -1 when not (yet) open */
        int last_err;           /* errno of the last logged send failure, 0 = none */
        atomic_bool configured; /* false: "not configured", events go to the journal only */
        atomic_bool failure_deny;
        atomic_int journal_err; /* errno of the last logged journal failure, 0 = none */
        bool defer;             /* journal entries wait for ab_audit_flush_journal() */
        struct journal *queue;  /* JOURNAL_QUEUE_MAX deferred entries */
        size_t queued;
};

/* Errors that mean the kernel has no (usable) audit: the socket family or protocol is
 * missing (kernel built without audit: EPROTONOSUPPORT/EAFNOSUPPORT/EINVAL from socket()),
 * or nobody in this namespace may talk to it (EPERM from socket(); ECONNREFUSED when
 * sending, e.g. from a container's user namespace). */
static bool
errno_not_configured(int err, bool at_open)
{
        switch (err) {
        case ECONNREFUSED:
        case EPROTONOSUPPORT:
        case EAFNOSUPPORT: return true;
        case EINVAL:
        case EPERM: return at_open;
        default: return false;
        }
}

/* Switch to "not configured" (journal only), once. Called with the lock held. */
static void
set_not_configured(struct ab_audit *a, int err)
{
        if (!atomic_exchange(&a->configured, false))
                return;
        if (a->fd >= 0) {
                audit_close(a->fd);
                a->fd = -1;
        }
        log_notice("Linux audit is not available (%s): audit events are written to the "
                   "journal only",
                   strerror(err));
}

int
ab_audit_open(bool failure_deny, struct ab_audit **ret)
{
        struct ab_audit *a;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        pthread_mutex_init(&a->lock, NULL);
        atomic_init(&a->configured, true);
        atomic_init(&a->failure_deny, failure_deny);
        atomic_init(&a->journal_err, 0);
        a->fd = audit_open();
        if (a->fd < 0) {
                int err = errno;
                if (errno_not_configured(err, true))
                        set_not_configured(a, err);
                else {
                        /* e.g. EMFILE: stays configured, the next event retries */
                        log_error("cannot open the audit socket: %s", strerror(err));
                        a->last_err = err;
                }
        }
        *ret = a;
        return 0;
}

void
ab_audit_set_failure_deny(struct ab_audit *a, bool failure_deny)
{
        if (a)
                atomic_store(&a->failure_deny, failure_deny);
}

bool
ab_audit_configured(const struct ab_audit *a)
{
        return a && atomic_load(&a->configured);
}

int
ab_audit_last_error(struct ab_audit *a)
{
        int err;

        if (!a)
                return 0;
        pthread_mutex_lock(&a->lock);
        err = atomic_load(&a->configured) ? a->last_err : 0;
        pthread_mutex_unlock(&a->lock);
        return err;
}

bool
ab_audit_failure_deny(const struct ab_audit *a)
{
        return a && atomic_load(&a->failure_deny);
}

void
ab_audit_free(struct ab_audit *a)
{
        if (!a)
                return;
        ab_audit_flush_journal(a);
        free(a->queue);
        if (a->fd >= 0)
                audit_close(a->fd);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

/* Send one record text. Returns 0 (written, or audit turned out not to be configured) or
 * -errno. Failures are logged once per distinct errno; nothing is retried. */
static int
audit_send_record(struct ab_audit *a, const char *msg, bool success)
{
        int r = 0, rc, err;

        pthread_mutex_lock(&a->lock);
        if (!atomic_load(&a->configured))
                goto out;
        if (a->fd < 0) {
                a->fd = audit_open();
                if (a->fd < 0) {
                        err = errno;
                        goto fail;
                }
        }

        /* hostname NULL and addr NULL: libaudit only resolves an address when it is given a
         * hostname (getaddrinfo), so no name service is touched. tty "": libaudit treats an
         * empty tty as "none" (terminal=?) and skips its own lookup, which would otherwise
         * call ttyname_r() on fds 0-2 and lstat() every record, and gethostname() when one
         * of them is a terminal. The broker's terminal says nothing about the caller anyway:
         * the caller is suid=/spid=. exe= is read once by libaudit and cached. */
        errno = 0;
        rc = audit_log_user_message(a->fd, AUDIT_TRUSTED_APP, msg, NULL, NULL, "", success ? 1 : 0);
        if (rc > 0) {
                if (a->last_err) {
                        log_notice("audit records are being written again");
                        a->last_err = 0;
                }
                goto out;
        }
        /* libaudit returns the netlink sequence (> 0), -errno, or 0 with errno set when it
         * "hides" an error (ECONNREFUSED, or EPERM without CAP_AUDIT_WRITE). */
        err = rc < 0 ? -rc : errno;
        if (err == 0)
                err = EIO;
fail:
        if (errno_not_configured(err, false)) {
                set_not_configured(a, err);
                goto out;
        }
        if (err == EBADF || err == ENOTSOCK)
                a->fd = -1; /* no longer ours: open a new socket next time */
        if (err != a->last_err) {
                bool deny = atomic_load(&a->failure_deny);
                log_error("cannot write the audit record (%s)%s; %s", strerror(err),
                          err == EPERM ? ", the broker needs CAP_AUDIT_WRITE" : "",
                          deny ? "audit.failure is deny: the operations are denied"
                               : "audit.failure is ignore: continuing without audit records");
                a->last_err = err;
        }
        r = -err;
out:
        pthread_mutex_unlock(&a->lock);
        return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Journal                                                                                    */

#define JOURNAL_FIELDS_MAX 24
#define JOURNAL_QUEUE_MAX 8 /* deferred entries: one request writes at most 3 */
#define JOURNAL_MESSAGE_MAX 1024
#define JOURNAL_VALUE_SHOWN 160 /* bytes of one field shown in MESSAGE */
#define JOURNAL_STORE_MAX (JOURNAL_MESSAGE_MAX + 2 * 1024 + STR_CAPS_SUM + 512)

struct journal {
        struct iovec iov[JOURNAL_FIELDS_MAX];
        size_t n;
        char store[JOURNAL_STORE_MAX];
        size_t used;
};

/* Append "NAME=" + len bytes of value as one journal field. */
static void
journal_add(struct journal *j, const char *name, const char *value, size_t len)
{
        size_t nlen = strlen(name), need = nlen + 1 + len;
        char *p = j->store + j->used;

        if (j->n >= JOURNAL_FIELDS_MAX || need > sizeof(j->store) - j->used)
                return; /* cannot happen with the limits above; drop rather than overflow */
        memcpy(p, name, nlen);
        p[nlen] = '=';
        memcpy(p + nlen + 1, value, len);
        j->iov[j->n++] = (struct iovec){ .iov_base = p, .iov_len = need };
        j->used += need;
}

static void
journal_add_num(struct journal *j, const char *name, int64_t v)
{
        char num[24];
        int n = snprintf(num, sizeof(num), "%" PRId64, v);
        journal_add(j, name, num, (size_t)n);
}

/* Expand the MESSAGE template of ev into out (JOURNAL_MESSAGE_MAX bytes). */
static size_t
journal_message(const struct ab_event *ev, char *out)
{
        const char *tpl = event_messages[ev->type][ev->success ? 1 : 0];
        struct textbuf t = { out, JOURNAL_MESSAGE_MAX, 0, false };

        out[0] = 0;
        while (*tpl && !t.overflow) {
                const char *open = strchr(tpl, '{'), *close;
                const struct field *f;

                if (!open) {
                        tb_printf(&t, "%s", tpl);
                        break;
                }
                close = strchr(open, '}');
                if (!close)
                        break;
                tb_printf(&t, "%.*s", (int)(open - tpl), tpl);
                f = field_by_name(open + 1, (size_t)(close - open - 1));
                tpl = close + 1;
                if (f && f->kind == FIELD_NUM) {
                        int64_t v = field_num(ev, f);
                        if (v >= 0)
                                tb_printf(&t, "%" PRId64, v);
                        else
                                tb_printf(&t, "?");
                } else if (f) {
                        const char *v = field_str(ev, f);
                        char shown[JOURNAL_VALUE_SHOWN + 1];
                        if (v) {
                                ab_audit_sanitize(v, strnlen(v, JOURNAL_VALUE_SHOWN * 4), shown,
                                                  sizeof(shown));
                                tb_printf(&t, "%s", shown);
                        } else
                                tb_printf(&t, "?");
                }
        }
        if (ev->peer_pid > 0)
                tb_printf(&t, "; caller uid %u, pid %d", (unsigned)ev->peer_uid, (int)ev->peer_pid);
        return t.overflow ? strlen(out) : t.len;
}

/* Priority: successes are informational; a denied tool call or a failure is a notice; a
 * denied token (forged, replayed, presented by the wrong peer ...) or a policy that could
 * not be loaded is a warning. */
static int
journal_priority(const struct ab_event *ev)
{
        if (ev->type == AB_EV_TOKEN_DENY || ev->type == AB_EV_HTTP_TOKEN_DENY ||
            ev->type == AB_EV_TUNNEL_AUTH_FAIL || (ev->type == AB_EV_POLICY_LOAD && !ev->success))
                return LOG_WARNING;
        if (ev->type == AB_EV_CALL_DENY || !ev->success)
                return LOG_NOTICE;
        return LOG_INFO;
}

/* Build the journal entry of ev into j. */
static void
journal_build(const struct ab_event *ev, struct journal *j)
{
        char msg[JOURNAL_MESSAGE_MAX];
        char prio[2] = { (char)('0' + journal_priority(ev)), 0 };
        size_t n;

        j->n = 0;
        j->used = 0;
        journal_add(j, "MESSAGE_ID", event_message_ids[ev->type], 32);
        journal_add(j, "PRIORITY", prio, 1);
        n = journal_message(ev, msg);
        journal_add(j, "MESSAGE", msg, n);
        journal_add(j, "SYSLOG_IDENTIFIER", program_invocation_short_name,
                    strlen(program_invocation_short_name));
        journal_add(j, "AGENTBROKER_OP", event_ops[ev->type], strlen(event_ops[ev->type]));
        journal_add(j, "AGENTBROKER_RESULT", ev->success ? "success" : "failed", ev->success ? 7 : 6);
        if (ev->peer_pid > 0) {
                journal_add_num(j, "AGENTBROKER_PEER_UID", (int64_t)ev->peer_uid);
                journal_add_num(j, "AGENTBROKER_PEER_PID", (int64_t)ev->peer_pid);
        }
        for (size_t i = 0; i < AB_ELEMENTSOF(fields); i++) {
                const struct field *f = &fields[i];
                if (f->kind == FIELD_NUM) {
                        int64_t v = field_num(ev, f);
                        if (v >= 0)
                                journal_add_num(j, f->jname, v);
                } else {
                        const char *v = field_str(ev, f);
                        char tmp[FIELD_CAP_MAX + 1];
                        if (v) {
                                /* binary-safe: sd_journal_sendv copes with newlines */
                                size_t len = cut_value(v, f->cap, tmp);
                                journal_add(j, f->jname, tmp, len);
                        }
                }
        }
}

/* Send a built entry; a failure is logged once per distinct errno. */
static void
journal_write(struct ab_audit *a, const struct journal *j)
{
        int r = sd_journal_sendv(j->iov, (int)j->n);

        if (r < 0) {
                if (atomic_exchange(&a->journal_err, -r) != -r)
                        log_warning("cannot write the journal entry: %s", strerror(-r));
        } else if (atomic_load(&a->journal_err) != 0 && atomic_exchange(&a->journal_err, 0) != 0)
                log_notice("journal entries are being written again");
}

/* Write ev to the journal now, or queue it when deferring (and the queue has room). */
static void
journal_send(struct ab_audit *a, const struct ab_event *ev)
{
        struct journal j;

        if (a->defer && a->queue && a->queued < JOURNAL_QUEUE_MAX) {
                journal_build(ev, &a->queue[a->queued++]);
                return;
        }
        journal_build(ev, &j);
        journal_write(a, &j);
}

void
ab_audit_defer_journal(struct ab_audit *a, bool defer)
{
        if (!a)
                return;
        if (defer && !a->queue)
                a->queue = calloc(JOURNAL_QUEUE_MAX, sizeof(*a->queue));
        if (!defer)
                ab_audit_flush_journal(a);
        a->defer = defer && a->queue;
}

void
ab_audit_flush_journal(struct ab_audit *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < a->queued; i++) {
                journal_write(a, &a->queue[i]);
                ab_wipe(&a->queue[i], sizeof(a->queue[i]));
        }
        a->queued = 0;
}

/* ------------------------------------------------------------------------------------------ */

int
ab_audit_emit(struct ab_audit *a, const struct ab_event *ev)
{
        int r = 0;

        if (!a || !ev || (unsigned)ev->type >= _AB_EV_MAX)
                return -EINVAL;

        if (atomic_load(&a->configured)) {
                char msg[AB_AUDIT_RECORD_MAX];
                int n = ab_audit_format(ev, msg, sizeof(msg));
                if (n < 0) {
                        log_error("cannot format the audit record: %s", strerror(-n));
                        r = n;
                } else
                        r = audit_send_record(a, msg, ev->success);
                if (r < 0 && !atomic_load(&a->failure_deny))
                        r = 0;
        }
        journal_send(a, ev);
        return r;
}

struct ab_event
ab_event_init(enum ab_event_type type, uid_t peer_uid, pid_t peer_pid)
{
        return (struct ab_event){
                .type = type,
                .success = true,
                .peer_uid = peer_uid,
                .peer_pid = peer_pid,
                .call = -1,
                .args_len = -1,
                .result_bytes = -1,
                .duration_ms = -1,
                .calls = -1,
                .denied = -1,
                .rejected = -1,
                .redactions = -1,
                .login_uid = -1,
                .login_ses = -1,
        };
}
