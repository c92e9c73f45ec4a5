/*
 * Wire encoding of libraft's struct raft_message between momd peers: a
 * compact varint format, specified in docs/replication.md ("Message
 * encoding"). Encoding reads entry and snapshot data supplied by the caller;
 * decoding allocates with raft_malloc() exactly what raft_step() takes over.
 */
#ifndef MOM_RAFT_CODEC_H
#define MOM_RAFT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>

/* The raft_step() memory-ownership rules we follow are those of 0.22.x
 * (docs/replication.md); the fork's main branch changed them after 0.22.1. */
#if RAFT_VERSION_NUMBER / 100 != 22
#error "libraft 0.22.x required (Debian bookworm-backports libraft-dev)"
#endif

#define MOM_RAFT_WIRE_VERSION 1

/*
 * Serializes msg into a malloc()ed buffer. AppendEntries: msg's entries
 * array must hold n_entries entries with their data. InstallSnapshot: the
 * configuration is taken from snapshot_conf (raft_configuration_encode()
 * format, as stored) and msg->install_snapshot.conf is ignored.
 * Returns 0, or -1 when out of memory or the type is unknown.
 */
int mom_raft_encode(const struct raft_message *msg,
                    const struct raft_buffer *snapshot_conf, uint8_t **buf,
                    size_t *len);

/*
 * Parses a message; server_id and server_address are left to the caller.
 * AppendEntries: an entries array and one data batch (shared by all entries)
 * from raft_malloc(). InstallSnapshot: a decoded configuration and data from
 * raft_malloc(). Returns 0, or -1 for a malformed message (nothing allocated
 * is left behind).
 */
int mom_raft_decode(const uint8_t *buf, size_t len, struct raft_message *msg);

/* Frees what mom_raft_decode() allocated, for a message raft never saw. */
void mom_raft_message_release(struct raft_message *msg);

#endif /* MOM_RAFT_CODEC_H */
