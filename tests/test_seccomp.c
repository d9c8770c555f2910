/*
 * test_seccomp: the worker and broker policies (policy/worker.policy and policy/broker.policy) as
 * the kernel enforces them. Every probe runs in a forked child that loads a policy with
 * sbx_seccomp_load() and then makes the calls under test; the parent judges by the wait status:
 * killed by SIGSYS means the policy forbade it, exit 0 means the call did what the probe expected.
 * Three sweeps compare the kernel with the rule tables generated from the policy text: every
 * allowed call passes, every call no rule mentions is killed, every argument filter rejects what it
 * should. Runs as root.
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
#include <linux/vfio.h>
#include <uv.h>

#include "policy_table.h"
#include "sandbox.h"
#include "seccomp.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define X32_SYSCALL_BIT 0x40000000
#define SWEEP_MAX_NR	480 /* past the last x86_64 syscall of current kernels */

/* The test process: the peer a worker probe expects on the other end of its sockets. */
static pid_t test_pid;

/* When >= 0, probe children point their fds 0..2 at it before loading a policy (the sweeps
 * make calls such as fchmod(0, 0) that must not reach the test's terminal). */
static int scratch_fd = -1;

/* Child exit codes: 0 is "worked as expected"; the others say what went wrong. */
enum { PROBE_OK = 0, PROBE_WRONG = 1, PROBE_LOAD_FAILED = 100 };

typedef int (*probe_fn)(void *arg);

/* Ends a probe child with a raw exit_group: the sanitizers' _exit hook would run leak checks,
 * which need calls (ptrace, clone) that the policies rightly forbid. Deliberately not marked
 * noreturn: ASan precedes calls to noreturn functions with a sigaltstack() probe. */
static void child_exit(int code)
{
	for (;;)
		syscall(SYS_exit_group, code);
}

/* Forks, loads the role's policy in `mode` in the child, runs fn there and returns the wait
 * status. Core dumps are off so that SIGSYS kills leave nothing behind. */
static int run_under(enum sbx_role role, enum sbx_seccomp_mode mode, probe_fn fn, void *arg)
{
	struct rlimit no_core = {0, 0};
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		setrlimit(RLIMIT_CORE, &no_core);
		alarm(10); /* a probe that blocks dies of SIGALRM, which no test accepts */
		/* cmocka's handlers would turn a crash into more syscalls (and a SIGSYS). */
		signal(SIGILL, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		if (scratch_fd >= 0 &&
		    (dup2(scratch_fd, 0) < 0 || dup2(scratch_fd, 1) < 0 || dup2(scratch_fd, 2) < 0))
			child_exit(PROBE_WRONG);
		if (sbx_seccomp_load(role, mode) < 0)
			child_exit(PROBE_LOAD_FAILED);
		child_exit(fn(arg));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

#define KILLED_BY_SIGSYS(st) (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
#define WORKED(st)	     (WIFEXITED(st) && WEXITSTATUS(st) == PROBE_OK)

static void assert_killed(int st)
{
	if (!KILLED_BY_SIGSYS(st))
		fail_msg("expected SIGSYS, got %s %d", WIFSIGNALED(st) ? "signal" : "exit",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void assert_worked(int st)
{
	if (!WORKED(st))
		fail_msg("expected the probe to work, got %s %d",
			 WIFSIGNALED(st) ? "signal" : "exit",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* A raw call with up to six arguments, passed as the probe argument. */
struct call {
	long nr;
	long a[6];
	int want_errno; /* 0: any result; else the call must fail with it */
};

static int probe_call(void *arg)
{
	const struct call *c = arg;
	long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);

	if (c->want_errno)
		return r == -1 && errno == c->want_errno ? PROBE_OK : PROBE_WRONG;
	return PROBE_OK;
}

static int call_status(enum sbx_role role, long nr, long a0, long a1, long a2, long a3)
{
	struct call c = {.nr = nr, .a = {a0, a1, a2, a3, 0, 0}};

	return run_under(role, SBX_SECCOMP_KILL, probe_call, &c);
}

static int make_memfd(void)
{
	int fd = memfd_create("device", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	return fd;
}

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
		alarm(10);
		if (sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL) < 0)
			child_exit(PROBE_LOAD_FAILED);
		child_exit(probe_signal(p));
	}
	assert_int_equal(read(p[2], &b, 1), 1);
	assert_int_equal(kill(pid, SIGUSR1), 0);
	usleep(20000);
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

/* ---- worker: what kills it ----------------------------------------------------------------- */

static int probe_execve(void *arg)
{
	char *argv[] = {"true", NULL}, *envp[] = {NULL};

	execve("/bin/true", argv, envp);
	return PROBE_WRONG;
}

static void test_seccomp_worker_execve_killed(void **state)
{
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_execve, NULL));
	assert_killed(
	    call_status(SBX_ROLE_WORKER, SYS_execveat, AT_FDCWD, (long)"/bin/true", 0, 0));
}

static void test_seccomp_worker_socket_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_socket, AF_UNIX, SOCK_STREAM, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_connect, 0, 0, 0, 0));
}

