/* SPDX-License-Identifier: MIT */
/* The MCP gateway: what its parts share (servers, their calls, the limits). Not for use
 * outside host/gateway/; host/gateway/gateway.h is the interface. */
#ifndef AB_HOST_GATEWAY_INTERNAL_H
#define AB_HOST_GATEWAY_INTERNAL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/secmem.h"
#include "common/spawn.h"
#include "host/gateway/gateway.h"
#include "host/sandbox/env.h"
#include "host/tool/lines.h"
#include "host/tool/redact.h"
#include "host/sandbox/sandbox.h"
#include "host/mcp/calls.h"
#include "host/mcp/server.h"
#include "host/gateway/mcpclient.h"

#define GW_STOP_GRACE_MS 2000 /* a server must exit this long after its stdin closed */
#define GW_ENV_MAX 512        /* environment entries of a server */

enum server_state {
        S_STOPPED,  /* not started (lazy), or between restarts (backoff timer armed) */
        S_STARTING, /* initialize / tools/list under way */
        S_READY,
        S_FAILED, /* too many failed starts: calls fail at once */
};

struct gw_secret {
        char *var;
        char *name; /* the secret's name, for redaction */
        struct ab_secbuf *value;
};

struct gw_call;

struct gw_server {
        struct gateway *gw;
        char *name;
        cJSON *cfg; /* its host-config entry */
        bool lazy;
        unsigned start_timeout_ms;
        struct gw_secret *secrets;
        size_t n_secrets;
        bool secrets_ok;              /* every secret was fetched (and is remembered for redaction) */
        struct hs_redactor *redactor; /* its secrets: redacted from all it says (results, stderr) */
        int err_fd;                   /* the read end of its stderr, or -1 */
        sd_event_source *err_io;
        struct hl_lines err_lines;
        enum server_state state;
        pid_t pid;
        sd_event_source *child, *timer;
        struct mc_client *mc;
        uint64_t started_usec, ready_usec;
        unsigned failures;
        unsigned timeouts_in_row;
        cJSON *listing; /* tools collected from tools/list pages, or NULL */
        unsigned pages;
        bool list_again; /* list_changed while listing */
        uint64_t listed_usec;
        struct gw_call *calls;
        size_t n_calls;
};

struct gw_call {
        struct gw_server *s;
        struct hw_call *hc;
        struct gw_call *prev, *next;
        uint64_t rpc_id; /* the tools/call request at the server */
        uint64_t token;  /* our progressToken */
        bool ready, sent;
        sd_event_source *timer;
};

struct gateway {
        sd_event *event;
        struct hw_registry *registry;
        struct hb_broker *broker;
        char *run;
        char *worker_path;
        struct gw_server **servers;
        size_t n_servers;
        uint64_t next_token;
};

/* Shared between the parts (defined in one, used in another). */
/* End call k with result (consumed) or failure, and free it. */
void gw_call_end(struct gw_call *k, cJSON *result, const char *failure, const char *message);

/* The server is ready: the calls waiting for it may go to the broker. */
void gw_calls_release(struct gw_server *s);

/* Wait (blocking, bounded by its start timeout) until a starting server is ready or has
 * failed; one that does not answer in time is killed (and restarted with backoff). */
void gw_server_wait_started(struct gw_server *s);

/* Stop reading s's stderr: what is buffered is logged, the pipe closed. */
void gw_server_stderr_close(struct gw_server *s);

/* s wrote to its stderr: log its lines (at most 64 KiB a round, so a flood cannot starve the
 * loop); at the end of the pipe, close it. */
int gw_on_server_stderr(sd_event_source *src AB_UNUSED, int fd, uint32_t revents AB_UNUSED, void *userdata);

/* Start the server's process as module workers are started (host/workers/): in the run's
 * sandbox (its own pid namespace inside the run's namespaces, the profile's root, mounts,
 * network and cgroup), as agentbroker-worker, which confines itself as a module worker does
 * (no capabilities, no_new_privs, the seccomp filter) and then executes the server (--exec),
 * with stdin, stdout and stderr the given pipe ends (each moved to a number the spawn takes),
 * every other descriptor closed and envp as its whole environment. This is the one place a
 * server process is created. Returns 0 with *ret_pid, or -errno (logged). */
int gw_spawn(struct gateway *gw, const char *name, const char *cwd, char *const *cmd, char *const *envp,
             int *child_in, int *child_out, int *child_err, pid_t *ret_pid);

/* The server's environment into *ret: PATH, LANG, TZ and HOME of the host, policy's env, its
 * secrets (at most GW_ENV_MAX entries; those past it are left out). Returns 0 or -ENOMEM. */
int gw_server_env(const struct gw_server *s, struct hs_env *ret);

/* The command line: command, then args. NULL on OOM (strings borrowed from cfg). */
char **gw_server_cmd(const struct gw_server *s);

void gw_server_secrets_clear(struct gw_server *s);

/* Fetch the secrets policy passes to s, anew at each start (a rotated secret is picked up):
 * server-env, which the broker audits as secret-use with operation "env". Returns 0, or
 * -errno when one cannot be fetched (logged: the server is not started). */
int gw_server_fetch_secrets(struct gw_server *s);

/* Start the server's process and its MCP session (initialize, then tools/list); the state is
 * S_STARTING until its tools are known. Returns 0 or -errno (logged; a restart is scheduled). */
int gw_server_start(struct gw_server *s);

extern const struct hw_external_ops gw_ext_ops;

#endif /* AB_HOST_GATEWAY_INTERNAL_H */
