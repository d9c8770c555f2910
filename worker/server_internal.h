/*
 * Internal state of the VMM server, shared by server.c (the session's channel, refusals, events)
 * and server_req.c (the request table and handlers); the rest is vmm_serve.c's.
 */
#ifndef VB_WKR_SERVER_INTERNAL_H
#define VB_WKR_SERVER_INTERNAL_H

#include "base.h"
#include "ring.h"
#include "server.h"
#include "vmm_serve.h"

#define WKR_REFUSE_MAX 4

struct wkr_refusal {
	struct wkr_server *s;
	struct ipc_uv *u;
	int err;
};

/* The VMM's connection. Not an ipc_uv: a malformed datagram must cost the VMM an error reply,
 * not its session, so receive errors other than a hangup are survived here. */
struct wkr_session {
	struct wkr_serve_session base;
	struct ipc_chan *chan;
	struct wkr_ring *ring; /* the VMM's shared-memory ring, when one was negotiated */
	struct wkr_server *s;
	int send_err; /* a reply or event could not be sent or queued: the session ends */
	/* The request whose reply waits for the backend (base.defer), and the step that goes on
	 * with it once the backend's calls have completed. */
	struct ipc_msg *waiting;
	int (*then)(struct wkr_server *s, struct ipc_msg *m);
};

struct wkr_server {
	struct wkr_server_cfg cfg;
	struct wkr_serve *sv; /* listening, admission, the session's life, removal */
	struct ipc_limits limits;

	bool hello_done;
	bool restart_announced;
	struct wkr_refusal *refusals[WKR_REFUSE_MAX];
	bool dispatching; /* inside a request handler: the session may not end under it */

	struct vb_err err; /* why the request being answered failed */
};

/* The running session, or NULL. */
static inline struct wkr_session *wkr__server_session(const struct wkr_server *s)
{
	return s->sv->vmm ? container_of(s->sv->vmm, struct wkr_session, base) : NULL;
}

/* server_req.c: answers one request of the session (replies or errors, always), now or, when
 * it waits for the backend, once the backend has answered (the session reads nothing more
 * meanwhile). Takes `m`. */
void wkr__server_dispatch(struct wkr_server *s, struct ipc_msg *m);
/* server.c */
int wkr__server_event(struct wkr_server *s, uint32_t kind, uint16_t command, uint32_t timeout_ms);
/* Notes the result of a send to the VMM: a failed one ends the session when it is safe to. */
void wkr__server_sent(struct wkr_server *s, int r);
/* The ring's transport (ring.c) for a request that came through it: answers `m` on the page with
 * `body` (a Data or an Empty) or, when `err` < 0, with the error and `msg`; false when `m` did not
 * come through the ring (the caller answers on the socket). */
bool wkr__server_ring_reply(struct wkr_server *s, const struct ipc_msg *m,
			    const ProtobufCMessage *body, int err, const char *msg);
/* A request has been answered: a datagram is freed; a ring's request stays the ring's. */
void wkr__server_msg_done(struct wkr_server *s, struct ipc_msg *m);
/* Takes a HELLO's ring offer (its two fds in `m`) into the session, or says in `err` why not;
 * 0 or the negative errno of the refusal. */
int wkr__server_ring_open(struct wkr_server *s, struct ipc_msg *m, uint32_t layout,
			  struct vb_err *err);

#endif
