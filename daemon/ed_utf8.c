/*
 * ed_utf8.c - validating and repairing UTF-8 in strings the daemon quotes
 * back to clients (see ed_utf8.h).
 */
#include "ed_utf8.h"

size_t ed_utf8_length(const unsigned char *s)
{
    size_t n, i;
    unsigned long cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        n = 2;
        cp = s[0] & 0x1Fu;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        n = 3;
        cp = s[0] & 0x0Fu;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        n = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }

    /* Continuation bytes; a NUL ends the loop as a non-continuation. */
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n;
}

void ed_utf8_cut(char *s)
{
    size_t n;

    while (*s && (n = ed_utf8_length((const unsigned char *)s)) > 0)
        s += n;
    *s = '\0';
}

void ed_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t n;

    while (*p) {
        n = ed_utf8_length(p);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}
