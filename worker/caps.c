/*
 * caps: walks the standard and extended capability lists of the device's config space, decides
 * per capability what the guest sees (passed through read-only, written through in part,
 * virtual, or hidden), fills the byte map and permission tables, and rewrites the next pointers
 * of the shadow so hidden capabilities drop out of both lists.
 *
 * Trusts nothing in config space: every pointer is range checked, both walks stop on a loop or
 * after as many steps as the space can hold, and capability lengths are clipped so that no two
 * capabilities overlap and none runs past its space.
 *
 * Policy: a capability is visible only when this file knows its layout and what writing it
 * means. SR-IOV, ARI and Resizable BAR (they would let a guest reshape the host's PCI topology
 * and address map), ATS/PRI/PASID (IOMMU features the host owns), ACS, DPC, multicast, VC and
 * every unknown capability are hidden.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "wkr_internal.h"

#define ALL 0xffffffffu

/* Next pointer and id are virtual in every capability. */
static const struct wkr_perm std_head[] = {{0, 2, ALL, 0, 0}};
static const struct wkr_perm ext_head[] = {{0, 4, ALL, 0, 0}};

/* PMCSR: power state and PME enable written through (the kernel virtualizes power states
 * again), PME status is RW1C. */
static const struct wkr_perm pm_perms[] = {
    {PCI_PM_CTRL, 2, 0, PCI_PM_CTRL_STATE_MASK | PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS,
     PCI_PM_CTRL_PME_STATUS},
};

/* Device Control written through except Initiate FLR, which reads back as zero: a reset is a
 * RESET request to the broker, never a config write. Link Control without Link Disable and
 * Retrain Link. Status error bits are RW1C. */
static const struct wkr_perm pcie_perms[] = {
    {PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR, 0x7fff, 0},
    {PCI_EXP_DEVSTA, 2, 0, 0x000f, 0x000f},
    {PCI_EXP_LNKCTL, 2, 0, 0x0fcf, 0},
    {PCI_EXP_LNKSTA, 2, 0, 0xc000, 0xc000},
    {PCI_EXP_DEVCTL2, 2, 0, 0x071f, 0},
};

/* Advanced Features: the FLR bit in AF control is virtual for the same reason. */
static const struct wkr_perm af_perms[] = {{PCI_AF_CTRL, 1, ALL, 0, 0}};

/* AER: status registers RW1C, masks and severity written through. */
static const struct wkr_perm aer_perms[] = {
    {PCI_ERR_UNCOR_STATUS, 4, 0, ALL, ALL},
    {PCI_ERR_UNCOR_MASK, 8, 0, ALL, 0},
    {PCI_ERR_COR_STATUS, 4, 0, ALL, ALL},
    {PCI_ERR_COR_MASK, 4, 0, ALL, 0},
};

static uint16_t msi_len(uint16_t ctrl)
{
	uint16_t len = 10;
	if (ctrl & PCI_MSI_FLAGS_64BIT)
		len += 4;
	if (ctrl & PCI_MSI_FLAGS_MASKBIT)
		len += 10;
	return len;
}

/* Kind and nominal length of a standard capability; 0 length means hidden. */
static void std_kind(const struct wkr_dev *d, uint16_t pos, uint8_t id, uint8_t *kind,
		     uint16_t *len)
{
	const uint8_t *p = d->vconfig + pos;
	*kind = CAPK_RO;
	switch (id) {
	case PCI_CAP_ID_PM:
		*kind = CAPK_PM;
		*len = PCI_PM_SIZEOF;
		return;
	case PCI_CAP_ID_MSI:
		*kind = CAPK_MSI;
		*len = msi_len(pos + 3 < WKR_CFG_LEGACY ? wkr__le16(p + 2) : 0);
		return;
	case PCI_CAP_ID_VNDR:
		*len = pos + 2 < WKR_CFG_LEGACY && p[2] >= 3 ? p[2] : 3;
		return;
	case PCI_CAP_ID_EXP:
		*kind = CAPK_PCIE;
		*len = pos + 3 < WKR_CFG_LEGACY && (p[2] & PCI_EXP_FLAGS_VERS) == 1 ? 0x14 : 0x3c;
		return;
	case PCI_CAP_ID_MSIX:
		*kind = CAPK_MSIX;
		*len = PCI_CAP_MSIX_SIZEOF;
		return;
	case PCI_CAP_ID_AF:
		*kind = CAPK_AF;
		*len = PCI_CAP_AF_SIZEOF;
		return;
	case PCI_CAP_ID_SSVID:
		*len = 8;
		return;
	default:
		*kind = CAPK_HIDDEN;
		*len = 2;
		return;
	}
}

