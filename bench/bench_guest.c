/*
 * bench_guest: benchmarks that need real VFIO, run inside the test guest (bench/guest/) against
 * an edu device assigned through vfio-brokerd.
 *
 *   bench_guest dma SOCKET BDF
 *       dma_map_unmap_2MiB_1cpu: vfb_dev_dma_map() + vfb_dev_dma_unmap() of 2 MiB of a memfd
 * through libvfiobroker -> vfio-worker -> vfio-brokerd -> VFIO_IOMMU_MAP_DMA/UNMAP_DMA, against the
 * two ioctls made directly by this program on a container of its own holding BDF (another edu, same
 * device class, bound to vfio-pci), on the same memfd's pages.
 *
 *   bench_guest msi SOCKET
 *       msi_raise_to_eventfd_{mmio,trapped}: the edu raises MSI (a store to its interrupt raise
 *       register, through the mmapped BAR when the broker allows mapping, else through the
 *       worker), vfio-pci signals the VMM's eventfd, poll() reports it, read() consumes it; then
 *       the interrupt is acknowledged in the device. Against eventfd write -> poll -> read in
 *       the same thread: what signalling and consuming an eventfd costs without a device.
 *
 * Exit status: 0, or 1 when a benchmark could not run (its row says why).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vfiobroker/client.h>

#include "sandbox.h"

#include "bench.h"

#define DMA_SIZE (2u << 20)
#define DMA_IOVA 0x40000000ull /* 1 GiB: below the MSI window, inside any usable range */

/* Says what failed and returns the errno it failed with (saved before formatting). */
static int failed(char *why, size_t whylen, const char *what)
{
	int e = errno;

	snprintf(why, whylen, "%.120s: %s", what, strerror(e));
	return -e;
}

/* ---- DMA -------------------------------------------------------------------------------- */

struct dma {
	struct vfb_dev *dev;
	int memfd;
	void *mem; /* the memfd mapped, for the direct container (type1 takes a vaddr) */
	int container, group;
	char why[200]; /* the step that failed */
};

static const char *dma_explain(void *ctx)
{
	return ((struct dma *)ctx)->why;
}

static int dma_broker(void *ctx, uint64_t n)
{
	struct dma *d = ctx;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		r = vfb_dev_dma_map(d->dev, d->memfd, 0, DMA_IOVA, DMA_SIZE,
				    VFB_DMA_READ | VFB_DMA_WRITE);
		if (r == 0)
			r = vfb_dev_dma_unmap(d->dev, DMA_IOVA, DMA_SIZE);
		if (r < 0) {
			snprintf(d->why, sizeof(d->why), "through the broker: %s",
				 vfb_dev_last_error(d->dev));
			return r;
		}
	}
	return 0;
}

static int dma_direct(void *ctx, uint64_t n)
{
	struct dma *d = ctx;
	struct vfio_iommu_type1_dma_map map = {
	    .argsz = sizeof(map),
	    .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
	    .vaddr = (uintptr_t)d->mem,
	    .iova = DMA_IOVA,
	    .size = DMA_SIZE,
	};
	struct vfio_iommu_type1_dma_unmap unmap = {
	    .argsz = sizeof(unmap), .iova = DMA_IOVA, .size = DMA_SIZE};

	for (uint64_t i = 0; i < n; i++) {
		if (ioctl(d->container, VFIO_IOMMU_MAP_DMA, &map) < 0)
			return failed(d->why, sizeof(d->why), "VFIO_IOMMU_MAP_DMA");
		if (ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0)
			return failed(d->why, sizeof(d->why), "VFIO_IOMMU_UNMAP_DMA");
	}
	return 0;
}

/* A container of our own holding the IOMMU group of `bdf`, with type1v2 (or type1). */
static int direct_open(const char *bdf, struct dma *d, char *why, size_t whylen)
{
	struct vfio_group_status st = {.argsz = sizeof(st)};
	char link[256], path[300], *base;
	ssize_t k;
	int type;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	k = readlink(path, link, sizeof(link) - 1);
	if (k < 0)
		return failed(why, whylen, path);
	link[k] = '\0';
	base = strrchr(link, '/');
	snprintf(path, sizeof(path), "/dev/vfio/%s", base ? base + 1 : link);
	d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (d->container < 0)
		return failed(why, whylen, "/dev/vfio/vfio");
	d->group = open(path, O_RDWR | O_CLOEXEC);
	if (d->group < 0)
		return failed(why, whylen, path);
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &st) < 0 ||
	    !(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return snprintf(why, whylen, "%.100s: not viable", path), -EBUSY;
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container) < 0)
		return failed(why, whylen, "VFIO_GROUP_SET_CONTAINER");
	type = ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0
		   ? VFIO_TYPE1v2_IOMMU
		   : VFIO_TYPE1_IOMMU;
	if (ioctl(d->container, VFIO_SET_IOMMU, type) < 0)
		return failed(why, whylen, "VFIO_SET_IOMMU");
	return 0;
}

