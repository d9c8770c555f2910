/*
 * conn: the channel under a vfb_dev or vfb_ctl handle, and the pollable event fd.
 *
 * The caller's event loop watches one fd. It must become readable both when an event datagram
 * waits in the socket and when ipc_chan_call() already read one off the socket and queued it
 * while waiting for a reply (then the socket itself is quiet). So the fd handed out is an epoll
 * set holding the socket and an eventfd that this file keeps signalled exactly while the channel
 * has queued messages. Level-triggered epoll sets are themselves pollable.
 *
 * Trusts nothing from the peer: every reply and event went through ipc's checks; what the peer
 * sends unasked is answered with an error or dropped, never acted upon.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "conn.h"

int vfb__fd_check(int fd)
{
	if (fd < 0)
		return -EINVAL;
	if (fcntl(fd, F_GETFD) < 0)
		return -errno;
	return 0;
}

static int epoll_add(int epfd, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int vfb__conn_init(struct vfb__conn *c, int fd, const struct ipc_proto *proto, uint16_t ev_type)
{
	/* The socket stays the caller's on failure: only what is made here is closed. */
	_cleanup_close_ int epfd = epoll_create1(EPOLL_CLOEXEC);
	_cleanup_close_ int evfd = -1;
	int r;

	memset(c, 0, sizeof(*c));
	c->epfd = -1;
	c->evfd = -1;
	c->timeout_ms = 5000;
	c->ev_type = ev_type;
	if (epfd < 0)
		return -errno;
	evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (evfd < 0)
		return -errno;
	r = epoll_add(epfd, evfd);
	if (r < 0)
		return r;
	r = epoll_add(epfd, fd);
	if (r < 0)
		return r;
	r = ipc_chan_new(fd, proto, NULL, &c->chan);
	if (r < 0)
		return r;
	/* Only ipc reads and writes the socket (the caller polls the epoll set): a call can wait
	 * for its answer in recvmsg() itself, a system call less per request than poll() first.
	 * Should the fcntl fail, calls wait in poll() as before. */
	(void)ipc_chan_wait_in_recv(c->chan);
	c->epfd = TAKE_FD(epfd);
	c->evfd = TAKE_FD(evfd);
	return 0;
}

int vfb__conn_open(struct vfb__conn *c, const char *path, const struct ipc_proto *proto,
		   uint16_t ev_type)
{
	_cleanup_close_ int fd = -1;
	int r;

	if (!path || !*path)
		return -EINVAL;
	r = ipc_connect(path, &fd);
	if (r < 0)
		return r;
	r = vfb__conn_init(c, fd, proto, ev_type);
	if (r < 0)
		return r;
	(void)TAKE_FD(fd); /* the connection's now */
	return 0;
}

void vfb__conn_fini(struct vfb__conn *c)
{
	if (c->chan)
		ipc_chan_free(c->chan);
	c->chan = NULL;
	if (c->evfd >= 0)
		close(c->evfd);
	if (c->epfd >= 0)
		close(c->epfd);
	c->evfd = c->epfd = -1;
}

int vfb__conn_check_fd(int fd)
{
	int type;
	socklen_t len = sizeof(type);

	if (fd < 0)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	return type == SOCK_SEQPACKET ? 0 : -EPROTOTYPE;
}

int vfb__conn_set_timeout(struct vfb__conn *c, int timeout_ms)
{
	if (timeout_ms < -1)
		return -EINVAL;
	c->timeout_ms = timeout_ms;
	return 0;
}

/* Keeps the eventfd's state equal to "the channel has queued messages". */
static void sync_evfd(struct vfb__conn *c)
{
	bool want = ipc_chan_has_queued(c->chan);
	uint64_t v = 1;

	if (want == c->ev_set)
		return;
	if (want) {
		/* Cannot fail: the counter is at most 1, far below its limit. */
		if (write(c->evfd, &v, sizeof(v)) == sizeof(v))
			c->ev_set = true;
	} else {
		if (read(c->evfd, &v, sizeof(v)) == sizeof(v) || errno == EAGAIN)
			c->ev_set = false;
	}
}

int vfb__conn_wait_ms(const struct vfb__conn *c, int extra_ms)
{
	int64_t t;

	if (c->timeout_ms < 0)
		return -1;
	t = (int64_t)c->timeout_ms + (extra_ms > 0 ? extra_ms : 0);
	return t > INT32_MAX ? INT32_MAX : (int)t;
}

int vfb__conn_call(struct vfb__conn *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		   size_t nfds, int extra_ms, struct ipc_msg **ret)
{
	struct ipc_error err = {0};
	int r;

	c->last_error[0] = '\0';
	r = ipc_chan_call(c->chan, type, body, fds, nfds, vfb__conn_wait_ms(c, extra_ms), ret,
			  &err);
	if (r < 0 && err.code < 0) {
		/* Only the peer's own answers carry a message worth showing. */
		snprintf(c->last_error, sizeof(c->last_error), "%s", err.message);
	}
	sync_evfd(c);
	return r;
}

int vfb__conn_next_event(struct vfb__conn *c, struct ipc_msg **ret)
{
	struct ipc_msg *m;
	int r;

	for (;;) {
		r = ipc_chan_recv(c->chan, &m);
		if (r < 0)
			break;
		if (m->kind == IPC_KIND_EVENT && m->type == c->ev_type) {
			*ret = m;
			break;
		}
		/* The peer is the server here: it has no business asking us anything. */
		if (m->kind == IPC_KIND_REQUEST)
			ipc_chan_reply_error(c->chan, m, -EOPNOTSUPP,
					     "this peer answers no requests");
		ipc_msg_free(m);
	}
	sync_evfd(c);
	return r;
}

size_t vfb__conn_max_request_fds(const struct vfb__conn *c, uint16_t type)
{
	const struct ipc_proto *p = ipc_chan_proto(c->chan);
	size_t n = ipc_limits_default.max_fds;

	for (size_t i = 0; i < p->ndefs; i++) {
		if (p->defs[i].type == type)
			return p->defs[i].max_request_fds < n ? p->defs[i].max_request_fds : n;
	}
	return 0;
}
