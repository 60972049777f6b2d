/* SPDX-License-Identifier: MIT */
/* Unit tests for the fs module's compact tools (modules/fs: lines.c, tree.c, json_select.c,
 * logsum.c, grep.c (with common/regex.c), the compact text of structured results in text.c,
 * and its structured_output option), built from their sources and called in-process with
 * real calls of the module library (modules/lib/call.c) on a temporary tree: results,
 * confinement, limits, cursors, binary files, huge lines, invalid UTF-8, and bad patterns
 * and selectors with their messages. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "modules/lib/internal.h"

extern const struct abm_module agentbroker_module;

static char dir[64], root[96];

/* ---- the tree ---- */

static void
write_file(const char *rel, const char *data, size_t len)
{
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
}

static void
write_str(const char *rel, const char *s)
{
        write_file(rel, s, strlen(s));
}

static void
mkdir_rel(const char *rel)
{
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        assert_int_equal(mkdir(p, 0755), 0);
}

static void
build_tree(void)
{
        char p[256], line[128];
        FILE *f;

        strcpy(dir, "/tmp/test_fs_tools.XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(root, sizeof(root), "%s/root", dir);
        assert_int_equal(mkdir(root, 0755), 0);
        snprintf(p, sizeof(p), "%s/outside", dir);
        assert_int_equal(mkdir(p, 0755), 0);
        snprintf(p, sizeof(p), "%s/outside/secret.log", dir);
        f = fopen(p, "w");
        fputs("2026-01-01T00:00:00Z ERROR OUTSIDE-MARKER\n", f);
        fclose(f);

        /* 500 numbered lines */
        snprintf(p, sizeof(p), "%s/lines.txt", root);
        f = fopen(p, "w");
        for (int i = 1; i <= 500; i++)
                fprintf(f, "line %03d of the file\n", i);
        fclose(f);
        /* a log: 3 ERROR lines among INFO and WARN, timestamps */
        snprintf(p, sizeof(p), "%s/app.log", root);
        f = fopen(p, "w");
        for (int i = 0; i < 300; i++) {
                if (i % 100 == 50)
                        fprintf(f, "2026-03-01T10:%02d:%02dZ ERROR payment %d failed after %d ms\n", i / 60,
                                i % 60, 1000 + i, 30 + i);
                else if (i % 10 == 3)
                        fprintf(f, "2026-03-01T10:%02d:%02dZ WARN slow request id=%08x took %d ms\n", i / 60,
                                i % 60, 0xab120000 + i, i);
                else
                        fprintf(f, "2026-03-01T10:%02d:%02dZ INFO request %d served\n", i / 60, i % 60, i);
        }
        fclose(f);
        /* invalid UTF-8 past the first 8 KiB (before it, the file counts as binary) */
        snprintf(p, sizeof(p), "%s/bad-utf8.txt", root);
        f = fopen(p, "w");
        for (int i = 1; i <= 800; i++)
                fprintf(f, "ok line %04d\n", i);
        fputs("bad \xff\xfe byte ERROR\nlast\n", f);
        fclose(f);
        write_str("latin1.txt", "caf\xe9 ERROR\n");
        write_str("no-newline.txt", "one\ntwo");
        write_str("dots.txt", "axb\na.b\nA.B\n");
        {
                char wide[2100];
                memset(wide, 'y', 2000);
                memcpy(wide + 1000, "NEEDLE", 6);
                wide[2000] = '\n';
                write_file("wide.txt", wide, 2001);
        }
        write_file("empty.txt", "", 0);
        write_file("blob.bin",
                   "\x7f"
                   "ELF\0\0\0\0binary ERROR",
                   20);
        /* a huge line between two short ones */
        {
                size_t n = 200000;
                char *big = malloc(n + 64);
                assert_non_null(big);
                int o = sprintf(big, "short one\n");
                memset(big + o, 'x', n);
                memcpy(big + o + n / 2, "ERROR", 5);
                o += (int)n;
                o += sprintf(big + o, "\nshort two\n");
                write_file("huge.txt", big, (size_t)o);
                free(big);
        }
        /* JSON: 30 issues */
        {
                char *j = malloc(16384);
                size_t o = 0;
                o += (size_t)sprintf(j + o, "[");
                for (int i = 1; i <= 30; i++)
                        o += (size_t)sprintf(j + o,
                                             "%s{\"number\":%d,\"title\":\"Issue %d\",\"state\":\"%s\","
                                             "\"body\":\"long text %d\",\"labels\":[\"a\",\"b\"]}",
                                             i > 1 ? "," : "", i, i, i % 3 ? "open" : "closed", i);
                o += (size_t)sprintf(j + o, "]\n");
                write_file("issues.json", j, o);
                free(j);
        }
        write_str("bad.json", "{\n  \"a\": 1,\n  \"b\": [1, 2,, 3]\n}\n");
        write_str("obj.json",
                  "{\"a/b\":1,\"m~n\":2,\"items\":[{\"t\":\"x\"},{\"t\":\"y\"}],\"meta\":{\"count\":2}}");
        /* a tree */
        mkdir_rel("src");
        mkdir_rel("src/a");
        mkdir_rel("src/b");
        mkdir_rel("src/b/deep");
        for (int i = 0; i < 25; i++) {
                snprintf(line, sizeof(line), "src/a/f%02d.c", i);
                write_str(line, "int x; /* ERROR here */\n");
        }
        write_str("src/b/deep/z.c", "int z;\n");
        write_str("src/b/one.c", "int one; // ERROR\n");
        write_file("src/b/blob.bin", "\0\0\0ERROR", 8);
        snprintf(p, sizeof(p), "%s/src/out", root);
        snprintf(line, sizeof(line), "%s/outside", dir);
        assert_int_equal(symlink(line, p), 0); /* a symlink out of the root */
        snprintf(p, sizeof(p), "%s/escape.log", root);
        snprintf(line, sizeof(line), "../outside/secret.log");
        assert_int_equal(symlink(line, p), 0);
}

static int
group_setup(void **state)
{
        (void)state;
        build_tree();
        char cfg[256];
        snprintf(cfg, sizeof(cfg), "{\"roots\":[\"%s\"]}", root);
        cJSON *c = cJSON_Parse(cfg);
        struct abm_error err = { { 0 } };
        assert_non_null(c);
        int r = agentbroker_module.init((const struct abm_json *)c, &err);
        if (r < 0)
                fail_msg("init: %s", err.message);
        /* the configuration stays valid while the module runs: kept until teardown */
        *state = c;
        return 0;
}

static int
group_teardown(void **state)
{
        char cmd[128];

        agentbroker_module.fini();
        cJSON_Delete(*state);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

/* ---- calling a tool ---- */

struct result {
        int rc;
        char text[1 << 20]; /* the text blocks, joined */
        char *structured;   /* printed structuredContent, or NULL */
        struct abm_error err;
};
static struct result res;

/* Call fs.<tool> with args (JSON text) and max_result_bytes max: res holds the outcome. */
static int
run(const char *tool, const char *args, size_t max)
{
        struct abm_call *call = calloc(1, sizeof(*call));
        const struct abm_tool *t = NULL;
        const cJSON *b;

        assert_non_null(call);
        for (size_t i = 0; i < agentbroker_module.n_tools; i++)
                if (strcmp(agentbroker_module.tools[i].name, tool) == 0)
                        t = &agentbroker_module.tools[i];
        if (!t)
                fail_msg("no tool fs.%s", tool);
        call->tool = t;
        call->args = cJSON_Parse(args);
        assert_non_null(call->args);
        call->content = cJSON_CreateArray();
        call->max_bytes = max;
        free(res.structured);
        memset(&res, 0, sizeof(res));
        res.rc = t->call(call, &res.err);
        size_t o = 0;
        cJSON_ArrayForEach(b, call->content)
        {
                const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(b, "text"));
                size_t n = s ? strlen(s) : 0;
                assert_true(o + n < sizeof(res.text));
                memcpy(res.text + o, s, n);
                o += n;
        }
        res.text[o] = '\0';
        if (call->structured)
                res.structured = cJSON_PrintUnformatted(call->structured);
        abmi_call_free(call);
        return res.rc;
}

/* The call succeeded. */
#define OK(tool, args, max)                                                               \
        do {                                                                              \
                if (run(tool, args, max) < 0)                                             \
                        fail_msg("fs.%s %s: %d %s", tool, args, res.rc, res.err.message); \
        } while (0)
/* The call failed with code, its message containing needle. */
#define FAILS(tool, args, max, code, needle)                                                            \
        do {                                                                                            \
                int _r = run(tool, args, max);                                                          \
                if (_r != (code) || !strstr(res.err.message, needle))                                   \
                        fail_msg("fs.%s %s: %d '%s' (want %d and '%s'; text '%.200s')", tool, args, _r, \
                                 res.err.message, code, needle, res.text);                              \
        } while (0)
#define HAS(needle)                                                          \
        do {                                                                 \
                if (!strstr(res.text, needle))                               \
                        fail_msg("'%s' not in:\n%.3000s", needle, res.text); \
        } while (0)
#define HASNT(needle)                                                                 \
        do {                                                                          \
                if (strstr(res.text, needle))                                         \
                        fail_msg("'%s' unexpectedly in:\n%.3000s", needle, res.text); \
        } while (0)

#define STARTS(prefix)                                                                            \
        do {                                                                                      \
                if (strncmp(res.text, prefix, strlen(prefix)) != 0)                               \
                        fail_msg("the text does not start with '%s':\n%.600s", prefix, res.text); \
        } while (0)

/* The value after "key" in the text (e.g. "start_line=") as a number, or -1. */
static long
after_num(const char *key)
{
        const char *p = strstr(res.text, key);
        return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The cursor the text ends with ("cursor=XYZ]"), copied into buf, or NULL. */
static char *
cursor_of(char *buf, size_t size)
{
        const char *p = strstr(res.text, "cursor=");
        if (!p)
                return NULL;
        p += 7;
        size_t n = strcspn(p, "]");
        assert_true(n < size);
        memcpy(buf, p, n);
        buf[n] = '\0';
        return buf;
}

/* Call fs.<tool> with args (an object's JSON text without its closing brace) and max, then
 * again with each cursor its text ends with; collect(ctx) runs after each call, with res
 * holding it. Returns the number of calls. */
static int
page_all(const char *tool, const char *args, size_t max, void (*collect)(void *), void *ctx)
{
        char full[1024], cur[512];
        int calls = 0;

        snprintf(full, sizeof(full), "%s}", args);
        for (;;) {
                OK(tool, full, max);
                assert_true(strlen(res.text) < max);
                collect(ctx);
                if (!cursor_of(cur, sizeof(cur)))
                        return calls + 1;
                assert_true(++calls < 30);
                snprintf(full, sizeof(full), "%s,\"cursor\":\"%s\"}", args, cur);
        }
}

/* ---- confinement: every new tool, the same refusals as the other fs tools ---- */

static void
test_confinement(void **state)
{
        (void)state;
        static const char *const calls[][2] = {
                { "read_file", "{\"path\":\"../outside/secret.log\",\"start_line\":1}" },
                { "read_file", "{\"path\":\"escape.log\",\"tail_lines\":1}" },
                { "tree", "{\"path\":\"../outside\"}" },
                { "tree", "{\"path\":\"src/out\"}" },
                { "read_json", "{\"path\":\"/etc/passwd\",\"select\":[\"/a\"]}" },
                { "summarize_log", "{\"path\":\"escape.log\"}" },
                { "summarize_log", "{\"path\":\"src/../../outside/secret.log\"}" },
        };
        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
                FAILS(calls[i][0], calls[i][1], 65536, -EXDEV, "outside the allowed roots");
                HASNT("OUTSIDE-MARKER");
        }
        /* the walk does not follow the symlink out of the root */
        OK("tree", "{\"path\":\"src\",\"depth\":3}", 65536);
        HAS("out@");
        HASNT("secret.log");
}

/* ---- fs.read_file by lines ---- */

static void
test_lines_head(void **state)
{
        (void)state;
        OK("read_file", "{\"path\":\"lines.txt\",\"start_line\":1,\"max_lines\":3}", 65536);
        HAS("line 001 of the file\nline 002 of the file\nline 003 of the file\n[lines 1-3");
        assert_int_equal(after_num("start_line="), 4);
        OK("read_file", "{\"path\":\"lines.txt\",\"start_line\":499}", 65536);
        HAS("line 499 of the file\nline 500 of the file\n[lines 499-500 of 'lines.txt': end of file]");
        OK("read_file", "{\"path\":\"no-newline.txt\",\"start_line\":2}", 65536);
        HAS("two[lines 2-2");
        OK("read_file", "{\"path\":\"empty.txt\",\"start_line\":1}", 65536);
        HAS("[end of file: 'empty.txt' has 0 lines]");
        FAILS("read_file", "{\"path\":\"lines.txt\",\"start_line\":502}", 65536, -EINVAL,
              "start_line 502 is past the end of 'lines.txt' (it has 500 lines)");
        FAILS("read_file", "{\"path\":\"lines.txt\",\"start_line\":2,\"offset\":3}", 65536, -EINVAL,
              "give one kind, not both");
        FAILS("read_file", "{\"path\":\"lines.txt\",\"tail_lines\":2,\"start_line\":3}", 65536, -EINVAL,
              "does not go with start_line");
}

/* Pages of whole lines within a small result, put together, are the file. */
static void
test_lines_pages(void **state)
{
        (void)state;
        char *all = calloc(1, 65536), args[128];
        long next = 1;
        int pages = 0;

        assert_non_null(all);
        while (next > 0 && pages < 100) {
                snprintf(args, sizeof(args), "{\"path\":\"lines.txt\",\"start_line\":%ld}", next);
                OK("read_file", args, 2048);
                char *note = strstr(res.text, "[lines ");
                assert_non_null(note);
                assert_true(note == res.text || note[-1] == '\n'); /* whole lines only */
                strncat(all, res.text, (size_t)(note - res.text));
                next = strstr(note, "more follow") ? after_num("start_line=") : 0;
                pages++;
        }
        assert_true(pages > 3);
        char p[256];
        snprintf(p, sizeof(p), "%s/lines.txt", root);
        FILE *f = fopen(p, "r");
        char *want = calloc(1, 65536);
        assert_int_equal(fread(want, 1, 65535, f), strlen(all));
        fclose(f);
        assert_string_equal(all, want);
        free(all);
        free(want);
}

static void
test_lines_tail(void **state)
{
        (void)state;
        OK("read_file", "{\"path\":\"lines.txt\",\"tail_lines\":2}", 65536);
        HAS("line 499 of the file\nline 500 of the file\n[the last 2 lines of 'lines.txt' (lines 499-500)");
        OK("read_file", "{\"path\":\"no-newline.txt\",\"tail_lines\":1}", 65536);
        HAS("two[the last 1 lines");
        OK("read_file", "{\"path\":\"lines.txt\",\"tail_lines\":100000}", 2048);
        HAS("line 500 of the file\n[the last ");
        HAS("no more fit in this result");
        assert_true(strlen(res.text) <= 2048);
        OK("read_file", "{\"path\":\"empty.txt\",\"tail_lines\":3}", 65536);
        HAS("is empty");
}

static void
test_lines_odd_files(void **state)
{
        (void)state;
        OK("read_file", "{\"path\":\"blob.bin\",\"start_line\":1}", 65536);
        HAS("is a binary file, 20 bytes, type: ELF");
        OK("read_file", "{\"path\":\"latin1.txt\",\"start_line\":1}", 65536);
        HAS("is a binary file, 11 bytes, type: text in an encoding other than UTF-8");
        OK("read_file", "{\"path\":\"bad-utf8.txt\",\"start_line\":801,\"max_lines\":1}", 65536);
        HAS("bad \\xFF\\xFE byte ERROR\n");
        HAS("not UTF-8 are shown as \\xNN");
        /* the huge line: cut, with the offset of its rest and the next line */
        OK("read_file", "{\"path\":\"huge.txt\",\"start_line\":2}", 4096);
        HAS("[line 2 of 'huge.txt' is longer than this result allows");
        HAS("start_line=3]");
        assert_true(strlen(res.text) < 4096);
        OK("read_file", "{\"path\":\"huge.txt\",\"start_line\":1}", 4096);
        HAS("short one\n[lines 1-1");
        OK("read_file", "{\"path\":\"huge.txt\",\"start_line\":3}", 4096);
        HAS("short two\n");
}

/* ---- fs.tree ---- */

static void
test_tree(void **state)
{
        (void)state;
        OK("tree", "{\"path\":\".\",\"depth\":1}", 65536);
        HAS("./  4 dirs, 41 files, 2 other");
        HAS("\nsrc/  3 dirs, 28 files, 1 other, ");
        HAS("\nescape.log@\n");
        HASNT("f00.c"); /* below the cut */
        OK("tree", "{\"path\":\"src\",\"depth\":2,\"max_files\":3}", 65536);
        HAS("\na/  25 files, 600 B\n  f00.c  24 B\n  f01.c  24 B\n  f02.c  24 B\n  ... 22 more files, 528 B\n");
        HAS("\nb/  1 dir, 3 files, 33 B\n  blob.bin  8 B\n  deep/  1 file, 7 B\n  one.c  18 B\n");
        HAS("\nout@\n");
        OK("tree", "{\"path\":\"src/b//\",\"depth\":1}", 65536);
        STARTS("src/b/  1 dir, 3 files, 33 B\n");
        OK("grep", "{\"path\":\"src/b/\",\"pattern\":\"ERROR\"}", 65536);
        STARTS("src/b/one.c (1 match)\n");
        FAILS("tree", "{\"path\":\"lines.txt\"}", 65536, -ENOTDIR, "is not a directory");
        FAILS("tree", "{\"path\":\"src\",\"cursor\":\"Li4v\"}", 65536, -EINVAL, "invalid cursor");
}

/* collect: the body of a tree page (no header, no cursor line) appended to ctx. */
static void
tree_body(void *ctx)
{
        char *body = strchr(res.text, '\n') + 1, *end = strstr(body, "[more:");
        strncat(ctx, body, end ? (size_t)(end - body) : strlen(body));
}

/* Pages of a tree too large for one result, put together, are the whole tree, once. */
static void
test_tree_pages(void **state)
{
        (void)state;
        char whole[8192] = "", all[8192] = "";

        OK("tree", "{\"path\":\"src\",\"depth\":3,\"max_files\":100}", 65536);
        tree_body(whole);
        assert_true(page_all("tree", "{\"path\":\"src\",\"depth\":3,\"max_files\":100", 900, tree_body,
                             all) > 1);
        assert_string_equal(all, whole);
}

/* ---- fs.read_json ---- */

static void
test_json(void **state)
{
        (void)state;
        OK("read_json", "{\"path\":\"issues.json\",\"select\":[\"[*].{number,title,state}\"]}", 65536);
        STARTS("[{\"number\":1,\"title\":\"Issue 1\",\"state\":\"open\"},{\"number\":2,");
        cJSON *v = cJSON_Parse(res.text);
        assert_non_null(v);
        assert_int_equal(cJSON_GetArraySize(v), 30);
        assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 5), "body"));
        cJSON_Delete(v);
        OK("read_json", "{\"path\":\"issues.json\",\"select\":[\"/2/title\"]}", 65536);
        assert_string_equal(res.text, "\"Issue 3\"");
        OK("read_json",
           "{\"path\":\"issues.json\",\"select\":[\"[-1].number\",\"[0:2].state\",\"[5].nope\"]}", 65536);
        assert_string_equal(res.text,
                            "{\"[-1].number\":30,\"[0:2].state\":[\"open\",\"open\"],\"[5].nope\":null}");
        OK("read_json",
           "{\"path\":\"obj.json\",\"select\":[\"/a~1b\",\"/m~0n\",\"items[*].t\",\"meta.count\"]}", 65536);
        assert_string_equal(res.text,
                            "{\"/a~1b\":1,\"/m~0n\":2,\"items[*].t\":[\"x\",\"y\"],\"meta.count\":2}");
        OK("read_json", "{\"path\":\"obj.json\",\"select\":[\"\"]}", 65536);
        STARTS("{\"a/b\":1,");
        FAILS("read_json", "{\"path\":\"obj.json\",\"select\":[\"/items/7\"]}", 65536, -ENOENT,
              "no such array element");
        FAILS("read_json", "{\"path\":\"obj.json\",\"select\":[\"/nope\"]}", 65536, -ENOENT,
              "'/nope': no such member");
        FAILS("read_json", "{\"path\":\"obj.json\",\"select\":[\"items[*\"]}", 65536, -EINVAL,
              "expected [N], [*] or [M:N] at character 7");
        FAILS("read_json", "{\"path\":\"obj.json\",\"select\":[\"{a,b}.c\"]}", 65536, -EINVAL,
              "{...} must be the last step");
        FAILS("read_json", "{\"path\":\"bad.json\",\"select\":[\"/a\"]}", 65536, -EINVAL,
              "is not valid JSON: error near line 3, column 14");
        FAILS("read_json", "{\"path\":\"bad-utf8.txt\",\"select\":[\"/a\"]}", 65536, -EINVAL,
              "byte 10404 (line 801, column 5) is not UTF-8");
        FAILS("read_json", "{\"path\":\"issues.json\",\"select\":[\"\"]}", 1024, -E2BIG,
              "more than this result allows");
}

