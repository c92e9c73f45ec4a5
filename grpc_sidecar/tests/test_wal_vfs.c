/*
 * Unit tests of the WAL-coalescing VFS (wal_vfs.c) on real SQLite files:
 * a commit reaches the kernel in one write and reads back, through the
 * same connection and through another one on the default VFS; large
 * transactions that spill pages mid-transaction stay intact; a process
 * killed (SIGKILL) in the middle of its transactions, or right after a
 * COMMIT returned, keeps every transaction whose COMMIT returned.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "sql_query.h"
#include "wal_vfs.h"

typedef struct {
    char dir[64];
    char path[96];
} tmp_db_t;

static void
tmp_db_make(tmp_db_t *t)
{
    strcpy(t->dir, "/tmp/mom-test-walvfs-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/t.db", t->dir);
}

static void
tmp_db_remove(tmp_db_t *t)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    assert_int_equal(system(cmd), 0);
}

static sqlite3 *
db_open(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;

    assert_int_equal(mom_wal_vfs_register(), SQLITE_OK);
    assert_int_equal(sqlite3_open_v2(path, &db,
                                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                     vfs),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode = WAL;"
                                  "PRAGMA synchronous = NORMAL;"
                                  "CREATE TABLE IF NOT EXISTS t("
                                  " k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void
assert_intact(sqlite3 *db)
{
    sqlite3_stmt *s;

    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
}

/* Inserts rows [first, first + n) of `size` bytes each (v = k repeated). */
static void
insert_rows(sqlite3 *db, int first, int n, int size)
{
    sqlite3_stmt *s;
    unsigned char *v = malloc((size_t)size);

    assert_non_null(v);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t(k, v) VALUES (?1, ?2)",
                           -1, &s, NULL),
        SQLITE_OK);
    for (int k = first; k < first + n; k++) {
        memset(v, k & 0xff, (size_t)size);
        sqlite3_bind_int(s, 1, k);
        sqlite3_bind_blob(s, 2, v, size, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_DONE);
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    free(v);
}

/* Every row [0, n) is there with its content. */
static void
assert_rows(sqlite3 *db, int n, int size)
{
    sqlite3_stmt *s;
    int count = 0;

    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT k, v FROM t ORDER BY k", -1, &s, NULL),
        SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int k = sqlite3_column_int(s, 0);
        const unsigned char *v = sqlite3_column_blob(s, 1);

        assert_int_equal(k, count);
        assert_int_equal(sqlite3_column_bytes(s, 1), size);
        for (int i = 0; i < size; i++) {
            assert_int_equal(v[i], k & 0xff);
        }
        count++;
    }
    sqlite3_finalize(s);
    assert_int_equal(count, n);
}

/* A transaction of many pages reaches the kernel in one write and reads
 * back through this connection and another one (default VFS). */
static void
test_commit_coalesced_and_read_back(void **state)
{
    tmp_db_t t;
    sqlite3 *db, *other;
    uint64_t before;

    (void)state;
    tmp_db_make(&t);
    db = db_open(t.path, MOM_WAL_VFS_NAME);
    db_exec_ok(db, "PRAGMA wal_autocheckpoint = 0");
    other = db_open(t.path, NULL);
    assert_int_equal(db_query_int(other, "SELECT count(*) FROM t"), 0);

    before = mom_wal_vfs_writes();
    db_exec_ok(db, "BEGIN IMMEDIATE");
    insert_rows(db, 0, 40, 1000); /* about 12 pages: 25 SQLite writes */
    db_exec_ok(db, "COMMIT");
    assert_int_equal(mom_wal_vfs_writes() - before, 1);

    /* The other connection reads the WAL file itself. */
    assert_rows(other, 40, 1000);
    assert_rows(db, 40, 1000);

    before = mom_wal_vfs_writes();
    for (int i = 0; i < 10; i++) {
        db_exec_ok(db, "BEGIN IMMEDIATE");
        insert_rows(db, 40 + i * 4, 4, 1000);
        db_exec_ok(db, "COMMIT");
        assert_rows(other, 44 + i * 4, 1000);
    }
    assert_int_equal(mom_wal_vfs_writes() - before, 10);

    /* The other connection writes, this one reads and writes on. */
    db_exec_ok(other, "DELETE FROM t WHERE k >= 60");
    assert_rows(db, 60, 1000);
    insert_rows(db, 60, 5, 1000);
    assert_rows(other, 65, 1000);

    /* A checkpoint reads the frames back; a restarted WAL works too. */
    db_exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    insert_rows(db, 65, 5, 1000);
    assert_rows(other, 70, 1000);
    assert_intact(db);
    sqlite3_close(other);
    sqlite3_close(db);

    db = db_open(t.path, NULL);
    assert_rows(db, 70, 1000);
    assert_intact(db);
    sqlite3_close(db);
    tmp_db_remove(&t);
}

/* A transaction larger than the page cache spills frames before its
 * commit and rewrites some: all of it lands intact. */
