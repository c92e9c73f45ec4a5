/*
 * Forwarded requests, both ways (forward.h).
 *
 * Client side: mom_cluster_forward packs the request into the queue of its
 * destination; a uv_prepare handle (before the loop polls) and a uv_check
 * handle (after the I/O callbacks) send each non-empty queue as one
 * ForwardBatch call, so that the requests read from nginx in one loop
 * iteration cost one gRPC call per leader instead of one each. The call's
 * deadline is the earliest of its requests'; a failed call fails each of
 * its requests with the call's status (route.c retries them; mutations
 * keep their idempotency keys).
 *
 * Server side: every request of a batch becomes its own operation
 * (mom_ops_forwarded) with a handle (mom_served_t) into the batch; the call
 * is answered when the last of them is, with the answers in request order.
 * The requests of a batch arrived together and are submitted together, so
 * they usually commit in the same flush: waiting for the last costs little.
 */
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "log.h"
#include "peer.pb-c.h"

/* A batch is sent at once when it reaches either bound. */
#define MOM_FORWARD_BATCH_MAX 256
#define MOM_FORWARD_BATCH_BYTES (1024 * 1024)

typedef struct {
    mom_cluster_forward_cb cb;
    void *ctx;
    uint8_t *req; /* packed mom.Request; may hold a password: wiped */
    size_t len;
} mom_fwd_out_t;

typedef struct {
    mom_forward_t *fw;
    mom_peer_channel *ch;
    mom_fwd_out_t *q;
    size_t n, cap, bytes;
    uint64_t deadline; /* the earliest of the queued requests' */
} mom_fwd_queue_t;

/* A ForwardBatch call in flight (or that could not be sent): who waits
 * for which answer. */