/* ---- fs.summarize_log ---- */

static void
test_summarize(void **state)
{
        (void)state;
        OK("summarize_log", "{\"path\":\"app.log\"}", 1 << 20);
        assert_true(strlen(res.text) <= 4096);
        HAS("app.log: ");
        HAS(", 300 lines\nlevels: ERROR 3, WARN 30, INFO 267\n");
        HAS("time: 2026-03-01T10:00:00Z .. 2026-03-01T10:04:59Z\n");
        /* the most severe level's template first, with its count */
        HAS("templates: 3 distinct");
        HAS("\n3 ERROR payment <n> failed after <n> ms\n  e.g. 2026-03-01T10:00:50Z ERROR payment 1050 failed after 80 ms\n");
        HAS("\n30 WARN slow request id=<id> took <n> ms\n");
        HAS("\n267 INFO request <n> served\n");
        OK("summarize_log", "{\"path\":\"huge.txt\"}", 1 << 20);
        HAS("[1 lines longer than 4096 bytes");
        OK("summarize_log", "{\"path\":\"blob.bin\"}", 1 << 20);
        HAS("is a binary file");
        OK("summarize_log", "{\"path\":\"bad-utf8.txt\"}", 1 << 20);
        HAS("bad \\xFF\\xFE byte ERROR");
        /* a small result: the summary shrinks to fit */
        OK("summarize_log", "{\"path\":\"app.log\"}", 1600);
        assert_true(strlen(res.text) < 1600);
        HAS("3 ERROR payment");
}

