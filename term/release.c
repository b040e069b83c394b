/* release.c: the OTP release whose term semantics term/ follows, the one
 * place where releases differ (term.h, "Semantics of an OTP release"). */
#include "term/term.h"

#include <errno.h>
#include <math.h>

#include "term/term_int.h"

_Atomic int term_int_otp = TERM_OTP_DEFAULT;
_Atomic uint64_t term_int_release_terms;

int term_set_otp_release(int release)
{
    if (release < TERM_OTP_MIN || release > TERM_OTP_MAX)
        return -EINVAL;
    atomic_store_explicit(&term_int_otp, release, memory_order_relaxed);
    return 0;
}

int term_otp_release(void)
{
    return atomic_load_explicit(&term_int_otp, memory_order_relaxed);
}

int term_otp_canon_same(int a, int b)
{
    return (a >= 26) == (b >= 26) && (a >= 27) == (b >= 27);
}

double term_canon_double(double v)
{
    if (v == 0 && signbit(v)) {
        term_int_count_release_term();
        /* OTP 25 and 26: 0.0 =:= -0.0, so both are written as 0.0 */
        if (!term_int_zeros_distinct())
            return 0.0;
    }
    return v;
}

uint64_t term_release_terms_seen(void)
{
    return atomic_load_explicit(&term_int_release_terms, memory_order_relaxed);
}