static int cmd_dma(const char *sock, const char *bdf)
{
	struct dma d = {.memfd = -1, .container = -1, .group = -1, .mem = MAP_FAILED};
	const char *name = "dma_map_unmap_2MiB";
	char why[200] = "";
	int r;
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	int npl = 0;

	r = vfb_dev_connect(sock, "bench_guest", 0, &d.dev);
	if (r < 0)
		snprintf(why, sizeof(why), "connect %s: %s", sock, strerror(-r));
	if (r == 0) {
		/* The broker pins only memory that cannot be truncated under the mapping. */
		d.memfd = memfd_create("vb-bench-dma", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		r = d.memfd < 0 || ftruncate(d.memfd, DMA_SIZE) < 0 ||
			    fcntl(d.memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0
			? -errno
			: 0;
		if (r == 0) {
			d.mem =
			    mmap(NULL, DMA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.memfd, 0);
			r = d.mem == MAP_FAILED ? -errno : 0;
		}
		if (r < 0)
			snprintf(why, sizeof(why), "memfd: %s", strerror(-r));
	}
	if (r == 0)
		r = direct_open(bdf, &d, why, sizeof(why));
	/* A round trip through worker and broker: it has a placement. The test guest has one
	 * vCPU, so every process of it shares that CPU; this program cannot place the broker and
	 * its worker on a second one, so a guest with more CPUs is refused rather than measured
	 * wherever the scheduler puts them. */
	if (r == 0) {
		npl = bench_placements(pl);
		r = npl < 0 ? npl : npl > 1 ? -EXDEV : bench_pin_self(pl[0].client);
		if (npl > 1)
			snprintf(why, sizeof(why),
				 "the guest has %d or more CPUs; bench_guest places "
				 "only a one-CPU guest's round trips",
				 npl);
		else if (r < 0)
			snprintf(why, sizeof(why), "placing this process: %s", strerror(-r));
	}
	if (r == 0)
		r = bench_run_placed(&(struct bench_pair){.name = name,
							  .baseline = "vfio_ioctl_map_unmap_2MiB",
							  .figure = dma_broker,
							  .base = dma_direct,
							  .explain = dma_explain,
							  .ctx = &d},
				     &pl[0]);
	else
		bench_fail(name, "%s", why);
	if (d.mem != MAP_FAILED)
		munmap(d.mem, DMA_SIZE);
	if (d.group >= 0)
		close(d.group);
	if (d.container >= 0)
		close(d.container);
	if (d.memfd >= 0)
		close(d.memfd);
	vfb_dev_close(d.dev);
	return r < 0;
}

/* ---- DMA at VM scale --------------------------------------------------------------------- */

/* Each size is mapped a few times, not in batches: one map of 2 GiB pins half a million pages
 * (seconds under TCG), so the figure and the baseline alternate operation by operation, which
 * goes first alternating too, and the medians are over these rounds. */
#define VM_ROUNDS_DEFAULT 5
/* Each pair maps at 4 GiB * (its number + 1): above the 32-bit MMIO hole and the MSI window, and
 * apart from the others, so a map the broker completed after its caller gave up (a worker's
 * call times out after 30 s) fails only its own row. */
#define VM_IOVA_STEP (4ull << 30)
#define VM_ANCHOR    (2ull << 20)   /* the second mapping that keeps the memfd mapped */
#define VM_BOOT_SIZE (512ull << 20) /* a booting VM's RAM, unpopulated */

struct vm_mem {
	uint64_t iova;
	int fd;
	void *mem;     /* all of the file mapped here, for the direct ioctl */
	uint64_t size; /* what is mapped and unmapped: the file's first `size` bytes */
	uint64_t file;
};

static void vm_mem_close(struct vm_mem *m)
{
	if (m->mem != MAP_FAILED && m->mem)
		munmap(m->mem, m->file);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->mem = MAP_FAILED;
}

/* A sealed memfd of `size`, of 2 MiB hugetlb pages when `huge`, mapped here; its pages written
 * (resident) when `populate`, else untouched as a booting VM's RAM is. */
static int vm_mem_open(struct vm_mem *m, uint64_t size, uint64_t file, bool huge, bool populate,
		       char *why, size_t whylen)
{
	unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0);

	m->size = size;
	m->file = file;
	m->mem = MAP_FAILED;
	m->fd = memfd_create("vb-bench-vm-ram", flags);
	if (m->fd < 0)
		return failed(why, whylen, huge ? "memfd_create(MFD_HUGETLB)" : "memfd_create");
	if (ftruncate(m->fd, (off_t)file) < 0 || fcntl(m->fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		return failed(why, whylen, "sizing and sealing the memfd");
	m->mem = mmap(NULL, file, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->mem == MAP_FAILED)
		return failed(why, whylen, "mmap of the memfd");
	/* A hugetlb memfd's pages come from the reserved pool: touching them all here says at
	 * once when the pool is too small, instead of a SIGBUS or a failed pin later. */
	if (populate && madvise(m->mem, file, MADV_POPULATE_WRITE) < 0)
		return failed(why, whylen, "MADV_POPULATE_WRITE (hugepages reserved?)");
	return 0;
}

static int vm_direct_map(struct dma *d, const struct vm_mem *m)
{
	struct vfio_iommu_type1_dma_map map = {
	    .argsz = sizeof(map),
	    .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
	    .vaddr = (uintptr_t)m->mem,
	    .iova = m->iova,
	    .size = m->size,
	};

	return ioctl(d->container, VFIO_IOMMU_MAP_DMA, &map) < 0
		   ? failed(d->why, sizeof(d->why), "VFIO_IOMMU_MAP_DMA")
		   : 0;
}

static int vm_direct_unmap(struct dma *d, const struct vm_mem *m)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
	    .argsz = sizeof(unmap), .iova = m->iova, .size = m->size};

	return ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0
		   ? failed(d->why, sizeof(d->why), "VFIO_IOMMU_UNMAP_DMA")
		   : 0;
}

static int vm_broker_map(struct dma *d, const struct vm_mem *m)
{
	int r = vfb_dev_dma_map(d->dev, m->fd, 0, m->iova, m->size, VFB_DMA_READ | VFB_DMA_WRITE);

	if (r < 0)
		snprintf(d->why, sizeof(d->why), "map through the broker: %s",
			 vfb_dev_last_error(d->dev));
	return r;
}

static int vm_broker_unmap(struct dma *d, const struct vm_mem *m)
{
	int r = vfb_dev_dma_unmap(d->dev, m->iova, m->size);

	if (r < 0)
		snprintf(d->why, sizeof(d->why), "unmap through the broker: %s",
			 vfb_dev_last_error(d->dev));
	return r;
}

static unsigned vm_rounds(void)
{
	const char *s = getenv("VB_BENCH_DMA_ROUNDS");
	long v = s ? strtol(s, NULL, 10) : 0;

	return v >= 1 && v <= 1000 ? (unsigned)v : VM_ROUNDS_DEFAULT;
}

/* One side's round: map+unmap of resident memory (`boot` false: both timed), or the map alone
 * of a memfd nobody has touched yet (`boot`: a fresh memfd per round, unmapped and freed
 * untimed). Returns the time in ms, or a negative errno; *ret_map_ms gets the map's part. */
static double vm_round(struct dma *d, bool broker, bool boot, struct vm_mem *resident,
		       uint64_t iova, uint64_t size, bool huge, double *ret_map_ms, int *ret)
{
	struct vm_mem fresh = {.iova = iova, .fd = -1, .mem = MAP_FAILED};
	const struct vm_mem *m = resident;
	uint64_t t0, tm, t1 = 0;
	int r = 0;

	if (boot) {
		r = vm_mem_open(&fresh, size, size, huge, false, d->why, sizeof(d->why));
		m = &fresh;
	}
	t0 = bench_now_ns();
	if (r == 0)
		r = broker ? vm_broker_map(d, m) : vm_direct_map(d, m);
	tm = bench_now_ns();
	if (boot)
		t1 = tm;
	if (r == 0)
		r = broker ? vm_broker_unmap(d, m) : vm_direct_unmap(d, m);
	if (!boot)
		t1 = bench_now_ns();
	vm_mem_close(&fresh);
	*ret_map_ms = (double)(tm - t0) / 1e6;
	*ret = r;
	return (double)(t1 - t0) / 1e6;
}

/* Where a map+unmap row's difference lies: the medians of each side's map and of its unmap
 * (issue 15: at 1 GiB of 2 MiB pages the broker's extra time was mostly in the unmap). Takes
 * the rounds' map and total times before bench_stats_of() sorts them; 0, or -ENOMEM. */
static int vm_split(const double *fm, const double *fv, const double *bm, const double *bv,
		    unsigned n, double ret[4])
{
	double *v = calloc((size_t)n * 4, sizeof(double));
	struct bench_stats s;

	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		v[i] = fm[i];
		v[n + i] = fv[i] - fm[i];
		v[2 * n + i] = bm[i];
		v[3 * n + i] = bv[i] - bm[i];
	}
	for (unsigned k = 0; k < 4; k++) {
		bench_stats_of(v + (size_t)k * n, n, &s);
		ret[k] = s.median;
	}
	free(v);
	return 0;
}

