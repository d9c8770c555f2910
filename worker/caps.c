/*
 * caps: the capability descriptor table, and the walks of the standard and extended capability
 * lists that apply it. Each descriptor says what one capability kind looks like (its length, or
 * how to compute it) and what the guest may do with it (a permission table, and init and write
 * hooks for the kinds the worker emulates); the walk fills the byte map and the permission
 * tables and rewrites the next pointers of the shadow so hidden capabilities drop out of both
 * lists. Adding or hiding a capability is one table entry.
 *
 * The permissions follow the kernel's vfio-pci (drivers/vfio/pci/vfio_pci_config.c): what it
 * lets a user write, the worker lets the guest write (the write then goes through the kernel's
 * own rules), what it keeps read-only stays read-only, what it hides is hidden. Where the worker
 * deliberately differs, worker/DEVICE-IMAGE.md ("Capabilities") lists each difference and why.
 *
 * Trusts nothing in config space: every pointer is range checked, both walks stop on a loop or
 * after as many steps as the space can hold, every length field is read inside the space, and
 * capability lengths are clipped so that no two capabilities overlap and none runs past its
 * space.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "base.h"
#include "sort.h"
#include "wkr_internal.h"

#define ALL  0xffffffffu
#define REST WKR_PERM_REST

/* Next pointer and id are virtual in every capability: that is how hidden ones are unlinked. */
static const struct wkr_perm std_head[] = {{0, 2, ALL, 0, 0}};
static const struct wkr_perm ext_head[] = {{0, 4, ALL, 0, 0}};

/*
 * Named masks. Bits a guest may write are listed positively where the register has a few, and
 * as "everything but" where the kernel writes it that way.
 */
/* PMCSR: the power state goes to the kernel, which performs the transition itself. PME enable
 * and status are virtual and read as zero: a guest cannot take PME events (the host handles
 * them), and the kernel virtualizes them the same way. Data Select goes through. */
#define PM_PMCSR_VIRT  (PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS)
#define PM_PMCSR_WRITE (PCI_PM_CTRL_STATE_MASK | PCI_PM_CTRL_DATA_SEL_MASK)
/* Device Control: everything but Phantom Functions (it would confuse the IOMMU's requester-id
 * view). Initiate FLR is virtual: the write hook turns it into a reset request the worker's
 * server carries out (VFIO_DEVICE_RESET through the broker, as the kernel's own write handler
 * resets the function), and it reads as zero. Max Payload and Max Read Request reach the
 * kernel, which virtualizes MPS and floors MRRS. */
#define PCIE_DEVCTL_VIRT  PCI_EXP_DEVCTL_BCR_FLR
#define PCIE_DEVCTL_WRITE (0xffffu & ~PCI_EXP_DEVCTL_PHANTOM)
/* Device Control 2: everything but ARI Forwarding, which the host set at enumeration. */
#define PCIE_DEVCTL2_WRITE (0xffffu & ~PCI_EXP_DEVCTL2_ARI)
/* AER: the error bits a function may report; status is RW1C, mask and severity plain. */
#define AER_UNCOR_BITS                                                                             \
	(PCI_ERR_UNC_UND | PCI_ERR_UNC_DLP | PCI_ERR_UNC_SURPDN | PCI_ERR_UNC_POISON_TLP |         \
	 PCI_ERR_UNC_FCP | PCI_ERR_UNC_COMP_TIME | PCI_ERR_UNC_COMP_ABORT | PCI_ERR_UNC_UNX_COMP | \
	 PCI_ERR_UNC_RX_OVER | PCI_ERR_UNC_MALF_TLP | PCI_ERR_UNC_ECRC | PCI_ERR_UNC_UNSUP |       \
	 PCI_ERR_UNC_ACSV | PCI_ERR_UNC_INTN | PCI_ERR_UNC_MCBTLP | PCI_ERR_UNC_ATOMEG |           \
	 PCI_ERR_UNC_TLPPRE)
#define AER_COR_BITS                                                                            \
	(PCI_ERR_COR_RCVR | PCI_ERR_COR_BAD_TLP | PCI_ERR_COR_BAD_DLLP | PCI_ERR_COR_REP_ROLL | \
	 PCI_ERR_COR_REP_TIMER | PCI_ERR_COR_ADV_NFAT | PCI_ERR_COR_INTERNAL |                  \
	 PCI_ERR_COR_LOG_OVER)
