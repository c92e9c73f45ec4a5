/*
 * Unix-socket server for the nginx module. One conn per accepted socket:
 * an incremental frame decoder, libuv's write queue, and a stream mode for
 * subscriptions. A bad or oversized frame closes that connection only.
 *
 * Two kinds of requests share a connection. An id-0 request is served
 * alone: it waits for everything before it to be answered and holds back
 * everything after it (the decoded request waits in `held`), so id-0
 * replies are in order. A multiplexed request (id != 0) is dispatched
 * without waiting for others: all the complete frames of a read go out in
 * one go, once the read is decoded (an OP_CANCEL among them drops the
 * request it names), up to MOM_SERVER_MAX_INFLIGHT per connection. Their
 * replies are encoded into the connection's output buffer, and an idle handle
 * writes every such buffer with one write per connection right before the loop
 * polls (the commit path answers publishes in a check handle, after poll).
 * A connection stops being read while its in-flight requests or its
 * unwritten output are over their bounds, and resumes as they drain.
 *
 * A connection whose peer is gone is closed at once (its queued output is
 * dropped); requests still in flight keep it referenced and their replies
 * are dropped, so its memory goes with the last of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

#define MOM_SERVER_READ_BUF 65536
/*
 * Every SSE stream is a connection of its own, and a Unix socket whose
 * accept queue is full fails connect() at once (EAGAIN: nginx answers
 * 502), so a burst of subscribers meeting a busy loop needs a deep queue.
 * Linux caps it at net.core.somaxconn (4096 since 5.4).
 */
#define MOM_SERVER_BACKLOG 65535
/* How long a graceful close may wait for a peer that does not read. */
#define MOM_SERVER_LINGER_MS 5000
/* Bounds of one connection: requests in flight, unwritten output. */
#define MOM_SERVER_MAX_INFLIGHT 4096
#define MOM_SERVER_MAX_OUTPUT (8 * 1024 * 1024)
/* Multiplexed requests decoded before they are started (see OP_CANCEL). */
#define MOM_SERVER_BATCH 256
/* An output buffer larger than this is not kept once written. */
#define MOM_SERVER_OUT_KEEP (64 * 1024)

struct mom_server_s {
    uv_loop_t *loop;
    uv_pipe_t listener;
    mom_request_cb on_request;
    void *data;
    uint32_t max_frame;
    mom_conn_t *conns; /* doubly linked, open and closing */
    uv_idle_t flusher; /* active while some connection has output */
    mom_conn_t *dirty; /* connections with output (each referenced) */
    int listening;
    int closing;
    int freeing; /* the flusher is closing: srv goes with it */
    char *path;
    char read_buf[MOM_SERVER_READ_BUF];
};

struct mom_conn_s {
    uv_pipe_t pipe;
    uv_shutdown_t shutdown_req;
    uv_timer_t linger; /* bounds a graceful close */
    bool lingering;
    mom_server_t *srv;
    mom_conn_t *prev, *next;
    mom_frame_decoder_t dec;
    unsigned refs;
    bool busy;          /* an id-0 request is being served */
    unsigned inflight;  /* multiplexed requests being served */
    Mom__Request *held; /* decoded id-0 request waiting for its turn */
    bool dispatching;   /* inside mom_conn_process: no recursion */
    bool paused;        /* reading stopped: enough buffered */
    bool closing;
    bool close_after_reply;
    bool streaming;
    mom_conn_cb on_close;
    mom_conn_cb on_drain;
    mom_conn_req_cb on_stream_request;
    void *stream_data;
    size_t writes_pending;
    /* Multiplexed replies not yet written (frames back to back). */
    uint8_t *out;
    size_t out_len, out_cap;
    bool dirty; /* in srv->dirty */
    mom_conn_t *dirty_next;
    /* mom_conn_peer_gone's last look (loop time) and its answer. */
    uint64_t peer_checked;
    bool peer_seen_gone;
};

