/*
 * ipc_recv: reads one datagram and turns it into a message, or refuses it.
 *
 * Trusts nothing the peer sent. The order is fixed: collect every fd the kernel installed (so
 * that each error path can close them), then the size, the header, the protocol table, the
 * in-flight table and the fd limits, and only then the protobuf body, decoded into an arena
 * capped at the channel's decode budget. A refused request is answered with an error reply so
 * that the peer learns why instead of waiting for its timeout.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.pb-c.h"
#include "ipc_internal.h"

/* What arrived with one datagram. */
struct rx {
	ssize_t len;
	int flags;
	bool foreign_cmsg; /* control data other than SCM_RIGHTS */
	struct ipc__hdr h;
	bool have_hdr;
	char why[128];
	size_t nfds;
	int fds[IPC_FDS_MAX]; /* last: not cleared for every datagram */
};

static int refuse(struct rx *x, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct rx *x, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->why, sizeof(x->why), fmt, ap);
	va_end(ap);
	return err;
}

static void collect_fds(struct msghdr *mh, struct rx *x)
{
	struct cmsghdr *cm;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n, i;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			x->foreign_cmsg = true;
			continue;
		}
		if (cm->cmsg_len < CMSG_LEN(0))
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (x->nfds < IPC_FDS_MAX)
				x->fds[x->nfds++] = fd;
			else
				close(fd); /* cannot happen with a control buffer this size */
		}
	}
}

/* recvmsg() returns 0 both for an empty datagram and for the end of the connection. */
static bool peer_gone(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};

	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP));
}

static int read_datagram(struct ipc_chan *c, struct rx *x, bool wait)
{
	struct iovec iov = {.iov_base = c->rbuf, .iov_len = (size_t)c->lim.max_datagram + 1};
	struct msghdr mh = {
	    .msg_iov = &iov,
	    .msg_iovlen = 1,
	    .msg_control = c->cbuf,
	    .msg_controllen = c->cbuf_len,
	};

	do
		x->len = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | (wait ? 0 : MSG_DONTWAIT));
	while (x->len < 0 && errno == EINTR && !wait);
	if (x->len < 0) {
		/* A wait that was interrupted goes back to the caller's deadline. */
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return -EAGAIN;
		return -errno;
	}
	x->flags = mh.msg_flags;
	collect_fds(&mh, x);
	if (x->len == 0 && x->nfds == 0 && !x->foreign_cmsg && peer_gone(c->fd))
		return -EPIPE;
	if (x->len >= IPC_HDR_SIZE) {
		ipc__hdr_decode(c->rbuf, &x->h);
		x->have_hdr = true;
	}
	return 0;
}

static int check_frame(const struct ipc_chan *c, struct rx *x)
{
	const struct ipc__hdr *h = &x->h;

	if (x->foreign_cmsg)
		return refuse(x, -EBADMSG, "unexpected control message");
	/* CMSG_SPACE rounds the buffer up to 8 bytes, so with an odd max_fds one fd more fits
	 * without MSG_CTRUNC: the count is checked too. */
	if ((x->flags & MSG_CTRUNC) || x->nfds > c->lim.max_fds)
		return refuse(x, -ETOOMANYREFS, "more than %u fds", c->lim.max_fds);
	if ((x->flags & MSG_TRUNC) || x->len > (ssize_t)c->lim.max_datagram)
		return refuse(x, -EMSGSIZE, "datagram larger than %u bytes", c->lim.max_datagram);
	if (!x->have_hdr)
		return refuse(x, -EMSGSIZE, "datagram of %zd bytes has no header", x->len);
	if (h->magic != IPC_MAGIC)
		return refuse(x, -EBADMSG, "bad magic 0x%08x", h->magic);
	if (h->proto != c->proto->id)
		return refuse(x, -EBADMSG, "protocol %u, expected %u (%s)", h->proto, c->proto->id,
			      c->proto->name);
	if (h->version != c->proto->version)
		return refuse(x, -EBADMSG, "protocol version %u, expected %u", h->version,
			      c->proto->version);
	if (h->kind < IPC_KIND_REQUEST || h->kind > IPC_KIND_EVENT)
		return refuse(x, -EBADMSG, "bad kind %u", h->kind);
	if (h->len != (size_t)x->len - IPC_HDR_SIZE)
		return refuse(x, -EMSGSIZE, "header says %u body bytes, datagram has %zd", h->len,
			      x->len - IPC_HDR_SIZE);
	if (h->nfds != x->nfds)
		return refuse(x, -EBADMSG, "header says %u fds, %zu arrived", h->nfds, x->nfds);
	return 0;
}

/* Finds the body's descriptor and the type's fd limit for this kind of message. An answer
 * consumes its entry of the in-flight table even when it turns out malformed below: the peer
 * has answered, badly. */
