/*
 * Tests of ipc/: channels over socketpairs, driven either by a second channel or by a raw peer
 * that writes datagrams by hand. Every error test also checks that no fd leaked, by counting the
 * entries of /proc/self/fd before and after. Sending limits, fd ownership, sockets and the
 * protocol tables are test_ipc_send.c's.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "control.pb-c.h"
#include "ipc_test.h"
#include "test_wait.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* Polls and receives, for peers that answer from another thread. */
static int wait_recv(struct ipc_chan *c, struct ipc_msg **m, int timeout_ms)
{
	struct pollfd pfd = {.fd = ipc_chan_fd(c), .events = POLLIN};
	int r;

	for (;;) {
		r = ipc_chan_recv(c, m);
		if (r != -EAGAIN)
			return r;
		if (poll(&pfd, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
	}
}

/* ---- peers in threads (they record, the test thread asserts) ---------------------------- */

struct peer {
	pthread_t thread;
	struct ipc_chan *c;
	int raw;
	int result;
	void (*run)(struct peer *p);
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->run(p);
	return NULL;
}

static void peer_start(struct peer *p, void (*run)(struct peer *p))
{
	p->run = run;
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
	assert_int_equal(pthread_join(p->thread, NULL), 0);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_ipc_roundtrip_fds_contents_readable(void **state)
{
	int before = count_fds(), memfd, p1[2], p2[2], fds[2], got, fl;
	struct ipc_chan *a, *b;
	struct ipc_msg *req, *rep;
	Vb__Dev__Data d = data_of("hello");
	uint32_t id;
	char buf[32] = "";

	chan_pair(NULL, NULL, &a, &b);
	memfd = memfd_create("ipc-test", MFD_CLOEXEC);
	assert_true(memfd >= 0);
	assert_int_equal(pwrite(memfd, "guest ram", 9, 0), 9);
	assert_int_equal(pipe2(p1, O_CLOEXEC), 0);
	fds[0] = memfd;
	fds[1] = p1[1];
	assert_int_equal(ipc_chan_request(a, T_FDS, &d.base, fds, 2, &id), 0);
	close(memfd);
	close(p1[1]);

	assert_int_equal(ipc_chan_recv(b, &req), 0);
	assert_int_equal(req->kind, IPC_KIND_REQUEST);
	assert_int_equal(req->type, T_FDS);
	assert_int_equal(req->id, id);
	assert_data(req, "hello");
	assert_int_equal(req->nfds, 2);
	fl = fcntl(req->fds[0], F_GETFD);
	assert_true(fl >= 0 && (fl & FD_CLOEXEC));
	assert_int_equal(pread(req->fds[0], buf, 9, 0), 9);
	assert_memory_equal(buf, "guest ram", 9);
	assert_int_equal(write(req->fds[1], "xyz", 3), 3);
	assert_int_equal(read(p1[0], buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "xyz", 3);

	assert_int_equal(pipe2(p2, O_CLOEXEC), 0);
	d = data_of("ok");
	assert_int_equal(ipc_chan_reply(b, req, &d.base, &p2[1], 1), 0);
	close(p2[1]);
	ipc_msg_free(req);

	assert_int_equal(ipc_chan_recv(a, &rep), 0);
	assert_int_equal(rep->kind, IPC_KIND_REPLY);
	assert_int_equal(rep->type, T_FDS);
	assert_int_equal(rep->id, id);
	assert_data(rep, "ok");
	assert_int_equal(rep->nfds, 1);
	got = rep->fds[0];
	assert_int_equal(write(got, "back", 4), 4);
	assert_int_equal(read(p2[0], buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "back", 4);
	ipc_msg_free(rep);
	assert_int_equal(ipc_chan_recv(a, &rep), -EAGAIN);
	assert_int_equal(ipc_chan_recv(b, &rep), -EAGAIN);

	close(p1[0]);
	close(p2[0]);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_wire_header_little_endian_layout(void **state)
{
	int raw, fd, before = count_fds();
	struct ipc_chan *a;
	Vb__Dev__Data d = data_of("abc");
	uint8_t buf[128], body[16];
	struct raw_hdr h;
	ssize_t n;
	uint32_t id;
	int sv[2];

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_client, NULL, &a), 0);
	raw = sv[1];
	make_fds(&fd, 1);
	assert_int_equal(ipc_chan_request(a, T_FDS, &d.base, &fd, 1, &id), 0);
	close(fd);
	n = recv(raw, buf, sizeof(buf), MSG_DONTWAIT);
	/* SCM_RIGHTS that a plain recv() does not take are closed by the kernel. */
	assert_int_equal(n, IPC_HDR_SIZE + pack_data("abc", body));
	assert_memory_equal(buf, "VBRK", 4);
	raw_decode(buf, &h);
	assert_int_equal(h.proto, IPC_PROTO_TEST);
	assert_int_equal(h.version, TEST_VERSION);
	assert_int_equal(h.type, T_FDS);
	assert_int_equal(h.kind, IPC_KIND_REQUEST);
	assert_int_equal(h.nfds, 1);
	assert_int_equal(h.id, id);
	assert_int_equal(h.len, n - IPC_HDR_SIZE);
	assert_memory_equal(buf + IPC_HDR_SIZE, body, h.len);
	ipc_chan_free(a);
	close(raw);
	assert_int_equal(count_fds(), before);
}

static size_t data_len_for_datagram(uint32_t max)
{
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	size_t len = max - IPC_HDR_SIZE;

	/* The body is a tag, a varint length and the bytes: shrink until it fits exactly. */
	for (;;) {
		d.data.len = len;
		if (vb__dev__data__get_packed_size(&d) <= max - IPC_HDR_SIZE)
			return len;
		len--;
	}
}

static void test_ipc_largest_datagram_delivered_one_more_refused(void **state)
{
	const uint32_t max = ipc_limits_default.max_datagram;
	int before = count_fds();
	struct ipc_chan *a, *b;
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	struct ipc_msg *m;
	size_t len = data_len_for_datagram(max), i;
	uint8_t *big = malloc(len + 1);
	const Vb__Dev__Data *got;

	assert_non_null(big);
	for (i = 0; i < len + 1; i++)
		big[i] = (uint8_t)(i * 7);
	chan_pair(NULL, NULL, &a, &b);
	d.data.data = big;
	d.data.len = len;
	assert_int_equal(vb__dev__data__get_packed_size(&d) + IPC_HDR_SIZE, max);
	assert_int_equal(ipc_chan_request(a, T_PING, &d.base, NULL, 0, NULL), 0);
	assert_int_equal(ipc_chan_recv(b, &m), 0);
	got = (const Vb__Dev__Data *)m->body;
	assert_int_equal(got->data.len, len);
	assert_memory_equal(got->data.data, big, len);
	ipc_msg_free(m);

	d.data.len = len + 1;
	assert_int_equal(ipc_chan_request(a, T_PING, &d.base, NULL, 0, NULL), -EMSGSIZE);
	assert_int_equal(ipc_chan_recv(b, &m), -EAGAIN);
	free(big);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* ---- calls ------------------------------------------------------------------------------ */

static void peer_error_reply(struct peer *p)
{
	struct ipc_msg *m;

	p->result = wait_recv(p->c, &m, 5000);
	if (p->result < 0)
		return;
	p->result = ipc_chan_reply_error(p->c, m, -EPERM, "no access to %s", "0000:00:03.0");
	ipc_msg_free(m);
}

static void test_ipc_call_error_reply_code_and_message(void **state)
{
	int before = count_fds();
	struct ipc_chan *a;
	struct peer p = {0};
	struct ipc_msg *m = NULL;
	struct ipc_error err;

	chan_pair(NULL, NULL, &a, &p.c);
	peer_start(&p, peer_error_reply);
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, TEST_HANG_MS, &m, &err), -EPERM);
	peer_join(&p);
	assert_int_equal(p.result, 0);
	assert_null(m);
	assert_int_equal(err.code, -EPERM);
	assert_string_equal(err.message, "no access to 0000:00:03.0");
	ipc_chan_free(a);
	ipc_chan_free(p.c);
	assert_int_equal(count_fds(), before);
}

static void peer_hang_up(struct peer *p)
{
	struct pollfd pfd = {.fd = p->raw, .events = POLLIN};
	char buf[256];

	p->result =
	    poll(&pfd, 1, TEST_HANG_MS) == 1 && recv(p->raw, buf, sizeof(buf), 0) > 0 ? 0 : -1;
	close(p->raw);
}

static void test_ipc_call_peer_hangup_epipe(void **state)
{
	int before = count_fds(), sv[2], r;
	struct ipc_chan *a;
	struct peer p = {0};
	struct ipc_msg *m = NULL;

	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_client, NULL, &a), 0);
	p.raw = sv[1];
	peer_start(&p, peer_hang_up);
	r = ipc_chan_call(a, T_PING, NULL, NULL, 0, TEST_HANG_MS, &m, NULL);
	peer_join(&p);
	assert_int_equal(p.result, 0);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	assert_null(m);
	/* Sending to the dead peer is -EPIPE, not SIGPIPE (which would end this test binary). */
	assert_int_equal(ipc_chan_event(a, T_NOTE, NULL, NULL, 0), -EPIPE);
	ipc_chan_free(a);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_call_timeout_late_answer_dropped(void **state)
{
	int before = count_fds(), fds[2];
	struct ipc_chan *a, *b;
	struct ipc_msg *m = NULL, *req;
	int64_t t0, dt;

	chan_pair(NULL, NULL, &a, &b);
	t0 = test_now_ms();
	assert_int_equal(ipc_chan_call(a, T_FDS, NULL, NULL, 0, 150, &m, NULL), -ETIMEDOUT);
	dt = test_now_ms() - t0;
	/* It waited the whole timeout; the upper bound only catches a wait without end (a busy
	 * machine may add seconds). */
	assert_true(dt >= 150 && dt < 60000);
	assert_null(m);

	/* The server answers late, with fds; the client drops the answer and its fds. */
	assert_int_equal(ipc_chan_recv(b, &req), 0);
	make_fds(fds, 2);
	assert_int_equal(ipc_chan_reply(b, req, NULL, fds, 2), 0);
	close_all(fds, 2);
	ipc_msg_free(req);
	assert_int_equal(ipc_chan_recv(a, &m), -EAGAIN);
	assert_false(ipc_chan_has_queued(a));
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* A broker that restarts adopts its predecessor's channel: the answers still in the socket for
 * the predecessor's requests match nothing of the new channel. Without ipc_chan_take_over() that
 * is -EPROTO (a broken peer); with it they are dropped with their fds, and the new channel's own
 * requests, numbered from the id it chose, are answered as usual. */
static void test_ipc_take_over_predecessor_answers_dropped(void **state)
{
	int before = count_fds(), fds[2];
	struct ipc_chan *a, *b, *a2;
	struct ipc_msg *m = NULL, *req;
	uint32_t id;
	int fd;

	chan_pair(NULL, NULL, &a, &b);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(ipc_chan_request(a, T_FDS, NULL, NULL, 0, NULL), 0);
		assert_int_equal(ipc_chan_recv(b, &req), 0);
		make_fds(fds, 2);
		assert_int_equal(ipc_chan_reply(b, req, NULL, fds, 2), 0);
		close_all(fds, 2);
		ipc_msg_free(req);
	}
	/* The predecessor is gone before it read them; its successor holds the same socket. */
	fd = dup(ipc_chan_fd(a));
	ipc_chan_free(a);
	assert_int_equal(ipc_chan_new(fd, &test_proto_client, NULL, &a2), 0);
	/* The first is refused as a broken peer's; the second is still there. */
	assert_int_equal(ipc_chan_recv(a2, &m), -EPROTO);
	assert_null(m);
	ipc_chan_take_over(a2, 0x5eed0000u);
	assert_int_equal(ipc_chan_recv(a2, &m), -EAGAIN);
	assert_null(m);
	assert_int_equal(ipc_chan_request(a2, T_FDS, NULL, NULL, 0, &id), 0);
	assert_int_equal(id, 0x5eed0000u);
	assert_int_equal(ipc_chan_recv(b, &req), 0);
	assert_int_equal(req->id, 0x5eed0000u);
	assert_int_equal(ipc_chan_reply(b, req, NULL, NULL, 0), 0);
	ipc_msg_free(req);
	assert_int_equal(ipc_chan_recv(a2, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	assert_int_equal(m->id, 0x5eed0000u);
	ipc_msg_free(m);
	ipc_chan_free(a2);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

/* A request its owner knows will never be answered (the peer that read it is gone) is forgotten:
 * its slot is free again, and a second forget finds nothing. */
static void test_ipc_forget_frees_slot(void **state)
{
	struct ipc_limits l = ipc_limits_default;
	struct ipc_chan *a, *b;
	uint32_t id;

	l.max_outstanding = 1;
	chan_pair(&l, NULL, &a, &b);
	assert_int_equal(ipc_chan_request(a, T_FDS, NULL, NULL, 0, &id), 0);
	assert_int_equal(ipc_chan_request(a, T_FDS, NULL, NULL, 0, NULL), -ENOBUFS);
	assert_int_equal(ipc_chan_forget(a, id), 0);
	assert_int_equal(ipc_chan_forget(a, id), -ENOENT);
	assert_int_equal(ipc_chan_request(a, T_FDS, NULL, NULL, 0, NULL), 0);
	ipc_chan_free(a);
	ipc_chan_free(b);
}

struct interleave {
	int pipe_w; /* sent with the event */
};

static void peer_interleave(struct peer *p)
{
	struct ipc_msg *req;
	Vb__Dev__Data ev = data_of("event"), q = data_of("question"), ans = data_of("answer");

	p->result = wait_recv(p->c, &req, 5000);
	if (p->result < 0)
		return;
	if (!p->result)
		p->result = ipc_chan_event(p->c, T_NOTE, &ev.base, &p->raw, 1);
	if (!p->result)
		p->result = ipc_chan_request(p->c, T_PING, &q.base, NULL, 0, NULL);
	if (!p->result)
		p->result = ipc_chan_reply(p->c, req, &ans.base, NULL, 0);
	ipc_msg_free(req);
}

static void test_ipc_call_events_queued_and_delivered_after(void **state)
{
	int before = count_fds(), pw[2];
	struct ipc_chan *a;
	struct peer p = {0};
	struct ipc_msg *m;
	char c;

	assert_int_equal(pipe2(pw, O_CLOEXEC), 0);
	p.raw = pw[1];
	chan_pair(NULL, NULL, &a, &p.c);
	peer_start(&p, peer_interleave);
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, TEST_HANG_MS, &m, NULL), 0);
	peer_join(&p);
	assert_int_equal(p.result, 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	assert_data(m, "answer");
	ipc_msg_free(m);

	assert_true(ipc_chan_has_queued(a));
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	assert_int_equal(m->type, T_NOTE);
	assert_data(m, "event");
	assert_int_equal(m->nfds, 1);
	assert_int_equal(write(m->fds[0], "!", 1), 1);
	assert_int_equal(read(pw[0], &c, 1), 1);
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REQUEST);
	assert_data(m, "question");
	ipc_msg_free(m);
	assert_false(ipc_chan_has_queued(a));
	assert_int_equal(ipc_chan_recv(a, &m), -EAGAIN);
	close(pw[0]);
	close(pw[1]);
	ipc_chan_free(a);
	ipc_chan_free(p.c);
	assert_int_equal(count_fds(), before);
}

/* A channel that waits for answers in recvmsg() (as libvfiobroker's do): answers, events and
 * requests that arrive first, timeouts (finite and none) behave as with poll(), and nothing
 * else of the channel blocks. */
static void test_ipc_call_wait_in_recv_same_answers_and_never_blocks_otherwise(void **state)
{
	int before = count_fds(), pw[2];
	struct ipc_chan *a;
	struct peer p = {0};
	struct ipc_msg *m = NULL, *req;
	struct ipc_error err;
	int64_t t0, dt;

	assert_int_equal(pipe2(pw, O_CLOEXEC), 0);
	p.raw = pw[1];
	chan_pair(NULL, NULL, &a, &p.c);
	assert_int_equal(ipc_chan_wait_in_recv(a), 0);
	assert_int_equal(fcntl(ipc_chan_fd(a), F_GETFL) & O_NONBLOCK, 0);
	/* A receive on an empty socket still returns at once. */
	assert_int_equal(ipc_chan_recv(a, &m), -EAGAIN);

	/* The event and the request that come before the answer are queued, in order. */
	peer_start(&p, peer_interleave);
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, 5000, &m, NULL), 0);
	peer_join(&p);
	assert_int_equal(p.result, 0);
	assert_data(m, "answer");
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_recv(a, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_REQUEST);
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_recv(a, &m), -EAGAIN);

	/* No answer: the call's own timeout, not the previous call's. */
	m = NULL;
	t0 = test_now_ms();
	assert_int_equal(ipc_chan_call(a, T_FDS, NULL, NULL, 0, 150, &m, NULL), -ETIMEDOUT);
	dt = test_now_ms() - t0;
	assert_true(dt >= 150 && dt < 60000);
	assert_null(m);
	assert_int_equal(ipc_chan_recv(p.c, &req), 0);
	ipc_msg_free(req);

	/* No timeout at all (-1): the answer, however late, is waited for. */
	peer_start(&p, peer_error_reply);
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, -1, &m, &err), -EPERM);
	peer_join(&p);
	assert_int_equal(p.result, 0);
	assert_string_equal(err.message, "no access to 0000:00:03.0");

	close(pw[0]);
	close(pw[1]);
	ipc_chan_free(a);
	ipc_chan_free(p.c);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_call_queue_full_enobufs_nothing_lost(void **state)
{
	int before = count_fds(), i, fd;
	struct ipc_chan *a, *b;
	struct ipc_msg *m = NULL;
	Vb__Dev__Data d;
	char s[16];

	chan_pair(NULL, NULL, &a, &b);
	for (i = 0; i < IPC_QUEUE_MAX + 3; i++) {
		snprintf(s, sizeof(s), "%d", i);
		d = data_of(s);
		make_fds(&fd, 1);
		assert_int_equal(ipc_chan_event(b, T_NOTE, &d.base, &fd, 1), 0);
		close(fd);
	}
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, 1000, &m, NULL), -ENOBUFS);
	assert_null(m);
	for (i = 0; i < IPC_QUEUE_MAX + 3; i++) {
		snprintf(s, sizeof(s), "%d", i);
		assert_int_equal(ipc_chan_recv(a, &m), 0);
		assert_data(m, s);
		assert_int_equal(m->nfds, 1);
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_chan_recv(a, &m), -EAGAIN);
	ipc_chan_free(a);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipc_roundtrip_fds_contents_readable),
	    cmocka_unit_test(test_ipc_wire_header_little_endian_layout),
	    cmocka_unit_test(test_ipc_largest_datagram_delivered_one_more_refused),
	    cmocka_unit_test(test_ipc_call_error_reply_code_and_message),
	    cmocka_unit_test(test_ipc_call_peer_hangup_epipe),
	    cmocka_unit_test(test_ipc_call_timeout_late_answer_dropped),
	    cmocka_unit_test(test_ipc_take_over_predecessor_answers_dropped),
	    cmocka_unit_test(test_ipc_forget_frees_slot),
	    cmocka_unit_test(test_ipc_call_wait_in_recv_same_answers_and_never_blocks_otherwise),
	    cmocka_unit_test(test_ipc_call_events_queued_and_delivered_after),
	    cmocka_unit_test(test_ipc_call_queue_full_enobufs_nothing_lost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
