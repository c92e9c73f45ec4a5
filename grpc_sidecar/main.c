/*
 * momd: the per-node MOM daemon. `momd -c momd.conf` runs in the
 * foreground; SIGTERM/SIGINT stop it cleanly (in-flight requests are
 * answered, streams ended, SQLite closed).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "cluster.h"
#include "commit.h"
#include "conf.h"
#include "grpc_tune.h"
#include "log.h"
#include "ops.h"
#include "placement.h"
#include "server.h"
#include "sse.h"
#include "store.h"

/* A clean stop waits this long at most for its leaderships to move. */
#define MOM_DAEMON_HANDOFF_MS 2000

typedef struct {
    uv_loop_t *loop;
    mom_conf_t conf;
    mom_store_t *st;
    mom_placement_t *pl;
    mom_commit_t *commit;
    mom_cluster_t *cluster;
    mom_sse_t *sse;
    mom_server_t *server;
    mom_ops_t ops;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    int stopping; /* 1: handing leaderships off, 2: stopping */
} mom_daemon_t;

/*
 * Each SSE stream holds a descriptor, and libuv silently closes what it
 * cannot accept: take the hard limit on open files, as nginx's
 * worker_rlimit_nofile would, instead of the usual soft 1024.
 */
static void
mom_daemon_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) {
        return;
    }
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        mom_log_error("cannot raise the open-file limit to %llu",
                      (unsigned long long)rl.rlim_max);
    }
}

static void
mom_daemon_usage(void)
{
    fprintf(stderr, "usage: momd -c <momd.conf>\n");
}

static void
mom_daemon_shutdown(void *data)
{
    mom_daemon_t *d = data;

    if (d->stopping == 2) {
        return;
    }
    d->stopping = 2;
    /* The commit path flushes and applies what is committable on close: the
     * subscriptions (its applied hook) must still exist then. */
    mom_server_close(d->server);
    mom_ops_close(&d->ops);
    mom_cluster_stop(d->cluster);
    mom_commit_close(d->commit);
    mom_sse_shutdown(d->sse);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

/* First signal: leaderships go to other nodes (no election needed for this
 * node's partitions), then the stop; a second signal stops at once. */
static void
mom_daemon_stop(uv_signal_t *sig, int signum)
{
    mom_daemon_t *d = sig->data;

    mom_log_info("signal %d: shutting down", signum);
    if (d->stopping == 0 && mom_placement_members(d->pl) > 1) {
        d->stopping = 1;
        mom_cluster_handoff(d->cluster, MOM_DAEMON_HANDOFF_MS,
                            mom_daemon_shutdown, d);
        return;
    }
    mom_daemon_shutdown(d);
}

int
main(int argc, char **argv)
{
    static mom_daemon_t d;
    const char *conf_path = NULL;
    char err[512];
    int opt, rc = 1;

    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt == 'c') {
            conf_path = optarg;
        } else {
            mom_daemon_usage();
            return 2;
        }
    }
    if (conf_path == NULL || optind != argc) {
        mom_daemon_usage();
        return 2;
    }
    mom_conf_defaults(&d.conf);
    if (mom_conf_load(&d.conf, conf_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "momd: %s: %s\n", conf_path, err);
        mom_conf_free(&d.conf);
        return 1;
    }
    mom_log_level = d.conf.log_level;
    signal(SIGPIPE, SIG_IGN);
    mom_daemon_raise_nofile();
    mom_grpc_tune();

    d.loop = uv_default_loop();
    d.st =
        mom_store_open(d.conf.data_dir, d.conf.synchronous, err, sizeof(err));
    if (d.st == NULL) {
        mom_log_error("store: %s", err);
        goto done;
    }
    d.sse = mom_sse_new(d.loop, &d.conf, d.st);
    if (d.sse == NULL) {
        mom_log_error("cannot start subscriptions");
        goto done;
    }
    d.pl = mom_placement_new(&d.conf);
    if (d.pl == NULL) {
        mom_log_error("out of memory");
        goto done;
    }
    d.commit =
        mom_commit_new(d.loop, d.st, &d.conf, d.pl, mom_sse_applied, d.sse);
    if (d.commit == NULL) {
        mom_log_error("cannot start the commit path");
        goto done;
    }
    mom_commit_on_restored(d.commit, mom_sse_restored, d.sse);
    mom_ops_init(&d.ops, d.loop, &d.conf, d.st, d.pl, d.commit);
    d.ops.sse = d.sse;
    d.cluster = mom_cluster_start(d.loop, &d.conf, d.pl, d.commit, &d.ops);
    if (d.cluster == NULL) {
        mom_log_error("cannot start the cluster service");
        goto done;
    }
    d.server = mom_server_new(d.loop, &d.conf, mom_ops_handle, &d.ops);
    if (d.server == NULL || mom_server_listen(d.server, d.conf.socket_path)) {
        mom_log_error("cannot listen on %s", d.conf.socket_path);
        goto done;
    }
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = &d;
    d.sigint.data = &d;
    uv_signal_start(&d.sigterm, mom_daemon_stop, SIGTERM);
    uv_signal_start(&d.sigint, mom_daemon_stop, SIGINT);

    mom_log_info("node %u listening on %s, data in %s, %u partitions on %zu "
                 "member(s)",
                 d.conf.node_id, d.conf.socket_path, d.conf.data_dir,
                 d.conf.partitions, mom_placement_members(d.pl));
    uv_run(d.loop, UV_RUN_DEFAULT);
    mom_log_info("stopped");
    rc = 0;

done:
    if (rc != 0) {
        /* Release what was started, then let the handles close. */
        if (d.server != NULL) {
            mom_server_close(d.server);
        }
        if (d.ops.loop != NULL) {
            mom_ops_close(&d.ops);
        }
        if (d.cluster != NULL) {
            mom_cluster_stop(d.cluster);
        }
        if (d.commit != NULL) {
            mom_commit_close(d.commit);
        }
        if (d.sse != NULL) {
            mom_sse_shutdown(d.sse);
        }
        uv_run(d.loop, UV_RUN_DEFAULT);
    }
    mom_store_close(d.st);
    mom_placement_free(d.pl);
    uv_loop_close(d.loop);
    mom_conf_free(&d.conf);
    return rc;
}
