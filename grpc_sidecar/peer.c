/*
 * peer.c: momd's gRPC transport on the gRPC C core 1.51: the
 * completion-queue thread and its hand-off to the libuv loop, client calls
 * (unary and server-streaming) on cached channels, start and stop. The
 * server half is peer_server.c; these two files are momd's only users of
 * the gRPC headers (other files see peer.h, which needs only grpc/status.h).
 *
 * Threading model (see docs/peer.md):
 * - One private thread per mom_peer does nothing but
 *   grpc_completion_queue_next() on the peer's single completion queue (this
 *   also drives gRPC's I/O polling). Each completed tag is a mom_peer_op
 *   embedded in one of our call structs; the thread appends it to a
 *   mutex-protected intrusive list (no allocation) and wakes the loop with
 *   uv_async_send.
 * - Everything else runs on the libuv loop thread: all our state, every
 *   callback, and every other gRPC call (grpc_channel_create*,
 *   grpc_call_start_batch, grpc_server_request_call, grpc_call_cancel,
 *   grpc_call_unref, shutdown). These core functions are thread-safe with
 *   respect to the completion-queue thread and never block; batches of one
 *   call are only ever started from the loop thread, which gives the
 *   per-call serialization grpc_call_start_batch requires.
 * Each op is in at most one batch at a time, so it is queued at most once.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "peer_internal.h"

const mom_peer_method mom_peer_service[MOM_PEER_NMETHODS] = {
    [MOM_PEER_FORWARD] = {MOM_PEER_PATH_FORWARD, MOM_PEER_UNARY},
    [MOM_PEER_RAFT] = {MOM_PEER_PATH_RAFT, MOM_PEER_UNARY},
    [MOM_PEER_SUBSCRIBE] = {MOM_PEER_PATH_SUBSCRIBE, MOM_PEER_SERVER_STREAM},
    [MOM_PEER_FORWARD_BATCH] = {MOM_PEER_PATH_FORWARD_BATCH, MOM_PEER_UNARY},
    [MOM_PEER_RAFT_STREAM] = {MOM_PEER_PATH_RAFT_STREAM, MOM_PEER_BIDI_STREAM},
};

static void peer_dispatch(mom_peer *p, mom_peer_op *o);

void
mom_peer_log(const char *what, grpc_call_error err)
{
    fprintf(stderr, "momd peer: %s: %s\n", what,
            grpc_call_error_to_string(err));
}

void
mom_peer_op_init(mom_peer_op *o, void *owner, mom_peer_op_kind kind)
{
    o->next = NULL;
    o->owner = owner;
    o->kind = kind;
    o->success = 0;
    o->lazy = 0;
    o->queued = 0;
}

grpc_byte_buffer *
mom_peer_bytes_to_bb(const uint8_t *buf, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* The whole (decompressed) message as one slice; 0 when unreadable. */
int
mom_peer_bb_to_slice(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;

    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return 0;
    }
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return 1;
}

static gpr_timespec
deadline_in(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

grpc_call_error
mom_peer_start_batch(mom_peer *p, grpc_call *call, const grpc_op *ops, size_t n,
                     mom_peer_op *o)
{
    grpc_call_error err;

    o->queued = 0; /* not in flight: the completion-queue thread is away */
    err = grpc_call_start_batch(call, ops, n, o, NULL);

    if (err == GRPC_CALL_OK) {
        p->outstanding++;
    } else {
        mom_peer_log("grpc_call_start_batch", err);
    }
    return err;
}

void
mom_peer_op_fill(grpc_op *g, grpc_op_type type)
{
    memset(g, 0, sizeof(*g));
    g->op = type;
}

/* --- the completion-queue thread ---------------------------------------- */

static void *
peer_cq_thread(void *arg)
{
    mom_peer *p = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        mom_peer_op *o = ev.tag;
        o->success = ev.success;
        o->next = NULL;

        pthread_mutex_lock(&p->mu);
        if (p->q_head == NULL) {
            p->q_head = o;
        } else {
            p->q_tail->next = o;
        }
        p->q_tail = o;
        o->queued = 1;
        /* one wake-up per burst; a lazy op waits for the next one unless
         * it failed (its stream's end waits for it) */
        int wake = (!o->lazy || !ev.success) && !p->wake_pending;
        if (wake) {
            p->wake_pending = 1;
        }
        int waiting = p->waiting;
        pthread_mutex_unlock(&p->mu);

        if (waiting) {
            pthread_cond_signal(&p->cond);
        } else if (wake) {
            uv_async_send(&p->async);
        }
    }
    return NULL;
}

