/*
 * Forwarded requests, both ways (forward.h).
 *
 * Client side: mom_cluster_forward packs the request into the queue of its
 * destination; a uv_prepare handle (before the loop polls) and a uv_check
 * handle (after the I/O callbacks) send each non-empty queue as one batch,
 * so that the requests read from nginx in one loop iteration cost one
 * message per leader instead of one call each. A batch goes on the
 * destination's ForwardStream (opened when needed, again after it breaks)
 * with an id; the answer names it. A stream saves the call set-up of a
 * ForwardBatch call on both sides (HTTP/2 stream, metadata, status, and
 * four of the receiver's completion-queue operations). At most
 * MOM_FORWARD_STREAM_INFLIGHT batches wait on a stream; more go as
 * ForwardBatch calls. A batch's deadline is the earliest of its requests';
 * a failed call, a broken stream, or a batch past its deadline fails each
 * of its requests with that status (route.c retries them; mutations keep
 * their idempotency keys). A batch past its deadline on a stream means a
 * stopped receiver: the stream is cancelled with every batch it holds (as
 * their calls would have reached their deadlines), and the receiver finds
 * no stale backlog when it runs again.
 *
 * Server side: every request of a batch becomes its own operation
 * (mom_ops_forwarded) with a handle (mom_served_t) into the batch; the
 * batch is answered when the last of them is, with the answers in request
 * order. The requests of a batch arrived together and are submitted
 * together, so they usually commit in the same flush: waiting for the last
 * costs little.
 */
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "log.h"
#include "peer.pb-c.h"

/* A batch is sent at once when it reaches either bound. */
#define MOM_FORWARD_BATCH_MAX 256
#define MOM_FORWARD_BATCH_BYTES (1024 * 1024)
/* Batches waiting for their answers on one stream; more go as calls. */
#define MOM_FORWARD_STREAM_INFLIGHT 64
/* How often the deadlines of batches on streams are checked. */
#define MOM_FORWARD_EXPIRY_MS 50

typedef struct {
    mom_cluster_forward_cb cb;
    void *ctx;
    uint8_t *req; /* packed mom.Request; may hold a password: wiped */
    size_t len;
} mom_fwd_out_t;

typedef struct mom_fwd_call_s mom_fwd_call_t;

typedef struct {
    mom_forward_t *fw;
    mom_peer_channel *ch;
    mom_fwd_out_t *q;
    size_t n, cap, bytes;
    uint64_t deadline;           /* the earliest of the queued requests' */
    mom_peer_stream *stream;     /* the ForwardStream, NULL until needed */
    mom_fwd_call_t *head, *tail; /* batches waiting on it, oldest first */
    size_t n_pending;
    uint64_t next_id;
} mom_fwd_queue_t;

/* A batch in flight (a ForwardBatch call or on a stream) or that could
 * not be sent: who waits for which answer. */
struct mom_fwd_call_s {
    mom_fwd_call_t *next; /* on its stream, or in the list of failed ones */
    grpc_status_code status;
    uint64_t id, deadline; /* on a stream */
    size_t n;
    mom_fwd_out_t *out;
};

typedef struct mom_fwd_srv_s mom_fwd_srv_t;

/* One forwarded request being served (the handle ops.c holds). */
struct mom_served_s {
    mom_fwd_srv_t *b;
    mom_op_t *op;  /* attached operation until answered or detached */
    uint8_t *resp; /* packed mom.Response once answered */
    size_t len;
    bool answered;
};

/* One served Forward or ForwardBatch call, or batch of a ForwardStream. */
struct mom_fwd_srv_s {
    mom_fwd_srv_t *prev, *next;
    mom_forward_t *fw;
    mom_peer_srv *call; /* NULL: its stream ended, the answer is dropped */
    mom_forward_kind kind;
    uint64_t id; /* ForwardStream: the batch's id */
    bool failed; /* an answer could not be packed */
    size_t n, left;
    mom_served_t items[];
};

