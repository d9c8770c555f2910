/*
 * msi: the MSI capability, entirely virtual. The guest's address and data never reach the
 * device (the host programs its own MSI message when the broker enables the index); what the
 * worker takes from the guest is the enable bit, the number of vectors (Multiple Message
 * Enable) and, when the device has per-vector masking, the mask bits. Enable, disable and a
 * vector-count change become SET_IRQS requests; a masked vector is routed to a worker eventfd
 * and its Pending bit set when it fires.
 *
 * Trusts: the capability's location (caps.c checked it). Distrusts every guest value: MME
 * above the capable count is clamped, mask bits past the vector count are dropped.
 */
#include <errno.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "wkr_internal.h"

#define ALL 0xffffffffu

/* The guest may write the enable bit, the vector count it enables, the address (the upper half
 * only in a 64-bit capability), the data and, with per-vector masking, the mask bits of the
 * vectors the device has. */
static void msi_perms(struct wkr_dev *d, struct wkr_cap *cap, uint16_t data, uint32_t nmask)
{
	const struct wkr_perm perms[] = {
	    {2, (uint16_t)(cap->len - 2), ALL, 0, 0},
	    {PCI_MSI_FLAGS, 2, ALL, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE, 0},
	    {PCI_MSI_ADDRESS_LO, 4, ALL, 0xfffffffcu, 0},
	    {PCI_MSI_ADDRESS_HI, 4, ALL, d->msi.is64 ? ALL : 0, 0},
	    {data, 2, ALL, 0xffff, 0},
	    {d->msi.mask_off, 4, ALL, d->msi.pvm ? nmask : 0, 0},
	};

	/* The data entry of a 32-bit capability sits where the 64-bit one keeps its upper
	 * address: apply the upper-address entry only when it exists. */
	wkr__perm_apply(d, cap, perms, 2);
	wkr__perm_apply(d, cap, &perms[2], 1);
	if (d->msi.is64)
		wkr__perm_apply(d, cap, &perms[3], 1);
	wkr__perm_apply(d, cap, &perms[4], d->msi.pvm ? 2 : 1);
}

int wkr__msi_init(struct wkr_dev *d, struct wkr_cap *cap)
{
	uint16_t pos = cap->off;
	uint16_t ctrl = vb_le16_get(d->vconfig + pos + PCI_MSI_FLAGS);
	uint16_t data;
	uint32_t nmask;

	if (d->msi.present || cap->len < 10)
		return -EINVAL;
	d->msi.present = true;
	d->msi.off = pos;
	d->msi.is64 = ctrl & PCI_MSI_FLAGS_64BIT;
	d->msi.pvm = (ctrl & PCI_MSI_FLAGS_MASKBIT) && cap->len >= (d->msi.is64 ? 24 : 20);
	d->msi.mmc = (uint8_t)((ctrl & PCI_MSI_FLAGS_QMASK) >> 1);
	if (d->msi.mmc > 5)
		d->msi.mmc = 5;
	data = d->msi.is64 ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32;
	d->msi.mask_off = (uint16_t)(data + 4);
	nmask = d->msi.mmc == 5 ? ALL : (1u << (1u << d->msi.mmc)) - 1;
	msi_perms(d, cap, data, nmask);
	/* The guest starts with MSI off, one vector, no address, nothing masked or pending. */
	vb_le16_put(d->vconfig + pos + PCI_MSI_FLAGS,
		    ctrl & (PCI_MSI_FLAGS_QMASK | PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT));
	memset(d->vconfig + pos + 4, 0, cap->len - 4u);
	return 0;
}

void wkr__msi_pending_sync(struct wkr_dev *d)
{
	const struct wkr_irqidx *ix = &d->irq[VFIO_PCI_MSI_IRQ_INDEX];
	uint32_t bits = 0;

	if (!d->msi.pvm)
		return;
	for (uint32_t v = 0; v < ix->nvec && v < 32; v++)
		if (ix->vec[v].pending)
			bits |= 1u << v;
	vb_le32_put(d->vconfig + d->msi.off + d->msi.mask_off + 4, bits);
}

int wkr__msi_written(struct wkr_dev *d, uint32_t off, size_t len)
{
	uint8_t *c = d->vconfig + d->msi.off + PCI_MSI_FLAGS;
	uint16_t ctrl = vb_le16_get(c);
	uint8_t mme = (uint8_t)((ctrl & PCI_MSI_FLAGS_QSIZE) >> 4);
	bool en;
	uint32_t nvec;
	struct wkr_irqidx *ix;
	uint32_t mask;
	int r = 0;

	if (mme > d->msi.mmc) {
		mme = d->msi.mmc;
		ctrl = (uint16_t)((ctrl & ~PCI_MSI_FLAGS_QSIZE) | (mme << 4));
		vb_le16_put(c, ctrl);
	}
	en = ctrl & PCI_MSI_FLAGS_ENABLE;
	nvec = 1u << mme;
	ix = &d->irq[VFIO_PCI_MSI_IRQ_INDEX];
	mask = d->msi.pvm ? vb_le32_get(d->vconfig + d->msi.off + d->msi.mask_off) : 0;

	if (d->msi.enabled && (!en || nvec != d->msi.nvec)) {
		r = wkr__irq_enable(d, VFIO_PCI_MSI_IRQ_INDEX, 0);
		d->msi.enabled = false;
	}
	for (uint32_t v = 0; v < ix->nvec && v < 32; v++)
		ix->vec[v].masked = mask & (1u << v);
	if (en && !d->msi.enabled) {
		int r2;

		d->msi.nvec = nvec;
		d->msi.enabled = true;
		r2 = wkr__irq_enable(d, VFIO_PCI_MSI_IRQ_INDEX, nvec);
		if (r == 0)
			r = r2;
	} else if (en) {
		int r2 = wkr__irq_sync(d, VFIO_PCI_MSI_IRQ_INDEX, 0, ix->nvec);

		if (r == 0)
			r = r2;
	}
	wkr__msi_pending_sync(d);
	return r;
}
