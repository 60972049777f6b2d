/* SPDX-License-Identifier: MIT */
/* The tunnel's call store: results of this run's calls by idempotency key, for calls the
 * control plane sends again, and their checkpoint file that keeps them across a restart. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/hash.h"
#include "common/macros.h"
#include "host/net/tunnel/internal.h"

/* ---- the call store and its checkpoint (sd-event thread) --------------------------------- */

struct tcall *
mcp_tunnel_store_find(struct mcp_tunnel *t, const char *key)
{
        for (struct tcall *c = t->buckets[ab_hash_str(key) % HASH_BUCKETS]; c; c = c->hnext)
                if (strcmp(c->key, key) == 0)
                        return c;
        return NULL;
}

struct tcall *
mcp_tunnel_store_add(struct mcp_tunnel *t, const char *key)
{
        struct tcall *c = calloc(1, sizeof *c);
        size_t b = ab_hash_str(key) % HASH_BUCKETS;

        if (!c || !(c->key = strdup(key)) || !(c->waiters = cJSON_CreateArray())) {
                if (c)
                        free(c->key);
                free(c);
                return NULL;
        }
        c->hnext = t->buckets[b];
        t->buckets[b] = c;
        return c;
}

static void
done_unlink(struct mcp_tunnel *t, struct tcall *c)
{
        if (c->state == TC_RUNNING)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                t->done_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                t->done_tail = c->prev;
        c->prev = c->next = NULL;
        t->n_done--;
        t->done_bytes -= c->bytes;
}

void
mcp_tunnel_store_remove(struct mcp_tunnel *t, struct tcall *c)
{
        struct tcall **pp = &t->buckets[ab_hash_str(c->key) % HASH_BUCKETS];

        while (*pp && *pp != c)
                pp = &(*pp)->hnext;
        if (*pp)
                *pp = c->hnext;
        done_unlink(t, c);
        free(c->key);
        free(c->outcome);
        cJSON_Delete(c->waiters);
        free(c);
}

/* Mark c done (or lost) with outcome (taken) and keep the store within its bounds. */
void
mcp_tunnel_store_finish(struct mcp_tunnel *t, struct tcall *c, enum tc_state state, char *outcome)
{
        free(c->outcome);
        c->outcome = outcome;
        c->bytes = strlen(c->key) + (outcome ? strlen(outcome) : 0) + 64;
        c->state = state;
        c->prev = t->done_tail;
        c->next = NULL;
        if (t->done_tail)
                t->done_tail->next = c;
        else
                t->done_head = c;
        t->done_tail = c;
        t->n_done++;
        t->done_bytes += c->bytes;
        while (t->done_head && t->done_head != c &&
               (t->n_done > t->max_entries || t->done_bytes > t->max_bytes))
                mcp_tunnel_store_remove(t, t->done_head);
}

/* One checkpoint line for c: {"k":key,"o":{"result"|"error":...}} when done, {"k":key,"s":state}
 * otherwise. Returns a new string (with its newline) or NULL. */
static char *
ckpt_line(const struct tcall *c, const char *state)
{
        _cleanup_free_ char *k = NULL;
        cJSON *ks = cJSON_CreateString(c->key);
        char *line = NULL;

        k = ks ? cJSON_PrintUnformatted(ks) : NULL;
        cJSON_Delete(ks);
        if (!k)
                return NULL;
        if (c->state == TC_DONE && !state) {
                if (asprintf(&line, "{\"k\":%s,\"o\":{%s}}\n", k, c->outcome) < 0)
                        line = NULL;
        } else if (asprintf(&line, "{\"k\":%s,\"s\":\"%s\"}\n", k, state ? state : "lost") < 0)
                line = NULL;
        return line;
}

static int
write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* Rewrite the checkpoint from the store: a temporary file (0600) renamed over it, then
 * reopened for appending. Returns 0 or -errno. */
