/*
 * A check of the idempotency results' tables shared by test_store.c and
 * test_store_results.c. Header-only: include after cmocka.h.
 */
#ifndef MOM_TEST_STORE_SHAPE_H
#define MOM_TEST_STORE_SHAPE_H

#include <sqlite3.h>

#include "store.h"

/*
 * The results' tables as "key columns,WITHOUT ROWID,indexes,
 * applied_producers,rows without their key": applied_results in the file
 * is a rowid table without a key or an index, no applied_producers is
 * left (file or TEMP), and every row has its key: "0,0,0,0,0".
 */
static void
assert_results_shape(mom_store_t *st)
{
    sqlite3_stmt *s;

    assert_int_equal(
        sqlite3_prepare_v2(
            mom_store_db(st),
            "SELECT (SELECT count(*) FROM pragma_table_info("
            "'applied_results') WHERE pk > 0) || ',' || (SELECT wr FROM "
            "pragma_table_list WHERE schema = 'main' AND name = "
            "'applied_results') || ',' || (SELECT count(*) FROM "
            "pragma_index_list('applied_results')) || ',' || (SELECT "
            "count(*) FROM (SELECT name FROM main.sqlite_master UNION ALL "
            "SELECT name FROM temp.sqlite_master) WHERE name = "
            "'applied_producers') || ',' || ((SELECT count(*) FROM "
            "main.applied_results) - (SELECT count(*) FROM "
            "main.applied_results r JOIN temp.applied_keys k ON k.rid = "
            "r.rowid AND k.grp = r.grp AND k.producer = r.producer AND "
            "k.sequence = r.sequence))",
            -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "0,0,0,0,0");
    sqlite3_finalize(s);
}

#endif
