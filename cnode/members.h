/* members.h: which nodes etsd keeps connected, as pure logic (no sockets,
 * no timers, the clock passed in): who is a member, when each member is
 * tried again, when one is forgotten, and which failures deserve a log
 * line. cluster.c drives it from the loop and does what it answers.
 *
 * Members are the nodes named by --join or --dns and the nodes listed in a
 * connected node's nodes(). A node that only connected to etsd (a caller,
 * a remote shell, a C node) is not a member: nothing tries it again after
 * it leaves. A --join member is kept for good; any other member that no
 * --dns answer or nodes() list has shown, and that has not been connected,
 * for forget_after milliseconds is dropped. */
#ifndef ETSD_MEMBERS_H
#define ETSD_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#define MEMBERS_BACKOFF_MIN_MS 200    /* first retry after a loss or failure */
#define MEMBERS_BACKOFF_MAX_MS 5000   /* retries never wait longer */
#define MEMBERS_FORGET_AFTER_MS 600000 /* --forget-after default: 10 minutes */

/* Why a node is a member. A node named twice keeps the strongest
 * (JOIN > DNS > LEARNED). */
typedef enum members_origin {
    MEMBERS_LEARNED = 1,   /* listed in a connected node's nodes() */
    MEMBERS_DNS = 2,       /* an A/AAAA record of --dns NAME */
    MEMBERS_JOIN = 3       /* --join: never forgotten */
} members_origin_t;

typedef enum members_state {
    MEMBERS_DOWN = 0,      /* waiting for next_try_ms */
    MEMBERS_CONNECTING,    /* an attempt is under way */
    MEMBERS_UP
} members_state_t;

/* One member. Read-only outside members.c; valid until it is forgotten or
 * members_release(). */
typedef struct members_node {
    struct members_node *next;
    char *name;
    members_origin_t origin;
    members_state_t state;
    uint64_t seen_ms;      /* last time listed, named by DNS, or connected */
    uint64_t next_try_ms;  /* DOWN: when to try again */
    unsigned backoff_ms;   /* the wait after the next failure */
    unsigned failures;     /* attempts failed since the last success */
    int logged_err;        /* the failure last logged (negative errno), 0 none */
} members_node_t;

typedef struct members {
    members_node_t *head;
    size_t count;
    uint64_t forget_after_ms;
} members_t;

/* Sets up an empty set. forget_after_ms 0 means MEMBERS_FORGET_AFTER_MS. */
void members_init(members_t *m, uint64_t forget_after_ms);
/* Frees every member. */
void members_release(members_t *m);

/* The member called name, or NULL. */
members_node_t *members_find(members_t *m, const char *name);

/* Adds name as a member (due for a try at once), or refreshes a known one:
 * its seen time becomes now and its origin the stronger of the two.
 * Returns 1 when name is new, 0 when it was known, -EINVAL for a name
 * without '@', -ENOMEM (the set is unchanged). */
int members_add(members_t *m, const char *name, members_origin_t origin,
                uint64_t now);

/* An attempt to connect to name starts (state CONNECTING). -ENOENT if name
 * is no member. */
int members_connecting(members_t *m, const char *name);

/* name is connected: state UP, backoff back to the minimum, seen now.
 * Returns 1 when the member had failures that were logged (so its recovery
 * deserves a line), 0 otherwise, -ENOENT if name is no member (a caller). */
int members_up(members_t *m, const char *name, uint64_t now);

/* name's connection was lost: state DOWN, tried again after the minimum
 * backoff. Returns 0, or -ENOENT if name is no member (nothing to retry). */
int members_down(members_t *m, const char *name, uint64_t now);

/* An attempt to connect to name failed with err (a negative errno): state
 * DOWN, next try after the current backoff, which then doubles up to
 * MEMBERS_BACKOFF_MAX_MS. Returns 1 when this failure should be logged
 * (the first since the member was added or last up, or a different err
 * from the one last logged), 0 when it repeats what the log already says,
 * -ENOENT if name is no member. */
int members_failed(members_t *m, const char *name, int err, uint64_t now);

/* Removes every member that may be forgotten (not JOIN, DOWN, and not
 * seen for forget_after_ms; forget_cb, which may be NULL, runs for each
 * just before it is freed), and calls try_cb for every other DOWN member
 * whose retry is due (the callback normally calls members_connecting(),
 * or members_failed() when the attempt cannot start). Neither callback
 * may add or remove members. */
typedef void (*members_try_cb)(members_node_t *e, void *data);
typedef void (*members_forget_cb)(const members_node_t *e, void *data);
void members_tick(members_t *m, uint64_t now, members_try_cb try_cb,
                  members_forget_cb forget_cb, void *data);

/* The earliest time members_tick() has something to do (a retry or a
 * forget), or UINT64_MAX when nothing is pending. */
uint64_t members_next_due(const members_t *m);

#endif
