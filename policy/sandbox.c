/*
 * sandbox: sbx_spawn_worker(), the broker's half of the worker sandbox. Responsible for the
 * order of the steps (each one needs the privilege the next one gives up) and for reporting the
 * exact step that failed instead of leaving a dead child to guess about.
 *
 * The child is made by clone3 without CLONE_VM, like fork, in a broker that may have threads:
 * between clone3 and execveat it only makes raw system calls and touches no lock (no malloc, no
 * stdio, no glibc set*id wrappers, which would try to signal the broker's other threads). It runs
 * under the broker's seccomp filter, so every call here is listed in broker.policy.
 *
 * Trusts: the spec, which comes from the broker's own code; the exe file it names (root-owned).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cap-ng.h>
#include <linux/capability.h>
#include <linux/sched.h>

#include "base.h"
#include "err.h"
#include "sandbox.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* Any existing directory serves as the mount point of the new root: it is hidden again by
 * pivot_root, and the mount only exists in the worker's own mount namespace. */
#define SBX_ROOT_MOUNTPOINT  "/tmp"
#define SBX_ROOT_OPTIONS     "size=4096,nr_inodes=2,mode=0555"
#define SBX_ROOT_FLAGS	     (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
#define SBX_SPAWN_TIMEOUT_MS 5000
/* The namespaces of every worker (and of the probe, which must find out whether they work). */
#define SBX_NS_FLAGS                                                                               \
	(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | \
	 CLONE_NEWCGROUP)
/* What clone3 makes: the user namespace (its id maps are written by the parent) and the pid
 * namespace (the child must be born into it to be its pid 1). The child makes the others itself
 * with the capabilities it holds in its new user namespace, owned by it as clone3's would be:
 * creating a network namespace is the slowest step of a spawn (tens of milliseconds under TCG),
 * and done by the child it runs beside the spawner's event loop instead of inside it. */
#define SBX_CLONE_FLAGS	  (CLONE_NEWUSER | CLONE_NEWPID)
#define SBX_UNSHARE_FLAGS (SBX_NS_FLAGS & ~SBX_CLONE_FLAGS)

const struct sbx_rlimit sbx_worker_rlimits_default[] = {
    {RLIMIT_NOFILE, 64}, {RLIMIT_NPROC, 1}, {RLIMIT_FSIZE, 0},
    {RLIMIT_MEMLOCK, 0}, {RLIMIT_CORE, 0},  {RLIMIT_AS, 1ull << 30},
};
const size_t sbx_worker_rlimits_default_count = ARRAY_SIZE(sbx_worker_rlimits_default);

/* What the child writes to the error pipe before it exits; nothing arrives when exec works. */
struct sbx__report {
	int32_t err; /* positive errno */
	char step[28];
};

struct sbx__child {
	const struct sbx_worker_spec *spec;
	const struct sbx_rlimit *rl;
	size_t nrl;
	int exe_fd;
	int null_fd;
	int err_fd;  /* write end of the error pipe */
	int sync_fd; /* child's end of the sync socketpair: one byte once the id maps exist */
};

static _Noreturn void sbx__child_fail(int fd, const char *step, int err)
{
	struct sbx__report rep;
	ssize_t n;

	memset(&rep, 0, sizeof(rep));
	rep.err = err > 0 ? err : EIO;
	strncpy(rep.step, step, sizeof(rep.step) - 1);
	n = write(fd, &rep, sizeof(rep));
	(void)n;
	_exit(127);
}

/* The tmpfs becomes "/" and the old root is detached: nothing of the host stays reachable by
 * path. pivot_root(".", ".") stacks the old root on the new one, so no directory is needed. */
static const char *sbx__child_root(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return "mount private";
	if (mount("vfio-worker", SBX_ROOT_MOUNTPOINT, "tmpfs", SBX_ROOT_FLAGS, SBX_ROOT_OPTIONS) <
	    0)
		return "mount tmpfs";
	if (chdir(SBX_ROOT_MOUNTPOINT) < 0)
		return "chdir new root";
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return "pivot_root";
	if (umount2(".", MNT_DETACH) < 0)
		return "umount old root";
	if (chdir("/") < 0)
		return "chdir /";
	return NULL;
}

/* Moves every fd we keep above the target range first, so that placing one cannot clobber
 * another, then puts them at 0..2 and 3.. without close-on-exec and marks everything else
 * close-on-exec. Returns the failing step or NULL; *err_fd and *exe_fd follow their moves. */
