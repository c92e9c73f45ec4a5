/*
 * Our Raft driver around libraft 0.22.1's raft_step(): one mom_raft_t per
 * node hosts many groups (one per partition), keeps their logs, terms, votes
 * and snapshots in SQLite (raft_store), applies committed entries by index,
 * and persists the pending writes of all groups in one transaction per
 * flush (group commit). It knows neither libuv nor gRPC: the caller gives
 * the time, carries messages (callbacks) and calls tick/flush, so the unit
 * tests drive whole clusters in virtual time. See docs/replication.md.
 *
 * Callbacks are called from inside mom_raft_* calls and must not call back
 * into the same mom_raft_t.
 */
#ifndef MOM_RAFT_GROUP_H
#define MOM_RAFT_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* Return codes. */
#define MOM_RAFT_OK 0
#define MOM_RAFT_NOT_LEADER 1  /* see *leader_id for the known leader */
#define MOM_RAFT_NO_GROUP 2    /* group not started on this node */
#define MOM_RAFT_BAD_MESSAGE 3 /* malformed or out-of-protocol message */
#define MOM_RAFT_CANT_CHANGE 4 /* a membership change is still pending */
#define MOM_RAFT_INVALID 5     /* bad arguments */
#define MOM_RAFT_BEHIND 6      /* transfer target lacks committed entries */

/* Roles for mom_raft_change(). */
#define MOM_RAFT_REMOVE (-1)
#define MOM_RAFT_ROLE_STANDBY 0 /* RAFT_STANDBY: replicates, no vote */
#define MOM_RAFT_ROLE_VOTER 1   /* RAFT_VOTER */
#define MOM_RAFT_ROLE_SPARE 2   /* RAFT_SPARE: in the configuration only */

typedef struct mom_raft_s mom_raft_t;
typedef struct mom_raft_group_s mom_raft_group_t; /* one group, internal */

typedef struct {
    void *ctx;
    /* Send a serialized Raft message of `group` to node `to`. Best effort:
     * may be dropped; must keep the order per destination. buf is only
     * valid during the call. */
    void (*send)(void *ctx, uint32_t group, uint64_t to, const uint8_t *buf,
                 size_t len);
    /* A committed command, in index order, once per index: also after a
     * restart for entries above applied_index(). Runs inside the flush
     * transaction; the callee writes its effect and its applied index there
     * (deterministically; it cannot fail). buf may be NULL when len is 0.
     * cookie: the submitter's cookie if this node submitted it and still
     * waits, else NULL. Answer clients once mom_raft_flush() returns: the
     * entry is then durable on a majority (the transaction itself is not
     * synced when it only applies, or holds a leader's lazy write). */
    void (*apply)(void *ctx, uint32_t group, uint64_t index, const uint8_t *buf,
                  size_t len, void *cookie);
    /* The state machine's own applied index of the group (0 if none). */
    uint64_t (*applied_index)(void *ctx, uint32_t group);
    /* A waiter must give up (leadership lost, or node closing): answer the
     * client with a retryable error. The entry may still commit later (then
     * apply() gets cookie NULL). */
    void (*aborted)(void *ctx, void *cookie);
    void (*role_changed)(void *ctx, uint32_t group, int is_leader,
                         uint64_t leader_id);
    /* Serialize the group's committed state machine into a malloc()ed
     * buffer (the driver frees it). Called only when a lagging follower
     * needs a snapshot, outside any transaction (snapshots are lazy: log
     * compaction records metadata only). 0 on success. */
    int (*snapshot_take)(void *ctx, uint32_t group, uint8_t **buf, size_t *len);
    /* Replace the group's state machine with a snapshot taken at `index`
     * and set its applied index to `index`; inside the flush transaction. */
    int (*snapshot_restore)(void *ctx, uint32_t group, const uint8_t *buf,
                            size_t len, uint64_t index);
    /* Optional: once per flush transaction, after the last apply() and
     * snapshot_restore() and before COMMIT, for writes the state machine
     * defers to the end of a batch (its applied indexes). */
    void (*applied_batch)(void *ctx);
    /* Optional: makes a flush's durable commit reach the disk off the
     * caller's thread (an fdatasync of the WAL, started now); the caller
     * then calls mom_raft_synced(). Without it, flushes sync inline. Never
     * used for a flush in which a sole voter wrote (it commits inside the
     * transaction, counting on the inline sync). */
    void (*sync_start)(void *ctx);
} mom_raft_callbacks_t;

