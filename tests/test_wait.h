/*
 * test_wait: how long a test waits for another process, thread or event loop before it calls it
 * hung. The bound is not a deadline: a busy machine (make check runs beside builds, guests and
 * stress-ng) can starve a peer for many seconds, so it is long, and a test reaches it only when
 * what it waits for never comes, which turns a hang into a failure with a message. Tests wait on
 * the event itself (poll on an fd, a pidfd, a loop's backend fd) up to this bound, never for a
 * fixed time.
 */
#ifndef VB_TESTS_TEST_WAIT_H
#define VB_TESTS_TEST_WAIT_H

#include <stdint.h>
#include <time.h>

#define TEST_HANG_MS 60000

/* CLOCK_MONOTONIC in milliseconds, for a deadline of now + TEST_HANG_MS. */
static inline int64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left of `deadline` for poll(): 0 once it has passed. */
static inline int test_left_ms(int64_t deadline)
{
	int64_t left = deadline - test_now_ms();

	return left > 0 ? (int)left : 0;
}

#endif
