/*
 * peer_server.c: the server half of momd's gRPC transport: accepting calls
 * with grpc_server_request_call (for every path, so that unknown methods get
 * UNIMPLEMENTED from us), reading the request, handing it to the
 * application, and sending replies and stream messages. Runs on the loop
 * thread only; completions arrive through peer.c's hand-off.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>

#include "peer_internal.h"

static int srv_arm(mom_peer *p);
static void srv_arm_recv(mom_peer_srv *s);

static void
srv_free(mom_peer_srv *s)
{
    mom_peer *p = s->p;

    if (s->call != NULL) {
        if (s->prev != NULL) {
            s->prev->next = s->next;
        } else {
            p->srv_calls = s->next;
        }
        if (s->next != NULL) {
            s->next->prev = s->prev;
        }
        p->n_srv--;
        grpc_call_unref(s->call);
    }
    mom_peer_msgq_clear(&s->q);
    if (s->recv_bb != NULL) {
        grpc_byte_buffer_destroy(s->recv_bb);
    }
    if (s->send_bb != NULL) {
        grpc_byte_buffer_destroy(s->send_bb);
    }
    grpc_call_details_destroy(&s->details);
    grpc_metadata_array_destroy(&s->md);
    free(s->end_detail);
    free(s);
}

static void
srv_maybe_free(mom_peer_srv *s)
{
    if (s->pending == 0) {
        srv_free(s);
    }
}

static void
srv_batch(mom_peer_srv *s, const grpc_op *ops, size_t n, mom_peer_op *o)
{
    if (mom_peer_start_batch(s->p, s->call, ops, n, o) == GRPC_CALL_OK) {
        s->pending++;
        return;
    }
    grpc_call_cancel(s->call, NULL);
    if (o == &s->op_send) {
        s->status_sent = 1; /* nothing more can be sent on this call */
    }
}

/*
 * Starts the next send batch of s unless one is in flight: the initial
 * metadata with the first batch, then one queued message per batch, and the
 * status with the last message (or alone) once the call is ending.
 */
static void
srv_pump(mom_peer_srv *s)
{
    grpc_op ops[3];
    size_t n = 0;
    grpc_slice detail;
    int with_status;

    if (s->sending || s->closed || s->status_sent ||
        (s->q.head == NULL && !s->ending)) {
        return;
    }
    if (!s->md_sent) {
        mom_peer_op_fill(&ops[n++], GRPC_OP_SEND_INITIAL_METADATA);
    }
    if (s->q.head != NULL) {
        s->send_bb = mom_peer_msgq_pop(&s->q);
        mom_peer_op_fill(&ops[n], GRPC_OP_SEND_MESSAGE);
        ops[n++].data.send_message.send_message = s->send_bb;
    }
    with_status = s->ending && s->q.head == NULL;
    if (with_status) {
        detail = grpc_slice_from_copied_string(
            s->end_detail != NULL ? s->end_detail : "");
        mom_peer_op_fill(&ops[n], GRPC_OP_SEND_STATUS_FROM_SERVER);
        ops[n].data.send_status_from_server.status = s->end_status;
        ops[n++].data.send_status_from_server.status_details = &detail;
    }
    s->sending = 1;
    s->md_sent = 1;
    s->status_sent = with_status;
    /* As a client stream's: a message with nothing behind it does not
     * wake the loop when sent (mom_peer_stream_send, _end make it eager). */
    s->op_send.lazy = !with_status && s->q.head == NULL;
    srv_batch(s, ops, n, &s->op_send);
    if (with_status) {
        grpc_slice_unref(detail);
    }
}

static void
srv_end(mom_peer_srv *s, grpc_status_code status, const char *detail)
{
    s->state = PEER_SRV_DONE;
    s->ending = 1;
    s->end_status = status;
    s->end_detail = detail != NULL ? strdup(detail) : NULL;
    srv_pump(s);
}

static void
srv_arm_close(mom_peer_srv *s)
{
    grpc_op ops[1];

    mom_peer_op_fill(&ops[0], GRPC_OP_RECV_CLOSE_ON_SERVER);
    ops[0].data.recv_close_on_server.cancelled = &s->cancelled;
    srv_batch(s, ops, 1, &s->op_close);
}

