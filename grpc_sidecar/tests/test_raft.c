/*
 * Tests of the Raft driver (raft_group.c) on the deterministic in-process
 * cluster of raft_sim.h: real libraft, real SQLite files, virtual time, a
 * network we can delay, cut and crash.
 */
#include "raft_sim.h"
#include "raft_store.h"
#include "sql_query.h"
#include "wal_vfs.h"

#define SEC 1000

static sim_req_t *
reqs_new(size_t n, uint32_t group, uint64_t seq0)
{
    sim_req_t *r = calloc(n, sizeof *r);
    size_t i;

    assert_non_null(r);
    for (i = 0; i < n; i++) {
        r[i].group = group;
        r[i].seq = seq0 + i;
    }
    return r;
}

/* Submits n requests to `node` in batches of `batch`, running `gap_ms`
 * between batches. */
static void
submit_all(sim_t *s, uint64_t node, sim_req_t *r, size_t n, size_t batch,
           uint64_t gap_ms)
{
    size_t i;

    for (i = 0; i < n; i++) {
        assert_int_equal(sim_submit(s, node, &r[i]), MOM_RAFT_OK);
        if ((i + 1) % batch == 0) {
            sim_run(s, gap_ms);
        }
    }
}

/* Runs until every request is applied or aborted; returns how many were
 * applied (acknowledged to their client). */
static size_t
settle(sim_t *s, sim_req_t *r, size_t n, uint64_t limit)
{
    uint64_t end = s->now + limit;
    size_t i, done, applied;

    for (;;) {
        done = applied = 0;
        for (i = 0; i < n; i++) {
            done += r[i].state != 0;
            applied += r[i].state == 1;
        }
        if (done == n) {
            return applied;
        }
        assert_true(s->now < end);
        sim_run(s, 10);
    }
}

static uint64_t
other_than(sim_t *s, uint64_t a, uint64_t b)
{
    uint64_t i;

    for (i = 1; i <= s->n; i++) {
        if (i != a && i != b) {
            return i;
        }
    }
    return 0;
}

static void
isolate(sim_t *s, uint64_t id, int cut)
{
    uint64_t i;

    for (i = 1; i <= s->n; i++) {
        if (i != id) {
            s->cut[id][i] = cut;
            s->cut[i][id] = cut;
        }
    }
}

static void
check_no_stale_applies(sim_t *s)
{
    unsigned i;

    for (i = 0; i < s->n; i++) {
        assert_int_equal(s->nodes[i].stale_applies, 0);
    }
}

/* --- tests ---------------------------------------------------------------- */

static void
elects_leader(unsigned nodes)
{
    sim_t s;
    uint64_t l, id, held = 0;
    unsigned i;

    sim_init(&s, nodes, 1, nodes);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_leader(&s, 0), l);
    for (i = 0; i < nodes; i++) {
        assert_int_equal(mom_raft_leader(s.nodes[i].raft, 0, &id), i + 1 == l);
        assert_int_equal(id, l);
        held += mom_raft_stats(s.nodes[i].raft)->messages_held;
    }
    /* Votes waited for their flush; every message was checked for it. */
    assert_true(held > 0);
    assert_true(s.checked > 0);
    sim_destroy(&s);
}

static void
test_elects_leader_3(void **state)
{
    (void)state;
    elects_leader(3);
}

static void
test_elects_leader_5(void **state)
{
    (void)state;
    elects_leader(5);
}

static void
many_commands(unsigned nodes, size_t n)
{
    sim_t s;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l;

    sim_init(&s, nodes, 1, 7 + nodes);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n, 250, 3);
    assert_int_equal(settle(&s, r, n, 60 * SEC), n);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_10k_commands_3(void **state)
{
    (void)state;
    many_commands(3, 10000);
}

static void
test_2k_commands_5(void **state)
{
    (void)state;
    many_commands(5, 2000);
}

/* A leader answers what is committed and written before its next write
 * (commit.c): the same history, every request answered once. */
static void
test_apply_committed_early(void **state)
{
    size_t n = 3000;
    sim_t s;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l;

    (void)state;
    sim_init(&s, 3, 1, 11);
    s.apply_early = 1;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n, 250, 3);
    assert_int_equal(settle(&s, r, n, 60 * SEC), n);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    check_no_stale_applies(&s);
    assert_true(s.applied_early > 0);
    assert_true(s.applied_early <= n);
    free(r);
    sim_destroy(&s);
}

