/*
 * Unit tests of raft_store.c's log on a real SQLite file: the entries of
 * several groups share one key space (idx << 16 | grp), so every range
 * operation must keep to its own group, and walks the group's own keys
 * rather than a range holding every group's; a log of earlier versions (a
 * WITHOUT ROWID table keyed (grp, idx)) is rewritten once at open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "raft_store.h"
#include "sql_query.h"

typedef struct {
    char dir[64];
    char path[96];
    sqlite3 *db;
    mom_raft_store_t *s;
} fixture_t;

/* What a read returned, in order: "idx:term:data " items. */
typedef struct {
    char text[4096];
    size_t n;
} seen_t;

static int
collect(void *arg, uint64_t index, uint64_t term, int type, const void *data,
        size_t len)
{
    seen_t *seen = arg;
    size_t used = strlen(seen->text);

    (void)type;
    snprintf(seen->text + used, sizeof(seen->text) - used, "%llu:%llu:%.*s ",
             (unsigned long long)index, (unsigned long long)term, (int)len,
             (const char *)data);
    seen->n++;
    return 0;
}

static const char *
read_group(fixture_t *f, uint32_t grp, uint64_t first, uint64_t last,
           seen_t *seen)
{
    memset(seen, 0, sizeof(*seen));
    assert_int_equal(
        mom_raft_store_read(f->s, grp, first, last, 1, collect, seen), 0);
    return seen->text;
}

static void
open_db(fixture_t *f)
{
    assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
    db_exec_ok(f->db, "PRAGMA journal_mode = WAL");
}

static void
open_store(fixture_t *f)
{
    f->s = mom_raft_store_open(f->db);
    assert_non_null(f->s);
}

static void
close_all(fixture_t *f)
{
    mom_raft_store_close(f->s);
    f->s = NULL;
    assert_int_equal(sqlite3_close(f->db), SQLITE_OK);
    f->db = NULL;
}

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/mom-test-raft-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/mom.db", f->dir);
    open_db(f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];

    if (f->db != NULL) {
        close_all(f);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void
append(fixture_t *f, uint32_t grp, uint64_t index, const char *data)
{
    mom_raft_store_append(f->s, grp, index, 7, 1, data, strlen(data));
}

/* Groups 0, 1 and 65535 (the largest) with interleaved indexes: reads,
 * truncations and compactions of one leave the others whole. */
static void
test_groups_share_the_log(void **state)
{
    fixture_t *f = *state;
    seen_t seen;
    char data[16];

    open_store(f);
    mom_raft_store_begin(f->s);
    for (uint64_t i = 1; i <= 6; i++) {
        snprintf(data, sizeof(data), "a%llu", (unsigned long long)i);
        append(f, 0, i, data);
        snprintf(data, sizeof(data), "b%llu", (unsigned long long)i);
        append(f, 1, i + 2, data);
        snprintf(data, sizeof(data), "c%llu", (unsigned long long)i);
        append(f, 65535, i, data);
    }
    mom_raft_store_commit(f->s);

    assert_string_equal(read_group(f, 0, 2, 4, &seen), "2:7:a2 3:7:a3 4:7:a4 ");
    assert_string_equal(read_group(f, 1, 1, UINT64_MAX, &seen),
                        "3:7:b1 4:7:b2 5:7:b3 6:7:b4 7:7:b5 8:7:b6 ");
    assert_string_equal(read_group(f, 65535, 6, 6, &seen), "6:7:c6 ");
    assert_string_equal(read_group(f, 2, 1, UINT64_MAX, &seen), "");

    mom_raft_store_begin(f->s);
    mom_raft_store_truncate(f->s, 1, 5); /* b3.. go */
    mom_raft_store_compact(f->s, 0, 4);  /* ..a4 go */
    mom_raft_store_compact(f->s, 65535, 1);
    append(f, 1, 5, "B3"); /* a new leader's entry at a truncated index */
    mom_raft_store_commit(f->s);

    assert_string_equal(read_group(f, 0, 1, UINT64_MAX, &seen),
                        "5:7:a5 6:7:a6 ");
    assert_string_equal(read_group(f, 1, 1, UINT64_MAX, &seen),
                        "3:7:b1 4:7:b2 5:7:B3 ");
    assert_string_equal(read_group(f, 65535, 1, UINT64_MAX, &seen),
                        "2:7:c2 3:7:c3 4:7:c4 5:7:c5 6:7:c6 ");
    /* The virtual columns name what the key holds. */
    assert_int_equal(db_query_int(f->db, "SELECT count(*) FROM raft_log"
                                         " WHERE grp = 65535 AND idx >= 5"),
                     2);

    /* Survives a reopen. */
    close_all(f);
    open_db(f);
    open_store(f);
    assert_string_equal(read_group(f, 1, 4, 5, &seen), "4:7:b2 5:7:B3 ");
}

/* A group's whole log without data, as read at its start; how many. */
static size_t
start_read(fixture_t *f, uint32_t grp, seen_t *seen)
{
    memset(seen, 0, sizeof(*seen));
    assert_int_equal(
        mom_raft_store_read(f->s, grp, 0, UINT64_MAX, 0, collect, seen), 0);
    return seen->n;
}

/* Statements run on the connection, from its trace: range statements
 * (visiting every group's entries of a range) and the rest. */
typedef struct {
    int ranges, others, key_scans;
} traced_t;

static int
trace_stmt(unsigned type, void *ctx, void *p, void *x)
{
    traced_t *t = ctx;
    const char *sql = sqlite3_sql(p);

    (void)type;
    (void)x;
    if (strstr(sql, "raft_log") == NULL) {
        return 0;
    }
    if (strncmp(sql, "SELECT key, term, type", 22) == 0) {
        t->key_scans++;
        return 0;
    }
    if (strstr(sql, "key >=") != NULL || strstr(sql, "key <=") != NULL ||
        strstr(sql, "BETWEEN") != NULL) {
        t->ranges++;
    } else {
        t->others++;
    }
    return 0;
}

static int
group_rows(fixture_t *f, uint32_t grp)
{
    char sql[96];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM raft_log WHERE grp = %u",
             grp);
    return db_query_int(f->db, sql);
}

