/*
 * vfu_server: the listening socket, the one vfio-user session and its life on the libuv loop.
 * Commands themselves are answered in vfu_cmd.c.
 *
 * Owns: the listening socket, the session's connection, the poll handles, the removal timer.
 * A VMM is trusted with nothing: the backend decides at accept whether it may use the device,
 * and its leaving (cleanly or not) always ends in the same teardown: interrupt routes, DMA
 * mappings and its fds are dropped, the device state stays.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vfu_internal.h"

static void handle_closed(uv_handle_t *h)
{
	struct wkr_vfu *s = h->data;
	if (--s->open_handles > 0)
		return;
	if (s->cfg.listen_fd >= 0)
		close(s->cfg.listen_fd);
	if (s->closed)
		s->closed(s->closed_data);
	free(s);
}

static void removal_finish(struct wkr_vfu *s, bool acked)
{
	if (!s->removal_pending)
		return;
	s->removal_pending = false;
	uv_timer_stop(&s->removal_timer);
	s->removal_done(s->removal_data, acked);
}

static void session_closed(uv_handle_t *h)
{
	struct vfu_session *v = h->data;
	vfu_conn_free(v->conn);
	free(v->maps);
	free(v);
}

/* The VMM left: everything it set up goes. */
static void session_end(struct wkr_vfu *s)
{
	struct vfu_session *v = s->vmm;
	v->ended = true;
	uv_close((uv_handle_t *)&v->poll, session_closed);
	if (!s->closing) {
		(void)wkr_irq_release(s->cfg.dev);
		wkr__vfu_unmap_all(s);
	}
	wkr_irq_set_mode(s->cfg.dev, WKR_IRQ_EMULATED);
	s->vmm = NULL;
	/* The next VMM gets a grant of its own; this one keeps the copies it was sent. */
	if (s->grant_fd >= 0)
		close(s->grant_fd);
	s->grant_fd = -1;
	if (s->closing)
		return;
	s->cfg.backend.ops->vmm_state(s->cfg.backend.ctx, false, s->vmm_pid, s->vmm_uid);
	removal_finish(s, true);
}

static void on_session(uv_poll_t *h, int status, int events);

/* Watch for writability only while replies wait in the queue. */
static void want_writable(struct vfu_session *v, bool on)
{
	if (v->writable_wanted == on)
		return;
	v->writable_wanted = on;
	uv_poll_start(&v->poll, UV_READABLE | UV_DISCONNECT | (on ? UV_WRITABLE : 0), on_session);
}

static void on_session(uv_poll_t *h, int status, int events)
{
	struct vfu_session *v = h->data;
	struct wkr_vfu *s = v->s;
	if (status < 0) {
		session_end(s);
		return;
	}
	int r = vfu_conn_flush(v->conn);
	if (r < 0 && r != -EAGAIN) {
		session_end(s);
		return;
	}
	/* A VMM that does not take its replies gets no more read from it; bounded per wakeup
	 * so that the broker channel and interrupts get their turn. */
	for (int i = 0; i < 64 && !v->ended && !vfu_conn_pending(v->conn); i++) {
		struct vfu_msg *m = NULL;
		r = vfu_conn_recv(v->conn, &m);
		if (r == -EAGAIN)
			break;
		if (r == 0 || r == -EMSGSIZE) {
			s->requests++;
			int e = r == 0 ? wkr__vfu_dispatch(s, m) : 0;
			if (r == -EMSGSIZE) {
				/* The stream cannot be followed past a size that lies: answer,
				 * then end the session. */
				(void)vfu_conn_reply(v->conn, m, -EMSGSIZE, NULL, 0, NULL, 0);
				(void)vfu_conn_flush(v->conn);
				if (s->cfg.note)
					s->cfg.note(s->cfg.note_data,
						    "vfio-user: a message size outside 16 bytes to "
						    "the limit: the session ends");
				e = -EPROTO;
			}
			vfu_msg_free(m);
			if (e < 0) {
				if (e == -ENOBUFS && s->cfg.note)
					s->cfg.note(s->cfg.note_data,
						    "vfio-user: the VMM does not read its replies "
						    "(over its budget): the session ends");
				session_end(s);
				return;
			}
			continue;
		}
		session_end(s); /* -EPIPE, -ENOMEM or a socket error */
		return;
	}
	if (!v->ended)
		want_writable(v, vfu_conn_pending(v->conn));
}

static int session_start(struct wkr_vfu *s, int fd)
{
	const struct vfu_limits lim = {.max_msg = VFU_MSG_MAX,
				       .max_fds = WKR_VFU_MAX_IRQ_FDS,
				       .out_bytes = VFU_OUT_BYTES,
				       .out_fds = VFU_OUT_FDS};
	/* Fails (fd still the caller's) before the connection takes fd; 0 after, with s->vmm set
	 * only when the session runs. */
	struct vfu_session *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int r = vfu_conn_new(fd, &lim, &v->conn);
	if (r < 0) {
		free(v);
		return r;
	}
	/* From here the connection owns fd: failures close it with the connection. */
	r = uv_poll_init(s->cfg.loop, &v->poll, fd);
	if (r < 0) {
		vfu_conn_free(v->conn);
		free(v);
		return 0;
	}
	v->poll.data = v;
	v->s = s;
	r = uv_poll_start(&v->poll, UV_READABLE | UV_DISCONNECT, on_session);
	if (r < 0) {
		/* The fd goes with the session now. */
		uv_close((uv_handle_t *)&v->poll, session_closed);
		return 0;
	}
	s->vmm = v;
	wkr_irq_set_mode(s->cfg.dev, WKR_IRQ_VFIO);
	return 0;
}

