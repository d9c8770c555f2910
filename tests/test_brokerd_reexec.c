/*
 * test_brokerd_reexec: the real vfio-brokerd binary, under its own seccomp policy (kill), re-
 * executes itself on SIGUSR2 three times in a row: the new image passes the filter the first one
 * loaded (dynamic loader, start-up), gets the control socket and the state record handed over,
 * adopts the record (starts 2, 3, 4) and answers on the same socket; SIGINT then ends it cleanly.
 * Host only, no devices: the VFIO side of adoption is test_daemon's and the guest's.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "control.pb-c.h"
#include "ipc.h"
#include "test_wait.h"

static char dir[64], sock[128];

static pid_t broker = -1;

/* The broker's metrics, asked on a fresh connection: the call waits (bounded) for a broker that
 * is still starting up after an exec; the listening socket itself is never closed. A connection
 * the old image had already accepted when it executed the new one is closed by the exec
 * (ECONNRESET): like any control client, this one connects again. */
static char *metrics(void)
{
	Vb__Ctl__MetricsRequest req = VB__CTL__METRICS_REQUEST__INIT;
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	struct ipc_msg *m = NULL;
	struct ipc_chan *c;
	char *text;
	int fd, r;

	do {
		assert_true(test_left_ms(deadline) > 0);
		assert_int_equal(ipc_connect(sock, &fd), 0);
		assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, NULL, &c), 0);
		r = ipc_chan_call(c, VB__CTL__TYPE__METRICS, &req.base, NULL, 0,
				  test_left_ms(deadline), &m, NULL);
		if (r < 0)
			ipc_chan_free(c);
	} while (r == -ECONNRESET || r == -EPIPE);
	assert_int_equal(r, 0);
	text = strdup(((const Vb__Ctl__MetricsReply *)m->body)->text);
	ipc_msg_free(m);
	ipc_chan_free(c);
	return text;
}

/* A test that failed half-way leaves no broker behind. */
static int teardown(void **state)
{
	if (broker > 0) {
		kill(broker, SIGKILL);
		waitpid(broker, NULL, 0);
		broker = -1;
	}
	return 0;
}

static void expect_metric(const char *text, const char *line)
{
	if (!strstr(text, line))
		fail_msg("metrics lack '%s'", line);
}

/* Until the broker's control socket exists: woken by inotify on its directory, or by the
 * broker's exit (its pidfd), which fails the test; bounded by TEST_HANG_MS. */
static void wait_for_socket(pid_t pid, int ino)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct stat st;
	char buf[4096];

	assert_true(pidfd >= 0);
	while (stat(sock, &st) < 0) {
		struct pollfd p[2] = {{.fd = ino, .events = POLLIN},
				      {.fd = pidfd, .events = POLLIN}};

		assert_true(poll(p, 2, test_left_ms(deadline)) > 0);
		if (p[1].revents)
			fail_msg("vfio-brokerd exited before its control socket was there");
		while (read(ino, buf, sizeof(buf)) > 0)
			;
	}
	close(pidfd);
}

static void test_brokerd_reexec_three_times_keeps_socket_and_record(void **state)
{
	char cfg[128], log[128], text[512], line[64];
	int status, lfd, ino;
	pid_t pid;
	FILE *fp;

	snprintf(dir, sizeof(dir), "/tmp/test_brokerd_reexec.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/control.sock", dir);
	snprintf(cfg, sizeof(cfg), "%s/broker.conf", dir);
	snprintf(log, sizeof(log), "%s/broker.log", dir);
	snprintf(text, sizeof(text),
		 "[broker]\nadmin_uid = %u\ncontrol_socket = %s\nruntime_dir = %s/vmm\n"
		 "seccomp = kill\n[devices]\nallow = 1234:11e8\n[worker]\n"
		 "uid_range = 61000-61999\npath = %s\n",
		 (unsigned)getuid(), sock, dir, VB_WORKER_PATH);
	fp = fopen(cfg, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(chmod(cfg, 0600), 0);
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	assert_true(ino >= 0);
	assert_true(inotify_add_watch(ino, dir, IN_CREATE | IN_MOVED_TO) >= 0);
	lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(lfd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(lfd, 2);
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		execl(VB_BROKERD_PATH, VB_BROKERD_PATH, "--config", cfg, (char *)NULL);
		_exit(127);
	}
	broker = pid;
	close(lfd);
	wait_for_socket(pid, ino);
	close(ino);
	free(metrics());
	for (int i = 2; i <= 4; i++) {
		int64_t deadline = test_now_ms() + TEST_HANG_MS;
		char *m;

		assert_int_equal(kill(pid, SIGUSR2), 0);
		snprintf(line, sizeof(line), "vfio_broker_starts_total %d\n", i);
		/* The old image may answer once more before it takes the signal. */
		for (m = metrics(); !strstr(m, line); m = metrics()) {
			free(m);
			assert_true(test_left_ms(deadline) > 0);
		}
		expect_metric(m, "vfio_broker_adoption_attempted 1\n");
		expect_metric(m, "vfio_broker_adoption_untrusted{reason=\"\"} 0\n");
		free(m);
		/* Still the same process: the pid is the broker's across an exec. */
		assert_int_equal(waitpid(pid, &status, WNOHANG), 0);
	}
	assert_int_equal(kill(pid, SIGINT), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	broker = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(text, sizeof(text), "cat '%s' >&2", log);
		(void)!system(text);
		fail_msg("broker ended with status 0x%x", status);
	}
	snprintf(text, sizeof(text), "rm -rf '%s'", dir);
	assert_int_equal(system(text), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_brokerd_reexec_three_times_keeps_socket_and_record,
				      teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