/* A lone request: every follower applies it long before the next
 * heartbeat (100 ms) would have told it the commit index. */
static void
test_followers_learn_commit_at_once(void **state)
{
    sim_t s;
    sim_req_t r;
    uint64_t l;
    unsigned i, k;

    (void)state;
    sim_init(&s, 3, 1, 21);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    sim_run(&s, SEC);
    for (k = 0; k < 5; k++) {
        /* just after the heartbeats of a grid point */
        sim_run_until(&s, (s.now / 100 + 1) * 100 + 3);
        memset(&r, 0, sizeof r);
        r.seq = k + 1;
        assert_int_equal(sim_submit(&s, l, &r), MOM_RAFT_OK);
        sim_run(&s, 50);
        assert_int_equal(r.state, 1);
        for (i = 0; i < s.n; i++) {
            assert_int_equal(sm_applied(&s.nodes[i], 0), r.index);
        }
    }
    assert_true(mom_raft_stats(s.nodes[l - 1].raft)->commits_told >= 2 * 5);
    sim_destroy(&s);
}

/* Submits one request at the leader and runs until it is answered or
 * limit_ms passed; the time it took. */
static uint64_t
commit_one(sim_t *s, uint64_t l, uint64_t seq, uint64_t limit_ms)
{
    sim_req_t r;
    uint64_t start = s->now;

    memset(&r, 0, sizeof r);
    r.seq = seq;
    assert_int_equal(sim_submit(s, l, &r), MOM_RAFT_OK);
    while (r.state == 0 && s->now - start < limit_ms) {
        sim_run(s, 1);
    }
    assert_int_equal(r.state, 1);
    return s->now - start;
}

/* A leader of three voters writes its entries without a sync: the two
 * followers commit them. With a follower cut off, the leader's own write
 * is needed: it is synced a few ms later, and only then counted. */
static void
test_leader_writes_lazily(void **state)
{
    const mom_raft_stats_t *st;
    uint64_t l, f, took, lazy;
    unsigned k;

    sim_t s;

    (void)state;
    sim_init(&s, 3, 1, 31);
    s.delay_min = s.delay_max = 1;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    sim_run(&s, SEC);
    st = mom_raft_stats(s.nodes[l - 1].raft);
    for (k = 0; k < 20; k++) {
        took = commit_one(&s, l, k + 1, SEC);
        assert_true(took < 10);
    }
    assert_true(st->lazy_flushes >= 20);
    assert_int_equal(st->lazy_syncs, 0);
    for (k = 1; k <= s.n; k++) {
        if (k != l) { /* a follower always syncs before it answers */
            assert_int_equal(mom_raft_stats(s.nodes[k - 1].raft)->lazy_flushes,
                             0);
        }
    }

    /* Not before the sync: the leader never counts an unsynced write (had
     * it counted it, the round would have committed with the one follower
     * left, before the sync was due, and none would be made). Once the
     * follower is silent for a while, the leader syncs its writes at once. */
    f = other_than(&s, l, 0);
    isolate(&s, f, 1);
    commit_one(&s, l, 100, SEC);
    assert_int_equal(st->lazy_syncs, 1);
    sim_run(&s, 300);
    lazy = st->lazy_flushes;
    for (k = 1; k < 5; k++) {
        took = commit_one(&s, l, 100 + k, SEC);
        assert_true(took < 10);
    }
    assert_int_equal(st->lazy_flushes, lazy);
    assert_int_equal(st->lazy_syncs, 1);
    isolate(&s, f, 0);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), 25);
    check_no_stale_applies(&s);
    sim_destroy(&s);
}

