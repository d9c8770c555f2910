/*
 * probe_checks: the checks of vfio-probe-vmm (probe_vmm.c says what each proves): ident, bars,
 * readonly, caps, irqs, regs and reset, each comparing what the VMM sees through the broker and
 * the device's worker with the host's own view of the device. Reads only: config registers it
 * writes are restored, BAR registers are never written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <vfiobroker/client.h>

#include "base.h"
#include "probe.h"

/* ---- ident */

struct id_field {
	const char *attr; /* sysfs attribute */
	uint32_t off;	  /* config offset */
	size_t len;
};

static const struct id_field id_fields[] = {
    {"vendor", PCI_VENDOR_ID, 2},
    {"device", PCI_DEVICE_ID, 2},
    {"subsystem_vendor", PCI_SUBSYSTEM_VENDOR_ID, 2},
    {"subsystem_device", PCI_SUBSYSTEM_ID, 2},
    {"class", PCI_CLASS_PROG, 3},
    {"revision", PCI_REVISION_ID, 1},
};

int ident_cfg(struct probe *p, const char *when)
{
	int bad = 0;

	for (size_t i = 0; i < ARRAY_SIZE(id_fields); i++) {
		const struct id_field *f = &id_fields[i];
		uint64_t want;
		uint32_t got;
		int r = sys_hex(p, f->attr, &want);

		if (r < 0) {
			fail(p, "ident: sysfs %s: %s", f->attr, strerror(-r));
			bad = -1;
			continue;
		}
		r = cfg_rd(p, f->off, f->len, &got);
		if (r < 0 || got != want) {
			fail(
			    p,
			    "ident%s: %s reads 0x%x through the worker (%s), sysfs says 0x%" PRIx64,
			    when, f->attr, got, r < 0 ? why(p, r) : "read", want);
			bad = -1;
		}
	}
	return bad;
}

void ident(struct probe *p, const struct vfb_device_info *info)
{
	uint64_t v[4];
	const char *attrs[4] = {"vendor", "device", "subsystem_vendor", "subsystem_device"};
	uint32_t got[4] = {info->vendor_id, info->device_id, info->subsystem_vendor_id,
			   info->subsystem_id};
	uint64_t cls;
	int bad = 0;

	for (int i = 0; i < 4; i++) {
		if (sys_hex(p, attrs[i], &v[i]) < 0 || v[i] != got[i]) {
			fail(p, "ident: DEVICE_INFO %s 0x%x, sysfs 0x%" PRIx64, attrs[i], got[i],
			     v[i]);
			bad = 1;
		}
	}
	if (sys_hex(p, "class", &cls) < 0 || cls != info->class_code) {
		fail(p, "ident: DEVICE_INFO class 0x%06x, sysfs 0x%06" PRIx64, info->class_code,
		     cls);
		bad = 1;
	}
	if (strcmp(info->bdf, p->bdf)) {
		fail(p, "ident: DEVICE_INFO names %s", info->bdf);
		bad = 1;
	}
	if (ident_cfg(p, "") < 0)
		bad = 1;
	if (!bad)
		pass(p,
		     "ident: %04x:%04x subsystem %04x:%04x class %06x, DEVICE_INFO and config "
		     "match sysfs",
		     info->vendor_id, info->device_id, info->subsystem_vendor_id,
		     info->subsystem_id, info->class_code);
}

/* ---- bars */

/* Writes `probe` to the BAR register(s) at `off` and returns what reads back; restores. */
static int bar_probe(struct probe *p, uint32_t off, bool is64, uint32_t probe, uint64_t *ret)
{
	uint32_t lo = 0, hi = 0, slo = 0, shi = 0, rlo = 0, rhi = 0;
	int r;

	r = cfg_rd(p, off, 4, &lo);
	r = r ?: is64 ? cfg_rd(p, off + 4, 4, &hi) : 0;
	r = r ?: cfg_wr(p, off, 4, probe);
	r = r ?: is64 ? cfg_wr(p, off + 4, 4, 0xffffffffu) : 0;
	r = r ?: cfg_rd(p, off, 4, &slo);
	r = r ?: is64 ? cfg_rd(p, off + 4, 4, &shi) : 0;
	r = r ?: cfg_wr(p, off, 4, lo);
	r = r ?: is64 ? cfg_wr(p, off + 4, 4, hi) : 0;
	r = r ?: cfg_rd(p, off, 4, &rlo);
	r = r ?: is64 ? cfg_rd(p, off + 4, 4, &rhi) : 0;
	if (r < 0)
		return r;
	if (rlo != lo || rhi != hi)
		return -EILSEQ; /* not restored */
	*ret = (uint64_t)shi << 32 | slo;
	return 0;
}