static int vm_pair(struct dma *d, unsigned no, uint64_t size, bool huge, bool boot)
{
	unsigned n = vm_rounds();
	double *fv = calloc(n, sizeof(double)), *bv = calloc(n, sizeof(double));
	double *fm = calloc(n, sizeof(double)), *bm = calloc(n, sizeof(double));
	uint64_t iova = VM_IOVA_STEP * (no + 1);
	struct vm_mem res = {.iova = iova, .fd = -1, .mem = MAP_FAILED};
	struct bench_stats fs, bs;
	char name[64], base[64];
	const char *pg = huge ? "2MiB" : "4KiB";
	bool gib = size >= (1ull << 30);
	unsigned amount = (unsigned)(gib ? size >> 30 : size >> 20);
	const char *unit = gib ? "GiB" : "MiB";
	bool anchored = false, split = false;
	double parts[4];
	int r = fv && bv && fm && bm ? 0 : -ENOMEM;

	snprintf(name, sizeof(name), "%s_%u%s_%spages",
		 boot ? "dma_map_unpopulated" : "dma_map_unmap", amount, unit, pg);
	snprintf(base, sizeof(base), "%s_%u%s_%spages",
		 boot ? "vfio_ioctl_map_unpopulated" : "vfio_ioctl_map_unmap", amount, unit, pg);
	/* Resident memory stays mapped through the broker by a second, small mapping of the same
	 * memfd, as QEMU maps one RAM memfd as several sections (below and above the 32-bit hole)
	 * and moves one while the others stay: the broker's view of the memfd then stays too, as
	 * the VMM's own mapping does for the direct ioctl. */
	if (r == 0 && !boot)
		r = vm_mem_open(&res, size, size + VM_ANCHOR, huge, true, d->why, sizeof(d->why));
	if (r == 0 && !boot) {
		r = vfb_dev_dma_map(d->dev, res.fd, size, iova + size, VM_ANCHOR,
				    VFB_DMA_READ | VFB_DMA_WRITE);
		if (r < 0)
			snprintf(d->why, sizeof(d->why), "anchor map: %s",
				 vfb_dev_last_error(d->dev));
		anchored = r == 0;
	}
	/* Untimed: one direct map of fresh memory first, so the pages the guest hands out have been
	 * touched once on the host (QEMU backs guest RAM at first touch, which under TCG costs more
	 * than the zeroing measured here) whichever side the first round starts with. */
	if (r == 0 && boot)
		vm_round(d, false, true, NULL, iova, size, huge, &bm[0], &r);
	for (unsigned i = 0; r == 0 && i < n; i++) {
		bool broker_first = i % 2 == 0;

		for (int side = 0; r == 0 && side < 2; side++) {
			bool broker = (side == 0) == broker_first;
			double ms = vm_round(d, broker, boot, &res, iova, size, huge,
					     &(broker ? fm : bm)[i], &r);

			(broker ? fv : bv)[i] = ms;
		}
	}
	if (anchored && vfb_dev_dma_unmap(d->dev, iova + size, VM_ANCHOR) < 0 && r == 0) {
		r = -EIO;
		snprintf(d->why, sizeof(d->why), "anchor unmap: %s", vfb_dev_last_error(d->dev));
	}
	vm_mem_close(&res);
	if (r == 0 && !boot)
		split = vm_split(fm, fv, bm, bv, n, parts) == 0;
	if (r == 0) {
		bench_stats_of(fv, n, &fs);
		bench_stats_of(bv, n, &bs);
		fs.iterations = bs.iterations = n;
		bench_report(name, &fs, base, &bs, "ms/op");
		if (split)
			printf("# %s: map %.1f ms, unmap %.1f ms; the direct ioctls: map %.1f ms, "
			       "unmap %.1f ms (medians)\n",
			       name, parts[0], parts[1], parts[2], parts[3]);
		fflush(stdout);
	} else {
		bench_fail(name, "%s: %s", strerror(-r), d->why);
	}
	free(fv);
	free(bv);
	free(fm);
	free(bm);
	return r;
}

