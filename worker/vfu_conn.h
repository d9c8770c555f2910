/*
 * vfu_conn: one vfio-user connection on a non-blocking AF_UNIX SOCK_STREAM socket: message
 * framing over partial reads and writes, the fds that arrive with a message, and a bounded
 * queue of replies the peer has not taken yet.
 *
 * The stream is read exactly one message at a time (the 16-byte header, then as many bytes as
 * it announces), so the fds the kernel hands over while a message is being read belong to that
 * message: a sender attaches them to the message's first bytes. Every size is checked against
 * the connection's limits before anything is allocated for it. Errors are negative errno
 * values; the module never logs.
 */
#ifndef VB_VFU_CONN_H
#define VB_VFU_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu_wire.h"

/* The kernel's SCM_MAX_FD: no sender can attach more to one sendmsg. */
#define VFU_FDS_MAX 253

struct vfu_limits {
	uint32_t max_msg;   /* largest message accepted, header included */
	uint32_t max_fds;   /* fds accepted with one message (<= VFU_FDS_MAX) */
	uint64_t out_bytes; /* replies queued for a peer that does not read, in bytes */
	uint32_t out_fds;   /* ... and in fds (dups held until sent) */
};

/* A received message. `data` holds `len` payload bytes (header excluded). */
struct vfu_msg {
	uint16_t id;
	uint16_t cmd;
	uint32_t flags;
	uint32_t error;
	uint8_t *data;
	size_t len;
	/* Non-zero when the message arrived damaged but framed (its fds were truncated by the
	 * kernel, or more arrived than allowed): the negative errno it must be answered with.
	 * Its fds have been closed already. */
	int damage;
	size_t nfds;
	int fds[VFU_FDS_MAX];
};

struct vfu_conn;

/* Takes `fd` (a connected SOCK_STREAM socket; made non-blocking) on success only. */
int vfu_conn_new(int fd, const struct vfu_limits *lim, struct vfu_conn **ret);
/* Closes the socket, every fd of a half-read message and of queued replies. */
void vfu_conn_free(struct vfu_conn *c);
int vfu_conn_fd(const struct vfu_conn *c);

/*
 * Reads until one whole message is in, without blocking. Returns 0 with *ret (free with
 * vfu_msg_free()), or:
 *   -EAGAIN   the rest has not arrived yet;
 *   -EPIPE    the peer closed (also mid-message: the partial message is dropped);
 *   -EMSGSIZE a header announced fewer than 16 bytes or more than max_msg: the stream cannot
 *             be trusted past it; *ret then holds the header alone, so that the caller can
 *             answer it, and the connection must be closed afterwards;
 *   another errno of recvmsg.
 */
int vfu_conn_recv(struct vfu_conn *c, struct vfu_msg **ret);
/* Closes the fds still in `m` (-1 marks a taken one) and frees it. NULL is ignored. */
void vfu_msg_free(struct vfu_msg *m);

/*
 * Answers `req`: a reply header echoing its id and command, `len` payload bytes and `nfds`
 * fds (borrowed: dup'ed when they must wait in the queue). `err` (a negative errno) makes an
 * error reply, which carries no payload. What the socket does not take now is queued;
 * -ENOBUFS when the queue is over its budget (the peer is not reading: drop it), -EPIPE when
 * the peer is gone.
 */
int vfu_conn_reply(struct vfu_conn *c, const struct vfu_msg *req, int err, const void *payload,
		   size_t len, const int *fds, size_t nfds);
/* Sends what is queued. 0 when the queue is empty, -EAGAIN while some remains. */
int vfu_conn_flush(struct vfu_conn *c);
bool vfu_conn_pending(const struct vfu_conn *c);

#endif
