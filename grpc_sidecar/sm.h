/*
 * THE state machine of MOM: applies one committed mom.Command
 * (proto/command.proto) to the store. The single write path of momd: one
 * node and N nodes apply the same commands with this same function.
 */
#ifndef MOM_SM_H
#define MOM_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.pb-c.h"
#include "json.h"
#include "store.h"

#define MOM_NAME_MAX 128

typedef struct {
    /* HTTP status for the client; 0 when the index was already applied. */
    unsigned status;
    /* JSON body for the client (compact). */
    mom_buf_t body;
    /*
     * CMD_PUBLISH/CMD_SEND applied with 200: the stored message, for SSE
     * fan-out. sender and content point into the command.
     */
    bool has_message;
    mom_store_msg_t message;
} mom_result_t;

void mom_result_init(mom_result_t *r);
void mom_result_free(mom_result_t *r);
/* Sets status and a {"detail": text} body. */
void mom_result_error(mom_result_t *r, unsigned status, const char *text);

/* 1..128 bytes of [A-Za-z0-9._-]. */
bool mom_name_valid(const char *name);

/*
 * Applies the command committed at `index` of log `group` inside the
 * caller's open transaction, and notes applied_index = index for the same
 * transaction (mom_store_set_applied_index: the caller calls
 * mom_store_flush() after its last apply, before COMMIT). An index <=
 * the recorded one is skipped (status 0): replays are idempotent. A command
 * with an idempotency key (producer != 0) that was already applied under
 * another index has no effect and gets the result of its first application.
 * Returns 0, or -1 on a storage error, after which the caller must roll the
 * transaction back (nothing of it may be kept).
 */
int mom_sm_apply(mom_store_t *st, uint32_t group, uint64_t index,
                 const Mom__Command *cmd, mom_result_t *out);

#endif
