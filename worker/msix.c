/*
 * msix: the MSI-X capability, table and PBA, all emulated. Message Control's enable and
 * function-mask bits are virtual and never written to the device; the table lives in worker
 * memory (the host programs the device's real table through the kernel when the broker enables
 * the index); the PBA is computed from the pending bits the irq module keeps.
 *
 * Trusts: nothing about the capability until it is checked: the table and PBA must lie inside
 * a present BAR region, otherwise the capability is hidden (caps.c does that on -EINVAL).
 * Accesses of any size and alignment are accepted; the PBA is read-only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "wkr_internal.h"

#define ALL   0xffffffffu
#define ENTRY 16u

enum { MSIX_NONE = 0, MSIX_TABLE = 1, MSIX_PBA = 2 };

static uint64_t pba_size(const struct wkr_dev *d)
{
	return ((uint64_t)d->msix.size + 63) / 64 * 8;
}

static bool fits(const struct wkr_dev *d, uint8_t bir, uint64_t off, uint64_t len)
{
	uint64_t size;

	if (bir > VFIO_PCI_BAR5_REGION_INDEX)
		return false;
	size = d->info.regions[bir].size;
	return size && off < size && len <= size - off;
}

int wkr__msix_init(struct wkr_dev *d, struct wkr_cap *cap)
{
	uint16_t pos = cap->off;
	uint16_t ctrl;
	uint32_t t;
	uint32_t p;
	uint8_t *table;
	const struct wkr_perm perms[] = {
	    {PCI_MSIX_FLAGS, 2, ALL, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 0},
	    {PCI_MSIX_TABLE, 8, ALL, 0, 0},
	};
	struct wkr_irqidx *ix;

	if (d->msix.present || cap->len < PCI_CAP_MSIX_SIZEOF)
		return -EINVAL;
	ctrl = vb_le16_get(d->vconfig + pos + PCI_MSIX_FLAGS);
	t = vb_le32_get(d->vconfig + pos + PCI_MSIX_TABLE);
	p = vb_le32_get(d->vconfig + pos + PCI_MSIX_PBA);
	d->msix.size = (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1u;
	d->msix.tbir = t & PCI_MSIX_TABLE_BIR;
	d->msix.toff = t & PCI_MSIX_TABLE_OFFSET;
	d->msix.pbir = p & PCI_MSIX_PBA_BIR;
	d->msix.poff = p & PCI_MSIX_PBA_OFFSET;
	if (!fits(d, d->msix.tbir, d->msix.toff, (uint64_t)d->msix.size * ENTRY) ||
	    !fits(d, d->msix.pbir, d->msix.poff, pba_size(d)))
		return -EINVAL;
	table = calloc(d->msix.size, ENTRY);
	if (!table)
		return -ENOMEM;
	/* Every vector comes out of reset masked. */
	for (uint32_t v = 0; v < d->msix.size; v++)
		table[v * ENTRY + PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	d->msix.table = table;
	d->msix.present = true;
	d->msix.off = pos;
	wkr__perm_apply(d, cap, perms, 2);
	vb_le16_put(d->vconfig + pos + PCI_MSIX_FLAGS, ctrl & PCI_MSIX_FLAGS_QSIZE);
	ix = &d->irq[VFIO_PCI_MSIX_IRQ_INDEX];
	for (uint32_t v = 0; v < ix->nvec; v++)
		ix->vec[v].masked = true;
	return 0;
}