#define AER_CAP_WRITE (PCI_ERR_CAP_ECRC_GENE | PCI_ERR_CAP_ECRC_CHKE)

/* Each permission table lists only what differs from "read through, never written". */
static const struct wkr_perm pm_perms[] = {
    {PCI_PM_PMC, 2, PCI_PM_CAP_PME_MASK, 0, 0},
    {PCI_PM_CTRL, 2, PM_PMCSR_VIRT, PM_PMCSR_WRITE, 0},
};

/* The kernel emulates VPD behind these two registers (writing the address starts a VPD read or
 * write through pci_read_vpd()/pci_write_vpd() and flips the flag): the guest reaches that. */
static const struct wkr_perm vpd_perms[] = {
    {PCI_VPD_ADDR, 2, 0, 0xffff, 0},
    {PCI_VPD_DATA, 4, 0, ALL, 0},
};

static const struct wkr_perm pcix_perms[] = {
    {PCI_X_CMD, 2, 0, 0xffff, 0},
    {PCI_X_ECC_CSR, 4, 0, ALL, 0},
};

/* Vendor-specific capabilities are raw past their header: drivers talk to firmware through
 * windows in them (write an address, read the data), as the kernel allows. */
static const struct wkr_perm vndr_perms[] = {{PCI_CAP_FLAGS, REST, 0, ALL, 0}};
static const struct wkr_perm ext_vndr_perms[] = {{PCI_VSEC_HDR, REST, 0, ALL, 0}};

static const struct wkr_perm pcie_perms[] = {
    {PCI_EXP_DEVCTL, 2, PCIE_DEVCTL_VIRT, PCIE_DEVCTL_WRITE, 0},
    {PCI_EXP_DEVCTL2, 2, 0, PCIE_DEVCTL2_WRITE, 0},
};

/* Advanced Features: Initiate FLR is virtual and handled as in Device Control. */
static const struct wkr_perm af_perms[] = {{PCI_AF_CTRL, 1, PCI_AF_CTRL_FLR, PCI_AF_CTRL_FLR, 0}};

static const struct wkr_perm aer_perms[] = {
    {PCI_ERR_UNCOR_STATUS, 4, 0, AER_UNCOR_BITS, AER_UNCOR_BITS},
    {PCI_ERR_UNCOR_MASK, 8, 0, AER_UNCOR_BITS, 0}, /* mask and severity */
    {PCI_ERR_COR_STATUS, 4, 0, AER_COR_BITS, AER_COR_BITS},
    {PCI_ERR_COR_MASK, 4, 0, AER_COR_BITS, 0},
    {PCI_ERR_CAP, 4, 0, AER_CAP_WRITE, 0},
};

/* Power Budgeting: choosing which Data register to read is harmless. */
static const struct wkr_perm pwr_perms[] = {{PCI_PWR_DSR, 1, 0, 0xff, 0}};

/* A byte of the capability at `pos + off`, or 0 outside the space (a length then falls back to
 * its minimum and the clip does the rest). */
static uint8_t cap_byte(const struct wkr_dev *d, uint16_t pos, unsigned off)
{
	return pos + off < d->cfg_size ? d->vconfig[pos + off] : 0;
}

static uint16_t cap_word(const struct wkr_dev *d, uint16_t pos, unsigned off)
{
	return (uint16_t)(cap_byte(d, pos, off) | cap_byte(d, pos, off + 1) << 8);
}

static uint32_t cap_dword(const struct wkr_dev *d, uint16_t pos, unsigned off)
{
	return cap_word(d, pos, off) | (uint32_t)cap_word(d, pos, off + 2) << 16;
}

static uint16_t msi_len(const struct wkr_dev *d, uint16_t pos)
{
	uint16_t ctrl = cap_word(d, pos, PCI_MSI_FLAGS), len = 10;

	if (ctrl & PCI_MSI_FLAGS_64BIT)
		len += 4;
	if (ctrl & PCI_MSI_FLAGS_MASKBIT)
		len += 10;
	return len;
}

static uint16_t vndr_len(const struct wkr_dev *d, uint16_t pos)
{
	uint8_t l = cap_byte(d, pos, PCI_CAP_FLAGS);

	return l < 3 ? 3 : l;
}

/* Version 1 ends after the link registers, version 2 after Link Control 2; an integrated
 * endpoint has no link registers. */
