/*
 * vfu_server: vfio-user on the shared serve path (vmm_serve.c: listening, admission, settling,
 * teardown, removal timer): the session's connection, its bounded serving and reply queue, and
 * how a removal is asked for. Commands themselves are answered in vfu_cmd.c.
 *
 * Owns: the session's connection. A VMM is trusted with nothing: vmm_serve.c has the backend
 * judge it at accept, and its leaving (cleanly or not) always ends in wkr_serve_end():
 * interrupt routes, DMA mappings and its fds are dropped, the device state stays.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "vfu_internal.h"

static int session_open(void *proto, int fd, struct wkr_serve_session **ret)
{
	const struct vfu_limits lim = {.max_msg = VFU_MSG_MAX,
				       .max_fds = WKR_VFU_MAX_IRQ_FDS,
				       .out_bytes = VFU_OUT_BYTES,
				       .out_fds = VFU_OUT_FDS};
	_cleanup_free_ struct vfu_session *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	r = vfu_conn_new(fd, &lim, &v->conn);
	if (r < 0)
		return r;
	v->s = proto;
	*ret = &TAKE_PTR(v)->base;
	return 0;
}

static void session_free(struct wkr_serve_session *base)
{
	struct vfu_session *v = container_of(base, struct vfu_session, base);

	wkr__vfu_session_release(v);
	vfu_conn_free(v->conn);
	wkr_held_free(&v->maps);
	free(v);
}

/* Answers one message received whole or with a size that lies; false once the session must
 * end. */
static bool serve_msg(struct wkr_vfu *s, struct vfu_msg *m, int r)
{
	struct vfu_session *v = wkr__vfu_session(s);
	int e = 0;

	s->sv->requests++;
	if (r == 0)
		e = wkr__vfu_dispatch(s, m);
	if (e == WKR_VFU_WAITING)
		return true; /* the session keeps `m` */
	if (r == -EMSGSIZE) {
		/* The stream cannot be followed past a size that lies: answer, then end the
		 * session. */
		(void)vfu_conn_reply(v->conn, m, -EMSGSIZE, NULL, 0, NULL, 0);
		(void)vfu_conn_flush(v->conn);
		if (s->cfg.note)
			s->cfg.note(s->cfg.note_data,
				    "vfio-user: a message size outside 16 bytes to "
				    "the limit: the session ends");
		e = -EPROTO;
	}
	if (e == -ENOBUFS && s->cfg.note)
		s->cfg.note(s->cfg.note_data, "vfio-user: the VMM does not read its replies (over "
					      "its budget): the session ends");
	return e >= 0;
}

/* Sends what is queued, then serves up to `max` messages: 1 when it served that many, 0 when
 * none was left, replies wait for the VMM to read or a reply waits for the backend, -1 once the
 * session has ended. A VMM that does not take its replies gets no more read from it. */
static int session_serve(struct wkr_vfu *s, unsigned max)
{
	struct vfu_session *v = wkr__vfu_session(s);
	int r = vfu_conn_flush(v->conn);

	if (r < 0 && r != -EAGAIN) {
		wkr_serve_end(s->sv);
		return -1;
	}
	for (unsigned i = 0; i < max; i++) {
		struct vfu_msg *m = NULL;
		bool ok;

		if (vfu_conn_pending(v->conn) || !wkr_serve_reading(&v->base))
			return 0;
		r = vfu_conn_recv(v->conn, &m);
		if (r == -EAGAIN)
			return 0;
		ok = (r == 0 || r == -EMSGSIZE) && serve_msg(s, m, r);
		if (v->waiting != m)
			vfu_msg_free(m);
		if (!ok) {
			wkr_serve_end(s->sv); /* -EPIPE, -ENOMEM, a socket error or a lying size */
			return -1;
		}
	}
	return 1;
}

static void session_ready(struct wkr_serve_session *base, int events)
{
	struct vfu_session *v = container_of(base, struct vfu_session, base);

	/* Bounded per wakeup so that the broker channel and interrupts get their turn. */
	if (session_serve(v->s, 64) >= 0 && !wkr_serve_watch(base, vfu_conn_pending(v->conn)))
		wkr_serve_end(v->s->sv);
}

/* The VMM can send no more: what is left is bounded by its socket buffer. */
static void session_drain(struct wkr_serve_session *base)
{
	struct vfu_session *v = container_of(base, struct vfu_session, base);

	while (session_serve(v->s, 64) > 0)
		;
}

/* vfio-user has no way to answer a connection before its VERSION: it is closed, and the
 * process told why. */
static void refuse(void *proto, int fd, int err)
{
	struct wkr_vfu *s = proto;

	if (s->cfg.note)
		s->cfg.note(
		    s->cfg.note_data,
		    err == -EBUSY
			? "vfio-user: a connection was closed: another VMM holds the device"
		    : err == -ETIMEDOUT
			? "vfio-user: a connection was closed: the broker did not answer (it "
			  "may be restarting)"
			: "vfio-user: a connection was refused");
	close(fd);
}

/* What kernel vfio-pci does before an unbind: signal the VMM's REQ eventfd. A VMM without one
 * only learns of it when the timeout takes the device away. */
static int ask_removal(void *proto, uint32_t timeout_ms)
{
	struct wkr_vfu *s = proto;

	(void)wkr_irq_set_vfio(s->cfg.dev, VFIO_PCI_REQ_IRQ_INDEX,
			       VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, NULL,
			       NULL);
	return 0;
}

static const struct wkr_serve_ops serve_ops = {
    .open = session_open,
    .free = session_free,
    .serve = session_ready,
    .drain = session_drain,
    .refuse = refuse,
    .ask_removal = ask_removal,
};

int wkr_vfu_new(const struct wkr_server_cfg *cfg, struct wkr_vfu **ret)
{
	struct wkr_serve_cfg sc = {
	    .loop = cfg->loop,
	    .listen_fd = cfg->listen_fd,
	    .sock_type = SOCK_STREAM,
	    .dev = cfg->dev,
	    .backend = cfg->backend,
	    .owner_uid = cfg->owner_uid,
	    .service_irqs = !cfg->irqs_elsewhere,
	    .irq_mode = WKR_IRQ_VFIO,
	    .hangup_acks_removal = true,
	    .busy = cfg->busy,
	    .busy_data = cfg->busy_data,
	    .ops = &serve_ops,
	    .release = free,
	};
	_cleanup_free_ struct wkr_vfu *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	sc.proto = s;
	/* json-c seeds its hash on first use, which the seccomp filter would not allow later. */
	wkr__vfu_version_warmup();
	r = wkr_serve_new(&sc, &s->sv);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

void wkr_vfu_close(struct wkr_vfu *s, void (*closed)(void *data), void *data)
{
	if (!s || s->sv->closing)
		return;
	wkr_serve_close(s->sv, closed, data);
}

bool wkr_vfu_connected(const struct wkr_vfu *s)
{
	return s && s->sv->vmm != NULL;
}

void wkr_vfu_hold(struct wkr_vfu *s, bool held)
{
	if (s)
		wkr_serve_hold(s->sv, held);
}

bool wkr_vfu_busy(const struct wkr_vfu *s)
{
	return s && wkr_serve_busy(s->sv);
}

uint64_t wkr_vfu_requests(const struct wkr_vfu *s)
{
	return s ? s->sv->requests : 0;
}

int wkr_vfu_removal(struct wkr_vfu *s, uint32_t timeout_ms, void (*done)(void *data, bool acked),
		    void *data)
{
	return wkr_serve_removal(s->sv, timeout_ms, done, data);
}
