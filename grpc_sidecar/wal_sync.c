/*
 * The WAL's fdatasync on a thread of its own (wal_sync.h).
 *
 * Every frame of a committed transaction is in the kernel when COMMIT
 * returns (wal_vfs.c writes them out at the commit frame), and fdatasync
 * makes an inode's data durable whatever descriptor names it: the thread
 * syncs its own descriptor of the WAL, never SQLite's file object, which
 * the loop keeps using meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_sync.h"

struct mom_wal_sync_s {
    uv_async_t done_async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *path;
    int fd;         /* the thread's: -1 until the first sync */
    bool requested; /* a sync waits for the thread */
    bool running;   /* the thread is syncing */
    bool ended;     /* a sync ended, not yet reported nor waited for */
    bool stopping;
    int err;
    mom_wal_sync_done_cb done;
    void *ctx;
    void (*closed_cb)(void *ctx);
};

/* The thread's descriptor of the WAL, opened again if the file it names
 * was unlinked (SQLite deletes a WAL only when its last connection closes;
 * it never renames one). */
static int
mom_wal_sync_fd(mom_wal_sync_t *s)
{
    struct statx held;

    /*
     * Asks for the link count alone: a stat that reads the file's times
     * makes the kernel (multigrain timestamps, Linux 6.13+) give the next
     * write a new fine-grained mtime, and on ext4 every fdatasync then
     * writes the inode as well: ~30% more per sync (docs/benchmarks.md).
     */
    if (s->fd >= 0 &&
        statx(s->fd, "", AT_EMPTY_PATH, STATX_NLINK, &held) == 0 &&
        held.stx_nlink > 0) {
        return 0;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    return s->fd >= 0 ? 0 : errno;
}

static void *
mom_wal_sync_main(void *arg)
{
    mom_wal_sync_t *s = arg;
    int err;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->requested && !s->stopping) {
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (!s->requested) {
            break;
        }
        s->requested = false;
        s->running = true;
        pthread_mutex_unlock(&s->mu);

        err = mom_wal_sync_fd(s);
        if (err == 0 && fdatasync(s->fd) != 0) {
            err = errno;
        }

        pthread_mutex_lock(&s->mu);
        s->running = false;
        s->ended = true;
        s->err = err;
        pthread_cond_broadcast(&s->cv);
        uv_async_send(&s->done_async);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void
mom_wal_sync_on_done(uv_async_t *a)
{
    mom_wal_sync_t *s = a->data;
    bool report;
    int err;

    pthread_mutex_lock(&s->mu);
    report = s->ended;
    s->ended = false;
    err = s->err;
    pthread_mutex_unlock(&s->mu);
    if (report) {
        s->done(s->ctx, err);
    }
}

static void
mom_wal_sync_closed(uv_handle_t *h)
{
    mom_wal_sync_t *s = h->data;
    void (*closed_cb)(void *) = s->closed_cb;
    void *ctx = s->ctx;

    if (s->fd >= 0) {
        close(s->fd);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->path);
    free(s);
    if (closed_cb != NULL) {
        closed_cb(ctx);
    }
}

mom_wal_sync_t *
mom_wal_sync_new(uv_loop_t *loop, const char *wal_path,
                 mom_wal_sync_done_cb done, void *ctx)
{
    mom_wal_sync_t *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->path = strdup(wal_path)) == NULL) {
        free(s);
        return NULL;
    }
    s->fd = -1;
    s->done = done;
    s->ctx = ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (uv_async_init(loop, &s->done_async, mom_wal_sync_on_done) != 0) {
        goto failed;
    }
    s->done_async.data = s;
    if (pthread_create(&s->thread, NULL, mom_wal_sync_main, s) != 0) {
        /* freed by mom_wal_sync_closed once the loop lets go of it */
        uv_close((uv_handle_t *)&s->done_async, mom_wal_sync_closed);
        return NULL;
    }
    return s;

failed:
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->path);
    free(s);
    return NULL;
}

void
mom_wal_sync_start(mom_wal_sync_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->requested = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int
mom_wal_sync_wait(mom_wal_sync_t *s)
{
    int err;

    pthread_mutex_lock(&s->mu);
    while (s->requested || s->running) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    s->ended = false; /* reported here, not on the loop */
    err = s->err;
    pthread_mutex_unlock(&s->mu);
    return err;
}

void
mom_wal_sync_close(mom_wal_sync_t *s, void (*closed_cb)(void *ctx))
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->closed_cb = closed_cb;
    uv_close((uv_handle_t *)&s->done_async, mom_wal_sync_closed);
}
