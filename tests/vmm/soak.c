/*
 * vfio-soak: the soak driver of the guest tests (tests/guest/cases/soak.py, `make soak`). A VMM
 * and an orchestrator in one process, on libvfiobroker, against a running vfio-brokerd and one
 * edu device bound to vfio-pci. Each phase repeats one thing many times and checks every
 * answer; the broker's resident memory, open fds and locked memory are read from /proc at the
 * first tenth and at the end of each phase, and must not grow.
 *
 *   accesses     trapped config-space and BAR reads through the worker, each value checked
 *   kills        SIGKILL of the worker in the middle of a DMA map, a SET_IRQS, a config write
 *                through the shared-memory ring and one over the socket (in turn): the worker
 *                is stopped (SIGSTOP), the VMM sends the request, and the worker is killed once
 *                the request is in the worker's hands, unread, so the point is the same every
 *                time (a socket's request: SIOCOUTQ of the VMM's end > 0; a ring's: the VMM
 *                asleep in FUTEX_WAIT on the ring, which it enters only after it posted); the
 *                broker must restart it with the device quiesced (no mapping, no IRQ route)
 *   disconnects  the VMM hangs up in the middle of a request (same points, same marker: the
 *                request is queued, the VMM shuts its socket down, its call fails, and only
 *                then is the worker let go on):
 *                the worker serves the request of a VMM that is gone, then must drop what it
 *                did; no restart, no mapping left
 *   cycles       AddDevice, VMM handshake and one access, RemoveDevice, through the control
 *                socket
 *
 * Prints one `soak:` line per phase (count, seconds, rate) and the broker's figures; exits 0
 * when every answer was right and the figures are flat, 1 otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vfiobroker/client.h>

#define EDU_ID	     0x11e81234u /* vendor 1234, device 11e8 */
#define EDU_IDENT    0x010000edu /* BAR0 +0: the edu's identification register */
#define RAM_SIZE     (2u << 20)
#define RAM_IOVA     0x10000000ull
#define WAIT_MS	     60000
#define RSS_SLACK_KB 1024 /* allocator noise; a leak per operation is far above it */
/* fds the broker may hold for a moment after an operation has been answered (a removed worker's
 * pidfd and channel until libuv closes them, a control session being torn down): a leak of one
 * fd per operation is far above it after the first tenth. */
#define FD_SLACK	2
#define STATE_READY	2
#define STATE_CONNECTED 3
#define STATE_FAULTED	5

struct opts {
	const char *control, *bdf, *vm;
	pid_t broker;
	unsigned long accesses, kills, disconnects, cycles;
};

struct figures {
	long rss_kb, lck_kb, fds;
};

static int failures;

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("soak: FAIL: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
	fflush(stdout);
	failures++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* ---- the broker's figures -------------------------------------------------------------- */

/* A field in kB of /proc/<pid>/<file>, or -1. */
static long proc_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':')
			v = strtol(line + klen + 1, NULL, 10);
	fclose(f);
	return v;
}

static long count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* What the broker's fds are, "fd:target ..." (to say what a changed count is). */
static void fd_targets(pid_t pid, char *buf, size_t len)
{
	char path[300], target[256];
	struct dirent *e;
	size_t used = 0;
	DIR *d;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d)) && used < len) {
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		used += (size_t)snprintf(buf + used, len - used, " %s:%s", e->d_name, target);
	}
	closedir(d);
}

static struct figures broker_figures(pid_t pid)
{
	/* Rss from a walk of the page tables, not status's VmRSS: that is read from per-CPU
	 * counters without the changes each CPU still holds (up to 32 pages per counter and CPU
	 * since Linux 6.2), noise a flat figure need not allow for. */
	struct figures f = {proc_kb(pid, "smaps_rollup", "Rss"), proc_kb(pid, "status", "VmLck"),
			    count_fds(pid)};

	if (f.rss_kb < 0 || f.lck_kb < 0 || f.fds < 0)
		fail("cannot read /proc/%d: is the broker running?", (int)pid);
	return f;
}

/* When a phase of n steps takes its first figures: after a tenth of them, and never before the
 * first whole step (which allocates what the broker then reuses: a short run has n < 10). */
