/*
 * server: the worker's VMM protocol (proto/device.proto) on the shared serve path
 * (vmm_serve.c: listening, admission, settling, teardown, removal timer): the session's
 * channel, its send queue and bounded serving, refused connections' error replies, events.
 * Requests themselves are answered in server_req.c.
 *
 * Owns: the session's and refused connections' channels. Trusts the backend and the device; a
 * VMM is trusted with nothing: vmm_serve.c has the backend judge it at accept, and its leaving
 * (cleanly or not) always ends in wkr_serve_end().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "device.pb-c.h"
#include "ipc_uv.h"
#include "ipc_ring.h"
#include "server_internal.h"

int wkr__server_event(struct wkr_server *s, uint32_t kind, uint16_t command, uint32_t timeout_ms)
{
	Vb__Dev__Event ev = VB__DEV__EVENT__INIT;
	Vb__Dev__BarState bars[VFIO_PCI_ROM_REGION_INDEX + 1];
	Vb__Dev__BarState *pbars[VFIO_PCI_ROM_REGION_INDEX + 1];
	struct wkr_session *v = wkr__server_session(s);
	int r;

	if (!v || !s->hello_done)
		return -ENOTCONN;
	ev.kind = kind;
	ev.command = command;
	ev.timeout_ms = timeout_ms;
	if (kind == VB__DEV__EVENT_KIND__EVENT_BARS_CHANGED ||
	    kind == VB__DEV__EVENT_KIND__EVENT_RESET) {
		for (uint32_t i = 0; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
			uint64_t addr;
			bool en;

			if (wkr_bar_state(s->cfg.dev, i, &addr, &en) < 0)
				continue;
			vb__dev__bar_state__init(&bars[ev.n_bars]);
			bars[ev.n_bars].index = i;
			bars[ev.n_bars].address = addr;
			bars[ev.n_bars].enabled = en;
			pbars[ev.n_bars] = &bars[ev.n_bars];
			ev.n_bars++;
		}
		ev.bars = pbars;
	}
	r = ipc_chan_event(v->chan, VB__DEV__TYPE__EVENT, &ev.base, NULL, 0);
	wkr__server_sent(s, r);
	return r;
}

void wkr_server_bars_changed(void *server, uint16_t command)
{
	struct wkr_server *s = server;

	/* A VMM that cannot take the event has gone or will see its hangup soon. */
	(void)wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_BARS_CHANGED, command, 0);
}

int wkr_server_removal(struct wkr_server *s, uint32_t timeout_ms,
		       void (*done)(void *data, bool acked), void *data)
{
	return wkr_serve_removal(s->sv, timeout_ms, done, data);
}

/* Asks the VMM to let go; -ENOTCONN before its HELLO (it could not understand the event). */
static int ask_removal(void *proto, uint32_t timeout_ms)
{
	struct wkr_server *s = proto;

	return wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_REMOVAL_REQUESTED,
				 wkr_cfg_command(s->cfg.dev), timeout_ms);
}

bool wkr_server_connected(const struct wkr_server *s)
{
	return s && s->sv->vmm != NULL;
}

void wkr_server_hold(struct wkr_server *s, bool held)
{
	if (s)
		wkr_serve_hold(s->sv, held);
}

bool wkr_server_busy(const struct wkr_server *s)
{
	return s && wkr_serve_busy(s->sv);
}

uint64_t wkr_server_requests(const struct wkr_server *s)
{
	return s ? s->sv->requests : 0;
}

static int session_open(void *proto, int fd, struct wkr_serve_session **ret)
{
	struct wkr_server *s = proto;
	_cleanup_free_ struct wkr_session *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	r = ipc_chan_new(fd, &ipc_proto_device, &s->limits, &v->chan);
	if (r < 0)
		return r;
	v->s = s;
	s->hello_done = false;
	*ret = &TAKE_PTR(v)->base;
	return 0;
}

static void session_free(struct wkr_serve_session *base)
{
	struct wkr_session *v = container_of(base, struct wkr_session, base);

	/* A ring's request is the ring's (its slot copy), never a datagram to free. */
	if (!wkr_ring_owns(v->ring, v->waiting))
		ipc_msg_free(v->waiting);
	wkr_ring_free(v->ring);
	ipc_chan_free(v->chan);
	free(v);
}

/* Ends the session of a VMM whose replies could not be sent or queued, or waits for
 * writability exactly while replies are queued. Not while a handler runs: it holds the session. */
