/*
 * test_seccomp: the worker and broker policies (policy/worker.policy and policy/broker.policy) as
 * the kernel enforces them. Every probe runs in a forked child that loads a policy with
 * sbx_seccomp_load() and then makes the calls under test; the parent judges by the wait status:
 * killed by SIGSYS means the policy forbade it, exit 0 means the call did what the probe expected.
 * Three sweeps compare the kernel with the rule tables generated from the policy text: every
 * allowed call passes, every call no rule mentions is killed, every argument filter rejects what it
 * should. Runs as root. This file holds what the worker may do and the loader; what kills the
 * worker is seccomp_worker_kills.c's, the broker's cases seccomp_broker_tests.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <asm/prctl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <linux/vfio.h>
#include <uv.h>

#include "base.h"
#include "policy_table.h"
#include "sandbox.h"
#include "seccomp.h"
#include "seccomp_probe.h"
#include "test_wait.h"
#include "wkr_test_util.h"

/* ---- worker: what it may do ---------------------------------------------------------------- */

static int probe_pread_pwrite(void *arg)
{
	int fd = *(int *)arg;
	char buf[8];

	if (pwrite(fd, "cfgspace", 8, 256) != 8 || pread(fd, buf, 8, 256) != 8)
		return PROBE_WRONG;
	return memcmp(buf, "cfgspace", 8) == 0 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_pread_pwrite_works(void **state)
{
	int fd = make_memfd(); /* stands in for the device fd */

	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_pread_pwrite, &fd));
	close(fd);
}

/* A device whose extended config space holds 100 capabilities: the worker sorts them to clip
 * their lengths (caps.c), 1600 bytes, past the 1 KiB at which glibc's qsort() asks sysinfo(). */
#define MANY_CAPS 100

struct many_caps {
	struct wkr_image *img;
	int fd;
};

static int probe_many_caps(void *arg)
{
	struct many_caps *mc = arg;
	struct tdev t = {.fd = mc->fd};
	struct wkr_io io;
	struct wkr_callbacks cb = {rec_set_irqs, rec_bars_changed, &t.rec};
	uint32_t pos = 0x100;
	int n = 0;

	wkr_io_from_fd(&io, mc->fd);
	if (wkr_dev_new(wkr_image_info(mc->img), &io, &cb, &t.dev) < 0)
		return PROBE_WRONG;
	for (; pos && n <= MANY_CAPS; n++)
		pos = cfg_rd(&t, pos, 4) >> 20;
	wkr_dev_free(t.dev);
	return n == MANY_CAPS ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_many_capabilities_sorted(void **state)
{
	static char text[16384];
	struct many_caps mc = {.fd = -1};
	struct vb_err err;
	size_t len;

	len =
	    (size_t)snprintf(text, sizeof(text),
			     "vfio-device-image 1\ndevice flags=0x3\nregion 7 size=4096 flags=0x3\n"
			     "config 0 34 12 78 56 00 00 10 00 00 00 00 ff 00 00 00 00\n");
	for (uint32_t i = 0; i < MANY_CAPS; i++) {
		/* Device Serial Number (id 3, version 1, 12 bytes), every 16 bytes from 0x100. */
		uint32_t next = i + 1 < MANY_CAPS ? 0x100 + 16 * (i + 1) : 0;
		uint32_t h = 3u | 1u << 16 | next << 20;

		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"config 0x%x %02x %02x %02x %02x\n", 0x100 + 16 * i,
					h & 0xff, h >> 8 & 0xff, h >> 16 & 0xff, h >> 24);
	}
	assert_true(len < sizeof(text));
	assert_int_equal(wkr_image_parse(text, len, &mc.img, &err), 0);
	assert_int_equal(wkr_image_build(mc.img, &mc.fd), 0);
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_many_caps, &mc));
	close(mc.fd);
	wkr_image_free(mc.img);
	(void)state;
}

static int probe_eventfd_epoll(void *arg)
{
	struct epoll_event ev = {.events = EPOLLIN}, out;
	uint64_t v = 3;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), ep = epoll_create1(EPOLL_CLOEXEC);

	if (efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) < 0)
		return PROBE_WRONG;
	if (write(efd, &v, 8) != 8 || epoll_wait(ep, &out, 1, 1000) != 1)
		return PROBE_WRONG;
	if (read(efd, &v, 8) != 8 || v != 3 || close(efd) < 0 || close(ep) < 0)
		return PROBE_WRONG;
	return PROBE_OK;
}

