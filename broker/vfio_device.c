/*
 * vfio_device: one VFIO device fd and what the kernel says about it: device info, every
 * region's info with its capability chain (sparse mmap areas, MSI-X mappable, region type),
 * every IRQ index's info; VFIO_DEVICE_RESET; the mmap grants handed to VMMs (each a file of its
 * own) and the decoding switch that revokes their mappings.
 *
 * Trusts: the kernel, within bounds (counts capped, sparse areas checked to lie inside their
 * region, capability chains walked defensively). Does not trust the BDF it is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "base.h"
#include "bind.h"
#include "irq.h"
#include "le.h"
#include "vfio.h"
#include "vfio_priv.h"

struct brk_vfio_dev {
	struct brk_group *group;
	const struct brk_sys *sys;
	int fd;
	char bdf[VB_BDF_LEN];
	struct brk_vfio_dev_info info;
	struct brk_region *regions;
	struct brk_irq_info *irqs;
	struct brk_irqs *irqstate;
	uint32_t resets;
	struct brk_grant_info grants;
};

struct region_ctx {
	struct brk_region *r;
	int err;
};

static int sparse_cap(struct brk_region *r, const void *cap, size_t avail)
{
	struct vfio_region_info_cap_sparse_mmap s;
	struct vfio_region_sparse_mmap_area a;
	const char *p = (const char *)cap + sizeof(s);
	uint32_t i;

	if (avail < sizeof(s))
		return -EINVAL;
	memcpy(&s, cap, sizeof(s));
	if (s.nr_areas > BRK_REGION_MAX_AREAS || (avail - sizeof(s)) / sizeof(a) < s.nr_areas)
		return -EINVAL;
	for (i = 0; i < s.nr_areas; i++) {
		memcpy(&a, p + i * sizeof(a), sizeof(a));
		if (a.size > r->size || a.offset > r->size - a.size)
			return -EINVAL;
	}
	if (s.nr_areas) {
		r->areas = calloc(s.nr_areas, sizeof(*r->areas));
		if (!r->areas)
			return -ENOMEM;
	}
	for (i = 0; i < s.nr_areas; i++) {
		memcpy(&a, p + i * sizeof(a), sizeof(a));
		r->areas[i].offset = a.offset;
		r->areas[i].size = a.size;
	}
	r->n_areas = s.nr_areas;
	r->has_sparse = true;
	return 0;
}

static int region_cap(uint16_t id, uint16_t version, const void *cap, size_t avail, void *ctx)
{
	struct region_ctx *rc = ctx;
	struct vfio_region_info_cap_type t;

	switch (id) {
	case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
		/* A second sparse capability would be a kernel bug; keep the first. */
		if (rc->r->has_sparse)
			return 0;
		rc->err = sparse_cap(rc->r, cap, avail);
		return rc->err;
	case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
		rc->r->msix_mappable = true;
		return 0;
	case VFIO_REGION_INFO_CAP_TYPE:
		if (avail >= sizeof(t)) {
			memcpy(&t, cap, sizeof(t));
			rc->r->has_type = true;
			rc->r->type = t.type;
			rc->r->subtype = t.subtype;
		}
		return 0;
	default:
		return 0;
	}
}

static int read_region(struct brk_vfio_dev *d, uint32_t index, struct vb_err *err)
{
	struct vfio_region_info tmpl = {.argsz = sizeof(tmpl), .index = index};
	struct brk_region *r = &d->regions[index];
	const struct vfio_region_info *info;
	struct region_ctx rc = {.r = r, .err = 0};
	_cleanup_free_ void *buf = NULL;
	size_t len;
	int ret;

	r->index = index;
	ret = brk_vfio__query_info(d->sys, d->fd, VFIO_DEVICE_GET_REGION_INFO, &tmpl, sizeof(tmpl),
				   &buf, &len);
	/* vfio-pci answers EINVAL for regions the device does not have (VGA on most). */
	if (ret == -EINVAL)
		return 0;
	if (ret < 0)
		return vb_errf(err, ret, "VFIO_DEVICE_GET_REGION_INFO %u of %s: %s", index, d->bdf,
			       strerror(-ret));
	info = buf;
	r->present = true;
	r->flags = info->flags;
	r->size = info->size;
	r->offset = info->offset;
	if ((info->flags & VFIO_REGION_INFO_FLAG_CAPS) && info->cap_offset)
		ret =
		    brk_vfio__caps_walk(buf, len, sizeof(*info), info->cap_offset, region_cap, &rc);
	if (ret == -ENOMEM)
		return vb_errf(err, ret, "out of memory");
	if (ret < 0)
		return vb_errf(err, -EINVAL, "region %u of %s: malformed capability chain", index,
			       d->bdf);
	return 0;
}

