/*
 * The cluster side of momd (cluster.h): the peer service's handlers, the
 * Raft transport, forwarding calls and the status file.
 *
 * Raft transport: the driver's messages are queued per destination during
 * a loop iteration and, when the commit path flushes, written as one
 * RaftBatch on a long-lived RaftStream (a bidi stream per destination; the
 * receiver acknowledges with a RaftAck the batches that ask for one, about
 * one per 500 ms: the others set no_ack). A stream
 * delivers in order, which the driver requires, without waiting for the
 * answer to a batch: the next batch leaves as soon as the previous one is
 * on the wire. While one batch is being sent and another waits for it,
 * the next one grows here (under load one message per send, not one per
 * loop iteration). A stream
 * whose requested RaftAck is a second late (a stopped node), or whose
 * queue is full, loses what it holds (Raft resends from its own state);
 * one that breaks is opened again by the next flush. A member counts as
 * up while Raft messages arrive from it.
 *
 * One connection per member pair: of two members, the one with the larger
 * id writes its batches back on the other's RaftStream to it, inside
 * RaftAcks, once that stream said it reads them (RaftBatch.reads_replies),
 * so that HTTP/2's flow-control updates ride with the messages. Batches
 * also carry forwarded requests and their answers (forward.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "forward.h"
#include "log.h"
#include "peer.pb-c.h"
#include "relay.h"

/* A RaftStream whose requested acknowledgement is this late (a stopped
 * node) is cancelled with what it holds: Raft resends from its own state,
 * instead of a stale backlog arriving when the node runs again. */
#define MOM_CLUSTER_RAFT_DEADLINE_MS 1000
/* A RaftAck is asked for at most this often (the other batches set
 * no_ack): enough to notice a stalled stream, and under load it spares
 * two gRPC operations on each side per batch. */
#define MOM_CLUSTER_RAFT_ACK_EVERY_MS 500
/* A member silent for this long (no Raft message) counts as down: the
 * leaders send heartbeats every 100 ms. */
#define MOM_CLUSTER_SILENT_MS 1000
/* Bytes queued for one destination before messages are dropped. */
#define MOM_CLUSTER_RAFT_QUEUE (8 * 1024 * 1024)
/* Role changes are written to the status file at most this often. */
#define MOM_CLUSTER_STATUS_MS 100
/* Leadership goes back to a partition's preferred leader (the first of its
 * replicas on the ring) once that node has answered Raft calls for a while:
 * leaders then spread over the members as evenly as the ring does. */
#define MOM_CLUSTER_BALANCE_MS 1000
#define MOM_CLUSTER_BALANCE_UP_MS 3000
#define MOM_CLUSTER_BALANCE_PER_ROUND 8

typedef struct {
    uint32_t group;
    size_t len;
    uint8_t *data;
} mom_raft_out_t;

typedef struct {
    mom_cluster_t *cl;
    uint32_t id;
    mom_peer_channel *ch;
    mom_raft_out_t *q;
    size_t n, cap, bytes;
    mom_peer_stream *raft; /* the RaftStream, NULL until needed */
    uint64_t ack_asked;    /* when the last RaftAck was asked for */
    uint64_t stall_since;  /* the RaftAck asked for is due since; 0: none */
    uint64_t dropped;
    uint64_t up_since;   /* first message heard after silence; 0: down */
    uint64_t last_heard; /* last Raft message from this member */
    mom_peer_srv *srv;   /* its RaftStream to us, once a batch came */
    bool srv_replies;    /* it reads our batches in srv's RaftAcks */
    bool carries;        /* our stream's RaftAck says it serves requests */
    bool probe;          /* open the stream even with nothing to send */
} mom_dest_t;

static uint32_t mom_cluster_batch_in(mom_cluster_t *cl, Mom__RaftBatch *batch,
                                     mom_dest_t **from);

/* A Subscribe being served (relay.c). */
struct mom_stream_served_s {
    mom_stream_served_t *prev, *next;
    mom_cluster_t *cl;
    mom_peer_srv *call;
    void *ctx; /* the relay */
};