/* Groups 0-3 with entries 1..50 each, interleaved: compacting, truncating
 * and reading inside a group's log walk its own keys (no range statement);
 * an index with no entry falls back to the range statement, which keeps
 * the result right: compacting past the end, truncating from 0, and the
 * first compaction after a reopen below the log's start. */
static void
test_walks_own_keys(void **state)
{
    fixture_t *f = *state;
    traced_t t = {0, 0, 0};
    seen_t seen;

    open_store(f);
    mom_raft_store_begin(f->s);
    for (uint64_t i = 1; i <= 50; i++) {
        for (uint32_t g = 0; g < 4; g++) {
            append(f, g, i, "e");
        }
    }
    append(f, 9, 1, "x");
    mom_raft_store_commit(f->s);
    sqlite3_trace_v2(f->db, SQLITE_TRACE_STMT, trace_stmt, &t);

    mom_raft_store_begin(f->s);
    mom_raft_store_compact(f->s, 0, 30);
    assert_int_equal(group_rows(f, 0), 20);
    mom_raft_store_compact(f->s, 0, 20); /* compacted already: nothing */
    mom_raft_store_truncate(f->s, 1, 40);
    mom_raft_store_commit(f->s);
    assert_int_equal(group_rows(f, 0), 20);
    assert_int_equal(group_rows(f, 1), 39);
    assert_int_equal(group_rows(f, 2), 50);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(
        mom_raft_store_read(f->s, 2, 11, UINT64_MAX, 1, collect, &seen), 0);
    assert_int_equal(seen.n, 40);
    assert_int_equal(t.ranges, 0);
    assert_true(t.others > 0);

    mom_raft_store_begin(f->s);
    mom_raft_store_compact(f->s, 3, 60); /* past its end: everything */
    mom_raft_store_truncate(f->s, 9, 0);
    mom_raft_store_commit(f->s);
    assert_int_equal(t.ranges, 2);
    assert_int_equal(group_rows(f, 3), 0);
    assert_int_equal(group_rows(f, 9), 0);
    assert_int_equal(group_rows(f, 2), 50);

    sqlite3_trace_v2(f->db, 0, NULL, NULL);
    close_all(f);
    open_db(f);
    open_store(f);
    mom_raft_store_begin(f->s);
    mom_raft_store_compact(f->s, 0, 25); /* before the log: nothing */
    mom_raft_store_compact(f->s, 0, 35);
    mom_raft_store_commit(f->s);
    assert_string_equal(read_group(f, 0, 36, 37, &seen), "36:7:e 37:7:e ");
    assert_int_equal(group_rows(f, 0), 15);
    assert_int_equal(group_rows(f, 1), 39);

    /* Every group's whole log, as at start: one scan of the keys finds
     * them all, then each group walks its own. A hole shows. */
    db_exec_ok(f->db, "DELETE FROM raft_log WHERE key = 20 << 16 | 1");
    close_all(f);
    open_db(f);
    open_store(f);
    memset(&t, 0, sizeof(t));
    sqlite3_trace_v2(f->db, SQLITE_TRACE_STMT, trace_stmt, &t);
    assert_int_equal(start_read(f, 2, &seen), 50);
    assert_int_equal(start_read(f, 0, &seen), 15);
    assert_string_equal(seen.text, "36:7: 37:7: 38:7: 39:7: 40:7: 41:7: 42:7: "
                                   "43:7: 44:7: 45:7: 46:7: 47:7: 48:7: 49:7: "
                                   "50:7: ");
    assert_int_equal(start_read(f, 3, &seen), 0);
    assert_int_equal(start_read(f, 9, &seen), 0);
    assert_int_equal(start_read(f, 700, &seen), 0);
    assert_int_equal(t.key_scans, 1);
    assert_int_equal(t.ranges, 0);
    /* Group 1 lost index 20: the read goes on past it, so the gap shows. */
    assert_int_equal(start_read(f, 1, &seen), 38);
    assert_non_null(strstr(seen.text, "19:7: 21:7: "));
    /* After a write the group's span is stale: its reads walk from the
     * index asked for. */
    mom_raft_store_begin(f->s);
    append(f, 2, 51, "n");
    mom_raft_store_commit(f->s);
    assert_string_equal(read_group(f, 2, 50, UINT64_MAX, &seen),
                        "50:7:e 51:7:n ");
    sqlite3_trace_v2(f->db, 0, NULL, NULL);
    assert_int_equal(t.key_scans, 1);
}

