
/*
 * The MOM module itself: its directives, the location configuration
 * (created, merged and checked at configuration time, keys included), the
 * content handler `mom_pass` installs and the hand-over from the client
 * request to the channel or the upstream that carries it to momd.
 */


#include <jwt.h>

#include "ngx_http_mom.h"


static ngx_int_t ngx_http_mom_handler(ngx_http_request_t *r);
static void ngx_http_mom_body_handler(ngx_http_request_t *r);
static void ngx_http_mom_forward(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);

static void *ngx_http_mom_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_mom_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_mom_postconfiguration(ngx_conf_t *cf);

static char *ngx_http_mom_pass(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_mom_read_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_mom_jwt_algorithms[] = {
    { ngx_string("HS256"), JWT_ALG_HS256 },
    { ngx_string("HS384"), JWT_ALG_HS384 },
    { ngx_string("HS512"), JWT_ALG_HS512 },
    { ngx_string("RS256"), JWT_ALG_RS256 },
    { ngx_string("ES256"), JWT_ALG_ES256 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_mom_commands[] = {

    { ngx_string("mom_pass"),
      NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF|NGX_CONF_TAKE1,
      ngx_http_mom_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("mom_jwt_algorithm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, jwt_alg),
      &ngx_http_mom_jwt_algorithms },

    { ngx_string("mom_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mom_read_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, jwt_key),
      NULL },

    { ngx_string("mom_jwt_signing_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_mom_read_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, jwt_signing_key),
      NULL },

    { ngx_string("mom_jwt_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, jwt_lifetime),
      NULL },

    { ngx_string("mom_topic_read_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, topic_read_auth),
      NULL },

    { ngx_string("mom_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("mom_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, max_frame_size),
      NULL },

    { ngx_string("mom_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, upstream.connect_timeout),
      NULL },

    { ngx_string("mom_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, upstream.send_timeout),
      NULL },

    { ngx_string("mom_read_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_mom_loc_conf_t, upstream.read_timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_mom_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_mom_postconfiguration,        /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_mom_create_loc_conf,          /* create location configuration */
    ngx_http_mom_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_mom_module = {
    NGX_MODULE_V1,
    &ngx_http_mom_module_ctx,              /* module context */
    ngx_http_mom_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_mom_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_mom_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_mom_module);

    /* the order of the checks: route, method, token, names, arguments */

    rc = ngx_http_mom_route(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_mom_authenticate(r, ctx);
    }

    if (rc == NGX_OK && ctx->name.data != NULL
        && ngx_http_mom_valid_name(ctx->name.data, ctx->name.len) != NGX_OK)
    {
        ctx->detail = "Invalid name: use 1 to 128 of A-Z a-z 0-9 . _ -";
        rc = NGX_HTTP_MOM_UNPROCESSABLE;
    }

    if (rc == NGX_OK) {
        rc = ngx_http_mom_parse_args(r, ctx);
    }

    if (rc != NGX_OK) {
        return ngx_http_mom_send_error(r, rc, ctx->detail);
    }

    if (ngx_http_mom_needs_body(ctx)) {
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_http_mom_body_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->main->count++;

    ngx_http_mom_forward(r, ctx);

    return NGX_DONE;
}


static void
ngx_http_mom_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_mom_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_mom_module);

    rc = ngx_http_mom_parse_body(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_mom_send_error(r, rc,
                                                             ctx->detail));
        return;
    }

    /* the reference taken by ngx_http_read_client_request_body() is the
     * one released when the reply finalizes the request */

    ngx_http_mom_forward(r, ctx);
}


/*
 * Hands the request to momd: on the worker's channel, or through the
 * upstream (streams, no channel). The caller holds the reference that
 * finalizing the request releases.
 */

static void
ngx_http_mom_forward(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_mom_channel_send(r, ctx);

    if (rc == NGX_OK) {
        return;
    }

    if (rc == NGX_ERROR || ngx_http_mom_upstream_create(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_upstream_init(r);
}


static void *
ngx_http_mom_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_mom_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_mom_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->upstream.upstream = NULL;
     *     conf->jwt_key = { 0, NULL };
     *     conf->jwt_signing_key = { 0, NULL };
     */

    conf->upstream.local = NGX_CONF_UNSET_PTR;
    conf->upstream.connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream.send_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream.read_timeout = NGX_CONF_UNSET_MSEC;

    conf->jwt_alg = NGX_CONF_UNSET_UINT;
    conf->jwt_lifetime = NGX_CONF_UNSET;
    conf->topic_read_auth = NGX_CONF_UNSET;
    conf->heartbeat = NGX_CONF_UNSET_MSEC;
    conf->max_frame_size = NGX_CONF_UNSET_SIZE;

    /* the hardcoded values: one frame at a time, relayed as it comes */

    conf->upstream.buffer_size = 4096;
    conf->upstream.buffering = 0;
    conf->upstream.cyclic_temp_file = 0;
    conf->upstream.ignore_client_abort = 0;
    conf->upstream.send_lowat = 0;
    conf->upstream.bufs.num = 0;
    conf->upstream.busy_buffers_size = 0;
    conf->upstream.max_temp_file_size = 0;
    conf->upstream.temp_file_write_size = 0;
    conf->upstream.intercept_errors = 0;
    conf->upstream.intercept_404 = 0;
    conf->upstream.pass_request_headers = 0;
    conf->upstream.pass_request_body = 0;
    conf->upstream.force_ranges = 0;

    /*
     * A request is retried only when a cached keepalive connection turns
     * out to be closed (nginx does not count that try); a request that may
     * have reached momd is never sent twice.
     */
    conf->upstream.next_upstream = NGX_HTTP_UPSTREAM_FT_ERROR;
    conf->upstream.next_upstream_tries = 0;
    conf->upstream.next_upstream_timeout = 0;

    return conf;
}


static char *
ngx_http_mom_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_mom_loc_conf_t *prev = parent;
    ngx_http_mom_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->upstream.local, prev->upstream.local,
                             NULL);

    ngx_conf_merge_msec_value(conf->upstream.connect_timeout,
                              prev->upstream.connect_timeout, 5000);

    ngx_conf_merge_msec_value(conf->upstream.send_timeout,
                              prev->upstream.send_timeout, 10000);

    ngx_conf_merge_msec_value(conf->upstream.read_timeout,
                              prev->upstream.read_timeout, 60000);

    ngx_conf_merge_uint_value(conf->jwt_alg, prev->jwt_alg, JWT_ALG_HS256);
    ngx_conf_merge_str_value(conf->jwt_key, prev->jwt_key, "");
    ngx_conf_merge_str_value(conf->jwt_signing_key, prev->jwt_signing_key,
                             "");
    ngx_conf_merge_sec_value(conf->jwt_lifetime, prev->jwt_lifetime, 1800);
    ngx_conf_merge_value(conf->topic_read_auth, prev->topic_read_auth, 0);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 15000);
    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size,
                              4 * 1024 * 1024);

    if (conf->jwt_lifetime <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mom_jwt_lifetime\" must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->heartbeat == 0 || conf->heartbeat > 0xffffffff) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mom_heartbeat\" must be between 1ms and 49d");
        return NGX_CONF_ERROR;
    }

    if (conf->max_frame_size < 4096 || conf->max_frame_size > 0x7fffffff) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mom_max_frame_size\" must be between 4k "
                           "and 2047m");
        return NGX_CONF_ERROR;
    }

    if (conf->upstream.upstream == NULL) {
        conf->upstream.upstream = prev->upstream.upstream;
    }

    if (conf->upstream.upstream == NULL) {
        return NGX_CONF_OK;
    }

    /*
     * The server level is merged before its locations: errors answered
     * there (bad request line or headers, before a location is chosen) are
     * JSON as well in a server that serves the API.
     */
    prev->json_errors = 1;

    /* a location that serves the API must be able to verify and sign */

    return ngx_http_mom_jwt_check_conf(cf, conf);
}


static ngx_int_t
ngx_http_mom_postconfiguration(ngx_conf_t *cf)
{
    return ngx_http_mom_error_filter_init(cf);
}


static char *
ngx_http_mom_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_mom_loc_conf_t *mlcf = conf;

    ngx_str_t                 *value;
    ngx_url_t                  u;
    ngx_http_core_loc_conf_t  *clcf;

    if (mlcf->upstream.upstream) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.no_resolve = 1;

    mlcf->upstream.upstream = ngx_http_upstream_add(cf, &u, 0);
    if (mlcf->upstream.upstream == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    clcf->handler = ngx_http_mom_handler;

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] == '/') {
        clcf->auto_redirect = 1;
    }

    return NGX_CONF_OK;
}


/*
 * Reads a key file at configuration time into the configuration: the
 * workers never touch the file system for keys. The contents are never
 * logged.
 */

static char *
ngx_http_mom_read_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char           *data;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *field, *value, path;
    ngx_file_info_t   fi;

    field = (ngx_str_t *) (p + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", path.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", path.data);
        goto failed;
    }

    if (ngx_file_size(&fi) <= 0 || ngx_file_size(&fi) > 65536) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%s\" is empty or larger than 64k",
                           path.data);
        goto failed;
    }

    data = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (data == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, data, ngx_file_size(&fi));

    if (n != ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", path.data);
        goto failed;
    }

    data[n] = '\0';

    ngx_close_file(fd);

    field->data = data;
    field->len = n;

    return NGX_CONF_OK;

failed:

    ngx_close_file(fd);

    return NGX_CONF_ERROR;
}
