/*
 * peer.h: the gRPC transport between momds (server and client), built on the
 * gRPC C core. All of momd's gRPC code lives in peer.c; the rest of momd sees
 * only this generic byte-level API and the method table of proto/peer.proto.
 *
 * Threading: every function here is called on the thread that runs the libuv
 * loop given to mom_peer_start, and every callback is made on that thread.
 * The completion queue is served by a private thread (see docs/peer.md).
 */

#ifndef MOM_PEER_H
#define MOM_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <grpc/status.h>

/* The method paths of service mom.Peer (proto/peer.proto). */
#define MOM_PEER_PATH_FORWARD "/mom.Peer/Forward"
#define MOM_PEER_PATH_RAFT "/mom.Peer/Raft"
#define MOM_PEER_PATH_SUBSCRIBE "/mom.Peer/Subscribe"
#define MOM_PEER_PATH_FORWARD_BATCH "/mom.Peer/ForwardBatch"
#define MOM_PEER_PATH_RAFT_STREAM "/mom.Peer/RaftStream"

typedef enum {
    MOM_PEER_UNARY,
    MOM_PEER_SERVER_STREAM,
    MOM_PEER_BIDI_STREAM /* messages both ways, each side in order */
} mom_peer_kind;

typedef struct {
    const char *path; /* "/package.Service/Method" */
    mom_peer_kind kind;
} mom_peer_method;

/* mom_peer_service[MOM_PEER_FORWARD] etc.: the table of service mom.Peer. */
enum {
    MOM_PEER_FORWARD,
    MOM_PEER_RAFT,
    MOM_PEER_SUBSCRIBE,
    MOM_PEER_FORWARD_BATCH,
    MOM_PEER_RAFT_STREAM,
    MOM_PEER_NMETHODS
};
extern const mom_peer_method mom_peer_service[MOM_PEER_NMETHODS];

typedef struct mom_peer mom_peer;
typedef struct mom_peer_channel mom_peer_channel;
typedef struct mom_peer_srv mom_peer_srv;       /* a call served by us */
typedef struct mom_peer_stream mom_peer_stream; /* a stream we consume */

/*
 * Server side. A server call handle (mom_peer_srv) is given to unary() or
 * stream() and stays valid until the application completes it
 * (mom_peer_reply, mom_peer_stream_end) or until closed() is called for it
 * (the client cancelled, its deadline passed, the connection broke, or the
 * peer is stopping), whichever comes first; closed() is never called for a
 * call the application completed. `method` is an index into `methods`.
 * Request bytes are valid only during the callback.
 *
 * A bidirectional-streaming method calls message() for every message the
 * client sends, in order, with the same handle (the first one opens the
 * call); the application may answer with mom_peer_stream_send and end the
 * call with mom_peer_stream_end. When the client half-closes, closed() is
 * called and the call ends with OK after the queued messages.
 */
typedef struct {
    const mom_peer_method *methods;
    size_t nmethods;
    void (*unary)(void *ctx, int method, const uint8_t *req, size_t len,
                  mom_peer_srv *call);
    void (*stream)(void *ctx, int method, const uint8_t *req, size_t len,
                   mom_peer_srv *stream);
    void (*closed)(void *ctx, mom_peer_srv *call);
    void (*message)(void *ctx, int method, const uint8_t *msg, size_t len,
                    mom_peer_srv *call);
} mom_peer_handlers;

/* Limits; a zero field takes the default given in brackets. */
typedef struct {
    size_t max_message;      /* [16 MiB] largest message sent or received */
    unsigned max_srv_calls;  /* [4096] calls served at once; more get
                                RESOURCE_EXHAUSTED */
    unsigned max_cli_calls;  /* [16384] client calls and streams at once;
                                more are refused by mom_peer_call */
    size_t stream_queue;     /* [1 MiB] bytes queued on one served stream */
    unsigned stream_msgs;    /* [4096] messages queued on one served stream */
    int default_deadline_ms; /* [5000] for calls given deadline_ms <= 0 */
    int keepalive_ms;        /* [10000] ping an idle connection this often */
} mom_peer_options;

/*
 * Starts the gRPC thread and, when listen_addr is not NULL, the server on
 * listen_addr ("127.0.0.1:9001"; port 0 picks a free port, see
 * mom_peer_port). h may be NULL for a client-only peer; opts may be NULL.
 * Returns NULL on failure (address in use, bad arguments).
 */
mom_peer *mom_peer_start(uv_loop_t *loop, const char *listen_addr,
                         const mom_peer_handlers *h, void *ctx,
                         const mom_peer_options *opts);

/* The bound server port, 0 for a client-only peer. */
int mom_peer_port(const mom_peer *p);

