/*
 * PBKDF2-HMAC-SHA256 password hashes (OpenSSL), their text encoding, and
 * running them on the libuv thread pool. Plaintext passwords live only in
 * the work item and are wiped with OPENSSL_cleanse when done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth.h"
#include "log.h"

#define MOM_AUTH_PREFIX "pbkdf2_sha256$"
#define MOM_AUTH_SALT_LEN 16
#define MOM_AUTH_KEY_LEN 32
#define MOM_AUTH_SALT_MAX 64

static int
mom_auth_derive(const char *password, size_t len, const unsigned char *salt,
                size_t salt_len, uint32_t iterations,
                unsigned char key[MOM_AUTH_KEY_LEN])
{
    if (len > INT32_MAX || iterations == 0 ||
        iterations > MOM_AUTH_MAX_ITERATIONS) {
        return -1;
    }
    return PKCS5_PBKDF2_HMAC(password, (int)len, salt, (int)salt_len,
                             (int)iterations, EVP_sha256(), MOM_AUTH_KEY_LEN,
                             key) == 1
               ? 0
               : -1;
}

int
mom_auth_hash(const char *password, size_t len, uint32_t iterations,
              char out[MOM_AUTH_HASH_MAX])
{
    unsigned char salt[MOM_AUTH_SALT_LEN], key[MOM_AUTH_KEY_LEN];
    char salt64[32], key64[48];
    int rc = -1;

    if (RAND_bytes(salt, sizeof(salt)) == 1 &&
        mom_auth_derive(password, len, salt, sizeof(salt), iterations, key) ==
            0) {
        EVP_EncodeBlock((unsigned char *)salt64, salt, sizeof(salt));
        EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
        snprintf(out, MOM_AUTH_HASH_MAX, MOM_AUTH_PREFIX "%u$%s$%s", iterations,
                 salt64, key64);
        rc = 0;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* Decodes padded standard base64; returns the byte count or -1. */
static int
mom_auth_b64_decode(const char *in, size_t in_len, unsigned char *out,
                    size_t out_size)
{
    unsigned char canon[MOM_AUTH_HASH_MAX];
    int n;

    if (in_len == 0 || in_len % 4 != 0 || in_len / 4 * 3 > out_size ||
        in_len >= sizeof(canon)) {
        return -1;
    }
    n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)in_len);
    if (n < 0) {
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (in[in_len - 1] == '=') {
        n--;
    }
    if (in[in_len - 2] == '=') {
        n--;
    }
    /* Only the canonical encoding: one stored string per hash. */
    if (n <= 0 || EVP_EncodeBlock(canon, out, n) != (int)in_len ||
        memcmp(canon, in, in_len) != 0) {
        return -1;
    }
    return n;
}

bool
mom_auth_verify(const char *password, size_t len, const char *encoded)
{
    unsigned char salt[MOM_AUTH_SALT_MAX], want[48], key[MOM_AUTH_KEY_LEN];
    const char *iter_s, *salt_s, *key_s;
    unsigned long iterations;
    int salt_len, want_len;
    char *end;
    bool ok;

    if (encoded == NULL ||
        strncmp(encoded, MOM_AUTH_PREFIX, strlen(MOM_AUTH_PREFIX)) != 0) {
        return false;
    }
    iter_s = encoded + strlen(MOM_AUTH_PREFIX);
    if (*iter_s < '1' || *iter_s > '9') {
        return false;
    }
    iterations = strtoul(iter_s, &end, 10);
    if (*end != '$' || iterations > MOM_AUTH_MAX_ITERATIONS) {
        return false;
    }
    salt_s = end + 1;
    key_s = strchr(salt_s, '$');
    if (key_s == NULL) {
        return false;
    }
    salt_len = mom_auth_b64_decode(salt_s, (size_t)(key_s - salt_s), salt,
                                   sizeof(salt));
    key_s++;
    want_len = mom_auth_b64_decode(key_s, strlen(key_s), want, sizeof(want));
    if (salt_len <= 0 || want_len != MOM_AUTH_KEY_LEN) {
        return false;
    }
    if (mom_auth_derive(password, len, salt, (size_t)salt_len,
                        (uint32_t)iterations, key) != 0) {
        return false;
    }
    ok = CRYPTO_memcmp(key, want, MOM_AUTH_KEY_LEN) == 0;
    OPENSSL_cleanse(key, sizeof(key));
    return ok;
}

