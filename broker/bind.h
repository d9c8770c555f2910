/*
 * bind: PCI devices in sysfs. A device's IOMMU group number and current
 * driver, the devices of an IOMMU group, and the optional rebinding of an allowed device to
 * vfio-pci (driver_override, unbind, drivers_probe).
 *
 * A BDF string from the orchestrator is validated before it is used in any path: the strict
 * form of base/bdf.h ("dddd:bb:dd.f", lower-case hex). Paths are under sys->root.
 */
#ifndef VB_BROKER_BIND_H
#define VB_BROKER_BIND_H

#include <stddef.h>
#include <stdint.h>

#include "bdf.h"
#include "sys.h"

/* The IOMMU group of the device (/sys/bus/pci/devices/BDF/iommu_group). Errors: -EINVAL (bad
 * BDF), -ENOENT (no such PCI device), -ENODEV (the device has no IOMMU group: IOMMU off, boot
 * with intel_iommu=on / amd_iommu=on), -EIO (unreadable link). */
int brk_bind_iommu_group(const struct brk_sys *sys, const char *bdf, uint32_t *ret_group,
			 struct vb_err *err);

/* The name of the driver bound to the device, "" when none. Errors: -EINVAL (bad BDF),
 * -ENOENT (no such device), -ENAMETOOLONG (buf too small). */
int brk_bind_driver(const struct brk_sys *sys, const char *bdf, char *buf, size_t len);

/* Makes vfio-pci the device's driver: nothing to do when it already is; else writes "vfio-pci"
 * to driver_override, unbinds the current driver, asks drivers_probe, and checks that the
 * device ended up on vfio-pci. Errors: -EINVAL, -ENOENT, -EIO (a sysfs write failed, or the
 * device is not on vfio-pci afterwards: is the vfio-pci module loaded?). */
int brk_bind_vfio(const struct brk_sys *sys, const char *bdf, struct vb_err *err);

/* Calls fn(bdf, driver, ctx) for each PCI device of IOMMU group `nr` (/sys/kernel/iommu_groups/
 * nr/devices), driver "" when unbound; stops early when fn returns non-zero and returns that.
 * Entries that are not valid BDFs are skipped. Errors: -ENOENT (no such group). */
int brk_bind_group_devices(const struct brk_sys *sys, uint32_t nr,
			   int (*fn)(const char *bdf, const char *driver, void *ctx), void *ctx);

#endif
