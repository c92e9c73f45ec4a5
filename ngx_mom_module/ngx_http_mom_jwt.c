
/*
 * Tokens (libjwt 1.10): which routes need one, verifying it on every
 * request with the configured algorithm pinned and `exp` required, signing
 * one on login, and checking the keys when the configuration is loaded.
 *
 * libjwt trusts the token's own `alg` and accepts `none` without a key, so
 * the algorithm is compared with the configured one and a key is always
 * given. jwt_decode() does not look at `exp`: that is checked here.
 */


#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ngx_http_mom.h"


#define NGX_HTTP_MOM_TOKEN_MAX  8192

/*
 * Verified tokens, per worker: a client sends the same token with every
 * request, and decoding it (base64, two JSON parses, an HMAC or a signature
 * check) costs more than the rest of the request in the worker. A slot
 * holds the exact token bytes that verified under one location's
 * configuration; `exp` and `nbf` are still checked against the clock on
 * every hit. Workers start empty (a reload forks new ones).
 */
#define NGX_HTTP_MOM_TOKEN_CACHE  256

typedef struct {
    void        *conf;      /* the ngx_http_mom_loc_conf_t it verified in */
    u_char      *token;     /* malloc()ed: token bytes, then the user */
    size_t       token_len;
    size_t       user_len;
    time_t       exp;
    time_t       nbf;
} ngx_http_mom_token_slot_t;

static ngx_http_mom_token_slot_t
    ngx_http_mom_token_cache[NGX_HTTP_MOM_TOKEN_CACHE];


static ngx_int_t ngx_http_mom_token_required(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx);
static ngx_int_t ngx_http_mom_find_token(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_http_mom_verify(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_str_t *token);
static ngx_int_t ngx_http_mom_unauthorized(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, const char *detail);
static ngx_http_mom_token_slot_t *ngx_http_mom_token_slot(void *conf,
    ngx_str_t *token);
static ngx_int_t ngx_http_mom_cached(ngx_http_request_t *r,
    ngx_http_mom_ctx_t *ctx, ngx_http_mom_token_slot_t *slot);
static void ngx_http_mom_cache_token(ngx_http_mom_token_slot_t *slot,
    void *conf, ngx_str_t *token, const char *user, time_t exp, time_t nbf);
static char *ngx_http_mom_jwt_encode(ngx_http_mom_loc_conf_t *mlcf,
    const char *user, time_t now);
static ngx_int_t ngx_http_mom_is_hmac(ngx_uint_t alg);
static char *ngx_http_mom_check_pem(ngx_conf_t *cf, ngx_str_t *pem,
    ngx_uint_t alg, ngx_uint_t private, const char *directive);


ngx_int_t
ngx_http_mom_authenticate(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_int_t  required;
    ngx_str_t  token;

    required = ngx_http_mom_token_required(r, ctx);

    if (required == 0 && !ctx->stream) {
        /* a token sent where none is needed is not looked at */
        return NGX_OK;
    }

    if (ngx_http_mom_find_token(r, &token) != NGX_OK) {
        if (required) {
            return ngx_http_mom_unauthorized(r, ctx, "Not authenticated");
        }

        return NGX_OK;
    }

    /* a stream with a token ends when the token expires */

    return ngx_http_mom_verify(r, ctx, &token);
}


ngx_int_t
ngx_http_mom_jwt_sign(ngx_http_request_t *r, const char *user,
    ngx_str_t *token)
{
    char                     *s;
    ngx_http_mom_loc_conf_t  *mlcf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    s = ngx_http_mom_jwt_encode(mlcf, user, ngx_time());
    if (s == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "mom: signing a token failed");
        return NGX_ERROR;
    }

    token->len = ngx_strlen(s);
    token->data = ngx_pnalloc(r->pool, token->len);

    if (token->data == NULL) {
        free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(token->data, s, token->len);
    free(s);

    return NGX_OK;
}


/*
 * Called for every location that serves the API: the keys must suit the
 * algorithm, and a token signed here must verify here.
 */

char *
ngx_http_mom_jwt_check_conf(ngx_conf_t *cf, ngx_http_mom_loc_conf_t *mlcf)
{
    char   *s, *rv;
    jwt_t  *jwt;

    if (mlcf->jwt_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"mom_pass\" needs \"mom_jwt_key\"");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_mom_is_hmac(mlcf->jwt_alg)) {

        /* the secret is the file's contents without the final newline */

        while (mlcf->jwt_key.len
               && (mlcf->jwt_key.data[mlcf->jwt_key.len - 1] == LF
                   || mlcf->jwt_key.data[mlcf->jwt_key.len - 1] == CR))
        {
            mlcf->jwt_key.len--;
        }

        if (mlcf->jwt_key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the \"mom_jwt_key\" secret is empty");
            return NGX_CONF_ERROR;
        }

        if (mlcf->jwt_key.len < 32) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "the \"mom_jwt_key\" secret is shorter than "
                               "32 bytes");
        }

    } else {
        rv = ngx_http_mom_check_pem(cf, &mlcf->jwt_key, mlcf->jwt_alg, 0,
                                    "mom_jwt_key");
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        if (mlcf->jwt_signing_key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"mom_pass\" with \"%s\" needs "
                               "\"mom_jwt_signing_key\"",
                               jwt_alg_str(mlcf->jwt_alg));
            return NGX_CONF_ERROR;
        }

        rv = ngx_http_mom_check_pem(cf, &mlcf->jwt_signing_key,
                                    mlcf->jwt_alg, 1, "mom_jwt_signing_key");
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    s = ngx_http_mom_jwt_encode(mlcf, "mom", ngx_time());
    if (s == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot sign a %s token with the configured key",
                           jwt_alg_str(mlcf->jwt_alg));
        return NGX_CONF_ERROR;
    }

    jwt = NULL;

    if (jwt_decode(&jwt, s, mlcf->jwt_key.data, mlcf->jwt_key.len) != 0
        || jwt == NULL
        || jwt_get_alg(jwt) != (jwt_alg_t) mlcf->jwt_alg)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a token signed with \"mom_jwt_signing_key\" does "
                           "not verify with \"mom_jwt_key\"");
        rv = NGX_CONF_ERROR;

    } else {
        rv = NGX_CONF_OK;
    }

    if (jwt) {
        jwt_free(jwt);
    }

    free(s);

    return rv;
}


