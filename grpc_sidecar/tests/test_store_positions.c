/*
 * Unit tests of the message tables' keys (store.c): each message is the
 * row at its position, its collection's id above its sequence number.
 * Collections read and delete only their own range, new ids are found past
 * the largest or in a gap, and messages keyed by (name, sequence) by
 * earlier versions are moved to their positions once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

static int
scan_into(fixture_t *f, mom_coll_t kind, const char *name, uint64_t after,
          collected_t *c)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(
        mom_store_coll_scan(f->st, kind, name, after, 16, collect, c),
        MOM_STORE_OK);
    return c->n;
}

/* Messages are keyed by position (the collection's id above the sequence
 * number): each collection reads and deletes only its own rows, a topic
 * and a queue of the same name included. */
static void
test_positions(void **state)
{
    fixture_t *f = *state;
    collected_t c;

    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "a", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "b", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "a", "alice", NULL);
    for (int i = 0; i < 3; i++) {
        apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "a", "alice", "x");
        apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "b", "alice", "y");
        apply(f, MOM__COMMAND_OP__CMD_SEND, "a", "alice", "z");
    }
    assert_int_equal(scan_into(f, MOM_TOPIC, "b", 0, &c), 3);
    assert_int_equal(c.seqs[2], 3);
    assert_string_equal(c.contents[0], "y");
    assert_int_equal(scan_into(f, MOM_TOPIC, "a", 1, &c), 2);
    assert_int_equal(c.seqs[0], 2);
    assert_string_equal(c.contents[1], "x");
    assert_int_equal(scan_into(f, MOM_QUEUE, "a", 0, &c), 3);
    assert_string_equal(c.contents[2], "z");
    assert_int_equal(scan_into(f, MOM_TOPIC, "none", 0, &c), 0);
    assert_int_equal(scan_into(f, MOM_TOPIC, "b", UINT64_MAX, &c), 0);

    assert_int_equal(
        apply(f, MOM__COMMAND_OP__CMD_DELETE_TOPIC, "a", "alice", NULL), 200);
    assert_int_equal(query_int(f, "SELECT count(*) FROM topic_messages"), 3);
    assert_int_equal(query_int(f, "SELECT count(*) FROM queue_messages"), 3);
    /* A new topic takes an id past the largest (a's 1 stays free). */
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "c", "alice", NULL);
    assert_int_equal(query_int(f, "SELECT id FROM topics WHERE name = 'c'"), 3);
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "c", "alice", "w");
    assert_int_equal(f->res.message.seq, 1);
    assert_int_equal(scan_into(f, MOM_TOPIC, "c", 0, &c), 1);
    assert_int_equal(scan_into(f, MOM_TOPIC, "b", 0, &c), 3);

    assert_int_equal(mom_store_coll_remove(f->st, MOM_QUEUE, "a", 1ULL << 40),
                     MOM_STORE_NOT_FOUND);
    assert_int_equal(mom_store_coll_remove(f->st, MOM_QUEUE, "a", 1),
                     MOM_STORE_OK);
    assert_int_equal(mom_store_coll_remove(f->st, MOM_QUEUE, "a", 1),
                     MOM_STORE_NOT_FOUND);
    assert_int_equal(mom_store_coll_remove(f->st, MOM_QUEUE, "none", 1),
                     MOM_STORE_NOT_FOUND);
    assert_int_equal(scan_into(f, MOM_QUEUE, "a", 0, &c), 2);
    assert_int_equal(c.seqs[0], 2);
}

/* With the largest id taken, a new collection gets a free one. */
static void
test_positions_free_id(void **state)
{
    fixture_t *f = *state;
    collected_t c;

    assert_int_equal(sqlite3_exec(mom_store_db(f->st),
                                  "INSERT INTO topics(name, owner, "
                                  "next_offset, id) VALUES "
                                  "('last', 'alice', 1, 8388606)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "first", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "second", "alice", NULL);
    assert_int_equal(query_int(f, "SELECT id FROM topics WHERE name = 'first'"),
                     1);
    assert_int_equal(
        query_int(f, "SELECT id FROM topics WHERE name = 'second'"), 2);
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "last", "alice", "l");
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "first", "alice", "f");
    assert_int_equal(query_int(f, "SELECT max(pos) FROM topic_messages"),
                     (8388606LL << 40) | 1);
    assert_int_equal(scan_into(f, MOM_TOPIC, "last", 0, &c), 1);
    assert_string_equal(c.contents[0], "l");
    assert_int_equal(scan_into(f, MOM_TOPIC, "first", 0, &c), 1);
    assert_string_equal(c.contents[0], "f");
}

/* Messages keyed by (name, sequence), as earlier versions stored them, are
 * moved to their positions once: ids in name order, the rows of a
 * collection that no longer exists dropped. */
