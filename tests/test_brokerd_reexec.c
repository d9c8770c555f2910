/*
 * test_brokerd_reexec: the real vfio-brokerd binary, under its own seccomp policy (kill), re-
 * executes itself on SIGUSR2 three times in a row: the new image passes the filter the first one
 * loaded (dynamic loader, start-up), gets the control socket and the state record handed over,
 * adopts the record (starts 2, 3, 4) and answers on the same socket; SIGINT then ends it cleanly.
 * A control request in flight at the SIGUSR2 is answered, and its connection kept.
 * Host only, no devices: the VFIO side of adoption is test_daemon's and the guest's.
 */
#include <dirent.h>
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
 * is still starting up after an exec; neither the listening socket nor a connection is ever
 * closed by a re-exec (a connection made meanwhile waits in the backlog, one accepted already is
 * handed over), so any error fails the test. */
static char *metrics(void)
{
	Vb__Ctl__MetricsRequest req = VB__CTL__METRICS_REQUEST__INIT;
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	struct ipc_msg *m = NULL;
	struct ipc_chan *c;
	char *text;
	int fd;

	assert_int_equal(ipc_connect(sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, NULL, &c), 0);
	assert_int_equal(ipc_chan_call(c, VB__CTL__TYPE__METRICS, &req.base, NULL, 0,
				       test_left_ms(deadline), &m, NULL),
			 0);
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

/* Starts the real broker (its log in dir/broker.log) with `worker_extra` in its [worker]
 * section and waits for its control socket. */
static pid_t start_broker_with(const char *worker_extra)
{
	char cfg[128], log[128], text[640];
	int lfd, ino;
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
		 "uid_range = 61000-61999\npath = %s\n%s",
		 (unsigned)getuid(), sock, dir, VB_WORKER_PATH, worker_extra);
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
	return pid;
}

static pid_t start_broker(void)
{
	return start_broker_with("");
}

/* SIGINT: the broker exits 0; its directory goes. */
static void stop_broker(pid_t pid)
{
	char text[256];
	int status;

	assert_int_equal(kill(pid, SIGINT), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	broker = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(text, sizeof(text), "cat '%s/broker.log' >&2", dir);
		(void)!system(text);
		fail_msg("broker ended with status 0x%x", status);
	}
	snprintf(text, sizeof(text), "rm -rf '%s'", dir);
	assert_int_equal(system(text), 0);
}

static void test_brokerd_reexec_three_times_keeps_socket_and_record(void **state)
{
	char line[64];
	int status;
	pid_t pid = start_broker();

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
	stop_broker(pid);
}

/* The METRICS answer on `c`: the reply to request `id`, waited for (bounded); fails on any
 * error, a closed connection above all. */
static char *metrics_reply(struct ipc_chan *c, uint32_t id, int64_t deadline)
{
	struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};
	struct ipc_msg *m = NULL;
	char *text;
	int r;

	while ((r = ipc_chan_recv(c, &m)) == -EAGAIN)
		assert_true(poll(&p, 1, test_left_ms(deadline)) > 0);
	if (r < 0)
		fail_msg("the control connection: %s", strerror(-r));
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	assert_int_equal(m->id, id);
	text = strdup(((const Vb__Ctl__MetricsReply *)m->body)->text);
	ipc_msg_free(m);
	return text;
}

/* A control request in flight when SIGUSR2 comes is answered, and its connection goes on with
 * the new image: the request is sent while the broker is stopped, so it waits unread in the
 * socket as the signal arrives; whichever the broker then takes first, the request or the
 * signal, the answer must come (before the exec, or from the new image that got the
 * connection), and later requests on the same connection reach the new image. */
static void test_brokerd_reexec_request_in_flight_answered_connection_kept(void **state)
{
	Vb__Ctl__MetricsRequest req = VB__CTL__METRICS_REQUEST__INIT;
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	pid_t pid = start_broker();
	struct ipc_chan *c;
	uint32_t id;
	char *text;
	int fd;

	assert_int_equal(ipc_connect(sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_control, NULL, &c), 0);
	/* The session exists in the broker (answered once) before it is stopped. */
	assert_int_equal(ipc_chan_request(c, VB__CTL__TYPE__METRICS, &req.base, NULL, 0, &id), 0);
	free(metrics_reply(c, id, deadline));
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_int_equal(ipc_chan_request(c, VB__CTL__TYPE__METRICS, &req.base, NULL, 0, &id), 0);
	assert_int_equal(kill(pid, SIGUSR2), 0);
	assert_int_equal(kill(pid, SIGCONT), 0);
	free(metrics_reply(c, id, deadline));
	/* The same connection, until the new image answers it. */
	for (;;) {
		assert_int_equal(
		    ipc_chan_request(c, VB__CTL__TYPE__METRICS, &req.base, NULL, 0, &id), 0);
		text = metrics_reply(c, id, deadline);
		if (strstr(text, "vfio_broker_starts_total 2\n"))
			break;
		free(text);
		assert_true(test_left_ms(deadline) > 0);
	}
	free(text);
	ipc_chan_free(c);
	stop_broker(pid);
}

