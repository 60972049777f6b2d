/* SPDX-License-Identifier: MIT */
/* Unit tests for the policy loader and evaluator: the shipped default policy, a complete
 * example, drop-in merging, every error path with its file:line:column, rule precedence
 * and argument constraints. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/macros.h"
#include "common/utf8.h"
#include "policy/policy.h"

/* ---- helpers ---- */

static const char *
srcdir(void)
{
        const char *d = getenv("ABS_TOP_SRCDIR");
        if (d && *d)
                return d;
        return access("policy/default.yaml", R_OK) == 0 ? "." : "../..";
}

static char *
src_path(const char *rel)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", srcdir(), rel) > 0);
        return p;
}

static char *
read_all(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf;
        long n;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

/* Load yaml as "t.yaml"; it must load. */
static struct ab_policy *
load_ok(const char *yaml)
{
        struct ab_policy *p = NULL;
        char *err = NULL;
        int r = ab_policy_load_string("t.yaml", yaml, strlen(yaml), &p, &err);
        if (r != 0)
                fail_msg("unexpected errors (%d):\n%s", r, err ? err : "(none)");
        assert_non_null(p);
        assert_null(err);
        return p;
}

/* Load yaml (len bytes) as "t.yaml"; it must fail with -EINVAL and exactly these errors. */
static void
expect_errors_len(const char *yaml, size_t len, const char *expected)
{
        struct ab_policy *p = NULL;
        char *err = NULL;
        int r = ab_policy_load_string("t.yaml", yaml, len, &p, &err);

        assert_int_equal(r, -EINVAL);
        assert_null(p);
        assert_non_null(err);
        assert_string_equal(err, expected);
        free(err);
}

static void
expect_errors(const char *yaml, const char *expected)
{
        expect_errors_len(yaml, strlen(yaml), expected);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
        char *path = NULL;
        FILE *f;

        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        free(path);
}

static char *
make_tmpdir(void)
{
        char *d = strdup("/tmp/test_policy.XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void
rm_rf(const char *dir)
{
        char *cmd = NULL;
        assert_true(asprintf(&cmd, "rm -rf '%s'", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
}

/* 1-based line and column of the first occurrence of needle in text. */
static void
pos_of(const char *text, const char *needle, unsigned *line, unsigned *col)
{
        const char *at = strstr(text, needle);

        assert_non_null(at);
        *line = 1;
        *col = 1;
        for (const char *c = text; c < at; c++) {
                if (*c == '\n') {
                        (*line)++;
                        *col = 1;
                } else
                        (*col)++;
        }
}

/* Replace every occurrence of from by to in s (a new string). */
static char *
replace_all(const char *s, const char *from, const char *to)
{
        size_t n = 0, fl = strlen(from), tl = strlen(to);
        char *out, *o;

        for (const char *c = strstr(s, from); c; c = strstr(c + fl, from))
                n++;
        out = malloc(strlen(s) + n * tl + 1);
        assert_non_null(out);
        o = out;
        for (const char *c; (c = strstr(s, from)); s = c + fl) {
                memcpy(o, s, (size_t)(c - s));
                o += c - s;
                memcpy(o, to, tl);
                o += tl;
        }
        strcpy(o, s);
        return out;
}

/* ---- the default policy ---- */

/* The contents of policy/default.yaml as operators get them. */
static void
check_default_contents(const struct ab_policy *p)
{
        const struct ab_policy_secret *s;
        const struct ab_policy_tool *t;
        const struct ab_policy_module *m;
        const cJSON *roots;

        assert_int_equal(p->n_secrets, 3);
        s = ab_policy_find_secret(p, "sign_hmac");
        assert_non_null(s);
        assert_int_equal(s->source, AB_SRC_CREDENTIAL);
        assert_string_equal(s->ref, "agentbroker.sign_hmac");
        assert_int_equal(s->type, AB_SECRET_BYTES);
        s = ab_policy_find_secret(p, "identity");
        assert_non_null(s);
        assert_int_equal(s->source, AB_SRC_CREDENTIAL);
        assert_string_equal(s->ref, "agentbroker.identity");
        assert_int_equal(s->type, AB_SECRET_ED25519);
        assert_string_equal(p->tunnel.identity, "identity");
        s = ab_policy_find_secret(p, "sign_key");
        assert_non_null(s);
        assert_string_equal(s->ref, "agentbroker.sign_key");
        assert_int_equal(s->type, AB_SECRET_ED25519);

        t = ab_policy_find_tool(p, "echo.echo");
        assert_non_null(t);
        assert_true(t->allow);
        assert_int_equal(t->n_grants, 0);
        t = ab_policy_find_tool(p, "fs.read_file");
        assert_non_null(t);
        assert_true(t->allow);
        assert_int_equal(t->n_grants, 0);
        assert_non_null(ab_policy_find_tool(p, "fs.list_dir"));
        t = ab_policy_find_tool(p, "sign.jwt");
        assert_non_null(t);
        assert_true(t->allow);
        assert_int_equal(ab_policy_grant_ops(t, "sign_hmac"), AB_OP_SIGN);
        assert_int_equal(ab_policy_grant_ops(t, "sign_key"), AB_OP_SIGN | AB_OP_MINT_JWT);
        assert_int_equal(ab_policy_grant_ops(t, "identity"), 0);
        assert_null(ab_policy_find_tool(p, "shell.exec"));
        assert_null(ab_policy_find_tool(p, "echo"));

        m = ab_policy_find_module(p, "fs");
        assert_non_null(m);
        roots = cJSON_GetObjectItemCaseSensitive(m->config, "roots");
        assert_true(cJSON_IsArray(roots));
        assert_int_equal(cJSON_GetArraySize(roots), 1);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(roots, 0)), "/srv/agentbroker");

        assert_int_equal(p->tokens.ttl_s, 30);
        assert_int_equal(p->tokens.max_ttl_s, 300);
        assert_true(p->runs.max_open >= 1);
        assert_string_equal(p->jwt.issuer, "agentbroker");
        assert_string_equal(p->jwt.jwks_file, "/run/agentbroker/jwks.json");
        assert_int_equal(p->clients.n_uids, 1);
        assert_int_equal(p->clients.uids[0], 0);
        assert_int_equal(p->clients.n_gids, 1);
        assert_false(p->clients.has_admin_gid); /* least privilege: the hosts' group is not admin */
        assert_true(p->audit.failure_deny);
}

/* Load the shipped file. It must load wherever the agentbroker group exists (a fresh
 * install creates it); where it does not, the only errors are the two group names. The
 * hosts' group is not an admin group (least privilege: only root and the broker's uid). */
static void
test_default_policy_file(void **state)
{
        char *path = src_path("policy/default.yaml");
        char *text = read_all(path);
        struct ab_policy *p = NULL;
        char *err = NULL;
        int r = ab_policy_load(path, &p, &err);

        if (getgrnam("agentbroker")) {
                if (r != 0)
                        fail_msg("%s", err);
                assert_int_equal(r, 0);
                assert_int_equal(p->n_files, 1);
                assert_string_equal(p->files[0], path);
                check_default_contents(p);
                assert_int_equal(p->clients.gids[0], getgrnam("agentbroker")->gr_gid);
                assert_string_equal(p->broker.socket_group, "agentbroker");
        } else {
                unsigned l1, c1, l3, c3;
                char *expected = NULL;
                pos_of(text, "groups: [agentbroker]", &l1, &c1);
                pos_of(text, "socket_group: agentbroker", &l3, &c3);
                assert_true(asprintf(&expected,
                                     "%s:%u:%u: clients.groups: unknown group 'agentbroker'\n"
                                     "%s:%u:%u: broker.socket_group: unknown group 'agentbroker'\n",
                                     path, l1, c1 + 9, path, l3, c3 + 14) > 0);
                assert_int_equal(r, -EINVAL);
                assert_null(p);
                assert_string_equal(err, expected);
                free(expected);
        }
        ab_policy_free(p);
        free(err);
        free(text);
        free(path);
}

/* The default policy's contents, with the group names swapped for root so that this
 * runs on any machine. */
static void
test_default_policy_contents(void **state)
{
        char *path = src_path("policy/default.yaml");
        char *text = read_all(path);
        char *t1 = replace_all(text, "[agentbroker]", "[root]");
        char *t2 = replace_all(t1, "admin_group: agentbroker", "admin_group: root"); /* (none now) */
        char *t3 = replace_all(t2, "socket_group: agentbroker", "socket_group: root");
        struct ab_policy *p = load_ok(t3);

        check_default_contents(p);
        assert_int_equal(p->clients.gids[0], 0);
        ab_policy_free(p);
        free(t3);
        free(t2);
        free(t1);
        free(text);
        free(path);
}

/* ---- a complete example ---- */

static void
test_full_example(void **state)
{
        char *path = src_path("tests/unit/data/policy-full.yaml");
        struct ab_policy *p = NULL;
        char *err = NULL;
        const struct ab_policy_secret *s;
        const struct ab_policy_tool *t;
        const struct ab_policy_module *m;
        char *json;
        int r;

        r = ab_policy_load(path, &p, &err);
        if (r != 0)
                fail_msg("%s", err);
        assert_non_null(p);
        assert_int_equal(p->n_files, 1);

        assert_int_equal(p->n_secrets, 3);
        s = ab_policy_find_secret(p, "github_token");
        assert_int_equal(s->source, AB_SRC_CREDENTIAL);
        assert_string_equal(s->ref, "github_token");
        assert_int_equal(s->type, AB_SECRET_BYTES);
        assert_ptr_equal(s->where.file, p->files[0]);
        assert_int_equal(s->where.line, 4);
        assert_int_equal(s->where.column, 3);
        s = ab_policy_find_secret(p, "db_password");
        assert_int_equal(s->source, AB_SRC_FILE);
        assert_string_equal(s->ref, "/etc/agentbroker/secrets/db");
        s = ab_policy_find_secret(p, "signing_key");
        assert_int_equal(s->source, AB_SRC_ENV);
        assert_string_equal(s->ref, "AB_SIGNING_KEY");
        assert_int_equal(s->type, AB_SECRET_ED25519);
        assert_null(ab_policy_find_secret(p, "nope"));

        assert_int_equal(p->n_tools, 6);
        t = &p->tools[0];
        assert_string_equal(t->match, "echo.*");
        assert_true(t->is_glob);
        assert_true(t->allow);
        assert_true(t->rate == 10.0);
        assert_int_equal(t->burst, 10);
        assert_int_equal(t->max_result_bytes, 32768);
        assert_int_equal(t->max_args_bytes, 65536);
        assert_int_equal(t->timeout_ms, 30000);
        assert_int_equal(t->where.line, 9);
        assert_int_equal(t->where.column, 5);
        t = &p->tools[1];
        assert_true(t->rate == 10.0);
        assert_int_equal(t->burst, 20);
        assert_int_equal(t->max_result_bytes, 1048576);
        assert_int_equal(t->n_args, 1);
        assert_string_equal(t->args[0].name, "path");
        assert_string_equal(t->args[0].pattern, "^/srv/");
        assert_int_equal(t->args[0].max_length, 256);
        assert_true(t->args[0].required);
        assert_false(t->args[0].has_min);
        assert_null(t->args[0].enum_values);
        t = &p->tools[2];
        assert_string_equal(t->match, "fs.search");
        assert_false(t->is_glob);
        assert_false(t->allow);
        t = &p->tools[3];
        assert_int_equal(t->timeout_ms, 10000);
        assert_int_equal(ab_policy_grant_ops(t, "github_token"), AB_OP_READ);
        t = &p->tools[4];
        assert_int_equal(t->max_args_bytes, 16384);
        assert_int_equal(ab_policy_grant_ops(t, "db_password"), AB_OP_READ | AB_OP_SIGN);
        assert_int_equal(t->n_args, 2);
        assert_true(t->args[0].has_min && t->args[0].has_max);
        assert_true(t->args[0].min == 1.0 && t->args[0].max == 100.0);
        assert_int_equal(t->args[0].max_length, -1);
        assert_int_equal(t->args[1].n_enum, 2);
        assert_string_equal(t->args[1].enum_values[0], "fast");
        assert_string_equal(t->args[1].enum_values[1], "slow");
        t = &p->tools[5];
        assert_true(fabs(t->rate - 1.0 / 3600) < 1e-12);
        assert_int_equal(t->burst, 1);
        assert_int_equal(ab_policy_grant_ops(t, "signing_key"), AB_OP_SIGN | AB_OP_MINT_JWT);
        assert_int_equal(ab_policy_grant_ops(t, "github_token"), 0);

        assert_int_equal(p->n_modules, 2);
        m = ab_policy_find_module(p, "fs");
        json = cJSON_PrintUnformatted(m->config);
        assert_string_equal(json, "{\"roots\":[\"/srv/data\"],\"follow_symlinks\":false}");
        free(json);
        m = ab_policy_find_module(p, "db");
        json = cJSON_PrintUnformatted(m->config);
        assert_string_equal(json, "{\"dsn\":\"postgres://db.internal/app\",\"pool\":4,\"ratio\":0.5,"
                                  "\"port\":\"5432\",\"extra\":null}");
        free(json);
        assert_null(ab_policy_find_module(p, "echo"));

        assert_int_equal(p->runs.max_calls, 1000);
        assert_int_equal(p->runs.max_duration_s, 3600);
        assert_int_equal(p->runs.max_open, 8);
        assert_int_equal(p->tokens.ttl_s, 20);
        assert_int_equal(p->tokens.max_ttl_s, 120);
        assert_int_equal(p->tokens.max_uses, 4);
        assert_string_equal(p->jwt.issuer, "broker.example");
        assert_int_equal(p->jwt.max_ttl_s, 600);
        assert_string_equal(p->jwt.jwks_file, "/run/agentbroker/jwks.json");
        assert_int_equal(p->clients.n_uids, 3);
        assert_int_equal(p->clients.uids[0], 0);
        assert_int_equal(p->clients.uids[1], 1); /* daemon */
        assert_int_equal(p->clients.uids[2], 1234);
        assert_int_equal(p->clients.n_gids, 2);
        assert_int_equal(p->clients.gids[0], 4); /* adm */
        assert_int_equal(p->clients.gids[1], 65534);
        assert_true(p->clients.has_admin_gid);
        assert_int_equal(p->clients.admin_gid, 4);
        assert_false(p->audit.failure_deny);
        assert_string_equal(p->broker.socket_group, "nogroup");

        ab_policy_free(p);
        free(path);
}

/* Empty documents are valid deny-everything policies with the defaults. */
static void
test_empty_policy(void **state)
{
        static const char *const docs[] = { "", "# just a comment\n", "---\n", "~\n", "---\n...\n" };

        for (size_t i = 0; i < AB_ELEMENTSOF(docs); i++) {
                struct ab_policy *p = load_ok(docs[i]);
                assert_int_equal(p->n_files, 1);
                assert_string_equal(p->files[0], "t.yaml");
                assert_int_equal(p->n_secrets + p->n_tools + p->n_modules, 0);
                assert_null(ab_policy_find_tool(p, "echo.echo"));
                assert_int_equal(p->runs.max_calls, 0);
                assert_int_equal(p->runs.max_duration_s, 0);
                assert_int_equal(p->runs.max_open, 64);
                assert_int_equal(p->tokens.ttl_s, 30);
                assert_int_equal(p->tokens.max_ttl_s, 300);
                assert_int_equal(p->tokens.max_uses, 16);
                assert_string_equal(p->jwt.issuer, "agentbroker");
                assert_int_equal(p->jwt.max_ttl_s, 300);
                assert_null(p->jwt.jwks_file);
                assert_int_equal(p->clients.n_uids, 0);
                assert_int_equal(p->clients.n_gids, 0);
                assert_false(p->clients.has_admin_gid);
                assert_true(p->audit.failure_deny);
                assert_null(p->broker.socket_group);
                ab_policy_free(p);
        }
        /* empty sections too */
        ab_policy_free(
                load_ok("secrets:\ntools:\nmodules:\nruns:\ntokens:\njwt:\nclients:\naudit:\nbroker:\n"));
        ab_policy_free(
                load_ok("tools: []\nsecrets: {}\nclients:\n  uids: []\n  groups: ~\n  admin_group:\n"));
}

/* An error message longer than the loader's line limit is cut at a UTF-8 character boundary:
 * an unknown key of 300 two-byte characters puts a character across byte 400 of the message
 * ("unknown key '" is 13 bytes), and the cut text must still be well-formed UTF-8. */
static void
test_error_cut_utf8(void **state)
{
        char yaml[1024], *err = NULL;
        struct ab_policy *p = NULL;
        size_t o = 0;
        int r;

        (void)state;
        for (int i = 0; i < 300; i++)
                o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "\xc3\xa9");
        snprintf(yaml + o, sizeof(yaml) - o, ": 1\n");
        r = ab_policy_load_string("t.yaml", yaml, strlen(yaml), &p, &err);
        assert_int_equal(r, -EINVAL);
        assert_non_null(err);
        assert_non_null(strstr(err, "unknown key '\xc3\xa9"));
        assert_non_null(strstr(err, "\xc3\xa9...\n"));
        assert_true(ab_utf8_valid(err, strlen(err), NULL));
        free(err);
}

/* ---- errors: YAML structure ---- */

/* profiles: a run's sandbox (docs/policy.md, "profiles"). */
static void
test_profiles(void **state)
{
        struct ab_policy *p = load_ok(
                "secrets:\n  k: {env: K}\n"
                "profiles:\n"
                "  p:\n"
                "    mounts:\n"
                "      - {source: /srv/a, target: /data}\n"
                "      - {source: /srv/b, target: /out, read_only: false}\n"
                "    workspace: 64M\n    memory: 1G\n    pids: 100\n    cpu: 1.5\n"
                "    network: none\n    tools: [\"fs.*\"]\n    secrets: [k]\n    max_duration_s: 90\n"
                "  empty: {}\n");
        const struct ab_policy_profile *pr = ab_policy_find_profile(p, "p");

        assert_non_null(pr);
        assert_int_equal(pr->n_mounts, 2);
        assert_true(pr->mounts[0].read_only);
        assert_false(pr->mounts[1].read_only);
        assert_int_equal(pr->workspace_bytes, 64ULL << 20);
        assert_int_equal(pr->memory_bytes, 1ULL << 30);
        assert_int_equal(pr->pids, 100);
        assert_int_equal(pr->cpu_millis, 1500);
        assert_true(pr->network_none);
        assert_int_equal(pr->max_duration_s, 90);
        assert_int_equal(ab_policy_find_profile(p, "empty")->max_duration_s, 0);
        assert_true(ab_policy_profile_allows_tool(pr, "fs.read_file"));
        assert_false(ab_policy_profile_allows_tool(pr, "sign.jwt"));
        assert_true(ab_policy_profile_allows_secret(pr, "k"));
        assert_false(ab_policy_profile_allows_secret(pr, "other"));
        assert_true(ab_policy_profile_allows_tool(ab_policy_find_profile(p, "empty"), "sign.jwt"));
        assert_null(ab_policy_find_profile(p, "nope"));
        ab_policy_free(p);

        expect_errors(
                "profiles:\n  p: {mounts: [{source: /a, target: /proc/x}]}\n",
                "t.yaml:2:37: a mount's target may not be /, /usr, /lib*, /etc, /dev, /proc, /sys, /run, "
                "/tmp or /workspace, nor below them (the sandbox provides those)\n");
        expect_errors("profiles:\n  p: {mounts: [{source: /a/../etc, target: /x}]}\n",
                      "t.yaml:2:25: a mount's source must be an absolute path without '.', '..' or '//' "
                      "components\n");
        expect_errors(
                "profiles:\n  p: {workspace: 12X}\n",
                "t.yaml:2:18: workspace must be a size in bytes (an integer, or with K, M, G or T), at most 1T\n");
        expect_errors(
                "profiles:\n  p: {network: host}\n",
                "t.yaml:2:16: network must be none (a network namespace with nothing in it; egress is not "
                "available yet)\n");
        expect_errors("profiles:\n  p: {secrets: [nope]}\n",
                      "t.yaml:2:3: profile 'p': unknown secret 'nope'\n");
        expect_errors("profiles:\n  p: {max_duration_s: -1}\n",
                      "t.yaml:2:23: max_duration_s must be between 0 and 31536000\n");
        expect_errors("profiles:\n  p: {cpu: 0.001}\n",
                      "t.yaml:2:12: cpu must be a number of CPUs: 0 (no limit), or 0.01 to 1024\n");
}

static void
test_errors_yaml(void **state)
{
        expect_errors("a: b: c\n",
                      "t.yaml:1:5: YAML syntax error: mapping values are not allowed in this context\n");
        expect_errors("tools:\n  - match: x\n   allow: true\n",
                      "t.yaml:3:4: YAML syntax error: did not find expected '-' indicator "
                      "(while parsing a block collection at line 2 column 3)\n");
        expect_errors("tokens: {ttl_s: 5\n",
                      "t.yaml:2:1: YAML syntax error: did not find expected ',' or '}' "
                      "(while parsing a flow mapping at line 1 column 9)\n");
        expect_errors("audit: {failure: \"deny}\n",
                      "t.yaml:2:1: YAML syntax error: found unexpected end of stream "
                      "(while scanning a quoted scalar at line 1 column 18)\n");
        expect_errors("tokens:\n\tttl_s: 5\n",
                      "t.yaml:2:1: YAML syntax error: found character that cannot start any token "
                      "(while scanning for the next token at line 2 column 1)\n");
        /* invalid UTF-8 and control characters: the reader only knows the byte offset */
        expect_errors("audit:\n  failure: \xff\n", "t.yaml:2:12: YAML error: invalid leading UTF-8 octet\n");
        expect_errors_len("audit:\n  fail\0ure: deny\n", 22,
                          "t.yaml:2:7: YAML error: control characters are not allowed\n");
        /* one document per file */
        expect_errors("tokens: {ttl_s: 5}\n---\nruns: {}\n",
                      "t.yaml:2:1: more than one YAML document in a policy file\n");
        /* aliases are refused (billion laughs), and parsing goes on */
        expect_errors("runs:\n  max_calls: &n 5\n  max_open: *n\n",
                      "t.yaml:3:13: YAML aliases are not allowed\n");
        expect_errors(
                "a: &a [x, x]\nb: &b [*a, *a]\n",
                "t.yaml:2:8: YAML aliases are not allowed\n"
                "t.yaml:2:12: YAML aliases are not allowed\n"
                "t.yaml:1:1: unknown key 'a' in the policy (expected secrets, tools, modules, servers, profiles, runs, "
                "tokens, jwt, clients, audit, broker, tunnel)\n"
                "t.yaml:2:1: unknown key 'b' in the policy (expected secrets, tools, modules, servers, profiles, runs, "
                "tokens, jwt, clients, audit, broker, tunnel)\n");
        /* tags */
        expect_errors("tokens: !!map {ttl_s: !!int 5, max_uses: !foo 3}\n",
                      "t.yaml:1:42: unsupported YAML tag '!foo'\n");
        expect_errors("tokens: !x {ttl_s: 5}\n", "t.yaml:1:9: unsupported YAML tag '!x'\n");
        expect_errors("tokens: {ttl_s: !!str 5}\n",
                      "t.yaml:1:17: tokens.ttl_s must be an integer, not a string\n");
        /* duplicate keys, in any mapping */
        expect_errors("tokens: {ttl_s: 5}\nruns: {}\ntokens: {ttl_s: 6}\n",
                      "t.yaml:3:1: duplicate key 'tokens' (first at line 1 column 1)\n");
        expect_errors("modules:\n  fs: {a: 1, b: 2, a: 3}\n",
                      "t.yaml:2:20: duplicate key 'a' (first at line 2 column 8)\n");
        /* a NUL inside a string */
        expect_errors("audit: {failure: \"de\\0ny\"}\n", "t.yaml:1:18: NUL character in a string\n");
        /* non-string keys */
        expect_errors("? [a]\n: b\n", "t.yaml:1:3: mapping keys must be strings, not a list\n");
        /* the root must be a mapping */
        expect_errors("[1, 2]\n", "t.yaml:1:1: the policy must be a mapping, not a list\n");
        expect_errors("hello\n", "t.yaml:1:1: the policy must be a mapping, not a string\n");
        /* error messages stay on one line */
        expect_errors(
                "\"a\\nb\": 1\n",
                "t.yaml:1:1: unknown key 'a?b' in the policy (expected secrets, tools, modules, servers, profiles, runs, "
                "tokens, jwt, clients, audit, broker, tunnel)\n");
}

/* ---- errors: limits ---- */

static char *
repeat(const char *head, const char *item, const char *sep, size_t n, const char *tail)
{
        size_t len = strlen(head) + n * (strlen(item) + strlen(sep)) + strlen(tail) + 1;
        char *s = malloc(len), *o;

        assert_non_null(s);
        o = stpcpy(s, head);
        for (size_t i = 0; i < n; i++) {
                o = stpcpy(o, item);
                if (i + 1 < n)
                        o = stpcpy(o, sep);
        }
        strcpy(o, tail);
        return s;
}

static void
test_errors_limits(void **state)
{
        struct ab_policy *p;
        char *s, *inner, *closing;
        char *err = NULL;

        /* nesting: modules (2), m's config (3), then 13 more levels = 16: fine */
        inner = repeat("", "{a: ", "", 14, "1");
        closing = repeat("", "}", "", 14, "}\n");
        assert_true(asprintf(&s, "modules: {m: %s%s", inner, closing) > 0);
        ab_policy_free(load_ok(s));
        free(s);
        free(inner);
        free(closing);
        /* 17 levels: refused at the 17th opening */
        inner = repeat("", "{a: ", "", 15, "1");
        closing = repeat("", "}", "", 15, "}\n");
        assert_true(asprintf(&s, "modules: {m: %s%s", inner, closing) > 0);
        expect_errors(s, "t.yaml:1:70: nesting deeper than 16 levels\n");
        free(s);
        free(inner);
        free(closing);
        /* lists nest too: the parser stops at the limit however deep the document goes */
        s = repeat("tokens: ", "[", "", 100000, "\n");
        expect_errors(s, "t.yaml:1:24: nesting deeper than 16 levels\n");
        free(s);

        /* items: 4096 list entries are fine, 4097 are not */
        s = repeat("clients: {uids: [", "0", ",", 4096, "]}\n");
        p = load_ok(s);
        assert_int_equal(p->clients.n_uids, 4096);
        ab_policy_free(p);
        free(s);
        s = repeat("clients: {uids: [", "0", ",", 4097, "]}\n");
        expect_errors(s, "t.yaml:1:8210: more than 4096 entries in one list\n");
        free(s);
        /* and mappings: 4097 keys (k0000 ... k4096) */
        s = malloc(4097 * 16 + 64);
        assert_non_null(s);
        strcpy(s, "modules:\n  m:\n");
        for (int i = 0; i <= 4096; i++)
                sprintf(s + strlen(s), "    k%04d: 1\n", i);
        expect_errors(s, "t.yaml:4099:5: more than 4096 entries in one mapping\n");
        free(s);

        /* file size */
        s = malloc(AB_POLICY_MAX_FILE + 2);
        assert_non_null(s);
        memset(s, '#', AB_POLICY_MAX_FILE);
        s[AB_POLICY_MAX_FILE] = '\0';
        ab_policy_free(load_ok(s));
        s[AB_POLICY_MAX_FILE] = '#';
        s[AB_POLICY_MAX_FILE + 1] = '\0';
        expect_errors(s, "t.yaml: file is larger than 1048576 bytes\n");
        free(s);

        /* at most 1000 errors are listed, then one line says the rest are not shown */
        s = repeat("tools: [", "{}", ",", 1200, "]\n");
        assert_int_equal(ab_policy_load_string("t.yaml", s, strlen(s), &p, &err), -EINVAL);
        {
                size_t lines = 0;
                for (const char *c = err; *c; c++)
                        lines += *c == '\n';
                assert_int_equal(lines, 1001);
                assert_non_null(strstr(err, "t.yaml:1:9: tool rule without match\n"));
                assert_non_null(strstr(err, "\nt.yaml: too many errors, the rest are not shown\n"));
        }
        free(err);
        free(s);

        /* long values are cut in messages */
        s = repeat("", "x", "", 1000, ": 1\n");
        assert_int_equal(ab_policy_load_string("t.yaml", s, strlen(s), &p, &err), -EINVAL);
        assert_true(strlen(err) < 450);
        assert_non_null(strstr(err, "...\n"));
        free(err);
        free(s);
}

/* ---- errors: the sections ---- */

static void
test_errors_top(void **state)
{
        expect_errors(
                "secret: {}\n",
                "t.yaml:1:1: unknown key 'secret' in the policy (expected secrets, tools, modules, servers, "
                "profiles, runs, tokens, jwt, clients, audit, broker, tunnel)\n");
        expect_errors("secrets: [a]\ntools: {a: 1}\nmodules: 3\nruns: [1]\n",
                      "t.yaml:1:10: secrets must be a mapping, not a list\n"
                      "t.yaml:2:8: tools must be a list, not a mapping\n"
                      "t.yaml:3:10: modules must be a mapping, not a string\n"
                      "t.yaml:4:7: runs must be a mapping, not a list\n");
}

static void
test_errors_secrets(void **state)
{
        expect_errors(
                "secrets:\n"
                "  a: {credential: a, file: /x}\n"
                "  b: {type: rsa}\n"
                "  c: {credential: ../x}\n"
                "  d: {file: rel}\n"
                "  e: {env: 1BAD}\n"
                "  \"bad name\": {env: X}\n"
                "  f: {credential: f, colour: red}\n"
                "  g: [credential]\n"
                "  h:\n"
                "  i: {credential: \"\"}\n"
                "  j: {env: [X]}\n",
                "t.yaml:2:22: secret 'a' has more than one source (credential and file)\n"
                "t.yaml:3:13: type must be bytes or ed25519, not 'rsa'\n"
                "t.yaml:3:3: secret 'b' needs a source: credential, file or env\n"
                "t.yaml:4:19: credential must be a file name without '/'\n"
                "t.yaml:5:13: file must be an absolute path\n"
                "t.yaml:6:12: env must be a variable name ([A-Za-z_][A-Za-z0-9_]*)\n"
                "t.yaml:7:3: bad secret name 'bad name' (letters, digits, '_', '-', '.'; at most 128 bytes)\n"
                "t.yaml:8:22: unknown key 'colour' in a secret (expected credential, file, env, type)\n"
                "t.yaml:9:6: a secret must be a mapping, not a list\n"
                "t.yaml:10:3: secret 'h' needs a source: credential, file or env\n"
                "t.yaml:11:19: credential must not be empty\n"
                "t.yaml:12:12: env must be a string, not a list\n");
}

/* Grants: unknown secrets, unknown operations, operations the type does not allow. */
static void
test_errors_grants(void **state)
{
        expect_errors(
                "secrets:\n"
                "  k: {env: K, type: ed25519}\n"
                "  h: {env: H}\n"
                "tools:\n"
                "  - match: t.one\n"
                "    secrets:\n"
                "      k: [read, sign, mint-jwt]\n"
                "      h: [read, sign, mint-jwt, fly]\n"
                "      nope: [read]\n"
                "      e: []\n"
                "      b: read\n"
                "      \"x y\": [read]\n"
                "  - match: t.two\n"
                "    secrets: [k]\n",
                "t.yaml:8:33: unknown operation 'fly' (expected read, sign, mint-jwt or inject)\n"
                "t.yaml:10:10: no operations granted on secret 'e'\n"
                "t.yaml:11:10: operations for secret 'b' must be a list such as [read], not a string\n"
                "t.yaml:12:7: bad secret name 'x y'\n"
                "t.yaml:14:14: a tool's secrets must be a mapping, not a list\n"
                "t.yaml:7:11: operation 'read' is not allowed on ed25519 key 'k' (only sign, mint-jwt)\n"
                "t.yaml:8:23: operation 'mint-jwt' needs an ed25519 key; secret 'h' is bytes\n"
                "t.yaml:9:7: unknown secret 'nope'\n"
                "t.yaml:10:7: unknown secret 'e'\n"
                "t.yaml:11:7: unknown secret 'b'\n");
}

static void
test_errors_tools(void **state)
{
        expect_errors(
                "tools:\n"
                "  - match: \"a[b\"\n"
                "    rate: 0/s\n"
                "  - allow: maybe\n"
                "  - match: x\n"
                "    burst: 3\n"
                "  - match: \"a b\"\n"
                "    rate: 5/fortnight\n"
                "  - match: \"]x\"\n"
                "    rate: -1/s\n"
                "  - match: \"\"\n"
                "    rate: 2000000/s\n"
                "  - match: \"[a/]*\"\n"
                "    max_result_bytes: 100\n"
                "    max_args_bytes: 1\n"
                "    timeout_ms: 0\n"
                "    burst: 0\n"
                "    rate: [1]\n"
                "  - just-a-string\n"
                "  - match: [a]\n"
                "    matc: y\n"
                "    max_result_bytes: 16777217\n"
                "    timeout_ms: 3600001\n"
                "    max_args_bytes: 1.5\n",
                "t.yaml:2:12: bad tool name or glob 'a[b': has an unterminated '['\n"
                "t.yaml:3:11: rate must be more than 0 and at most 1000000/s\n"
                "t.yaml:4:12: allow must be true or false\n"
                "t.yaml:4:5: tool rule without match\n"
                "t.yaml:6:5: burst without rate\n"
                "t.yaml:7:12: bad tool name or glob 'a b': has a character not allowed in a tool name\n"
                "t.yaml:8:11: rate must look like 10/s, 600/min or 1/h\n"
                "t.yaml:9:12: bad tool name or glob ']x': has ']' without '['\n"
                "t.yaml:10:11: rate must be more than 0 and at most 1000000/s\n"
                "t.yaml:11:12: match must not be empty\n"
                "t.yaml:12:11: rate must be more than 0 and at most 1000000/s\n"
                "t.yaml:13:12: bad tool name or glob '[a/]*': has a character not allowed in a bracket expression\n"
                "t.yaml:14:23: max_result_bytes must be between 256 and 16777216\n"
                "t.yaml:15:21: max_args_bytes must be between 2 and 16777216\n"
                "t.yaml:16:17: timeout_ms must be between 1 and 3600000\n"
                "t.yaml:17:12: burst must be between 1 and 1000000\n"
                "t.yaml:18:11: rate must look like 10/s, 600/min or 1/h\n"
                "t.yaml:19:5: each entry of tools must be a mapping, not a string\n"
                "t.yaml:20:12: match must be a string, not a list\n"
                "t.yaml:21:5: unknown key 'matc' in a tool rule (expected match, allow, rate, burst, "
                "max_result_bytes, max_args_bytes, timeout_ms, secrets, args, egress, rate_scope)\n"
                "t.yaml:22:23: max_result_bytes must be between 256 and 16777216\n"
                "t.yaml:23:17: timeout_ms must be between 1 and 3600000\n"
                "t.yaml:24:21: max_args_bytes must be an integer, not a decimal number\n");
        /* a name longer than 128 bytes */
        {
                char *s = repeat("tools: [{match: ", "a", "", 129, "}]\n");
                expect_errors(s, "t.yaml:1:17: bad tool name or glob "
                                 "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa': "
                                 "is too long\n");
                free(s);
        }
}

static void
test_errors_args(void **state)
{
        expect_errors(
                "tools:\n"
                "  - match: x\n"
                "    args:\n"
                "      p: {pattern: \"([a-z]\", max_length: -1, required: yes, min: 5, max: 1, enum: []}\n"
                "      q: {pattern: \"(a{99}){9999}\", foo: 1}\n"
                "      r: {pattern: \"(a)\\\\1\", min: abc, max: \"7\"}\n"
                "      s: {enum: [a, [b], ~]}\n"
                "      t: [pattern]\n"
                "      \"\": {required: true}\n"
                "      u: {min: 1e999, max_length: 99999999999999999999}\n"
                "  - match: y\n"
                "    args: [p]\n",
                "t.yaml:4:20: bad pattern: missing closing parenthesis at offset 6\n"
                "t.yaml:4:42: max_length must be between 0 and 16777216\n"
                "t.yaml:4:56: required must be true or false\n"
                "t.yaml:4:83: enum must be a non-empty list of strings\n"
                "t.yaml:4:74: max (1) is below min (5) for argument 'p'\n"
                "t.yaml:5:20: bad pattern: regular expression is too large at offset 13\n"
                "t.yaml:5:37: unknown key 'foo' in an argument constraint (expected pattern, "
                "max_length, required, min, max, enum, beneath)\n"
                "t.yaml:6:20: bad pattern: back-references are not allowed\n"
                "t.yaml:6:35: min must be a number\n"
                "t.yaml:6:45: max must be a number\n"
                "t.yaml:7:21: an enum value must be a string, not a list\n"
                "t.yaml:7:26: an enum value must be a string, not empty\n"
                "t.yaml:8:10: an argument constraint must be a mapping, not a list\n"
                "t.yaml:9:7: argument names must have 1 to 128 bytes\n"
                "t.yaml:10:16: min must be a number\n"
                "t.yaml:10:35: max_length must be between 0 and 16777216\n"
                "t.yaml:12:11: args must be a mapping, not a list\n");
        /* a pattern longer than 1024 bytes */
        {
                char *s = repeat("tools: [{match: x, args: {a: {pattern: ", "a", "", 1025, "}}}]\n");
                expect_errors(s, "t.yaml:1:40: pattern is longer than 1024 bytes\n");
                free(s);
        }
}

static void
test_errors_modules(void **state)
{
        expect_errors("modules:\n"
                      "  fs: [1]\n"
                      "  \"a.b\": {}\n"
                      "  ok: {? [x] : 1}\n"
                      "  also: 5\n",
                      "t.yaml:2:7: a module's configuration must be a mapping, not a list\n"
                      "t.yaml:3:3: bad module name 'a.b' (letters, digits, '_', '-'; at most 128 bytes)\n"
                      "t.yaml:4:10: mapping keys must be strings, not a list\n"
                      "t.yaml:5:9: a module's configuration must be a mapping, not a string\n");
}

/* servers: an existing MCP server, its environment and secrets, checked with positions. */
static void
test_servers(void **state)
{
        struct ab_policy *p = load_ok("secrets:\n"
                                      "  key: { env: K }\n"
                                      "servers:\n"
                                      "  fs:\n"
                                      "    command: /usr/bin/node\n"
                                      "    args: [/srv/server.js, /data]\n"
                                      "    env: { LOG: debug, N: \"1\" }\n"
                                      "    cwd: /srv\n"
                                      "    tools: [read_file, list_directory]\n"
                                      "    secrets: { API_KEY: key }\n"
                                      "    start: lazy\n"
                                      "    start_timeout_ms: 2000\n"
                                      "  bare:\n"
                                      "    command: /bin/srv\n");
        const struct ab_policy_server *s = ab_policy_find_server(p, "fs");

        assert_non_null(s);
        assert_string_equal(s->command, "/usr/bin/node");
        assert_int_equal(s->n_args, 2);
        assert_string_equal(s->args[1], "/data");
        assert_int_equal(s->n_env, 2);
        assert_string_equal(s->env[1].name, "N");
        assert_string_equal(s->env[1].value, "1");
        assert_string_equal(s->cwd, "/srv");
        assert_int_equal(s->n_tools, 2);
        assert_int_equal(s->n_secrets, 1);
        assert_string_equal(s->secrets[0].var, "API_KEY");
        assert_string_equal(s->secrets[0].secret, "key");
        assert_true(s->lazy);
        assert_int_equal(s->start_timeout_ms, 2000);
        s = ab_policy_find_server(p, "bare");
        assert_non_null(s);
        assert_int_equal(s->n_tools, 0); /* default: no tool exposed */
        assert_false(s->lazy);
        assert_int_equal(s->start_timeout_ms, 10000);
        assert_null(ab_policy_find_server(p, "nope"));
        ab_policy_free(p);

        expect_errors(
                "secrets:\n"
                "  ed: { env: E, type: ed25519 }\n"
                "modules:\n"
                "  m: {}\n"
                "servers:\n"
                "  a:\n"
                "    command: node\n"
                "    args: [x, [y]]\n"
                "    env: { 1X: a, B: [1] }\n"
                "    tools: [\"bad.name\"]\n"
                "    secrets: { B: nope, C: ed }\n"
                "    start: later\n"
                "    start_timeout_ms: 0\n"
                "    cwd: rel\n"
                "    extra: 1\n"
                "  m:\n"
                "    command: /bin/m\n"
                "  \"b.c\": { command: /x }\n"
                "  d: {}\n",
                "t.yaml:7:14: command must be an absolute path\n"
                "t.yaml:8:15: args must be a string, not a list\n"
                "t.yaml:9:12: bad environment variable name '1X' ([A-Za-z_][A-Za-z0-9_]*)\n"
                "t.yaml:9:22: env values must be strings, not a list\n"
                "t.yaml:10:13: bad tool name 'bad.name' (letters, digits, '_', '-')\n"
                "t.yaml:12:12: start must be host or lazy, not 'later'\n"
                "t.yaml:13:23: start_timeout_ms must be between 1 and 300000\n"
                "t.yaml:14:10: cwd must be an absolute path\n"
                "t.yaml:15:5: unknown key 'extra' in a server (expected command, args, env, cwd, tools, "
                "secrets, start, start_timeout_ms)\n"
                "t.yaml:6:3: server 'a' needs a command\n"
                "t.yaml:18:3: bad server name 'b.c' (letters, digits, '_', '-'; at most 48 bytes)\n"
                "t.yaml:19:3: server 'd' needs a command\n"
                "t.yaml:11:19: unknown secret 'nope'\n"
                "t.yaml:11:28: secret 'ed' is an ed25519 key: only bytes secrets can be passed to a server\n"
                "t.yaml:16:3: server 'm' has the name of a module in modules\n");
}

static void
test_errors_scalar_sections(void **state)
{
        expect_errors(
                "runs: {max_open: 0, max_calls: -1, max_duration_s: 31536001, max: 1}\n"
                "tokens: {ttl_s: abc, max_ttl_s: \"30\", max_uses: 0}\n"
                "jwt: {jwks_file: relative, issuer: \"\", max_ttl_s: 86401, iss: x}\n"
                "audit: {failure: maybe, mode: x}\n"
                "broker: {socket_group: nosuchgroup-xyz, socket: /x}\n"
                "clients: {uids: [0, nosuchuser-xyz, 4294967295, 4294967294], groups: adm, "
                "admin_group: nosuchgroup-xyz, users: []}\n",
                "t.yaml:1:18: runs.max_open must be between 1 and 65536\n"
                "t.yaml:1:32: runs.max_calls must be between 0 and 1000000000\n"
                "t.yaml:1:52: runs.max_duration_s must be between 0 and 31536000\n"
                "t.yaml:1:62: unknown key 'max' in runs (expected max_calls, max_duration_s, max_open)\n"
                "t.yaml:2:17: tokens.ttl_s must be an integer, not a string\n"
                "t.yaml:2:33: tokens.max_ttl_s must be an integer, not a string\n"
                "t.yaml:2:49: tokens.max_uses must be between 1 and 1000000\n"
                "t.yaml:3:18: jwt.jwks_file must be an absolute path\n"
                "t.yaml:3:36: jwt.issuer must not be empty\n"
                "t.yaml:3:51: jwt.max_ttl_s must be between 1 and 86400\n"
                "t.yaml:3:58: unknown key 'iss' in jwt (expected issuer, max_ttl_s, jwks_file)\n"
                "t.yaml:4:18: audit.failure must be deny or ignore, not 'maybe'\n"
                "t.yaml:4:25: unknown key 'mode' in audit (expected failure)\n"
                "t.yaml:5:24: broker.socket_group: unknown group 'nosuchgroup-xyz'\n"
                "t.yaml:5:41: unknown key 'socket' in broker (expected socket_group, max_connections_per_uid)\n"
                "t.yaml:6:21: clients.uids: unknown user 'nosuchuser-xyz'\n"
                "t.yaml:6:37: clients.uids: id 4294967295 is out of range\n"
                "t.yaml:6:70: clients.groups must be a list, not a string\n"
                "t.yaml:6:88: clients.admin_group: unknown group 'nosuchgroup-xyz'\n"
                "t.yaml:6:105: unknown key 'users' in clients (expected uids, groups, admin_group)\n");
        expect_errors("tokens: {ttl_s: 500}\n",
                      "t.yaml:1:17: tokens.ttl_s (500) is above tokens.max_ttl_s (300)\n");
        expect_errors("tokens: {max_ttl_s: 10}\n",
                      "t.yaml:1:21: tokens.max_ttl_s (10) is below the default tokens.ttl_s (30)\n");
        expect_errors("tokens: {ttl_s: 1.5, max_uses: [1], max_ttl_s: {}}\n",
                      "t.yaml:1:17: tokens.ttl_s must be an integer, not a decimal number\n"
                      "t.yaml:1:32: tokens.max_uses must be an integer, not a list\n"
                      "t.yaml:1:48: tokens.max_ttl_s must be an integer, not a mapping\n");
        expect_errors("tokens: {ttl_s: }\naudit: {failure: [deny]}\n",
                      "t.yaml:1:17: tokens.ttl_s must be an integer, not empty\n"
                      "t.yaml:2:18: audit.failure must be a string, not a list\n");
        /* booleans are true/false only */
        expect_errors("tools: [{match: x, allow: yes}]\n", "t.yaml:1:27: allow must be true or false\n");
        expect_errors("tools: [{match: x, allow: \"true\"}]\n",
                      "t.yaml:1:27: allow must be true or false\n");
}

/* A few accepted forms: rates, numeric ids, empty values that reset, bool spellings. */
static void
test_accepted_forms(void **state)
{
        struct ab_policy *p = load_ok("tools:\n"
                                      "  - {match: a, rate: 2}\n"
                                      "  - {match: b, rate: 0.5/s}\n"
                                      "  - {match: c, rate: 120/minute}\n"
                                      "  - {match: d, rate: 7200/hour, burst: 5}\n"
                                      "  - {match: e, rate: 3/sec, allow: FALSE}\n"
                                      "  - {match: \"f[!x-z]?\", allow: True}\n"
                                      "jwt: {jwks_file: ~}\n"
                                      "clients: {uids: [\"0\", root], groups: [\"0\"], admin_group: 4}\n"
                                      "broker: {socket_group: 0}\n");
        assert_true(p->tools[0].rate == 2.0);
        assert_int_equal(p->tools[0].burst, 2);
        assert_true(p->tools[1].rate == 0.5);
        assert_int_equal(p->tools[1].burst, 1);
        assert_true(p->tools[2].rate == 2.0);
        assert_true(p->tools[3].rate == 2.0);
        assert_int_equal(p->tools[3].burst, 5);
        assert_true(p->tools[4].rate == 3.0);
        assert_false(p->tools[4].allow);
        assert_true(p->tools[5].is_glob);
        assert_true(p->tools[5].allow);
        assert_null(p->jwt.jwks_file);
        assert_int_equal(p->clients.n_uids, 2);
        assert_int_equal(p->clients.uids[0], 0);
        assert_int_equal(p->clients.uids[1], 0);
        assert_int_equal(p->clients.gids[0], 0);
        assert_int_equal(p->clients.admin_gid, 4);
        assert_string_equal(p->broker.socket_group, "0");
        assert_non_null(ab_policy_find_tool(p, "fa1"));
        assert_null(ab_policy_find_tool(p, "fy1"));
        ab_policy_free(p);
}

/* ---- drop-ins ---- */

struct dropin_dir {
        char *dir, *main, *d;
};

static struct dropin_dir
make_dropin_dir(const char *main_text)
{
        struct dropin_dir t;

        t.dir = make_tmpdir();
        assert_true(asprintf(&t.main, "%s/policy.yaml", t.dir) > 0);
        assert_true(asprintf(&t.d, "%s/policy.d", t.dir) > 0);
        assert_int_equal(mkdir(t.d, 0755), 0);
        write_file(t.dir, "policy.yaml", main_text);
        return t;
}

static void
free_dropin_dir(struct dropin_dir *t)
{
        rm_rf(t->dir);
        free(t->dir);
        free(t->main);
        free(t->d);
}

/* Load the directory's policy; it must fail with -EINVAL and exactly expected, where
 * every "%s" is replaced by the directory. */
static void
expect_dir_errors(const struct dropin_dir *t, const char *expected_tmpl)
{
        struct ab_policy *p = NULL;
        char *err = NULL;
        char *expected = replace_all(expected_tmpl, "%s", t->dir);
        int r = ab_policy_load(t->main, &p, &err);

        assert_int_equal(r, -EINVAL);
        assert_null(p);
        assert_string_equal(err, expected);
        free(expected);
        free(err);
}

static void
test_dropins_merge(void **state)
{
        struct dropin_dir t = make_dropin_dir("secrets:\n"
                                              "  s1: {credential: s1}\n"
                                              "tools:\n"
                                              "  - match: \"a.*\"\n"
                                              "    secrets: {s2: [sign, mint-jwt]}\n"
                                              "tokens: {ttl_s: 10, max_ttl_s: 60}\n"
                                              "clients: {uids: [0, 1]}\n"
                                              "modules:\n"
                                              "  fs: {roots: [/a]}\n");
        struct ab_policy *p = NULL;
        char *err = NULL, *sub = NULL, *link = NULL;
        int r;

        /* s2 is defined in a later drop-in than the main file that grants it: fine */
        write_file(t.d, "20-b.yaml",
                   "secrets:\n  s2: {env: S2, type: ed25519}\n"
                   "tools:\n  - match: \"b.*\"\n    secrets: {s1: [read]}\n"
                   "tokens: {ttl_s: 45}\n"
                   "modules:\n  db: {}\n");
        write_file(t.d, "10-a.yaml",
                   "tools:\n  - match: \"a.x\"\n"
                   "tokens: {max_ttl_s: 120}\n"
                   "clients: {uids: [2]}\n");
        /* not loaded: wrong suffix, hidden, a directory, a symlink to /dev/null */
        write_file(t.d, "notes.txt", "garbage: [\n");
        write_file(t.d, ".hidden.yaml", "garbage: [\n");
        write_file(t.d, "30-c.yaml.bak", "garbage: [\n");
        assert_true(asprintf(&sub, "%s/sub.yaml", t.d) > 0);
        assert_int_equal(mkdir(sub, 0755), 0);
        assert_true(asprintf(&link, "%s/40-masked.yaml", t.d) > 0);
        assert_int_equal(symlink("/dev/null", link), 0);

        r = ab_policy_load(t.main, &p, &err);
        if (r != 0)
                fail_msg("%s", err);
        assert_int_equal(p->n_files, 3);
        assert_string_equal(p->files[0], t.main);
        assert_true(strstr(p->files[1], "/policy.d/10-a.yaml") != NULL);
        assert_true(strstr(p->files[2], "/policy.d/20-b.yaml") != NULL);
        /* tools append in file order */
        assert_int_equal(p->n_tools, 3);
        assert_string_equal(p->tools[0].match, "a.*");
        assert_string_equal(p->tools[1].match, "a.x");
        assert_string_equal(p->tools[2].match, "b.*");
        assert_ptr_equal(p->tools[1].where.file, p->files[1]);
        assert_int_equal(p->tools[2].where.line, 4);
        /* mappings merge */
        assert_int_equal(p->n_secrets, 2);
        assert_ptr_equal(ab_policy_find_secret(p, "s2")->where.file, p->files[2]);
        assert_int_equal(p->n_modules, 2);
        /* scalar keys: the later file wins, keys it does not set stay */
        assert_int_equal(p->tokens.ttl_s, 45);
        assert_int_equal(p->tokens.max_ttl_s, 120);
        assert_int_equal(p->tokens.max_uses, 16);
        assert_int_equal(p->clients.n_uids, 1);
        assert_int_equal(p->clients.uids[0], 2);
        ab_policy_free(p);

        /* the merged ttl is checked against the merged ceiling, at the later file's value */
        write_file(t.d, "50-d.yaml", "tokens: {ttl_s: 200}\n");
        expect_dir_errors(
                &t, "%s/policy.d/50-d.yaml:1:17: tokens.ttl_s (200) is above tokens.max_ttl_s (120)\n");

        free(sub);
        free(link);
        free_dropin_dir(&t);
}

static void
test_dropins_errors(void **state)
{
        struct dropin_dir t = make_dropin_dir("secrets:\n"
                                              "  s1: {credential: s1}\n"
                                              "  k: {credential: k, type: ed25519}\n"
                                              "modules:\n"
                                              "  fs: {roots: [/a]}\n"
                                              "tools:\n"
                                              "  - match: \"a.*\"\n"
                                              "    secrets: {s1: [mint-jwt]}\n");
        struct ab_policy *p = NULL;
        char *err = NULL, *link = NULL;

        write_file(t.d, "10-a.yaml",
                   "tools:\n"
                   "  - match: \"b.*\"\n"
                   "    secrets:\n"
                   "      k: [read]\n"
                   "      s3: [read]\n"
                   "tokens: {bogus: 1}\n");
        write_file(t.d, "20-b.yaml",
                   "secrets:\n"
                   "  s1: {credential: other}\n"
                   "modules:\n"
                   "  fs: {roots: [/b]}\n");
        /* every file's errors, each with its own file name; the cross-file checks last */
        expect_dir_errors(
                &t,
                "%s/policy.d/10-a.yaml:6:10: unknown key 'bogus' in tokens (expected ttl_s, max_ttl_s, max_uses)\n"
                "%s/policy.d/20-b.yaml:2:3: secret 's1' is already defined at %s/policy.yaml:2:3\n"
                "%s/policy.d/20-b.yaml:4:3: module 'fs' is already configured at %s/policy.yaml:5:3\n"
                "%s/policy.yaml:8:20: operation 'mint-jwt' needs an ed25519 key; secret 's1' is bytes\n"
                "%s/policy.d/10-a.yaml:4:11: operation 'read' is not allowed on ed25519 key 'k' (only sign, mint-jwt)\n"
                "%s/policy.d/10-a.yaml:5:7: unknown secret 's3'\n");

        /* a syntax error in a drop-in */
        write_file(t.d, "10-a.yaml", "tools: [\n");
        write_file(t.d, "20-b.yaml", "\n");
        expect_dir_errors(
                &t,
                "%s/policy.d/10-a.yaml:2:1: YAML syntax error: did not find expected node content "
                "(while parsing a flow node at line 2 column 1)\n"
                "%s/policy.yaml:8:20: operation 'mint-jwt' needs an ed25519 key; secret 's1' is bytes\n");
        write_file(t.d, "10-a.yaml", "\n");
        write_file(t.dir, "policy.yaml", "tools: []\n");
        assert_int_equal(ab_policy_load(t.main, &p, &err), 0);
        assert_int_equal(p->n_files, 3);
        ab_policy_free(p);
        p = NULL;

        /* a dangling symlink is an I/O error, not skipped */
        assert_true(asprintf(&link, "%s/30-gone.yaml", t.d) > 0);
        assert_int_equal(symlink("nowhere", link), 0);
        assert_int_equal(ab_policy_load(t.main, &p, &err), -ENOENT);
        assert_null(p);
        {
                char *expected = replace_all(
                        "%s/policy.d/30-gone.yaml: cannot open: No such file or directory\n", "%s", t.dir);
                assert_string_equal(err, expected);
                free(expected);
        }
        free(err);
        err = NULL;
        assert_int_equal(unlink(link), 0);

        /* a drop-in larger than the limit */
        {
                char *big = malloc(AB_POLICY_MAX_FILE + 2);
                assert_non_null(big);
                memset(big, '#', AB_POLICY_MAX_FILE + 1);
                big[AB_POLICY_MAX_FILE + 1] = '\0';
                write_file(t.d, "50-big.yaml", big);
                free(big);
                expect_dir_errors(&t, "%s/policy.d/50-big.yaml: file is larger than 1048576 bytes\n");
                free(link);
                assert_true(asprintf(&link, "%s/50-big.yaml", t.d) > 0);
                assert_int_equal(unlink(link), 0);
        }

        /* too many drop-ins */
        for (int i = 0; i <= AB_POLICY_MAX_DROPINS; i++) {
                char name[32];
                snprintf(name, sizeof(name), "%03d.yaml", i);
                write_file(t.d, name, "\n");
        }
        expect_dir_errors(&t, "%s/policy.d: more than 256 drop-in files\n");

        free(link);
        free_dropin_dir(&t);
}

static void
test_main_file(void **state)
{
        char *dir = make_tmpdir(), *path = NULL, *link = NULL, *expected = NULL;
        struct ab_policy *p = NULL;
        char *err = NULL;

        /* missing */
        assert_true(asprintf(&path, "%s/policy.yaml", dir) > 0);
        assert_int_equal(ab_policy_load(path, &p, &err), -ENOENT);
        assert_null(p);
        assert_true(asprintf(&expected, "%s: cannot open: No such file or directory\n", path) > 0);
        assert_string_equal(err, expected);
        free(expected);
        free(err);
        err = NULL;

        /* a directory is not a policy file */
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(ab_policy_load(path, &p, &err), -EINVAL);
        assert_true(asprintf(&expected, "%s: not a regular file\n", path) > 0);
        assert_string_equal(err, expected);
        free(expected);
        free(err);
        err = NULL;
        assert_int_equal(rmdir(path), 0);

        /* the main file may be a symlink (e.g. into /etc/alternatives) */
        write_file(dir, "real.yaml", "tokens: {ttl_s: 7}\n");
        assert_int_equal(symlink("real.yaml", path), 0);
        assert_int_equal(ab_policy_load(path, &p, &err), 0);
        assert_int_equal(p->tokens.ttl_s, 7);
        assert_string_equal(p->files[0], path);
        ab_policy_free(p);
        p = NULL;

        /* errors in the main file name it as given */
        assert_int_equal(unlink(path), 0);
        write_file(dir, "policy.yaml", "tokens: {ttl: 7}\n");
        assert_int_equal(ab_policy_load(path, &p, &err), -EINVAL);
        assert_true(asprintf(&expected,
                             "%s:1:10: unknown key 'ttl' in tokens (expected ttl_s, max_ttl_s, max_uses)\n",
                             path) > 0);
        assert_string_equal(err, expected);
        free(expected);
        free(err);

        /* no ret_err: still fails cleanly */
        assert_int_equal(ab_policy_load(path, &p, NULL), -EINVAL);
        assert_int_equal(ab_policy_load_string("x", "a: b: c", 7, &p, NULL), -EINVAL);

        rm_rf(dir);
        free(dir);
        free(path);
        free(link);
}

/* ---- evaluation ---- */

/* The tunnel identity key (issue 10, finding 4): no tool may be granted it, under its name or
 * another name for the same source; broker.max_connections_per_uid is checked. */
static void
test_tunnel_identity_not_granted(void **state)
{
        (void)state;
        struct ab_policy *p;

        expect_errors(
                "secrets:\n"
                "  id: { credential: identity, type: ed25519 }\n"
                "tools:\n"
                "  - match: \"sign.*\"\n"
                "    secrets: { id: [sign, mint-jwt] }\n"
                "tunnel: { identity: id }\n",
                "t.yaml:5:16: secret 'id' is the tunnel identity (tunnel.identity): it cannot be granted to "
                "tools, which could mint the sandbox's dial credential; give tools a key of their own\n");
        expect_errors(
                "secrets:\n"
                "  id: { file: /etc/k, type: ed25519 }\n"
                "  tool_key: { file: /etc/k, type: ed25519 }\n"
                "tunnel: { identity: id }\n",
                "t.yaml:3:3: secret 'tool_key' loads the same key as the tunnel identity 'id': use a separate key\n");
        p = load_ok("secrets:\n"
                    "  id: { credential: identity, type: ed25519 }\n"
                    "  tool_key: { credential: sign_key, type: ed25519 }\n"
                    "tools:\n"
                    "  - match: \"sign.*\"\n"
                    "    secrets: { tool_key: [sign, mint-jwt] }\n"
                    "tunnel: { identity: id }\n"
                    "broker: { max_connections_per_uid: 8 }\n");
        assert_int_equal(p->broker.max_conns_per_uid, 8);
        ab_policy_free(p);
        p = load_ok("tools: []\n");
        assert_int_equal(p->broker.max_conns_per_uid, AB_POLICY_CONNS_PER_UID_DEFAULT);
        ab_policy_free(p);
        expect_errors("broker: { max_connections_per_uid: 0 }\n",
                      "t.yaml:1:36: broker.max_connections_per_uid must be between 1 and 1024\n");
}

static void
test_find_tool_precedence(void **state)
{
        struct ab_policy *p = load_ok("tools:\n"
                                      "  - {match: \"*\", rate: 1}\n"              /* 0 */
                                      "  - {match: \"fs.*\", rate: 2}\n"           /* 1 */
                                      "  - {match: \"fs.read*\", rate: 3}\n"       /* 2 */
                                      "  - {match: \"fs.re?d*\", rate: 4}\n"       /* 3: same length as 2 */
                                      "  - {match: \"fs.search\", allow: false}\n" /* 4 */
                                      "  - {match: \"fs.stat\", rate: 5}\n"        /* 5 */
                                      "  - {match: \"fs.stat\", rate: 6}\n"        /* 6: later exact */
                                      "  - {match: \"fs.stat*********\", rate: 7}\n" /* 7: long glob */
                                      "  - {match: \"x.*\", allow: false}\n"         /* 8 */
                                      "  - {match: \"x.y\"}\n");                     /* 9 */

        assert_ptr_equal(ab_policy_find_tool(p, "echo.echo"), &p->tools[0]);
        assert_ptr_equal(ab_policy_find_tool(p, "fs.list_dir"), &p->tools[1]);
        /* longest glob wins; earliest on a tie */
        assert_ptr_equal(ab_policy_find_tool(p, "fs.read_file"), &p->tools[2]);
        assert_ptr_equal(ab_policy_find_tool(p, "fs.reed"), &p->tools[3]);
        /* exact beats every glob, even a longer or earlier one; the first exact rule wins */
        assert_ptr_equal(ab_policy_find_tool(p, "fs.stat"), &p->tools[5]);
        /* an allow: false rule is the match, and it denies */
        assert_ptr_equal(ab_policy_find_tool(p, "fs.search"), &p->tools[4]);
        assert_false(ab_policy_find_tool(p, "fs.search")->allow);
        assert_ptr_equal(ab_policy_find_tool(p, "x.z"), &p->tools[8]);
        assert_false(ab_policy_find_tool(p, "x.z")->allow);
        assert_ptr_equal(ab_policy_find_tool(p, "x.y"), &p->tools[9]);
        assert_true(ab_policy_find_tool(p, "x.y")->allow);
        ab_policy_free(p);

        p = load_ok("tools: [{match: \"a.*\"}, {match: a.b}]\n");
        assert_null(ab_policy_find_tool(p, "b.a"));
        assert_null(ab_policy_find_tool(p, "a"));
        assert_null(ab_policy_find_tool(p, NULL));
        assert_ptr_equal(ab_policy_find_tool(p, "a.b"), &p->tools[1]);
        assert_ptr_equal(ab_policy_find_tool(p, "a.bc"), &p->tools[0]);
        ab_policy_free(p);
        assert_null(ab_policy_find_tool(NULL, "a"));
}

static void
test_lookups_and_ops(void **state)
{
        struct ab_policy *p =
                load_ok("secrets: {a: {env: A}, b: {env: B, type: ed25519}}\n"
                        "tools: [{match: t, secrets: {a: [read, read, sign], b: [mint-jwt]}}]\n"
                        "modules: {m: {k: v}}\n");
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "t");

        assert_int_equal(ab_policy_grant_ops(t, "a"), AB_OP_READ | AB_OP_SIGN);
        assert_int_equal(ab_policy_grant_ops(t, "b"), AB_OP_MINT_JWT);
        assert_int_equal(ab_policy_grant_ops(t, "c"), 0);
        assert_int_equal(ab_policy_grant_ops(NULL, "a"), 0);
        assert_string_equal(ab_policy_find_secret(p, "b")->ref, "B");
        assert_null(ab_policy_find_secret(p, "B"));
        assert_string_equal(
                cJSON_GetStringValue(cJSON_GetObjectItem(ab_policy_find_module(p, "m")->config, "k")), "v");
        assert_null(ab_policy_find_module(p, "n"));
        ab_policy_free(p);

        assert_int_equal(ab_policy_op_from_string("read"), AB_OP_READ);
        assert_int_equal(ab_policy_op_from_string("sign"), AB_OP_SIGN);
        assert_int_equal(ab_policy_op_from_string("mint-jwt"), AB_OP_MINT_JWT);
        assert_int_equal(ab_policy_op_from_string("mint_jwt"), 0);
        assert_int_equal(ab_policy_op_from_string("READ"), 0);
        assert_int_equal(ab_policy_op_from_string(""), 0);
        assert_int_equal(ab_policy_op_from_string(NULL), 0);
        assert_string_equal(ab_policy_op_to_string(AB_OP_READ), "read");
        assert_string_equal(ab_policy_op_to_string(AB_OP_SIGN), "sign");
        assert_string_equal(ab_policy_op_to_string(AB_OP_MINT_JWT), "mint-jwt");
        assert_null(ab_policy_op_to_string(AB_OP_READ | AB_OP_SIGN));
        assert_null(ab_policy_op_to_string(0));
}

/* check_args with JSON text; expect 0 (reason NULL) or -EPERM with exactly reason. */
static void
expect_args(const struct ab_policy_tool *t, const char *json, const char *reason)
{
        cJSON *args = json ? cJSON_Parse(json) : NULL;
        char *got = NULL;
        int r;

        if (json)
                assert_non_null(args);
        r = ab_policy_check_args(t, args, &got);
        if (!reason) {
                if (r != 0)
                        fail_msg("%s: unexpected denial: %s", json, got);
                assert_null(got);
        } else {
                assert_int_equal(r, -EPERM);
                assert_non_null(got);
                assert_string_equal(got, reason);
                free(got);
        }
        cJSON_Delete(args);
}

/* beneath: (issue 10, finding 5): the path is normalised before the comparison; a `pattern`
 * such as "^/srv/public/" lets "/srv/public/../private.txt" through, beneath does not. */
static void
test_check_args_beneath(void **state)
{
        struct ab_policy *p = load_ok("tools:\n"
                                      "  - match: t\n"
                                      "    args:\n"
                                      "      path: {beneath: /srv/public/}\n"
                                      "  - match: p\n"
                                      "    args:\n"
                                      "      path: {pattern: \"^/srv/public/\"}\n"
                                      "  - match: m\n"
                                      "    args:\n"
                                      "      path: {beneath: [/a//b/./, /c], max_length: 20}\n"
                                      "  - match: r\n"
                                      "    args:\n"
                                      "      path: {beneath: /}\n");
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "t"), *pt = ab_policy_find_tool(p, "p");
        const struct ab_policy_tool *m = ab_policy_find_tool(p, "m"), *r = ab_policy_find_tool(p, "r");
        const char *outside =
                "argument 'path' is not an absolute path (without '..') beneath the rule's directories";
        char *norm = NULL;

        (void)state;
        /* The attack: a pattern is textual. */
        expect_args(pt, "{\"path\": \"/srv/public/../private.txt\"}", NULL);
        expect_args(t, "{\"path\": \"/srv/public/../private.txt\"}", outside);
        expect_args(t, "{\"path\": \"/srv/public/a/../../private.txt\"}", outside);
        expect_args(t, "{\"path\": \"/srv/public/..\"}", outside);
        expect_args(t, "{\"path\": \"/srv/publicity/x\"}", outside);
        expect_args(t, "{\"path\": \"srv/public/x\"}", outside);
        expect_args(t, "{\"path\": \"\"}", outside);
        expect_args(t, "{\"path\": \"/srv\"}", outside);
        expect_args(t, "{\"path\": 7}", "argument 'path' must be a string (beneath)");
        /* Inside, once "//" and "." are dropped ("..." is a name, not a parent). */
        expect_args(t, "{\"path\": \"/srv/public\"}", NULL);
        expect_args(t, "{\"path\": \"/srv/public/a.txt\"}", NULL);
        expect_args(t, "{\"path\": \"//srv//public/./sub/\"}", NULL);
        expect_args(t, "{\"path\": \"/srv/public/...\"}", NULL);
        expect_args(t, "{}", NULL);
        /* A list of directories, normalised at load; other constraints still apply. */
        expect_args(m, "{\"path\": \"/a/b/x\"}", NULL);
        expect_args(m, "{\"path\": \"/c\"}", NULL);
        expect_args(m, "{\"path\": \"/a/x\"}", outside);
        expect_args(m, "{\"path\": \"/c/aaaaaaaaaaaaaaaaaaaaaaa\"}",
                    "argument 'path' is longer than max_length (20)");
        expect_args(r, "{\"path\": \"/anything/at/all\"}", NULL);
        expect_args(r, "{\"path\": \"/x/../y\"}", outside);
        ab_policy_free(p);

        assert_int_equal(ab_policy_path_normalize("/", &norm), 0);
        assert_string_equal(norm, "/");
        free(norm);
        assert_int_equal(ab_policy_path_normalize("///x//./y/.", &norm), 0);
        assert_string_equal(norm, "/x/y");
        free(norm);
        assert_int_equal(ab_policy_path_normalize("/x/..", &norm), -EINVAL);
        assert_int_equal(ab_policy_path_normalize("x", &norm), -EINVAL);

        expect_errors("tools:\n"
                      "  - match: t\n"
                      "    args:\n"
                      "      a: {beneath: srv}\n"
                      "      b: {beneath: /srv/../etc}\n"
                      "      c: {beneath: []}\n"
                      "      d: {beneath: {x: y}}\n",
                      "t.yaml:4:20: beneath: 'srv' must be an absolute directory without '..'\n"
                      "t.yaml:5:20: beneath: '/srv/../etc' must be an absolute directory without '..'\n"
                      "t.yaml:6:20: beneath must be a directory or a list of 1 to 64 directories\n"
                      "t.yaml:7:20: beneath must be a directory or a list of 1 to 64 directories\n");
}