static void
test_leader_crash(void **state)
{
    sim_t s;
    size_t n = 600, i, acked_before;
    sim_req_t *r = reqs_new(2 * n, 0, 1);
    uint64_t l, l2;
    unsigned k;

    (void)state;
    sim_init(&s, 3, 1, 11);
    s.delay_max = 10;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n - 100, 50, 10);
    submit_all(&s, l, r + n - 100, 50, 50, 1); /* replicating, maybe */
    for (i = n - 50; i < n; i++) {             /* not even flushed */
        assert_int_equal(sim_submit(&s, l, &r[i]), MOM_RAFT_OK);
    }
    sim_crash(&s, l);
    acked_before = 0;
    for (i = 0; i < n; i++) {
        acked_before += r[i].state == 1;
        assert_true(r[i].state != 0); /* close aborted the rest */
    }
    assert_true(acked_before > 0 && acked_before < n);

    l2 = sim_wait_leader(&s, 0, l, 10 * SEC);
    submit_all(&s, l2, r + n, n, 50, 2);
    assert_int_equal(settle(&s, r + n, n, 30 * SEC), n);
    sim_restart(&s, l);
    sim_run(&s, 3 * SEC);

    /* Nothing acknowledged is lost, nothing is applied twice. */
    assert_true(sim_check_same(&s, 0) >= acked_before + n);
    for (k = 1; k <= 3; k++) {
        for (i = 0; i < 2 * n; i += 7) {
            if (r[i].state == 1) {
                assert_true(sim_has(&s, k, 0, r[i].seq));
            }
        }
    }
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_minority_never_commits(void **state)
{
    sim_t s;
    size_t n = 50, i;
    sim_req_t *a = reqs_new(n, 0, 1000), *b = reqs_new(n, 0, 2000);
    uint64_t l, f, l2, applied_l, applied_f, x, y;
    unsigned k;

    (void)state;
    sim_init(&s, 5, 1, 5);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    f = other_than(&s, l, 0);
    sim_run(&s, 500);
    for (x = 1; x <= 5; x++) { /* {l, f} | the other three */
        for (y = 1; y <= 5; y++) {
            if ((x == l || x == f) != (y == l || y == f)) {
                s.cut[x][y] = 1;
            }
        }
    }
    applied_l = sm_applied(&s.nodes[l - 1], 0);
    applied_f = sm_applied(&s.nodes[f - 1], 0);
    submit_all(&s, l, a, n, 10, 5);
    assert_int_equal(settle(&s, a, n, 10 * SEC), 0); /* all aborted */
    assert_int_equal(sm_applied(&s.nodes[l - 1], 0), applied_l);
    assert_int_equal(sm_applied(&s.nodes[f - 1], 0), applied_f);

    l2 = sim_wait_leader(&s, 0, l, 10 * SEC);
    assert_true(l2 != f);
    submit_all(&s, l2, b, n, 10, 5);
    assert_int_equal(settle(&s, b, n, 10 * SEC), n);
    assert_int_equal(sm_applied(&s.nodes[l - 1], 0), applied_l);

    memset(s.cut, 0, sizeof s.cut);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    for (k = 1; k <= 5; k++) {
        for (i = 0; i < n; i++) {
            assert_false(sim_has(&s, k, 0, a[i].seq));
        }
    }
    free(a);
    free(b);
    sim_destroy(&s);
}

/*
 * A transfer to a follower that lacks committed entries (restarted after
 * missing some) is refused, and the group goes on taking writes; once the
 * follower has caught up, the transfer goes through and it leads.
 */
static void
test_transfer_waits_for_catch_up(void **state)
{
    sim_t s;
    size_t n = 300;
    sim_req_t *r = reqs_new(n, 0, 1);
    mom_raft_t *leader;
    uint64_t l, f;

    (void)state;
    sim_init(&s, 3, 1, 43);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    leader = s.nodes[l - 1].raft;
    f = other_than(&s, l, 0);
    sim_crash(&s, f);
    submit_all(&s, l, r, 200, 50, 5);
    assert_int_equal(settle(&s, r, 200, 10 * SEC), 200);
    sim_restart(&s, f);
    assert_int_equal(mom_raft_transfer(leader, 0, f, s.now), MOM_RAFT_BEHIND);
    submit_all(&s, l, r + 200, n - 200, 50, 5);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    sim_run(&s, SEC);
    assert_int_equal(mom_raft_transfer(leader, 0, f, s.now), MOM_RAFT_OK);
    sim_mark_flush(&s, &s.nodes[l - 1]);
    assert_int_equal(sim_wait_leader(&s, 0, l, 5 * SEC), f);
    assert_int_equal(sim_check_same(&s, 0), n);
    free(r);
    sim_destroy(&s);
}

