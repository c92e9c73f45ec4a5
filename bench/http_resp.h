/*
 * http_resp: incremental parser of one HTTP/1.1 response for the benchmark
 * clients: status line, Content-Length or chunked body (or a body that runs
 * until the connection closes, as an unchunked SSE stream does).
 */

#ifndef HTTP_RESP_H
#define HTTP_RESP_H

#include <stddef.h>

#define HTTP_HDR_MAX 8192

/* Receives body bytes (de-chunked); returns non-zero to stop feeding. */
typedef int (*http_body_pt)(void *ctx, const char *p, size_t n);

typedef struct {
    char                hdr[HTTP_HDR_MAX];
    size_t              hdr_len;
    int                 in_body;       /* headers complete */
    int                 done;          /* body complete */
    int                 status;        /* 999: unparsable response */
    int                 chunked;
    int                 event_stream;  /* Content-Type: text/event-stream */
    long long           content_left;  /* -1: until the connection closes */
    int                 ch_state;
    unsigned long long  ch_left;
    size_t              trailer_len;
} http_resp_t;

void http_resp_reset(http_resp_t *r);

/*
 * Feeds n bytes. Returns how many were consumed: it stops right after the
 * headers are complete (so the caller can look at the status), when the
 * body is complete, or when the body callback asks to stop.
 */
size_t http_resp_feed(http_resp_t *r, const char *p, size_t n,
    http_body_pt body, void *ctx);

#endif
