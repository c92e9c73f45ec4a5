/*
 * SQLite store of momd. WAL journal (written through the VFS of wal_vfs.c),
 * PRAGMA synchronous from momd.conf, a busy timeout, and every statement
 * prepared once at open. Statements are reset right after use so that no
 * read transaction stays open.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "ring.h"
#include "store_int.h"
#include "wal_vfs.h"

#define MOM_STORE_BUSY_MS 5000

/*
 * A message's position, its key (a unique index): its collection's id
 * above its sequence number (40 bits: a trillion messages per collection,
 * 8 million collection ids; (id + 1) << 40 still fits a signed 64-bit
 * integer).
 */
#define MOM_STORE_SEQ_BITS 40
#define MOM_STORE_SEQ_LIMIT ((sqlite3_int64)1 << MOM_STORE_SEQ_BITS)
#define MOM_STORE_ID_MAX ((INT64_MAX >> MOM_STORE_SEQ_BITS) - 1)

/*
 * A topic's next offset: past its last message, or the row's next_offset
 * when that is larger (a topic without messages, or restored from a
 * snapshot). Topics lose messages only with the topic, so the counter row
 * is written when a topic is created or restored, not by every transaction
 * that appends (store_deferred.c): a page less per round and per topic.
 */
#define MOM_STORE_TOPIC_NEXT                                                   \
    "max(t.next_offset, coalesce((SELECT m.pos FROM topic_messages m "         \
    "WHERE m.pos >= t.id << 40 AND m.pos < (t.id + 1) << 40 "                  \
    "ORDER BY m.pos DESC LIMIT 1) & 1099511627775, 0) + 1)"

