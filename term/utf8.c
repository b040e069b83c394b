/* utf8.c: one UTF-8 character at a time, for the printer and the parser. */
#include "term/term_int.h"

/* Decodes one UTF-8 character strictly (no overlongs, no surrogates), as
 * binary_to_term does for UTF-8 atoms. Returns its length or 0 if invalid. */
size_t term_int_utf8_decode(const unsigned char *p, size_t n, uint32_t *c)
{
    if (n == 0)
        return 0;
    if (p[0] < 0x80) {
        *c = p[0];
        return 1;
    }
    size_t k;
    uint32_t v, min;
    if ((p[0] & 0xE0) == 0xC0) {
        k = 2; v = p[0] & 0x1F; min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        k = 3; v = p[0] & 0x0F; min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        k = 4; v = p[0] & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *c = v;
    return k;
}

size_t term_int_utf8_encode(uint32_t c, char u[4])
{
    if (c < 0x80) {
        u[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        u[0] = (char)(0xC0 | c >> 6);
        u[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        u[0] = (char)(0xE0 | c >> 12);
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    u[0] = (char)(0xF0 | c >> 18);
    u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}
