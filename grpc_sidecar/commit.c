/*
 * The Raft host: one mom_raft_t for all the partitions this node replicates
 * on the libuv loop. A uv_timer fires Raft's timeouts; a uv_check handle
 * (right after the I/O callbacks of a loop iteration) runs the group-commit
 * flush, then hands the results to their submitters and lets the transport
 * send the Raft messages of the iteration as one batch per destination. A
 * uv_idle handle is active while work is pending so that poll never blocks
 * with it.
 *
 * Results are collected while the driver applies entries inside its flush
 * transaction (or, on a leader syncing inline, in the transaction that
 * applies what is committed and written before the flush writes the next
 * round) and
 * delivered only after that transaction committed; aborted
 * submissions are delivered the same way, outside any mom_raft_* call, so
 * that callbacks may submit again.
 *
 * In a cluster the fdatasync of a durable flush runs on a thread of its
 * own (wal_sync.c): a follower's loop used to stop for it (~1 ms per
 * round under load), holding the requests its nginx forwards and the
 * answers coming back behind its own write. Raft hears of the write once
 * the sync has ended (mom_raft_synced), so nothing counts on it before. A
 * single node keeps the inline sync: its answers wait for it anyway. With
 * the sync off the loop a leader syncs its own writes (never lazily) and
 * applies what is committed in the flush's transaction: one per round.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "log.h"
#include "raft_group.h"
#include "snapshot.h"
#include "wal_sync.h"

/* Flushes per loop iteration. One: an entry is applied by the flush after
 * the one that wrote it (a leader counts itself once its write is durable),
 * so under load every transaction both applies the previous batch and
 * writes the next (one fsync each), instead of two fsyncs per batch. The
 * idle handle runs the next iteration at once while work is pending. */
#define MOM_COMMIT_ROUNDS 1

typedef struct mom_commit_wait_s mom_commit_wait_t;
struct mom_commit_wait_s {
    mom_commit_done_cb done; /* NULL: the barrier of a new leader */
    void *data;
    uint32_t partition;
};

/* A committed entry or an aborted submission, waiting for delivery. */
typedef struct mom_commit_item_s mom_commit_item_t;
struct mom_commit_item_s {
    mom_commit_item_t *next;
    mom_commit_wait_t *wait; /* NULL: not submitted here */
    Mom__Command *cmd;       /* NULL: barrier, or aborted */
    mom_result_t res;
};

typedef struct {
    bool hosted;
    bool is_leader;
    bool ready; /* leader with an entry of its term committed */
    bool want_barrier;
    uint64_t leader;
} mom_commit_part_t;

struct mom_commit_s {
    uv_loop_t *loop;
    mom_store_t *st;
    const mom_conf_t *conf;
    const mom_placement_t *pl;
    mom_raft_t *raft;
    mom_commit_applied_cb applied;
    void *applied_data;
    mom_commit_transport_t tr;
    mom_commit_part_t *parts;
    uint32_t n_parts;
    mom_commit_item_t *head, **tail;
    uv_timer_t timer;
    uv_check_t check;
    uv_idle_t idle;
    uint64_t timer_due;
    mom_wal_sync_t *sync; /* NULL: flushes sync inline */
    int open_handles;
    bool closing;
    bool want_barriers;
    mom_commit_restored_cb restored;
    void *restored_data;
    bool *installed; /* per partition: restored in the current flush */
};

static void
mom_commit_fatal(const char *what)
{
    /* The flush transaction must not commit half of an apply: stop, and
     * let the restart recover from what SQLite committed. */
    mom_log_error("%s: stopping (a restart recovers from SQLite)", what);
    abort();
}

static mom_commit_item_t *
mom_commit_item(mom_commit_t *c, mom_commit_wait_t *wait)
{
    mom_commit_item_t *it = calloc(1, sizeof(*it));

    if (it == NULL) {
        mom_commit_fatal("out of memory");
    }
    it->wait = wait;
    mom_result_init(&it->res);
    *c->tail = it;
    c->tail = &it->next;
    return it;
}

/* --- driver callbacks (inside mom_raft_* calls) --- */

