/*
 * The command's JSON string encoder: process names are bytes, and every
 * byte sequence comes out as valid JSON that reads back to those bytes.
 */
#include <stdio.h>

#include "json.h"

/*
 * Length of the valid UTF-8 sequence at s[0..len), or 0 if it is not one
 * (bad lead or continuation byte, overlong form, surrogate, > U+10FFFF,
 * truncated). Follows the table in RFC 3629, section 4.
 */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (s[0] == 0xe0) lo = 0xa0;      /* no overlong 3-byte forms */
    if (s[0] == 0xed) hi = 0x9f;      /* no surrogates */
    if (s[0] == 0xf0) lo = 0x90;      /* no overlong 4-byte forms */
    if (s[0] == 0xf4) hi = 0x8f;      /* nothing above U+10FFFF */
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/*
 * A process name as a JSON string. Names are bytes, not text: valid UTF-8
 * passes through, '"', '\\' and control characters are escaped, and every
 * byte that is not part of valid UTF-8 is written as \u00XX of that byte
 * (so byte 0xff reads back as U+00FF 'ÿ'). The output is always valid JSON.
 */
void put_json_string(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    putchar('"');
    while (i < len) {
        unsigned char b = s[i];
        size_t n;

        if (b == '"' || b == '\\') {
            putchar('\\');
            putchar(b);
            i++;
        } else if (b == '\n') {
            fputs("\\n", stdout);
            i++;
        } else if (b == '\t') {
            fputs("\\t", stdout);
            i++;
        } else if (b < 0x20 || b == 0x7f) {
            printf("\\u%04x", (unsigned)b);
            i++;
        } else if ((n = utf8_sequence(s + i, len - i)) > 0) {
            fwrite(s + i, 1, n, stdout);
            i += n;
        } else {
            printf("\\u%04x", (unsigned)b); /* a byte of invalid UTF-8 */
            i++;
        }
    }
    putchar('"');
}
