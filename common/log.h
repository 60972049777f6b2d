/* SPDX-License-Identifier: MIT */
/* Logging for the daemons and tools: stderr, or journald when running under systemd.
 * Never pass a secret to these functions. */
#pragma once

#include <stdbool.h>
#include <syslog.h>
#include "macros.h"

/* Set the program name and the destination. to_journal: write through sd_journal_print
 * (with SYSLOG_IDENTIFIER) instead of stderr. */
void ab_log_init(const char *ident, bool to_journal);
/* Where journal output goes: a function writing one message with its priority and the
 * program name. common/log_journal.c has the journald one (ab_log_use_journal()); without a
 * sink, to_journal output goes to stderr. */
typedef void (*ab_log_sink_fn)(int prio, const char *ident, const char *msg);
void ab_log_set_journal_sink(ab_log_sink_fn sink);
/* common/log_journal.c (libabjournal, the daemons only): send to_journal output to journald. */
void ab_log_use_journal(void);
/* Lowest priority that is printed (LOG_DEBUG .. LOG_ERR). Default LOG_INFO. */
void ab_log_set_max_level(int prio);
void ab_log(int prio, const char *fmt, ...) AB_PRINTF(2, 3);

#define log_error(...) ab_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) ab_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) ab_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) ab_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) ab_log(LOG_DEBUG, __VA_ARGS__)
