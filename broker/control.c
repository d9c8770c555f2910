/*
 * control: the control socket server's sessions. Responsible for admission (SO_PEERCRED and
 * SO_PEERGROUPS against the admin uid/gid, read once when the connection is accepted; refused
 * peers get a small budget of their own, so they never take a slot an admin needs), for each
 * session's framing and lifetime (a peer that hangs up or breaks the protocol loses its
 * session; its calls finish without it), for bounding sessions, and for sending events to
 * subscribers without ever waiting on one. What a session asks is control_req.c's (the request
 * table), a re-exec's drain and handover control_handover.c's. Trusts nothing a peer sends;
 * trusts the kernel's credentials of the connection.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "control_priv.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "log.h"
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

static void ctl_listen_closed(uv_handle_t *h);

/* ---- sessions ---------------------------------------------------------------------------- */

static void ctl_on_msg(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct ctl_sess *s = data;

	if (!m) {
		/* -EPIPE is a peer that hung up; anything else broke the protocol (the channel has
		 * answered a malformed request already). */
		if (err != -EPIPE && err != -ECONNRESET)
			s->ctl->protocol_errors++;
		brk_ctl__sess_end(s, err == -EPIPE || err == -ECONNRESET ? NULL : strerror(-err));
		return;
	}
	brk_ctl__dispatch(s, m);
}

static void ctl_sess_handle_closed(struct ctl_sess *s)
{
	struct brk_ctl *ctl = s->ctl;

	if (--s->open_handles > 0)
		return;
	free(s);
	ctl->nsess_alloc--;
	brk_ctl__maybe_free(ctl);
}

static void ctl_uv_closed(void *data)
{
	ctl_sess_handle_closed(data);
}

static void ctl_timer_closed(uv_handle_t *h)
{
	ctl_sess_handle_closed(h->data);
}

void brk_ctl__sess_end(struct ctl_sess *s, const char *why)
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
	brk_ctl__sess_end(t->data, "refused peer sent nothing");
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
			brk_ctl__sess_end(ctl_oldest_refused(ctl), NULL);
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

int brk_ctl__sess_start(struct brk_ctl *ctl, int fd)
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

void brk_ctl__on_listen(uv_poll_t *h, int status, int events)
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
		r = brk_ctl__sess_start(ctl, fd);
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
	r = uv_poll_start(&ctl->listen, UV_READABLE, brk_ctl__on_listen);
	if (r < 0) {
		/* The handle is initialised: it must be closed, and freed only after that. */
		ctl->freeing = true;
		uv_close((uv_handle_t *)&ctl->listen, ctl_listen_closed);
		return r;
	}
	*ret = ctl;
	return 0;
}

void brk_ctl__maybe_free(struct brk_ctl *ctl)
{
	if (ctl->freeing && ctl->listen_closed && !ctl->nsess_alloc && !ctl->ncalls)
		free(ctl);
}

static void ctl_listen_closed(uv_handle_t *h)
{
	struct brk_ctl *ctl = h->data;

	ctl->listen_closed = true;
	brk_ctl__maybe_free(ctl);
}

void brk_ctl_free(struct brk_ctl *ctl)
{
	if (!ctl || ctl->freeing)
		return;
	brk_ctl__drain_stop(ctl);
	ctl->freeing = true;
	while (ctl->sessions)
		brk_ctl__sess_end(ctl->sessions, NULL);
	uv_close((uv_handle_t *)&ctl->listen, ctl_listen_closed);
	close(ctl->listen_fd);
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
			brk_ctl__sess_end(
			    s, "subscriber does not keep up with events (send queue over "
			       "budget)");
			continue;
		}
		ctl->events_sent++;
	}
}