static void ext_kind(const struct wkr_dev *d, uint16_t pos, uint16_t id, uint8_t *kind,
		     uint16_t *len)
{
	*kind = CAPK_RO;
	switch (id) {
	case PCI_EXT_CAP_ID_ERR:
		*kind = CAPK_AER;
		*len = 0x38;
		return;
	case PCI_EXT_CAP_ID_DSN:
		*len = 12;
		return;
	case PCI_EXT_CAP_ID_PWR:
	case PCI_EXT_CAP_ID_L1SS:
		*len = 16;
		return;
	case PCI_EXT_CAP_ID_LTR:
		*len = 8;
		return;
	case PCI_EXT_CAP_ID_SECPCI:
		*len = 0x0c + 4 * 32;
		return;
	case PCI_EXT_CAP_ID_VNDR: {
		uint16_t l =
		    pos + 8u <= d->cfg_size ? (uint16_t)(wkr__le32(d->vconfig + pos + 4) >> 20) : 8;
		*len = l < 8 ? 8 : l;
		return;
	}
	default:
		/* Hidden: zero everything up to the next capability. */
		*kind = CAPK_HIDDEN;
		*len = WKR_CFG_SIZE_MAX;
		return;
	}
}

static int cap_cmp(const void *a, const void *b)
{
	const struct wkr_cap *x = a, *y = b;
	return (int)x->off - (int)y->off;
}

/* Clips lengths so capabilities neither overlap nor leave their space. */
static void caps_clip(struct wkr_cap *c, unsigned n, uint16_t end)
{
	struct wkr_cap *s = malloc(n * sizeof(*s));
	if (!s) {
		/* Without a sorted copy fall back to the space end only. */
		for (unsigned i = 0; i < n; i++)
			if (c[i].off + c[i].len > end)
				c[i].len = (uint16_t)(end - c[i].off);
		return;
	}
	memcpy(s, c, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cap_cmp);
	for (unsigned i = 0; i < n; i++) {
		uint16_t lim = i + 1 < n ? s[i + 1].off : end;
		for (unsigned j = 0; j < n; j++)
			if (c[j].off == s[i].off && c[j].off + c[j].len > lim)
				c[j].len = (uint16_t)(lim - c[j].off);
	}
	free(s);
}

static int cap_install(struct wkr_dev *d, struct wkr_cap *cap)
{
	uint8_t idx = (uint8_t)(cap - d->caps);
	memset(d->map + cap->off, idx, cap->len);
	if (cap->kind == CAPK_HIDDEN) {
		memset(d->vconfig + cap->off, 0, cap->len);
		memset(d->virt + cap->off, 0xff, cap->len);
		return 0;
	}
	if (cap->ext)
		wkr__perm_apply(d, cap, ext_head, 1);
	else
		wkr__perm_apply(d, cap, std_head, 1);
	switch (cap->kind) {
	case CAPK_PM:
		wkr__perm_apply(d, cap, pm_perms, 1);
		return 0;
	case CAPK_PCIE:
		wkr__perm_apply(d, cap, pcie_perms, sizeof(pcie_perms) / sizeof(pcie_perms[0]));
		if (cap->len > PCI_EXP_DEVCTL + 1)
			d->vconfig[cap->off + PCI_EXP_DEVCTL + 1] &= 0x7f;
		return 0;
	case CAPK_AF:
		wkr__perm_apply(d, cap, af_perms, 1);
		if (cap->len > PCI_AF_CTRL)
			d->vconfig[cap->off + PCI_AF_CTRL] = 0;
		return 0;
	case CAPK_AER:
		wkr__perm_apply(d, cap, aer_perms, sizeof(aer_perms) / sizeof(aer_perms[0]));
		return 0;
	case CAPK_MSI:
		return wkr__msi_init(d, cap);
	case CAPK_MSIX:
		return wkr__msix_init(d, cap);
	default:
		return 0;
	}
}

