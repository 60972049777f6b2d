/* SPDX-License-Identifier: MIT */
/* The MCP tunnel transport: what its parts share (the tunnel, the structures the two
 * threads exchange, the call store, the limits). Not for use outside host/net/tunnel/.
 *
 * Two threads. The lws thread (lws.c) runs lws_service() and owns every struct lws; it only moves
 * bytes: it dials when asked, frames outgoing messages (large ones in MCP_TUNNEL_CHUNK
 * fragments, so pings go out between them), reassembles incoming ones and reports what
 * happened. The sd-event thread (tunnel.c) owns everything else: the MCP server, the dial JWT
 * (from the broker), backoff, pings, audit, the call store and its checkpoint (store.c). They
 * share struct shared under a mutex: commands and outgoing messages one way (then
 * lws_cancel_service()), events the other way (then a write to an eventfd that sd-event watches). */
#ifndef AB_HOST_NET_TUNNEL_INTERNAL_H
#define AB_HOST_NET_TUNNEL_INTERNAL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "common/macros.h"
#include "common/secmem.h"
#include "host/mcp/jsonrpc.h"
#include "host/mcp/rpcid.h"
#include "host/net/tunnel/tunnel.h"

#define DEFAULT_PING_MS 15000
#define DEFAULT_BACKOFF_MIN_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_HEALTHY_MS 30000
#define DEFAULT_STORE_ENTRIES 4096
#define DEFAULT_STORE_BYTES (64u * 1024 * 1024)
#define PENDING_MAX_BYTES (64u * 1024 * 1024) /* responses waiting for a connection */
#define CHECKPOINT_MAX_FILE (512u * 1024 * 1024)
#define HASH_BUCKETS 4096
#define SESSION_MAX 128
#define DEFAULT_STAGE_TIMEOUT_MS 10000 /* each stage of a dial (docs/tunnel.md) */
#define LWS_BACKSTOP_EXTRA_S 5         /* lws's own timeouts: the longest stage + this */
#define WATCHDOG_MS 2000               /* how often the connection's state is checked */
#define KILL_GRACE_MS 5000             /* a connection told to close is given up after this */
#define DIAL_FAIL_LOG_BURST 5          /* failed dials logged and audited per window... */
#define DIAL_FAIL_LOG_WINDOW_MS 60000  /* ...the others are counted and summed up */
#define DIAL_FAIL_DETAIL_MAX 200

/* ---- shared between the two threads ------------------------------------------------------ */

struct omsg { /* an outgoing message */
        struct omsg *next;
        size_t len, off;     /* bytes, bytes already written */
        bool response;       /* worth delivering after a reconnect */
        unsigned char buf[]; /* LWS_PRE bytes, then the message */
};

enum tev_type {
        TEV_STAGE,
        TEV_CONNECTED,
        TEV_MESSAGE,
        TEV_OVERSIZE,
        TEV_PONG,
        TEV_CLOSED,
        TEV_DIAL_FAILED
};

/* The stages of a dial, each with a deadline of its own. */
enum dial_stage {
        STAGE_CONNECT,
        STAGE_TLS,
        STAGE_UPGRADE,
        STAGE_FIRST_MESSAGE,
        STAGE_MAX
};

static const char *const stage_names[STAGE_MAX] = { "tcp-connect", "tls-handshake", "upgrade-answer",
                                                    "first-message" };

struct tev { /* an event for the sd-event thread */
        struct tev *next;
        enum tev_type type;
        uint64_t gen;          /* the dial it is about */
        enum dial_stage stage; /* TEV_STAGE: the stage it entered */
        const char *reason;    /* static: TEV_CLOSED, TEV_DIAL_FAILED */
        size_t len;
        char text[]; /* TEV_MESSAGE: the message; TEV_DIAL_FAILED: detail */
};

struct shared {
        pthread_mutex_t lock;
        struct omsg *out_head, *out_tail;
        struct tev *ev_head, *ev_tail;
        bool dial; /* dial with jwt, as dial number dial_gen */
        uint64_t dial_gen;
        char *jwt;
        bool ping, close;
        uint64_t kill_gen; /* drop the connection of this dial now (0: none) */
        bool stop;
};

/* ---- the call store ---------------------------------------------------------------------- */

enum tc_state {
        TC_RUNNING,
        TC_DONE,
        TC_LOST
};

struct tcall {
        struct tcall *hnext;       /* hash chain */
        struct tcall *prev, *next; /* order of completion (done and lost entries) */
        char *key;
        enum tc_state state;
        cJSON *waiters; /* external request ids waiting for the outcome */
        char *outcome;  /* "\"result\":{...}" or "\"error\":{...}" */
        size_t bytes;
};

/* A request handed to the server under an internal id. */
struct treq {
        struct treq *next;
        uint64_t iid;
        cJSON *ext_id;
        struct tcall *call; /* a tools/call, or NULL */
};

struct mcp_tunnel {
        sd_event *event;
        struct mcp_server *server;
        struct hb_broker *broker;
        char *run;
        char *url;
        char scheme_tls;
        char *host, *path;
        int port;
        char *ca_file;
        unsigned char pin[32];
        bool has_pin;
        unsigned ping_ms, backoff_min_ms, backoff_max_ms, healthy_ms;
        unsigned stage_ms[STAGE_MAX];
        char session[SESSION_MAX + 1];