/* ---- fs.grep ---- */

static void
test_grep_file(void **state)
{
        (void)state;
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"ERROR\"}", 65536);
        STARTS("app.log (3 matches)\n51:2026-03-01T10:00:50Z ERROR payment 1050 failed after 80 ms\n151:");
        HAS("\n251:2026-03-01T10:04:10Z ERROR payment 1250 failed after 280 ms\n[3 matches in 1 of 1 file; ");
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"error\"}", 65536);
        HAS("no match\n[0 matches in 0 of 1 file;");
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"error\",\"ignore_case\":true}", 65536);
        HAS("app.log (3 matches)");
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"payment 1[0-9]{3} failed\"}", 65536);
        HAS("app.log (3 matches)");
        OK("grep", "{\"path\":\"dots.txt\",\"pattern\":\"a.b\"}", 65536);
        HAS("dots.txt (2 matches)\n1:axb\n2:a.b\n");
        OK("grep", "{\"path\":\"dots.txt\",\"pattern\":\"a.b\",\"fixed\":true}", 65536);
        HAS("dots.txt (1 match)\n2:a.b\n");
        OK("grep", "{\"path\":\"dots.txt\",\"pattern\":\"a.b\",\"fixed\":true,\"ignore_case\":true}", 65536);
        HAS("dots.txt (2 matches)\n2:a.b\n3:A.B\n");
        /* context: before and after, "--" between groups that do not touch */
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"ERROR\",\"before\":1,\"after\":1}", 65536);
        HAS("app.log (3 matches)\n50-2026-03-01T10:00:49Z INFO request 49 served\n51:2026-03-01T10:00:50Z ERROR");
        HAS("\n52-2026-03-01T10:00:51Z INFO request 51 served\n--\n150-");
        OK("grep", "{\"path\":\"lines.txt\",\"pattern\":\"line 00[12]\",\"before\":3,\"after\":1}", 65536);
        HAS("lines.txt (2 matches)\n1:line 001 of the file\n2:line 002 of the file\n3-line 003 of the file\n[");
        /* count_only */
        OK("grep", "{\"path\":\"app.log\",\"pattern\":\"WARN\",\"count_only\":true}", 65536);
        STARTS("app.log: 30\n[30 matches in 1 of 1 file;");
}

