/*
 * Internal state of the VMM server, shared by server.c (connections, sessions, events, removal)
 * and server_req.c (the request table and handlers).
 */
#ifndef VB_WKR_SERVER_INTERNAL_H
#define VB_WKR_SERVER_INTERNAL_H

#include "server.h"

#define WKR_REFUSE_MAX 4

struct wkr_refusal {
	struct wkr_server *s;
	struct ipc_uv *u;
	int err;
};

/* The VMM's connection. Not an ipc_uv: a malformed datagram must cost the VMM an error reply,
 * not its session, so receive errors other than a hangup are survived here. */
struct wkr_session {
	uv_poll_t poll;
	struct ipc_chan *chan;
	struct wkr_server *s;
	bool ended;
	bool writing; /* the poll handle waits for writability too */
	int send_err; /* a reply or event could not be sent or queued: the session ends */
};

struct wkr_server {
	struct wkr_server_cfg cfg;
	struct ipc_limits limits;
	uv_poll_t listen_poll;
	uv_poll_t irq_poll;
	uv_timer_t removal_timer;
	int open_handles;
	bool closing;
	void (*closed)(void *data);
	void *closed_data;

	struct wkr_session *vmm; /* the one session, or NULL */
	bool hello_done;
	pid_t vmm_pid;
	uid_t vmm_uid;
	int grant_fd; /* the VMM's mmap grant while it is connected, else -1 */
	bool restart_announced;
	struct wkr_refusal *refusals[WKR_REFUSE_MAX];

	bool dispatching; /* inside a request handler: the session may not end under it */
	uint64_t requests;
	bool removal_pending;
	void (*removal_done)(void *data, bool acked);
	void *removal_data;

	struct vb_err err; /* why the request being answered failed */
};

/* server_req.c: answers one request of the session (replies or errors, always). */
void wkr__server_dispatch(struct wkr_server *s, struct ipc_msg *m);
/* server.c */
void wkr__server_removal_finish(struct wkr_server *s, bool acked);
int wkr__server_event(struct wkr_server *s, uint32_t kind, uint16_t command, uint32_t timeout_ms);
/* Notes the result of a send to the VMM: a failed one ends the session when it is safe to. */
void wkr__server_sent(struct wkr_server *s, int r);

#endif