struct mom_cluster_s {
    uv_loop_t *loop;
    const mom_conf_t *conf;
    const mom_placement_t *pl;
    mom_commit_t *commit;
    mom_ops_t *ops;
    mom_peer *peer;
    mom_dest_t *dests; /* one per member, self included (unused) */
    size_t n_dests;
    mom_forward_t *fw;
    mom_stream_served_t *served;
    bool *leads;
    uint64_t *lead_since;
    uv_timer_t status_timer;
    uv_timer_t balance_timer; /* balancing, then the hand-off at a stop */
    uint64_t handoff_until;
    void (*handoff_done)(void *data);
    void *handoff_data;
    bool status_dirty;
    char *status_path;
    int open_handles;
    bool stopped;
};

/* --- Raft transport --- */

static mom_dest_t *
mom_cluster_dest(mom_cluster_t *cl, uint64_t id)
{
    for (size_t i = 0; i < cl->n_dests; i++) {
        if (cl->dests[i].id == id) {
            return &cl->dests[i];
        }
    }
    return NULL;
}

static void
mom_cluster_raft_queue(void *ctx, uint32_t group, uint64_t to,
                       const uint8_t *buf, size_t len)
{
    mom_cluster_t *cl = ctx;
    mom_dest_t *d = mom_cluster_dest(cl, to);
    mom_raft_out_t *q;

    if (d == NULL || d->ch == NULL || cl->stopped) {
        return;
    }
    /* A message larger than the bound (a snapshot) still goes, alone. */
    if (d->n > 0 && d->bytes + len > MOM_CLUSTER_RAFT_QUEUE) {
        d->dropped++;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;

        q = realloc(d->q, cap * sizeof(*q));
        if (q == NULL) {
            d->dropped++;
            return;
        }
        d->q = q;
        d->cap = cap;
    }
    q = &d->q[d->n];
    q->data = malloc(len > 0 ? len : 1);
    if (q->data == NULL) {
        d->dropped++;
        return;
    }
    memcpy(q->data, buf, len);
    q->group = group;
    q->len = len;
    d->n++;
    d->bytes += len;
}

static void
mom_cluster_raft_ended(void *ctx, grpc_status_code status, const char *detail)
{
    mom_dest_t *d = ctx;

    mom_log_debug("raft stream to node %u: %d %s", d->id, (int)status, detail);
    d->raft = NULL;
    d->up_since = 0;
    d->carries = false;
    mom_forward_lost(d->cl->fw, d->id);
}

/* The receiver acknowledges the batches that ask for it, in order (and
 * every batch, if it predates no_ack): any RaftAck shows it reads. */
static void
mom_cluster_raft_reply(void *ctx, const uint8_t *buf, size_t len)
{
    mom_dest_t *d = ctx;
    Mom__RaftAck *ack = mom__raft_ack__unpack(NULL, len, buf);

    mom_dest_t *from;

    if (ack != NULL && ack->batch != NULL) {
        /* The member's own batch (not an acknowledgement). */
        (void)mom_cluster_batch_in(d->cl, ack->batch, &from);
    } else if (ack != NULL) {
        d->stall_since = 0;
        d->carries = ack->carries;
    }
    if (ack != NULL) {
        mom__raft_ack__free_unpacked(ack, NULL);
    }
}

/* Cancels the stream of a destination that stopped taking its batches. */
static void
mom_cluster_raft_check(mom_dest_t *d)
{
    uint64_t now = uv_now(d->cl->loop);

    if (d->raft == NULL || d->stall_since == 0 ||
        now - d->stall_since < MOM_CLUSTER_RAFT_DEADLINE_MS) {
        return;
    }
    mom_log_debug("raft stream to node %u: no acknowledgement for %llu ms",
                  d->id, (unsigned long long)(now - d->stall_since));
    mom_peer_stream_cancel(d->raft); /* no callback after this */
    d->raft = NULL;
    d->up_since = 0;
    d->carries = false;
    mom_forward_lost(d->cl->fw, d->id);
}

static const mom_peer_stream_cbs mom_cluster_raft_cbs = {
    .on_message = mom_cluster_raft_reply,
    .on_end = mom_cluster_raft_ended,
};

