/*
 * Serving requests on this node: re-validation of what protects the
 * store, reads served from SQLite, authentication on the thread pool, and
 * mutations as Commands through mom_commit_submit(). Where a request runs
 * is route.c's decision. Every request ends in exactly one answer: a
 * mom_conn_reply() to nginx or a Response to the forwarding momd.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "cluster.h"
#include "json.h"
#include "log.h"
#include "ops.h"
#include "sm.h"
#include "sse.h"

void
mom_ops_init(mom_ops_t *ops, uv_loop_t *loop, const mom_conf_t *conf,
             mom_store_t *st, const mom_placement_t *pl, mom_commit_t *commit)
{
    uint32_t incarnation = 0;

    memset(ops, 0, sizeof(*ops));
    ops->loop = loop;
    ops->conf = conf;
    ops->st = st;
    ops->pl = pl;
    ops->commit = commit;
    ops->retry_tail = &ops->retry_head;
    uv_timer_init(loop, &ops->retry_timer);
    ops->retry_timer.data = ops;
    ops->leader_cache = calloc(mom_placement_partitions(pl), sizeof(uint32_t));
    /* A new producer per process: sequence numbers derive from the clock,
     * which may step back across a restart. */
    if (RAND_bytes((unsigned char *)&incarnation, sizeof(incarnation)) != 1) {
        incarnation = (uint32_t)getpid() ^ (uint32_t)mom_ops_now_ms();
    }
    ops->producer = (uint64_t)conf->node_id << 32 | incarnation | 1;
}

int64_t
mom_ops_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t
mom_ops_content_max(const mom_conf_t *conf)
{
    return conf->max_frame_size - MOM_OPS_FRAME_MARGIN;
}

bool
mom_ops_content_valid(const void *data, size_t len, size_t max)
{
    json_error_t error;
    json_t *value;

    if (len == 0 || len > max || memchr(data, '\n', len) != NULL ||
        memchr(data, '\r', len) != NULL) {
        return false;
    }
    if (mom_json_is_plain_string(data, len)) {
        return true; /* the common case, without building a jansson tree */
    }
    value = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    if (value == NULL) {
        return false;
    }
    json_decref(value);
    return true;
}

static void mom_op_wipe_password(mom_op_t *op);

/* Into ops->multiplexed, where an OP_CANCEL finds it (id != 0). */
static void
mom_ops_list(mom_op_t *op)
{
    if (op->id == 0) {
        return;
    }
    op->mux_next = op->ops->multiplexed;
    if (op->mux_next != NULL) {
        op->mux_next->mux_prev = op;
    }
    op->ops->multiplexed = op;
}

/* Out of ops->multiplexed (answered, or handed over). */
static void
mom_ops_unlist(mom_op_t *op)
{
    if (op->id == 0) {
        return;
    }
    if (op->mux_prev != NULL) {
        op->mux_prev->mux_next = op->mux_next;
    } else if (op->ops->multiplexed == op) {
        op->ops->multiplexed = op->mux_next;
    }
    if (op->mux_next != NULL) {
        op->mux_next->mux_prev = op->mux_prev;
    }
    op->mux_prev = op->mux_next = NULL;
}

void
mom_op_finish(mom_op_t *op, unsigned status, const void *body, size_t len,
              const char *user)
{
    Mom__Response resp = MOM__RESPONSE__INIT;

    if (op->conn != NULL) {
        mom_ops_unlist(op);
        mom_conn_reply(op->conn, op->id, status, body, len, user);
    } else if (op->served != NULL) {
        resp.kind = MOM__KIND__KIND_REPLY;
        resp.status = status;
        resp.body.data = (uint8_t *)body;
        resp.body.len = len;
        resp.user = (char *)(user != NULL ? user : "");
        resp.not_leader = op->not_leader;
        resp.leader = op->leader_hint;
        resp.partitions = op->parts;
        resp.n_partitions = op->n_parts;
        mom_cluster_answer(op->served, &resp);
    }
    mom_route_forget(op);
    mom_op_wipe_password(op);
    mom__request__free_unpacked(op->req, NULL);
    free(op->parts);
    free(op);
}

