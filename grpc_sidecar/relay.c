/*
 * Topic streams across nodes (relay.h).
 *
 * Client side (a node that does not replicate the topic): the subscriber's
 * request goes to a replica (the partition's leader when known, else the
 * replicas in turn) as a Subscribe stream. Until the replica's first answer
 * the request is still an op of the router: a failed attempt is retried
 * with the next replica until the routing deadline. After a 200 the
 * connection to nginx is in stream mode and every frame of the replica is
 * written to it unchanged; a subscriber that falls behind is ended like a
 * local one ("subscriber too slow"), and when the replica goes away the
 * stream is closed (the client resumes with Last-Event-ID). A stream the
 * module mutes (OP_MUTE) gets no more message events from here on.
 *
 * Server side (a replica): the Subscribe request is sent over a fresh
 * connection to this momd's own socket, and each frame read back is sent
 * on the gRPC stream. A stream whose queue is full (a consumer that does
 * not keep up) is ended; so is the connection when the peer goes away.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "json.h"
#include "log.h"
#include "relay.h"
#include "sse.h"

#define MOM_RELAY_RETRY_MS 50

/* --- client side --- */

typedef struct {
    mom_ops_t *ops;
    mom_op_t *op;     /* until the replica's first answer */
    mom_conn_t *conn; /* after a 200: the stream to nginx (referenced) */
    mom_peer_stream *up;
    bool muted; /* OP_MUTE read: message events stop here */
} mom_relay_t;

static void
mom_relay_free(mom_relay_t *r)
{
    if (r->up != NULL) {
        mom_peer_stream_cancel(r->up);
    }
    if (r->conn != NULL) {
        mom_conn_unref(r->conn);
    }
    free(r);
}

/* nginx's side closed (or we closed it): nothing more to relay. */
static void
mom_relay_conn_closed(void *data, mom_conn_t *conn)
{
    mom_relay_free(data);
}

/* Writes f (if any) to nginx, then closes the stream when `end`. A write
 * that fails closes the connection, which frees r: r is not used after
 * the write. */
static void
mom_relay_write(mom_relay_t *r, mom_frame_t *f, bool end)
{
    mom_conn_t *conn = r->conn;

    mom_conn_ref(conn);
    if (f != NULL) {
        mom_conn_write(conn, f);
    }
    if (end && !mom_conn_closed(conn)) {
        mom_conn_close(conn, true); /* frees r through on_close */
    }
    mom_conn_unref(conn);
}

static void
mom_relay_end_slow(mom_relay_t *r)
{
    Mom__Response resp = MOM__RESPONSE__INIT;
    mom_frame_t *f;
    mom_buf_t b;

    mom_buf_init(&b);
    mom_sse_format_end(&b, "subscriber too slow");
    resp.kind = MOM__KIND__KIND_END;
    resp.body.data = (uint8_t *)b.data;
    resp.body.len = b.len;
    f = b.failed ? NULL
                 : mom_frame_encode(&resp.base, r->ops->conf->max_frame_size);
    mom_buf_free(&b);
    mom_relay_write(r, f, true);
    mom_frame_unref(f);
}

/*
 * OP_MUTE (the module feeds this subscriber from its shared stream of the
 * topic now): the replica cannot be told, Subscribe being server-streaming,
 * so its message events stop here; heartbeats and the final event still
 * go through, as on a local stream.
 */
static void
mom_relay_request(void *data, mom_conn_t *conn, Mom__Request *req)
{
    mom_relay_t *r = data;

    if (req->op == MOM__OP__OP_MUTE) {
        r->muted = true;
    } else {
        mom_log_warn("request %d on a relayed stream ignored", req->op);
    }
    mom__request__free_unpacked(req, NULL);
}

/* A message event (an `id:` line first), not a heartbeat or `retry:`. */
static bool
mom_relay_is_message(const Mom__Response *resp)
{
    return resp->kind == MOM__KIND__KIND_EVENT && resp->body.len >= 3 &&
           memcmp(resp->body.data, "id:", 3) == 0;
}

