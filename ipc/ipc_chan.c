/*
 * ipc_chan: a channel over one connected SOCK_SEQPACKET socket: limits, the table of requests
 * this side has in flight, sending (with a bounded wait for buffer space), synchronous calls and
 * the queue of messages that arrive while a call waits.
 *
 * Trusts the caller for what it sends (checked only against the protocol table, so that a bug
 * here is an error and not a datagram the peer must refuse) and the kernel for the peer's
 * credentials. Everything received goes through ipc_recv.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.pb-c.h"
#include "ipc_internal.h"

/* Bounds on the limits themselves: the kernel refuses datagrams above the socket send buffer
 * anyway, and the in-flight table is searched linearly. */
#define DATAGRAM_LIMIT	  (16u << 20)
#define OUTSTANDING_LIMIT 4096u
#define QUEUE_MSGS_LIMIT  65536u
#define QUEUE_BYTES_LIMIT (256u << 20)
#define QUEUE_FDS_LIMIT	  4096u

const struct ipc_limits ipc_limits_default = {
    .max_datagram = 64 * 1024,
    .max_fds = 16,
    .decode_budget = 1024 * 1024,
    .max_outstanding = 64,
    .send_timeout_ms = 1000,
    .queue_msgs = 256,
    .queue_bytes = 1024 * 1024,
    .queue_fds = 8,
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until `deadline` for poll(); -1 waits forever. */
static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

const struct ipc_msgdef *ipc__def(const struct ipc_proto *p, uint16_t type)
{
	size_t i;

	for (i = 0; i < p->ndefs; i++)
		if (p->defs[i].type == type)
			return &p->defs[i];
	return NULL;
}

struct ipc__pending *ipc__pending_find(struct ipc_chan *c, uint32_t id)
{
	uint32_t i;

	if (!c->npending)
		return NULL;
	for (i = 0; i < c->lim.max_outstanding; i++)
		if (c->pending[i].state != IPC__PENDING_FREE && c->pending[i].id == id)
			return &c->pending[i];
	return NULL;
}

static int check_limits(const struct ipc_limits *l)
{
	if (l->max_datagram < IPC_HDR_SIZE || l->max_datagram > DATAGRAM_LIMIT)
		return -EINVAL;
	if (l->max_fds > IPC_FDS_MAX || l->decode_budget == 0)
		return -EINVAL;
	if (l->max_outstanding == 0 || l->max_outstanding > OUTSTANDING_LIMIT)
		return -EINVAL;
	if (l->send_timeout_ms > INT_MAX)
		return -EINVAL;
	if (l->queue_msgs > QUEUE_MSGS_LIMIT || l->queue_bytes > QUEUE_BYTES_LIMIT ||
	    l->queue_fds > QUEUE_FDS_LIMIT)
		return -EINVAL;
	return 0;
}

static int check_proto(const struct ipc_proto *p)
{
	size_t i, j;

	if (!p || (p->ndefs && !p->defs))
		return -EINVAL;
	for (i = 0; i < p->ndefs; i++) {
		const struct ipc_msgdef *d = &p->defs[i];

		if (!d->request || d->max_request_fds > IPC_FDS_MAX ||
		    d->max_reply_fds > IPC_FDS_MAX)
			return -EINVAL;
		for (j = 0; j < i; j++)
			if (p->defs[j].type == d->type)
				return -EINVAL;
	}
	return 0;
}

/* Only a connected AF_UNIX SOCK_SEQPACKET socket keeps datagram boundaries and passes fds. */
static int check_socket(int fd)
{
	int v;
	socklen_t len = sizeof(v);
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0)
		return -errno;
	if (v != AF_UNIX)
		return -EAFNOSUPPORT;
	len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0)
		return -errno;
	if (v != SOCK_SEQPACKET)
		return -EPROTOTYPE;
	if (getpeername(fd, (struct sockaddr *)&ss, &sslen) < 0)
		return -errno;
	return 0;
}

