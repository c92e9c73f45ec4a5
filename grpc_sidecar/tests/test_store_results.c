/*
 * Unit tests of the idempotency results' tables (store_results.c, store.c):
 * rows in the file's rowid table applied_results, their keys in the
 * connection's TEMP table applied_keys. Counted on both sides: a reopen
 * rebuilds the keys, a replaced result leaves no row behind, a rollback
 * takes row and key, the pruning and a cleared partition delete both, and
 * the keyed tables of earlier versions are rewritten once. The behaviour
 * through mom_sm_apply is in test_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "store_shape.h"

#include "store_fixture.h"

/* The first column of a one-row query as text ("" for NULL). */
static void
query(fixture_t *f, const char *sql, char *out, size_t size)
{
    sqlite3_stmt *s;
    const unsigned char *t;

    assert_int_equal(sqlite3_prepare_v2(mom_store_db(f->st), sql, -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    t = sqlite3_column_text(s, 0);
    snprintf(out, size, "%s", t ? (const char *)t : "");
    sqlite3_finalize(s);
}

/* "rows,keys": the results in the file and their keys in memory. */
#define COUNTS                                                                 \
    "SELECT (SELECT count(*) FROM main.applied_results) || ',' || "            \
    "(SELECT count(*) FROM temp.applied_keys)"

static void
assert_counts(fixture_t *f, const char *want)
{
    char got[64];

    query(f, COUNTS, got, sizeof(got));
    assert_string_equal(got, want);
}

static void
put(fixture_t *f, uint32_t group, uint64_t producer, uint64_t sequence,
    unsigned status, const char *body)
{
    assert_int_equal(mom_store_dedup_put(f->st, group, producer, sequence,
                                         status, body, strlen(body)),
                     MOM_STORE_OK);
}

/* The stored status of a key (0: none); its body must be `body`. */
static unsigned
status_of(fixture_t *f, uint32_t group, uint64_t producer, uint64_t sequence,
          const char *body)
{
    unsigned status = 0;
    mom_buf_t b;
    int rc;

    mom_buf_init(&b);
    rc = mom_store_dedup_get(f->st, group, producer, sequence, &status, &b);
    assert_int_not_equal(rc, MOM_STORE_ERROR);
    if (rc == MOM_STORE_OK && body != NULL) {
        assert_int_equal(b.len, strlen(body));
        assert_memory_equal(b.len ? b.data : "", body, b.len);
    }
    mom_buf_free(&b);
    return rc == MOM_STORE_OK ? status : 0;
}

/* A partition's results as "producer:sequence:status," in scan order. */
static int
scan_row(void *data, const mom_store_row_t *row)
{
    char *out = data;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%lld:%llu:%u,", (long long)row->num,
             (unsigned long long)row->seq, row->status);
    return 0;
}

/* Results survive a close and reopen: the keys are rebuilt from the file.
 * Rows are appended (rowid order is insertion order); a partition scans
 * in (sequence, producer) order, as the keyed table did. */
static void
test_results_reopen(void **state)
{
    fixture_t *f = *state;
    char got[256] = "";

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    put(f, 0, 7, 300, 201, "a");
    put(f, 0, 8, 100, 202, "bb");
    put(f, 0, 7, 200, 203, "");
    put(f, 2, 7, 50, 204, "c");
    put(f, 0, 9, 200, 205, "d");
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);

    reopen(f);
    assert_results_shape(f->st);
    assert_counts(f, "5,5");
    assert_int_equal(status_of(f, 0, 7, 300, "a"), 201);
    assert_int_equal(status_of(f, 0, 8, 100, "bb"), 202);
    assert_int_equal(status_of(f, 0, 7, 200, ""), 203);
    assert_int_equal(status_of(f, 2, 7, 50, "c"), 204);
    assert_int_equal(status_of(f, 0, 9, 200, "d"), 205);
    assert_int_equal(status_of(f, 0, 7, 100, NULL), 0);
    assert_int_equal(status_of(f, 1, 7, 300, NULL), 0);
    query(f,
          "SELECT group_concat(sequence) FROM (SELECT sequence FROM "
          "main.applied_results ORDER BY rowid)",
          got, sizeof(got));
    assert_string_equal(got, "300,100,200,50,200");
    got[0] = '\0';
    assert_int_equal(
        mom_store_part_scan(f->st, MOM_PART_RESULTS, 4, 0, scan_row, got),
        MOM_STORE_OK);
    assert_string_equal(got, "8:100:202,7:200:203,9:200:205,7:300:201,");
    /* A new result goes after the others. */
    put(f, 0, 7, 400, 206, "e");
    query(f,
          "SELECT sequence FROM main.applied_results "
          "ORDER BY rowid DESC LIMIT 1",
          got, sizeof(got));
    assert_string_equal(got, "400");
    assert_counts(f, "6,6");
}