static void session_check(struct wkr_server *s)
{
	struct wkr_session *v = wkr__server_session(s);

	if (!v || v->base.ended || s->dispatching)
		return;
	if (v->send_err) {
		if (v->send_err != -EPIPE && v->send_err != -ECONNRESET && s->cfg.dropped) {
			char why[128];

			snprintf(why, sizeof(why),
				 "disconnected: it does not read its replies (%s)",
				 v->send_err == -EOVERFLOW ? "send queue over budget"
							   : strerror(-v->send_err));
			s->cfg.dropped(s->sv->vmm_pid, s->sv->vmm_uid, why);
		}
		wkr_serve_end(s->sv);
		return;
	}
	if (!wkr_serve_watch(&v->base, ipc_chan_out_pending(v->chan)))
		wkr_serve_end(s->sv);
}

void wkr__server_sent(struct wkr_server *s, int r)
{
	struct wkr_session *v = wkr__server_session(s);

	if (r < 0 && v && !v->send_err)
		v->send_err = r;
	session_check(s);
}

/* A request the ring copied out of its page: the same dispatch as a datagram's. The ring is its
 * session's: once that session has ended (its VMM left, perhaps another is already connected)
 * nothing from its page is served, and the ring goes with the session. While a request of the
 * session waits for the backend, the ring's waits too (false), and is kicked once it may go. */
static bool ring_dispatch(void *data, struct ipc_msg *m)
{
	struct wkr_session *v = data;
	struct wkr_server *s = v->s;

	if (v->base.ended || wkr__server_session(s) != v)
		return true; /* dropped: its VMM has gone, the ring goes with it */
	if (v->waiting || v->base.held)
		return false;
	s->sv->requests++;
	s->dispatching = true;
	wkr__server_dispatch(s, m);
	s->dispatching = false;
	session_check(s);
	return true;
}

void wkr__server_msg_done(struct wkr_server *s, struct ipc_msg *m)
{
	struct wkr_session *v = wkr__server_session(s);

	if (!v || !wkr_ring_owns(v->ring, m))
		ipc_msg_free(m);
}

bool wkr__server_ring_reply(struct wkr_server *s, const struct ipc_msg *m,
			    const ProtobufCMessage *body, int err, const char *msg)
{
	struct wkr_session *v = wkr__server_session(s);
	const Vb__Dev__Data *d = NULL;

	if (!v || !wkr_ring_owns(v->ring, m))
		return false;
	if (err < 0) {
		wkr_ring_answer(v->ring, err, NULL, 0, msg);
		return true;
	}
	if (body && body->descriptor == &vb__dev__data__descriptor)
		d = (const Vb__Dev__Data *)body;
	wkr_ring_answer(v->ring, 0, d ? d->data.data : NULL, d ? d->data.len : 0, NULL);
	return true;
}

int wkr__server_ring_open(struct wkr_server *s, struct ipc_msg *m, uint32_t layout,
			  struct vb_err *err)
{
	struct wkr_session *v = wkr__server_session(s);

	if (s->cfg.no_ring)
		return vb_errf(err, -EOPNOTSUPP,
			       "this worker takes no rings (--no-ring): every access goes over the "
			       "socket");
	if (m->nfds != 2)
		return vb_errf(err, -EINVAL,
			       "a ring offer carries 2 fds (the memfd and the doorbell eventfd), "
			       "not %zu",
			       m->nfds);
	if (layout != VB_RING_LAYOUT)
		return vb_errf(err, -EPROTONOSUPPORT, "ring layout %u; this worker knows layout %d",
			       layout, VB_RING_LAYOUT);
	if (!v || v->ring)
		return vb_errf(err, -EALREADY, "this session has its ring");
	return wkr_ring_new(s->cfg.loop, ipc_msg_take_fd(m, 0), ipc_msg_take_fd(m, 1),
			    ring_dispatch, v, &v->ring, err);
}

/* Serves up to `max` messages of the session: 1 when it served that many, 0 when none was
 * left or a reply waits for the backend, -1 once the session has ended. */
static int session_serve(struct wkr_server *s, unsigned max)
{
	struct wkr_session *v = wkr__server_session(s);

	for (unsigned i = 0; i < max && !v->base.ended; i++) {
		struct ipc_msg *m;
		int r;

		if (!wkr_serve_reading(&v->base))
			return 0;
		r = ipc_chan_recv(v->chan, &m);
		if (r == -EAGAIN)
			return v->base.ended ? -1 : 0;
		if (r == -EPIPE || r == -ECONNRESET) {
			wkr_serve_end(s->sv);
			return -1;
		}
		if (r < 0)
			continue; /* malformed: ipc answered a readable request already */
		if (m->kind == IPC_KIND_REQUEST) {
			s->sv->requests++;
			s->dispatching = true;
			wkr__server_dispatch(s, m);
			s->dispatching = false;
		} else {
			/* The worker sends the VMM no requests: replies and events mean nothing. */
			ipc_msg_free(m);
		}
		session_check(s);
	}
	return v->base.ended ? -1 : 1;
}

