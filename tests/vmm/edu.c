/*
 * Scenarios on QEMU's edu device (docs/specs/edu.rst in QEMU): its DMA engine copies between
 * "guest RAM" (our memfd, mapped at an IOVA through the broker) and a 4 KiB buffer inside the
 * device; its interrupt raise register fires MSI. Registers below 0x80 take 4-byte accesses
 * only; a 4-byte write to a DMA address register sets the whole address.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "demo_vmm.h"

#include "edu_regs.h"

/* QEMU 7.2's edu checks a DMA's end with `<` against the buffer's end and aborts the whole
 * machine (hw_error) on a transfer that fills the buffer exactly: stay below it. */
#define EDU_XFER 2048u

/* The device only drives 28 address bits, so guest RAM sits low in the IOVA space. */
#define RAM_IOVA 0x100000ull
#define RAM_SIZE (2u << 20)
#define DST_OFF	 (1u << 20)

static int edu_open(const char *path, struct vfb_dev **dev)
{
	struct vfb_device_info info;
	uint32_t ident, live;

	if (vmm_connect(path, dev, &info) < 0)
		return -1;
	if (info.vendor_id != EDU_VENDOR || info.device_id != EDU_DEVICE) {
		vfb_dev_close(*dev);
		return vmm_fail("%s is %04x:%04x, not an edu device", path, info.vendor_id,
				info.device_id);
	}
	if (vmm_enable_device(*dev) < 0)
		goto fail;
	if (vmm_check(*dev, vmm_bar_read32(*dev, EDU_BAR, EDU_IDENT, &ident), "read ident") < 0)
		goto fail;
	/* The liveness register inverts what is written: proves the BAR path reaches hardware. */
	if (vmm_check(*dev, vmm_bar_write32(*dev, EDU_BAR, EDU_LIVENESS, 0x5a5aa5a5u),
		      "write liveness") < 0 ||
	    vmm_check(*dev, vmm_bar_read32(*dev, EDU_BAR, EDU_LIVENESS, &live), "read liveness") <
		0)
		goto fail;
	if (live != ~0x5a5aa5a5u || (ident & 0xff) != 0xed) {
		vmm_fail("edu does not answer: ident 0x%08x, liveness 0x%08x", ident, live);
		goto fail;
	}
	vmm_say("  %s: edu %04x:%04x version %u.%u, memory decode and bus mastering on\n", info.bdf,
		info.vendor_id, info.device_id, ident >> 24, (ident >> 16) & 0xff);
	return 0;
fail:
	vfb_dev_close(*dev);
	return -1;
}

/* Starts one transfer and waits for the engine to finish (it runs on a device timer). */
static int edu_dma(struct vfb_dev *dev, uint64_t src, uint64_t dst, uint32_t len, uint32_t cmd)
{
	uint32_t v = EDU_DMA_START;
	int r = 0;

	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_DMA_SRC, (uint32_t)src);
	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_DMA_DST, (uint32_t)dst);
	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_DMA_COUNT, len);
	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_DMA_CMD, cmd | EDU_DMA_START);
	if (r < 0)
		return vmm_check(dev, r, "program DMA");
	/* 60,000 polls 1 ms apart or more: a minute at least, the bound of a DMA that never ends
	 * (the guest runs under TCG on a busy host), not a deadline for a slow one. */
	for (int i = 0; i < 60000 && (v & EDU_DMA_START); i++) {
		r = vmm_bar_read32(dev, EDU_BAR, EDU_DMA_CMD, &v);
		if (r < 0)
			return vmm_check(dev, r, "read DMA command");
		if (v & EDU_DMA_START)
			usleep(1000);
	}
	if (v & EDU_DMA_START)
		return vmm_fail("DMA did not finish within 60 s");
	return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* One round: RAM -> device buffer -> another RAM address; the bytes must match. */
static int edu_dma_round(struct vfb_dev *dev, struct vmm_ram *ram, uint32_t seed, uint32_t len,
			 double *us)
{
	double t0 = vmm_now_us();

	fill(ram->mem, len, seed);
	memset(ram->mem + DST_OFF, 0, len);
	if (edu_dma(dev, RAM_IOVA, EDU_BUF, len, 0) < 0 ||
	    edu_dma(dev, EDU_BUF, RAM_IOVA + DST_OFF, len, EDU_DMA_TO_RAM) < 0)
		return -1;
	*us = vmm_now_us() - t0;
	if (memcmp(ram->mem, ram->mem + DST_OFF, len)) {
		size_t i = 0;

		while (ram->mem[i] == ram->mem[DST_OFF + i])
			i++;
		return vmm_fail("DMA copy differs at byte %zu: wrote 0x%02x, read back 0x%02x", i,
				ram->mem[i], ram->mem[DST_OFF + i]);
	}
	return 0;
}

