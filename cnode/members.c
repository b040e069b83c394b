/* members.c: the membership state machine of members.h: pure logic over a
 * list of members, driven by the caller's clock. */
#include "cnode/members.h"

#include <errno.h>
#include <string.h>

#include "term/mem.h"

void members_init(members_t *m, uint64_t forget_after_ms)
{
    m->head = NULL;
    m->count = 0;
    m->forget_after_ms = forget_after_ms ? forget_after_ms : MEMBERS_FORGET_AFTER_MS;
}

static void node_free(members_node_t *e)
{
    mem_free(e->name);
    mem_free(e);
}

void members_release(members_t *m)
{
    while (m->head) {
        members_node_t *e = m->head;
        m->head = e->next;
        node_free(e);
    }
    m->count = 0;
}

members_node_t *members_find(members_t *m, const char *name)
{
    for (members_node_t *e = m->head; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int members_add(members_t *m, const char *name, members_origin_t origin, uint64_t now)
{
    members_node_t *e = members_find(m, name);
    if (e) {
        e->seen_ms = now;
        if (origin > e->origin)
            e->origin = origin;
        return 0;
    }
    if (!strchr(name, '@'))
        return -EINVAL;
    if (!(e = mem_calloc(1, sizeof *e)))
        return -ENOMEM;
    if (!(e->name = mem_strdup(name))) {
        mem_free(e);
        return -ENOMEM;
    }
    e->origin = origin;
    e->state = MEMBERS_DOWN;
    e->seen_ms = now;
    e->next_try_ms = now;
    e->backoff_ms = MEMBERS_BACKOFF_MIN_MS;
    e->next = m->head;
    m->head = e;
    m->count++;
    return 1;
}

int members_connecting(members_t *m, const char *name)
{
    members_node_t *e = members_find(m, name);
    if (!e)
        return -ENOENT;
    if (e->state != MEMBERS_UP)
        e->state = MEMBERS_CONNECTING;
    return 0;
}

int members_up(members_t *m, const char *name, uint64_t now)
{
    members_node_t *e = members_find(m, name);
    if (!e)
        return -ENOENT;
    int was_logged = e->logged_err != 0;
    e->state = MEMBERS_UP;
    e->seen_ms = now;
    e->backoff_ms = MEMBERS_BACKOFF_MIN_MS;
    e->failures = 0;
    e->logged_err = 0;
    return was_logged;
}

int members_down(members_t *m, const char *name, uint64_t now)
{
    members_node_t *e = members_find(m, name);
    if (!e)
        return -ENOENT;
    if (e->state == MEMBERS_UP)
        e->seen_ms = now; /* connected until now */
    e->state = MEMBERS_DOWN;
    e->backoff_ms = MEMBERS_BACKOFF_MIN_MS;
    e->next_try_ms = now + MEMBERS_BACKOFF_MIN_MS;
    return 0;
}

int members_failed(members_t *m, const char *name, int err, uint64_t now)
{
    members_node_t *e = members_find(m, name);
    if (!e)
        return -ENOENT;
    if (e->state == MEMBERS_UP)
        return 0; /* a stale attempt: the node is up by another connection */
    e->state = MEMBERS_DOWN;
    e->failures++;
    e->next_try_ms = now + e->backoff_ms;
    e->backoff_ms = e->backoff_ms * 2 > MEMBERS_BACKOFF_MAX_MS ? MEMBERS_BACKOFF_MAX_MS
                                                               : e->backoff_ms * 2;
    if (err == 0)
        err = -ECONNABORTED;
    if (e->logged_err == err)
        return 0;
    e->logged_err = err;
    return 1;
}

static int forgettable(const members_t *m, const members_node_t *e, uint64_t now)
{
    return e->origin != MEMBERS_JOIN && e->state == MEMBERS_DOWN &&
           now >= e->seen_ms && now - e->seen_ms >= m->forget_after_ms;
}

void members_tick(members_t *m, uint64_t now, members_try_cb try_cb,
                  members_forget_cb forget_cb, void *data)
{
    for (members_node_t **pp = &m->head; *pp;) {
        members_node_t *e = *pp;
        if (forgettable(m, e, now)) {
            if (forget_cb)
                forget_cb(e, data);
            *pp = e->next;
            m->count--;
            node_free(e);
            continue;
        }
        if (e->state == MEMBERS_DOWN && e->next_try_ms <= now && try_cb)
            try_cb(e, data);
        pp = &e->next;
    }
}

uint64_t members_next_due(const members_t *m)
{
    uint64_t due = UINT64_MAX;
    for (const members_node_t *e = m->head; e; e = e->next) {
        if (e->state != MEMBERS_DOWN)
            continue;
        if (e->next_try_ms < due)
            due = e->next_try_ms;
        if (e->origin != MEMBERS_JOIN) {
            uint64_t f = e->seen_ms + m->forget_after_ms;
            if (f < due)
                due = f;
        }
    }
    return due;
}
