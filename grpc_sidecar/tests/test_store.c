/*
 * Unit tests of the store and the state machine (store.c, sm.c) on a real
 * SQLite file in a temporary directory: every command kind, offsets, owner
 * checks, 404s, queue FIFO, idempotent re-apply, reopen.
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

#include "sm.h"
#include "store.h"
#include "store_shape.h"

#include "store_fixture.h"

static void
test_register(void **state)
{
    fixture_t *f = *state;
    char *hash = NULL;

    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_REGISTER, "alice", NULL, NULL), 200);
    assert_string_equal(BODY(f), "{\"message\":\"User registered\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_REGISTER, "alice", NULL, NULL), 400);
    assert_string_equal(BODY(f), "{\"detail\":\"User already exists\"}");
    assert_int_equal(mom_store_user_hash(f->st, "alice", &hash), MOM_STORE_OK);
    assert_string_equal(hash, "pbkdf2_sha256$1$AAAA$BBBB");
    free(hash);
    assert_int_equal(mom_store_user_hash(f->st, "bob", &hash),
                     MOM_STORE_NOT_FOUND);
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_REGISTER, "bad name", NULL, NULL), 422);
}

static void
test_topics(void **state)
{
    fixture_t *f = *state;
    uint64_t next;

    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "t", "alice", "1"),
                     404);
    assert_string_equal(BODY(f), "{\"detail\":\"Topic not found\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "t", "alice", NULL), 200);
    assert_string_equal(BODY(f),
                        "{\"message\":\"Topic created\",\"name\":\"t\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "t", "bob", NULL), 400);
    assert_string_equal(BODY(f), "{\"detail\":\"Topic already exists\"}");

    for (int i = 1; i <= 3; i++) {
        char want[64];
        assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "t", "bob",
                               "{\"k\":[1,\"two\"]}"),
                         200);
        snprintf(want, sizeof(want),
                 "{\"message\":\"Message published\",\"offset\":%d}", i);
        assert_string_equal(BODY(f), want);
        assert_true(f->res.has_message);
        assert_int_equal(f->res.message.seq, i);
        assert_string_equal(f->res.message.sender, "bob");
    }
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "t", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);

    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_TOPIC, "t", "bob", NULL), 403);
    assert_string_equal(BODY(f),
                        "{\"detail\":\"Not the owner of this topic\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_TOPIC, "t", "alice", NULL), 200);
    assert_string_equal(BODY(f),
                        "{\"message\":\"Topic deleted\",\"name\":\"t\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_TOPIC, "t", "alice", NULL), 404);

    /* A re-created topic starts at offset 1 with no old messages. */
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "t", "bob", NULL), 200);
    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "t", "bob", "2"),
                     200);
    assert_int_equal(f->res.message.seq, 1);
}

static void
test_history_scan(void **state)
{
    fixture_t *f = *state;
    collected_t c = {0};
    char num[8];

    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "h", "alice", NULL);
    for (int i = 1; i <= 10; i++) {
        snprintf(num, sizeof(num), "%d", i * 10);
        apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "h", "alice", num);
    }
    assert_int_equal(
        mom_store_coll_scan(f->st, MOM_TOPIC, "h", 7, 100, collect, &c),
        MOM_STORE_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.seqs[0], 8);
    assert_string_equal(c.contents[2], "100");
    memset(&c, 0, sizeof(c));
    mom_store_coll_scan(f->st, MOM_TOPIC, "h", 0, 2, collect, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seqs[1], 2);
}

