/*
 * The storage side of the Raft driver (see raft_group_int.h): entries not
 * yet written (chunks), snapshots received from a leader, building outgoing
 * messages from our log, the per-group part of a flush (write, apply, take
 * a snapshot, report durability) and loading a group at start.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_codec.h"
#include "raft_group_int.h"

/* Entries kept in memory between their write and their apply. */
#define MOM_RAFT_KEPT_MAX 4096

static void
oom(void)
{
    fprintf(stderr, "momd: raft: out of memory\n");
    abort();
}

/* --- unflushed log -------------------------------------------------------- */

static void
chunk_free(mom_raft_chunk_t *c)
{
    raft_free(c->batch);
    free(c);
}

/* Drops the entries from `index` on from a list of chunks; how many. */
static size_t
chunks_cut(mom_raft_chunk_t **head, mom_raft_chunk_t **last, uint64_t index)
{
    mom_raft_chunk_t *c, **pp = head;
    size_t dropped = 0;

    *last = NULL;
    while ((c = *pp) != NULL) {
        if (c->index >= index) {
            *pp = c->next;
            dropped += c->n;
            chunk_free(c);
            continue;
        }
        if (c->index + c->n > index) {
            dropped += c->index + c->n - index;
            c->n = (unsigned)(index - c->index);
        }
        *last = c;
        pp = &c->next;
    }
    return dropped;
}

/* Drops the unflushed entries, and the kept ones, from `index` on. */
static void
tail_cut(mom_raft_group_t *g, uint64_t index)
{
    chunks_cut(&g->tail, &g->tail_last, index);
    g->kept_n -= chunks_cut(&g->kept, &g->kept_last, index);
}

/* Keeps a written chunk for the apply, within MOM_RAFT_KEPT_MAX entries. */
static void
kept_push(mom_raft_group_t *g, mom_raft_chunk_t *c)
{
    mom_raft_chunk_t *old;

    c->next = NULL;
    if (g->kept_last != NULL) {
        g->kept_last->next = c;
    } else {
        g->kept = c;
    }
    g->kept_last = c;
    g->kept_n += c->n;
    while ((old = g->kept) != NULL && g->kept_n > MOM_RAFT_KEPT_MAX) {
        g->kept = old->next;
        g->kept_n -= old->n;
        chunk_free(old);
    }
    if (g->kept == NULL) {
        g->kept_last = NULL;
    }
}

/* Frees the kept chunks whose entries are all applied. */
static void
kept_release(mom_raft_group_t *g)
{
    mom_raft_chunk_t *c;

    while ((c = g->kept) != NULL && c->index + c->n <= g->applied + 1) {
        g->kept = c->next;
        g->kept_n -= c->n;
        chunk_free(c);
    }
    if (g->kept == NULL) {
        g->kept_last = NULL;
    }
}

void
mom_raft_log_add(mom_raft_group_t *g, uint64_t index,
                 struct raft_entry *entries, unsigned n)
{
    mom_raft_chunk_t *c;

    tail_cut(g, index);
    if (index <= g->stored_last &&
        (g->truncate_from == 0 || index < g->truncate_from)) {
        g->truncate_from = index;
    }
    c = mom_raft_xmalloc(sizeof *c + n * sizeof *entries);
    c->next = NULL;
    c->index = index;
    c->n = n;
    c->batch = entries[0].batch; /* ours now: one batch per update */
    memcpy(c->entries, entries, n * sizeof *entries);
    if (g->tail_last != NULL) {
        g->tail_last->next = c;
    } else {
        g->tail = c;
    }
    g->tail_last = c;
}

void
mom_raft_install_begin(mom_raft_group_t *g, struct raft_snapshot_metadata *meta,
                       struct raft_buffer *data)
{
    if (g->installing) { /* raft ignores a second one; be safe anyway */
        raft_configuration_close(&g->install_meta.configuration);
        raft_free(g->install_data.base);
    }
    g->installing = 1;
    g->install_meta = *meta;
    g->install_data = *data;
    /* The install discards the whole log, written or not. */
    tail_cut(g, 0);
    g->truncate_from = 0;
}