/* After the unmap the device must not reach guest RAM: the IOMMU, not goodwill, stops it. */
static int edu_dma_after_unmap(struct vfb_dev *dev, struct vmm_ram *ram)
{
	memset(ram->mem + DST_OFF, 0xee, EDU_XFER);
	if (edu_dma(dev, EDU_BUF, RAM_IOVA + DST_OFF, EDU_XFER, EDU_DMA_TO_RAM) < 0)
		return -1;
	for (size_t i = 0; i < EDU_XFER; i++)
		if (ram->mem[DST_OFF + i] != 0xee)
			return vmm_fail("device wrote guest RAM at +%zu after the unmap", i);
	vmm_say("  after the unmap the same DMA left guest RAM untouched (blocked by the IOMMU)\n");
	return 0;
}

static int edu_dma_run(struct vfb_dev *dev, int rounds, struct vmm_figures *fig)
{
	struct vmm_ram ram;
	double t0, map_us, total = 0, us;
	int r;

	r = vmm_ram_new(RAM_SIZE, &ram);
	if (r < 0)
		return vmm_fail("guest RAM memfd: %s", strerror(-r));
	t0 = vmm_now_us();
	r = vfb_dev_dma_map(dev, ram.fd, 0, RAM_IOVA, RAM_SIZE, VFB_DMA_READ | VFB_DMA_WRITE);
	map_us = vmm_now_us() - t0;
	if (vmm_check(dev, r, "DMA map") < 0)
		goto fail;
	vmm_say("  mapped %u KiB of guest RAM at IOVA 0x%llx in %.0f us\n", RAM_SIZE >> 10,
		RAM_IOVA, map_us);
	for (int i = 0; i < rounds; i++) {
		if (edu_dma_round(dev, &ram, 0x9e3779b9u * (unsigned)(i + 1), EDU_XFER, &us) < 0)
			goto fail;
		total += us;
		fig->dma_bytes += EDU_XFER;
	}
	vmm_say("  %d DMA round trips of %u bytes (RAM -> device -> RAM) matched, %.1f ms each\n",
		rounds, EDU_XFER, total / rounds / 1000);
	t0 = vmm_now_us();
	r = vfb_dev_dma_unmap(dev, RAM_IOVA, RAM_SIZE);
	if (vmm_check(dev, r, "DMA unmap") < 0)
		goto fail;
	vmm_say("  unmapped in %.0f us\n", vmm_now_us() - t0);
	if (edu_dma_after_unmap(dev, &ram) < 0)
		goto fail;
	vmm_ram_free(&ram);
	return 0;
fail:
	vmm_ram_free(&ram);
	return -1;
}

/* One connection, one scenario run `n` times over, one device. */
static int edu_with(const char *path, int (*run)(struct vfb_dev *, int, struct vmm_figures *),
		    int n, struct vmm_figures *fig)
{
	struct vfb_dev *dev;
	int r;

	if (edu_open(path, &dev) < 0)
		return -1;
	r = run(dev, n, fig);
	vfb_dev_close(dev);
	fig->devices = 1;
	return r;
}

int vmm_edu_dma(char **sockets, struct vmm_figures *fig)
{
	return edu_with(sockets[0], edu_dma_run, 4, fig);
}