static void
test_follower_restart_catches_up_from_log(void **state)
{
    sim_t s;
    size_t n = 500;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l, f;

    (void)state;
    sim_init(&s, 3, 1, 21);
    s.opt.snapshot_threshold = 100000;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    f = other_than(&s, l, 0);
    submit_all(&s, l, r, 100, 50, 5);
    sim_run(&s, 100);
    sim_crash(&s, f);
    submit_all(&s, l, r + 100, n - 100, 50, 5);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    sim_restart(&s, f);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    assert_int_equal(s.nodes[f - 1].restores, 0);
    assert_int_equal(mom_raft_stats(s.nodes[f - 1].raft)->snapshots_installed,
                     0);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_follower_catches_up_from_snapshot(void **state)
{
    sim_t s;
    size_t n = 1000;
    sim_req_t *r = reqs_new(n + 100, 0, 1);
    uint64_t l, f;

    (void)state;
    sim_init(&s, 3, 1, 31);
    s.opt.snapshot_threshold = 64;
    s.opt.snapshot_trailing = 16;
    s.opt.snapshot_trailing_bytes = 0; /* the count alone */
    s.opt.install_snapshot_timeout_ms = 500;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    f = other_than(&s, l, 0);
    sim_crash(&s, f);
    submit_all(&s, l, r, n, 50, 5);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    assert_true(mom_raft_stats(s.nodes[l - 1].raft)->snapshots_taken > 0);

    sim_restart(&s, f);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    assert_true(s.nodes[f - 1].restores >= 1);
    assert_true(mom_raft_stats(s.nodes[f - 1].raft)->snapshots_installed >= 1);
    assert_true(mom_raft_stats(s.nodes[l - 1].raft)->snapshots_sent >= 1);

    /* It goes on from the snapshot, and restarts from it. */
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r + n, 100, 50, 5);
    assert_int_equal(settle(&s, r + n, 100, 10 * SEC), 100);
    sim_run(&s, SEC);
    sim_crash(&s, f);
    sim_restart(&s, f);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), n + 100);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

/* With snapshot_trailing_bytes, a follower that missed more entries than
 * snapshot_trailing (but fewer bytes than its group's share of the node's
 * budget) catches up from the leader's log, compacted meanwhile, without a
 * snapshot. The test above (the count alone) needs one for such a gap. */
static void
test_follower_far_behind_catches_up_from_log(void **state)
{
    sim_t s;
    size_t before = 3000, n = 1000; /* entries of 16 bytes */
    sim_req_t *r = reqs_new(before + n, 0, 1);
    uint64_t l, f;

    (void)state;
    sim_init(&s, 3, 2, 31);
    s.opt.snapshot_threshold = 64;
    s.opt.snapshot_trailing = 16;
    /* Shared by the node's two groups: ~1,500 entries each. */
    s.opt.snapshot_trailing_bytes = 2 * 1500 * 16;
    s.opt.install_snapshot_timeout_ms = 500;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    f = other_than(&s, l, 0);
    submit_all(&s, l, r, before, 50, 5);
    assert_int_equal(settle(&s, r, before, 10 * SEC), before);
    sim_run(&s, 100);
    sim_crash(&s, f);
    submit_all(&s, l, r + before, n, 50, 5);
    assert_int_equal(settle(&s, r + before, n, 10 * SEC), n);
    /* The log was compacted behind its snapshots, to fewer entries than
     * all but more than the gap. */
    assert_true(sim_query(&s.nodes[l - 1],
                          "SELECT min(idx) FROM raft_log WHERE grp = ?1",
                          0) > before / 2);
    assert_true(sim_query(&s.nodes[l - 1],
                          "SELECT min(idx) FROM raft_log WHERE grp = ?1",
                          0) < before - 16);

    sim_restart(&s, f);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), before + n);
    assert_int_equal(s.nodes[f - 1].restores, 0);
    assert_int_equal(mom_raft_stats(s.nodes[f - 1].raft)->snapshots_installed,
                     0);
    assert_int_equal(mom_raft_stats(s.nodes[l - 1].raft)->snapshots_sent, 0);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

/* Tiny entries and a large budget: the log behind a snapshot stops at
 * MOM_RAFT_TRAILING_MAX entries (libraft keeps them in memory too). */
static void
test_trailing_capped(void **state)
{
    sim_t s;
    size_t n = MOM_RAFT_TRAILING_MAX + 4096; /* entries of 16 bytes */
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l, first;

    (void)state;
    sim_init(&s, 3, 1, 37);
    s.opt.snapshot_threshold = 1024;
    s.opt.snapshot_trailing = 16;
    s.opt.snapshot_trailing_bytes = UINT64_C(1) << 30; /* 67M entries */
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n, 200, 5);
    assert_int_equal(settle(&s, r, n, 30 * SEC), n);
    sim_run(&s, 100);
    /* The last snapshot is within a threshold of the end; the log keeps
     * the cap's worth of entries behind it, no more. */
    first = sim_query(&s.nodes[l - 1],
                      "SELECT min(idx) FROM raft_log WHERE grp = ?1", 0);
    assert_true(first > n - 1024 - MOM_RAFT_TRAILING_MAX);
    assert_true(first <= n - MOM_RAFT_TRAILING_MAX + 1);
    free(r);
    sim_destroy(&s);
}