void
mom_raft_log_discard(mom_raft_group_t *g)
{
    mom_raft_held_t *h;
    unsigned i;

    tail_cut(g, 0);
    while ((h = g->held) != NULL) {
        g->held = h->next;
        free(h);
    }
    if (g->installing || g->installed) {
        raft_configuration_close(&g->install_meta.configuration);
        raft_free(g->install_data.base);
    }
    if (g->snap_taken) {
        raft_configuration_close(&g->snap_meta.configuration);
    }
    for (i = 0; i < g->n_conf_events; i++) {
        raft_configuration_close(&g->conf_events[i].conf);
    }
    free(g->conf_events);
    free(g->conf);
}

/* --- outgoing messages ---------------------------------------------------- */

typedef struct {
    struct raft_entry *entries;
    unsigned got;
    uint64_t first;
    uint8_t *data;
    size_t len;
    size_t cap;
} fill_ctx_t;

static int
fill_entry(void *arg, uint64_t index, uint64_t term, int type, const void *data,
           size_t len)
{
    fill_ctx_t *f = arg;
    struct raft_entry *e = &f->entries[f->got];

    if (index != f->first + f->got) {
        return 1; /* a hole: the message cannot be built */
    }
    if (f->len + len > f->cap) {
        f->cap = (f->len + len) * 2;
        f->data = mom_raft_xrealloc(f->data, f->cap);
    }
    if (len > 0) {
        memcpy(f->data + f->len, data, len);
    }
    e->term = term;
    e->type = (enum raft_entry_type)type;
    e->buf.base = (void *)(uintptr_t)f->len; /* an offset until the end */
    e->buf.len = len;
    e->batch = NULL;
    f->len += len;
    f->got++;
    return 0;
}

/* Entries [first, first + n) from SQLite and the unflushed chunks. */
static int
log_fill(mom_raft_group_t *g, uint64_t first, unsigned n, fill_ctx_t *f)
{
    uint64_t tail_first = g->tail != NULL ? g->tail->index : UINT64_MAX;
    uint64_t last = first + n - 1, idx, db_last;
    mom_raft_chunk_t *c = g->tail;
    unsigned i;

    f->entries = mom_raft_xmalloc(n * sizeof *f->entries);
    f->first = first;
    if (first < tail_first) {
        db_last = last < tail_first ? last : tail_first - 1;
        if (mom_raft_store_read(g->m->store, g->id, first, db_last, 1,
                                fill_entry, f) != 0 ||
            f->got != db_last - first + 1) {
            return -1;
        }
        for (i = 0; i < f->got; i++) {
            f->entries[i].buf.base =
                f->data + (uintptr_t)f->entries[i].buf.base;
        }
    }
    for (idx = first + f->got; idx <= last; idx++) {
        while (c != NULL && idx >= c->index + c->n) {
            c = c->next;
        }
        if (c == NULL || idx < c->index) {
            return -1;
        }
        f->entries[f->got++] = c->entries[idx - c->index];
    }
    return 0;
}

static void
deliver(mom_raft_group_t *g, uint64_t to, const uint8_t *buf, size_t len)
{
    mom_raft_held_t *h;

    if (!g->state_dirty && g->held == NULL) {
        g->m->cb.send(g->m->cb.ctx, g->id, to, buf, len);
        g->m->stats.messages_sent++;
        return;
    }
    /* The term or vote of this message is not durable yet. */
    h = mom_raft_xmalloc(sizeof *h + len);
    h->next = NULL;
    h->to = to;
    h->len = len;
    memcpy(h->buf, buf, len);
    if (g->held_last != NULL) {
        g->held_last->next = h;
    } else {
        g->held = h;
    }
    g->held_last = h;
    g->m->stats.messages_held++;
}

static void
encode_deliver(mom_raft_group_t *g, const struct raft_message *msg,
               const struct raft_buffer *conf)
{
    uint8_t *buf;
    size_t len;

    if (mom_raft_encode(msg, conf, &buf, &len) == 0) {
        deliver(g, msg->server_id, buf, len);
        free(buf);
    } else {
        g->m->stats.messages_dropped++;
    }
}

/*
 * libraft sizes AppendEntries by count (up to max_inflight_entries): send
 * entries whose data exceeds max_message_bytes as consecutive messages,
 * each anchored on the last entry of the previous one. They arrive in order
 * (per-destination order) and each is acknowledged on its own.
 */