/* A pattern whose match reaches a limit (common/regex.c) neither matches nor fails: the call
 * is denied, saying so. Patterns glibc took seconds to minutes on are refused at load. */
static void
test_pattern_limits(void **state)
{
        struct ab_policy *p = load_ok("tools:\n"
                                      "  - match: t\n"
                                      "    args:\n"
                                      "      s: {pattern: \"^(a|aa)*$\"}\n");
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "t");
        char json[4200];

        memcpy(json, "{\"s\": \"", 7);
        memset(json + 7, 'a', 4000);
        strcpy(json + 4007, "!\"}");
        expect_args(t, json, "argument 's' could not be checked against pattern (matching limit)");
        expect_args(t, "{\"s\": \"aaaa\"}", NULL);
        ab_policy_free(p);
        expect_errors(
                "tools: [{match: x, args: {a: {pattern: \"a?+?+?+?+?+?+?+?+?+?+?+\"}}}]\n",
                "t.yaml:1:40: bad pattern: quantifier does not follow a repeatable item at offset 3\n");
}

static void
test_check_args(void **state)
{
        struct ab_policy *p =
                load_ok("tools:\n"
                        "  - match: t\n"
                        "    args:\n"
                        "      path: {pattern: \"^/srv/[a-z/]*$\", max_length: 12, required: true}\n"
                        "      count: {min: 1, max: 100}\n"
                        "      ratio: {min: 0.5}\n"
                        "      mode: {enum: [fast, slow]}\n"
                        "      name: {max_length: 3}\n"
                        "  - match: u\n"
                        "  - match: v\n"
                        "    args: {x: {max: -1}}\n");
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "t");
        const struct ab_policy_tool *u = ab_policy_find_tool(p, "u");
        const struct ab_policy_tool *v = ab_policy_find_tool(p, "v");
        char *reason = NULL;

        /* passes, with unconstrained members */
        expect_args(t, "{\"path\": \"/srv/a\"}", NULL);
        expect_args(t,
                    "{\"path\": \"/srv/abc/def\", \"count\": 1, \"ratio\": 0.5, \"mode\": \"slow\", "
                    "\"name\": \"abc\", \"other\": [1, {\"x\": null}]}",
                    NULL);
        expect_args(t, "{\"path\": \"/srv/\", \"count\": 100}", NULL);
        /* required */
        expect_args(t, "{}", "argument 'path' is missing (required)");
        expect_args(t, NULL, "argument 'path' is missing (required)");
        /* pattern */
        expect_args(t, "{\"path\": \"/etc/shadow\"}", "argument 'path' does not match pattern");
        expect_args(t, "{\"path\": \"/srv/A\"}", "argument 'path' does not match pattern");
        expect_args(t, "{\"path\": 5}", "argument 'path' must be a string (pattern)");
        expect_args(t, "{\"path\": null}", "argument 'path' must be a string (pattern)");
        /* max_length (bytes) */
        expect_args(t, "{\"path\": \"/srv/abcdefgh\"}", "argument 'path' is longer than max_length (12)");
        expect_args(t, "{\"path\": \"/srv/\", \"name\": \"abcd\"}",
                    "argument 'name' is longer than max_length (3)");
        expect_args(t, "{\"path\": \"/srv/\", \"name\": \"\\u00e9\\u00e9\"}",
                    "argument 'name' is longer than max_length (3)");
        expect_args(t, "{\"path\": \"/srv/\", \"name\": true}",
                    "argument 'name' must be a string (max_length)");
        /* min / max */
        expect_args(t, "{\"path\": \"/srv/\", \"count\": 0}", "argument 'count' is below min (1)");
        expect_args(t, "{\"path\": \"/srv/\", \"count\": 100.5}", "argument 'count' is above max (100)");
        expect_args(t, "{\"path\": \"/srv/\", \"count\": \"5\"}", "argument 'count' must be a number (min)");
        expect_args(t, "{\"path\": \"/srv/\", \"ratio\": 0.25}", "argument 'ratio' is below min (0.5)");
        expect_args(v, "{\"x\": -1}", NULL);
        expect_args(v, "{\"x\": -0.5}", "argument 'x' is above max (-1)");
        expect_args(v, "{\"x\": [1]}", "argument 'x' must be a number (max)");
        expect_args(v, NULL, NULL);
        /* enum */
        expect_args(t, "{\"path\": \"/srv/\", \"mode\": \"fast\"}", NULL);
        expect_args(t, "{\"path\": \"/srv/\", \"mode\": \"FAST\"}",
                    "argument 'mode' is not one of the enum values");
        expect_args(t, "{\"path\": \"/srv/\", \"mode\": 1}", "argument 'mode' must be a string (enum)");
        /* a constrained member given twice */
        expect_args(t, "{\"path\": \"/srv/a\", \"path\": \"/etc/shadow\"}",
                    "argument 'path' is given more than once");
        /* not an object */
        expect_args(t, "[\"/srv/a\"]", "arguments must be a JSON object");
        expect_args(t, "\"/srv/a\"", "arguments must be a JSON object");
        /* a rule without constraints accepts anything */
        expect_args(u, "{\"anything\": 1}", NULL);
        expect_args(u, "[1]", NULL);
        expect_args(u, NULL, NULL);

        /* the reason never contains the value */
        {
                cJSON *args = cJSON_Parse("{\"path\": \"/etc/canary-value-7f3a\"}");
                assert_int_equal(ab_policy_check_args(t, args, &reason), -EPERM);
                assert_null(strstr(reason, "canary"));
                free(reason);
                reason = NULL;
                /* ret_reason may be NULL */
                assert_int_equal(ab_policy_check_args(t, args, NULL), -EPERM);
                cJSON_Delete(args);
        }
        ab_policy_free(p);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_cut_utf8),
                cmocka_unit_test(test_default_policy_file),
                cmocka_unit_test(test_default_policy_contents),
                cmocka_unit_test(test_full_example),
                cmocka_unit_test(test_empty_policy),
                cmocka_unit_test(test_errors_yaml),
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_errors_limits),
                cmocka_unit_test(test_errors_top),
                cmocka_unit_test(test_errors_secrets),
                cmocka_unit_test(test_errors_grants),
                cmocka_unit_test(test_errors_tools),
                cmocka_unit_test(test_errors_args),
                cmocka_unit_test(test_errors_modules),
                cmocka_unit_test(test_servers),
                cmocka_unit_test(test_errors_scalar_sections),
                cmocka_unit_test(test_accepted_forms),
                cmocka_unit_test(test_dropins_merge),
                cmocka_unit_test(test_dropins_errors),
                cmocka_unit_test(test_main_file),
                cmocka_unit_test(test_tunnel_identity_not_granted),
                cmocka_unit_test(test_find_tool_precedence),
                cmocka_unit_test(test_lookups_and_ops),
                cmocka_unit_test(test_check_args),
                cmocka_unit_test(test_check_args_beneath),
                cmocka_unit_test(test_pattern_limits),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
