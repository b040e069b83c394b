/* store.c: named set tables in memory. Each object is one allocation
 * holding its canonical ETF bytes; a table is an open-addressing hash table
 * (linear probing, backward-shift deletion) of pointers to objects, keyed
 * by term_hash() of the canonical key. Every change goes through the
 * journal hooks (wal.c) first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"
#include "term/mem.h"

/* One stored object. hash is the key's term_hash() folded to 32 bits: it
 * picks the slot again on resize and screens most probe mismatches without
 * touching the bytes. Keeping the header at 8 bytes lets a seed user
 * (~43 bytes of ETF) fit a 64-byte malloc chunk. */
typedef struct sobj {
    uint32_t len;
    uint32_t hash;
    char data[];
} sobj_t;

/* A chunked tab2list: see store_encode_begin() in store.h. */
struct store_encode {
    store_table_t *t;     /* NULL once the table is gone */
    size_t start;         /* where the list begins in out */
    size_t slot;          /* next slot to copy */
    uint64_t moves;       /* t->moves when the cursor was last valid */
    size_t count;         /* objects appended so far */
    unsigned restarts;    /* times objects moved under it */
    int done;
    store_encode_t *next; /* in t->encoders */
};

struct store_table {
    store_t *s;
    char *name;
    unsigned keypos;
    store_table_opts_t opts;
    uintptr_t *slots;   /* cap entries: 0 when empty, else slot_make() */
    void *slots_raw;    /* the allocation slots lies in */
    size_t cap;         /* 0 or a power of two */
    uint32_t seed;      /* mixes the hash into a home slot: see slot_home() */
    size_t count;
    size_t obj_bytes;   /* allocator footprint of the objects */
    size_t data_bytes;  /* sum of object lengths: tab2list's size */
    struct slab *slab;  /* pages small objects are carved from */
    store_table_t *next_table;
    /* Bumped whenever objects may move between slots (resize, backward-
     * shift deletion, clear): a chunked encode's slot cursor is then no
     * longer trustworthy. Overwrites and inserts move nothing. */
    uint64_t moves;
    store_encode_t *encoders;  /* chunked encodes running over this table */
};

struct store {
    store_table_t *tables;   /* few tables: a list is enough */
    store_durable_t *dur;
    int replaying;
    term_buf_t scratch;      /* canonicalization of incoming objects/keys */
};

#define STORE_MIN_CAP 16

/* A slot holds the object pointer with 16 bits of its hash in the top
 * bits, which user-space pointers leave zero on x86-64 and arm64 (48-bit
 * addresses). A probe then skips most other keys without touching their
 * objects: with a million objects each touch is a cache miss. */
#define SLOT_SHIFT 48
#define SLOT_PTR ((((uintptr_t)1) << SLOT_SHIFT) - 1)

static uintptr_t slot_tag(uint32_t h)
{
    return (uintptr_t)((h >> 16) | 1) << SLOT_SHIFT;
}

static uintptr_t slot_make(sobj_t *o)
{
    return (uintptr_t)o | slot_tag(o->hash);
}

static sobj_t *slot_obj(uintptr_t v)
{
    return (sobj_t *)(v & SLOT_PTR);
}

/* Large slot arrays are offered to transparent huge pages: random probes
 * over a big table otherwise pay a TLB miss each (in a virtual machine, a
 * two-level page walk), and the stream profile showed the first slot of a
 * probe as the costliest load of an insert. An array of at least one huge
 * page is over-allocated by one and starts on a 2 MiB boundary, so all of
 * it can be huge pages. calloc of that size normally maps fresh zero
 * pages, so the unused head is never touched; at worst it costs 2 MiB. */
#define HUGE_ALIGN ((size_t)2 << 20)

static uintptr_t *slots_alloc(size_t cap, void **raw)
{
    size_t bytes = cap * sizeof(uintptr_t);
    if (bytes < HUGE_ALIGN) {
        uintptr_t *p = mem_calloc(cap, sizeof(uintptr_t));
        *raw = p;
        return p;
    }
    char *r = mem_calloc(1, bytes + HUGE_ALIGN);
    *raw = r;
    if (!r)
        return NULL;
    uintptr_t a = ((uintptr_t)r + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1);
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)a, bytes, MADV_HUGEPAGE);   /* a hint only */
#endif
    return (uintptr_t *)a;
}

/* ---- Object memory ------------------------------------------------------ */

