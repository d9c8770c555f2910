/*
 * Scenario on QEMU's nvme: a 64-bit memory BAR 0 that also holds the MSI-X table and PBA.
 * Checks the worker's virtual BARs (sizing probe of a 64-bit pair, restored address), and that
 * the areas offered for mmap leave page-aligned holes over the MSI-X table and PBA, so the
 * guest's accesses there are trapped into the emulation, while the rest of the BAR maps the
 * real device (the controller's CAP and VS registers read the same through both paths).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "demo_vmm.h"

#define NVME_VENDOR 0x1b36
#define NVME_DEVICE 0x0010
#define NVME_REG_VS 0x08
#define PAGE	    4096ull

static uint64_t page_down(uint64_t x)
{
	return x & ~(PAGE - 1);
}

static uint64_t page_up(uint64_t x)
{
	return (x + PAGE - 1) & ~(PAGE - 1);
}

static int bar_sizing(struct vfb_dev *dev, uint64_t region_size)
{
	uint32_t lo, hi, slo, shi;
	uint64_t size;
	int r;

	r = vmm_cfg_read32(dev, PCI_BASE_ADDRESS_0, &lo);
	r = r ?: vmm_cfg_read32(dev, PCI_BASE_ADDRESS_1, &hi);
	if (vmm_check(dev, r, "read BAR 0/1") < 0)
		return -1;
	if ((lo & PCI_BASE_ADDRESS_SPACE) != PCI_BASE_ADDRESS_SPACE_MEMORY ||
	    (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) != PCI_BASE_ADDRESS_MEM_TYPE_64)
		return vmm_fail("BAR 0 reads 0x%08x: not a 64-bit memory BAR", lo);
	r = vmm_cfg_write32(dev, PCI_BASE_ADDRESS_0, 0xffffffffu);
	r = r ?: vmm_cfg_write32(dev, PCI_BASE_ADDRESS_1, 0xffffffffu);
	r = r ?: vmm_cfg_read32(dev, PCI_BASE_ADDRESS_0, &slo);
	r = r ?: vmm_cfg_read32(dev, PCI_BASE_ADDRESS_1, &shi);
	if (vmm_check(dev, r, "BAR sizing probe") < 0)
		return -1;
	size = ~(((uint64_t)shi << 32) | (slo & PCI_BASE_ADDRESS_MEM_MASK)) + 1;
	if (size != region_size)
		return vmm_fail("BAR 0 sizes to 0x%" PRIx64 ", the region is 0x%" PRIx64, size,
				region_size);
	if ((slo & ~PCI_BASE_ADDRESS_MEM_MASK) != (lo & ~PCI_BASE_ADDRESS_MEM_MASK))
		return vmm_fail("sizing changed the BAR's type bits: 0x%x -> 0x%x", lo, slo);
	/* A guest-programmed address above 4 GiB must be kept as written. */
	r = vmm_cfg_write32(dev, PCI_BASE_ADDRESS_0, 0xfe000000u);
	r = r ?: vmm_cfg_write32(dev, PCI_BASE_ADDRESS_1, 0x00000008u);
	r = r ?: vmm_cfg_read32(dev, PCI_BASE_ADDRESS_0, &slo);
	r = r ?: vmm_cfg_read32(dev, PCI_BASE_ADDRESS_1, &shi);
	if (vmm_check(dev, r, "program BAR 0/1") < 0)
		return -1;
	if ((slo & PCI_BASE_ADDRESS_MEM_MASK) != 0xfe000000u || shi != 8)
		return vmm_fail("BAR 0/1 read 0x%08x/0x%08x after writing 0xfe000000/0x8", slo,
				shi);
	vmm_say("  BAR 0: 64-bit memory, sizing probe answers 0x%" PRIx64 " bytes (the region's "
		"size), a programmed address 0x8fe000000 is kept\n",
		size);
	return 0;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* The mmappable areas must avoid the MSI-X pages and cover everything else of the BAR. */
static int check_areas(const struct vfb_region_info *ri, uint64_t table, uint64_t table_len,
		       uint64_t pba, uint64_t pba_len)
{
	uint64_t holes[2][2] = {{page_down(table), page_up(table + table_len)},
				{page_down(pba), page_up(pba + pba_len)}};
	uint64_t covered = 0, hole_bytes = 0;

	if (ri->mmap_fd < 0 || ri->nareas == 0)
		return vmm_fail("region 0 offers no mappable area (was the device added with "
				"--allow-mmap?)");
	for (uint32_t i = 0; i < ri->nareas; i++) {
		const struct vfb_mmap_area *a = &ri->areas[i];

		if (a->offset % PAGE || a->size % PAGE)
			return vmm_fail("area %u (0x%" PRIx64 "+0x%" PRIx64 ") is not page aligned",
					i, a->offset, a->size);
		for (int h = 0; h < 2; h++)
			if (overlaps(a->offset, a->size, holes[h][0], holes[h][1] - holes[h][0]))
				return vmm_fail("area %u (0x%" PRIx64 "+0x%" PRIx64
						") overlaps the MSI-X %s page(s)",
						i, a->offset, a->size, h ? "PBA" : "table");
		covered += a->size;
	}
	for (int h = 0; h < 2; h++)
		hole_bytes += holes[h][1] - holes[h][0];
	if (overlaps(holes[0][0], holes[0][1] - holes[0][0], holes[1][0],
		     holes[1][1] - holes[1][0]))
		hole_bytes -= PAGE; /* table and PBA share a page */
	if (covered + hole_bytes != ri->size)
		return vmm_fail("areas cover 0x%" PRIx64 " of 0x%" PRIx64 " bytes with 0x%" PRIx64
				" in holes",
				covered, ri->size, hole_bytes);
	vmm_say("  %u mappable area(s) cover 0x%" PRIx64 " bytes; the MSI-X table (+0x%" PRIx64
		") and PBA (+0x%" PRIx64 ") pages are holes\n",
		ri->nareas, covered, table, pba);
	return 0;
}