static void
send_entries(mom_raft_group_t *g, const struct raft_message *msg)
{
    const struct raft_append_entries *ae = &msg->append_entries;
    struct raft_message piece = *msg;
    size_t budget = g->m->opt.max_message_bytes, bytes;
    unsigned i = 0, n;

    while (i < ae->n_entries) {
        bytes = 0;
        for (n = 0; i + n < ae->n_entries; n++) {
            if (n > 0 && budget > 0 &&
                bytes + ae->entries[i + n].buf.len > budget) {
                break;
            }
            bytes += ae->entries[i + n].buf.len;
        }
        piece.append_entries.entries = ae->entries + i;
        piece.append_entries.n_entries = n;
        piece.append_entries.prev_log_index = ae->prev_log_index + i;
        piece.append_entries.prev_log_term =
            i == 0 ? ae->prev_log_term : ae->entries[i - 1].term;
        encode_deliver(g, &piece, NULL);
        i += n;
    }
}

/*
 * Lazy snapshots: the state machine is serialized only now that a follower
 * needs it, at our applied index, which is at or past the snapshot index
 * raft asks for (libraft accepts a newer one, as its legacy layer does:
 * the follower acknowledges the index it installed).
 */
static int
snapshot_serialize(mom_raft_group_t *g, struct raft_message *out,
                   struct raft_buffer *conf)
{
    mom_raft_t *m = g->m;
    uint8_t *data = NULL;
    size_t len = 0;

    /* The state machine's committed state is the state at `applied` (its
     * own index counts commands only, so it may be lower), unless it is
     * ahead of us: after a restart, until the commit index catches up. */
    if (g->conf == NULL || g->applied < out->install_snapshot.last_index ||
        m->cb.applied_index(m->cb.ctx, g->id) > g->applied) {
        return -1;
    }
    if (m->cb.snapshot_take(m->cb.ctx, g->id, &data, &len) != 0) {
        fprintf(stderr, "momd: raft group %" PRIu32 ": snapshot failed\n",
                g->id);
        free(data);
        return -1;
    }
    out->install_snapshot.last_index = g->applied;
    out->install_snapshot.last_term = g->applied_term;
    out->install_snapshot.conf_index = g->conf_index;
    out->install_snapshot.data.base = data;
    out->install_snapshot.data.len = len;
    conf->base = g->conf;
    conf->len = g->conf_len;
    m->stats.snapshots_sent++;
    return 0;
}

void
mom_raft_send(mom_raft_group_t *g, const struct raft_message *msg)
{
    struct raft_message out = *msg;
    struct raft_buffer conf = {NULL, 0};
    fill_ctx_t f;
    int ok = 1;

    mom_raft_note_sent(g, msg);
    memset(&f, 0, sizeof f);
    out.install_snapshot.data.base = NULL;
    if (msg->type == RAFT_APPEND_ENTRIES && msg->append_entries.n_entries) {
        ok = log_fill(g, msg->append_entries.prev_log_index + 1,
                      msg->append_entries.n_entries, &f) == 0;
        out.append_entries.entries = f.entries;
    } else if (msg->type == RAFT_INSTALL_SNAPSHOT) {
        ok = snapshot_serialize(g, &out, &conf) == 0;
    }
    if (!ok) {
        g->m->stats.messages_dropped++;
    } else if (out.type == RAFT_APPEND_ENTRIES &&
               out.append_entries.n_entries) {
        send_entries(g, &out);
    } else {
        encode_deliver(g, &out, &conf);
    }
    free(f.entries);
    free(f.data);
    if (out.type == RAFT_INSTALL_SNAPSHOT) {
        free(out.install_snapshot.data.base);
    }
}

/* --- flush: write --------------------------------------------------------- */

int
mom_raft_group_pending(const mom_raft_group_t *g)
{
    return mom_raft_group_has_writes(g) ||
           (g->n_props > 0 && !mom_raft_props_held(g)) || g->held != NULL ||
           raft_commit_index(&g->raft) > g->applied;
}