/* Enables MSI through the emulated capability, as a guest driver would. */
static int edu_msi_enable(struct vfb_dev *dev, int efd, bool on)
{
	uint32_t cap;
	uint16_t ctrl;
	int r = vmm_find_cap(dev, PCI_CAP_ID_MSI, &cap);

	if (r < 0)
		return vmm_fail("edu has no MSI capability: %s", strerror(-r));
	if (on) {
		r = vfb_dev_set_irq_fds(dev, VFB_IRQ_MSI, 0, &efd, 1);
		if (vmm_check(dev, r, "set MSI eventfd") < 0)
			return -1;
	}
	r = vmm_cfg_read16(dev, cap + PCI_MSI_FLAGS, &ctrl);
	if (r >= 0 && on) {
		r = vmm_cfg_write32(dev, cap + PCI_MSI_ADDRESS_LO, 0xfee00000u);
		r = r
			?: vmm_cfg_write16(dev,
					   cap + ((ctrl & PCI_MSI_FLAGS_64BIT) ? PCI_MSI_DATA_64
									       : PCI_MSI_DATA_32),
					   0x4041);
	}
	if (r >= 0) {
		ctrl = on ? (ctrl | PCI_MSI_FLAGS_ENABLE) & ~PCI_MSI_FLAGS_QSIZE
			  : ctrl & ~PCI_MSI_FLAGS_ENABLE;
		r = vmm_cfg_write16(dev, cap + PCI_MSI_FLAGS, ctrl);
	}
	if (r >= 0)
		r = vmm_cfg_read16(dev, cap + PCI_MSI_FLAGS, &ctrl);
	if (vmm_check(dev, r, "MSI capability") < 0)
		return -1;
	if (!!(ctrl & PCI_MSI_FLAGS_ENABLE) != on)
		return vmm_fail("MSI enable reads %d after writing %d", !!(ctrl & 1), on);
	return 0;
}

/* Raises `value` in the device and waits for the eventfd; acknowledges it in the device. */
static int edu_raise(struct vfb_dev *dev, int efd, uint32_t value, int timeout_ms, double *us)
{
	double t0 = vmm_now_us();
	uint32_t st;
	int64_t n;
	int r = vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_RAISE, value);

	if (vmm_check(dev, r, "raise interrupt") < 0)
		return -1;
	n = vmm_wait_eventfd(efd, timeout_ms);
	if (us)
		*us = vmm_now_us() - t0;
	r = vmm_bar_read32(dev, EDU_BAR, EDU_IRQ_STATUS, &st);
	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_ACK, st);
	if (vmm_check(dev, r, "acknowledge interrupt") < 0)
		return -1;
	if (n < 0)
		return vmm_fail("eventfd: %s", strerror((int)-n));
	if ((st & value) != value)
		return vmm_fail("interrupt status 0x%x lacks the raised 0x%x", st, value);
	return n > 0 ? 1 : 0;
}

static int edu_msi_run(struct vfb_dev *dev, int count, struct vmm_figures *fig)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	double us, total = 0;
	int r;

	if (efd < 0)
		return vmm_fail("eventfd: %s", strerror(errno));
	if (edu_msi_enable(dev, efd, true) < 0)
		goto fail;
	if (vmm_wait_eventfd(efd, 200) != 0) {
		vmm_fail("MSI eventfd fired before any interrupt was raised");
		goto fail;
	}
	for (int i = 0; i < count; i++) {
		r = edu_raise(dev, efd, 1u << (i % 8), 3000, &us);
		if (r < 0)
			goto fail;
		if (r == 0) {
			vmm_fail("MSI %d of %d was not delivered to the eventfd within 3 s", i + 1,
				 count);
			goto fail;
		}
		total += us;
		fig->interrupts++;
	}
	vmm_say("  MSI enabled: %d of %d interrupts raised in the device reached the VMM's "
		"eventfd, %.0f us each (raise to wake-up)\n",
		count, count, total / count);
	/* With MSI off the device signals INTx, which has no fd here: nothing may arrive. */
	if (edu_msi_enable(dev, efd, false) < 0)
		goto fail;
	r = edu_raise(dev, efd, 0x80, 300, NULL);
	if (r != 0) {
		if (r > 0)
			vmm_fail("an interrupt reached the MSI eventfd after MSI was disabled");
		goto fail;
	}
	vmm_say("  MSI disabled: a raised interrupt no longer reaches the eventfd\n");
	close(efd);
	return 0;
fail:
	close(efd);
	return -1;
}

int vmm_edu_msi(char **sockets, struct vmm_figures *fig)
{
	return edu_with(sockets[0], edu_msi_run, 16, fig);
}

