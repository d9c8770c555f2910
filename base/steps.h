/*
 * steps: how long each step of one flow took, as text for one log line ("group 1.20 device
 * 0.31 ..."), so that an operator, and bench/guest_bench.py, see where a hot-plug's time goes
 * without a tracer. CLOCK_MONOTONIC through the vDSO: no system call on the paths that use it,
 * and clock_gettime is in every seccomp policy for the cases without a vDSO.
 */
#ifndef VB_BASE_STEPS_H
#define VB_BASE_STEPS_H

#include <stddef.h>
#include <stdint.h>

struct vb_steps {
	uint64_t start_ns, last_ns; /* start_ns 0: not begun (marks do nothing) */
	size_t len;
	char text[240]; /* "name ms name ms ...", NUL-terminated; a mark that does not fit is
			   dropped whole, so the line never ends in half a pair */
};

uint64_t vb_steps_now_ns(void);
/* Starts timing from now; forgets earlier marks. */
void vb_steps_begin(struct vb_steps *s);
/* Appends "name ms" for the time since the last mark (or the start). `name` must be one word:
 * readers split the text on spaces. */
void vb_steps_mark(struct vb_steps *s, const char *name);
/* Milliseconds since vb_steps_begin(), 0 when not begun. */
double vb_steps_total_ms(const struct vb_steps *s);

#endif
