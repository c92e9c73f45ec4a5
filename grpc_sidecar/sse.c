/*
 * SSE subscriptions. Each subscriber belongs to the entry of its topic in a
 * hash table from subscribe until its connection closes. It is either
 * replaying (pages read from SQLite, the next page only when the previous
 * one has been written: backpressure) or live (fed by mom_sse_applied).
 * The loop is single-threaded: when a replay page comes back short, the
 * subscriber has read everything committed, and turning it live in that
 * same callback leaves no gap; last_sent filters any duplicate. A muted
 * subscriber (OP_MUTE: the nginx worker feeds it from its shared stream of
 * the topic) gets no more messages, only heartbeats and its final event.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops.h"
#include "ring.h"
#include "sse.h"

#define MOM_SSE_PAGE 256
#define MOM_SSE_HEARTBEAT_MIN 100
#define MOM_SSE_HEARTBEAT_MAX 3600000

typedef struct mom_sse_topic_s mom_sse_topic_t;
typedef struct mom_sub_s mom_sub_t;

struct mom_sub_s {
    mom_sse_t *sse;
    mom_conn_t *conn;
    mom_sse_topic_t *topic;
    mom_sub_t *prev, *next; /* in topic->subs */
    uint64_t last_sent;     /* highest offset written to this stream */
    bool live;
    bool muted;  /* OP_MUTE: the module feeds it from a shared stream */
    bool ended;  /* the final event is written */
    bool closed; /* the connection is gone; freed when timers close */
    uv_timer_t heartbeat;
    uv_timer_t expiry;
    int open_timers;
};

struct mom_sse_topic_s {
    mom_sse_topic_t *next; /* bucket chain */
    uint32_t hash;
    unsigned busy; /* being iterated: freed afterwards if empty */
    mom_sub_t *subs;
    char name[];
};

struct mom_sse_s {
    uv_loop_t *loop;
    const mom_conf_t *conf;
    mom_store_t *st;
    mom_sse_topic_t **buckets;
    size_t n_buckets;
    size_t n_topics;
    size_t n_subs;
    mom_frame_t *ping;
    mom_frame_t *retry;
    bool shutting_down;
};

static void mom_sub_replay(mom_sub_t *sub);
static void mom_sub_end(mom_sub_t *sub, const char *reason);

/* --- SSE text and frames -------------------------------------------------- */

void
mom_sse_format_message(mom_buf_t *b, const mom_store_msg_t *m)
{
    mom_buf_puts(b, "id: ");
    mom_json_u64(b, m->seq);
    mom_buf_puts(b, "\ndata: ");
    mom_json_message(b, "offset", m->seq, m->sender, m->sender_len, m->content,
                     m->content_len, m->ts_ms);
    mom_buf_puts(b, "\n\n");
}

void
mom_sse_format_end(mom_buf_t *b, const char *reason)
{
    mom_buf_puts(b, "event: end\ndata: {\"reason\":");
    mom_json_cstr(b, reason);
    mom_buf_puts(b, "}\n\n");
}

static mom_frame_t *
mom_sse_frame(const mom_sse_t *sse, Mom__Kind kind, const mom_buf_t *text)
{
    Mom__Response resp = MOM__RESPONSE__INIT;

    if (text->failed) {
        return NULL;
    }
    resp.kind = kind;
    resp.body.data = (uint8_t *)text->data;
    resp.body.len = text->len;
    return mom_frame_encode(&resp.base, sse->conf->max_frame_size);
}

static mom_frame_t *
mom_sse_frame_text(const mom_sse_t *sse, Mom__Kind kind, const char *text)
{
    mom_buf_t b;
    mom_frame_t *f;

    mom_buf_init(&b);
    mom_buf_puts(&b, text);
    f = mom_sse_frame(sse, kind, &b);
    mom_buf_free(&b);
    return f;
}

