/*
 * Internals of the Raft driver shared by raft_group.c (events, client calls,
 * flush orchestration) and raft_persist.c (unflushed log, messages, writes,
 * apply, snapshots, start). Not an API.
 */
#ifndef MOM_RAFT_GROUP_INT_H
#define MOM_RAFT_GROUP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>

#include "raft_group.h"
#include "raft_store.h"

/* Followers whose commit index a leader tracks (larger groups get it with
 * libraft's own messages only). */
#define MOM_RAFT_TOLD_MAX 8

/* Entries of one update that are not yet in SQLite. */
typedef struct mom_raft_chunk_s mom_raft_chunk_t;
struct mom_raft_chunk_s {
    mom_raft_chunk_t *next;
    uint64_t index; /* of entries[0] */
    unsigned n;
    void *batch; /* raft_malloc()ed data the entries point into */
    struct raft_entry entries[];
};

/* A serialized message waiting for its term/vote to be durable. */
typedef struct mom_raft_held_s mom_raft_held_t;
struct mom_raft_held_s {
    mom_raft_held_t *next;
    uint64_t to;
    size_t len;
    uint8_t buf[];
};

typedef struct {
    uint64_t index;
    uint64_t term;
    void *cookie;
} mom_raft_waiter_t;

typedef struct {
    size_t len;
} mom_raft_prop_t;

typedef struct {
    uint64_t index;
    struct raft_configuration conf;
} mom_raft_conf_event_t;

/* A follower as a leader sees it (raft_leader.c): the commit index it was
 * last sent, and when a message last came from it (loop time). */
typedef struct {
    uint64_t id;
    uint64_t commit;
    uint64_t heard;
} mom_raft_told_t;

struct mom_raft_group_s {
    mom_raft_t *m;
    uint32_t id;
    struct raft raft;
    uint64_t timeout;     /* raft_timeout() after the last step */
    uint64_t last_now;    /* time of the last step */
    uint64_t leader_tick; /* time of the last timeout fed as leader, or 0 */

    /* Term and vote as written or to be written (state_dirty). */
    uint64_t term;
    uint64_t vote;
    int state_dirty;

    /* Log changes not yet in SQLite: a truncation, then chunks in order. */
    mom_raft_chunk_t *tail;
    mom_raft_chunk_t *tail_last;
    uint64_t truncate_from; /* 0: none */
    uint64_t stored_last;   /* last index in SQLite, or elided (below) */
    /* Chunks already written but not applied yet, in order: the apply
     * takes their entries from memory instead of reading them back (at
     * most MOM_RAFT_KEPT_MAX entries; older ones are read from SQLite). */
    mom_raft_chunk_t *kept;
    mom_raft_chunk_t *kept_last;
    size_t kept_n;
    /* A group whose only member is this node applies the entries of a
     * flush from memory, in the transaction that would have written them,
     * and records a snapshot at its applied index instead of the entries
     * (mom_raft_group_settle): `elided` during such a flush. */
    int elided;
    int log_rows; /* raft_log may hold rows of the group */

    /* A snapshot from the leader, not yet persisted (then reported). */
    int installing;
    int installed;
    struct raft_snapshot_metadata install_meta;
    struct raft_buffer install_data;

    mom_raft_held_t *held;
    mom_raft_held_t *held_last;

    /* Applying: `applied` is the last entry handled (commands applied or
     * skipped as already applied, configurations reported to raft). */
    uint64_t applied;
    uint64_t applied_term;
    uint64_t sm_applied; /* the state machine's applied index, per flush */
    uint64_t snap_index;
    /* Entries applied since the last snapshot taken, and their bytes: the
     * size of what snapshot_trailing_bytes keeps. */
    uint64_t snap_entries, snap_bytes;
    unsigned snap_trailing; /* entries kept behind the snapshot taken */
    uint8_t *conf; /* configuration committed as of `applied`, encoded */
    size_t conf_len;
    uint64_t conf_index;
    mom_raft_conf_event_t *conf_events;
    unsigned n_conf_events;
    unsigned cap_conf_events;
    int snap_taken;
    struct raft_snapshot_metadata snap_meta;

    /* Waiting submitters, by increasing index (a ring). */
    mom_raft_waiter_t *waiters;
    size_t w_head;
    size_t w_n;
    size_t w_cap;

