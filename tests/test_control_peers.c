/*
 * test_control_peers: the control socket server's admission and its peers, with a fake daemon
 * behind brk_ctl_ops (control_env.c). Admission by SO_PEERCRED and SO_PEERGROUPS (with peers of
 * other uids and groups, forked and set up with setgroups/setresgid/setresuid, so the tests that
 * need them run as root), refused peers that linger without taking an admin's room, and peers
 * that never read their replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.pb-c.h"
#include "control.h"
#include "fdstore.h"
#include "ipc.h"
#include "test_wait.h"
#include "control_env.h"

static void test_control_non_admin_refused_with_eperm(void **state)
{
	struct env e;

	/* We are not uid 4242, and no admin gid is configured. */
	env_start(&e, 4242, false, 0);
	list(&e);
	expect_error(&e, EPERM, "is not the broker's admin (uid 4242)");
	expect_closed(&e);
	assert_int_equal(e.fake.lists, 0);
	assert_int_equal(brk_ctl_sessions(e.ctl), 0);
	env_stop(&e);
}

static void test_control_admin_gid_admitted(void **state)
{
	struct env e;

	env_start(&e, 4242, true, getgid());
	list(&e);
	expect_reply(&e, NULL);
	assert_int_equal(e.fake.lists, 1);
	env_stop(&e);
}

static void test_control_admin_uid_admitted(void **state)
{
	struct env e;

	env_start(&e, getuid(), true, 4242);
	list(&e);
	expect_reply(&e, NULL);
	list(&e);
	expect_reply(&e, NULL);
	assert_int_equal(e.fake.lists, 2);
	env_stop(&e);
}

/* ---- peers that do not read ---------------------------------------------------------------- */

/* How many datagrams of `len` bytes a fresh socket pair holds before a send would block: what a
 * peer that never reads can take before the broker's sends start queueing. */
static int socket_capacity(size_t len)
{
	uint8_t buf[64] = {0};
	int sv[2], n = 0;

	assert_true(len <= sizeof(buf));
	assert_int_equal(ipc_socketpair(sv), 0);
	while (send(sv[0], buf, len, MSG_DONTWAIT) == (ssize_t)len)
		n++;
	assert_int_equal(errno, EAGAIN);
	close(sv[0]);
	close(sv[1]);
	return n;
}

/* A client that may have thousands of requests in flight, whose own sends never queue (a send
 * the broker's socket cannot take yet is -ETIMEDOUT: the test then runs the loop and retries). */
static struct ipc_chan *greedy_client(struct env *e)
{
	struct ipc_limits l = ipc_limits_default;
	struct ipc_chan *c;
	int fd;

	l.max_outstanding = 4096;
	l.queue_msgs = 0;
	l.send_timeout_ms = 0;
	assert_int_equal(ipc_connect(e->path, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, &l, &c), 0);
	return c;
}

/* Sends `n` LIST_DEVICES on `c` and runs the loop until the daemon has answered them all, or
 * until the broker dropped `c` (false). */
static bool flood_lists(struct env *e, struct ipc_chan *c, int n)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;
	int target = e->fake.lists + n;

	for (int i = 0; i < n; i++) {
		int r;

		while ((r = ipc_chan_request(c, VB__CTL__TYPE__LIST_DEVICES, &req.base, NULL, 0,
					     NULL)) == -ETIMEDOUT)
			uv_run(&e->loop, UV_RUN_NOWAIT);
		if (r == -EPIPE || r == -ECONNRESET)
			return false;
		assert_int_equal(r, 0);
	}
	/* Everything sent is read and answered by the broker in the next rounds of its loop,
	 * unless it closed the connection. */
	for (int i = 0; i < 100000 && e->fake.lists < target; i++) {
		uv_run(&e->loop, UV_RUN_NOWAIT);
		if (brk_ctl_sessions(e->ctl) < 2)
			return false;
	}
	assert_int_equal(e->fake.lists, target);
	return true;
}