static mom_frame_t *
mom_sse_message_frame(const mom_sse_t *sse, const mom_store_msg_t *m)
{
    mom_buf_t b;
    mom_frame_t *f;

    mom_buf_init(&b);
    mom_sse_format_message(&b, m);
    f = mom_sse_frame(sse, MOM__KIND__KIND_EVENT, &b);
    mom_buf_free(&b);
    return f;
}

/* --- topic table ---------------------------------------------------------- */

static uint32_t
mom_sse_hash(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *name != '\0'; name++) {
        h = (h ^ (unsigned char)*name) * 16777619u;
    }
    return h;
}

static int
mom_sse_grow(mom_sse_t *sse)
{
    size_t n = sse->n_buckets ? sse->n_buckets * 2 : 64;
    mom_sse_topic_t **buckets = calloc(n, sizeof(*buckets));

    if (buckets == NULL) {
        return -1;
    }
    for (size_t i = 0; i < sse->n_buckets; i++) {
        mom_sse_topic_t *t = sse->buckets[i], *next;
        for (; t != NULL; t = next) {
            next = t->next;
            t->next = buckets[t->hash & (n - 1)];
            buckets[t->hash & (n - 1)] = t;
        }
    }
    free(sse->buckets);
    sse->buckets = buckets;
    sse->n_buckets = n;
    return 0;
}

static mom_sse_topic_t *
mom_sse_topic(mom_sse_t *sse, const char *name, bool create)
{
    uint32_t hash = mom_sse_hash(name);
    mom_sse_topic_t *t;
    size_t len;

    if (sse->n_buckets > 0) {
        for (t = sse->buckets[hash & (sse->n_buckets - 1)]; t != NULL;
             t = t->next) {
            if (t->hash == hash && strcmp(t->name, name) == 0) {
                return t;
            }
        }
    }
    if (!create) {
        return NULL;
    }
    if (sse->n_topics >= sse->n_buckets && mom_sse_grow(sse) != 0) {
        return NULL;
    }
    len = strlen(name);
    t = calloc(1, sizeof(*t) + len + 1);
    if (t == NULL) {
        return NULL;
    }
    memcpy(t->name, name, len + 1);
    t->hash = hash;
    t->next = sse->buckets[hash & (sse->n_buckets - 1)];
    sse->buckets[hash & (sse->n_buckets - 1)] = t;
    sse->n_topics++;
    return t;
}

static void
mom_sse_topic_release(mom_sse_t *sse, mom_sse_topic_t *t)
{
    mom_sse_topic_t **p;

    if (t->busy > 0 || t->subs != NULL) {
        return;
    }
    for (p = &sse->buckets[t->hash & (sse->n_buckets - 1)]; *p != t;
         p = &(*p)->next) {
    }
    *p = t->next;
    sse->n_topics--;
    free(t);
}

/* --- subscriber lifecycle ------------------------------------------------- */

static void
mom_sse_free(mom_sse_t *sse)
{
    free(sse->buckets);
    mom_frame_unref(sse->ping);
    mom_frame_unref(sse->retry);
    free(sse);
}

static void
mom_sub_timer_closed(uv_handle_t *h)
{
    mom_sub_t *sub = h->data;
    mom_sse_t *sse = sub->sse;

    if (--sub->open_timers > 0) {
        return;
    }
    free(sub);
    if (--sse->n_subs == 0 && sse->shutting_down) {
        mom_sse_free(sse);
    }
}

/* The connection closed, for whatever reason: release everything. */
static void
mom_sub_on_close(void *data, mom_conn_t *conn)
{
    mom_sub_t *sub = data;
    mom_sse_topic_t *t = sub->topic;

    sub->closed = true;
    if (sub->prev != NULL) {
        sub->prev->next = sub->next;
    } else {
        t->subs = sub->next;
    }
    if (sub->next != NULL) {
        sub->next->prev = sub->prev;
    }
    sub->topic = NULL;
    mom_sse_topic_release(sub->sse, t);
    uv_close((uv_handle_t *)&sub->heartbeat, mom_sub_timer_closed);
    uv_close((uv_handle_t *)&sub->expiry, mom_sub_timer_closed);
    mom_conn_unref(sub->conn);
}

