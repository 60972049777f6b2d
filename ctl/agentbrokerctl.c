/* SPDX-License-Identifier: MIT */
/* agentbrokerctl: the admin CLI of agentbrokerd. Talks to the broker over its socket
 * (docs/protocol.md), checks policy files locally and summarises the audit log.
 * Outputs are stable (scripts and integration tests read them) and documented in
 * man/agentbrokerctl.1. Exit status: 0 success, 1 failure, 2 usage error. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/client.h"
#include "common/connect_hint.h"
#include "common/json_cleanup.h"
#include "common/limits.h"
#include "common/macros.h"
#include "common/wire.h"
#include "policy/policy.h"
#include "audit/report.h"
#include "ctl/timearg.h"
#include "ctl/trace.h"
#include "ctl/secret.h"

#define PROG "agentbrokerctl"
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define CONTINUE (-1) /* option parsing: go on with the command */

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS (3600 * 1000)

static const char *arg_socket; /* NULL: $AGENTBROKER_SOCKET, else AB_DEFAULT_SOCKET */
static int arg_timeout_ms = DEFAULT_TIMEOUT_MS;

/* ------------------------------------------------------------------------------------------ */
/* Help texts                                                                                   */

static const char help_main[] =
        "Usage: " PROG " [--socket PATH] [--timeout MS] COMMAND [ARGS...]\n"
        "\n"
        "Administer agentbrokerd, the agentbroker credential broker.\n"
        "\n"
        "Commands:\n"
        "  status [--json]             Show the broker's state\n"
        "  identity [--json]           Print the tunnel identity's public key (JWK, PEM)\n"
        "  policy check [FILE]         Check a policy file and its policy.d/ drop-ins locally\n"
        "  policy reload               Make the broker reload its policy\n"
        "  run open [--label TEXT] [--profile NAME]  Open a run and print its id\n"
        "  run close RUN [--json]      Close a run and print its summary\n"
        "  run list [--json]           List runs\n"
        "  tokens [--json]             List active call tokens (never the tokens themselves)\n"
        "  http-token [--ttl DURATION] Issue a bearer token for agentbroker-mcp --http\n"
        "  audit [OPTIONS]             Summarise the broker's records in the audit log\n"
        "  trace [--run ID] [--follow] Print one line per tool call, from the journal\n"
        "  secret install NAME FILE    Install a secret into the credential store\n"
        "  help [COMMAND]              Show the help of a command\n"
        "\n"
        "Options:\n"
        "  -s, --socket PATH   Broker socket (default: $AGENTBROKER_SOCKET, else\n"
        "                      " AB_DEFAULT_SOCKET ")\n"
        "  -t, --timeout MS    Wait at most MS milliseconds for each reply (default 10000)\n"
        "  -h, --help          Show this help\n"
        "  -V, --version       Show the version\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error. See agentbrokerctl(1).\n";

static const char help_status[] =
        "Usage: " PROG " status [--json]\n"
        "\n"
        "Show the broker's version, pid, uptime, policy files, open runs, active tokens,\n"
        "audit state (enabled, not-configured or failing, with why) and secrets (names,\n"
        "types, availability and why one is unavailable; never a value).\n"
        "\n"
        "  --json   Print the broker's reply as a JSON object\n";

static const char help_identity[] =
        "Usage: " PROG " identity [--json]\n"
        "\n"
        "Print the public key of the sandbox's tunnel identity (policy tunnel.identity) as a\n"
        "JWK and as PEM, with the sandbox id that its dial JWTs carry as iss, for registration\n"
        "with a control plane (docs/tunnel.md). The private key never leaves the broker.\n"
        "\n"
        "  --json   Print the broker's reply as a JSON object\n";

static const char help_policy[] =
        "Usage: " PROG " policy check [FILE]\n"
        "       " PROG " policy reload\n"
        "\n"
        "check   Load FILE (default " AB_POLICY_DEFAULT_PATH ") and the *.yaml files of\n"
        "        the policy.d/ directory next to it, without contacting the broker. Prints\n"
        "        \"FILE: OK (N secrets, N tool rules, N modules)\", or every error as\n"
        "        \"file:line:column: message\" on stderr and exits 1.\n"
        "reload  Make the broker reload its policy files (as SIGHUP does) and print the\n"
        "        files it loaded, one per line. On errors the old policy stays in force;\n"
        "        the errors are printed on stderr and the exit status is 1.\n";

static const char help_run[] =
        "Usage: " PROG " run open [--label TEXT] [--profile NAME]\n"
        "       " PROG " run close RUN [--json]\n"
        "       " PROG " run list [--json]\n"
        "\n"
        "open    Open a run and print its id alone on stdout.\n"
        "close   Close RUN: revoke its tokens and print its summary (calls, denied,\n"
        "        result bytes, duration).\n"
        "list    List your runs (an admin sees every run).\n"
        "\n"
        "  --label TEXT   A free-text label for the new run\n"
        "  --profile NAME Open it with the policy's profile NAME (its tools, secrets and\n"
        "                 sandbox; unknown names are refused)\n"
        "  --json         Print the broker's reply as a JSON object\n";

static const char help_tokens[] =
        "Usage: " PROG " tokens [--json]\n"
        "\n"
        "List the active call tokens: short id, run, tool, call id, time to expiry and\n"
        "uses. The tokens themselves are never shown. Needs admin rights.\n"
        "\n"
        "  --json   Print the broker's reply as a JSON object\n";

static const char help_http_token[] =
        "Usage: " PROG " http-token [--ttl DURATION]\n"
        "\n"
        "Issue a bearer token for agentbroker-mcp --http and print it (clients send it as\n"
        "\"Authorization: Bearer TOKEN\"). The broker keeps only its hash; issuing it is\n"
        "audited (op=http-token-issue). Needs admin rights.\n"
        "\n"
        "  --ttl DURATION   How long the token is valid: N, Ns, Nm, Nh or Nd (default 15m,\n"
        "                   at most 7d)\n";

static const char help_audit[] =
        "Usage: " PROG " audit [--run ID] [--tool NAME] [--since TIME] [--denied] [--calls]\n"
        "                      [--format text|json] [--file PATH]\n"
        "\n"
        "Read agentbrokerd's records back from the audit log and summarise them per run,\n"
        "tool and decision. Does not contact the broker.\n"
        "\n"
        "  --run ID          Only this run\n"
        "  --tool NAME       Only this tool\n"
        "  --since TIME      Only records at or after TIME: an epoch number,\n"
        "                    \"YYYY-MM-DD[ HH:MM[:SS]]\" (local time), now, recent\n"
        "                    (10 minutes ago), today, yesterday, boot, or a relative\n"
        "                    time such as -30m, -1h, -2d, -1w, -1h30m\n"
        "  --denied          Only denials (tool-call-deny, token-deny)\n"
        "  --calls           Instead of the summary, the per-call timeline in log order:\n"
        "                    every call begun, denied and ended, and every secret use\n"
        "  --format FORMAT   text (default) or json; --json is the same as --format json\n"
        "  --file PATH       Read this audit log file instead of the system's audit log\n";