/* Whether the flush must write to the log or the state: its commit must
 * then be durable before anything is reported or sent. */
int
mom_raft_group_has_writes(const mom_raft_group_t *g)
{
    return g->tail != NULL || g->truncate_from != 0 || g->state_dirty ||
           g->installing;
}

static uint8_t *
dup_bytes(const void *p, size_t n)
{
    uint8_t *copy = mom_raft_xmalloc(n);

    if (n > 0) {
        memcpy(copy, p, n);
    }
    return copy;
}

static void
set_conf(mom_raft_group_t *g, const void *data, size_t len, uint64_t index)
{
    free(g->conf);
    g->conf = dup_bytes(data, len);
    g->conf_len = len;
    g->conf_index = index;
}

/* Persists a snapshot from the leader and loads it into the state machine. */
static void
install_write(mom_raft_group_t *g)
{
    mom_raft_t *m = g->m;
    struct raft_snapshot_metadata *meta = &g->install_meta;
    mom_raft_snapshot_row_t row;
    struct raft_buffer conf;

    if (raft_configuration_encode(&meta->configuration, &conf) != 0) {
        oom();
    }
    row.index = meta->index;
    row.term = meta->term;
    row.conf_index = meta->configuration_index;
    row.conf = conf.base;
    row.conf_len = conf.len;
    mom_raft_store_truncate(m->store, g->id, 0);
    g->log_rows = 0;
    mom_raft_store_save_snapshot(m->store, g->id, &row);
    if (m->cb.snapshot_restore(m->cb.ctx, g->id, g->install_data.base,
                               g->install_data.len, row.index) != 0) {
        fprintf(stderr,
                "momd: raft group %" PRIu32 ": snapshot restore failed\n",
                g->id);
        abort();
    }
    set_conf(g, conf.base, conf.len, meta->configuration_index);
    raft_free(conf.base);
    raft_free(g->install_data.base);
    g->install_data.base = NULL;
    g->applied = meta->index;
    g->applied_term = meta->term;
    g->snap_index = meta->index;
    g->stored_last = meta->index;
    g->installing = 0;
    g->installed = 1; /* reported to raft after the commit */
    m->stats.snapshots_installed++;
}

/* The leader of a group of one voter: this node is the whole majority. */
int
mom_raft_group_sole_voter(mom_raft_group_t *g)
{
    const struct raft_configuration *conf = &g->raft.configuration;

    return raft_state(&g->raft) == RAFT_LEADER && conf->n == 1 &&
           conf->servers[0].id == g->m->node_id &&
           conf->servers[0].role == RAFT_VOTER;
}

/* A sole voter commits what it writes at once: no one will ever ask for
 * these entries, so they need not be written at all. */
static int
may_elide(mom_raft_group_t *g)
{
    return mom_raft_group_sole_voter(g) && !g->installing && g->conf != NULL &&
           g->applied_term != 0;
}

int
mom_raft_group_write(mom_raft_group_t *g)
{
    mom_raft_store_t *s = g->m->store;
    mom_raft_chunk_t *c;
    int wrote = 0;
    unsigned i;

    if (g->installing) {
        install_write(g);
        wrote = 1;
    }
    if (g->truncate_from != 0) {
        mom_raft_store_truncate(s, g->id, g->truncate_from);
        g->stored_last = g->truncate_from - 1;
        g->truncate_from = 0;
        wrote = 1;
    }
    if (g->tail != NULL && may_elide(g)) {
        g->elided = 1;
        for (c = g->tail; c != NULL; c = c->next) {
            if (c->n > 0) {
                g->stored_last = c->index + c->n - 1;
            }
        }
        wrote = 1;
    }
    while (!g->elided && (c = g->tail) != NULL) {
        g->log_rows = 1;
        for (i = 0; i < c->n; i++) {
            mom_raft_store_append(s, g->id, c->index + i, c->entries[i].term,
                                  (int)c->entries[i].type,
                                  c->entries[i].buf.base,
                                  c->entries[i].buf.len);
        }
        g->m->stats.entries_written += c->n;
        if (c->n > 0) {
            g->stored_last = c->index + c->n - 1;
        }
        g->tail = c->next;
        kept_push(g, c);
        wrote = 1;
    }
    if (!g->elided) {
        g->tail_last = NULL;
    }
    if (g->state_dirty) {
        mom_raft_store_save_state(s, g->id, g->term, g->vote);
        g->state_dirty = 0;
        wrote = 1;
    }
    return wrote;
}

