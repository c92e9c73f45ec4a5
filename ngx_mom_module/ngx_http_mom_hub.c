
/*
 * Shared streams: the worker's fan-out of a topic's events.
 *
 * Each worker keeps at most one momd subscription (a hub) per topic it has
 * subscribers of, live from its start, and the last events it carried (a
 * ring). Every subscriber starts on a stream of its own (OP_SUBSCRIBE,
 * replay from its Last-Event-ID, exactly as without hubs) and is pending
 * in the hub of its topic. As soon as the offset it has delivered lies in
 * the hub's ring (or right before it), the subscriber is attached: the
 * ring's later events are written to it, its own stream is muted
 * (OP_MUTE: momd then sends it heartbeats and its final event only) and
 * the hub's events are written to it from then on, each one read once from
 * momd and copied to each subscriber. Each subscriber keeps the offset it
 * has written last: whatever comes twice (the muted stream's events in
 * flight) is dropped, and an event that would leave a gap ends the stream
 * as too slow, so the client resumes with Last-Event-ID.
 *
 * Per subscriber the worker holds at most momd's sse_buffer
 * (Response.stream_buffer) plus 256 KiB unsent, about what momd and the
 * socket held for a subscriber on its own stream; beyond it the subscriber
 * is ended with "subscriber too slow". The hub's END (topic deleted, momd
 * shutting down or cutting the hub off) is written to every attached
 * subscriber, and the hub's connection failing ends them without an event:
 * they resume with Last-Event-ID. Pending subscribers stay on their own
 * streams.
 */


#include "ngx_http_mom.h"


#define NGX_HTTP_MOM_HUB_EVENTS   1024          /* ring: events kept */
#define NGX_HTTP_MOM_HUB_BYTES    (1024 * 1024) /* ring: bytes kept */
#define NGX_HTTP_MOM_HUB_BUFFER   65536
#define NGX_HTTP_MOM_HUB_LIMIT    (1024 * 1024) /* no stream_buffer said */
/*
 * Added to momd's sse_buffer: what the Unix socket from momd held for a
 * subscriber on its own stream before momd's queue for it grew.
 */
#define NGX_HTTP_MOM_HUB_SLACK    (256 * 1024)
/* momd's largest heartbeat interval: the hub needs none */
#define NGX_HTTP_MOM_HUB_HEARTBEAT  3600000


typedef struct {
    uint64_t                       offset;
    u_char                        *data;
    size_t                         len;
} ngx_http_mom_hub_event_t;


struct ngx_http_mom_hub_s {
    ngx_str_node_t                 sn;       /* key: upstream + topic */
    ngx_http_upstream_srv_conf_t  *upstream;
    ngx_connection_t              *connection;

    ngx_queue_t                    pending;
    ngx_queue_t                    attached;
    ngx_uint_t                     nsubs;
    ngx_uint_t                     busy;     /* being iterated */
    ngx_http_mom_ctx_t            *writing;  /* NULL once it detached */

    ngx_buf_t                      in;
    ngx_buf_t                      out;
    size_t                         max_frame;

    ngx_http_mom_hub_event_t       ring[NGX_HTTP_MOM_HUB_EVENTS];
    ngx_uint_t                     first;    /* index of the oldest */
    ngx_uint_t                     count;
    size_t                         bytes;

    unsigned                       in_tree:1;
    unsigned                       connected:1;
    unsigned                       replied:1;
    unsigned                       failed:1;
};