/* collect: the match lines of a grep page appended to ctx. */
static void
grep_lines(void *ctx)
{
        for (const char *l = res.text; (l = strstr(l, ":2026")); l++) {
                const char *start = l;
                while (start > res.text && start[-1] != '\n')
                        start--;
                strncat(ctx, start, strcspn(start, "\n") + 1);
        }
        if (strstr(res.text, "cursor="))
                HAS("[stopped by max_matches: call fs.grep again with cursor=");
}

/* max_matches, then the cursor: every match once, in order. */
static void
test_grep_cursor(void **state)
{
        (void)state;
        char all[4096] = "";

        assert_int_equal(page_all("grep", "{\"path\":\"app.log\",\"pattern\":\"ERROR\",\"max_matches\":1",
                                  65536, grep_lines, all),
                         3);
        assert_string_equal(all, "51:2026-03-01T10:00:50Z ERROR payment 1050 failed after 80 ms\n"
                                 "151:2026-03-01T10:02:30Z ERROR payment 1150 failed after 180 ms\n"
                                 "251:2026-03-01T10:04:10Z ERROR payment 1250 failed after 280 ms\n");
        FAILS("grep", "{\"path\":\"app.log\",\"pattern\":\"x\",\"cursor\":\"bm90IGEgY3Vyc29y\"}", 65536,
              -EINVAL, "invalid cursor");
}