static void test_control_reader_stalled_others_served_then_dropped(void **state)
{
	/* An empty ListDevicesReply is a bare header. */
	int cap = socket_capacity(IPC_HDR_SIZE), k = cap + 50;
	struct ipc_msg *m = NULL;
	struct ipc_chan *stalled;
	uint32_t last = 0;
	struct env e;
	int r;

	env_start(&e, getuid(), false, 0);
	stalled = greedy_client(&e);
	/* More answers than its socket holds, less than its send queue's budget: the broker
	 * queues the rest and goes on serving. */
	assert_true(flood_lists(&e, stalled, k));
	assert_int_equal(brk_ctl_sessions(e.ctl), 2);
	list(&e);
	expect_reply(&e, NULL);
	/* Every answer arrives, in order, as the stalled peer reads (the loop flushes). */
	for (int i = 0; i < k; i++) {
		while ((r = ipc_chan_recv(stalled, &m)) == -EAGAIN)
			uv_run(&e.loop, UV_RUN_NOWAIT);
		assert_int_equal(r, 0);
		assert_int_equal(m->kind, IPC_KIND_REPLY);
		assert_true(m->id > last);
		last = m->id;
		ipc_msg_free(m);
	}
	assert_int_equal(ipc_chan_recv(stalled, &m), -EAGAIN);
	/* Now past the budget: the stalled peer is disconnected, the other one still served. */
	assert_false(flood_lists(&e, stalled, cap + (int)ipc_limits_default.queue_msgs + 16));
	for (int i = 0; i < 1000 && brk_ctl_sessions(e.ctl) != 1; i++)
		uv_run(&e.loop, UV_RUN_NOWAIT);
	assert_int_equal(brk_ctl_sessions(e.ctl), 1);
	for (int i = 0; (r = ipc_chan_recv(stalled, &m)) == 0; i++) {
		assert_true(i < cap + 1);
		ipc_msg_free(m);
	}
	assert_true(r == -EPIPE || r == -ECONNRESET);
	ipc_chan_free(stalled);
	list(&e);
	expect_reply(&e, NULL);
	env_stop(&e);
}

/* ---- peers of other users ---------------------------------------------------------------- */

#define OTHER_UID 61234
#define OTHER_GID 61235
#define ADMIN_GID 61236

/* The tests below connect as another user: the socket and its directory must let them. */
static bool need_root(struct env *e)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root to run peers as uid %d (setresuid)\n",
			      OTHER_UID);
		return false;
	}
	assert_int_equal(chmod(e->dir, 0755), 0);
	assert_int_equal(chmod(e->path, 0666), 0);
	return true;
}

/* Forks a peer with these credentials running `fn`; its exit status is fn's result. */
static pid_t spawn_as(gid_t gid, const gid_t *groups, size_t ngroups, int (*fn)(void *arg),
		      void *arg)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
			_exit(100);
		_exit(fn(arg));
	}
	return pid;
}

/* Runs the broker's loop until the peer exits; returns its exit status. */
static int pump_until_exit(struct env *e, pid_t pid)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0), st;

	/* The pidfd turns readable when the peer exits. */
	assert_true(pidfd >= 0);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		assert_true(w >= 0);
		if (w == pid)
			break;
		if (test_now_ms() > deadline)
			fail_msg("peer %d still running after %d ms", (int)pid, TEST_HANG_MS);
		turn(e, pidfd, deadline);
	}
	close(pidfd);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* In the peer: one LIST_DEVICES; 0 when answered, 1 when refused with EPERM, 2 otherwise. */
static int peer_list(void *arg)
{
	Vb__Ctl__ListDevices req = VB__CTL__LIST_DEVICES__INIT;
	const char *path = arg;
	struct ipc_chan *c;
	struct ipc_msg *m;
	int fd, r;

	if (ipc_connect(path, &fd) < 0 || ipc_chan_new(fd, &ipc_proto_control, NULL, &c) < 0)
		return 3;
	r = ipc_chan_call(c, VB__CTL__TYPE__LIST_DEVICES, &req.base, NULL, 0, -1, &m, NULL);
	if (r == 0)
		ipc_msg_free(m);
	ipc_chan_free(c);
	return r == 0 ? 0 : r == -EPERM ? 1 : 2;
}

