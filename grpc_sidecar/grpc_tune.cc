/*
 * Turns off Abseil's mutex deadlock detection for the gRPC core's locks.
 *
 * Debian builds Abseil without NDEBUG, and Abseil then checks every
 * absl::Mutex acquisition against a global lock-order graph (GraphCycles).
 * gRPC takes such mutexes on every call, completion and write: under a
 * 3-node publish load the checks were 1.3-2.2% of momd's CPU and all of
 * Abseil 3-6% (perf, docs/benchmarks.md). Release builds of Abseil skip
 * them; so do we. This is the only C++ in momd: the setting has no C API.
 */
#include "grpc_tune.h"

#include <absl/synchronization/mutex.h>

extern "C" void
mom_grpc_tune(void)
{
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}
