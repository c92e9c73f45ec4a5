
/*
 * The upstream callbacks that carry one request to momd and its answer
 * back, in the manner of ngx_http_memcached_module: create_request writes
 * one length-prefixed mom.Request frame, process_header waits for the first
 * complete frame (the REPLY) and turns it into the status and JSON body of
 * the response, the input filter relays the body (or, for a live stream,
 * hands the frames to the SSE code). After a unary REPLY the connection
 * goes back to the keepalive cache.
 */


#include "ngx_http_mom.h"


static ngx_int_t ngx_http_mom_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_reply(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, Mom__Response *resp);
static ngx_int_t ngx_http_mom_login_body(ngx_http_request_t *r,
    Mom__Response *resp, ngx_str_t *body);
static ngx_int_t ngx_http_mom_filter_init(void *data);
static ngx_int_t ngx_http_mom_filter(void *data, ssize_t bytes);
static void *ngx_http_mom_pb_alloc(void *pool, size_t size);
static void ngx_http_mom_pb_free(void *pool, void *p);
static void ngx_http_mom_abort_request(ngx_http_request_t *r);
static void ngx_http_mom_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);


static ngx_str_t  ngx_http_mom_422 = ngx_string("422 Unprocessable Entity");


ngx_int_t
ngx_http_mom_upstream_create(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_http_upstream_t      *u;
    ngx_http_mom_loc_conf_t  *mlcf;

    if (ngx_http_upstream_create(r) != NGX_OK) {
        return NGX_ERROR;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    u = r->upstream;

    ngx_str_set(&u->schema, "mom://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_mom_module;

    u->conf = &mlcf->upstream;

    u->create_request = ngx_http_mom_create_request;
    u->reinit_request = ngx_http_mom_reinit_request;
    u->process_header = ngx_http_mom_process_header;
    u->abort_request = ngx_http_mom_abort_request;
    u->finalize_request = ngx_http_mom_finalize_request;

    u->input_filter_init = ngx_http_mom_filter_init;
    u->input_filter = ngx_http_mom_filter;
    u->input_filter_ctx = ctx;

    return NGX_OK;
}


/*
 * Room for size more bytes after b->last: the unread bytes move to the
 * start, or to a buffer grown (at least doubled) to hold them and size.
 */

ngx_int_t
ngx_http_mom_buf_reserve(ngx_buf_t *b, size_t size)
{
    u_char  *p;
    size_t   used, capacity;

    if ((size_t) (b->end - b->last) >= size) {
        return NGX_OK;
    }

    used = b->last - b->pos;

    if ((size_t) (b->end - b->start) >= used + size) {
        ngx_memmove(b->start, b->pos, used);

    } else {
        capacity = ngx_max((size_t) (b->end - b->start) * 2, used + size);

        p = ngx_alloc(capacity, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, b->pos, used);
        ngx_free(b->start);

        b->start = p;
        b->end = p + capacity;
    }

    b->pos = b->start;
    b->last = b->start + used;

    return NGX_OK;
}


/*
 * Writes req as one frame (4-byte big-endian length, then size bytes of
 * the packed request) at p, which has room for both; returns its end.
 */

u_char *
ngx_http_mom_frame_pack(u_char *p, const Mom__Request *req, size_t size)
{
    *p++ = (u_char) (size >> 24);
    *p++ = (u_char) (size >> 16);
    *p++ = (u_char) (size >> 8);
    *p++ = (u_char) size;

    return p + mom__request__pack(req, p);
}


/*
 * A non-blocking connection to momd at addr: NGX_OK when connected,
 * NGX_AGAIN while connecting (*c set either way), NGX_ERROR otherwise.
 */

ngx_int_t
ngx_http_mom_connect(ngx_addr_t *addr, ngx_connection_t **c)
{
    ngx_int_t              rc;
    ngx_peer_connection_t  pc;

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));

    pc.sockaddr = addr->sockaddr;
    pc.socklen = addr->socklen;
    pc.name = &addr->name;
    pc.get = ngx_event_get_peer;
    pc.log = ngx_cycle->log;
    pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&pc);

    if (rc != NGX_OK && rc != NGX_AGAIN) {
        if (pc.connection) {
            ngx_close_connection(pc.connection);
        }

        return NGX_ERROR;
    }

    *c = pc.connection;

    return rc;
}


/*
 * The 4-byte big-endian length at p: NGX_AGAIN while incomplete,
 * NGX_ERROR when 0 or above max.
 */

ngx_int_t
ngx_http_mom_frame_length(u_char *p, u_char *last, size_t max, size_t *len)
{
    size_t  n;

    if (last - p < NGX_HTTP_MOM_FRAME_HEADER) {
        return NGX_AGAIN;
    }

    n = ((size_t) p[0] << 24) | ((size_t) p[1] << 16)
        | ((size_t) p[2] << 8) | (size_t) p[3];

    if (n == 0 || n > max) {
        return NGX_ERROR;
    }

    *len = n;

    return NGX_OK;
}


