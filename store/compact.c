/* compact.c: log compaction. At seq S the caller's loop switches appends
 * to a log file made ahead of time and forks a child that writes the
 * tables as they were at S (its copy-on-write view of memory) to a
 * temporary snapshot; a waiting thread renames the old log to a segment
 * and the new one into place, renames the snapshot into place and deletes
 * the segments it covers, while the loop goes on appending. See store.h for the steps and their
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

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
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
    int rotated;             /* the loop switched to store.wal.next */
    int rot_rc;              /* the renames of the rotation failed */
    int next_fd;             /* the following store.wal.next, or -1 */
    uint64_t log_bytes;      /* what the snapshot makes obsolete */
    uint64_t t0, begin_ns, begin_cpu_ns, total_ns;
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

int wal_next_create(int dir_fd, int *out, int hooks)
{
    int rc = hooks ? step(STORE_STEP_NEXT) : 0;
    if (rc < 0)
        return rc;
    if (unlinkat(dir_fd, WAL_NEXT_FILE, 0) < 0 && errno != ENOENT)
        return -errno;
    int fd = openat(dir_fd, WAL_NEXT_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    errno = 0;
    if (pwrite(fd, WAL_LOG_MAGIC, WAL_MAGIC_LEN, 0) != WAL_MAGIC_LEN)
        rc = errno ? -errno : -EIO;
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    if (rc == 0)
        rc = fsync_fd(dir_fd);
    if (rc < 0) {
        close(fd);
        (void)unlinkat(dir_fd, WAL_NEXT_FILE, 0);
        return rc;
    }
    *out = fd;
    return 0;
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
 * child writes store.snap.tmp and nothing else; renaming is the parent's
 * job, so a child outliving a crashed parent changes no file name. */
static void child_main(store_t *s, pid_t parent, int dir_fd, int old_log_fd,
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
    int keep[3] = { dir_fd, old_log_fd, pipe_wr };
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
    int snap_fd = -1;
    if (r.rc == 0) {
        snap_fd = openat(dir_fd, WAL_SNAP_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (snap_fd < 0)
            r.rc = -errno;
    }
    if (r.rc == 0 && store_test_crash_step == STORE_STEP_WRITE) {
        /* A crash in mid-write: half a snapshot on disk, parent gone. */
        uint64_t b = 0, o = 0;
        (void)wal_snapshot_write(s, snap_fd, seq, 1, &b, &o);
        if (b > 16 && ftruncate(snap_fd, (off_t)(b / 2)) == 0)
            (void)fdatasync(snap_fd);
        kill(parent, SIGKILL);
        raise(SIGKILL);
    }
    if (r.rc == 0)
        r.rc = step(STORE_STEP_WRITE);
    if (r.rc == 0)
        r.rc = wal_snapshot_write(s, snap_fd, seq, 1, &r.bytes, &r.objects);
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

int store_compact_begin(store_t *s, store_compact_t **out)
{
    store_durable_t *d = s ? store_durable(s) : NULL;
    if (!d)
        return -EINVAL;
    if (d->broken)
        return -EIO;
    if (d->compacting)
        return -EBUSY;
    uint64_t t0 = now_ns(), cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    /* Records an open batch holds are applied in memory, so the snapshot
     * will contain them: put them in the log first, so seqs and log agree.
     * Under --fsync always they become durable before the log switches, as
     * the batch's end would have made them (it syncs only the new log). */
    int rc = wal_batch_write(d);
    if (rc < 0)
        return rc;
    if (d->dirty && d->policy == STORE_FSYNC_ALWAYS && (rc = wal_sync(d)) < 0)
        return rc;
    /* Normally made ahead of time, off the loop, by the last compaction. */
    if (d->next_fd < 0 && (rc = wal_next_create(d->dir_fd, &d->next_fd, 0)) < 0) {
        failed(s, d);
        return rc;
    }
    store_compact_t *c = mem_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->pipe_rd = c->dir_fd = c->next_fd = -1;
    c->pid = -1;
    c->t0 = t0;
    c->seq = d->next_seq - 1;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        mem_free(c);
        return -ENOMEM;
    }
    int pfd[2] = { -1, -1 };
    c->dir_fd = fcntl(d->dir_fd, F_DUPFD_CLOEXEC, 3);
    if (c->dir_fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = step(STORE_STEP_FORK)) < 0)
        goto fail;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto fail;
    }
    if (pid == 0)
        child_main(s, parent, c->dir_fd, d->log_fd, pfd[1], c->seq, d->policy);
    /* The child's test hooks fired in the child's copy of them. */
    if (store_test_fail_step == STORE_STEP_WRITE || store_test_fail_step == STORE_STEP_SYNC)
        store_test_fail_step = STORE_STEP_NONE;
    c->pid = pid;
    c->pipe_rd = pfd[0];
    close(pfd[1]);
    /* Switch logs: appends go on in the file made ahead of time; the
     * thread renames both (store.wal.S, store.wal) and syncs the dir. An
     * empty log has nothing a snapshot would replace: it stays. */
    if (d->log_end > WAL_MAGIC_LEN) {
        close(d->log_fd);
        d->seg_bytes += d->log_end - WAL_MAGIC_LEN;
        d->log_fd = d->next_fd;
        d->next_fd = -1;
        d->log_end = WAL_MAGIC_LEN;
        d->dirty = 0;
        c->rotated = 1;
    }
    c->log_bytes = d->seg_bytes;
    d->compacting = c;
    d->stats.running = 1;
    c->begin_ns = now_ns() - t0;
    c->begin_cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    if (c->begin_ns > d->stats.max_begin_ns)
        d->stats.max_begin_ns = c->begin_ns;
    *out = c;
    return 0;

fail:
    if (pfd[0] >= 0) {
        close(pfd[0]);
        close(pfd[1]);
    }
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

/* The names of the switch made on the loop: the old log becomes the
 * segment store.wal.S, the next log store.wal, and the directory says so
 * before anything is deleted. Until then recovery reads the old log, then
 * store.wal.next (its records follow). */
static int rename_logs(store_compact_t *c)
{
    char seg[64];
    int rc;
    snprintf(seg, sizeof seg, WAL_SEG_PREFIX "%" PRIu64, c->seq);
    if ((rc = step(STORE_STEP_ROTATE)) < 0)
        return rc;
    /* NOREPLACE: a segment of that name holds records too (it cannot,
     * since seqs grow, but a lost segment would be lost writes). */
    if (renameat2(c->dir_fd, WAL_LOG_FILE, c->dir_fd, seg, RENAME_NOREPLACE) < 0)
        return -errno;
    if ((rc = step(STORE_STEP_NEWLOG)) < 0)
        return rc;
    if (renameat(c->dir_fd, WAL_NEXT_FILE, c->dir_fd, WAL_LOG_FILE) < 0)
        return -errno;
    return fsync_fd(c->dir_fd);
}

int store_compact_wait(store_compact_t *c)
{
    if (c->waited)
        return c->rc;
    size_t got = 0;
    int rc = 0;
    if (c->rotated && (c->rot_rc = rename_logs(c)) < 0) {
        /* The store must stop (store_compact_end()); the snapshot is
         * not worth waiting for. */
        store_compact_abort(c);
        rc = c->rot_rc;
    }
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
    if (rc < 0)
        ;
    else if (got < sizeof c->res)
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
    /* The next switch's log, made now while nobody waits for it. If this
     * fails, the next store_compact_begin() makes it. */
    if (c->rotated && c->rot_rc == 0 && wal_next_create(c->dir_fd, &c->next_fd, 1) < 0)
        c->next_fd = -1;
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
        /* The log is named store.wal.next or the old one still store.wal:
         * recovery reads that right, but the next switch could not. */
        if (c->rot_rc < 0)
            d->broken = 1;
        if (c->next_fd >= 0 && d->next_fd < 0) {
            d->next_fd = c->next_fd;
            c->next_fd = -1;
        }
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
        info->begin_cpu_ns = c->begin_cpu_ns;
        info->total_ns = c->total_ns;
    }
    if (c->next_fd >= 0)
        close(c->next_fd);
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