static int read_irq(struct brk_vfio_dev *d, uint32_t index, struct vb_err *err)
{
	struct vfio_irq_info info = {.argsz = sizeof(info), .index = index};
	int r;

	d->irqs[index].index = index;
	r = d->sys->ioctl(d->sys->ctx, d->fd, VFIO_DEVICE_GET_IRQ_INFO, &info);
	if (r == -EINVAL)
		return 0;
	if (r < 0)
		return vb_errf(err, r, "VFIO_DEVICE_GET_IRQ_INFO %u of %s: %s", index, d->bdf,
			       strerror(-r));
	d->irqs[index].flags = info.flags;
	d->irqs[index].count = info.count;
	return 0;
}

static int read_device_info(struct brk_vfio_dev *d, struct vb_err *err)
{
	struct vfio_device_info tmpl = {.argsz = sizeof(tmpl)};
	const struct vfio_device_info *info;
	_cleanup_free_ void *buf = NULL;
	size_t len;
	int r;

	r = brk_vfio__query_info(d->sys, d->fd, VFIO_DEVICE_GET_INFO, &tmpl, sizeof(tmpl), &buf,
				 &len);
	if (r < 0)
		return vb_errf(err, r, "VFIO_DEVICE_GET_INFO of %s: %s", d->bdf, strerror(-r));
	info = buf;
	d->info.flags = info->flags;
	d->info.num_regions = info->num_regions;
	d->info.num_irqs = info->num_irqs;
	if (d->info.num_regions > BRK_DEVICE_MAX_REGIONS || d->info.num_irqs > BRK_DEVICE_MAX_IRQS)
		return vb_errf(err, -E2BIG, "%s reports %u regions and %u IRQ indexes: too many",
			       d->bdf, d->info.num_regions, d->info.num_irqs);
	return 0;
}

static int read_all(struct brk_vfio_dev *d, struct vb_err *err)
{
	uint32_t i;
	int r;

	r = read_device_info(d, err);
	if (r < 0)
		return r;
	d->regions = calloc(d->info.num_regions ? d->info.num_regions : 1, sizeof(*d->regions));
	d->irqs = calloc(d->info.num_irqs ? d->info.num_irqs : 1, sizeof(*d->irqs));
	if (!d->regions || !d->irqs)
		return vb_errf(err, -ENOMEM, "out of memory");
	for (i = 0; i < d->info.num_regions; i++) {
		r = read_region(d, i, err);
		if (r < 0)
			return r;
	}
	for (i = 0; i < d->info.num_irqs; i++) {
		r = read_irq(d, i, err);
		if (r < 0)
			return r;
	}
	r = brk_irqs_new(d->sys, d->fd, d->info.flags & VFIO_DEVICE_FLAGS_PCI, d->irqs,
			 d->info.num_irqs, &d->irqstate);
	if (r < 0)
		return vb_errf(err, r, "%s: IRQ info out of bounds", d->bdf);
	return 0;
}

static void device_release(struct brk_vfio_dev *d)
{
	uint32_t i;

	if (!d)
		return;
	if (d->regions) {
		for (i = 0; i < d->info.num_regions; i++)
			free(d->regions[i].areas);
	}
	free(d->regions);
	free(d->irqs);
	brk_irqs_free(d->irqstate);
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}
VB_DEFINE_CLEANUP(struct brk_vfio_dev, device_release);

/* The kernel answers ENODEV for a device of the group that vfio-pci does not drive: the group
 * is still viable (its other members are on vfio-pci, this one has no driver or pci-stub), so
 * nothing before this step noticed. Say what to do about it. */
static int open_failed(const struct brk_sys *sys, const char *bdf, uint32_t nr, int r,
		       struct vb_err *err)
{
	char drv[64];

	if (r == -ENODEV && brk_bind_driver(sys, bdf, drv, sizeof(drv)) == 0 &&
	    strcmp(drv, "vfio-pci") != 0) {
		char now[96];

		if (drv[0])
			snprintf(now, sizeof(now), "is bound to %s", drv);
		else
			snprintf(now, sizeof(now), "has no driver");
		return vb_errf(err, r,
			       "%s (IOMMU group %u) %s, not vfio-pci: bind it to vfio-pci "
			       "(driverctl set-override %s vfio-pci), or add it with --bind",
			       bdf, nr, now, bdf);
	}
	return vb_errf(err, r, "VFIO_GROUP_GET_DEVICE_FD %s in group %u: %s", bdf, nr,
		       strerror(-r));
}

int brk_vfio_dev_open(struct brk_group *g, const char *bdf, struct vb_err *err,
		      struct brk_vfio_dev **ret)
{
	_cleanup_(device_releasep) struct brk_vfio_dev *d = NULL;
	int r;