static void
test_queues_fifo(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "bob", NULL),
                     404);
    assert_string_equal(BODY(f), "{\"detail\":\"Queue not found\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "q", "alice", NULL), 200);
    assert_string_equal(BODY(f),
                        "{\"message\":\"Queue created\",\"name\":\"q\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "q", "alice", NULL), 400);
    assert_string_equal(BODY(f), "{\"detail\":\"Queue already exists\"}");
    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "bob", NULL),
                     200);
    assert_string_equal(BODY(f), "{\"message\":null}");

    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "bob", "\"first\""), 200);
    assert_string_equal(BODY(f), "{\"message\":\"Message sent\",\"id\":1}");
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "bob", "\"second\"");
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "carol", "\"third\"");

    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "dave", NULL),
                     200);
    assert_string_equal(BODY(f),
                        "{\"message\":{\"id\":1,\"sender\":\"bob\",\"content\":"
                        "\"first\",\"timestamp\":\"2026-11-26T14:38:35.123Z\""
                        "}}");
    apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "dave", NULL);
    assert_non_null(strstr(BODY(f), "\"id\":2,"));
    apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "dave", NULL);
    assert_non_null(strstr(BODY(f), "\"sender\":\"carol\""));
    apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "dave", NULL);
    assert_string_equal(BODY(f), "{\"message\":null}");

    /* ids keep growing after the queue emptied. */
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "bob", "4");
    assert_string_equal(BODY(f), "{\"message\":\"Message sent\",\"id\":4}");

    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_QUEUE, "q", "bob", NULL), 403);
    assert_string_equal(BODY(f),
                        "{\"detail\":\"Not the owner of this queue\"}");
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_QUEUE, "q", "alice", NULL), 200);
    assert_string_equal(BODY(f),
                        "{\"message\":\"Queue deleted\",\"name\":\"q\"}");
    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "bob", "5"), 404);
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_QUEUE, "q", "alice", NULL), 404);
}

static void
test_idempotent_replay(void **state)
{
    fixture_t *f = *state;
    uint64_t applied, next;

    apply_at(f, 5, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "r", "alice", NULL);
    assert_int_equal(
        apply_at(f, 6, MOM__COMMAND_OP__CMD_PUBLISH, "r", "alice", "1"), 200);
    /* Replaying index 6 (and older ones) changes nothing. */
    assert_int_equal(
        apply_at(f, 6, MOM__COMMAND_OP__CMD_PUBLISH, "r", "alice", "1"), 0);
    assert_int_equal(
        apply_at(f, 3, MOM__COMMAND_OP__CMD_PUBLISH, "r", "alice", "1"), 0);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "r", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 2);
    assert_int_equal(mom_store_applied_index(f->st, 0, &applied), MOM_STORE_OK);
    assert_int_equal(applied, 6);
    /* Other logs (groups) have their own index. */
    assert_int_equal(mom_store_applied_index(f->st, 7, &applied), MOM_STORE_OK);
    assert_int_equal(applied, 0);

    /* Errors advance the index too: they are deterministic results. */
    assert_int_equal(
        apply_at(f, 7, MOM__COMMAND_OP__CMD_PUBLISH, "nope", "alice", "1"),
        404);
    mom_store_applied_index(f->st, 0, &applied);
    assert_int_equal(applied, 7);
}

/* The same command (idempotency key) committed twice applies once. */
static void
test_duplicate_command(void **state)
{
    fixture_t *f = *state;
    Mom__Command cmd = MOM__COMMAND__INIT;
    char first[256];
    uint64_t next;

    apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "dq", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_SEND, "dq", "alice", "\"one\"");
    apply(f, MOM__COMMAND_OP__CMD_SEND, "dq", "alice", "\"two\"");

    cmd.op = MOM__COMMAND_OP__CMD_RECEIVE;
    cmd.name = "dq";
    cmd.user = "bob";
    cmd.producer = 7ULL << 32 | 1;
    cmd.sequence = 1000;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
        assert_int_equal(mom_sm_apply(f->st, 0, ++f->index, &cmd, &f->res), 0);
        assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
        assert_int_equal(f->res.status, 200);
        mom_buf_append(&f->res.body, "", 1);
        if (i == 0) {
            strcpy(first, f->res.body.data);
            assert_non_null(strstr(first, "\"one\""));
        } else {
            assert_string_equal(f->res.body.data, first);
        }
    }
    /* Only one message was taken. */
    apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "dq", "bob", NULL);
    assert_non_null(strstr(BODY(f), "\"two\""));

    /* A duplicate publish does not publish again (and is not fanned out). */
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "dt", "alice", NULL);
    cmd.op = MOM__COMMAND_OP__CMD_PUBLISH;
    cmd.name = "dt";
    cmd.content.data = (uint8_t *)"1";
    cmd.content.len = 1;
    cmd.sequence = 1001;
    for (int i = 0; i < 2; i++) {
        mom_store_begin(f->st);
        assert_int_equal(mom_sm_apply(f->st, 0, ++f->index, &cmd, &f->res), 0);
        mom_store_commit(f->st);
        assert_int_equal(f->res.status, 200);
        assert_true(f->res.has_message == (i == 0));
    }
    mom_store_coll_get(f->st, MOM_TOPIC, "dt", NULL, &next);
    assert_int_equal(next, 2);

    /* Pruned to the producer's newest: only the older key is forgotten. */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 0, UINT64_MAX),
                     MOM_STORE_OK);
    mom_store_begin(f->st);
    mom_sm_apply(f->st, 0, ++f->index, &cmd, &f->res);
    mom_store_commit(f->st);
    assert_false(f->res.has_message);
    cmd.sequence = 1000;
    mom_store_begin(f->st);
    mom_sm_apply(f->st, 0, ++f->index, &cmd, &f->res);
    mom_store_commit(f->st);
    assert_true(f->res.has_message);
    assert_int_equal(f->res.message.seq, 2);
}

