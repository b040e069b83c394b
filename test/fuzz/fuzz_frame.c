/* fuzz_frame.c: libFuzzer target for the frame parser and the control
 * message decoder: bytes as they come off a socket, in reads of sizes
 * taken from the input itself. */
#include <stdint.h>
#include <string.h>

#include "cnode/cnode_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* First byte: read size pattern (1..256 bytes per read). */
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    frame_parser_t fp;
    frame_parser_init(&fp, 1 << 20);
    size_t pos = 0;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        const uint8_t *p = data + pos;
        size_t len = n;
        while (len > 0) {
            size_t used;
            const char *fr;
            size_t flen;
            int rc = frame_feed(&fp, p, len, &used, &fr, &flen);
            if (rc < 0) {
                frame_parser_release(&fp);
                return 0;
            }
            p += used;
            len -= used;
            if (rc == 1 && flen > 0) {
                dist_msg_t m;
                dist_decode(fr, flen, &m);
            }
        }
        pos += n;
    }
    /* The whole input as one frame body, too. */
    dist_msg_t m;
    dist_decode((const char *)data, size, &m);
    frame_parser_release(&fp);
    return 0;
}