typedef struct mom_fwd_call_s mom_fwd_call_t;
struct mom_fwd_call_s {
    mom_fwd_call_t *next; /* in the list of failed calls */
    grpc_status_code status;
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

/* One served Forward or ForwardBatch call. */
struct mom_fwd_srv_s {
    mom_fwd_srv_t *prev, *next;
    mom_forward_t *fw;
    mom_peer_srv *call;
    bool batch;  /* ForwardBatch: answers wrapped in ForwardResponses */
    bool failed; /* an answer could not be packed */
    size_t n, left;
    mom_served_t items[];
};

struct mom_forward_s {
    uv_loop_t *loop;
    mom_ops_t *ops;
    mom_fwd_queue_t *queues; /* one per destination channel */
    size_t n_queues;
    mom_fwd_srv_t *served;
    mom_fwd_call_t *failed; /* not sent: reported from prepare/check */
    uv_prepare_t prepare;
    uv_check_t check;
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

static void
mom_fwd_done(void *ctx, grpc_status_code status, const char *detail,
             const uint8_t *buf, size_t len)
{
    mom_fwd_call_t *c = ctx;
    Mom__ForwardResponses *replies = NULL;
    Mom__Response *resp;
    grpc_status_code st;

    if (status == GRPC_STATUS_OK) {
        replies = mom__forward_responses__unpack(NULL, len, buf);
    } else {
        mom_log_debug("forward batch of %zu: gRPC status %d %s", c->n,
                      (int)status, detail);
    }
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
    if (replies != NULL) {
        mom__forward_responses__free_unpacked(replies, NULL);
    }
    mom_fwd_call_free(c);
}

/* Calls that could not be sent fail here, outside of any caller of
 * mom_cluster_forward (its callback is always made later). */
static void
mom_fwd_report_failed(mom_forward_t *fw)
{
    mom_fwd_call_t *c;

    while ((c = fw->failed) != NULL) {
        fw->failed = c->next;
        for (size_t i = 0; i < c->n; i++) {
            mom_fwd_out_free(&c->out[i]);
        }
        for (size_t i = 0; i < c->n; i++) {
            c->out[i].cb(c->out[i].ctx, c->status, NULL);
        }
        mom_fwd_call_free(c);
    }
}

/* Takes q's requests into a call of their own (NULL: out of memory, they
 * stay queued). */
static mom_fwd_call_t *
mom_fwd_queue_take(mom_fwd_queue_t *q)
{
    mom_fwd_call_t *c = malloc(sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->next = NULL;
    c->status = GRPC_STATUS_OK;
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

/* Sends what q holds as one call; its callers are answered later. */
static void
mom_fwd_queue_send(mom_fwd_queue_t *q)
{
    Mom__ForwardRequests batch = MOM__FORWARD_REQUESTS__INIT;
    uint64_t now = uv_now(q->fw->loop);
    ProtobufCBinaryData *reqs;
    mom_fwd_call_t *c;
    uint8_t *buf = NULL;
    size_t len = 0;
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
        len = mom__forward_requests__get_packed_size(&batch);
        buf = malloc(len);
    }
    if (buf != NULL) {
        mom__forward_requests__pack(&batch, buf);
        rc = mom_peer_call(q->ch, MOM_PEER_PATH_FORWARD_BATCH, buf, len,
                           deadline, mom_fwd_done, c);
        memset(buf, 0, len); /* may hold a password */
    }
    free(buf);
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
        mom_fwd_queue_send(&fw->queues[i]);
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
    mom_fwd_queue_t *q;

    for (size_t i = 0; i < fw->n_queues; i++) {
        if (fw->queues[i].ch == ch) {
            return &fw->queues[i];
        }
    }
    q = realloc(fw->queues, (fw->n_queues + 1) * sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    fw->queues = q;
    q = &fw->queues[fw->n_queues++];
    memset(q, 0, sizeof(*q));
    q->fw = fw;
    q->ch = ch;
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

static void
mom_fwd_srv_reply(mom_fwd_srv_t *b)
{
    Mom__ForwardResponses replies = MOM__FORWARD_RESPONSES__INIT;
    ProtobufCBinaryData *resps = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;

    if (b->failed) {
        mom_peer_reply(b->call, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0,
                       "out of memory");
    } else if (!b->batch) {
        mom_peer_reply(b->call, GRPC_STATUS_OK, b->items[0].resp,
                       b->items[0].len, NULL);
    } else {
        resps = malloc(b->n * sizeof(*resps));
        if (resps != NULL) {
            for (size_t i = 0; i < b->n; i++) {
                resps[i].data = b->items[i].resp;
                resps[i].len = b->items[i].len;
            }
            replies.n_responses = b->n;
            replies.responses = resps;
            len = mom__forward_responses__get_packed_size(&replies);
            buf = malloc(len > 0 ? len : 1);
        }
        if (buf != NULL) {
            mom__forward_responses__pack(&replies, buf);
            mom_peer_reply(b->call, GRPC_STATUS_OK, buf, len, NULL);
        } else {
            mom_peer_reply(b->call, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0,
                           "out of memory");
        }
        free(buf);
        free(resps);
    }
    mom_fwd_srv_free(b);
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

void
mom_forward_serve(mom_forward_t *fw, mom_peer_srv *call, bool batch,
                  const uint8_t *req, size_t len)
{
    Mom__ForwardRequests *reqs = NULL;
    Mom__Request *r;
    mom_fwd_srv_t *b;
    size_t n = 1;

    if (batch) {
        reqs = mom__forward_requests__unpack(NULL, len, req);
        if (reqs == NULL) {
            mom_peer_reply(call, GRPC_STATUS_INVALID_ARGUMENT, NULL, 0,
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
        mom_peer_reply(call, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0,
                       "out of memory");
        return;
    }
    b->fw = fw;
    b->call = call;
    b->batch = batch;
    b->n = n;
    b->left = n + 1; /* ours, released below: nothing answers b early */
    b->next = fw->served;
    if (b->next != NULL) {
        b->next->prev = b;
    }
    fw->served = b;
    for (size_t i = 0; i < n; i++) {
        b->items[i].b = b;
        r = batch ? mom__request__unpack(NULL, reqs->requests[i].len,
                                         reqs->requests[i].data)
                  : mom__request__unpack(NULL, len, req);
        if (r == NULL && !batch) {
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
    mom_fwd_srv_t *b;

    for (b = fw->served; b != NULL; b = b->next) {
        if (b->call != call) {
            continue;
        }
        for (size_t i = 0; i < b->n; i++) {
            if (b->items[i].op != NULL) {
                b->items[i].op->served = NULL; /* its answer is dropped */
            }
        }
        mom_fwd_srv_free(b);
        return true;
    }
    return false;
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
    fw->prepare.data = fw;
    fw->check.data = fw;
    uv_prepare_start(&fw->prepare, mom_fwd_on_prepare);
    uv_check_start(&fw->check, mom_fwd_on_check);
    return fw;
}

void
mom_forward_stop(mom_forward_t *fw)
{
    mom_fwd_call_t *c;

    fw->stopped = true;
    for (size_t i = 0; i < fw->n_queues; i++) {
        if (fw->queues[i].n > 0 &&
            (c = mom_fwd_queue_take(&fw->queues[i])) != NULL) {
            mom_fwd_call_failed(fw, c, GRPC_STATUS_CANCELLED);
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
        for (size_t j = 0; j < fw->queues[i].n; j++) {
            mom_fwd_out_free(&fw->queues[i].q[j]);
        }
        free(fw->queues[i].q);
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
    fw->open_handles = 2;
    uv_close((uv_handle_t *)&fw->prepare, mom_fwd_closed);
    uv_close((uv_handle_t *)&fw->check, mom_fwd_closed);
}
