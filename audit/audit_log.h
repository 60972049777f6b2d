/* SPDX-License-Identifier: MIT */
/* The audit trail: one serialized path into Linux audit (AUDIT_TRUSTED_APP records) and the
 * same event into journald (AGENTBROKER_* fields, a MESSAGE_ID per event type).
 * docs/audit.md describes the record grammar. Never put a secret value in an event. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum ab_event_type {
        AB_EV_RUN_OPEN,
        AB_EV_RUN_CLOSE,
        AB_EV_CALL_BEGIN,
        AB_EV_CALL_END,
        AB_EV_CALL_DENY,
        AB_EV_SECRET_USE,
        AB_EV_TOKEN_DENY,
        AB_EV_POLICY_LOAD,
        AB_EV_HTTP_TOKEN_ISSUE,  /* an HTTP bearer token was issued (agentbrokerctl http-token) */
        AB_EV_HTTP_TOKEN_DENY,   /* an HTTP bearer token was refused (unknown, expired, malformed) */
        AB_EV_HTTP_LISTENER,     /* agentbroker-mcp started an HTTP listener (detail: address, auth) */
        AB_EV_TUNNEL_CONNECT,    /* agentbroker-mcp --tunnel: connected and authenticated */
        AB_EV_TUNNEL_DISCONNECT, /* the tunnel connection ended (reason) */
        AB_EV_TUNNEL_AUTH_FAIL,  /* the tunnel was refused: JWT rejected, certificate or pin */
        AB_EV_CALL_REJECT, /* the host refused a tools/call before asking (unknown tool, schema, limits) */
        AB_EV_RUN_CLIENT,  /* an MCP client (clientInfo) initialized a session of the run */
        AB_EV_RUN_TEARDOWN, /* a run's sandbox was torn down (reason: host-exit, host-died; detail: what was done) */
        AB_EV_EGRESS_CONNECT, /* agentbroker-egress asked for a destination: allowed or denied */
        AB_EV_EGRESS_CLOSE,   /* a granted TCP connection ended: bytes sent and received */
        AB_EV_EGRESS_HTTP,    /* an HTTP request made by agentbroker-egress ended: status, bytes */
        _AB_EV_MAX,
};

/* One event. Unused string members are NULL, unused numbers negative (-1). */
struct ab_event {
        enum ab_event_type type;
        bool success;            /* res=success|failed */
        uid_t peer_uid;          /* the caller: suid= */
        pid_t peer_pid;          /* spid=; 0 when there is no caller (policy-load at start) */
        const char *run;         /* run id */
        int64_t call;            /* call id within the broker (-1 = none) */
        const char *tool;        /* "module.tool" */
        const char *secret;      /* secret name (never its value) */
        const char *operation;   /* secret operation: read|sign|mint-jwt */
        const char *reason;      /* denial reason code, e.g. "token-expired" */
        const char *args_sha256; /* hex digest of the call's arguments */
        int64_t args_len;
        const char *status;         /* call-end: ok|error|timeout|cancelled|crashed */
        int64_t result_bytes;       /* call-end: bytes returned; run-close: total */
        int64_t duration_ms;        /* call-end / run-close */
        int64_t calls;              /* run-close: calls begun */
        int64_t denied;             /* run-close: calls denied */
        int64_t rejected;           /* run-close: calls the host refused (tool-call-reject) */
        int64_t redactions;         /* call-end: spans redacted from the worker's output */
        const char *redacted;       /* call-end: the secrets redacted (names, comma-separated) */
        const char *client;         /* run-client: clientInfo.name */
        const char *client_version; /* run-client: clientInfo.version */
        int64_t login_uid;          /* run-open, run-client: the caller's /proc/PID/loginuid */
        int64_t login_ses;          /* ... and /proc/PID/sessionid (4294967295: unset) */
        const char *token_id;       /* short token id (first 8 hex chars of its hash) */
        const char *detail;         /* policy-load: the main policy file; free text otherwise */
        /* egress-connect, egress-close, egress-http (NULL / -1 elsewhere) */
        const char *host; /* destination host as asked */
        int64_t port;
        const char *address; /* the resolved address connected to */
        const char *scheme;  /* tcp|http|https */
        const char *method;  /* HTTP method */
        const char *path;    /* HTTP path without the query string */
        int64_t http_status;
        int64_t bytes_sent, bytes_received;
};

