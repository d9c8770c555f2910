/*
 * guest_vfio_available: runs inside the test guest and proves that the legacy VFIO container
 * interface is usable for each PCI device named on the command line, before any broker test
 * relies on it. For each BDF it checks the device is bound to vfio-pci and its IOMMU group is
 * viable; then it opens /dev/vfio/vfio, checks the API version and the type1 extension, attaches
 * every group to one container, selects the IOMMU (type1v2 when offered, else type1) and gets
 * each device's fd to confirm it is a PCI device.
 *
 * Trusts: the kernel (sysfs, the VFIO ioctls). The command line is validated as BDFs.
 * Prints one line per check ("ok: ..." or "FAIL: ..."); exit 0 when every check passed,
 * 1 when any failed, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_DEVICES 64

struct dev {
	const char *bdf;
	int group; /* IOMMU group number, -1 when unknown */
	int group_fd;
	bool usable; /* bound, group viable: worth attaching */
};

static int failures;

/* Prints "FAIL: <message>[: <strerror(err)>]" and counts it; err 0 means no errno applies. */
__attribute__((format(printf, 2, 3))) static void fail(int err, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (err)
		printf(": %s", strerror(err));
	printf("\n");
	failures++;
}

/* Accepts only DDDD:BB:DD.F (lower-case hex) so that it can be pasted into sysfs paths safely. */
static bool bdf_valid(const char *s)
{
	static const char shape[] = "hhhh:hh:hh.h";

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		if (shape[i] == 'h') {
			if (!strchr("0123456789abcdef", s[i]))
				return false;
		} else if (s[i] != shape[i]) {
			return false;
		}
	}
	return true;
}

/* Reads the last path component of a sysfs symlink into out. Returns 0 or a negative errno. */
static int link_basename(const char *bdf, const char *attr, char *out, size_t len)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;
	const char *base;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= len)
		return -ENAMETOOLONG;
	strcpy(out, base);
	return 0;
}

static bool check_driver(const char *bdf)
{
	char drv[NAME_MAX + 1];
	int r = link_basename(bdf, "driver", drv, sizeof(drv));

	if (r == -ENOENT) {
		fail(0, "%s: not bound to vfio-pci (no driver)", bdf);
		return false;
	}
	if (r < 0) {
		fail(-r, "%s: reading the driver link", bdf);
		return false;
	}
	if (strcmp(drv, "vfio-pci") != 0) {
		fail(0, "%s: not bound to vfio-pci (driver %s)", bdf, drv);
		return false;
	}
	printf("ok: %s bound to vfio-pci\n", bdf);
	return true;
}

/* Opens the device's group and requires VFIO_GROUP_FLAGS_VIABLE. */
static bool check_group(struct dev *d)
{
	char grp[NAME_MAX + 1], path[PATH_MAX];
	struct vfio_group_status st = {.argsz = sizeof(st)};
	char *end;
	long n;
	int r = link_basename(d->bdf, "iommu_group", grp, sizeof(grp));

	if (r < 0) {
		fail(-r, "%s: no IOMMU group (is the IOMMU on?)", d->bdf);
		return false;
	}
	n = strtol(grp, &end, 10);
	if (*end || end == grp || n < 0 || n > INT_MAX) {
		fail(0, "%s: odd IOMMU group name %s", d->bdf, grp);
		return false;
	}
	d->group = (int)n;
	snprintf(path, sizeof(path), "/dev/vfio/%d", d->group);
	d->group_fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->group_fd < 0) {
		fail(errno, "%s: open %s", d->bdf, path);
		return false;
	}
	if (ioctl(d->group_fd, VFIO_GROUP_GET_STATUS, &st) < 0) {
		fail(errno, "%s: VFIO_GROUP_GET_STATUS on %s", d->bdf, path);
		return false;
	}
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		fail(0, "%s: IOMMU group %d is not viable (a device in it is not on vfio-pci)",
		     d->bdf, d->group);
		return false;
	}
	printf("ok: %s IOMMU group %d viable\n", d->bdf, d->group);
	return true;
}

/* Opens the container and checks the API version and the type1 extensions. Returns the
 * IOMMU type to select (0 when none) and the container fd in *fd (-1 on failure). */
