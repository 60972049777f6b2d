/* SPDX-License-Identifier: MIT */
/* Benchmark of common/regex.c over the adversarial corpus (tests/unit/regex_corpus.h): the
 * time to compile each pattern and to search each 1 MiB subject, as CPU time of this thread.
 * Prints the slowest patterns, the maximums and how many searches ended in a limit error.
 * The target (issue 17): compile <= 10 ms, search <= 100 ms, or a clear refusal/error.
 * Run by `make bench` (never timed inside tests); tests/unit/test_regex.c asserts the bounds
 * with generous margins. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/regex.h"
#include "tests/unit/regex_corpus.h"

struct stats {
        char *subject[2];
        size_t patterns, refused, searches, limited;
        double max_compile_ms, max_search_ms, total_search_ms;
        char slowest[257];
};

/* Compile and search one pattern, recording its times in arg (struct stats). */
static void
one(const char *pattern, void *arg)
{
        struct stats *st = arg;
        struct ab_regex *re = NULL;
        char err[256];
        double t0, t;
        int i, r;

        st->patterns++;
        t0 = regex_corpus_cpu_ms();
        r = ab_regex_compile(pattern, strlen(pattern), 0, &re, err, sizeof(err));
        t = regex_corpus_cpu_ms() - t0;
        if (t > st->max_compile_ms)
                st->max_compile_ms = t;
        if (r < 0) {
                st->refused++;
                if (getenv("BENCH_VERBOSE"))
                        printf("refused %-40s %s\n", pattern, err);
                return;
        }
        for (i = 0; i < 2; i++) {
                t0 = regex_corpus_cpu_ms();
                r = ab_regex_search(re, st->subject[i], REGEX_CORPUS_SUBJECT_LEN, NULL, NULL);
                t = regex_corpus_cpu_ms() - t0;
                st->searches++;
                st->total_search_ms += t;
                if (r == -ETIME || r == -E2BIG)
                        st->limited++;
                if (t > st->max_search_ms) {
                        st->max_search_ms = t;
                        snprintf(st->slowest, sizeof(st->slowest), "%s", pattern);
                }
                if (getenv("BENCH_VERBOSE") || t > 50)
                        printf("%8.2f ms  r=%-3d  subject %d  %s\n", t, r, i, pattern);
        }
        ab_regex_free(re);
}

int
main(void)
{
        struct stats st = { .max_compile_ms = 0 };

        st.subject[0] = regex_corpus_subject(0);
        st.subject[1] = regex_corpus_subject(1);
        if (!st.subject[0] || !st.subject[1])
                return 1;
        regex_corpus_each(one, &st, 1);
        printf("regex: %zu patterns (%zu refused), %zu searches of 1 MiB (%zu ended at a limit)\n",
               st.patterns, st.refused, st.searches, st.limited);
        printf("regex: max compile %.3f ms, max search %.2f ms (%s), mean search %.2f ms\n",
               st.max_compile_ms, st.max_search_ms, st.slowest,
               st.searches ? st.total_search_ms / st.searches : 0.0);
        free(st.subject[0]);
        free(st.subject[1]);
        return 0;
}
