/* SPDX-License-Identifier: MIT */
/* The policy model and its loader (YAML via libyaml). docs/policy.md describes the format.
 * A loaded policy is immutable; the broker swaps whole policies on reload. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

struct ab_regex;

#define AB_POLICY_DEFAULT_PATH "/etc/agentbroker/policy.yaml"
#define AB_POLICY_MAX_FILE (1024 * 1024)    /* largest policy file read */
#define AB_POLICY_MAX_DROPINS 256           /* most policy.d/ drop-in files */
#define AB_POLICY_MAX_DEPTH 16              /* deepest YAML nesting accepted */
#define AB_POLICY_MAX_ITEMS 4096            /* most entries in any one list or mapping */
#define AB_POLICY_CONNS_PER_UID_DEFAULT 256 /* broker.max_connections_per_uid */
#define AB_POLICY_CONNS_PER_UID_MAX 1024    /* its ceiling (the broker's own connection limit) */

/* Secret operations, as a bit set. */
#define AB_OP_READ 0x1u
#define AB_OP_SIGN 0x2u
#define AB_OP_MINT_JWT 0x4u
#define AB_OP_INJECT 0x8u /* egress-check: agentbroker-egress inserts it into an HTTP request */

enum ab_secret_source {
        AB_SRC_CREDENTIAL, /* file of that name in $CREDENTIALS_DIRECTORY */
        AB_SRC_FILE,       /* absolute path; owner = broker uid, mode 0600 or 0400 */
        AB_SRC_ENV,        /* environment variable (unset from the environment after reading) */
};

enum ab_secret_type {
        AB_SECRET_BYTES,   /* opaque bytes: read, sign (HMAC-SHA256 keyed with them) */
        AB_SECRET_ED25519, /* Ed25519 private key (PEM PKCS#8 or 32-byte raw seed): sign, mint-jwt */
};

struct ab_policy_where {
        const char *file;      /* points into ab_policy.files */
        unsigned line, column; /* 1-based */
};

struct ab_policy_secret {
        char *name;
        enum ab_secret_source source;
        char *ref; /* credential name, file path or variable name */
        enum ab_secret_type type;
        struct ab_policy_where where;
};

/* One argument constraint of a tool rule, applied to the top-level member `name` of
 * the call's arguments object. */
struct ab_policy_argc {
        char *name;
        bool required;         /* member must be present */
        char *pattern;         /* regular expression (common/regex.h) the string value must match
                                * (anchor it yourself), or NULL */
        struct ab_regex *re;   /* compiled pattern, valid when pattern != NULL */
        bool has_min, has_max; /* numeric range for number values */
        double min, max;
        long max_length;    /* longest string value in bytes, -1 = no limit */
        char **enum_values; /* allowed string values, NULL = any */
        size_t n_enum;
        char **beneath; /* normalised absolute directories the path value must be in, NULL = any */
        size_t n_beneath;
};

struct ab_policy_grant {
        char *secret; /* name in ab_policy.secrets */
        unsigned ops; /* AB_OP_* */
};

/* Egress (docs/policy.md, "egress"): where a tool may connect, through agentbroker-egress. */
enum ab_egress_scheme {
        AB_EGRESS_TCP,  /* a raw TCP connection handed to the module (abm_call_connect) */
        AB_EGRESS_HTTP, /* an HTTP request made by agentbroker-egress (abm_call_http) */
        AB_EGRESS_HTTPS,
};

#define AB_EGRESS_METHODS_MAX 8
#define AB_EGRESS_LIST_MAX 64 /* paths or address ranges in one entry */

/* An address range: family AF_INET or AF_INET6, the address in network order, a prefix length. */
struct ab_policy_cidr {
        int family;
        unsigned char addr[16];
        unsigned prefix;
};