static const char help_trace[] =
        "Usage: " PROG " trace [--run ID] [--since TIME] [--follow] [--directory DIR]\n"
        "\n"
        "Print one line per tool call from the broker's journal entries, as the calls end or\n"
        "are denied: time, run, call number, tool, decision, secrets used (name(operation)),\n"
        "status, bytes returned, duration, and redactions when the entry has them. Needs read\n"
        "access to the system journal (root, or the groups systemd-journal or adm).\n"
        "\n"
        "  --run ID          Only this run\n"
        "  --since TIME      Only calls at or after TIME (as for audit --since)\n"
        "  --follow          Start at the end of the journal and print new calls as they\n"
        "                    happen, until interrupted\n"
        "  --directory DIR   Read the journal files in DIR instead of the system journal\n";

static const char help_secret[] =
        "Usage: " PROG " secret install NAME FILE [--credstore DIR] [--dropin-dir DIR]\n"
        "\n"
        "Install the secret NAME (for a module's tools) from FILE (- for standard input, at\n"
        "most 64 KiB): it is written to the credential store as agentbroker.NAME (mode 0600;\n"
        "an existing one is not replaced), and a drop-in for agentbroker.service\n"
        "(agentbroker-secret-NAME.conf) passes it to the broker with LoadCredential=. Prints\n"
        "the policy lines that name it. Does not contact the broker; the value is never shown.\n"
        "\n"
        "  --credstore DIR   The credential store (default /etc/credstore)\n"
        "  --dropin-dir DIR  Where the drop-in goes (default\n"
        "                    /etc/systemd/system/agentbroker.service.d when systemd runs the\n"
        "                    system; without systemd no drop-in is written)\n";

static const char help_help[] =
        "Usage: " PROG " help [COMMAND]\n"
        "\n"
        "Show the help of COMMAND (status, identity, policy, run, tokens, http-token, audit,\n"
        "trace, secret), or of the program.\n";

/* ------------------------------------------------------------------------------------------ */
/* Output helpers                                                                               */

/* Write s to f with control characters (and DEL) replaced by '?', so that a string from the
 * broker or a policy file can never drive the terminal. keep_newlines keeps '\n'. */
static void
fput_safe(const char *s, FILE *f, bool keep_newlines)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                unsigned char c = *p;
                if ((c < 0x20 && !(keep_newlines && c == '\n')) || c == 0x7f)
                        c = '?';
                fputc(c, f);
        }
}

/* Print "agentbrokerctl: <message>" on stderr. */
static void AB_PRINTF(1, 0) verror(const char *fmt, va_list ap)
{
        fputs(PROG ": ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
}

static void AB_PRINTF(1, 2) error(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        verror(fmt, ap);
        va_end(ap);
}

/* Report an argument error on stderr, followed by the usage lines of help (everything up to
 * its first empty line). Returns EXIT_USAGE. */
static int AB_PRINTF(2, 3) usage_error(const char *help, const char *fmt, ...)
{
        const char *end = strstr(help, "\n\n");
        va_list ap;

        va_start(ap, fmt);
        verror(fmt, ap);
        va_end(ap);
        fwrite(help, 1, end ? (size_t)(end - help) + 1 : strlen(help), stderr);
        fputs("Try '" PROG " --help' for more information.\n", stderr);
        return EXIT_USAGE;
}

/* Format an epoch time as local "YYYY-MM-DD HH:MM:SS" into buf (at least 32 bytes). */
static const char *
format_time(uint64_t t, char *buf, size_t size)
{
        time_t tt = (time_t)t;
        struct tm tm;

        if (t > (uint64_t)INT64_MAX || !localtime_r(&tt, &tm) ||
            strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "@%" PRIu64, t);
        return buf;
}

/* Format a number of seconds as "1d 2h 3m 4s" (leading zero units left out). */
static const char *
format_duration(uint64_t s, char *buf, size_t size)
{
        uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;

        if (d)
                snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", d, h, m, sec);
        else if (h)
                snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", h, m, sec);
        else if (m)
                snprintf(buf, size, "%" PRIu64 "m %" PRIu64 "s", m, sec);
        else
                snprintf(buf, size, "%" PRIu64 "s", sec);
        return buf;
}

/* A text table: a header row and cells added left to right, top to bottom. Every column but
 * the last is padded to its widest cell. */
struct table {
        size_t n_cols;
        const char *const *header;
        char **cells;
        size_t n_cells, cap;
};

static void
table_done(struct table *t)
{
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        t->cells = NULL;
        t->n_cells = t->cap = 0;
}

/* Append one cell, formatted with printf rules. Returns 0 or -ENOMEM. */
static int AB_PRINTF(2, 3) table_add(struct table *t, const char *fmt, ...)
{
        va_list ap;
        char *s;
        int r;

        if (t->n_cells == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 64;
                char **n = realloc(t->cells, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                t->cells = n;
                t->cap = cap;
        }
        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        t->cells[t->n_cells++] = s;
        return 0;
}

/* Print one row: each cell padded to its column's width plus two spaces, except the last
 * non-empty one, so that no line ends in blanks. */
static void
table_print_row(const char *const *cells, size_t n_cols, const size_t *width)
{
        size_t last = 0;

        for (size_t c = 0; c < n_cols; c++)
                if (*cells[c])
                        last = c;
        for (size_t c = 0; c <= last; c++) {
                fput_safe(cells[c], stdout, false);
                if (c < last)
                        printf("%*s", (int)(width[c] - strlen(cells[c]) + 2), "");
        }
        putchar('\n');
}

/* Print the table to stdout. Returns 0 or -ENOMEM. */
static int
table_print(const struct table *t)
{
        _cleanup_free_ size_t *width = calloc(t->n_cols, sizeof(size_t));

        if (!width)
                return -ENOMEM;
        for (size_t c = 0; c < t->n_cols; c++)
                width[c] = strlen(t->header[c]);
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t len = strlen(t->cells[i]);
                if (len > width[i % t->n_cols])
                        width[i % t->n_cols] = len;
        }
        table_print_row(t->header, t->n_cols, width);
        for (size_t i = 0; i + t->n_cols <= t->n_cells; i += t->n_cols)
                table_print_row((const char *const *)t->cells + i, t->n_cols, width);
        return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading replies: every member is type-checked before it is used.                             */

static int
malformed(const char *key, const char *what)
{
        error("malformed reply from the broker: member \"%s\" is missing or not %s", key, what);
        return -EBADMSG;
}

/* A string member of at most max_len bytes. Returns 0 or -EBADMSG (reported). */
static int
reply_string(const cJSON *obj, const char *key, size_t max_len, const char **ret)
{
        if (ab_wire_get_string(obj, key, max_len, ret) < 0)
                return malformed(key, "a string");
        return 0;
}

/* An optional string member: missing or null gives "". Returns 0 or -EBADMSG (reported). */
static int
reply_string_opt(const cJSON *obj, const char *key, size_t max_len, const char **ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!item || cJSON_IsNull(item)) {
                *ret = "";
                return 0;
        }
        return reply_string(obj, key, max_len, ret);
}

/* A non-negative integer member of at most max. Returns 0 or -EBADMSG (reported). */
static int
reply_u64(const cJSON *obj, const char *key, uint64_t max, uint64_t *ret)
{
        if (ab_wire_get_u64(obj, key, max, ret) < 0)
                return malformed(key, "a non-negative integer");
        return 0;
}

static int
reply_bool(const cJSON *obj, const char *key, bool *ret)
{
        if (ab_wire_get_bool(obj, key, ret) < 0)
                return malformed(key, "a boolean");
        return 0;
}

/* An array member whose elements are all objects (objects=true) or all strings. */
static int
reply_array(const cJSON *obj, const char *key, bool objects, const cJSON **ret)
{
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key), *e;

        if (!cJSON_IsArray(a))
                return malformed(key, "an array");
        cJSON_ArrayForEach(e, a)
        {
                if (objects ? !cJSON_IsObject(e) : (!cJSON_IsString(e) || !e->valuestring))
                        return malformed(key, objects ? "an array of objects" : "an array of strings");
        }
        *ret = a;
        return 0;
}

