/* SPDX-License-Identifier: MIT */
/* agentbrokerd's event loop (see server.h). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker/handlers.h"
#include "broker/teardown.h"
#include "broker/server.h"
#include "common/log.h"
#include "common/wire.h"
#include "common/secmem.h"

#define LISTEN_TAG ((uint64_t)1)
#define SIGNAL_TAG ((uint64_t)2)
#define TIMER_TAG ((uint64_t)3)
#define AB_MSGS_PER_WAKEUP 16 /* fairness: messages taken from one connection per turn */

static const struct ab_loop_ops loop_ops; /* what the handlers ask of the loop, below */

/* Take the socket systemd passed (named "broker", else the first one), or -ENOENT. */
static int
activated_socket(void)
{
        char **names = NULL;
        int n, fd = -ENOENT;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return n < 0 ? n : -ENOENT;
        for (int i = 0; i < n; i++)
                if (names && names[i] && strcmp(names[i], "broker") == 0)
                        fd = SD_LISTEN_FDS_START + i;
        if (fd < 0)
                fd = SD_LISTEN_FDS_START;
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
                log_error("the socket passed by systemd is not a listening AF_UNIX SOCK_SEQPACKET socket");
                return -EINVAL;
        }
        return fd;
}

/* Create, bind and listen on our own socket at path, mode 0660, group from policy. */
static int
own_socket(struct ab_broker *b)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *group = b->state.policy->broker.socket_group;
        struct stat st;
        mode_t old;
        int fd, r;

        if (strlen(b->socket_path) >= sizeof(sa.sun_path)) {
                log_error("socket path %s is too long", b->socket_path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, b->socket_path);
        /* Remove a stale socket left behind, but never another kind of file. */
        if (lstat(b->socket_path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode)) {
                        log_error("%s exists and is not a socket", b->socket_path);
                        return -EEXIST;
                }
                unlink(b->socket_path);
        }
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        old = umask(0117);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0) {
                r = -errno;
                log_error("cannot bind %s: %s", b->socket_path, strerror(-r));
                close(fd);
                return r;
        }
        if (group) {
                /* A group name, or a numeric gid as the policy loader accepts. */
                struct group *gr = getgrnam(group);
                char *end = NULL;
                unsigned long gid = gr ? gr->gr_gid : strtoul(group, &end, 10);
                bool known = gr || (end && end != group && *end == '\0' && gid < (gid_t)-1);

                if (!known || chown(b->socket_path, (uid_t)-1, (gid_t)gid) < 0)
                        log_warning("cannot give %s to group %s: %s", b->socket_path, group,
                                    known ? strerror(errno) : "no such group");
        }
        if (listen(fd, 128) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int
epoll_add(int epfd, int fd, uint64_t tag)
{
        struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = tag };

        return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

/* Raise the soft RLIMIT_NOFILE to the hard limit (every connection costs AB_CONN_FDS
 * descriptors; the usual soft limit of 1024 holds fewer than 512 of them), and size
 * b->conns_max to what the limit can hold. */
static void
raise_nofile(struct ab_broker *b)
{
        struct rlimit rl;
        size_t fit;

        b->conns_max = AB_CONNS_MAX;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
                return;
        }
        if (rl.rlim_cur < rl.rlim_max) {
                rlim_t old = rl.rlim_cur;

                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                        log_warning("cannot raise RLIMIT_NOFILE from %llu to %llu: %s",
                                    (unsigned long long)old, (unsigned long long)rl.rlim_max,
                                    strerror(errno));
                        rl.rlim_cur = old;
                } else
                        log_debug("RLIMIT_NOFILE raised from %llu to %llu", (unsigned long long)old,
                                  (unsigned long long)rl.rlim_cur);
        }
        fit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > AB_FDS_RESERVED + AB_CONNS_MAX * AB_CONN_FDS
                      ? AB_CONNS_MAX
              : rl.rlim_cur > AB_FDS_RESERVED + AB_CONN_FDS ? (rl.rlim_cur - AB_FDS_RESERVED) / AB_CONN_FDS
                                                            : 1;
        if (fit < b->conns_max) {
                log_warning("RLIMIT_NOFILE (%llu) holds only %zu connections, not %d",
                            (unsigned long long)rl.rlim_cur, fit, AB_CONNS_MAX);
                b->conns_max = fit;
        }
}