static void
test_many_groups_group_commit(void **state)
{
    enum { GROUPS = 64, PER = 20 };
    sim_t s;
    sim_req_t *r = reqs_new(GROUPS * PER, 0, 1);
    uint64_t leader[GROUPS];
    const mom_raft_stats_t *st;
    size_t i, g;
    unsigned k;

    (void)state;
    sim_init(&s, 3, GROUPS, 41);
    sim_start(&s);
    for (g = 0; g < GROUPS; g++) {
        leader[g] = sim_wait_leader(&s, (uint32_t)g, 0, 10 * SEC);
    }
    for (i = 0; i < PER; i++) {
        for (g = 0; g < GROUPS; g++) {
            r[g * PER + i].group = (uint32_t)g;
            assert_int_equal(sim_submit(&s, leader[g], &r[g * PER + i]),
                             MOM_RAFT_OK);
        }
        sim_run(&s, 2);
    }
    assert_int_equal(settle(&s, r, GROUPS * PER, 10 * SEC), GROUPS * PER);
    sim_run(&s, SEC);
    for (g = 0; g < GROUPS; g++) {
        assert_int_equal(sim_check_same(&s, (uint32_t)g), PER);
    }
    for (k = 0; k < 3; k++) {
        st = mom_raft_stats(s.nodes[k].raft);
        printf("# node %u: %" PRIu64 " flushes, %" PRIu64
               " group writes (%.1f groups per transaction)\n",
               k + 1, st->flushes, st->group_writes,
               (double)st->group_writes / (double)st->flushes);
        assert_true(st->group_writes > 2 * st->flushes);
    }
    free(r);
    sim_destroy(&s);
}

static void
test_aborted_on_leadership_loss(void **state)
{
    sim_t s;
    size_t n = 30, i;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l;
    unsigned k;

    (void)state;
    sim_init(&s, 3, 1, 51);
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    sim_run(&s, 200);
    isolate(&s, l, 1);
    submit_all(&s, l, r, n, 10, 5);
    sim_run(&s, 100);
    for (i = 0; i < n; i++) {
        assert_int_equal(r[i].state, 0); /* still waiting */
    }
    sim_run(&s, 3 * SEC); /* no quorum contact: the leader steps down */
    assert_false(mom_raft_leader(s.nodes[l - 1].raft, 0, NULL));
    assert_int_equal(s.nodes[l - 1].aborted, n);
    for (i = 0; i < n; i++) {
        assert_int_equal(r[i].state, 2);
    }
    isolate(&s, l, 0);
    sim_run(&s, 3 * SEC);
    sim_check_same(&s, 0);
    for (k = 1; k <= 3; k++) {
        for (i = 0; i < n; i++) {
            assert_false(sim_has(&s, k, 0, r[i].seq));
        }
    }
    free(r);
    sim_destroy(&s);
}

static void
test_whole_cluster_restart(void **state)
{
    sim_t s;
    size_t n = 300;
    sim_req_t *r = reqs_new(2 * n, 0, 1);
    uint64_t l;
    unsigned k;

    (void)state;
    sim_init(&s, 3, 1, 61);
    s.opt.snapshot_threshold = 128;
    s.opt.snapshot_trailing = 32;
    s.opt.snapshot_trailing_bytes = 0; /* the count alone */
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n, 30, 3);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    for (k = 1; k <= 3; k++) {
        sim_crash(&s, k);
    }
    sim_run(&s, 100);
    for (k = 1; k <= 3; k++) {
        sim_restart(&s, k);
    }
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r + n, n, 30, 3);
    assert_int_equal(settle(&s, r + n, n, 10 * SEC), n);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), 2 * n);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_lossy_network(void **state)
{
    sim_t s;
    size_t n = 400, applied;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l;

    (void)state;
    sim_init(&s, 3, 1, 71);
    s.loss_pct = 20;
    s.delay_max = 20;
    s.opt.snapshot_threshold = 100;
    s.opt.snapshot_trailing = 10;
    s.opt.snapshot_trailing_bytes = 0; /* the count alone */
    s.opt.install_snapshot_timeout_ms = 500;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 30 * SEC);
    submit_all(&s, l, r, n, 20, 10);
    applied = settle(&s, r, n, 60 * SEC);
    s.loss_pct = 0;
    sim_run(&s, 5 * SEC);
    assert_true(sim_check_same(&s, 0) >= applied);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_appendentries_split_by_bytes(void **state)
{
    sim_t s;
    size_t n = 300;
    sim_req_t *r = reqs_new(n, 0, 1);
    uint64_t l, f;
    unsigned k;

    (void)state;
    sim_init(&s, 3, 1, 91);
    s.opt.max_message_bytes = 40; /* two 16-byte commands per message */
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    f = other_than(&s, l, 0);
    sim_crash(&s, f); /* then it catches up with long AppendEntries */
    submit_all(&s, l, r, n, 100, 2);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    sim_restart(&s, f);
    sim_run(&s, 3 * SEC);
    assert_int_equal(sim_check_same(&s, 0), n);
    assert_true(s.max_len < 200);
    for (k = 0; k < 3; k++) {
        assert_int_equal(mom_raft_stats(s.nodes[k].raft)->messages_dropped, 0);
    }
    free(r);
    sim_destroy(&s);
}

