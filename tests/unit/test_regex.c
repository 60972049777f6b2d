/* SPDX-License-Identifier: MIT */
/* Unit tests for common/regex.c: syntax and semantics (ECMA-262-like `$`, `\uHHHH`, flags,
 * offsets, NUL bytes, invalid UTF-8 subjects), refusals with clear errors (length, nesting,
 * back-references, syntax), and the adversarial corpus of tests/unit/regex_corpus.h: every
 * pattern compiles or is refused, and every search of a 1 MiB subject ends in a result or a
 * limit error. The bound holds by construction (the CPU-time budget in common/regex.c); the
 * times asserted here are that budget plus a generous margin, in CPU time of this thread, so
 * a loaded machine does not make the test fail. tests/bench/bench_regex.c prints the actual
 * times. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "common/macros.h"
#include "common/regex.h"
#include "tests/unit/regex_corpus.h"

/* Margins over the targets (compile 10 ms, search AB_REGEX_MATCH_CPU_MS) for slow builds:
 * the sanitizer build runs the matcher several times slower, but the budget is CPU time. */
#define COMPILE_MAX_MS 200.0
#define SEARCH_MAX_MS (AB_REGEX_MATCH_CPU_MS + 400.0)

static struct ab_regex *
compile_ok(const char *pattern, unsigned flags)
{
        struct ab_regex *re = NULL;
        char err[256] = "";
        int r;

        r = ab_regex_compile(pattern, strlen(pattern), flags, &re, err, sizeof(err));
        if (r != 0)
                fail_msg("compile of %s: %d %s", pattern, r, err);
        assert_non_null(re);
        return re;
}

/* Search subject (NUL-terminated) for pattern; returns the result, *start and *end. */
static int
search(const char *pattern, unsigned flags, const char *subject, size_t *start, size_t *end)
{
        struct ab_regex *re = compile_ok(pattern, flags);
        int r = ab_regex_search(re, subject, strlen(subject), start, end);

        ab_regex_free(re);
        return r;
}

static void
refused(const char *pattern, size_t len, const char *want_prefix)
{
        struct ab_regex *re = NULL;
        char err[256] = "";

        assert_int_equal(ab_regex_compile(pattern, len, 0, &re, err, sizeof(err)), -EINVAL);
        assert_null(re);
        if (strncmp(err, want_prefix, strlen(want_prefix)) != 0)
                fail_msg("pattern %s\n got: %s\nwant: %s...", pattern, err, want_prefix);
}

static void
test_semantics(void **state)
{
        size_t s = 99, e = 99;

        assert_int_equal(search("b+", 0, "aabbbc", &s, &e), 1);
        assert_int_equal(s, 2);
        assert_int_equal(e, 5);
        assert_int_equal(search("^[a-z]{1,4}$", 0, "abcd", NULL, NULL), 1);
        assert_int_equal(search("^[a-z]{1,4}$", 0, "abcde", NULL, NULL), 0);
        /* `$` is the very end only (ECMA-262, POSIX regexec), not before a final newline */
        assert_int_equal(search("^[a-z]+$", 0, "abc\n", NULL, NULL), 0);
        assert_int_equal(search("^a.c$", 0, "a\nc", NULL, NULL), 0);
        /* \uHHHH (ECMA-262) and characters, not bytes */
        assert_int_equal(search("^\\u00e9$", 0, "\xc3\xa9", NULL, NULL), 1);
        assert_int_equal(search("^.$", 0, "\xc3\xa9", NULL, NULL), 1);
        /* flags */
        assert_int_equal(search("ABC", 0, "xabc", NULL, NULL), 0);
        assert_int_equal(search("ABC", AB_REGEX_ICASE, "xabc", &s, &e), 1);
        assert_int_equal(s, 1);
        assert_int_equal(search("a.c(", AB_REGEX_LITERAL, "xxa.c(", &s, NULL), 1);
        assert_int_equal(s, 2);
        assert_int_equal(search("a.c", AB_REGEX_LITERAL, "abc", NULL, NULL), 0);
        /* an empty match, and an empty subject */
        assert_int_equal(search("x*", 0, "", &s, &e), 1);
        assert_int_equal(s, 0);
        assert_int_equal(e, 0);
}

