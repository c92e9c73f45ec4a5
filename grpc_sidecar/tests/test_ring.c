/*
 * Unit tests of partition placement (ring.c): the test vectors of
 * docs/placement.md, an independent brute-force oracle of the ring walk,
 * replica-set invariants, the balance bounds and the movement properties
 * documented there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ring.h"

#define MAX_N 16
#define R_DEFAULT 3

/* --- helpers ------------------------------------------------------------ */

static mom_ring_t *
ring_of_first(uint32_t n)
{
    uint32_t ids[MAX_N];
    uint32_t i;
    mom_ring_t *ring;

    for (i = 0; i < n; i++) {
        ids[i] = i + 1;
    }
    ring = mom_ring_build(ids, n, 0);
    assert_non_null(ring);
    return ring;
}

static int
contains(const uint32_t *ids, size_t n, uint32_t id)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ids[i] == id) {
            return 1;
        }
    }
    return 0;
}

/* --- test vectors (the same numbers as docs/placement.md) --------------- */

static void
test_hash_vectors(void **state)
{
    static const struct {
        const char *key;
        uint64_t hash;
    } v[] = {
        {"", 0xefd01f60ba992926ULL},
        {"a", 0x82a2a958a9bece5bULL},
        {"news", 0x512538bfa8bf202fULL},
        {"1#0", 0x97c3e2a7dc9bb69cULL},
        {"partition-0", 0x1dff2b43573fced6ULL},
    };
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(mom_hash64(v[i].key, strlen(v[i].key)), v[i].hash);
    }
    assert_int_equal(mom_hash64(NULL, 0), 0xefd01f60ba992926ULL);
}

static void
test_partition_vectors(void **state)
{
    static const struct {
        const char *name;
        uint32_t p64, p256;
    } v[] = {
        {"", 38, 38},
        {"a", 27, 91},
        {"b", 16, 208},
        {"news", 47, 47},
        {"orders", 57, 185},
        {"alice", 52, 244},
        {"bob", 32, 224},
        {"queue-1", 51, 243},
        {"topic.events", 47, 175},
        {"sensors/temp", 19, 211},
        {"\xc3\xbcnic\xc3\xb8"
         "de",
         59, 59},
        {"orders ", 50, 50},
    };
    char big[128];
    size_t i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = strlen(v[i].name);

        assert_int_equal(mom_partition_of(v[i].name, len, 64), v[i].p64);
        assert_int_equal(mom_partition_of(v[i].name, len, 256), v[i].p256);
    }
    /* 128 bytes: "0123456789abcdef" eight times, no terminator needed. */
    for (i = 0; i < sizeof(big); i++) {
        big[i] = "0123456789abcdef"[i % 16];
    }
    assert_int_equal(mom_partition_of(big, sizeof(big), 64), 62);
    assert_int_equal(mom_partition_of(big, sizeof(big), 256), 190);
    /* The length, not a terminator, delimits the name. */
    assert_int_equal(mom_partition_of("news\0x", 4, 64), 47);
    assert_int_not_equal(mom_hash64("news\0x", 6), mom_hash64("news", 4));
}

static void
test_partition_edges(void **state)
{
    char name[32];
    uint32_t i, p;

    assert_int_equal(mom_partition_of("news", 4, 0), 0);
    assert_int_equal(mom_partition_of("news", 4, 1), 0);
    assert_int_equal(mom_partition_of(NULL, 0, 64), 38);
    for (i = 0; i < 1000; i++) {
        int n = snprintf(name, sizeof(name), "topic-%u", i);

        p = mom_partition_of(name, (size_t)n, 7);
        assert_true(p < 7);
        assert_int_equal(p, mom_partition_of(name, (size_t)n, 7));
    }
}

static void
test_replica_vectors(void **state)
{
    /* P=64 (placement does not depend on P), R=3, default 128 vnodes. */
    static const uint32_t want3[8][3] = {
        {1, 3, 2}, {3, 2, 1}, {1, 2, 3}, {2, 3, 1},
        {3, 2, 1}, {1, 3, 2}, {2, 3, 1}, {2, 1, 3},
    };
    static const uint32_t want5[8][3] = {
        {5, 1, 4}, {3, 4, 2}, {1, 2, 5}, {5, 4, 2},
        {3, 4, 2}, {4, 1, 3}, {2, 3, 4}, {5, 2, 1},
    };
    mom_ring_t *r3 = ring_of_first(3), *r5 = ring_of_first(5);
    uint32_t out[3];
    uint32_t p;

    for (p = 0; p < 8; p++) {
        assert_int_equal(mom_ring_replicas(r3, p, 3, out), 3);
        assert_memory_equal(out, want3[p], sizeof(out));
        assert_int_equal(mom_ring_replicas(r5, p, 3, out), 3);
        assert_memory_equal(out, want5[p], sizeof(out));
    }
    mom_ring_free(r3);
    mom_ring_free(r5);
}

