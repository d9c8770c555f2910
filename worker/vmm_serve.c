/*
 * vmm_serve: the listening socket, admission, the one session's poll handle, its settling and
 * teardown, and the removal timer, for both VMM protocols (see vmm_serve.h).
 *
 * Owns: the listening socket (non-blocking), its poll handle, the poll handle on the device's
 * worker-eventfd epoll when it services interrupts, the removal timer, the session's poll
 * handle and the VMM's mmap grant. Trusts the device, the backend and the protocol's ops; a VMM
 * is trusted with nothing: the backend judges it at accept, and its leaving (cleanly or not)
 * always ends in wkr_serve_end().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "vmm_serve.h"

static void handle_closed(uv_handle_t *h)
{
	struct wkr_serve *sv = h->data;

	if (--sv->open_handles > 0)
		return;
	/* libuv has let go of the poll handle: the fd may be closed now. */
	if (sv->cfg.listen_fd >= 0)
		close(sv->cfg.listen_fd);
	if (sv->cfg.release)
		sv->cfg.release(sv->cfg.proto);
	if (sv->closed)
		sv->closed(sv->closed_data);
	free(sv);
}

void wkr_serve_removal_finish(struct wkr_serve *sv, bool acked)
{
	if (!sv->removal_pending)
		return;
	sv->removal_pending = false;
	uv_timer_stop(&sv->removal_timer);
	sv->removal_done(sv->removal_data, acked);
}

static void on_removal_timeout(uv_timer_t *t)
{
	wkr_serve_removal_finish(t->data, false);
}

int wkr_serve_removal(struct wkr_serve *sv, uint32_t timeout_ms,
		      void (*done)(void *data, bool acked), void *data)
{
	int r;

	if (sv->removal_pending)
		return -EBUSY;
	if (!sv->vmm) {
		done(data, false);
		return 0;
	}
	sv->removal_pending = true;
	sv->removal_done = done;
	sv->removal_data = data;
	r = sv->cfg.ops->ask_removal(sv->cfg.proto, timeout_ms);
	if (r == 0)
		r = uv_timer_start(&sv->removal_timer, on_removal_timeout, timeout_ms, 0);
	if (r < 0)
		wkr_serve_removal_finish(sv, false);
	return 0;
}

/* Runs after the core itself may be gone (libuv closes handles last-in first-out): the session
 * reaches only its own ops. */
static void session_closed(uv_handle_t *h)
{
	struct wkr_serve_session *v = h->data;

	v->ops->free(v);
}

/* Tells the backend of the admitted VMM, once. */
static void announce(struct wkr_serve *sv)
{
	const struct wkr_backend *b = &sv->cfg.backend;

	if (!sv->announce)
		return;
	sv->announce = false;
	b->ops->vmm_state(b->ctx, true, sv->vmm_pid, sv->vmm_uid);
}

void wkr_serve_end(struct wkr_serve *sv)
{
	struct wkr_serve_session *v = sv->vmm;
	const struct wkr_backend *b = &sv->cfg.backend;

	v->ended = true;
	/* A reply waiting for the backend has nobody to go to; what the calls did is dropped
	 * with the rest below. */
	wkr_defer_cancel(&v->defer);
	uv_close((uv_handle_t *)&v->poll, session_closed);
	sv->vmm = NULL;
	/* The next VMM gets a grant of its own; this one keeps the copies it was sent. */
	if (sv->grant_fd >= 0)
		close(sv->grant_fd);
	sv->grant_fd = -1;
	if (!sv->closing) {
		(void)wkr_irq_release(sv->cfg.dev);
		(void)b->ops->dma_unmap_all(b->ctx);
	}
	wkr_irq_set_mode(sv->cfg.dev, WKR_IRQ_EMULATED);
	if (sv->closing) {
		sv->announce = false;
		return;
	}
	/* A VMM that left before its first request was served was admitted all the same: the
	 * backend hears of both, in order. */
	announce(sv);
	b->ops->vmm_state(b->ctx, false, sv->vmm_pid, sv->vmm_uid);
	wkr_serve_removal_finish(sv, sv->cfg.hangup_acks_removal);
}

/* Whether the socket shows, now, one of `which` (the poll bits that say the VMM has gone). */
static bool hung_up(int fd, short which)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & which);
}

/* What a session waits for: requests unless paused or held; writability while replies are
 * queued; and its hang-up even while it reads nothing, so that a VMM gone while its reply
 * waits for the backend is let go of now (its DMA mappings and interrupt routes with it), not
 * when the backend answers, a call times out (30 s) or the next VMM connects. Not a VMM that
 * only shut its sending side while not read: it still takes its reply, and its shutdown,
 * reported until read, would wake the loop for nothing; it is seen once reading resumes. */
static int session_events(const struct wkr_serve_session *v, bool reading, bool writable)
{
	return (reading ? UV_READABLE : 0) | (reading || !v->shut ? UV_DISCONNECT : 0) |
	       (writable ? UV_WRITABLE : 0);
}

static void on_session(uv_poll_t *h, int status, int events);

