/* fuzz_handshake.c: libFuzzer target for the handshake state machine:
 * hostile bytes to an acceptor and to an initiator, in reads of sizes
 * taken from the input, with the acceptor's status answer chosen by the
 * input too. */
#include <stdint.h>
#include <string.h>

#include "cnode/cnode_int.h"

static const char *const statuses[] = {"ok", "ok_simultaneous", "nok", "not_allowed",
                                       "alive"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int initiator = data[0] & 1;
    const char *status = statuses[(data[0] >> 1) % 5];
    size_t step = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    hs_t hs;
    cbuf_t out;
    cbuf_init(&out);
    hs_init(&hs, initiator ? HS_INITIATOR : HS_ACCEPTOR, "etsd@127.0.0.1",
            initiator ? "peer@127.0.0.1" : NULL, "cookie", ETSD_DFLAGS, 7, 0x12345678);
    if (initiator)
        hs_start(&hs, &out);
    size_t pos = 0;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        size_t off = 0;
        while (off < n) {
            size_t used;
            hs_event_t ev;
            int rc = hs_feed(&hs, data + pos + off, n - off, &used, &out, &ev);
            if (rc < 0 || ev == HS_EV_FAILED)
                goto done;
            off += used;
            if (ev == HS_EV_NAME && hs_accept_status(&hs, status, &out) < 0)
                goto done;
            if (ev == HS_EV_DONE || hs.state == HS_S_FAILED)
                goto done;
            if (used == 0)
                goto done;
        }
        pos += n;
        out.len = 0;
    }
done:
    cbuf_release(&out);
    return 0;
}