/* A multiplexed request decoded and not started yet. */
typedef struct {
    Mom__Request *req; /* NULL: cancelled */
    uint64_t id;
} mom_pending_t;

typedef struct {
    uv_write_t req;
    mom_conn_t *conn;
    mom_frame_t *frame; /* or, for coalesced replies, */
    uint8_t *block;     /* the output buffer taken from the connection */
} mom_write_t;

static void mom_conn_process(mom_conn_t *c);
static void mom_conn_linger_closed(uv_handle_t *h);
static void mom_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void mom_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void mom_server_maybe_free(mom_server_t *srv);
static void mom_server_flush(uv_idle_t *idle);
static void mom_conn_update_reading(mom_conn_t *c);

mom_server_t *
mom_server_new(uv_loop_t *loop, const mom_conf_t *conf,
               mom_request_cb on_request, void *data)
{
    mom_server_t *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        return NULL;
    }
    srv->loop = loop;
    srv->on_request = on_request;
    srv->data = data;
    srv->max_frame = conf->max_frame_size;
    uv_idle_init(loop, &srv->flusher);
    srv->flusher.data = srv;
    return srv;
}

uint32_t
mom_server_max_frame(const mom_server_t *srv)
{
    return srv->max_frame;
}

void
mom_conn_ref(mom_conn_t *c)
{
    c->refs++;
}

void
mom_conn_unref(mom_conn_t *c)
{
    if (--c->refs > 0) {
        return;
    }
    mom_frame_decoder_free(&c->dec);
    if (c->held != NULL) {
        mom__request__free_unpacked(c->held, NULL);
    }
    free(c->out);
    free(c);
}

bool
mom_conn_closed(const mom_conn_t *c)
{
    return c->closing;
}

bool
mom_conn_peer_gone(mom_conn_t *c)
{
    uint64_t now = uv_now(c->srv->loop);
    uv_os_fd_t fd;
    char byte;

    if (c->closing) {
        return true;
    }
    /* Every request of a pipelined read asks: one look answers them. */
    if (c->peer_checked == now + 1) {
        return c->peer_seen_gone;
    }
    if (uv_fileno((const uv_handle_t *)&c->pipe, &fd) != 0) {
        return false;
    }
    /* An id-0 client sends one request at a time: nothing follows it but
     * an EOF. A multiplexed one may have sent more: then it is there. */
    c->peer_seen_gone = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    c->peer_checked = now + 1;
    return c->peer_seen_gone;
}

/* Both handles (pipe, linger timer) are closed: unlink and release. */
static void
mom_conn_released(mom_conn_t *c)
{
    mom_server_t *srv = c->srv;

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    mom_conn_unref(c); /* the handle's reference */
    mom_server_maybe_free(srv);
}

static void
mom_conn_linger_closed(uv_handle_t *h)
{
    mom_conn_released(h->data);
}

static void
mom_conn_handle_closed(uv_handle_t *h)
{
    mom_conn_t *c = h->data;

    if (c->lingering) {
        uv_close((uv_handle_t *)&c->linger, mom_conn_linger_closed);
        return;
    }
    mom_conn_released(c);
}

static void
mom_conn_close_now(mom_conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->pipe)) {
        uv_close((uv_handle_t *)&c->pipe, mom_conn_handle_closed);
    }
}

static void
mom_conn_shutdown_done(uv_shutdown_t *req, int status)
{
    mom_conn_close_now(req->data);
}

static void
mom_conn_linger_expired(uv_timer_t *t)
{
    mom_conn_close_now(t->data);
}

static void mom_conn_flush(mom_conn_t *c);