/* Print the reply without its envelope (v, id, ok) as indented JSON. Returns an exit status. */
static int
print_reply_json(cJSON *reply)
{
        _cleanup_free_ char *text = NULL;

        cJSON_DeleteItemFromObjectCaseSensitive(reply, "v");
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "id");
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
        text = cJSON_Print(reply);
        if (!text) {
                error("out of memory");
                return EXIT_FAIL;
        }
        puts(text);
        return EXIT_SUCCESS;
}

static const char *
socket_path(void)
{
        const char *e;

        if (arg_socket)
                return arg_socket;
        e = getenv("AGENTBROKER_SOCKET");
        return e && *e ? e : AB_DEFAULT_SOCKET;
}

/* Print a broker error reply: "agentbrokerctl: OP failed: ERROR (REASON): MESSAGE"; a message
 * of several lines (policy errors) follows on its own lines. */
static void
print_broker_error(const char *op, const cJSON *reply)
{
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error"));
        const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "reason"));
        const char *message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "message"));

        fprintf(stderr, PROG ": %s failed: ", op);
        fput_safe(code && *code ? code : "unknown-error", stderr, false);
        if (reason && *reason) {
                fputs(" (", stderr);
                fput_safe(reason, stderr, false);
                fputc(')', stderr);
        }
        if (message && *message) {
                bool multi = strchr(message, '\n') != NULL;
                fputs(multi ? "\n" : ": ", stderr);
                fput_safe(message, stderr, true);
                if (message[strlen(message) - 1] != '\n')
                        fputc('\n', stderr);
        } else
                fputc('\n', stderr);
}

/* Send op (with the string member key=value when key is not NULL) to the broker and wait for
 * the reply. On success *ret is the reply, with "ok" true. Returns an exit status: 0, or
 * EXIT_FAIL after printing why (no connection, no reply, malformed reply, broker error). */
static int broker_call2(const char *op, const char *key, const char *value, const char *key2,
                        const char *value2, cJSON **ret);

/* broker_call2 with one field (or none: key NULL). */
static int
broker_call(const char *op, const char *key, const char *value, cJSON **ret)
{
        return broker_call2(op, key, value, NULL, NULL, ret);
}

/* Send op with up to two string fields (a NULL key is left out); on success *ret is the
 * reply. Errors are printed. Returns EXIT_SUCCESS or EXIT_FAIL. */