static ngx_http_mom_hub_t *ngx_http_mom_hub_get(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
static ngx_http_mom_hub_t *ngx_http_mom_hub_open(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_str_t *key, uint32_t hash);
static void ngx_http_mom_hub_write_handler(ngx_event_t *wev);
static void ngx_http_mom_hub_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_mom_hub_frames(ngx_http_mom_hub_t *hub);
static void ngx_http_mom_hub_event(ngx_http_mom_hub_t *hub, u_char *data,
    size_t len);
static void ngx_http_mom_hub_deliver(ngx_http_mom_ctx_t *ctx,
    uint64_t offset, u_char *data, size_t len);
static void ngx_http_mom_hub_attach_pending(ngx_http_mom_hub_t *hub);
static void ngx_http_mom_hub_flush(ngx_http_mom_hub_t *hub);
static void ngx_http_mom_hub_fail(ngx_http_mom_hub_t *hub, u_char *end,
    size_t len);
static void ngx_http_mom_hub_release(ngx_http_mom_hub_t *hub);
static void ngx_http_mom_hub_mute(ngx_http_mom_ctx_t *ctx);
static size_t ngx_http_mom_hub_queued(ngx_http_mom_ctx_t *ctx);
static size_t ngx_http_mom_hub_limit(ngx_http_mom_ctx_t *ctx);


static ngx_rbtree_t       ngx_http_mom_hubs;
static ngx_rbtree_node_t  ngx_http_mom_hubs_sentinel;
static ngx_uint_t         ngx_http_mom_hubs_init;


static u_char  ngx_http_mom_hub_slow[] =
    "event: end\ndata: {\"reason\":\"subscriber too slow\"}\n\n";


/*
 * The offset of an SSE message text as momd writes it ("id: N\n..."); 0
 * for anything else (heartbeats, retry).
 */

uint64_t
ngx_http_mom_sse_offset(u_char *p, size_t len)
{
    uint64_t  n;
    u_char   *last;

    if (len < 5 || ngx_strncmp(p, "id: ", 4) != 0) {
        return 0;
    }

    last = p + len;
    n = 0;

    for (p += 4; p < last && *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) {
            return 0;
        }

        n = n * 10 + (*p - '0');
    }

    return (p < last && *p == '\n') ? n : 0;
}


/*
 * The stream of ctx has started (its 200 REPLY): it becomes a pending
 * subscriber of its topic's hub (attached by the stream's input filter or
 * the hub's next read).
 */

void
ngx_http_mom_hub_join(ngx_http_mom_ctx_t *ctx)
{
    ngx_http_mom_hub_t  *hub;

    hub = ngx_http_mom_hub_get(ctx->request, ctx);
    if (hub == NULL) {
        return;
    }

    ctx->hub = hub;
    ngx_queue_insert_tail(&hub->pending, &ctx->hub_link);
    hub->nsubs++;
}


/* The stream of ctx ends: it leaves its hub. */

void
ngx_http_mom_hub_leave(ngx_http_mom_ctx_t *ctx)
{
    ngx_http_mom_hub_t  *hub;

    hub = ctx->hub;
    if (hub == NULL) {
        return;
    }

    ngx_queue_remove(&ctx->hub_link);
    ctx->hub = NULL;
    ctx->attached = 0;

    if (hub->writing == ctx) {
        hub->writing = NULL;
    }

    hub->nsubs--;

    ngx_http_mom_hub_release(hub);
}


/*
 * Attaches ctx if the ring holds every event after the last one ctx has
 * written: those are written now (the caller flushes), and its own stream
 * is muted.
 */

void
ngx_http_mom_hub_try_attach(ngx_http_mom_ctx_t *ctx)
{
    ngx_uint_t                 i;
    ngx_http_mom_hub_t        *hub;
    ngx_http_mom_hub_event_t  *ev, *oldest, *newest;

    hub = ctx->hub;

    if (hub == NULL || ctx->attached || !ctx->offset_known
        || ctx->stream_ended || hub->failed || hub->count == 0)
    {
        return;
    }

    oldest = &hub->ring[hub->first];
    newest = &hub->ring[(hub->first + hub->count - 1)
                        % NGX_HTTP_MOM_HUB_EVENTS];

    if (ctx->last_offset + 1 < oldest->offset
        || ctx->last_offset > newest->offset)
    {
        return;
    }

    ngx_queue_remove(&ctx->hub_link);
    ngx_queue_insert_tail(&hub->attached, &ctx->hub_link);
    ctx->attached = 1;
    ctx->unsent = ngx_http_mom_hub_queued(ctx);

    ngx_http_mom_hub_mute(ctx);

    for (i = 0; i < hub->count && ctx->hub; i++) {
        ev = &hub->ring[(hub->first + i) % NGX_HTTP_MOM_HUB_EVENTS];
        ngx_http_mom_hub_deliver(ctx, ev->offset, ev->data, ev->len);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "mom sse: \"%s\" attached after %uL",
                   ctx->req.name, ctx->last_offset);
}


