/*
 * The reset scenarios, for any device: program a memory BAR and the Command register as a guest
 * would, enable MSI (or MSI-X) with an address, reset the device through the worker (the VMM's
 * RESET request, or the guest's Initiate FLR in PCI Express Device Control), and check
 * the whole config view against what worker/DEVICE-IMAGE.md ("Reset") defines: the event the VMM
 * gets, BARs and Command kept, MSI and MSI-X off, every other byte as before. The view after the
 * reset is printed ("view: OFF HEX...") so the guest test can hold it against the kernel's raw
 * config space in sysfs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "demo_vmm.h"

#define VIEW_MAX 4096

static int read_view(struct vfb_dev *dev, uint8_t *view, uint32_t size)
{
	int r = vfb_dev_cfg_read(dev, 0, view, size);

	return vmm_check(dev, r, "read config space");
}

/* The first memory BAR the device has, and an address for it the guest could choose. */
static int pick_bar(struct vfb_dev *dev, uint32_t *index, uint32_t *addr)
{
	for (uint32_t i = 0; i < 6; i++) {
		struct vfb_region_info ri;
		uint32_t v;

		if (vfb_dev_region_info(dev, i, &ri) < 0 || ri.size == 0)
			continue;
		if (ri.mmap_fd >= 0)
			close(ri.mmap_fd);
		if (vmm_cfg_read32(dev, PCI_BASE_ADDRESS_0 + 4 * i, &v) < 0 ||
		    (v & PCI_BASE_ADDRESS_SPACE_IO) || ri.size > 0x10000000)
			continue;
		*index = i;
		*addr = 0xe0000000u; /* aligned for any BAR up to 256 MiB */
		return 0;
	}
	return vmm_fail("the device has no memory BAR to program");
}

/* MSI with an address and data, enabled; else MSI-X enabled. Returns the capability's span. */
static int enable_msi(struct vfb_dev *dev, uint32_t *start, uint32_t *end)
{
	uint32_t pos;
	uint16_t ctrl;

	if (vmm_find_cap(dev, PCI_CAP_ID_MSI, &pos) == 0) {
		uint32_t data;

		if (vmm_cfg_read16(dev, pos + PCI_MSI_FLAGS, &ctrl) < 0)
			return vmm_fail("read MSI control");
		data = ctrl & PCI_MSI_FLAGS_64BIT ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32;
		if (vmm_cfg_write32(dev, pos + PCI_MSI_ADDRESS_LO, 0xfee00000u) < 0 ||
		    vmm_cfg_write16(dev, pos + data, 0x4041) < 0 ||
		    vmm_cfg_write16(dev, pos + PCI_MSI_FLAGS, ctrl | PCI_MSI_FLAGS_ENABLE) < 0)
			return vmm_fail("enable MSI");
		*start = pos;
		*end = pos + data + 2;
		vmm_say("  MSI at 0x%02x enabled with an address\n", pos);
		return 0;
	}
	if (vmm_find_cap(dev, PCI_CAP_ID_MSIX, &pos) == 0) {
		if (vmm_cfg_read16(dev, pos + PCI_MSIX_FLAGS, &ctrl) < 0 ||
		    vmm_cfg_write16(dev, pos + PCI_MSIX_FLAGS, ctrl | PCI_MSIX_FLAGS_ENABLE) < 0)
			return vmm_fail("enable MSI-X");
		*start = pos;
		*end = pos + PCI_CAP_MSIX_SIZEOF;
		vmm_say("  MSI-X at 0x%02x enabled\n", pos);
		return 0;
	}
	*start = *end = 0;
	return 0;
}

/* The event the worker queued before answering RESET. */
static int check_event(struct vfb_dev *dev, uint32_t bar, uint32_t addr, uint16_t cmd)
{
	struct vfb_event ev;
	int r;

	do
		r = vfb_dev_next_event(dev, &ev);
	while (r == 0 && ev.kind == VFB_EVENT_BARS_CHANGED);
	if (r < 0)
		return vmm_fail("no event after RESET: %s", strerror(-r));
	if (ev.kind != VFB_EVENT_RESET)
		return vmm_fail("event %s after RESET, not reset", vfb_event_kind_name(ev.kind));
	if ((ev.command & cmd) != cmd)
		return vmm_fail("reset event: Command 0x%04x lost 0x%04x", ev.command, cmd);
	for (uint32_t i = 0; i < ev.nbars; i++) {
		if (ev.bars[i].index != bar)
			continue;
		if (ev.bars[i].address != addr || !ev.bars[i].enabled)
			return vmm_fail(
			    "reset event: BAR %u at 0x%" PRIx64 " %s, want 0x%x enabled", bar,
			    ev.bars[i].address, ev.bars[i].enabled ? "enabled" : "disabled", addr);
		vmm_say("  event reset: Command 0x%04x, BAR %u at 0x%x decoding\n", ev.command, bar,
			addr);
		return 0;
	}
	return vmm_fail("reset event does not name BAR %u", bar);
}

