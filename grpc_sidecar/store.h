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
/* Writes what was deferred (mom_store_flush), commits. */
int mom_store_commit(mom_store_t *st);
void mom_store_rollback(mom_store_t *st);

/*
 * Highest log index applied for a log (group); 0 when none. Cached in
 * memory: every change must go through set_applied_index. Inside a
 * transaction, set_applied_index only notes the index (and appends only
 * count their collection's next number in memory): the caller must call
 * mom_store_flush() after its last apply and before COMMIT (once per
 * transaction; mom_store_commit does it). A COMMIT that would leave
 * something unwritten is refused (rolled back). Outside a transaction they
 * write at once.
 */
int mom_store_applied_index(mom_store_t *st, uint32_t group, uint64_t *index);
int mom_store_set_applied_index(mom_store_t *st, uint32_t group,
                                uint64_t index);
int mom_store_flush(mom_store_t *st);

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
 * Results of applied commands by group and idempotency key (producer,
 * sequence), so that a command committed twice (a retry after a leader
 * change) has its effect once and answers the same both times. dedup_get
 * appends the stored body to body.
 */
int mom_store_dedup_get(mom_store_t *st, uint32_t group, uint64_t producer,
                        uint64_t sequence, unsigned *status, mom_buf_t *body);
int mom_store_dedup_put(mom_store_t *st, uint32_t group, uint64_t producer,
                        uint64_t sequence, unsigned status, const void *body,
                        size_t len);
/*
 * Forgets the group's results more than `window` below the newest sequence
 * of their producer, and those more than `stale` below the newest of the
 * group (producers gone). Depends on the group's results only.
 */
int mom_store_dedup_prune(mom_store_t *st, uint32_t group, uint64_t window,
                          uint64_t stale);

/*
 * Whole partitions, for Raft snapshots: everything whose name maps to
 * `partition` of `partitions` (mom_partition_of), and the results kept for
 * idempotency by the group (= partition) that applied them.
 */
typedef enum {
    MOM_PART_USERS = 0,      /* name, text = hash */
    MOM_PART_TOPICS,         /* name, text = owner, seq = next offset */
    MOM_PART_QUEUES,         /* name, text = owner, seq = next id */
    MOM_PART_TOPIC_MESSAGES, /* name = topic, seq, text = sender, blob, num */
    MOM_PART_QUEUE_MESSAGES, /* name = queue, seq, text = sender, blob, num */
    MOM_PART_RESULTS,        /* num = producer, seq = sequence, status, blob */
} mom_part_kind_t;

typedef struct {
    const char *name;
    size_t name_len;
    const char *text;
    size_t text_len;
    uint64_t seq;
    const void *blob;
    size_t blob_len;
    int64_t num;
    unsigned status;
} mom_store_row_t;

/* Rows valid during the callback only; a nonzero return aborts (-1). */
typedef int (*mom_store_row_cb)(void *data, const mom_store_row_t *row);

int mom_store_part_scan(mom_store_t *st, mom_part_kind_t kind,
                        uint32_t partitions, uint32_t partition,
                        mom_store_row_cb cb, void *data);
/* Deletes the partition's users, topics, queues, messages and results. */
int mom_store_part_clear(mom_store_t *st, uint32_t partitions,
                         uint32_t partition);
int mom_store_coll_restore(mom_store_t *st, mom_coll_t c, const char *name,
                           const char *owner, uint64_t next_seq);
int mom_store_msg_restore(mom_store_t *st, mom_coll_t c, const char *name,
                          const mom_store_msg_t *m);

#endif
