/*
 * sysfs_tree: builds a throw-away directory tree that looks like the parts of /sys and /dev
 * the broker core reads, for host tests (used as brk_sys.root).
 */
#ifndef VB_TESTS_SYSFS_TREE_H
#define VB_TESTS_SYSFS_TREE_H

#include <stddef.h>

/* Makes a fresh directory under /tmp into root (PATH_MAX bytes). */
void tree_new(char *root, size_t len);
/* Removes it again. */
void tree_free(const char *root);
/* mkdir -p root/rel. */
void tree_dir(const char *root, const char *rel);
/* An empty (or `content`) regular file root/rel, parents created. */
void tree_file(const char *root, const char *rel, const char *content);
/* A symlink root/rel -> target (target taken literally), parents created. */
void tree_link(const char *root, const char *rel, const char *target);
/* Reads root/rel into buf (NUL-terminated); "" when missing. */
void tree_read(const char *root, const char *rel, char *buf, size_t len);
/* A PCI device: /sys/bus/pci/devices/BDF, optionally with a driver (and that driver's
 * directory with an unbind file) and an IOMMU group (and the group's devices/ link back). */
void tree_pci_device(const char *root, const char *bdf, const char *driver, int group);

#endif