int
ab_server_setup(struct ab_broker *b)
{
        /* tv_nsec must stay below one second: split the period into seconds and nanoseconds. */
        struct itimerspec its = {
                .it_interval = { AB_HOUSEKEEPING_MS / 1000, (AB_HOUSEKEEPING_MS % 1000) * 1000000L },
                .it_value = { AB_HOUSEKEEPING_MS / 1000, (AB_HOUSEKEEPING_MS % 1000) * 1000000L },
        };
        sigset_t mask;
        int r;

        b->epfd = b->listen_fd = b->sigfd = b->timerfd = -1;
        b->rbuf = malloc(AB_MSG_MAX + 1);
        if (!b->rbuf)
                return -ENOMEM;
        b->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (b->epfd < 0)
                return -errno;
        b->pidwatches.epfd = b->epfd;
        b->state.watches = &b->pidwatches;
        b->state.loop_ops = &loop_ops;
        b->state.loop = b;
        raise_nofile(b);

        r = activated_socket();
        if (r >= 0) {
                struct sockaddr_un sa = { 0 };
                socklen_t salen = sizeof(sa);

                b->listen_fd = r;
                b->listen_activated = true;
                /* Name the socket we were given, not the default path, in STATUS= and logs. */
                if (getsockname(r, (struct sockaddr *)&sa, &salen) == 0 &&
                    salen > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0]) {
                        char *p = strndup(sa.sun_path, salen - offsetof(struct sockaddr_un, sun_path));
                        if (p) {
                                free(b->socket_path);
                                b->socket_path = p;
                        }
                }
                (void)fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK);
        } else if (r == -ENOENT) {
                r = own_socket(b);
                if (r < 0)
                        return r;
                b->listen_fd = r;
        } else
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        b->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        b->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (b->sigfd < 0 || b->timerfd < 0 || timerfd_settime(b->timerfd, 0, &its, NULL) < 0)
                return -errno;
        if ((r = epoll_add(b->epfd, b->listen_fd, LISTEN_TAG)) < 0 ||
            (r = epoll_add(b->epfd, b->sigfd, SIGNAL_TAG)) < 0 ||
            (r = epoll_add(b->epfd, b->timerfd, TIMER_TAG)) < 0)
                return r;
        if (sd_watchdog_enabled(false, &b->watchdog_usec) <= 0)
                b->watchdog_usec = 0;
        return 0;
}

static void
conn_close(struct ab_broker *b, struct ab_conn *c)
{
        ab_pidwatch_remove(&b->pidwatches, c->exit_watch);
        epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        ab_peer_clear(&c->peer);
        if (c->prev)
                c->prev->next = c->next;
        else
                b->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        b->n_conns--;
        free(c);
}

/* Whether an accept warning may be logged now (one per AB_ACCEPT_LOG_MS: a peer can make
 * every accept fail). */
static bool
accept_log_due(struct ab_broker *b)
{
        uint64_t now = ab_now_ms();

        if (b->last_accept_log_ms && now - b->last_accept_log_ms < AB_ACCEPT_LOG_MS)
                return false;
        b->last_accept_log_ms = now;
        return true;
}

/* The number of open connections of uid. */
static size_t
conns_of_uid(const struct ab_broker *b, uid_t uid)
{
        size_t n = 0;

        for (const struct ab_conn *c = b->conns; c; c = c->next)
                n += c->peer.uid == uid;
        return n;
}

/* Take the listening socket out of epoll until housekeeping: out of descriptors, accept
 * would fail at once again and the level-triggered socket would spin the loop. */
static void
pause_accept(struct ab_broker *b)
{
        if (!b->accept_paused && epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->listen_fd, NULL) == 0)
                b->accept_paused = true;
}

/* Accept every pending connection: refused (closed at once, counted, logged at most once per
 * AB_ACCEPT_LOG_MS) past conns_max or the policy's per-uid cap. */
