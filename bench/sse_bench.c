/*
 * sse_bench: SSE fan-out and late-joiner load client for scripts/bench.
 *
 * One epoll loop drives S subscriber connections (GET, Accept:
 * text/event-stream) and K publisher connections (keepalive POSTs) against
 * one or more HTTP servers: MOM nodes or nchan.  Every published message
 * carries its sequence number and its publish time in the content
 * ({"bseq":N,"bts":<monotonic us>,...}), so a subscriber that receives it
 * knows which message it is and how long delivery took.  Subscribers behave
 * like EventSource: when a stream ends they reconnect with Last-Event-ID.
 *
 * Modes:
 *   fanout  all subscribers connect, then M messages are published (at a
 *           fixed rate or at full speed); reports delivered events/s and
 *           publish-to-receive latency p50/p99.
 *   late    like fanout, but every subscriber drops its stream after a
 *           random number of events, waits a little and rejoins with
 *           Last-Event-ID while publishing goes on at full speed; every
 *           message after the first one it saw must arrive (misses).
 * A message whose publish was not acknowledged (error, connection lost) may
 * or may not have been committed: it is not counted as owed.
 *
 * Reads chunked and unchunked responses.  Prints one JSON line of results.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_resp.h"

#define MAX_ADDRS 16
#define ID_MAX 128
#define LINE_MAX_LEN 65536
#define HIST_STEP_US 10
#define HIST_BUCKETS 2000000 /* 10 us buckets up to 20 s */
#define MAX_CONNECTING 64
#define MAX_SUB_ERRORS 10
#define READY_TIMEOUT_US 30000000

enum { CONN_SUB, CONN_PUB };
enum { ST_IDLE, ST_CONNECTING, ST_SENDING, ST_HEADERS };

typedef struct {
    struct sockaddr_in sa;
} addr_t;

typedef struct sub_s sub_t;

typedef struct {
    int kind;
    int fd;
    int state;
    int index;
    const addr_t *addr;

    char *out;
    size_t out_len, out_off;

    http_resp_t resp;

    /* SSE line assembly */
    char *line;
    size_t line_len;
    int line_cr;
    char ev_id[ID_MAX];
    int ev_has_data;
    long long ev_seq;
    long long ev_ts;
    int ev_end;

    /* publisher */
    long long pub_seq;
    long long pub_sent_us;

    sub_t *sub;
} conn_t;

struct sub_s {
    int index;
    conn_t *conn;
    uint8_t *seen;
    long long first_seq;   /* first seq ever received, 0 = none */
    long long distinct;
    long long dups;
    long long out_of_order;
    long long max_seq;
    long long since_connect;
    long long drop_after;  /* late mode: drop the stream after this many */
    int dropped;           /* late mode: already dropped once */
    char last_id[ID_MAX];
    long long reconnect_at; /* us, 0 = none */
    int ready;
    int pending;            /* counted in connecting_now */
    int connects;
    int http_errors;
};

static struct {
    addr_t sub_addrs[MAX_ADDRS];
    int n_sub_addrs;
    addr_t pub_addrs[MAX_ADDRS];
    int n_pub_addrs;
    const char *sub_path;
    const char *pub_path;
    const char *token;
    int wrap_content; /* MOM: body {"content":{...}}; nchan: {...} */
    int subs;
    long long messages;
    double rate;
    int pub_conns;
    int late;
    int forget_id; /* checks the checker: rejoin without Last-Event-ID */
    int msg_size;
    double timeout_s;
    double drain_s;
    unsigned seed;
} opt = {
    .subs = 100,
    .messages = 1000,
    .pub_conns = 4,
    .msg_size = 100,
    .timeout_s = 120,
    .drain_s = 10,
    .seed = 1,
};