static void
mom_sub_end(mom_sub_t *sub, const char *reason)
{
    mom_frame_t *f;
    mom_buf_t b;

    if (sub->ended || sub->closed) {
        return;
    }
    sub->ended = true;
    mom_buf_init(&b);
    mom_sse_format_end(&b, reason);
    f = mom_sse_frame(sub->sse, MOM__KIND__KIND_END, &b);
    mom_buf_free(&b);
    if (f != NULL) {
        mom_conn_write(sub->conn, f);
        mom_frame_unref(f);
    }
    mom_log_debug("stream of topic %s ended: %s", sub->topic->name, reason);
    mom_conn_close(sub->conn, true);
}

/* Queues a live frame unless the subscriber is too far behind. */
static int
mom_sub_send(mom_sub_t *sub, mom_frame_t *f)
{
    size_t queued = mom_conn_queued(sub->conn);

    if (sub->ended || sub->closed) {
        return -1;
    }
    if (queued > 0 && queued + f->len > sub->sse->conf->sse_buffer) {
        mom_sub_end(sub, "subscriber too slow");
        return -1;
    }
    return mom_conn_write(sub->conn, f);
}

static void
mom_sub_heartbeat(uv_timer_t *t)
{
    mom_sub_t *sub = t->data;

    /* Bytes still queued (a replay page, a burst): the stream is not idle,
     * and a ping must not count against the subscriber. */
    if (mom_conn_queued(sub->conn) == 0) {
        mom_sub_send(sub, sub->sse->ping);
    }
}

static void
mom_sub_expired(uv_timer_t *t)
{
    mom_sub_end(t->data, "token expired");
}

/* --- replay ----------------------------------------------------------------
 */

typedef struct {
    mom_sub_t *sub;
    size_t count;
    size_t bytes;
    bool stopped;
} mom_replay_t;

static int
mom_sub_replay_message(void *data, const mom_store_msg_t *m)
{
    mom_replay_t *r = data;
    mom_sub_t *sub = r->sub;
    mom_frame_t *f = mom_sse_message_frame(sub->sse, m);

    r->count++;
    if (f == NULL || mom_conn_write(sub->conn, f) != 0) {
        mom_frame_unref(f);
        r->stopped = true;
        return 1;
    }
    sub->last_sent = m->seq;
    r->bytes += f->len;
    mom_frame_unref(f);
    if (r->bytes >= sub->sse->conf->sse_buffer / 2) {
        r->stopped = true;
        return 1;
    }
    return 0;
}

static void
mom_sub_replay(mom_sub_t *sub)
{
    mom_replay_t r = {.sub = sub};

    if (sub->live || sub->muted || sub->ended || sub->closed) {
        return;
    }
    if (mom_store_coll_scan(sub->sse->st, MOM_TOPIC, sub->topic->name,
                            sub->last_sent, MOM_SSE_PAGE,
                            mom_sub_replay_message, &r) != MOM_STORE_OK) {
        /* The client resumes from its Last-Event-ID. */
        mom_conn_close(sub->conn, true);
        return;
    }
    if (!r.stopped && r.count < MOM_SSE_PAGE && !sub->closed) {
        /* Everything committed has been read: live from now on. */
        sub->live = true;
        mom_conn_on_drain(sub->conn, NULL);
    }
    /* Otherwise the next page follows when this one is written. */
}

static void
mom_sub_drained(void *data, mom_conn_t *conn)
{
    mom_sub_replay(data);
}

/*
 * OP_MUTE: the module delivers this subscriber's messages from its shared
 * stream of the topic now; the stream keeps its heartbeats and final event.
 */