/* collect: the files with a match in a grep page, added to *(int *)ctx. */
static void
grep_files(void *ctx)
{
        for (const char *p = res.text; (p = strstr(p, " (1 match)\n")); p++)
                (*(int *)ctx)++;
        if (strstr(res.text, "cursor="))
                HAS("[stopped by the result size: call fs.grep again with cursor=");
}

static void
test_grep_dir(void **state)
{
        (void)state;
        int files = 0;

        OK("grep", "{\"path\":\"src\",\"pattern\":\"ERROR\"}", 65536);
        STARTS("src/a/f00.c (1 match)\n1:int x; /* ERROR here */\nsrc/a/f01.c (1 match)\n");
        HAS("\nsrc/b/one.c (1 match)\n1:int one; // ERROR\n[26 matches in 26 of 28 files; ");
        HAS("; 1 binary file skipped]");
        HASNT("OUTSIDE-MARKER");
        OK("grep", "{\"path\":\"src\",\"pattern\":\"ERROR\",\"count_only\":true}", 65536);
        HAS("src/a/f24.c: 1\nsrc/b/one.c: 1\n[26 matches");
        /* the symlinks out of the root are not followed */
        OK("grep", "{\"path\":\".\",\"pattern\":\"OUTSIDE-MARKER\"}", 65536);
        HAS("no match\n");
        HASNT("secret");
        /* a small result: pages by the result size, every file once */
        assert_true(page_all("grep", "{\"path\":\"src\",\"pattern\":\"ERROR\"", 1500, grep_files, &files) >
                    1);
        assert_int_equal(files, 26);
}