static int
broker_call2(const char *op, const char *key, const char *value, const char *key2, const char *value2,
             cJSON **ret)
{
        _cleanup_(ab_client_freep) struct ab_client *c = NULL;
        cJSON *req = NULL, *reply = NULL;
        const char *path = socket_path();
        bool ok;
        int r;

        r = ab_client_connect(path, &c);
        if (r < 0) {
                char why[1024];
                ab_describe_connect_error(path, r, why, sizeof why);
                error("%s", why);
                return EXIT_FAIL;
        }
        req = ab_client_request(c, op);
        if (!req || (key && !cJSON_AddStringToObject(req, key, value)) ||
            (key2 && !cJSON_AddStringToObject(req, key2, value2))) {
                cJSON_Delete(req);
                error("out of memory");
                return EXIT_FAIL;
        }
        r = ab_client_call(c, req, arg_timeout_ms, &reply);
        cJSON_Delete(req);
        switch (r) {
        case 0: break;
        case -ETIMEDOUT:
                error("%s: no reply from the broker at %s within %d ms", op, path, arg_timeout_ms);
                return EXIT_FAIL;
        case -ECONNRESET: error("%s: the broker at %s closed the connection", op, path); return EXIT_FAIL;
        case -EBADMSG: error("%s: malformed reply from the broker at %s", op, path); return EXIT_FAIL;
        default: error("%s: cannot talk to the broker at %s: %s", op, path, strerror(-r)); return EXIT_FAIL;
        }
        if (!cJSON_IsObject(reply) || reply_bool(reply, "ok", &ok) < 0) {
                cJSON_Delete(reply);
                return EXIT_FAIL;
        }
        if (!ok) {
                print_broker_error(op, reply);
                cJSON_Delete(reply);
                return EXIT_FAIL;
        }
        *ret = reply;
        return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Option parsing                                                                               */

enum {
        OPT_HELP = 1u << 0,
        OPT_JSON = 1u << 1,
        OPT_LABEL = 1u << 2,
        OPT_RUN = 1u << 3,
        OPT_TOOL = 1u << 4,
        OPT_SINCE = 1u << 5,
        OPT_DENIED = 1u << 6,
        OPT_FORMAT = 1u << 7,
        OPT_FILE = 1u << 8,
        OPT_SOCKET = 1u << 9,
        OPT_TIMEOUT = 1u << 10,
        OPT_VERSION = 1u << 11,
        OPT_TTL = 1u << 12,
        OPT_FOLLOW = 1u << 13,
        OPT_CALLS = 1u << 14,
        OPT_DIRECTORY = 1u << 15,
        OPT_CREDSTORE = 1u << 16,
        OPT_DROPIN_DIR = 1u << 17,
        OPT_PROFILE = 1u << 18,
};
/* Every command accepts these as well (so --socket may also follow the command). */
#define OPTS_COMMON (OPT_HELP | OPT_SOCKET | OPT_TIMEOUT)

struct args {
        bool json;
        bool version;
        const char *label;
        const char *run;
        const char *tool;
        const char *since;
        bool denied;
        const char *format;
        const char *file;
        const char *ttl;
        bool follow;
        bool calls;
        const char *directory;
        const char *credstore;
        const char *dropin_dir;
        const char *profile;
        int n_pos; /* positional arguments after the options */
        char **pos;
};

/* The long options of all commands. The global ones carry their short letter as val; for
 * the others getopt_long returns ARG_BASE + their index here, and the argument (or true,
 * for a flag) is stored in the member of struct args at offset. */
#define ARG_BASE 0x100
enum arg_kind {
        ARG_GLOBAL,
        ARG_STRING,
        ARG_FLAG
};
static const struct {
        unsigned flag;
        struct option opt;
        enum arg_kind kind;
        size_t offset;
} all_options[] = {
        { OPT_HELP, { "help", no_argument, NULL, 'h' }, ARG_GLOBAL, 0 },
        { OPT_VERSION, { "version", no_argument, NULL, 'V' }, ARG_GLOBAL, 0 },
        { OPT_SOCKET, { "socket", required_argument, NULL, 's' }, ARG_GLOBAL, 0 },
        { OPT_TIMEOUT, { "timeout", required_argument, NULL, 't' }, ARG_GLOBAL, 0 },
        { OPT_JSON, { "json", no_argument, NULL, 0 }, ARG_FLAG, offsetof(struct args, json) },
        { OPT_LABEL, { "label", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, label) },
        { OPT_RUN, { "run", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, run) },
        { OPT_TOOL, { "tool", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, tool) },
        { OPT_SINCE, { "since", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, since) },
        { OPT_DENIED, { "denied", no_argument, NULL, 0 }, ARG_FLAG, offsetof(struct args, denied) },
        { OPT_FORMAT, { "format", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, format) },
        { OPT_FILE, { "file", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, file) },
        { OPT_TTL, { "ttl", required_argument, NULL, 0 }, ARG_STRING, offsetof(struct args, ttl) },
        { OPT_FOLLOW, { "follow", no_argument, NULL, 0 }, ARG_FLAG, offsetof(struct args, follow) },
        { OPT_CALLS, { "calls", no_argument, NULL, 0 }, ARG_FLAG, offsetof(struct args, calls) },
        { OPT_DIRECTORY,
          { "directory", required_argument, NULL, 0 },
          ARG_STRING,
          offsetof(struct args, directory) },
        { OPT_CREDSTORE,
          { "credstore", required_argument, NULL, 0 },
          ARG_STRING,
          offsetof(struct args, credstore) },
        { OPT_DROPIN_DIR,
          { "dropin-dir", required_argument, NULL, 0 },
          ARG_STRING,
          offsetof(struct args, dropin_dir) },
        { OPT_PROFILE,
          { "profile", required_argument, NULL, 0 },
          ARG_STRING,
          offsetof(struct args, profile) },
};

/* Parse argv (argv[0] is the command's name) with the options in allowed. stop_at_command:
 * stop at the first non-option (the global options before the command). Prints help and
 * returns EXIT_SUCCESS for --help, returns EXIT_USAGE after a usage message for errors, and
 * CONTINUE when the command should run with *a. */
static int
parse_args(int argc, char **argv, unsigned allowed, bool stop_at_command, const char *help, struct args *a)
{
        struct option longopts[AB_ELEMENTSOF(all_options) + 1];
        char shortopts[16];
        size_t n = 0;
        int c;

        *a = (struct args){ 0 };
        snprintf(shortopts, sizeof(shortopts), "%s:%s%s%s%s", stop_at_command ? "+" : "",
                 allowed & OPT_HELP ? "h" : "", allowed & OPT_VERSION ? "V" : "",
                 allowed & OPT_SOCKET ? "s:" : "", allowed & OPT_TIMEOUT ? "t:" : "");
        for (size_t i = 0; i < AB_ELEMENTSOF(all_options); i++)
                if (allowed & all_options[i].flag) {
                        longopts[n] = all_options[i].opt;
                        if (all_options[i].kind != ARG_GLOBAL)
                                longopts[n].val = ARG_BASE + (int)i;
                        n++;
                }
        longopts[n] = (struct option){ 0 };

        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
                switch (c) {
                case 'h': fputs(help, stdout); return EXIT_SUCCESS;
                case 'V': a->version = true; break;
                case 's':
                        if (!*optarg)
                                return usage_error(help_main, "--socket needs a path");
                        arg_socket = optarg;
                        break;
                case 't': {
                        char *end;
                        long v;
                        errno = 0;
                        v = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 1 || v > MAX_TIMEOUT_MS)
                                return usage_error(help_main,
                                                   "invalid --timeout '%s': expected 1..%d milliseconds",
                                                   optarg, MAX_TIMEOUT_MS);
                        arg_timeout_ms = (int)v;
                        break;
                }
                case ':': return usage_error(help, "option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (c >= ARG_BASE && c < ARG_BASE + (int)AB_ELEMENTSOF(all_options)) {
                                size_t i = (size_t)(c - ARG_BASE);
                                char *field = (char *)a + all_options[i].offset;
                                if (all_options[i].kind == ARG_FLAG)
                                        *(bool *)field = true;
                                else
                                        *(const char **)field = optarg;
                                break;
                        }
                        if (optopt && optopt < ARG_BASE)
                                return usage_error(help, "unknown option '-%c'", optopt);
                        return usage_error(help, "unknown option '%s'", argv[optind - 1]);
                }
        }
        a->n_pos = argc - optind;
        a->pos = argv + optind;
        return CONTINUE;
}

/* Check that a command got between min and max positional arguments. Returns CONTINUE or
 * EXIT_USAGE (reported). */
static int
check_positional(const struct args *a, int min, int max, const char *help, const char *cmd)
{
        if (a->n_pos < min) {
                return usage_error(help, "'%s': missing argument", cmd);
        }
        if (a->n_pos > max) {
                return usage_error(help, "'%s': unexpected argument '%s'", cmd, a->pos[max]);
        }
        return CONTINUE;
}

#define PARSE(argc, argv, allowed, help, cmd, min, max, a)                                \
        do {                                                                              \
                int _r = parse_args(argc, argv, (allowed) | OPTS_COMMON, false, help, a); \
                if (_r == CONTINUE)                                                       \
                        _r = check_positional(a, min, max, help, cmd);                    \
                if (_r != CONTINUE)                                                       \
                        return _r;                                                        \
        } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Commands. Each returns the exit status.                                                      */