/*
 * Ends the stream of ctx with the final event text (the caller flushes and
 * the stream leaves its hub then): the response ends once what is queued
 * is written.
 */

void
ngx_http_mom_hub_end(ngx_http_mom_ctx_t *ctx, u_char *text, size_t len)
{
    if (ctx->stream_ended) {
        return;
    }

    if (len) {
        (void) ngx_http_mom_sse_output(ctx, text, len);
    }

    ctx->stream_ended = 1;
    ctx->dirty = 1;
    ctx->request->upstream->length = 0;
}


static ngx_http_mom_hub_t *
ngx_http_mom_hub_get(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    u_char                        *p;
    uint32_t                       hash;
    ngx_str_t                      key;
    ngx_str_node_t                *sn;
    ngx_http_mom_loc_conf_t       *mlcf;

    if (!ngx_http_mom_hubs_init) {
        ngx_rbtree_init(&ngx_http_mom_hubs, &ngx_http_mom_hubs_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_http_mom_hubs_init = 1;
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    p = ngx_pnalloc(r->pool, NGX_PTR_SIZE * 2 + 1 + ctx->name.len);
    if (p == NULL) {
        return NULL;
    }

    key.data = p;
    key.len = ngx_sprintf(p, "%p/%V", mlcf->upstream.upstream, &ctx->name)
              - p;

    hash = ngx_crc32_short(key.data, key.len);

    sn = ngx_str_rbtree_lookup(&ngx_http_mom_hubs, &key, hash);

    if (sn) {
        return (ngx_http_mom_hub_t *) sn;
    }

    return ngx_http_mom_hub_open(r, ctx, &key, hash);
}


static ngx_http_mom_hub_t *
ngx_http_mom_hub_open(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_str_t *key, uint32_t hash)
{
    size_t                         size;
    ngx_int_t                      rc;
    Mom__Request                   req = MOM__REQUEST__INIT;
    ngx_connection_t              *c;
    ngx_http_mom_hub_t            *hub;
    ngx_http_upstream_server_t    *server;
    ngx_http_mom_loc_conf_t       *mlcf;
    ngx_http_upstream_srv_conf_t  *uscf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);
    uscf = mlcf->upstream.upstream;

    /* a hub speaks to one momd, as the channel does */

    if (uscf == NULL || uscf->servers == NULL || uscf->servers->nelts != 1) {
        return NULL;
    }

    server = uscf->servers->elts;

    if (server->naddrs != 1) {
        return NULL;
    }

    req.op = MOM__OP__OP_SUBSCRIBE;
    req.name = ctx->req.name;
    req.heartbeat_ms = NGX_HTTP_MOM_HUB_HEARTBEAT;

    size = mom__request__get_packed_size(&req);

    hub = ngx_calloc(sizeof(ngx_http_mom_hub_t) + key->len, ngx_cycle->log);
    if (hub == NULL) {
        return NULL;
    }

    hub->in.start = ngx_alloc(NGX_HTTP_MOM_HUB_BUFFER, ngx_cycle->log);
    hub->out.start = ngx_alloc(NGX_HTTP_MOM_FRAME_HEADER + size,
                               ngx_cycle->log);

    if (hub->in.start == NULL || hub->out.start == NULL) {
        goto failed;
    }

    hub->in.pos = hub->in.start;
    hub->in.last = hub->in.start;
    hub->in.end = hub->in.start + NGX_HTTP_MOM_HUB_BUFFER;

    hub->out.pos = hub->out.start;
    hub->out.last = hub->out.start;
    hub->out.last = ngx_http_mom_frame_pack(hub->out.last, &req, size);

    rc = ngx_http_mom_connect(server->addrs, &c);

    if (rc == NGX_ERROR) {
        goto failed;
    }

    c->data = hub;
    c->read->handler = ngx_http_mom_hub_read_handler;
    c->write->handler = ngx_http_mom_hub_write_handler;

    hub->connection = c;
    hub->upstream = uscf;
    hub->max_frame = mlcf->max_frame_size;
    ngx_queue_init(&hub->pending);
    ngx_queue_init(&hub->attached);

    hub->sn.str.data = (u_char *) hub + sizeof(ngx_http_mom_hub_t);
    hub->sn.str.len = key->len;
    ngx_memcpy(hub->sn.str.data, key->data, key->len);
    hub->sn.node.key = hash;

    ngx_rbtree_insert(&ngx_http_mom_hubs, &hub->sn.node);

    hub->in_tree = 1;

    if (rc == NGX_OK) {
        hub->connected = 1;
        hub->busy++;
        ngx_http_mom_hub_write_handler(c->write);
        hub->busy--;

        if (hub->failed) {
            ngx_http_mom_hub_release(hub);
            return NULL;
        }

    } else {
        ngx_add_timer(c->write, mlcf->upstream.connect_timeout);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "mom sse: shared stream of \"%s\" opened", ctx->req.name);

    return hub;

failed:

    ngx_free(hub->in.start);
    ngx_free(hub->out.start);
    ngx_free(hub);

    return NULL;
}


static void
ngx_http_mom_hub_write_handler(ngx_event_t *wev)
{
    int                  err;
    ssize_t              n;
    socklen_t            len;
    ngx_connection_t    *c;
    ngx_http_mom_hub_t  *hub;

    c = wev->data;
    hub = c->data;

    if (!hub->connected) {
        err = 0;
        len = sizeof(int);

        if (wev->timedout
            || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
               == -1
            || err)
        {
            ngx_log_error(NGX_LOG_ERR, c->log, err,
                          "mom sse: shared stream cannot connect");
            ngx_http_mom_hub_fail(hub, NULL, 0);
            return;
        }

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        hub->connected = 1;
    }

    while (hub->out.pos < hub->out.last) {
        n = c->send(c, hub->out.pos, hub->out.last - hub->out.pos);

        if (n == NGX_AGAIN) {
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_mom_hub_fail(hub, NULL, 0);
            return;
        }

        hub->out.pos += n;
    }
}


static void
ngx_http_mom_hub_read_handler(ngx_event_t *rev)
{
    size_t               size;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_connection_t    *c;
    ngx_http_mom_hub_t  *hub;

    c = rev->data;
    hub = c->data;

    if (c->close) {
        /* the worker is exiting */
        ngx_http_mom_hub_fail(hub, NULL, 0);
        return;
    }

    b = &hub->in;
    hub->busy++;

    for ( ;; ) {
        size = b->end - b->last;

        n = c->recv(c, b->last, size);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "mom sse: momd closed a shared stream");
            ngx_http_mom_hub_fail(hub, NULL, 0);
            break;
        }

        b->last += n;

        if (ngx_http_mom_hub_frames(hub) != NGX_OK) {
            ngx_http_mom_hub_fail(hub, NULL, 0);
            break;
        }

        if (hub->failed) {
            break;
        }

        /* each read's events are written before the next read */

        ngx_http_mom_hub_attach_pending(hub);
        ngx_http_mom_hub_flush(hub);

        if ((size_t) n < size) {
            break;
        }
    }

    hub->busy--;
    ngx_http_mom_hub_release(hub);
}