/* A member we hear Raft messages from is up. */
static void
mom_cluster_heard(mom_cluster_t *cl, uint64_t from)
{
    mom_dest_t *d = mom_cluster_dest(cl, from);
    uint64_t now = uv_now(cl->loop);

    if (d == NULL) {
        return;
    }
    if (d->up_since == 0 || now - d->last_heard > MOM_CLUSTER_SILENT_MS) {
        d->up_since = now;
    }
    d->last_heard = now;
}

static void
mom_cluster_raft_clear(mom_dest_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->q[i].data);
    }
    d->n = 0;
    d->bytes = 0;
}

/* Our batches to d go back on its RaftStream to us when it reads them
 * there and its id is the smaller: each member pair then talks over one
 * HTTP/2 connection (the flow-control updates ride with the messages). */
static bool
mom_cluster_via_srv(const mom_dest_t *d)
{
    return d->srv != NULL && d->srv_replies &&
           mom_placement_self(d->cl->pl) > d->id;
}

static void
mom_cluster_raft_send(mom_dest_t *d)
{
    mom_cluster_t *cl = d->cl;
    Mom__RaftBatch batch = MOM__RAFT_BATCH__INIT;
    Mom__RaftAck reply = MOM__RAFT_ACK__INIT;
    Mom__RaftMessage *msgs, **ptrs;
    uint64_t now = uv_now(cl->loop);
    bool via_srv = mom_cluster_via_srv(d);
    uint8_t *buf;
    size_t len;
    bool written;

    if ((d->n == 0 && !d->probe && !mom_forward_queued(cl->fw, d->id)) ||
        cl->stopped) {
        return;
    }
    if (via_srv ? mom_peer_stream_pending(d->srv) > 0
                : d->raft != NULL && mom_peer_stream_unsent(d->raft) > 1) {
        /* One batch on its way and one waiting for it (it leaves as soon
         * as the loop sees the first one sent, even from inside a flush):
         * this one grows meanwhile. */
        return;
    }
    msgs = calloc(d->n + 1, sizeof(*msgs));
    ptrs = calloc(d->n + 1, sizeof(*ptrs));
    if (msgs == NULL || ptrs == NULL ||
        mom_forward_fill(cl->fw, d->id, &batch) != 0) {
        free(msgs);
        free(ptrs);
        mom_cluster_raft_clear(d);
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        mom__raft_message__init(&msgs[i]);
        msgs[i].group = d->q[i].group;
        msgs[i].from = mom_placement_self(cl->pl);
        msgs[i].to = d->id;
        msgs[i].data.data = d->q[i].data;
        msgs[i].data.len = d->q[i].len;
        ptrs[i] = &msgs[i];
    }
    if (d->raft == NULL && !via_srv) {
        d->raft = mom_peer_bidi_call(d->ch, MOM_PEER_PATH_RAFT_STREAM, 0,
                                     &mom_cluster_raft_cbs, d);
        d->ack_asked = 0;
        d->stall_since = 0;
    }
    d->probe = false;
    batch.from_node = mom_placement_self(cl->pl);
    batch.to_node = d->id;
    batch.n_messages = d->n;
    batch.messages = ptrs;
    batch.reads_replies = true;
    /* Ask for an ack when none is due and the last one is old enough, or
     * when this batch must wait behind another: a stream that stops
     * sending then always has an ack due, and is cancelled. */
    batch.no_ack = d->stall_since != 0 ||
                   (d->ack_asked != 0 &&
                    now - d->ack_asked < MOM_CLUSTER_RAFT_ACK_EVERY_MS &&
                    (d->raft == NULL || mom_peer_stream_unsent(d->raft) == 0));
    if (via_srv) {
        batch.no_ack = true;
        reply.carries = true;
        reply.batch = &batch;
        len = mom__raft_ack__get_packed_size(&reply);
    } else {
        len = mom__raft_batch__get_packed_size(&batch);
    }
    buf = malloc(len > 0 ? len : 1);
    if (buf != NULL && via_srv) {
        mom__raft_ack__pack(&reply, buf);
    } else if (buf != NULL) {
        mom__raft_batch__pack(&batch, buf);
    }
    free(msgs);
    free(ptrs);
    mom_cluster_raft_clear(d);
    if (via_srv) {
        written = buf != NULL && mom_peer_stream_send(d->srv, buf, len) == 0;
    } else {
        written = buf != NULL && d->raft != NULL &&
                  mom_peer_stream_write(d->raft, buf, len) == 0;
    }
    mom_forward_filled(cl->fw, d->id, written);
    if (!written) {
        d->dropped++; /* not reading, or stopping: Raft sends again */
    } else if (!via_srv && !batch.no_ack) {
        d->ack_asked = now;
        d->stall_since = now;
    }
    if (buf != NULL) {
        memset(buf, 0, len); /* a forwarded request may hold a password */
        free(buf);
    }
}