static const char *sbx__child_fds(const struct sbx__child *c, int *err_fd, int *exe_fd)
{
	const struct sbx_worker_spec *s = c->spec;
	int floor = 3 + (int)s->nfds, hi[SBX_FDS_MAX], null_fd, log_fd;
	size_t i;

	*err_fd = fcntl(c->err_fd, F_DUPFD_CLOEXEC, floor);
	if (*err_fd < 0) {
		*err_fd = c->err_fd;
		return "move fds";
	}
	*exe_fd = fcntl(c->exe_fd, F_DUPFD_CLOEXEC, floor);
	null_fd = fcntl(c->null_fd, F_DUPFD_CLOEXEC, floor);
	log_fd = s->stderr_fd >= 0 ? fcntl(s->stderr_fd, F_DUPFD_CLOEXEC, floor) : null_fd;
	if (*exe_fd < 0 || null_fd < 0 || log_fd < 0)
		return "move fds";
	for (i = 0; i < s->nfds; i++) {
		hi[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, floor);
		if (hi[i] < 0)
			return "move fds";
	}
	for (i = 0; i < s->nfds; i++)
		if (dup3(hi[i], 3 + (int)i, 0) < 0)
			return "place fds";
	if (dup3(null_fd, 0, 0) < 0 || dup3(null_fd, 1, 0) < 0 || dup3(log_fd, 2, 0) < 0)
		return "place stdio";
	if (syscall(SYS_close_range, (unsigned)floor, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
		return "close_range";
	return NULL;
}

/* Bounding and ambient sets go first, while CAP_SETPCAP is still held; the uid change then
 * clears permitted and effective, and libcap-ng's capset clears inheritable. libcap-ng's own
 * bounding-set path reads /proc with stdio (malloc), which a clone child of a threaded process
 * must not do, hence the prctl loop. */
static const char *sbx__child_creds(const struct sbx_worker_spec *s)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	int cap, r;

	for (cap = 0;; cap++) {
		r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (r < 0 && errno == EINVAL)
			break;
		if (r < 0)
			return "read bounding set";
		if (r == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return "drop bounding set";
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return "clear ambient set";
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return "setgroups";
	if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0)
		return "setresgid";
	if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
		return "setresuid";
	if (capng_apply(CAPNG_SELECT_CAPS) < 0)
		return "capset";
	if (syscall(SYS_capget, &hdr, data) < 0)
		return "capget";
	if (data[0].effective | data[0].permitted | data[0].inheritable | data[1].effective |
	    data[1].permitted | data[1].inheritable) {
		errno = EPERM;
		return "verify caps";
	}
	return NULL;
}

/* Closes every fd the child inherited but the ones it needs, first thing: the spawner goes on
 * (sbx_spawn_begin() returns before the exec) and closes its own files, a VFIO group's among
 * them, which a copy here would keep open (the group's next open fails with EBUSY) until the
 * exec. Returns the failing step or NULL. */
static const char *sbx__child_close_others(const struct sbx__child *c)
{
	const struct sbx_worker_spec *s = c->spec;
	int keep[SBX_FDS_MAX + 5];
	size_t n = 0, i, j;
	unsigned lo = 0;

	keep[n++] = c->err_fd;
	keep[n++] = c->sync_fd;
	keep[n++] = c->exe_fd;
	keep[n++] = c->null_fd;
	if (s->stderr_fd >= 0)
		keep[n++] = s->stderr_fd;
	for (i = 0; i < s->nfds; i++)
		keep[n++] = s->fds[i];
	/* Sorted in place: no allocation in the child. */
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];

			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (i = 0; i < n; i++) {
		if ((unsigned)keep[i] > lo &&
		    syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0u) < 0)
			return "close inherited fds";
		lo = (unsigned)keep[i] + 1;
	}
	if (syscall(SYS_close_range, lo, ~0u, 0u) < 0)
		return "close inherited fds";
	return NULL;
}

