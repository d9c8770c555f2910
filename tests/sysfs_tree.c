/*
 * sysfs_tree: the fake /sys and /dev trees of the broker core's host tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sysfs_tree.h"

static void die(const char *what, const char *path)
{
	fprintf(stderr, "sysfs_tree: %s %s: %s\n", what, path, strerror(errno));
	abort();
}

void tree_new(char *root, size_t len)
{
	snprintf(root, len, "/tmp/vb-tree-XXXXXX");
	if (!mkdtemp(root))
		die("mkdtemp", root);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void tree_free(const char *root)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void mkdir_p(char *path)
{
	char *p;

	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die("mkdir", path);
		*p = '/';
	}
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die("mkdir", path);
}

static void parent_of(const char *root, const char *rel, char *out)
{
	char *slash;

	snprintf(out, PATH_MAX, "%s/%s", root, rel);
	slash = strrchr(out, '/');
	*slash = '\0';
	mkdir_p(out);
	*slash = '/';
}

void tree_dir(const char *root, const char *rel)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	mkdir_p(path);
}

void tree_file(const char *root, const char *rel, const char *content)
{
	char path[PATH_MAX];
	FILE *f;

	parent_of(root, rel, path);
	f = fopen(path, "w");
	if (!f)
		die("fopen", path);
	if (content)
		fputs(content, f);
	fclose(f);
}

void tree_link(const char *root, const char *rel, const char *target)
{
	char path[PATH_MAX];

	parent_of(root, rel, path);
	if (symlink(target, path) < 0)
		die("symlink", path);
}

void tree_read(const char *root, const char *rel, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

void tree_pci_device(const char *root, const char *bdf, const char *driver, int group)
{
	char rel[256], target[256];

	snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s", bdf);
	tree_dir(root, rel);
	snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s/driver_override", bdf);
	tree_file(root, rel, "");
	snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s", bdf);
	snprintf(target, sizeof(target), "../../../devices/pci0000:00/%s", bdf);
	tree_link(root, rel, target);
	tree_file(root, "sys/bus/pci/drivers_probe", "");
	if (driver) {
		snprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s/unbind", driver);
		tree_file(root, rel, "");
		snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s/driver", bdf);
		snprintf(target, sizeof(target), "../../../bus/pci/drivers/%s", driver);
		tree_link(root, rel, target);
	}
	if (group >= 0) {
		snprintf(rel, sizeof(rel), "sys/devices/pci0000:00/%s/iommu_group", bdf);
		snprintf(target, sizeof(target), "../../../kernel/iommu_groups/%d", group);
		tree_link(root, rel, target);
		snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/devices/%s", group, bdf);
		snprintf(target, sizeof(target), "../../../../devices/pci0000:00/%s", bdf);
		tree_link(root, rel, target);
	}
}