static void test_seccomp_worker_vfio_ioctl_killed(void **state)
{
	struct vfio_device_info info = {.argsz = sizeof(info)};
	int fd = make_memfd(); /* stands in for the device fd the worker holds */

	assert_killed(
	    call_status(SBX_ROLE_WORKER, SYS_ioctl, fd, VFIO_DEVICE_GET_INFO, (long)&info, 0));
	close(fd);
}

static const unsigned long vfio_ioctls[] = {
    VFIO_GET_API_VERSION,	VFIO_CHECK_EXTENSION,	  VFIO_SET_IOMMU,
    VFIO_IOMMU_GET_INFO,	VFIO_IOMMU_MAP_DMA,	  VFIO_IOMMU_UNMAP_DMA,
    VFIO_GROUP_GET_STATUS,	VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
    VFIO_GROUP_GET_DEVICE_FD,	VFIO_DEVICE_GET_INFO,	  VFIO_DEVICE_GET_REGION_INFO,
    VFIO_DEVICE_GET_IRQ_INFO,	VFIO_DEVICE_SET_IRQS,	  VFIO_DEVICE_RESET,
    VFIO_DEVICE_FEATURE,	VFIO_DEVICE_IOEVENTFD,	  VFIO_DEVICE_QUERY_GFX_PLANE,
    VFIO_DEVICE_GET_GFX_DMABUF, VFIO_IOMMU_DIRTY_PAGES,	  VFIO_DEVICE_PCI_HOT_RESET,
};

static void test_seccomp_worker_every_vfio_ioctl_killed(void **state)
{
	int fd = make_memfd();

	for (size_t i = 0; i < sizeof(vfio_ioctls) / sizeof(vfio_ioctls[0]); i++)
		assert_killed(
		    call_status(SBX_ROLE_WORKER, SYS_ioctl, fd, (long)vfio_ioctls[i], 0, 0));
	close(fd);
}

static void test_seccomp_worker_ptrace_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_ptrace, PTRACE_ATTACH, test_pid, 0, 0));
}

static void test_seccomp_worker_mount_killed(void **state)
{
	assert_killed(
	    call_status(SBX_ROLE_WORKER, SYS_mount, (long)"none", (long)"/mnt", (long)"tmpfs", 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_umount2, (long)"/", MNT_DETACH, 0, 0));
}

static void test_seccomp_worker_setuid_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_setuid, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_setresuid, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_capset, 0, 0, 0, 0));
}

static void test_seccomp_worker_bpf_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_bpf, 0, 0, 0, 0));
}

static void test_seccomp_worker_io_uring_setup_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_io_uring_setup, 8, 0, 0, 0));
}

static void test_seccomp_worker_process_vm_readv_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_process_vm_readv, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_process_vm_writev, test_pid, 0, 0, 0));
}

static void test_seccomp_worker_kill_other_pid_killed(void **state)
{
	/* Signal 0 only probes; the call must not even get that far. */
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_kill, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_tgkill, test_pid, test_pid, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_pidfd_open, test_pid, 0, 0, 0));
}

static int probe_fork(void *arg)
{
	pid_t pid = fork();

	if (pid == 0)
		child_exit(0);
	return PROBE_WRONG;
}

static void *probe_thread_main(void *arg)
{
	return arg;
}

static int probe_thread(void *arg)
{
	pthread_t t;

	if (pthread_create(&t, NULL, probe_thread_main, NULL) == 0)
		pthread_join(t, NULL);
	return PROBE_WRONG;
}