static int ep;
static sub_t *subs;
static conn_t **pubs;
static uint32_t *lat_hist;
/* per message: publish time, first and last receive (us, 0 = none) */
static long long *msg_pub_us, *msg_first_us, *msg_last_us;
/* per message: 1 when its publish was not acknowledged (it may or may not
 * have been committed, so no subscriber owes it) */
static uint8_t *msg_unacked;
static uint64_t lat_overflow, lat_count;
static uint32_t *ack_hist;
static uint64_t ack_overflow, ack_count;

static long long next_seq = 1;   /* next message to publish */
static long long acked, pub_errors, pub_inflight;
static long long first_pub_us, last_ack_us, last_recv_us;
static long long delivered, sub_http_errors, reconnects, stream_ends;
static long long rejoins;
static long long connecting_now;
static int next_sub_to_connect;
static char pad[4096];

static long long
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
die(const char *msg)
{
    fprintf(stderr, "sse_bench: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (p == NULL) {
        die("calloc");
    }
    return p;
}

static void
hist_add(uint32_t *hist, uint64_t *overflow, uint64_t *count, long long us)
{
    if (us < 0) {
        us = 0;
    }
    if (us / HIST_STEP_US >= HIST_BUCKETS) {
        (*overflow)++;
    } else {
        hist[us / HIST_STEP_US]++;
    }
    (*count)++;
}

static double
hist_pct_ms(const uint32_t *hist, uint64_t count, double pct)
{
    uint64_t want, seen = 0;
    long i;

    if (count == 0) {
        return -1;
    }
    want = (uint64_t) (count * pct / 100.0);
    if (want == 0) {
        want = 1;
    }
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= want) {
            return (i * HIST_STEP_US + HIST_STEP_US / 2) / 1000.0;
        }
    }
    return HIST_BUCKETS * HIST_STEP_US / 1000.0;
}

static int
parse_addrs(const char *list, addr_t *addrs)
{
    char buf[1024], *tok, *save = NULL;
    int n = 0;

    snprintf(buf, sizeof(buf), "%s", list);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save))
    {
        char *colon = strrchr(tok, ':');

        if (colon == NULL || n == MAX_ADDRS) {
            fprintf(stderr, "sse_bench: bad address list %s\n", list);
            exit(2);
        }
        *colon = '\0';
        memset(&addrs[n], 0, sizeof(addrs[n]));
        addrs[n].sa.sin_family = AF_INET;
        addrs[n].sa.sin_port = htons((uint16_t) atoi(colon + 1));
        if (inet_pton(AF_INET, tok, &addrs[n].sa.sin_addr) != 1) {
            fprintf(stderr, "sse_bench: bad address %s\n", tok);
            exit(2);
        }
        n++;
    }
    return n;
}

static void
ep_mod(conn_t *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };

    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        die("epoll_ctl mod");
    }
}

static int
conn_open(conn_t *c)
{
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        die("socket");
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *) &c->addr->sa,
                sizeof(c->addr->sa)) < 0 && errno != EINPROGRESS)
    {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        die("epoll_ctl add");
    }
    c->state = ST_CONNECTING;
    return 0;
}

static void
conn_reset_parser(conn_t *c)
{
    http_resp_reset(&c->resp);
    c->line_len = 0;
    c->line_cr = 0;
    c->ev_id[0] = '\0';
    c->ev_has_data = 0;
    c->ev_end = 0;
}

static void
sub_unpend(sub_t *s)
{
    if (s->pending) {
        s->pending = 0;
        connecting_now--;
    }
}

static void
conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->kind == CONN_SUB) {
        sub_unpend(c->sub);
    }
    c->state = ST_IDLE;
    free(c->out);
    c->out = NULL;
}

/* --- subscribers ---------------------------------------------------------- */