static void
mom_cluster_raft_flush(void *ctx)
{
    mom_cluster_t *cl = ctx;

    for (size_t i = 0; i < cl->n_dests; i++) {
        mom_cluster_raft_check(&cl->dests[i]);
        mom_cluster_raft_send(&cl->dests[i]);
    }
}

/* Hands a RaftBatch's messages to their groups (how many were taken),
 * and what it carries to forward.c; the batch stays the caller's. Its
 * sender, when a member: *from. */
static uint32_t
mom_cluster_batch_in(mom_cluster_t *cl, Mom__RaftBatch *batch,
                     mom_dest_t **from)
{
    uint32_t self = mom_placement_self(cl->pl), accepted = 0;
    mom_dest_t *d;

    *from = NULL;
    if (batch->to_node != self) {
        return 0;
    }
    mom_cluster_heard(cl, batch->from_node);
    d = batch->from_node != self ? mom_cluster_dest(cl, batch->from_node)
                                 : NULL;
    if (d != NULL) {
        *from = d;
        mom_forward_answered(cl->fw, d->id, batch->responses,
                             batch->n_responses);
        mom_forward_serve_carried(cl->fw, d->id, batch->requests,
                                  batch->n_requests);
        /* The buffers may hold a password. */
        for (size_t i = 0; i < batch->n_requests; i++) {
            memset(batch->requests[i]->data.data, 0,
                   batch->requests[i]->data.len);
        }
    }
    for (size_t i = 0; i < batch->n_messages; i++) {
        Mom__RaftMessage *m = batch->messages[i];

        if (m->from != batch->from_node ||
            !mom_commit_hosts(cl->commit, m->group)) {
            continue;
        }
        mom_commit_receive(cl->commit, m->group, m->from, m->data.data,
                           m->data.len);
        accepted++;
    }
    return accepted;
}

/* mom_cluster_batch_in for a packed RaftBatch (*ok false: undecodable);
 * *replies: the sender reads our batches in its stream's RaftAcks. */
static uint32_t
mom_cluster_raft_deliver(mom_cluster_t *cl, const uint8_t *req, size_t len,
                         bool *ok, bool *no_ack, bool *replies,
                         mom_dest_t **from)
{
    Mom__RaftBatch *batch = mom__raft_batch__unpack(NULL, len, req);
    uint32_t accepted = 0;

    *ok = batch != NULL;
    *no_ack = *replies = false;
    *from = NULL;
    if (batch != NULL) {
        *no_ack = batch->no_ack;
        *replies = batch->reads_replies;
        accepted = mom_cluster_batch_in(cl, batch, from);
        mom__raft_batch__free_unpacked(batch, NULL);
    }
    return accepted;
}

/* The unary Raft method (a member that does not stream). */
static void
mom_cluster_raft_received(mom_cluster_t *cl, const uint8_t *req, size_t len,
                          mom_peer_srv *call)
{
    Mom__RaftAck ack = MOM__RAFT_ACK__INIT;
    mom_dest_t *from;
    uint8_t out[16];
    bool ok, no_ack, replies;

    /* A unary call is always answered, whatever no_ack says. */
    ack.accepted =
        mom_cluster_raft_deliver(cl, req, len, &ok, &no_ack, &replies, &from);
    ack.carries = true;
    if (!ok) {
        mom_peer_reply(call, GRPC_STATUS_INVALID_ARGUMENT, NULL, 0,
                       "undecodable RaftBatch");
        return;
    }
    len = mom__raft_ack__pack(&ack, out);
    mom_peer_reply(call, GRPC_STATUS_OK, out, len, NULL);
}