static void
mom_sub_request(void *data, mom_conn_t *conn, Mom__Request *req)
{
    mom_sub_t *sub = data;

    if (req->op == MOM__OP__OP_MUTE) {
        sub->muted = true;
        mom_conn_on_drain(conn, NULL);
    } else {
        mom_log_warn("request %d on a stream of topic %s ignored", req->op,
                     sub->topic != NULL ? sub->topic->name : "?");
    }
    mom__request__free_unpacked(req, NULL);
}

/* --- public ------------------------------------------------------------------
 */

mom_sse_t *
mom_sse_new(uv_loop_t *loop, const mom_conf_t *conf, mom_store_t *st)
{
    mom_sse_t *sse = calloc(1, sizeof(*sse));
    char retry[32];

    if (sse == NULL) {
        return NULL;
    }
    sse->loop = loop;
    sse->conf = conf;
    sse->st = st;
    snprintf(retry, sizeof(retry), "retry: %d\n\n", MOM_SSE_RETRY_MS);
    sse->ping = mom_sse_frame_text(sse, MOM__KIND__KIND_EVENT, ": ping\n\n");
    sse->retry = mom_sse_frame_text(sse, MOM__KIND__KIND_EVENT, retry);
    if (sse->ping == NULL || sse->retry == NULL || mom_sse_grow(sse) != 0) {
        mom_sse_free(sse);
        return NULL;
    }
    return sse;
}

size_t
mom_sse_count(const mom_sse_t *sse)
{
    return sse->n_subs;
}

static void
mom_sse_reply_error(mom_conn_t *conn, unsigned status, const char *detail)
{
    mom_buf_t b;

    mom_buf_init(&b);
    mom_json_detail(&b, detail);
    mom_conn_reply(conn, 0, status, b.data, b.len, NULL);
    mom_buf_free(&b);
}

static uint64_t
mom_sse_heartbeat_ms(const mom_sse_t *sse, uint32_t requested)
{
    uint64_t ms = requested ? requested : sse->conf->heartbeat_ms;

    if (ms < MOM_SSE_HEARTBEAT_MIN) {
        ms = MOM_SSE_HEARTBEAT_MIN;
    }
    return ms > MOM_SSE_HEARTBEAT_MAX ? MOM_SSE_HEARTBEAT_MAX : ms;
}

void
mom_sse_subscribe(mom_sse_t *sse, mom_conn_t *conn, Mom__Request *req)
{
    uint64_t next_offset, heartbeat;
    mom_sse_topic_t *t;
    mom_sub_t *sub;
    int64_t expires_in;
    int rc;

    if (sse->shutting_down) {
        mom_sse_reply_error(conn, 503, "Server shutting down");
        goto done;
    }
    rc = mom_store_coll_get(sse->st, MOM_TOPIC, req->name, NULL, &next_offset);
    if (rc == MOM_STORE_NOT_FOUND) {
        mom_sse_reply_error(conn, 404, "Topic not found");
        goto done;
    }
    sub = calloc(1, sizeof(*sub));
    t = sub != NULL && rc == MOM_STORE_OK ? mom_sse_topic(sse, req->name, 1)
                                          : NULL;
    if (t == NULL) {
        free(sub);
        mom_sse_reply_error(conn, 500, "Cannot subscribe");
        goto done;
    }
    sub->sse = sse;
    sub->conn = conn;
    sub->topic = t;
    sub->next = t->subs;
    if (t->subs != NULL) {
        t->subs->prev = sub;
    }
    t->subs = sub;
    sse->n_subs++;
    mom_conn_ref(conn);
    uv_timer_init(sse->loop, &sub->heartbeat);
    uv_timer_init(sse->loop, &sub->expiry);
    sub->heartbeat.data = sub;
    sub->expiry.data = sub;
    sub->open_timers = 2;

    /* Stream mode first, so that the reply does not resume reading
     * requests from this connection. */
    mom_conn_stream(conn, mom_sub_on_close, sub);
    mom_conn_stream_requests(conn, mom_sub_request);
    mom_conn_on_drain(conn, mom_sub_drained);
    mom_conn_reply_stream(conn, sse->conf->sse_buffer);
    if (mom_conn_write(conn, sse->retry) != 0) {
        goto done;
    }
    heartbeat = mom_sse_heartbeat_ms(sse, req->heartbeat_ms);
    uv_timer_start(&sub->heartbeat, mom_sub_heartbeat, heartbeat, heartbeat);

    if (req->token_exp != 0) {
        expires_in = req->token_exp > 0 && req->token_exp < INT64_MAX / 1000
                         ? req->token_exp * 1000 - mom_ops_now_ms()
                         : 0;
        if (expires_in <= 0) {
            mom_sub_end(sub, "token expired");
            goto done;
        }
        uv_timer_start(&sub->expiry, mom_sub_expired, (uint64_t)expires_in, 0);
    }
    if (req->has_since) {
        sub->last_sent = req->since;
        mom_sub_replay(sub);
    } else {
        sub->last_sent = next_offset - 1;
        sub->live = true;
        mom_conn_on_drain(conn, NULL);
    }

done:
    mom__request__free_unpacked(req, NULL);
}