/* The same register through mmap of the first area and through a trapped read. */
static int compare_paths(struct vfb_dev *dev, const struct vfb_region_info *ri)
{
	const struct vfb_mmap_area *a = &ri->areas[0];
	volatile uint32_t *p;
	uint32_t mapped, trapped;
	int r;

	if (a->offset != 0)
		return 0;
	p = mmap(NULL, a->size, PROT_READ, MAP_SHARED, ri->mmap_fd, (off_t)ri->offset);
	if (p == MAP_FAILED)
		return vmm_fail("mmap of BAR 0: %s", strerror(errno));
	mapped = p[NVME_REG_VS / 4];
	munmap((void *)p, a->size);
	r = vmm_bar_read32(dev, 0, NVME_REG_VS, &trapped);
	if (vmm_check(dev, r, "trapped read of VS") < 0)
		return -1;
	if (mapped != trapped || mapped == 0 || mapped == 0xffffffffu)
		return vmm_fail("NVMe VS reads 0x%08x mapped and 0x%08x trapped", mapped, trapped);
	vmm_say("  NVMe version register 0x%08x reads the same mapped and trapped\n", mapped);
	return 0;
}

int vmm_nvme_bars(char **sockets, struct vmm_figures *fig)
{
	struct vfb_device_info info;
	struct vfb_region_info ri = {.mmap_fd = -1};
	struct vfb_irq_info irq;
	struct vfb_dev *dev;
	uint32_t cap, table, pba;
	uint16_t ctrl;
	int r;

	if (vmm_connect(sockets[0], &dev, &info) < 0)
		return -1;
	if (info.vendor_id != NVME_VENDOR || info.device_id != NVME_DEVICE) {
		vmm_fail("%s is %04x:%04x, not QEMU's nvme", sockets[0], info.vendor_id,
			 info.device_id);
		goto fail;
	}
	vmm_say("  %s: nvme %04x:%04x\n", info.bdf, info.vendor_id, info.device_id);
	/* Memory decode on: the kernel refuses BAR accesses, mapped or trapped, without it. */
	if (vmm_enable_device(dev) < 0)
		goto fail;
	r = vfb_dev_region_info(dev, 0, &ri);
	if (vmm_check(dev, r, "region 0 info") < 0 || bar_sizing(dev, ri.size) < 0)
		goto fail;
	r = vmm_find_cap(dev, PCI_CAP_ID_MSIX, &cap);
	r = r ?: vmm_cfg_read16(dev, cap + PCI_MSIX_FLAGS, &ctrl);
	r = r ?: vmm_cfg_read32(dev, cap + PCI_MSIX_TABLE, &table);
	r = r ?: vmm_cfg_read32(dev, cap + PCI_MSIX_PBA, &pba);
	r = r ?: vfb_dev_irq_info(dev, VFB_IRQ_MSIX, &irq);
	if (vmm_check(dev, r, "MSI-X capability") < 0)
		goto fail;
	if ((uint32_t)(ctrl & PCI_MSIX_FLAGS_QSIZE) + 1 != irq.count) {
		vmm_fail("MSI-X table size %u differs from the kernel's %u vectors",
			 (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1, irq.count);
		goto fail;
	}
	vmm_say("  MSI-X: %u vectors, as the kernel reports for the device\n", irq.count);
	if ((table & PCI_MSIX_TABLE_BIR) != 0 || (pba & PCI_MSIX_PBA_BIR) != 0) {
		vmm_fail("expected the MSI-X table and PBA in BAR 0");
		goto fail;
	}
	if (check_areas(&ri, table & PCI_MSIX_TABLE_OFFSET, (uint64_t)irq.count * 16,
			pba & PCI_MSIX_PBA_OFFSET, (irq.count + 63) / 64 * 8) < 0 ||
	    compare_paths(dev, &ri) < 0)
		goto fail;
	close(ri.mmap_fd);
	vfb_dev_close(dev);
	fig->devices = 1;
	return 0;
fail:
	if (ri.mmap_fd >= 0)
		close(ri.mmap_fd);
	vfb_dev_close(dev);
	return -1;
}
