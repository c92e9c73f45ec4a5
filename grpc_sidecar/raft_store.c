/*
 * Raft storage in SQLite (see raft_store.h). Every statement is prepared
 * once; every failure other than a busy database aborts the process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft_store.h"

/* How long a busy database is retried before giving up (50 x 20 ms). */
#define STORE_BUSY_RETRIES 50
#define STORE_BUSY_SLEEP_US 20000

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_STATE_GET,
    ST_STATE_PUT,
    ST_LOG_PUT,
    ST_LOG_TRUNCATE,
    ST_LOG_COMPACT,
    ST_LOG_READ,
    ST_LOG_READ_META,
    ST_LOG_DELETE_ONE,
    ST_LOG_GET,
    ST_LOG_GET_META,
    ST_LOG_KEYS,
    ST_SNAP_PUT,
    ST_COUNT
};

static const char *const store_sql[ST_COUNT] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "SELECT term, vote, snap_idx, snap_term, conf_idx, conf FROM raft_state"
    " WHERE grp = ?1",
    "INSERT INTO raft_state(grp, term, vote) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (grp) DO UPDATE SET term = ?2, vote = ?3",
    /* Keys and bounds come from log_key(). A range of keys holds every
     * group's entries of those indexes: grp (?1) picks the group's, after
     * visiting them all. These range statements are the fallbacks of
     * mom_raft_store_truncate/compact/read, which walk a group's own keys
     * one index at a time. */
    "INSERT OR REPLACE INTO raft_log(key, term, type, data)"
    " VALUES (?1, ?2, ?3, ?4)",
    "DELETE FROM raft_log WHERE key >= ?2 AND grp = ?1",
    "DELETE FROM raft_log WHERE key <= ?2 AND grp = ?1",
    "SELECT idx, term, type, data FROM raft_log"
    " WHERE key BETWEEN ?2 AND ?3 AND grp = ?1 ORDER BY key",
    /* Only configuration entries need their data at start. */
    "SELECT idx, term, type, CASE WHEN type = 3 THEN data END FROM raft_log"
    " WHERE key BETWEEN ?2 AND ?3 AND grp = ?1 ORDER BY key",
    "DELETE FROM raft_log WHERE key = ?1",
    "SELECT term, type, data FROM raft_log WHERE key = ?1",
    "SELECT term, type, CASE WHEN type = 3 THEN data END FROM raft_log"
    " WHERE key = ?1",
    "SELECT key, term, type, CASE WHEN type = 3 THEN data END"
    " FROM raft_log",
    "INSERT INTO raft_state(grp, term, vote, snap_idx, snap_term, conf_idx,"
    " conf) VALUES (?1, 0, 0, ?2, ?3, ?4, ?5) ON CONFLICT (grp) DO UPDATE"
    " SET snap_idx = ?2, snap_term = ?3, conf_idx = ?4, conf = ?5",
};

/*
 * The log is a rowid table keyed by index, then group: key = idx << 16 |
 * grp. A group's appends then go to the end of the table (its index is the
 * largest there, or close to it when several groups are busy), where SQLite
 * splits a full leaf by starting a new one; under a (grp, idx) key every
 * group but the last appended inside the b-tree, and each split rebalanced
 * three pages, which the next rounds wrote again. grp and idx are virtual
 * columns: nothing stored, there for the reader.
 */
#define MOM_RAFT_LOG_COLUMNS                                                   \
    " key INTEGER PRIMARY KEY, term INTEGER NOT NULL,"                         \
    " type INTEGER NOT NULL, data BLOB NOT NULL,"                              \
    " grp INTEGER AS (key & 65535), idx INTEGER AS (key >> 16)"

/* Indexes from 2^47 on have no key (a group appending a million entries a
 * second reaches it after four years). */
#define MOM_RAFT_LOG_INDEX_MAX ((UINT64_C(1) << 47) - 1)
#define MOM_RAFT_LOG_GROUP_BITS 16