/* ---- pre-started workers ([worker] prestart, broker/pool.h) -------------------------------- */

#define POOL_MAX 8

/* Metrics until they contain every one of `lines` (the pool fills in the background). */
static void wait_metrics(const char *const *lines, size_t n)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;

	for (;;) {
		char *m = metrics();
		size_t i;

		for (i = 0; i < n && strstr(m, lines[i]); i++)
			;
		free(m);
		if (i == n)
			return;
		if (test_left_ms(deadline) == 0)
			fail_msg("metrics never showed '%s'", lines[i]);
	}
}

/* The value of "Key:" in /proc/<pid>/status, "" when it has none. */
static void proc_field(pid_t pid, const char *key, char *out, size_t len)
{
	char path[64], buf[4096], *p;
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	p = strstr(buf, key);
	if (!p)
		return;
	p += strlen(key);
	while (*p == '\t' || *p == ' ')
		p++;
	snprintf(out, len, "%.*s", (int)strcspn(p, "\n"), p);
}

/* The broker's children (the pool's workers: no device has one here). */
static size_t broker_children(pid_t broker_pid, pid_t *pids, size_t max)
{
	char want[32], ppid[32];
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir("/proc");

	assert_non_null(d);
	snprintf(want, sizeof(want), "%d", (int)broker_pid);
	while ((de = readdir(d))) {
		pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);

		if (pid <= 0)
			continue;
		proc_field(pid, "PPid:", ppid, sizeof(ppid));
		if (strcmp(ppid, want) == 0 && n < max)
			pids[n++] = pid;
	}
	closedir(d);
	return n;
}

static size_t proc_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* What a pre-started worker may hold before its HANDOFF: its own uid of the range (the same
 * real, effective, saved and fs uid), no capability, no_new_privs, and no file but stdin and
 * stdout (/dev/null), stderr and its broker channel: nothing of any VM. */
static void expect_idle_worker(pid_t pid, uid_t *ret_uid)
{
	char v[128], want[128];
	unsigned long uid;

	proc_field(pid, "Uid:", v, sizeof(v));
	uid = strtoul(v, NULL, 10);
	assert_true(uid >= 61000 && uid <= 61999);
	snprintf(want, sizeof(want), "%lu\t%lu\t%lu\t%lu", uid, uid, uid, uid);
	assert_string_equal(v, want);
	proc_field(pid, "Gid:", v, sizeof(v));
	assert_string_equal(v, want);
	proc_field(pid, "CapEff:", v, sizeof(v));
	assert_string_equal(v, "0000000000000000");
	proc_field(pid, "CapBnd:", v, sizeof(v));
	assert_string_equal(v, "0000000000000000");
	proc_field(pid, "NoNewPrivs:", v, sizeof(v));
	assert_string_equal(v, "1");
	assert_int_equal(proc_fds(pid), 4);
	*ret_uid = (uid_t)uid;
}

/* Until `pid` is gone for good: exited and reaped by its parent (kill(0) fails with ESRCH; a
 * zombie still exists). Woken by its pidfd; bounded. */
static void wait_reaped(pid_t pid, int pidfd)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	assert_int_equal(poll(&p, 1, test_left_ms(deadline)), 1);
	while (kill(pid, 0) == 0)
		assert_true(test_left_ms(deadline) > 0);
	assert_int_equal(errno, ESRCH);
}

/* [worker] prestart = 2: two sandboxed workers wait for a device, each with its own uid and
 * nothing else; one that dies is replaced; a re-exec ends and reaps them before the exec and the
 * new image starts its own; a stop ends and reaps them. */