static void
test_spilling_transaction(void **state)
{
    tmp_db_t t;
    sqlite3 *db, *other;

    (void)state;
    tmp_db_make(&t);
    db = db_open(t.path, MOM_WAL_VFS_NAME);
    db_exec_ok(db, "PRAGMA cache_size = 10");
    other = db_open(t.path, NULL);

    db_exec_ok(db, "BEGIN IMMEDIATE");
    insert_rows(db, 0, 3000, 700);
    insert_rows(db, 0, 3000, 700); /* the same pages again */
    assert_int_equal(db_query_int(other, "SELECT count(*) FROM t"), 0);
    db_exec_ok(db, "COMMIT");
    assert_rows(other, 3000, 700);

    db_exec_ok(db, "BEGIN IMMEDIATE");
    insert_rows(db, 3000, 500, 700);
    db_exec_ok(db, "ROLLBACK");
    assert_rows(db, 3000, 700);
    assert_rows(other, 3000, 700);
    assert_intact(other);
    sqlite3_close(other);
    sqlite3_close(db);
    tmp_db_remove(&t);
}

/*
 * A child commits transactions of 4 rows and reports each after its
 * COMMIT returned; it is killed with SIGKILL in the middle of its work
 * (with a large uncommitted transaction in progress at times). Every
 * reported transaction is in the database afterwards, and nothing else
 * but whole transactions.
 */
static void
test_killed_process_keeps_commits(void **state)
{
    tmp_db_t t;
    int fds[2];
    pid_t pid;
    int32_t done = -1, got;
    sqlite3 *db;
    int64_t n;

    (void)state;
    tmp_db_make(&t);
    db = db_open(t.path, NULL);
    sqlite3_close(db);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        db = db_open(t.path, MOM_WAL_VFS_NAME);
        db_exec_ok(db, "PRAGMA cache_size = 20");
        for (int32_t i = 0;; i++) {
            db_exec_ok(db, "BEGIN IMMEDIATE");
            insert_rows(db, i * 4, 4, 1500);
            if (i % 7 == 3) {
                /* uncommitted pages spilled to the WAL, then dropped */
                insert_rows(db, 1000000, 200, 1500);
                db_exec_ok(db, "DELETE FROM t WHERE k >= 1000000");
            }
            db_exec_ok(db, "COMMIT");
            if (write(fds[1], &i, sizeof(i)) != sizeof(i)) {
                _exit(1);
            }
        }
    }
    close(fds[1]);
    while (read(fds[0], &got, sizeof(got)) == sizeof(got)) {
        done = got;
        if (done >= 150) {
            break;
        }
    }
    /* Kill it while it works on (it commits on without waiting). */
    usleep(3000);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    while (read(fds[0], &got, sizeof(got)) == sizeof(got)) {
        done = got;
    }
    close(fds[0]);
    assert_true(done >= 150);

    db = db_open(t.path, MOM_WAL_VFS_NAME);
    assert_intact(db);
    n = db_query_int(db, "SELECT count(*) FROM t");
    assert_true(n >= (int64_t)(done + 1) * 4);
    assert_int_equal(n % 4, 0);
    assert_int_equal(
        db_query_int(db, "SELECT count(*) FROM t WHERE k >= 1000000"), 0);
    assert_rows(db, (int)n, 1500);
    sqlite3_close(db);
    tmp_db_remove(&t);
}

/*
 * A child commits 20 transactions (the last one also wrote and deleted
 * rows enough to spill pages to the WAL before its commit), then stops
 * right after its last COMMIT returned (blocked on a pipe) and is killed:
 * exactly the 20 committed transactions are in the database.
 */
static void
test_killed_after_commit(void **state)
{
    tmp_db_t t;
    int report[2], hold[2];
    pid_t pid;
    char c;
    sqlite3 *db;

    (void)state;
    tmp_db_make(&t);
    db = db_open(t.path, NULL);
    sqlite3_close(db);
    assert_int_equal(pipe(report), 0);
    assert_int_equal(pipe(hold), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(report[0]);
        close(hold[1]);
        db = db_open(t.path, MOM_WAL_VFS_NAME);
        db_exec_ok(db, "PRAGMA cache_size = 20");
        for (int i = 0; i < 20; i++) {
            db_exec_ok(db, "BEGIN IMMEDIATE");
            insert_rows(db, i * 4, 4, 1500);
            if (i == 19) {
                insert_rows(db, 1000000, 300, 1500);
                db_exec_ok(db, "DELETE FROM t WHERE k >= 1000000");
            }
            db_exec_ok(db, "COMMIT");
        }
        if (write(report[1], "r", 1) != 1 || read(hold[0], &c, 1) < 0) {
            _exit(1);
        }
        _exit(2);
    }
    close(report[1]);
    close(hold[0]);
    assert_int_equal(read(report[0], &c, 1), 1);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    close(report[0]);
    close(hold[1]);

    db = db_open(t.path, MOM_WAL_VFS_NAME);
    assert_intact(db);
    assert_rows(db, 80, 1500);
    sqlite3_close(db);
    tmp_db_remove(&t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_coalesced_and_read_back),
        cmocka_unit_test(test_spilling_transaction),
        cmocka_unit_test(test_killed_process_keeps_commits),
        cmocka_unit_test(test_killed_after_commit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