static bool at_tenth(unsigned long i, unsigned long n)
{
	unsigned long t = n / 10 ? n / 10 : 1;

	return i == (t < n ? t : 0);
}

/* The end of a phase against its first tenth: same state, so the same fds and no growth. */
static void flat(const char *phase, pid_t pid, const struct figures *tenth)
{
	struct figures end = broker_figures(pid);

	printf("soak: %s broker rss_kb tenth=%ld end=%ld fds tenth=%ld end=%ld vmlck_kb tenth=%ld "
	       "end=%ld\n",
	       phase, tenth->rss_kb, end.rss_kb, tenth->fds, end.fds, tenth->lck_kb, end.lck_kb);
	if (end.fds > tenth->fds + FD_SLACK)
		fail("%s: the broker's fds went from %ld to %ld", phase, tenth->fds, end.fds);
	if (end.rss_kb > tenth->rss_kb + RSS_SLACK_KB)
		fail("%s: the broker's RSS grew from %ld to %ld kB", phase, tenth->rss_kb,
		     end.rss_kb);
	if (end.lck_kb != tenth->lck_kb)
		fail("%s: the broker's VmLck went from %ld to %ld kB", phase, tenth->lck_kb,
		     end.lck_kb);
}

static void rate(const char *phase, unsigned long n, double t0)
{
	double s = now_s() - t0;

	printf("soak: %s n=%lu seconds=%.1f per_second=%.0f\n", phase, n, s, s > 0 ? n / s : 0.0);
	fflush(stdout);
}

/* ---- the orchestrator's side ----------------------------------------------------------- */

static struct vfb_ctl *ctl;

static int status(const struct opts *o, struct vfb_ctl_device **d)
{
	int r = vfb_ctl_status(ctl, o->bdf, d);

	if (r < 0)
		fail("status %s: %s (%s)", o->bdf, strerror(-r), vfb_ctl_last_error(ctl));
	return r;
}

static int irqs_enabled(const struct vfb_ctl_device *d)
{
	int n = 0;

	for (size_t i = 0; i < d->nirqs; i++)
		n += (int)d->irqs[i].enabled;
	return n;
}

/* Polls the device's status until `pred` holds (the broker's work after a kill or a hang-up
 * happens on its own loop); returns 0, or -1 after WAIT_MS. */
static int wait_for(const struct opts *o, bool (*pred)(const struct vfb_ctl_device *, void *),
		    void *arg, const char *what)
{
	double deadline = now_s() + WAIT_MS / 1000.0;
	struct vfb_ctl_device *d = NULL;

	while (now_s() < deadline) {
		bool ok;

		if (status(o, &d) < 0)
			return -1;
		ok = pred(d, arg);
		if (ok) {
			vfb_ctl_device_free(d);
			return 0;
		}
		vfb_ctl_device_free(d);
		sleep_ms(5);
	}
	fail("%s: not within %d ms", what, WAIT_MS);
	return -1;
}

static int add(const struct opts *o, struct vfb_ctl_add_reply *rep)
{
	struct vfb_ctl_add_request req = {
	    .bdf = o->bdf, .vm = o->vm, .owner_uid = getuid(), .owner_gid = getgid()};
	int r = vfb_ctl_add(ctl, &req, rep);

	if (r < 0)
		fail("add %s: %s (%s)", o->bdf, strerror(-r), vfb_ctl_last_error(ctl));
	return r;
}

static int remove_dev(const struct opts *o)
{
	int r = vfb_ctl_remove(ctl, o->bdf, 0, VFB_CTL_REMOVE_FORCE, NULL);

	if (r < 0)
		fail("remove %s: %s (%s)", o->bdf, strerror(-r), vfb_ctl_last_error(ctl));
	return r;
}

/* ---- the VMM's side -------------------------------------------------------------------- */

struct vmm {
	struct vfb_dev *dev;
	/* A duplicate of the handle's socket (the library keeps its own descriptor of it): the
	 * same socket, for SIOCOUTQ and shutdown. Closed by vmm_close. */
	int fd;
};