static bool rewatch(struct wkr_serve_session *v, bool writable, bool paused)
{
	bool reading = !paused && !v->held;
	int events = session_events(v, reading, writable);

	if (v->writing == writable && v->paused == paused && v->reading == reading &&
	    v->watched == events)
		return true;
	if (events ? uv_poll_start(&v->poll, events, on_session) < 0 : uv_poll_stop(&v->poll) < 0)
		return false;
	v->writing = writable;
	v->paused = paused;
	v->reading = reading;
	v->watched = events;
	return true;
}

static void on_session(uv_poll_t *h, int status, int events)
{
	struct wkr_serve_session *v = h->data;

	if (v->ended)
		return;
	if (status < 0) {
		wkr_serve_end(v->sv);
		return;
	}
	if (!v->reading && (events & UV_DISCONNECT)) {
		/* Gone altogether: the reply it waits for has nobody to go to. */
		if (hung_up(v->fd, POLLHUP | POLLERR)) {
			wkr_serve_end(v->sv);
			return;
		}
		v->shut = true;
		if (!rewatch(v, v->writing, v->paused)) {
			wkr_serve_end(v->sv);
			return;
		}
		events &= ~UV_DISCONNECT;
		if (!events)
			return;
	}
	v->ops->serve(v, events);
	/* The session's first requests are answered (or it has ended, and said so). */
	if (!v->ended)
		announce(v->sv);
}

bool wkr_serve_watch(struct wkr_serve_session *v, bool writable)
{
	return rewatch(v, writable, v->paused);
}

bool wkr_serve_pause(struct wkr_serve_session *v, bool paused)
{
	return rewatch(v, v->writing, paused);
}

void wkr_serve_hold(struct wkr_serve *sv, bool held)
{
	struct wkr_serve_session *v;

	if (!sv || sv->held == held)
		return;
	sv->held = held;
	v = sv->vmm;
	if (!v || v->ended)
		return;
	v->held = held;
	if (!rewatch(v, v->writing, v->paused)) {
		wkr_serve_end(sv);
		return;
	}
	if (!held && v->ops->resumed)
		v->ops->resumed(v);
}

bool wkr_serve_busy(const struct wkr_serve *sv)
{
	return sv && (sv->vmm || sv->admit_fd >= 0);
}

/* A VMM that closed its connection may not have been noticed yet (its hangup waits behind its
 * last requests, or behind the listening socket's event in this loop iteration). Its hangup is
 * already visible on the socket: serve what it sent and end it, so that the connection being
 * accepted (perhaps the same VMM, reconnecting) is judged against the real state.
 *
 * A session whose reply waits for the backend (before the drain, or since a request the drain
 * served) reads nothing more: one whose VMM has gone altogether cannot take that reply, and
 * ends now. */
static void settle(struct wkr_serve *sv)
{
	if (wkr_serve_reading(sv->vmm) && hung_up(sv->vmm->fd, POLLHUP | POLLRDHUP | POLLERR))
		sv->cfg.ops->drain(sv->vmm);
	if (sv->vmm && !wkr_serve_reading(sv->vmm) && hung_up(sv->vmm->fd, POLLHUP | POLLERR))
		wkr_serve_end(sv);
}

/* Ends the admission under way: its connection is closed (`refuse` < 0: answered with that
 * error first), the backend's decision, when it comes, goes nowhere. */
static void admit_drop(struct wkr_serve *sv, int refuse)
{
	int fd = sv->admit_fd;

	sv->admit_fd = -1;
	wkr_defer_cancel(&sv->admit_defer);
	if (sv->admit.grant_fd >= 0)
		close(sv->admit.grant_fd);
	sv->admit.grant_fd = -1;
	if (refuse < 0)
		sv->cfg.ops->refuse(sv->cfg.proto, fd, refuse);
	else
		close(fd);
}

/* Starts the session of an admitted connection; takes `fd` whatever happens. */
static int session_start(struct wkr_serve *sv, int fd)
{
	struct wkr_serve_session *v;
	int r = sv->cfg.ops->open(sv->cfg.proto, fd, &v);

	if (r < 0) {
		close(fd);
		return r;
	}
	v->sv = sv;
	v->ops = sv->cfg.ops;
	v->fd = fd;
	r = uv_poll_init(sv->cfg.loop, &v->poll, fd);
	if (r < 0) {
		v->ops->free(v); /* not a handle yet: nothing for libuv to let go of */
		return r;
	}
	v->poll.data = v;
	/* Admitted while the server is held: it reads once the hold ends. */
	v->held = sv->held;
	v->reading = !v->held;
	v->watched = session_events(v, v->reading, false);
	r = uv_poll_start(&v->poll, v->watched, on_session);
	if (r < 0) {
		uv_close((uv_handle_t *)&v->poll, session_closed);
		return r;
	}
	sv->vmm = v;
	return 0;
}