/* The replica's first answer: the status of the stream. */
static void
mom_relay_replied(mom_relay_t *r, const Mom__Response *resp)
{
    mom_op_t *op = r->op;
    mom_conn_t *conn = op->conn;

    r->op = NULL;
    if (resp->status != 200 || mom_conn_closed(conn)) {
        mom_op_finish(op, resp->status, resp->body.data, resp->body.len, NULL);
        mom_relay_free(r);
        return;
    }
    mom_conn_ref(conn);
    r->conn = conn;
    mom_conn_stream(conn, mom_relay_conn_closed, r);
    mom_conn_stream_requests(conn, mom_relay_request);
    mom_op_finish(op, 200, "", 0, NULL);
}

static void
mom_relay_message(void *ctx, const uint8_t *buf, size_t len)
{
    mom_relay_t *r = ctx;
    Mom__Response *resp = mom__response__unpack(NULL, len, buf);
    mom_frame_t *f;

    if (resp == NULL) {
        mom_log_warn("undecodable frame on a relayed stream");
        return;
    }
    if (r->op != NULL) {
        if (resp->kind == MOM__KIND__KIND_REPLY) {
            mom_relay_replied(r, resp);
        }
        mom__response__free_unpacked(resp, NULL);
        return;
    }
    if (r->conn == NULL || mom_conn_closed(r->conn) ||
        (r->muted && mom_relay_is_message(resp))) {
        mom__response__free_unpacked(resp, NULL);
        return;
    }
    if (resp->kind != MOM__KIND__KIND_END &&
        mom_conn_queued(r->conn) > r->ops->conf->sse_buffer) {
        mom__response__free_unpacked(resp, NULL);
        mom_relay_end_slow(r);
        return;
    }
    f = mom_frame_encode(&resp->base, r->ops->conf->max_frame_size);
    mom_relay_write(r, f, resp->kind == MOM__KIND__KIND_END);
    mom_frame_unref(f);
    mom__response__free_unpacked(resp, NULL);
}

static void
mom_relay_ended(void *ctx, grpc_status_code status, const char *detail)
{
    mom_relay_t *r = ctx;
    mom_op_t *op = r->op;

    r->up = NULL; /* its last callback */
    if (op != NULL) {
        /* No answer from that replica: try the next one. */
        mom_log_debug("subscribe relay to node %llu failed: %d %s",
                      (unsigned long long)op->target, (int)status, detail);
        r->op = NULL;
        mom_relay_free(r);
        mom_route_later(op, MOM_RELAY_RETRY_MS);
        return;
    }
    if (r->conn != NULL && !mom_conn_closed(r->conn)) {
        mom_conn_close(r->conn, true); /* frees r through on_close */
        return;
    }
    if (r->conn == NULL) {
        mom_relay_free(r);
    }
}

static const mom_peer_stream_cbs mom_relay_cbs = {
    .on_message = mom_relay_message,
    .on_end = mom_relay_ended,
};

void
mom_relay_start(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    Mom__Request up = *op->req;
    const uint32_t *replicas;
    uint64_t target = 0;
    mom_relay_t *r;
    size_t n;

    replicas = mom_placement_replicas(ops->pl, op->partition, &n);
    if (ops->leader_cache != NULL && op->attempts == 0) {
        target = ops->leader_cache[op->partition];
    }
    if ((target == 0 ||
         !mom_placement_is_replica(ops->pl, op->partition, (uint32_t)target)) &&
        n > 0) {
        target = replicas[op->attempts % n];
    }
    op->attempts++;
    op->target = target;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    r->ops = ops;
    r->op = op;
    up.local_only = true; /* served there, never relayed again */
    r->up = ops->cluster != NULL
                ? mom_cluster_subscribe(ops->cluster, (uint32_t)target, &up,
                                        &mom_relay_cbs, r)
                : NULL;
    if (r->up == NULL) {
        free(r);
        mom_route_later(op, MOM_RELAY_RETRY_MS);
    }
}

/* --- server side (a replica) --- */

typedef struct {
    mom_ops_t *ops;
    mom_stream_served_t *s;
    mom_peer_srv *call; /* NULL once ended or gone */
    uv_pipe_t pipe;
    uv_connect_t connect;
    uv_write_t write;
    mom_frame_t *request;
    mom_frame_decoder_t dec;
    char buf[16384];
} mom_relay_srv_t;

static void
mom_relay_srv_closed(uv_handle_t *h)
{
    mom_relay_srv_t *r = h->data;

    mom_frame_unref(r->request);
    mom_frame_decoder_free(&r->dec);
    free(r);
}

