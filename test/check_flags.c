/* check_flags.c: every distribution flag value against kernel/include/
 * dist.hrl (OTP 25, and OTP 29 for the flags it added), and the exact set
 * etsd advertises (PROTOCOL.md sections 2 and 10), checked against what
 * each release's dist.hrl defines and requires. Another implementation
 * shipped wrong values. */
#include <check.h>
#include <stdint.h>

#include "cnode/cnode_int.h"

static const struct flag_row {
    const char *id;
    uint64_t ours;
    uint64_t hrl; /* as written in dist.hrl */
} rows[] = {
    {"PUBLISHED", DFLAG_PUBLISHED, 0x01},
    {"ATOM_CACHE", DFLAG_ATOM_CACHE, 0x02},
    {"EXTENDED_REFERENCES", DFLAG_EXTENDED_REFERENCES, 0x04},
    {"DIST_MONITOR", DFLAG_DIST_MONITOR, 0x08},
    {"FUN_TAGS", DFLAG_FUN_TAGS, 0x10},
    {"DIST_MONITOR_NAME", DFLAG_DIST_MONITOR_NAME, 0x20},
    {"HIDDEN_ATOM_CACHE", DFLAG_HIDDEN_ATOM_CACHE, 0x40},
    {"NEW_FUN_TAGS", DFLAG_NEW_FUN_TAGS, 0x80},
    {"EXTENDED_PIDS_PORTS", DFLAG_EXTENDED_PIDS_PORTS, 0x100},
    {"EXPORT_PTR_TAG", DFLAG_EXPORT_PTR_TAG, 0x200},
    {"BIT_BINARIES", DFLAG_BIT_BINARIES, 0x400},
    {"NEW_FLOATS", DFLAG_NEW_FLOATS, 0x800},
    {"UNICODE_IO", DFLAG_UNICODE_IO, 0x1000},
    {"DIST_HDR_ATOM_CACHE", DFLAG_DIST_HDR_ATOM_CACHE, 0x2000},
    {"SMALL_ATOM_TAGS", DFLAG_SMALL_ATOM_TAGS, 0x4000},
    {"UTF8_ATOMS", DFLAG_UTF8_ATOMS, 0x10000},
    {"MAP_TAG", DFLAG_MAP_TAG, 0x20000},
    {"BIG_CREATION", DFLAG_BIG_CREATION, 0x40000},
    {"SEND_SENDER", DFLAG_SEND_SENDER, 0x80000},
    {"BIG_SEQTRACE_LABELS", DFLAG_BIG_SEQTRACE_LABELS, 0x100000},
    {"EXIT_PAYLOAD", DFLAG_EXIT_PAYLOAD, 0x400000},
    {"FRAGMENTS", DFLAG_FRAGMENTS, 0x00800000},
    {"HANDSHAKE_23", DFLAG_HANDSHAKE_23, 0x01000000},
    {"UNLINK_ID", DFLAG_UNLINK_ID, 0x02000000},
    {"MANDATORY_25_DIGEST", DFLAG_MANDATORY_25_DIGEST, 0x04000000},
    {"SPAWN", DFLAG_SPAWN, 0x01ULL << 32},
    {"NAME_ME", DFLAG_NAME_ME, 0x02ULL << 32},
    {"V4_NC", DFLAG_V4_NC, 0x04ULL << 32},
    {"ALIAS", DFLAG_ALIAS, 0x08ULL << 32},
    /* OTP 29's dist.hrl */
    {"LOCAL_EXT", DFLAG_LOCAL_EXT, 0x10ULL << 32},
    {"ALTACT_SIG", DFLAG_ALTACT_SIG, 0x20ULL << 32},
    {"NATIVE_RECORDS", DFLAG_NATIVE_RECORDS, 0x40ULL << 32},
};