/* Every acknowledged request of r[0..n) is on every running node. */
static void
check_acked_present(sim_t *s, const sim_req_t *r, size_t n)
{
    uint64_t *seqs;
    size_t cnt, i;
    unsigned k;

    for (k = 1; k <= s->n; k++) {
        cnt = sim_list(s, k, 0, &seqs, NULL);
        qsort(seqs, cnt, sizeof *seqs, sim_cmp_u64);
        for (i = 0; i < n; i++) {
            if (r[i].state == 1) {
                assert_non_null(
                    bsearch(&r[i].seq, seqs, cnt, sizeof *seqs, sim_cmp_u64));
            }
        }
        free(seqs);
    }
}

/* Crashes, restarts, cut links, loss and small snapshots while clients
 * write: at the end every node holds the same list with every
 * acknowledged command once. */
static void
chaos(unsigned sync_ms)
{
    enum { ROUNDS = 60, PER_ROUND = 25 };
    sim_t s;
    sim_req_t *r = reqs_new(ROUNDS * PER_ROUND, 0, 1);
    size_t next = 0, i, acked = 0;
    uint64_t l, a, b, down;
    unsigned round, k;

    sim_init(&s, 5, 1, 101);
    s.sync_ms = sync_ms;
    s.loss_pct = 5;
    s.delay_max = 15;
    s.opt.snapshot_threshold = 50;
    s.opt.snapshot_trailing = 10;
    s.opt.snapshot_trailing_bytes = 0; /* the count alone */
    s.opt.install_snapshot_timeout_ms = 300;
    sim_start(&s);
    for (round = 0; round < ROUNDS; round++) {
        a = 1 + sim_rand(&s) % 5;
        b = 1 + sim_rand(&s) % 5;
        for (down = 0, k = 0; k < 5; k++) {
            down += !s.nodes[k].up;
        }
        switch (sim_rand(&s) % 6) {
        case 0:
            if (s.nodes[a - 1].up && down < 2) {
                sim_crash(&s, a);
            }
            break;
        case 1:
            for (k = 1; k <= 5; k++) {
                if (!s.nodes[k - 1].up) {
                    sim_restart(&s, k);
                    break;
                }
            }
            break;
        case 2:
            if (a != b) {
                s.cut[a][b] = s.cut[b][a] = 1;
            }
            break;
        case 3:
            memset(s.cut, 0, sizeof s.cut);
            break;
        default:
            break;
        }
        l = sim_leader(&s, 0);
        for (i = 0; i < PER_ROUND; i++, next++) {
            if (l == 0 || sim_submit(&s, l, &r[next]) != MOM_RAFT_OK) {
                r[next].state = 3; /* refused: never acknowledged */
            }
        }
        sim_run(&s, 200);
    }
    memset(s.cut, 0, sizeof s.cut);
    s.loss_pct = 0;
    for (k = 1; k <= 5; k++) {
        if (!s.nodes[k - 1].up) {
            sim_restart(&s, k);
        }
    }
    sim_wait_leader(&s, 0, 0, 20 * SEC);
    settle(&s, r, next, 20 * SEC);
    sim_run(&s, 5 * SEC);
    for (i = 0; i < next; i++) {
        acked += r[i].state == 1;
    }
    assert_true(acked > 0);
    assert_true(sim_check_same(&s, 0) >= acked);
    check_acked_present(&s, r, next);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static void
test_chaos(void **state)
{
    (void)state;
    chaos(0);
}

/* The same with every durable flush synced off the loop, 3 ms each. */
static void
test_chaos_syncs_off_loop(void **state)
{
    (void)state;
    chaos(3);
}

/*
 * A replica whose flush is synced off the loop (a cluster's momd) does
 * not tell its leader about the write before the sync has ended: with
 * syncs of 5 ms and 1 ms links, a command takes at least the sync and the
 * two hops to commit (answering at the write: 5-6 ms). Meanwhile that
 * replica starts no other write (cb_sync_start checks). The leader syncs
 * its own writes the same way instead of writing them lazily.
 */
static void
test_syncs_off_loop(void **state)
{
    uint64_t l, took, started = 0;
    unsigned k;
    sim_t s;

    (void)state;
    sim_init(&s, 3, 1, 41);
    s.delay_min = s.delay_max = 1;
    s.sync_ms = 5;
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    sim_run(&s, SEC);
    for (k = 0; k < 20; k++) {
        took = commit_one(&s, l, k + 1, SEC);
        assert_true(took >= s.sync_ms + 2 * s.delay_min);
        assert_true(took < 20);
    }
    for (k = 1; k <= s.n; k++) { /* the leader too: it is never lazy */
        started = s.nodes[k - 1].syncs_started;
        assert_true(started >= 20);
        assert_int_equal(mom_raft_stats(s.nodes[k - 1].raft)->syncs_off_loop,
                         started);
        assert_int_equal(mom_raft_stats(s.nodes[k - 1].raft)->lazy_flushes, 0);
    }
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), 20);
    check_no_stale_applies(&s);
    sim_destroy(&s);
}