/* The sizes: 1 GiB and `max_gib` (the test guest's largest). 2 MiB pages only when the guest
 * has a hugetlb pool: without one the rows say so (NOT RUN) instead of vanishing. */
static int cmd_dma_vm(const char *sock, const char *bdf, unsigned max_gib)
{
	struct dma d = {.memfd = -1, .container = -1, .group = -1, .mem = MAP_FAILED};
	char why[200] = "";
	int r, bad = 0;

	r = vfb_dev_connect(sock, "bench_guest", 0, &d.dev);
	if (r < 0)
		snprintf(why, sizeof(why), "connect %s: %s", sock, strerror(-r));
	/* A map of gigabytes takes seconds under TCG: no client-side deadline. */
	if (r == 0)
		r = vfb_dev_set_timeout(d.dev, -1);
	if (r == 0)
		r = direct_open(bdf, &d, why, sizeof(why));
	if (r < 0) {
		bench_fail("dma_map_unmap_1GiB_4KiBpages", "%s", why);
		vfb_dev_close(d.dev);
		return 1;
	}
	for (int huge = 0, no = 0; huge < 2; huge++) {
		bad |= vm_pair(&d, no++, 1ull << 30, huge, false) < 0;
		if (max_gib > 1)
			bad |= vm_pair(&d, no++, (uint64_t)max_gib << 30, huge, false) < 0;
		/* Booting: 512 MiB. Under TCG allocating and zeroing 1 GiB of 4 KiB pages took
		 * longer than the worker waits for any broker call (30 s). */
		bad |= vm_pair(&d, no++, VM_BOOT_SIZE, huge, true) < 0;
	}
	if (d.group >= 0)
		close(d.group);
	if (d.container >= 0)
		close(d.container);
	vfb_dev_close(d.dev);
	return bad;
}

/* ---- hot-plug and the control socket ---------------------------------------------------- */

#define HOTPLUG_ROUNDS_DEFAULT 11
#define HOTPLUG_VM	       "bench-hotplug"

static unsigned env_rounds(const char *name, unsigned def)
{
	const char *s = getenv(name);
	long v = s ? strtol(s, NULL, 10) : 0;

	return v >= 1 && v <= 100000 ? (unsigned)v : def;
}

/* The value of an unlabelled metric in Prometheus text, -1 when absent. */
static long metric_value(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtol(p + n + 1, NULL, 10);
	return -1;
}

/* Untimed, between rounds: until the broker's pool of pre-started workers is full again, so
 * that its refill (a sandboxed spawn) runs in neither side's timed steps. A broker without a
 * pool (prestart = 0) returns at once. */
static int hotplug_pool_settle(struct vfb_ctl *ctl, char *why, size_t whylen)
{
	uint64_t deadline = bench_now_ns() + 120ull * 1000000000ull;

	for (;;) {
		char *text = NULL;
		long size, ready;
		int r = vfb_ctl_metrics(ctl, &text);

		if (r < 0) {
			snprintf(why, whylen, "Metrics: %s", vfb_ctl_last_error(ctl));
			return r;
		}
		size = metric_value(text, "vfio_broker_pool_size");
		ready = metric_value(text, "vfio_broker_pool_ready");
		free(text);
		if (size <= 0 || ready >= size)
			return 0;
		if (bench_now_ns() > deadline) {
			snprintf(why, whylen, "the pool did not refill in 120 s (%ld of %ld ready)",
				 ready, size);
			return -ETIMEDOUT;
		}
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	}
}

/* Untimed, before each side's round: until nothing but this process is runnable in the guest
 * (/proc/loadavg's running count is 1), at most 1 s. A pooled worker counts as ready once it
 * has exec'd, and its start-up after the exec, a removed device's worker exiting and the kernel's
 * reset at its last close still run then: they would land in whichever side's round comes next
 * (both sides wait the same way). */
static void hotplug_idle_wait(void)
{
	for (int i = 0; i < 200; i++) {
		char buf[128];
		unsigned running = 0;
		int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return;
		buf[n] = '\0';
		if (sscanf(buf, "%*s %*s %*s %u/", &running) == 1 && running <= 1)
			return;
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	}
}

/* Untimed, after the handshake: until the broker says the VMM is connected (the worker tells it
 * once it has answered the HELLO), at most 10 s, so that the step lines of the worker and the
 * broker are complete and a VMM is in, as it would be, when the device is removed. */
static void hotplug_connected_wait(struct vfb_ctl *ctl, const char *bdf)
{
	for (int i = 0; i < 1000; i++) {
		struct vfb_ctl_device *d = NULL;
		bool in = vfb_ctl_status(ctl, bdf, &d) == 0 && d->state == VFB_CTL_STATE_CONNECTED;

		vfb_ctl_device_free(d);
		if (in)
			return;
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	}
}

/* What a VMM waits for when a device is hot-plugged through the broker: AddDevice (group,
 * container, device fd, reset, worker start) until its handshake with the worker is done.
 * Returns ms; the device is removed again, untimed. */