struct ab_policy_egress {
        enum ab_egress_scheme scheme;
        char *host;      /* lower-case DNS name or IP literal */
        bool host_is_ip; /* host is an IP literal: host_ip holds it (prefix = full length) */
        struct ab_policy_cidr host_ip;
        unsigned port;
        char *methods[AB_EGRESS_METHODS_MAX]; /* upper-case; http(s) only; none given = GET */
        size_t n_methods;
        char **paths; /* path prefixes ("/v1/"); none = any path */
        size_t n_paths;
        struct ab_policy_cidr *addresses; /* ranges the resolved address may be in, besides public
                                           * addresses; when given, it must be in one of them */
        size_t n_addresses;
        char *inject_secret;       /* http(s): secret inserted by agentbroker-egress, or NULL */
        char *inject_header;       /* ... as this header, */
        char *inject_query;        /* ... or as this query parameter */
        char *inject_value;        /* the value, with "{secret}" where the secret goes */
        size_t max_response_bytes; /* http(s): the response body is cut past this (default 1 MiB) */
        unsigned timeout_ms;       /* http(s): the whole request, default 10000 */
        struct ab_policy_where where;
};

struct ab_policy_tool {
        char *match; /* exact tool name ("module.tool") or fnmatch(3) glob */
        bool is_glob;
        bool allow;
        struct ab_policy_grant *grants;
        size_t n_grants;
        double rate;             /* calls per second per run, 0 = unlimited */
        unsigned burst;          /* bucket size for rate (>= 1 when rate > 0) */
        bool rate_per_rule;      /* rate_scope: rule — one bucket for every tool the rule matches */
        size_t max_result_bytes; /* result shaping cap for the host (default AB_DEFAULT_MAX_RESULT_BYTES) */
        size_t max_args_bytes;   /* largest arguments JSON accepted (default 65536) */
        unsigned timeout_ms;     /* tool call timeout for the host (default 30000) */
        struct ab_policy_argc *args;
        size_t n_args;
        struct ab_policy_egress *egress; /* destinations (tools may reach nothing when none) */
        size_t n_egress;
        struct ab_policy_where where;
};

struct ab_policy_module {
        char *name;
        cJSON *config; /* the module's configuration mapping, converted to JSON (object) */
        struct ab_policy_where where;
};

/* One environment variable a server gets: NAME=value (from policy text, not a secret). */
struct ab_policy_env {
        char *name;
        char *value;
};

/* A secret a server gets as an environment variable at its start (docs/policy.md, servers). */
struct ab_policy_server_secret {
        char *var;    /* the variable's name */
        char *secret; /* name in ab_policy.secrets (bytes) */
        struct ab_policy_where where;
};

/* An existing MCP server the host runs and serves behind the broker (host/gateway/gateway.c). */
struct ab_policy_server {
        char *name;    /* its tools are served as "<name>.<tool>" */
        char *command; /* absolute path */
        char **args;
        size_t n_args;
        struct ab_policy_env *env;
        size_t n_env;
        char *cwd;    /* absolute path, or NULL: "/" */
        char **tools; /* the server's own tool names that are exposed (allow-list) */
        size_t n_tools;
        struct ab_policy_server_secret *secrets;
        size_t n_secrets;
        bool lazy;                 /* start: lazy (at the first tools/list or tools/call) | host */
        unsigned start_timeout_ms; /* initialize + tools/list must answer within this */
        struct ab_policy_where where;
};

/* A run profile (docs/policy.md, "profiles"): what a run's sandbox is made of. */
#define AB_PROFILE_MOUNTS_MAX 32
struct ab_policy_mount {
        char *source;   /* absolute path on the host */
        char *target;   /* absolute path inside the sandbox */
        bool read_only; /* default true */
};

