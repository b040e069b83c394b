/* log.h: etsd's log lines on stderr, one per event, with a level:
 *   2026-01-01T12:00:00.123Z warn etsd: peer@host: handshake: wrong cookie
 * Lines below the current level are not formatted at all. */
#ifndef ETSD_LOG_H
#define ETSD_LOG_H

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* The current level; lines with a higher level are dropped. Default info. */
extern int log_level;

/* Parses "error", "warn", "info" or "debug"; -EINVAL for anything else. */
int log_parse_level(const char *s, int *level);

void log_set_level(int level);

/* Writes one line (printf format, no trailing newline needed). */
void log_line(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_line(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  do { if (log_level >= LOG_WARN)  log_line(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_level >= LOG_INFO)  log_line(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level >= LOG_DEBUG) log_line(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