static void
mom_sse_fanout(mom_sse_t *sse, mom_sse_topic_t *t, const mom_store_msg_t *m)
{
    mom_frame_t *f = mom_sse_message_frame(sse, m);
    mom_sub_t *sub, *next;

    if (f == NULL) {
        mom_log_error("cannot frame message %llu of topic %s for streams",
                      (unsigned long long)m->seq, t->name);
        return;
    }
    t->busy++;
    for (sub = t->subs; sub != NULL; sub = next) {
        next = sub->next;
        if (sub->live && !sub->muted && m->seq > sub->last_sent &&
            mom_sub_send(sub, f) == 0) {
            sub->last_sent = m->seq;
        }
    }
    t->busy--;
    mom_frame_unref(f);
    mom_sse_topic_release(sse, t);
}

static void
mom_sse_end_topic(mom_sse_t *sse, mom_sse_topic_t *t, const char *reason)
{
    mom_sub_t *sub, *next;

    t->busy++;
    for (sub = t->subs; sub != NULL; sub = next) {
        next = sub->next;
        mom_sub_end(sub, reason);
    }
    t->busy--;
    mom_sse_topic_release(sse, t);
}

void
mom_sse_applied(void *data, const Mom__Command *cmd, const mom_result_t *res)
{
    mom_sse_t *sse = data;
    mom_sse_topic_t *t;

    if (res->status != 200 || sse->n_subs == 0) {
        return;
    }
    if (cmd->op == MOM__COMMAND_OP__CMD_PUBLISH && res->has_message) {
        t = mom_sse_topic(sse, cmd->name, false);
        if (t != NULL) {
            mom_sse_fanout(sse, t, &res->message);
        }
    } else if (cmd->op == MOM__COMMAND_OP__CMD_DELETE_TOPIC) {
        t = mom_sse_topic(sse, cmd->name, false);
        if (t != NULL) {
            mom_sse_end_topic(sse, t, "topic deleted");
        }
    }
}

void
mom_sse_restored(void *data, uint32_t partitions, uint32_t partition)
{
    mom_sse_t *sse = data;

    for (size_t i = 0; i < sse->n_buckets; i++) {
        mom_sse_topic_t *t, *next;
        for (t = sse->buckets[i]; t != NULL; t = next) {
            next = t->next;
            if (mom_partition_of(t->name, strlen(t->name), partitions) ==
                partition) {
                mom_sse_end_topic(sse, t, "subscriber too slow");
            }
        }
    }
}

void
mom_sse_shutdown(mom_sse_t *sse)
{
    sse->shutting_down = true;
    for (size_t i = 0; i < sse->n_buckets; i++) {
        mom_sse_topic_t *t, *next;
        for (t = sse->buckets[i]; t != NULL; t = next) {
            next = t->next;
            mom_sse_end_topic(sse, t, "server shutting down");
        }
    }
    if (sse->n_subs == 0) {
        mom_sse_free(sse);
    }
}