static int chan_alloc(struct ipc_chan *c)
{
	c->pending = calloc(c->lim.max_outstanding, sizeof(*c->pending));
	c->rbuf = malloc((size_t)c->lim.max_datagram + 1);
	c->sbuf = malloc(c->lim.max_datagram - IPC_HDR_SIZE + 1);
	c->cbuf_len = c->lim.max_fds ? CMSG_SPACE(c->lim.max_fds * sizeof(int)) : 0;
	c->cbuf = c->cbuf_len ? malloc(c->cbuf_len) : NULL;
	if (!c->pending || !c->rbuf || !c->sbuf || (c->cbuf_len && !c->cbuf))
		return -ENOMEM;
	return 0;
}

static void chan_release(struct ipc_chan *c)
{
	free(c->pending);
	free(c->rbuf);
	free(c->sbuf);
	free(c->cbuf);
	free(c);
}

int ipc_chan_new(int fd, const struct ipc_proto *proto, const struct ipc_limits *limits,
		 struct ipc_chan **ret)
{
	struct ipc_chan *c;
	int r, fl;

	if (fd < 0 || !ret)
		return -EINVAL;
	if (!limits)
		limits = &ipc_limits_default;
	r = check_limits(limits);
	if (r < 0)
		return r;
	r = check_proto(proto);
	if (r < 0)
		return r;
	r = check_socket(fd);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->proto = proto;
	c->lim = *limits;
	c->next_id = 1;
	c->rcvtimeo_ms = -2;
	r = chan_alloc(c);
	if (r == 0)
		r = ipc_peer_cred(fd, &c->peer_pid, &c->peer_uid, &c->peer_gid);
	fl = r == 0 ? fcntl(fd, F_GETFL) : 0;
	if (r == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		r = -errno;
	if (r < 0) {
		chan_release(c);
		return r;
	}
	*ret = c;
	return 0;
}

void ipc_chan_take_over(struct ipc_chan *c, uint32_t first_id)
{
	c->taken_over = true;
	c->next_id = first_id ? first_id : 1;
}

int ipc_chan_forget(struct ipc_chan *c, uint32_t id)
{
	struct ipc__pending *p = ipc__pending_find(c, id);

	if (!p)
		return -ENOENT;
	*p = (struct ipc__pending){.state = IPC__PENDING_FREE};
	c->npending--;
	return 0;
}

static void outbox_free(struct ipc__outbox *o)
{
	if (!o)
		return;
	ipc__close_fds(o->fds, o->nfds);
	free(o);
}
VB_DEFINE_CLEANUP(struct ipc__outbox, outbox_free);

void ipc_chan_free(struct ipc_chan *c)
{
	struct ipc__msgbox *b, *next;
	struct ipc__outbox *o, *onext;

	if (!c)
		return;
	for (b = c->qhead; b; b = next) {
		next = b->next;
		ipc_msg_free(ipc__box_msg(b));
	}
	for (o = c->ohead; o; o = onext) {
		onext = o->next;
		outbox_free(o);
	}
	close(c->fd);
	chan_release(c);
}

int ipc_chan_fd(const struct ipc_chan *c)
{
	return c->fd;
}

const struct ipc_proto *ipc_chan_proto(const struct ipc_chan *c)
{
	return c->proto;
}

int ipc_chan_peer(const struct ipc_chan *c, pid_t *pid, uid_t *uid, gid_t *gid)
{
	if (pid)
		*pid = c->peer_pid;
	if (uid)
		*uid = c->peer_uid;
	if (gid)
		*gid = c->peer_gid;
	return 0;
}

/* Sends with MSG_NOSIGNAL (a dead peer is -EPIPE, not SIGPIPE) and waits for buffer space. */
static int send_wait(int fd, const struct msghdr *mh, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int r;

	for (;;) {
		if (sendmsg(fd, mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		r = remaining_ms(deadline);
		if (r == 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, r);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

/* Copies the datagram, fds duplicated, to the end of the send queue, within the budget. */
static int outbox_push(struct ipc_chan *c, const struct iovec *iov, const int *fds, size_t nfds)
{
	size_t len = iov[0].iov_len + iov[1].iov_len, i;
	_cleanup_(outbox_freep) struct ipc__outbox *o = NULL;

	if (c->oq_msgs + 1 > c->lim.queue_msgs || len > c->lim.queue_bytes - c->oq_bytes ||
	    nfds > c->lim.queue_fds - c->oq_fds)
		return -EOVERFLOW;
	o = malloc(sizeof(*o) + nfds * sizeof(int) + len);
	if (!o)
		return -ENOMEM;
	o->next = NULL;
	o->len = len;
	o->nfds = 0;
	o->data = (uint8_t *)(o->fds + nfds);
	memcpy(o->data, iov[0].iov_base, iov[0].iov_len);
	memcpy(o->data + iov[0].iov_len, iov[1].iov_base, iov[1].iov_len);
	for (i = 0; i < nfds; i++) {
		int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		o->fds[o->nfds++] = fd;
	}
	if (c->otail)
		c->otail->next = o;
	else
		c->ohead = o;
	c->otail = TAKE_PTR(o);
	c->oq_msgs++;
	c->oq_bytes += (uint32_t)len;
	c->oq_fds += (uint32_t)nfds;
	return 0;
}

static void outbox_pop(struct ipc_chan *c)
{
	struct ipc__outbox *o = c->ohead;

	c->ohead = o->next;
	if (!c->ohead)
		c->otail = NULL;
	c->oq_msgs--;
	c->oq_bytes -= (uint32_t)o->len;
	c->oq_fds -= (uint32_t)o->nfds;
	outbox_free(o);
}

/* The control data for `nfds` fds, in `buf` (room for IPC_FDS_MAX). */
static void set_rights(struct msghdr *mh, void *buf, const int *fds, size_t nfds)
{
	struct cmsghdr *cm;

	if (!nfds)
		return;
	memset(buf, 0, CMSG_SPACE(sizeof(int) * nfds));
	mh->msg_control = buf;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
}

static int send_once(int fd, const struct msghdr *mh)
{
	for (;;) {
		if (sendmsg(fd, mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			return 0;
		if (errno != EINTR)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

int ipc_chan_flush(struct ipc_chan *c)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * IPC_FDS_MAX)];
	} ctl;
	int r;

	while (c->ohead) {
		struct ipc__outbox *o = c->ohead;
		struct iovec iov = {.iov_base = o->data, .iov_len = o->len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

		set_rights(&mh, ctl.buf, o->fds, o->nfds);
		r = send_once(c->fd, &mh);
		if (r == -EAGAIN)
			return 0;
		if (r < 0)
			return r;
		outbox_pop(c);
	}
	return 0;
}

bool ipc_chan_out_pending(const struct ipc_chan *c)
{
	return c->ohead != NULL;
}

/* One datagram whose body is already packed (`blen` bytes at `b`, which may be c->sbuf). */
static int chan_send_packed(struct ipc_chan *c, enum ipc_kind kind, uint16_t type, uint32_t id,
			    const uint8_t *b, size_t blen, const int *fds, size_t nfds,
			    int timeout_ms)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * IPC_FDS_MAX)];
	} ctl;
	uint8_t hbuf[IPC_HDR_SIZE];
	struct ipc__hdr h;
	struct iovec iov[2];
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	size_t i;
	int r;

	if (blen > c->lim.max_datagram - IPC_HDR_SIZE)
		return -EMSGSIZE;
	if (nfds > c->lim.max_fds)
		return -ETOOMANYREFS;
	if (nfds && !fds)
		return -EINVAL;
	for (i = 0; i < nfds; i++)
		if (fds[i] < 0)
			return -EBADF;
	h = (struct ipc__hdr){.magic = IPC_MAGIC,
			      .proto = c->proto->id,
			      .version = c->proto->version,
			      .type = type,
			      .kind = (uint8_t)kind,
			      .nfds = (uint8_t)nfds,
			      .id = id,
			      .len = (uint32_t)blen};
	ipc__hdr_encode(&h, hbuf);
	iov[0] = (struct iovec){.iov_base = hbuf, .iov_len = sizeof(hbuf)};
	iov[1] = (struct iovec){.iov_base = (void *)b, .iov_len = blen};
	set_rights(&mh, ctl.buf, fds, nfds);
	if (!c->lim.queue_msgs)
		return send_wait(c->fd, &mh, timeout_ms);
	/* Nothing may overtake what is queued: the peer sees datagrams in the order sent. */
	r = c->ohead ? -EAGAIN : send_once(c->fd, &mh);
	if (r != -EAGAIN)
		return r;
	return outbox_push(c, iov, fds, nfds);
}

int ipc__chan_send(struct ipc_chan *c, enum ipc_kind kind, uint16_t type, uint32_t id,
		   const ProtobufCMessage *body, const int *fds, size_t nfds, int timeout_ms)
{
	size_t blen = body ? protobuf_c_message_get_packed_size(body) : 0;

	/* Checked here too: the body is packed into sbuf before anything else is. */
	if (blen > c->lim.max_datagram - IPC_HDR_SIZE)
		return -EMSGSIZE;
	if (nfds > c->lim.max_fds)
		return -ETOOMANYREFS;
	if (blen && protobuf_c_message_pack(body, c->sbuf) != blen)
		return -EINVAL;
	return chan_send_packed(c, kind, type, id, c->sbuf, blen, fds, nfds, timeout_ms);
}

static bool body_matches(const ProtobufCMessage *body, const ProtobufCMessageDescriptor *d)
{
	/* NULL is the all-defaults body of any type, e.g. vb.Empty. */
	return !body || body->descriptor == d;
}

static struct ipc__pending *pending_claim(struct ipc_chan *c)
{
	uint32_t i;

	for (i = 0; i < c->lim.max_outstanding; i++)
		if (c->pending[i].state == IPC__PENDING_FREE)
			return &c->pending[i];
	return NULL;
}

static uint32_t next_id(struct ipc_chan *c)
{
	uint32_t id;

	/* Never 0 (events carry 0) and never an id still in the table after wrap-around. */
	do {
		id = c->next_id++;
	} while (id == 0 || ipc__pending_find(c, id));
	return id;
}

int ipc_chan_request(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body,
		     const int *fds, size_t nfds, uint32_t *ret_id)
{
	const struct ipc_msgdef *d = ipc__def(c->proto, type);
	struct ipc__pending *p;
	uint32_t id;
	int r;

	if (!d || !d->reply || !body_matches(body, d->request))
		return -EINVAL;
	if (nfds > d->max_request_fds)
		return -ETOOMANYREFS;
	p = pending_claim(c);
	if (!p)
		return -ENOBUFS;
	id = next_id(c);
	r = ipc__chan_send(c, IPC_KIND_REQUEST, type, id, body, fds, nfds,
			   (int)c->lim.send_timeout_ms);
	if (r < 0)
		return r;
	*p = (struct ipc__pending){.id = id, .type = type, .state = IPC__PENDING_ACTIVE};
	c->npending++;
	if (ret_id)
		*ret_id = id;
	return 0;
}

int ipc_chan_reply(struct ipc_chan *c, const struct ipc_msg *req, const ProtobufCMessage *body,
		   const int *fds, size_t nfds)
{
	const struct ipc_msgdef *d;

	if (!req || req->kind != IPC_KIND_REQUEST)
		return -EINVAL;
	d = ipc__def(c->proto, req->type);
	if (!d || !d->reply || !body_matches(body, d->reply))
		return -EINVAL;
	if (nfds > d->max_reply_fds)
		return -ETOOMANYREFS;
	return ipc__chan_send(c, IPC_KIND_REPLY, req->type, req->id, body, fds, nfds,
			      (int)c->lim.send_timeout_ms);
}

int ipc_chan_reply_packed(struct ipc_chan *c, const struct ipc_msg *req,
			  const ProtobufCMessageDescriptor *desc, const void *body, size_t len)
{
	const struct ipc_msgdef *d;

	if (!req || req->kind != IPC_KIND_REQUEST || !desc || (len && !body))
		return -EINVAL;
	d = ipc__def(c->proto, req->type);
	if (!d || d->reply != desc)
		return -EINVAL;
	return chan_send_packed(c, IPC_KIND_REPLY, req->type, req->id, body, len, NULL, 0,
				(int)c->lim.send_timeout_ms);
}

static int send_error(struct ipc_chan *c, uint16_t type, uint32_t id, int err, const char *text,
		      int timeout_ms)
{
	Vb__Error e = VB__ERROR__INIT;

	e.code = (uint32_t)-err;
	e.message = (char *)text;
	return ipc__chan_send(c, IPC_KIND_ERROR, type, id, &e.base, NULL, 0, timeout_ms);
}

int ipc_chan_reply_error(struct ipc_chan *c, const struct ipc_msg *req, int err, const char *fmt,
			 ...)
{
	char text[sizeof(((struct ipc_error *)0)->message)] = "";
	va_list ap;

	if (!req || req->kind != IPC_KIND_REQUEST || err >= 0 || err < -4095)
		return -EINVAL;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
	}
	return send_error(c, req->type, req->id, err, text, (int)c->lim.send_timeout_ms);
}

void ipc__chan_refuse(struct ipc_chan *c, uint16_t type, uint32_t id, int err, const char *why)
{
	/* A peer that does not read its socket gets no answer rather than stalling us. */
	(void)send_error(c, type, id, err, why, 0);
}

int ipc_chan_event(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		   size_t nfds)
{
	const struct ipc_msgdef *d = ipc__def(c->proto, type);

	if (!d || d->reply || !body_matches(body, d->request))
		return -EINVAL;
	if (nfds > d->max_request_fds)
		return -ETOOMANYREFS;
	return ipc__chan_send(c, IPC_KIND_EVENT, type, 0, body, fds, nfds,
			      (int)c->lim.send_timeout_ms);
}

static void queue_push(struct ipc_chan *c, struct ipc_msg *m)
{
	struct ipc__msgbox *b = ipc__msg_box(m);

	b->next = NULL;
	if (c->qtail)
		c->qtail->next = b;
	else
		c->qhead = b;
	c->qtail = b;
	c->qlen++;
}

static struct ipc_msg *queue_pop(struct ipc_chan *c)
{
	struct ipc__msgbox *b = c->qhead;

