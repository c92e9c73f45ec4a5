/*
 * Raft storage in SQLite for all groups of a node: the tables raft_state
 * (term, vote, last snapshot's metadata) and raft_log (entries), with
 * prepared statements kept for the life of the store. The caller owns the
 * database handle and the transactions (mom_raft_store_begin/commit).
 *
 * Storage errors are never reported upward (libraft has no way to take
 * them): a busy database is retried, anything else logs and aborts the
 * process, which then recovers from what SQLite has durably committed.
 */
#ifndef MOM_RAFT_STORE_H
#define MOM_RAFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

typedef struct mom_raft_store_s mom_raft_store_t;

/* The metadata of a group's last snapshot (its data is the state machine
 * itself, serialized only when a follower needs it). */
typedef struct {
    uint64_t index;      /* last index included, 0: no snapshot */
    uint64_t term;       /* its term */
    uint64_t conf_index; /* index of the configuration below */
    uint8_t *conf;       /* raft_configuration_encode() format, malloc()ed */
    size_t conf_len;
} mom_raft_snapshot_row_t;

/* One log entry as read; data is only valid during the callback. */
typedef int (*mom_raft_store_entry_fn)(void *arg, uint64_t index, uint64_t term,
                                       int type, const void *data, size_t len);

/* Creates the tables if missing and prepares the statements. */
mom_raft_store_t *mom_raft_store_open(sqlite3 *db);
void mom_raft_store_close(mom_raft_store_t *s);

void mom_raft_store_begin(mom_raft_store_t *s);
/*
 * A transaction whose commit need not be on disk when it returns (durable
 * 0): it changes nothing that Raft relies on (no entry, term, vote or
 * snapshot install), only applies committed entries, which a restart would
 * apply again from the log. Written to the WAL, synced with the next
 * durable commit or checkpoint (SQLite keeps WAL checkpoints safe).
 *
 * With synchronous = FULL configured (and a WAL journal), the connection
 * runs with NORMAL and mom_raft_store_commit() of a durable transaction
 * fdatasyncs the WAL itself before it returns, as FULL would have inside
 * COMMIT: no PRAGMA per transaction. Any other level is left as it is.
 */
void mom_raft_store_begin_as(mom_raft_store_t *s, int durable);
void mom_raft_store_commit(mom_raft_store_t *s);
/* Makes every transaction committed so far durable (an fdatasync of the
 * WAL; nothing when the store does not sync). */
void mom_raft_store_sync(mom_raft_store_t *s);
/* Non-zero when durable commits sync the WAL (synchronous = FULL and a
 * WAL journal): what mom_raft_store_sync() would do. */
int mom_raft_store_syncs(const mom_raft_store_t *s);

/* Returns 1 and fills term, vote and snapshot (index 0 if none) when the
 * group has a state row, else 0. */
int mom_raft_store_load_state(mom_raft_store_t *s, uint32_t grp, uint64_t *term,
                              uint64_t *vote,
                              mom_raft_snapshot_row_t *snapshot);
void mom_raft_store_save_state(mom_raft_store_t *s, uint32_t grp, uint64_t term,
                               uint64_t vote);

void mom_raft_store_append(mom_raft_store_t *s, uint32_t grp, uint64_t index,
                           uint64_t term, int type, const void *data,
                           size_t len);
/* Deletes the entries from `index` on. */
void mom_raft_store_truncate(mom_raft_store_t *s, uint32_t grp, uint64_t index);
/* Deletes the entries up to `index` included. */
void mom_raft_store_compact(mom_raft_store_t *s, uint32_t grp, uint64_t index);

/*
 * Calls fn for each entry in [first, last] in index order until fn returns
 * non-zero (which is returned). Without with_data, data is passed only for
 * configuration (RAFT_CHANGE) entries. Returns 0 after the last entry.
 */
int mom_raft_store_read(mom_raft_store_t *s, uint32_t grp, uint64_t first,
                        uint64_t last, int with_data,
                        mom_raft_store_entry_fn fn, void *arg);

void mom_raft_store_save_snapshot(mom_raft_store_t *s, uint32_t grp,
                                  const mom_raft_snapshot_row_t *row);
void mom_raft_snapshot_row_free(mom_raft_snapshot_row_t *row);

#endif /* MOM_RAFT_STORE_H */
