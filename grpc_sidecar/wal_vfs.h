/*
 * The SQLite VFS that coalesces a transaction's WAL writes into one system
 * call (see wal_vfs.c). Registered once, not as the default VFS: momd's
 * store opens its database with it by name.
 */
#ifndef MOM_WAL_VFS_H
#define MOM_WAL_VFS_H

#include <stdint.h>

#define MOM_WAL_VFS_NAME "mom_wal"

/* Registers the VFS (once per process); an SQLite result code. */
int mom_wal_vfs_register(void);

/* How many coalesced writes the VFS has handed to the kernel (tests). */
uint64_t mom_wal_vfs_writes(void);
/* How many times a WAL file was synced through the VFS (tests). */
uint64_t mom_wal_vfs_syncs(void);

#endif
