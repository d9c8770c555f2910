/*
 * bind: PCI addresses and the sysfs files of PCI devices and IOMMU groups.
 *
 * Trusts: sysfs (the kernel) for what it reports. Does not trust BDF strings: each one is
 * parsed strictly before it becomes part of a path, and directory entries read from sysfs are
 * parsed the same way before they are used or reported.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"
#include "bind.h"

#define VFIO_PCI_DRIVER "vfio-pci"

/* The last component of the symlink at `path` into buf; -ENOENT when there is no link. */
static int link_basename(const char *path, char *buf, size_t len)
{
	char target[512];
	const char *base;
	ssize_t n;

	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, base);
	return 0;
}

static int device_path(const struct brk_sys *sys, const char *bdf, const char *leaf, char *buf,
		       size_t len)
{
	if (vb_bdf_parse(bdf, VB_BDF_STRICT, NULL) < 0)
		return -EINVAL;
	return brk_sys_path(sys, buf, len, "/sys/bus/pci/devices/%s%s%s", bdf, leaf ? "/" : "",
			    leaf ? leaf : "");
}

static int device_exists(const struct brk_sys *sys, const char *bdf)
{
	char path[512];
	struct stat st;
	int r;

	r = device_path(sys, bdf, NULL, path, sizeof(path));
	if (r < 0)
		return r;
	if (stat(path, &st) < 0)
		return -ENOENT;
	return S_ISDIR(st.st_mode) ? 0 : -ENOENT;
}

int brk_bind_iommu_group(const struct brk_sys *sys, const char *bdf, uint32_t *ret_group,
			 struct vb_err *err)
{
	char path[512], name[32], *end;
	unsigned long nr;
	int r;

	if (!sys)
		sys = &brk_sys_real;
	r = device_exists(sys, bdf);
	if (r == -EINVAL)
		return vb_errf(err, r, "invalid PCI address (want dddd:bb:dd.f, lower-case hex)");
	if (r < 0)
		return vb_errf(err, r, "no PCI device %s", bdf);
	r = device_path(sys, bdf, "iommu_group", path, sizeof(path));
	if (r < 0)
		return vb_errf(err, r, "path too long for %s", bdf);
	r = link_basename(path, name, sizeof(name));
	if (r == -ENOENT)
		return vb_errf(err, -ENODEV,
			       "PCI device %s has no IOMMU group: enable the IOMMU "
			       "(intel_iommu=on or amd_iommu=on)",
			       bdf);
	if (r < 0)
		return vb_errf(err, -EIO, "cannot read the IOMMU group of %s: %s", bdf,
			       strerror(-r));
	errno = 0;
	nr = strtoul(name, &end, 10);
	if (errno || end == name || *end || name[0] < '0' || name[0] > '9' || nr > UINT32_MAX)
		return vb_errf(err, -EIO, "IOMMU group of %s is not a number: %s", bdf, name);
	*ret_group = (uint32_t)nr;
	return 0;
}

int brk_bind_driver(const struct brk_sys *sys, const char *bdf, char *buf, size_t len)
{
	char path[512];
	int r;

	if (!sys)
		sys = &brk_sys_real;
	r = device_exists(sys, bdf);
	if (r < 0)
		return r;
	r = device_path(sys, bdf, "driver", path, sizeof(path));
	if (r < 0)
		return r;
	r = link_basename(path, buf, len);
	if (r == -ENOENT) {
		if (len == 0)
			return -ENAMETOOLONG;
		buf[0] = '\0';
		return 0;
	}
	return r;
}

