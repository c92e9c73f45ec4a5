/*
 * Diagnostic logging: one line per event on stderr with a UTC timestamp,
 * the level and the process id, in the spirit of nginx's error.log.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

mom_log_level_t mom_log_level = MOM_LOG_INFO;

static const char *const mom_log_names[] = {"error", "warn", "info", "debug"};

int
mom_log_parse_level(const char *name, mom_log_level_t *out)
{
    for (size_t i = 0; i < sizeof(mom_log_names) / sizeof(mom_log_names[0]);
         i++) {
        if (strcmp(name, mom_log_names[i]) == 0) {
            *out = (mom_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void
mom_log(mom_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;

    if (level > mom_log_level) {
        return;
    }

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - n,
                  ".%03ldZ [%s] momd[%d]: ", (long)(tv.tv_usec / 1000),
                  mom_log_names[level], (int)getpid());

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);

    /* One write per line so that concurrent writers do not interleave. */
    n = strlen(line);
    if (n == sizeof(line) - 1) {
        n--;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nothing sensible to do */
    }
}