static unsigned
dedup_status(fixture_t *f, uint32_t group, uint64_t producer, uint64_t seq)
{
    unsigned status = 0;
    mom_buf_t body;
    int rc;

    mom_buf_init(&body);
    rc = mom_store_dedup_get(f->st, group, producer, seq, &status, &body);
    mom_buf_free(&body);
    assert_int_not_equal(rc, MOM_STORE_ERROR);
    return rc == MOM_STORE_OK ? status : 0;
}

/* Results are kept per group, a window behind each producer's newest, and
 * producers far behind the group's newest are forgotten. */
static void
test_dedup_prune(void **state)
{
    fixture_t *f = *state;
    const uint64_t p1 = 1ULL << 32 | 1, p2 = 2ULL << 32 | 1;

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    for (uint64_t seq = 100; seq <= 200; seq += 10) {
        mom_store_dedup_put(f->st, 0, p1, seq, 200, "{}", 2);
        mom_store_dedup_put(f->st, 1, p1, seq, 201, "{}", 2);
    }
    mom_store_dedup_put(f->st, 0, p2, 5, 202, "{}", 2);
    mom_store_dedup_put(f->st, 0, p2, 60, 202, "{}", 2);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 1, p1, 100), 201);
    assert_int_equal(dedup_status(f, 0, p1, 100), 200);
    assert_int_equal(dedup_status(f, 2, p1, 100), 0);

    /* Window 50: p1 keeps 150..200, p2 keeps 60 (its newest is 60). */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 1000), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 0, p1, 140), 0);
    assert_int_equal(dedup_status(f, 0, p1, 150), 200);
    assert_int_equal(dedup_status(f, 0, p1, 200), 200);
    assert_int_equal(dedup_status(f, 0, p2, 5), 0);
    assert_int_equal(dedup_status(f, 0, p2, 60), 202);
    /* Another group is untouched. */
    assert_int_equal(dedup_status(f, 1, p1, 100), 201);

    /* Stale 100: p2 (newest 60 < 200 - 100) goes entirely. */
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 100), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 0, p2, 60), 0);
    assert_int_equal(dedup_status(f, 0, p1, 150), 200);
    /* Nothing to prune in an empty group. */
    assert_int_equal(mom_store_dedup_prune(f->st, 9, 0, 0), MOM_STORE_OK);
}

/* Applied indexes are written once per transaction, atomically with it. */
static void
test_applied_index_batch(void **state)
{
    fixture_t *f = *state;
    uint64_t applied;

    /* Outside a transaction: written at once. */
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 10), MOM_STORE_OK);
    /* Inside one: noted, readable, written by the flush before COMMIT. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 11), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 12), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 200, 5), MOM_STORE_OK);
    mom_store_applied_index(f->st, 3, &applied);
    assert_int_equal(applied, 12);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);

    /* A rolled back transaction takes its indexes with it. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 13), MOM_STORE_OK);
    assert_int_equal(mom_store_flush(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 14), MOM_STORE_OK);
    mom_store_rollback(f->st);
    mom_store_applied_index(f->st, 3, &applied);
    assert_int_equal(applied, 12);

    /* A COMMIT without the flush is refused: nothing of it is kept. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_set_applied_index(f->st, 3, 15), MOM_STORE_OK);
    assert_int_equal(mom_store_user_insert(f->st, "carol", "h"), MOM_STORE_OK);
    assert_int_not_equal(
        sqlite3_exec(mom_store_db(f->st), "COMMIT", NULL, NULL, NULL),
        SQLITE_OK);
    mom_store_rollback(f->st);
    assert_int_equal(mom_store_user_hash(f->st, "carol", NULL),
                     MOM_STORE_NOT_FOUND);
    mom_store_applied_index(f->st, 3, &applied);
    assert_int_equal(applied, 12);

    /* What committed is what a reopened store reads. */
    reopen(f);
    mom_store_applied_index(f->st, 3, &applied);
    assert_int_equal(applied, 12);
    mom_store_applied_index(f->st, 200, &applied);
    assert_int_equal(applied, 5);
}