static const char *const mom_store_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_USER_INSERT] = "INSERT OR IGNORE INTO users(name, hash) VALUES (?1, ?2)",
    [S_USER_HASH] = "SELECT hash FROM users WHERE name = ?1",
    [S_LIST_USERS] = "SELECT name FROM users ORDER BY name",
    /* Idempotency results: the key in memory (temp.applied_keys), the row
     * in the file by its rowid (mom_store_schema). */
    [S_DEDUP_GET] = "SELECT r.status, r.body FROM temp.applied_keys k "
                    "JOIN main.applied_results r ON r.rowid = k.rid "
                    "WHERE k.grp = ?1 AND k.producer = ?2 AND k.sequence = ?3",
    [S_DEDUP_UNPUT] = "DELETE FROM main.applied_results WHERE rowid = "
                      "(SELECT rid FROM temp.applied_keys WHERE grp = ?1 "
                      "AND producer = ?2 AND sequence = ?3)",
    [S_DEDUP_PUT] = "INSERT INTO main.applied_results(grp, producer, "
                    "sequence, status, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_DEDUP_PUT_KEY] = "INSERT OR REPLACE INTO temp.applied_keys(grp, "
                        "producer, sequence, rid) VALUES (?1, ?2, ?3, ?4)",
    [S_DEDUP_NEXT_PRODUCER] =
        "SELECT producer, sequence FROM temp.applied_keys "
        "WHERE grp = ?1 AND producer = (SELECT producer "
        "FROM temp.applied_keys WHERE grp = ?1 AND producer >= ?2 "
        "ORDER BY producer LIMIT 1) ORDER BY sequence DESC LIMIT 1",
    [S_DEDUP_NEWEST] = "SELECT sequence FROM temp.applied_keys "
                       "WHERE grp = ?1 AND producer = ?2 "
                       "ORDER BY sequence DESC LIMIT 1",
    [S_DEDUP_PRUNE] = "DELETE FROM main.applied_results WHERE rowid IN "
                      "(SELECT rid FROM temp.applied_keys WHERE grp = ?1 "
                      "AND producer = ?2 AND sequence < ?3)",
    [S_DEDUP_PRUNE_KEYS] = "DELETE FROM temp.applied_keys "
                           "WHERE grp = ?1 AND producer = ?2 AND sequence < ?3",
    [S_PART_USERS] = "SELECT name, hash FROM users "
                     "WHERE mom_partition(name, ?1) = ?2 ORDER BY name",
    [S_PART_DEL_USERS] = "DELETE FROM users WHERE mom_partition(name, ?1) = ?2",
    [S_PART_RESULTS] = "SELECT k.producer, k.sequence, r.status, r.body "
                       "FROM temp.applied_keys k JOIN main.applied_results r "
                       "ON r.rowid = k.rid WHERE k.grp = ?1 "
                       "ORDER BY k.sequence, k.producer",
    [S_PART_DEL_RESULTS] = "DELETE FROM main.applied_results WHERE rowid IN "
                           "(SELECT rid FROM temp.applied_keys WHERE grp = ?1)",
    [S_PART_DEL_KEYS] = "DELETE FROM temp.applied_keys WHERE grp = ?1",

    [S_COLL_CREATE + MOM_TOPIC] = "INSERT OR IGNORE INTO topics(name, owner, "
                                  "next_offset, id) VALUES (?1, ?2, 1, ?3)",
    [S_COLL_CREATE + MOM_QUEUE] = "INSERT OR IGNORE INTO queues(name, owner, "
                                  "next_id, id) VALUES (?1, ?2, 1, ?3)",
    [S_COLL_GET + MOM_TOPIC] =
        "SELECT owner, " MOM_STORE_TOPIC_NEXT ", id FROM topics t "
        "WHERE name = ?1",
    [S_COLL_GET + MOM_QUEUE] =
        "SELECT owner, next_id, id FROM queues WHERE name = ?1",
    [S_COLL_ID + MOM_TOPIC] = "SELECT id FROM topics WHERE name = ?1",
    [S_COLL_ID + MOM_QUEUE] = "SELECT id FROM queues WHERE name = ?1",
    [S_COLL_NEXT_ID + MOM_TOPIC] =
        "SELECT coalesce(max(id), 0) + 1 FROM topics",
    [S_COLL_NEXT_ID + MOM_QUEUE] =
        "SELECT coalesce(max(id), 0) + 1 FROM queues",
    [S_COLL_FREE_ID + MOM_TOPIC] =
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM topics WHERE id = 1) "
        "THEN 1 ELSE (SELECT min(t.id) + 1 FROM topics t WHERE NOT EXISTS "
        "(SELECT 1 FROM topics u WHERE u.id = t.id + 1)) END",
    [S_COLL_FREE_ID + MOM_QUEUE] =
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM queues WHERE id = 1) "
        "THEN 1 ELSE (SELECT min(t.id) + 1 FROM queues t WHERE NOT EXISTS "
        "(SELECT 1 FROM queues u WHERE u.id = t.id + 1)) END",
    [S_COLL_DELETE + MOM_TOPIC] = "DELETE FROM topics WHERE name = ?1",
    [S_COLL_DELETE + MOM_QUEUE] = "DELETE FROM queues WHERE name = ?1",
    [S_COLL_DELETE_MSGS + MOM_TOPIC] =
        "DELETE FROM topic_messages WHERE pos >= ?1 AND pos < ?2",
    [S_COLL_DELETE_MSGS + MOM_QUEUE] =
        "DELETE FROM queue_messages WHERE pos >= ?1 AND pos < ?2",
    [S_COLL_INSERT_MSG + MOM_TOPIC] =
        "INSERT INTO topic_messages(pos, sender, content, ts_ms) "
        "VALUES (?1, ?2, ?3, ?4)",
    [S_COLL_INSERT_MSG + MOM_QUEUE] =
        "INSERT INTO queue_messages(pos, sender, content, ts_ms) "
        "VALUES (?1, ?2, ?3, ?4)",
    [S_COLL_SCAN + MOM_TOPIC] =
        "SELECT pos, sender, content, ts_ms FROM topic_messages "
        "WHERE pos > ?1 AND pos < ?2 ORDER BY pos LIMIT ?3",
    [S_COLL_SCAN + MOM_QUEUE] =
        "SELECT pos, sender, content, ts_ms FROM queue_messages "
        "WHERE pos > ?1 AND pos < ?2 ORDER BY pos LIMIT ?3",
    [S_COLL_REMOVE_MSG + MOM_TOPIC] =
        "DELETE FROM topic_messages WHERE pos = ?1",
    [S_COLL_REMOVE_MSG + MOM_QUEUE] =
        "DELETE FROM queue_messages WHERE pos = ?1",
    [S_COLL_LIST + MOM_TOPIC] = "SELECT name FROM topics ORDER BY name",
    [S_COLL_LIST + MOM_QUEUE] = "SELECT name FROM queues ORDER BY name",
    [S_COLL_RESTORE + MOM_TOPIC] = "INSERT INTO topics(name, owner, "
                                   "next_offset, id) VALUES (?1, ?2, ?3, ?4)",
    [S_COLL_RESTORE + MOM_QUEUE] = "INSERT INTO queues(name, owner, "
                                   "next_id, id) VALUES (?1, ?2, ?3, ?4)",
    [S_COLL_SET_NEXT + MOM_TOPIC] =
        "UPDATE topics SET next_offset = ?2 WHERE name = ?1",
    [S_COLL_SET_NEXT + MOM_QUEUE] =
        "UPDATE queues SET next_id = ?2 WHERE name = ?1",
    [S_PART_COLLS + MOM_TOPIC] =
        "SELECT name, owner, " MOM_STORE_TOPIC_NEXT " FROM topics t "
        "WHERE mom_partition(name, ?1) = ?2 ORDER BY name",
    [S_PART_COLLS + MOM_QUEUE] = "SELECT name, owner, next_id FROM queues "
                                 "WHERE mom_partition(name, ?1) = ?2 "
                                 "ORDER BY name",
    [S_PART_MSGS + MOM_TOPIC] =
        "SELECT t.name, m.pos, m.sender, m.content, m.ts_ms "
        "FROM topics t JOIN topic_messages m ON m.pos >= t.id << 40 "
        "AND m.pos < (t.id + 1) << 40 WHERE mom_partition(t.name, ?1) = ?2 "
        "ORDER BY t.name, m.pos",
    [S_PART_MSGS + MOM_QUEUE] =
        "SELECT q.name, m.pos, m.sender, m.content, m.ts_ms "
        "FROM queues q JOIN queue_messages m ON m.pos >= q.id << 40 "
        "AND m.pos < (q.id + 1) << 40 WHERE mom_partition(q.name, ?1) = ?2 "
        "ORDER BY q.name, m.pos",
    [S_PART_DEL_COLLS + MOM_TOPIC] =
        "DELETE FROM topics WHERE mom_partition(name, ?1) = ?2",
    [S_PART_DEL_COLLS + MOM_QUEUE] =
        "DELETE FROM queues WHERE mom_partition(name, ?1) = ?2",
    [S_PART_DEL_MSGS + MOM_TOPIC] =
        "DELETE FROM topic_messages WHERE pos IN (SELECT m.pos FROM topics t "
        "JOIN topic_messages m ON m.pos >= t.id << 40 "
        "AND m.pos < (t.id + 1) << 40 WHERE mom_partition(t.name, ?1) = ?2)",
    [S_PART_DEL_MSGS + MOM_QUEUE] =
        "DELETE FROM queue_messages WHERE pos IN (SELECT m.pos FROM queues q "
        "JOIN queue_messages m ON m.pos >= q.id << 40 "
        "AND m.pos < (q.id + 1) << 40 WHERE mom_partition(q.name, ?1) = ?2)",
};