static ngx_int_t
ngx_http_mom_token_required(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx)
{
    ngx_http_mom_loc_conf_t  *mlcf;

    switch (ctx->op) {

    case MOM__OP__OP_REGISTER:
    case MOM__OP__OP_LOGIN:
    case MOM__OP__OP_LIST_QUEUES:
        return 0;

    case MOM__OP__OP_LIST_TOPICS:
    case MOM__OP__OP_HISTORY:
    case MOM__OP__OP_SUBSCRIBE:
        mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);
        return mlcf->topic_read_auth;

    default:
        return 1;
    }
}


/*
 * `Authorization: Bearer <jwt>`, else `?token=<jwt>` (EventSource cannot
 * set headers).
 */

static ngx_int_t
ngx_http_mom_find_token(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char           *p, *last, *dst, *src;
    ngx_str_t         arg;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h != NULL && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1)
           == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        if (p < last) {
            token->data = p;
            token->len = last - p;
            return NGX_OK;
        }
    }

    if (ngx_http_arg(r, (u_char *) "token", sizeof("token") - 1, &arg)
        != NGX_OK
        || arg.len == 0)
    {
        return NGX_DECLINED;
    }

    token->data = ngx_pnalloc(r->pool, arg.len);
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    dst = token->data;
    src = arg.data;
    ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);
    token->len = dst - token->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_mom_verify(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_str_t *token)
{
    long                        exp, nbf;
    u_char                     *p;
    jwt_t                      *jwt;
    time_t                      now;
    const char                 *sub, *detail;
    ngx_http_mom_loc_conf_t    *mlcf;
    ngx_http_mom_token_slot_t  *slot;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_mom_module);

    if (token->len > NGX_HTTP_MOM_TOKEN_MAX) {
        return ngx_http_mom_unauthorized(r, ctx, "Invalid token");
    }

    slot = ngx_http_mom_token_slot(mlcf, token);

    if (slot->conf == mlcf && slot->token_len == token->len
        && ngx_memcmp(slot->token, token->data, token->len) == 0)
    {
        return ngx_http_mom_cached(r, ctx, slot);
    }

    p = ngx_pnalloc(r->pool, token->len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, token->data, token->len);
    p[token->len] = '\0';

    jwt = NULL;

    if (jwt_decode(&jwt, (char *) p, mlcf->jwt_key.data, mlcf->jwt_key.len)
        != 0
        || jwt == NULL)
    {
        if (jwt) {
            jwt_free(jwt);
        }

        return ngx_http_mom_unauthorized(r, ctx, "Invalid token");
    }

    detail = "Invalid token";
    now = ngx_time();

    if (jwt_get_alg(jwt) != (jwt_alg_t) mlcf->jwt_alg) {
        goto failed;
    }

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0) {
        goto failed;
    }

    sub = jwt_get_grant(jwt, "sub");
    if (sub == NULL
        || ngx_http_mom_valid_name((u_char *) sub, ngx_strlen(sub)) != NGX_OK)
    {
        goto failed;
    }

    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    if (errno != 0) {
        nbf = 0;
    }

    if (nbf > now) {
        goto failed;
    }

    if (exp <= now) {
        detail = "Token expired";
        goto failed;
    }

    ctx->user.len = ngx_strlen(sub);
    ctx->user.data = ngx_pnalloc(r->pool, ctx->user.len + 1);

    if (ctx->user.data == NULL) {
        jwt_free(jwt);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->user.data, sub, ctx->user.len + 1);
    ctx->token_exp = exp;

    ngx_http_mom_cache_token(slot, mlcf, token, sub, exp, nbf);

    jwt_free(jwt);

    return NGX_OK;