/* Small objects are carved from 64 KiB pages in 8-byte size classes, one
 * set per table: a seed user (51 bytes with its header) then takes 56
 * bytes instead of malloc's 64-byte chunk, and dropping a table frees a
 * few pages instead of a million chunks. Freed objects go on a free list
 * per class and are reused; pages return to the system when the table is
 * cleared or dropped. Larger objects use mem_alloc() directly. */
#define SLAB_GRAIN    8
#define SLAB_MAX      256
#define SLAB_CLASSES  (SLAB_MAX / SLAB_GRAIN)
#define SLAB_PAGE     65536

typedef struct slab_page {
    struct slab_page *next;
    size_t used;
    max_align_t data[];
} slab_page_t;

struct slab {
    slab_page_t *pages;
    void *free[SLAB_CLASSES + 1];
    size_t page_bytes;
};

static size_t slab_class(size_t n)
{
    return (n + SLAB_GRAIN - 1) / SLAB_GRAIN;
}

/* glibc's chunk for a request: 8 bytes of header, 16-byte granules. */
static size_t malloc_footprint(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static void *obj_alloc(store_table_t *t, size_t n)
{
    if (n > SLAB_MAX) {
        void *p = mem_alloc(n);
        if (p)
            t->obj_bytes += malloc_footprint(n);
        return p;
    }
    if (!t->slab) {
        t->slab = mem_calloc(1, sizeof(*t->slab));
        if (!t->slab)
            return NULL;
        t->obj_bytes += malloc_footprint(sizeof(*t->slab));
    }
    struct slab *sl = t->slab;
    size_t c = slab_class(n);
    void *p = sl->free[c];
    if (p) {
        memcpy(&sl->free[c], p, sizeof(void *));
        return p;
    }
    size_t sz = c * SLAB_GRAIN;
    slab_page_t *pg = sl->pages;
    if (!pg || SLAB_PAGE - pg->used < sz) {
        pg = mem_alloc(sizeof(*pg) + SLAB_PAGE);
        if (!pg)
            return NULL;
        pg->used = 0;
        pg->next = sl->pages;
        sl->pages = pg;
        t->obj_bytes += malloc_footprint(sizeof(*pg) + SLAB_PAGE);
    }
    p = (char *)pg->data + pg->used;
    pg->used += sz;
    return p;
}

static void obj_free(store_table_t *t, sobj_t *o)
{
    size_t n = sizeof(*o) + o->len;
    if (n > SLAB_MAX) {
        t->obj_bytes -= malloc_footprint(n);
        mem_free(o);
        return;
    }
    size_t c = slab_class(n);
    memcpy(o, &t->slab->free[c], sizeof(void *));
    t->slab->free[c] = o;
}

/* Frees every object and page. */
static void objs_free_all(store_table_t *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        sobj_t *o = slot_obj(t->slots[i]);
        if (o && sizeof(*o) + o->len > SLAB_MAX)
            mem_free(o);
    }
    if (t->slab) {
        slab_page_t *pg = t->slab->pages;
        while (pg) {
            slab_page_t *n = pg->next;
            mem_free(pg);
            pg = n;
        }
        mem_free(t->slab);
        t->slab = NULL;
    }
    t->obj_bytes = 0;
    t->data_bytes = 0;
}

/* ---- Store ------------------------------------------------------------- */

int store_new(store_t **out)
{
    store_t *s = mem_calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    term_buf_init(&s->scratch);
    *out = s;
    return 0;
}

static void table_free(store_table_t *t)
{
    /* An encode still running finishes with what it has: the table's
     * objects were all deleted during it. */
    for (store_encode_t *e = t->encoders; e; e = e->next)
        e->t = NULL;
    objs_free_all(t);
    mem_free(t->slots_raw);
    mem_free(t->opts.heir);
    mem_free(t->name);
    mem_free(t);
}

void store_free(store_t *s)
{
    if (!s)
        return;
    store_table_t *t = s->tables;
    while (t) {
        store_table_t *n = t->next_table;
        table_free(t);
        t = n;
    }
    store_durable_free(s->dur);
    term_buf_release(&s->scratch);
    mem_free(s);
}

store_durable_t *store_durable(store_t *s)
{
    return s->dur;
}

void store_set_durable(store_t *s, store_durable_t *d)
{
    s->dur = d;
}

void store_set_replaying(store_t *s, int on)
{
    s->replaying = on;
}