static void
sub_start(sub_t *s)
{
    conn_t *c = s->conn;
    char *req;
    int n;

    c->addr = &opt.sub_addrs[s->index % opt.n_sub_addrs];
    conn_reset_parser(c);
    s->since_connect = 0;
    s->ready = 0;
    s->connects++;
    if (s->last_id[0] != '\0') {
        n = asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: bench\r\n"
                     "Accept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n"
                     "Last-Event-ID: %s\r\n\r\n",
                     opt.sub_path, s->last_id);
    } else {
        n = asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: bench\r\n"
                     "Accept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n\r\n",
                     opt.sub_path);
    }
    if (n < 0) {
        die("asprintf");
    }
    c->out = req;
    c->out_len = (size_t) n;
    c->out_off = 0;
    if (s->http_errors > MAX_SUB_ERRORS) {
        return; /* this subscriber gives up; counted as never ready */
    }
    s->pending = 1;
    connecting_now++;
    if (conn_open(c) < 0) {
        sub_unpend(s);
        s->reconnect_at = now_us() + 100000;
    }
}

static void
sub_schedule_reconnect(sub_t *s, long long delay_us)
{
    conn_close(s->conn);
    s->reconnect_at = now_us() + delay_us;
}

static void
sub_event(conn_t *c)
{
    sub_t *s = c->sub;
    long long seq = c->ev_seq, t = now_us();

    if (c->ev_id[0] != '\0') {
        memcpy(s->last_id, c->ev_id, sizeof(s->last_id));
    }
    if (seq < 1 || seq > opt.messages) {
        return;
    }
    delivered++;
    last_recv_us = t;
    s->since_connect++;
    if (s->first_seq == 0) {
        s->first_seq = seq;
    }
    if (seq < s->max_seq) {
        s->out_of_order++;
    }
    if (seq > s->max_seq) {
        s->max_seq = seq;
    }
    if (s->seen[seq >> 3] & (1 << (seq & 7))) {
        s->dups++;
        return;
    }
    s->seen[seq >> 3] |= (uint8_t) (1 << (seq & 7));
    s->distinct++;
    if (c->ev_ts > 0) {
        hist_add(lat_hist, &lat_overflow, &lat_count, t - c->ev_ts);
        msg_pub_us[seq] = c->ev_ts;
        if (msg_first_us[seq] == 0) {
            msg_first_us[seq] = t;
        }
        msg_last_us[seq] = t;
    }
    if (opt.late && !s->dropped && s->since_connect >= s->drop_after) {
        /* leave and rejoin from the last event id, like a flaky client */
        s->dropped = 1;
        rejoins++;
        if (opt.forget_id) {
            s->last_id[0] = '\0';
        }
        sub_schedule_reconnect(s, 1000 + (long long) (rand() % 50000));
    }
}

static long long
json_int_after(const char *data, size_t len, const char *key)
{
    const char *p = memmem(data, len, key, strlen(key));

    if (p == NULL) {
        return -1;
    }
    p += strlen(key);
    while (p < data + len && (*p == ' ' || *p == ':')) {
        p++;
    }
    return strtoll(p, NULL, 10);
}

static void
sse_line(conn_t *c, char *line, size_t len)
{
    if (len == 0) {
        if (c->ev_has_data) {
            sub_event(c);
        }
        c->ev_has_data = 0;
        c->ev_seq = -1;
        c->ev_ts = -1;
        return;
    }
    if (line[0] == ':') {
        return;
    }
    if (len >= 3 && memcmp(line, "id:", 3) == 0) {
        size_t off = (len > 3 && line[3] == ' ') ? 4 : 3;
        size_t n = len - off < ID_MAX - 1 ? len - off : ID_MAX - 1;

        memcpy(c->ev_id, line + off, n);
        c->ev_id[n] = '\0';
    } else if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        c->ev_has_data = 1;
        c->ev_seq = json_int_after(line, len, "\"bseq\"");
        c->ev_ts = json_int_after(line, len, "\"bts\"");
    } else if (len >= 6 && memcmp(line, "event:", 6) == 0) {
        if (memmem(line, len, "end", 3) != NULL) {
            c->ev_end = 1;
        }
    }
}

