/*
 * test_fdstore: the broker's fd store against a fake systemd (a SOCK_DGRAM socket bound here and
 * named by NOTIFY_SOCKET, read back message by message with the fds that came along), the read
 * side against a LISTEN_FDS environment made here, and the re-exec handover by executing this
 * test binary itself, which then reports what it received through the fds it was handed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "fdstore.h"

#define EXEC_CHILD_ARG "--fdstore-exec-child"

static char dir[64];
static char sock_path[96];
static int notify_fd = -1;
static const char *self_exe;

/* One datagram of the fake systemd: its text and the fds that came with it. */
struct msg {
	char text[512];
	int fds[4];
	int nfds;
};

static int setup(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(dir, sizeof(dir), "/tmp/test_fdstore.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(notify_fd >= 0);
	assert_int_equal(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", sock_path, 1), 0);
	return 0;
}

static int teardown(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	close(notify_fd);
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

/* The next datagram, if one is queued (sendmsg on a unix datagram socket has queued it by the
 * time the sender returns); false when there is none. */
static bool next_msg(struct msg *m)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = {m->text, sizeof(m->text) - 1};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	m->nfds = 0;
	if (n < 0) {
		assert_int_equal(errno, EAGAIN);
		return false;
	}
	m->text[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		m->nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(m->fds, CMSG_DATA(c), (size_t)m->nfds * sizeof(int));
	}
	return true;
}

static void msg_close(struct msg *m)
{
	for (int i = 0; i < m->nfds; i++)
		close(m->fds[i]);
	m->nfds = 0;
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

static void test_fdstore_put_sends_name_fdpoll0_and_the_fd(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct msg m;

	assert_int_equal(brk_fdstore_new(true, 0, &s), 0);
	assert_int_equal(brk_fdstore_put(s, "dev.0000-00-03.0", fd), 0);
	assert_true(next_msg(&m));
	assert_string_equal(m.text, "FDSTORE=1\nFDPOLL=0\nFDNAME=dev.0000-00-03.0");
	assert_int_equal(m.nfds, 1);
	assert_same_file(m.fds[0], fd);
	msg_close(&m);
	assert_false(next_msg(&m));
	assert_int_equal(brk_fdstore_get(s, "dev.0000-00-03.0"), fd);
	assert_int_equal(brk_fdstore_count(s), 1);
	brk_fdstore_free(s);
}

static void test_fdstore_put_same_name_removes_old_first(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int b = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	struct msg m;

	assert_int_equal(brk_fdstore_new(true, 0, &s), 0);
	assert_int_equal(brk_fdstore_put(s, "wch.0000-00-03.0", a), 0);
	assert_true(next_msg(&m));
	msg_close(&m);
	assert_int_equal(brk_fdstore_put(s, "wch.0000-00-03.0", b), 0);
	assert_true(next_msg(&m));
	assert_string_equal(m.text, "FDSTOREREMOVE=1\nFDNAME=wch.0000-00-03.0");
	assert_int_equal(m.nfds, 0);
	assert_true(next_msg(&m));
	assert_string_equal(m.text, "FDSTORE=1\nFDPOLL=0\nFDNAME=wch.0000-00-03.0");
	assert_int_equal(m.nfds, 1);
	assert_same_file(m.fds[0], b);
	msg_close(&m);
	assert_int_equal(brk_fdstore_count(s), 1);
	assert_int_equal(brk_fdstore_get(s, "wch.0000-00-03.0"), b);
	brk_fdstore_free(s);
}

static void test_fdstore_remove_sends_fdstoreremove_and_forgets(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct msg m;

	assert_int_equal(brk_fdstore_new(true, 0, &s), 0);
	assert_int_equal(brk_fdstore_put(s, "grp.5", fd), 0);
	assert_true(next_msg(&m));
	msg_close(&m);
	assert_int_equal(brk_fdstore_remove(s, "grp.5"), 0);
	assert_true(next_msg(&m));
	assert_string_equal(m.text, "FDSTOREREMOVE=1\nFDNAME=grp.5");
	assert_int_equal(m.nfds, 0);
	assert_int_equal(brk_fdstore_get(s, "grp.5"), -ENOENT);
	assert_int_equal(brk_fdstore_remove(s, "grp.5"), -ENOENT);
	assert_false(next_msg(&m));
	assert_int_equal(brk_fdstore_count(s), 0);
	brk_fdstore_free(s);
}

/* What the last broker stored and this one does not take over: removed from systemd's store
 * although this broker never put it there. */
static void test_fdstore_forget_unheld_name_still_removes_it(void **state)
{
	struct brk_fdstore *s;
	struct msg m;

	assert_int_equal(brk_fdstore_new(true, 0, &s), 0);
	assert_int_equal(brk_fdstore_forget(s, "dev.0000-00-04.0"), 0);
	assert_true(next_msg(&m));
	assert_string_equal(m.text, "FDSTOREREMOVE=1\nFDNAME=dev.0000-00-04.0");
	assert_int_equal(m.nfds, 0);
	assert_int_equal(brk_fdstore_forget(s, "bad:name"), -EINVAL);
	assert_false(next_msg(&m));
	brk_fdstore_free(s);
}

static void test_fdstore_bad_name_refused_nothing_sent(void **state)
{
	static const char *const bad[] = {"", "a:b", "sp ace", "tab\t", "\x7f", "caf\xc3\xa9"};
	char longname[BRK_FDSTORE_NAME_MAX + 2];
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct msg m;

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(brk_fdstore_new(true, 0, &s), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(brk_fdstore_put(s, bad[i], fd), -EINVAL);
	assert_int_equal(brk_fdstore_put(s, longname, fd), -EINVAL);
	longname[BRK_FDSTORE_NAME_MAX] = '\0'; /* 255: the longest systemd takes */
	assert_int_equal(brk_fdstore_put(s, longname, fd), 0);
	assert_true(next_msg(&m));
	msg_close(&m);
	assert_int_equal(brk_fdstore_put(s, "ok", -1), -EINVAL);
	assert_false(next_msg(&m));
	assert_int_equal(brk_fdstore_count(s), 1);
	brk_fdstore_free(s);
}

static void test_fdstore_max_reached_enospc_replace_still_allowed(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_int_equal(brk_fdstore_new(false, 2, &s), 0);
	assert_int_equal(brk_fdstore_put(s, "a", fd), 0);
	assert_int_equal(brk_fdstore_put(s, "b", fd), 0);
	assert_int_equal(brk_fdstore_put(s, "c", fd), -ENOSPC);
	assert_int_equal(brk_fdstore_put(s, "b", fd), 0);
	assert_int_equal(brk_fdstore_count(s), 2);
	brk_fdstore_free(s);
}

static void test_fdstore_without_systemd_sends_nothing(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	struct msg m;

	assert_int_equal(brk_fdstore_new(false, 0, &s), 0);
	assert_false(brk_fdstore_systemd(s));
	assert_int_equal(brk_fdstore_put(s, "state", fd), 0);
	assert_int_equal(brk_fdstore_remove(s, "state"), 0);
	assert_false(next_msg(&m));
	brk_fdstore_free(s);
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(brk_fdstore_new(true, 0, &s), -ENOTCONN);
}

static void test_fdstore_name_bdf_colons_become_dashes_and_back(void **state)
{
	char name[BRK_FDSTORE_NAME_MAX + 1], id[64];

	assert_int_equal(brk_fdstore_name(name, sizeof(name), "dev", "0000:00:03.0"), 0);
	assert_string_equal(name, "dev.0000-00-03.0");
	assert_int_equal(brk_fdstore_name_id(name, "dev", id, sizeof(id)), 0);
	assert_string_equal(id, "0000:00:03.0");
	assert_int_equal(brk_fdstore_name(name, sizeof(name), "ctr", "vm-1"), 0);
	assert_int_equal(brk_fdstore_name_id(name, "ctr", id, sizeof(id)), 0);
	assert_string_equal(id, "vm-1"); /* not BDF-shaped: dashes stay */
	assert_int_equal(brk_fdstore_name(name, sizeof(name), "state", NULL), 0);
	assert_string_equal(name, "state");
	assert_int_equal(brk_fdstore_name_id("state", "dev", id, sizeof(id)), -ENOENT);
	assert_int_equal(brk_fdstore_name_id("dev.", "dev", id, sizeof(id)), -ENOENT);
	assert_int_equal(brk_fdstore_name_id("device.x", "dev", id, sizeof(id)), -ENOENT);
	assert_int_equal(brk_fdstore_name(name, sizeof(name), "ctr", "a b"), -EINVAL);
	assert_int_equal(brk_fdstore_name(name, 8, "ctr", "longer-than-8"), -ENAMETOOLONG);
}

/* In a child (fds 3 and 4 are the test's to clobber there): 0 when receive sorts two passed fds
 * by name, takes them in order and closes the one not taken. */
static int receive_child(void)
{
	struct brk_fdstore_set *set = NULL;
	char pid[32];
	int p[2], a, b, dup_named;

	if (pipe2(p, O_CLOEXEC) < 0 || dup2(p[0], 3) < 0 || dup2(p[1], 4) < 0 || dup2(p[1], 5) < 0)
		return 10;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "3", 1);
	setenv("LISTEN_FDNAMES", "state:wch.0000-00-03.0:wch.0000-00-03.0", 1);
	if (brk_fdstore_receive(&set) < 0 || set->n != 3)
		return 11;
	if (getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES") || getenv("LISTEN_PID"))
		return 12; /* a worker must not see them */
	if (!(fcntl(3, F_GETFD) & FD_CLOEXEC) || !(fcntl(5, F_GETFD) & FD_CLOEXEC))
		return 13;
	a = brk_fdstore_set_take(set, "state");
	b = brk_fdstore_set_take(set, "wch.0000-00-03.0");
	if (a != 3 || b != 4 || brk_fdstore_set_take(set, "state") != -ENOENT)
		return 14;
	dup_named = brk_fdstore_set_take(set, "wch.0000-00-03.0");
	if (dup_named != 5)
		return 15;
	set->e[2].fd = dup_named; /* give it back: set_free must close it */
	brk_fdstore_set_free(set);
	if (fcntl(5, F_GETFD) >= 0 || fcntl(3, F_GETFD) < 0)
		return 16;
	return 0;
}

static void test_fdstore_receive_sorts_by_name_closes_untaken(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(receive_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_fdstore_receive_none_passed_is_empty(void **state)
{
	struct brk_fdstore_set *set = NULL;

	unsetenv("LISTEN_FDS");
	assert_int_equal(brk_fdstore_receive(&set), 0);
	assert_int_equal(set->n, 0);
	assert_int_equal(brk_fdstore_set_take(set, "state"), -ENOENT);
	brk_fdstore_set_free(set);
}

/* The exec'd image: writes each received fd's name into that fd (pipes the parent reads). */
static int exec_child_main(void)
{
	struct brk_fdstore_set *set = NULL;

	if (brk_fdstore_receive(&set) < 0)
		return 20;
	for (size_t i = 0; i < set->n; i++) {
		size_t len = strlen(set->e[i].name);

		if (write(set->e[i].fd, set->e[i].name, len) != (ssize_t)len)
			return 21;
	}
	brk_fdstore_set_free(set);
	return 0;
}

static void test_fdstore_exec_hands_every_fd_over_by_name(void **state)
{
	static const char *const names[] = {"ctl", "dev.0000-00-03.0", "grp.5"};
	int p[ARRAY_SIZE(names)][2], status;
	char buf[64];
	pid_t pid;

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		assert_int_equal(pipe2(p[i], O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = {(char *)self_exe, EXEC_CHILD_ARG, NULL};
		struct brk_fdstore *s;
		bool moved;
		int exe = open(self_exe, O_RDONLY | O_CLOEXEC);

		if (exe < 0 || brk_fdstore_new(false, 0, &s) < 0)
			_exit(30);
		/* In reverse order of their numbers, so that the move has to shuffle. */
		for (size_t i = ARRAY_SIZE(names); i-- > 0;)
			if (brk_fdstore_put(s, names[i], p[i][1]) < 0)
				_exit(31);
		brk_fdstore_exec(s, exe, argv, &moved);
		_exit(32);
	}
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		close(p[i][1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		ssize_t n = read(p[i][0], buf, sizeof(buf) - 1);

		assert_true(n > 0);
		buf[n] = '\0';
		assert_string_equal(buf, names[i]);
		close(p[i][0]);
	}
}

static void test_fdstore_exec_not_executable_moves_nothing(void **state)
{
	struct brk_fdstore *s;
	_cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	char *argv[] = {"x", NULL};
	bool moved = true;

	assert_int_equal(brk_fdstore_new(false, 0, &s), 0);
	assert_int_equal(brk_fdstore_put(s, "state", fd), 0);
	assert_int_equal(brk_fdstore_exec(s, fd, argv, &moved), -EACCES);
	assert_false(moved);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	brk_fdstore_free(s);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fdstore_put_sends_name_fdpoll0_and_the_fd, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_put_same_name_removes_old_first, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_remove_sends_fdstoreremove_and_forgets,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_forget_unheld_name_still_removes_it, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_bad_name_refused_nothing_sent, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_max_reached_enospc_replace_still_allowed,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fdstore_without_systemd_sends_nothing, setup,
					    teardown),
	    cmocka_unit_test(test_fdstore_name_bdf_colons_become_dashes_and_back),
	    cmocka_unit_test(test_fdstore_receive_sorts_by_name_closes_untaken),
	    cmocka_unit_test(test_fdstore_receive_none_passed_is_empty),
	    cmocka_unit_test(test_fdstore_exec_hands_every_fd_over_by_name),
	    cmocka_unit_test(test_fdstore_exec_not_executable_moves_nothing),
	};

	if (argc == 2 && strcmp(argv[1], EXEC_CHILD_ARG) == 0)
		return exec_child_main();
	self_exe = "/proc/self/exe";
	return cmocka_run_group_tests(tests, NULL, NULL);
}
