/*
 * Routing: where each request runs. A request for a partition this node
 * leads (and may read from: see mom_commit_ready) runs here; any other is
 * forwarded once per attempt to the leader over gRPC, and the leader's
 * answer is relayed unchanged. While the leader is unknown (an election)
 * or a forward fails or lands on a node that is no longer leader, the
 * request is retried, following leader hints, until its deadline (three
 * election timeouts; longer for a mutation whose outcome is uncertain);
 * then it is answered 503 "No leader for partition".
 * A request that came through Forward is never forwarded again: it is
 * answered "not leader" with a hint, and its origin retries. Mutations keep
 * the idempotency key given on their first attempt, so that a retry of a
 * command that did commit applies once and gets the first answer.
 *
 * Cluster-wide lists are gathered by lists.c. Topic streams of partitions this
 * node does not replicate are relayed from a replica (relay.c).
 */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "log.h"
#include "ops.h"
#include "relay.h"

/* Routing gives up after this (about three election timeouts). */
#define MOM_ROUTE_DEADLINE_MS 3000
/* A mutation that may already have been applied (an attempt was sent to a
 * leader that did not answer, or a leader dropped it while it could still
 * commit) is retried longer: its retry, with the same idempotency key,
 * is how the client learns the outcome (a queue message taken by a RECEIVE
 * whose answer was lost would otherwise be lost to the client). */
#define MOM_ROUTE_UNCERTAIN_MS 8000
#define MOM_ROUTE_TICK_MS 20
#define MOM_ROUTE_WAIT_MS 20   /* leader unknown: election */
#define MOM_ROUTE_FAILED_MS 50 /* forward failed: peer down or busy */
/* A follower's wait for its log before it calls a topic unknown. */
#define MOM_ROUTE_CATCH_UP_MS 1000

static void mom_route_defer(mom_op_t *op, uint64_t delay_ms);
static void mom_route_subscribe(mom_op_t *op);

bool
mom_route_is_mutation(Mom__Op op)
{
    switch (op) {
    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_DELETE_TOPIC:
    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_CREATE_QUEUE:
    case MOM__OP__OP_DELETE_QUEUE:
    case MOM__OP__OP_SEND:
    case MOM__OP__OP_RECEIVE:
        return true;
    default:
        return false;
    }
}

bool
mom_route_is_list(Mom__Op op)
{
    return op == MOM__OP__OP_LIST_USERS || op == MOM__OP__OP_LIST_TOPICS ||
           op == MOM__OP__OP_LIST_QUEUES;
}

const char *
mom_route_list_key(Mom__Op which)
{
    return which == MOM__OP__OP_LIST_USERS    ? "users"
           : which == MOM__OP__OP_LIST_TOPICS ? "topics"
                                              : "queues";
}

static uint64_t
mom_route_now(const mom_op_t *op)
{
    return uv_now(op->ops->loop);
}

/* The client went away: nobody waits for an answer any more. */
static bool
mom_route_abandoned(const mom_op_t *op)
{
    if (op->cancelled) {
        return true;
    }
    return op->conn != NULL ? mom_conn_peer_gone(op->conn) : op->served == NULL;
}

static void
mom_route_no_leader(mom_op_t *op)
{
    mom_op_error(op, 503, "No leader for partition");
}

/* --- forwarding --- */

static void
mom_route_learn(mom_ops_t *ops, uint32_t p, uint64_t leader)
{
    if (ops->leader_cache != NULL && leader <= UINT32_MAX) {
        ops->leader_cache[p] = (uint32_t)leader;
    }
}

static void
mom_route_forwarded(void *ctx, grpc_status_code status,
                    const Mom__Response *resp)
{
    mom_op_t *op = ctx;
    mom_ops_t *ops = op->ops;
    uint64_t tried = op->target;

    op->target = 0;
    if (ops->closing) {
        mom_op_error(op, 503, "Server shutting down");
        return;
    }
    if (status == GRPC_STATUS_OK && resp != NULL && !resp->not_leader) {
        mom_route_learn(ops, op->partition, tried);
        mom_op_finish(op, resp->status, resp->body.data, resp->body.len,
                      resp->user != NULL && resp->user[0] != '\0' ? resp->user
                                                                  : NULL);
        return;
    }
    if (status == GRPC_STATUS_OK && resp != NULL) {
        /* Not (or no longer, or not yet) the leader: follow its hint. */
        mom_route_learn(ops, op->partition,
                        resp->leader != tried ? resp->leader : 0);
        mom_route_defer(op, resp->leader != 0 && resp->leader != tried
                                ? 0
                                : MOM_ROUTE_WAIT_MS);
        return;
    }
    mom_log_debug("forward of partition %u to node %llu: gRPC status %d",
                  op->partition, (unsigned long long)tried, (int)status);
    if (ops->leader_cache != NULL &&
        ops->leader_cache[op->partition] == tried) {
        ops->leader_cache[op->partition] = 0;
    }
    mom_route_defer(op, MOM_ROUTE_FAILED_MS);
}

