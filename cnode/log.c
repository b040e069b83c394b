/* log.c: stderr log lines with UTC timestamp and level (log.h). */
#include "cnode/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int log_level = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_parse_level(const char *s, int *level)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *level = LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void log_set_level(int level)
{
    if (level < LOG_ERROR)
        level = LOG_ERROR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    log_level = level;
}

void log_line(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s etsd: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                     level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line, so lines from a crash-time handler don't interleave. */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

/* ---- Rate limits ---------------------------------------------------------- */

static log_limit_t *limits; /* limits with dropped lines, for log_limit_flush() */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int log_limit_admit(log_limit_t *l, uint64_t now, unsigned long *summary)
{
    *summary = 0;
    if (l->used == 0) {
        l->start_ms = now; /* the first line opens the window */
    } else if (now - l->start_ms >= l->window_ms) {
        *summary = l->dropped;
        l->start_ms = now;
        l->used = 0;
        l->dropped = 0;
    }
    if (l->used < l->burst) {
        l->used++;
        return 1;
    }
    l->dropped++;
    l->last_drop_ms = now;
    return 0;
}

static void write_summary(log_limit_t *l, unsigned long n, uint64_t window_ms)
{
    log_line(l->level, "%lu more in the last %llu s: %s (last: %s)", n,
             (unsigned long long)((window_ms + 999) / 1000), l->what, l->last);
}

void log_limited(log_limit_t *l, const char *fmt, ...)
{
    if (l->level > log_level)
        return;
    unsigned long summary;
    uint64_t start = l->start_ms, now = now_ms();
    int ok = log_limit_admit(l, now, &summary);
    if (summary)
        write_summary(l, summary, now - start);
    va_list ap;
    va_start(ap, fmt);
    if (ok) {
        char line[1800];
        vsnprintf(line, sizeof line, fmt, ap);
        log_line(l->level, "%s", line);
    } else {
        vsnprintf(l->last, sizeof l->last, fmt, ap);
        if (!l->listed) {
            l->listed = 1;
            l->next = limits;
            limits = l;
        }
    }
    va_end(ap);
}

void log_limit_flush(int force)
{
    uint64_t now = now_ms();
    for (log_limit_t **pp = &limits; *pp;) {
        log_limit_t *l = *pp;
        if (l->dropped == 0) {
            *pp = l->next;
            l->listed = 0;
            continue;
        }
        int over = now - l->start_ms >= l->window_ms;
        if (force || over || now - l->last_drop_ms >= LOG_LIMIT_QUIET_MS) {
            /* Its summary now. When the window is over the next line
             * opens a new one; after a pause the window goes on. */
            write_summary(l, l->dropped, now - l->start_ms);
            if (over)
                l->used = 0;
            l->dropped = 0;
            *pp = l->next;
            l->listed = 0;
            continue;
        }
        pp = &l->next;
    }
}