static void test_seccomp_worker_fork_and_threads_killed(void **state)
{
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_fork, NULL));
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_thread, NULL));
}

static void test_seccomp_worker_exec_memory_killed(void **state)
{
	int fd = make_memfd();

	/* Executable anonymous memory, a W^X flip, and mapping a received fd (the device). */
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC,
				  MAP_PRIVATE | MAP_ANONYMOUS));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_mprotect, (long)&test_pid & ~4095L, 4096,
				  PROT_READ | PROT_EXEC, 0));
	{
		struct call c = {.nr = SYS_mmap,
				 .a = {0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0}};

		assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_call, &c));
	}
	close(fd);
}

static void test_seccomp_worker_x32_syscall_killed(void **state)
{
	/* read is allowed as an x86_64 call; the same number through the x32 ABI is not. */
	assert_killed(call_status(SBX_ROLE_WORKER, X32_SYSCALL_BIT | SYS_read, -1, 0, 0, 0));
}

static long int80(long nr)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr) : "memory");
	return ret;
}

static int probe_int80(void *arg)
{
	int80(20); /* i386 getpid */
	return PROBE_WRONG;
}

static void test_seccomp_worker_i386_syscall_killed(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		child_exit(int80(20) > 0 ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WORKED(status)) {
		assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_int80, NULL));
	} else {
		/* No IA32 emulation in this kernel: int 0x80 faults before any filter runs. */
		status = run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_int80, NULL);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	}
}

static int tsync_pipe[2];

static void *tsync_thread(void *arg)
{
	char b;

	if (read(tsync_pipe[0], &b, 1) == 1)
		syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
	return NULL;
}

/* A thread started before the filter is covered too (TSYNC): its socket() kills the process. */
static int probe_tsync(void *arg)
{
	if (write(tsync_pipe[1], "x", 1) != 1)
		return PROBE_WRONG;
	for (;;) /* poll is allowed: only the other thread's call can end this */
		poll(NULL, 0, 1000);
	return PROBE_WRONG;
}

static void test_seccomp_worker_tsync_covers_threads(void **state)
{
	struct rlimit no_core = {0, 0};
	int status;
	pthread_t t;
	pid_t pid;

	assert_int_equal(pipe(tsync_pipe), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setrlimit(RLIMIT_CORE, &no_core);
		alarm(10);
		if (pthread_create(&t, NULL, tsync_thread, NULL) != 0)
			child_exit(PROBE_WRONG);
		if (sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL) < 0)
			child_exit(PROBE_LOAD_FAILED);
		child_exit(probe_tsync(NULL));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_killed(status);
	close(tsync_pipe[0]);
	close(tsync_pipe[1]);
}

static int probe_socket_works(void *arg)
{
	int fd = socket(*(int *)arg, SOCK_STREAM | SOCK_CLOEXEC, 0);

	return fd >= 0 && close(fd) == 0 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_worker_log_mode_not_killed(void **state)
{
	int family = AF_UNIX;

	/* The same forbidden call: killed in kill mode, performed (and logged) in log mode. */
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_socket_works, &family));
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_LOG, probe_socket_works, &family));
}

/* ---- broker -------------------------------------------------------------------------------- */

static void test_seccomp_broker_vfio_ioctl_allowed(void **state)
{
	struct vfio_device_info info = {.argsz = sizeof(info)};
	int fd = make_memfd();
	struct call c = {
	    .nr = SYS_ioctl, .a = {fd, VFIO_DEVICE_GET_INFO, (long)&info}, .want_errno = ENOTTY};

	/* The filter lets it through; the kernel then refuses it on a non-VFIO fd. */
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	close(fd);
}

static void test_seccomp_broker_listed_vfio_ioctls_allowed(void **state)
{
	static const unsigned long listed[] = {
	    VFIO_GET_API_VERSION,     VFIO_CHECK_EXTENSION,	VFIO_SET_IOMMU,
	    VFIO_IOMMU_GET_INFO,      VFIO_IOMMU_MAP_DMA,	VFIO_IOMMU_UNMAP_DMA,
	    VFIO_GROUP_GET_STATUS,    VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
	    VFIO_GROUP_GET_DEVICE_FD, VFIO_DEVICE_GET_INFO,	VFIO_DEVICE_GET_REGION_INFO,
	    VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,	VFIO_DEVICE_RESET,
	};
	int fd = make_memfd();

	for (size_t i = 0; i < sizeof(listed) / sizeof(listed[0]); i++) {
		struct call c = {.nr = SYS_ioctl, .a = {fd, (long)listed[i]}, .want_errno = ENOTTY};

		assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	}
	close(fd);
}