int
mcp_tunnel_ckpt_compact(struct mcp_tunnel *t)
{
        _cleanup_free_ char *tmp = NULL;
        char head[SESSION_MAX + 32];
        int fd, r = 0;

        if (!t->ckpt_path)
                return 0;
        if (asprintf(&tmp, "%s.tmp", t->ckpt_path) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        snprintf(head, sizeof head, "{\"session\":\"%s\"}\n", t->session);
        r = write_all(fd, head, strlen(head));
        for (struct tcall *c = t->done_head; c && r == 0; c = c->next) {
                _cleanup_free_ char *line = ckpt_line(c, NULL);
                r = line ? write_all(fd, line, strlen(line)) : -ENOMEM;
        }
        for (size_t b = 0; b < HASH_BUCKETS && r == 0; b++)
                for (struct tcall *c = t->buckets[b]; c && r == 0; c = c->hnext)
                        if (c->state == TC_RUNNING) {
                                _cleanup_free_ char *line = ckpt_line(c, "running");
                                r = line ? write_all(fd, line, strlen(line)) : -ENOMEM;
                        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0 && rename(tmp, t->ckpt_path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                log_error("cannot write the tunnel checkpoint %s: %s", t->ckpt_path, strerror(-r));
                return r;
        }
        if (t->ckpt_fd >= 0)
                close(t->ckpt_fd);
        t->ckpt_fd = open(t->ckpt_path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (t->ckpt_fd < 0)
                return -errno;
        t->ckpt_lines = t->n_done;
        return 0;
}

/* Append c's state to the checkpoint; compact it when it has grown to twice the store. */
void
mcp_tunnel_ckpt_append(struct mcp_tunnel *t, const struct tcall *c, const char *state)
{
        _cleanup_free_ char *line = NULL;
        int r;

        if (t->ckpt_fd < 0)
                return;
        if (++t->ckpt_lines > 2 * t->max_entries + 64) {
                (void)mcp_tunnel_ckpt_compact(t);
                return;
        }
        line = ckpt_line(c, state);
        r = line ? write_all(t->ckpt_fd, line, strlen(line)) : -ENOMEM;
        if (r < 0)
                log_error("cannot append to the tunnel checkpoint %s: %s", t->ckpt_path, strerror(-r));
}

/* Read the checkpoint (if any): the session id, recorded outcomes, and the calls that were
 * running when the host stopped (their outcome is unknown: they are never run again).
 * A torn last line is ignored. Returns 0 or -errno. */
int
mcp_tunnel_ckpt_load(struct mcp_tunnel *t)
{
        _cleanup_free_ char *data = NULL;
        struct stat st;
        size_t n = 0, loaded = 0;
        char *line, *save = NULL;
        int fd;

        fd = open(t->ckpt_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > CHECKPOINT_MAX_FILE) {
                close(fd);
                log_error("the tunnel checkpoint %s is not a regular file of at most %u MiB", t->ckpt_path,
                          CHECKPOINT_MAX_FILE >> 20);
                return -EINVAL;
        }
        data = malloc((size_t)st.st_size + 1);
        if (!data) {
                close(fd);
                return -ENOMEM;
        }
        while (n < (size_t)st.st_size) {
                ssize_t r = read(fd, data + n, (size_t)st.st_size - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                n += (size_t)r;
        }
        close(fd);
        data[n] = '\0';
        for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                cJSON *j = cJSON_Parse(line), *k, *o, *s, *sid;
                struct tcall *c;

                if (!j)
                        continue;
                sid = cJSON_GetObjectItemCaseSensitive(j, "session");
                k = cJSON_GetObjectItemCaseSensitive(j, "k");
                o = cJSON_GetObjectItemCaseSensitive(j, "o");
                s = cJSON_GetObjectItemCaseSensitive(j, "s");
                if (cJSON_IsString(sid) && !t->session[0] && strlen(sid->valuestring) <= SESSION_MAX)
                        snprintf(t->session, sizeof t->session, "%s", sid->valuestring);
                if (cJSON_IsString(k) && strlen(k->valuestring) <= MCP_TUNNEL_KEY_MAX * 2 + 64) {
                        c = mcp_tunnel_store_find(t, k->valuestring);
                        if (c && c->state != TC_RUNNING)
                                done_unlink(t, c);
                        if (!c)
                                c = mcp_tunnel_store_add(t, k->valuestring);
                        if (c && cJSON_IsObject(o) && o->child &&
                            (strcmp(o->child->string, "result") == 0 ||
                             strcmp(o->child->string, "error") == 0)) {
                                _cleanup_free_ char *v = cJSON_PrintUnformatted(o->child);
                                char *out = NULL;
                                if (v && asprintf(&out, "\"%s\":%s", o->child->string, v) >= 0) {
                                        c->state = TC_RUNNING;
                                        mcp_tunnel_store_finish(t, c, TC_DONE, out);
                                        loaded++;
                                }
                        } else if (c && cJSON_IsString(s) &&
                                   (strcmp(s->valuestring, "cancelled") == 0 ||
                                    strcmp(s->valuestring, "retry") == 0)) {
                                /* cancelled, or refused before it ran: forgotten */
                                c->state = TC_RUNNING;
                                mcp_tunnel_store_remove(t, c);
                        } else if (c && cJSON_IsString(s)) {
                                /* running or lost: it may have had its effect; never run it again */
                                c->state = TC_RUNNING;
                                mcp_tunnel_store_finish(t, c, TC_LOST, NULL);
                        }
                }
                cJSON_Delete(j);
        }
        log_info("tunnel checkpoint %s: %zu recorded results, %zu entries", t->ckpt_path, loaded, t->n_done);
        return 0;
}

/* Delete a run's checkpoint and its temporary file; see tunnel.h. */
int
mcp_tunnel_checkpoint_delete(const char *path)
{
        _cleanup_free_ char *tmp = NULL;
        int r = 0;

        if (unlink(path) < 0 && errno != ENOENT)
                r = -errno;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return r < 0 ? r : -ENOMEM;
        if (unlink(tmp) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}
