/*
 * What a leader does after the fact (see raft_group.h and
 * docs/replication.md): telling followers a commit index that nothing in
 * flight carries (mom_raft_tell_commits), and writing its own entries
 * without a sync when the followers alone are a majority
 * (mom_raft_group_lazy), syncing them later only when a round needs it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_group.h"
#include "raft_group_int.h"

/* The follower's slot, NULL if it has none (id 0: a free slot). */
static mom_raft_told_t *
told_find(mom_raft_group_t *g, uint64_t id)
{
    for (unsigned i = 0; i < MOM_RAFT_TOLD_MAX; i++) {
        if (g->told[i].id == id) {
            return &g->told[i];
        }
    }
    return NULL;
}

void
mom_raft_heard(mom_raft_group_t *g, uint64_t from, uint64_t now_ms)
{
    mom_raft_told_t *t = told_find(g, from);

    if (t != NULL) {
        t->heard = now_ms;
    }
}

/* --- a leader's own write, without a sync -------------------------------- */

/*
 * A leader need not sync the entries it writes when the other voters are
 * a majority by themselves (three voters or more): it replicates them in
 * parallel with its own write, and an entry commits once a majority has
 * it durable, so it does not count itself until a later sync (Raft allows
 * a leader to commit without its own write, Ongaro's thesis, 10.2.1). In a
 * healthy group the followers commit each round without it, and the
 * leader's loop no longer waits for an fsync per round. Only entries:
 * a term, a vote, a truncation or an install must be durable before
 * anything leaves. Every other voter must have been heard from lately
 * (a follower down needs this node's write: synced at once), and the
 * previous lazy round must have committed without this node (else the
 * followers are not keeping up, and this flush syncs). A round that only
 * this node's write can commit is synced MOM_RAFT_LAZY_SYNC_MS after its
 * write (mom_raft_tell_commits).
 */
#define MOM_RAFT_LAZY_HEARD_MS 250

static int
heard_lately(mom_raft_group_t *g, uint64_t id, uint64_t now_ms)
{
    mom_raft_told_t *t = told_find(g, id);

    return t != NULL && now_ms - t->heard < MOM_RAFT_LAZY_HEARD_MS;
}

/*
 * Not when syncs run off the loop (sync_start): the sync then costs the
 * leader's loop nothing, and a leader that counts its own write commits
 * with the faster follower instead of waiting for both (3 nodes, one
 * topic: +8% requests/s, 7 pairs, docs/benchmarks.md).
 */
int
mom_raft_group_lazy(mom_raft_group_t *g, uint64_t now_ms)
{
    const struct raft_configuration *conf = &g->raft.configuration;
    unsigned voters = 0, i;

    if (g->m->cb.sync_start != NULL || g->tail == NULL || g->installing ||
        g->truncate_from != 0 || g->state_dirty ||
        raft_state(&g->raft) != RAFT_LEADER ||
        raft_commit_index(&g->raft) < g->lazy_last) {
        return 0;
    }
    for (i = 0; i < conf->n; i++) {
        if (conf->servers[i].role != RAFT_VOTER) {
            continue;
        }
        if (conf->servers[i].id != g->m->node_id &&
            !heard_lately(g, conf->servers[i].id, now_ms)) {
            return 0;
        }
        voters++;
    }
    return voters >= 3;
}

/* Entries a leader wrote without a sync (mom_raft_group_lazy) are synced
 * this long after, if no durable flush did it before and they did not
 * commit without this node meanwhile (a slow round, or a follower that
 * went down since): then only this node's write can commit them. */
#define MOM_RAFT_LAZY_SYNC_MS 5

/* The lazily written entries are durable now (report: tell raft). */
static void
lazy_synced(mom_raft_t *m, uint64_t now_ms, int report)
{
    size_t i;

    m->sync_due = 0;
    for (i = 0; i < m->n_groups; i++) {
        m->groups[i]->lazy_last = 0;
    }
    for (i = 0; report && i < m->n_groups; i++) {
        mom_raft_group_durable(m->groups[i], now_ms);
    }
}

void
mom_raft_lazy_flushed(mom_raft_t *m, int lazy, uint64_t now_ms)
{
    if (!lazy) {
        lazy_synced(m, now_ms, 0); /* the flush reports them */
        return;
    }
    m->stats.lazy_flushes++;
    if (m->sync_due == 0) {
        m->sync_due = now_ms + MOM_RAFT_LAZY_SYNC_MS;
    }
}

/* Syncs when a lazily written round is still not committed
 * MOM_RAFT_LAZY_SYNC_MS after its write; rounds written later wait for
 * their own time. */