/* --- handing completions to the loop ------------------------------------ */

/* Moves the shared queue to the loop's local list; mu must be held. */
static void
peer_take_locked(mom_peer *p)
{
    if (p->q_head == NULL) {
        return;
    }
    if (p->local_head == NULL) {
        p->local_head = p->q_head;
    } else {
        p->local_tail->next = p->q_head;
    }
    p->local_tail = p->q_tail;
    p->q_head = p->q_tail = NULL;
}

static mom_peer_op *
peer_pop_local(mom_peer *p)
{
    mom_peer_op *o = p->local_head;

    if (o != NULL) {
        p->local_head = o->next;
        if (p->local_head == NULL) {
            p->local_tail = NULL;
        }
        p->outstanding--;
    }
    return o;
}

static void
peer_on_async(uv_async_t *a)
{
    mom_peer *p = a->data;
    mom_peer_op *o;

    pthread_mutex_lock(&p->mu);
    p->wake_pending = 0;
    peer_take_locked(p);
    pthread_mutex_unlock(&p->mu);

    /* the local list lives in p: a nested drain (mom_peer_stop) sees it */
    while (!p->stopping && (o = peer_pop_local(p)) != NULL) {
        peer_dispatch(p, o);
    }
}

/* The loop now waits for lazy op o: its completion wakes the loop, at
 * once if it is already in the hand-off list. */