static void
mom_route_forward(mom_op_t *op, uint64_t node)
{
    uint64_t now = mom_route_now(op);
    int deadline = MOM_ROUTE_FORWARD_MS;

    if (op->deadline > now && op->deadline - now < (uint64_t)deadline) {
        deadline = (int)(op->deadline - now);
    }
    if (deadline < 100) {
        deadline = 100;
    }
    if (mom_route_is_mutation(op->req->op)) {
        mom_ops_key(op->ops, op->req);
        mom_route_uncertain(op);
    }
    op->target = node;
    op->attempts++;
    if (op->ops->cluster == NULL ||
        mom_cluster_forward(op->ops->cluster, (uint32_t)node, op->req, deadline,
                            mom_route_forwarded, op) != 0) {
        op->target = 0;
        mom_route_defer(op, MOM_ROUTE_FAILED_MS);
    }
}

/* --- the decision --- */

static void
mom_route_attempt(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    uint32_t self = mom_placement_self(ops->pl);
    const uint32_t *replicas;
    uint64_t leader = 0;
    size_t n;

    if (mom_commit_ready(ops->commit, op->partition, &leader)) {
        mom_ops_execute(op);
        return;
    }
    if (op->forwarded) {
        op->not_leader = true;
        op->leader_hint = leader != self ? leader : 0;
        mom_route_no_leader(op);
        return;
    }
    if (!mom_commit_hosts(ops->commit, op->partition)) {
        /* Not a replica: ask the last leader seen, else the replicas in
         * turn; a non-leader answers with a hint. */
        leader =
            ops->leader_cache != NULL ? ops->leader_cache[op->partition] : 0;
        if (leader == 0) {
            replicas = mom_placement_replicas(ops->pl, op->partition, &n);
            leader = n > 0 ? replicas[op->attempts % n] : 0;
        }
    }
    if (leader == 0 || leader == self) {
        /* An election (or our own barrier) is under way. */
        mom_route_defer(op, MOM_ROUTE_WAIT_MS);
        return;
    }
    mom_route_forward(op, leader);
}

void
mom_route(mom_op_t *op)
{
    Mom__Request *req = op->req;

    if (op->conn != NULL && mom_route_is_mutation(req->op) &&
        mom_conn_peer_gone(op->conn)) {
        /* Its client gave up before we read it: never apply it. */
        mom_log_info("dropping a request whose client is gone");
        mom_op_finish(op, 503, NULL, 0, NULL);
        return;
    }
    op->started = mom_route_now(op);
    op->deadline = op->started + MOM_ROUTE_DEADLINE_MS;
    if (mom_route_is_list(req->op)) {
        if (req->local_only) {
            mom_ops_execute(op);
        } else {
            mom_lists_start(op);
        }
        return;
    }
    op->partition = mom_placement_partition(op->ops->pl, req->name);
    if (req->op == MOM__OP__OP_SUBSCRIBE) {
        mom_route_subscribe(op);
        return;
    }
    mom_route_attempt(op);
}

/*
 * Every replica applies every entry and fans it out, so a replica serves
 * subscriptions itself. A follower learns that an entry committed only with
 * the leader's next message: a topic created an instant ago may not exist
 * here yet, so a follower gives its log a moment to catch up before it
 * answers 404.
 */