/* Applies a command inside the caller's transaction. */
static unsigned
apply_in(fixture_t *f, Mom__CommandOp op, const char *name, const char *user,
         uint64_t producer, uint64_t sequence)
{
    Mom__Command cmd = MOM__COMMAND__INIT;

    cmd.op = op;
    cmd.name = (char *)name;
    cmd.user = (char *)user;
    cmd.content.data = (uint8_t *)"1";
    cmd.content.len = 1;
    cmd.producer = producer;
    cmd.sequence = sequence;
    assert_int_equal(mom_sm_apply(f->st, 0, ++f->index, &cmd, &f->res), 0);
    return f->res.status;
}

/* Many appends in one transaction: numbers counted in memory, written by
 * the flush; a delete and re-create in the same transaction starts over. */
static void
test_batch_counters(void **state)
{
    fixture_t *f = *state;
    const Mom__CommandOp pub = MOM__COMMAND_OP__CMD_PUBLISH;
    char name[16];
    uint64_t next;

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        apply_in(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, name, "alice", 0, 0);
    }
    /* More collections than the store counts at once. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++) {
            snprintf(name, sizeof(name), "t%d", i);
            assert_int_equal(apply_in(f, pub, name, "alice", 0, 0), 200);
            assert_int_equal(f->res.message.seq, (uint64_t)round + 1);
        }
    }
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "t7", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);
    assert_int_equal(
        apply_in(f, MOM__COMMAND_OP__CMD_DELETE_TOPIC, "t7", "alice", 0, 0),
        200);
    assert_int_equal(apply_in(f, pub, "t7", "alice", 0, 0), 404);
    apply_in(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "t7", "alice", 0, 0);
    assert_int_equal(apply_in(f, pub, "t7", "alice", 0, 0), 200);
    assert_int_equal(f->res.message.seq, 1);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);

    /* Committed: a reopened store continues from there. */
    reopen(f);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "t3", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);
    mom_store_coll_get(f->st, MOM_TOPIC, "t7", NULL, &next);
    assert_int_equal(next, 2);

    /* Rolled back: the counts go with it. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(apply_in(f, pub, "t3", "alice", 0, 0), 200);
    assert_int_equal(f->res.message.seq, 4);
    mom_store_rollback(f->st);
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(apply_in(f, pub, "t3", "alice", 0, 0), 200);
    assert_int_equal(f->res.message.seq, 4);
    /* Not flushed: COMMIT refused, nothing kept. */
    assert_int_not_equal(
        sqlite3_exec(mom_store_db(f->st), "COMMIT", NULL, NULL, NULL),
        SQLITE_OK);
    mom_store_rollback(f->st);
    mom_store_coll_get(f->st, MOM_TOPIC, "t3", NULL, &next);
    assert_int_equal(next, 4);
    /* Outside a transaction an append writes its number at once. */
    assert_int_equal(mom_store_coll_append(f->st, MOM_TOPIC, "t3", "alice", "2",
                                           1, 5, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);
    mom_store_coll_get(f->st, MOM_TOPIC, "t3", NULL, &next);
    assert_int_equal(next, 5);
}

