/*
 * vfu_conn: framing of the vfio-user stream (see vfu_conn.h). Reads never run past the end of
 * the message being assembled, so fds cannot be credited to the wrong message; writes that the
 * socket cannot take now wait in a queue whose size is bounded per peer, so the worker's loop
 * never blocks on a VMM that does not read its replies.
 *
 * Trusts nothing that arrives: the announced size is checked against the limits before the
 * body is allocated, the number of fds is bounded while they arrive, and a message whose fds
 * the kernel truncated still has every fd that did arrive closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "vfu_conn.h"

struct out {
	struct out *next;
	size_t len, off;
	size_t nfds; /* still to send with the first byte; 0 once sent */
	bool owned;  /* the fds are dups of the queue's own */
	int fds[VFU_FDS_MAX];
	uint8_t *buf;
};

struct vfu_conn {
	int fd;
	struct vfu_limits lim;
	/* The message being read. */
	uint8_t hdr[VFU_HDR_SIZE];
	size_t hgot;
	struct vfu_msg *cur; /* allocated once the header is in */
	size_t bgot;
	int pend[VFU_FDS_MAX];
	size_t npend;
	bool fds_truncated, fds_excess;
	/* Replies the socket has not taken. */
	struct out *head, *tail;
	uint64_t qbytes;
	uint32_t qfds;
};

int vfu_conn_new(int fd, const struct vfu_limits *lim, struct vfu_conn **ret)
{
	int fl;
	struct vfu_conn *c;

	if (!lim || lim->max_msg < VFU_HDR_SIZE || lim->max_fds > VFU_FDS_MAX)
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->lim = *lim;
	*ret = c;
	return 0;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void vfu_msg_free(struct vfu_msg *m)
{
	if (!m)
		return;
	close_all(m->fds, m->nfds);
	free(m->data);
	free(m);
}

void vfu_conn_free(struct vfu_conn *c)
{
	if (!c)
		return;
	close_all(c->pend, c->npend);
	vfu_msg_free(c->cur);
	for (struct out *o = c->head, *n; o; o = n) {
		n = o->next;
		close_all(o->fds, o->nfds);
		free(o->buf);
		free(o);
	}
	close(c->fd);
	free(c);
}

int vfu_conn_fd(const struct vfu_conn *c)
{
	return c->fd;
}

/* Takes the fds of one control message: kept up to the limit, the rest closed at once. */
static void take_fds(struct vfu_conn *c, struct cmsghdr *cm)
{
	size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	int *in = (int *)CMSG_DATA(cm);

	for (size_t i = 0; i < n; i++) {
		int fd;

		memcpy(&fd, in + i, sizeof(fd));
		if (c->npend < c->lim.max_fds) {
			c->pend[c->npend++] = fd;
		} else {
			close(fd);
			c->fds_excess = true;
		}
	}
}

/* One recvmsg of at most `want` bytes into `buf`: bytes read, or a negative errno. */
static ssize_t read_some(struct vfu_conn *c, uint8_t *buf, size_t want)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VFU_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, want};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b)};
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN
		       : errno == ECONNRESET		       ? -EPIPE
							       : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			take_fds(c, cm);
	if (mh.msg_flags & MSG_CTRUNC)
		c->fds_truncated = true;
	return n == 0 ? -EPIPE : n;
}

static struct vfu_msg *msg_from_header(const uint8_t *h)
{
	struct vfu_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->id = vfu_get16(h);
	m->cmd = vfu_get16(h + 2);
	m->len = vfu_get32(h + 4) - VFU_HDR_SIZE;
	m->flags = vfu_get32(h + 8);
	m->error = vfu_get32(h + 12);
	return m;
}

/* The message is complete: hand over the fds that came with it and reset for the next. */
static struct vfu_msg *finish(struct vfu_conn *c)
{
	struct vfu_msg *m = c->cur;

	memcpy(m->fds, c->pend, c->npend * sizeof(int));
	m->nfds = c->npend;
	if (c->fds_truncated || c->fds_excess) {
		m->damage = c->fds_truncated ? -EBADMSG : -EINVAL;
		close_all(m->fds, m->nfds);
		m->nfds = 0;
	}
	c->cur = NULL;
	c->hgot = c->bgot = c->npend = 0;
	c->fds_truncated = c->fds_excess = false;
	return m;
}

int vfu_conn_recv(struct vfu_conn *c, struct vfu_msg **ret)
{
	while (c->hgot < VFU_HDR_SIZE) {
		ssize_t n = read_some(c, c->hdr + c->hgot, VFU_HDR_SIZE - c->hgot);

		if (n < 0)
			return (int)n;
		c->hgot += (size_t)n;
	}
	if (!c->cur) {
		uint32_t size = vfu_get32(c->hdr + 4);
		bool bad = size < VFU_HDR_SIZE || size > c->lim.max_msg;

		if (bad)
			vfu_put32(c->hdr + 4, VFU_HDR_SIZE);
		c->cur = msg_from_header(c->hdr);
		if (!c->cur)
			return -ENOMEM;
		if (bad) {
			*ret = finish(c);
			return -EMSGSIZE;
		}
		if (c->cur->len && !(c->cur->data = malloc(c->cur->len)))
			return -ENOMEM;
	}
	while (c->bgot < c->cur->len) {
		ssize_t n = read_some(c, c->cur->data + c->bgot, c->cur->len - c->bgot);

		if (n < 0)
			return (int)n;
		c->bgot += (size_t)n;
	}
	*ret = finish(c);
	return 0;
}

