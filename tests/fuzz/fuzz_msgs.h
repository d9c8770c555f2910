/*
 * fuzz_msgs: the input format shared by the fuzz targets that play one side of a conversation
 * (a VMM talking to a worker, a broker talking to a worker, a worker talking to the broker, an
 * orchestrator talking to the broker). The input is a list of records, each one datagram:
 *
 *   byte 0      the message type on the wire (the protocol's own numbers)
 *   byte 1      bits 0-2: fds attached (0-7); bits 3-5: what they are (enum fuzz_fd_kind);
 *               bits 6-7: kind (0 and 1 request, 2 reply, 3 event)
 *   bytes 2-3   body length, little endian (cut to what is left of the input)
 *   body        the protobuf body, as is
 *
 * The header is built right (magic, the protocol's id and version, an id that counts up), so the
 * fuzzer spends its time in the bodies and in the order of requests, not in the framing, which
 * fuzz_ipc_recv covers. Everything the peer sends back is read and its fds closed, so that a
 * target can check that nothing leaked once the conversation is over.
 */
#ifndef VB_TESTS_FUZZ_MSGS_H
#define VB_TESTS_FUZZ_MSGS_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "../ipc_test.h"
#include "fuzz_fail.h"

#define FUZZ_BODY_MAX 4000

struct fuzz_rec {
	uint16_t type;
	uint8_t kind;
	uint8_t nfds;
	uint8_t fd_kind;
	const uint8_t *body;
	size_t len;
};

enum fuzz_fd_kind {
	FUZZ_FD_EVENTFD,
	FUZZ_FD_MEMFD_SEALED, /* 64 KiB, size sealed: what DMA memory must be */
	FUZZ_FD_MEMFD,	      /* 64 KiB, unsealed */
	FUZZ_FD_MEMFD_RDONLY, /* the sealed memfd reopened read-only */
	FUZZ_FD_DEVNULL,
	FUZZ_FD_SOCKET, /* one end of a socketpair */
	FUZZ_FD_PIPE,
	FUZZ_FD_MEMFD_SMALL, /* sealed, one page */
};

static inline void fuzz__open_handle(uv_handle_t *h, void *arg)
{
	uv_os_fd_t fd = -1;

	(void)arg;
	(void)uv_fileno(h, &fd);
	fprintf(stderr, "fuzz: open handle %p: %s%s%s%s, fd %d\n", (void *)h,
		uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h) ? ", active" : "",
		uv_is_closing(h) ? ", closing" : "", uv_has_ref(h) ? "" : ", unreferenced", fd);
}

/* Closes a harness's loop once everything on it should be closed: fails naming every handle
 * still there (its type, whether it is still active or only closing, its fd), so that a handle
 * left open says whose it is. */
static inline void fuzz_loop_close(uv_loop_t *loop)
{
	if (uv_loop_close(loop) == 0)
		return;
	uv_walk(loop, fuzz__open_handle, NULL);
	fuzz_fail("a libuv handle is left open once everything was closed");
}

/* Fails when the process has another number of fds open than `before`, naming the count. */
static inline void fuzz_fds_check(int before)
{
	int now = count_fds();

	if (now != before)
		fuzz_fail("%d fds open after the run, %d before it", now, before);
}

/* libuv opens a few fds once per process (its signal pipe, a spare fd for EMFILE): a first loop
 * made and closed before the first fd count keeps them out of the leak check. */
static inline void fuzz_uv_warm_up(void)
{
	static bool done;
	uv_loop_t loop;

	if (done)
		return;
	if (uv_loop_init(&loop) < 0 || uv_loop_close(&loop) < 0)
		fuzz_fail("set-up: a first loop");
	done = true;
}

/* A listening socket of `type` (SOCK_SEQPACKET, SOCK_STREAM) on an autobound abstract address:
 * nothing on the file system to clean up, and no name two runs could both want. */
static inline int fuzz_listener(int type)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) < 0 ||
	    listen(fd, 4) < 0)
		fuzz_fail("set-up: a listening socket: %m");
	return fd;
}

/* fuzz_listener() and a non-blocking client connected to it (the peer the fuzzer plays). */
static inline void fuzz_listen_pair(int *lfd, int *client)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);

	*lfd = fuzz_listener(SOCK_SEQPACKET);
	if (getsockname(*lfd, (struct sockaddr *)&sa, &len) < 0)
		fuzz_fail("set-up: getsockname: %m");
	*client = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&sa, len) < 0)
		fuzz_fail("set-up: connecting the peer: %m");
}

