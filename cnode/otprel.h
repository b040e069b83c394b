/* otprel.h: the OTP release etsd follows for term semantics (term.h,
 * "Semantics of an OTP release"). Each node that connects is asked
 * erlang:system_info(otp_release) over rex; the oldest release among the
 * connected nodes that answered decides, and when that changes the store
 * is canonicalized again (store_recanon()). --otp-release fixes it. */
#ifndef ETSD_OTPREL_H
#define ETSD_OTPREL_H

#include "cnode/node.h"
#include "store/store.h"

typedef struct otprel otprel_t;

/* Starts following n's peers (fixed == 0), or follows release fixed from
 * now on (term_set_otp_release(); -EINVAL if out of range) and asks no one.
 * s (borrowed, must outlive o) is canonicalized again on every change. On
 * success *out is new: free it with otprel_free() after the loop has
 * ended. Registers a shutdown hook that stops it. */
int otprel_new(node_t *n, store_t *s, int fixed, otprel_t **out);

/* otprel_free(NULL) does nothing. */
void otprel_free(otprel_t *o);

#endif
