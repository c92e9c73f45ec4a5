/*
 * test_peer.c: the peer gRPC transport (peer.c) with real gRPC between two
 * mom_peer instances in one process, on one libuv loop, over 127.0.0.1.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "peer.h"
#include "peer.pb-c.h"

#define MAX_HELD 2048

/* The test server: echoes, holds calls, or streams, as told. */
typedef struct {
    mom_peer *peer;
    int hold;          /* keep unary calls instead of replying */
    int hold_streams;  /* keep streams open after sending */
    unsigned stream_n; /* messages per stream */
    mom_peer_srv *held[MAX_HELD];
    uint8_t held_req[MAX_HELD][32]; /* the request of a held unary call */
    size_t held_len[MAX_HELD];
    size_t nheld;
    unsigned unary_calls, streams, closed;
    int send_refused;   /* mom_peer_stream_send returned -1 */
    unsigned bidi_msgs; /* messages received on bidi streams */
    int bidi_in_order;  /* each was "event <its number>" */
    mom_peer_srv *bidi; /* the bidi call being served */
} server;

/* Results of client calls. */
typedef struct {
    unsigned done;
    unsigned ok;
    grpc_status_code last_status;
    grpc_status_code last_error; /* last status other than OK */
    char last_detail[64];
    uint64_t first_done_ms;
    uint8_t last[256];
    size_t last_len;
} results;

typedef struct {
    results *r;
    unsigned index;
    int checked;
} call_slot;

typedef struct {
    unsigned messages;
    int in_order;
    int ended;
    grpc_status_code status;
    unsigned cancel_after; /* cancel from on_message after this many */
    mom_peer_stream *handle;
} stream_result;

static uv_loop_t loop;

static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void
tick(uv_timer_t *t)
{
}