static void
mom_commit_send(void *ctx, uint32_t group, uint64_t to, const uint8_t *buf,
                size_t len)
{
    mom_commit_t *c = ctx;

    if (c->tr.send != NULL) {
        c->tr.send(c->tr.ctx, group, to, buf, len);
    }
}

static void
mom_commit_apply(void *ctx, uint32_t group, uint64_t index, const uint8_t *buf,
                 size_t len, void *cookie)
{
    mom_commit_t *c = ctx;
    mom_commit_item_t *it = mom_commit_item(c, cookie);

    if (len == 0) {
        /* A leader's barrier: no effect but its index. */
        if (mom_store_set_applied_index(c->st, group, index) != MOM_STORE_OK) {
            mom_commit_fatal("storage error applying a barrier");
        }
        return;
    }
    it->cmd = mom__command__unpack(NULL, len, buf);
    if (it->cmd == NULL) {
        /* Only a bug could commit such an entry; skip it, keep the index. */
        mom_log_error("group %" PRIu32 ": undecodable command at %" PRIu64,
                      group, index);
        mom_result_error(&it->res, 500, "Undecodable command");
        if (mom_store_set_applied_index(c->st, group, index) != MOM_STORE_OK) {
            mom_commit_fatal("storage error");
        }
        return;
    }
    if (mom_sm_apply(c->st, group, index, it->cmd, &it->res) != 0) {
        mom_commit_fatal("storage error applying a command");
    }
}

static void
mom_commit_applied_batch(void *ctx)
{
    mom_commit_t *c = ctx;

    if (mom_store_flush(c->st) != MOM_STORE_OK) {
        mom_commit_fatal("storage error writing applied indexes");
    }
}

static uint64_t
mom_commit_applied_index(void *ctx, uint32_t group)
{
    mom_commit_t *c = ctx;
    uint64_t index = 0;

    if (mom_store_applied_index(c->st, group, &index) != MOM_STORE_OK) {
        mom_commit_fatal("storage error reading an applied index");
    }
    return index;
}

static void
mom_commit_aborted(void *ctx, void *cookie)
{
    mom_commit_t *c = ctx;
    mom_commit_item_t *it = mom_commit_item(c, cookie);

    it->res.status = c->closing ? 503 : MOM_COMMIT_RETRY;
    mom_json_detail(&it->res.body, c->closing ? "Server shutting down"
                                              : "No leader for partition");
}

static void
mom_commit_role(void *ctx, uint32_t group, int is_leader, uint64_t leader_id)
{
    mom_commit_t *c = ctx;
    mom_commit_part_t *part = &c->parts[group];

    part->is_leader = is_leader != 0;
    part->leader = leader_id;
    part->ready = false;
    part->want_barrier = part->is_leader;
    c->want_barriers |= part->want_barrier;
    mom_log_debug("partition %" PRIu32 ": leader %" PRIu64 "%s", group,
                  leader_id, is_leader ? " (this node)" : "");
    if (c->tr.role != NULL) {
        c->tr.role(c->tr.ctx, group, part->is_leader, leader_id);
    }
}

