/* SPDX-License-Identifier: MIT */
/* The egress part of the policy (policy/policy_egress.c and the loader's `egress:` entries):
 * parsing, file:line:column errors, destination matching and the address checks that keep a
 * name resolving to a private range out unless a rule names it. */
#include "config.h"
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "policy/policy.h"

static const char good[] =
        "secrets:\n"
        "  key: { env: K }\n"
        "tools:\n"
        "  - match: \"net.*\"\n"
        "    secrets: { key: [inject] }\n"
        "    egress:\n"
        "      - { scheme: tcp, host: DB.Example.com, port: 5432 }\n"
        "      - scheme: https\n"
        "        host: api.example.com\n"
        "        methods: [GET, POST]\n"
        "        paths: [/v1/, /v2/x]\n"
        "        inject: { secret: key, header: Authorization, value: \"Bearer {secret}\" }\n"
        "        max_response_bytes: 4096\n"
        "        timeout_ms: 500\n"
        "      - { scheme: http, host: 127.0.0.1, port: 8080 }\n"
        "      - { scheme: https, host: intranet, addresses: [10.0.0.0/8, \"fd00::/8\"] }\n";

static struct ab_policy *
load(const char *yaml, char **ret_err)
{
        struct ab_policy *p = NULL;

        *ret_err = NULL;
        (void)ab_policy_load_string("t.yaml", yaml, strlen(yaml), &p, ret_err);
        return p;
}

static void
test_parse(void **state)
{
        char *err;
        struct ab_policy *p = load(good, &err);
        const struct ab_policy_tool *t;

        if (!p)
                fail_msg("%s", err);
        t = ab_policy_find_tool(p, "net.x");
        assert_int_equal(t->n_egress, 4);
        assert_int_equal(t->egress[0].scheme, AB_EGRESS_TCP);
        assert_string_equal(t->egress[0].host, "db.example.com");
        assert_int_equal(t->egress[1].port, 443);
        assert_int_equal(t->egress[1].n_methods, 2);
        assert_string_equal(t->egress[1].inject_header, "Authorization");
        assert_string_equal(t->egress[1].inject_value, "Bearer {secret}");
        assert_int_equal(t->egress[1].max_response_bytes, 4096);
        assert_int_equal(t->egress[1].timeout_ms, 500);
        assert_true(t->egress[2].host_is_ip);
        assert_int_equal(t->egress[3].n_addresses, 2);
        assert_int_equal(ab_policy_grant_ops(t, "key"), AB_OP_INJECT);
        ab_policy_free(p);
}

static void
test_errors(void **state)
{
        static const char bad[] = "secrets:\n"
                                  "  key: { env: K }\n"
                                  "tools:\n"
                                  "  - match: a\n"
                                  "    egress:\n"
                                  "      - { scheme: ftp, host: x }\n"
                                  "      - { scheme: tcp, host: x }\n"
                                  "      - { host: \"a b\" }\n"
                                  "      - { host: x, methods: [FETCH], paths: [v1] }\n"
                                  "      - { host: x, addresses: [10.0.0.0/33] }\n"
                                  "      - { scheme: tcp, host: x, port: 1, paths: [/a] }\n"
                                  "      - { host: x, inject: { secret: key, header: A, query: q } }\n"
                                  "      - { host: x, inject: { secret: key, header: A, value: nope } }\n"
                                  "      - { host: x, port: 70000 }\n";
        static const char expected[] =
                "t.yaml:6:19: unknown scheme 'ftp' (expected tcp, http or https)\n"
                "t.yaml:7:9: a tcp egress entry needs port\n"
                "t.yaml:8:17: bad host 'a b': a DNS name or an IP address (no port, no wildcard)\n"
                "t.yaml:8:9: egress entry without host\n"
                "t.yaml:9:30: unknown method 'FETCH' (expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS)\n"
                "t.yaml:9:46: bad path prefix 'v1': a path prefix starts with '/'\n"
                "t.yaml:10:32: bad address range '10.0.0.0/33' (expected 10.0.0.0/8, 127.0.0.1 or fd00::/8)\n"
                "t.yaml:11:49: methods, paths, inject, max_response_bytes and timeout_ms are for http and https entries\n"
                "t.yaml:12:28: inject needs exactly one of header or query\n"
                "t.yaml:13:61: inject.value must hold {secret} exactly once\n"
                "t.yaml:14:26: port must be between 1 and 65535\n"
                "t.yaml:12:28: inject: the rule must grant [inject] on secret 'key' (secrets: {key: [inject]})\n"
                "t.yaml:13:28: inject: the rule must grant [inject] on secret 'key' (secrets: {key: [inject]})\n";
        char *err;
        struct ab_policy *p = load(bad, &err);

        assert_null(p);
        assert_non_null(err);
        assert_string_equal(err, expected);
        free(err);
}