/* Subjects are byte strings: NUL bytes and invalid UTF-8 are searched, never an error. */
static void
test_bytes(void **state)
{
        struct ab_regex *re = compile_ok("b.d", 0);
        size_t s = 0;

        assert_int_equal(ab_regex_search(re, "a\nb\nd", 5, NULL, NULL), 0);
        assert_int_equal(ab_regex_search(re, "a\0b\0d", 5, &s, NULL), 1);
        assert_int_equal(s, 2);
        assert_int_equal(ab_regex_search(re, "a\0bcd", 5, &s, NULL), 1);
        assert_int_equal(s, 2);
        assert_int_equal(ab_regex_search(re,
                                         "\xff\xfe"
                                         "bcd\xc3",
                                         6, &s, NULL),
                         1);
        assert_int_equal(s, 2);
        assert_int_equal(ab_regex_search(re,
                                         "b\xff"
                                         "d",
                                         3, NULL, NULL),
                         0);
        assert_int_equal(ab_regex_search(re, NULL, 0, NULL, NULL), 0);
        ab_regex_free(re);
        /* a pattern with a NUL byte in it */
        re = NULL;
        assert_int_equal(ab_regex_compile("a\0b", 3, 0, &re, NULL, 0), 0);
        assert_int_equal(ab_regex_search(re, "xa\0b", 4, &s, NULL), 1);
        assert_int_equal(s, 1);
        assert_int_equal(ab_regex_search(re, "ab", 2, NULL, NULL), 0);
        ab_regex_free(re);
        ab_regex_free(NULL);
}

static void
test_refusals(void **state)
{
        char big[AB_REGEX_MAX_LEN + 2];
        char nest[2 * (AB_REGEX_MAX_NESTING + 1) + 2];
        struct ab_regex *re = NULL;
        size_t i;

        refused("(a", 2, "missing closing parenthesis at offset 2");
        refused("a{2,1}", 6, "numbers out of order in {} quantifier at offset 5");
        refused("(a)\\1", 5, "back-references are not allowed");
        refused("(?<n>a)\\k<n>", 12, "back-references are not allowed");
        refused("\\C", 2, "using \\C is disabled");
        memset(big, 'a', sizeof(big));
        refused(big, AB_REGEX_MAX_LEN + 1, "pattern longer than 1024 bytes");
        for (i = 0; i <= AB_REGEX_MAX_NESTING; i++) {
                nest[i] = '(';
                nest[AB_REGEX_MAX_NESTING + 1 + i + 1] = ')';
        }
        nest[AB_REGEX_MAX_NESTING + 1] = 'a';
        refused(nest, 2 * (AB_REGEX_MAX_NESTING + 1) + 1, "parentheses are too deeply nested");
        /* nested counted repeats expand past the compiled size */
        refused("((a{100}){100}){100}", 20, "");
        /* one level less nesting compiles */
        assert_int_equal(ab_regex_compile(nest + 1, 2 * AB_REGEX_MAX_NESTING + 1, 0, &re, NULL, 0), 0);
        ab_regex_free(re);
        /* err is optional */
        re = NULL;
        assert_int_equal(ab_regex_compile("(", 1, 0, &re, NULL, 0), -EINVAL);
        assert_null(re);
}