static uint16_t pcie_len(const struct wkr_dev *d, uint16_t pos)
{
	uint16_t flags = cap_word(d, pos, PCI_EXP_FLAGS);
	bool rc_end = ((flags & PCI_EXP_FLAGS_TYPE) >> 4) == PCI_EXP_TYPE_RC_END;

	if ((flags & PCI_EXP_FLAGS_VERS) == 1)
		return rc_end ? 0x0c : PCI_CAP_EXP_ENDPOINT_SIZEOF_V1;
	return rc_end ? 0x2c : PCI_CAP_EXP_ENDPOINT_SIZEOF_V2;
}

static uint16_t pcix_len(const struct wkr_dev *d, uint16_t pos)
{
	return PCI_X_CMD_VERSION(cap_word(d, pos, PCI_X_CMD)) ? PCI_CAP_PCIX_SIZEOF_V2
							      : PCI_CAP_PCIX_SIZEOF_V0;
}

static uint16_t ht_len(const struct wkr_dev *d, uint16_t pos)
{
	return cap_byte(d, pos, 3) & HT_3BIT_CAP_MASK ? HT_CAP_SIZEOF_SHORT : HT_CAP_SIZEOF_LONG;
}

static uint16_t sata_len(const struct wkr_dev *d, uint16_t pos)
{
	return (cap_byte(d, pos, PCI_SATA_REGS) & PCI_SATA_REGS_MASK) == PCI_SATA_REGS_INLINE
		   ? PCI_SATA_SIZEOF_LONG
		   : PCI_SATA_SIZEOF_SHORT;
}

static uint16_t ext_vndr_len(const struct wkr_dev *d, uint16_t pos)
{
	uint16_t l = (uint16_t)(cap_dword(d, pos, PCI_VSEC_HDR) >> 20);

	return l < 8 ? 8 : l;
}

static uint16_t dvsec_len(const struct wkr_dev *d, uint16_t pos)
{
	uint16_t l = (uint16_t)PCI_DVSEC_HEADER1_LEN(cap_dword(d, pos, PCI_DVSEC_HEADER1));

	return l < 10 ? 10 : l;
}

/* VC, VC9 and MFVC: the port registers, one resource block per VC, then an arbitration table
 * (read-only here, so its exact extent only has to cover it). */
static uint16_t vc_len(const struct wkr_dev *d, uint16_t pos)
{
	uint32_t evcc = cap_dword(d, pos, PCI_VC_PORT_CAP1) & PCI_VC_CAP1_EVCC;
	uint32_t cap2 = cap_dword(d, pos, PCI_VC_PORT_CAP2), phases = 0;
	uint32_t len = PCI_CAP_VC_BASE_SIZEOF + (1 + evcc) * PCI_CAP_VC_PER_VC_SIZEOF;

	if (cap2 & PCI_VC_CAP2_128_PHASE)
		phases = 128;
	else if (cap2 & PCI_VC_CAP2_64_PHASE)
		phases = 64;
	else if (cap2 & PCI_VC_CAP2_32_PHASE)
		phases = 32;
	if (phases)
		len = ((len + 15) & ~15u) + phases * 4 / 8;
	return (uint16_t)len;
}

static uint16_t acs_len(const struct wkr_dev *d, uint16_t pos)
{
	unsigned bits;

	if (!(cap_word(d, pos, PCI_ACS_CAP) & PCI_ACS_EC))
		return 8;
	bits = cap_byte(d, pos, PCI_ACS_EGRESS_BITS);
	bits = bits ? (bits + 31) & ~31u : 256;
	return (uint16_t)(8 + bits / 8);
}

static uint16_t dpa_len(const struct wkr_dev *d, uint16_t pos)
{
	return (uint16_t)(PCI_DPA_BASE_SIZEOF +
			  (cap_byte(d, pos, PCI_DPA_CAP) & PCI_DPA_CAP_SUBSTATE_MASK) + 1);
}

static uint16_t tph_len(const struct wkr_dev *d, uint16_t pos)
{
	uint32_t cap = cap_dword(d, pos, PCI_TPH_CAP);

	if ((cap & PCI_TPH_CAP_LOC_MASK) != PCI_TPH_LOC_CAP)
		return PCI_TPH_BASE_SIZEOF;
	return (uint16_t)(PCI_TPH_BASE_SIZEOF +
			  ((cap & PCI_TPH_CAP_ST_MASK) >> PCI_TPH_CAP_ST_SHIFT) * 2 + 2);
}