START_TEST(flag_value_matches_dist_hrl)
{
    const struct flag_row *r = &rows[_i];
    if (r->ours != r->hrl)
        ck_abort_msg("DFLAG_%s is %#llx, dist.hrl says %#llx", r->id,
                     (unsigned long long)r->ours, (unsigned long long)r->hrl);
}
END_TEST

/* What etsd must advertise, one row per flag. */
static const struct adv_row {
    const char *id;
    uint64_t flag;
    int advertised;
} adv[] = {
    {"EXTENDED_REFERENCES", DFLAG_EXTENDED_REFERENCES, 1},
    {"FUN_TAGS", DFLAG_FUN_TAGS, 1},
    {"NEW_FUN_TAGS", DFLAG_NEW_FUN_TAGS, 1},
    {"EXTENDED_PIDS_PORTS", DFLAG_EXTENDED_PIDS_PORTS, 1},
    {"EXPORT_PTR_TAG", DFLAG_EXPORT_PTR_TAG, 1},
    {"BIT_BINARIES", DFLAG_BIT_BINARIES, 1},
    {"NEW_FLOATS", DFLAG_NEW_FLOATS, 1},
    {"UTF8_ATOMS", DFLAG_UTF8_ATOMS, 1},
    {"MAP_TAG", DFLAG_MAP_TAG, 1},
    {"BIG_CREATION", DFLAG_BIG_CREATION, 1},
    {"HANDSHAKE_23", DFLAG_HANDSHAKE_23, 1},
    {"MANDATORY_25_DIGEST", DFLAG_MANDATORY_25_DIGEST, 1},
    {"DIST_MONITOR", DFLAG_DIST_MONITOR, 1},
    {"DIST_MONITOR_NAME", DFLAG_DIST_MONITOR_NAME, 1},
    {"SMALL_ATOM_TAGS", DFLAG_SMALL_ATOM_TAGS, 1},
    {"V4_NC", DFLAG_V4_NC, 1},
    {"UNLINK_ID", DFLAG_UNLINK_ID, 1},
    {"SPAWN", DFLAG_SPAWN, 1},
    {"ALIAS", DFLAG_ALIAS, 1},
    {"ALTACT_SIG", DFLAG_ALTACT_SIG, 1},
    {"PUBLISHED", DFLAG_PUBLISHED, 0},
    {"ATOM_CACHE", DFLAG_ATOM_CACHE, 0},
    {"DIST_HDR_ATOM_CACHE", DFLAG_DIST_HDR_ATOM_CACHE, 0},
    {"FRAGMENTS", DFLAG_FRAGMENTS, 0},
    {"NAME_ME", DFLAG_NAME_ME, 0},
    {"LOCAL_EXT", DFLAG_LOCAL_EXT, 0},
    {"NATIVE_RECORDS", DFLAG_NATIVE_RECORDS, 0},
};

START_TEST(advertised_flag_set_is_protocol_md_section_2)
{
    const struct adv_row *r = &adv[_i];
    int has = (ETSD_DFLAGS & r->flag) != 0;
    if (has != r->advertised)
        ck_abort_msg("DFLAG_%s: advertised %d, want %d", r->id, has, r->advertised);
}
END_TEST

START_TEST(advertised_flags_have_nothing_else)
{
    uint64_t all = 0;
    for (size_t i = 0; i < sizeof adv / sizeof adv[0]; i++)
        if (adv[i].advertised)
            all |= adv[i].flag;
    ck_assert_uint_eq(ETSD_DFLAGS, all);
}
END_TEST

START_TEST(mandatory_25_digest_is_bit_26_not_36)
{
    ck_assert_uint_eq(DFLAG_MANDATORY_25_DIGEST, 1ULL << 26);
    ck_assert_uint_eq(ETSD_DFLAGS & (1ULL << 36), 0);
}
END_TEST

