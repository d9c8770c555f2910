/*
 * fake_vfio: the fake VFIO kernel of the broker core's host tests (see fake_vfio.h).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fake_vfio.h"

void fake_vfio_fd(struct fake_vfio *f, int fd, const char *path, int pid)
{
	unsigned i;

	for (i = 0; i < f->nfds && f->fds[i].fd != fd; i++)
		;
	if (i == f->nfds) {
		if (f->nfds == FAKE_MAX_FDS)
			return;
		f->nfds++;
	}
	f->fds[i].fd = fd;
	f->fds[i].pid = pid;
	snprintf(f->fds[i].path, sizeof(f->fds[i].path), "%s", path ? path : "");
}

static int fake_fd_is(void *ctx, int fd, const char *path)
{
	struct fake_vfio *f = ctx;

	for (unsigned i = 0; i < f->nfds; i++)
		if (f->fds[i].fd == fd)
			return !f->fds[i].pid && strcmp(f->fds[i].path, path) == 0;
	return 0;
}

static int fake_pidfd_pid(void *ctx, int fd)
{
	struct fake_vfio *f = ctx;

	for (unsigned i = 0; i < f->nfds; i++)
		if (f->fds[i].fd == fd && f->fds[i].pid)
			return f->fds[i].pid > 0 ? f->fds[i].pid : -ESRCH;
	return -EBADF;
}

static int fake_open(void *ctx, const char *path, int flags)
{
	struct fake_vfio *f = ctx;
	int fd;

	snprintf(f->last_open, sizeof(f->last_open), "%s", path);
	if (f->open_err)
		return f->open_err;
	if (f->group_busy) {
		char node[32];
		size_t n = (size_t)snprintf(node, sizeof(node), "/dev/vfio/%u", f->busy_group);
		size_t len = strlen(path);

		if (len >= n && strcmp(path + len - n, node) == 0)
			return -EBUSY;
	}
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	fake_vfio_fd(f, fd, path, 0);
	return fd;
}

static struct fake_call *record(struct fake_vfio *f, int fd, unsigned long req)
{
	static struct fake_call overflow;
	struct fake_call *c = f->ncalls < FAKE_MAX_CALLS ? &f->calls[f->ncalls++] : &overflow;

	memset(c, 0, sizeof(*c));
	c->req = req;
	c->fd = fd;
	return c;
}

static int next_err(int *errs, unsigned *n)
{
	int e;

	if (*n == 0)
		return 0;
	e = errs[0];
	memmove(errs, errs + 1, (size_t)(*n - 1) * sizeof(errs[0]));
	(*n)--;
	return e;
}

/* The answer is built the way the 6.1 kernel does: the fixed part, then each capability appended
 * without padding (so the IOVA range capability after the 12-byte DMA_AVAIL one is misaligned),
 * the previous one's `next` pointing at it. Written with memcpy for that reason. */
static int iommu_info(struct fake_vfio *f, struct vfio_iommu_type1_info *in)
{
	unsigned char buf[512];
	struct vfio_iommu_type1_info info;
	size_t prev = 0;
	uint32_t argsz = in->argsz, need = sizeof(info);

	memset(buf, 0, sizeof(buf));
	memset(&info, 0, sizeof(info));
	info.flags = VFIO_IOMMU_INFO_PGSIZES;
	info.iova_pgsizes = f->iova_pgsizes;
	if (f->dma_avail_cap) {
		struct vfio_iommu_type1_info_dma_avail a = {
		    .header = {.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, .version = 1},
		    .avail = f->dma_avail};

		memcpy(buf + need, &a, sizeof(a));
		info.cap_offset = need;
		prev = need;
		need += sizeof(a);
	}
	if (f->n_iova_ranges) {
		struct vfio_iommu_type1_info_cap_iova_range r = {
		    .header = {.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, .version = 1},
		    .nr_iovas = f->n_iova_ranges};

		memcpy(buf + need, &r, sizeof(r));
		memcpy(buf + need + sizeof(r), f->iova_ranges,
		       f->n_iova_ranges * sizeof(f->iova_ranges[0]));
		if (prev)
			memcpy(buf + prev + offsetof(struct vfio_info_cap_header, next), &need,
			       sizeof(need));
		else
			info.cap_offset = need;
		need += sizeof(r) + f->n_iova_ranges * sizeof(f->iova_ranges[0]);
	}
	if (need > sizeof(info))
		info.flags |= VFIO_IOMMU_INFO_CAPS;
	if (argsz < need) {
		info.argsz = need;
		info.cap_offset = 0;
		memcpy(in, &info, sizeof(info));
		return 0;
	}
	info.argsz = argsz;
	memcpy(buf, &info, sizeof(info));
	memcpy(in, buf, need);
	return 0;
}

