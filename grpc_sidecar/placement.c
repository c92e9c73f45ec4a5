/*
 * Placement of partitions on members, computed once at start from
 * momd.conf: one replica list per partition, read by the commit path (which
 * Raft groups to host, their voters) and by routing (where to forward).
 */
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "ring.h"

struct mom_placement_s {
    uint32_t self;
    uint32_t partitions;
    size_t r;           /* replicas per partition */
    uint32_t *replicas; /* partitions x r */
    size_t n_members;
    uint32_t ids[MOM_CONF_MAX_MEMBERS];
    const char *grpc[MOM_CONF_MAX_MEMBERS];
};

mom_placement_t *
mom_placement_new(const mom_conf_t *conf)
{
    mom_placement_t *pl = calloc(1, sizeof(*pl));
    mom_ring_t *ring;
    size_t got;

    if (pl == NULL) {
        return NULL;
    }
    pl->self = conf->node_id;
    pl->partitions = conf->partitions;
    if (conf->n_members == 0) {
        pl->n_members = 1;
        pl->ids[0] = conf->node_id;
    } else {
        pl->n_members = conf->n_members;
        for (size_t i = 0; i < conf->n_members; i++) {
            pl->ids[i] = conf->members[i].id;
            pl->grpc[i] = conf->members[i].grpc_addr;
        }
    }
    pl->r = conf->replicas < pl->n_members ? conf->replicas : pl->n_members;
    ring = mom_ring_build(pl->ids, pl->n_members, 0);
    pl->replicas = calloc((size_t)pl->partitions * pl->r, sizeof(uint32_t));
    if (ring == NULL || pl->replicas == NULL) {
        mom_ring_free(ring);
        mom_placement_free(pl);
        return NULL;
    }
    for (uint32_t p = 0; p < pl->partitions; p++) {
        got = mom_ring_replicas(ring, p, pl->r, &pl->replicas[p * pl->r]);
        (void)got; /* == r: the ring holds every member */
    }
    mom_ring_free(ring);
    return pl;
}

void
mom_placement_free(mom_placement_t *pl)
{
    if (pl != NULL) {
        free(pl->replicas);
        free(pl);
    }
}

uint32_t
mom_placement_self(const mom_placement_t *pl)
{
    return pl->self;
}

uint32_t
mom_placement_partitions(const mom_placement_t *pl)
{
    return pl->partitions;
}

uint32_t
mom_placement_partition(const mom_placement_t *pl, const char *name)
{
    return mom_partition_of(name, strlen(name), pl->partitions);
}

const uint32_t *
mom_placement_replicas(const mom_placement_t *pl, uint32_t p, size_t *n)
{
    if (p >= pl->partitions) {
        *n = 0;
        return NULL;
    }
    *n = pl->r;
    return &pl->replicas[(size_t)p * pl->r];
}

bool
mom_placement_is_replica(const mom_placement_t *pl, uint32_t p, uint32_t node)
{
    size_t n;
    const uint32_t *r = mom_placement_replicas(pl, p, &n);

    for (size_t i = 0; i < n; i++) {
        if (r[i] == node) {
            return true;
        }
    }
    return false;
}

size_t
mom_placement_members(const mom_placement_t *pl)
{
    return pl->n_members;
}

uint32_t
mom_placement_member_id(const mom_placement_t *pl, size_t i)
{
    return i < pl->n_members ? pl->ids[i] : 0;
}

const char *
mom_placement_grpc_addr(const mom_placement_t *pl, uint32_t id)
{
    for (size_t i = 0; i < pl->n_members; i++) {
        if (pl->ids[i] == id) {
            return pl->grpc[i];
        }
    }
    return NULL;
}
