/* SPDX-License-Identifier: MIT */
/*
 * agentbroker module ABI, version 1.1 (1.1 added abm_call_connect, abm_call_http, abm_call_tool
 * and tools set by init)
 *
 * A module is a shared object that exports exactly one descriptor,
 *
 *     AB_MODULE_EXPORT const struct abm_module agentbroker_module = { ... };
 *
 * whose first two members are ABM_MODULE_TYPE and ABM_ABI_VERSION. agentbroker-mcp never
 * loads module code itself: each module runs in worker processes (agentbroker-worker), one
 * call at a time per process. The loader refuses a module whose ABI major differs from its
 * own; members added in later minor versions are appended at the end of the structures and
 * read only when the module's minor version says they are there.
 *
 * Build a module with
 *     cc -shared -fPIC -fvisibility=hidden -Wl,-z,defs -o mymod.so mymod.c \
 *        $(pkg-config --cflags --libs agentbroker-module)
 * and see docs/module-guide.md.
 *
 * Conventions of every function below: it returns 0 on success or a negative errno value
 * (-EINVAL bad argument, -ENOENT missing, -EPERM denied by the broker's policy, -ECANCELED
 * the call was cancelled, -ENOMEM, -EIO failure talking to the host or the broker).
 * Out-parameters are written only on success. Strings are UTF-8 and NUL-terminated.
 * None of these functions may be called from another thread than the one running the hook.
 */
#ifndef AGENTBROKER_MODULE_H
#define AGENTBROKER_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ABM_ABI_MAJOR 1
#define ABM_ABI_MINOR 1
#define ABM_MKVERSION(major, minor) ((uint32_t)(((uint32_t)(major) << 16) | ((uint32_t)(minor)&0xffffu)))
#define ABM_ABI_VERSION ABM_MKVERSION(ABM_ABI_MAJOR, ABM_ABI_MINOR)
#define ABM_GET_MAJOR(v) ((uint32_t)(v) >> 16)
#define ABM_GET_MINOR(v) ((uint32_t)(v)&0xffffu)

/* The one kind of module there is today. */
#define ABM_MODULE_TYPE 0x41424d31u /* "ABM1" */

/* The name of the exported descriptor symbol. */
#define ABM_MODULE_SYMBOL "agentbroker_module"

/* Mark the descriptor for export when building with -fvisibility=hidden. */
#define AB_MODULE_EXPORT __attribute__((visibility("default")))

/* Limits the loader enforces on a descriptor. */
#define ABM_NAME_MAX 48            /* module and tool names: [A-Za-z0-9_-]{1,48} */
#define ABM_TOOLS_MAX 128          /* tools per module */
#define ABM_SCHEMA_MAX (64 * 1024) /* input/output schema JSON text */
#define ABM_ERROR_MAX 512          /* error message, bytes including the NUL */

/* MCP tool annotation hints: unset (the MCP default applies), true or false. */
enum abm_hint {
        ABM_HINT_DEFAULT = 0,
        ABM_HINT_TRUE = 1,
        ABM_HINT_FALSE = 2,
};

struct abm_annotations {
        uint8_t read_only;   /* enum abm_hint: readOnlyHint */
        uint8_t destructive; /* destructiveHint */
        uint8_t idempotent;  /* idempotentHint */
        uint8_t open_world;  /* openWorldHint */
};

/* Where a hook writes why it failed. Write it with abm_error_set(). */
struct abm_error {
        char message[ABM_ERROR_MAX];
};

struct abm_call; /* one tool call, owned by the host library */
struct abm_json; /* a read-only parsed JSON value */

struct abm_tool {
        const char *name;          /* exposed to MCP clients as "<module>.<name>" */
        const char *title;         /* may be NULL */
        const char *description;   /* what the tool does, for the model */
        const char *input_schema;  /* JSON Schema of the arguments object, as JSON text */
        const char *output_schema; /* JSON Schema of structuredContent, or NULL */
        struct abm_annotations annotations;
        /* Run the tool. The arguments were validated against input_schema before the call
         * was made. Add results with abm_call_text()/abm_call_structured(). Return 0, or a
         * negative errno with err filled: the client gets an isError result with the message. */
        int (*call)(struct abm_call *call, struct abm_error *err);
};