ngx_str_t *
ngx_http_mom_status_line(ngx_uint_t status)
{
    return status == NGX_HTTP_MOM_UNPROCESSABLE ? &ngx_http_mom_422 : NULL;
}


static ngx_int_t
ngx_http_mom_create_request(ngx_http_request_t *r)
{
    size_t                    size;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_mom_ctx_t       *ctx;
    ngx_http_mom_loc_conf_t  *mlcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);
    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    size = mom__request__get_packed_size(&ctx->req);

    if (size == 0 || size > mlcf->max_frame_size) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "mom: request frame of %uz bytes is out of bounds",
                      size);
        return NGX_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_MOM_FRAME_HEADER + size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_http_mom_frame_pack(b->last, &ctx->req, size);

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->upstream->request_bufs = cl;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mom request: op %d, %uz bytes", ctx->req.op, size);

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_reinit_request(ngx_http_request_t *r)
{
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    ctx->json = 0;
    ctx->no_keepalive = 0;
    ctx->streaming = 0;
    ctx->stream_ended = 0;

    if (ctx->frames) {
        ctx->frames->pos = ctx->frames->start;
        ctx->frames->last = ctx->frames->start;
    }

    return NGX_OK;
}


/*
 * Waits for the first complete frame, growing u->buffer when the frame
 * announces more than it holds (up to mom_max_frame_size), and answers the
 * client from it.
 */

static ngx_int_t
ngx_http_mom_process_header(ngx_http_request_t *r)
{
    u_char                   *p;
    size_t                    len, have, need;
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    Mom__Response            *resp;
    ProtobufCAllocator        allocator;
    ngx_http_mom_ctx_t       *ctx;
    ngx_http_mom_loc_conf_t  *mlcf;

    b = &r->upstream->buffer;
    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);
    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    rc = ngx_http_mom_frame_length(b->pos, b->last, mlcf->max_frame_size,
                                   &len);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent a frame of invalid length");
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    have = b->last - b->pos;
    need = NGX_HTTP_MOM_FRAME_HEADER + len;

    if (have < need) {

        if ((size_t) (b->end - b->pos) < need) {
            p = ngx_palloc(r->pool, need);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(p, b->pos, have);
            ngx_pfree(r->pool, b->start);

            b->start = p;
            b->pos = p;
            b->last = p + have;
            b->end = p + need;
        }

        return NGX_AGAIN;
    }

    /* unpacked into the request's pool: no malloc() per reply */

    allocator.alloc = ngx_http_mom_pb_alloc;
    allocator.free = ngx_http_mom_pb_free;
    allocator.allocator_data = r->pool;

    resp = mom__response__unpack(&allocator, len,
                                 b->pos + NGX_HTTP_MOM_FRAME_HEADER);

    if (resp == NULL || resp->kind != MOM__KIND__KIND_REPLY) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent an invalid reply frame");

        if (resp) {
            mom__response__free_unpacked(resp, &allocator);
        }

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    b->pos += need;

    rc = ngx_http_mom_reply(r, ctx, resp);

    mom__response__free_unpacked(resp, &allocator);

    return rc;
}


static ngx_int_t
ngx_http_mom_reply(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    Mom__Response *resp)
{
    u_char               *p;
    ngx_buf_t            *b;
    ngx_str_t             body, *line;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    b = &u->buffer;

    u->headers_in.status_n = resp->status;
    u->state->status = resp->status;

    line = ngx_http_mom_status_line(resp->status);
    if (line) {
        u->headers_in.status_line = *line;
    }

    ctx->json = 1;

    if (ctx->stream && resp->status == NGX_HTTP_OK) {
        /* the frames after the REPLY are events: left in u->buffer */
        ctx->stream_buffer = (size_t) resp->stream_buffer;
        return ngx_http_mom_sse_start(r, ctx);
    }

    if (ngx_http_mom_reply_body(r, ctx, resp, &body) != NGX_OK) {
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (b->pos != b->last) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent data after the reply");
        ctx->no_keepalive = 1;
    }

    /* the body replaces the frame in u->buffer, whence it is relayed */

    if ((size_t) (b->end - b->start) < body.len) {
        p = ngx_palloc(r->pool, body.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_pfree(r->pool, b->start);

        b->start = p;
        b->end = p + body.len;
    }

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, body.data, body.len);

    u->headers_in.content_length_n = body.len;

    ngx_http_mom_set_json_type(r);

    return NGX_OK;
}


