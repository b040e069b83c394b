/* term.h: Erlang external term format (ETF) for etsd, on top of ei.
 * Decode and validate, canonical encode, Erlang term order, hash, print as
 * Erlang syntax, parse Erlang literal syntax, and helpers to build messages.
 * term/ is the only layer that includes ei.h. */
#ifndef ETSD_TERM_H
#define ETSD_TERM_H

#include <stddef.h>
#include <stdint.h>

/* Every function here returns 0 or a negative errno:
 *   -EPROTO  malformed input (bad tag, length past the end, trailing bytes)
 *   -ENOMEM  an allocation failed
 *   -E2BIG   input nests deeper than TERM_MAX_DEPTH, or a size limit
 *   -EINVAL  a caller error (bad argument), never used for input bytes
 * Input is always hostile: no function reads past len, and none allocates
 * more than the remaining input can justify. */

#define TERM_VERSION_MAGIC 131  /* first byte of term_to_binary output */
#define TERM_MAX_DEPTH     1000 /* nested tuples/lists/maps; flat lists of any length are fine */
#define TERM_ATOM_MAX      1024 /* bytes for a NUL-terminated UTF-8 atom (255 chars * 4 + 1) */

/* ---- Growable byte buffer -------------------------------------------- */

/* A byte buffer with a sticky error: once an append fails, err holds the
 * negative errno and every later append does nothing, so a message can be
 * built with many term_put_*() calls and checked once at the end. */
typedef struct term_buf {
    char *data;   /* owned; NULL while empty */
    size_t len;
    size_t cap;
    int err;      /* 0, or the first negative errno of an append */
} term_buf_t;

void term_buf_init(term_buf_t *b);
/* Frees the data and leaves b as after term_buf_init(). */
void term_buf_release(term_buf_t *b);
/* Sets len and err to 0, keeps the allocation. */
void term_buf_reset(term_buf_t *b);
/* Makes room for extra more bytes. Returns 0 or -ENOMEM (and sets err). */
int term_buf_reserve(term_buf_t *b, size_t extra);
void term_buf_append(term_buf_t *b, const void *p, size_t n);
/* Hands the data to the caller (free it with mem_free()) and empties b. */
char *term_buf_detach(term_buf_t *b, size_t *len);

/* ---- Semantics of an OTP release --------------------------------------- */

/* OTP releases disagree on a few terms, and term/ follows one of them,
 * process-wide (the cluster's: etsd learns it from its peers):
 *   - OTP 27 and later: 0.0 and -0.0 are two terms. They are ==, sort as
 *     equal and have the same phash2, but they are not =:=: distinct map
 *     keys, ETS keys and match spec literals, and in exact order (map keys)
 *     -0.0 comes first. Earlier: they are =:=, and the canonical form writes
 *     every -0.0 as 0.0.
 *   - OTP 26 and later write every port as V4_PORT_EXT; earlier releases
 *     use NEW_PORT_EXT below 2^32.
 * So canonical bytes made under one release may not be canonical under
 * another (term_otp_canon_same() says when they are): whoever keeps
 * canonical bytes (the store) canonicalizes them again after a change.
 * The default, TERM_OTP_DEFAULT, is the newest semantics, which loses
 * nothing (-0.0 stays -0.0). */
#define TERM_OTP_MIN     25
#define TERM_OTP_MAX     99
#define TERM_OTP_DEFAULT 27

/* Follows release from now on; -EINVAL outside TERM_OTP_MIN..TERM_OTP_MAX. */
int term_set_otp_release(int release);
/* The release followed. */
int term_otp_release(void);
/* 1 when releases a and b give every term the same canonical bytes. */
int term_otp_canon_same(int a, int b);
/* v as the canonical form writes it under the release followed (0.0 for
 * -0.0 before OTP 27). */
double term_canon_double(double v);
/* How many -0.0 floats and ports term/ has canonicalized or validated since
 * the process started. While it is 0, no canonical bytes made so far
 * depend on the release, so none need canonicalizing again. */
uint64_t term_release_terms_seen(void);

/* ---- Canonical encoding ---------------------------------------------- */

