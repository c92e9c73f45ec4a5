/*
 * Topic subscriptions (OP_SUBSCRIBE): SSE streams written as KIND_EVENT
 * frames (docs/architecture.md, "SSE events"). Replay from SQLite, switch
 * to live delivery without gap or duplicate, heartbeats, token expiry, slow
 * subscriber cut-off, fan-out of each published message encoded once.
 */
#ifndef MOM_SSE_H
#define MOM_SSE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "command.pb-c.h"
#include "conf.h"
#include "json.h"
#include "server.h"
#include "sm.h"
#include "store.h"

#define MOM_SSE_RETRY_MS 3000

typedef struct mom_sse_s mom_sse_t;

mom_sse_t *mom_sse_new(uv_loop_t *loop, const mom_conf_t *conf,
                       mom_store_t *st);

/* Serves OP_SUBSCRIBE on conn; takes ownership of req and answers it. */
void mom_sse_subscribe(mom_sse_t *sse, mom_conn_t *conn, Mom__Request *req);

/*
 * The commit path's applied hook (data = the mom_sse_t): fans published
 * messages out to live subscribers and ends the streams of deleted topics.
 */
void mom_sse_applied(void *data, const Mom__Command *cmd,
                     const mom_result_t *res);

/*
 * The commit path's restore hook (data = the mom_sse_t): a partition's state
 * was replaced by a Raft snapshot, so its live streams missed the messages
 * in it; they end with "subscriber too slow" and resume from the store with
 * Last-Event-ID.
 */
void mom_sse_restored(void *data, uint32_t partitions, uint32_t partition);

/* Number of open subscriptions. */
size_t mom_sse_count(const mom_sse_t *sse);

/*
 * Ends every stream with "server shutting down" and frees sse once the
 * last subscription is gone (run the loop).
 */
void mom_sse_shutdown(mom_sse_t *sse);

/* SSE text of one message: "id: N\ndata: {...}\n\n". */
void mom_sse_format_message(mom_buf_t *b, const mom_store_msg_t *m);
/* SSE text of the final event: "event: end\ndata: {"reason":...}\n\n". */
void mom_sse_format_end(mom_buf_t *b, const char *reason);

#endif
