/*
 * An fdatasync of the WAL on a thread of its own (wal_sync.c), so that the
 * loop keeps serving nginx, forwards and answers while a replica's write
 * reaches the disk. One sync at a time; its end is reported on the loop.
 */
#ifndef MOM_WAL_SYNC_H
#define MOM_WAL_SYNC_H

#include <uv.h>

typedef struct mom_wal_sync_s mom_wal_sync_t;

/* On the loop thread, once per mom_wal_sync_start(): 0 or an errno. */
typedef void (*mom_wal_sync_done_cb)(void *ctx, int err);

/* wal_path: the WAL file to sync (opened at the first sync). NULL on
 * error. */
mom_wal_sync_t *mom_wal_sync_new(uv_loop_t *loop, const char *wal_path,
                                 mom_wal_sync_done_cb done, void *ctx);

/* Starts a sync of everything written to the WAL so far. The caller keeps
 * one at a time: the previous one must have been reported. */
void mom_wal_sync_start(mom_wal_sync_t *s);

/* Blocks until the sync started last has ended; its error, or 0. Its
 * report on the loop is then skipped. */
int mom_wal_sync_wait(mom_wal_sync_t *s);

/* Stops the thread; closed_cb(ctx) once the loop has let go of it. */
void mom_wal_sync_close(mom_wal_sync_t *s, void (*closed_cb)(void *ctx));

#endif
