/*
 * control: the control socket server. Responsible for admission (SO_PEERCRED and SO_PEERGROUPS
 * against the admin uid/gid, read once when the connection is accepted; refused peers get a
 * small budget of their own, so they never take a slot an admin needs), for the dispatch table that
 * says which request is allowed in which session state, for ending the session of any peer that
 * sends something unknown or out of order, for bounding sessions and requests in flight, and for
 * the request metrics. Trusts nothing a peer sends: bodies are checked for shape here before the
 * daemon sees them. Trusts the daemon (brk_ctl_ops) to complete every call exactly once.
 */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "common.pb-c.h"
#include "config.h"
#include "dispatch.h"
#include "fdstore.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"

_Static_assert((int)BRK_DEV_STARTING == (int)VB__CTL__DEVICE_STATE__STATE_STARTING &&
		   (int)BRK_DEV_READY == (int)VB__CTL__DEVICE_STATE__STATE_READY &&
		   (int)BRK_DEV_CONNECTED == (int)VB__CTL__DEVICE_STATE__STATE_CONNECTED &&
		   (int)BRK_DEV_REMOVING == (int)VB__CTL__DEVICE_STATE__STATE_REMOVING &&
		   (int)BRK_DEV_FAULTED == (int)VB__CTL__DEVICE_STATE__STATE_FAULTED,
	       "registry states must equal vb.ctl.DeviceState");

/* How long a refused peer may keep its connection before sending the request it will be
 * refused on. It holds one of BRK_CTL_MAX_REFUSED slots meanwhile, never an admin's. */
#define CTL_REFUSED_LINGER_MS 2000
#define CTL_TYPES	      (VB__CTL__TYPE__METRICS + 1)

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

typedef int (*ctl_handler_fn)(struct ctl_sess *s, struct brk_ctl_call *call);

/* req.when: enum ctl_state bits in which the request is allowed. */
struct ctl_handler {
	struct vb_req req;
	ctl_handler_fn fn;
};

static void ctl_sess_end(struct ctl_sess *s, const char *why);
static void ctl_maybe_free(struct brk_ctl *ctl);
static void ctl_listen_closed(uv_handle_t *h);

/* ---- calls ------------------------------------------------------------------------------- */

/* A reply the peer's socket could not take went to the channel's bounded send queue; one that
 * would overflow it means the peer does not read: it is disconnected, never waited for. */
static void ctl_send_failed(struct ctl_sess *s, int r)
{
	if (r == -EOVERFLOW) {
		s->ctl->send_overflows++;
		brk_warn("control: disconnecting pid %d uid %u: it does not read its replies (send "
			 "queue over budget)",
			 (int)s->pid, (unsigned)s->uid);
	} else if (r != -EPIPE && r != -ECONNRESET) {
		brk_log_errno(LOG_WARNING, r, "control: pid %d uid %u: cannot send reply",
			      (int)s->pid, (unsigned)s->uid);
	}
	ctl_sess_end(s, NULL);
}

static void ctl_call_finish(struct brk_ctl_call *call, bool ok)
{
	struct brk_ctl *ctl = call->ctl;

	if (call->type < CTL_TYPES)
		brk_req_stats_observe(&ctl->stats[call->type], ok, uv_hrtime() - call->start_ns);
	if (call->sess) {
		call->sess->inflight--;
		*call->pprev = call->next;
		if (call->next)
			call->next->pprev = call->pprev;
	}
	ipc_msg_free(call->req);
	free(call);
	ctl->ncalls--;
	ctl_maybe_free(ctl);
}

static void ctl_send_error(struct ctl_sess *s, const struct ipc_msg *req, int err, const char *msg);

void brk_ctl_call_reply(struct brk_ctl_call *call, const ProtobufCMessage *body)
{
	struct ctl_sess *s = call->sess;
	int r;

	if (s) {
		r = ipc_chan_reply(ipc_uv_chan(s->u), call->req, body, NULL, 0);
		/* A reply larger than one datagram (an unpaged ListDevices of many devices with
		 * long names, paths and faults: a client from before paging) is the protocol's
		 * limit, not the peer's fault: it gets an error it can read, and keeps its
		 * session. */
		if (r == -EMSGSIZE) {
			char msg[200];

			snprintf(
			    msg, sizeof(msg),
			    "the reply (%zu bytes) does not fit one control datagram (%u bytes); "
			    "ask for pages (ListDevices.max_devices) or each device's status",
			    protobuf_c_message_get_packed_size(body),
			    ipc_limits_default.max_datagram);
			brk_warn("control: pid %d uid %u: %s", (int)s->pid, (unsigned)s->uid, msg);
			ctl_send_error(s, call->req, -EMSGSIZE, msg);
			ctl_call_finish(call, false);
			return;
		}
		if (r < 0)
			ctl_send_failed(s, r);
	}
	ctl_call_finish(call, true);
}

