/*
 * The state machine: the rules of users, topics and queues (existence,
 * ownership, sequence numbers, FIFO delivery) and the JSON bodies of
 * mutations. Deterministic: it reads only the command and the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

/*
 * Results are kept while a retry can still commit: a command is committed
 * twice only when its origin retries it (route.c), for at most
 * MOM_ROUTE_UNCERTAIN_MS (8 s) after its key was made, and an entry still
 * in flight commits within a few election timeouts. A minute of the
 * producer's own clock (sequence numbers are its milliseconds << 12, see
 * ops.c) leaves ample margin; the results of producers gone quiet (a
 * restarted process) go after an hour of the group's newest. Pruning runs
 * at log indexes that are multiples of MOM_SM_DEDUP_PRUNE_EVERY and depends
 * on the group's results only (deterministic on every replica).
 */
#define MOM_SM_DEDUP_WINDOW (60000ULL << 12)
#define MOM_SM_DEDUP_STALE (3600000ULL << 12)
#define MOM_SM_DEDUP_PRUNE_EVERY 1024

static const char *const mom_coll_title[] = {"Topic", "Queue"};
static const char *const mom_coll_id_key[] = {"offset", "id"};

void
mom_result_init(mom_result_t *r)
{
    memset(r, 0, sizeof(*r));
    mom_buf_init(&r->body);
}

void
mom_result_free(mom_result_t *r)
{
    mom_buf_free(&r->body);
    r->has_message = false;
}

void
mom_result_error(mom_result_t *r, unsigned status, const char *text)
{
    r->status = status;
    mom_buf_reset(&r->body);
    mom_json_detail(&r->body, text);
}

bool
mom_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL) {
        return false;
    }
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (n == MOM_NAME_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return n > 0;
}

static void
mom_sm_named(mom_result_t *out, const char *message, const char *name)
{
    out->status = 200;
    mom_buf_puts(&out->body, "{\"message\":");
    mom_json_cstr(&out->body, message);
    mom_buf_puts(&out->body, ",\"name\":");
    mom_json_cstr(&out->body, name);
    mom_buf_puts(&out->body, "}");
}

static void
mom_sm_not_found(mom_result_t *out, mom_coll_t c)
{
    char text[32];

    snprintf(text, sizeof(text), "%s not found", mom_coll_title[c]);
    mom_result_error(out, 404, text);
}

static int
mom_sm_register(mom_store_t *st, const Mom__Command *cmd, mom_result_t *out)
{
    int rc;

    if (cmd->password_hash == NULL || cmd->password_hash[0] == '\0') {
        mom_result_error(out, 422, "Missing password hash");
        return 0;
    }
    rc = mom_store_user_insert(st, cmd->name, cmd->password_hash);
    if (rc == MOM_STORE_ERROR) {
        return -1;
    }
    if (rc == MOM_STORE_EXISTS) {
        mom_result_error(out, 400, "User already exists");
        return 0;
    }
    out->status = 200;
    mom_buf_puts(&out->body, "{\"message\":\"User registered\"}");
    return 0;
}

static int
mom_sm_create(mom_store_t *st, mom_coll_t c, const Mom__Command *cmd,
              mom_result_t *out)
{
    char text[32];
    int rc = mom_store_coll_create(st, c, cmd->name, cmd->user);

    if (rc == MOM_STORE_ERROR) {
        return -1;
    }
    if (rc == MOM_STORE_EXISTS) {
        snprintf(text, sizeof(text), "%s already exists", mom_coll_title[c]);
        mom_result_error(out, 400, text);
        return 0;
    }
    snprintf(text, sizeof(text), "%s created", mom_coll_title[c]);
    mom_sm_named(out, text, cmd->name);
    return 0;
}

static int
mom_sm_delete(mom_store_t *st, mom_coll_t c, const Mom__Command *cmd,
              mom_result_t *out)
{
    char text[48];
    char *owner = NULL;
    int rc = mom_store_coll_get(st, c, cmd->name, &owner, NULL);

    if (rc == MOM_STORE_ERROR) {
        return -1;
    }
    if (rc == MOM_STORE_NOT_FOUND) {
        mom_sm_not_found(out, c);
        return 0;
    }
    rc = strcmp(owner, cmd->user);
    free(owner);
    if (rc != 0) {
        snprintf(text, sizeof(text), "Not the owner of this %s",
                 c == MOM_TOPIC ? "topic" : "queue");
        mom_result_error(out, 403, text);
        return 0;
    }
    if (mom_store_coll_delete(st, c, cmd->name) == MOM_STORE_ERROR) {
        return -1;
    }
    snprintf(text, sizeof(text), "%s deleted", mom_coll_title[c]);
    mom_sm_named(out, text, cmd->name);
    return 0;
}

static int
mom_sm_append(mom_store_t *st, mom_coll_t c, const Mom__Command *cmd,
              mom_result_t *out)
{
    uint64_t seq;
    int rc =
        mom_store_coll_append(st, c, cmd->name, cmd->user, cmd->content.data,
                              cmd->content.len, cmd->timestamp_ms, &seq);

    if (rc == MOM_STORE_ERROR) {
        return -1;
    }
    if (rc == MOM_STORE_NOT_FOUND) {
        mom_sm_not_found(out, c);
        return 0;
    }
    out->status = 200;
    mom_buf_puts(&out->body, c == MOM_TOPIC
                                 ? "{\"message\":\"Message published\","
                                 : "{\"message\":\"Message sent\",");
    mom_json_cstr(&out->body, mom_coll_id_key[c]);
    mom_buf_puts(&out->body, ":");
    mom_json_u64(&out->body, seq);
    mom_buf_puts(&out->body, "}");

    out->has_message = true;
    out->message.seq = seq;
    out->message.sender = cmd->user;
    out->message.sender_len = strlen(cmd->user);
    out->message.content = cmd->content.data;
    out->message.content_len = cmd->content.len;
    out->message.ts_ms = cmd->timestamp_ms;
    return 0;
}

