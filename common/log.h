/* Logging for the daemons and tools: stderr, or journald when running under systemd.
 * Never pass a secret to these functions. */
#pragma once

#include <stdbool.h>
#include <syslog.h>
#include "macros.h"

/* Set the program name and the destination. to_journal: write through sd_journal_print
 * (with SYSLOG_IDENTIFIER) instead of stderr. */
void ab_log_init(const char *ident, bool to_journal);
/* Lowest priority that is printed (LOG_DEBUG .. LOG_ERR). Default LOG_INFO. */
void ab_log_set_max_level(int prio);
void ab_log(int prio, const char *fmt, ...) AB_PRINTF(2, 3);

#define log_error(...) ab_log(LOG_ERR, __VA_ARGS__)
#define log_warning(...) ab_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) ab_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) ab_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) ab_log(LOG_DEBUG, __VA_ARGS__)
