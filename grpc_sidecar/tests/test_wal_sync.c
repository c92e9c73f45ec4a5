/*
 * Unit tests of the WAL sync thread (wal_sync.c) on a real loop and real
 * files: one report per sync, on the loop; a file unlinked and created
 * again at the path is the one synced next; a missing file is reported as
 * an error; mom_wal_sync_wait() takes the report; closing lets the loop
 * end.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "wal_sync.h"

typedef struct {
    uv_loop_t loop;
    char dir[64];
    char path[96];
    mom_wal_sync_t *sync;
    int reports;
    int last_err;
    int closed;
} fixture_t;

static void
on_done(void *ctx, int err)
{
    fixture_t *f = ctx;

    f->reports++;
    f->last_err = err;
}

static void
on_closed(void *ctx)
{
    ((fixture_t *)ctx)->closed++;
}

static void
write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static fixture_t *
fixture_new(int create)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    strcpy(f->dir, "/tmp/mom-test-walsync-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db-wal", f->dir);
    if (create) {
        write_file(f->path, "frames");
    }
    f->sync = mom_wal_sync_new(&f->loop, f->path, on_done, f);
    assert_non_null(f->sync);
    return f;
}

static void
fixture_free(fixture_t *f)
{
    mom_wal_sync_close(f->sync, on_closed);
    /* the loop ends once the sync's handle is closed */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
}

/* Runs the loop until `reports` reports arrived (or 5 s passed). */
static void
run_until_reports(fixture_t *f, int reports)
{
    uint64_t start = uv_hrtime();

    while (f->reports < reports && uv_hrtime() - start < 5000000000ULL) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(f->reports, reports);
}

/* Descriptors of this process naming path: live ones, and unlinked ones
 * ("path (deleted)"). */
static void
count_fds(const char *path, int *live, int *deleted)
{
    char link[300], target[256], gone[160];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    ssize_t n;

    assert_non_null(d);
    snprintf(gone, sizeof(gone), "%s (deleted)", path);
    *live = *deleted = 0;
    while ((e = readdir(d)) != NULL) {
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0) {
            continue;
        }
        target[n] = '\0';
        *live += strcmp(target, path) == 0;
        *deleted += strcmp(target, gone) == 0;
    }
    closedir(d);
}

static void
test_one_report_per_sync(void **state)
{
    fixture_t *f = fixture_new(1);
    int k;

    (void)state;
    for (k = 1; k <= 3; k++) {
        mom_wal_sync_start(f->sync);
        run_until_reports(f, k);
        assert_int_equal(f->last_err, 0);
    }
    /* nothing more comes */
    usleep(20000);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->reports, 3);
    fixture_free(f);
}

static void
test_file_created_again_is_synced(void **state)
{
    fixture_t *f = fixture_new(1);
    int live, deleted;

    (void)state;
    mom_wal_sync_start(f->sync);
    run_until_reports(f, 1);
    count_fds(f->path, &live, &deleted);
    assert_int_equal(live, 1); /* the thread's descriptor */
    assert_int_equal(deleted, 0);

    assert_int_equal(unlink(f->path), 0);
    write_file(f->path, "a new WAL");
    count_fds(f->path, &live, &deleted);
    assert_int_equal(live, 0);
    assert_int_equal(deleted, 1);

    mom_wal_sync_start(f->sync);
    run_until_reports(f, 2);
    assert_int_equal(f->last_err, 0);
    count_fds(f->path, &live, &deleted);
    assert_int_equal(live, 1);
    assert_int_equal(deleted, 0);
    fixture_free(f);
}

static void
test_missing_file_is_an_error(void **state)
{
    fixture_t *f = fixture_new(0);

    (void)state;
    mom_wal_sync_start(f->sync);
    run_until_reports(f, 1);
    assert_int_equal(f->last_err, ENOENT);
    fixture_free(f);
}

static void
test_wait_takes_the_report(void **state)
{
    fixture_t *f = fixture_new(1);

    (void)state;
    mom_wal_sync_start(f->sync);
    assert_int_equal(mom_wal_sync_wait(f->sync), 0);
    usleep(20000);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->reports, 0);
    /* the next sync is reported again */
    mom_wal_sync_start(f->sync);
    run_until_reports(f, 1);
    fixture_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_report_per_sync),
        cmocka_unit_test(test_file_created_again_is_synced),
        cmocka_unit_test(test_missing_file_is_an_error),
        cmocka_unit_test(test_wait_takes_the_report),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
