/* SPDX-License-Identifier: MIT */
/* Unit tests for audit/audit_log.c and audit/report.c: golden records of ab_audit_format for
 * every event type, the encoding of awkward values (spaces, quotes, newlines, non-ASCII),
 * the cutting of long values, the op names and MESSAGE_IDs, ab_audit_sanitize, and a round
 * trip: records formatted here are written in auditd's log format to a temporary file and
 * read back by ab_audit_report (libauparse), whose JSON must count exactly what was written. */
#include "config.h"

#include "common/macros.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "audit/audit_log.h"
#include "audit/report.h"

#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* An event with every optional member unset. */
static struct ab_event
ev_new(enum ab_event_type type)
{
        return (struct ab_event){
                .type = type,
                .success = true,
                .peer_uid = 1000,
                .peer_pid = 4242,
                .call = -1,
                .args_len = -1,
                .result_bytes = -1,
                .duration_ms = -1,
                .calls = -1,
                .denied = -1,
                .rejected = -1,
                .redactions = -1,
                .login_uid = -1,
                .login_ses = -1,
        };
}

static void
assert_format(const struct ab_event *ev, const char *expected)
{
        char buf[AB_AUDIT_RECORD_MAX];
        int n = ab_audit_format(ev, buf, sizeof(buf));

        assert_int_equal(n, (int)strlen(expected));
        assert_string_equal(buf, expected);
}

static void
test_ops(void **state)
{
        static const char *const names[] = { "run-open",          "run-close",        "tool-call-begin",
                                             "tool-call-end",     "tool-call-deny",   "secret-use",
                                             "token-deny",        "policy-load",      "http-token-issue",
                                             "http-token-deny",   "http-listener",    "tunnel-connect",
                                             "tunnel-disconnect", "tunnel-auth-fail", "tool-call-reject",
                                             "run-client",        "run-teardown",     "egress-connect",
                                             "egress-close",      "egress-http" };
        enum ab_event_type t;

        assert_int_equal(_AB_EV_MAX, AB_ELEMENTSOF(names));
        for (size_t i = 0; i < AB_ELEMENTSOF(names); i++) {
                assert_string_equal(ab_event_op((enum ab_event_type)i), names[i]);
                assert_int_equal(ab_event_from_op(names[i], &t), 0);
                assert_int_equal(t, (enum ab_event_type)i);
        }
        assert_null(ab_event_op(_AB_EV_MAX));
        assert_null(ab_event_op((enum ab_event_type) - 1));
        assert_int_equal(ab_event_from_op("tool-call", &t), -EINVAL);
        assert_int_equal(ab_event_from_op("", &t), -EINVAL);
        assert_int_equal(ab_event_from_op(NULL, &t), -EINVAL);
}

static void
test_message_ids(void **state)
{
        for (size_t i = 0; i < _AB_EV_MAX; i++) {
                const char *id = ab_event_message_id((enum ab_event_type)i);
                assert_non_null(id);
                assert_int_equal(strlen(id), 32);
                assert_int_equal(strspn(id, "0123456789abcdef"), 32);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(id, ab_event_message_id((enum ab_event_type)j));
        }
        assert_string_equal(ab_event_message_id(AB_EV_CALL_BEGIN), "77f78ef24a9d42f48f0040762e1f9d49");
        assert_null(ab_event_message_id(_AB_EV_MAX));
}

