/*
 * vfio: VFIO containers and IOMMU groups (devices are in vfio_device.c), and the info-query and
 * capability-chain helpers both use.
 *
 * Trusts: the kernel's answers, within bounds: info buffers are capped at VFIO__INFO_MAX and
 * capability chains are walked defensively, so a kernel bug cannot make the broker read past a
 * buffer or loop. Trusts its caller for group numbers (they come from sysfs, see bind.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "base.h"
#include "bind.h"
#include "vfio.h"
#include "vfio_priv.h"

struct brk_container {
	unsigned refs;
	const struct brk_sys *sys;
	int fd;
	struct brk_container_info info;
	char note[192];
};

struct brk_group {
	unsigned refs;
	const struct brk_sys *sys;
	int fd;
	uint32_t nr;
	uint32_t devices; /* open brk_devices of this group */
	struct brk_container *container;
	char owner[BRK_GROUP_OWNER_MAX]; /* whose the group is, for refusals; "" unset */
	struct brk_group *next;		 /* in open_groups */
};

/* Every group this process has open. The kernel lets one file open a group at a time and only
 * says EBUSY to the second; this list is how a refusal can name the holder when it is us. */
static struct brk_group *open_groups;

/* Groups this process let go of while someone else still held them open (a VMM that kept its
 * mmap grant): who, so that the kernel's EBUSY on the next open can be explained. */
#define HELD_MAX 32
static struct held {
	const struct brk_sys *sys;
	uint32_t nr;
	char holder[BRK_GROUP_HOLDER_MAX];
} held[HELD_MAX];
static unsigned n_held;

static struct held *held_find(const struct brk_sys *sys, uint32_t nr)
{
	for (unsigned i = 0; i < n_held; i++)
		if (held[i].sys == sys && held[i].nr == nr)
			return &held[i];
	return NULL;
}

static void held_forget(const struct brk_sys *sys, uint32_t nr)
{
	struct held *h = held_find(sys, nr);

	if (h)
		*h = held[--n_held];
}

/* ---- info queries -------------------------------------------------------------------------- */

int brk_vfio__query_info(const struct brk_sys *sys, int fd, unsigned long req, const void *tmpl,
			 size_t base_size, void **ret_buf, size_t *ret_len)
{
	size_t size = base_size;
	uint32_t argsz;
	int tries, r;

	for (tries = 0; tries < 4; tries++) {
		_cleanup_free_ void *buf = calloc(1, size);

		if (!buf)
			return -ENOMEM;
		memcpy(buf, tmpl, base_size);
		argsz = (uint32_t)size;
		memcpy(buf, &argsz, sizeof(argsz));
		r = sys->ioctl(sys->ctx, fd, req, buf);
		if (r < 0)
			return r;
		memcpy(&argsz, buf, sizeof(argsz));
		if (argsz <= size) {
			*ret_buf = TAKE_PTR(buf);
			*ret_len = argsz < base_size ? base_size : argsz;
			return 0;
		}
		if (argsz > VFIO__INFO_MAX)
			return -E2BIG;
		size = argsz;
	}
	/* The kernel kept asking for more: not a chain we can read. */
	return -EIO;
}

int brk_vfio__caps_walk(const void *buf, size_t len, size_t base_size, uint32_t first,
			int (*fn)(uint16_t id, uint16_t version, const void *cap, size_t avail,
				  void *ctx),
			void *ctx)
{
	struct vfio_info_cap_header h;
	size_t off = first, end;
	unsigned n = 0;
	int r;

	/* Kernels before 6.6 pack capabilities without padding (a 12-byte DMA_AVAIL leaves the
	 * next one 4-byte aligned), so nothing here is read in place: headers and capabilities
	 * are copied out with memcpy. */
	while (off) {
		if (off < base_size || off > len || len - off < sizeof(h) || ++n > 64)
			return -EINVAL;
		memcpy(&h, (const char *)buf + off, sizeof(h));
		if (h.next && h.next <= off)
			return -EINVAL;
		end = h.next ? h.next : len;
		if (end > len)
			return -EINVAL;
		r = fn(h.id, h.version, (const char *)buf + off, end - off, ctx);
		if (r)
			return r;
		off = h.next;
	}
	return 0;
}