/* Keys arriving out of order and after a restart are still recognized. */
static void
test_dedup_order(void **state)
{
    fixture_t *f = *state;
    const Mom__CommandOp send = MOM__COMMAND_OP__CMD_SEND;
    const uint64_t p = 9ULL << 32 | 1;

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    apply_in(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "oq", "alice", 0, 0);
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 2000), 200);
    assert_true(f->res.has_message);
    /* An older key never seen is applied; seen ones are not. */
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 1500), 200);
    assert_true(f->res.has_message);
    assert_int_equal(f->res.message.seq, 2);
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 1500), 200);
    assert_false(f->res.has_message);
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 2000), 200);
    assert_false(f->res.has_message);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);

    reopen(f);
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 1500), 200);
    assert_false(f->res.has_message);
    assert_int_equal(apply_in(f, send, "oq", "alice", p, 1999), 200);
    assert_true(f->res.has_message);
    assert_int_equal(f->res.message.seq, 3);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);

    /* Results inserted directly (a snapshot restore) after a producer was
     * looked up and found without any are found. */
    assert_int_equal(dedup_status(f, 4, p + 2, 7000), 0);
    assert_int_equal(mom_store_dedup_put(f->st, 4, p + 2, 7000, 203, "{}", 2),
                     MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 4, p + 2, 7000), 203);
}

static void
test_rollback(void **state)
{
    fixture_t *f = *state;
    Mom__Command cmd = MOM__COMMAND__INIT;
    uint64_t applied;

    cmd.op = MOM__COMMAND_OP__CMD_CREATE_TOPIC;
    cmd.name = "rb";
    cmd.user = "alice";
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_sm_apply(f->st, 0, 1, &cmd, &f->res), 0);
    mom_store_rollback(f->st);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "rb", NULL, NULL),
                     MOM_STORE_NOT_FOUND);
    mom_store_applied_index(f->st, 0, &applied);
    assert_int_equal(applied, 0);
}

static int
count_names(void *data, const char *name, size_t len)
{
    char *out = data;

    strncat(out, name, len);
    strcat(out, ",");
    return 0;
}

static void
test_reopen_and_list(void **state)
{
    fixture_t *f = *state;
    char names[256] = "";
    collected_t c = {0};
    uint64_t applied;

    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "zeta", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "Alpha", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "beta", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "beta", "alice", "[]");
    apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "q1", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q1", "alice", "null");

    reopen(f);

    assert_int_equal(mom_store_list(f->st, MOM_LIST_TOPICS, count_names, names),
                     MOM_STORE_OK);
    assert_string_equal(names, "Alpha,beta,zeta,");
    names[0] = '\0';
    mom_store_list(f->st, MOM_LIST_QUEUES, count_names, names);
    assert_string_equal(names, "q1,");
    names[0] = '\0';
    mom_store_list(f->st, MOM_LIST_USERS, count_names, names);
    assert_string_equal(names, "");
    mom_store_coll_scan(f->st, MOM_TOPIC, "beta", 0, 10, collect, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.contents[0], "[]");
    mom_store_applied_index(f->st, 0, &applied);
    assert_int_equal(applied, f->index);
    assert_int_equal(apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q1", "bob", NULL),
                     200);
    assert_non_null(strstr(BODY(f), "\"content\":null"));
}

static int main_has_table(fixture_t *f, const char *name);

/* A database of an earlier version: rowid message tables and results keyed
 * by producer plus an index by group. It keeps working; the results are
 * moved once. */
static void
test_old_database(void **state)
{
    fixture_t *f = *state;
    char *hash = NULL;
    collected_t c = {0};
    uint64_t applied;

    reopen_as(f, STORE_OLD_TOPICS_SQL
              "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
              "CREATE TABLE applied_commands (grp INTEGER NOT NULL,"
              "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
              "  status INTEGER NOT NULL, body BLOB NOT NULL,"
              "  PRIMARY KEY (producer, sequence)) WITHOUT ROWID;"
              "CREATE INDEX applied_commands_by_group"
              "  ON applied_commands(grp, sequence);"
              "INSERT INTO topics VALUES ('old', 'alice', 2);"
              "INSERT INTO topic_messages VALUES ('old', 1, 'alice', '1', 5);"
              "INSERT INTO meta VALUES ('applied_index.0', 40);"
              "INSERT INTO applied_commands VALUES (0, 77, 1000, 201, '{}');");
    mom_store_applied_index(f->st, 0, &applied);
    assert_int_equal(applied, 40);
    assert_int_equal(dedup_status(f, 0, 77, 1000), 201);
    f->index = 40;
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "old", "alice", "2"), 200);
    assert_int_equal(f->res.message.seq, 2);
    mom_store_coll_scan(f->st, MOM_TOPIC, "old", 0, 10, collect, &c);
    assert_int_equal(c.n, 2);
    assert_int_equal(main_has_table(f, "applied_commands"), 0);
    assert_results_shape(f->st);
    /* The old results table is gone: the store reopens as a new one. */
    reopen(f);
    assert_results_shape(f->st);
    assert_int_equal(dedup_status(f, 0, 77, 1000), 201);
    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_REGISTER, "carol", NULL, NULL), 200);
    assert_int_equal(mom_store_user_hash(f->st, "carol", &hash), MOM_STORE_OK);
    free(hash);
}