struct ab_policy_profile {
        char *name;
        struct ab_policy_mount *mounts;
        size_t n_mounts;
        uint64_t workspace_bytes; /* the /workspace tmpfs, 0 = none */
        uint64_t memory_bytes;    /* the run cgroup's memory limit, 0 = none */
        uint64_t pids;            /* its pids limit, 0 = none */
        unsigned cpu_millis;      /* CPU time per second in ms (1000 = one CPU), 0 = none */
        bool network_none;        /* network: none (the only mode so far) */
        unsigned
                max_duration_s; /* a run of it expires (is torn down) this long after run-open, 0 = runs.max_duration_s */
        char **tools; /* globs of the tools the run may call; NULL = every allowed tool */
        size_t n_tools;
        char **secrets; /* the secrets its tokens may use; NULL = every granted one */
        size_t n_secrets;
        struct ab_policy_where where;
};

struct ab_policy {
        char **files; /* every file that was read, main file first */
        size_t n_files;

        struct ab_policy_secret *secrets;
        size_t n_secrets;
        struct ab_policy_tool *tools; /* in file order: main file, then drop-ins */
        size_t n_tools;
        struct ab_policy_module *modules;
        size_t n_modules;
        struct ab_policy_profile *profiles;
        size_t n_profiles;
        struct ab_policy_server *servers;
        size_t n_servers;

        struct {
                unsigned max_calls;      /* 0 = unlimited */
                unsigned max_duration_s; /* 0 = unlimited */
                unsigned max_open;       /* open runs at once, default 64 */
        } runs;
        struct {
                unsigned ttl_s;     /* default 30 */
                unsigned max_ttl_s; /* ceiling, default 300 */
                unsigned max_uses;  /* secret operations per token, default 16 */
        } tokens;
        struct {
                char *issuer;       /* JWT iss, default "agentbroker" */
                unsigned max_ttl_s; /* ceiling for minted JWT exp, default 300 */
                char *jwks_file;    /* where the public keys are published, or NULL */
        } jwt;
        struct {
                uid_t *uids; /* uids allowed to connect */
                size_t n_uids;
                gid_t *gids; /* groups whose members may connect */
                size_t n_gids;
                gid_t admin_gid; /* admin requests also from this group */
                bool has_admin_gid;
        } clients;
        struct {
                bool failure_deny; /* audit.failure: deny (default) | ignore */
        } audit;
        struct {
                char *socket_group;         /* group owning the socket, NULL = broker's own */
                unsigned max_conns_per_uid; /* open connections of one uid at once, default 256 */
        } broker;
        struct {
                char *identity;               /* ed25519 secret that signs tunnel dial JWTs, or NULL */
                char *sandbox_id;             /* the dial JWT's iss (default: the host name) */
                struct ab_policy_where where; /* of tunnel.identity, for errors */
        } tunnel;
};

/* Load the policy file at path and then every <dirname(path)>/policy.d/NAME.yaml file in
 * lexical order. On failure *ret_err (if non-NULL) gets every error found, one per line,
 * as "file:line:column: message". Returns 0, -EINVAL (policy errors), -ENOENT, -EACCES,
 * -ENOMEM or another -errno. */
int ab_policy_load(const char *path, struct ab_policy **ret, char **ret_err);

/* Parse one policy document from memory (no drop-ins); name is used in error messages.
 * Same returns as ab_policy_load. */
int ab_policy_load_string(const char *name, const char *text, size_t len, struct ab_policy **ret,
                          char **ret_err);

/* Free a policy. Accepts NULL. */
void ab_policy_free(struct ab_policy *p);
static inline void
ab_policy_freep(struct ab_policy **p)
{
        ab_policy_free(*p);
}

/* The rule that governs tool: an exact match if there is one, else the matching glob with
 * the longest pattern (earliest wins a tie). NULL if none: the tool is denied. */
