
/*
 * The router: method and path of a request -> the momd operation and the
 * name it is about. Unknown paths are 404, known paths with another method
 * 405 with an Allow header. Path segments are percent-decoded before they
 * are compared, so an encoded name is checked as the name it stands for.
 */


#include "ngx_http_mom.h"


#define NGX_HTTP_MOM_MAX_SEGMENTS  5


typedef enum {
    ngx_http_mom_seg_auth = 0,
    ngx_http_mom_seg_register,
    ngx_http_mom_seg_login,
    ngx_http_mom_seg_users,
    ngx_http_mom_seg_messages,
    ngx_http_mom_seg_topics,
    ngx_http_mom_seg_queues,
    ngx_http_mom_seg_topic,
    ngx_http_mom_seg_queue,
    ngx_http_mom_seg_name,           /* any other segment: a name */
    ngx_http_mom_seg_end
} ngx_http_mom_seg_e;


typedef struct {
    ngx_http_mom_seg_e    path[NGX_HTTP_MOM_MAX_SEGMENTS];
    ngx_uint_t            methods;
    Mom__Op               get;
    Mom__Op               post;
    Mom__Op               delete;
    ngx_str_t             allow;
} ngx_http_mom_route_t;


static ngx_str_t  ngx_http_mom_segments[] = {
    ngx_string("auth"),
    ngx_string("register"),
    ngx_string("login"),
    ngx_string("users"),
    ngx_string("messages"),
    ngx_string("topics"),
    ngx_string("queues"),
    ngx_string("topic"),
    ngx_string("queue")
};


#define S(x)  ngx_http_mom_seg_##x
#define END   ngx_http_mom_seg_end
#define NO    MOM__OP__OP_NONE

static ngx_http_mom_route_t  ngx_http_mom_routes[] = {

    { { S(auth), S(register), END }, NGX_HTTP_POST,
      NO, MOM__OP__OP_REGISTER, NO, ngx_string("POST") },

    { { S(auth), S(login), END }, NGX_HTTP_POST,
      NO, MOM__OP__OP_LOGIN, NO, ngx_string("POST") },

    { { S(auth), S(users), END }, NGX_HTTP_GET,
      MOM__OP__OP_LIST_USERS, NO, NO, ngx_string("GET") },

    { { S(messages), S(topics), END }, NGX_HTTP_GET|NGX_HTTP_POST,
      MOM__OP__OP_LIST_TOPICS, MOM__OP__OP_CREATE_TOPIC, NO,
      ngx_string("GET, POST") },

    { { S(messages), S(topics), S(name), END }, NGX_HTTP_DELETE,
      NO, NO, MOM__OP__OP_DELETE_TOPIC, ngx_string("DELETE") },

    { { S(messages), S(messages), S(topic), S(name), END },
      NGX_HTTP_GET|NGX_HTTP_POST,
      MOM__OP__OP_HISTORY, MOM__OP__OP_PUBLISH, NO,
      ngx_string("GET, POST") },

    { { S(messages), S(queues), END }, NGX_HTTP_GET|NGX_HTTP_POST,
      MOM__OP__OP_LIST_QUEUES, MOM__OP__OP_CREATE_QUEUE, NO,
      ngx_string("GET, POST") },

    { { S(messages), S(queues), S(name), END }, NGX_HTTP_DELETE,
      NO, NO, MOM__OP__OP_DELETE_QUEUE, ngx_string("DELETE") },

    { { S(messages), S(messages), S(queue), S(name), END },
      NGX_HTTP_GET|NGX_HTTP_POST,
      MOM__OP__OP_RECEIVE, MOM__OP__OP_SEND, NO,
      ngx_string("GET, POST") }
};

#undef S
#undef END
#undef NO


static ngx_int_t ngx_http_mom_split_path(ngx_http_request_t *r,
    ngx_str_t *segs, ngx_uint_t *nsegs);
static ngx_http_mom_seg_e ngx_http_mom_classify(ngx_str_t *seg);
static ngx_int_t ngx_http_mom_set_allow(ngx_http_request_t *r,
    ngx_str_t *allow);