	if (vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) < 0)
		return vb_errf(err, -EINVAL,
			       "invalid PCI address (want dddd:bb:dd.f, lower-case hex)");
	if (!brk_group_container(g))
		return vb_errf(err, -EPERM, "IOMMU group %u is not attached to a container",
			       brk_group_nr(g));
	d = calloc(1, sizeof(*d));
	if (!d)
		return vb_errf(err, -ENOMEM, "out of memory");
	d->sys = brk_vfio__group_sys(g);
	memcpy(d->bdf, bdf, VB_BDF_LEN);
	d->fd = d->sys->ioctl(d->sys->ctx, brk_vfio__group_fd(g), VFIO_GROUP_GET_DEVICE_FD, d->bdf);
	if (d->fd < 0) {
		r = d->fd;
		d->fd = -1;
		return open_failed(brk_vfio__group_sys(g), bdf, brk_group_nr(g), r, err);
	}
	r = read_all(d, err);
	if (r < 0)
		return r;
	d->group = brk_group_ref(g);
	brk_vfio__group_device_count(g, +1);
	*ret = TAKE_PTR(d);
	return 0;
}

/* The parts of the config header that name the device: vendor and device, revision and class,
 * subsystem vendor and device. */
static const struct {
	uint32_t off, len;
} id_fields[] = {{PCI_VENDOR_ID, 4}, {PCI_REVISION_ID, 4}, {PCI_SUBSYSTEM_VENDOR_ID, 4}};

/* Whether the fd's config header names the same device as sysfs's `config` of its BDF. */
static int same_device(struct brk_vfio_dev *d, struct vb_err *err)
{
	const struct brk_region *cfg = brk_vfio_dev_region(d, VFIO_PCI_CONFIG_REGION_INDEX);
	uint8_t mine[PCI_STD_HEADER_SIZEOF], sys[PCI_STD_HEADER_SIZEOF];
	_cleanup_close_ int fd = -1;
	char path[256];
	ssize_t n;
	long got;

	if (!cfg || !cfg->present || cfg->size < sizeof(mine))
		return vb_errf(err, -ENODEV, "%s: no PCI config region", d->bdf);
	got = d->sys->pread(d->sys->ctx, d->fd, mine, sizeof(mine), (long long)cfg->offset);
	if (got != (long)sizeof(mine))
		return vb_errf(err, got < 0 ? (int)got : -EIO, "%s: reading its config header",
			       d->bdf);
	if (brk_sys_path(d->sys, path, sizeof(path), "/sys/bus/pci/devices/%s/config", d->bdf) < 0)
		return vb_errf(err, -ENAMETOOLONG, "sysfs path too long");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vb_errf(err, -ENODEV, "%s: no such PCI device (%s)", d->bdf,
			       strerror(errno));
	n = pread(fd, sys, sizeof(sys), 0);
	if (n != (ssize_t)sizeof(sys))
		return vb_errf(err, -EIO, "%s: reading sysfs config", d->bdf);
	for (size_t i = 0; i < ARRAY_SIZE(id_fields); i++)
		if (memcmp(mine + id_fields[i].off, sys + id_fields[i].off, id_fields[i].len) != 0)
			return vb_errf(
			    err, -ENODEV,
			    "%s: the fd's config header (at 0x%02x) is not that device's", d->bdf,
			    id_fields[i].off);
	return 0;
}

int brk_vfio_dev_adopt(struct brk_group *g, const char *bdf, int fd, struct vb_err *err,
		       struct brk_vfio_dev **ret)
{
	const struct brk_sys *sys = brk_vfio__group_sys(g);
	_cleanup_(device_releasep) struct brk_vfio_dev *d = NULL;
	uint32_t nr;
	int r;

	if (vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) < 0)
		return vb_errf(err, -EINVAL, "invalid PCI address");
	if (!sys->fd_is || sys->fd_is(sys->ctx, fd, "anon_inode:[vfio-device]") != 1)
		return vb_errf(err, -EBADF, "%s: not a VFIO device fd", bdf);
	r = brk_bind_iommu_group(sys, bdf, &nr, err);
	if (r < 0)
		return r;
	if (nr != brk_group_nr(g))
		return vb_errf(err, -ENODEV, "%s is in IOMMU group %u now, not %u", bdf, nr,
			       brk_group_nr(g));
	d = calloc(1, sizeof(*d));
	if (!d)
		return vb_errf(err, -ENOMEM, "out of memory");
	d->sys = sys;
	memcpy(d->bdf, bdf, VB_BDF_LEN);
	d->fd = fd;
	r = read_all(d, err);
	if (r == 0 && !(d->info.flags & VFIO_DEVICE_FLAGS_PCI))
		r = vb_errf(err, -ENODEV, "%s: not a PCI device", bdf);
	if (r == 0)
		r = same_device(d, err);
	if (r < 0) {
		d->fd = -1; /* the caller keeps it */
		return r;
	}
	d->group = brk_group_ref(g);
	brk_vfio__group_device_count(g, +1);
	*ret = TAKE_PTR(d);
	return 0;
}