START_TEST(mandatory_set_is_dist_hrl_mandatory_dflags_25)
{
    /* MANDATORY_DFLAGS_25 in dist.hrl, summed from its literal values. */
    uint64_t want = 0x04 | 0x10 | 0x100 | 0x80 | 0x200 | 0x400 | 0x800 | 0x10000 |
                    0x20000 | 0x40000 | 0x01000000;
    ck_assert_uint_eq(DFLAG_MANDATORY_25, want);
}
END_TEST

/* Per release, from the literal values of its kernel/include/dist.hrl:
 * every flag it defines (DFLAG_RESERVED excluded), the ones it requires of
 * a peer (DFLAGS_MANDATORY; MANDATORY_DFLAGS_25 on OTP 25), and the ones
 * it defines but a peer must never send ("only used internally"). */
static const struct release_row {
    const char *id;
    uint64_t defined, mandatory, internal;
} releases[] = {
    {"OTP 25 (kernel 8.5.3)",
     /* 16#01 to 16#04000000 but 16#8000 (no flag) and 16#200000
      * (NO_MAGIC, commented out); then SPAWN to ALIAS */
     0x07df7fffULL | (0x0fULL << 32),
     0x04 | 0x10 | 0x100 | 0x80 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000 |
         0x01000000,
     0},
    {"OTP 27 (kernel 10.2.7.1)",
     0x07df7fffULL | (0x0fULL << 32),
     0x04 | 0x10 | 0x100 | 0x80 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000 |
         0x01000000 | (0x04ULL << 32) | 0x02000000,
     0},
    {"OTP 29 (kernel 11.0.4)",
     0x07df7fffULL | (0x7fULL << 32),
     0x04 | 0x10 | 0x100 | 0x80 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x20000 | 0x40000 |
         0x01000000 | (0x04ULL << 32) | 0x02000000,
     0x10ULL << 32},
};

START_TEST(advertised_flags_fit_every_release)
{
    const struct release_row *r = &releases[_i];
    if ((ETSD_DFLAGS & r->mandatory) != r->mandatory)
        ck_abort_msg("%s: mandatory flags %#llx not advertised", r->id,
                     (unsigned long long)(r->mandatory & ~ETSD_DFLAGS));
    if (ETSD_DFLAGS & r->internal)
        ck_abort_msg("%s: internal flags %#llx advertised", r->id,
                     (unsigned long long)(ETSD_DFLAGS & r->internal));
}
END_TEST

START_TEST(advertised_flags_are_all_defined_by_the_newest_release)
{
    const struct release_row *newest = &releases[sizeof releases / sizeof releases[0] - 1];
    ck_assert_uint_eq(ETSD_DFLAGS & ~newest->defined, 0);
    /* DFLAG_RESERVED, 16#f8000000 in every dist.hrl */
    ck_assert_uint_eq(ETSD_DFLAGS & 0xf8000000ULL, 0);
    /* bit 36 is LOCAL_EXT (PROTOCOL.md section 10) */
    ck_assert_uint_eq(ETSD_DFLAGS & (1ULL << 36), 0);
}
END_TEST

Suite *flags_suite(void)
{
    Suite *s = suite_create("flags");
    TCase *t = tcase_create("values");
    tcase_add_loop_test(t, flag_value_matches_dist_hrl, 0, sizeof rows / sizeof rows[0]);
    tcase_add_test(t, mandatory_25_digest_is_bit_26_not_36);
    tcase_add_test(t, mandatory_set_is_dist_hrl_mandatory_dflags_25);
    suite_add_tcase(s, t);
    t = tcase_create("advertised");
    tcase_add_loop_test(t, advertised_flag_set_is_protocol_md_section_2, 0,
                        sizeof adv / sizeof adv[0]);
    tcase_add_test(t, advertised_flags_have_nothing_else);
    tcase_add_loop_test(t, advertised_flags_fit_every_release, 0,
                        sizeof releases / sizeof releases[0]);
    tcase_add_test(t, advertised_flags_are_all_defined_by_the_newest_release);
    suite_add_tcase(s, t);
    return s;
}
