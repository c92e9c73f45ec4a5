/*
 * The SQLite VFS "mom_wal": the default VFS, except that the consecutive
 * writes to a WAL file are collected in memory and handed to the kernel in
 * one pwrite. A commit of n pages is 2n + 1 writes through SQLite (a frame
 * header and a page each) and one system call here.
 *
 * Nothing else may observe the WAL before its pending writes are in the
 * kernel, so they are written out:
 * - at the end of a commit frame (a frame header whose "database size" is
 *   not 0, then its page), so that an error is reported by the commit's
 *   own write and the frames are in the OS before SQLite publishes them in
 *   the wal-index (which it does after the last frame is written);
 * - before any other call on the WAL file (xSync, xRead, xTruncate,
 *   xFileSize, xFileControl, xClose...) and before a write that does not
 *   follow the pending ones;
 * - before the database file's xShmLock, xShmBarrier, xShmMap and
 *   xShmUnmap (the wal-index lives there): a frame set that SQLite makes
 *   visible to readers is in the OS first. A failure there cannot be
 *   reported (xShmBarrier returns nothing) and would let SQLite publish
 *   frames that are not in the WAL: the process aborts instead, and the
 *   recovery at the next open stops before the missing frames (nobody was
 *   told that transaction committed).
 * So a committed transaction survives a kill -9 exactly as with the
 * default VFS, and a reader never sees frames that are not in the file.
 *
 * A WAL file is linked to its database file by the name SQLite gives them
 * (sqlite3_filename_database() of the WAL's name is the pointer the
 * database was opened with); a WAL whose database is not found writes
 * through.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "wal_vfs.h"

/*
 * Pending writes are written out before they would exceed this: the unix
 * VFS's xWrite takes at most 128 KiB - 1 bytes at once (it masks longer
 * lengths). A commit of up to 31 pages of 4 KiB is one write.
 */
#define MOM_WAL_BUFFER_MAX 0x1ffffu

/* The size of a WAL frame header and where its "database size" field is. */
#define MOM_WAL_FRAME_HEADER 24
#define MOM_WAL_FRAME_DBSIZE 4

typedef struct mom_wal_file_s mom_wal_file_t;

struct mom_wal_file_s {
    sqlite3_file base;
    sqlite3_file *real;   /* the default VFS's file, after this struct */
    const char *name;     /* database file: the name it was opened by */
    mom_wal_file_t *wal;  /* database file: its open WAL file */
    mom_wal_file_t *db;   /* WAL file: its database file */
    mom_wal_file_t *next; /* database files, for the WAL to find its own */
    unsigned char *buf;   /* WAL file: pending writes ... */
    size_t len, cap;      /* ... their length and the buffer's size */
    sqlite3_int64 offset; /* ... and where they go */
    int commit_header;    /* the last write was a commit frame's header */
    int buffered;         /* a WAL file linked to its database file */
    int is_wal;           /* a WAL file */
};

static sqlite3_vfs *mom_wal_real_vfs;
static sqlite3_vfs mom_wal_vfs;
static const sqlite3_io_methods mom_wal_methods;
static pthread_once_t mom_wal_once = PTHREAD_ONCE_INIT;
static int mom_wal_register_rc = SQLITE_ERROR;
static pthread_mutex_t mom_wal_lock = PTHREAD_MUTEX_INITIALIZER;
static mom_wal_file_t *mom_wal_dbs;

static uint64_t mom_wal_writes_stat;
static uint64_t mom_wal_syncs_stat;

/* Writes the pending writes out; SQLITE_OK if there were none. */
static int
mom_wal_flush(mom_wal_file_t *f)
{
    int rc;

    if (f->len == 0) {
        return SQLITE_OK;
    }
    rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->offset);
    mom_wal_writes_stat++;
    f->len = 0;
    f->commit_header = 0;
    return rc;
}

/* Flushes the WAL of a database file before the wal-index moves. */
static void
mom_wal_flush_for_shm(mom_wal_file_t *db)
{
    if (db->wal != NULL && mom_wal_flush(db->wal) != SQLITE_OK) {
        fprintf(stderr, "momd: WAL write failed before a wal-index update: "
                        "aborting\n");
        abort();
    }
}

static int
mom_wal_buffer(mom_wal_file_t *f, const void *data, int amt,
               sqlite3_int64 offset)
{
    size_t need = f->len + (size_t)amt;

    if (need > f->cap) {
        size_t cap = f->cap ? f->cap : 32 * 1024;
        unsigned char *buf;

        while (cap < need) {
            cap *= 2;
        }
        buf = realloc(f->buf, cap);
        if (buf == NULL) {
            return SQLITE_IOERR_NOMEM;
        }
        f->buf = buf;
        f->cap = cap;
    }
    if (f->len == 0) {
        f->offset = offset;
    }
    memcpy(f->buf + f->len, data, (size_t)amt);
    f->len = need;
    return SQLITE_OK;
}

