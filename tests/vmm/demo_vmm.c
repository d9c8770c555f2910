/*
 * vfio-demo-vmm: a small VMM built on libvfiobroker, the way a real one would drive an assigned
 * device: it owns "guest RAM" as a memfd, maps it for the device's DMA through the worker, owns
 * the interrupt eventfds (KVM irqfds in a real VMM), programs the device through config space and
 * trapped BAR accesses, and checks what the device did.
 *
 * Each subcommand is one end-to-end scenario on real devices (QEMU's edu, e1000e and nvme behind
 * an emulated IOMMU in the test guest); the guest tests run them one by one and `make demo` runs
 * `session`. Every scenario exits 0 only if everything it checked held, and prints what it
 * measured.
 *
 * Trusts nothing it gets from the worker beyond what it verifies itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <vfiobroker/client.h>

#include "base.h"
#include "demo_vmm.h"

static bool quiet;
/* -r: every device must take the shared-memory ring; -s: offer none (the socket only). */
static enum { RING_OFFERED, RING_REQUIRED, RING_OFF } ring_mode;
/* Devices connected whose trapped accesses went through a ring (printed in the figures). */
static unsigned ring_devices;

void vmm_say(const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

int vmm_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vfio-demo-vmm: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return -1;
}

int vmm_check(struct vfb_dev *dev, int r, const char *what)
{
	if (r >= 0)
		return 0;
	return vmm_fail("%s: %s%s%s", what, strerror(-r), *vfb_dev_last_error(dev) ? ": " : "",
			vfb_dev_last_error(dev));
}

double vmm_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Config space and device registers are little endian; so is the wire. */
static uint32_t le_get(const uint8_t *b, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint32_t)b[i] << (8 * i);
	return v;
}