static void test_seccomp_worker_eventfd_epoll_works(void **state)
{
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_eventfd_epoll, NULL));
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = "m", .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf};
	struct cmsghdr *c;

	mh.msg_controllen = sizeof(cbuf);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], b;
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf};
	struct cmsghdr *c;
	int fd;

	mh.msg_controllen = sizeof(cbuf);
	if (recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* The ipc pattern: an eventfd travels over a SEQPACKET pair and still works on arrival. */
static int probe_sendmsg_fds(void *arg)
{
	int *sv = arg, efd = eventfd(0, EFD_CLOEXEC), got;
	uint64_t v = 7;

	if (efd < 0 || send_fd(sv[0], efd) < 0)
		return PROBE_WRONG;
	got = recv_fd(sv[1]);
	if (got < 0 || write(got, &v, 8) != 8 || read(efd, &v, 8) != 8 || v != 7)
		return PROBE_WRONG;
	if (send(sv[0], "ping", 4, 0) != 4 || recv(sv[1], &v, sizeof(v), 0) != 4)
		return PROBE_WRONG;
	return shutdown(sv[0], SHUT_RDWR) == 0 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_sendmsg_fds_works(void **state)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_sendmsg_fds, sv));
	close(sv[0]);
	close(sv[1]);
}

static int probe_accept(void *arg)
{
	int lfd = *(int *)arg, c;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int type;
	char b[8];

	c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c < 0 || getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return PROBE_WRONG;
	len = sizeof(type);
	if (getsockopt(c, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return PROBE_WRONG;
	if (cr.pid != test_pid || recv(c, b, sizeof(b), 0) != 5)
		return PROBE_WRONG;
	return PROBE_OK;
}

static void test_seccomp_worker_accept_works(void **state)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t alen;
	int lfd, cfd;

	/* Abstract address: nothing on disk to clean up. */
	snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "vb-test-seccomp-%d", (int)getpid());
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1));
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, alen), 0);
	assert_int_equal(listen(lfd, 4), 0);
	cfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&a, alen), 0);
	assert_int_equal(send(cfd, "hello", 5, 0), 5);
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_accept, &lfd));
	close(cfd);
	close(lfd);
}

static int probe_malloc(void *arg)
{
	char *small = malloc(64), *big = malloc(4 << 20), *bigger;

	if (!small || !big)
		return PROBE_WRONG;
	memset(big, 0x5a, 4 << 20);
	bigger = realloc(big, 16 << 20); /* mremap */
	if (!bigger || bigger[(4 << 20) - 1] != 0x5a)
		return PROBE_WRONG;
	free(bigger); /* munmap */
	free(small);
	for (int i = 0; i < 1000; i++) /* brk growth and trimming */
		free(malloc(1024 * (size_t)(i % 100 + 1)));
	return PROBE_OK;
}

__attribute__((unused)) static void test_seccomp_worker_malloc_works(void **state)
{
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_malloc, NULL));
}

struct uv_probe {
	int sv[2];
	int polled, fired, woken;
	uv_poll_t poll;
	uv_timer_t timer;
	uv_async_t async;
};

static void uv_probe_poll_cb(uv_poll_t *h, int status, int events)
{
	struct uv_probe *p = h->data;
	char b[8];

	if (status == 0 && recv(p->sv[1], b, sizeof(b), 0) == 4)
		p->polled = 1;
	uv_poll_stop(h);
	uv_async_send(&p->async);
}

static void uv_probe_async_cb(uv_async_t *h)
{
	((struct uv_probe *)h->data)->woken = 1;
}

static void uv_probe_timer_cb(uv_timer_t *t)
{
	struct uv_probe *p = t->data;

	p->fired = 1;
	uv_close((uv_handle_t *)&p->poll, NULL);
	uv_close((uv_handle_t *)&p->timer, NULL);
	uv_close((uv_handle_t *)&p->async, NULL);
}

/* The worker's real shape: a libuv loop, created after the filter, polling a socket, with a
 * timer (heartbeat) and an async wake-up. */
static int probe_uv_loop(void *arg)
{
	struct uv_probe *p = arg;
	uv_loop_t loop;

	if (uv_loop_init(&loop) < 0)
		return PROBE_WRONG;
	p->poll.data = p->timer.data = p->async.data = p;
	if (uv_poll_init(&loop, &p->poll, p->sv[1]) < 0 ||
	    uv_poll_start(&p->poll, UV_READABLE, uv_probe_poll_cb) < 0)
		return PROBE_WRONG;
	if (uv_timer_init(&loop, &p->timer) < 0 ||
	    uv_timer_start(&p->timer, uv_probe_timer_cb, 20, 0) < 0 ||
	    uv_async_init(&loop, &p->async, uv_probe_async_cb) < 0)
		return PROBE_WRONG;
	if (send(p->sv[0], "beat", 4, 0) != 4)
		return PROBE_WRONG;
	if (uv_run(&loop, UV_RUN_DEFAULT) != 0 || uv_loop_close(&loop) != 0)
		return PROBE_WRONG;
	return p->polled && p->fired && p->woken ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_uv_loop_works(void **state)
{
	struct uv_probe p = {0};

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p.sv), 0);
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_uv_loop, &p));
	close(p.sv[0]);
	close(p.sv[1]);
}

