/*
 * The one write path of momd: submit a command -> it is committed to the
 * log -> it is applied by mom_sm_apply() -> the submitter is answered.
 *
 * This implementation commits to a local log: every command submitted
 * during one loop iteration is applied in ONE SQLite transaction (one
 * fsync) by a uv_check step, and only after COMMIT returned are the
 * callbacks called. A cluster replaces "commit locally" by "commit through
 * the partition's Raft group" behind this same interface, applying with the
 * same mom_sm_apply() and calling the same hooks.
 */
#ifndef MOM_COMMIT_H
#define MOM_COMMIT_H

#include <uv.h>

#include "command.pb-c.h"
#include "sm.h"
#include "store.h"

/* The log index space of the single-node local log. */
#define MOM_LOCAL_GROUP 0

typedef struct mom_commit_s mom_commit_t;

/*
 * Called exactly once per submitted command: after its transaction
 * committed, with the state machine's result; or when it failed (storage
 * error: 500; shutting down: 503), with nothing applied. res is valid
 * during the call only.
 */
typedef void (*mom_commit_done_cb)(void *data, const mom_result_t *res);

/*
 * Called for every command applied and committed (whoever submitted it:
 * on a follower too), before the submitter's callback; used to fan out
 * published messages to subscribers and to end deleted topics' streams.
 */
typedef void (*mom_commit_applied_cb)(void *data, const Mom__Command *cmd,
                                      const mom_result_t *res);

mom_commit_t *mom_commit_new(uv_loop_t *loop, mom_store_t *st,
                             mom_commit_applied_cb applied, void *applied_data);

/*
 * Submits a mutation. cmd is serialized at once: the caller keeps ownership
 * of it and its strings. Returns -1 (done not called) when out of memory or
 * closing.
 */
int mom_commit_submit(mom_commit_t *c, const Mom__Command *cmd,
                      mom_commit_done_cb done, void *data);

/* Applies what is pending, then closes the handles and frees c once they
 * are closed (run the loop afterwards). */
void mom_commit_close(mom_commit_t *c);

#endif