/*
 * Idempotency results are a rowid table (below): one b-tree per insert.
 * The applied_commands of earlier versions (keyed by producer, plus an
 * index by group) is moved into applied_results once at open.
 *
 * applied_results has no key: a rowid table, each result appended at its
 * end (the rowid grows), so a round's results fill one leaf. SQLite splits
 * a full rightmost leaf cheaply (balance_quick: one new page) only in rowid
 * tables; an append to an index b-tree (the WITHOUT ROWID table keyed
 * (grp, sequence, producer) of earlier versions) rebalances three siblings
 * (balance_nonroot) and rewrote 3-4 of its leaves in almost every
 * transaction: ~3.3-3.8 of a round's ~16.5 WAL pages (3-node publish).
 * The key lives in the connection's TEMP database, in memory, rebuilt from
 * the file at every open (mom_store_keys_open): temp.applied_keys maps
 * (grp, producer, sequence) to the row's rowid. TEMP tables take part in
 * the same transactions and rollbacks, and what a crash loses of them the
 * next open rebuilds. Each (group, producer)'s newest sequence, what the
 * pruning needs, is a seek in it: the applied_producers of earlier
 * versions (an aggregate of the results, in the file then in TEMP) is
 * gone, and a copy in the file is dropped at open.
 *
 * Databases of earlier versions are migrated once at open, in order:
 * results keyed by producer first are rekeyed (grp, sequence, producer),
 * then any applied_results with a key is rewritten as the rowid table.
 * An earlier momd opening a migrated file finds applied_results without a
 * key (docs/benchmarks.md, "downgrade").
 */
