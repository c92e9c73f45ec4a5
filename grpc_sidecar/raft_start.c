/*
 * Starting a Raft group from SQLite (see raft_group_int.h): bootstrap on
 * first start, then the RAFT_START event from the stored term, vote,
 * snapshot metadata and log. Only configuration entries carry their data
 * into RAFT_START: raft keeps nothing but terms (its "trail") and decodes
 * configurations, so the log is never loaded into memory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft_group_int.h"

typedef struct {
    struct raft_entry *entries;
    unsigned n;
    unsigned cap;
    uint64_t first;
    int hole;
} start_log_t;

static int
start_entry(void *arg, uint64_t index, uint64_t term, int type,
            const void *data, size_t len)
{
    start_log_t *l = arg;
    struct raft_entry *e;

    if (l->n == 0) {
        l->first = index;
    } else if (index != l->first + l->n) {
        l->hole = 1;
        return 1;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->entries = mom_raft_xrealloc(l->entries, l->cap * sizeof *l->entries);
    }
    e = &l->entries[l->n++];
    e->term = term;
    e->type = (enum raft_entry_type)type;
    e->batch = NULL;
    e->buf.base = NULL;
    e->buf.len = 0;
    if (type == RAFT_CHANGE) {
        e->buf.base = mom_raft_xmalloc(len);
        e->buf.len = len;
        if (len > 0) {
            memcpy(e->buf.base, data, len);
        }
    }
    return 0;
}

static void
start_log_free(start_log_t *l)
{
    unsigned i;

    for (i = 0; i < l->n; i++) {
        free(l->entries[i].buf.base);
    }
    free(l->entries);
    memset(l, 0, sizeof *l);
}

/* First start: term 1 and the voters' configuration as entry 1 (term 1),
 * the same on every voter, as libraft's own bootstrap writes it. */
static int
bootstrap(mom_raft_group_t *g, const uint64_t *voters, unsigned n_voters)
{
    mom_raft_store_t *s = g->m->store;
    struct raft_configuration conf;
    struct raft_buffer buf;
    char address[24];
    unsigned i;
    int rv = 0;

    raft_configuration_init(&conf);
    for (i = 0; i < n_voters && rv == 0; i++) {
        snprintf(address, sizeof address, "%" PRIu64, voters[i]);
        rv = raft_configuration_add(&conf, voters[i], address, RAFT_VOTER);
    }
    if (rv == 0) {
        rv = raft_configuration_encode(&conf, &buf);
    }
    raft_configuration_close(&conf);
    if (rv != 0) {
        return -1;
    }
    mom_raft_store_begin(s);
    mom_raft_store_save_state(s, g->id, 1, 0);
    mom_raft_store_append(s, g->id, 1, 1, RAFT_CHANGE, buf.base, buf.len);
    mom_raft_store_commit(s);
    raft_free(buf.base);
    return 0;
}

static struct raft_snapshot_metadata *
start_metadata(const mom_raft_snapshot_row_t *row)
{
    struct raft_snapshot_metadata *meta = mom_raft_xmalloc(sizeof *meta);
    struct raft_buffer conf = {row->conf, row->conf_len};

    meta->index = row->index;
    meta->term = row->term;
    meta->configuration_index = row->conf_index;
    raft_configuration_init(&meta->configuration);
    if (raft_configuration_decode(&conf, &meta->configuration) != 0) {
        raft_configuration_close(&meta->configuration);
        free(meta);
        return NULL;
    }
    return meta;
}

int
mom_raft_load_start(mom_raft_group_t *g, const uint64_t *voters,
                    unsigned n_voters, struct raft_event *ev)
{
    mom_raft_t *m = g->m;
    mom_raft_snapshot_row_t row;
    start_log_t log;
    uint64_t term = 0, vote = 0;
    int has_state, has_snap;

    memset(&log, 0, sizeof log);
    has_state =
        mom_raft_store_load_state(m->store, g->id, &term, &vote, &row) &&
        term > 0;
    has_snap = row.index > 0;
    mom_raft_store_read(m->store, g->id, 0, UINT64_MAX, 0, start_entry, &log);
    if (!has_state && !has_snap && log.n == 0 && n_voters > 0) {
        if (bootstrap(g, voters, n_voters) != 0) {
            return -1;
        }
        mom_raft_snapshot_row_free(&row);
        has_state =
            mom_raft_store_load_state(m->store, g->id, &term, &vote, &row);
        mom_raft_store_read(m->store, g->id, 0, UINT64_MAX, 0, start_entry,
                            &log);
    }
    /* What raft_step() asserts of a START (it is built without asserts). */
    if (log.hole || (!has_state && (log.n > 0 || has_snap)) ||
        (has_snap && log.n > 0 && log.first > row.index + 1) ||
        (!has_snap && log.n > 0 &&
         (log.first != 1 || log.entries[0].type != RAFT_CHANGE))) {
        fprintf(stderr,
                "momd: raft group %" PRIu32 ": corrupt storage (hole %d,"
                " state %d, snapshot %" PRIu64 ", log %" PRIu64 "..%" PRIu64
                ")\n",
                g->id, log.hole, has_state, row.index, log.first,
                log.first + log.n - 1);
        start_log_free(&log);
        mom_raft_snapshot_row_free(&row);
        return -1;
    }

    memset(ev, 0, sizeof *ev);
    ev->type = RAFT_START;
    ev->start.term = term;
    ev->start.voted_for = vote;
    ev->start.start_index =
        log.n > 0 ? log.first : (has_snap ? row.index + 1 : 1);
    ev->start.entries = log.entries;
    ev->start.n_entries = log.n;
    if (has_snap && (ev->start.metadata = start_metadata(&row)) == NULL) {
        start_log_free(&log);
        mom_raft_snapshot_row_free(&row);
        return -1;
    }

    g->term = term;
    g->vote = vote;
    g->stored_last =
        log.n > 0 ? log.first + log.n - 1 : (has_snap ? row.index : 0);
    g->log_rows = log.n > 0;
    /* Entries up to the snapshot, or the bootstrap entry 1, are applied;
     * set before the START step, which may commit more (single voter). */
    if (has_snap) {
        g->snap_index = row.index;
        g->applied = row.index;
        g->applied_term = row.term;
        g->conf = row.conf;
        g->conf_len = row.conf_len;
        g->conf_index = row.conf_index;
        row.conf = NULL;
    } else if (log.n > 0) {
        g->applied = 1;
        g->applied_term = log.entries[0].term;
        g->conf = mom_raft_xmalloc(log.entries[0].buf.len);
        memcpy(g->conf, log.entries[0].buf.base, log.entries[0].buf.len);
        g->conf_len = log.entries[0].buf.len;
        g->conf_index = 1;
    }
    mom_raft_snapshot_row_free(&row);
    return 0;
}

void
mom_raft_load_done(mom_raft_group_t *g, struct raft_event *ev)
{
    start_log_t log;

    (void)g;
    free(ev->start.metadata); /* its configuration is raft's now */
    memset(&log, 0, sizeof log);
    log.entries = ev->start.entries;
    log.n = ev->start.n_entries;
    start_log_free(&log);
}