    /* Proposals queued until the next flush; prop_first is the index the
     * first one will get. */
    mom_raft_prop_t *props;
    size_t n_props;
    size_t cap_props;
    uint8_t *prop_data;
    size_t prop_len;
    size_t prop_cap;
    uint64_t prop_first;
    /* The last index and term of the proposals last handed to raft: the
     * next ones wait until it commits (mom_raft_props_held). */
    uint64_t round_last;
    uint64_t round_term;
    /* A leader's last entry written by a flush that was not synced (see
     * mom_raft_group_lazy), 0 if none: not reported persisted until a
     * sync. */
    uint64_t lazy_last;
    uint64_t lazy_at; /* when lazy_last was written */

    /* Role last reported through role_changed(). */
    int is_leader;
    uint64_t leader_id;

    /* The commit index each follower was last sent (every AppendEntries
     * passes mom_raft_note_sent), for mom_raft_tell_commits; told_all is
     * the commit index all of them were sent. */
    mom_raft_told_t told[MOM_RAFT_TOLD_MAX];
    uint64_t told_all;
    unsigned char ae_version; /* libraft's AppendEntries message version */
};

struct mom_raft_s {
    sqlite3 *db;
    mom_raft_store_t *store;
    uint64_t node_id;
    mom_raft_callbacks_t cb;
    mom_raft_options_t opt;
    mom_raft_group_t **groups; /* sorted by id */
    size_t n_groups;
    size_t cap_groups;
    mom_raft_stats_t stats;
    uint64_t tell_due; /* when commit indexes are told, or 0 */
    uint64_t sync_due; /* when lazily written entries are synced, or 0 */
    int syncing;       /* a flush's sync runs off the loop (sync_start) */
};

void *mom_raft_xmalloc(size_t n);
void *mom_raft_xrealloc(void *p, size_t n);
mom_raft_group_t *mom_raft_find(const mom_raft_t *m, uint32_t id);
/* Pops the waiters up to index; the cookie if (index, term) is ours. */
void *mom_raft_waiter_take(mom_raft_group_t *g, uint64_t index, uint64_t term);
/* raft_step() with an event built by raft_persist.c. */
void mom_raft_feed(mom_raft_group_t *g, struct raft_event *ev, uint64_t now_ms);

/* raft_persist.c */
void mom_raft_log_add(mom_raft_group_t *g, uint64_t index,
                      struct raft_entry *entries, unsigned n);
void mom_raft_install_begin(mom_raft_group_t *g,
                            struct raft_snapshot_metadata *meta,
                            struct raft_buffer *data);
void mom_raft_send(mom_raft_group_t *g, const struct raft_message *msg);
void mom_raft_note_sent(mom_raft_group_t *g, const struct raft_message *msg);
void mom_raft_log_discard(mom_raft_group_t *g);
int mom_raft_load_start(mom_raft_group_t *g, const uint64_t *voters,
                        unsigned n_voters, struct raft_event *ev);
void mom_raft_load_done(mom_raft_group_t *g, struct raft_event *ev);
int mom_raft_group_pending(const mom_raft_group_t *g);
/* Queued proposals wait for the previous round to commit. */
int mom_raft_props_held(const mom_raft_group_t *g);
int mom_raft_group_has_writes(const mom_raft_group_t *g);
/* The group's only voter is this node, its leader. */
int mom_raft_group_sole_voter(mom_raft_group_t *g);
int mom_raft_group_write(mom_raft_group_t *g);
void mom_raft_group_persist_early(mom_raft_group_t *g, uint64_t now_ms);
void mom_raft_group_apply(mom_raft_group_t *g);
/* A leader group with committed entries already written (or kept). */
int mom_raft_group_applicable(mom_raft_group_t *g);
/* Applies them (inside a transaction). */
void mom_raft_group_apply_written(mom_raft_group_t *g);
void mom_raft_group_settle(mom_raft_group_t *g);
void mom_raft_group_durable(mom_raft_group_t *g, uint64_t now_ms);

/* raft_leader.c */
/* A message came from follower `from` (for mom_raft_group_lazy). */
void mom_raft_heard(mom_raft_group_t *g, uint64_t from, uint64_t now_ms);
/* Whether this flush may write the group's entries without a sync. */
int mom_raft_group_lazy(mom_raft_group_t *g, uint64_t now_ms);
/* After the flush commit: the groups marked lazy_last were written without
 * a sync (lazy), or everything is durable now (!lazy). */
void mom_raft_lazy_flushed(mom_raft_t *m, int lazy, uint64_t now_ms);

#endif /* MOM_RAFT_GROUP_INT_H */