/* Runs the loop until *flag (an unsigned) reaches want or timeout_ms. */
static int
run_until(const unsigned *flag, unsigned want, int timeout_ms)
{
    uv_timer_t t;
    uint64_t end = now_ms() + timeout_ms;

    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    while (*flag < want && now_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag >= want;
}

static void
run_for(int ms)
{
    unsigned never = 0;
    run_until(&never, 1, ms);
}

/* --- the test server ------------------------------------------------------ */

static void
srv_unary(void *ctx, int method, const uint8_t *req, size_t len,
          mom_peer_srv *call)
{
    server *s = ctx;

    s->unary_calls++;
    if (method == MOM_PEER_RAFT) {
        Mom__RaftBatch *b = mom__raft_batch__unpack(NULL, len, req);
        Mom__RaftAck ack = MOM__RAFT_ACK__INIT;
        uint8_t out[16];
        if (b == NULL) {
            mom_peer_reply(call, GRPC_STATUS_INVALID_ARGUMENT, NULL, 0,
                           "bad batch");
            return;
        }
        ack.accepted = (uint32_t)b->n_messages;
        mom__raft_batch__free_unpacked(b, NULL);
        mom_peer_reply(call, GRPC_STATUS_OK, out,
                       mom__raft_ack__pack(&ack, out), NULL);
        return;
    }
    if (s->hold) {
        assert_true(s->nheld < MAX_HELD);
        s->held_len[s->nheld] = len < 32 ? len : 32;
        memcpy(s->held_req[s->nheld], req, s->held_len[s->nheld]);
        s->held[s->nheld++] = call;
        return;
    }
    assert_int_equal(mom_peer_reply(call, GRPC_STATUS_OK, req, len, NULL), 0);
}

static void
srv_stream(void *ctx, int method, const uint8_t *req, size_t len,
           mom_peer_srv *stream)
{
    server *s = ctx;
    char msg[32];

    s->streams++;
    for (unsigned i = 0; i < s->stream_n; i++) {
        int n = snprintf(msg, sizeof(msg), "event %u", i);
        if (mom_peer_stream_send(stream, (uint8_t *)msg, (size_t)n) != 0) {
            s->send_refused = 1;
            break;
        }
    }
    if (s->hold_streams) {
        s->held[s->nheld++] = stream;
    } else {
        mom_peer_stream_end(stream, GRPC_STATUS_OK, NULL);
    }
}

static void
srv_closed(void *ctx, mom_peer_srv *call)
{
    server *s = ctx;

    s->closed++;
    for (size_t i = 0; i < s->nheld; i++) {
        if (s->held[i] == call) {
            s->nheld--;
            s->held[i] = s->held[s->nheld];
            s->held_len[i] = s->held_len[s->nheld];
            memcpy(s->held_req[i], s->held_req[s->nheld], 32);
            return;
        }
    }
    fail_msg("closed() for a call not held");
}

/* Bidi: echoes each message; "end" ends the call with OK. */
static void
srv_message(void *ctx, int method, const uint8_t *msg, size_t len,
            mom_peer_srv *call)
{
    server *s = ctx;
    char want[32];
    int n = snprintf(want, sizeof(want), "event %u", s->bidi_msgs);

    assert_int_equal(method, MOM_PEER_RAFT_STREAM);
    assert_true(s->bidi == NULL || s->bidi == call);
    if (s->bidi == NULL) {
        s->bidi = call;
        s->held[s->nheld++] = call; /* closed() finds it */
    }
    if (len == 3 && memcmp(msg, "end", 3) == 0) {
        s->nheld--;
        s->bidi = NULL;
        mom_peer_stream_end(call, GRPC_STATUS_OK, NULL);
        return;
    }
    if ((size_t)n != len || memcmp(msg, want, len) != 0) {
        s->bidi_in_order = 0;
    }
    s->bidi_msgs++;
    if (mom_peer_stream_send(call, msg, len) != 0) {
        s->send_refused = 1;
    }
}

static const mom_peer_handlers srv_handlers = {
    mom_peer_service, MOM_PEER_NMETHODS, srv_unary,
    srv_stream,       srv_closed,        srv_message,
};

/* Answers every held unary call with its own request, newest first. */
static void
reply_all_held(server *s)
{
    while (s->nheld > 0) {
        size_t i = --s->nheld;
        assert_int_equal(mom_peer_reply(s->held[i], GRPC_STATUS_OK,
                                        s->held_req[i], s->held_len[i], NULL),
                         0);
    }
}

static char *
server_start(server *s, const mom_peer_options *o)
{
    static char addr[64];

    memset(s, 0, sizeof(*s));
    s->peer = mom_peer_start(&loop, "127.0.0.1:0", &srv_handlers, s, o);
    assert_non_null(s->peer);
    assert_true(mom_peer_port(s->peer) > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", mom_peer_port(s->peer));
    return addr;
}

/* --- client callbacks ------------------------------------------------------
 */

static void
on_reply(void *ctx, grpc_status_code status, const char *detail,
         const uint8_t *buf, size_t len)
{
    results *r = ctx;

    assert_non_null(detail);
    if (r->done++ == 0) {
        r->first_done_ms = now_ms();
    }
    r->last_status = status;
    if (status != GRPC_STATUS_OK) {
        r->last_error = status;
        snprintf(r->last_detail, sizeof(r->last_detail), "%s", detail);
    } else {
        r->ok++;
        assert_true(len <= sizeof(r->last));
        memcpy(r->last, buf, len);
        r->last_len = len;
    }
}

/* Checks that call number `index` got its own request echoed. */
static void
on_indexed_reply(void *ctx, grpc_status_code status, const char *detail,
                 const uint8_t *buf, size_t len)
{
    call_slot *c = ctx;
    char want[32];
    int n = snprintf(want, sizeof(want), "call %u", c->index);

    if (status == GRPC_STATUS_OK) {
        assert_int_equal(len, (size_t)n);
        assert_memory_equal(buf, want, len);
        c->checked = 1;
    }
    on_reply(c->r, status, detail, buf, len);
}

static void
on_stream_message(void *ctx, const uint8_t *buf, size_t len)
{
    stream_result *r = ctx;
    char want[32];
    int n = snprintf(want, sizeof(want), "event %u", r->messages);

    assert_false(r->ended);
    if ((size_t)n != len || memcmp(buf, want, len) != 0) {
        r->in_order = 0;
    }
    r->messages++;
    if (r->cancel_after && r->messages == r->cancel_after) {
        mom_peer_stream_cancel(r->handle);
    }
    assert_true(r->cancel_after == 0 || r->messages <= r->cancel_after);
}

static void
on_stream_end(void *ctx, grpc_status_code status, const char *detail)
{
    stream_result *r = ctx;

    assert_false(r->ended);
    r->ended = 1;
    r->status = status;
}

static const mom_peer_stream_cbs stream_cbs = {on_stream_message,
                                               on_stream_end};

static void
finish_loop(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int
setup(void **state)
{
    return uv_loop_init(&loop);
}

static int
teardown(void **state)
{
    return 0;
}

/* --- tests -----------------------------------------------------------------
 */

static void
test_unary_roundtrip(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    Mom__Request req = MOM__REQUEST__INIT;
    Mom__RaftBatch batch = MOM__RAFT_BATCH__INIT;
    Mom__RaftMessage msg[3], *msgs[3];
    uint8_t buf[256];
    size_t len;
    results r = {0};

    assert_ptr_equal(ch, mom_peer_channel_get(cli, addr)); /* reused */

    req.op = MOM__OP__OP_PUBLISH;
    req.name = "news";
    req.user = "alice";
    len = mom__request__pack(&req, buf);
    assert_int_equal(
        mom_peer_call(ch, MOM_PEER_PATH_FORWARD, buf, len, 2000, on_reply, &r),
        0);
    assert_true(run_until(&r.done, 1, 3000));
    assert_int_equal(r.last_status, GRPC_STATUS_OK);
    Mom__Request *back = mom__request__unpack(NULL, r.last_len, r.last);
    assert_non_null(back);
    assert_string_equal(back->name, "news");
    assert_string_equal(back->user, "alice");
    mom__request__free_unpacked(back, NULL);

    /* an empty request message is a valid protobuf message */
    assert_int_equal(
        mom_peer_call(ch, MOM_PEER_PATH_FORWARD, buf, 0, 2000, on_reply, &r),
        0);
    assert_true(run_until(&r.done, 2, 3000));
    assert_int_equal(r.last_status, GRPC_STATUS_OK);
    assert_int_equal(r.last_len, 0);

    for (int i = 0; i < 3; i++) {
        mom__raft_message__init(&msg[i]);
        msg[i].group = (uint32_t)i;
        msg[i].from = 1;
        msg[i].to = 2;
        msgs[i] = &msg[i];
    }
    batch.from_node = 1;
    batch.to_node = 2;
    batch.n_messages = 3;
    batch.messages = msgs;
    len = mom__raft_batch__pack(&batch, buf);
    assert_int_equal(
        mom_peer_call(ch, MOM_PEER_PATH_RAFT, buf, len, 2000, on_reply, &r), 0);
    assert_true(run_until(&r.done, 3, 3000));
    assert_int_equal(r.last_status, GRPC_STATUS_OK);
    Mom__RaftAck *ack = mom__raft_ack__unpack(NULL, r.last_len, r.last);
    assert_non_null(ack);
    assert_int_equal(ack->accepted, 3);
    mom__raft_ack__free_unpacked(ack, NULL);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_many_in_flight(void **state)
{
    enum { N = 1000 };
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    static call_slot slots[N];
    results r = {0};
    char req[32];

    /* the server holds every call until all N are in flight at once */
    s.hold = 1;
    for (unsigned i = 0; i < N; i++) {
        int n = snprintf(req, sizeof(req), "call %u", i);
        slots[i] = (call_slot){&r, i, 0};
        assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)req, (size_t)n, 10000,
                                       on_indexed_reply, &slots[i]),
                         0);
    }
    assert_true(run_until(&s.unary_calls, N, 10000));
    assert_int_equal(s.nheld, N);
    assert_int_equal(r.done, 0);
    s.hold = 0;
    reply_all_held(&s);
    assert_true(run_until(&r.done, N, 10000));
    assert_int_equal(r.ok, N);
    for (unsigned i = 0; i < N; i++) {
        assert_true(slots[i].checked);
    }
    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_unknown_method(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    results r = {0};
    stream_result sr = {0};
    uint64_t t0 = now_ms();

    assert_int_equal(mom_peer_call(ch, "/mom.Peer/Nope", (uint8_t *)"x", 1,
                                   5000, on_reply, &r),
                     0);
    assert_int_equal(mom_peer_call(ch, "/other.Service/Forward", (uint8_t *)"x",
                                   1, 5000, on_reply, &r),
                     0);
    assert_true(run_until(&r.done, 2, 3000));
    assert_int_equal(r.last_status, GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(r.ok, 0);
    assert_true(now_ms() - t0 < 1000); /* answered, not timed out */

    sr.in_order = 1;
    sr.handle = mom_peer_stream_call(ch, "/mom.Peer/NoStream", (uint8_t *)"x",
                                     1, 5000, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_true(run_until((unsigned *)&sr.ended, 1, 3000));
    assert_int_equal(sr.status, GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(s.unary_calls + s.streams, 0);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_deadline(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    results r = {0};
    uint64_t t0;

    s.hold = 1; /* the server never replies */
    t0 = now_ms();
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, (uint8_t *)"x", 1,
                                   300, on_reply, &r),
                     0);
    assert_true(run_until(&r.done, 1, 3000));
    assert_int_equal(r.last_status, GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_true(r.first_done_ms - t0 >= 290);
    assert_true(r.first_done_ms - t0 < 1000);
    /* the server learns the client is gone and drops the handle */
    assert_true(run_until(&s.closed, 1, 3000));
    assert_int_equal(s.nheld, 0);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static int
free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void
test_peer_down(void **state)
{
    char addr[64];
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch;
    results r = {0};
    stream_result sr = {0};
    uint64_t t0 = now_ms();
    server s;
    int port = free_port();

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ch = mom_peer_channel_get(cli, addr);
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, (uint8_t *)"x", 1,
                                   5000, on_reply, &r),
                     0);
    assert_true(run_until(&r.done, 1, 6000));
    assert_int_equal(r.last_status, GRPC_STATUS_UNAVAILABLE);
    assert_true(now_ms() - t0 < 1000);

    /* while the channel backs off, calls keep failing fast */
    t0 = now_ms();
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_RAFT, (uint8_t *)"x", 1,
                                   5000, on_reply, &r),
                     0);
    sr.handle = mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE,
                                     (uint8_t *)"x", 1, 0, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_true(run_until(&r.done, 2, 6000));
    assert_true(run_until((unsigned *)&sr.ended, 1, 6000));
    assert_int_equal(r.last_status, GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(sr.status, GRPC_STATUS_UNAVAILABLE);
    assert_true(now_ms() - t0 < 1000);

    /* an address that cannot be resolved fails fast too */
    t0 = now_ms();
    assert_int_equal(mom_peer_call(mom_peer_channel_get(cli, "127.0.0.1:99999"),
                                   MOM_PEER_PATH_FORWARD, (uint8_t *)"x", 1,
                                   5000, on_reply, &r),
                     0);
    assert_true(run_until(&r.done, 3, 6000));
    assert_int_equal(r.last_status, GRPC_STATUS_UNAVAILABLE);
    assert_true(now_ms() - t0 < 1000);

    /* the peer comes up on that port: the same channel reaches it soon */
    memset(&s, 0, sizeof(s));
    s.peer = mom_peer_start(&loop, addr, &srv_handlers, &s, NULL);
    assert_non_null(s.peer);
    t0 = now_ms();
    while (r.ok == 0 && now_ms() - t0 < 5000) {
        unsigned want = r.done + 1;
        assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)"y", 1, 1000, on_reply, &r),
                         0);
        assert_true(run_until(&r.done, want, 2000));
        if (r.ok == 0) {
            run_for(50);
        }
    }
    assert_int_equal(r.ok, 1);
    printf("# peer up again: first call ok after %llu ms\n",
           (unsigned long long)(now_ms() - t0));

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_stream_in_order(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    stream_result sr = {0};

    s.stream_n = 1000;
    sr.in_order = 1;
    sr.handle =
        mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE, (uint8_t *)"sub", 3,
                             10000, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_true(run_until((unsigned *)&sr.ended, 1, 10000));
    assert_int_equal(sr.status, GRPC_STATUS_OK);
    assert_int_equal(sr.messages, 1000);
    assert_true(sr.in_order);
    assert_false(s.send_refused);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_stream_cancel_and_bound(void **state)
{
    mom_peer_options o = {0};
    server s;
    char *addr;
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch;
    stream_result sr = {0};

    /* a queue of 8 messages: the 9th send of the handler is refused */
    o.stream_msgs = 8;
    addr = server_start(&s, &o);
    ch = mom_peer_channel_get(cli, addr);
    s.stream_n = 20;
    s.hold_streams = 1;
    sr.in_order = 1;
    sr.cancel_after = 5;
    sr.handle = mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE,
                                     (uint8_t *)"sub", 3, 0, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_true(run_until(&sr.messages, 5, 5000));
    assert_true(s.send_refused);
    /* the client cancelled from on_message: the server stream is closed */
    assert_true(run_until(&s.closed, 1, 5000));
    assert_int_equal(s.nheld, 0);
    run_for(100);
    assert_int_equal(sr.messages, 5);
    assert_false(sr.ended); /* no callback after cancel */
    assert_true(sr.in_order);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_bidi(void **state)
{
    mom_peer_options o = {0};
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli;
    mom_peer_channel *ch;
    stream_result sr = {0}, down = {0};
    char msg[32];
    int refused = 0;

    /* 1000 messages each way, in order, then the server ends the call */
    o.stream_msgs = 8;
    cli = mom_peer_start(&loop, NULL, NULL, NULL, &o);
    ch = mom_peer_channel_get(cli, addr);
    s.bidi_in_order = 1;
    sr.in_order = 1;
    sr.handle =
        mom_peer_bidi_call(ch, MOM_PEER_PATH_RAFT_STREAM, 0, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    for (unsigned i = 0; i < 1000; i++) {
        int n = snprintf(msg, sizeof(msg), "event %u", i);

        while (mom_peer_stream_write(sr.handle, (uint8_t *)msg, (size_t)n) !=
               0) {
            /* the queue (8) is full: let the transport drain it */
            refused = 1;
            assert_true(mom_peer_stream_unsent(sr.handle) >= 8);
            uv_run(&loop, UV_RUN_ONCE);
        }
    }
    assert_true(refused);
    assert_true(run_until(&sr.messages, 1000, 10000));
    assert_int_equal(mom_peer_stream_unsent(sr.handle), 0);
    assert_int_equal(s.bidi_msgs, 1000);
    assert_true(s.bidi_in_order);
    assert_true(sr.in_order);
    assert_int_equal(mom_peer_stream_write(sr.handle, (uint8_t *)"end", 3), 0);
    assert_true(run_until((unsigned *)&sr.ended, 1, 5000));
    assert_int_equal(sr.status, GRPC_STATUS_OK);
    assert_int_equal(s.closed, 0);

    /* a client that cancels: the server's handle gets closed() */
    memset(&sr, 0, sizeof(sr));
    sr.handle =
        mom_peer_bidi_call(ch, MOM_PEER_PATH_RAFT_STREAM, 0, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_int_equal(
        mom_peer_stream_write(sr.handle, (uint8_t *)"event 1000", 10), 0);
    assert_true(run_until(&s.bidi_msgs, 1001, 5000));
    mom_peer_stream_cancel(sr.handle);
    assert_true(run_until(&s.closed, 1, 5000));
    assert_int_equal(s.nheld, 0);
    run_for(50);
    assert_false(sr.ended); /* no callback after cancel */

    /* a peer that is down: on_end with UNAVAILABLE, writes refused */
    mom_peer_stop(s.peer);
    run_for(20);
    down.handle = mom_peer_bidi_call(ch, MOM_PEER_PATH_RAFT_STREAM, 0,
                                     &stream_cbs, &down);
    assert_non_null(down.handle);
    mom_peer_stream_write(down.handle, (uint8_t *)"event 0", 7);
    assert_true(run_until((unsigned *)&down.ended, 1, 5000));
    assert_int_equal(down.status, GRPC_STATUS_UNAVAILABLE);

    mom_peer_stop(cli);
    finish_loop();
}

/* Waits, without running the loop, until every written message is sent. */
static int
sent_without_loop(const mom_peer_stream *st, int timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;

    while (mom_peer_stream_unsent(st) > 0) {
        if (now_ms() >= end) {
            return 0;
        }
        usleep(1000);
    }
    return 1;
}

/*
 * A write that follows a send gRPC has completed, but whose completion
 * the loop has not taken yet (nothing woke it), starts its own send at
 * once: it does not wait for the loop's next turn.
 */
static void
test_bidi_write_after_send(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    stream_result sr = {0};
    char msg[32];
    int n;

    s.bidi_in_order = 1;
    sr.in_order = 1;
    sr.handle =
        mom_peer_bidi_call(ch, MOM_PEER_PATH_RAFT_STREAM, 0, &stream_cbs, &sr);
    assert_non_null(sr.handle);
    assert_int_equal(mom_peer_stream_write(sr.handle, (uint8_t *)"event 0", 7),
                     0);
    assert_true(run_until(&s.bidi_msgs, 1, 5000)); /* connected */
    for (unsigned i = 1; i <= 20; i++) {
        n = snprintf(msg, sizeof(msg), "event %u", i);
        assert_true(sent_without_loop(sr.handle, 2000));
        assert_int_equal(
            mom_peer_stream_write(sr.handle, (uint8_t *)msg, (size_t)n), 0);
    }
    assert_true(sent_without_loop(sr.handle, 2000));
    assert_true(run_until(&s.bidi_msgs, 21, 5000));
    assert_true(s.bidi_in_order);
    assert_int_equal(mom_peer_stream_write(sr.handle, (uint8_t *)"end", 3), 0);
    assert_true(run_until((unsigned *)&sr.ended, 1, 5000));
    assert_int_equal(sr.status, GRPC_STATUS_OK);
    assert_true(sr.in_order);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
test_shutdown_in_flight(void **state)
{
    enum { N = 100 };
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);
    results r = {0};
    stream_result sr = {0};

    /* the client stops while its calls are held by the server */
    s.hold = 1;
    s.hold_streams = 1;
    s.stream_n = 3;
    sr.in_order = 1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)"x", 1, 10000, on_reply, &r),
                         0);
    }
    sr.handle = mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE,
                                     (uint8_t *)"s", 1, 0, &stream_cbs, &sr);
    assert_true(run_until(&s.unary_calls, N, 5000));
    assert_true(run_until(&sr.messages, 3, 5000));
    mom_peer_stop(cli);
    /* every callback was made by stop itself */
    assert_int_equal(r.done, N);
    assert_int_equal(r.ok, 0);
    assert_int_equal(r.last_status, GRPC_STATUS_CANCELLED);
    assert_true(sr.ended);
    assert_int_equal(sr.status, GRPC_STATUS_CANCELLED);
    assert_true(run_until(&s.closed, N + 1, 5000));

    /* the server stops while a new client's calls are in flight */
    cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    ch = mom_peer_channel_get(cli, addr);
    memset(&r, 0, sizeof(r));
    memset(&sr, 0, sizeof(sr));
    s.unary_calls = 0;
    s.closed = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)"x", 1, 10000, on_reply, &r),
                         0);
    }
    sr.handle = mom_peer_stream_call(ch, MOM_PEER_PATH_SUBSCRIBE,
                                     (uint8_t *)"s", 1, 0, &stream_cbs, &sr);
    assert_true(run_until(&s.unary_calls, N, 5000));
    assert_true(run_until(&sr.messages, 3, 5000));
    mom_peer_stop(s.peer);
    assert_int_equal(s.closed, N + 1); /* closed() for every held call */
    assert_int_equal(s.nheld, 0);
    assert_true(run_until(&r.done, N, 5000));
    assert_int_equal(r.ok, 0);
    assert_true(run_until((unsigned *)&sr.ended, 1, 5000));
    assert_int_not_equal(sr.status, GRPC_STATUS_OK);
    /* and a call to the stopped server fails fast */
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, (uint8_t *)"x", 1,
                                   5000, on_reply, &r),
                     0);
    assert_true(run_until(&r.done, N + 1, 2000));
    assert_int_equal(r.last_status, GRPC_STATUS_UNAVAILABLE);

    mom_peer_stop(cli);
    finish_loop();
}