static void
test_golden(void **state)
{
        struct ab_event ev;

        ev = ev_new(AB_EV_RUN_OPEN);
        ev.run = "r-1";
        assert_format(&ev, "op=run-open ab_ver=1 suid=1000 spid=4242 run=\"r-1\"");

        ev = ev_new(AB_EV_RUN_CLOSE);
        ev.run = "r-1";
        ev.calls = 10;
        ev.denied = 2;
        ev.result_bytes = 12345;
        ev.duration_ms = 5000;
        assert_format(&ev, "op=run-close ab_ver=1 suid=1000 spid=4242 run=\"r-1\" bytes=12345 "
                           "duration_ms=5000 calls=10 denied=2");

        ev = ev_new(AB_EV_CALL_BEGIN);
        ev.run = "r-1";
        ev.call = 7;
        ev.tool = "files.read";
        ev.args_sha256 = SHA_EMPTY;
        ev.args_len = 0;
        assert_format(&ev, "op=tool-call-begin ab_ver=1 suid=1000 spid=4242 run=\"r-1\" call=7 "
                           "tool=\"files.read\" args_sha256=\"" SHA_EMPTY "\" args_len=0");

        ev = ev_new(AB_EV_CALL_END);
        ev.run = "r-1";
        ev.call = 7;
        ev.tool = "files.read";
        ev.status = "ok";
        ev.result_bytes = 2048;
        ev.duration_ms = 15;
        assert_format(&ev, "op=tool-call-end ab_ver=1 suid=1000 spid=4242 run=\"r-1\" call=7 "
                           "tool=\"files.read\" status=\"ok\" bytes=2048 duration_ms=15");

        ev = ev_new(AB_EV_CALL_DENY);
        ev.success = false;
        ev.run = "r-1";
        ev.tool = "shell.exec";
        ev.reason = "tool-not-allowed";
        ev.args_sha256 = SHA_EMPTY;
        ev.args_len = 2;
        assert_format(&ev, "op=tool-call-deny ab_ver=1 suid=1000 spid=4242 run=\"r-1\" "
                           "tool=\"shell.exec\" reason=\"tool-not-allowed\" args_sha256=\"" SHA_EMPTY
                           "\" args_len=2");

        ev = ev_new(AB_EV_SECRET_USE);
        ev.run = "r-1";
        ev.call = 7;
        ev.tool = "github.issues";
        ev.secret = "github-token";
        ev.operation = "read";
        assert_format(&ev, "op=secret-use ab_ver=1 suid=1000 spid=4242 run=\"r-1\" call=7 "
                           "tool=\"github.issues\" secret=\"github-token\" sop=\"read\"");

        ev = ev_new(AB_EV_TOKEN_DENY);
        ev.success = false;
        ev.peer_uid = 65534;
        ev.peer_pid = 99;
        ev.tool = "github.issues";
        ev.secret = "github-token";
        ev.operation = "mint-jwt";
        ev.reason = "wrong-peer";
        ev.token_id = "ab12cd34";
        assert_format(&ev, "op=token-deny ab_ver=1 suid=65534 spid=99 tool=\"github.issues\" "
                           "secret=\"github-token\" sop=\"mint-jwt\" reason=\"wrong-peer\" "
                           "token=\"ab12cd34\"");

        /* no caller: no suid/spid */
        ev = ev_new(AB_EV_POLICY_LOAD);
        ev.peer_pid = 0;
        ev.peer_uid = 0;
        ev.detail = "/etc/agentbroker/policy.yaml";
        assert_format(&ev, "op=policy-load ab_ver=1 detail=\"/etc/agentbroker/policy.yaml\"");
}

static void
test_encoding(void **state)
{
        struct ab_event ev = ev_new(AB_EV_CALL_DENY);

        ev.peer_pid = 0;
        ev.tool = "files read"; /* space */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 tool=66696C65732072656164");
        ev.tool = NULL;

        ev.reason = "say \"hi\""; /* double quotes */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 reason=7361792022686922");
        ev.reason = "it's"; /* a single quote needs no encoding */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 reason=\"it's\"");
        ev.reason = NULL;

        ev.detail = "line1\nline2"; /* newline */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 detail=6C696E65310A6C696E6532");
        ev.detail = "a=b"; /* '=' is fine inside quotes */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 detail=\"a=b\"");
        ev.detail = NULL;

        ev.secret = "clé"; /* non-ASCII */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 secret=636CC3A9");
        ev.secret = "日本";
        assert_format(&ev, "op=tool-call-deny ab_ver=1 secret=E697A5E69CAC");
        ev.secret = NULL;

        ev.run = ""; /* empty string */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 run=\"\"");
        ev.run = NULL;

        ev.token_id = "\x7f"; /* DEL */
        assert_format(&ev, "op=tool-call-deny ab_ver=1 token=7F");
        ev.token_id = NULL;

        /* numbers: 0 is printed, negatives mean "not set" */
        ev.call = 0;
        ev.args_len = 0;
        ev.result_bytes = -5;
        assert_format(&ev, "op=tool-call-deny ab_ver=1 call=0 args_len=0");
        ev.call = INT64_MAX;
        ev.args_len = -1;
        assert_format(&ev, "op=tool-call-deny ab_ver=1 call=9223372036854775807");

        /* res= is not part of the text; success only changes res= */
        ev = ev_new(AB_EV_RUN_OPEN);
        ev.success = false;
        assert_format(&ev, "op=run-open ab_ver=1 suid=1000 spid=4242");
}

