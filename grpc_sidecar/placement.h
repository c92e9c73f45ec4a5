/*
 * The cluster's shape as momd.conf gives it: the members (just this node
 * when momd.conf lists none), the partition of a name, and each
 * partition's replica set from the consistent-hash ring (ring.h,
 * docs/placement.md). Fixed for the life of the process.
 */
#ifndef MOM_PLACEMENT_H
#define MOM_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

typedef struct mom_placement_s mom_placement_t;

/* NULL when out of memory (the conf was validated by its parser). */
mom_placement_t *mom_placement_new(const mom_conf_t *conf);
void mom_placement_free(mom_placement_t *pl);

uint32_t mom_placement_self(const mom_placement_t *pl);
uint32_t mom_placement_partitions(const mom_placement_t *pl);

/* The partition of a user, topic or queue name (its bare bytes). */
uint32_t mom_placement_partition(const mom_placement_t *pl, const char *name);

/* The replica set of partition p (ring order: [0] is the preferred
 * leader); *n gets its size, R = min(replicas, members). */
const uint32_t *mom_placement_replicas(const mom_placement_t *pl, uint32_t p,
                                       size_t *n);
bool mom_placement_is_replica(const mom_placement_t *pl, uint32_t p,
                              uint32_t node);

/* Members, in momd.conf order (self only when none are listed). */
size_t mom_placement_members(const mom_placement_t *pl);
uint32_t mom_placement_member_id(const mom_placement_t *pl, size_t i);
/* The gRPC address of a member, NULL if unknown or self-only cluster. */
const char *mom_placement_grpc_addr(const mom_placement_t *pl, uint32_t id);

#endif