typedef struct {
    mom_store_msg_t msg;
    mom_buf_t *body;
    bool found;
} mom_sm_oldest_t;

static int
mom_sm_take_oldest(void *data, const mom_store_msg_t *m)
{
    mom_sm_oldest_t *o = data;

    o->found = true;
    o->msg.seq = m->seq;
    mom_buf_puts(o->body, "{\"message\":");
    mom_json_message(o->body, "id", m->seq, m->sender, m->sender_len,
                     m->content, m->content_len, m->ts_ms);
    mom_buf_puts(o->body, "}");
    return 1;
}

static int
mom_sm_receive(mom_store_t *st, const Mom__Command *cmd, mom_result_t *out)
{
    mom_sm_oldest_t oldest = {.body = &out->body};
    int rc;

    /* A queue with a message exists (deleting a queue deletes its
     * messages): its row is read only when the queue looks empty. */
    if (mom_store_coll_scan(st, MOM_QUEUE, cmd->name, 0, 1, mom_sm_take_oldest,
                            &oldest) != MOM_STORE_OK) {
        return -1;
    }
    if (!oldest.found) {
        rc = mom_store_coll_get(st, MOM_QUEUE, cmd->name, NULL, NULL);
        if (rc == MOM_STORE_ERROR) {
            return -1;
        }
        if (rc == MOM_STORE_NOT_FOUND) {
            mom_sm_not_found(out, MOM_QUEUE);
            return 0;
        }
        out->status = 200;
        mom_buf_puts(&out->body, "{\"message\":null}");
        return 0;
    }
    out->status = 200;
    if (mom_store_coll_remove(st, MOM_QUEUE, cmd->name, oldest.msg.seq) ==
        MOM_STORE_ERROR) {
        return -1;
    }
    return 0;
}

static int
mom_sm_dispatch(mom_store_t *st, const Mom__Command *cmd, mom_result_t *out)
{
    bool needs_user = cmd->op != MOM__COMMAND_OP__CMD_REGISTER;

    if (!mom_name_valid(cmd->name) ||
        (needs_user && !mom_name_valid(cmd->user))) {
        mom_result_error(out, 422, "Invalid name");
        return 0;
    }
    switch (cmd->op) {
    case MOM__COMMAND_OP__CMD_REGISTER:
        return mom_sm_register(st, cmd, out);
    case MOM__COMMAND_OP__CMD_CREATE_TOPIC:
        return mom_sm_create(st, MOM_TOPIC, cmd, out);
    case MOM__COMMAND_OP__CMD_DELETE_TOPIC:
        return mom_sm_delete(st, MOM_TOPIC, cmd, out);
    case MOM__COMMAND_OP__CMD_PUBLISH:
        return mom_sm_append(st, MOM_TOPIC, cmd, out);
    case MOM__COMMAND_OP__CMD_CREATE_QUEUE:
        return mom_sm_create(st, MOM_QUEUE, cmd, out);
    case MOM__COMMAND_OP__CMD_DELETE_QUEUE:
        return mom_sm_delete(st, MOM_QUEUE, cmd, out);
    case MOM__COMMAND_OP__CMD_SEND:
        return mom_sm_append(st, MOM_QUEUE, cmd, out);
    case MOM__COMMAND_OP__CMD_RECEIVE:
        return mom_sm_receive(st, cmd, out);
    default:
        mom_result_error(out, 422, "Unknown command");
        return 0;
    }
}

/* Keeps the result for retries; prunes deterministically. */
static int
mom_sm_remember(mom_store_t *st, uint32_t group, uint64_t index,
                const Mom__Command *cmd, const mom_result_t *out)
{
    if (mom_store_dedup_put(st, group, cmd->producer, cmd->sequence,
                            out->status, out->body.data,
                            out->body.len) != MOM_STORE_OK) {
        return -1;
    }
    if (index % MOM_SM_DEDUP_PRUNE_EVERY == 0 &&
        mom_store_dedup_prune(st, group, MOM_SM_DEDUP_WINDOW,
                              MOM_SM_DEDUP_STALE) != MOM_STORE_OK) {
        return -1;
    }
    return 0;
}

int
mom_sm_apply(mom_store_t *st, uint32_t group, uint64_t index,
             const Mom__Command *cmd, mom_result_t *out)
{
    uint64_t applied;
    int rc;

    mom_buf_reset(&out->body);
    out->status = 0;
    out->has_message = false;

    if (mom_store_applied_index(st, group, &applied) != MOM_STORE_OK) {
        return -1;
    }
    if (index <= applied) {
        return 0;
    }
    if (cmd->producer != 0) {
        rc = mom_store_dedup_get(st, group, cmd->producer, cmd->sequence,
                                 &out->status, &out->body);
        if (rc == MOM_STORE_ERROR) {
            return -1;
        }
        if (rc == MOM_STORE_OK) {
            /* Committed twice: answer as the first time, change nothing. */
            return mom_store_set_applied_index(st, group, index) == MOM_STORE_OK
                       ? 0
                       : -1;
        }
    }
    if (mom_sm_dispatch(st, cmd, out) != 0) {
        return -1;
    }
    if (out->body.failed) {
        /* Out of memory building the body: the effect stands, say so. */
        mom_result_error(out, 500, "Out of memory");
    }
    if (cmd->producer != 0 &&
        mom_sm_remember(st, group, index, cmd, out) != 0) {
        return -1;
    }
    return mom_store_set_applied_index(st, group, index) == MOM_STORE_OK ? 0
                                                                         : -1;
}