/* Hex-decode s (even length) into a new NUL-terminated string. */
static char *
unhex(const char *s)
{
        size_t n = strlen(s) / 2;
        char *out = malloc(n + 1);

        assert_non_null(out);
        for (size_t i = 0; i < n; i++) {
                char pair[3] = { s[2 * i], s[2 * i + 1], 0 };
                out[i] = (char)strtoul(pair, NULL, 16);
        }
        out[n] = 0;
        return out;
}

/* The value of name= in the record text rec (up to the next space), in a new string. */
static char *
field_of(const char *rec, const char *name)
{
        char key[64];
        const char *p, *end;

        snprintf(key, sizeof(key), " %s=", name);
        p = strstr(rec, key);
        assert_non_null(p);
        p += strlen(key);
        end = strchr(p, ' ');
        return strndup(p, end ? (size_t)(end - p) : strlen(p));
}

static void
test_truncation(void **state)
{
        struct ab_event ev = ev_new(AB_EV_CALL_BEGIN);
        char buf[AB_AUDIT_RECORD_MAX], big[4096], *v, *d;
        int n;

        /* ASCII: cut to 256 bytes, the last three are "..." */
        memset(big, 'a', 300);
        big[300] = 0;
        ev.tool = big;
        n = ab_audit_format(&ev, buf, sizeof(buf));
        assert_true(n > 0);
        v = field_of(buf, "tool");
        assert_int_equal(strlen(v), 2 + 256);
        assert_memory_equal(v, "\"aaaa", 5);
        assert_string_equal(v + strlen(v) - 4, "...\"");
        free(v);

        /* exactly at the limit: unchanged */
        big[256] = 0;
        n = ab_audit_format(&ev, buf, sizeof(buf));
        assert_true(n > 0);
        v = field_of(buf, "tool");
        assert_int_equal(strlen(v), 2 + 256);
        assert_null(strchr(v, '.'));
        free(v);

        /* UTF-8: 200 x "é" (400 bytes) is cut at a character boundary (126 chars) + "..." */
        for (size_t i = 0; i < 200; i++)
                memcpy(big + 2 * i, "\xc3\xa9", 2);
        big[400] = 0;
        n = ab_audit_format(&ev, buf, sizeof(buf));
        assert_true(n > 0);
        v = field_of(buf, "tool");
        d = unhex(v);
        assert_int_equal(strlen(d), 126 * 2 + 3);
        assert_memory_equal(d, big, 126 * 2);
        assert_string_equal(d + 126 * 2, "...");
        free(d);
        free(v);
        ev.tool = NULL;

        /* a newline-laden detail of 2000 bytes: cut to 512, hex-encoded (1024 chars) */
        for (size_t i = 0; i < 2000; i++)
                big[i] = i % 10 == 9 ? '\n' : 'x';
        big[2000] = 0;
        ev.detail = big;
        n = ab_audit_format(&ev, buf, sizeof(buf));
        assert_true(n > 0);
        v = field_of(buf, "detail");
        assert_int_equal(strlen(v), 1024);
        d = unhex(v);
        assert_memory_equal(d, big, 509);
        assert_string_equal(d + 509, "...");
        free(d);
        free(v);
}

/* Every string field at its limit and hex-encoded, every number at its widest: the record
 * still fits AB_AUDIT_RECORD_MAX; a short buffer gets -ENOSPC, bad events -EINVAL. */
