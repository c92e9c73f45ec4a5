
/*
 * Pipelined connections to momd for unary requests. Each worker keeps one
 * connection (a channel) per momd upstream; a request becomes a frame with
 * an id (Request.id in proto/mom.proto), the frames queued during one turn
 * of the event loop leave in one write, replies are read in bulk and
 * matched to their requests by id, in whatever order momd completes them.
 * This spares each request the upstream set-up and two system calls, and
 * lets momd read and answer many requests per system call.
 *
 * A request whose client goes away, or that momd does not answer in
 * time, is cancelled: an OP_CANCEL frame tells momd not to start it if it
 * has not yet (a RECEIVE nobody waits for must not take a message), and a
 * late reply is dropped. SSE streams, and requests that find no usable
 * channel (momd unreachable a moment ago, too many in flight), go through
 * ngx_http_upstream (ngx_http_mom_upstream.c) instead.
 */


#include "ngx_http_mom.h"


#define NGX_HTTP_MOM_CHANNEL_BUFFER     65536
#define NGX_HTTP_MOM_CHANNEL_MAX_CALLS  8192
/* after a failed connect, requests take the upstream for this long */
#define NGX_HTTP_MOM_CHANNEL_BACKOFF    1000


typedef struct ngx_http_mom_channel_s  ngx_http_mom_channel_t;


struct ngx_http_mom_call_s {
    ngx_rbtree_node_t          node;         /* key: the request id */
    ngx_http_mom_call_t       *next_free;
    ngx_http_mom_channel_t    *channel;
    ngx_http_request_t        *request;
    ngx_msec_t                 deadline;
};


struct ngx_http_mom_channel_s {
    ngx_http_mom_channel_t        *next;
    ngx_http_upstream_srv_conf_t  *upstream;
    ngx_addr_t                    *addr;     /* NULL: not one address */
    ngx_connection_t              *connection;

    ngx_rbtree_t                   calls;
    ngx_rbtree_node_t              sentinel;
    ngx_uint_t                     ncalls;
    ngx_http_mom_call_t           *free_calls;
    uint64_t                       last_id;

    ngx_buf_t                      in;       /* replies; grows for a frame */
    ngx_buf_t                      out;      /* frames not written yet */

    size_t                         max_frame;
    ngx_msec_t                     connect_timeout;
    ngx_msec_t                     read_timeout;
    ngx_msec_t                     retry_at;

    unsigned                       connected:1;
};


