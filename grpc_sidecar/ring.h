/*
 * Partition placement: the stable name -> partition hash and the
 * consistent-hash ring (virtual nodes) that maps a partition to its replica
 * members. Pure functions of their inputs: no I/O, no global state.
 * The algorithm is specified in docs/placement.md; keep the two in sync.
 */
#ifndef MOM_RING_H
#define MOM_RING_H

#include <stddef.h>
#include <stdint.h>

#define MOM_RING_DEFAULT_VNODES 128
/* Limits that keep a ring's size (members * vnodes points) sane. */
#define MOM_RING_MAX_VNODES 4096
#define MOM_RING_MAX_MEMBERS 65536

typedef struct mom_ring_s mom_ring_t;

/* FNV-1a 64 of the bytes, then the MurmurHash3 fmix64 finalizer. */
uint64_t mom_hash64(const void *data, size_t len);

/* mom_hash64(name) mod partitions; 0 when partitions is 0. */
uint32_t mom_partition_of(const char *name, size_t len, uint32_t partitions);

/*
 * Builds the ring of a member set: duplicates are ignored and the order of
 * `members` does not matter. vnodes 0 means MOM_RING_DEFAULT_VNODES.
 * Returns NULL when out of memory or over MOM_RING_MAX_MEMBERS /
 * MOM_RING_MAX_VNODES. An empty member set gives a valid, empty ring.
 */
mom_ring_t *mom_ring_build(const uint32_t *members, size_t n_members,
                           uint32_t vnodes);
void mom_ring_free(mom_ring_t *ring);

/* Distinct members of the ring. */
size_t mom_ring_member_count(const mom_ring_t *ring);

/*
 * Writes the first min(r, members) distinct members clockwise from the
 * partition's point into out (which holds at least r entries) and returns
 * how many it wrote. out[0] is the partition's preferred leader.
 */
size_t mom_ring_replicas(const mom_ring_t *ring, uint32_t partition, size_t r,
                         uint32_t *out);

#endif /* MOM_RING_H */