static int check_container(int *fd)
{
	int version, type = 0;

	*fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (*fd < 0) {
		fail(errno, "open /dev/vfio/vfio");
		return 0;
	}
	version = ioctl(*fd, VFIO_GET_API_VERSION);
	if (version != VFIO_API_VERSION) {
		printf("FAIL: VFIO_GET_API_VERSION is %d, this program knows %d\n", version,
		       VFIO_API_VERSION);
		failures++;
		return 0;
	}
	printf("ok: VFIO API version %d\n", version);
	if (ioctl(*fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) <= 0) {
		fail(0, "VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU): not supported");
		return 0;
	}
	type = VFIO_TYPE1_IOMMU;
	printf("ok: type1 IOMMU supported\n");
	if (ioctl(*fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0) {
		type = VFIO_TYPE1v2_IOMMU;
		printf("ok: type1v2 IOMMU supported\n");
	} else {
		printf("note: type1v2 IOMMU not supported\n");
	}
	return type;
}

/* Attaches the groups (each once), selects the IOMMU and gets each device's fd. */
static void check_attach(struct dev *devs, int n, int container, int type)
{
	struct vfio_device_info info;
	int attached = 0;

	for (int i = 0; i < n; i++) {
		bool dup = false;

		if (!devs[i].usable)
			continue;
		for (int j = 0; j < i; j++)
			dup |= devs[j].usable && devs[j].group == devs[i].group;
		if (dup)
			continue;
		if (ioctl(devs[i].group_fd, VFIO_GROUP_SET_CONTAINER, &container) < 0) {
			fail(errno, "%s: VFIO_GROUP_SET_CONTAINER", devs[i].bdf);
			devs[i].usable = false;
			continue;
		}
		attached++;
	}
	if (!attached)
		return;
	if (ioctl(container, VFIO_SET_IOMMU, type) < 0) {
		fail(errno, "VFIO_SET_IOMMU(%s)", type == VFIO_TYPE1v2_IOMMU ? "type1v2" : "type1");
		return;
	}
	printf("ok: IOMMU %s set on the container\n",
	       type == VFIO_TYPE1v2_IOMMU ? "type1v2" : "type1");
	for (int i = 0; i < n; i++) {
		int fd;

		if (!devs[i].usable)
			continue;
		fd = ioctl(devs[i].group_fd, VFIO_GROUP_GET_DEVICE_FD, devs[i].bdf);
		if (fd < 0) {
			fail(errno, "%s: VFIO_GROUP_GET_DEVICE_FD", devs[i].bdf);
			continue;
		}
		memset(&info, 0, sizeof(info));
		info.argsz = sizeof(info);
		if (ioctl(fd, VFIO_DEVICE_GET_INFO, &info) < 0)
			fail(errno, "%s: VFIO_DEVICE_GET_INFO", devs[i].bdf);
		else if (!(info.flags & VFIO_DEVICE_FLAGS_PCI))
			fail(0, "%s: device fd is not a PCI device", devs[i].bdf);
		else
			printf("ok: %s device fd: %u regions, %u irq types\n", devs[i].bdf,
			       info.num_regions, info.num_irqs);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	struct dev devs[MAX_DEVICES];
	int n = argc - 1, container, type;

	if (n < 1 || n > MAX_DEVICES) {
		fprintf(stderr, "usage: %s BDF... (1 to %d PCI addresses, e.g. 0000:01:00.0)\n",
			argv[0], MAX_DEVICES);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		if (!bdf_valid(argv[i + 1])) {
			fprintf(stderr, "%s: not a PCI address: '%s' (want DDDD:BB:DD.F)\n",
				argv[0], argv[i + 1]);
			return 2;
		}
		devs[i] = (struct dev){.bdf = argv[i + 1], .group = -1, .group_fd = -1};
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < n; i++)
		devs[i].usable = check_driver(devs[i].bdf) && check_group(&devs[i]);
	type = check_container(&container);
	if (type)
		check_attach(devs, n, container, type);
	for (int i = 0; i < n; i++)
		if (devs[i].group_fd >= 0)
			close(devs[i].group_fd);
	if (container >= 0)
		close(container);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "ok", failures);
	return failures ? 1 : 0;
}