static int caps_std(struct wkr_dev *d)
{
	uint8_t seen[WKR_CFG_LEGACY / 4] = {0};
	unsigned first = d->ncaps;
	uint16_t pos = 0;
	if (d->vconfig[PCI_STATUS] & PCI_STATUS_CAP_LIST)
		pos = d->vconfig[PCI_CAPABILITY_LIST] & 0xfc;
	/* At most (256 - 64) / 4 capabilities fit; `seen` stops loops earlier. */
	while (pos >= WKR_CFG_HDR && !seen[pos / 4] && d->ncaps < WKR_CAPS_MAX) {
		seen[pos / 4] = 1;
		struct wkr_cap *c = &d->caps[d->ncaps++];
		c->id = d->vconfig[pos];
		c->off = pos;
		c->ext = false;
		std_kind(d, pos, (uint8_t)c->id, &c->kind, &c->len);
		pos = d->vconfig[pos + 1] & 0xfc;
	}
	unsigned n = d->ncaps - first;
	caps_clip(d->caps + first, n, WKR_CFG_LEGACY);
	/* Rewrite the chain over the visible capabilities, in the device's order. */
	uint8_t *link = &d->vconfig[PCI_CAPABILITY_LIST];
	*link = 0;
	for (unsigned i = first; i < d->ncaps; i++) {
		struct wkr_cap *c = &d->caps[i];
		int r = cap_install(d, c);
		if (r == -EINVAL) {
			/* A capability whose layout contradicts the regions is hidden. */
			c->kind = CAPK_HIDDEN;
			r = cap_install(d, c);
		}
		if (r < 0)
			return r;
		if (c->kind == CAPK_HIDDEN)
			continue;
		*link = (uint8_t)c->off;
		link = &d->vconfig[c->off + 1];
		*link = 0;
	}
	return 0;
}

static int caps_ext(struct wkr_dev *d)
{
	uint8_t seen[WKR_CFG_SIZE_MAX / 4] = {0};
	unsigned first = d->ncaps;
	uint16_t pos = WKR_CFG_LEGACY;
	if (d->cfg_size <= WKR_CFG_LEGACY)
		return 0;
	uint32_t h = wkr__le32(d->vconfig + pos);
	if (h == 0 || h == 0xffffffffu)
		return 0;
	while (pos >= WKR_CFG_LEGACY && pos + 4u <= d->cfg_size && !seen[pos / 4] &&
	       d->ncaps < WKR_CAPS_MAX) {
		seen[pos / 4] = 1;
		h = wkr__le32(d->vconfig + pos);
		struct wkr_cap *c = &d->caps[d->ncaps++];
		c->id = (uint16_t)(h & 0xffff);
		c->off = pos;
		c->ext = true;
		ext_kind(d, pos, c->id, &c->kind, &c->len);
		pos = (uint16_t)((h >> 20) & 0xffc);
	}
	caps_clip(d->caps + first, d->ncaps - first, (uint16_t)d->cfg_size);
	uint16_t prev = 0;
	for (unsigned i = first; i < d->ncaps; i++) {
		struct wkr_cap *c = &d->caps[i];
		int r = cap_install(d, c);
		if (r < 0)
			return r;
		if (c->kind == CAPK_HIDDEN)
			continue;
		/* Clear our own next pointer, then link the previous visible one (or the header
		 * a hidden first capability left at 0x100) to us. */
		wkr__put32(d->vconfig + c->off, wkr__le32(d->vconfig + c->off) & 0x000fffffu);
		if (prev || c->off != WKR_CFG_LEGACY) {
			uint8_t *ph = d->vconfig + (prev ? prev : WKR_CFG_LEGACY);
			uint32_t ph_v = prev ? wkr__le32(ph) & 0x000fffffu : 0;
			wkr__put32(ph, ph_v | ((uint32_t)c->off << 20));
		}
		prev = c->off;
	}
	/* A hidden capability at 0x100 leaves its header: id 0, version 0, pointing at the first
	 * visible one (or nothing), which is what the kernel's vfio does as well. */
	struct wkr_cap *head = &d->caps[first];
	if (head->kind == CAPK_HIDDEN) {
		head->kind = CAPK_EXT_HEAD;
		memset(d->virt + WKR_CFG_LEGACY, 0xff, 4);
	}
	return 0;
}

int wkr__caps_init(struct wkr_dev *d)
{
	int r = caps_std(d);
	if (r < 0)
		return r;
	return caps_ext(d);
}
