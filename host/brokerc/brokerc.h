/* SPDX-License-Identifier: MIT */
/* The host's view of the broker: a client connection and the few operations the host makes
 * (docs/protocol.md): run-open/close, host-config, call-begin, call-end. The plain functions
 * block, with a timeout: the broker answers in microseconds, and a broker that does not answer
 * stops calls rather than hanging them. The _async variants (once hb_attach_event() gave an
 * event loop) pipeline their requests on a second, non-blocking connection and report each
 * reply to its own callback, so that no request ever blocks the loop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "common/name.h"

#define HB_TIMEOUT_MS 5000

struct hb_broker;

int hb_connect(const char *path, struct hb_broker **ret);
/* Send whatever asynchronous requests are still pending (waiting for their replies up to
 * HB_TIMEOUT_MS in all; the rest fail with -ETIMEDOUT), then close and free. Accepts NULL. */
void hb_free(struct hb_broker *b);

/* Open a run labelled label; *ret is a new string. Returns 0, -EPERM (denied: *ret_reason set
 * to a static reason string) or -errno. */
int hb_run_open(struct hb_broker *b, const char *label, char **ret, const char **ret_reason);
/* run-close with the host's teardown report (ownership of teardown passes; NULL: none). */
int hb_run_close_report(struct hb_broker *b, const char *run, cJSON *teardown);
/* run-open with a policy profile (and bound to this process: the broker tears the run down
 * when it ends): *ret_profile is the profile as the broker sent it (JSON,
 * ab_policy_profile_to_json()). */
int hb_run_open_profile(struct hb_broker *b, const char *label, const char *profile, char **ret,
                        cJSON **ret_profile, const char **ret_reason);
int hb_run_close(struct hb_broker *b, const char *run);
/* Tell the broker whether this host serves module (served) or refused it and why (reason,
 * cut to HB_MODULE_REASON_MAX bytes); `agentbrokerctl status` shows it. Returns 0 or -errno. */
#define HB_MODULE_REASON_MAX 512
int hb_module_report(struct hb_broker *b, const char *module, bool served, const char *reason);

/* Ask which of tools (names) policy allows, with their settings, and the modules'
 * configuration. *ret is the reply's object {"tools":{name:{max_result_bytes,timeout_ms}},
 * "modules":{name:{...}}, "servers":{name:{...}}}. Returns 0 or -errno. */
int hb_host_config(struct hb_broker *b, const char *const *tools, size_t n, cJSON **ret);

#define HB_GRANT_READS_MAX 128 /* readable secrets vouched for per call (more: not vouched) */
#define HB_SECRET_NAME_MAX AB_NAME_MAX

/* A secret the call may read, and the digest of its value: SHA-256(nonce || value). */
struct hb_read_digest {
        char name[HB_SECRET_NAME_MAX + 1];
        unsigned char sha256[32];
};
/* server-env: the value of the secret policy passes to server as variable var (for run; the
 * broker audits it as secret-use, operation "env"). *ret_value (len bytes, NUL-terminated by
 * the decoder or not: use the length) must be wiped and freed. Returns 0, -EPERM or -errno. */
int hb_server_env(struct hb_broker *b, const char *run, const char *server, const char *var,
                  unsigned char **ret_value, size_t *ret_len);

struct hb_grant {
        char token[64]; /* "abt_..." (wiped by hb_grant_clear) */
        uint64_t call;
        unsigned char redact_nonce[32]; /* call-begin's redact_nonce */
        struct hb_read_digest reads[HB_GRANT_READS_MAX];
        size_t n_reads;
        /* Set by the caller before call-end: spans redacted from the call's output and the
         * secrets they were (names[n_redacted], not owned; read when call-end is sent). */
        uint64_t redactions;
        const char *const *redacted;
        size_t n_redacted;
};
/* Whether the broker vouched, in g, that value (len bytes) is the value of secret name that
 * g's call may read (its digest in call-begin's reply matches). */
bool hb_grant_vouches(const struct hb_grant *g, const char *name, const unsigned char *value, size_t len);
/* call-begin for run/tool with the arguments' JSON text, binding the token to worker_pid, for
 * a token lifetime of ttl_s seconds (0 = the broker's default; the broker caps it).
 * Returns 0 with *ret filled; -EPERM with *ret_reason and *ret_message (new string) when
 * denied; -errno otherwise. */
int hb_call_begin(struct hb_broker *b, const char *run, const char *tool, const char *args_json,
                  pid_t worker_pid, unsigned ttl_s, struct hb_grant *ret, char **ret_reason,
                  char **ret_message);
/* call-end. status: ok|error|timeout|cancelled|crashed; g's redactions and redacted names
 * go with it (when redactions > 0). Returns 0 or -errno. */
int hb_call_end(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
                uint64_t duration_ms);
void hb_grant_clear(struct hb_grant *g);

/* http-token-check: whether token (an "abh_" bearer token of agentbrokerctl http-token) is
 * valid. Returns 0 (*ret_ttl_s: seconds it stays valid), -EPERM (*ret_reason: static
 * reason) or -errno. */
