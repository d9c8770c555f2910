/*
 * bar: the virtual BARs 0-5, the expansion ROM BAR and the Command register.
 *
 * BAR sizes come from the region table the broker read from the kernel, never from sizing the
 * real device; the type bits (I/O, 64-bit, prefetchable) come from the real BAR. The guest's
 * addresses live only in the shadow: they mean nothing to the host, and the host's own addresses
 * are never shown. Sizing probes (all ones) read back the size mask because every write is
 * masked to the BAR's alignment.
 *
 * Trusts: the region table. Distrusts: the BAR type bits of config space (a 64-bit BAR in the
 * last slot or over a populated region is refused) and every value the guest writes.
 */
#include <errno.h>
#include <string.h>

#include <linux/pci_regs.h>

#include "wkr_internal.h"

#define ROM_MIN 2048u

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int bar_init_one(struct wkr_dev *d, unsigned i, uint32_t raw)
{
	struct wkr_bar *b = &d->bars[i];
	uint64_t size = d->info.regions[i].size;

	if (size == 0)
		return 0;
	if (!is_pow2(size))
		return -EINVAL;
	b->size = size;
	b->present = true;
	if (raw & PCI_BASE_ADDRESS_SPACE_IO) {
		if (size < 4 || size > 0x10000)
			return -EINVAL;
		b->io = true;
		b->flags = PCI_BASE_ADDRESS_SPACE_IO;
		return 0;
	}
	if (size < 16)
		return -EINVAL;
	b->flags = raw & (PCI_BASE_ADDRESS_MEM_TYPE_MASK | PCI_BASE_ADDRESS_MEM_PREFETCH);
	if ((raw & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64) {
		if (i == 5 || d->info.regions[i + 1].size != 0)
			return -EINVAL;
		b->is64 = true;
		d->bars[i + 1].upper = true;
		return 0;
	}
	/* Type 1 (below 1 MiB) is legacy; present it as a plain 32-bit BAR. */
	b->flags &= ~(uint32_t)PCI_BASE_ADDRESS_MEM_TYPE_MASK;
	return size > 0x80000000u ? -EINVAL : 0;
}

int wkr__bars_init(struct wkr_dev *d)
{
	uint64_t rom;

	for (unsigned i = 0; i < 6; i++) {
		uint8_t *p = d->vconfig + PCI_BASE_ADDRESS_0 + 4 * i;

		if (!d->bars[i].upper) {
			int r = bar_init_one(d, i, vb_le32_get(p));

			if (r < 0)
				return r;
		}
		vb_le32_put(p, d->bars[i].present ? d->bars[i].flags : 0);
	}
	rom = d->info.regions[VFIO_PCI_ROM_REGION_INDEX].size;
	vb_le32_put(d->vconfig + PCI_ROM_ADDRESS, 0);
	if (rom) {
		if (!is_pow2(rom) || rom < ROM_MIN || rom > 0x80000000u)
			return -EINVAL;
		d->bars[VFIO_PCI_ROM_REGION_INDEX].size = rom;
		d->bars[VFIO_PCI_ROM_REGION_INDEX].present = true;
	}
	return 0;
}

/* Re-applies the alignment mask to BAR dword k after the guest wrote any byte of it. */
static void bar_fix(struct wkr_dev *d, unsigned k)
{
	uint8_t *p = d->vconfig + PCI_BASE_ADDRESS_0 + 4 * k;
	const struct wkr_bar *b = &d->bars[k];
	uint32_t v = vb_le32_get(p);

	if (b->upper)
		v &= (uint32_t) ~((d->bars[k - 1].size - 1) >> 32);
	else if (!b->present)
		v = 0;
	else if (b->io)
		v = (v & ~(uint32_t)(b->size - 1) & ~3u) | b->flags;
	else
		v = (v & ~(uint32_t)(b->size - 1) & ~0xfu) | b->flags;
	vb_le32_put(p, v);
}

static void rom_fix(struct wkr_dev *d)
{
	uint8_t *p = d->vconfig + PCI_ROM_ADDRESS;
	const struct wkr_bar *b = &d->bars[VFIO_PCI_ROM_REGION_INDEX];
	uint32_t v = vb_le32_get(p);

	if (!b->present)
		v = 0;
	else
		v &= (~(uint32_t)(b->size - 1) & PCI_ROM_ADDRESS_MASK) | PCI_ROM_ADDRESS_ENABLE;
	vb_le32_put(p, v);
}

static uint64_t bar_addr(const struct wkr_dev *d, unsigned i)
{
	const struct wkr_bar *b = &d->bars[i];
	uint64_t lo;

	if (i == VFIO_PCI_ROM_REGION_INDEX)
		return vb_le32_get(d->vconfig + PCI_ROM_ADDRESS);
	lo = vb_le32_get(d->vconfig + PCI_BASE_ADDRESS_0 + 4 * i);
	lo &= b->io ? ~3ull : ~0xfull;
	lo &= 0xffffffffull;
	if (b->is64)
		lo |= (uint64_t)vb_le32_get(d->vconfig + PCI_BASE_ADDRESS_0 + 4 * (i + 1)) << 32;
	return lo;
}

void wkr__header_keep(struct wkr_dev *d, const uint8_t *old)
{
	memcpy(d->vconfig + PCI_CACHE_LINE_SIZE, old + PCI_CACHE_LINE_SIZE, 2);
	memcpy(d->vconfig + PCI_BASE_ADDRESS_0, old + PCI_BASE_ADDRESS_0, 24);
	memcpy(d->vconfig + PCI_ROM_ADDRESS, old + PCI_ROM_ADDRESS, 4);
	d->vconfig[PCI_INTERRUPT_LINE] = old[PCI_INTERRUPT_LINE];
	for (unsigned k = 0; k < 6; k++)
		bar_fix(d, k);
	rom_fix(d);
	for (unsigned i = 0; i <= VFIO_PCI_ROM_REGION_INDEX; i++)
		if (d->bars[i].present && !d->bars[i].upper)
			d->bars[i].addr = bar_addr(d, i);
}

static bool bar_decodes(const struct wkr_dev *d, unsigned i, uint16_t cmd)
{
	const struct wkr_bar *b = &d->bars[i];

	if (i == VFIO_PCI_ROM_REGION_INDEX)
		return (cmd & PCI_COMMAND_MEMORY) &&
		       (vb_le32_get(d->vconfig + PCI_ROM_ADDRESS) & PCI_ROM_ADDRESS_ENABLE);
	return cmd & (b->io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY);
}

int wkr_bar_state(const struct wkr_dev *d, uint32_t index, uint64_t *ret_addr, bool *ret_enabled)
{
	const struct wkr_bar *b;
	uint64_t a;

	if (index > VFIO_PCI_ROM_REGION_INDEX)
		return -EINVAL;
	b = &d->bars[index];
	if (!b->present || b->upper)
		return -ENOENT;
	a = bar_addr(d, index);
	if (index == VFIO_PCI_ROM_REGION_INDEX)
		a &= PCI_ROM_ADDRESS_MASK;
	if (ret_addr)
		*ret_addr = a;
	if (ret_enabled)
		*ret_enabled = bar_decodes(d, index, d->command);
	return 0;
}

static bool overlaps(uint32_t off, size_t len, uint32_t start, uint32_t end)
{
	return off < end && off + len > start;
}

int wkr__header_written(struct wkr_dev *d, uint32_t off, size_t len)
{
	bool notify = false;

	if (overlaps(off, len, PCI_COMMAND, PCI_COMMAND + 2)) {
		uint8_t c[2];
		int r = wkr__cfg_phys_read(d, PCI_COMMAND, c, 2);
		uint16_t now;

		if (r < 0)
			return -EIO;
		now = vb_le16_get(c);
		notify = (now ^ d->command) & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
		d->command = now;
	}
	for (unsigned k = 0; k < 6; k++) {
		uint32_t o = PCI_BASE_ADDRESS_0 + 4 * k;

		if (overlaps(off, len, o, o + 4))
			bar_fix(d, k);
	}
	if (overlaps(off, len, PCI_ROM_ADDRESS, PCI_ROM_ADDRESS + 4))
		rom_fix(d);
	/* Report an address change only for a BAR that decodes: a guest sizes BARs with decoding
	 * off, and the enable that follows reports the final addresses. */
	for (unsigned i = 0; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
		struct wkr_bar *b = &d->bars[i];
		uint64_t a;

		if (!b->present || b->upper)
			continue;
		a = bar_addr(d, i);
		if (a != b->addr && bar_decodes(d, i, d->command))
			notify = true;
		if (a != b->addr && i == VFIO_PCI_ROM_REGION_INDEX &&
		    (d->command & PCI_COMMAND_MEMORY))
			notify = true; /* the ROM enable bit itself toggled */
		b->addr = a;
	}
	if (notify && d->cb.bars_changed)
		d->cb.bars_changed(d->cb.data, d->command);
	return 0;
}