static void
test_grep_odd(void **state)
{
        (void)state;
        FAILS("grep", "{\"path\":\"app.log\",\"pattern\":\"(ERROR\"}", 65536, -EINVAL,
              "pattern is not a valid regular expression: ");
        FAILS("grep", "{\"path\":\"app.log\",\"pattern\":\"(a)\\\\1\"}", 65536, -EINVAL,
              "pattern is not a valid regular expression: ");
        FAILS("grep", "{\"path\":\"../outside/secret.log\",\"pattern\":\"E\"}", 65536, -EXDEV,
              "outside the allowed roots");
        FAILS("grep", "{\"path\":\"escape.log\",\"pattern\":\"E\"}", 65536, -EXDEV,
              "outside the allowed roots");
        OK("grep", "{\"path\":\"blob.bin\",\"pattern\":\"ERROR\"}", 65536);
        HAS("no match\n[0 matches in 0 of 1 file; 0 B read; 1 binary file skipped]");
        OK("grep", "{\"path\":\"latin1.txt\",\"pattern\":\"ERROR\"}", 65536);
        HAS("1 binary file skipped");
        OK("grep", "{\"path\":\"bad-utf8.txt\",\"pattern\":\"ERROR\"}", 65536);
        HAS("bad-utf8.txt (1 match)\n801:bad \\xFF\\xFE byte ERROR\n");
        /* a long line is shown as a window around the match */
        OK("grep", "{\"path\":\"wide.txt\",\"pattern\":\"NEEDLE\"}", 65536);
        HAS("wide.txt (1 match)\n1:...yyyy");
        HAS("yyyyNEEDLEyyyy");
        HAS("yyy...\n[");
        assert_true(strlen(res.text) < 600);
        /* a huge line is searched in its first 64 KiB (the ERROR 100 KB in is not found) */
        OK("grep", "{\"path\":\"huge.txt\",\"pattern\":\"ERROR|short|^x{10}\"}", 65536);
        HAS("huge.txt (3 matches)\n1:short one\n2:xxxxxxxxxx");
        HAS("xxx...\n3:short two\n");
        HASNT("ERROR");
        HAS("1 line longer than 64 KiB: only its first 64 KiB searched]");
        assert_true(strlen(res.text) < 1000);
}