/* SSE_BENCH_DUMP=<dir>: every subscriber's de-chunked stream is appended
 * to <dir>/sub<N>, to tell a server's miss from a client's */
static const char *dump_dir;

static void
dump_bytes(sub_t *s, const char *p, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/sub%d", dump_dir, s->index);
    f = fopen(path, "a");
    if (f != NULL) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

/* SSE bytes after de-chunking: split into lines (LF, CRLF or CR). Returns
 * non-zero when an event made the subscriber drop the stream. */
static int
sse_body(void *ctx, const char *p, size_t n)
{
    conn_t *c = ctx;
    size_t i;

    if (c->kind != CONN_SUB || c->fd < 0) {
        return c->fd < 0;
    }
    if (dump_dir != NULL) {
        dump_bytes(c->sub, p, n);
    }
    for (i = 0; i < n; i++) {
        char ch = p[i];

        if (ch == '\n' && c->line_cr) {
            c->line_cr = 0;
            continue;
        }
        c->line_cr = 0;
        if (ch == '\n' || ch == '\r') {
            c->line_cr = (ch == '\r');
            sse_line(c, c->line, c->line_len);
            c->line_len = 0;
            if (c->fd < 0) {
                return 1; /* the event made us drop the stream */
            }
            continue;
        }
        if (c->line_len < LINE_MAX_LEN) {
            c->line[c->line_len++] = ch;
        }
    }
    return 0;
}

/* --- publishers ----------------------------------------------------------- */

static void
pub_send_next(conn_t *c)
{
    long long seq = next_seq++, t = now_us();
    char payload[4200], *req;
    int plen, n, padlen;

    plen = snprintf(payload, sizeof(payload), "{\"bseq\":%lld,\"bts\":%lld,"
                    "\"pad\":\"\"}", seq, t);
    padlen = opt.msg_size - plen;
    if (padlen < 0) {
        padlen = 0;
    }
    plen = snprintf(payload, sizeof(payload), "{\"bseq\":%lld,\"bts\":%lld,"
                    "\"pad\":\"%.*s\"}", seq, t, padlen, pad);
    if (opt.wrap_content) {
        n = asprintf(&req,
                     "POST %s HTTP/1.1\r\nHost: bench\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n{\"content\":%s}",
                     opt.pub_path, opt.token, plen + 12, payload);
    } else {
        n = asprintf(&req,
                     "POST %s HTTP/1.1\r\nHost: bench\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     opt.pub_path, opt.token, plen, payload);
    }
    if (n < 0) {
        die("asprintf");
    }
    if (first_pub_us == 0) {
        first_pub_us = t;
    }
    free(c->out);
    c->out = req;
    c->out_len = (size_t) n;
    c->out_off = 0;
    c->pub_seq = seq;
    c->pub_sent_us = t;
    conn_reset_parser(c);
    c->state = ST_SENDING;
    pub_inflight++;
    ep_mod(c, EPOLLOUT);
}

static int
pub_due(long long t)
{
    if (next_seq > opt.messages) {
        return 0;
    }
    if (opt.rate <= 0) {
        return 1;
    }
    return t >= first_pub_us + (long long) ((next_seq - 1) * 1e6 / opt.rate)
           || first_pub_us == 0;
}

static void
pub_done(conn_t *c)
{
    long long t = now_us();

    pub_inflight--;
    if (c->resp.status >= 200 && c->resp.status < 300) {
        acked++;
        hist_add(ack_hist, &ack_overflow, &ack_count, t - c->pub_sent_us);
    } else {
        pub_errors++;
        msg_unacked[c->pub_seq] = 1;
    }
    last_ack_us = t;
    c->state = ST_IDLE;
    ep_mod(c, EPOLLIN);
}

static void
on_readable(conn_t *c)
{
    static char buf[65536];
    ssize_t n;
    size_t off;
    int drained;

    for (;;) {
        n = read(c->fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        /* a short read drained the socket: after it, return without the
         * read that would only say EAGAIN (epoll is level-triggered, so
         * anything arriving meanwhile is reported again); at 1,000
         * subscribers that read is 1,000 syscalls per message, paid by
         * the client, not by the server under test */
        drained = n > 0 && (size_t) n < sizeof(buf);
        if (n <= 0) {
            if (c->kind == CONN_SUB) {
                stream_ends++;
                if (!c->resp.in_body) {
                    c->sub->http_errors++;
                    sub_http_errors++;
                }
                reconnects++;
                sub_schedule_reconnect(c->sub, 100000);
            } else {
                /* publisher connection lost: count the request, reopen */
                if (c->state != ST_IDLE) {
                    pub_inflight--;
                    pub_errors++;
                    msg_unacked[c->pub_seq] = 1;
                }
                conn_close(c);
                conn_open(c);
                c->state = ST_CONNECTING;
                free(c->out);
                c->out = NULL;
            }
            return;
        }
        for (off = 0; off < (size_t) n; ) {
            int had_headers = c->resp.in_body;

            off += http_resp_feed(&c->resp, buf + off, (size_t) n - off,
                                  sse_body, c);
            if (c->fd < 0) {
                return;
            }
            if (!had_headers && c->resp.in_body && c->kind == CONN_SUB) {
                sub_unpend(c->sub);
                if (c->resp.status != 200) {
                    c->sub->http_errors++;
                    sub_http_errors++;
                    sub_schedule_reconnect(c->sub, 200000);
                    return;
                }
                if (!c->resp.event_stream) {
                    /* a server that answers with something else (a JSON
                     * history, say) never will: stop at once */
                    printf("{\"failed\":1,\"error\":\"subscribe: 200 "
                           "without Content-Type text/event-stream\"}\n");
                    exit(1);
                }
                c->sub->ready = 1;
            }
            if (c->resp.done) {
                if (c->kind == CONN_PUB && c->state == ST_HEADERS) {
                    pub_done(c);
                }
                break; /* a subscriber's stream ended: EOF follows */
            }
        }
        if (drained) {
            return;
        }
    }
}

static void
on_writable(conn_t *c)
{
    ssize_t n;

    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);

        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            if (c->kind == CONN_SUB) {
                c->sub->http_errors++;
                sub_http_errors++;
                sub_schedule_reconnect(c->sub, 200000);
            } else {
                fprintf(stderr, "sse_bench: publisher connect: %s\n",
                        strerror(err));
                exit(2);
            }
            return;
        }
        if (c->kind == CONN_PUB) {
            c->state = ST_IDLE;
            ep_mod(c, EPOLLIN);
            return;
        }
        c->state = ST_SENDING;
    }
    while (c->out_off < c->out_len) {
        n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            if (c->kind == CONN_SUB) {
                sub_schedule_reconnect(c->sub, 200000);
            } else {
                pub_inflight--;
                pub_errors++;
                msg_unacked[c->pub_seq] = 1;
                conn_close(c);
                conn_open(c);
            }
            return;
        }
        c->out_off += (size_t) n;
    }
    c->state = ST_HEADERS;
    ep_mod(c, EPOLLIN);
}