	if (!b)
		return NULL;
	c->qhead = b->next;
	if (!c->qhead)
		c->qtail = NULL;
	c->qlen--;
	b->next = NULL;
	return ipc__box_msg(b);
}

bool ipc_chan_has_queued(const struct ipc_chan *c)
{
	return c->qhead != NULL;
}

int ipc_chan_recv(struct ipc_chan *c, struct ipc_msg **ret)
{
	struct ipc_msg *m = queue_pop(c);

	if (m) {
		*ret = m;
		return 0;
	}
	return ipc__chan_read(c, ret);
}

int ipc_chan_wait_in_recv(struct ipc_chan *c)
{
	int fl = fcntl(c->fd, F_GETFL);

	if (fl < 0 || fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -errno;
	c->recv_waits = true;
	return 0;
}

/* Whether this call may wait in recvmsg(): the socket's receive timeout is the call's. */
static bool can_wait_in_recv(struct ipc_chan *c, int timeout_ms)
{
	struct timeval tv = {0};

	if (!c->recv_waits || c->ohead || timeout_ms == 0)
		return false;
	if (c->rcvtimeo_ms == timeout_ms)
		return true;
	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
	}
	/* Zero is no timeout: a call that waits forever (timeout -1). */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		return false;
	c->rcvtimeo_ms = timeout_ms;
	return true;
}

/* Waits for something to read, sending what the send queue holds (the call's own request may
 * be in it) as the socket takes it. */
static int wait_readable(struct ipc_chan *c, int64_t deadline)
{
	struct pollfd pfd = {.fd = c->fd};
	int r;

	for (;;) {
		pfd.events = POLLIN | (c->ohead ? POLLOUT : 0);
		r = poll(&pfd, 1, remaining_ms(deadline));
		if (r > 0 && (pfd.revents & POLLOUT) && c->ohead) {
			int f = ipc_chan_flush(c);

			if (f < 0)
				return f;
			if (!(pfd.revents & ~POLLOUT))
				continue;
		}
		if (r > 0)
			return 0; /* readable, hung up or failed: the read tells which */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int answer(struct ipc_msg *m, struct ipc_msg **ret, struct ipc_error *err)
{
	const Vb__Error *e;
	int code;

	if (m->kind == IPC_KIND_REPLY) {
		*ret = m;
		return 0;
	}
	/* The receive path has checked that the code is an errno in range. */
	e = (const Vb__Error *)m->body;
	code = -(int)e->code;
	if (err) {
		err->code = code;
		snprintf(err->message, sizeof(err->message), "%s", e->message ? e->message : "");
	}
	ipc_msg_free(m);
	return code;
}

static int await_answer(struct ipc_chan *c, uint32_t id, int timeout_ms, struct ipc_msg **ret,
			struct ipc_error *err)
{
	int64_t deadline = deadline_after(timeout_ms);
	/* The request has just gone: its answer cannot be there yet unless the peer ran in
	 * between, so the first read would almost always be an -EAGAIN, one system call per call
	 * for nothing (a third of a trapped access's calls). Waiting first costs nothing when
	 * something is readable already: poll() returns at once. */
	bool readable = false, waited_in_recv = false;
	struct ipc_msg *m;
	int r;

	for (;;) {
		/* Holding more would let a flooding peer grow the queue without bound. */
		if (c->qlen >= IPC_QUEUE_MAX)
			return -ENOBUFS;
		if (!readable && !waited_in_recv && can_wait_in_recv(c, timeout_ms)) {
			/* Once per call: the socket's timeout is the whole call's, and after an
			 * unrelated message or an interruption poll() keeps the deadline. */
			waited_in_recv = true;
			r = ipc__chan_read_wait(c, &m);
		} else {
			if (!readable) {
				r = wait_readable(c, deadline);
				if (r < 0)
					return r;
			}
			r = ipc__chan_read(c, &m);
		}
		readable = r != -EAGAIN;
		if (r == -EAGAIN)
			continue;
		if (r < 0)
			return r;
		if ((m->kind == IPC_KIND_REPLY || m->kind == IPC_KIND_ERROR) && m->id == id)
			return answer(m, ret, err);
		queue_push(c, m);
	}
}

int ipc_chan_call(struct ipc_chan *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		  size_t nfds, int timeout_ms, struct ipc_msg **ret, struct ipc_error *err)
{
	struct ipc__pending *p;
	uint32_t id;
	int r;

	if (!ret)
		return -EINVAL;
	if (err) {
		err->code = 0;
		err->message[0] = '\0';
	}
	r = ipc_chan_request(c, type, body, fds, nfds, &id);
	if (r < 0)
		return r;
	r = await_answer(c, id, timeout_ms, ret, err);
	if (r < 0) {
		/* A late answer is then dropped on arrival instead of surprising the next recv. */
		p = ipc__pending_find(c, id);
		if (p)
			p->state = IPC__PENDING_ABANDONED;
	}
	return r;
}