struct abm_module {
        uint32_t type;        /* ABM_MODULE_TYPE */
        uint32_t abi_version; /* ABM_ABI_VERSION the module was built against */
        const char *name;     /* module name: the tools' prefix */
        const char *version;  /* the module's own version, free text */
        const struct abm_tool *tools;
        size_t n_tools;
        /* Called once per worker process before any call, with the module's configuration
         * from the policy (`modules: <name>: {...}`, an empty object when there is none),
         * which stays valid until the worker stops. Return 0 or a negative errno with err
         * filled: the module is then not served (and fini is not called). The tools are
         * described to the host after init returns, so init may adapt the tool table it
         * points to (a non-const array of its own) to its configuration, e.g. set an
         * output_schema to NULL when structured results are turned off. May be NULL. */
        int (*init)(const struct abm_json *config, struct abm_error *err);
        /* Called once when the worker process stops. May be NULL. */
        void (*fini)(void);
        /* Members added in minor versions > 0 go here. */
};

/* ---- errors ---- */

/* Format a message into err and return code (a negative errno), for
 * `return abm_error_set(err, -ENOENT, "no such file: %s", path);`. */
int abm_error_set(struct abm_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* ---- JSON values (arguments and configuration) ---- */

/* The call's arguments: a JSON object, already validated against the tool's input schema. */
const struct abm_json *abm_call_args(const struct abm_call *call);
/* The arguments as JSON text. */
const char *abm_call_args_text(const struct abm_call *call);

/* Members of an object: -ENOENT when absent, -EINVAL when of another type.
 * abm_json_get_int accepts only integral numbers within int64_t. */
int abm_json_get_string(const struct abm_json *obj, const char *key, const char **ret);
int abm_json_get_int(const struct abm_json *obj, const char *key, int64_t *ret);
int abm_json_get_number(const struct abm_json *obj, const char *key, double *ret);
int abm_json_get_bool(const struct abm_json *obj, const char *key, bool *ret);
int abm_json_get_object(const struct abm_json *obj, const char *key, const struct abm_json **ret);
int abm_json_get_array(const struct abm_json *obj, const char *key, const struct abm_json **ret);
/* Arrays: the number of elements (0 for anything else) and element i (NULL if out of range). */
size_t abm_json_array_size(const struct abm_json *arr);
const struct abm_json *abm_json_array_at(const struct abm_json *arr, size_t i);
/* The value itself, when it is a string (NULL otherwise). */
const char *abm_json_string(const struct abm_json *v);

/* ---- results ---- */

/* Append a text content block (len bytes, or strlen(text) when len is (size_t)-1). The text
 * must be UTF-8. Returns 0, -EINVAL (not UTF-8), -E2BIG (past the host's hard cap), -ENOMEM. */
int abm_call_text(struct abm_call *call, const char *text, size_t len);
/* printf-style abm_call_text. */
int abm_call_textf(struct abm_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set structuredContent (JSON text of an object; must be valid against the tool's output
 * schema — the host checks). The host also sends it as a text block when no text was added.
 * A second call replaces the first. Returns 0, -EINVAL (not a JSON object, or not UTF-8),
 * -E2BIG (past the host's hard cap), -ENOMEM. */
/* Add one MCP content block given as JSON text: an object whose "type" is text, image,
 * audio, resource or resource_link (e.g. {"type":"image","data":"<base64>","mimeType":
 * "image/png"}). Counted against the result size like text. -EINVAL for anything else.
 * (Added after 1.0 was first published; exported in the AGENTBROKER_MODULE_1.0 node.) */
int abm_call_content(struct abm_call *call, const char *block_json);
int abm_call_structured(struct abm_call *call, const char *json);

/* ---- progress, cancellation, logging ---- */

/* Report progress (must increase from call to call; total <= 0 = unknown; message may be
 * NULL). Sent to the client only when it asked for progress. Returns 0 or -ECANCELED. */
int abm_call_progress(struct abm_call *call, double progress, double total, const char *message);
/* Whether the client cancelled the call (or it timed out). Long loops should check it and
 * return -ECANCELED. */
bool abm_call_cancelled(struct abm_call *call);
/* The maximum result size the policy allows for this tool: results past it are cut by the
 * host; a module that pages (offset/cursor arguments) can size its pages with it. */
size_t abm_call_max_result_bytes(const struct abm_call *call);

enum abm_log_level {
        ABM_LOG_ERROR = 3,
        ABM_LOG_WARNING = 4,
        ABM_LOG_NOTICE = 5,
        ABM_LOG_INFO = 6,
        ABM_LOG_DEBUG = 7,
};
/* Log a line (to the host's log and, at the client's level, as an MCP log message). Never
 * log a secret. */
void abm_log(enum abm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- secrets, through the broker with this call's token ---- */

/* Read the bytes of secret name (policy must grant `read` to this tool). *ret stays valid
 * until the call ends, when it is wiped; never copy it elsewhere. Returns 0, -EPERM (denied:
 * abm_call_denial() says why), -ENOENT (the broker has no such secret available), -EIO.
 * The bytes are followed by a NUL (not counted in *ret_len) for secrets that are strings. */
int abm_call_secret_read(struct abm_call *call, const char *name, const unsigned char **ret,
                         size_t *ret_len);
/* Sign data with secret name, which never leaves the broker. alg is "hmac-sha256" (bytes
 * secret, 32-byte MAC) or "ed25519" (Ed25519 key, 64-byte signature). sig must hold 64 bytes.
 * Returns 0 with *ret_len set, -EPERM, -EINVAL, -EIO. */
int abm_call_sign(struct abm_call *call, const char *name, const char *alg, const void *data, size_t len,
                  unsigned char sig[64], size_t *ret_len);
/* Mint a short-lived EdDSA JWT with the Ed25519 key name for audience, with scope (may be
 * NULL) and ttl_s seconds (0 = the broker's default). *ret is wiped and freed when the call ends.
 * Returns 0, -EPERM, -EINVAL, -EIO. */
int abm_call_mint_jwt(struct abm_call *call, const char *name, const char *audience, const char *scope,
                      unsigned ttl_s, const char **ret);
/* abm_call_mint_jwt() that also gives the JWT's expiry (its "exp" claim, seconds since the
 * epoch) in *ret_exp when ret_exp is not NULL. */
int abm_call_mint_jwt_exp(struct abm_call *call, const char *name, const char *audience, const char *scope,
                          unsigned ttl_s, const char **ret, int64_t *ret_exp);
/* Why the broker denied the last secret operation of this call (a reason code such as
 * "secret-not-scoped"), or NULL. */
const char *abm_call_denial(const struct abm_call *call);

/* ---- the network, through agentbroker-egress (ABI 1.1) ----
 *
 * A module has no network of its own: the worker's seccomp filter refuses socket(). These two
 * calls ask agentbroker-egress, a process outside the worker, which resolves the name, has the
 * broker check the destination and every address against the tool's egress rules (policy
 * `egress:`) and audits the decision. Both return -ENOSYS when the host runs no egress
 * process, -EPERM when the policy refuses (abm_call_denial() says why, e.g.
 * "egress-not-allowed", "address-private", "path-not-allowed"). */

/* The name of the tool this call runs (its struct abm_tool's name, without the module
 * prefix): for a module whose tools share one hook. */
const char *abm_call_tool(const struct abm_call *call);

/* A TCP connection to host:port (a DNS name or an IP literal) for this call, through a tool
 * rule entry `scheme: tcp`. *ret_fd is a connected, blocking socket the module owns; speak
 * TLS over it yourself if needed. It is shut down when the call ends (close it before).
 * Returns 0, -EPERM, -ECONNREFUSED/-ETIMEDOUT/-EHOSTUNREACH (the connect failed), -EINVAL,
 * -ENOSYS, -EIO. */
int abm_call_connect(struct abm_call *call, const char *host, uint16_t port, int *ret_fd);

struct abm_http_header {
        const char *name;  /* a token: letters, digits, '-', '_' */
        const char *value; /* no CR or LF */
};

struct abm_http_response {
        int status;               /* the HTTP status */
        const char *content_type; /* "" when the server sent none */
        const char *body;         /* body_len bytes followed by a NUL; the secret redacted */
        size_t body_len;
        uint64_t received;   /* body bytes the server sent (more than body_len when cut) */
        bool truncated;      /* cut at the entry's max_response_bytes */
        unsigned redactions; /* occurrences of the injected secret replaced with [redacted] */
};

/* An HTTP(S) request made by agentbroker-egress (libcurl) through a tool rule entry
 * `scheme: http|https` that allows the method and the URL's path; the secret the entry
 * names is inserted there (header or query parameter) and never reaches the module. headers
 * (n_headers, may be NULL) must not set Host, Content-Length, Transfer-Encoding, Connection or
 * the injected header; body (may be NULL) is sent as is. Redirects of GET and HEAD are followed
 * (at most 3), each checked like the first. *ret stays valid until the call ends. Returns 0
 * (whatever the HTTP status), -EPERM, -ETIMEDOUT (the entry's timeout_ms), -EIO (transfer
 * failed), -EINVAL, -ENOSYS. */
int abm_call_http(struct abm_call *call, const char *method, const char *url,
                  const struct abm_http_header *headers, size_t n_headers, const char *body,
                  const struct abm_http_response **ret);

#ifdef __cplusplus
}
#endif

#endif /* AGENTBROKER_MODULE_H */