static void le_put(uint8_t *b, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* One access of `n` bytes to config space (region < 0) or to a BAR. */
static int access_read(struct vfb_dev *dev, int region, uint64_t off, size_t n, uint32_t *val)
{
	uint8_t b[4];
	int r = region < 0 ? vfb_dev_cfg_read(dev, (uint32_t)off, b, n)
			   : vfb_dev_region_read(dev, (uint32_t)region, off, b, n);

	if (r >= 0)
		*val = le_get(b, n);
	return r;
}

static int access_write(struct vfb_dev *dev, int region, uint64_t off, size_t n, uint32_t val)
{
	uint8_t b[4];

	le_put(b, n, val);
	return region < 0 ? vfb_dev_cfg_write(dev, (uint32_t)off, b, n)
			  : vfb_dev_region_write(dev, (uint32_t)region, off, b, n);
}

int vmm_cfg_read32(struct vfb_dev *dev, uint32_t off, uint32_t *val)
{
	return access_read(dev, -1, off, 4, val);
}

int vmm_cfg_write32(struct vfb_dev *dev, uint32_t off, uint32_t val)
{
	return access_write(dev, -1, off, 4, val);
}

int vmm_cfg_read16(struct vfb_dev *dev, uint32_t off, uint16_t *val)
{
	uint32_t v;
	int r = access_read(dev, -1, off, 2, &v);

	if (r >= 0)
		*val = (uint16_t)v;
	return r;
}

int vmm_cfg_write16(struct vfb_dev *dev, uint32_t off, uint16_t val)
{
	return access_write(dev, -1, off, 2, val);
}

int vmm_bar_read32(struct vfb_dev *dev, uint32_t bar, uint64_t off, uint32_t *val)
{
	return access_read(dev, (int)bar, off, 4, val);
}

int vmm_bar_write32(struct vfb_dev *dev, uint32_t bar, uint64_t off, uint32_t val)
{
	return access_write(dev, (int)bar, off, 4, val);
}

/* Walks the standard capability list as a guest driver would, with a hop limit. */
int vmm_find_cap(struct vfb_dev *dev, uint8_t id, uint32_t *ret)
{
	uint8_t ptr, hdr[2];
	int r = vfb_dev_cfg_read(dev, PCI_CAPABILITY_LIST, &ptr, 1);

	for (int hops = 0; r >= 0 && ptr >= 0x40 && hops < 48; hops++) {
		r = vfb_dev_cfg_read(dev, ptr & ~3u, hdr, 2);
		if (r < 0)
			break;
		if (hdr[0] == id) {
			*ret = ptr & ~3u;
			return 0;
		}
		ptr = hdr[1];
	}
	return r < 0 ? r : -ENOENT;
}

/* Memory decode and bus mastering, as a guest driver's pci_enable_device + set_master. */
int vmm_enable_device(struct vfb_dev *dev)
{
	uint16_t cmd;
	int r = vmm_cfg_read16(dev, PCI_COMMAND, &cmd);

	if (r < 0)
		return vmm_check(dev, r, "read Command");
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	r = vmm_cfg_write16(dev, PCI_COMMAND, cmd);
	if (r < 0)
		return vmm_check(dev, r, "write Command");
	r = vmm_cfg_read16(dev, PCI_COMMAND, &cmd);
	if (r < 0)
		return vmm_check(dev, r, "read Command back");
	if ((cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) !=
	    (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
		return vmm_fail("Command register reads 0x%04x after enabling memory and master",
				cmd);
	return 0;
}

/* Waits for an eventfd to fire; returns its counter, 0 on timeout, or a negative errno. */
int64_t vmm_wait_eventfd(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint64_t v;
	int r = poll(&p, 1, timeout_ms);

	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return -errno;
	return (int64_t)v;
}

/* Guest RAM: a sealed memfd, as a VMM backs its guest memory; mapped into this process too. */
int vmm_ram_new(size_t size, struct vmm_ram *ret)
{
	int fd = memfd_create("demo-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;

		close(fd);
		return e;
	}
	ret->fd = fd;
	ret->mem = p;
	ret->size = size;
	return 0;
}

void vmm_ram_free(struct vmm_ram *ram)
{
	if (ram->mem)
		munmap(ram->mem, ram->size);
	if (ram->fd >= 0)
		close(ram->fd);
	ram->mem = NULL;
	ram->fd = -1;
}

int vmm_connect(const char *path, struct vfb_dev **ret, struct vfb_device_info *info)
{
	uint32_t flags = ring_mode == RING_OFF ? VFB_DEV_CONNECT_NO_RING : 0;
	char why[256];
	int r = vfb_dev_connect_why(path, "vfio-demo-vmm", flags, ret, why, sizeof(why));

	if (r < 0)
		return vmm_fail("connect to %s: %s (%s)", path, strerror(-r), why);
	if (ring_mode == RING_REQUIRED && !vfb_dev_ring_active(*ret)) {
		vmm_fail("%s: no shared-memory ring: %s", path, vfb_dev_ring_reason(*ret));
		vfb_dev_close(*ret);
		return -1;
	}
	ring_devices += vfb_dev_ring_active(*ret);
	r = vfb_dev_device_info(*ret, info);
	if (r < 0) {
		vmm_check(*ret, r, "device info");
		vfb_dev_close(*ret);
		return -1;
	}
	return 0;
}

/* The loop's signals stay blocked and are taken only between iterations, so that no request
 * or eventfd wait in the middle of an iteration is ever interrupted. */
static sigset_t loop_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	return set;
}

int vmm_loop_init(struct vmm_loop *l, const char *name, const char *seconds)
{
	sigset_t set = loop_signals();
	char *end;
	long s;

	errno = 0;
	s = strtol(seconds, &end, 10);
	if (errno || end == seconds || *end || s < 1 || s > 86400)
		return vmm_fail("%s: SECONDS must be 1..86400, not '%s'", name, seconds);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return vmm_fail("sigprocmask: %s", strerror(errno));
	memset(l, 0, sizeof(*l));
	l->name = name;
	l->t0_us = vmm_now_us();
	l->deadline_us = l->t0_us + (double)s * 1e6;
	return 0;
}

static void loop_print(struct vmm_loop *l, const char *what, const struct vmm_figures *fig)
{
	printf("%s: iterations=%lu dma_bytes_verified=%" PRIu64
	       " interrupts=%u longest_broker_call_ms=%.1f retries=%lu\n",
	       what, l->iterations, fig->dma_bytes, fig->interrupts, l->max_call_us / 1000,
	       l->retries);
	fflush(stdout);
	l->last_print_us = vmm_now_us();
}

bool vmm_loop_next(struct vmm_loop *l, const struct vmm_figures *fig)
{
	sigset_t set = loop_signals();

	for (;;) {
		double left_us = l->deadline_us - vmm_now_us();
		struct timespec ts = {0, 0};
		int sig;

		if (l->paused && left_us > 0) {
			ts.tv_sec = (time_t)(left_us / 1e6);
			ts.tv_nsec = (long)((left_us - (double)ts.tv_sec * 1e6) * 1e3);
		}
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig < 0 && errno == EINTR)
			continue;
		if (sig < 0)
			break; /* EAGAIN: nothing pending (or the deadline passed while paused) */
		if (sig != SIGUSR1)
			return false;
		l->paused = !l->paused;
		if (l->paused)
			loop_print(l, "paused", fig);
		else
			printf("resumed\n");
		fflush(stdout);
	}
	if (vmm_now_us() >= l->deadline_us) {
		printf("%s: deadline reached\n", l->name);
		return false;
	}
	if (vmm_now_us() - l->last_print_us >= 1e6)
		loop_print(l, "progress", fig);
	l->iterations++;
	return true;
}

void vmm_loop_call(struct vmm_loop *l, double t0_us)
{
	double us = vmm_now_us() - t0_us;

	if (us > l->max_call_us)
		l->max_call_us = us;
}

bool vmm_loop_retry(struct vmm_loop *l, struct vfb_dev *dev, int r, int *tries, const char *what)
{
	if (r != -ETIMEDOUT || *tries >= 2)
		return false;
	(*tries)++;
	l->retries++;
	printf("retry: %s timed out in iteration %lu (%s: %s); sending it again\n", what,
	       l->iterations, strerror(-r), vfb_dev_last_error(dev));
	fflush(stdout);
	return true;
}

void vmm_loop_end(struct vmm_loop *l, const struct vmm_figures *fig)
{
	vmm_say("%s: %lu iterations in %.1f s without an error\n", l->name, l->iterations,
		(vmm_now_us() - l->t0_us) / 1e6);
	loop_print(l, "loop", fig);
}

/* Prints the standard config space (256 bytes) as a VMM sees it through the native protocol,
 * 16 bytes a line: the reference the vfio-user guest tests compare another VMM's view with. */
static int vmm_config(char **sockets, struct vmm_figures *fig)
{
	struct vfb_device_info info;
	struct vfb_dev *dev;
	uint8_t cfg[256];

	if (vmm_connect(sockets[0], &dev, &info) < 0)
		return -1;
	for (uint32_t off = 0; off < sizeof(cfg); off += 4) {
		int r = vfb_dev_cfg_read(dev, off, cfg + off, 4);

		if (r < 0) {
			vmm_check(dev, r, "config read");
			vfb_dev_close(dev);
			return -1;
		}
	}
	vfb_dev_close(dev);
	for (size_t off = 0; off < sizeof(cfg); off += 16) {
		printf("config %02zx:", off);
		for (size_t i = 0; i < 16; i++)
			printf(" %02x", cfg[off + i]);
		printf("\n");
	}
	fig->devices = 1;
	return 0;
}

/* The narrated demo: one VMM driving two assigned devices. */
int vmm_session(char **sockets, struct vmm_figures *fig)
{
	struct vmm_figures edu = {0}, nic = {0};
	double t0 = vmm_now_us();

	if (vmm_session_edu(sockets[0], &edu) < 0)
		return -1;
	if (vmm_session_e1000e(sockets[1], &nic) < 0)
		return -1;
	fig->devices = 2;
	fig->dma_bytes = edu.dma_bytes + nic.dma_bytes;
	fig->interrupts = edu.interrupts + nic.interrupts;
	vmm_say("session: %u devices, %" PRIu64 " DMA bytes verified, %u interrupts delivered in "
		"%.1f s\n",
		fig->devices, fig->dma_bytes, fig->interrupts, (vmm_now_us() - t0) / 1e6);
	return 0;
}

/*
 * dma-hold SOCKET: connects to any device, maps 2 MiB of guest RAM for its DMA and holds it
 * until SIGTERM or SIGINT, then disconnects without unmapping (the worker must drop it). Meant to
 * connect while no broker runs: the handshake and the map wait for the next broker (60 s).
 */
static int vmm_dma_hold(char **sockets, struct vmm_figures *fig)
{
	const uint64_t iova = 0x100000, size = 2u << 20;
	struct vmm_ram ram = {.fd = -1};
	struct vfb_device_info info;
	struct vfb_dev *dev;
	double t0 = vmm_now_us();
	char why[256];
	sigset_t set;
	int r, sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return vmm_fail("sigprocmask: %s", strerror(errno));
	/* Refused after the worker's 30 s when no broker came meanwhile: connect again, as a VMM
	 * is told to (twice at most, like the loops' retries). */
	for (int tries = 0;; tries++) {
		r = vfb_dev_connect_why(sockets[0], "vfio-demo-vmm", 0, &dev, why, sizeof(why));
		if (r != -ETIMEDOUT || tries == 2)
			break;
		printf("retry: connect timed out (%s: %s); connecting again\n", strerror(-r), why);
		fflush(stdout);
	}
	if (r < 0)
		return vmm_fail("connect to %s: %s (%s)", sockets[0], strerror(-r), why);
	r = vfb_dev_device_info(dev, &info);
	if (r < 0) {
		vmm_check(dev, r, "device info");
		vfb_dev_close(dev);
		return -1;
	}
	printf("connected: %04x:%04x after %.1f s\n", info.vendor_id, info.device_id,
	       (vmm_now_us() - t0) / 1e6);
	fflush(stdout);
	r = vfb_dev_set_timeout(dev, 60000);
	r = r ?: vmm_ram_new(size, &ram);
	if (r < 0) {
		vmm_fail("guest RAM: %s", strerror(-r));
		goto out;
	}
	t0 = vmm_now_us();
	r = vmm_check(dev,
		      vfb_dev_dma_map(dev, ram.fd, 0, iova, size, VFB_DMA_READ | VFB_DMA_WRITE),
		      "DMA map");
	if (r < 0)
		goto out;
	printf("mapped: %llu KiB at IOVA 0x%llx in %.1f s; holding until SIGTERM\n",
	       (unsigned long long)size >> 10, (unsigned long long)iova, (vmm_now_us() - t0) / 1e6);
	fflush(stdout);
	while ((sig = sigwaitinfo(&set, NULL)) < 0 && errno == EINTR)
		;
	fig->devices = 1;
out:
	vfb_dev_close(dev);
	vmm_ram_free(&ram);
	return r;
}

/* Waits for SIGUSR1 (true) or SIGTERM/SIGINT (false), all blocked in `set`. */
static bool wait_step(const sigset_t *set)
{
	int sig;

	while ((sig = sigwaitinfo(set, NULL)) < 0 && errno == EINTR)
		;
	return sig == SIGUSR1;
}

/* What dma-absent and dma-twice do first: SIGTERM, SIGINT and SIGUSR1 blocked for wait_step(),
 * a connection whose calls wait 60 s (past the worker's 30 s), SIZE bytes of guest RAM mapped at
 * IOVA ("mapped:"), then the wait for the first SIGUSR1. 1: go on; 0: told to end first; < 0:
 * failed (reported). *dev (NULL until connected) and *ram are the caller's to free. */
static int absent_begin(const char *socket, uint64_t iova, uint64_t size, sigset_t *set,
			struct vfb_dev **dev, struct vmm_ram *ram)
{
	struct vfb_device_info info;
	int r;

	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
		return vmm_fail("sigprocmask: %s", strerror(errno));
	if (vmm_connect(socket, dev, &info) < 0)
		return -1;
	r = vfb_dev_set_timeout(*dev, 60000);
	r = r ?: vmm_ram_new(size, ram);
	if (r < 0)
		return vmm_fail("guest RAM: %s", strerror(-r));
	r = vmm_check(*dev,
		      vfb_dev_dma_map(*dev, ram->fd, 0, iova, size, VFB_DMA_READ | VFB_DMA_WRITE),
		      "DMA map");
	if (r < 0)
		return r;
	printf("mapped: %llu KiB at IOVA 0x%llx; SIGUSR1 when no broker runs\n",
	       (unsigned long long)(size >> 10), (unsigned long long)iova);
	fflush(stdout);
	return wait_step(set) ? 1 : 0;
}

/*
 * dma-absent SOCKET: a VMM's DMA requests while no broker runs (issue 12). Connects, maps 2 MiB
 * of guest RAM at IOVA 0x100000 ("mapped:"); at SIGUSR1 (no broker there) unmaps it, then maps
 * 1 MiB at 0x400000: both must fail with ETIMEDOUT after the worker's 30 s ("unmap: timed out",
 * "map: timed out"), and the map is not retried; at the next SIGUSR1 (a broker back) retries the
 * unmap, which must succeed ("unmap retried: done"). Holds the connection until SIGTERM.
 */
static int vmm_dma_absent(char **sockets, struct vmm_figures *fig)
{
	const uint64_t ram_iova = 0x100000, win_iova = 0x400000, size = 2u << 20;
	const uint32_t rw = VFB_DMA_READ | VFB_DMA_WRITE;
	struct vmm_ram ram = {.fd = -1};
	struct vfb_dev *dev = NULL;
	sigset_t set;
	int r;

	r = absent_begin(sockets[0], ram_iova, size, &set, &dev, &ram);
	if (r <= 0)
		goto out;
	r = vfb_dev_dma_unmap(dev, ram_iova, size);
	if (r != -ETIMEDOUT) {
		r = vmm_fail("DMA unmap while no broker runs: %s (%s), not ETIMEDOUT", strerror(-r),
			     vfb_dev_last_error(dev));
		goto out;
	}
	printf("unmap: timed out (%s)\n", vfb_dev_last_error(dev));
	r = vfb_dev_dma_map(dev, ram.fd, 0, win_iova, size / 2, rw);
	if (r != -ETIMEDOUT) {
		r = vmm_fail("DMA map while no broker runs: %s (%s), not ETIMEDOUT", strerror(-r),
			     vfb_dev_last_error(dev));
		goto out;
	}
	printf("map: timed out (%s); not retried; SIGUSR1 to retry the unmap\n",
	       vfb_dev_last_error(dev));
	fflush(stdout);
	r = 0;
	if (!wait_step(&set))
		goto out;
	r = vmm_check(dev, vfb_dev_dma_unmap(dev, ram_iova, size), "retried DMA unmap");
	if (r < 0)
		goto out;
	printf("unmap retried: done; holding until SIGTERM\n");
	fflush(stdout);
	while (wait_step(&set))
		;
	fig->devices = 1;
out:
	vfb_dev_close(dev);
	vmm_ram_free(&ram);
	return r;
}

/*
 * dma-twice SOCKET: a VMM maps a range it holds a second time while no broker runs (issue 12).
 * Connects, maps 2 MiB of guest RAM at IOVA 0x100000 ("mapped:"); at SIGUSR1 (no broker there)
 * maps the same range again, which must fail with ETIMEDOUT after the worker's 30 s ("map again:
 * timed out"); at the next SIGUSR1 (a broker back) maps it once more, which must fail with
 * EEXIST, the first mapping still being there ("map again: exists"), then unmaps it ("unmapped").
 * Holds the connection until SIGTERM.
 */
static int vmm_dma_twice(char **sockets, struct vmm_figures *fig)
{
	const uint64_t iova = 0x100000, size = 2u << 20;
	const uint32_t rw = VFB_DMA_READ | VFB_DMA_WRITE;
	struct vmm_ram ram = {.fd = -1};
	struct vfb_dev *dev = NULL;
	sigset_t set;
	int r;

	r = absent_begin(sockets[0], iova, size, &set, &dev, &ram);
	if (r <= 0)
		goto out;
	r = vfb_dev_dma_map(dev, ram.fd, 0, iova, size, rw);
	if (r != -ETIMEDOUT) {
		r = vmm_fail("the same DMA map while no broker runs: %s (%s), not ETIMEDOUT",
			     strerror(-r), vfb_dev_last_error(dev));
		goto out;
	}
	printf("map again: timed out (%s); SIGUSR1 when a broker is back\n",
	       vfb_dev_last_error(dev));
	fflush(stdout);
	r = 0;
	if (!wait_step(&set))
		goto out;
	r = vfb_dev_dma_map(dev, ram.fd, 0, iova, size, rw);
	if (r != -EEXIST) {
		r = vmm_fail("the same DMA map with a broker: %s (%s), not EEXIST: the first "
			     "mapping is gone",
			     r ? strerror(-r) : "done", r ? vfb_dev_last_error(dev) : "");
		goto out;
	}
	printf("map again: exists (%s)\n", vfb_dev_last_error(dev));
	r = vmm_check(dev, vfb_dev_dma_unmap(dev, iova, size), "DMA unmap");
	if (r < 0)
		goto out;
	printf("unmapped; holding until SIGTERM\n");
	fflush(stdout);
	while (wait_step(&set))
		;
	fig->devices = 1;
out:
	vfb_dev_close(dev);
	vmm_ram_free(&ram);
	return r;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: vfio-demo-vmm [-q] [-r | -s] SCENARIO SOCKET [SOCKET | SECONDS]\n"
	    "\n"
	    "A small VMM built on libvfiobroker. It connects to the VMM socket of a vfio-worker\n"
	    "(vfio-brokerctl add prints it), drives the device as a guest driver would, and\n"
	    "checks the result. Exit status 0 means every check held; 1 means one failed (the\n"
	    "reason is on stderr); 2 is a usage error.\n"
	    "\n"
	    "Scenarios:\n"
	    "  edu-dma SOCKET         DMA a buffer from guest RAM into the edu device and back to\n"
	    "                         another address through the IOMMU; compare the bytes.\n"
	    "  edu-msi SOCKET         enable MSI, raise edu interrupts, count eventfd deliveries.\n"
	    "  edu-intx SOCKET        INTx with trigger and resample eventfds: raise, acknowledge\n"
	    "                         and unmask edu interrupts; an unacknowledged one re-fires.\n"
	    "  e1000e-msix SOCKET     program and unmask MSI-X vectors of an e1000e, trigger each\n"
	    "                         through the device's interrupt cause register.\n"
	    "  e1000e-msix-masked SOCKET\n"
	    "                         trigger a masked vector: nothing delivered, PBA bit set;\n"
	    "                         unmask: delivered, PBA bit clear.\n"
	    "  nvme-bars SOCKET       64-bit BAR sizing and MSI-X holes in the mappable areas.\n"
	    "  reconnect SOCKET       connect, map DMA, disconnect, reconnect and work again.\n"
	    "  hold SOCKET            connect, map DMA and enable MSI, then wait for a removal\n"
	    "                         request and acknowledge it.\n"
	    "  reset SOCKET           program a BAR and Command, enable MSI, reset: the reset\n"
	    "                         event and the whole config view as the worker defines it.\n"
	    "  flr SOCKET             the same, reset by the guest's Initiate FLR (PCI Express).\n"
	    "  session EDU E1000E     the narrated demo: edu DMA and MSI, e1000e MSI-X.\n"
	    "  dma-hold SOCKET        any device: map 2 MiB of guest RAM for DMA and hold it "
	    "until\n"
	    "                         SIGTERM or SIGINT, then disconnect without unmapping.\n"
	    "  dma-absent SOCKET      any device: map 2 MiB; at SIGUSR1 (no broker) unmap it and\n"
	    "                         map 1 MiB more, both must time out; at the next SIGUSR1\n"
	    "                         retry the unmap, which must succeed (issue 12).\n"
	    "  dma-twice SOCKET       any device: map 2 MiB; at SIGUSR1 (no broker) map it again,\n"
	    "                         which must time out; at the next SIGUSR1 map it again,\n"
	    "                         which must fail EEXIST (the first is kept), and unmap it.\n"
	    "  config SOCKET          print the first 256 bytes of config space, 16 a line.\n"
	    "  edu-loop SOCKET SECONDS\n"
	    "                         map guest RAM and enable MSI once, then loop: map a 4 KiB\n"
	    "                         window, DMA RAM -> device -> window with a completion MSI,\n"
	    "                         compare, unmap; stop at the first error.\n"
	    "  e1000e-loop SOCKET SECONDS\n"
	    "                         enable MSI-X once, then loop over the vectors: raise,\n"
	    "                         mask, raise (held, PBA set), unmask (delivered).\n"
	    "  The loops run until SIGTERM or SIGINT or for SECONDS; SIGUSR1 pauses one between\n"
	    "  two iterations (it prints \"paused: ...\") and resumes it (\"resumed\"). Requests\n"
	    "  wait up to 60 s, so that they outlast a broker restart.\n"
	    "\n"
	    "Options:\n"
	    "  -q        print only failures and the final figures\n"
	    "  -r        require the shared-memory ring for trapped accesses: fail when a\n"
	    "            worker does not take it (the figures' ring_devices counts those that "
	    "did)\n"
	    "  -s        offer no ring: every access goes over the socket\n"
	    "  -h        this help\n");
}

