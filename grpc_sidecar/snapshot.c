/*
 * Partition snapshots: rows of the store <-> a mom.Snapshot message. Built
 * with malloc() so that protobuf-c's free_unpacked releases either kind.
 */
#include <stdlib.h>
#include <string.h>

#include "command.pb-c.h"
#include "log.h"
#include "ring.h"
#include "sm.h"
#include "snapshot.h"

/*
 * Makes room for element n of a growable array of pointers, given the
 * address of the array pointer (any pointer type: accessed with memcpy).
 */
static int
mom_snapshot_room(void *array_slot, size_t n)
{
    void *array;

    if ((n & (n - 1)) != 0) { /* capacity is the next power of two */
        return 0;
    }
    memcpy(&array, array_slot, sizeof(array));
    array = realloc(array, (n ? n * 2 : 1) * sizeof(void *));
    if (array == NULL) {
        return -1;
    }
    memcpy(array_slot, &array, sizeof(array));
    return 0;
}

static char *
mom_snapshot_strndup(const char *s, size_t len)
{
    char *copy = malloc(len + 1);

    if (copy != NULL) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

static int
mom_snapshot_bytes(ProtobufCBinaryData *out, const void *data, size_t len)
{
    out->data = malloc(len ? len : 1);
    if (out->data == NULL) {
        return -1;
    }
    memcpy(out->data, data, len);
    out->len = len;
    return 0;
}

static int
mom_snapshot_user(void *data, const mom_store_row_t *row)
{
    Mom__Snapshot *snap = data;
    Mom__SnapshotUser *u = malloc(sizeof(*u));

    if (u == NULL) {
        return -1;
    }
    mom__snapshot_user__init(u);
    if (mom_snapshot_room(&snap->users, snap->n_users) != 0) {
        free(u);
        return -1;
    }
    snap->users[snap->n_users++] = u;
    u->name = mom_snapshot_strndup(row->name, row->name_len);
    u->password_hash = mom_snapshot_strndup(row->text, row->text_len);
    return u->name == NULL || u->password_hash == NULL ? -1 : 0;
}

typedef struct {
    Mom__SnapshotCollection ***colls;
    size_t *n_colls;
    size_t cursor; /* messages arrive ordered by collection name */
} mom_snapshot_colls_t;

static int
mom_snapshot_coll(void *data, const mom_store_row_t *row)
{
    mom_snapshot_colls_t *cs = data;
    Mom__SnapshotCollection *c = malloc(sizeof(*c));

    if (c == NULL) {
        return -1;
    }
    mom__snapshot_collection__init(c);
    if (mom_snapshot_room(cs->colls, *cs->n_colls) != 0) {
        free(c);
        return -1;
    }
    (*cs->colls)[(*cs->n_colls)++] = c;
    c->name = mom_snapshot_strndup(row->name, row->name_len);
    c->owner = mom_snapshot_strndup(row->text, row->text_len);
    c->next_seq = row->seq;
    return c->name == NULL || c->owner == NULL ? -1 : 0;
}

static int
mom_snapshot_msg(void *data, const mom_store_row_t *row)
{
    mom_snapshot_colls_t *cs = data;
    Mom__SnapshotCollection *c;
    Mom__SnapshotMessage *m;

    /* Both scans are ordered by name (BINARY): advance to the owner. */
    for (;; cs->cursor++) {
        if (cs->cursor == *cs->n_colls) {
            return -1; /* a message without its collection: corrupt */
        }
        c = (*cs->colls)[cs->cursor];
        if (strlen(c->name) == row->name_len &&
            memcmp(c->name, row->name, row->name_len) == 0) {
            break;
        }
    }
    m = malloc(sizeof(*m));
    if (m == NULL) {
        return -1;
    }
    mom__snapshot_message__init(m);
    if (mom_snapshot_room(&c->messages, c->n_messages) != 0) {
        free(m);
        return -1;
    }
    c->messages[c->n_messages++] = m;
    m->seq = row->seq;
    m->timestamp_ms = row->num;
    m->sender = mom_snapshot_strndup(row->text, row->text_len);
    if (m->sender == NULL ||
        mom_snapshot_bytes(&m->content, row->blob, row->blob_len) != 0) {
        return -1;
    }
    return 0;
}

static int
mom_snapshot_result(void *data, const mom_store_row_t *row)
{
    Mom__Snapshot *snap = data;
    Mom__SnapshotResult *r = malloc(sizeof(*r));

    if (r == NULL) {
        return -1;
    }
    mom__snapshot_result__init(r);
    if (mom_snapshot_room(&snap->results, snap->n_results) != 0) {
        free(r);
        return -1;
    }
    snap->results[snap->n_results++] = r;
    r->producer = (uint64_t)row->num;
    r->sequence = row->seq;
    r->status = row->status;
    return mom_snapshot_bytes(&r->body, row->blob, row->blob_len);
}

int
mom_snapshot_take(mom_store_t *st, uint32_t partitions, uint32_t partition,
                  uint8_t **buf, size_t *len)
{
    Mom__Snapshot *snap = malloc(sizeof(*snap));
    mom_snapshot_colls_t topics, queues;
    int rc = -1;

    if (snap == NULL) {
        return -1;
    }
    mom__snapshot__init(snap);
    snap->partition = partition;
    snap->partitions = partitions;
    topics = (mom_snapshot_colls_t){&snap->topics, &snap->n_topics, 0};
    queues = (mom_snapshot_colls_t){&snap->queues, &snap->n_queues, 0};

    if (mom_store_part_scan(st, MOM_PART_USERS, partitions, partition,
                            mom_snapshot_user, snap) != MOM_STORE_OK ||
        mom_store_part_scan(st, MOM_PART_TOPICS, partitions, partition,
                            mom_snapshot_coll, &topics) != MOM_STORE_OK ||
        mom_store_part_scan(st, MOM_PART_TOPIC_MESSAGES, partitions, partition,
                            mom_snapshot_msg, &topics) != MOM_STORE_OK ||
        mom_store_part_scan(st, MOM_PART_QUEUES, partitions, partition,
                            mom_snapshot_coll, &queues) != MOM_STORE_OK ||
        mom_store_part_scan(st, MOM_PART_QUEUE_MESSAGES, partitions, partition,
                            mom_snapshot_msg, &queues) != MOM_STORE_OK ||
        mom_store_part_scan(st, MOM_PART_RESULTS, partitions, partition,
                            mom_snapshot_result, snap) != MOM_STORE_OK) {
        mom_log_error("snapshot of partition %u failed", partition);
        goto done;
    }
    *len = mom__snapshot__get_packed_size(snap);
    *buf = malloc(*len ? *len : 1);
    if (*buf != NULL) {
        mom__snapshot__pack(snap, *buf);
        rc = 0;
    }

done:
    mom__snapshot__free_unpacked(snap, NULL);
    return rc;
}

/* A name is restorable when valid and of this partition. */
static bool
mom_snapshot_name_ok(const char *name, uint32_t partitions, uint32_t partition)
{
    return mom_name_valid(name) &&
           mom_partition_of(name, strlen(name), partitions) == partition;
}

static int
mom_snapshot_restore_colls(mom_store_t *st, mom_coll_t kind,
                           Mom__SnapshotCollection **colls, size_t n,
                           uint32_t partitions, uint32_t partition)
{
    for (size_t i = 0; i < n; i++) {
        Mom__SnapshotCollection *c = colls[i];

        if (!mom_snapshot_name_ok(c->name, partitions, partition) ||
            mom_store_coll_restore(st, kind, c->name, c->owner, c->next_seq) !=
                MOM_STORE_OK) {
            return -1;
        }
        for (size_t j = 0; j < c->n_messages; j++) {
            Mom__SnapshotMessage *m = c->messages[j];
            mom_store_msg_t msg = {
                .seq = m->seq,
                .sender = m->sender,
                .sender_len = strlen(m->sender),
                .content = m->content.data,
                .content_len = m->content.len,
                .ts_ms = m->timestamp_ms,
            };

            if (m->seq == 0 || m->seq >= c->next_seq ||
                mom_store_msg_restore(st, kind, c->name, &msg) !=
                    MOM_STORE_OK) {
                return -1;
            }
        }
    }
    return 0;
}

int
mom_snapshot_restore(mom_store_t *st, uint32_t partitions, uint32_t partition,
                     const uint8_t *buf, size_t len, uint64_t index)
{
    Mom__Snapshot *snap = mom__snapshot__unpack(NULL, len, buf);
    int rc = -1;

    if (snap == NULL || snap->partition != partition ||
        snap->partitions != partitions) {
        mom_log_error("snapshot for partition %u: malformed or foreign",
                      partition);
        goto done;
    }
    if (mom_store_part_clear(st, partitions, partition) != MOM_STORE_OK) {
        goto done;
    }
    for (size_t i = 0; i < snap->n_users; i++) {
        Mom__SnapshotUser *u = snap->users[i];

        if (!mom_snapshot_name_ok(u->name, partitions, partition) ||
            mom_store_user_insert(st, u->name, u->password_hash) !=
                MOM_STORE_OK) {
            goto done;
        }
    }
    if (mom_snapshot_restore_colls(st, MOM_TOPIC, snap->topics, snap->n_topics,
                                   partitions, partition) != 0 ||
        mom_snapshot_restore_colls(st, MOM_QUEUE, snap->queues, snap->n_queues,
                                   partitions, partition) != 0) {
        goto done;
    }
    for (size_t i = 0; i < snap->n_results; i++) {
        Mom__SnapshotResult *r = snap->results[i];

        if (mom_store_dedup_put(st, partition, r->producer, r->sequence,
                                r->status, r->body.data,
                                r->body.len) != MOM_STORE_OK) {
            goto done;
        }
    }
    rc = mom_store_set_applied_index(st, partition, index) == MOM_STORE_OK ? 0
                                                                           : -1;

done:
    if (rc != 0 && snap != NULL) {
        mom_log_error("restoring the snapshot of partition %u failed",
                      partition);
    }
    if (snap != NULL) {
        mom__snapshot__free_unpacked(snap, NULL);
    }
    return rc;
}
