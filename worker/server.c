/*
 * server: connections, the VMM session, events and removal of the worker's VMM protocol.
 * Requests themselves are answered in server_req.c.
 *
 * Owns: the listening socket (non-blocking), the session's and refused connections' channels,
 * the poll handle on the device's worker-eventfd epoll, the removal timer. Trusts the backend
 * and the device; a VMM is trusted with nothing: its uid is checked at accept, and its leaving
 * (cleanly or not) always ends in the same teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.pb-c.h"
#include "ipc_uv.h"
#include "server_internal.h"

static void handle_closed(uv_handle_t *h)
{
	struct wkr_server *s = h->data;
	if (--s->open_handles > 0)
		return;
	/* libuv has let go of the poll handle: the fd may be closed now. */
	if (s->cfg.listen_fd >= 0)
		close(s->cfg.listen_fd);
	if (s->closed)
		s->closed(s->closed_data);
	free(s);
}

int wkr__server_event(struct wkr_server *s, uint32_t kind, uint16_t command, uint32_t timeout_ms)
{
	Vb__Dev__Event ev = VB__DEV__EVENT__INIT;
	Vb__Dev__BarState bars[VFIO_PCI_ROM_REGION_INDEX + 1];
	Vb__Dev__BarState *pbars[VFIO_PCI_ROM_REGION_INDEX + 1];
	if (!s->vmm || !s->hello_done)
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
	int r = ipc_chan_event(s->vmm->chan, VB__DEV__TYPE__EVENT, &ev.base, NULL, 0);
	wkr__server_sent(s, r);
	return r;
}

void wkr_server_bars_changed(void *server, uint16_t command)
{
	struct wkr_server *s = server;
	/* A VMM that cannot take the event has gone or will see its hangup soon. */
	(void)wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_BARS_CHANGED, command, 0);
}

void wkr__server_removal_finish(struct wkr_server *s, bool acked)
{
	if (!s->removal_pending)
		return;
	s->removal_pending = false;
	uv_timer_stop(&s->removal_timer);
	s->removal_done(s->removal_data, acked);
}

static void on_removal_timeout(uv_timer_t *t)
{
	wkr__server_removal_finish(t->data, false);
}

int wkr_server_removal(struct wkr_server *s, uint32_t timeout_ms,
		       void (*done)(void *data, bool acked), void *data)
{
	if (s->removal_pending)
		return -EBUSY;
	if (!s->vmm || !s->hello_done) {
		done(data, false);
		return 0;
	}
	s->removal_pending = true;
	s->removal_done = done;
	s->removal_data = data;
	int r = wkr__server_event(s, VB__DEV__EVENT_KIND__EVENT_REMOVAL_REQUESTED,
				  wkr_cfg_command(s->cfg.dev), timeout_ms);
	if (r == 0)
		r = uv_timer_start(&s->removal_timer, on_removal_timeout, timeout_ms, 0);
	if (r < 0)
		wkr__server_removal_finish(s, false);
	return 0;
}

bool wkr_server_connected(const struct wkr_server *s)
{
	return s && s->vmm != NULL;
}

uint64_t wkr_server_requests(const struct wkr_server *s)
{
	return s ? s->requests : 0;
}

static void session_closed(uv_handle_t *h)
{
	struct wkr_session *v = h->data;
	if (v->chan)
		ipc_chan_free(v->chan);
	free(v);
}

/* The VMM left: everything it set up goes. */
static void session_end(struct wkr_server *s)
{
	struct wkr_session *v = s->vmm;
	v->ended = true;
	uv_close((uv_handle_t *)&v->poll, session_closed);
	s->vmm = NULL;
	s->hello_done = false;
	/* The next VMM gets a grant of its own; this one keeps the copies it was sent. */
	if (s->grant_fd >= 0)
		close(s->grant_fd);
	s->grant_fd = -1;
	if (s->closing)
		return;
	(void)wkr_irq_release(s->cfg.dev);
	(void)s->cfg.backend.ops->dma_unmap_all(s->cfg.backend.ctx);
	s->cfg.backend.ops->vmm_state(s->cfg.backend.ctx, false, s->vmm_pid, s->vmm_uid);
	wkr__server_removal_finish(s, false);
}

static void on_session(uv_poll_t *h, int status, int events);

/* Ends the session of a VMM whose replies could not be sent or queued, or waits for
 * writability exactly while replies are queued. Not while a handler runs: it holds the session. */
