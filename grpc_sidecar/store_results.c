/*
 * Idempotency results: lookups, inserts and the deterministic pruning. A
 * result is a row of applied_results in the file, appended (a rowid table:
 * one leaf written per round, store.c says why), and its key a row of
 * temp.applied_keys in memory ((grp, producer, sequence) -> rowid), written
 * together in the caller's transaction (or one of their own): a rollback
 * takes both. The keys also give each (group, producer)'s exact newest
 * sequence, what the pruning reads (replicated state: every replica must
 * agree), by an index seek.
 *
 * An in-memory upper bound of each (group, producer)'s newest sequence
 * spares the lookup of a command seen for the first time, and tells an
 * insert that its key cannot exist yet: it only grows with inserts
 * (deletions and rollbacks leave it above the truth, which is safe), and a
 * snapshot restore inserts through mom_store_dedup_put like any other.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

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

/* Binds a result's key to ?1, ?2, ?3. */
static void
mom_store_bind_key(sqlite3_stmt *s, uint32_t group, uint64_t producer,
                   uint64_t sequence)
{
    sqlite3_bind_int64(s, 1, group);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)producer);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sequence);
}

void
mom_store_results_free(mom_store_t *st)
{
    free(st->newest);
}

/*
 * Outside a transaction a result and its key (or a pruning's rows and
 * keys) take one of their own: both or neither.
 */
static int
mom_store_results_begin(mom_store_t *st, bool *own)
{
    *own = sqlite3_get_autocommit(st->db) != 0;
    return *own ? mom_store_begin(st) : MOM_STORE_OK;
}

static int
mom_store_results_end(mom_store_t *st, bool own, int rc)
{
    if (!own) {
        return rc;
    }
    if (rc == MOM_STORE_OK && mom_store_commit(st) == MOM_STORE_OK) {
        return MOM_STORE_OK;
    }
    mom_store_rollback(st);
    return MOM_STORE_ERROR;
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

    mom_store_bind_key(s, group, producer, sequence);
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

/* The row, then its key (the row's rowid). A key that may exist already
 * has its row deleted first: the key is replaced, the row would stay. */
static int
mom_store_results_insert(mom_store_t *st, uint32_t group, uint64_t producer,
                         uint64_t sequence, unsigned status, const void *body,
                         size_t len, bool fresh)
{
    sqlite3_stmt *s;

    if (!fresh) {
        s = st->stmt[S_DEDUP_UNPUT];
        mom_store_bind_key(s, group, producer, sequence);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    s = st->stmt[S_DEDUP_PUT];
    mom_store_bind_key(s, group, producer, sequence);
    sqlite3_bind_int(s, 4, (int)status);
    sqlite3_bind_blob(s, 5, len ? body : "", (int)len, SQLITE_STATIC);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    s = st->stmt[S_DEDUP_PUT_KEY];
    mom_store_bind_key(s, group, producer, sequence);
    sqlite3_bind_int64(s, 4, sqlite3_last_insert_rowid(st->db));
    return mom_store_exec_stmt(st, s);
}

int
mom_store_dedup_put(mom_store_t *st, uint32_t group, uint64_t producer,
                    uint64_t sequence, unsigned status, const void *body,
                    size_t len)
{
    mom_store_newest_t *n = mom_store_newest_find(st, group, producer);
    bool fresh = false, own;
    int rc;

    /* Above the bound of its producer: the key is not stored (the common
     * case: mom_sm_apply looked it up first). */
    if (n != NULL && (sqlite3_int64)sequence > n->newest) {
        fresh = true;
        n->newest = (sqlite3_int64)sequence;
    }
    if (mom_store_results_begin(st, &own) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    rc = mom_store_results_insert(st, group, producer, sequence, status, body,
                                  len, fresh);
    return mom_store_results_end(st, own, rc);
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

/* Deletes a producer's results below a sequence: rows, then keys. */
static int
mom_store_dedup_prune_below(mom_store_t *st, uint32_t group,
                            sqlite3_int64 producer, sqlite3_int64 below)
{
    static const int stmts[] = {S_DEDUP_PRUNE, S_DEDUP_PRUNE_KEYS};
    sqlite3_stmt *s;

    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        s = st->stmt[stmts[i]];
        sqlite3_bind_int64(s, 1, group);
        sqlite3_bind_int64(s, 2, producer);
        sqlite3_bind_int64(s, 3, below);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    return MOM_STORE_OK;
}

/* A producer whose results all go leaves the keys with them: the next
 * pruning does not see it. */
static int
mom_store_dedup_prune_group(mom_store_t *st, uint32_t group, uint64_t window,
                            uint64_t stale)
{
    mom_store_producer_t p;
    sqlite3_int64 newest = INT64_MIN, below;
    int rc;

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
        if (mom_store_dedup_prune_below(st, group, p.producer, below) !=
            MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    return rc == MOM_STORE_ERROR ? rc : MOM_STORE_OK;
}

int
mom_store_dedup_prune(mom_store_t *st, uint32_t group, uint64_t window,
                      uint64_t stale)
{
    bool own;

    if (mom_store_results_begin(st, &own) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return mom_store_results_end(
        st, own, mom_store_dedup_prune_group(st, group, window, stale));
}
