/*
 * Routing: where each request runs. A request for a partition this node
 * leads (and may read from: see mom_commit_ready) runs here; any other is
 * forwarded once per attempt to the leader over gRPC, and the leader's
 * answer is relayed unchanged. While the leader is unknown (an election)
 * or a forward fails or lands on a node that is no longer leader, the
 * request is retried, following leader hints, until its deadline (three
 * election timeouts); then it is answered 503 "No leader for partition".
 * A request that came through Forward is never forwarded again: it is
 * answered "not leader" with a hint, and its origin retries. Mutations keep
 * the idempotency key given on their first attempt, so that a retry of a
 * command that did commit applies once and gets the first answer.
 *
 * Cluster-wide lists ask every member for the names of the partitions it
 * leads (local_only), merge them, and retry until every partition is
 * covered. Topic streams of partitions this node does not replicate are
 * relayed from a replica (relay.c).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "log.h"
#include "ops.h"
#include "relay.h"

/* Routing gives up after this (about three election timeouts). */
#define MOM_ROUTE_DEADLINE_MS 3000
/* One forward attempt waits at most this long for the leader's answer. */
#define MOM_ROUTE_FORWARD_MS 2000
#define MOM_ROUTE_TICK_MS 20
#define MOM_ROUTE_WAIT_MS 20   /* leader unknown: election */
#define MOM_ROUTE_FAILED_MS 50 /* forward failed: peer down or busy */
#define MOM_ROUTE_LIST_MS 100  /* a list missed partitions */

/* Cluster-wide list being gathered. */
typedef struct mom_gather_s {
    bool *covered; /* per partition */
    char **names;
    size_t n_names, cap_names;
    unsigned pending; /* member answers outstanding */
    bool failed;      /* out of memory */
} mom_gather_t;

static void mom_route_defer(mom_op_t *op, uint64_t delay_ms);
static void mom_route_list(mom_op_t *op);

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

static bool
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
    return op->conn != NULL ? mom_conn_peer_gone(op->conn) : op->served == NULL;
}

static void
mom_route_no_leader(mom_op_t *op)
{
    mom_op_error(op, 503, "No leader for partition");
}

/* --- forwarding ------------------------------------------------------------
 */

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

/* --- the decision -----------------------------------------------------------
 */

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
    op->deadline = mom_route_now(op) + MOM_ROUTE_DEADLINE_MS;
    if (mom_route_is_list(req->op)) {
        if (req->local_only) {
            mom_ops_execute(op);
        } else {
            mom_route_list(op);
        }
        return;
    }
    op->partition = mom_placement_partition(op->ops->pl, req->name);
    if (req->op == MOM__OP__OP_SUBSCRIBE) {
        /* Every replica applies every entry and fans it out. */
        if (mom_commit_hosts(op->ops->commit, op->partition)) {
            mom_ops_execute(op);
        } else if (req->local_only || op->forwarded) {
            mom_op_error(op, 503, "Not a replica of this topic");
        } else {
            mom_relay_start(op);
        }
        return;
    }
    mom_route_attempt(op);
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