static int
mom_wal_write(sqlite3_file *file, const void *data, int amt,
              sqlite3_int64 offset)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    const unsigned char *p = data;
    int rc, ends_commit;

    if (!f->buffered) {
        return f->real->pMethods->xWrite(f->real, data, amt, offset);
    }
    if (f->len > 0 && (offset != f->offset + (sqlite3_int64)f->len ||
                       f->len + (size_t)amt > MOM_WAL_BUFFER_MAX)) {
        rc = mom_wal_flush(f);
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    if ((size_t)amt > MOM_WAL_BUFFER_MAX) {
        return f->real->pMethods->xWrite(f->real, data, amt, offset);
    }
    ends_commit = f->commit_header;
    rc = mom_wal_buffer(f, data, amt, offset);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (ends_commit) {
        return mom_wal_flush(f);
    }
    f->commit_header =
        amt == MOM_WAL_FRAME_HEADER &&
        (p[MOM_WAL_FRAME_DBSIZE] | p[MOM_WAL_FRAME_DBSIZE + 1] |
         p[MOM_WAL_FRAME_DBSIZE + 2] | p[MOM_WAL_FRAME_DBSIZE + 3]) != 0;
    return SQLITE_OK;
}

/* The other methods: a WAL file writes its pending writes out first. */

static int
mom_wal_close(sqlite3_file *file)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    mom_wal_file_t **pp;
    int rc = mom_wal_flush(f), rc2;

    pthread_mutex_lock(&mom_wal_lock);
    if (f->db != NULL) {
        f->db->wal = NULL;
    }
    if (f->wal != NULL) {
        f->wal->db = NULL;
        f->wal->buffered = 0;
    }
    for (pp = &mom_wal_dbs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    pthread_mutex_unlock(&mom_wal_lock);
    free(f->buf);
    rc2 = f->real->pMethods->xClose(f->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int
mom_wal_read(sqlite3_file *file, void *data, int amt, sqlite3_int64 offset)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xRead(f->real, data, amt, offset);
}

static int
mom_wal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xTruncate(f->real, size);
}

static int
mom_wal_sync(sqlite3_file *file, int flags)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    mom_wal_syncs_stat += f->is_wal;
    return f->real->pMethods->xSync(f->real, flags);
}

static int
mom_wal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xFileSize(f->real, size);
}

static int
mom_wal_lock_file(sqlite3_file *file, int level)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xLock(f->real, level);
}

static int
mom_wal_unlock_file(sqlite3_file *file, int level)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xUnlock(f->real, level);
}

static int
mom_wal_check_reserved(sqlite3_file *file, int *out)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int
mom_wal_file_control(sqlite3_file *file, int op, void *arg)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    if (op == SQLITE_FCNTL_VFSNAME) {
        /* The default VFS answers for its own name. */
        rc = f->real->pMethods->xFileControl(f->real, op, arg);
        if (rc == SQLITE_OK && *(char **)arg != NULL) {
            char *name =
                sqlite3_mprintf("%s/%z", mom_wal_vfs.zName, *(char **)arg);

            *(char **)arg = name;
        }
        return rc;
    }
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int
mom_wal_sector_size(sqlite3_file *file)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    return f->real->pMethods->xSectorSize(f->real);
}

static int
mom_wal_device_characteristics(sqlite3_file *file)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* The wal-index methods, called on the database file. */

static int
mom_wal_shm_map(sqlite3_file *file, int page, int size, int extend,
                void volatile **p)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    mom_wal_flush_for_shm(f);
    return f->real->pMethods->xShmMap(f->real, page, size, extend, p);
}

static int
mom_wal_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    mom_wal_flush_for_shm(f);
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void
mom_wal_shm_barrier(sqlite3_file *file)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    mom_wal_flush_for_shm(f);
    f->real->pMethods->xShmBarrier(f->real);
}

static int
mom_wal_shm_unmap(sqlite3_file *file, int delete_flag)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    mom_wal_flush_for_shm(f);
    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int
mom_wal_fetch(sqlite3_file *file, sqlite3_int64 offset, int amt, void **p)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    int rc = mom_wal_flush(f);

    *p = NULL;
    if (rc != SQLITE_OK || f->real->pMethods->iVersion < 3) {
        return rc;
    }
    return f->real->pMethods->xFetch(f->real, offset, amt, p);
}

static int
mom_wal_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *p)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;

    if (f->real->pMethods->iVersion < 3) {
        return SQLITE_OK;
    }
    return f->real->pMethods->xUnfetch(f->real, offset, p);
}