void
mom_peer_op_eager(mom_peer *p, mom_peer_op *o)
{
    int wake = 0;

    pthread_mutex_lock(&p->mu);
    if (o->lazy) {
        o->lazy = 0;
        if (o->queued && !p->wake_pending) {
            p->wake_pending = wake = 1;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (wake) {
        uv_async_send(&p->async);
    }
}

/*
 * Takes op o out of the hand-off lists if it has completed successfully:
 * the caller handles its completion now rather than on the loop's next
 * wake-up (which comes after the rest of the current iteration's work).
 * The other completions stay in the loop's list, dispatched as before.
 */
static int
peer_op_claim(mom_peer *p, mom_peer_op *o)
{
    mom_peer_op *prev = NULL, *cur;

    pthread_mutex_lock(&p->mu);
    if (!o->queued || !o->success) {
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    peer_take_locked(p); /* a wake-up on its way still comes */
    pthread_mutex_unlock(&p->mu);
    for (cur = p->local_head; cur != NULL; prev = cur, cur = cur->next) {
        if (cur == o) {
            if (prev == NULL) {
                p->local_head = o->next;
            } else {
                prev->next = o->next;
            }
            if (p->local_tail == o) {
                p->local_tail = prev;
            }
            p->outstanding--;
            return 1;
        }
    }
    return 0;
}

/* Whether op o has completed (it may wait, lazy, in the hand-off list). */
static int
peer_op_completed(mom_peer *p, const mom_peer_op *o)
{
    int done;

    pthread_mutex_lock(&p->mu);
    done = o->queued;
    pthread_mutex_unlock(&p->mu);
    return done;
}

/* --- client side --------------------------------------------------------- */

static void cli_on_send(mom_peer_stream *s, int success);

mom_peer_channel *
mom_peer_channel_get(mom_peer *p, const char *addr)
{
    mom_peer_channel *c;
    grpc_channel_credentials *creds;

    if (p->stopping) {
        return NULL;
    }
    for (c = p->channels; c != NULL; c = c->next) {
        if (strcmp(c->addr, addr) == 0) {
            return c;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->addr = strdup(addr)) == NULL) {
        free(c);
        return NULL;
    }
    creds = grpc_insecure_credentials_create();
    c->p = p;
    c->ch = grpc_channel_create(addr, creds, &p->cli_args);
    grpc_channel_credentials_release(creds);
    c->next = p->channels;
    p->channels = c;
    return c;
}

static grpc_call *
cli_create_call(mom_peer *p, mom_peer_channel *c, const char *method,
                gpr_timespec deadline)
{
    grpc_slice path;
    grpc_call *call;
    int i;

    for (i = 0; i < c->nreg; i++) {
        if (strcmp(c->reg[i].path, method) == 0) {
            break;
        }
    }
    if (i == c->nreg && c->nreg < PEER_REGISTERED_METHODS &&
        (c->reg[i].path = strdup(method)) != NULL) {
        /* the path must live as long as the channel */
        c->reg[i].handle =
            grpc_channel_register_call(c->ch, c->reg[i].path, NULL, NULL);
        c->nreg++;
    }
    if (i < c->nreg) {
        return grpc_channel_create_registered_call(
            c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, p->cq, c->reg[i].handle,
            deadline, NULL);
    }
    path = grpc_slice_from_copied_string(method);
    call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, p->cq,
                                    path, NULL, deadline, NULL);
    grpc_slice_unref(path);
    return call;
}

static mom_peer_stream *
cli_new(mom_peer_channel *c, const char *method, const uint8_t *buf, size_t len,
        gpr_timespec deadline)
{
    mom_peer *p = c->p;
    mom_peer_stream *s;

    if (p->stopping || p->n_cli >= p->o.max_cli_calls ||
        len > p->o.max_message) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->p = p;
    s->call = cli_create_call(p, c, method, deadline);
    if (s->call == NULL) {
        free(s);
        return NULL;
    }
    s->send_bb = buf != NULL ? mom_peer_bytes_to_bb(buf, len) : NULL;
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->detail = grpc_empty_slice();
    s->status = GRPC_STATUS_INTERNAL; /* until RECV_STATUS fills it */
    mom_peer_op_init(&s->op_main, s, PEER_OP_CLI_UNARY);
    mom_peer_op_init(&s->op_recv, s, PEER_OP_CLI_RECV);
    mom_peer_op_init(&s->op_status, s, PEER_OP_CLI_STATUS);
    mom_peer_op_init(&s->op_send, s, PEER_OP_CLI_SEND);
    s->next = p->cli_calls;
    if (s->next != NULL) {
        s->next->prev = s;
    }
    p->cli_calls = s;
    p->n_cli++;
    return s;
}

int
mom_peer_msgq_push(mom_peer_msgq *q, const uint8_t *buf, size_t len)
{
    mom_peer_msg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return -1;
    }
    m->bb = mom_peer_bytes_to_bb(buf, len);
    m->len = len;
    if (q->tail != NULL) {
        q->tail->next = m;
    } else {
        q->head = m;
    }
    q->tail = m;
    q->count++;
    q->bytes += len;
    return 0;
}

grpc_byte_buffer *
mom_peer_msgq_pop(mom_peer_msgq *q)
{
    mom_peer_msg *m = q->head;
    grpc_byte_buffer *bb;

    if (m == NULL) {
        return NULL;
    }
    q->head = m->next;
    if (q->head == NULL) {
        q->tail = NULL;
    }
    q->count--;
    q->bytes -= m->len;
    bb = m->bb;
    free(m);
    return bb;
}

void
mom_peer_msgq_clear(mom_peer_msgq *q)
{
    grpc_byte_buffer *bb;

    while ((bb = mom_peer_msgq_pop(q)) != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
}

static void
cli_free(mom_peer_stream *s)
{
    mom_peer *p = s->p;

    mom_peer_msgq_clear(&s->q);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        p->cli_calls = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    p->n_cli--;
    grpc_call_unref(s->call);
    if (s->send_bb != NULL) {
        grpc_byte_buffer_destroy(s->send_bb);
    }
    if (s->recv_bb != NULL) {
        grpc_byte_buffer_destroy(s->recv_bb);
    }
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    grpc_slice_unref(s->detail);
    free(s);
}

/* Fills the send-request and receive-status ops of a client call. */
static size_t
cli_request_ops(mom_peer_stream *s, grpc_op *ops)
{
    mom_peer_op_fill(&ops[0], GRPC_OP_SEND_INITIAL_METADATA);
    mom_peer_op_fill(&ops[1], GRPC_OP_SEND_MESSAGE);
    ops[1].data.send_message.send_message = s->send_bb;
    mom_peer_op_fill(&ops[2], GRPC_OP_SEND_CLOSE_FROM_CLIENT);
    mom_peer_op_fill(&ops[3], GRPC_OP_RECV_INITIAL_METADATA);
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    return 4;
}

static void
cli_status_op(mom_peer_stream *s, grpc_op *g)
{
    mom_peer_op_fill(g, GRPC_OP_RECV_STATUS_ON_CLIENT);
    g->data.recv_status_on_client.trailing_metadata = &s->trail_md;
    g->data.recv_status_on_client.status = &s->status;
    g->data.recv_status_on_client.status_details = &s->detail;
}

static void
cli_recv_op(mom_peer_stream *s, grpc_op *g)
{
    mom_peer_op_fill(g, GRPC_OP_RECV_MESSAGE);
    g->data.recv_message.recv_message = &s->recv_bb;
}

static int
cli_batch(mom_peer_stream *s, const grpc_op *ops, size_t n, mom_peer_op *o)
{
    if (mom_peer_start_batch(s->p, s->call, ops, n, o) != GRPC_CALL_OK) {
        grpc_call_cancel(s->call, NULL);
        return -1;
    }
    s->pending++;
    return 0;
}

int
mom_peer_call(mom_peer_channel *c, const char *method, const uint8_t *buf,
              size_t len, int deadline_ms, mom_peer_call_cb cb, void *ctx)
{
    mom_peer_stream *s;
    grpc_op ops[6];
    size_t n;

    if (deadline_ms <= 0) {
        deadline_ms = c->p->o.default_deadline_ms;
    }
    s = cli_new(c, method, buf, len, deadline_in(deadline_ms));
    if (s == NULL) {
        return -1;
    }
    s->cb = cb;
    s->ctx = ctx;
    n = cli_request_ops(s, ops);
    cli_recv_op(s, &ops[n++]);
    cli_status_op(s, &ops[n++]);
    if (cli_batch(s, ops, n, &s->op_main) != 0) {
        cli_free(s);
        return -1;
    }
    return 0;
}

/* Hands the outcome of a finished client call to the application. */
static void
cli_finish(mom_peer_stream *s)
{
    grpc_status_code status = s->status;
    char *detail = grpc_slice_to_c_string(s->detail); /* gpr_malloc */
    grpc_slice resp = grpc_empty_slice();
    int deliver = !s->detached;
    mom_peer_call_cb cb = s->cb;
    mom_peer_stream_cbs cbs = s->cbs;
    void *ctx = s->ctx;

    if (!s->streaming && status == GRPC_STATUS_OK &&
        (s->recv_bb == NULL || !mom_peer_bb_to_slice(s->recv_bb, &resp))) {
        status = GRPC_STATUS_INTERNAL;
        gpr_free(detail);
        detail = gpr_malloc(sizeof("no response message"));
        memcpy(detail, "no response message", sizeof("no response message"));
    }
    /* all of ours is released before the callback, which comes last */
    cli_free(s);
    if (deliver && cb != NULL) {
        cb(ctx, status, detail, GRPC_SLICE_START_PTR(resp),
           GRPC_SLICE_LENGTH(resp));
    } else if (deliver && cbs.on_end != NULL) {
        cbs.on_end(ctx, status, detail);
    }
    grpc_slice_unref(resp);
    gpr_free(detail);
}

/* Once the first batch of a streaming call is started, the call can only
 * end through its ops: wait for its status and its first message. */
static void
cli_stream_started(mom_peer_stream *s)
{
    grpc_op ops[1];

    cli_status_op(s, &ops[0]);
    cli_batch(s, ops, 1, &s->op_status);
    cli_recv_op(s, &ops[0]);
    cli_batch(s, ops, 1, &s->op_recv);
}

mom_peer_stream *
mom_peer_stream_call(mom_peer_channel *c, const char *method,
                     const uint8_t *buf, size_t len, int deadline_ms,
                     const mom_peer_stream_cbs *cbs, void *ctx)
{
    mom_peer_stream *s;
    grpc_op ops[4];
    size_t n;
    gpr_timespec deadline = deadline_ms > 0
                                ? deadline_in(deadline_ms)
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);

    s = cli_new(c, method, buf, len, deadline);
    if (s == NULL) {
        return NULL;
    }
    s->streaming = 1;
    s->cbs = *cbs;
    s->ctx = ctx;
    s->op_main.kind = PEER_OP_CLI_START;
    n = cli_request_ops(s, ops);
    if (cli_batch(s, ops, n, &s->op_main) != 0) {
        cli_free(s);
        return NULL;
    }
    cli_stream_started(s);
    return s;
}

mom_peer_stream *
mom_peer_bidi_call(mom_peer_channel *c, const char *method, int deadline_ms,
                   const mom_peer_stream_cbs *cbs, void *ctx)
{
    mom_peer_stream *s;
    grpc_op ops[2];
    gpr_timespec deadline = deadline_ms > 0
                                ? deadline_in(deadline_ms)
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);

    s = cli_new(c, method, NULL, 0, deadline);
    if (s == NULL) {
        return NULL;
    }
    s->streaming = 1;
    s->bidi = 1;
    s->cbs = *cbs;
    s->ctx = ctx;
    s->op_main.kind = PEER_OP_CLI_START;
    mom_peer_op_fill(&ops[0], GRPC_OP_SEND_INITIAL_METADATA);
    mom_peer_op_fill(&ops[1], GRPC_OP_RECV_INITIAL_METADATA);
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    if (cli_batch(s, ops, 2, &s->op_main) != 0) {
        cli_free(s);
        return NULL;
    }
    cli_stream_started(s);
    return s;
}

