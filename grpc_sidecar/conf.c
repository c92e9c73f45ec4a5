/*
 * momd.conf parser: `key = value` lines, `#` comments (a `#` anywhere starts
 * a comment, none of the values can contain one), unknown keys and bad
 * values are errors reported with their line number.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define MOM_CONF_MAX_FILE (1024 * 1024)

void
mom_conf_defaults(mom_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->node_id = 1;
    conf->synchronous = MOM_SYNC_FULL;
    conf->pbkdf2_iterations = 600000;
    conf->max_frame_size = 4194304;
    conf->sse_buffer = 1048576;
    conf->heartbeat_ms = 15000;
    conf->log_level = MOM_LOG_INFO;
    conf->partitions = 64;
    conf->replicas = 3;
    conf->snapshot_threshold = 1024;
    conf->snapshot_trailing = 128;
    conf->snapshot_trailing_bytes = 64 * 1024 * 1024;
}

void
mom_conf_free(mom_conf_t *conf)
{
    free(conf->socket_path);
    free(conf->data_dir);
    for (size_t i = 0; i < conf->n_members; i++) {
        free(conf->members[i].grpc_addr);
        free(conf->members[i].rest_addr);
    }
    conf->socket_path = NULL;
    conf->data_dir = NULL;
    conf->n_members = 0;
}

static void
mom_conf_error(char *err, size_t err_size, unsigned line, const char *fmt, ...)
{
    va_list ap;
    int n;

    n = snprintf(err, err_size, "line %u: ", line);
    if (n < 0 || (size_t)n >= err_size) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err + n, err_size - n, fmt, ap);
    va_end(ap);
}

/* Parses a decimal integer in [min, max]; the whole string must be used. */
static int
mom_conf_uint(const char *value, unsigned long min, unsigned long max,
              uint32_t *out)
{
    char *end;
    unsigned long v;

    if (!isdigit((unsigned char)value[0])) {
        return -1;
    }
    errno = 0;
    v = strtoul(value, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* "host:port" with a non-empty host and a port 1..65535. */
static int
mom_conf_check_addr(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    uint32_t port;

    if (colon == NULL || colon == addr) {
        return -1;
    }
    return mom_conf_uint(colon + 1, 1, 65535, &port);
}

static int
mom_conf_member(mom_conf_t *conf, char *value)
{
    char *save = NULL;
    char *id = strtok_r(value, " \t", &save);
    char *grpc = strtok_r(NULL, " \t", &save);
    char *rest = strtok_r(NULL, " \t", &save);
    mom_member_t *m;
    uint32_t node;

    if (id == NULL || grpc == NULL || rest == NULL ||
        strtok_r(NULL, " \t", &save) != NULL) {
        return -1;
    }
    if (mom_conf_uint(id, 1, UINT32_MAX, &node) != 0 ||
        mom_conf_check_addr(grpc) != 0 || mom_conf_check_addr(rest) != 0) {
        return -1;
    }
    for (size_t i = 0; i < conf->n_members; i++) {
        if (conf->members[i].id == node) {
            return -1;
        }
    }
    if (conf->n_members == MOM_CONF_MAX_MEMBERS) {
        return -1;
    }
    m = &conf->members[conf->n_members];
    m->id = node;
    m->grpc_addr = strdup(grpc);
    m->rest_addr = strdup(rest);
    if (m->grpc_addr == NULL || m->rest_addr == NULL) {
        free(m->grpc_addr);
        free(m->rest_addr);
        return -1;
    }
    conf->n_members++;
    return 0;
}

static int
mom_conf_string(char **slot, const char *value)
{
    char *copy = strdup(value);

    if (copy == NULL || value[0] == '\0') {
        free(copy);
        return -1;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

/* Applies one key; returns 0, -1 (bad value) or -2 (unknown key). */
static int
mom_conf_set(mom_conf_t *conf, const char *key, char *value)
{
    if (strcmp(key, "node_id") == 0) {
        return mom_conf_uint(value, 1, UINT32_MAX, &conf->node_id);
    }
    if (strcmp(key, "socket") == 0) {
        return mom_conf_string(&conf->socket_path, value);
    }
    if (strcmp(key, "data_dir") == 0) {
        return mom_conf_string(&conf->data_dir, value);
    }
    if (strcmp(key, "synchronous") == 0) {
        if (strcmp(value, "full") == 0) {
            conf->synchronous = MOM_SYNC_FULL;
        } else if (strcmp(value, "normal") == 0) {
            conf->synchronous = MOM_SYNC_NORMAL;
        } else {
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "pbkdf2_iterations") == 0) {
        return mom_conf_uint(value, 1, 100000000, &conf->pbkdf2_iterations);
    }
    if (strcmp(key, "max_frame_size") == 0) {
        /* Room for a history page's 64 KiB margin; 1 GiB hard cap. */
        return mom_conf_uint(value, 128 * 1024, 1UL << 30,
                             &conf->max_frame_size);
    }
    if (strcmp(key, "sse_buffer") == 0) {
        return mom_conf_uint(value, 1024, 1UL << 30, &conf->sse_buffer);
    }
    if (strcmp(key, "heartbeat_ms") == 0) {
        return mom_conf_uint(value, 10, 3600000, &conf->heartbeat_ms);
    }
    if (strcmp(key, "log_level") == 0) {
        return mom_log_parse_level(value, &conf->log_level);
    }
    if (strcmp(key, "member") == 0) {
        return mom_conf_member(conf, value);
    }
    if (strcmp(key, "partitions") == 0) {
        return mom_conf_uint(value, 1, 65536, &conf->partitions);
    }
    if (strcmp(key, "replicas") == 0) {
        return mom_conf_uint(value, 1, 64, &conf->replicas);
    }
    if (strcmp(key, "snapshot_threshold") == 0) {
        return mom_conf_uint(value, 8, 100000000, &conf->snapshot_threshold);
    }
    if (strcmp(key, "snapshot_trailing") == 0) {
        return mom_conf_uint(value, 0, 100000000, &conf->snapshot_trailing);
    }
    if (strcmp(key, "snapshot_trailing_bytes") == 0) {
        return mom_conf_uint(value, 0, 1024 * 1024 * 1024,
                             &conf->snapshot_trailing_bytes);
    }
    return -2;
}

static char *
mom_conf_trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) {
        *--end = '\0';
    }
    return s;
}

int
mom_conf_parse(mom_conf_t *conf, const char *text, char *err, size_t err_size)
{
    char *copy = strdup(text);
    char *line, *save = NULL;
    unsigned lineno = 0;
    int rc = 0;

    if (copy == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }

    /* strtok_r would skip empty lines and miscount: split by hand. */
    for (line = copy; line != NULL && rc == 0; line = save) {
        char *eq, *key, *value, *hash;

        lineno++;
        save = strchr(line, '\n');
        if (save != NULL) {
            *save++ = '\0';
        }
        hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        line = mom_conf_trim(line);
        if (*line == '\0') {
            continue;
        }
        eq = strchr(line, '=');
        if (eq == NULL) {
            mom_conf_error(err, err_size, lineno, "expected \"key = value\"");
            rc = -1;
            break;
        }
        *eq = '\0';
        key = mom_conf_trim(line);
        value = mom_conf_trim(eq + 1);
        switch (mom_conf_set(conf, key, value)) {
        case 0:
            break;
        case -2:
            mom_conf_error(err, err_size, lineno, "unknown key \"%s\"", key);
            rc = -1;
            break;
        default:
            mom_conf_error(err, err_size, lineno, "invalid value for \"%s\"",
                           key);
            rc = -1;
        }
    }
    free(copy);
    if (rc != 0) {
        return rc;
    }

    if (conf->socket_path == NULL) {
        snprintf(err, err_size, "\"socket\" is required");
        return -1;
    }
    if (conf->data_dir == NULL) {
        snprintf(err, err_size, "\"data_dir\" is required");
        return -1;
    }
    if (conf->n_members > 0) {
        int self = 0;
        for (size_t i = 0; i < conf->n_members; i++) {
            self |= conf->members[i].id == conf->node_id;
        }
        if (!self) {
            snprintf(err, err_size, "node_id %u is not among the members",
                     conf->node_id);
            return -1;
        }
    }
    return 0;
}

int
mom_conf_load(mom_conf_t *conf, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    char *text;
    size_t n;
    int rc;

    if (f == NULL) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    text = malloc(MOM_CONF_MAX_FILE + 1);
    if (text == NULL) {
        fclose(f);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    n = fread(text, 1, MOM_CONF_MAX_FILE + 1, f);
    fclose(f);
    if (n > MOM_CONF_MAX_FILE) {
        free(text);
        snprintf(err, err_size, "%s: file too large", path);
        return -1;
    }
    text[n] = '\0';
    if (strlen(text) != n) {
        free(text);
        snprintf(err, err_size, "%s: NUL byte in file", path);
        return -1;
    }
    rc = mom_conf_parse(conf, text, err, err_size);
    free(text);
    return rc;
}
