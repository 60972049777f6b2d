/* SPDX-License-Identifier: MIT */
/* abclient: a small protocol client for the integration tests (the tests/integration scripts).
 *
 * It speaks docs/protocol.md over one SOCK_SEQPACKET connection, so a whole sequence of
 * requests comes from one process (call tokens are bound to the process that began the
 * call). Every reply is printed on stdout as one JSON line, in order.
 *
 * Usage: abclient --socket PATH [OPTIONS] [ITEM...]
 *   ITEMs are taken from the arguments, or, when there are none (and neither --raw nor
 *   --random is given), one per line from stdin (blank lines and lines starting with '#'
 *   are skipped). An ITEM is
 *     a JSON request      "v":1 and an increasing "id" are added to an object that lacks
 *                         them; {{NAME}} is replaced by the member NAME (string or number)
 *                         of the latest reply that had one, e.g. "token":"{{token}}".
 *                         Text that is not JSON after substitution is sent as it is.
 *     !verbatim TEXT      send TEXT exactly (no substitution, nothing added)
 *     !raw FILE           send the bytes of FILE as one message
 *     !sleep MS           wait MS milliseconds
 *     !close              close the connection (the next request opens a new one)
 *     !set NAME VALUE     define {{NAME}}
 *   --raw FILE            (repeatable) like the item "!raw FILE", after the ITEMs
 *   --random N --seed S   after that, send N random and mutated messages (deterministic for
 *                         a seed) and print a summary line
 *   --quiet               with --random: print only the summary line
 *   --timeout MS          wait at most MS for each reply (default 5000)
 *   --notify-listen PATH  instead: bind a datagram socket at PATH (a fake NOTIFY_SOCKET)
 *                         and print each datagram received as one JSON string line
 *                         until SIGTERM/SIGINT
 *
 * Replies are printed as received (re-serialised on one line). When no reply comes, a
 * line {"abclient_error":"timeout"|"connection-closed"|"send-failed"|"bad-reply",...}
 * is printed instead, and the next request reconnects if the connection is gone.
 * Exit status: 0 when every item was processed, 1 when the broker could not be reached
 * at all, 2 for a usage error. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/macros.h"
#include "common/wire.h"

#define VARS_MAX 64
#define VAR_NAME_MAX 64
#define RAW_FILE_MAX (1024 * 1024)

struct var {
        char name[VAR_NAME_MAX];
        char *value;
};

struct state {
        const char *socket_path;
        int fd;
        int timeout_ms;
        uint64_t next_id;
        struct var vars[VARS_MAX];
        size_t n_vars;
        char *rbuf; /* AB_MSG_MAX + 1 bytes */
        bool quiet;
        /* counts for the summary line */
        unsigned long sent, replies, ok, errors, closed, timeouts, send_failed, bad_replies;
};

/* ---- growing buffers (abort on OOM: this is a test tool) ---- */

struct buf {
        char *p;
        size_t len, cap;
};

static void
buf_add(struct buf *b, const void *data, size_t len)
{
        if (b->len + len + 1 > b->cap) {
                size_t cap = (b->len + len + 1) * 2;
                char *n = realloc(b->p, cap);
                if (!n)
                        abort();
                b->p = n;
                b->cap = cap;
        }
        memcpy(b->p + b->len, data, len);
        b->len += len;
        b->p[b->len] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
        buf_add(b, s, strlen(s));
}

/* ---- variables ---- */

static struct var *
var_find(struct state *s, const char *name, size_t len)
{
        for (size_t i = 0; i < s->n_vars; i++)
                if (strlen(s->vars[i].name) == len && memcmp(s->vars[i].name, name, len) == 0)
                        return &s->vars[i];
        return NULL;
}

/* Define or replace the variable name. Returns 0 or -ENOSPC/-ENOMEM/-EINVAL. */
static int
var_set(struct state *s, const char *name, const char *value)
{
        size_t len = strlen(name);
        struct var *v = var_find(s, name, len);
        char *copy;

        if (len == 0 || len >= VAR_NAME_MAX)
                return -EINVAL;
        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        if (!v) {
                if (s->n_vars >= VARS_MAX) {
                        free(copy);
                        return -ENOSPC;
                }
                v = &s->vars[s->n_vars++];
                snprintf(v->name, sizeof(v->name), "%s", name);
        } else {
                explicit_bzero(v->value, strlen(v->value));
                free(v->value);
        }
        v->value = copy;
        return 0;
}

