/*
 * Growable buffer and compact JSON writer. Allocation failures are sticky
 * (b->failed) so callers check once after building a whole document.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

void
mom_buf_init(mom_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void
mom_buf_free(mom_buf_t *b)
{
    free(b->data);
    mom_buf_init(b);
}

void
mom_buf_reset(mom_buf_t *b)
{
    b->len = 0;
    b->failed = false;
}

int
mom_buf_reserve(mom_buf_t *b, size_t extra)
{
    size_t cap;
    char *data;

    if (b->failed) {
        return -1;
    }
    if (b->cap - b->len >= extra) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return -1;
        }
        cap *= 2;
    }
    data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = true;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void
mom_buf_append(mom_buf_t *b, const void *data, size_t len)
{
    if (len == 0 || mom_buf_reserve(b, len) != 0) {
        return;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void
mom_buf_puts(mom_buf_t *b, const char *s)
{
    mom_buf_append(b, s, strlen(s));
}

void
mom_json_str(mom_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    mom_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        mom_buf_append(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            n = 6;
        }
        mom_buf_append(b, esc, n);
    }
    mom_buf_append(b, s + run, len - run);
    mom_buf_append(b, "\"", 1);
}

void
mom_json_cstr(mom_buf_t *b, const char *s)
{
    mom_json_str(b, s, strlen(s));
}

void
mom_json_u64(mom_buf_t *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);

    mom_buf_append(b, num, (size_t)n);
}

void
mom_json_raw(mom_buf_t *b, const void *json, size_t len)
{
    mom_buf_append(b, json, len);
}

void
mom_json_timestamp(mom_buf_t *b, int64_t ms)
{
    char text[64];
    struct tm tm;
    time_t secs;
    int64_t frac;
    size_t n;

    /* Floor division so that times before 1970 still render correctly. */
    secs = (time_t)(ms / 1000);
    frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    if (gmtime_r(&secs, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    n = strftime(text, sizeof(text), "\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(text + n, sizeof(text) - n, ".%03dZ\"", (int)frac);
    mom_buf_append(b, text, n);
}

void
mom_json_detail(mom_buf_t *b, const char *text)
{
    mom_buf_puts(b, "{\"detail\":");
    mom_json_cstr(b, text);
    mom_buf_append(b, "}", 1);
}

void
mom_json_message(mom_buf_t *b, const char *id_key, uint64_t id,
                 const char *sender, size_t sender_len, const void *content,
                 size_t content_len, int64_t ts_ms)
{
    mom_buf_append(b, "{", 1);
    mom_json_cstr(b, id_key);
    mom_buf_append(b, ":", 1);
    mom_json_u64(b, id);
    mom_buf_puts(b, ",\"sender\":");
    mom_json_str(b, sender, sender_len);
    mom_buf_puts(b, ",\"content\":");
    mom_json_raw(b, content, content_len);
    mom_buf_puts(b, ",\"timestamp\":");
    mom_json_timestamp(b, ts_ms);
    mom_buf_append(b, "}", 1);
}

/* Length of the UTF-8 sequence that starts at p (a byte >= 0x80), 0 if it
 * is not a strict one. */
static size_t
mom_utf8_sequence(const uint8_t *p, const uint8_t *end)
{
    static const uint32_t shortest[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
    uint32_t cp;

    if (p[0] < 0xc2 || p[0] > 0xf4 || (size_t)(end - p) < n) {
        return 0;
    }
    cp = p[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < shortest[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

bool
mom_json_is_plain_string(const void *data, size_t len)
{
    const uint8_t *p = data, *end;
    size_t n;

    if (len < 2 || p[0] != '"' || p[len - 1] != '"') {
        return false;
    }
    end = p + len - 1;
    for (p++; p < end; p += n) {
        if (*p >= 0x80) {
            n = mom_utf8_sequence(p, end);
            if (n == 0) {
                return false;
            }
        } else if (*p < 0x20 || *p == '"' || *p == '\\') {
            return false;
        } else {
            n = 1;
        }
    }
    return true;
}