static void test_seccomp_broker_other_ioctls_killed(void **state)
{
	int fd = make_memfd();

	/* Not VFIO at all: terminal input injection, a netdevice query. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ioctl, fd, TIOCSTI, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ioctl, fd, FIONREAD, 0, 0));
	/* VFIO, but nothing the broker uses: dirty-page tracking, ioeventfds. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ioctl, fd, VFIO_IOMMU_DIRTY_PAGES, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ioctl, fd, VFIO_DEVICE_IOEVENTFD, 0, 0));
	/* A listed number with junk in the upper half is not the listed number. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ioctl, fd,
				  (long)(VFIO_DEVICE_GET_INFO | 0x100000000ul), 0, 0));
	close(fd);
}

static void test_seccomp_broker_execve_killed(void **state)
{
	int fd = open("/bin/true", O_PATH | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_killed(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_execve, NULL));
	/* execveat by path (no AT_EMPTY_PATH) is execve by another name. */
	assert_killed(
	    call_status(SBX_ROLE_BROKER, SYS_execveat, AT_FDCWD, (long)"/bin/true", 0, 0));
	close(fd);
}

static void test_seccomp_broker_socket_inet_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_socket, AF_INET, SOCK_STREAM, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_socket, AF_NETLINK, SOCK_RAW, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_socketpair, AF_INET, SOCK_STREAM, 0, 0));
}

static int probe_unix_server(void *arg)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	socklen_t alen;
	int l, c, s;
	char b[8];

	snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "vb-test-broker-%d", (int)getpid());
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1));
	l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, alen) < 0 || listen(l, 4) < 0)
		return PROBE_WRONG;
	c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, alen) < 0)
		return PROBE_WRONG;
	s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0 || send(c, "ctl", 3, 0) != 3 || recv(s, b, sizeof(b), 0) != 3)
		return PROBE_WRONG;
	return PROBE_OK;
}

static void test_seccomp_broker_unix_sockets_work(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_unix_server, NULL));
}

static int probe_memfd_map(void *arg)
{
	int fd = *(int *)arg;
	struct stat st;
	void *p;

	/* What DmaMap does with a VMM's memfd before VFIO_IOMMU_MAP_DMA. */
	if (fcntl(fd, F_GET_SEALS) < 0 || fstat(fd, &st) < 0 || st.st_size != 4096)
		return PROBE_WRONG;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return PROBE_WRONG;
	memcpy(p, "dma", 3);
	return munmap(p, 4096) == 0 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_broker_memfd_map_works(void **state)
{
	int fd = make_memfd();

	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_memfd_map, &fd));
	close(fd);
}

static void test_seccomp_broker_openat_create_denied(void **state)
{
	struct call c = {.nr = SYS_openat,
			 .a = {AT_FDCWD, (long)"/tmp/vb-must-not-exist", O_CREAT | O_WRONLY, 0600},
			 .want_errno = EACCES};
	struct call ro = {.nr = SYS_openat, .a = {AT_FDCWD, (long)"/proc/self/status", O_RDONLY}};

	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	assert_int_equal(access("/tmp/vb-must-not-exist", F_OK), -1);
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &ro));
}

static void test_seccomp_broker_debug_and_kernel_calls_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ptrace, PTRACE_ATTACH, test_pid, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_process_vm_readv, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_bpf, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_io_uring_setup, 8, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_init_module, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_kexec_load, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_setns, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_unshare, CLONE_NEWNS, 0, 0, 0));
}

