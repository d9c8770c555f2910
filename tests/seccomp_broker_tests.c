/*
 * seccomp_broker_tests: the broker role's cases of test_seccomp. The broker may use VFIO,
 * unix sockets, DMA memfds, threads and the worker spawn path; nothing that reaches other
 * processes, the network, the kernel's code or new mounts beyond the worker's own.
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

#include "base.h"
#include "policy_table.h"
#include "record.h"
#include "registry.h"
#include "sandbox.h"
#include "userns_test.h"
#include "seccomp.h"
#include "seccomp_probe.h"

/* ---- broker -------------------------------------------------------------------------------- */

void test_seccomp_broker_vfio_ioctl_allowed(void **state)
{
	struct vfio_device_info info = {.argsz = sizeof(info)};
	int fd = make_memfd();
	struct call c = {
	    .nr = SYS_ioctl, .a = {fd, VFIO_DEVICE_GET_INFO, (long)&info}, .want_errno = ENOTTY};

	/* The filter lets it through; the kernel then refuses it on a non-VFIO fd. */
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	close(fd);
}

void test_seccomp_broker_listed_vfio_ioctls_allowed(void **state)
{
	static const unsigned long listed[] = {
	    VFIO_GET_API_VERSION,     VFIO_CHECK_EXTENSION,	VFIO_SET_IOMMU,
	    VFIO_IOMMU_GET_INFO,      VFIO_IOMMU_MAP_DMA,	VFIO_IOMMU_UNMAP_DMA,
	    VFIO_GROUP_GET_STATUS,    VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
	    VFIO_GROUP_GET_DEVICE_FD, VFIO_DEVICE_GET_INFO,	VFIO_DEVICE_GET_REGION_INFO,
	    VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,	VFIO_DEVICE_RESET,
	};
	int fd = make_memfd();

	for (size_t i = 0; i < ARRAY_SIZE(listed); i++) {
		struct call c = {.nr = SYS_ioctl, .a = {fd, (long)listed[i]}, .want_errno = ENOTTY};

		assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	}
	close(fd);
}

void test_seccomp_broker_other_ioctls_killed(void **state)
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

void test_seccomp_broker_execve_killed(void **state)
{
	int fd = open("/bin/true", O_PATH | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_killed(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_execve, NULL));
	/* execveat by path (no AT_EMPTY_PATH) is execve by another name. */
	assert_killed(
	    call_status(SBX_ROLE_BROKER, SYS_execveat, AT_FDCWD, (long)"/bin/true", 0, 0));
	close(fd);
}

void test_seccomp_broker_socket_inet_killed(void **state)
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

void test_seccomp_broker_unix_sockets_work(void **state)
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

void test_seccomp_broker_memfd_map_works(void **state)
{
	int fd = make_memfd();

	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_memfd_map, &fd));
	close(fd);
}

/* The state record is made, written past its first journal (compaction grows the memfd, and
 * past 64 KiB of snapshot a thread writes it) and adopted again under the broker's filter. */
static int probe_record(void *arg)
{
	struct brk_rec_vm vm = {.name = "vm"};
	struct brk_record *rec = NULL, *again = NULL;
	struct brk_record_stats st;
	struct brk_journal j;
	uint32_t i;

	(void)arg;
	if (brk_record_new(&rec, NULL) || brk_record_vm_put(rec, &vm) ||
	    brk_record_dma_journal(rec, "vm", &j))
		return PROBE_WRONG;
	for (i = 0; i < 4000; i++) {
		struct brk_jop op = {
		    .kind = BRK_JOP_DMA_MAP, .iova = (uint64_t)i << 12, .size = 4096, .prot = 3};

		if (j.intent(&j, &op))
			return PROBE_WRONG;
		j.done(&j, &op, true);
	}
	/* Collects the thread's compaction, whether or not it was done before the last map. */
	if (brk_record_compact(rec))
		return PROBE_WRONG;
	brk_record_stats(rec, &st);
	if (st.compactions < 2 || st.bg_compactions < 1 ||
	    brk_record_adopt(brk_record_fd(rec), &again, NULL))
		return PROBE_WRONG;
	brk_record_free(again);
	brk_record_free(rec);
	return PROBE_OK;
}

void test_seccomp_broker_state_record_works(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_record, NULL));
}

/* ListDevices' order for a broker's largest registry: 4096 devices added out of order and kept
 * in BDF order under the broker's filter (the index grows as they come; glibc's qsort(), which
 * this replaced, asks sysinfo() for a buffer this size, and would be killed). */
static int probe_registry_sorted(void *arg)
{
	struct brk_registry *reg = NULL;
	struct brk_dev_rec *const *out;
	struct brk_dev_rec *d;
	uint32_t n = 4096, got;

	(void)arg;
	if (brk_registry_new(1, n, &reg))
		return PROBE_WRONG;
	for (uint32_t i = 0; i < n; i++) {
		char bdf[32];

		/* Not in order: a multiplier coprime with 4096 visits every bus:device once. */
		snprintf(bdf, sizeof(bdf), "0000:%02x:%02x.0", (i * 2654435761u) % n / 32,
			 (i * 2654435761u) % 32);
		if (brk_registry_add(reg, bdf, "vm", &d, NULL))
			return PROBE_WRONG;
	}
	got = brk_registry_after(reg, "", &out);
	for (uint32_t i = 1; i < got; i++)
		if (strcmp(out[i - 1]->bdf, out[i]->bdf) >= 0)
			return PROBE_WRONG;
	return got == n ? PROBE_OK : PROBE_WRONG;
}

