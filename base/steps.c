/*
 * steps: step durations for one log line (steps.h). Responsible for never overflowing its
 * buffer and never leaving half a "name ms" pair in it.
 */
#include "steps.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t vb_steps_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void vb_steps_begin(struct vb_steps *s)
{
	s->start_ns = s->last_ns = vb_steps_now_ns();
	s->len = 0;
	s->text[0] = '\0';
}

void vb_steps_mark(struct vb_steps *s, const char *name)
{
	uint64_t now;
	int n;

	if (!s->start_ns)
		return;
	now = vb_steps_now_ns();
	n = snprintf(s->text + s->len, sizeof(s->text) - s->len, "%s%s %.2f", s->len ? " " : "",
		     name, (double)(now - s->last_ns) / 1e6);
	if (n > 0 && (size_t)n < sizeof(s->text) - s->len)
		s->len += (size_t)n;
	else
		s->text[s->len] = '\0'; /* dropped whole */
	s->last_ns = now;
}

double vb_steps_total_ms(const struct vb_steps *s)
{
	return s->start_ns ? (double)(vb_steps_now_ns() - s->start_ns) / 1e6 : 0;
}