/* The limits themselves: each class of blow-up ends in its error, deterministically. */
static void
test_limits(void **state)
{
        char *subject = regex_corpus_subject(0);
        struct ab_regex *re;
        char small[4096];
        const char *exp[] = { "(a+)+$", "(a|aa)*$", "(?:a*)*$", "(*LIMIT_MATCH=99999999)(a+)+$" };
        size_t i;

        assert_non_null(subject);
        /* exponential backtracking: the backtracking limit */
        memset(small, 'a', sizeof(small));
        small[sizeof(small) - 1] = '!';
        for (i = 0; i < AB_ELEMENTSOF(exp); i++) {
                re = compile_ok(exp[i], 0);
                assert_int_equal(ab_regex_search(re, small, sizeof(small), NULL, NULL), -ETIME);
                ab_regex_free(re);
        }
        /* recursion that does not advance */
        re = compile_ok("(a|(?R))*$", 0);
        assert_int_equal(ab_regex_search(re, small, sizeof(small), NULL, NULL), -ELOOP);
        ab_regex_free(re);
        /* quadratic scanning (no backtracking points): the CPU-time budget */
        re = compile_ok("[a-z]*[0-9]", 0);
        assert_int_equal(ab_regex_search(re, subject, REGEX_CORPUS_SUBJECT_LEN, NULL, NULL), -ETIME);
        ab_regex_free(re);
        assert_non_null(strstr(ab_regex_strerror(-ETIME), "too long"));
        assert_non_null(strstr(ab_regex_strerror(-E2BIG), "too much memory"));
        free(subject);
}

struct corpus_run {
        char *subject[2];
        size_t patterns, refused, limited;
};

/* One corpus pattern: compile within COMPILE_MAX_MS or be refused with a message; search
 * within SEARCH_MAX_MS ending in a result or a limit error. */
static void
corpus_one(const char *pattern, void *arg)
{
        struct corpus_run *cr = arg;
        struct ab_regex *re = NULL;
        char err[256] = "";
        double t0, t;
        int i, r;

        assert_true(strlen(pattern) <= 256);
        cr->patterns++;
        t0 = regex_corpus_cpu_ms();
        r = ab_regex_compile(pattern, strlen(pattern), 0, &re, err, sizeof(err));
        t = regex_corpus_cpu_ms() - t0;
        if (t > COMPILE_MAX_MS)
                fail_msg("compile of %s took %.1f ms", pattern, t);
        if (r < 0) {
                assert_int_equal(r, -EINVAL);
                assert_true(err[0] != '\0');
                cr->refused++;
                return;
        }
        for (i = 0; i < 2; i++) {
                t0 = regex_corpus_cpu_ms();
                r = ab_regex_search(re, cr->subject[i], REGEX_CORPUS_SUBJECT_LEN, NULL, NULL);
                t = regex_corpus_cpu_ms() - t0;
                if (r != 0 && r != 1 && r != -ETIME && r != -E2BIG && r != -ELOOP)
                        fail_msg("search of %s: %d", pattern, r);
                if (r < 0)
                        cr->limited++;
                if (t > SEARCH_MAX_MS)
                        fail_msg("search of %s took %.1f ms (r=%d)", pattern, t, r);
        }
        ab_regex_free(re);
}

/* The adversarial corpus: all fixed patterns and every 29th generated one (the whole corpus
 * takes minutes; `make bench` runs it all). */
static void
test_corpus(void **state)
{
        struct corpus_run cr = { .patterns = 0 };

        cr.subject[0] = regex_corpus_subject(0);
        cr.subject[1] = regex_corpus_subject(1);
        assert_non_null(cr.subject[0]);
        assert_non_null(cr.subject[1]);
        regex_corpus_each(corpus_one, &cr, 29);
        print_message("# %zu patterns, %zu refused, %zu searches ended at a limit\n", cr.patterns,
                      cr.refused, cr.limited);
        assert_true(cr.refused > 0);
        assert_true(cr.limited > 0);
        free(cr.subject[0]);
        free(cr.subject[1]);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_semantics), cmocka_unit_test(test_bytes),
                cmocka_unit_test(test_refusals),  cmocka_unit_test(test_limits),
                cmocka_unit_test(test_corpus),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