static void
mom_op_finish_buf(mom_op_t *op, unsigned status, mom_buf_t *body)
{
    if (body->failed) {
        mom_buf_reset(body);
        status = 500;
        mom_json_detail(body, "Out of memory");
    }
    mom_op_finish(op, status, body->data, body->len, NULL);
    mom_buf_free(body);
}

void
mom_op_error(mom_op_t *op, unsigned status, const char *detail)
{
    mom_buf_t body;

    mom_buf_init(&body);
    mom_json_detail(&body, detail);
    mom_op_finish_buf(op, status, &body);
}

/* Wipes the plaintext password held by the decoded request (kept until
 * the answer: a retry through another leader needs it). */
static void
mom_op_wipe_password(mom_op_t *op)
{
    char *p = op->req->password;

    if (p != NULL && p[0] != '\0') {
        OPENSSL_cleanse(p, strlen(p));
    }
}

/* --- reads ---------------------------------------------------------------- */

typedef struct {
    mom_ops_t *ops;
    const bool *mask;
    int (*cb)(void *data, const char *name, size_t len);
    void *data;
} mom_list_filter_t;

static int
mom_op_list_filter(void *data, const char *name, size_t len)
{
    mom_list_filter_t *f = data;

    if (!f->mask[mom_placement_partition(f->ops->pl, name)]) {
        return 0;
    }
    return f->cb(f->data, name, len);
}

int
mom_ops_list_names(mom_ops_t *ops, Mom__Op which, const bool *mask,
                   int (*cb)(void *data, const char *name, size_t len),
                   void *data)
{
    mom_list_filter_t f = {ops, mask, cb, data};
    mom_list_t list = which == MOM__OP__OP_LIST_USERS    ? MOM_LIST_USERS
                      : which == MOM__OP__OP_LIST_TOPICS ? MOM_LIST_TOPICS
                                                         : MOM_LIST_QUEUES;

    return mom_store_list(ops->st, list, mom_op_list_filter, &f) == MOM_STORE_OK
               ? 0
               : -1;
}

typedef struct {
    mom_buf_t *body;
    size_t cap;
    bool first;
    bool truncated;
} mom_list_ctx_t;

static int
mom_op_list_name(void *data, const char *name, size_t len)
{
    mom_list_ctx_t *l = data;

    if (l->body->len + len + 8 > l->cap) {
        l->truncated = true;
        return 1;
    }
    if (!l->first) {
        mom_buf_append(l->body, ",", 1);
    }
    l->first = false;
    mom_json_str(l->body, name, len);
    return 0;
}

/* The list of the partitions this node leads (LIST_* with local_only). */
static void
mom_op_list(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    uint32_t n = mom_placement_partitions(ops->pl);
    const char *key = mom_route_list_key(op->req->op);
    mom_buf_t body;
    mom_list_ctx_t l;
    uint64_t leader;
    bool *mask = calloc(n, sizeof(bool));

    op->parts = calloc(n, sizeof(uint32_t));
    if (mask == NULL || op->parts == NULL) {
        free(mask);
        mom_op_error(op, 500, "Out of memory");
        return;
    }
    for (uint32_t p = 0; p < n; p++) {
        if (mom_commit_ready(ops->commit, p, &leader)) {
            mask[p] = true;
            op->parts[op->n_parts++] = p;
        }
    }
    mom_buf_init(&body);
    l.body = &body;
    l.cap = mom_ops_content_max(ops->conf);
    l.first = true;
    l.truncated = false;
    mom_buf_puts(&body, "{\"");
    mom_buf_puts(&body, key);
    mom_buf_puts(&body, "\":[");
    if (mom_ops_list_names(ops, op->req->op, mask, mom_op_list_name, &l) != 0) {
        free(mask);
        mom_buf_free(&body);
        mom_op_error(op, 500, "Storage error");
        return;
    }
    free(mask);
    if (l.truncated) {
        mom_log_warn("%s list truncated to fit a frame", key);
    }
    mom_buf_puts(&body, "]}");
    mom_op_finish_buf(op, 200, &body);
}

typedef struct {
    mom_buf_t *body;
    size_t cap;
    bool first;
} mom_history_ctx_t;