/* The guest never sees a pending PME or PME support: the host takes PME events. */
static int pm_init(struct wkr_dev *d, struct wkr_cap *cap)
{
	if (cap->len > PCI_PM_CTRL + 1) {
		uint8_t *p = d->vconfig + cap->off;

		vb_le16_put(p + PCI_PM_PMC, vb_le16_get(p + PCI_PM_PMC) & ~PCI_PM_CAP_PME_MASK);
		vb_le16_put(p + PCI_PM_CTRL, vb_le16_get(p + PCI_PM_CTRL) & ~PM_PMCSR_VIRT);
	}
	return 0;
}

static int pcie_init(struct wkr_dev *d, struct wkr_cap *cap)
{
	if (cap->len > PCI_EXP_DEVCTL + 1)
		vb_le16_put(d->vconfig + cap->off + PCI_EXP_DEVCTL,
			    vb_le16_get(d->vconfig + cap->off + PCI_EXP_DEVCTL) &
				~PCIE_DEVCTL_VIRT);
	return 0;
}

static int af_init(struct wkr_dev *d, struct wkr_cap *cap)
{
	if (cap->len > PCI_AF_CTRL)
		d->vconfig[cap->off + PCI_AF_CTRL] &= (uint8_t)~PCI_AF_CTRL_FLR;
	return 0;
}

/* The capability a written byte belongs to (hooks only run for bytes of their own). */
static const struct wkr_cap *cap_at(const struct wkr_dev *d, uint32_t off)
{
	return &d->caps[d->map[off]];
}

/* Initiate FLR reads as zero whatever happens; a function that advertises FLR is reset, as the
 * kernel does it, once the access is over (wkr_dev_take_flr()). */