static void test_brokerd_prestart_pool_filled_replaced_ended(void **state)
{
	static const char *const full[] = {"vfio_broker_pool_size 2\n",
					   "vfio_broker_pool_ready 2\n"};
	static const char *const replaced[] = {"vfio_broker_pool_lost_total 1\n",
					       "vfio_broker_pool_ready 2\n"};
	static const char *const reexeced[] = {"vfio_broker_starts_total 2\n",
					       "vfio_broker_pool_ready 2\n"};
	pid_t pid = start_broker_with("prestart = 2\n"), kids[POOL_MAX], kids2[POOL_MAX];
	int pidfds[POOL_MAX];
	uid_t uids[2];
	size_t n;

	wait_metrics(full, 2);
	assert_int_equal(broker_children(pid, kids, POOL_MAX), 2);
	expect_idle_worker(kids[0], &uids[0]);
	expect_idle_worker(kids[1], &uids[1]);
	assert_int_not_equal(uids[0], uids[1]);
	for (int i = 0; i < 2; i++) {
		pidfds[i] = (int)syscall(SYS_pidfd_open, kids[i], 0);
		assert_true(pidfds[i] >= 0);
	}

	/* One dies before it is used: the broker reaps it and starts another. */
	assert_int_equal(kill(kids[0], SIGKILL), 0);
	wait_reaped(kids[0], pidfds[0]);
	close(pidfds[0]);
	wait_metrics(replaced, 2);
	n = broker_children(pid, kids2, POOL_MAX);
	assert_int_equal(n, 2);
	assert_true(kids2[0] == kids[1] || kids2[1] == kids[1]);
	kids[0] = kids2[0] == kids[1] ? kids2[1] : kids2[0];
	pidfds[0] = (int)syscall(SYS_pidfd_open, kids[0], 0);
	assert_true(pidfds[0] >= 0);
	expect_idle_worker(kids[0], &uids[0]);

	/* A re-exec: both are reaped by the old image, the new one fills its own pool. */
	assert_int_equal(kill(pid, SIGUSR2), 0);
	wait_metrics(reexeced, 2);
	for (int i = 0; i < 2; i++) {
		wait_reaped(kids[i], pidfds[i]);
		close(pidfds[i]);
	}
	n = broker_children(pid, kids, POOL_MAX);
	assert_int_equal(n, 2);
	for (int i = 0; i < 2; i++) {
		expect_idle_worker(kids[i], &uids[i]);
		pidfds[i] = (int)syscall(SYS_pidfd_open, kids[i], 0);
		assert_true(pidfds[i] >= 0);
	}

	/* A stop ends them: reaped by the broker before it exits. */
	stop_broker(pid);
	for (int i = 0; i < 2; i++) {
		wait_reaped(kids[i], pidfds[i]);
		close(pidfds[i]);
	}
}

/* prestart = 0: no worker runs without a device. */
static void test_brokerd_prestart_zero_no_worker(void **state)
{
	static const char *const off[] = {"vfio_broker_pool_size 0\n",
					  "vfio_broker_pool_ready 0\n"};
	pid_t pid = start_broker_with("prestart = 0\n"), kids[POOL_MAX];

	wait_metrics(off, 2);
	assert_int_equal(broker_children(pid, kids, POOL_MAX), 0);
	stop_broker(pid);
}

/* How many times `what` stands in the broker's log (dir/broker.log). */
static int log_count(const char *what)
{
	char path[128], buf[16384];
	const char *p;
	int fd, n = 0;
	ssize_t len;

	snprintf(path, sizeof(path), "%s/broker.log", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(len >= 0);
	buf[len] = '\0';
	for (p = buf; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

/* The broker's stderr is a regular file here (start_broker_with), which the workers' writes
 * under their RLIMIT_FSIZE cannot extend: the broker says so, once, naming the limit; the
 * answer to a control request proves its start-up is over. */
static void test_brokerd_stderr_regular_file_worker_lines_lost_warned(void **state)
{
	static const char *const up[] = {"vfio_broker_pool_size 0\n"};
	pid_t pid = start_broker();

	wait_metrics(up, 1);
	assert_int_equal(log_count("stderr is a regular file"), 1);
	assert_int_equal(log_count("(rlimit_fsize = 0): their log lines are lost"), 1);
	stop_broker(pid);
	pid = start_broker_with("rlimit_fsize = 1M\n");
	wait_metrics(up, 1);
	assert_int_equal(log_count("stderr is a regular file"), 1);
	assert_int_equal(log_count("only up to rlimit_fsize (1048576 bytes)"), 1);
	stop_broker(pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_brokerd_reexec_three_times_keeps_socket_and_record,
				      teardown),
	    cmocka_unit_test_teardown(
		test_brokerd_reexec_request_in_flight_answered_connection_kept, teardown),
	    cmocka_unit_test_teardown(test_brokerd_prestart_pool_filled_replaced_ended, teardown),
	    cmocka_unit_test_teardown(test_brokerd_prestart_zero_no_worker, teardown),
	    cmocka_unit_test_teardown(test_brokerd_stderr_regular_file_worker_lines_lost_warned,
				      teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