/* --- flush: apply --------------------------------------------------------- */

static void
conf_event_push(mom_raft_group_t *g, uint64_t index, const void *data,
                size_t len)
{
    struct raft_buffer buf = {(void *)data, len};
    mom_raft_conf_event_t *ev;

    if (g->n_conf_events == g->cap_conf_events) {
        g->cap_conf_events = g->cap_conf_events ? g->cap_conf_events * 2 : 4;
        g->conf_events = mom_raft_xrealloc(
            g->conf_events, g->cap_conf_events * sizeof *g->conf_events);
    }
    ev = &g->conf_events[g->n_conf_events];
    raft_configuration_init(&ev->conf);
    if (raft_configuration_decode(&buf, &ev->conf) != 0) {
        raft_configuration_close(&ev->conf);
        fprintf(stderr,
                "momd: raft group %" PRIu32 ": bad configuration at %" PRIu64
                "\n",
                g->id, index);
        return;
    }
    ev->index = index;
    g->n_conf_events++;
}

static int
apply_entry(void *arg, uint64_t index, uint64_t term, int type,
            const void *data, size_t len)
{
    mom_raft_group_t *g = arg;
    mom_raft_t *m = g->m;
    void *cookie;

    if (index != g->applied + 1) {
        return 1;
    }
    if (type == RAFT_COMMAND) {
        cookie = mom_raft_waiter_take(g, index, term);
        if (index > g->sm_applied) {
            m->cb.apply(m->cb.ctx, g->id, index, data, len, cookie);
            m->stats.entries_applied++;
        }
    } else if (type == RAFT_CHANGE) {
        set_conf(g, data, len, index);
        conf_event_push(g, index, data, len);
    }
    g->applied = index;
    g->applied_term = term;
    g->snap_entries++;
    g->snap_bytes += len;
    return 0;
}

/* The snapshot row for the state machine as of `applied`. */
static void
save_applied_snapshot(mom_raft_group_t *g)
{
    mom_raft_snapshot_row_t row;

    row.index = g->applied;
    row.term = g->applied_term;
    row.conf_index = g->conf_index;
    row.conf = g->conf;
    row.conf_len = g->conf_len;
    mom_raft_store_save_snapshot(g->m->store, g->id, &row);
}

/*
 * Entries to keep behind a snapshot: snapshot_trailing, or as many as fit
 * in the group's share of snapshot_trailing_bytes at the mean size of
 * those applied since the last one. Under load 128 entries are ~20 ms of a
 * busy partition: a follower that paused longer (a slow fsync, a
 * checkpoint, a restart) would need the whole partition sent to it. A sole
 * voter has no follower to wait for.
 */
static unsigned
snapshot_trailing(mom_raft_group_t *g)
{
    const mom_raft_options_t *o = &g->m->opt;
    uint64_t mean, fit, share;

    if (o->snapshot_trailing_bytes == 0 || g->snap_entries == 0 ||
        mom_raft_group_sole_voter(g)) {
        return o->snapshot_trailing;
    }
    share = o->snapshot_trailing_bytes / (g->m->n_groups ? g->m->n_groups : 1);
    mean = g->snap_bytes / g->snap_entries;
    fit = share / (mean > 0 ? mean : 1);
    if (fit > MOM_RAFT_TRAILING_MAX) {
        fit = MOM_RAFT_TRAILING_MAX;
    }
    return fit > o->snapshot_trailing ? (unsigned)fit : o->snapshot_trailing;
}

/*
 * A snapshot at `applied`: its metadata (the data is the state machine
 * itself, in this database) and the log compacted behind it.
 */