/* status for a caller that is not an admin: the broker gives only its version and uptime. */
static int
status_not_admin(cJSON *reply, bool json)
{
        const char *version;
        uint64_t uptime;
        char dbuf[64];

        if (reply_string(reply, "version", AB_FIELD_MAX, &version) < 0 ||
            reply_u64(reply, "uptime_s", AB_JSON_INT_MAX, &uptime) < 0)
                return EXIT_FAIL;
        if (json)
                return print_reply_json(reply);
        fputs("version:        ", stdout);
        fput_safe(version, stdout, false);
        printf("\nuptime:         %s\n", format_duration(uptime, dbuf, sizeof(dbuf)));
        puts("(the rest is for root, the broker's uid and the admin group)");
        return EXIT_SUCCESS;
}

/* The connection counters of an admin's status, if the broker sent them. */
static void
status_print_conns(const cJSON *reply)
{
        static const char *const keys[] = {
                "open",          "max",         "max_per_uid",  "refused_full", "refused_per_uid",
                "accept_errors", "peer_errors", "worker_exits", "pidfd_errors"
        };
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(reply, "connections");

        if (!cJSON_IsObject(o))
                return;
        fputs("connections:   ", stdout);
        for (size_t i = 0; i < AB_ELEMENTSOF(keys); i++) {
                uint64_t v;
                if (ab_wire_get_u64(o, keys[i], AB_JSON_INT_MAX, &v) == 0)
                        printf(" %s=%" PRIu64, keys[i], v);
        }
        putchar('\n');
}

/* Print ": VALUE" for an optional string member of obj (a reason the broker gives), at
 * most AB_FIELD_MAX bytes; nothing when it is missing. */
static void
print_opt_detail(const cJSON *obj, const char *key)
{
        const char *v;

        if (ab_wire_get_string(obj, key, AB_FIELD_MAX, &v) == 0 && *v) {
                fputs(": ", stdout);
                fput_safe(v, stdout, false);
        }
}

/* The status reply's optional "modules" (what the MCP hosts report): a line per module,
 * "\nmodules:        NAME (served)" or "NAME (refused: REASON)". Nothing when it is absent. */
static void
print_modules(const cJSON *reply)
{
        const cJSON *mods = cJSON_GetObjectItemCaseSensitive(reply, "modules"), *e;
        bool first = true;

        if (!cJSON_IsArray(mods) || cJSON_GetArraySize(mods) == 0)
                return;
        cJSON_ArrayForEach(e, mods)
        {
                const char *name;
                bool served;

                if (ab_wire_get_string(e, "name", AB_NAME_MAX, &name) < 0 ||
                    ab_wire_get_bool(e, "served", &served) < 0)
                        continue;
                fputs(first ? "\nmodules:        " : "\n                ", stdout);
                fput_safe(name, stdout, false);
                fputs(served ? " (served" : " (refused", stdout);
                print_opt_detail(e, "reason");
                fputc(')', stdout);
                first = false;
        }
}

/* status: the broker's state, as "key: value" lines or JSON. */
static int
cmd_status(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        const cJSON *files, *secrets, *e;
        const char *version, *audit;
        uint64_t pid, uptime, loaded_at, runs_open, tokens_active;
        char tbuf[64], dbuf[64];
        struct args a;
        int r;

        PARSE(argc, argv, OPT_JSON, help_status, "status", 0, 0, &a);
        r = broker_call("status", NULL, NULL, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(reply, "admin")))
                return status_not_admin(reply, a.json);
        if (reply_string(reply, "version", AB_FIELD_MAX, &version) < 0 ||
            reply_u64(reply, "pid", INT32_MAX, &pid) < 0 ||
            reply_u64(reply, "uptime_s", AB_JSON_INT_MAX, &uptime) < 0 ||
            reply_array(reply, "policy_files", false, &files) < 0 ||
            reply_u64(reply, "policy_loaded_at", AB_JSON_INT_MAX, &loaded_at) < 0 ||
            reply_u64(reply, "runs_open", AB_JSON_INT_MAX, &runs_open) < 0 ||
            reply_u64(reply, "tokens_active", AB_JSON_INT_MAX, &tokens_active) < 0 ||
            reply_string(reply, "audit", AB_FIELD_MAX, &audit) < 0 ||
            reply_array(reply, "secrets", true, &secrets) < 0)
                return EXIT_FAIL;
        cJSON_ArrayForEach(e, secrets)
        {
                const char *s;
                bool b;
                if (reply_string(e, "name", AB_NAME_MAX, &s) < 0 ||
                    reply_string(e, "type", AB_NAME_MAX, &s) < 0 || reply_bool(e, "available", &b) < 0)
                        return EXIT_FAIL;
        }
        if (a.json)
                return print_reply_json(reply);

        fputs("version:        ", stdout);
        fput_safe(version, stdout, false);
        printf("\npid:            %" PRIu64 "\n", pid);
        printf("uptime:         %s\n", format_duration(uptime, dbuf, sizeof(dbuf)));
        fputs("policy files:   ", stdout);
        if (cJSON_GetArraySize(files) == 0)
                fputs("(none)\n", stdout);
        else {
                bool first = true;
                cJSON_ArrayForEach(e, files)
                {
                        fputs(first ? "" : "                ", stdout);
                        fput_safe(e->valuestring, stdout, false);
                        putchar('\n');
                        first = false;
                }
        }
        printf("policy loaded:  %s\n", format_time(loaded_at, tbuf, sizeof(tbuf)));
        printf("runs open:      %" PRIu64 "\n", runs_open);
        printf("tokens active:  %" PRIu64 "\n", tokens_active);
        fputs("audit:          ", stdout);
        fput_safe(audit, stdout, false);
        print_opt_detail(reply, "audit_error");
        print_modules(reply);
        fputs("\nsecrets:        ", stdout);
        if (cJSON_GetArraySize(secrets) == 0)
                fputs("(none)\n", stdout);
        else {
                bool first = true;
                cJSON_ArrayForEach(e, secrets)
                {
                        const char *name, *type;
                        bool avail;
                        /* checked above */
                        (void)ab_wire_get_string(e, "name", AB_NAME_MAX, &name);
                        (void)ab_wire_get_string(e, "type", AB_NAME_MAX, &type);
                        (void)ab_wire_get_bool(e, "available", &avail);
                        fputs(first ? "" : "                ", stdout);
                        fput_safe(name, stdout, false);
                        fputs(" (", stdout);
                        fput_safe(type, stdout, false);
                        printf(", %s)", avail ? "available" : "unavailable");
                        print_opt_detail(e, "reason");
                        putchar('\n');
                        first = false;
                }
        }
        status_print_conns(reply);
        return EXIT_SUCCESS;
}