/* A result size too small for even one line is an error, never a cursor that makes no
 * progress. */
static void
test_tiny_results(void **state)
{
        (void)state;
        FAILS("grep", "{\"path\":\"app.log\",\"pattern\":\"ERROR\"}", 600, -E2BIG,
              "a matching line does not fit in this tool's result size (max_result_bytes 600)");
        FAILS("grep", "{\"path\":\"src\",\"pattern\":\"ERROR\"}", 600, -E2BIG, "does not fit");
        FAILS("tree", "{\"path\":\"src\"}", 600, -E2BIG, "an entry of 'src' does not fit");
        OK("read_file", "{\"path\":\"lines.txt\",\"start_line\":1}", 300);
        HAS("line 001 of the file\n");
        HAS("more follow: start_line=");
}

/* ---- the compact text of structured results, structured_output ---- */

static cJSON *other_config; /* a configuration other than group_setup's, in use */

/* Restart the module with the configuration {"roots":[root]<extra>}: returns init's result
 * (its message in res.err). */
static int
reinit(const char *extra)
{
        char cfg[512];

        agentbroker_module.fini();
        cJSON_Delete(other_config);
        snprintf(cfg, sizeof(cfg), "{\"roots\":[\"%s\"]%s}", root, extra);
        other_config = cJSON_Parse(cfg);
        assert_non_null(other_config);
        memset(&res.err, 0, sizeof(res.err));
        return agentbroker_module.init((const struct abm_json *)other_config, &res.err);
}

/* Back to group_setup's configuration (the default structured_output). */
static int
restore_config(void **state)
{
        struct abm_error err = { { 0 } };

        agentbroker_module.fini();
        assert_int_equal(agentbroker_module.init((const struct abm_json *)*state, &err), 0);
        cJSON_Delete(other_config);
        other_config = NULL;
        return 0;
}

/* The output schema fs.<tool> declares, or NULL. */
static const char *
output_schema_of(const char *tool)
{
        for (size_t i = 0; i < agentbroker_module.n_tools; i++)
                if (strcmp(agentbroker_module.tools[i].name, tool) == 0)
                        return agentbroker_module.tools[i].output_schema;
        fail_msg("no tool fs.%s", tool);
        return NULL;
}

/* Default (structured_output: false): no tool declares an output schema, results are the
 * compact text alone, and it holds every fact, the cursor included. */
