/*
 * cfg: the config-space access engine and the device object's life cycle.
 *
 * Config space is virtualized by data, as the kernel's vfio_pci_config.c does it: every byte has
 * a `virt` mask (bits answered from the shadow copy `vconfig`), a `wmask` (bits the VMM may
 * change: in the shadow when virtual, on the device otherwise), an `rw1c` mask (bits a
 * read-modify-write must not write back as 1) and a map entry naming the capability it belongs
 * to. An access is checked first, then split into naturally aligned 1/2/4-byte pieces that never
 * cross a capability; each capability kind may react to a write afterwards.
 *
 * Trusts: the devinfo given at creation (it comes from the broker or a parsed image). Distrusts:
 * every offset, length and value of an access, and the contents of the device's config space.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "base.h"
#include "wkr_internal.h"

static ssize_t fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	ssize_t r = pread((int)(intptr_t)ctx, buf, len, (off_t)off);

	return r < 0 ? -errno : r;
}

static ssize_t fd_pwrite(void *ctx, const void *buf, size_t len, uint64_t off)
{
	ssize_t r = pwrite((int)(intptr_t)ctx, buf, len, (off_t)off);

	return r < 0 ? -errno : r;
}

void wkr_io_from_fd(struct wkr_io *io, int fd)
{
	io->pread = fd_pread;
	io->pwrite = fd_pwrite;
	io->ctx = (void *)(intptr_t)fd;
}

int wkr__cfg_phys_read(struct wkr_dev *d, uint32_t off, uint8_t *buf, size_t len)
{
	ssize_t r = d->io.pread(d->io.ctx, buf, len, d->cfg_base + off);

	if (r < 0)
		return (int)r;
	return (size_t)r == len ? 0 : -EIO;
}

static int cfg_phys_write(struct wkr_dev *d, uint32_t off, const uint8_t *buf, size_t len)
{
	ssize_t r = d->io.pwrite(d->io.ctx, buf, len, d->cfg_base + off);

	if (r < 0)
		return (int)r;
	return (size_t)r == len ? 0 : -EIO;
}

void wkr__perm_apply(struct wkr_dev *d, const struct wkr_cap *cap, const struct wkr_perm *p,
		     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (unsigned b = 0; b < p[i].len; b++) {
			unsigned o = cap->off + p[i].off + b;
			unsigned sh = 8 * (b & 3);

			if (p[i].off + b >= cap->len || o >= d->cfg_size)
				break;
			d->virt[o] = (uint8_t)(p[i].virt >> sh);
			d->wmask[o] = (uint8_t)(p[i].write >> sh);
			d->rw1c[o] = (uint8_t)(p[i].rw1c >> sh);
		}
	}
}

#define ALL 0xffffffffu
/* The type 0 header. Identification, BARs, the capability pointer and interrupt pin are answered
 * from the shadow; Command and Status go to the device (Status' capability-list bit is virtual
 * because hiding capabilities may empty the list); BIST is never started by a guest. */
static const struct wkr_perm hdr_perms[] = {
    {PCI_VENDOR_ID, 4, ALL, 0, 0},
    {PCI_COMMAND, 2, 0xf800, /* reserved bits read as zero */
     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INVALIDATE |
	 PCI_COMMAND_PARITY | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE,
     0},
    {PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0xf900, 0xf900},
    {PCI_CLASS_REVISION, 4, ALL, 0, 0},
    {PCI_CACHE_LINE_SIZE, 2, ALL, ALL, 0},
    {PCI_HEADER_TYPE, 2, ALL, 0, 0},
    {PCI_BASE_ADDRESS_0, 24, ALL, ALL, 0},
    {PCI_CARDBUS_CIS, 8, ALL, 0, 0},
    {PCI_ROM_ADDRESS, 4, ALL, ALL, 0},
    {PCI_CAPABILITY_LIST, 8, ALL, 0, 0},
    {PCI_INTERRUPT_LINE, 1, ALL, ALL, 0},
    {PCI_INTERRUPT_PIN, 3, ALL, 0, 0},
};

static const struct wkr_capdesc hdr_desc = {
    .name = "header",
    .len = WKR_CFG_HDR,
    .perms = hdr_perms,
    .nperms = ARRAY_SIZE(hdr_perms),
    .written = wkr__header_written,
};

/* A build that fails part-way leaves the bytes no capability claimed read-only, not raw. */
static void cfg_gaps_closed(struct wkr_dev *d)
{
	for (uint32_t o = WKR_CFG_HDR; o < d->cfg_size; o++)
		if (d->map[o] == WKR_MAP_NONE)
			d->wmask[o] = 0;
}