/* Remember the top-level string and number members of a reply as variables. */
static void
vars_from_reply(struct state *s, const cJSON *reply)
{
        const cJSON *m;

        cJSON_ArrayForEach(m, reply)
        {
                char num[64];
                if (!m->string || strcmp(m->string, "id") == 0 || strcmp(m->string, "v") == 0)
                        continue;
                if (cJSON_IsString(m))
                        (void)var_set(s, m->string, m->valuestring);
                else if (cJSON_IsNumber(m)) {
                        snprintf(num, sizeof(num), "%.17g", m->valuedouble);
                        (void)var_set(s, m->string, num);
                }
        }
}

/* Replace every {{NAME}} in text. Returns a new string, or NULL with *ret_missing set to
 * the first undefined name (a static buffer). */
static char *
substitute(struct state *s, const char *text, const char **ret_missing)
{
        static char missing[VAR_NAME_MAX + 1];
        struct buf out = { 0 };
        const char *p = text;

        buf_str(&out, "");
        while (*p) {
                const char *open = strstr(p, "{{"), *close = open ? strstr(open + 2, "}}") : NULL;
                struct var *v;

                if (!open || !close) {
                        buf_str(&out, p);
                        break;
                }
                buf_add(&out, p, (size_t)(open - p));
                v = var_find(s, open + 2, (size_t)(close - open - 2));
                if (!v) {
                        snprintf(missing, sizeof(missing), "%.*s", (int)(close - open - 2), open + 2);
                        free(out.p);
                        *ret_missing = missing;
                        return NULL;
                }
                buf_str(&out, v->value);
                p = close + 2;
        }
        return out.p;
}

/* ---- output ---- */

static void
print_line(const char *line)
{
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
}

static void
print_error(struct state *s, const char *what, const char *detail)
{
        cJSON *o;
        char *text;

        if (s->quiet)
                return;
        o = cJSON_CreateObject();
        if (!o)
                return;
        cJSON_AddStringToObject(o, "abclient_error", what);
        if (detail)
                cJSON_AddStringToObject(o, "detail", detail);
        text = cJSON_PrintUnformatted(o);
        if (text)
                print_line(text);
        cJSON_free(text);
        cJSON_Delete(o);
}

/* ---- the connection ---- */

/* Connect when not connected. Returns 0 or -errno. */
static int
ensure_connected(struct state *s)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (s->fd >= 0)
                return 0;
        if (strlen(s->socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, s->socket_path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        /* Room for messages larger than the protocol allows (the broker must refuse them). */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){ 4 * 1024 * 1024 }, sizeof(int));
        s->fd = fd;
        return 0;
}

static void
disconnect(struct state *s)
{
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
}

/* Send len bytes as one message and print the reply. Returns 0, or -errno when the
 * broker cannot be reached at all. */
static int
exchange(struct state *s, const void *msg, size_t len)
{
        struct pollfd pfd;
        cJSON *reply;
        char *text;
        ssize_t n;
        int r;

        r = ensure_connected(s);
        if (r < 0)
                return r;
        do
                n = send(s->fd, msg, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                s->send_failed++;
                print_error(s, "send-failed", strerror(errno));
                disconnect(s);
                return 0;
        }
        s->sent++;
        pfd = (struct pollfd){ .fd = s->fd, .events = POLLIN };
        do
                r = poll(&pfd, 1, s->timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r == 0) {
                s->timeouts++;
                print_error(s, "timeout", NULL);
                /* A late reply would be taken for the next one: start afresh. */
                disconnect(s);
                return 0;
        }
        do
                n = recv(s->fd, s->rbuf, AB_MSG_MAX + 1, MSG_TRUNC);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
                s->closed++;
                print_error(s, "connection-closed", n < 0 ? strerror(errno) : NULL);
                disconnect(s);
                return 0;
        }
        if (n > AB_MSG_MAX) {
                s->bad_replies++;
                print_error(s, "bad-reply", "reply exceeds the protocol's message size");
                return 0;
        }
        reply = cJSON_ParseWithLength(s->rbuf, (size_t)n);
        explicit_bzero(s->rbuf, (size_t)n);
        if (!reply || !cJSON_IsObject(reply)) {
                cJSON_Delete(reply);
                s->bad_replies++;
                print_error(s, "bad-reply", "reply is not a JSON object");
                return 0;
        }
        s->replies++;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                s->ok++;
        else
                s->errors++;
        vars_from_reply(s, reply);
        if (!s->quiet) {
                text = cJSON_PrintUnformatted(reply);
                if (text) {
                        print_line(text);
                        explicit_bzero(text, strlen(text));
                }
                cJSON_free(text);
        }
        cJSON_Delete(reply);
        return 0;
}

