/* SPDX-License-Identifier: MIT */
/* libagentbroker-module internals: the state of a worker process and of the call it runs.
 * Nothing here is exported: the library is built with -fvisibility=hidden and a version
 * script (libagentbroker-module.sym); the public API is marked ABM_API. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include <agentbroker/module.h>

#include "common/frame.h"

/* Export a definition: the public abm_* API and the private worker entry. */
#define ABM_API __attribute__((visibility("default")))

/* The hard cap on one call's results (text blocks as JSON-escaped and structuredContent as
 * printed), whatever the policy's max_result_bytes: keeps a result frame within AB_FRAME_MAX. */
#define ABMI_RESULTS_MAX (16u * 1024 * 1024)
/* What one text block costs beyond its escaped text: {"type":"text","text":""}, */
#define ABMI_BLOCK_OVERHEAD 26
/* Longest log or progress message sent to the host; longer ones are cut (at a UTF-8 boundary). */
#define ABMI_MESSAGE_MAX 4096
/* How long a broker request may take. */
#define ABMI_BROKER_TIMEOUT_MS 10000

struct ab_client;
struct ab_secbuf;

/* The worker process: one per running module instance, one call at a time. */
struct abmi_worker {
        const char *name; /* module name (--name) */
        const struct abm_module *module;
        int host_fd;                   /* the socket to agentbroker-mcp, non-blocking */
        struct ab_frame_reader reader; /* shared by the main loop and cancellation checks */
        char *broker_path;             /* from the init frame */
        struct ab_client *broker;      /* connected before the module loads (confine.c) */
        bool confined;                 /* confine.c ran: no new broker connection is possible */
        bool broker_lost;              /* a call needed the broker and had none: exit after it */
        bool host_gone;                /* EOF or a write error on host_fd */
        bool broken;                   /* the host broke the protocol: exit after the call */
        int egress_fd;                 /* SOCK_SEQPACKET to agentbroker-egress, or -1 */
};

/* A secret read during a call, wiped when it ends. */
struct abmi_secret {
        struct ab_secbuf *value;
};

struct abm_call {
        struct abmi_worker *worker;
        uint64_t id;
        const struct abm_tool *tool;
        char tool_name[2 * ABM_NAME_MAX + 2]; /* "<module>.<tool>", as the token was issued for */
        cJSON *args;                          /* the arguments object (owned) */
        char *args_text;                      /* printed on first use */
        char *token;                          /* the call token (wiped) */
        size_t max_bytes;                     /* the policy's max_result_bytes for this tool */

        cJSON *content;          /* array of text blocks */
        cJSON *structured;       /* structuredContent, or NULL */
        size_t text_bytes;       /* escaped size of the text blocks, with overhead */
        size_t structured_bytes; /* printed size of structured */

        bool have_progress;
        double last_progress;
        bool cancelled;

        char denial[64]; /* reason of the last refused secret operation */
        bool have_denial;

        struct ab_secbuf **secrets; /* values read (NUL-terminated for convenience) */
        size_t n_secrets;
        char **jwts; /* JWTs minted (wiped) */
        size_t n_jwts;

        bool egress_used;                     /* tell agentbroker-egress when the call ends */
        struct abm_http_response **responses; /* abm_call_http answers (bodies wiped at the end) */
        size_t n_responses;
};

/* egress.c: tell agentbroker-egress that call ended (its connections are shut down), free the
 * call's HTTP responses. */
void abmi_egress_end(struct abm_call *call);
/* Remember why an operation of call was refused, for abm_call_denial() (call.c). */
void abmi_call_set_denial(struct abm_call *call, const char *reason);

/* The worker of this process, or NULL when the library is used outside agentbroker-worker
 * (abm_log then writes to stderr). */
extern struct abmi_worker *abmi_current;

/* Check that s[0..len) is UTF-8 without NUL bytes, overlong forms, surrogates or code points
 * past U+10FFFF. When valid and ret_escaped is not NULL, *ret_escaped is the length cJSON
 * prints the string with (quotes excluded). Returns true when valid. */
bool abmi_utf8_check(const char *s, size_t len, size_t *ret_escaped);
/* Cut an incomplete UTF-8 sequence off the end of s (left by a truncating snprintf). */
void abmi_utf8_trim(char *s);
/* Copy s into dst (dst_size bytes, NUL-terminated), replacing every byte that does not start
 * or continue a valid UTF-8 sequence with '?', and cutting at a character boundary. */
void abmi_utf8_sanitize(char *dst, size_t dst_size, const char *s);

/* Wipe every string (and key) in a JSON tree, then delete it. Accepts NULL. */
void abmi_json_wipe_delete(cJSON *v);

/* Send a frame to the host. Marks the worker gone on failure. Returns 0 or -errno. */
int abmi_send(struct abmi_worker *w, const cJSON *msg);

/* Start a call from a "call" frame. Returns 0, or -errno with a reason in err. */
int abmi_call_new(struct abmi_worker *w, const cJSON *frame, struct abm_call **ret, struct abm_error *err);
/* Build the result frame of a finished call whose hook returned rc. Returns the frame or NULL
 * on OOM. */
cJSON *abmi_call_result(struct abm_call *call, int rc, const struct abm_error *err);
/* Wipe and free everything the call held (token, arguments, results, secrets, JWTs).
 * Accepts NULL. */
void abmi_call_free(struct abm_call *call);
/* Drop the worker's broker connection. */
void abmi_broker_close(struct abmi_worker *w);

/* The worker's main loop (agentbroker-worker's main). */
ABM_API int abm__worker_main(int argc, char **argv);
