/* SPDX-License-Identifier: MIT */
/* The adversarial pattern corpus shared by tests/unit/test_regex.c (which asserts the bounds)
 * and tests/bench/bench_regex.c (which prints the times): patterns that blew up glibc's
 * regcomp/regexec (issue 17), classic catastrophic-backtracking patterns, nested
 * quantifiers, alternations, counted repeats, and patterns generated from combinations of
 * atoms, quantifiers and tails. Every pattern is at most 256 bytes. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const regex_corpus_fixed[] = {
        /* from issue 17 */
        "a?+?+?+?+?+?+?+?+?+?+?+",
        "a{,5}++++++++++",
        "((())+++++++++++MMMMMMMMMMMM(a))))))))))))))",
        "a+++++++++++++++++++++++",
        /* catastrophic backtracking */
        "(a+)+$",
        "(a+)+b",
        "(a*)*$",
        "(a|aa)*$",
        "(a|a)*$",
        "(a|a?)+$",
        "(.*a){12}",
        "^(a+)+$",
        "(x+x+)+y",
        "(\\w+\\s?)+$",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
        "(a|b|ab)*c",
        "(?:a|ab|b)*$",
        "(.*)*$",
        "(.*?)*$",
        "(a*)+$",
        "(a?){30}a{30}",
        "a*a*a*a*a*a*$",
        "(?:a*)*(?:a*)*$",
        ".*.*.*.*.*!",
        "(.*,){11}P",
        "\\w*\\w*\\w*$",
        "[a-z]*[0-9]",
        "a*$",
        "(?=(a+))*b",
        "(?:(?=a*)a)*$",
        "(a(?=a*$))*b",
        /* counted repeats, nested */
        "(a{1,65535}){1,65535}",
        "((a{100}){100}){100}",
        "(x{99}){100}",
        "a{65535}",
        "(a{2,}){2,}{2,}$",
        "(?:a{0,1000}){0,1000}$",
        "((a{1,10}){1,10}){1,10}$",
        "[ab]{1,65535}c",
        "(a{1000}|b{1000}){1000}",
        /* alternations */
        "(a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z|aa|ab)*$",
        "(?:a|a|a|a|a|a|a|a|a|a|a|a|a|a|a|a)*$",
        "(foo|bar|baz|a)+!",
        /* nesting, recursion, lookaround */
        "((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))",
        "(?:(?:(?:(?:(?:(?:(?:(?:(?:(?:a*)*)*)*)*)*)*)*)*)*)*$",
        "(a|(?R))*$",
        "(?1)(a|b(?1))*$",
        "(?<=a)(?=a*$)(?!a*!)",
        "((?=a)a)*$",
        "(?>a+)+$",
        "(a++)*$",
        /* back-references (refused) and oddities */
        "(a)\\1",
        "(a*)\\1*$",
        "(?<n>a+)\\k<n>+$",
        "\\C",
        "[[:alpha:]]+\\d",
        "\\uFFFF*$",
        "(*LIMIT_MATCH=99999999)(a+)+$",
        "(*LIMIT_DEPTH=99999999)(a|b)*$",
        "(*LIMIT_HEAP=99999999)(a|b)*$",
        "(*NO_AUTO_POSSESS)a*a*a*$",
        "(*NO_START_OPT)(a+)+$",
};

/* Pieces the generated patterns are made of. */
static const char *const regex_corpus_atoms[] = { "a", "(a)", "(a|aa)", "[ab]", "(?:a*)", ".", "\\w" };
static const char *const regex_corpus_quants[] = { "*", "+", "?", "{2,}", "{1,999}", "*?", "++", "{3}" };
static const char *const regex_corpus_tails[] = { "$", "!", "b", "(?!a)" };

/* Call fn(pattern, arg) for every pattern of the corpus: the fixed ones, then of the
 * generated ones, (atom quant) quant' tail and ((atom quant) quant')quant'' tail for every
 * combination, every gen_every-th one. */
static inline void
regex_corpus_each(void (*fn)(const char *pattern, void *arg), void *arg, size_t gen_every)
{
        size_t i, a, q1, q2, t, na, nq, nt, k = 0;
        char p[257];

        for (i = 0; i < sizeof(regex_corpus_fixed) / sizeof(*regex_corpus_fixed); i++)
                fn(regex_corpus_fixed[i], arg);
        na = sizeof(regex_corpus_atoms) / sizeof(*regex_corpus_atoms);
        nq = sizeof(regex_corpus_quants) / sizeof(*regex_corpus_quants);
        nt = sizeof(regex_corpus_tails) / sizeof(*regex_corpus_tails);
        for (a = 0; a < na; a++)
                for (q1 = 0; q1 < nq; q1++)
                        for (q2 = 0; q2 < nq; q2++)
                                for (t = 0; t < nt; t++) {
                                        snprintf(p, sizeof(p), "(%s%s)%s%s", regex_corpus_atoms[a],
                                                 regex_corpus_quants[q1], regex_corpus_quants[q2],
                                                 regex_corpus_tails[t]);
                                        if (k++ % gen_every == 0)
                                                fn(p, arg);
                                        snprintf(p, sizeof(p), "((%s%s)%s)%s%s", regex_corpus_atoms[a],
                                                 regex_corpus_quants[q1], regex_corpus_quants[q2],
                                                 regex_corpus_quants[(q1 + q2) % nq], regex_corpus_tails[t]);
                                        if (k++ % gen_every == 0)
                                                fn(p, arg);
                                }
}

/* The 1 MiB subjects every pattern is matched against: 'a's ending in '!' (what the
 * backtracking patterns above blow up on), and "ab" repeated ending in "!c". */
#define REGEX_CORPUS_SUBJECT_LEN (1024 * 1024)
static inline char *
regex_corpus_subject(int which)
{
        char *s = malloc(REGEX_CORPUS_SUBJECT_LEN);
        size_t i;

        if (!s)
                return NULL;
        for (i = 0; i < REGEX_CORPUS_SUBJECT_LEN; i++)
                s[i] = which == 0 ? 'a' : "ab"[i % 2];
        s[REGEX_CORPUS_SUBJECT_LEN - 1] = which == 0 ? '!' : 'c';
        if (which != 0)
                s[REGEX_CORPUS_SUBJECT_LEN - 2] = '!';
        return s;
}

/* CPU time used by this thread, in milliseconds (what the search budget counts). */
static inline double
regex_corpus_cpu_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
