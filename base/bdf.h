/*
 * bdf: PCI addresses (domain:bus:device.function), the one parser every process uses.
 *
 * Two forms. The strict one is the canonical name sysfs gives a device and the only one that
 * becomes part of a path or a wire message: exactly "dddd:bb:dd.f", lower-case hex. The lenient
 * one is what people type: either case, the domain optional ("bb:dd.f" means domain 0), and 4 to
 * 8 domain digits (Linux names VMD domains 10000 and up). Both refuse a device above 0x1f, a
 * function above 7 and any byte more.
 */
#ifndef VB_BASE_BDF_H
#define VB_BASE_BDF_H

#include <stddef.h>
#include <stdint.h>

/* "0000:00:03.0" plus NUL: every canonical name with a 16-bit domain. */
#define VB_BDF_LEN 13
/* The longest lenient domain formatted ("ffffffff:ff:1f.7") plus NUL. */
#define VB_BDF_MAX 17

enum vb_bdf_form {
	VB_BDF_STRICT,
	VB_BDF_LENIENT,
};

struct vb_bdf {
	uint32_t domain;
	uint8_t bus;
	uint8_t dev;  /* 0..0x1f */
	uint8_t func; /* 0..7 */
};

/* Parses `s` in `form`. Errors: -EINVAL (NULL or anything the form does not accept). `out` may
 * be NULL to only validate; it is left alone on failure. */
int vb_bdf_parse(const char *s, enum vb_bdf_form form, struct vb_bdf *out);
/* Formats `b` canonically ("%04x:%02x:%02x.%x") into buf. Errors: -ENOBUFS when `len` cannot
 * hold it (VB_BDF_LEN holds every 16-bit domain, VB_BDF_MAX every domain). */
int vb_bdf_format(const struct vb_bdf *b, char *buf, size_t len);
/* Lenient parse and canonical format in one: what a user typed, as the broker names it. */
int vb_bdf_normalize(const char *s, char *buf, size_t len);

#endif