/* --- an independent oracle: clockwise distance over all points ---------- */

typedef struct {
    uint64_t distance;
    uint64_t hash;
    uint32_t member;
    uint32_t vnode;
} oracle_point_t;

static int
compare_oracle(const void *a, const void *b)
{
    const oracle_point_t *x = a, *y = b;

    if (x->distance != y->distance) {
        return x->distance < y->distance ? -1 : 1;
    }
    if (x->member != y->member) {
        return x->member < y->member ? -1 : 1;
    }
    return x->vnode < y->vnode ? -1 : x->vnode > y->vnode;
}

/*
 * Sorts every point by its clockwise distance (mod 2^64) from the
 * partition's point and takes distinct members in that order: the same
 * definition as docs/placement.md without binary search or wrap handling.
 */
static size_t
oracle_replicas(const uint32_t *ids, size_t n, uint32_t vnodes,
                uint32_t partition, size_t r, uint32_t *out)
{
    oracle_point_t *pts = calloc(n * vnodes, sizeof(*pts));
    char key[64];
    uint64_t ph;
    size_t i, k = 0, found = 0;
    uint32_t v;
    int len;

    assert_non_null(pts);
    len = snprintf(key, sizeof(key), "partition-%u", partition);
    ph = mom_hash64(key, (size_t)len);
    for (i = 0; i < n; i++) {
        for (v = 0; v < vnodes; v++) {
            len = snprintf(key, sizeof(key), "%u#%u", ids[i], v);
            pts[k].hash = mom_hash64(key, (size_t)len);
            pts[k].distance = pts[k].hash - ph;
            pts[k].member = ids[i];
            pts[k].vnode = v;
            k++;
        }
    }
    qsort(pts, k, sizeof(*pts), compare_oracle);
    for (i = 0; i < k && found < r; i++) {
        if (!contains(out, found, pts[i].member)) {
            out[found++] = pts[i].member;
        }
    }
    free(pts);
    return found;
}

static void
test_matches_oracle(void **state)
{
    static const uint32_t ids[] = {7, 4000000000u, 12, 3, 99, 1000};
    static const uint32_t vnodes[] = {1, 2, 5, 128};
    size_t n = sizeof(ids) / sizeof(ids[0]);
    uint32_t got[8], want[8];
    size_t i, r;
    uint32_t p;

    for (i = 0; i < sizeof(vnodes) / sizeof(vnodes[0]); i++) {
        mom_ring_t *ring = mom_ring_build(ids, n, vnodes[i]);

        assert_non_null(ring);
        for (p = 0; p < 300; p++) {
            for (r = 1; r <= n; r++) {
                assert_int_equal(mom_ring_replicas(ring, p, r, got), r);
                assert_int_equal(oracle_replicas(ids, n, vnodes[i], p, r, want),
                                 r);
                assert_memory_equal(got, want, r * sizeof(got[0]));
            }
        }
        mom_ring_free(ring);
    }
}

/* --- invariants --------------------------------------------------------- */

static void
test_function_of_member_set(void **state)
{
    static const uint32_t a[] = {1, 2, 3};
    static const uint32_t b[] = {3, 1, 2, 2, 1, 3, 3};
    mom_ring_t *ra = mom_ring_build(a, 3, 0);
    mom_ring_t *rb = mom_ring_build(b, 7, MOM_RING_DEFAULT_VNODES);
    mom_ring_t *again = mom_ring_build(a, 3, 0);
    uint32_t x[3], y[3], z[3];
    uint32_t p;

    assert_non_null(ra);
    assert_non_null(rb);
    assert_non_null(again);
    assert_int_equal(mom_ring_member_count(rb), 3);
    for (p = 0; p < 1024; p++) {
        assert_int_equal(mom_ring_replicas(ra, p, 3, x), 3);
        assert_int_equal(mom_ring_replicas(rb, p, 3, y), 3);
        assert_int_equal(mom_ring_replicas(again, p, 3, z), 3);
        assert_memory_equal(x, y, sizeof(x));
        assert_memory_equal(x, z, sizeof(x));
    }
    mom_ring_free(ra);
    mom_ring_free(rb);
    mom_ring_free(again);
}