static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS raft_state("
    " grp INTEGER PRIMARY KEY, term INTEGER NOT NULL, vote INTEGER NOT NULL,"
    " snap_idx INTEGER NOT NULL DEFAULT 0,"
    " snap_term INTEGER NOT NULL DEFAULT 0,"
    " conf_idx INTEGER NOT NULL DEFAULT 0, conf BLOB);"
    "CREATE TABLE IF NOT EXISTS raft_log(" MOM_RAFT_LOG_COLUMNS ");";

/* A database of earlier versions keeps its log under a (grp, idx) key:
 * rewritten once, in one transaction. */
static const char store_log_upgrade[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE raft_log_keyed(" MOM_RAFT_LOG_COLUMNS ");"
    "INSERT INTO raft_log_keyed(key, term, type, data)"
    " SELECT idx << 16 | grp, term, type, data FROM raft_log ORDER BY idx, grp;"
    "DROP TABLE raft_log;"
    "ALTER TABLE raft_log_keyed RENAME TO raft_log;"
    "COMMIT;";

/* An entry as read at start, without its data (but a configuration's). */
typedef struct {
    uint64_t index, term;
    int type;
    uint8_t *conf;
    size_t conf_len;
} log_meta_t;

/* What the store keeps in memory of a group's log. */
typedef struct {
    /* Its entries as the one scan of the whole table at start found them
     * (see log_spans), until its first write or its first whole read. */
    log_meta_t *entries;
    size_t n, cap;
    int stale;
    /* The log holds no entry up to this index (compacted; 0: not known).
     * Raft storage transactions are never rolled back (a failure aborts),
     * so it cannot run ahead of the database. */
    uint64_t compacted;
} log_group_t;

static void span_free(log_group_t *g);

struct mom_raft_store_s {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int sync_wal; /* FULL configured: durable commits fdatasync the WAL */
    int durable;  /* the current transaction is durable */
    log_group_t *groups; /* by group id; grown as groups are met */
    uint32_t n_groups;
    int spans_read; /* the scan at the first whole read of a log is done */
};

/* SQLite's PRAGMA synchronous value of NORMAL. */
#define STORE_SYNC_NORMAL 1

static void
store_fail(mom_raft_store_t *s, const char *what, int rc)
{
    fprintf(stderr, "momd: raft storage: %s: %s (%d): aborting\n", what,
            sqlite3_errmsg(s->db), rc);
    abort();
}

/* Runs a statement to completion (or to its next row), retrying busy. */
static int
store_step(mom_raft_store_t *s, sqlite3_stmt *st)
{
    int rc, tries = 0;

    for (;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            return rc;
        }
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) &&
            ++tries < STORE_BUSY_RETRIES) {
            sqlite3_reset(st);
            usleep(STORE_BUSY_SLEEP_US);
            continue;
        }
        store_fail(s, sqlite3_sql(st), rc);
    }
}

