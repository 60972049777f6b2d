/* SPDX-License-Identifier: MIT */
/* The host's broker client: what its parts share (the connection, the limits, the request
 * and reply helpers). Not for use outside host/brokerc/; host/brokerc/brokerc.h is the interface.
 *
 * run-open/close, host-config, call-begin and call-end over common/client.h, each with
 * HB_TIMEOUT_MS. A connection the broker closed (its idle timeout) is re-opened once per
 * request before the request fails. Tokens are wiped from every copy these files make (request
 * objects, reply objects, grants). */
#ifndef AB_HOST_BROKERC_INTERNAL_H
#define AB_HOST_BROKERC_INTERNAL_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "common/client.h"
#include "common/encode.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/token.h"
#include "common/utf8.h"
#include "common/wire.h"
#include "host/brokerc/brokerc.h"

#define HB_NOTES_PENDING_MAX 4096 /* call-reject/run-client requests waiting for the broker */
#define HB_CONFIG_BATCH 200       /* tool names per host-config request (the broker takes 256 members) */

struct hb_request;

struct hb_broker {
        char *path;
        struct ab_client *client; /* the blocking connection; NULL after a failed reconnect */
        /* The asynchronous connection: requests pipelined in a FIFO (the broker answers a
         * connection's requests in order), sent ones first, then those waiting to be sent. */
        sd_event *event;
        int afd;      /* -1: not connected */
        uint64_t gen; /* bumped whenever afd is closed */
        sd_event_source *io, *timer;
        struct hb_request *head, *tail, *unsent;
        size_t n_pending;
        size_t n_notes; /* call-reject and run-client requests pending */
        uint64_t next_id;
        uint64_t timeout_usec;
        char *rbuf;                    /* AB_MSG_MAX + 1 bytes */
        struct hb_request *submitting; /* being submitted: failed by its submitter, not its callback */
};

/* Shared between the parts (defined in one, used in another). */
/* Wipe a string member of obj in place (a token in a request or reply). */
void hb_wipe_member(cJSON *obj, const char *key);

/* What a reply (consumed) says: 0 with *ret the reply when "ok"; -EPERM (denied) or -EACCES
 * (not-permitted) with *ret the error reply; another -errno (logged) without a reply. */
int hb_reply_status(const char *op, cJSON *reply, cJSON **ret);

/* Send a request for op made by fill (which adds the fields; may be NULL) and wait for the
 * reply. A connection closed by the broker is re-opened once and the request sent again.
 * Returns 0 with *ret the successful reply; -EPERM (denied) or -EACCES (not-permitted) with
 * *ret the error reply; other -errno without a reply. wipe_key: a request member wiped
 * before the request is freed (or NULL). */
int hb_request_sync(struct hb_broker *b, cJSON *req_fields, const char *op, const char *wipe_key,
                    cJSON **ret);

/* The fields of a call-begin request (without the envelope). Returns 0 or -errno. */
/* Add args_sha256 and args_len of args_json (len bytes) to fields. Returns 0 or -errno. */
int hb_add_args_digest(cJSON *fields, const char *args_json, size_t len);

int hb_begin_fields(const char *run, const char *tool, const char *args_json, pid_t worker_pid,
                    unsigned ttl_s, cJSON **ret);

/* The reason and message of a denial reply, as new strings. Returns 0 or -ENOMEM. */
int hb_deny_strings(const cJSON *reply, char **ret_reason, char **ret_message);

/* The grant in a successful call-begin reply (consumed; its token is wiped). Returns 0 or
 * -EBADMSG. */
int hb_begin_grant(cJSON *reply, struct hb_grant *ret);

/* The fields of a call-end request. Returns 0 or -errno. */
int hb_end_fields(const struct hb_grant *g, const char *status, uint64_t result_bytes, uint64_t duration_ms,
                  cJSON **ret);

void hb_async_close(struct hb_broker *b);

/* Fail every request (sent or not) with err. */
void hb_async_fail_all(struct hb_broker *b, int err);

#endif /* AB_HOST_BROKERC_INTERNAL_H */