static int check_type(struct ipc_chan *c, struct rx *x, const ProtobufCMessageDescriptor **desc,
		      bool *drop)
{
	const struct ipc__hdr *h = &x->h;
	const struct ipc_msgdef *d = ipc__def(c->proto, h->type);
	struct ipc__pending *p;
	size_t max;

	if (!d)
		return refuse(x, -EPROTO, "unknown message type %u", h->type);
	switch (h->kind) {
	case IPC_KIND_REQUEST:
	case IPC_KIND_EVENT:
		if (h->kind == IPC_KIND_REQUEST && !d->reply)
			return refuse(x, -EPROTO, "type %u is an event, not a request", h->type);
		if (h->kind == IPC_KIND_EVENT && d->reply)
			return refuse(x, -EPROTO, "type %u is a request, not an event", h->type);
		*desc = d->request;
		max = d->max_request_fds;
		break;
	default:
		p = ipc__pending_find(c, h->id);
		if ((!p || p->type != h->type) && c->taken_over) {
			/* An answer to the previous owner of the socket: checked, then dropped. */
			*drop = true;
		} else if (!p || p->type != h->type) {
			return refuse(x, -EPROTO, "answer %u of type %u matches no request", h->id,
				      h->type);
		} else {
			*drop = p->state == IPC__PENDING_ABANDONED;
			p->state = IPC__PENDING_FREE;
			c->npending--;
		}
		*desc = h->kind == IPC_KIND_REPLY ? d->reply : &vb__error__descriptor;
		max = h->kind == IPC_KIND_REPLY ? d->max_reply_fds : 0;
		break;
	}
	if (x->nfds > max)
		return refuse(x, -ETOOMANYREFS, "%zu fds, type %u allows %zu", x->nfds, h->type,
			      max);
	return 0;
}

static int decode(struct ipc_chan *c, struct rx *x, const ProtobufCMessageDescriptor *desc,
		  struct ipc_msg **ret)
{
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = ipc__msg_new(x->nfds, c->lim.decode_budget);
	struct ipc__arena *a;
	const Vb__Error *e;

	if (!m)
		return refuse(x, -ENOMEM, "out of memory");
	a = &ipc__msg_box(m)->arena;
	m->body = protobuf_c_message_unpack(desc, &a->allocator, x->h.len, c->rbuf + IPC_HDR_SIZE);
	if (!m->body) {
		if (a->exhausted)
			return refuse(x, -ENOMEM, "body needs more than %u bytes to decode",
				      c->lim.decode_budget);
		return refuse(x, -EBADMSG, "body is not a valid %s", desc->name);
	}
	if (x->h.kind == IPC_KIND_ERROR) {
		e = (const Vb__Error *)m->body;
		if (e->code == 0 || e->code > 4095)
			return refuse(x, -EBADMSG, "error code %u out of range", e->code);
	}
	m->kind = (enum ipc_kind)x->h.kind;
	m->type = x->h.type;
	m->id = x->h.id;
	m->nfds = x->nfds;
	memcpy(m->fds, x->fds, x->nfds * sizeof(int));
	x->nfds = 0; /* the message owns them now */
	*ret = TAKE_PTR(m);
	return 0;
}

/* Only a peer that speaks our protocol and asked something gets an answer. */
static void answer_refusal(struct ipc_chan *c, const struct rx *x, int err)
{
	if (x->have_hdr && x->h.magic == IPC_MAGIC && x->h.proto == c->proto->id &&
	    x->h.kind == IPC_KIND_REQUEST)
		ipc__chan_refuse(c, x->h.type, x->h.id, err, x->why);
}

static int chan_read(struct ipc_chan *c, struct ipc_msg **ret, bool wait)
{
	const ProtobufCMessageDescriptor *desc = NULL;
	struct ipc_msg *m = NULL;
	struct rx x;
	bool drop;
	int r;

	for (;; wait = false) {
		memset(&x, 0, offsetof(struct rx, fds));
		drop = false;
		r = read_datagram(c, &x, wait);
		if (r < 0)
			return r;
		r = check_frame(c, &x);
		if (r == 0)
			r = check_type(c, &x, &desc, &drop);
		if (r == 0)
			r = decode(c, &x, desc, &m);
		if (r < 0) {
			ipc__close_fds(x.fds, x.nfds);
			answer_refusal(c, &x, r);
			return r;
		}
		if (!drop) {
			*ret = m;
			return 0;
		}
		ipc_msg_free(m); /* the answer to a call that gave up */
	}
}

int ipc__chan_read(struct ipc_chan *c, struct ipc_msg **ret)
{
	return chan_read(c, ret, false);
}

int ipc__chan_read_wait(struct ipc_chan *c, struct ipc_msg **ret)
{
	return chan_read(c, ret, true);
}