/* The most entries snapshot_trailing_bytes keeps behind a snapshot (small
 * entries would otherwise hold many in memory). */
#define MOM_RAFT_TRAILING_MAX 65536

typedef struct {
    unsigned election_timeout_ms; /* base, randomized to 1x..2x */
    unsigned heartbeat_timeout_ms;
    unsigned install_snapshot_timeout_ms; /* leader retries after this */
    unsigned snapshot_threshold; /* applied entries between snapshots */
    unsigned snapshot_trailing;  /* entries kept behind a snapshot */
    /* More entries kept behind a snapshot while their data fit in this
     * many bytes per node, shared evenly by its groups (0:
     * snapshot_trailing alone), up to MOM_RAFT_TRAILING_MAX per group: a
     * follower that much behind catches up from the log, not from a copy
     * of the whole partition. libraft keeps them in memory too. */
    size_t snapshot_trailing_bytes;
    unsigned max_inflight_entries;
    /* Entry data per AppendEntries message (0: no limit); a single larger
     * entry still goes alone. Keep it under the transport's frame limit. */
    size_t max_message_bytes;
    int pre_vote;  /* pre-vote rounds (a rejoining node does not disrupt) */
    uint64_t seed; /* mixed with node and group ids for election timers */
} mom_raft_options_t;

typedef struct {
    uint64_t flushes;             /* flush transactions */
    uint64_t group_writes;        /* groups with writes, summed over flushes */
    uint64_t entries_written;     /* log entries written */
    uint64_t elided_flushes;      /* flushes that applied entries unwritten */
    uint64_t entries_applied;     /* commands given to apply() */
    uint64_t snapshots_taken;     /* compactions: metadata + log cut */
    uint64_t snapshots_sent;      /* state machines serialized for a follower */
    uint64_t snapshots_installed; /* received from a leader */
    uint64_t messages_sent;
    uint64_t messages_held;    /* sent only after a term/vote was durable */
    uint64_t messages_dropped; /* could not be built (e.g. entry missing) */
    uint64_t commits_told;     /* commit-only AppendEntries to followers */
    uint64_t lazy_flushes;     /* a leader's entries written without a sync */
    uint64_t lazy_syncs;       /* ...synced later on their own */
    uint64_t syncs_off_loop;   /* durable flushes synced by sync_start() */
    uint64_t bad_messages;     /* received and rejected */
} mom_raft_stats_t;

/* Defaults: 1000/100 ms timeouts, 30 s install, snapshot every 1024 applied
 * entries keeping 128, 1024 entries in flight, 1 MiB of entries per
 * AppendEntries message, pre-vote on. */
void mom_raft_options_default(mom_raft_options_t *o);

/* Creates the raft tables in db (owned by the caller, which must not hold a
 * transaction open across mom_raft_* calls). NULL on error. */
mom_raft_t *mom_raft_open(sqlite3 *db, uint64_t node_id,
                          const mom_raft_callbacks_t *cb,
                          const mom_raft_options_t *options);

/* Stops every group without flushing (flush first for a clean stop); the
 * waiters still pending get aborted(). */
void mom_raft_close(mom_raft_t *m);

/*
 * Starts a group from what SQLite holds. On the first start of a group
 * (nothing stored) with n_voters > 0 it bootstraps the configuration made
 * of these voters; with n_voters 0 the node waits to be added by a leader.
 */
int mom_raft_start_group(mom_raft_t *m, uint32_t group, const uint64_t *voters,
                         unsigned n_voters, uint64_t now_ms);

/*
 * Proposes a command (copied). Returns MOM_RAFT_OK and the index it will
 * have, or MOM_RAFT_NOT_LEADER with the known leader id (0 if none). The
 * entry is handed to Raft at the next mom_raft_flush().
 */
int mom_raft_submit(mom_raft_t *m, uint32_t group, const uint8_t *buf,
                    size_t len, void *cookie, uint64_t *index,
                    uint64_t *leader_id);

