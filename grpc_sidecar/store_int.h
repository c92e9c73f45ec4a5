/*
 * Internals of the store shared by its files (store.c: schema, statements,
 * users, collections, partitions; store_deferred.c: what is written once
 * per transaction; store_results.c: idempotency results). Not for other
 * components: they use store.h.
 */
#ifndef MOM_STORE_INT_H
#define MOM_STORE_INT_H

#include <stdbool.h>

#include "store.h"

/* Longest collection name the store counts in memory (sm.c: 128). */
#define MOM_STORE_NAME_MAX 128

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_META_GET,
    S_META_SET,
    S_USER_INSERT,
    S_USER_HASH,
    S_LIST_USERS,
    S_DEDUP_GET,
    S_DEDUP_UNPUT,
    S_DEDUP_PUT,
    S_DEDUP_PUT_KEY,
    S_DEDUP_NEXT_PRODUCER,
    S_DEDUP_NEWEST,
    S_DEDUP_PRUNE,
    S_DEDUP_PRUNE_KEYS,
    S_PART_USERS,
    S_PART_DEL_USERS,
    S_PART_RESULTS,
    S_PART_DEL_RESULTS,
    S_PART_DEL_KEYS,
    /* per collection: base + MOM_TOPIC or MOM_QUEUE */
    S_COLL_CREATE,
    S_COLL_GET = S_COLL_CREATE + 2,
    S_COLL_ID = S_COLL_GET + 2,
    S_COLL_NEXT_ID = S_COLL_ID + 2,
    S_COLL_FREE_ID = S_COLL_NEXT_ID + 2,
    S_COLL_DELETE = S_COLL_FREE_ID + 2,
    S_COLL_DELETE_MSGS = S_COLL_DELETE + 2,
    S_COLL_INSERT_MSG = S_COLL_DELETE_MSGS + 2,
    S_COLL_SCAN = S_COLL_INSERT_MSG + 2,
    S_COLL_REMOVE_MSG = S_COLL_SCAN + 2,
    S_COLL_LIST = S_COLL_REMOVE_MSG + 2,
    S_COLL_RESTORE = S_COLL_LIST + 2,
    S_COLL_SET_NEXT = S_COLL_RESTORE + 2,
    S_PART_COLLS = S_COLL_SET_NEXT + 2,
    S_PART_MSGS = S_PART_COLLS + 2,
    S_PART_DEL_COLLS = S_PART_MSGS + 2,
    S_PART_DEL_MSGS = S_PART_DEL_COLLS + 2,
    S_COUNT = S_PART_DEL_MSGS + 2,
};

/* A collection's next sequence number, counted in memory during a
 * transaction (store_deferred.c). */
typedef struct {
    mom_coll_t c;
    bool used;
    uint64_t next;
    sqlite3_int64 id; /* the collection's key in its messages' positions */
    char name[MOM_STORE_NAME_MAX + 1];
} mom_store_counter_t;

#define MOM_STORE_COUNTERS 32

/* Newest idempotency sequence per (group, producer), an upper bound. */
typedef struct {
    uint32_t group;
    bool used;
    uint64_t producer;
    sqlite3_int64 newest;
} mom_store_newest_t;

struct mom_store_s {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    /* applied indexes (store_deferred.c) */
    uint64_t *applied;    /* per group */
    unsigned char *state; /* MOM_APPLIED_* per group */
    uint32_t *dirty;      /* groups in state DIRTY */
    uint32_t n_groups;    /* size of applied, state and dirty */
    uint32_t n_dirty;
    /* collection counters of the open transaction (store_deferred.c) */
    mom_store_counter_t counters[MOM_STORE_COUNTERS];
    unsigned n_counters;
    /* store_results.c */
    mom_store_newest_t *newest;
    uint32_t newest_cap; /* a power of two, or 0 */
    uint32_t newest_used;
};

/* Logs the connection's error about `what`; returns MOM_STORE_ERROR. */
int mom_store_fail(mom_store_t *st, const char *what);
/* Steps a statement that returns no rows and resets it. */
int mom_store_exec_stmt(mom_store_t *st, sqlite3_stmt *s);
/* Resets a statement and clears its bindings. */
void mom_store_finish(sqlite3_stmt *s);
/* Steps a query of one integer and finishes it: MOM_STORE_OK with *out,
 * NOT_FOUND without a row, or ERROR. */
int mom_store_get_int(mom_store_t *st, sqlite3_stmt *s, sqlite3_int64 *out);

/* store_migrate.c: earlier versions' databases moved to the current
 * shape, and what is rebuilt at every open; an SQLite code, *msg from
 * sqlite3_exec (sqlite3_free it). */
int mom_store_upgrade(mom_store_t *st, char **msg);

/* store_deferred.c */
void mom_store_deferred_init(mom_store_t *st);
void mom_store_deferred_free(mom_store_t *st);
/*
 * The next sequence number of an existing collection, counted in memory
 * until mom_store_flush(): MOM_STORE_OK with *seq (now taken), NOT_FOUND,
 * or ERROR. Inside a transaction only.
 */
int mom_store_counter_take(mom_store_t *st, mom_coll_t c, const char *name,
                           uint64_t *seq, sqlite3_int64 *id);
/* The counted next sequence number of a collection, if any. */
bool mom_store_counter_peek(mom_store_t *st, mom_coll_t c, const char *name,
                            uint64_t *next);
/* Forgets a collection's count (it is being deleted). */
void mom_store_counter_forget(mom_store_t *st, mom_coll_t c, const char *name);

/* store_results.c */
void mom_store_results_free(mom_store_t *st);

#endif
