/*
 * What the store writes once per transaction instead of once per command:
 * applied indexes (cached per group) and the next sequence numbers of the
 * queues appended to. Both are written by mom_store_flush() before COMMIT,
 * in the same transaction as the effects they count; a topic's next offset
 * is read from its last message and needs no write.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_int.h"

/*
 * Applied indexes are cached per group: read from meta once, then kept
 * here. Inside a transaction a new index is only noted (dirty) and written
 * by mom_store_applied_flush() before COMMIT, once per group instead of
 * once per command; a commit hook refuses a COMMIT that would leave one
 * unwritten, and a rollback forgets the cache (it is re-read).
 */
enum {
    MOM_APPLIED_UNKNOWN = 0,
    MOM_APPLIED_KNOWN,
    MOM_APPLIED_DIRTY,
};

static int
mom_store_commit_hook(void *data)
{
    mom_store_t *st = data;

    if (st->n_dirty > 0 || st->n_counters > 0) {
        /* A caller forgot mom_store_flush(): effects without their applied
         * index or counters must not commit (a restart would apply them
         * again, or reuse sequence numbers). */
        mom_log_error("sqlite: COMMIT with %" PRIu32 " applied indexes and %u"
                      " counters unwritten: rolled back",
                      st->n_dirty, st->n_counters);
        return 1;
    }
    return 0;
}

static void
mom_store_rollback_hook(void *data)
{
    mom_store_t *st = data;

    if (st->n_groups > 0) {
        memset(st->state, MOM_APPLIED_UNKNOWN, st->n_groups);
    }
    st->n_dirty = 0;
    st->n_counters = 0;
}

void
mom_store_deferred_init(mom_store_t *st)
{
    sqlite3_commit_hook(st->db, mom_store_commit_hook, st);
    sqlite3_rollback_hook(st->db, mom_store_rollback_hook, st);
}

void
mom_store_deferred_free(mom_store_t *st)
{
    free(st->applied);
    free(st->state);
    free(st->dirty);
}

/* Makes room for `group` in the cache. */
static int
mom_store_applied_room(mom_store_t *st, uint32_t group)
{
    uint32_t n = st->n_groups ? st->n_groups : 64;
    uint64_t *applied;
    unsigned char *state;
    uint32_t *dirty;

    if (group < st->n_groups) {
        return MOM_STORE_OK;
    }
    while (n <= group) {
        if (n > UINT32_MAX / 2) {
            return MOM_STORE_ERROR;
        }
        n *= 2;
    }
    applied = realloc(st->applied, n * sizeof(*applied));
    if (applied != NULL) {
        st->applied = applied;
    }
    state = realloc(st->state, n);
    if (state != NULL) {
        st->state = state;
    }
    dirty = realloc(st->dirty, n * sizeof(*dirty));
    if (dirty != NULL) {
        st->dirty = dirty;
    }
    if (applied == NULL || state == NULL || dirty == NULL) {
        mom_log_error("out of memory");
        return MOM_STORE_ERROR;
    }
    memset(state + st->n_groups, MOM_APPLIED_UNKNOWN, n - st->n_groups);
    st->n_groups = n;
    return MOM_STORE_OK;
}

static void
mom_store_applied_key(char *key, size_t size, uint32_t group)
{
    snprintf(key, size, "applied_index.%" PRIu32, group);
}

static int
mom_store_applied_write(mom_store_t *st, uint32_t group, uint64_t index)
{
    sqlite3_stmt *s = st->stmt[S_META_SET];
    char key[32];

    mom_store_applied_key(key, sizeof(key), group);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)index);
    return mom_store_exec_stmt(st, s);
}

int
mom_store_applied_index(mom_store_t *st, uint32_t group, uint64_t *index)
{
    sqlite3_stmt *s = st->stmt[S_META_GET];
    char key[32];
    int rc;

    if (mom_store_applied_room(st, group) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    if (st->state[group] != MOM_APPLIED_UNKNOWN) {
        *index = st->applied[group];
        return MOM_STORE_OK;
    }
    mom_store_applied_key(key, sizeof(key), group);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *index = (uint64_t)sqlite3_column_int64(s, 0);
    } else if (rc == SQLITE_DONE) {
        *index = 0;
    }
    mom_store_finish(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return mom_store_fail(st, "applied_index");
    }
    st->applied[group] = *index;
    st->state[group] = MOM_APPLIED_KNOWN;
    return MOM_STORE_OK;
}

