/*
 * ring: the worker's side of a VMM's shared-memory ring (layout and doorbells: ipc/ipc_ring.h).
 * The ring is a second transport for the VMM protocol's four trapped accesses, not a second
 * protocol: each request is copied out of the page once, turned into the same request message
 * the socket would have delivered, and handed to the session's one dispatch (server_req.c's
 * table and handlers, with every check they make); the answer comes back through
 * wkr_ring_answer(), from the same reply path.
 *
 * Owns: its mapping of the page, the doorbell fd (watched edge-triggered, never read or written)
 * and an epoll fd of its own, a poll handle and a timer on the loop. Trusts nothing in the page.
 */
#ifndef VB_WKR_RING_H
#define VB_WKR_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"
#include "ipc.h"

struct wkr_ring;

/* Hands one request, copied and checked for the ring's own format, to the session's dispatch.
 * True: taken; it is answered exactly once with wkr_ring_answer(), before the callback returns
 * or later (a deferred reply), and the ring reads no further request until then. False: the
 * session cannot take it now (a request of its socket waits for the backend): the ring leaves it
 * on the page and reads again when wkr_ring_kick() says so. The message stays the ring's. */
typedef bool (*wkr_ring_dispatch_fn)(void *data, struct ipc_msg *m);

/* Takes the offer of a HELLO: checks the memfd (ipc_ring_memfd_check), maps it and watches
 * the doorbell on `loop`. Takes both fds whatever happens. On failure, `err` says why in words
 * for the VMM (the HELLO is still answered, and the socket serves). */
int wkr_ring_new(uv_loop_t *loop, int memfd, int doorbell, wkr_ring_dispatch_fn dispatch,
		 void *data, struct wkr_ring **ret, struct vb_err *err);

/* Stops serving and frees the ring once libuv has let go of its handles. A request that is
 * still unanswered is dropped (its VMM is leaving). NULL is ignored. */
void wkr_ring_free(struct wkr_ring *r);

/* Whether `m` is the ring's request (its answer goes to the page, not to the socket). */
bool wkr_ring_owns(const struct wkr_ring *r, const struct ipc_msg *m);

/* Answers the ring's request: `status` 0 with `len` bytes of `data` (at most VB_RING_DATA_MAX;
 * a longer answer becomes -EMSGSIZE), or a negative errno with `msg` (may be NULL). Wakes the
 * VMM when it sleeps, and goes on reading the page. */
void wkr_ring_answer(struct wkr_ring *r, int status, const void *data, size_t len, const char *msg);

/* Reads the page again from the loop (a request held back by the dispatch may go now). NULL and
 * a ring with a request unanswered are ignored. */
void wkr_ring_kick(struct wkr_ring *r);

/* Requests served and answered through the ring so far (for tests and the bench). */
uint64_t wkr_ring_requests(const struct wkr_ring *r);

#endif