static int
mom_commit_snapshot_take(void *ctx, uint32_t group, uint8_t **buf, size_t *len)
{
    mom_commit_t *c = ctx;
    sqlite3 *db = mom_store_db(c->st);
    bool own = sqlite3_get_autocommit(db) != 0;
    int rc;

    /* One read transaction: a consistent view of the partition. */
    if (own && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        return -1;
    }
    rc = mom_snapshot_take(c->st, c->n_parts, group, buf, len);
    if (own) {
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    return rc;
}

static int
mom_commit_snapshot_restore(void *ctx, uint32_t group, const uint8_t *buf,
                            size_t len, uint64_t index)
{
    mom_commit_t *c = ctx;

    mom_log_info("partition %" PRIu32 ": installing a snapshot at %" PRIu64,
                 group, index);
    if (group < c->n_parts) {
        c->installed[group] = true;
    }
    return mom_snapshot_restore(c->st, c->n_parts, group, buf, len, index);
}

/* --- delivery (outside mom_raft_* calls) --- */

static void
mom_commit_deliver(mom_commit_t *c)
{
    mom_commit_item_t *it;
    mom_commit_wait_t *w;

    for (uint32_t p = 0; p < c->n_parts; p++) {
        if (c->installed[p]) {
            c->installed[p] = false;
            if (c->restored != NULL) {
                c->restored(c->restored_data, c->n_parts, p);
            }
        }
    }
    while ((it = c->head) != NULL) {
        c->head = it->next;
        if (c->head == NULL) {
            c->tail = &c->head;
        }
        w = it->wait;
        if (it->cmd != NULL && it->res.status != 0 && c->applied != NULL) {
            c->applied(c->applied_data, it->cmd, &it->res);
        }
        if (w != NULL && w->done == NULL) {
            /* The barrier committed in this term: reads are safe now. */
            mom_commit_part_t *part = &c->parts[w->partition];

            part->ready = part->is_leader && it->res.status == 0;
        } else if (w != NULL) {
            w->done(w->data, &it->res);
        }
        free(w);
        mom_result_free(&it->res);
        if (it->cmd != NULL) {
            mom__command__free_unpacked(it->cmd, NULL);
        }
        free(it);
    }
}

static void
mom_commit_idle(uv_idle_t *idle)
{
    (void)idle; /* only keeps poll from blocking while work is pending */
}

static void
mom_commit_kick(mom_commit_t *c)
{
    if (!c->closing) {
        uv_idle_start(&c->idle, mom_commit_idle);
    }
}

/* A new leader commits an empty entry of its term before serving reads. */
static void
mom_commit_barriers(mom_commit_t *c)
{
    mom_commit_wait_t *w;
    uint64_t index, leader;

    if (!c->want_barriers) {
        return;
    }
    c->want_barriers = false;
    for (uint32_t p = 0; p < c->n_parts; p++) {
        if (!c->parts[p].want_barrier) {
            continue;
        }
        c->parts[p].want_barrier = false;
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            mom_commit_fatal("out of memory");
        }
        w->partition = p;
        if (mom_raft_submit(c->raft, p, NULL, 0, w, &index, &leader) !=
            MOM_RAFT_OK) {
            free(w); /* no longer leader: a new role change follows */
        }
    }
}

static void mom_commit_tick(uv_timer_t *timer);

/*
 * Raft's timeouts are rounded up to a common grid: the groups' heartbeats
 * and election timers then fire together (one wake-up, one batch per
 * destination) instead of one at a time, at a cost of a few ms of timing
 * precision that Raft does not need (heartbeat 100 ms, election 1-2 s).
 */
#define MOM_COMMIT_TICK_GRID_MS 25

static void
mom_commit_arm_timer(mom_commit_t *c)
{
    uint64_t due = mom_raft_next_deadline(c->raft), now = uv_now(c->loop);
    uint64_t tell = mom_raft_tell_due(c->raft);

    if (due != UINT64_MAX) {
        due = (due + MOM_COMMIT_TICK_GRID_MS - 1) / MOM_COMMIT_TICK_GRID_MS *
              MOM_COMMIT_TICK_GRID_MS;
    }
    if (tell != 0 && tell < due) {
        due = tell; /* followers wait for it: not on the grid */
    }
    if (c->closing || due == c->timer_due) {
        return;
    }
    c->timer_due = due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, mom_commit_tick, due > now ? due - now : 0, 0);
}

static void
mom_commit_run(uv_check_t *check)
{
    mom_commit_t *c = check->data;
    int rounds = 0;

    mom_commit_barriers(c);
    while (rounds++ < MOM_COMMIT_ROUNDS && mom_raft_pending(c->raft)) {
        if (c->sync != NULL) {
            /* What a majority has committed is answered first, in a
             * transaction of its own: the answers to requests forwarded
             * to us then leave with the next AppendEntries (one message
             * to each member instead of two). */
            mom_raft_apply_committed(c->raft);
            mom_commit_deliver(c);
        }
        if (c->tr.flush != NULL) {
            /* The AppendEntries of new proposals leave now: the followers'
             * writes overlap the leader's own (and its fsync). */
            mom_raft_propose(c->raft, uv_now(c->loop));
            c->tr.flush(c->tr.ctx);
        }
        if (c->sync == NULL) {
            /* What a majority has committed is answered before this node
             * writes and fsyncs the next entries. */
            mom_raft_apply_committed(c->raft);
        }
        mom_commit_deliver(c);
        mom_raft_flush(c->raft, uv_now(c->loop));
        mom_commit_deliver(c);
        mom_commit_barriers(c);
    }
    mom_raft_tell_commits(c->raft, uv_now(c->loop));
    if (c->tr.flush != NULL) {
        c->tr.flush(c->tr.ctx);
    }
    if (!mom_raft_pending(c->raft) && c->head == NULL) {
        uv_idle_stop(&c->idle);
    }
    mom_commit_arm_timer(c);
}

