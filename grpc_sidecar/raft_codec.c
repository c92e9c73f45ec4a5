/*
 * Raft message codec (see raft_codec.h): every message is
 *   u8 wire version, u8 message type, u8 libraft message version,
 * then the type's fields as unsigned LEB128 varints, then blobs. The full
 * layout is in docs/replication.md. Decoding checks every length against the
 * buffer and the invariants raft_step() asserts but does not check in a
 * release build (it is built without assertions).
 */
#include <stdlib.h>
#include <string.h>

#include "raft_codec.h"

#define CODEC_MAX_FIELDS 8

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int bad;
} codec_reader_t;

static size_t
varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint64_t
get_varint(codec_reader_t *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;

    while (r->p < r->end && shift < 64) {
        b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            return v;
        }
        shift += 7;
    }
    r->bad = 1;
    return 0;
}

/* A varint that must fit in `max`. */
static uint64_t
get_bounded(codec_reader_t *r, uint64_t max)
{
    uint64_t v = get_varint(r);

    if (v > max) {
        r->bad = 1;
    }
    return v;
}

static const uint8_t *
get_bytes(codec_reader_t *r, uint64_t n)
{
    const uint8_t *p = r->p;

    if (n > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        return NULL;
    }
    r->p += n;
    return p;
}

/* The fixed fields of each message type, in wire order. */
static int
header_fields(const struct raft_message *m, uint64_t *f, unsigned *nf,
              unsigned char *version)
{
    unsigned n = 0;

    switch (m->type) {
    case RAFT_REQUEST_VOTE:
        *version = m->request_vote.version;
        f[n++] = m->request_vote.term;
        f[n++] = m->request_vote.candidate_id;
        f[n++] = m->request_vote.last_log_index;
        f[n++] = m->request_vote.last_log_term;
        f[n++] = (m->request_vote.disrupt_leader ? 1 : 0) |
                 (m->request_vote.pre_vote ? 2 : 0);
        break;
    case RAFT_REQUEST_VOTE_RESULT:
        *version = m->request_vote_result.version;
        f[n++] = m->request_vote_result.term;
        f[n++] = (m->request_vote_result.vote_granted ? 1 : 0) |
                 (m->request_vote_result.pre_vote ? 2 : 0);
        f[n++] = m->request_vote_result.features;
        f[n++] = m->request_vote_result.capacity;
        break;
    case RAFT_APPEND_ENTRIES:
        *version = m->append_entries.version;
        f[n++] = m->append_entries.term;
        f[n++] = m->append_entries.prev_log_index;
        f[n++] = m->append_entries.prev_log_term;
        f[n++] = m->append_entries.leader_commit;
        f[n++] = m->append_entries.n_entries;
        break;
    case RAFT_APPEND_ENTRIES_RESULT:
        *version = m->append_entries_result.version;
        f[n++] = m->append_entries_result.term;
        f[n++] = m->append_entries_result.rejected;
        f[n++] = m->append_entries_result.last_log_index;
        f[n++] = m->append_entries_result.features;
        f[n++] = m->append_entries_result.capacity;
        break;
    case RAFT_INSTALL_SNAPSHOT:
        *version = m->install_snapshot.version;
        f[n++] = m->install_snapshot.term;
        f[n++] = m->install_snapshot.last_index;
        f[n++] = m->install_snapshot.last_term;
        f[n++] = m->install_snapshot.conf_index;
        break;
    case RAFT_TIMEOUT_NOW:
        *version = m->timeout_now.version;
        f[n++] = m->timeout_now.term;
        f[n++] = m->timeout_now.last_log_index;
        f[n++] = m->timeout_now.last_log_term;
        break;
    default:
        return -1;
    }
    *nf = n;
    return 0;
}