/* A one-node cluster is a group of one: leader at start, commits alone,
 * and never writes its entries (a snapshot row stands for them). */
static void
test_single_node(void **state)
{
    sim_t s;
    size_t n = 200;
    sim_req_t *r = reqs_new(2 * n, 0, 1);

    (void)state;
    sim_init(&s, 1, 2, 111);
    s.opt.snapshot_threshold = 64;
    sim_start(&s);
    assert_true(mom_raft_leader(s.nodes[0].raft, 0, NULL));
    assert_true(mom_raft_leader(s.nodes[0].raft, 1, NULL));
    submit_all(&s, 1, r, n, 20, 1);
    assert_int_equal(settle(&s, r, n, SEC), n);
    assert_true(mom_raft_stats(s.nodes[0].raft)->elided_flushes > 0);
    assert_int_equal(
        db_query_int(s.nodes[0].db,
                     "SELECT count(*) FROM raft_log WHERE grp = 0"),
        0);
    /* A snapshot row at the last index: the bootstrap entry and every
     * command. */
    assert_int_equal(db_query_int(s.nodes[0].db, "SELECT snap_idx FROM "
                                                 "raft_state WHERE grp = 0"),
                     n + 1);
    sim_crash(&s, 1);
    sim_restart(&s, 1);
    assert_true(mom_raft_leader(s.nodes[0].raft, 0, NULL));
    submit_all(&s, 1, r + n, n, 20, 1);
    assert_int_equal(settle(&s, r + n, n, SEC), n);
    assert_int_equal(sim_check_same(&s, 0), 2 * n);
    check_no_stale_applies(&s);
    free(r);
    sim_destroy(&s);
}

static int
sync_level(sqlite3 *db)
{
    return (int)db_query_int(db, "PRAGMA synchronous");
}

/* Commits a transaction (durable or not) and returns how many WAL syncs
 * it made. */
static uint64_t
syncs_of_commit(mom_raft_store_t *st, int durable)
{
    uint64_t before = mom_wal_vfs_syncs();

    mom_raft_store_begin_as(st, durable);
    mom_raft_store_save_state(st, 0, 1, 1);
    mom_raft_store_commit(st);
    return mom_wal_vfs_syncs() - before;
}

/* With FULL configured, the connection runs NORMAL and durable commits
 * (only they) fdatasync the WAL; NORMAL or OFF configured never sync and
 * are left as they are; a rollback journal keeps FULL. */