        /* lws */
        struct lws_context *ctx;
        struct lws *wsi; /* lws thread only */
        pthread_t thread;
        bool thread_started;
        struct shared sh;
        int efd;
        sd_event_source *efd_src;
        /* lws thread only: reassembly and the current dial's TLS findings */
        char *rbuf;
        size_t rlen, rcap;
        unsigned char *wbuf; /* LWS_PRE + MCP_TUNNEL_CHUNK: the fragment being written */
        bool roversize, pin_failed, tls_failed, dial_reported;
        uint64_t wsi_gen;          /* the dial t->wsi belongs to */
        enum dial_stage wsi_stage; /* how far it got */
        bool wsi_est;              /* upgraded */

        /* sd-event thread */
        enum {
                ST_IDLE,
                ST_DIALING,
                ST_UP,
                ST_STOPPED
        } state;
        sd_event_source *retry_src, *ping_src, *healthy_src, *deadline_src, *watchdog_src;
        unsigned attempts;
        unsigned missed_pongs;
        const char *close_reason;
        uint64_t close_asked; /* when kill_connection() asked (CLOCK_MONOTONIC usec) */
        uint64_t dials;
        uint64_t live_gen;     /* the dial or connection events are taken from (0: none) */
        enum dial_stage stage; /* the stage of the dial in progress (ST_DIALING) */
        uint64_t fail_window;  /* failed dials: the rate limit's window start (usec) */
        unsigned fail_logged, fail_suppressed;
        struct omsg *pend_head, *pend_tail; /* responses waiting for a connection */
        size_t pend_bytes;

        struct tcall *buckets[HASH_BUCKETS];
        struct tcall *done_head, *done_tail; /* oldest first */
        size_t n_done, done_bytes, max_entries, max_bytes;
        struct treq *reqs[256];
        uint64_t next_iid;

        char *ckpt_path;
        int ckpt_fd;
        size_t ckpt_lines;
};

/* Shared between the parts (defined in one, used in another). */
struct omsg *mcp_tunnel_omsg_new(const char *text, size_t len, bool response);

void mcp_tunnel_omsg_list_free(struct omsg *m);

int mcp_tunnel_lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user AB_UNUSED, void *in,
                      size_t len);

void *mcp_tunnel_lws_thread(void *userdata);

/* ---- the call store and its checkpoint (sd-event thread) --------------------------------- */

struct tcall *mcp_tunnel_store_find(struct mcp_tunnel *t, const char *key);

struct tcall *mcp_tunnel_store_add(struct mcp_tunnel *t, const char *key);

void mcp_tunnel_store_remove(struct mcp_tunnel *t, struct tcall *c);

/* Mark c done (or lost) with outcome (taken) and keep the store within its bounds. */
void mcp_tunnel_store_finish(struct mcp_tunnel *t, struct tcall *c, enum tc_state state, char *outcome);

/* Rewrite the checkpoint from the store: a temporary file (0600) renamed over it, then
 * reopened for appending. Returns 0 or -errno. */
int mcp_tunnel_ckpt_compact(struct mcp_tunnel *t);

/* Append c's state to the checkpoint; compact it when it has grown to twice the store. */
void mcp_tunnel_ckpt_append(struct mcp_tunnel *t, const struct tcall *c, const char *state);

/* Read the checkpoint (if any): the session id, recorded outcomes, and the calls that were
 * running when the host stopped (their outcome is unknown: they are never run again).
 * A torn last line is ignored. Returns 0 or -errno. */
int mcp_tunnel_ckpt_load(struct mcp_tunnel *t);

/* ---- sending (sd-event thread) ------------------------------------------------------------ */

void mcp_tunnel_kick(struct mcp_tunnel *t);

/* Queue m for the connection, or (a response, while disconnected) for after the reconnect. */
void mcp_tunnel_deliver(struct mcp_tunnel *t, struct omsg *m);

/* Have the broker audit event with reason; stage: where a failed dial stopped, or NULL. */
void mcp_tunnel_audit_event(struct mcp_tunnel *t, const char *event, const char *reason, const char *stage);

uint64_t mcp_tunnel_now_usec(struct mcp_tunnel *t);

/* The dial in progress entered stage: its deadline starts now. */
void mcp_tunnel_enter_stage(struct mcp_tunnel *t, enum dial_stage stage);

/* The dial in progress failed at its stage (why: what happened; auth: the tunnel-auth-fail
 * reason, or NULL): log and audit it (auth failures always, the others rate-limited), forget
 * its connection, and schedule the next dial. */
void mcp_tunnel_dial_failed(struct mcp_tunnel *t, const char *why, const char *auth);

int mcp_tunnel_on_dial_timer(sd_event_source *s AB_UNUSED, uint64_t usec AB_UNUSED, void *userdata);

/* Dial again after a full-jitter delay: uniform in [0, min(max, min * 2^attempts)]. */
void mcp_tunnel_schedule_dial(struct mcp_tunnel *t);

/* The first MCP message of a dial arrived: the tunnel is up. */
void mcp_tunnel_on_connected(struct mcp_tunnel *t);

void mcp_tunnel_on_closed(struct mcp_tunnel *t, const char *reason);

void mcp_tunnel_lws_log(int level, const char *line);

#endif /* AB_HOST_NET_TUNNEL_INTERNAL_H */