static void
test_distinct_and_clamp(void **state)
{
    uint32_t out[MAX_N + 4];
    uint32_t n, p;
    size_t r, i, got;

    for (n = 1; n <= 10; n++) {
        mom_ring_t *ring = ring_of_first(n);

        assert_int_equal(mom_ring_member_count(ring), n);
        for (p = 0; p < 64; p++) {
            for (r = 0; r <= n + 3; r++) {
                memset(out, 0, sizeof(out));
                got = mom_ring_replicas(ring, p, r, out);
                assert_int_equal(got, r < n ? r : n);
                for (i = 0; i < got; i++) {
                    assert_true(out[i] >= 1 && out[i] <= n);
                    assert_false(contains(out, i, out[i]));
                }
                /* Nothing is written past the clamped count. */
                for (; i < sizeof(out) / sizeof(out[0]); i++) {
                    assert_int_equal(out[i], 0);
                }
            }
        }
        mom_ring_free(ring);
    }
}

static void
test_empty_and_invalid(void **state)
{
    static const uint32_t ids[] = {1, 2, 3};
    mom_ring_t *ring = mom_ring_build(NULL, 0, 0);
    uint32_t out[3];

    assert_non_null(ring);
    assert_int_equal(mom_ring_member_count(ring), 0);
    assert_int_equal(mom_ring_replicas(ring, 0, 3, out), 0);
    mom_ring_free(ring);

    assert_int_equal(mom_ring_member_count(NULL), 0);
    assert_int_equal(mom_ring_replicas(NULL, 0, 3, out), 0);
    mom_ring_free(NULL);

    assert_null(mom_ring_build(NULL, 3, 0));
    assert_null(mom_ring_build(ids, 3, MOM_RING_MAX_VNODES + 1));
    assert_null(mom_ring_build(ids, MOM_RING_MAX_MEMBERS + 1, 1));

    ring = mom_ring_build(ids, 3, MOM_RING_MAX_VNODES);
    assert_non_null(ring);
    assert_int_equal(mom_ring_replicas(ring, 5, 3, NULL), 0);
    assert_int_equal(mom_ring_replicas(ring, UINT32_MAX, 3, out), 3);
    mom_ring_free(ring);
}

/* --- balance (bounds and measured values: docs/placement.md) ------------ */

typedef struct {
    uint32_t partitions;
    double primary_lo, primary_hi; /* x P/N */
    double total_lo, total_hi;     /* x P*R/N */
} balance_bound_t;

static void
check_balance(const balance_bound_t *b)
{
    double worst_plo = 1e9, worst_phi = 0, worst_tlo = 1e9, worst_thi = 0;
    uint32_t n, p, i;

    for (n = 3; n <= 10; n++) {
        mom_ring_t *ring = ring_of_first(n);
        unsigned primary[MAX_N + 1] = {0}, total[MAX_N + 1] = {0};
        unsigned pmin = UINT32_MAX, pmax = 0, tmin = UINT32_MAX, tmax = 0;
        double ideal = (double)b->partitions / n;
        double tideal = ideal * R_DEFAULT;
        uint32_t out[R_DEFAULT];
        size_t k, got;

        for (p = 0; p < b->partitions; p++) {
            got = mom_ring_replicas(ring, p, R_DEFAULT, out);
            assert_int_equal(got, R_DEFAULT);
            primary[out[0]]++;
            for (k = 0; k < got; k++) {
                total[out[k]]++;
            }
        }
        for (i = 1; i <= n; i++) {
            pmin = primary[i] < pmin ? primary[i] : pmin;
            pmax = primary[i] > pmax ? primary[i] : pmax;
            tmin = total[i] < tmin ? total[i] : tmin;
            tmax = total[i] > tmax ? total[i] : tmax;
        }
        print_message("P=%u N=%u primaries %u..%u (P/N %.1f) "
                      "replicas %u..%u (PR/N %.1f)\n",
                      b->partitions, n, pmin, pmax, ideal, tmin, tmax, tideal);
        assert_true(pmin >= b->primary_lo * ideal);
        assert_true(pmax <= b->primary_hi * ideal);
        assert_true(tmin >= b->total_lo * tideal);
        assert_true(tmax <= b->total_hi * tideal);
        worst_plo = pmin / ideal < worst_plo ? pmin / ideal : worst_plo;
        worst_phi = pmax / ideal > worst_phi ? pmax / ideal : worst_phi;
        worst_tlo = tmin / tideal < worst_tlo ? tmin / tideal : worst_tlo;
        worst_thi = tmax / tideal > worst_thi ? tmax / tideal : worst_thi;
        mom_ring_free(ring);
    }
    print_message("P=%u N=3..10: primaries %.2f..%.2f x P/N, "
                  "replicas %.2f..%.2f x PR/N\n",
                  b->partitions, worst_plo, worst_phi, worst_tlo, worst_thi);
}

static void
test_balance_64(void **state)
{
    const balance_bound_t b = {64, 0.10, 2.25, 0.50, 1.75};

    check_balance(&b);
}