/* Starts the send of the next written message unless one is in flight. */
static void
cli_pump(mom_peer_stream *s)
{
    grpc_op ops[1];

    if (s->sending || s->q.head == NULL || s->over || s->detached) {
        return;
    }
    s->send_bb = mom_peer_msgq_pop(&s->q);
    mom_peer_op_fill(&ops[0], GRPC_OP_SEND_MESSAGE);
    ops[0].data.send_message.send_message = s->send_bb;
    /* Nothing waits for this send's completion unless a write follows
     * (mom_peer_stream_write makes it eager): it does not wake the loop,
     * which would end the current batching window of the caller. */
    s->op_send.lazy = s->q.head == NULL;
    if (cli_batch(s, ops, 1, &s->op_send) == 0) {
        s->sending = 1;
    } else {
        grpc_byte_buffer_destroy(s->send_bb);
        s->send_bb = NULL;
        mom_peer_msgq_clear(
            &s->q); /* the call is cancelled: its status follows */
    }
}

int
mom_peer_stream_write(mom_peer_stream *s, const uint8_t *buf, size_t len)
{
    mom_peer *p = s->p;

    if (!s->bidi || s->over || s->detached || p->stopping ||
        len > p->o.max_message || s->q.count >= p->o.stream_msgs ||
        (s->q.count > 0 && s->q.bytes + len > p->o.stream_queue) ||
        mom_peer_msgq_push(&s->q, buf, len) != 0) {
        return -1;
    }
    if (s->sending && peer_op_claim(p, &s->op_send)) {
        cli_on_send(s, 1); /* sent already: the next one starts now */
    } else if (s->sending) {
        mom_peer_op_eager(p, &s->op_send); /* this message waits for it */
    }
    cli_pump(s);
    return 0;
}