void
mom_conn_close(mom_conn_t *c, bool flush)
{
    mom_conn_cb on_close;

    if (flush && !c->closing) {
        mom_conn_flush(c); /* may fail and close */
    }
    on_close = c->on_close;
    if (c->closing) {
        if (!flush) {
            mom_conn_close_now(c);
        }
        return;
    }
    c->closing = true;
    c->on_close = NULL;
    c->on_drain = NULL;
    c->out_len = 0; /* what a graceful close could write is written */
    uv_read_stop((uv_stream_t *)&c->pipe);
    c->shutdown_req.data = c;
    if (!flush || c->writes_pending == 0 ||
        uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe,
                    mom_conn_shutdown_done) != 0) {
        mom_conn_close_now(c);
    } else {
        /* A peer that stops reading must not keep us forever. */
        uv_timer_init(c->srv->loop, &c->linger);
        c->linger.data = c;
        c->lingering = true;
        uv_timer_start(&c->linger, mom_conn_linger_expired,
                       MOM_SERVER_LINGER_MS, 0);
    }
    if (on_close != NULL) {
        on_close(c->stream_data, c);
    }
}

static void
mom_conn_write_done(uv_write_t *req, int status)
{
    mom_write_t *w = req->data;
    mom_conn_t *c = w->conn;

    mom_frame_unref(w->frame);
    free(w->block);
    free(w);
    c->writes_pending--;
    if (status < 0 && !c->closing) {
        mom_log_debug("write to connection failed: %s", uv_strerror(status));
        mom_conn_close(c, false);
    } else if (c->writes_pending == 0 && c->on_drain != NULL && !c->closing) {
        c->on_drain(c->stream_data, c);
    }
    if (c->paused) {
        mom_conn_update_reading(c); /* the output bound may be met now */
    }
    mom_conn_unref(c);
}

/*
 * Writes what it can of buf at once when nothing is queued before it and
 * nobody waits for a drain: a live fan-out writes one frame to every
 * subscriber; this spares each of them a request, its callback and the
 * epoll change that follows it. Returns 1 when all was written, 0 when
 * the rest (buf, advanced) must be queued, -1 when the connection failed
 * (it is closed).
 */
static int
mom_conn_try_write(mom_conn_t *c, uv_buf_t *buf)
{
    int n;

    if (c->writes_pending > 0 || c->on_drain != NULL) {
        return 0;
    }
    n = uv_try_write((uv_stream_t *)&c->pipe, buf, 1);
    if (n == (int)buf->len) {
        return 1;
    }
    if (n > 0) {
        buf->base += n;
        buf->len -= (size_t)n;
    } else if (n != UV_EAGAIN) {
        mom_log_debug("write to connection failed: %s", uv_strerror(n));
        mom_conn_close(c, false);
        return -1;
    }
    return 0;
}

/* Queues buf, owned by frame (referenced until written) or by block
 * (taken: freed once written). Returns -1 when the connection failed. */
static int
mom_conn_enqueue(mom_conn_t *c, uv_buf_t buf, mom_frame_t *frame,
                 uint8_t *block)
{
    mom_write_t *w = malloc(sizeof(*w));

    if (w == NULL) {
        free(block);
        mom_conn_close(c, false);
        return -1;
    }
    w->req.data = w;
    w->conn = c;
    w->frame = frame != NULL ? mom_frame_ref(frame) : NULL;
    w->block = block;
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1,
                 mom_conn_write_done) != 0) {
        mom_frame_unref(w->frame);
        free(block);
        free(w);
        mom_conn_close(c, false);
        return -1;
    }
    c->writes_pending++;
    mom_conn_ref(c);
    return 0;
}

/*
 * Writes the queued multiplexed replies: one write for all of them. A
 * buffer written at once is kept for the next replies; one that must wait
 * goes to libuv's queue and the connection starts a new one.
 */