static void
test_worst_case(void **state)
{
        static char s[2048];
        struct ab_event ev = ev_new(AB_EV_CALL_END);
        char buf[AB_AUDIT_RECORD_MAX], small[64];
        int n;

        memset(s, '\n', sizeof(s) - 1);
        ev.peer_uid = 4294967294U;
        ev.peer_pid = 2147483647;
        ev.run = ev.tool = ev.secret = ev.operation = ev.reason = ev.args_sha256 = ev.status = ev.token_id =
                ev.detail = s;
        ev.call = ev.args_len = ev.result_bytes = ev.duration_ms = ev.calls = ev.denied = INT64_MAX;
        n = ab_audit_format(&ev, buf, sizeof(buf));
        /* 57 (op, ab_ver, suid, spid) + 2756 (9 strings: names + 2 x limit) + 165 (6 numbers) */
        assert_int_equal(n, 2978);
        assert_true(n < AB_AUDIT_RECORD_MAX);
        assert_int_equal((size_t)n, strlen(buf));

        assert_int_equal(ab_audit_format(&ev, small, sizeof(small)), -ENOSPC);
        assert_int_equal(ab_audit_format(NULL, buf, sizeof(buf)), -EINVAL);
        ev.type = _AB_EV_MAX;
        assert_int_equal(ab_audit_format(&ev, buf, sizeof(buf)), -EINVAL);
}

static void
test_sanitize(void **state)
{
        char out[32];

        assert_int_equal(ab_audit_sanitize("plain", 5, out, sizeof(out)), 5);
        assert_string_equal(out, "plain");
        ab_audit_sanitize("a\nb\tc\x7f", 6, out, sizeof(out));
        assert_string_equal(out, "a\\x0Ab\\x09c\\x7F");
        ab_audit_sanitize("clé 日本", strlen("clé 日本"), out, sizeof(out));
        assert_string_equal(out, "clé 日本");
        /* invalid UTF-8: a lone continuation byte, an overlong form, a truncated sequence */
        ab_audit_sanitize("\x80x\xc0\xafy\xe6\x97", 7, out, sizeof(out));
        assert_string_equal(out, "\\x80x\\xC0\\xAFy\\xE6\\x97");
        /* cut with "..." when it does not fit, never in the middle of a character */
        assert_int_equal(ab_audit_sanitize("abcdefghij", 10, out, 8), 7);
        assert_string_equal(out, "abcd...");
        ab_audit_sanitize("ééééé", 10, out, 9);
        assert_string_equal(out, "éé...");
        /* exactly fits */
        assert_int_equal(ab_audit_sanitize("abcdefg", 7, out, 8), 7);
        assert_string_equal(out, "abcdefg");
        assert_int_equal(ab_audit_sanitize(NULL, 3, out, sizeof(out)), 0);
        assert_string_equal(out, "");
}

/* ------------------------------------------------------------------------------------------ */
/* Report round trip                                                                          */

struct logfile {
        char path[64];
        FILE *f;
        unsigned serial;
        time_t t;
};

static void
log_open(struct logfile *l)
{
        int fd;

        snprintf(l->path, sizeof(l->path), "/tmp/ab-test-audit-XXXXXX");
        fd = mkstemp(l->path);
        assert_true(fd >= 0);
        l->f = fdopen(fd, "w");
        assert_non_null(l->f);
        l->serial = 100;
        l->t = 1700000000;
}

/* Append ev as auditd would log the record that audit_log_user_message() sends. */
static void
log_event(struct logfile *l, const struct ab_event *ev)
{
        char rec[AB_AUDIT_RECORD_MAX];

        assert_true(ab_audit_format(ev, rec, sizeof(rec)) > 0);
        fprintf(l->f,
                "type=TRUSTED_APP msg=audit(%lld.%03u:%u): pid=321 uid=0 auid=4294967295 "
                "ses=4294967295 subj=unconfined msg='%s exe=\"/usr/sbin/agentbrokerd\" hostname=? "
                "addr=? terminal=? res=%s'\n",
                (long long)l->t, l->serial % 1000, l->serial, rec, ev->success ? "success" : "failed");
        l->serial++;
        l->t++;
}

static void
log_line(struct logfile *l, const char *type, const char *body)
{
        fprintf(l->f, "type=%s msg=audit(%lld.000:%u): %s\n", type, (long long)l->t, l->serial, body);
        l->serial++;
        l->t++;
}

/* An event of the test session: caller uid 0 unless changed, in run, for tool. */
static struct ab_event
sev(enum ab_event_type type, const char *run, const char *tool, bool success)
{
        struct ab_event ev = ev_new(type);

        ev.peer_uid = 0;
        ev.run = run;
        ev.tool = tool;
        ev.success = success;
        return ev;
}