/* ---- containers ---------------------------------------------------------------------------- */

static bool path_exists(const struct brk_sys *sys, const char *p)
{
	char path[512];
	struct stat st;

	if (brk_sys_path(sys, path, sizeof(path), "%s", p) < 0)
		return false;
	return stat(path, &st) == 0;
}

static void probe_iommufd(struct brk_container *c)
{
	struct brk_container_info *i = &c->info;
	const char *why;

	i->iommufd_present = path_exists(c->sys, "/dev/iommu");
	i->vfio_cdev_present = path_exists(c->sys, "/dev/vfio/devices");
	if (i->iommufd_present && i->vfio_cdev_present)
		why = "iommufd present but this broker drives the VFIO container only";
	else if (i->iommufd_present)
		why = "iommufd not available (/dev/iommu present, but no VFIO device cdev in "
		      "/dev/vfio/devices)";
	else if (i->vfio_cdev_present)
		why = "iommufd not available (VFIO device cdev present, but no /dev/iommu)";
	else
		why = "iommufd not available (no /dev/iommu, no /dev/vfio/devices)";
	snprintf(c->note, sizeof(c->note), "%s, using the VFIO container", why);
}

int brk_container_new(const struct brk_sys *sys, struct vb_err *err, struct brk_container **ret)
{
	_cleanup_close_ int fd = -1;
	struct brk_container *c;
	char path[512];
	int r;

	if (!sys)
		sys = &brk_sys_real;
	r = brk_sys_path(sys, path, sizeof(path), "/dev/vfio/vfio");
	if (r < 0)
		return vb_errf(err, r, "device root path too long");
	fd = sys->open(sys->ctx, path, O_RDWR);
	if (fd < 0)
		return vb_errf(err, fd, "cannot open %s: %s%s", path, strerror(-fd),
			       fd == -ENOENT ? " (is the vfio module loaded?)" : "");
	r = sys->ioctl(sys->ctx, fd, VFIO_GET_API_VERSION, NULL);
	if (r != VFIO_API_VERSION) {
		if (r < 0)
			return vb_errf(err, r, "VFIO_GET_API_VERSION failed: %s", strerror(-r));
		return vb_errf(err, -EPROTO, "VFIO API version %d, this broker speaks %d", r,
			       VFIO_API_VERSION);
	}
	if (sys->ioctl(sys->ctx, fd, VFIO_CHECK_EXTENSION, (void *)(long)VFIO_TYPE1v2_IOMMU) <= 0 &&
	    sys->ioctl(sys->ctx, fd, VFIO_CHECK_EXTENSION, (void *)(long)VFIO_TYPE1_IOMMU) <= 0)
		return vb_errf(
		    err, -ENODEV,
		    "the kernel offers no VFIO type1 IOMMU (is vfio_iommu_type1 loaded?)");
	c = calloc(1, sizeof(*c));
	if (!c)
		return vb_errf(err, -ENOMEM, "out of memory");
	c->refs = 1;
	c->sys = sys;
	c->fd = TAKE_FD(fd);
	probe_iommufd(c);
	*ret = c;
	return 0;
}

static int read_iommu_info(struct brk_container *c, struct vb_err *err);

/* Whether `fd` is the node /dev/vfio/<name> under the sys root. */
static bool fd_is_node(const struct brk_sys *sys, int fd, const char *name)
{
	char path[512];

	return sys->fd_is && brk_sys_path(sys, path, sizeof(path), "/dev/vfio/%s", name) == 0 &&
	       sys->fd_is(sys->ctx, fd, path) == 1;
}

int brk_container_adopt(const struct brk_sys *sys, int fd, bool attached, struct vb_err *err,
			struct brk_container **ret)
{
	_cleanup_free_ struct brk_container *c = NULL;
	int r;

