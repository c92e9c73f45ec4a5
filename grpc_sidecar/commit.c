/*
 * Local log with group commit: submissions are queued; a uv_check handle
 * (which runs right after the I/O callbacks of the same loop iteration)
 * applies the whole queue in one transaction and then answers. A uv_idle
 * handle is active while the queue is non-empty so that the loop never
 * blocks in poll with work pending.
 */
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "log.h"

typedef struct mom_commit_item_s {
    struct mom_commit_item_s *next;
    mom_commit_done_cb done;
    void *data;
    Mom__Command *cmd; /* unpacked at apply time */
    mom_result_t res;
    size_t len;
    uint8_t packed[];
} mom_commit_item_t;

struct mom_commit_s {
    uv_loop_t *loop;
    mom_store_t *st;
    mom_commit_applied_cb applied;
    void *applied_data;
    uv_check_t check;
    uv_idle_t idle;
    mom_commit_item_t *head;
    mom_commit_item_t **tail;
    uint64_t last_index;
    int open_handles;
    int closing;
};

static void mom_commit_run(uv_check_t *check);

static void
mom_commit_noop(uv_idle_t *idle)
{
}

mom_commit_t *
mom_commit_new(uv_loop_t *loop, mom_store_t *st, mom_commit_applied_cb applied,
               void *applied_data)
{
    mom_commit_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    if (mom_store_applied_index(st, MOM_LOCAL_GROUP, &c->last_index) !=
        MOM_STORE_OK) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->st = st;
    c->applied = applied;
    c->applied_data = applied_data;
    c->tail = &c->head;
    uv_check_init(loop, &c->check);
    uv_idle_init(loop, &c->idle);
    c->check.data = c;
    c->idle.data = c;
    c->open_handles = 2;
    uv_check_start(&c->check, mom_commit_run);
    return c;
}

int
mom_commit_submit(mom_commit_t *c, const Mom__Command *cmd,
                  mom_commit_done_cb done, void *data)
{
    size_t len = mom__command__get_packed_size(cmd);
    mom_commit_item_t *it;

    if (c->closing) {
        return -1;
    }
    it = malloc(sizeof(*it) + len);
    if (it == NULL) {
        return -1;
    }
    it->next = NULL;
    it->done = done;
    it->data = data;
    it->cmd = NULL;
    it->len = mom__command__pack(cmd, it->packed);
    mom_result_init(&it->res);
    if (c->head == NULL) {
        uv_idle_start(&c->idle, mom_commit_noop);
    }
    *c->tail = it;
    c->tail = &it->next;
    return 0;
}

/* Applies the batch inside one transaction; returns -1 to roll back. */
static int
mom_commit_apply_batch(mom_commit_t *c, mom_commit_item_t *batch,
                       uint64_t *index)
{
    for (mom_commit_item_t *it = batch; it != NULL; it = it->next) {
        it->cmd = mom__command__unpack(NULL, it->len, it->packed);
        if (it->cmd == NULL) {
            /* Unreachable unless memory is exhausted: we packed it. */
            return -1;
        }
        if (mom_sm_apply(c->st, MOM_LOCAL_GROUP, ++*index, it->cmd, &it->res) !=
            0) {
            return -1;
        }
    }
    return 0;
}

static void
mom_commit_run(uv_check_t *check)
{
    mom_commit_t *c = check->data;
    mom_commit_item_t *batch = c->head, *next;
    uint64_t index = c->last_index;
    int failed;

    if (batch == NULL) {
        return;
    }
    c->head = NULL;
    c->tail = &c->head;
    uv_idle_stop(&c->idle);

    failed = mom_store_begin(c->st) != MOM_STORE_OK ||
             mom_commit_apply_batch(c, batch, &index) != 0 ||
             mom_store_commit(c->st) != MOM_STORE_OK;
    if (failed) {
        mom_store_rollback(c->st);
        mom_log_error("commit of a batch failed: nothing of it applied");
    } else {
        c->last_index = index;
    }

    for (mom_commit_item_t *it = batch; it != NULL; it = it->next) {
        if (failed) {
            mom_result_error(&it->res, 500, "Storage error");
            it->res.has_message = false;
        } else if (c->applied != NULL) {
            c->applied(c->applied_data, it->cmd, &it->res);
        }
    }
    for (mom_commit_item_t *it = batch; it != NULL; it = next) {
        next = it->next;
        it->done(it->data, &it->res);
        mom_result_free(&it->res);
        if (it->cmd != NULL) {
            mom__command__free_unpacked(it->cmd, NULL);
        }
        free(it);
    }
}

static void
mom_commit_closed(uv_handle_t *h)
{
    mom_commit_t *c = h->data;

    if (--c->open_handles == 0) {
        free(c);
    }
}

void
mom_commit_close(mom_commit_t *c)
{
    mom_commit_run(&c->check);
    c->closing = 1;
    uv_close((uv_handle_t *)&c->check, mom_commit_closed);
    uv_close((uv_handle_t *)&c->idle, mom_commit_closed);
}