/*
 * The complete frames in hub->in; the partial one left is moved to the
 * start of a buffer big enough for all of it.
 */

static ngx_int_t
ngx_http_mom_hub_frames(ngx_http_mom_hub_t *hub)
{
    size_t          len, have, need;
    ngx_int_t       rc;
    ngx_buf_t      *b;
    Mom__Response  *resp;

    b = &hub->in;

    while (!hub->failed) {
        rc = ngx_http_mom_frame_length(b->pos, b->last, hub->max_frame,
                                       &len);

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "momd sent a shared stream frame of invalid "
                          "length");
            return NGX_ERROR;
        }

        if (rc == NGX_AGAIN
            || (size_t) (b->last - b->pos) < NGX_HTTP_MOM_FRAME_HEADER + len)
        {
            break;
        }

        resp = mom__response__unpack(NULL, len,
                                     b->pos + NGX_HTTP_MOM_FRAME_HEADER);

        b->pos += NGX_HTTP_MOM_FRAME_HEADER + len;

        if (resp == NULL
            || (resp->kind == MOM__KIND__KIND_REPLY) == hub->replied)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "momd sent an invalid shared stream frame");

            if (resp) {
                mom__response__free_unpacked(resp, NULL);
            }

            return NGX_ERROR;
        }

        if (resp->kind == MOM__KIND__KIND_REPLY) {
            hub->replied = 1;

            if (resp->status != NGX_HTTP_OK) {
                ngx_http_mom_hub_fail(hub, NULL, 0);
            }

        } else if (resp->kind == MOM__KIND__KIND_END) {
            ngx_http_mom_hub_fail(hub, resp->body.data, resp->body.len);

        } else {
            ngx_http_mom_hub_event(hub, resp->body.data, resp->body.len);
        }

        mom__response__free_unpacked(resp, NULL);
    }

    have = b->last - b->pos;

    if (b->pos != b->start) {
        ngx_memmove(b->start, b->pos, have);
        b->pos = b->start;
        b->last = b->start + have;
    }

    if (ngx_http_mom_frame_length(b->pos, b->last, hub->max_frame, &len)
        != NGX_OK)
    {
        return NGX_OK;
    }

    need = NGX_HTTP_MOM_FRAME_HEADER + len;

    return ngx_http_mom_buf_reserve(b, need - have);
}