size_t brk_ctl_reply_room(void)
{
	return ipc_limits_default.max_datagram - IPC_HDR_SIZE;
}

static void ctl_send_error(struct ctl_sess *s, const struct ipc_msg *req, int err, const char *msg)
{
	int r = ipc_chan_reply_error(ipc_uv_chan(s->u), req, err, "%s", msg);

	if (r < 0)
		ctl_send_failed(s, r);
}

void brk_ctl_call_error(struct brk_ctl_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
		va_end(ap);
	}
	if (!call->msg[0])
		snprintf(call->msg, sizeof(call->msg), "%s", strerror(-err));
	if (call->sess)
		ctl_send_error(call->sess, call->req, err, call->msg);
	ctl_call_finish(call, false);
}

void brk_ctl_call_set_message(struct brk_ctl_call *call, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(call->msg, sizeof(call->msg), fmt, ap);
	va_end(ap);
}

uid_t brk_ctl_call_uid(const struct brk_ctl_call *call)
{
	return call->sess ? call->sess->uid : (uid_t)-1;
}

/* ---- request handlers: shape checks, then the daemon ----------------------------------------- */

static int ctl_check_bdf(struct brk_ctl_call *call, const char *bdf)
{
	if (vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) < 0) {
		brk_ctl_call_set_message(call,
					 "bdf: '%.32s' is not a canonical PCI address "
					 "(dddd:bb:dd.f, lower-case hex)",
					 bdf ? bdf : "");
		return -EINVAL;
	}
	return 0;
}

