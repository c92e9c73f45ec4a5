/*
 * The Unix-socket listener for nginx: connections, framing, replies (in
 * order for id-0 requests, by id for multiplexed ones), write queues and
 * their coalescing, and stream (SSE) mode. Knows frames and connections,
 * not what requests mean (that is ops.c).
 */
#ifndef MOM_SERVER_H
#define MOM_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "conf.h"
#include "frame.h"
#include "mom.pb-c.h"

typedef struct mom_server_s mom_server_t;
typedef struct mom_conn_s mom_conn_t;

/*
 * A decoded request. The handler owns req (mom__request__free_unpacked) and
 * must answer with exactly one mom_conn_reply(conn, id, ...) (possibly
 * later), or, for id 0 only, turn the connection into a stream. The server
 * has moved the request's id into `id` (req->id is 0, so that the request
 * can be forwarded to another momd as is).
 *
 * id 0: one request at a time. It is dispatched once everything before it
 * on the connection is answered, and nothing after it is dispatched before
 * its answer. id != 0 (multiplexed): dispatched as soon as it is decoded,
 * while others are in flight; answers go out in completion order.
 *
 * An OP_CANCEL read with the request it names drops that request unstarted;
 * one whose request has started already is handed over too (req->op is
 * OP_CANCEL, `id` the started request's), to be owned and freed without an
 * answer: the started request is still answered once.
 */
typedef void (*mom_request_cb)(void *data, mom_conn_t *conn, uint64_t id,
                               Mom__Request *req);
typedef void (*mom_conn_cb)(void *data, mom_conn_t *conn);

mom_server_t *mom_server_new(uv_loop_t *loop, const mom_conf_t *conf,
                             mom_request_cb on_request, void *data);
/* Listens on path (a stale socket file is removed; mode 0666). */
int mom_server_listen(mom_server_t *srv, const char *path);
/*
 * Stops listening; idle connections close now, busy ones after their last
 * reply (multiplexed ones: after the last request in flight), streams
 * must be ended by their owner. srv is freed when all its
 * handles are closed (run the loop).
 */
void mom_server_close(mom_server_t *srv);

/* Keeps conn's memory alive across asynchronous work. */
void mom_conn_ref(mom_conn_t *conn);
void mom_conn_unref(mom_conn_t *conn);
/* True once the connection is closing or closed: writes are dropped. */
bool mom_conn_closed(const mom_conn_t *conn);
/*
 * True when nginx has already closed its side (its client gave up), even
 * if momd has not read the end of the stream yet: e.g. a request read
 * after momd was stopped (SIGSTOP) for longer than the client waited.
 * Looks at the socket at most once per loop iteration. On a multiplexed
 * connection more requests may be waiting unread: then the peer counts as
 * present until the read returns EOF (which closes the connection).
 */
bool mom_conn_peer_gone(mom_conn_t *conn);

/*
 * Answers request `id` (the one given to mom_request_cb) with a KIND_REPLY
 * frame carrying that id. An id-0 reply is written at once; multiplexed
 * replies are queued and each connection's queue is written with one
 * write per loop iteration (before the loop polls). Replies to a closed
 * connection are dropped.
 */
void mom_conn_reply(mom_conn_t *conn, uint64_t id, unsigned status,
                    const void *body, size_t len, const char *user);
/* The 200 REPLY of a subscription (id 0), with Response.stream_buffer. */
void mom_conn_reply_stream(mom_conn_t *conn, uint64_t stream_buffer);

/*
 * Stream mode (an id-0 request only): after the REPLY of a subscription,
 * the connection carries
 * frames written by its owner; no more requests are dispatched from it
 * (bytes received are discarded, or handed to its owner as requests, see
 * mom_conn_stream_requests) and on_close is called once when it closes, for
 * whatever reason (peer EOF, write error, mom_conn_close()).
 */
void mom_conn_stream(mom_conn_t *conn, mom_conn_cb on_close, void *data);
/*
 * A stream's owner that reads requests from it (OP_MUTE): each decoded
 * request is handed to on_request (which frees it); without one, bytes
 * received on a stream are discarded.
 */
typedef void (*mom_conn_req_cb)(void *data, mom_conn_t *conn,
                                Mom__Request *req);
void mom_conn_stream_requests(mom_conn_t *conn, mom_conn_req_cb on_request);
/* Queues a frame (takes a reference); -1 if the connection is closed. */
int mom_conn_write(mom_conn_t *conn, mom_frame_t *frame);
/* Bytes queued and not yet written to the socket. */
size_t mom_conn_queued(const mom_conn_t *conn);
/* Called once whenever the write queue becomes empty (stream mode). */
void mom_conn_on_drain(mom_conn_t *conn, mom_conn_cb on_drain);
/* Closes after the queued frames are written (graceful) or at once. */
void mom_conn_close(mom_conn_t *conn, bool flush);

uint32_t mom_server_max_frame(const mom_server_t *srv);

#endif