static int region_info(struct fake_vfio *f, struct vfio_region_info *in)
{
	struct fake_region *r;
	struct vfio_region_info head;
	uint32_t argsz = in->argsz;

	if (in->index >= f->num_regions || in->index >= FAKE_MAX_REGIONS)
		return -EINVAL;
	r = &f->regions[in->index];
	if (r->err || r->len == 0)
		return r->err ? r->err : -EINVAL;
	if (argsz < r->len) {
		memcpy(&head, r->blob, sizeof(head));
		head.argsz = (uint32_t)r->len;
		head.cap_offset = 0;
		memcpy(in, &head, sizeof(head));
		return 0;
	}
	memcpy(in, r->blob, r->len);
	in->argsz = argsz;
	return 0;
}

static int fake_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct fake_vfio *f = ctx;
	struct fake_call *c = record(f, fd, req);
	unsigned i;
	int nfd;

	switch (req) {
	case VFIO_GET_API_VERSION:
		return f->api_version;
	case VFIO_CHECK_EXTENSION:
		c->arg = (unsigned long)arg;
		if (c->arg == VFIO_TYPE1v2_IOMMU)
			return f->has_type1v2;
		if (c->arg == VFIO_TYPE1_IOMMU)
			return f->has_type1;
		return 0;
	case VFIO_SET_IOMMU:
		c->arg = (unsigned long)arg;
		if (c->arg == VFIO_TYPE1v2_IOMMU && f->set_iommu_v2_err)
			return f->set_iommu_v2_err;
		return 0;
	case VFIO_IOMMU_GET_INFO:
		return iommu_info(f, arg);
	case VFIO_GROUP_GET_STATUS: {
		struct vfio_group_status *st = arg;

		st->flags = (f->group_viable ? VFIO_GROUP_FLAGS_VIABLE : 0) |
			    (f->container_set ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0);
		return 0;
	}
	case VFIO_GROUP_SET_CONTAINER:
		c->arg = (unsigned long)*(int *)arg;
		f->container_set |= !f->set_container_err;
		return f->set_container_err;
	case VFIO_GROUP_UNSET_CONTAINER:
		f->container_set &= f->unset_container_err != 0;
		return f->unset_container_err;
	case VFIO_GROUP_GET_DEVICE_FD:
		snprintf(c->bdf, sizeof(c->bdf), "%s", (const char *)arg);
		if (f->get_device_fd_err)
			return f->get_device_fd_err;
		nfd = eventfd(0, EFD_CLOEXEC);
		if (nfd < 0)
			return -errno;
		fake_vfio_fd(f, nfd, "anon_inode:[vfio-device]", 0);
		return nfd;
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info *di = arg;

		di->flags = f->dev_flags;
		di->num_regions = f->num_regions;
		di->num_irqs = f->num_irqs;
		return 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO:
		c->index = ((struct vfio_region_info *)arg)->index;
		return region_info(f, arg);
	case VFIO_DEVICE_GET_IRQ_INFO: {
		struct vfio_irq_info *ii = arg;

		c->index = ii->index;
		if (ii->index >= f->num_irqs || ii->index >= FAKE_MAX_IRQS)
			return -EINVAL;
		ii->flags = f->irqs[ii->index].flags;
		ii->count = f->irqs[ii->index].count;
		return 0;
	}
	case VFIO_DEVICE_SET_IRQS: {
		struct vfio_irq_set *s = arg;

		c->flags = s->flags;
		c->index = s->index;
		c->start = s->start;
		c->count = s->count;
		for (i = 0; i < s->count && i < 8; i++) {
			if (s->flags & VFIO_IRQ_SET_DATA_EVENTFD)
				memcpy(&c->fds[i], s->data + i * 4, 4);
			else if (s->flags & VFIO_IRQ_SET_DATA_BOOL)
				c->bools[i] = s->data[i];
		}
		return f->set_irqs_err;
	}
	case VFIO_DEVICE_RESET:
		return f->reset_err;
	case VFIO_IOMMU_MAP_DMA: {
		struct vfio_iommu_type1_dma_map *m = arg;

		c->flags = m->flags;
		c->iova = m->iova;
		c->size = m->size;
		c->vaddr = m->vaddr;
		return next_err(f->map_errs, &f->n_map_errs);
	}
	case VFIO_IOMMU_UNMAP_DMA: {
		struct vfio_iommu_type1_dma_unmap *u = arg;

		c->flags = u->flags;
		c->iova = u->iova;
		c->size = u->size;
		return next_err(f->unmap_errs, &f->n_unmap_errs);
	}
	default:
		return -ENOTTY;
	}
}

