/* SPDX-License-Identifier: MIT */
/* Egress rules: which destination a tool may reach (scheme, host, port, HTTP method and path
 * prefix) and which resolved addresses it may connect to (docs/policy.md, "egress"). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/macros.h"
#include "policy/policy.h"

static const char *const scheme_names[] = {
        [AB_EGRESS_TCP] = "tcp",
        [AB_EGRESS_HTTP] = "http",
        [AB_EGRESS_HTTPS] = "https",
};

const char *
ab_egress_scheme_to_string(enum ab_egress_scheme s)
{
        return (unsigned)s < AB_ELEMENTSOF(scheme_names) ? scheme_names[s] : "?";
}

int
ab_egress_scheme_from_string(const char *s, enum ab_egress_scheme *ret)
{
        for (size_t i = 0; s && i < AB_ELEMENTSOF(scheme_names); i++)
                if (strcmp(s, scheme_names[i]) == 0) {
                        *ret = (enum ab_egress_scheme)i;
                        return 0;
                }
        return -EINVAL;
}

/* Parse an address with an optional "/prefix". Returns 0 or -EINVAL. */
int
ab_policy_cidr_parse(const char *s, struct ab_policy_cidr *ret)
{
        struct ab_policy_cidr c = { 0 };
        char buf[INET6_ADDRSTRLEN + 8];
        const char *slash = strchr(s, '/');
        size_t alen = slash ? (size_t)(slash - s) : strlen(s);
        unsigned max;

        if (alen == 0 || alen >= INET6_ADDRSTRLEN)
                return -EINVAL;
        memcpy(buf, s, alen);
        buf[alen] = 0;
        if (inet_pton(AF_INET, buf, c.addr) == 1) {
                c.family = AF_INET;
                max = 32;
        } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
                c.family = AF_INET6;
                max = 128;
        } else
                return -EINVAL;
        c.prefix = max;
        if (slash) {
                char *end;
                unsigned long p;

                if (slash[1] < '0' || slash[1] > '9')
                        return -EINVAL;
                p = strtoul(slash + 1, &end, 10);
                if (*end || p > max)
                        return -EINVAL;
                c.prefix = (unsigned)p;
        }
        *ret = c;
        return 0;
}

/* Whether addr (of family) lies in c. */
static bool
cidr_contains(const struct ab_policy_cidr *c, int family, const unsigned char *addr)
{
        unsigned full, rest;

        if (c->family != family)
                return false;
        full = c->prefix / 8;
        rest = c->prefix % 8;
        if (memcmp(c->addr, addr, full) != 0)
                return false;
        if (rest) {
                unsigned char mask = (unsigned char)(0xff << (8 - rest));
                if ((c->addr[full] & mask) != (addr[full] & mask))
                        return false;
        }
        return true;
}

/* The ranges that are never reached without a rule naming them: loopback, private (RFC 1918,
 * unique local), link-local, CGNAT, "this network", multicast, reserved and broadcast,
 * documentation and benchmarking ranges, IPv4-mapped and NAT64/6to4/Teredo forms. */
static const char *const special_ranges[] = {
        "0.0.0.0/8",     "10.0.0.0/8",      "100.64.0.0/10",  "127.0.0.0/8",    "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24",    "192.0.2.0/24",   "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",    "240.0.0.0/4",
        "::/128",        "::1/128",         "::ffff:0:0/96",  "64:ff9b::/96",   "64:ff9b:1::/48",
        "100::/64",      "2001::/32",       "2001:db8::/32",  "2002::/16",      "fc00::/7",
        "fe80::/10",     "fec0::/10",       "ff00::/8",
};

/* Whether addr is in one of the special ranges. */
static bool
address_is_special(int family, const unsigned char *addr)
{
        for (size_t i = 0; i < AB_ELEMENTSOF(special_ranges); i++) {
                struct ab_policy_cidr c;

                if (ab_policy_cidr_parse(special_ranges[i], &c) == 0 && cidr_contains(&c, family, addr))
                        return true;
        }
        return false;
}

int
ab_policy_egress_address_ok(const struct ab_policy_egress *e, int family, const unsigned char *addr,
                            const char **ret_reason)
{
        if (family != AF_INET && family != AF_INET6) {
                *ret_reason = "address-not-allowed";
                return -EPERM;
        }
        if (e->host_is_ip && cidr_contains(&e->host_ip, family, addr))
                return 0;
        for (size_t i = 0; i < e->n_addresses; i++)
                if (cidr_contains(&e->addresses[i], family, addr))
                        return 0;
        if (e->n_addresses > 0 || e->host_is_ip) {
                *ret_reason = "address-not-allowed";
                return -EPERM;
        }
        if (address_is_special(family, addr)) {
                *ret_reason = "address-private";
                return -EPERM;
        }
        return 0;
}

/* Whether path may be compared by prefix: it starts with '/', has no dot segment ("/../",
 * "/./", a trailing "/.." or "/."), no percent-encoded '.', '/' or '\\', no backslash, no
 * '#', no control character. */
static bool
path_is_plain(const char *path)
{
        if (path[0] != '/')
                return false;
        for (const char *p = path; *p; p++) {
                if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\' || *p == '#')
                        return false;
                if (*p == '%' && (strncasecmp(p, "%2e", 3) == 0 || strncasecmp(p, "%2f", 3) == 0 ||
                                  strncasecmp(p, "%5c", 3) == 0))
                        return false;
                if (*p == '/' && p[1] == '.') {
                        size_t dots = p[2] == '.' ? 2 : 1;
                        char after = p[1 + dots];
                        if (after == '/' || after == 0)
                                return false;
                }
        }
        return true;
}

int
ab_policy_egress_find(const struct ab_policy_tool *rule, enum ab_egress_scheme scheme, const char *host,
                      unsigned port, const char *method, const char *path,
                      const struct ab_policy_egress **ret, const char **ret_reason)
{
        const char *reason = "egress-not-allowed";
        bool http = scheme != AB_EGRESS_TCP;

        if (http && (!path || !path_is_plain(path))) {
                *ret_reason = "path-invalid";
                return -EPERM;
        }
        for (size_t i = 0; rule && i < rule->n_egress; i++) {
                const struct ab_policy_egress *e = &rule->egress[i];
                bool ok = false;

                if (e->scheme != scheme || e->port != port || strcasecmp(e->host, host) != 0)
                        continue;
                if (!http) {
                        *ret = e;
                        return 0;
                }
                if (e->n_methods == 0)
                        ok = method && strcmp(method, "GET") == 0;
                for (size_t m = 0; m < e->n_methods && !ok; m++)
                        ok = method && strcmp(method, e->methods[m]) == 0;
                if (!ok) {
                        reason = "method-not-allowed";
                        continue;
                }
                ok = e->n_paths == 0;
                for (size_t p = 0; p < e->n_paths && !ok; p++)
                        ok = strncmp(path, e->paths[p], strlen(e->paths[p])) == 0;
                if (!ok) {
                        reason = "path-not-allowed";
                        continue;
                }
                *ret = e;
                return 0;
        }
        *ret_reason = reason;
        return -EPERM;
}
