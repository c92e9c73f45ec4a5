
/*
 * The scanner of plain JSON bodies: an object whose keys and values are
 * all strings without escapes, checked in place, without a tree or an
 * allocation. It accepts only what jansson accepts and means by it the
 * same (the last of duplicate keys wins; such a string's compact dump is
 * its own bytes); whatever else it declines, for jansson to judge.
 * Self-contained (no nginx calls) so that it can be checked against
 * jansson outside nginx.
 */


#include "ngx_http_mom.h"


static u_char *ngx_http_mom_plain_string(u_char *p, u_char *last);


#define ngx_http_mom_skip_space(p, last)                                     \
    while (p < last                                                          \
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))         \
    {                                                                        \
        p++;                                                                 \
    }


/*
 * NGX_OK when [p, last) is one object of plain strings (see
 * ngx_http_mom_plain_string) between JSON white space; each wanted field
 * gets the span of its last value, quotes included (start NULL: absent).
 */

ngx_int_t
ngx_http_mom_plain_object(u_char *p, u_char *last,
    ngx_http_mom_field_t *fields, ngx_uint_t n)
{
    u_char      *key, *value;
    size_t       key_len;
    ngx_uint_t   i;

    for (i = 0; i < n; i++) {
        fields[i].start = NULL;
        fields[i].end = NULL;
    }

    ngx_http_mom_skip_space(p, last);

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

    p++;
    ngx_http_mom_skip_space(p, last);

    if (p < last && *p == '}') {
        p++;
        goto done;
    }

    for ( ;; ) {
        key = p;

        p = ngx_http_mom_plain_string(p, last);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        key_len = p - key - 2;

        ngx_http_mom_skip_space(p, last);

        if (p == last || *p != ':') {
            return NGX_DECLINED;
        }

        p++;
        ngx_http_mom_skip_space(p, last);

        value = p;

        p = ngx_http_mom_plain_string(p, last);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        for (i = 0; i < n; i++) {
            if (key_len == fields[i].key.len
                && ngx_memcmp(key + 1, fields[i].key.data, key_len) == 0)
            {
                fields[i].start = value;
                fields[i].end = p;
            }
        }

        ngx_http_mom_skip_space(p, last);

        if (p == last) {
            return NGX_DECLINED;
        }

        if (*p == '}') {
            p++;
            break;
        }

        if (*p != ',') {
            return NGX_DECLINED;
        }

        p++;
        ngx_http_mom_skip_space(p, last);
    }

done:

    ngx_http_mom_skip_space(p, last);

    return p == last ? NGX_OK : NGX_DECLINED;
}


/*
 * A plain string at p: quotes around valid UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF, as jansson checks it)
 * without escapes or control characters, i.e. a string that jansson reads
 * and dumps back byte for byte. Returns the end of the string (after its
 * closing quote), NULL for anything else.
 */

static u_char *
ngx_http_mom_plain_string(u_char *p, u_char *last)
{
    u_char    c;
    uint32_t  cp, min;
    size_t    len, i;

    if (p == last || *p != '"') {
        return NULL;
    }

    p++;

    while (p < last) {
        c = *p;

        if (c < 0x80) {
            if (c == '"') {
                return p + 1;
            }

            if (c < 0x20 || c == '\\') {
                return NULL;
            }

            p++;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
            min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
            min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;

        } else {
            return NULL;
        }

        if ((size_t) (last - p) < len) {
            return NULL;
        }

        for (i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return NULL;
            }

            cp = (cp << 6) | (p[i] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return NULL;
        }

        p += len;
    }

    return NULL;
}