static void
store_exec(mom_raft_store_t *s, int which)
{
    sqlite3_stmt *st = s->st[which];

    store_step(s, st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void
bind_blob(mom_raft_store_t *s, sqlite3_stmt *st, int i, const void *p, size_t n)
{
    /* A NULL pointer would bind SQL NULL; columns are NOT NULL blobs. */
    if (sqlite3_bind_blob64(st, i, n > 0 ? p : "", n, SQLITE_STATIC) !=
        SQLITE_OK) {
        store_fail(s, "bind blob", sqlite3_errcode(s->db));
    }
}

static void
abort_oom(void)
{
    fprintf(stderr, "momd: raft storage: out of memory\n");
    abort();
}

static uint8_t *
column_dup(sqlite3_stmt *st, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    uint8_t *copy = malloc(n > 0 ? n : 1);

    if (copy == NULL) {
        abort_oom();
    }
    if (n > 0) {
        memcpy(copy, p, n);
    }
    *len = n;
    return copy;
}

/* The key of a group's entry, or a bound of a key range (low: the range's
 * first key at `index`, else its last). */
static sqlite3_int64
log_key(uint32_t grp, uint64_t index, int low)
{
    if (index > MOM_RAFT_LOG_INDEX_MAX) {
        index = MOM_RAFT_LOG_INDEX_MAX;
    }
    return (sqlite3_int64)(index << MOM_RAFT_LOG_GROUP_BITS |
                           (low ? grp : (1u << MOM_RAFT_LOG_GROUP_BITS) - 1));
}

/* Rewrites a log kept under the (grp, idx) key of earlier versions. */
static int
store_upgrade_log(sqlite3 *db, char **err)
{
    sqlite3_stmt *q = NULL;
    int keyed, rc;

    rc = sqlite3_prepare_v2(db,
                            "SELECT count(*) FROM pragma_table_info('raft_log')"
                            " WHERE name = 'key'",
                            -1, &q, NULL);
    if (rc != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
        sqlite3_finalize(q);
        *err = sqlite3_mprintf("%s", sqlite3_errmsg(db));
        return SQLITE_ERROR;
    }
    keyed = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (keyed) {
        return SQLITE_OK;
    }
    rc = sqlite3_exec(db, store_log_upgrade, NULL, NULL, err);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

mom_raft_store_t *
mom_raft_store_open(sqlite3 *db)
{
    mom_raft_store_t *s = calloc(1, sizeof *s);
    char *err = NULL;
    sqlite3_stmt *q = NULL;
    int i;

    if (s == NULL) {
        return NULL;
    }
    s->db = db;
    if (sqlite3_exec(db, store_schema, NULL, NULL, &err) != SQLITE_OK ||
        store_upgrade_log(db, &err) != SQLITE_OK) {
        fprintf(stderr, "momd: raft storage: schema: %s\n", err);
        sqlite3_free(err);
        free(s);
        return NULL;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
        s->sync_wal = sqlite3_column_int(q, 0) > STORE_SYNC_NORMAL;
    }
    sqlite3_finalize(q);
    q = NULL;
    if (s->sync_wal && (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q,
                                           NULL) != SQLITE_OK ||
                        sqlite3_step(q) != SQLITE_ROW ||
                        sqlite3_stricmp((const char *)sqlite3_column_text(q, 0),
                                        "wal") != 0)) {
        s->sync_wal = 0; /* a rollback journal: SQLite syncs as configured */
    }
    sqlite3_finalize(q);
    /* FULL is kept by syncing the WAL after durable commits ourselves (see
     * mom_raft_store_commit): the connection itself runs NORMAL. */
    if (s->sync_wal && sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL,
                                    NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "momd: raft storage: synchronous: %s\n", err);
        sqlite3_free(err);
        free(s);
        return NULL;
    }
    for (i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) != SQLITE_OK) {
            fprintf(stderr, "momd: raft storage: prepare %s: %s\n",
                    store_sql[i], sqlite3_errmsg(db));
            mom_raft_store_close(s);
            return NULL;
        }
    }
    return s;
}

void
mom_raft_store_close(mom_raft_store_t *s)
{
    int i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    for (uint32_t g = 0; g < s->n_groups; g++) {
        span_free(&s->groups[g]);
    }
    free(s->groups);
    free(s);
}

void
mom_raft_store_begin(mom_raft_store_t *s)
{
    mom_raft_store_begin_as(s, 1);
}

void
mom_raft_store_begin_as(mom_raft_store_t *s, int durable)
{
    s->durable = durable;
    store_exec(s, ST_BEGIN);
}

/*
 * What SQLite's synchronous = FULL does at a WAL commit: an fdatasync of
 * the WAL after the commit frame (NORMAL leaves it for the checkpoint,
 * which syncs the WAL before copying it, and SQLite syncs the WAL's header
 * when it restarts the WAL in either mode).
 */