/* Write a session: policy-load, run r-1 (2 calls ended, 1 deny, 2 secret uses, one of them
 * refused, 1 token denial) and run "r 2" (a value that must be hex-encoded and decoded again),
 * plus a record of another TRUSTED_APP writer and an unrelated record. */
static void
write_session(struct logfile *l)
{
        struct ab_event ev;

        ev = sev(AB_EV_POLICY_LOAD, NULL, NULL, true);
        ev.peer_pid = 0;
        ev.detail = "/etc/agentbroker/policy.yaml";
        log_event(l, &ev);

        ev = sev(AB_EV_RUN_OPEN, "r-1", NULL, true);
        log_event(l, &ev);

        log_line(l, "TRUSTED_APP",
                 "pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=tool-call-begin "
                 "run=\"r-1\" exe=\"/usr/bin/other\" hostname=? addr=? terminal=? res=success'");
        log_line(l, "USER_LOGIN",
                 "pid=2 uid=0 auid=0 ses=1 msg='op=login id=0 exe=\"/usr/sbin/sshd\" "
                 "hostname=? addr=? terminal=ssh res=success'");

        for (int i = 1; i <= 2; i++) {
                ev = sev(AB_EV_CALL_BEGIN, "r-1", "files read", true);
                ev.call = i;
                ev.args_sha256 = SHA_EMPTY;
                ev.args_len = 10;
                log_event(l, &ev);

                ev = sev(AB_EV_SECRET_USE, "r-1", "files read", i == 1);
                ev.call = i;
                ev.secret = "gh-token";
                ev.operation = "read";
                ev.reason = i == 1 ? NULL : "secret-missing";
                log_event(l, &ev);

                ev = sev(AB_EV_CALL_END, "r-1", "files read", true);
                ev.call = i;
                ev.status = i == 1 ? "ok" : "error";
                ev.result_bytes = 100 * i;
                ev.duration_ms = 10 * i;
                log_event(l, &ev);
        }

        ev = sev(AB_EV_CALL_DENY, "r-1", "shell.exec", false);
        ev.reason = "tool-not-allowed";
        log_event(l, &ev);

        ev = sev(AB_EV_TOKEN_DENY, "r-1", "files read", false);
        ev.peer_uid = 65534;
        ev.reason = "wrong-peer";
        ev.token_id = "ab12cd34";
        log_event(l, &ev);

        ev = sev(AB_EV_RUN_CLOSE, "r-1", NULL, true);
        ev.calls = 2;
        ev.denied = 1;
        ev.result_bytes = 300;
        ev.duration_ms = 30;
        log_event(l, &ev);

        ev = sev(AB_EV_RUN_OPEN, "r 2", NULL, true);
        log_event(l, &ev);

        ev = sev(AB_EV_CALL_DENY, "r 2", "files read", false);
        ev.reason = "rate-limit";
        log_event(l, &ev);

        assert_int_equal(fclose(l->f), 0);
        l->f = NULL;
}

/* Run the report over path and parse its JSON output. */
static cJSON *
report_json(const char *path, const struct ab_report_filter *f)
{
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        cJSON *doc;

        assert_non_null(out);
        assert_int_equal(ab_audit_report(out, path, f, AB_REPORT_JSON), 0);
        fclose(out);
        doc = cJSON_Parse(text);
        if (!doc)
                fail_msg("report output is not JSON: %s", text);
        free(text);
        return doc;
}

static double
num(const cJSON *o, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (!cJSON_IsNumber(v))
                fail_msg("no number %s", name);
        return v->valuedouble;
}

static const char *
str(const cJSON *o, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (!cJSON_IsString(v))
                fail_msg("no string %s", name);
        return v->valuestring;
}

/* The element of array name whose member key equals value. */
static const cJSON *
find(const cJSON *o, const char *name, const char *key, const char *value)
{
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, name), *e;
        cJSON_ArrayForEach(e, arr)
        {
                const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, key);
                if (cJSON_IsString(k) && strcmp(k->valuestring, value) == 0)
                        return e;
        }
        fail_msg("no %s with %s=%s", name, key, value);
        return NULL;
}