/* sendmsg of what is left of `o`, its fds with its first byte. */
static int send_out(struct vfu_conn *c, struct out *o)
{
	while (o->off < o->len) {
		union {
			char b[CMSG_SPACE(sizeof(int) * VFU_FDS_MAX)];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {o->buf + o->off, o->len - o->off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		if (o->nfds) {
			struct cmsghdr *cm;

			mh.msg_control = ctl.b;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * o->nfds);
			memset(ctl.b, 0, mh.msg_controllen);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * o->nfds);
			memcpy(CMSG_DATA(cm), o->fds, sizeof(int) * o->nfds);
		}
		n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN
			       : errno == ECONNRESET || errno == EPIPE ? -EPIPE
								       : -errno;
		o->off += (size_t)n;
		/* The fds went with the first byte; what follows carries none. */
		if (o->owned)
			close_all(o->fds, o->nfds);
		c->qfds -= o->owned ? (uint32_t)o->nfds : 0;
		o->nfds = 0;
	}
	return 0;
}

static void out_free(struct vfu_conn *c, struct out *o)
{
	if (o->owned) {
		close_all(o->fds, o->nfds);
		c->qfds -= (uint32_t)o->nfds;
	}
	c->qbytes -= o->len;
	free(o->buf);
	free(o);
}

int vfu_conn_flush(struct vfu_conn *c)
{
	while (c->head) {
		int r = send_out(c, c->head);
		struct out *o;

		if (r < 0)
			return r;
		o = c->head;
		c->head = o->next;
		if (!c->head)
			c->tail = NULL;
		out_free(c, o);
	}
	return 0;
}

bool vfu_conn_pending(const struct vfu_conn *c)
{
	return c->head != NULL;
}

/* A reply that never made it into the queue: nothing to account for. */
static void out_discard(struct out *o)
{
	if (!o)
		return;
	close_all(o->fds, o->nfds);
	free(o->buf);
	free(o);
}
VB_DEFINE_CLEANUP(struct out, out_discard);

/* Queues what `now` has left (its fds dup'ed if they have not gone yet), within the budget. */
static int enqueue(struct vfu_conn *c, const struct out *now)
{
	size_t left = now->len - now->off;
	_cleanup_(out_discardp) struct out *o = NULL;

	if (c->qbytes + left > c->lim.out_bytes || c->qfds + now->nfds > c->lim.out_fds)
		return -ENOBUFS;
	o = calloc(1, sizeof(*o));
	if (!o || !(o->buf = malloc(left)))
		return -ENOMEM;
	memcpy(o->buf, now->buf + now->off, left);
	o->owned = true;
	for (; o->nfds < now->nfds; o->nfds++) {
		o->fds[o->nfds] = fcntl(now->fds[o->nfds], F_DUPFD_CLOEXEC, 3);
		if (o->fds[o->nfds] < 0)
			return -errno;
	}
	o->len = left;
	c->qbytes += left;
	c->qfds += (uint32_t)o->nfds;
	if (c->tail)
		c->tail->next = o;
	else
		c->head = o;
	c->tail = TAKE_PTR(o);
	return 0;
}

int vfu_conn_reply(struct vfu_conn *c, const struct vfu_msg *req, int err, const void *payload,
		   size_t len, const int *fds, size_t nfds)
{
	struct out now;
	uint8_t small[VFU_HDR_SIZE + 64];
	int r = 0;

	if (err)
		len = nfds = 0;
	if (nfds > VFU_FDS_MAX || len > UINT32_MAX - VFU_HDR_SIZE)
		return -EINVAL;
	now = (struct out){.len = VFU_HDR_SIZE + len, .nfds = nfds};
	now.buf = now.len <= sizeof(small) ? small : malloc(now.len);
	if (!now.buf)
		return -ENOMEM;
	vfu_put16(now.buf, req->id);
	vfu_put16(now.buf + 2, req->cmd);
	vfu_put32(now.buf + 4, (uint32_t)now.len);
	vfu_put32(now.buf + 8, VFU_F_TYPE_REPLY | (err ? VFU_F_ERROR : 0));
	vfu_put32(now.buf + 12, (uint32_t)-err);
	if (len)
		memcpy(now.buf + VFU_HDR_SIZE, payload, len);
	if (nfds)
		memcpy(now.fds, fds, nfds * sizeof(int));
	/* Replies leave in order: behind a queue, this one waits too. */
	if (!c->head)
		r = send_out(c, &now);
	if (r == 0 && now.off < now.len)
		r = -EAGAIN;
	if (r == -EAGAIN)
		r = enqueue(c, &now);
	if (now.buf != small)
		free(now.buf);
	return r;
}