/*
 * Messages are keyed by their position: their collection's id (a local
 * number, never replicated: replicas apply by name) above their sequence
 * number (MOM_STORE_SEQ_BITS), so a collection's messages are one range of
 * one integer index, read and deleted as such. The rows themselves are
 * appended to a rowid table in the order they come, where SQLite only
 * starts a new leaf when the last is full (balance_quick). Appends to an
 * index b-tree redistribute three leaves instead: with the (name,
 * sequence) key of earlier versions (~30-byte entries) that was ~3 WAL
 * pages per transaction of a 3-node publish; with the position alone
 * (~13 bytes) a leaf takes ~300 entries and fills more slowly. Keying the
 * rows themselves by position (no index) saved as much on one topic but
 * cost a single node 10% on 1,000 topics: rows of ~150 bytes inserted in
 * the middle of the table split its leaves five times as often
 * (docs/benchmarks.md, ninth pass). Databases of earlier versions are
 * moved to positions once at open.
 */
static const char mom_store_schema[] =
    "CREATE TABLE IF NOT EXISTS users ("
    "  name TEXT PRIMARY KEY, hash TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS topics ("
    "  name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    "  next_offset INTEGER NOT NULL, id INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS topic_messages ("
    "  pos INTEGER NOT NULL UNIQUE,"
    "  sender TEXT NOT NULL, content BLOB NOT NULL, ts_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS queues ("
    "  name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    "  next_id INTEGER NOT NULL, id INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS queue_messages ("
    "  pos INTEGER NOT NULL UNIQUE,"
    "  sender TEXT NOT NULL, content BLOB NOT NULL, ts_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta ("
    "  key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS applied_results ("
    "  grp INTEGER NOT NULL,"
    "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
    "  status INTEGER NOT NULL, body BLOB NOT NULL);";

int
mom_store_fail(mom_store_t *st, const char *what)
{
    mom_log_error("sqlite: %s: %s", what, sqlite3_errmsg(st->db));
    return MOM_STORE_ERROR;
}

int
mom_store_exec_stmt(mom_store_t *st, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        return mom_store_fail(st, sqlite3_sql(s));
    }
    return MOM_STORE_OK;
}

void
mom_store_finish(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

int
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

/* mom_partition(name, partitions): the partition of a name (ring.c). */
static void
mom_store_partition_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *name = (const char *)sqlite3_value_text(argv[0]);
    int len = sqlite3_value_bytes(argv[0]);
    sqlite3_int64 partitions = sqlite3_value_int64(argv[1]);

    if (name == NULL || partitions <= 0 || partitions > UINT32_MAX) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_int64(
        ctx, mom_partition_of(name, (size_t)len, (uint32_t)partitions));
}

mom_store_t *
mom_store_open(const char *data_dir, mom_sync_t sync, char *err,
               size_t err_size)
{
    mom_store_t *st;
    char path[4096];
    char pragmas[256];
    char *msg = NULL;

    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "mkdir %s: %s", data_dir, strerror(errno));
        return NULL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/mom.db", data_dir) >=
        sizeof(path)) {
        snprintf(err, err_size, "data_dir too long");
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (mom_wal_vfs_register() != SQLITE_OK) {
        snprintf(err, err_size, "cannot register the SQLite VFS %s",
                 MOM_WAL_VFS_NAME);
        goto failed;
    }
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        MOM_WAL_VFS_NAME) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : "cannot open");
        goto failed;
    }
    sqlite3_busy_timeout(st->db, MOM_STORE_BUSY_MS);
    if (sqlite3_create_function(
            st->db, "mom_partition", 2,
            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
            mom_store_partition_fn, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, sqlite3_errmsg(st->db));
        goto failed;
    }
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;"
             "PRAGMA temp_store = MEMORY;",
             sync == MOM_SYNC_FULL ? "FULL" : "NORMAL");
    if (sqlite3_exec(st->db, pragmas, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, mom_store_schema, NULL, NULL, &msg) != SQLITE_OK ||
        mom_store_upgrade(st, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "%s: %s", path, msg ? msg : "error");
        sqlite3_free(msg);
        goto failed;
    }
    mom_store_deferred_init(st);
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, mom_store_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, err_size, "prepare \"%s\": %s", mom_store_sql[i],
                     sqlite3_errmsg(st->db));
            goto failed;
        }
    }
    return st;