static int ctl_add_device(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__AddDevice *req = (const Vb__Ctl__AddDevice *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	if (!req->vm || !brk_registry_valid_vm_name(req->vm)) {
		brk_ctl_call_set_message(call,
					 "vm: a VM name is 1..%d of [A-Za-z0-9._-], not "
					 "starting with '.' or '-'",
					 BRK_VM_NAME_MAX);
		return -EINVAL;
	}
	/* -1 is "no change" to chown and setresuid: it names nobody. */
	if (req->owner_uid == UINT32_MAX || req->owner_gid == UINT32_MAX) {
		brk_ctl_call_set_message(call, "owner_uid/owner_gid: 4294967295 is not an id");
		return -EINVAL;
	}
	return s->ctl->cfg.ops->add_device(s->ctl->cfg.ctx, req, call);
}

static int ctl_remove_device(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__RemoveDevice *req = (const Vb__Ctl__RemoveDevice *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	if (req->timeout_ms > 600000) {
		brk_ctl_call_set_message(call, "timeout_ms: %u is above 600000 (10 minutes)",
					 req->timeout_ms);
		return -EINVAL;
	}
	return s->ctl->cfg.ops->remove_device(s->ctl->cfg.ctx, req, call);
}

static int ctl_list_devices(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__ListDevices *req = (const Vb__Ctl__ListDevices *)call->req->body;

	/* The cursor is compared with BDFs as a string: only a canonical one orders like them. */
	if (req->after && req->after[0] && vb_bdf_parse(req->after, VB_BDF_STRICT, NULL) < 0) {
		brk_ctl_call_set_message(call,
					 "after: '%.32s' is not a canonical PCI address "
					 "(dddd:bb:dd.f, lower-case hex) nor empty",
					 req->after);
		return -EINVAL;
	}
	return s->ctl->cfg.ops->list_devices(s->ctl->cfg.ctx, req, call);
}

static int ctl_device_status(struct ctl_sess *s, struct brk_ctl_call *call)
{
	const Vb__Ctl__DeviceStatusRequest *req =
	    (const Vb__Ctl__DeviceStatusRequest *)call->req->body;
	int r = ctl_check_bdf(call, req->bdf);

	if (r < 0)
		return r;
	return s->ctl->cfg.ops->device_status(s->ctl->cfg.ctx, req->bdf, call);
}

static int ctl_subscribe(struct ctl_sess *s, struct brk_ctl_call *call)
{
	Vb__Empty empty = VB__EMPTY__INIT;

	s->state = CTL_SUBSCRIBED;
	brk_ctl_call_reply(call, &empty.base);
	return 0;
}

static void ctl_metrics_own(const struct brk_ctl *ctl, FILE *f);

static int ctl_metrics(struct ctl_sess *s, struct brk_ctl_call *call)
{
	Vb__Ctl__MetricsReply rep = VB__CTL__METRICS_REPLY__INIT;
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int r;

	if (!f)
		return -ENOMEM;
	r = s->ctl->cfg.ops->metrics(s->ctl->cfg.ctx, f);
	ctl_metrics_own(s->ctl, f);
	if (fclose(f) != 0)
		r = -ENOMEM;
	if (r < 0)
		return r;
	rep.text = text;
	brk_ctl_call_reply(call, &rep.base);
	return 0;
}

#define ADMITTED (CTL_ADMIN | CTL_SUBSCRIBED)

/* What a session may ask, and when. Anything not here (EVENT is broker -> peer only) ends the
 * session. A subscribed session may still make requests; it may not subscribe twice. */
static const struct ctl_handler ctl_table[] = {
    {{VB__CTL__TYPE__ADD_DEVICE, ADMITTED, "add_device"}, ctl_add_device},
    {{VB__CTL__TYPE__REMOVE_DEVICE, ADMITTED, "remove_device"}, ctl_remove_device},
    {{VB__CTL__TYPE__LIST_DEVICES, ADMITTED, "list_devices"}, ctl_list_devices},
    {{VB__CTL__TYPE__DEVICE_STATUS, ADMITTED, "device_status"}, ctl_device_status},
    {{VB__CTL__TYPE__SUBSCRIBE_EVENTS, CTL_ADMIN, "subscribe_events"}, ctl_subscribe},
    {{VB__CTL__TYPE__METRICS, ADMITTED, "metrics"}, ctl_metrics},
};

/* ---- sessions ---------------------------------------------------------------------------- */

static void ctl_refuse(struct ctl_sess *s, struct ipc_msg *m)
{
	const struct brk_ctl_cfg *cfg = &s->ctl->cfg;
	char msg[200];

	if (cfg->admin_gid_set)
		snprintf(msg, sizeof(msg),
			 "permission denied: uid %u gid %u is not the broker's admin (uid %u, or "
			 "gid %u as primary or supplementary group)",
			 (unsigned)s->uid, (unsigned)s->gid, (unsigned)cfg->admin_uid,
			 (unsigned)cfg->admin_gid);
	else
		snprintf(msg, sizeof(msg),
			 "permission denied: uid %u is not the broker's admin (uid %u)",
			 (unsigned)s->uid, (unsigned)cfg->admin_uid);
	ctl_send_error(s, m, -EPERM, msg);
	ipc_msg_free(m);
	ctl_sess_end(s, NULL);
}

/* A request that is unknown or not allowed now: answered with why, then the session ends. */
static void ctl_violation(struct ctl_sess *s, struct ipc_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ctl_violation(struct ctl_sess *s, struct ipc_msg *m, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->ctl->protocol_errors++;
	if (m->kind == IPC_KIND_REQUEST)
		ctl_send_error(s, m, -EPROTO, msg);
	ipc_msg_free(m);
	ctl_sess_end(s, msg);
}

static void ctl_dispatch(struct ctl_sess *s, struct ipc_msg *m)
{
	const struct ctl_handler *h;
	enum vb_req_check check;
	struct brk_ctl_call *call;
	int r;

	if (s->state == CTL_REFUSED)
		return ctl_refuse(s, m);
	if (m->kind != IPC_KIND_REQUEST)
		return ctl_violation(s, m, "message kind %d: only requests are accepted", m->kind);
	h = VB_REQ_LOOKUP(ctl_table, m->type, s->state, &check);
	if (check == VB_REQ_UNKNOWN)
		return ctl_violation(s, m, "unknown request type %u", m->type);
	if (check == VB_REQ_NOT_NOW)
		return ctl_violation(s, m, "%s not allowed now%s", h->req.name,
				     s->state == CTL_SUBSCRIBED ? " (already subscribed)" : "");
	if (s->inflight >= BRK_CTL_MAX_INFLIGHT) {
		ctl_send_error(s, m, -EBUSY, "too many requests in flight on this connection");
		ipc_msg_free(m);
		return;
	}
	call = calloc(1, sizeof(*call));
	if (!call) {
		ctl_send_error(s, m, -ENOMEM, "out of memory");
		ipc_msg_free(m);
		return;
	}
	call->ctl = s->ctl;
	call->sess = s;
	call->req = m;
	call->type = m->type;
	call->start_ns = uv_hrtime();
	call->next = s->calls;
	if (s->calls)
		s->calls->pprev = &call->next;
	call->pprev = &s->calls;
	s->calls = call;
	s->inflight++;
	s->ctl->ncalls++;
	r = h->fn(s, call);
	if (r < 0)
		brk_ctl_call_error(call, r, NULL);
}

static void ctl_on_msg(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct ctl_sess *s = data;

	if (!m) {
		/* -EPIPE is a peer that hung up; anything else broke the protocol (the channel has
		 * answered a malformed request already). */
		if (err != -EPIPE && err != -ECONNRESET)
			s->ctl->protocol_errors++;
		ctl_sess_end(s, err == -EPIPE || err == -ECONNRESET ? NULL : strerror(-err));
		return;
	}
	ctl_dispatch(s, m);
}

static void ctl_sess_handle_closed(struct ctl_sess *s)
{
	struct brk_ctl *ctl = s->ctl;

	if (--s->open_handles > 0)
		return;
	free(s);
	ctl->nsess_alloc--;
	ctl_maybe_free(ctl);
}

static void ctl_uv_closed(void *data)
{
	ctl_sess_handle_closed(data);
}

static void ctl_timer_closed(uv_handle_t *h)
{
	ctl_sess_handle_closed(h->data);
}

static void ctl_sess_end(struct ctl_sess *s, const char *why)
{
	struct ctl_sess **pp;

	if (s->ending)
		return;
	s->ending = true;
	if (why)
		brk_info("control: ending session of pid %d uid %u: %s", (int)s->pid,
			 (unsigned)s->uid, why);
	/* Calls in progress finish without a peer. */
	for (struct brk_ctl_call *c = s->calls; c; c = c->next)
		c->sess = NULL;
	s->calls = NULL;
	s->inflight = 0;
	for (pp = &s->ctl->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	s->ctl->nsessions--;
	if (s->state == CTL_REFUSED)
		s->ctl->nrefused--;
	uv_close((uv_handle_t *)&s->linger, ctl_timer_closed);
	ipc_uv_close(s->u, ctl_uv_closed);
}

static void ctl_linger_expired(uv_timer_t *t)
{
	ctl_sess_end(t->data, "refused peer sent nothing");
}

/* The admin uid, or the admin gid as the peer's primary or one of its supplementary groups (an
 * orchestrator added with `usermod -aG`). */
static bool ctl_is_admin(const struct brk_ctl_cfg *cfg, int fd, pid_t pid, uid_t uid, gid_t gid)
{
	int r;

	if (uid == cfg->admin_uid || (cfg->admin_gid_set && gid == cfg->admin_gid))
		return true;
	if (!cfg->admin_gid_set)
		return false;
	r = ipc_peer_in_group(fd, cfg->admin_gid);
	if (r < 0)
		brk_log_errno(LOG_WARNING, r, "control: pid %d uid %u: cannot read its groups",
			      (int)pid, (unsigned)uid);
	return r > 0;
}

/* The refused peer that has waited longest (sessions are listed newest first). */
static struct ctl_sess *ctl_oldest_refused(struct brk_ctl *ctl)
{
	struct ctl_sess *oldest = NULL;

	for (struct ctl_sess *s = ctl->sessions; s; s = s->next)
		if (s->state == CTL_REFUSED)
			oldest = s;
	return oldest;
}

/* Admins get BRK_CTL_MAX_SESSIONS slots; refused peers BRK_CTL_MAX_REFUSED others, the oldest
 * making room for the newest: no number of peers that are not the admin can lock it out. */
static bool ctl_admit_room(struct brk_ctl *ctl, bool admin, pid_t pid, uid_t uid)
{
	if (!admin) {
		if (ctl->nrefused >= BRK_CTL_MAX_REFUSED) {
			ctl->refused_dropped++;
			ctl_sess_end(ctl_oldest_refused(ctl), NULL);
		}
		return true;
	}
	if (ctl->nsessions - ctl->nrefused < BRK_CTL_MAX_SESSIONS)
		return true;
	ctl->rejected_full++;
	brk_warn("control: %d admin sessions open: closing a new one from pid %d uid %u",
		 BRK_CTL_MAX_SESSIONS, (int)pid, (unsigned)uid);
	return false;
}

static int ctl_sess_start(struct brk_ctl *ctl, int fd)
{
	_cleanup_(ipc_chan_freep) struct ipc_chan *chan = NULL;
	_cleanup_free_ struct ctl_sess *s = NULL;
	bool admin;
	int r;

	r = ipc_chan_new(fd, &ipc_proto_control, NULL, &chan);
	if (r < 0) {
		close(fd);
		return r;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctl = ctl;
	r = ipc_chan_peer(chan, &s->pid, &s->uid, &s->gid);
	admin = r == 0 && ctl_is_admin(&ctl->cfg, fd, s->pid, s->uid, s->gid);
	if (r == 0 && !ctl_admit_room(ctl, admin, s->pid, s->uid))
		r = -EUSERS;
	if (r < 0 || (r = ipc_uv_start(ctl->loop, chan, ctl_on_msg, s, &s->u)) < 0)
		return r == -EUSERS ? 0 : r;
	(void)TAKE_PTR(chan); /* the session's ipc_uv has it */
	uv_timer_init(ctl->loop, &s->linger);
	s->linger.data = s;
	s->open_handles = 2;
	s->state = admin ? CTL_ADMIN : CTL_REFUSED;
	if (s->state == CTL_REFUSED) {
		ctl->refused++;
		ctl->nrefused++;
		brk_warn("control: refusing pid %d uid %u gid %u: not the admin", (int)s->pid,
			 (unsigned)s->uid, (unsigned)s->gid);
		uv_timer_start(&s->linger, ctl_linger_expired, CTL_REFUSED_LINGER_MS, 0);
	}
	s->next = ctl->sessions;
	ctl->sessions = TAKE_PTR(s);
	ctl->nsessions++;
	ctl->nsess_alloc++;
	return 0;
}

static void ctl_on_listen(uv_poll_t *h, int status, int events)
{
	struct brk_ctl *ctl = h->data;
	int fd, r;

	if (status < 0) {
		brk_warn("control: listening socket: %s", uv_strerror(status));
		return;
	}
	for (;;) {
		r = ipc_accept(ctl->listen_fd, &fd);
		if (r == -EAGAIN || r == -EWOULDBLOCK || r == -EINTR || r == -ECONNABORTED)
			return;
		if (r < 0) {
			/* EMFILE and friends: say so, and try again on the next wakeup. */
			brk_log_errno(LOG_WARNING, r, "control: accept");
			return;
		}
		r = ctl_sess_start(ctl, fd);
		if (r < 0)
			brk_log_errno(LOG_WARNING, r, "control: cannot start a session");
	}
}

/* ---- the server ---------------------------------------------------------------------------- */

int brk_ctl_new(uv_loop_t *loop, int listen_fd, const struct brk_ctl_cfg *cfg, struct brk_ctl **ret)
{
	struct brk_ctl *ctl;
	int fl, r;

	if (!cfg->ops || !cfg->ops->add_device || !cfg->ops->remove_device ||
	    !cfg->ops->list_devices || !cfg->ops->device_status || !cfg->ops->metrics)
		return -EINVAL;
	fl = fcntl(listen_fd, F_GETFL);
	if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->loop = loop;
	ctl->listen_fd = listen_fd;
	ctl->cfg = *cfg;
	r = uv_poll_init(loop, &ctl->listen, listen_fd);
	if (r < 0) {
		free(ctl);
		return r;
	}
	ctl->listen.data = ctl;
	r = uv_poll_start(&ctl->listen, UV_READABLE, ctl_on_listen);
	if (r < 0) {
		/* The handle is initialised: it must be closed, and freed only after that. */
		ctl->freeing = true;
		uv_close((uv_handle_t *)&ctl->listen, ctl_listen_closed);
		return r;
	}
	*ret = ctl;
	return 0;
}

static void ctl_maybe_free(struct brk_ctl *ctl)
{
	if (ctl->freeing && ctl->listen_closed && !ctl->nsess_alloc && !ctl->ncalls)
		free(ctl);
}

static void ctl_listen_closed(uv_handle_t *h)
{
	struct brk_ctl *ctl = h->data;

	ctl->listen_closed = true;
	ctl_maybe_free(ctl);
}

static void ctl_drain_stop(struct brk_ctl *ctl);

void brk_ctl_free(struct brk_ctl *ctl)
{
	if (!ctl || ctl->freeing)
		return;
	ctl_drain_stop(ctl);
	ctl->freeing = true;
	while (ctl->sessions)
		ctl_sess_end(ctl->sessions, NULL);
	uv_close((uv_handle_t *)&ctl->listen, ctl_listen_closed);
	close(ctl->listen_fd);
}

/* ---- a re-exec: the sessions handed over ---------------------------------------------------- */

/* A session with nothing in flight: no call of it unanswered, no reply waiting to be sent. */
static bool ctl_sess_idle(const struct ctl_sess *s)
{
	return !s->inflight && !ipc_chan_out_pending(ipc_uv_chan(s->u));
}

static void ctl_drain_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void ctl_drain_stop(struct brk_ctl *ctl)
{
	if (!ctl->drain.timer)
		return;
	uv_close((uv_handle_t *)ctl->drain.timer, ctl_drain_timer_closed);
	ctl->drain.timer = NULL;
}

static void ctl_drain_check(uv_timer_t *t)
{
	struct brk_ctl *ctl = t->data;
	bool over = uv_now(ctl->loop) >= ctl->drain.deadline_ms;
	struct ctl_sess *s, *next;
	unsigned dropped = 0;

	for (s = ctl->sessions; s; s = s->next)
		if (!ctl_sess_idle(s) && !over)
			return;
	for (s = ctl->sessions; s; s = next) {
		next = s->next;
		if (ctl_sess_idle(s))
			continue;
		dropped++;
		ctl_sess_end(s, s->inflight ? "its request did not finish before the re-exec"
					    : "it did not read its reply before the re-exec");
	}
	ctl_drain_stop(ctl);
	ctl->drain.done(ctl->drain.data, dropped);
}

int brk_ctl_drain(struct brk_ctl *ctl, unsigned bound_ms,
		  void (*done)(void *data, unsigned dropped), void *data)
{
	uv_timer_t *t;

	if (ctl->drain.timer || ctl->freeing)
		return -EBUSY;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	uv_timer_init(ctl->loop, t);
	t->data = ctl;
	ctl->drain.timer = t;
	ctl->drain.deadline_ms = uv_now(ctl->loop) + bound_ms;
	ctl->drain.done = done;
	ctl->drain.data = data;
	uv_poll_stop(&ctl->listen);
	for (struct ctl_sess *s = ctl->sessions; s; s = s->next)
		ipc_uv_pause(s->u, true);
	/* Checked from the loop, never from here: done() may exec. A poll, because a reply
	 * leaves the send queue without telling anyone; cheap, and only during a re-exec. */
	uv_timer_start(t, ctl_drain_check, 0, 10);
	return 0;
}

static void ctl_handover_name(char *buf, size_t len, const struct ctl_sess *s, unsigned i)
{
	snprintf(buf, len, "ctl.%s.%u", s->state == CTL_SUBSCRIBED ? "sub" : "sess", i);
}

int brk_ctl_handover(struct brk_ctl *ctl, struct brk_fdstore *store)
{
	char name[32];
	unsigned i = 0;
	int r;

	for (struct ctl_sess *s = ctl->sessions; s; s = s->next, i++) {
		ctl_handover_name(name, sizeof(name), s, i);
		r = brk_fdstore_put_local(store, name, ipc_chan_fd(ipc_uv_chan(s->u)));
		if (r < 0) {
			brk_ctl_resume(ctl, store);
			return r;
		}
	}
	return (int)i;
}

void brk_ctl_resume(struct brk_ctl *ctl, struct brk_fdstore *store)
{
	char name[32];
	unsigned i = 0;

	ctl_drain_stop(ctl);
	for (struct ctl_sess *s = ctl->sessions; s; s = s->next, i++) {
		ctl_handover_name(name, sizeof(name), s, i);
		if (store)
			(void)brk_fdstore_remove(store, name);
		ipc_uv_pause(s->u, false);
	}
	if (!ctl->freeing)
		(void)uv_poll_start(&ctl->listen, UV_READABLE, ctl_on_listen);
}

int brk_ctl_adopt(struct brk_ctl *ctl, const char *name, int fd)
{
	bool sub = strncmp(name, "ctl.sub.", 8) == 0;
	int r;

	if (!sub && strncmp(name, "ctl.sess.", 9) != 0) {
		close(fd);
		return -EINVAL;
	}
	r = ctl_sess_start(ctl, fd);
	if (r < 0)
		return r;
	/* Its subscription goes on (the events of the exec's own instant are not sent). */
	if (sub && ctl->sessions && ipc_chan_fd(ipc_uv_chan(ctl->sessions->u)) == fd &&
	    ctl->sessions->state == CTL_ADMIN)
		ctl->sessions->state = CTL_SUBSCRIBED;
	return 0;
}

uint32_t brk_ctl_sessions(const struct brk_ctl *ctl)
{
	return ctl->nsessions;
}

void brk_ctl_event(struct brk_ctl *ctl, Vb__Ctl__EventKind kind, const char *bdf, const char *vm,
		   const char *fmt, ...)
{
	Vb__Ctl__Event ev = VB__CTL__EVENT__INIT;
	struct ctl_sess *s, *next;
	struct timespec ts;
	char detail[256];
	va_list ap;

	if (!ctl || ctl->freeing)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	ev.kind = kind;
	ev.bdf = (char *)(bdf ? bdf : "");
	ev.vm = (char *)(vm ? vm : "");
	ev.detail = detail;
	ev.timestamp_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	for (s = ctl->sessions; s; s = next) {
		next = s->next;
		if (s->state != CTL_SUBSCRIBED)
			continue;
		if (ipc_chan_event(ipc_uv_chan(s->u), VB__CTL__TYPE__EVENT, &ev.base, NULL, 0) <
		    0) {
			ctl->subscribers_dropped++;
			ctl_sess_end(s, "subscriber does not keep up with events (send queue over "
					"budget)");
			continue;
		}
		ctl->events_sent++;
	}
}

static void ctl_metrics_own(const struct brk_ctl *ctl, FILE *f)
{
	brk_req_stats_print(f, "control", "Control", ctl_table, ARRAY_SIZE(ctl_table),
			    sizeof(ctl_table[0]), ctl->stats);
	brk_metric_header(f, "vfio_broker_control_sessions", "gauge", "Control connections open.");
	fprintf(f, "vfio_broker_control_sessions %u\n", ctl->nsessions);
	brk_metric_header(f, "vfio_broker_control_refused_total", "counter",
			  "Control connections refused: not the admin uid/gid.");
	fprintf(f, "vfio_broker_control_refused_total %llu\n", (unsigned long long)ctl->refused);
	brk_metric_header(f, "vfio_broker_control_refused_dropped_total", "counter",
			  "Refused connections closed unanswered to make room for newer ones.");
	fprintf(f, "vfio_broker_control_refused_dropped_total %llu\n",
		(unsigned long long)ctl->refused_dropped);
	brk_metric_header(f, "vfio_broker_control_rejected_full_total", "counter",
			  "Admin connections closed: every admin session slot was taken.");
	fprintf(f, "vfio_broker_control_rejected_full_total %llu\n",
		(unsigned long long)ctl->rejected_full);
	brk_metric_header(f, "vfio_broker_control_send_overflows_total", "counter",
			  "Control peers disconnected for not reading what they were sent.");
	fprintf(f, "vfio_broker_control_send_overflows_total %llu\n",
		(unsigned long long)ctl->send_overflows);
	brk_metric_header(
	    f, "vfio_broker_control_protocol_errors_total", "counter",
	    "Control sessions ended for unknown, malformed or out-of-order requests.");
	fprintf(f, "vfio_broker_control_protocol_errors_total %llu\n",
		(unsigned long long)ctl->protocol_errors);
	brk_metric_header(f, "vfio_broker_events_sent_total", "counter",
			  "Events sent to subscribers.");
	fprintf(f, "vfio_broker_events_sent_total %llu\n", (unsigned long long)ctl->events_sent);
}
