/*
 * Raft snapshots of the state machine, one partition at a time: everything
 * whose name maps to the partition (users, topics, queues, their messages)
 * and the idempotency results of the partition's group, as one
 * mom.Snapshot protobuf (proto/command.proto). The group of a partition is
 * the partition number.
 */
#ifndef MOM_SNAPSHOT_H
#define MOM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * Serializes the partition into a malloc()ed buffer. Run it inside a
 * transaction (a consistent view). Returns 0 or -1.
 */
int mom_snapshot_take(mom_store_t *st, uint32_t partitions, uint32_t partition,
                      uint8_t **buf, size_t *len);

/*
 * Replaces the partition's state with the snapshot and records
 * applied_index.<partition> = index, inside the caller's transaction.
 * Returns -1 (roll back) on a malformed snapshot or a storage error.
 */
int mom_snapshot_restore(mom_store_t *st, uint32_t partitions,
                         uint32_t partition, const uint8_t *buf, size_t len,
                         uint64_t index);

#endif