static void
store_sync_wal(mom_raft_store_t *s)
{
    sqlite3_file *wal = NULL;
    int rc;

    rc =
        sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
    if (rc != SQLITE_OK || wal == NULL || wal->pMethods == NULL) {
        store_fail(s, "no WAL file to sync", rc);
    }
    rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) {
        store_fail(s, "WAL fdatasync", rc);
    }
}

void
mom_raft_store_commit(mom_raft_store_t *s)
{
    store_exec(s, ST_COMMIT);
    if (s->durable && s->sync_wal) {
        store_sync_wal(s);
    }
}

void
mom_raft_store_sync(mom_raft_store_t *s)
{
    if (s->sync_wal) {
        store_sync_wal(s);
    }
}

int
mom_raft_store_syncs(const mom_raft_store_t *s)
{
    return s->sync_wal;
}

int
mom_raft_store_load_state(mom_raft_store_t *s, uint32_t grp, uint64_t *term,
                          uint64_t *vote, mom_raft_snapshot_row_t *snapshot)
{
    sqlite3_stmt *st = s->st[ST_STATE_GET];
    int found = 0;

    memset(snapshot, 0, sizeof *snapshot);
    sqlite3_bind_int64(st, 1, grp);
    if (store_step(s, st) == SQLITE_ROW) {
        *term = (uint64_t)sqlite3_column_int64(st, 0);
        *vote = (uint64_t)sqlite3_column_int64(st, 1);
        snapshot->index = (uint64_t)sqlite3_column_int64(st, 2);
        snapshot->term = (uint64_t)sqlite3_column_int64(st, 3);
        snapshot->conf_index = (uint64_t)sqlite3_column_int64(st, 4);
        if (snapshot->index > 0) {
            snapshot->conf = column_dup(st, 5, &snapshot->conf_len);
        }
        found = 1;
    }
    sqlite3_reset(st);
    return found;
}

void
mom_raft_store_save_state(mom_raft_store_t *s, uint32_t grp, uint64_t term,
                          uint64_t vote)
{
    sqlite3_stmt *st = s->st[ST_STATE_PUT];

    sqlite3_bind_int64(st, 1, grp);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)term);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)vote);
    store_exec(s, ST_STATE_PUT);
}

static void
span_free(log_group_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->entries[i].conf);
    }
    free(g->entries);
    g->entries = NULL;
    g->n = g->cap = 0;
}

/* The group's memory (new groups: nothing scanned, nothing compacted). */
static log_group_t *
group_of(mom_raft_store_t *s, uint32_t grp)
{
    log_group_t *g;

    if (grp >= s->n_groups) {
        g = realloc(s->groups, ((size_t)grp + 1) * sizeof *g);
        if (g == NULL) {
            abort_oom();
        }
        memset(g + s->n_groups, 0, ((size_t)grp + 1 - s->n_groups) * sizeof *g);
        s->groups = g;
        s->n_groups = grp + 1;
    }
    return &s->groups[grp];
}

/* A write to the group's log, or its read: its scanned entries are of no
 * more use. */
static void
span_stale(mom_raft_store_t *s, uint32_t grp)
{
    log_group_t *g;

    if (!s->spans_read) {
        return;
    }
    g = group_of(s, grp);
    if (!g->stale) {
        span_free(g);
        g->stale = 1;
    }
}

void
mom_raft_store_append(mom_raft_store_t *s, uint32_t grp, uint64_t index,
                      uint64_t term, int type, const void *data, size_t len)
{
    sqlite3_stmt *st = s->st[ST_LOG_PUT];

    span_stale(s, grp);

    if (index > MOM_RAFT_LOG_INDEX_MAX) {
        store_fail(s, "raft index past 2^47", SQLITE_FULL);
    }
    sqlite3_bind_int64(st, 1, log_key(grp, index, 1));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)term);
    sqlite3_bind_int(st, 3, type);
    bind_blob(s, st, 4, data, len);
    store_exec(s, ST_LOG_PUT);
}