static void
test_limits(void **state)
{
    mom_peer_options so = {0}, co = {0};
    server s;
    char *addr;
    mom_peer *cli, *cli2;
    mom_peer_channel *ch, *ch2;
    static uint8_t big[5000];
    results r_big = {0}, r_held = {0}, r_busy = {0};
    stream_result sr = {0};

    so.max_message = 1024;
    so.max_srv_calls = 4;
    addr = server_start(&s, &so);
    /* a second server on the same port fails instead of sharing it */
    assert_null(mom_peer_start(&loop, addr, &srv_handlers, &s, NULL));

    co.max_message = 4096;
    co.max_cli_calls = 4;
    cli = mom_peer_start(&loop, NULL, NULL, NULL, &co);
    ch = mom_peer_channel_get(cli, addr);

    /* the client's limit of calls in flight */
    s.hold = 1;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)"x", 1, 5000, on_reply,
                                       &r_held),
                         0);
    }
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, (uint8_t *)"x", 1,
                                   5000, on_reply, &r_held),
                     -1);
    assert_true(run_until(&s.unary_calls, 4, 3000));

    /* the server's limit of calls served at once */
    cli2 = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    ch2 = mom_peer_channel_get(cli2, addr);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mom_peer_call(ch2, MOM_PEER_PATH_FORWARD,
                                       (uint8_t *)"x", 1, 5000, on_reply,
                                       &r_busy),
                         0);
    }
    assert_true(run_until(&r_busy.done, 2, 3000));
    assert_int_equal(r_busy.ok, 0);
    assert_int_equal(r_busy.last_error, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(s.nheld, 4);

    /* an error status and its detail reach the client */
    s.nheld--;
    assert_int_equal(mom_peer_reply(s.held[s.nheld], GRPC_STATUS_NOT_FOUND,
                                    NULL, 0, "no such group"),
                     0);
    reply_all_held(&s);
    assert_true(run_until(&r_held.done, 4, 3000));
    assert_int_equal(r_held.ok, 3);
    assert_int_equal(r_held.last_error, GRPC_STATUS_NOT_FOUND);
    assert_string_equal(r_held.last_detail, "no such group");

    /* messages over the limits (after the held calls: the server counts
     * a refused call until its close is processed) */
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, big, 2000, 2000,
                                   on_reply, &r_big),
                     0);
    assert_true(run_until(&r_big.done, 1, 3000));
    assert_int_equal(r_big.last_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, big, 5000, 2000,
                                   on_reply, &r_big),
                     -1);

    /* a stream ended at once: no message, status OK */
    sr.in_order = 1;
    sr.handle = mom_peer_stream_call(ch2, MOM_PEER_PATH_SUBSCRIBE,
                                     (uint8_t *)"s", 1, 2000, &stream_cbs, &sr);
    assert_true(run_until((unsigned *)&sr.ended, 1, 3000));
    assert_int_equal(sr.status, GRPC_STATUS_OK);
    assert_int_equal(sr.messages, 0);

    mom_peer_stop(cli2);
    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

