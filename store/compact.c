/* compact.c: log compaction. The log is rotated to a segment at seq S, a
 * forked child writes the tables as they were at S (its copy-on-write view
 * of memory) to a temporary snapshot, and a waiting thread renames it into
 * place and deletes the segments it covers, while the caller's loop goes
 * on appending to the new log. See store.h for the steps and their
 * crash guarantees. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "store/wal_int.h"
#include "term/mem.h"

store_step_t store_test_fail_step;
int store_test_fail_errno;
store_step_t store_test_crash_step;

/* The test hooks: a crash kills the process here; a failure returns its
 * errno once. 0 to go on. */
static int step(store_step_t st)
{
    if (store_test_crash_step == st)
        raise(SIGKILL);
    if (store_test_fail_step == st) {
        store_test_fail_step = STORE_STEP_NONE;
        return store_test_fail_errno ? store_test_fail_errno : -EIO;
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int wal_segment_name(const char *name, uint64_t *seq)
{
    size_t pl = sizeof(WAL_SEG_PREFIX) - 1;
    if (strncmp(name, WAL_SEG_PREFIX, pl) != 0)
        return 0;
    const char *p = name + pl;
    if (*p < '1' || *p > '9')
        return 0;
    uint64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > WAL_SEQ_MAX / 10)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > WAL_SEQ_MAX)
        return 0;
    *seq = v;
    return 1;
}

/* What the child tells the parent through the pipe. */
typedef struct child_result {
    int32_t rc;
    uint64_t bytes, objects;
} child_result_t;

struct store_compact {
    pid_t pid;
    int pipe_rd;
    int dir_fd;              /* our own, so the thread never touches s */
    uint64_t seq;
    uint64_t log_bytes;      /* what the snapshot makes obsolete */
    uint64_t t0, begin_ns, total_ns;
    child_result_t res;
    int rc;
    int waited;
    pthread_mutex_t lock;    /* orders store_compact_abort() before reaping */
    int reaped;
};

static int fsync_fd(int fd)
{
    return fsync(fd) < 0 ? -errno : 0;
}

/* ---- The child --------------------------------------------------------- */

static int write_full(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Closes every descriptor but the ones in keep (ascending): the parent's
 * sockets must close when the parent closes them, not when we exit. */
static void close_others(const int *keep, size_t n)
{
    unsigned lo = 3;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned)keep[i] < lo)
            continue;
        if ((unsigned)keep[i] > lo)
            (void)close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    (void)close_range(lo, ~0u, 0);
}

/* Runs in the forked child: memory is the tables as they were at seq. The
 * child only writes to descriptors it was given; renaming is the parent's
 * job, so a child outliving a crashed parent changes no file name. */
static void child_main(store_t *s, pid_t parent, int snap_fd, int old_log_fd,
                       int pipe_wr, uint64_t seq, store_fsync_t policy)
{
    child_result_t r = {0};
    /* Die with the parent: its successor may be starting on this dir. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    int keep[3] = { snap_fd, old_log_fd, pipe_wr };
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    close_others(keep, 3);

    /* The old log's tail written since the last periodic sync: the new
     * snapshot makes it obsolete, but until then it is the only copy. */
    if (old_log_fd >= 0 && policy != STORE_FSYNC_NEVER && fdatasync(old_log_fd) < 0)
        r.rc = -errno;
    if (r.rc == 0 && store_test_crash_step == STORE_STEP_WRITE) {
        /* A crash in mid-write: half a snapshot on disk, parent gone. */
        uint64_t b = 0, o = 0;
        (void)wal_snapshot_write(s, snap_fd, seq, &b, &o);
        if (b > 16 && ftruncate(snap_fd, (off_t)(b / 2)) == 0)
            (void)fdatasync(snap_fd);
        kill(parent, SIGKILL);
        raise(SIGKILL);
    }
    if (r.rc == 0)
        r.rc = step(STORE_STEP_WRITE);
    if (r.rc == 0)
        r.rc = wal_snapshot_write(s, snap_fd, seq, &r.bytes, &r.objects);
    if (r.rc == 0 && store_test_crash_step == STORE_STEP_SYNC) {
        kill(parent, SIGKILL);
        raise(SIGKILL);
    }
    if (r.rc == 0)
        r.rc = step(STORE_STEP_SYNC);
    if (r.rc == 0)
        r.rc = fsync_fd(snap_fd);
    (void)write_full(pipe_wr, &r, sizeof r);
    _exit(0);
}

/* ---- Begin: on the caller's loop --------------------------------------- */

/* After a failure the next attempt waits for the log to grow by the
 * threshold again, so a full disk is not retried on every loop turn. */
static uint64_t threshold(const store_durable_t *d)
{
    uint64_t at = d->compact_at;
    if (!at) {
        at = 2 * d->snap_bytes;
        if (at < STORE_COMPACT_MIN)
            at = STORE_COMPACT_MIN;
    }
    return at;
}

