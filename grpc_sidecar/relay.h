/*
 * Topic streams across nodes. A node that does not replicate a topic's
 * partition relays the stream of a replica: one upstream Subscribe stream
 * per local subscriber, whose frames go to nginx as they are. A replica
 * serves such a Subscribe through a connection to its own Unix socket, so
 * that the stream is exactly the local one (replay, live, heartbeats,
 * token expiry, final events; sse.c).
 */
#ifndef MOM_RELAY_H
#define MOM_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "ops.h"
#include "peer.h"

/* Relays op (OP_SUBSCRIBE from nginx) from a replica; answers it. */
void mom_relay_start(mom_op_t *op);

/* Serves a peer's Subscribe on this replica; returns the relay context
 * (NULL: the call was already ended). */
void *mom_relay_serve(mom_ops_t *ops, mom_stream_served_t *s,
                      mom_peer_srv *call, const uint8_t *req, size_t len);

/* The peer of a served Subscribe went away (its handle is dead). */
void mom_relay_serve_closed(void *ctx);

#endif