/* Read a whole file (at most RAW_FILE_MAX bytes). Returns 0 or -errno. */
static int
read_file(const char *path, char **ret, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        char *buf;
        size_t n;

        if (!f)
                return -errno;
        buf = malloc(RAW_FILE_MAX + 1);
        if (!buf) {
                fclose(f);
                return -ENOMEM;
        }
        n = fread(buf, 1, RAW_FILE_MAX + 1, f);
        fclose(f);
        if (n > RAW_FILE_MAX) {
                free(buf);
                return -EFBIG;
        }
        *ret = buf;
        *ret_len = n;
        return 0;
}

/* Send one JSON request: substitute variables, add "v" and "id" when missing. */
static int
send_request(struct state *s, const char *text)
{
        const char *missing = NULL;
        char *subst = substitute(s, text, &missing), *out = NULL;
        cJSON *req;
        int r;

        if (!subst) {
                print_error(s, "undefined-variable", missing);
                return 0;
        }
        req = cJSON_Parse(subst);
        if (cJSON_IsObject(req)) {
                if (!cJSON_HasObjectItem(req, "v"))
                        cJSON_AddNumberToObject(req, "v", AB_PROTO_VERSION);
                if (!cJSON_HasObjectItem(req, "id"))
                        cJSON_AddNumberToObject(req, "id", (double)s->next_id++);
                out = cJSON_PrintUnformatted(req);
        }
        cJSON_Delete(req);
        r = exchange(s, out ? out : subst, strlen(out ? out : subst));
        if (out) {
                explicit_bzero(out, strlen(out));
                cJSON_free(out);
        }
        explicit_bzero(subst, strlen(subst));
        free(subst);
        return r;
}

/* Process one item (see the header comment). Returns 0 or -errno when the broker cannot
 * be reached. */
static int
do_item(struct state *s, const char *item)
{
        while (*item == ' ' || *item == '\t')
                item++;
        if (!*item || *item == '#')
                return 0;
        if (strncmp(item, "!verbatim ", 10) == 0)
                return exchange(s, item + 10, strlen(item + 10));
        if (strncmp(item, "!raw ", 5) == 0) {
                char *buf = NULL;
                size_t len = 0;
                int r = read_file(item + 5, &buf, &len);
                if (r < 0) {
                        print_error(s, "raw-file", strerror(-r));
                        return 0;
                }
                r = exchange(s, buf, len);
                free(buf);
                return r;
        }
        if (strncmp(item, "!sleep ", 7) == 0) {
                long ms = strtol(item + 7, NULL, 10);
                struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
                while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                return 0;
        }
        if (strcmp(item, "!close") == 0) {
                disconnect(s);
                return 0;
        }
        if (strncmp(item, "!set ", 5) == 0) {
                char name[VAR_NAME_MAX];
                const char *sp = strchr(item + 5, ' ');
                size_t len = sp ? (size_t)(sp - item - 5) : 0;

                if (!sp || len == 0 || len >= sizeof(name)) {
                        print_error(s, "bad-item", "usage: !set NAME VALUE");
                        return 0;
                }
                memcpy(name, item + 5, len);
                name[len] = '\0';
                if (var_set(s, name, sp + 1) < 0)
                        print_error(s, "bad-item", "cannot set the variable");
                return 0;
        }
        if (*item == '!') {
                print_error(s, "bad-item", item);
                return 0;
        }
        return send_request(s, item);
}

/* ---- random and mutated messages ---- */

static uint64_t rng_state;

/* splitmix64: deterministic for a seed, good enough for a fuzz loop. */
static uint64_t
rng(void)
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

static size_t
rnd(size_t n)
{
        return n ? (size_t)(rng() % n) : 0;
}