/* The largest index with a key is 2^47 - 1: stored and read back, and a
 * range past it reads nothing instead of wrapping into small keys. */
static void
test_index_bounds(void **state)
{
    fixture_t *f = *state;
    const uint64_t top = (UINT64_C(1) << 47) - 1;
    seen_t seen;

    open_store(f);
    mom_raft_store_begin(f->s);
    append(f, 3, 1, "low");
    append(f, 3, top, "top");
    mom_raft_store_commit(f->s);
    assert_string_equal(read_group(f, 3, top, UINT64_MAX, &seen),
                        "140737488355327:7:top ");
    assert_string_equal(read_group(f, 3, top + 1, UINT64_MAX, &seen), "");
    assert_string_equal(read_group(f, 3, 2, 1, &seen), "");
    assert_int_equal(
        db_query_int(f->db, "SELECT count(*) FROM raft_log WHERE grp = 3"), 2);
}

/* A log written by earlier versions: rewritten at open, entries intact,
 * the old table gone; a second open finds nothing to do. */
static void
test_old_log_upgraded(void **state)
{
    fixture_t *f = *state;
    seen_t seen;

    db_exec_ok(
        f->db,
        "CREATE TABLE raft_log("
        " grp INTEGER NOT NULL, idx INTEGER NOT NULL, term INTEGER NOT NULL,"
        " type INTEGER NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (grp, idx)) WITHOUT ROWID;"
        "INSERT INTO raft_log VALUES (0, 9, 2, 1, 'x9'), (0, 10, 3, 1, 'x10'),"
        " (4, 1, 1, 3, 'conf'), (4, 2, 1, 1, 'y2'), (70, 9, 2, 1, 'z9');");
    open_store(f);
    assert_string_equal(read_group(f, 0, 1, UINT64_MAX, &seen),
                        "9:2:x9 10:3:x10 ");
    assert_string_equal(read_group(f, 4, 1, UINT64_MAX, &seen),
                        "1:1:conf 2:1:y2 ");
    assert_string_equal(read_group(f, 70, 9, 9, &seen), "9:2:z9 ");
    assert_int_equal(db_query_int(f->db, "SELECT count(*) FROM sqlite_master"
                                         " WHERE name LIKE 'raft_log%'"),
                     1);
    assert_int_equal(db_query_int(f->db, "SELECT count(*) FROM"
                                         " pragma_table_info('raft_log')"
                                         " WHERE name = 'key'"),
                     1);
    assert_int_equal(db_query_int(f->db, "SELECT key FROM raft_log"
                                         " WHERE grp = 70"),
                     9 << 16 | 70);

    close_all(f);
    open_db(f);
    open_store(f);
    assert_string_equal(read_group(f, 0, 10, 10, &seen), "10:3:x10 ");
    assert_int_equal(db_query_int(f->db, "SELECT count(*) FROM raft_log"), 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_groups_share_the_log, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_walks_own_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_log_upgraded, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
