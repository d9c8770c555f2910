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
#include <linux/vfio.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vfiobroker/client.h>

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
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	int npl = 0;
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
	fprintf(stderr, "usage: bench_guest dma SOCKET BDF | bench_guest msi SOCKET\n");
	return 2;
}