int
mom_raft_encode(const struct raft_message *msg,
                const struct raft_buffer *snapshot_conf, uint8_t **buf,
                size_t *len)
{
    uint64_t f[CODEC_MAX_FIELDS];
    unsigned nf, i;
    unsigned char version;
    const struct raft_entry *e;
    const struct raft_install_snapshot *is = &msg->install_snapshot;
    size_t size = 3, conf_len = 0;
    uint8_t *out, *p;

    if (header_fields(msg, f, &nf, &version) != 0) {
        return -1;
    }
    for (i = 0; i < nf; i++) {
        size += varint_len(f[i]);
    }
    if (msg->type == RAFT_APPEND_ENTRIES) {
        for (i = 0; i < msg->append_entries.n_entries; i++) {
            e = &msg->append_entries.entries[i];
            size += varint_len(e->term) + varint_len((uint64_t)e->type) +
                    varint_len(e->buf.len) + e->buf.len;
        }
    } else if (msg->type == RAFT_INSTALL_SNAPSHOT) {
        conf_len = snapshot_conf != NULL ? snapshot_conf->len : 0;
        size += varint_len(conf_len) + conf_len + varint_len(is->data.len) +
                is->data.len;
    }

    out = malloc(size);
    if (out == NULL) {
        return -1;
    }
    p = out;
    *p++ = MOM_RAFT_WIRE_VERSION;
    *p++ = (uint8_t)msg->type;
    *p++ = version;
    for (i = 0; i < nf; i++) {
        p = put_varint(p, f[i]);
    }
    if (msg->type == RAFT_APPEND_ENTRIES) {
        for (i = 0; i < msg->append_entries.n_entries; i++) {
            e = &msg->append_entries.entries[i];
            p = put_varint(p, e->term);
            p = put_varint(p, (uint64_t)e->type);
            p = put_varint(p, e->buf.len);
        }
        for (i = 0; i < msg->append_entries.n_entries; i++) {
            e = &msg->append_entries.entries[i];
            if (e->buf.len > 0) {
                memcpy(p, e->buf.base, e->buf.len);
                p += e->buf.len;
            }
        }
    } else if (msg->type == RAFT_INSTALL_SNAPSHOT) {
        p = put_varint(p, conf_len);
        if (conf_len > 0) {
            memcpy(p, snapshot_conf->base, conf_len);
            p += conf_len;
        }
        p = put_varint(p, is->data.len);
        if (is->data.len > 0) {
            memcpy(p, is->data.base, is->data.len);
            p += is->data.len;
        }
    }
    *buf = out;
    *len = (size_t)(p - out);
    return 0;
}

static int
decode_entries(codec_reader_t *r, struct raft_append_entries *ae)
{
    uint64_t n = ae->n_entries, total = 0, i;
    const uint8_t *data;
    uint8_t *batch, *cursor;
    struct raft_entry *entries;

    ae->entries = NULL;
    /* Each entry header takes at least 3 bytes: bound n before allocating. */
    if (n == 0) {
        return 0;
    }
    if (n > (uint64_t)(r->end - r->p) / 3) {
        return -1;
    }
    entries = raft_malloc(n * sizeof *entries);
    if (entries == NULL) {
        return -1;
    }
    for (i = 0; i < n && !r->bad; i++) {
        entries[i].term = get_varint(r);
        entries[i].type = (enum raft_entry_type)get_bounded(r, RAFT_CHANGE);
        entries[i].buf.len = get_bounded(r, (uint64_t)(r->end - r->p));
        if (entries[i].term == 0 || entries[i].type < RAFT_COMMAND) {
            r->bad = 1;
        }
        total += entries[i].buf.len;
        if (total > (uint64_t)(r->end - r->p)) {
            r->bad = 1;
        }
    }
    data = r->bad ? NULL : get_bytes(r, total);
    batch = data != NULL ? raft_malloc(total > 0 ? total : 1) : NULL;
    if (batch == NULL) {
        raft_free(entries);
        return -1;
    }
    memcpy(batch, data, total);
    cursor = batch;
    for (i = 0; i < n; i++) {
        entries[i].buf.base = cursor;
        entries[i].batch = batch;
        cursor += entries[i].buf.len;
    }
    ae->entries = entries;
    return 0;
}

static int
decode_snapshot(codec_reader_t *r, struct raft_install_snapshot *is)
{
    struct raft_buffer conf;
    const uint8_t *data;
    uint64_t n;

    raft_configuration_init(&is->conf);
    is->data.base = NULL;
    is->data.len = 0;
    n = get_varint(r);
    conf.base = (void *)get_bytes(r, n);
    conf.len = n;
    n = get_varint(r);
    data = get_bytes(r, n);
    if (r->bad || r->p != r->end || is->last_index == 0 || is->last_term == 0) {
        return -1;
    }
    if (raft_configuration_decode(&conf, &is->conf) != 0) {
        raft_configuration_close(&is->conf);
        raft_configuration_init(&is->conf);
        return -1;
    }
    is->data.base = raft_malloc(n > 0 ? n : 1);
    if (is->data.base == NULL) {
        raft_configuration_close(&is->conf);
        return -1;
    }
    memcpy(is->data.base, data, n);
    is->data.len = n;
    return 0;
}