static ngx_http_mom_channel_t *ngx_http_mom_channel_get(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_channel_connect(ngx_http_mom_channel_t *ch);
static ngx_int_t ngx_http_mom_channel_frame(ngx_http_mom_channel_t *ch,
    Mom__Request *req);
static void ngx_http_mom_channel_cancel(ngx_http_mom_channel_t *ch,
    uint64_t id);
static void ngx_http_mom_channel_check_client(ngx_http_request_t *r);
static void ngx_http_mom_channel_write_handler(ngx_event_t *wev);
static void ngx_http_mom_channel_read_handler(ngx_event_t *rev);
static void ngx_http_mom_channel_flush(ngx_http_mom_channel_t *ch);
static ngx_int_t ngx_http_mom_channel_replies(ngx_http_mom_channel_t *ch);
static void ngx_http_mom_channel_expire(ngx_http_mom_channel_t *ch);
static void ngx_http_mom_channel_fail(ngx_http_mom_channel_t *ch,
    ngx_uint_t status);
static void ngx_http_mom_channel_idle(ngx_http_mom_channel_t *ch);
static ngx_http_mom_call_t *ngx_http_mom_call_find(
    ngx_http_mom_channel_t *ch, uint64_t id);
static void ngx_http_mom_call_end(ngx_http_mom_channel_t *ch,
    ngx_http_mom_call_t *call, Mom__Response *resp, ngx_uint_t status);
static void ngx_http_mom_call_forget(ngx_http_mom_channel_t *ch,
    ngx_http_mom_call_t *call);
static void ngx_http_mom_call_detach(void *data);


static ngx_http_mom_channel_t  *ngx_http_mom_channels;


/*
 * Queues the request's frame on the worker's channel: NGX_OK when the
 * reply will finalize the request (the caller's reference is the one
 * released then), NGX_DECLINED when the request must take the upstream.
 */

ngx_int_t
ngx_http_mom_channel_send(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_mom_call_t     *call;
    ngx_http_mom_channel_t  *ch;

    if (ctx->stream) {
        return NGX_DECLINED;
    }

    ch = ngx_http_mom_channel_get(r);

    if (ch == NULL || ch->ncalls >= NGX_HTTP_MOM_CHANNEL_MAX_CALLS) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    call = ch->free_calls;

    if (call) {
        ch->free_calls = call->next_free;

    } else {
        call = ngx_alloc(sizeof(ngx_http_mom_call_t), ngx_cycle->log);
        if (call == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->req.id = ch->last_id + 1;

    if (ngx_http_mom_channel_frame(ch, &ctx->req) != NGX_OK) {
        ctx->req.id = 0;
        call->next_free = ch->free_calls;
        ch->free_calls = call;
        return NGX_DECLINED;
    }

    ch->last_id++;

    call->node.key = (ngx_rbtree_key_t) ch->last_id;
    call->channel = ch;
    call->request = r;
    call->deadline = ngx_current_msec + ch->read_timeout;

    ngx_rbtree_insert(&ch->calls, &call->node);
    ch->ncalls++;

    ctx->call = call;
    cln->handler = ngx_http_mom_call_detach;
    cln->data = ctx;

    r->read_event_handler = ngx_http_mom_channel_check_client;
    r->write_event_handler = ngx_http_request_empty_handler;

    ch->connection->idle = 0;

    if (!ch->connection->read->timer_set) {
        ngx_add_timer(ch->connection->read, ch->read_timeout);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mom channel request: op %d, id %uL",
                   ctx->req.op, ch->last_id);

    return NGX_OK;
}


/*
 * The worker's channel to the location's momd, connected; NULL when the
 * upstream must be used.
 */

static ngx_http_mom_channel_t *
ngx_http_mom_channel_get(ngx_http_request_t *r)
{
    ngx_http_mom_channel_t        *ch;
    ngx_http_upstream_server_t    *server;
    ngx_http_mom_loc_conf_t       *mlcf;
    ngx_http_upstream_srv_conf_t  *uscf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);
    uscf = mlcf->upstream.upstream;

    for (ch = ngx_http_mom_channels; ch; ch = ch->next) {
        if (ch->upstream == uscf) {
            break;
        }
    }

    if (ch == NULL) {
        ch = ngx_calloc(sizeof(ngx_http_mom_channel_t), ngx_cycle->log);
        if (ch == NULL) {
            return NULL;
        }

        ch->upstream = uscf;

        /* a channel speaks to one momd; several servers: the upstream */

        if (uscf->servers && uscf->servers->nelts == 1) {
            server = uscf->servers->elts;

            if (server->naddrs == 1) {
                ch->addr = server->addrs;
            }
        }

        ngx_rbtree_init(&ch->calls, &ch->sentinel, ngx_rbtree_insert_value);

        ch->next = ngx_http_mom_channels;
        ngx_http_mom_channels = ch;
    }

    if (ch->addr == NULL) {
        return NULL;
    }

    ch->max_frame = ngx_max(ch->max_frame, mlcf->max_frame_size);
    ch->connect_timeout = mlcf->upstream.connect_timeout;
    ch->read_timeout = mlcf->upstream.read_timeout;

    if (ch->connection == NULL && ngx_http_mom_channel_connect(ch) != NGX_OK)
    {
        return NULL;
    }

    return ch;
}


static ngx_int_t
ngx_http_mom_channel_connect(ngx_http_mom_channel_t *ch)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    if ((ngx_msec_int_t) (ngx_current_msec - ch->retry_at) < 0) {
        return NGX_DECLINED;
    }

    if (ch->in.start == NULL) {
        ch->in.start = ngx_alloc(NGX_HTTP_MOM_CHANNEL_BUFFER, ngx_cycle->log);
        ch->out.start = ngx_alloc(NGX_HTTP_MOM_CHANNEL_BUFFER,
                                  ngx_cycle->log);

        if (ch->in.start == NULL || ch->out.start == NULL) {
            ngx_free(ch->in.start);
            ngx_free(ch->out.start);
            ch->in.start = NULL;
            ch->out.start = NULL;
            return NGX_ERROR;
        }

        ch->in.end = ch->in.start + NGX_HTTP_MOM_CHANNEL_BUFFER;
        ch->out.end = ch->out.start + NGX_HTTP_MOM_CHANNEL_BUFFER;
    }

    ch->in.pos = ch->in.start;
    ch->in.last = ch->in.start;
    ch->out.pos = ch->out.start;
    ch->out.last = ch->out.start;

    rc = ngx_http_mom_connect(ch->addr, &c);

    if (rc == NGX_ERROR) {
        ch->retry_at = ngx_current_msec + NGX_HTTP_MOM_CHANNEL_BACKOFF;

        return NGX_DECLINED;
    }

    c->data = ch;
    c->read->handler = ngx_http_mom_channel_read_handler;
    c->write->handler = ngx_http_mom_channel_write_handler;

    ch->connection = c;
    ch->connected = (rc == NGX_OK);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, ch->connect_timeout);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "mom channel connected to %V", &ch->addr->name);

    return NGX_OK;
}


