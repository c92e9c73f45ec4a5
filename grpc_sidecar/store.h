/*
 * momd's SQLite store: schema, pragmas, prepared statements (prepared once
 * at open and reused) and typed accessors. It knows tables, not rules: the
 * state machine (sm.c) decides what a command does with them.
 */
#ifndef MOM_STORE_H
#define MOM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "conf.h"
#include "json.h"

typedef struct mom_store_s mom_store_t;

enum {
    MOM_STORE_OK = 0,
    MOM_STORE_NOT_FOUND = 1,
    MOM_STORE_EXISTS = 2,
    MOM_STORE_ERROR = -1,
};

/* Topics and queues have the same shape: a named, owned sequence. */
typedef enum {
    MOM_TOPIC = 0,
    MOM_QUEUE = 1,
} mom_coll_t;

/* The name lists of LIST_USERS, LIST_TOPICS and LIST_QUEUES. */
typedef enum {
    MOM_LIST_USERS = 0,
    MOM_LIST_TOPICS,
    MOM_LIST_QUEUES,
} mom_list_t;

/* A stored message; the pointers are valid during a scan callback only. */
typedef struct {
    uint64_t seq; /* topic offset or queue message id */
    const char *sender;
    size_t sender_len;
    const void *content;
    size_t content_len;
    int64_t ts_ms;
} mom_store_msg_t;

/* Returns nonzero to stop the scan. */
typedef int (*mom_store_msg_cb)(void *data, const mom_store_msg_t *msg);

/*
 * Opens (creating if needed) <data_dir>/mom.db. On failure returns NULL
 * with a message in err.
 */
mom_store_t *mom_store_open(const char *data_dir, mom_sync_t sync, char *err,
                            size_t err_size);
void mom_store_close(mom_store_t *st);

/* The connection, for other components' tables in the same transactions. */
sqlite3 *mom_store_db(mom_store_t *st);

int mom_store_begin(mom_store_t *st);
int mom_store_commit(mom_store_t *st);
void mom_store_rollback(mom_store_t *st);

/* Highest log index applied for a log (group); 0 when none. */
int mom_store_applied_index(mom_store_t *st, uint32_t group, uint64_t *index);
int mom_store_set_applied_index(mom_store_t *st, uint32_t group,
                                uint64_t index);

/* Users. hash_out gets a malloc'd copy (free it). */
int mom_store_user_insert(mom_store_t *st, const char *name, const char *hash);
int mom_store_user_hash(mom_store_t *st, const char *name, char **hash_out);

/*
 * Topics/queues. coll_get: owner (malloc'd, may be NULL if not wanted) and
 * next sequence number of an existing collection.
 */
int mom_store_coll_create(mom_store_t *st, mom_coll_t c, const char *name,
                          const char *owner);
int mom_store_coll_get(mom_store_t *st, mom_coll_t c, const char *name,
                       char **owner_out, uint64_t *next_seq);
/* Deletes the collection and all its messages. */
int mom_store_coll_delete(mom_store_t *st, mom_coll_t c, const char *name);
/* Appends a message with the next sequence number, returned in seq_out. */
int mom_store_coll_append(mom_store_t *st, mom_coll_t c, const char *name,
                          const char *sender, const void *content,
                          size_t content_len, int64_t ts_ms, uint64_t *seq_out);
/* Calls cb for messages with seq > after, in order, at most limit. */
int mom_store_coll_scan(mom_store_t *st, mom_coll_t c, const char *name,
                        uint64_t after, uint32_t limit, mom_store_msg_cb cb,
                        void *data);
int mom_store_coll_remove(mom_store_t *st, mom_coll_t c, const char *name,
                          uint64_t seq);

/* Calls cb(data, name, len) for every name, sorted; cb returns nonzero to
 * stop. */
typedef int (*mom_store_name_cb)(void *data, const char *name, size_t len);
int mom_store_list(mom_store_t *st, mom_list_t which, mom_store_name_cb cb,
                   void *data);

/*
 * Results of applied commands by idempotency key (producer, sequence), so
 * that a command committed twice (a retry after a leader change) has its
 * effect once and answers the same both times. dedup_get appends the
 * stored body to body.
 */
int mom_store_dedup_get(mom_store_t *st, uint64_t producer, uint64_t sequence,
                        unsigned *status, mom_buf_t *body);
int mom_store_dedup_put(mom_store_t *st, uint64_t producer, uint64_t sequence,
                        unsigned status, const void *body, size_t len);
/* Forgets the results of sequence numbers below `below` (all producers). */
int mom_store_dedup_prune(mom_store_t *st, uint64_t below);

#endif