/* A message event: kept in the ring, queued to every attached subscriber */

static void
ngx_http_mom_hub_event(ngx_http_mom_hub_t *hub, u_char *data, size_t len)
{
    uint64_t                   offset;
    ngx_queue_t               *q, *next;
    ngx_http_mom_hub_event_t  *ev, *newest;

    offset = ngx_http_mom_sse_offset(data, len);

    if (offset == 0) {
        return;   /* heartbeat, retry */
    }

    if (hub->count) {
        newest = &hub->ring[(hub->first + hub->count - 1)
                            % NGX_HTTP_MOM_HUB_EVENTS];

        if (offset != newest->offset + 1) {
            /* never expected: start the ring again, gapless */
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "mom sse: shared stream went from %uL to %uL",
                          newest->offset, offset);

            while (hub->count) {
                ngx_free(hub->ring[hub->first].data);
                hub->first = (hub->first + 1) % NGX_HTTP_MOM_HUB_EVENTS;
                hub->count--;
            }

            hub->bytes = 0;
        }
    }

    while (hub->count
           && (hub->count == NGX_HTTP_MOM_HUB_EVENTS
               || hub->bytes + len > NGX_HTTP_MOM_HUB_BYTES))
    {
        ev = &hub->ring[hub->first];
        hub->bytes -= ev->len;
        ngx_free(ev->data);
        hub->first = (hub->first + 1) % NGX_HTTP_MOM_HUB_EVENTS;
        hub->count--;
    }

    ev = &hub->ring[(hub->first + hub->count) % NGX_HTTP_MOM_HUB_EVENTS];

    ev->data = ngx_alloc(len, ngx_cycle->log);
    if (ev->data == NULL) {
        ngx_http_mom_hub_fail(hub, NULL, 0);
        return;
    }

    ngx_memcpy(ev->data, data, len);
    ev->len = len;
    ev->offset = offset;
    hub->count++;
    hub->bytes += len;

    for (q = ngx_queue_head(&hub->attached);
         q != ngx_queue_sentinel(&hub->attached);
         q = next)
    {
        next = ngx_queue_next(q);
        ngx_http_mom_hub_deliver(
            ngx_queue_data(q, ngx_http_mom_ctx_t, hub_link),
            offset, ev->data, len);
    }
}