/*
 * Appends req's frame to the output; it is written after this turn's
 * other requests have joined it.
 */

static ngx_int_t
ngx_http_mom_channel_frame(ngx_http_mom_channel_t *ch, Mom__Request *req)
{
    size_t  size;

    size = mom__request__get_packed_size(req);

    if (size > ch->max_frame
        || ngx_http_mom_buf_reserve(&ch->out,
                                        NGX_HTTP_MOM_FRAME_HEADER + size)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ch->out.last = ngx_http_mom_frame_pack(ch->out.last, req, size);

    if (ch->connected && !ch->connection->write->posted) {
        ngx_post_event(ch->connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_mom_channel_cancel(ngx_http_mom_channel_t *ch, uint64_t id)
{
    Mom__Request  req;

    if (ch->connection == NULL) {
        return;
    }

    mom__request__init(&req);

    req.op = MOM__OP__OP_CANCEL;
    req.id = id;

    (void) ngx_http_mom_channel_frame(ch, &req);
}


/*
 * The client of a waiting request: when it has closed its connection, the
 * request is cancelled and finalized (499). Data from it is a pipelined
 * request, left for later.
 */

static void
ngx_http_mom_channel_check_client(ngx_http_request_t *r)
{
    u_char                buf;
    ssize_t               n;
    ngx_err_t             err;
    ngx_connection_t     *c;
    ngx_http_mom_ctx_t   *ctx;

    c = r->connection;

    if (!c->error) {
        n = recv(c->fd, &buf, 1, MSG_PEEK);
        err = ngx_socket_errno;

        if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
            return;
        }
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    if (ctx->call == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "client closed the connection while waiting for momd");

    ngx_http_mom_call_detach(ctx);

    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


static void
ngx_http_mom_channel_write_handler(ngx_event_t *wev)
{
    int                      err;
    socklen_t                len;
    ngx_connection_t        *c;
    ngx_http_mom_channel_t  *ch;

    c = wev->data;
    ch = c->data;

    if (!ch->connected) {

        if (wev->timedout) {
            ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                          "mom channel: connect to %V timed out",
                          &ch->addr->name);
            ngx_http_mom_channel_fail(ch, NGX_HTTP_GATEWAY_TIME_OUT);
            return;
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, c->log, err,
                          "mom channel: connect to %V failed",
                          &ch->addr->name);
            ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
            return;
        }

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        ch->connected = 1;
    }

    ngx_http_mom_channel_flush(ch);
}


static void
ngx_http_mom_channel_flush(ngx_http_mom_channel_t *ch)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = ch->connection;
    b = &ch->out;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            /* the write event comes back when momd has read */
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
            return;
        }

        b->pos += n;
    }

    b->pos = b->start;
    b->last = b->start;
}