static double hotplug_broker(struct vfb_ctl *ctl, const char *bdf, double *ret_add_ms, char *why,
			     size_t whylen, int *ret)
{
	struct vfb_ctl_add_request req = {
	    .bdf = bdf, .vm = HOTPLUG_VM, .flags = VFB_CTL_ADD_NATIVE};
	struct vfb_ctl_add_reply rep;
	struct vfb_dev *dev = NULL;
	uint64_t t0, t1;
	bool added;
	int r;

	t0 = bench_now_ns();
	r = vfb_ctl_add(ctl, &req, &rep);
	added = r == 0;
	*ret_add_ms = (double)(bench_now_ns() - t0) / 1e6;
	if (r < 0)
		snprintf(why, whylen, "AddDevice %s: %s", bdf, vfb_ctl_last_error(ctl));
	if (r == 0) {
		r = vfb_dev_connect(rep.socket_path, "bench_guest", 0, &dev);
		if (r < 0)
			snprintf(why, whylen, "handshake on %s: %s", rep.socket_path, strerror(-r));
	}
	t1 = bench_now_ns();
	if (r == 0)
		hotplug_connected_wait(ctl, bdf);
	vfb_dev_close(dev);
	if (added) {
		int q = vfb_ctl_remove(ctl, bdf, 0, VFB_CTL_REMOVE_FORCE, NULL);

		if (q < 0 && r == 0) {
			snprintf(why, whylen, "RemoveDevice %s: %s", bdf, vfb_ctl_last_error(ctl));
			r = q;
		}
	}
	if (r == 0)
		r = hotplug_pool_settle(ctl, why, whylen);
	*ret = r;
	return (double)(t1 - t0) / 1e6;
}

/* The same steps made in-process by a program holding the device: container and group opened,
 * the group attached and the IOMMU set, the device fd, a reset. `steps` gets the three parts'
 * ms (group and container, device fd, reset), beside the broker's own step lines. */
static double hotplug_direct(const char *bdf, double steps[3], char *why, size_t whylen, int *ret)
{
	struct dma d = {.memfd = -1, .container = -1, .group = -1, .mem = MAP_FAILED};
	uint64_t t0, tg = 0, td = 0, t1;
	int r, dev = -1;

	t0 = bench_now_ns();
	r = direct_open(bdf, &d, why, whylen);
	tg = bench_now_ns();
	if (r == 0) {
		dev = ioctl(d.group, VFIO_GROUP_GET_DEVICE_FD, bdf);
		if (dev < 0)
			r = failed(why, whylen, "VFIO_GROUP_GET_DEVICE_FD");
	}
	td = bench_now_ns();
	if (r == 0 && ioctl(dev, VFIO_DEVICE_RESET) < 0)
		r = failed(why, whylen, "VFIO_DEVICE_RESET");
	t1 = bench_now_ns();
	steps[0] = (double)(tg - t0) / 1e6;
	steps[1] = (double)(td - tg) / 1e6;
	steps[2] = (double)(t1 - td) / 1e6;
	if (dev >= 0)
		close(dev);
	if (d.group >= 0)
		close(d.group);
	if (d.container >= 0)
		close(d.container);
	*ret = r;
	return (double)(t1 - t0) / 1e6;
}

static void report_rounds(const char *name, double *fv, const char *base, double *bv, unsigned n,
			  const char *units)
{
	struct bench_stats fs, bs;

	bench_stats_of(fv, n, &fs);
	bench_stats_of(bv, n, &bs);
	fs.iterations = bs.iterations = n;
	bench_report(name, &fs, base, &bs, units);
}

/* `name`: the row, which says how the broker was configured (prestart). */
static int cmd_hotplug(const char *ctlsock, const char *bdf, const char *direct_bdf,
		       const char *name)
{
	unsigned n = env_rounds("VB_BENCH_HOTPLUG_ROUNDS", HOTPLUG_ROUNDS_DEFAULT);
	double *fv = calloc(n, sizeof(double)), *bv = calloc(n, sizeof(double));
	double *av = calloc(n, sizeof(double)), *hv = calloc(n, sizeof(double));
	double *dv = calloc(3 * (size_t)n, sizeof(double)), dm[3], handshake;
	struct bench_stats as, fs, bs, hs;
	struct vfb_ctl *ctl = NULL;
	char why[300] = "";
	int r = fv && bv && av && hv && dv ? 0 : -ENOMEM;

	if (r == 0) {
		r = vfb_ctl_connect(ctlsock, 0, &ctl);
		if (r < 0)
			snprintf(why, sizeof(why), "connect %s: %s", ctlsock, strerror(-r));
	}
	if (r == 0)
		r = hotplug_pool_settle(ctl, why, sizeof(why));
	for (unsigned i = 0; r == 0 && i < n; i++) {
		bool broker_first = i % 2 == 0;

		for (int side = 0; r == 0 && side < 2; side++) {
			hotplug_idle_wait();
			if ((side == 0) == broker_first)
				fv[i] = hotplug_broker(ctl, bdf, &av[i], why, sizeof(why), &r);
			else
				bv[i] =
				    hotplug_direct(direct_bdf, dv + 3 * i, why, sizeof(why), &r);
		}
	}
	if (r == 0) {
		/* Where the figure goes: AddDevice's reply (the broker's VFIO steps, the worker's
		 * start and handoff) against the VMM's connection and handshake after it. */
		for (unsigned i = 0; i < n; i++)
			hv[i] = fv[i] - av[i];
		bench_stats_of(hv, n, &hs);
		handshake = hs.median;
		bench_stats_of(av, n, &as); /* sorts av: the pairs above are made first */
		printf("# %s: AddDevice answered after %.1f ms (median), the handshake took the "
		       "rest\n",
		       name, as.median);
		/* For guest_bench.py's breakdown (medians, ms); report_rounds sorts its arrays.
		 * The handshake's median is of each round's own (total - AddDevice), not a
		 * difference of medians. */
		for (int k = 0; k < 3; k++) {
			for (unsigned i = 0; i < n; i++)
				hv[i] = dv[3 * i + k];
			bench_stats_of(hv, n, &hs);
			dm[k] = hs.median;
		}
		memcpy(av, fv, n * sizeof(double));
		bench_stats_of(av, n, &fs);
		memcpy(av, bv, n * sizeof(double));
		bench_stats_of(av, n, &bs);
		printf("p4 %s total %.3f add %.3f vfio %.3f handshake %.3f vfio_group %.3f "
		       "vfio_device %.3f vfio_reset %.3f\n",
		       name, fs.median, as.median, bs.median, handshake, dm[0], dm[1], dm[2]);
		report_rounds(name, fv, "vfio_open_attach_devfd_reset", bv, n, "ms/op");
	} else {
		bench_fail(name, "%s", why);
	}
	vfb_ctl_close(ctl);
	free(fv);
	free(bv);
	free(av);
	free(hv);
	free(dv);
	return r < 0;
}