static const sqlite3_io_methods mom_wal_methods = {
    3,
    mom_wal_close,
    mom_wal_read,
    mom_wal_write,
    mom_wal_truncate,
    mom_wal_sync,
    mom_wal_file_size,
    mom_wal_lock_file,
    mom_wal_unlock_file,
    mom_wal_check_reserved,
    mom_wal_file_control,
    mom_wal_sector_size,
    mom_wal_device_characteristics,
    mom_wal_shm_map,
    mom_wal_shm_lock,
    mom_wal_shm_barrier,
    mom_wal_shm_unmap,
    mom_wal_fetch,
    mom_wal_unfetch,
};

static int
mom_wal_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
             int *out_flags)
{
    mom_wal_file_t *f = (mom_wal_file_t *)file;
    mom_wal_file_t *db;
    const char *db_name;
    int rc;

    (void)vfs;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    rc = mom_wal_real_vfs->xOpen(mom_wal_real_vfs, name, f->real, flags,
                                 out_flags);
    if (f->real->pMethods == NULL) {
        return rc;
    }
    f->base.pMethods = &mom_wal_methods;
    if (rc != SQLITE_OK || name == NULL) {
        return rc;
    }
    pthread_mutex_lock(&mom_wal_lock);
    if (flags & SQLITE_OPEN_MAIN_DB) {
        f->name = name;
        f->next = mom_wal_dbs;
        mom_wal_dbs = f;
    } else if (flags & SQLITE_OPEN_WAL) {
        f->is_wal = 1;
        db_name = sqlite3_filename_database(name);
        for (db = mom_wal_dbs; db != NULL; db = db->next) {
            if (db->name == db_name && db->wal == NULL) {
                db->wal = f;
                f->db = db;
                f->buffered = 1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&mom_wal_lock);
    return rc;
}

/* Everything but opening files is the default VFS's. */

static int
mom_wal_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return mom_wal_real_vfs->xDelete(mom_wal_real_vfs, name, sync_dir);
}

static int
mom_wal_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xAccess(mom_wal_real_vfs, name, flags, out);
}

static int
mom_wal_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xFullPathname(mom_wal_real_vfs, name, n, out);
}

static void *
mom_wal_dl_open(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return mom_wal_real_vfs->xDlOpen(mom_wal_real_vfs, name);
}

static void
mom_wal_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    mom_wal_real_vfs->xDlError(mom_wal_real_vfs, n, msg);
}

static void (*mom_wal_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return mom_wal_real_vfs->xDlSym(mom_wal_real_vfs, h, sym);
}

static void
mom_wal_dl_close(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    mom_wal_real_vfs->xDlClose(mom_wal_real_vfs, h);
}

static int
mom_wal_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xRandomness(mom_wal_real_vfs, n, out);
}

static int
mom_wal_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return mom_wal_real_vfs->xSleep(mom_wal_real_vfs, us);
}

static int
mom_wal_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xCurrentTime(mom_wal_real_vfs, out);
}

static int
mom_wal_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xGetLastError(mom_wal_real_vfs, n, out);
}

static int
mom_wal_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return mom_wal_real_vfs->xCurrentTimeInt64(mom_wal_real_vfs, out);
}

static void
mom_wal_register_once(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);

    if (real == NULL || real->iVersion < 2 || real->xCurrentTimeInt64 == NULL) {
        return;
    }
    mom_wal_real_vfs = real;
    mom_wal_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(mom_wal_file_t) + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = MOM_WAL_VFS_NAME,
        .xOpen = mom_wal_open,
        .xDelete = mom_wal_delete,
        .xAccess = mom_wal_access,
        .xFullPathname = mom_wal_full_pathname,
        .xDlOpen = mom_wal_dl_open,
        .xDlError = mom_wal_dl_error,
        .xDlSym = mom_wal_dl_sym,
        .xDlClose = mom_wal_dl_close,
        .xRandomness = mom_wal_randomness,
        .xSleep = mom_wal_sleep,
        .xCurrentTime = mom_wal_current_time,
        .xGetLastError = mom_wal_last_error,
        .xCurrentTimeInt64 = mom_wal_current_time_int64,
    };
    mom_wal_register_rc = sqlite3_vfs_register(&mom_wal_vfs, 0);
}

int
mom_wal_vfs_register(void)
{
    pthread_once(&mom_wal_once, mom_wal_register_once);
    return mom_wal_register_rc;
}

uint64_t
mom_wal_vfs_writes(void)
{
    return mom_wal_writes_stat;
}

uint64_t
mom_wal_vfs_syncs(void)
{
    return mom_wal_syncs_stat;
}