/* policy check [FILE]: load the policy locally and report. */
static int
cmd_policy_check(int argc, char **argv)
{
        _cleanup_(ab_policy_freep) struct ab_policy *p = NULL;
        _cleanup_free_ char *err = NULL;
        const char *file;
        struct args a;
        int r;

        PARSE(argc, argv, 0, help_policy, "policy check", 0, 1, &a);
        file = a.n_pos > 0 ? a.pos[0] : AB_POLICY_DEFAULT_PATH;

        r = ab_policy_load(file, &p, &err);
        if (r < 0) {
                if (err && *err) {
                        fput_safe(err, stderr, true);
                        if (err[strlen(err) - 1] != '\n')
                                fputc('\n', stderr);
                } else
                        error("%s: %s", file, strerror(-r));
                return EXIT_FAIL;
        }
        fput_safe(file, stdout, false);
        printf(": OK (%zu secrets, %zu tool rules, %zu modules)\n", p->n_secrets, p->n_tools, p->n_modules);
        return EXIT_SUCCESS;
}

/* policy reload: the admin operation policy-reload; prints the files loaded. */
static int
cmd_policy_reload(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        const cJSON *files, *e;
        struct args a;
        int r;

        PARSE(argc, argv, 0, help_policy, "policy reload", 0, 0, &a);
        r = broker_call("policy-reload", NULL, NULL, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (reply_array(reply, "files", false, &files) < 0)
                return EXIT_FAIL;
        cJSON_ArrayForEach(e, files)
        {
                fput_safe(e->valuestring, stdout, false);
                putchar('\n');
        }
        return EXIT_SUCCESS;
}

/* Whether s can be printed as a bare word: non-empty, printable ASCII, no spaces. */
static bool
is_word(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s <= 0x20 || *s >= 0x7f)
                        return false;
        return true;
}