static int resample(int fd)
{
	uint64_t one = 1;

	return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

/*
 * INTx as a VMM with KVM's irqfd and resamplefd drives it: the trigger eventfd fires once per
 * assertion, the kernel keeps the line masked until the VMM signals the resample eventfd (the
 * guest's EOI), and a line still asserted then fires again. edu signals INTx while MSI is off.
 */
static int edu_intx_run(struct vfb_dev *dev, int count, struct vmm_figures *fig)
{
	int trig = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
	    rs = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct vfb_irq_info ii;
	uint32_t st;
	int64_t n;
	int r = -1;

	if (trig < 0 || rs < 0) {
		vmm_fail("eventfd: %s", strerror(errno));
		goto out;
	}
	if (vmm_check(dev, vfb_dev_irq_info(dev, VFB_IRQ_INTX, &ii), "INTx IRQ_INFO") < 0)
		goto out;
	if (ii.count != 1) {
		vmm_fail("edu reports %u INTx lines, not 1", ii.count);
		goto out;
	}
	if (vmm_check(dev, vfb_dev_set_intx_fds(dev, trig, rs), "set INTx eventfds") < 0)
		goto out;
	for (int i = 0; i < count; i++) {
		uint32_t value = 1u << (i % 8);

		if (vmm_check(dev, vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_RAISE, value),
			      "raise interrupt") < 0)
			goto out;
		n = vmm_wait_eventfd(trig, 3000);
		if (n <= 0) {
			vmm_fail("INTx %d of %d did not reach the trigger eventfd within 3 s%s",
				 i + 1, count, n < 0 ? " (eventfd error)" : "");
			goto out;
		}
		if (i == 0) {
			/* Unmasked but not acknowledged: the level is still high, so it fires
			 * again. */
			n = resample(rs) ?: vmm_wait_eventfd(trig, 3000);
			if (n <= 0) {
				vmm_fail(
				    "an unacknowledged INTx did not fire again after the resample");
				goto out;
			}
			vmm_say("  INTx: an unacknowledged level interrupt fires again when "
				"unmasked\n");
		}
		r = vmm_bar_read32(dev, EDU_BAR, EDU_IRQ_STATUS, &st);
		r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_ACK, st);
		if (vmm_check(dev, r, "acknowledge interrupt") < 0)
			goto out;
		r = -1;
		if ((st & value) != value) {
			vmm_fail("interrupt status 0x%x lacks the raised 0x%x", st, value);
			goto out;
		}
		if (resample(rs) < 0) {
			vmm_fail("resample eventfd: %s", strerror(errno));
			goto out;
		}
		fig->interrupts++;
	}
	vmm_say("  INTx: %d of %d level interrupts delivered, each acknowledged and resampled\n",
		count, count);
	r = vmm_check(dev, vfb_dev_set_intx_fds(dev, -1, -1), "remove INTx eventfds");
out:
	if (trig >= 0)
		close(trig);
	if (rs >= 0)
		close(rs);
	return r;
}

int vmm_edu_intx(char **sockets, struct vmm_figures *fig)
{
	return edu_with(sockets[0], edu_intx_run, 8, fig);
}

/* The mapping of the first connection must be gone when the second maps the same range. */
int vmm_reconnect(char **sockets, struct vmm_figures *fig)
{
	for (int pass = 1; pass <= 2; pass++) {
		struct vfb_dev *dev;
		struct vmm_ram ram;
		double us;
		int r;

		if (edu_open(sockets[0], &dev) < 0)
			return -1;
		r = vmm_ram_new(RAM_SIZE, &ram);
		if (r < 0) {
			vfb_dev_close(dev);
			return vmm_fail("guest RAM memfd: %s", strerror(-r));
		}
		r = vfb_dev_dma_map(dev, ram.fd, 0, RAM_IOVA, RAM_SIZE,
				    VFB_DMA_READ | VFB_DMA_WRITE);
		if (vmm_check(dev, r, pass == 1 ? "DMA map" : "DMA map after reconnect") == 0)
			r = edu_dma_round(dev, &ram, 0x1234u * (unsigned)pass, EDU_XFER, &us);
		if (r == 0) {
			fig->dma_bytes += EDU_XFER;
			vmm_say("  connection %d: mapped, DMA round trip matched; disconnecting "
				"without unmapping\n",
				pass);
		}
		/* Leave the mapping in place: the worker must drop it when we go away. */
		vfb_dev_close(dev);
		vmm_ram_free(&ram);
		if (r < 0)
			return -1;
	}
	fig->devices = 1;
	return 0;
}

/* Takes the device into use and waits for the broker to take it away. Exit 0 on an
 * acknowledged removal request, -1 when the worker goes away or nothing happens in 120 s. */