/* --- main loop ------------------------------------------------------------ */

static int
all_subs_done(void)
{
    int i;

    for (i = 0; i < opt.subs; i++) {
        sub_t *s = &subs[i];

        /* connected before the first publish: owes every message */
        if (s->distinct < opt.messages) {
            return 0;
        }
    }
    return 1;
}

static int
cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *) a, y = *(const long long *) b;

    return (x > y) - (x < y);
}

/* pct-th percentile (ms) of the n values in v (sorted in place) */
static double
pct_ms(long long *v, long long n, double pct)
{
    long long i;

    if (n == 0) {
        return -1;
    }
    qsort(v, (size_t) n, sizeof(*v), cmp_ll);
    i = (long long) (n * pct / 100.0);
    return v[i < n ? i : n - 1] / 1000.0;
}

/*
 * Where a message's latency comes from: "first" is publish to the first
 * subscriber's receive (the publish path and commit), "spread" is first to
 * last receive of the same message (the fan-out to every subscriber).
 */
static void
msg_breakdown(double out[4])
{
    long long *first = xcalloc((size_t) opt.messages + 1, sizeof(long long));
    long long *spread = xcalloc((size_t) opt.messages + 1, sizeof(long long));
    long long seq, n = 0;

    for (seq = 1; seq <= opt.messages; seq++) {
        if (msg_first_us[seq] != 0 && msg_pub_us[seq] > 0) {
            first[n] = msg_first_us[seq] - msg_pub_us[seq];
            spread[n] = msg_last_us[seq] - msg_first_us[seq];
            n++;
        }
    }
    out[0] = pct_ms(first, n, 50);
    out[1] = pct_ms(first, n, 99);
    out[2] = pct_ms(spread, n, 50);
    out[3] = pct_ms(spread, n, 99);
    free(first);
    free(spread);
}