failed:
    mom_store_close(st);
    return NULL;
}

void
mom_store_close(mom_store_t *st)
{
    if (st == NULL) {
        return;
    }
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(st->stmt[i]);
    }
    if (st->db != NULL && sqlite3_close(st->db) != SQLITE_OK) {
        mom_log_error("sqlite close: %s", sqlite3_errmsg(st->db));
    }
    mom_store_deferred_free(st);
    mom_store_results_free(st);
    free(st);
}

sqlite3 *
mom_store_db(mom_store_t *st)
{
    return st->db;
}

int
mom_store_begin(mom_store_t *st)
{
    return mom_store_exec_stmt(st, st->stmt[S_BEGIN]);
}

int
mom_store_commit(mom_store_t *st)
{
    if (mom_store_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return mom_store_exec_stmt(st, st->stmt[S_COMMIT]);
}

void
mom_store_rollback(mom_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        mom_store_exec_stmt(st, st->stmt[S_ROLLBACK]);
    }
}

int
mom_store_user_insert(mom_store_t *st, const char *name, const char *hash)
{
    sqlite3_stmt *s = st->stmt[S_USER_INSERT];

    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return sqlite3_changes(st->db) == 0 ? MOM_STORE_EXISTS : MOM_STORE_OK;
}

/* Steps a one-row query and copies its first column into *out. */
static int
mom_store_get_text(mom_store_t *st, sqlite3_stmt *s, char **out)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        if (out != NULL) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            *out = strdup(t ? (const char *)t : "");
            if (*out == NULL) {
                mom_store_finish(s);
                return MOM_STORE_ERROR;
            }
        }
        return MOM_STORE_OK; /* caller reads more columns, then finishes */
    }
    mom_store_finish(s);
    if (rc == SQLITE_DONE) {
        return MOM_STORE_NOT_FOUND;
    }
    return mom_store_fail(st, sqlite3_sql(s));
}

int
mom_store_user_hash(mom_store_t *st, const char *name, char **hash_out)
{
    sqlite3_stmt *s = st->stmt[S_USER_HASH];
    int rc;

    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = mom_store_get_text(st, s, hash_out);
    if (rc == MOM_STORE_OK) {
        mom_store_finish(s);
    }
    return rc;
}

static sqlite3_int64
mom_store_pos(sqlite3_int64 id, uint64_t seq)
{
    return (id << MOM_STORE_SEQ_BITS) | (sqlite3_int64)seq;
}

/* An id for a new collection: past the largest, or a free one once the
 * largest is the last (ids are never renumbered). */
