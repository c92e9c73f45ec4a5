
/*
 * Errors as JSON: ngx_http_mom_send_error() answers the module's own
 * errors with {"detail": ...}, and a header/body filter pair replaces any
 * error page nginx itself produces in a MOM location (413 from
 * client_max_body_size, 502/504 when momd is down or slow, 400, 500...)
 * with the same kind of JSON, so a client never sees nginx's HTML there.
 */


#include <jansson.h>

#include "ngx_http_mom.h"


typedef struct {
    ngx_uint_t   status;
    const char  *detail;
} ngx_http_mom_error_detail_t;


static ngx_http_mom_error_detail_t  ngx_http_mom_error_details[] = {
    { NGX_HTTP_BAD_REQUEST, "Bad request" },
    { NGX_HTTP_UNAUTHORIZED, "Not authenticated" },
    { NGX_HTTP_FORBIDDEN, "Forbidden" },
    { NGX_HTTP_NOT_FOUND, "Not found" },
    { NGX_HTTP_NOT_ALLOWED, "Method not allowed" },
    { NGX_HTTP_REQUEST_TIME_OUT, "Request timeout" },
    { NGX_HTTP_LENGTH_REQUIRED, "Length required" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "Request body too large" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "Request URI too long" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "Unsupported media type" },
    { NGX_HTTP_MOM_UNPROCESSABLE, "Unprocessable request" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "Too many requests" },
    { NGX_HTTP_REQUEST_HEADER_TOO_LARGE, "Request header too large" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "Internal server error" },
    { NGX_HTTP_NOT_IMPLEMENTED, "Not implemented" },
    { NGX_HTTP_BAD_GATEWAY, "Broker unavailable" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "Service unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "Broker timeout" },
    { 0, NULL }
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static const char *ngx_http_mom_error_detail(ngx_uint_t status);
static ngx_http_mom_ctx_t *ngx_http_mom_error_ctx(ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_mom_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


/*
 * The request's context, made here when the error comes before the
 * content handler ran (nginx's own early errors in a MOM location).
 */

static ngx_http_mom_ctx_t *
ngx_http_mom_error_ctx(ngx_http_request_t *r)
{
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mom_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_http_mom_module);
    }

    return ctx;
}


ngx_int_t
ngx_http_mom_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    ngx_str_t  body;

    if (r->header_sent) {
        return NGX_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (detail == NULL) {
        detail = ngx_http_mom_error_detail(status);
    }

    if (ngx_http_mom_json_detail(r->pool, detail, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_mom_send_json(r, status, &body);
}


/* a JSON answer of the module's or momd's: the error filter lets it be */

ngx_int_t
ngx_http_mom_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_str_t           *line;
    ngx_chain_t          out;
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_http_mom_error_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->json = 1;

    r->headers_out.status = status;

    line = ngx_http_mom_status_line(status);
    if (line) {
        r->headers_out.status_line = *line;
    }

    ngx_http_mom_set_json_type(r);
    r->headers_out.content_length_n = body->len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * {"detail": "<detail>"}, escaped by jansson; a detail that is not valid
 * UTF-8 is replaced rather than sent broken.
 */

ngx_int_t
ngx_http_mom_json_detail(ngx_pool_t *pool, const char *detail, ngx_str_t *out)
{
    char    *s;
    json_t  *obj;

    obj = json_pack("{s:s}", "detail", detail);

    if (obj == NULL) {
        obj = json_pack("{s:s}", "detail", "Invalid request");
        if (obj == NULL) {
            return NGX_ERROR;
        }
    }

    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);

    if (s == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data == NULL) {
        free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len);
    free(s);

    return NGX_OK;
}


ngx_int_t
ngx_http_mom_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_mom_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_mom_error_body_filter;

    return NGX_OK;
}


static const char *
ngx_http_mom_error_detail(ngx_uint_t status)
{
    ngx_http_mom_error_detail_t  *d;

    for (d = ngx_http_mom_error_details; d->detail; d++) {
        if (d->status == status) {
            return d->detail;
        }
    }

    return status >= NGX_HTTP_INTERNAL_SERVER_ERROR ? "Server error"
                                                    : "Client error";
}


/*
 * nginx's error pages (ngx_http_special_response_handler) set err_status;
 * the module's own answers and momd's relayed ones are marked ctx->json.
 */

static ngx_int_t
ngx_http_mom_error_header_filter(ngx_http_request_t *r)
{
    ngx_http_mom_ctx_t       *ctx;
    ngx_http_mom_loc_conf_t  *mlcf;

    if (r != r->main || r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
        return ngx_http_next_header_filter(r);
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    if (mlcf == NULL
        || (mlcf->upstream.upstream == NULL && !mlcf->json_errors))
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    if (ctx && ctx->json && r->err_status == 0) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_http_mom_error_ctx(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_mom_json_detail(r->pool,
                                 ngx_http_mom_error_detail(
                                     r->headers_out.status),
                                 &ctx->error_body)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->replace_body = 1;

    ngx_http_mom_set_json_type(r);

    r->headers_out.content_length_n = ctx->error_body.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Swallows the HTML of the error page and sends the JSON instead, once,
 * when the page's last buffer comes by.
 */

static ngx_int_t
ngx_http_mom_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t           *b;
    ngx_uint_t           last;
    ngx_chain_t          out, *cl;
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    if (ctx == NULL || !ctx->replace_body) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf || b->last_in_chain) {
            last = 1;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    if (!last || ctx->replaced) {
        return NGX_OK;
    }

    ctx->replaced = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error_body.data;
    b->last = ctx->error_body.data + ctx->error_body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


void
ngx_http_mom_set_json_type(ngx_http_request_t *r)
{
    ngx_str_set(&r->headers_out.content_type,
                "application/json; charset=utf-8");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
}