static void
mom_conn_flush(mom_conn_t *c)
{
    uv_buf_t buf;
    uint8_t *block;
    int rc;

    if (c->out_len == 0 || c->closing) {
        return;
    }
    buf = uv_buf_init((char *)c->out, (unsigned)c->out_len);
    rc = mom_conn_try_write(c, &buf);
    if (rc < 0) {
        return;
    }
    if (rc == 1) {
        c->out_len = 0;
        if (c->out_cap > MOM_SERVER_OUT_KEEP) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    } else {
        block = c->out;
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        if (mom_conn_enqueue(c, buf, NULL, block) != 0) {
            return;
        }
    }
    mom_conn_update_reading(c); /* the output bound */
}
/* Before the loop polls: one write per connection with replies queued. */
static void
mom_server_flush(uv_idle_t *idle)
{
    mom_server_t *srv = idle->data;
    mom_conn_t *c;

    uv_idle_stop(idle);
    while ((c = srv->dirty) != NULL) {
        srv->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = false;
        mom_conn_flush(c);
        mom_conn_unref(c); /* the dirty list's reference */
    }
}

/* Appends the frame of resp to the connection's output, for the flusher. */
static int
mom_conn_queue(mom_conn_t *c, const Mom__Response *resp)
{
    size_t n = mom__response__get_packed_size(resp);
    size_t need = c->out_len + MOM_FRAME_HEADER + n;
    uint8_t *p;

    if (n == 0 || n > c->srv->max_frame) {
        return -1;
    }
    if (need > c->out_cap) {
        size_t cap = c->out_cap > 0 ? c->out_cap : 4096;

        while (cap < need) {
            cap *= 2;
        }
        p = realloc(c->out, cap);
        if (p == NULL) {
            return -1;
        }
        c->out = p;
        c->out_cap = cap;
    }
    mom_frame_pack(&resp->base, n, c->out + c->out_len);
    c->out_len = need;
    if (!c->dirty) {
        c->dirty = true;
        mom_conn_ref(c);
        c->dirty_next = c->srv->dirty;
        c->srv->dirty = c;
        uv_idle_start(&c->srv->flusher, mom_server_flush);
    }
    return 0;
}

int
mom_conn_write(mom_conn_t *c, mom_frame_t *frame)
{
    uv_buf_t buf;
    int rc;

    if (c->closing) {
        return -1;
    }
    mom_conn_flush(c); /* replies queued before it go first */
    if (c->closing) {
        return -1;
    }
    buf = uv_buf_init((char *)frame->data, (unsigned)frame->len);
    rc = mom_conn_try_write(c, &buf);
    return rc == 0 ? mom_conn_enqueue(c, buf, frame, NULL) : rc > 0 ? 0 : -1;
}

size_t
mom_conn_queued(const mom_conn_t *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) +
           c->out_len;
}

void
mom_conn_on_drain(mom_conn_t *c, mom_conn_cb on_drain)
{
    c->on_drain = on_drain;
}

void
mom_conn_stream_requests(mom_conn_t *c, mom_conn_req_cb on_request)
{
    c->on_stream_request = on_request;
}

void
mom_conn_stream(mom_conn_t *c, mom_conn_cb on_close, void *data)
{
    c->streaming = true;
    c->on_close = on_close;
    c->stream_data = data;
    /* Reading continues: it is how a closed peer is noticed. */
    if (c->paused && !c->closing) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->pipe, mom_conn_alloc, mom_conn_read);
    }
}

static void mom_conn_answer(mom_conn_t *c, uint64_t id, Mom__Response *resp);

void
mom_conn_reply(mom_conn_t *c, uint64_t id, unsigned status, const void *body,
               size_t len, const char *user)
{
    Mom__Response resp = MOM__RESPONSE__INIT;

    resp.kind = MOM__KIND__KIND_REPLY;
    resp.status = status;
    resp.body.data = (uint8_t *)body;
    resp.body.len = len;
    resp.user = (char *)(user ? user : "");
    resp.id = id;
    mom_conn_answer(c, id, &resp);
}

void
mom_conn_reply_stream(mom_conn_t *c, uint64_t stream_buffer)
{
    Mom__Response resp = MOM__RESPONSE__INIT;

    resp.kind = MOM__KIND__KIND_REPLY;
    resp.status = 200;
    resp.stream_buffer = stream_buffer;
    mom_conn_answer(c, 0, &resp);
}

