/*
 * The cluster side of momd: the peer gRPC service (peer.h) between the
 * members, the Raft transport of the commit path (messages batched per
 * destination node, one call in flight per destination, so that they
 * arrive in order), requests forwarded to and from other members, topic
 * streams from other members, and the status file that tells which
 * partitions this node leads.
 */
#ifndef MOM_CLUSTER_H
#define MOM_CLUSTER_H

#include <stdint.h>

#include <uv.h>

#include "commit.h"
#include "conf.h"
#include "mom.pb-c.h"
#include "ops.h"
#include "peer.h"
#include "placement.h"

typedef struct mom_cluster_s mom_cluster_t;
typedef struct mom_served_s mom_served_t; /* a forwarded request served */
typedef struct mom_stream_served_s mom_stream_served_t; /* a Subscribe */

/*
 * Starts the peer service on this member's gRPC address (when momd.conf
 * lists members) and becomes the commit path's transport; writes
 * <data_dir>/status. NULL on failure (address in use...).
 */
mom_cluster_t *mom_cluster_start(uv_loop_t *loop, const mom_conf_t *conf,
                                 const mom_placement_t *pl,
                                 mom_commit_t *commit, mom_ops_t *ops);

/*
 * Before a clean stop: hands every leadership of this node to another
 * voter (so that its partitions need no election), then calls done; at the
 * latest after timeout_ms (a follower may be down or behind). done is
 * called from a timer, never from inside this call.
 */
void mom_cluster_handoff(mom_cluster_t *cl, unsigned timeout_ms,
                         void (*done)(void *data), void *data);

/* Stops the peer service: calls in flight end (client callbacks get
 * GRPC_STATUS_CANCELLED). Not from a peer callback. */
void mom_cluster_stop(mom_cluster_t *cl);

/*
 * Forwards a request to member `node`: it rides the next RaftBatch to
 * that member, or goes as a Forward call while the member's stream has not
 * said it serves carried requests (forward.c).
 * cb gets the gRPC status and, when it is OK, the decoded answer (valid
 * during cb); exactly once, later, never from inside this call. Returns -1
 * (cb never called) when it cannot be sent.
 */
typedef void (*mom_cluster_forward_cb)(void *ctx, grpc_status_code status,
                                       const Mom__Response *resp);
int mom_cluster_forward(mom_cluster_t *cl, uint32_t node,
                        const Mom__Request *req, int deadline_ms,
                        mom_cluster_forward_cb cb, void *ctx);

/* Opens a Subscribe stream to member `node` (relay.c). NULL on failure. */
mom_peer_stream *mom_cluster_subscribe(mom_cluster_t *cl, uint32_t node,
                                       const Mom__Request *req,
                                       const mom_peer_stream_cbs *cbs,
                                       void *ctx);

/* The op serving a Forward (so that a peer going away detaches it). */
void mom_cluster_attach(mom_served_t *s, mom_op_t *op);
/* Answers a Forward; s is dead afterwards. */
void mom_cluster_answer(mom_served_t *s, const Mom__Response *resp);
/* A served Subscribe was ended by us (mom_peer_stream_end); s is dead. */
void mom_cluster_served_end(mom_stream_served_t *s);

#endif
