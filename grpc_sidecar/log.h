/*
 * Diagnostic logging of momd to stderr, filtered by the configured level.
 * Never pass passwords or password hashes to these functions.
 */
#ifndef MOM_LOG_H
#define MOM_LOG_H

typedef enum {
    MOM_LOG_ERROR = 0,
    MOM_LOG_WARN,
    MOM_LOG_INFO,
    MOM_LOG_DEBUG,
} mom_log_level_t;

extern mom_log_level_t mom_log_level;

/* Parses "error", "warn", "info" or "debug"; returns -1 on anything else. */
int mom_log_parse_level(const char *name, mom_log_level_t *out);

void mom_log(mom_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define mom_log_error(...) mom_log(MOM_LOG_ERROR, __VA_ARGS__)
#define mom_log_warn(...) mom_log(MOM_LOG_WARN, __VA_ARGS__)
#define mom_log_info(...)                                                      \
    do {                                                                       \
        if (mom_log_level >= MOM_LOG_INFO)                                     \
            mom_log(MOM_LOG_INFO, __VA_ARGS__);                                \
    } while (0)
#define mom_log_debug(...)                                                     \
    do {                                                                       \
        if (mom_log_level >= MOM_LOG_DEBUG)                                    \
            mom_log(MOM_LOG_DEBUG, __VA_ARGS__);                               \
    } while (0)

#endif