static void session_check(struct wkr_server *s)
{
	struct wkr_session *v = s->vmm;
	if (!v || v->ended || s->dispatching)
		return;
	if (v->send_err) {
		if (v->send_err != -EPIPE && v->send_err != -ECONNRESET && s->cfg.dropped) {
			char why[128];
			snprintf(why, sizeof(why),
				 "disconnected: it does not read its replies (%s)",
				 v->send_err == -EOVERFLOW ? "send queue over budget"
							   : strerror(-v->send_err));
			s->cfg.dropped(s->vmm_pid, s->vmm_uid, why);
		}
		session_end(s);
		return;
	}
	bool want = ipc_chan_out_pending(v->chan);
	if (want == v->writing)
		return;
	if (uv_poll_start(&v->poll, UV_READABLE | UV_DISCONNECT | (want ? UV_WRITABLE : 0),
			  on_session) < 0) {
		session_end(s);
		return;
	}
	v->writing = want;
}

void wkr__server_sent(struct wkr_server *s, int r)
{
	if (r < 0 && s->vmm && !s->vmm->send_err)
		s->vmm->send_err = r;
	session_check(s);
}

/* Serves up to `max` messages of the session: 1 when it served that many, 0 when none was
 * left, -1 once the session has ended. */
static int session_serve(struct wkr_server *s, unsigned max)
{
	struct wkr_session *v = s->vmm;
	for (unsigned i = 0; i < max && !v->ended; i++) {
		struct ipc_msg *m;
		int r = ipc_chan_recv(v->chan, &m);
		if (r == -EAGAIN)
			return v->ended ? -1 : 0;
		if (r == -EPIPE || r == -ECONNRESET) {
			session_end(s);
			return -1;
		}
		if (r < 0)
			continue; /* malformed: ipc answered a readable request already */
		if (m->kind == IPC_KIND_REQUEST) {
			s->requests++;
			s->dispatching = true;
			wkr__server_dispatch(s, m);
			s->dispatching = false;
		}
		/* The worker sends the VMM no requests: replies and events from it mean nothing. */
		ipc_msg_free(m);
		session_check(s);
	}
	return v->ended ? -1 : 1;
}

static void on_session(uv_poll_t *h, int status, int events)
{
	struct wkr_session *v = h->data;
	struct wkr_server *s = v->s;
	if (v->ended)
		return;
	if (status < 0) {
		session_end(s);
		return;
	}
	if ((events & UV_WRITABLE) && ipc_chan_flush(v->chan) < 0) {
		session_end(s); /* the VMM is gone */
		return;
	}
	/* Bounded per wakeup so that the broker channel and interrupts get their turn. */
	if (session_serve(s, 64) >= 0)
		session_check(s);
}

/* A VMM that closed its connection may not have been noticed yet (its hangup waits behind its
 * last requests, or behind the listening socket's event in this loop iteration). Its hangup is
 * already visible on the socket: serve what it sent and end it, so that the connection being
 * accepted (perhaps the same VMM, reconnecting) is judged against the real state. */
static void session_settle(struct wkr_server *s)
{
	struct pollfd pfd = {.fd = ipc_chan_fd(s->vmm->chan), .events = POLLIN | POLLRDHUP};
	if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)))
		return;
	/* The peer can send no more: what is left is bounded by its socket buffer. */
	while (session_serve(s, 64) > 0)
		;
}

static int session_start(struct wkr_server *s, struct ipc_chan *chan)
{
	struct wkr_session *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int r = uv_poll_init(s->cfg.loop, &v->poll, ipc_chan_fd(chan));
	if (r < 0) {
		free(v);
		return r;
	}
	v->poll.data = v;
	v->chan = chan;
	v->s = s;
	r = uv_poll_start(&v->poll, UV_READABLE | UV_DISCONNECT, on_session);
	if (r < 0) {
		v->chan = NULL; /* the caller frees it */
		uv_close((uv_handle_t *)&v->poll, session_closed);
		return r;
	}
	s->vmm = v;
	return 0;
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
		(void)ipc_chan_reply_error(ipc_uv_chan(u), m, f->err, "%s",
					   f->err == -EBUSY ? "the device is in use by another VMM"
							    : "this uid may not use the device");
	ipc_msg_free(m);
	refusal_drop(f);
}

