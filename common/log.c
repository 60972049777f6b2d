/* SPDX-License-Identifier: MIT */
/* Logging to stderr ("ident[pid]: level: message") or to a journal sink (common/log_journal.c:
 * sd_journal_send with SYSLOG_IDENTIFIER and PRIORITY, linked only into the daemons, so that
 * the module library and its workers do not load libsystemd). Each message is formatted into a fixed stack buffer
 * (longer messages are truncated) and written with one write(2), under a mutex, so lines
 * from several threads never interleave. errno is preserved across calls. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define LOG_LINE_MAX 2048
#define LOG_IDENT_MAX 64

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_ident[LOG_IDENT_MAX] = "agentbroker";
static bool log_to_journal;
static ab_log_sink_fn log_journal_sink; /* NULL: no journal linked in, stderr */
static atomic_int log_max_level = LOG_INFO;

void
ab_log_init(const char *ident, bool to_journal)
{
        pthread_mutex_lock(&log_lock);
        if (ident && *ident)
                snprintf(log_ident, sizeof(log_ident), "%s", ident);
        log_to_journal = to_journal;
        pthread_mutex_unlock(&log_lock);
}

void
ab_log_set_journal_sink(ab_log_sink_fn sink)
{
        pthread_mutex_lock(&log_lock);
        log_journal_sink = sink;
        pthread_mutex_unlock(&log_lock);
}

void
ab_log_set_max_level(int prio)
{
        if (prio < LOG_EMERG)
                prio = LOG_EMERG;
        if (prio > LOG_DEBUG)
                prio = LOG_DEBUG;
        atomic_store(&log_max_level, prio);
}

static const char *
level_name(int prio)
{
        static const char *const names[] = {
                [LOG_EMERG] = "emergency", [LOG_ALERT] = "alert",     [LOG_CRIT] = "critical",
                [LOG_ERR] = "error",       [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",       [LOG_DEBUG] = "debug",
        };
        if (prio < 0 || (size_t)prio >= AB_ELEMENTSOF(names))
                return "info";
        return names[prio];
}

/* Write all of buf to fd, retrying on EINTR and short writes; errors are dropped
 * (there is nowhere left to report them). */
static void
write_all(int fd, const char *buf, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, buf, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                buf += k;
                n -= (size_t)k;
        }
}

void
ab_log(int prio, const char *fmt, ...)
{
        int saved_errno = errno;
        char msg[LOG_LINE_MAX];
        va_list ap;

        prio &= LOG_PRIMASK;
        if (prio > atomic_load(&log_max_level))
                goto out;

        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
                snprintf(msg, sizeof(msg), "(unformattable log message)");

        pthread_mutex_lock(&log_lock);
        if (log_to_journal && log_journal_sink) {
                log_journal_sink(prio, log_ident, msg);
        } else {
                char line[LOG_LINE_MAX + LOG_IDENT_MAX + 48];
                int m = snprintf(line, sizeof(line), "%s[%ld]: %s: %s\n", log_ident, (long)getpid(),
                                 level_name(prio), msg);
                if (m > 0) {
                        size_t len = (size_t)m < sizeof(line) ? (size_t)m : sizeof(line) - 1;
                        if (line[len - 1] != '\n')
                                line[len - 1] = '\n';
                        write_all(STDERR_FILENO, line, len);
                }
        }
        pthread_mutex_unlock(&log_lock);
out:
        errno = saved_errno;
}
