/*
 * Idempotency results (table applied_results): lookups, inserts and the
 * deterministic pruning. An in-memory upper bound of each (group,
 * producer)'s newest sequence spares the lookup of a command seen for the
 * first time: it only grows with inserts (deletions and rollbacks leave it
 * above the truth, which is safe), and a snapshot restore inserts through
 * mom_store_dedup_put like any other.
 *
 * applied_producers holds each (group, producer)'s exact newest sequence
 * (replicated state: the pruning reads it, so every replica must agree):
 * inserts note it in st->pending, written by mom_store_flush() before
 * COMMIT (or at once outside a transaction); the pruning writes what is
 * pending first and drops a producer's row with its last result.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* Steps a query of one integer: MOM_STORE_OK with *out, or NOT_FOUND. */
static int
mom_store_get_int(mom_store_t *st, sqlite3_stmt *s, sqlite3_int64 *out)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
    }
    mom_store_finish(s);
    if (rc == SQLITE_ROW) {
        return MOM_STORE_OK;
    }
    return rc == SQLITE_DONE ? MOM_STORE_NOT_FOUND
                             : mom_store_fail(st, sqlite3_sql(s));
}

static uint32_t
mom_store_newest_hash(uint32_t group, uint64_t producer)
{
    uint64_t h = (producer ^ ((uint64_t)group << 17)) * 0x9e3779b97f4a7c15ULL;

    return (uint32_t)(h >> 32);
}

static mom_store_newest_t *
mom_store_newest_find(mom_store_t *st, uint32_t group, uint64_t producer)
{
    uint32_t mask = st->newest_cap - 1, i;

    if (st->newest_cap == 0) {
        return NULL;
    }
    for (i = mom_store_newest_hash(group, producer) & mask; st->newest[i].used;
         i = (i + 1) & mask) {
        if (st->newest[i].group == group &&
            st->newest[i].producer == producer) {
            return &st->newest[i];
        }
    }
    return NULL;
}

/* Inserts into a table with room (no duplicates). */
static mom_store_newest_t *
mom_store_newest_insert(mom_store_newest_t *table, uint32_t cap,
                        const mom_store_newest_t *e)
{
    uint32_t i = mom_store_newest_hash(e->group, e->producer) & (cap - 1);

    while (table[i].used) {
        i = (i + 1) & (cap - 1);
    }
    table[i] = *e;
    table[i].used = true;
    return &table[i];
}

/*
 * The cached bound of (group, producer), read from the table the first
 * time; *out is NULL when the cache cannot grow (then nothing is skipped).
 */
static int
mom_store_newest(mom_store_t *st, uint32_t group, uint64_t producer,
                 mom_store_newest_t **out)
{
    mom_store_newest_t e = {.group = group, .producer = producer};
    mom_store_newest_t *table;
    sqlite3_stmt *s;
    uint32_t cap;
    int rc;

    *out = mom_store_newest_find(st, group, producer);
    if (*out != NULL) {
        return MOM_STORE_OK;
    }
    s = st->stmt[S_DEDUP_NEWEST];
    sqlite3_bind_int64(s, 1, group);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)producer);
    rc = mom_store_get_int(st, s, &e.newest);
    if (rc == MOM_STORE_ERROR) {
        return rc;
    }
    if (rc == MOM_STORE_NOT_FOUND) {
        e.newest = INT64_MIN;
    }
    /* Inserts of the open transaction not written to applied_producers. */
    for (unsigned i = 0; i < st->n_pending; i++) {
        if (st->pending[i].group == group &&
            st->pending[i].producer == producer &&
            st->pending[i].newest > e.newest) {
            e.newest = st->pending[i].newest;
        }
    }
    if ((st->newest_used + 1) * 2 > st->newest_cap) {
        cap = st->newest_cap ? st->newest_cap * 2 : 64;
        table = cap <= (1u << 20) ? calloc(cap, sizeof(*table)) : NULL;
        if (table == NULL) {
            return MOM_STORE_OK;
        }
        for (uint32_t i = 0; i < st->newest_cap; i++) {
            if (st->newest[i].used) {
                mom_store_newest_insert(table, cap, &st->newest[i]);
            }
        }
        free(st->newest);
        st->newest = table;
        st->newest_cap = cap;
    }
    *out = mom_store_newest_insert(st->newest, st->newest_cap, &e);
    st->newest_used++;
    return MOM_STORE_OK;
}

void
mom_store_results_free(mom_store_t *st)
{
    free(st->newest);
}

int
mom_store_results_flush(mom_store_t *st)
{
    sqlite3_stmt *s = st->stmt[S_DEDUP_SET_NEWEST];

    while (st->n_pending > 0) {
        /* Taken off first: outside a transaction the commit hook sees it. */
        mom_store_pending_t p = st->pending[--st->n_pending];

        sqlite3_bind_int64(s, 1, p.group);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)p.producer);
        sqlite3_bind_int64(s, 3, p.newest);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    return MOM_STORE_OK;
}

