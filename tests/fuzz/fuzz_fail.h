/*
 * fuzz_fail: how a fuzz harness's own check fails. Every check (an invariant of what the code
 * under test answered, a set-up step of the harness) calls it with its own message, so that a
 * finding's log says which check fired: an optimized build can merge the abort() calls of one
 * function into one, and the line a stack trace then names may be another check's (campaign 7's
 * vmm_req abort could not be told apart that way, see README.md).
 */
#ifndef VB_TESTS_FUZZ_FAIL_H
#define VB_TESTS_FUZZ_FAIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Prints "fuzz: " and the formatted message on stderr, then aborts (libFuzzer's deadly-signal
 * handler saves the input that got here). */
static inline _Noreturn __attribute__((format(printf, 1, 2))) void fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#endif