size_t
mom_peer_stream_unsent(const mom_peer_stream *s)
{
    return s->q.count +
           (s->sending && !peer_op_completed(s->p, &s->op_send) ? 1 : 0);
}

static void
cli_on_send(mom_peer_stream *s, int success)
{
    s->pending--;
    s->sending = 0;
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    if (success) {
        cli_pump(s);
    } else {
        mom_peer_msgq_clear(&s->q); /* the stream is over; its status follows */
    }
    if (s->pending == 0) {
        cli_finish(s);
    }
}

void
mom_peer_stream_cancel(mom_peer_stream *s)
{
    s->detached = 1;
    grpc_call_cancel(s->call, NULL);
}

static void
cli_on_recv(mom_peer_stream *s, int success)
{
    grpc_byte_buffer *bb = s->recv_bb;
    grpc_slice msg;
    grpc_op ops[1];

    s->pending--;
    s->recv_bb = NULL;
    if (!success || bb == NULL || s->detached || s->p->stopping) {
        if (bb != NULL) {
            grpc_byte_buffer_destroy(bb);
        }
        if (bb != NULL && success) {
            grpc_call_cancel(s->call, NULL);
        }
        if (s->pending == 0) {
            cli_finish(s);
        }
        return;
    }
    if (!mom_peer_bb_to_slice(bb, &msg)) {
        grpc_byte_buffer_destroy(bb);
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL,
                                     "unreadable message", NULL);
        if (s->pending == 0) {
            cli_finish(s);
        }
        return;
    }
    grpc_byte_buffer_destroy(bb);
    /* ask for the next message first: s then outlives the callback */
    cli_recv_op(s, &ops[0]);
    cli_batch(s, ops, 1, &s->op_recv);
    if (s->pending == 0) {
        grpc_slice_unref(msg);
        cli_finish(s);
        return;
    }
    s->cbs.on_message(s->ctx, GRPC_SLICE_START_PTR(msg),
                      GRPC_SLICE_LENGTH(msg));
    grpc_slice_unref(msg);
}

