/*
 * Unit tests of partition snapshots (snapshot.c) on real SQLite files:
 * take every partition of a populated store, restore them into another
 * store holding other data, and compare; other partitions stay untouched;
 * malformed or foreign snapshots are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring.h"
#include "sm.h"
#include "snapshot.h"
#include "store.h"

#define PARTS 4

typedef struct {
    char dir[64];
    mom_store_t *st;
    uint64_t index[PARTS];
} node_t;

static void
node_open(node_t *n)
{
    char err[256];

    strcpy(n->dir, "/tmp/mom-test-snap-XXXXXX");
    assert_non_null(mkdtemp(n->dir));
    n->st = mom_store_open(n->dir, MOM_SYNC_NORMAL, err, sizeof(err));
    assert_non_null(n->st);
    memset(n->index, 0, sizeof(n->index));
}

static void
node_close(node_t *n)
{
    char cmd[128];

    mom_store_close(n->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", n->dir);
    assert_int_equal(system(cmd), 0);
}

/* Applies a command in the group of its name's partition. */
/* Idempotency keys are unique per producer: one producer per data set. */
static uint64_t producer = 42;

static void
apply(node_t *n, Mom__CommandOp op, const char *name, const char *user,
      const char *content, uint64_t sequence)
{
    Mom__Command cmd = MOM__COMMAND__INIT;
    uint32_t part = mom_partition_of(name, strlen(name), PARTS);
    mom_result_t res;

    cmd.op = op;
    cmd.name = (char *)name;
    cmd.user = (char *)user;
    cmd.password_hash = "pbkdf2_sha256$1$AAAA$BBBB";
    if (content != NULL) {
        cmd.content.data = (uint8_t *)content;
        cmd.content.len = strlen(content);
    }
    cmd.timestamp_ms = 1795703915123LL + (int64_t)sequence;
    cmd.producer = sequence ? producer : 0;
    cmd.sequence = sequence;
    mom_result_init(&res);
    assert_int_equal(mom_store_begin(n->st), MOM_STORE_OK);
    assert_int_equal(mom_sm_apply(n->st, part, ++n->index[part], &cmd, &res),
                     0);
    assert_int_equal(mom_store_commit(n->st), MOM_STORE_OK);
    mom_result_free(&res);
}

static void
populate(node_t *n, const char *prefix, int count)
{
    char name[64], content[64];

    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof(name), "%su%d", prefix, i);
        apply(n, MOM__COMMAND_OP__CMD_REGISTER, name, "", NULL, 0);
        snprintf(name, sizeof(name), "%st%d", prefix, i);
        apply(n, MOM__COMMAND_OP__CMD_CREATE_TOPIC, name, "alice", NULL, 0);
        for (int j = 0; j < i % 5; j++) {
            snprintf(content, sizeof(content), "{\"n\":%d}", j);
            apply(n, MOM__COMMAND_OP__CMD_PUBLISH, name, "bob", content,
                  1000 + i * 10 + j);
        }
        snprintf(name, sizeof(name), "%sq%d", prefix, i);
        apply(n, MOM__COMMAND_OP__CMD_CREATE_QUEUE, name, "alice", NULL, 0);
        for (int j = 0; j < i % 3; j++) {
            apply(n, MOM__COMMAND_OP__CMD_SEND, name, "carol", "[1,2]", 0);
        }
        if (i % 3 == 2) {
            apply(n, MOM__COMMAND_OP__CMD_RECEIVE, name, "dave", NULL,
                  5000 + i);
        }
    }
}

static void
take(node_t *n, uint32_t part, uint8_t **buf, size_t *len)
{
    assert_int_equal(mom_store_begin(n->st), MOM_STORE_OK);
    assert_int_equal(mom_snapshot_take(n->st, PARTS, part, buf, len), 0);
    assert_int_equal(mom_store_commit(n->st), MOM_STORE_OK);
}

static void
test_roundtrip(void **state)
{
    node_t a, b;
    uint8_t *snap[PARTS], *again, *other_before, *other_after;
    size_t len[PARTS], again_len, other_len, other_after_len;
    uint64_t applied;

    node_open(&a);
    node_open(&b);
    populate(&a, "", 40);
    producer = 43;
    populate(&b, "junk", 20);
    producer = 42;
    for (uint32_t p = 0; p < PARTS; p++) {
        take(&a, p, &snap[p], &len[p]);
        assert_true(len[p] > 100);
    }

    /* Restore partitions 0..2 into b; partition 3 keeps b's own data. */
    take(&b, 3, &other_before, &other_len);
    for (uint32_t p = 0; p < PARTS - 1; p++) {
        assert_int_equal(mom_store_begin(b.st), MOM_STORE_OK);
        assert_int_equal(
            mom_snapshot_restore(b.st, PARTS, p, snap[p], len[p], 1000 + p), 0);
        assert_int_equal(mom_store_commit(b.st), MOM_STORE_OK);
        mom_store_applied_index(b.st, p, &applied);
        assert_int_equal(applied, 1000 + p);
        take(&b, p, &again, &again_len);
        assert_int_equal(again_len, len[p]);
        assert_memory_equal(again, snap[p], len[p]);
        free(again);
    }
    take(&b, 3, &other_after, &other_after_len);
    assert_int_equal(other_after_len, other_len);
    assert_memory_equal(other_after, other_before, other_len);
    free(other_before);
    free(other_after);

    /* Idempotency results travel with the snapshot: a retried RECEIVE on
     * the restored node answers as the first time. */
    for (int i = 2; i < 40; i += 3) {
        char name[16];
        unsigned status = 0;
        uint32_t part;
        mom_buf_t body;

        snprintf(name, sizeof(name), "q%d", i);
        part = mom_partition_of(name, strlen(name), PARTS);
        if (part == 3) {
            continue;
        }
        mom_buf_init(&body);
        assert_int_equal(
            mom_store_dedup_get(b.st, part, 42, 5000 + i, &status, &body),
            MOM_STORE_OK);
        assert_int_equal(status, 200);
        mom_buf_free(&body);
    }
    for (uint32_t p = 0; p < PARTS; p++) {
        free(snap[p]);
    }
    node_close(&a);
    node_close(&b);
}

static void
test_refused(void **state)
{
    node_t a;
    uint8_t *snap, junk[64];
    size_t len;

    node_open(&a);
    populate(&a, "", 10);
    take(&a, 1, &snap, &len);

    /* Another partition number, another partition count, garbage. */
    mom_store_begin(a.st);
    assert_int_equal(mom_snapshot_restore(a.st, PARTS, 2, snap, len, 5), -1);
    assert_int_equal(mom_snapshot_restore(a.st, PARTS * 2, 1, snap, len, 5),
                     -1);
    memset(junk, 0xff, sizeof(junk));
    assert_int_equal(
        mom_snapshot_restore(a.st, PARTS, 1, junk, sizeof(junk), 5), -1);
    assert_int_equal(mom_snapshot_restore(a.st, PARTS, 1, snap, len / 2, 5),
                     -1);
    mom_store_rollback(a.st);

    /* An empty partition snapshot restores to empty. */
    free(snap);
    node_close(&a);
    node_open(&a);
    take(&a, 0, &snap, &len);
    populate(&a, "", 10);
    mom_store_begin(a.st);
    assert_int_equal(mom_snapshot_restore(a.st, PARTS, 0, snap, len, 9), 0);
    mom_store_commit(a.st);
    free(snap);
    take(&a, 0, &snap, &len);
    assert_true(len <= 4); /* partition and partitions only */
    free(snap);
    node_close(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
