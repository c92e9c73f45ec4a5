/*
 * Request handling for nginx's frames: re-validation of what protects the
 * store, reads served from SQLite, authentication on the thread pool, and
 * mutations as Commands through mom_commit_submit(). Every request ends in
 * exactly one mom_conn_reply().
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "json.h"
#include "log.h"
#include "ops.h"
#include "sm.h"
#include "sse.h"

typedef struct {
    mom_ops_t *ops;
    mom_conn_t *conn;
    Mom__Request *req;
} mom_op_t;

void
mom_ops_init(mom_ops_t *ops, uv_loop_t *loop, const mom_conf_t *conf,
             mom_store_t *st, mom_commit_t *commit)
{
    uint32_t incarnation = 0;

    memset(ops, 0, sizeof(*ops));
    ops->loop = loop;
    ops->conf = conf;
    ops->st = st;
    ops->commit = commit;
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
    value = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    if (value == NULL) {
        return false;
    }
    json_decref(value);
    return true;
}

static void
mom_op_finish(mom_op_t *op, unsigned status, const void *body, size_t len,
              const char *user)
{
    mom_conn_reply(op->conn, status, body, len, user);
    mom__request__free_unpacked(op->req, NULL);
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

static void
mom_op_error(mom_op_t *op, unsigned status, const char *detail)
{
    mom_buf_t body;

    mom_buf_init(&body);
    mom_json_detail(&body, detail);
    mom_op_finish_buf(op, status, &body);
}

/* Wipes the plaintext password held by the decoded request. */
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

static void
mom_op_list(mom_op_t *op, mom_list_t which, const char *key)
{
    mom_buf_t body;
    mom_list_ctx_t l;

    mom_buf_init(&body);
    l.body = &body;
    l.cap = mom_ops_content_max(op->ops->conf);
    l.first = true;
    l.truncated = false;
    mom_buf_puts(&body, "{\"");
    mom_buf_puts(&body, key);
    mom_buf_puts(&body, "\":[");
    if (mom_store_list(op->ops->st, which, mom_op_list_name, &l) !=
        MOM_STORE_OK) {
        mom_buf_free(&body);
        mom_op_error(op, 500, "Storage error");
        return;
    }
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

    mom_op_finish(op, res->status, res->body.data, res->body.len, NULL);
}

static void
mom_op_submit(mom_op_t *op, Mom__CommandOp kind, const char *password_hash)
{
    Mom__Command cmd = MOM__COMMAND__INIT;
    mom_ops_t *ops = op->ops;

    cmd.op = kind;
    cmd.name = op->req->name;
    cmd.user = op->req->user;
    cmd.content = op->req->content;
    cmd.password_hash = (char *)(password_hash ? password_hash : "");
    cmd.timestamp_ms = mom_ops_now_ms();
    /* Unique per node across restarts: milliseconds << 12, kept strictly
     * increasing (4096 commands per millisecond before it runs ahead). */
    ops->sequence = (uint64_t)cmd.timestamp_ms << 12 > ops->sequence
                        ? (uint64_t)cmd.timestamp_ms << 12
                        : ops->sequence + 1;
    cmd.producer = ops->producer;
    cmd.sequence = ops->sequence;
    if (mom_commit_submit(ops->commit, &cmd, mom_op_committed, op) != 0) {
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

    /* Cheap early answer; the command's apply re-checks existence. */
    rc = mom_store_user_hash(ops->st, op->req->name, NULL);
    if (rc == MOM_STORE_OK) {
        mom_op_wipe_password(op);
        mom_op_error(op, 400, "User already exists");
        return;
    }
    rc = mom_auth_hash_async(ops->loop, password, strlen(password),
                             ops->conf->pbkdf2_iterations,
                             mom_op_register_hashed, op);
    mom_op_wipe_password(op);
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
        mom_op_wipe_password(op);
        mom_op_error(op, 500, "Storage error");
        return;
    }
    rc = mom_auth_verify_async(ops->loop, password, strlen(password), hash,
                               ops->conf->pbkdf2_iterations,
                               mom_op_login_verified, op);
    free(hash);
    mom_op_wipe_password(op);
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

static bool
mom_op_needs_user(Mom__Op kind)
{
    switch (kind) {
    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_DELETE_TOPIC:
    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_CREATE_QUEUE:
    case MOM__OP__OP_DELETE_QUEUE:
    case MOM__OP__OP_SEND:
    case MOM__OP__OP_RECEIVE:
        return true;
    default:
        return false;
    }
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
mom_ops_handle(void *data, mom_conn_t *conn, Mom__Request *req)
{
    mom_ops_t *ops = data;
    mom_op_t *op = malloc(sizeof(*op));
    const char *invalid;

    if (op == NULL) {
        mom__request__free_unpacked(req, NULL);
        mom_conn_reply(conn, 500, "{\"detail\":\"Out of memory\"}", 26, NULL);
        return;
    }
    op->ops = ops;
    op->conn = conn;
    op->req = req;

    invalid = mom_op_invalid(ops, req);
    if (invalid != NULL) {
        mom_op_wipe_password(op);
        mom_op_error(op, 422, invalid);
        return;
    }
    if (mom_op_needs_user(req->op) && !mom_name_valid(req->user)) {
        mom_op_error(op, 401, "Not authenticated");
        return;
    }

    switch (req->op) {
    case MOM__OP__OP_REGISTER:
        mom_op_register(op);
        return;
    case MOM__OP__OP_LOGIN:
        mom_op_login(op);
        return;
    case MOM__OP__OP_LIST_USERS:
        mom_op_list(op, MOM_LIST_USERS, "users");
        return;
    case MOM__OP__OP_LIST_TOPICS:
        mom_op_list(op, MOM_LIST_TOPICS, "topics");
        return;
    case MOM__OP__OP_LIST_QUEUES:
        mom_op_list(op, MOM_LIST_QUEUES, "queues");
        return;
    case MOM__OP__OP_HISTORY:
        mom_op_history(op);
        return;
    case MOM__OP__OP_SUBSCRIBE:
        if (ops->sse == NULL) {
            mom_op_error(op, 503, "Subscriptions unavailable");
            return;
        }
        free(op); /* the subscription owns req and answers */
        mom_sse_subscribe(ops->sse, conn, req);
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