static void
test_report_roundtrip(void **state)
{
        struct logfile l;
        cJSON *doc;
        const cJSON *run, *tool, *e;

        log_open(&l);
        write_session(&l);

        doc = report_json(l.path, NULL);
        assert_int_equal(num(doc, "version"), 1);
        assert_string_equal(str(doc, "source"), l.path);
        assert_int_equal(num(doc, "records"), 13);
        assert_string_equal(str(doc, "first"), "2023-11-14T22:13:20.100Z");
        assert_int_equal(num(cJSON_GetObjectItem(doc, "skipped"), "other_programs"), 1);
        e = find(doc, "writers", "exe", "/usr/sbin/agentbrokerd");
        assert_int_equal(num(e, "records"), 13);

        e = find(doc, "decisions", "op", "tool-call-begin");
        assert_int_equal(num(e, "success"), 2);
        e = find(doc, "decisions", "op", "secret-use");
        assert_int_equal(num(e, "success"), 1);
        assert_int_equal(num(e, "failed"), 1);
        e = find(doc, "decisions", "op", "tool-call-deny");
        assert_int_equal(num(e, "failed"), 2);
        assert_int_equal(num(e, "success"), 0);
        e = find(doc, "denials", "reason", "wrong-peer");
        assert_string_equal(str(e, "op"), "token-deny");
        assert_int_equal(num(e, "count"), 1);
        e = find(doc, "denials", "reason", "secret-missing");
        assert_string_equal(str(e, "op"), "secret-use");

        run = find(doc, "runs", "run", "r-1");
        assert_int_equal(num(run, "uid"), 0);
        assert_string_equal(str(run, "user"), "root");
        assert_string_equal(str(run, "opened"), "2023-11-14T22:13:21.101Z");
        assert_string_equal(str(run, "closed"), "2023-11-14T22:13:32.112Z");
        assert_int_equal(num(run, "calls_begun"), 2);
        assert_int_equal(num(run, "calls_ended"), 2);
        assert_int_equal(num(run, "denied"), 1);
        assert_int_equal(num(run, "token_denied"), 1);
        assert_int_equal(num(run, "bytes"), 300);
        assert_int_equal(num(run, "duration_ms_total"), 30);
        assert_int_equal(num(run, "duration_ms_max"), 20);
        e = find(run, "secrets", "secret", "gh-token");
        assert_string_equal(str(e, "operation"), "read");
        assert_int_equal(num(e, "used"), 1);
        assert_int_equal(num(e, "refused"), 1);
        e = find(run, "denials", "reason", "tool-not-allowed");
        assert_int_equal(num(e, "count"), 1);
        e = find(run, "call_ends", "status", "error");
        assert_int_equal(num(e, "count"), 1);
        e = cJSON_GetObjectItem(run, "close");
        assert_int_equal(num(e, "calls"), 2);
        assert_int_equal(num(e, "bytes"), 300);

        run = find(doc, "runs", "run", "r 2"); /* decoded from hex */
        assert_int_equal(num(run, "denied"), 1);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(run, "closed")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(run, "close")));

        tool = find(doc, "tools", "tool", "files read");
        assert_int_equal(num(tool, "calls_begun"), 2);
        assert_int_equal(num(tool, "denied"), 1);
        assert_int_equal(num(tool, "token_denied"), 1);
        assert_int_equal(num(tool, "bytes"), 300);
        tool = find(doc, "tools", "tool", "shell.exec");
        assert_int_equal(num(tool, "denied"), 1);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "tools")), 2);

        e = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "policy_loads"), 0);
        assert_string_equal(str(e, "detail"), "/etc/agentbroker/policy.yaml");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(e, "success")));
        cJSON_Delete(doc);

        /* filters */
        struct ab_report_filter f = { .denied_only = true };
        doc = report_json(l.path, &f);
        assert_int_equal(num(doc, "records"), 3);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "filter"), "denied_only")));
        cJSON_Delete(doc);

        f = (struct ab_report_filter){ .run = "r 2" };
        doc = report_json(l.path, &f);
        assert_int_equal(num(doc, "records"), 2);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "runs")), 1);
        cJSON_Delete(doc);

        f = (struct ab_report_filter){ .tool = "files read" };
        doc = report_json(l.path, &f);
        assert_int_equal(num(doc, "records"), 8); /* 2 x (begin, secret, end), deny, token-deny */
        cJSON_Delete(doc);

        f = (struct ab_report_filter){ .since = 1700000000 + 12 };
        doc = report_json(l.path, &f);
        assert_int_equal(num(doc, "records"), 3); /* run-close, run-open r 2, deny */
        cJSON_Delete(doc);

        f = (struct ab_report_filter){ .run = "no-such-run" };
        doc = report_json(l.path, &f);
        assert_int_equal(num(doc, "records"), 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "first")));
        cJSON_Delete(doc);

        unlink(l.path);
}