static void
usage(void)
{
    fprintf(stderr,
        "usage: sse_bench --sub ADDRS --sub-path PATH --pub ADDRS "
        "--pub-path PATH\n"
        "         [--token T] [--wrap-content] [--subs S] [--messages M]\n"
        "         [--rate R (msg/s, 0 = full speed)] [--pub-conns K]\n"
        "         [--late [--forget-id]] [--msg-size B] [--timeout SEC]\n"
        "         [--drain SEC] [--seed N]\n"
        "ADDRS: 127.0.0.1:port[,127.0.0.1:port...]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "sub", 1, NULL, 's' },      { "sub-path", 1, NULL, 'S' },
        { "pub", 1, NULL, 'p' },      { "pub-path", 1, NULL, 'P' },
        { "token", 1, NULL, 't' },    { "wrap-content", 0, NULL, 'w' },
        { "subs", 1, NULL, 'n' },     { "messages", 1, NULL, 'm' },
        { "rate", 1, NULL, 'r' },     { "pub-conns", 1, NULL, 'k' },
        { "late", 0, NULL, 'l' },     { "msg-size", 1, NULL, 'b' },
        { "timeout", 1, NULL, 'T' },  { "drain", 1, NULL, 'd' },
        { "seed", 1, NULL, 'e' },     { "forget-id", 0, NULL, 'f' },
        { NULL, 0, NULL, 0 }
    };
    int ch;

    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': opt.n_sub_addrs = parse_addrs(optarg, opt.sub_addrs); break;
        case 'p': opt.n_pub_addrs = parse_addrs(optarg, opt.pub_addrs); break;
        case 'S': opt.sub_path = optarg; break;
        case 'P': opt.pub_path = optarg; break;
        case 't': opt.token = optarg; break;
        case 'w': opt.wrap_content = 1; break;
        case 'n': opt.subs = atoi(optarg); break;
        case 'm': opt.messages = atoll(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'k': opt.pub_conns = atoi(optarg); break;
        case 'l': opt.late = 1; break;
        case 'b': opt.msg_size = atoi(optarg); break;
        case 'T': opt.timeout_s = atof(optarg); break;
        case 'd': opt.drain_s = atof(optarg); break;
        case 'e': opt.seed = (unsigned) atoi(optarg); break;
        case 'f': opt.forget_id = 1; break;
        default: usage();
        }
    }
    if (opt.n_sub_addrs == 0 || opt.n_pub_addrs == 0 || !opt.sub_path
        || !opt.pub_path || opt.subs < 1 || opt.messages < 1
        || opt.pub_conns < 1 || opt.msg_size > (int) sizeof(pad) - 1)
    {
        usage();
    }
    if (opt.token == NULL) {
        opt.token = "none";
    }
}

