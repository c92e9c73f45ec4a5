
/*
 * What a client sends, checked and turned into a mom.Request: the query
 * arguments (since, limit, last_event_id), the JSON body (read whole; a
 * flat object of plain strings is checked by a scanner of its own, any
 * other body is parsed and validated with jansson) and the fields of the
 * Request frame. Everything wrong here is a 422 with a detail saying what
 * is wrong.
 */


#include <jansson.h>

#include "ngx_http_mom.h"


static ngx_int_t ngx_http_mom_arg_uint(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, char *name, uint64_t *value);
static ngx_int_t ngx_http_mom_parse_uint(u_char *p, size_t len,
    uint64_t *value);
static ngx_int_t ngx_http_mom_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_mom_plain_body(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_mom_plain_field(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_http_mom_field_t *field, char **out);
static ngx_int_t ngx_http_mom_json_body(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_mom_check_name(ngx_http_mom_ctx_t *ctx,
    char *value, const char *detail);
static ngx_int_t ngx_http_mom_check_password(ngx_http_mom_ctx_t *ctx,
    char *value);
static ngx_int_t ngx_http_mom_set_content(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, u_char *text, size_t len);
static ngx_int_t ngx_http_mom_body_string(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, json_t *obj, const char *field, char **out);
static ngx_int_t ngx_http_mom_body_content(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, json_t *obj);
static int ngx_http_mom_real_precision(json_t *v);


ngx_int_t
ngx_http_mom_needs_body(ngx_http_mom_ctx_t *ctx)
{
    switch (ctx->op) {
    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:
    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_CREATE_QUEUE:
    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_SEND:
        return 1;
    default:
        return 0;
    }
}


/*
 * Query arguments, and the fields of the Request known before the body.
 */

ngx_int_t
ngx_http_mom_parse_args(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    uint64_t                  since, limit;
    ngx_int_t                 rc;
    ngx_table_elt_t          *h;
    ngx_http_mom_loc_conf_t  *mlcf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    mom__request__init(&ctx->req);

    ctx->req.user = ctx->user.data ? (char *) ctx->user.data : "";
    ctx->req.name = ctx->name.data ? (char *) ctx->name.data : "";

    ctx->req.op = ctx->op;

    switch (ctx->op) {

    case MOM__OP__OP_HISTORY:

        rc = ngx_http_mom_arg_uint(r, ctx, "since", &since);
        if (rc == NGX_OK) {
            ctx->req.since = since;

        } else if (rc != NGX_DECLINED) {
            return rc;
        }

        rc = ngx_http_mom_arg_uint(r, ctx, "limit", &limit);
        if (rc == NGX_OK) {
            if (limit == 0) {
                ctx->detail = "Query parameter 'limit' must be a positive "
                              "integer";
                return NGX_HTTP_MOM_UNPROCESSABLE;
            }

            ctx->req.limit = ngx_min(limit, NGX_HTTP_MOM_HISTORY_LIMIT_MAX);

        } else if (rc != NGX_DECLINED) {
            return rc;
        }

        break;

    case MOM__OP__OP_SUBSCRIBE:

        h = ngx_http_mom_find_header(r, "Last-Event-ID",
                                     sizeof("Last-Event-ID") - 1);

        if (h != NULL) {
            if (ngx_http_mom_parse_uint(h->value.data, h->value.len, &since)
                != NGX_OK)
            {
                ctx->detail = "Header 'Last-Event-ID' must be a non-negative "
                              "integer";
                return NGX_HTTP_MOM_UNPROCESSABLE;
            }

            rc = NGX_OK;

        } else {
            rc = ngx_http_mom_arg_uint(r, ctx, "last_event_id", &since);

            if (rc != NGX_OK && rc != NGX_DECLINED) {
                return rc;
            }
        }

        if (rc == NGX_OK) {
            ctx->req.since = since;
            ctx->req.has_since = 1;
        }

        ctx->req.token_exp = ctx->token_exp;
        ctx->req.heartbeat_ms = (uint32_t) mlcf->heartbeat;

        break;

    default:
        break;
    }

    return NGX_OK;
}


/*
 * The body of a POST: one JSON object with the fields the route needs.
 * Other fields (`owner`, `sender`...) are accepted and ignored.
 */

ngx_int_t
ngx_http_mom_parse_body(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    if (ngx_http_mom_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_mom_plain_body(r, ctx, &body);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_mom_json_body(r, ctx, &body);
}


ngx_table_elt_t *
ngx_http_mom_find_header(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * NGX_OK with the value, NGX_DECLINED when the argument is absent, 422
 * when it is not a non-negative integer.
 */

static ngx_int_t
ngx_http_mom_arg_uint(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    char *name, uint64_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   arg, decoded;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_DECLINED;
    }

    decoded.data = ngx_pnalloc(r->pool, arg.len);
    if (decoded.data == NULL && arg.len) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dst = decoded.data;
    src = arg.data;
    ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);
    decoded.len = dst - decoded.data;

    if (ngx_http_mom_parse_uint(decoded.data, decoded.len, value) != NGX_OK) {
        ctx->detail = ngx_pnalloc(r->pool, 80);
        if (ctx->detail == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf((u_char *) ctx->detail, 79,
                      "Query parameter '%s' must be a non-negative integer",
                      name)
            = '\0';

        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_parse_uint(u_char *p, size_t len, uint64_t *value)
{
    uint64_t  v;

    if (len == 0 || len > 20) {
        return NGX_ERROR;
    }

    v = 0;

    while (len--) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        if (v > (UINT64_MAX - (*p - '0')) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + (*p++ - '0');
    }

    *value = v;

    return NGX_OK;
}


/*
 * The whole body in one piece: nginx's own buffer when the body sits in one
 * buffer in memory (the usual case: request_body_in_single_buf), else a
 * copy; a body that outgrew client_body_buffer_size is read back from
 * nginx's temporary file (just written, so from the page cache).
 */

static ngx_int_t
ngx_http_mom_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for ( /* void */ ; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * The common body, an object of plain strings ({"content":"..."}), read
 * by ngx_http_mom_plain_object() without jansson: NGX_DECLINED hands any
 * other body (errors included: jansson's error text is the detail) to
 * ngx_http_mom_json_body().
 */

static ngx_int_t
ngx_http_mom_plain_body(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_str_t *body)
{
    char                  *value;
    ngx_int_t              rc;
    ngx_uint_t             n;
    ngx_http_mom_field_t   fields[2], *content;

    switch (ctx->op) {

    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:
        ngx_str_set(&fields[0].key, "username");
        ngx_str_set(&fields[1].key, "password");
        n = 2;
        break;

    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_CREATE_QUEUE:
        ngx_str_set(&fields[0].key, "name");
        n = 1;
        break;

    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_SEND:
        ngx_str_set(&fields[0].key, "content");
        ngx_str_set(&fields[1].key, "data");
        n = 2;
        break;

    default:
        return NGX_DECLINED;
    }

    if (ngx_http_mom_plain_object(body->data, body->data + body->len,
                                  fields, n)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    switch (ctx->op) {

    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:

        rc = ngx_http_mom_plain_field(r, ctx, &fields[0], &value);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_mom_check_name(ctx, value, "Invalid username: use 1 "
                                     "to 128 of A-Z a-z 0-9 . _ -");
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->req.name = value;

        rc = ngx_http_mom_plain_field(r, ctx, &fields[1], &value);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_mom_check_password(ctx, value);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->req.password = value;
        return NGX_OK;

    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_CREATE_QUEUE:

        rc = ngx_http_mom_plain_field(r, ctx, &fields[0], &value);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_mom_check_name(ctx, value, "Invalid name: use 1 to "
                                     "128 of A-Z a-z 0-9 . _ -");
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->req.name = value;
        return NGX_OK;

    default:

        content = fields[0].start ? &fields[0] : &fields[1];

        if (content->start == NULL) {
            ctx->detail = "Field 'content' (or 'data') is required";
            return NGX_HTTP_MOM_UNPROCESSABLE;
        }

        /* the string with its quotes, as jansson would dump it */

        return ngx_http_mom_set_content(r, ctx, content->start,
                                        content->end - content->start);
    }
}


/*
 * A required field of a plain object: its string, NUL-terminated in the
 * pool (a plain string holds no NUL).
 */

static ngx_int_t
ngx_http_mom_plain_field(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_http_mom_field_t *field, char **out)
{
    u_char  *p;
    size_t   len;

    if (field->start == NULL) {
        p = ngx_pnalloc(r->pool, 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf(p, 63, "Field '%V' is required", &field->key) = '\0';

        ctx->detail = (char *) p;
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    len = field->end - field->start - 2;

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, field->start + 1, len);
    p[len] = '\0';

    *out = (char *) p;

    return NGX_OK;
}


/*
 * Any other body: parsed by jansson, whose error text is the detail.
 */

static ngx_int_t
ngx_http_mom_json_body(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_str_t *body)
{
    char         *value;
    json_t       *obj;
    ngx_int_t     rc;
    json_error_t  err;

    obj = json_loadb((char *) body->data, body->len,
                     JSON_DECODE_ANY|JSON_ALLOW_NUL, &err);

    if (obj == NULL) {
        if (body->len == 0) {
            ctx->detail = "Request body must be a JSON object";
            return NGX_HTTP_MOM_UNPROCESSABLE;
        }

        value = ngx_pnalloc(r->pool, JSON_ERROR_TEXT_LENGTH + 80);
        if (value == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf((u_char *) value, JSON_ERROR_TEXT_LENGTH + 79,
                      "Malformed JSON in request body: %s "
                      "(line %d, column %d)",
                      err.text, err.line, err.column)
            = '\0';

        ctx->detail = value;
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    if (!json_is_object(obj)) {
        json_decref(obj);
        ctx->detail = "Request body must be a JSON object";
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    switch (ctx->op) {

    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:

        rc = ngx_http_mom_body_string(r, ctx, obj, "username", &value);
        if (rc != NGX_OK) {
            break;
        }

        rc = ngx_http_mom_check_name(ctx, value, "Invalid username: use 1 "
                                     "to 128 of A-Z a-z 0-9 . _ -");
        if (rc != NGX_OK) {
            break;
        }

        ctx->req.name = value;

        rc = ngx_http_mom_body_string(r, ctx, obj, "password", &value);
        if (rc != NGX_OK) {
            break;
        }

        rc = ngx_http_mom_check_password(ctx, value);
        if (rc != NGX_OK) {
            break;
        }

        ctx->req.password = value;
        break;

    case MOM__OP__OP_CREATE_TOPIC:
    case MOM__OP__OP_CREATE_QUEUE:

        rc = ngx_http_mom_body_string(r, ctx, obj, "name", &value);
        if (rc != NGX_OK) {
            break;
        }

        rc = ngx_http_mom_check_name(ctx, value, "Invalid name: use 1 to "
                                     "128 of A-Z a-z 0-9 . _ -");
        if (rc != NGX_OK) {
            break;
        }

        ctx->req.name = value;
        break;

    case MOM__OP__OP_PUBLISH:
    case MOM__OP__OP_SEND:

        rc = ngx_http_mom_body_content(r, ctx, obj);
        break;

    default:
        rc = NGX_OK;
    }

    json_decref(obj);

    return rc;
}


static ngx_int_t
ngx_http_mom_check_name(ngx_http_mom_ctx_t *ctx, char *value,
    const char *detail)
{
    if (ngx_http_mom_valid_name((u_char *) value, ngx_strlen(value))
        != NGX_OK)
    {
        ctx->detail = detail;
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_check_password(ngx_http_mom_ctx_t *ctx, char *value)
{
    size_t  n;

    n = ngx_strlen(value);

    if (n == 0 || n > NGX_HTTP_MOM_PASSWORD_MAX) {
        ctx->detail = "Field 'password' must be 1 to 1024 bytes";
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    return NGX_OK;
}


/*
 * The compact JSON text of the message, kept where it is (the body or the
 * pool) unless it leaves no room for the message's envelope in history
 * pages and events.
 */

static ngx_int_t
ngx_http_mom_set_content(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    u_char *text, size_t len)
{
    ngx_http_mom_loc_conf_t  *mlcf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    if (len + 65536 > mlcf->max_frame_size) {
        ctx->detail = "Request body too large";
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    ctx->req.content.data = text;
    ctx->req.content.len = len;

    return NGX_OK;
}


/*
 * A required string field without NUL bytes, copied into the pool.
 */

static ngx_int_t
ngx_http_mom_body_string(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    json_t *obj, const char *field, char **out)
{
    u_char      *p;
    size_t       len;
    json_t      *v;
    const char  *s;

    v = json_object_get(obj, field);

    if (v == NULL || !json_is_string(v)) {
        p = ngx_pnalloc(r->pool, 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf(p, 63, "Field '%s' %s", field,
                      v ? "must be a string" : "is required")
            = '\0';

        ctx->detail = (char *) p;
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    if (ngx_strlen(s) != len) {
        p = ngx_pnalloc(r->pool, 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf(p, 63, "Field '%s' must not contain NUL", field) = '\0';

        ctx->detail = (char *) p;
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, s, len + 1);
    *out = (char *) p;

    return NGX_OK;
}


/*
 * The message: `content`, else `data`; any JSON value, sent to momd as
 * compact JSON text on one line.
 */

static ngx_int_t
ngx_http_mom_body_content(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    json_t *obj)
{
    char       *text;
    size_t      len;
    json_t     *v;
    u_char     *p;
    ngx_int_t   rc;

    v = json_object_get(obj, "content");

    if (v == NULL) {
        v = json_object_get(obj, "data");
    }

    if (v == NULL) {
        ctx->detail = "Field 'content' (or 'data') is required";
        return NGX_HTTP_MOM_UNPROCESSABLE;
    }

    text = json_dumps(v, JSON_COMPACT|JSON_ENCODE_ANY
                         |JSON_REAL_PRECISION(ngx_http_mom_real_precision(v)));
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    /* the size is checked before the text is copied */

    rc = ngx_http_mom_set_content(r, ctx, (u_char *) text, len);

    if (rc != NGX_OK) {
        free(text);
        return rc;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, text, len);
    free(text);

    ctx->req.content.data = p;

    return NGX_OK;
}


/*
 * The fewest significant digits that print every number of the value so
 * that it reads back exactly: 0.1 stays "0.1" instead of jansson's default
 * "0.10000000000000001".
 */

static int
ngx_http_mom_real_precision(json_t *v)
{
    int          p, max;
    char         buf[32];
    double       d;
    size_t       i;
    json_t      *item;
    const char  *key;

    switch (json_typeof(v)) {

    case JSON_REAL:
        d = json_real_value(v);

        for (p = 1; p < 17; p++) {
            snprintf(buf, sizeof(buf), "%.*g", p, d);

            if (strtod(buf, NULL) == d) {
                return p;
            }
        }

        return 17;

    case JSON_ARRAY:
        max = 1;

        json_array_foreach(v, i, item) {
            max = ngx_max(max, ngx_http_mom_real_precision(item));
        }

        return max;

    case JSON_OBJECT:
        max = 1;

        json_object_foreach(v, key, item) {
            max = ngx_max(max, ngx_http_mom_real_precision(item));
        }

        return max;

    default:
        return 1;
    }
}