/*
 * Queues one message to an attached subscriber, unless it has it already;
 * a gap ends the subscriber as too slow.
 */

static void
ngx_http_mom_hub_deliver(ngx_http_mom_ctx_t *ctx, uint64_t offset,
    u_char *data, size_t len)
{
    if (ctx->stream_ended || offset <= ctx->last_offset) {
        return;
    }

    if (offset != ctx->last_offset + 1) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "mom sse: subscriber of \"%s\" too slow at %uL",
                      ctx->req.name, ctx->last_offset);
        ngx_http_mom_hub_end(ctx, ngx_http_mom_hub_slow,
                             sizeof(ngx_http_mom_hub_slow) - 1);
        return;
    }

    if (ngx_http_mom_sse_output(ctx, data, len) != NGX_OK) {
        ngx_http_mom_hub_end(ctx, NULL, 0);
        return;
    }

    ctx->last_offset = offset;
    ctx->dirty = 1;
}


static void
ngx_http_mom_hub_attach_pending(ngx_http_mom_hub_t *hub)
{
    ngx_queue_t  *q, *next;

    for (q = ngx_queue_head(&hub->pending);
         q != ngx_queue_sentinel(&hub->pending);
         q = next)
    {
        next = ngx_queue_next(q);
        ngx_http_mom_hub_try_attach(
            ngx_queue_data(q, ngx_http_mom_ctx_t, hub_link));
    }
}


/*
 * Writes what was queued to the attached subscribers, each with one call
 * of its response's write handler (the upstream's non-buffered one, which
 * finalizes an ended stream once its last bytes are out). An ended
 * subscriber leaves the hub first. One that leaves more than momd's
 * sse_buffer unsent is ended as too slow. The hub is busy meanwhile.
 */

static void
ngx_http_mom_hub_flush(ngx_http_mom_hub_t *hub)
{
    size_t               unsent;
    ngx_queue_t         *q, *next;
    ngx_http_request_t  *r;
    ngx_http_mom_ctx_t  *ctx;

    for (q = ngx_queue_head(&hub->attached);
         q != ngx_queue_sentinel(&hub->attached);
         q = next)
    {
        /* only ctx itself can leave while it is written */
        next = ngx_queue_next(q);
        ctx = ngx_queue_data(q, ngx_http_mom_ctx_t, hub_link);

        if (!ctx->dirty) {
            continue;
        }

        ctx->dirty = 0;
        r = ctx->request;

        if (ctx->stream_ended) {
            ngx_http_mom_hub_leave(ctx);
            r->write_event_handler(r);
            continue;
        }

        hub->writing = ctx;
        r->write_event_handler(r);

        if (hub->writing != ctx || ctx->hub != hub) {
            hub->writing = NULL;
            continue;
        }

        /* as momd does: one write beyond the limit if nothing waited */

        unsent = ctx->unsent;
        ctx->unsent = ngx_http_mom_hub_queued(ctx);

        if (unsent && ctx->unsent > ngx_http_mom_hub_limit(ctx)) {
            /* what it could not take stays queued, the end event last */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "mom sse: subscriber of \"%s\" too slow at %uL "
                          "(%uz bytes unsent, %O sent)",
                          ctx->req.name, ctx->last_offset, ctx->unsent,
                          r->connection->sent);
            ngx_http_mom_hub_end(ctx, ngx_http_mom_hub_slow,
                                 sizeof(ngx_http_mom_hub_slow) - 1);
            ngx_http_mom_hub_leave(ctx);
            r->write_event_handler(r);
        }

        hub->writing = NULL;
    }
}


