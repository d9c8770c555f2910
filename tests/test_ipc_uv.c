/*
 * Tests of ipc_uv: delivery of messages from a libuv loop, hang-up, errors, closing from inside
 * the callback, and messages that a synchronous call queued outside the loop.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "ipc_test.h"
#include "ipc_uv.h"
#include "test_wait.h"

#define MAX_SEEN 8

struct seen {
	int nmsgs;
	char data[MAX_SEEN][16];
	int kinds[MAX_SEEN];
	int nerrs;
	int err;
	bool close_on_first; /* close the ipc_uv from inside the callback */
	int closed;
	struct ipc_uv *u;
};

static void on_closed(void *data)
{
	struct seen *s = data;

	s->closed++;
}

static void on_msg(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct seen *s = data;

	if (!m) {
		s->nerrs++;
		s->err = err;
		return;
	}
	if (s->nmsgs < MAX_SEEN) {
		const Vb__Dev__Data *d = (const Vb__Dev__Data *)m->body;
		size_t n = d->data.len < 15 ? d->data.len : 15;

		memcpy(s->data[s->nmsgs], d->data.data, n);
		s->data[s->nmsgs][n] = '\0';
		s->kinds[s->nmsgs] = m->kind;
	}
	s->nmsgs++;
	ipc_msg_free(m);
	if (s->close_on_first)
		ipc_uv_close(u, on_closed);
}

static void send_event(struct ipc_chan *c, const char *text)
{
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	d.data.data = (uint8_t *)text;
	d.data.len = strlen(text);
	assert_int_equal(ipc_chan_event(c, T_NOTE, &d.base, NULL, 0), 0);
}

/* Runs the loop until `done`, each turn once it has something to do (its backend fd ready, a
 * timer due; at most 100 ms), up to TEST_HANG_MS: a broken ipc_uv, or a peer thread that never
 * sends, fails the test, a slow machine does not. */
static void run_until(uv_loop_t *loop, const int *done, int want)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;

	while (*done < want && test_now_ms() < deadline) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (*done < want) {
			struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN};
			int t = uv_backend_timeout(loop);

			poll(&p, 1, t >= 0 && t < 100 ? t : 100);
		}
	}
}

static void finish(uv_loop_t *loop, struct seen *s)
{
	if (!s->closed) {
		ipc_uv_close(s->u, on_closed);
		uv_run(loop, UV_RUN_DEFAULT);
	}
	assert_int_equal(s->closed, 1);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* A channel pair on a new loop: `a` driven by ipc_uv into `s`, `b` the peer. */
static void pair_start(uv_loop_t *loop, struct ipc_chan **a, struct ipc_chan **b, struct seen *s)
{
	int sv[2];

	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_client, NULL, b), 0);
	assert_int_equal(ipc_uv_start(loop, *a, on_msg, s, &s->u), 0);
}

static void test_ipc_uv_delivers_messages_then_hangup(void **state)
{
	int before = count_fds();
	struct ipc_chan *a, *b;
	struct seen s = {0};
	uv_loop_t loop;

	pair_start(&loop, &a, &b, &s);
	assert_ptr_equal(ipc_uv_chan(s.u), a);
	send_event(b, "one");
	send_event(b, "two");
	run_until(&loop, &s.nmsgs, 2);
	send_event(b, "three");
	ipc_chan_free(b);
	run_until(&loop, &s.nerrs, 1);

	assert_int_equal(s.nmsgs, 3);
	assert_string_equal(s.data[0], "one");
	assert_string_equal(s.data[1], "two");
	assert_string_equal(s.data[2], "three");
	assert_int_equal(s.kinds[2], IPC_KIND_EVENT);
	assert_int_equal(s.nerrs, 1);
	assert_true(s.err == -EPIPE || s.err == -ECONNRESET);
	/* Nothing more comes after the error. */
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(s.nerrs, 1);
	finish(&loop, &s);
	assert_int_equal(count_fds(), before);
}

