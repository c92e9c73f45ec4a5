/*
 * http_resp: incremental HTTP/1.1 response parser (headers, Content-Length,
 * chunked transfer coding) shared by the benchmark clients.
 */

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

#include "http_resp.h"

enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
       CH_TRAILER };

void
http_resp_reset(http_resp_t *r)
{
    r->hdr_len = 0;
    r->in_body = 0;
    r->done = 0;
    r->status = 0;
    r->chunked = 0;
    r->event_stream = 0;
    r->content_left = -1;
    r->ch_state = CH_SIZE;
    r->ch_left = 0;
    r->trailer_len = 0;
}

static void
parse_header_block(http_resp_t *r)
{
    char *line, *next;

    if (sscanf(r->hdr, "HTTP/1.%*d %d", &r->status) != 1) {
        r->status = 999;
    }
    for (line = strstr(r->hdr, "\r\n"); line != NULL; line = next) {
        line += 2;
        next = strstr(line, "\r\n");
        if (next != NULL) {
            *next = '\0';
        }
        if (strncasecmp(line, "transfer-encoding:", 18) == 0
            && strcasestr(line, "chunked") != NULL)
        {
            r->chunked = 1;
        } else if (strncasecmp(line, "content-type:", 13) == 0
                   && strcasestr(line, "text/event-stream") != NULL)
        {
            r->event_stream = 1;
        } else if (strncasecmp(line, "content-length:", 15) == 0) {
            r->content_left = atoll(line + 15);
        }
    }
    if (r->chunked) {
        r->content_left = -1;
    }
}

static size_t
feed_headers(http_resp_t *r, const char *p, size_t n)
{
    size_t old = r->hdr_len, take = n, from;
    char *end;

    if (take > HTTP_HDR_MAX - 1 - old) {
        take = HTTP_HDR_MAX - 1 - old;
    }
    memcpy(r->hdr + old, p, take);
    r->hdr_len += take;
    r->hdr[r->hdr_len] = '\0';
    /* the blank line may straddle the previous read */
    from = old >= 3 ? old - 3 : 0;
    end = memmem(r->hdr + from, r->hdr_len - from, "\r\n\r\n", 4);
    if (end == NULL) {
        if (r->hdr_len >= HTTP_HDR_MAX - 1) {
            r->status = 999;
            r->in_body = 1;
            r->done = 1;
        }
        return take;
    }
    *end = '\0';
    parse_header_block(r);
    r->in_body = 1;
    if (!r->chunked && r->content_left == 0) {
        r->done = 1;
    }
    return (size_t) (end + 4 - r->hdr) - old;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch |= 0x20;
    return (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
}

static size_t
feed_chunked(http_resp_t *r, const char *p, size_t n, http_body_pt body,
    void *ctx)
{
    size_t i = 0, take;

    while (i < n && !r->done) {
        char ch = p[i];

        switch (r->ch_state) {
        case CH_SIZE:
            if (hexval(ch) >= 0) {
                r->ch_left = r->ch_left * 16 + (unsigned) hexval(ch);
            } else {
                r->ch_state = ch == '\r' ? CH_SIZE_LF : CH_EXT;
            }
            i++;
            break;
        case CH_EXT:
            if (ch == '\r') {
                r->ch_state = CH_SIZE_LF;
            }
            i++;
            break;
        case CH_SIZE_LF:
            i++;
            r->ch_state = r->ch_left ? CH_DATA : CH_TRAILER;
            r->trailer_len = 0;
            break;
        case CH_DATA:
            take = n - i;
            if (take > r->ch_left) {
                take = (size_t) r->ch_left;
            }
            i += take;
            r->ch_left -= take;
            if (r->ch_left == 0) {
                r->ch_state = CH_DATA_CR;
            }
            if (body(ctx, p + i - take, take)) {
                return i;
            }
            break;
        case CH_DATA_CR:
            i++;
            r->ch_state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            i++;
            r->ch_state = CH_SIZE;
            break;
        default: /* CH_TRAILER: lines until an empty one */
            i++;
            if (ch == '\n') {
                if (r->trailer_len == 0) {
                    r->done = 1;
                }
                r->trailer_len = 0;
            } else if (ch != '\r') {
                r->trailer_len++;
            }
            break;
        }
    }
    return i;
}

size_t
http_resp_feed(http_resp_t *r, const char *p, size_t n, http_body_pt body,
    void *ctx)
{
    size_t take;

    if (r->done || n == 0) {
        return n;
    }
    if (!r->in_body) {
        return feed_headers(r, p, n);
    }
    if (r->chunked) {
        return feed_chunked(r, p, n, body, ctx);
    }
    take = n;
    if (r->content_left >= 0 && (long long) take > r->content_left) {
        take = (size_t) r->content_left;
    }
    if (r->content_left >= 0) {
        r->content_left -= (long long) take;
        if (r->content_left == 0) {
            r->done = 1;
        }
    }
    body(ctx, p, take);
    return take;
}