failed:

    jwt_free(jwt);

    return ngx_http_mom_unauthorized(r, ctx, detail);
}


static ngx_http_mom_token_slot_t *
ngx_http_mom_token_slot(void *conf, ngx_str_t *token)
{
    uint32_t  hash;

    /* murmur reads 4 bytes a step; crc32_short's byte steps cost ~2% */
    hash = ngx_murmur_hash2(token->data, token->len) ^ (uintptr_t) conf;

    return &ngx_http_mom_token_cache[hash % NGX_HTTP_MOM_TOKEN_CACHE];
}


static ngx_int_t
ngx_http_mom_cached(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    ngx_http_mom_token_slot_t *slot)
{
    time_t  now;

    now = ngx_time();

    if (slot->nbf > now) {
        return ngx_http_mom_unauthorized(r, ctx, "Invalid token");
    }

    if (slot->exp <= now) {
        return ngx_http_mom_unauthorized(r, ctx, "Token expired");
    }

    ctx->user.len = slot->user_len;
    ctx->user.data = ngx_pnalloc(r->pool, slot->user_len + 1);

    if (ctx->user.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->user.data, slot->token + slot->token_len,
               slot->user_len + 1);
    ctx->token_exp = slot->exp;

    return NGX_OK;
}


static void
ngx_http_mom_cache_token(ngx_http_mom_token_slot_t *slot, void *conf,
    ngx_str_t *token, const char *user, time_t exp, time_t nbf)
{
    size_t   user_len;
    u_char  *p;

    user_len = ngx_strlen(user);

    /* plain malloc: the cache outlives every request and cycle pool */
    p = malloc(token->len + user_len + 1);
    if (p == NULL) {
        return;
    }

    ngx_memcpy(p, token->data, token->len);
    ngx_memcpy(p + token->len, user, user_len + 1);

    free(slot->token);

    slot->conf = conf;
    slot->token = p;
    slot->token_len = token->len;
    slot->user_len = user_len;
    slot->exp = exp;
    slot->nbf = nbf;
}


static ngx_int_t
ngx_http_mom_unauthorized(ngx_http_request_t *r, ngx_http_mom_ctx_t *ctx,
    const char *detail)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer");

    ctx->detail = detail;

    return NGX_HTTP_UNAUTHORIZED;
}


/*
 * A token for `user`: sub, iat, exp. The result is malloc()ed by libjwt.
 */

static char *
ngx_http_mom_jwt_encode(ngx_http_mom_loc_conf_t *mlcf, const char *user,
    time_t now)
{
    char       *s;
    jwt_t      *jwt;
    ngx_str_t  *key;

    key = ngx_http_mom_is_hmac(mlcf->jwt_alg) ? &mlcf->jwt_key
                                               : &mlcf->jwt_signing_key;

    if (key->len == 0 || jwt_new(&jwt) != 0) {
        return NULL;
    }

    s = NULL;

    if (jwt_add_grant(jwt, "sub", user) == 0
        && jwt_add_grant_int(jwt, "iat", (long) now) == 0
        && jwt_add_grant_int(jwt, "exp", (long) (now + mlcf->jwt_lifetime))
           == 0
        && jwt_set_alg(jwt, (jwt_alg_t) mlcf->jwt_alg, key->data, key->len)
           == 0)
    {
        s = jwt_encode_str(jwt);
    }

    jwt_free(jwt);

    return s;
}


static ngx_int_t
ngx_http_mom_is_hmac(ngx_uint_t alg)
{
    return alg == JWT_ALG_HS256 || alg == JWT_ALG_HS384
           || alg == JWT_ALG_HS512;
}


static char *
ngx_http_mom_check_pem(ngx_conf_t *cf, ngx_str_t *pem, ngx_uint_t alg,
    ngx_uint_t private, const char *directive)
{
    BIO       *bio;
    char      *rv, group[64];
    size_t     len;
    EVP_PKEY  *pkey;

    bio = BIO_new_mem_buf(pem->data, (int) pem->len);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    pkey = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                   : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    BIO_free(bio);

    if (pkey == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is not a PEM %s key", directive,
                           private ? "private" : "public");
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_OK;

    if (alg == JWT_ALG_RS256) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" is not an RSA key for RS256",
                               directive);
            rv = NGX_CONF_ERROR;

        } else if (EVP_PKEY_get_bits(pkey) < 2048) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "\"%s\" is an RSA key of less than 2048 bits",
                               directive);
        }

    } else {
        len = 0;

        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC
            || EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1
            || (ngx_strcmp(group, "prime256v1") != 0
                && ngx_strcmp(group, "P-256") != 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" is not a P-256 EC key for ES256",
                               directive);
            rv = NGX_CONF_ERROR;
        }
    }

    EVP_PKEY_free(pkey);

    return rv;
}
