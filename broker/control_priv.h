/*
 * control_priv: what the control server's three files share. control.c owns the sessions
 * (admission, framing, their lifetime), the server and its events; control_req.c the request
 * table (dispatch by session state, the shape checks, completing calls, the request metrics);
 * control_handover.c a re-exec's drain and the sessions handed to the next image and adopted by
 * it. Nothing here is seen outside broker/control*.c: the rest of the broker uses control.h.
 */
#ifndef VB_BROKER_CONTROL_PRIV_H
#define VB_BROKER_CONTROL_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "control.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "metrics.h"

#define CTL_TYPES (VB__CTL__TYPE__METRICS + 1)

/* Session states, as bits so that a table entry can allow several. */
enum ctl_state {
	CTL_REFUSED = 1u << 0,	  /* not the admin: the first request is answered EPERM */
	CTL_ADMIN = 1u << 1,	  /* admitted */
	CTL_SUBSCRIBED = 1u << 2, /* admitted, and receives events */
};

struct ctl_sess {
	struct brk_ctl *ctl;
	struct ipc_uv *u;
	uv_timer_t linger;
	unsigned state;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	unsigned inflight;
	int open_handles;
	bool ending;
	struct brk_ctl_call *calls;
	struct ctl_sess *next;
};

struct brk_ctl_call {
	struct brk_ctl *ctl;
	struct ctl_sess *sess; /* NULL once the session ended */
	struct ipc_msg *req;
	uint16_t type;
	uint64_t start_ns;
	char msg[256];
	struct brk_ctl_call *next, **pprev;
};

struct brk_ctl {
	uv_loop_t *loop;
	uv_poll_t listen;
	int listen_fd;
	struct brk_ctl_cfg cfg;
	struct ctl_sess *sessions;
	uint32_t nsessions;   /* open, refused ones included */
	uint32_t nrefused;    /* open and refused */
	uint32_t nsess_alloc; /* sessions not yet freed: ended ones wait for libuv */
	uint32_t ncalls;
	bool freeing, listen_closed;
	/* brk_ctl_drain: sessions paused, not listening; done() once nothing is in flight. */
	struct {
		uv_timer_t *timer;
		uint64_t deadline_ms;
		void (*done)(void *data, unsigned dropped);
		void *data;
	} drain;
	uint64_t refused, refused_dropped, rejected_full, protocol_errors, events_sent,
	    subscribers_dropped, send_overflows;
	struct brk_req_stats stats[CTL_TYPES];
};

/* control.c: a session ends (logged with `why` when not NULL; its calls finish without a peer),
 * starts on an accepted or adopted connection `fd` (taken), and the listening socket's
 * callback, which a resumed server polls again. The server is freed once brk_ctl_free() was
 * called and every session and call is gone. */
void brk_ctl__sess_end(struct ctl_sess *s, const char *why);
int brk_ctl__sess_start(struct brk_ctl *ctl, int fd);
void brk_ctl__on_listen(uv_poll_t *h, int status, int events);
void brk_ctl__maybe_free(struct brk_ctl *ctl);

/* control_req.c: what a session's message `m` (taken) asks, done or refused by the table. */
void brk_ctl__dispatch(struct ctl_sess *s, struct ipc_msg *m);

/* control_handover.c: a drain in progress is called off (brk_ctl_free, brk_ctl_resume). */
void brk_ctl__drain_stop(struct brk_ctl *ctl);

#endif
