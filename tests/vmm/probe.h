/*
 * probe: what vfio-probe-vmm's two files share. probe_vmm.c reports (one line per check), reads
 * the host's view of a device (sysfs) and the VMM's (config space through its worker), and runs
 * the whole probe of each device; probe_checks.c holds the checks themselves, each comparing
 * the two views (see probe_vmm.c's opening comment for what each one proves).
 */
#ifndef VB_TESTS_VMM_PROBE_H
#define VB_TESTS_VMM_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vfiobroker/client.h>

#define CFG_MAX	       4096
#define CHAIN_MAX      64
#define REG_WINDOW     4096u /* bytes of each BAR (or area) compared register by register */
#define SETTLE_TRIES   600   /* x 100 ms: how long the broker may take to close a worker's fds */
#define PROBE_VM       "probe"
#define ROM_ADDR_MASK  0xfffff800u
#define IO_ADDR_MASK   0xfffffffcu
#define MEM_ADDR_MASK  0xfffffff0u
#define BAR_TYPE_64BIT 0x4u

struct probe {
	const char *bdf;
	char sysdir[128];
	uint8_t raw[CFG_MAX]; /* sysfs config as root reads it */
	size_t rawlen;
	struct vfb_dev *dev;
	unsigned ok, failed;
};

struct cap {
	uint16_t off;
	uint16_t id;
};

/* One line per check on stdout: "ok:" counts a pass, "FAIL:" a failure, "note:" what could not be
 * checked; why() is errno `r` with the worker's last message. */
void pass(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void note(const struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail(struct probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *why(struct probe *p, int r);
/* `n` bytes little endian. */
uint32_t le(const uint8_t *b, size_t n);

/* The host's view: the device's sysfs attribute `attr` as text, as a number, its raw config
 * (into p->raw), and line `index` of `resource`. */
int sys_read(const struct probe *p, const char *attr, char *buf, size_t len);
int sys_hex(const struct probe *p, const char *attr, uint64_t *ret);
int sys_config(struct probe *p);
int sys_resource(const struct probe *p, unsigned index, uint64_t *size, uint64_t *flags);
/* The VMM's view: config space through the worker. */
int cfg_rd(struct probe *p, uint32_t off, size_t n, uint32_t *val);
int cfg_wr(struct probe *p, uint32_t off, size_t n, uint32_t val);

/* probe_checks.c: the checks, in the order probe_device() runs them. */
int ident_cfg(struct probe *p, const char *when);
void ident(struct probe *p, const struct vfb_device_info *info);
void bars(struct probe *p);
void readonly(struct probe *p);
void caps(struct probe *p);
void irqs(struct probe *p);
void regs(struct probe *p);
void reset(struct probe *p, const struct vfb_device_info *info);

#endif
