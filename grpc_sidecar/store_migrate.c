/*
 * What the store's open does to the file after creating what is missing
 * (store.c): databases of earlier versions moved to the current shape, one
 * migration each, found by a probe and run once in a transaction of its
 * own; then what is rebuilt at every open: the unique indexes of the
 * collection ids and the idempotency results' keys in memory
 * (temp.applied_keys).
 */
#include <stdio.h>

#include "log.h"
#include "store_int.h"

/*
 * At every open, after the migrations: the results' keys built in memory
 * from the file, and an earlier version's applied_producers dropped. In
 * rowid order with REPLACE: were a key stored twice (no version writes
 * so), the later row wins, as an INSERT OR REPLACE did, and the earlier
 * is deleted (mom_store_keys_check).
 */
static const char mom_store_keys_open[] =
    "BEGIN IMMEDIATE;"
    "DROP TABLE IF EXISTS main.applied_producers;"
    "CREATE TEMP TABLE applied_keys ("
    "  grp INTEGER NOT NULL, producer INTEGER NOT NULL,"
    "  sequence INTEGER NOT NULL, rid INTEGER NOT NULL,"
    "  PRIMARY KEY (grp, producer, sequence)) WITHOUT ROWID;"
    "INSERT OR REPLACE INTO temp.applied_keys(grp, producer, sequence, rid)"
    "  SELECT grp, producer, sequence, rowid FROM main.applied_results"
    "  ORDER BY rowid;"
    "COMMIT;";

static const char mom_store_keys_orphans[] =
    "BEGIN IMMEDIATE;"
    "DELETE FROM main.applied_results"
    "  WHERE rowid NOT IN (SELECT rid FROM temp.applied_keys);"
    "COMMIT;";

static const char mom_store_migrate_results[] =
    "BEGIN IMMEDIATE;"
    "INSERT OR REPLACE INTO applied_results(grp, producer, sequence, status,"
    "  body) SELECT grp, producer, sequence, status, body"
    "  FROM applied_commands;"
    "DROP TABLE applied_commands;"
    "COMMIT;";