static bool entry_masked(const struct wkr_dev *d, uint32_t v)
{
	return d->msix.fmask || (d->msix.table[v * ENTRY + PCI_MSIX_ENTRY_VECTOR_CTRL] &
				 PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

int wkr__msix_written(struct wkr_dev *d, uint32_t off, size_t len)
{
	uint16_t ctrl = vb_le16_get(d->vconfig + d->msix.off + PCI_MSIX_FLAGS);
	bool en = ctrl & PCI_MSIX_FLAGS_ENABLE;
	struct wkr_irqidx *ix = &d->irq[VFIO_PCI_MSIX_IRQ_INDEX];
	int r = 0;

	d->msix.fmask = ctrl & PCI_MSIX_FLAGS_MASKALL;
	if (d->msix.enabled && !en) {
		r = wkr__irq_enable(d, VFIO_PCI_MSIX_IRQ_INDEX, 0);
		d->msix.enabled = false;
	}
	for (uint32_t v = 0; v < ix->nvec && v < d->msix.size; v++)
		ix->vec[v].masked = entry_masked(d, v);
	if (en && !d->msix.enabled) {
		d->msix.enabled = true;
		r = wkr__irq_enable(d, VFIO_PCI_MSIX_IRQ_INDEX, d->msix.size);
	} else if (en) {
		r = wkr__irq_sync(d, VFIO_PCI_MSIX_IRQ_INDEX, 0, ix->nvec);
	}
	return r;
}

int wkr__msix_classify(const struct wkr_dev *d, uint32_t index, uint64_t off, size_t len,
		       size_t *ret_len)
{
	uint64_t end = off + len;
	struct {
		int what;
		uint64_t start, stop;
	} s[2] = {{MSIX_TABLE, d->msix.toff, d->msix.toff + (uint64_t)d->msix.size * ENTRY},
		  {MSIX_PBA, d->msix.poff, d->msix.poff + pba_size(d)}};
	bool on[2] = {d->msix.present && index == d->msix.tbir,
		      d->msix.present && index == d->msix.pbir};

	for (int i = 0; i < 2; i++) {
		if (on[i] && off >= s[i].start && off < s[i].stop) {
			*ret_len = (size_t)((end < s[i].stop ? end : s[i].stop) - off);
			return s[i].what;
		}
	}
	/* Pass-through piece: stop where an emulated structure begins. */
	for (int i = 0; i < 2; i++)
		if (on[i] && s[i].start > off && s[i].start < end)
			end = s[i].start;
	*ret_len = (size_t)(end - off);
	return MSIX_NONE;
}

void wkr__msix_read(struct wkr_dev *d, int what, uint64_t off, uint8_t *buf, size_t len)
{
	const struct wkr_irqidx *ix;
	uint64_t first;

	if (what == MSIX_TABLE) {
		memcpy(buf, d->msix.table + (off - d->msix.toff), len);
		return;
	}
	ix = &d->irq[VFIO_PCI_MSIX_IRQ_INDEX];
	first = off - d->msix.poff;
	for (size_t b = 0; b < len; b++) {
		uint8_t byte = 0;

		for (unsigned bit = 0; bit < 8; bit++) {
			uint64_t v = (first + b) * 8 + bit;

			if (v < ix->nvec && v < d->msix.size && ix->vec[v].pending)
				byte |= (uint8_t)(1u << bit);
		}
		buf[b] = byte;
	}
}

int wkr__msix_write(struct wkr_dev *d, int what, uint64_t off, const uint8_t *buf, size_t len)
{
	uint64_t rel;
	struct wkr_irqidx *ix;
	uint32_t first, last;

	if (what != MSIX_TABLE)
		return 0; /* the PBA is read-only; writes are dropped as on hardware */
	rel = off - d->msix.toff;
	memcpy(d->msix.table + rel, buf, len);
	ix = &d->irq[VFIO_PCI_MSIX_IRQ_INDEX];
	first = (uint32_t)(rel / ENTRY);
	last = (uint32_t)((rel + len - 1) / ENTRY);
	for (uint32_t v = first; v <= last && v < ix->nvec; v++)
		ix->vec[v].masked = entry_masked(d, v);
	if (!d->msix.enabled || first >= ix->nvec)
		return 0;
	return wkr__irq_sync(d, VFIO_PCI_MSIX_IRQ_INDEX, first, last - first + 1);
}