/* A peer that closes its end with our datagrams still unread leaves an error on our socket
 * (POLLERR, which libuv's poll handle reports as EBADF): that is a hang-up, reported as one. */
static void test_ipc_uv_peer_closes_with_ours_unread_is_hangup(void **state)
{
	int before = count_fds();
	struct ipc_chan *a, *b;
	struct seen s = {0};
	uv_loop_t loop;

	pair_start(&loop, &a, &b, &s);
	send_event(a, "unread");
	ipc_chan_free(b);
	run_until(&loop, &s.nerrs, 1);
	assert_int_equal(s.nmsgs, 0);
	assert_int_equal(s.nerrs, 1);
	if (s.err != -EPIPE && s.err != -ECONNRESET)
		fail_msg("the hang-up was reported as %d (%s)", s.err, strerror(-s.err));
	finish(&loop, &s);
	assert_int_equal(count_fds(), before);
}

/* Paused, nothing is read: what the peer sent stays in the socket (a recv on the fd finds it,
 * as a re-executed broker would) and no turn of the loop delivers it, even with the socket
 * readable and the loop running; resumed, it is delivered. */
static void test_ipc_uv_paused_leaves_messages_in_socket(void **state)
{
	struct pollfd p;
	int sv[2];
	struct ipc_chan *a, *b;
	struct seen s = {0};
	uv_loop_t loop;
	char byte;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, &a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_client, NULL, &b), 0);
	assert_int_equal(ipc_uv_start(&loop, a, on_msg, &s, &s.u), 0);
	ipc_uv_pause(s.u, true);
	send_event(b, "one");
	p = (struct pollfd){.fd = sv[0], .events = POLLIN};
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	for (int i = 0; i < 3; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(s.nmsgs, 0);
	assert_int_equal(recv(sv[0], &byte, 1, MSG_PEEK | MSG_DONTWAIT), 1);
	ipc_uv_pause(s.u, false);
	run_until(&loop, &s.nmsgs, 1);
	assert_string_equal(s.data[0], "one");
	ipc_chan_free(b);
	run_until(&loop, &s.nerrs, 1);
	finish(&loop, &s);
}

static void test_ipc_uv_close_inside_callback_stops_delivery(void **state)
{
	int before = count_fds(), sv[2], r;
	struct ipc_chan *a, *b;
	struct seen s = {.close_on_first = true};
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, &a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_client, NULL, &b), 0);
	assert_int_equal(ipc_uv_start(&loop, a, on_msg, &s, &s.u), 0);
	send_event(b, "first");
	send_event(b, "second");
	send_event(b, "third");
	uv_run(&loop, UV_RUN_DEFAULT); /* returns once the closed handles are gone */
	assert_int_equal(s.nmsgs, 1);
	assert_string_equal(s.data[0], "first");
	assert_int_equal(s.nerrs, 0);
	assert_int_equal(s.closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	/* The channel went with the ipc_uv: the peer sees the hang-up (a reset: it went with
	 * unread messages). */
	r = ipc_chan_event(b, T_NOTE, NULL, NULL, 0);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_uv_malformed_datagram_is_final(void **state)
{
	int before = count_fds(), sv[2], p[2];
	struct ipc_chan *a, *b;
	struct seen s = {0};
	uv_loop_t loop;
	uint8_t junk[40] = "definitely not a vfio-broker datagram";
	struct iovec iov = {.iov_base = junk, .iov_len = sizeof(junk)};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *cm;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, &a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_client, NULL, &b), 0);
	assert_int_equal(ipc_uv_start(&loop, a, on_msg, &s, &s.u), 0);
	send_event(b, "good");
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
	assert_int_equal(sendmsg(ipc_chan_fd(b), &mh, 0), sizeof(junk));
	close(p[0]);
	close(p[1]);
	send_event(b, "after");
	run_until(&loop, &s.nerrs, 1);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(s.nmsgs, 1);
	assert_string_equal(s.data[0], "good");
	assert_int_equal(s.nerrs, 1);
	assert_int_equal(s.err, -EBADMSG);
	finish(&loop, &s);
	ipc_chan_free(b);
	assert_int_equal(count_fds(), before);
}