/* The canonical encoding is one byte string per term under =:=. It is what
 * term_to_binary(T, [{minor_version, 2}]) on the release followed (above)
 * produces (without the version byte), except that:
 *   - map pairs are always in key term order (BEAM writes maps over 32 keys
 *     in hash order, and from OTP 26 small maps of atom keys in atom table
 *     order);
 *   - before OTP 27, -0.0 is written as 0.0 (they are =:= there);
 *   - never compressed.
 * So: canonical bytes equal <=> terms =:=, and canonical bytes are valid
 * ETF that any BEAM decodes. Two OTP 25 corners, both checked on BEAM:
 *   - a ref keeps its words as sent: [1] and [1,0,0] are =:= (and
 *     term_compare() says 0), but BEAM hashes them apart, so a map may hold
 *     both as keys; their canonical bytes differ, as in term_to_binary;
 *   - a map over 32 keys may hold both 0.0 and -0.0 (hashed apart); before
 *     OTP 27 its canonical form would repeat a key, so term_canon refuses
 *     it (-EPROTO).
 * Limits: nesting TERM_MAX_DEPTH; a compressed term may inflate to 1 GiB
 * (-E2BIG beyond), and must inflate to exactly its declared size. */

/* Canonicalizes one complete external term: in[0] must be 131, the term may
 * be compressed (tag 80), and nothing may follow it. Appends the canonical
 * encoding, without the version byte, to out. On error out->len and
 * out->err are as on entry. Already-canonical input is validated and
 * copied with one memcpy. */
int term_canon(const void *in, size_t len, term_buf_t *out);

/* Canonicalizes one term encoded without version byte at the start of in
 * (a COMPRESSED tag 80 is accepted here too); *used gets the number of
 * input bytes it took. Bytes may follow it. */
int term_canon_inner(const void *in, size_t len, size_t *used, term_buf_t *out);

/* Validates one term without version byte at the start of in and sets
 * *used to its length, allocating nothing. It checks what term_canon
 * checks except repeated map keys (that needs memory); a COMPRESSED term
 * is -EPROTO here. */
int term_skip(const void *in, size_t len, size_t *used);

/* ---- Order and hash --------------------------------------------------- */

/* Erlang term order of two valid encodings (without version byte, in any
 * encoding, canonical or not). Returns <0, 0 or >0 as a < b, a == b, a > b
 * where equality is Erlang's ==, so 1 and 1.0 compare equal. Undefined for
 * invalid input: validate first. */
int term_compare(const void *a, size_t alen, const void *b, size_t blen);

/* 64-bit hash of bytes; over canonical encodings, equal hashes for =:= terms. */
uint64_t term_hash(const void *p, size_t len);

/* ---- Text ------------------------------------------------------------- */

/* Appends the term (without version byte) in Erlang syntax, as io:format
 * "~w" writes it, to out, followed by a NUL that len does not count.
 * The term must fill exactly len bytes. Like ~w: binaries as <<97,98>>,
 * strings as [97,98], floats in float_to_list(F, [short]) form, maps in
 * the order they are encoded in; pids, ports and refs as ~w shows local
 * ones (<0.N.S>, #Port<0.N>, #Ref<0.C.B.A>), without their node.
 * -EPROTO for invalid input (out unchanged), -E2BIG past TERM_MAX_DEPTH. */
int term_print(const void *in, size_t len, term_buf_t *out);

/* Parses one Erlang literal (atoms, integers of any size, floats, strings,
 * <<"...">> and <<1,2,3>> binaries, tuples, lists, maps, and the pid/ref
 * forms term_print writes are NOT accepted). Leading whitespace and %
 * comments are skipped; *used is set past the term. Appends its canonical
 * encoding to out. Errors: -EPROTO with *used at the offending byte.
 * A key repeated in a map keeps its last value, as in maps:from_list/1.
 * Binary elements are strings and integers of at most 64 bits with an
 * optional :Size up to 64. -E2BIG for nesting past TERM_MAX_DEPTH, an
 * integer literal over 100000 digits or a larger Size. */
int term_parse(const char *text, size_t len, size_t *used, term_buf_t *out);

/* Parses a file:consult/1 style text: zero or more terms, each ended by a
 * dot. Appends each term's canonical encoding to out and sets *count.
 * On error (as term_parse) out is unchanged. */
int term_consult(const char *text, size_t len, term_buf_t *out, size_t *count);

/* ---- Building messages ------------------------------------------------ */

typedef struct term_pid {
    char node[TERM_ATOM_MAX];
    uint32_t num, serial, creation;
} term_pid_t;

typedef struct term_ref {
    char node[TERM_ATOM_MAX];
    uint32_t creation;
    int len;           /* 1 to 5 words */
    uint32_t n[5];
} term_ref_t;

/* 1 when a and b are the same pid or reference (=:=), else 0. */
int term_pid_eq(const term_pid_t *a, const term_pid_t *b);
int term_ref_eq(const term_ref_t *a, const term_ref_t *b);

