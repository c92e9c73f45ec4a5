/*
 * momd.conf: the configuration file of one momd (docs/architecture.md,
 * "momd.conf"). `key = value` lines, `#` comments, unknown keys are errors.
 */
#ifndef MOM_CONF_H
#define MOM_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define MOM_CONF_MAX_MEMBERS 64

typedef struct {
    uint32_t id;
    char *grpc_addr; /* host:port of the peer gRPC service */
    char *rest_addr; /* host:port of that node's nginx */
} mom_member_t;

typedef enum {
    MOM_SYNC_FULL = 0,
    MOM_SYNC_NORMAL,
} mom_sync_t;

typedef struct {
    uint32_t node_id;
    char *socket_path;
    char *data_dir;
    mom_sync_t synchronous;
    uint32_t pbkdf2_iterations;
    uint32_t max_frame_size;
    uint32_t sse_buffer;
    uint32_t heartbeat_ms;
    mom_log_level_t log_level;
    mom_member_t members[MOM_CONF_MAX_MEMBERS];
    size_t n_members;
    uint32_t partitions;
    uint32_t replicas;
    uint32_t snapshot_threshold; /* Raft: applied entries between snapshots */
    uint32_t snapshot_trailing;  /* Raft: entries kept behind a snapshot */
    uint32_t snapshot_trailing_bytes; /* Raft: or more, within these bytes
                                         per node, shared by its groups */
} mom_conf_t;

/* Sets every key to its default (required keys stay NULL). */
void mom_conf_defaults(mom_conf_t *conf);

/*
 * Parses text (NUL-terminated) into conf, which must hold the defaults.
 * On error returns -1 and writes a message naming the line into err.
 */
int mom_conf_parse(mom_conf_t *conf, const char *text, char *err,
                   size_t err_size);

/* Reads and parses a file; same error convention as mom_conf_parse. */
int mom_conf_load(mom_conf_t *conf, const char *path, char *err,
                  size_t err_size);

void mom_conf_free(mom_conf_t *conf);

#endif
