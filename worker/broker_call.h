/*
 * broker_call: the worker's calls to the broker, made without waiting. A call is sent and
 * completes later, from the loop: when its answer comes, when the call timeout passes (it is
 * then given up on: -ETIMEDOUT, "it may be restarting; retry"), or when the channel ends. A
 * call made while a defer collects (defer.h) is counted into it and completes it. The owner
 * (broker_link.c) hears every outcome first, so that it can take what an answer brings (an
 * admission's grant) and undo what a given-up call did after all when its late answer comes.
 *
 * Bounds: every call, late ones included, holds one of WKR_BCALLS_MAX entries, the channel's
 * requests in flight (ipc's max_outstanding); at most WKR_BCALLS_LATE_MAX of them may be calls
 * given up on, so that a broker that is not there costs a VMM an immediate EBUSY rather than
 * the channel. WKR_BCALLS_FENCE_ROOM entries are kept for fences, which the late budget does not
 * bound: they are what frees it.
 *
 * Fences (issue 12): a broker answers requests in the order it reads them, each before reading
 * the next, so when a fence's answer comes every call sent before it that is still unanswered
 * was read by a broker that is gone (killed before it answered) and never will be: those are
 * forgotten (a call still waited for is given up on first, as on its timeout). A late answer of
 * the broker that is still there (a slow one) is never cut off: only a new broker's attaching
 * sends a fence. Without that, every restart with a call in flight kept one late entry for
 * good, and after WKR_BCALLS_LATE_MAX of them every call was refused EBUSY.
 *
 * Trusts the broker's answers to be for the request they name (ipc checks ids), and the
 * order above (broker/worker_req.c).
 */
#ifndef VB_WKR_BROKER_CALL_H
#define VB_WKR_BROKER_CALL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backend.h"
#include "ipc.h"

#define WKR_BCALLS_MAX	      64
#define WKR_BCALLS_LATE_MAX   48
#define WKR_BCALLS_FENCE_ROOM 2

/* What a late answer must undo. */
enum wkr_bcall_undo {
	WKR_UNDO_NOTHING, /* a VMM_STATE, a reset, a compensation's own answer */
	WKR_UNDO_UNMAP,	  /* DMA_MAP: unmap [iova, iova+size) again if it was done */
	/* DMA_MAP over a range the worker holds (dma_held.h): the broker refuses it (EEXIST), so
	 * only an answer that says it was done after all is undone. */
	WKR_UNDO_UNMAP_IF_DONE,
	WKR_UNDO_ROUTING, /* SET_IRQS: send the index's whole routing again */
	WKR_UNDO_GRANT,	  /* VMM_ADMIT: close the grant it brings (with the message) */
};

struct wkr_bcall {
	uint32_t id;
	uint16_t type;
	uint64_t seq; /* the order sent in */
	bool fence;   /* its answer forgets every call sent before it */
	enum wkr_bcall_undo undo;
	uint32_t index;		 /* SET_IRQS */
	uint64_t iova, size;	 /* DMA_MAP, and a VMM's DMA_UNMAP */
	int64_t deadline;	 /* CLOCK_MONOTONIC ms */
	bool late;		 /* given up on: its answer is only compensated */
	bool resend;		 /* SET_IRQS of a routing sent again (broker_link.c) */
	bool retried;		 /* DMA_UNMAP retried after a timeout: ENOENT means done */
	bool held;		 /* DMA_UNMAP of a range held: held again if refused in time */
	struct wkr_defer *d;	 /* counted into (NULL: nobody waits) */
	struct wkr_admit *admit; /* VMM_ADMIT: filled from the answer */
};

/* An outcome, told to the owner before the call's defer completes: an answer in time (`m`,
 * `err` 0 or the broker's error), a timeout (`m` NULL, -ETIMEDOUT; the call stays, late), a
 * late answer (c->late, `m`), the channel's end (`m` NULL, -EPIPE), or a fence's verdict that
 * no answer will ever come (`m` NULL, -ECANCELED; the call was given up on before, so it is
 * late, and it goes now: what it still owes must be done now). Returns what the one
 * waiting for an answer in time is told: `err`, or 0 when the owner knows the broker's error
 * means done (a retried unmap's ENOENT); ignored for the other outcomes. */
typedef int (*wkr_bcall_outcome)(void *data, struct wkr_bcall *c, struct ipc_msg *m, int err);

struct wkr_bcalls {
	struct wkr_bcall tab[WKR_BCALLS_MAX];
	size_t n, nlate;
	uint64_t sent;	       /* calls sent so far: the next one's seq */
	struct ipc_chan *chan; /* the one calls were sent on */
	struct wkr_defer *collect;
	int timeout_ms;
	uv_timer_t timer;
	bool timer_open;
	wkr_bcall_outcome outcome;
	void *data;
};

void wkr_bcalls_init(struct wkr_bcalls *cs, int timeout_ms, wkr_bcall_outcome outcome, void *data);
/* Times calls out from `loop` from now on. */
int wkr_bcalls_start(struct wkr_bcalls *cs, uv_loop_t *loop);
/* Closes the timer; `closed` runs once libuv has let go of it (at once when never started). */
void wkr_bcalls_close(struct wkr_bcalls *cs, void (*closed)(uv_handle_t *h));

/* Sends a request on `chan` described by `meta` (undo, index, iova, size, admit, fence),
 * counted into the defer collecting. 0: sent, the outcome comes later. -EBUSY when the table or
 * the late budget is full (a fence: only the table), or the channel's error, explained in `err`:
 * nothing was sent. */
int wkr_bcall_send(struct wkr_bcalls *cs, struct ipc_chan *chan, uint16_t type,
		   const ProtobufCMessage *body, const int *fds, size_t nfds,
		   const struct wkr_bcall *meta, struct vb_err *err);
/* A reply or error reply of the broker: completes its call. False when it answers none. */
bool wkr_bcall_answer(struct wkr_bcalls *cs, struct ipc_msg *m);
/* The channel has ended: every call completes with -EPIPE. */
void wkr_bcall_fail_all(struct wkr_bcalls *cs);
/* `d` goes away: its calls complete into nothing. */
void wkr_bcall_forget(struct wkr_bcalls *cs, struct wkr_defer *d);

#endif