static void session_ready(struct wkr_serve_session *base, int events)
{
	struct wkr_session *v = container_of(base, struct wkr_session, base);
	struct wkr_server *s = v->s;

	if ((events & UV_WRITABLE) && ipc_chan_flush(v->chan) < 0) {
		wkr_serve_end(s->sv); /* the VMM is gone */
		return;
	}
	/* One request per wakeup. The poll is level-triggered, so a VMM that sent more wakes the
	 * loop again at once, and the broker channel and interrupts get their turn in between.
	 * Reading on until -EAGAIN would cost a VMM that waits for each answer (every trapped
	 * access) one more recvmsg per request than the request itself. */
	if (session_serve(s, 1) >= 0)
		session_check(s);
}

/* The VMM can send no more: what is left is bounded by its socket buffer. */
static void session_drain(struct wkr_serve_session *base)
{
	struct wkr_session *v = container_of(base, struct wkr_session, base);

	while (session_serve(v->s, 64) > 0)
		;
}

static void refusal_closed(void *data)
{
	free(data);
}

static void refusal_drop(struct wkr_refusal *f)
{
	for (int i = 0; i < WKR_REFUSE_MAX; i++)
		if (f->s->refusals[i] == f)
			f->s->refusals[i] = NULL;
	ipc_uv_close(f->u, refusal_closed);
}

static void on_refused(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct wkr_refusal *f = data;

	if (m && m->kind == IPC_KIND_REQUEST)
		(void)ipc_chan_reply_error(
		    ipc_uv_chan(u), m, f->err, "%s",
		    f->err == -EBUSY	   ? "the device is in use by another VMM"
		    : f->err == -ETIMEDOUT ? "the broker did not answer (it may be restarting); "
					     "retry"
					   : "this uid may not use the device");
	ipc_msg_free(m);
	refusal_drop(f);
}

/* Answers the connection's first request with `err`, then closes it. At most WKR_REFUSE_MAX
 * wait at once; the oldest is dropped unanswered to make room. */
static void refuse(void *proto, int fd, int err)
{
	struct wkr_server *s = proto;
	struct wkr_refusal *f;
	struct ipc_chan *chan;
	int slot = 0;

	if (ipc_chan_new(fd, &ipc_proto_device, &s->limits, &chan) < 0) {
		close(fd);
		return;
	}
	for (int i = 0; i < WKR_REFUSE_MAX; i++)
		if (!s->refusals[i]) {
			slot = i;
			break;
		}
	if (s->refusals[slot])
		refusal_drop(s->refusals[slot]);
	f = calloc(1, sizeof(*f));
	if (!f || ipc_uv_start(s->cfg.loop, chan, on_refused, f, &f->u) < 0) {
		free(f);
		ipc_chan_free(chan);
		return;
	}
	f->s = s;
	f->err = err;
	s->refusals[slot] = f;
}

/* A hold of the server ended: a ring request it held back goes now. */
static void session_resumed(struct wkr_serve_session *b)
{
	struct wkr_session *v = container_of(b, struct wkr_session, base);

	if (!v->waiting)
		wkr_ring_kick(v->ring);
}

static const struct wkr_serve_ops serve_ops = {
    .open = session_open,
    .free = session_free,
    .serve = session_ready,
    .drain = session_drain,
    .refuse = refuse,
    .ask_removal = ask_removal,
    .resumed = session_resumed,
};

int wkr_server_new(const struct wkr_server_cfg *cfg, struct wkr_server **ret)
{
	struct wkr_serve_cfg sc = {
	    .loop = cfg->loop,
	    .listen_fd = cfg->listen_fd,
	    .sock_type = SOCK_SEQPACKET,
	    .dev = cfg->dev,
	    .backend = cfg->backend,
	    .owner_uid = cfg->owner_uid,
	    .service_irqs = !cfg->irqs_elsewhere,
	    .irq_mode = WKR_IRQ_EMULATED,
	    .busy = cfg->busy,
	    .busy_data = cfg->busy_data,
	    .ops = &serve_ops,
	    .release = free,
	};
	_cleanup_free_ struct wkr_server *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->limits = ipc_limits_default;
	sc.proto = s;
	r = wkr_serve_new(&sc, &s->sv);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

void wkr_server_close(struct wkr_server *s, void (*closed)(void *data), void *data)
{
	if (!s || s->sv->closing)
		return;
	for (int i = 0; i < WKR_REFUSE_MAX; i++)
		if (s->refusals[i])
			refusal_drop(s->refusals[i]);
	wkr_serve_close(s->sv, closed, data);
}
