/* Clocks in milliseconds and deadlines for timed condition waits: the one
 * place that turns clock_gettime into the numbers the rest of durafs
 * compares and stores. All functions are thread-safe and cannot fail. */
#ifndef DURAFS_CLOCK_H
#define DURAFS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: for intervals and deadlines. */
int64_t clk_mono_ms(void);

/* CLOCK_REALTIME in milliseconds since the epoch: for times shown to a
 * user or stored (they survive a reboot, an interval does not). */
int64_t clk_wall_ms(void);

/* The CLOCK_MONOTONIC time ms (>= 0) from now as an absolute, normalised
 * timespec: the deadline for pthread_cond_timedwait on a condition
 * variable created with pthread_condattr_setclock(CLOCK_MONOTONIC). */
struct timespec clk_mono_after(int64_t ms);

#endif