/* Control requests as an operator's tools make them, one at a time, each timed: DeviceStatus of
 * one device, ListDevices (every page), and, as what the guest's scheduling alone costs, a raw
 * SOCK_SEQPACKET round trip of DeviceStatus's sizes with a forked echo process, made in the same
 * rounds. Prints "ctl OP p50 p99 max devices" lines (ms; devices: ListDevices' count) for
 * guest_bench.py, which compares them at 1 and at 128 devices. */
#define CTL_STATUS_REQ_BYTES 34	 /* header 20 + the BDF field */
#define CTL_STATUS_REP_BYTES 180 /* header 20 + an edu's status with its socket path */

static int ctl_raw_round_trip(int fd)
{
	char buf[BENCH_ECHO_MAX] = {0};

	if (send(fd, buf, CTL_STATUS_REQ_BYTES, MSG_NOSIGNAL) < 0)
		return -errno;
	return recv(fd, buf, sizeof(buf), 0) == CTL_STATUS_REP_BYTES ? 0 : -EPROTO;
}

static int cmd_ctl_latency(const char *ctlsock, const char *bdf)
{
	unsigned n = env_rounds("VB_BENCH_CTL_ROUNDS", 200);
	double *st = calloc(n, sizeof(double)), *ls = calloc(n, sizeof(double));
	double *rw = calloc(n, sizeof(double));
	struct vfb_ctl_device *dev, *list;
	struct bench_stats a, b, c;
	struct vfb_ctl *ctl = NULL;
	size_t ndev = 0;
	int r = st && ls && rw ? 0 : -ENOMEM, echo = -1;
	const char *op = "connect";
	pid_t echo_pid = 0;

	if (r == 0)
		r = bench_echo_start(CTL_STATUS_REP_BYTES, &echo, &echo_pid);
	if (r == 0)
		r = vfb_ctl_connect(ctlsock, 0, &ctl);
	/* A slow answer is a figure, not a failure: the default 5 s would end the run on a guest
	 * whose host deschedules it for seconds. */
	if (r == 0)
		r = vfb_ctl_set_timeout(ctl, 120000);
	for (unsigned i = 0; r == 0 && i < n; i++) {
		uint64_t t0 = bench_now_ns(), t1, t2;

		op = "DeviceStatus";
		r = vfb_ctl_status(ctl, bdf, &dev);
		t1 = bench_now_ns();
		if (r < 0)
			break;
		vfb_ctl_device_free(dev);
		op = "ListDevices";
		r = vfb_ctl_list(ctl, &list, &ndev);
		t2 = bench_now_ns();
		if (r < 0)
			break;
		vfb_ctl_device_list_free(list, ndev);
		op = "the raw round trip";
		r = ctl_raw_round_trip(echo);
		st[i] = (double)(t1 - t0) / 1e6;
		ls[i] = (double)(t2 - t1) / 1e6;
		rw[i] = (double)(bench_now_ns() - t2) / 1e6;
	}
	if (r < 0) {
		fprintf(stderr, "bench_guest ctl: %s: %s (%s)\n", op, strerror(-r),
			ctl ? vfb_ctl_last_error(ctl) : "no connection");
	} else {
		bench_stats_of(st, n, &a);
		bench_stats_of(ls, n, &b);
		bench_stats_of(rw, n, &c);
		printf("ctl status %.4f %.4f %.4f %zu\n", a.median, a.p99, st[n - 1], ndev);
		printf("ctl list %.4f %.4f %.4f %zu\n", b.median, b.p99, ls[n - 1], ndev);
		printf("ctl raw %.4f %.4f %.4f %zu\n", c.median, c.p99, rw[n - 1], ndev);
	}
	vfb_ctl_close(ctl);
	if (echo >= 0)
		bench_echo_stop(echo, echo_pid);
	free(st);
	free(ls);
	free(rw);
	return r < 0;
}

/* ---- the worker's sandboxed start ---------------------------------------------------------- */

#define SPAWN_ROUNDS_DEFAULT 21
#define SPAWN_UID	     61999 /* the end of the test broker's uid_range: unused by it */

/* The part of AddDevice the broker's loop waits for in sbx_spawn_worker(): clone3 into new user,
 * pid, net, mount, ipc, uts and cgroup namespaces, the uid and gid maps, the empty root
 * (tmpfs, pivot_root), rlimits, capabilities dropped, execveat of the worker; until its exec.
 * Ends it again untimed (its channel hangs up). Returns ms, or -1 with *ret set. */