/* ---- Tables ------------------------------------------------------------ */

/* Differs between tables of one process and between processes, so two
 * tables (here or on another etsd) never share a slot order. */
static uint32_t table_seed(const store_table_t *t)
{
    static uint32_t tables_made;
    uint64_t x = (uint64_t)(uintptr_t)t ^ ((uint64_t)getpid() << 32) ^
                 (uint64_t)time(NULL) ^ ((uint64_t)++tables_made * 0x9e3779b97f4a7c15u);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    return (uint32_t)x;
}

int store_table_create(store_t *s, const char *name, unsigned keypos,
                       store_table_t **out)
{
    if (!name || !*name || keypos < 1 || strlen(name) >= TERM_ATOM_MAX)
        return -EINVAL;
    if (store_table_find(s, name))
        return -EEXIST;
    store_table_t *t = mem_calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->name = mem_strdup(name);
    if (!t->name) {
        mem_free(t);
        return -ENOMEM;
    }
    t->s = s;
    t->keypos = keypos;
    t->seed = table_seed(t);
    if (!s->replaying) {
        int rc = store_journal_create(s, name, keypos);
        if (rc < 0) {
            mem_free(t->name);
            mem_free(t);
            return rc;
        }
    }
    t->next_table = s->tables;
    s->tables = t;
    if (out)
        *out = t;
    return 0;
}

store_table_t *store_table_find(store_t *s, const char *name)
{
    for (store_table_t *t = s->tables; t; t = t->next_table)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

int store_table_drop(store_t *s, const char *name)
{
    store_table_t **pp = &s->tables;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next_table;
    if (!*pp)
        return -ENOENT;
    if (!s->replaying) {
        int rc = store_journal_drop(s, name);
        if (rc < 0)
            return rc;
    }
    store_table_t *t = *pp;
    *pp = t->next_table;
    table_free(t);
    return 0;
}

int store_foreach_table(store_t *s, store_table_cb cb, void *arg)
{
    for (store_table_t *t = s->tables; t; t = t->next_table) {
        int rc = cb(arg, t);
        if (rc)
            return rc;
    }
    return 0;
}

const char *store_table_name(const store_table_t *t)
{
    return t->name;
}

unsigned store_table_keypos(const store_table_t *t)
{
    return t->keypos;
}

size_t store_table_size(const store_table_t *t)
{
    return t->count;
}

store_table_opts_t *store_table_opts(store_table_t *t)
{
    return &t->opts;
}

store_t *store_table_store(const store_table_t *t)
{
    return t->s;
}

size_t store_table_slots(const store_table_t *t)
{
    return t->cap;
}

size_t store_table_memory(const store_table_t *t)
{
    size_t slots = t->cap * sizeof(uintptr_t);
    return sizeof(*t) + malloc_footprint(strlen(t->name) + 1) + slots + t->obj_bytes;
}

/* ---- Keys -------------------------------------------------------------- */

static int tuple_header(const unsigned char *p, size_t len, size_t *hdr,
                        uint32_t *arity)
{
    if (len >= 2 && p[0] == STORE_TAG_SMALL_TUPLE) {
        *arity = p[1];
        *hdr = 2;
        return 0;
    }
    if (len >= 5 && p[0] == STORE_TAG_LARGE_TUPLE) {
        *arity = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 8) | p[4];
        *hdr = 5;
        return 0;
    }
    return -EINVAL;
}

int store_obj_key(const void *obj, size_t len, unsigned keypos,
                  const char **key, size_t *klen)
{
    const unsigned char *p = obj;
    size_t off, used;
    uint32_t arity;
    if (tuple_header(p, len, &off, &arity) < 0 || arity < keypos || keypos < 1)
        return -EINVAL;
    for (unsigned i = 1; i < keypos; i++) {
        if (term_skip(p + off, len - off, &used) < 0)
            return -EINVAL;
        off += used;
    }
    if (term_skip(p + off, len - off, &used) < 0)
        return -EINVAL;
    *key = (const char *)p + off;
    *klen = used;
    return 0;
}

static uint32_t key_hash(const void *key, size_t klen)
{
    uint64_t h = term_hash(key, klen);
    return (uint32_t)(h ^ (h >> 32));
}

/* Where the key starts inside a stored object. Objects in a table were
 * checked on insert, so this cannot fail. */