static void
mom_commit_tick(uv_timer_t *timer)
{
    mom_commit_t *c = timer->data;

    c->timer_due = 0;
    mom_raft_tick(c->raft, uv_now(c->loop));
    mom_commit_deliver(c);
    mom_commit_kick(c);
}

/* --- public --- */

/* A database written by the local log of earlier versions recorded applied
 * indexes that mean nothing to Raft groups: forget them once. */
static int
mom_commit_forget_local_log(sqlite3 *db)
{
    sqlite3_stmt *s;
    int rc, empty;

    if (sqlite3_prepare_v2(db,
                           "SELECT NOT EXISTS (SELECT 1 FROM raft_state) "
                           "AND NOT EXISTS (SELECT 1 FROM raft_log)",
                           -1, &s, NULL) != SQLITE_OK) {
        return -1;
    }
    rc = sqlite3_step(s);
    empty = rc == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) {
        return -1;
    }
    if (!empty) {
        return 0;
    }
    return sqlite3_exec(db, "DELETE FROM meta WHERE key LIKE 'applied_index.%'",
                        NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : -1;
}

static int
mom_commit_start_groups(mom_commit_t *c)
{
    uint32_t self = mom_placement_self(c->pl);
    uint64_t voters[MOM_CONF_MAX_MEMBERS];
    const uint32_t *replicas;
    size_t n;

    for (uint32_t p = 0; p < c->n_parts; p++) {
        if (!mom_placement_is_replica(c->pl, p, self)) {
            continue;
        }
        replicas = mom_placement_replicas(c->pl, p, &n);
        for (size_t i = 0; i < n; i++) {
            voters[i] = replicas[i];
        }
        if (mom_raft_start_group(c->raft, p, voters, (unsigned)n,
                                 uv_now(c->loop)) != MOM_RAFT_OK) {
            mom_log_error("cannot start the Raft group of partition %" PRIu32,
                          p);
            return -1;
        }
        c->parts[p].hosted = true;
    }
    return 0;
}

static void mom_commit_free(mom_commit_t *c);

/* A failed sync leaves the log not durable: stop (mom_commit_fatal). */
static void
mom_commit_sync_check(int err)
{
    if (err != 0) {
        mom_log_error("WAL fdatasync: %s", strerror(err));
        mom_commit_fatal("the Raft log is not durable");
    }
}

/* A flush's sync started by the driver (cb.sync_start). */
static void
mom_commit_sync_start(void *ctx)
{
    mom_commit_t *c = ctx;

    mom_wal_sync_start(c->sync);
}

static void
mom_commit_synced(void *ctx, int err)
{
    mom_commit_t *c = ctx;

    mom_commit_sync_check(err);
    if (c->closing) {
        return;
    }
    mom_raft_synced(c->raft, uv_now(c->loop));
    mom_commit_deliver(c);
    if (c->tr.flush != NULL) {
        c->tr.flush(c->tr.ctx);
    }
    mom_commit_kick(c);
}

/* One of the loop's handles on c is closed: the last one frees c. */
static void
mom_commit_release(mom_commit_t *c)
{
    if (--c->open_handles == 0) {
        mom_commit_free(c);
    }
}

static void
mom_commit_sync_closed(void *ctx)
{
    mom_commit_release(ctx);
}

