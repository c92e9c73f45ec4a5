/*
 * The fixture of the store's unit tests (test_store.c,
 * test_store_positions.c, test_store_results.c): a store on a real SQLite file
 * in a temporary directory, commands applied through the state machine one
 * transaction each, messages collected from scans, databases of earlier
 * versions made by SQL. Header-only: include after cmocka.h.
 */
#ifndef MOM_TEST_STORE_FIXTURE_H
#define MOM_TEST_STORE_FIXTURE_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm.h"
#include "sql_query.h"
#include "store.h"

typedef struct {
    char dir[64];
    mom_store_t *st;
    uint64_t index;
    mom_result_t res;
} fixture_t;

static inline mom_store_t *
open_store(const char *dir)
{
    char err[256];
    mom_store_t *st = mom_store_open(dir, MOM_SYNC_NORMAL, err, sizeof(err));

    if (st == NULL) {
        fail_msg("open: %s", err);
    }
    return st;
}

static inline int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/mom-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->st = open_store(f->dir);
    mom_result_init(&f->res);
    *state = f;
    return 0;
}

static inline int
teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];

    mom_result_free(&f->res);
    mom_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Applies one command at the next index in its own transaction. */
static inline unsigned
apply_at(fixture_t *f, uint64_t index, Mom__CommandOp op, const char *name,
         const char *user, const char *content)
{
    Mom__Command cmd = MOM__COMMAND__INIT;

    cmd.op = op;
    cmd.name = (char *)name;
    cmd.user = (char *)(user ? user : "");
    cmd.password_hash = "pbkdf2_sha256$1$AAAA$BBBB";
    if (content != NULL) {
        cmd.content.data = (uint8_t *)content;
        cmd.content.len = strlen(content);
    }
    cmd.timestamp_ms = 1795703915123LL; /* 2026-11-26T14:38:35.123Z */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_sm_apply(f->st, 0, index, &cmd, &f->res), 0);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    /* NUL-terminate the body for string comparisons. */
    mom_buf_append(&f->res.body, "", 1);
    f->res.body.len--;
    return f->res.status;
}

static inline unsigned
apply(fixture_t *f, Mom__CommandOp op, const char *name, const char *user,
      const char *content)
{
    return apply_at(f, ++f->index, op, name, user, content);
}

#define BODY(f) ((f)->res.body.len ? (f)->res.body.data : "")

typedef struct {
    uint64_t seqs[16];
    char contents[16][32];
    int n;
} collected_t;

static inline int
collect(void *data, const mom_store_msg_t *m)
{
    collected_t *c = data;

    c->seqs[c->n] = m->seq;
    snprintf(c->contents[c->n], sizeof(c->contents[0]), "%.*s",
             (int)m->content_len, (const char *)m->content);
    c->n++;
    return 0;
}

/* One integer from a query on the store's connection. */
static inline sqlite3_int64
query_int(fixture_t *f, const char *sql)
{
    return db_query_int(mom_store_db(f->st), sql);
}

/* Topics and their messages as versions before positions kept them. */
#define STORE_OLD_TOPICS_SQL                                                   \
    "CREATE TABLE topics (name TEXT PRIMARY KEY, owner TEXT NOT NULL,"         \
    "  next_offset INTEGER NOT NULL) WITHOUT ROWID;"                           \
    "CREATE TABLE topic_messages (topic TEXT NOT NULL,"                        \
    "  \"offset\" INTEGER NOT NULL, sender TEXT NOT NULL,"                     \
    "  content BLOB NOT NULL, ts_ms INTEGER NOT NULL,"                         \
    "  PRIMARY KEY (topic, \"offset\"));"

static inline void
reopen(fixture_t *f)
{
    mom_store_close(f->st);
    f->st = open_store(f->dir);
}

/* Reopens the store on a database of an earlier version, made by sql. */
static inline void
reopen_as(fixture_t *f, const char *sql)
{
    char path[128];
    sqlite3 *db;

    mom_store_close(f->st);
    snprintf(path, sizeof(path), "%s/mom.db", f->dir);
    unlink(path);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->st = open_store(f->dir);
}

#endif