static void
test_find(void **state)
{
        char *err;
        struct ab_policy *p = load(good, &err);
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "net.x");
        const struct ab_policy_egress *e = NULL;
        const char *why = NULL;

        assert_int_equal(
                ab_policy_egress_find(t, AB_EGRESS_TCP, "db.example.COM", 5432, NULL, NULL, &e, &why), 0);
        assert_ptr_equal(e, &t->egress[0]);
        assert_int_equal(
                ab_policy_egress_find(t, AB_EGRESS_TCP, "api.example.com", 443, NULL, NULL, &e, &why),
                -EPERM);
        assert_string_equal(why, "egress-not-allowed");
        assert_int_equal(
                ab_policy_egress_find(t, AB_EGRESS_HTTPS, "api.example.com", 443, "POST", "/v1/a", &e, &why),
                0);
        assert_int_equal(
                ab_policy_egress_find(t, AB_EGRESS_HTTPS, "api.example.com", 443, "PUT", "/v1/a", &e, &why),
                -EPERM);
        assert_string_equal(why, "method-not-allowed");
        assert_int_equal(
                ab_policy_egress_find(t, AB_EGRESS_HTTPS, "api.example.com", 443, "GET", "/v3", &e, &why),
                -EPERM);
        assert_string_equal(why, "path-not-allowed");
        static const char *const sneaky[] = { "/v1/../admin", "/v1/%2e%2e/admin", "/v1/.", "/v1/a%2Fb",
                                              "v1/",          "/v1/a\\b" };
        for (size_t i = 0; i < sizeof(sneaky) / sizeof(sneaky[0]); i++) {
                assert_int_equal(ab_policy_egress_find(t, AB_EGRESS_HTTPS, "api.example.com", 443, "GET",
                                                       sneaky[i], &e, &why),
                                 -EPERM);
                assert_string_equal(why, "path-invalid");
        }
        /* http entries default to GET only */
        assert_int_equal(ab_policy_egress_find(t, AB_EGRESS_HTTP, "127.0.0.1", 8080, "POST", "/", &e, &why),
                         -EPERM);
        assert_int_equal(ab_policy_egress_find(t, AB_EGRESS_HTTP, "127.0.0.1", 8080, "GET", "/", &e, &why),
                         0);
        ab_policy_free(p);
}

static int
addr_ok(const struct ab_policy_egress *e, const char *a, const char **why)
{
        unsigned char buf[16];
        int fam = strchr(a, ':') ? AF_INET6 : AF_INET;

        assert_int_equal(inet_pton(fam, a, buf), 1);
        return ab_policy_egress_address_ok(e, fam, buf, why);
}

static void
test_addresses(void **state)
{
        char *err;
        struct ab_policy *p = load(good, &err);
        const struct ab_policy_tool *t = ab_policy_find_tool(p, "net.x");
        const char *why = NULL;
        static const char *const private[] = {
                "127.0.0.1",       "10.1.2.3",      "172.16.0.1",       "192.168.1.1",
                "169.254.169.254", "100.64.0.1",    "0.0.0.0",          "::1",
                "fe80::1",         "fc00::1",       "::ffff:127.0.0.1", "224.0.0.1",
                "255.255.255.255", "64:ff9b::a00:1"
        };

        /* a DNS name: public addresses only */
        assert_int_equal(addr_ok(&t->egress[0], "93.184.216.34", &why), 0);
        assert_int_equal(addr_ok(&t->egress[0], "2606:2800:220:1::1", &why), 0);
        for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
                assert_int_equal(addr_ok(&t->egress[0], private[i], &why), -EPERM);
                assert_string_equal(why, "address-private");
        }
        /* an IP literal: exactly itself */
        assert_int_equal(addr_ok(&t->egress[2], "127.0.0.1", &why), 0);
        assert_int_equal(addr_ok(&t->egress[2], "127.0.0.2", &why), -EPERM);
        assert_string_equal(why, "address-not-allowed");
        /* addresses: only within them */
        assert_int_equal(addr_ok(&t->egress[3], "10.9.8.7", &why), 0);
        assert_int_equal(addr_ok(&t->egress[3], "fd12::1", &why), 0);
        assert_int_equal(addr_ok(&t->egress[3], "192.168.0.1", &why), -EPERM);
        assert_int_equal(addr_ok(&t->egress[3], "93.184.216.34", &why), -EPERM);
        ab_policy_free(p);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_find),
                cmocka_unit_test(test_addresses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