static void
test_name_validation(void **state)
{
    char longest[MOM_NAME_MAX + 2];

    assert_true(mom_name_valid("a"));
    assert_true(mom_name_valid("A.b_c-9"));
    assert_false(mom_name_valid(""));
    assert_false(mom_name_valid(NULL));
    assert_false(mom_name_valid("a b"));
    assert_false(mom_name_valid("a/b"));
    assert_false(mom_name_valid("\xc3\xa9"));
    memset(longest, 'x', sizeof(longest));
    longest[MOM_NAME_MAX] = '\0';
    assert_true(mom_name_valid(longest));
    longest[MOM_NAME_MAX] = 'x';
    longest[MOM_NAME_MAX + 1] = '\0';
    assert_false(mom_name_valid(longest));
}

/* Whether the database file (not the TEMP one) has table `name`. */
static int
main_has_table(fixture_t *f, const char *name)
{
    char sql[160];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM main.sqlite_master "
             "WHERE type = 'table' AND name = '%s'",
             name);
    return (int)query_int(f, sql);
}

/* Each (group, producer)'s newest sequence, the pruning's input, as
 * "grp:producer:newest," in key order: max(sequence) of the results' keys
 * (temp.applied_keys; applied_producers of earlier versions). */
static void
producers_dump(fixture_t *f, char *out, size_t size)
{
    sqlite3_stmt *s;
    size_t n = 0;

    out[0] = '\0';
    assert_int_equal(
        sqlite3_prepare_v2(mom_store_db(f->st),
                           "SELECT grp, producer, max(sequence) FROM "
                           "temp.applied_keys GROUP BY 1, 2 ORDER BY 1, 2",
                           -1, &s, NULL),
        SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW && n < size) {
        n += (size_t)snprintf(out + n, size - n, "%lld:%lld:%lld,",
                              (long long)sqlite3_column_int64(s, 0),
                              (long long)sqlite3_column_int64(s, 1),
                              (long long)sqlite3_column_int64(s, 2));
    }
    sqlite3_finalize(s);
}

/* The producers' newest (applied_producers of earlier versions, now read
 * from the results' keys) follow the results exactly: the newest per
 * (group, producer) after a transaction, nothing of a rolled back one, a
 * producer pruned of its last result goes, a cleared partition too. */