static void test_control_admin_gid_supplementary_admitted(void **state)
{
	const gid_t admin[] = {ADMIN_GID}, other[] = {OTHER_GID + 10};
	struct env e;

	/* As after `usermod -aG`: the admin group is only a supplementary one of the peer. */
	env_start(&e, 0, true, ADMIN_GID);
	if (!need_root(&e)) {
		env_stop(&e);
		skip();
	}
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, admin, 1, peer_list, e.path)), 0);
	assert_int_equal(e.fake.lists, 1);
	/* Without it, the same user is refused. */
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, other, 1, peer_list, e.path)), 1);
	assert_int_equal(pump_until_exit(&e, spawn_as(OTHER_GID, NULL, 0, peer_list, e.path)), 1);
	assert_int_equal(e.fake.lists, 1);
	env_stop(&e);
}

struct lingerers {
	const char *path;
	int n;
	int ready[2], done[2];
};

/* In the peer: `n` refused connections that never send anything, held until told to go. */
static int peer_linger(void *arg)
{
	struct lingerers *l = arg;
	char c = 0;

	/* Only the test's end of each pipe: if the test dies, the read below sees EOF. */
	close(l->ready[0]);
	close(l->done[1]);
	for (int i = 0; i < l->n; i++) {
		int fd;

		if (ipc_connect(l->path, &fd) < 0)
			return 3;
	}
	if (write(l->ready[1], &c, 1) != 1 || read(l->done[0], &c, 1) != 1)
		return 4;
	return 0;
}

static void test_control_refused_lingerers_leave_admin_room(void **state)
{
	struct lingerers l = {.n = BRK_CTL_MAX_SESSIONS + 16};
	struct pollfd p;
	struct env e;
	pid_t pid;
	char c = 0;
	int64_t deadline;

	env_start(&e, 0, false, 0);
	if (!need_root(&e)) {
		env_stop(&e);
		skip();
	}
	l.path = e.path;
	assert_int_equal(pipe2(l.ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(l.done, O_CLOEXEC), 0);
	pid = spawn_as(OTHER_GID, NULL, 0, peer_linger, &l);
	p = (struct pollfd){.fd = l.ready[0], .events = POLLIN};
	deadline = test_now_ms() + TEST_HANG_MS;
	while (poll(&p, 1, 0) == 0 && test_now_ms() < deadline)
		turn(&e, l.ready[0], deadline);
	assert_int_equal(poll(&p, 1, 0), 1);
	/* 80 refused peers hold their connections; the admin, connecting after them all, gets
	 * in, and the one it had before still works. The broker holds only a few of them. */
	{
		struct ipc_chan *first = e.client;
		int fd;

		assert_int_equal(ipc_connect(e.path, &fd), 0);
		assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, NULL, &e.client), 0);
		list(&e);
		expect_reply(&e, NULL);
		ipc_chan_free(e.client);
		e.client = first;
	}
	list(&e);
	expect_reply(&e, NULL);
	assert_true(brk_ctl_sessions(e.ctl) <= 2 + BRK_CTL_MAX_REFUSED);
	assert_int_equal(write(l.done[1], &c, 1), 1);
	assert_int_equal(pump_until_exit(&e, pid), 0);
	close_pipe(l.ready);
	close_pipe(l.done);
	env_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_control_non_admin_refused_with_eperm),
	    cmocka_unit_test(test_control_admin_gid_admitted),
	    cmocka_unit_test(test_control_admin_uid_admitted),
	    cmocka_unit_test(test_control_reader_stalled_others_served_then_dropped),
	    cmocka_unit_test(test_control_admin_gid_supplementary_admitted),
	    cmocka_unit_test(test_control_refused_lingerers_leave_admin_room),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