static int probe_fd_flags(void *arg)
{
	int fd = *(int *)arg, on = 1, dup;
	struct stat st;

	if (ioctl(fd, FIONBIO, &on) < 0 || ioctl(fd, FIOCLEX) < 0)
		return PROBE_WRONG;
	if (!(fcntl(fd, F_GETFL) & O_NONBLOCK) || fcntl(fd, F_SETFL, 0) < 0)
		return PROBE_WRONG;
	if (!(fcntl(fd, F_GETFD) & FD_CLOEXEC) || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return PROBE_WRONG;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	if (dup < 10 || fstat(dup, &st) < 0 || !S_ISSOCK(st.st_mode))
		return PROBE_WRONG;
	/* isatty() is denied quietly rather than fatal. */
	if (isatty(fd) || errno != ENOTTY)
		return PROBE_WRONG;
	return close(dup) == 0 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_fd_flags_work(void **state)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_fd_flags, &sv[0]));
	close(sv[0]);
	close(sv[1]);
}

static volatile sig_atomic_t probe_got_signal;

static void probe_on_signal(int sig)
{
	probe_got_signal = sig;
}

/* The parent signals the child while it waits in read(); the handler must be able to return
 * (rt_sigreturn) and the read must go on. */
static int probe_signal(void *arg)
{
	int *p = arg; /* p[0]: child reads, p[3]: child writes "ready" */
	char b;

	if (write(p[3], "r", 1) != 1)
		return PROBE_WRONG;
	while (read(p[0], &b, 1) != 1)
		if (errno != EINTR)
			return PROBE_WRONG;
	return probe_got_signal == SIGUSR1 ? PROBE_OK : PROBE_WRONG;
}

/* The field `name` of /proc/PID/status as a number in `base`; 0 when it cannot be read. */
static unsigned long long proc_status(pid_t pid, const char *name, int base)
{
	char path[64], line[256];
	unsigned long long v = 0;
	size_t n = strlen(name);
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			v = strtoull(line + n + 1, NULL, base);
	fclose(f);
	return v;
}

/* Waits (up to TEST_HANG_MS) until the child sleeps and, when `taken`, no longer has `sig`
 * pending (its handler has run). */
static void wait_child(pid_t pid, int sig, bool taken)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	char path[64], stat[512];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (;;) {
		FILE *f = fopen(path, "re");
		size_t n = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
		const char *paren;
		bool pending;

		if (f)
			fclose(f);
		stat[n] = 0;
		paren = strrchr(stat, ')');
		pending = ((proc_status(pid, "SigPnd", 16) | proc_status(pid, "ShdPnd", 16)) >>
			   (sig - 1)) &
			  1;
		if (paren && paren[1] == ' ' && paren[2] == 'S' && !(taken && pending))
			return;
		if (test_now_ms() > deadline)
			fail_msg("child %d: not asleep%s after %d ms", (int)pid,
				 taken ? " with the signal taken" : "", TEST_HANG_MS);
		poll(NULL, 0, 1);
	}
}

static void test_seccomp_worker_signal_handler_returns(void **state)
{
	struct sigaction sa = {.sa_handler = probe_on_signal, .sa_flags = SA_RESTART};
	struct rlimit no_core = {0, 0};
	int p[4], status;
	pid_t pid;
	char b;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(p + 2), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setrlimit(RLIMIT_CORE, &no_core);
		sigaction(SIGUSR1, &sa, NULL);
		alarm(TEST_HANG_MS / 1000);
		if (sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL) < 0)
			child_exit(PROBE_LOAD_FAILED);
		child_exit(probe_signal(p));
	}
	assert_int_equal(read(p[2], &b, 1), 1);
	/* Signalled once it sleeps in read() (its only sleep from here), and "go" written once the
	 * handler has taken the signal, whatever the machine's load: the read is interrupted,
	 * the handler returns and the read goes on, every time. */
	wait_child(pid, SIGUSR1, false);
	assert_int_equal(kill(pid, SIGUSR1), 0);
	wait_child(pid, SIGUSR1, true);
	assert_int_equal(write(p[1], "g", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_worked(status);
	for (int i = 0; i < 4; i++)
		close(p[i]);
}

static int probe_openat(void *arg)
{
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);

	return fd == -1 && errno == ENOENT ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_openat_denied(void **state)
{
	/* Fails with ENOENT, as if the file did not exist, and the worker lives on. */
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_openat, NULL));
}