static void
test_store_syncs_durable_commits(void **state)
{
    static const char *const levels[] = {"FULL", "NORMAL", "OFF"};
    char dir[] = "/tmp/mom_raft_store.XXXXXX", path[64], sql[96];
    mom_raft_store_t *st;
    sqlite3 *db;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s.db", dir);
    assert_int_equal(mom_wal_vfs_register(), SQLITE_OK);
    assert_int_equal(sqlite3_open_v2(path, &db,
                                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     MOM_WAL_VFS_NAME),
                     SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql,
                 "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s",
                 levels[i]);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        st = mom_raft_store_open(db);
        assert_non_null(st);
        assert_int_equal(sync_level(db), i == 0 ? 1 : 2 - i);
        for (int k = 0; k < 3; k++) {
            assert_int_equal(syncs_of_commit(st, 0), 0);
            assert_int_equal(syncs_of_commit(st, 1), i == 0 ? 1 : 0);
        }
        assert_int_equal(sync_level(db), i == 0 ? 1 : 2 - i);
        mom_raft_store_close(st);
    }

    /* A rollback journal: SQLite syncs as configured. */
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode = DELETE;"
                                  "PRAGMA synchronous = FULL",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    st = mom_raft_store_open(db);
    assert_non_null(st);
    assert_int_equal(sync_level(db), 2);
    assert_int_equal(syncs_of_commit(st, 1), 0);
    assert_int_equal(sync_level(db), 2);
    mom_raft_store_close(st);
    sqlite3_close(db);
    unlink(path);
    snprintf(path, sizeof path, "%s/s.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/s.db-shm", dir);
    unlink(path);
    rmdir(dir);
}

static void
test_membership_add_voter(void **state)
{
    sim_t s;
    size_t n = 100;
    sim_req_t *r = reqs_new(2 * n, 0, 1);
    uint64_t l, victim;

    (void)state;
    sim_init(&s, 4, 1, 81);
    s.n_voters = 3; /* node 4 starts empty and waits to be added */
    sim_start(&s);
    l = sim_wait_leader(&s, 0, 0, 10 * SEC);
    submit_all(&s, l, r, n, 20, 5);
    assert_int_equal(settle(&s, r, n, 10 * SEC), n);
    assert_int_equal(mom_raft_change(s.nodes[l - 1].raft, 0, 4,
                                     MOM_RAFT_ROLE_STANDBY, s.now),
                     MOM_RAFT_OK);
    assert_int_equal(
        mom_raft_change(s.nodes[l - 1].raft, 0, 4, MOM_RAFT_ROLE_VOTER, s.now),
        MOM_RAFT_CANT_CHANGE); /* one change at a time */
    sim_run(&s, SEC);
    assert_int_equal(
        mom_raft_change(s.nodes[l - 1].raft, 0, 4, MOM_RAFT_ROLE_VOTER, s.now),
        MOM_RAFT_OK);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), n);

    /* With 4 voters, losing one voter other than the leader keeps a
     * quorum only if node 4 votes: 3 of 4. */
    victim = other_than(&s, l, 4);
    sim_crash(&s, victim);
    submit_all(&s, l, r + n, n, 20, 5);
    assert_int_equal(settle(&s, r + n, n, 10 * SEC), n);
    sim_run(&s, SEC);
    assert_int_equal(sim_check_same(&s, 0), 2 * n);
    free(r);
    sim_destroy(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elects_leader_3),
        cmocka_unit_test(test_elects_leader_5),
        cmocka_unit_test(test_10k_commands_3),
        cmocka_unit_test(test_2k_commands_5),
        cmocka_unit_test(test_leader_crash),
        cmocka_unit_test(test_minority_never_commits),
        cmocka_unit_test(test_follower_restart_catches_up_from_log),
        cmocka_unit_test(test_follower_catches_up_from_snapshot),
        cmocka_unit_test(test_follower_far_behind_catches_up_from_log),
        cmocka_unit_test(test_trailing_capped),
        cmocka_unit_test(test_transfer_waits_for_catch_up),
        cmocka_unit_test(test_many_groups_group_commit),
        cmocka_unit_test(test_aborted_on_leadership_loss),
        cmocka_unit_test(test_whole_cluster_restart),
        cmocka_unit_test(test_lossy_network),
        cmocka_unit_test(test_appendentries_split_by_bytes),
        cmocka_unit_test(test_chaos),
        cmocka_unit_test(test_chaos_syncs_off_loop),
        cmocka_unit_test(test_syncs_off_loop),
        cmocka_unit_test(test_apply_committed_early),
        cmocka_unit_test(test_followers_learn_commit_at_once),
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_membership_add_voter),
        cmocka_unit_test(test_store_syncs_durable_commits),
        cmocka_unit_test(test_leader_writes_lazily),
    };

    if (getenv("MOM_RAFT_TEST_FILTER") != NULL) { /* e.g. "test_chaos" */
        cmocka_set_test_filter(getenv("MOM_RAFT_TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