int wkr__cfg_build(struct wkr_dev *d)
{
	int r;
	uint8_t cmd[2];

	/* Until the build completes, config space is all virtual and maps to no capability: a
	 * rebuild that fails (after a reset) must not leave the old capabilities' handlers and
	 * permissions on a device whose MSI and MSI-X state is already gone. */
	memset(d->virt, 0xff, sizeof(d->virt));
	memset(d->wmask, 0, sizeof(d->wmask));
	memset(d->rw1c, 0, sizeof(d->rw1c));
	memset(d->map, WKR_MAP_NONE, sizeof(d->map));
	d->ncaps = 0;
	r = wkr__cfg_phys_read(d, 0, d->vconfig, d->cfg_size);
	if (r < 0)
		return r == -EIO ? r : -EIO;
	if ((d->vconfig[PCI_HEADER_TYPE] & 0x7f) != PCI_HEADER_TYPE_NORMAL)
		return -ENOTSUP;
	memset(d->virt, 0, sizeof(d->virt));
	memset(d->wmask, 0, sizeof(d->wmask));
	memset(d->rw1c, 0, sizeof(d->rw1c));
	memset(d->map, WKR_MAP_NONE, sizeof(d->map));
	d->caps[0] = (struct wkr_cap){.desc = &hdr_desc, .id = 0, .off = 0, .len = WKR_CFG_HDR};
	d->ncaps = 1;
	memset(d->map, 0, WKR_CFG_HDR);
	wkr__perm_apply(d, &d->caps[0], hdr_desc.perms, hdr_desc.nperms);

	/* Bytes outside every capability are raw, as the kernel leaves them: some devices keep
	 * registers in the gaps of config space (be2net does), and a hidden capability covers its
	 * bytes up to the next one, so nothing hidden is reachable through a gap. Every capability
	 * installed clears the mask over its own bytes (cap_install), so what stays 0xff once the
	 * list is walked is exactly the gaps: one memset rather than a test per byte, which a
	 * 4 KiB space pays on every reset. */
	memset(d->wmask + WKR_CFG_HDR, 0xff, d->cfg_size - WKR_CFG_HDR);
	r = wkr__caps_init(d);
	if (r < 0) {
		cfg_gaps_closed(d);
		return r;
	}

	/* A guest must not see (and probe) the other functions of a multi-function device. */
	d->vconfig[PCI_HEADER_TYPE] &= 0x7f;
	d->vconfig[PCI_BIST] = 0;
	memset(&d->vconfig[PCI_COMMAND], 0, 4);
	if (d->vconfig[PCI_CAPABILITY_LIST])
		d->vconfig[PCI_STATUS] = PCI_STATUS_CAP_LIST;
	memset(&d->vconfig[PCI_CAPABILITY_LIST + 1], 0, 7);
	if (d->info.irqs[VFIO_PCI_INTX_IRQ_INDEX].count == 0)
		d->vconfig[PCI_INTERRUPT_PIN] = 0;
	r = wkr__bars_init(d);
	if (r < 0)
		return r;
	r = wkr__cfg_phys_read(d, PCI_COMMAND, cmd, 2);
	if (r < 0)
		return r;
	d->command = vb_le16_get(cmd);
	return 0;
}