/* Appends encodings without version byte, canonical where the term allows. */
void term_put_version(term_buf_t *b);            /* the 131 byte */
void term_put_tuple(term_buf_t *b, uint32_t arity);
void term_put_list(term_buf_t *b, uint32_t n);    /* LIST_EXT header: n elements and a tail follow */
void term_put_nil(term_buf_t *b);
void term_put_map(term_buf_t *b, uint32_t arity); /* caller writes keys in term order */
void term_put_atom(term_buf_t *b, const char *utf8);
void term_put_atom_len(term_buf_t *b, const char *utf8, size_t len);
void term_put_bool(term_buf_t *b, int v);
void term_put_long(term_buf_t *b, int64_t v);
void term_put_ulong(term_buf_t *b, uint64_t v);
void term_put_double(term_buf_t *b, double v);
void term_put_binary(term_buf_t *b, const void *p, size_t len);
void term_put_pid(term_buf_t *b, const term_pid_t *pid);
void term_put_ref(term_buf_t *b, const term_ref_t *ref);
void term_put_raw(term_buf_t *b, const void *p, size_t len); /* an encoded term */

/* Builds a term from a template, like ei_x_format but with explicit
 * arguments, so no arity or length is counted by hand:
 *   {} [] #{}  structure (lists are proper)    ~a  atom (const char *)
 *   ~i int64_t    ~u uint64_t    ~f double     ~s  binary from a C string
 *   ~b binary (const void *, size_t)           ~p  pid (const term_pid_t *)
 *   ~r ref (const term_ref_t *)                ~t  encoded term (const void *, size_t)
 *   bare atoms: letters, digits, _ and @ starting lower case; 'quoted'
 *   atoms; integers. Map pairs are put in key order, lists of small
 *   integers become STRING_EXT: the result is canonical if every ~t is.
 * Example:
 *   term_format(b, "{forward_to_local,~s,{new,~t},'Elixir.Phoenix.PubSub'}",
 *               "new", user, user_len);
 * Returns 0, -EINVAL for a bad template, or -ENOMEM. */
int term_format(term_buf_t *b, const char *fmt, ...);

/* ---- Reading messages ------------------------------------------------- */

/* A cursor over encoded bytes. Every term_get_*() checks the tag and the
 * bytes left, advances pos on success and leaves it unchanged on error. */
typedef struct term_reader {
    const char *buf;
    size_t len;
    size_t pos;
} term_reader_t;

typedef enum term_type {
    TERM_T_INVALID = 0,
    TERM_T_INTEGER, TERM_T_FLOAT, TERM_T_ATOM, TERM_T_REF, TERM_T_FUN,
    TERM_T_PORT, TERM_T_PID, TERM_T_TUPLE, TERM_T_MAP, TERM_T_NIL,
    TERM_T_LIST,     /* LIST_EXT */
    TERM_T_STRING,   /* STRING_EXT: a list of bytes */
    TERM_T_BINARY, TERM_T_BITSTRING
} term_type_t;

void term_reader_init(term_reader_t *r, const void *buf, size_t len);
/* Consumes the version byte 131; -EPROTO if absent. */
int term_get_version(term_reader_t *r);
/* The type of the next term, or TERM_T_INVALID at the end or on a bad tag. */
term_type_t term_peek(const term_reader_t *r);
int term_get_tuple(term_reader_t *r, uint32_t *arity);
/* LIST_EXT: *n elements then a tail follow. NIL_EXT: *n = 0, nothing follows.
 * STRING_EXT is -EPROTO here: read it with term_get_string(). */
int term_get_list(term_reader_t *r, uint32_t *n);
int term_get_nil(term_reader_t *r);
int term_get_string(term_reader_t *r, const char **p, size_t *len);
int term_get_map(term_reader_t *r, uint32_t *arity);
/* Copies the atom, NUL-terminated, into out (TERM_ATOM_MAX bytes). */
int term_get_atom(term_reader_t *r, char out[TERM_ATOM_MAX]);
/* Integers that fit in int64_t; -ERANGE for a larger bignum. */
int term_get_long(term_reader_t *r, int64_t *v);
int term_get_double(term_reader_t *r, double *v);
/* A binary (8-bit aligned); *p points into the reader's buffer. */
int term_get_binary(term_reader_t *r, const char **p, size_t *len);
int term_get_pid(term_reader_t *r, term_pid_t *pid);
int term_get_ref(term_reader_t *r, term_ref_t *ref);
/* Skips one term of any type, giving its bytes: *p points into the buffer. */
int term_get_any(term_reader_t *r, const char **p, size_t *len);

#endif