static void
setup(void)
{
    struct rlimit rl;
    int i;

    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(pad, 'x', sizeof(pad) - 1);
    srand(opt.seed);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1");
    }
    lat_hist = xcalloc(HIST_BUCKETS, sizeof(uint32_t));
    msg_pub_us = xcalloc((size_t) opt.messages + 1, sizeof(long long));
    msg_first_us = xcalloc((size_t) opt.messages + 1, sizeof(long long));
    msg_last_us = xcalloc((size_t) opt.messages + 1, sizeof(long long));
    msg_unacked = xcalloc((size_t) opt.messages + 1, 1);
    ack_hist = xcalloc(HIST_BUCKETS, sizeof(uint32_t));
    subs = xcalloc((size_t) opt.subs, sizeof(sub_t));
    for (i = 0; i < opt.subs; i++) {
        sub_t *s = &subs[i];

        s->index = i;
        s->seen = xcalloc((size_t) (opt.messages / 8 + 1), 1);
        s->conn = xcalloc(1, sizeof(conn_t));
        s->conn->kind = CONN_SUB;
        s->conn->fd = -1;
        s->conn->sub = s;
        s->conn->line = xcalloc(LINE_MAX_LEN, 1);
        /* late mode: drop somewhere in the first 80% of the messages */
        s->drop_after = 1 + rand() % (opt.messages * 8 / 10 + 1);
    }
    pubs = xcalloc((size_t) opt.pub_conns, sizeof(conn_t *));
    for (i = 0; i < opt.pub_conns; i++) {
        conn_t *c = xcalloc(1, sizeof(conn_t));

        c->kind = CONN_PUB;
        c->fd = -1;
        c->index = i;
        c->addr = &opt.pub_addrs[i % opt.n_pub_addrs];
        c->line = NULL;
        pubs[i] = c;
    }
}

