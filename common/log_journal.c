/* SPDX-License-Identifier: MIT */
/* The journald sink of common/log.c, in its own library (libabjournal) so that only the
 * daemons link libsystemd for it: the module library and its workers log to stderr. */
#include "config.h"

#include <systemd/sd-journal.h>

#include "common/log.h"

/* One message to journald with its priority and SYSLOG_IDENTIFIER. */
static void
journal_sink(int prio, const char *ident, const char *msg)
{
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%i", prio, "SYSLOG_IDENTIFIER=%s", ident, NULL);
}

void
ab_log_use_journal(void)
{
        ab_log_set_journal_sink(journal_sink);
}