static void
ngx_http_mom_channel_read_handler(ngx_event_t *rev)
{
    size_t                   size;
    ssize_t                  n;
    ngx_buf_t               *b;
    ngx_connection_t        *c;
    ngx_http_mom_channel_t  *ch;

    c = rev->data;
    ch = c->data;

    if (c->close) {
        /* the worker is exiting */
        ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;
        ngx_http_mom_channel_expire(ch);
    }

    b = &ch->in;

    for ( ;; ) {
        size = b->end - b->last;

        n = c->recv(c, b->last, size);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (ch->ncalls) {
                ngx_log_error(NGX_LOG_ERR, c->log, 0,
                              "mom channel: momd closed the connection "
                              "with %ui requests unanswered", ch->ncalls);
            }

            ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
            return;
        }

        b->last += n;

        if (ngx_http_mom_channel_replies(ch) != NGX_OK) {
            ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
            return;
        }

        /*
         * A short read emptied the socket: more data brings a new edge
         * (epoll ET), so the read that would say EAGAIN is skipped.
         */

        if ((size_t) n < size) {
            break;
        }
    }

    ngx_http_mom_channel_idle(ch);
}


/*
 * Answers the requests whose replies are complete in ch->in; what is left
 * is the beginning of the next frame, moved to the start of a buffer big
 * enough for all of it.
 */

static ngx_int_t
ngx_http_mom_channel_replies(ngx_http_mom_channel_t *ch)
{
    size_t                len, need;
    ngx_int_t             rc;
    ngx_buf_t            *b;
    Mom__Response        *resp;
    ngx_http_mom_call_t  *call;

    b = &ch->in;

    for ( ;; ) {
        rc = ngx_http_mom_frame_length(b->pos, b->last, ch->max_frame, &len);

        if (rc == NGX_AGAIN) {
            need = NGX_HTTP_MOM_FRAME_HEADER;
            break;
        }

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ch->connection->log, 0,
                          "mom channel: momd sent a frame of invalid length");
            return NGX_ERROR;
        }

        need = NGX_HTTP_MOM_FRAME_HEADER + len;

        if ((size_t) (b->last - b->pos) < need) {
            break;
        }

        resp = mom__response__unpack(NULL, len,
                                     b->pos + NGX_HTTP_MOM_FRAME_HEADER);

        b->pos += need;

        if (resp == NULL || resp->kind != MOM__KIND__KIND_REPLY) {
            ngx_log_error(NGX_LOG_ERR, ch->connection->log, 0,
                          "mom channel: momd sent an invalid reply frame");

            if (resp) {
                mom__response__free_unpacked(resp, NULL);
            }

            return NGX_ERROR;
        }

        call = ngx_http_mom_call_find(ch, resp->id);

        if (call) {
            ngx_http_mom_call_end(ch, call, resp, 0);

        } else {
            /* its request was cancelled */
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ch->connection->log, 0,
                           "mom channel: reply to cancelled request %uL",
                           resp->id);
        }

        mom__response__free_unpacked(resp, NULL);
    }

    /* a buffer grown for one big reply is given back once it is empty */

    if (b->pos == b->last
        && b->end - b->start > NGX_HTTP_MOM_CHANNEL_BUFFER)
    {
        ngx_free(b->start);

        b->start = ngx_alloc(NGX_HTTP_MOM_CHANNEL_BUFFER, ngx_cycle->log);
        if (b->start == NULL) {
            return NGX_ERROR;
        }

        b->end = b->start + NGX_HTTP_MOM_CHANNEL_BUFFER;
    }

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
        return NGX_OK;
    }

    return ngx_http_mom_buf_reserve(b, need - (b->last - b->pos));
}


/* requests past their deadline are answered 504; their replies dropped */