int
main(int argc, char **argv)
{
    struct epoll_event evs[256];
    long long start, deadline, pub_start = 0, drain_deadline = 0, t;
    int i, n, publishing = 0, ready;
    double elapsed;

    parse_args(argc, argv);
    dump_dir = getenv("SSE_BENCH_DUMP");
    setup();
    start = now_us();
    deadline = start + (long long) (opt.timeout_s * 1e6);

    for (i = 0; i < opt.pub_conns; i++) {
        if (conn_open(pubs[i]) < 0) {
            die("connect publisher");
        }
    }

    for (;;) {
        t = now_us();
        if (t > deadline) {
            break;
        }

        /* connect (or reconnect) subscribers, a bounded number at a time */
        while (next_sub_to_connect < opt.subs
               && connecting_now < MAX_CONNECTING)
        {
            sub_start(&subs[next_sub_to_connect++]);
        }
        for (i = 0; i < opt.subs && next_sub_to_connect >= opt.subs; i++) {
            sub_t *s = &subs[i];

            if (s->reconnect_at && t >= s->reconnect_at
                && connecting_now < MAX_CONNECTING)
            {
                s->reconnect_at = 0;
                sub_start(s);
            }
        }

        if (!publishing && t > start + READY_TIMEOUT_US) {
            break; /* subscribers could not connect: report and stop */
        }
        if (!publishing) {
            ready = 0;
            for (i = 0; i < opt.subs; i++) {
                ready += subs[i].ready;
            }
            if (ready == opt.subs) {
                if (pub_start == 0) {
                    /* let the last subscriptions settle on the server */
                    pub_start = t + 300000;
                } else if (t >= pub_start) {
                    publishing = 1;
                }
            }
        }
        if (publishing) {
            for (i = 0; i < opt.pub_conns; i++) {
                if (pubs[i]->state == ST_IDLE && pubs[i]->fd >= 0
                    && pub_due(t))
                {
                    pub_send_next(pubs[i]);
                }
            }
            if (next_seq > opt.messages && pub_inflight == 0) {
                if (drain_deadline == 0) {
                    drain_deadline = t + (long long) (opt.drain_s * 1e6);
                }
                if (all_subs_done() || t > drain_deadline) {
                    break;
                }
            }
        }

        n = epoll_wait(ep, evs, 256, 1);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait");
        }
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;

            if (c->fd < 0) {
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->state == ST_CONNECTING || c->state == ST_SENDING) {
                    on_writable(c);
                } else {
                    on_readable(c);
                }
            } else if (evs[i].events & EPOLLOUT) {
                on_writable(c);
            }
        }
    }

    {
        long long expected = 0, received = 0, misses = 0, dups = 0, ooo = 0;
        long long not_ready = 0, seq;
        double br[4];

        for (i = 0; i < opt.subs; i++) {
            sub_t *s = &subs[i];
            long long sub_misses = 0;

            if (!s->ready && s->first_seq == 0) {
                not_ready++;
            }
            /* every subscriber was connected before the first publish, so
             * it owes every message, whatever order concurrent publishers
             * put them in and however often it rejoined */
            for (seq = 1; seq <= opt.messages; seq++) {
                if (msg_unacked[seq]
                    && !(s->seen[seq >> 3] & (1 << (seq & 7))))
                {
                    continue;
                }
                expected++;
                if (!(s->seen[seq >> 3] & (1 << (seq & 7)))) {
                    sub_misses++;
                    if (getenv("SSE_BENCH_DEBUG") != NULL) {
                        fprintf(stderr, "sub %d: missed %lld (first %lld, "
                                "connects %d, dropped after %lld)\n", i, seq,
                                s->first_seq, s->connects,
                                s->dropped ? s->drop_after : -1LL);
                    }
                }
            }
            misses += sub_misses;
            received += s->distinct;
            dups += s->dups;
            ooo += s->out_of_order;
        }
        msg_breakdown(br);
        t = now_us();
        elapsed = (last_recv_us > first_pub_us && first_pub_us
                   ? last_recv_us - first_pub_us : 1) / 1e6;
        printf("{\"mode\":\"%s\",\"subs\":%d,\"messages\":%lld,"
               "\"rate\":%.0f,\"published\":%lld,\"pub_errors\":%lld,"
               "\"pub_per_s\":%.1f,\"ack_p50_ms\":%.2f,\"ack_p99_ms\":%.2f,"
               "\"delivered\":%lld,\"distinct\":%lld,\"expected\":%lld,"
               "\"delivered_per_s\":%.1f,\"lat_p50_ms\":%.2f,"
               "\"lat_p99_ms\":%.2f,\"lat_max_bucket_overflow\":%llu,"
               "\"first_p50_ms\":%.2f,\"first_p99_ms\":%.2f,"
               "\"spread_p50_ms\":%.2f,\"spread_p99_ms\":%.2f,"
               "\"misses\":%lld,\"dups\":%lld,\"out_of_order\":%lld,"
               "\"reconnects\":%lld,\"rejoins\":%lld,"
               "\"sub_http_errors\":%lld,"
               "\"subs_never_ready\":%lld,\"elapsed_s\":%.3f,"
               "\"timed_out\":%s}\n",
               opt.late ? "late" : "fanout", opt.subs, opt.messages,
               opt.rate, acked, pub_errors,
               last_ack_us > first_pub_us
                   ? acked / ((last_ack_us - first_pub_us) / 1e6) : 0.0,
               hist_pct_ms(ack_hist, ack_count, 50),
               hist_pct_ms(ack_hist, ack_count, 99),
               delivered, received, expected, delivered / elapsed,
               hist_pct_ms(lat_hist, lat_count, 50),
               hist_pct_ms(lat_hist, lat_count, 99),
               (unsigned long long) lat_overflow, br[0], br[1], br[2], br[3],
               misses, dups, ooo,
               reconnects, rejoins, sub_http_errors, not_ready,
               (t - start) / 1e6, t > deadline ? "true" : "false");
    }
    return 0;
}