/* A value of a random JSON type, sometimes far outside what the protocol allows. */
static void
random_value(struct buf *b, int depth)
{
        static const char *const atoms[] = {
                "null",
                "true",
                "false",
                "0",
                "-1",
                "1e308",
                "-1e308",
                "9007199254740993",
                "18446744073709551616",
                "1.5",
                "\"\"",
                "\"abt_\"",
                "\"x\"",
                "[]",
                "{}",
                "\"\\u0000\"",
                "\"\\ud800\"",
                "\"\\u00e9\\n\\t\"",
                "NaN",
                "\"abt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"",
        };
        char tmp[64];

        switch (rnd(depth > 3 ? 3 : 6)) {
        case 0: buf_str(b, atoms[rnd(AB_ELEMENTSOF(atoms))]); break;
        case 1:
                snprintf(tmp, sizeof(tmp), "%" PRId64, (int64_t)rng());
                buf_str(b, tmp);
                break;
        case 2: {
                size_t n = rnd(8) == 0 ? 4000 + rnd(1000) : rnd(40);
                buf_str(b, "\"");
                for (size_t i = 0; i < n; i++) {
                        char c = (char)(' ' + 1 + rnd(90));
                        if (c == '"' || c == '\\')
                                c = 'q';
                        buf_add(b, &c, 1);
                }
                buf_str(b, "\"");
                break;
        }
        case 3: {
                size_t n = rnd(4);
                buf_str(b, "[");
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                buf_str(b, ",");
                        random_value(b, depth + 1);
                }
                buf_str(b, "]");
                break;
        }
        case 4: {
                size_t n = rnd(4);
                buf_str(b, "{");
                for (size_t i = 0; i < n; i++) {
                        snprintf(tmp, sizeof(tmp), "%s\"k%zu\":", i ? "," : "", rnd(5));
                        buf_str(b, tmp);
                        random_value(b, depth + 1);
                }
                buf_str(b, "}");
                break;
        }
        default: {
                /* nesting, often beyond the protocol's 8 levels */
                char opens[40];
                size_t n = 1 + rnd(sizeof(opens));
                for (size_t i = 0; i < n; i++) {
                        opens[i] = rnd(2) ? '[' : '{';
                        buf_str(b, opens[i] == '[' ? "[" : "{\"a\":");
                }
                buf_str(b, "1");
                while (n > 0)
                        buf_str(b, opens[--n] == '[' ? "]" : "}");
                break;
        }
        }
}

static const char *const fuzz_ops[] = {
        "status",      "run-open",    "run-close", "run-list",   "call-begin", "call-end",
        "secret-read", "secret-sign", "mint-jwt",  "token-list", "no-such-op", "",
};

static const char *const fuzz_fields[] = {
        "label",      "run",   "tool",  "args_sha256", "args_len",     "args",
        "worker_pid", "ttl_s", "token", "status",      "result_bytes", "duration_ms",
        "secret",     "alg",   "data",  "audience",    "scope",
};

