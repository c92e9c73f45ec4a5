/*
 * Partition placement (see ring.h and docs/placement.md): the stable name
 * hash and the consistent-hash ring with virtual nodes. Self-contained: the
 * placement must be reproducible by any implementation from the document,
 * so every detail here (hash, key strings, tie order) is part of the
 * cluster's on-the-wire contract and must never change.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ring.h"

#define FNV1A64_OFFSET 0xcbf29ce484222325ULL
#define FNV1A64_PRIME 0x00000100000001b3ULL

/* Longest key: "partition-4294967295" or "4294967295#4294967295". */
#define RING_KEY_MAX 32

typedef struct {
    uint64_t hash;
    uint32_t member;
    uint32_t vnode;
} mom_ring_point_t;

struct mom_ring_s {
    mom_ring_point_t *points; /* sorted by (hash, member, vnode) */
    size_t n_points;
    size_t n_members;
};

uint64_t
mom_hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = FNV1A64_OFFSET;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV1A64_PRIME;
    }
    /*
     * FNV-1a alone spreads short keys that differ in one trailing digit
     * ("1#0", "1#1", ...) poorly in the high bits, which is where the ring
     * order is decided; the fmix64 finalizer gives full avalanche.
     */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint32_t
mom_partition_of(const char *name, size_t len, uint32_t partitions)
{
    if (partitions == 0) {
        return 0;
    }
    return (uint32_t)(mom_hash64(name, len) % partitions);
}

static uint64_t
partition_point(uint32_t partition)
{
    char key[RING_KEY_MAX];
    int n = snprintf(key, sizeof(key), "partition-%u", partition);

    return mom_hash64(key, (size_t)n);
}

static uint64_t
vnode_point(uint32_t member, uint32_t vnode)
{
    char key[RING_KEY_MAX];
    int n = snprintf(key, sizeof(key), "%u#%u", member, vnode);

    return mom_hash64(key, (size_t)n);
}

static int
compare_points(const void *a, const void *b)
{
    const mom_ring_point_t *x = a, *y = b;

    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    if (x->member != y->member) {
        return x->member < y->member ? -1 : 1;
    }
    if (x->vnode != y->vnode) {
        return x->vnode < y->vnode ? -1 : 1;
    }
    return 0;
}

static int
compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* Sorts ids in place and returns the number of distinct ids kept in front. */
static size_t
sort_unique(uint32_t *ids, size_t n)
{
    size_t i, kept = 0;

    qsort(ids, n, sizeof(*ids), compare_u32);
    for (i = 0; i < n; i++) {
        if (kept == 0 || ids[kept - 1] != ids[i]) {
            ids[kept++] = ids[i];
        }
    }
    return kept;
}

mom_ring_t *
mom_ring_build(const uint32_t *members, size_t n_members, uint32_t vnodes)
{
    mom_ring_t *ring;
    uint32_t *ids = NULL;
    size_t i, n_ids = 0, k = 0;
    uint32_t v;

    if (vnodes == 0) {
        vnodes = MOM_RING_DEFAULT_VNODES;
    }
    if (vnodes > MOM_RING_MAX_VNODES || n_members > MOM_RING_MAX_MEMBERS ||
        (n_members > 0 && members == NULL)) {
        return NULL;
    }
    ring = calloc(1, sizeof(*ring));
    if (ring == NULL) {
        return NULL;
    }
    if (n_members == 0) {
        return ring;
    }
    ids = malloc(n_members * sizeof(*ids));
    if (ids == NULL) {
        goto fail;
    }
    for (i = 0; i < n_members; i++) {
        ids[i] = members[i];
    }
    n_ids = sort_unique(ids, n_members);

    ring->points = malloc(n_ids * vnodes * sizeof(*ring->points));
    if (ring->points == NULL) {
        goto fail;
    }
    for (i = 0; i < n_ids; i++) {
        for (v = 0; v < vnodes; v++) {
            ring->points[k].hash = vnode_point(ids[i], v);
            ring->points[k].member = ids[i];
            ring->points[k].vnode = v;
            k++;
        }
    }
    qsort(ring->points, k, sizeof(*ring->points), compare_points);
    ring->n_points = k;
    ring->n_members = n_ids;
    free(ids);
    return ring;

fail:
    free(ids);
    mom_ring_free(ring);
    return NULL;
}

void
mom_ring_free(mom_ring_t *ring)
{
    if (ring == NULL) {
        return;
    }
    free(ring->points);
    free(ring);
}

size_t
mom_ring_member_count(const mom_ring_t *ring)
{
    return ring == NULL ? 0 : ring->n_members;
}

/* Index of the first point whose hash is >= h, wrapping past the end to 0. */
static size_t
first_point_at_or_after(const mom_ring_t *ring, uint64_t h)
{
    size_t lo = 0, hi = ring->n_points;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ring->points[mid].hash < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo == ring->n_points ? 0 : lo;
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

size_t
mom_ring_replicas(const mom_ring_t *ring, uint32_t partition, size_t r,
                  uint32_t *out)
{
    size_t want, found = 0, at, steps;

    if (ring == NULL || ring->n_points == 0 || out == NULL) {
        return 0;
    }
    want = r < ring->n_members ? r : ring->n_members;
    at = first_point_at_or_after(ring, partition_point(partition));
    /* Every member owns a point, so one lap always finds `want` members. */
    for (steps = 0; found < want && steps < ring->n_points; steps++) {
        uint32_t m = ring->points[at].member;

        if (!contains(out, found, m)) {
            out[found++] = m;
        }
        at = at + 1 == ring->n_points ? 0 : at + 1;
    }
    return found;
}