/* run open [--label TEXT] [--profile NAME]: prints the run id alone. */
static int
cmd_run_open(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        const char *run;
        struct args a;
        int r;

        PARSE(argc, argv, OPT_LABEL | OPT_PROFILE, help_run, "run open", 0, 0, &a);
        if (a.label && strlen(a.label) > AB_FIELD_MAX)
                return usage_error(help_run, "--label is longer than %d bytes", AB_FIELD_MAX);
        if (a.profile && (strlen(a.profile) > AB_FIELD_MAX || !is_word(a.profile)))
                return usage_error(help_run, "--profile takes a profile name of the policy");
        r = broker_call2("run-open", a.label ? "label" : NULL, a.label, a.profile ? "profile" : NULL,
                         a.profile, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (reply_string(reply, "run", AB_NAME_MAX, &run) < 0)
                return EXIT_FAIL;
        if (!is_word(run)) {
                error("malformed reply from the broker: \"run\" is not a run id");
                return EXIT_FAIL;
        }
        puts(run);
        return EXIT_SUCCESS;
}

/* run close RUN: prints the run's summary. */
static int
cmd_run_close(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        uint64_t calls, denied, bytes, ms;
        struct args a;
        int r;

        PARSE(argc, argv, OPT_JSON, help_run, "run close", 1, 1, &a);
        if (strlen(a.pos[0]) > AB_NAME_MAX)
                return usage_error(help_run, "run id is longer than %d bytes", AB_NAME_MAX);
        r = broker_call("run-close", "run", a.pos[0], &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (reply_u64(reply, "calls", AB_JSON_INT_MAX, &calls) < 0 ||
            reply_u64(reply, "denied", AB_JSON_INT_MAX, &denied) < 0 ||
            reply_u64(reply, "result_bytes", AB_JSON_INT_MAX, &bytes) < 0 ||
            reply_u64(reply, "duration_ms", AB_JSON_INT_MAX, &ms) < 0)
                return EXIT_FAIL;
        if (a.json)
                return print_reply_json(reply);
        fputs("run:           ", stdout);
        fput_safe(a.pos[0], stdout, false);
        printf("\ncalls:         %" PRIu64 "\n", calls);
        printf("denied:        %" PRIu64 "\n", denied);
        printf("result bytes:  %" PRIu64 "\n", bytes);
        printf("duration:      %" PRIu64 " ms\n", ms);
        return EXIT_SUCCESS;
}

/* Add one row of a list reply to t. Returns 0, -EBADMSG (malformed, reported) or -ENOMEM. */
typedef int (*row_fn)(const cJSON *e, struct table *t);

/* A listing command: call op, check that member is an array of objects, turn each into a
 * table row with add_row (which type-checks it), then print the table or, with --json,
 * the reply. Returns the exit status. */
static int
list_command(int argc, char **argv, const char *help, const char *cmd, const char *op, const char *member,
             const char *const *header, size_t n_cols, row_fn add_row)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        _cleanup_(table_done) struct table t = { .n_cols = n_cols, .header = header };
        const cJSON *items, *e;
        uint64_t total;
        struct args a;
        int r;

        PARSE(argc, argv, OPT_JSON, help, cmd, 0, 0, &a);
        r = broker_call(op, NULL, NULL, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (reply_array(reply, member, true, &items) < 0)
                return EXIT_FAIL;
        cJSON_ArrayForEach(e, items)
        {
                r = add_row(e, &t);
                if (r == -EBADMSG)
                        return EXIT_FAIL;
                if (r < 0)
                        goto oom;
        }
        if (a.json)
                return print_reply_json(reply);
        if (table_print(&t) < 0)
                goto oom;
        /* The broker lists at most what fits in one message; "total" says how many exist. */
        if (ab_wire_get_u64(reply, "total", AB_JSON_INT_MAX, &total) == 0 &&
            total > (uint64_t)cJSON_GetArraySize(items))
                error("%d of %" PRIu64 " shown", cJSON_GetArraySize(items), total);
        return EXIT_SUCCESS;
oom:
        error("out of memory");
        return EXIT_FAIL;
}

static int
run_row(const cJSON *e, struct table *t)
{
        const char *run, *label;
        uint64_t uid, opened, calls, denied;
        char tbuf[64];
        bool open;

        if (reply_string(e, "run", AB_NAME_MAX, &run) < 0 ||
            reply_string_opt(e, "label", AB_FIELD_MAX, &label) < 0 ||
            reply_u64(e, "owner_uid", UINT32_MAX, &uid) < 0 ||
            reply_u64(e, "opened_at", AB_JSON_INT_MAX, &opened) < 0 ||
            reply_u64(e, "calls", AB_JSON_INT_MAX, &calls) < 0 ||
            reply_u64(e, "denied", AB_JSON_INT_MAX, &denied) < 0 || reply_bool(e, "open", &open) < 0)
                return -EBADMSG;
        if (table_add(t, "%s", run) < 0 || table_add(t, "%s", open ? "open" : "closed") < 0 ||
            table_add(t, "%" PRIu64, uid) < 0 ||
            table_add(t, "%s", format_time(opened, tbuf, sizeof(tbuf))) < 0 ||
            table_add(t, "%" PRIu64, calls) < 0 || table_add(t, "%" PRIu64, denied) < 0 ||
            table_add(t, "%s", label) < 0)
                return -ENOMEM;
        return 0;
}

/* run list: a table of runs, or JSON. */
static int
cmd_run_list(int argc, char **argv)
{
        static const char *const header[] = {
                "RUN", "STATE", "OWNER", "OPENED", "CALLS", "DENIED", "LABEL"
        };

        return list_command(argc, argv, help_run, "run list", "run-list", "runs", header,
                            AB_ELEMENTSOF(header), run_row);
}

static int
token_row(const cJSON *e, struct table *t)
{
        const char *id, *run, *tool;
        uint64_t call, ms, uses;

        if (reply_string(e, "token_id", AB_NAME_MAX, &id) < 0 ||
            reply_string(e, "run", AB_NAME_MAX, &run) < 0 ||
            reply_string(e, "tool", AB_NAME_MAX, &tool) < 0 ||
            reply_u64(e, "call", AB_JSON_INT_MAX, &call) < 0 ||
            reply_u64(e, "expires_in_ms", AB_JSON_INT_MAX, &ms) < 0 ||
            reply_u64(e, "uses", AB_JSON_INT_MAX, &uses) < 0)
                return -EBADMSG;
        if (table_add(t, "%s", id) < 0 || table_add(t, "%s", run) < 0 || table_add(t, "%s", tool) < 0 ||
            table_add(t, "%" PRIu64, call) < 0 ||
            table_add(t, "%" PRIu64 ".%01" PRIu64 "s", ms / 1000, ms % 1000 / 100) < 0 ||
            table_add(t, "%" PRIu64, uses) < 0)
                return -ENOMEM;
        return 0;
}

/* tokens: the admin operation token-list, as a table or JSON. */
static int
cmd_tokens(int argc, char **argv)
{
        static const char *const header[] = { "TOKEN", "RUN", "TOOL", "CALL", "EXPIRES", "USES" };

        return list_command(argc, argv, help_tokens, "tokens", "token-list", "tokens", header,
                            AB_ELEMENTSOF(header), token_row);
}

/* http-token [--ttl DURATION]: issue an HTTP bearer token and print it. */
static int
cmd_http_token(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        unsigned long long n = 900, mult = 1;
        char ttl[24], *end;
        const char *token;
        struct args a;
        int r;

        PARSE(argc, argv, OPT_TTL, help_http_token, "http-token", 0, 0, &a);
        if (a.ttl) {
                errno = 0;
                n = strtoull(a.ttl, &end, 10);
                if (end == a.ttl || errno || a.ttl[0] == '-')
                        return usage_error(help_http_token, "invalid --ttl '%s'", a.ttl);
                if (*end == 's')
                        end++;
                else if (*end == 'm')
                        mult = 60, end++;
                else if (*end == 'h')
                        mult = 3600, end++;
                else if (*end == 'd')
                        mult = 86400, end++;
                if (*end || n == 0 || n > 7 * 86400ull / mult)
                        return usage_error(help_http_token,
                                           "invalid --ttl '%s': N, Ns, Nm, Nh or Nd, up to 7d", a.ttl);
                n *= mult;
        }
        snprintf(ttl, sizeof ttl, "%llu", n);
        r = broker_call("http-token-issue", "ttl_s", ttl, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        if (reply_string(reply, "token", 256, &token) < 0)
                return EXIT_FAIL;
        puts(token);
        fflush(stdout);
        return EXIT_SUCCESS;
}

/* The current boot time in epoch seconds (now minus the time since boot). */
static time_t
boot_time(time_t now)
{
        struct timespec up;

        if (clock_gettime(CLOCK_BOOTTIME, &up) < 0)
                return 0;
        return now > up.tv_sec ? now - up.tv_sec : 0;
}

/* Parse a --since TIME argument into *ret. Returns CONTINUE, or EXIT_USAGE (reported with
 * help's usage lines). */
static int
parse_since(const char *arg, const char *help, time_t *ret)
{
        time_t now = time(NULL);
        int r = ab_ctl_parse_time(arg, now, boot_time(now), ret);

        if (r < 0)
                return usage_error(help, "invalid --since '%s': %s", arg,
                                   r == -ERANGE ? "out of range" : "not a time");
        return CONTINUE;
}

/* audit: summarise the audit log with ab_audit_report (no broker needed). */
static int
cmd_audit(int argc, char **argv)
{
        struct ab_report_filter f = { 0 };
        enum ab_report_format fmt = AB_REPORT_TEXT;
        struct args a;
        int r;

        PARSE(argc, argv,
              OPT_JSON | OPT_RUN | OPT_TOOL | OPT_SINCE | OPT_DENIED | OPT_FORMAT | OPT_FILE | OPT_CALLS,
              help_audit, "audit", 0, 0, &a);
        if (a.format && strcmp(a.format, "json") == 0)
                fmt = AB_REPORT_JSON;
        else if (a.format && strcmp(a.format, "text") != 0)
                return usage_error(help_audit, "invalid --format '%s': expected text or json", a.format);
        if (a.json) {
                if (a.format && fmt != AB_REPORT_JSON)
                        return usage_error(help_audit, "--json contradicts --format %s", a.format);
                fmt = AB_REPORT_JSON;
        }
        if (a.since && (r = parse_since(a.since, help_audit, &f.since)) != CONTINUE)
                return r;
        if (a.run && (!*a.run || strlen(a.run) > AB_NAME_MAX))
                return usage_error(help_audit, "invalid --run '%s'", a.run);
        if (a.tool && (!*a.tool || strlen(a.tool) > AB_NAME_MAX))
                return usage_error(help_audit, "invalid --tool '%s'", a.tool);
        f.run = a.run;
        f.tool = a.tool;
        f.denied_only = a.denied;
        f.calls = a.calls;

        r = ab_audit_report(stdout, a.file, &f, fmt);
        if (r < 0) {
                if (a.file)
                        error("cannot read the audit log %s: %s", a.file, strerror(-r));
                else
                        error("cannot read the audit log: %s", strerror(-r));
                return EXIT_FAIL;
        }
        return EXIT_SUCCESS;
}

/* trace: one line per tool call from the journal (ctl/trace.c). */
static int
cmd_trace(int argc, char **argv)
{
        struct ab_trace_options o = { 0 };
        struct args a;
        int r;

        PARSE(argc, argv, OPT_RUN | OPT_SINCE | OPT_FOLLOW | OPT_DIRECTORY, help_trace, "trace", 0, 0, &a);
        if (a.run && (!*a.run || strlen(a.run) > AB_NAME_MAX))
                return usage_error(help_trace, "invalid --run '%s'", a.run);
        if (a.since && (r = parse_since(a.since, help_trace, &o.since)) != CONTINUE)
                return r;
        o.run = a.run;
        o.follow = a.follow;
        o.directory = a.directory;
        r = ab_trace(stdout, &o);
        if (r == -EIO) {
                error("cannot write to standard output");
                return EXIT_FAIL;
        }
        if (r < 0) {
                error("cannot read the journal%s%s: %s", a.directory ? " in " : "",
                      a.directory ? a.directory : "", strerror(-r));
                return EXIT_FAIL;
        }
        return EXIT_SUCCESS;
}

/* secret install NAME FILE: a module's secret into the credential store (ctl/secret.c). */
static int
cmd_secret_install(int argc, char **argv)
{
        struct ab_secret_install si = { .credstore = "/etc/credstore" };
        char err[1024];
        struct args a;
        int r;

        PARSE(argc, argv, OPT_CREDSTORE | OPT_DROPIN_DIR, help_secret, "secret install", 2, 2, &a);
        si.name = a.pos[0];
        si.file = a.pos[1];
        if (a.credstore)
                si.credstore = a.credstore;
        if (a.dropin_dir)
                si.dropin_dir = a.dropin_dir;
        else if (access("/run/systemd/system", F_OK) == 0)
                si.dropin_dir = "/etc/systemd/system/agentbroker.service.d";
        r = ab_secret_install(&si, stdout, err, sizeof err);
        if (r == -EINVAL && strncmp(err, "invalid secret name", 19) == 0)
                return usage_error(help_secret, "%s", err);
        if (r < 0) {
                error("secret install failed: %s", r == -ENOMEM ? "out of memory" : err);
                return EXIT_FAIL;
        }
        return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch                                                                                      */

struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *help;
};

static int cmd_policy(int argc, char **argv);
static int cmd_run(int argc, char **argv);
static int cmd_secret(int argc, char **argv);
static int cmd_help(int argc, char **argv);

/* identity: the tunnel identity's public key (JWK and PEM) and the sandbox id. */
static int
cmd_identity(int argc, char **argv)
{
        _cleanup_cjson_ cJSON *reply = NULL;
        const char *pem, *sid, *secret;
        const cJSON *jwk;
        _cleanup_free_ char *jwk_text = NULL;
        struct args a;
        int r;

        PARSE(argc, argv, OPT_JSON, help_identity, "identity", 0, 0, &a);
        r = broker_call("identity", NULL, NULL, &reply);
        if (r != EXIT_SUCCESS)
                return r;
        jwk = cJSON_GetObjectItemCaseSensitive(reply, "jwk");
        if (!cJSON_IsObject(jwk) || reply_string(reply, "pem", 4096, &pem) < 0 ||
            reply_string(reply, "sandbox_id", AB_FIELD_MAX, &sid) < 0 ||
            reply_string(reply, "secret", AB_NAME_MAX, &secret) < 0)
                return EXIT_FAIL;
        if (a.json)
                return print_reply_json(reply);
        jwk_text = cJSON_PrintUnformatted(jwk);
        if (!jwk_text)
                return EXIT_FAIL;
        fputs("sandbox id: ", stdout);
        fput_safe(sid, stdout, false);
        fputs("\nkey:        ", stdout);
        fput_safe(secret, stdout, false);
        fputs("\njwk:        ", stdout);
        fput_safe(jwk_text, stdout, false);
        fputs("\n", stdout);
        fputs(pem, stdout);
        return EXIT_SUCCESS;
}

static const struct command commands[] = {
        { "status", cmd_status, help_status }, { "identity", cmd_identity, help_identity },
        { "policy", cmd_policy, help_policy }, { "run", cmd_run, help_run },
        { "tokens", cmd_tokens, help_tokens }, { "http-token", cmd_http_token, help_http_token },
        { "audit", cmd_audit, help_audit },    { "trace", cmd_trace, help_trace },
        { "secret", cmd_secret, help_secret }, { "help", cmd_help, help_help },
};

static const struct command policy_commands[] = {
        { "check", cmd_policy_check, help_policy },
        { "reload", cmd_policy_reload, help_policy },
};

static const struct command secret_commands[] = {
        { "install", cmd_secret_install, help_secret },
};

static const struct command run_commands[] = {
        { "open", cmd_run_open, help_run },
        { "close", cmd_run_close, help_run },
        { "list", cmd_run_list, help_run },
};

static const struct command *
find_command(const struct command *cmds, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(cmds[i].name, name) == 0)
                        return &cmds[i];
        return NULL;
}

static bool
is_help_word(const char *s)
{
        return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

/* A command with subcommands: argv[1] names the subcommand, which gets argv+1. */
static int
dispatch_sub(int argc, char **argv, const struct command *subs, size_t n, const char *help)
{
        const struct command *sub;

        if (argc < 2) {
                return usage_error(help, "'%s' needs a subcommand", argv[0]);
        }
        if (is_help_word(argv[1])) {
                fputs(help, stdout);
                return EXIT_SUCCESS;
        }
        sub = find_command(subs, n, argv[1]);
        if (!sub) {
                return usage_error(help, "unknown subcommand '%s %s'", argv[0], argv[1]);
        }
        return sub->run(argc - 1, argv + 1);
}

static int
cmd_policy(int argc, char **argv)
{
        return dispatch_sub(argc, argv, policy_commands, AB_ELEMENTSOF(policy_commands), help_policy);
}

static int
cmd_run(int argc, char **argv)
{
        return dispatch_sub(argc, argv, run_commands, AB_ELEMENTSOF(run_commands), help_run);
}

static int
cmd_secret(int argc, char **argv)
{
        return dispatch_sub(argc, argv, secret_commands, AB_ELEMENTSOF(secret_commands), help_secret);
}

/* help [COMMAND [SUBCOMMAND]]: the help of the program or of a command. */
static int
cmd_help(int argc, char **argv)
{
        const struct command *cmd;
        struct args a;

        PARSE(argc, argv, 0, help_help, "help", 0, 2, &a);
        if (a.n_pos == 0) {
                fputs(help_main, stdout);
                return EXIT_SUCCESS;
        }
        cmd = find_command(commands, AB_ELEMENTSOF(commands), a.pos[0]);
        if (!cmd)
                return usage_error(help_main, "unknown command '%s'", a.pos[0]);
        fputs(cmd->help, stdout);
        return EXIT_SUCCESS;
}

int
main(int argc, char **argv)
{
        const struct command *cmd;
        struct args a;
        int r;

        r = parse_args(argc, argv, OPTS_COMMON | OPT_VERSION, true, help_main, &a);
        if (r != CONTINUE)
                return r;
        if (a.version) {
                puts(PROG " " PACKAGE_VERSION);
                return EXIT_SUCCESS;
        }
        if (a.n_pos == 0)
                return usage_error(help_main, "no command given");
        cmd = find_command(commands, AB_ELEMENTSOF(commands), a.pos[0]);
        if (!cmd)
                return usage_error(help_main, "unknown command '%s'", a.pos[0]);
        r = cmd->run(a.n_pos, a.pos);

        if (fflush(stdout) != 0 || ferror(stdout)) {
                error("cannot write to standard output: %s", strerror(errno));
                return EXIT_FAIL;
        }
        return r;
}