static double spawn_sandboxed(const char *worker, double *ret_parent_ms, int *ret, char *why,
			      size_t whylen)
{
	char *argv[] = {"vfio-worker", "--seccomp=kill", NULL};
	struct sbx_spawn_error serr = {0};
	struct sbx_worker_spec spec = {.exe = worker,
				       .argv = argv,
				       .nfds = 1,
				       .stderr_fd = -1,
				       .uid = SPAWN_UID,
				       .gid = SPAWN_UID,
				       .error = &serr};
	struct sbx_pending p;
	int sp[2];
	uint64_t t0, t1;
	double ms;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		*ret = failed(why, whylen, "socketpair");
		return -1;
	}
	spec.fds = &sp[1];
	/* sbx_spawn_worker() in its two halves, as the broker's pool runs them: the parent's
	 * (clone3 into the namespaces, the id maps, the release), then the child's alone (its
	 * empty root, credentials, rlimits, execveat) until its report pipe closes. */
	t0 = bench_now_ns();
	*ret = sbx_spawn_begin(&spec, &p);
	t1 = bench_now_ns();
	while (*ret == 0) {
		struct pollfd pf = {.fd = p.report_fd, .events = POLLIN};

		if (poll(&pf, 1, -1) < 0 && errno != EINTR) {
			*ret = -errno;
			sbx_spawn_abort(&p);
			break;
		}
		*ret = sbx_spawn_end(&p, &serr);
		if (*ret != -EAGAIN)
			break;
		*ret = 0;
	}
	ms = (double)(bench_now_ns() - t0) / 1e6;
	*ret_parent_ms = (double)(t1 - t0) / 1e6;
	close(sp[1]);
	close(sp[0]); /* the worker ends when its channel hangs up */
	if (*ret < 0) {
		snprintf(why, whylen, "sbx_spawn: %s: %s", serr.step, strerror(-*ret));
		return -1;
	}
	while (waitid((idtype_t)3 /* P_PIDFD */, (id_t)p.pidfd, &(siginfo_t){0}, WEXITED) < 0 &&
	       errno == EINTR)
		;
	close(p.pidfd);
	return ms;
}

/* The baseline: fork and exec of the same static binary, no sandbox, until its exec (a
 * close-on-exec pipe closes). Killed and reaped untimed. */
static double spawn_plain(const char *worker, int *ret, char *why, size_t whylen)
{
	char *argv[] = {"vfio-worker", "--seccomp=kill", NULL}, c;
	int p[2];
	uint64_t t0;
	double ms;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		*ret = failed(why, whylen, "pipe2");
		return -1;
	}
	t0 = bench_now_ns();
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		/* Without its channel the worker would say so: not the benchmark's output. */
		if (null >= 0)
			dup2(null, STDERR_FILENO);
		execv(worker, argv);
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		*ret = failed(why, whylen, "fork");
		return -1;
	}
	while (read(p[0], &c, 1) < 0 && errno == EINTR)
		;
	ms = (double)(bench_now_ns() - t0) / 1e6;
	close(p[0]);
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	*ret = 0;
	return ms;
}

static int cmd_spawn(const char *worker)
{
	unsigned n = env_rounds("VB_BENCH_SPAWN_ROUNDS", SPAWN_ROUNDS_DEFAULT);
	double *fv = calloc(n, sizeof(double)), *bv = calloc(n, sizeof(double));
	double *pv = calloc(n, sizeof(double)), *cv = calloc(n, sizeof(double));
	const char *name = "worker_sandboxed_spawn";
	struct bench_stats ps, cs;
	char why[300] = "";
	int r = fv && bv && pv && cv ? 0 : -ENOMEM;

	for (unsigned i = 0; r == 0 && i < n; i++) {
		/* Alternating which goes first, as the other rows do. */
		if (i % 2 == 0) {
			fv[i] = spawn_sandboxed(worker, &pv[i], &r, why, sizeof(why));
			if (r == 0)
				bv[i] = spawn_plain(worker, &r, why, sizeof(why));
		} else {
			bv[i] = spawn_plain(worker, &r, why, sizeof(why));
			if (r == 0)
				fv[i] = spawn_sandboxed(worker, &pv[i], &r, why, sizeof(why));
		}
		cv[i] = fv[i] - pv[i];
	}
	if (r == 0) {
		bench_stats_of(pv, n, &ps);
		bench_stats_of(cv, n, &cs);
		printf("# %s: the parent's part (clone3 into the user and pid namespaces, uid/gid "
		       "maps, release) "
		       "%.1f ms, the child's (5 namespaces, empty root, credentials, rlimits, "
		       "execveat) %.1f ms "
		       "(medians)\n",
		       name, ps.median, cs.median);
		printf("p4 spawn parent %.3f child %.3f\n", ps.median, cs.median);
		report_rounds(name, fv, "fork_exec_static_worker", bv, n, "ms/op");
	} else {
		bench_fail(name, "%s", why);
	}
	free(fv);
	free(bv);
	free(pv);
	free(cv);
	return r < 0;
}

/* ---- MSI -------------------------------------------------------------------------------- */

#define EDU_BAR	      0
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK   0x64

struct msi {
	struct vfb_dev *dev;
	volatile uint32_t *bar; /* mmapped BAR0, or NULL: trapped accesses */
	int efd;		/* the MSI vector's eventfd */
	int plain;		/* the baseline's eventfd */
};

static int bar_write(struct msi *m, uint32_t off, uint32_t v)
{
	if (m->bar) {
		m->bar[off / 4] = v;
		return 0;
	}
	return vfb_dev_region_write(m->dev, EDU_BAR, off, &v, sizeof(v));
}

static int wait_consume(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	uint64_t v;

	for (;;) {
		int r = poll(&p, 1, 3000);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT; /* the interrupt never came */
		break;
	}
	return read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : -errno;
}

static int msi_device(void *ctx, uint64_t n)
{
	struct msi *m = ctx;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		r = bar_write(m, EDU_IRQ_RAISE, 1);
		if (r == 0)
			r = wait_consume(m->efd);
		if (r == 0)
			r = bar_write(m, EDU_IRQ_ACK, 1);
		if (r < 0)
			return r;
	}
	return 0;
}