typedef struct {
    uv_work_t work;
    mom_auth_hash_cb hash_cb;
    mom_auth_verify_cb verify_cb;
    void *data;
    uint32_t iterations;
    char *encoded; /* verify: the stored hash (NULL = unknown user) */
    char hash[MOM_AUTH_HASH_MAX];
    bool ok;
    size_t len;
    char password[]; /* wiped before the item is freed */
} mom_auth_work_t;

static mom_auth_work_t *
mom_auth_work_new(const char *password, size_t len, uint32_t iterations,
                  void *data)
{
    mom_auth_work_t *w = calloc(1, sizeof(*w) + len + 1);

    if (w == NULL) {
        return NULL;
    }
    memcpy(w->password, password, len);
    w->len = len;
    w->iterations = iterations;
    w->data = data;
    w->work.data = w;
    return w;
}

static void
mom_auth_work_free(mom_auth_work_t *w)
{
    OPENSSL_cleanse(w->password, w->len);
    OPENSSL_cleanse(w->hash, sizeof(w->hash));
    free(w->encoded);
    free(w);
}

static void
mom_auth_hash_work(uv_work_t *req)
{
    mom_auth_work_t *w = req->data;

    w->ok = mom_auth_hash(w->password, w->len, w->iterations, w->hash) == 0;
}

static void
mom_auth_hash_done(uv_work_t *req, int status)
{
    mom_auth_work_t *w = req->data;

    w->hash_cb(w->data, status == 0 && w->ok ? w->hash : NULL);
    mom_auth_work_free(w);
}

int
mom_auth_hash_async(uv_loop_t *loop, const char *password, size_t len,
                    uint32_t iterations, mom_auth_hash_cb cb, void *data)
{
    mom_auth_work_t *w = mom_auth_work_new(password, len, iterations, data);

    if (w == NULL) {
        return -1;
    }
    w->hash_cb = cb;
    if (uv_queue_work(loop, &w->work, mom_auth_hash_work, mom_auth_hash_done) !=
        0) {
        mom_auth_work_free(w);
        return -1;
    }
    return 0;
}

static void
mom_auth_verify_work(uv_work_t *req)
{
    mom_auth_work_t *w = req->data;

    if (w->encoded != NULL) {
        w->ok = mom_auth_verify(w->password, w->len, w->encoded);
        return;
    }
    /* Same cost as a real verification, always false. */
    mom_auth_hash(w->password, w->len, w->iterations, w->hash);
    w->ok = false;
}

static void
mom_auth_verify_done(uv_work_t *req, int status)
{
    mom_auth_work_t *w = req->data;

    w->verify_cb(w->data, status == 0 && w->ok);
    mom_auth_work_free(w);
}

int
mom_auth_verify_async(uv_loop_t *loop, const char *password, size_t len,
                      const char *encoded, uint32_t iterations,
                      mom_auth_verify_cb cb, void *data)
{
    mom_auth_work_t *w = mom_auth_work_new(password, len, iterations, data);

    if (w == NULL) {
        return -1;
    }
    w->verify_cb = cb;
    if (encoded != NULL && (w->encoded = strdup(encoded)) == NULL) {
        mom_auth_work_free(w);
        return -1;
    }
    if (uv_queue_work(loop, &w->work, mom_auth_verify_work,
                      mom_auth_verify_done) != 0) {
        mom_auth_work_free(w);
        return -1;
    }
    return 0;
}