struct answerer {
	struct ipc_chan *c;
	int result;
};

/* Sends an event, then answers the request it was waiting for. */
static void *answer_after_event(void *arg)
{
	struct answerer *w = arg;
	struct pollfd pfd = {.fd = ipc_chan_fd(w->c), .events = POLLIN};
	Vb__Dev__Data d = VB__DEV__DATA__INIT;
	struct ipc_msg *req;

	if (poll(&pfd, 1, TEST_HANG_MS) != 1 || ipc_chan_recv(w->c, &req) < 0) {
		w->result = -1;
		return NULL;
	}
	d.data.data = (uint8_t *)"queued";
	d.data.len = 6;
	w->result = ipc_chan_event(w->c, T_NOTE, &d.base, NULL, 0);
	if (!w->result)
		w->result = ipc_chan_reply(w->c, req, NULL, NULL, 0);
	ipc_msg_free(req);
	return NULL;
}

static void test_ipc_uv_delivers_messages_queued_by_call(void **state)
{
	int before = count_fds(), sv[2];
	struct ipc_chan *a;
	struct answerer w = {0};
	struct seen s = {.close_on_first = true};
	struct ipc_msg *m;
	pthread_t t;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_client, NULL, &a), 0);
	assert_int_equal(ipc_chan_new(sv[1], &test_proto_server, NULL, &w.c), 0);
	assert_int_equal(ipc_uv_start(&loop, a, on_msg, &s, &s.u), 0);
	/* A synchronous call outside the loop's callbacks, as a timer callback might make. */
	assert_int_equal(pthread_create(&t, NULL, answer_after_event, &w), 0);
	assert_int_equal(ipc_chan_call(a, T_PING, NULL, NULL, 0, TEST_HANG_MS, &m, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(w.result, 0);
	ipc_msg_free(m);
	assert_true(ipc_chan_has_queued(a));
	/* The socket is empty: only the queue can deliver the event. */
	run_until(&loop, &s.nmsgs, 1);
	assert_int_equal(s.nmsgs, 1);
	assert_string_equal(s.data[0], "queued");
	finish(&loop, &s);
	ipc_chan_free(w.c);
	assert_int_equal(count_fds(), before);
}

static void test_ipc_uv_start_invalid_keeps_channel(void **state)
{
	int before = count_fds(), sv[2];
	struct ipc_chan *a;
	struct ipc_uv *u = NULL;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	assert_int_equal(ipc_chan_new(sv[0], &test_proto_server, NULL, &a), 0);
	assert_int_equal(ipc_uv_start(&loop, a, NULL, NULL, &u), -EINVAL);
	assert_int_equal(ipc_uv_start(NULL, a, on_msg, NULL, &u), -EINVAL);
	assert_null(u);
	/* The channel is still the caller's and works. */
	assert_int_equal(ipc_chan_fd(a), sv[0]);
	assert_true(fcntl(sv[0], F_GETFD) >= 0);
	ipc_chan_free(a);
	close(sv[1]);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(count_fds(), before);
}

/* libuv opens process-wide fds (the signal lock pipe) with its first loop and keeps them: open
 * them before any test counts fds. */
static int warm_up(void **state)
{
	uv_loop_t loop;

	if (uv_loop_init(&loop) < 0)
		return -1;
	return uv_loop_close(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipc_uv_delivers_messages_then_hangup),
	    cmocka_unit_test(test_ipc_uv_peer_closes_with_ours_unread_is_hangup),
	    cmocka_unit_test(test_ipc_uv_paused_leaves_messages_in_socket),
	    cmocka_unit_test(test_ipc_uv_close_inside_callback_stops_delivery),
	    cmocka_unit_test(test_ipc_uv_malformed_datagram_is_final),
	    cmocka_unit_test(test_ipc_uv_delivers_messages_queued_by_call),
	    cmocka_unit_test(test_ipc_uv_start_invalid_keeps_channel),
	};

	return cmocka_run_group_tests(tests, warm_up, NULL);
}
