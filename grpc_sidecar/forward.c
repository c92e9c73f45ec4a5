/*
 * Forwarded requests, both ways (forward.h).
 *
 * Client side: mom_cluster_forward packs the request, numbers it and
 * queues it for its member; the request rides the next RaftBatch this node
 * writes on its Raft stream to that member (cluster.c asks with
 * mom_forward_fill; a uv_prepare handle, before the loop polls, and a
 * uv_check handle, after the I/O callbacks, make cluster.c write the
 * queues that hold anything). The member's answers come back in the
 * RaftBatches it writes to us (mom_forward_answered), matched by number.
 * A request fails with UNAVAILABLE when either stream breaks (it may or
 * may not have been served: route.c retries it, and mutations keep their
 * idempotency keys) and with DEADLINE_EXCEEDED at its deadline.
 *
 * Server side: every request of a batch becomes its own operation
 * (mom_ops_forwarded) with a handle (mom_served_t) into the batch. A
 * request that came on a Raft stream is answered on ours to its sender,
 * as soon as its answer is ready; a ForwardBatch call (sent by momds
 * before the Raft stream carried requests) is answered when the last of
 * its requests is, with the answers in request order.
 */
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "log.h"
#include "peer.pb-c.h"

/* A batch carries at most this many bytes of requests and of answers (one
 * larger item goes alone): with the Raft queue's 8 MiB, a RaftBatch stays
 * below the transport's 16 MiB message limit. */
#define MOM_FORWARD_CARRY_BYTES (4 * 1024 * 1024)
/* Deadlines of requests waiting for their answers are checked this often
 * (a forward's deadline is at least 100 ms). */
#define MOM_FORWARD_TICK_MS 25

/* A packed request or answer waiting for the next RaftBatch. */
typedef struct {
    uint64_t id;
    uint8_t *buf; /* a request may hold a password: wiped */
    size_t len;
} mom_fwd_item_t;

typedef struct {
    mom_fwd_item_t *v;
    size_t n, cap;
} mom_fwd_items_t;

/* The first n items of a queue, lent to the RaftBatch being packed. */
typedef struct {
    size_t n;
    Mom__Carried *msgs, **ptrs;
} mom_fwd_lent_t;

/* A forwarded request waiting for its answer. */
typedef struct mom_fwd_wait_s mom_fwd_wait_t;
struct mom_fwd_wait_s {
    mom_fwd_wait_t *next;
    uint64_t id;
    uint64_t deadline;
    grpc_status_code status; /* once failed */
    mom_cluster_forward_cb cb;
    void *ctx;
};

/* What this node exchanges with one member. */
typedef struct {
    uint32_t node;
    mom_fwd_items_t requests;    /* to send */
    mom_fwd_items_t answers;     /* to send */
    mom_fwd_wait_t *head, *tail; /* queued or sent, oldest first */
    mom_fwd_lent_t lent_requests, lent_answers; /* mom_forward_fill */
} mom_fwd_peer_t;

typedef struct mom_fwd_srv_s mom_fwd_srv_t;

/* One forwarded request being served (the handle ops.c holds). */
struct mom_served_s {
    mom_fwd_srv_t *b;
    mom_op_t *op;  /* attached operation until answered or detached */
    uint64_t id;   /* the sender's number (carried requests) */
    uint8_t *resp; /* packed mom.Response once answered (calls) */
    size_t len;
    bool answered;
};

/* The requests of one served Forward or ForwardBatch call, or of one
 * RaftBatch (call NULL). */
struct mom_fwd_srv_s {
    mom_fwd_srv_t *prev, *next;
    mom_forward_t *fw;
    mom_peer_srv *call;
    uint32_t origin; /* carried: the node that sent them */
    bool batch;      /* ForwardBatch: answers wrapped in ForwardResponses */
    bool failed;     /* an answer could not be packed */
    size_t n, left;
    mom_served_t items[];
};

