/*
 * vfio_priv: helpers shared by the VFIO core's .c files (vfio.c, vfio_device.c); not API.
 */
#ifndef VB_BROKER_VFIO_PRIV_H
#define VB_BROKER_VFIO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "sys.h"

/* The largest info buffer (argsz) the broker accepts from the kernel: far above any real
 * capability chain, low enough that a confused kernel cannot make us allocate without bound. */
#define VFIO__INFO_MAX 65536u

/* Issues an info ioctl whose argument starts with `__u32 argsz`: `tmpl` (base_size bytes, argsz
 * and any input fields set) is copied into a fresh buffer; when the kernel answers with a larger
 * argsz (a capability chain that did not fit) the buffer grows and the ioctl is re-issued.
 * On success *ret_buf (free() it) holds the answer and *ret_len the bytes that are valid. */
int brk_vfio__query_info(const struct brk_sys *sys, int fd, unsigned long req, const void *tmpl,
			 size_t base_size, void **ret_buf, size_t *ret_len);

/* Walks the capability chain of an info buffer of `len` bytes whose first capability is at
 * `first` (0: none) and whose fixed part is `base_size` bytes. Offsets must stay inside the
 * buffer, past the fixed part, and strictly increase (no loops); they need not be aligned, so
 * fn must memcpy what it reads. fn gets each cap's id, version, the cap (header included) and
 * the bytes available to it; a non-zero return stops the walk and is returned. Errors: -EINVAL
 * for a malformed chain. */
int brk_vfio__caps_walk(const void *buf, size_t len, size_t base_size, uint32_t first,
			int (*fn)(uint16_t id, uint16_t version, const void *cap, size_t avail,
				  void *ctx),
			void *ctx);

struct brk_group;
int brk_vfio__group_fd(const struct brk_group *g);
const struct brk_sys *brk_vfio__group_sys(const struct brk_group *g);
/* Devices opened (+1) and closed (-1) from the group: detach is refused while any is open. */
void brk_vfio__group_device_count(struct brk_group *g, int delta);

#endif
