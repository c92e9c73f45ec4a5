/*
 * Request handling: turns each mom.Request from nginx into either a read
 * served from the store (LIST_*, HISTORY), an authentication step on the
 * thread pool (REGISTER, LOGIN), a subscription (SUBSCRIBE), or a Command
 * submitted to the commit path (every mutation).
 */
#ifndef MOM_OPS_H
#define MOM_OPS_H

#include <stdint.h>

#include <uv.h>

#include "commit.h"
#include "conf.h"
#include "server.h"
#include "store.h"

/* Room kept in a frame for everything around a history page's messages. */
#define MOM_OPS_FRAME_MARGIN (64 * 1024)
#define MOM_OPS_HISTORY_DEFAULT 100
#define MOM_OPS_HISTORY_MAX 1000
#define MOM_OPS_PASSWORD_MAX 1024

struct mom_sse_s;

typedef struct {
    uv_loop_t *loop;
    const mom_conf_t *conf;
    mom_store_t *st;
    mom_commit_t *commit;
    struct mom_sse_s *sse; /* NULL: subscriptions unavailable */
    uint64_t producer;     /* idempotency key: node id << 32 | incarnation */
    uint64_t sequence; /* last sequence number used (ms << 12, increasing) */
} mom_ops_t;

void mom_ops_init(mom_ops_t *ops, uv_loop_t *loop, const mom_conf_t *conf,
                  mom_store_t *st, mom_commit_t *commit);

/* The server's request callback (data = the mom_ops_t). */
void mom_ops_handle(void *data, mom_conn_t *conn, Mom__Request *req);

/* Largest message content accepted (it must fit a frame with margin). */
size_t mom_ops_content_max(const mom_conf_t *conf);

/* Compact JSON text of one value, no raw line breaks, within max bytes. */
bool mom_ops_content_valid(const void *data, size_t len, size_t max);

/* Milliseconds since the Unix epoch. */
int64_t mom_ops_now_ms(void);

#endif
