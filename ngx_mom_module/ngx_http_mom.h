
/*
 * Shared declarations of the MOM nginx module: the location configuration,
 * the per-request context and the functions the module's files offer each
 * other (router, request parsing, JWT, upstream, errors, SSE).
 */


#ifndef _NGX_HTTP_MOM_H_INCLUDED_
#define _NGX_HTTP_MOM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "mom.pb-c.h"


#define NGX_HTTP_MOM_NAME_MAX          128
#define NGX_HTTP_MOM_PASSWORD_MAX      1024
#define NGX_HTTP_MOM_HISTORY_LIMIT_MAX 1000
#define NGX_HTTP_MOM_FRAME_HEADER      4

/* 422 is missing from nginx's table of status lines */
#define NGX_HTTP_MOM_UNPROCESSABLE     422


typedef struct {
    ngx_http_upstream_conf_t   upstream;

    ngx_uint_t                 jwt_alg;          /* jwt_alg_t */
    ngx_str_t                  jwt_key;          /* contents, not path */
    ngx_str_t                  jwt_signing_key;  /* contents, not path */
    time_t                     jwt_lifetime;

    ngx_flag_t                 topic_read_auth;
    ngx_msec_t                 heartbeat;
    size_t                     max_frame_size;

    /* a server with a MOM location: nginx's early errors become JSON too */
    ngx_flag_t                 json_errors;
} ngx_http_mom_loc_conf_t;


typedef struct ngx_http_mom_call_s  ngx_http_mom_call_t;
typedef struct ngx_http_mom_hub_s   ngx_http_mom_hub_t;


typedef struct {
    ngx_http_request_t        *request;

    Mom__Op                    op;
    ngx_str_t                  name;             /* NUL-terminated */
    ngx_str_t                  user;             /* the token's sub */
    time_t                     token_exp;        /* 0: no token given */
    const char                *detail;           /* why a request failed */

    Mom__Request               req;

    /* waiting for its reply on the worker's channel to momd */
    ngx_http_mom_call_t       *call;

    /* SSE: the frames of the stream, reassembled across reads */
    ngx_buf_t                 *frames;

    /* SSE: the worker's shared stream of the topic (ngx_http_mom_hub.c) */
    ngx_http_mom_hub_t        *hub;
    ngx_queue_t                hub_link;     /* pending or attached */
    uint64_t                   last_offset;  /* the last message written */
    size_t                     stream_buffer;  /* momd's sse_buffer */
    size_t                     unsent;       /* after the hub's last write */

    /* the body nginx's own error page is replaced with */
    ngx_str_t                  error_body;

    unsigned                   stream:1;         /* SSE requested */
    unsigned                   streaming:1;      /* SSE stream is live */
    unsigned                   json:1;           /* response is ours */
    unsigned                   no_keepalive:1;
    unsigned                   stream_ended:1;
    unsigned                   replace_body:1;
    unsigned                   replaced:1;
    unsigned                   offset_known:1;
    unsigned                   attached:1;
    unsigned                   dirty:1;      /* hub output to write */
} ngx_http_mom_ctx_t;


/* a wanted field of a plain JSON object and its value */
typedef struct {
    ngx_str_t                  key;
    u_char                    *start;   /* the value with its quotes */
    u_char                    *end;     /* NULL start: field absent */
} ngx_http_mom_field_t;


/* router */
ngx_int_t ngx_http_mom_route(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_valid_name(u_char *p, size_t len);

/* request: query arguments, body, the mom.Request */
ngx_int_t ngx_http_mom_needs_body(ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_parse_args(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_parse_body(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_plain_object(u_char *p, u_char *last,
    ngx_http_mom_field_t *fields, ngx_uint_t n);
ngx_table_elt_t *ngx_http_mom_find_header(ngx_http_request_t *r,
    const char *name, size_t len);

/* JWT */
ngx_int_t ngx_http_mom_authenticate(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_jwt_sign(ngx_http_request_t *r, const char *user,
    ngx_str_t *token);
char *ngx_http_mom_jwt_check_conf(ngx_conf_t *cf,
    ngx_http_mom_loc_conf_t *mlcf);

/* channel: unary requests pipelined on one connection per worker */
ngx_int_t ngx_http_mom_channel_send(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);

/* upstream */
ngx_int_t ngx_http_mom_upstream_create(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_reply_body(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, Mom__Response *resp, ngx_str_t *body);
ngx_int_t ngx_http_mom_send_reply(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, Mom__Response *resp);
ngx_int_t ngx_http_mom_frame_length(u_char *p, u_char *last, size_t max,
    size_t *len);
u_char *ngx_http_mom_frame_pack(u_char *p, const Mom__Request *req,
    size_t size);
ngx_int_t ngx_http_mom_connect(ngx_addr_t *addr, ngx_connection_t **c);
ngx_int_t ngx_http_mom_buf_reserve(ngx_buf_t *b, size_t size);
ngx_str_t *ngx_http_mom_status_line(ngx_uint_t status);

/* errors */
ngx_int_t ngx_http_mom_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail);
ngx_int_t ngx_http_mom_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);
ngx_int_t ngx_http_mom_json_detail(ngx_pool_t *pool, const char *detail,
    ngx_str_t *out);
void ngx_http_mom_set_json_type(ngx_http_request_t *r);
ngx_int_t ngx_http_mom_error_filter_init(ngx_conf_t *cf);

/* SSE */
ngx_int_t ngx_http_mom_sse_wanted(ngx_http_request_t *r);
ngx_int_t ngx_http_mom_sse_start(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_sse_filter_init(ngx_http_mom_ctx_t *ctx);
ngx_int_t ngx_http_mom_sse_filter(ngx_http_mom_ctx_t *ctx, ssize_t bytes);
ngx_int_t ngx_http_mom_sse_output(ngx_http_mom_ctx_t *ctx, u_char *data,
    size_t len);
uint64_t ngx_http_mom_sse_offset(u_char *p, size_t len);

/* SSE: shared streams */
void ngx_http_mom_hub_join(ngx_http_mom_ctx_t *ctx);
void ngx_http_mom_hub_leave(ngx_http_mom_ctx_t *ctx);
void ngx_http_mom_hub_try_attach(ngx_http_mom_ctx_t *ctx);
void ngx_http_mom_hub_end(ngx_http_mom_ctx_t *ctx, u_char *text,
    size_t len);


extern ngx_module_t  ngx_http_mom_module;


#endif /* _NGX_HTTP_MOM_H_INCLUDED_ */