static const char mom_store_migrate_key[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE applied_results_by_sequence ("
    "  grp INTEGER NOT NULL,"
    "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
    "  status INTEGER NOT NULL, body BLOB NOT NULL,"
    "  PRIMARY KEY (grp, sequence, producer)) WITHOUT ROWID;"
    "INSERT INTO applied_results_by_sequence(grp, producer, sequence, status,"
    "  body) SELECT grp, producer, sequence, status, body"
    "  FROM applied_results;"
    "DROP TABLE applied_results;"
    "ALTER TABLE applied_results_by_sequence RENAME TO "
    "applied_results;"
    "COMMIT;";

/*
 * Messages keyed by (name, sequence) of earlier versions: each collection
 * gets an id (in name order), its messages move to their positions. Rows
 * of a collection that no longer exists were unreachable and are dropped.
 */
#define MOM_STORE_MIGRATE_POSITIONS(coll, msgs, coll_col, seq_col)             \
    "BEGIN IMMEDIATE;"                                                         \
    "ALTER TABLE " coll " ADD COLUMN id INTEGER NOT NULL DEFAULT 0;"           \
    "UPDATE " coll " SET id = n.r FROM (SELECT name, row_number() OVER"        \
    "  (ORDER BY name) AS r FROM " coll ") AS n WHERE n.name = " coll ".name;" \
    "CREATE TABLE " msgs "_by_pos (pos INTEGER NOT NULL UNIQUE,"               \
    "  sender TEXT NOT NULL, content BLOB NOT NULL, ts_ms INTEGER NOT NULL);"  \
    "INSERT INTO " msgs "_by_pos(pos, sender, content, ts_ms)"                 \
    "  SELECT (c.id << 40) | m." seq_col ", m.sender, m.content, m.ts_ms"      \
    "  FROM " msgs " m JOIN " coll " c ON c.name = m." coll_col                \
    "  ORDER BY 1;"                                                            \
    "DROP TABLE " msgs ";"                                                     \
    "ALTER TABLE " msgs "_by_pos RENAME TO " msgs ";"                          \
    "COMMIT;"

static const char mom_store_migrate_topics[] = MOM_STORE_MIGRATE_POSITIONS(
    "topics", "topic_messages", "topic", "\"offset\"");
static const char mom_store_migrate_queues[] =
    MOM_STORE_MIGRATE_POSITIONS("queues", "queue_messages", "queue", "id");

/* After the migrations: what finds a free collection id. */
static const char mom_store_ids[] =
    "CREATE UNIQUE INDEX IF NOT EXISTS topics_id ON topics(id);"
    "CREATE UNIQUE INDEX IF NOT EXISTS queues_id ON queues(id);";

/* Keyed results rewritten as the rowid table, in key order. */
static const char mom_store_migrate_rowid[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE applied_results_rowid ("
    "  grp INTEGER NOT NULL,"
    "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
    "  status INTEGER NOT NULL, body BLOB NOT NULL);"
    "INSERT INTO applied_results_rowid(grp, producer, sequence, status,"
    "  body) SELECT grp, producer, sequence, status, body"
    "  FROM applied_results ORDER BY grp, sequence, producer;"
    "DROP TABLE applied_results;"
    "ALTER TABLE applied_results_rowid RENAME TO applied_results;"
    "DROP TABLE IF EXISTS main.applied_producers;"
    "COMMIT;";

/* Whether a query returns a row: 1, 0, or -1 on error. */
static int
mom_store_query_any(mom_store_t *st, const char *sql)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        return -1;
    }
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int
mom_store_migrate_run(mom_store_t *st, const char *what, const char *sql,
                      char **msg)
{
    int rc;

    mom_log_info("%s", what);
    rc = sqlite3_exec(st->db, sql, NULL, NULL, msg);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(st->db)) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* The migrations of databases of earlier versions, in order: each runs
 * once, when its probe finds the old shape. */
static const struct {
    const char *probe;
    const char *what;
    const char *sql;
} mom_store_migrations[] = {
    {"SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
     "name = 'applied_commands'",
     "moving idempotency results to applied_results",
     mom_store_migrate_results},
    /* Results keyed by producer first (the second key column). */
    {"SELECT 1 FROM pragma_table_info('applied_results') WHERE "
     "name = 'producer' AND pk = 2",
     "keying idempotency results by sequence before producer",
     mom_store_migrate_key},
    /* Messages keyed by name and sequence (no collection ids). */
    {"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info('topics') "
     "WHERE name = 'id')",
     "keying topic messages by position", mom_store_migrate_topics},
    {"SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info('queues') "
     "WHERE name = 'id')",
     "keying queue messages by position", mom_store_migrate_queues},
    /* Results with a key (WITHOUT ROWID): the key moves to memory. */
    {"SELECT 1 FROM pragma_table_info('applied_results') WHERE pk > 0",
     "rewriting idempotency results as a rowid table", mom_store_migrate_rowid},
};

static int
mom_store_migrate(mom_store_t *st, char **msg)
{
    size_t n = sizeof(mom_store_migrations) / sizeof(mom_store_migrations[0]);
    int old, rc;

    for (size_t i = 0; i < n; i++) {
        old = mom_store_query_any(st, mom_store_migrations[i].probe);
        if (old < 0) {
            return SQLITE_ERROR;
        }
        if (old) {
            rc = mom_store_migrate_run(st, mom_store_migrations[i].what,
                                       mom_store_migrations[i].sql, msg);
            if (rc != SQLITE_OK) {
                return rc;
            }
        }
    }
    return SQLITE_OK;
}

/*
 * After mom_store_keys_open: rows whose key a later row took, if any, are
 * deleted so that every row has its key (the pruning finds rows by key).
 * The rebuild's INSERT read one row per result (its changes); fewer keys
 * mean duplicates.
 */
static int
mom_store_keys_check(mom_store_t *st, char **msg)
{
    char sql[96];
    int orphans;

    snprintf(sql, sizeof(sql),
             "SELECT 1 WHERE (SELECT count(*) FROM temp.applied_keys) < %lld",
             (long long)sqlite3_changes64(st->db));
    orphans = mom_store_query_any(st, sql);
    if (orphans <= 0) {
        return orphans < 0 ? SQLITE_ERROR : SQLITE_OK;
    }
    return mom_store_migrate_run(st,
                                 "deleting idempotency results stored twice",
                                 mom_store_keys_orphans, msg);
}

int
mom_store_upgrade(mom_store_t *st, char **msg)
{
    if (mom_store_migrate(st, msg) != SQLITE_OK ||
        sqlite3_exec(st->db, mom_store_ids, NULL, NULL, msg) != SQLITE_OK ||
        sqlite3_exec(st->db, mom_store_keys_open, NULL, NULL, msg) !=
            SQLITE_OK) {
        return SQLITE_ERROR;
    }
    return mom_store_keys_check(st, msg);
}