static void
accept_conns(struct ab_broker *b)
{
        for (;;) {
                struct ab_conn *c;
                int fd = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                size_t per_uid;

                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return;
                        b->conn_stats.accept_errors++;
                        if (accept_log_due(b))
                                log_warning("accept: %s (%zu connections open; %" PRIu64
                                            " accept errors so far)",
                                            strerror(errno), b->n_conns, b->conn_stats.accept_errors);
                        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                                pause_accept(b);
                        return;
                }
                if (b->n_conns >= b->conns_max) {
                        b->conn_stats.refused_full++;
                        if (accept_log_due(b))
                                log_warning(
                                        "connection refused: %zu connections open, the most there can be "
                                        "(%" PRIu64 " refused so far)",
                                        b->n_conns, b->conn_stats.refused_full);
                        close(fd);
                        continue;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        continue;
                }
                c->fd = fd;
                if (ab_peer_from_socket(fd, &c->peer) < 0) {
                        /* Peer gone already, or no credentials: nothing to serve. */
                        b->conn_stats.peer_errors++;
                        free(c);
                        close(fd);
                        continue;
                }
                per_uid = conns_of_uid(b, c->peer.uid);
                if (per_uid >= b->state.policy->broker.max_conns_per_uid) {
                        b->conn_stats.refused_uid++;
                        if (accept_log_due(b))
                                log_warning("connection of uid %u (pid %d) refused: it has %zu open, "
                                            "broker.max_connections_per_uid (%" PRIu64 " refused so far)",
                                            (unsigned)c->peer.uid, (int)c->peer.pid, per_uid,
                                            b->conn_stats.refused_uid);
                        ab_peer_clear(&c->peer);
                        free(c);
                        close(fd);
                        continue;
                }
                c->last_ms = ab_now_ms();
                if (epoll_add(b->epfd, fd, (uint64_t)(uintptr_t)c) < 0) {
                        ab_peer_clear(&c->peer);
                        free(c);
                        close(fd);
                        continue;
                }
                c->next = b->conns;
                if (b->conns)
                        b->conns->prev = c;
                b->conns = c;
                b->n_conns++;
        }
}

/* A worker connection's process exited: close the connection (a child the worker left
 * behind may hold it, but it speaks for nobody now). */
static void
worker_exited(struct ab_pidwatches *set, void *userdata)
{
        struct ab_broker *b = (struct ab_broker *)((char *)set - offsetof(struct ab_broker, pidwatches));
        struct ab_conn *c = userdata;

        c->exit_watch = NULL; /* fired: gone already */
        b->conn_stats.worker_exits++;
        log_debug("worker pid %d exited: closing its broker connection", (int)c->peer.pid);
        conn_close(b, c);
}

/* Watch the process that opened c (a worker, after worker-hello) and close c when it exits.
 * Without a pidfd (old kernel, error: logged and counted), housekeeping checks the process
 * instead. Returns 0 or -errno. */
static int
watch_worker(void *loop, struct ab_conn *c)
{
        struct ab_broker *b = loop;
        int r;

        if (c->exit_watch)
                return 0;
        if (c->peer.pidfd < 0) {
                /* No SO_PEERPIDFD: open one, checked against the start time seen at accept. */
                r = ab_pidfd_open_checked(c->peer.pid, c->peer.starttime);
                if (r >= 0)
                        c->peer.pidfd = r;
        }
        r = c->peer.pidfd >= 0
                    ? ab_pidwatch_add(&b->pidwatches, c->peer.pidfd, worker_exited, c, &c->exit_watch)
                    : -EBADF;
        if (r < 0) {
                b->conn_stats.pidfd_errors++;
                log_warning("cannot watch worker pid %d for its exit (%s): checking it every %d ms instead",
                            (int)c->peer.pid, strerror(-r), AB_HOUSEKEEPING_MS);
        }
        return r;
}

/* The connection counters of status: open, the limits, and what was refused or closed and
 * why. Returns 0 or -ENOMEM. */
static int
conn_stats(void *loop, cJSON *o)
{
        const struct ab_broker *b = loop;

        if (!cJSON_AddNumberToObject(o, "open", (double)b->n_conns) ||
            !cJSON_AddNumberToObject(o, "max", (double)b->conns_max) ||
            !cJSON_AddNumberToObject(o, "max_per_uid", (double)b->state.policy->broker.max_conns_per_uid) ||
            !cJSON_AddNumberToObject(o, "refused_full", (double)b->conn_stats.refused_full) ||
            !cJSON_AddNumberToObject(o, "refused_per_uid", (double)b->conn_stats.refused_uid) ||
            !cJSON_AddNumberToObject(o, "accept_errors", (double)b->conn_stats.accept_errors) ||
            !cJSON_AddNumberToObject(o, "peer_errors", (double)b->conn_stats.peer_errors) ||
            !cJSON_AddNumberToObject(o, "worker_exits", (double)b->conn_stats.worker_exits) ||
            !cJSON_AddNumberToObject(o, "pidfd_errors", (double)b->conn_stats.pidfd_errors))
                return -ENOMEM;
        return 0;
}