/* --- retry queue ------------------------------------------------------------
 */

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
        } else if (op->list != NULL) {
            mom_route_list(op);
        } else if (op->req->op == MOM__OP__OP_SUBSCRIBE) {
            mom_relay_start(op);
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

static void
mom_list_free(mom_gather_t *l)
{
    if (l == NULL) {
        return;
    }
    for (size_t i = 0; i < l->n_names; i++) {
        free(l->names[i]);
    }
    free(l->names);
    free(l->covered);
    free(l);
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
    mom_list_free(op->list);
    op->list = NULL;
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

/* --- cluster-wide lists
 * ------------------------------------------------------- */

static int
mom_list_add(mom_gather_t *l, const char *name, size_t len)
{
    char *copy;

    if (l->n_names == l->cap_names) {
        size_t cap = l->cap_names ? l->cap_names * 2 : 64;
        char **names = realloc(l->names, cap * sizeof(*names));

        if (names == NULL) {
            l->failed = true;
            return 1;
        }
        l->names = names;
        l->cap_names = cap;
    }
    copy = strndup(name, len);
    if (copy == NULL) {
        l->failed = true;
        return 1;
    }
    l->names[l->n_names++] = copy;
    return 0;
}

static int
mom_list_add_cb(void *data, const char *name, size_t len)
{
    return mom_list_add(data, name, len);
}

static int
mom_list_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every partition answered: the merged, sorted, unique list. */
static void
mom_list_answer(mom_op_t *op)
{
    mom_gather_t *l = op->list;
    const char *key = mom_route_list_key(op->req->op);
    size_t cap = mom_ops_content_max(op->ops->conf);
    bool first = true;
    mom_buf_t body;

    if (l->n_names > 1) {
        qsort(l->names, l->n_names, sizeof(*l->names), mom_list_cmp);
    }
    mom_buf_init(&body);
    mom_buf_puts(&body, "{\"");
    mom_buf_puts(&body, key);
    mom_buf_puts(&body, "\":[");
    for (size_t i = 0; i < l->n_names; i++) {
        if (i > 0 && strcmp(l->names[i], l->names[i - 1]) == 0) {
            continue;
        }
        if (body.len + strlen(l->names[i]) + 8 > cap) {
            mom_log_warn("%s list truncated to fit a frame", key);
            break;
        }
        if (!first) {
            mom_buf_append(&body, ",", 1);
        }
        first = false;
        mom_json_cstr(&body, l->names[i]);
    }
    mom_buf_puts(&body, "]}");
    if (body.failed || l->failed) {
        mom_buf_free(&body);
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    mom_op_finish(op, 200, body.data, body.len, NULL);
    mom_buf_free(&body);
}

/* All members answered (or failed): done, or again a little later. */
static void
mom_list_settle(mom_op_t *op)
{
    mom_gather_t *l = op->list;
    uint32_t n = mom_placement_partitions(op->ops->pl);

    if (l->pending > 0) {
        return;
    }
    for (uint32_t p = 0; p < n; p++) {
        if (!l->covered[p]) {
            mom_log_debug("list: partition %u has no leader yet", p);
            mom_route_defer(op, MOM_ROUTE_LIST_MS);
            return;
        }
    }
    mom_list_answer(op);
}

static void
mom_list_member_answered(void *ctx, grpc_status_code status,
                         const Mom__Response *resp)
{
    mom_op_t *op = ctx;
    mom_gather_t *l = op->list;
    uint32_t n = mom_placement_partitions(op->ops->pl);
    json_t *doc = NULL, *arr;
    size_t i;

    l->pending--;
    if (op->ops->closing) {
        if (l->pending == 0) {
            mom_op_error(op, 503, "Server shutting down");
        }
        return;
    }
    if (status == GRPC_STATUS_OK && resp != NULL && resp->status == 200) {
        doc =
            json_loadb((const char *)resp->body.data, resp->body.len, 0, NULL);
    }
    arr = doc != NULL ? json_object_get(doc, mom_route_list_key(op->req->op))
                      : NULL;
    if (json_is_array(arr)) {
        for (i = 0; i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);

            if (json_is_string(v)) {
                mom_list_add(l, json_string_value(v), json_string_length(v));
            }
        }
        for (i = 0; i < resp->n_partitions; i++) {
            if (resp->partitions[i] < n) {
                l->covered[resp->partitions[i]] = true;
            }
        }
    }
    json_decref(doc);
    mom_list_settle(op);
}

static void
mom_route_list(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    uint32_t n = mom_placement_partitions(ops->pl);
    uint32_t self = mom_placement_self(ops->pl), m;
    Mom__Request sub = *op->req;
    mom_gather_t *l;
    uint64_t leader;

    mom_list_free(op->list);
    l = op->list = calloc(1, sizeof(*l));
    if (l == NULL || (l->covered = calloc(n, sizeof(bool))) == NULL) {
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    for (uint32_t p = 0; p < n; p++) {
        l->covered[p] = mom_commit_ready(ops->commit, p, &leader);
    }
    if (mom_ops_list_names(ops, op->req->op, l->covered, mom_list_add_cb, l) !=
        0) {
        mom_op_error(op, 500, "Storage error");
        return;
    }
    sub.local_only = true;
    for (size_t i = 0; i < mom_placement_members(ops->pl); i++) {
        m = mom_placement_member_id(ops->pl, i);
        if (m == self || ops->cluster == NULL) {
            continue;
        }
        l->pending++;
        if (mom_cluster_forward(ops->cluster, m, &sub, MOM_ROUTE_FORWARD_MS,
                                mom_list_member_answered, op) != 0) {
            l->pending--;
        }
    }
    mom_list_settle(op);
}