/*
 * The body of a unary reply for the client: momd's, or for a successful
 * login the token signed here, in the worker that holds the key (momd
 * checked the password). NGX_ERROR: the reply is not a valid one.
 */

ngx_int_t
ngx_http_mom_reply_body(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    Mom__Response *resp, ngx_str_t *body)
{
    if (resp->status < 100 || resp->status > 599) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent a reply with status %uD", resp->status);
        return NGX_ERROR;
    }

    if (ctx->op == MOM__OP__OP_LOGIN && resp->status == NGX_HTTP_OK) {
        return ngx_http_mom_login_body(r, resp, body);
    }

    body->data = resp->body.data;
    body->len = resp->body.len;

    if (body->len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent a reply without a body");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Answers the client from a reply that came on the channel (whose memory
 * is not the request's: the body is copied).
 */

ngx_int_t
ngx_http_mom_send_reply(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    Mom__Response *resp)
{
    u_char     *p;
    ngx_str_t   body;

    if (ngx_http_mom_reply_body(r, ctx, resp, &body) != NGX_OK) {
        return ngx_http_mom_send_error(r, NGX_HTTP_BAD_GATEWAY, NULL);
    }

    if (body.data == resp->body.data) {
        p = ngx_pnalloc(r->pool, body.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, body.data, body.len);
        body.data = p;
    }

    return ngx_http_mom_send_json(r, resp->status, &body);
}



static ngx_int_t
ngx_http_mom_login_body(ngx_http_request_t *r, Mom__Response *resp,
    ngx_str_t *body)
{
    size_t                    len;
    ngx_str_t                 token;
    ngx_http_mom_loc_conf_t  *mlcf;

    if (resp->user == NULL
        || ngx_http_mom_valid_name((u_char *) resp->user,
                                   ngx_strlen(resp->user))
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "momd sent a login reply without a valid user");
        return NGX_ERROR;
    }

    if (ngx_http_mom_jwt_sign(r, resp->user, &token) != NGX_OK) {
        return NGX_ERROR;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    len = sizeof("{\"token\":\"\",\"token_type\":\"Bearer\","
                 "\"expires_in\":}") - 1
          + token.len + NGX_TIME_T_LEN;

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    body->len = ngx_sprintf(body->data,
                            "{\"token\":\"%V\",\"token_type\":\"Bearer\","
                            "\"expires_in\":%T}",
                            &token, mlcf->jwt_lifetime)
                - body->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_filter_init(void *data)
{
    ngx_http_mom_ctx_t  *ctx = data;

    ngx_http_upstream_t  *u;

    if (ctx->streaming) {
        return ngx_http_mom_sse_filter_init(ctx);
    }

    u = ctx->request->upstream;

    u->length = u->headers_in.content_length_n;

    return NGX_OK;
}


/*
 * A unary reply: the body sits in u->buffer (put there by process_header);
 * pass it on as it is, and release the connection to the keepalive cache
 * once all of it has been seen.
 */

static ngx_int_t
ngx_http_mom_filter(void *data, ssize_t bytes)
{
    ngx_http_mom_ctx_t  *ctx = data;

    ngx_buf_t            *b;
    ngx_chain_t          *cl, **ll;
    ngx_http_upstream_t  *u;

    if (ctx->streaming) {
        return ngx_http_mom_sse_filter(ctx, bytes);
    }

    u = ctx->request->upstream;
    b = &u->buffer;

    if (bytes > u->length) {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "momd sent data after the reply");
        ctx->no_keepalive = 1;
        u->keepalive = 0;
        bytes = u->length;
    }

    if (bytes == 0) {
        return NGX_OK;
    }

    for (ll = &u->out_bufs; *ll; ll = &(*ll)->next) { /* void */ }

    cl = ngx_chain_get_free_buf(ctx->request->pool, &u->free_bufs);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    *ll = cl;

    cl->buf->flush = 1;
    cl->buf->memory = 1;
    cl->buf->tag = u->output.tag;
    cl->buf->pos = b->last;
    b->last += bytes;
    cl->buf->last = b->last;

    u->length -= bytes;

    if (u->length == 0 && !ctx->no_keepalive && !ctx->stream) {
        u->keepalive = 1;
    }

    return NGX_OK;
}


static void *
ngx_http_mom_pb_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


/* small blocks go with the pool; a large one (a history page) now */

static void
ngx_http_mom_pb_free(void *pool, void *p)
{
    ngx_pfree(pool, p);
}


static void
ngx_http_mom_abort_request(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "abort mom request");
}


static void
ngx_http_mom_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_mom_ctx_t  *ctx;

    /* the hub must not write to a stream that is over */

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    if (ctx) {
        ngx_http_mom_hub_leave(ctx);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "finalize mom request: %i", rc);
}