static void
test_balance_256(void **state)
{
    const balance_bound_t b = {256, 0.50, 1.60, 0.65, 1.40};

    check_balance(&b);
}

/* --- movement ----------------------------------------------------------- */

/* out = in without id; returns the new length. */
static size_t
without(const uint32_t *in, size_t n, uint32_t id, uint32_t *out)
{
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        if (in[i] != id) {
            out[k++] = in[i];
        }
    }
    return k;
}

/*
 * Adding member N+1 to {1..N}: a primary moves only to the new member, at
 * most 2P/N of them move, and every replica list is the old list with the
 * new member inserted somewhere (dropping the old last one) or unchanged.
 */
static void
check_add(uint32_t partitions)
{
    uint32_t n, p;

    for (n = 3; n <= 10; n++) {
        mom_ring_t *before = ring_of_first(n), *after = ring_of_first(n + 1);
        uint32_t added = n + 1, moved = 0;
        uint32_t old[R_DEFAULT], now[R_DEFAULT], rest[R_DEFAULT];
        size_t nold, nnow, nrest;

        for (p = 0; p < partitions; p++) {
            nold = mom_ring_replicas(before, p, R_DEFAULT, old);
            nnow = mom_ring_replicas(after, p, R_DEFAULT, now);
            assert_int_equal(nold, nnow);
            if (now[0] != old[0]) {
                assert_int_equal(now[0], added);
                moved++;
            }
            nrest = without(now, nnow, added, rest);
            if (nrest == nnow) {
                assert_memory_equal(now, old, nnow * sizeof(now[0]));
            } else {
                assert_memory_equal(rest, old, nrest * sizeof(rest[0]));
            }
        }
        print_message("P=%u add member to N=%u: %u primaries moved "
                      "(P/(N+1) %.1f, bound 2P/N %.1f)\n",
                      partitions, n, moved, (double)partitions / (n + 1),
                      2.0 * partitions / n);
        assert_true(moved > 0);
        assert_true(moved <= 2.0 * partitions / n);
        mom_ring_free(before);
        mom_ring_free(after);
    }
}

/*
 * Removing any one member of {1..N}: partitions it did not replicate keep
 * their exact replica list; the others keep their remaining members in order
 * and gain one replacement at the end (while N-1 >= R). Exactly the removed
 * member's primaries move.
 */
static void
check_remove(uint32_t partitions)
{
    uint32_t n, gone, i, p;

    for (n = 2; n <= 10; n++) {
        mom_ring_t *before = ring_of_first(n);

        for (gone = 1; gone <= n; gone++) {
            uint32_t ids[MAX_N], k = 0, moved = 0, led = 0;
            uint32_t old[R_DEFAULT], now[R_DEFAULT], kept[R_DEFAULT];
            size_t nold, nnow, nkept;
            mom_ring_t *after;

            for (i = 1; i <= n; i++) {
                if (i != gone) {
                    ids[k++] = i;
                }
            }
            after = mom_ring_build(ids, k, 0);
            assert_non_null(after);
            for (p = 0; p < partitions; p++) {
                nold = mom_ring_replicas(before, p, R_DEFAULT, old);
                nnow = mom_ring_replicas(after, p, R_DEFAULT, now);
                led += old[0] == gone;
                moved += old[0] != now[0];
                if (!contains(old, nold, gone)) {
                    assert_int_equal(nnow, nold);
                    assert_memory_equal(now, old, nnow * sizeof(now[0]));
                    continue;
                }
                nkept = without(old, nold, gone, kept);
                assert_memory_equal(now, kept, nkept * sizeof(now[0]));
                if (k >= R_DEFAULT) {
                    assert_int_equal(nnow, nkept + 1);
                    assert_false(contains(old, nold, now[nkept]));
                } else {
                    assert_int_equal(nnow, nkept);
                }
            }
            assert_int_equal(moved, led);
            mom_ring_free(after);
        }
        mom_ring_free(before);
    }
}

static void
test_movement_add(void **state)
{
    check_add(64);
    check_add(256);
}

static void
test_movement_remove(void **state)
{
    check_remove(64);
    check_remove(256);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_partition_vectors),
        cmocka_unit_test(test_partition_edges),
        cmocka_unit_test(test_replica_vectors),
        cmocka_unit_test(test_matches_oracle),
        cmocka_unit_test(test_function_of_member_set),
        cmocka_unit_test(test_distinct_and_clamp),
        cmocka_unit_test(test_empty_and_invalid),
        cmocka_unit_test(test_balance_64),
        cmocka_unit_test(test_balance_256),
        cmocka_unit_test(test_movement_add),
        cmocka_unit_test(test_movement_remove),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
