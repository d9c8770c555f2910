/*
 * conn: what the device handle and the control handle share: an ipc channel, the pollable event
 * fd (an epoll set of the socket and an eventfd that stands for messages ipc queued during a
 * call), the request timeout and the last error message.
 */
#ifndef VFB_CONN_H
#define VFB_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "ipc.h"

struct vfb__conn {
	struct ipc_chan *chan;
	int epfd;	  /* what the caller polls: readable when an event may be waiting */
	int evfd;	  /* signalled while the channel holds queued messages */
	bool ev_set;	  /* evfd currently signalled */
	int timeout_ms;	  /* per request; -1 forever */
	uint16_t ev_type; /* the protocol's event message type */
	char last_error[256];
};

/* Wraps connected socket `fd` (taken on success only). */
int vfb__conn_init(struct vfb__conn *c, int fd, const struct ipc_proto *proto, uint16_t ev_type);
/* Connects to `path` and wraps the socket. */
int vfb__conn_open(struct vfb__conn *c, const char *path, const struct ipc_proto *proto,
		   uint16_t ev_type);
void vfb__conn_fini(struct vfb__conn *c);

int vfb__conn_set_timeout(struct vfb__conn *c, int timeout_ms);
/* Checks that a caller's fd can carry a connection before the handle adopts it: -EINVAL
 * negative, -EBADF not open, -ENOTSOCK, -EPROTOTYPE not SOCK_SEQPACKET. */
int vfb__conn_check_fd(int fd);

/* The handle's timeout lengthened by `extra_ms` (-1: forever), as vfb__conn_call() waits. */
int vfb__conn_wait_ms(const struct vfb__conn *c, int extra_ms);

/* One request and its reply (owned by the caller). `extra_ms` lengthens this call's timeout.
 * Error replies return the peer's errno and leave their message in last_error. */
int vfb__conn_call(struct vfb__conn *c, uint16_t type, const ProtobufCMessage *body, const int *fds,
		   size_t nfds, int extra_ms, struct ipc_msg **ret);

/* The next event message, without blocking; -EAGAIN when none. Anything else the peer sent
 * unasked is answered (requests) or dropped. */
int vfb__conn_next_event(struct vfb__conn *c, struct ipc_msg **ret);

/* The most fds one request of `type` may carry on this channel. */
size_t vfb__conn_max_request_fds(const struct vfb__conn *c, uint16_t type);

/* Checks that `fd` is an open descriptor. */
int vfb__fd_check(int fd);

#endif