static void
mom_conn_answer(mom_conn_t *c, uint64_t id, Mom__Response *resp)
{
    mom_frame_t *frame;
    int rc = 0;

    if (id == 0 ? !c->busy : c->inflight == 0) {
        mom_log_error("reply without a request (ignored)");
        return;
    }
    if (id == 0) {
        c->busy = false;
    } else {
        c->inflight--;
    }
    if (!c->closing && (id == 0 || !c->streaming)) {
        if (id != 0) {
            rc = mom_conn_queue(c, resp);
        } else if ((frame = mom_frame_encode(&resp->base, c->srv->max_frame)) !=
                   NULL) {
            mom_conn_write(c, frame);
            mom_frame_unref(frame);
        } else {
            rc = -1;
        }
        if (rc != 0) {
            mom_log_error("reply of %zu bytes could not be framed",
                          resp->body.len);
            mom_conn_close(c, false);
        }
    }
    if (c->close_after_reply) {
        if (!c->busy && c->inflight == 0) {
            mom_conn_close(c, true);
        }
    } else if (!c->streaming) {
        mom_conn_process(c);
    }
    mom_conn_unref(c); /* the request's reference */
}

static void
mom_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mom_conn_t *c = h->data;

    /* One buffer per server: a read is consumed before the next alloc. */
    *buf = uv_buf_init(c->srv->read_buf, sizeof(c->srv->read_buf));
}

/* Whether no further request may be dispatched now. */
static bool
mom_conn_blocked(const mom_conn_t *c)
{
    return c->busy || c->held != NULL || c->close_after_reply ||
           c->inflight >= MOM_SERVER_MAX_INFLIGHT;
}

/*
 * Reading stops while a blocked connection has a frame's worth buffered,
 * or while its output is over its bound (a client that sends but does not
 * read); a stream is always read (that is how its end is noticed).
 */
static void
mom_conn_update_reading(mom_conn_t *c)
{
    bool full;

    if (c->closing) {
        return;
    }
    full =
        !c->streaming && ((mom_conn_blocked(c) &&
                           mom_frame_decoder_buffered(&c->dec) >
                               (size_t)c->srv->max_frame + MOM_FRAME_HEADER) ||
                          mom_conn_queued(c) > MOM_SERVER_MAX_OUTPUT);
    if (full && !c->paused) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->paused = true;
    } else if (!full && c->paused) {
        c->paused = false;
        uv_read_start((uv_stream_t *)&c->pipe, mom_conn_alloc, mom_conn_read);
    }
}

/* The next request whose turn it is, or NULL. */
static Mom__Request *
mom_conn_next(mom_conn_t *c)
{
    const uint8_t *payload;
    Mom__Request *req;
    size_t len;
    int rc;

    if (c->held != NULL) {
        if (c->inflight > 0 || c->close_after_reply) {
            return NULL; /* an id-0 request waits for all before it */
        }
        req = c->held;
        c->held = NULL;
        return req;
    }
    if (mom_conn_blocked(c)) {
        return NULL;
    }
    rc = mom_frame_decoder_next(&c->dec, &payload, &len);
    if (rc == 0) {
        return NULL;
    }
    if (rc < 0) {
        mom_log_warn("bad frame length from nginx: closing connection");
        mom_conn_close(c, false);
        return NULL;
    }
    req = mom__request__unpack(NULL, len, payload);
    if (req == NULL) {
        mom_log_warn("undecodable request frame: closing connection");
        mom_conn_close(c, false);
        return NULL;
    }
    if (req->id == 0 && c->inflight > 0) {
        c->held = req;
        return NULL;
    }
    return req;
}

static void
mom_conn_start(mom_conn_t *c, uint64_t id, Mom__Request *req)
{
    mom_conn_ref(c); /* the request's reference */
    c->srv->on_request(c->srv->data, c, id, req);
}