int main(int argc, char **argv)
{
	const struct {
		const char *name;
		int nargs;
		int (*run)(char **args, struct vmm_figures *fig);
	} scenarios[] = {
	    {"edu-dma", 1, vmm_edu_dma},
	    {"edu-msi", 1, vmm_edu_msi},
	    {"edu-intx", 1, vmm_edu_intx},
	    {"e1000e-msix", 1, vmm_e1000e_msix},
	    {"e1000e-msix-masked", 1, vmm_e1000e_msix_masked},
	    {"nvme-bars", 1, vmm_nvme_bars},
	    {"reconnect", 1, vmm_reconnect},
	    {"hold", 1, vmm_hold},
	    {"reset", 1, vmm_reset},
	    {"flr", 1, vmm_flr},
	    {"session", 2, vmm_session},
	    {"config", 1, vmm_config},
	    {"edu-loop", 2, vmm_edu_loop},
	    {"e1000e-loop", 2, vmm_e1000e_loop},
	    {"dma-hold", 1, vmm_dma_hold},
	    {"dma-absent", 1, vmm_dma_absent},
	    {"dma-twice", 1, vmm_dma_twice},
	};
	struct vmm_figures fig = {0};
	int i = 1;

	if (argc > 1 && !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	for (; i < argc && argv[i][0] == '-' && argv[i][1] && !argv[i][2]; i++) {
		if (argv[i][1] == 'q')
			quiet = true;
		else if (argv[i][1] == 'r')
			ring_mode = RING_REQUIRED;
		else if (argv[i][1] == 's')
			ring_mode = RING_OFF;
		else
			break;
	}
	if (argc - i < 2) {
		usage(stderr);
		return 2;
	}
	for (size_t s = 0; s < ARRAY_SIZE(scenarios); s++) {
		if (strcmp(argv[i], scenarios[s].name))
			continue;
		if (argc - i - 1 != scenarios[s].nargs) {
			usage(stderr);
			return 2;
		}
		if (scenarios[s].run(argv + i + 1, &fig) < 0)
			return 1;
		printf("figures: devices=%u dma_bytes_verified=%" PRIu64
		       " interrupts=%u ring_devices=%u\n",
		       fig.devices, fig.dma_bytes, fig.interrupts, ring_devices);
		return 0;
	}
	fprintf(stderr, "vfio-demo-vmm: unknown scenario '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