static _Noreturn void sbx__child(const struct sbx__child *c)
{
	const struct sbx_worker_spec *s = c->spec;
	char *const empty_env[] = {NULL};
	int err_fd = c->err_fd, exe_fd = c->exe_fd;
	const char *step;
	size_t i;
	char go;

	step = sbx__child_close_others(c);
	if (step)
		sbx__child_fail(err_fd, step, errno);
	if (write(c->sync_fd, "c", 1) != 1)
		sbx__child_fail(err_fd, "tell fds closed", errno ? errno : EPIPE);
	if (read(c->sync_fd, &go, 1) != 1)
		sbx__child_fail(err_fd, "wait for id maps", errno ? errno : EPIPE);
	if (syscall(SYS_unshare, SBX_UNSHARE_FLAGS) < 0)
		sbx__child_fail(err_fd, "unshare namespaces", errno);
	/* Prepares libcap-ng's all-clear state while /proc is still there for its
	 * cap_last_cap probe; pid 0 means "this process" whatever the thread it was
	 * cloned from had recorded. */
	capng_clear(CAPNG_SELECT_BOTH);
	capng_setpid(0);
	step = sbx__child_root();
	if (!step)
		step = sbx__child_fds(c, &err_fd, &exe_fd);
	if (!step)
		step = sbx__child_creds(s);
	if (step)
		sbx__child_fail(err_fd, step, errno);
	for (i = 0; i < c->nrl; i++) {
		struct rlimit rl = {c->rl[i].limit, c->rl[i].limit};

		if (setrlimit((__rlimit_resource_t)c->rl[i].resource, &rl) < 0)
			sbx__child_fail(err_fd, "setrlimit", errno);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		sbx__child_fail(err_fd, "no_new_privs", errno);
	syscall(SYS_execveat, exe_fd, "", s->argv, s->envp ? s->envp : empty_env, AT_EMPTY_PATH);
	sbx__child_fail(err_fd, "execveat", errno);
}

static int sbx__validate(const struct sbx_worker_spec *s, const struct sbx_rlimit *rl, size_t nrl)
{
	size_t i;

	if (!s->exe || !s->argv || !s->argv[0] || s->nfds > SBX_FDS_MAX || (s->nfds && !s->fds) ||
	    (!rl && nrl))
		return -EINVAL;
	if (s->uid == 0 || s->gid == 0 || s->uid == (uid_t)-1 || s->gid == (gid_t)-1)
		return -EINVAL;
	for (i = 0; i < nrl; i++)
		if (rl[i].resource < 0 || rl[i].resource >= RLIMIT_NLIMITS)
			return -EINVAL;
	for (i = 0; i < s->nfds; i++)
		if (s->fds[i] < 0 || fcntl(s->fds[i], F_GETFD) < 0)
			return -EBADF;
	if (s->stderr_fd >= 0 && fcntl(s->stderr_fd, F_GETFD) < 0)
		return -EBADF;
	return 0;
}

/* "inside outside 1": the worker's ids are the same numbers inside and outside, and no other
 * id exists in its namespace (in particular not 0). */
static int sbx__write_map(pid_t pid, const char *file, unsigned id)
{
	_cleanup_close_ int fd = -1;
	char path[64], line[64];
	ssize_t n;
	int len;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	len = snprintf(line, sizeof(line), "%u %u 1\n", id, id);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, line, (size_t)len);
	if (n != len)
		return n < 0 ? -errno : -EIO;
	return 0;
}

static void sbx__set_error(const struct sbx_worker_spec *s, int err, const char *step)
{
	if (!s->error)
		return;
	s->error->err = err;
	snprintf(s->error->step, sizeof(s->error->step), "%s", step);
}

static void sbx__reap(int pidfd, int kill)
{
	siginfo_t si;

	if (kill)
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	/* An event loop that watched the pidfd made it O_NONBLOCK: waitid() then says EAGAIN
	 * until the child has exited, which the pidfd's POLLIN announces. */
	for (;;) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};

		if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) == 0)
			return;
		if (errno == EAGAIN)
			poll(&p, 1, -1);
		else if (errno != EINTR)
			return;
	}
}

/* Parent side once the child exists: it waits (bounded) until the child has closed the fds it
 * inherited, writes the id maps, then releases the child to build its sandbox and exec. */
static int sbx__release(const struct sbx_worker_spec *s, pid_t pid, int sync_fd)
{
	struct pollfd p = {.fd = sync_fd, .events = POLLIN};
	char c = 0;
	int r;

	do
		r = poll(&p, 1, SBX_SPAWN_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0 || read(sync_fd, &c, 1) != 1 || c != 'c') {
		r = r == 0 ? -ETIMEDOUT : r < 0 ? -errno : -EIO;
		sbx__set_error(s, r, "wait for child start");
		return r;
	}

	r = sbx__write_map(pid, "uid_map", s->uid);
	if (r < 0) {
		sbx__set_error(s, r, "write uid_map");
		return r;
	}
	r = sbx__write_map(pid, "gid_map", s->gid);
	if (r < 0) {
		sbx__set_error(s, r, "write gid_map");
		return r;
	}
	/* A socket rather than a pipe: MSG_NOSIGNAL, so a child that died early yields EPIPE
	 * here instead of a SIGPIPE for the whole broker. */
	if (send(sync_fd, "g", 1, MSG_NOSIGNAL) != 1) {
		r = -errno;
		sbx__set_error(s, r, "release child");
		return r;
	}
	return 0;
}

