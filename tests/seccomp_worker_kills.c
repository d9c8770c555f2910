/*
 * seccomp_worker_kills: the worker role's cases of test_seccomp that the policy must end with
 * SIGSYS (exec, sockets, VFIO, other processes, mounts, ids, new kernels' interfaces, forks and
 * threads, executable memory, other ABIs, a thread that escapes TSYNC), the log mode that only
 * reports them, and the sweeps of the worker's rule table.
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

/* ---- worker: what kills it ----------------------------------------------------------------- */

void test_seccomp_worker_execve_killed(void **state)
{
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_execve, NULL));
	assert_killed(
	    call_status(SBX_ROLE_WORKER, SYS_execveat, AT_FDCWD, (long)"/bin/true", 0, 0));
}

void test_seccomp_worker_socket_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_socket, AF_UNIX, SOCK_STREAM, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_connect, 0, 0, 0, 0));
}

void test_seccomp_worker_vfio_ioctl_killed(void **state)
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

void test_seccomp_worker_every_vfio_ioctl_killed(void **state)
{
	int fd = make_memfd();

	for (size_t i = 0; i < ARRAY_SIZE(vfio_ioctls); i++)
		assert_killed(
		    call_status(SBX_ROLE_WORKER, SYS_ioctl, fd, (long)vfio_ioctls[i], 0, 0));
	close(fd);
}

void test_seccomp_worker_ptrace_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_ptrace, PTRACE_ATTACH, test_pid, 0, 0));
}

void test_seccomp_worker_mount_killed(void **state)
{
	assert_killed(
	    call_status(SBX_ROLE_WORKER, SYS_mount, (long)"none", (long)"/mnt", (long)"tmpfs", 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_umount2, (long)"/", MNT_DETACH, 0, 0));
}

void test_seccomp_worker_setuid_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_setuid, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_setresuid, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_capset, 0, 0, 0, 0));
}

void test_seccomp_worker_bpf_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_bpf, 0, 0, 0, 0));
}

void test_seccomp_worker_io_uring_setup_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_io_uring_setup, 8, 0, 0, 0));
}

void test_seccomp_worker_process_vm_readv_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_process_vm_readv, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_process_vm_writev, test_pid, 0, 0, 0));
}

void test_seccomp_worker_kill_other_pid_killed(void **state)
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

void test_seccomp_worker_fork_and_threads_killed(void **state)
{
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_fork, NULL));
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_thread, NULL));
}

void test_seccomp_worker_exec_memory_killed(void **state)
{
	int fd = make_memfd();

	/* Executable anonymous memory, a W^X flip, and mapping a received fd (the device) more
	 * than the one page of a VMM's ring, privately, or executable. */
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC,
				  MAP_PRIVATE | MAP_ANONYMOUS));
	assert_killed(call_status(SBX_ROLE_WORKER, SYS_mprotect, (long)&test_pid & ~4095L, 4096,
				  PROT_READ | PROT_EXEC, 0));
	{
		struct call c[] = {
		    {.nr = SYS_mmap, .a = {0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0}},
		    {.nr = SYS_mmap, .a = {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0}},
		    {.nr = SYS_mmap, .a = {0, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0}},
		};

		for (size_t i = 0; i < ARRAY_SIZE(c); i++)
			assert_killed(
			    run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_call, &c[i]));
	}
	close(fd);
}

/* A VMM's shared-memory ring (worker/ring.c): one shared page of a memfd, mapped read-write,
 * and the futex wake that tells a sleeping VMM its answer is there. */
static int probe_ring(void *arg)
{
	int fd = *(int *)arg;
	uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return PROBE_WRONG;
	__atomic_store_n(&p[16], 1, __ATOMIC_SEQ_CST);
	if (syscall(SYS_futex, &p[16], FUTEX_WAKE, 1, NULL, NULL, 0) < 0 || munmap(p, 4096) < 0)
		return PROBE_WRONG;
	return PROBE_OK;
}

void test_seccomp_worker_ring_page_and_wake_work(void **state)
{
	int fd = make_memfd();

	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_ring, &fd));
	close(fd);
}

void test_seccomp_worker_x32_syscall_killed(void **state)
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

void test_seccomp_worker_i386_syscall_killed(void **state)
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

void test_seccomp_worker_tsync_covers_threads(void **state)
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
		alarm(TEST_HANG_MS / 1000);
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

void test_seccomp_worker_log_mode_not_killed(void **state)
{
	int family = AF_UNIX;

	/* The same forbidden call: killed in kill mode, performed (and logged) in log mode. */
	assert_killed(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_KILL, probe_socket_works, &family));
	assert_worked(run_under(SBX_ROLE_WORKER, SBX_SECCOMP_LOG, probe_socket_works, &family));
}
void test_seccomp_worker_every_allowed_syscall_passes(void **state)
{
	sweep_allowed(SBX_ROLE_WORKER);
}

void test_seccomp_worker_every_unlisted_syscall_killed(void **state)
{
	sweep_unlisted(SBX_ROLE_WORKER);
}

void test_seccomp_worker_argument_filters_enforced(void **state)
{
	sweep_conditions(SBX_ROLE_WORKER);
}

/* The broker's filter stays loaded under every worker, so each call the worker policy allows
 * must be allowed by the broker's too, and none it denies quietly may be fatal there. */
void test_seccomp_worker_allowed_within_broker(void **state)
{
	sweep_worker_within_broker();
}