/* The backend has decided on the connection being admitted. */
static void admit_finish(struct wkr_serve *sv)
{
	int r = sv->admit_defer.err, fd;

	if (r < 0) {
		/* No answer in time is not a refusal: the VMM is told to come back. */
		admit_drop(sv, r == -ETIMEDOUT ? -ETIMEDOUT : -EPERM);
		return;
	}
	fd = sv->admit_fd;
	sv->admit_fd = -1;
	if (session_start(sv, fd) < 0) {
		if (sv->admit.grant_fd >= 0)
			close(sv->admit.grant_fd);
		return;
	}
	sv->grant_fd = sv->admit.grant_fd;
	sv->vmm_pid = sv->admit.pid;
	sv->vmm_uid = sv->admit.uid;
	wkr_irq_set_mode(sv->cfg.dev, sv->cfg.irq_mode);
	sv->announce = true; /* once its HELLO is answered: announce() */
}

static void admit_done(struct wkr_defer *d)
{
	admit_finish(d->data);
}

static void accept_one(struct wkr_serve *sv, int fd)
{
	const struct wkr_backend *b = &sv->cfg.backend;
	int r;

	if (sv->vmm)
		settle(sv);
	/* A connection given up on while the backend decides makes room for the next. */
	if (sv->admit_fd >= 0 && hung_up(sv->admit_fd, POLLHUP | POLLRDHUP | POLLERR))
		admit_drop(sv, 0);
	/* One VMM per device, whichever protocol it speaks. */
	if (wkr_serve_busy(sv) || (sv->cfg.busy && sv->cfg.busy(sv->cfg.busy_data))) {
		sv->cfg.ops->refuse(sv->cfg.proto, fd, -EBUSY);
		return;
	}
	sv->admit_fd = fd;
	sv->admit = (struct wkr_admit){.grant_fd = -1};
	sv->admit_defer.done = admit_done;
	sv->admit_defer.data = sv;
	wkr_defer_begin(&sv->admit_defer, b, true);
	r = b->ops->vmm_admit(b->ctx, fd, sv->cfg.owner_uid, &sv->admit);
	wkr_defer_fail(&sv->admit_defer, r, NULL);
	if (!wkr_defer_end(&sv->admit_defer))
		admit_finish(sv);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct wkr_serve *sv = h->data;

	/* Bounded per wakeup so that a flood of connections cannot starve the session. */
	for (int i = 0; i < 16 && status == 0; i++) {
		int fd = accept4(sv->cfg.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return;
		accept_one(sv, fd);
	}
}

static void on_irq(uv_poll_t *h, int status, int events)
{
	struct wkr_serve *sv = h->data;

	(void)wkr_irq_service(sv->cfg.dev);
}

/* The listening socket is of the protocol's type, and non-blocking from here on. */
static int listen_check(int fd, int type)
{
	socklen_t l = sizeof(int);
	int got = 0, fl;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &l) < 0)
		return -errno;
	if (got != type)
		return -EPROTOTYPE;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int wkr_serve_new(const struct wkr_serve_cfg *cfg, struct wkr_serve **ret)
{
	struct wkr_serve *sv;
	int r = listen_check(cfg->listen_fd, cfg->sock_type);

	if (r < 0)
		return r;
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	sv->cfg = *cfg;
	sv->grant_fd = -1;
	sv->admit_fd = -1;
	r = uv_poll_init(cfg->loop, &sv->listen_poll, cfg->listen_fd);
	if (r < 0) {
		free(sv);
		return r;
	}
	sv->listen_poll.data = sv;
	sv->open_handles = 1;
	uv_timer_init(cfg->loop, &sv->removal_timer);
	sv->removal_timer.data = sv;
	sv->open_handles++;
	if (cfg->service_irqs) {
		r = uv_poll_init(cfg->loop, &sv->irq_poll, wkr_irq_poll_fd(cfg->dev));
		if (r == 0) {
			sv->irq_poll.data = sv;
			sv->irq_open = true;
			sv->open_handles++;
			r = uv_poll_start(&sv->irq_poll, UV_READABLE, on_irq);
		}
	}
	if (r == 0)
		r = uv_poll_start(&sv->listen_poll, UV_READABLE, on_listen);
	if (r < 0) {
		/* Both stay the caller's on failure. */
		sv->cfg.listen_fd = -1;
		sv->cfg.release = NULL;
		wkr_serve_close(sv, NULL, NULL);
		return r;
	}
	*ret = sv;
	return 0;
}

void wkr_serve_close(struct wkr_serve *sv, void (*closed)(void *data), void *data)
{
	if (!sv || sv->closing)
		return;
	sv->closing = true;
	sv->closed = closed;
	sv->closed_data = data;
	if (sv->vmm)
		wkr_serve_end(sv);
	if (sv->admit_fd >= 0)
		admit_drop(sv, 0);
	if (sv->removal_pending) {
		sv->removal_pending = false;
		sv->removal_done(sv->removal_data, false);
	}
	uv_close((uv_handle_t *)&sv->listen_poll, handle_closed);
	uv_close((uv_handle_t *)&sv->removal_timer, handle_closed);
	if (sv->irq_open)
		uv_close((uv_handle_t *)&sv->irq_poll, handle_closed);
}