/* Takes the next record off *p / *n; false when the input is used up. */
static inline bool fuzz_rec_next(const uint8_t **p, size_t *n, struct fuzz_rec *r)
{
	static const uint8_t kinds[4] = {IPC_KIND_REQUEST, IPC_KIND_REQUEST, IPC_KIND_REPLY,
					 IPC_KIND_EVENT};
	size_t len;

	if (*n < 4)
		return false;
	r->type = (*p)[0];
	r->nfds = (*p)[1] & 7;
	r->fd_kind = ((*p)[1] >> 3) & 7;
	r->kind = kinds[(*p)[1] >> 6];
	len = (size_t)(*p)[2] | (size_t)(*p)[3] << 8;
	*p += 4;
	*n -= 4;
	if (len > *n)
		len = *n;
	if (len > FUZZ_BODY_MAX)
		len = FUZZ_BODY_MAX;
	r->body = *p;
	r->len = len;
	*p += len;
	*n -= len;
	return true;
}

static inline int fuzz_memfd(size_t size, bool seal)
{
	int fd = memfd_create("fuzz-dma", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		fuzz_fail("set-up: a %zu-byte memfd: %m", size);
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		fuzz_fail("set-up: sealing a memfd: %m");
	return fd;
}

/* Opens one fd of `kind`; the caller closes it (and *extra, when >= 0: a socket's or a pipe's
 * other end). Fails when the machine cannot make it: that is no finding of the code under test,
 * but the run cannot go on. */
static inline int fuzz_fd_make(uint8_t kind, int *extra)
{
	char path[64];
	int sv[2], fd;

	*extra = -1;
	switch (kind) {
	case FUZZ_FD_EVENTFD:
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		break;
	case FUZZ_FD_MEMFD_SEALED:
		fd = fuzz_memfd(64 * 1024, true);
		break;
	case FUZZ_FD_MEMFD:
		fd = fuzz_memfd(64 * 1024, false);
		break;
	case FUZZ_FD_MEMFD_RDONLY:
		*extra = fuzz_memfd(64 * 1024, true);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", *extra);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		break;
	case FUZZ_FD_DEVNULL:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		break;
	case FUZZ_FD_SOCKET:
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			fuzz_fail("set-up: a socketpair to send: %m");
		fd = sv[0];
		*extra = sv[1];
		break;
	case FUZZ_FD_PIPE:
		if (pipe2(sv, O_CLOEXEC) < 0)
			fuzz_fail("set-up: a pipe to send: %m");
		fd = sv[0];
		*extra = sv[1];
		break;
	default:
		fd = fuzz_memfd(4096, true);
		break;
	}
	if (fd < 0)
		fuzz_fail("set-up: an fd of kind %u to send: %m", kind);
	return fd;
}

/* Sends record `r` on `sock` as protocol `proto` with message id `id`, never waiting: the
 * harness is the peer's only driver (its loop runs only between records), so a blocking send
 * to a peer that stopped reading (a faulted worker the broker no longer reads, a paused
 * session) would wait forever. Returns sendmsg's result: a full socket (-EAGAIN) or a peer
 * gone is part of the game. */
static inline ssize_t fuzz_rec_send(int sock, const struct ipc_proto *proto, uint32_t id,
				    const struct fuzz_rec *r)
{
	struct raw_hdr h = {IPC_MAGIC,	      proto->id, proto->version,  r->type, r->kind,
			    (uint8_t)r->nfds, id,	 (uint32_t)r->len};
	int fds[8], extra[8];
	ssize_t n;
	size_t i;

	for (i = 0; i < r->nfds; i++)
		fds[i] = fuzz_fd_make(r->fd_kind, &extra[i]);
	n = raw_send_flags(sock, &h, r->body, r->len, fds, r->nfds, MSG_DONTWAIT);
	for (i = 0; i < r->nfds; i++) {
		close(fds[i]);
		if (extra[i] >= 0)
			close(extra[i]);
	}
	return n;
}

/* Reads and drops everything waiting on `sock` (non-blocking), closing every fd that came
 * with it. Returns the number of datagrams read; *replies (when not NULL) is increased by the
 * number of them that were successful replies (kind IPC_KIND_REPLY). */
static inline int fuzz_drain_count(int sock, int *replies)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} ctl;
	uint8_t buf[8192];
	int n = 0;

	for (;;) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		struct cmsghdr *cm;

		ssize_t len = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (len <= 0)
			return n;
		n++;
		if (replies && len >= IPC_HDR_SIZE && buf[10] == IPC_KIND_REPLY)
			(*replies)++;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k;
			int fds[16];

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			memcpy(fds, CMSG_DATA(cm), k * sizeof(int));
			for (size_t i = 0; i < k; i++)
				close(fds[i]);
		}
	}
}

static inline int fuzz_drain(int sock)
{
	return fuzz_drain_count(sock, NULL);
}

#endif