/*
 * Starts the multiplexed requests decoded so far (counted in flight since
 * they were decoded); a connection closed meanwhile has no one to answer:
 * they are dropped unstarted.
 */
static void
mom_conn_start_batch(mom_conn_t *c, mom_pending_t *batch, size_t *n)
{
    size_t i;

    for (i = 0; i < *n; i++) {
        if (batch[i].req == NULL) {
            continue; /* cancelled */
        }
        if (c->closing) {
            mom__request__free_unpacked(batch[i].req, NULL);
            c->inflight--;
            continue;
        }
        mom_conn_start(c, batch[i].id, batch[i].req);
    }
    *n = 0;
}

/* OP_CANCEL: the request, if it is still waiting in batch, is dropped;
 * if it has started, the handler hears of the cancel (it owns `cancel`). */
static void
mom_conn_cancel(mom_conn_t *c, mom_pending_t *batch, size_t n, uint64_t id,
                Mom__Request *cancel)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (batch[i].req != NULL && batch[i].id == id) {
            mom_log_info("dropping request %llu: its client is gone",
                         (unsigned long long)id);
            mom__request__free_unpacked(batch[i].req, NULL);
            batch[i].req = NULL;
            c->inflight--;
            mom__request__free_unpacked(cancel, NULL);
            return;
        }
    }
    c->srv->on_request(c->srv->data, c, id, cancel);
}

/*
 * Dispatches what may be dispatched. The multiplexed requests of one read
 * are started together, after the whole read is decoded: a request whose
 * cancel arrived with it (momd was stalled longer than its client waited)
 * is never started.
 */
static void
mom_conn_process(mom_conn_t *c)
{
    mom_pending_t batch[MOM_SERVER_BATCH];
    Mom__Request *req;
    uint64_t id;
    size_t n = 0;

    if (c->dispatching) {
        return;
    }
    c->dispatching = true;
    mom_conn_ref(c);
    while (!c->closing && !c->streaming && (req = mom_conn_next(c)) != NULL) {
        id = req->id;
        req->id = 0; /* never forwarded: the answer comes back here */
        if (req->op == MOM__OP__OP_CANCEL) {
            mom_conn_cancel(c, batch, n, id, req);
        } else if (id == 0) {
            /* mom_conn_next gives it only when nothing is in flight */
            c->busy = true;
            mom_conn_start(c, 0, req);
        } else {
            c->inflight++;
            batch[n].req = req;
            batch[n].id = id;
            if (++n == MOM_SERVER_BATCH) {
                mom_conn_start_batch(c, batch, &n);
            }
        }
    }
    mom_conn_start_batch(c, batch, &n);
    c->dispatching = false;
    mom_conn_update_reading(c);
    mom_conn_unref(c);
}

/* Requests on a stream (OP_MUTE) go to its owner, if it reads any. */
static void
mom_conn_stream_read(mom_conn_t *c, const char *data, size_t n)
{
    const uint8_t *payload;
    Mom__Request *req;
    size_t len;
    int rc;

    if (c->on_stream_request == NULL) {
        return;
    }
    if (mom_frame_decoder_feed(&c->dec, data, n) != 0) {
        mom_conn_close(c, false);
        return;
    }
    mom_conn_ref(c);
    while (!c->closing &&
           (rc = mom_frame_decoder_next(&c->dec, &payload, &len)) != 0) {
        req = rc > 0 ? mom__request__unpack(NULL, len, payload) : NULL;
        if (req == NULL) {
            mom_log_warn("bad frame on a stream from nginx: closing it");
            mom_conn_close(c, false);
            break;
        }
        c->on_stream_request(c->stream_data, c, req);
    }
    mom_conn_unref(c);
}