static void
mom_route_subscribe(mom_op_t *op)
{
    Mom__Request *req = op->req;
    uint64_t leader;

    if (mom_commit_hosts(op->ops->commit, op->partition)) {
        if (!mom_commit_ready(op->ops->commit, op->partition, &leader) &&
            mom_store_coll_get(op->ops->st, MOM_TOPIC, req->name, NULL, NULL) ==
                MOM_STORE_NOT_FOUND &&
            mom_route_now(op) < op->started + MOM_ROUTE_CATCH_UP_MS) {
            mom_route_defer(op, MOM_ROUTE_WAIT_MS);
            return;
        }
        mom_ops_execute(op);
    } else if (req->local_only || op->forwarded) {
        mom_op_error(op, 503, "Not a replica of this topic");
    } else {
        mom_relay_start(op);
    }
}

void
mom_route_uncertain(mom_op_t *op)
{
    uint64_t until = op->started + MOM_ROUTE_UNCERTAIN_MS;

    if (op->deadline < until) {
        op->deadline = until;
    }
}

void
mom_route_again(mom_op_t *op, uint64_t leader_hint)
{
    if (op->forwarded) {
        op->not_leader = true;
        op->leader_hint =
            leader_hint != mom_placement_self(op->ops->pl) ? leader_hint : 0;
        mom_route_no_leader(op);
        return;
    }
    mom_route_defer(op, leader_hint != 0 ? 0 : MOM_ROUTE_WAIT_MS);
}

/* --- retry queue --- */

static void
mom_route_tick(uv_timer_t *t)
{
    mom_ops_t *ops = t->data;
    uint64_t now = uv_now(ops->loop);
    mom_op_t *op, *due = ops->retry_head;

    /* Take the whole queue: attempts may defer again. */
    ops->retry_head = NULL;
    ops->retry_tail = &ops->retry_head;
    while ((op = due) != NULL) {
        due = op->retry_next;
        op->retry_next = NULL;
        if (op->retry_at > now) {
            *ops->retry_tail = op;
            ops->retry_tail = &op->retry_next;
            op->queued = true;
            continue;
        }
        op->queued = false;
        if (mom_route_abandoned(op)) {
            mom_op_finish(op, 503, NULL, 0, NULL); /* dropped */
        } else if (now >= op->deadline) {
            mom_route_no_leader(op);
        } else if (mom_route_is_list(op->req->op)) {
            mom_lists_start(op);
        } else if (op->req->op == MOM__OP__OP_SUBSCRIBE) {
            mom_route_subscribe(op);
        } else {
            mom_route_attempt(op);
        }
    }
    if (ops->retry_head == NULL) {
        uv_timer_stop(&ops->retry_timer);
    }
}

static void
mom_route_defer(mom_op_t *op, uint64_t delay_ms)
{
    mom_ops_t *ops = op->ops;

    if (ops->closing) {
        mom_op_error(op, 503, "Server shutting down");
        return;
    }
    op->retry_at = mom_route_now(op) + delay_ms;
    op->retry_next = NULL;
    op->queued = true;
    *ops->retry_tail = op;
    ops->retry_tail = &op->retry_next;
    if (!uv_is_active((uv_handle_t *)&ops->retry_timer)) {
        uv_timer_start(&ops->retry_timer, mom_route_tick,
                       delay_ms < MOM_ROUTE_TICK_MS ? delay_ms
                                                    : MOM_ROUTE_TICK_MS,
                       MOM_ROUTE_TICK_MS);
    }
}

void
mom_route_later(mom_op_t *op, uint64_t delay_ms)
{
    mom_route_defer(op, delay_ms);
}

void
mom_route_forget(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    mom_op_t **pp;

    if (op->queued) {
        for (pp = &ops->retry_head; *pp != NULL; pp = &(*pp)->retry_next) {
            if (*pp == op) {
                *pp = op->retry_next;
                break;
            }
        }
        ops->retry_tail = &ops->retry_head;
        while (*ops->retry_tail != NULL) {
            ops->retry_tail = &(*ops->retry_tail)->retry_next;
        }
        op->queued = false;
    }
    mom_lists_forget(op);
}

static void
mom_route_timer_closed(uv_handle_t *h)
{
    mom_ops_t *ops = h->data;

    free(ops->leader_cache);
    ops->leader_cache = NULL;
}

void
mom_ops_close(mom_ops_t *ops)
{
    mom_op_t *op;

    ops->closing = true;
    while ((op = ops->retry_head) != NULL) {
        mom_op_error(op, 503, "Server shutting down");
    }
    uv_close((uv_handle_t *)&ops->retry_timer, mom_route_timer_closed);
}