static int sbx__begin(const struct sbx_worker_spec *s, struct sbx__child *c,
		      struct sbx_pending *ret)
{
	_cleanup_close_ int err_rd = -1;
	_cleanup_close_ int err_wr = -1;
	_cleanup_close_ int sync_child = -1;
	_cleanup_close_ int sync_parent = -1;
	_cleanup_close_ int pidfd = -1;
	struct clone_args args;
	int p[2], r;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	err_rd = p[0];
	err_wr = p[1];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
		return -errno;
	sync_child = p[0];
	sync_parent = p[1];
	c->err_fd = err_wr;
	c->sync_fd = sync_child;
	memset(&args, 0, sizeof(args));
	args.flags = SBX_CLONE_FLAGS | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = SIGCHLD;
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0)
		sbx__child(c);
	if (pid < 0) {
		r = -errno;
		sbx__set_error(s, r, "clone3");
		return r;
	}
	/* Only the child holds these now: the error pipe reads EOF once it exec'd or died. */
	close(TAKE_FD(err_wr));
	close(TAKE_FD(sync_child));
	r = sbx__release(s, pid, sync_parent);
	if (r != 0) {
		sbx__reap(pidfd, 1);
		return r;
	}
	ret->pid = pid;
	ret->pidfd = TAKE_FD(pidfd);
	ret->report_fd = TAKE_FD(err_rd);
	return 0;
}

int sbx_spawn_begin(const struct sbx_worker_spec *spec, struct sbx_pending *ret)
{
	_cleanup_close_ int exe_fd = -1;
	_cleanup_close_ int null_fd = -1;
	struct sbx__child c;
	struct stat st;
	int r;

	if (!spec || !ret)
		return -EINVAL;
	*ret = (struct sbx_pending){.pid = -1, .pidfd = -1, .report_fd = -1};
	memset(&c, 0, sizeof(c));
	c.spec = spec;
	c.rl = spec->rlimits ? spec->rlimits : sbx_worker_rlimits_default;
	c.nrl = spec->rlimits ? spec->nrlimits : sbx_worker_rlimits_default_count;
	r = sbx__validate(spec, spec->rlimits, spec->nrlimits);
	if (r < 0) {
		sbx__set_error(spec, r, "check spec");
		return r;
	}
	/* Opened here, before any namespace exists: the empty root has no path to it. */
	exe_fd = open(spec->exe, O_PATH | O_CLOEXEC);
	if (exe_fd < 0) {
		r = -errno;
		sbx__set_error(spec, r, "open exe");
		return r;
	}
	if (fstat(exe_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		sbx__set_error(spec, -EACCES, "exe is not a regular file");
		return -EACCES;
	}
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0) {
		r = -errno;
		sbx__set_error(spec, r, "open /dev/null");
		return r;
	}
	c.exe_fd = exe_fd;
	c.null_fd = null_fd;
	return sbx__begin(spec, &c, ret);
}

int sbx_spawn_end(struct sbx_pending *p, struct sbx_spawn_error *error)
{
	struct sbx__report rep;
	ssize_t n;
	int r;

	if (!p || p->report_fd < 0 || p->pidfd < 0)
		return -EINVAL;
	n = read(p->report_fd, &rep, sizeof(rep));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -EAGAIN;
	if (n == 0) {
		/* Exec'd: the pipe closed with the child's copy of it, and nothing came. */
		close(p->report_fd);
		p->report_fd = -1;
		return 0;
	}
	if (n < 0) {
		r = -errno;
		snprintf(rep.step, sizeof(rep.step), "wait for exec");
	} else if (n != sizeof(rep)) {
		r = -EIO;
		snprintf(rep.step, sizeof(rep.step), "wait for exec");
	} else {
		rep.step[sizeof(rep.step) - 1] = '\0';
		r = -(rep.err > 0 ? rep.err : EIO);
	}
	if (error) {
		error->err = r;
		snprintf(error->step, sizeof(error->step), "%s", rep.step);
	}
	sbx_spawn_abort(p);
	return r;
}

void sbx_spawn_abort(struct sbx_pending *p)
{
	if (!p)
		return;
	if (p->pidfd >= 0) {
		sbx__reap(p->pidfd, 1);
		close(p->pidfd);
	}
	if (p->report_fd >= 0)
		close(p->report_fd);
	*p = (struct sbx_pending){.pid = -1, .pidfd = -1, .report_fd = -1};
}