/* A put of an existing key replaces its result without leaving the old
 * row: whether the producer's newest is known (looked up first, as
 * mom_sm_apply does) or not (a fresh open), in a transaction or not. */
static void
test_results_replace(void **state)
{
    fixture_t *f = *state;

    /* Not known: outside a transaction. */
    put(f, 0, 7, 100, 200, "old");
    put(f, 0, 7, 100, 201, "new");
    assert_counts(f, "1,1");
    assert_int_equal(status_of(f, 0, 7, 100, "new"), 201);

    /* Known: a key above the newest is inserted as new, then again. */
    assert_int_equal(status_of(f, 0, 8, 500, NULL), 0);
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    put(f, 0, 8, 500, 202, "a");
    put(f, 0, 8, 500, 203, "b");
    put(f, 0, 8, 400, 204, "c");
    put(f, 0, 8, 400, 205, "d");
    assert_counts(f, "3,3");
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    assert_int_equal(status_of(f, 0, 8, 500, "b"), 203);
    assert_int_equal(status_of(f, 0, 8, 400, "d"), 205);

    /* After a reopen (nothing known) too. */
    reopen(f);
    put(f, 0, 8, 500, 206, "e");
    put(f, 0, 7, 100, 207, "f");
    assert_counts(f, "3,3");
    assert_int_equal(status_of(f, 0, 8, 500, "e"), 206);
    assert_int_equal(status_of(f, 0, 7, 100, "f"), 207);
    assert_results_shape(f->st);
    reopen(f);
    assert_counts(f, "3,3");
    assert_int_equal(status_of(f, 0, 8, 500, "e"), 206);
}

/* A rollback takes a result's row and its key; a replaced result comes
 * back; a rolled back pruning leaves both. */
static void
test_results_rollback(void **state)
{
    fixture_t *f = *state;

    put(f, 0, 7, 100, 200, "kept");
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    put(f, 0, 7, 200, 201, "new");
    put(f, 0, 7, 100, 202, "replaced");
    put(f, 3, 9, 100, 203, "other group");
    assert_counts(f, "3,3");
    mom_store_rollback(f->st);
    assert_counts(f, "1,1");
    assert_int_equal(status_of(f, 0, 7, 100, "kept"), 200);
    assert_int_equal(status_of(f, 0, 7, 200, NULL), 0);
    assert_int_equal(status_of(f, 3, 9, 100, NULL), 0);
    assert_results_shape(f->st);

    put(f, 0, 7, 150, 204, "newer");
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 0, UINT64_MAX),
                     MOM_STORE_OK);
    assert_counts(f, "1,1");
    mom_store_rollback(f->st);
    assert_counts(f, "2,2");
    assert_int_equal(status_of(f, 0, 7, 100, "kept"), 200);

    /* What committed is what a reopened store finds. */
    reopen(f);
    assert_counts(f, "2,2");
    assert_int_equal(status_of(f, 0, 7, 150, "newer"), 204);
}