struct mom_forward_s {
    uv_loop_t *loop;
    mom_ops_t *ops;
    void (*flush)(void *ctx); /* writes the queues (cluster.c) */
    void *flush_ctx;
    mom_fwd_peer_t **peers; /* one per member exchanged with */
    size_t n_peers;
    uint64_t next_id;
    size_t waiting;
    mom_fwd_srv_t *served;
    mom_fwd_wait_t *failed; /* reported from prepare/check/timer */
    uv_prepare_t prepare;
    uv_check_t check;
    uv_timer_t timer;
    int open_handles;
    bool stopped;
};

/* --- queues --- */

static void
mom_fwd_item_free(mom_fwd_item_t *it)
{
    if (it->buf != NULL) {
        memset(it->buf, 0, it->len);
        free(it->buf);
        it->buf = NULL;
    }
}

/* Takes buf (malloc'ed) into items; -1 when out of memory (buf freed). */
static int
mom_fwd_items_push(mom_fwd_items_t *items, uint64_t id, uint8_t *buf,
                   size_t len)
{
    mom_fwd_item_t *v;

    if (items->n == items->cap) {
        size_t cap = items->cap ? items->cap * 2 : 16;

        v = realloc(items->v, cap * sizeof(*v));
        if (v == NULL) {
            memset(buf, 0, len);
            free(buf);
            return -1;
        }
        items->v = v;
        items->cap = cap;
    }
    items->v[items->n].id = id;
    items->v[items->n].buf = buf;
    items->v[items->n].len = len;
    items->n++;
    return 0;
}

/* Frees the first n items (those a batch carried). */
static void
mom_fwd_items_shift(mom_fwd_items_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mom_fwd_item_free(&items->v[i]);
    }
    items->n -= n;
    memmove(items->v, items->v + n, items->n * sizeof(items->v[0]));
}

static mom_fwd_peer_t *
mom_fwd_peer(mom_forward_t *fw, uint32_t node, bool create)
{
    mom_fwd_peer_t **peers, *p;

    for (size_t i = 0; i < fw->n_peers; i++) {
        if (fw->peers[i]->node == node) {
            return fw->peers[i];
        }
    }
    if (!create) {
        return NULL;
    }
    peers = realloc(fw->peers, (fw->n_peers + 1) * sizeof(*peers));
    if (peers == NULL) {
        return NULL;
    }
    fw->peers = peers;
    if ((p = calloc(1, sizeof(*p))) == NULL) {
        return NULL;
    }
    p->node = node;
    fw->peers[fw->n_peers++] = p;
    return p;
}

/* --- client side --- */

/* Fails every request waiting on p, and drops those not sent yet. */
static void
mom_fwd_fail_all(mom_forward_t *fw, mom_fwd_peer_t *p, grpc_status_code st)
{
    mom_fwd_wait_t *w;

    while ((w = p->head) != NULL) {
        p->head = w->next;
        w->status = st;
        w->next = fw->failed;
        fw->failed = w;
        fw->waiting--;
    }
    p->tail = NULL;
    mom_fwd_items_shift(&p->requests, p->requests.n);
}

/* Failures are reported here, outside of any caller of
 * mom_cluster_forward (its callback is always made later). */
static void
mom_fwd_report_failed(mom_forward_t *fw)
{
    mom_fwd_wait_t *w;

    while ((w = fw->failed) != NULL) {
        fw->failed = w->next;
        w->cb(w->ctx, w->status, NULL);
        free(w);
    }
}