static void
snapshot_take(mom_raft_group_t *g)
{
    mom_raft_t *m = g->m;
    struct raft_buffer conf = {g->conf, g->conf_len};

    raft_configuration_init(&g->snap_meta.configuration);
    if (raft_configuration_decode(&conf, &g->snap_meta.configuration) != 0) {
        raft_configuration_close(&g->snap_meta.configuration);
        return;
    }
    save_applied_snapshot(g);
    g->snap_trailing = snapshot_trailing(g);
    g->snap_entries = 0;
    g->snap_bytes = 0;
    if (g->applied > g->snap_trailing) {
        mom_raft_store_compact(m->store, g->id, g->applied - g->snap_trailing);
    }
    g->snap_meta.index = g->applied;
    g->snap_meta.term = g->applied_term;
    g->snap_meta.configuration_index = g->conf_index;
    g->snap_taken = 1;
    g->snap_index = g->applied;
    m->stats.snapshots_taken++;
}

/* Applies up to `commit` what a list of chunks in memory holds. */
static void
apply_chunks(mom_raft_group_t *g, mom_raft_chunk_t *c, uint64_t commit)
{
    const struct raft_entry *e;
    uint64_t index;
    unsigned i;

    for (; c != NULL; c = c->next) {
        for (i = 0; i < c->n; i++) {
            index = c->index + i;
            if (index <= g->applied) {
                continue;
            }
            e = &c->entries[i];
            if (index > commit || apply_entry(g, index, e->term, (int)e->type,
                                              e->buf.base, e->buf.len) != 0) {
                return;
            }
        }
    }
}

/*
 * After the apply of a flush that elided entries, in its transaction: the
 * entries that did not commit are written after all, and a snapshot row
 * at the applied index stands for the others (the state machine holds
 * them), with the rows it covers deleted so that the log has no hole.
 */
void
mom_raft_group_settle(mom_raft_group_t *g)
{
    mom_raft_t *m = g->m;
    mom_raft_chunk_t *c;
    int written = 0;
    unsigned i;

    if (!g->elided) {
        return;
    }
    g->elided = 0;
    while ((c = g->tail) != NULL) {
        for (i = 0; i < c->n; i++) {
            if (c->index + i > g->applied) {
                mom_raft_store_append(
                    m->store, g->id, c->index + i, c->entries[i].term,
                    (int)c->entries[i].type, c->entries[i].buf.base,
                    c->entries[i].buf.len);
                written = 1;
            }
        }
        g->tail = c->next;
        chunk_free(c);
    }
    g->tail_last = NULL;
    save_applied_snapshot(g);
    if (g->log_rows) {
        mom_raft_store_compact(m->store, g->id, g->applied);
    }
    g->log_rows = written;
    m->stats.elided_flushes++;
}

/* Applies the written entries up to `upto`: those older than the kept
 * chunks from SQLite, then these from memory, then (a gap: never
 * expected) SQLite again. */
static void
apply_written(mom_raft_group_t *g, uint64_t upto)
{
    mom_raft_t *m = g->m;
    uint64_t first = g->kept != NULL ? g->kept->index : upto + 1;

    if (g->applied + 1 < first) {
        mom_raft_store_read(m->store, g->id, g->applied + 1,
                            upto < first ? upto : first - 1, 1, apply_entry, g);
    }
    apply_chunks(g, g->kept, upto);
    if (g->applied < upto) {
        mom_raft_store_read(m->store, g->id, g->applied + 1, upto, 1,
                            apply_entry, g);
    }
}

int
mom_raft_group_applicable(mom_raft_group_t *g)
{
    uint64_t commit = raft_commit_index(&g->raft);

    return g->is_leader && g->log_rows && !g->installing && !g->installed &&
           !g->raft.snapshot.installing &&
           (commit < g->stored_last ? commit : g->stored_last) > g->applied;
}

void
mom_raft_group_apply_written(mom_raft_group_t *g)
{
    uint64_t commit = raft_commit_index(&g->raft);

    if (!mom_raft_group_applicable(g)) {
        return;
    }
    g->sm_applied = g->m->cb.applied_index(g->m->cb.ctx, g->id);
    apply_written(g, commit < g->stored_last ? commit : g->stored_last);
    kept_release(g);
}