/* Ends the gRPC stream (if still ours) and closes the local connection. */
static void
mom_relay_srv_finish(mom_relay_srv_t *r, grpc_status_code status,
                     const char *detail)
{
    if (r->call != NULL) {
        mom_peer_stream_end(r->call, status, detail);
        mom_cluster_served_end(r->s);
        r->call = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&r->pipe)) {
        uv_close((uv_handle_t *)&r->pipe, mom_relay_srv_closed);
    }
}

void
mom_relay_serve_closed(void *ctx)
{
    mom_relay_srv_t *r = ctx;

    r->call = NULL; /* the handle is dead: no end */
    mom_relay_srv_finish(r, GRPC_STATUS_OK, NULL);
}

static void
mom_relay_srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mom_relay_srv_t *r = h->data;

    *buf = uv_buf_init(r->buf, sizeof(r->buf));
}

static void
mom_relay_srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mom_relay_srv_t *r = s->data;
    const uint8_t *payload;
    size_t len;
    int rc;

    if (nread < 0) {
        /* The local stream ended (after its final frame) or failed. */
        mom_relay_srv_finish(r, GRPC_STATUS_OK, NULL);
        return;
    }
    if (nread == 0 || r->call == NULL) {
        return;
    }
    if (mom_frame_decoder_feed(&r->dec, buf->base, (size_t)nread) != 0) {
        mom_relay_srv_finish(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "memory");
        return;
    }
    while ((rc = mom_frame_decoder_next(&r->dec, &payload, &len)) == 1) {
        if (mom_peer_stream_send(r->call, payload, len) != 0) {
            mom_relay_srv_finish(r, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 "subscriber too slow");
            return;
        }
    }
    if (rc < 0) {
        mom_relay_srv_finish(r, GRPC_STATUS_INTERNAL, "bad frame");
    }
}

static void
mom_relay_srv_written(uv_write_t *w, int status)
{
    mom_relay_srv_t *r = w->data;

    if (status < 0 && !uv_is_closing((uv_handle_t *)&r->pipe)) {
        mom_relay_srv_finish(r, GRPC_STATUS_UNAVAILABLE, "local write");
    }
}

static void
mom_relay_srv_connected(uv_connect_t *c, int status)
{
    mom_relay_srv_t *r = c->data;
    uv_buf_t b;

    if (uv_is_closing((uv_handle_t *)&r->pipe)) {
        return;
    }
    if (status < 0) {
        mom_relay_srv_finish(r, GRPC_STATUS_UNAVAILABLE, "local socket");
        return;
    }
    b = uv_buf_init((char *)r->request->data, (unsigned)r->request->len);
    r->write.data = r;
    if (uv_write(&r->write, (uv_stream_t *)&r->pipe, &b, 1,
                 mom_relay_srv_written) != 0 ||
        uv_read_start((uv_stream_t *)&r->pipe, mom_relay_srv_alloc,
                      mom_relay_srv_read) != 0) {
        mom_relay_srv_finish(r, GRPC_STATUS_UNAVAILABLE, "local socket");
    }
}

void *
mom_relay_serve(mom_ops_t *ops, mom_stream_served_t *s, mom_peer_srv *call,
                const uint8_t *req, size_t len)
{
    Mom__Request *r0 = mom__request__unpack(NULL, len, req);
    mom_relay_srv_t *r;

    if (r0 == NULL || r0->op != MOM__OP__OP_SUBSCRIBE) {
        if (r0 != NULL) {
            mom__request__free_unpacked(r0, NULL);
        }
        mom_peer_stream_end(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "not a subscription");
        return NULL;
    }
    r0->local_only = true;
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->request = mom_frame_encode(&r0->base, ops->conf->max_frame_size);
    }
    mom__request__free_unpacked(r0, NULL);
    if (r == NULL || r->request == NULL) {
        free(r);
        mom_peer_stream_end(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "memory");
        return NULL;
    }
    r->ops = ops;
    r->s = s;
    r->call = call;
    mom_frame_decoder_init(&r->dec, ops->conf->max_frame_size);
    uv_pipe_init(ops->loop, &r->pipe, 0);
    r->pipe.data = r;
    r->connect.data = r;
    uv_pipe_connect(&r->connect, &r->pipe, ops->conf->socket_path,
                    mom_relay_srv_connected);
    return r;
}