static int
mom_op_history_message(void *data, const mom_store_msg_t *m)
{
    mom_history_ctx_t *h = data;
    size_t mark = h->body->len;

    if (!h->first) {
        mom_buf_append(h->body, ",", 1);
    }
    mom_json_message(h->body, "offset", m->seq, m->sender, m->sender_len,
                     m->content, m->content_len, m->ts_ms);
    if (h->body->len > h->cap && !h->first) {
        /* The page ends before this message; the client pages on. */
        h->body->len = mark;
        return 1;
    }
    h->first = false;
    return 0;
}

static void
mom_op_history(mom_op_t *op)
{
    Mom__Request *req = op->req;
    mom_history_ctx_t h;
    mom_buf_t body;
    uint32_t limit;
    int rc;

    rc = mom_store_coll_get(op->ops->st, MOM_TOPIC, req->name, NULL, NULL);
    if (rc == MOM_STORE_NOT_FOUND) {
        mom_op_error(op, 404, "Topic not found");
        return;
    }
    limit = req->limit == 0 ? MOM_OPS_HISTORY_DEFAULT : req->limit;
    if (limit > MOM_OPS_HISTORY_MAX) {
        limit = MOM_OPS_HISTORY_MAX;
    }
    mom_buf_init(&body);
    h.body = &body;
    h.cap = op->ops->conf->max_frame_size - MOM_OPS_FRAME_MARGIN;
    h.first = true;
    mom_buf_puts(&body, "{\"messages\":[");
    if (rc != MOM_STORE_OK ||
        mom_store_coll_scan(op->ops->st, MOM_TOPIC, req->name, req->since,
                            limit, mom_op_history_message,
                            &h) != MOM_STORE_OK) {
        mom_buf_free(&body);
        mom_op_error(op, 500, "Storage error");
        return;
    }
    mom_buf_puts(&body, "]}");
    mom_op_finish_buf(op, 200, &body);
}

/* --- mutations ------------------------------------------------------------ */

static void
mom_op_committed(void *data, const mom_result_t *res)
{
    mom_op_t *op = data;

    if (res->status == MOM_COMMIT_RETRY) {
        /* Dropped by a leader that lost its leadership: it may still
         * commit under the next one. */
        mom_route_uncertain(op);
        mom_route_again(op, 0);
        return;
    }
    mom_op_finish(op, res->status, res->body.data, res->body.len, NULL);
}

void
mom_ops_key(mom_ops_t *ops, Mom__Request *req)
{
    uint64_t seq;

    /*
     * A deployment of one node never commits a command twice (no other
     * leader to retry through, its groups' only voter cannot lose
     * leadership): it keeps no idempotency results (producer 0).
     */
    if (req->producer != 0 || ops->conf->n_members <= 1) {
        return;
    }
    /* Unique per node across restarts: milliseconds << 12, kept strictly
     * increasing (4096 commands per millisecond before it runs ahead). */
    seq = (uint64_t)mom_ops_now_ms() << 12;
    ops->sequence = seq > ops->sequence ? seq : ops->sequence + 1;
    req->producer = ops->producer;
    req->sequence = ops->sequence;
}

static void
mom_op_submit(mom_op_t *op, Mom__CommandOp kind, const char *password_hash)
{
    Mom__Command cmd = MOM__COMMAND__INIT;
    mom_ops_t *ops = op->ops;
    uint64_t leader = 0;
    int rc;

    mom_ops_key(ops, op->req);
    cmd.op = kind;
    cmd.name = op->req->name;
    cmd.user = op->req->user;
    cmd.content = op->req->content;
    cmd.password_hash = (char *)(password_hash ? password_hash : "");
    cmd.timestamp_ms = mom_ops_now_ms();
    cmd.producer = op->req->producer;
    cmd.sequence = op->req->sequence;
    rc = mom_commit_submit(ops->commit, op->partition, &cmd, mom_op_committed,
                           op, &leader);
    if (rc == MOM_COMMIT_NOT_LEADER) {
        mom_route_again(op, leader);
    } else if (rc != MOM_COMMIT_OK) {
        mom_op_error(op, 503, "Server shutting down");
    }
}