static void
test_compact(void **state)
{
        (void)state;
        for (size_t i = 0; i < agentbroker_module.n_tools; i++)
                assert_null(agentbroker_module.tools[i].output_schema);
        OK("list_dir", "{\"path\":\"src/b\"}", 65536);
        assert_string_equal(res.text, "path: src/b, total: 3\nblob.bin\t8\ndeep/\none.c\t18\n");
        assert_null(res.structured);
        OK("list_dir", "{\"path\":\"src/a\",\"limit\":2}", 65536);
        HAS("f00.c\t24\nf01.c\t24\n[more: call again with cursor=");
        assert_null(res.structured);
        char cur[128], args[256];
        assert_non_null(cursor_of(cur, sizeof(cur)));
        snprintf(args, sizeof(args), "{\"path\":\"src/a\",\"limit\":2,\"cursor\":\"%s\"}", cur);
        OK("list_dir", args, 65536);
        HAS("f02.c\t24\nf03.c\t24\n[more: call again with cursor=");
        OK("list_dir", "{\"path\":\"src\"}", 65536);
        HAS("out@\n");
        /* a page stays within the result size, and ends with its cursor */
        OK("list_dir", "{\"path\":\"src/a\"}", 400);
        assert_true(strlen(res.text) < 400);
        HAS("f00.c\t24\n");
        HAS("[more: call again with cursor=");
        OK("stat", "{\"path\":\"lines.txt\"}", 65536);
        HAS("path: lines.txt, type: file, size: 10500, mode: 0644, uid: ");
        HAS(", symlink: false");
        assert_null(res.structured);
        OK("search", "{\"path\":\"src\",\"pattern\":\"^one\"}", 65536);
        assert_string_equal(res.text,
                            "path: src, pattern: ^one, scanned: 32, not_searched: 0\nsrc/b/one.c\t18\n");
        assert_null(res.structured);
}

/* structured_output: true declares the output schemas and adds structuredContent beside the
 * compact text; with structured_text: json (and false) the text is the JSON; anything but a
 * boolean fails init with a message naming the key. */
static void
test_structured_output(void **state)
{
        char compact[4096];

        OK("list_dir", "{\"path\":\"src/a\"}", 65536);
        assert_true(strlen(res.text) < sizeof(compact));
        memcpy(compact, res.text, strlen(res.text) + 1);

        assert_int_equal(reinit(",\"structured_output\":true"), 0);
        assert_non_null(output_schema_of("list_dir"));
        assert_non_null(output_schema_of("stat"));
        assert_non_null(output_schema_of("search"));
        assert_null(output_schema_of("grep"));
        assert_null(output_schema_of("read_file"));
        OK("list_dir", "{\"path\":\"src/b\"}", 65536);
        assert_string_equal(res.text, "path: src/b, total: 3\nblob.bin\t8\ndeep/\none.c\t18\n");
        assert_non_null(res.structured);
        assert_non_null(strstr(res.structured, "\"name\":\"deep\",\"type\":\"directory\""));
        /* the same text as without structuredContent, which costs more than twice as much */
        OK("list_dir", "{\"path\":\"src/a\"}", 65536);
        assert_string_equal(res.text, compact);
        assert_true(strlen(res.text) * 2 < strlen(res.structured));
        OK("list_dir", "{\"path\":\"src/a\",\"limit\":2}", 65536);
        assert_non_null(strstr(res.structured, "\"next_cursor\":\""));
        OK("stat", "{\"path\":\"lines.txt\"}", 65536);
        assert_non_null(strstr(res.structured, "\"size\":10500"));

        /* structured_text: json without structuredContent: the JSON is the text */
        assert_int_equal(reinit(",\"structured_output\":false,\"structured_text\":\"json\""), 0);
        assert_null(output_schema_of("list_dir"));
        OK("list_dir", "{\"path\":\"src/b\"}", 65536);
        assert_null(res.structured);
        STARTS("{\"path\":\"src/b\",\"total\":3,\"entries\":[{\"name\":\"blob.bin\",\"type\":\"file\",\"size\":8}");

        /* with structured_output: true and structured_text: json the module adds no text:
         * the host adds the JSON */
        assert_int_equal(reinit(",\"structured_output\":true,\"structured_text\":\"json\""), 0);
        OK("stat", "{\"path\":\"lines.txt\"}", 65536);
        assert_string_equal(res.text, "");
        assert_non_null(res.structured);

        /* bad values */
        assert_int_equal(reinit(",\"structured_output\":\"yes\""), -EINVAL);
        assert_non_null(strstr(res.err.message, "structured_output must be true or false"));
        assert_int_equal(reinit(",\"structured_output\":1"), -EINVAL);
        assert_non_null(strstr(res.err.message, "structured_output must be true or false"));
        restore_config(state);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_confinement),     cmocka_unit_test(test_lines_head),
                cmocka_unit_test(test_lines_pages),     cmocka_unit_test(test_lines_tail),
                cmocka_unit_test(test_lines_odd_files), cmocka_unit_test(test_tree),
                cmocka_unit_test(test_tree_pages),      cmocka_unit_test(test_json),
                cmocka_unit_test(test_summarize),       cmocka_unit_test(test_grep_file),
                cmocka_unit_test(test_grep_cursor),     cmocka_unit_test(test_grep_dir),
                cmocka_unit_test(test_grep_odd),        cmocka_unit_test(test_tiny_results),
                cmocka_unit_test(test_compact),         cmocka_unit_test(test_structured_output),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