/* The pruning deletes rows and keys alike; so does clearing a partition. */
static void
test_results_prune(void **state)
{
    fixture_t *f = *state;
    char got[64];

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    for (uint64_t seq = 100; seq <= 200; seq += 10) {
        put(f, 0, 7, seq, 200, "{}");
        put(f, 1, 7, seq, 201, "{}");
    }
    put(f, 0, 8, 5, 202, "{}");
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    assert_counts(f, "23,23");

    /* Window 50: producer 7 keeps 150..200, 8 its newest (5). */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 1000), MOM_STORE_OK);
    assert_counts(f, "18,18");
    assert_int_equal(status_of(f, 0, 7, 140, NULL), 0);
    assert_int_equal(status_of(f, 0, 7, 150, "{}"), 200);
    assert_int_equal(status_of(f, 0, 8, 5, "{}"), 202);
    /* Stale 100: producer 8 (newest 5 < 200 - 100) goes entirely. */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 100), MOM_STORE_OK);
    assert_counts(f, "17,17");
    query(f,
          "SELECT (SELECT count(*) FROM main.applied_results WHERE "
          "producer = 8) || ',' || (SELECT count(*) FROM temp.applied_keys "
          "WHERE producer = 8)",
          got, sizeof(got));
    assert_string_equal(got, "0,0");
    assert_results_shape(f->st);

    /* Group 1 is partition 1 of 4: all of its results go. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_part_clear(f->st, 4, 1), MOM_STORE_OK);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    assert_counts(f, "6,6");
    assert_int_equal(status_of(f, 1, 7, 200, NULL), 0);
    reopen(f);
    assert_counts(f, "6,6");
    assert_results_shape(f->st);
}

/* The previous version's table, keyed (grp, sequence, producer) WITHOUT
 * ROWID, is rewritten once as the rowid table in key order; a stale
 * applied_producers in the file is dropped. */
static void
test_results_from_keyed(void **state)
{
    fixture_t *f = *state;
    char got[256];

    reopen_as(f, "CREATE TABLE applied_results (grp INTEGER NOT NULL,"
                 "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
                 "  status INTEGER NOT NULL, body BLOB NOT NULL,"
                 "  PRIMARY KEY (grp, sequence, producer)) WITHOUT ROWID;"
                 "INSERT INTO applied_results VALUES (5, 77, 900, 204, 'd');"
                 "INSERT INTO applied_results VALUES (0, 78, 1100, 203, 'c');"
                 "INSERT INTO applied_results VALUES (0, 77, 1200, 202, 'b');"
                 "INSERT INTO applied_results VALUES (0, 77, 1000, 201, 'a');"
                 "CREATE TABLE applied_producers (grp INTEGER NOT NULL,"
                 "  producer INTEGER NOT NULL, newest INTEGER NOT NULL,"
                 "  PRIMARY KEY (grp, producer)) WITHOUT ROWID;"
                 "INSERT INTO applied_producers VALUES (0, 77, 5);");
    for (int i = 0; i < 2; i++) {
        assert_results_shape(f->st);
        assert_counts(f, "4,4");
        query(f,
              "SELECT group_concat(k) FROM (SELECT grp || ':' || sequence || "
              "':' || producer AS k FROM main.applied_results ORDER BY rowid)",
              got, sizeof(got));
        assert_string_equal(got, "0:1000:77,0:1100:78,0:1200:77,5:900:77");
        assert_int_equal(status_of(f, 0, 77, 1000, "a"), 201);
        assert_int_equal(status_of(f, 0, 77, 1200, "b"), 202);
        assert_int_equal(status_of(f, 0, 78, 1100, "c"), 203);
        assert_int_equal(status_of(f, 5, 77, 900, "d"), 204);
        reopen(f); /* nothing left to migrate */
    }
    /* The pruning sees the producers' newest (1200, not the stale 5). */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 100, 1000), MOM_STORE_OK);
    assert_int_equal(status_of(f, 0, 77, 1000, NULL), 0);
    assert_int_equal(status_of(f, 0, 77, 1200, "b"), 202);
    assert_counts(f, "3,3");
}

/* A key stored twice in the file (no momd writes so) opens: the later row
 * wins, as an INSERT OR REPLACE did, and the earlier is deleted. */
static void
test_results_stored_twice(void **state)
{
    fixture_t *f = *state;

    reopen_as(f, "CREATE TABLE applied_results (grp INTEGER NOT NULL,"
                 "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
                 "  status INTEGER NOT NULL, body BLOB NOT NULL);"
                 "INSERT INTO applied_results VALUES (0, 77, 1000, 201, 'a');"
                 "INSERT INTO applied_results VALUES (0, 78, 1000, 202, 'b');"
                 "INSERT INTO applied_results VALUES (0, 77, 1000, 203, 'c');");
    assert_results_shape(f->st);
    assert_counts(f, "2,2");
    assert_int_equal(status_of(f, 0, 77, 1000, "c"), 203);
    assert_int_equal(status_of(f, 0, 78, 1000, "b"), 202);
    reopen(f);
    assert_counts(f, "2,2");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_results_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_from_keyed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_results_stored_twice, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
