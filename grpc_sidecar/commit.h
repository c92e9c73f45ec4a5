/*
 * The one write path of momd: submit a command -> it is committed by the
 * Raft group of its partition (grpc_sidecar/raft_group.h) -> it is applied
 * by mom_sm_apply() on every replica -> the submitter is answered.
 *
 * Every partition is a Raft group (group id = partition number) whose
 * voters are the partition's replicas (placement.h). A single node is the
 * same thing with one voter per group: one code path for 1 and N nodes.
 * All groups share one SQLite transaction per flush (group commit), run
 * from a uv_check handle once per loop iteration; callbacks are made only
 * after that transaction committed.
 */
#ifndef MOM_COMMIT_H
#define MOM_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "command.pb-c.h"
#include "conf.h"
#include "placement.h"
#include "sm.h"
#include "store.h"

typedef struct mom_commit_s mom_commit_t;

/* Not an HTTP status: the submission was dropped by a leader that lost its
 * leadership; it may still commit under the next leader, so retry it with
 * the same idempotency key (through the new leader). */
#define MOM_COMMIT_RETRY 1

/* mom_commit_submit() */
#define MOM_COMMIT_OK 0
#define MOM_COMMIT_NOT_LEADER 1 /* *leader_hint: the known leader, 0 none */
#define MOM_COMMIT_FAILED (-1)  /* out of memory or closing */

/*
 * Called exactly once per accepted submission: after its transaction
 * committed, with the state machine's result; with status MOM_COMMIT_RETRY
 * (see above); or with 503 when momd is shutting down. res is valid during
 * the call only.
 */
typedef void (*mom_commit_done_cb)(void *data, const mom_result_t *res);

/*
 * Called for every command applied and committed (whoever submitted it:
 * on a follower too), before the submitter's callback; used to fan out
 * published messages to subscribers and to end deleted topics' streams.
 */
typedef void (*mom_commit_applied_cb)(void *data, const Mom__Command *cmd,
                                      const mom_result_t *res);

/* The transport of Raft messages (cluster.c); unset: one node only. */
typedef struct {
    void *ctx;
    /* Queue a message for node `to` (best effort, in order). */
    void (*send)(void *ctx, uint32_t group, uint64_t to, const uint8_t *buf,
                 size_t len);
    /* Once per loop iteration after the flush: send what was queued. */
    void (*flush)(void *ctx);
    /* A group's leader changed (or this node's role in it). */
    void (*role)(void *ctx, uint32_t group, bool is_leader, uint64_t leader);
} mom_commit_transport_t;

/*
 * Opens the Raft driver in the store's database and starts the groups of
 * the partitions this node replicates. NULL on error.
 */
mom_commit_t *mom_commit_new(uv_loop_t *loop, mom_store_t *st,
                             const mom_conf_t *conf, const mom_placement_t *pl,
                             mom_commit_applied_cb applied, void *applied_data);

void mom_commit_set_transport(mom_commit_t *c, const mom_commit_transport_t *t);

/* Replaces the applied hook given to mom_commit_new(). */
void mom_commit_on_applied(mom_commit_t *c, mom_commit_applied_cb applied,
                           void *applied_data);

/* Called after a flush that replaced a partition's state with a snapshot
 * from the leader (no applied hook was called for what it contains). */
typedef void (*mom_commit_restored_cb)(void *data, uint32_t partitions,
                                       uint32_t partition);
void mom_commit_on_restored(mom_commit_t *c, mom_commit_restored_cb cb,
                            void *data);

/*
 * Submits a mutation to the group of `partition`. cmd is serialized at
 * once: the caller keeps ownership. MOM_COMMIT_OK: done will be called.
 * Otherwise done is not called; MOM_COMMIT_NOT_LEADER sets *leader_hint.
 */
int mom_commit_submit(mom_commit_t *c, uint32_t partition,
                      const Mom__Command *cmd, mom_commit_done_cb done,
                      void *data, uint64_t *leader_hint);

/*
 * True when this node leads the partition and has committed an entry of
 * its current term (its state machine holds every committed write: it may
 * serve reads). Otherwise *leader gets the leader it knows of (0: none;
 * this node itself while it is not ready yet).
 */
bool mom_commit_ready(const mom_commit_t *c, uint32_t partition,
                      uint64_t *leader);

/* Whether this node hosts the partition's group. */
bool mom_commit_hosts(const mom_commit_t *c, uint32_t partition);

/* Asks this node's leadership of the partition to move to `node` (a
 * caught-up follower). 0 when the transfer started. */
int mom_commit_transfer(mom_commit_t *c, uint32_t partition, uint64_t node);

/* A Raft message from node `from` for `group` (the transport's receive). */
void mom_commit_receive(mom_commit_t *c, uint32_t group, uint64_t from,
                        const uint8_t *buf, size_t len);

/*
 * Flushes what is pending, stops the groups (waiters get 503) and closes
 * the handles; c is freed once they are closed (run the loop).
 */
void mom_commit_close(mom_commit_t *c);

#endif