static void test_seccomp_broker_kill_killed(void **state)
{
	/* Workers are ended through their pidfds; no pid number is ever signalled. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_kill, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_tgkill, test_pid, test_pid, 0, 0));
	/* rlimits of the broker itself only. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_prlimit64, test_pid, RLIMIT_NOFILE, 0, 0));
}

static void test_seccomp_broker_mount_other_flags_killed(void **state)
{
	assert_killed(
	    call_status(SBX_ROLE_BROKER, SYS_mount, (long)"/", (long)"/mnt", 0, MS_BIND | MS_REC));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_mount, 0, (long)"/", 0,
				  MS_REMOUNT | MS_BIND | MS_RDONLY));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_umount2, (long)"/mnt", 0, 0, 0));
}

static int probe_spawn(void *arg)
{
	char *argv[] = {"sbx_helper", "worker-idle", NULL}, msg[32];
	int sv[2], pidfd;
	struct sbx_worker_spec spec = {.exe = SBX_HELPER_PATH,
				       .argv = argv,
				       .fds = &sv[1],
				       .nfds = 1,
				       .stderr_fd = -1,
				       .uid = 61000,
				       .gid = 61000};
	siginfo_t si;
	pid_t pid;
	ssize_t n;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return PROBE_WRONG;
	if (sbx_spawn_worker(&spec, &pid, &pidfd) < 0)
		return 2;
	close(sv[1]);
	n = recv(sv[0], msg, sizeof(msg) - 1, 0);
	if (n <= 0)
		return 3;
	msg[n] = '\0';
	if (strcmp(msg, "loaded=0") != 0)
		return 4;
	close(sv[0]);
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0)
		return 5;
	return si.si_code == CLD_EXITED && si.si_status == 0 ? PROBE_OK : 6;
}

/* The whole spawn path (clone3, mount, pivot_root, ids, caps, execveat) and the worker's start
 * and own seccomp load run under the broker's filter, which they inherit. */
static void test_seccomp_broker_spawn_worker_works(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_spawn, NULL));
}

static void *probe_thread_ok(void *arg)
{
	return arg;
}

static int probe_threads(void *arg)
{
	pthread_t t;
	void *ret = NULL;

	if (pthread_create(&t, NULL, probe_thread_ok, (void *)1) != 0)
		return PROBE_WRONG;
	if (pthread_join(t, &ret) != 0)
		return PROBE_WRONG;
	return ret == (void *)1 ? PROBE_OK : PROBE_WRONG;
}

static void test_seccomp_broker_threads_work(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_threads, NULL));
}

static void test_seccomp_broker_log_mode_not_killed(void **state)
{
	int family = AF_INET;

	assert_killed(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_socket_works, &family));
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_LOG, probe_socket_works, &family));
}

/* ---- the rule tables against the kernel ----------------------------------------------------- */

enum verdict { V_KILL, V_ALLOW, V_ERRNO };

/* uretprobe (335) and uprobe (336) are let through by the kernel whatever the filter says
 * (seccomp_uprobe_exception() since Linux 6.11/6.16): they act only when called from the
 * kernel's own uprobe trampoline; anywhere else uprobe fails with ENXIO and uretprobe
 * raises SIGILL. For them, "killed" or "failed harmlessly" are both correct. */
static bool kernel_passthrough(int nr)
{
	return nr == 335 || nr == 336;
}

static bool cond_holds(const struct sbx_rule_cond *c, const uint64_t *a)
{
	uint64_t v = a[c->arg];

	switch (c->op) {
	case SBX_CMP_EQ:
		return v == c->value;
	case SBX_CMP_NE:
		return v != c->value;
	case SBX_CMP_LT:
		return v < c->value;
	case SBX_CMP_LE:
		return v <= c->value;
	case SBX_CMP_GT:
		return v > c->value;
	case SBX_CMP_GE:
		return v >= c->value;
	case SBX_CMP_MASKED_EQ:
		return (v & c->mask) == c->value;
	}
	return false;
}

/* What the policy text says about a call; the test's own reading, independent of libseccomp. */
static enum verdict evaluate(const struct sbx_policy *p, int nr, const uint64_t *a, int *err)
{
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];
		bool all = r->nr == nr;

		for (unsigned j = 0; all && j < r->nconds; j++)
			all = cond_holds(&r->conds[j], a);
		if (!all)
			continue;
		*err = r->err;
		return r->action == SBX_RULE_ALLOW ? V_ALLOW : V_ERRNO;
	}
	return V_KILL;
}