/*
 * The hub's END (text) or failure (no text): its attached subscribers end
 * with that text, its pending ones stay on their own streams, and the hub
 * closes (it is freed once no one refers to it).
 */

static void
ngx_http_mom_hub_fail(ngx_http_mom_hub_t *hub, u_char *end, size_t len)
{
    ngx_queue_t  *q;

    if (hub->failed) {
        return;
    }

    hub->failed = 1;
    hub->busy++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "mom sse: shared stream \"%V\" ends, %ui subscribers",
                   &hub->sn.str, hub->nsubs);

    if (hub->in_tree) {
        ngx_rbtree_delete(&ngx_http_mom_hubs, &hub->sn.node);
        hub->in_tree = 0;
    }

    if (hub->connection) {
        ngx_close_connection(hub->connection);
        hub->connection = NULL;
    }

    while (!ngx_queue_empty(&hub->pending)) {
        q = ngx_queue_head(&hub->pending);
        ngx_http_mom_hub_leave(ngx_queue_data(q, ngx_http_mom_ctx_t,
                                              hub_link));
    }

    for (q = ngx_queue_head(&hub->attached);
         q != ngx_queue_sentinel(&hub->attached);
         q = ngx_queue_next(q))
    {
        ngx_http_mom_hub_end(ngx_queue_data(q, ngx_http_mom_ctx_t, hub_link),
                             end, len);
    }

    ngx_http_mom_hub_flush(hub);

    hub->busy--;
    ngx_http_mom_hub_release(hub);
}


/* Frees the hub when no one needs it any more. */

static void
ngx_http_mom_hub_release(ngx_http_mom_hub_t *hub)
{
    ngx_uint_t  i;

    if (hub->busy || hub->nsubs) {
        return;
    }

    if (hub->in_tree) {
        ngx_rbtree_delete(&ngx_http_mom_hubs, &hub->sn.node);
    }

    if (hub->connection) {
        ngx_close_connection(hub->connection);
    }

    for (i = 0; i < hub->count; i++) {
        ngx_free(hub->ring[(hub->first + i) % NGX_HTTP_MOM_HUB_EVENTS].data);
    }

    ngx_free(hub->in.start);
    ngx_free(hub->out.start);
    ngx_free(hub);
}


/*
 * OP_MUTE on the subscriber's own stream. Its socket has nothing else to
 * send (the SUBSCRIBE request went long ago), so the few bytes go at once;
 * if they do not, the stream stays as it is and its events are dropped as
 * duplicates.
 */

static void
ngx_http_mom_hub_mute(ngx_http_mom_ctx_t *ctx)
{
    u_char                buf[16];
    size_t                size;
    Mom__Request          req = MOM__REQUEST__INIT;
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    u = ctx->request->upstream;
    c = u ? u->peer.connection : NULL;

    if (c == NULL) {
        return;
    }

    req.op = MOM__OP__OP_MUTE;
    size = mom__request__get_packed_size(&req);

    if (size + NGX_HTTP_MOM_FRAME_HEADER > sizeof(buf)) {
        return;
    }

    (void) ngx_http_mom_frame_pack(buf, &req, size);

    (void) c->send(c, buf, NGX_HTTP_MOM_FRAME_HEADER + size);
}


/* Bytes of the response queued in the worker and not yet sent. */

static size_t
ngx_http_mom_hub_queued(ngx_http_mom_ctx_t *ctx)
{
    size_t                size;
    ngx_chain_t          *cl;
    ngx_http_upstream_t  *u;

    u = ctx->request->upstream;
    size = 0;

    for (cl = u->busy_bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    for (cl = u->out_bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    return size;
}


static size_t
ngx_http_mom_hub_limit(ngx_http_mom_ctx_t *ctx)
{
    return (ctx->stream_buffer ? ctx->stream_buffer : NGX_HTTP_MOM_HUB_LIMIT)
           + NGX_HTTP_MOM_HUB_SLACK;
}