/* ---- loader ---------------------------------------------------------------------------------- */

static void test_seccomp_mode_parse_accepts_names(void **state)
{
	enum sbx_seccomp_mode m = SBX_SECCOMP_OFF;

	assert_int_equal(sbx_seccomp_mode_parse("kill", &m), 0);
	assert_int_equal(m, SBX_SECCOMP_KILL);
	assert_int_equal(sbx_seccomp_mode_parse("log", &m), 0);
	assert_int_equal(m, SBX_SECCOMP_LOG);
	assert_int_equal(sbx_seccomp_mode_parse("off", &m), 0);
	assert_int_equal(m, SBX_SECCOMP_OFF);
	assert_string_equal(sbx_seccomp_mode_name(SBX_SECCOMP_LOG), "log");
	assert_string_equal(sbx_role_name(SBX_ROLE_WORKER), "worker");
	assert_string_equal(sbx_role_name(SBX_ROLE_BROKER), "broker");
}

static void test_seccomp_mode_parse_rejects_unknown(void **state)
{
	static const char *const bad[] = {"", "KILL", "kill ", "trap", "allow", "1"};
	enum sbx_seccomp_mode m = SBX_SECCOMP_LOG;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(sbx_seccomp_mode_parse(bad[i], &m), -EINVAL);
		assert_int_equal(m, SBX_SECCOMP_LOG); /* untouched */
	}
	assert_int_equal(sbx_seccomp_mode_parse(NULL, &m), -EINVAL);
	assert_null(sbx_seccomp_mode_name((enum sbx_seccomp_mode)7));
	assert_null(sbx_role_name((enum sbx_role)7));
}

static int status_field(const char *key)
{
	char buf[4096], *p;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, key);
	return p ? atoi(p + strlen(key)) : -1;
}

/* Bad arguments load nothing; OFF loads nothing and does not even set no_new_privs. */
static void test_seccomp_load_off_and_bad_arguments_load_nothing(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (sbx_seccomp_load((enum sbx_role)9, SBX_SECCOMP_KILL) != -EINVAL ||
		    sbx_seccomp_load(SBX_ROLE_WORKER, (enum sbx_seccomp_mode)9) != -EINVAL ||
		    sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_OFF) != 0)
			child_exit(1);
		if (status_field("Seccomp:\t") != 0 || status_field("NoNewPrivs:\t") != 0)
			child_exit(2);
		if (sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL) != 0)
			child_exit(3);
		/* read and open are what status_field needs: open is denied quietly now. */
		child_exit(status_field("Seccomp:\t") == -1 ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_worked(status);
}

static int diverge_pipe[2]; /* the thread says its filter is in */
static int hold_pipe[2];    /* never written: keeps the thread alive */

/* Gives this thread a filter of its own (allow everything) that the process does not share. */
static void *diverge_thread(void *arg)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {.len = 1, .filter = &allow};
	char b;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0)
		(void)!write(diverge_pipe[1], "d", 1);
	(void)!read(hold_pipe[0], &b, 1); /* stays alive; the process exits under it */
	return NULL;
}

/* TSYNC cannot cover a thread whose filters diverged: the load must fail as a whole and leave
 * the calling thread unfiltered, rather than filter only some threads. */