/* A well-formed request with plausible fields (using {{run}}/{{token}} when known). */
static void
template_request(struct state *s, struct buf *b)
{
        const char *op = fuzz_ops[rnd(AB_ELEMENTSOF(fuzz_ops) - 2)];
        struct var *run = var_find(s, "run", 3), *token = var_find(s, "token", 5);
        char tmp[256];

        snprintf(tmp, sizeof(tmp), "{\"v\":1,\"op\":\"%s\",\"id\":%" PRIu64, op, s->next_id++);
        buf_str(b, tmp);
        if (strcmp(op, "call-begin") == 0) {
                snprintf(
                        tmp, sizeof(tmp),
                        ",\"run\":\"%s\",\"tool\":\"echo.echo\",\"args_sha256\":"
                        "\"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"args_len\":2",
                        run && rnd(2) ? run->value : "0123456789abcdef0123456789abcdef");
                buf_str(b, tmp);
        } else if (strcmp(op, "run-close") == 0 || strcmp(op, "run-open") == 0) {
                buf_str(b, ",\"run\":\"0123456789abcdef0123456789abcdef\",\"label\":\"fuzz\"");
        } else if (strcmp(op, "status") != 0 && strcmp(op, "run-list") != 0 &&
                   strcmp(op, "token-list") != 0) {
                snprintf(tmp, sizeof(tmp),
                         ",\"token\":\"%s\",\"tool\":\"echo.echo\",\"secret\":\"s\",\"alg\":\"hmac-sha256\","
                         "\"data\":\"aGVsbG8=\",\"audience\":\"a\",\"status\":\"ok\",\"result_bytes\":1,"
                         "\"duration_ms\":1",
                         token && rnd(2) ? token->value : "abt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
                buf_str(b, tmp);
        }
        buf_str(b, "}");
}

/* One random message into b (not NUL-terminated on the wire; b->len is its size). */
static void
random_message(struct state *s, struct buf *b)
{
        char tmp[128];

        b->len = 0;
        switch (rnd(9)) {
        case 0: { /* random bytes */
                size_t n = 1 + rnd(512);
                for (size_t i = 0; i < n; i++) {
                        char c = (char)rnd(256);
                        buf_add(b, &c, 1);
                }
                break;
        }
        case 1: /* a request with bytes flipped, inserted or deleted */
        case 2: {
                size_t n = 1 + rnd(4);
                template_request(s, b);
                for (size_t i = 0; i < n && b->len > 1; i++) {
                        size_t at = rnd(b->len);
                        switch (rnd(3)) {
                        case 0: b->p[at] ^= (char)(1u << rnd(8)); break;
                        case 1: b->p[at] = (char)rnd(256); break;
                        default: memmove(b->p + at, b->p + at + 1, b->len - at - 1); b->len--;
                        }
                }
                break;
        }
        case 3: /* a request cut short */
                template_request(s, b);
                b->len = 1 + rnd(b->len - 1);
                break;
        case 4: { /* well-formed envelope, fields of random types */
                size_t n = 1 + rnd(6);
                snprintf(tmp, sizeof(tmp), "{\"v\":1,\"op\":\"%s\",\"id\":%" PRIu64,
                         fuzz_ops[rnd(AB_ELEMENTSOF(fuzz_ops))], s->next_id++);
                buf_str(b, tmp);
                for (size_t i = 0; i < n; i++) {
                        snprintf(tmp, sizeof(tmp), ",\"%s\":", fuzz_fields[rnd(AB_ELEMENTSOF(fuzz_fields))]);
                        buf_str(b, tmp);
                        random_value(b, 0);
                }
                buf_str(b, "}");
                break;
        }
        case 5: { /* envelope members of the wrong types */
                buf_str(b, "{\"v\":");
                random_value(b, 2);
                buf_str(b, ",\"op\":");
                if (rnd(2))
                        random_value(b, 2);
                else
                        buf_str(b, "\"status\"");
                buf_str(b, ",\"id\":");
                random_value(b, 2);
                buf_str(b, "}");
                break;
        }
        case 6: { /* too many members */
                size_t n = 200 + rnd(200);
                snprintf(tmp, sizeof(tmp), "{\"v\":1,\"op\":\"status\",\"id\":%" PRIu64, s->next_id++);
                buf_str(b, tmp);
                for (size_t i = 0; i < n; i++) {
                        snprintf(tmp, sizeof(tmp), ",\"m%zu\":%zu", i, i);
                        buf_str(b, tmp);
                }
                buf_str(b, "}");
                break;
        }
        case 7: /* any JSON value at the top */ random_value(b, 0); break;
        default:
                if (rnd(8) == 0) { /* larger than the protocol's 64 KiB */
                        size_t n = AB_MSG_MAX + 1 + rnd(4096);
                        buf_str(b, "{\"v\":1,\"op\":\"status\",\"id\":1,\"pad\":\"");
                        while (b->len < n)
                                buf_str(b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
                        buf_str(b, "\"}");
                } else
                        template_request(s, b);
        }
        if (b->len == 0) /* a zero-length datagram reads as end-of-file: avoid it */
                buf_str(b, "{");
}

static int
run_random(struct state *s, unsigned long n, uint64_t seed)
{
        struct buf b = { 0 };
        char line[512];
        int r = 0;

        rng_state = seed;
        for (unsigned long i = 0; i < n; i++) {
                random_message(s, &b);
                r = exchange(s, b.p, b.len);
                if (r < 0)
                        break;
        }
        free(b.p);
        snprintf(line, sizeof(line),
                 "{\"abclient\":\"summary\",\"messages\":%lu,\"sent\":%lu,\"replies\":%lu,\"ok\":%lu,"
                 "\"errors\":%lu,\"closed\":%lu,\"timeouts\":%lu,\"send_failed\":%lu,\"bad_replies\":%lu}",
                 n, s->sent, s->replies, s->ok, s->errors, s->closed, s->timeouts, s->send_failed,
                 s->bad_replies);
        print_line(line);
        return r;
}

/* ---- fake NOTIFY_SOCKET ---- */

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
        stop = 1;
}

/* Bind a datagram socket at path and print every datagram as a JSON string line. */
static int
notify_listen(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct sigaction sact = { .sa_handler = on_signal };
        char buf[4096];
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        (void)chmod(path, 0666);
        sigaction(SIGTERM, &sact, NULL);
        sigaction(SIGINT, &sact, NULL);
        while (!stop) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
                cJSON *str;
                char *text;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                buf[n] = '\0';
                str = cJSON_CreateString(buf);
                text = str ? cJSON_PrintUnformatted(str) : NULL;
                if (text)
                        print_line(text);
                cJSON_free(text);
                cJSON_Delete(str);
        }
        close(fd);
        unlink(path);
        return 0;
}