static void failed(store_t *s, store_durable_t *d)
{
    d->compact_retry = store_log_bytes(s) + threshold(d);
    d->stats.failed++;
}

/* Renames the log to its segment name and starts a new one. On 0,
 * *old_fd is the old log's descriptor (the caller closes it); on failure
 * the log is as it was, or the store is broken if it could not be put
 * back. Nothing to rotate (an empty log) is 0 with *old_fd -1. */
static int rotate(store_durable_t *d, int *old_fd, uint64_t *old_bytes)
{
    char seg[64];
    int rc;
    *old_fd = -1;
    *old_bytes = 0;
    if (d->log_end <= WAL_MAGIC_LEN)
        return 0;
    snprintf(seg, sizeof seg, WAL_SEG_PREFIX "%" PRIu64, d->next_seq - 1);
    if ((rc = step(STORE_STEP_ROTATE)) < 0)
        return rc;
    /* NOREPLACE: a segment of that name holds records too (it cannot,
     * since seqs grow, but a lost segment would be a lost write). */
    if (renameat2(d->dir_fd, WAL_LOG_FILE, d->dir_fd, seg, RENAME_NOREPLACE) < 0)
        return -errno;
    int fd = -1;
    rc = step(STORE_STEP_NEWLOG);
    if (rc == 0) {
        fd = openat(d->dir_fd, WAL_LOG_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            rc = -errno;
    }
    if (rc == 0) {
        errno = 0;
        if (pwrite(fd, WAL_LOG_MAGIC, WAL_MAGIC_LEN, 0) != WAL_MAGIC_LEN)
            rc = errno ? -errno : -EIO;
    }
    /* The rename and the new file must be durable before the first write
     * to the new log is acknowledged. */
    if (rc == 0)
        rc = fsync_fd(d->dir_fd);
    if (rc < 0) {
        if (fd >= 0) {
            close(fd);
            (void)unlinkat(d->dir_fd, WAL_LOG_FILE, 0);
        }
        if (renameat(d->dir_fd, seg, d->dir_fd, WAL_LOG_FILE) < 0)
            d->broken = 1; /* appends would go to a file named seg */
        return rc;
    }
    *old_fd = d->log_fd;
    *old_bytes = d->log_end - WAL_MAGIC_LEN;
    d->log_fd = fd;
    d->log_end = WAL_MAGIC_LEN;
    d->dirty = 0;
    return 0;
}

int store_compact_begin(store_t *s, store_compact_t **out)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d)
        return -EINVAL;
    if (d->broken)
        return -EIO;
    if (d->compacting)
        return -EBUSY;
    uint64_t t0 = now_ns();
    /* Records an open batch holds are applied in memory, so the snapshot
     * will contain them: put them in the log first, so seqs and log agree.
     * Under --fsync always they become durable before the log rotates, as
     * the batch's end would have made them (it syncs only the new log). */
    int rc = wal_batch_write(d);
    if (rc < 0)
        return rc;
    if (d->dirty && d->policy == STORE_FSYNC_ALWAYS && (rc = wal_sync(d)) < 0)
        return rc;
    store_compact_t *c = mem_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->pipe_rd = c->dir_fd = -1;
    c->pid = -1;
    c->t0 = t0;
    c->seq = d->next_seq - 1;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        mem_free(c);
        return -ENOMEM;
    }
    int snap_fd = -1, old_fd = -1, pfd[2] = { -1, -1 };
    uint64_t old_bytes = 0;
    c->dir_fd = fcntl(d->dir_fd, F_DUPFD_CLOEXEC, 3);
    if (c->dir_fd < 0) {
        rc = -errno;
        goto fail;
    }
    snap_fd = openat(d->dir_fd, WAL_SNAP_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (snap_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail_tmp;
    }
    if ((rc = rotate(d, &old_fd, &old_bytes)) < 0)
        goto fail_tmp;
    d->seg_bytes += old_bytes;
    c->log_bytes = d->seg_bytes;
    if ((rc = step(STORE_STEP_FORK)) < 0)
        goto fail_tmp;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto fail_tmp;
    }
    if (pid == 0)
        child_main(s, parent, snap_fd, old_fd, pfd[1], c->seq, d->policy);
    /* The child's test hooks fired in the child's copy of them. */
    if (store_test_fail_step == STORE_STEP_WRITE || store_test_fail_step == STORE_STEP_SYNC)
        store_test_fail_step = STORE_STEP_NONE;
    c->pid = pid;
    c->pipe_rd = pfd[0];
    close(pfd[1]);
    close(snap_fd);
    if (old_fd >= 0)
        close(old_fd);
    d->compacting = c;
    d->stats.running = 1;
    c->begin_ns = now_ns() - t0;
    if (c->begin_ns > d->stats.max_begin_ns)
        d->stats.max_begin_ns = c->begin_ns;
    *out = c;
    return 0;

fail_tmp:
    close(snap_fd);
    (void)unlinkat(d->dir_fd, WAL_SNAP_TMP, 0);