/* A serialized message from node `from`; buf is only read during the call. */
int mom_raft_receive(mom_raft_t *m, uint32_t group, uint64_t from,
                     const uint8_t *buf, size_t len, uint64_t now_ms);

/* Fires the Raft timeouts due at now_ms. */
void mom_raft_tick(mom_raft_t *m, uint64_t now_ms);

/* Earliest time a timeout is due (UINT64_MAX if no group runs). */
uint64_t mom_raft_next_deadline(const mom_raft_t *m);

/*
 * The sync that sync_start() began has ended: reports what the flush made
 * durable and sends what waited for it, as an inline sync does at the end
 * of mom_raft_flush(). Until then flushes write nothing (one sync at a
 * time); commands are still proposed and a leader's committed entries
 * applied.
 */
void mom_raft_synced(mom_raft_t *m, uint64_t now_ms);
/* Non-zero between sync_start() and mom_raft_synced(). */
int mom_raft_syncing(const mom_raft_t *m);

/* Non-zero when mom_raft_flush() has work: writes, commands to apply,
 * proposals, messages waiting for durability. */
int mom_raft_pending(const mom_raft_t *m);

/*
 * One group-commit step for all groups: hands queued proposals to Raft,
 * writes all pending log/term/vote/snapshot changes, applies committed
 * entries and takes due snapshots in ONE SQLite transaction, commits it,
 * then reports durability to Raft and sends the messages that had to wait
 * for it. A flush that only writes entries of groups this node leads with
 * two or more other voters, all heard from lately, is not synced: those
 * entries commit on the followers' writes, and this node counts its own
 * only after a later sync (docs/replication.md, "A leader's own write").
 */
void mom_raft_flush(mom_raft_t *m, uint64_t now_ms);

/*
 * Step 1 of mom_raft_flush() alone: hands the queued proposals to Raft, so
 * that the AppendEntries carrying them can be sent before the flush writes
 * them (a leader replicates in parallel with its own write and counts
 * itself only once that is durable).
 */
void mom_raft_propose(mom_raft_t *m, uint64_t now_ms);

/*
 * Once the proposals of this loop iteration are handed to Raft: a leader
 * sends the followers a commit index that nothing in flight carries (a
 * heartbeat anchored on the committed entry), so they apply it within
 * ~5 ms (all groups' together) rather than at the next heartbeat. Cheap
 * when there is nothing to tell. Also syncs the entries a leader wrote
 * without a sync (see mom_raft_flush) that did not commit within ~5 ms
 * without it. mom_raft_tell_due(): when either is due (loop time), 0 if
 * nothing is.
 */
void mom_raft_tell_commits(mom_raft_t *m, uint64_t now_ms);
uint64_t mom_raft_tell_due(const mom_raft_t *m);

/*
 * Applies, in a transaction of its own that is not synced (like an
 * apply-only flush), the entries of the groups this node leads that are
 * committed and already written: their results can be delivered before
 * mom_raft_flush() writes (and fsyncs) the next entries. Nothing is
 * reported to raft. No-op without such entries.
 */
void mom_raft_apply_committed(mom_raft_t *m);

/* 1 if this node leads the group; *leader_id gets the known leader. */
int mom_raft_leader(const mom_raft_t *m, uint32_t group, uint64_t *leader_id);

/*
 * Membership: on the leader, propose the group's configuration with `node`
 * given `role` (MOM_RAFT_ROLE_*) or removed (MOM_RAFT_REMOVE). One change at
 * a time; add a node as standby, let it catch up, then make it a voter.
 */
int mom_raft_change(mom_raft_t *m, uint32_t group, uint64_t node, int role,
                    uint64_t now_ms);

/*
 * Leadership transfer to `node` (0: the most up-to-date voter). A node that
 * lacks committed entries is refused (MOM_RAFT_BEHIND): the group takes no
 * writes during a transfer, which would last until it caught up.
 */
int mom_raft_transfer(mom_raft_t *m, uint32_t group, uint64_t node,
                      uint64_t now_ms);

const mom_raft_stats_t *mom_raft_stats(const mom_raft_t *m);

#endif /* MOM_RAFT_GROUP_H */