struct mom_forward_s {
    uv_loop_t *loop;
    mom_ops_t *ops;
    mom_fwd_queue_t **queues; /* one per destination channel */
    size_t n_queues;
    mom_fwd_srv_t *served;
    mom_fwd_call_t *failed; /* not sent: reported from prepare/check */
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t expiry; /* runs while batches wait on streams */
    int open_handles;
    bool stopped;
};

/* --- client side --- */

static void
mom_fwd_out_free(mom_fwd_out_t *o)
{
    if (o->req != NULL) {
        memset(o->req, 0, o->len);
        free(o->req);
        o->req = NULL;
    }
}

static void
mom_fwd_call_free(mom_fwd_call_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        mom_fwd_out_free(&c->out[i]);
    }
    free(c->out);
    free(c);
}

/* Hands each request of c its answer in replies (status OK) or the
 * failure, then frees c. */
static void
mom_fwd_answer(mom_fwd_call_t *c, grpc_status_code status,
               const Mom__ForwardResponses *replies)
{
    Mom__Response *resp;
    grpc_status_code st;

    for (size_t i = 0; i < c->n; i++) {
        resp = NULL;
        st = status;
        if (st == GRPC_STATUS_OK) {
            if (replies != NULL && i < replies->n_responses) {
                resp = mom__response__unpack(NULL, replies->responses[i].len,
                                             replies->responses[i].data);
            }
            if (resp == NULL) {
                st = GRPC_STATUS_INTERNAL;
            }
        }
        c->out[i].cb(c->out[i].ctx, st, resp);
        if (resp != NULL) {
            mom__response__free_unpacked(resp, NULL);
        }
    }
    mom_fwd_call_free(c);
}

static void
mom_fwd_done(void *ctx, grpc_status_code status, const char *detail,
             const uint8_t *buf, size_t len)
{
    mom_fwd_call_t *c = ctx;
    Mom__ForwardResponses *replies = NULL;

    if (status == GRPC_STATUS_OK) {
        replies = mom__forward_responses__unpack(NULL, len, buf);
    } else {
        mom_log_debug("forward batch of %zu: gRPC status %d %s", c->n,
                      (int)status, detail);
    }
    mom_fwd_answer(c, status, replies);
    if (replies != NULL) {
        mom__forward_responses__free_unpacked(replies, NULL);
    }
}

/* Calls that could not be sent fail here, outside of any caller of
 * mom_cluster_forward (its callback is always made later). */
static void
mom_fwd_report_failed(mom_forward_t *fw)
{
    mom_fwd_call_t *c;

    while ((c = fw->failed) != NULL) {
        fw->failed = c->next;
        mom_fwd_answer(c, c->status, NULL);
    }
}

/* Takes q's requests into a call of their own (NULL: out of memory, they
 * stay queued). */
static mom_fwd_call_t *
mom_fwd_queue_take(mom_fwd_queue_t *q)
{
    mom_fwd_call_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->status = GRPC_STATUS_OK;
    c->deadline = q->deadline;
    c->n = q->n;
    c->out = q->q;
    q->q = NULL;
    q->n = q->cap = q->bytes = 0;
    return c;
}

static void
mom_fwd_call_failed(mom_forward_t *fw, mom_fwd_call_t *c,
                    grpc_status_code status)
{
    c->status = status;
    c->next = fw->failed;
    fw->failed = c;
}

/* Takes the batches waiting on q's stream (the stream is gone): the
 * caller fails them. */
static mom_fwd_call_t *
mom_fwd_stream_take(mom_fwd_queue_t *q)
{
    mom_fwd_call_t *c = q->head;

    q->stream = NULL;
    q->head = q->tail = NULL;
    q->n_pending = 0;
    return c;
}