static void bar_one(struct probe *p, unsigned i, bool *skip_next)
{
	struct vfb_region_info ri;
	uint64_t sys_size, sys_flags, readback, size = 0;
	uint32_t off =
	    i == VFIO_PCI_ROM_REGION_INDEX ? PCI_ROM_ADDRESS : PCI_BASE_ADDRESS_0 + 4 * i;
	uint32_t orig;
	bool is64 = false, io = false;
	int r;

	r = vfb_dev_region_info(p->dev, i, &ri);
	if (r < 0) {
		fail(p, "bars: REGION_INFO %u: %s", i, why(p, r));
		return;
	}
	if (ri.mmap_fd >= 0)
		close(ri.mmap_fd);
	r = sys_resource(p, i, &sys_size, &sys_flags);
	if (r < 0) {
		fail(p, "bars: sysfs resource line %u: %s", i, strerror(-r));
		return;
	}
	if (ri.size != sys_size) {
		fail(p, "bars: region %u is 0x%" PRIx64 " bytes, sysfs resource says 0x%" PRIx64, i,
		     ri.size, sys_size);
		return;
	}
	r = cfg_rd(p, off, 4, &orig);
	if (r < 0) {
		fail(p, "bars: read BAR %u: %s", i, why(p, r));
		return;
	}
	if (i != VFIO_PCI_ROM_REGION_INDEX) {
		io = orig & PCI_BASE_ADDRESS_SPACE_IO;
		is64 = !io && (orig & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == BAR_TYPE_64BIT;
	}
	r = bar_probe(p, off, is64, i == VFIO_PCI_ROM_REGION_INDEX ? ROM_ADDR_MASK : 0xffffffffu,
		      &readback);
	if (r < 0) {
		fail(p, "bars: sizing BAR %u: %s", i,
		     r == -EILSEQ ? "the original value did not come back" : why(p, r));
		return;
	}
	if (sys_size) {
		uint64_t mask;

		if (i == VFIO_PCI_ROM_REGION_INDEX)
			mask = readback & ROM_ADDR_MASK;
		else if (io)
			/* A 16-bit I/O decoder reads the upper half as 0. */
			mask = (readback & IO_ADDR_MASK) |
			       ((readback & 0xffff0000u) ? 0 : 0xffff0000u);
		else
			mask = readback & (is64 ? ~(uint64_t)0xf : MEM_ADDR_MASK);
		if (!is64)
			mask |= 0xffffffff00000000ull;
		size = ~mask + 1;
		if (i != VFIO_PCI_ROM_REGION_INDEX && (readback & 0xf) != (orig & 0xf)) {
			fail(p, "bars: sizing BAR %u changed its type bits 0x%x -> 0x%x", i,
			     orig & 0xf, (uint32_t)readback & 0xf);
			return;
		}
	} else if (readback != 0) {
		fail(p, "bars: unused BAR %u reads 0x%" PRIx64 " after an all-ones write", i,
		     readback);
		return;
	}
	if (size != sys_size) {
		fail(p,
		     "bars: BAR %u sizes to 0x%" PRIx64 " (read back 0x%" PRIx64
		     "), region 0x%" PRIx64,
		     i, size, readback, sys_size);
		return;
	}
	if (sys_size)
		pass(p,
		     "bars: %s %u: 0x%" PRIx64
		     " bytes%s%s, sizing probe and region agree with sysfs",
		     i == VFIO_PCI_ROM_REGION_INDEX ? "ROM" : "BAR", i, size,
		     is64 ? ", 64-bit" : "", io ? ", I/O" : "");
	*skip_next = is64;
}

void bars(struct probe *p)
{
	bool skip = false;

	for (unsigned i = 0; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
		if (skip) {
			skip = false; /* the upper half of a 64-bit BAR */
			continue;
		}
		bar_one(p, i, &skip);
	}
}

/* ---- readonly */

struct ro_field {
	const char *name;
	uint32_t off;
	size_t len;
};

static const struct ro_field ro_fields[] = {
    {"vendor id", PCI_VENDOR_ID, 2},
    {"device id", PCI_DEVICE_ID, 2},
    {"revision", PCI_REVISION_ID, 1},
    {"class code", PCI_CLASS_PROG, 3},
    {"header type", PCI_HEADER_TYPE, 1},
    {"subsystem ids", PCI_SUBSYSTEM_VENDOR_ID, 4},
    {"capability pointer", PCI_CAPABILITY_LIST, 1},
    {"interrupt pin", PCI_INTERRUPT_PIN, 1},
};

void readonly(struct probe *p)
{
	uint8_t before[64];
	int bad = 0;

	memcpy(before, p->raw, sizeof(before));
	for (size_t i = 0; i < ARRAY_SIZE(ro_fields); i++) {
		const struct ro_field *f = &ro_fields[i];
		uint32_t v = 0, after = 0,
			 mask = f->len == 4 ? 0xffffffffu : (1u << (8 * f->len)) - 1;
		int r = cfg_rd(p, f->off, f->len, &v);

		r = r ?: cfg_wr(p, f->off, f->len, ~v & mask);
		r = r ?: cfg_rd(p, f->off, f->len, &after);
		if (r < 0 || after != v) {
			fail(p, "readonly: %s 0x%x reads 0x%x after writing 0x%x (%s)", f->name, v,
			     after, ~v & mask, r < 0 ? why(p, r) : "changed");
			bad = 1;
		}
	}
	if (sys_config(p) < 0) {
		fail(p, "readonly: cannot read sysfs config again");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ro_fields); i++) {
		const struct ro_field *f = &ro_fields[i];

		if (memcmp(before + f->off, p->raw + f->off, f->len)) {
			fail(p, "readonly: the device's own %s changed", f->name);
			bad = 1;
		}
	}
	if (!bad)
		pass(
		    p,
		    "readonly: %zu read-only fields keep their value, in the worker and the device",
		    ARRAY_SIZE(ro_fields));
}

