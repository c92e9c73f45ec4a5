
/*
 * Server-Sent Events: GET of a topic with Accept: text/event-stream.
 * (Streams are not served yet: such a request gets the JSON history.)
 */


#include "ngx_http_mom.h"


ngx_int_t
ngx_http_mom_sse_wanted(ngx_http_request_t *r)
{
    return 0;
}


ngx_int_t
ngx_http_mom_sse_start(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
}


ngx_int_t
ngx_http_mom_sse_filter_init(ngx_http_mom_ctx_t *ctx)
{
    return NGX_ERROR;
}


ngx_int_t
ngx_http_mom_sse_filter(ngx_http_mom_ctx_t *ctx, ssize_t bytes)
{
    return NGX_ERROR;
}
