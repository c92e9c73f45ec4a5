/*
 * A deterministic in-process cluster for the Raft driver tests: N nodes,
 * each with its own SQLite file (in a temp dir), its own mom_raft_t and a
 * simple state machine in the same database (an append-only list per group,
 * with its applied index); virtual time; a message network we control
 * (delay, loss, partitions); crash = close everything without flushing,
 * restart = reopen from SQLite. Header-only: included by test_raft*.c.
 */
#ifndef MOM_RAFT_SIM_H
#define MOM_RAFT_SIM_H

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "raft_codec.h"
#include "raft_codec.h"
#include "raft_group.h"

#define SIM_MAX_NODES 5
#define SIM_MAX_GROUPS 64
#define SIM_NEVER UINT64_MAX

typedef struct sim_s sim_t;

/* A client request: the cookie given to submit. */
typedef struct {
    uint32_t group;
    uint64_t seq;
    uint64_t index;
    int state; /* 0 waiting, 1 applied with our cookie, 2 aborted */
} sim_req_t;

typedef struct {
    uint64_t at;
    uint64_t order;
    uint32_t group;
    uint64_t from;
    uint64_t to;
    size_t len;
    uint8_t *buf;
} sim_msg_t;

typedef struct {
    sim_t *sim;
    uint64_t id;
    int up;
    char path[300];
    sqlite3 *db;
    mom_raft_t *raft;
    sqlite3_stmt *st_insert, *st_applied_get, *st_applied_set;
    uint64_t next_flush; /* SIM_NEVER: nothing to flush */
    uint64_t sync_done;  /* an off-loop sync ends then (SIM_NEVER: none) */
    uint64_t syncs_started;
    uint64_t restores; /* snapshot_restore() calls */
    uint64_t aborted;
    uint64_t stale_applies; /* apply() at or below the applied index */
} sim_node_t;