int
mom_raft_decode(const uint8_t *buf, size_t len, struct raft_message *msg)
{
    codec_reader_t r = {buf, buf + len, 0};
    unsigned char version;
    uint64_t flags;

    memset(msg, 0, sizeof *msg);
    if (len < 3 || buf[0] != MOM_RAFT_WIRE_VERSION) {
        return -1;
    }
    msg->type = (enum raft_message_type)buf[1];
    version = buf[2];
    r.p += 3;

    switch (msg->type) {
    case RAFT_REQUEST_VOTE:
        msg->request_vote.version = version;
        msg->request_vote.term = get_varint(&r);
        msg->request_vote.candidate_id = get_varint(&r);
        msg->request_vote.last_log_index = get_varint(&r);
        msg->request_vote.last_log_term = get_varint(&r);
        flags = get_bounded(&r, 3);
        msg->request_vote.disrupt_leader = (flags & 1) != 0;
        msg->request_vote.pre_vote = (flags & 2) != 0;
        break;
    case RAFT_REQUEST_VOTE_RESULT:
        msg->request_vote_result.version = version;
        msg->request_vote_result.term = get_varint(&r);
        flags = get_bounded(&r, 3);
        msg->request_vote_result.vote_granted = (flags & 1) != 0;
        msg->request_vote_result.pre_vote = (flags & 2) != 0;
        msg->request_vote_result.features =
            (unsigned short)get_bounded(&r, 0xffff);
        msg->request_vote_result.capacity =
            (unsigned short)get_bounded(&r, 0xffff);
        break;
    case RAFT_APPEND_ENTRIES:
        msg->append_entries.version = version;
        msg->append_entries.term = get_varint(&r);
        msg->append_entries.prev_log_index = get_varint(&r);
        msg->append_entries.prev_log_term = get_varint(&r);
        msg->append_entries.leader_commit = get_varint(&r);
        msg->append_entries.n_entries = (unsigned)get_bounded(&r, UINT32_MAX);
        /* raft_step() asserts: a previous index has a term, 0 has none. */
        if (r.bad || (msg->append_entries.prev_log_index == 0) !=
                         (msg->append_entries.prev_log_term == 0)) {
            return -1;
        }
        if (decode_entries(&r, &msg->append_entries) != 0) {
            return -1;
        }
        if (r.p != r.end) {
            mom_raft_message_release(msg);
            return -1;
        }
        return 0;
    case RAFT_APPEND_ENTRIES_RESULT:
        msg->append_entries_result.version = version;
        msg->append_entries_result.term = get_varint(&r);
        msg->append_entries_result.rejected = get_varint(&r);
        msg->append_entries_result.last_log_index = get_varint(&r);
        msg->append_entries_result.features =
            (unsigned short)get_bounded(&r, 0xffff);
        msg->append_entries_result.capacity =
            (unsigned short)get_bounded(&r, 0xffff);
        break;
    case RAFT_INSTALL_SNAPSHOT:
        msg->install_snapshot.version = version;
        msg->install_snapshot.term = get_varint(&r);
        msg->install_snapshot.last_index = get_varint(&r);
        msg->install_snapshot.last_term = get_varint(&r);
        msg->install_snapshot.conf_index = get_varint(&r);
        return decode_snapshot(&r, &msg->install_snapshot);
    case RAFT_TIMEOUT_NOW:
        msg->timeout_now.version = version;
        msg->timeout_now.term = get_varint(&r);
        msg->timeout_now.last_log_index = get_varint(&r);
        msg->timeout_now.last_log_term = get_varint(&r);
        break;
    default:
        return -1;
    }
    if (r.bad || r.p != r.end) {
        return -1;
    }
    return 0;
}

void
mom_raft_message_release(struct raft_message *msg)
{
    switch (msg->type) {
    case RAFT_APPEND_ENTRIES:
        if (msg->append_entries.entries != NULL) {
            raft_free(msg->append_entries.entries[0].batch);
            raft_free(msg->append_entries.entries);
            msg->append_entries.entries = NULL;
        }
        break;
    case RAFT_INSTALL_SNAPSHOT:
        raft_configuration_close(&msg->install_snapshot.conf);
        raft_configuration_init(&msg->install_snapshot.conf);
        raft_free(msg->install_snapshot.data.base);
        msg->install_snapshot.data.base = NULL;
        break;
    default:
        break;
    }
}