static void
mom_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mom_conn_t *c = s->data;

    if (nread < 0) {
        if (nread != UV_EOF) {
            mom_log_debug("read: %s", uv_strerror((int)nread));
        }
        /* The peer is gone: nothing more can be delivered. */
        mom_conn_close(c, false);
        return;
    }
    if (nread == 0 || c->closing) {
        return;
    }
    if (c->streaming) {
        mom_conn_stream_read(c, buf->base, (size_t)nread);
        return;
    }
    if (mom_frame_decoder_feed(&c->dec, buf->base, (size_t)nread) != 0) {
        mom_conn_close(c, false);
        return;
    }
    mom_conn_process(c);
}

static void
mom_server_accept(uv_stream_t *listener, int status)
{
    mom_server_t *srv = listener->data;
    mom_conn_t *c;

    if (status < 0) {
        mom_log_error("accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        mom_log_error("accept: out of memory");
        return;
    }
    c->srv = srv;
    c->refs = 1; /* the handle's */
    mom_frame_decoder_init(&c->dec, srv->max_frame);
    uv_pipe_init(srv->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, mom_conn_alloc, mom_conn_read) !=
            0) {
        mom_conn_close(c, false);
    }
}

/* A socket file nobody accepts on is stale: remove it. */
static int
mom_server_remove_stale(const char *path)
{
    struct sockaddr_un addr;
    struct stat sb;
    int fd, live;

    if (lstat(path, &sb) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (!S_ISSOCK(sb.st_mode)) {
        mom_log_error("%s exists and is not a socket", path);
        return -1;
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    live = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    if (live) {
        mom_log_error("%s is in use by another process", path);
        return -1;
    }
    return unlink(path);
}

int
mom_server_listen(mom_server_t *srv, const char *path)
{
    int rc;

    if (mom_server_remove_stale(path) != 0) {
        return -1;
    }
    srv->path = strdup(path);
    if (srv->path == NULL) {
        return -1;
    }
    uv_pipe_init(srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    srv->listening = 1;
    /*
     * nginx workers run as another user: the socket must be connectable by
     * them from the moment it exists (a chmod after bind leaves a window in
     * which a worker gets EACCES), so bind under a permissive umask.
     */
    mode_t old_mask = umask(0111);
    rc = uv_pipe_bind(&srv->listener, path);
    umask(old_mask);
    if (rc != 0 ||
        (rc = uv_listen((uv_stream_t *)&srv->listener, MOM_SERVER_BACKLOG,
                        mom_server_accept)) != 0) {
        mom_log_error("listen on %s: %s", path, uv_strerror(rc));
        return -1;
    }
    if (chmod(path, 0666) != 0) {
        mom_log_error("chmod %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void
mom_server_flusher_closed(uv_handle_t *h)
{
    mom_server_t *srv = h->data;
    mom_conn_t *c;

    /* Connections closed with replies queued: nothing left to write. */
    while ((c = srv->dirty) != NULL) {
        srv->dirty = c->dirty_next;
        mom_conn_unref(c);
    }
    free(srv->path);
    free(srv);
}

static void
mom_server_maybe_free(mom_server_t *srv)
{
    if (srv->closing && !srv->listening && srv->conns == NULL &&
        !srv->freeing) {
        srv->freeing = 1;
        uv_close((uv_handle_t *)&srv->flusher, mom_server_flusher_closed);
    }
}

static void
mom_server_listener_closed(uv_handle_t *h)
{
    mom_server_t *srv = h->data;

    srv->listening = 0;
    mom_server_maybe_free(srv);
}

void
mom_server_close(mom_server_t *srv)
{
    mom_conn_t *c, *next;

    srv->closing = 1;
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, mom_server_listener_closed);
        if (srv->path != NULL) {
            unlink(srv->path);
        }
    }
    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->streaming) {
            continue;
        }
        if (c->busy || c->inflight > 0) {
            c->close_after_reply = true;
        } else {
            mom_conn_close(c, true);
        }
    }
    mom_server_maybe_free(srv);
}