static void
mom_fwd_on_timer(uv_timer_t *t)
{
    mom_forward_t *fw = t->data;
    uint64_t now = uv_now(fw->loop);
    mom_fwd_wait_t **pp, *w, *last;

    for (size_t i = 0; i < fw->n_peers; i++) {
        last = NULL;
        for (pp = &fw->peers[i]->head; (w = *pp) != NULL;) {
            if (w->deadline > now) {
                last = w;
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            w->status = GRPC_STATUS_DEADLINE_EXCEEDED;
            w->next = fw->failed;
            fw->failed = w;
            fw->waiting--;
        }
        fw->peers[i]->tail = last;
    }
    if (fw->waiting == 0) {
        uv_timer_stop(&fw->timer);
    }
    mom_fwd_report_failed(fw);
}

static void
mom_fwd_flush(mom_forward_t *fw)
{
    for (size_t i = 0; i < fw->n_peers; i++) {
        if (fw->peers[i]->requests.n > 0 || fw->peers[i]->answers.n > 0) {
            fw->flush(fw->flush_ctx);
            break;
        }
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

int
mom_forward_send(mom_forward_t *fw, uint32_t node, const Mom__Request *req,
                 int deadline_ms, mom_cluster_forward_cb cb, void *ctx)
{
    mom_fwd_peer_t *p;
    mom_fwd_wait_t *w;
    size_t len;
    uint8_t *buf;

    if (fw->stopped || (p = mom_fwd_peer(fw, node, true)) == NULL) {
        return -1;
    }
    len = mom__request__get_packed_size(req);
    w = malloc(sizeof(*w));
    buf = malloc(len > 0 ? len : 1);
    if (w == NULL || buf == NULL) {
        free(w);
        free(buf);
        return -1;
    }
    mom__request__pack(req, buf);
    w->id = ++fw->next_id;
    if (mom_fwd_items_push(&p->requests, w->id, buf, len) != 0) {
        free(w);
        return -1;
    }
    w->next = NULL;
    w->deadline =
        uv_now(fw->loop) + (uint64_t)(deadline_ms > 0 ? deadline_ms : 1);
    w->status = GRPC_STATUS_OK;
    w->cb = cb;
    w->ctx = ctx;
    if (p->tail != NULL) {
        p->tail->next = w;
    } else {
        p->head = w;
    }
    p->tail = w;
    if (fw->waiting++ == 0) {
        uv_timer_start(&fw->timer, mom_fwd_on_timer, MOM_FORWARD_TICK_MS,
                       MOM_FORWARD_TICK_MS);
    }
    return 0;
}

static void
mom_fwd_call_done(void *ctx, grpc_status_code status, const char *detail,
                  const uint8_t *buf, size_t len)
{
    mom_fwd_wait_t *w = ctx;
    Mom__Response *resp = NULL;

    if (status == GRPC_STATUS_OK &&
        (resp = mom__response__unpack(NULL, len, buf)) == NULL) {
        status = GRPC_STATUS_INTERNAL;
    }
    w->cb(w->ctx, status, resp);
    if (resp != NULL) {
        mom__response__free_unpacked(resp, NULL);
    }
    free(w);
}

int
mom_forward_call(mom_forward_t *fw, mom_peer_channel *ch,
                 const Mom__Request *req, int deadline_ms,
                 mom_cluster_forward_cb cb, void *ctx)
{
    size_t len = mom__request__get_packed_size(req);
    mom_fwd_wait_t *w;
    uint8_t *buf;
    int rc = -1;

    if (fw->stopped) {
        return -1;
    }
    w = calloc(1, sizeof(*w));
    buf = malloc(len > 0 ? len : 1);
    if (w != NULL && buf != NULL) {
        mom__request__pack(req, buf);
        w->cb = cb;
        w->ctx = ctx;
        rc = mom_peer_call(ch, MOM_PEER_PATH_FORWARD, buf, len, deadline_ms,
                           mom_fwd_call_done, w);
        memset(buf, 0, len); /* may hold a password */
    }
    free(buf);
    if (rc != 0) {
        free(w);
    }
    return rc;
}

bool
mom_forward_queued(mom_forward_t *fw, uint32_t node)
{
    mom_fwd_peer_t *p = mom_fwd_peer(fw, node, false);

    return p != NULL && (p->requests.n > 0 || p->answers.n > 0);
}

/* How many of items fit in one batch (at least one). */
static size_t
mom_fwd_items_fit(const mom_fwd_items_t *items)
{
    size_t n = 0, bytes = 0;

    while (n < items->n &&
           (n == 0 || bytes + items->v[n].len <= MOM_FORWARD_CARRY_BYTES)) {
        bytes += items->v[n++].len;
    }
    return n;
}

/* Lends as many of items as fit in one batch (at least one); -1 when out
 * of memory (nothing lent). */
static int
mom_fwd_lend(const mom_fwd_items_t *items, mom_fwd_lent_t *l)
{
    size_t n = mom_fwd_items_fit(items);

    l->n = 0;
    if (n == 0) {
        return 0;
    }
    l->msgs = calloc(n, sizeof(*l->msgs));
    l->ptrs = calloc(n, sizeof(*l->ptrs));
    if (l->msgs == NULL || l->ptrs == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        mom__carried__init(&l->msgs[i]);
        l->msgs[i].id = items->v[i].id;
        l->msgs[i].data.data = items->v[i].buf;
        l->msgs[i].data.len = items->v[i].len;
        l->ptrs[i] = &l->msgs[i];
    }
    l->n = n;
    return 0;
}

/* Frees what l lent and the items it took from their queue. */
static void
mom_fwd_lent_done(mom_fwd_lent_t *l, mom_fwd_items_t *items)
{
    mom_fwd_items_shift(items, l->n);
    free(l->msgs);
    free(l->ptrs);
    memset(l, 0, sizeof(*l));
}

int
mom_forward_fill(mom_forward_t *fw, uint32_t node, Mom__RaftBatch *batch)
{
    mom_fwd_peer_t *p = mom_fwd_peer(fw, node, false);

    if (p == NULL) {
        return 0;
    }
    if (mom_fwd_lend(&p->requests, &p->lent_requests) != 0 ||
        mom_fwd_lend(&p->answers, &p->lent_answers) != 0) {
        mom_forward_filled(fw, node, false);
        return -1;
    }
    batch->n_requests = p->lent_requests.n;
    batch->requests = p->lent_requests.ptrs;
    batch->n_responses = p->lent_answers.n;
    batch->responses = p->lent_answers.ptrs;
    return 0;
}

void
mom_forward_filled(mom_forward_t *fw, uint32_t node, bool written)
{
    mom_fwd_peer_t *p = mom_fwd_peer(fw, node, false);

    if (p == NULL) {
        return;
    }
    mom_fwd_lent_done(&p->lent_requests, &p->requests);
    mom_fwd_lent_done(&p->lent_answers, &p->answers);
    if (!written) {
        /* Its requests are lost, and we cannot tell which were sent
         * before: route.c retries them all. */
        mom_fwd_fail_all(fw, p, GRPC_STATUS_UNAVAILABLE);
    }
}

void
mom_forward_lost(mom_forward_t *fw, uint32_t node)
{
    mom_fwd_peer_t *p = mom_fwd_peer(fw, node, false);

    if (p != NULL && p->head != NULL) {
        mom_log_debug("forwards to node %u: stream lost", node);
        mom_fwd_fail_all(fw, p, GRPC_STATUS_UNAVAILABLE);
    }
}

void
mom_forward_answered(mom_forward_t *fw, uint32_t node,
                     Mom__Carried *const *answers, size_t n)
{
    mom_fwd_peer_t *p;
    mom_fwd_wait_t **pp, *w, *prev;
    Mom__Response *resp;

    for (size_t i = 0; i < n; i++) {
        /* A callback may forward again: look the peer up each time. */
        if ((p = mom_fwd_peer(fw, node, false)) == NULL) {
            return;
        }
        prev = NULL;
        for (pp = &p->head; (w = *pp) != NULL && w->id != answers[i]->id;
             pp = &w->next) {
            prev = w;
        }
        if (w == NULL) {
            continue; /* failed already (deadline, lost stream) */
        }
        *pp = w->next;
        if (p->tail == w) {
            p->tail = prev;
        }
        if (--fw->waiting == 0) {
            uv_timer_stop(&fw->timer);
        }
        resp = mom__response__unpack(NULL, answers[i]->data.len,
                                     answers[i]->data.data);
        w->cb(w->ctx, resp != NULL ? GRPC_STATUS_OK : GRPC_STATUS_INTERNAL,
              resp);
        if (resp != NULL) {
            mom__response__free_unpacked(resp, NULL);
        }
        free(w);
    }
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

    if (b->call == NULL) {
        /* Carried: each answer left on its own. */
    } else if (b->failed) {
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
    mom_fwd_srv_t *b = s->b;
    size_t len = mom__response__get_packed_size(resp);
    mom_fwd_peer_t *p;
    uint8_t *buf;

    if (s->answered) {
        return;
    }
    s->answered = true;
    s->op = NULL;
    buf = malloc(len > 0 ? len : 1);
    if (buf != NULL) {
        len = mom__response__pack(resp, buf);
    }
    if (b->call != NULL) {
        s->resp = buf;
        s->len = len;
        b->failed = b->failed || buf == NULL;
    } else if (buf != NULL) {
        /* Without memory the answer is lost: the sender's deadline. */
        p = mom_fwd_peer(b->fw, b->origin, true);
        if (p == NULL) {
            free(buf);
        } else {
            (void)mom_fwd_items_push(&p->answers, s->id, buf, len);
        }
    }
    mom_fwd_srv_release(b);
}

/* A request we cannot decode (never sent by a momd). */
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

/* A batch of n requests to serve; NULL when out of memory. */
static mom_fwd_srv_t *
mom_fwd_srv_new(mom_forward_t *fw, mom_peer_srv *call, size_t n)
{
    mom_fwd_srv_t *b = calloc(1, sizeof(*b) + n * sizeof(b->items[0]));

    if (b == NULL) {
        return NULL;
    }
    b->fw = fw;
    b->call = call;
    b->n = n;
    b->left = n + 1; /* the caller's, released last: nothing answers b early */
    b->next = fw->served;
    if (b->next != NULL) {
        b->next->prev = b;
    }
    fw->served = b;
    for (size_t i = 0; i < n; i++) {
        b->items[i].b = b;
    }
    return b;
}

/* Serves one packed request of b. */
static void
mom_fwd_srv_start(mom_fwd_srv_t *b, size_t i, const uint8_t *req, size_t len)
{
    Mom__Request *r = mom__request__unpack(NULL, len, req);

    if (r == NULL) {
        mom_fwd_srv_undecodable(&b->items[i]);
    } else {
        mom_ops_forwarded(b->fw->ops, r, &b->items[i]);
    }
}

void
mom_forward_serve(mom_forward_t *fw, mom_peer_srv *call, bool batch,
                  const uint8_t *req, size_t len)
{
    Mom__ForwardRequests *reqs = NULL;
    Mom__Request *r = NULL;
    mom_fwd_srv_t *b;

    if (batch) {
        reqs = mom__forward_requests__unpack(NULL, len, req);
    } else {
        r = mom__request__unpack(NULL, len, req);
    }
    if (reqs == NULL && r == NULL) {
        mom_peer_reply(call, GRPC_STATUS_INVALID_ARGUMENT, NULL, 0,
                       batch ? "undecodable ForwardRequests"
                             : "undecodable Request");
        return;
    }
    b = mom_fwd_srv_new(fw, call, reqs != NULL ? reqs->n_requests : 1);
    if (b == NULL) {
        mom_peer_reply(call, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, 0,
                       "out of memory");
        if (r != NULL) {
            mom__request__free_unpacked(r, NULL);
        }
    } else if (r != NULL) {
        mom_ops_forwarded(fw->ops, r, &b->items[0]);
        mom_fwd_srv_release(b);
    } else {
        b->batch = true;
        for (size_t i = 0; i < b->n; i++) {
            mom_fwd_srv_start(b, i, reqs->requests[i].data,
                              reqs->requests[i].len);
        }
        mom_fwd_srv_release(b);
    }
    if (reqs != NULL) {
        /* The buffers may hold a password. */
        for (size_t i = 0; i < reqs->n_requests; i++) {
            memset(reqs->requests[i].data, 0, reqs->requests[i].len);
        }
        mom__forward_requests__free_unpacked(reqs, NULL);
    }
}

void
mom_forward_serve_carried(mom_forward_t *fw, uint32_t node,
                          Mom__Carried *const *reqs, size_t n)
{
    mom_fwd_srv_t *b;

    if (n == 0 || fw->stopped || (b = mom_fwd_srv_new(fw, NULL, n)) == NULL) {
        return; /* the sender's deadline */
    }
    b->origin = node;
    for (size_t i = 0; i < n; i++) {
        b->items[i].id = reqs[i]->id;
        mom_fwd_srv_start(b, i, reqs[i]->data.data, reqs[i]->data.len);
    }
    mom_fwd_srv_release(b);
}

/* Its operations' answers are dropped. */
static void
mom_fwd_srv_detach(mom_fwd_srv_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i].op != NULL) {
            b->items[i].op->served = NULL;
        }
    }
    mom_fwd_srv_free(b);
}

bool
mom_forward_closed(mom_forward_t *fw, mom_peer_srv *call)
{
    for (mom_fwd_srv_t *b = fw->served; b != NULL; b = b->next) {
        if (b->call == call) {
            mom_fwd_srv_detach(b);
            return true;
        }
    }
    return false;
}

/* --- start / stop --- */

mom_forward_t *
mom_forward_new(uv_loop_t *loop, mom_ops_t *ops, void (*flush)(void *ctx),
                void *flush_ctx)
{
    mom_forward_t *fw = calloc(1, sizeof(*fw));

    if (fw == NULL) {
        return NULL;
    }
    fw->loop = loop;
    fw->ops = ops;
    fw->flush = flush;
    fw->flush_ctx = flush_ctx;
    uv_prepare_init(loop, &fw->prepare);
    uv_check_init(loop, &fw->check);
    uv_timer_init(loop, &fw->timer);
    fw->prepare.data = fw;
    fw->check.data = fw;
    fw->timer.data = fw;
    uv_prepare_start(&fw->prepare, mom_fwd_on_prepare);
    uv_check_start(&fw->check, mom_fwd_on_check);
    return fw;
}

void
mom_forward_stop(mom_forward_t *fw)
{
    fw->stopped = true;
    for (size_t i = 0; i < fw->n_peers; i++) {
        mom_fwd_fail_all(fw, fw->peers[i], GRPC_STATUS_CANCELLED);
    }
    uv_timer_stop(&fw->timer);
    mom_fwd_report_failed(fw);
}

static void
mom_fwd_closed(uv_handle_t *h)
{
    mom_forward_t *fw = h->data;

    if (--fw->open_handles > 0) {
        return;
    }
    for (size_t i = 0; i < fw->n_peers; i++) {
        mom_fwd_items_shift(&fw->peers[i]->requests, fw->peers[i]->requests.n);
        mom_fwd_items_shift(&fw->peers[i]->answers, fw->peers[i]->answers.n);
        free(fw->peers[i]->requests.v);
        free(fw->peers[i]->answers.v);
        free(fw->peers[i]);
    }
    free(fw->peers);
    free(fw);
}

void
mom_forward_free(mom_forward_t *fw)
{
    mom_forward_stop(fw); /* in case */
    while (fw->served != NULL) {
        mom_fwd_srv_detach(fw->served);
    }
    fw->open_handles = 3;
    uv_close((uv_handle_t *)&fw->prepare, mom_fwd_closed);
    uv_close((uv_handle_t *)&fw->check, mom_fwd_closed);
    uv_close((uv_handle_t *)&fw->timer, mom_fwd_closed);
}