/* The stream broke (or the receiver ended it): its batches fail. */
static void
mom_fwd_stream_ended(void *ctx, grpc_status_code status, const char *detail)
{
    mom_fwd_queue_t *q = ctx;
    mom_fwd_call_t *c = mom_fwd_stream_take(q), *next;

    mom_log_debug("forward stream: gRPC status %d %s", (int)status, detail);
    if (status == GRPC_STATUS_OK) {
        status = GRPC_STATUS_UNAVAILABLE;
    }
    for (; c != NULL; c = next) {
        next = c->next;
        mom_fwd_answer(c, status, NULL);
    }
}

/* The answer to one batch on the stream. */
static void
mom_fwd_stream_reply(void *ctx, const uint8_t *buf, size_t len)
{
    mom_fwd_queue_t *q = ctx;
    Mom__ForwardResponses *replies;
    mom_fwd_call_t *c, *prev = NULL;

    replies = mom__forward_responses__unpack(NULL, len, buf);
    if (replies == NULL) {
        mom_peer_stream_cancel(q->stream); /* no callback after this */
        mom_fwd_stream_ended(q, GRPC_STATUS_INTERNAL,
                             "undecodable ForwardResponses");
        return;
    }
    for (c = q->head; c != NULL && c->id != replies->id; c = c->next) {
        prev = c;
    }
    if (c != NULL) {
        if (prev != NULL) {
            prev->next = c->next;
        } else {
            q->head = c->next;
        }
        if (q->tail == c) {
            q->tail = prev;
        }
        q->n_pending--;
        mom_fwd_answer(c, GRPC_STATUS_OK, replies);
    }
    mom__forward_responses__free_unpacked(replies, NULL);
}

static const mom_peer_stream_cbs mom_fwd_stream_cbs = {
    .on_message = mom_fwd_stream_reply,
    .on_end = mom_fwd_stream_ended,
};

/* A stream holding a batch past its deadline is cancelled with all of
 * them; the others fail as if their calls had broken. */
static void
mom_fwd_on_expiry(uv_timer_t *t)
{
    mom_forward_t *fw = t->data;
    uint64_t now = uv_now(fw->loop);
    mom_fwd_call_t *c, *next;
    mom_fwd_queue_t *q;
    bool waiting = false;

    for (size_t i = 0; i < fw->n_queues; i++) {
        q = fw->queues[i];
        for (c = q->head; c != NULL && c->deadline > now; c = c->next) {
        }
        if (c == NULL) {
            continue;
        }
        mom_log_debug("forward stream: a batch is past its deadline");
        mom_peer_stream_cancel(q->stream); /* no callback after this */
        for (c = mom_fwd_stream_take(q); c != NULL; c = next) {
            next = c->next;
            mom_fwd_answer(c,
                           c->deadline <= now ? GRPC_STATUS_DEADLINE_EXCEEDED
                                              : GRPC_STATUS_UNAVAILABLE,
                           NULL);
        }
    }
    /* the callbacks may have sent new batches */
    for (size_t i = 0; i < fw->n_queues; i++) {
        waiting = waiting || fw->queues[i]->head != NULL;
    }
    if (!waiting) {
        uv_timer_stop(t);
    }
}

/* Sends the packed batch c on q's stream; 0 when it went. */
static int
mom_fwd_stream_send(mom_fwd_queue_t *q, mom_fwd_call_t *c,
                    Mom__ForwardRequests *batch)
{
    mom_forward_t *fw = q->fw;
    uint8_t *buf;
    size_t len;
    int rc;

    if (q->n_pending >= MOM_FORWARD_STREAM_INFLIGHT) {
        return -1;
    }
    if (q->stream == NULL) {
        q->stream = mom_peer_bidi_call(q->ch, MOM_PEER_PATH_FORWARD_STREAM, 0,
                                       &mom_fwd_stream_cbs, q);
        if (q->stream == NULL) {
            return -1;
        }
    }
    batch->id = ++q->next_id;
    len = mom__forward_requests__get_packed_size(batch);
    if ((buf = malloc(len > 0 ? len : 1)) == NULL) {
        return -1;
    }
    mom__forward_requests__pack(batch, buf);
    rc = mom_peer_stream_write(q->stream, buf, len);
    memset(buf, 0, len); /* may hold a password */
    free(buf);
    if (rc != 0) {
        return -1;
    }
    c->id = batch->id;
    c->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = c;
    } else {
        q->head = c;
    }
    q->tail = c;
    q->n_pending++;
    if (!uv_is_active((uv_handle_t *)&fw->expiry)) {
        uv_timer_start(&fw->expiry, mom_fwd_on_expiry, MOM_FORWARD_EXPIRY_MS,
                       MOM_FORWARD_EXPIRY_MS);
    }
    return 0;
}