static void
test_report_text(void **state)
{
        struct logfile l;
        char *text = NULL;
        size_t len = 0;
        FILE *out;

        log_open(&l);
        write_session(&l);
        out = open_memstream(&text, &len);
        assert_non_null(out);
        assert_int_equal(ab_audit_report(out, l.path, NULL, AB_REPORT_TEXT), 0);
        fclose(out);
        assert_non_null(strstr(text, "Records:   13, 2023-11-14T22:13:20.100Z to "));
        assert_non_null(strstr(text, "Runs (2)"));
        assert_non_null(strstr(text, "Tools (2)"));
        assert_non_null(strstr(text, "  r 2 "));
        assert_non_null(strstr(text, "root (0)"));
        assert_non_null(strstr(text, "secrets: gh-token/read (1 used, 1 refused)"));
        assert_non_null(strstr(text, "denials: tool-call-deny tool-not-allowed (1)"));
        assert_non_null(strstr(text, "run-close record: 2 calls, 1 denied, 300 bytes, 30 ms"));
        assert_non_null(strstr(text, "Skipped:   1 TRUSTED_APP records of other programs"));
        free(text);
        unlink(l.path);
}

static void
test_report_errors(void **state)
{
        FILE *out = fopen("/dev/null", "w");
        struct logfile l;

        assert_non_null(out);
        assert_int_equal(ab_audit_report(out, "/nonexistent/audit.log", NULL, AB_REPORT_TEXT), -ENOENT);
        assert_int_equal(ab_audit_report(out, "/tmp", NULL, AB_REPORT_JSON), -EISDIR);
        assert_int_equal(ab_audit_report(out, "/dev/null", NULL, (enum ab_report_format)7), -EINVAL);

        /* an empty log is a valid, empty report */
        log_open(&l);
        fclose(l.f);
        assert_int_equal(ab_audit_report(out, l.path, NULL, AB_REPORT_TEXT), 0);
        unlink(l.path);
        fclose(out);
}

/* More runs than the report itemises: memory stays bounded, the totals still count every
 * record and the JSON says how many were left out. */
static void
test_report_limits(void **state)
{
        struct logfile l;
        struct ab_event ev = ev_new(AB_EV_RUN_OPEN);
        char run[32];
        cJSON *doc;
        const cJSON *limits;

        log_open(&l);
        for (int i = 0; i < 10005; i++) {
                snprintf(run, sizeof(run), "run-%05d", i);
                ev.run = run;
                log_event(&l, &ev);
        }
        assert_int_equal(fclose(l.f), 0);

        doc = report_json(l.path, NULL);
        assert_int_equal(num(doc, "records"), 10005);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "runs")), 10000);
        limits = cJSON_GetObjectItem(doc, "limits");
        assert_int_equal(num(limits, "runs_max"), 10000);
        assert_int_equal(num(limits, "records_of_runs_not_itemised"), 5);
        assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "runs"), 9999), "run"),
                            "run-09999");
        cJSON_Delete(doc);
        unlink(l.path);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ops),           cmocka_unit_test(test_message_ids),
                cmocka_unit_test(test_golden),        cmocka_unit_test(test_encoding),
                cmocka_unit_test(test_truncation),    cmocka_unit_test(test_worst_case),
                cmocka_unit_test(test_sanitize),      cmocka_unit_test(test_report_roundtrip),
                cmocka_unit_test(test_report_text),   cmocka_unit_test(test_report_errors),
                cmocka_unit_test(test_report_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