/* The WAL of the store's database, synced off the loop in a cluster. */
static void
mom_commit_sync_open(mom_commit_t *c, mom_raft_callbacks_t *cb)
{
    const char *db = sqlite3_db_filename(mom_store_db(c->st), "main");
    char path[4096];

    if (c->conf->n_members <= 1 || db == NULL || db[0] == '\0' ||
        (size_t)snprintf(path, sizeof(path), "%s-wal", db) >= sizeof(path)) {
        return;
    }
    c->sync = mom_wal_sync_new(c->loop, path, mom_commit_synced, c);
    if (c->sync != NULL) {
        cb->sync_start = mom_commit_sync_start;
    }
}

static void
mom_commit_free(mom_commit_t *c)
{
    free(c->parts);
    free(c->installed);
    free(c);
}

/* mom_commit_new failed after the sync thread started. */
static void
mom_commit_abandon(mom_commit_t *c)
{
    if (c->sync != NULL) {
        mom_wal_sync_close(c->sync, NULL);
    }
    mom_commit_free(c);
}

/* Waits for a sync in flight and reports it (closing). */
static void
mom_commit_sync_settle(mom_commit_t *c)
{
    if (c->sync == NULL || !mom_raft_syncing(c->raft)) {
        return;
    }
    mom_commit_sync_check(mom_wal_sync_wait(c->sync));
    mom_raft_synced(c->raft, uv_now(c->loop));
}

