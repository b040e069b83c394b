/* log.h: etsd's log lines on stderr, one per event, with a level:
 *   2026-01-01T12:00:00.123Z warn etsd: peer@host: handshake: wrong cookie
 * Lines below the current level are not formatted at all. */
#ifndef ETSD_LOG_H
#define ETSD_LOG_H

#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* The current level; lines with a higher level are dropped. Default info. */
extern int log_level;

/* Parses "error", "warn", "info" or "debug"; -EINVAL for anything else. */
int log_parse_level(const char *s, int *level);

void log_set_level(int level);

/* Writes one line (printf format, no trailing newline needed). */
void log_line(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Rate limits -------------------------------------------------------
 * A line that a flood repeats once per connection (3,000 idle sockets give
 * 3,000 handshake timeouts) goes through a log_limit_t: at most burst lines
 * per window_ms are written; the rest are counted, and one summary line
 * says how many there were, with the last of them:
 *   ... warn etsd: 2950 more in the last 60 s: incoming connections that
 *   failed during setup (last: 127.0.0.1:50712: handshake not finished ...)
 * The summary is written by the first log_limited() after the window
 * ends, or by log_limit_flush(), which a periodic timer calls, once the
 * window has ended or the flood has paused for LOG_LIMIT_QUIET_MS (the
 * window goes on: its burst is not granted again). A limit is a static
 * object (LOG_LIMIT_INIT); only the loop's thread uses it. */
#define LOG_LIMIT_QUIET_MS 3000

typedef struct log_limit {
    int level;              /* LOG_* of its lines and its summary */
    const char *what;       /* the summary's description of the lines */
    unsigned burst;         /* lines written per window */
    unsigned window_ms;
    /* state, zero at start */
    uint64_t start_ms;      /* the current window's start */
    unsigned used;          /* lines written in it */
    unsigned long dropped;  /* lines counted instead, not yet summarized */
    uint64_t last_drop_ms;  /* when the last one was counted */
    int listed;             /* on the list log_limit_flush() walks */
    struct log_limit *next;
    char last[256];         /* the last line counted */
} log_limit_t;

#define LOG_LIMIT_INIT(level, what, burst, window_ms) \
    { (level), (what), (burst), (window_ms), 0, 0, 0, 0, 0, NULL, "" }

/* The decision alone (no output), for a line at now_ms (any monotonic
 * clock, in ms): returns 1 if the line may be written, 0 if it is to be
 * counted (dropped is then one higher). When the window had ended, a new
 * one starts at now_ms and *summary gets the count of the old one's
 * dropped lines (else *summary is 0); the caller writes that summary. */
int log_limit_admit(log_limit_t *l, uint64_t now_ms, unsigned long *summary);

/* Writes a line at l->level through limit l (see above). */
void log_limited(log_limit_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes the summary of every limit with lines counted whose window has
 * ended or whose flood has paused (see above); force != 0 writes them all
 * now (at shutdown). */
void log_limit_flush(int force);

#define log_error(...) log_line(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  do { if (log_level >= LOG_WARN)  log_line(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_level >= LOG_INFO)  log_line(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level >= LOG_DEBUG) log_line(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
