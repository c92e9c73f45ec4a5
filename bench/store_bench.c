/*
 * store_bench: CPU per applied command of momd's store, without the
 * network, Raft or fsync. Applies N 100-byte publishes to one topic
 * through mom_sm_apply, 17 per transaction (a replication round's batch
 * in the 3-node benchmark), from 3 producers with clock-like sequences
 * (4,000 commands per second), synchronous NORMAL; prints the process's
 * CPU time per command. Built from momd's objects:
 *   make build/bench/store_bench && build/bench/store_bench [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sm.h"
#include "store.h"

#define BATCH 17
#define PRODUCERS 3

static double
cpu_seconds(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int
apply_one(mom_store_t *st, uint64_t index, const Mom__Command *cmd,
          mom_result_t *res)
{
    res->body.len = 0;
    return mom_sm_apply(st, 0, index, cmd, res);
}

int
main(int argc, char **argv)
{
    char dir[] = "/tmp/mom-store-bench-XXXXXX", err[256], rm[128];
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    Mom__Command cmd = MOM__COMMAND__INIT;
    uint64_t index = 0, seq = 1795703915123ULL << 12;
    mom_result_t res;
    mom_store_t *st;
    char content[100];
    double t0, t1;
    int rc = 0;

    memset(content, 'x', sizeof(content));
    memset(&res, 0, sizeof(res));
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    st = mom_store_open(dir, MOM_SYNC_NORMAL, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "store_bench: %s\n", err);
        return 1;
    }
    cmd.op = MOM__COMMAND_OP__CMD_CREATE_TOPIC;
    cmd.name = "bench";
    cmd.user = "bench";
    cmd.password_hash = "";
    if (mom_store_begin(st) != MOM_STORE_OK ||
        apply_one(st, ++index, &cmd, &res) != 0 ||
        mom_store_commit(st) != MOM_STORE_OK) {
        rc = 1;
    }
    cmd.op = MOM__COMMAND_OP__CMD_PUBLISH;
    cmd.content.data = (uint8_t *)content;
    cmd.content.len = sizeof(content);
    t0 = cpu_seconds();
    for (int i = 0; i < n && rc == 0; i += BATCH) {
        rc = mom_store_begin(st) != MOM_STORE_OK;
        for (int k = 0; k < BATCH && rc == 0; k++) {
            cmd.producer = (uint64_t)(1 + (i + k) % PRODUCERS) << 32 | 5;
            cmd.sequence = seq + (uint64_t)(i + k) * 1024;
            cmd.timestamp_ms = 1795703915123LL + (i + k) / 4;
            rc = apply_one(st, ++index, &cmd, &res) != 0;
        }
        if (rc == 0) {
            rc = mom_store_commit(st) != MOM_STORE_OK;
        }
    }
    t1 = cpu_seconds();
    if (rc == 0) {
        printf("%.2f us of CPU per command (%d commands)\n",
               (t1 - t0) * 1e6 / n, n);
    } else {
        fprintf(stderr, "store_bench: storage error\n");
    }
    mom_buf_free(&res.body);
    mom_store_close(st);
    snprintf(rm, sizeof(rm), "rm -rf %s", dir);
    return system(rm) != 0 || rc != 0;
}
