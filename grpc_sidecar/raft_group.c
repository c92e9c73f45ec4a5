/*
 * The Raft driver (see raft_group.h and docs/replication.md): feeds events
 * to libraft's raft_step(), carries out the updates it returns and keeps
 * the durability order: a new term or vote is committed to SQLite before any
 * message of that update leaves, and RAFT_PERSISTED_* is only reported after
 * the flush transaction committed.
 *
 * Memory ownership with libraft 0.22.x (docs/replication.md): the entries
 * batch of an update is ours (we keep it until it is written, then free
 * it); on RECEIVE raft takes the entries batch and the snapshot data and
 * configuration, we free the entries array; the configuration of START,
 * SNAPSHOT, CONFIGURATION and PERSISTED_SNAPSHOT events is taken by raft;
 * START entries stay ours.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_codec.h"
#include "raft_group.h"
#include "raft_group_int.h"

static void group_step(mom_raft_group_t *g, struct raft_event *ev,
                       uint64_t now_ms, int *rv_out);

/* How late a leader's tick may be and still send the heartbeats that are
 * due on its grid point (group_due). Small: two leader ticks (libraft's
 * contact checks) are never closer than the interval minus this, or a
 * follower whose answer is a little late falls back to probe mode. */
static unsigned
group_heartbeat_slack(const mom_raft_t *m)
{
    return m->opt.heartbeat_timeout_ms / 10;
}

void
mom_raft_options_default(mom_raft_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->election_timeout_ms = 1000;
    o->heartbeat_timeout_ms = 100;
    o->install_snapshot_timeout_ms = 30000;
    o->snapshot_threshold = 1024;
    o->snapshot_trailing = 128;
    o->snapshot_trailing_bytes = 64 * 1024 * 1024;
    o->max_inflight_entries = 1024;
    o->max_message_bytes = 1024 * 1024;
    o->pre_vote = 1;
}

void *
mom_raft_xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "momd: raft: out of memory\n");
        abort();
    }
    return p;
}

void *
mom_raft_xrealloc(void *p, size_t n)
{
    p = realloc(p, n > 0 ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "momd: raft: out of memory\n");
        abort();
    }
    return p;
}

/* --- groups ------------------------------------------------------------ */