/* A member's RaftStream to us ended: the answers to our requests that
 * were on it are lost. */
static bool
mom_cluster_srv_gone(mom_cluster_t *cl, mom_peer_srv *call)
{
    for (size_t i = 0; i < cl->n_dests; i++) {
        if (cl->dests[i].srv == call) {
            cl->dests[i].srv = NULL;
            cl->dests[i].srv_replies = false;
            cl->dests[i].carries = false;
            mom_forward_lost(cl->fw, cl->dests[i].id);
            return true;
        }
    }
    return false;
}

/* A RaftBatch on a RaftStream. */
static void
mom_cluster_message(void *ctx, int method, const uint8_t *msg, size_t len,
                    mom_peer_srv *call)
{
    mom_cluster_t *cl = ctx;
    Mom__RaftAck ack = MOM__RAFT_ACK__INIT;
    mom_dest_t *from;
    uint8_t out[16];
    bool ok, no_ack, replies;

    if (method != MOM_PEER_RAFT_STREAM) {
        mom_peer_stream_end(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    ack.accepted =
        mom_cluster_raft_deliver(cl, msg, len, &ok, &no_ack, &replies, &from);
    ack.carries = true;
    if (from != NULL) {
        from->srv = call; /* the answers to our requests come here */
        from->srv_replies = replies;
        from->carries = from->carries || replies;
    }
    if (!ok) {
        mom_cluster_srv_gone(cl, call);
        mom_peer_stream_end(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "undecodable RaftBatch");
        return;
    }
    if (no_ack) {
        return;
    }
    if (mom_peer_stream_send(call, out, mom__raft_ack__pack(&ack, out)) != 0) {
        /* The sender does not read its acknowledgements. */
        mom_cluster_srv_gone(cl, call);
        mom_peer_stream_end(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "acknowledgements not read");
    }
}

/* --- status file --- */

static void
mom_cluster_status_write(mom_cluster_t *cl)
{
    uint32_t n = mom_placement_partitions(cl->pl);
    char tmp[4096];
    FILE *f;

    cl->status_dirty = false;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", cl->status_path) >=
        (int)sizeof(tmp)) {
        return;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        mom_log_warn("%s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "node %" PRIu32 "\nleads", mom_placement_self(cl->pl));
    for (uint32_t p = 0; p < n; p++) {
        if (cl->leads[p]) {
            fprintf(f, " %" PRIu32, p);
        }
    }
    fprintf(f, "\n");
    if (fclose(f) != 0 || rename(tmp, cl->status_path) != 0) {
        mom_log_warn("%s: %s", cl->status_path, strerror(errno));
        unlink(tmp);
    }
}

static void
mom_cluster_status_due(uv_timer_t *t)
{
    mom_cluster_status_write(t->data);
}

static void
mom_cluster_role(void *ctx, uint32_t group, bool is_leader, uint64_t leader)
{
    mom_cluster_t *cl = ctx;

    if (leader != 0 && cl->ops->leader_cache != NULL && leader <= UINT32_MAX) {
        cl->ops->leader_cache[group] = (uint32_t)leader;
    }
    if (cl->leads[group] == is_leader) {
        return;
    }
    cl->leads[group] = is_leader;
    cl->lead_since[group] = is_leader ? uv_now(cl->loop) : 0;
    if (!cl->status_dirty && !cl->stopped) {
        cl->status_dirty = true;
        uv_timer_start(&cl->status_timer, mom_cluster_status_due,
                       MOM_CLUSTER_STATUS_MS, 0);
    }
}

/* Moves some leaderships to their partitions' preferred leaders. */
static void
mom_cluster_balance(uv_timer_t *t)
{
    mom_cluster_t *cl = t->data;
    uint32_t self = mom_placement_self(cl->pl);
    uint64_t now = uv_now(cl->loop);
    const uint32_t *replicas;
    unsigned moved = 0;
    mom_dest_t *d;
    size_t n;

    for (uint32_t p = 0; p < mom_placement_partitions(cl->pl) &&
                         moved < MOM_CLUSTER_BALANCE_PER_ROUND;
         p++) {
        if (!cl->leads[p] ||
            now - cl->lead_since[p] < MOM_CLUSTER_BALANCE_UP_MS) {
            continue;
        }
        replicas = mom_placement_replicas(cl->pl, p, &n);
        if (n == 0 || replicas[0] == self) {
            continue;
        }
        d = mom_cluster_dest(cl, replicas[0]);
        if (d == NULL || d->up_since == 0 ||
            now - d->last_heard > MOM_CLUSTER_SILENT_MS ||
            now - d->up_since < MOM_CLUSTER_BALANCE_UP_MS) {
            continue;
        }
        if (mom_commit_transfer(cl->commit, p, replicas[0]) == 0) {
            mom_log_debug("partition %u: leadership to node %u", p,
                          replicas[0]);
            cl->lead_since[p] = now; /* not again before it settles */
            moved++;
        }
    }
}

/* --- hand-off before a stop --- */

/* Leaderships are handed off one round at a time; libraft gives a transfer
 * up after an election timeout, so rounds repeat until none is left. */
#define MOM_CLUSTER_HANDOFF_POLL_MS 50
#define MOM_CLUSTER_HANDOFF_RETRY_MS 300

static void
mom_cluster_handoff_poll(uv_timer_t *t)
{
    mom_cluster_t *cl = t->data;
    uint64_t now = uv_now(cl->loop);
    void (*done)(void *) = cl->handoff_done;
    unsigned led = 0;

    for (uint32_t p = 0; p < mom_placement_partitions(cl->pl); p++) {
        if (!cl->leads[p]) {
            continue;
        }
        led++;
        if (now - cl->lead_since[p] >= MOM_CLUSTER_HANDOFF_RETRY_MS &&
            mom_commit_transfer(cl->commit, p, 0) == 0) {
            cl->lead_since[p] = now;
        }
    }
    if (led > 0 && now < cl->handoff_until) {
        return;
    }
    if (led > 0) {
        mom_log_warn("stopping while leading %u partition(s)", led);
    }
    uv_timer_stop(t);
    cl->handoff_done = NULL;
    done(cl->handoff_data);
}

void
mom_cluster_handoff(mom_cluster_t *cl, unsigned timeout_ms,
                    void (*done)(void *data), void *data)
{
    uint64_t now = uv_now(cl->loop);

    cl->handoff_until = now + timeout_ms;
    cl->handoff_done = done;
    cl->handoff_data = data;
    /* Every leadership is due for a transfer at once. */
    for (uint32_t p = 0; p < mom_placement_partitions(cl->pl); p++) {
        cl->lead_since[p] = now - MOM_CLUSTER_HANDOFF_RETRY_MS;
    }
    uv_timer_stop(&cl->balance_timer);
    uv_timer_start(&cl->balance_timer, mom_cluster_handoff_poll, 0,
                   MOM_CLUSTER_HANDOFF_POLL_MS);
}

/* --- served calls --- */

static mom_stream_served_t *
mom_served_new(mom_cluster_t *cl, mom_peer_srv *call)
{
    mom_stream_served_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    s->cl = cl;
    s->call = call;
    s->next = cl->served;
    if (cl->served != NULL) {
        cl->served->prev = s;
    }
    cl->served = s;
    return s;
}

static void
mom_served_free(mom_stream_served_t *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        s->cl->served = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    free(s);
}

void
mom_cluster_served_end(mom_stream_served_t *s)
{
    mom_served_free(s);
}

static void
mom_cluster_unary(void *ctx, int method, const uint8_t *req, size_t len,
                  mom_peer_srv *call)
{
    mom_cluster_t *cl = ctx;

    if (method == MOM_PEER_RAFT) {
        mom_cluster_raft_received(cl, req, len, call);
    } else if (method == MOM_PEER_FORWARD_BATCH || method == MOM_PEER_FORWARD) {
        mom_forward_serve(cl->fw, call, method == MOM_PEER_FORWARD_BATCH, req,
                          len);
    } else {
        mom_peer_reply(call, GRPC_STATUS_UNIMPLEMENTED, NULL, 0,
                       "unknown method");
    }
}

static void
mom_cluster_stream(void *ctx, int method, const uint8_t *req, size_t len,
                   mom_peer_srv *call)
{
    mom_cluster_t *cl = ctx;
    mom_stream_served_t *s;

    if (method != MOM_PEER_SUBSCRIBE) {
        mom_peer_stream_end(call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    s = mom_served_new(cl, call);
    if (s == NULL) {
        mom_peer_stream_end(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory");
        return;
    }
    s->ctx = mom_relay_serve(cl->ops, s, call, req, len);
    if (s->ctx == NULL) {
        mom_served_free(s);
    }
}

static void
mom_cluster_closed(void *ctx, mom_peer_srv *call)
{
    mom_cluster_t *cl = ctx;
    mom_stream_served_t *s;

    if (mom_forward_closed(cl->fw, call) || mom_cluster_srv_gone(cl, call)) {
        return;
    }
    for (s = cl->served; s != NULL; s = s->next) {
        if (s->call != call) {
            continue;
        }
        if (s->ctx != NULL) {
            mom_relay_serve_closed(s->ctx);
        }
        mom_served_free(s);
        return;
    }
}

/* --- forwarding (client) --- */

static mom_peer_channel *
mom_cluster_channel(mom_cluster_t *cl, uint32_t node)
{
    mom_dest_t *d = mom_cluster_dest(cl, node);

    return d != NULL && !cl->stopped ? d->ch : NULL;
}

int
mom_cluster_forward(mom_cluster_t *cl, uint32_t node, const Mom__Request *req,
                    int deadline_ms, mom_cluster_forward_cb cb, void *ctx)
{
    mom_dest_t *d = mom_cluster_dest(cl, node);

    if (d == NULL || d->ch == NULL || cl->stopped) {
        return -1;
    }
    if (d->carries) {
        return mom_forward_send(cl->fw, node, req, deadline_ms, cb, ctx);
    }
    /* Until the member's first RaftAck says it serves carried requests
     * (a stream not open yet opens now: its first batch asks for one). */
    if (d->raft == NULL) {
        d->probe = true;
        mom_cluster_raft_send(d);
    }
    return mom_forward_call(cl->fw, d->ch, req, deadline_ms, cb, ctx);
}

mom_peer_stream *
mom_cluster_subscribe(mom_cluster_t *cl, uint32_t node, const Mom__Request *req,
                      const mom_peer_stream_cbs *cbs, void *ctx)
{
    mom_peer_channel *ch = mom_cluster_channel(cl, node);
    size_t len = mom__request__get_packed_size(req);
    mom_peer_stream *s;
    uint8_t *buf;

    if (ch == NULL || (buf = malloc(len > 0 ? len : 1)) == NULL) {
        return NULL;
    }
    mom__request__pack(req, buf);
    s = mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE, buf, len, 0, cbs,
                             ctx);
    free(buf);
    return s;
}

/* --- start / stop --- */

static const mom_peer_handlers mom_cluster_handlers = {
    .methods = mom_peer_service,
    .nmethods = MOM_PEER_NMETHODS,
    .unary = mom_cluster_unary,
    .stream = mom_cluster_stream,
    .closed = mom_cluster_closed,
    .message = mom_cluster_message,
};

mom_cluster_t *
mom_cluster_start(uv_loop_t *loop, const mom_conf_t *conf,
                  const mom_placement_t *pl, mom_commit_t *commit,
                  mom_ops_t *ops)
{
    mom_cluster_t *cl = calloc(1, sizeof(*cl));
    mom_commit_transport_t tr = {
        .send = mom_cluster_raft_queue,
        .flush = mom_cluster_raft_flush,
        .role = mom_cluster_role,
    };
    uint32_t self = mom_placement_self(pl), id;
    const char *listen;
    size_t n = mom_placement_members(pl), plen;

    if (cl == NULL) {
        return NULL;
    }
    cl->loop = loop;
    cl->conf = conf;
    cl->pl = pl;
    cl->commit = commit;
    cl->ops = ops;
    cl->leads = calloc(mom_placement_partitions(pl), sizeof(bool));
    cl->lead_since = calloc(mom_placement_partitions(pl), sizeof(uint64_t));
    cl->dests = calloc(n, sizeof(*cl->dests));
    cl->fw = mom_forward_new(loop, ops, mom_cluster_raft_flush, cl);
    plen = strlen(conf->data_dir) + sizeof("/status");
    cl->status_path = malloc(plen);
    if (cl->leads == NULL || cl->lead_since == NULL || cl->dests == NULL ||
        cl->fw == NULL || cl->status_path == NULL) {
        goto failed;
    }
    snprintf(cl->status_path, plen, "%s/status", conf->data_dir);
    listen = mom_placement_grpc_addr(pl, self);
    if (listen != NULL) {
        cl->peer =
            mom_peer_start(loop, listen, &mom_cluster_handlers, cl, NULL);
        if (cl->peer == NULL) {
            mom_log_error("cannot serve the peer service on %s", listen);
            goto failed;
        }
        mom_log_info("peer service on %s", listen);
    }
    for (size_t i = 0; i < n; i++) {
        id = mom_placement_member_id(pl, i);
        cl->dests[cl->n_dests].cl = cl;
        cl->dests[cl->n_dests].id = id;
        if (id != self && cl->peer != NULL) {
            cl->dests[cl->n_dests].ch =
                mom_peer_channel_get(cl->peer, mom_placement_grpc_addr(pl, id));
        }
        cl->n_dests++;
    }
    uv_timer_init(loop, &cl->status_timer);
    uv_timer_init(loop, &cl->balance_timer);
    cl->status_timer.data = cl;
    cl->balance_timer.data = cl;
    if (cl->peer != NULL) {
        uv_timer_start(&cl->balance_timer, mom_cluster_balance,
                       MOM_CLUSTER_BALANCE_MS, MOM_CLUSTER_BALANCE_MS);
    }
    ops->cluster = cl;
    tr.ctx = cl;
    mom_commit_set_transport(commit, &tr);
    mom_cluster_status_write(cl);
    return cl;

failed:
    if (cl->fw != NULL) {
        mom_forward_free(cl->fw);
    }
    free(cl->leads);
    free(cl->lead_since);
    free(cl->dests);
    free(cl->status_path);
    free(cl);
    return NULL;
}

static void
mom_cluster_freed(uv_handle_t *h)
{
    mom_cluster_t *cl = h->data;

    if (--cl->open_handles > 0) {
        return;
    }
    for (size_t i = 0; i < cl->n_dests; i++) {
        mom_cluster_raft_clear(&cl->dests[i]);
        free(cl->dests[i].q);
    }
    free(cl->dests);
    free(cl->leads);
    free(cl->lead_since);
    free(cl->status_path);
    free(cl);
}

void
mom_cluster_stop(mom_cluster_t *cl)
{
    mom_commit_transport_t none = {0};

    cl->stopped = true;
    mom_commit_set_transport(cl->commit, &none);
    mom_forward_stop(cl->fw);
    if (cl->peer != NULL) {
        /* Cancels our calls (callbacks run now) and closes served ones. */
        mom_peer_stop(cl->peer);
        cl->peer = NULL;
    }
    while (cl->served != NULL) {
        mom_cluster_closed(cl, cl->served->call);
    }
    mom_forward_free(cl->fw);
    cl->fw = NULL;
    for (uint32_t p = 0; p < mom_placement_partitions(cl->pl); p++) {
        cl->leads[p] = false;
    }
    mom_cluster_status_write(cl);
    cl->ops->cluster = NULL;
    cl->open_handles = 2;
    uv_close((uv_handle_t *)&cl->status_timer, mom_cluster_freed);
    uv_close((uv_handle_t *)&cl->balance_timer, mom_cluster_freed);
}