/* Sends the packed batch c as a ForwardBatch call; 0 when it went. */
static int
mom_fwd_call_send(mom_fwd_queue_t *q, mom_fwd_call_t *c,
                  Mom__ForwardRequests *batch, int deadline)
{
    uint8_t *buf;
    size_t len;
    int rc;

    batch->id = 0;
    len = mom__forward_requests__get_packed_size(batch);
    if ((buf = malloc(len > 0 ? len : 1)) == NULL) {
        return -1;
    }
    mom__forward_requests__pack(batch, buf);
    rc = mom_peer_call(q->ch, MOM_PEER_PATH_FORWARD_BATCH, buf, len, deadline,
                       mom_fwd_done, c);
    memset(buf, 0, len); /* may hold a password */
    free(buf);
    return rc;
}

/* Sends what q holds as one batch; its callers are answered later. */
static void
mom_fwd_queue_send(mom_fwd_queue_t *q)
{
    Mom__ForwardRequests batch = MOM__FORWARD_REQUESTS__INIT;
    uint64_t now = uv_now(q->fw->loop);
    ProtobufCBinaryData *reqs;
    mom_fwd_call_t *c;
    int deadline, rc = -1;

    if (q->n == 0) {
        return;
    }
    deadline = q->deadline > now ? (int)(q->deadline - now) : 1;
    if ((c = mom_fwd_queue_take(q)) == NULL) {
        return;
    }
    reqs = malloc(c->n * sizeof(*reqs));
    if (reqs != NULL) {
        for (size_t i = 0; i < c->n; i++) {
            reqs[i].data = c->out[i].req;
            reqs[i].len = c->out[i].len;
        }
        batch.n_requests = c->n;
        batch.requests = reqs;
        rc = mom_fwd_stream_send(q, c, &batch);
        if (rc != 0) {
            rc = mom_fwd_call_send(q, c, &batch, deadline);
        }
    }
    free(reqs);
    for (size_t i = 0; i < c->n; i++) {
        mom_fwd_out_free(&c->out[i]); /* only the callbacks are needed */
    }
    if (rc != 0) {
        /* Not sent (stopping, too many calls, memory): route.c retries. */
        mom_fwd_call_failed(q->fw, c, GRPC_STATUS_UNAVAILABLE);
    }
}

static void
mom_fwd_flush(mom_forward_t *fw)
{
    for (size_t i = 0; i < fw->n_queues; i++) {
        mom_fwd_queue_send(fw->queues[i]);
    }
    mom_fwd_report_failed(fw);
}

static void
mom_fwd_on_prepare(uv_prepare_t *h)
{
    mom_fwd_flush(h->data);
}

static void
mom_fwd_on_check(uv_check_t *h)
{
    mom_fwd_flush(h->data);
}

static mom_fwd_queue_t *
mom_fwd_queue(mom_forward_t *fw, mom_peer_channel *ch)
{
    mom_fwd_queue_t **qs, *q;

    for (size_t i = 0; i < fw->n_queues; i++) {
        if (fw->queues[i]->ch == ch) {
            return fw->queues[i];
        }
    }
    /* each queue stays where it is: its stream's callbacks point to it */
    qs = realloc(fw->queues, (fw->n_queues + 1) * sizeof(*qs));
    if (qs == NULL) {
        return NULL;
    }
    fw->queues = qs;
    if ((q = calloc(1, sizeof(*q))) == NULL) {
        return NULL;
    }
    q->fw = fw;
    q->ch = ch;
    fw->queues[fw->n_queues++] = q;
    return q;
}