/* ---- caps */

/* Walks a chain in `cfg` (len bytes); ext selects the extended list. */
static int chain(const uint8_t *cfg, size_t len, bool ext, struct cap *caps, size_t *n)
{
	uint32_t pos;

	*n = 0;
	if (ext) {
		if (len < 0x104)
			return 0;
		pos = 0x100;
		while (pos) {
			uint32_t h;

			if (pos < 0x100 || pos + 4 > len || *n >= CHAIN_MAX)
				return -ELOOP;
			h = le(cfg + pos, 4);
			if (h == 0 || h == 0xffffffffu)
				return 0;
			caps[(*n)++] = (struct cap){(uint16_t)pos, (uint16_t)(h & 0xffff)};
			pos = h >> 20 & 0xffc;
		}
		return 0;
	}
	if (!(le(cfg + PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return 0;
	pos = cfg[PCI_CAPABILITY_LIST] & 0xfc;
	while (pos) {
		if (pos < 0x40 || pos + 2 > 0x100 || *n >= CHAIN_MAX)
			return -ELOOP;
		caps[(*n)++] = (struct cap){(uint16_t)pos, cfg[pos]};
		pos = cfg[pos + 1] & 0xfc;
	}
	return 0;
}

/* Capabilities a VMM cannot drive the device without: the worker virtualizes them, so hiding
 * one would be a defect, not a policy. */
static bool must_show(bool ext, uint16_t id)
{
	if (ext)
		return id == PCI_EXT_CAP_ID_ERR;
	return id == PCI_CAP_ID_PM || id == PCI_CAP_ID_MSI || id == PCI_CAP_ID_MSIX ||
	       id == PCI_CAP_ID_EXP;
}

static int virt_config(struct probe *p, uint8_t *v, size_t len)
{
	int r = vfb_dev_cfg_read(p->dev, 0, v, len < 256 ? len : 256);

	if (r >= 0 && len > 256)
		r = vfb_dev_cfg_read(p->dev, 256, v + 256, len - 256);
	return r;
}

/* The chains as "std 10@40 05@50 ... ext 0001@100" for comparing before and after a reset. */
static int chains_text(struct probe *p, char *out, size_t outlen)
{
	static uint8_t v[CFG_MAX];
	struct cap caps[CHAIN_MAX];
	size_t n, used = 0;
	int r = virt_config(p, v, p->rawlen);

	out[0] = 0;
	for (int ext = 0; r >= 0 && ext < 2; ext++) {
		r = chain(v, p->rawlen, ext, caps, &n);
		for (size_t i = 0; r >= 0 && i <= n && used < outlen; i++) {
			if (i == 0)
				used += (size_t)snprintf(out + used, outlen - used, "%s",
							 ext ? " ext" : "std");
			else
				used += (size_t)snprintf(out + used, outlen - used, " %02x@%x",
							 caps[i - 1].id, caps[i - 1].off);
		}
	}
	/* Two chains of CHAIN_MAX entries fit the callers' buffers; a longer text would be cut,
	 * and a cut text must not compare equal by accident. */
	return r < 0 ? r : used < outlen ? 0 : -ENOBUFS;
}

static int irq_count(struct probe *p, uint32_t index, uint32_t *count)
{
	struct vfb_irq_info ii;
	int r = vfb_dev_irq_info(p->dev, index, &ii);

	*count = r < 0 ? 0 : ii.count;
	return r;
}

/* MSI and MSI-X geometry: what the guest reads must be the device's, and IRQ_INFO must agree. */
static int msi_geometry(struct probe *p, const uint8_t *v, const struct cap *c)
{
	uint32_t cnt = 0, want;
	uint16_t vc = (uint16_t)le(v + c->off + 2, 2), rc = (uint16_t)le(p->raw + c->off + 2, 2);

	if (c->id == PCI_CAP_ID_MSI) {
		uint16_t bits = PCI_MSI_FLAGS_QMASK | PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT;

		if ((vc & bits) != (rc & bits))
			return fail(p, "caps: MSI control 0x%04x, the device's 0x%04x", vc, rc), -1;
		want = 1u << ((vc & PCI_MSI_FLAGS_QMASK) >> 1);
		if (irq_count(p, VFIO_PCI_MSI_IRQ_INDEX, &cnt) < 0 || cnt != want)
			return fail(p, "caps: IRQ_INFO MSI count %u, capability says %u", cnt,
				    want),
			       -1;
		return 0;
	}
	if ((vc & PCI_MSIX_FLAGS_QSIZE) != (rc & PCI_MSIX_FLAGS_QSIZE) ||
	    memcmp(v + c->off + 4, p->raw + c->off + 4, 8))
		return fail(p, "caps: MSI-X table size/BIR/offsets differ from the device's"), -1;
	want = (vc & PCI_MSIX_FLAGS_QSIZE) + 1u;
	if (irq_count(p, VFIO_PCI_MSIX_IRQ_INDEX, &cnt) < 0 || cnt != want)
		return fail(p, "caps: IRQ_INFO MSI-X count %u, capability says %u", cnt, want), -1;
	return 0;
}

void caps(struct probe *p)
{
	static uint8_t v[CFG_MAX];
	struct cap raw[CHAIN_MAX], virt[CHAIN_MAX];
	size_t nraw, nvirt, hidden = 0, shown = 0;
	int r = virt_config(p, v, p->rawlen), bad = 0;

	if (r < 0) {
		fail(p, "caps: reading config space: %s", why(p, r));
		return;
	}
	for (int ext = 0; ext < 2; ext++) {
		const char *kind = ext ? "extended" : "standard";
		size_t j = 0;

		if (chain(p->raw, p->rawlen, ext, raw, &nraw) < 0) {
			fail(p, "caps: the device's own %s chain loops", kind);
			bad = 1;
			continue;
		}
		if (chain(v, p->rawlen, ext, virt, &nvirt) < 0) {
			fail(p, "caps: the %s chain the worker shows loops or leaves its space",
			     kind);
			bad = 1;
			continue;
		}
		for (size_t i = 0; i < nvirt; i++) {
			/* A hidden first extended capability leaves a header with id 0 at 0x100. */
			if (ext && virt[i].off == 0x100 && virt[i].id == 0)
				continue;
			while (j < nraw && raw[j].off != virt[i].off) {
				if (must_show(ext, raw[j].id)) {
					fail(p, "caps: %s capability %#x at %#x is hidden", kind,
					     raw[j].id, raw[j].off);
					bad = 1;
				}
				hidden++, j++;
			}
			if (j == nraw || raw[j].id != virt[i].id) {
				fail(p, "caps: %s capability %#x at %#x is not the device's (%s)",
				     kind, virt[i].id, virt[i].off,
				     j == nraw ? "no such offset, or out of order"
					       : "another id there");
				bad = 1;
				break;
			}
			if (!ext &&
			    (virt[i].id == PCI_CAP_ID_MSI || virt[i].id == PCI_CAP_ID_MSIX) &&
			    msi_geometry(p, v, &virt[i]) < 0)
				bad = 1;
			shown++, j++;
		}
		for (; j < nraw; j++, hidden++) {
			if (must_show(ext, raw[j].id)) {
				fail(p, "caps: %s capability %#x at %#x is hidden", kind, raw[j].id,
				     raw[j].off);
				bad = 1;
			}
		}
	}
	if (!bad)
		pass(
		    p,
		    "caps: %zu capabilities shown at the device's offsets in its order, %zu hidden",
		    shown, hidden);
}

/* ---- irqs */

void irqs(struct probe *p)
{
	uint32_t intx = 0;
	int r = irq_count(p, VFIO_PCI_INTX_IRQ_INDEX, &intx);
	bool pin = p->raw[PCI_INTERRUPT_PIN] != 0;

	if (r < 0)
		fail(p, "irqs: IRQ_INFO INTx: %s", why(p, r));
	else if (intx != (pin ? 1u : 0u))
		fail(p, "irqs: IRQ_INFO INTx count %u, interrupt pin %u", intx,
		     p->raw[PCI_INTERRUPT_PIN]);
	else
		pass(p, "irqs: INTx count %u for interrupt pin %u", intx,
		     p->raw[PCI_INTERRUPT_PIN]);
}

/* ---- regs */

struct cmp {
	unsigned same, volatile_, differ;
	uint64_t first_off;
	uint32_t first_t, first_m;
};

/* t1, then the reference, then t2: a reference equal to either trapped read agrees; a register
 * whose two trapped reads differ is volatile and not judged. */
static void cmp_add(struct cmp *c, uint64_t off, uint32_t t1, uint32_t ref, uint32_t t2)
{
	if (t1 != t2)
		c->volatile_++;
	else if (ref == t1)
		c->same++;
	else if (!c->differ++) {
		c->first_off = off;
		c->first_t = t1;
		c->first_m = ref;
	}
}

static void cmp_report(struct probe *p, unsigned bar, const char *ref, const struct cmp *c)
{
	if (c->differ || !c->same)
		fail(p,
		     "regs: BAR %u: %u registers differ between trapped and %s reads (first at "
		     "0x%" PRIx64 ": 0x%08x trapped, 0x%08x %s), %u agree, %u volatile",
		     bar, c->differ, ref, c->first_off, c->first_t, c->first_m, ref, c->same,
		     c->volatile_);
	else
		pass(p, "regs: BAR %u: %u registers read the same trapped and %s, %u volatile", bar,
		     c->same, ref, c->volatile_);
}

static int trapped32(struct probe *p, unsigned bar, uint64_t off, uint32_t *v)
{
	uint8_t b[4];
	int r = vfb_dev_region_read(p->dev, bar, off, b, 4);

	*v = le(b, 4);
	return r;
}

static void regs_mapped(struct probe *p, const struct vfb_region_info *ri)
{
	struct cmp c = {0};

	for (uint32_t a = 0; a < ri->nareas; a++) {
		uint64_t len = ri->areas[a].size < REG_WINDOW ? ri->areas[a].size : REG_WINDOW;
		volatile uint32_t *m = mmap(NULL, ri->areas[a].size, PROT_READ, MAP_SHARED,
					    ri->mmap_fd, (off_t)(ri->offset + ri->areas[a].offset));

		if (m == MAP_FAILED) {
			fail(p, "regs: BAR %u: mmap area %u: %s", ri->index, a, strerror(errno));
			return;
		}
		for (uint64_t off = 0; off + 4 <= len; off += 4) {
			uint64_t at = ri->areas[a].offset + off;
			uint32_t t1 = 0, t2 = 0, mv;
			int r = trapped32(p, ri->index, at, &t1);

			mv = m[off / 4];
			r = r ?: trapped32(p, ri->index, at, &t2);
			if (r < 0) {
				fail(p, "regs: BAR %u: trapped read at 0x%" PRIx64 ": %s",
				     ri->index, at, why(p, r));
				munmap((void *)m, ri->areas[a].size);
				return;
			}
			cmp_add(&c, at, t1, mv, t2);
		}
		munmap((void *)m, ri->areas[a].size);
	}
	cmp_report(p, ri->index, "mapped", &c);
}

static void regs_io(struct probe *p, const struct vfb_region_info *ri)
{
	struct cmp c = {0};
	char path[192];
	uint64_t len = ri->size < REG_WINDOW ? ri->size : REG_WINDOW;
	int fd;

	snprintf(path, sizeof(path), "%s/resource%u", p->sysdir, ri->index);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(p, "regs: BAR %u: %s: %s", ri->index, path, strerror(errno));
		return;
	}
	for (uint64_t off = 0; off + 4 <= len; off += 4) {
		uint32_t t1 = 0, t2 = 0, hv = 0;
		int r = trapped32(p, ri->index, off, &t1);

		if (r >= 0 && pread(fd, &hv, 4, (off_t)off) != 4)
			r = -errno ?: -EIO;
		r = r ?: trapped32(p, ri->index, off, &t2);
		if (r < 0) {
			fail(p, "regs: BAR %u: read at 0x%" PRIx64 ": %s", ri->index, off,
			     why(p, r));
			close(fd);
			return;
		}
		cmp_add(&c, off, t1, hv, t2);
	}
	close(fd);
	cmp_report(p, ri->index, "host port", &c);
}

void regs(struct probe *p)
{
	uint32_t cmd;
	int r = cfg_rd(p, PCI_COMMAND, 2, &cmd), tested = 0;

	/* Decoding on, as a guest driver would: VFIO refuses BAR accesses with it off. */
	r = r ?: cfg_wr(p, PCI_COMMAND, 2, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	if (r < 0) {
		fail(p, "regs: enabling decoding: %s", why(p, r));
		return;
	}
	for (unsigned i = 0; i < VFIO_PCI_ROM_REGION_INDEX; i++) {
		struct vfb_region_info ri;

		r = vfb_dev_region_info(p->dev, i, &ri);
		if (r < 0) {
			fail(p, "regs: REGION_INFO %u: %s", i, why(p, r));
			continue;
		}
		if (ri.size && ri.mmap_fd >= 0 && ri.nareas) {
			regs_mapped(p, &ri);
			tested++;
		} else if (ri.size &&
			   !(p->raw[PCI_BASE_ADDRESS_0 + 4 * i] & PCI_BASE_ADDRESS_SPACE_IO)) {
			/* No mmap offered (smaller than a page, or all MSI-X table and PBA), and
			 * sysfs refuses to map a region vfio-pci holds. Nothing to compare with:
			 * said, not counted. */
			note(p,
			     "regs: BAR %u: no mapping offered, nothing to compare trapped reads "
			     "with",
			     i);
		} else if (ri.size) {
			regs_io(p, &ri);
			tested++;
		}
		if (ri.mmap_fd >= 0)
			close(ri.mmap_fd);
	}
	r = cfg_wr(p, PCI_COMMAND, 2, cmd);
	if (r < 0)
		fail(p, "regs: restoring Command: %s", why(p, r));
	if (!tested)
		note(p, "regs: no BAR with a mapping or I/O ports to compare against");
}

/* ---- reset */

void reset(struct probe *p, const struct vfb_device_info *info)
{
	static char before[2048], after[2048];
	int r;

	if (!(info->flags & VFIO_DEVICE_FLAGS_RESET)) {
		pass(p, "reset: the device cannot reset (no VFIO_DEVICE_FLAGS_RESET)");
		return;
	}
	r = chains_text(p, before, sizeof(before));
	r = r ?: vfb_dev_reset(p->dev);
	r = r ?: chains_text(p, after, sizeof(after));
	if (r < 0) {
		fail(p, "reset: %s", why(p, r));
		return;
	}
	if (strcmp(before, after))
		fail(p, "reset: capability chains changed: [%s] -> [%s]", before, after);
	else if (ident_cfg(p, " after reset") == 0)
		pass(p, "reset: identification and chains unchanged [%s]", before);
}
