/*
 * fake_proc: the processes under the broker, replaced for the fuzz targets that run broker code
 * in-process (fuzz_brk_worker, fuzz_ctl). It defines the symbols of broker/spawn.c and
 * broker/supervise.c: a "spawned worker" is one end of a socketpair, whose other end the target
 * plays; a SIGKILL is recorded, and the worker counts as reaped at the next fake_proc_reap();
 * a VMM socket is a listening socket on an autobound abstract address. Nothing is forked.
 */
#ifndef VB_TESTS_FUZZ_FAKE_PROC_H
#define VB_TESTS_FUZZ_FAKE_PROC_H

#include <stdbool.h>

#define FAKE_PROC_MAX 16

struct fake_proc {
	int peer;    /* the worker's end of its broker channel; -1 once closed */
	bool killed; /* SIGKILL sent */
	bool reaped; /* exited() called */
	bool live;   /* the supervisor exists */
};

extern struct fake_proc fake_procs[FAKE_PROC_MAX];
extern int fake_proc_kills;

/* Calls exited() for every killed worker not reaped yet; returns how many. */
int fake_proc_reap(void);
/* Closes every peer end still open and forgets every worker (after the broker freed them).
 * Call it once before the first worker, too. */
void fake_proc_reset(void);

#endif
