/*
 * Requests forwarded between members, both ways. A forwarded request and
 * its answer ride the Raft streams (RaftBatch requests and responses,
 * cluster.c writes and reads them); the member serves each request as its
 * own operation (ops.c). A member that does not say it serves them (a
 * momd from before) gets Forward calls; Forward and ForwardBatch calls
 * are still served. The public face is cluster.h
 * (mom_cluster_forward, mom_cluster_attach, mom_cluster_answer).
 */
#ifndef MOM_FORWARD_H
#define MOM_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cluster.h"
#include "ops.h"
#include "peer.h"
#include "peer.pb-c.h"

typedef struct mom_forward_s mom_forward_t;

/* NULL when out of memory. flush(flush_ctx) writes every member's queue
 * (cluster.c's Raft transport); called before and after the loop polls
 * while anything is queued. */
mom_forward_t *mom_forward_new(uv_loop_t *loop, mom_ops_t *ops,
                               void (*flush)(void *ctx), void *flush_ctx);

/* Queues req for member `node`, to ride the next RaftBatch to it. See
 * mom_cluster_forward. */
int mom_forward_send(mom_forward_t *fw, uint32_t node, const Mom__Request *req,
                     int deadline_ms, mom_cluster_forward_cb cb, void *ctx);

/* Sends req to a member that does not take carried requests, as one
 * Forward call on its channel ch. Same contract as mom_forward_send. */
int mom_forward_call(mom_forward_t *fw, mom_peer_channel *ch,
                     const Mom__Request *req, int deadline_ms,
                     mom_cluster_forward_cb cb, void *ctx);

/* Whether requests or answers wait for the next RaftBatch to node. */
bool mom_forward_queued(mom_forward_t *fw, uint32_t node);

/* Lends batch the requests and answers queued for node (as many as fit),
 * until mom_forward_filled, which must follow once batch is packed:
 * written false fails every request waiting on node (route.c retries).
 * -1 when out of memory (filled already, with written false). */
int mom_forward_fill(mom_forward_t *fw, uint32_t node, Mom__RaftBatch *batch);
void mom_forward_filled(mom_forward_t *fw, uint32_t node, bool written);

/* What a RaftBatch from node carried: requests to serve (answered in our
 * RaftBatches to node) and answers to our requests. */
void mom_forward_serve_carried(mom_forward_t *fw, uint32_t node,
                               Mom__Carried *const *reqs, size_t n);
void mom_forward_answered(mom_forward_t *fw, uint32_t node,
                          Mom__Carried *const *answers, size_t n);

/* A Raft stream to or from node broke: the requests waiting on node fail
 * with UNAVAILABLE (their requests or answers may be lost). */
void mom_forward_lost(mom_forward_t *fw, uint32_t node);

/* Serves a Forward (batch false: req is one mom.Request) or a
 * ForwardBatch (req is a mom.ForwardRequests). */
void mom_forward_serve(mom_forward_t *fw, mom_peer_srv *call, bool batch,
                       const uint8_t *req, size_t len);

/* The peer of a served call went away: true when it was a forward (its
 * operations are detached: their answers are dropped). */
bool mom_forward_closed(mom_forward_t *fw, mom_peer_srv *call);

/* Before mom_peer_stop: queued forwards fail (CANCELLED), nothing more is
 * sent. After it: mom_forward_free (closes the handles; frees later). */
void mom_forward_stop(mom_forward_t *fw);
void mom_forward_free(mom_forward_t *fw);

#endif