static bool is_stream(int fd)
{
	int type = 0;
	socklen_t l = sizeof(type);
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM;
}

static void accept_one(struct wkr_vfu *s, int fd)
{
	pid_t pid;
	uid_t uid;
	int grant = -1;
	/* One VMM per device, whichever protocol it speaks; the admission is the backend's. */
	if (s->vmm || (s->cfg.busy && s->cfg.busy(s->cfg.busy_data)) || !is_stream(fd) ||
	    s->cfg.backend.ops->vmm_admit(s->cfg.backend.ctx, fd, s->cfg.owner_uid, &pid, &uid,
					  &grant) < 0) {
		if (s->cfg.note)
			s->cfg.note(s->cfg.note_data,
				    s->vmm || (s->cfg.busy && s->cfg.busy(s->cfg.busy_data))
					? "vfio-user: a connection was closed: another VMM holds "
					  "the device"
					: "vfio-user: a connection was refused");
		close(fd);
		return;
	}
	int r = session_start(s, fd);
	if (r < 0 || !s->vmm) {
		if (grant >= 0)
			close(grant);
		if (r < 0)
			close(fd);
		return;
	}
	s->grant_fd = grant;
	s->vmm_pid = pid;
	s->vmm_uid = uid;
	s->cfg.backend.ops->vmm_state(s->cfg.backend.ctx, true, pid, uid);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct wkr_vfu *s = h->data;
	/* Bounded per wakeup so that a flood of connections cannot starve the session. */
	for (int i = 0; i < 16 && status == 0; i++) {
		int fd = accept4(s->cfg.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		accept_one(s, fd);
	}
}

static void on_irq(uv_poll_t *h, int status, int events)
{
	struct wkr_vfu *s = h->data;
	(void)wkr_irq_service(s->cfg.dev);
}

int wkr_vfu_new(const struct wkr_vfu_cfg *cfg, struct wkr_vfu **ret)
{
	int fl = fcntl(cfg->listen_fd, F_GETFL);
	if (fl < 0 || fcntl(cfg->listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	if (!is_stream(cfg->listen_fd))
		return -EPROTOTYPE;
	struct wkr_vfu *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->grant_fd = -1;
	wkr__vfu_version_warmup();
	int r = uv_poll_init(cfg->loop, &s->listen_poll, cfg->listen_fd);
	if (r < 0) {
		free(s);
		return r;
	}
	s->listen_poll.data = s;
	s->open_handles = 1;
	uv_timer_init(cfg->loop, &s->removal_timer);
	s->removal_timer.data = s;
	s->open_handles++;
	if (cfg->service_irqs) {
		r = uv_poll_init(cfg->loop, &s->irq_poll, wkr_irq_poll_fd(cfg->dev));
		if (r == 0) {
			s->irq_poll.data = s;
			s->open_handles++;
			r = uv_poll_start(&s->irq_poll, UV_READABLE, on_irq);
		}
	}
	if (r == 0)
		r = uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
	if (r < 0) {
		s->cfg.listen_fd = -1; /* stays the caller's on failure */
		wkr_vfu_close(s, NULL, NULL);
		return r;
	}
	*ret = s;
	return 0;
}

void wkr_vfu_close(struct wkr_vfu *s, void (*closed)(void *data), void *data)
{
	if (!s || s->closing)
		return;
	s->closing = true;
	s->closed = closed;
	s->closed_data = data;
	if (s->vmm)
		session_end(s);
	if (s->removal_pending) {
		s->removal_pending = false;
		s->removal_done(s->removal_data, false);
	}
	int n = s->open_handles;
	uv_close((uv_handle_t *)&s->listen_poll, handle_closed);
	uv_close((uv_handle_t *)&s->removal_timer, handle_closed);
	if (n > 2)
		uv_close((uv_handle_t *)&s->irq_poll, handle_closed);
}

bool wkr_vfu_connected(const struct wkr_vfu *s)
{
	return s && s->vmm != NULL;
}

uint64_t wkr_vfu_requests(const struct wkr_vfu *s)
{
	return s ? s->requests : 0;
}

static void on_removal_timeout(uv_timer_t *t)
{
	removal_finish(t->data, false);
}

int wkr_vfu_removal(struct wkr_vfu *s, uint32_t timeout_ms, void (*done)(void *data, bool acked),
		    void *data)
{
	if (s->removal_pending)
		return -EBUSY;
	if (!s->vmm) {
		done(data, false);
		return 0;
	}
	s->removal_pending = true;
	s->removal_done = done;
	s->removal_data = data;
	/* What kernel vfio-pci does before an unbind: signal the VMM's REQ eventfd. A VMM
	 * without one only learns of it when the timeout takes the device away. */
	(void)wkr_irq_set_vfio(s->cfg.dev, VFIO_PCI_REQ_IRQ_INDEX,
			       VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, NULL,
			       NULL);
	if (uv_timer_start(&s->removal_timer, on_removal_timeout, timeout_ms, 0) < 0)
		removal_finish(s, false);
	return 0;
}