static const char *sobj_key(const store_table_t *t, const sobj_t *o, size_t *klen)
{
    const char *k;
    if (store_obj_key(o->data, o->len, t->keypos, &k, klen) < 0) {
        *klen = 0;
        return o->data;
    }
    return k;
}

/* Canonical encodings are self-delimiting, so an object whose bytes at the
 * key offset start with the whole probe key holds exactly that key. */
static int sobj_has_key(const store_table_t *t, const sobj_t *o,
                        const void *key, size_t klen)
{
    size_t off;
    uint32_t arity;
    if (t->keypos == 1 &&
        tuple_header((const unsigned char *)o->data, o->len, &off, &arity) == 0)
        return o->len - off >= klen && memcmp(o->data + off, key, klen) == 0;
    size_t sklen;
    const char *k = sobj_key(t, o, &sklen);
    return sklen == klen && memcmp(k, key, klen) == 0;
}

/* A key's first slot. Each table mixes the hash with its own seed: with
 * the bare low bits, inserting another table's objects in its slot order
 * (a tab2list, a snapshot, a sync from another etsd) sweeps the home slots
 * in order again and again and piles every sweep onto one growing cluster,
 * which made loading 700k objects take 20 s instead of 1 s. */
static size_t slot_home(const store_table_t *t, uint32_t h, size_t mask)
{
    uint32_t x = h ^ t->seed;   /* murmur3's finalizer: a bijection */
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x & mask;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t probe(const store_table_t *t, const void *key, size_t klen,
                    uint32_t h)
{
    size_t mask = t->cap - 1;
    size_t i = slot_home(t, h, mask);
    uintptr_t tag = slot_tag(h);
    for (;;) {
        uintptr_t v = t->slots[i];
        if (!v)
            return i;
        if ((v & ~SLOT_PTR) == tag) {
            sobj_t *o = slot_obj(v);
            if (o->hash == h && sobj_has_key(t, o, key, klen))
                return i;
        }
        i = (i + 1) & mask;
    }
}

/* How many slots ahead a rehash fetches objects. */
#define RESIZE_PREFETCH 8

/* Rehashes into ncap slots (a power of two that holds every object). */
static int table_resize(store_table_t *t, size_t ncap)
{
    if (ncap > (SIZE_MAX - HUGE_ALIGN) / sizeof(uintptr_t))
        return -ENOMEM;
    void *raw;
    uintptr_t *ns = slots_alloc(ncap, &raw);
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        /* Each object's hash is a cache miss: ask for the ones a few slots
         * ahead now, so the misses overlap instead of queueing. */
        if (i + RESIZE_PREFETCH < t->cap && t->slots[i + RESIZE_PREFETCH])
            __builtin_prefetch(slot_obj(t->slots[i + RESIZE_PREFETCH]));
        uintptr_t v = t->slots[i];
        if (!v)
            continue;
        size_t j = slot_home(t, slot_obj(v)->hash, ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = v;
    }
    mem_free(t->slots_raw);
    t->moves++;
    t->slots = ns;
    t->slots_raw = raw;
    t->cap = ncap;
    return 0;
}

static int table_grow(store_table_t *t)
{
    return table_resize(t, t->cap ? t->cap * 2 : STORE_MIN_CAP);
}

int store_table_reserve(store_table_t *t, size_t n)
{
    if (n > SIZE_MAX / 8 - t->count)
        return -ENOMEM;
    size_t ncap = t->cap ? t->cap : STORE_MIN_CAP;
    while ((t->count + n) * 4 > ncap * 3)
        ncap *= 2;
    return ncap == t->cap ? 0 : table_resize(t, ncap);
}

int store_table_get(store_table_t *t, const void *key, size_t klen,
                    const char **obj, size_t *len)
{
    if (t->count == 0)
        return 0;
    size_t i = probe(t, key, klen, key_hash(key, klen));
    sobj_t *o = slot_obj(t->slots[i]);
    if (!o)
        return 0;
    *obj = o->data;
    *len = o->len;
    return 1;
}

/* Inserts canonical bytes whose key (canonical) is already located. */
static int table_put(store_table_t *t, const void *obj, size_t len,
                     const char *key, size_t klen)
{
    if (len > UINT32_MAX)
        return -E2BIG;
    /* Grow before journaling: once the record is in the log, the change
     * must not fail. Load factor at most 3/4. */
    if ((t->count + 1) * 4 > t->cap * 3) {
        int rc = table_grow(t);
        if (rc < 0)
            return rc;
    }
    uint32_t h = key_hash(key, klen);
    /* The home slot of a new key in a big table is a cache miss: start
     * loading it now, while the object is allocated, copied and logged. */
    __builtin_prefetch(&t->slots[slot_home(t, h, t->cap - 1)]);
    sobj_t *o = obj_alloc(t, sizeof(*o) + len);
    if (!o)
        return -ENOMEM;
    o->len = (uint32_t)len;
    if ((uintptr_t)o & ~SLOT_PTR) {
        /* An address above 2^48 (5-level paging with a high mmap hint)
         * leaves no room for the tag. Never seen by default on Linux. */
        obj_free(t, o);
        return -ENOMEM;
    }
    o->hash = h;
    memcpy(o->data, obj, len);
    if (!t->s->replaying) {
        int rc = store_journal_put(t->s, t->name, o->data, len);
        if (rc < 0) {
            obj_free(t, o);
            return rc;
        }
    }
    size_t i = probe(t, key, klen, h);
    sobj_t *old = slot_obj(t->slots[i]);
    if (old) {
        t->data_bytes -= old->len;
        obj_free(t, old);
    } else {
        t->count++;
    }
    t->slots[i] = slot_make(o);
    t->data_bytes += len;
    return 0;
}

int store_table_put_batch(store_table_t *t, const void *objs, size_t len, size_t count)
{
    if (count == 0)
        return 0;
    if (count > SIZE_MAX / 4 / sizeof(sobj_t *) || len > SIZE_MAX / 2)
        return -ENOMEM;
    /* Room in the slot array first, then every object: after that nothing
     * can fail but the journal. */
    int rc = store_table_reserve(t, count);
    if (rc < 0)
        return rc;
    sobj_t **os = mem_alloc(count * sizeof(*os));
    if (!os)
        return -ENOMEM;
    const char *p = objs;
    size_t off = 0, n, used;
    rc = 0;
    for (n = 0; n < count; n++) {
        const char *key;
        size_t klen;
        if (term_skip(p + off, len - off, &used) < 0 || used > UINT32_MAX ||
            store_obj_key(p + off, used, t->keypos, &key, &klen) < 0) {
            rc = -EINVAL;
            break;
        }
        os[n] = obj_alloc(t, sizeof(sobj_t) + used);
        if (!os[n]) {
            rc = -ENOMEM;
            break;
        }
        if ((uintptr_t)os[n] & ~SLOT_PTR) {
            os[n]->len = (uint32_t)used;
            obj_free(t, os[n]);
            rc = -ENOMEM;
            break;
        }
        os[n]->len = (uint32_t)used;
        os[n]->hash = key_hash(key, klen);
        memcpy(os[n]->data, p + off, used);
        off += used;
    }
    size_t linked = 0;
    if (rc == 0) {
        for (; linked < count; linked++) {
            sobj_t *o = os[linked];
            if (!t->s->replaying) {
                rc = store_journal_put(t->s, t->name, o->data, o->len);
                if (rc < 0)
                    break;
            }
            const char *key;
            size_t klen;
            store_obj_key(o->data, o->len, t->keypos, &key, &klen);
            size_t i = probe(t, key, klen, o->hash);
            sobj_t *old = slot_obj(t->slots[i]);
            if (old) {
                t->data_bytes -= old->len;
                obj_free(t, old);
            } else {
                t->count++;
            }
            t->slots[i] = slot_make(o);
            t->data_bytes += o->len;
        }
        n = count;
    }
    for (size_t i = linked; i < n; i++)
        obj_free(t, os[i]);
    mem_free(os);
    return rc;
}

int store_table_put(store_table_t *t, const void *obj, size_t len)
{
    const char *key;
    size_t klen;
    if (store_obj_key(obj, len, t->keypos, &key, &klen) < 0)
        return -EINVAL;
    return table_put(t, obj, len, key, klen);
}

/* Backward-shift deletion keeps every probe chain unbroken without
 * tombstones, so lookups never slow down after many deletes. */
static void slot_remove(store_table_t *t, size_t i)
{
    size_t mask = t->cap - 1;
    size_t j = i;
    t->moves++;
    for (;;) {
        j = (j + 1) & mask;
        uintptr_t v = t->slots[j];
        if (!v)
            break;
        size_t home = slot_home(t, slot_obj(v)->hash, mask);
        /* v may move to i if i lies cyclically in [home, j). */
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            t->slots[i] = v;
            i = j;
        }
    }
    t->slots[i] = 0;
}