int vmm_hold(char **sockets, struct vmm_figures *fig)
{
	struct vfb_dev *dev;
	struct vmm_ram ram;
	struct vfb_event ev;
	int efd = -1, r;

	if (edu_open(sockets[0], &dev) < 0)
		return -1;
	r = vmm_ram_new(RAM_SIZE, &ram);
	if (r < 0) {
		vfb_dev_close(dev);
		return vmm_fail("guest RAM memfd: %s", strerror(-r));
	}
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = vfb_dev_dma_map(dev, ram.fd, 0, RAM_IOVA, RAM_SIZE, VFB_DMA_READ | VFB_DMA_WRITE);
	if (vmm_check(dev, r, "DMA map") < 0 || edu_msi_enable(dev, efd, true) < 0)
		goto out;
	printf("holding: %u KiB DMA mapped, MSI enabled\n", RAM_SIZE >> 10);
	fflush(stdout);
	for (;;) {
		struct pollfd p = {.fd = vfb_dev_event_fd(dev), .events = POLLIN};

		r = poll(&p, 1, 120000);
		if (r <= 0) {
			r = vmm_fail("no removal request within 120 s");
			goto out;
		}
		r = vfb_dev_next_event(dev, &ev);
		if (r == -EAGAIN)
			continue;
		if (r < 0) {
			r = vmm_fail("worker went away: %s", strerror(-r));
			goto out;
		}
		printf("event: %s\n", vfb_event_kind_name(ev.kind));
		if (ev.kind == VFB_EVENT_REMOVAL_REQUESTED) {
			r = vfb_dev_removal_ack(dev);
			if (vmm_check(dev, r, "removal ack") == 0)
				printf("removal acknowledged\n");
			goto out;
		}
	}
out:
	if (efd >= 0)
		close(efd);
	vfb_dev_close(dev);
	vmm_ram_free(&ram);
	fig->devices = 1;
	return r < 0 ? -1 : 0;
}

/* The session's edu part: DMA, MSI, and a DMA whose completion raises the interrupt. */
int vmm_session_edu(const char *path, struct vmm_figures *fig)
{
	struct vfb_dev *dev;
	int efd, r = -1;
	int64_t n;

	vmm_say("edu: the DMA engine and MSI\n");
	if (edu_open(path, &dev) < 0)
		return -1;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (edu_dma_run(dev, 8, fig) < 0 || edu_msi_run(dev, 32, fig) < 0)
		goto out;
	{
		struct vmm_ram ram;

		if (vmm_ram_new(RAM_SIZE, &ram) < 0)
			goto out;
		r = vfb_dev_dma_map(dev, ram.fd, 0, RAM_IOVA, RAM_SIZE,
				    VFB_DMA_READ | VFB_DMA_WRITE);
		if (vmm_check(dev, r, "DMA map") == 0 && edu_msi_enable(dev, efd, true) == 0) {
			fill(ram.mem, EDU_XFER, 77);
			r = edu_dma(dev, RAM_IOVA, EDU_BUF, EDU_XFER, EDU_DMA_IRQ);
			n = r < 0 ? -1 : vmm_wait_eventfd(efd, 3000);
			if (n > 0) {
				uint32_t st = 0;

				vmm_bar_read32(dev, EDU_BAR, EDU_IRQ_STATUS, &st);
				vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_ACK, st);
				r = (st & EDU_DMA_DONE) ? 0
							: vmm_fail("completion status 0x%x", st);
				fig->interrupts++;
				vmm_say("  a DMA with completion interrupt: the MSI arrived when "
					"the transfer finished\n");
			} else if (r == 0) {
				r = vmm_fail("no completion interrupt within 3 s");
			}
			vfb_dev_dma_unmap(dev, RAM_IOVA, RAM_SIZE);
		} else {
			r = -1;
		}
		vmm_ram_free(&ram);
	}
out:
	close(efd);
	vfb_dev_close(dev);
	return r < 0 ? -1 : 0;
}

/* The loop's window: a second memfd, mapped and unmapped in every iteration. */
#define WIN_IOVA (RAM_IOVA + RAM_SIZE)
#define WIN_SIZE 4096u
/* A bound against a hang, not a timing, for the completion interrupt. The requests keep
 * libvfiobroker's default timeout: one that needs the broker waits the worker's broker wait
 * (30 s, from its HELLO) beyond it, so during a restart the worker's answer comes first. */
#define LOOP_TIMEOUT_MS 60000

/* One iteration: map the window, RAM -> device -> window by DMA with the completion interrupt,
 * compare, unmap. Two of its requests need the broker. */
