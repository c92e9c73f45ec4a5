/*
 * Requests forwarded between members, both ways (cluster.c's Forward and
 * ForwardBatch). A node batches what it forwards to one member during one
 * loop iteration into one ForwardBatch call; the member serves each request
 * of a batch as its own operation (ops.c) and answers the call once every
 * one of them has its answer. The public face is cluster.h
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

typedef struct mom_forward_s mom_forward_t;

/* NULL when out of memory. */
mom_forward_t *mom_forward_new(uv_loop_t *loop, mom_ops_t *ops);

/* Queues req for member channel ch; sent at the end of this loop
 * iteration (or at once when the batch is full). See mom_cluster_forward. */
int mom_forward_send(mom_forward_t *fw, mom_peer_channel *ch,
                     const Mom__Request *req, int deadline_ms,
                     mom_cluster_forward_cb cb, void *ctx);

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