int wkr_dev_new(const struct wkr_devinfo *info, const struct wkr_io *io,
		const struct wkr_callbacks *cb, struct wkr_dev **ret)
{
	const struct wkr_region *cfg = &info->regions[VFIO_PCI_CONFIG_REGION_INDEX];
	struct wkr_dev *d;
	long ps;
	int r;

	if (!io || !io->pread || !io->pwrite || !cb || !ret)
		return -EINVAL;
	if (cfg->size < 256 || cfg->size > WKR_CFG_SIZE_MAX)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->info = *info;
	d->io = *io;
	d->cb = *cb;
	d->cfg_size = (uint32_t)cfg->size;
	d->cfg_base = cfg->offset;
	ps = sysconf(_SC_PAGESIZE);
	d->pagesize = ps > 0 ? (uint64_t)ps : 4096;
	d->epfd = -1;
	r = wkr__irq_init(d);
	if (r == 0)
		r = wkr__cfg_build(d);
	if (r < 0) {
		wkr_dev_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

void wkr_dev_free(struct wkr_dev *d)
{
	if (!d)
		return;
	wkr__irq_free(d);
	free(d->msix.table);
	free(d);
}

const struct wkr_devinfo *wkr_dev_info(const struct wkr_dev *d)
{
	return &d->info;
}

uint16_t wkr_cfg_command(const struct wkr_dev *d)
{
	return d->command;
}

bool wkr_dev_take_flr(struct wkr_dev *d)
{
	bool r = d->flr_requested;

	d->flr_requested = false;
	return r;
}

int wkr_dev_reset(struct wkr_dev *d)
{
	uint8_t hdr[WKR_CFG_HDR];
	int r;
	int r2;

	memcpy(hdr, d->vconfig, sizeof(hdr));
	r = wkr__irq_quiesce(d, false);
	free(d->msix.table);
	d->msix.table = NULL;
	memset(&d->msi, 0, sizeof(d->msi));
	memset(&d->msix, 0, sizeof(d->msix));
	memset(d->bars, 0, sizeof(d->bars));
	d->flr_requested = false; /* this is the reset */
	r2 = wkr__cfg_build(d);
	if (r2 < 0)
		return r2;
	wkr__header_keep(d, hdr);
	r2 = wkr__irq_after_reset(d);
	return r < 0 ? r : r2;
}

static int cfg_check(const struct wkr_dev *d, uint32_t off, size_t len)
{
	if (len == 0 || len > WKR_ACCESS_MAX || off >= d->cfg_size || len > d->cfg_size - off)
		return -EINVAL;
	return 0;
}

/* The largest aligned piece at `off` that stays inside one capability. */
static size_t cfg_piece(const struct wkr_dev *d, uint32_t off, size_t rem)
{
	static const size_t sizes[] = {4, 2, 1};

	for (size_t i = 0; i < 3; i++) {
		size_t n = sizes[i];
		bool same = true;

		if (off % n || n > rem)
			continue;
		for (size_t b = 1; b < n; b++)
			same &= d->map[off + b] == d->map[off];
		if (same)
			return n;
	}
	return 1;
}

static bool cfg_all_virt(const struct wkr_dev *d, uint32_t off, size_t n)
{
	for (size_t b = 0; b < n; b++)
		if (d->virt[off + b] != 0xff)
			return false;
	return true;
}

int wkr_cfg_read(struct wkr_dev *d, uint32_t off, void *buf, size_t len)
{
	int r = cfg_check(d, off, len);
	uint8_t *out;

	if (r < 0)
		return r;
	out = buf;
	while (len) {
		size_t n = cfg_piece(d, off, len);
		uint8_t phys[4] = {0};

		if (!cfg_all_virt(d, off, n)) {
			r = wkr__cfg_phys_read(d, off, phys, n);
			if (r < 0)
				return -EIO;
		}
		for (size_t b = 0; b < n; b++) {
			uint8_t v = d->virt[off + b];

			out[b] = (uint8_t)((phys[b] & ~v) | (d->vconfig[off + b] & v));
		}
		off += (uint32_t)n;
		out += n;
		len -= n;
	}
	return 0;
}

static int cfg_written(struct wkr_dev *d, uint32_t off, size_t n)
{
	uint8_t m = d->map[off];

	if (m == WKR_MAP_NONE || !d->caps[m].desc->written)
		return 0;
	return d->caps[m].desc->written(d, off, n);
}

static int cfg_write_piece(struct wkr_dev *d, uint32_t off, const uint8_t *val, size_t n)
{
	uint8_t wp[4] = {0};
	bool phys = false;

	for (size_t b = 0; b < n; b++) {
		uint8_t v = d->virt[off + b], w = d->wmask[off + b];
		uint8_t wv = v & w;

		d->vconfig[off + b] = (uint8_t)((d->vconfig[off + b] & ~wv) | (val[b] & wv));
		wp[b] = (uint8_t)(w & ~v);
		phys |= wp[b] != 0;
	}
	if (phys) {
		uint8_t cur[4];
		int r = wkr__cfg_phys_read(d, off, cur, n);

		if (r < 0)
			return -EIO;
		for (size_t b = 0; b < n; b++) {
			uint8_t keep = (uint8_t) ~(wp[b] | d->rw1c[off + b]);

			cur[b] = (uint8_t)((cur[b] & keep) | (val[b] & wp[b]));
		}
		r = cfg_phys_write(d, off, cur, n);
		if (r < 0)
			return -EIO;
	}
	return cfg_written(d, off, n);
}

int wkr_cfg_write(struct wkr_dev *d, uint32_t off, const void *buf, size_t len)
{
	int r = cfg_check(d, off, len), first = 0;
	const uint8_t *in;

	if (r < 0)
		return r;
	in = buf;
	/* A failing piece does not stop the rest: the guest's write is not transactional on real
	 * hardware either. The first error is reported. */
	while (len) {
		size_t n = cfg_piece(d, off, len);

		r = cfg_write_piece(d, off, in, n);
		if (r < 0 && first == 0)
			first = r;
		off += (uint32_t)n;
		in += n;
		len -= n;
	}
	return first;
}