static int write_file(const char *path, const char *s)
{
	/* No O_TRUNC: sysfs takes each write whole, and on a read-only /sys truncation would turn
	 * an unprivileged caller's EACCES into EROFS. */
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int write_device_file(const struct brk_sys *sys, const char *bdf, const char *leaf,
			     const char *s, struct vb_err *err)
{
	char path[512];
	int r;

	r = device_path(sys, bdf, leaf, path, sizeof(path));
	if (r < 0)
		return vb_errf(err, r, "path too long for %s", bdf);
	r = write_file(path, s);
	if (r < 0)
		return vb_errf(err, -EIO, "writing \"%s\" to %s/%s failed: %s", s, bdf, leaf,
			       strerror(-r));
	return 0;
}

/*
 * Undoes a bind that failed part-way, so that a refused --bind does not cost the host the device:
 * clears driver_override (a newline clears it) and, if the device was taken from its driver,
 * asks the PCI core to probe it again so that the driver gets it back. Best effort: the error
 * the caller reports is the original one.
 */
static void bind_undo(const struct brk_sys *sys, const char *bdf, bool unbound)
{
	char path[512];

	if (device_path(sys, bdf, "driver_override", path, sizeof(path)) == 0)
		(void)write_file(path, "\n");
	if (unbound && brk_sys_path(sys, path, sizeof(path), "/sys/bus/pci/drivers_probe") == 0)
		(void)write_file(path, bdf);
}

int brk_bind_vfio(const struct brk_sys *sys, const char *bdf, struct vb_err *err)
{
	char drv[64], path[512];
	bool unbound = false;
	int r;

	if (!sys)
		sys = &brk_sys_real;
	r = brk_bind_driver(sys, bdf, drv, sizeof(drv));
	if (r == -EINVAL)
		return vb_errf(err, r, "invalid PCI address (want dddd:bb:dd.f, lower-case hex)");
	if (r < 0)
		return vb_errf(err, r == -ENOENT ? r : -EIO, "no PCI device %s", bdf);
	if (strcmp(drv, VFIO_PCI_DRIVER) == 0)
		return 0;
	/* The override first, so that nothing but vfio-pci can claim the device between the
	 * unbind and the probe. */
	r = write_device_file(sys, bdf, "driver_override", VFIO_PCI_DRIVER, err);
	if (r < 0)
		return r;
	if (drv[0]) {
		r = write_device_file(sys, bdf, "driver/unbind", bdf, err);
		if (r < 0) {
			bind_undo(sys, bdf, false);
			return r;
		}
		unbound = true;
	}
	r = brk_sys_path(sys, path, sizeof(path), "/sys/bus/pci/drivers_probe");
	if (r < 0) {
		bind_undo(sys, bdf, unbound);
		return vb_errf(err, r, "path too long");
	}
	r = write_file(path, bdf);
	/* drivers_probe reports the probe's failure; the driver check below says what happened. */
	(void)r;
	r = brk_bind_driver(sys, bdf, drv, sizeof(drv));
	if (r < 0 || strcmp(drv, VFIO_PCI_DRIVER) != 0) {
		vb_errf(err, -EIO,
			"PCI device %s is on driver \"%s\" after drivers_probe, not vfio-pci: "
			"is the vfio-pci module loaded? (driver_override cleared%s)",
			bdf, r < 0 ? "?" : drv, unbound ? ", device probed again" : "");
		bind_undo(sys, bdf, unbound);
		return -EIO;
	}
	return 0;
}

int brk_bind_group_devices(const struct brk_sys *sys, uint32_t nr,
			   int (*fn)(const char *bdf, const char *driver, void *ctx), void *ctx)
{
	char path[512], link[600], drv[64];
	struct dirent *e;
	DIR *dir;
	int n, r = 0;

	if (!sys)
		sys = &brk_sys_real;
	r = brk_sys_path(sys, path, sizeof(path), "/sys/kernel/iommu_groups/%u/devices", nr);
	if (r < 0)
		return r;
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		if (vb_bdf_parse(e->d_name, VB_BDF_STRICT, NULL) < 0)
			continue;
		n = snprintf(link, sizeof(link), "%s/%s/driver", path, e->d_name);
		if (n < 0 || (size_t)n >= sizeof(link) || link_basename(link, drv, sizeof(drv)) < 0)
			drv[0] = '\0';
		r = fn(e->d_name, drv, ctx);
		if (r)
			break;
	}
	closedir(dir);
	return r;
}