int
mom_forward_send(mom_forward_t *fw, mom_peer_channel *ch,
                 const Mom__Request *req, int deadline_ms,
                 mom_cluster_forward_cb cb, void *ctx)
{
    mom_fwd_queue_t *q;
    mom_fwd_out_t *o;
    uint64_t deadline;
    size_t len;

    if (fw->stopped || (q = mom_fwd_queue(fw, ch)) == NULL) {
        return -1;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;

        o = realloc(q->q, cap * sizeof(*o));
        if (o == NULL) {
            return -1;
        }
        q->q = o;
        q->cap = cap;
    }
    len = mom__request__get_packed_size(req);
    o = &q->q[q->n];
    o->req = malloc(len > 0 ? len : 1);
    if (o->req == NULL) {
        return -1;
    }
    mom__request__pack(req, o->req);
    o->len = len;
    o->cb = cb;
    o->ctx = ctx;
    deadline = uv_now(fw->loop) + (uint64_t)(deadline_ms > 0 ? deadline_ms : 1);
    if (q->n == 0 || deadline < q->deadline) {
        q->deadline = deadline;
    }
    q->n++;
    q->bytes += len;
    if (q->n >= MOM_FORWARD_BATCH_MAX || q->bytes >= MOM_FORWARD_BATCH_BYTES) {
        mom_fwd_queue_send(q);
    }
    return 0;
}

/* --- server side --- */

static void
mom_fwd_srv_free(mom_fwd_srv_t *b)
{
    mom_forward_t *fw = b->fw;

    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        fw->served = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].resp);
    }
    free(b);
}

/* Ends a ForwardStream we cannot answer on: its batches still being
 * served finish, their answers are dropped. */
static void
mom_fwd_srv_abort(mom_forward_t *fw, mom_peer_srv *call,
                  grpc_status_code status, const char *detail)
{
    for (mom_fwd_srv_t *b = fw->served; b != NULL; b = b->next) {
        if (b->call == call) {
            b->call = NULL;
        }
    }
    mom_peer_stream_end(call, status, detail);
}

/* The batch's answers packed as one ForwardResponses (NULL: out of
 * memory). */
static uint8_t *
mom_fwd_srv_pack(mom_fwd_srv_t *b, size_t *len)
{
    Mom__ForwardResponses replies = MOM__FORWARD_RESPONSES__INIT;
    ProtobufCBinaryData *resps = malloc(b->n * sizeof(*resps) + 1);
    uint8_t *buf = NULL;

    if (resps != NULL) {
        for (size_t i = 0; i < b->n; i++) {
            resps[i].data = b->items[i].resp;
            resps[i].len = b->items[i].len;
        }
        replies.n_responses = b->n;
        replies.responses = resps;
        replies.id = b->id;
        *len = mom__forward_responses__get_packed_size(&replies);
        if ((buf = malloc(*len > 0 ? *len : 1)) != NULL) {
            mom__forward_responses__pack(&replies, buf);
        }
    }
    free(resps);
    return buf;
}

static void
mom_fwd_srv_reply(mom_fwd_srv_t *b)
{
    mom_forward_t *fw = b->fw;
    mom_peer_srv *call = b->call;
    mom_forward_kind kind = b->kind;
    bool failed = b->failed;
    uint8_t *buf = NULL;
    size_t len = 0;

    if (call != NULL && !failed && kind == MOM_FORWARD_ONE) {
        mom_peer_reply(call, GRPC_STATUS_OK, b->items[0].resp, b->items[0].len,
                       NULL);
    } else if (call != NULL && !failed) {
        buf = mom_fwd_srv_pack(b, &len);
        if (buf == NULL) {
            failed = true;
        } else if (kind == MOM_FORWARD_BATCH) {
            mom_peer_reply(call, GRPC_STATUS_OK, buf, len, NULL);
        } else if (mom_peer_stream_send(call, buf, len) != 0) {
            failed = true; /* the sender does not read its answers */
        }
        free(buf);
    }
    mom_fwd_srv_free(b);
    if (call == NULL || !failed) {
        return; /* answered, or its stream is over */
    }
    if (kind == MOM_FORWARD_STREAM) {
        mom_fwd_srv_abort(fw, call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                          "cannot answer");
    } else {
        mom_peer_reply(call, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0,
                       "out of memory");
    }
}