static void
usage(FILE *f)
{
        fputs("Usage: abclient --socket PATH [--timeout MS] [--raw FILE]... [--random N --seed S [--quiet]]\n"
              "                [ITEM...]\n"
              "       abclient --notify-listen PATH\n"
              "Send protocol requests to agentbrokerd over one connection and print each reply\n"
              "as one JSON line (see the comment at the top of tests/integration/abclient.c).\n",
              f);
}

int
main(int argc, char **argv)
{
        static const struct option opts[] = { { "socket", required_argument, NULL, 's' },
                                              { "timeout", required_argument, NULL, 't' },
                                              { "raw", required_argument, NULL, 'r' },
                                              { "random", required_argument, NULL, 'n' },
                                              { "seed", required_argument, NULL, 'S' },
                                              { "quiet", no_argument, NULL, 'q' },
                                              { "notify-listen", required_argument, NULL, 'N' },
                                              { "help", no_argument, NULL, 'h' },
                                              {} };
        struct state s = { .fd = -1, .timeout_ms = 5000, .next_id = 1 };
        const char *raws[64];
        size_t n_raws = 0;
        unsigned long n_random = 0;
        uint64_t seed = 1;
        bool have_random = false;
        int c, r = 0, ret = 1;

        while ((c = getopt_long(argc, argv, "s:t:r:n:S:qN:h", opts, NULL)) != -1) {
                switch (c) {
                case 's': s.socket_path = optarg; break;
                case 't': s.timeout_ms = atoi(optarg); break;
                case 'r':
                        if (n_raws >= AB_ELEMENTSOF(raws)) {
                                fprintf(stderr, "abclient: too many --raw\n");
                                return 2;
                        }
                        raws[n_raws++] = optarg;
                        break;
                case 'n':
                        n_random = strtoul(optarg, NULL, 10);
                        have_random = true;
                        break;
                case 'S': seed = strtoull(optarg, NULL, 10); break;
                case 'q': s.quiet = true; break;
                case 'N':
                        r = notify_listen(optarg);
                        if (r < 0)
                                fprintf(stderr, "abclient: %s: %s\n", optarg, strerror(-r));
                        return r < 0 ? 1 : 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!s.socket_path || s.timeout_ms <= 0) {
                usage(stderr);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        s.rbuf = malloc(AB_MSG_MAX + 1);
        if (!s.rbuf)
                return 1;

        if (optind < argc) {
                for (int i = optind; i < argc && r >= 0; i++)
                        r = do_item(&s, argv[i]);
        } else if (n_raws == 0 && !have_random) {
                char *line = NULL;
                size_t cap = 0;
                ssize_t n;
                while (r >= 0 && (n = getline(&line, &cap, stdin)) >= 0) {
                        if (n > 0 && line[n - 1] == '\n')
                                line[n - 1] = '\0';
                        r = do_item(&s, line);
                }
                if (line)
                        explicit_bzero(line, cap);
                free(line);
        }
        for (size_t i = 0; i < n_raws && r >= 0; i++) {
                char item[4096];
                snprintf(item, sizeof(item), "!raw %s", raws[i]);
                r = do_item(&s, item);
        }
        if (r >= 0 && have_random)
                r = run_random(&s, n_random, seed);
        if (r < 0)
                fprintf(stderr, "abclient: cannot connect to %s: %s\n", s.socket_path, strerror(-r));
        else
                ret = 0;

        disconnect(&s);
        for (size_t i = 0; i < s.n_vars; i++) {
                explicit_bzero(s.vars[i].value, strlen(s.vars[i].value));
                free(s.vars[i].value);
        }
        explicit_bzero(s.rbuf, AB_MSG_MAX + 1);
        free(s.rbuf);
        return ret;
}
