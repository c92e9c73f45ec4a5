/*
 * Cluster-wide lists (LIST_USERS, LIST_TOPICS, LIST_QUEUES): every member
 * is asked for the names in the partitions it leads (a Forward with
 * local_only; its answer says which partitions it covered) and the answers
 * are merged, sorted and deduplicated. When every partition is covered the
 * list is answered at once, without waiting for the members still to
 * answer (one may be down or stopped); when a round ends with partitions
 * uncovered (an election), it starts again a little later, until the
 * routing deadline (then 503 "No leader for partition").
 *
 * Each round has its own gathering state, which outlives its op while
 * answers are still on their way.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster.h"
#include "log.h"
#include "ops.h"

#define MOM_LISTS_RETRY_MS 100

typedef struct mom_gather_s {
    mom_op_t *op;  /* NULL once the op no longer waits for this round */
    bool *covered; /* per partition */
    char **names;
    size_t n_names, cap_names;
    unsigned pending; /* member answers outstanding */
    bool failed;      /* out of memory */
} mom_gather_t;

static void
mom_gather_free(mom_gather_t *g)
{
    for (size_t i = 0; i < g->n_names; i++) {
        free(g->names[i]);
    }
    free(g->names);
    free(g->covered);
    free(g);
}

/* The op stops waiting for this round; the round ends with its answers. */
static void
mom_gather_detach(mom_gather_t *g)
{
    if (g->op != NULL) {
        g->op->list = NULL;
        g->op = NULL;
    }
    if (g->pending == 0) {
        mom_gather_free(g);
    }
}

void
mom_lists_forget(mom_op_t *op)
{
    if (op->list != NULL) {
        mom_gather_detach(op->list);
    }
}

static int
mom_gather_add(mom_gather_t *g, const char *name, size_t len)
{
    char *copy;

    if (g->n_names == g->cap_names) {
        size_t cap = g->cap_names ? g->cap_names * 2 : 64;
        char **names = realloc(g->names, cap * sizeof(*names));

        if (names == NULL) {
            g->failed = true;
            return 1;
        }
        g->names = names;
        g->cap_names = cap;
    }
    copy = strndup(name, len);
    if (copy == NULL) {
        g->failed = true;
        return 1;
    }
    g->names[g->n_names++] = copy;
    return 0;
}

static int
mom_gather_add_cb(void *data, const char *name, size_t len)
{
    return mom_gather_add(data, name, len);
}

static int
mom_gather_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every partition answered: the merged, sorted, unique list. */
static void
mom_gather_answer(mom_gather_t *g)
{
    mom_op_t *op = g->op;
    const char *key = mom_route_list_key(op->req->op);
    size_t cap = mom_ops_content_max(op->ops->conf);
    bool first = true;
    mom_buf_t body;

    if (g->n_names > 1) {
        qsort(g->names, g->n_names, sizeof(*g->names), mom_gather_cmp);
    }
    mom_buf_init(&body);
    mom_buf_puts(&body, "{\"");
    mom_buf_puts(&body, key);
    mom_buf_puts(&body, "\":[");
    for (size_t i = 0; i < g->n_names; i++) {
        if (i > 0 && strcmp(g->names[i], g->names[i - 1]) == 0) {
            continue;
        }
        if (body.len + strlen(g->names[i]) + 8 > cap) {
            mom_log_warn("%s list truncated to fit a frame", key);
            break;
        }
        if (!first) {
            mom_buf_append(&body, ",", 1);
        }
        first = false;
        mom_json_cstr(&body, g->names[i]);
    }
    mom_buf_puts(&body, "]}");
    if (body.failed || g->failed) {
        mom_buf_free(&body);
        mom_gather_detach(g);
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    mom_gather_detach(g);
    mom_op_finish(op, 200, body.data, body.len, NULL);
    mom_buf_free(&body);
}

static void
mom_gather_settle(mom_gather_t *g)
{
    mom_op_t *op = g->op;
    uint32_t n = mom_placement_partitions(op->ops->pl);

    for (uint32_t p = 0; p < n; p++) {
        if (!g->covered[p]) {
            if (g->pending == 0) {
                mom_log_debug("list: partition %u has no leader yet", p);
                mom_gather_detach(g);
                mom_route_later(op, MOM_LISTS_RETRY_MS);
            }
            return;
        }
    }
    mom_gather_answer(g);
}

static void
mom_gather_member(void *ctx, grpc_status_code status, const Mom__Response *resp)
{
    mom_gather_t *g = ctx;
    mom_op_t *op = g->op;
    json_t *doc = NULL, *arr;
    uint32_t n;
    size_t i;

    g->pending--;
    if (op == NULL) {
        if (g->pending == 0) {
            mom_gather_free(g);
        }
        return;
    }
    if (op->ops->closing) {
        mom_gather_detach(g);
        mom_op_error(op, 503, "Server shutting down");
        return;
    }
    n = mom_placement_partitions(op->ops->pl);
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
                mom_gather_add(g, json_string_value(v), json_string_length(v));
            }
        }
        for (i = 0; i < resp->n_partitions; i++) {
            if (resp->partitions[i] < n) {
                g->covered[resp->partitions[i]] = true;
            }
        }
    }
    json_decref(doc);
    mom_gather_settle(g);
}

void
mom_lists_start(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    uint32_t n = mom_placement_partitions(ops->pl);
    uint32_t self = mom_placement_self(ops->pl), m;
    Mom__Request sub = *op->req;
    mom_gather_t *g;
    uint64_t leader;

    mom_lists_forget(op);
    g = calloc(1, sizeof(*g));
    if (g == NULL || (g->covered = calloc(n, sizeof(bool))) == NULL) {
        free(g);
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    g->op = op;
    op->list = g;
    for (uint32_t p = 0; p < n; p++) {
        g->covered[p] = mom_commit_ready(ops->commit, p, &leader);
    }
    if (mom_ops_list_names(ops, op->req->op, g->covered, mom_gather_add_cb,
                           g) != 0) {
        mom_gather_detach(g);
        mom_op_error(op, 500, "Storage error");
        return;
    }
    sub.local_only = true;
    for (size_t i = 0; i < mom_placement_members(ops->pl); i++) {
        m = mom_placement_member_id(ops->pl, i);
        if (m == self || ops->cluster == NULL) {
            continue;
        }
        g->pending++;
        if (mom_cluster_forward(ops->cluster, m, &sub, MOM_ROUTE_FORWARD_MS,
                                mom_gather_member, g) != 0) {
            g->pending--;
        }
    }
    mom_gather_settle(g);
}