static long fake_pread(void *ctx, int fd, void *buf, size_t len, long long off)
{
	struct fake_vfio *f = ctx;

	(void)fd;
	if (off < (long long)f->cfg_offset || off - f->cfg_offset + len > sizeof(f->cfg))
		return -EINVAL;
	memcpy(buf, f->cfg + (off - f->cfg_offset), len);
	return (long)len;
}

static long fake_pwrite(void *ctx, int fd, const void *buf, size_t len, long long off)
{
	struct fake_vfio *f = ctx;

	(void)fd;
	if (off < (long long)f->cfg_offset || off - f->cfg_offset + len > sizeof(f->cfg))
		return -EINVAL;
	memcpy(f->cfg + (off - f->cfg_offset), buf, len);
	f->cfg_writes++;
	return (long)len;
}

void fake_vfio_init(struct fake_vfio *f)
{
	memset(f, 0, sizeof(*f));
	f->sys.open = fake_open;
	f->sys.ioctl = fake_ioctl;
	f->sys.pread = fake_pread;
	f->sys.pwrite = fake_pwrite;
	f->sys.fd_is = fake_fd_is;
	f->sys.pidfd_pid = fake_pidfd_pid;
	f->sys.ctx = f;
	f->sys.root = f->root;
	f->api_version = VFIO_API_VERSION;
	f->has_type1v2 = true;
	f->has_type1 = true;
	f->group_viable = true;
	f->iova_pgsizes = 0x40201000ull;
	f->dma_avail_cap = true;
	f->dma_avail = 65535;
	f->dev_flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
	f->num_regions = VFIO_PCI_NUM_REGIONS;
	f->num_irqs = VFIO_PCI_NUM_IRQS;
}

unsigned fake_vfio_count(const struct fake_vfio *f, unsigned long req)
{
	unsigned i, n = 0;

	for (i = 0; i < f->ncalls; i++)
		n += f->calls[i].req == req;
	return n;
}

const struct fake_call *fake_vfio_nth(const struct fake_vfio *f, unsigned long req, unsigned n)
{
	unsigned i;

	for (i = 0; i < f->ncalls; i++) {
		if (f->calls[i].req == req && n-- == 0)
			return &f->calls[i];
	}
	return NULL;
}

void fake_region_plain(struct fake_vfio *f, uint32_t index, uint32_t flags, uint64_t size,
		       uint64_t offset)
{
	struct vfio_region_info info = {
	    .argsz = sizeof(info), .flags = flags, .index = index, .size = size, .offset = offset};
	struct fake_region *r = &f->regions[index];

	memset(r, 0, sizeof(*r));
	memcpy(r->blob, &info, sizeof(info));
	r->len = sizeof(info);
}

void fake_region_sparse(struct fake_vfio *f, uint32_t index, uint32_t flags, uint64_t size,
			uint64_t offset, const struct vfio_region_sparse_mmap_area *areas,
			uint32_t n, bool msix)
{
	struct fake_region *r = &f->regions[index];
	struct vfio_region_info info = {.argsz = 0,
					.flags = flags | VFIO_REGION_INFO_FLAG_CAPS,
					.index = index,
					.size = size,
					.offset = offset};
	struct vfio_region_info_cap_sparse_mmap sp;
	struct vfio_info_cap_header mx = {.id = VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, .version = 1};
	size_t off = sizeof(info), sp_len = sizeof(sp) + n * sizeof(areas[0]);

	memset(r, 0, sizeof(*r));
	memset(&sp, 0, sizeof(sp));
	sp.header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sp.header.version = 1;
	sp.nr_areas = n;
	info.cap_offset = (uint32_t)off;
	if (msix)
		sp.header.next = (uint32_t)(off + sp_len);
	memcpy(r->blob + off, &sp, sizeof(sp));
	memcpy(r->blob + off + sizeof(sp), areas, n * sizeof(areas[0]));
	r->len = off + sp_len;
	if (msix) {
		memcpy(r->blob + r->len, &mx, sizeof(mx));
		r->len += sizeof(mx);
	}
	info.argsz = (uint32_t)r->len;
	memcpy(r->blob, &info, sizeof(info));
}

void fake_irq(struct fake_vfio *f, uint32_t index, uint32_t flags, uint32_t count)
{
	f->irqs[index].argsz = sizeof(f->irqs[index]);
	f->irqs[index].index = index;
	f->irqs[index].flags = flags;
	f->irqs[index].count = count;
}