const struct ab_policy_tool *ab_policy_find_tool(const struct ab_policy *p, const char *tool);
/* The secret named name, or NULL. */
const struct ab_policy_secret *ab_policy_find_secret(const struct ab_policy *p, const char *name);
/* The operations rule grants on secret (0 = none). */
unsigned ab_policy_grant_ops(const struct ab_policy_tool *rule, const char *secret);
/* The module named name, or NULL. */
const struct ab_policy_module *ab_policy_find_module(const struct ab_policy *p, const char *name);
const struct ab_policy_profile *ab_policy_find_profile(const struct ab_policy *p, const char *name);
/* May a run of profile pr call tool / use secret? (pr NULL: yes.) */
bool ab_policy_profile_allows_tool(const struct ab_policy_profile *pr, const char *tool);
bool ab_policy_profile_allows_secret(const struct ab_policy_profile *pr, const char *secret);
/* The profile as a JSON object (for run-open's reply: the host builds the sandbox from it). */
cJSON *ab_policy_profile_to_json(const struct ab_policy_profile *pr);

/* The server named name, or NULL. */
const struct ab_policy_server *ab_policy_find_server(const struct ab_policy *p, const char *name);

/* Check a call's arguments (a JSON object, may be NULL when none were given) against the
 * rule's constraints. Returns 0 if they pass; -EPERM with *ret_reason a new string such as
 * "argument 'path' does not match pattern" (never containing the value) if not; -ENOMEM. */
int ab_policy_check_args(const struct ab_policy_tool *rule, const cJSON *args, char **ret_reason);

#define AB_POLICY_PATH_MAX 4096  /* longest path a beneath: constraint looks at */
#define AB_POLICY_BENEATH_MAX 64 /* most directories in one beneath: list */
/* Normalise an absolute path lexically: "//" and "." components dropped, no trailing "/".
 * *ret is a new string. Returns 0; -EINVAL for a relative path or one with a ".." component
 * (refused, not resolved: a symlink before it would change its meaning); -ENAMETOOLONG past
 * AB_POLICY_PATH_MAX; -ENOMEM. */
int ab_policy_path_normalize(const char *path, char **ret);
/* Whether path, normalised, is one of dirs (normalised directories) or inside one. False for
 * any path ab_policy_path_normalize refuses. */
bool ab_policy_path_beneath(const char *path, char *const *dirs, size_t n_dirs);

/* Find the egress entry of rule that allows scheme://host:port (method and path for http(s);
 * path without its query string). host is compared case-insensitively. Returns 0 with *ret,
 * or -EPERM with *ret_reason one of "egress-not-allowed", "method-not-allowed",
 * "path-not-allowed", "path-invalid" (dot segments, encoded slashes or dots, backslashes). */
int ab_policy_egress_find(const struct ab_policy_tool *rule, enum ab_egress_scheme scheme, const char *host,
                          unsigned port, const char *method, const char *path,
                          const struct ab_policy_egress **ret, const char **ret_reason);
/* Whether a resolved address (family AF_INET/AF_INET6, addr in network order) may be
 * connected to under entry e: an address in a loopback, private, link-local, CGNAT, multicast,
 * unspecified or other special range only when e's host is that very IP literal or one of
 * e's addresses holds it; with e->addresses set, only addresses in them (or the literal).
 * Returns 0 or -EPERM with *ret_reason "address-not-allowed" or "address-private". */
int ab_policy_egress_address_ok(const struct ab_policy_egress *e, int family, const unsigned char *addr,
                                const char **ret_reason);
/* Parse "10.0.0.0/8", "::1" or "fe80::/10" into *ret. Returns 0 or -EINVAL. */
int ab_policy_cidr_parse(const char *s, struct ab_policy_cidr *ret);
/* The scheme's name ("tcp", "http", "https") and back (-EINVAL when unknown). */
const char *ab_egress_scheme_to_string(enum ab_egress_scheme s);
int ab_egress_scheme_from_string(const char *s, enum ab_egress_scheme *ret);

/* Parse an operation name ("read", "sign", "mint-jwt") into AB_OP_*; 0 if unknown. */
unsigned ab_policy_op_from_string(const char *s);
/* The name of a single AB_OP_* bit. */
const char *ab_policy_op_to_string(unsigned op);