/* Notes a result's sequence as its producer's newest, if it is. */
static int
mom_store_results_note(mom_store_t *st, uint32_t group, uint64_t producer,
                       sqlite3_int64 sequence)
{
    mom_store_pending_t *p;

    for (unsigned i = 0; i < st->n_pending; i++) {
        p = &st->pending[i];
        if (p->group == group && p->producer == producer) {
            p->newest = sequence > p->newest ? sequence : p->newest;
            return MOM_STORE_OK;
        }
    }
    if (st->n_pending == MOM_STORE_PENDING &&
        mom_store_results_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    st->pending[st->n_pending++] = (mom_store_pending_t){
        .group = group, .producer = producer, .newest = sequence};
    /* No transaction to defer to: write now. */
    return sqlite3_get_autocommit(st->db) ? mom_store_results_flush(st)
                                          : MOM_STORE_OK;
}

int
mom_store_dedup_get(mom_store_t *st, uint32_t group, uint64_t producer,
                    uint64_t sequence, unsigned *status, mom_buf_t *body)
{
    sqlite3_stmt *s = st->stmt[S_DEDUP_GET];
    mom_store_newest_t *n;
    int rc;

    /* A sequence above the producer's newest was never stored: the common
     * case (a command committed once) costs no lookup. */
    rc = mom_store_newest(st, group, producer, &n);
    if (rc == MOM_STORE_ERROR) {
        return rc;
    }
    if (n != NULL && (sqlite3_int64)sequence > n->newest) {
        return MOM_STORE_NOT_FOUND;
    }

    sqlite3_bind_int64(s, 1, group);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)producer);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sequence);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *status = (unsigned)sqlite3_column_int(s, 0);
        mom_buf_append(body, sqlite3_column_blob(s, 1),
                       (size_t)sqlite3_column_bytes(s, 1));
    }
    mom_store_finish(s);
    if (rc == SQLITE_ROW) {
        return body->failed ? MOM_STORE_ERROR : MOM_STORE_OK;
    }
    return rc == SQLITE_DONE ? MOM_STORE_NOT_FOUND
                             : mom_store_fail(st, "dedup get");
}

int
mom_store_dedup_put(mom_store_t *st, uint32_t group, uint64_t producer,
                    uint64_t sequence, unsigned status, const void *body,
                    size_t len)
{
    sqlite3_stmt *s = st->stmt[S_DEDUP_PUT];
    mom_store_newest_t *n = mom_store_newest_find(st, group, producer);

    if (n != NULL && (sqlite3_int64)sequence > n->newest) {
        n->newest = (sqlite3_int64)sequence;
    }
    sqlite3_bind_int64(s, 1, group);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)producer);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sequence);
    sqlite3_bind_int(s, 4, (int)status);
    sqlite3_bind_blob(s, 5, len ? body : "", (int)len, SQLITE_STATIC);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return mom_store_results_note(st, group, producer, (sqlite3_int64)sequence);
}

/* The producers of a group with results, in order, and their newest. */
typedef struct {
    sqlite3_int64 producer;
    sqlite3_int64 newest;
} mom_store_producer_t;

static int
mom_store_dedup_producer(mom_store_t *st, uint32_t group, bool first,
                         mom_store_producer_t *p)
{
    sqlite3_stmt *s = st->stmt[S_DEDUP_NEXT_PRODUCER];
    int rc;

    if (!first && p->producer == INT64_MAX) {
        return MOM_STORE_NOT_FOUND;
    }
    sqlite3_bind_int64(s, 1, group);
    sqlite3_bind_int64(s, 2, first ? INT64_MIN : p->producer + 1);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        p->producer = sqlite3_column_int64(s, 0);
        p->newest = sqlite3_column_int64(s, 1);
    }
    mom_store_finish(s);
    if (rc == SQLITE_ROW) {
        return MOM_STORE_OK;
    }
    return rc == SQLITE_DONE ? MOM_STORE_NOT_FOUND
                             : mom_store_fail(st, "dedup producers");
}

/* v - d, or INT64_MIN below it. */
static sqlite3_int64
mom_store_minus(sqlite3_int64 v, uint64_t d)
{
    uint64_t above_min = (uint64_t)v - (uint64_t)INT64_MIN;

    return d >= above_min ? INT64_MIN : (sqlite3_int64)((uint64_t)v - d);
}

int
mom_store_dedup_prune(mom_store_t *st, uint32_t group, uint64_t window,
                      uint64_t stale)
{
    mom_store_producer_t p;
    sqlite3_int64 newest = INT64_MIN, below;
    sqlite3_stmt *s;
    int rc;

    if (mom_store_results_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    /* The group's newest sequence over all its producers. */
    for (rc = mom_store_dedup_producer(st, group, true, &p); rc == MOM_STORE_OK;
         rc = mom_store_dedup_producer(st, group, false, &p)) {
        newest = p.newest > newest ? p.newest : newest;
    }
    if (rc == MOM_STORE_ERROR) {
        return rc;
    }
    for (rc = mom_store_dedup_producer(st, group, true, &p); rc == MOM_STORE_OK;
         rc = mom_store_dedup_producer(st, group, false, &p)) {
        below = mom_store_minus(p.newest, window);
        if (mom_store_minus(newest, stale) > below) {
            below = mom_store_minus(newest, stale);
        }
        s = st->stmt[S_DEDUP_PRUNE];
        sqlite3_bind_int64(s, 1, group);
        sqlite3_bind_int64(s, 2, p.producer);
        sqlite3_bind_int64(s, 3, below);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
        if (below <= p.newest) {
            continue;
        }
        /* Its last result went: so does the producer. */
        s = st->stmt[S_DEDUP_DROP_PRODUCER];
        sqlite3_bind_int64(s, 1, group);
        sqlite3_bind_int64(s, 2, p.producer);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    return rc == MOM_STORE_ERROR ? rc : MOM_STORE_OK;
}
