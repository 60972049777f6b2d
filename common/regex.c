/* SPDX-License-Identifier: MIT */
/* Regular expressions with bounded cost: PCRE2 with compile and match limits (see regex.h). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/regex.h"

struct ab_regex {
        pcre2_code *code;
};

/* The CPU-time budget of one search. The callout (compiled into every item of every pattern
 * with PCRE2_AUTO_CALLOUT) runs between any two steps of the matcher, so no step between two
 * checks does more than one item's work (a scan of at most the subject, or a counted repeat
 * of at most 65535 characters). Reading the thread's CPU clock is a system call, so each
 * callout counts: every BUDGET_CHECK_WORK callouts (fewer when the matcher moved far in the
 * subject) it reads the coarse monotonic clock (vDSO, a few ns); when wall time passes the
 * deadline, the CPU clock says how much of it this thread actually ran, and the deadline
 * moves by what is left. On a loaded machine a search is therefore never cut short for time
 * it spent waiting for a CPU. */
struct budget {
        int64_t cpu_start_ns;
        int64_t deadline_ns; /* CLOCK_MONOTONIC_COARSE */
        size_t last_pos;     /* subject offset at the previous callout */
        unsigned work;       /* callouts (+ distance moved / 2 KiB) since a clock read */
        bool expired;
};

#define BUDGET_CHECK_WORK 64
#define BUDGET_MOVE_UNIT 2048
#define NSEC_PER_MSEC ((int64_t)AB_NSEC_PER_MSEC)
/* What the callout returns to stop a search that used its CPU time (passed through by
 * pcre2_match as its result). */
#define CALLOUT_EXPIRED PCRE2_ERROR_CALLOUT

/* Nanoseconds on clock id, signed for the arithmetic here. */
static int64_t
clock_ns(clockid_t id)
{
        return (int64_t)ab_clock_ns(id);
}

/* PCRE2 callout: 0 to go on, CALLOUT_EXPIRED once the search used AB_REGEX_MATCH_CPU_MS. */
static int
budget_callout(pcre2_callout_block *block, void *data)
{
        struct budget *b = data;
        int64_t now, used, budget = AB_REGEX_MATCH_CPU_MS * NSEC_PER_MSEC;
        size_t moved;

        moved = block->current_position > b->last_pos ? block->current_position - b->last_pos
                                                      : b->last_pos - block->current_position;
        b->last_pos = block->current_position;
        b->work += 1 + (unsigned)(moved / BUDGET_MOVE_UNIT);
        if (b->work < BUDGET_CHECK_WORK)
                return 0;
        b->work = 0;
        now = clock_ns(CLOCK_MONOTONIC_COARSE);
        if (now < b->deadline_ns)
                return 0;
        used = clock_ns(CLOCK_THREAD_CPUTIME_ID) - b->cpu_start_ns;
        if (used >= budget) {
                b->expired = true;
                return CALLOUT_EXPIRED;
        }
        b->deadline_ns = now + (budget - used);
        return 0;
}

