
/*
 * Server-Sent Events: GET of a topic with `Accept: text/event-stream`.
 *
 * After momd's 200 REPLY to OP_SUBSCRIBE the response is a stream: an
 * unbuffered upstream whose EVENT frames carry SSE text (formatted by momd)
 * that is written to the client and flushed at once, frame by frame; an
 * END frame is written and ends the response. Frames may be split across
 * reads: they are reassembled in ctx->frames. Output buffers are recycled
 * through u->free_bufs, so a long stream does not grow the request pool.
 * The upstream connection of a stream is never reused. Once the worker's
 * shared stream of the topic carries the subscriber (ngx_http_mom_hub.c),
 * its own stream is muted: a message already written is dropped here.
 */


#include "ngx_http_mom.h"


/* above the request pool's small-allocation limit, so ngx_pfree() works */
#define NGX_HTTP_MOM_SSE_BUF     4096

/* a reassembly buffer grown for a big event is given back once empty */
#define NGX_HTTP_MOM_SSE_KEEP    (64 * 1024)


static ngx_int_t ngx_http_mom_sse_header(ngx_http_request_t *r,
    const char *key, const char *value);
static ngx_int_t ngx_http_mom_sse_append(ngx_http_mom_ctx_t *ctx,
    u_char *data, size_t len);
static ngx_int_t ngx_http_mom_sse_event(ngx_http_mom_ctx_t *ctx,
    u_char *data, size_t len);


ngx_int_t
ngx_http_mom_sse_wanted(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_http_mom_find_header(r, "Accept", sizeof("Accept") - 1);

    if (h == NULL) {
        return 0;
    }

    return ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                            (u_char *) "text/event-stream",
                            sizeof("text/event-stream") - 2)
           != NULL;
}


/*
 * momd accepted the subscription (200 REPLY): the response headers of a
 * stream. Whatever follows the REPLY in u->buffer is events.
 */

ngx_int_t
ngx_http_mom_sse_start(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    u->headers_in.content_length_n = -1;

    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (ngx_http_mom_sse_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_http_mom_sse_header(r, "X-Accel-Buffering", "no") != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->streaming = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mom sse: stream of \"%s\" starts", ctx->req.name);

    return NGX_OK;
}


ngx_int_t
ngx_http_mom_sse_filter_init(ngx_http_mom_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    r->upstream->length = -1;

    /* known once the stream's first frame (retry) is written */
    ctx->last_offset = ctx->req.since;

    ngx_http_mom_hub_join(ctx);

    /* the headers leave now, not with the first event */

    return ngx_http_send_special(r, NGX_HTTP_FLUSH);
}


/*
 * `bytes` new bytes at u->buffer.last: copied out (so that nginx may
 * recycle u->buffer), reassembled into frames, each frame's SSE text
 * queued in u->out_bufs with flush set.
 */