struct ab_audit;

/* Open the audit path. failure_deny is the policy's audit.failure. A kernel without audit
 * or an auditd that refuses (ECONNREFUSED/EPROTONOSUPPORT/EINVAL) is "not configured": logged
 * once, and later events go to the journal only. (Precisely: EPROTONOSUPPORT, EAFNOSUPPORT,
 * EINVAL or EPERM from audit_open(), ECONNREFUSED or EPROTONOSUPPORT when sending; see
 * docs/audit.md.) Returns 0 or -errno (only -ENOMEM). */
int ab_audit_open(bool failure_deny, struct ab_audit **ret);
/* Change the failure mode (on policy reload). */
void ab_audit_set_failure_deny(struct ab_audit *a, bool failure_deny);
/* Whether audit records are being written (false when not configured). */
bool ab_audit_configured(const struct ab_audit *a);
/* The errno of the last failed audit record (0: the last one was written, or none failed
 * yet, or audit is not configured). For status: a failing audit trail is reported. */
int ab_audit_last_error(struct ab_audit *a);
/* Whether audit.failure is deny (failed records deny the operations). */
bool ab_audit_failure_deny(const struct ab_audit *a);
void ab_audit_free(struct ab_audit *a);

/* Write ev to audit (serialized, no hostname lookup) and to the journal.
 * Returns 0 when the audit record was written or audit is not configured;
 * -errno when configured audit failed to take the record — with failure_deny set the
 * caller must then deny the operation. (With failure_deny unset such a failure is logged
 * once per errno and 0 is returned, so "emit < 0 => deny" is always right.) -EINVAL for a
 * NULL or out-of-range event. Journal failures are logged once, not returned. */
int ab_audit_emit(struct ab_audit *a, const struct ab_event *ev);

/* An event of type by uid/pid with success set and every optional number absent (-1): the one
 * starting point for every record. */
struct ab_event ab_event_init(enum ab_event_type type, uid_t peer_uid, pid_t peer_pid);

/* Defer journal entries (not audit records) until ab_audit_flush_journal(): the broker writes
 * the audit record, the gate, before it answers, and the journal entry, the operations log,
 * right after its reply is sent. At most 8 entries wait; past that they are written at once.
 * Not thread-safe: for a single-threaded caller. Turning it off flushes. */
void ab_audit_defer_journal(struct ab_audit *a, bool defer);
/* Write every deferred journal entry. */
void ab_audit_flush_journal(struct ab_audit *a);

/* "op=" name of an event type (e.g. "tool-call-begin"); NULL when t is out of range. */
const char *ab_event_op(enum ab_event_type t);
/* The event type whose op= name is op. Returns 0 or -EINVAL. */
int ab_event_from_op(const char *op, enum ab_event_type *ret);
/* The journal MESSAGE_ID (32 hex chars, as in systemd/agentbroker.catalog) of an event
 * type; NULL when t is out of range. */
const char *ab_event_message_id(enum ab_event_type t);

/* Records carry this marker right after op= so the report can tell ours from other
 * AUDIT_TRUSTED_APP producers: "op=<verb> ab_ver=1 ...". */
#define AB_AUDIT_VERSION 1
/* ab_audit_format never needs more than this (including the NUL): every free-form value
 * is cut to a per-field limit (docs/audit.md) before it is encoded. */
#define AB_AUDIT_RECORD_MAX 5120

/* Copy len bytes of s into out (size bytes, NUL-terminated) for display: valid UTF-8 is
 * kept, control characters, DEL and invalid bytes become "\xNN"; output that does not fit
 * is cut at a character boundary and ends with "...". Returns the length written. */
size_t ab_audit_sanitize(const char *s, size_t len, char *out, size_t size);
/* Format the audit record text (without res=) for ev into buf. Returns the length, or
 * -ENOSPC when it does not fit, -ENOMEM. Exposed for unit tests. */
int ab_audit_format(const struct ab_event *ev, char *buf, size_t size);