/* Deletes the entry of `key`; whether there was one. */
static int
log_delete_one(mom_raft_store_t *s, sqlite3_int64 key)
{
    sqlite3_bind_int64(s->st[ST_LOG_DELETE_ONE], 1, key);
    store_exec(s, ST_LOG_DELETE_ONE);
    return sqlite3_changes(s->db) > 0;
}

/*
 * A group's log is contiguous, so truncating, compacting and reading walk
 * its keys one index at a time (a rowid lookup each: the cost of the
 * group's own entries) and stop at the first index without an entry. A
 * range statement instead visits every group's entries of the range's
 * indexes: a busy group's compaction would visit every other group's
 * trailing entries, an idle group's truncation every busier group's log.
 * The range statements remain for an index the walk cannot start from.
 */
void
mom_raft_store_truncate(mom_raft_store_t *s, uint32_t grp, uint64_t index)
{
    sqlite3_stmt *st = s->st[ST_LOG_TRUNCATE];
    log_group_t *g = group_of(s, grp);

    span_stale(s, grp);
    if (index == 0 || index <= g->compacted) {
        g->compacted = 0; /* the whole log goes: compacted no more */
    }
    if (index > 0 && index <= MOM_RAFT_LOG_INDEX_MAX &&
        log_delete_one(s, log_key(grp, index, 1))) {
        while (++index <= MOM_RAFT_LOG_INDEX_MAX &&
               log_delete_one(s, log_key(grp, index, 1))) {
        }
        return;
    }
    /* No entry at `index`: the log starts after it (or it is 0) */
    sqlite3_bind_int64(st, 1, grp);
    sqlite3_bind_int64(st, 2, log_key(grp, index, 1));
    store_exec(s, ST_LOG_TRUNCATE);
}

void
mom_raft_store_compact(mom_raft_store_t *s, uint32_t grp, uint64_t index)
{
    sqlite3_stmt *st = s->st[ST_LOG_COMPACT];
    log_group_t *g = group_of(s, grp);
    uint64_t i = index;

    span_stale(s, grp);
    if (index == 0 || index <= g->compacted) {
        return; /* compacted already (a longer trailing log, say) */
    }
    if (index <= MOM_RAFT_LOG_INDEX_MAX &&
        log_delete_one(s, log_key(grp, i, 1))) {
        while (--i > 0 && log_delete_one(s, log_key(grp, i, 1))) {
        }
    } else {
        /* No entry at `index`: the log ends before it */
        sqlite3_bind_int64(st, 1, grp);
        sqlite3_bind_int64(st, 2, log_key(grp, index, 0));
        store_exec(s, ST_LOG_COMPACT);
    }
    g->compacted = index;
}

/* Reads with the range statement: from an index without an entry. */
static int
log_read_range(mom_raft_store_t *s, uint32_t grp, uint64_t first, uint64_t last,
               int with_data, mom_raft_store_entry_fn fn, void *arg)
{
    sqlite3_stmt *st = s->st[with_data ? ST_LOG_READ : ST_LOG_READ_META];
    int rv = 0;

    sqlite3_bind_int64(st, 1, grp);
    sqlite3_bind_int64(st, 2, log_key(grp, first, 1));
    sqlite3_bind_int64(st, 3, log_key(grp, last, 0));
    while (rv == 0 && store_step(s, st) == SQLITE_ROW) {
        rv =
            fn(arg, (uint64_t)sqlite3_column_int64(st, 0),
               (uint64_t)sqlite3_column_int64(st, 1), sqlite3_column_int(st, 2),
               sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3));
    }
    sqlite3_reset(st);
    return rv;
}

/* Reads every group's log without its data (but configurations'): one
 * scan of the table, in key order (by index, then group). */