static void
mom_op_register_hashed(void *data, const char *hash)
{
    mom_op_t *op = data;

    if (hash == NULL) {
        mom_op_error(op, 500, "Password hashing failed");
        return;
    }
    mom_op_submit(op, MOM__COMMAND_OP__CMD_REGISTER, hash);
}

static void
mom_op_register(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    const char *password = op->req->password;
    int rc;

    /* Cheap early answer; the command's apply re-checks existence. A retry
     * of a registration that committed gets its first answer. */
    if (op->req->producer != 0) {
        mom_buf_t body;
        unsigned status = 0;

        mom_buf_init(&body);
        rc = mom_store_dedup_get(ops->st, op->partition, op->req->producer,
                                 op->req->sequence, &status, &body);
        if (rc == MOM_STORE_OK) {
            mom_op_finish_buf(op, status, &body);
            return;
        }
        mom_buf_free(&body);
    }
    rc = mom_store_user_hash(ops->st, op->req->name, NULL);
    if (rc == MOM_STORE_OK) {
        mom_op_error(op, 400, "User already exists");
        return;
    }
    rc = mom_auth_hash_async(ops->loop, password, strlen(password),
                             ops->conf->pbkdf2_iterations,
                             mom_op_register_hashed, op);
    if (rc != 0) {
        mom_op_error(op, 500, "Password hashing failed");
    }
}

static void
mom_op_login_verified(void *data, bool ok)
{
    mom_op_t *op = data;

    if (!ok) {
        mom_op_error(op, 401, "Invalid credentials");
        return;
    }
    mom_op_finish(op, 200, "", 0, op->req->name);
}

static void
mom_op_login(mom_op_t *op)
{
    mom_ops_t *ops = op->ops;
    const char *password = op->req->password;
    char *hash = NULL;
    int rc;

    rc = mom_store_user_hash(ops->st, op->req->name, &hash);
    if (rc == MOM_STORE_ERROR) {
        mom_op_error(op, 500, "Storage error");
        return;
    }
    rc = mom_auth_verify_async(ops->loop, password, strlen(password), hash,
                               ops->conf->pbkdf2_iterations,
                               mom_op_login_verified, op);
    free(hash);
    if (rc != 0) {
        mom_op_error(op, 500, "Password verification failed");
    }
}

/* --- dispatch ------------------------------------------------------------- */

static bool
mom_op_needs_name(Mom__Op kind)
{
    return kind != MOM__OP__OP_LIST_USERS && kind != MOM__OP__OP_LIST_TOPICS &&
           kind != MOM__OP__OP_LIST_QUEUES;
}

/* Every mutation but registering acts as a user. */
static bool
mom_op_needs_user(Mom__Op kind)
{
    return kind != MOM__OP__OP_REGISTER && mom_route_is_mutation(kind);
}

/* Returns the 422 detail of an invalid request, NULL when it is valid. */
static const char *
mom_op_invalid(const mom_ops_t *ops, const Mom__Request *req)
{
    size_t password_len;

    if (mom_op_needs_name(req->op) && !mom_name_valid(req->name)) {
        return "Invalid name";
    }
    switch (req->op) {
    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:
        password_len = req->password ? strlen(req->password) : 0;
        if (password_len == 0 || password_len > MOM_OPS_PASSWORD_MAX) {
            return "Invalid password";
        }
        return NULL;
    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_SEND:
        if (!mom_ops_content_valid(req->content.data, req->content.len,
                                   mom_ops_content_max(ops->conf))) {
            return "Invalid or too large content";
        }
        return NULL;
    default:
        return NULL;
    }
}