/* flags: 0 (the ring, as a VMM gets it by default) or VFB_DEV_CONNECT_NO_RING. */
static int vmm_connect(const char *path, uint32_t flags, struct vmm *v)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		fail("connect %s: %s", path, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	v->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (v->fd < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = vfb_dev_connect_fd(fd, "vfio-soak", flags, &v->dev);
	if (r < 0) {
		fail("handshake on %s: %s", path, strerror(-r));
		close(fd);
		close(v->fd);
		return r;
	}
	return vfb_dev_set_timeout(v->dev, WAIT_MS);
}

static void vmm_close(struct vmm *v)
{
	vfb_dev_close(v->dev);
	close(v->fd);
}

static int cfg_read32(struct vmm *v, uint32_t off, uint32_t *val)
{
	uint8_t b[4];
	int r = vfb_dev_cfg_read(v->dev, off, b, 4);

	*val = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return r;
}

/* Memory decoding on, as a guest driver would before touching BAR0. */
static int enable_memory(struct vmm *v)
{
	uint8_t cmd[2] = {0x06, 0x00}; /* memory space, bus master */

	return vfb_dev_cfg_write(v->dev, 4, cmd, 2);
}

/* ---- a request stopped in the middle --------------------------------------------------- */

enum point { P_DMA_MAP, P_SET_IRQS, P_CFG_RING, P_CFG_SOCKET, P_COUNT };
static const char *const point_names[P_COUNT] = {"dma_map", "set_irqs", "cfg_write_ring",
						 "cfg_write_socket"};

struct interrupter {
	pthread_t thread;
	int fd;	    /* the VMM's socket */
	pid_t pid;  /* the worker */
	pid_t tid;  /* the thread that issues the request */
	bool ring;  /* the request goes through the shared-memory ring, not the socket */
	bool kill;  /* SIGKILL the worker; else: the VMM hangs up and the worker goes on */
	int marker; /* 0 when the request was seen queued, else a negative errno */
};

/* Whether thread `tid` of this process sleeps in FUTEX_WAIT on a shared (not process-private)
 * word, as libvfiobroker's ring waits for its answer, and only after it posted the request:
 * /proc's syscall file names the call a blocked thread is in and its arguments. A thread that
 * runs reads "running"; a private futex (a lock) has FUTEX_PRIVATE_FLAG in its op. */
static int in_ring_wait(pid_t tid)
{
	char path[64], line[256];
	long nr = -1;
	unsigned long op = ~0ul;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	if (sscanf(line, "%ld %*s %lx", &nr, &op) != 2)
		return 0;
	return nr == SYS_futex && op == FUTEX_WAIT;
}

/* Waits until the request is in the stopped worker's hands, unread (in its socket, or posted on
 * the ring with the VMM asleep for the answer), then acts. */
static void *interrupt_request(void *arg)
{
	struct interrupter *in = arg;
	double deadline = now_s() + WAIT_MS / 1000.0;
	int queued = 0;

	in->marker = -ETIMEDOUT;
	while (now_s() < deadline) {
		if (in->ring)
			queued = in_ring_wait(in->tid);
		else if (ioctl(in->fd, SIOCOUTQ, &queued) < 0)
			queued = -errno;
		if (queued < 0) {
			in->marker = queued;
			break;
		}
		if (queued > 0) {
			in->marker = 0;
			break;
		}
		sleep_ms(1);
	}
	/* A hang-up lets the worker go on only once the call has returned (stopped_request): a
	 * ring's answer comes through the page, not the shut socket, so a worker let go at once
	 * could answer before the VMM's thread looks at its socket again. */
	if (in->kill)
		kill(in->pid, SIGKILL);
	else
		shutdown(in->fd, SHUT_RDWR);
	return NULL;
}

/* Issues the request of `p`; it must fail, since the worker never answers it. */
static int issue(struct vmm *v, enum point p, int memfd, int efd)
{
	uint8_t data[2] = {0x06, 0x00};

	switch (p) {
	case P_DMA_MAP:
		return vfb_dev_dma_map(v->dev, memfd, 0, RAM_IOVA, RAM_SIZE,
				       VFB_DMA_READ | VFB_DMA_WRITE);
	case P_SET_IRQS:
		return vfb_dev_set_irq_fds(v->dev, VFB_IRQ_MSI, 0, &efd, 1);
	default: /* P_CFG_RING, P_CFG_SOCKET: the connection decides which way it goes */
		return vfb_dev_cfg_write(v->dev, 4, data, 2);
	}
}

static int stopped_request(struct vmm *v, pid_t worker, enum point p, bool kill_it, int memfd,
			   int efd)
{
	struct interrupter in = {.fd = v->fd,
				 .pid = worker,
				 .tid = (pid_t)syscall(SYS_gettid),
				 .ring = p == P_CFG_RING,
				 .kill = kill_it};
	int r;

	/* DMA and SET_IRQS carry fds: they go over the socket whatever the connection. */
	if ((p == P_CFG_RING || p == P_CFG_SOCKET) && in.ring != vfb_dev_ring_active(v->dev)) {
		fail("%s: the ring is %s (%s)", point_names[p],
		     in.ring ? "not in use" : "in use on a VFB_DEV_CONNECT_NO_RING connection",
		     vfb_dev_ring_reason(v->dev));
		return -1;
	}
	if (kill(worker, SIGSTOP) < 0) {
		fail("SIGSTOP %d: %s", (int)worker, strerror(errno));
		return -1;
	}
	if (pthread_create(&in.thread, NULL, interrupt_request, &in) != 0) {
		kill(worker, SIGCONT);
		fail("pthread_create");
		return -1;
	}
	r = issue(v, p, memfd, efd);
	pthread_join(in.thread, NULL);
	if (!kill_it)
		kill(worker, SIGCONT);
	if (in.marker < 0) {
		fail("%s: the request was not seen queued for the worker: %s (the call: %s)",
		     point_names[p], strerror(-in.marker), r < 0 ? strerror(-r) : "answered");
		return -1;
	}
	if (r >= 0) {
		fail("%s: answered although the %s", point_names[p],
		     kill_it ? "worker was killed" : "VMM hung up");
		return -1;
	}
	return 0;
}

/* ---- phases ---------------------------------------------------------------------------- */

struct want {
	uint32_t pid;	   /* 0: any */
	uint32_t restarts; /* the count to reach */
};

static bool ready_restarted(const struct vfb_ctl_device *d, void *arg)
{
	const struct want *w = arg;

	return d->state == STATE_READY && d->restarts == w->restarts && d->worker_pid != w->pid;
}

static bool connected(const struct vfb_ctl_device *d, void *arg)
{
	(void)arg;
	return d->state == STATE_CONNECTED;
}

static bool ready_idle(const struct vfb_ctl_device *d, void *arg)
{
	(void)arg;
	return d->state == STATE_READY && d->dma_mappings == 0 && irqs_enabled(d) == 0;
}

/* The locked-memory figure means something: 2 MiB mapped for DMA show in the broker's VmLck (it
 * pins them), and unmapping takes them off again. */
static void pinned_meter(const struct opts *o, struct vmm *v)
{
	int memfd = memfd_create("soak-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	long before = broker_figures(o->broker).lck_kb, mapped, after;
	int r;

	if (memfd < 0 || ftruncate(memfd, RAM_SIZE) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		fail("guest RAM: %s", strerror(errno));
		return;
	}
	r = vfb_dev_dma_map(v->dev, memfd, 0, RAM_IOVA, RAM_SIZE, VFB_DMA_READ | VFB_DMA_WRITE);
	if (r < 0) {
		fail("DMA map: %s (%s)", strerror(-r), vfb_dev_last_error(v->dev));
		close(memfd);
		return;
	}
	mapped = broker_figures(o->broker).lck_kb;
	r = vfb_dev_dma_unmap(v->dev, RAM_IOVA, RAM_SIZE);
	after = broker_figures(o->broker).lck_kb;
	close(memfd);
	printf("soak: pinned broker vmlck_kb before=%ld mapped_2MiB=%ld unmapped=%ld\n", before,
	       mapped, after);
	if (r < 0)
		fail("DMA unmap: %s", strerror(-r));
	if (mapped < before + (long)(RAM_SIZE >> 10))
		fail("2 MiB mapped for DMA do not show in the broker's VmLck");
	if (after != before)
		fail("the broker's VmLck is %ld kB after the unmap, %ld before", after, before);
}

static int phase_accesses(const struct opts *o, const char *sock)
{
	struct figures tenth = {0};
	struct vmm v;
	double t0 = now_s();
	uint32_t val;

	if (vmm_connect(sock, 0, &v) < 0)
		return -1;
	if (enable_memory(&v) < 0) {
		fail("enabling memory decoding: %s", vfb_dev_last_error(v.dev));
		vmm_close(&v);
		return -1;
	}
	pinned_meter(o, &v);
	for (unsigned long i = 0; i < o->accesses; i++) {
		int r;

		if (at_tenth(i, o->accesses))
			tenth = broker_figures(o->broker);
		if (i & 1) {
			r = vfb_dev_region_read(v.dev, 0, 0, &val, 4);
			if (r == 0 && val != EDU_IDENT)
				r = -EBADMSG;
		} else {
			r = cfg_read32(&v, 0, &val);
			if (r == 0 && val != EDU_ID)
				r = -EBADMSG;
		}
		if (r < 0) {
			fail("access %lu: %s (read %#x)", i, strerror(-r), val);
			break;
		}
	}
	rate("accesses", o->accesses, t0);
	vmm_close(&v);
	flat("accesses", o->broker, &tenth);
	return 0;
}

static int phase_interrupted(const struct opts *o, bool kill_it, unsigned long n)
{
	const char *phase = kill_it ? "kills" : "disconnects";
	unsigned long per[P_COUNT] = {0};
	struct figures tenth = {0};
	struct vfb_ctl_device *d = NULL;
	int memfd = memfd_create("soak-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	double t0 = now_s();
	struct vmm v;

	if (memfd < 0 || efd < 0 || ftruncate(memfd, RAM_SIZE) < 0 ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		fail("guest RAM: %s", strerror(errno));
		return -1;
	}
	for (unsigned long i = 0; i < n && !failures; i++) {
		enum point p = (enum point)(i % P_COUNT);
		struct want w;
		char *sock;

		if (at_tenth(i, n))
			tenth = broker_figures(o->broker);
		if (status(o, &d) < 0)
			break;
		w.pid = d->worker_pid;
		w.restarts = d->restarts + (kill_it ? 1 : 0);
		sock = strdup(d->socket_path);
		vfb_ctl_device_free(d);
		if (!sock ||
		    vmm_connect(sock, p == P_CFG_SOCKET ? VFB_DEV_CONNECT_NO_RING : 0, &v) < 0) {
			free(sock);
			break;
		}
		free(sock);
		/* The broker has heard of this VMM from the worker: from here on READY can only
		 * mean the worker has seen it go. */
		if (wait_for(o, connected, NULL, "VMM connected") < 0) {
			vmm_close(&v);
			break;
		}
		if (stopped_request(&v, (pid_t)w.pid, p, kill_it, memfd, efd) == 0)
			per[p]++;
		vmm_close(&v);
		if (kill_it) {
			/* A new worker, with the device quiesced: no mapping, no route. */
			if (wait_for(o, ready_restarted, &w, "worker restarted after SIGKILL") <
				0 ||
			    wait_for(o, ready_idle, NULL, "device quiesced after SIGKILL") < 0)
				break;
		} else {
			/* The same worker, with what the gone VMM's request did undone. */
			if (wait_for(o, ready_idle, NULL,
				     "mapping and routes dropped after hang-up") < 0)
				break;
			if (status(o, &d) < 0)
				break;
			if (d->worker_pid != w.pid || d->restarts != w.restarts)
				fail("a VMM hang-up cost the worker: pid %u -> %u, restarts %u -> "
				     "%u",
				     w.pid, d->worker_pid, w.restarts, d->restarts);
			vfb_ctl_device_free(d);
		}
	}
	close(memfd);
	close(efd);
	rate(phase, n, t0);
	printf("soak: %s points dma_map=%lu set_irqs=%lu cfg_write_ring=%lu cfg_write_socket=%lu\n",
	       phase, per[P_DMA_MAP], per[P_SET_IRQS], per[P_CFG_RING], per[P_CFG_SOCKET]);
	flat(phase, o->broker, &tenth);
	return 0;
}

static int phase_cycles(const struct opts *o)
{
	struct figures tenth = {0};
	struct vfb_ctl_add_reply rep;
	double t0 = now_s();
	uint32_t val = 0;
	struct vmm v;

	for (unsigned long i = 0; i < o->cycles && !failures; i++) {
		if (at_tenth(i, o->cycles))
			tenth = broker_figures(o->broker);
		if (add(o, &rep) < 0)
			break;
		if (vmm_connect(rep.socket_path, 0, &v) == 0) {
			if (cfg_read32(&v, 0, &val) < 0 || val != EDU_ID)
				fail("cycle %lu: config read %#x: %s", i, val,
				     vfb_dev_last_error(v.dev));
			vmm_close(&v);
		}
		if (remove_dev(o) < 0)
			break;
	}
	rate("cycles", o->cycles, t0);
	flat("cycles", o->broker, &tenth);
	return 0;
}

static unsigned long count_arg(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*end || !*s) {
		fprintf(stderr, "vfio-soak: bad count '%s'\n", s);
		exit(2);
	}
	return v;
}

static const char usage[] =
    "usage: vfio-soak --control SOCKET --broker-pid PID --bdf BDF [--vm NAME]\n"
    "                 [--accesses N] [--kills N] [--disconnects N] [--cycles N]\n"
    "Soaks a running vfio-brokerd with one edu device (see tests/guest/README.md, make soak).\n";

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"control", required_argument, NULL, 'c'},
						 {"broker-pid", required_argument, NULL, 'p'},
						 {"bdf", required_argument, NULL, 'b'},
						 {"vm", required_argument, NULL, 'v'},
						 {"accesses", required_argument, NULL, 'a'},
						 {"kills", required_argument, NULL, 'k'},
						 {"disconnects", required_argument, NULL, 'd'},
						 {"cycles", required_argument, NULL, 'y'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	struct opts o = {.vm = "soak"};
	struct vfb_ctl_add_reply rep;
	struct figures base, end;
	static char base_fds[4096], end_fds[4096];
	int c, r;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.control = optarg;
			break;
		case 'p':
			o.broker = (pid_t)count_arg(optarg);
			break;
		case 'b':
			o.bdf = optarg;
			break;
		case 'v':
			o.vm = optarg;
			break;
		case 'a':
			o.accesses = count_arg(optarg);
			break;
		case 'k':
			o.kills = count_arg(optarg);
			break;
		case 'd':
			o.disconnects = count_arg(optarg);
			break;
		case 'y':
			o.cycles = count_arg(optarg);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!o.control || !o.bdf || o.broker <= 0 || optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = vfb_ctl_connect(o.control, 0, &ctl);
	if (r < 0) {
		fprintf(stderr, "vfio-soak: %s: %s\n", o.control, strerror(-r));
		return 1;
	}
	vfb_ctl_set_timeout(ctl, WAIT_MS);
	base = broker_figures(o.broker);
	fd_targets(o.broker, base_fds, sizeof(base_fds));
	printf("soak: baseline broker rss_kb=%ld fds=%ld vmlck_kb=%ld\n", base.rss_kb, base.fds,
	       base.lck_kb);
	if (add(&o, &rep) == 0) {
		if (o.accesses)
			phase_accesses(&o, rep.socket_path);
		if (o.kills && !failures)
			phase_interrupted(&o, true, o.kills);
		if (o.disconnects && !failures)
			phase_interrupted(&o, false, o.disconnects);
		remove_dev(&o);
	}
	if (o.cycles && !failures)
		phase_cycles(&o);
	end = broker_figures(o.broker);
	printf("soak: end broker rss_kb=%ld fds=%ld vmlck_kb=%ld (baseline rss_kb=%ld fds=%ld "
	       "vmlck_kb=%ld)\n",
	       end.rss_kb, end.fds, end.lck_kb, base.rss_kb, base.fds, base.lck_kb);
	if (end.lck_kb != base.lck_kb)
		fail("locked memory not back to its baseline: %ld kB, was %ld kB", end.lck_kb,
		     base.lck_kb);
	if (end.fds > base.fds + FD_SLACK) {
		fd_targets(o.broker, end_fds, sizeof(end_fds));
		fail("the broker holds %ld fds with no device, %ld at the start:\n  start%s\n  "
		     "end%s",
		     end.fds, base.fds, base_fds, end_fds);
	}
	vfb_ctl_close(ctl);
	printf("soak: %s\n", failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
