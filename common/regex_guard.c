/* Guards in front of regcomp for configured regular expressions (see regex_guard.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/regex_guard.h"

/* An estimate of the size of the tree glibc's regcomp builds for an ERE: it copies a
 * subexpression for each '+' and for each count of {m,n}, so nesting multiplies. Sets
 * *why on back-references or too deep groups. Syntax errors are left to regcomp. */
static double regex_cost_seq(const char **s, unsigned depth, const char **why) {
        double total = 0;

        while (**s && **s != ')' && !*why) {
                double atom = 1;
                const char *p = *s;

                if (*p == '|') {
                        (*s)++;
                        continue;
                }
                if (*p == '(') {
                        if (depth >= AB_REGEX_MAX_NESTING) {
                                *why = "groups nested too deeply";
                                return total;
                        }
                        *s = p + 1;
                        atom = regex_cost_seq(s, depth + 1, why) + 1;
                        if (**s != ')')
                                return total + atom;
                        (*s)++;
                } else if (*p == '[') {
                        p++;
                        if (*p == '^')
                                p++;
                        if (*p == ']')
                                p++;
                        while (*p && *p != ']') {
                                if (*p == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
                                        const char *end = strchr(p + 2, p[1]);
                                        p = end && end[1] == ']' ? end + 2 : p + 1;
                                } else
                                        p++;
                        }
                        *s = *p ? p + 1 : p;
                } else if (*p == '\\') {
                        if (isdigit((unsigned char) p[1])) {
                                *why = "back-references are not allowed";
                                return total;
                        }
                        *s = p[1] ? p + 2 : p + 1;
                } else
                        *s = p + 1;

                for (;;) {      /* quantifiers, possibly stacked */
                        const char *q = *s;
                        if (*q == '*' || *q == '?')
                                (*s)++;
                        else if (*q == '+') {
                                atom *= 2;
                                (*s)++;
                        } else if (*q == '{') {
                                unsigned long lo = 0, hi = 0, *v = &lo;
                                for (q++; isdigit((unsigned char) *q) || *q == ','; q++) {
                                        if (*q == ',') {
                                                v = &hi;
                                                continue;
                                        }
                                        if (*v < 1000000)
                                                *v = *v * 10 + (unsigned long) (*q - '0');
                                }
                                if (*q != '}')
                                        return total + atom;
                                atom *= (double) (hi > lo ? hi : lo > 0 ? lo : 1);
                                *s = q + 1;
                        } else
                                break;
                }
                total += atom;
        }
        return total;
}

const char *ab_regex_check(const char *pattern) {
        const char *s = pattern, *why = NULL;
        double cost = 0;

        while (*s && !why) {
                cost += regex_cost_seq(&s, 0, &why);
                if (*s == ')')  /* unbalanced: regcomp reports it */
                        s++;
        }
        if (why)
                return why;
        if (cost > AB_REGEX_MAX_COST)
                return "the expression is too complex (repetitions expand too much)";
        return NULL;
}

int ab_regex_compile(regex_t *re, const char *pattern, char *why, size_t whylen) {
        const char *bad;
        int r;

        if (strlen(pattern) > AB_REGEX_MAX_LEN) {
                snprintf(why, whylen, "longer than %d bytes", AB_REGEX_MAX_LEN);
                return -EINVAL;
        }
        bad = ab_regex_check(pattern);
        if (bad) {
                snprintf(why, whylen, "%s", bad);
                return -EINVAL;
        }
        r = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
        if (r == REG_ESPACE)
                return -ENOMEM;
        if (r != 0) {
                regerror(r, re, why, whylen);
                return -EINVAL;
        }
        return 0;
}