static void print_view(const uint8_t *view, uint32_t size)
{
	for (uint32_t off = 0; off < size; off += 32) {
		printf("view: %03x", off);
		for (uint32_t i = 0; i < 32; i++)
			printf("%s%02x", i % 4 ? "" : " ", view[off + i]);
		printf("\n");
	}
}

/* Initiate FLR, as a guest driver's pcie_flr() writes it; the worker resets before answering. */
static int guest_flr(struct vfb_dev *dev)
{
	uint32_t pos, devcap;
	uint16_t ctl;

	if (vmm_find_cap(dev, PCI_CAP_ID_EXP, &pos) < 0)
		return vmm_fail("no PCI Express capability: no FLR to initiate");
	if (vmm_cfg_read32(dev, pos + PCI_EXP_DEVCAP, &devcap) < 0 ||
	    vmm_cfg_read16(dev, pos + PCI_EXP_DEVCTL, &ctl) < 0)
		return vmm_fail("read Device Capabilities and Control");
	if (!(devcap & PCI_EXP_DEVCAP_FLR))
		return vmm_fail("Device Capabilities 0x%08x: no FLR", devcap);
	vmm_say("  Initiate FLR in Device Control at 0x%02x\n", pos + PCI_EXP_DEVCTL);
	return vmm_check(dev,
			 vmm_cfg_write16(dev, pos + PCI_EXP_DEVCTL, ctl | PCI_EXP_DEVCTL_BCR_FLR),
			 "write Initiate FLR");
}

static int reset_run(char **sockets, struct vmm_figures *fig, bool flr)
{
	static uint8_t before[VIEW_MAX], after[VIEW_MAX];
	const uint16_t cmd = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	struct vfb_device_info info;
	struct vfb_region_info cfg;
	struct vfb_dev *dev;
	uint32_t bar = 0, addr = 0, msi_start = 0, msi_end = 0, size, bad = 0;

	if (vmm_connect(sockets[0], &dev, &info) < 0)
		return -1;
	if (vmm_check(dev, vfb_dev_region_info(dev, VFIO_PCI_CONFIG_REGION_INDEX, &cfg),
		      "config region info") < 0 ||
	    pick_bar(dev, &bar, &addr) < 0)
		goto fail;
	if (cfg.mmap_fd >= 0)
		close(cfg.mmap_fd);
	size = cfg.size < VIEW_MAX ? (uint32_t)cfg.size : VIEW_MAX;
	if (vmm_cfg_write32(dev, PCI_BASE_ADDRESS_0 + 4 * bar, addr) < 0 ||
	    vmm_enable_device(dev) < 0 || read_view(dev, before, size) < 0)
		goto fail;
	vmm_say("  %s: BAR %u programmed at 0x%x, memory decode and bus mastering on\n", info.bdf,
		bar, addr);
	if (enable_msi(dev, &msi_start, &msi_end) < 0)
		goto fail;
	if ((flr ? guest_flr(dev) : vmm_check(dev, vfb_dev_reset(dev), "reset")) < 0 ||
	    check_event(dev, bar, addr, cmd) < 0 || read_view(dev, after, size) < 0)
		goto fail;
	/* Everything as right after the BAR and Command were programmed: the MSI capability is
	 * back to that state too (off, no address), every other register kept or restored. */
	for (uint32_t off = 0; off < size; off++) {
		if (after[off] == before[off])
			continue;
		vmm_say("  0x%03x: 0x%02x before, 0x%02x after the reset%s\n", off, before[off],
			after[off], off >= msi_start && off < msi_end ? " (MSI)" : "");
		bad++;
	}
	if (bad) {
		vmm_fail("%u config byte(s) differ from the programmed state after the reset", bad);
		goto fail;
	}
	vmm_say("  %u config bytes after the reset: BAR and Command kept, MSI and MSI-X off, the "
		"rest as "
		"before\n",
		size);
	print_view(after, size);
	fig->devices = 1;
	vfb_dev_close(dev);
	return 0;
fail:
	vfb_dev_close(dev);
	return -1;
}

int vmm_reset(char **sockets, struct vmm_figures *fig)
{
	return reset_run(sockets, fig, false);
}

int vmm_flr(char **sockets, struct vmm_figures *fig)
{
	return reset_run(sockets, fig, true);
}