int store_table_remove(store_table_t *t, const void *key, size_t klen)
{
    if (t->count == 0)
        return -ENOENT;
    size_t i = probe(t, key, klen, key_hash(key, klen));
    sobj_t *o = slot_obj(t->slots[i]);
    if (!o)
        return -ENOENT;
    if (!t->s->replaying) {
        int rc = store_journal_delete(t->s, t->name, key, klen);
        if (rc < 0)
            return rc;
    }
    t->data_bytes -= o->len;
    obj_free(t, o);
    slot_remove(t, i);
    t->count--;
    return 0;
}

int store_table_clear(store_table_t *t)
{
    if (!t->s->replaying) {
        int rc = store_journal_clear(t->s, t->name);
        if (rc < 0)
            return rc;
    }
    objs_free_all(t);
    mem_free(t->slots_raw);
    t->moves++;
    t->slots_raw = NULL;
    t->slots = NULL;
    t->cap = 0;
    t->count = 0;
    return 0;
}

static int scan_from(store_table_t *t, size_t i, const char **obj, size_t *len)
{
    for (; i < t->cap; i++) {
        if (t->slots[i]) {
            sobj_t *o = slot_obj(t->slots[i]);
            *obj = o->data;
            *len = o->len;
            return 1;
        }
    }
    return 0;
}