static const struct ab_loop_ops loop_ops = {
        .watch_worker = watch_worker,
        .conn_stats = conn_stats,
};

/* Send a reply. Returns 0, or -errno when the connection must be dropped (a peer that does
 * not read its replies is not waited for). */
static int
send_reply(struct ab_conn *c, const cJSON *reply)
{
        char *out = NULL;
        size_t len;
        ssize_t n;
        int r;

        r = ab_wire_encode(reply, &out, &len);
        if (r < 0)
                return r;
        do
                n = send(c->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        r = n < 0 ? -errno : 0;
        ab_wipe(out, len);
        cJSON_free(out);
        return r;
}

/* Decode, dispatch and answer one received message. Returns 0 or -1 to close the connection. */
static int
serve_message(struct ab_broker *b, struct ab_conn *c, size_t len, bool truncated)
{
        struct ab_reply_error err = { 0 };
        struct ab_reply_after after = { 0 };
        const char *op = NULL, *derr = NULL;
        cJSON *req = NULL, *reply = NULL;
        uint64_t id = 0;
        int r, ret = 0;

        if (truncated)
                r = -E2BIG;
        else
                r = ab_wire_decode(b->rbuf, len, &req, &op, &derr);
        if (req)
                (void)ab_wire_get_u64(req, "id", AB_JSON_INT_MAX, &id);
        if (r == -E2BIG)
                reply = ab_wire_reply_error(0, AB_ERR_TOO_LARGE, NULL, "message exceeds 65536 bytes");
        else if (r == -EPROTO)
                reply = ab_wire_reply_error(id, AB_ERR_UNSUPPORTED_VERSION, NULL,
                                            "this broker speaks protocol version 1");
        else if (r < 0)
                reply = ab_wire_reply_error(0, AB_ERR_BAD_REQUEST, NULL, derr ? derr : "malformed message");
        else {
                reply = ab_wire_reply_ok(id);
                if (reply && ab_handle_request(&b->state, c, op, req, reply, &err, &after) < 0) {
                        if (after.wipe && cJSON_IsString(after.wipe))
                                ab_wipe(after.wipe->valuestring, strlen(after.wipe->valuestring));
                        after.wipe = NULL;
                        cJSON_Delete(reply);
                        reply = ab_wire_reply_error(id, err.code, err.reason,
                                                    err.message[0] ? err.message : NULL);
                }
        }
        ab_wipe(b->rbuf, len > AB_MSG_MAX ? AB_MSG_MAX : len);
        if (!reply)
                ret = -1;
        else if (send_reply(c, reply) < 0)
                ret = -1;
        /* The journal entries of this request, now that the reply is on its way. */
        ab_audit_flush_journal(b->state.audit);
        if (after.wipe && cJSON_IsString(after.wipe))
                ab_wipe(after.wipe->valuestring, strlen(after.wipe->valuestring));
        if (after.close_conn)
                ret = -1;
        cJSON_Delete(reply);
        cJSON_Delete(req);
        return ret;
}

static void
serve_conn(struct ab_broker *b, struct ab_conn *c, uint32_t events)
{
        for (int i = 0; i < AB_MSGS_PER_WAKEUP; i++) {
                ssize_t n = recv(c->fd, b->rbuf, AB_MSG_MAX + 1, MSG_TRUNC | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        conn_close(b, c);
                        return;
                }
                /* SOCK_SEQPACKET: 0 is either the peer's shutdown or an empty message. */
                if (n == 0 && (events & (EPOLLRDHUP | EPOLLHUP))) {
                        conn_close(b, c);
                        return;
                }
                c->last_ms = ab_now_ms();
                if (serve_message(b, c, (size_t)n, n > AB_MSG_MAX) < 0) {
                        conn_close(b, c);
                        return;
                }
        }
}

static void
housekeeping(struct ab_broker *b)
{
        uint64_t now = ab_now_ms(), exp;
        struct ab_conn *c, *next;

        while (read(b->timerfd, &exp, sizeof(exp)) > 0)
                ;
        ab_tokens_expire(b->state.tokens, now, ab_handle_token_reaped, &b->state);
        /* Expired runs (and, as a backstop, any watched host that is gone). */
        ab_teardown_check(&b->state);
        for (c = b->conns; c; c = next) {
                next = c->next;
                /* A worker connection is exempt: a confined worker cannot reconnect
                 * (docs/protocol.md, worker-hello); it closes when its worker exits (its
                 * exit watch, or this check when it has none). */
                if (!c->worker && now - c->last_ms > AB_CONN_IDLE_MS)
                        conn_close(b, c);
                else if (c->worker && !c->exit_watch && ab_peer_check_alive(&c->peer) < 0) {
                        b->conn_stats.worker_exits++;
                        conn_close(b, c);
                }
        }
        if (b->accept_paused && epoll_add(b->epfd, b->listen_fd, LISTEN_TAG) == 0)
                b->accept_paused = false;
}

static void
handle_signals(struct ab_broker *b)
{
        struct signalfd_siginfo si;

        while (read(b->sigfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                        log_info("SIGHUP: reloading policy");
                        (void)ab_state_load_policy(&b->state, NULL);
                } else {
                        log_info("signal %u: stopping", si.ssi_signo);
                        b->quit = true;
                }
        }
}

int
ab_server_run(struct ab_broker *b)
{
        struct epoll_event events[64];

        sd_notifyf(false, "READY=1\nSTATUS=Serving on %s", b->socket_path);
        while (!b->quit) {
                int n, timeout = -1;

                if (b->watchdog_usec) {
                        uint64_t now = ab_now_ms(), half = b->watchdog_usec / 2000;
                        if (now - b->last_watchdog_ms >= half) {
                                sd_notify(false, "WATCHDOG=1");
                                b->last_watchdog_ms = now;
                        }
                        timeout = (int)(half - (now - b->last_watchdog_ms));
                }
                n = epoll_wait(b->epfd, events, AB_ELEMENTSOF(events), timeout);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                bool do_accept = false, do_signals = false, do_housekeeping = false;
                uint64_t exited[AB_ELEMENTSOF(events)];
                size_t n_exited = 0;
                /* Connections first; process exits (which close connections), housekeeping
                 * (which may close idle connections) and accepting only after, so no event
                 * of this batch can name a freed connection. Watches are freed last. */
                for (int i = 0; i < n; i++) {
                        uint64_t tag = events[i].data.u64;
                        if (tag == LISTEN_TAG)
                                do_accept = true;
                        else if (tag == SIGNAL_TAG)
                                do_signals = true;
                        else if (tag == TIMER_TAG)
                                do_housekeeping = true;
                        else if (ab_pidwatch_is_tag(tag))
                                exited[n_exited++] = tag;
                        else
                                serve_conn(b, (struct ab_conn *)(uintptr_t)tag, events[i].events);
                }
                for (size_t i = 0; i < n_exited; i++)
                        ab_pidwatch_dispatch(&b->pidwatches, exited[i]);
                if (do_signals)
                        handle_signals(b);
                if (do_housekeeping)
                        housekeeping(b);
                if (do_accept)
                        accept_conns(b);
                ab_pidwatch_reap(&b->pidwatches);
                ab_audit_flush_journal(b->state.audit);
        }
        sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        return 0;
}

void
ab_server_teardown(struct ab_broker *b)
{
        while (b->conns)
                conn_close(b, b->conns);
        ab_pidwatch_reap(&b->pidwatches);
        if (b->listen_fd >= 0) {
                close(b->listen_fd);
                if (!b->listen_activated && b->socket_path)
                        unlink(b->socket_path);
        }
        if (b->sigfd >= 0)
                close(b->sigfd);
        if (b->timerfd >= 0)
                close(b->timerfd);
        if (b->epfd >= 0)
                close(b->epfd);
        free(b->rbuf);
        b->rbuf = NULL;
        b->listen_fd = b->sigfd = b->timerfd = b->epfd = -1;
}
