/*
 * Helpers shared by the ipc tests and the ipc fuzz target: a test protocol, an fd counter, and a
 * raw peer that writes and reads datagrams byte by byte, independently of ipc's own codec, so
 * that the tests check the wire format as specified and not as implemented.
 */
#ifndef VB_TESTS_IPC_TEST_H
#define VB_TESTS_IPC_TEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "broker.pb-c.h"
#include "common.pb-c.h"
#include "device.pb-c.h"
#include "ipc.h"

/* Types of the test protocol (id IPC_PROTO_TEST). */
enum {
	T_PING = 1,    /* Data -> Data */
	T_FDS = 2,     /* Data + up to 3 fds -> Data + up to 2 fds */
	T_NOTE = 3,    /* event: Data + up to 1 fd */
	T_BIG = 4,     /* brk.Handoff -> Empty: many repeated sub-messages */
	T_ONE = 5,     /* Data + up to 1 fd -> Empty */
	T_UNKNOWN = 9, /* only in the client's table: the server refuses it */
};

#define TEST_VERSION 3

static const struct ipc_msgdef test_defs[] = {
    {T_PING, &vb__dev__data__descriptor, &vb__dev__data__descriptor, 0, 0},
    {T_FDS, &vb__dev__data__descriptor, &vb__dev__data__descriptor, 3, 2},
    {T_NOTE, &vb__dev__data__descriptor, NULL, 1, 0},
    {T_BIG, &vb__brk__handoff__descriptor, &vb__empty__descriptor, 0, 0},
    {T_ONE, &vb__dev__data__descriptor, &vb__empty__descriptor, 1, 0},
    {T_UNKNOWN, &vb__dev__data__descriptor, &vb__empty__descriptor, 0, 0},
};

/* The server's table lacks T_UNKNOWN (the last entry). */
static const struct ipc_proto test_proto_server = {
    .name = "test",
    .id = IPC_PROTO_TEST,
    .version = TEST_VERSION,
    .defs = test_defs,
    .ndefs = ARRAY_SIZE(test_defs) - 1,
};

static const struct ipc_proto test_proto_client = {
    .name = "test",
    .id = IPC_PROTO_TEST,
    .version = TEST_VERSION,
    .defs = test_defs,
    .ndefs = ARRAY_SIZE(test_defs),
};

/* Open fds of process `pid`, from /proc/PID/fd; -1 when it cannot be read. */
static inline int count_pid_fds(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Open fds of this process (minus the one that reads them). */
static inline int count_fds(void)
{
	int n = count_pid_fds(getpid());

	return n < 0 ? -1 : n - 1;
}

struct raw_hdr {
	uint32_t magic;
	uint16_t proto, version, type;
	uint8_t kind, nfds;
	uint32_t id, len;
};

static inline struct raw_hdr raw_hdr(uint16_t type, uint8_t kind, uint32_t id, uint32_t len,
				     uint8_t nfds)
{
	return (struct raw_hdr){IPC_MAGIC, IPC_PROTO_TEST, TEST_VERSION, type, kind, nfds, id, len};
}

static inline void raw_put(uint8_t *p, uint64_t v, int bytes)
{
	int i;

	for (i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t raw_get(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The layout of common.proto's comment: magic, proto, version, type, kind, nfds, id, length. */
static inline void raw_encode(const struct raw_hdr *h, uint8_t out[IPC_HDR_SIZE])
{
	raw_put(out + 0, h->magic, 4);
	raw_put(out + 4, h->proto, 2);
	raw_put(out + 6, h->version, 2);
	raw_put(out + 8, h->type, 2);
	out[10] = h->kind;
	out[11] = h->nfds;
	raw_put(out + 12, h->id, 4);
	raw_put(out + 16, h->len, 4);
}

static inline void raw_decode(const uint8_t in[IPC_HDR_SIZE], struct raw_hdr *h)
{
	h->magic = (uint32_t)raw_get(in, 4);
	h->proto = (uint16_t)raw_get(in + 4, 2);
	h->version = (uint16_t)raw_get(in + 6, 2);
	h->type = (uint16_t)raw_get(in + 8, 2);
	h->kind = in[10];
	h->nfds = in[11];
	h->id = (uint32_t)raw_get(in + 12, 4);
	h->len = (uint32_t)raw_get(in + 16, 4);
}

/* Sends `len` bytes as one datagram with `nfds` fds and sendmsg's `flags` (MSG_NOSIGNAL
 * always); returns sendmsg's result or -errno. */
static inline ssize_t raw_sendmsg_flags(int fd, const void *buf, size_t len, const int *fds,
					size_t nfds, int flags)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * IPC_FDS_MAX)];
	} ctl;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	n = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
	return n < 0 ? -errno : n;
}