/* Moves a[c->arg] into (or, with violate, out of) the set the condition accepts. */
static void shape_arg(const struct sbx_rule_cond *c, uint64_t *a, bool violate)
{
	uint64_t *v = &a[c->arg];
	uint64_t low = c->mask & -c->mask;

	switch (c->op) {
	case SBX_CMP_EQ:
		*v = violate ? c->value ^ 1 : c->value;
		break;
	case SBX_CMP_NE:
		*v = violate ? c->value : c->value ^ 1;
		break;
	case SBX_CMP_LT:
	case SBX_CMP_LE:
		*v = violate ? c->value + 1 : 0;
		break;
	case SBX_CMP_GT:
	case SBX_CMP_GE:
		*v = violate ? 0 : c->value + 1;
		break;
	case SBX_CMP_MASKED_EQ:
		*v = (*v & ~c->mask) | (violate ? (c->value ^ low) & c->mask : c->value);
		break;
	}
}

/* Calls that cannot be probed with made-up arguments have their own tests above. */
static bool sweep_skips(int nr)
{
	return nr == SYS_rt_sigreturn;
}

static uint64_t fs_base;

struct sweep_call {
	int nr;
	uint64_t a[6];
	enum verdict want;
	int err;
};

static int probe_sweep(void *arg)
{
	const struct sweep_call *c = arg;
	long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);

	if (c->want == V_ERRNO)
		return r == -1 && errno == c->err ? PROBE_OK : PROBE_WRONG;
	if (c->want == V_KILL)
		return kernel_passthrough(c->nr) && r == -1 ? PROBE_OK : PROBE_WRONG;
	return PROBE_OK;
}

/* Runs one call under the role's policy, with fds 0..2 pointing at a scratch memfd so that
 * calls such as fchmod(0, 0) or close(0) hurt nobody, and compares with the expectation. */
static bool sweep_one(enum sbx_role role, struct sweep_call *c, char *why, size_t len)
{
	int st;

	/* arch_prctl(ARCH_SET_FS, 0) would pull TLS away from under the probe. */
	if (c->nr == SYS_arch_prctl && c->a[0] == ARCH_SET_FS)
		c->a[1] = fs_base;
	st = run_under(role, SBX_SECCOMP_KILL, probe_sweep, c);
	if (c->want == V_KILL && KILLED_BY_SIGSYS(st))
		return true;
	if (c->want == V_KILL && kernel_passthrough(c->nr) &&
	    (WORKED(st) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGILL)))
		return true;
	if (c->want != V_KILL && !KILLED_BY_SIGSYS(st) && (c->want != V_ERRNO || WORKED(st)))
		return true;
	snprintf(why, len, "syscall %d (%#llx, %#llx, %#llx, %#llx): want %s, got %s %d", c->nr,
		 (unsigned long long)c->a[0], (unsigned long long)c->a[1],
		 (unsigned long long)c->a[2], (unsigned long long)c->a[3],
		 c->want == V_KILL    ? "SIGSYS"
		 : c->want == V_ALLOW ? "allowed"
				      : "errno",
		 WIFSIGNALED(st) ? "signal" : "exit",
		 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	return false;
}

static bool rule_exists(const struct sbx_policy *p, int nr)
{
	for (size_t i = 0; i < p->nrules; i++)
		if (p->rules[i].nr == nr)
			return true;
	return false;
}

/* Reports up to a few mismatches at once, so one run shows the whole picture. */
struct sweep_report {
	unsigned failures;
	char text[2048];
	size_t len;
};

static void sweep_note(struct sweep_report *r, const struct sbx_policy *p, unsigned line,
		       const char *why)
{
	r->failures++;
	if (r->len < sizeof(r->text))
		r->len += (size_t)snprintf(r->text + r->len, sizeof(r->text) - r->len,
					   "\n  %s:%u: %s", p->source, line, why);
}

static void sweep_finish(struct sweep_report *r)
{
	if (r->failures)
		fail_msg("%u mismatch(es) between policy and kernel:%s", r->failures, r->text);
}

static void sweep_begin(void)
{
	scratch_fd = memfd_create("sweep-stdio", MFD_CLOEXEC);
	assert_true(scratch_fd >= 0);
}

static void sweep_end(void)
{
	close(scratch_fd);
	scratch_fd = -1;
}

