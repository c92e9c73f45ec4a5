/*
 * Unit tests of placement.c: the cluster's shape from momd.conf (members,
 * self-only default, replica sets from the ring of docs/placement.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"
#include "placement.h"

static void
load(mom_conf_t *c, const char *text)
{
    char err[128];

    mom_conf_defaults(c);
    assert_int_equal(mom_conf_parse(c, text, err, sizeof(err)), 0);
}

/* No member line: a cluster of this node alone, every partition here. */
static void
test_single_node(void **state)
{
    mom_conf_t c;
    mom_placement_t *pl;
    const uint32_t *r;
    size_t n;

    load(&c, "node_id = 7\nsocket = /s\ndata_dir = /d\n");
    pl = mom_placement_new(&c);
    assert_non_null(pl);
    assert_int_equal(mom_placement_self(pl), 7);
    assert_int_equal(mom_placement_members(pl), 1);
    assert_int_equal(mom_placement_member_id(pl, 0), 7);
    assert_null(mom_placement_grpc_addr(pl, 7));
    for (uint32_t p = 0; p < 64; p++) {
        r = mom_placement_replicas(pl, p, &n);
        assert_int_equal(n, 1);
        assert_int_equal(r[0], 7);
        assert_true(mom_placement_is_replica(pl, p, 7));
    }
    r = mom_placement_replicas(pl, 64, &n);
    assert_null(r);
    assert_int_equal(n, 0);
    mom_placement_free(pl);
    mom_conf_free(&c);
}

/* The vectors of docs/placement.md, and names to partitions. */
static void
test_vectors(void **state)
{
    static const uint32_t three[8][3] = {
        {1, 3, 2}, {3, 2, 1}, {1, 2, 3}, {2, 3, 1},
        {3, 2, 1}, {1, 3, 2}, {2, 3, 1}, {2, 1, 3},
    };
    static const uint32_t five[8][3] = {
        {5, 1, 4}, {3, 4, 2}, {1, 2, 5}, {5, 4, 2},
        {3, 4, 2}, {4, 1, 3}, {2, 3, 4}, {5, 2, 1},
    };
    mom_conf_t c;
    mom_placement_t *pl;
    const uint32_t *r;
    size_t n;

    load(&c, "node_id = 2\nsocket = /s\ndata_dir = /d\n"
             "member = 1 h1:9000 h1:80\nmember = 2 h2:9000 h2:80\n"
             "member = 3 h3:9000 h3:80\n");
    pl = mom_placement_new(&c);
    assert_non_null(pl);
    assert_string_equal(mom_placement_grpc_addr(pl, 3), "h3:9000");
    assert_null(mom_placement_grpc_addr(pl, 4));
    for (uint32_t p = 0; p < 8; p++) {
        r = mom_placement_replicas(pl, p, &n);
        assert_int_equal(n, 3);
        assert_memory_equal(r, three[p], sizeof(three[p]));
    }
    assert_int_equal(mom_placement_partition(pl, "news"), 47);
    assert_int_equal(mom_placement_partition(pl, "alice"), 52);
    mom_placement_free(pl);
    mom_conf_free(&c);

    load(&c, "node_id = 1\nsocket = /s\ndata_dir = /d\npartitions = 256\n"
             "member = 1 a:1 a:2\nmember = 2 b:1 b:2\nmember = 3 c:1 c:2\n"
             "member = 4 d:1 d:2\nmember = 5 e:1 e:2\n");
    pl = mom_placement_new(&c);
    assert_non_null(pl);
    for (uint32_t p = 0; p < 8; p++) {
        r = mom_placement_replicas(pl, p, &n);
        assert_int_equal(n, 3);
        assert_memory_equal(r, five[p], sizeof(five[p]));
    }
    assert_int_equal(mom_placement_partition(pl, "alice"), 244);
    assert_false(mom_placement_is_replica(pl, 0, 2));
    assert_true(mom_placement_is_replica(pl, 0, 4));
    mom_placement_free(pl);
    mom_conf_free(&c);
}

/* R = min(replicas, members). */
static void
test_fewer_members_than_replicas(void **state)
{
    mom_conf_t c;
    mom_placement_t *pl;
    size_t n;

    load(&c, "node_id = 1\nsocket = /s\ndata_dir = /d\nreplicas = 5\n"
             "member = 1 a:1 a:2\nmember = 2 b:1 b:2\n");
    pl = mom_placement_new(&c);
    assert_non_null(pl);
    for (uint32_t p = 0; p < 64; p++) {
        mom_placement_replicas(pl, p, &n);
        assert_int_equal(n, 2);
        assert_true(mom_placement_is_replica(pl, p, 1));
        assert_true(mom_placement_is_replica(pl, p, 2));
    }
    mom_placement_free(pl);
    mom_conf_free(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_fewer_members_than_replicas),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
