/*
 * SQL helpers of the unit tests that look into a database (test_raft.c,
 * test_raft_store.c, test_wal_vfs.c, store_fixture.h): run a script, read
 * one integer. Header-only: include after cmocka.h.
 */
#ifndef MOM_TEST_SQL_QUERY_H
#define MOM_TEST_SQL_QUERY_H

#include <sqlite3.h>

static inline void
db_exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg ? msg : "?");
    }
}

static inline sqlite3_int64
db_query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    sqlite3_int64 v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

#endif