int
ab_regex_compile(const char *pattern, size_t len, unsigned flags, struct ab_regex **ret_re, char *err,
                 size_t errlen)
{
        pcre2_compile_context *cctx = NULL;
        pcre2_code *code = NULL;
        struct ab_regex *re;
        uint32_t options, backrefs = 0;
        size_t size = 0;
        int errcode, r;
        PCRE2_SIZE erroffset;
        char msg[160];

        if (!err)
                errlen = 0;
        if (len > AB_REGEX_MAX_LEN) {
                if (errlen)
                        snprintf(err, errlen, "pattern longer than %d bytes", AB_REGEX_MAX_LEN);
                return -EINVAL;
        }
        cctx = pcre2_compile_context_create(NULL);
        if (!cctx)
                return -ENOMEM;
        pcre2_set_max_pattern_length(cctx, AB_REGEX_MAX_LEN);
        pcre2_set_parens_nest_limit(cctx, AB_REGEX_MAX_NESTING);
#if PCRE2_MAJOR > 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR >= 46)
        pcre2_set_max_pattern_compiled_length(cctx, AB_REGEX_MAX_COMPILED);
#endif
        /* UTF-8 with invalid sequences in subjects allowed (they match nothing); a callout at
         * every item (the CPU-time budget). For expressions: ECMA-262's `$` (the very end
         * only) and `\uHHHH` (`\u{H...}` where PCRE2 has it); no \C (it splits characters). */
        options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_AUTO_CALLOUT;
        if (flags & AB_REGEX_ICASE)
                options |= PCRE2_CASELESS;
        if (flags & AB_REGEX_LITERAL) {
                options |= PCRE2_LITERAL;
        } else {
                options |= PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX | PCRE2_NEVER_BACKSLASH_C;
#ifdef PCRE2_EXTRA_ALT_BSUX
                pcre2_set_compile_extra_options(cctx, PCRE2_EXTRA_ALT_BSUX);
#endif
        }
        code = pcre2_compile((PCRE2_SPTR)pattern, len, options, &errcode, &erroffset, cctx);
        if (!code) {
                if (errcode == PCRE2_ERROR_HEAP_FAILED) {
                        r = -ENOMEM;
                        goto out;
                }
                if (pcre2_get_error_message(errcode, (PCRE2_UCHAR *)msg, sizeof(msg)) < 0)
                        snprintf(msg, sizeof(msg), "error %d", errcode);
                if (errlen)
                        snprintf(err, errlen, "%s at offset %zu", msg, (size_t)erroffset);
                r = -EINVAL;
                goto out;
        }
        if (pcre2_pattern_info(code, PCRE2_INFO_BACKREFMAX, &backrefs) == 0 && backrefs > 0) {
                if (errlen)
                        snprintf(err, errlen, "back-references are not allowed");
                r = -EINVAL;
                goto out;
        }
        if (pcre2_pattern_info(code, PCRE2_INFO_SIZE, &size) != 0 || size > AB_REGEX_MAX_COMPILED) {
                if (errlen)
                        snprintf(err, errlen, "pattern too large once compiled (over %d bytes)",
                                 AB_REGEX_MAX_COMPILED);
                r = -EINVAL;
                goto out;
        }
        re = calloc(1, sizeof(*re));
        if (!re) {
                r = -ENOMEM;
                goto out;
        }
        re->code = code;
        code = NULL;
        *ret_re = re;
        r = 0;
out:
        pcre2_code_free(code);
        pcre2_compile_context_free(cctx);
        return r;
}

int
ab_regex_search(const struct ab_regex *re, const char *subject, size_t len, size_t *ret_start,
                size_t *ret_end)
{
        pcre2_match_context *mctx = NULL;
        pcre2_match_data *md = NULL;
        struct budget b = { .expired = false };
        PCRE2_SIZE *ov;
        int rc, r;

        mctx = pcre2_match_context_create(NULL);
        md = pcre2_match_data_create(1, NULL);
        if (!mctx || !md) {
                r = -ENOMEM;
                goto out;
        }
        pcre2_set_match_limit(mctx, AB_REGEX_MATCH_LIMIT);
        pcre2_set_depth_limit(mctx, AB_REGEX_DEPTH_LIMIT);
        pcre2_set_heap_limit(mctx, AB_REGEX_HEAP_LIMIT_KIB);
        pcre2_set_callout(mctx, budget_callout, &b);
        b.cpu_start_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        b.deadline_ns = clock_ns(CLOCK_MONOTONIC_COARSE) + AB_REGEX_MATCH_CPU_MS * NSEC_PER_MSEC;

        rc = pcre2_match(re->code, (PCRE2_SPTR)(subject ? subject : ""), subject ? len : 0, 0, 0, md, mctx);
        if (rc >= 0) {
                ov = pcre2_get_ovector_pointer(md);
                if (ret_start)
                        *ret_start = ov[0];
                if (ret_end)
                        *ret_end = ov[1];
                r = 1;
        } else if (rc == PCRE2_ERROR_NOMATCH) {
                r = 0;
        } else if (rc == PCRE2_ERROR_MATCHLIMIT || (rc == CALLOUT_EXPIRED && b.expired)) {
                r = -ETIME;
        } else if (rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
                r = -E2BIG;
        } else if (rc == PCRE2_ERROR_RECURSELOOP) {
                r = -ELOOP;
        } else if (rc == PCRE2_ERROR_NOMEMORY) {
                r = -ENOMEM;
        } else {
                r = -EINVAL;
        }
out:
        pcre2_match_data_free(md);
        pcre2_match_context_free(mctx);
        return r;
}

const char *
ab_regex_strerror(int r)
{
        switch (r) {
        case -ETIME: return "the pattern took too long to match (time or backtracking limit)";
        case -E2BIG: return "the pattern needed too much memory to match (depth or heap limit)";
        case -ELOOP: return "the pattern recursed without advancing";
        case -ENOMEM: return "out of memory";
        default: return "the pattern could not be matched";
        }
}

void
ab_regex_free(struct ab_regex *re)
{
        if (!re)
                return;
        pcre2_code_free(re->code);
        free(re);
}