static void
log_spans(mom_raft_store_t *s)
{
    sqlite3_stmt *st = s->st[ST_LOG_KEYS];
    log_group_t *sp;
    log_meta_t *e;
    uint64_t key;
    uint32_t grp;

    s->spans_read = 1;
    while (store_step(s, st) == SQLITE_ROW) {
        key = (uint64_t)sqlite3_column_int64(st, 0);
        grp = (uint32_t)(key & ((1u << MOM_RAFT_LOG_GROUP_BITS) - 1));
        sp = group_of(s, grp);
        if (sp->n == sp->cap) {
            sp->cap = sp->cap ? sp->cap * 2 : 64;
            sp->entries = realloc(sp->entries, sp->cap * sizeof *sp->entries);
            if (sp->entries == NULL) {
                abort_oom();
            }
        }
        e = &sp->entries[sp->n++];
        e->index = key >> MOM_RAFT_LOG_GROUP_BITS;
        e->term = (uint64_t)sqlite3_column_int64(st, 1);
        e->type = sqlite3_column_int(st, 2);
        e->conf = NULL;
        e->conf_len = 0;
        if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
            e->conf = column_dup(st, 3, &e->conf_len);
        }
    }
    sqlite3_reset(st);
}

/* Reads [first, last] walking from `first` up to the first index without
 * an entry (the log's end); the range statement when `first` has none. */
static int
log_walk(mom_raft_store_t *s, uint32_t grp, uint64_t first, uint64_t last,
         int with_data, mom_raft_store_entry_fn fn, void *arg)
{
    sqlite3_stmt *st = s->st[with_data ? ST_LOG_GET : ST_LOG_GET_META];
    uint64_t i;
    int rv = 0;

    for (i = first; rv == 0 && i <= last && i <= MOM_RAFT_LOG_INDEX_MAX; i++) {
        sqlite3_bind_int64(st, 1, log_key(grp, i, 1));
        if (store_step(s, st) != SQLITE_ROW) {
            sqlite3_reset(st);
            if (i == first) {
                return log_read_range(s, grp, i, last, with_data, fn, arg);
            }
            break; /* the end of the log */
        }
        rv = fn(arg, i, (uint64_t)sqlite3_column_int64(st, 0),
                sqlite3_column_int(st, 1), sqlite3_column_blob(st, 2),
                (size_t)sqlite3_column_bytes(st, 2));
        sqlite3_reset(st);
    }
    return rv;
}

int
mom_raft_store_read(mom_raft_store_t *s, uint32_t grp, uint64_t first,
                    uint64_t last, int with_data, mom_raft_store_entry_fn fn,
                    void *arg)
{
    const log_group_t *sp;
    int rv = 0;

    if (first > last || first > MOM_RAFT_LOG_INDEX_MAX) {
        return 0;
    }
    /*
     * The whole log of a group, without data, is read at its start: one
     * scan reads every group's at the first such read (a scan per group
     * would visit every group's entries each time), and each group's
     * read takes its share.
     */
    if (first == 0 && !with_data) {
        if (!s->spans_read) {
            log_spans(s);
        }
        sp = group_of(s, grp);
        if (!sp->stale) {
            /* in index order: the scan read the table in key order */
            for (size_t i = 0;
                 rv == 0 && i < sp->n && sp->entries[i].index <= last; i++) {
                const log_meta_t *e = &sp->entries[i];

                rv = fn(arg, e->index, e->term, e->type, e->conf, e->conf_len);
            }
            span_stale(s, grp);
            return rv;
        }
    }
    return log_walk(s, grp, first, last, with_data, fn, arg);
}

void
mom_raft_store_save_snapshot(mom_raft_store_t *s, uint32_t grp,
                             const mom_raft_snapshot_row_t *row)
{
    sqlite3_stmt *st = s->st[ST_SNAP_PUT];

    sqlite3_bind_int64(st, 1, grp);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)row->index);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)row->term);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)row->conf_index);
    bind_blob(s, st, 5, row->conf, row->conf_len);
    store_exec(s, ST_SNAP_PUT);
}

void
mom_raft_snapshot_row_free(mom_raft_snapshot_row_t *row)
{
    free(row->conf);
    row->conf = NULL;
}