void brk_vfio_dev_free(struct brk_vfio_dev *d)
{
	struct brk_group *g;

	if (!d)
		return;
	g = d->group;
	device_release(d);
	brk_vfio__group_device_count(g, -1);
	brk_group_unref(g);
}

int brk_vfio_dev_fd(const struct brk_vfio_dev *d)
{
	return d->fd;
}

const char *brk_vfio_dev_bdf(const struct brk_vfio_dev *d)
{
	return d->bdf;
}

const struct brk_vfio_dev_info *brk_vfio_dev_info(const struct brk_vfio_dev *d)
{
	return &d->info;
}

const struct brk_region *brk_vfio_dev_region(const struct brk_vfio_dev *d, uint32_t index)
{
	return index < d->info.num_regions ? &d->regions[index] : NULL;
}

const struct brk_irq_info *brk_vfio_dev_irq(const struct brk_vfio_dev *d, uint32_t index)
{
	return index < d->info.num_irqs ? &d->irqs[index] : NULL;
}

struct brk_irqs *brk_vfio_dev_irqs(struct brk_vfio_dev *d)
{
	return d->irqstate;
}

int brk_vfio_dev_reset(struct brk_vfio_dev *d, struct vb_err *err)
{
	int r;

	if (!(d->info.flags & VFIO_DEVICE_FLAGS_RESET))
		return vb_errf(err, -ENOTTY,
			       "%s has no reset the kernel can use (no FLR, PM or bus reset): "
			       "put it alone behind a PCIe root port",
			       d->bdf);
	r = d->sys->ioctl(d->sys->ctx, d->fd, VFIO_DEVICE_RESET, NULL);
	if (r < 0)
		return vb_errf(err, r, "VFIO_DEVICE_RESET of %s: %s", d->bdf, strerror(-r));
	d->resets++;
	return 0;
}

uint32_t brk_vfio_dev_resets(const struct brk_vfio_dev *d)
{
	return d->resets;
}

int brk_vfio_dev_grant(struct brk_vfio_dev *d, pid_t pid, uid_t uid, int *ret_fd,
		       struct vb_err *err)
{
	int fd;

	/* Every VFIO_GROUP_GET_DEVICE_FD is a new open file of the same device (the kernel counts
	 * opens): the VMM never holds the broker's or the worker's file, and each grant is one the
	 * broker can count and name. */
	fd = d->sys->ioctl(d->sys->ctx, brk_vfio__group_fd(d->group), VFIO_GROUP_GET_DEVICE_FD,
			   d->bdf);
	if (fd < 0)
		return vb_errf(err, fd, "a grant file of %s: VFIO_GROUP_GET_DEVICE_FD: %s", d->bdf,
			       strerror(-fd));
	d->grants.issued++;
	d->grants.pid = pid;
	d->grants.uid = uid;
	*ret_fd = fd;
	return 0;
}

const struct brk_grant_info *brk_vfio_dev_grants(const struct brk_vfio_dev *d)
{
	return &d->grants;
}

int brk_vfio_dev_stop_decoding(struct brk_vfio_dev *d, struct vb_err *err)
{
	const struct brk_region *cfg = brk_vfio_dev_region(d, VFIO_PCI_CONFIG_REGION_INDEX);
	const uint16_t off = PCI_COMMAND,
		       bits = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	uint8_t le[2];
	uint16_t cmd;
	long n;

	if (!(d->info.flags & VFIO_DEVICE_FLAGS_PCI) || !cfg || !cfg->present || cfg->size < 6)
		return vb_errf(err, -ENODEV, "%s has no PCI config region", d->bdf);
	n = d->sys->pread(d->sys->ctx, d->fd, le, sizeof(le), (long long)(cfg->offset + off));
	if (n != (long)sizeof(le))
		return vb_errf(err, n < 0 ? (int)n : -EIO, "reading the Command register of %s: %s",
			       d->bdf, strerror(n < 0 ? (int)-n : EIO));
	cmd = vb_le16_get(le);
	if (!(cmd & bits))
		return 0;
	cmd &= (uint16_t)~bits;
	vb_le16_put(le, cmd);
	/* vfio-pci zaps every user mapping of the BARs (in every process, through every file of
	 * the device) when memory decoding goes off, and answers faults on them with SIGBUS while
	 * it stays off. */
	n = d->sys->pwrite(d->sys->ctx, d->fd, le, sizeof(le), (long long)(cfg->offset + off));
	if (n != (long)sizeof(le))
		return vb_errf(err, n < 0 ? (int)n : -EIO, "writing the Command register of %s: %s",
			       d->bdf, strerror(n < 0 ? (int)-n : EIO));
	return 0;
}