ngx_int_t
ngx_http_mom_sse_filter(ngx_http_mom_ctx_t *ctx, ssize_t bytes)
{
    size_t                    len, rest;
    u_char                   *data;
    ngx_int_t                 rc;
    ngx_buf_t                *f;
    Mom__Response            *resp;
    ngx_http_request_t       *r;
    ngx_http_upstream_t      *u;
    ngx_http_mom_loc_conf_t  *mlcf;

    r = ctx->request;
    u = r->upstream;

    data = u->buffer.last;
    u->buffer.last += bytes;

    if (ctx->stream_ended) {
        return NGX_OK;
    }

    if (ngx_http_mom_sse_append(ctx, data, bytes) != NGX_OK) {
        return NGX_ERROR;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);
    f = ctx->frames;

    for ( ;; ) {
        rc = ngx_http_mom_frame_length(f->pos, f->last, mlcf->max_frame_size,
                                       &len);

        if (rc == NGX_AGAIN) {
            break;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "momd sent a stream frame of invalid length");
            return NGX_ERROR;
        }

        if ((size_t) (f->last - f->pos) < NGX_HTTP_MOM_FRAME_HEADER + len) {
            break;
        }

        resp = mom__response__unpack(NULL, len,
                                     f->pos + NGX_HTTP_MOM_FRAME_HEADER);

        if (resp == NULL || resp->kind == MOM__KIND__KIND_REPLY) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "momd sent an invalid stream frame");

            if (resp) {
                mom__response__free_unpacked(resp, NULL);
            }

            return NGX_ERROR;
        }

        f->pos += NGX_HTTP_MOM_FRAME_HEADER + len;

        rc = NGX_OK;

        if (resp->kind == MOM__KIND__KIND_END) {
            if (resp->body.len) {
                rc = ngx_http_mom_sse_output(ctx, resp->body.data,
                                             resp->body.len);
            }

            ngx_http_mom_hub_leave(ctx);
            ctx->stream_ended = 1;
            u->length = 0;
            f->pos = f->last;

        } else if (resp->body.len) {
            rc = ngx_http_mom_sse_event(ctx, resp->body.data,
                                        resp->body.len);
        }

        mom__response__free_unpacked(resp, NULL);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->stream_ended) {
            break;
        }
    }

    if (!ctx->stream_ended) {
        /* written by the caller with this read's events */
        ngx_http_mom_hub_try_attach(ctx);
    }

    /* keep only the partial frame, at the start of the buffer */

    rest = f->last - f->pos;

    if (rest == 0 && (size_t) (f->end - f->start) > NGX_HTTP_MOM_SSE_KEEP) {
        ngx_pfree(r->pool, f->start);
        f->start = NULL;
        f->pos = NULL;
        f->last = NULL;
        f->end = NULL;
        return NGX_OK;
    }

    if (f->pos != f->start) {
        ngx_memmove(f->start, f->pos, rest);
        f->pos = f->start;
        f->last = f->start + rest;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_sse_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/*
 * Appends to the reassembly buffer, growing it when needed; its size stays
 * bounded by one frame (mom_max_frame_size) plus one read.
 */

static ngx_int_t
ngx_http_mom_sse_append(ngx_http_mom_ctx_t *ctx, u_char *data, size_t len)
{
    size_t               have, size;
    u_char              *p;
    ngx_buf_t           *f;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->frames == NULL) {
        ctx->frames = ngx_calloc_buf(r->pool);
        if (ctx->frames == NULL) {
            return NGX_ERROR;
        }
    }

    f = ctx->frames;
    have = f->last - f->pos;

    if ((size_t) (f->end - f->last) < len) {
        size = ngx_max(have + len, NGX_HTTP_MOM_SSE_BUF);

        if (f->start && size < (size_t) (f->end - f->start) * 2) {
            size = (f->end - f->start) * 2;
        }

        p = ngx_palloc(r->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (f->start) {
            ngx_memcpy(p, f->pos, have);
            ngx_pfree(r->pool, f->start);
        }

        f->start = p;
        f->pos = p;
        f->last = p + have;
        f->end = p + size;
    }

    f->last = ngx_cpymem(f->last, data, len);

    return NGX_OK;
}


/*
 * An event of the subscriber's own stream. Messages are written once each,
 * in order: one the subscriber has (from the shared stream) is dropped,
 * and once attached, so is one the shared stream has yet to bring before
 * it (the muted stream's last events may run ahead of it).
 */

static ngx_int_t
ngx_http_mom_sse_event(ngx_http_mom_ctx_t *ctx, u_char *data, size_t len)
{
    uint64_t  offset;

    if (ctx->req.has_since) {
        ctx->offset_known = 1;
    }

    offset = ngx_http_mom_sse_offset(data, len);

    if (offset == 0) {
        /* a heartbeat, the retry line */
        return ngx_http_mom_sse_output(ctx, data, len);
    }

    if (ctx->offset_known
        && (offset <= ctx->last_offset
            || (ctx->attached && offset != ctx->last_offset + 1)))
    {
        return NGX_OK;
    }

    ctx->last_offset = offset;
    ctx->offset_known = 1;

    return ngx_http_mom_sse_output(ctx, data, len);
}


/*
 * One event's text, flushed as soon as it is written: appended to the last
 * buffer not yet passed on, or in a recycled one.
 */

ngx_int_t
ngx_http_mom_sse_output(ngx_http_mom_ctx_t *ctx, u_char *data, size_t len)
{
    size_t                size;
    ngx_buf_t            *b;
    ngx_chain_t          *cl, **ll;
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    r = ctx->request;
    u = r->upstream;

    for (ll = &u->out_bufs; *ll && (*ll)->next; ll = &(*ll)->next) {
        /* void */
    }

    if (*ll) {
        b = (*ll)->buf;

        if (b->temporary && b->tag == u->output.tag
            && (size_t) (b->end - b->last) >= len)
        {
            b->last = ngx_cpymem(b->last, data, len);
            return NGX_OK;
        }
    }

    cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < len) {
        if (b->start) {
            ngx_pfree(r->pool, b->start);
        }

        size = ngx_max(len, NGX_HTTP_MOM_SSE_BUF);

        b->start = ngx_palloc(r->pool, size);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, data, len);
    b->temporary = 1;
    b->flush = 1;
    b->tag = u->output.tag;

    for (ll = &u->out_bufs; *ll; ll = &(*ll)->next) { /* void */ }

    *ll = cl;

    return NGX_OK;
}