/* One answer fewer to wait for; the last one answers the call. */
static void
mom_fwd_srv_release(mom_fwd_srv_t *b)
{
    if (--b->left == 0) {
        mom_fwd_srv_reply(b);
    }
}

void
mom_cluster_attach(mom_served_t *s, mom_op_t *op)
{
    s->op = op;
}

void
mom_cluster_answer(mom_served_t *s, const Mom__Response *resp)
{
    size_t len = mom__response__get_packed_size(resp);

    if (s->answered) {
        return;
    }
    s->answered = true;
    s->op = NULL;
    s->resp = malloc(len > 0 ? len : 1);
    if (s->resp == NULL) {
        s->b->failed = true;
    } else {
        s->len = mom__response__pack(resp, s->resp);
    }
    mom_fwd_srv_release(s->b);
}

/* A request of a batch we cannot decode (never sent by a momd). */
static void
mom_fwd_srv_undecodable(mom_served_t *s)
{
    static const char body[] = "{\"detail\":\"Undecodable request\"}";
    Mom__Response resp = MOM__RESPONSE__INIT;

    resp.kind = MOM__KIND__KIND_REPLY;
    resp.status = 400;
    resp.body.data = (uint8_t *)body;
    resp.body.len = sizeof(body) - 1;
    mom_cluster_answer(s, &resp);
}

/* A call or stream we cannot serve: how it ends. */
static void
mom_fwd_srv_refuse(mom_forward_t *fw, mom_peer_srv *call, mom_forward_kind kind,
                   grpc_status_code status, const char *detail)
{
    if (kind == MOM_FORWARD_STREAM) {
        mom_fwd_srv_abort(fw, call, status, detail);
    } else {
        mom_peer_reply(call, status, NULL, 0, detail);
    }
}

void
mom_forward_serve(mom_forward_t *fw, mom_peer_srv *call, mom_forward_kind kind,
                  const uint8_t *req, size_t len)
{
    Mom__ForwardRequests *reqs = NULL;
    Mom__Request *r;
    mom_fwd_srv_t *b;
    size_t n = 1;

    if (kind != MOM_FORWARD_ONE) {
        reqs = mom__forward_requests__unpack(NULL, len, req);
        if (reqs == NULL) {
            mom_fwd_srv_refuse(fw, call, kind, GRPC_STATUS_INVALID_ARGUMENT,
                               "undecodable ForwardRequests");
            return;
        }
        n = reqs->n_requests;
    }
    b = calloc(1, sizeof(*b) + n * sizeof(b->items[0]));
    if (b == NULL) {
        if (reqs != NULL) {
            mom__forward_requests__free_unpacked(reqs, NULL);
        }
        mom_fwd_srv_refuse(fw, call, kind, GRPC_STATUS_RESOURCE_EXHAUSTED,
                           "out of memory");
        return;
    }
    b->fw = fw;
    b->call = call;
    b->kind = kind;
    b->id = reqs != NULL ? reqs->id : 0;
    b->n = n;
    b->left = n + 1; /* ours, released below: nothing answers b early */
    b->next = fw->served;
    if (b->next != NULL) {
        b->next->prev = b;
    }
    fw->served = b;
    for (size_t i = 0; i < n; i++) {
        b->items[i].b = b;
        r = reqs != NULL ? mom__request__unpack(NULL, reqs->requests[i].len,
                                                reqs->requests[i].data)
                         : mom__request__unpack(NULL, len, req);
        if (r == NULL && reqs == NULL) {
            mom_fwd_srv_free(b);
            mom_peer_reply(call, GRPC_STATUS_INVALID_ARGUMENT, NULL, 0,
                           "undecodable Request");
            return;
        }
        if (r == NULL) {
            mom_fwd_srv_undecodable(&b->items[i]);
        } else {
            mom_ops_forwarded(fw->ops, r, &b->items[i]);
        }
    }
    if (reqs != NULL) {
        /* The buffers may hold a password. */
        for (size_t i = 0; i < reqs->n_requests; i++) {
            memset(reqs->requests[i].data, 0, reqs->requests[i].len);
        }
        mom__forward_requests__free_unpacked(reqs, NULL);
    }
    mom_fwd_srv_release(b);
}