int hb_http_token_check(struct hb_broker *b, const char *token, unsigned *ret_ttl_s,
                        const char **ret_reason);
/* http-listener: tell the broker (which audits it) that an HTTP listener starts on address
 * with auth "bearer" or "insecure-no-auth", for run (the host's run; may be NULL). The broker
 * takes it from an admin, or for an open run of this connection or of the caller's uid.
 * Returns 0 or -errno. */
int hb_http_listener(struct hb_broker *b, const char *address, const char *auth, const char *run);
/* Report count requests refused for want of a valid token from source (an address) with reason
 * over seconds: one aggregated http-token-deny record (the token checks ask the broker not to
 * record each refusal). Returns 0 or -errno. */
int hb_http_auth_deny(struct hb_broker *b, const char *source, const char *reason, unsigned count,
                      unsigned seconds);
/* identity-jwt: a dial JWT for the tunnel (docs/tunnel.md), signed by the broker with the
 * policy's tunnel identity key for audience, carrying session and run. *ret_jwt is a new
 * string (wipe it with ab_strfreezero). Returns 0, -EPERM/-EACCES (refused) or -errno. */
int hb_identity_jwt(struct hb_broker *b, const char *audience, const char *session, const char *run,
                    char **ret_jwt);
/* tunnel-event: have the broker audit a tunnel event (connect|disconnect|auth-fail) with
 * reason (NULL for connect) and, for a failed dial, the stage it failed at (or NULL).
 * Returns 0 or -errno. */
int hb_tunnel_event(struct hb_broker *b, const char *event, const char *url, const char *session,
                    const char *reason, const char *stage, const char *run);

/* ---------- asynchronous requests ---------- */

struct hb_request;

/* Serve the _async requests on event (a reference is taken). Returns 0 or -errno. */
int hb_attach_event(struct hb_broker *b, sd_event *event);
/* Override HB_TIMEOUT_MS for asynchronous requests (tests, slow brokers). */
void hb_set_timeout_ms(struct hb_broker *b, unsigned ms);
/* Wait (blocking, at most timeout_ms) until no asynchronous request is pending, running their
 * callbacks. Returns 0, or -ETIMEDOUT with requests still pending. */
int hb_flush(struct hb_broker *b, int timeout_ms);
/* Asynchronous requests not yet answered. */
size_t hb_pending(const struct hb_broker *b);

/* The outcome of a call-begin: r is 0 (grant filled; it is wiped after the callback
 * returns: copy it), -EPERM (denied: reason is one of the broker's reasons, message its
 * text), or -errno (-ETIMEDOUT, -ECONNRESET, ...; reason and message NULL). */
typedef void (*hb_begin_fn)(void *userdata, int r, const struct hb_grant *grant, const char *reason,
                            const char *message);
/* The outcome of a call-end: 0 or -errno. */
typedef void (*hb_end_fn)(void *userdata, int r);

/* call-begin, as hb_call_begin(), without waiting: cb runs on the event loop when the reply
 * comes, the request times out or its connection dies. The request is pipelined behind the
 * ones in flight. *ret_req (may be NULL) is the request, for hb_request_cancel(), valid until
 * cb runs. Without an attached event loop the request is made blocking and cb runs before
 * this returns (*ret_req is then NULL). Returns 0 (cb will run exactly once) or -errno (cb
 * will not run). */
int hb_call_begin_async(struct hb_broker *b, const char *run, const char *tool, const char *args_json,
                        pid_t worker_pid, unsigned ttl_s, hb_begin_fn cb, void *userdata,
                        struct hb_request **ret_req);
/* Forget a pending call-begin: its callback will not run. When the broker grants it
 * anyway, the call is ended at once with status "cancelled" (the broker always gets its
 * call-end). Accepts NULL. */
void hb_request_cancel(struct hb_request *req);
/* call-end, as hb_call_end(), without waiting; cb may be NULL (a failure is then logged).
 * The grant may be cleared as soon as this returns. Returns 0 (cb will run) or -errno. */
int hb_call_end_async(struct hb_broker *b, const struct hb_grant *g, const char *status,
                      uint64_t result_bytes, uint64_t duration_ms, hb_end_fn cb, void *userdata);

/* call-reject (docs/protocol.md) without waiting for the reply (a failure is logged): the host
 * refused a tools/call of tool (cut to 128 bytes at a UTF-8 boundary) in run for reason
 * (unknown-tool, invalid-params, invalid-args, args-nul, duplicate-id, too-many-calls,
 * queue-full, no-worker, missing-capability); args_json (may be NULL) goes as its digest and
 * length. Returns 0, -EAGAIN (4096 such requests wait for the broker already: not sent) or
 * -errno. */
int hb_call_reject_async(struct hb_broker *b, const char *run, const char *tool, const char *reason,
                         const char *args_json);
/* run-client without waiting: the clientInfo name and version (each may be NULL; cut to 128
 * and 64 bytes) of an MCP session of run. Returns 0 or -errno. */
int hb_run_client_async(struct hb_broker *b, const char *run, const char *name, const char *version);