static void sweep_allowed(enum sbx_role role)
{
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	char why[256];

	sweep_begin();
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];
		struct sweep_call c = {.nr = r->nr};

		if (sweep_skips(r->nr))
			continue;
		for (unsigned j = 0; j < r->nconds; j++)
			shape_arg(&r->conds[j], c.a, false);
		c.want = evaluate(p, r->nr, c.a, &c.err);
		if (c.want == V_KILL)
			sweep_note(&rep, p, r->line, "conditions cannot be met together");
		else if (!sweep_one(role, &c, why, sizeof(why)))
			sweep_note(&rep, p, r->line, why);
	}
	sweep_end();
	sweep_finish(&rep);
}

static void sweep_unlisted(enum sbx_role role)
{
	static const int beyond[] = {SWEEP_MAX_NR, 1023, 0x3fffffff};
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	unsigned tested = 0;
	char why[256];

	sweep_begin();
	for (int nr = 0; nr < SWEEP_MAX_NR + 3; nr++) {
		struct sweep_call c = {.nr = nr < SWEEP_MAX_NR ? nr : beyond[nr - SWEEP_MAX_NR],
				       .want = V_KILL};

		if (rule_exists(p, c.nr))
			continue;
		tested++;
		if (!sweep_one(role, &c, why, sizeof(why)))
			sweep_note(&rep, p, 0, why);
	}
	sweep_end();
	/* Sanity: most of the syscall table is forbidden to both roles. */
	assert_true(tested > SWEEP_MAX_NR / 2);
	sweep_finish(&rep);
}

static void sweep_conditions(enum sbx_role role)
{
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	unsigned tested = 0;
	char why[256];

	sweep_begin();
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];

		for (unsigned k = 0; k < r->nconds; k++) {
			struct sweep_call c = {.nr = r->nr};

			for (unsigned j = 0; j < r->nconds; j++)
				shape_arg(&r->conds[j], c.a, j == k);
			c.want = evaluate(p, r->nr, c.a, &c.err);
			tested++;
			if (!sweep_one(role, &c, why, sizeof(why)))
				sweep_note(&rep, p, r->line, why);
		}
	}
	sweep_end();
	assert_true(tested > 0);
	sweep_finish(&rep);
}

static void test_seccomp_worker_every_allowed_syscall_passes(void **state)
{
	sweep_allowed(SBX_ROLE_WORKER);
}

static void test_seccomp_worker_every_unlisted_syscall_killed(void **state)
{
	sweep_unlisted(SBX_ROLE_WORKER);
}

static void test_seccomp_worker_argument_filters_enforced(void **state)
{
	sweep_conditions(SBX_ROLE_WORKER);
}

static void test_seccomp_broker_every_allowed_syscall_passes(void **state)
{
	sweep_allowed(SBX_ROLE_BROKER);
}

static void test_seccomp_broker_every_unlisted_syscall_killed(void **state)
{
	sweep_unlisted(SBX_ROLE_BROKER);
}

static void test_seccomp_broker_argument_filters_enforced(void **state)
{
	sweep_conditions(SBX_ROLE_BROKER);
}

/* The broker's filter stays loaded under every worker, so each call the worker policy allows
 * must be allowed by the broker's too, and none it denies quietly may be fatal there. */
static void test_seccomp_worker_allowed_within_broker(void **state)
{
	const struct sbx_policy *w = sbx_policy_get(SBX_ROLE_WORKER);
	const struct sbx_policy *b = sbx_policy_get(SBX_ROLE_BROKER);
	struct sweep_report rep = {0};

	for (size_t i = 0; i < w->nrules; i++) {
		const struct sbx_rule *r = &w->rules[i];
		uint64_t a[6] = {0};
		enum verdict v;
		int err;

		for (unsigned j = 0; j < r->nconds; j++)
			shape_arg(&r->conds[j], a, false);
		v = evaluate(b, r->nr, a, &err);
		if ((r->action == SBX_RULE_ALLOW && v != V_ALLOW) || v == V_KILL)
			sweep_note(&rep, w, r->line, r->syscall);
	}
	sweep_finish(&rep);
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

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seccomp_worker_pread_pwrite_works),
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
	};

	test_pid = getpid();
	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_base) < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
