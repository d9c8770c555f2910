/*
 * guest_kill_at PID POINT [entry|exit]: SIGKILLs process PID at an exact point of its work, for
 * the guest tests that kill the broker "in the middle of" a request (issue 12). It traces every
 * thread of PID (ptrace, system-call stops) until one of them makes the ioctl POINT names on the
 * fd kind it names, and kills the whole process at that call's entry (before the kernel acts)
 * or, by default, at its exit (the kernel has acted, the broker has not yet seen the result):
 *
 *   dma-map   ioctl(VFIO_IOMMU_MAP_DMA) on the container, /dev/vfio/vfio
 *   dma-unmap ioctl(VFIO_IOMMU_UNMAP_DMA) on the container
 *   set-irqs  ioctl(VFIO_DEVICE_SET_IRQS) on a device fd, anon_inode:[vfio-device]
 *
 * The point is the process's own system call, not a moment in time: nothing here depends on
 * how fast the machine is. Prints one line saying where it killed and exits 0; exits 1 when
 * PID ended first or nothing matched within 300 s (then it detaches and PID runs on), 2 on a
 * usage error. Needs CAP_SYS_PTRACE over PID (root in the test guest).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <linux/ptrace.h>
#include <linux/vfio.h>

#define MAX_THREADS 256
#define TIMEOUT_S   300

static const struct point {
	const char *name;
	unsigned long request;
	const char *request_name;
	const char *fd_target; /* readlink of /proc/PID/fd/N */
} points[] = {
    {"dma-map", VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", "/dev/vfio/vfio"},
    {"dma-unmap", VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", "/dev/vfio/vfio"},
    {"set-irqs", VFIO_DEVICE_SET_IRQS, "VFIO_DEVICE_SET_IRQS", "anon_inode:[vfio-device]"},
};

/* A traced thread and the system call it is in (from its entry stop to its exit stop). */
struct thread {
	pid_t tid;
	bool armed; /* in the matching ioctl: kill at its exit */
	int fd;
};

static struct thread threads[MAX_THREADS];
static size_t nthreads;

static struct thread *thread_of(pid_t tid)
{
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].tid == tid)
			return &threads[i];
	if (nthreads == MAX_THREADS)
		return NULL;
	threads[nthreads] = (struct thread){.tid = tid, .fd = -1};
	return &threads[nthreads++];
}

static void forget(pid_t tid)
{
	for (size_t i = 0; i < nthreads; i++)
		if (threads[i].tid == tid) {
			threads[i] = threads[--nthreads];
			return;
		}
}

static void detach_all(void)
{
	for (size_t i = 0; i < nthreads; i++)
		ptrace(PTRACE_DETACH, threads[i].tid, NULL, NULL);
}

static void on_alarm(int sig)
{
	static const char msg[] = "guest_kill_at: no matching ioctl within 300 s\n";

	(void)sig;
	/* Threads in a stop are detached and run on; the kernel detaches the rest at our exit. */
	detach_all();
	(void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	_exit(1);
}

static bool fd_is(pid_t pid, int fd, const char *target)
{
	char path[64], buf[128];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return false;
	buf[n] = 0;
	return !strcmp(buf, target);
}

static int attach(pid_t tid)
{
	long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE;

	if (ptrace(PTRACE_SEIZE, tid, NULL, (void *)opts) < 0)
		return -errno;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0)
		return -errno;
	return thread_of(tid) ? 0 : -E2BIG;
}

static int attach_all(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int r = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while (r == 0 && (de = readdir(d)))
		if (de->d_name[0] != '.')
			r = attach((pid_t)atoi(de->d_name));
	closedir(d);
	return r;
}

static void kill_now(pid_t pid, const struct point *p, struct thread *t, const char *when,
		     long long rval)
{
	kill(pid, SIGKILL);
	if (rval == LLONG_MIN)
		printf("killed %d at the entry of ioctl(%d -> %s, %s) in thread %d\n", pid, t->fd,
		       p->fd_target, p->request_name, t->tid);
	else
		printf("killed %d at the %s of ioctl(%d -> %s, %s) = %lld in thread %d\n", pid,
		       when, t->fd, p->fd_target, p->request_name, rval, t->tid);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const struct point *p = NULL;
	bool at_exit = true;
	pid_t pid;
	int r;

	if (argc == 4 && !strcmp(argv[3], "entry"))
		at_exit = false;
	else if (argc == 4 && strcmp(argv[3], "exit"))
		argc = 0;
	for (size_t i = 0; argc >= 3 && i < sizeof(points) / sizeof(points[0]); i++)
		if (!strcmp(argv[2], points[i].name))
			p = &points[i];
	pid = argc >= 3 ? (pid_t)atoi(argv[1]) : 0;
	if (!p || pid <= 0 || argc > 4) {
		fprintf(stderr,
			"usage: guest_kill_at PID dma-map|dma-unmap|set-irqs [entry|exit]\n");
		return 2;
	}
	signal(SIGALRM, on_alarm);
	alarm(TIMEOUT_S);
	r = attach_all(pid);
	if (r < 0) {
		detach_all();
		printf("guest_kill_at: cannot trace %d: %s\n", pid, strerror(-r));
		return 1;
	}
	for (;;) {
		struct ptrace_syscall_info si;
		int st, sig = 0;
		pid_t tid = waitpid(-1, &st, __WALL);
		struct thread *t;

		if (tid < 0) {
			if (errno == EINTR)
				continue;
			printf("guest_kill_at: %d ended before the ioctl (%s)\n", pid,
			       strerror(errno));
			return 1;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			forget(tid);
			if (tid == pid) {
				printf("guest_kill_at: %d ended before the ioctl\n", pid);
				return 1;
			}
			continue;
		}
		t = thread_of(tid); /* a new thread (PTRACE_O_TRACECLONE) is traced already */
		if (!t) {
			detach_all();
			printf("guest_kill_at: more than %d threads\n", MAX_THREADS);
			return 1;
		}
		if (WSTOPSIG(st) == (SIGTRAP | 0x80) &&
		    ptrace(PTRACE_GET_SYSCALL_INFO, tid, (void *)sizeof(si), &si) > 0) {
			if (si.op == PTRACE_SYSCALL_INFO_ENTRY && si.entry.nr == SYS_ioctl &&
			    si.entry.args[1] == p->request &&
			    fd_is(pid, (int)si.entry.args[0], p->fd_target)) {
				t->fd = (int)si.entry.args[0];
				if (!at_exit) {
					kill_now(pid, p, t, "entry", LLONG_MIN);
					return 0;
				}
				t->armed = true;
			} else if (si.op == PTRACE_SYSCALL_INFO_EXIT && t->armed) {
				kill_now(pid, p, t, "exit", (long long)si.exit.rval);
				return 0;
			}
		} else if (WSTOPSIG(st) != SIGTRAP && (st >> 16) == 0) {
			sig = WSTOPSIG(st); /* a signal for the process: deliver it */
		}
		/* Event stops (clone, interrupt, group stop) and syscall stops: go on. */
		ptrace(PTRACE_SYSCALL, tid, NULL, (void *)(long)sig);
	}
}
