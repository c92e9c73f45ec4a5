/*
 * Process-wide settings of the gRPC runtime that only C++ can reach.
 */
#ifndef MOM_GRPC_TUNE_H
#define MOM_GRPC_TUNE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Call once, before grpc_init(). */
void mom_grpc_tune(void);

#ifdef __cplusplus
}
#endif

#endif /* MOM_GRPC_TUNE_H */