/*
 * Completes a unary call: status GRPC_STATUS_OK with the response bytes, or
 * an error status (bytes ignored, `detail` may be NULL). The handle is dead
 * afterwards. Returns 0, or -1 when the response could not be sent (too
 * large: the client then gets RESOURCE_EXHAUSTED).
 */
int mom_peer_reply(mom_peer_srv *call, grpc_status_code status,
                   const uint8_t *buf, size_t len, const char *detail);

/*
 * Queues one message on a served stream. Returns 0, or -1 when the stream's
 * queue is full (stream_queue / stream_msgs) or the message is too large:
 * nothing is queued and the stream stays usable (the application usually
 * ends it: the consumer is too slow).
 */
int mom_peer_stream_send(mom_peer_srv *stream, const uint8_t *buf, size_t len);

/* Number of messages queued on a served stream and not yet sent. */
size_t mom_peer_stream_pending(const mom_peer_srv *stream);

/*
 * Ends a served stream with `status` after its queued messages. The handle is
 * dead afterwards.
 */
void mom_peer_stream_end(mom_peer_srv *stream, grpc_status_code status,
                         const char *detail);

/*
 * Client side. Channels are created once per address, kept and reused until
 * mom_peer_stop; returns NULL only when out of memory or stopping.
 */
mom_peer_channel *mom_peer_channel_get(mom_peer *p, const char *addr);

/*
 * cb gets the gRPC status, its detail text (never NULL) and, with
 * GRPC_STATUS_OK, the response bytes; all are valid only during cb.
 */
typedef void (*mom_peer_call_cb)(void *ctx, grpc_status_code status,
                                 const char *detail, const uint8_t *buf,
                                 size_t len);

/*
 * Starts a unary call with a deadline of deadline_ms (<= 0: the default).
 * Returns 0 when started: cb is then called exactly once, later, from the
 * loop (at the latest during mom_peer_stop, with GRPC_STATUS_CANCELLED).
 * Returns -1 when it could not be started (stopping, too many calls, too
 * large, out of memory): cb is not called.
 */
int mom_peer_call(mom_peer_channel *ch, const char *method, const uint8_t *buf,
                  size_t len, int deadline_ms, mom_peer_call_cb cb, void *ctx);

typedef struct {
    void (*on_message)(void *ctx, const uint8_t *buf, size_t len);
    /* Last callback of the stream: its final status. */
    void (*on_end)(void *ctx, grpc_status_code status, const char *detail);
} mom_peer_stream_cbs;

/*
 * Starts a server-streaming call; deadline_ms <= 0 means no deadline (dead
 * connections are still detected by keepalive pings). Messages arrive in
 * order. Returns NULL (no callback made) when it could not be started.
 */
mom_peer_stream *mom_peer_stream_call(mom_peer_channel *ch, const char *method,
                                      const uint8_t *buf, size_t len,
                                      int deadline_ms,
                                      const mom_peer_stream_cbs *cbs,
                                      void *ctx);

/*
 * Opens a bidirectional stream (deadline_ms <= 0: none; dead connections
 * are found by keepalive pings). Messages are written with
 * mom_peer_stream_write and leave in order, one at a time; the server's
 * messages arrive at cbs->on_message, then one on_end (unless cancelled).
 * NULL (no callback made) when it could not be started.
 */
mom_peer_stream *mom_peer_bidi_call(mom_peer_channel *ch, const char *method,
                                    int deadline_ms,
                                    const mom_peer_stream_cbs *cbs, void *ctx);

/*
 * Queues one message on a client bidi stream. Returns 0, or -1 when the
 * stream is ending or its queue is full (stream_queue / stream_msgs) or
 * the message too large: nothing is queued.
 */
int mom_peer_stream_write(mom_peer_stream *s, const uint8_t *buf, size_t len);

/* Messages written to a client stream and not yet handed to the transport
 * (the one being sent included). */
size_t mom_peer_stream_unsent(const mom_peer_stream *s);

/*
 * Cancels a stream before its on_end: no callback is made for it after this
 * returns and the handle is dead. May be called from its own on_message.
 */
void mom_peer_stream_cancel(mom_peer_stream *s);

/*
 * Stops everything, on the loop thread but never from a mom_peer callback:
 * the server stops accepting, all calls are cancelled (outstanding client
 * callbacks get GRPC_STATUS_CANCELLED, served calls get closed()), the
 * completion queue is drained, the gRPC thread joined, channels and server
 * destroyed. The last bytes (the uv_async handle) are freed by the loop's
 * next iteration: run the loop once more before uv_loop_close.
 */
void mom_peer_stop(mom_peer *p);

#endif /* MOM_PEER_H */