static int msi_plain(void *ctx, uint64_t n)
{
	struct msi *m = ctx;
	uint64_t one = 1;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		if (write(m->plain, &one, sizeof(one)) != (ssize_t)sizeof(one))
			return -errno;
		r = wait_consume(m->plain);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Finds a capability in config space's list; 0 when absent. */
static int find_cap(struct vfb_dev *dev, uint8_t id, uint32_t *ret)
{
	uint8_t ptr, hdr[2];
	uint16_t status;
	int r = vfb_dev_cfg_read(dev, 0x06, &status, 2);

	if (r < 0)
		return r;
	if (!(status & 0x10))
		return -ENOENT;
	r = vfb_dev_cfg_read(dev, 0x34, &ptr, 1);
	for (int hops = 0; r == 0 && ptr >= 0x40 && hops < 48; hops++) {
		r = vfb_dev_cfg_read(dev, ptr & ~3u, hdr, 2);
		if (r == 0 && hdr[0] == id) {
			*ret = ptr & ~3u;
			return 0;
		}
		ptr = hdr[1];
	}
	return r < 0 ? r : -ENOENT;
}

/* As a guest driver would: memory decoding and bus mastering on, one MSI vector at the local
 * APIC's address, enabled. */
static int msi_enable(struct msi *m, char *why, size_t whylen)
{
	uint32_t cap, addr = 0xfee00000u;
	uint16_t cmd, ctrl, data = 0x4041;
	int r = find_cap(m->dev, 0x05, &cap);

	if (r < 0)
		return snprintf(why, whylen, "MSI capability: %s", strerror(-r)), r;
	r = vfb_dev_set_irq_fds(m->dev, VFB_IRQ_MSI, 0, &m->efd, 1);
	if (r == 0)
		r = vfb_dev_cfg_read(m->dev, 0x04, &cmd, 2);
	if (r == 0) {
		cmd |= 0x6;
		r = vfb_dev_cfg_write(m->dev, 0x04, &cmd, 2);
	}
	if (r == 0)
		r = vfb_dev_cfg_read(m->dev, cap + 2, &ctrl, 2);
	if (r == 0)
		r = vfb_dev_cfg_write(m->dev, cap + 4, &addr, 4);
	if (r == 0)
		r = vfb_dev_cfg_write(m->dev, cap + ((ctrl & 0x80) ? 12 : 8), &data, 2);
	if (r == 0) {
		ctrl = (uint16_t)((ctrl | 1) & ~0x70); /* enabled, one vector */
		r = vfb_dev_cfg_write(m->dev, cap + 2, &ctrl, 2);
	}
	if (r < 0)
		snprintf(why, whylen, "enabling MSI: %s (%s)", strerror(-r),
			 vfb_dev_last_error(m->dev));
	return r;
}

static int cmd_msi(const char *sock)
{
	struct msi m = {.efd = -1, .plain = -1};
	struct vfb_region_info bar = {.mmap_fd = -1};
	void *map = MAP_FAILED;
	char why[300] = "", name[64] = "msi_raise_to_eventfd";
	int r;

	r = vfb_dev_connect(sock, "bench_guest", 0, &m.dev);
	if (r < 0)
		snprintf(why, sizeof(why), "connect %s: %s", sock, strerror(-r));
	if (r == 0) {
		r = vfb_dev_region_info(m.dev, EDU_BAR, &bar);
		if (r < 0)
			snprintf(why, sizeof(why), "BAR0 info: %s", strerror(-r));
	}
	if (r == 0 && bar.mmap_fd >= 0 && bar.nareas > 0 && bar.areas[0].offset == 0) {
		map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bar.mmap_fd,
			   (off_t)bar.offset);
		if (map != MAP_FAILED)
			m.bar = map;
	}
	snprintf(name, sizeof(name), "msi_raise_to_eventfd_%s", m.bar ? "mmio" : "trapped");
	if (r == 0) {
		m.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		m.plain = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		r = m.efd < 0 || m.plain < 0 ? -errno : 0;
		if (r < 0)
			snprintf(why, sizeof(why), "eventfd: %s", strerror(-r));
	}
	if (r == 0)
		r = msi_enable(&m, why, sizeof(why));
	if (r == 0)
		r = bench_run(&(struct bench_pair){.name = name,
						   .baseline = "eventfd_write_poll_read",
						   .figure = msi_device,
						   .base = msi_plain,
						   .ctx = &m});
	else
		bench_fail(name, "%s", why);
	if (map != MAP_FAILED)
		munmap(map, 4096);
	if (bar.mmap_fd >= 0)
		close(bar.mmap_fd);
	vfb_dev_close(m.dev);
	if (m.efd >= 0)
		close(m.efd);
	if (m.plain >= 0)
		close(m.plain);
	return r < 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "dma") == 0) {
		bench_header("guest: DMA map+unmap through the broker against direct VFIO ioctls");
		return cmd_dma(argv[2], argv[3]);
	}
	if (argc == 3 && strcmp(argv[1], "msi") == 0) {
		bench_header("guest: MSI delivery to an eventfd against an eventfd write");
		return cmd_msi(argv[2]);
	}
	if (argc == 5 && strcmp(argv[1], "dma-vm") == 0) {
		long gib = strtol(argv[4], NULL, 10);

		if (gib < 1 || gib > 64) {
			fprintf(stderr, "bench_guest dma-vm: GIB must be 1-64\n");
			return 2;
		}
		bench_header(
		    "guest: DMA of a VM's RAM through the broker against direct VFIO ioctls");
		return cmd_dma_vm(argv[2], argv[3], (unsigned)gib);
	}
	if ((argc == 5 || argc == 6) && strcmp(argv[1], "hotplug") == 0) {
		bench_header(
		    "guest: hot-plug through the broker against the same steps in-process");
		return cmd_hotplug(argv[2], argv[3], argv[4],
				   argc == 6 ? argv[5] : "hotplug_add_to_handshake");
	}
	if (argc == 4 && strcmp(argv[1], "ctl") == 0)
		return cmd_ctl_latency(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "spawn") == 0) {
		bench_header("guest: the worker's sandboxed start against fork and exec");
		return cmd_spawn(argv[2]);
	}
	fprintf(stderr,
		"usage: bench_guest dma SOCKET BDF | bench_guest dma-vm SOCKET BDF GIB | "
		"bench_guest msi SOCKET | bench_guest hotplug CTLSOCKET BDF DIRECT_BDF [ROW] | "
		"bench_guest ctl CTLSOCKET BDF | bench_guest spawn WORKER\n");
	return 2;
}