static void
cli_on_done(mom_peer_stream *s)
{
    s->pending--;
    if (s->pending == 0) {
        cli_finish(s);
    }
}

/* --- dispatch, start, stop --------------------------------------------------
 */

static void
peer_dispatch(mom_peer *p, mom_peer_op *o)
{
    switch (o->kind) {
    case PEER_OP_SHUTDOWN:
        break;
    case PEER_OP_SRV_NEW:
    case PEER_OP_SRV_RECV:
    case PEER_OP_SRV_SEND:
    case PEER_OP_SRV_CLOSE:
        mom_peer_srv_dispatch(p, o);
        break;
    case PEER_OP_CLI_RECV:
        cli_on_recv(o->owner, o->success);
        break;
    case PEER_OP_CLI_SEND:
        cli_on_send(o->owner, o->success);
        break;
    case PEER_OP_CLI_STATUS:
        ((mom_peer_stream *)o->owner)->over = 1;
        cli_on_done(o->owner);
        break;
    case PEER_OP_CLI_UNARY:
    case PEER_OP_CLI_START:
        cli_on_done(o->owner);
        break;
    }
}

void
mom_peer_set_int(grpc_arg *a, const char *key, int value)
{
    a->type = GRPC_ARG_INTEGER;
    a->key = (char *)key;
    a->value.integer = value;
}