/* The same, waiting while the peer's queue is full. */
static inline ssize_t raw_sendmsg(int fd, const void *buf, size_t len, const int *fds, size_t nfds)
{
	return raw_sendmsg_flags(fd, buf, len, fds, nfds, 0);
}

/* Header plus body as one datagram, with sendmsg's `flags`. */
static inline ssize_t raw_send_flags(int fd, const struct raw_hdr *h, const void *body, size_t blen,
				     const int *fds, size_t nfds, int flags)
{
	uint8_t buf[IPC_HDR_SIZE + 4096];

	if (blen > sizeof(buf) - IPC_HDR_SIZE)
		return -EMSGSIZE;
	raw_encode(h, buf);
	if (blen)
		memcpy(buf + IPC_HDR_SIZE, body, blen);
	return raw_sendmsg_flags(fd, buf, IPC_HDR_SIZE + blen, fds, nfds, flags);
}

/* Header plus body as one datagram, waiting while the peer's queue is full. */
static inline ssize_t raw_send(int fd, const struct raw_hdr *h, const void *body, size_t blen,
			       const int *fds, size_t nfds)
{
	return raw_send_flags(fd, h, body, blen, fds, nfds, 0);
}

/* Helpers that assert: only for cmocka tests (include <cmocka.h> first). */
#ifdef cmocka_unit_test

static inline void chan_pair(const struct ipc_limits *la, const struct ipc_limits *lb,
			     struct ipc_chan **a, struct ipc_chan **b)
{
	int sv[2];

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_client, la, a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_server, lb, b), 0);
}

/* A server channel whose peer is a raw socket. */
static inline struct ipc_chan *chan_raw(const struct ipc_limits *l, int *raw)
{
	struct ipc_chan *c;
	int sv[2];

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, l, &c), 0);
	*raw = sv[1];
	return c;
}

static inline Vb__Dev__Data data_of(const char *s)
{
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	d.data.data = (uint8_t *)s;
	d.data.len = strlen(s);
	return d;
}

static inline void assert_data(const struct ipc_msg *m, const char *s)
{
	const Vb__Dev__Data *d = (const Vb__Dev__Data *)m->body;

	assert_non_null(d);
	assert_ptr_equal(d->base.descriptor, &vb__dev__data__descriptor);
	assert_int_equal(d->data.len, strlen(s));
	assert_memory_equal(d->data.data, s, strlen(s));
}

static inline size_t pack_data(const char *s, uint8_t *buf)
{
	Vb__Dev__Data d = data_of(s);

	return vb__dev__data__pack(&d, buf);
}

static inline ssize_t raw_recv(int fd, struct raw_hdr *h, uint8_t *body, size_t cap)
{
	uint8_t buf[IPC_HDR_SIZE + 4096];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0)
		return -errno;
	if (n < IPC_HDR_SIZE)
		return -EMSGSIZE;
	raw_decode(buf, h);
	if ((size_t)n - IPC_HDR_SIZE > cap)
		return -EMSGSIZE;
	memcpy(body, buf + IPC_HDR_SIZE, (size_t)n - IPC_HDR_SIZE);
	return n - IPC_HDR_SIZE;
}

/* The raw peer must hold exactly one error reply for (type, id) with this errno. */
static inline void raw_expect_error(int fd, uint16_t type, uint32_t id, int code)
{
	uint8_t body[4096];
	struct raw_hdr h;
	Vb__Error *e;
	ssize_t n = raw_recv(fd, &h, body, sizeof(body));

	assert_true(n >= 0);
	assert_int_equal(h.magic, IPC_MAGIC);
	assert_int_equal(h.kind, IPC_KIND_ERROR);
	assert_int_equal(h.type, type);
	assert_int_equal(h.id, id);
	assert_int_equal(h.nfds, 0);
	assert_int_equal(h.len, n);
	e = vb__error__unpack(NULL, (size_t)n, body);
	assert_non_null(e);
	assert_int_equal(e->code, code);
	assert_true(strlen(e->message) > 0);
	vb__error__free_unpacked(e, NULL);
	assert_int_equal(recv(fd, body, sizeof(body), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static inline void raw_expect_nothing(int fd)
{
	uint8_t b[64];

	assert_int_equal(recv(fd, b, sizeof(b), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

/* `n` fresh pipes' write ends in fds[], the read ends closed: things to send. */
static inline void make_fds(int *fds, size_t n)
{
	size_t i;
	int p[2];

	for (i = 0; i < n; i++) {
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		close(p[0]);
		fds[i] = p[1];
	}
}

static inline void close_all(int *fds, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

#endif /* cmocka_unit_test */

#endif