static void
lazy_sync_if_due(mom_raft_t *m, uint64_t now_ms)
{
    int sync = 0;
    size_t i;

    if (m->sync_due == 0 || now_ms < m->sync_due) {
        return;
    }
    m->sync_due = 0;
    for (i = 0; i < m->n_groups; i++) {
        mom_raft_group_t *g = m->groups[i];
        uint64_t due = g->lazy_at + MOM_RAFT_LAZY_SYNC_MS;

        if (raft_commit_index(&g->raft) >= g->lazy_last) {
            continue;
        }
        if (now_ms >= due) {
            sync = 1;
        } else if (m->sync_due == 0 || due < m->sync_due) {
            m->sync_due = due;
        }
    }
    if (sync) {
        mom_raft_store_sync(m->store);
        m->stats.lazy_syncs++;
        lazy_synced(m, now_ms, 1);
    }
}

/* --- telling followers the commit index --------------------------------- */

void
mom_raft_note_sent(mom_raft_group_t *g, const struct raft_message *msg)
{
    mom_raft_told_t *t;

    if (msg->type != RAFT_APPEND_ENTRIES) {
        return;
    }
    g->ae_version = msg->append_entries.version;
    t = told_find(g, msg->server_id);
    if (t == NULL && (t = told_find(g, 0)) != NULL) {
        memset(t, 0, sizeof *t);
        t->id = msg->server_id;
    }
    if (t != NULL && t->commit < msg->append_entries.leader_commit) {
        t->commit = msg->append_entries.leader_commit;
    }
}

/*
 * libraft sends a leader's commit index with the next entries or the next
 * heartbeat only: after the last round of a burst a follower would apply
 * it, and its SSE subscribers see it, up to a heartbeat interval late. When
 * nothing else is in flight, a leader sends each follower that has stored
 * the committed entry (of this term) the heartbeat libraft would send,
 * anchored on that entry; a follower that stores it later is told then.
 * Under load the next round carries the commit index instead. Returns how
 * many followers are (send == 0) or were told.
 */
static unsigned
group_tell_commit(mom_raft_group_t *g, int send)
{
    uint64_t commit = raft_commit_index(&g->raft), all = commit;
    raft_index match;
    const struct raft_server *srv;
    struct raft_message msg;
    mom_raft_told_t *t;
    unsigned i, n = 0;

    if (!g->is_leader || commit <= g->told_all || g->n_props > 0 ||
        raft_last_index(&g->raft) != commit || commit != g->round_last ||
        g->round_term != raft_current_term(&g->raft)) {
        return 0;
    }
    memset(&msg, 0, sizeof msg);
    msg.type = RAFT_APPEND_ENTRIES;
    msg.append_entries.version = g->ae_version;
    msg.append_entries.term = g->round_term;
    msg.append_entries.prev_log_index = commit;
    msg.append_entries.prev_log_term = g->round_term;
    msg.append_entries.leader_commit = commit;
    for (i = 0; i < g->raft.configuration.n; i++) {
        srv = &g->raft.configuration.servers[i];
        t = told_find(g, srv->id);
        if (srv->id == g->m->node_id || (t != NULL && t->commit >= commit)) {
            continue;
        }
        if (raft_match_index(&g->raft, srv->id, &match) != 0 ||
            match < commit) {
            all = 0; /* told once it has stored it */
            continue;
        }
        n++;
        if (send) {
            msg.server_id = srv->id;
            msg.server_address = srv->address;
            mom_raft_send(g, &msg);
            g->m->stats.commits_told++;
        }
    }
    if (send) {
        g->told_all = all;
    }
    return n;
}

/*
 * The commits of all groups are told together, MOM_RAFT_TELL_DELAY_MS
 * after the first one to tell: a follower then applies them in one flush
 * transaction, not one per group and round (with many partitions busy,
 * rounds of one entry each, telling each at once doubled the followers'
 * transactions).
 */
#define MOM_RAFT_TELL_DELAY_MS 5

uint64_t
mom_raft_tell_due(const mom_raft_t *m)
{
    if (m->sync_due != 0 && (m->tell_due == 0 || m->sync_due < m->tell_due)) {
        return m->sync_due;
    }
    return m->tell_due;
}

void
mom_raft_tell_commits(mom_raft_t *m, uint64_t now_ms)
{
    size_t i;

    lazy_sync_if_due(m, now_ms);
    if (m->tell_due == 0) {
        for (i = 0; i < m->n_groups; i++) {
            if (group_tell_commit(m->groups[i], 0) > 0) {
                m->tell_due = now_ms + MOM_RAFT_TELL_DELAY_MS;
                break;
            }
        }
        return;
    }
    if (now_ms < m->tell_due) {
        return;
    }
    m->tell_due = 0;
    for (i = 0; i < m->n_groups; i++) {
        group_tell_commit(m->groups[i], 1);
    }
}