static int pcie_written(struct wkr_dev *d, uint32_t off, size_t len)
{
	const struct wkr_cap *cap = cap_at(d, off);
	uint8_t *ctl = d->vconfig + cap->off + PCI_EXP_DEVCTL;

	(void)len;
	if (cap->len <= PCI_EXP_DEVCTL + 1 || !(vb_le16_get(ctl) & PCI_EXP_DEVCTL_BCR_FLR))
		return 0;
	vb_le16_put(ctl, vb_le16_get(ctl) & ~PCI_EXP_DEVCTL_BCR_FLR);
	if (vb_le32_get(d->vconfig + cap->off + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR)
		d->flr_requested = true;
	return 0;
}

static int af_written(struct wkr_dev *d, uint32_t off, size_t len)
{
	const struct wkr_cap *cap = cap_at(d, off);
	uint8_t *ctl = d->vconfig + cap->off + PCI_AF_CTRL;
	const uint8_t need = PCI_AF_CAP_FLR | PCI_AF_CAP_TP;

	(void)len;
	if (cap->len <= PCI_AF_CTRL || !(*ctl & PCI_AF_CTRL_FLR))
		return 0;
	*ctl &= (uint8_t)~PCI_AF_CTRL_FLR;
	if ((d->vconfig[cap->off + PCI_AF_CAP] & need) == need)
		d->flr_requested = true;
	return 0;
}

#define PERMS(p) .perms = p, .nperms = ARRAY_SIZE(p)
#define STD(i)	 .id = PCI_CAP_ID_##i, .name = #i
#define EXT(i)	 .id = PCI_EXT_CAP_ID_##i, .ext = true, .name = #i

/*
 * Every capability the worker shows, and those it hides on purpose (with the reason); a
 * capability not listed here is hidden. Read-only entries (no permissions) are what the kernel
 * leaves read-only too. The type 0 header's descriptor is in cfg.c.
 */
static const struct wkr_capdesc cap_table[] = {
    /* Standard capabilities. */
    {STD(PM), .len = PCI_PM_SIZEOF, PERMS(pm_perms), .init = pm_init},
    {STD(AGP), .len = PCI_AGP_SIZEOF},
    {STD(VPD), .len = PCI_CAP_VPD_SIZEOF, PERMS(vpd_perms)},
    {STD(MSI), .len_fn = msi_len, .init = wkr__msi_init, .written = wkr__msi_written},
    {STD(PCIX), .len_fn = pcix_len, PERMS(pcix_perms)},
    {STD(HT), .len_fn = ht_len},
    {STD(VNDR), .len_fn = vndr_len, PERMS(vndr_perms)},
    {STD(EXP), .len_fn = pcie_len, PERMS(pcie_perms), .init = pcie_init, .written = pcie_written},
    {STD(MSIX), .len = PCI_CAP_MSIX_SIZEOF, .init = wkr__msix_init, .written = wkr__msix_written},
    {STD(SATA), .len_fn = sata_len},
    {STD(AF), .len = PCI_CAP_AF_SIZEOF, PERMS(af_perms), .init = af_init, .written = af_written},
    /* Extended capabilities. */
    {EXT(ERR), .len = PCI_ERR_ROOT_COMMAND, PERMS(aer_perms)},
    {EXT(VC), .len_fn = vc_len},
    {EXT(DSN), .len = PCI_EXT_CAP_DSN_SIZEOF},
    {EXT(PWR), .len = PCI_EXT_CAP_PWR_SIZEOF, PERMS(pwr_perms)},
    {EXT(MFVC), .len_fn = vc_len},
    {EXT(VC9), .len_fn = vc_len},
    {EXT(VNDR), .len_fn = ext_vndr_len, PERMS(ext_vndr_perms)},
    {EXT(ACS), .len_fn = acs_len},
    {EXT(ATS), .len = PCI_EXT_CAP_ATS_SIZEOF},
    {EXT(PRI), .len = PCI_EXT_CAP_PRI_SIZEOF},
    {EXT(DPA), .len_fn = dpa_len},
    {EXT(TPH), .len_fn = tph_len},
    {EXT(LTR), .len = PCI_EXT_CAP_LTR_SIZEOF},
    {EXT(DVSEC), .len_fn = dvsec_len, PERMS(ext_vndr_perms)},
    /* Shown read-only by the kernel, hidden here: each would show the guest host addresses or
     * functions it does not have. SR-IOV and Multicast hold host bus addresses (VF BARs,
     * MC_Base_Address); ARI names a next function the guest cannot see (the worker presents
     * one function); Resizable BAR advertises sizes the worker's BARs (sized by the region
     * table) never take. */
    {EXT(SRIOV), .hidden = true},
    {EXT(MCAST), .hidden = true},
    {EXT(ARI), .hidden = true},
    {EXT(REBAR), .hidden = true},
};

/* Unknown capabilities (and the hidden ones above): zero from their start to the next one. */
static const struct wkr_capdesc hidden_std = {.name = "hidden", .hidden = true};
static const struct wkr_capdesc hidden_ext = {.name = "hidden", .ext = true, .hidden = true};
/* A hidden capability at 0x100 leaves its header: id 0, version 0, pointing at the first
 * visible one (or nothing), as the kernel's vfio does too. */
static const struct wkr_capdesc ext_anchor = {.name = "anchor", .ext = true, .hidden = true};

static const struct wkr_capdesc *cap_lookup(uint16_t id, bool ext)
{
	for (size_t i = 0; i < ARRAY_SIZE(cap_table); i++)
		if (cap_table[i].id == id && cap_table[i].ext == ext)
			return &cap_table[i];
	return ext ? &hidden_ext : &hidden_std;
}

/* Nominal length of the capability at `pos`; hidden ones reach to the next capability. */
static uint16_t cap_len(const struct wkr_dev *d, const struct wkr_capdesc *c, uint16_t pos)
{
	if (c->hidden)
		return WKR_CFG_SIZE_MAX;
	return c->len_fn ? c->len_fn(d, pos) : c->len;
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
	vb_sort(s, n, sizeof(*s), cap_cmp);
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
	const struct wkr_capdesc *c = cap->desc;
	uint8_t idx = (uint8_t)(cap - d->caps);

	memset(d->map + cap->off, idx, cap->len);
	if (c->hidden) {
		memset(d->vconfig + cap->off, 0, cap->len);
		memset(d->virt + cap->off, 0xff, cap->len);
		memset(d->wmask + cap->off, 0, cap->len);
		return 0;
	}
	memset(d->wmask + cap->off, 0, cap->len);
	wkr__perm_apply(d, cap, c->ext ? ext_head : std_head, 1);
	wkr__perm_apply(d, cap, c->perms, c->nperms);
	return c->init ? c->init(d, cap) : 0;
}

static struct wkr_cap *cap_add(struct wkr_dev *d, uint16_t pos, uint16_t id, bool ext)
{
	struct wkr_cap *c = &d->caps[d->ncaps++];

	c->id = id;
	c->off = pos;
	c->desc = cap_lookup(id, ext);
	c->len = cap_len(d, c->desc, pos);
	return c;
}

static int caps_std(struct wkr_dev *d)
{
	uint8_t seen[WKR_CFG_LEGACY / 4] = {0};
	unsigned first = d->ncaps;
	uint16_t pos = 0;
	uint8_t *link;

	if (d->vconfig[PCI_STATUS] & PCI_STATUS_CAP_LIST)
		pos = d->vconfig[PCI_CAPABILITY_LIST] & 0xfc;
	/* At most (256 - 64) / 4 capabilities fit; `seen` stops loops earlier. */
	while (pos >= WKR_CFG_HDR && !seen[pos / 4] && d->ncaps < WKR_CAPS_MAX) {
		seen[pos / 4] = 1;
		cap_add(d, pos, d->vconfig[pos], false);
		pos = d->vconfig[pos + 1] & 0xfc;
	}
	caps_clip(d->caps + first, d->ncaps - first, WKR_CFG_LEGACY);
	/* Rewrite the chain over the visible capabilities, in the device's order. */
	link = &d->vconfig[PCI_CAPABILITY_LIST];
	*link = 0;
	for (unsigned i = first; i < d->ncaps; i++) {
		struct wkr_cap *c = &d->caps[i];
		int r = cap_install(d, c);

		if (r == -EINVAL) {
			/* A capability whose layout contradicts the regions is hidden. */
			c->desc = &hidden_std;
			r = cap_install(d, c);
		}
		if (r < 0)
			return r;
		if (c->desc->hidden)
			continue;
		*link = (uint8_t)c->off;
		link = &d->vconfig[c->off + 1];
		*link = 0;
	}
	return 0;
}

/* Links the extended capability at `off` after `prev` (0: after the header a hidden first
 * capability left at 0x100), and ends the list at it. */
static void ext_link(struct wkr_dev *d, uint16_t prev, uint16_t off)
{
	uint8_t *ph;
	uint32_t ph_v;

	vb_le32_put(d->vconfig + off, vb_le32_get(d->vconfig + off) & 0x000fffffu);
	if (prev == 0 && off == WKR_CFG_LEGACY)
		return;
	ph = d->vconfig + (prev ? prev : WKR_CFG_LEGACY);
	ph_v = prev ? vb_le32_get(ph) & 0x000fffffu : 0;
	vb_le32_put(ph, ph_v | ((uint32_t)off << 20));
}

static int caps_ext(struct wkr_dev *d)
{
	uint8_t seen[WKR_CFG_SIZE_MAX / 4] = {0};
	unsigned first = d->ncaps;
	uint16_t pos = WKR_CFG_LEGACY;
	uint32_t h;
	uint16_t prev = 0;
	struct wkr_cap *head;

	if (d->cfg_size <= WKR_CFG_LEGACY)
		return 0;
	h = vb_le32_get(d->vconfig + pos);
	if (h == 0 || h == 0xffffffffu)
		return 0;
	while (pos >= WKR_CFG_LEGACY && pos + 4u <= d->cfg_size && !seen[pos / 4] &&
	       d->ncaps < WKR_CAPS_MAX) {
		seen[pos / 4] = 1;
		h = vb_le32_get(d->vconfig + pos);
		cap_add(d, pos, (uint16_t)(h & 0xffff), true);
		pos = (uint16_t)((h >> 20) & 0xffc);
	}
	caps_clip(d->caps + first, d->ncaps - first, (uint16_t)d->cfg_size);
	for (unsigned i = first; i < d->ncaps; i++) {
		struct wkr_cap *c = &d->caps[i];
		int r = cap_install(d, c);

		if (r < 0)
			return r;
		if (c->desc->hidden)
			continue;
		ext_link(d, prev, c->off);
		prev = c->off;
	}
	head = &d->caps[first];
	if (head->desc->hidden)
		head->desc = &ext_anchor;
	return 0;
}

int wkr__caps_init(struct wkr_dev *d)
{
	int r = caps_std(d);

	if (r < 0)
		return r;
	return caps_ext(d);
}