/* Answers the connection's first request with `err`, then closes it. At most WKR_REFUSE_MAX
 * wait at once; the oldest is dropped unanswered to make room. */
static void refuse(struct wkr_server *s, struct ipc_chan *chan, int err)
{
	int slot = 0;
	for (int i = 0; i < WKR_REFUSE_MAX; i++)
		if (!s->refusals[i]) {
			slot = i;
			break;
		}
	if (s->refusals[slot])
		refusal_drop(s->refusals[slot]);
	struct wkr_refusal *f = calloc(1, sizeof(*f));
	if (!f || ipc_uv_start(s->cfg.loop, chan, on_refused, f, &f->u) < 0) {
		free(f);
		ipc_chan_free(chan);
		return;
	}
	f->s = s;
	f->err = err;
	s->refusals[slot] = f;
}

static void accept_one(struct wkr_server *s, int fd)
{
	struct ipc_chan *chan;
	pid_t pid;
	uid_t uid;
	int grant = -1;
	if (ipc_chan_new(fd, &ipc_proto_device, &s->limits, &chan) < 0) {
		close(fd);
		return;
	}
	if (s->vmm)
		session_settle(s);
	if (s->vmm || (s->cfg.busy && s->cfg.busy(s->cfg.busy_data))) {
		refuse(s, chan, -EBUSY);
		return;
	}
	if (s->cfg.backend.ops->vmm_admit(s->cfg.backend.ctx, ipc_chan_fd(chan), s->cfg.owner_uid,
					  &pid, &uid, &grant) < 0) {
		refuse(s, chan, -EPERM);
		return;
	}
	if (session_start(s, chan) < 0) {
		if (grant >= 0)
			close(grant);
		ipc_chan_free(chan);
		return;
	}
	s->grant_fd = grant;
	s->vmm_pid = pid;
	s->vmm_uid = uid;
	s->hello_done = false;
	s->cfg.backend.ops->vmm_state(s->cfg.backend.ctx, true, pid, uid);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct wkr_server *s = h->data;
	/* Bounded per wakeup so that a flood of connections cannot starve the session. */
	for (int i = 0; i < 16 && status == 0; i++) {
		int fd;
		if (ipc_accept(s->cfg.listen_fd, &fd) < 0)
			return;
		accept_one(s, fd);
	}
}

static void on_irq(uv_poll_t *h, int status, int events)
{
	struct wkr_server *s = h->data;
	(void)wkr_irq_service(s->cfg.dev);
}

int wkr_server_new(const struct wkr_server_cfg *cfg, struct wkr_server **ret)
{
	int fl = fcntl(cfg->listen_fd, F_GETFL);
	if (fl < 0 || fcntl(cfg->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	struct wkr_server *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->grant_fd = -1;
	s->limits = ipc_limits_default;
	int r = uv_poll_init(cfg->loop, &s->listen_poll, cfg->listen_fd);
	if (r < 0) {
		free(s);
		return r;
	}
	s->listen_poll.data = s;
	s->open_handles = 1;
	r = uv_poll_init(cfg->loop, &s->irq_poll, wkr_irq_poll_fd(cfg->dev));
	if (r == 0) {
		s->irq_poll.data = s;
		s->open_handles++;
		uv_timer_init(cfg->loop, &s->removal_timer);
		s->removal_timer.data = s;
		s->open_handles++;
		r = uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
	}
	if (r == 0)
		r = uv_poll_start(&s->irq_poll, UV_READABLE, on_irq);
	if (r < 0) {
		s->cfg.listen_fd = -1; /* stays the caller's on failure */
		wkr_server_close(s, NULL, NULL);
		return r;
	}
	*ret = s;
	return 0;
}

void wkr_server_close(struct wkr_server *s, void (*closed)(void *data), void *data)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	s->closed = closed;
	s->closed_data = data;
	if (s->vmm)
		session_end(s);
	for (int i = 0; i < WKR_REFUSE_MAX; i++)
		if (s->refusals[i])
			refusal_drop(s->refusals[i]);
	if (s->removal_pending) {
		s->removal_pending = false;
		s->removal_done(s->removal_data, false);
	}
	int n = s->open_handles;
	uv_close((uv_handle_t *)&s->listen_poll, handle_closed);
	if (n > 1)
		uv_close((uv_handle_t *)&s->irq_poll, handle_closed);
	if (n > 2)
		uv_close((uv_handle_t *)&s->removal_timer, handle_closed);
}