static int
mom_store_coll_new_id(mom_store_t *st, mom_coll_t c, sqlite3_int64 *id)
{
    if (mom_store_get_int(st, st->stmt[S_COLL_NEXT_ID + c], id) !=
        MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    if (*id > MOM_STORE_ID_MAX &&
        mom_store_get_int(st, st->stmt[S_COLL_FREE_ID + c], id) !=
            MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    if (*id > MOM_STORE_ID_MAX) {
        mom_log_error("sqlite: no free collection id");
        return MOM_STORE_ERROR;
    }
    return MOM_STORE_OK;
}

/* The id of an existing collection: what its messages' positions need
 * (S_COLL_GET also derives a topic's next offset). */
static int
mom_store_coll_id(mom_store_t *st, mom_coll_t c, const char *name,
                  sqlite3_int64 *id)
{
    sqlite3_stmt *s = st->stmt[S_COLL_ID + c];

    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    return mom_store_get_int(st, s, id);
}

/* The next sequence number and id of an existing collection. */
static int
mom_store_coll_row(mom_store_t *st, mom_coll_t c, const char *name,
                   uint64_t *next, sqlite3_int64 *id)
{
    sqlite3_stmt *s = st->stmt[S_COLL_GET + c];
    int rc;

    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *next = (uint64_t)sqlite3_column_int64(s, 1);
        *id = sqlite3_column_int64(s, 2);
    }
    mom_store_finish(s);
    if (rc == SQLITE_ROW) {
        return MOM_STORE_OK;
    }
    return rc == SQLITE_DONE ? MOM_STORE_NOT_FOUND
                             : mom_store_fail(st, "collection");
}

int
mom_store_coll_create(mom_store_t *st, mom_coll_t c, const char *name,
                      const char *owner)
{
    sqlite3_stmt *s = st->stmt[S_COLL_CREATE + c];
    sqlite3_int64 id;

    if (mom_store_coll_new_id(st, c, &id) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, id);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return sqlite3_changes(st->db) == 0 ? MOM_STORE_EXISTS : MOM_STORE_OK;
}

int
mom_store_coll_get(mom_store_t *st, mom_coll_t c, const char *name,
                   char **owner_out, uint64_t *next_seq)
{
    sqlite3_stmt *s = st->stmt[S_COLL_GET + c];
    int rc;

    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = mom_store_get_text(st, s, owner_out);
    if (rc == MOM_STORE_OK) {
        if (next_seq != NULL &&
            !mom_store_counter_peek(st, c, name, next_seq)) {
            *next_seq = (uint64_t)sqlite3_column_int64(s, 1);
        }
        mom_store_finish(s);
    }
    return rc;
}

int
mom_store_coll_delete(mom_store_t *st, mom_coll_t c, const char *name)
{
    sqlite3_stmt *s = st->stmt[S_COLL_DELETE_MSGS + c];
    sqlite3_int64 id;
    int rc;

    mom_store_counter_forget(st, c, name);
    rc = mom_store_coll_id(st, c, name, &id);
    if (rc != MOM_STORE_OK) {
        return rc;
    }
    sqlite3_bind_int64(s, 1, mom_store_pos(id, 0));
    sqlite3_bind_int64(s, 2, mom_store_pos(id + 1, 0));
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    s = st->stmt[S_COLL_DELETE + c];
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return sqlite3_changes(st->db) == 0 ? MOM_STORE_NOT_FOUND : MOM_STORE_OK;
}

int
mom_store_coll_append(mom_store_t *st, mom_coll_t c, const char *name,
                      const char *sender, const void *content,
                      size_t content_len, int64_t ts_ms, uint64_t *seq_out)
{
    sqlite3_stmt *s;
    sqlite3_int64 id;
    uint64_t seq;
    int rc;

    if (sqlite3_get_autocommit(st->db)) {
        /* No transaction to count in: read and write the row now. */
        rc = mom_store_coll_row(st, c, name, &seq, &id);
        if (rc == MOM_STORE_OK) {
            s = st->stmt[S_COLL_SET_NEXT + c];
            sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)(seq + 1));
            rc = mom_store_exec_stmt(st, s);
        }
    } else {
        rc = mom_store_counter_take(st, c, name, &seq, &id);
    }
    if (rc != MOM_STORE_OK) {
        return rc;
    }
    if (seq >= (uint64_t)MOM_STORE_SEQ_LIMIT) {
        mom_log_error("sqlite: %s is full", name);
        return MOM_STORE_ERROR;
    }
    s = st->stmt[S_COLL_INSERT_MSG + c];
    sqlite3_bind_int64(s, 1, mom_store_pos(id, seq));
    sqlite3_bind_text(s, 2, sender, -1, SQLITE_STATIC);
    /* A zero-length blob binds as NULL with a NULL pointer: use "". */
    sqlite3_bind_blob(s, 3, content_len ? content : "", (int)content_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, ts_ms);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    *seq_out = seq;
    return MOM_STORE_OK;
}