static void test_seccomp_load_diverged_thread_busy(void **state)
{
	int status;
	pid_t pid;

	assert_int_equal(pipe(diverge_pipe), 0);
	assert_int_equal(pipe(hold_pipe), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t t;
		char b;

		alarm(TEST_HANG_MS / 1000);
		if (pthread_create(&t, NULL, diverge_thread, NULL) != 0 ||
		    read(diverge_pipe[0], &b, 1) != 1)
			child_exit(2);
		if (sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL) != -EBUSY)
			child_exit(3);
		/* Still unfiltered here: a call the worker policy would kill goes through. */
		child_exit(syscall(SYS_getppid) > 0 ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_worked(status);
	close(diverge_pipe[0]);
	close(diverge_pipe[1]);
	close(hold_pipe[0]);
	close(hold_pipe[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seccomp_worker_pread_pwrite_works),
	    cmocka_unit_test(test_seccomp_worker_many_capabilities_sorted),
	    cmocka_unit_test(test_seccomp_worker_eventfd_epoll_works),
	    cmocka_unit_test(test_seccomp_worker_sendmsg_fds_works),
	    cmocka_unit_test(test_seccomp_worker_accept_works),
#ifndef __SANITIZE_ADDRESS__
	    /* ASan's allocator maps its regions with madvise(MADV_NOHUGEPAGE), which the
	     * worker policy forbids and the real (static, unsanitized) worker never calls. */
	    cmocka_unit_test(test_seccomp_worker_malloc_works),
#endif
	    cmocka_unit_test(test_seccomp_worker_uv_loop_works),
	    cmocka_unit_test(test_seccomp_worker_fd_flags_work),
	    cmocka_unit_test(test_seccomp_worker_signal_handler_returns),
	    cmocka_unit_test(test_seccomp_worker_openat_denied),
	    cmocka_unit_test(test_seccomp_worker_execve_killed),
	    cmocka_unit_test(test_seccomp_worker_socket_killed),
	    cmocka_unit_test(test_seccomp_worker_vfio_ioctl_killed),
	    cmocka_unit_test(test_seccomp_worker_every_vfio_ioctl_killed),
	    cmocka_unit_test(test_seccomp_worker_ptrace_killed),
	    cmocka_unit_test(test_seccomp_worker_mount_killed),
	    cmocka_unit_test(test_seccomp_worker_setuid_killed),
	    cmocka_unit_test(test_seccomp_worker_bpf_killed),
	    cmocka_unit_test(test_seccomp_worker_io_uring_setup_killed),
	    cmocka_unit_test(test_seccomp_worker_process_vm_readv_killed),
	    cmocka_unit_test(test_seccomp_worker_kill_other_pid_killed),
	    cmocka_unit_test(test_seccomp_worker_fork_and_threads_killed),
	    cmocka_unit_test(test_seccomp_worker_exec_memory_killed),
	    cmocka_unit_test(test_seccomp_worker_ring_page_and_wake_work),
	    cmocka_unit_test(test_seccomp_worker_x32_syscall_killed),
	    cmocka_unit_test(test_seccomp_worker_i386_syscall_killed),
	    cmocka_unit_test(test_seccomp_worker_tsync_covers_threads),
	    cmocka_unit_test(test_seccomp_worker_log_mode_not_killed),
	    cmocka_unit_test(test_seccomp_worker_every_allowed_syscall_passes),
	    cmocka_unit_test(test_seccomp_worker_every_unlisted_syscall_killed),
	    cmocka_unit_test(test_seccomp_worker_argument_filters_enforced),
	    cmocka_unit_test(test_seccomp_worker_allowed_within_broker),
	    cmocka_unit_test(test_seccomp_broker_vfio_ioctl_allowed),
	    cmocka_unit_test(test_seccomp_broker_listed_vfio_ioctls_allowed),
	    cmocka_unit_test(test_seccomp_broker_other_ioctls_killed),
	    cmocka_unit_test(test_seccomp_broker_execve_killed),
	    cmocka_unit_test(test_seccomp_broker_socket_inet_killed),
	    cmocka_unit_test(test_seccomp_broker_unix_sockets_work),
	    cmocka_unit_test(test_seccomp_broker_memfd_map_works),
	    cmocka_unit_test(test_seccomp_broker_state_record_works),
	    cmocka_unit_test(test_seccomp_broker_registry_sorted_by_bdf_works),
	    cmocka_unit_test(test_seccomp_broker_record_many_owners_adopted),
	    cmocka_unit_test(test_seccomp_broker_openat_create_denied),
	    cmocka_unit_test(test_seccomp_broker_debug_and_kernel_calls_killed),
	    cmocka_unit_test(test_seccomp_broker_kill_killed),
	    cmocka_unit_test(test_seccomp_broker_mount_other_flags_killed),
	    cmocka_unit_test(test_seccomp_broker_spawn_worker_works),
	    cmocka_unit_test(test_seccomp_broker_threads_work),
	    cmocka_unit_test(test_seccomp_broker_log_mode_not_killed),
	    cmocka_unit_test(test_seccomp_broker_every_allowed_syscall_passes),
	    cmocka_unit_test(test_seccomp_broker_every_unlisted_syscall_killed),
	    cmocka_unit_test(test_seccomp_broker_argument_filters_enforced),
	    cmocka_unit_test(test_seccomp_mode_parse_accepts_names),
	    cmocka_unit_test(test_seccomp_mode_parse_rejects_unknown),
	    cmocka_unit_test(test_seccomp_load_off_and_bad_arguments_load_nothing),
	    cmocka_unit_test(test_seccomp_load_diverged_thread_busy),
	};

	test_pid = getpid();
	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_base) < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