int sbx_spawn_worker(const struct sbx_worker_spec *spec, pid_t *ret_pid, int *ret_pidfd)
{
	struct sbx_spawn_error serr = {0};
	struct sbx_pending p;
	struct timespec start, now;
	long left;
	int r;

	if (!spec || !ret_pid || !ret_pidfd)
		return -EINVAL;
	r = sbx_spawn_begin(spec, &p);
	if (r < 0)
		return r;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pf = {.fd = p.report_fd, .events = POLLIN};

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = SBX_SPAWN_TIMEOUT_MS - ((now.tv_sec - start.tv_sec) * 1000 +
					       (now.tv_nsec - start.tv_nsec) / 1000000);
		if (left <= 0) {
			sbx_spawn_abort(&p);
			sbx__set_error(spec, -ETIMEDOUT, "wait for exec");
			return -ETIMEDOUT;
		}
		if (poll(&pf, 1, (int)left) < 0 && errno != EINTR) {
			r = -errno;
			sbx_spawn_abort(&p);
			sbx__set_error(spec, r, "wait for exec");
			return r;
		}
		r = sbx_spawn_end(&p, &serr);
		if (r == -EAGAIN)
			continue;
		if (r < 0) {
			sbx__set_error(spec, serr.err, serr.step);
			return r;
		}
		*ret_pid = p.pid;
		*ret_pidfd = p.pidfd;
		return 0;
	}
}

/* The probe child's exit codes beyond a plain errno (which stays below 200). */
#define SBX_PROBE_PRIVATE 200

/* Whether "/" is another directory than pid 1's root: the kernel refuses new user namespaces
 * to a chrooted process (CLONE_NEWUSER: EPERM). */
static bool sbx__chrooted(void)
{
	struct stat self, init;

	if (stat("/", &self) < 0 || stat("/proc/1/root/", &init) < 0)
		return false;
	return self.st_dev != init.st_dev || self.st_ino != init.st_ino;
}

static int sbx__read_int(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[16] = "";
	int v = -1;
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0 && sscanf(buf, "%d", &v) != 1)
		v = -1;
	return v;
}

/* Why clone3 with the workers' namespace flags failed with `err` (positive errno). */
static int sbx__clone_why(int err, struct vb_err *e)
{
	if (err == EPERM && sbx__chrooted())
		return vb_errf(e, -err,
			       "this process runs in a chroot, and the kernel refuses new user "
			       "namespaces inside one (clone3: %s)",
			       strerror(err));
	if (err == EPERM && sbx__read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0)
		return vb_errf(e, -err,
			       "kernel.unprivileged_userns_clone is 0 (clone3 CLONE_NEWUSER: %s)",
			       strerror(err));
	if (err == ENOSPC)
		return vb_errf(e, -err,
			       "a namespace limit is reached or 0 (user.max_user_namespaces is %d; "
			       "clone3: %s)",
			       sbx__read_int("/proc/sys/user/max_user_namespaces"), strerror(err));
	if (err == ENOSYS)
		return vb_errf(e, -err, "clone3 is not available (kernel before 5.3, or filtered)");
	if (err == EINVAL)
		return vb_errf(e, -err,
			       "a namespace type the workers need is not in this kernel "
			       "(clone3: Invalid argument)");
	return vb_errf(e, -err,
		       "new user namespaces are refused (clone3 CLONE_NEWUSER: %s): a chroot (one "
		       "that /proc cannot tell), a container runtime's seccomp filter or an LSM",
		       strerror(err));
}

int sbx_userns_probe(struct vb_err *err)
{
	struct clone_args args;
	pid_t pid, w;
	int st;

	memset(&args, 0, sizeof(args));
	args.flags = SBX_NS_FLAGS;
	args.exit_signal = SIGCHLD;
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid == 0) {
		/* Raw calls only, as in a worker's child (the caller may have threads). */
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			_exit(SBX_PROBE_PRIVATE);
		if (mount("vfio-worker-probe", SBX_ROOT_MOUNTPOINT, "tmpfs", SBX_ROOT_FLAGS,
			  SBX_ROOT_OPTIONS) < 0)
			_exit(errno > 0 && errno < SBX_PROBE_PRIVATE ? errno : EIO);
		_exit(0);
	}
	if (pid < 0)
		return sbx__clone_why(errno, err);
	while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (w < 0)
		return vb_errf(err, -ECHILD, "waiting for the probe child: %s", strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == SBX_PROBE_PRIVATE)
		return vb_errf(err, -EPERM, "in a new mount namespace, making / private fails");
	if (WIFEXITED(st))
		return vb_errf(err, -WEXITSTATUS(st),
			       "in a new user namespace, mounting a tmpfs fails: %s",
			       strerror(WEXITSTATUS(st)));
	return vb_errf(err, -EPERM, "the probe child died of signal %d (a seccomp filter?)",
		       WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