fail:
    if (pfd[0] >= 0) {
        close(pfd[0]);
        close(pfd[1]);
    }
    if (old_fd >= 0)
        close(old_fd);  /* rotated: the segment waits for the next one */
    if (c->dir_fd >= 0)
        close(c->dir_fd);
    pthread_mutex_destroy(&c->lock);
    mem_free(c);
    failed(s, d);
    return rc;
}

/* ---- Wait: any thread -------------------------------------------------- */

/* Deletes the segments the snapshot at seq covers. */
static int delete_segments(int dir_fd, uint64_t seq)
{
    /* A descriptor of its own: a dup would share the read position. */
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        uint64_t sq;
        if (!wal_segment_name(e->d_name, &sq) || sq > seq)
            continue;
        if ((rc = step(STORE_STEP_UNLINK)) < 0)
            break;
        if (unlinkat(dir_fd, e->d_name, 0) < 0 && errno != ENOENT) {
            rc = -errno;
            break;
        }
    }
    closedir(dp);
    return rc;
}

int store_compact_wait(store_compact_t *c)
{
    if (c->waited)
        return c->rc;
    size_t got = 0;
    int rc = 0;
    while (got < sizeof c->res) {
        ssize_t n = read(c->pipe_rd, (char *)&c->res + got, sizeof c->res - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    pthread_mutex_lock(&c->lock);
    c->reaped = 1;
    pthread_mutex_unlock(&c->lock);
    int st = 0;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (got < sizeof c->res)
        rc = -ECHILD;
    else if (c->res.rc < 0)
        rc = c->res.rc;
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        rc = -ECHILD;
    if (rc == 0 && (rc = step(STORE_STEP_RENAME)) == 0 &&
        renameat(c->dir_fd, WAL_SNAP_TMP, c->dir_fd, WAL_SNAP_FILE) < 0)
        rc = -errno;
    if (rc < 0) {
        (void)unlinkat(c->dir_fd, WAL_SNAP_TMP, 0);
    } else {
        /* The snapshot is in place once the directory says so; only then
         * may the log it replaces go. A failure from here on leaves a
         * valid snapshot: the segments it covers go at the next open. */
        rc = step(STORE_STEP_DIRSYNC);
        if (rc == 0)
            rc = fsync_fd(c->dir_fd);
        if (rc == 0)
            rc = delete_segments(c->dir_fd, c->seq);
    }
    c->rc = rc;
    c->waited = 1;
    c->total_ns = now_ns() - c->t0;
    return rc;
}

void wal_compact_discard(store_compact_t *c)
{
    if (!c)
        return;
    store_compact_abort(c);
    (void)store_compact_end(NULL, c, NULL);
}

void store_compact_abort(store_compact_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (!c->reaped && c->pid > 0)
        kill(c->pid, SIGKILL);
    pthread_mutex_unlock(&c->lock);
}

/* ---- End: on the caller's loop ----------------------------------------- */

int store_compact_end(store_t *s, store_compact_t *c, store_compact_info_t *info)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    int rc = store_compact_wait(c);  /* returns at once if waited */
    if (d && d->compacting == c) {
        d->compacting = NULL;
        d->stats.running = 0;
        if (rc == 0) {
            d->snap_bytes = c->res.bytes;
            /* Segments rotated meanwhile: none (one compaction at a time). */
            d->seg_bytes = d->seg_bytes >= c->log_bytes ? d->seg_bytes - c->log_bytes : 0;
            d->compact_retry = 0;
            d->stats.done++;
            d->stats.last_ns = c->total_ns;
            d->stats.total_ns += c->total_ns;
            if (c->total_ns > d->stats.max_ns)
                d->stats.max_ns = c->total_ns;
        } else {
            failed(s, d);
        }
    }
    if (info) {
        info->rc = rc;
        info->seq = c->seq;
        info->snap_bytes = c->res.bytes;
        info->log_bytes = c->log_bytes;
        info->objects = c->res.objects;
        info->begin_ns = c->begin_ns;
        info->total_ns = c->total_ns;
    }
    close(c->pipe_rd);
    close(c->dir_fd);
    pthread_mutex_destroy(&c->lock);
    mem_free(c);
    return rc;
}

int store_snapshot(store_t *s)
{
    store_compact_t *c;
    int rc = store_compact_begin(s, &c);
    if (rc < 0)
        return rc;
    (void)store_compact_wait(c);
    return store_compact_end(s, c, NULL);
}

void store_set_compact_at(store_t *s, uint64_t bytes)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (d)
        d->compact_at = bytes;
}

int store_compact_due(store_t *s)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d || d->broken || d->compacting)
        return 0;
    uint64_t at = threshold(d);
    if (d->compact_retry > at)
        at = d->compact_retry;
    return store_log_bytes(s) >= at;
}

void store_compact_stats(store_t *s, store_compact_stats_t *out)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    memset(out, 0, sizeof *out);
    if (d)
        *out = d->stats;
}
