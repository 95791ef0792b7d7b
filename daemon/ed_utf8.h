/*
 * ed_utf8.h - keeping client bytes that are quoted back in JSON answers
 * valid UTF-8.  jansson refuses to pack a string that is not, and an
 * answer that cannot be built is no answer at all, so every string the
 * daemon echoes (a path, a lead name, a field name, a message cut to its
 * buffer) passes through here first.
 */
#ifndef ED_UTF8_H
#define ED_UTF8_H

#include <stddef.h>

/* Bytes of the UTF-8 character starting at s (1..4), or 0 when none
 * starts there: no overlong forms, no surrogates, nothing past U+10FFFF,
 * the rules jansson applies. */
size_t ed_utf8_length(const unsigned char *s);

/* End s before its first byte that does not begin a whole character (a
 * name cut to fit its field may have lost half of one). */
void ed_utf8_cut(char *s);

/* Replace every byte that is not part of a whole character with '?'. */
void ed_utf8_scrub(char *s);

#endif