void
mom_ops_execute(mom_op_t *op)
{
    switch (op->req->op) {
    case MOM__OP__OP_REGISTER:
        mom_op_register(op);
        return;
    case MOM__OP__OP_LOGIN:
        mom_op_login(op);
        return;
    case MOM__OP__OP_LIST_USERS:
    case MOM__OP__OP_LIST_TOPICS:
    case MOM__OP__OP_LIST_QUEUES:
        mom_op_list(op);
        return;
    case MOM__OP__OP_HISTORY:
        mom_op_history(op);
        return;
    case MOM__OP__OP_SUBSCRIBE:
        if (op->ops->sse == NULL || op->conn == NULL) {
            mom_op_error(op, 503, "Subscriptions unavailable");
            return;
        }
        /* The subscription owns req and answers. */
        mom_route_forget(op);
        mom_ops_unlist(op);
        mom_sse_subscribe(op->ops->sse, op->conn, op->req);
        free(op);
        return;
    case MOM__OP__OP_CREATE_TOPIC:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_CREATE_TOPIC, NULL);
        return;
    case MOM__OP__OP_DELETE_TOPIC:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_DELETE_TOPIC, NULL);
        return;
    case MOM__OP__OP_PUBLISH:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_PUBLISH, NULL);
        return;
    case MOM__OP__OP_CREATE_QUEUE:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_CREATE_QUEUE, NULL);
        return;
    case MOM__OP__OP_DELETE_QUEUE:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_DELETE_QUEUE, NULL);
        return;
    case MOM__OP__OP_SEND:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_SEND, NULL);
        return;
    case MOM__OP__OP_RECEIVE:
        mom_op_submit(op, MOM__COMMAND_OP__CMD_RECEIVE, NULL);
        return;
    default:
        mom_op_error(op, 422, "Unknown operation");
    }
}

/* Validates a request from either side, then routes it. */
static void
mom_ops_start(mom_op_t *op)
{
    const Mom__Request *req = op->req;
    const char *invalid = mom_op_invalid(op->ops, req);

    if (invalid != NULL) {
        mom_op_error(op, 422, invalid);
        return;
    }
    if (mom_op_needs_user(req->op) && !mom_name_valid(req->user)) {
        mom_op_error(op, 401, "Not authenticated");
        return;
    }
    if (req->op < MOM__OP__OP_REGISTER || req->op > MOM__OP__OP_RECEIVE) {
        mom_op_error(op, 422, "Unknown operation");
        return;
    }
    mom_route(op);
}

/*
 * An OP_CANCEL for a request already started: its client gave up (nginx
 * timed it out, or the client closed). What is under way goes on (a
 * command proposed may still commit), but it is never retried: a publish
 * whose first attempt a deposed leader dropped is not sent to the next
 * one for nobody. Cancels are rare: a list walk finds the request.
 */
static void
mom_ops_cancel(mom_ops_t *ops, mom_conn_t *conn, uint64_t id)
{
    for (mom_op_t *op = ops->multiplexed; op != NULL; op = op->mux_next) {
        if (op->conn == conn && op->id == id) {
            mom_log_info("request %llu: its client is gone, not retried",
                         (unsigned long long)id);
            op->cancelled = true;
            return;
        }
    }
}

void
mom_ops_handle(void *data, mom_conn_t *conn, uint64_t id, Mom__Request *req)
{
    mom_ops_t *ops = data;
    mom_op_t *op;

    if (req->op == MOM__OP__OP_CANCEL) {
        mom_ops_cancel(ops, conn, id);
        mom__request__free_unpacked(req, NULL);
        return;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL) {
        mom__request__free_unpacked(req, NULL);
        mom_conn_reply(conn, id, 500, "{\"detail\":\"Out of memory\"}", 26,
                       NULL);
        return;
    }
    op->ops = ops;
    op->conn = conn;
    op->id = id;
    op->req = req;
    mom_ops_list(op);
    if (id != 0 && req->op == MOM__OP__OP_SUBSCRIBE) {
        /* A stream takes the whole connection: not among others. */
        mom_op_error(op, 400, "Subscriptions cannot be multiplexed");
        return;
    }
    mom_ops_start(op);
}

void
mom_ops_forwarded(mom_ops_t *ops, Mom__Request *req,
                  struct mom_served_s *served)
{
    mom_op_t *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        Mom__Response resp = MOM__RESPONSE__INIT;

        mom__request__free_unpacked(req, NULL);
        resp.status = 500;
        resp.body.data = (uint8_t *)"{\"detail\":\"Out of memory\"}";
        resp.body.len = 26;
        mom_cluster_answer(served, &resp);
        return;
    }
    op->ops = ops;
    op->served = served;
    op->forwarded = true;
    op->req = req;
    mom_cluster_attach(served, op);
    mom_ops_start(op);
}