static void
bench_reply(void *ctx, grpc_status_code status, const char *detail,
            const uint8_t *buf, size_t len)
{
    results *r = ctx;

    r->done++;
    r->ok += status == GRPC_STATUS_OK;
}

/* calls/s with `depth` calls in flight (printed, never failing on speed) */
static void
bench(mom_peer_channel *ch, unsigned depth, unsigned total)
{
    results r = {0};
    unsigned started = 0;
    uint8_t req[64] = {0};
    uint64_t t0 = uv_hrtime();

    while (r.done < total) {
        while (started < total && started - r.done < depth) {
            assert_int_equal(mom_peer_call(ch, MOM_PEER_PATH_FORWARD, req,
                                           sizeof(req), 5000, bench_reply, &r),
                             0);
            started++;
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    double s = (double)(uv_hrtime() - t0) / 1e9;
    assert_int_equal(r.ok, total);
    printf("# bench: %u unary calls of 64 bytes, %u in flight: %.0f calls/s\n",
           total, depth, total / s);
}

static void
test_benchmark(void **state)
{
    server s;
    char *addr = server_start(&s, NULL);
    mom_peer *cli = mom_peer_start(&loop, NULL, NULL, NULL, NULL);
    mom_peer_channel *ch = mom_peer_channel_get(cli, addr);

    bench(ch, 1, 2000);
    bench(ch, 16, 10000);
    bench(ch, 128, 20000);

    mom_peer_stop(cli);
    mom_peer_stop(s.peer);
    finish_loop();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_cancel_and_bound, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bidi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi_write_after_send, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_benchmark, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
