/*
 * peer_internal.h: the private structures shared by peer.c (completion-queue
 * thread, hand-off to the loop, client calls, start/stop) and peer_server.c
 * (served calls). Nothing outside these two files includes it: together
 * they are momd's whole use of the gRPC C core.
 */

#ifndef MOM_PEER_INTERNAL_H
#define MOM_PEER_INTERNAL_H

#include <pthread.h>

#include <grpc/grpc.h>
#include <grpc/byte_buffer_reader.h>

#include "peer.h"

/* Requests for new calls kept armed on the server. */
#define PEER_ARMED_REQUESTS 32
/* Per-channel cache of registered method paths. */
#define PEER_REGISTERED_METHODS 8
#define PEER_MAX_ARGS 12
/* A connection attempt (TCP and HTTP/2 handshake) may take this long. */
#define PEER_CONNECT_TIMEOUT_MS 3000

typedef enum {
    PEER_OP_SHUTDOWN,   /* server shutdown notification */
    PEER_OP_SRV_NEW,    /* grpc_server_request_call matched a call */
    PEER_OP_SRV_RECV,   /* the request message */
    PEER_OP_SRV_SEND,   /* a send batch (message and/or status) */
    PEER_OP_SRV_CLOSE,  /* RECV_CLOSE_ON_SERVER: the call is over */
    PEER_OP_CLI_UNARY,  /* the one batch of a unary client call */
    PEER_OP_CLI_START,  /* stream: send request, receive initial metadata */
    PEER_OP_CLI_RECV,   /* stream: one message or the end */
    PEER_OP_CLI_STATUS, /* stream: RECV_STATUS_ON_CLIENT */
    PEER_OP_CLI_SEND,   /* bidi stream: one message written */
} mom_peer_op_kind;

typedef struct mom_peer_op {
    struct mom_peer_op *next;
    void *owner;
    mom_peer_op_kind kind;
    int success;
    /* Lazy: its completion does not wake the loop by itself (it is
     * dispatched with the next one that does). Set by the loop before the
     * batch starts, cleared under mu; queued: completed and in the
     * hand-off list, under mu. */
    unsigned lazy : 1, queued : 1;
} mom_peer_op;

typedef struct mom_peer_msg {
    struct mom_peer_msg *next;
    grpc_byte_buffer *bb;
    size_t len;
} mom_peer_msg;

/* Messages of a stream waiting for the send in flight (FIFO). */
typedef struct {
    mom_peer_msg *head, *tail;
    size_t count, bytes;
} mom_peer_msgq;

typedef enum {
    PEER_SRV_RECEIVING, /* waiting for the request message */
    PEER_SRV_APP,       /* the application holds the handle */
    PEER_SRV_DONE,      /* completed by us or the application, or closed */
} mom_peer_srv_state;

struct mom_peer_srv {
    mom_peer *p;
    mom_peer_srv *prev, *next;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb; /* in the send batch in flight */
    int method;
    int streaming; /* a server-streaming method */
    int cancelled; /* RECV_CLOSE_ON_SERVER's out argument */
    unsigned pending;
    mom_peer_srv_state state;
    unsigned closed : 1, sending : 1, md_sent : 1, ending : 1, status_sent : 1;
    mom_peer_msgq q; /* served stream: waiting for the send in flight */
    grpc_status_code end_status;
    char *end_detail;
    mom_peer_op op_new, op_recv, op_send, op_close;
};

/* A client call: unary (cb) or server-streaming (cbs). */
struct mom_peer_stream {
    mom_peer *p;
    mom_peer_stream *prev, *next;
    grpc_call *call;
    int streaming;
    unsigned pending;
    int detached; /* no callback any more (stream cancelled by the app) */
    int bidi;     /* messages are written by the application */
    int sending;  /* a SEND_MESSAGE batch is in flight (send_bb) */
    int over;     /* the status arrived: nothing more can be sent */
    grpc_byte_buffer *send_bb, *recv_bb;
    mom_peer_msgq q; /* bidi: written, waiting for the send in flight */
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice detail;
    mom_peer_call_cb cb;
    mom_peer_stream_cbs cbs;
    void *ctx;
    mom_peer_op op_main, op_recv, op_status, op_send;
};

typedef struct {
    char *path;
    void *handle;
} mom_peer_registered;

struct mom_peer_channel {
    mom_peer_channel *next;
    mom_peer *p;
    char *addr;
    grpc_channel *ch;
    mom_peer_registered reg[PEER_REGISTERED_METHODS];
    int nreg;
};

struct mom_peer {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_t thread;
    int thread_started;

    /* shared with the completion-queue thread, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    mom_peer_op *q_head, *q_tail;
    int waiting;      /* mom_peer_stop waits on cond */
    int wake_pending; /* uv_async_send made, the loop has not taken q */

    /* loop thread only from here */
    mom_peer_op *local_head, *local_tail; /* taken from q, being dispatched */
    size_t outstanding; /* tags started and not yet dispatched */
    int stopping;
    grpc_completion_queue *cq;
    grpc_server *server;
    int port;
    mom_peer_handlers h;
    void *ctx;
    mom_peer_options o;
    grpc_arg cli_arg[PEER_MAX_ARGS];
    grpc_channel_args cli_args;
    mom_peer_channel *channels;
    mom_peer_srv *srv_calls;
    mom_peer_stream *cli_calls;
    unsigned n_srv, n_cli;
    unsigned armed; /* grpc_server_request_call outstanding */
    mom_peer_op op_shutdown;
};

/* shared helpers (peer.c) */
void mom_peer_log(const char *what, grpc_call_error err);
void mom_peer_op_init(mom_peer_op *o, void *owner, mom_peer_op_kind kind);
void mom_peer_op_fill(grpc_op *g, grpc_op_type type);
void mom_peer_set_int(grpc_arg *a, const char *key, int value);
grpc_byte_buffer *mom_peer_bytes_to_bb(const uint8_t *buf, size_t len);
/* A copy of buf at the end of q; -1 when out of memory. */
int mom_peer_msgq_push(mom_peer_msgq *q, const uint8_t *buf, size_t len);
/* The first message's buffer (the caller owns it), NULL if q is empty. */
grpc_byte_buffer *mom_peer_msgq_pop(mom_peer_msgq *q);
void mom_peer_msgq_clear(mom_peer_msgq *q);
int mom_peer_bb_to_slice(grpc_byte_buffer *bb, grpc_slice *out);
/* starts a batch whose completion is mom_peer_op o, counting it as outstanding
 */
grpc_call_error mom_peer_start_batch(mom_peer *p, grpc_call *call,
                                     const grpc_op *ops, size_t n,
                                     mom_peer_op *o);

/* the server (peer_server.c) */
int mom_peer_srv_listen(mom_peer *p, const char *listen_addr);
void mom_peer_srv_dispatch(mom_peer *p, mom_peer_op *o);
/* A lazy op (its completion does not wake the loop): the loop now waits
 * for it. */
void mom_peer_op_eager(mom_peer *p, mom_peer_op *o);

#endif /* MOM_PEER_INTERNAL_H */
