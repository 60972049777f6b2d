/* The host's view of the broker: a client connection and the few operations the host makes
 * (docs/protocol.md): run-open/close, host-config, call-begin, call-end. Blocking, with a
 * timeout: the broker answers in microseconds, and a broker that does not answer stops calls
 * rather than hanging them. */
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#define HB_TIMEOUT_MS 5000

struct hb_broker;

int hb_connect(const char *path, struct hb_broker **ret);
void hb_free(struct hb_broker *b);

/* Open a run labelled label; *ret is a new string. Returns 0, -EPERM (denied: *ret_reason set
 * to a static reason string) or -errno. */
int hb_run_open(struct hb_broker *b, const char *label, char **ret, const char **ret_reason);
int hb_run_close(struct hb_broker *b, const char *run);

/* Ask which of tools (names) policy allows, with their settings, and the modules'
 * configuration. *ret is the reply's object {"tools":{name:{max_result_bytes,timeout_ms}},
 * "modules":{name:{...}}}. Returns 0 or -errno. */
int hb_host_config(struct hb_broker *b, const char *const *tools, size_t n, cJSON **ret);

struct hb_grant {
        char token[64];                /* "abt_..." (wiped by hb_grant_clear) */
        uint64_t call;
};
/* call-begin for run/tool with the arguments' JSON text, binding the token to worker_pid, for
 * a token lifetime of ttl_s seconds (0 = the broker's default; the broker caps it).
 * Returns 0 with *ret filled; -EPERM with *ret_reason and *ret_message (new string) when
 * denied; -errno otherwise. */
int hb_call_begin(struct hb_broker *b, const char *run, const char *tool, const char *args_json,
                  pid_t worker_pid, unsigned ttl_s, struct hb_grant *ret, char **ret_reason, char **ret_message);
/* call-end. status: ok|error|timeout|cancelled|crashed. Returns 0 or -errno. */
int hb_call_end(struct hb_broker *b, const struct hb_grant *g, const char *status, uint64_t result_bytes,
                uint64_t duration_ms);
void hb_grant_clear(struct hb_grant *g);

/* http-token-check: whether token (an "abh_" bearer token of agentbrokerctl http-token) is
 * valid. Returns 0 (*ret_ttl_s: seconds it stays valid), -EPERM (*ret_reason: static
 * reason) or -errno. */
int hb_http_token_check(struct hb_broker *b, const char *token, unsigned *ret_ttl_s, const char **ret_reason);
/* http-listener: tell the broker (which audits it) that an HTTP listener starts on address
 * with auth "bearer" or "insecure-no-auth". Returns 0 or -errno. */
int hb_http_listener(struct hb_broker *b, const char *address, const char *auth);
/* identity-jwt: a dial JWT for the tunnel (docs/tunnel.md), signed by the broker with the
 * policy's tunnel identity key for audience, carrying session and run. *ret_jwt is a new
 * string (wipe it with ab_strfreezero). Returns 0, -EPERM/-EACCES (refused) or -errno. */
int hb_identity_jwt(struct hb_broker *b, const char *audience, const char *session, const char *run,
                    char **ret_jwt);
/* tunnel-event: have the broker audit a tunnel event (connect|disconnect|auth-fail) with
 * reason (NULL for connect). Returns 0 or -errno. */
int hb_tunnel_event(struct hb_broker *b, const char *event, const char *url, const char *session,
                    const char *reason, const char *run);