int store_table_first(store_table_t *t, const char **obj, size_t *len)
{
    return scan_from(t, 0, obj, len);
}

int store_table_next(store_table_t *t, const void *key, size_t klen,
                     const char **obj, size_t *len)
{
    if (t->count == 0)
        return -EINVAL;
    size_t i = probe(t, key, klen, key_hash(key, klen));
    if (!t->slots[i])
        return -EINVAL;
    return scan_from(t, i + 1, obj, len);
}

int store_table_foreach(store_table_t *t, store_object_cb cb, void *arg)
{
    for (size_t i = 0; i < t->cap; i++) {
        sobj_t *o = slot_obj(t->slots[i]);
        if (o) {
            int rc = cb(arg, o->data, o->len);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---- Another release's canonical form ---------------------------------- */

/* Changed objects of one table, gathered before any is touched (a change
 * moves objects between slots): per object the old key and the new object,
 * each as a 4-byte length and its bytes. */
typedef struct recanon {
    unsigned keypos;
    term_buf_t tmp;
    term_buf_t todo;
    size_t n;
} recanon_t;

static void put_rec(term_buf_t *b, const void *p, size_t len)
{
    uint32_t n = (uint32_t)len;
    term_buf_append(b, &n, sizeof n);
    term_buf_append(b, p, len);
}

static const char *get_rec(const char **p, size_t *len)
{
    uint32_t n;
    memcpy(&n, *p, sizeof n);
    const char *r = *p + sizeof n;
    *p = r + n;
    *len = n;
    return r;
}

static int recanon_obj_cb(void *arg, const void *obj, size_t len)
{
    recanon_t *r = arg;
    const char *key, *c;
    size_t klen, clen;
    int rc;
    term_buf_reset(&r->tmp);
    /* store_canon's fast path (a tuple of integers, binaries and ASCII
     * atoms, as seed users are) hands back obj itself: nothing in it
     * depends on the release. */
    if ((rc = store_canon(obj, len, &r->tmp, &c, &clen)) < 0)
        return rc;
    if (c == obj || (clen == len && memcmp(c, obj, len) == 0))
        return 0;
    if ((rc = store_obj_key(obj, len, r->keypos, &key, &klen)) < 0)
        return rc;
    put_rec(&r->todo, key, klen);
    put_rec(&r->todo, c, clen);
    r->n++;
    return r->todo.err;
}

static int recanon_table_cb(void *arg, store_table_t *t)
{
    recanon_t *r = arg;
    const char *p, *end, *okey, *nobj, *nkey, *cur;
    size_t oklen, nlen, nklen, curlen;
    int rc;
    term_buf_reset(&r->todo);
    r->keypos = t->keypos;
    if ((rc = store_table_foreach(t, recanon_obj_cb, r)) < 0)
        return rc;
    p = r->todo.data;
    end = p + r->todo.len;
    while (p < end) {
        okey = get_rec(&p, &oklen);
        nobj = get_rec(&p, &nlen);
        if ((rc = store_table_remove(t, okey, oklen)) < 0 && rc != -ENOENT)
            return rc;
        if ((rc = store_obj_key(nobj, nlen, t->keypos, &nkey, &nklen)) < 0)
            return rc;
        /* Keys that became equal (0.0 and -0.0 before OTP 27): the object
         * already under the new key stays. */
        if (store_table_get(t, nkey, nklen, &cur, &curlen))
            continue;
        if ((rc = store_table_put(t, nobj, nlen)) < 0)
            return rc;
    }
    return 0;
}

int store_recanon(store_t *s, size_t *changed)
{
    recanon_t r = {0};
    term_buf_init(&r.tmp);
    term_buf_init(&r.todo);
    int rc = store_foreach_table(s, recanon_table_cb, &r);
    term_buf_release(&r.tmp);
    term_buf_release(&r.todo);
    if (changed)
        *changed = r.n;
    return rc;
}

/* ---- Canonical input ---------------------------------------------------- */

/* Whether the scalar at p is already in canonical form; *used gets its
 * length. Covers what seed objects are made of; anything else takes the
 * general path through term_canon_inner(). */
static int scalar_canonical(const unsigned char *p, size_t len, size_t *used)
{
    if (len < 1)
        return 0;
    switch (p[0]) {
    case STORE_TAG_SMALL_INT:
        if (len < 2)
            return 0;
        *used = 2;
        return 1;
    case STORE_TAG_INT: {
        if (len < 5)
            return 0;
        int32_t v = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                              ((uint32_t)p[3] << 8) | p[4]);
        *used = 5;
        return v < 0 || v > 255;
    }
    case STORE_TAG_BINARY: {
        if (len < 5)
            return 0;
        size_t n = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
                   ((size_t)p[3] << 8) | p[4];
        if (n > len - 5)
            return 0;
        *used = 5 + n;
        return 1;
    }
    case STORE_TAG_SMALL_ATOM_UTF8: {
        /* Only ASCII: other bytes would need UTF-8 validation. */
        if (len < 2 || (size_t)p[1] > len - 2)
            return 0;
        for (size_t i = 0; i < p[1]; i++)
            if (p[2 + i] >= 0x80)
                return 0;
        *used = 2 + (size_t)p[1];
        return 1;
    }
    default:
        return 0;
    }
}

int store_canon(const void *in, size_t len, term_buf_t *out,
                const char **res, size_t *rlen)
{
    const unsigned char *p = in;
    size_t off = 0, used;
    int fast = 0;
    if (len >= 2 && p[0] == STORE_TAG_SMALL_TUPLE) {
        off = 2;
        fast = 1;
        for (unsigned i = 0; i < p[1] && fast; i++) {
            fast = scalar_canonical(p + off, len - off, &used);
            off += fast ? used : 0;
        }
    } else if (scalar_canonical(p, len, &used)) {
        off = used;
        fast = 1;
    }
    if (fast && off == len) {
        *res = in;
        *rlen = len;
        return 0;
    }
    size_t start = out->len;
    int rc = term_canon_inner(in, len, &used, out);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EINVAL;
    if (used != len) {
        out->len = start;
        return -EINVAL;
    }
    if (out->err)
        return out->err;
    *res = out->data + start;
    *rlen = out->len - start;
    return 0;
}

/* ---- Public object API --------------------------------------------------- */

int store_insert(store_table_t *t, const void *obj, size_t len)
{
    store_t *s = t->s;
    const char *c, *key;
    size_t clen, klen;
    term_buf_reset(&s->scratch);
    int rc = store_canon(obj, len, &s->scratch, &c, &clen);
    if (rc < 0)
        return rc;
    if (store_obj_key(c, clen, t->keypos, &key, &klen) < 0)
        return -EINVAL;
    return table_put(t, c, clen, key, klen);
}

int store_lookup(store_table_t *t, const void *key, size_t len, term_buf_t *out)
{
    store_t *s = t->s;
    const char *c, *obj;
    size_t clen, olen;
    term_buf_reset(&s->scratch);
    int rc = store_canon(key, len, &s->scratch, &c, &clen);
    if (rc < 0)
        return rc;
    if (!store_table_get(t, c, clen, &obj, &olen))
        return -ENOENT;
    term_buf_append(out, obj, olen);
    return out->err;
}

struct list_ctx {
    term_buf_t *out;
};

static int tab2list_cb(void *arg, const void *obj, size_t len)
{
    term_buf_t *out = arg;
    term_buf_append(out, obj, len);
    return out->err;
}

int store_tab2list(store_table_t *t, term_buf_t *out)
{
    size_t start = out->len;
    if (t->count == 0) {
        term_put_nil(out);
    } else {
        /* One reservation, then memcpy per object. */
        if (term_buf_reserve(out, 6 + t->data_bytes) < 0)
            return -ENOMEM;
        term_put_list(out, (uint32_t)t->count);
        int rc = store_table_foreach(t, tab2list_cb, out);
        if (rc < 0) {
            out->len = start;
            return rc;
        }
        term_put_nil(out);
    }
    if (out->err) {
        int rc = out->err;
        out->len = start;
        return rc;
    }
    return 0;
}

/* ---- Chunked tab2list --------------------------------------------------- */

/* LIST_EXT's header is a tag and a 4-byte count: a fixed size, so it is
 * written as a placeholder at the start and patched at the end, when the
 * number of objects actually copied is known. */
#define ENCODE_HDR 5
#define ENCODE_RESTARTS 2

int store_encode_begin(store_table_t *t, term_buf_t *out, store_encode_t **cursor)
{
    store_encode_t *e = mem_calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    /* One reservation for what the table holds now, as store_tab2list
     * does; objects inserted meanwhile grow it as needed. */
    if (term_buf_reserve(out, ENCODE_HDR + 1 + t->data_bytes) < 0) {
        mem_free(e);
        return -ENOMEM;
    }
    e->t = t;
    e->start = out->len;
    e->moves = t->moves;
    static const char hdr[ENCODE_HDR] = { STORE_TAG_LIST, 0, 0, 0, 0 };
    term_buf_append(out, hdr, sizeof(hdr));
    e->next = t->encoders;
    t->encoders = e;
    *cursor = e;
    return 0;
}

static void encode_unlink(store_encode_t *e)
{
    if (!e->t)
        return;
    for (store_encode_t **p = &e->t->encoders; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    e->t = NULL;
}

/* Patches the count and ends the list; an encode that copied nothing is
 * [] (NIL_EXT), as store_tab2list() writes for an empty table. */
static int encode_finish(store_encode_t *e, term_buf_t *out)
{
    encode_unlink(e);
    e->done = 1;
    if (e->count == 0) {
        out->len = e->start;
        term_put_nil(out);
    } else {
        unsigned char *h = (unsigned char *)out->data + e->start + 1;
        uint32_t n = (uint32_t)e->count;
        h[0] = (unsigned char)(n >> 24);
        h[1] = (unsigned char)(n >> 16);
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        term_put_nil(out);
    }
    return out->err ? out->err : 1;
}

int store_encode_step(store_encode_t *e, size_t max_objects, term_buf_t *out)
{
    if (e->done)
        return 1;
    if (out->err)
        return out->err;
    store_table_t *t = e->t;
    if (!t)
        return encode_finish(e, out);
    if (e->moves != t->moves) {
        /* Objects moved across the cursor: some behind it may now lie
         * ahead (copied twice) and some ahead behind (missed). Start over;
         * after ENCODE_RESTARTS such restarts, finish in one go, so that
         * a steady stream of deletes cannot keep the encode from ending. */
        out->len = e->start + ENCODE_HDR;
        e->count = 0;
        e->slot = 0;
        e->moves = t->moves;
        if (++e->restarts > ENCODE_RESTARTS)
            max_objects = SIZE_MAX;
        if (term_buf_reserve(out, t->data_bytes + 1) < 0)
            return -ENOMEM;
    }
    /* Bound the empty slots scanned too: a table emptied by deletes keeps
     * its capacity. */
    size_t scan = max_objects > SIZE_MAX / 8 ? SIZE_MAX : max_objects * 8;
    size_t n = 0;
    for (; e->slot < t->cap && n < max_objects && scan > 0; e->slot++, scan--) {
        sobj_t *o = slot_obj(t->slots[e->slot]);
        if (!o)
            continue;
        term_buf_append(out, o->data, o->len);
        if (out->err)
            return out->err;
        n++;
    }
    e->count += n;
    if (e->count > UINT32_MAX)
        return -E2BIG;
    if (e->slot >= t->cap)
        return encode_finish(e, out);
    return 0;
}

void store_encode_free(store_encode_t *e)
{
    if (!e)
        return;
    encode_unlink(e);
    mem_free(e);
}