	if (!sys)
		sys = &brk_sys_real;
	if (!fd_is_node(sys, fd, "vfio"))
		return vb_errf(err, -EBADF, "not the VFIO container node /dev/vfio/vfio");
	r = sys->ioctl(sys->ctx, fd, VFIO_GET_API_VERSION, NULL);
	if (r != VFIO_API_VERSION)
		return vb_errf(err, r < 0 ? r : -EPROTO, "VFIO_GET_API_VERSION: %d", r);
	c = calloc(1, sizeof(*c));
	if (!c)
		return vb_errf(err, -ENOMEM, "out of memory");
	c->refs = 1;
	c->sys = sys;
	c->fd = fd;
	probe_iommufd(c);
	if (attached) {
		/* The IOMMU was set when its first group came; select_iommu() prefers v2. */
		c->info.type = sys->ioctl(sys->ctx, fd, VFIO_CHECK_EXTENSION,
					  (void *)(long)VFIO_TYPE1v2_IOMMU) > 0
				   ? BRK_IOMMU_TYPE1V2
				   : BRK_IOMMU_TYPE1;
		r = read_iommu_info(c, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(c);
	return 0;
}

struct brk_container *brk_container_ref(struct brk_container *c)
{
	c->refs++;
	return c;
}

void brk_container_unref(struct brk_container *c)
{
	if (!c || --c->refs > 0)
		return;
	close(c->fd);
	free(c);
}

int brk_container_fd(const struct brk_container *c)
{
	return c->fd;
}

const struct brk_container_info *brk_container_info(const struct brk_container *c)
{
	return &c->info;
}

int brk_container_dma_cfg(const struct brk_container *c, struct brk_dma_cfg *cfg)
{
	_Static_assert(BRK_DMA_MAX_RANGES >= BRK_MAX_IOVA_RANGES, "range tables disagree");
	uint32_t i;

	if (c->info.type == BRK_IOMMU_UNSET)
		return -ENODEV;
	cfg->container_fd = c->fd;
	cfg->pgsize = c->info.min_pgsize;
	cfg->n_ranges = c->info.n_iova_ranges;
	for (i = 0; i < c->info.n_iova_ranges; i++) {
		cfg->ranges[i].start = c->info.iova_ranges[i].start;
		cfg->ranges[i].end = c->info.iova_ranges[i].end;
	}
	return 0;
}

const char *brk_container_backend_name(const struct brk_container *c)
{
	switch (c->info.type) {
	case BRK_IOMMU_TYPE1V2:
		return "vfio-type1v2";
	case BRK_IOMMU_TYPE1:
		return "vfio-type1";
	default:
		return "none";
	}
}

const char *brk_container_backend_note(const struct brk_container *c)
{
	return c->note;
}

static int iommu_cap(uint16_t id, uint16_t version, const void *cap, size_t avail, void *ctx)
{
	struct brk_container_info *i = ctx;
	struct vfio_iommu_type1_info_dma_avail a;
	struct vfio_iommu_type1_info_cap_iova_range rg;
	struct vfio_iova_range one[BRK_MAX_IOVA_RANGES];
	uint32_t k;

	if (id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && avail >= sizeof(a)) {
		memcpy(&a, cap, sizeof(a));
		i->has_dma_avail = true;
		i->dma_avail = a.avail;
	}
	if (id != VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE || avail < sizeof(rg))
		return 0;
	memcpy(&rg, cap, sizeof(rg));
	if (rg.nr_iovas > BRK_MAX_IOVA_RANGES ||
	    (avail - sizeof(rg)) / sizeof(one[0]) < rg.nr_iovas)
		return 0;
	memcpy(one, (const char *)cap + sizeof(rg), rg.nr_iovas * sizeof(one[0]));
	for (k = 0; k < rg.nr_iovas; k++) {
		if (one[k].end < one[k].start)
			return 0;
	}
	for (k = 0; k < rg.nr_iovas; k++) {
		i->iova_ranges[k].start = one[k].start;
		i->iova_ranges[k].end = one[k].end;
	}
	i->n_iova_ranges = rg.nr_iovas;
	return 0;
}

static int read_iommu_info(struct brk_container *c, struct vb_err *err)
{
	struct vfio_iommu_type1_info tmpl = {.argsz = sizeof(tmpl)};
	const struct vfio_iommu_type1_info *info;
	_cleanup_free_ void *buf = NULL;
	size_t len;
	int r;

	r = brk_vfio__query_info(c->sys, c->fd, VFIO_IOMMU_GET_INFO, &tmpl, sizeof(tmpl), &buf,
				 &len);
	if (r < 0)
		return vb_errf(err, r, "VFIO_IOMMU_GET_INFO failed: %s", strerror(-r));
	info = buf;
	if (!(info->flags & VFIO_IOMMU_INFO_PGSIZES) || info->iova_pgsizes == 0)
		return vb_errf(err, -EIO, "the IOMMU reported no page sizes");
	c->info.iova_pgsizes = info->iova_pgsizes;
	c->info.min_pgsize = info->iova_pgsizes & -info->iova_pgsizes;
	c->info.has_dma_avail = false;
	c->info.dma_avail = 0;
	c->info.n_iova_ranges = 0;
	r = 0;
	if ((info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset)
		r = brk_vfio__caps_walk(buf, len, sizeof(*info), info->cap_offset, iommu_cap,
					&c->info);
	if (r < 0)
		return vb_errf(err, -EIO, "malformed VFIO_IOMMU_GET_INFO capability chain");
	return 0;
}

int brk_container_dma_avail(struct brk_container *c, uint32_t *ret_avail)
{
	int r;

	if (c->info.type == BRK_IOMMU_UNSET)
		return -ENODEV;
	r = read_iommu_info(c, NULL);
	if (r < 0)
		return r;
	if (!c->info.has_dma_avail)
		return -EOPNOTSUPP;
	*ret_avail = c->info.dma_avail;
	return 0;
}

/* Called with the group just attached as the container's only group. */
static int select_iommu(struct brk_container *c, struct vb_err *err)
{
	static const struct {
		unsigned long vfio;
		enum brk_iommu_type type;
	} order[] = {{VFIO_TYPE1v2_IOMMU, BRK_IOMMU_TYPE1V2}, {VFIO_TYPE1_IOMMU, BRK_IOMMU_TYPE1}};
	int r = -ENODEV;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(order); i++) {
		if (c->sys->ioctl(c->sys->ctx, c->fd, VFIO_CHECK_EXTENSION,
				  (void *)order[i].vfio) <= 0)
			continue;
		r = c->sys->ioctl(c->sys->ctx, c->fd, VFIO_SET_IOMMU, (void *)order[i].vfio);
		if (r >= 0) {
			c->info.type = order[i].type;
			return read_iommu_info(c, err);
		}
	}
	return vb_errf(err, r, "cannot set a type1 IOMMU on the container: %s", strerror(-r));
}

/* ---- groups -------------------------------------------------------------------------------- */

struct unbound {
	char list[160];
	size_t len;
	unsigned more;
};

static int collect_unbound(const char *bdf, const char *driver, void *ctx)
{
	struct unbound *u = ctx;
	int n;

	if (strcmp(driver, "vfio-pci") == 0)
		return 0;
	n = snprintf(u->list + u->len, sizeof(u->list) - u->len, "%s%s (%s)", u->len ? ", " : "",
		     bdf, driver[0] ? driver : "no driver");
	if (n < 0 || (size_t)n >= sizeof(u->list) - u->len) {
		u->list[u->len] = '\0';
		u->more++;
	} else {
		u->len += (size_t)n;
	}
	return 0;
}

static int not_viable(const struct brk_sys *sys, uint32_t nr, struct vb_err *err)
{
	struct unbound u = {.len = 0};

	u.list[0] = '\0';
	brk_bind_group_devices(sys, nr, collect_unbound, &u);
	if (u.len == 0 && u.more == 0)
		return vb_errf(err, -EBUSY,
			       "IOMMU group %u is not viable: bind every device of IOMMU group %u "
			       "to vfio-pci",
			       nr, nr);
	return vb_errf(err, -EBUSY,
		       "IOMMU group %u is not viable: bind every device of IOMMU group %u to "
		       "vfio-pci; not bound: %s%s",
		       nr, nr, u.list, u.more ? " and more" : "");
}

/* A group this process holds already: the kernel would say EBUSY; say whose it is instead. */
static int group_held(const struct brk_sys *sys, uint32_t nr, struct vb_err *err)
{
	const struct brk_group *g;

	for (g = open_groups; g; g = g->next) {
		if (g->sys != sys || g->nr != nr)
			continue;
		if (!g->owner[0])
			return vb_errf(err, -EBUSY, "IOMMU group %u is already open in this broker",
				       nr);
		return vb_errf(err, -EBUSY,
			       "IOMMU group %u belongs to %s: an IOMMU group belongs to one VM "
			       "(the IOMMU isolates groups, not devices), so add this device to "
			       "that VM, or remove the group's devices from it first",
			       nr, g->owner);
	}
	return 0;
}

int brk_group_open(const struct brk_sys *sys, uint32_t nr, struct vb_err *err,
		   struct brk_group **ret)
{
	struct vfio_group_status st = {.argsz = sizeof(st)};
	_cleanup_close_ int fd = -1;
	struct brk_group *g;
	char path[512];
	int r;

	if (!sys)
		sys = &brk_sys_real;
	r = group_held(sys, nr, err);
	if (r < 0)
		return r;
	r = brk_sys_path(sys, path, sizeof(path), "/dev/vfio/%u", nr);
	if (r < 0)
		return vb_errf(err, r, "device root path too long");
	fd = sys->open(sys->ctx, path, O_RDWR);
	if (fd == -ENOENT)
		return vb_errf(err, fd, "no %s: bind the devices of IOMMU group %u to vfio-pci",
			       path, nr);
	if (fd == -EBUSY && held_find(sys, nr))
		return vb_errf(err, fd,
			       "IOMMU group %u is still open: %s; it is free once that process "
			       "closes the file or exits",
			       nr, held_find(sys, nr)->holder);
	if (fd == -EBUSY)
		return vb_errf(err, fd,
			       "IOMMU group %u is open by another process (not this broker): a "
			       "group can be used by one user at a time",
			       nr);
	if (fd < 0)
		return vb_errf(err, fd, "cannot open %s: %s", path, strerror(-fd));
	r = sys->ioctl(sys->ctx, fd, VFIO_GROUP_GET_STATUS, &st);
	if (r < 0)
		return vb_errf(err, r, "VFIO_GROUP_GET_STATUS on group %u: %s", nr, strerror(-r));
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return not_viable(sys, nr, err);
	g = calloc(1, sizeof(*g));
	if (!g)
		return vb_errf(err, -ENOMEM, "out of memory");
	g->refs = 1;
	g->sys = sys;
	g->fd = TAKE_FD(fd);
	g->nr = nr;
	g->next = open_groups;
	open_groups = g;
	held_forget(sys, nr);
	*ret = g;
	return 0;
}

int brk_group_adopt(const struct brk_sys *sys, uint32_t nr, int fd, struct brk_container *c,
		    struct vb_err *err, struct brk_group **ret)
{
	struct vfio_group_status st = {.argsz = sizeof(st)};
	struct brk_group *g;
	char name[16];
	int r;

	if (!sys)
		sys = &brk_sys_real;
	snprintf(name, sizeof(name), "%u", nr);
	if (!fd_is_node(sys, fd, name))
		return vb_errf(err, -EBADF, "not the node of IOMMU group %u", nr);
	r = sys->ioctl(sys->ctx, fd, VFIO_GROUP_GET_STATUS, &st);
	if (r < 0)
		return vb_errf(err, r, "VFIO_GROUP_GET_STATUS on group %u: %s", nr, strerror(-r));
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return vb_errf(err, -EBUSY, "IOMMU group %u is not viable any more", nr);
	if (!(st.flags & VFIO_GROUP_FLAGS_CONTAINER_SET))
		return vb_errf(err, -ENOTCONN, "IOMMU group %u is attached to no container", nr);
	g = calloc(1, sizeof(*g));
	if (!g)
		return vb_errf(err, -ENOMEM, "out of memory");
	g->refs = 1;
	g->sys = sys;
	g->fd = fd;
	g->nr = nr;
	g->container = brk_container_ref(c);
	c->info.groups++;
	g->next = open_groups;
	open_groups = g;
	held_forget(sys, nr);
	*ret = g;
	return 0;
}

int brk_group_check_released(const struct brk_sys *sys, uint32_t nr, const char *holder)
{
	char path[512];
	int fd, r;

	if (!sys)
		sys = &brk_sys_real;
	r = brk_sys_path(sys, path, sizeof(path), "/dev/vfio/%u", nr);
	if (r < 0)
		return r;
	/* The group node opens for one file at a time: if it opens, nobody holds it. */
	fd = sys->open(sys->ctx, path, O_RDWR);
	if (fd >= 0) {
		close(fd);
		held_forget(sys, nr);
		return 0;
	}
	if (fd != -EBUSY)
		return fd;
	if (holder) {
		struct held *h = held_find(sys, nr);

		if (!h && n_held < HELD_MAX)
			h = &held[n_held++];
		if (!h)
			h = &held[0]; /* full: the oldest note makes room */
		h->sys = sys;
		h->nr = nr;
		snprintf(h->holder, sizeof(h->holder), "%s", holder);
	}
	return -EBUSY;
}

void brk_group_set_owner(struct brk_group *g, const char *owner)
{
	snprintf(g->owner, sizeof(g->owner), "%s", owner ? owner : "");
}

const char *brk_group_owner(const struct brk_group *g)
{
	return g->owner;
}

struct brk_group *brk_group_ref(struct brk_group *g)
{
	g->refs++;
	return g;
}

void brk_group_unref(struct brk_group *g)
{
	struct brk_group **pp;

	if (!g || --g->refs > 0)
		return;
	brk_group_detach(g);
	for (pp = &open_groups; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	close(g->fd);
	free(g);
}

uint32_t brk_group_nr(const struct brk_group *g)
{
	return g->nr;
}

int brk_group_fd(const struct brk_group *g)
{
	return g->fd;
}

struct brk_container *brk_group_container(const struct brk_group *g)
{
	return g->container;
}

int brk_group_attach(struct brk_group *g, struct brk_container *c, struct vb_err *err)
{
	int r, cfd = c->fd;

	if (g->container == c)
		return 0;
	if (g->container)
		return vb_errf(err, -EBUSY, "IOMMU group %u is attached to another container",
			       g->nr);
	r = g->sys->ioctl(g->sys->ctx, g->fd, VFIO_GROUP_SET_CONTAINER, &cfd);
	if (r < 0)
		return vb_errf(err, r,
			       "VFIO_GROUP_SET_CONTAINER for group %u: %s (a group that cannot "
			       "share this VM's IOMMU domain needs its own VM)",
			       g->nr, strerror(-r));
	if (c->info.groups == 0) {
		r = select_iommu(c, err);
		if (r < 0) {
			g->sys->ioctl(g->sys->ctx, g->fd, VFIO_GROUP_UNSET_CONTAINER, NULL);
			c->info.type = BRK_IOMMU_UNSET;
			return r;
		}
	}
	c->info.groups++;
	g->container = brk_container_ref(c);
	return 0;
}

int brk_group_detach(struct brk_group *g)
{
	struct brk_container *c = g->container;

	if (!c)
		return 0;
	if (g->devices)
		return -EBUSY;
	/* EBUSY: a device of the group is still open in another process (an mmap grant), so the
	 * kernel keeps the group, and the IOMMU with every mapping, attached to the container. Any
	 * other failure means it was not attached: nothing left to undo then. */
	if (g->sys->ioctl(g->sys->ctx, g->fd, VFIO_GROUP_UNSET_CONTAINER, NULL) == -EBUSY)
		c->info.held_groups++;
	g->container = NULL;
	if (--c->info.groups == 0) {
		c->info.type = BRK_IOMMU_UNSET;
		c->info.iova_pgsizes = 0;
		c->info.min_pgsize = 0;
		c->info.has_dma_avail = false;
		c->info.dma_avail = 0;
		c->info.n_iova_ranges = 0;
	}
	brk_container_unref(c);
	return 0;
}

/* For vfio_device.c: the group fd, and the count of open devices that pins the attach. */
int brk_vfio__group_fd(const struct brk_group *g)
{
	return g->fd;
}

const struct brk_sys *brk_vfio__group_sys(const struct brk_group *g)
{
	return g->sys;
}

void brk_vfio__group_device_count(struct brk_group *g, int delta)
{
	g->devices = (uint32_t)((int)g->devices + delta);
}