ngx_int_t
ngx_http_mom_route(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    Mom__Op                op;
    ngx_str_t              segs[NGX_HTTP_MOM_MAX_SEGMENTS], *name;
    ngx_uint_t             i, k, n;
    ngx_http_mom_seg_e     kind[NGX_HTTP_MOM_MAX_SEGMENTS];
    ngx_http_mom_route_t  *route;

    ctx->detail = "Not found";

    if (ngx_http_mom_split_path(r, segs, &n) != NGX_OK) {
        return NGX_HTTP_NOT_FOUND;
    }

    for (k = 0; k < n; k++) {
        kind[k] = ngx_http_mom_classify(&segs[k]);
    }

    for (i = 0; i < sizeof(ngx_http_mom_routes)
                    / sizeof(ngx_http_mom_route_t); i++)
    {
        route = &ngx_http_mom_routes[i];
        name = NULL;

        for (k = 0; k < n; k++) {
            if (route->path[k] == ngx_http_mom_seg_end) {
                break;
            }

            if (route->path[k] == ngx_http_mom_seg_name) {
                name = &segs[k];
                continue;
            }

            if (route->path[k] != kind[k]) {
                break;
            }
        }

        if (k != n || route->path[k] != ngx_http_mom_seg_end) {
            continue;
        }

        switch (r->method) {
        case NGX_HTTP_GET:
            op = route->get;
            break;
        case NGX_HTTP_POST:
            op = route->post;
            break;
        case NGX_HTTP_DELETE:
            op = route->delete;
            break;
        default:
            op = MOM__OP__OP_NONE;
        }

        if (op == MOM__OP__OP_NONE) {
            ctx->detail = "Method not allowed";

            if (ngx_http_mom_set_allow(r, &route->allow) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_HTTP_NOT_ALLOWED;
        }

        /* the same resource as an event stream */

        if (op == MOM__OP__OP_HISTORY && ngx_http_mom_sse_wanted(r)) {
            op = MOM__OP__OP_SUBSCRIBE;
            ctx->stream = 1;
        }

        ctx->op = op;

        if (name) {
            /* NUL-terminated for protobuf-c, checked after the token */
            ctx->name.data = ngx_pnalloc(r->pool, name->len + 1);
            if (ctx->name.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(ctx->name.data, name->data, name->len);
            ctx->name.data[name->len] = '\0';
            ctx->name.len = name->len;
        }

        ctx->detail = NULL;

        return NGX_OK;
    }

    return NGX_HTTP_NOT_FOUND;
}


ngx_int_t
ngx_http_mom_valid_name(u_char *p, size_t len)
{
    u_char  *last;

    if (len == 0 || len > NGX_HTTP_MOM_NAME_MAX) {
        return NGX_DECLINED;
    }

    for (last = p + len; p < last; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
            || *p == '-')
        {
            continue;
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Splits the raw path (before nginx's own normalisation) into decoded
 * segments. One trailing slash is allowed: "/messages/topics/" is the
 * collection "/messages/topics".
 */

static ngx_int_t
ngx_http_mom_split_path(ngx_http_request_t *r, ngx_str_t *segs,
    ngx_uint_t *nsegs)
{
    u_char      *p, *end, *start, *dst, *src;
    ngx_uint_t   n;

    p = r->unparsed_uri.data;
    end = p + r->unparsed_uri.len;

    src = ngx_strlchr(p, end, '?');
    if (src) {
        end = src;
    }

    if (p == end || *p != '/') {
        return NGX_DECLINED;
    }

    if (end - p > 1 && end[-1] == '/') {
        end--;
    }

    n = 0;
    p++;

    for ( ;; ) {
        start = p;

        while (p < end && *p != '/') {
            p++;
        }

        if (n == NGX_HTTP_MOM_MAX_SEGMENTS) {
            return NGX_DECLINED;
        }

        dst = ngx_pnalloc(r->pool, p - start + 1);
        if (dst == NULL) {
            return NGX_ERROR;
        }

        segs[n].data = dst;
        src = start;

        ngx_unescape_uri(&dst, &src, p - start, 0);

        segs[n].len = dst - segs[n].data;
        n++;

        if (p == end) {
            break;
        }

        p++;
    }

    *nsegs = n;

    return NGX_OK;
}


static ngx_http_mom_seg_e
ngx_http_mom_classify(ngx_str_t *seg)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(ngx_http_mom_segments) / sizeof(ngx_str_t); i++) {
        if (seg->len == ngx_http_mom_segments[i].len
            && ngx_strncmp(seg->data, ngx_http_mom_segments[i].data,
                           seg->len)
               == 0)
        {
            return (ngx_http_mom_seg_e) i;
        }
    }

    return ngx_http_mom_seg_name;
}


static ngx_int_t
ngx_http_mom_set_allow(ngx_http_request_t *r, ngx_str_t *allow)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value = *allow;

    return NGX_OK;
}