static void
ngx_http_mom_channel_expire(ngx_http_mom_channel_t *ch)
{
    ngx_rbtree_node_t    *node;
    ngx_http_mom_call_t  *call;

    while (ch->ncalls) {
        node = ngx_rbtree_min(ch->calls.root, ch->calls.sentinel);
        call = (ngx_http_mom_call_t *) node;

        if ((ngx_msec_int_t) (call->deadline - ngx_current_msec) > 0) {
            break;
        }

        ngx_log_error(NGX_LOG_ERR, ch->connection->log, NGX_ETIMEDOUT,
                      "mom channel: momd did not answer request %uL in "
                      "time", (uint64_t) node->key);

        ngx_http_mom_channel_cancel(ch, (uint64_t) node->key);
        ngx_http_mom_call_end(ch, call, NULL, NGX_HTTP_GATEWAY_TIME_OUT);
    }
}


/*
 * The connection is lost or unusable: it is closed and every request
 * still waiting is answered with status (momd may or may not have done
 * it, as with a failed upstream). The next request connects again.
 */

static void
ngx_http_mom_channel_fail(ngx_http_mom_channel_t *ch, ngx_uint_t status)
{
    ngx_rbtree_node_t  *node;

    ngx_close_connection(ch->connection);

    ch->connection = NULL;
    ch->connected = 0;

    while (ch->ncalls) {
        node = ngx_rbtree_min(ch->calls.root, ch->calls.sentinel);
        ngx_http_mom_call_end(ch, (ngx_http_mom_call_t *) node, NULL, status);
    }
}


/*
 * Re-arms the deadline of the oldest request; an idle channel may be
 * closed by a worker that exits, and is closed by one that is exiting.
 */

static void
ngx_http_mom_channel_idle(ngx_http_mom_channel_t *ch)
{
    ngx_msec_int_t       timer;
    ngx_rbtree_node_t   *node;
    ngx_connection_t    *c;
    ngx_http_mom_call_t *call;

    c = ch->connection;

    if (c == NULL) {
        return;
    }

    if (ch->ncalls) {
        if (!c->read->timer_set) {
            node = ngx_rbtree_min(ch->calls.root, ch->calls.sentinel);
            call = (ngx_http_mom_call_t *) node;

            timer = (ngx_msec_int_t) (call->deadline - ngx_current_msec);
            ngx_add_timer(c->read, (ngx_msec_t) ngx_max(timer, 1));
        }

        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (ngx_exiting) {
        ngx_http_mom_channel_fail(ch, NGX_HTTP_BAD_GATEWAY);
        return;
    }

    c->idle = 1;
}


static ngx_http_mom_call_t *
ngx_http_mom_call_find(ngx_http_mom_channel_t *ch, uint64_t id)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node, *sentinel;

    key = (ngx_rbtree_key_t) id;
    node = ch->calls.root;
    sentinel = ch->calls.sentinel;

    while (node != sentinel) {

        if (key == node->key) {
            return (ngx_http_mom_call_t *) node;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Ends a call with momd's reply, or with an error status when there is
 * none, and finalizes its request if it is still there.
 */

static void
ngx_http_mom_call_end(ngx_http_mom_channel_t *ch, ngx_http_mom_call_t *call,
    Mom__Response *resp, ngx_uint_t status)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_mom_ctx_t  *ctx;

    r = call->request;

    ngx_http_mom_call_forget(ch, call);

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);
    ctx->call = NULL;

    c = r->connection;

    if (resp) {
        rc = ngx_http_mom_send_reply(r, ctx, resp);

    } else {
        rc = ngx_http_mom_send_error(r, status, NULL);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_mom_call_forget(ngx_http_mom_channel_t *ch,
    ngx_http_mom_call_t *call)
{
    ngx_rbtree_delete(&ch->calls, &call->node);
    ch->ncalls--;

    call->next_free = ch->free_calls;
    ch->free_calls = call;
}


/* the request is going away (terminated) before its reply came */

static void
ngx_http_mom_call_detach(void *data)
{
    ngx_http_mom_ctx_t  *ctx = data;

    ngx_http_mom_call_t  *call;

    call = ctx->call;

    if (call) {
        ctx->call = NULL;

        ngx_http_mom_channel_cancel(call->channel, (uint64_t) call->node.key);
        ngx_http_mom_call_forget(call->channel, call);
    }
}