void test_seccomp_broker_registry_sorted_by_bdf_works(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_registry_sorted, NULL));
}

/* A broker taking over after a restart loads a state record whose mapping has the most owners a
 * record holds (4096: the VM's memory shared by that many DMA owners), under its filter: the
 * load checks the owners are distinct by sorting them, which glibc's qsort() would have done
 * after asking sysinfo(), and been killed. */
static int probe_record_many_owners(void *arg)
{
	struct brk_rec_vm vm = {.name = "vm"};
	struct brk_record *rec = NULL, *again = NULL;
	const struct brk_rec_vm *got;
	struct brk_journal j;
	struct brk_jop op = {
	    .kind = BRK_JOP_DMA_MAP, .owner = 1, .iova = 1u << 20, .size = 4096, .prot = 3};
	int ok;

	(void)arg;
	if (brk_record_new(&rec, NULL) || brk_record_vm_put(rec, &vm) ||
	    brk_record_dma_journal(rec, "vm", &j) || j.intent(&j, &op))
		return PROBE_WRONG;
	j.done(&j, &op, true);
	op.kind = BRK_JOP_DMA_SHARE;
	for (op.owner = 2; op.owner <= BRK_REC_MAX_OWNERS; op.owner++) {
		if (j.intent(&j, &op))
			return PROBE_WRONG;
		j.done(&j, &op, true);
	}
	/* The mapping and its owners go into the snapshot, which is what adoption decodes. */
	if (brk_record_compact(rec) || brk_record_adopt(brk_record_fd(rec), &again, NULL))
		return PROBE_WRONG;
	got = brk_rec_state_vm(brk_record_state(again), "vm");
	ok = got && got->nmaps == 1 && got->map[0].nalso == BRK_REC_MAX_OWNERS - 1;
	brk_record_free(again);
	brk_record_free(rec);
	return ok ? PROBE_OK : PROBE_WRONG;
}

void test_seccomp_broker_record_many_owners_adopted(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_record_many_owners, NULL));
}

void test_seccomp_broker_openat_create_denied(void **state)
{
	struct call c = {.nr = SYS_openat,
			 .a = {AT_FDCWD, (long)"/tmp/vb-must-not-exist", O_CREAT | O_WRONLY, 0600},
			 .want_errno = EACCES};
	struct call ro = {.nr = SYS_openat, .a = {AT_FDCWD, (long)"/proc/self/status", O_RDONLY}};

	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &c));
	assert_int_equal(access("/tmp/vb-must-not-exist", F_OK), -1);
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_call, &ro));
}

void test_seccomp_broker_debug_and_kernel_calls_killed(void **state)
{
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_ptrace, PTRACE_ATTACH, test_pid, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_process_vm_readv, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_bpf, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_io_uring_setup, 8, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_init_module, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_kexec_load, 0, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_setns, 0, 0, 0, 0));
	/* unshare only with the spawn child's exact set (sandbox.c), never a user namespace. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_unshare, CLONE_NEWNS, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_unshare, CLONE_NEWUSER, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_unshare,
				  CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC |
				      CLONE_NEWUTS | CLONE_NEWCGROUP,
				  0, 0, 0));
}

void test_seccomp_broker_kill_killed(void **state)
{
	/* Workers are ended through their pidfds; no pid number is ever signalled. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_kill, test_pid, 0, 0, 0));
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_tgkill, test_pid, test_pid, 0, 0));
	/* rlimits of the broker itself only. */
	assert_killed(call_status(SBX_ROLE_BROKER, SYS_prlimit64, test_pid, RLIMIT_NOFILE, 0, 0));
}

void test_seccomp_broker_mount_other_flags_killed(void **state)
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
void test_seccomp_broker_spawn_worker_works(void **state)
{
	need_userns();
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

void test_seccomp_broker_threads_work(void **state)
{
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_threads, NULL));
}

void test_seccomp_broker_log_mode_not_killed(void **state)
{
	int family = AF_INET;

	assert_killed(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_KILL, probe_socket_works, &family));
	assert_worked(run_under(SBX_ROLE_BROKER, SBX_SECCOMP_LOG, probe_socket_works, &family));
}

void test_seccomp_broker_every_allowed_syscall_passes(void **state)
{
	sweep_allowed(SBX_ROLE_BROKER);
}

void test_seccomp_broker_every_unlisted_syscall_killed(void **state)
{
	sweep_unlisted(SBX_ROLE_BROKER);
}

void test_seccomp_broker_argument_filters_enforced(void **state)
{
	sweep_conditions(SBX_ROLE_BROKER);
}