static void
test_positions_old_database(void **state)
{
    fixture_t *f = *state;
    collected_t c;

    reopen_as(f, STORE_OLD_TOPICS_SQL
              "CREATE TABLE queues (name TEXT PRIMARY KEY, owner TEXT NOT NULL,"
              "  next_id INTEGER NOT NULL) WITHOUT ROWID;"
              "CREATE TABLE queue_messages (queue TEXT NOT NULL,"
              "  id INTEGER NOT NULL, sender TEXT NOT NULL,"
              "  content BLOB NOT NULL, ts_ms INTEGER NOT NULL,"
              "  PRIMARY KEY (queue, id)) WITHOUT ROWID;"
              "INSERT INTO topics VALUES ('b', 'alice', 3), ('a', 'bob', 2);"
              "INSERT INTO topic_messages VALUES ('b', 1, 'alice', 'b1', 5),"
              "  ('b', 2, 'alice', 'b2', 6), ('a', 1, 'bob', 'a1', 7),"
              "  ('gone', 1, 'eve', 'orphan', 8);"
              "INSERT INTO queues VALUES ('q', 'alice', 3);"
              "INSERT INTO queue_messages VALUES ('q', 2, 'alice', 'q2', 9);");
    for (int reopened = 0; reopened < 2; reopened++) {
        assert_int_equal(query_int(f, "SELECT id FROM topics WHERE name = 'a'"),
                         1);
        assert_int_equal(query_int(f, "SELECT id FROM topics WHERE name = 'b'"),
                         2);
        assert_int_equal(query_int(f, "SELECT count(*) FROM topic_messages"),
                         3 + reopened);
        assert_int_equal(scan_into(f, MOM_TOPIC, "b", 0, &c), 2 + reopened);
        assert_int_equal(c.seqs[1], 2);
        assert_string_equal(c.contents[1], "b2");
        assert_int_equal(scan_into(f, MOM_TOPIC, "a", 0, &c), 1);
        assert_string_equal(c.contents[0], "a1");
        assert_int_equal(query_int(f, "SELECT count(*) FROM pragma_index_list("
                                      "'queue_messages') WHERE \"unique\" = 1"),
                         1);
        assert_int_equal(query_int(f, "SELECT count(*) FROM sqlite_master "
                                      "WHERE name IN ('topics_id', "
                                      "'queues_id')"),
                         2);
        if (reopened) {
            break;
        }
        assert_int_equal(
            apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "b", "alice", "b3"), 200);
        assert_int_equal(f->res.message.seq, 3);
        assert_int_equal(
            apply(f, MOM__COMMAND_OP__CMD_RECEIVE, "q", "bob", NULL), 200);
        assert_non_null(strstr(BODY(f), "\"id\":2,"));
        assert_int_equal(
            apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "bob", "\"q3\""), 200);
        assert_string_equal(BODY(f), "{\"message\":\"Message sent\",\"id\":3}");
        reopen(f);
    }
}

/* A sequence number past the position's 40 bits is refused, not wrapped
 * into the next collection's range. */
static void
test_positions_full(void **state)
{
    fixture_t *f = *state;
    uint64_t seq = 0;

    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "full", "alice", NULL);
    assert_int_equal(sqlite3_exec(mom_store_db(f->st),
                                  "UPDATE topics SET next_offset = 1 << 40 "
                                  "WHERE name = 'full'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(mom_store_begin(f->st), MOM_STORE_OK);
    assert_int_equal(mom_store_coll_append(f->st, MOM_TOPIC, "full", "alice",
                                           "x", 1, 5, &seq),
                     MOM_STORE_ERROR);
    mom_store_rollback(f->st);
    assert_int_equal(query_int(f, "SELECT count(*) FROM topic_messages"), 0);
}

static int
topic_row_next(void *data, const mom_store_row_t *row)
{
    uint64_t *next = data;

    if (row->name_len == 1 && row->name[0] == 'r') {
        *next = row->seq;
    }
    return 0;
}

/* A topic's next offset follows from its last message: appends do not
 * rewrite its row (a queue's, whose messages go, is written). */
static void
test_topic_next_follows_messages(void **state)
{
    fixture_t *f = *state;
    uint64_t next = 0;

    apply(f, MOM__COMMAND_OP__CMD_CREATE_TOPIC, "n", "alice", NULL);
    for (int i = 0; i < 3; i++) {
        apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "n", "alice", "x");
    }
    assert_int_equal(
        query_int(f, "SELECT next_offset FROM topics WHERE name = 'n'"), 1);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "n", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);
    reopen(f);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "n", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 4);
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "n", "alice", "y");
    assert_int_equal(f->res.message.seq, 4);

    /* Restored without messages: the row's counter holds. */
    assert_int_equal(mom_store_coll_restore(f->st, MOM_TOPIC, "r", "alice", 10),
                     MOM_STORE_OK);
    assert_int_equal(mom_store_coll_get(f->st, MOM_TOPIC, "r", NULL, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 10);
    apply(f, MOM__COMMAND_OP__CMD_PUBLISH, "r", "alice", "z");
    assert_int_equal(f->res.message.seq, 10);
    next = 0;
    assert_int_equal(mom_store_part_scan(f->st, MOM_PART_TOPICS, 1, 0,
                                         topic_row_next, &next),
                     MOM_STORE_OK);
    assert_int_equal(next, 11);

    apply(f, MOM__COMMAND_OP__CMD_CREATE_QUEUE, "q", "alice", NULL);
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "alice", "1");
    apply(f, MOM__COMMAND_OP__CMD_SEND, "q", "alice", "2");
    assert_int_equal(
        query_int(f, "SELECT next_id FROM queues WHERE name = 'q'"), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_positions_free_id, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_positions_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_positions_old_database, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_topic_next_follows_messages, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