static void
peer_defaults(mom_peer_options *o)
{
    if (o->max_message == 0) {
        o->max_message = 16 << 20;
    }
    if (o->max_srv_calls == 0) {
        o->max_srv_calls = 4096;
    }
    if (o->max_cli_calls == 0) {
        o->max_cli_calls = 16384;
    }
    if (o->stream_queue == 0) {
        o->stream_queue = 1 << 20;
    }
    if (o->stream_msgs == 0) {
        o->stream_msgs = 4096;
    }
    if (o->default_deadline_ms <= 0) {
        o->default_deadline_ms = 5000;
    }
    if (o->keepalive_ms <= 0) {
        o->keepalive_ms = 10000;
    }
}
static void
peer_client_args(mom_peer *p)
{
    grpc_arg *a = p->cli_arg;
    size_t n = 0;
    int max = p->o.max_message > INT32_MAX ? INT32_MAX : (int)p->o.max_message;

    mom_peer_set_int(&a[n++], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max);
    mom_peer_set_int(&a[n++], GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max);
    /* a restarted peer is found again within a second; the minimum
     * reconnect backoff is also the connect (TCP + HTTP/2 handshake)
     * timeout: too small a value fails healthy connections under load */
    mom_peer_set_int(&a[n++], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    mom_peer_set_int(&a[n++], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    mom_peer_set_int(&a[n++], GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                     PEER_CONNECT_TIMEOUT_MS);
    /* a silently dead peer breaks long streams within keepalive * 1.5 */
    mom_peer_set_int(&a[n++], GRPC_ARG_KEEPALIVE_TIME_MS, p->o.keepalive_ms);
    mom_peer_set_int(&a[n++], GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                     p->o.keepalive_ms / 2);
    mom_peer_set_int(&a[n++], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    /* cluster traffic never goes through an HTTP proxy from the env */
    mom_peer_set_int(&a[n++], GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    /* Raft and forwards must not be replayed behind our back */
    mom_peer_set_int(&a[n++], GRPC_ARG_ENABLE_RETRIES, 0);
    p->cli_args.num_args = n;
    p->cli_args.args = a;
}

static void
peer_free(mom_peer *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}

static void
peer_on_closed(uv_handle_t *h)
{
    peer_free(h->data);
}

/* Releases what start or stop set up, after the queue is drained. */
static void
peer_teardown(mom_peer *p)
{
    mom_peer_channel *c;

    if (p->server != NULL) {
        grpc_server_destroy(p->server);
        p->server = NULL;
    }
    while ((c = p->channels) != NULL) {
        p->channels = c->next;
        grpc_channel_destroy(c->ch);
        for (int i = 0; i < c->nreg; i++) {
            free(c->reg[i].path);
        }
        free(c->addr);
        free(c);
    }
    grpc_completion_queue_shutdown(p->cq);
    if (p->thread_started) {
        pthread_join(p->thread, NULL);
    } else {
        grpc_event ev;
        do {
            ev = grpc_completion_queue_next(
                p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    }
    grpc_completion_queue_destroy(p->cq);
    grpc_shutdown();
}

/* Dispatches completions on the calling (loop) thread until none is due. */
static void
peer_drain_all(mom_peer *p)
{
    mom_peer_op *o;

    while (p->outstanding > 0) {
        if (p->local_head == NULL) {
            pthread_mutex_lock(&p->mu);
            while (p->q_head == NULL) {
                p->waiting = 1;
                pthread_cond_wait(&p->cond, &p->mu);
            }
            p->waiting = 0;
            peer_take_locked(p);
            pthread_mutex_unlock(&p->mu);
        }
        o = peer_pop_local(p);
        peer_dispatch(p, o);
    }
}

static void
peer_cancel_all(mom_peer *p)
{
    if (p->server != NULL) {
        grpc_server_shutdown_and_notify(p->server, p->cq, &p->op_shutdown);
        p->outstanding++;
        grpc_server_cancel_all_calls(p->server);
    }
    for (mom_peer_stream *s = p->cli_calls; s != NULL; s = s->next) {
        grpc_call_cancel(s->call, NULL);
    }
}

mom_peer *
mom_peer_start(uv_loop_t *loop, const char *listen_addr,
               const mom_peer_handlers *h, void *ctx,
               const mom_peer_options *opts)
{
    mom_peer *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->loop = loop;
    p->ctx = ctx;
    if (h != NULL) {
        p->h = *h;
    }
    if (opts != NULL) {
        p->o = *opts;
    }
    peer_defaults(&p->o);
    peer_client_args(p);
    mom_peer_op_init(&p->op_shutdown, p, PEER_OP_SHUTDOWN);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (uv_async_init(loop, &p->async, peer_on_async) != 0) {
        peer_free(p);
        return NULL;
    }
    p->async.data = p;

    grpc_init();
    p->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&p->thread, NULL, peer_cq_thread, p) == 0) {
        p->thread_started = 1;
    }
    if (!p->thread_started ||
        (listen_addr != NULL && mom_peer_srv_listen(p, listen_addr) != 0)) {
        mom_peer_stop(p);
        return NULL;
    }
    return p;
}

int
mom_peer_port(const mom_peer *p)
{
    return p->port;
}

void
mom_peer_stop(mom_peer *p)
{
    if (p == NULL || p->stopping) {
        return;
    }
    p->stopping = 1;
    peer_cancel_all(p);
    peer_drain_all(p);
    peer_teardown(p);
    uv_close((uv_handle_t *)&p->async, peer_on_closed);
}