mom_commit_t *
mom_commit_new(uv_loop_t *loop, mom_store_t *st, const mom_conf_t *conf,
               const mom_placement_t *pl, mom_commit_applied_cb applied,
               void *applied_data)
{
    mom_raft_callbacks_t cb = {
        .send = mom_commit_send,
        .apply = mom_commit_apply,
        .applied_batch = mom_commit_applied_batch,
        .applied_index = mom_commit_applied_index,
        .aborted = mom_commit_aborted,
        .role_changed = mom_commit_role,
        .snapshot_take = mom_commit_snapshot_take,
        .snapshot_restore = mom_commit_snapshot_restore,
    };
    mom_raft_options_t opt;
    mom_commit_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->loop = loop;
    c->st = st;
    c->conf = conf;
    c->pl = pl;
    c->applied = applied;
    c->applied_data = applied_data;
    c->tail = &c->head;
    c->n_parts = mom_placement_partitions(pl);
    c->parts = calloc(c->n_parts, sizeof(*c->parts));
    c->installed = calloc(c->n_parts, sizeof(bool));
    cb.ctx = c;
    mom_commit_sync_open(c, &cb);
    mom_raft_options_default(&opt);
    opt.snapshot_threshold = conf->snapshot_threshold;
    opt.snapshot_trailing = conf->snapshot_trailing;
    opt.snapshot_trailing_bytes = conf->snapshot_trailing_bytes;
    opt.seed = (uint64_t)uv_hrtime();
    if (c->parts == NULL || c->installed == NULL) {
        mom_commit_abandon(c);
        return NULL;
    }
    c->raft = mom_raft_open(mom_store_db(st), conf->node_id, &cb, &opt);
    if (c->raft == NULL || mom_commit_forget_local_log(mom_store_db(st)) != 0) {
        mom_log_error("cannot open the Raft storage");
        mom_raft_close(c->raft);
        mom_commit_abandon(c);
        return NULL;
    }
    uv_update_time(loop);
    if (mom_commit_start_groups(c) != 0) {
        mom_raft_close(c->raft);
        mom_commit_deliver(c);
        mom_commit_abandon(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    uv_check_init(loop, &c->check);
    uv_idle_init(loop, &c->idle);
    c->timer.data = c;
    c->check.data = c;
    c->idle.data = c;
    c->open_handles = c->sync != NULL ? 4 : 3;
    uv_check_start(&c->check, mom_commit_run);
    mom_commit_kick(c);
    return c;
}

void
mom_commit_on_applied(mom_commit_t *c, mom_commit_applied_cb applied,
                      void *applied_data)
{
    c->applied = applied;
    c->applied_data = applied_data;
}

void
mom_commit_on_restored(mom_commit_t *c, mom_commit_restored_cb cb, void *data)
{
    c->restored = cb;
    c->restored_data = data;
}

void
mom_commit_set_transport(mom_commit_t *c, const mom_commit_transport_t *t)
{
    c->tr = *t;
    /* Tell the new transport the roles known so far. */
    for (uint32_t p = 0; p < c->n_parts && c->tr.role != NULL; p++) {
        if (c->parts[p].hosted && c->parts[p].leader != 0) {
            c->tr.role(c->tr.ctx, p, c->parts[p].is_leader, c->parts[p].leader);
        }
    }
}

int
mom_commit_submit(mom_commit_t *c, uint32_t partition, const Mom__Command *cmd,
                  mom_commit_done_cb done, void *data, uint64_t *leader_hint)
{
    size_t len = mom__command__get_packed_size(cmd);
    mom_commit_wait_t *w;
    uint8_t stack[4096], *buf = stack;
    uint64_t index, leader = 0;
    int rc;

    *leader_hint = 0;
    if (c->closing || partition >= c->n_parts) {
        return MOM_COMMIT_FAILED;
    }
    if (!c->parts[partition].is_leader) {
        *leader_hint = c->parts[partition].leader;
        return MOM_COMMIT_NOT_LEADER;
    }
    w = calloc(1, sizeof(*w));
    if (len > sizeof(stack)) {
        buf = malloc(len);
    }
    if (w == NULL || buf == NULL) {
        free(w);
        return MOM_COMMIT_FAILED;
    }
    w->done = done;
    w->data = data;
    w->partition = partition;
    mom__command__pack(cmd, buf);
    rc = mom_raft_submit(c->raft, partition, buf, len, w, &index, &leader);
    if (buf != stack) {
        free(buf);
    }
    if (rc != MOM_RAFT_OK) {
        free(w);
        *leader_hint = leader;
        return rc == MOM_RAFT_NOT_LEADER ? MOM_COMMIT_NOT_LEADER
                                         : MOM_COMMIT_FAILED;
    }
    mom_commit_kick(c);
    return MOM_COMMIT_OK;
}

bool
mom_commit_ready(const mom_commit_t *c, uint32_t partition, uint64_t *leader)
{
    const mom_commit_part_t *part;

    *leader = 0;
    if (partition >= c->n_parts) {
        return false;
    }
    part = &c->parts[partition];
    *leader = part->leader;
    return part->is_leader && part->ready;
}

bool
mom_commit_hosts(const mom_commit_t *c, uint32_t partition)
{
    return partition < c->n_parts && c->parts[partition].hosted;
}

int
mom_commit_transfer(mom_commit_t *c, uint32_t partition, uint64_t node)
{
    int rc;

    if (c->closing || partition >= c->n_parts ||
        !c->parts[partition].is_leader) {
        return -1;
    }
    rc = mom_raft_transfer(c->raft, partition, node, uv_now(c->loop));
    mom_commit_deliver(c);
    mom_commit_kick(c);
    return rc == MOM_RAFT_OK ? 0 : -1;
}

void
mom_commit_receive(mom_commit_t *c, uint32_t group, uint64_t from,
                   const uint8_t *buf, size_t len)
{
    if (c->closing) {
        return;
    }
    mom_raft_receive(c->raft, group, from, buf, len, uv_now(c->loop));
    mom_commit_deliver(c);
    mom_commit_kick(c);
}

static void
mom_commit_closed(uv_handle_t *h)
{
    mom_commit_release(h->data);
}

void
mom_commit_close(mom_commit_t *c)
{
    /* What is committable now is committed and answered; the rest gets
     * 503 (the client may retry: commands carry idempotency keys). */
    mom_commit_sync_settle(c);
    if (mom_raft_pending(c->raft)) {
        mom_raft_flush(c->raft, uv_now(c->loop));
        mom_commit_sync_settle(c);
    }
    mom_commit_deliver(c);
    c->closing = true;
    mom_raft_close(c->raft);
    c->raft = NULL;
    mom_commit_deliver(c);
    if (c->tr.flush != NULL) {
        c->tr.flush(c->tr.ctx);
    }
    uv_close((uv_handle_t *)&c->timer, mom_commit_closed);
    uv_close((uv_handle_t *)&c->check, mom_commit_closed);
    uv_close((uv_handle_t *)&c->idle, mom_commit_closed);
    if (c->sync != NULL) {
        mom_wal_sync_close(c->sync, mom_commit_sync_closed);
    }
}