bool
mom_forward_closed(mom_forward_t *fw, mom_peer_srv *call)
{
    mom_fwd_srv_t *b, *next;
    bool found = false;

    /* a stream has any number of batches being served */
    for (b = fw->served; b != NULL; b = next) {
        next = b->next;
        if (b->call != call) {
            continue;
        }
        for (size_t i = 0; i < b->n; i++) {
            if (b->items[i].op != NULL) {
                b->items[i].op->served = NULL; /* its answer is dropped */
            }
        }
        mom_fwd_srv_free(b);
        found = true;
    }
    return found;
}

/* --- start / stop --- */

mom_forward_t *
mom_forward_new(uv_loop_t *loop, mom_ops_t *ops)
{
    mom_forward_t *fw = calloc(1, sizeof(*fw));

    if (fw == NULL) {
        return NULL;
    }
    fw->loop = loop;
    fw->ops = ops;
    uv_prepare_init(loop, &fw->prepare);
    uv_check_init(loop, &fw->check);
    uv_timer_init(loop, &fw->expiry);
    fw->prepare.data = fw;
    fw->check.data = fw;
    fw->expiry.data = fw;
    uv_prepare_start(&fw->prepare, mom_fwd_on_prepare);
    uv_check_start(&fw->check, mom_fwd_on_check);
    return fw;
}

void
mom_forward_stop(mom_forward_t *fw)
{
    mom_fwd_call_t *c, *next;
    mom_fwd_queue_t *q;

    fw->stopped = true;
    uv_timer_stop(&fw->expiry);
    for (size_t i = 0; i < fw->n_queues; i++) {
        q = fw->queues[i];
        if (q->n > 0 && (c = mom_fwd_queue_take(q)) != NULL) {
            mom_fwd_call_failed(fw, c, GRPC_STATUS_CANCELLED);
        }
        if (q->stream != NULL) {
            mom_peer_stream_cancel(q->stream); /* no callback after this */
            for (c = mom_fwd_stream_take(q); c != NULL; c = next) {
                next = c->next;
                mom_fwd_call_failed(fw, c, GRPC_STATUS_CANCELLED);
            }
        }
    }
    mom_fwd_report_failed(fw);
}

static void
mom_fwd_closed(uv_handle_t *h)
{
    mom_forward_t *fw = h->data;

    if (--fw->open_handles > 0) {
        return;
    }
    for (size_t i = 0; i < fw->n_queues; i++) {
        for (size_t j = 0; j < fw->queues[i]->n; j++) {
            mom_fwd_out_free(&fw->queues[i]->q[j]);
        }
        free(fw->queues[i]->q);
        free(fw->queues[i]);
    }
    free(fw->queues);
    free(fw);
}

void
mom_forward_free(mom_forward_t *fw)
{
    mom_forward_stop(fw); /* in case */
    while (fw->served != NULL) {
        mom_forward_closed(fw, fw->served->call);
    }
    fw->open_handles = 3;
    uv_close((uv_handle_t *)&fw->prepare, mom_fwd_closed);
    uv_close((uv_handle_t *)&fw->check, mom_fwd_closed);
    uv_close((uv_handle_t *)&fw->expiry, mom_fwd_closed);
}