static int edu_loop_once(struct vfb_dev *dev, struct vmm_ram *ram, struct vmm_ram *win, int efd,
			 struct vmm_loop *l, struct vmm_figures *fig)
{
	uint32_t st = 0, seed = 0x9e3779b9u * (uint32_t)l->iterations;
	int64_t n;
	int r, tries = 0;
	double t0;

	do {
		t0 = vmm_now_us();
		r = vfb_dev_dma_map(dev, win->fd, 0, WIN_IOVA, WIN_SIZE,
				    VFB_DMA_READ | VFB_DMA_WRITE);
		vmm_loop_call(l, t0);
	} while (vmm_loop_retry(l, dev, r, &tries, "DMA map of the window"));
	if (vmm_check(dev, r, "DMA map of the window") < 0)
		return -1;
	fill(ram->mem, EDU_XFER, seed);
	memset(win->mem, 0, EDU_XFER);
	if (edu_dma(dev, RAM_IOVA, EDU_BUF, EDU_XFER, 0) < 0 ||
	    edu_dma(dev, EDU_BUF, WIN_IOVA, EDU_XFER, EDU_DMA_TO_RAM | EDU_DMA_IRQ) < 0)
		return -1;
	n = vmm_wait_eventfd(efd, LOOP_TIMEOUT_MS);
	r = vmm_bar_read32(dev, EDU_BAR, EDU_IRQ_STATUS, &st);
	r = r ?: vmm_bar_write32(dev, EDU_BAR, EDU_IRQ_ACK, st);
	if (vmm_check(dev, r, "acknowledge interrupt") < 0)
		return -1;
	if (n <= 0)
		return vmm_fail("iteration %lu: no completion MSI within %d s", l->iterations,
				LOOP_TIMEOUT_MS / 1000);
	if (!(st & EDU_DMA_DONE))
		return vmm_fail("iteration %lu: completion MSI with status 0x%x", l->iterations,
				st);
	if (memcmp(ram->mem, win->mem, EDU_XFER))
		return vmm_fail("iteration %lu: the window's bytes differ from guest RAM's",
				l->iterations);
	fig->dma_bytes += EDU_XFER;
	fig->interrupts++;
	tries = 0;
	do {
		t0 = vmm_now_us();
		r = vfb_dev_dma_unmap(dev, WIN_IOVA, WIN_SIZE);
		vmm_loop_call(l, t0);
	} while (vmm_loop_retry(l, dev, r, &tries, "DMA unmap of the window"));
	return vmm_check(dev, r, "DMA unmap of the window");
}

/*
 * edu-loop SOCKET SECONDS: guest RAM mapped and MSI routed once (the steady state), then
 * iterations of edu_loop_once until stopped (struct vmm_loop). Meant to run while the broker
 * restarts: requests then wait for the next broker, and nothing may fail.
 */
int vmm_edu_loop(char **args, struct vmm_figures *fig)
{
	struct vmm_ram ram = {.fd = -1}, win = {.fd = -1};
	struct vmm_loop l;
	struct vfb_dev *dev;
	int efd = -1, r;

	if (vmm_loop_init(&l, "edu-loop", args[1]) < 0 || edu_open(args[0], &dev) < 0)
		return -1;
	fig->devices = 1;
	r = vmm_ram_new(RAM_SIZE, &ram);
	r = r ?: vmm_ram_new(WIN_SIZE, &win);
	if (r < 0) {
		vmm_fail("guest RAM: %s", strerror(-r));
		goto out;
	}
	r = -1;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0) {
		vmm_fail("eventfd: %s", strerror(errno));
		goto out;
	}
	if (vmm_check(
		dev,
		vfb_dev_dma_map(dev, ram.fd, 0, RAM_IOVA, RAM_SIZE, VFB_DMA_READ | VFB_DMA_WRITE),
		"DMA map") < 0 ||
	    edu_msi_enable(dev, efd, true) < 0)
		goto out;
	printf("steady: %u KiB mapped at IOVA 0x%llx, MSI enabled\n", RAM_SIZE >> 10, RAM_IOVA);
	fflush(stdout);
	while (vmm_loop_next(&l, fig))
		if (edu_loop_once(dev, &ram, &win, efd, &l, fig) < 0)
			goto out;
	vmm_loop_end(&l, fig);
	r = 0;
out:
	if (efd >= 0)
		close(efd);
	vfb_dev_close(dev);
	vmm_ram_free(&win);
	vmm_ram_free(&ram);
	return r;
}