mom_raft_group_t *
mom_raft_find(const mom_raft_t *m, uint32_t id)
{
    size_t lo = 0, hi = m->n_groups, mid;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (m->groups[mid]->id == id) {
            return m->groups[mid];
        }
        if (m->groups[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

static void
groups_insert(mom_raft_t *m, mom_raft_group_t *g)
{
    size_t i;

    if (m->n_groups == m->cap_groups) {
        m->cap_groups = m->cap_groups ? m->cap_groups * 2 : 16;
        m->groups =
            mom_raft_xrealloc(m->groups, m->cap_groups * sizeof *m->groups);
    }
    for (i = m->n_groups; i > 0 && m->groups[i - 1]->id > g->id; i--) {
        m->groups[i] = m->groups[i - 1];
    }
    m->groups[i] = g;
    m->n_groups++;
}

/* --- waiters (FIFO by index) ----------------------------------------------
 */

static void
waiter_push(mom_raft_group_t *g, uint64_t index, uint64_t term, void *cookie)
{
    size_t i;

    if (g->w_n == g->w_cap) {
        size_t cap = g->w_cap ? g->w_cap * 2 : 64;
        mom_raft_waiter_t *w = mom_raft_xmalloc(cap * sizeof *w);

        for (i = 0; i < g->w_n; i++) {
            w[i] = g->waiters[(g->w_head + i) % g->w_cap];
        }
        free(g->waiters);
        g->waiters = w;
        g->w_cap = cap;
        g->w_head = 0;
    }
    i = (g->w_head + g->w_n) % g->w_cap;
    g->waiters[i].index = index;
    g->waiters[i].term = term;
    g->waiters[i].cookie = cookie;
    g->w_n++;
}

/* Aborts the waiters of entries at `index` and above, in index order. */
static void
waiters_abort_from(mom_raft_group_t *g, uint64_t index)
{
    size_t keep = g->w_n, i;
    mom_raft_waiter_t *w;

    while (keep > 0 &&
           g->waiters[(g->w_head + keep - 1) % g->w_cap].index >= index) {
        keep--;
    }
    for (i = keep; i < g->w_n; i++) {
        w = &g->waiters[(g->w_head + i) % g->w_cap];
        g->m->cb.aborted(g->m->cb.ctx, w->cookie);
    }
    g->w_n = keep;
}

/* The cookie of the waiter of the committed entry (index, term), if any. */
void *
mom_raft_waiter_take(mom_raft_group_t *g, uint64_t index, uint64_t term)
{
    mom_raft_waiter_t *w;

    while (g->w_n > 0) {
        w = &g->waiters[g->w_head];
        if (w->index > index) {
            return NULL;
        }
        g->w_head = (g->w_head + 1) % g->w_cap;
        g->w_n--;
        if (w->index == index && w->term == term) {
            return w->cookie;
        }
        /* Another leader's entry took this index: the proposal is lost. */
        g->m->cb.aborted(g->m->cb.ctx, w->cookie);
    }
    return NULL;
}

static void
proposals_drop(mom_raft_group_t *g)
{
    g->n_props = 0;
    g->prop_len = 0;
}

/* --- role tracking -------------------------------------------------------
 */

static void
group_report_role(mom_raft_group_t *g)
{
    raft_id leader = 0;
    const char *address = NULL;
    int is_leader = raft_state(&g->raft) == RAFT_LEADER;

    raft_leader(&g->raft, &leader, &address);
    if (g->is_leader && !is_leader) {
        /* Leadership lost: nothing submitted here is known to commit. */
        if (g->n_props > 0) {
            waiters_abort_from(g, g->prop_first);
            proposals_drop(g);
        }
        waiters_abort_from(g, 0);
    }
    if (is_leader != g->is_leader || leader != g->leader_id) {
        if (is_leader != g->is_leader) {
            g->leader_tick = 0;
        }
        g->is_leader = is_leader;
        g->leader_id = leader;
        g->m->cb.role_changed(g->m->cb.ctx, g->id, is_leader, leader);
    }
}

/* --- updates ---------------------------------------------------------------
 */

static void
group_handle_update(mom_raft_group_t *g, struct raft_update *up)
{
    unsigned i;

    if (up->flags & RAFT_UPDATE_ENTRIES) {
        mom_raft_log_add(g, up->entries.index, up->entries.batch,
                         up->entries.n);
    }
    if (up->flags & RAFT_UPDATE_SNAPSHOT) {
        mom_raft_install_begin(g, &up->snapshot.metadata, &up->snapshot.chunk);
    }
    if (up->flags & RAFT_UPDATE_MESSAGES) {
        for (i = 0; i < up->messages.n; i++) {
            mom_raft_send(g, &up->messages.batch[i]);
        }
    }
}

/*
 * One raft_step(). A changed term or vote is detected by value (not only by
 * the update flags, which an error return discards) so that it is always
 * persisted before the messages that follow it.
 */
static void
group_step(mom_raft_group_t *g, struct raft_event *ev, uint64_t now_ms,
           int *rv_out)
{
    struct raft_update up;
    int rv;

    if (now_ms < g->last_now) {
        now_ms = g->last_now; /* raft's clock never goes back */
    }
    g->last_now = now_ms;
    ev->time = now_ms;
    ev->capacity = 0;
    memset(ev->reserved, 0, sizeof ev->reserved);
    memset(&up, 0, sizeof up);

    rv = raft_step(&g->raft, ev, &up);

    if (raft_current_term(&g->raft) != g->term ||
        raft_voted_for(&g->raft) != g->vote) {
        g->term = raft_current_term(&g->raft);
        g->vote = raft_voted_for(&g->raft);
        g->state_dirty = 1;
    }
    if (rv == 0) {
        group_handle_update(g, &up);
    } else if (rv_out == NULL) {
        fprintf(stderr, "momd: raft group %" PRIu32 ": step %d: %s\n", g->id,
                (int)ev->type, raft_strerror(rv));
    }
    if (rv_out != NULL) {
        *rv_out = rv;
    }
    g->timeout = raft_timeout(&g->raft);
    group_report_role(g);
}

/* --- open / start / close ------------------------------------------------
 */

mom_raft_t *
mom_raft_open(sqlite3 *db, uint64_t node_id, const mom_raft_callbacks_t *cb,
              const mom_raft_options_t *options)
{
    mom_raft_t *m;

    if (db == NULL || node_id == 0 || cb == NULL || cb->send == NULL ||
        cb->apply == NULL || cb->applied_index == NULL || cb->aborted == NULL ||
        cb->role_changed == NULL || cb->snapshot_take == NULL ||
        cb->snapshot_restore == NULL) {
        return NULL;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->store = mom_raft_store_open(db);
    if (m->store == NULL) {
        free(m);
        return NULL;
    }
    m->db = db;
    m->node_id = node_id;
    m->cb = *cb;
    if (options != NULL) {
        m->opt = *options;
    } else {
        mom_raft_options_default(&m->opt);
    }
    return m;
}

static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int
group_configure(mom_raft_t *m, mom_raft_group_t *g)
{
    char address[24];

    snprintf(address, sizeof address, "%" PRIu64, m->node_id);
    if (raft_init(&g->raft, NULL, NULL, m->node_id, address) != 0) {
        return -1;
    }
    g->raft.tracer = NULL; /* the disabled default still formats */
    raft_set_election_timeout(&g->raft, m->opt.election_timeout_ms);
    /* Shorter than the interval at which heartbeats leave (group_due): a
     * leader tick that is a few ms late still finds them due. */
    raft_set_heartbeat_timeout(&g->raft, m->opt.heartbeat_timeout_ms -
                                             group_heartbeat_slack(m));
    raft_set_install_snapshot_timeout(&g->raft,
                                      m->opt.install_snapshot_timeout_ms);
    raft_set_max_inflight_entries(&g->raft, m->opt.max_inflight_entries);
    raft_set_pre_vote(&g->raft, m->opt.pre_vote != 0);
    raft_seed(&g->raft,
              (unsigned)mix64(m->opt.seed ^ mix64(m->node_id) ^ g->id));
    return 0;
}

int
mom_raft_start_group(mom_raft_t *m, uint32_t group, const uint64_t *voters,
                     unsigned n_voters, uint64_t now_ms)
{
    mom_raft_group_t *g;
    struct raft_event ev;
    int rv;

    if (mom_raft_find(m, group) != NULL || (n_voters > 0 && voters == NULL)) {
        return MOM_RAFT_INVALID;
    }
    g = calloc(1, sizeof *g);
    if (g == NULL) {
        return MOM_RAFT_INVALID;
    }
    g->m = m;
    g->id = group;
    if (group_configure(m, g) != 0) {
        free(g);
        return MOM_RAFT_INVALID;
    }
    if (mom_raft_load_start(g, voters, n_voters, &ev) != 0) {
        raft_close(&g->raft, NULL);
        free(g);
        return MOM_RAFT_INVALID;
    }
    groups_insert(m, g);
    group_step(g, &ev, now_ms, &rv);
    if (rv != 0) { /* storage that raft refuses: recover by hand */
        fprintf(stderr, "momd: raft group %" PRIu32 ": start: %s\n", group,
                raft_strerror(rv));
        abort();
    }
    mom_raft_load_done(g, &ev);
    return MOM_RAFT_OK;
}

static void
group_free(mom_raft_group_t *g)
{
    if (g->n_props > 0) {
        waiters_abort_from(g, g->prop_first);
    }
    waiters_abort_from(g, 0);
    mom_raft_log_discard(g);
    raft_close(&g->raft, NULL);
    free(g->waiters);
    free(g->props);
    free(g->prop_data);
    free(g);
}

void
mom_raft_close(mom_raft_t *m)
{
    size_t i;

    if (m == NULL) {
        return;
    }
    for (i = 0; i < m->n_groups; i++) {
        group_free(m->groups[i]);
    }
    free(m->groups);
    mom_raft_store_close(m->store);
    free(m);
}

/* --- client calls -----------------------------------------------------------
 */

int
mom_raft_submit(mom_raft_t *m, uint32_t group, const uint8_t *buf, size_t len,
                void *cookie, uint64_t *index, uint64_t *leader_id)
{
    mom_raft_group_t *g = mom_raft_find(m, group);
    mom_raft_prop_t *p;

    if (leader_id != NULL) {
        *leader_id = 0;
    }
    if (g == NULL) {
        return MOM_RAFT_NO_GROUP;
    }
    if (raft_state(&g->raft) != RAFT_LEADER || raft_transferee(&g->raft) != 0) {
        if (leader_id != NULL) {
            *leader_id = g->is_leader ? 0 : g->leader_id;
        }
        return MOM_RAFT_NOT_LEADER;
    }
    if (g->n_props == 0) {
        g->prop_first = raft_last_index(&g->raft) + 1;
    }
    if (g->n_props == g->cap_props) {
        g->cap_props = g->cap_props ? g->cap_props * 2 : 64;
        g->props = mom_raft_xrealloc(g->props, g->cap_props * sizeof *g->props);
    }
    if (g->prop_len + len > g->prop_cap) {
        g->prop_cap = (g->prop_len + len) * 2;
        g->prop_data = mom_raft_xrealloc(g->prop_data, g->prop_cap);
    }
    p = &g->props[g->n_props++];
    p->len = len;
    if (len > 0) {
        memcpy(g->prop_data + g->prop_len, buf, len);
    }
    g->prop_len += len;
    if (index != NULL) {
        *index = g->prop_first + g->n_props - 1;
    }
    if (cookie != NULL) {
        waiter_push(g, g->prop_first + g->n_props - 1,
                    raft_current_term(&g->raft), cookie);
    }
    return MOM_RAFT_OK;
}

/* Proposals queued beyond this many are handed to raft even while a
 * round is in flight. */
#define MOM_RAFT_ROUND_MAX 512

/*
 * One replication round in flight per group: while the proposals a leader
 * last handed to raft (in this term) are not committed, new ones queue up
 * and leave together once they are. Under load each round then carries
 * what arrived during the previous one, instead of one round (an
 * AppendEntries, a write and an fsync on every replica) per loop
 * iteration, which is also per follower answer; with a single request in
 * flight nothing waits. A new term never waits (its first entry is what
 * commits the previous terms' ones).
 */
int
mom_raft_props_held(const mom_raft_group_t *g)
{
    return g->n_props > 0 && g->n_props < MOM_RAFT_ROUND_MAX &&
           g->raft.state == RAFT_LEADER && /* raft_state() is not const */
           g->round_term == raft_current_term(&g->raft) &&
           raft_commit_index(&g->raft) < g->round_last;
}

/* Hands the queued proposals to raft as one RAFT_SUBMIT of n entries. */
static void
group_submit_proposals(mom_raft_group_t *g, uint64_t now_ms)
{
    struct raft_event ev;
    struct raft_entry *entries;
    uint8_t *batch;
    size_t i, off = 0;
    int rv;

    if (g->n_props == 0) {
        return;
    }
    if (raft_state(&g->raft) != RAFT_LEADER ||
        raft_last_index(&g->raft) + 1 != g->prop_first) {
        waiters_abort_from(g, g->prop_first);
        proposals_drop(g);
        return;
    }
    batch = raft_malloc(g->prop_len > 0 ? g->prop_len : 1);
    entries = mom_raft_xmalloc(g->n_props * sizeof *entries);
    if (batch == NULL) {
        fprintf(stderr, "momd: raft: out of memory\n");
        abort();
    }
    if (g->prop_len > 0) { /* only empty entries: prop_data may be NULL */
        memcpy(batch, g->prop_data, g->prop_len);
    }
    for (i = 0; i < g->n_props; i++) {
        entries[i].term = raft_current_term(&g->raft);
        entries[i].type = RAFT_COMMAND;
        entries[i].buf.base = batch + off;
        entries[i].buf.len = g->props[i].len;
        entries[i].batch = batch;
        off += g->props[i].len;
    }
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_SUBMIT;
    ev.submit.entries = entries;
    ev.submit.n = (unsigned)g->n_props;
    group_step(g, &ev, now_ms, &rv);
    if (rv != 0) {
        raft_free(batch);
        waiters_abort_from(g, g->prop_first);
    } else {
        g->round_last = g->prop_first + g->n_props - 1;
        g->round_term = raft_current_term(&g->raft);
    }
    free(entries);
    proposals_drop(g);
}

int
mom_raft_receive(mom_raft_t *m, uint32_t group, uint64_t from,
                 const uint8_t *buf, size_t len, uint64_t now_ms)
{
    mom_raft_group_t *g = mom_raft_find(m, group);
    struct raft_message msg;
    struct raft_event ev;
    char address[24];
    raft_term term = 0;

    if (g == NULL) {
        return MOM_RAFT_NO_GROUP;
    }
    if (from == 0 || from == m->node_id ||
        mom_raft_decode(buf, len, &msg) != 0) {
        m->stats.bad_messages++;
        return MOM_RAFT_BAD_MESSAGE;
    }
    if (msg.type == RAFT_APPEND_ENTRIES) {
        term = msg.append_entries.term;
    } else if (msg.type == RAFT_INSTALL_SNAPSHOT) {
        term = msg.install_snapshot.term;
    }
    /*
     * Dropped here: AppendEntries/InstallSnapshot of our own term sent to a
     * leader (two leaders in one term: the release build of libraft would
     * write follower state over its leader state), and an InstallSnapshot
     * while one is installed (libraft 0.22.1 would neither take nor free
     * it; the leader retries).
     */
    if ((term != 0 && term == raft_current_term(&g->raft) &&
         raft_state(&g->raft) == RAFT_LEADER) ||
        (msg.type == RAFT_INSTALL_SNAPSHOT &&
         (g->raft.snapshot.installing || g->installing))) {
        mom_raft_message_release(&msg);
        m->stats.bad_messages++;
        return MOM_RAFT_BAD_MESSAGE;
    }
    snprintf(address, sizeof address, "%" PRIu64, from);
    msg.server_id = from;
    msg.server_address = address;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_RECEIVE;
    ev.receive.message = &msg;
    group_step(g, &ev, now_ms, NULL);
    if (msg.type == RAFT_APPEND_ENTRIES) {
        raft_free(msg.append_entries.entries); /* the batch is raft's */
    }
    mom_raft_heard(g, from, now_ms);
    return MOM_RAFT_OK;
}

/*
 * When a group's timeout fires. A leader is ticked at most once per
 * heartbeat interval: at every leader timeout libraft checks that each
 * follower answered since its previous successful check, and puts the
 * followers that did not back in probe mode (one message per heartbeat
 * interval, so a new entry waits up to a heartbeat before it is sent).
 * libraft's leader timeouts are staggered per follower, a few ms apart once
 * entries were sent; without this spacing an answer still in flight for a
 * few ms is enough to lose pipelining.
 * A leader's ticks fall on a grid of the heartbeat interval (multiples of
 * it in loop time): the heartbeats of all the groups a node leads then
 * leave together, one RaftBatch per member and interval, and come back in
 * one, instead of one each per tick slot their groups happened to be in
 * (an idle 3-node cluster made ~116 gRPC sends per second per node).
 * libraft's own heartbeat timeout is the interval minus a slack, so a tick
 * up to that late still sends them and the next one stays on the grid; a
 * later tick (a long flush) sends them at the next grid point, at most one
 * interval late, far from the election timeout, and its contact check
 * then comes later, never earlier.
 */
static uint64_t
group_due(const mom_raft_group_t *g)
{
    uint64_t due = g->timeout, spaced, hb = g->m->opt.heartbeat_timeout_ms;

    if (due != 0 && g->is_leader && hb > 0) {
        if (g->leader_tick != 0) {
            spaced = g->leader_tick + hb - group_heartbeat_slack(g->m);
            if (due < spaced) {
                due = spaced;
            }
        }
        due = (due + hb - 1) / hb * hb;
    }
    return due;
}

void
mom_raft_tick(mom_raft_t *m, uint64_t now_ms)
{
    struct raft_event ev;
    mom_raft_group_t *g;
    size_t i;

    for (i = 0; i < m->n_groups; i++) {
        g = m->groups[i];
        if (g->timeout != 0 && group_due(g) <= now_ms) {
            g->leader_tick = raft_state(&g->raft) == RAFT_LEADER ? now_ms : 0;
            memset(&ev, 0, sizeof ev);
            ev.type = RAFT_TIMEOUT;
            group_step(g, &ev, now_ms, NULL);
        }
    }
}

uint64_t
mom_raft_next_deadline(const mom_raft_t *m)
{
    uint64_t t = UINT64_MAX, due;
    size_t i;

    for (i = 0; i < m->n_groups; i++) {
        due = group_due(m->groups[i]);
        if (due != 0 && due < t) {
            t = due;
        }
    }
    return t;
}

int
mom_raft_leader(const mom_raft_t *m, uint32_t group, uint64_t *leader_id)
{
    mom_raft_group_t *g = mom_raft_find(m, group);

    if (leader_id != NULL) {
        *leader_id = g != NULL ? g->leader_id : 0;
    }
    return g != NULL && g->is_leader;
}

const mom_raft_stats_t *
mom_raft_stats(const mom_raft_t *m)
{
    return &m->stats;
}

/* --- membership and leadership transfer --------------------------------- */

/* A copy of the current configuration with `node` at `role` or removed. */
static int
conf_with_change(const struct raft_configuration *cur, uint64_t node, int role,
                 struct raft_configuration *out)
{
    char address[24];
    unsigned i;
    int found = 0, changed = 0, rv = 0;

    raft_configuration_init(out);
    for (i = 0; i < cur->n && rv == 0; i++) {
        const struct raft_server *s = &cur->servers[i];
        int r = s->role;

        if (s->id == node) {
            found = 1;
            if (role == MOM_RAFT_REMOVE) {
                changed = 1;
                continue;
            }
            changed = role != s->role;
            r = role;
        }
        rv = raft_configuration_add(out, s->id, s->address, r);
    }
    if (!found && role != MOM_RAFT_REMOVE && rv == 0) {
        snprintf(address, sizeof address, "%" PRIu64, node);
        rv = raft_configuration_add(out, node, address, role);
        changed = 1;
    }
    if (rv != 0 || !changed) {
        raft_configuration_close(out);
        return -1;
    }
    return 0;
}

int
mom_raft_change(mom_raft_t *m, uint32_t group, uint64_t node, int role,
                uint64_t now_ms)
{
    mom_raft_group_t *g = mom_raft_find(m, group);
    struct raft_configuration conf;
    struct raft_entry entry;
    struct raft_event ev;
    int rv;

    if (g == NULL) {
        return MOM_RAFT_NO_GROUP;
    }
    if (node == 0 || role < MOM_RAFT_REMOVE || role > MOM_RAFT_ROLE_SPARE) {
        return MOM_RAFT_INVALID;
    }
    if (raft_state(&g->raft) != RAFT_LEADER) {
        return MOM_RAFT_NOT_LEADER;
    }
    group_submit_proposals(g, now_ms); /* keep the predicted indexes */
    if (raft_state(&g->raft) != RAFT_LEADER) {
        return MOM_RAFT_NOT_LEADER;
    }
    if (conf_with_change(&g->raft.configuration, node, role, &conf) != 0) {
        return MOM_RAFT_INVALID;
    }
    memset(&entry, 0, sizeof entry);
    entry.term = raft_current_term(&g->raft);
    entry.type = RAFT_CHANGE;
    rv = raft_configuration_encode(&conf, &entry.buf);
    raft_configuration_close(&conf);
    if (rv != 0) {
        return MOM_RAFT_INVALID;
    }
    entry.batch = entry.buf.base;
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_SUBMIT;
    ev.submit.entries = &entry;
    ev.submit.n = 1;
    group_step(g, &ev, now_ms, &rv);
    if (rv != 0) {
        raft_free(entry.buf.base);
        return rv == RAFT_CANTCHANGE ? MOM_RAFT_CANT_CHANGE
                                     : MOM_RAFT_NOT_LEADER;
    }
    return MOM_RAFT_OK;
}

int
mom_raft_transfer(mom_raft_t *m, uint32_t group, uint64_t node, uint64_t now_ms)
{
    mom_raft_group_t *g = mom_raft_find(m, group);
    struct raft_event ev;
    raft_index match;
    int rv;

    if (g == NULL) {
        return MOM_RAFT_NO_GROUP;
    }
    if (raft_state(&g->raft) != RAFT_LEADER) {
        return MOM_RAFT_NOT_LEADER;
    }
    /* libraft rejects proposals until the target has caught up and won:
     * up to an election timeout for a node restarted a moment ago. */
    if (node != 0 && (raft_match_index(&g->raft, node, &match) != 0 ||
                      match < raft_commit_index(&g->raft))) {
        return MOM_RAFT_BEHIND;
    }
    group_submit_proposals(g, now_ms);
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_TRANSFER;
    ev.transfer.server_id = node;
    group_step(g, &ev, now_ms, &rv);
    return rv == 0 ? MOM_RAFT_OK : MOM_RAFT_INVALID;
}

/* --- flush -------------------------------------------------------------- */

int
mom_raft_pending(const mom_raft_t *m)
{
    mom_raft_group_t *g;
    size_t i;

    for (i = 0; i < m->n_groups; i++) {
        g = m->groups[i];
        if (m->syncing ? (g->n_props > 0 && !mom_raft_props_held(g)) ||
                             mom_raft_group_applicable(g)
                       : mom_raft_group_pending(g)) {
            return 1;
        }
    }
    return 0;
}

int
mom_raft_syncing(const mom_raft_t *m)
{
    return m->syncing;
}

/* What follows a flush's commit once it is on disk (or need not be). */
static void
flush_durable(mom_raft_t *m, int writes, int lazy, uint64_t now_ms)
{
    size_t i;

    if (writes) {
        mom_raft_lazy_flushed(m, lazy, now_ms);
    }
    for (i = 0; i < m->n_groups; i++) {
        mom_raft_group_durable(m->groups[i], now_ms);
    }
}

void
mom_raft_synced(mom_raft_t *m, uint64_t now_ms)
{
    if (m->syncing) {
        m->syncing = 0;
        flush_durable(m, 1, 0, now_ms); /* it wrote, durably */
    }
}

void
mom_raft_feed(mom_raft_group_t *g, struct raft_event *ev, uint64_t now_ms)
{
    group_step(g, ev, now_ms, NULL);
}

void
mom_raft_propose(mom_raft_t *m, uint64_t now_ms)
{
    size_t i;

    for (i = 0; i < m->n_groups; i++) {
        if (!mom_raft_props_held(m->groups[i])) {
            group_submit_proposals(m->groups[i], now_ms);
        }
    }
}

void
mom_raft_apply_committed(mom_raft_t *m)
{
    size_t i;
    int work = 0;

    for (i = 0; i < m->n_groups && !work; i++) {
        work = mom_raft_group_applicable(m->groups[i]);
    }
    if (!work) {
        return;
    }
    mom_raft_store_begin_as(m->store, 0);
    for (i = 0; i < m->n_groups; i++) {
        mom_raft_group_apply_written(m->groups[i]);
    }
    if (m->cb.applied_batch != NULL) {
        m->cb.applied_batch(m->cb.ctx);
    }
    mom_raft_store_commit(m->store);
    m->stats.flushes++;
}

void
mom_raft_flush(mom_raft_t *m, uint64_t now_ms)
{
    mom_raft_group_t *g;
    size_t i, written = 0;
    int work = 0, writes = 0, lazy = 1, sole = 0, off_loop;

    mom_raft_propose(m, now_ms);
    if (m->syncing) {
        return;
    }
    for (i = 0; i < m->n_groups; i++) {
        work |= mom_raft_group_pending(m->groups[i]);
    }
    if (!work) {
        return;
    }
    for (i = 0; i < m->n_groups; i++) {
        if (mom_raft_group_has_writes(m->groups[i])) {
            writes = 1;
            lazy = lazy && mom_raft_group_lazy(m->groups[i], now_ms);
            sole = sole || mom_raft_group_sole_voter(m->groups[i]);
        }
    }
    lazy = lazy && writes; /* not synced: only entries a majority will sync */
    off_loop = writes && !lazy && !sole && m->cb.sync_start != NULL &&
               mom_raft_store_syncs(m->store);
    mom_raft_store_begin_as(m->store, writes && !lazy && !off_loop);
    for (i = 0; i < m->n_groups; i++) {
        g = m->groups[i];
        if (lazy && g->tail != NULL) {
            g->lazy_last = raft_last_index(&g->raft);
            g->lazy_at = now_ms;
        }
        written += mom_raft_group_write(g);
    }
    for (i = 0; i < m->n_groups; i++) {
        mom_raft_group_persist_early(m->groups[i], now_ms);
        mom_raft_group_apply(m->groups[i]);
        mom_raft_group_settle(m->groups[i]);
    }
    if (m->cb.applied_batch != NULL) {
        m->cb.applied_batch(m->cb.ctx);
    }
    mom_raft_store_commit(m->store);
    m->stats.flushes++;
    m->stats.group_writes += written;
    if (off_loop) {
        /* Reported by mom_raft_synced() once the sync has ended. */
        m->syncing = 1;
        m->stats.syncs_off_loop++;
        m->cb.sync_start(m->cb.ctx);
        return;
    }
    flush_durable(m, writes, lazy, now_ms);
}
