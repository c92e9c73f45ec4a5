/*
 * Request handling: every mom.Request, from nginx (a local connection) or
 * from another momd (a Forward), becomes an operation (mom_op_t) that the
 * router (route.c) runs here when this node leads the request's partition,
 * or forwards to the leader. Here (ops.c) it is served: a read from the
 * store (LIST_*, HISTORY), an authentication step on the thread pool
 * (REGISTER, LOGIN), a subscription (SUBSCRIBE), or a Command submitted to
 * the commit path (every mutation).
 */
#ifndef MOM_OPS_H
#define MOM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "commit.h"
#include "conf.h"
#include "placement.h"
#include "server.h"
#include "store.h"

/* Room kept in a frame for everything around a history page's messages. */
#define MOM_OPS_FRAME_MARGIN (64 * 1024)
#define MOM_OPS_HISTORY_DEFAULT 100
#define MOM_OPS_HISTORY_MAX 1000
#define MOM_OPS_PASSWORD_MAX 1024

struct mom_sse_s;
struct mom_cluster_s;
struct mom_served_s;
typedef struct mom_op_s mom_op_t;

typedef struct {
    uv_loop_t *loop;
    const mom_conf_t *conf;
    mom_store_t *st;
    const mom_placement_t *pl;
    mom_commit_t *commit;
    struct mom_sse_s *sse;         /* NULL: subscriptions unavailable */
    struct mom_cluster_s *cluster; /* NULL: no peers (one node) */
    uint64_t producer; /* idempotency key: node id << 32 | incarnation */
    uint64_t sequence; /* last sequence number used (ms << 12, increasing) */

    /* Routing (route.c): operations waiting to be routed again. */
    uv_timer_t retry_timer;
    mom_op_t *retry_head;
    mom_op_t **retry_tail;
    uint32_t *leader_cache; /* per partition: last leader seen, 0 unknown */
    bool closing;

    /* Multiplexed requests from nginx being served, for their OP_CANCEL. */
    mom_op_t *multiplexed;
} mom_ops_t;

/* One request being served, from whichever side it came. */
struct mom_op_s {
    mom_ops_t *ops;
    Mom__Request *req;
    mom_conn_t *conn;              /* from nginx, else NULL */
    uint64_t id;                   /* its id on conn (0: not multiplexed) */
    mom_op_t *mux_prev, *mux_next; /* in ops->multiplexed (id != 0) */
    bool cancelled;                /* its client gave up: never retried */
    struct mom_served_s *served;   /* from a peer, NULL once it went away */
    bool forwarded;                /* came through Forward: never forward */
    uint32_t partition;
    uint64_t started;  /* uv_now() when routing began */
    uint64_t deadline; /* uv_now() after which routing gives up */
    unsigned attempts;
    uint64_t target; /* node of the forward in flight or last tried */
    mom_op_t *retry_next;
    uint64_t retry_at;
    bool queued; /* in the retry queue */

    /* Answer fields for a forwarding node. */
    bool not_leader;
    uint64_t leader_hint;
    uint32_t *parts; /* LIST_* with local_only: the partitions answered */
    size_t n_parts;

    /* LIST_* across the cluster (route.c). */
    struct mom_gather_s *list;
};

void mom_ops_init(mom_ops_t *ops, uv_loop_t *loop, const mom_conf_t *conf,
                  mom_store_t *st, const mom_placement_t *pl,
                  mom_commit_t *commit);

/* Answers whatever still waits for routing (503) and closes the retry
 * timer (run the loop afterwards). */
void mom_ops_close(mom_ops_t *ops);

/* The server's request callback (data = the mom_ops_t). */
void mom_ops_handle(void *data, mom_conn_t *conn, uint64_t id,
                    Mom__Request *req);

/* A request forwarded by another momd (takes req); answered through
 * mom_cluster_answer(served, ...). */
void mom_ops_forwarded(mom_ops_t *ops, Mom__Request *req,
                       struct mom_served_s *served);

/* Serves op on this node (the router decided so). */
void mom_ops_execute(mom_op_t *op);

/* The names of a LIST_* op in the partitions marked in `mask` (indexed by
 * partition), sorted; cb gets each. Returns 0 or -1 (storage error). */
int mom_ops_list_names(mom_ops_t *ops, Mom__Op which, const bool *mask,
                       int (*cb)(void *data, const char *name, size_t len),
                       void *data);

/* Answers op (exactly once) and frees it. */
void mom_op_finish(mom_op_t *op, unsigned status, const void *body, size_t len,
                   const char *user);
void mom_op_error(mom_op_t *op, unsigned status, const char *detail);

/* Largest message content accepted (it must fit a frame with margin). */
size_t mom_ops_content_max(const mom_conf_t *conf);

/* Compact JSON text of one value, no raw line breaks, within max bytes. */
bool mom_ops_content_valid(const void *data, size_t len, size_t max);

/* Milliseconds since the Unix epoch. */
int64_t mom_ops_now_ms(void);

/* Gives a mutation its idempotency key, once (kept across retries). */
void mom_ops_key(mom_ops_t *ops, Mom__Request *req);

/* route.c: where an operation runs. */
void mom_route(mom_op_t *op);
/* An attempt of this mutation may have been applied: retry it longer. */
void mom_route_uncertain(mom_op_t *op);
/* Routes op again after delay_ms (or answers 503 past its deadline). */
void mom_route_later(mom_op_t *op, uint64_t delay_ms);
/* Unlinks a finishing op from the router's queues. */
void mom_route_forget(mom_op_t *op);
/* "users", "topics" or "queues" for a LIST_* op. */
const char *mom_route_list_key(Mom__Op which);
/* The local attempt did not happen or was dropped by a leader that lost
 * its leadership: route it again (a forwarded op answers "not leader"). */
void mom_route_again(mom_op_t *op, uint64_t leader_hint);
/* Whether the op is a mutation (carries an idempotency key). */
bool mom_route_is_mutation(Mom__Op op);
bool mom_route_is_list(Mom__Op op);
/* The deadline of one forward attempt (ms). */
#define MOM_ROUTE_FORWARD_MS 2000

/* lists.c: a cluster-wide LIST_* (answers op), and detaching a finishing
 * op from the answers still on their way. */
void mom_lists_start(mom_op_t *op);
void mom_lists_forget(mom_op_t *op);

#endif