static int
srv_find_method(mom_peer *p, grpc_slice path)
{
    size_t len = GRPC_SLICE_LENGTH(path);

    for (size_t i = 0; i < p->h.nmethods; i++) {
        const char *m = p->h.methods[i].path;
        if (strlen(m) == len &&
            memcmp(m, GRPC_SLICE_START_PTR(path), len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int
srv_has_handler(mom_peer *p, int method)
{
    if (method < 0) {
        return 0;
    }
    switch (p->h.methods[method].kind) {
    case MOM_PEER_UNARY:
        return p->h.unary != NULL;
    case MOM_PEER_SERVER_STREAM:
        return p->h.stream != NULL;
    case MOM_PEER_BIDI_STREAM:
        return p->h.message != NULL;
    }
    return 0;
}

static void
srv_on_new(mom_peer *p, mom_peer_srv *s, int success)
{
    p->armed--;
    if (!success || s->call == NULL) {
        /* the server is shutting down: this request is withdrawn */
        s->call = NULL;
        srv_free(s);
        return;
    }
    s->next = p->srv_calls;
    if (s->next != NULL) {
        s->next->prev = s;
    }
    p->srv_calls = s;
    p->n_srv++;

    if (!p->stopping) {
        srv_arm(p);
    }

    srv_arm_close(s);
    s->method = srv_find_method(p, s->details.method);
    if (p->stopping) {
        srv_end(s, GRPC_STATUS_UNAVAILABLE, "server stopping");
    } else if (!srv_has_handler(p, s->method)) {
        srv_end(s, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    } else if (p->n_srv > p->o.max_srv_calls) {
        srv_end(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many calls");
    } else {
        s->state = PEER_SRV_RECEIVING;
        srv_arm_recv(s);
    }
    srv_maybe_free(s);
}

static void
srv_arm_recv(mom_peer_srv *s)
{
    grpc_op ops[1];

    mom_peer_op_fill(&ops[0], GRPC_OP_RECV_MESSAGE);
    ops[0].data.recv_message.recv_message = &s->recv_bb;
    srv_batch(s, ops, 1, &s->op_recv);
}

/* A message of a bidi stream (the first one opens it) or its end. */
static void
srv_on_bidi(mom_peer *p, mom_peer_srv *s, grpc_byte_buffer *bb)
{
    grpc_slice msg;

    if (bb == NULL) {
        /* The client half-closed: the call ends after what is queued. */
        if (s->state == PEER_SRV_APP) {
            s->state = PEER_SRV_DONE;
            if (p->h.closed != NULL) {
                p->h.closed(p->ctx, s);
            }
        }
        srv_end(s, GRPC_STATUS_OK, NULL);
        srv_maybe_free(s);
        return;
    }
    if (!mom_peer_bb_to_slice(bb, &msg)) {
        grpc_byte_buffer_destroy(bb);
        if (s->state == PEER_SRV_APP && p->h.closed != NULL) {
            s->state = PEER_SRV_DONE;
            p->h.closed(p->ctx, s);
        }
        srv_end(s, GRPC_STATUS_INTERNAL, "unreadable message");
        srv_maybe_free(s);
        return;
    }
    grpc_byte_buffer_destroy(bb);
    s->state = PEER_SRV_APP;
    s->streaming = 1;
    /* the next receive is pending: s outlives the handler */
    srv_arm_recv(s);
    p->h.message(p->ctx, s->method, GRPC_SLICE_START_PTR(msg),
                 GRPC_SLICE_LENGTH(msg), s);
    grpc_slice_unref(msg);
}

static void
srv_on_recv(mom_peer *p, mom_peer_srv *s, int success)
{
    grpc_slice req;
    grpc_byte_buffer *bb = s->recv_bb;

    s->pending--;
    s->recv_bb = NULL;
    if (!s->closed && s->method >= 0 &&
        p->h.methods[s->method].kind == MOM_PEER_BIDI_STREAM &&
        (s->state == PEER_SRV_RECEIVING || s->state == PEER_SRV_APP)) {
        srv_on_bidi(p, s, success ? bb : NULL);
        return;
    }
    if (s->closed || s->state != PEER_SRV_RECEIVING) {
        s->state = PEER_SRV_DONE;
    } else if (!success || bb == NULL) {
        srv_end(s, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
    } else if (!mom_peer_bb_to_slice(bb, &req)) {
        srv_end(s, GRPC_STATUS_INTERNAL, "unreadable request message");
    } else {
        grpc_byte_buffer_destroy(bb);
        s->state = PEER_SRV_APP;
        s->streaming = p->h.methods[s->method].kind != MOM_PEER_UNARY;
        /* the close op is pending: s outlives the handler */
        if (!s->streaming) {
            p->h.unary(p->ctx, s->method, GRPC_SLICE_START_PTR(req),
                       GRPC_SLICE_LENGTH(req), s);
        } else {
            p->h.stream(p->ctx, s->method, GRPC_SLICE_START_PTR(req),
                        GRPC_SLICE_LENGTH(req), s);
        }
        grpc_slice_unref(req);
        return;
    }
    if (bb != NULL) {
        grpc_byte_buffer_destroy(bb);
    }
    srv_maybe_free(s);
}

static void
srv_on_send(mom_peer_srv *s, int success)
{
    s->pending--;
    s->sending = 0;
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    if (success) {
        srv_pump(s);
    } else {
        mom_peer_msgq_clear(
            &s->q); /* the client is gone; the close op follows */
    }
    srv_maybe_free(s);
}

static void
srv_on_close(mom_peer *p, mom_peer_srv *s)
{
    s->pending--;
    s->closed = 1;
    mom_peer_msgq_clear(&s->q);
    if (s->state == PEER_SRV_APP) {
        s->state = PEER_SRV_DONE;
        if (p->h.closed != NULL) {
            p->h.closed(p->ctx, s);
        }
    }
    s->state = PEER_SRV_DONE;
    srv_maybe_free(s);
}

/* Asks for one more new call. */
static int
srv_arm_one(mom_peer *p)
{
    mom_peer_srv *s = calloc(1, sizeof(*s));
    grpc_call_error err;

    if (s == NULL) {
        return -1;
    }
    s->p = p;
    s->state = PEER_SRV_RECEIVING;
    s->method = -1;
    grpc_call_details_init(&s->details);
    grpc_metadata_array_init(&s->md);
    mom_peer_op_init(&s->op_new, s, PEER_OP_SRV_NEW);
    mom_peer_op_init(&s->op_recv, s, PEER_OP_SRV_RECV);
    mom_peer_op_init(&s->op_send, s, PEER_OP_SRV_SEND);
    mom_peer_op_init(&s->op_close, s, PEER_OP_SRV_CLOSE);
    err = grpc_server_request_call(p->server, &s->call, &s->details, &s->md,
                                   p->cq, p->cq, &s->op_new);
    if (err != GRPC_CALL_OK) {
        mom_peer_log("grpc_server_request_call", err);
        s->call = NULL;
        srv_free(s);
        return -1;
    }
    p->outstanding++;
    p->armed++;
    return 0;
}

/* Keeps PEER_ARMED_REQUESTS requests for new calls outstanding. */
static int
srv_arm(mom_peer *p)
{
    while (p->armed < PEER_ARMED_REQUESTS) {
        if (srv_arm_one(p) != 0) {
            return -1;
        }
    }
    return 0;
}

int
mom_peer_reply(mom_peer_srv *s, grpc_status_code status, const uint8_t *buf,
               size_t len, const char *detail)
{
    if (s->state != PEER_SRV_APP || s->streaming) {
        return -1;
    }
    if (status == GRPC_STATUS_OK &&
        (len > s->p->o.max_message ||
         mom_peer_msgq_push(&s->q, buf, len) != 0)) {
        srv_end(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "reply too large");
        return -1;
    }
    srv_end(s, status, detail);
    return 0;
}

int
mom_peer_stream_send(mom_peer_srv *s, const uint8_t *buf, size_t len)
{
    mom_peer *p = s->p;

    if (s->state != PEER_SRV_APP || !s->streaming || len > p->o.max_message ||
        s->q.count >= p->o.stream_msgs ||
        (s->q.count > 0 && s->q.bytes + len > p->o.stream_queue) ||
        mom_peer_msgq_push(&s->q, buf, len) != 0) {
        return -1;
    }
    if (s->sending) {
        mom_peer_op_eager(p, &s->op_send); /* this message waits for it */
    }
    srv_pump(s);
    return 0;
}

size_t
mom_peer_stream_pending(const mom_peer_srv *s)
{
    return s->q.count;
}

void
mom_peer_stream_end(mom_peer_srv *s, grpc_status_code status,
                    const char *detail)
{
    if (s->state == PEER_SRV_APP) {
        if (s->sending) {
            mom_peer_op_eager(s->p, &s->op_send); /* the status waits */
        }
        srv_end(s, status, detail);
    }
}

int
mom_peer_srv_listen(mom_peer *p, const char *listen_addr)
{
    grpc_arg a[PEER_MAX_ARGS];
    grpc_channel_args args = {0, a};
    grpc_server_credentials *creds;
    int max = p->o.max_message > INT32_MAX ? INT32_MAX : (int)p->o.max_message;

    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                     max);
    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                     max);
    /* accept the keepalive pings of our clients, even on idle streams */
    mom_peer_set_int(&a[args.num_args++],
                     GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                     p->o.keepalive_ms / 2);
    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    /* and find dead clients of long streams */
    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_KEEPALIVE_TIME_MS,
                     p->o.keepalive_ms);
    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                     p->o.keepalive_ms / 2);
    /* a second momd on the same port must fail, not share it silently */
    mom_peer_set_int(&a[args.num_args++], GRPC_ARG_ALLOW_REUSEPORT, 0);

    p->server = grpc_server_create(&args, NULL);
    grpc_server_register_completion_queue(p->server, p->cq, NULL);
    creds = grpc_insecure_server_credentials_create();
    p->port = grpc_server_add_http2_port(p->server, listen_addr, creds);
    grpc_server_credentials_release(creds);
    if (p->port == 0) {
        fprintf(stderr, "momd peer: cannot listen on %s\n", listen_addr);
        grpc_server_destroy(p->server);
        p->server = NULL;
        return -1;
    }
    grpc_server_start(p->server);
    return srv_arm(p);
}

void
mom_peer_srv_dispatch(mom_peer *p, mom_peer_op *o)
{
    switch (o->kind) {
    case PEER_OP_SRV_NEW:
        srv_on_new(p, o->owner, o->success);
        break;
    case PEER_OP_SRV_RECV:
        srv_on_recv(p, o->owner, o->success);
        break;
    case PEER_OP_SRV_SEND:
        srv_on_send(o->owner, o->success);
        break;
    case PEER_OP_SRV_CLOSE:
        srv_on_close(p, o->owner);
        break;
    default:
        break;
    }
}