int
mom_store_coll_scan(mom_store_t *st, mom_coll_t c, const char *name,
                    uint64_t after, uint32_t limit, mom_store_msg_cb cb,
                    void *data)
{
    sqlite3_stmt *s = st->stmt[S_COLL_SCAN + c];
    mom_store_msg_t m;
    sqlite3_int64 id;
    int rc;

    rc = mom_store_coll_id(st, c, name, &id);
    if (rc != MOM_STORE_OK || after >= (uint64_t)MOM_STORE_SEQ_LIMIT) {
        return rc == MOM_STORE_ERROR ? rc : MOM_STORE_OK; /* nothing */
    }
    sqlite3_bind_int64(s, 1, mom_store_pos(id, after));
    sqlite3_bind_int64(s, 2, mom_store_pos(id + 1, 0));
    sqlite3_bind_int64(s, 3, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        m.seq =
            (uint64_t)(sqlite3_column_int64(s, 0) & (MOM_STORE_SEQ_LIMIT - 1));
        m.sender = (const char *)sqlite3_column_text(s, 1);
        m.sender_len = (size_t)sqlite3_column_bytes(s, 1);
        m.content = sqlite3_column_blob(s, 2);
        m.content_len = (size_t)sqlite3_column_bytes(s, 2);
        m.ts_ms = sqlite3_column_int64(s, 3);
        if (m.sender == NULL) {
            m.sender = "";
        }
        if (m.content == NULL) {
            m.content = "";
        }
        if (cb(data, &m) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    mom_store_finish(s);
    return rc == SQLITE_DONE ? MOM_STORE_OK : mom_store_fail(st, "scan");
}

int
mom_store_coll_remove(mom_store_t *st, mom_coll_t c, const char *name,
                      uint64_t seq)
{
    sqlite3_stmt *s = st->stmt[S_COLL_REMOVE_MSG + c];
    sqlite3_int64 id;
    int rc;

    rc = mom_store_coll_id(st, c, name, &id);
    if (rc != MOM_STORE_OK || seq >= (uint64_t)MOM_STORE_SEQ_LIMIT) {
        return rc == MOM_STORE_ERROR ? rc : MOM_STORE_NOT_FOUND;
    }
    sqlite3_bind_int64(s, 1, mom_store_pos(id, seq));
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return sqlite3_changes(st->db) == 0 ? MOM_STORE_NOT_FOUND : MOM_STORE_OK;
}

int
mom_store_list(mom_store_t *st, mom_list_t which, mom_store_name_cb cb,
               void *data)
{
    sqlite3_stmt *s;
    int rc;

    switch (which) {
    case MOM_LIST_USERS:
        s = st->stmt[S_LIST_USERS];
        break;
    case MOM_LIST_TOPICS:
        s = st->stmt[S_COLL_LIST + MOM_TOPIC];
        break;
    default:
        s = st->stmt[S_COLL_LIST + MOM_QUEUE];
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        if (cb(data, name ? name : "", (size_t)sqlite3_column_bytes(s, 0)) !=
            0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    mom_store_finish(s);
    return rc == SQLITE_DONE ? MOM_STORE_OK : mom_store_fail(st, "list");
}

/* --- whole partitions (snapshots) ---------------------------------------- */

static const char *
mom_store_col_text(sqlite3_stmt *s, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(s, col);

    *len = (size_t)sqlite3_column_bytes(s, col);
    return t ? t : "";
}

static const void *
mom_store_col_blob(sqlite3_stmt *s, int col, size_t *len)
{
    const void *b = sqlite3_column_blob(s, col);

    *len = (size_t)sqlite3_column_bytes(s, col);
    return b ? b : "";
}

int
mom_store_part_scan(mom_store_t *st, mom_part_kind_t kind, uint32_t partitions,
                    uint32_t partition, mom_store_row_cb cb, void *data)
{
    static const int which[] = {
        [MOM_PART_USERS] = S_PART_USERS,
        [MOM_PART_TOPICS] = S_PART_COLLS + MOM_TOPIC,
        [MOM_PART_QUEUES] = S_PART_COLLS + MOM_QUEUE,
        [MOM_PART_TOPIC_MESSAGES] = S_PART_MSGS + MOM_TOPIC,
        [MOM_PART_QUEUE_MESSAGES] = S_PART_MSGS + MOM_QUEUE,
        [MOM_PART_RESULTS] = S_PART_RESULTS,
    };
    sqlite3_stmt *s = st->stmt[which[kind]];
    mom_store_row_t row;
    int rc;

    if (mom_store_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    if (kind == MOM_PART_RESULTS) {
        sqlite3_bind_int64(s, 1, partition);
    } else {
        sqlite3_bind_int64(s, 1, partitions);
        sqlite3_bind_int64(s, 2, partition);
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&row, 0, sizeof(row));
        switch (kind) {
        case MOM_PART_USERS:
            row.name = mom_store_col_text(s, 0, &row.name_len);
            row.text = mom_store_col_text(s, 1, &row.text_len);
            break;
        case MOM_PART_TOPICS:
        case MOM_PART_QUEUES:
            row.name = mom_store_col_text(s, 0, &row.name_len);
            row.text = mom_store_col_text(s, 1, &row.text_len);
            row.seq = (uint64_t)sqlite3_column_int64(s, 2);
            break;
        case MOM_PART_TOPIC_MESSAGES:
        case MOM_PART_QUEUE_MESSAGES:
            row.name = mom_store_col_text(s, 0, &row.name_len);
            row.seq = (uint64_t)(sqlite3_column_int64(s, 1) &
                                 (MOM_STORE_SEQ_LIMIT - 1));
            row.text = mom_store_col_text(s, 2, &row.text_len);
            row.blob = mom_store_col_blob(s, 3, &row.blob_len);
            row.num = sqlite3_column_int64(s, 4);
            break;
        case MOM_PART_RESULTS:
            row.num = sqlite3_column_int64(s, 0); /* producer */
            row.seq = (uint64_t)sqlite3_column_int64(s, 1);
            row.status = (unsigned)sqlite3_column_int(s, 2);
            row.blob = mom_store_col_blob(s, 3, &row.blob_len);
            break;
        }
        if (cb(data, &row) != 0) {
            rc = SQLITE_ABORT;
            break;
        }
    }
    mom_store_finish(s);
    if (rc == SQLITE_ABORT) {
        return MOM_STORE_ERROR;
    }
    return rc == SQLITE_DONE ? MOM_STORE_OK : mom_store_fail(st, "part scan");
}

int
mom_store_part_clear(mom_store_t *st, uint32_t partitions, uint32_t partition)
{
    static const int stmts[] = {
        S_PART_DEL_USERS,
        S_PART_DEL_MSGS + MOM_TOPIC,
        S_PART_DEL_COLLS + MOM_TOPIC,
        S_PART_DEL_MSGS + MOM_QUEUE,
        S_PART_DEL_COLLS + MOM_QUEUE,
    };
    sqlite3_stmt *s;

    if (mom_store_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        s = st->stmt[stmts[i]];
        sqlite3_bind_int64(s, 1, partitions);
        sqlite3_bind_int64(s, 2, partition);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    s = st->stmt[S_PART_DEL_RESULTS];
    sqlite3_bind_int64(s, 1, partition);
    if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    s = st->stmt[S_PART_DEL_KEYS];
    sqlite3_bind_int64(s, 1, partition);
    return mom_store_exec_stmt(st, s);
}

int
mom_store_coll_restore(mom_store_t *st, mom_coll_t c, const char *name,
                       const char *owner, uint64_t next_seq)
{
    sqlite3_stmt *s = st->stmt[S_COLL_RESTORE + c];
    sqlite3_int64 id;

    if (mom_store_coll_new_id(st, c, &id) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)next_seq);
    sqlite3_bind_int64(s, 4, id);
    return mom_store_exec_stmt(st, s);
}

int
mom_store_msg_restore(mom_store_t *st, mom_coll_t c, const char *name,
                      const mom_store_msg_t *m)
{
    sqlite3_stmt *s = st->stmt[S_COLL_INSERT_MSG + c];
    sqlite3_int64 id;

    /* Restored after its collection (mom_store_coll_restore). */
    if (mom_store_coll_id(st, c, name, &id) != MOM_STORE_OK ||
        m->seq >= (uint64_t)MOM_STORE_SEQ_LIMIT) {
        mom_log_error("sqlite: restoring a message of %s", name);
        return MOM_STORE_ERROR;
    }
    sqlite3_bind_int64(s, 1, mom_store_pos(id, m->seq));
    sqlite3_bind_text(s, 2, m->sender, (int)m->sender_len, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, m->content_len ? m->content : "",
                      (int)m->content_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, m->ts_ms);
    return mom_store_exec_stmt(st, s);
}