static void
test_producers_follow_results(void **state)
{
    fixture_t *f = *state;
    char dump[256];

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    for (uint64_t seq = 100; seq <= 300; seq += 100) {
        assert_int_equal(mom_store_dedup_put(f->st, 0, 7, seq, 200, "{}", 2),
                         MOM_STORE_OK);
        assert_int_equal(
            mom_store_dedup_put(f->st, 0, 8, seq + 1, 200, "{}", 2),
            MOM_STORE_OK);
        assert_int_equal(
            mom_store_dedup_put(f->st, 3, 7, seq + 2, 200, "{}", 2),
            MOM_STORE_OK);
    }
    /* An older one does not lower the newest. */
    assert_int_equal(mom_store_dedup_put(f->st, 0, 7, 50, 200, "{}", 2),
                     MOM_STORE_OK);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:7:300,0:8:301,3:7:302,");

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_dedup_put(f->st, 0, 9, 999, 200, "{}", 2),
                     MOM_STORE_OK);
    mom_store_rollback(f->st);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:7:300,0:8:301,3:7:302,");
    assert_int_equal(dedup_status(f, 0, 9, 999), 0);

    /* Producer 7 is more than 250 behind the group's newest (1000): all
     * of it goes; 8 keeps its results within 150 of its newest. */
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_dedup_put(f->st, 0, 8, 1000, 200, "{}", 2),
                     MOM_STORE_OK);
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 150, 650), MOM_STORE_OK);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:8:1000,3:7:302,");
    assert_int_equal(dedup_status(f, 0, 7, 300), 0);
    assert_int_equal(dedup_status(f, 0, 8, 301), 0);
    assert_int_equal(dedup_status(f, 0, 8, 1000), 200);
    assert_int_equal(dedup_status(f, 3, 7, 102), 200);

    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_part_clear(f->st, 4, 3), MOM_STORE_OK);
    assert_int_equal(mom_store_commit(f->st), MOM_STORE_OK);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:8:1000,");

    /* Kept in memory, not in the file: the next open rebuilds the keys
     * from the results, and they still drive the pruning. */
    assert_int_equal(mom_store_dedup_put(f->st, 0, 9, 1100, 200, "{}", 2),
                     MOM_STORE_OK);
    reopen(f);
    assert_int_equal(main_has_table(f, "applied_producers"), 0);
    assert_int_equal(main_has_table(f, "applied_keys"), 0);
    assert_results_shape(f->st);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:8:1000,0:9:1100,");
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 1000), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 0, 8, 1000), 200);
    assert_int_equal(dedup_status(f, 0, 9, 1100), 200);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:8:1000,0:9:1100,");
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 50, 90), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 0, 8, 1000), 0);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:9:1100,");
}

/* A database whose results were keyed (grp, producer, sequence) is rekeyed
 * by sequence first, then rewritten as the rowid table with its key in
 * memory, once; its producers' newest are the same. */
static void
test_results_rekeyed(void **state)
{
    fixture_t *f = *state;
    char dump[256];

    reopen_as(f, "CREATE TABLE applied_results (grp INTEGER NOT NULL,"
                 "  producer INTEGER NOT NULL, sequence INTEGER NOT NULL,"
                 "  status INTEGER NOT NULL, body BLOB NOT NULL,"
                 "  PRIMARY KEY (grp, producer, sequence)) WITHOUT ROWID;"
                 "INSERT INTO applied_results VALUES (0, 77, 1000, 201, '{}');"
                 "INSERT INTO applied_results VALUES (0, 77, 1200, 202, '{}');"
                 "INSERT INTO applied_results VALUES (0, 78, 1100, 203, '{}');"
                 "INSERT INTO applied_results VALUES (5, 77, 900, 204, '{}');"
                 /* An earlier version's copy in the file, stale: dropped,
                  * rebuilt in memory from the results. */
                 "CREATE TABLE applied_producers (grp INTEGER NOT NULL,"
                 "  producer INTEGER NOT NULL, newest INTEGER NOT NULL,"
                 "  PRIMARY KEY (grp, producer)) WITHOUT ROWID;"
                 "INSERT INTO applied_producers VALUES (0, 77, 5);");
    assert_int_equal(dedup_status(f, 0, 77, 1000), 201);
    assert_int_equal(dedup_status(f, 0, 77, 1200), 202);
    assert_int_equal(dedup_status(f, 0, 78, 1100), 203);
    assert_int_equal(dedup_status(f, 5, 77, 900), 204);
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:77:1200,0:78:1100,5:77:900,");
    assert_int_equal(main_has_table(f, "applied_producers"), 0);
    /* A rowid table without a key now; reopening changes nothing. */
    for (int i = 0; i < 2; i++) {
        assert_results_shape(f->st);
        reopen(f);
    }
    producers_dump(f, dump, sizeof(dump));
    assert_string_equal(dump, "0:77:1200,0:78:1100,5:77:900,");
    assert_int_equal(mom_store_dedup_prune(f->st, 0, 100, 1000), MOM_STORE_OK);
    assert_int_equal(dedup_status(f, 0, 77, 1000), 0);
    assert_int_equal(dedup_status(f, 0, 77, 1200), 202);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producers_follow_results, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_results_rekeyed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queues_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_command, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dedup_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_applied_index_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_list, setup, teardown),
        cmocka_unit_test(test_name_validation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
