/*
 * defer: a reply that waits for the backend. The one way a VMM request (native, vfio-user, or
 * a ring slot) whose handler needs the broker is answered later, without the loop waiting.
 *
 * Contract:
 *  - The owner (a request path) holds one struct wkr_defer per request that may wait, and
 *    brackets the handler's backend calls with wkr_defer_begin() and wkr_defer_end(). Nothing
 *    else may run between the two (they bracket synchronous code).
 *  - Each backend call made in between whose answer comes later is counted into it: the
 *    backend takes the defer given to its `collect` op (backend.h), wkr_defer_add()s it when
 *    the request is sent and wkr_defer_complete()s it when the answer (or the timeout, or the
 *    channel's end) comes, always from the loop, never from within the call. A call that
 *    cannot be sent fails at once (the op returns < 0) and is not counted. A synchronous
 *    backend (standalone) counts nothing.
 *  - wkr_defer_end() returns false when nothing is outstanding: the owner answers now, with
 *    d->err (0, or the first failure, d->why saying why). It returns true when calls are
 *    outstanding: the owner answers nothing yet and reads no further request of that VMM (its
 *    order is kept); `done` runs once, from the loop, after the last call completed, with
 *    d->err and d->why set. There the owner answers, or starts the next step (the emulation's
 *    part after a reset) with another begin/end on the same defer.
 *  - wkr_defer_fail() records a failure of the owner's own (the first failure wins).
 *  - wkr_defer_cancel(): the owner goes away (its VMM hung up) while calls are outstanding;
 *    `done` never runs. The calls themselves still complete in the backend, and what is done
 *    late is undone there as for any call given up on.
 */
#ifndef VB_WKR_DEFER_H
#define VB_WKR_DEFER_H

#include <stdbool.h>

#include "err.h"

struct wkr_backend;

struct wkr_defer {
	void (*done)(struct wkr_defer *d); /* the owner's; runs once per end() that said true */
	void *data;			   /* the owner's */
	const struct wkr_backend *b;	   /* between begin and done/cancel */
	unsigned pending;		   /* calls counted and not completed */
	bool waiting;			   /* end() said true: done is due */
	int err;			   /* 0, or the first failure */
	struct vb_err why;		   /* its message */
};

/* Starts a request (or a next step of it) on `d`: its error is cleared on the first step only
 * (`fresh`), and the backend counts its calls into `d` until wkr_defer_end(). */
void wkr_defer_begin(struct wkr_defer *d, const struct wkr_backend *b, bool fresh);
/* Stops counting. True: calls are outstanding and `done` will run; false: answer now. */
bool wkr_defer_end(struct wkr_defer *d);
/* Records the owner's own failure `err` with `why` (NULL: strerror) unless one came first. */
void wkr_defer_fail(struct wkr_defer *d, int err, const struct vb_err *why);
/* Detaches a waiting defer from the backend; `done` will not run. Idle ones are ignored. */
void wkr_defer_cancel(struct wkr_defer *d);

/* For backends: a call counted into `d` was sent / has completed with `err` (0, or a negative
 * errno explained by `why`, NULL allowed). The last completion of a waiting defer runs `done`. */
void wkr_defer_add(struct wkr_defer *d);
void wkr_defer_complete(struct wkr_defer *d, int err, const struct vb_err *why);

#endif