void
mom_raft_group_apply(mom_raft_group_t *g)
{
    mom_raft_t *m = g->m;
    uint64_t commit = raft_commit_index(&g->raft);

    if (commit > g->applied) {
        g->sm_applied = m->cb.applied_index(m->cb.ctx, g->id);
        if (g->log_rows) {
            apply_written(g, commit);
        }
        if (g->elided) {
            apply_chunks(g, g->tail, commit);
        }
        if (g->applied < commit) {
            fprintf(stderr,
                    "momd: raft group %" PRIu32 ": entry %" PRIu64 " missing\n",
                    g->id, g->applied + 1);
        }
    }
    kept_release(g);
    /* Never while a snapshot from the leader is pending (notes/raft.md). */
    if (m->opt.snapshot_threshold > 0 && !g->raft.snapshot.installing &&
        !g->installed && g->conf != NULL && g->applied_term != 0 &&
        g->applied > g->snap_index &&
        g->applied - g->snap_index >= m->opt.snapshot_threshold) {
        snapshot_take(g);
    }
}

/* --- flush: durable ------------------------------------------------------- */

/* Tells raft that the whole log it knows is written. */
static void
report_persisted_entries(mom_raft_group_t *g, uint64_t now_ms)
{
    struct raft_event ev;

    if (g->raft.snapshot.installing || g->installing || g->lazy_last != 0 ||
        (g->tail != NULL && !g->elided) ||
        raft_last_index(&g->raft) <= g->raft.last_stored) {
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.type = RAFT_PERSISTED_ENTRIES;
    ev.persisted_entries.index = raft_last_index(&g->raft);
    mom_raft_feed(g, &ev, now_ms);
}

/*
 * Inside the flush transaction, after the writes and before the apply: a
 * sole voter reports its entries persisted now, so that they commit and are
 * applied in the same transaction as their write, under one fsync instead
 * of two transactions. Safe because nothing leaves this node before that
 * transaction commits: a group of one sends no messages, and results are
 * delivered after the commit; if the commit never happens (crash), the
 * entries and their effects are lost together, and no one was told.
 */
void
mom_raft_group_persist_early(mom_raft_group_t *g, uint64_t now_ms)
{
    if (mom_raft_group_sole_voter(g)) {
        report_persisted_entries(g, now_ms);
    }
}

/* Reports what the committed transaction made durable, then sends what
 * waited for it. */
void
mom_raft_group_durable(mom_raft_group_t *g, uint64_t now_ms)
{
    mom_raft_t *m = g->m;
    mom_raft_held_t *h;
    struct raft_event ev;
    unsigned i, n;
    int state;

    while ((h = g->held) != NULL && !g->state_dirty) {
        g->held = h->next;
        m->cb.send(m->cb.ctx, g->id, h->to, h->buf, h->len);
        m->stats.messages_sent++;
        free(h);
    }
    if (g->held == NULL) {
        g->held_last = NULL;
    }
    if (g->installed) {
        memset(&ev, 0, sizeof ev);
        ev.type = RAFT_PERSISTED_SNAPSHOT;
        ev.persisted_snapshot.metadata = g->install_meta; /* conf: raft's */
        ev.persisted_snapshot.offset = 0;
        ev.persisted_snapshot.last = true;
        g->installed = 0;
        mom_raft_feed(g, &ev, now_ms);
    }
    if (g->snap_taken && g->raft.snapshot.installing) {
        g->snap_taken = 0; /* never after an install started */
        raft_configuration_close(&g->snap_meta.configuration);
    } else if (g->snap_taken) {
        g->snap_taken = 0;
        memset(&ev, 0, sizeof ev);
        ev.type = RAFT_SNAPSHOT;
        ev.snapshot.metadata = g->snap_meta; /* conf: raft's */
        ev.snapshot.trailing = g->snap_trailing;
        mom_raft_feed(g, &ev, now_ms);
    }
    state = raft_state(&g->raft);
    if (state == RAFT_LEADER || state == RAFT_FOLLOWER) {
        report_persisted_entries(g, now_ms);
    }
    n = g->n_conf_events;
    g->n_conf_events = 0;
    for (i = 0; i < n; i++) {
        memset(&ev, 0, sizeof ev);
        ev.type = RAFT_CONFIGURATION;
        ev.configuration.index = g->conf_events[i].index;
        ev.configuration.conf = g->conf_events[i].conf; /* raft's */
        mom_raft_feed(g, &ev, now_ms);
    }
}