struct sim_s {
    unsigned n;
    unsigned n_voters; /* nodes 1..n_voters bootstrap; others join later */
    sim_node_t nodes[SIM_MAX_NODES];
    unsigned groups;
    uint64_t now;
    char dir[256];
    mom_raft_options_t opt;
    unsigned delay_min, delay_max, loss_pct, disk_ms;
    /* > 0: durable flushes sync off the loop (sync_start) and take this
     * long; the databases then run with synchronous = FULL. */
    unsigned sync_ms;
    int cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* 1: from -/-> to */
    uint64_t last_at[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
    sim_msg_t *heap;
    size_t n_heap, cap_heap;
    uint64_t order;
    uint64_t rng;
    uint64_t delivered, dropped;
    uint64_t cookies_applied; /* apply() calls with a submitter's cookie */
    int apply_early;          /* mom_raft_apply_committed() before each flush */
    uint64_t applied_early;   /* cookies applied by it */
    uint64_t checked;         /* messages checked by sim_check_durable() */
    size_t max_len;           /* largest message sent */
};

static uint64_t
sim_rand(sim_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

/* --- message heap, ordered by (at, order) --------------------------------- */

static int
sim_msg_before(const sim_msg_t *a, const sim_msg_t *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void
sim_heap_push(sim_t *s, sim_msg_t m)
{
    size_t i, p;
    sim_msg_t t;

    if (s->n_heap == s->cap_heap) {
        s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 1024;
        s->heap = realloc(s->heap, s->cap_heap * sizeof *s->heap);
        assert_non_null(s->heap);
    }
    i = s->n_heap++;
    s->heap[i] = m;
    while (i > 0) {
        p = (i - 1) / 2;
        if (!sim_msg_before(&s->heap[i], &s->heap[p])) {
            break;
        }
        t = s->heap[p];
        s->heap[p] = s->heap[i];
        s->heap[i] = t;
        i = p;
    }
}

static sim_msg_t
sim_heap_pop(sim_t *s)
{
    sim_msg_t top = s->heap[0], t;
    size_t i = 0, l, r, m;

    s->heap[0] = s->heap[--s->n_heap];
    for (;;) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;
        if (l < s->n_heap && sim_msg_before(&s->heap[l], &s->heap[m])) {
            m = l;
        }
        if (r < s->n_heap && sim_msg_before(&s->heap[r], &s->heap[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        t = s->heap[m];
        s->heap[m] = s->heap[i];
        s->heap[i] = t;
        i = m;
    }
    return top;
}

/* --- the state machine: an append-only list per group ----------------------
 */

static uint64_t
sm_applied(sim_node_t *n, uint32_t group)
{
    uint64_t v = 0;

    sqlite3_bind_int(n->st_applied_get, 1, (int)group);
    if (sqlite3_step(n->st_applied_get) == SQLITE_ROW) {
        v = (uint64_t)sqlite3_column_int64(n->st_applied_get, 0);
    }
    sqlite3_reset(n->st_applied_get);
    return v;
}

static void
sm_set_applied(sim_node_t *n, uint32_t group, uint64_t index)
{
    sqlite3_bind_int(n->st_applied_set, 1, (int)group);
    sqlite3_bind_int64(n->st_applied_set, 2, (sqlite3_int64)index);
    assert_int_equal(sqlite3_step(n->st_applied_set), SQLITE_DONE);
    sqlite3_reset(n->st_applied_set);
}

static uint64_t
sim_query(sim_node_t *n, const char *sql, uint32_t group)
{
    sqlite3_stmt *st;
    uint64_t v = 0;

    assert_int_equal(sqlite3_prepare_v2(n->db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int(st, 1, (int)group);
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/*
 * The durability order, checked on every message that leaves a node: a
 * granted vote and a candidate's request are in SQLite (term and vote), and
 * an acknowledged entry is in the log or in the snapshot.
 */
static void
sim_check_durable(sim_node_t *n, uint32_t group, uint64_t to,
                  const uint8_t *buf, size_t len)
{
    struct raft_message m;
    uint64_t term, vote, last, snap;

    assert_int_equal(mom_raft_decode(buf, len, &m), 0);
    term = sim_query(n, "SELECT term FROM raft_state WHERE grp = ?1", group);
    vote = sim_query(n, "SELECT vote FROM raft_state WHERE grp = ?1", group);
    n->sim->checked++;
    switch (m.type) {
    case RAFT_REQUEST_VOTE:
        if (!m.request_vote.pre_vote) {
            assert_true(term >= m.request_vote.term);
            assert_true(term > m.request_vote.term || vote == n->id);
        }
        break;
    case RAFT_REQUEST_VOTE_RESULT:
        if (m.request_vote_result.vote_granted &&
            !m.request_vote_result.pre_vote) {
            assert_true(term >= m.request_vote_result.term);
            assert_true(term > m.request_vote_result.term || vote == to);
        }
        break;
    case RAFT_APPEND_ENTRIES_RESULT:
        assert_true(term >= m.append_entries_result.term);
        if (m.append_entries_result.rejected == 0) {
            last = sim_query(n, "SELECT MAX(idx) FROM raft_log WHERE grp = ?1",
                             group);
            snap = sim_query(
                n, "SELECT snap_idx FROM raft_state WHERE grp = ?1", group);
            assert_true(last >= m.append_entries_result.last_log_index ||
                        snap >= m.append_entries_result.last_log_index);
        }
        break;
    default:
        break;
    }
    mom_raft_message_release(&m);
}

static void
cb_send(void *ctx, uint32_t group, uint64_t to, const uint8_t *buf, size_t len)
{
    sim_node_t *n = ctx;
    sim_t *s = n->sim;
    sim_msg_t m;
    uint64_t at;

    assert_true(to >= 1 && to <= s->n && to != n->id);
    sim_check_durable(n, group, to, buf, len);
    if (len > s->max_len) {
        s->max_len = len;
    }
    if (s->cut[n->id][to] ||
        (s->loss_pct > 0 && sim_rand(s) % 100 < s->loss_pct)) {
        s->dropped++;
        return;
    }
    at = s->now + s->delay_min +
         (s->delay_max > s->delay_min
              ? sim_rand(s) % (s->delay_max - s->delay_min + 1)
              : 0);
    if (at < s->last_at[n->id][to]) {
        at = s->last_at[n->id][to]; /* in order per destination */
    }
    s->last_at[n->id][to] = at;
    m.at = at;
    m.order = s->order++;
    m.group = group;
    m.from = n->id;
    m.to = to;
    m.len = len;
    m.buf = malloc(len);
    assert_non_null(m.buf);
    memcpy(m.buf, buf, len);
    sim_heap_push(s, m);
}

static void
cb_apply(void *ctx, uint32_t group, uint64_t index, const uint8_t *buf,
         size_t len, void *cookie)
{
    sim_node_t *n = ctx;
    sim_req_t *req = cookie;

    if (index <= sm_applied(n, group)) {
        n->stale_applies++;
    }
    sqlite3_bind_int(n->st_insert, 1, (int)group);
    sqlite3_bind_int64(n->st_insert, 2, (sqlite3_int64)index);
    sqlite3_bind_blob(n->st_insert, 3, buf, (int)len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(n->st_insert), SQLITE_DONE);
    sqlite3_reset(n->st_insert);
    sm_set_applied(n, group, index);
    if (req != NULL) {
        assert_int_equal(req->state, 0);
        assert_int_equal(req->index, index);
        req->state = 1;
        n->sim->cookies_applied++;
    }
}

static uint64_t
cb_applied_index(void *ctx, uint32_t group)
{
    return sm_applied(ctx, group);
}

static void
cb_aborted(void *ctx, void *cookie)
{
    sim_node_t *n = ctx;
    sim_req_t *req = cookie;

    assert_int_equal(req->state, 0);
    req->state = 2;
    n->aborted++;
}

static void
cb_role_changed(void *ctx, uint32_t group, int is_leader, uint64_t leader_id)
{
    (void)ctx;
    (void)group;
    (void)is_leader;
    (void)leader_id;
}

/* Snapshot format: repeated (u64 index, u32 len, bytes), host order. */
static int
cb_snapshot_take(void *ctx, uint32_t group, uint8_t **buf, size_t *len)
{
    sim_node_t *n = ctx;
    sqlite3_stmt *st;
    size_t cap = 1024, used = 0, l;
    uint8_t *out = malloc(cap);
    uint64_t idx;
    uint32_t l32;

    assert_non_null(out);
    assert_int_equal(sqlite3_prepare_v2(n->db,
                                        "SELECT idx, data FROM sm_list WHERE "
                                        "grp = ?1 ORDER BY idx",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, (int)group);
    while (sqlite3_step(st) == SQLITE_ROW) {
        idx = (uint64_t)sqlite3_column_int64(st, 0);
        l = (size_t)sqlite3_column_bytes(st, 1);
        while (used + 12 + l > cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        l32 = (uint32_t)l;
        memcpy(out + used, &idx, 8);
        memcpy(out + used + 8, &l32, 4);
        memcpy(out + used + 12, sqlite3_column_blob(st, 1), l);
        used += 12 + l;
    }
    sqlite3_finalize(st);
    *buf = out;
    *len = used;
    return 0;
}

static int
cb_snapshot_restore(void *ctx, uint32_t group, const uint8_t *buf, size_t len,
                    uint64_t index)
{
    sim_node_t *n = ctx;
    char sql[64];
    size_t off = 0;
    uint64_t idx;
    uint32_t l;

    snprintf(sql, sizeof sql, "DELETE FROM sm_list WHERE grp = %u", group);
    assert_int_equal(sqlite3_exec(n->db, sql, NULL, NULL, NULL), SQLITE_OK);
    while (off < len) {
        assert_true(off + 12 <= len);
        memcpy(&idx, buf + off, 8);
        memcpy(&l, buf + off + 8, 4);
        assert_true(off + 12 + l <= len);
        sqlite3_bind_int(n->st_insert, 1, (int)group);
        sqlite3_bind_int64(n->st_insert, 2, (sqlite3_int64)idx);
        sqlite3_bind_blob(n->st_insert, 3, buf + off + 12, (int)l,
                          SQLITE_STATIC);
        assert_int_equal(sqlite3_step(n->st_insert), SQLITE_DONE);
        sqlite3_reset(n->st_insert);
        off += 12 + l;
    }
    sm_set_applied(n, group, index);
    n->restores++;
    return 0;
}

/* --- nodes -------------------------------------------------------------- */

static void
cb_sync_start(void *ctx)
{
    sim_node_t *n = ctx;

    assert_true(n->sync_done == SIM_NEVER); /* one at a time */
    n->sync_done = n->sim->now + n->sim->sync_ms;
    n->syncs_started++;
}

static void
sim_node_open(sim_t *s, sim_node_t *n)
{
    static const char schema[] =
        "CREATE TABLE IF NOT EXISTS sm_list(grp INTEGER, idx INTEGER,"
        " data BLOB, PRIMARY KEY (grp, idx));"
        "CREATE TABLE IF NOT EXISTS sm_applied(grp INTEGER PRIMARY KEY,"
        " idx INTEGER);";
    mom_raft_callbacks_t cb = {.ctx = n,
                               .send = cb_send,
                               .apply = cb_apply,
                               .applied_index = cb_applied_index,
                               .aborted = cb_aborted,
                               .role_changed = cb_role_changed,
                               .snapshot_take = cb_snapshot_take,
                               .snapshot_restore = cb_snapshot_restore};
    uint64_t voters[SIM_MAX_NODES];
    unsigned i;

    assert_int_equal(sqlite3_open(n->path, &n->db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(n->db,
                                  s->sync_ms > 0 ? "PRAGMA journal_mode = WAL;"
                                                   "PRAGMA synchronous = FULL;"
                                                 : "PRAGMA journal_mode = WAL;"
                                                   "PRAGMA synchronous = OFF;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(n->db, schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(n->db,
                                        "INSERT INTO sm_list(grp, idx, data) "
                                        "VALUES (?1, ?2, ?3)",
                                        -1, &n->st_insert, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(n->db,
                                        "SELECT idx FROM sm_applied WHERE "
                                        "grp = ?1",
                                        -1, &n->st_applied_get, NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(n->db,
                           "INSERT OR REPLACE INTO sm_applied(grp, idx) "
                           "VALUES (?1, ?2)",
                           -1, &n->st_applied_set, NULL),
        SQLITE_OK);
    if (s->sync_ms > 0) {
        cb.sync_start = cb_sync_start;
    }
    n->sync_done = SIM_NEVER;
    n->raft = mom_raft_open(n->db, n->id, &cb, &s->opt);
    assert_non_null(n->raft);
    for (i = 0; i < s->n_voters; i++) {
        voters[i] = i + 1;
    }
    for (i = 0; i < s->groups; i++) {
        assert_int_equal(mom_raft_start_group(
                             n->raft, i, voters,
                             n->id <= s->n_voters ? s->n_voters : 0, s->now),
                         MOM_RAFT_OK);
    }
    n->up = 1;
    n->next_flush = SIM_NEVER;
}

/* A crash: nothing unflushed survives; messages in flight may arrive. */
static void
sim_crash(sim_t *s, uint64_t id)
{
    sim_node_t *n = &s->nodes[id - 1];

    assert_true(n->up);
    mom_raft_close(n->raft);
    sqlite3_finalize(n->st_insert);
    sqlite3_finalize(n->st_applied_get);
    sqlite3_finalize(n->st_applied_set);
    assert_int_equal(sqlite3_close(n->db), SQLITE_OK);
    n->raft = NULL;
    n->db = NULL;
    n->up = 0;
    n->sync_done = SIM_NEVER; /* its report never comes */
}

static void
sim_restart(sim_t *s, uint64_t id)
{
    assert_false(s->nodes[id - 1].up);
    sim_node_open(s, &s->nodes[id - 1]);
}

static void
sim_init(sim_t *s, unsigned n_nodes, unsigned groups, uint64_t seed)
{
    const char *shift = getenv("MOM_RAFT_TEST_SEED"); /* for soak runs */
    unsigned i;

    if (shift != NULL) {
        seed += strtoull(shift, NULL, 10) * 1000;
    }
    memset(s, 0, sizeof *s);
    s->n = n_nodes;
    s->n_voters = n_nodes;
    s->groups = groups;
    s->rng = seed * 2654435761ULL + 88172645463325252ULL;
    s->delay_min = 1;
    s->delay_max = 5;
    s->disk_ms = 1;
    mom_raft_options_default(&s->opt);
    s->opt.seed = seed;
    snprintf(s->dir, sizeof s->dir, "/tmp/mom_raft_test.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    for (i = 0; i < n_nodes; i++) {
        s->nodes[i].sim = s;
        s->nodes[i].id = i + 1;
        snprintf(s->nodes[i].path, sizeof s->nodes[i].path, "%s/node%u.db",
                 s->dir, i + 1);
    }
}

static void
sim_start(sim_t *s)
{
    unsigned i;

    for (i = 0; i < s->n; i++) {
        sim_node_open(s, &s->nodes[i]);
    }
}

static void
sim_destroy(sim_t *s)
{
    char path[400];
    unsigned i;

    for (i = 0; i < s->n; i++) {
        if (s->nodes[i].up) {
            sim_crash(s, i + 1);
        }
        unlink(s->nodes[i].path);
        snprintf(path, sizeof path, "%s-wal", s->nodes[i].path);
        unlink(path);
        snprintf(path, sizeof path, "%s-shm", s->nodes[i].path);
        unlink(path);
    }
    while (s->n_heap > 0) {
        free(sim_heap_pop(s).buf);
    }
    free(s->heap);
    rmdir(s->dir);
}

/* --- the event loop ------------------------------------------------------ */

static void
sim_mark_flush(sim_t *s, sim_node_t *n)
{
    if (n->up && n->next_flush == SIM_NEVER && mom_raft_pending(n->raft)) {
        n->next_flush = s->now + s->disk_ms;
    }
}

/* Processes everything due up to `until` (virtual milliseconds). */
static void
sim_run_until(sim_t *s, uint64_t until)
{
    sim_node_t *n;
    sim_msg_t m;
    uint64_t next, t;
    unsigned i;

    for (;;) {
        next = s->n_heap > 0 ? s->heap[0].at : SIM_NEVER;
        for (i = 0; i < s->n; i++) {
            n = &s->nodes[i];
            if (!n->up) {
                continue;
            }
            t = mom_raft_next_deadline(n->raft);
            next = t < next ? t : next;
            t = mom_raft_tell_due(n->raft);
            next = t != 0 && t < next ? t : next;
            next = n->next_flush < next ? n->next_flush : next;
            next = n->sync_done < next ? n->sync_done : next;
        }
        if (next > until) {
            break;
        }
        if (next > s->now) {
            s->now = next;
        }
        while (s->n_heap > 0 && s->heap[0].at <= s->now) {
            m = sim_heap_pop(s);
            n = &s->nodes[m.to - 1];
            if (n->up && !s->cut[m.from][m.to]) {
                mom_raft_receive(n->raft, m.group, m.from, m.buf, m.len,
                                 s->now);
                s->delivered++;
                sim_mark_flush(s, n);
            } else {
                s->dropped++;
            }
            free(m.buf);
        }
        for (i = 0; i < s->n; i++) {
            n = &s->nodes[i];
            if (!n->up) {
                continue;
            }
            if (mom_raft_next_deadline(n->raft) <= s->now) {
                mom_raft_tick(n->raft, s->now);
            }
            if (n->sync_done <= s->now) {
                n->sync_done = SIM_NEVER;
                mom_raft_synced(n->raft, s->now);
            }
            if (n->next_flush <= s->now) {
                n->next_flush = SIM_NEVER;
                if (s->apply_early) {
                    t = s->cookies_applied;
                    mom_raft_apply_committed(n->raft);
                    s->applied_early += s->cookies_applied - t;
                }
                mom_raft_flush(n->raft, s->now);
            }
            /* what commit.c does at the end of each loop iteration */
            mom_raft_tell_commits(n->raft, s->now);
            sim_mark_flush(s, n);
        }
    }
    s->now = until;
}

static void
sim_run(sim_t *s, uint64_t ms)
{
    sim_run_until(s, s->now + ms);
}

/* The node that leads `group` if exactly one running node claims it. */
static uint64_t
sim_leader(sim_t *s, uint32_t group)
{
    uint64_t leader = 0;
    unsigned i;

    for (i = 0; i < s->n; i++) {
        if (s->nodes[i].up && mom_raft_leader(s->nodes[i].raft, group, NULL)) {
            if (leader != 0) {
                return 0;
            }
            leader = i + 1;
        }
    }
    return leader;
}

/* Runs until one leader of `group` exists, other than `not`; fails after
 * `limit` ms. */
static uint64_t
sim_wait_leader(sim_t *s, uint32_t group, uint64_t not, uint64_t limit)
{
    uint64_t end = s->now + limit, l;

    for (;;) {
        l = sim_leader(s, group);
        if (l != 0 && l != not ) {
            return l;
        }
        assert_true(s->now < end);
        sim_run(s, 10);
    }
}

static int
sim_submit(sim_t *s, uint64_t node, sim_req_t *req)
{
    uint8_t buf[16];
    uint64_t leader;
    int rc;

    memcpy(buf, &req->group, 4);
    memcpy(buf + 4, &req->seq, 8);
    memset(buf + 12, 0xab, 4);
    req->state = 0;
    rc = mom_raft_submit(s->nodes[node - 1].raft, req->group, buf, sizeof buf,
                         req, &req->index, &leader);
    /* momd's commit path runs after the loop iteration that submitted
     * (commit.c's uv_check): a submission does not wait for a timeout */
    sim_mark_flush(s, &s->nodes[node - 1]);
    return rc;
}

/* The seqs in the list of `group` on a running node, in list order. */
static size_t
sim_list(sim_t *s, uint64_t node, uint32_t group, uint64_t **seqs,
         uint64_t **idxs)
{
    sim_node_t *n = &s->nodes[node - 1];
    sqlite3_stmt *st;
    size_t cnt = 0, cap = 256;
    uint64_t *out = malloc(cap * sizeof *out), *ix = malloc(cap * sizeof *ix);

    assert_true(n->up);
    assert_int_equal(sqlite3_prepare_v2(n->db,
                                        "SELECT idx, data FROM sm_list WHERE "
                                        "grp = ?1 ORDER BY idx",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, (int)group);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (cnt == cap) {
            cap *= 2;
            out = realloc(out, cap * sizeof *out);
            ix = realloc(ix, cap * sizeof *ix);
        }
        assert_int_equal(sqlite3_column_bytes(st, 1), 16);
        memcpy(&out[cnt], (const uint8_t *)sqlite3_column_blob(st, 1) + 4, 8);
        ix[cnt] = (uint64_t)sqlite3_column_int64(st, 0);
        cnt++;
    }
    sqlite3_finalize(st);
    *seqs = out;
    if (idxs != NULL) {
        *idxs = ix;
    } else {
        free(ix);
    }
    return cnt;
}

static int
sim_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* All running nodes hold the same list for `group`, without duplicates;
 * returns its length. */
static size_t
sim_check_same(sim_t *s, uint32_t group)
{
    uint64_t *ref = NULL, *ref_ix = NULL, *seqs, *ix;
    size_t n_ref = 0, n, i;
    unsigned k;

    for (k = 1; k <= s->n; k++) {
        if (!s->nodes[k - 1].up) {
            continue;
        }
        n = sim_list(s, k, group, &seqs, &ix);
        if (ref == NULL) {
            ref = seqs;
            ref_ix = ix;
            n_ref = n;
            continue;
        }
        assert_int_equal(n, n_ref);
        for (i = 0; i < n; i++) {
            assert_int_equal(seqs[i], ref[i]);
            assert_int_equal(ix[i], ref_ix[i]);
        }
        free(seqs);
        free(ix);
    }
    /* No command applied twice: seqs are unique per group. */
    qsort(ref, n_ref, sizeof *ref, sim_cmp_u64);
    for (i = 1; i < n_ref; i++) {
        assert_true(ref[i - 1] != ref[i]);
    }
    free(ref);
    free(ref_ix);
    return n_ref;
}

/* Whether `seq` is in the list of `group` on `node`. */
static int
sim_has(sim_t *s, uint64_t node, uint32_t group, uint64_t seq)
{
    uint64_t *seqs;
    size_t n = sim_list(s, node, group, &seqs, NULL), i;
    int found = 0;

    for (i = 0; i < n; i++) {
        found |= seqs[i] == seq;
    }
    free(seqs);
    return found;
}

#endif /* MOM_RAFT_SIM_H */