int
mom_store_set_applied_index(mom_store_t *st, uint32_t group, uint64_t index)
{
    if (mom_store_applied_room(st, group) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    if (sqlite3_get_autocommit(st->db)) {
        /* No transaction to defer to: write now. */
        if (mom_store_applied_write(st, group, index) != MOM_STORE_OK) {
            st->state[group] = MOM_APPLIED_UNKNOWN;
            return MOM_STORE_ERROR;
        }
        st->state[group] = MOM_APPLIED_KNOWN; /* none is dirty outside */
        st->applied[group] = index;
        return MOM_STORE_OK;
    }
    if (st->state[group] != MOM_APPLIED_DIRTY) {
        st->state[group] = MOM_APPLIED_DIRTY;
        st->dirty[st->n_dirty++] = group;
    }
    st->applied[group] = index;
    return MOM_STORE_OK;
}

static int
mom_store_applied_flush(mom_store_t *st)
{
    uint32_t group;

    while (st->n_dirty > 0) {
        group = st->dirty[st->n_dirty - 1];
        if (mom_store_applied_write(st, group, st->applied[group]) !=
            MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
        st->state[group] = MOM_APPLIED_KNOWN;
        st->n_dirty--;
    }
    return MOM_STORE_OK;
}

/* --- collection counters --------------------------------------------------
 *
 * An append takes the collection's next number from memory after the first
 * one of the transaction: one read per transaction instead of per message,
 * and for a queue one UPDATE of its row. coll_get sees the counted number,
 * coll_delete forgets it; whole-partition operations flush first.
 */

static mom_store_counter_t *
mom_store_counter_find(mom_store_t *st, mom_coll_t c, const char *name)
{
    for (unsigned i = 0; i < st->n_counters; i++) {
        mom_store_counter_t *k = &st->counters[i];
        if (k->used && k->c == c && strcmp(k->name, name) == 0) {
            return k;
        }
    }
    return NULL;
}

static int
mom_store_counters_flush(mom_store_t *st)
{
    sqlite3_stmt *s;

    for (unsigned i = 0; i < st->n_counters; i++) {
        mom_store_counter_t *k = &st->counters[i];
        /* A topic's next offset follows from its last message (store.c,
         * MOM_STORE_TOPIC_NEXT); a queue's does not: its messages go. */
        if (!k->used || k->c == MOM_TOPIC) {
            continue;
        }
        s = st->stmt[S_COLL_SET_NEXT + k->c];
        sqlite3_bind_text(s, 1, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)k->next);
        if (mom_store_exec_stmt(st, s) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
    }
    st->n_counters = 0;
    return MOM_STORE_OK;
}

int
mom_store_counter_take(mom_store_t *st, mom_coll_t c, const char *name,
                       uint64_t *seq, sqlite3_int64 *id)
{
    mom_store_counter_t *k = mom_store_counter_find(st, c, name);
    sqlite3_stmt *s;
    size_t len;
    int rc;

    if (k == NULL) {
        len = strlen(name);
        if (len > MOM_STORE_NAME_MAX) {
            return MOM_STORE_ERROR;
        }
        if (st->n_counters == MOM_STORE_COUNTERS &&
            mom_store_counters_flush(st) != MOM_STORE_OK) {
            return MOM_STORE_ERROR;
        }
        k = &st->counters[st->n_counters];
        s = st->stmt[S_COLL_GET + c];
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            k->next = (uint64_t)sqlite3_column_int64(s, 1);
            k->id = sqlite3_column_int64(s, 2);
        }
        mom_store_finish(s);
        if (rc == SQLITE_DONE) {
            return MOM_STORE_NOT_FOUND;
        }
        if (rc != SQLITE_ROW) {
            return mom_store_fail(st, "counter");
        }
        k->c = c;
        k->used = true;
        memcpy(k->name, name, len + 1);
        st->n_counters++;
    }
    *seq = k->next++;
    *id = k->id;
    return MOM_STORE_OK;
}

bool
mom_store_counter_peek(mom_store_t *st, mom_coll_t c, const char *name,
                       uint64_t *next)
{
    mom_store_counter_t *k = mom_store_counter_find(st, c, name);

    if (k != NULL) {
        *next = k->next;
    }
    return k != NULL;
}

void
mom_store_counter_forget(mom_store_t *st, mom_coll_t c, const char *name)
{
    mom_store_counter_t *k = mom_store_counter_find(st, c, name);

    if (k != NULL) {
        k->used = false; /* the slot is reused by the next flush */
    }
}

int
mom_store_flush(mom_store_t *st)
{
    if (mom_store_counters_flush(st) != MOM_STORE_OK) {
        return MOM_STORE_ERROR;
    }
    return mom_store_applied_flush(st);
}
