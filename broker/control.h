/*
 * control: vfio-brokerd's control socket (protocol vb.ctl, ipc_proto_control). Accepts
 * orchestrator connections, admits only the configured admin uid, or a peer whose primary or
 * supplementary groups include the admin gid (SO_PEERCRED, SO_PEERGROUPS), dispatches
 * requests through a table of {type, allowed-when, handler}, and sends events to subscribers.
 * What a request does is the daemon's business, reached through `struct brk_ctl_ops`; this
 * module owns the sessions, the admission rule, the order rules, and the request metrics.
 */
#ifndef VB_BROKER_CONTROL_H
#define VB_BROKER_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <uv.h>

#include "control.pb-c.h"

/* Admin sessions a broker serves at once, connections of refused peers it holds (each until its
 * first request is answered EPERM; the oldest is closed unanswered to make room), and requests
 * in flight on one session: enforced limits on what anyone who can reach the socket can make
 * the broker hold. Refused peers never take an admin's slot. */
#define BRK_CTL_MAX_SESSIONS 64
#define BRK_CTL_MAX_REFUSED  8
#define BRK_CTL_MAX_INFLIGHT 16

struct brk_ctl;
/* One request being answered: the daemon completes it exactly once, now or later, with
 * brk_ctl_call_reply() or brk_ctl_call_error(). It stays valid until then even if the peer
 * went away (the answer is then dropped). */
struct brk_ctl_call;

struct brk_ctl_ops {
	/* Each returns 0 when it has completed `call` or will complete it later, or a negative
	 * errno: the call is then answered with that error and the message given to
	 * brk_ctl_call_set_message() (if any). Requests arrive already checked for shape (BDF
	 * canonical, VM name valid, uid not -1). */
	int (*add_device)(void *ctx, const Vb__Ctl__AddDevice *req, struct brk_ctl_call *call);
	int (*remove_device)(void *ctx, const Vb__Ctl__RemoveDevice *req,
			     struct brk_ctl_call *call);
	/* `req->after` is empty or canonical. */
	int (*list_devices)(void *ctx, const Vb__Ctl__ListDevices *req, struct brk_ctl_call *call);
	int (*device_status)(void *ctx, const char *bdf, struct brk_ctl_call *call);
	/* Appends the daemon's own Prometheus lines; control appends the request metrics. */
	int (*metrics)(void *ctx, FILE *out);
};

struct brk_ctl_cfg {
	uid_t admin_uid;
	gid_t admin_gid;
	bool admin_gid_set;
	const struct brk_ctl_ops *ops;
	void *ctx;
};

/* Serves `listen_fd` (a listening SOCK_SEQPACKET unix socket; taken over on success, made
 * non-blocking) on `loop`. Errors: -EINVAL, -ENOMEM, libuv's errors as negative errno. */
int brk_ctl_new(uv_loop_t *loop, int listen_fd, const struct brk_ctl_cfg *cfg,
		struct brk_ctl **ret);
/* Stops listening and ends every session; pending calls are still completed by their owners
 * (and dropped). The memory goes once libuv has closed the handles (run the loop). */
void brk_ctl_free(struct brk_ctl *ctl);

/* Sends an event to every subscriber. What a subscriber's socket cannot take now waits in its
 * bounded send queue; one that lets that overflow (it stopped reading) loses its session
 * rather than stall the broker. Replies work the same way. */
void brk_ctl_event(struct brk_ctl *ctl, Vb__Ctl__EventKind kind, const char *bdf, const char *vm,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Completing a call. `body` is the reply message of the call's type. */
void brk_ctl_call_reply(struct brk_ctl_call *call, const ProtobufCMessage *body);
/* The same with a reply body the daemon packed itself (`len` bytes of a `desc` message): for a
 * reply built entry by entry up to brk_ctl_reply_room() (ListDevices' pages), so that it is not
 * sized and packed again. One longer than that is answered EMSGSIZE, as brk_ctl_call_reply(). */
void brk_ctl_call_reply_packed(struct brk_ctl_call *call, const ProtobufCMessageDescriptor *desc,
			       const void *body, size_t len);
/* Completes a call whose reply would have been `size` bytes, more than one datagram: the peer
 * gets EMSGSIZE, with the size and what to ask instead, and keeps its session. */
void brk_ctl_call_reply_too_large(struct brk_ctl_call *call, size_t size);
/* `err` is a negative errno; the message goes to the peer. */
void brk_ctl_call_error(struct brk_ctl_call *call, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void brk_ctl_call_set_message(struct brk_ctl_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The largest reply body one control datagram carries: a reply that could grow past it (a page
 * of ListDevices) stops short of it. */
size_t brk_ctl_reply_room(void);
/* The peer of the call (for logs), uid -1 once the session is gone. */
uid_t brk_ctl_call_uid(const struct brk_ctl_call *call);

/*
 * A re-exec (SIGUSR2) loses no control request: brk_ctl_drain() stops accepting connections and
 * reading requests (what peers send meanwhile stays in their sockets) and calls done() from the
 * loop once every session's calls are answered and the answers sent, or once bound_ms have
 * passed, after ending the sessions that still have a call or an unsent answer (`dropped`: a
 * peer that does not read is never waited for beyond the bound). brk_ctl_handover() then puts
 * each session's connection in `store`'s table (brk_fdstore_put_local, "ctl.sess.N", or
 * "ctl.sub.N" for a subscriber) for the new image, which starts a session on each with
 * brk_ctl_adopt(name, fd) and reads the requests that waited. Returns the number handed over.
 * If the exec fails, brk_ctl_resume() takes them out of the table and serves on.
 * -EBUSY: a drain is under way.
 */
struct brk_fdstore;
int brk_ctl_drain(struct brk_ctl *ctl, unsigned bound_ms,
		  void (*done)(void *data, unsigned dropped), void *data);
int brk_ctl_handover(struct brk_ctl *ctl, struct brk_fdstore *store);
void brk_ctl_resume(struct brk_ctl *ctl, struct brk_fdstore *store);
/* Takes `fd` (closed on failure); -EINVAL when `name` is not a handed-over session's. */
int brk_ctl_adopt(struct brk_ctl *ctl, const char *name, int fd);

/* Sessions open now, for metrics. */
uint32_t brk_ctl_sessions(const struct brk_ctl *ctl);

#endif
